//! Intel legacy tiled-surface address math (spec §7.3 step 8), shared by the display
//! decoder (scanout of X/Y-tiled framebuffers) and the aperture's fence detiling (§4.5).
//!
//! A tiled surface is a grid of 4 KiB tiles, `stride / tile width` tiles per tile row.
//! X tiles are 512 B × 8 rows, row-major inside the tile; legacy Y tiles are 128 B × 32
//! rows made of eight 16-byte-wide columns stored one after another (column-major
//! OWords). No bit-6 swizzling on Gen9.

use serde::{Deserialize, Serialize};

/// Bytes in one tile (both X and Y).
pub const TILE_BYTES: u64 = 4096;

/// Surface tiling (PLANE_CTL bits 12:10 for the display; fence bit 1 for the aperture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tiling {
    /// Row-major.
    Linear,
    /// X tiles: 512 B × 8 rows.
    X,
    /// Legacy Y tiles: 128 B × 32 rows in 16-byte columns.
    Y,
}

impl Tiling {
    /// PLANE_STRIDE unit in bytes.
    pub fn stride_unit(self) -> u64 {
        match self {
            Tiling::Linear => 64,
            Tiling::X => 512,
            Tiling::Y => 128,
        }
    }
    /// Tile width in bytes (1 for linear: any stride works).
    pub fn tile_width(self) -> u64 {
        match self {
            Tiling::Linear => 1,
            Tiling::X => 512,
            Tiling::Y => 128,
        }
    }
    /// Rows per tile (1 for linear).
    pub fn tile_rows(self) -> u64 {
        match self {
            Tiling::Linear => 1,
            Tiling::X => 8,
            Tiling::Y => 32,
        }
    }
    /// DRM format modifier (`I915_FORMAT_MOD_{X,Y}_TILED`, or linear 0).
    pub fn drm_modifier(self) -> u64 {
        match self {
            Tiling::Linear => 0,
            Tiling::X => (1 << 56) | 1,
            Tiling::Y => (1 << 56) | 2,
        }
    }
    /// Byte offset within the surface of byte `xb` of row `y` (§7.3 step 8). `stride` is a
    /// multiple of the tile width for tiled surfaces, `xb < stride`, and the caller
    /// bounds `stride` and `y` so the result fits (every caller keeps them below 2^32).
    pub fn offset(self, stride: u64, xb: u64, y: u64) -> u64 {
        match self {
            Tiling::Linear => y * stride + xb,
            Tiling::X => {
                ((y / 8) * (stride / 512) + xb / 512) * TILE_BYTES + (y % 8) * 512 + xb % 512
            }
            Tiling::Y => {
                ((y / 32) * (stride / 128) + xb / 128) * TILE_BYTES
                    + ((xb % 128) / 16) * 512
                    + (y % 32) * 16
                    + xb % 16
            }
        }
    }
    /// Where the byte at linear offset `linear` of a `stride`-wide surface (row
    /// `linear / stride`, byte `linear % stride`) is stored: the detiling a fence does
    /// for a CPU access through the aperture. `None` if `stride` is zero.
    pub fn detile(self, stride: u64, linear: u64) -> Option<u64> {
        let y = linear.checked_div(stride)?;
        Some(self.offset(stride, linear % stride, y))
    }
    /// How many bytes from linear offset `linear` on are stored contiguously (up to the
    /// end of the current X row-in-tile / Y OWord column, or of the surface row).
    pub fn contiguous_run(self, stride: u64, linear: u64) -> u64 {
        let xb = linear.checked_rem(stride).unwrap_or(0);
        let to_row_end = stride.saturating_sub(xb).max(1);
        let to_unit_end = match self {
            Tiling::Linear => to_row_end,
            Tiling::X => 512 - xb % 512,
            Tiling::Y => 16 - xb % 16,
        };
        to_unit_end.min(to_row_end)
    }
}

/// Lays a surface (`stride` bytes × `rows`, whole tile rows) out in memory order by
/// walking the *storage* layout of each tiling, independently of [`Tiling::offset`]: X
/// tiles are 8 rows of 512 contiguous bytes; Y tiles are 8 columns of 16 bytes × 32
/// rows, column after column. `byte(x, y)` gives the surface byte at (x, y).
#[cfg(test)]
pub(crate) fn lay_out(
    tiling: Tiling,
    stride: u64,
    rows: u64,
    byte: impl Fn(u64, u64) -> u8,
) -> Vec<u8> {
    let mut gm = Vec::new();
    match tiling {
        Tiling::Linear => {
            for y in 0..rows {
                gm.extend((0..stride).map(|x| byte(x, y)));
            }
        }
        Tiling::X => {
            for ty in 0..rows / 8 {
                for tx in 0..stride / 512 {
                    for r in 0..8 {
                        gm.extend((0..512).map(|c| byte(tx * 512 + c, ty * 8 + r)));
                    }
                }
            }
        }
        Tiling::Y => {
            for ty in 0..rows / 32 {
                for tx in 0..stride / 128 {
                    for col in 0..8 {
                        for r in 0..32 {
                            gm.extend((0..16).map(|b| byte(tx * 128 + col * 16 + b, ty * 32 + r)));
                        }
                    }
                }
            }
        }
    }
    gm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte pattern that differs between neighbouring positions in x and y.
    fn pat(x: u64, y: u64) -> u8 {
        (x * 7 + y * 13 + (x >> 8) * 3) as u8
    }

    #[test]
    fn offset_matches_the_storage_walk() {
        for (t, stride, rows) in [
            (Tiling::Linear, 200, 3),
            (Tiling::X, 1024, 16),
            (Tiling::X, 1536, 8),
            (Tiling::Y, 384, 64),
            (Tiling::Y, 128, 32),
        ] {
            let mem = lay_out(t, stride, rows, pat);
            assert_eq!(mem.len() as u64, stride * rows);
            for y in 0..rows {
                for x in 0..stride {
                    let o = t.offset(stride, x, y) as usize;
                    assert_eq!(mem[o], pat(x, y), "{t:?} stride {stride} ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn detile_is_a_permutation_of_whole_tile_rows() {
        for (t, stride) in [(Tiling::X, 1024u64), (Tiling::Y, 256)] {
            let size = stride * t.tile_rows() * 2;
            let mut seen = vec![false; size as usize];
            for l in 0..size {
                let o = t.detile(stride, l).unwrap();
                assert!(o < size, "{t:?}: {l} -> {o}");
                assert!(!seen[o as usize], "{t:?}: {o} hit twice");
                seen[o as usize] = true;
            }
        }
        assert_eq!(Tiling::X.detile(0, 5), None);
    }

    #[test]
    fn contiguous_runs_stay_contiguous() {
        for (t, stride) in [
            (Tiling::X, 1024u64),
            (Tiling::Y, 256),
            (Tiling::Linear, 100),
        ] {
            for l in 0..stride * 40 {
                let run = t.contiguous_run(stride, l);
                assert!(run >= 1);
                let o = t.detile(stride, l).unwrap();
                for k in 1..run {
                    assert_eq!(t.detile(stride, l + k), Some(o + k), "{t:?} {l}+{k}");
                }
            }
        }
        assert_eq!(Tiling::Y.contiguous_run(256, 14), 2);
        assert_eq!(Tiling::X.contiguous_run(1024, 510), 2);
    }
}
