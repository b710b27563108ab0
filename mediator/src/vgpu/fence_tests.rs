//! Aperture detiling through the guest's fences (§4.5, pitfall 5), driven through the
//! [`IoHandler`] interface: a pattern written linearly through BAR2 must land in guest
//! RAM in the tiled storage order, computed independently by [`lay_out`].

use super::tests::{enabled, rd, wr, BAR0, BAR2};
use super::*;
use crate::fence::encode;
use crate::memory::PAGE_SIZE;
use crate::mmio::gt::FENCE_BASE;
use crate::tiling::{lay_out, Tiling};

/// Guest RAM where the fenced surface's pages go (scattered, in reverse order).
const RAM_BASE: u64 = 0x40_0000;

/// Surface byte (x, y): differs between neighbours in both directions.
fn pat(x: u64, y: u64) -> u8 {
    (x * 7 + y * 31 + (x >> 7) * 3) as u8
}

/// Guest RAM address of surface page `i` of `pages`.
fn gpa_of(pages: u64, i: u64) -> u64 {
    RAM_BASE + (pages - i) * 2 * PAGE_SIZE
}

/// Maps `pages` GM pages from `gm` onto scattered guest frames through trapped PTEs.
fn map(v: &mut Vgpu, gm: u64, pages: u64) {
    for i in 0..pages {
        let pte = BAR0 + 0x80_0000 + ((gm >> 12) + i) * 8;
        wr(v, pte, gpa_of(pages, i) | 1, 8);
    }
}

/// Programs guest fence `i` as i915 does: low dword 0, high dword, low dword.
fn set_fence(v: &mut Vgpu, i: u64, raw: u64) {
    let lo = BAR0 + u64::from(FENCE_BASE) + 8 * i;
    wr(v, lo, 0, 4);
    wr(v, lo + 4, raw >> 32, 4);
    wr(v, lo, raw & 0xffff_ffff, 4);
}

/// The surface's bytes in GM order, read page by page from guest RAM.
fn gm_bytes(v: &Vgpu, pages: u64) -> Vec<u8> {
    let mut out = vec![0u8; (pages * PAGE_SIZE) as usize];
    for (i, chunk) in out.chunks_mut(PAGE_SIZE as usize).enumerate() {
        v.mem().read(gpa_of(pages, i as u64), chunk).unwrap();
    }
    out
}

/// Writes the linear pattern through the aperture with 8-byte accesses starting at byte
/// 3, so pieces straddle 16-byte Y columns and 512-byte X rows, then the edges bytewise.
fn write_linear(v: &mut Vgpu, gm: u64, pitch: u64, size: u64) {
    let byte = |l: u64| pat(l % pitch, l / pitch);
    for l in 0..3 {
        wr(v, BAR2 + gm + l, u64::from(byte(l)), 1);
    }
    let mut l = 3;
    while l + 8 <= size {
        let val = (0..8).fold(0u64, |acc, k| acc | u64::from(byte(l + k)) << (8 * k));
        wr(v, BAR2 + gm + l, val, 8);
        l += 8;
    }
    for l in l..size {
        wr(v, BAR2 + gm + l, u64::from(byte(l)), 1);
    }
}

/// Writes a surface through a fence of `tiling` and checks RAM holds the tiled layout,
/// and that reading back through the aperture gives the linear pattern again.
fn round_trip(tiling: Tiling, pitch: u64) {
    let (mut v, a) = enabled();
    let gm = a.low.base + 0x10_0000;
    let rows = tiling.tile_rows() * 3;
    let size = pitch * rows;
    let pages = size / PAGE_SIZE;
    map(&mut v, gm, pages);
    set_fence(&mut v, 2, encode(gm, size, pitch, tiling));
    assert_eq!(v.active_fences().len(), 1);
    write_linear(&mut v, gm, pitch, size);
    assert_eq!(v.counters().aperture_unmapped, 0);
    assert!(v.counters().aperture_detiled > 0);
    let want = lay_out(tiling, pitch, rows, pat);
    let got = gm_bytes(&v, pages);
    if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
        panic!(
            "{tiling:?}: GM byte {i:#x} is {:#x}, want {:#x}",
            got[i], want[i]
        );
    }
    for (l, len) in [
        (0u64, 8usize),
        (13, 8),
        (pitch - 3, 8),
        (size - 8, 8),
        (777, 2),
    ] {
        let expect = (0..len as u64).fold(0u64, |acc, k| {
            let b = l + k;
            acc | u64::from(pat(b % pitch, b / pitch)) << (8 * k)
        });
        assert_eq!(
            rd(&mut v, BAR2 + gm + l, len),
            expect,
            "{tiling:?} read at {l}"
        );
    }
    assert_eq!(v.counters().fence_invalid, 0);
}

#[test]
fn x_fence_detiles_aperture_writes_and_reads() {
    round_trip(Tiling::X, 1536);
}

#[test]
fn y_fence_detiles_aperture_writes_and_reads() {
    round_trip(Tiling::Y, 384);
}

#[test]
fn disabled_fence_is_linear() {
    let (mut v, a) = enabled();
    let (pitch, rows) = (1024, 16);
    let gm = a.low.base;
    let pages = pitch * rows / PAGE_SIZE;
    map(&mut v, gm, pages);
    // Programmed, then disabled the way i915 releases a fence (low dword 0).
    set_fence(&mut v, 0, encode(gm, pitch * rows, pitch, Tiling::X));
    wr(&mut v, BAR0 + u64::from(FENCE_BASE), 0, 4);
    assert!(v.active_fences().is_empty());
    write_linear(&mut v, gm, pitch, pitch * rows);
    assert_eq!(
        gm_bytes(&v, pages),
        lay_out(Tiling::Linear, pitch, rows, pat)
    );
    assert_eq!(v.counters().aperture_detiled, 0);
    assert_eq!(v.counters().fence_invalid, 0);
}

#[test]
fn invalid_fences_are_ignored_and_counted() {
    let (mut v, a) = enabled();
    let (pitch, rows) = (1024, 16);
    let gm = a.low.base;
    let size = pitch * rows;
    map(&mut v, gm, size / PAGE_SIZE);
    let inverted = (gm << 32) | (gm + 0x1000) | 1;
    let bad = [
        inverted,
        encode(gm, size, 384, Tiling::X), // pitch not whole X tiles
        encode(a.low.base - 0x1000, size, pitch, Tiling::X), // starts before the window
        encode(a.low.end() - 0x1000, size, pitch, Tiling::Y), // runs past its end
        encode(0, size, pitch, Tiling::Y), // the host's reserve
    ];
    for (i, raw) in bad.iter().enumerate() {
        set_fence(&mut v, i as u64 % 4, *raw);
        assert_eq!(
            v.counters().fence_invalid,
            i as u64 + 1,
            "fence value {raw:#x}"
        );
    }
    assert!(v.active_fences().is_empty());
    // A 64-bit write is judged as one value: a good fence is not counted.
    let good = encode(gm, size, pitch, Tiling::Y);
    wr(&mut v, BAR0 + u64::from(FENCE_BASE) + 8, good, 8);
    assert_eq!(v.counters().fence_invalid, bad.len() as u64);
    assert_eq!(v.active_fences().len(), 1);
    wr(&mut v, BAR0 + u64::from(FENCE_BASE) + 8, 0, 8);
    // Fences beyond fence_num are refused outright and never detile.
    set_fence(&mut v, 4, good);
    assert!(v.counters().fence_out_of_range >= 3);
    assert!(v.active_fences().is_empty());
    // With only invalid fences programmed, accesses are linear.
    set_fence(&mut v, 3, bad[1]);
    write_linear(&mut v, gm, pitch, size);
    assert_eq!(
        gm_bytes(&v, size / PAGE_SIZE),
        lay_out(Tiling::Linear, pitch, rows, pat)
    );
    assert_eq!(v.counters().aperture_detiled, 0);
}

#[test]
fn detiling_never_leaves_the_fenced_range() {
    let (mut v, a) = enabled();
    // The last page of the low window, one 8 KiB-pitch X fence over it: row 0's bytes
    // beyond 512 would be stored in the next tile, past the window's end.
    let gm = a.low.end() - PAGE_SIZE;
    map(&mut v, gm, 1);
    set_fence(&mut v, 0, encode(gm, PAGE_SIZE, 8192, Tiling::X));
    assert_eq!(v.active_fences().len(), 1);
    wr(&mut v, BAR2 + gm + 5, 0xab, 1);
    assert_eq!(v.mem().read_u32(gpa_of(1, 0) + 5).unwrap() & 0xff, 0xab);
    let before = gm_bytes(&v, 1);
    // Byte 510..518 of row 0 straddles into tile 1: refused, nothing written.
    wr(&mut v, BAR2 + gm + 510, u64::MAX, 8);
    assert_eq!(v.counters().aperture_fence_outside, 1);
    assert_eq!(rd(&mut v, BAR2 + gm + 600, 1), 0xff);
    assert_eq!(v.counters().aperture_fence_outside, 2);
    assert_eq!(v.counters().aperture_unmapped, 2);
    // The two bytes inside tile 0 may be written before the refusal; nothing else moves.
    let after = gm_bytes(&v, 1);
    let changed: Vec<usize> = (0..after.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    assert!(changed.iter().all(|&i| i == 510 || i == 511), "{changed:?}");
    // Row 0 byte 7 (inside tile 0) still works; the access next to the window's end
    // through the aperture is outside the vGPU's slice as before.
    wr(&mut v, BAR2 + gm + 7, 0x5a, 1);
    assert_eq!(rd(&mut v, BAR2 + gm + 7, 1), 0x5a);
    assert_eq!(rd(&mut v, BAR2 + a.low.end(), 1), 0xff);
}
