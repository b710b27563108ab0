//! Xen's per-server range sets: inclusive ranges, no overlap within a set, partial
//! removal splits, at most `MAX_NR_IO_RANGES` entries.

use std::collections::BTreeMap;
use std::io;

use crate::abi::MAX_NR_IO_RANGES;

/// A set of inclusive `[first, last]` ranges.
#[derive(Debug, Default, Clone)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl RangeSet {
    /// Adds `[first, last]`: `EINVAL` if reversed, `EEXIST` on overlap, `ENOSPC` if full.
    pub fn add(&mut self, first: u64, last: u64) -> io::Result<()> {
        if first > last {
            return Err(errno(libc::EINVAL));
        }
        if self.overlaps(first, last) {
            return Err(errno(libc::EEXIST));
        }
        if self.ranges.len() >= MAX_NR_IO_RANGES {
            return Err(errno(libc::ENOSPC));
        }
        self.ranges.insert(first, last);
        Ok(())
    }

    /// Removes `[first, last]`, which must lie inside one registered range (`ENOENT`
    /// otherwise); splits that range.
    pub fn remove(&mut self, first: u64, last: u64) -> io::Result<()> {
        if first > last {
            return Err(errno(libc::EINVAL));
        }
        let (&s, &e) = self
            .ranges
            .range(..=first)
            .next_back()
            .filter(|(_, &e)| e >= last)
            .ok_or_else(|| errno(libc::ENOENT))?;
        self.ranges.remove(&s);
        if s < first {
            self.ranges.insert(s, first - 1);
        }
        if last < e {
            self.ranges.insert(last + 1, e);
        }
        Ok(())
    }

    /// Whether `[first, last]` lies entirely inside one range.
    pub fn contains(&self, first: u64, last: u64) -> bool {
        self.ranges
            .range(..=first)
            .next_back()
            .is_some_and(|(_, &e)| e >= last)
    }

    fn overlaps(&self, first: u64, last: u64) -> bool {
        self.ranges
            .range(..=last)
            .next_back()
            .is_some_and(|(_, &e)| e >= first)
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_split_and_limits() {
        let mut r = RangeSet::default();
        r.add(0x1000, 0x1fff).unwrap();
        assert_eq!(
            r.add(0x1800, 0x2fff).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert_eq!(r.add(2, 1).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert!(r.contains(0x1000, 0x1fff));
        assert!(!r.contains(0x1ff0, 0x2000));
        r.remove(0x1400, 0x14ff).unwrap();
        assert!(r.contains(0x1000, 0x13ff) && r.contains(0x1500, 0x1fff));
        assert!(!r.contains(0x1400, 0x1400));
        assert_eq!(
            r.remove(0x1400, 0x1400).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        for i in 2..MAX_NR_IO_RANGES as u64 {
            r.add(i << 20, i << 20).unwrap();
        }
        assert_eq!(
            r.add(u64::MAX, u64::MAX).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
    }
}
