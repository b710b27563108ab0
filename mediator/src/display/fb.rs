//! Decoding the guest's primary plane (§7.2, §7.3): from the plane registers to a
//! [`PlaneInfo`] shaped like VFIO's `vfio_device_gfx_plane_info`, so a region or dmabuf
//! consumer can use it, and (in [`read_plane`]) to an RGBA image copied out of guest RAM.
//!
//! Every register value is guest-controlled: sizes, strides and the surface range are
//! checked and capped, and each failure is a typed [`FbError`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use super::fb_read::{read_plane, Frame, Image, ReadReport};
use super::regs::*;
use super::Display;

/// Size of the GGTT-addressable graphics memory (4 GiB).
pub const GGTT_SIZE: u64 = 1 << 32;
/// Largest decoded width.
pub const MAX_WIDTH: u32 = 8192;
/// Largest decoded height.
pub const MAX_HEIGHT: u32 = 4096;
/// Largest decoded pixel count (64 MiB of RGBA).
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// Translation of graphics memory addresses through the vGPU's GGTT (the guest-written
/// PTEs, §7.3 step 7): the crate's one GGTT lookup trait, implemented by the core's
/// [`crate::ggtt::Ggtt`]; tests use a table.
pub use crate::execlist::GgttLookup as GttLookup;

/// Why a plane could not be decoded or read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FbError {
    /// No pipe has PIPECONF bit 31 set.
    #[error("no pipe is enabled")]
    NoActivePipe,
    /// The plane is off (PLANE_CTL bit 31 clear).
    #[error("plane 1 of pipe {pipe} is disabled")]
    PlaneDisabled { pipe: u32 },
    /// A pixel format this decoder does not handle.
    #[error("unsupported pixel format field {field:#x} (RGBX order {rgbx})")]
    UnsupportedFormat { field: u32, rgbx: bool },
    /// A tiling mode this decoder does not handle (Yf, reserved values).
    #[error("unsupported tiling mode {0}")]
    UnsupportedTiling(u32),
    /// Rotation, horizontal flip or render compression.
    #[error("unsupported plane feature: {0}")]
    UnsupportedFeature(&'static str),
    /// The stride is zero or shorter than the visible row.
    #[error("stride {stride} bytes cannot hold {needed} bytes per row")]
    BadStride { stride: u64, needed: u64 },
    /// The visible area is larger than the caps.
    #[error("plane {width}x{height} exceeds the decode limit")]
    TooLarge { width: u32, height: u32 },
    /// The surface extends past the end of graphics memory.
    #[error("surface {base:#x}+{size:#x} runs past the end of graphics memory")]
    SurfaceOutOfRange { base: u64, size: u64 },
    /// A CURCNTR mode this decoder does not handle.
    #[error("unsupported cursor mode {0:#x}")]
    UnsupportedCursorMode(u32),
    /// None of the surface's pages map to guest RAM.
    #[error("no page of the surface at {base:#x} maps to guest RAM")]
    NothingMapped { base: u64 },
}

pub use crate::tiling::Tiling;

/// Pixel formats the decoder reads (§7.2 GVT decode table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PixelFormat {
    /// B, G, R, X bytes.
    Xrgb8888,
    /// B, G, R, A bytes.
    Argb8888,
    /// R, G, B, X bytes.
    Xbgr8888,
    /// R, G, B, A bytes.
    Abgr8888,
    /// 2:10:10:10, red in bits 29:20.
    Xrgb2101010,
    /// 2:10:10:10, red in bits 9:0.
    Xbgr2101010,
    /// 5:6:5, red in bits 15:11.
    Rgb565,
}

const fn fourcc(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

impl PixelFormat {
    /// DRM fourcc code.
    pub fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 => fourcc(b"XR24"),
            PixelFormat::Argb8888 => fourcc(b"AR24"),
            PixelFormat::Xbgr8888 => fourcc(b"XB24"),
            PixelFormat::Abgr8888 => fourcc(b"AB24"),
            PixelFormat::Xrgb2101010 => fourcc(b"XR30"),
            PixelFormat::Xbgr2101010 => fourcc(b"XB30"),
            PixelFormat::Rgb565 => fourcc(b"RG16"),
        }
    }
    /// Bytes per pixel.
    pub fn cpp(self) -> u64 {
        match self {
            PixelFormat::Rgb565 => 2,
            _ => 4,
        }
    }
    /// Decodes PLANE_CTL's format, order and alpha fields.
    pub fn from_plane_ctl(ctl: u32) -> Result<Self, FbError> {
        let field = (ctl >> 24) & 0xF;
        let rgbx = ctl & (1 << 20) != 0;
        let alpha = (ctl >> 4) & 3 != 0;
        Ok(match (field, rgbx, alpha) {
            (4, false, false) => PixelFormat::Xrgb8888,
            (4, false, true) => PixelFormat::Argb8888,
            (4, true, false) => PixelFormat::Xbgr8888,
            (4, true, true) => PixelFormat::Abgr8888,
            (2, false, _) => PixelFormat::Xrgb2101010,
            (2, true, _) => PixelFormat::Xbgr2101010,
            (0xE, _, _) => PixelFormat::Rgb565,
            _ => return Err(FbError::UnsupportedFormat { field, rgbx }),
        })
    }
}

/// The raw registers of one pipe's primary plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneRegs {
    /// PLANE_CTL_1.
    pub ctl: u32,
    /// PLANE_STRIDE_1.
    pub stride: u32,
    /// PLANE_POS_1.
    pub pos: u32,
    /// PLANE_SIZE_1.
    pub size: u32,
    /// PLANE_SURF_1.
    pub surf: u32,
    /// PLANE_OFFSET_1.
    pub offset: u32,
}

impl PlaneRegs {
    /// The primary plane registers of `pipe` (0..3) in `display`.
    pub fn read(display: &Display, pipe: u32) -> Self {
        let b = pipe.min(NUM_PIPES as u32 - 1) * PIPE_STRIDE;
        Self {
            ctl: display.peek(PLANE_CTL + b),
            stride: display.peek(PLANE_STRIDE + b),
            pos: display.peek(PLANE_POS + b),
            size: display.peek(PLANE_SIZE + b),
            surf: display.peek(PLANE_SURF + b),
            offset: display.peek(PLANE_OFFSET + b),
        }
    }
}

/// A decoded plane, with the fields of `vfio_device_gfx_plane_info` (drm_format,
/// drm_format_mod, width, height, stride, size, x_pos, y_pos) plus what a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneInfo {
    /// Pipe index (0 = A).
    pub pipe: u32,
    /// Pixel format.
    pub format: PixelFormat,
    /// DRM fourcc of `format`.
    pub drm_format: u32,
    /// DRM format modifier of `tiling`.
    pub drm_format_mod: u64,
    /// Tiling.
    pub tiling: Tiling,
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// Bytes per surface row.
    pub stride: u64,
    /// Bytes of surface the visible area spans from `ggtt_offset` (whole tile rows).
    pub size: u64,
    /// Position of the plane on the pipe.
    pub x_pos: u32,
    /// Position of the plane on the pipe.
    pub y_pos: u32,
    /// First visible pixel within the surface.
    pub x_offset: u32,
    /// First visible row within the surface.
    pub y_offset: u32,
    /// Surface base: a graphics memory (GGTT) address.
    pub ggtt_offset: u64,
}

/// Decodes pipe `pipe`'s primary plane registers.
pub fn decode(regs: &PlaneRegs, pipe: u32) -> Result<PlaneInfo, FbError> {
    let ctl = regs.ctl;
    if ctl & (1 << 31) == 0 {
        return Err(FbError::PlaneDisabled { pipe });
    }
    let format = PixelFormat::from_plane_ctl(ctl)?;
    let tiling = match (ctl >> 10) & 7 {
        0 => Tiling::Linear,
        1 => Tiling::X,
        4 => Tiling::Y,
        t => return Err(FbError::UnsupportedTiling(t)),
    };
    for (bit, what) in [(15, "render compression"), (8, "horizontal flip")] {
        if ctl & (1 << bit) != 0 {
            return Err(FbError::UnsupportedFeature(what));
        }
    }
    if ctl & 3 != 0 {
        return Err(FbError::UnsupportedFeature("rotation"));
    }
    let width = (regs.size & 0x1FFF) + 1;
    let height = ((regs.size >> 16) & 0xFFF) + 1;
    if width > MAX_WIDTH || height > MAX_HEIGHT || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(FbError::TooLarge { width, height });
    }
    let x_offset = regs.offset & 0x1FFF;
    let y_offset = (regs.offset >> 16) & 0xFFF;
    let stride = u64::from(regs.stride & 0x3FF) * tiling.stride_unit();
    let needed = (u64::from(x_offset) + u64::from(width)) * format.cpp();
    if stride == 0 || needed > stride {
        return Err(FbError::BadStride { stride, needed });
    }
    let rows =
        (u64::from(y_offset) + u64::from(height)).div_ceil(tiling.tile_rows()) * tiling.tile_rows();
    let size = rows * stride;
    let ggtt_offset = u64::from(regs.surf & 0xFFFF_F000);
    if ggtt_offset + size > GGTT_SIZE {
        return Err(FbError::SurfaceOutOfRange {
            base: ggtt_offset,
            size,
        });
    }
    Ok(PlaneInfo {
        pipe,
        format,
        drm_format: format.fourcc(),
        drm_format_mod: tiling.drm_modifier(),
        tiling,
        width,
        height,
        stride,
        size,
        x_pos: regs.pos & 0x1FFF,
        y_pos: (regs.pos >> 16) & 0xFFF,
        x_offset,
        y_offset,
        ggtt_offset,
    })
}

impl Display {
    /// The primary plane of the first enabled pipe (§7.3 steps 1–6).
    pub fn primary_plane(&self) -> Result<PlaneInfo, FbError> {
        let pipe = (0..NUM_PIPES as u32)
            .find(|p| self.peek(PIPECONF + p * PIPE_STRIDE) & (1 << 31) != 0)
            .ok_or(FbError::NoActivePipe)?;
        decode(&PlaneRegs::read(self, pipe), pipe)
    }
}
