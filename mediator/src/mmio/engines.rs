//! Per-engine registers of the four GT2 engines (spec §5.1, §3.5, §3.9).

use crate::regs::{RegKind, RegSpec};

pub use crate::host::EngineId;

/// Offsets inside an engine block.
pub mod reg {
    /// RING_TAIL.
    pub const TAIL: u32 = 0x030;
    /// RING_HEAD.
    pub const HEAD: u32 = 0x034;
    /// RING_START.
    pub const START: u32 = 0x038;
    /// RING_CTL.
    pub const CTL: u32 = 0x03c;
    /// RING_IPEIR (instruction parser error identity).
    pub const IPEIR: u32 = 0x064;
    /// RING_HWS_PGA.
    pub const HWS_PGA: u32 = 0x080;
    /// RING_HWSTAM.
    pub const HWSTAM: u32 = 0x098;
    /// RING_MI_MODE.
    pub const MI_MODE: u32 = 0x09c;
    /// RING_IMR.
    pub const IMR: u32 = 0x0a8;
    /// RING_EIR.
    pub const EIR: u32 = 0x0b0;
    /// RING_EMR.
    pub const EMR: u32 = 0x0b4;
    /// RING_ESR.
    pub const ESR: u32 = 0x0b8;
    /// RING_INSTPM.
    pub const INSTPM: u32 = 0x0c0;
    /// RING_RESET_CTL.
    pub const RESET_CTL: u32 = 0x0d0;
    /// CSFE_CHICKEN1.
    pub const CSFE_CHICKEN1: u32 = 0x0d4;
    /// RING_ELSP.
    pub const ELSP: u32 = 0x230;
    /// RING_EXECLIST_STATUS low dword.
    pub const EXECLIST_STATUS_LO: u32 = 0x234;
    /// RING_EXECLIST_STATUS high dword.
    pub const EXECLIST_STATUS_HI: u32 = 0x238;
    /// RING_CONTEXT_CONTROL.
    pub const CONTEXT_CONTROL: u32 = 0x244;
    /// RING_TIMESTAMP low dword (high dword at +4).
    pub const TIMESTAMP: u32 = 0x358;
    /// RING_MODE (GFX_MODE).
    pub const MODE: u32 = 0x29c;
    /// CSB entry 0 low dword; entry i at CSB + 8·i.
    pub const CSB: u32 = 0x370;
    /// RING_CONTEXT_STATUS_PTR.
    pub const CSB_PTR: u32 = 0x3a0;
    /// FORCE_TO_NONPRIV[0]; 12 dwords.
    pub const FORCE_TO_NONPRIV: u32 = 0x4d0;
}

fn masked(offset: u32, reset: u32, writable: u32, kind: RegKind, section: &'static str) -> RegSpec {
    RegSpec {
        offset,
        reset,
        writable,
        w1c: 0,
        kind,
        section,
    }
}

/// Rows for one engine.
pub fn engine_rows(e: EngineId) -> Vec<RegSpec> {
    let b = e.base();
    let mut v = vec![
        // §5.1 ring registers: read-back storage.
        RegSpec::rw(b + reg::TAIL, 0, RegKind::Plain, "§5.1"),
        RegSpec::rw(b + reg::HEAD, 0, RegKind::Plain, "§5.1"),
        RegSpec::rw(b + reg::START, 0, RegKind::Plain, "§5.1"),
        RegSpec::rw(b + reg::CTL, 0, RegKind::Plain, "§5.1"),
        // §5.1 HWS_PGA: tracked for CSB emulation.
        RegSpec::rw(b + reg::HWS_PGA, 0, RegKind::HwsPga(e), "§5.1"),
        RegSpec::rw(b + reg::HWSTAM, 0xffff_ffff, RegKind::Plain, "§5.1"),
        // §3.9 RING_TIMESTAMP: 12 MHz free-running counter, computed on read.
        RegSpec::ro(
            b + reg::TIMESTAMP,
            0,
            RegKind::Timestamp { high: false },
            "§3.9",
        ),
        RegSpec::ro(
            b + reg::TIMESTAMP + 4,
            0,
            RegKind::Timestamp { high: true },
            "§3.9",
        ),
        // §3.4 RING_IPEIR: no instruction-parser errors (read in error capture).
        RegSpec::ro(b + reg::IPEIR, 0, RegKind::Plain, "§3.4"),
        // §3.5 MI_MODE: masked, bit 9 MODE_IDLE read-only and always 1.
        masked(
            b + reg::MI_MODE,
            0x200,
            0xffff & !0x200,
            RegKind::MiMode,
            "§3.5",
        ),
        RegSpec::rw(b + reg::IMR, 0xffff_ffff, RegKind::Plain, "§5.1"),
        // §5.1 EIR reads 0; ESR must read 0 (§3.5).
        RegSpec::ro(b + reg::EIR, 0, RegKind::Plain, "§5.1"),
        RegSpec::rw(b + reg::EMR, 0xffff_ffff, RegKind::Plain, "§5.1"),
        RegSpec::ro(b + reg::ESR, 0, RegKind::Plain, "§3.5"),
        masked(b + reg::INSTPM, 0, 0xffff, RegKind::Masked, "§3.9"),
        // §3.5 RESET_CTL handshake: bit 1 follows bit 0.
        masked(b + reg::RESET_CTL, 0, 0x1, RegKind::ResetCtl, "§3.5"),
        // §3.9 CSFE_CHICKEN1: masked, bits 3 and 4 stripped.
        masked(
            b + reg::CSFE_CHICKEN1,
            0,
            0xffff & !0x18,
            RegKind::Masked,
            "§3.9",
        ),
        // §5.3 ELSP: write-only submit port.
        RegSpec::rw(b + reg::ELSP, 0, RegKind::Elsp(e), "§5.3"),
        // §5.8 EXECLIST_STATUS: read-only, owned by the execlist model.
        RegSpec::ro(
            b + reg::EXECLIST_STATUS_LO,
            0,
            RegKind::ExeclistState(e),
            "§5.8",
        ),
        RegSpec::ro(
            b + reg::EXECLIST_STATUS_HI,
            0,
            RegKind::ExeclistState(e),
            "§5.8",
        ),
        masked(b + reg::CONTEXT_CONTROL, 0, 0xffff, RegKind::Masked, "§5.1"),
        // §5.2 RING_MODE: masked; bit 1 (and 2) stripped as GVT does.
        masked(
            b + reg::MODE,
            0,
            0xffff & !0x6,
            RegKind::RingMode(e),
            "§5.2",
        ),
        // §5.7 CSB pointer: masked; reset write pointer 7, read pointer 0.
        masked(b + reg::CSB_PTR, 0x7, 0x0707, RegKind::CsbPtr(e), "§5.7"),
    ];
    // §5.7 CSB entries: read-only, owned by the execlist model.
    v.extend(
        (0..12).map(|i| RegSpec::ro(b + reg::CSB + 4 * i, 0, RegKind::ExeclistState(e), "§5.7")),
    );
    // §3.9 FORCE_TO_NONPRIV: read-back storage is acceptable.
    v.extend(
        (0..12).map(|i| RegSpec::rw(b + reg::FORCE_TO_NONPRIV + 4 * i, 0, RegKind::Plain, "§3.9")),
    );
    v
}

/// Rows for all engines.
pub fn rows() -> Vec<RegSpec> {
    EngineId::ALL.into_iter().flat_map(engine_rows).collect()
}
