//! The guest driver model: probes the vGPU like i915 (spec §1, §2, §3), balloons, enables
//! execlists (§5.2), submits through ELSP and processes the CSB from its HWSP (§5.7).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::cmds;
use super::layout::{set_context_tail, write_context_image, FrameAlloc, PageTables};
use crate::guest_port::GuestPort;
use crate::host::EngineId;
use crate::memory::PAGE_SIZE;

/// PVINFO magic "vGTvGTvG".
pub const PVINFO_MAGIC: u64 = 0x4776_5447_7654_4776;
const PVINFO: u64 = 0x78000;
const GTT_OFFSET: u64 = 0x80_0000;
const MASTER_IRQ: u64 = 0x44200;
const GDRST: u64 = 0x941c;
/// HWSP byte offset where the model's breadcrumb seqno lands.
pub const SEQNO_OFFSET: u64 = 0x100;

/// Why the guest model gave up.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// No Intel GPU at the expected address.
    #[error("no Intel GPU at {0:#06x}")]
    NoDevice(u16),
    /// PVINFO magic or version wrong: not a vGPU.
    #[error("not a GVT-g vGPU (magic {0:#x})")]
    NotVgpu(u64),
    /// Mandatory caps (full PPGTT, HWSP emulation) missing.
    #[error("vGPU caps {0:#x} lack full PPGTT or HWSP emulation")]
    Caps(u32),
    /// Ballooning ranges are inconsistent (spec §3.3).
    #[error("invalid ballooning configuration")]
    Balloon,
    /// Guest RAM or GGTT window exhausted.
    #[error("out of {0}")]
    OutOf(&'static str),
    /// The engine was not enabled first.
    #[error("engine {0} not enabled")]
    NotEnabled(EngineId),
    /// No completion arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(EngineId),
}

/// Where the guest puts its device and which RAM it may use for GPU objects.
#[derive(Debug, Clone, Copy)]
pub struct GuestConfig {
    /// PCI bus/device/function (00:02.0 = 0x10).
    pub bdf: u16,
    /// BAR0 address to program.
    pub bar0: u64,
    /// BAR2 address to program (the aperture is up to 512 MiB: keep it clear of BAR0).
    pub bar2: u64,
    /// MSI address / data to program.
    pub msi: (u32, u16),
    /// Guest RAM `[start, end)` available for GPU objects.
    pub ram: (u64, u64),
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            bdf: 0x10,
            bar0: 0xf000_0000,
            bar2: 0xc000_0000,
            msi: (0xfee0_0000, 0x26),
            ram: (0x10_0000, 0x100_0000),
        }
    }
}

/// What PVINFO told the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvInfo {
    /// vgt_id.
    pub id: u32,
    /// vgt_caps.
    pub caps: u32,
    /// Mappable window (base, size).
    pub low: (u64, u64),
    /// Unmappable window (base, size).
    pub high: (u64, u64),
}

#[derive(Debug, Clone, Copy)]
struct EngineCtx {
    ring_gpa: u64,
    ring_size: u32,
    hwsp_gpa: u64,
    hwsp_gma: u64,
    image_gpa: u64,
    lrca: u64,
    tail: u32,
    csb_head: u32,
    seqno: u32,
}

/// A linear 32-bpp surface in the mappable window, also mapped at the same GMA in the
/// guest's PPGTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surface {
    /// Graphics address (GGTT and PPGTT).
    pub gma: u64,
    /// Guest-physical address (contiguous).
    pub gpa: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Pitch in bytes.
    pub pitch: u16,
}

/// Result of one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// CSB entries consumed.
    pub csb_entries: u32,
    /// An error (CS master error) interrupt was seen.
    pub error: bool,
    /// The breadcrumb seqno now in the HWSP.
    pub seqno: u32,
}

/// The guest's driver state.
pub struct GuestGpu<'a> {
    port: &'a dyn GuestPort,
    cfg: GuestConfig,
    info: PvInfo,
    frames: FrameAlloc,
    next_low: u64,
    next_high: u64,
    engines: BTreeMap<EngineId, EngineCtx>,
    ppgtt: Option<PageTables>,
    irq_errors: u32,
}

impl std::fmt::Debug for GuestGpu<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestGpu")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<'a> GuestGpu<'a> {
    /// PCI setup, vGPU detection, ballooning, interrupt install (spec §3.1–§3.4, §3.8).
    pub fn probe(port: &'a dyn GuestPort, cfg: GuestConfig) -> Result<Self, GuestError> {
        let bdf = cfg.bdf;
        if port.pci_cfg_read(bdf, 0, 2) != 0x8086 {
            return Err(GuestError::NoDevice(bdf));
        }
        for (reg, addr) in [(0x10u16, cfg.bar0), (0x18, cfg.bar2)] {
            port.pci_cfg_write(bdf, reg, 4, u32::MAX);
            let _size_mask = port.pci_cfg_read(bdf, reg, 4);
            port.pci_cfg_write(bdf, reg, 4, lo(addr));
            port.pci_cfg_write(bdf, reg + 4, 4, hi(addr));
        }
        port.pci_cfg_write(bdf, 0x04, 2, 0x6); // memory decode + bus master
        enable_msi(port, bdf, cfg.msi);
        let bar0 = cfg.bar0;
        let magic = port.mmio_read(bar0 + PVINFO, 8);
        let major = port.mmio_read(bar0 + PVINFO + 8, 2);
        if magic != PVINFO_MAGIC || major < 1 {
            return Err(GuestError::NotVgpu(magic));
        }
        let caps = lo(port.mmio_read(bar0 + PVINFO + 0x10, 4));
        if caps & 0xC != 0xC {
            return Err(GuestError::Caps(caps));
        }
        let rd = |o: u64| port.mmio_read(bar0 + PVINFO + o, 4);
        let info = PvInfo {
            id: lo(rd(0xC)),
            caps,
            low: (rd(0x40), rd(0x44)),
            high: (rd(0x48), rd(0x4C)),
        };
        let ok = info.low.0.checked_add(info.low.1).is_some()
            && info
                .high
                .0
                .checked_add(info.high.1)
                .is_some_and(|e| e <= 1 << 32)
            && info.low.1 > 0
            && info.high.1 > 0;
        if !ok {
            return Err(GuestError::Balloon);
        }
        let gpu = Self {
            port,
            cfg,
            info,
            frames: FrameAlloc::new(cfg.ram.0, cfg.ram.1),
            next_low: info.low.0,
            next_high: info.high.0,
            engines: BTreeMap::new(),
            ppgtt: None,
            irq_errors: 0,
        };
        gpu.install_irqs();
        Ok(gpu)
    }

    /// What PVINFO reported.
    pub fn info(&self) -> PvInfo {
        self.info
    }

    fn reg_write(&self, off: u64, v: u32) {
        self.port.mmio_write(self.cfg.bar0 + off, 4, u64::from(v));
    }

    fn reg_read(&self, off: u64) -> u32 {
        lo(self.port.mmio_read(self.cfg.bar0 + off, 4))
    }

    fn install_irqs(&self) {
        self.reg_write(MASTER_IRQ, 0);
        for (bank, ier) in [(0u64, 0x0909_0909u32), (1, 0x0909_0909), (2, 0), (3, 0x909)] {
            let base = 0x44300 + 0x10 * bank;
            self.reg_write(base + 4, u32::MAX);
            self.reg_write(base + 0xC, 0);
            self.reg_write(base + 8, u32::MAX);
            self.reg_write(base + 8, u32::MAX);
            self.reg_write(base + 0xC, ier);
            self.reg_write(base + 4, !ier);
        }
        self.reg_write(MASTER_IRQ, 0x8000_0000);
    }

    /// Writes GGTT entry for `gma` → `gpa` (8-byte PTE write, then GFX_FLSH_CNTL).
    pub fn map_ggtt(&self, gma: u64, gpa: u64) {
        let pte = self.cfg.bar0 + GTT_OFFSET + 8 * (gma >> 12);
        self.port.mmio_write(pte, 8, (gpa & !0xfff) | 1);
        self.reg_write(0x101008, 1);
    }

    fn alloc(&mut self, pages: u64, high: bool) -> Result<(u64, u64), GuestError> {
        let gpa = self.frames.alloc(pages).ok_or(GuestError::OutOf("RAM"))?;
        let (next, win) = if high {
            (&mut self.next_high, self.info.high)
        } else {
            (&mut self.next_low, self.info.low)
        };
        let gma = *next;
        let end = gma
            .checked_add(pages * PAGE_SIZE)
            .ok_or(GuestError::OutOf("GGTT"))?;
        if end > win.0 + win.1 {
            return Err(GuestError::OutOf("GGTT window"));
        }
        *next = end;
        for i in 0..pages {
            self.map_ggtt(gma + i * PAGE_SIZE, gpa + i * PAGE_SIZE);
            self.port
                .ram()
                .write(gpa + i * PAGE_SIZE, &[0u8; 4096])
                .ok();
        }
        Ok((gma, gpa))
    }

    /// Builds the guest PPGTT (empty PML4) and announces it through PVINFO g2v code 4.
    pub fn create_ppgtt(&mut self) -> Result<u64, GuestError> {
        let pt =
            PageTables::new(self.port.ram(), &mut self.frames).ok_or(GuestError::OutOf("RAM"))?;
        self.ppgtt = Some(pt);
        self.reg_write(PVINFO + 0x838, lo(pt.pml4));
        self.reg_write(PVINFO + 0x83C, hi(pt.pml4));
        self.reg_write(PVINFO + 0x818, 4);
        Ok(pt.pml4)
    }

    /// Maps `gma` → `gpa` in the guest PPGTT. A hostile guest passes a foreign `gpa`.
    pub fn map_ppgtt(&mut self, gma: u64, gpa: u64) -> Result<(), GuestError> {
        let pt = self.ppgtt.ok_or(GuestError::OutOf("PPGTT"))?;
        pt.map(self.port.ram(), &mut self.frames, gma, gpa)
            .ok_or(GuestError::OutOf("RAM"))
    }

    /// Allocates ring, HWSP and context image and enables execlists (spec §5.2).
    pub fn enable_engine(&mut self, e: EngineId) -> Result<(), GuestError> {
        if self.ppgtt.is_none() {
            self.create_ppgtt()?;
        }
        let pml4 = self.ppgtt.map_or(0, |p| p.pml4);
        let (ring_gma, ring_gpa) = self.alloc(4, true)?;
        let (hwsp_gma, hwsp_gpa) = self.alloc(1, true)?;
        let (lrca, image_gpa) = self.alloc(2, true)?;
        let base = e.mmio_base();
        write_context_image(self.port.ram(), image_gpa, base, lo(ring_gma), 4, pml4)
            .map_err(|_| GuestError::OutOf("RAM"))?;
        // execlists_sanitize: CSB pointers 5/5, HWSP slots poisoned.
        let b = u64::from(base);
        self.reg_write(b + 0x3A0, 0xFFFF_0505);
        let ram = self.port.ram();
        for i in 0..6 {
            ram.write_u64(hwsp_gpa + 0x40 + 8 * i, u64::MAX).ok();
        }
        ram.write_u32(hwsp_gpa + 0x7C, 5).ok();
        self.reg_write(b + 0x98, u32::MAX);
        self.reg_write(b + 0x29C, 0x8000_8000);
        self.reg_write(b + 0x9C, 0x0100_0000);
        self.reg_write(b + 0x80, lo(hwsp_gma));
        let _ = self.reg_read(b + 0x80);
        self.reg_write(b + 0xB4, u32::MAX);
        self.reg_write(b + 0xB0, u32::MAX);
        let _ = self.reg_read(b + 0xB8);
        self.reg_write(b + 0xB4, !1);
        self.engines.insert(
            e,
            EngineCtx {
                ring_gpa,
                ring_size: 4 * 4096,
                hwsp_gpa,
                hwsp_gma,
                image_gpa,
                lrca,
                tail: 0,
                csb_head: 5,
                seqno: 0,
            },
        );
        Ok(())
    }

    /// What i915 does at `rmmod` (`i915_ppgtt` release, then `intel_engines_release`):
    /// the PPGTT is announced destroyed (g2v code 5), then a full GPU reset (GDRST
    /// GRDOM_FULL, polled until the bit clears). Nothing waits for work in flight. The
    /// GGTT entries are left as they are, still pointing at the frames (gen8's
    /// `clear_range` is a no-op), and the driver gives every frame of its RAM range back
    /// to the kernel, which may reuse it at once. Returns that range.
    pub fn unload(self) -> (u64, u64) {
        if let Some(pt) = self.ppgtt {
            self.reg_write(PVINFO + 0x838, lo(pt.pml4));
            self.reg_write(PVINFO + 0x83C, hi(pt.pml4));
            self.reg_write(PVINFO + 0x818, 5);
        }
        self.reg_write(GDRST, 1);
        for _ in 0..100 {
            if self.reg_read(GDRST) & 1 == 0 {
                break;
            }
        }
        self.cfg.ram
    }

    /// A surface in the mappable window, mapped at the same GMA in the PPGTT.
    pub fn create_surface(&mut self, width: u16, height: u16) -> Result<Surface, GuestError> {
        let pitch = width.checked_mul(4).ok_or(GuestError::OutOf("pitch"))?;
        let bytes = u64::from(pitch) * u64::from(height);
        let pages = bytes.div_ceil(PAGE_SIZE).max(1);
        let (gma, gpa) = self.alloc(pages, false)?;
        for i in 0..pages {
            self.map_ppgtt(gma + i * PAGE_SIZE, gpa + i * PAGE_SIZE)?;
        }
        Ok(Surface {
            gma,
            gpa,
            width,
            height,
            pitch,
        })
    }

    /// Copies `batch` into a fresh buffer (GGTT high window, also PPGTT-mapped) and
    /// submits a request that runs it and writes a breadcrumb (spec §5.10). Returns the
    /// request's seqno.
    pub fn submit_batch(
        &mut self,
        e: EngineId,
        batch: &[u32],
        ppgtt: bool,
    ) -> Result<u32, GuestError> {
        let pages = (batch.len() as u64 * 4).div_ceil(PAGE_SIZE).max(1);
        let (gma, gpa) = self.alloc(pages, true)?;
        for i in 0..pages {
            self.map_ppgtt(gma + i * PAGE_SIZE, gpa + i * PAGE_SIZE)?;
        }
        let bytes: Vec<u8> = batch.iter().flat_map(|d| d.to_le_bytes()).collect();
        self.port.ram().write(gpa, &bytes).ok();
        let mut ring = cmds::flush_dw_invalidate().to_vec();
        ring.push(cmds::MI_ARB_OFF);
        ring.extend(cmds::bb_start(gma, ppgtt));
        self.submit_ring(e, &ring)
    }

    /// Submits `dwords` as a request (followed by the breadcrumb and user interrupt).
    pub fn submit_ring(&mut self, e: EngineId, dwords: &[u32]) -> Result<u32, GuestError> {
        let mut ctx = *self.engines.get(&e).ok_or(GuestError::NotEnabled(e))?;
        ctx.seqno = ctx.seqno.wrapping_add(1);
        let mut ring = dwords.to_vec();
        ring.extend(cmds::flush_dw_store(ctx.hwsp_gma + SEQNO_OFFSET, ctx.seqno));
        ring.extend([cmds::MI_USER_INTERRUPT, cmds::MI_ARB_ON, cmds::MI_ARB_CHECK]);
        if ring.len() % 2 == 1 {
            ring.push(cmds::MI_NOOP);
        }
        let ram = self.port.ram();
        for d in ring {
            ram.write_u32(ctx.ring_gpa + u64::from(ctx.tail), d).ok();
            ctx.tail = (ctx.tail + 4) % ctx.ring_size;
        }
        set_context_tail(ram, ctx.image_gpa, ctx.tail).ok();
        let elsp = u64::from(e.mmio_base()) + 0x230;
        for v in [0, 0, 0x10 + e.index() as u32, lo(ctx.lrca) | 0x119] {
            self.reg_write(elsp, v);
        }
        self.engines.insert(e, ctx);
        Ok(ctx.seqno)
    }

    /// Waits for interrupts until the request on `e` completes (a CSB completion event),
    /// acknowledging each interrupt as i915's handler does (spec §3.8).
    pub fn wait(&mut self, e: EngineId, timeout: Duration) -> Result<Completion, GuestError> {
        let deadline = Instant::now() + timeout;
        let mut done = Completion {
            csb_entries: 0,
            error: false,
            seqno: 0,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(GuestError::Timeout(e));
            }
            let msi = self.port.wait_msi(left.min(Duration::from_millis(50)));
            if msi.is_some() {
                self.ack_interrupts();
            }
            let (n, complete) = self.process_csb(e)?;
            done.csb_entries += n;
            if self.irq_errors > 0 {
                done.error = true;
            }
            if complete {
                done.seqno = self.seqno(e)?;
                self.irq_errors = 0;
                return Ok(done);
            }
        }
    }

    fn ack_interrupts(&mut self) {
        self.reg_write(MASTER_IRQ, 0);
        let master = self.reg_read(MASTER_IRQ);
        for (bank, bits) in [(0u64, 0b11u32), (1, 0b1100), (3, 1 << 6)] {
            if master & bits != 0 {
                let iir = 0x44308 + 0x10 * bank;
                let v = self.reg_read(iir);
                if v & 0x0008_0008 != 0 {
                    self.irq_errors += 1;
                }
                self.reg_write(iir, v);
            }
        }
        self.reg_write(MASTER_IRQ, 0x8000_0000);
    }

    /// Consumes CSB entries from the HWSP; returns (count, saw a completion to idle).
    fn process_csb(&mut self, e: EngineId) -> Result<(u32, bool), GuestError> {
        let mut ctx = *self.engines.get(&e).ok_or(GuestError::NotEnabled(e))?;
        let ram = self.port.ram();
        let wp = ram.read_u32(ctx.hwsp_gpa + 0x7C).unwrap_or(ctx.csb_head) % 6;
        let (mut n, mut idle) = (0, false);
        while ctx.csb_head != wp {
            ctx.csb_head = (ctx.csb_head + 1) % 6;
            let slot = ctx.hwsp_gpa + 0x40 + 8 * u64::from(ctx.csb_head);
            let entry = ram.read_u64(slot).unwrap_or(u64::MAX);
            ram.write_u64(slot, u64::MAX).ok();
            n += 1;
            if entry != u64::MAX && entry & 0x8 != 0 {
                idle = true;
            }
        }
        self.engines.insert(e, ctx);
        Ok((n, idle))
    }

    /// The breadcrumb seqno in `e`'s HWSP.
    pub fn seqno(&self, e: EngineId) -> Result<u32, GuestError> {
        let ctx = self.engines.get(&e).ok_or(GuestError::NotEnabled(e))?;
        self.port
            .ram()
            .read_u32(ctx.hwsp_gpa + SEQNO_OFFSET)
            .map_err(|_| GuestError::OutOf("RAM"))
    }

    /// Submits a PPGTT blit filling `rect` of `s` with `color` (XY_COLOR_BLT on BCS).
    pub fn fill(
        &mut self,
        s: &Surface,
        rect: (u16, u16, u16, u16),
        color: u32,
    ) -> Result<u32, GuestError> {
        let mut b = cmds::xy_color_blt(s.gma, s.pitch, rect, color).to_vec();
        b.push(cmds::MI_BATCH_BUFFER_END);
        self.submit_batch(EngineId::Bcs, &b, true)
    }

    /// Reads one pixel of `s` from guest RAM.
    pub fn pixel(&self, s: &Surface, x: u16, y: u16) -> Option<u32> {
        let at = s.gpa + u64::from(y) * u64::from(s.pitch) + u64::from(x) * 4;
        self.port.ram().read_u32(at).ok()
    }

    /// Hostile: a GGTT batch storing to `gma` (outside the windows when chosen so).
    pub fn hostile_store(&mut self, e: EngineId, gma: u64) -> Result<u32, GuestError> {
        let mut b = cmds::store_dword(gma, 0xdead_beef, true).to_vec();
        b.push(cmds::MI_BATCH_BUFFER_END);
        self.submit_batch(e, &b, false)
    }

    /// Hostile: an LRI to a non-whitelisted register (GDRST) in the ring.
    pub fn hostile_lri(&mut self, e: EngineId) -> Result<u32, GuestError> {
        let mut r = cmds::lri(0x941C, 1).to_vec();
        r.push(cmds::MI_NOOP);
        self.submit_ring(e, &r)
    }

    /// Hostile: a PPGTT batch that jumps to itself forever.
    pub fn hostile_hang(&mut self, e: EngineId) -> Result<u32, GuestError> {
        let pages = 1;
        let (gma, gpa) = self.alloc(pages, true)?;
        self.map_ppgtt(gma, gpa)?;
        let b = cmds::bb_start(gma, true);
        let bytes: Vec<u8> = b.iter().flat_map(|d| d.to_le_bytes()).collect();
        self.port.ram().write(gpa, &bytes).ok();
        let mut ring = vec![cmds::MI_ARB_OFF];
        ring.extend(cmds::bb_start(gma, true));
        self.submit_ring(e, &ring)
    }
}

fn enable_msi(port: &dyn GuestPort, bdf: u16, msi: (u32, u16)) {
    let mut cap = port.pci_cfg_read(bdf, 0x34, 1) & 0xFC;
    for _ in 0..48 {
        if cap == 0 {
            return;
        }
        let reg = u16::try_from(cap).unwrap_or(0);
        if port.pci_cfg_read(bdf, reg, 1) == 0x05 {
            port.pci_cfg_write(bdf, reg + 4, 4, msi.0);
            port.pci_cfg_write(bdf, reg + 8, 2, u32::from(msi.1));
            let ctl = port.pci_cfg_read(bdf, reg + 2, 2);
            port.pci_cfg_write(bdf, reg + 2, 2, ctl | 1);
            return;
        }
        cap = port.pci_cfg_read(bdf, reg + 1, 1) & 0xFC;
    }
}

fn lo(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn hi(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
