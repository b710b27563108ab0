use super::*;
use crate::proto::{ErrorBody, ErrorCode, Op, WindowInfo};
use xen_backend::xenstore::test_server::TestServer;
use xen_backend::{SimDomainConfig, SimXen};

fn backend(xen: &SimXen) -> MediatedBackend {
    MediatedBackend::with_sim(xen.clone(), &DaemonConfig::default()).unwrap()
}

fn sim() -> Daemon {
    Daemon::new(DaemonConfig::default(), backend(&SimXen::new()), None)
}

fn avail(d: &Daemon, name: &str) -> u32 {
    d.types()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap()
        .available_instances
}

#[test]
fn attach_list_destroy_returns_instances() {
    let mut d = sim();
    let before = avail(&d, "GVTg_V5_1");
    assert!(before >= 1);
    d.handle(Op::Attach {
        domid: 3,
        type_name: Some("GVTg_V5_1".into()),
    })
    .unwrap();
    d.handle(Op::Attach {
        domid: 4,
        type_name: None,
    })
    .unwrap();
    assert_eq!(avail(&d, "GVTg_V5_1"), before - 1);
    let list: Vec<VgpuInfo> = serde_json::from_value(d.handle(Op::List).unwrap()).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|v| v.state == "Connected"));
    assert!(
        list[0].low_gm.base + list[0].low_gm.size <= list[1].low_gm.base
            || list[1].low_gm.base + list[1].low_gm.size <= list[0].low_gm.base
    );
    d.handle(Op::Destroy { domid: 3 }).unwrap();
    d.handle(Op::Destroy { domid: 4 }).unwrap();
    assert_eq!(avail(&d, "GVTg_V5_1"), before);
}

#[test]
fn errors_are_typed() {
    let mut d = sim();
    let code = |r: Result<Value, ErrorBody>| r.unwrap_err().code;
    assert_eq!(
        code(d.handle(Op::Info { domid: 9 })),
        ErrorCode::UnknownDomain
    );
    assert_eq!(
        code(d.handle(Op::Destroy { domid: 9 })),
        ErrorCode::UnknownDomain
    );
    assert_eq!(
        code(d.handle(Op::Attach {
            domid: 9,
            type_name: Some("big".into())
        })),
        ErrorCode::NoSuchType
    );
    assert_eq!(
        code(d.handle(Op::Attach {
            domid: 0,
            type_name: None
        })),
        ErrorCode::BadRequest
    );
    d.handle(Op::Attach {
        domid: 9,
        type_name: None,
    })
    .unwrap();
    assert_eq!(
        code(d.handle(Op::Attach {
            domid: 9,
            type_name: None
        })),
        ErrorCode::AlreadyAttached
    );
    // The vGPU has a display, but the guest has not enabled a plane.
    let e = d.handle(Op::Screenshot { domid: 9 }).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoImage);
    assert!(e.message.contains("no pipe is enabled"), "{}", e.message);
    // Exhaust the 1 GiB aperture with 512 MiB types.
    d.handle(Op::Attach {
        domid: 10,
        type_name: Some("GVTg_V5_1".into()),
    })
    .unwrap();
    assert_eq!(
        code(d.handle(Op::Attach {
            domid: 11,
            type_name: Some("GVTg_V5_1".into())
        })),
        ErrorCode::NoResources
    );
    // The failed attach left no simulated domain or vGPU behind.
    assert!(!d.vgpus().contains_key(&11));
    assert!(!d.backend().domain_alive(11));
    // Destroy stops the simulated domain attach started.
    assert!(d.backend().domain_alive(9));
    d.handle(Op::Destroy { domid: 9 }).unwrap();
    assert!(!d.backend().domain_alive(9));
}

#[test]
fn attach_starts_the_simulated_domain_and_creates_a_real_server() {
    let xen = SimXen::new();
    let mut d = Daemon::new(DaemonConfig::default(), backend(&xen), None);
    let info: VgpuInfo = serde_json::from_value(
        d.handle(Op::Attach {
            domid: 42,
            type_name: Some("GVTg_V5_8".into()),
        })
        .unwrap(),
    )
    .unwrap();
    let dom = xen.domain(42).expect("sim domain 42 started");
    assert_eq!(dom.server_count(), 1);
    assert_eq!(info.server_id, 0);
    assert!(d.vgpus()[&42].poll_fd.is_some());
    // An existing domain is attached to, not replaced, and not stopped on destroy.
    let other = xen
        .create_domain_with_id(43, SimDomainConfig::default())
        .unwrap();
    d.handle(Op::Attach {
        domid: 43,
        type_name: None,
    })
    .unwrap();
    assert_eq!(other.server_count(), 1);
    d.handle(Op::Destroy { domid: 43 }).unwrap();
    assert_eq!(other.server_count(), 0);
    assert!(!other.is_destroyed());
    d.handle(Op::Destroy { domid: 42 }).unwrap();
    assert!(dom.is_destroyed());
    // A domain that dies under its vGPU: service() tears the vGPU down.
    d.handle(Op::Attach {
        domid: 43,
        type_name: None,
    })
    .unwrap();
    xen.destroy_domain(43);
    assert!(!d.service(43));
    assert!(d.vgpus().is_empty());
}

#[test]
fn types_come_from_the_partitioner_with_display_caps() {
    let mut d = sim();
    let t = d.types();
    assert_eq!(t.len(), 4);
    // 1 GiB aperture and 3 GiB high GM, no host reserve: the tighter of low (1024/64,
    // 1024/128, ...) and high (3072/384, 3072/512, ...), capped by the 8 vGPU slots.
    let counts: Vec<u32> = t.iter().map(|t| t.available_instances).collect();
    assert_eq!(counts, vec![8, 6, 3, 1]);
    assert!(t.iter().all(|t| t.display.has_display));
    assert_eq!(
        (t[0].display.max_width, t[0].display.max_height),
        (2560, 1600)
    );
    d.handle(Op::Attach {
        domid: 2,
        type_name: Some("GVTg_V5_2".into()),
    })
    .unwrap();
    let counts: Vec<u32> = d.types().iter().map(|t| t.available_instances).collect();
    // 768 MiB low and 2 GiB high left.
    assert_eq!(counts, vec![5, 4, 2, 1]);
}

#[test]
fn records_persist_and_resume_destroying_the_stale_server() {
    let srv = TestServer::start().unwrap();
    let xs = Arc::new(XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap());
    // One simulated Xen outlives both daemons, as a real one would.
    let xen = SimXen::new();
    let dom = xen
        .create_domain_with_id(5, SimDomainConfig::default())
        .unwrap();
    let mut d = Daemon::new(DaemonConfig::default(), backend(&xen), Some(xs.clone()));
    d.handle(Op::Attach {
        domid: 2,
        type_name: None,
    })
    .unwrap();
    let info: VgpuInfo = serde_json::from_value(
        d.handle(Op::Attach {
            domid: 5,
            type_name: None,
        })
        .unwrap(),
    )
    .unwrap();
    assert!(xs.exists("/xengt/vgpu/5").unwrap());
    // A "crash": forget the daemon without teardown (its ioreq server stays behind).
    std::mem::forget(d);
    assert_eq!(dom.server_count(), 1);
    let mut d2 = Daemon::new(DaemonConfig::default(), backend(&xen), Some(xs.clone()));
    xs.write("/xengt/vgpu/77", b"{not json").unwrap();
    xs.write("/xengt/vgpu/8", &serde_json::to_vec(&d2_record()).unwrap())
        .unwrap();
    let lines = d2.resume();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let l5 = lines.iter().find(|l| l.starts_with("domain 5:")).unwrap();
    assert!(
        l5.contains("re-attached") && l5.contains("server 0 of domain 5 destroyed"),
        "{l5}"
    );
    // The stale server was destroyed and exactly one new one serves the domain.
    assert_eq!(dom.server_count(), 1);
    let v = &d2.vgpus()[&5];
    assert_eq!(v.rec.origin, Origin::Resumed);
    assert_eq!(v.rec.low, info.low_gm);
    // Domain 2 was simulated by the old daemon: not resumed.
    assert!(!d2.vgpus().contains_key(&2));
    assert!(!d2.vgpus().contains_key(&8));
    assert!(!xs.exists("/xengt/vgpu/8").unwrap());
    assert!(!xs.exists("/xengt/vgpu/77").unwrap());
    d2.destroy_all();
    assert!(!xs.exists("/xengt/vgpu/5").unwrap());
    assert_eq!(dom.server_count(), 0);
}

fn d2_record() -> Record {
    Record {
        server_id: 1,
        type_name: None,
        low: WindowInfo {
            base: 0,
            size: 1 << 26,
        },
        high: WindowInfo {
            base: 1 << 30,
            size: 1 << 26,
        },
        fence_base: 0,
        fence_count: 4,
        origin: Origin::Xenstore,
        owns_domain: false,
        ggtt_backing: Default::default(),
        preset_bars: false,
    }
}
