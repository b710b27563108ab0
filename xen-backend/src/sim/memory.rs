//! Guest-physical memory of a simulated domain: the RAM at 0 plus extra RAM regions
//! populated at run time (e.g. inside the MMIO hole for the RAM-backed GGTT window), as
//! `XENMEM_populate_physmap` does on a real Xen after `setmaxmem`.

use std::sync::Arc;

use mediator::memory::{GuestMemory, GuestMemoryError, VecMemory, PAGE_SIZE};

use crate::sim::domain::Domain;

/// Most extra RAM a simulated domain may have populated at once ("maxmem" headroom).
pub const SIM_MAX_EXTRA_RAM: u64 = 64 << 20;

/// One populated region.
#[derive(Debug)]
pub(crate) struct ExtraRam {
    pub first_gfn: u64,
    pub count: u64,
    pub mem: Arc<VecMemory>,
}

impl ExtraRam {
    fn contains(&self, gpa: u64, len: u64) -> Option<u64> {
        let base = self.first_gfn.checked_mul(PAGE_SIZE)?;
        let size = self.count.checked_mul(PAGE_SIZE)?;
        let off = gpa.checked_sub(base)?;
        (off.checked_add(len)? <= size).then_some(off)
    }
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

impl Domain {
    fn extra_read(&self) -> std::sync::RwLockReadGuard<'_, Vec<ExtraRam>> {
        self.extra.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The memory holding `[gpa, gpa+len)` entirely, and the offset in it.
    fn locate(&self, gpa: u64, len: u64) -> Option<(Arc<VecMemory>, u64)> {
        if gpa.checked_add(len).is_some_and(|e| e <= self.ram_bytes) {
            return Some((Arc::clone(&self.ram), gpa));
        }
        self.extra_read()
            .iter()
            .find_map(|r| r.contains(gpa, len).map(|off| (Arc::clone(&r.mem), off)))
    }

    /// Whether `[gpa, gpa+len)` is RAM of the domain (one region).
    pub fn is_ram(&self, gpa: u64, len: u64) -> bool {
        self.locate(gpa, len).is_some()
    }

    /// Unprotected read of guest RAM.
    pub fn ram_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len() as u64;
        let (m, off) = self
            .locate(gpa, len)
            .ok_or(GuestMemoryError::NotRam { gpa, len })?;
        m.read(off, buf)
    }

    /// Unprotected write of guest RAM.
    pub fn ram_write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len() as u64;
        let (m, off) = self
            .locate(gpa, len)
            .ok_or(GuestMemoryError::NotRam { gpa, len })?;
        m.write(off, buf)
    }

    /// Whether frame `gfn` is RAM of the domain.
    pub fn owns_frame(&self, gfn: u64) -> bool {
        gfn.checked_mul(PAGE_SIZE)
            .is_some_and(|a| self.is_ram(a, PAGE_SIZE))
    }

    /// Populates (`true`) or releases a region of extra RAM. A populate must not overlap
    /// RAM (EEXIST) and must fit the headroom (ENOMEM); a release must name a populated
    /// region exactly (ENOENT).
    pub fn populate(&self, first_gfn: u64, count: u64, populate: bool) -> std::io::Result<()> {
        let mut extra = self.extra.write().unwrap_or_else(|p| p.into_inner());
        if !populate {
            let i = extra
                .iter()
                .position(|r| r.first_gfn == first_gfn && r.count == count)
                .ok_or_else(|| errno(libc::ENOENT))?;
            extra.remove(i);
            return Ok(());
        }
        let bytes = count
            .checked_mul(PAGE_SIZE)
            .filter(|&b| b > 0)
            .ok_or_else(|| errno(libc::EINVAL))?;
        let base = first_gfn
            .checked_mul(PAGE_SIZE)
            .filter(|b| b.checked_add(bytes).is_some())
            .ok_or_else(|| errno(libc::EINVAL))?;
        let used: u64 = extra.iter().map(|r| r.count * PAGE_SIZE).sum();
        if used.saturating_add(bytes) > SIM_MAX_EXTRA_RAM {
            return Err(errno(libc::ENOMEM));
        }
        let overlaps_ram = base < self.ram_bytes;
        let overlaps_extra = extra.iter().any(|r| {
            first_gfn < r.first_gfn.saturating_add(r.count)
                && r.first_gfn < first_gfn.saturating_add(count)
        });
        if overlaps_ram || overlaps_extra {
            return Err(errno(libc::EEXIST));
        }
        extra.push(ExtraRam {
            first_gfn,
            count,
            mem: Arc::new(VecMemory::new(bytes)),
        });
        Ok(())
    }

    /// Populated extra regions as (first gfn, frame count).
    pub fn extra_regions(&self) -> Vec<(u64, u64)> {
        self.extra_read()
            .iter()
            .map(|r| (r.first_gfn, r.count))
            .collect()
    }
}

/// The domain's RAM as "Xen" sees it (no write protection), RAM at 0 plus extra regions.
#[derive(Debug)]
pub(crate) struct DomainRam(pub Arc<Domain>);

impl GuestMemory for DomainRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.0.ram_read(gpa, buf)
    }
    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        self.0.ram_write(gpa, buf)
    }
    fn owns_frame(&self, gfn: u64) -> bool {
        self.0.owns_frame(gfn)
    }
}
