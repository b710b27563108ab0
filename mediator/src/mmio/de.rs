//! Display-engine and south-display registers needed by a headless probe (spec §3.5,
//! §3.6, recipe §6). The display subsystem (another module) adds its own rows with
//! [`RegKind::Display`]; rows here only make probe-time polls complete.

use crate::regs::{RegKind, RegSpec};

use super::MmioParams;

/// SKL_DFSM: pipe fuse-disable bits (A bit 30, B bit 21, C bit 28).
pub const SKL_DFSM: u32 = 0x5_1000;
/// SKL_DFSM value with all three pipes fused off.
pub const DFSM_ALL_PIPES_OFF: u32 = 0x5020_0000;

/// Display-area rows.
pub fn rows(p: &MmioParams) -> Vec<RegSpec> {
    let mut v = vec![
        // §3.5 SKL_DFSM: headless reports all pipes fused off.
        RegSpec::ro(
            SKL_DFSM,
            if p.headless { DFSM_ALL_PIPES_OFF } else { 0 },
            RegKind::Plain,
            "§3.5",
        ),
        // §3.4 PCH_RAWCLK_FREQ: 24 MHz.
        RegSpec::rw(0xc_6204, 24, RegKind::Plain, "§3.4"),
        // §3.6 CPU_VGACNTRL: VGA already disabled.
        RegSpec::rw(0x4_1000, 0x8000_0000, RegKind::Plain, "§3.6"),
        // §3.6 SKL_FUSE_STATUS: PG0..PG2 distributed (bits 27..25) and bit 31 (recipe §6).
        RegSpec::ro(0x4_2000, 0x8e00_0000, RegKind::Plain, "§3.6"),
    ];
    // §3.6 HSW_PWR_WELL_CTL1..4: state bits follow request bits (recipe §6).
    v.extend((0..4).map(|i| RegSpec::rw(0x4_5400 + 4 * i, 0, RegKind::PowerWell, "§3.6")));
    v
}
