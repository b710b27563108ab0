//! An in-process XenStore server speaking the real wire protocol over a Unix socket, for
//! tests of anything that talks to xenstored (the client here, the daemon's hotplug code).
//!
//! Semantics follow cxenstored where tests can observe them: implicit parents, recursive
//! `rm`, permission inheritance, watches firing on registration and for the node and its
//! descendants (and for descendants of a removed node), `@releaseDomain` /
//! `@introduceDomain`. Transactions work on a snapshot of the whole tree and commit only
//! if no other commit happened meanwhile, else `EAGAIN` (coarser than cxenstored, which
//! compares per node, so it produces *more* conflicts — fine for tests).
//! [`TestServer::force_conflicts`] makes the next commits fail with `EAGAIN` on purpose.
//! `XS_DIRECTORY` answers `E2BIG` over 4096 bytes and `XS_DIRECTORY_PART` pages the child
//! list with per-node generation counts, as cxenstored does;
//! [`TestServer::write_after_next_directory_part`] changes a directory mid-listing.
//! Every connection is dom0: permissions are stored and reported but not enforced.

mod tree;

use std::collections::{BTreeSet, HashMap};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::wire::{join_fields, split_fields, Message, MsgType, PAYLOAD_MAX};
use super::{XsErrno, XsPerm};
use tree::{Change, Tree};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Tx {
    conn: u64,
    base_gen: u64,
    tree: Tree,
    changes: Vec<Change>,
}

#[derive(Debug)]
struct Watch {
    conn: u64,
    path: String,
    token: String,
}

#[derive(Debug, Default)]
struct State {
    tree: Tree,
    generation: u64,
    txs: HashMap<u32, Tx>,
    next_tx: u32,
    watches: Vec<Watch>,
    conns: HashMap<u64, Arc<Mutex<UnixStream>>>,
    forced_conflicts: u32,
    introduced: BTreeSet<u32>,
    commits: u64,
    conflicts: u64,
    directory_parts: u64,
    directory_part_starts: u64,
    write_after_part: Option<String>,
}

/// Counters a test can assert on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Successful transaction commits.
    pub commits: u64,
    /// Commits refused with EAGAIN.
    pub conflicts: u64,
    /// Open connections.
    pub connections: usize,
    /// Registered watches.
    pub watches: usize,
    /// `DIRECTORY_PART` requests answered.
    pub directory_parts: u64,
    /// Of those, the ones at offset 0 (a listing started or restarted).
    pub directory_part_starts: u64,
}

/// A running test server; stops (and removes its socket) on drop.
#[derive(Debug)]
pub struct TestServer {
    dir: PathBuf,
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

static SERVER_SEQ: AtomicU64 = AtomicU64::new(0);

impl TestServer {
    /// Starts a server on a fresh socket in the temp directory. dom0 is introduced.
    pub fn start() -> std::io::Result<Self> {
        let seq = SERVER_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xs-test-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("socket");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        let state = Arc::new(Mutex::new(State::default()));
        {
            let mut st = lock(&state);
            st.introduced.insert(0);
            st.tree.write("/local/domain/0/name", b"Domain-0");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let accept = std::thread::Builder::new()
            .name("xs-test-accept".into())
            .spawn(move || accept_loop(listener, st, sp))?;
        Ok(TestServer {
            dir,
            socket,
            state,
            stop,
            accept: Some(accept),
        })
    }

    /// The socket path (set `XENSTORED_PATH` to it or use `XsClient::connect_path`).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Makes the next `n` transaction commits fail with `EAGAIN`.
    pub fn force_conflicts(&self, n: u32) {
        lock(&self.state).forced_conflicts = n;
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        let st = lock(&self.state);
        ServerStats {
            commits: st.commits,
            conflicts: st.conflicts,
            connections: st.conns.len(),
            watches: st.watches.len(),
            directory_parts: st.directory_parts,
            directory_part_starts: st.directory_part_starts,
        }
    }

    /// Right after answering the next `DIRECTORY_PART` (outside a transaction), writes an
    /// empty value at `path`, as a concurrent writer would: if `path` is a new child of
    /// the directory being listed, the generation changes mid-listing.
    pub fn write_after_next_directory_part(&self, path: &str) {
        lock(&self.state).write_after_part = Some(path.to_string());
    }

    /// Simulates the toolstack introducing a domain (creates `/local/domain/<domid>`,
    /// fires `@introduceDomain`).
    pub fn introduce_domain(&self, domid: u32) {
        let mut st = lock(&self.state);
        st.introduced.insert(domid);
        let ch = st.tree.mkdir(&format!("/local/domain/{domid}"));
        st.generation += 1;
        fire(&st, &ch);
        fire_special(&st, "@introduceDomain");
    }

    /// Simulates a domain dying: removes `/local/domain/<domid>` and fires `@releaseDomain`.
    pub fn release_domain(&self, domid: u32) {
        let mut st = lock(&self.state);
        st.introduced.remove(&domid);
        if let Ok(ch) = st.tree.rm(&format!("/local/domain/{domid}")) {
            st.generation += 1;
            fire(&st, &ch);
        }
        fire_special(&st, "@releaseDomain");
    }

    /// Direct read of a value, bypassing the protocol (for assertions).
    pub fn peek(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .tree
            .get(path)
            .ok()
            .map(|n| n.value.clone())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop, then close every connection.
        let _ = UnixStream::connect(&self.socket);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for c in lock(&self.state).conns.values() {
            let _ = lock(c).shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn accept_loop(listener: UnixListener, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let mut next_conn = 1u64;
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(writer) = stream.try_clone() else {
            continue;
        };
        let id = next_conn;
        next_conn += 1;
        lock(&state).conns.insert(id, Arc::new(Mutex::new(writer)));
        let st = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name(format!("xs-test-conn-{id}"))
            .spawn(move || conn_loop(stream, id, st));
        if spawned.is_err() {
            lock(&state).conns.remove(&id);
        }
    }
}

fn conn_loop(mut stream: UnixStream, id: u64, state: Arc<Mutex<State>>) {
    // Any read error (EOF, oversize payload, garbage length) drops the connection, as
    // xenstored does.
    while let Ok(msg) = Message::read_from(&mut stream) {
        let mut st = lock(&state);
        let (ty, payload, changes) = handle(&mut st, id, &msg);
        if let Some(w) = st.conns.get(&id) {
            let reply = Message {
                ty,
                req_id: msg.req_id,
                tx_id: msg.tx_id,
                payload,
            };
            let _ = reply.write_to(&mut *lock(w));
        }
        fire(&st, &changes);
        if ty == MsgType::Watch.code() {
            initial_event(&st, id, &msg.payload);
        }
    }
    let mut st = lock(&state);
    st.conns.remove(&id);
    st.watches.retain(|w| w.conn != id);
    st.txs.retain(|_, t| t.conn != id);
}

fn canonical(raw: &[u8]) -> Result<String, XsErrno> {
    let s = std::str::from_utf8(raw).map_err(|_| XsErrno::EINVAL)?;
    let abs = if s.starts_with('/') || s.starts_with('@') {
        s.to_string()
    } else {
        format!("/local/domain/0/{s}")
    };
    crate::xenstore::validate_path(&abs).map_err(|_| XsErrno::EINVAL)?;
    Ok(abs)
}

type Reply = (u32, Vec<u8>, Vec<Change>);

fn ok(changes: Vec<Change>) -> Result<(Vec<u8>, Vec<Change>), XsErrno> {
    Ok((join_fields(&["OK"]), changes))
}

fn handle(st: &mut State, conn: u64, msg: &Message) -> Reply {
    let Some(ty) = msg.msg_type() else {
        return error(XsErrno::EINVAL);
    };
    let result = if msg.tx_id != 0 && !matches!(ty, MsgType::TransactionEnd) {
        match st.txs.get_mut(&msg.tx_id) {
            Some(tx) if tx.conn == conn => {
                let r = tree_op(&mut tx.tree, ty, &msg.payload);
                if let Ok((_, ch)) = &r {
                    tx.changes.extend(ch.iter().cloned());
                }
                r.map(|(p, _)| (p, Vec::new()))
            }
            _ => Err(XsErrno::ENOENT),
        }
    } else {
        match ty {
            MsgType::TransactionStart => start_tx(st, conn),
            MsgType::TransactionEnd => end_tx(st, conn, msg),
            MsgType::Watch => add_watch(st, conn, &msg.payload),
            MsgType::Unwatch => remove_watch(st, conn, &msg.payload),
            MsgType::GetDomainPath => domid_arg(&msg.payload)
                .map(|d| (join_fields(&[format!("/local/domain/{d}")]), Vec::new())),
            MsgType::IsDomainIntroduced => domid_arg(&msg.payload).map(|d| {
                let yes = if st.introduced.contains(&d) { "T" } else { "F" };
                (join_fields(&[yes]), Vec::new())
            }),
            _ => {
                let r = tree_op(&mut st.tree, ty, &msg.payload);
                if matches!(&r, Ok((_, ch)) if !ch.is_empty()) {
                    st.generation += 1;
                }
                r
            }
        }
    };
    let result = match result {
        Ok((payload, mut changes)) if ty == MsgType::DirectoryPart => {
            count_part(st, &msg.payload);
            if msg.tx_id == 0 {
                if let Some(path) = st.write_after_part.take() {
                    changes.extend(st.tree.write(&path, b""));
                    st.generation += 1;
                }
            }
            Ok((payload, changes))
        }
        other => other,
    };
    match result {
        Ok((payload, changes)) => (ty.code(), payload, changes),
        Err(e) => error(e),
    }
}

fn count_part(st: &mut State, payload: &[u8]) {
    st.directory_parts += 1;
    if split_fields(payload).get(1).copied() == Some(b"0") {
        st.directory_part_starts += 1;
    }
}

fn error(e: XsErrno) -> Reply {
    (MsgType::Error.code(), join_fields(&[e.name()]), Vec::new())
}

fn domid_arg(payload: &[u8]) -> Result<u32, XsErrno> {
    let f = split_fields(payload);
    let s = f.first().ok_or(XsErrno::EINVAL)?;
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(XsErrno::EINVAL)
}

fn tree_op(
    tree: &mut Tree,
    ty: MsgType,
    payload: &[u8],
) -> Result<(Vec<u8>, Vec<Change>), XsErrno> {
    let fields = split_fields(payload);
    let first = fields.first().ok_or(XsErrno::EINVAL)?;
    let path = canonical(first)?;
    match ty {
        MsgType::Read => Ok((tree.get(&path)?.value.clone(), Vec::new())),
        MsgType::Write => {
            // The value is everything after the first NUL, verbatim (may contain NULs).
            let value = payload.get(first.len() + 1..).unwrap_or_default();
            ok(tree.write(&path, value))
        }
        MsgType::Mkdir => ok(tree.mkdir(&path)),
        MsgType::Rm => ok(tree.rm(&path)?),
        MsgType::Directory => {
            // cxenstored's send_reply: a reply over the payload limit becomes E2BIG.
            let list = tree.child_list(&path)?;
            if list.len() > PAYLOAD_MAX {
                return Err(XsErrno::E2BIG);
            }
            Ok((list, Vec::new()))
        }
        MsgType::DirectoryPart => {
            let offset = fields
                .get(1)
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(XsErrno::EINVAL)?;
            Ok((tree.directory_part(&path, offset)?, Vec::new()))
        }
        MsgType::GetPerms => {
            let perms: Vec<String> = tree
                .get(&path)?
                .perms
                .iter()
                .map(XsPerm::to_string)
                .collect();
            Ok((join_fields(&perms), Vec::new()))
        }
        MsgType::SetPerms => {
            let perms = fields
                .get(1..)
                .unwrap_or_default()
                .iter()
                .map(|f| std::str::from_utf8(f).ok().and_then(XsPerm::parse))
                .collect::<Option<Vec<_>>>()
                .ok_or(XsErrno::EINVAL)?;
            ok(tree.set_perms(&path, perms)?)
        }
        _ => Err(XsErrno::ENOSYS),
    }
}

fn start_tx(st: &mut State, conn: u64) -> Result<(Vec<u8>, Vec<Change>), XsErrno> {
    st.next_tx = st.next_tx.checked_add(1).unwrap_or(1);
    let id = st.next_tx;
    let tx = Tx {
        conn,
        base_gen: st.generation,
        tree: st.tree.clone(),
        changes: Vec::new(),
    };
    st.txs.insert(id, tx);
    Ok((join_fields(&[id.to_string()]), Vec::new()))
}

fn end_tx(st: &mut State, conn: u64, msg: &Message) -> Result<(Vec<u8>, Vec<Change>), XsErrno> {
    let commit = match split_fields(&msg.payload).first().copied() {
        Some(b"T") => true,
        Some(b"F") => false,
        _ => return Err(XsErrno::EINVAL),
    };
    let tx = match st.txs.remove(&msg.tx_id) {
        Some(tx) if tx.conn == conn => tx,
        Some(tx) => {
            st.txs.insert(msg.tx_id, tx);
            return Err(XsErrno::ENOENT);
        }
        None => return Err(XsErrno::ENOENT),
    };
    if !commit {
        return ok(Vec::new());
    }
    if st.forced_conflicts > 0 || st.generation != tx.base_gen {
        st.forced_conflicts = st.forced_conflicts.saturating_sub(1);
        st.conflicts += 1;
        return Err(XsErrno::EAGAIN);
    }
    st.commits += 1;
    if !tx.changes.is_empty() {
        st.tree = tx.tree;
        st.generation += 1;
    }
    ok(tx.changes)
}

fn watch_args(payload: &[u8]) -> Result<(String, String), XsErrno> {
    let f = split_fields(payload);
    let (Some(p), Some(t)) = (f.first(), f.get(1)) else {
        return Err(XsErrno::EINVAL);
    };
    let token = String::from_utf8(t.to_vec()).map_err(|_| XsErrno::EINVAL)?;
    Ok((canonical(p)?, token))
}

fn add_watch(st: &mut State, conn: u64, payload: &[u8]) -> Result<(Vec<u8>, Vec<Change>), XsErrno> {
    let (path, token) = watch_args(payload)?;
    if st
        .watches
        .iter()
        .any(|w| w.conn == conn && w.path == path && w.token == token)
    {
        return Err(XsErrno::EEXIST);
    }
    st.watches.push(Watch { conn, path, token });
    ok(Vec::new())
}

fn remove_watch(
    st: &mut State,
    conn: u64,
    payload: &[u8],
) -> Result<(Vec<u8>, Vec<Change>), XsErrno> {
    let (path, token) = watch_args(payload)?;
    let before = st.watches.len();
    st.watches
        .retain(|w| !(w.conn == conn && w.path == path && w.token == token));
    if st.watches.len() == before {
        return Err(XsErrno::ENOENT);
    }
    ok(Vec::new())
}

fn send_event(st: &State, conn: u64, path: &str, token: &str) {
    if let Some(w) = st.conns.get(&conn) {
        let ev = Message::new(MsgType::WatchEvent, 0, 0, join_fields(&[path, token]));
        let _ = ev.write_to(&mut *lock(w));
    }
}

fn initial_event(st: &State, conn: u64, payload: &[u8]) {
    if let Ok((path, token)) = watch_args(payload) {
        send_event(st, conn, &path, &token);
    }
}

fn under(path: &str, dir: &str) -> bool {
    path == dir
        || dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn fire(st: &State, changes: &[Change]) {
    for c in changes {
        for w in &st.watches {
            if w.path.starts_with('@') {
                continue;
            }
            if under(&c.path, &w.path) {
                send_event(st, w.conn, &c.path, &w.token);
            } else if c.removed && under(&w.path, &c.path) {
                send_event(st, w.conn, &w.path, &w.token);
            }
        }
    }
}

fn fire_special(st: &State, special: &str) {
    for w in st.watches.iter().filter(|w| w.path == special) {
        send_event(st, w.conn, special, &w.token);
    }
}
