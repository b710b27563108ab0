use super::*;
use crate::backend::SimBackend;
use xen_backend::xenstore::test_server::TestServer;

fn sim() -> Daemon {
    Daemon::new(DaemonConfig::default(), Box::new(SimBackend::new()), None)
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
    assert_eq!(
        code(d.handle(Op::Screenshot { domid: 9 })),
        ErrorCode::Unsupported
    );
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
}

#[test]
fn records_persist_and_resume() {
    let srv = TestServer::start().unwrap();
    let xs = Arc::new(XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap());
    let mut sim1 = SimBackend::new();
    sim1.add_domain(5, "g5");
    let mut d = Daemon::new(DaemonConfig::default(), Box::new(sim1), Some(xs.clone()));
    let info: VgpuInfo = serde_json::from_value(
        d.handle(Op::Attach {
            domid: 5,
            type_name: None,
        })
        .unwrap(),
    )
    .unwrap();
    assert!(xs.exists("/xengt/vgpu/5").unwrap());
    // A "crash": forget the daemon without teardown, start a new one.
    std::mem::forget(d);
    let mut sim2 = SimBackend::new();
    sim2.add_domain(5, "g5");
    let mut d2 = Daemon::new(DaemonConfig::default(), Box::new(sim2), Some(xs.clone()));
    xs.write("/xengt/vgpu/77", b"{not json").unwrap();
    xs.write("/xengt/vgpu/8", &serde_json::to_vec(&d2_record()).unwrap())
        .unwrap();
    let lines = d2.resume();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let v = &d2.vgpus()[&5];
    assert_eq!(v.rec.origin, Origin::Resumed);
    assert_eq!(v.rec.low, info.low_gm);
    assert!(!d2.vgpus().contains_key(&8));
    assert!(!xs.exists("/xengt/vgpu/8").unwrap());
    assert!(!xs.exists("/xengt/vgpu/77").unwrap());
    d2.destroy_all();
    assert!(!xs.exists("/xengt/vgpu/5").unwrap());
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
    }
}
