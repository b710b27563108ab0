//! Table-driven Gen9 register set (spec §3.5, §3.9, §5.1), split by area.
//!
//! Each area module returns [`RegSpec`] rows (offset, reset, writable mask, W1C mask,
//! kind, spec section). [`gen9_table`] assembles them into the [`RegTable`] a vGPU uses.
//! Offsets not listed are plain read-back storage initialised to 0 (GVT's behaviour for
//! untracked MMIO) and are counted as untracked by the vGPU.

pub mod de;
pub mod engines;
pub mod gt;

pub use engines::EngineId;

use crate::regs::{RegSpec, RegTable};

/// Per-vGPU choices that change reset values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioParams {
    /// Report all pipes fused off in SKL_DFSM (headless probe, §3.5).
    pub headless: bool,
}

impl Default for MmioParams {
    fn default() -> Self {
        Self { headless: true }
    }
}

/// Every tracked Gen9 row, in area order (later rows win on duplicate offsets).
pub fn gen9_rows(p: &MmioParams) -> Vec<RegSpec> {
    let mut rows = gt::rows();
    rows.extend(engines::rows());
    rows.extend(crate::irq::reg_specs());
    rows.extend(de::rows(p));
    rows.push(RegSpec::rw(
        crate::pvinfo::PVINFO_BASE,
        0,
        crate::regs::RegKind::Pvinfo,
        "§2",
    ));
    // Every dword of the PVINFO page is tracked as Pvinfo.
    rows.extend((4..crate::pvinfo::PVINFO_SIZE).step_by(4).map(|o| {
        RegSpec::rw(
            crate::pvinfo::PVINFO_BASE + o,
            0,
            crate::regs::RegKind::Pvinfo,
            "§2",
        )
    }));
    rows
}

/// The Gen9 register table for a vGPU.
pub fn gen9_table(p: &MmioParams) -> RegTable {
    RegTable::new(gen9_rows(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::RegKind;

    #[test]
    fn table_rows_are_dword_aligned_and_documented() {
        for r in gen9_rows(&MmioParams::default()) {
            assert_eq!(r.offset % 4, 0, "{r:?}");
            assert!(r.offset < crate::regs::MMIO_SIZE, "{r:?}");
            assert!(r.section.starts_with('§'), "{r:?}");
        }
    }

    #[test]
    fn headless_controls_dfsm() {
        let t = gen9_table(&MmioParams { headless: true });
        assert_eq!(t.get(0x51000).map(|r| r.reset), Some(0x5020_0000));
        let t = gen9_table(&MmioParams { headless: false });
        assert_eq!(t.get(0x51000).map(|r| r.reset), Some(0));
        assert_eq!(t.get(0x7_8804).map(|r| r.kind), Some(RegKind::Pvinfo));
    }
}
