//! Display-level tests through the MMIO interface, the way i915 drives it.

use proptest::prelude::*;

use super::dp::{AUX_DONE, AUX_IRQ, AUX_RX_ERROR, AUX_SEND_BUSY, AUX_TIMEOUT};
use super::regs::*;
use super::vblank::{PIPE_VBLANK, PLANE1_FLIP_DONE};
use super::*;

const AUX_D: u32 = 0x64310;

/// One AUX transaction as i915's `intel_dp_aux_xfer` performs it: load DATA, write CTL with
/// send/busy, the sticky bits to clear and the size, poll, read status and data, clear.
fn aux(d: &mut Display, req: &[u8]) -> Result<Vec<u8>, &'static str> {
    for (i, chunk) in req.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        d.mmio_write(AUX_D + 4 + 4 * i as u32, u32::from_be_bytes(w));
    }
    let ctl = AUX_SEND_BUSY
        | AUX_DONE
        | AUX_IRQ
        | AUX_TIMEOUT
        | (3 << 26)
        | AUX_RX_ERROR
        | ((req.len() as u32) << 20)
        | (31 << 5)
        | 31;
    let ev = d.mmio_write(AUX_D, ctl);
    assert_eq!(ev.port_iir, 1 << 27, "AUX D done interrupt");
    let status = d.mmio_read(AUX_D);
    assert_eq!(status & AUX_SEND_BUSY, 0, "synchronous completion");
    d.mmio_write(AUX_D, status | AUX_DONE | AUX_TIMEOUT | AUX_RX_ERROR);
    assert_eq!(d.mmio_read(AUX_D), 0, "sticky bits cleared");
    if status & AUX_TIMEOUT != 0 {
        return Err("timeout");
    }
    let n = ((status >> 20) & 0x1F) as usize;
    if n == 0 || n > 20 {
        return Err("bad size");
    }
    let mut out = Vec::new();
    for i in 0..5u32 {
        out.extend(d.mmio_read(AUX_D + 4 + 4 * i).to_be_bytes());
    }
    out.truncate(n);
    Ok(out)
}

/// drm_dp_i2c_xfer for [write 0x50 {offset}] [read 0x50 len], 16 bytes per transfer.
fn i2c_edid_read(d: &mut Display, offset: u8, len: usize) -> Vec<u8> {
    assert_eq!(
        aux(d, &[0x40, 0, 0x50]).unwrap(),
        vec![0],
        "start, write, MOT"
    );
    assert_eq!(aux(d, &[0x40, 0, 0x50, 0, offset]).unwrap(), vec![0]);
    assert_eq!(
        aux(d, &[0x50, 0, 0x50]).unwrap(),
        vec![0],
        "repeated start, read"
    );
    let mut edid = Vec::new();
    while edid.len() < len {
        let n = (len - edid.len()).min(16);
        let reply = aux(d, &[0x50, 0, 0x50, (n - 1) as u8]).unwrap();
        assert_eq!(reply[0] & 0xF0, 0, "I2C ACK");
        edid.extend(&reply[1..]);
    }
    assert_eq!(aux(d, &[0x10, 0, 0x50]).unwrap(), vec![0], "stop");
    edid
}

#[test]
fn i915_aux_edid_and_dpcd_probe() {
    let mut d = Display::default();
    let dpcd = aux(&mut d, &[0x90, 0, 0, 14]).unwrap();
    assert_eq!(dpcd.len(), 16);
    assert_eq!(&dpcd[1..4], &[0x12, 0x14, 0x84]);
    assert_eq!(dpcd[1 + 0x0E] & 0x80, 0, "no extended caps");
    assert_eq!(
        aux(&mut d, &[0x92, 0, 0, 0]).unwrap(),
        vec![0, 0],
        "LTTPR caps read as 0"
    );
    let edid = i2c_edid_read(&mut d, 0, 128);
    assert_eq!(edid, d.edid());
    assert!(edid::checksum_ok(&edid));
    let t = edid::preferred_timing(&edid).unwrap();
    assert_eq!((t.h_active, t.v_active), (1920, 1200));
    // Offset write is honoured: the second half on its own.
    assert_eq!(i2c_edid_read(&mut d, 64, 64), d.edid()[64..].to_vec());
    assert_eq!(d.counters().aux_transactions, 1 + 1 + 12 + 8);
}

#[test]
fn aux_on_ports_without_sink_or_unplugged_times_out() {
    let mut d = Display::default();
    d.mmio_write(0x64110 + 4, 0x9000_0000);
    let ev = d.mmio_write(0x64110, AUX_SEND_BUSY | AUX_IRQ | (4 << 20));
    assert_eq!(ev.port_iir, 1 << 25, "AUX B done");
    assert_ne!(d.mmio_read(0x64110) & AUX_TIMEOUT, 0);
    let ev = d.set_connected(false);
    assert_eq!(ev.sde_iir, SDE_PORT_D_HOTPLUG);
    assert_eq!(ev.sde_isr, Some((SDE_PORT_D_HOTPLUG, 0)));
    assert_eq!(d.sde_live_status(), 0);
    assert_eq!(aux(&mut d, &[0x90, 0, 0, 0]), Err("timeout"));
    assert_eq!(d.counters().aux_timeouts, 2);
    let ev = d.set_connected(true);
    assert_eq!(ev.sde_isr, Some((SDE_PORT_D_HOTPLUG, SDE_PORT_D_HOTPLUG)));
    assert_eq!(d.mmio_read(PCH_PORT_HOTPLUG) & 0x3_0000, 0x3_0000);
    d.mmio_write(PCH_PORT_HOTPLUG, 0x3_0000 | (1 << 20));
    assert_eq!(
        d.mmio_read(PCH_PORT_HOTPLUG),
        1 << 20,
        "status W1C, enable kept"
    );
}

/// Programs pipe A / transcoder A as i915 does for the monitor's EDID mode over HBR on
/// DDI D, then enables the pipe.
fn modeset(d: &mut Display, t: &edid::Timing) {
    let pair = |hi: u32, lo: u32| ((hi - 1) << 16) | (lo - 1);
    d.mmio_write(DPLL_CTRL1, (1 << 6) | (1 << 7)); // DPLL1 override, 1350 → HBR
    d.mmio_write(DPLL_CTRL2, (1 << 9) | (1 << 10)); // port D: override, DPLL1
    d.mmio_write(LINK_M1, t.pixel_clock_khz as u32);
    d.mmio_write(LINK_N1, 270_000);
    d.mmio_write(HTOTAL, pair(t.h_total(), t.h_active));
    d.mmio_write(VTOTAL, pair(t.v_total(), t.v_active));
    d.mmio_write(PIPESRC, pair(t.h_active, t.v_active));
    d.mmio_write(TRANS_DDI_FUNC_CTL, (1 << 31) | (3 << 28) | (2 << 24));
    d.mmio_write(PIPECONF, 1 << 31);
}

fn count_vblanks(d: &mut Display, from_ms: u64, ms: u64, pipe: usize) -> u32 {
    let mut n = 0;
    for t in from_ms..from_ms + ms {
        let ev = d.tick((t + 1) * 1_000_000);
        if ev.pipe_iir[pipe] & PIPE_VBLANK != 0 {
            n += 1;
        }
    }
    n
}

#[test]
fn vblank_at_the_mode_refresh_rate_with_frame_counter() {
    let mode = MonitorConfig::new(1280, 720, 50).unwrap();
    let mut d = Display::new(DisplayConfig {
        monitor: mode,
        ..DisplayConfig::default()
    });
    assert_eq!(count_vblanks(&mut d, 0, 100, 0), 0, "pipe off: no vblank");
    let t = edid::preferred_timing(d.edid()).unwrap();
    modeset(&mut d, &t);
    assert_eq!(d.mmio_read(PIPECONF), 0xC000_0000, "state mirrors enable");
    assert_eq!(d.counters().pipe_enables, 1);
    let n = count_vblanks(&mut d, 100, 2000, 0);
    assert!((99..=100).contains(&n), "{n} vblanks in 2 s at ~50 Hz");
    assert_eq!(d.mmio_read(PIPE_FRMCOUNT), n);
    assert_eq!(d.counters().vblanks, u64::from(n));
    d.mmio_write(PIPECONF, 0);
    assert_eq!(d.mmio_read(PIPECONF), 0);
    assert_eq!(count_vblanks(&mut d, 2100, 100, 0), 0);
    assert_eq!(d.next_deadline_ns(), None);
}

#[test]
fn vblank_falls_back_to_configured_refresh_and_runs_per_pipe() {
    let mut d = Display::new(DisplayConfig {
        monitor: MonitorConfig::new(1024, 768, 30).unwrap(),
        ..DisplayConfig::default()
    });
    d.mmio_write(PIPECONF + PIPE_STRIDE, 1 << 31);
    assert_eq!(count_vblanks(&mut d, 0, 1000, 1), 30);
    assert_eq!(count_vblanks(&mut d, 1000, 1000, 0), 0);
    // A late tick counts every missed frame but raises one interrupt.
    let ev = d.tick(3_000_000_000);
    assert_eq!(ev.pipe_iir, [0, PIPE_VBLANK, 0]);
    assert_eq!(d.mmio_read(PIPE_FRMCOUNT + PIPE_STRIDE), 90);
}

#[test]
fn flips_update_surflive_and_complete_on_vblank_or_at_once_if_async() {
    let mut d = Display::default();
    d.mmio_write(PIPECONF, 1 << 31);
    d.mmio_write(PLANE_CTL, 0xC480_2000);
    let ev = d.mmio_write(PLANE_SURF, 0x0800_1000);
    assert!(ev.is_empty(), "sync flip completes on vblank");
    assert_eq!(d.mmio_read(PLANE_SURFLIVE), 0x0800_1000);
    assert_eq!(d.mmio_read(PIPE_FLIPCOUNT), 1);
    let ev = d.tick(20_000_000);
    assert_eq!(ev.pipe_iir[0], PIPE_VBLANK | PLANE1_FLIP_DONE);
    assert_eq!(d.tick(40_000_000).pipe_iir[0], PIPE_VBLANK);
    d.mmio_write(PLANE_CTL, 0xC480_2200);
    let ev = d.mmio_write(PLANE_SURF, 0x0900_0000);
    assert_eq!(ev.pipe_iir[0], PLANE1_FLIP_DONE, "async flip");
    d.mmio_write(PLANE_SURFLIVE, 0);
    assert_eq!(d.mmio_read(PLANE_SURFLIVE), 0x0900_0000, "read-only");
    assert_eq!(d.counters().flips, 2);
    assert_eq!(
        d.primary_plane(),
        Err(FbError::BadStride {
            stride: 0,
            needed: 4
        })
    );
    d.mmio_write(PLANE_STRIDE, 1920 * 4 / 64);
    d.mmio_write(PLANE_SIZE, (1199 << 16) | 1919);
    let info = d.primary_plane().unwrap();
    assert_eq!(info.ggtt_offset, 0x0900_0000);
    assert_eq!((info.width, info.height, info.stride), (1920, 1200, 7680));
    assert_eq!(info.drm_format, u32::from_le_bytes(*b"XR24"));
}

#[test]
fn plane_scaling_is_refused() {
    let mut d = Display::default();
    d.mmio_write(PS_CTRL, (1 << 31) | (1 << 25));
    assert_eq!(d.mmio_read(PS_CTRL), 0);
    d.mmio_write(PS_CTRL + PIPE_STRIDE + 0x100, 1 << 31);
    assert_eq!(d.mmio_read(PS_CTRL + PIPE_STRIDE + 0x100), 1 << 31);
    assert_eq!(d.counters().refused_writes, 1);
}

#[test]
fn reset_values_for_display_and_headless() {
    let mut d = Display::default();
    assert_eq!(d.mmio_read(SKL_DFSM), 0);
    assert_eq!(d.mmio_read(SFUSE_STRAP) & 1, 1);
    assert_eq!(d.mmio_read(CPU_VGACNTRL), 0x8000_0000);
    assert_eq!(d.mmio_read(PCH_RAWCLK_FREQ), 24);
    assert_eq!(d.mmio_read(SKL_FUSE_STATUS), 0x8E00_0000);
    assert_eq!(d.sde_live_status(), SDE_PORT_D_HOTPLUG);
    d.mmio_write(LCPLL1_CTL, 1 << 31);
    assert_eq!(d.mmio_read(DPLL_STATUS), 1);
    let mut h = Display::new(DisplayConfig {
        enabled: false,
        ..DisplayConfig::default()
    });
    assert_eq!(h.mmio_read(SKL_DFSM), DFSM_HEADLESS);
    assert_eq!(h.sde_live_status(), 0);
    assert!(!Display::handles(0xC4000) && !Display::handles(0x44400));
    assert!(Display::handles(0xC4030) && Display::handles(0x64310));
}

#[test]
fn gmbus_naks_through_mmio() {
    let mut d = Display::default();
    d.mmio_write(GMBUS0, 6);
    d.mmio_write(
        GMBUS1,
        gmbus::SW_RDY | (3 << 25) | (128 << 16) | (0x50 << 1) | 1,
    );
    assert_ne!(d.mmio_read(GMBUS2) & gmbus::SATOER, 0);
    assert_eq!(d.counters().gmbus_naks, 1);
}

#[test]
fn set_monitor_rebuilds_edid_and_signals_hotplug() {
    let mut d = Display::default();
    let ev = d.set_monitor(MonitorConfig::XGA).unwrap();
    assert_eq!(ev.sde_iir, SDE_PORT_D_HOTPLUG);
    let t = edid::preferred_timing(d.edid()).unwrap();
    assert_eq!((t.h_active, t.v_active), (1024, 768));
    assert!(d
        .set_monitor(MonitorConfig {
            width: 1,
            height: 1,
            refresh: 1
        })
        .is_err());
}

#[test]
fn state_round_trips_through_serde() {
    let mut d = Display::default();
    d.mmio_write(PIPECONF, 1 << 31);
    d.mmio_write(PLANE_SURF, 0x1000);
    d.tick(17_000_000);
    let json = serde_json::to_string(&d).unwrap();
    let back: Display = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_guest_accesses_never_panic(
        ops in proptest::collection::vec((0usize..DISPLAY_RANGES.len(), any::<u32>(), any::<u32>(), any::<bool>()), 1..200),
        ticks in proptest::collection::vec(any::<u64>(), 0..8),
    ) {
        let mut d = Display::default();
        for (range, off, value, read) in ops {
            let (lo, hi) = DISPLAY_RANGES[range];
            let offset = lo + off % (hi - lo + 1);
            prop_assert!(Display::handles(offset));
            if read {
                d.mmio_read(offset);
            } else {
                d.mmio_write(offset, value);
            }
        }
        for t in ticks {
            d.tick(t);
        }
        let _ = d.primary_plane();
    }
}

#[test]
fn pipedsl_moves_on_a_running_pipe_and_stays_put_on_a_stopped_one() {
    let mode = MonitorConfig::new(1024, 768, 60).unwrap();
    let mut d = Display::new(DisplayConfig {
        monitor: mode,
        ..DisplayConfig::default()
    });
    assert_eq!(
        d.mmio_read(PIPEDSL),
        0,
        "pipe off: the scanline stands still"
    );
    assert_eq!(d.mmio_read(PIPEDSL), 0);
    let t = edid::preferred_timing(d.edid()).unwrap();
    modeset(&mut d, &t);
    let vtotal = (d.mmio_read(VTOTAL) >> 16) + 1;
    assert!(vtotal > 700, "{vtotal}");
    // i915's __intel_get_crtc_scanline re-reads a 0 up to 100 times: it must change at
    // once, every read.
    let reads: Vec<u32> = (0..200).map(|_| d.mmio_read(PIPEDSL)).collect();
    assert!(reads.windows(2).all(|w| w[0] != w[1]), "{reads:?}");
    assert!(reads.iter().all(|&l| l < vtotal));
    // Half a frame later the line has moved by about half of VTOTAL.
    d.tick(d.next_deadline_ns().unwrap());
    let at_vblank = d.mmio_read(PIPEDSL);
    d.tick(d.next_deadline_ns().unwrap() - 1_000_000_000 / 120);
    let mid = d.mmio_read(PIPEDSL);
    let moved = (mid + vtotal - at_vblank) % vtotal;
    assert!(moved.abs_diff(vtotal / 2) < 20, "moved {moved} of {vtotal}");
    d.mmio_write(PIPECONF, 0);
    assert_eq!(d.mmio_read(PIPEDSL), 0, "stopped pipe");
    assert_eq!(d.mmio_read(PIPEDSL), 0);
}
