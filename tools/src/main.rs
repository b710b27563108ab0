//! xengt-ctl: operator CLI for xengtd (JSON control protocol over its Unix socket).
//!
//! Exit codes: 0 ok, 1 the operation failed, 2 usage (clap), 3 daemon unreachable,
//! 4 invalid input file. A stdout whose reader went away (EPIPE, e.g. `xengt-ctl list |
//! head -1`) is not a failure: the rest of the output is dropped quietly and the exit
//! code is what it would have been (0 for a command that succeeded), so a pipeline
//! under `set -o pipefail` does not fail because its reader stopped early.
//!
//! With `--json`, success prints the reply as one JSON document on stdout, and a failure
//! (usage errors included) prints one object `{"error":{"code":"…","message":"…"}}` on
//! stdout and nothing on stderr, with the same exit codes.
#![forbid(unsafe_code)]

mod client;
mod dmhook;
mod out;
mod target;
mod xl;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::Value;
use xengt::config::DaemonConfig;
use xengt::proto::{base64_decode, Op, ScreenshotInfo, StatusInfo, TypeInfo, VgpuInfo};

use client::call;
use out::{fail, Failure, Out, EXIT_FAILED, EXIT_INPUT, EXIT_USAGE};
use target::{parse_domain, resolve, DomainArg};

/// The exit codes and the JSON error shape, for `--help` and the man page.
const AFTER_HELP: &str = "\
A DOMAIN is a domain id (all digits, 0-32751) or a domain name.

Exit codes: 0 ok, 1 the operation failed, 2 usage, 3 xengtd unreachable, 4 invalid input \
file. A closed standard output (the reader went away) is not a failure.

With --json, a failure prints one object {\"error\":{\"code\":\"...\",\"message\":\"...\"}} \
on standard output and nothing on standard error.";

#[derive(Debug, Parser)]
#[command(name = "xengt-ctl", version, about = "Control xengtd vGPUs",
          after_long_help = AFTER_HELP)]
struct Cli {
    /// xengtd control socket.
    #[arg(long, global = true, default_value = "/run/xengt/xengtd.sock")]
    socket: PathBuf,
    /// Print JSON instead of tables (errors too, as {"error":{"code","message"}} on stdout).
    #[arg(long, global = true)]
    json: bool,
    /// Daemon config used to validate guest configs locally (defaults: built-in types).
    #[arg(long, global = true)]
    daemon_config: Option<PathBuf>,
    /// Seconds to wait for xengtd (1-3600).
    #[arg(long, global = true, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the daemon's version, backend, uptime and vGPU count.
    Status,
    /// List vGPUs.
    List,
    /// List vGPU types and free instances.
    Types,
    /// Show one vGPU.
    Info {
        /// Guest domain id or name.
        #[arg(value_parser = parse_domain)]
        domain: DomainArg,
    },
    /// Create a guest from an xl config with `vgt = 1` (sim: inside xengtd).
    Create {
        /// xl config file.
        cfg: PathBuf,
    },
    /// Give an existing domain a vGPU.
    Attach {
        /// Guest domain id or name.
        #[arg(value_parser = parse_domain)]
        domain: DomainArg,
        /// vGPU type (default: the daemon's default type).
        #[arg(long = "type")]
        type_name: Option<String>,
    },
    /// Destroy a vGPU.
    Destroy {
        /// Guest domain id or name.
        #[arg(value_parser = parse_domain)]
        domain: DomainArg,
    },
    /// Parse and validate an xl config; print the vGPU request (dry run).
    ParseConfig {
        /// xl config file.
        cfg: PathBuf,
    },
    /// Save the guest's display as PNG.
    Screenshot {
        /// Guest domain id or name.
        #[arg(value_parser = parse_domain)]
        domain: DomainArg,
        /// Output file.
        file: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Device-model hook for stock `xl create`: hand the vGPU to xengtd, then run qemu-xen.
    ///
    /// Not run by hand: a guest config names it as its device model,
    ///   device_model_override = "/usr/libexec/xengt/qemu-dm-vgt"
    ///   device_model_args_hvm = [ "-xengt-config", "/etc/xen/GUEST.cfg" ]
    /// and libxl runs it, with the domain still paused, with qemu-xen's arguments. It reads
    /// the vgt* keys of -xengt-config, hands the vGPU to xengtd through XenStore, waits
    /// until it is Connected, then executes -xengt-qemu PATH (default
    /// /usr/libexec/xen-qemu-system-i386) with the other arguments. On failure it exits 1
    /// before qemu-xen starts: xl reports that the device model failed and destroys the
    /// domain, and the reason is in /var/log/xen/qemu-dm-NAME.log.
    DmHook {
        /// qemu-xen's arguments (with -xen-domid) plus -xengt-config CFG [-xengt-qemu PATH].
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Write the man pages (xengt-ctl.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

fn daemon_config(cli: &Cli) -> Result<DaemonConfig, Failure> {
    match &cli.daemon_config {
        Some(p) => {
            DaemonConfig::load(p).map_err(|e| fail(EXIT_INPUT, "invalid_input", e.to_string()))
        }
        None => Ok(DaemonConfig::default()),
    }
}

fn print_vgpus(out: &mut Out, list: &[VgpuInfo]) {
    let names: Vec<&str> = list
        .iter()
        .map(|v| v.name.as_deref().unwrap_or("-"))
        .collect();
    let w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    out.line(format_args!(
        "{:>6}  {:<w$}  {:<10}  {:<10}  {:>10} {:>8}  {:>10} {:>8}  {:>7}  {:>6}",
        "DOMID",
        "NAME",
        "TYPE",
        "STATE",
        "LOW_BASE",
        "LOW_MiB",
        "HIGH_BASE",
        "HIGH_MiB",
        "FENCES",
        "SERVER"
    ));
    for (v, name) in list.iter().zip(names) {
        out.line(format_args!(
            "{:>6}  {:<w$}  {:<10}  {:<10}  {:>#10x} {:>8}  {:>#10x} {:>8}  {:>3}+{:<3}  {:>6}",
            v.domid,
            name,
            v.type_name.as_deref().unwrap_or("custom"),
            v.state,
            v.low_gm.base,
            v.low_gm.size >> 20,
            v.high_gm.base,
            v.high_gm.size >> 20,
            v.fence_base,
            v.fence_count,
            v.server_id
        ));
    }
}

/// ` (name)`, or nothing for a domain without a known name.
fn named(v: &VgpuInfo) -> String {
    v.name
        .as_deref()
        .map_or(String::new(), |n| format!(" ({n})"))
}

fn unexpected(e: serde_json::Error) -> Failure {
    fail(
        EXIT_FAILED,
        "protocol",
        format!("unexpected reply from xengtd: {e}"),
    )
}

/// The reply as JSON (`--json`), or decoded and shown by `human`.
fn output<T: serde::de::DeserializeOwned>(
    cli: &Cli,
    out: &mut Out,
    v: Value,
    human: impl FnOnce(&mut Out, T),
) -> Result<(), Failure> {
    if cli.json {
        out.json(&v);
        return Ok(());
    }
    let t: T = serde_json::from_value(v).map_err(unexpected)?;
    human(out, t);
    Ok(())
}

fn run(cli: &Cli, out: &mut Out) -> Result<(), Failure> {
    let t = Duration::from_secs(cli.timeout);
    let sock = cli.socket.as_path();
    let domid = |d: &DomainArg| resolve(sock, d, t);
    match &cli.cmd {
        Cmd::Status => output(cli, out, call(sock, Op::Status, t)?, print_status),
        Cmd::List => output(cli, out, call(sock, Op::List, t)?, |o, l: Vec<VgpuInfo>| {
            print_vgpus(o, &l)
        }),
        Cmd::Types => output(cli, out, call(sock, Op::Types, t)?, print_types),
        Cmd::Info { domain } => {
            let op = Op::Info {
                domid: domid(domain)?,
            };
            output(cli, out, call(sock, op, t)?, print_info)
        }
        Cmd::Attach { domain, type_name } => {
            let op = Op::Attach {
                domid: domid(domain)?,
                type_name: type_name.clone(),
            };
            output(cli, out, call(sock, op, t)?, |o, v: VgpuInfo| {
                print_vgpus(o, &[v])
            })
        }
        Cmd::Destroy { domain } => {
            let op = Op::Destroy {
                domid: domid(domain)?,
            };
            output(cli, out, call(sock, op, t)?, |o, v: VgpuInfo| {
                o.line(format_args!(
                    "destroyed the vGPU of domain {}{}",
                    v.domid,
                    named(&v)
                ))
            })
        }
        Cmd::ParseConfig { cfg } => {
            let guest = parse_guest(cli, cfg)?;
            let v = serde_json::to_value(&guest).unwrap_or(Value::Null);
            output(cli, out, v, print_guest)
        }
        Cmd::Create { cfg } => create(cli, out, cfg, t),
        Cmd::Screenshot { domain, file } => screenshot(cli, out, domid(domain)?, file, t),
        Cmd::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "xengt-ctl", out.bytes());
            Ok(())
        }
        Cmd::Man { dir } => man(cli, out, dir),
        Cmd::DmHook { args } => {
            let dc = daemon_config(cli)?;
            match dmhook::run(args, &dc, t) {
                Ok(never) => match never {},
                Err(e) => Err(fail(EXIT_FAILED, "dm_hook", format!("dm-hook: {e}"))),
            }
        }
    }
}

fn print_status(out: &mut Out, s: StatusInfo) {
    let known = |v: &str| {
        if v.is_empty() {
            "unknown (older xengtd)".to_string()
        } else {
            v.to_string()
        }
    };
    let rows = [
        ("DAEMON_VERSION", known(&s.daemon_version)),
        ("PROTOCOL", s.version.to_string()),
        ("BACKEND", s.backend.clone()),
        ("UPTIME", uptime(s.uptime_s)),
        ("VGPUS", format!("{} of at most {}", s.vgpus, s.max_vgpus)),
        ("DEFAULT_TYPE", known(&s.default_type)),
        (
            "XENSTORE",
            if s.xenstore {
                "connected"
            } else {
                "not connected"
            }
            .into(),
        ),
        (
            "HOTPLUG",
            if s.hotplug { "active" } else { "inactive" }.into(),
        ),
    ];
    for (k, v) in rows {
        out.line(format_args!("{k:<14}  {v}"));
    }
}

/// `3d 04:05:06`, `04:05:06`.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn print_types(out: &mut Out, l: Vec<TypeInfo>) {
    out.line(format_args!(
        "{:<10}  {:>7}  {:>8}  {:>6}  {:>9}  {:>9}  {:>9}",
        "TYPE", "LOW_MiB", "HIGH_MiB", "FENCES", "EDID", "MAX_MODE", "AVAILABLE"
    ));
    for ty in l {
        let max = if ty.display.has_display {
            format!("{}x{}", ty.display.max_width, ty.display.max_height)
        } else {
            "headless".into()
        };
        out.line(format_args!(
            "{:<10}  {:>7}  {:>8}  {:>6}  {:>9}  {:>9}  {:>9}",
            ty.name,
            ty.low_gm_mib,
            ty.high_gm_mib,
            ty.fences,
            format!("{}x{}", ty.edid[0], ty.edid[1]),
            max,
            ty.available_instances
        ));
    }
}

fn print_info(out: &mut Out, v: VgpuInfo) {
    print_vgpus(out, std::slice::from_ref(&v));
    out.line(format_args!(
        "pci {}  bar0 {:#x}  bar2 {:#x}  origin {}",
        v.pci_slot, v.bar0, v.bar2, v.origin
    ));
    match (&v.plane, &v.plane_error) {
        (Some(p), _) => out.line(format_args!(
            "plane {} {}x{} stride {} {} at ggtt {:#x}",
            p.fourcc, p.width, p.height, p.stride, p.tiling, p.ggtt_offset
        )),
        (None, Some(e)) => out.line(format_args!("plane: none ({e})")),
        (None, None) => {}
    }
    if let Some(c) = &v.counters {
        out.line(format_args!(
            "mmio r/w {}/{}  msi {}  ggtt writes applied {} dropped {}",
            c.vgpu.mmio_reads,
            c.vgpu.mmio_writes,
            c.vgpu.msi_injected,
            c.vgpu.ggtt_writes_applied,
            c.ggtt_writes_dropped
        ));
    }
}

fn print_guest(out: &mut Out, g: xengt::xlcfg::GuestConfig) {
    out.line(format_args!(
        "{} ({:?}, memory {} MiB)",
        g.name,
        g.guest_type,
        g.memory_mib.map_or("?".into(), |m| m.to_string())
    ));
    match g.vgpu {
        Some(r) => out.line(format_args!(
            "vGPU {} : low {} MiB, high {} MiB, {} fences",
            r.type_name.as_deref().unwrap_or("custom"),
            r.low_gm_mib,
            r.high_gm_mib,
            r.fences
        )),
        None => out.line("no vGPU (vgt is not 1)"),
    }
}

/// The PNG travels base64-encoded in the reply (no file is written by the daemon, so
/// no path or permission crosses the socket); the client writes `file`.
fn screenshot(
    cli: &Cli,
    out: &mut Out,
    domid: u16,
    file: &Path,
    t: Duration,
) -> Result<(), Failure> {
    let v = call(&cli.socket, Op::Screenshot { domid }, t)?;
    let shot: ScreenshotInfo = serde_json::from_value(v).map_err(unexpected)?;
    let png = base64_decode(&shot.png_base64).ok_or_else(|| {
        fail(
            EXIT_FAILED,
            "protocol",
            "xengtd sent an image that is not valid base64",
        )
    })?;
    std::fs::write(file, &png).map_err(|e| {
        fail(
            EXIT_FAILED,
            "failed",
            format!("cannot write {}: {e}", file.display()),
        )
    })?;
    if cli.json {
        out.json(&serde_json::json!({
            "file": file.display().to_string(),
            "bytes": png.len(),
            "complete": shot.complete,
            "plane": shot.plane,
        }));
    } else {
        let p = &shot.plane;
        out.line(format_args!(
            "wrote {} ({}x{} {}{})",
            file.display(),
            p.width,
            p.height,
            p.fourcc,
            if shot.complete {
                ""
            } else {
                ", some pages unmapped: shown transparent"
            }
        ));
    }
    Ok(())
}

fn parse_guest(cli: &Cli, cfg: &Path) -> Result<xengt::xlcfg::GuestConfig, Failure> {
    let dc = daemon_config(cli)?;
    xengt::xlcfg::load(cfg, &dc).map_err(|e| fail(EXIT_INPUT, "invalid_input", e.to_string()))
}

fn create(cli: &Cli, out: &mut Out, cfg: &Path, t: Duration) -> Result<(), Failure> {
    let guest = parse_guest(cli, cfg)?;
    if guest.vgpu.is_none() {
        return Err(fail(
            EXIT_INPUT,
            "invalid_input",
            format!(
                "{}: no vgt = 1; nothing for xengtd to do (use plain `xl create`)",
                cfg.display()
            ),
        ));
    }
    let status: StatusInfo =
        serde_json::from_value(call(&cli.socket, Op::Status, t)?).map_err(unexpected)?;
    if status.backend == "sim" {
        let v = call(&cli.socket, Op::Create { config: guest }, t)?;
        return output(cli, out, v, |o, v: VgpuInfo| {
            o.line(format_args!(
                "created simulated domain {}{} with a vGPU",
                v.domid,
                named(&v)
            ));
            print_vgpus(o, &[v]);
        });
    }
    if !status.hotplug {
        return Err(fail(
            EXIT_FAILED,
            "unsupported",
            "xengtd runs without XenStore hotplug; start it with XenStore access",
        ));
    }
    let domid = xl::create(cfg, &guest, t).map_err(|m| fail(EXIT_FAILED, "failed", m))?;
    let v = call(&cli.socket, Op::Info { domid }, t)?;
    output(cli, out, v, |o, v: VgpuInfo| {
        o.line(format_args!(
            "created domain {domid} ({}) with a vGPU",
            guest.name
        ));
        print_vgpus(o, &[v]);
    })
}

/// `xengt-ctl.1` and `xengt-ctl-<sub>.1` for every visible subcommand.
fn man(cli: &Cli, out: &mut Out, dir: &Path) -> Result<(), Failure> {
    let io = |e: std::io::Error| {
        fail(
            EXIT_FAILED,
            "failed",
            format!("cannot write man pages to {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), dir).map_err(io)?;
    let mut pages = vec!["xengt-ctl.1".to_string()];
    pages.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("xengt-ctl-{}.1", s.get_name())),
    );
    if cli.json {
        out.json(&serde_json::json!({"dir": dir.display().to_string(), "pages": pages}));
    } else {
        for p in pages {
            out.line(dir.join(p).display());
        }
    }
    Ok(())
}

/// Whether `--json` is on the command line (before a `--`), for reporting usage errors,
/// which clap finds before there is a [`Cli`].
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let json = json_requested();
            if json && e.use_stderr() {
                let msg = e.render().to_string();
                let msg = msg.trim().trim_start_matches("error: ").to_string();
                let code = out::finish(true, Err(fail(EXIT_USAGE, "usage", msg)));
                std::process::exit(code);
            }
            // Help and version on stdout, errors on stderr; clap does not panic on a
            // closed stream.
            let _ = e.print();
            std::process::exit(e.exit_code());
        }
    };
    let mut out = Out::default();
    let result = run(&cli, &mut out).map(|()| out);
    std::process::exit(out::finish(cli.json, result));
}
