//! Framebuffer decode tests: a known pattern is written into guest RAM in each tiling
//! layout and pixel format, scattered over non-contiguous guest frames, and the decoded
//! image is compared pixel for pixel.

use std::collections::HashMap;

use proptest::prelude::*;

use super::fb::*;
use crate::memory::{GuestMemory, VecMemory, PAGE_SIZE};
use crate::tiling::lay_out;

/// A GGTT as a table of page translations.
#[derive(Default)]
struct TableGtt(HashMap<u64, u64>);

impl GttLookup for TableGtt {
    fn gma_to_gpa(&self, gm: u64) -> Option<u64> {
        let page = self.0.get(&(gm & !0xFFF))?;
        Some(page + (gm & 0xFFF))
    }
}

const BASE_GM: u64 = 0x0800_0000;

/// The colour of surface pixel (x, y), already representable in `format`.
fn pattern(format: PixelFormat, x: u64, y: u64) -> [u8; 4] {
    let r = (x * 7 + y * 3) as u8;
    let g = ((x * 13) ^ (y * 5)) as u8;
    let b = (y * 11 + 17) as u8;
    let a = (x + y * 29) as u8;
    let exp5 = |v: u8| (v & 0xF8) | (v >> 5);
    let exp6 = |v: u8| (v & 0xFC) | (v >> 6);
    let ten = |v: u8| v;
    match format {
        PixelFormat::Xrgb8888 | PixelFormat::Xbgr8888 => [r, g, b, 0xFF],
        PixelFormat::Argb8888 | PixelFormat::Abgr8888 => [r, g, b, a],
        PixelFormat::Xrgb2101010 | PixelFormat::Xbgr2101010 => [ten(r), ten(g), ten(b), 0xFF],
        PixelFormat::Rgb565 => [exp5(r), exp6(g), exp5(b), 0xFF],
    }
}

/// The in-memory bytes of a pixel (independent of the decoder's conversion).
fn encode(format: PixelFormat, [r, g, b, a]: [u8; 4]) -> Vec<u8> {
    let w10 = |hi: u8, mid: u8, lo: u8| {
        let v = (u32::from(hi) << 22) | (u32::from(mid) << 12) | (u32::from(lo) << 2);
        v.to_le_bytes().to_vec()
    };
    match format {
        PixelFormat::Xrgb8888 => vec![b, g, r, 0],
        PixelFormat::Argb8888 => vec![b, g, r, a],
        PixelFormat::Xbgr8888 => vec![r, g, b, 0],
        PixelFormat::Abgr8888 => vec![r, g, b, a],
        PixelFormat::Xrgb2101010 => w10(r, g, b),
        PixelFormat::Xbgr2101010 => w10(b, g, r),
        PixelFormat::Rgb565 => {
            let v = (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
            v.to_le_bytes().to_vec()
        }
    }
}

/// Writes `gm` into guest RAM page by page, in reverse frame order (not contiguous), and
/// returns the GTT mapping it.
fn scatter(mem: &VecMemory, gm: &[u8]) -> TableGtt {
    let mut gtt = TableGtt::default();
    let pages = gm.len().div_ceil(PAGE_SIZE as usize) as u64;
    for (i, chunk) in gm.chunks(PAGE_SIZE as usize).enumerate() {
        let gpa = (pages - i as u64) * PAGE_SIZE * 2;
        mem.write(gpa, chunk).unwrap();
        gtt.0.insert(BASE_GM + i as u64 * PAGE_SIZE, gpa);
    }
    gtt
}

fn ctl_for(format: PixelFormat, tiling: Tiling) -> u32 {
    let (field, rgbx, alpha) = match format {
        PixelFormat::Xrgb8888 => (4, 0, 0),
        PixelFormat::Argb8888 => (4, 0, 2),
        PixelFormat::Xbgr8888 => (4, 1, 0),
        PixelFormat::Abgr8888 => (4, 1, 3),
        PixelFormat::Xrgb2101010 => (2, 0, 0),
        PixelFormat::Xbgr2101010 => (2, 1, 0),
        PixelFormat::Rgb565 => (0xE, 0, 0),
    };
    let t = match tiling {
        Tiling::Linear => 0,
        Tiling::X => 1,
        Tiling::Y => 4,
    };
    (1 << 31) | (field << 24) | (rgbx << 20) | (t << 10) | (alpha << 4)
}

const FORMATS: [PixelFormat; 7] = [
    PixelFormat::Xrgb8888,
    PixelFormat::Argb8888,
    PixelFormat::Xbgr8888,
    PixelFormat::Abgr8888,
    PixelFormat::Xrgb2101010,
    PixelFormat::Xbgr2101010,
    PixelFormat::Rgb565,
];

struct Setup {
    info: PlaneInfo,
    mem: VecMemory,
    gtt: TableGtt,
}

/// A 150×70 visible window at (9, 5) in a surface one tile wider than needed.
fn setup(format: PixelFormat, tiling: Tiling) -> Setup {
    let (w, h, x0, y0) = (150u32, 70u32, 9u32, 5u32);
    let cpp = format.cpp();
    let unit = tiling.stride_unit().max(512);
    let stride = (u64::from(w + x0) * cpp).div_ceil(unit) * unit + unit;
    let rows = u64::from(h + y0).div_ceil(32) * 32;
    let gm = lay_out(tiling, stride, rows, |xb, y| {
        encode(format, pattern(format, xb / cpp, y))[(xb % cpp) as usize]
    });
    let mem = VecMemory::new(gm.len() as u64 * 2 + 3 * PAGE_SIZE);
    let gtt = scatter(&mem, &gm);
    let regs = PlaneRegs {
        ctl: ctl_for(format, tiling),
        stride: (stride / tiling.stride_unit()) as u32,
        pos: 0,
        size: ((h - 1) << 16) | (w - 1),
        surf: BASE_GM as u32,
        offset: (y0 << 16) | x0,
    };
    let info = decode(&regs, 0).unwrap();
    assert_eq!(info.format, format);
    assert_eq!(info.tiling, tiling);
    Setup { info, mem, gtt }
}

fn check_image(s: &Setup, frame: &Frame, skip_row: impl Fn(u32) -> bool) {
    let f = s.info.format;
    for y in 0..s.info.height {
        if skip_row(y) {
            continue;
        }
        for x in 0..s.info.width {
            let want = pattern(
                f,
                u64::from(x + s.info.x_offset),
                u64::from(y + s.info.y_offset),
            );
            assert_eq!(
                frame.image.pixel(x, y),
                Some(want),
                "{f:?} {:?} ({x},{y})",
                s.info.tiling
            );
        }
    }
}

#[test]
fn every_tiling_and_format_decodes_pixel_for_pixel() {
    for tiling in [Tiling::Linear, Tiling::X, Tiling::Y] {
        for format in FORMATS {
            let s = setup(format, tiling);
            let frame = read_plane(&s.info, &s.gtt, &s.mem).unwrap();
            assert!(frame.report.is_complete(), "{:?}", frame.report);
            assert_eq!((frame.image.width, frame.image.height), (150, 70));
            check_image(&s, &frame, |_| false);
        }
    }
}

#[test]
fn tile_offsets_match_the_spec_examples() {
    // X: byte 512 of row 1 is in the second tile, row 1.
    assert_eq!(Tiling::X.offset(2048, 512, 1), 4096 + 512);
    assert_eq!(Tiling::X.offset(2048, 0, 8), 4 * 4096);
    // Y: byte 16 of row 1 is in OWord column 1 → 512 + 16.
    assert_eq!(Tiling::Y.offset(512, 16, 1), 528);
    assert_eq!(Tiling::Y.offset(512, 128, 0), 4096);
    assert_eq!(Tiling::Y.offset(512, 0, 32), 4 * 4096);
}

#[test]
fn unmapped_pages_are_reported_and_the_rest_rendered() {
    let mut s = setup(PixelFormat::Xrgb8888, Tiling::Linear);
    // Stride 1536: GM page 2 (bytes 8192..12288) holds the right part of surface row 5
    // and all of rows 6 and 7, i.e. visible rows 0..3.
    assert_eq!(s.info.stride, 1536);
    s.gtt.0.remove(&(BASE_GM + 2 * PAGE_SIZE));
    let frame = read_plane(&s.info, &s.gtt, &s.mem).unwrap();
    assert_eq!(frame.report.pages_unmapped, 1);
    assert_eq!(frame.report.unmapped_gm, vec![BASE_GM + 2 * PAGE_SIZE]);
    assert_eq!(frame.report.incomplete_rows, vec![(0, 3)]);
    assert_eq!(frame.image.pixel(149, 0), Some([0, 0, 0, 0]));
    assert_eq!(
        frame.image.pixel(0, 0),
        Some(pattern(PixelFormat::Xrgb8888, 9, 5))
    );
    check_image(&s, &frame, |y| y < 3);
    // Nothing mapped at all: a clear error.
    s.gtt.0.clear();
    assert_eq!(
        read_plane(&s.info, &s.gtt, &s.mem),
        Err(FbError::NothingMapped { base: BASE_GM })
    );
    // Mapped, but to frames that are not guest RAM.
    let far = TableGtt(
        (0..64)
            .map(|i| (BASE_GM + i * PAGE_SIZE, 1 << 40))
            .collect(),
    );
    assert!(matches!(
        read_plane(&s.info, &far, &s.mem),
        Err(FbError::NothingMapped { .. })
    ));
}

#[test]
fn bad_plane_registers_give_typed_errors() {
    let ok = PlaneRegs {
        ctl: 0x8400_0000,
        stride: 16,
        size: (9 << 16) | 9,
        surf: 0x1000,
        ..PlaneRegs::default()
    };
    assert!(decode(&ok, 0).is_ok());
    let e = |r: PlaneRegs| decode(&r, 1).unwrap_err();
    assert_eq!(
        e(PlaneRegs { ctl: 0, ..ok }),
        FbError::PlaneDisabled { pipe: 1 }
    );
    assert!(matches!(
        e(PlaneRegs {
            ctl: 0x8C00_0000,
            ..ok
        }),
        FbError::UnsupportedFormat { field: 0xC, .. }
    ));
    assert_eq!(
        e(PlaneRegs {
            ctl: 0x8400_1400,
            ..ok
        }),
        FbError::UnsupportedTiling(5)
    );
    assert!(matches!(
        e(PlaneRegs {
            ctl: 0x8400_0002,
            ..ok
        }),
        FbError::UnsupportedFeature("rotation")
    ));
    assert!(matches!(
        e(PlaneRegs { stride: 0, ..ok }),
        FbError::BadStride { .. }
    ));
    assert!(matches!(
        e(PlaneRegs { offset: 1000, ..ok }),
        FbError::BadStride { .. }
    ));
    assert!(matches!(
        e(PlaneRegs {
            size: 0x0FFF_1FFF,
            ..ok
        }),
        FbError::TooLarge { .. }
    ));
    assert!(matches!(
        e(PlaneRegs {
            surf: 0xFFFF_F000,
            size: (99 << 16) | 9,
            ..ok
        }),
        FbError::SurfaceOutOfRange { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_plane_registers_never_panic(
        ctl in any::<u32>(), stride in any::<u32>(), size in any::<u32>(),
        surf in any::<u32>(), offset in any::<u32>(), pos in any::<u32>(),
        small in any::<bool>(),
    ) {
        // Half the cases get a small plane so the read path runs too.
        let size = if small { size & 0x003F_003F } else { size };
        let ctl = if small { (ctl & !0x8000_F703) | 0x8000_0000 } else { ctl };
        let regs = PlaneRegs { ctl, stride, pos, size, surf, offset };
        match decode(&regs, 0) {
            Ok(info) => {
                prop_assert!(info.stride >= u64::from(info.x_offset + info.width) * info.format.cpp());
                prop_assert!(info.ggtt_offset + info.size <= GGTT_SIZE);
                if u64::from(info.width) * u64::from(info.height) <= 4096 {
                    let mem = VecMemory::new(64 * PAGE_SIZE);
                    let gtt = TableGtt((0..1u64 << 20).step_by(4096).take(8)
                        .map(|p| (u64::from(surf & 0xFFFF_F000) + p, p)).collect());
                    if let Ok(frame) = read_plane(&info, &gtt, &mem) {
                        prop_assert_eq!(frame.image.rgba.len() as u64,
                            u64::from(info.width) * u64::from(info.height) * 4);
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
