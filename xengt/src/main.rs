//! xengtd: the vGPU mediator daemon.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use xen_backend::ffi::signal::SignalPipe;
use xen_backend::xenstore::XsClient;
use xen_backend::{RealXen, SimXen};
use xengt::config::DaemonConfig;
use xengt::daemon::Daemon;
use xengt::hotplug::Hotplug;
use xengt::mediated::MediatedBackend;
use xengt::server::Server;

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
    let signals = SignalPipe::install().context("installing SIGTERM/SIGINT handlers")?;
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
    let server = Server::new(daemon, hotplug, xs, &cli.control_socket, signals)?;
    server.run()?;
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Some(Command::Demo(_)) => "warn",
        _ => "info",
    };
    let wanted = cli.log.as_deref().unwrap_or(default_level);
    let filter = tracing_subscriber::EnvFilter::try_new(wanted).unwrap_or_else(|e| {
        eprintln!("xengtd: bad --log filter {wanted:?}: {e}; using {default_level}");
        tracing_subscriber::EnvFilter::new(default_level)
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
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
