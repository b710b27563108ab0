//! End to end: a real `xengtd --backend sim` process driven by the real `xengt-ctl`.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

    fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CTL);
        c.arg("--socket").arg(&self.socket).args(args);
        c
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

/// A pipe whose reader is gone: the write end of `true`'s stdin, after `true` exited.
/// Writing to it fails with EPIPE from the first byte, deterministically.
fn closed_pipe() -> Stdio {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let w = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    Stdio::from(w)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xengt-cli-{}-{name}", std::process::id()))
}

/// One JSON error object on stdout, nothing on stderr, the given exit code; its code.
fn json_error(out: &Output, exit: i32) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(exit), "{stdout}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).expect("one JSON object");
    let e = v["error"].as_object().unwrap();
    assert_eq!(e.len(), 2, "{v}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{v}");
    e["code"].as_str().unwrap().to_string()
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let d = Daemon::start("epipe");
    d.json(&["attach", "5"]);
    for args in [
        &["info", "5", "--json"][..],
        &["list"],
        &["status"],
        &["completions", "bash"],
    ] {
        let out = d.ctl_cmd(args).stdout(closed_pipe()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // A failure keeps its exit code; its text on stderr is still seen.
    let out = d
        .ctl_cmd(&["info", "4242"])
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4242"));
    let out = d
        .ctl_cmd(&["info", "4242", "--json"])
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty());
    // The case from the issue, through a shell.
    let sh = format!(
        "{CTL} --socket {} info 5 --json | true; echo ${{PIPESTATUS[0]}}",
        d.socket.display()
    );
    let out = Command::new("bash").args(["-c", &sh]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop();
}

#[test]
fn json_errors_are_one_object_and_keep_the_exit_codes() {
    let d = Daemon::start("jsonerr");
    assert_eq!(
        json_error(&d.ctl(&["info", "4242", "--json"]), 1),
        "unknown_domain"
    );
    assert_eq!(
        json_error(&d.ctl(&["--json", "attach", "9", "--type", "huge"]), 1),
        "no_such_type"
    );
    assert_eq!(
        json_error(&d.ctl(&["info", "nobody", "--json"]), 1),
        "unknown_domain"
    );
    assert_eq!(json_error(&d.ctl(&["info", "--json"]), 2), "usage");
    assert_eq!(json_error(&d.ctl(&["info", "70000", "--json"]), 2), "usage");
    assert_eq!(
        json_error(&d.ctl(&["--timeout", "0", "list", "--json"]), 2),
        "usage"
    );
    let bad = tmp("json-bad.cfg");
    std::fs::write(
        &bad,
        "name = 'b'\ntype = 'hvm'\nvgt = 1\nvgt_low_gm_sz = 7\n",
    )
    .unwrap();
    let out = d.ctl(&["parse-config", bad.to_str().unwrap(), "--json"]);
    assert_eq!(json_error(&out, 4), "invalid_input");
    let _ = std::fs::remove_file(&bad);
    let out = Command::new(CTL)
        .args(["--socket", "/nonexistent/x.sock", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(json_error(&out, 3), "unreachable");
    // Without --json the same failures stay one plain line on stderr.
    let out = d.ctl(&["info", "4242"]);
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    d.stop();
}

#[test]
fn domains_by_name() {
    let d = Daemon::start("names");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pvh = root.join("configs/examples/pvh-vgt.cfg");
    let created = d.json(&["create", pvh.to_str().unwrap()]);
    assert_eq!(created["name"], "vgt-pvh");
    let domid = created["domid"].as_u64().unwrap();
    d.json(&["attach", "7"]);
    let list = d.json(&["list"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(names, ["vgt-pvh", "sim-7"]);
    let table = d.ctl(&["list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let head: Vec<_> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&head[..3], ["DOMID", "NAME", "TYPE"], "{table}");
    assert!(table.lines().any(|l| l.contains("vgt-pvh")), "{table}");
    // Every domain argument takes a name.
    assert_eq!(d.json(&["info", "vgt-pvh"])["domid"].as_u64(), Some(domid));
    assert_eq!(d.json(&["info", "sim-7"])["domid"], 7);
    let out = d.ctl(&["attach", "vgt-pvh"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already_attached"));
    let png = tmp("never.png");
    let out = d.ctl(&["screenshot", "vgt-pvh", png.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_image"));
    // An unknown name: one line listing what exists.
    let out = d.ctl(&["destroy", "vgt-hvm"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no domain named \"vgt-hvm\"")
            && err.contains(&format!("{domid} (vgt-pvh)"))
            && err.contains("7 (sim-7)"),
        "{err}"
    );
    // Invalid arguments are usage errors; a second guest of the same name is refused.
    assert_eq!(d.ctl(&["info", ""]).status.code(), Some(2));
    assert_eq!(d.ctl(&["info", "a\u{7}b"]).status.code(), Some(2));
    let out = d.ctl(&["create", pvh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already named"));
    let out = d.ctl(&["destroy", "vgt-pvh"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("destroyed the vGPU of domain {domid} (vgt-pvh)")
    );
    assert_eq!(d.json(&["list"]).as_array().unwrap().len(), 1);
    d.stop();
}

#[test]
fn status_and_version() {
    let d = Daemon::start("status");
    d.json(&["attach", "3"]);
    let st = d.json(&["status"]);
    assert_eq!(st["daemon_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["version"], 1);
    assert_eq!(st["backend"], "sim");
    assert_eq!(st["vgpus"], 1);
    assert_eq!(st["xenstore"], false);
    assert_eq!(st["hotplug"], false);
    assert!(st["uptime_s"].as_u64().unwrap() < 600);
    let out = d.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        format!("DAEMON_VERSION  {}", env!("CARGO_PKG_VERSION")),
        "BACKEND         sim".into(),
        "VGPUS           1 of at most".into(),
        "XENSTORE        not connected".into(),
    ] {
        assert!(text.contains(&needle), "{needle}: {text}");
    }
    let out = Command::new(CTL).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("xengt-ctl {}", env!("CARGO_PKG_VERSION"))
    );
    d.stop();
}

#[test]
fn typos_and_populate_on_demand_are_refused() {
    let cases = [
        (
            "name = 'g'\ntype = 'hvm'\nvgt = 1\nvgt_low_gm_size = 256\n",
            ":4: vgt_low_gm_size: unknown vGPU key; did you mean vgt_low_gm_sz?",
        ),
        (
            "name = 'g'\ntype = 'hvm'\nmemory = 2048\nmaxmem = 4096\nvgt = 1\n",
            ":4: maxmem: 4096 > memory 2048: a vGPU guest cannot use populate-on-demand; set maxmem = 2048",
        ),
    ];
    let d = Daemon::start("typos");
    for (i, (text, needle)) in cases.iter().enumerate() {
        let cfg = tmp(&format!("typo{i}.cfg"));
        std::fs::write(&cfg, text).unwrap();
        // parse-config and create read configs through the same parser.
        for cmd in ["parse-config", "create"] {
            let out = d.ctl(&[cmd, cfg.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{cmd}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(&format!("{}{needle}", cfg.display())), "{err}");
        }
        let _ = std::fs::remove_file(&cfg);
    }
    assert!(d.json(&["list"]).as_array().unwrap().is_empty());
    // Other xl keys stay accepted.
    let ok = tmp("ok.cfg");
    std::fs::write(
        &ok,
        "name = 'g'\ntype = 'hvm'\nmemory = 2048\nmaxmem = 2048\nvgt = 1\nvga = 'none'\nsome_future_xl_key = 1\n",
    )
    .unwrap();
    let v = d.json(&["parse-config", ok.to_str().unwrap()]);
    assert_eq!(v["vgpu"]["type_name"], "GVTg_V5_4");
    let _ = std::fs::remove_file(&ok);
    d.stop();
}

#[test]
fn man_pages() {
    let dir = tmp("man");
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(CTL)
        .args(["man", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let subs = [
        "status",
        "list",
        "types",
        "info",
        "create",
        "attach",
        "destroy",
        "parse-config",
        "screenshot",
        "completions",
        "dm-hook",
    ];
    // roff writes a literal '-' as '\-'.
    let roff = |s: &str| s.replace('-', "\\-");
    let top = std::fs::read_to_string(dir.join("xengt-ctl.1")).unwrap();
    assert!(top.contains(".TH xengt-ctl 1"), "{top}");
    assert!(top.contains("Exit codes"), "{top}");
    for sub in subs {
        let name = roff(&format!("xengt-ctl-{sub}"));
        assert!(
            top.contains(&format!("{name}(1)")),
            "xengt-ctl.1 does not mention {sub}"
        );
        let page = std::fs::read_to_string(dir.join(format!("xengt-ctl-{sub}.1"))).unwrap();
        assert!(page.contains(&format!(".TH xengt-ctl-{sub} 1")), "{page}");
        assert!(page.contains(".SH SYNOPSIS"), "{page}");
    }
    // The man subcommand itself is hidden: no page, not in the help.
    assert!(!dir.join("xengt-ctl-man.1").exists());
    let pages = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(pages, subs.len() + 1);
    let help = Command::new(CTL).arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("man "));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stock-xl device-model hook refuses before it would start QEMU, with one line that
/// says what to fix (libxl puts it in qemu-dm-NAME.log and destroys the domain).
#[test]
fn dm_hook_refuses_with_a_clear_line_before_starting_qemu() {
    let hook = |args: &[&str]| {
        let o = Command::new(CTL)
            .arg("dm-hook")
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = hook(&["-machine", "xenfv"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("-xen-domid"), "{err}");
    let (code, err) = hook(&["-xen-domid", "4", "-xengt-config", "/nonexistent/g.cfg"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/g.cfg"), "{err}");
    let ex = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/examples/hvm-vgt.cfg"
    );
    let (code, err) = hook(&[
        "-xen-domid",
        "4",
        "-xengt-config",
        ex,
        "-xengt-qemu",
        "/nonexistent/qemu",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/qemu does not exist"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
