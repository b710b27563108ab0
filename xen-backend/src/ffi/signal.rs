//! Termination signals as a pollable fd (self-pipe): `SIGTERM`/`SIGINT` handlers write the
//! signal number into a nonblocking socket pair whose read end the daemon's event loop
//! polls. Only one [`SignalPipe`] may be installed per process.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = u8::try_from(sig).unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; `byte` is a live local; `fd` is the write
        // end owned by the installed SignalPipe (kept open until it is dropped, and the
        // handlers are reset before that). A full pipe just drops the byte.
        unsafe {
            libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
        }
    }
}

/// The read side of the self-pipe; restores default handlers on drop.
#[derive(Debug)]
pub struct SignalPipe {
    rx: UnixStream,
    _tx: UnixStream,
    signals: Vec<libc::c_int>,
}

fn set_handler(sig: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa` is fully initialised and outlives the call; old action not requested.
    let rc = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl SignalPipe {
    /// Installs handlers for `SIGTERM` and `SIGINT`.
    pub fn install() -> io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        if WRITE_FD
            .compare_exchange(-1, tx.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "signal pipe already installed",
            ));
        }
        let signals = vec![libc::SIGTERM, libc::SIGINT];
        for &s in &signals {
            set_handler(
                s,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )?;
        }
        Ok(SignalPipe {
            rx,
            _tx: tx,
            signals,
        })
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Signals received since the last call.
    pub fn take(&self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf.iter().take(n).map(|b| i32::from(*b)));
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for &s in &self.signals {
            let _ = set_handler(s, libc::SIG_DFL);
        }
        WRITE_FD.store(-1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_becomes_readable_byte() {
        let p = SignalPipe::install().unwrap();
        assert!(SignalPipe::install().is_err());
        // SAFETY: raise(2) on our own process; the handler only writes one byte.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
        assert_eq!(p.take(), vec![libc::SIGTERM]);
        assert!(p.take().is_empty());
    }
}
