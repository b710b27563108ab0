//! A simulated vCPU: guest accesses become ioreqs in the shared page, exactly as Xen
//! produces them, and the vCPU blocks until the emulator answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mediator::bus::Space;
use mediator::guest_port::{GuestPort, Msi};
use mediator::memory::{GuestMemory, GuestMemoryError, PAGE_SHIFT, PAGE_SIZE};

use crate::abi::{
    BufIoreq, Ioreq, Sbdf, IOREQ_TYPE_COPY, IOREQ_TYPE_INVALIDATE, IOREQ_TYPE_PCI_CONFIG,
    IOREQ_TYPE_PIO, IOREQ_TYPE_TIMEOFFSET, STATE_IOREQ_NONE,
};
use crate::ioreq::push_buffered;
use crate::sim::domain::{Domain, SimServer};

/// The legacy VGA window: direct writes here go through the buffered ring.
pub const VGA_WINDOW: std::ops::RangeInclusive<u64> = 0xA0000..=0xBFFFF;
const CF8: u16 = 0xCF8;
const CFC: u16 = 0xCFC;

/// One vCPU of a simulated domain. Implements [`GuestPort`]; its RAM view respects
/// write protection.
#[derive(Debug)]
pub struct SimVcpu {
    pub(crate) dom: Arc<Domain>,
    pub(crate) index: usize,
}

fn mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        s => (1u64 << (u32::from(s) * 8)) - 1,
    }
}

impl SimVcpu {
    /// This vCPU's index.
    pub fn index(&self) -> usize {
        self.index
    }

    fn access(&self, space: Space, typ: u8, addr: u64, size: u8, read: bool, data: u64) -> u64 {
        let Some(last) = addr.checked_add(u64::from(size).saturating_sub(1)) else {
            return u64::MAX;
        };
        let (first, last) = match space {
            Space::PciConfig => (addr >> 32, addr >> 32),
            _ => (addr, last),
        };
        let Some(server) = self.dom.select(space, first, last) else {
            self.dom.stats.unclaimed.fetch_add(1, Ordering::Relaxed);
            return u64::MAX;
        };
        if !read
            && space == Space::Mmio
            && VGA_WINDOW.contains(&addr)
            && self.buffered(&server, addr, size, data)
        {
            return 0;
        }
        let req = Ioreq {
            addr,
            data: data & mask(size),
            count: 1,
            size: u32::from(size),
            flags: Ioreq::make_flags(STATE_IOREQ_NONE, false, read, false),
            typ,
            ..Ioreq::default()
        };
        self.send(&server, &req)
            .map_or(u64::MAX, |d| d & mask(size))
    }

    fn buffered(&self, server: &SimServer, addr: u64, size: u8, data: u64) -> bool {
        let (Some(buf), Ok(addr)) = (&server.buf, u32::try_from(addr)) else {
            return false;
        };
        let b = BufIoreq {
            typ: IOREQ_TYPE_COPY,
            read: false,
            size,
            addr,
            data: data & mask(size),
        };
        if !push_buffered(buf, &b) {
            return false;
        }
        self.dom.stats.buffered.fetch_add(1, Ordering::Relaxed);
        let _ = server.event.signal();
        true
    }

    fn send(&self, server: &SimServer, req: &Ioreq) -> Option<u64> {
        let busy = self.dom.vcpu_busy.get(self.index)?;
        let _g = busy.lock().unwrap_or_else(|p| p.into_inner());
        if self.dom.is_destroyed() {
            return None;
        }
        self.dom.round_trip(server, self.index, req)
    }

    /// Sends an arbitrary, possibly malformed slot to the highest enabled server (a test
    /// hook standing in for a buggy or hostile producer). Returns the answered `data`,
    /// `None` if nothing answered.
    pub fn raw_request(&self, req: &Ioreq) -> Option<u64> {
        let server = self.highest_enabled()?;
        self.send(&server, req)
    }

    /// Sends the INVALIDATE request Xen broadcasts after RAM left the physmap, to every
    /// enabled server. Returns how many answered.
    pub fn invalidate_map_caches(&self) -> usize {
        let req = Ioreq {
            data: u64::MAX,
            count: 1,
            size: 4,
            typ: IOREQ_TYPE_INVALIDATE,
            ..Ioreq::default()
        };
        self.enabled_servers()
            .iter()
            .filter(|s| self.send(s, &req).is_some())
            .count()
    }

    /// Broadcasts a TIMEOFFSET (RTC change of `delta` seconds) through the buffered
    /// rings of enabled servers that have one. Returns how many got it.
    pub fn rtc_offset_changed(&self, delta: i64) -> usize {
        let b = BufIoreq {
            typ: IOREQ_TYPE_TIMEOFFSET,
            read: false,
            size: 8,
            addr: 0,
            data: u64::from_le_bytes(delta.to_le_bytes()),
        };
        let mut n = 0;
        for s in self.enabled_servers() {
            if let Some(buf) = &s.buf {
                if push_buffered(buf, &b) {
                    let _ = s.event.signal();
                    n += 1;
                }
            }
        }
        n
    }

    fn enabled_servers(&self) -> Vec<Arc<SimServer>> {
        let servers = self.dom.servers.read().unwrap_or_else(|p| p.into_inner());
        servers
            .iter()
            .flatten()
            .filter(|s| s.enabled.load(Ordering::Acquire) && !s.dead.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    fn highest_enabled(&self) -> Option<Arc<SimServer>> {
        self.enabled_servers().pop()
    }

    /// A repeated MMIO access through a guest RAM buffer (`rep movs`): `count` elements
    /// of `size` bytes between MMIO `addr` and RAM `ram`, stepping down if `df`.
    /// Returns whether a server answered.
    #[allow(clippy::too_many_arguments)]
    pub fn mmio_rep(
        &self,
        addr: u64,
        ram: u64,
        size: u8,
        count: u32,
        read: bool,
        df: bool,
    ) -> bool {
        self.rep(
            Space::Mmio,
            IOREQ_TYPE_COPY,
            addr,
            ram,
            size,
            count,
            read,
            df,
        )
    }

    /// A repeated port access through a guest RAM buffer (`rep ins/outs`); the port
    /// stays fixed.
    pub fn pio_rep(&self, port: u16, ram: u64, size: u8, count: u32, read: bool, df: bool) -> bool {
        self.rep(
            Space::Pio,
            IOREQ_TYPE_PIO,
            u64::from(port),
            ram,
            size,
            count,
            read,
            df,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn rep(
        &self,
        space: Space,
        typ: u8,
        addr: u64,
        ram: u64,
        size: u8,
        count: u32,
        read: bool,
        df: bool,
    ) -> bool {
        let sz = u64::from(size);
        let span = u64::from(count.saturating_sub(1)).saturating_mul(sz);
        let (lo, hi) = match space {
            Space::Pio => (addr, addr.saturating_add(sz - 1)),
            _ if df => (addr.saturating_sub(span), addr.saturating_add(sz - 1)),
            _ => (addr, addr.saturating_add(span).saturating_add(sz - 1)),
        };
        let Some(server) = self.dom.select(space, lo, hi) else {
            self.dom.stats.unclaimed.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let req = Ioreq {
            addr,
            data: ram,
            count,
            size: u32::from(size),
            flags: Ioreq::make_flags(STATE_IOREQ_NONE, true, read, df),
            typ,
            ..Ioreq::default()
        };
        self.send(&server, &req).is_some()
    }

    fn cfg_access(&self, bdf: u16, reg: u16, size: u8, read: bool, value: u32) -> u32 {
        if !matches!(size, 1 | 2 | 4) || u32::from(reg) + u32::from(size) > 0x1000 {
            return u32::MAX;
        }
        let sbdf = Sbdf::from_u32(u32::from(bdf));
        let addr = sbdf.ioreq_addr(u32::from(reg));
        let v = self.access(
            Space::PciConfig,
            IOREQ_TYPE_PCI_CONFIG,
            addr,
            size,
            read,
            u64::from(value),
        );
        u32::try_from(v & 0xFFFF_FFFF).unwrap_or(u32::MAX)
    }

    /// Commits a guest CPU write, splitting out pieces for write-protected frames.
    fn ram_write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len() as u64;
        let err = || GuestMemoryError::NotRam { gpa, len };
        if !self.dom.is_ram(gpa, len) {
            return Err(err());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let addr = gpa + done as u64;
            let page_left = usize::try_from(PAGE_SIZE - addr % PAGE_SIZE).unwrap_or(1);
            let n = page_left.min(buf.len() - done);
            let piece = buf.get(done..done + n).ok_or_else(err)?;
            match self.dom.protector(addr >> PAGE_SHIFT) {
                None => self.dom.ram_write(addr, piece)?,
                Some(server) => self.protected_write(&server, addr, piece),
            }
            done += n;
        }
        Ok(())
    }

    /// Xen sends writes to `HVMMEM_ioreq_server` frames as MMIO write ioreqs of at most
    /// 8 bytes and does not perform them.
    fn protected_write(&self, server: &SimServer, gpa: u64, piece: &[u8]) {
        let mut off = 0usize;
        while off < piece.len() {
            let left = piece.len() - off;
            let size = [8usize, 4, 2, 1]
                .into_iter()
                .find(|s| *s <= left)
                .unwrap_or(1);
            let mut b = [0u8; 8];
            if let (Some(dst), Some(src)) = (b.get_mut(..size), piece.get(off..off + size)) {
                dst.copy_from_slice(src);
            }
            let req = Ioreq {
                addr: gpa + off as u64,
                data: u64::from_le_bytes(b),
                count: 1,
                size: size as u32, // 1..=8
                flags: Ioreq::make_flags(STATE_IOREQ_NONE, false, false, false),
                typ: IOREQ_TYPE_COPY,
                ..Ioreq::default()
            };
            self.dom
                .stats
                .protected_writes
                .fetch_add(1, Ordering::Relaxed);
            let _ = self.send(server, &req);
            off += size;
        }
    }

    fn ram_backed(&self, addr: u64, size: u8) -> bool {
        self.dom.is_ram(addr, u64::from(size))
    }
}

impl GuestPort for SimVcpu {
    fn mmio_read(&self, addr: u64, size: u8) -> u64 {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return u64::MAX;
        }
        if self.ram_backed(addr, size) && self.dom.select(Space::Mmio, addr, addr).is_none() {
            let mut b = [0u8; 8];
            let n = usize::from(size);
            return match b.get_mut(..n).map(|d| self.dom.ram_read(addr, d)) {
                Some(Ok(())) => u64::from_le_bytes(b),
                _ => u64::MAX,
            };
        }
        self.access(Space::Mmio, IOREQ_TYPE_COPY, addr, size, true, 0)
    }

    fn mmio_write(&self, addr: u64, size: u8, value: u64) {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return;
        }
        if self.ram_backed(addr, size) && self.dom.select(Space::Mmio, addr, addr).is_none() {
            let b = value.to_le_bytes();
            let _ = b.get(..usize::from(size)).map(|s| self.ram_write(addr, s));
            return;
        }
        let _ = self.access(Space::Mmio, IOREQ_TYPE_COPY, addr, size, false, value);
    }

    fn pio_read(&self, port: u16, size: u8) -> u32 {
        if !matches!(size, 1 | 2 | 4) {
            return u32::MAX;
        }
        let cf8 = *self.dom.cf8.lock().unwrap_or_else(|p| p.into_inner());
        if port == CF8 && size == 4 {
            return cf8;
        }
        if (CFC..=CFC + 3).contains(&port) && cf8 & 0x8000_0000 != 0 {
            let bdf = ((cf8 >> 8) & 0xFFFF) as u16; // masked to 16 bits
            let reg = (cf8 & 0xFC) as u16 | (port & 3); // masked
            return self.cfg_access(bdf, reg, size, true, 0);
        }
        let v = self.access(Space::Pio, IOREQ_TYPE_PIO, u64::from(port), size, true, 0);
        u32::try_from(v & 0xFFFF_FFFF).unwrap_or(u32::MAX)
    }

    fn pio_write(&self, port: u16, size: u8, value: u32) {
        if !matches!(size, 1 | 2 | 4) {
            return;
        }
        let cf8 = {
            let mut g = self.dom.cf8.lock().unwrap_or_else(|p| p.into_inner());
            if port == CF8 && size == 4 {
                *g = value;
                return;
            }
            *g
        };
        if (CFC..=CFC + 3).contains(&port) && cf8 & 0x8000_0000 != 0 {
            let bdf = ((cf8 >> 8) & 0xFFFF) as u16; // masked to 16 bits
            let reg = (cf8 & 0xFC) as u16 | (port & 3); // masked
            self.cfg_access(bdf, reg, size, false, value);
            return;
        }
        let _ = self.access(
            Space::Pio,
            IOREQ_TYPE_PIO,
            u64::from(port),
            size,
            false,
            u64::from(value),
        );
    }

    fn pci_cfg_read(&self, bdf: u16, reg: u16, size: u8) -> u32 {
        self.cfg_access(bdf, reg, size, true, 0)
    }

    fn pci_cfg_write(&self, bdf: u16, reg: u16, size: u8, value: u32) {
        self.cfg_access(bdf, reg, size, false, value);
    }

    fn ram(&self) -> &dyn GuestMemory {
        self
    }

    fn wait_msi(&self, timeout: Duration) -> Option<Msi> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.dom.msi.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(m) = q.pop_front() {
                return Some(m);
            }
            let now = std::time::Instant::now();
            if now >= deadline || self.dom.is_destroyed() {
                return None;
            }
            q = self
                .dom
                .msi_cv
                .wait_timeout(q, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// The guest CPU's view of its RAM: reads are direct, writes to write-protected frames
/// become ioreqs and are not committed.
impl GuestMemory for SimVcpu {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.dom.ram_read(gpa, buf)
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        self.ram_write(gpa, buf)
    }

    fn owns_frame(&self, gfn: u64) -> bool {
        self.dom.owns_frame(gfn)
    }
}
