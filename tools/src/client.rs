//! A blocking control-protocol client: one request line out, one response line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use xengt::proto::{self, ErrorBody, Op, Request, Response, PROTO_VERSION};

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// Could not reach the daemon.
    Connect(String),
    /// The daemon answered with an error.
    Daemon(ErrorBody),
    /// Broken exchange.
    Protocol(String),
}

/// Sends one operation and returns the `ok` payload.
pub fn call(socket: &Path, op: Op, timeout: Duration) -> Result<serde_json::Value, CallError> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        CallError::Connect(format!(
            "cannot connect to xengtd at {}: {e} (is xengtd running? use --socket PATH)",
            socket.display()
        ))
    })?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let req = Request {
        version: PROTO_VERSION,
        id: 1,
        op,
    };
    (&stream)
        .write_all(&proto::encode_line(&req))
        .map_err(|e| CallError::Protocol(format!("sending request: {e}")))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| CallError::Protocol(format!("reading response: {e}")))?;
    if line.is_empty() {
        return Err(CallError::Protocol(
            "xengtd closed the connection without answering".into(),
        ));
    }
    let resp: Response = serde_json::from_str(line.trim_end())
        .map_err(|e| CallError::Protocol(format!("malformed response: {e}")))?;
    if resp.version != PROTO_VERSION {
        return Err(CallError::Protocol(format!(
            "xengtd speaks protocol {}, this xengt-ctl {PROTO_VERSION}",
            resp.version
        )));
    }
    match (resp.ok, resp.error) {
        (_, Some(e)) => Err(CallError::Daemon(e)),
        (Some(v), None) => Ok(v),
        (None, None) => Err(CallError::Protocol(
            "response has neither ok nor error".into(),
        )),
    }
}
