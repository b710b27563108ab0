//! End to end with the RAM-backed GGTT window (issue 8): an i915-like guest on the
//! simulated Xen whose PTE writes go to RAM, one `Gvt` on the software engine; its blits
//! land, and a guest sharing the GPU with a trapped GGTT is unaffected.

use std::sync::Arc;
use std::time::Duration;

use mediator::clock::RealClock;
use mediator::ggtt_ram::GgttBacking;
use mediator::host::EngineId;
use mediator::manager::CreateRequest;
use xengt::sim_runtime::SimRuntime;
use xengt_tests::{pump_until_done, spawn_guest, GUEST_RAM};

const WAIT: Duration = Duration::from_secs(20);
const E: EngineId = EngineId::Bcs;

#[test]
fn blits_land_with_the_ggtt_window_in_guest_ram() {
    let mut rt = SimRuntime::new(Arc::new(RealClock::new())).unwrap();
    let mut req = CreateRequest::of_type("GVTg_V5_4");
    req.ggtt_backing = GgttBacking::Ram;
    let ram = rt.add_guest(&req, GUEST_RAM).unwrap();
    let trapped = rt
        .add_guest(&CreateRequest::of_type("GVTg_V5_8"), GUEST_RAM)
        .unwrap();
    let draw = |g: &mut mediator::guest::GuestGpu<'_>| {
        g.enable_engine(E).unwrap();
        let s = g.create_surface(64, 64).unwrap();
        for i in 0..5u32 {
            let color = 0x0020_0000 | i;
            let seq = g.fill(&s, (0, 0, 64, 64), color).unwrap();
            let done = g.wait(E, WAIT).unwrap();
            assert!(!done.error);
            assert_eq!(done.seqno, seq);
            assert_eq!(g.pixel(&s, 63, 63), Some(color));
        }
    };
    let handles = [spawn_guest(&rt, ram, draw), spawn_guest(&rt, trapped, draw)];
    pump_until_done(&mut rt, &handles, Duration::from_secs(60), |_| {});
    for h in handles {
        h.join().unwrap();
    }

    let g = &rt.guests[ram];
    let window = rt.gvt.vgpu(g.id).unwrap().ggtt_ram_range().unwrap();
    assert_eq!(g.domain.extra_ram(), vec![(window.base() >> 12, 2048)]);
    let c = *rt.gvt.vgpu(g.id).unwrap().counters();
    assert!(c.ggtt_ram_syncs > 0);
    assert_eq!(
        c.unsupported_accesses, 0,
        "no PTE access reached the vGPU as MMIO"
    );
    assert!(c.ggtt_writes_applied > 0, "{c:?}");
    assert_eq!(
        c.ggtt_writes_applied,
        c.ggtt_ram_entries_changed - c.ggtt_dropped_outside - c.ggtt_dropped_not_owned
    );
    let t = *rt.gvt.vgpu(rt.guests[trapped].id).unwrap().counters();
    assert_eq!(t.ggtt_ram_syncs, 0);
    assert!(t.ggtt_writes_applied > 0);
    assert!(rt.guests[trapped].domain.extra_ram().is_empty());
}
