//! The XenStore client: one connection, a reader thread demultiplexing replies and watch
//! events, serialised requests, bounded transaction retries.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::dirpart::{child_name, list_in_parts};
use super::path::{validate_path, validate_token};
use super::wire::{join_fields, parse_error_payload, split_fields, Message, MsgType, WireError};
use super::{WatchEvent, XsErrno, XsError, XsPerm};

/// Default socket of a Debian/upstream xenstored (`/var/run` is a symlink to `/run`).
pub const DEFAULT_SOCKET: &str = "/run/xenstored/socket";
/// The kernel's xenbus device, used when no socket exists (e.g. in a driver domain).
const XENBUS_DEVICE: &str = "/dev/xen/xenbus";
/// How many times [`XsClient::transaction`] runs its closure before giving up on EAGAIN.
pub const MAX_TX_RETRIES: u32 = 16;
/// Watch events kept before the oldest are dropped (callers then rescan; see
/// [`XsClient::dropped_watch_events`]).
const MAX_QUEUED_EVENTS: usize = 4096;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Operations valid both outside and inside a transaction.
pub trait XsOps {
    /// Sends one request (the payload is already NUL-separated) and returns the reply
    /// payload; ERROR replies become [`XsError::Errno`]. `what` names the path for errors.
    fn request(&self, ty: MsgType, payload: Vec<u8>, what: &str) -> Result<Vec<u8>, XsError>;

    /// Reads a value (raw bytes).
    fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        validate_path(path)?;
        self.request(MsgType::Read, join_fields(&[path]), path)
    }

    /// Reads a UTF-8 value; a non-UTF-8 value is a protocol error.
    fn read_string(&self, path: &str) -> Result<String, XsError> {
        String::from_utf8(self.read(path)?)
            .map_err(|_| XsError::Protocol(format!("value of {path} is not UTF-8")))
    }

    /// Reads a UTF-8 value, `None` if the node does not exist.
    fn read_opt(&self, path: &str) -> Result<Option<String>, XsError> {
        match self.read_string(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a value, creating missing parents.
    fn write(&self, path: &str, value: &[u8]) -> Result<(), XsError> {
        validate_path(path)?;
        let mut payload = join_fields(&[path]);
        payload.extend_from_slice(value);
        self.request(MsgType::Write, payload, path).map(drop)
    }

    /// Creates a directory node (no error if it exists).
    fn mkdir(&self, path: &str) -> Result<(), XsError> {
        validate_path(path)?;
        self.request(MsgType::Mkdir, join_fields(&[path]), path)
            .map(drop)
    }

    /// Removes a node and everything below it.
    fn rm(&self, path: &str) -> Result<(), XsError> {
        validate_path(path)?;
        self.request(MsgType::Rm, join_fields(&[path]), path)
            .map(drop)
    }

    /// Lists the children's names. Sends `XS_DIRECTORY`; if the list does not fit one
    /// reply (`E2BIG`), lists it with bounded `XS_DIRECTORY_PART` requests instead (see
    /// the `dirpart` module: at most [`super::MAX_DIRECTORY_BYTES`] of names).
    fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        validate_path(path)?;
        match self.request(MsgType::Directory, join_fields(&[path]), path) {
            Ok(reply) => split_fields(&reply)
                .into_iter()
                .map(|f| child_name(f, path))
                .collect(),
            Err(e) if e.errno() == Some(XsErrno::E2BIG) => list_in_parts(self, path, e),
            Err(e) => Err(e),
        }
    }

    /// Reads the permission list (first entry = owner and default).
    fn get_perms(&self, path: &str) -> Result<Vec<XsPerm>, XsError> {
        validate_path(path)?;
        let reply = self.request(MsgType::GetPerms, join_fields(&[path]), path)?;
        split_fields(&reply)
            .into_iter()
            .map(|f| {
                std::str::from_utf8(f)
                    .ok()
                    .and_then(XsPerm::parse)
                    .ok_or_else(|| XsError::Protocol(format!("bad permission entry for {path}")))
            })
            .collect()
    }

    /// Replaces the permission list.
    fn set_perms(&self, path: &str, perms: &[XsPerm]) -> Result<(), XsError> {
        validate_path(path)?;
        if perms.is_empty() {
            return Err(XsError::InvalidPath(
                path.to_string(),
                "permission list must name an owner",
            ));
        }
        let mut fields = vec![path.to_string()];
        fields.extend(perms.iter().map(XsPerm::to_string));
        self.request(MsgType::SetPerms, join_fields(&fields), path)
            .map(drop)
    }

    /// True if the node exists.
    fn exists(&self, path: &str) -> Result<bool, XsError> {
        match self.read(path) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

type ReplySlot = Result<Message, XsError>;

/// State shared with the reader thread.
#[derive(Debug, Default)]
struct Events {
    queue: Mutex<VecDeque<WatchEvent>>,
    ready: Condvar,
    dropped: AtomicU64,
    closed: AtomicBool,
}

/// Request side: the writer and the reply channel, locked together so that exactly one
/// request is in flight.
struct Channel {
    writer: Box<dyn Write + Send>,
    replies: Receiver<ReplySlot>,
}

/// A XenStore connection. `Sync`: it can be shared between threads; requests are
/// serialised internally. See the module docs for how watch events are delivered.
pub struct XsClient {
    chan: Mutex<Channel>,
    next_req: AtomicU32,
    events: Arc<Events>,
    notify_rx: UnixStream,
    timeout: Duration,
    socket: Option<UnixStream>,
    reader: Option<JoinHandle<()>>,
    endpoint: String,
}

impl std::fmt::Debug for XsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XsClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl XsClient {
    /// Connects like libxenstore: `$XENSTORED_PATH` (socket or device), else
    /// [`DEFAULT_SOCKET`], `/var/run/xenstored/socket`, then `/dev/xen/xenbus`.
    pub fn connect() -> Result<Self, XsError> {
        if let Some(p) = std::env::var_os("XENSTORED_PATH") {
            let p = p.to_string_lossy().into_owned();
            return Self::connect_path(&p);
        }
        let mut last = None;
        for p in [DEFAULT_SOCKET, "/var/run/xenstored/socket", XENBUS_DEVICE] {
            match Self::connect_path(p) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(XsError::Closed))
    }

    /// Connects to a Unix socket, or opens a xenbus character device, at `path`.
    pub fn connect_path(path: &str) -> Result<Self, XsError> {
        let err = |source| XsError::Connect {
            path: path.to_string(),
            cause: source,
        };
        let meta = std::fs::metadata(path).map_err(err)?;
        if meta.file_type().is_char_device() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(err)?;
            let reader = file.try_clone().map_err(err)?;
            Self::start(Box::new(reader), Box::new(file), None, path)
        } else {
            let sock = UnixStream::connect(path).map_err(err)?;
            let reader = sock.try_clone().map_err(err)?;
            let writer = sock.try_clone().map_err(err)?;
            Self::start(Box::new(reader), Box::new(writer), Some(sock), path)
        }
    }

    fn start(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        socket: Option<UnixStream>,
        endpoint: &str,
    ) -> Result<Self, XsError> {
        let io_err = |source| XsError::Connect {
            path: endpoint.to_string(),
            cause: source,
        };
        let (notify_tx, notify_rx) = UnixStream::pair().map_err(io_err)?;
        notify_tx.set_nonblocking(true).map_err(io_err)?;
        notify_rx.set_nonblocking(true).map_err(io_err)?;
        let (reply_tx, replies) = mpsc::channel();
        let events = Arc::new(Events::default());
        let ev = Arc::clone(&events);
        let handle = std::thread::Builder::new()
            .name("xenstore-reader".into())
            .spawn(move || reader_loop(reader, reply_tx, ev, notify_tx))
            .map_err(io_err)?;
        Ok(XsClient {
            chan: Mutex::new(Channel { writer, replies }),
            next_req: AtomicU32::new(1),
            events,
            notify_rx,
            timeout: DEFAULT_TIMEOUT,
            socket,
            reader: Some(handle),
            endpoint: endpoint.to_string(),
        })
    }

    /// Where this client is connected.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Changes the per-request reply timeout (default 30 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn roundtrip(
        &self,
        ty: MsgType,
        tx_id: u32,
        payload: Vec<u8>,
        what: &str,
    ) -> Result<Vec<u8>, XsError> {
        if payload.len() > super::wire::PAYLOAD_MAX {
            return Err(XsError::TooLarge(payload.len()));
        }
        let mut chan = lock(&self.chan);
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let msg = Message::new(ty, req_id, tx_id, payload);
        msg.write_to(&mut chan.writer).map_err(|e| match e {
            WireError::Io(ref io) if io.kind() == io::ErrorKind::BrokenPipe => XsError::Closed,
            other => XsError::Wire(other),
        })?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = match chan.replies.recv_timeout(left) {
                Ok(r) => r?,
                Err(RecvTimeoutError::Timeout) => return Err(XsError::Timeout(self.timeout)),
                Err(RecvTimeoutError::Disconnected) => return Err(XsError::Closed),
            };
            if reply.req_id != req_id {
                // A late reply to a request that timed out earlier: drop it.
                tracing::debug!(got = reply.req_id, want = req_id, "stale xenstore reply");
                continue;
            }
            return match reply.msg_type() {
                Some(MsgType::Error) => Err(XsError::Errno {
                    op: op_name(ty),
                    path: what.to_string(),
                    errno: parse_error_payload(&reply.payload),
                }),
                Some(t) if t == ty => Ok(reply.payload),
                _ => Err(XsError::Protocol(format!(
                    "reply type {} to a {} request",
                    reply.ty,
                    op_name(ty)
                ))),
            };
        }
    }

    /// Registers a watch on `path` (or `@releaseDomain` / `@introduceDomain`). xenstored
    /// fires it once immediately.
    pub fn watch(&self, path: &str, token: &str) -> Result<(), XsError> {
        validate_path(path)?;
        validate_token(token)?;
        self.request(MsgType::Watch, join_fields(&[path, token]), path)
            .map(drop)
    }

    /// Removes a watch.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        validate_path(path)?;
        validate_token(token)?;
        self.request(MsgType::Unwatch, join_fields(&[path, token]), path)
            .map(drop)
    }

    /// The fd to poll for readability: readable while watch events are queued (or after
    /// the connection closed). Nonblocking.
    pub fn watch_fd(&self) -> RawFd {
        self.notify_rx.as_raw_fd()
    }

    /// Drains queued watch events (and the readiness bytes on [`Self::watch_fd`]).
    pub fn take_watch_events(&self) -> Vec<WatchEvent> {
        let mut sink = [0u8; 256];
        while matches!((&self.notify_rx).read(&mut sink), Ok(n) if n > 0) {}
        lock(&self.events.queue).drain(..).collect()
    }

    /// Blocks until at least one watch event is queued or `timeout` passes, then drains.
    pub fn wait_watch_events(&self, timeout: Duration) -> Result<Vec<WatchEvent>, XsError> {
        let deadline = Instant::now() + timeout;
        let mut q = lock(&self.events.queue);
        while q.is_empty() {
            if self.events.closed.load(Ordering::Acquire) {
                return Err(XsError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            q = self
                .events
                .ready
                .wait_timeout(q, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(q);
        Ok(self.take_watch_events())
    }

    /// Events dropped because the queue was full (a consumer should rescan).
    pub fn dropped_watch_events(&self) -> u64 {
        self.events.dropped.load(Ordering::Relaxed)
    }

    /// True once the reader thread saw the connection end.
    pub fn is_closed(&self) -> bool {
        self.events.closed.load(Ordering::Acquire)
    }

    /// `GET_DOMAIN_PATH`.
    pub fn get_domain_path(&self, domid: u32) -> Result<String, XsError> {
        let d = domid.to_string();
        let reply = self.request(MsgType::GetDomainPath, join_fields(&[&d]), &d)?;
        let body = reply.strip_suffix(&[0]).unwrap_or(&reply);
        String::from_utf8(body.to_vec())
            .map_err(|_| XsError::Protocol("non-UTF-8 domain path".into()))
    }

    /// `IS_DOMAIN_INTRODUCED`.
    pub fn is_domain_introduced(&self, domid: u32) -> Result<bool, XsError> {
        let d = domid.to_string();
        let reply = self.request(MsgType::IsDomainIntroduced, join_fields(&[&d]), &d)?;
        match reply.strip_suffix(&[0]).unwrap_or(&reply) {
            b"T" => Ok(true),
            b"F" => Ok(false),
            _ => Err(XsError::Protocol(
                "IS_DOMAIN_INTRODUCED reply not T/F".into(),
            )),
        }
    }

    /// Runs `f` inside a transaction and commits; if xenstored reports a conflict
    /// (`EAGAIN`, at commit or from an operation) the whole closure is run again, at most
    /// [`MAX_TX_RETRIES`] times. An error from `f` aborts the transaction.
    pub fn transaction<T>(
        &self,
        f: impl FnMut(&Transaction<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        self.transaction_with_retries(MAX_TX_RETRIES, f)
    }

    /// [`Self::transaction`] with an explicit attempt bound (at least 1).
    pub fn transaction_with_retries<T>(
        &self,
        attempts: u32,
        mut f: impl FnMut(&Transaction<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let attempts = attempts.max(1);
        for attempt in 1..=attempts {
            let tx = self.tx_start()?;
            let result = f(&tx);
            let outcome = match result {
                Ok(v) => tx.end(true).map(|()| v),
                Err(e) => {
                    if let Err(abort) = tx.end(false) {
                        tracing::debug!(%abort, "transaction abort failed");
                    }
                    Err(e)
                }
            };
            match outcome {
                Err(e) if e.errno() == Some(XsErrno::EAGAIN) => {
                    tracing::debug!(attempt, "xenstore transaction conflict, retrying");
                }
                other => return other,
            }
        }
        Err(XsError::RetriesExhausted(attempts))
    }

    fn tx_start(&self) -> Result<Transaction<'_>, XsError> {
        let reply = self.roundtrip(MsgType::TransactionStart, 0, join_fields(&[""]), "")?;
        let body = reply.strip_suffix(&[0]).unwrap_or(&reply);
        let id = std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|id| *id != 0)
            .ok_or_else(|| XsError::Protocol("bad transaction id".into()))?;
        Ok(Transaction { client: self, id })
    }
}

impl XsOps for XsClient {
    fn request(&self, ty: MsgType, payload: Vec<u8>, what: &str) -> Result<Vec<u8>, XsError> {
        self.roundtrip(ty, 0, payload, what)
    }
}

impl AsFd for XsClient {
    /// The watch readiness fd (see [`XsClient::watch_fd`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.notify_rx.as_fd()
    }
}

impl Drop for XsClient {
    fn drop(&mut self) {
        // Shutting the socket down ends the reader thread. For the xenbus device the thread
        // stays blocked in read() until the process exits (the kernel offers no way out).
        if let Some(s) = &self.socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
            if let Some(h) = self.reader.take() {
                let _ = h.join();
            }
        }
    }
}

/// An open transaction; operations through it carry its id.
#[derive(Debug)]
pub struct Transaction<'a> {
    client: &'a XsClient,
    id: u32,
}

impl Transaction<'_> {
    /// The transaction id xenstored assigned.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn end(&self, commit: bool) -> Result<(), XsError> {
        let flag = if commit { "T" } else { "F" };
        self.client
            .roundtrip(
                MsgType::TransactionEnd,
                self.id,
                join_fields(&[flag]),
                "transaction",
            )
            .map(drop)
    }
}

impl XsOps for Transaction<'_> {
    fn request(&self, ty: MsgType, payload: Vec<u8>, what: &str) -> Result<Vec<u8>, XsError> {
        self.client.roundtrip(ty, self.id, payload, what)
    }
}

fn op_name(ty: MsgType) -> &'static str {
    match ty {
        MsgType::Read => "read",
        MsgType::Write => "write",
        MsgType::Mkdir => "mkdir",
        MsgType::Rm => "rm",
        MsgType::Directory => "directory",
        MsgType::DirectoryPart => "directory_part",
        MsgType::GetPerms => "get_perms",
        MsgType::SetPerms => "set_perms",
        MsgType::Watch => "watch",
        MsgType::Unwatch => "unwatch",
        MsgType::TransactionStart => "transaction_start",
        MsgType::TransactionEnd => "transaction_end",
        MsgType::GetDomainPath => "get_domain_path",
        MsgType::IsDomainIntroduced => "is_domain_introduced",
        _ => "request",
    }
}

fn reader_loop(
    mut reader: Box<dyn Read + Send>,
    replies: Sender<ReplySlot>,
    events: Arc<Events>,
    mut notify: UnixStream,
) {
    loop {
        match Message::read_from(&mut reader) {
            Ok(msg) if msg.msg_type() == Some(MsgType::WatchEvent) => {
                let fields = split_fields(&msg.payload);
                let (Some(path), Some(token)) = (fields.first(), fields.get(1)) else {
                    tracing::warn!("malformed watch event from xenstored ignored");
                    continue;
                };
                let ev = WatchEvent {
                    path: String::from_utf8_lossy(path).into_owned(),
                    token: String::from_utf8_lossy(token).into_owned(),
                };
                let mut q = lock(&events.queue);
                if q.len() >= MAX_QUEUED_EVENTS {
                    q.pop_front();
                    events.dropped.fetch_add(1, Ordering::Relaxed);
                }
                q.push_back(ev);
                drop(q);
                events.ready.notify_all();
                // WouldBlock means the fd is already readable: nothing lost.
                let _ = notify.write(&[1]);
            }
            Ok(msg) => {
                if replies.send(Ok(msg)).is_err() {
                    break;
                }
            }
            Err(e) => {
                let err = match e {
                    WireError::Closed => XsError::Closed,
                    other => XsError::Wire(other),
                };
                tracing::debug!(%err, "xenstore reader stopping");
                events.closed.store(true, Ordering::Release);
                let _ = replies.send(Err(err));
                break;
            }
        }
    }
    events.closed.store(true, Ordering::Release);
    events.ready.notify_all();
    let _ = notify.write(&[1]);
}
