//! The `xengtd` process as systemd runs it: `Type=notify` readiness, SIGHUP reloads the
//! config (a bad file is refused and the daemon keeps running), SIGTERM stops it cleanly,
//! and losing xenstored makes it exit non-zero so `Restart=on-failure` applies.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xen_backend::xenstore::test_server::TestServer;

const WAIT: Duration = Duration::from_secs(20);

struct Daemon {
    child: Child,
    dir: PathBuf,
    notify: UnixDatagram,
}

impl Daemon {
    fn start(name: &str, xenstore: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("xengtd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("xengtd.json"), "{}").unwrap();
        let notify = UnixDatagram::bind(dir.join("notify")).unwrap();
        notify.set_read_timeout(Some(WAIT)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_xengtd"))
            .args([
                "--backend",
                "sim",
                "--log-target",
                "stderr",
                "--xenstore",
                xenstore,
            ])
            .arg("--config")
            .arg(dir.join("xengtd.json"))
            .arg("--control-socket")
            .arg(dir.join("sock"))
            .env("NOTIFY_SOCKET", dir.join("notify"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Daemon { child, dir, notify }
    }

    /// The next sd_notify datagram.
    fn next_notify(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .notify
            .recv(&mut buf)
            .expect("an sd_notify message in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn wait_for_notify(&self, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = self.next_notify();
            if m.lines().any(|l| l == what) {
                return m;
            }
            assert!(Instant::now() < deadline, "no {what} (last: {m:?})");
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn request(&self, op: &str) -> Value {
        let mut s = UnixStream::connect(self.dir.join("sock")).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        writeln!(s, r#"{{"version":1,"id":7,"op":{{"cmd":"{op}"}}}}"#).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn type_names(&self) -> Vec<String> {
        let r = self.request("types");
        r["ok"]
            .as_array()
            .unwrap_or_else(|| panic!("types reply {r}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("xengtd.json")
    }

    /// Waits for the exit; returns (status code, stderr).
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "xengtd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = self.child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn alive(d: &mut Daemon) -> bool {
    d.child.try_wait().unwrap().is_none()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn notify_readiness_sighup_reload_and_sigterm() {
    let mut d = Daemon::start("reload", "none");
    let ready = d.wait_for_notify("READY=1");
    assert!(ready.contains("STATUS=0 vGPU(s), hotplug off"), "{ready:?}");
    assert!(d.type_names().contains(&"GVTg_V5_8".to_string()));

    // A new type table: applied on SIGHUP.
    write(
        &d.config_path(),
        r#"{"types": [{"name": "small", "low_gm_mib": 32, "high_gm_mib": 128, "fences": 2}],
            "default_type": "small"}"#,
    );
    d.signal("-HUP");
    d.wait_for_notify("RELOADING=1");
    d.wait_for_notify("READY=1");
    assert!(alive(&mut d), "SIGHUP must not kill xengtd");
    assert_eq!(d.type_names(), ["small"]);

    // A broken file and a changed host section are refused; the running config stays.
    for bad in [r#"{"types": "#, r#"{"host": {"fences": 16}}"#] {
        write(&d.config_path(), bad);
        d.signal("-HUP");
        d.wait_for_notify("READY=1");
        assert!(alive(&mut d));
        assert_eq!(d.type_names(), ["small"], "after {bad}");
    }

    let sock = d.dir.join("sock");
    d.signal("-TERM");
    d.wait_for_notify("STOPPING=1");
    let (code, stderr) = d.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!sock.exists(), "the control socket is removed on SIGTERM");
    assert!(stderr.contains("config reloaded"), "{stderr}");
    assert!(stderr.contains("host section changed"), "{stderr}");
    assert!(stderr.contains("keeping the running config"), "{stderr}");
}

#[test]
fn losing_xenstored_is_a_non_zero_exit() {
    let xs = TestServer::start().unwrap();
    let path = xs.socket_path().to_str().unwrap().to_string();
    let d = Daemon::start("xslost", &path);
    let ready = d.wait_for_notify("READY=1");
    assert!(ready.contains("hotplug on"), "{ready:?}");
    drop(xs);
    let (code, stderr) = d.wait();
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("error") && last.contains("lost the connection to xenstored"),
        "one clear last line: {last:?}"
    );
}
