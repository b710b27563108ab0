//! The context-status buffer: six 64-bit entries, the masked pointer register, and the
//! HWSP copy the guest actually reads (spec §5.7).

use crate::memory::GuestMemory;

use super::{hi32, lo32, masked_update, GgttLookup};

/// Number of CSB entries on Gen9.
pub const CSB_ENTRIES: u8 = 6;
/// Reset value of the write pointer: "nothing written yet; next entry is 0".
pub const CSB_WP_RESET: u8 = 7;
/// Byte offset of CSB entry 0 in the HWSP (dword 0x10).
pub const HWSP_CSB_OFFSET: u64 = 0x40;
/// Byte offset of the CSB write pointer in the HWSP (dword 0x1F).
pub const HWSP_CSB_WP_OFFSET: u64 = 0x7C;

/// Event bits of a CSB entry (low dword).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsbEvent;

impl CsbEvent {
    /// Bit 0: idle → active.
    pub const IDLE_TO_ACTIVE: u32 = 1 << 0;
    /// Bit 1: preempted.
    pub const PREEMPTED: u32 = 1 << 1;
    /// Bit 2: element switch.
    pub const ELEMENT_SWITCH: u32 = 1 << 2;
    /// Bit 3: active → idle.
    pub const ACTIVE_TO_IDLE: u32 = 1 << 3;
    /// Bit 4: context complete.
    pub const COMPLETE: u32 = 1 << 4;
    /// Bit 15: lite restore.
    pub const LITE_RESTORE: u32 = 1 << 15;
}

/// Where a CSB write went, for counters and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwspWrite {
    /// Written into the guest HWSP.
    Written,
    /// HWSP emulation is off or no HWSP is programmed.
    Skipped,
    /// RING_HWS_PGA did not translate to guest RAM; only the MMIO copy was updated.
    Unmapped,
}

/// One engine's CSB state as the guest sees it through MMIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csb {
    entries: [u64; CSB_ENTRIES as usize],
    /// Masked pointer register low half: bits 2:0 write pointer, bits 10:8 read pointer.
    ptr: u32,
}

impl Default for Csb {
    fn default() -> Self {
        Self {
            entries: [0; CSB_ENTRIES as usize],
            ptr: u32::from(CSB_WP_RESET),
        }
    }
}

impl Csb {
    /// Back to reset: entries zero, write pointer 7, read pointer 0.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Current write pointer field (0..=7).
    pub fn write_pointer(&self) -> u8 {
        u8::try_from(self.ptr & 7).unwrap_or(CSB_WP_RESET)
    }

    /// Value of RING_CONTEXT_STATUS_PTR as read by the guest.
    pub fn ptr_read(&self) -> u32 {
        self.ptr & 0x0707
    }

    /// A guest write of RING_CONTEXT_STATUS_PTR (masked). The write-pointer field the guest
    /// writes becomes the model's write pointer.
    pub fn ptr_write(&mut self, value: u32) {
        self.ptr = masked_update(self.ptr, value) & 0x0707;
    }

    /// Guest read of a CSB dword at `rel` = offset from CSB[0] (0..0x30).
    pub fn mmio_read(&self, rel: u32) -> u32 {
        let idx = usize::try_from(rel / 8).unwrap_or(usize::MAX);
        let e = self.entries.get(idx).copied().unwrap_or(0);
        if rel & 4 == 0 {
            lo32(e)
        } else {
            hi32(e)
        }
    }

    /// The stored entry `i` (tests and debug).
    pub fn entry(&self, i: u8) -> Option<u64> {
        self.entries.get(usize::from(i)).copied()
    }

    /// Writes one event (GVT's `emulate_csb_update`): advances the write pointer, stores the
    /// MMIO copy, then (with HWSP emulation) the HWSP entry followed by the HWSP write
    /// pointer. Returns the slot used and what happened to the HWSP copy.
    pub fn push(
        &mut self,
        event: u32,
        ctx_id: u32,
        hwsp: Option<(u32, &dyn GgttLookup, &dyn GuestMemory)>,
    ) -> (u8, HwspWrite) {
        let wp = match self.write_pointer() {
            w if w >= CSB_ENTRIES => 0,
            w => (w + 1) % CSB_ENTRIES,
        };
        let entry = u64::from(ctx_id) << 32 | u64::from(event);
        if let Some(slot) = self.entries.get_mut(usize::from(wp)) {
            *slot = entry;
        }
        self.ptr = (self.ptr & !7) | u32::from(wp);
        let hw = match hwsp {
            None => HwspWrite::Skipped,
            Some((0, _, _)) => HwspWrite::Skipped,
            Some((pga, ggtt, mem)) => write_hwsp(pga, wp, entry, ggtt, mem),
        };
        (wp, hw)
    }
}

fn write_hwsp(
    pga: u32,
    wp: u8,
    entry: u64,
    ggtt: &dyn GgttLookup,
    mem: &dyn GuestMemory,
) -> HwspWrite {
    let page = u64::from(pga & !0xfff);
    let Some(gpa) = ggtt.gma_to_gpa(page) else {
        return HwspWrite::Unmapped;
    };
    let slot = HWSP_CSB_OFFSET + 8 * u64::from(wp);
    let ok = gpa
        .checked_add(slot)
        .is_some_and(|a| mem.write_u64(a, entry).is_ok())
        && gpa
            .checked_add(HWSP_CSB_WP_OFFSET)
            .is_some_and(|a| mem.write_u32(a, u32::from(wp)).is_ok());
    if ok {
        HwspWrite::Written
    } else {
        HwspWrite::Unmapped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;

    /// GGTT that maps every GMA to itself minus a base (a flat test window).
    struct Flat(u64);
    impl GgttLookup for Flat {
        fn gma_to_gpa(&self, gma: u64) -> Option<u64> {
            gma.checked_sub(self.0)
        }
    }

    #[test]
    fn first_entry_goes_to_slot_zero_and_wraps_modulo_six() {
        let mut c = Csb::default();
        assert_eq!(c.ptr_read(), 7);
        let slots: Vec<u8> = (0..8).map(|i| c.push(1, i, None).0).collect();
        assert_eq!(slots, vec![0, 1, 2, 3, 4, 5, 0, 1]);
        assert_eq!(c.entry(1), Some(7 << 32 | 1));
        assert_eq!(c.mmio_read(8), 1);
        assert_eq!(c.mmio_read(12), 7);
    }

    #[test]
    fn guest_written_write_pointer_is_adopted() {
        let mut c = Csb::default();
        c.ptr_write(0xffff_0505);
        assert_eq!(c.ptr_read(), 0x505);
        assert_eq!(c.push(CsbEvent::IDLE_TO_ACTIVE, 0, None).0, 0);
        // a write without mask bits changes nothing
        c.ptr_write(0x0000_0303);
        assert_eq!(c.ptr_read(), 0x500);
        c.ptr_write(0x0007_0003);
        assert_eq!(c.push(0x18, 3, None).0, 4);
    }

    #[test]
    fn hwsp_copy_is_written_entry_then_pointer() {
        let mem = VecMemory::new(0x4000);
        let ggtt = Flat(0x1000_0000);
        let mut c = Csb::default();
        let (wp, w) = c.push(0x18, 0x20, Some((0x1000_2000, &ggtt, &mem)));
        assert_eq!((wp, w), (0, HwspWrite::Written));
        assert_eq!(mem.read_u64(0x2040).unwrap(), 0x20_0000_0018);
        assert_eq!(mem.read_u32(0x207c).unwrap(), 0);
        let (_, w) = c.push(0x1, 0, Some((0x2000_0000, &ggtt, &mem)));
        assert_eq!(w, HwspWrite::Unmapped);
        let (_, w) = c.push(0x1, 0, Some((0, &ggtt, &mem)));
        assert_eq!(w, HwspWrite::Skipped);
        // the MMIO copy is kept in step even when the HWSP is unreachable
        assert_eq!(c.write_pointer(), 2);
    }
}
