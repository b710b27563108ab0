//! XenStore: a client speaking the wire protocol over xenstored's Unix socket or
//! `/dev/xen/xenbus`, the types it exchanges, and an in-process test server.
//!
//! * [`XsClient`] — read/write/mkdir/rm/directory (directories larger than one 4096-byte
//!   reply through bounded `DIRECTORY_PART`, module `dirpart`), permissions, transactions
//!   ([`XsClient::transaction`] retries on `EAGAIN` a bounded number of times) and watches.
//! * Watch events are separated from replies by a **reader thread** that owns the read half
//!   of the connection: replies go to the one in-flight request (requests are serialised by
//!   a mutex), watch events go to a queue, and one byte per event is written into a socket
//!   pair whose read end ([`XsClient::watch_fd`]) is what an event loop polls. After the fd
//!   becomes readable, [`XsClient::take_watch_events`] drains both.
//! * [`test_server::TestServer`] implements the server side (tree, permissions,
//!   transactions with conflict detection, watches, `@releaseDomain`) for unit tests.
//!
//! Spec: xen-abi.md §3.3–§3.4 (protocol), §5 (backend layout, [`XenbusState`]).

mod client;
mod dirpart;
mod path;
pub mod test_server;
mod types;
pub mod wire;

pub use client::{Transaction, XsClient, XsOps, DEFAULT_SOCKET, MAX_TX_RETRIES};
pub use dirpart::{MAX_DIRECTORY_BYTES, MAX_DIRECTORY_PARTS, MAX_DIRECTORY_RESTARTS};
pub use path::{validate_path, validate_token};
pub use types::{Access, WatchEvent, XenbusState, XsErrno, XsPerm};

/// Errors of the XenStore client.
#[derive(Debug, thiserror::Error)]
pub enum XsError {
    /// Could not connect to xenstored.
    #[error("cannot connect to xenstored at {path}: {cause}")]
    Connect {
        /// Socket or device path tried last.
        path: String,
        /// Underlying error.
        cause: std::io::Error,
    },
    /// xenstored answered with an ERROR reply.
    #[error("xenstored returned {errno} for {op} {path}")]
    Errno {
        /// What was requested.
        op: &'static str,
        /// The path (or other first argument).
        path: String,
        /// The errno name from the reply.
        errno: XsErrno,
    },
    /// A path or token is not valid XenStore syntax.
    #[error("invalid xenstore path or token {0:?}: {1}")]
    InvalidPath(String, &'static str),
    /// The request would exceed the 4096-byte payload limit.
    #[error("request payload of {0} bytes exceeds the 4096-byte xenstore limit")]
    TooLarge(usize),
    /// The server sent something that does not follow the protocol.
    #[error("xenstore protocol violation: {0}")]
    Protocol(String),
    /// A `DIRECTORY_PART` listing hit one of the client's bounds (size, requests,
    /// restarts), so the store is broken, hostile or changing the directory constantly.
    #[error("listing {path} stopped: {reason}")]
    ListingBound {
        /// The directory being listed.
        path: String,
        /// Which bound was hit.
        reason: &'static str,
    },
    /// The connection is gone (server exited or the reader thread stopped).
    #[error("xenstore connection closed")]
    Closed,
    /// No reply within the client's timeout.
    #[error("no reply from xenstored within {0:?}")]
    Timeout(std::time::Duration),
    /// A transaction kept conflicting.
    #[error("transaction still conflicting (EAGAIN) after {0} attempts")]
    RetriesExhausted(u32),
    /// Wire-level I/O failure.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

impl XsError {
    /// The errno of an ERROR reply, if this is one.
    pub fn errno(&self) -> Option<XsErrno> {
        match self {
            XsError::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True for `ENOENT` replies.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(XsErrno::ENOENT)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dirpart;
