//! End to end: a real `xengtd --backend sim` process driven by the real `xengt-ctl`.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_xengt-ctl");

fn xengtd_bin() -> PathBuf {
    // Always (re)build once per test process: an existing binary may be stale.
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = Path::new(CTL).with_file_name("xengtd");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-q", "-p", "xengt", "--bin", "xengtd"])
                .status()
                .expect("run cargo build for xengtd");
            assert!(st.success(), "building xengtd failed");
            assert!(bin.exists(), "xengtd not at {}", bin.display());
            bin
        })
        .clone()
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(name: &str) -> Self {
        let socket =
            std::env::temp_dir().join(format!("xengt-cli-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(xengtd_bin())
            .args([
                "--backend",
                "sim",
                "--xenstore",
                "none",
                "--log",
                "warn",
                "--control-socket",
            ])
            .arg(&socket)
            .spawn()
            .expect("spawn xengtd");
        let t0 = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "xengtd did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, socket }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CTL)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run xengt-ctl")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ctl(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "xengtd exit status {status}");
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "xengtd did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!self.socket.exists(), "control socket left behind");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn available(types: &Value, name: &str) -> u64 {
    types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["available_instances"]
        .as_u64()
        .unwrap()
}

#[test]
fn types_attach_list_destroy() {
    let d = Daemon::start("flow");
    let mode = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let types = d.json(&["types"]);
    assert_eq!(types.as_array().unwrap().len(), 4);
    // Display capabilities are discoverable without creating a vGPU.
    for t in types.as_array().unwrap() {
        assert_eq!(t["has_display"], true, "{t}");
        assert_eq!(t["plane_interfaces"], serde_json::json!(["region"]), "{t}");
        assert!(t["max_width"].as_u64().unwrap() >= 1024, "{t}");
        assert!(t["max_height"].as_u64().unwrap() >= 768, "{t}");
    }
    let t8 = &types[0];
    assert_eq!(
        (t8["max_width"].as_u64(), t8["max_height"].as_u64()),
        (Some(2560), Some(1600))
    );
    let before = available(&types, "GVTg_V5_2");
    assert!(before >= 2);
    let before4 = available(&types, "GVTg_V5_4");
    d.json(&["attach", "3", "--type", "GVTg_V5_2"]);
    assert_eq!(available(&d.json(&["types"]), "GVTg_V5_2"), before - 1);
    d.json(&["attach", "4"]);
    let list = d.json(&["list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for v in list {
        assert_eq!(v["state"], "Connected");
        assert!(v["low_gm"]["size"].as_u64().unwrap() > 0);
        assert!(v["high_gm"]["size"].as_u64().unwrap() > 0);
    }
    // info: windows disjoint, counters of the live device, why there is no plane yet.
    let i3 = d.json(&["info", "3"]);
    let i4 = d.json(&["info", "4"]);
    for i in [&i3, &i4] {
        assert_eq!(i["state"], "Connected");
        assert_eq!(i["counters"]["ggtt_writes_dropped"], 0, "{i}");
        assert_eq!(i["counters"]["vgpu"]["mmio_reads"], 0, "{i}");
        assert!(i["counters"]["server"]["dispatch"].is_object(), "{i}");
        assert!(i["plane"].is_null());
        assert_eq!(i["plane_error"], "no pipe is enabled");
    }
    let (a, b) = (&i3["low_gm"], &i4["low_gm"]);
    let end = |w: &Value| w["base"].as_u64().unwrap() + w["size"].as_u64().unwrap();
    assert!(end(a) <= b["base"].as_u64().unwrap() || end(b) <= a["base"].as_u64().unwrap());
    assert_eq!(i3["low_gm"]["size"].as_u64(), Some(256 << 20));
    // One allocator: 3 GiB of high GM minus 1 GiB + 512 MiB leaves room for 3 × 512 MiB.
    assert_eq!(before4, 6);
    assert_eq!(available(&d.json(&["types"]), "GVTg_V5_4"), 3);
    d.json(&["destroy", "3"]);
    d.json(&["destroy", "4"]);
    assert_eq!(available(&d.json(&["types"]), "GVTg_V5_2"), before);
    assert_eq!(available(&d.json(&["types"]), "GVTg_V5_4"), before4);
    assert!(d.json(&["list"]).as_array().unwrap().is_empty());
    d.stop();
}

#[test]
fn create_from_example_configs_and_errors() {
    let d = Daemon::start("create");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pvh = root.join("configs/examples/pvh-vgt.cfg");
    let v = d.json(&["create", pvh.to_str().unwrap()]);
    assert_eq!(v["state"], "Connected");
    let domid = v["domid"].as_u64().unwrap().to_string();
    assert_eq!(d.json(&["info", &domid])["type_name"], "GVTg_V5_4");
    // Unknown domain: one-line error, non-zero exit.
    let out = d.ctl(&["info", "4242"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4242") && err.lines().count() == 1, "{err}");
    // Unknown type lists the available ones.
    let out = d.ctl(&["attach", "9", "--type", "huge"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("GVTg_V5_8"));
    // Screenshot of a guest that enabled no plane: one clear line, nothing written.
    let png = std::env::temp_dir().join(format!("xengt-never-{}.png", std::process::id()));
    let out = d.ctl(&["screenshot", &domid, png.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no image") && err.contains("no_image") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!png.exists());
    d.stop();
}

#[test]
fn parse_config_examples_and_bad_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for entry in std::fs::read_dir(root.join("configs/examples")).unwrap() {
        let p = entry.unwrap().path();
        let out = Command::new(CTL)
            .args(["parse-config", p.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["vgpu"]["low_gm_mib"].as_u64().unwrap() > 0);
    }
    let bad = std::env::temp_dir().join(format!("xengt-bad-{}.cfg", std::process::id()));
    std::fs::write(
        &bad,
        "name = 'b'\ntype = 'hvm'\nvgt = 1\nvgt_low_gm_sz = 7\n",
    )
    .unwrap();
    let out = Command::new(CTL)
        .args(["parse-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4));
    assert!(err.contains(&format!("{}:4:", bad.display())), "{err}");
    assert!(err.contains("64, 128, 256, 512"), "{err}");
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn garbage_and_disconnecting_peers_change_nothing() {
    let d = Daemon::start("garbage");
    d.json(&["attach", "5"]);
    // Garbage line: clear error, connection still answers.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"{\"version\":1,\"op\":{\"cmd\":\"destroy\"\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let resp: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(resp["error"]["code"], "bad_request");
    // Wrong version.
    s.write_all(b"{\"version\":99,\"op\":{\"cmd\":\"list\"}}\n")
        .unwrap();
    let n = s.read(&mut buf).unwrap();
    let resp: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(resp["error"]["code"], "unsupported_version");
    // Disconnect mid-request (a destroy without its newline): must not execute.
    let mut s2 = UnixStream::connect(&d.socket).unwrap();
    s2.write_all(b"{\"version\":1,\"op\":{\"cmd\":\"destroy\",\"domid\":5}}")
        .unwrap();
    drop(s2);
    // Oversized line: error and the connection is closed.
    let mut s3 = UnixStream::connect(&d.socket).unwrap();
    let _ = s3.write_all(&vec![b'x'; 70 * 1024]);
    std::thread::sleep(Duration::from_millis(200));
    let list = d.json(&["list"]);
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "state changed by a bad peer"
    );
    d.stop();
}

#[test]
fn unreachable_daemon_exit_code() {
    let out = Command::new(CTL)
        .args(["--socket", "/nonexistent/xengt.sock", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is xengtd running"));
}

#[test]
fn completions_print() {
    let out = Command::new(CTL)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("parse-config"));
}
