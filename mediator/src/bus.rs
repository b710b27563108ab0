//! Address routing with declared access rules.
//!
//! A [`Bus`] maps newtyped guest-physical ranges of one address [`Space`] to region keys.
//! Each region declares the access sizes and alignment the guest may use
//! ([`AccessRules`]), separately from what its handler implements. The bus rejects
//! overlapping registrations, accesses that straddle a region boundary, and accesses the
//! rules forbid; callers answer rejected reads with all-ones ([`fill_unclaimed`]) and drop
//! rejected writes.
//!
//! [`IoHandler`] is the one entry point a backend calls for a trapped access.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::effects::Effects;

/// The address space an access targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Space {
    /// Guest-physical memory-mapped I/O.
    Mmio,
    /// x86 port I/O.
    Pio,
    /// PCI configuration space; the address is `sbdf << 32 | register`.
    PciConfig,
}

/// A guest-physical (or port, or config) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GuestAddress(pub u64);

/// A non-empty, non-wrapping range `[base, base + len)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GuestRange {
    base: u64,
    len: u64,
}

impl fmt::Debug for GuestRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}..{:#x}",
            self.base,
            self.base.wrapping_add(self.len)
        )
    }
}

impl GuestRange {
    /// A range of `len` bytes at `base`; `None` if empty or if it would wrap.
    pub fn new(base: u64, len: u64) -> Option<Self> {
        if len == 0 {
            return None;
        }
        base.checked_add(len - 1)?;
        Some(Self { base, len })
    }

    /// First address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a range is never empty. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Last address (inclusive), as Xen's range calls want it.
    pub fn last(&self) -> u64 {
        self.base + (self.len - 1)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr <= self.last()
    }

    /// Whether the two ranges share any address.
    pub fn overlaps(&self, other: &GuestRange) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

/// Which accesses a region accepts: a set of sizes and whether they must be naturally
/// aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRules {
    /// Bit `n` set means an access of `1 << n` bytes is valid (n = 0..=3).
    pub sizes: u8,
    /// Whether the address must be a multiple of the access size.
    pub aligned: bool,
}

impl AccessRules {
    /// Any of 1, 2, 4, 8 bytes at any alignment.
    pub const ANY: Self = Self {
        sizes: 0b1111,
        aligned: false,
    };
    /// 1, 2, 4 or 8 bytes, naturally aligned.
    pub const NATURAL: Self = Self {
        sizes: 0b1111,
        aligned: true,
    };
    /// 4 or 8 bytes, naturally aligned (GTT entries, most registers).
    pub const DWORD_QWORD: Self = Self {
        sizes: 0b1100,
        aligned: true,
    };

    /// Whether an access of `size` bytes at `addr` is permitted.
    pub fn permits(&self, addr: u64, size: usize) -> bool {
        let bit = match size {
            1 => 0,
            2 => 1,
            4 => 2,
            8 => 3,
            _ => return false,
        };
        self.sizes & (1 << bit) != 0 && (!self.aligned || addr % size as u64 == 0)
    }
}

/// Why a registration or an access was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already registered.
    #[error("range {new:?} overlaps registered range {existing:?}")]
    Overlap {
        new: GuestRange,
        existing: GuestRange,
    },
    /// Nothing is registered at that address.
    #[error("no region at {addr:#x}")]
    Unclaimed { addr: u64 },
    /// The access starts in a region but does not end in it.
    #[error("access {addr:#x}+{size} straddles the end of {range:?}")]
    Straddle {
        addr: u64,
        size: usize,
        range: GuestRange,
    },
    /// The region's rules do not allow this size or alignment.
    #[error("access {addr:#x}+{size} violates the region's access rules")]
    Rules { addr: u64, size: usize },
    /// Zero-length or wrapping access.
    #[error("malformed access {addr:#x}+{size}")]
    Malformed { addr: u64, size: usize },
    /// No registration with that range exists.
    #[error("range {0:?} is not registered")]
    NotRegistered(GuestRange),
}

#[derive(Clone, Debug)]
struct Region<K> {
    range: GuestRange,
    rules: AccessRules,
    key: K,
}

/// Where an access landed: the region's key and the offset inside the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved<K> {
    /// The key the region was registered with.
    pub key: K,
    /// Offset of the access from the region's base.
    pub offset: u64,
    /// The region's range.
    pub range: GuestRange,
}

/// Routes addresses of one space to region keys.
#[derive(Clone, Debug)]
pub struct Bus<K> {
    regions: BTreeMap<u64, Region<K>>,
}

impl<K> Default for Bus<K> {
    fn default() -> Self {
        Self {
            regions: BTreeMap::new(),
        }
    }
}

impl<K: Copy + PartialEq> Bus<K> {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `range` for `key`; refuses overlaps.
    pub fn insert(
        &mut self,
        range: GuestRange,
        rules: AccessRules,
        key: K,
    ) -> Result<(), BusError> {
        if let Some(existing) = self.find_overlap(&range) {
            return Err(BusError::Overlap {
                new: range,
                existing,
            });
        }
        self.regions
            .insert(range.base, Region { range, rules, key });
        Ok(())
    }

    /// Removes the registration of exactly `range`.
    pub fn remove(&mut self, range: GuestRange) -> Result<K, BusError> {
        match self.regions.get(&range.base) {
            Some(r) if r.range == range => {}
            _ => return Err(BusError::NotRegistered(range)),
        }
        self.regions
            .remove(&range.base)
            .map(|r| r.key)
            .ok_or(BusError::NotRegistered(range))
    }

    /// Removes every registration of `key`, returning the ranges removed.
    pub fn remove_key(&mut self, key: K) -> Vec<GuestRange> {
        let ranges: Vec<GuestRange> = self
            .regions
            .values()
            .filter(|r| r.key == key)
            .map(|r| r.range)
            .collect();
        for r in &ranges {
            self.regions.remove(&r.base);
        }
        ranges
    }

    /// The range registered for `key`, if any (the first, if several).
    pub fn range_of(&self, key: K) -> Option<GuestRange> {
        self.regions
            .values()
            .find(|r| r.key == key)
            .map(|r| r.range)
    }

    /// Every registration in address order.
    pub fn iter(&self) -> impl Iterator<Item = (GuestRange, K)> + '_ {
        self.regions.values().map(|r| (r.range, r.key))
    }

    /// Resolves an access of `size` bytes at `addr`, applying the region's rules.
    pub fn resolve(&self, addr: u64, size: usize) -> Result<Resolved<K>, BusError> {
        let malformed = BusError::Malformed { addr, size };
        let last = u64::try_from(size)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|s| addr.checked_add(s))
            .ok_or(malformed)?;
        let region = self
            .regions
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.range.contains(addr))
            .ok_or(BusError::Unclaimed { addr })?;
        if !region.range.contains(last) {
            return Err(BusError::Straddle {
                addr,
                size,
                range: region.range,
            });
        }
        if !region.rules.permits(addr, size) {
            return Err(BusError::Rules { addr, size });
        }
        Ok(Resolved {
            key: region.key,
            offset: addr - region.range.base,
            range: region.range,
        })
    }

    fn find_overlap(&self, range: &GuestRange) -> Option<GuestRange> {
        // The only candidates are the last region starting at or before `range.last()`.
        self.regions
            .range(..=range.last())
            .next_back()
            .map(|(_, r)| r.range)
            .filter(|r| r.overlaps(range))
    }
}

/// Answers a read of unclaimed or refused space: all bits set, as a PCI bus does.
pub fn fill_unclaimed(data: &mut [u8]) {
    data.fill(0xff);
}

/// The device side of a trapped access: what a backend's dispatch loop calls.
///
/// `addr` is absolute in `space` (for [`Space::PciConfig`], `sbdf << 32 | register`).
/// `data.len()` is the access size (1, 2, 4 or 8). Implementations never panic on any
/// address, size or value; what they cannot serve they answer with all-ones (reads) or
/// ignore (writes), and count.
pub trait IoHandler: Send {
    /// Serves a read, filling `data` (little-endian).
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], fx: &mut Effects);
    /// Serves a write of `data` (little-endian).
    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects);
}

/// Little-endian value of an access buffer of at most 8 bytes (extra bytes ignored).
pub fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Stores the low `data.len()` bytes of `value` little-endian into `data` (at most 8).
pub fn set_le_value(data: &mut [u8], value: u64) {
    let b = value.to_le_bytes();
    let n = data.len().min(8);
    data[..n].copy_from_slice(&b[..n]);
    for d in data.iter_mut().skip(8) {
        *d = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: u64, len: u64) -> GuestRange {
        GuestRange::new(base, len).unwrap()
    }

    #[test]
    fn ranges_refuse_empty_and_wrapping() {
        assert!(GuestRange::new(0, 0).is_none());
        assert!(GuestRange::new(u64::MAX, 2).is_none());
        assert_eq!(GuestRange::new(u64::MAX, 1).unwrap().last(), u64::MAX);
    }

    #[test]
    fn overlapping_registrations_are_rejected() {
        let mut bus = Bus::new();
        bus.insert(r(0x1000, 0x1000), AccessRules::ANY, 1).unwrap();
        assert!(matches!(
            bus.insert(r(0x1800, 0x1000), AccessRules::ANY, 2),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(r(0x0, 0x1001), AccessRules::ANY, 2),
            Err(BusError::Overlap { .. })
        ));
        bus.insert(r(0x2000, 0x10), AccessRules::ANY, 2).unwrap();
        bus.insert(r(0x0, 0x1000), AccessRules::ANY, 3).unwrap();
    }

    #[test]
    fn straddling_and_rule_violations_are_rejected() {
        let mut bus = Bus::new();
        bus.insert(r(0x1000, 0x100), AccessRules::DWORD_QWORD, 7)
            .unwrap();
        assert_eq!(bus.resolve(0x1004, 4).unwrap().offset, 4);
        assert!(matches!(
            bus.resolve(0x10fc, 8),
            Err(BusError::Straddle { .. })
        ));
        assert!(matches!(
            bus.resolve(0x1002, 4),
            Err(BusError::Rules { .. })
        ));
        assert!(matches!(
            bus.resolve(0x1000, 1),
            Err(BusError::Rules { .. })
        ));
        assert!(matches!(
            bus.resolve(0x1000, 3),
            Err(BusError::Rules { .. })
        ));
        assert!(matches!(
            bus.resolve(0x0fff, 1),
            Err(BusError::Unclaimed { .. })
        ));
        assert!(matches!(
            bus.resolve(u64::MAX, 2),
            Err(BusError::Malformed { .. })
        ));
        assert!(matches!(
            bus.resolve(0x1000, 0),
            Err(BusError::Malformed { .. })
        ));
    }

    #[test]
    fn remove_requires_exact_range() {
        let mut bus = Bus::new();
        bus.insert(r(0x1000, 0x100), AccessRules::ANY, 7).unwrap();
        assert!(bus.remove(r(0x1000, 0x80)).is_err());
        assert_eq!(bus.remove(r(0x1000, 0x100)).unwrap(), 7);
        assert!(bus.resolve(0x1000, 1).is_err());
    }

    #[test]
    fn le_helpers_round_trip() {
        let mut d = [0u8; 2];
        set_le_value(&mut d, 0x1234_5678);
        assert_eq!(le_value(&d), 0x5678);
        let mut u = [0u8; 4];
        fill_unclaimed(&mut u);
        assert_eq!(le_value(&u), 0xffff_ffff);
    }
}
