//! xengtd: the vGPU mediator daemon.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tracing_subscriber::prelude::*;
use xen_backend::xenstore::XsClient;
use xen_backend::{RealXen, SimXen};
use xengt::config::DaemonConfig;
use xengt::daemon::Daemon;
use xengt::hotplug::Hotplug;
use xengt::mediated::MediatedBackend;
use xengt::server::{install_signals, Server};

/// Default control socket.
const DEFAULT_SOCKET: &str = "/run/xengt/xengtd.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// Real Xen (ioreq servers through libxendevicemodel).
    Xen,
    /// Simulated Xen inside the daemon: the same mediated device path as `xen`; `attach`
    /// and `create` start simulated HVM domains.
    Sim,
}

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogTarget {
    /// journald when stderr is connected to the journal (systemd's `JOURNAL_STREAM`),
    /// otherwise stderr.
    Auto,
    /// The systemd journal, with syslog priorities (`journalctl -p warning` works).
    Journald,
    /// Plain text on stderr.
    Stderr,
}

#[derive(Debug, Parser)]
#[command(name = "xengtd", version, about = "XenGT-style vGPU mediator daemon")]
struct Cli {
    /// Hypervisor backend.
    #[arg(long, value_enum, default_value = "xen")]
    backend: BackendKind,
    /// Control socket (created mode 0600).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// Daemon configuration (JSON); built-in defaults if omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax, e.g. `info,xengt=debug`); default `info`
    /// for the daemon and `warn` for the demo (whose progress lines are the output).
    #[arg(long)]
    log: Option<String>,
    /// Where logs go.
    #[arg(long, value_enum, default_value = "auto")]
    log_target: LogTarget,
    /// XenStore: `auto` (required with xen; with sim only if XENSTORED_PATH is set),
    /// `none`, or a socket/device path.
    #[arg(long, default_value = "auto")]
    xenstore: String,
    /// Write every guest MMIO/config access to FILE in the replay-fixture format
    /// (`mediator/tests/fixtures/*.trace`), for capturing a real driver's probe. A `%d` in
    /// FILE gives one file per domain (replaced by the domain id).
    #[arg(long, value_name = "FILE")]
    mmio_trace: Option<PathBuf>,
    /// Most access lines `--mmio-trace` writes (the guest decides how many it makes).
    #[arg(long, default_value_t = 200_000)]
    mmio_trace_max: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// The end-to-end demo on the simulated Xen and the software Gen9 engine.
    Demo(xengt::demo::DemoArgs),
    /// Write the man pages (xengtd.8, xengtd-run.8, xengtd-demo.8) into DIR.
    #[command(hide = true)]
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

fn connect_xenstore(cli: &Cli) -> anyhow::Result<Option<Arc<XsClient>>> {
    let c = match (cli.xenstore.as_str(), cli.backend) {
        ("none", _) => None,
        ("auto", BackendKind::Sim) if std::env::var_os("XENSTORED_PATH").is_none() => None,
        ("auto", _) => Some(XsClient::connect().context(
            "connecting to xenstored (use --xenstore PATH, or --xenstore none with --backend sim)",
        )?),
        (path, _) => Some(
            XsClient::connect_path(path)
                .with_context(|| format!("connecting to xenstored at {path}"))?,
        ),
    };
    Ok(c.map(Arc::new))
}

fn make_backend(kind: BackendKind, cfg: &DaemonConfig) -> anyhow::Result<MediatedBackend> {
    match kind {
        BackendKind::Sim => Ok(MediatedBackend::with_sim(SimXen::new(), cfg)?),
        BackendKind::Xen => {
            let hv = RealXen::open()
                .context("opening the Xen libraries (is this a Xen dom0? try --backend sim)")?;
            Ok(MediatedBackend::new("xen", Arc::new(hv), cfg)?)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let cfg = match &cli.config {
        Some(p) => DaemonConfig::load(p)?,
        None => DaemonConfig::default(),
    };
    let mut backend = make_backend(cli.backend, &cfg)?;
    if let Some(path) = &cli.mmio_trace {
        let sink = xengt::mmio_trace::TraceSink::open(path, cli.mmio_trace_max)
            .with_context(|| format!("creating the MMIO trace {}", path.display()))?;
        backend.set_mmio_trace(sink);
    }
    let xs = connect_xenstore(cli)?;
    let signals = install_signals().context("installing SIGTERM/SIGINT/SIGHUP handlers")?;
    let mut daemon = Daemon::new(cfg, backend, xs.clone());
    for line in daemon.resume() {
        eprintln!("xengtd: {line}");
    }
    let hotplug = match &xs {
        Some(xs) => {
            let mut hp = Hotplug::start(&mut daemon, xs).context("registering XenStore watches")?;
            hp.rescan(&mut daemon, xs);
            Some(hp)
        }
        None => {
            tracing::info!("no XenStore: hotplug disabled, control socket only");
            None
        }
    };
    let server = Server::new(
        daemon,
        hotplug,
        xs,
        &cli.control_socket,
        signals,
        cli.config.clone(),
    )?;
    server.run()?;
    Ok(())
}

/// True when stderr is the journal stream systemd connected us to (`JOURNAL_STREAM` is
/// `DEV:INODE` of that stream, see systemd.exec(5)).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    want.to_str() == Some(format!("{}:{}", meta.dev(), meta.ino()).as_str())
}

fn init_logging(cli: &Cli) {
    let default_level = match cli.command {
        Some(Command::Demo(_)) => "warn",
        _ => "info",
    };
    let wanted = cli.log.as_deref().unwrap_or(default_level);
    let filter = tracing_subscriber::EnvFilter::try_new(wanted).unwrap_or_else(|e| {
        eprintln!("xengtd: bad --log filter {wanted:?}: {e}; using {default_level}");
        tracing_subscriber::EnvFilter::new(default_level)
    });
    let journald = match cli.log_target {
        LogTarget::Stderr => false,
        LogTarget::Journald => true,
        LogTarget::Auto => stderr_is_journal(),
    };
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer.with_syslog_identifier("xengtd".into()))
                    .init();
                return;
            }
            Err(e) => eprintln!("xengtd: cannot log to journald ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Man pages from the clap definitions: the command and each visible subcommand.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![(String::from("xengtd"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("xengtd-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.8"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .section("8")
            .render(&mut out)
            .with_context(|| format!("rendering {name}.8"))?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let result = match cli.command {
        Some(Command::Man { ref dir }) => write_man_pages(dir),
        None | Some(Command::Run) => run(&cli),
        Some(Command::Demo(ref a)) => xengt::demo::run(a)
            .map_err(anyhow::Error::from)
            .and_then(|r| r.passed.then_some(()).context("demo failed")),
    };
    if let Err(e) = result {
        eprintln!("xengtd: error: {e:#}");
        std::process::exit(1);
    }
}
