//! RAM-backed GGTT PTE window (issue 8, recipe `nested-xen-hvm-i915.md` §5 step 1).
//!
//! # Why
//! i915 rewrites every one of the 1 Mi GGTT PTEs (BAR0 + 8 MiB .. + 16 MiB) at probe
//! (hole clears), on the wedge path and on every resume (`i915_ggtt_resume_vm`). Trapping
//! each 8-byte write costs a full ioreq round trip: about an hour per rewrite under
//! nested TCG, minutes even on bare metal.
//!
//! # Design
//! In [`GgttBacking::Ram`] mode the upper half of BAR0 is *guest RAM*:
//! * When the guest programs BAR0 (memory decode on, real address), the vGPU returns
//!   [`Effect::PopulateRam`] for `BAR0 + 8 MiB .. + 16 MiB` and [`Effect::Trap`] for the
//!   register half `BAR0 .. + 8 MiB` only. The backend makes the range ordinary RAM of the
//!   domain (real Xen: raise `maxmem`, `populate_physmap_exact` of the 2048 frames inside
//!   the MMIO hole; simulated Xen: an extra RAM region). The guest's PTE reads and writes
//!   then go straight to that RAM and never trap.
//! * The RAM stays while the BAR keeps its address (decode toggles during PCI sizing do
//!   not repopulate it). A BAR0 move returns [`Effect::ReleaseRam`] for the old range and
//!   `PopulateRam` for the new one, and clears the vGPU's GGTT (the new RAM is zeroed, so
//!   the model and the guest-visible entries stay equal). A device reset releases it.
//! * The mediator *pulls* the entries into its [`crate::ggtt::Ggtt`] (and so, through
//!   its dirty log, into the host GGTT) at the points where the hardware could use them:
//!   - the guest's GGTT flush (`GFX_FLSH_CNTL` 101008 write, spec §4.6): the whole
//!     window ([`SyncScope::All`]), so out-of-window writes are seen and counted too;
//!   - before each ELSP submission and before a scanout: only the pages holding the
//!     vGPU's own windows ([`SyncScope::Windows`]), since nothing else can be applied.
//! * Only what changed is applied: [`RamGgtt`] keeps a snapshot of the last value seen
//!   for every entry; each page (512 entries) is copied out of guest RAM once and only
//!   differing entries are fed to the same path as a trapped 8-byte PTE write. The same
//!   isolation rules therefore hold: entries outside the vGPU's windows are never
//!   applied (`ggtt_dropped_outside`), present entries whose frame the guest does not own
//!   are stored but not applied (`ggtt_dropped_not_owned`). Pages that cannot be read
//!   (the guest ballooned them out, the populate failed) are counted and skipped.
//! * The guest reads back whatever it wrote, also outside its windows (a trapped window
//!   reads 0 there); i915 never relies on that.
//!
//! The snapshot is a cache, not state: after a restore it starts at zero and the next
//! sync re-reads everything.

use serde::{Deserialize, Serialize};

use crate::bus::GuestRange;
use crate::ggtt::GGTT_WINDOW_SIZE;
use crate::memory::{GuestMemory, PAGE_SIZE};
use crate::partition::GmWindow;

/// PTEs per 4 KiB page of the PTE window.
pub const PTES_PER_PAGE: u64 = PAGE_SIZE / 8;
/// Pages of the PTE window (2048).
pub const WINDOW_PAGES: u64 = GGTT_WINDOW_SIZE / PAGE_SIZE;
/// Graphics memory covered by one page of PTEs (2 MiB).
const GM_PER_PAGE: u64 = PTES_PER_PAGE * PAGE_SIZE;

/// How the GGTT PTE window (BAR0 + 8 MiB) reaches the vGPU. Chosen at creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GgttBacking {
    /// Every PTE access traps (default; PVH guests, tests).
    #[default]
    Trapped,
    /// The window is guest RAM; entries are pulled at flush, submission and scanout.
    Ram,
}

/// Which pages a sync reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncScope {
    /// Only pages holding entries of the vGPU's windows.
    Windows,
    /// The whole 8 MiB window.
    All,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GgttSyncReport {
    /// Pages copied out of guest RAM.
    pub pages_read: u64,
    /// Pages with at least one changed entry.
    pub pages_changed: u64,
    /// Entries whose value changed (each fed to the PTE write path once).
    pub entries_changed: u64,
    /// Pages that could not be read.
    pub read_errors: u64,
}

/// The RAM-backed PTE window of one vGPU: where it is and the last values seen.
#[derive(Clone, Debug)]
pub struct RamGgtt {
    gpa: u64,
    /// Little-endian bytes of the whole window as last seen (a page compares with one
    /// memcmp; only differing pages are decoded).
    snapshot: Vec<u8>,
}

impl RamGgtt {
    /// A window at guest-physical `gpa` (page-aligned), whose RAM is fresh (all zero).
    pub fn new(gpa: u64) -> Self {
        let n = usize::try_from(GGTT_WINDOW_SIZE).unwrap_or(0);
        Self {
            gpa,
            snapshot: vec![0; n],
        }
    }

    /// Guest-physical base of the window.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The guest-physical range the window occupies.
    pub fn range(&self) -> Option<GuestRange> {
        GuestRange::new(self.gpa, GGTT_WINDOW_SIZE)
    }

    /// The last value seen for entry `index` (0 if never seen or out of range).
    pub fn last_seen(&self, index: u64) -> u64 {
        let at = usize::try_from(index).ok().and_then(|i| i.checked_mul(8));
        at.and_then(|a| self.snapshot.get(a..a.checked_add(8)?))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// Page indices (within the window) a sync of `scope` reads, ascending, no repeats.
    pub fn pages(scope: SyncScope, windows: &[GmWindow]) -> Vec<u64> {
        match scope {
            SyncScope::All => (0..WINDOW_PAGES).collect(),
            SyncScope::Windows => {
                let mut want = vec![false; usize::try_from(WINDOW_PAGES).unwrap_or(0)];
                for w in windows.iter().filter(|w| w.size > 0) {
                    let first = w.base / GM_PER_PAGE;
                    let end = w.base.saturating_add(w.size).div_ceil(GM_PER_PAGE);
                    for p in first..end.min(WINDOW_PAGES) {
                        if let Some(slot) = usize::try_from(p).ok().and_then(|i| want.get_mut(i)) {
                            *slot = true;
                        }
                    }
                }
                (0..WINDOW_PAGES)
                    .filter(|&p| usize::try_from(p).is_ok_and(|i| want.get(i) == Some(&true)))
                    .collect()
            }
        }
    }

    /// Copies the pages of `scope` out of guest RAM and calls `apply(offset, value)` for
    /// every entry that differs from the last value seen, with `offset` the byte offset in
    /// the PTE window (what a trapped write would have had). Each page is copied once
    /// before it is compared (no double fetch).
    pub fn sync(
        &mut self,
        scope: SyncScope,
        windows: &[GmWindow],
        mem: &dyn GuestMemory,
        mut apply: impl FnMut(u64, u64),
    ) -> GgttSyncReport {
        let mut report = GgttSyncReport::default();
        let mut page = [0u8; PAGE_SIZE as usize];
        for p in Self::pages(scope, windows) {
            let Some(gpa) = p
                .checked_mul(PAGE_SIZE)
                .and_then(|o| self.gpa.checked_add(o))
            else {
                report.read_errors += 1;
                continue;
            };
            if mem.read(gpa, &mut page).is_err() {
                report.read_errors += 1;
                continue;
            }
            report.pages_read += 1;
            let Some(old) = usize::try_from(p * PAGE_SIZE)
                .ok()
                .and_then(|o| self.snapshot.get_mut(o..o + page.len()))
            else {
                continue;
            };
            if old[..] == page[..] {
                continue;
            }
            let first = p * PTES_PER_PAGE;
            let mut changed = false;
            for (k, (new, seen)) in page
                .chunks_exact(8)
                .zip(old.chunks_exact_mut(8))
                .enumerate()
            {
                if new != seen {
                    seen.copy_from_slice(new);
                    let mut b = [0u8; 8];
                    b.copy_from_slice(new);
                    changed = true;
                    report.entries_changed += 1;
                    apply((first + k as u64) * 8, u64::from_le_bytes(b));
                }
            }
            if changed {
                report.pages_changed += 1;
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use crate::partition::MIB;

    const GPA: u64 = 16 * MIB;

    fn windows() -> [GmWindow; 2] {
        [
            GmWindow {
                base: 128 * MIB,
                size: 64 * MIB,
            },
            GmWindow {
                base: 1024 * MIB + MIB,
                size: 3 * MIB,
            },
        ]
    }

    #[test]
    fn window_pages_cover_both_windows_and_nothing_else() {
        let p = RamGgtt::pages(SyncScope::Windows, &windows());
        // 64 MiB at 128 MiB: pages 64..96; 3 MiB at 1025 MiB: pages 512 and 513 (partial ends).
        let want: Vec<u64> = (64..96).chain(512..514).collect();
        assert_eq!(p, want);
        assert_eq!(RamGgtt::pages(SyncScope::All, &windows()).len(), 2048);
        // A window reaching past 4 GiB is clipped, not a panic.
        let huge = [GmWindow {
            base: 4095 * MIB,
            size: u64::MAX - 4095 * MIB,
        }];
        assert_eq!(RamGgtt::pages(SyncScope::Windows, &huge), vec![2047]);
    }

    #[test]
    fn only_changed_entries_are_applied_once() {
        let mem = VecMemory::new(32 * MIB);
        let mut r = RamGgtt::new(GPA);
        let idx = (128 * MIB) >> 12;
        mem.write_u64(GPA + idx * 8, 0x5001).unwrap();
        mem.write_u64(GPA + (idx + 3) * 8, 0x6001).unwrap();
        let mut seen = Vec::new();
        let rep = r.sync(SyncScope::Windows, &windows(), &mem, |o, v| {
            seen.push((o, v))
        });
        assert_eq!(seen, vec![(idx * 8, 0x5001), ((idx + 3) * 8, 0x6001)]);
        assert_eq!(rep.entries_changed, 2);
        assert_eq!(rep.pages_changed, 1);
        assert_eq!(rep.pages_read, 34);
        seen.clear();
        let rep = r.sync(SyncScope::Windows, &windows(), &mem, |o, v| {
            seen.push((o, v))
        });
        assert!(seen.is_empty());
        assert_eq!(rep.entries_changed, 0);
        assert_eq!(r.last_seen(idx), 0x5001);
    }

    #[test]
    fn out_of_window_entries_are_seen_only_by_a_full_sync() {
        let mem = VecMemory::new(32 * MIB);
        let mut r = RamGgtt::new(GPA);
        mem.write_u64(GPA, 0x2100001).unwrap();
        mem.write_u64(GPA + GGTT_WINDOW_SIZE - 8, 0x2100001)
            .unwrap();
        let mut n = 0;
        r.sync(SyncScope::Windows, &windows(), &mem, |_, _| n += 1);
        assert_eq!(n, 0);
        let mut seen = Vec::new();
        r.sync(SyncScope::All, &windows(), &mem, |o, _| seen.push(o));
        assert_eq!(seen, vec![0, GGTT_WINDOW_SIZE - 8]);
    }

    #[test]
    fn unreadable_pages_are_counted_and_skipped() {
        // RAM ends inside the window: the upper pages cannot be read.
        let mem = VecMemory::new(GPA + 4 * PAGE_SIZE);
        let mut r = RamGgtt::new(GPA);
        let rep = r.sync(SyncScope::All, &[], &mem, |_, _| {});
        assert_eq!(rep.pages_read, 4);
        assert_eq!(rep.read_errors, 2044);
        // A window at the top of the address space does not overflow.
        let mut top = RamGgtt::new(u64::MAX - PAGE_SIZE + 1);
        let rep = top.sync(SyncScope::All, &[], &mem, |_, _| {});
        assert_eq!(rep.read_errors, 2048);
        assert_eq!(top.range(), None);
    }
}
