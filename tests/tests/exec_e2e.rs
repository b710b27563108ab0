//! End to end: i915-like guest models on the simulated Xen, one `Gvt` on the software
//! Gen9 engine, the daemon's loop (`service` → `Gvt::io`, `Gvt::poll` → `apply`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mediator::clock::{Clock, FakeClock, RealClock};
use mediator::host::EngineId;
use mediator::manager::CreateRequest;
use xengt::sim_runtime::SimRuntime;
use xengt_tests::{pump_until_done, spawn_guest, GUEST_RAM};

const WAIT: Duration = Duration::from_secs(20);
const E: EngineId = EngineId::Bcs;

#[test]
fn blits_land_hostile_guests_are_contained_and_a_hang_stays_with_its_vgpu() {
    let mut rt = SimRuntime::new(Arc::new(RealClock::new())).unwrap();
    let good = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_4"), GUEST_RAM)
        .unwrap();
    let hostile = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_8"), GUEST_RAM)
        .unwrap();
    let hanger = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_8"), GUEST_RAM)
        .unwrap();
    let hang_done = Arc::new(AtomicBool::new(false));

    let flag = hang_done.clone();
    let h_good = spawn_guest(&rt, good, move |g| {
        g.enable_engine(E).unwrap();
        let s = g.create_surface(64, 64).unwrap();
        let mut seqnos = Vec::new();
        // Keep drawing until the hang elsewhere has been handled, and a bit after.
        let mut i = 0u32;
        while i < 10 || !flag.load(Ordering::Acquire) {
            let color = (0x0010_0000 * (i % 15 + 1)) | i;
            let seq = g.fill(&s, (0, 0, 64, 64), color).unwrap();
            let done = g.wait(E, WAIT).unwrap();
            assert!(!done.error, "good guest saw an error");
            assert_eq!(done.seqno, seq);
            assert_eq!(g.pixel(&s, 63, 63), Some(color), "blit {i} landed");
            seqnos.push(done.seqno);
            i += 1;
            assert!(i < 2000, "hang never handled");
        }
        seqnos
    });
    let h_hostile = spawn_guest(&rt, hostile, |g| {
        g.enable_engine(E).unwrap();
        let high = g.info().high;
        // 1. A GGTT store outside the vGPU's windows.
        g.hostile_store(E, high.0 + high.1 + 0x1000).unwrap();
        assert!(g.wait(E, WAIT).unwrap().error);
        // 2. An LRI to a register that is not whitelisted (GDRST).
        g.hostile_lri(E).unwrap();
        assert!(g.wait(E, WAIT).unwrap().error);
        // 3. A PPGTT PTE pointing at a frame that is not this guest's.
        let s = g.create_surface(16, 16).unwrap();
        g.map_ppgtt(s.gma, 0x1_0000_0000).unwrap();
        g.fill(&s, (0, 0, 16, 16), 0xff).unwrap();
        assert!(g.wait(E, WAIT).unwrap().error);
        // Still a working GPU for legitimate work.
        let t = g.create_surface(16, 16).unwrap();
        let seq = g.fill(&t, (0, 0, 16, 16), 0x77).unwrap();
        let done = g.wait(E, WAIT).unwrap();
        assert_eq!((done.error, done.seqno), (false, seq));
        assert_eq!(g.pixel(&t, 3, 3), Some(0x77));
    });
    let flag = hang_done.clone();
    let h_hang = spawn_guest(&rt, hanger, move |g| {
        g.enable_engine(E).unwrap();
        g.hostile_hang(E).unwrap();
        let done = g.wait(E, WAIT).unwrap();
        flag.store(true, Ordering::Release);
        assert!(done.error, "the hang completes with an error");
        let s = g.create_surface(16, 16).unwrap();
        let seq = g.fill(&s, (0, 0, 8, 8), 0x42).unwrap();
        assert_eq!(g.wait(E, WAIT).unwrap().seqno, seq);
        assert_eq!(g.pixel(&s, 1, 1), Some(0x42));
    });
    let mut handles_done = false;
    let start = std::time::Instant::now();
    while !handles_done {
        assert!(start.elapsed() < Duration::from_secs(60), "guests stuck");
        rt.pump(Duration::from_millis(2)).unwrap();
        handles_done = h_good.is_finished() && h_hostile.is_finished() && h_hang.is_finished();
    }
    let seqnos = h_good.join().expect("good guest");
    h_hostile.join().expect("hostile guest");
    h_hang.join().expect("hanging guest");
    assert!(seqnos.windows(2).all(|w| w[1] == w[0] + 1), "{seqnos:?}");

    let st = |i: usize| rt.gvt.stats(rt.guests[i].id).unwrap();
    let (sg, sh, sx) = (st(good), st(hostile), st(hanger));
    assert_eq!(sg.rejected_total + sg.faults + sg.hangs, 0, "{sg:#?}");
    assert_eq!(sg.completed, seqnos.len() as u64);
    assert!(sg.vgpu.msi_injected > 0 && sg.protected_writes > 0);
    assert_eq!(sh.rejected.get("AddressOutOfWindow"), Some(&1), "{sh:#?}");
    assert_eq!(sh.rejected.get("RegisterNotAllowed"), Some(&1));
    assert!(sh.ppgtt_foreign_entries >= 1 && sh.faults == 1, "{sh:#?}");
    assert_eq!((sh.hangs, sh.completed), (0, 1));
    assert_eq!(
        (sx.hangs, sx.engine_resets, sx.completed),
        (1, 1, 1),
        "{sx:#?}"
    );
    assert_eq!(sx.rejected_total + sx.faults, 0);
    // The simulated Xen saw the write-protected page-table updates as ioreqs.
    assert!(rt.guests[good].domain.stats().protected_writes > 0);
}

#[test]
fn weights_2_and_8_get_engine_time_one_to_four_over_a_simulated_second() {
    let clock = FakeClock::new();
    let mut rt = SimRuntime::new(Arc::new(clock.clone())).unwrap();
    let light = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_8"), GUEST_RAM)
        .unwrap();
    let heavy = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_2"), GUEST_RAM)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = [light, heavy]
        .into_iter()
        .map(|i| {
            let stop = stop.clone();
            spawn_guest(&rt, i, move |g| {
                g.enable_engine(E).unwrap();
                let s = g.create_surface(512, 256).unwrap();
                let mut n = 0u32;
                while !stop.load(Ordering::Acquire) {
                    // Four full-surface fills per request: ~0.5 ms of engine time.
                    let blits: Vec<u32> = (0..4)
                        .flat_map(|k| {
                            let rect = (0, 0, 512, 256);
                            mediator::guest::cmds::xy_color_blt(s.gma, s.pitch, rect, n + k)
                        })
                        .collect();
                    let seq = g.submit_ring(E, &blits).unwrap();
                    assert_eq!(g.wait(E, WAIT).unwrap().seqno, seq);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let second = Duration::from_secs(1);
    let mut measured = None;
    pump_until_done(&mut rt, &handles, Duration::from_secs(120), |rt| {
        let stopping = stop.load(Ordering::Acquire);
        if rt.all_busy() || stopping {
            if let Some(d) = rt.gvt.next_deadline() {
                let now = clock.now();
                if d > now {
                    clock.advance(d - now);
                }
            }
        }
        if !stopping && clock.now() >= second {
            let t = |i: usize| rt.gvt.stats(rt.guests[i].id).unwrap().engine_ns_total;
            measured = Some((t(light), t(heavy)));
            stop.store(true, Ordering::Release);
        }
    });
    let counts: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (a, b) = measured.expect("a simulated second passed");
    let ratio = a as f64 / b as f64;
    println!(
        "engine time light:heavy = {a}:{b} ns, ratio {ratio:.4} (want 0.25), blits {counts:?}"
    );
    assert!(
        (ratio - 0.25).abs() <= 0.25 * 0.05,
        "engine time {a} ns : {b} ns = {ratio:.4}, blits {counts:?}"
    );
    assert!(
        a + b >= 900_000_000,
        "the engine was shared, not idle: {a} + {b}"
    );
}
