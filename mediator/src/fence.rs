//! Fence registers (spec §4.5, pitfall 5) and the detiling they do for CPU accesses
//! through the aperture.
//!
//! Gen9 fence *i* is a 64-bit register at 100000 + 8·*i* (i915's `FENCE_REG_GEN6_LO/HI`):
//!
//! * low dword: bits 31:12 start GM address, bit 1 Y-tiled (else X), bit 0 valid;
//! * high dword: bits 31:12 end GM address (first byte of the last, inclusive, page),
//!   bits 11:0 pitch in 128-byte units minus one (bit 32 of the 64-bit value).
//!
//! An enabled fence makes an aperture access at GM *a* in [start, end + 4 KiB) reach the
//! byte a tiled surface of that pitch stores at linear offset *a* − start. Every field is
//! guest input: [`decode`] validates it and an invalid fence acts as disabled.

use thiserror::Error;

use crate::partition::GmWindow;
use crate::tiling::Tiling;

/// Fence page granularity (start and end are page addresses).
pub const FENCE_PAGE: u64 = 4096;
/// Bit 0 of the low dword: the fence is enabled.
pub const FENCE_VALID: u64 = 1 << 0;
/// Bit 1 of the low dword: Y tiling (X when clear).
pub const FENCE_TILING_Y: u64 = 1 << 1;
/// Position of the pitch field in the 64-bit value.
pub const FENCE_PITCH_SHIFT: u32 = 32;
/// Width mask of the pitch field (high dword bits 11:0).
pub const FENCE_PITCH_MASK: u64 = 0xFFF;
/// Pitch unit in bytes.
pub const FENCE_PITCH_UNIT: u64 = 128;
/// Address bits 31:12 of either dword.
const ADDR_MASK: u64 = 0xFFFF_F000;

/// Why an enabled fence is ignored.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FenceError {
    /// The end page lies below the start page.
    #[error("fence end {end:#x} below start {start:#x}")]
    EndBeforeStart {
        /// Start GM address.
        start: u64,
        /// End GM address (inclusive page).
        end: u64,
    },
    /// The pitch is not a whole number of tiles wide (X tiles are 512 bytes).
    #[error("fence pitch {pitch} not a multiple of the {tiling:?} tile width")]
    BadPitch {
        /// Pitch in bytes.
        pitch: u64,
        /// Tiling mode.
        tiling: Tiling,
    },
    /// The fenced range is not inside one of the vGPU's own GM windows.
    #[error("fence range {start:#x}+{size:#x} outside the vGPU's windows")]
    OutsideWindows {
        /// Start GM address.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
}

/// A validated, enabled fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// First fenced GM address (page aligned).
    pub start: u64,
    /// Fenced bytes (whole pages).
    pub size: u64,
    /// Surface pitch in bytes (a multiple of the tile width).
    pub pitch: u64,
    /// X or Y.
    pub tiling: Tiling,
}

/// Decodes a fence register value. `Ok(None)` if the valid bit is clear; an error if it
/// is set but the fence is unusable (the caller treats it as disabled and counts it).
/// `windows` are the vGPU's own GM windows; the fenced range must lie inside one.
pub fn decode(raw: u64, windows: &[GmWindow]) -> Result<Option<Fence>, FenceError> {
    if raw & FENCE_VALID == 0 {
        return Ok(None);
    }
    let start = raw & ADDR_MASK;
    let end = (raw >> 32) & ADDR_MASK;
    let field = (raw >> FENCE_PITCH_SHIFT) & FENCE_PITCH_MASK;
    let pitch = (field + 1) * FENCE_PITCH_UNIT;
    let tiling = if raw & FENCE_TILING_Y != 0 {
        Tiling::Y
    } else {
        Tiling::X
    };
    if end < start {
        return Err(FenceError::EndBeforeStart { start, end });
    }
    if pitch % tiling.tile_width() != 0 {
        return Err(FenceError::BadPitch { pitch, tiling });
    }
    // Both addresses are below 2^32, so neither sum can overflow.
    let size = end - start + FENCE_PAGE;
    if !windows.iter().any(|w| w.contains_range(start, size)) {
        return Err(FenceError::OutsideWindows { start, size });
    }
    Ok(Some(Fence {
        start,
        size,
        pitch,
        tiling,
    }))
}

/// Encodes a fence the way i915 programs one (for tests and tools).
pub fn encode(start: u64, size: u64, pitch: u64, tiling: Tiling) -> u64 {
    let end = start.wrapping_add(size).wrapping_sub(FENCE_PAGE);
    let field = (pitch / FENCE_PITCH_UNIT).wrapping_sub(1) & FENCE_PITCH_MASK;
    let y = if tiling == Tiling::Y {
        FENCE_TILING_Y
    } else {
        0
    };
    ((end & ADDR_MASK) << 32) | (field << FENCE_PITCH_SHIFT) | (start & ADDR_MASK) | y | FENCE_VALID
}

/// Where one aperture byte run goes through a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detiled {
    /// `gm` is not fenced: access it linearly.
    Linear,
    /// Bytes stored contiguously from `gm` on, at most `run` of them.
    Tiled {
        /// Detiled GM address.
        gm: u64,
        /// Bytes that stay contiguous (≥ 1).
        run: u64,
    },
    /// The byte would be stored beyond the fenced range (its last tile row is partial).
    Outside,
}

impl Fence {
    /// Whether `gm` is fenced.
    pub fn contains(&self, gm: u64) -> bool {
        gm.checked_sub(self.start).is_some_and(|o| o < self.size)
    }

    /// Detiles the aperture access at `gm` (see [`Detiled`]).
    pub fn detile(&self, gm: u64) -> Detiled {
        let Some(linear) = gm.checked_sub(self.start).filter(|&o| o < self.size) else {
            return Detiled::Linear;
        };
        let Some(off) = self.tiling.detile(self.pitch, linear) else {
            return Detiled::Outside;
        };
        let run = self.tiling.contiguous_run(self.pitch, linear);
        match off.checked_add(run) {
            Some(e) if e <= self.size => Detiled::Tiled {
                gm: self.start + off,
                run,
            },
            _ if off < self.size => Detiled::Tiled {
                gm: self.start + off,
                run: self.size - off,
            },
            _ => Detiled::Outside,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: GmWindow = GmWindow {
        base: 0x0800_0000,
        size: 0x0100_0000,
    };

    #[test]
    fn decodes_the_i915_layout() {
        // i915: start | end << 32 | (pitch/128 - 1) << 32 | Y << 1 | valid.
        let raw = (0x0801_f000u64 << 32) | (7 << 32) | 0x0801_0000 | 2 | 1;
        let f = decode(raw, &[LOW]).unwrap().unwrap();
        assert_eq!(
            f,
            Fence {
                start: 0x0801_0000,
                size: 0x1_0000,
                pitch: 1024,
                tiling: Tiling::Y
            }
        );
        assert_eq!(encode(f.start, f.size, f.pitch, f.tiling), raw);
        assert_eq!(decode(raw & !1, &[LOW]), Ok(None), "valid bit clear");
        let x = encode(0x0800_0000, 0x2000, 4096, Tiling::X);
        assert_eq!(decode(x, &[LOW]).unwrap().unwrap().tiling, Tiling::X);
    }

    #[test]
    fn rejects_bad_fences() {
        let inverted = (0x0800_0000u64 << 32) | 0x0801_0000 | 1;
        assert!(matches!(
            decode(inverted, &[LOW]),
            Err(FenceError::EndBeforeStart { .. })
        ));
        let x_pitch_384 = encode(0x0800_0000, 0x2000, 384, Tiling::X);
        assert!(matches!(
            decode(x_pitch_384, &[LOW]),
            Err(FenceError::BadPitch { pitch: 384, .. })
        ));
        assert!(decode(encode(0x0800_0000, 0x2000, 384, Tiling::Y), &[LOW]).is_ok());
        for (start, size) in [(0x0700_0000, 0x1000), (0x08ff_f000, 0x2000), (0, 0x1000)] {
            assert!(matches!(
                decode(encode(start, size, 512, Tiling::X), &[LOW]),
                Err(FenceError::OutsideWindows { .. })
            ));
        }
        let whole = encode(LOW.base, LOW.size, 512, Tiling::X);
        assert!(decode(whole, &[LOW]).unwrap().is_some());
        assert!(decode(whole, &[]).is_err(), "no windows, nothing valid");
    }

    #[test]
    fn detile_clips_to_the_fenced_range() {
        // 3 pages with a 1024-byte X pitch: tile rows of 8 KiB, the second partial.
        let f = decode(encode(LOW.base, 0x3000, 1024, Tiling::X), &[LOW])
            .unwrap()
            .unwrap();
        assert_eq!(f.detile(LOW.base - 1), Detiled::Linear);
        assert_eq!(f.detile(LOW.base + 0x3000), Detiled::Linear);
        assert_eq!(
            f.detile(LOW.base + 1024 + 3),
            Detiled::Tiled {
                gm: LOW.base + 512 + 3,
                run: 509
            }
        );
        // Row 8, byte 512: tile 1 of tile row 1 = offset 0x3000, past the range.
        assert_eq!(f.detile(LOW.base + 8 * 1024 + 512), Detiled::Outside);
        // Row 8, byte 0: offset 0x2000, inside.
        assert!(
            matches!(f.detile(LOW.base + 0x2000), Detiled::Tiled { gm, .. } if gm == LOW.base + 0x2000)
        );
        for gm in LOW.base..LOW.base + 0x3000 {
            if let Detiled::Tiled { gm: t, run } = f.detile(gm) {
                assert!(f.contains(t) && f.contains(t + run - 1), "{gm:#x}");
            }
        }
    }
}
