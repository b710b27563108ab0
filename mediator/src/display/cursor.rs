//! Cursor plane decode (§7.1 CURCNTR / CURBASE / CURPOS, §7.3 step 10): a square 32-bpp
//! linear image at a GGTT address, read with the same page-by-page copy as the primary
//! plane ([`super::fb::read_plane`]).

use serde::{Deserialize, Serialize};

use super::fb::{FbError, PixelFormat, PlaneInfo, Tiling, GGTT_SIZE};
use super::regs::{CURBASE, CURCNTR, CURPOS, NUM_PIPES, PIPE_STRIDE};
use super::Display;

/// A decoded cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorInfo {
    /// The cursor image as a plane (linear, stride = width × 4), for [`super::fb::read_plane`].
    pub plane: PlaneInfo,
    /// Position of the top-left corner on the pipe (may be negative).
    pub x: i32,
    /// Position of the top-left corner on the pipe (may be negative).
    pub y: i32,
}

/// Decodes pipe `pipe`'s cursor from CURCNTR, CURBASE and CURPOS.
pub fn decode_cursor(cntr: u32, base: u32, pos: u32, pipe: u32) -> Result<CursorInfo, FbError> {
    let mode = cntr & 0x3F;
    let (size, format) = match mode {
        0 => return Err(FbError::PlaneDisabled { pipe }),
        0x27 => (64, PixelFormat::Argb8888),
        0x22 => (128, PixelFormat::Argb8888),
        0x23 => (256, PixelFormat::Argb8888),
        0x07 => (64, PixelFormat::Xrgb8888),
        0x02 => (128, PixelFormat::Xrgb8888),
        0x03 => (256, PixelFormat::Xrgb8888),
        _ => return Err(FbError::UnsupportedCursorMode(mode)),
    };
    let stride = u64::from(size) * 4;
    let ggtt_offset = u64::from(base & 0xFFFF_F000);
    let bytes = stride * u64::from(size);
    if ggtt_offset + bytes > GGTT_SIZE {
        return Err(FbError::SurfaceOutOfRange {
            base: ggtt_offset,
            size: bytes,
        });
    }
    let signed = |mag: u32, neg: bool| {
        let m = i32::try_from(mag).unwrap_or(0);
        if neg {
            -m
        } else {
            m
        }
    };
    let x = signed(pos & 0x1FFF, pos & (1 << 15) != 0);
    let y = signed((pos >> 16) & 0xFFF, pos & (1 << 31) != 0);
    Ok(CursorInfo {
        plane: PlaneInfo {
            pipe,
            format,
            drm_format: format.fourcc(),
            drm_format_mod: 0,
            tiling: Tiling::Linear,
            width: size,
            height: size,
            stride,
            size: bytes,
            x_pos: x.max(0).unsigned_abs(),
            y_pos: y.max(0).unsigned_abs(),
            x_offset: 0,
            y_offset: 0,
            ggtt_offset,
        },
        x,
        y,
    })
}

impl Display {
    /// The cursor of pipe `pipe` (0..3).
    pub fn cursor(&self, pipe: u32) -> Result<CursorInfo, FbError> {
        let b = pipe.min(NUM_PIPES as u32 - 1) * PIPE_STRIDE;
        decode_cursor(
            self.peek(CURCNTR + b),
            self.peek(CURBASE + b),
            self.peek(CURPOS + b),
            pipe,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::fb::{read_plane, GttLookup};
    use super::*;
    use crate::memory::{GuestMemory, VecMemory};

    struct Ident;
    impl GttLookup for Ident {
        fn gma_to_gpa(&self, gm: u64) -> Option<u64> {
            Some(gm)
        }
    }

    #[test]
    fn decodes_modes_and_signed_position_and_reads_argb() {
        let mut d = Display::default();
        assert_eq!(d.cursor(0), Err(FbError::PlaneDisabled { pipe: 0 }));
        d.mmio_write(CURCNTR, 0x27);
        d.mmio_write(CURBASE, 0x2000);
        d.mmio_write(CURPOS, (1 << 31) | (5 << 16) | 300);
        let c = d.cursor(0).unwrap();
        assert_eq!((c.x, c.y), (300, -5));
        assert_eq!(
            (c.plane.width, c.plane.stride, c.plane.format),
            (64, 256, PixelFormat::Argb8888)
        );
        let mem = VecMemory::new(0x2000 + 64 * 256);
        mem.write(0x2000 + 256 + 4, &[1, 2, 3, 0x80]).unwrap();
        let img = read_plane(&c.plane, &Ident, &mem).unwrap().image;
        assert_eq!(img.pixel(1, 1), Some([3, 2, 1, 0x80]));
        assert_eq!(
            decode_cursor(0x15, 0, 0, 1),
            Err(FbError::UnsupportedCursorMode(0x15))
        );
        assert!(matches!(
            decode_cursor(0x23, 0xFFFF_F000, 0, 1),
            Err(FbError::SurfaceOutOfRange { .. })
        ));
    }
}
