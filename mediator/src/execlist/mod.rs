//! Execlist submission emulation (spec §5): context descriptors,
//! the logical ring context image, the context-status buffer and EXECLIST_STATUS.
//!
//! Everything here is a pure state machine over copied guest data. Guest memory is reached
//! only through [`GuestMemory`](crate::memory::GuestMemory) and graphics addresses only
//! through a [`GgttLookup`]. Interrupts are returned as [`GtIrq`] data for the owner of the
//! virtual interrupt tree to raise.

mod context;
mod csb;
mod descriptor;
mod engine;
mod state;

pub use context::{write_ring_head, ContextError, ContextImage, ContextKey};
pub use csb::{Csb, CsbEvent, HwspWrite};
pub use descriptor::{AddressingMode, ContextDescriptor, ElspError, ElspPair};
pub use engine::{engine_from_mmio, gt_bank, irq_shift, EngineId, GtIrq, IrqKind};
pub use state::{
    CompletionStatus, CsbTarget, ElementToken, ExeclistCounters, ExeclistEngine, ExeclistOutput,
    Submission,
};

/// Translation of a graphics memory address through this vGPU's guest GGTT.
///
/// Implementations return the guest-physical address for `gma`, or `None` if the address
/// lies outside the vGPU's ranges or its PTE is not present/valid. Only the page containing
/// `gma` is translated: callers split accesses at page boundaries.
pub trait GgttLookup {
    /// Guest-physical address of graphics address `gma`.
    fn gma_to_gpa(&self, gma: u64) -> Option<u64>;
}

// The ELSP four-write latch lives in the vGPU's register model (`crate::vgpu`), which emits
// `VgpuEvent::ElspSubmit`; [`ExeclistEngine::submit`] takes the assembled pair.

/// Per-engine register offsets (from the engine base) this module emulates (spec §5.1).
pub mod regs {
    /// RING_TAIL.
    pub const RING_TAIL: u32 = 0x030;
    /// RING_HEAD.
    pub const RING_HEAD: u32 = 0x034;
    /// RING_HWS_PGA: GGTT address of the engine HWSP.
    pub const RING_HWS_PGA: u32 = 0x080;
    /// RING_ELSP: submit port, write-only.
    pub const RING_ELSP: u32 = 0x230;
    /// RING_EXECLIST_STATUS low dword (read-only).
    pub const EXECLIST_STATUS_LO: u32 = 0x234;
    /// RING_EXECLIST_STATUS high dword (read-only, current context id).
    pub const EXECLIST_STATUS_HI: u32 = 0x238;
    /// RING_MODE / GFX_MODE (masked; bit 15 RUN_LIST_ENABLE).
    pub const RING_MODE: u32 = 0x29C;
    /// CSB[0] low dword; entry i at +8·i, high dword at +4.
    pub const CSB_BASE: u32 = 0x370;
    /// Last byte of the six CSB entries.
    pub const CSB_END: u32 = 0x39F;
    /// RING_CONTEXT_STATUS_PTR (masked).
    pub const CONTEXT_STATUS_PTR: u32 = 0x3A0;
    /// RUN_LIST_ENABLE in RING_MODE.
    pub const RUN_LIST_ENABLE: u32 = 1 << 15;
}

/// Low 32 bits of `v`.
pub(crate) fn lo32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

/// High 32 bits of `v`.
pub(crate) fn hi32(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

/// Applies the mode-mask rule: bits 31:16 of `written` enable writes to bits 15:0.
pub fn masked_update(old: u32, written: u32) -> u32 {
    let mask = written >> 16;
    (old & !mask & 0xffff) | (written & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_update_applies_only_enabled_bits() {
        assert_eq!(masked_update(0x0000, 0x8000_8000), 0x8000);
        assert_eq!(masked_update(0x8001, 0x8000_0000), 0x0001);
        assert_eq!(masked_update(0x0001, 0x0000_ffff), 0x0001);
    }
}
