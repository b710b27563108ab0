//! `eventfd(2)` and `poll(2)` wrappers: the simulated Xen's event channels.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A Linux eventfd (counter mode).
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with counter 0; `nonblocking` sets `EFD_NONBLOCK`.
    pub fn new(nonblocking: bool) -> io::Result<Self> {
        let mut flags = libc::EFD_CLOEXEC;
        if nonblocking {
            flags |= libc::EFD_NONBLOCK;
        }
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let fd = unsafe { libc::eventfd(0, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Adds 1 to the counter, waking a reader.
    pub fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local u64 to our own descriptor.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n == 8 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Reads and resets the counter. Blocks if the fd is blocking and the counter is 0;
    /// returns 0 if non-blocking and nothing was signalled.
    pub fn take(&self) -> io::Result<u64> {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64 from our own descriptor.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::addr_of_mut!(v).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n == 8 {
            return Ok(v);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        }
    }

    /// Waits up to `timeout` for a signal and consumes it; `Ok(false)` on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        loop {
            if !poll_readable(self.fd.as_raw_fd(), timeout)? {
                return Ok(false);
            }
            if self.take()? != 0 {
                return Ok(true);
            }
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Whether `fd` becomes readable within `timeout` (`None` = wait forever). Retries on
/// `EINTR`.
pub fn poll_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let ms: libc::c_int = match timeout {
        None => -1,
        Some(t) => libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX),
    };
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one live pollfd; nfds = 1 matches.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r >= 0 {
            return Ok(r > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_wakes_and_take_resets() {
        let e = EventFd::new(true).unwrap();
        assert_eq!(e.take().unwrap(), 0);
        assert!(!e.wait(Some(Duration::from_millis(1))).unwrap());
        e.signal().unwrap();
        e.signal().unwrap();
        assert!(poll_readable(e.as_raw_fd(), Some(Duration::ZERO)).unwrap());
        assert_eq!(e.take().unwrap(), 2);
        assert!(!poll_readable(e.as_raw_fd(), Some(Duration::ZERO)).unwrap());
    }
}
