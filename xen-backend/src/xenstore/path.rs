//! Path and token validation (xen-abi.md §3.4: `[A-Za-z0-9-/_@]`, no trailing or double
//! slashes, absolute ≤ 3072 bytes, relative ≤ 2048).

use super::wire::ABS_PATH_MAX;
use super::XsError;

const REL_PATH_MAX: usize = 2048;

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Checks a XenStore path. Special watch paths (`@releaseDomain`, `@introduceDomain`)
/// are accepted too.
pub fn validate_path(path: &str) -> Result<(), XsError> {
    let bad = |why| Err(XsError::InvalidPath(path.to_string(), why));
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('@') {
        return if path.bytes().skip(1).all(|c| c.is_ascii_alphanumeric()) && path.len() > 1 {
            Ok(())
        } else {
            bad("special path must be @ followed by letters")
        };
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.len() > max {
        return bad("too long");
    }
    if !path.bytes().all(valid_char) {
        return bad("characters outside [A-Za-z0-9-/_@]");
    }
    if path.contains("//") {
        return bad("double slash");
    }
    if path.len() > 1 && path.ends_with('/') {
        return bad("trailing slash");
    }
    Ok(())
}

/// Checks a watch token: non-empty printable ASCII without NUL.
pub fn validate_token(token: &str) -> Result<(), XsError> {
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(XsError::InvalidPath(
            token.to_string(),
            "token must be 1-256 printable ASCII characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid() {
        for p in ["/", "/local/domain/0", "@releaseDomain", "a/b-c_d", "/x@y"] {
            validate_path(p).unwrap();
        }
    }

    #[test]
    fn rejects_invalid() {
        let long = format!("/{}", "a".repeat(3072));
        for p in [
            "", "/a//b", "/a/", "/a b", "/a\0b", "@", "@a/b", &long, "/ä",
        ] {
            assert!(validate_path(p).is_err(), "{p:?}");
        }
        assert!(validate_token("").is_err());
        assert!(validate_token("a b").is_err());
        validate_token("tok-1").unwrap();
    }
}
