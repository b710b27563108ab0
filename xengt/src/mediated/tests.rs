use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mediator::clock::FakeClock;
use mediator::guest::{GuestConfig, GuestGpu};
use mediator::guest_port::GuestPort;
use xen_backend::SimDomain;

use super::*;
use mediator::ggtt_ram::GgttBacking;

fn request(name: &str) -> VgpuRequest {
    let cfg = DaemonConfig::default();
    let t = cfg.find_type(name).unwrap();
    VgpuRequest {
        type_name: Some(t.name.clone()),
        low_gm_mib: t.low_gm_mib,
        high_gm_mib: t.high_gm_mib,
        fences: t.fences,
        primary: None,
        monitor_config_file: None,
        ggtt_backing: Default::default(),
        preset_bars: false,
    }
}

/// Runs `guest` on vCPU 0 of `dom` while this thread services the device.
fn with_guest<R: Send>(
    b: &mut MediatedBackend,
    dom: &SimDomain,
    guest: impl FnOnce(&dyn GuestPort) -> R + Send,
) -> R {
    let port = dom.vcpu(0).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = guest(port.as_ref());
            done.store(true, Ordering::Release);
            r
        });
        while !done.load(Ordering::Acquire) {
            b.service(dom.domid()).unwrap();
            std::thread::yield_now();
        }
        h.join().unwrap()
    })
}

#[test]
fn partitioner_places_devices_and_destroy_returns_them() {
    let xen = SimXen::new();
    let mut b = MediatedBackend::with_sim(xen.clone(), &DaemonConfig::default()).unwrap();
    let avail = |b: &MediatedBackend| b.types()[1].info.available_instances;
    let before = avail(&b);
    let d1 = b.start_domain(Some(3), None).unwrap();
    let d2 = b.start_domain(None, Some(32)).unwrap();
    assert_eq!((d1, d2), (3, 1));
    let h1 = b.create_device(d1, &request("GVTg_V5_4"), None).unwrap();
    let h2 = b.create_device(d2, &request("GVTg_V5_4"), None).unwrap();
    assert_eq!(avail(&b), before - 2);
    assert_ne!(h1.placement.low.base, h2.placement.low.base);
    assert_eq!(h1.placement.low.size, 128 * MIB);
    assert_eq!(
        b.create_device(d1, &request("GVTg_V5_4"), None),
        Err(BackendError::Busy(3))
    );
    // Unknown domain: typed error, nothing allocated.
    assert_eq!(
        b.create_device(99, &request("GVTg_V5_4"), None),
        Err(BackendError::NoSuchDomain(99))
    );
    assert_eq!(avail(&b), before - 2);
    b.destroy_device(d1);
    b.destroy_device(d2);
    assert_eq!(avail(&b), before);
    assert!(xen.domains().is_empty(), "started domains are stopped");
    // A real-Xen-like backend cannot start domains.
    let mut x = MediatedBackend::new("xen", Arc::new(xen), &DaemonConfig::default()).unwrap();
    assert!(matches!(
        x.start_domain(None, None),
        Err(BackendError::Unsupported(_))
    ));
}

#[test]
fn vblank_timer_is_driven_by_tick_and_reaches_the_guest_as_msi() {
    let xen = SimXen::new();
    let clock = FakeClock::new();
    let mut b = MediatedBackend::with_sim_clock(
        xen.clone(),
        &DaemonConfig::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let domid = b.start_domain(Some(4), None).unwrap();
    b.create_device(domid, &request("GVTg_V5_4"), None).unwrap();
    let dom = xen.domain(domid).unwrap();
    assert_eq!(b.next_deadline(), None, "no pipe runs yet");
    with_guest(&mut b, &dom, |port| {
        let gpu = GuestGpu::probe(port, GuestConfig::default()).unwrap();
        assert_eq!(gpu.info().low.1, 128 * MIB);
        let bar0 = GuestConfig::default().bar0;
        // DE pipe A: vblank enabled and unmasked; pipe A on.
        port.mmio_write(bar0 + 0x4_440c, 4, 1);
        port.mmio_write(bar0 + 0x4_4404, 4, u64::from(!1u32));
        port.mmio_write(bar0 + 0x7_0008, 4, 1 << 31);
    });
    let due = b.next_deadline().expect("pipe A's vblank is scheduled");
    assert!(due <= Duration::from_millis(17), "{due:?}");
    let before = dom.stats().msis;
    assert!(b.tick().is_empty());
    assert_eq!(dom.stats().msis, before, "not due yet");
    clock.advance(Duration::from_millis(17));
    assert!(b.tick().is_empty());
    assert_eq!(dom.stats().msis, before + 1, "vblank MSI delivered");
    // The domain dies: tick reports it once an effect cannot be applied.
    clock.advance(Duration::from_millis(17));
    xen.destroy_domain(domid);
    assert_eq!(b.tick(), vec![domid]);
}

#[test]
fn create_request_carries_the_ggtt_backing() {
    let mut req = request("GVTg_V5_8");
    assert_eq!(create_request(&req).ggtt_backing, GgttBacking::Trapped);
    req.ggtt_backing = GgttBacking::Ram;
    assert_eq!(create_request(&req).ggtt_backing, GgttBacking::Ram);
}

#[test]
fn pvh_devices_get_their_bars_placed_by_the_daemon() {
    let xen = SimXen::new();
    let mut b = MediatedBackend::with_sim(xen.clone(), &DaemonConfig::default()).unwrap();
    let d = b.start_domain(Some(4), None).unwrap();
    let e = b.start_domain(Some(5), None).unwrap();
    let mut req = request("GVTg_V5_8");
    req.preset_bars = true;
    b.create_device(d, &req, None).unwrap();
    b.create_device(e, &request("GVTg_V5_8"), None).unwrap();
    assert_eq!(b.bar_addresses(d), (Some(BAR0), Some(BAR2)));
    // Without presetting, nothing decodes until the guest's firmware programs the BARs.
    assert_eq!(b.bar_addresses(e).0, None);
    // The PVH guest reaches PVINFO at the daemon's BAR0 without touching PCI config.
    let dom = xen.domain(d).unwrap();
    let magic = with_guest(&mut b, &dom, |port| port.mmio_read(BAR0 + 0x7_8000, 8));
    assert_eq!(magic, 0x4776_5447_7654_4776);
    let dom_e = xen.domain(e).unwrap();
    let unclaimed = with_guest(&mut b, &dom_e, |port| port.mmio_read(BAR0 + 0x7_8000, 8));
    assert_eq!(unclaimed, u64::MAX);
}
