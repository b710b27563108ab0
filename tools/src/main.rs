//! xengt-ctl: operator CLI for xengtd (JSON control protocol over its Unix socket).
#![forbid(unsafe_code)]

mod client;
mod xl;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::Value;
use xengt::config::DaemonConfig;
use xengt::proto::{base64_decode, Op, ScreenshotInfo, StatusInfo, TypeInfo, VgpuInfo};

use client::{call, CallError};

/// Exit codes: 0 ok, 1 the operation failed, 2 usage (clap), 3 daemon unreachable,
/// 4 invalid input file.
const EXIT_FAILED: i32 = 1;
const EXIT_UNREACHABLE: i32 = 3;
const EXIT_INPUT: i32 = 4;

#[derive(Debug, Parser)]
#[command(name = "xengt-ctl", version, about = "Control xengtd vGPUs")]
struct Cli {
    /// xengtd control socket.
    #[arg(long, global = true, default_value = "/run/xengt/xengtd.sock")]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Daemon config used to validate guest configs locally (defaults: built-in types).
    #[arg(long, global = true)]
    daemon_config: Option<PathBuf>,
    /// Seconds to wait for xengtd.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List vGPUs.
    List,
    /// List vGPU types and free instances.
    Types,
    /// Show one vGPU.
    Info {
        /// Guest domain id.
        domid: u16,
    },
    /// Create a guest from an xl config with `vgt = 1` (sim: inside xengtd).
    Create {
        /// xl config file.
        cfg: PathBuf,
    },
    /// Give an existing domain a vGPU.
    Attach {
        /// Guest domain id.
        domid: u16,
        /// vGPU type (default: the daemon's default type).
        #[arg(long = "type")]
        type_name: Option<String>,
    },
    /// Destroy a vGPU.
    Destroy {
        /// Guest domain id.
        domid: u16,
    },
    /// Parse and validate an xl config; print the vGPU request (dry run).
    ParseConfig {
        /// xl config file.
        cfg: PathBuf,
    },
    /// Save the guest's display as PNG.
    Screenshot {
        /// Guest domain id.
        domid: u16,
        /// Output file.
        file: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

struct Failure {
    code: i32,
    msg: String,
}

fn fail(code: i32, msg: impl Into<String>) -> Failure {
    Failure {
        code,
        msg: msg.into(),
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Connect(m) => fail(EXIT_UNREACHABLE, m),
            CallError::Daemon(b) => fail(
                EXIT_FAILED,
                format!(
                    "{} ({})",
                    b.message,
                    serde_json::to_value(b.code)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ),
            ),
            CallError::Protocol(m) => fail(EXIT_FAILED, m),
        }
    }
}

fn daemon_config(cli: &Cli) -> Result<DaemonConfig, Failure> {
    match &cli.daemon_config {
        Some(p) => DaemonConfig::load(p).map_err(|e| fail(EXIT_INPUT, e.to_string())),
        None => Ok(DaemonConfig::default()),
    }
}

fn print_vgpus(list: &[VgpuInfo]) {
    println!(
        "{:>6}  {:<10}  {:<10}  {:>10} {:>8}  {:>10} {:>8}  {:>7}  {:>6}",
        "DOMID",
        "TYPE",
        "STATE",
        "LOW_BASE",
        "LOW_MiB",
        "HIGH_BASE",
        "HIGH_MiB",
        "FENCES",
        "SERVER"
    );
    for v in list {
        println!(
            "{:>6}  {:<10}  {:<10}  {:>#10x} {:>8}  {:>#10x} {:>8}  {:>3}+{:<3}  {:>6}",
            v.domid,
            v.type_name.as_deref().unwrap_or("custom"),
            v.state,
            v.low_gm.base,
            v.low_gm.size >> 20,
            v.high_gm.base,
            v.high_gm.size >> 20,
            v.fence_base,
            v.fence_count,
            v.server_id
        );
    }
}

fn output<T: serde::de::DeserializeOwned>(
    json: bool,
    v: Value,
    human: impl FnOnce(T),
) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let t: T = serde_json::from_value(v)
        .map_err(|e| fail(EXIT_FAILED, format!("unexpected reply from xengtd: {e}")))?;
    human(t);
    Ok(())
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let t = Duration::from_secs(cli.timeout);
    let sock = cli.socket.as_path();
    match &cli.cmd {
        Cmd::List => output(cli.json, call(sock, Op::List, t)?, |l: Vec<VgpuInfo>| {
            print_vgpus(&l)
        }),
        Cmd::Types => output(cli.json, call(sock, Op::Types, t)?, |l: Vec<TypeInfo>| {
            println!(
                "{:<10}  {:>7}  {:>8}  {:>6}  {:>9}  {:>9}  {:>9}",
                "TYPE", "LOW_MiB", "HIGH_MiB", "FENCES", "EDID", "MAX_MODE", "AVAILABLE"
            );
            for ty in l {
                let max = if ty.display.has_display {
                    format!("{}x{}", ty.display.max_width, ty.display.max_height)
                } else {
                    "headless".into()
                };
                println!(
                    "{:<10}  {:>7}  {:>8}  {:>6}  {:>9}  {:>9}  {:>9}",
                    ty.name,
                    ty.low_gm_mib,
                    ty.high_gm_mib,
                    ty.fences,
                    format!("{}x{}", ty.edid[0], ty.edid[1]),
                    max,
                    ty.available_instances
                );
            }
        }),
        Cmd::Info { domid } => output(
            cli.json,
            call(sock, Op::Info { domid: *domid }, t)?,
            |v: VgpuInfo| {
                print_vgpus(std::slice::from_ref(&v));
                println!(
                    "pci {}  bar0 {:#x}  bar2 {:#x}  origin {}",
                    v.pci_slot, v.bar0, v.bar2, v.origin
                );
                match (&v.plane, &v.plane_error) {
                    (Some(p), _) => println!(
                        "plane {} {}x{} stride {} {} at ggtt {:#x}",
                        p.fourcc, p.width, p.height, p.stride, p.tiling, p.ggtt_offset
                    ),
                    (None, Some(e)) => println!("plane: none ({e})"),
                    (None, None) => {}
                }
                if let Some(c) = &v.counters {
                    println!(
                        "mmio r/w {}/{}  msi {}  ggtt writes applied {} dropped {}",
                        c.vgpu.mmio_reads,
                        c.vgpu.mmio_writes,
                        c.vgpu.msi_injected,
                        c.vgpu.ggtt_writes_applied,
                        c.ggtt_writes_dropped
                    );
                }
            },
        ),
        Cmd::Attach { domid, type_name } => output(
            cli.json,
            call(
                sock,
                Op::Attach {
                    domid: *domid,
                    type_name: type_name.clone(),
                },
                t,
            )?,
            |v: VgpuInfo| print_vgpus(&[v]),
        ),
        Cmd::Destroy { domid } => output(
            cli.json,
            call(sock, Op::Destroy { domid: *domid }, t)?,
            |v: VgpuInfo| println!("destroyed the vGPU of domain {}", v.domid),
        ),
        Cmd::ParseConfig { cfg } => {
            let guest = parse_guest(cli, cfg)?;
            let v = serde_json::to_value(&guest).unwrap_or(Value::Null);
            output(cli.json, v, |g: xengt::xlcfg::GuestConfig| {
                println!(
                    "{} ({:?}, memory {} MiB)",
                    g.name,
                    g.guest_type,
                    g.memory_mib.map_or("?".into(), |m| m.to_string())
                );
                match g.vgpu {
                    Some(r) => println!(
                        "vGPU {} : low {} MiB, high {} MiB, {} fences",
                        r.type_name.as_deref().unwrap_or("custom"),
                        r.low_gm_mib,
                        r.high_gm_mib,
                        r.fences
                    ),
                    None => println!("no vGPU (vgt is not 1)"),
                }
            })
        }
        Cmd::Create { cfg } => create(cli, cfg, t),
        Cmd::Screenshot { domid, file } => screenshot(cli, *domid, file, t),
        Cmd::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "xengt-ctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// The PNG travels base64-encoded in the reply (no file is written by the daemon, so
/// no path or permission crosses the socket); the client writes `file`.
fn screenshot(cli: &Cli, domid: u16, file: &Path, t: Duration) -> Result<(), Failure> {
    let v = call(&cli.socket, Op::Screenshot { domid }, t)?;
    let shot: ScreenshotInfo = serde_json::from_value(v)
        .map_err(|e| fail(EXIT_FAILED, format!("unexpected reply from xengtd: {e}")))?;
    let png = base64_decode(&shot.png_base64)
        .ok_or_else(|| fail(EXIT_FAILED, "xengtd sent an image that is not valid base64"))?;
    std::fs::write(file, &png)
        .map_err(|e| fail(EXIT_FAILED, format!("cannot write {}: {e}", file.display())))?;
    if cli.json {
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "bytes": png.len(),
            "complete": shot.complete,
            "plane": shot.plane,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let p = &shot.plane;
        println!(
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
        );
    }
    Ok(())
}

fn parse_guest(cli: &Cli, cfg: &Path) -> Result<xengt::xlcfg::GuestConfig, Failure> {
    let dc = daemon_config(cli)?;
    xengt::xlcfg::load(cfg, &dc).map_err(|e| fail(EXIT_INPUT, e.to_string()))
}

fn create(cli: &Cli, cfg: &Path, t: Duration) -> Result<(), Failure> {
    let guest = parse_guest(cli, cfg)?;
    if guest.vgpu.is_none() {
        return Err(fail(
            EXIT_INPUT,
            format!(
                "{}: no vgt = 1; nothing for xengtd to do (use plain `xl create`)",
                cfg.display()
            ),
        ));
    }
    let status: StatusInfo = serde_json::from_value(call(&cli.socket, Op::Status, t)?)
        .map_err(|e| fail(EXIT_FAILED, format!("unexpected status reply: {e}")))?;
    if status.backend == "sim" {
        return output(
            cli.json,
            call(&cli.socket, Op::Create { config: guest }, t)?,
            |v: VgpuInfo| {
                println!("created simulated domain {} with a vGPU", v.domid);
                print_vgpus(&[v]);
            },
        );
    }
    if !status.hotplug {
        return Err(fail(
            EXIT_FAILED,
            "xengtd runs without XenStore hotplug; start it with XenStore access",
        ));
    }
    let domid = xl::create(cfg, &guest, t).map_err(|m| fail(EXIT_FAILED, m))?;
    output(
        cli.json,
        call(&cli.socket, Op::Info { domid }, t)?,
        |v: VgpuInfo| {
            println!("created domain {domid} ({}) with a vGPU", guest.name);
            print_vgpus(&[v]);
        },
    )
}

fn main() {
    let cli = Cli::parse();
    if let Err(f) = run(&cli) {
        eprintln!("xengt-ctl: error: {}", f.msg);
        std::process::exit(f.code);
    }
}
