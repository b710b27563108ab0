//! Command encoders for what an i915 guest puts in rings and batches (spec §5.10, §6).

/// MI_NOOP.
pub const MI_NOOP: u32 = 0;
/// MI_USER_INTERRUPT.
pub const MI_USER_INTERRUPT: u32 = 0x0100_0000;
/// MI_ARB_CHECK.
pub const MI_ARB_CHECK: u32 = 0x0280_0000;
/// MI_ARB_ON_OFF (disable).
pub const MI_ARB_OFF: u32 = 0x0400_0000;
/// MI_ARB_ON_OFF (enable).
pub const MI_ARB_ON: u32 = 0x0400_0001;
/// MI_BATCH_BUFFER_END.
pub const MI_BATCH_BUFFER_END: u32 = 0x0500_0000;

/// MI_BATCH_BUFFER_START (Gen8, 3 dwords); `ppgtt` sets bit 8.
pub fn bb_start(gma: u64, ppgtt: bool) -> [u32; 3] {
    let hdr = 0x1880_0001 | if ppgtt { 1 << 8 } else { 0 };
    [hdr, lo(gma) & !3, hi(gma) & 0xffff]
}

/// MI_STORE_DATA_IMM of one dword to a GGTT (`ggtt`) or PPGTT address.
pub fn store_dword(gma: u64, value: u32, ggtt: bool) -> [u32; 4] {
    let hdr = 0x1000_0002 | if ggtt { 1 << 22 } else { 0 };
    [hdr, lo(gma) & !3, hi(gma) & 0xffff, value]
}

/// MI_LOAD_REGISTER_IMM of one register.
pub fn lri(reg: u32, value: u32) -> [u32; 3] {
    [0x1100_0001, reg & 0x7F_FFFC, value]
}

/// MI_FLUSH_DW with a post-sync dword write of `value` to GGTT address `gma`
/// (the xcs fini breadcrumb, spec §5.10).
pub fn flush_dw_store(gma: u64, value: u32) -> [u32; 4] {
    [
        0x1300_0002 | 1 << 14,
        (lo(gma) & !7) | 4,
        hi(gma) & 0xffff,
        value,
    ]
}

/// MI_FLUSH_DW invalidate (TLB invalidate, store-index post-sync to scratch 0xD0).
pub fn flush_dw_invalidate() -> [u32; 4] {
    [0x1300_0002 | 1 << 21 | 1 << 18 | 1 << 14, 0xD0 | 4, 0, 0]
}

/// XY_COLOR_BLT, 32 bpp: fill [x1,x2) × [y1,y2) of the surface at `dst` with `color`.
pub fn xy_color_blt(dst: u64, pitch: u16, rect: (u16, u16, u16, u16), color: u32) -> [u32; 7] {
    let (x1, y1, x2, y2) = rect;
    [
        0x5430_0005,
        3 << 24 | 0xF0 << 16 | u32::from(pitch),
        u32::from(y1) << 16 | u32::from(x1),
        u32::from(y2) << 16 | u32::from(x2),
        lo(dst),
        hi(dst) & 0xffff,
        color,
    ]
}

/// XY_SRC_COPY_BLT, 32 bpp: copy a rectangle from (sx, sy) of `src` to `rect` of `dst`.
pub fn xy_src_copy_blt(
    dst: u64,
    dst_pitch: u16,
    rect: (u16, u16, u16, u16),
    src: u64,
    src_pitch: u16,
    src_xy: (u16, u16),
) -> [u32; 10] {
    let (x1, y1, x2, y2) = rect;
    [
        0x54F0_0008,
        3 << 24 | 0xCC << 16 | u32::from(dst_pitch),
        u32::from(y1) << 16 | u32::from(x1),
        u32::from(y2) << 16 | u32::from(x2),
        lo(dst),
        hi(dst) & 0xffff,
        u32::from(src_xy.1) << 16 | u32::from(src_xy.0),
        u32::from(src_pitch),
        lo(src),
        hi(src) & 0xffff,
    ]
}

fn lo(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn hi(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_spec_header_values() {
        assert_eq!(
            bb_start(0x1_2345_6788, false),
            [0x1880_0001, 0x2345_6788, 1]
        );
        assert_eq!(bb_start(0x1000, true)[0], 0x1880_0101);
        assert_eq!(store_dword(0x40, 7, true), [0x1040_0002, 0x40, 0, 7]);
        assert_eq!(lri(0x2244, 1), [0x1100_0001, 0x2244, 1]);
        assert_eq!(
            flush_dw_store(0x1000_0080, 9),
            [0x1300_4002, 0x1000_0084, 0, 9]
        );
        let c = xy_color_blt(0x800_0000, 4096, (1, 2, 3, 4), 0xff00ff);
        assert_eq!(c[0], 0x5430_0005);
        assert_eq!(c[1], 0x03F0_1000);
        assert_eq!((c[2], c[3]), (0x0002_0001, 0x0004_0003));
        let s = xy_src_copy_blt(0x10, 64, (0, 0, 8, 8), 0x20, 32, (1, 1));
        assert_eq!(
            (s[0], s[1] >> 16 & 0xff, s[6], s[7], s[8]),
            (0x54F0_0008, 0xCC, 0x1_0001, 32, 0x20)
        );
    }
}
