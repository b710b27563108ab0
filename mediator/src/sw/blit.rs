//! XY_COLOR_BLT and XY_SRC_COPY_BLT in software (§6.7): 8/16/32 bpp, linear or X-tiled
//! (512-byte × 8-row tiles, no swizzle on Gen9), raster ops F0 and CC only, copied row by
//! row through the workload's address space (GGTT in privileged buffers, the PPGTT in
//! non-privileged batches). Clipping (BR13 bit 30) is not modelled.

use super::exec::{Exec, Stop};
use crate::cmd::parse::{Cmd, Op};
use crate::host::{AddressSpace, FaultReason};

const TILE_W: u64 = 512;
const TILE_H: u64 = 8;
const TILE_BYTES: u64 = 4096;

fn dw(body: &[u32], i: usize) -> u32 {
    body.get(i).copied().unwrap_or(0)
}

fn gma48(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi & 0xffff) << 32)
}

/// A blit surface.
#[derive(Debug, Clone, Copy)]
struct Surface {
    base: u64,
    /// Pitch in bytes.
    pitch: u64,
    tiled: bool,
}

impl Surface {
    /// Page-contiguous pieces (gma, length) of the `len` bytes starting at byte `xb` of
    /// row `y`.
    fn segments(&self, xb: u64, y: u64, len: u64) -> Option<Vec<(u64, u64)>> {
        if !self.tiled {
            let off = y.checked_mul(self.pitch)?.checked_add(xb)?;
            return Some(vec![(self.base.checked_add(off)?, len)]);
        }
        let tiles_per_row = self.pitch / TILE_W;
        let mut out = Vec::new();
        let mut x = xb;
        let end = xb.checked_add(len)?;
        while x < end {
            let within = x % TILE_W;
            let n = (TILE_W - within).min(end - x);
            let tile = (y / TILE_H)
                .checked_mul(tiles_per_row)?
                .checked_add(x / TILE_W)?;
            let off = tile
                .checked_mul(TILE_BYTES)?
                .checked_add((y % TILE_H) * TILE_W + within)?;
            out.push((self.base.checked_add(off)?, n));
            x += n;
        }
        Some(out)
    }
}

struct Rect {
    x: u64,
    y: u64,
    w: u64,
    h: u64,
}

fn bad(header: u32) -> Stop {
    Stop::Fault(FaultReason::BadCommand { offset: 0, header })
}

fn surface(base: u64, pitch_field: u32, tiled: bool, header: u32) -> Result<Surface, Stop> {
    let pitch = if tiled {
        u64::from(pitch_field) * 4
    } else {
        u64::from(pitch_field)
    };
    if tiled && pitch % TILE_W != 0 {
        return Err(bad(header));
    }
    Ok(Surface { base, pitch, tiled })
}

fn write_row(
    ex: &mut Exec<'_, '_>,
    s: AddressSpace,
    surf: &Surface,
    xb: u64,
    y: u64,
    row: &[u8],
) -> Result<(), Stop> {
    let segs = surf.segments(xb, y, row.len() as u64).ok_or(bad(0))?;
    let mut at = 0usize;
    for (gma, n) in segs {
        let n = usize::try_from(n).map_err(|_| bad(0))?;
        let piece = row.get(at..at + n).ok_or(bad(0))?;
        ex.acc.write(s, gma, piece)?;
        at += n;
    }
    Ok(())
}

fn read_row(
    ex: &Exec<'_, '_>,
    s: AddressSpace,
    surf: &Surface,
    xb: u64,
    y: u64,
    row: &mut [u8],
) -> Result<(), Stop> {
    let segs = surf.segments(xb, y, row.len() as u64).ok_or(bad(0))?;
    let mut at = 0usize;
    for (gma, n) in segs {
        let n = usize::try_from(n).map_err(|_| bad(0))?;
        let piece = row.get_mut(at..at + n).ok_or(bad(0))?;
        ex.acc.read(s, gma, piece)?;
        at += n;
    }
    Ok(())
}

/// Executes a blit; returns the number of pixels written.
pub(super) fn run(
    ex: &mut Exec<'_, '_>,
    cmd: &Cmd,
    body: &[u32],
    nonpriv: bool,
) -> Result<u64, Stop> {
    let h = cmd.header;
    let br13 = dw(body, 1);
    let bpp: u64 = match (br13 >> 24) & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => 4,
    };
    let (x1, y1) = (
        u64::from(dw(body, 2) & 0xffff),
        u64::from(dw(body, 2) >> 16),
    );
    let (x2, y2) = (
        u64::from(dw(body, 3) & 0xffff),
        u64::from(dw(body, 3) >> 16),
    );
    if x2 <= x1 || y2 <= y1 {
        return Ok(0);
    }
    let r = Rect {
        x: x1,
        y: y1,
        w: x2 - x1,
        h: y2 - y1,
    };
    let pixels = r.w * r.h;
    if pixels > ex.cost.max_blit_pixels {
        return Err(bad(h));
    }
    // Blits address the buffer's space: GGTT when privileged, PPGTT otherwise (§6.7).
    let space = ex.space(!nonpriv, false)?.ok_or(bad(h))?;
    let dst = surface(
        gma48(dw(body, 4), dw(body, 5)),
        br13 & 0xffff,
        h & (1 << 11) != 0,
        h,
    )?;
    let rop = (br13 >> 16) & 0xff;
    // 32 bpp write enables: bit 20 RGB, bit 21 alpha.
    let mask: [bool; 4] = if bpp == 4 {
        let rgb = h & (1 << 20) != 0;
        [rgb, rgb, rgb, h & (1 << 21) != 0]
    } else {
        [true; 4]
    };
    let row_len = usize::try_from(r.w * bpp).map_err(|_| bad(h))?;
    match cmd.op {
        Op::XyColorBlt if rop == 0xF0 => {
            let px = dw(body, 6).to_le_bytes();
            let pixel = px.get(..bpp as usize).ok_or(bad(h))?;
            let row: Vec<u8> = pixel.iter().copied().cycle().take(row_len).collect();
            for y in r.y..r.y + r.h {
                put_row(ex, space, &dst, r.x * bpp, y, &row, &mask, bpp)?;
            }
        }
        Op::XySrcCopyBlt if rop == 0xCC => {
            let (sx, sy) = (
                u64::from(dw(body, 6) & 0xffff),
                u64::from(dw(body, 6) >> 16),
            );
            let src = surface(
                gma48(dw(body, 8), dw(body, 9)),
                dw(body, 7) & 0xffff,
                h & (1 << 15) != 0,
                h,
            )?;
            let mut row = vec![0u8; row_len];
            // Copy bottom-up when the destination lies after the source (overlap-safe for
            // the common same-surface scroll).
            let rows: Box<dyn Iterator<Item = u64>> = if dst.base > src.base {
                Box::new((0..r.h).rev())
            } else {
                Box::new(0..r.h)
            };
            for i in rows {
                read_row(ex, space, &src, sx * bpp, sy + i, &mut row)?;
                put_row(ex, space, &dst, r.x * bpp, r.y + i, &row, &mask, bpp)?;
            }
        }
        _ => return Err(bad(h)),
    }
    Ok(pixels)
}

/// Writes a row, honouring the 32 bpp write-enable mask with a read-modify-write.
#[allow(clippy::too_many_arguments)]
fn put_row(
    ex: &mut Exec<'_, '_>,
    s: AddressSpace,
    surf: &Surface,
    xb: u64,
    y: u64,
    row: &[u8],
    mask: &[bool; 4],
    bpp: u64,
) -> Result<(), Stop> {
    if mask.iter().all(|m| *m) {
        return write_row(ex, s, surf, xb, y, row);
    }
    let mut cur = vec![0u8; row.len()];
    read_row(ex, s, surf, xb, y, &mut cur)?;
    for (i, (c, n)) in cur.iter_mut().zip(row).enumerate() {
        if mask.get(i % bpp as usize).copied().unwrap_or(true) {
            *c = *n;
        }
    }
    write_row(ex, s, surf, xb, y, &cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_tiled_addresses_follow_512x8_tiles() {
        let s = Surface {
            base: 0x10_0000,
            pitch: 1024,
            tiled: true,
        };
        // Row 0, byte 0 → tile 0 start; row 1 → +512; row 8 → tile 2 (2 tiles per row).
        assert_eq!(s.segments(0, 0, 4).unwrap(), vec![(0x10_0000, 4)]);
        assert_eq!(s.segments(0, 1, 4).unwrap(), vec![(0x10_0200, 4)]);
        assert_eq!(s.segments(0, 8, 4).unwrap(), vec![(0x10_2000, 4)]);
        // A row crossing the tile boundary splits into two pieces.
        assert_eq!(
            s.segments(508, 0, 8).unwrap(),
            vec![(0x10_01FC, 4), (0x10_1000, 4)]
        );
        let lin = Surface { tiled: false, ..s };
        assert_eq!(lin.segments(8, 2, 4).unwrap(), vec![(0x10_0808, 4)]);
        assert!(Surface {
            base: u64::MAX,
            pitch: 4,
            tiled: false
        }
        .segments(0, 1, 4)
        .is_none());
    }
}
