//! Values exchanged with xenstored: errno names, permissions, watch events, XenbusState.

use std::fmt;

/// Errno names carried by ERROR replies (xen-abi.md §3.4).
#[allow(clippy::upper_case_acronyms, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsErrno {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
    /// A name this client does not know.
    Other,
}

const ERRNO_NAMES: [(XsErrno, &str); 16] = [
    (XsErrno::EINVAL, "EINVAL"),
    (XsErrno::EACCES, "EACCES"),
    (XsErrno::EEXIST, "EEXIST"),
    (XsErrno::EISDIR, "EISDIR"),
    (XsErrno::ENOENT, "ENOENT"),
    (XsErrno::ENOMEM, "ENOMEM"),
    (XsErrno::ENOSPC, "ENOSPC"),
    (XsErrno::EIO, "EIO"),
    (XsErrno::ENOTEMPTY, "ENOTEMPTY"),
    (XsErrno::ENOSYS, "ENOSYS"),
    (XsErrno::EROFS, "EROFS"),
    (XsErrno::EBUSY, "EBUSY"),
    (XsErrno::EAGAIN, "EAGAIN"),
    (XsErrno::EISCONN, "EISCONN"),
    (XsErrno::E2BIG, "E2BIG"),
    (XsErrno::EPERM, "EPERM"),
];

impl XsErrno {
    /// Parses an errno name; unknown names map to [`XsErrno::Other`].
    pub fn from_name(name: &str) -> Self {
        ERRNO_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map_or(XsErrno::Other, |(e, _)| *e)
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        ERRNO_NAMES
            .iter()
            .find(|(e, _)| *e == self)
            .map_or("EIO", |(_, n)| n)
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Access granted by one permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: none.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

/// One permission entry. The first entry of a node names the owner **and** the default
/// access for every domain not listed (xen-abi.md §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XsPerm {
    /// Domain id.
    pub domid: u32,
    /// Access.
    pub access: Access,
}

impl XsPerm {
    /// Convenience constructor.
    pub fn new(domid: u32, access: Access) -> Self {
        XsPerm { domid, access }
    }

    /// Parses `n0`, `r5`, `w1`, `b2`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut chars = s.chars();
        let access = match chars.next()? {
            'n' => Access::None,
            'r' => Access::Read,
            'w' => Access::Write,
            'b' => Access::Both,
            _ => return None,
        };
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(XsPerm {
            domid: digits.parse().ok()?,
            access,
        })
    }
}

impl fmt::Display for XsPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.access {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        };
        write!(f, "{c}{}", self.domid)
    }
}

/// One watch event: the path that changed and the token given to `watch`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// Changed path (or the special path such as `@releaseDomain`).
    pub path: String,
    /// Token registered with the watch.
    pub token: String,
}

/// `enum xenbus_state` (`xen/io/xenbus.h`; xen-abi.md §5.2), written as decimal text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XenbusState {
    /// 0
    Unknown,
    /// 1
    Initialising,
    /// 2
    InitWait,
    /// 3
    Initialised,
    /// 4
    Connected,
    /// 5
    Closing,
    /// 6
    Closed,
    /// 7
    Reconfiguring,
    /// 8
    Reconfigured,
}

const STATES: [XenbusState; 9] = [
    XenbusState::Unknown,
    XenbusState::Initialising,
    XenbusState::InitWait,
    XenbusState::Initialised,
    XenbusState::Connected,
    XenbusState::Closing,
    XenbusState::Closed,
    XenbusState::Reconfiguring,
    XenbusState::Reconfigured,
];

impl XenbusState {
    /// Numeric value.
    pub fn as_u8(self) -> u8 {
        STATES
            .iter()
            .position(|s| *s == self)
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(0)
    }

    /// Parses the decimal text stored in XenStore (surrounding whitespace tolerated).
    pub fn parse(text: &str) -> Option<Self> {
        let n: usize = text.trim().parse().ok()?;
        STATES.get(n).copied()
    }

    /// Human name, e.g. `Connected`.
    pub fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_roundtrip() {
        for (e, n) in ERRNO_NAMES {
            assert_eq!(XsErrno::from_name(n), e);
            assert_eq!(e.name(), n);
        }
        assert_eq!(XsErrno::from_name("EWHAT"), XsErrno::Other);
    }

    #[test]
    fn perms() {
        assert_eq!(XsPerm::parse("r5"), Some(XsPerm::new(5, Access::Read)));
        assert_eq!(XsPerm::parse("b0").unwrap().to_string(), "b0");
        for bad in ["", "x1", "r", "r-1", "r1a", "r99999999999"] {
            assert_eq!(XsPerm::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn states() {
        assert_eq!(XenbusState::parse("4"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(" 6\n"), Some(XenbusState::Closed));
        assert_eq!(XenbusState::parse("9"), None);
        assert_eq!(XenbusState::parse("-1"), None);
        assert_eq!(XenbusState::parse("x"), None);
        for (i, s) in STATES.iter().enumerate() {
            assert_eq!(usize::from(s.as_u8()), i);
        }
    }
}
