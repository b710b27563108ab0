//! Global GT registers: fuses, reset, pcode, forcewake, GuC, TLB, PAT, fences and the
//! masked chicken/workaround registers (spec §3.5, §3.9, §4.5, §4.6).

use crate::regs::{RegKind, RegSpec};

/// GEN6_GDRST.
pub const GDRST: u32 = 0x941c;
/// GDRST bit 0: full GPU reset.
pub const GDRST_FULL: u32 = 1 << 0;
/// GDRST bit 5: GuC domain reset (sets GUC_STATUS bit 0).
pub const GDRST_GUC: u32 = 1 << 5;
/// GUC_STATUS.
pub const GUC_STATUS: u32 = 0xc000;
/// GFX_FLSH_CNTL (GGTT TLB flush doorbell).
pub const GFX_FLSH_CNTL: u32 = 0x10_1008;
/// First fence register; fence i at FENCE_BASE + 8·i.
pub const FENCE_BASE: u32 = 0x10_0000;
/// Number of fence registers in the MMIO map.
pub const FENCE_COUNT: u32 = 32;
/// GEN6_PCODE_MAILBOX.
pub const PCODE_MAILBOX: u32 = 0x13_8124;

/// Masked (mode-mask) global registers listed in §3.9.
pub const MASKED_GLOBALS: [u32; 27] = [
    0x02088, 0x020dc, 0x020e0, 0x020e4, 0x020ec, 0x02090, 0x02120, 0x02124, 0x02470, 0x02580,
    0x04030, 0x05588, 0x07000, 0x07004, 0x07008, 0x07010, 0x07014, 0x07018, 0x07300, 0x07304,
    0x0e100, 0x0e180, 0x0e184, 0x0e188, 0x0e194, 0x0e4f0, 0x0e4f4,
];

/// The global GT rows.
pub fn rows() -> Vec<RegSpec> {
    let mut v = vec![
        // §3.9 GEN8_FUSE2: 1 slice, subslice 3 disabled (GT2).
        RegSpec::ro(0x9120, 0x0280_0000, RegKind::Plain, "§3.9"),
        // §3.9 GEN9_EU_DISABLE(slice 0): all 24 EUs present.
        RegSpec::ro(0x9134, 0, RegKind::Plain, "§3.9"),
        // §3.9 CTC_MODE: 12 MHz timestamp.
        RegSpec::rw(0xa26c, 0, RegKind::Plain, "§3.9"),
        // §3.5 GEN6_GDRST: writes request resets, reads 0.
        RegSpec::rw(GDRST, 0, RegKind::Gdrst, "§3.5"),
        // §3.9 pcode mailbox and data.
        RegSpec::rw(PCODE_MAILBOX, 0, RegKind::PcodeMailbox, "§3.9"),
        RegSpec::rw(0x13_8128, 0, RegKind::Plain, "§3.9"),
        RegSpec::rw(0x13_812c, 0, RegKind::Plain, "§3.9"),
        // §3.9 GT_THREAD_STATUS / GT_CORE_STATUS.
        RegSpec::ro(0x13_805c, 0, RegKind::Plain, "§3.9"),
        RegSpec::ro(0x13_8060, 0, RegKind::Plain, "§3.9"),
        // §3.9 FORCEWAKE GT / RENDER / MEDIA with their ACKs.
        RegSpec::rw(0xa188, 0, RegKind::Forcewake { ack: 0x13_0044 }, "§3.9"),
        RegSpec::rw(0xa278, 0, RegKind::Forcewake { ack: 0x0d84 }, "§3.9"),
        RegSpec::rw(0xa270, 0, RegKind::Forcewake { ack: 0x0d88 }, "§3.9"),
        RegSpec::ro(0x13_0044, 0, RegKind::Plain, "§3.9"),
        RegSpec::ro(0x0d84, 0, RegKind::Plain, "§3.9"),
        RegSpec::ro(0x0d88, 0, RegKind::Plain, "§3.9"),
        // §3.9 FPGA_DBG: bit 31 write-1-to-clear, reads 0.
        RegSpec {
            offset: 0x4_2300,
            reset: 0,
            writable: 0,
            w1c: 0x8000_0000,
            kind: RegKind::Plain,
            section: "§3.9",
        },
        // §3.9 GUC_STATUS: bit 0 set after reset, cleared by the first read.
        RegSpec::rw(GUC_STATUS, 1, RegKind::GucStatus, "§3.9"),
        // §3.9 GuC DMA_CTRL: plain.
        RegSpec::rw(0xc300, 0, RegKind::Plain, "§3.9"),
        // §3.9 GFX_FLSH_CNTL.
        RegSpec::rw(GFX_FLSH_CNTL, 0, RegKind::GgttFlush, "§4.6"),
        // §3.9 PRIVATE_PAT.
        RegSpec::rw(0x40e0, 0, RegKind::Plain, "§3.9"),
        RegSpec::rw(0x40e4, 0, RegKind::Plain, "§3.9"),
        // §3.5 EDRAM capability: no eDRAM.
        RegSpec::ro(0x12_0010, 0, RegKind::Plain, "§3.5"),
        // §3.5 GEN6_RP_STATE_CAP: 0 keeps RPS off.
        RegSpec::ro(0x14_5998, 0, RegKind::Plain, "§3.5"),
        // §3.4 GEN8_RING_FAULT_REG, PGTBL_ER: no faults.
        RegSpec::ro(0x4094, 0, RegKind::Plain, "§3.4"),
        RegSpec::ro(0x2024, 0, RegKind::Plain, "§3.4"),
        // §3.9 GEN6_PMINTRMSK.
        RegSpec::rw(0xa168, 0, RegKind::Plain, "§3.9"),
    ];
    // §3.9 TLB invalidate for RCS/VCS0/VCS1/BCS/VECS: stored, read 0.
    v.extend((0..5).map(|i| RegSpec::rw(0x4260 + 4 * i, 0, RegKind::ReadZero, "§3.9")));
    // §3.9 masked global chicken/workaround registers.
    v.extend(MASKED_GLOBALS.iter().map(|&o| RegSpec {
        offset: o,
        reset: 0,
        writable: 0xffff,
        w1c: 0,
        kind: RegKind::Masked,
        section: "§3.9",
    }));
    // §4.5 fence registers (32 × 64-bit); the vGPU limits use to fence_num.
    v.extend(
        (0..FENCE_COUNT * 2).map(|i| RegSpec::rw(FENCE_BASE + 4 * i, 0, RegKind::Fence, "§4.5")),
    );
    v
}
