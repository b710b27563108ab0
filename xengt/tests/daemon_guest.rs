//! The daemon library end to end on the simulated Xen: `Daemon` + `MediatedBackend` (the
//! same objects `xengtd --backend sim` runs), an i915-like guest model on a simulated
//! domain's vCPU, every access going through the daemon's dispatch (`Daemon::service`)
//! and its timers (`Daemon::tick`), as the mio loop drives them.
//!
//! (The CLI tests cannot run a guest: the simulated domains live inside the xengtd
//! process. This is the same path, in-process.)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mediator::guest::{GuestConfig, GuestGpu};
use mediator::guest_port::GuestPort;
use mediator::host::EngineId;
use serde_json::Value;
use xen_backend::SimXen;
use xengt::config::DaemonConfig;
use xengt::daemon::Daemon;
use xengt::mediated::MediatedBackend;
use xengt::proto::{base64_decode, ErrorCode, Op, ScreenshotInfo, VgpuInfo};

const WAIT: Duration = Duration::from_secs(20);
const BAR0: u64 = 0xf000_0000;

fn daemon() -> Daemon {
    let cfg = DaemonConfig::default();
    let b = MediatedBackend::with_sim(SimXen::new(), &cfg).unwrap();
    Daemon::new(cfg, b, None)
}

fn available(d: &mut Daemon, name: &str) -> u64 {
    let t = d.handle(Op::Types).unwrap();
    t.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["available_instances"]
        .as_u64()
        .unwrap()
}

fn info(d: &mut Daemon, domid: u16) -> VgpuInfo {
    serde_json::from_value(d.handle(Op::Info { domid }).unwrap()).unwrap()
}

/// Runs `guest` on vCPU 0 of `domid` while this thread is the daemon's loop.
fn run_guest<R: Send>(
    d: &mut Daemon,
    domid: u16,
    guest: impl FnOnce(&dyn GuestPort) -> R + Send,
) -> R {
    let port = d
        .backend()
        .sim_xen()
        .unwrap()
        .domain(domid)
        .unwrap()
        .vcpu(0)
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = guest(port.as_ref());
            done.store(true, Ordering::Release);
            r
        });
        while !done.load(Ordering::Acquire) {
            assert!(d.service(domid), "the vGPU of {domid} was torn down");
            d.tick();
            std::thread::yield_now();
        }
        h.join().unwrap()
    })
}

fn program_plane(port: &dyn GuestPort, surf: u64, width: u32, height: u32, pitch: u32) {
    let w = |off: u64, v: u32| port.mmio_write(BAR0 + off, 4, u64::from(v));
    w(0x7_0008, 1 << 31); // PIPECONF_A enable
    w(0x7_0180, 0xc480_2000); // PLANE_CTL_1_A: enable, XRGB8888, linear
    w(0x7_0188, pitch / 64); // PLANE_STRIDE in 64-byte units
    w(0x7_0190, ((height - 1) << 16) | (width - 1));
    w(0x7_019c, u32::try_from(surf).unwrap()); // PLANE_SURF (GGTT address)
}

fn decode_png(b64: &str) -> (u32, u32, Vec<u8>) {
    let bytes = base64_decode(b64).expect("valid base64");
    let mut r = png::Decoder::new(bytes.as_slice()).read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let f = r.next_frame(&mut buf).unwrap();
    buf.truncate(f.buffer_size());
    (f.width, f.height, buf)
}

fn rgba(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 4] {
    let i = usize::try_from((y * img.0 + x) * 4).unwrap();
    img.2[i..i + 4].try_into().unwrap()
}

#[test]
fn guests_probe_draw_and_are_screenshot_through_the_daemon() {
    let mut d = daemon();
    let before4 = available(&mut d, "GVTg_V5_4");
    let before8 = available(&mut d, "GVTg_V5_8");
    // `attach` on the simulated backend starts simulated domains 3 and 4.
    d.handle(Op::Attach {
        domid: 3,
        type_name: Some("GVTg_V5_4".into()),
    })
    .unwrap();
    d.handle(Op::Attach {
        domid: 4,
        type_name: Some("GVTg_V5_8".into()),
    })
    .unwrap();
    assert_eq!(available(&mut d, "GVTg_V5_4"), before4 - 2);
    let (i3, i4) = (info(&mut d, 3), info(&mut d, 4));
    assert_eq!(i3.state, "Connected");

    // Domain 4's guest: PVINFO says exactly what the daemon placed.
    let pv4 = run_guest(&mut d, 4, |port| {
        GuestGpu::probe(port, GuestConfig::default())
            .unwrap()
            .info()
    });
    assert_eq!(pv4.low, (i4.low_gm.base, i4.low_gm.size));
    assert_eq!(pv4.high, (i4.high_gm.base, i4.high_gm.size));

    // Domain 3's guest: probe, draw with two BCS blits executed by the mediator, and
    // show the surface on pipe A.
    let (pv3, surf) = run_guest(&mut d, 3, |port| {
        let mut g = GuestGpu::probe(port, GuestConfig::default()).unwrap();
        g.enable_engine(EngineId::Bcs).unwrap();
        let s = g.create_surface(64, 32).unwrap();
        for (rect, color) in [((0, 0, 64, 32), 0x0033_6699), ((8, 4, 24, 16), 0x00ff_0000)] {
            let seq = g.fill(&s, rect, color).unwrap();
            let done = g.wait(EngineId::Bcs, WAIT).unwrap();
            assert_eq!((done.error, done.seqno), (false, seq));
        }
        assert_eq!(g.pixel(&s, 10, 6), Some(0x00ff_0000));
        program_plane(port, s.gma, 64, 32, u32::from(s.pitch));
        (g.info(), s)
    });
    assert_eq!(pv3.low, (i3.low_gm.base, i3.low_gm.size));
    assert!(pv3.low.0 + pv3.low.1 <= pv4.low.0 || pv4.low.0 + pv4.low.1 <= pv3.low.0);

    // info: the plane as the guest programmed it, and the counters of the traffic.
    let i3 = info(&mut d, 3);
    let plane = i3.plane.expect("plane decoded");
    assert_eq!((plane.width, plane.height, plane.stride), (64, 32, 256));
    assert_eq!(
        (plane.fourcc.as_str(), plane.tiling.as_str()),
        ("XR24", "linear")
    );
    assert_eq!(plane.ggtt_offset, surf.gma);
    let c = i3.counters.expect("counters");
    assert!(c.vgpu.pvinfo_reads > 0 && c.vgpu.mmio_writes > 0, "{c:?}");
    assert!(c.vgpu.ggtt_writes_applied > 0);
    assert_eq!(c.ggtt_writes_dropped, 0);
    assert!(
        c.mediator["completed"].as_u64().unwrap() >= 2,
        "{}",
        c.mediator
    );

    // The screenshot carries the guest's pixels.
    let shot: ScreenshotInfo =
        serde_json::from_value(d.handle(Op::Screenshot { domid: 3 }).unwrap()).unwrap();
    assert!(shot.complete);
    let img = decode_png(&shot.png_base64);
    assert_eq!((img.0, img.1), (64, 32));
    assert_eq!(rgba(&img, 0, 0), [0x33, 0x66, 0x99, 0xff]);
    assert_eq!(rgba(&img, 10, 6), [0xff, 0x00, 0x00, 0xff]);
    assert_eq!(
        rgba(&img, 24, 16),
        [0x33, 0x66, 0x99, 0xff],
        "rect is exclusive"
    );

    // A plane pointed past the vGPU's windows: one clear error, no image.
    let outside = pv3.high.0 + pv3.high.1;
    run_guest(&mut d, 3, |port| program_plane(port, outside, 64, 32, 256));
    let e = d.handle(Op::Screenshot { domid: 3 }).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoImage);
    assert!(
        e.message.contains("outside") && !e.message.contains('\n'),
        "{}",
        e.message
    );
    // Disabled plane.
    run_guest(&mut d, 3, |port| port.mmio_write(BAR0 + 0x7_0180, 4, 0));
    let e = d.handle(Op::Screenshot { domid: 3 }).unwrap_err();
    assert!(e.message.contains("disabled"), "{}", e.message);
    assert!(info(&mut d, 3).plane_error.unwrap().contains("disabled"));

    // Destroy returns the instances and stops the simulated domains.
    let v: Value = d.handle(Op::Destroy { domid: 3 }).unwrap();
    assert_eq!(v["state"], "Closed");
    d.handle(Op::Destroy { domid: 4 }).unwrap();
    assert_eq!(available(&mut d, "GVTg_V5_4"), before4);
    assert_eq!(available(&mut d, "GVTg_V5_8"), before8);
    assert!(d.backend().sim_xen().unwrap().domains().is_empty());
}
