//! Unit tests: the i915-like guest model drives a [`Gvt`] through an in-process port that
//! applies effects like a hypervisor would (MSIs queued, write-protected frames trapped).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::bus::{le_value, IoHandler, Space};
use crate::clock::FakeClock;
use crate::effects::Effect;
use crate::guest::{GuestConfig, GuestGpu};
use crate::guest_port::{GuestPort, Msi};
use crate::memory::{GuestMemoryError, VecMemory, PAGE_SHIFT};
use crate::partition::MIB;

struct Local {
    gvt: Mutex<Gvt>,
    clock: FakeClock,
    id: VgpuId,
    ram: Arc<VecMemory>,
    protected: Mutex<HashSet<u64>>,
    /// Models a platform that refuses to lift write protection (Xen's `set_mem_type`
    /// failing): `WriteProtect { protect: false }` effects are ignored.
    sticky_protection: AtomicBool,
    msis: Mutex<VecDeque<Msi>>,
}

impl Local {
    fn new(ty: &str) -> Self {
        let clock = FakeClock::new();
        let host = HostDescription::default();
        let mut cfg = SwConfig::for_host(&host);
        cfg.cost.max_commands = 100_000;
        let gpu = Box::new(SwGpu::new(cfg));
        let mut gvt = Gvt::with_host(host, gpu, Arc::new(clock.clone())).unwrap();
        let ram = Arc::new(VecMemory::new(32 * MIB));
        let id = gvt
            .create_vgpu(&CreateRequest::of_type(ty), ram.clone())
            .unwrap();
        Self {
            gvt: Mutex::new(gvt),
            clock,
            id,
            ram,
            protected: Mutex::new(HashSet::new()),
            sticky_protection: AtomicBool::new(false),
            msis: Mutex::new(VecDeque::new()),
        }
    }

    fn apply(&self, fx: Effects) {
        for e in fx {
            match e {
                Effect::InjectMsi { addr, data } => {
                    self.msis.lock().unwrap().push_back(Msi { addr, data })
                }
                Effect::WriteProtect { gfn, protect: true } => {
                    self.protected.lock().unwrap().insert(gfn);
                }
                Effect::WriteProtect { gfn, .. }
                    if !self.sticky_protection.load(Ordering::Relaxed) =>
                {
                    self.protected.lock().unwrap().remove(&gfn);
                }
                _ => {}
            }
        }
    }

    fn access(&self, space: Space, addr: u64, data: &mut [u8], write: bool) {
        let mut fx = Effects::new();
        {
            let mut g = self.gvt.lock().unwrap();
            let mut io = g.io(self.id).unwrap();
            if write {
                io.write(space, addr, data, &mut fx);
            } else {
                io.read(space, addr, data, &mut fx);
            }
        }
        self.apply(fx);
    }

    fn stats(&self) -> VgpuStats {
        self.gvt.lock().unwrap().stats(self.id).unwrap()
    }
}

impl GuestMemory for Local {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.ram.read(gpa, buf)
    }
    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        if self
            .protected
            .lock()
            .unwrap()
            .contains(&(gpa >> PAGE_SHIFT))
        {
            let mut b = buf.to_vec();
            self.access(Space::Mmio, gpa, &mut b, true);
            return Ok(());
        }
        self.ram.write(gpa, buf)
    }
    fn owns_frame(&self, gfn: u64) -> bool {
        self.ram.owns_frame(gfn)
    }
}

impl GuestPort for Local {
    fn mmio_read(&self, addr: u64, size: u8) -> u64 {
        let mut b = vec![0u8; usize::from(size)];
        self.access(Space::Mmio, addr, &mut b, false);
        le_value(&b)
    }
    fn mmio_write(&self, addr: u64, size: u8, value: u64) {
        let mut b = value.to_le_bytes()[..usize::from(size)].to_vec();
        self.access(Space::Mmio, addr, &mut b, true);
    }
    fn pio_read(&self, _: u16, _: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&self, _: u16, _: u8, _: u32) {}
    fn pci_cfg_read(&self, bdf: u16, reg: u16, size: u8) -> u32 {
        let mut b = vec![0u8; usize::from(size)];
        self.access(
            Space::PciConfig,
            u64::from(bdf) << 32 | u64::from(reg),
            &mut b,
            false,
        );
        le_value(&b) as u32
    }
    fn pci_cfg_write(&self, bdf: u16, reg: u16, size: u8, value: u32) {
        let mut b = value.to_le_bytes()[..usize::from(size)].to_vec();
        self.access(
            Space::PciConfig,
            u64::from(bdf) << 32 | u64::from(reg),
            &mut b,
            true,
        );
    }
    fn ram(&self) -> &dyn GuestMemory {
        self
    }
    fn wait_msi(&self, _timeout: Duration) -> Option<Msi> {
        for _ in 0..1000 {
            if let Some(m) = self.msis.lock().unwrap().pop_front() {
                return Some(m);
            }
            let fx = {
                let mut g = self.gvt.lock().unwrap();
                let d = g.next_deadline()?;
                if d > self.clock.now() {
                    self.clock.advance(d - self.clock.now());
                }
                g.poll()
            };
            for (_, f) in fx {
                self.apply(f);
            }
        }
        None
    }
}

const WAIT: Duration = Duration::from_secs(5);

/// The guest model's first driver instance lives in this RAM range, the second in the next.
const FIRST: (u64, u64) = (0x10_0000, 0x80_0000);
const SECOND: (u64, u64) = (0x80_0000, 0x100_0000);
const REUSED: u8 = 0xA5;

/// Fills every frame of `range` with [`REUSED`] through the guest's own RAM path (a
/// write to a frame the platform still protects traps, as on Xen).
fn reuse_frames(port: &Local, range: (u64, u64)) {
    let page = [REUSED; 4096];
    for gpa in (range.0..range.1).step_by(4096) {
        port.ram().write(gpa, &page).unwrap();
    }
}

/// The first page of `range` that no longer holds only [`REUSED`] bytes.
fn first_changed_page(port: &Local, range: (u64, u64)) -> Option<u64> {
    let mut page = [0u8; 4096];
    (range.0..range.1).step_by(4096).find(|gpa| {
        port.ram.read(*gpa, &mut page).unwrap();
        page.iter().any(|b| *b != REUSED)
    })
}

/// Issue 16: i915 unloads (PPGTT destroyed, full reset, frames freed; its GGTT entries
/// still point at them), the kernel reuses the frames, i915 loads again elsewhere. No
/// write of the vGPU may land in the freed frames: not a completion of work that was in
/// flight at the reset (context head write-back, CSB/HWSP), not a CSB event through the
/// old HWS_PGA, not a seqno.
#[test]
fn after_unload_no_vgpu_write_lands_in_the_freed_frames() {
    let port = Local::new("GVTg_V5_4");
    let cfg = |ram| GuestConfig {
        ram,
        ..GuestConfig::default()
    };
    let mut g = GuestGpu::probe(&port, cfg(FIRST)).unwrap();
    g.enable_engine(EngineId::Rcs).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    let s = g.create_surface(64, 32).unwrap();
    let seq = g.fill(&s, (0, 0, 64, 32), 0x11).unwrap();
    assert_eq!(g.wait(EngineId::Bcs, WAIT).unwrap().seqno, seq);
    // Work left in flight on both engines when the driver goes away.
    g.fill(&s, (0, 0, 8, 8), 0x22).unwrap();
    g.submit_ring(EngineId::Rcs, &[0; 4]).unwrap();
    let freed = g.unload();
    reuse_frames(&port, freed);
    // Whatever the vGPU still had pending is delivered now.
    for _ in 0..8 {
        let fx = {
            let mut gvt = port.gvt.lock().unwrap();
            if let Some(d) = gvt.next_deadline() {
                if d > port.clock.now() {
                    port.clock.advance(d - port.clock.now());
                }
            }
            gvt.poll()
        };
        for (_, f) in fx {
            port.apply(f);
        }
    }
    assert_eq!(first_changed_page(&port, freed), None, "after the reset");
    // The next driver instance maps the same GMAs to new frames and runs work.
    let mut g = GuestGpu::probe(&port, cfg(SECOND)).unwrap();
    g.enable_engine(EngineId::Rcs).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    let s = g.create_surface(64, 32).unwrap();
    let seq = g.fill(&s, (0, 0, 64, 32), 0x33).unwrap();
    let done = g.wait(EngineId::Bcs, WAIT).unwrap();
    assert_eq!((done.error, done.seqno), (false, seq));
    assert_eq!(g.pixel(&s, 63, 31), Some(0x33));
    let seq = g.submit_ring(EngineId::Rcs, &[0; 4]).unwrap();
    assert_eq!(g.wait(EngineId::Rcs, WAIT).unwrap().seqno, seq);
    assert_eq!(first_changed_page(&port, freed), None, "after the reload");
    let st = port.stats();
    assert_eq!(st.unprotected_ram_writes, 0, "{st:?}");
    assert!(st.dropped + st.completed >= 3, "{st:?}");
}

/// Issue 16: when the platform keeps a frame write-protected after the vGPU released it
/// (lifting the protection failed), the guest's stores into the reused frame still trap
/// to the vGPU. They are the guest's own data and must be committed, never dropped.
#[test]
fn a_trapped_write_to_an_unprotected_frame_is_committed() {
    let port = Local::new("GVTg_V5_4");
    let mut g = GuestGpu::probe(
        &port,
        GuestConfig {
            ram: FIRST,
            ..GuestConfig::default()
        },
    )
    .unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    let s = g.create_surface(16, 16).unwrap();
    let seq = g.fill(&s, (0, 0, 16, 16), 0x44).unwrap();
    assert_eq!(g.wait(EngineId::Bcs, WAIT).unwrap().seqno, seq);
    let tables = port.protected.lock().unwrap().len() as u64;
    assert!(tables >= 4, "the PPGTT's table frames are protected");
    port.sticky_protection.store(true, Ordering::Relaxed);
    let freed = g.unload();
    assert_eq!(port.protected.lock().unwrap().len() as u64, tables);
    reuse_frames(&port, freed);
    assert_eq!(first_changed_page(&port, freed), None);
    let st = port.stats();
    assert_eq!(st.unprotected_ram_writes, tables, "{st:?}");
    assert_eq!(st.unprotected_ram_write_errors, 0);
}

#[test]
fn a_guest_blit_lands_in_its_memory_and_the_seqno_advances() {
    let port = Local::new("GVTg_V5_4");
    let mut g = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    let s = g.create_surface(64, 32).unwrap();
    let seq = g.fill(&s, (4, 2, 20, 10), 0x00ff_8000).unwrap();
    let done = g.wait(EngineId::Bcs, WAIT).unwrap();
    assert!(!done.error);
    assert_eq!(done.seqno, seq);
    assert_eq!(g.pixel(&s, 5, 3), Some(0x00ff_8000));
    assert_eq!(g.pixel(&s, 30, 3), Some(0));
    let seq2 = g.fill(&s, (0, 0, 64, 32), 0x1234_5678).unwrap();
    assert_eq!(g.wait(EngineId::Bcs, WAIT).unwrap().seqno, seq2);
    assert_eq!(g.pixel(&s, 63, 31), Some(0x1234_5678));
    let st = port.stats();
    assert_eq!((st.submitted, st.completed), (2, 2));
    assert!(st.engine_ns["bcs0"] > 0 && st.engine_share > 0.99);
    assert!(st.ggtt_reflected > 0 && st.ggtt_refused == 0);
    assert!(
        st.protected_writes > 0,
        "PPGTT updates were trapped: {st:?}"
    );
    assert!(st.vgpu.msi_injected > 0);
}

#[test]
fn hostile_commands_are_rejected_counted_and_the_guest_recovers() {
    let port = Local::new("GVTg_V5_8");
    let mut g = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    g.hostile_lri(EngineId::Bcs).unwrap();
    assert!(g.wait(EngineId::Bcs, WAIT).unwrap().error);
    g.hostile_store(EngineId::Bcs, 0x1000).unwrap();
    assert!(g.wait(EngineId::Bcs, WAIT).unwrap().error);
    let st = port.stats();
    assert_eq!(st.rejected["RegisterNotAllowed"], 1);
    assert_eq!(st.rejected["AddressOutOfWindow"], 1);
    assert_eq!(st.completed, 0);
    let s = g.create_surface(16, 16).unwrap();
    let seq = g.fill(&s, (0, 0, 16, 16), 0xabcdef).unwrap();
    let done = g.wait(EngineId::Bcs, WAIT).unwrap();
    assert_eq!((done.error, done.seqno), (false, seq));
    assert_eq!(g.pixel(&s, 15, 15), Some(0xabcdef));
}

#[test]
fn a_hang_resets_the_engine_and_work_continues() {
    let port = Local::new("GVTg_V5_4");
    let mut g = GuestGpu::probe(&port, GuestConfig::default()).unwrap();
    g.enable_engine(EngineId::Bcs).unwrap();
    g.hostile_hang(EngineId::Bcs).unwrap();
    assert!(g.wait(EngineId::Bcs, WAIT).unwrap().error);
    let st = port.stats();
    assert_eq!((st.hangs, st.engine_resets), (1, 1), "{st:?}");
    let s = g.create_surface(16, 16).unwrap();
    let seq = g.fill(&s, (0, 0, 8, 8), 0x55).unwrap();
    assert_eq!(g.wait(EngineId::Bcs, WAIT).unwrap().seqno, seq);
    assert_eq!(g.pixel(&s, 7, 7), Some(0x55));
}

#[test]
fn lifecycle_types_and_mismatched_hosts() {
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new());
    let mut gvt = Gvt::new(HostDescription::default(), clock.clone()).unwrap();
    let avail = |g: &Gvt| {
        g.types()
            .into_iter()
            .find(|t| t.info.ty.name == "GVTg_V5_4")
            .map(|t| (t.info.available_instances, t.display.has_display))
            .unwrap()
    };
    assert_eq!(avail(&gvt), (3, true));
    let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(MIB));
    let a = gvt
        .create_vgpu(&CreateRequest::of_type("GVTg_V5_4"), mem.clone())
        .unwrap();
    let b = gvt
        .create_vgpu(&CreateRequest::of_type("GVTg_V5_8"), mem.clone())
        .unwrap();
    assert_eq!(avail(&gvt).0, 1);
    let (sa, sb) = (gvt.stats(a).unwrap(), gvt.stats(b).unwrap());
    assert!((sa.expected_share - 4.0 / 6.0).abs() < 1e-9);
    assert!((sb.expected_share - 2.0 / 6.0).abs() < 1e-9);
    assert!(matches!(gvt.screenshot(a), Err(GvtError::Framebuffer(_))));
    assert!(gvt.destroy_vgpu(a).unwrap().is_empty());
    assert!(gvt.io(a).is_none() && gvt.io(b).is_some());
    assert!(matches!(gvt.destroy_vgpu(a), Err(GvtError::NotFound(_))));
    // Re-creating reuses the same windows in manager and host.
    gvt.create_vgpu(&CreateRequest::of_type("GVTg_V5_4"), mem.clone())
        .unwrap();
    // A host that partitions differently is detected, and nothing leaks.
    let other = SwGpu::new(SwConfig::default());
    let mut bad = Gvt::with_host(HostDescription::default(), Box::new(other), clock).unwrap();
    let e = bad
        .create_vgpu(&CreateRequest::of_type("GVTg_V5_4"), mem)
        .unwrap_err();
    assert!(matches!(e, GvtError::HostMismatch { .. }), "{e}");
    assert!(bad.list().is_empty());
}
