//! Copy-then-validate walk of a guest PPGTT (spec §4.7): every table page is copied out
//! of guest RAM once, then decoded from the copy; only 4 KiB leaves whose frame the guest
//! owns, and that are not themselves page-table frames, are kept.

use std::collections::{BTreeMap, BTreeSet};

use crate::memory::{GuestMemory, PAGE_SHIFT, PAGE_SIZE};

use super::{PpgttError, PpgttRoot};

/// Entries per table page.
const ENTRIES: usize = 512;
/// Present bit.
const PRESENT: u64 = 1;
/// Read/write bit.
const RW: u64 = 1 << 1;
/// PS bit in a PDE / PDPE (huge page); only valid with `VGT_CAPS_HUGE_GTT`.
const PS: u64 = 1 << 7;
/// Address bits 45:12 (GVT's mask).
const ADDR_MASK: u64 = 0x0000_3FFF_FFFF_F000;

/// A shadowed leaf: the guest frame and whether GPU writes are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Guest frame number.
    pub gfn: u64,
    /// PTE bit 1.
    pub writable: bool,
}

/// Why one entry was not shadowed (counted, never fatal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadEntry {
    /// Points at a frame that is not this guest's RAM (another guest's, MMIO, the GTT).
    ForeignFrame,
    /// A leaf points at one of this PPGTT's own table frames.
    TableFrame,
    /// A huge-page entry (PS / IPS) although huge pages are not advertised.
    HugePage,
}

/// The validated result of one walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkResult {
    /// 4 KiB-page GMA → leaf.
    pub leaves: BTreeMap<u64, Leaf>,
    /// Every table frame read (to write-protect).
    pub tables: BTreeSet<u64>,
    /// Rejected entries, with the GMA (of the covered range) where each was found.
    pub bad: Vec<(BadEntry, u64)>,
}

/// Walks the guest tables under `root`, copying each table page once.
pub fn walk(
    root: PpgttRoot,
    mem: &dyn GuestMemory,
    max_tables: usize,
) -> Result<WalkResult, PpgttError> {
    let mut w = Walker {
        mem,
        max_tables,
        res: WalkResult::default(),
        pending_leaves: Vec::new(),
    };
    match root {
        PpgttRoot::L4(pml4) => w.table(pml4, 4, 0)?,
        PpgttRoot::L3(pdps) => {
            for (i, pdp) in (0u64..).zip(pdps) {
                if pdp & PRESENT != 0 || pdp & ADDR_MASK != 0 {
                    w.table(pdp & ADDR_MASK, 2, i << 30)?;
                }
            }
        }
    }
    // Leaves may only be judged once every table frame is known.
    let pending = std::mem::take(&mut w.pending_leaves);
    for (gma, leaf) in pending {
        if w.res.tables.contains(&leaf.gfn) {
            w.res.bad.push((BadEntry::TableFrame, gma));
        } else {
            w.res.leaves.insert(gma, leaf);
        }
    }
    Ok(w.res)
}

struct Walker<'a> {
    mem: &'a dyn GuestMemory,
    max_tables: usize,
    res: WalkResult,
    pending_leaves: Vec<(u64, Leaf)>,
}

impl Walker<'_> {
    /// `level` 4 = PML4, 3 = PDP, 2 = PD, 1 = PT; `base` = first GMA the table covers.
    fn table(&mut self, gpa: u64, level: u8, base: u64) -> Result<(), PpgttError> {
        let gfn = gpa >> PAGE_SHIFT;
        if !self.mem.owns_frame(gfn) {
            self.res.bad.push((BadEntry::ForeignFrame, base));
            return Ok(());
        }
        if !self.res.tables.insert(gfn) {
            // Shared or cyclic table: already walked (cycles cannot recurse forever).
            return Ok(());
        }
        if self.res.tables.len() > self.max_tables {
            return Err(PpgttError::TooManyTables(self.max_tables));
        }
        let copy = self.copy_page(gfn)?;
        let shift = 12 + 9 * (u32::from(level) - 1);
        for (i, e) in (0u64..).zip(copy) {
            if e & PRESENT == 0 {
                continue;
            }
            let gma = base | (i << shift);
            let next = e & ADDR_MASK;
            match level {
                1 => self.leaf(gma, next >> PAGE_SHIFT, e & RW != 0),
                // PD entries: PS (2 MiB) and IPS (64 KiB) are huge pages; PDPE PS is 1 GiB.
                2 | 3 if e & PS != 0 || (level == 2 && e & (1 << 11) != 0) => {
                    self.res.bad.push((BadEntry::HugePage, gma))
                }
                _ => self.table(next, level - 1, gma)?,
            }
        }
        Ok(())
    }

    fn leaf(&mut self, gma: u64, gfn: u64, writable: bool) {
        if self.mem.owns_frame(gfn) {
            self.pending_leaves.push((gma, Leaf { gfn, writable }));
        } else {
            self.res.bad.push((BadEntry::ForeignFrame, gma));
        }
    }

    fn copy_page(&self, gfn: u64) -> Result<[u64; ENTRIES], PpgttError> {
        let mut raw = vec![0u8; PAGE_SIZE as usize];
        let gpa = gfn << PAGE_SHIFT;
        self.mem
            .read(gpa, &mut raw)
            .map_err(|_| PpgttError::NotRam(gpa))?;
        let mut out = [0u64; ENTRIES];
        for (o, c) in out.iter_mut().zip(raw.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *o = u64::from_le_bytes(b);
        }
        Ok(out)
    }
}
