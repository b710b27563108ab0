//! The XenStore wire format (`xen/io/xs_wire.h`, `docs/misc/xenstore.txt`; xen-abi.md §3.4).
//!
//! Every message, in both directions, is a 16-byte header of four little-endian `u32`
//! (`type`, `req_id`, `tx_id`, `len`) followed by `len` payload bytes, `len <= 4096`.

use std::io::{self, Read, Write};

use super::XsErrno;

/// Size of the message header in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest payload xenstored accepts (`XENSTORE_PAYLOAD_MAX`); more drops the connection.
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;

/// Message type codes (xen-abi.md §3.4). Only the ones this crate sends or receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// `XS_CONTROL` (a.k.a. DEBUG).
    Control,
    /// `XS_DIRECTORY`: `path|` → `name|name|…`.
    Directory,
    /// `XS_READ`: `path|` → raw value.
    Read,
    /// `XS_GET_PERMS`: `path|` → `perm|perm|…`.
    GetPerms,
    /// `XS_WATCH`: `path|token|` → `OK|`.
    Watch,
    /// `XS_UNWATCH`: `path|token|` → `OK|`.
    Unwatch,
    /// `XS_TRANSACTION_START`: `|` → decimal id.
    TransactionStart,
    /// `XS_TRANSACTION_END`: `T|` commit or `F|` abort.
    TransactionEnd,
    /// `XS_INTRODUCE`.
    Introduce,
    /// `XS_RELEASE`.
    Release,
    /// `XS_GET_DOMAIN_PATH`: `domid|` → `/local/domain/<domid>|`.
    GetDomainPath,
    /// `XS_WRITE`: `path|value` → `OK|`.
    Write,
    /// `XS_MKDIR`: `path|` → `OK|`.
    Mkdir,
    /// `XS_RM`: `path|` → `OK|` (recursive).
    Rm,
    /// `XS_SET_PERMS`: `path|perm|perm|…` → `OK|`.
    SetPerms,
    /// `XS_WATCH_EVENT` (unsolicited): `path|token|`.
    WatchEvent,
    /// `XS_ERROR`: errno name.
    Error,
    /// `XS_IS_DOMAIN_INTRODUCED`: `domid|` → `T|`/`F|`.
    IsDomainIntroduced,
    /// `XS_RESUME`.
    Resume,
    /// `XS_SET_TARGET`.
    SetTarget,
    /// `XS_RESET_WATCHES`.
    ResetWatches,
    /// `XS_DIRECTORY_PART`: `path|offset|` → `gencnt|name|…`.
    DirectoryPart,
}

/// (type, wire code) pairs; the single source of truth for encoding and decoding.
const TYPE_CODES: [(MsgType, u32); 22] = [
    (MsgType::Control, 0),
    (MsgType::Directory, 1),
    (MsgType::Read, 2),
    (MsgType::GetPerms, 3),
    (MsgType::Watch, 4),
    (MsgType::Unwatch, 5),
    (MsgType::TransactionStart, 6),
    (MsgType::TransactionEnd, 7),
    (MsgType::Introduce, 8),
    (MsgType::Release, 9),
    (MsgType::GetDomainPath, 10),
    (MsgType::Write, 11),
    (MsgType::Mkdir, 12),
    (MsgType::Rm, 13),
    (MsgType::SetPerms, 14),
    (MsgType::WatchEvent, 15),
    (MsgType::Error, 16),
    (MsgType::IsDomainIntroduced, 17),
    (MsgType::Resume, 18),
    (MsgType::SetTarget, 19),
    (MsgType::ResetWatches, 21),
    (MsgType::DirectoryPart, 22),
];

impl MsgType {
    /// The wire code.
    pub fn code(self) -> u32 {
        TYPE_CODES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or(0xFFFF, |(_, c)| *c)
    }

    /// Decodes a wire code; `None` for unknown codes.
    pub fn from_code(code: u32) -> Option<Self> {
        TYPE_CODES.iter().find(|(_, c)| *c == code).map(|(t, _)| *t)
    }
}

/// One decoded message. `ty` stays raw so unknown types can be reported, not dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Raw type code.
    pub ty: u32,
    /// Request id, echoed by the server (0 for watch events).
    pub req_id: u32,
    /// Transaction id (0 = none).
    pub tx_id: u32,
    /// Payload, at most [`PAYLOAD_MAX`] bytes.
    pub payload: Vec<u8>,
}

/// Wire-level failures.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection (EOF at a message boundary).
    #[error("connection closed by peer")]
    Closed,
    /// An I/O error, including EOF inside a message.
    #[error("i/o error on xenstore connection: {0}")]
    Io(io::Error),
    /// A header announced a payload above [`PAYLOAD_MAX`].
    #[error("payload of {0} bytes exceeds the {PAYLOAD_MAX}-byte limit")]
    TooLarge(usize),
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Message {
    /// A message of a known type.
    pub fn new(ty: MsgType, req_id: u32, tx_id: u32, payload: Vec<u8>) -> Self {
        Message {
            ty: ty.code(),
            req_id,
            tx_id,
            payload,
        }
    }

    /// The decoded type, if known.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_code(self.ty)
    }

    /// Header plus payload as one buffer (one `write_all`, so messages never interleave).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let len = u32::try_from(self.payload.len())
            .ok()
            .filter(|l| (*l as usize) <= PAYLOAD_MAX)
            .ok_or(WireError::TooLarge(self.payload.len()))?;
        let mut buf = Vec::with_capacity(HEADER_LEN + self.payload.len());
        for word in [self.ty, self.req_id, self.tx_id, len] {
            buf.extend_from_slice(&word.to_le_bytes());
        }
        buf.extend_from_slice(&self.payload);
        Ok(buf)
    }

    /// Writes the message.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), WireError> {
        let buf = self.encode()?;
        w.write_all(&buf)?;
        w.flush()?;
        Ok(())
    }

    /// Reads one message; [`WireError::Closed`] on a clean EOF before the header.
    pub fn read_from(r: &mut impl Read) -> Result<Self, WireError> {
        let mut hdr = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let rest = hdr.get_mut(got..).unwrap_or_default();
            match r.read(rest) {
                Ok(0) if got == 0 => return Err(WireError::Closed),
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&hdr[i * 4..i * 4 + 4]);
            u32::from_le_bytes(b)
        };
        let len = usize::try_from(word(3)).unwrap_or(usize::MAX);
        if len > PAYLOAD_MAX {
            return Err(WireError::TooLarge(len));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        Ok(Message {
            ty: word(0),
            req_id: word(1),
            tx_id: word(2),
            payload,
        })
    }
}

/// Splits a NUL-separated payload into its fields. A trailing NUL ends the last field
/// (it does not create an empty one).
pub fn split_fields(payload: &[u8]) -> Vec<&[u8]> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == 0).collect()
}

/// Joins fields, each terminated by a NUL.
pub fn join_fields<S: AsRef<[u8]>>(fields: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f.as_ref());
        out.push(0);
    }
    out
}

/// Decodes an ERROR reply's errno name.
pub fn parse_error_payload(payload: &[u8]) -> XsErrno {
    let name = payload.strip_suffix(&[0]).unwrap_or(payload);
    XsErrno::from_name(&String::from_utf8_lossy(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_match_xs_wire_h() {
        assert_eq!(MsgType::ResetWatches.code(), 21);
        assert_eq!(MsgType::DirectoryPart.code(), 22);
        assert_eq!(MsgType::WatchEvent.code(), 15);
        assert_eq!(MsgType::from_code(20), None);
        for (t, c) in TYPE_CODES {
            assert_eq!(MsgType::from_code(c), Some(t));
        }
    }

    #[test]
    fn encode_decode_roundtrip() {
        let m = Message::new(MsgType::Write, 7, 3, b"/a/b\0value".to_vec());
        let buf = m.encode().unwrap();
        assert_eq!(&buf[..4], &11u32.to_le_bytes());
        assert_eq!(&buf[12..16], &10u32.to_le_bytes());
        let back = Message::read_from(&mut &buf[..]).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn oversize_rejected_both_ways() {
        let m = Message::new(MsgType::Write, 1, 0, vec![b'x'; PAYLOAD_MAX + 1]);
        assert!(matches!(m.encode(), Err(WireError::TooLarge(4097))));
        let mut hdr = Vec::new();
        for w in [2u32, 1, 0, 5000] {
            hdr.extend_from_slice(&w.to_le_bytes());
        }
        assert!(matches!(
            Message::read_from(&mut &hdr[..]),
            Err(WireError::TooLarge(5000))
        ));
    }

    #[test]
    fn eof_handling() {
        assert!(matches!(
            Message::read_from(&mut &[][..]),
            Err(WireError::Closed)
        ));
        assert!(matches!(
            Message::read_from(&mut &[1u8, 2, 3][..]),
            Err(WireError::Io(_))
        ));
    }

    #[test]
    fn fields() {
        assert_eq!(split_fields(b"a\0bc\0"), vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(split_fields(b"\0"), Vec::<&[u8]>::new());
        assert_eq!(
            split_fields(b"a\0\0b"),
            vec![&b"a"[..], &b""[..], &b"b"[..]]
        );
        assert_eq!(join_fields(&["x", "y"]), b"x\0y\0");
        assert_eq!(parse_error_payload(b"EAGAIN\0"), XsErrno::EAGAIN);
    }
}
