//! Copying a decoded plane out of guest RAM into an RGBA image (§7.3 steps 7–8): every
//! 4 KiB page of graphics memory is translated through the GGTT separately and copied
//! (never referenced); pages that do not translate or cannot be read are reported and
//! their pixels left transparent black.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::fb::{FbError, GttLookup, PixelFormat, PlaneInfo};
use crate::memory::{GuestMemory, PAGE_SIZE};

/// Pages kept while reading (16 MiB); the cache starts over when full.
const CACHE_PAGES: usize = 4096;
/// Unmapped page addresses listed in a report.
const MAX_LISTED: usize = 16;

/// An RGBA8 image, rows top to bottom, 4 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height × 4` bytes.
    pub rgba: Vec<u8>,
}

impl Image {
    /// The pixel at (x, y), if inside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (usize::try_from(y).ok()? * usize::try_from(self.width).ok()?
            + usize::try_from(x).ok()?)
            * 4;
        self.rgba.get(i..i + 4)?.try_into().ok()
    }
}

/// What could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReport {
    /// Page fetches made.
    pub pages_fetched: u64,
    /// Page fetches that failed (no GGTT mapping, or not guest RAM).
    pub pages_unmapped: u64,
    /// The first few graphics memory addresses of failed pages.
    pub unmapped_gm: Vec<u64>,
    /// Visible rows with missing pixels, as half-open ranges `[start, end)`.
    pub incomplete_rows: Vec<(u32, u32)>,
}

impl ReadReport {
    /// Everything was read.
    pub fn is_complete(&self) -> bool {
        self.pages_unmapped == 0
    }

    fn mark_row(&mut self, y: u32) {
        match self.incomplete_rows.last_mut() {
            Some((_, end)) if *end == y => *end = y + 1,
            _ => self.incomplete_rows.push((y, y + 1)),
        }
    }
}

/// A read plane: the image and what was missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The visible area.
    pub image: Image,
    /// Missing pages and rows.
    pub report: ReadReport,
}

struct Pages<'a> {
    gtt: &'a dyn GttLookup,
    mem: &'a dyn GuestMemory,
    cache: HashMap<u64, Option<Box<[u8]>>>,
    report: ReadReport,
}

impl Pages<'_> {
    fn page(&mut self, gm_page: u64) -> Option<&[u8]> {
        if self.cache.len() >= CACHE_PAGES && !self.cache.contains_key(&gm_page) {
            self.cache.clear();
        }
        if !self.cache.contains_key(&gm_page) {
            let data = self.fetch(gm_page);
            self.report.pages_fetched += 1;
            if data.is_none() {
                self.report.pages_unmapped += 1;
                if self.report.unmapped_gm.len() < MAX_LISTED {
                    self.report.unmapped_gm.push(gm_page);
                }
            }
            self.cache.insert(gm_page, data);
        }
        self.cache.get(&gm_page)?.as_deref()
    }

    fn fetch(&self, gm_page: u64) -> Option<Box<[u8]>> {
        let gpa = self.gtt.gma_to_gpa(gm_page)?;
        if gpa % PAGE_SIZE != 0 {
            return None;
        }
        let mut buf = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
        self.mem.read(gpa, &mut buf).ok()?;
        Some(buf)
    }
}

/// Converts one pixel of `format` to RGBA8.
pub fn to_rgba(format: PixelFormat, px: &[u8]) -> [u8; 4] {
    let b = |i: usize| px.get(i).copied().unwrap_or(0);
    let w = u32::from_le_bytes([b(0), b(1), b(2), b(3)]);
    let ten = |shift: u32| (((w >> shift) & 0x3FF) >> 2) as u8;
    match format {
        PixelFormat::Xrgb8888 => [b(2), b(1), b(0), 0xFF],
        PixelFormat::Argb8888 => [b(2), b(1), b(0), b(3)],
        PixelFormat::Xbgr8888 => [b(0), b(1), b(2), 0xFF],
        PixelFormat::Abgr8888 => [b(0), b(1), b(2), b(3)],
        PixelFormat::Xrgb2101010 => [ten(20), ten(10), ten(0), 0xFF],
        PixelFormat::Xbgr2101010 => [ten(0), ten(10), ten(20), 0xFF],
        PixelFormat::Rgb565 => {
            let v = u16::from_le_bytes([b(0), b(1)]);
            let r = ((v >> 11) & 0x1F) as u8;
            let g = ((v >> 5) & 0x3F) as u8;
            let bl = (v & 0x1F) as u8;
            [
                (r << 3) | (r >> 2),
                (g << 2) | (g >> 4),
                (bl << 3) | (bl >> 2),
                0xFF,
            ]
        }
    }
}

/// Copies the visible area of `info` out of guest RAM. Renders what is mapped; fails with
/// [`FbError::NothingMapped`] only if no page of it is.
pub fn read_plane(
    info: &PlaneInfo,
    gtt: &dyn GttLookup,
    mem: &dyn GuestMemory,
) -> Result<Frame, FbError> {
    let (w, h) = (info.width, info.height);
    let too_large = FbError::TooLarge {
        width: w,
        height: h,
    };
    let len = usize::try_from(u64::from(w) * u64::from(h) * 4).map_err(|_| too_large.clone())?;
    if u64::from(w) * u64::from(h) > super::fb::MAX_PIXELS {
        return Err(too_large);
    }
    let mut rgba = vec![0u8; len];
    let mut pages = Pages {
        gtt,
        mem,
        cache: HashMap::new(),
        report: ReadReport::default(),
    };
    let cpp = info.format.cpp();
    let mut out = rgba.chunks_exact_mut(4);
    for j in 0..h {
        let y = u64::from(info.y_offset) + u64::from(j);
        let mut row_missing = false;
        for i in 0..w {
            let xb = (u64::from(info.x_offset) + u64::from(i)) * cpp;
            let gm = info.ggtt_offset + info.tiling.offset(info.stride, xb, y);
            let within = usize::try_from(gm % PAGE_SIZE).unwrap_or(0);
            let px = pages
                .page(gm - gm % PAGE_SIZE)
                .and_then(|p| p.get(within..within + cpp as usize))
                .map(|px| to_rgba(info.format, px));
            if let (Some(dst), Some(px)) = (out.next(), px) {
                dst.copy_from_slice(&px);
            } else {
                row_missing = true;
            }
        }
        if row_missing {
            pages.report.mark_row(j);
        }
    }
    let report = pages.report;
    if report.pages_fetched > 0 && report.pages_fetched == report.pages_unmapped {
        return Err(FbError::NothingMapped {
            base: info.ggtt_offset,
        });
    }
    Ok(Frame {
        image: Image {
            width: w,
            height: h,
            rgba,
        },
        report,
    })
}
