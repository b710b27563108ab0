#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use xen_backend::xenstore::test_server::TestServer;
use xen_backend::xenstore::{XsClient, XsOps};
use xen_backend::SimXen;

use super::*;
use crate::config::DaemonConfig;
use crate::mediated::MediatedBackend;

fn sim(xs: Option<Arc<XsClient>>) -> Daemon {
    let cfg = DaemonConfig::default();
    let backend = MediatedBackend::with_sim(SimXen::new(), &cfg).unwrap();
    Daemon::new(cfg, backend, xs)
}

fn guest(name: &str) -> GuestConfig {
    let text = format!("name = {name:?}\ntype = \"pvh\"\nvgt = 1\n");
    crate::xlcfg::parse(&text, "t.cfg", &DaemonConfig::default()).unwrap()
}

fn names(d: &mut Daemon) -> Vec<(u16, Option<String>, bool)> {
    let v: Vec<DomainInfo> = serde_json::from_value(d.handle(Op::Domains).unwrap()).unwrap();
    v.into_iter().map(|d| (d.domid, d.name, d.vgpu)).collect()
}

#[test]
fn simulated_domains_are_named_by_their_config_or_generated() {
    let mut d = sim(None);
    let web: VgpuInfo = serde_json::from_value(
        d.handle(Op::Create {
            config: guest("web"),
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(web.name.as_deref(), Some("web"));
    let a = d
        .handle(Op::Attach {
            domid: 9,
            type_name: None,
        })
        .unwrap();
    assert_eq!(a["name"], "sim-9");
    let list: Vec<VgpuInfo> = serde_json::from_value(d.handle(Op::List).unwrap()).unwrap();
    let listed: Vec<_> = list.iter().map(|v| v.name.as_deref()).collect();
    assert_eq!(listed, [Some("web"), Some("sim-9")]);
    assert_eq!(
        names(&mut d),
        [
            (web.domid, Some("web".into()), true),
            (9, Some("sim-9".into()), true)
        ]
    );
    // As xl: one name, one domain; and names that would read as ids are refused.
    for bad in ["web", "sim-9"] {
        let e = d.handle(Op::Create { config: guest(bad) }).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{bad}: {}", e.message);
    }
    let mut g = guest("x");
    g.name = "42".into();
    let e = d.handle(Op::Create { config: g }).unwrap_err();
    assert!(e.message.contains("domain id"), "{}", e.message);
    // destroy still names the domain it took down; the name goes with it.
    let gone = d.handle(Op::Destroy { domid: web.domid }).unwrap();
    assert_eq!(gone["name"], "web");
    assert_eq!(names(&mut d), [(9, Some("sim-9".into()), true)]);
    d.handle(Op::Create {
        config: guest("web"),
    })
    .unwrap();
}

#[test]
fn xenstore_names_win_and_are_checked() {
    let srv = TestServer::start().unwrap();
    let xs = Arc::new(XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap());
    xs.write("/local/domain/0/name", b"Domain-0").unwrap();
    xs.write("/local/domain/5/name", b"guest-five").unwrap();
    xs.write("/local/domain/6/name", b"bad\nname").unwrap();
    xs.write("/local/domain/7/vm", b"/vm/x").unwrap();
    let mut d = sim(Some(xs));
    let v = d
        .handle(Op::Attach {
            domid: 5,
            type_name: None,
        })
        .unwrap();
    assert_eq!(v["name"], "guest-five");
    assert_eq!(
        d.handle(Op::Info { domid: 5 }).unwrap()["name"],
        "guest-five"
    );
    assert_eq!(
        names(&mut d),
        [
            (0, Some("Domain-0".into()), false),
            (5, Some("guest-five".into()), true),
            (6, None, false),
            (7, None, false),
        ]
    );
    let st: StatusInfo = serde_json::from_value(d.handle(Op::Status).unwrap()).unwrap();
    assert!(st.xenstore);
}

#[test]
fn status_carries_the_daemons_facts() {
    let mut d = sim(None);
    d.handle(Op::Attach {
        domid: 3,
        type_name: None,
    })
    .unwrap();
    let st: StatusInfo = serde_json::from_value(d.handle(Op::Status).unwrap()).unwrap();
    assert_eq!(st.daemon_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(st.version, PROTO_VERSION);
    assert_eq!((st.backend.as_str(), st.vgpus), ("sim", 1));
    assert!(!st.xenstore && !st.hotplug);
    assert_eq!(st.default_type, DaemonConfig::default().default_type);
    assert!(st.max_vgpus >= 1);
    assert!(st.uptime_s < 600);
}
