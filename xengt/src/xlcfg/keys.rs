//! The `vgt*` keys this parser knows, and the nearest one to a typo.
//!
//! xl ignores keys it does not know, so `vgt_low_gm_size = 256` would silently give the
//! guest the default type. Every key starting with `vgt` (any case) must be one of
//! [`VGT_KEYS`]; other keys belong to xl and are left alone.

/// Every `vgt*` key read by [`super::parse`] (xen-abi.md §5.5 plus `vgt_ggtt_backing`).
pub const VGT_KEYS: [&str; 7] = [
    "vgt",
    "vgt_low_gm_sz",
    "vgt_high_gm_sz",
    "vgt_fence_sz",
    "vgt_primary",
    "vgt_monitor_config_file",
    "vgt_ggtt_backing",
];

/// Whether `key` claims to be a vGPU key but is not one of [`VGT_KEYS`].
pub fn is_unknown_vgt_key(key: &str) -> bool {
    key.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("vgt")) && !VGT_KEYS.contains(&key)
}

/// The known key closest to `key` by edit distance, if it is close enough to be a typo
/// (at most a third of the key's length, and at least 3 edits allowed).
pub fn nearest_vgt_key(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    let limit = (key.chars().count() / 3).max(3);
    VGT_KEYS
        .iter()
        .map(|k| (edit_distance(&key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The error text for an unknown `vgt*` key.
pub fn unknown_key_message(key: &str) -> String {
    match nearest_vgt_key(key) {
        Some(k) => format!("unknown vGPU key; did you mean {k}?"),
        None => format!("unknown vGPU key; known: {}", VGT_KEYS.join(", ")),
    }
}

/// Levenshtein distance (insertions, deletions, substitutions) over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("vgt_low_gm_size", "vgt_low_gm_sz"), 2);
    }

    #[test]
    fn typos_find_their_key() {
        for (typo, want) in [
            ("vgt_low_gm_size", "vgt_low_gm_sz"),
            ("vgt_high_gm_size", "vgt_high_gm_sz"),
            ("vgt_fenc_sz", "vgt_fence_sz"),
            ("vgt_fence_size", "vgt_fence_sz"),
            ("VGT_PRIMARY", "vgt_primary"),
            ("vgt_monitor_config", "vgt_monitor_config_file"),
            ("vgtt", "vgt"),
        ] {
            assert!(is_unknown_vgt_key(typo), "{typo}");
            assert_eq!(nearest_vgt_key(typo), Some(want), "{typo}");
        }
        assert_eq!(nearest_vgt_key("vgt_something_else_entirely"), None);
        assert!(unknown_key_message("vgt_zzzzzzzzzzzzzzzzzzz").contains("known: vgt, "));
    }

    #[test]
    fn known_and_foreign_keys_pass() {
        for k in VGT_KEYS {
            assert!(!is_unknown_vgt_key(k));
        }
        for k in [
            "memory",
            "maxmem",
            "vga",
            "vg",
            "v",
            "",
            "gvt_low_gm_sz",
            "é",
        ] {
            assert!(!is_unknown_vgt_key(k), "{k}");
        }
    }
}
