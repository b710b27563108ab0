//! A domain named on the command line: an id or a name, as xl reads them (all digits is
//! an id, anything else a name). Names become ids through the daemon's `domains` list.

use std::path::Path;
use std::time::Duration;

use xengt::proto::{DomainInfo, ErrorCode, Op};

use crate::client::{call, CallError};
use crate::out::{fail, Failure, EXIT_FAILED};

/// First reserved domain id (`DOMID_FIRST_RESERVED`): no domain has this id or a higher one.
const DOMID_FIRST_RESERVED: u32 = 0x7FF0;
/// Most domains an error message lists.
const LIST_MAX: usize = 16;

/// A domain as the operator wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainArg {
    /// A domain id.
    Id(u16),
    /// A domain name.
    Name(String),
}

/// clap value parser: a domain id (0..=32751) or a name (1-64 characters, no control
/// characters, not starting with `-`).
pub fn parse_domain(s: &str) -> Result<DomainArg, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(id) if id < DOMID_FIRST_RESERVED => Ok(DomainArg::Id(
                u16::try_from(id).map_err(|_| format!("{s} is not a domain id"))?,
            )),
            _ => Err(format!(
                "{s} is not a domain id (ids are 0..={})",
                DOMID_FIRST_RESERVED - 1
            )),
        };
    }
    if s.is_empty() || s.len() > 64 || s.chars().any(char::is_control) || s.starts_with('-') {
        return Err(format!(
            "{s:?} is neither a domain id nor a domain name (1-64 printable characters)"
        ));
    }
    Ok(DomainArg::Name(s.to_string()))
}

/// The domain id of `arg`; a name is looked up in the daemon's domain list.
pub fn resolve(socket: &Path, arg: &DomainArg, timeout: Duration) -> Result<u16, Failure> {
    let name = match arg {
        DomainArg::Id(id) => return Ok(*id),
        DomainArg::Name(n) => n,
    };
    let reply = call(socket, Op::Domains, timeout).map_err(|e| match e {
        CallError::Daemon(b) if b.code == ErrorCode::BadRequest => fail(
            EXIT_FAILED,
            "unsupported",
            "this xengtd is older than xengt-ctl and knows no domain names; use the domain id",
        ),
        e => Failure::from(e),
    })?;
    let domains: Vec<DomainInfo> = serde_json::from_value(reply).map_err(|e| {
        fail(
            EXIT_FAILED,
            "protocol",
            format!("unexpected domains reply from xengtd: {e}"),
        )
    })?;
    pick(&domains, name)
}

/// The one domain named `name`.
fn pick(domains: &[DomainInfo], name: &str) -> Result<u16, Failure> {
    let hits: Vec<u16> = domains
        .iter()
        .filter(|d| d.name.as_deref() == Some(name))
        .map(|d| d.domid)
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] if domains.is_empty() => Err(fail(
            EXIT_FAILED,
            "unknown_domain",
            format!("no domain named {name:?}: xengtd knows no domains"),
        )),
        [] => Err(fail(
            EXIT_FAILED,
            "unknown_domain",
            format!("no domain named {name:?}; domains: {}", listing(domains)),
        )),
        many => Err(fail(
            EXIT_FAILED,
            "ambiguous_domain",
            format!(
                "{} domains are named {name:?} (ids {}); use the domain id",
                many.len(),
                many.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `3 (vgt-pvh), 4 (sim-4), 7` — at most [`LIST_MAX`] entries.
fn listing(domains: &[DomainInfo]) -> String {
    let mut parts: Vec<String> = domains
        .iter()
        .take(LIST_MAX)
        .map(|d| match &d.name {
            Some(n) => format!("{} ({n})", d.domid),
            None => d.domid.to_string(),
        })
        .collect();
    if domains.len() > LIST_MAX {
        parts.push(format!("and {} more", domains.len() - LIST_MAX));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(domid: u16, name: Option<&str>) -> DomainInfo {
        DomainInfo {
            domid,
            name: name.map(String::from),
            vgpu: false,
        }
    }

    #[test]
    fn ids_names_and_garbage() {
        assert_eq!(parse_domain("0"), Ok(DomainArg::Id(0)));
        assert_eq!(parse_domain("007"), Ok(DomainArg::Id(7)));
        assert_eq!(parse_domain("32751"), Ok(DomainArg::Id(32751)));
        for bad in ["32752", "65536", "99999999999999999999", "", "-3", "a\tb"] {
            assert!(parse_domain(bad).is_err(), "{bad:?}");
        }
        assert!(parse_domain(&"n".repeat(65)).is_err());
        for name in ["vgt-pvh", "Domain-0", "0x5", "5a", "web server"] {
            assert_eq!(parse_domain(name), Ok(DomainArg::Name(name.into())));
        }
    }

    #[test]
    fn pick_one_none_or_many() {
        let ds = [dom(0, Some("Domain-0")), dom(3, Some("web")), dom(7, None)];
        assert_eq!(pick(&ds, "web").ok(), Some(3));
        let e = pick(&ds, "db").unwrap_err();
        assert_eq!((e.exit, e.code.as_str()), (EXIT_FAILED, "unknown_domain"));
        assert_eq!(
            e.msg,
            "no domain named \"db\"; domains: 0 (Domain-0), 3 (web), 7"
        );
        assert!(pick(&[], "db")
            .unwrap_err()
            .msg
            .contains("knows no domains"));
        let two = [dom(3, Some("web")), dom(4, Some("web"))];
        let e = pick(&two, "web").unwrap_err();
        assert_eq!(e.code, "ambiguous_domain");
        assert!(e.msg.contains("ids 3, 4"), "{}", e.msg);
        let lots: Vec<_> = (1..40).map(|i| dom(i, None)).collect();
        assert!(pick(&lots, "x").unwrap_err().msg.ends_with("and 23 more"));
    }
}
