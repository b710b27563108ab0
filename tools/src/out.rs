//! Everything xengt-ctl prints: the output is collected in memory and written once at
//! the end, so a reader that went away (EPIPE) is noticed in one place and never panics
//! (`println!` would), and a failure can still be reported as one JSON object.

use std::fmt::Display;
use std::io::{self, Write};

use serde_json::Value;

/// The operation failed (the daemon refused it, a file could not be written, …).
pub const EXIT_FAILED: i32 = 1;
/// Bad command line (clap's own code for usage errors).
pub const EXIT_USAGE: i32 = 2;
/// xengtd could not be reached.
pub const EXIT_UNREACHABLE: i32 = 3;
/// An input file (xl config, daemon config) is invalid.
pub const EXIT_INPUT: i32 = 4;

/// Why a command failed: its exit code, a stable machine-readable code (the daemon's
/// error code, or one of xengt-ctl's own: `unreachable`, `protocol`, `invalid_input`,
/// `unknown_domain`, `ambiguous_domain`, `failed`, `usage`) and one line for a person.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
    pub exit: i32,
    /// Machine-readable code.
    pub code: String,
    /// What went wrong.
    pub msg: String,
    /// The plain-text line ends with ` (code)` (errors from the daemon, whose codes an
    /// operator may look up).
    pub show_code: bool,
}

/// A failure with exit code `exit` and machine code `code`.
pub fn fail(exit: i32, code: &str, msg: impl Into<String>) -> Failure {
    Failure {
        exit,
        code: code.to_string(),
        msg: msg.into(),
        show_code: false,
    }
}

impl Failure {
    /// The `--json` form: `{"error":{"code":"…","message":"…"}}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"error": {"code": self.code, "message": self.msg}})
    }
}

/// Collected standard output.
#[derive(Debug, Default)]
pub struct Out {
    buf: Vec<u8>,
}

impl Out {
    /// Appends one line.
    pub fn line(&mut self, s: impl Display) {
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buf, "{s}");
    }

    /// Appends a JSON document (pretty, one trailing newline).
    pub fn json(&mut self, v: &Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
        self.line(text);
    }

    /// Raw bytes (e.g. generated completions), as they are.
    pub fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// Writes `bytes` to `w`. A reader that went away (EPIPE) is not an error: nobody wants
/// the rest, so it is dropped quietly.
pub fn write_quietly(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    match w.write_all(bytes).and_then(|()| w.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Prints the result of a command and returns the exit code.
///
/// Success: the collected output on stdout, exit 0. Failure: with `json` the error
/// object on stdout (and nothing on stderr), else `xengt-ctl: error: …` on stderr; the
/// failure's exit code. A closed stdout does not change the exit code; any other error
/// writing stdout (e.g. a full disk) is reported on stderr with exit 1.
pub fn finish(json: bool, result: Result<Out, Failure>) -> i32 {
    let (bytes, code) = match result {
        Ok(out) => (out.buf, 0),
        Err(f) if json => {
            let mut o = Out::default();
            o.line(f.to_json());
            (o.buf, f.exit)
        }
        Err(f) => {
            let line = if f.show_code {
                format!("xengt-ctl: error: {} ({})\n", f.msg, f.code)
            } else {
                format!("xengt-ctl: error: {}\n", f.msg)
            };
            let _ = write_quietly(&mut io::stderr().lock(), line.as_bytes());
            return f.exit;
        }
    };
    match write_quietly(&mut io::stdout().lock(), &bytes) {
        Ok(()) => code,
        Err(e) => {
            let line = format!("xengt-ctl: error: cannot write the output: {e}\n");
            let _ = write_quietly(&mut io::stderr().lock(), line.as_bytes());
            if code == 0 {
                EXIT_FAILED
            } else {
                code
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_not_an_error_but_other_write_errors_are() {
        assert!(write_quietly(&mut Closed, b"x").is_ok());
        let mut full = io::Cursor::new([0u8; 1]);
        assert!(write_quietly(&mut full, b"xy").is_err());
    }

    #[test]
    fn json_error_shape() {
        let f = fail(EXIT_UNREACHABLE, "unreachable", "no daemon");
        assert_eq!(
            f.to_json().to_string(),
            r#"{"error":{"code":"unreachable","message":"no daemon"}}"#
        );
    }
}
