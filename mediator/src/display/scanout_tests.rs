//! End to end through MMIO: the display bring-up i915 performs on SKL (power wells, CDCLK
//! PLL, DP link training over AUX, DDI, modeset, plane, flip), then a dom0-style scanout of
//! the guest's framebuffer to PNG.

use super::dp::{AUX_DONE, AUX_SEND_BUSY};
use super::fb::{read_plane, GttLookup};
use super::regs::*;
use super::vblank::{PIPE_VBLANK, PLANE1_FLIP_DONE};
use super::*;
use crate::memory::{GuestMemory, VecMemory};

/// Identity-offset GGTT: GM page n → guest frame n + 16.
struct Offset;
impl GttLookup for Offset {
    fn gma_to_gpa(&self, gm: u64) -> Option<u64> {
        gm.checked_add(16 * 4096)
    }
}

fn native(d: &mut Display, req: &[u8]) -> Vec<u8> {
    for (i, c) in req.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        d.mmio_write(0x64314 + 4 * i as u32, u32::from_be_bytes(w));
    }
    d.mmio_write(0x64310, AUX_SEND_BUSY | ((req.len() as u32) << 20));
    let st = d.mmio_read(0x64310);
    assert_eq!(st & (AUX_DONE | AUX_SEND_BUSY), AUX_DONE);
    let n = ((st >> 20) & 0x1F) as usize;
    let mut out: Vec<u8> = (0..5)
        .flat_map(|i| d.mmio_read(0x64314 + 4 * i).to_be_bytes())
        .collect();
    out.truncate(n);
    d.mmio_write(0x64310, st | AUX_DONE);
    out
}

#[test]
fn i915_like_bring_up_then_scanout_to_png() {
    let mut d = Display::new(DisplayConfig {
        monitor: MonitorConfig::new(640, 480, 60).unwrap(),
        ..DisplayConfig::default()
    });
    // Display core init: PG fuses, power wells (PW1, misc IO, PW2, DDI D), DBUF, CDCLK PLL.
    assert_eq!(d.mmio_read(SKL_FUSE_STATUS) & (1 << 27), 1 << 27);
    for req in [1 << 29, 1 << 1, 1 << 31, 1 << 9] {
        let v = d.mmio_read(PWR_WELL_CTL2) | req;
        d.mmio_write(PWR_WELL_CTL2, v);
        assert_ne!(
            d.mmio_read(PWR_WELL_CTL2) & (req >> 1),
            0,
            "state follows request"
        );
    }
    d.mmio_write(DBUF_CTL, 1 << 31);
    assert_ne!(d.mmio_read(DBUF_CTL) & (1 << 30), 0);
    d.mmio_write(LCPLL1_CTL, 1 << 31);
    assert_eq!(d.mmio_read(DPLL_STATUS) & 1, 1);
    // Probe: live status, DPCD, EDID.
    assert_eq!(d.sde_live_status(), SDE_PORT_D_HOTPLUG);
    assert_eq!(native(&mut d, &[0x90, 0, 0, 2]), vec![0, 0x12, 0x14, 0x84]);
    // Link training: TPS1, read lane status, TPS2, read, off.
    assert_eq!(native(&mut d, &[0x80, 1, 2, 0, 0x21]), vec![0]);
    assert_eq!(native(&mut d, &[0x90, 2, 2, 5])[1..3], [0x11, 0x11]);
    assert_eq!(native(&mut d, &[0x80, 1, 2, 0, 0x22]), vec![0]);
    let st = native(&mut d, &[0x90, 2, 2, 5]);
    assert_eq!(
        &st[1..4],
        &[0x77, 0x77, 0x01],
        "CR, EQ, symbol lock, aligned"
    );
    native(&mut d, &[0x80, 1, 2, 0, 0]);
    // DDI D buffer and DP transport.
    let ddi_d = DDI_BUF_CTL + 3 * DDI_STRIDE;
    d.mmio_write(ddi_d, 1 << 31);
    assert_eq!(d.mmio_read(ddi_d) & 0x80, 0, "not idle");
    d.mmio_write(DP_TP_CTL + 3 * DDI_STRIDE, (1 << 31) | (2 << 8));
    assert_ne!(d.mmio_read(DP_TP_STATUS + 3 * DDI_STRIDE) & (1 << 25), 0);
    // Modeset pipe A for 640x480 on a 162 MHz port clock (DPLL1 = 810).
    let t = edid::preferred_timing(d.edid()).unwrap();
    d.mmio_write(DPLL_CTRL1, (1 << 6) | (2 << 7));
    d.mmio_write(DPLL_CTRL2, (1 << 9) | (1 << 10));
    d.mmio_write(LINK_M1, t.pixel_clock_khz as u32);
    d.mmio_write(LINK_N1, 162_000);
    d.mmio_write(HTOTAL, ((t.h_total() - 1) << 16) | (t.h_active - 1));
    d.mmio_write(VTOTAL, ((t.v_total() - 1) << 16) | (t.v_active - 1));
    d.mmio_write(TRANS_DDI_FUNC_CTL, (1 << 31) | (3 << 28) | (2 << 24));
    d.mmio_write(PIPECONF, 1 << 31);
    // fbdev plane: XRGB8888 linear, 640x480, at GM 0x10000.
    d.mmio_write(PLANE_CTL, 0xC480_2000);
    d.mmio_write(PLANE_STRIDE, 640 * 4 / 64);
    d.mmio_write(PLANE_SIZE, (479 << 16) | 639);
    d.mmio_write(PLANE_OFFSET, 0);
    assert!(d.mmio_write(PLANE_SURF, 0x10000).is_empty());
    let mut vblanks = 0;
    let mut flip_done = 0;
    for ms in 1..=1000u64 {
        let ev = d.tick(ms * 1_000_000);
        vblanks += u32::from(ev.pipe_iir[0] & PIPE_VBLANK != 0);
        flip_done += u32::from(ev.pipe_iir[0] & PLANE1_FLIP_DONE != 0);
    }
    assert!((59..=60).contains(&vblanks), "{vblanks}");
    assert_eq!(flip_done, 1);
    // Guest draws: a red/green split with a blue line at row 100.
    let mem = VecMemory::new(16 * 4096 + 0x10000 + 640 * 480 * 4);
    for y in 0..480u64 {
        let row: Vec<u8> = (0..640u64)
            .flat_map(|x| match (x, y) {
                (_, 100) => [0xFF, 0, 0, 0],
                (0..=319, _) => [0, 0, 0xFF, 0],
                _ => [0, 0xFF, 0, 0],
            })
            .collect();
        mem.write(16 * 4096 + 0x10000 + y * 2560, &row).unwrap();
    }
    let info = d.primary_plane().unwrap();
    let frame = read_plane(&info, &Offset, &mem).unwrap();
    assert!(frame.report.is_complete());
    assert_eq!(frame.image.pixel(10, 10), Some([0xFF, 0, 0, 0xFF]));
    assert_eq!(frame.image.pixel(400, 10), Some([0, 0xFF, 0, 0xFF]));
    assert_eq!(frame.image.pixel(400, 100), Some([0, 0, 0xFF, 0xFF]));
    let png = png::encode_png(&frame.image).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}
