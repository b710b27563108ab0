//! A blocking control-protocol client: one request line out, one response line back.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use xengt::proto::{self, ErrorBody, Op, Request, Response, PROTO_VERSION};

use crate::out::{fail, Failure, EXIT_FAILED, EXIT_UNREACHABLE};

/// The id every request carries (one request per connection).
const REQUEST_ID: u64 = 1;
/// Longest response line read. Requests are capped at `proto::MAX_LINE`, responses are
/// not (a screenshot's base64 PNG of a 2560x1600 plane can reach ~22 MiB): this bounds
/// what a misbehaving peer on the socket can make xengt-ctl allocate.
const MAX_RESPONSE: u64 = 64 << 20;

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
        id: REQUEST_ID,
        op,
    };
    (&stream)
        .write_all(&proto::encode_line(&req))
        .map_err(|e| CallError::Protocol(format!("sending request: {e}")))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_RESPONSE))
        .read_line(&mut line)
        .map_err(|e| CallError::Protocol(format!("reading response: {e}")))?;
    if line.is_empty() {
        return Err(CallError::Protocol(
            "xengtd closed the connection without answering".into(),
        ));
    }
    if !line.ends_with('\n') {
        return Err(CallError::Protocol(format!(
            "response longer than {MAX_RESPONSE} bytes or cut off"
        )));
    }
    let resp: Response = serde_json::from_str(line.trim_end())
        .map_err(|e| CallError::Protocol(format!("malformed response: {e}")))?;
    if resp.version != PROTO_VERSION {
        return Err(CallError::Protocol(format!(
            "xengtd speaks protocol {}, this xengt-ctl {PROTO_VERSION}",
            resp.version
        )));
    }
    // A daemon that could not parse the request answers with id 0.
    if resp.id != REQUEST_ID && !(resp.id == 0 && resp.error.is_some()) {
        return Err(CallError::Protocol(format!(
            "response to request {} instead of {REQUEST_ID}",
            resp.id
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

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Connect(m) => fail(EXIT_UNREACHABLE, "unreachable", m),
            CallError::Daemon(b) => {
                let code = serde_json::to_value(b.code)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_else(|| "failed".into());
                Failure {
                    exit: EXIT_FAILED,
                    code,
                    msg: b.message,
                    show_code: true,
                }
            }
            CallError::Protocol(m) => fail(EXIT_FAILED, "protocol", m),
        }
    }
}
