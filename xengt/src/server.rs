//! The daemon's single `mio` event loop: the control socket and its clients, the XenStore
//! watch fd, each vGPU's device fd, the signal self-pipe; the poll timeout is the next
//! vGPU timer deadline (display vblank), at most 1 s for hotplug timeouts. SIGTERM/SIGINT
//! tear every vGPU (and its ioreq server) down, mark hotplugged devices Closed in
//! XenStore, remove the persisted records and the socket. SIGHUP reloads the daemon
//! config (see [`Daemon::reload`]). Losing the XenStore connection is fatal: the loop tears
//! the vGPUs down and returns [`ServerError::XenStoreLost`], so the process exits non-zero
//! and systemd's `Restart=on-failure` applies. Readiness, reloads and stopping are told to
//! systemd with `sd_notify` (a no-op when `NOTIFY_SOCKET` is unset).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use xen_backend::xenstore::XsClient;

use crate::config::DaemonConfig;
use crate::daemon::Daemon;
use crate::hotplug::Hotplug;
use crate::proto::{self, ErrorBody, ErrorCode, Response, PROTO_VERSION};

const LISTENER: Token = Token(0);
const XENSTORE: Token = Token(1);
const SIGNALS: Token = Token(2);
const DEVICE_BASE: usize = 0x1_0000;
const CONN_BASE: usize = 0x10_0000;
const MAX_CONNS: usize = 64;
/// Longest sleep of the loop (hotplug timeouts are checked at least this often).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Event-loop errors.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Socket setup or polling failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        cause: io::Error,
    },
    /// The XenStore connection closed under the daemon (xenstored died or restarted).
    #[error(
        "lost the connection to xenstored; the vGPUs were torn down (restart xengtd once \
         xenstored is back)"
    )]
    XenStoreLost,
}

/// The signals the loop handles: SIGTERM/SIGINT stop it, SIGHUP reloads the config.
pub fn install_signals() -> io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

/// Tells systemd (when it started us with `Type=notify`) about a state change.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(%e, "sd_notify failed");
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io {
        what,
        cause: source,
    }
}

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    close_after_flush: bool,
}

/// Everything the loop owns.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    socket_path: PathBuf,
    daemon: Daemon,
    hotplug: Option<Hotplug>,
    xs: Option<Arc<XsClient>>,
    signals: Signals,
    config_path: Option<PathBuf>,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    devices: BTreeMap<u16, RawFd>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket_path)
            .finish_non_exhaustive()
    }
}

/// Creates the control socket (parent dir 0700 if created, socket 0600); a stale socket
/// left by a dead daemon is replaced, a live one is an error.
pub fn bind_control_socket(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::Io {
                what: format!(
                    "{} exists and is not a socket; remove it or pick another --control-socket",
                    path.display()
                ),
                cause: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::Io {
                what: format!("another xengtd is listening on {}", path.display()),
                cause: io::Error::from(io::ErrorKind::AddrInUse),
            });
        }
        std::fs::remove_file(path).map_err(io_err(format!("remove stale {}", path.display())))?;
    }
    let l = UnixListener::bind(path).map_err(io_err(format!("bind {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod 0600 {}", path.display())))?;
    Ok(l)
}

impl Server {
    /// Sets the loop up. `hotplug` needs `xs`; `config_path` is the file SIGHUP reloads
    /// (`None`: the built-in defaults, nothing to reload).
    pub fn new(
        daemon: Daemon,
        hotplug: Option<Hotplug>,
        xs: Option<Arc<XsClient>>,
        socket_path: &Path,
        mut signals: Signals,
        config_path: Option<PathBuf>,
    ) -> Result<Self, ServerError> {
        let poll = Poll::new().map_err(io_err("create poll"))?;
        let mut listener = bind_control_socket(socket_path)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("register listener"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(io_err("register signals"))?;
        if let Some(xs) = &xs {
            poll.registry()
                .register(&mut SourceFd(&xs.watch_fd()), XENSTORE, Interest::READABLE)
                .map_err(io_err("register xenstore"))?;
        }
        Ok(Server {
            poll,
            listener,
            socket_path: socket_path.to_path_buf(),
            daemon,
            hotplug,
            xs,
            signals,
            config_path,
            conns: HashMap::new(),
            next_conn: CONN_BASE,
            devices: BTreeMap::new(),
        })
    }

    /// Runs until SIGTERM/SIGINT, then shuts down cleanly; returns
    /// [`ServerError::XenStoreLost`] (after tearing the vGPUs down) if xenstored goes away.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(64);
        tracing::info!(socket = %self.socket_path.display(), "xengtd ready");
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status_line())]);
        let mut lost_xenstore = false;
        loop {
            let timeout = self
                .daemon
                .next_deadline()
                .map_or(HOUSEKEEPING, |d| d.min(HOUSEKEEPING));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("poll")(e)),
            }
            let mut stop = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    SIGNALS => {
                        let sigs: Vec<i32> = self.signals.pending().collect();
                        if sigs.contains(&SIGHUP) {
                            self.reload();
                        }
                        if sigs.iter().any(|s| *s == SIGTERM || *s == SIGINT) {
                            tracing::info!(?sigs, "termination signal; shutting down");
                            stop = true;
                        }
                    }
                    XENSTORE => {
                        if !self.xenstore_ready() {
                            lost_xenstore = true;
                            stop = true;
                        }
                    }
                    Token(t) if (DEVICE_BASE..CONN_BASE).contains(&t) => {
                        if let Ok(domid) = u16::try_from(t - DEVICE_BASE) {
                            self.daemon.service(domid);
                        }
                    }
                    Token(t) => self.conn_ready(t),
                }
            }
            if stop {
                break;
            }
            // vGPU timers (vblank): cheap when nothing is due.
            self.daemon.tick();
            if let (Some(hp), Some(xs)) = (self.hotplug.as_mut(), self.xs.as_ref()) {
                hp.tick(&mut self.daemon, xs);
            }
            self.sync_devices();
        }
        notify(&[NotifyState::Stopping]);
        if lost_xenstore {
            // Nothing can be written to XenStore any more: tear the ioreq servers down
            // and leave the records for the restarted daemon.
            let n = self.daemon.vgpus().len();
            self.daemon.destroy_all();
            let _ = std::fs::remove_file(&self.socket_path);
            tracing::error!(destroyed = n, "xenstore connection lost; exiting");
            return Err(ServerError::XenStoreLost);
        }
        self.shutdown();
        Ok(())
    }

    /// One line for `systemctl status`.
    fn status_line(&self) -> String {
        format!(
            "{} vGPU(s), hotplug {}",
            self.daemon.vgpus().len(),
            if self.hotplug.is_some() { "on" } else { "off" }
        )
    }

    /// SIGHUP: re-reads the config file; a file that does not load, or that changes what
    /// cannot change while the daemon runs, is refused and the running config is kept.
    fn reload(&mut self) {
        notify(&[NotifyState::Reloading]);
        match &self.config_path {
            None => tracing::warn!("SIGHUP: no --config file was given; nothing to reload"),
            Some(path) => match DaemonConfig::load(path) {
                Err(e) => tracing::error!("SIGHUP: {e}; keeping the running config"),
                Ok(cfg) => match self.daemon.reload(cfg) {
                    Ok(changed) => tracing::info!(
                        config = %path.display(),
                        changed = %changed.join(", "),
                        "SIGHUP: config reloaded"
                    ),
                    Err(e) => tracing::error!(
                        config = %path.display(),
                        "SIGHUP: {}; keeping the running config",
                        e.message
                    ),
                },
            },
        }
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status_line())]);
    }

    /// Handles XenStore watch events; false when the connection is gone.
    fn xenstore_ready(&mut self) -> bool {
        let Some(xs) = self.xs.clone() else {
            return true;
        };
        let evs = xs.take_watch_events();
        if xs.is_closed() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&xs.watch_fd()));
            self.hotplug = None;
            self.daemon.hotplug_active = false;
            return false;
        }
        if let Some(hp) = self.hotplug.as_mut() {
            hp.on_events(&mut self.daemon, &xs, &evs);
        }
        true
    }

    /// Keeps device fd registrations in step with the live vGPUs.
    fn sync_devices(&mut self) {
        let want: BTreeMap<u16, RawFd> = self
            .daemon
            .vgpus()
            .values()
            .filter_map(|v| v.poll_fd.map(|fd| (v.domid, fd)))
            .collect();
        let stale: Vec<(u16, RawFd)> = self
            .devices
            .iter()
            .filter(|(d, fd)| want.get(d) != Some(fd))
            .map(|(d, fd)| (*d, *fd))
            .collect();
        for (d, fd) in stale {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            self.devices.remove(&d);
        }
        for (d, fd) in want {
            if let std::collections::btree_map::Entry::Vacant(e) = self.devices.entry(d) {
                let tok = Token(DEVICE_BASE + usize::from(d));
                if self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&fd), tok, Interest::READABLE)
                    .is_ok()
                {
                    e.insert(fd);
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNS {
                        tracing::warn!("too many control connections; refusing one");
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn = self.next_conn.checked_add(1).unwrap_or(CONN_BASE);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(id), Interest::READABLE)
                        .is_ok()
                    {
                        self.conns.insert(
                            id,
                            Conn {
                                stream,
                                inbuf: Vec::new(),
                                outbuf: Vec::new(),
                                close_after_flush: false,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(%e, "accept failed");
                    return;
                }
            }
        }
    }

    fn conn_ready(&mut self, id: usize) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        let mut eof = false;
        let mut buf = [0u8; 8192];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => conn
                    .inbuf
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        match proto::take_lines(&mut conn.inbuf) {
            Ok(lines) => {
                for line in lines {
                    let resp = self.execute(&line);
                    conn.outbuf.extend_from_slice(&proto::encode_line(&resp));
                }
            }
            Err(e) => {
                let resp = Response::from_result(
                    0,
                    Err(ErrorBody::new(ErrorCode::BadRequest, e.to_string())),
                );
                conn.outbuf.extend_from_slice(&proto::encode_line(&resp));
                conn.inbuf.clear();
                conn.close_after_flush = true;
            }
        }
        if eof && !conn.inbuf.is_empty() {
            tracing::info!(
                bytes = conn.inbuf.len(),
                "control peer disconnected mid-request; request discarded"
            );
        }
        let flushed = flush(&mut conn);
        if eof || (conn.close_after_flush && flushed) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            return;
        }
        let interest = if flushed {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let _ = self
            .poll
            .registry()
            .reregister(&mut conn.stream, Token(id), interest);
        self.conns.insert(id, conn);
    }

    fn execute(&mut self, line: &[u8]) -> Response {
        let req = match proto::decode_request(line) {
            Ok(r) => r,
            Err(e) => {
                return Response::from_result(
                    0,
                    Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        format!("{e} (expected one JSON request per line, see xengt/src/proto.rs)"),
                    )),
                );
            }
        };
        if req.version != PROTO_VERSION {
            return Response::from_result(
                req.id,
                Err(ErrorBody::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "this xengtd speaks protocol version {PROTO_VERSION}, request has {}",
                        req.version
                    ),
                )),
            );
        }
        tracing::debug!(?req.op, "control request");
        Response::from_result(req.id, self.daemon.handle(req.op))
    }

    fn shutdown(&mut self) {
        if let (Some(hp), Some(xs)) = (self.hotplug.as_ref(), self.xs.as_ref()) {
            hp.close_all(&self.daemon, xs);
        }
        let n = self.daemon.vgpus().len();
        self.daemon.destroy_all();
        let _ = std::fs::remove_file(&self.socket_path);
        tracing::info!(destroyed = n, "xengtd stopped; all ioreq servers torn down");
    }
}

/// Writes as much of the out buffer as the socket takes; true when empty.
fn flush(conn: &mut Conn) -> bool {
    while !conn.outbuf.is_empty() {
        match conn.stream.write(&conn.outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                conn.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
