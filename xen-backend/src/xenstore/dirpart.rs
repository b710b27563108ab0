//! Listing directories whose child list exceeds one 4096-byte reply: `XS_DIRECTORY_PART`
//! (xen-abi.md §3.4; cxenstored and oxenstored since Xen 4.9).
//!
//! Request `path|offset|`, where `offset` is a decimal **byte** offset into the node's
//! child list (names each followed by a NUL). Reply `gen|name|name|…`: the node's
//! generation count, then as many whole names as fit, each NUL-terminated; the part that
//! reaches the end of the list carries one more NUL (an empty name). An offset at or past
//! the end gives `gen||`. If the generation differs between parts the directory changed
//! and the listing restarts from offset 0.
//!
//! [`super::XsOps::directory`] sends `XS_DIRECTORY` first, like libxenstore, and comes
//! here only on `E2BIG`: one round trip for the common small directory, and stores
//! without `DIRECTORY_PART` keep working for everything that fits. A store that answers
//! `ENOSYS` here yields the original `E2BIG`.
//!
//! A broken or hostile store cannot make the client loop or allocate without bound: a
//! listing is at most [`MAX_DIRECTORY_BYTES`], one call sends at most
//! [`MAX_DIRECTORY_PARTS`] requests and restarts at most [`MAX_DIRECTORY_RESTARTS`]
//! times, and every part that does not end the listing must carry at least one name.

use super::client::XsOps;
use super::wire::{join_fields, MsgType};
use super::{XsErrno, XsError};

/// Largest child list (names plus their NULs) one listing accepts: about 100 000
/// domain-id-sized names.
pub const MAX_DIRECTORY_BYTES: usize = 1 << 20;
/// `DIRECTORY_PART` requests one [`super::XsOps::directory`] call sends at most (a full
/// [`MAX_DIRECTORY_BYTES`] listing from cxenstored takes about 260).
pub const MAX_DIRECTORY_PARTS: u32 = 2048;
/// Restarts (generation changed between parts) before giving up.
pub const MAX_DIRECTORY_RESTARTS: u32 = 8;

/// One decoded `DIRECTORY_PART` reply.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Part<'a> {
    /// The generation count (decimal digits, compared as bytes).
    pub gen: &'a [u8],
    /// The names in this part, in order.
    pub names: Vec<&'a [u8]>,
    /// True if this part reaches the end of the child list.
    pub done: bool,
}

/// Decodes a reply payload; any deviation from the format is a protocol error.
pub(super) fn parse_part<'a>(reply: &'a [u8], path: &str) -> Result<Part<'a>, XsError> {
    let bad = |what: &str| XsError::Protocol(format!("DIRECTORY_PART reply for {path}: {what}"));
    let nul = reply
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| bad("no generation count"))?;
    let (gen, rest) = (reply.get(..nul).unwrap_or_default(), reply.get(nul + 1..));
    if gen.is_empty() || gen.len() > 20 || !gen.iter().all(u8::is_ascii_digit) {
        return Err(bad("generation count is not a decimal number"));
    }
    let body = rest
        .unwrap_or_default()
        .strip_suffix(&[0])
        .ok_or_else(|| bad("names not NUL-terminated"))?;
    let mut names: Vec<&[u8]> = body.split(|b| *b == 0).collect();
    let done = names.last().is_some_and(|n| n.is_empty());
    if done {
        names.pop();
    }
    if names.iter().any(|n| n.is_empty()) {
        return Err(bad("empty name inside the list"));
    }
    if !done && names.is_empty() {
        return Err(bad("part without names that does not end the list"));
    }
    Ok(Part { gen, names, done })
}

/// Validates one child name: UTF-8, non-empty, no `/`.
pub(super) fn child_name(raw: &[u8], path: &str) -> Result<String, XsError> {
    match std::str::from_utf8(raw) {
        Ok(s) if !s.is_empty() && !s.contains('/') => Ok(s.to_string()),
        _ => Err(XsError::Protocol(format!("bad child name under {path}"))),
    }
}

fn bound(path: &str, reason: &'static str) -> XsError {
    XsError::ListingBound {
        path: path.to_string(),
        reason,
    }
}

/// Lists `path` with `DIRECTORY_PART`; `e2big` is the `XS_DIRECTORY` error returned if the
/// store does not know `DIRECTORY_PART`.
pub(super) fn list_in_parts<O: XsOps + ?Sized>(
    ops: &O,
    path: &str,
    e2big: XsError,
) -> Result<Vec<String>, XsError> {
    let mut sent = 0u32;
    let mut restarts = 0u32;
    'listing: loop {
        let mut gen: Option<Vec<u8>> = None;
        let mut names = Vec::new();
        let mut offset = 0usize;
        loop {
            sent += 1;
            if sent > MAX_DIRECTORY_PARTS {
                return Err(bound(path, "too many DIRECTORY_PART requests"));
            }
            let payload = join_fields(&[path, &offset.to_string()]);
            let reply = match ops.request(MsgType::DirectoryPart, payload, path) {
                Err(e) if e.errno() == Some(XsErrno::ENOSYS) => return Err(e2big),
                other => other?,
            };
            let part = parse_part(&reply, path)?;
            match &gen {
                None => gen = Some(part.gen.to_vec()),
                Some(g) if g.as_slice() != part.gen => {
                    restarts += 1;
                    if restarts > MAX_DIRECTORY_RESTARTS {
                        return Err(bound(path, "directory kept changing while listed"));
                    }
                    tracing::debug!(path, restarts, "directory changed while listed, restarting");
                    continue 'listing;
                }
                Some(_) => {}
            }
            for raw in part.names {
                offset = offset
                    .checked_add(raw.len())
                    .and_then(|o| o.checked_add(1))
                    .filter(|o| *o <= MAX_DIRECTORY_BYTES)
                    .ok_or_else(|| bound(path, "child list larger than MAX_DIRECTORY_BYTES"))?;
                names.push(child_name(raw, path)?);
            }
            if part.done {
                return Ok(names);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_middle_final_and_empty_parts() {
        let p = parse_part(b"12\0a\0bc\0", "/d").unwrap();
        assert_eq!(p.gen, b"12");
        assert_eq!(p.names, vec![&b"a"[..], &b"bc"[..]]);
        assert!(!p.done);
        let p = parse_part(b"12\0a\0\0", "/d").unwrap();
        assert_eq!(p.names, vec![&b"a"[..]]);
        assert!(p.done);
        let p = parse_part(b"0\0\0", "/d").unwrap();
        assert!(p.names.is_empty());
        assert!(p.done);
    }

    #[test]
    fn rejects_malformed_parts() {
        for bad in [
            &b""[..],
            b"12",
            b"\0\0",
            b"x1\0a\0\0",
            b"123456789012345678901\0\0",
            b"12\0",
            b"12\0abc",
            b"12\0a\0\0b\0",
            b"12\0a\0\0\0",
        ] {
            let err = parse_part(bad, "/d").unwrap_err();
            assert!(matches!(err, XsError::Protocol(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn child_names_are_validated() {
        assert_eq!(child_name(b"vgt", "/d").unwrap(), "vgt");
        for bad in [&b""[..], b"a/b", &[0xff, 0xfe]] {
            assert!(child_name(bad, "/d").is_err());
        }
    }
}
