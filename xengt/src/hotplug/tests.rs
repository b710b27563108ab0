use std::sync::Arc;

use super::*;
use crate::config::DaemonConfig;
use crate::mediated::MediatedBackend;
use crate::proto::Op;
use xen_backend::xenstore::test_server::TestServer;
use xen_backend::SimXen;

struct Rig {
    srv: TestServer,
    xs: Arc<XsClient>,
    d: Daemon,
    hp: Hotplug,
}

fn rig(timeout_secs: u64) -> Rig {
    let srv = TestServer::start().unwrap();
    let xs = Arc::new(XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap());
    let mut cfg = DaemonConfig::default();
    cfg.limits.connect_timeout_secs = timeout_secs;
    let b = MediatedBackend::with_sim(SimXen::new(), &cfg).unwrap();
    let mut d = Daemon::new(cfg, b, Some(xs.clone()));
    let hp = Hotplug::start(&mut d, &xs).unwrap();
    Rig { srv, xs, d, hp }
}

impl Rig {
    /// Handles events until the store is quiet for 100 ms, then runs the timer.
    fn pump(&mut self) {
        loop {
            let evs = self
                .xs
                .wait_watch_events(Duration::from_millis(100))
                .unwrap();
            if evs.is_empty() {
                break;
            }
            self.hp.on_events(&mut self.d, &self.xs, &evs);
        }
        self.hp.tick(&mut self.d, &self.xs);
    }

    fn state(&self, domid: u16) -> Option<String> {
        self.xs
            .read_opt(&format!("{}/state", device_path(domid)))
            .unwrap()
    }

    fn toolstack_add(&self, domid: u16, keys: &[(&str, &str)]) {
        let dir = device_path(domid);
        self.xs
            .transaction(|tx| {
                for (k, v) in keys {
                    tx.write(&format!("{dir}/{k}"), v.as_bytes())?;
                }
                tx.write(&format!("{dir}/state"), b"1")
            })
            .unwrap();
    }
}

#[test]
fn connects_publishes_and_closes() {
    let mut r = rig(30);
    r.srv.introduce_domain(5);
    r.toolstack_add(
        5,
        &[("frontend-id", "5"), ("type", "GVTg_V5_2"), ("online", "1")],
    );
    r.pump();
    assert_eq!(r.state(5).as_deref(), Some("4"));
    let dir = device_path(5);
    assert_eq!(
        r.xs.read_string(&format!("{dir}/chosen-type")).unwrap(),
        "GVTg_V5_2"
    );
    assert_eq!(
        r.xs.read_string(&format!("{dir}/low-gm-size")).unwrap(),
        "0x10000000"
    );
    assert_eq!(r.xs.read_string(&format!("{dir}/server-id")).unwrap(), "0");
    assert!(r.xs.exists("/xengt/vgpu/5").unwrap());
    // Toolstack detaches: Closing → Closed, vGPU gone.
    r.xs.write(&format!("{dir}/state"), b"5").unwrap();
    r.pump();
    assert_eq!(r.state(5).as_deref(), Some("6"));
    assert!(r.d.vgpus().is_empty());
    assert!(!r.xs.exists("/xengt/vgpu/5").unwrap());
}

#[test]
fn sizes_instead_of_type_and_release_domain() {
    let mut r = rig(30);
    r.srv.introduce_domain(6);
    r.toolstack_add(
        6,
        &[
            ("frontend-id", "6"),
            ("low_gm_sz", "64"),
            ("high_gm_sz", "384"),
            ("fence_sz", "4"),
        ],
    );
    r.pump();
    assert_eq!(r.state(6).as_deref(), Some("4"));
    assert_eq!(r.d.vgpus()[&6].rec.type_name.as_deref(), Some("GVTg_V5_8"));
    r.srv.release_domain(6);
    r.pump();
    assert!(r.d.vgpus().is_empty());
    assert!(!r.xs.exists(&format!("{BACKEND_ROOT}/6")).unwrap());
}

#[test]
fn malformed_values_are_refused_in_xenstore() {
    let mut r = rig(30);
    r.srv.introduce_domain(7);
    r.srv.introduce_domain(8);
    r.srv.introduce_domain(9);
    r.toolstack_add(
        7,
        &[
            ("frontend-id", "7"),
            ("low_gm_sz", "7"),
            ("high_gm_sz", "384"),
        ],
    );
    r.toolstack_add(8, &[("frontend-id", "99"), ("type", "GVTg_V5_8")]);
    r.toolstack_add(
        9,
        &[
            ("frontend-id", "9"),
            ("low_gm_sz", "lots"),
            ("high_gm_sz", "1"),
        ],
    );
    r.xs.write(&format!("{BACKEND_ROOT}/notanumber/0/state"), b"1")
        .unwrap();
    r.xs.write(&format!("{BACKEND_ROOT}/0/0/state"), b"1")
        .unwrap();
    r.pump();
    r.pump();
    for (d, needle) in [
        (7, "match no type"),
        (8, "does not match"),
        (9, "not a decimal"),
    ] {
        assert_eq!(r.state(d).as_deref(), Some("6"), "dom{d}");
        let e =
            r.xs.read_string(&format!("{}/hotplug-error", device_path(d)))
                .unwrap();
        assert!(e.contains(needle), "dom{d}: {e}");
    }
    assert!(r.d.vgpus().is_empty());
    // Bad state text.
    r.xs.write(&format!("{}/state", device_path(7)), b"banana")
        .unwrap();
    r.pump();
    assert_eq!(r.state(7).as_deref(), Some("6"));
}

#[test]
fn frontend_that_never_appears_times_out() {
    let mut r = rig(0);
    r.toolstack_add(12, &[("frontend-id", "12"), ("type", "GVTg_V5_4")]);
    r.pump();
    r.pump();
    assert_eq!(r.state(12).as_deref(), Some("6"));
    let e =
        r.xs.read_string(&format!("{}/hotplug-error", device_path(12)))
            .unwrap();
    assert!(e.contains("never appeared"), "{e}");
    assert!(r.d.vgpus().is_empty());
}

#[test]
fn pending_device_connects_when_the_domain_appears() {
    let mut r = rig(30);
    r.toolstack_add(13, &[("frontend-id", "13"), ("type", "GVTg_V5_4")]);
    r.pump();
    assert_eq!(r.state(13).as_deref(), Some("2"));
    r.srv.introduce_domain(13);
    r.pump();
    assert_eq!(r.state(13).as_deref(), Some("4"));
}

#[test]
fn removed_directory_tears_down() {
    let mut r = rig(30);
    r.srv.introduce_domain(14);
    r.toolstack_add(14, &[("frontend-id", "14"), ("type", "GVTg_V5_4")]);
    r.pump();
    assert_eq!(r.d.vgpus().len(), 1);
    r.xs.rm(&format!("{BACKEND_ROOT}/14")).unwrap();
    r.pump();
    assert!(r.d.vgpus().is_empty());
    assert!(
        !r.xs.exists(&format!("{BACKEND_ROOT}/14")).unwrap(),
        "state must not resurrect it"
    );
}

#[test]
fn release_domain_reaps_control_socket_vgpus_too() {
    let mut r = rig(30);
    // A domain known to XenStore, attached over the control socket.
    r.srv.introduce_domain(21);
    r.d.handle(Op::Attach {
        domid: 21,
        type_name: None,
    })
    .unwrap();
    // A simulated domain XenStore never heard of, attached over the control socket.
    r.d.handle(Op::Attach {
        domid: 22,
        type_name: None,
    })
    .unwrap();
    assert!(r.d.vgpus()[&21].in_xenstore);
    assert!(!r.d.vgpus()[&22].in_xenstore);
    // An unrelated release leaves both alone.
    r.srv.introduce_domain(30);
    r.srv.release_domain(30);
    r.pump();
    assert_eq!(r.d.vgpus().len(), 2);
    r.srv.release_domain(21);
    r.pump();
    assert!(
        !r.d.vgpus().contains_key(&21),
        "XenStore domain gone: reaped"
    );
    assert!(r.d.vgpus().contains_key(&22));
    // The hypervisor loses domain 22; the next @releaseDomain reaps it.
    r.d.backend().sim_xen().unwrap().destroy_domain(22);
    r.srv.introduce_domain(31);
    r.srv.release_domain(31);
    r.pump();
    assert!(r.d.vgpus().is_empty());
}
