//! EDID generation for the virtual DP monitor (§7.5 "EDID content"): one 128-byte EDID 1.4
//! base block whose first detailed timing is the configured mode, computed with the VESA
//! CVT reduced-blanking (v1) rules that GVT's 1920×1200 EDID also follows.

use serde::{Deserialize, Serialize};

use super::monitor::MonitorConfig;

/// Length of an EDID base block.
pub const EDID_LEN: usize = 128;
/// Highest pixel clock a detailed timing descriptor can carry (16 bits of 10 kHz).
pub const MAX_PIXEL_CLOCK_KHZ: u64 = 655_350;
/// Fixed EDID header.
pub const HEADER: [u8; 8] = [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];

/// A display timing (all counts in pixels or lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Pixel clock in kHz.
    pub pixel_clock_khz: u64,
    /// Active pixels.
    pub h_active: u32,
    /// Front porch (sync offset).
    pub h_front: u32,
    /// Sync width.
    pub h_sync: u32,
    /// Back porch.
    pub h_back: u32,
    /// Active lines.
    pub v_active: u32,
    /// Front porch.
    pub v_front: u32,
    /// Sync width.
    pub v_sync: u32,
    /// Back porch.
    pub v_back: u32,
    /// Horizontal sync polarity is positive.
    pub h_sync_positive: bool,
    /// Vertical sync polarity is positive.
    pub v_sync_positive: bool,
}

impl Timing {
    /// Total pixels per line.
    pub fn h_total(&self) -> u32 {
        self.h_active
            .saturating_add(self.h_front)
            .saturating_add(self.h_sync)
            .saturating_add(self.h_back)
    }
    /// Total lines per frame.
    pub fn v_total(&self) -> u32 {
        self.v_active
            .saturating_add(self.v_front)
            .saturating_add(self.v_sync)
            .saturating_add(self.v_back)
    }
    /// Refresh rate in mHz (Hz × 1000), as GVT stores it.
    pub fn refresh_mhz(&self) -> u64 {
        let total = u64::from(self.h_total()) * u64::from(self.v_total());
        self.pixel_clock_khz
            .saturating_mul(1_000_000)
            .checked_div(total)
            .unwrap_or(0)
    }
}

/// CVT reduced-blanking timing for `mode` (160-pixel horizontal blank: 48 front porch,
/// 32 sync; vertical front porch 3, sync by aspect ratio, at least 460 µs of vertical
/// blank; clock rounded down to 250 kHz; hsync positive, vsync negative). Fields are
/// clamped to 1..=8192 pixels and 1..=1000 Hz first; validate the mode for real limits.
pub fn cvt_rb(mode: &MonitorConfig) -> Timing {
    let (w, h) = (mode.width.clamp(1, 8192), mode.height.clamp(1, 8192));
    let refresh = u64::from(mode.refresh.clamp(1, 1000));
    let v_sync = v_sync_for_aspect(w, h);
    let frame_ps = 1_000_000_000_000 / refresh;
    let h_period_ps = frame_ps.saturating_sub(460_000_000) / u64::from(h).max(1);
    let vbi_est = 460_000_000u64
        .checked_div(h_period_ps)
        .unwrap_or(u64::from(h))
        + 1;
    let vbi_min = u64::from(3 + v_sync + 6);
    let vbi = u32::try_from(vbi_est.max(vbi_min)).unwrap_or(u32::MAX / 4);
    let h_total = u64::from(w) + 160;
    let v_total = u64::from(h) + u64::from(vbi);
    let clock = refresh * h_total * v_total / 1000 / 250 * 250;
    Timing {
        pixel_clock_khz: clock,
        h_active: w,
        h_front: 48,
        h_sync: 32,
        h_back: 80,
        v_active: h,
        v_front: 3,
        v_sync,
        v_back: vbi - 3 - v_sync,
        h_sync_positive: true,
        v_sync_positive: false,
    }
}

fn v_sync_for_aspect(w: u32, h: u32) -> u32 {
    let (w, h) = (u64::from(w), u64::from(h));
    let is = |a: u64, b: u64| w * b == h * a;
    if is(4, 3) {
        4
    } else if is(16, 9) {
        5
    } else if is(16, 10) {
        6
    } else if is(5, 4) || is(15, 9) {
        7
    } else {
        10
    }
}

/// Encodes an 18-byte detailed timing descriptor. `None` if a field does not fit.
pub fn encode_dtd(t: &Timing, size_mm: (u32, u32)) -> Option<[u8; 18]> {
    let clk = u16::try_from(t.pixel_clock_khz / 10).ok()?;
    let hb = t.h_front + t.h_sync + t.h_back;
    let vb = t.v_front + t.v_sync + t.v_back;
    let fits = |v: u32, bits: u32| v < (1 << bits);
    let ok = fits(t.h_active, 12)
        && fits(hb, 12)
        && fits(t.v_active, 12)
        && fits(vb, 12)
        && fits(t.h_front, 10)
        && fits(t.h_sync, 10)
        && fits(t.v_front, 6)
        && fits(t.v_sync, 6)
        && fits(size_mm.0, 12)
        && fits(size_mm.1, 12);
    if !ok {
        return None;
    }
    let lo = |v: u32| (v & 0xFF) as u8;
    let hi4 = |v: u32| ((v >> 8) & 0xF) as u8;
    let mut d = [0u8; 18];
    d[0..2].copy_from_slice(&clk.to_le_bytes());
    d[2] = lo(t.h_active);
    d[3] = lo(hb);
    d[4] = (hi4(t.h_active) << 4) | hi4(hb);
    d[5] = lo(t.v_active);
    d[6] = lo(vb);
    d[7] = (hi4(t.v_active) << 4) | hi4(vb);
    d[8] = lo(t.h_front);
    d[9] = lo(t.h_sync);
    d[10] = (((t.v_front & 0xF) as u8) << 4) | (t.v_sync & 0xF) as u8;
    d[11] = (((t.h_front >> 8) & 3) as u8) << 6
        | (((t.h_sync >> 8) & 3) as u8) << 4
        | (((t.v_front >> 4) & 3) as u8) << 2
        | ((t.v_sync >> 4) & 3) as u8;
    d[12] = lo(size_mm.0);
    d[13] = lo(size_mm.1);
    d[14] = (hi4(size_mm.0) << 4) | hi4(size_mm.1);
    d[17] = 0x18 | (u8::from(t.v_sync_positive) << 2) | (u8::from(t.h_sync_positive) << 1);
    Some(d)
}

/// Decodes a detailed timing descriptor; `None` for a display descriptor (clock 0).
pub fn decode_dtd(d: &[u8; 18]) -> Option<Timing> {
    let clk = u16::from_le_bytes([d[0], d[1]]);
    if clk == 0 {
        return None;
    }
    let b = |i: usize| u32::from(d[i]);
    let h_active = b(2) | ((b(4) >> 4) << 8);
    let hb = b(3) | ((b(4) & 0xF) << 8);
    let v_active = b(5) | ((b(7) >> 4) << 8);
    let vb = b(6) | ((b(7) & 0xF) << 8);
    let h_front = b(8) | (((b(11) >> 6) & 3) << 8);
    let h_sync = b(9) | (((b(11) >> 4) & 3) << 8);
    let v_front = (b(10) >> 4) | (((b(11) >> 2) & 3) << 4);
    let v_sync = (b(10) & 0xF) | ((b(11) & 3) << 4);
    Some(Timing {
        pixel_clock_khz: u64::from(clk) * 10,
        h_active,
        h_front,
        h_sync,
        h_back: hb.checked_sub(h_front + h_sync)?,
        v_active,
        v_front,
        v_sync,
        v_back: vb.checked_sub(v_front + v_sync)?,
        h_sync_positive: d[17] & 2 != 0,
        v_sync_positive: d[17] & 4 != 0,
    })
}

/// Whether the 128-byte block sums to 0 mod 256.
pub fn checksum_ok(block: &[u8]) -> bool {
    block.len() == EDID_LEN && block.iter().fold(0u8, |a, &b| a.wrapping_add(b)) == 0
}

/// The preferred timing of a base block (its first detailed timing descriptor).
pub fn preferred_timing(block: &[u8]) -> Option<Timing> {
    let d: &[u8; 18] = block.get(54..72)?.try_into().ok()?;
    decode_dtd(d)
}

/// Builds the EDID base block for `mode`. `None` if the mode's timing does not fit a
/// detailed timing descriptor (pixel clock above [`MAX_PIXEL_CLOCK_KHZ`]).
pub fn build(mode: &MonitorConfig) -> Option<[u8; EDID_LEN]> {
    let t = cvt_rb(mode);
    // A 24-inch-class panel at about 96 dpi: mm = px × 25.4 / 96.
    let mm = |px: u32| px.saturating_mul(254) / 960;
    let dtd = encode_dtd(&t, (mm(t.h_active), mm(t.v_active)))?;
    let mut e = [0u8; EDID_LEN];
    e[0..8].copy_from_slice(&HEADER);
    // Manufacturer "XEN" (5-bit letters, big-endian), product 0x0009, serial 0.
    let id = (24u16 << 10) | (5 << 5) | 14;
    e[8..10].copy_from_slice(&id.to_be_bytes());
    e[10..12].copy_from_slice(&0x0009u16.to_le_bytes());
    e[16] = 1; // week
    e[17] = 34; // 2024
    e[18] = 1; // EDID 1.4
    e[19] = 4;
    e[20] = 0xA5; // digital, 8 bpc, DisplayPort
    e[21] = u8::try_from(mm(t.h_active) / 10).unwrap_or(u8::MAX);
    e[22] = u8::try_from(mm(t.v_active) / 10).unwrap_or(u8::MAX);
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // RGB 4:4:4, sRGB default, preferred timing is native
    e[25..35].copy_from_slice(&[0xEE, 0x91, 0xA3, 0x54, 0x4C, 0x99, 0x26, 0x0F, 0x50, 0x54]);
    let fits = |w: u32, h: u32| w <= mode.width && h <= mode.height;
    e[35] = if fits(640, 480) { 0x20 } else { 0 } | u8::from(fits(800, 600));
    e[36] = if fits(1024, 768) { 0x08 } else { 0 };
    for i in 0..8 {
        e[38 + 2 * i] = 1;
        e[39 + 2 * i] = 1;
    }
    e[54..72].copy_from_slice(&dtd);
    e[72..90].copy_from_slice(&range_descriptor(&t));
    e[90..108].copy_from_slice(&text_descriptor(0xFC, b"xengt DP"));
    e[108..126].copy_from_slice(&[0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e[126] = 0; // no extension blocks
    let sum = e[..127].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    e[127] = 0u8.wrapping_sub(sum);
    Some(e)
}

fn range_descriptor(t: &Timing) -> [u8; 18] {
    let max_clk_10mhz = u8::try_from(t.pixel_clock_khz / 10_000 + 1).unwrap_or(u8::MAX);
    let mut d = [
        0u8,
        0,
        0,
        0xFD,
        0,
        24,
        121,
        15,
        255,
        max_clk_10mhz,
        0x01,
        0x0A,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    d[12..].fill(0x20);
    d
}

fn text_descriptor(tag: u8, text: &[u8]) -> [u8; 18] {
    let mut d = [0x20u8; 18];
    d[..5].copy_from_slice(&[0, 0, 0, tag, 0]);
    let n = text.len().min(12);
    d[5..5 + n].copy_from_slice(&text[..n]);
    d[5 + n] = 0x0A;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvt_rb_matches_gvt_1920x1200_and_vesa_1024x768() {
        let t = cvt_rb(&MonitorConfig::default());
        assert_eq!(t.pixel_clock_khz, 154_000);
        assert_eq!(
            (t.h_front, t.h_sync, t.h_back, t.h_total()),
            (48, 32, 80, 2080)
        );
        assert_eq!(
            (t.v_front, t.v_sync, t.v_back, t.v_total()),
            (3, 6, 26, 1235)
        );
        assert!(t.h_sync_positive && !t.v_sync_positive);
        let x = cvt_rb(&MonitorConfig::XGA);
        assert_eq!(
            (x.pixel_clock_khz, x.h_total(), x.v_total()),
            (56_000, 1184, 790)
        );
    }

    #[test]
    fn edid_has_header_checksum_and_decodes_to_configured_mode() {
        for mode in [
            MonitorConfig::default(),
            MonitorConfig::XGA,
            MonitorConfig::new(1280, 720, 50).unwrap(),
            MonitorConfig::new(3840, 2160, 30).unwrap(),
        ] {
            let e = build(&mode).unwrap();
            assert_eq!(e[..8], HEADER);
            assert!(checksum_ok(&e), "{mode:?}");
            assert_eq!((e[18], e[19], e[126]), (1, 4, 0));
            assert_eq!(e[20] & 0x80, 0x80, "digital input");
            let t = preferred_timing(&e).unwrap();
            assert_eq!(t, cvt_rb(&mode));
            assert_eq!((t.h_active, t.v_active), (mode.width, mode.height));
            let hz = t.refresh_mhz();
            let want = u64::from(mode.refresh) * 1000;
            assert!(hz <= want && hz + 300 > want, "{hz} vs {want}");
        }
        let mut e = build(&MonitorConfig::XGA).unwrap();
        e[40] ^= 1;
        assert!(!checksum_ok(&e));
    }

    #[test]
    fn too_fast_modes_do_not_fit_a_descriptor() {
        let m = MonitorConfig {
            width: 4095,
            height: 4095,
            refresh: 120,
        };
        assert!(build(&m).is_none());
    }
}
