//! The software host's page tables and the only path from a graphics address to guest RAM.
//!
//! The host GGTT has 1 Mi entries (4 GiB / 4 KiB, §4.1), stored sparsely. Shadow PPGTTs
//! map 4 KiB pages of a 48-bit space. A page resolves to guest RAM only if its entry names
//! a frame of the workload's own owner; anything else is an [`FaultReason::Unmapped`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::host::{AddressSpace, FaultReason, HostPte, OwnerId, PpgttHandle};
use crate::memory::{GuestMemory, PAGE_SHIFT, PAGE_SIZE};

/// Number of host GGTT entries (4 GiB of graphics memory).
pub const GGTT_ENTRIES: u64 = 1 << 20;

/// A shadow PPGTT: 4 KiB page number → frame.
#[derive(Debug, Default)]
pub(crate) struct Ppgtt {
    pub owner: OwnerId,
    pub pages: HashMap<u64, HostPte>,
}

/// Page tables plus the per-owner memory registry.
#[derive(Default)]
pub(crate) struct Tables {
    pub ggtt: HashMap<u64, HostPte>,
    pub ppgtts: HashMap<PpgttHandle, Ppgtt>,
    pub memory: HashMap<OwnerId, Arc<dyn GuestMemory>>,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("ggtt_entries", &self.ggtt.len())
            .field("ppgtts", &self.ppgtts.len())
            .field("owners", &self.memory.len())
            .finish()
    }
}

/// A view of the tables for one workload: resolves and copies through its owner's frames.
pub(crate) struct Access<'a> {
    pub tables: &'a Tables,
    pub owner: OwnerId,
    pub ppgtt: Option<PpgttHandle>,
    /// Writes dropped because the PPGTT page was read-only.
    pub dropped_writes: u32,
}

fn unmapped(space: AddressSpace, gma: u64) -> FaultReason {
    FaultReason::Unmapped { space, gma }
}

impl Access<'_> {
    /// The address space a command bit selects: GGTT, or the workload's PPGTT.
    pub fn space(&self, ggtt: bool) -> Result<AddressSpace, FaultReason> {
        if ggtt {
            return Ok(AddressSpace::Ggtt);
        }
        self.ppgtt
            .map(AddressSpace::Ppgtt)
            .ok_or(unmapped(AddressSpace::Ggtt, 0))
    }

    fn pte(&self, space: AddressSpace, gma: u64) -> Result<HostPte, FaultReason> {
        let page = gma >> PAGE_SHIFT;
        let pte = match space {
            AddressSpace::Ggtt if page < GGTT_ENTRIES => self.tables.ggtt.get(&page),
            AddressSpace::Ggtt => None,
            AddressSpace::Ppgtt(h) => self
                .tables
                .ppgtts
                .get(&h)
                .filter(|p| p.owner == self.owner)
                .and_then(|p| p.pages.get(&(page & 0xF_FFFF_FFFF))),
        };
        pte.copied()
            .filter(|p| p.owner == self.owner)
            .ok_or(unmapped(space, gma))
    }

    fn memory(&self) -> Result<&Arc<dyn GuestMemory>, FaultReason> {
        self.tables
            .memory
            .get(&self.owner)
            .ok_or_else(|| FaultReason::Memory(format!("owner {} has no memory", self.owner)))
    }

    /// Calls `f(gpa, range in buf, pte)` for each page-contiguous piece of `[gma, +len)`.
    fn pieces(
        &self,
        space: AddressSpace,
        gma: u64,
        len: usize,
        mut f: impl FnMut(u64, std::ops::Range<usize>, HostPte) -> Result<(), FaultReason>,
    ) -> Result<(), FaultReason> {
        let mut done = 0usize;
        while done < len {
            let addr = gma.checked_add(done as u64).ok_or(unmapped(space, gma))?;
            let in_page = (PAGE_SIZE - addr % PAGE_SIZE) as usize;
            let n = in_page.min(len - done);
            let pte = self.pte(space, addr)?;
            let gpa = pte
                .gfn
                .checked_mul(PAGE_SIZE)
                .and_then(|b| b.checked_add(addr % PAGE_SIZE))
                .ok_or(unmapped(space, addr))?;
            f(gpa, done..done + n, pte)?;
            done += n;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at `gma` out of guest RAM.
    pub fn read(&self, space: AddressSpace, gma: u64, buf: &mut [u8]) -> Result<(), FaultReason> {
        let mem = self.memory()?;
        let len = buf.len();
        self.pieces(space, gma, len, |gpa, r, _| {
            let chunk = buf.get_mut(r).ok_or(unmapped(space, gma))?;
            mem.read(gpa, chunk)
                .map_err(|e| FaultReason::Memory(e.to_string()))
        })
    }

    /// Copies `buf` into guest RAM at `gma`; pieces on read-only PPGTT pages are dropped.
    pub fn write(&mut self, space: AddressSpace, gma: u64, buf: &[u8]) -> Result<(), FaultReason> {
        let mem = Arc::clone(self.memory()?);
        let mut dropped = 0u32;
        self.pieces(space, gma, buf.len(), |gpa, r, pte| {
            if !pte.writable {
                dropped = dropped.saturating_add(1);
                return Ok(());
            }
            let chunk = buf.get(r).ok_or(unmapped(space, gma))?;
            mem.write(gpa, chunk)
                .map_err(|e| FaultReason::Memory(e.to_string()))
        })?;
        self.dropped_writes = self.dropped_writes.saturating_add(dropped);
        Ok(())
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, space: AddressSpace, gma: u64) -> Result<u32, FaultReason> {
        let mut b = [0u8; 4];
        self.read(space, gma, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}
