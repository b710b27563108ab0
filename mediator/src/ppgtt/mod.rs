//! Shadow PPGTTs (spec §4.7, §2 g2v notifications).
//!
//! A guest PPGTT is announced through PVINFO (`g2v_notify` 2–5 with `pdp[]`) or found in a
//! context image at submission. The [`PpgttManager`] copies and validates the guest's
//! tables ([`walk`]), mirrors every valid 4 KiB leaf into a host shadow through
//! [`HostGtt`], and write-protects every table frame with
//! [`Effect::WriteProtect`]. Guest writes to a protected frame arrive as MMIO writes to a
//! RAM address; [`PpgttManager::trapped_write`] commits them to guest RAM and re-shadows
//! every PPGTT that uses the frame.

mod walk;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;
use tracing::debug;

use crate::effects::{Effect, Effects};
use crate::host::{HostError, HostGtt, HostPte, OwnerId, PpgttHandle};
use crate::memory::{GuestMemory, PAGE_SHIFT};

pub use walk::{walk, BadEntry, Leaf, WalkResult};

/// Default limit on table pages per PPGTT (a guest cannot make the walk unbounded).
pub const DEFAULT_MAX_TABLES: usize = 2048;
/// Default limit on live shadows per vGPU.
pub const DEFAULT_MAX_SHADOWS: usize = 64;

/// The root of a guest PPGTT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PpgttRoot {
    /// 3-level (legacy 32-bit): four page-directory addresses.
    L3([u64; 4]),
    /// 4-level (legacy 64-bit): the PML4 address.
    L4(u64),
}

/// Why a shadow could not be built or used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PpgttError {
    /// A table frame could not be copied.
    #[error("page table at GPA {0:#x} is not guest RAM")]
    NotRam(u64),
    /// The tables span more pages than allowed.
    #[error("PPGTT uses more than {0} table pages")]
    TooManyTables(usize),
    /// Too many live shadows for this vGPU.
    #[error("more than {0} shadow PPGTTs")]
    TooManyShadows(usize),
    /// The root is not a frame of this guest.
    #[error("PPGTT root {0:#x} is not guest RAM")]
    BadRoot(u64),
    /// The host refused.
    #[error("host: {0}")]
    Host(HostError),
}

impl From<HostError> for PpgttError {
    fn from(e: HostError) -> Self {
        Self::Host(e)
    }
}

/// Counters for tests and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpgttCounters {
    /// Shadows created.
    pub created: u64,
    /// Shadows destroyed.
    pub destroyed: u64,
    /// Full re-shadows after trapped writes.
    pub reshadows: u64,
    /// Trapped writes to protected frames.
    pub trapped_writes: u64,
    /// Entries pointing outside the guest's RAM (another guest, MMIO, the GTT).
    pub foreign_entries: u64,
    /// Leaves pointing at the PPGTT's own table frames.
    pub table_entries: u64,
    /// Huge-page entries (not advertised).
    pub huge_entries: u64,
}

#[derive(Debug)]
struct Shadow {
    handle: PpgttHandle,
    walk: WalkResult,
}

/// All shadow PPGTTs of one vGPU.
#[derive(Debug)]
pub struct PpgttManager {
    owner: OwnerId,
    shadows: BTreeMap<PpgttRoot, Shadow>,
    protected: BTreeMap<u64, u32>,
    max_tables: usize,
    max_shadows: usize,
    counters: PpgttCounters,
}

impl PpgttManager {
    /// No shadows yet, for the vGPU owned by `owner`.
    pub fn new(owner: OwnerId) -> Self {
        Self {
            owner,
            shadows: BTreeMap::new(),
            protected: BTreeMap::new(),
            max_tables: DEFAULT_MAX_TABLES,
            max_shadows: DEFAULT_MAX_SHADOWS,
            counters: PpgttCounters::default(),
        }
    }

    /// Counters.
    pub fn counters(&self) -> PpgttCounters {
        self.counters
    }

    /// Number of live shadows.
    pub fn len(&self) -> usize {
        self.shadows.len()
    }

    /// Whether no shadow is live.
    pub fn is_empty(&self) -> bool {
        self.shadows.is_empty()
    }

    /// The host handle of an existing shadow.
    pub fn handle(&self, root: PpgttRoot) -> Option<PpgttHandle> {
        self.shadows.get(&root).map(|s| s.handle)
    }

    /// The shadowed leaf for `gma` in the PPGTT rooted at `root` (what the host maps).
    pub fn translate(&self, root: PpgttRoot, gma: u64) -> Option<Leaf> {
        let page = canonical(gma) & !0xfff;
        self.shadows.get(&root)?.walk.leaves.get(&page).copied()
    }

    /// Whether guest-physical `gpa` is a write-protected page-table frame.
    pub fn is_protected(&self, gpa: u64) -> bool {
        self.protected.contains_key(&(gpa >> PAGE_SHIFT))
    }

    /// Creates the shadow for `root` (g2v create), or returns the existing one.
    pub fn create(
        &mut self,
        root: PpgttRoot,
        mem: &dyn GuestMemory,
        host: &mut dyn HostGtt,
        fx: &mut Effects,
    ) -> Result<PpgttHandle, PpgttError> {
        if let Some(s) = self.shadows.get(&root) {
            return Ok(s.handle);
        }
        if self.shadows.len() >= self.max_shadows {
            return Err(PpgttError::TooManyShadows(self.max_shadows));
        }
        if let PpgttRoot::L4(pml4) = root {
            if !mem.owns_frame(pml4 >> PAGE_SHIFT) {
                return Err(PpgttError::BadRoot(pml4));
            }
        }
        let walked = walk(root, mem, self.max_tables)?;
        let handle = host.ppgtt_create(self.owner)?;
        let mut shadow = Shadow {
            handle,
            walk: WalkResult::default(),
        };
        if let Err(e) = self.install(&mut shadow, walked, host, fx) {
            let _ = host.ppgtt_destroy(handle);
            self.release_tables(&shadow.walk.tables, fx);
            return Err(e);
        }
        self.counters.created += 1;
        self.shadows.insert(root, shadow);
        Ok(handle)
    }

    /// Drops the shadow for `root` (g2v destroy). Unknown roots are ignored.
    pub fn destroy(&mut self, root: PpgttRoot, host: &mut dyn HostGtt, fx: &mut Effects) {
        if let Some(s) = self.shadows.remove(&root) {
            let _ = host.ppgtt_destroy(s.handle);
            self.release_tables(&s.walk.tables, fx);
            self.counters.destroyed += 1;
        }
    }

    /// Drops every shadow (vGPU reset or destruction).
    pub fn destroy_all(&mut self, host: &mut dyn HostGtt, fx: &mut Effects) {
        let roots: Vec<PpgttRoot> = self.shadows.keys().copied().collect();
        for r in roots {
            self.destroy(r, host, fx);
        }
    }

    /// A guest write of `data` at `gpa` inside a protected frame: commits it to guest RAM
    /// (the platform did not), then re-shadows every PPGTT that uses the frame.
    pub fn trapped_write(
        &mut self,
        gpa: u64,
        data: &[u8],
        mem: &dyn GuestMemory,
        host: &mut dyn HostGtt,
        fx: &mut Effects,
    ) -> Result<(), PpgttError> {
        self.counters.trapped_writes += 1;
        mem.write(gpa, data).map_err(|_| PpgttError::NotRam(gpa))?;
        let gfn = gpa >> PAGE_SHIFT;
        let affected: Vec<PpgttRoot> = self
            .shadows
            .iter()
            .filter(|(_, s)| s.walk.tables.contains(&gfn))
            .map(|(r, _)| *r)
            .collect();
        for root in affected {
            self.reshadow(root, mem, host, fx)?;
        }
        Ok(())
    }

    /// Re-walks the guest tables of `root` and updates the host shadow by difference.
    pub fn reshadow(
        &mut self,
        root: PpgttRoot,
        mem: &dyn GuestMemory,
        host: &mut dyn HostGtt,
        fx: &mut Effects,
    ) -> Result<(), PpgttError> {
        let Some(mut shadow) = self.shadows.remove(&root) else {
            return Ok(());
        };
        self.counters.reshadows += 1;
        let res = walk(root, mem, self.max_tables)
            .and_then(|walked| self.install(&mut shadow, walked, host, fx));
        match res {
            Ok(()) => {
                self.shadows.insert(root, shadow);
                Ok(())
            }
            Err(e) => {
                // A tree that can no longer be shadowed is dropped entirely.
                let _ = host.ppgtt_destroy(shadow.handle);
                self.release_tables(&shadow.walk.tables, fx);
                self.counters.destroyed += 1;
                Err(e)
            }
        }
    }

    /// Makes `shadow` reflect `walked`: host mappings by difference, protection by
    /// reference count.
    fn install(
        &mut self,
        shadow: &mut Shadow,
        walked: WalkResult,
        host: &mut dyn HostGtt,
        fx: &mut Effects,
    ) -> Result<(), PpgttError> {
        for (kind, gma) in &walked.bad {
            match kind {
                BadEntry::ForeignFrame => self.counters.foreign_entries += 1,
                BadEntry::TableFrame => self.counters.table_entries += 1,
                BadEntry::HugePage => self.counters.huge_entries += 1,
            }
            debug!(
                owner = self.owner,
                ?kind,
                gma = format_args!("{gma:#x}"),
                "PPGTT entry rejected"
            );
        }
        // On a host error the old walk stays recorded, so its protections are released
        // by whoever drops the shadow.
        let old = &shadow.walk;
        for gma in old.leaves.keys().filter(|g| !walked.leaves.contains_key(g)) {
            host.ppgtt_map(shadow.handle, *gma, None)?;
        }
        for (gma, leaf) in &walked.leaves {
            if old.leaves.get(gma) != Some(leaf) {
                let pte = HostPte {
                    owner: self.owner,
                    gfn: leaf.gfn,
                    writable: leaf.writable,
                };
                host.ppgtt_map(shadow.handle, *gma, Some(pte))?;
            }
        }
        let old = std::mem::take(&mut shadow.walk);
        for gfn in walked.tables.difference(&old.tables) {
            self.protect(*gfn, fx);
        }
        let gone: BTreeSet<u64> = old.tables.difference(&walked.tables).copied().collect();
        self.release_tables(&gone, fx);
        shadow.walk = walked;
        Ok(())
    }

    fn protect(&mut self, gfn: u64, fx: &mut Effects) {
        let n = self.protected.entry(gfn).or_insert(0);
        if *n == 0 {
            fx.push(Effect::WriteProtect { gfn, protect: true });
        }
        *n = n.saturating_add(1);
    }

    fn release_tables(&mut self, tables: &BTreeSet<u64>, fx: &mut Effects) {
        for gfn in tables {
            if let Some(n) = self.protected.get_mut(gfn) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.protected.remove(gfn);
                    fx.push(Effect::WriteProtect {
                        gfn: *gfn,
                        protect: false,
                    });
                }
            }
        }
    }
}

/// Drops the sign-extension bits 63:48 of a canonical 48-bit GMA.
pub fn canonical(gma: u64) -> u64 {
    gma & 0x0000_FFFF_FFFF_FFFF
}

#[cfg(test)]
mod tests;
