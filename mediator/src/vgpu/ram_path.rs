//! The vGPU side of the RAM-backed GGTT window ([`crate::ggtt_ram`]): rewriting the BAR0
//! trap effects into "trap the register half, populate the PTE half", and pulling the
//! entries at the guest's flush, before submissions and before scanout.

use std::sync::Arc;

use crate::bus::{GuestRange, Space};
use crate::counters::VgpuCounters;
use crate::display::fb::Frame;
use crate::display::FbError;
use crate::effects::{Effect, Effects};
use crate::ggtt::{GgttDrop, GgttWrite, GGTT_BAR_OFFSET, GGTT_WINDOW_SIZE};
use crate::ggtt_ram::{GgttBacking, GgttSyncReport, RamGgtt, SyncScope};

use super::Vgpu;

/// Counts the outcome of one PTE write (trapped, or found changed in the RAM window).
pub(super) fn count_ggtt_write(c: &mut VgpuCounters, r: GgttWrite) {
    match r {
        GgttWrite::Applied => c.ggtt_writes_applied += 1,
        GgttWrite::Dropped(GgttDrop::OutsideWindows) => c.ggtt_dropped_outside += 1,
        GgttWrite::Dropped(GgttDrop::FrameNotOwned) => c.ggtt_dropped_not_owned += 1,
        GgttWrite::Dropped(GgttDrop::BadAccess) => c.ggtt_dropped_bad_access += 1,
    }
}

/// The register half and the PTE half of a BAR0 range.
fn halves(bar0: GuestRange) -> (Option<GuestRange>, Option<GuestRange>) {
    let regs = GuestRange::new(bar0.base(), GGTT_BAR_OFFSET);
    let ptes = bar0
        .base()
        .checked_add(GGTT_BAR_OFFSET)
        .and_then(|b| GuestRange::new(b, GGTT_WINDOW_SIZE));
    (regs, ptes)
}

impl Vgpu {
    /// How the GGTT PTE window is backed (fixed at creation).
    pub fn ggtt_backing(&self) -> GgttBacking {
        self.config.ggtt_backing
    }

    /// The guest-physical range currently populated as the RAM-backed PTE window.
    pub fn ggtt_ram_range(&self) -> Option<GuestRange> {
        self.ram_ggtt.as_ref().and_then(RamGgtt::range)
    }

    /// Pulls changed entries of the RAM-backed PTE window into the GGTT, applying the
    /// same rules (and counters) as trapped PTE writes. A no-op in trapped mode.
    pub fn sync_ggtt(&mut self, scope: SyncScope) -> GgttSyncReport {
        let Some(ram) = self.ram_ggtt.as_mut() else {
            return GgttSyncReport::default();
        };
        let windows = [self.config.allocation.low, self.config.allocation.high];
        let mem = Arc::clone(&self.mem);
        let ggtt = &mut self.state.ggtt;
        let c = &mut self.state.counters;
        let report = ram.sync(scope, &windows, mem.as_ref(), |off, v| {
            count_ggtt_write(c, ggtt.write(off, &v.to_le_bytes(), mem.as_ref()));
        });
        c.ggtt_ram_syncs += 1;
        c.ggtt_ram_pages_read += report.pages_read;
        c.ggtt_ram_entries_changed += report.entries_changed;
        c.ggtt_ram_read_errors += report.read_errors;
        if report.read_errors > 0 {
            tracing::debug!(
                vgpu = self.config.id,
                pages = report.read_errors,
                "RAM-backed GGTT pages unreadable"
            );
        }
        report
    }

    /// [`Vgpu::scanout`] after pulling the vGPU's GGTT windows from RAM.
    pub fn scanout_fresh(&mut self) -> Result<Frame, FbError> {
        self.sync_ggtt(SyncScope::Windows);
        self.scanout()
    }

    /// Re-derives the RAM window from the config space (after a restore).
    pub(super) fn restore_ram_ggtt(&mut self) {
        self.ram_ggtt = None;
        if self.config.ggtt_backing == GgttBacking::Ram {
            let bar0 = self.state.pci.trapped(crate::pci::BarId::Bar0);
            if let Some(ptes) = bar0.and_then(|b| halves(b).1) {
                self.ram_ggtt = Some(RamGgtt::new(ptes.base()));
            }
        }
    }

    /// Forwards the config space's trap effects; in RAM mode a BAR0 trap becomes a trap
    /// of the register half plus (when the address is new) RAM for the PTE half, and a
    /// BAR0 untrap only untraps the register half (the RAM follows the BAR's address, not
    /// memory decode). `before` is BAR0's trapped range before the access.
    pub(super) fn route_bar_effects(
        &mut self,
        before: Option<GuestRange>,
        local: Effects,
        fx: &mut Effects,
    ) {
        if self.config.ggtt_backing != GgttBacking::Ram {
            for e in local {
                fx.push(e);
            }
            return;
        }
        let after = self.state.pci.trapped(crate::pci::BarId::Bar0);
        for e in local {
            match e {
                Effect::Untrap {
                    space: Space::Mmio,
                    range,
                } if Some(range) == before => {
                    if let Some(regs) = halves(range).0 {
                        fx.push(Effect::Untrap {
                            space: Space::Mmio,
                            range: regs,
                        });
                    }
                }
                Effect::Trap {
                    space: Space::Mmio,
                    range,
                } if Some(range) == after => {
                    let (regs, ptes) = halves(range);
                    if let Some(ptes) = ptes {
                        if self.ggtt_ram_range() != Some(ptes) {
                            if self.ram_ggtt.is_some() {
                                // A move: the new RAM is zeroed, so is the model's GGTT.
                                self.release_ram_ggtt(fx);
                                self.state.ggtt.clear();
                            }
                            fx.push(Effect::PopulateRam { range: ptes });
                            self.ram_ggtt = Some(RamGgtt::new(ptes.base()));
                        }
                    }
                    if let Some(regs) = regs {
                        fx.push(Effect::Trap {
                            space: Space::Mmio,
                            range: regs,
                        });
                    }
                }
                other => fx.push(other),
            }
        }
    }

    /// Gives the RAM window back (device reset, BAR move).
    pub(super) fn release_ram_ggtt(&mut self, fx: &mut Effects) {
        if let Some(range) = self.ram_ggtt.take().and_then(|r| r.range()) {
            fx.push(Effect::ReleaseRam { range });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bus::IoHandler;
    use crate::memory::{GuestMemory, VecMemory};
    use crate::partition::{HostDescription, Partitioner, MIB};
    use crate::vgpu::{VgpuConfig, DEFAULT_SBDF};

    /// BAR0 inside the test RAM, so the populated window is readable through `mem`.
    const BAR0: u64 = 0x0100_0000;
    const BAR2: u64 = 0x2000_0000;
    const CFG: u64 = (DEFAULT_SBDF as u64) << 32;
    const FLUSH: u64 = BAR0 + 0x10_1008;

    fn make(backing: GgttBacking) -> (Vgpu, Arc<VecMemory>) {
        let host = HostDescription::default();
        let mut p = Partitioner::new(host).unwrap();
        let a = p.allocate(128 * MIB, 512 * MIB, 4).unwrap();
        let mem = Arc::new(VecMemory::new(64 * MIB));
        let mut c = VgpuConfig::new(1, "GVTg_V5_4", a, 4);
        c.ggtt_backing = backing;
        let m: Arc<dyn GuestMemory> = Arc::clone(&mem) as Arc<dyn GuestMemory>;
        (Vgpu::new(c, &host, m), mem)
    }

    fn cfg_w(v: &mut Vgpu, reg: u64, val: u32, len: usize) -> Vec<Effect> {
        let mut fx = Effects::new();
        v.write(
            Space::PciConfig,
            CFG | reg,
            &val.to_le_bytes()[..len],
            &mut fx,
        );
        fx.into_iter().collect()
    }

    fn range(base: u64, len: u64) -> GuestRange {
        GuestRange::new(base, len).unwrap()
    }

    fn mmio_w(v: &mut Vgpu, addr: u64, val: u32) {
        v.write(Space::Mmio, addr, &val.to_le_bytes(), &mut Effects::new());
    }

    fn enable(v: &mut Vgpu) -> Vec<Effect> {
        cfg_w(v, 0x10, BAR0 as u32 | 4, 4);
        cfg_w(v, 0x18, BAR2 as u32 | 0xc, 4);
        cfg_w(v, 0x04, 0x7, 2)
    }

    #[test]
    fn ram_mode_traps_registers_and_populates_the_pte_half() {
        let (mut v, _) = make(GgttBacking::Ram);
        let regs = range(BAR0, 8 * MIB);
        let ptes = range(BAR0 + 8 * MIB, 8 * MIB);
        let fx = enable(&mut v);
        assert_eq!(fx[0], Effect::PopulateRam { range: ptes });
        assert_eq!(
            fx[1],
            Effect::Trap {
                space: Space::Mmio,
                range: regs
            }
        );
        assert_eq!(fx.len(), 3, "plus BAR2: {fx:?}");
        assert_eq!(v.ggtt_ram_range(), Some(ptes));
        // Decode off/on (PCI sizing) keeps the RAM.
        let off = cfg_w(&mut v, 0x04, 0x0, 2);
        assert!(off.contains(&Effect::Untrap {
            space: Space::Mmio,
            range: regs
        }));
        assert!(!off.iter().any(|e| matches!(e, Effect::ReleaseRam { .. })));
        let on = cfg_w(&mut v, 0x04, 0x7, 2);
        assert!(!on.iter().any(|e| matches!(e, Effect::PopulateRam { .. })));
        // A move releases the old RAM and populates the new place.
        cfg_w(&mut v, 0x04, 0x0, 2);
        cfg_w(&mut v, 0x10, (BAR0 + 16 * MIB) as u32 | 4, 4);
        let moved = cfg_w(&mut v, 0x04, 0x7, 2);
        assert!(moved.contains(&Effect::ReleaseRam { range: ptes }));
        let new = range(BAR0 + 24 * MIB, 8 * MIB);
        assert!(moved.contains(&Effect::PopulateRam { range: new }));
        // Device reset gives it back.
        let mut fx = Effects::new();
        v.reset(&mut fx);
        assert!(fx.as_slice().contains(&Effect::ReleaseRam { range: new }));
        assert_eq!(v.ggtt_ram_range(), None);
    }

    #[test]
    fn trapped_mode_is_unchanged() {
        let (mut v, _) = make(GgttBacking::Trapped);
        let fx = enable(&mut v);
        assert!(fx.contains(&Effect::Trap {
            space: Space::Mmio,
            range: range(BAR0, 16 * MIB)
        }));
        assert_eq!(v.ggtt_ram_range(), None);
        assert_eq!(v.sync_ggtt(SyncScope::All), GgttSyncReport::default());
    }

    #[test]
    fn flush_applies_window_entries_and_drops_the_rest() {
        let (mut v, mem) = make(GgttBacking::Ram);
        enable(&mut v);
        let low = v.config().allocation.low.base;
        let high = v.config().allocation.high.base;
        let pte = |gm: u64| BAR0 + 8 * MIB + (gm >> 12) * 8;
        mem.write_u64(pte(low), 0x20_0001).unwrap(); // own frame
        mem.write_u64(pte(high + 0x1000), 0x30_0001).unwrap(); // own frame
        mem.write_u64(pte(high + 0x2000), (1 << 30) | 1).unwrap(); // not guest RAM
        mem.write_u64(pte(0), 0x20_0001).unwrap(); // outside the windows
        mem.write_u64(pte((4 << 30) - 4096), 0x20_0001).unwrap(); // guard page
                                                                  // Nothing is applied before the guest flushes.
        assert_eq!(v.ggtt().translate(low), None);
        // A trapped PTE write is not possible in RAM mode: the range is not routed here.
        let mut fx = Effects::new();
        v.write(Space::Mmio, pte(low), &[0; 8], &mut fx);
        assert_eq!(v.counters().unsupported_accesses, 1);
        mmio_w(&mut v, FLUSH, 1);
        assert_eq!(v.ggtt().translate(low + 5), Some(0x20_0005));
        assert_eq!(v.ggtt().translate(high + 0x1000), Some(0x30_0000));
        assert_eq!(v.ggtt().translate(high + 0x2000), None);
        let c = *v.counters();
        assert_eq!(c.ggtt_writes_applied, 2);
        assert_eq!(c.ggtt_dropped_not_owned, 1);
        assert_eq!(c.ggtt_dropped_outside, 2);
        assert_eq!(c.ggtt_ram_entries_changed, 5);
        assert_eq!(c.ggtt_ram_pages_read, 2048);
        // A second flush with nothing new applies nothing.
        mmio_w(&mut v, FLUSH, 1);
        assert_eq!(v.counters().ggtt_ram_entries_changed, 5);
        assert_eq!(v.counters().ggtt_writes_applied, 2);
    }

    #[test]
    fn submission_pulls_only_the_windows() {
        let (mut v, mem) = make(GgttBacking::Ram);
        enable(&mut v);
        let low = v.config().allocation.low.base;
        mem.write_u64(BAR0 + 8 * MIB + (low >> 12) * 8, 0x4_0001)
            .unwrap();
        for d in [0, 0, 0x20, 0x41fe_651d] {
            mmio_w(&mut v, BAR0 + 0x2230, d);
        }
        assert_eq!(v.counters().elsp_submissions, 1);
        assert_eq!(v.ggtt().translate(low), Some(0x4_0000));
        let windows_pages = RamGgtt::pages(
            SyncScope::Windows,
            &[v.config().allocation.low, v.config().allocation.high],
        )
        .len() as u64;
        assert_eq!(v.counters().ggtt_ram_pages_read, windows_pages);
        assert!(windows_pages < 2048);
    }
}
