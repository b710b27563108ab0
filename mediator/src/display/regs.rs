//! The display register table: offsets, reset values, writable and write-1-to-clear masks,
//! and the spec section each register comes from (`gen9-vgpu.md` §7.1, §7.2, §7.5, §7.6,
//! Appendix A).
//!
//! Offsets are BAR0 byte offsets. Per-pipe registers are given for pipe / transcoder A;
//! pipe B and C are at +[`PIPE_STRIDE`] and +2·[`PIPE_STRIDE`]. Every offset inside
//! [`DISPLAY_RANGES`] that is not in the table is plain read-back storage with reset 0
//! (§7.6 "everything else is [R]").

use std::sync::OnceLock;

/// Distance between the register blocks of consecutive pipes and transcoders.
pub const PIPE_STRIDE: u32 = 0x1000;
/// Pipes A, B and C.
pub const NUM_PIPES: usize = 3;
/// Universal planes per pipe on SKL (plane 1 = primary, 2 = sprite, 3 = unused).
pub const PLANES_PER_PIPE: u32 = 3;
/// Distance between the register blocks of consecutive planes of a pipe.
pub const PLANE_STRIDE_REGS: u32 = 0x100;
/// DDI ports A..E.
pub const NUM_DDI: u32 = 5;
/// AUX channels A..D.
pub const NUM_AUX: u32 = 4;
/// Distance between consecutive DDI / AUX blocks.
pub const DDI_STRIDE: u32 = 0x100;

// §7.1 transcoder timing (transcoder A).
/// Horizontal total / active.
pub const HTOTAL: u32 = 0x60000;
/// Horizontal blank.
pub const HBLANK: u32 = 0x60004;
/// Horizontal sync.
pub const HSYNC: u32 = 0x60008;
/// Vertical total / active.
pub const VTOTAL: u32 = 0x6000C;
/// Vertical blank.
pub const VBLANK: u32 = 0x60010;
/// Vertical sync.
pub const VSYNC: u32 = 0x60014;
/// Pipe source size: width − 1 in 28:16, height − 1 in 11:0.
pub const PIPESRC: u32 = 0x6001C;
/// DP data M value.
pub const DATA_M1: u32 = 0x60030;
/// DP data N value.
pub const DATA_N1: u32 = 0x60034;
/// DP link M value.
pub const LINK_M1: u32 = 0x60040;
/// DP link N value.
pub const LINK_N1: u32 = 0x60044;
/// Transcoder DDI function control.
pub const TRANS_DDI_FUNC_CTL: u32 = 0x60400;
/// Transcoder clock select (+4 per transcoder).
pub const TRANS_CLK_SEL: u32 = 0x46140;

// §7.1 pipe (pipe A).
/// Current scan line (stays 0).
pub const PIPEDSL: u32 = 0x70000;
/// Pipe configuration: bit 31 enable, bit 30 state.
pub const PIPECONF: u32 = 0x70008;
/// Pipe misc.
pub const PIPE_MISC: u32 = 0x70030;
/// Hardware frame counter.
pub const PIPE_FRMCOUNT: u32 = 0x70040;
/// Flip counter.
pub const PIPE_FLIPCOUNT: u32 = 0x70044;
/// Cursor control.
pub const CURCNTR: u32 = 0x70080;
/// Cursor base (GGTT address).
pub const CURBASE: u32 = 0x70084;
/// Cursor position.
pub const CURPOS: u32 = 0x70088;
/// Plane control (plane 1 of pipe A; +0x100 per plane).
pub const PLANE_CTL: u32 = 0x70180;
/// Plane stride.
pub const PLANE_STRIDE: u32 = 0x70188;
/// Plane position on the pipe.
pub const PLANE_POS: u32 = 0x7018C;
/// Plane size: height − 1 in 27:16, width − 1 in 12:0.
pub const PLANE_SIZE: u32 = 0x70190;
/// Colour key value.
pub const PLANE_KEYVAL: u32 = 0x70194;
/// Colour key mask.
pub const PLANE_KEYMSK: u32 = 0x70198;
/// Plane surface base (GGTT address); writing it is a flip.
pub const PLANE_SURF: u32 = 0x7019C;
/// Colour key max.
pub const PLANE_KEYMAX: u32 = 0x701A0;
/// Pixel offset of the visible area within the surface.
pub const PLANE_OFFSET: u32 = 0x701A4;
/// Surface currently scanned out (read-only copy of PLANE_SURF).
pub const PLANE_SURFLIVE: u32 = 0x701AC;
/// Plane scaler control (scaler 1 of pipe A; scaler 2 at +0x100; pipe B at +0x1000).
pub const PS_CTRL: u32 = 0x68180;

// §7.6 global display registers.
/// CPU VGA control (bit 31 = VGA disabled).
pub const CPU_VGACNTRL: u32 = 0x41000;
/// Fuse status (PG0..PG2 distributed, fuse download done).
pub const SKL_FUSE_STATUS: u32 = 0x42000;
/// DBUF power control.
pub const DBUF_CTL: u32 = 0x45008;
/// Power well control, BIOS requester.
pub const PWR_WELL_CTL1: u32 = 0x45400;
/// Power well control, driver requester.
pub const PWR_WELL_CTL2: u32 = 0x45404;
/// Power well control 3.
pub const PWR_WELL_CTL3: u32 = 0x45408;
/// Power well control 4.
pub const PWR_WELL_CTL4: u32 = 0x4540C;
/// DC state enable.
pub const DC_STATE_EN: u32 = 0x45504;
/// CDCLK control.
pub const CDCLK_CTL: u32 = 0x46000;
/// DPLL0 enable / lock.
pub const LCPLL1_CTL: u32 = 0x46010;
/// DPLL1 enable / lock.
pub const LCPLL2_CTL: u32 = 0x46014;
/// DPLL2 enable.
pub const WRPLL_CTL1: u32 = 0x46040;
/// DPLL3 enable.
pub const WRPLL_CTL2: u32 = 0x46060;
/// PCH reset handshake.
pub const NDE_RSTWRN_OPT: u32 = 0x46408;
/// Software flag scratch 4.
pub const SWF_ILK4: u32 = 0x4F010;
/// Display fuse (pipe fuse-disable bits).
pub const SKL_DFSM: u32 = 0x51000;
/// DDI buffer control (port A; +0x100 per port).
pub const DDI_BUF_CTL: u32 = 0x64000;
/// DP AUX channel control (channel A; +0x100 per channel).
pub const DP_AUX_CH_CTL: u32 = 0x64010;
/// DP transport control (port A).
pub const DP_TP_CTL: u32 = 0x64040;
/// DP transport status (port A).
pub const DP_TP_STATUS: u32 = 0x64044;
/// DPLL per-DPLL link rate / override.
pub const DPLL_CTRL1: u32 = 0x6C058;
/// DPLL per-port selection.
pub const DPLL_CTRL2: u32 = 0x6C05C;
/// DPLL lock status (computed).
pub const DPLL_STATUS: u32 = 0x6C060;
/// South fuse strap.
pub const SFUSE_STRAP: u32 = 0xC2014;
/// PCH hot-plug control (ports A..D).
pub const PCH_PORT_HOTPLUG: u32 = 0xC4030;
/// PCH hot-plug control 2 (port E).
pub const PCH_PORT_HOTPLUG2: u32 = 0xC403C;
/// GMBUS pin / rate select.
pub const GMBUS0: u32 = 0xC5100;
/// GMBUS command.
pub const GMBUS1: u32 = 0xC5104;
/// GMBUS status.
pub const GMBUS2: u32 = 0xC5108;
/// GMBUS data.
pub const GMBUS3: u32 = 0xC510C;
/// GMBUS interrupt mask.
pub const GMBUS4: u32 = 0xC5110;
/// GMBUS 2-byte index.
pub const GMBUS5: u32 = 0xC5120;
/// Raw clock frequency in MHz.
pub const PCH_RAWCLK_FREQ: u32 = 0xC6204;
/// Panel power status.
pub const PP_STATUS: u32 = 0xC7200;
/// Panel power control.
pub const PP_CONTROL: u32 = 0xC7204;

/// SKL_DFSM value with pipes A, B and C fused off (headless vGPU, §3.5).
pub const DFSM_HEADLESS: u32 = 0x5020_0000;

/// The BAR0 ranges (inclusive) the display model owns (Appendix A). The south-display
/// interrupt bank C4000–C400F and the DE interrupt banks belong to the interrupt tree.
pub const DISPLAY_RANGES: &[(u32, u32)] = &[
    (0x41000, 0x41FFF),
    (0x42000, 0x422FF),
    (0x45000, 0x46FFF),
    (0x4A000, 0x4BFFF),
    (0x4F000, 0x4F0FF),
    (0x50080, 0x5009F),
    (0x51000, 0x51003),
    (0x60000, 0x62FFF),
    (0x64000, 0x64FFF),
    (0x68000, 0x6AFFF),
    (0x6C000, 0x6C0FF),
    (0x6F000, 0x72FFF),
    (0x7F000, 0x7FFFF),
    (0x80000, 0x82FFF),
    (0xC0000, 0xC3FFF),
    (0xC4010, 0xCFFFF),
];

/// One display register: where it is, how it resets, which bits a guest write changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegDef {
    /// BAR0 byte offset.
    pub offset: u32,
    /// Register name as the spec uses it.
    pub name: &'static str,
    /// Value after display reset.
    pub reset: u32,
    /// Bits a guest write stores.
    pub writable: u32,
    /// Bits a guest write of 1 clears (write-1-to-clear); disjoint from `writable`.
    pub w1c: u32,
    /// Spec section (`gen9-vgpu.md`).
    pub section: &'static str,
}

impl RegDef {
    /// The value after a guest writes `value` over `old`.
    pub fn apply_write(&self, old: u32, value: u32) -> u32 {
        let kept = (old & !self.writable) | (value & self.writable);
        kept & !(value & self.w1c)
    }
}

/// Definition for an offset that is in [`DISPLAY_RANGES`] but not in the table.
pub fn plain(offset: u32) -> RegDef {
    RegDef {
        offset,
        name: "display scratch",
        reset: 0,
        writable: u32::MAX,
        w1c: 0,
        section: "7.6 [R]",
    }
}

/// EDP_PSR_IIR (SKL): PSR interrupt identity; i915 clears it with all-ones at IRQ reset
/// and WARNs ("Interrupt register 0x64838 is not zero") if it then reads non-zero, so it
/// is write-1-to-clear, and the vGPU never raises PSR events (nested i915 boot, issue 8).
pub const EDP_PSR_IIR: u32 = 0x64838;

/// Whether `offset` is a display register (in [`DISPLAY_RANGES`]).
pub fn in_display_ranges(offset: u32) -> bool {
    DISPLAY_RANGES
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&offset))
}

/// Looks `offset` up in the table, falling back to plain storage.
pub fn lookup(offset: u32) -> RegDef {
    let t = table();
    match t.binary_search_by_key(&offset, |d| d.offset) {
        Ok(i) => t.get(i).copied().unwrap_or_else(|| plain(offset)),
        Err(_) => plain(offset),
    }
}

/// The whole table, sorted by offset.
pub fn table() -> &'static [RegDef] {
    static TABLE: OnceLock<Vec<RegDef>> = OnceLock::new();
    TABLE.get_or_init(build)
}

fn r(offset: u32, name: &'static str, reset: u32, writable: u32, section: &'static str) -> RegDef {
    RegDef {
        offset,
        name,
        reset,
        writable,
        w1c: 0,
        section,
    }
}

const ALL: u32 = u32::MAX;
const RO: u32 = 0;

fn build() -> Vec<RegDef> {
    let mut t = vec![
        r(CPU_VGACNTRL, "CPU_VGACNTRL", 0x8000_0000, ALL, "7.6"),
        r(SKL_FUSE_STATUS, "SKL_FUSE_STATUS", 0x8E00_0000, RO, "7.6"),
        r(DBUF_CTL, "DBUF_CTL", 0, 0x8000_0000, "7.6"),
        r(PWR_WELL_CTL1, "HSW_PWR_WELL_CTL1", 0, ALL, "7.6"),
        r(PWR_WELL_CTL2, "HSW_PWR_WELL_CTL2", 0, 0xA000_02AA, "7.6"),
        r(PWR_WELL_CTL3, "HSW_PWR_WELL_CTL3", 0, ALL, "7.6"),
        r(PWR_WELL_CTL4, "HSW_PWR_WELL_CTL4", 0, ALL, "7.6"),
        r(DC_STATE_EN, "DC_STATE_EN", 0, ALL, "7.6"),
        r(CDCLK_CTL, "CDCLK_CTL", 0, ALL, "7.6"),
        r(LCPLL1_CTL, "LCPLL1_CTL", 0, 0x8000_0000, "7.6"),
        r(LCPLL2_CTL, "LCPLL2_CTL", 0, 0x8000_0000, "7.6"),
        r(WRPLL_CTL1, "WRPLL_CTL1", 0, ALL, "7.6"),
        r(WRPLL_CTL2, "WRPLL_CTL2", 0, ALL, "7.6"),
        r(NDE_RSTWRN_OPT, "HSW_NDE_RSTWRN_OPT", 0, ALL, "7.6"),
        r(SWF_ILK4, "SWF_ILK(4)", 0, ALL, "7.6"),
        r(SKL_DFSM, "SKL_DFSM", 0, RO, "3.5"),
        r(DPLL_CTRL1, "DPLL_CTRL1", 0, ALL, "7.6"),
        r(DPLL_CTRL2, "DPLL_CTRL2", 0, ALL, "7.6"),
        r(DPLL_STATUS, "DPLL_STATUS", 0, RO, "7.6 (computed)"),
        r(SFUSE_STRAP, "SFUSE_STRAP", 0x1, RO, "7.5"),
        RegDef {
            w1c: 0x0303_0303,
            ..r(PCH_PORT_HOTPLUG, "PCH_PORT_HOTPLUG", 0, 0xFCFC_FCFC, "7.6")
        },
        RegDef {
            w1c: 0x3,
            ..r(
                PCH_PORT_HOTPLUG2,
                "PCH_PORT_HOTPLUG2",
                0,
                0xFFFF_FFFC,
                "7.6",
            )
        },
        r(GMBUS0, "GMBUS0", 0, ALL, "7.5"),
        r(GMBUS1, "GMBUS1", 0, ALL, "7.5"),
        r(GMBUS2, "GMBUS2", 0x800, RO, "7.5"),
        r(GMBUS3, "GMBUS3", 0, ALL, "7.5"),
        r(GMBUS4, "GMBUS4", 0, ALL, "7.5"),
        r(GMBUS5, "GMBUS5", 0, ALL, "7.5"),
        r(PCH_RAWCLK_FREQ, "PCH_RAWCLK_FREQ", 24, ALL, "7.6"),
        r(PP_STATUS, "PP_STATUS", 0, RO, "7.6"),
        r(PP_CONTROL, "PP_CONTROL", 0, ALL, "7.6"),
        RegDef {
            w1c: ALL,
            ..r(EDP_PSR_IIR, "EDP_PSR_IIR", 0, 0, "7.6 (IIR, W1C)")
        },
    ];
    for p in 0..NUM_PIPES as u32 {
        push_pipe(&mut t, p);
    }
    for port in 0..NUM_DDI {
        let b = port * DDI_STRIDE;
        t.push(r(DDI_BUF_CTL + b, "DDI_BUF_CTL", 0x80, 0xFFFF_FF7F, "7.6"));
        t.push(r(DP_TP_CTL + b, "DP_TP_CTL", 0, ALL, "7.6"));
        t.push(RegDef {
            w1c: 0x0D00_0000,
            ..r(DP_TP_STATUS + b, "DP_TP_STATUS", 0, !0x0D00_0000, "7.6")
        });
    }
    for ch in 0..NUM_AUX {
        let b = ch * DDI_STRIDE;
        t.push(r(DP_AUX_CH_CTL + b, "DP_AUX_CH_CTL", 0, ALL, "7.5"));
        for d in 1..=5u32 {
            t.push(r(
                DP_AUX_CH_CTL + b + 4 * d,
                "DP_AUX_CH_DATA",
                0,
                ALL,
                "7.5",
            ));
        }
    }
    t.sort_by_key(|d| d.offset);
    t.dedup_by_key(|d| d.offset);
    t
}

fn push_pipe(t: &mut Vec<RegDef>, p: u32) {
    let b = p * PIPE_STRIDE;
    for (off, name) in [
        (HTOTAL, "HTOTAL"),
        (HBLANK, "HBLANK"),
        (HSYNC, "HSYNC"),
        (VTOTAL, "VTOTAL"),
        (VBLANK, "VBLANK"),
        (VSYNC, "VSYNC"),
        (PIPESRC, "PIPESRC"),
        (DATA_M1, "DATA_M1"),
        (DATA_N1, "DATA_N1"),
        (LINK_M1, "LINK_M1"),
        (LINK_N1, "LINK_N1"),
        (TRANS_DDI_FUNC_CTL, "TRANS_DDI_FUNC_CTL"),
        (PIPE_MISC, "PIPE_MISC"),
        (CURCNTR, "CURCNTR"),
        (CURBASE, "CURBASE"),
        (CURPOS, "CURPOS"),
    ] {
        t.push(r(off + b, name, 0, ALL, "7.1"));
    }
    t.push(r(TRANS_CLK_SEL + 4 * p, "TRANS_CLK_SEL", 0, ALL, "7.1"));
    t.push(r(PIPEDSL + b, "PIPEDSL", 0, RO, "7.1"));
    t.push(r(PIPECONF + b, "PIPECONF", 0, !0x4000_0000, "7.4"));
    t.push(r(PIPE_FRMCOUNT + b, "PIPE_FRMCOUNT", 0, RO, "7.4"));
    t.push(r(PIPE_FLIPCOUNT + b, "PIPE_FLIPCOUNT", 0, RO, "7.4"));
    for s in 0..2u32 {
        t.push(r(PS_CTRL + b + s * 0x100, "PS_CTRL", 0, ALL, "7.1"));
    }
    for n in 0..PLANES_PER_PIPE {
        let q = b + n * PLANE_STRIDE_REGS;
        for (off, name) in [
            (PLANE_CTL, "PLANE_CTL"),
            (PLANE_STRIDE, "PLANE_STRIDE"),
            (PLANE_POS, "PLANE_POS"),
            (PLANE_SIZE, "PLANE_SIZE"),
            (PLANE_KEYVAL, "PLANE_KEYVAL"),
            (PLANE_KEYMSK, "PLANE_KEYMSK"),
            (PLANE_KEYMAX, "PLANE_KEYMAX"),
            (PLANE_OFFSET, "PLANE_OFFSET"),
        ] {
            t.push(r(off + q, name, 0, ALL, "7.1/7.2"));
        }
        t.push(r(PLANE_SURF + q, "PLANE_SURF", 0, 0xFFFF_F00F, "7.4"));
        t.push(r(PLANE_SURFLIVE + q, "PLANE_SURFLIVE", 0, RO, "7.4"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_inside_display_ranges() {
        let t = table();
        assert!(t.windows(2).all(|w| w[0].offset < w[1].offset));
        for d in t {
            assert!(in_display_ranges(d.offset), "{} {:#x}", d.name, d.offset);
            assert_eq!(d.writable & d.w1c, 0, "{} masks overlap", d.name);
            assert_eq!(d.offset % 4, 0);
        }
    }

    #[test]
    fn lookup_finds_per_pipe_entries_and_falls_back_to_plain() {
        assert_eq!(lookup(PIPECONF + 2 * PIPE_STRIDE).name, "PIPECONF");
        assert_eq!(lookup(PLANE_SURF + PIPE_STRIDE + 0x100).name, "PLANE_SURF");
        assert_eq!(lookup(0x70240).name, "display scratch");
        assert!(
            !in_display_ranges(0xC4008),
            "SDE IIR belongs to the irq tree"
        );
        assert!(
            !in_display_ranges(0x44408),
            "DE pipe IIR belongs to the irq tree"
        );
        assert!(!in_display_ranges(0x78000), "PVINFO is not display");
    }

    #[test]
    fn write_masks_and_w1c() {
        let d = lookup(DP_TP_STATUS);
        let v = d.apply_write(0x0D00_0000 | 0x1, 0x0400_0002);
        assert_eq!(
            v, 0x0900_0002,
            "bit 26 cleared, bits 27/24 kept, low bits stored"
        );
        let h = lookup(PCH_PORT_HOTPLUG);
        assert_eq!(h.apply_write(0x0003_0000, 0x0001_0010), 0x0002_0010);
    }

    #[test]
    fn psr_iir_is_write_one_to_clear_and_never_stores_the_guests_all_ones() {
        // i915 6.1 gen8_de_irq_postinstall: write 0xffffffff, then assert it reads 0.
        let d = lookup(EDP_PSR_IIR);
        assert_eq!(d.name, "EDP_PSR_IIR");
        assert_eq!(d.apply_write(0, 0xffff_ffff), 0);
        assert_eq!(d.apply_write(0x0000_0101, 0x0000_0001), 0x0000_0100);
    }
}
