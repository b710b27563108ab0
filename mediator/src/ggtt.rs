//! The guest's GGTT as seen through BAR0 + 8 MiB (spec §4.2, §4.3).
//!
//! Only the vGPU's two windows are backed: entries whose graphics address lies outside
//! them read 0 and their writes are dropped (the guest writes such entries routinely:
//! hole clears, the guard page). Each backed entry keeps the guest-written 64-bit value
//! (returned on reads, including half-written values); the *effective* mapping is
//! recomputed from the combined value on every write: present bit set and the frame
//! owned by the guest ([`GuestMemory::owns_frame`]). A present entry whose frame the
//! guest does not own is stored for read-back but not applied ([`Ggtt::translate`] gives
//! `None`) and counted.
//!
//! Changes are recorded in a dirty bitmap so a host-GGTT shadow can be synced later with
//! [`Ggtt::take_dirty`].

use serde::{Deserialize, Serialize};

use crate::memory::{GuestMemory, PAGE_SHIFT, PAGE_SIZE};
use crate::partition::GmWindow;

/// Offset of the PTE window inside BAR0.
pub const GGTT_BAR_OFFSET: u64 = 0x80_0000;
/// Size of the PTE window (1 Mi entries × 8 bytes).
pub const GGTT_WINDOW_SIZE: u64 = 0x80_0000;
/// PTE bit 0: present.
pub const PTE_PRESENT: u64 = 1;
/// PTE frame bits (GVT masks 45:12).
pub const PTE_ADDR_MASK: u64 = 0x0000_3fff_ffff_f000;

/// Why a GGTT write was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GgttDrop {
    /// The entry's graphics address is outside the vGPU's windows.
    OutsideWindows,
    /// The entry is present but its frame is not RAM of this guest.
    FrameNotOwned,
    /// Not a naturally aligned 4- or 8-byte access.
    BadAccess,
}

/// Result of a GGTT write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgttWrite {
    /// The entry was updated and its effective mapping recomputed.
    Applied,
    /// Not applied, for this reason.
    Dropped(GgttDrop),
}

/// Per-reason counts, kept by the GGTT itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GgttStats {
    /// Writes applied.
    pub applied: u64,
    /// Writes outside the windows.
    pub dropped_outside: u64,
    /// Present entries whose frame the guest does not own.
    pub dropped_not_owned: u64,
    /// Bad sizes or alignment.
    pub dropped_bad_access: u64,
}

/// A changed entry, for host-GGTT shadow sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GgttChange {
    /// Entry index (graphics address >> 12).
    pub index: u64,
    /// The effective guest-physical page now mapped, if any.
    pub gpa: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WindowTable {
    window: GmWindow,
    entries: Vec<u64>,
    rejected: Vec<u64>,
    dirty: Vec<u64>,
}

fn bit_get(map: &[u64], i: usize) -> bool {
    map.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn bit_set(map: &mut [u64], i: usize, v: bool) {
    if let Some(w) = map.get_mut(i / 64) {
        if v {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }
}

impl WindowTable {
    fn new(window: GmWindow) -> Self {
        let n = usize::try_from(window.size / PAGE_SIZE).unwrap_or(0);
        Self {
            window,
            entries: vec![0; n],
            rejected: vec![0; n.div_ceil(64)],
            dirty: vec![0; n.div_ceil(64)],
        }
    }

    fn slot(&self, index: u64) -> Option<usize> {
        let gm = index.checked_mul(PAGE_SIZE)?;
        if !self.window.contains_range(gm, PAGE_SIZE) {
            return None;
        }
        usize::try_from((gm - self.window.base) / PAGE_SIZE).ok()
    }
}

/// The guest GGTT of one vGPU. Plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ggtt {
    tables: [WindowTable; 2],
    stats: GgttStats,
}

impl Ggtt {
    /// An empty GGTT backing the `low` and `high` windows.
    pub fn new(low: GmWindow, high: GmWindow) -> Self {
        Self {
            tables: [WindowTable::new(low), WindowTable::new(high)],
            stats: GgttStats::default(),
        }
    }

    /// Per-reason counts.
    pub fn stats(&self) -> &GgttStats {
        &self.stats
    }

    /// Clears every entry (device reset); marks the previously valid ones dirty.
    pub fn clear(&mut self) {
        for t in &mut self.tables {
            for i in 0..t.entries.len() {
                if t.entries[i] != 0 {
                    bit_set(&mut t.dirty, i, true);
                }
            }
            t.entries.fill(0);
            t.rejected.fill(0);
        }
    }

    fn locate(&self, index: u64) -> Option<(usize, usize)> {
        (0..2).find_map(|w| self.tables[w].slot(index).map(|s| (w, s)))
    }

    /// The guest-written value of entry `index` (0 outside the windows).
    pub fn entry(&self, index: u64) -> u64 {
        self.locate(index)
            .and_then(|(w, s)| self.tables[w].entries.get(s).copied())
            .unwrap_or(0)
    }

    /// Serves a guest read at `offset` inside the PTE window. Returns false (and fills
    /// all-ones) for anything but a naturally aligned 4- or 8-byte access.
    pub fn read(&self, offset: u64, data: &mut [u8]) -> bool {
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            data.fill(0xff);
            return false;
        }
        let value = self.entry(offset / 8) >> ((offset % 8) * 8);
        crate::bus::set_le_value(data, value);
        true
    }

    /// Serves a guest write at `offset` inside the PTE window (§4.3).
    pub fn write(&mut self, offset: u64, data: &[u8], mem: &dyn GuestMemory) -> GgttWrite {
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            self.stats.dropped_bad_access += 1;
            return GgttWrite::Dropped(GgttDrop::BadAccess);
        }
        let Some((w, s)) = self.locate(offset / 8) else {
            self.stats.dropped_outside += 1;
            return GgttWrite::Dropped(GgttDrop::OutsideWindows);
        };
        let v = crate::bus::le_value(data);
        let t = &mut self.tables[w];
        let Some(slot) = t.entries.get_mut(s) else {
            self.stats.dropped_outside += 1;
            return GgttWrite::Dropped(GgttDrop::OutsideWindows);
        };
        let new = match (data.len(), offset % 8) {
            (8, _) => v,
            (_, 0) => (*slot & !0xffff_ffff) | v,
            _ => (*slot & 0xffff_ffff) | (v << 32),
        };
        *slot = new;
        bit_set(&mut t.dirty, s, true);
        let owned = new & PTE_PRESENT == 0 || mem.owns_frame((new & PTE_ADDR_MASK) >> PAGE_SHIFT);
        bit_set(&mut t.rejected, s, !owned);
        if owned {
            self.stats.applied += 1;
            GgttWrite::Applied
        } else {
            self.stats.dropped_not_owned += 1;
            GgttWrite::Dropped(GgttDrop::FrameNotOwned)
        }
    }

    /// Effective guest-physical page of entry `index`, if present and owned.
    pub fn entry_gpa(&self, index: u64) -> Option<u64> {
        let (w, s) = self.locate(index)?;
        let t = &self.tables[w];
        let e = *t.entries.get(s)?;
        (e & PTE_PRESENT != 0 && !bit_get(&t.rejected, s)).then_some(e & PTE_ADDR_MASK)
    }

    /// Translates a graphics address through the effective GGTT to a guest-physical
    /// address.
    pub fn translate(&self, gm_addr: u64) -> Option<u64> {
        let page = self.entry_gpa(gm_addr >> PAGE_SHIFT)?;
        Some(page | (gm_addr & (PAGE_SIZE - 1)))
    }

    /// Every effective entry as (index, guest-physical page), in index order.
    pub fn valid_entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.tables.iter().flat_map(|t| {
            let first = t.window.base / PAGE_SIZE;
            t.entries
                .iter()
                .enumerate()
                .filter(move |&(s, &e)| e & PTE_PRESENT != 0 && !bit_get(&t.rejected, s))
                .map(move |(s, &e)| (first + s as u64, e & PTE_ADDR_MASK))
        })
    }

    /// Entries changed since the last call, with their effective mapping; clears the log.
    pub fn take_dirty(&mut self) -> Vec<GgttChange> {
        let mut out = Vec::new();
        for w in 0..2 {
            let first = self.tables[w].window.base / PAGE_SIZE;
            let words = self.tables[w].dirty.len();
            for wi in 0..words {
                let mut bits = std::mem::take(&mut self.tables[w].dirty[wi]);
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let s = wi * 64 + b;
                    let index = first + s as u64;
                    out.push(GgttChange {
                        index,
                        gpa: self.entry_gpa(index),
                    });
                }
            }
        }
        out
    }
}

impl crate::execlist::GgttLookup for Ggtt {
    fn gma_to_gpa(&self, gma: u64) -> Option<u64> {
        self.translate(gma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use crate::partition::MIB;

    fn ggtt() -> Ggtt {
        Ggtt::new(
            GmWindow {
                base: 128 * MIB,
                size: 4 * MIB,
            },
            GmWindow {
                base: 1024 * MIB,
                size: 4 * MIB,
            },
        )
    }

    fn off(gm: u64) -> u64 {
        (gm >> 12) * 8
    }

    #[test]
    fn writes_outside_windows_are_dropped_and_read_zero() {
        let mem = VecMemory::new(16 * MIB);
        let mut g = ggtt();
        assert_eq!(
            g.write(off(0), &0x2001u64.to_le_bytes(), &mem),
            GgttWrite::Dropped(GgttDrop::OutsideWindows)
        );
        assert_eq!(g.stats().dropped_outside, 1);
        let mut d = [0xaau8; 8];
        assert!(g.read(off(0), &mut d));
        assert_eq!(d, [0; 8]);
        // Last entry of the GGTT (guard page).
        assert_eq!(
            g.write(0x7f_fff8, &1u64.to_le_bytes(), &mem),
            GgttWrite::Dropped(GgttDrop::OutsideWindows)
        );
    }

    #[test]
    fn inside_windows_translate_and_log_changes() {
        let mem = VecMemory::new(16 * MIB);
        let mut g = ggtt();
        let gm = 128 * MIB + 0x3000;
        assert_eq!(
            g.write(off(gm), &0x5001u64.to_le_bytes(), &mem),
            GgttWrite::Applied
        );
        assert_eq!(g.translate(gm + 0x12), Some(0x5012));
        let mut d = [0u8; 4];
        assert!(g.read(off(gm), &mut d));
        assert_eq!(u32::from_le_bytes(d), 0x5001);
        assert_eq!(
            g.valid_entries().collect::<Vec<_>>(),
            vec![(gm >> 12, 0x5000)]
        );
        let dirty = g.take_dirty();
        assert_eq!(
            dirty,
            vec![GgttChange {
                index: gm >> 12,
                gpa: Some(0x5000)
            }]
        );
        assert!(g.take_dirty().is_empty());
    }

    #[test]
    fn unowned_frames_are_stored_but_not_applied() {
        let mem = VecMemory::new(16 * MIB);
        let mut g = ggtt();
        let gm = 1024 * MIB;
        let pte = (64 * MIB) | 1;
        assert_eq!(
            g.write(off(gm), &pte.to_le_bytes(), &mem),
            GgttWrite::Dropped(GgttDrop::FrameNotOwned)
        );
        assert_eq!(g.stats().dropped_not_owned, 1);
        assert_eq!(g.entry(gm >> 12), pte);
        assert_eq!(g.translate(gm), None);
    }

    #[test]
    fn half_writes_combine() {
        let mem = VecMemory::new(16 * MIB);
        let mut g = ggtt();
        let gm = 1024 * MIB + 0x1000;
        // High half first (0), then low half.
        g.write(off(gm) + 4, &0u32.to_le_bytes(), &mem);
        assert_eq!(g.translate(gm), None);
        g.write(off(gm), &0x7001u32.to_le_bytes(), &mem);
        assert_eq!(g.translate(gm), Some(0x7000));
        // A high half pointing outside RAM invalidates the combined entry.
        assert_eq!(
            g.write(off(gm) + 4, &1u32.to_le_bytes(), &mem),
            GgttWrite::Dropped(GgttDrop::FrameNotOwned)
        );
        assert_eq!(g.translate(gm), None);
        assert_eq!(
            g.write(off(gm) + 2, &[0, 0], &mem),
            GgttWrite::Dropped(GgttDrop::BadAccess)
        );
        g.clear();
        assert_eq!(g.entry(gm >> 12), 0);
    }
}
