//! GVT's audit tables (§6.6): which registers commands may touch, and the address-window
//! rule for GGTT-addressed commands.

use crate::host::{EngineId, GmRange};

/// Largest range an audited command may address (GVT's `max_surface_size`, §6.6).
pub const MAX_SURFACE_SIZE: u64 = 36 << 20;

/// Register offsets (relative to the engine base) that appear in the LRI lists of i915's
/// default Gen9 context images (§5.5) and are therefore command-accessible on every engine.
const CONTEXT_IMAGE_REGS: &[u32] = &[
    0x028, 0x030, 0x034, 0x038, 0x03C, 0x068, 0x09C, 0x0C0, 0x0C8, 0x110, 0x114, 0x118, 0x11C,
    0x140, 0x150, 0x154, 0x158, 0x168, 0x170, 0x178, 0x17C, 0x1C0, 0x1C4, 0x1C8, 0x200, 0x244,
    0x270, 0x274, 0x278, 0x27C, 0x280, 0x284, 0x288, 0x28C, 0x358, 0x3A8, 0x41C,
];

/// Absolute offsets of the Gen9 context workaround registers i915 writes with LRI in its
/// boot-time requests, plus GVT's `F_CMD_ACCESS` registers that the i915 kernel writes from
/// rings (§5.10, §6.6).
const CMD_ACCESS_REGS: &[u32] = &[
    0x20C0, 0x20D4, 0x20E4, 0x2580, 0x5588, 0x7000, 0x7004, 0x7008, 0x7010, 0x7014, 0x7018, 0x7300,
    0x7308, 0x731C, 0xB118, 0xE180, 0xE184, 0xE188, 0xE194, 0xE4F0, 0xE4F4, 0x2350, 0x2358,
];

/// FORCE_TO_NONPRIV whitelist (§6.6): registers a non-privileged batch may load.
const NONPRIV_REGS: &[u32] = &[
    0x0D80, 0x20EC, 0x2248, 0x2340, 0x2348, 0x2350, 0x2580, 0x2690, 0x2694, 0x2698, 0x2754, 0x28A0,
    0x4DE0, 0x4DE4, 0x4DFC, 0x7010, 0x7014, 0x7300, 0x7304, 0x7700, 0x7704, 0x7708, 0x770C, 0x83A8,
    0xB110, 0xB118, 0xE100, 0xE18C, 0xE48C, 0xE5F4, 0x64844,
];

/// Registers MI_LOAD_REGISTER_MEM / MI_STORE_REGISTER_MEM may name in privileged buffers.
const MEM_REGS: &[u32] = &[0xB118, 0x21F0];

/// Registers a PIPE_CONTROL LRI post-sync may target (§6.4).
pub const PIPE_CONTROL_REGS: &[u32] = &[0x2350, 0x2358];

/// MOCS ranges an LRI may write (§6.6), inclusive.
const MOCS_RANGES: &[(u32, u32)] = &[(0xC800, 0xCFF8), (0xB020, 0xB0A0)];

/// The register audit for one engine.
///
/// The exact-offset lists are merged into one sorted vector per rule at construction so a
/// lookup is a binary search (the scanner audits every LRI register of every buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegWhitelist {
    base: u32,
    extra: Vec<u32>,
    /// Sorted absolute offsets an LRI may write besides the GPR and MOCS ranges.
    lri: Vec<u32>,
    /// Sorted [`NONPRIV_REGS`].
    nonpriv: Vec<u32>,
}

impl RegWhitelist {
    /// Gen9 rules for `engine`.
    pub fn gen9(engine: EngineId) -> Self {
        let base = engine.mmio_base();
        let mut lri: Vec<u32> = CONTEXT_IMAGE_REGS.iter().map(|r| base + r).collect();
        lri.extend_from_slice(CMD_ACCESS_REGS);
        lri.extend_from_slice(NONPRIV_REGS);
        lri.sort_unstable();
        lri.dedup();
        let mut nonpriv = NONPRIV_REGS.to_vec();
        nonpriv.sort_unstable();
        Self {
            base,
            extra: Vec::new(),
            lri,
            nonpriv,
        }
    }

    /// Additionally allows `offset` (absolute), e.g. a register learnt from a golden
    /// context image.
    pub fn allow(&mut self, offset: u32) {
        self.extra.push(offset);
        if let Err(at) = self.lri.binary_search(&offset) {
            self.lri.insert(at, offset);
        }
    }

    fn engine_relative(&self, offset: u32) -> Option<u32> {
        offset.checked_sub(self.base).filter(|r| *r < 0x1000)
    }

    fn is_gpr(&self, offset: u32) -> bool {
        self.engine_relative(offset)
            .is_some_and(|r| (0x600..=0x67C).contains(&r))
    }

    /// LRI target allowed in a privileged buffer (§6.6): below 2 MiB and
    /// command-accessible (context-image registers, GVT's command-access list, the
    /// FORCE_TO_NONPRIV list, GPRs, MOCS, registers added with [`RegWhitelist::allow`]).
    pub fn lri_allowed(&self, offset: u32) -> bool {
        if offset >= 2 << 20 || offset & 3 != 0 {
            return false;
        }
        self.is_gpr(offset)
            || MOCS_RANGES.iter().any(|(a, b)| (*a..=*b).contains(&offset))
            || self.lri.binary_search(&offset).is_ok()
    }

    /// LRM/SRM register allowed in a privileged buffer (§6.6).
    pub fn mem_allowed(&self, offset: u32) -> bool {
        MEM_REGS.contains(&offset) || self.extra.contains(&offset)
    }

    /// Register a non-privileged batch may load (§6.3): FORCE_TO_NONPRIV list, the
    /// engine's RING_NOPID, or a command-streamer GPR.
    pub fn nonpriv_allowed(&self, offset: u32) -> bool {
        self.nonpriv.binary_search(&offset).is_ok()
            || self.is_gpr(offset)
            || self.engine_relative(offset) == Some(0x094)
    }
}

/// GVT's address rule (§6.6): `len ≤ MAX_SURFACE_SIZE` and `[addr, addr + len)` inside one
/// of the windows.
#[inline]
pub fn in_windows(windows: &[GmRange], addr: u64, len: u64) -> bool {
    // `GmRange::contains`, inlined here: the scanner checks several addresses per command.
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    len > 0
        && len <= MAX_SURFACE_SIZE
        && windows
            .iter()
            .any(|w| addr >= w.start && w.start.checked_add(w.size).is_some_and(|e| end <= e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lri_whitelist_covers_context_registers_and_rejects_others() {
        let rcs = RegWhitelist::gen9(EngineId::Rcs);
        assert!(rcs.lri_allowed(0x2244)); // CONTEXT_CONTROL
        assert!(rcs.lri_allowed(0x2270)); // PDP0_LDW
        assert!(rcs.lri_allowed(0x7004)); // CACHE_MODE_1 workaround
        assert!(rcs.lri_allowed(0x2600)); // GPR
        assert!(rcs.lri_allowed(0xC800)); // MOCS
        assert!(!rcs.lri_allowed(0x22244)); // BCS register from RCS
        assert!(!rcs.lri_allowed(0x101008)); // GFX_FLSH_CNTL
        assert!(!rcs.lri_allowed(0x4_4200)); // display
        assert!(!rcs.lri_allowed(0x20_0000)); // ≥ 2 MiB
    }

    #[test]
    fn nonpriv_and_mem_lists_are_narrow() {
        let bcs = RegWhitelist::gen9(EngineId::Bcs);
        assert!(bcs.nonpriv_allowed(0x22094));
        assert!(bcs.nonpriv_allowed(0x22608));
        assert!(!bcs.nonpriv_allowed(0x22244));
        assert!(bcs.mem_allowed(0xB118));
        assert!(!bcs.mem_allowed(0x2358));
        let mut w = bcs.clone();
        w.allow(0x2358);
        assert!(w.mem_allowed(0x2358));
    }

    /// The rules as plain list scans, to check the sorted lookups against.
    fn reference_lri(engine: EngineId, extra: &[u32], offset: u32) -> bool {
        let rel = offset
            .checked_sub(engine.mmio_base())
            .filter(|r| *r < 0x1000);
        offset < 2 << 20
            && offset & 3 == 0
            && (rel
                .is_some_and(|r| CONTEXT_IMAGE_REGS.contains(&r) || (0x600..=0x67C).contains(&r))
                || CMD_ACCESS_REGS.contains(&offset)
                || NONPRIV_REGS.contains(&offset)
                || MOCS_RANGES.iter().any(|(a, b)| (*a..=*b).contains(&offset))
                || extra.contains(&offset))
    }

    fn reference_nonpriv(engine: EngineId, offset: u32) -> bool {
        let rel = offset
            .checked_sub(engine.mmio_base())
            .filter(|r| *r < 0x1000);
        NONPRIV_REGS.contains(&offset)
            || rel.is_some_and(|r| (0x600..=0x67C).contains(&r) || r == 0x094)
    }

    #[test]
    fn sorted_lookups_match_the_list_rules_on_every_register() {
        for engine in EngineId::ALL {
            let mut w = RegWhitelist::gen9(engine);
            w.allow(0x4_4200);
            w.allow(0x2244 + 0x20000); // also an existing entry on BCS
            let extra = [0x4_4200, 0x2_2244];
            // Every offset up to 0x70000 (all listed registers lie below), plus a sample
            // above and unaligned ones.
            let sample = (0..0x7_0000u32).chain((0x7_0000..0x20_1000).step_by(0x3fc));
            for off in sample.chain([1, 0x2246, 0x20_0000, u32::MAX]) {
                assert_eq!(
                    w.lri_allowed(off),
                    reference_lri(engine, &extra, off),
                    "{engine} lri {off:#x}"
                );
                assert_eq!(
                    w.nonpriv_allowed(off),
                    reference_nonpriv(engine, off),
                    "{engine} nonpriv {off:#x}"
                );
            }
        }
    }

    #[test]
    fn window_rule_matches_gm_range_contains() {
        let w = [
            GmRange {
                start: 0x1000,
                size: 0x1000,
            },
            GmRange {
                start: u64::MAX - 0xfff,
                size: 0x1000,
            },
        ];
        let edges = [
            0,
            1,
            0xfff,
            0x1000,
            0x1ffc,
            0x2000,
            u64::MAX - 0x1000,
            u64::MAX - 3,
        ];
        for addr in edges {
            for len in [0, 1, 4, 0x1000, 0x1001, u64::MAX] {
                let want = len <= MAX_SURFACE_SIZE && w.iter().any(|r| r.contains(addr, len));
                assert_eq!(in_windows(&w, addr, len), want, "{addr:#x}+{len:#x}");
            }
        }
    }

    #[test]
    fn window_rule_bounds_size() {
        let w = [GmRange {
            start: 0,
            size: 64 << 20,
        }];
        assert!(in_windows(&w, 0, 4));
        assert!(!in_windows(&w, 0, MAX_SURFACE_SIZE + 1));
        assert!(!in_windows(&w, 64 << 20, 4));
    }
}
