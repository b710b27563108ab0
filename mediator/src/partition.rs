//! Partitioning the one host GPU between vGPUs (spec §3.3, §4.4).
//!
//! [`HostDescription`] says what the (possibly software) GPU has: GGTT size, aperture
//! size, fence count, and what the host keeps for itself (GVT-g: 128 MiB of low GM, 384
//! MiB of high GM, 4 fences). [`Partitioner`] hands each vGPU a disjoint low window
//! (mappable, inside the aperture), a disjoint high window (above the aperture) and a
//! contiguous fence range, first-fit; [`Partitioner::release`] returns them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// Granule of window sizes and bases (one GGTT page).
pub const GM_PAGE: u64 = 4096;

/// Why a host description or an allocation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PartitionError {
    /// The host description is inconsistent.
    #[error("invalid host description: {0}")]
    InvalidHost(&'static str),
    /// A requested size is zero or not a multiple of 4 KiB.
    #[error("{what} size {value:#x} must be a non-zero multiple of {granule:#x}")]
    BadSize {
        /// Which resource.
        what: &'static str,
        /// Requested size.
        value: u64,
        /// Required granule.
        granule: u64,
    },
    /// Not enough contiguous low (mappable) graphics memory.
    #[error(
        "low GM exhausted: requested {requested:#x} bytes, largest free block {largest_free:#x}"
    )]
    LowExhausted {
        /// Requested bytes.
        requested: u64,
        /// Largest block still free.
        largest_free: u64,
    },
    /// Not enough contiguous high (non-mappable) graphics memory.
    #[error(
        "high GM exhausted: requested {requested:#x} bytes, largest free block {largest_free:#x}"
    )]
    HighExhausted {
        /// Requested bytes.
        requested: u64,
        /// Largest block still free.
        largest_free: u64,
    },
    /// Not enough contiguous fence registers.
    #[error("fences exhausted: requested {requested}, largest free run {largest_free}")]
    FencesExhausted {
        /// Requested fences.
        requested: u32,
        /// Largest contiguous free run.
        largest_free: u32,
    },
    /// Release of something that is not allocated.
    #[error("allocation {0:?} is not held")]
    NotAllocated(Allocation),
}

/// The physical GPU (or software engine) being shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDescription {
    /// PCI device id presented to guests.
    pub device_id: u16,
    /// GGTT address space in bytes (4 GiB with GGMS = 3).
    pub ggtt_size: u64,
    /// Aperture (BAR2) size in bytes: the end of low GM.
    pub aperture_size: u64,
    /// Fence registers on the device.
    pub fence_count: u32,
    /// Low GM kept by the host at the start of the aperture.
    pub host_low_reserve: u64,
    /// High GM kept by the host right above the aperture.
    pub host_high_reserve: u64,
    /// Fences kept by the host (the first ones).
    pub host_fences: u32,
}

impl Default for HostDescription {
    /// SKL GT2 with a 512 MiB aperture, 4 GiB GGTT, 32 fences and GVT-g's host reserve.
    /// 512 MiB (not the 256 MiB common on desktops) leaves room for several vGPUs after
    /// the 128 MiB host reserve.
    fn default() -> Self {
        Self {
            device_id: crate::pci::DEFAULT_DEVICE_ID,
            ggtt_size: 4 << 30,
            aperture_size: 512 * MIB,
            fence_count: 32,
            host_low_reserve: 128 * MIB,
            host_high_reserve: 384 * MIB,
            host_fences: 4,
        }
    }
}

impl HostDescription {
    /// Checks the description is usable.
    pub fn validate(&self) -> Result<(), PartitionError> {
        let e = PartitionError::InvalidHost;
        if !self.aperture_size.is_power_of_two() || self.aperture_size < 16 * MIB {
            return Err(e("aperture size must be a power of two of at least 16 MiB"));
        }
        if self.ggtt_size > (4 << 30) || self.ggtt_size % GM_PAGE != 0 {
            return Err(e("GGTT size must be page aligned and at most 4 GiB"));
        }
        if self.aperture_size >= self.ggtt_size {
            return Err(e("aperture must be smaller than the GGTT"));
        }
        if self.host_low_reserve > self.aperture_size || self.host_low_reserve % GM_PAGE != 0 {
            return Err(e(
                "host low reserve must be page aligned and inside the aperture",
            ));
        }
        let high = self.ggtt_size - self.aperture_size;
        if self.host_high_reserve > high || self.host_high_reserve % GM_PAGE != 0 {
            return Err(e(
                "host high reserve must be page aligned and inside high GM",
            ));
        }
        if self.fence_count > 32 || self.host_fences > self.fence_count {
            return Err(e("at most 32 fences, host fences within them"));
        }
        Ok(())
    }

    /// Low GM available to vGPUs: [reserve end, aperture end).
    pub fn low_pool(&self) -> (u64, u64) {
        (self.host_low_reserve, self.aperture_size)
    }

    /// High GM available to vGPUs: [aperture + reserve, GGTT end).
    pub fn high_pool(&self) -> (u64, u64) {
        (
            self.aperture_size.saturating_add(self.host_high_reserve),
            self.ggtt_size,
        )
    }

    /// Fences available to vGPUs: [host fences, fence count).
    pub fn fence_pool(&self) -> (u64, u64) {
        (u64::from(self.host_fences), u64::from(self.fence_count))
    }
}

/// A graphics-memory window `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GmWindow {
    /// First graphics address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl GmWindow {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `[addr, addr + len)` lies entirely inside.
    pub fn contains_range(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && addr.checked_add(len).is_some_and(|e| e <= self.end())
    }

    /// Whether two windows share an address.
    pub fn overlaps(&self, o: &GmWindow) -> bool {
        self.size > 0 && o.size > 0 && self.base < o.end() && o.base < self.end()
    }
}

/// A contiguous run of host fence registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FenceRange {
    /// First host fence index.
    pub base: u32,
    /// Number of fences.
    pub count: u32,
}

/// Everything one vGPU holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Allocation {
    /// Mappable window (inside the aperture).
    pub low: GmWindow,
    /// Non-mappable window (above the aperture).
    pub high: GmWindow,
    /// Fence registers.
    pub fences: FenceRange,
}

/// First-fit allocator over `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RangeAlloc {
    start: u64,
    end: u64,
    used: BTreeMap<u64, u64>,
}

impl RangeAlloc {
    fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            used: BTreeMap::new(),
        }
    }

    fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut cursor = self.start;
        let mut it = self.used.iter();
        let mut done = false;
        std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            match it.next() {
                Some((&b, &len)) => {
                    let gap = (cursor, b.saturating_sub(cursor));
                    cursor = b.saturating_add(len);
                    if gap.1 > 0 {
                        return Some(gap);
                    }
                }
                None => {
                    done = true;
                    let len = self.end.saturating_sub(cursor);
                    if len > 0 {
                        return Some((cursor, len));
                    }
                }
            }
        })
    }

    fn largest_free(&self) -> u64 {
        self.gaps().map(|(_, l)| l).max().unwrap_or(0)
    }

    fn alloc(&mut self, len: u64) -> Option<u64> {
        let base = self.gaps().find(|&(_, l)| l >= len).map(|(b, _)| b)?;
        self.used.insert(base, len);
        Some(base)
    }

    /// Takes exactly `[base, base + len)` if it lies inside one free gap.
    fn reserve(&mut self, base: u64, len: u64) -> bool {
        let Some(end) = base.checked_add(len) else {
            return false;
        };
        let fits = self
            .gaps()
            .any(|(b, l)| b <= base && b.checked_add(l).is_some_and(|e| end <= e));
        if fits {
            self.used.insert(base, len);
        }
        fits
    }

    fn holds(&self, base: u64, len: u64) -> bool {
        self.used.get(&base) == Some(&len)
    }

    fn free(&mut self, base: u64) {
        self.used.remove(&base);
    }
}

/// Hands out disjoint windows and fence ranges. Plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioner {
    host: HostDescription,
    low: RangeAlloc,
    high: RangeAlloc,
    fences: RangeAlloc,
}

fn check_size(what: &'static str, value: u64) -> Result<(), PartitionError> {
    if value == 0 || value % GM_PAGE != 0 {
        return Err(PartitionError::BadSize {
            what,
            value,
            granule: GM_PAGE,
        });
    }
    Ok(())
}

impl Partitioner {
    /// A partitioner for `host`, with nothing allocated.
    pub fn new(host: HostDescription) -> Result<Self, PartitionError> {
        host.validate()?;
        let (ls, le) = host.low_pool();
        let (hs, he) = host.high_pool();
        let (fs, fe) = host.fence_pool();
        Ok(Self {
            host,
            low: RangeAlloc::new(ls, le),
            high: RangeAlloc::new(hs, he),
            fences: RangeAlloc::new(fs, fe),
        })
    }

    /// The host being partitioned.
    pub fn host(&self) -> &HostDescription {
        &self.host
    }

    /// Allocates `low` bytes of mappable GM, `high` bytes of non-mappable GM and `fences`
    /// fences, all or nothing.
    pub fn allocate(
        &mut self,
        low: u64,
        high: u64,
        fences: u32,
    ) -> Result<Allocation, PartitionError> {
        check_size("low GM", low)?;
        check_size("high GM", high)?;
        let low_largest = self.low.largest_free();
        let high_largest = self.high.largest_free();
        let fence_largest = self.fences.largest_free();
        if low > low_largest {
            return Err(PartitionError::LowExhausted {
                requested: low,
                largest_free: low_largest,
            });
        }
        if high > high_largest {
            return Err(PartitionError::HighExhausted {
                requested: high,
                largest_free: high_largest,
            });
        }
        if u64::from(fences) > fence_largest {
            return Err(PartitionError::FencesExhausted {
                requested: fences,
                largest_free: u32::try_from(fence_largest).unwrap_or(u32::MAX),
            });
        }
        // All three fit, so none of these fail.
        let lb = self.low.alloc(low).ok_or(PartitionError::LowExhausted {
            requested: low,
            largest_free: low_largest,
        })?;
        let hb = match self.high.alloc(high) {
            Some(b) => b,
            None => {
                self.low.free(lb);
                return Err(PartitionError::HighExhausted {
                    requested: high,
                    largest_free: high_largest,
                });
            }
        };
        let fb = if fences == 0 {
            0
        } else {
            match self.fences.alloc(u64::from(fences)) {
                Some(b) => b,
                None => {
                    self.low.free(lb);
                    self.high.free(hb);
                    return Err(PartitionError::FencesExhausted {
                        requested: fences,
                        largest_free: 0,
                    });
                }
            }
        };
        Ok(Allocation {
            low: GmWindow {
                base: lb,
                size: low,
            },
            high: GmWindow {
                base: hb,
                size: high,
            },
            fences: FenceRange {
                base: u32::try_from(fb).unwrap_or(0),
                count: fences,
            },
        })
    }

    /// Takes exactly the windows and fences of `a` (e.g. a vGPU re-created at the
    /// placement its guest already ballooned around), all or nothing. Fails with the
    /// resource that is taken or outside its pool.
    pub fn reserve(&mut self, a: &Allocation) -> Result<(), PartitionError> {
        check_size("low GM", a.low.size)?;
        check_size("high GM", a.high.size)?;
        if a.low.base % GM_PAGE != 0 || a.high.base % GM_PAGE != 0 {
            return Err(PartitionError::NotAllocated(*a));
        }
        if !self.low.reserve(a.low.base, a.low.size) {
            return Err(PartitionError::LowExhausted {
                requested: a.low.size,
                largest_free: self.low.largest_free(),
            });
        }
        if !self.high.reserve(a.high.base, a.high.size) {
            self.low.free(a.low.base);
            return Err(PartitionError::HighExhausted {
                requested: a.high.size,
                largest_free: self.high.largest_free(),
            });
        }
        if a.fences.count > 0
            && !self
                .fences
                .reserve(u64::from(a.fences.base), u64::from(a.fences.count))
        {
            self.low.free(a.low.base);
            self.high.free(a.high.base);
            return Err(PartitionError::FencesExhausted {
                requested: a.fences.count,
                largest_free: u32::try_from(self.fences.largest_free()).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }

    /// Returns everything `a` holds.
    pub fn release(&mut self, a: &Allocation) -> Result<(), PartitionError> {
        let fences_held = a.fences.count == 0
            || self
                .fences
                .holds(u64::from(a.fences.base), u64::from(a.fences.count));
        if !self.low.holds(a.low.base, a.low.size)
            || !self.high.holds(a.high.base, a.high.size)
            || !fences_held
        {
            return Err(PartitionError::NotAllocated(*a));
        }
        self.low.free(a.low.base);
        self.high.free(a.high.base);
        if a.fences.count > 0 {
            self.fences.free(u64::from(a.fences.base));
        }
        Ok(())
    }

    /// How many more allocations of this shape would succeed now.
    pub fn count_fit(&self, low: u64, high: u64, fences: u32) -> u32 {
        let mut trial = self.clone();
        let mut n = 0u32;
        while n < 1024 && trial.allocate(low, high, fences).is_ok() {
            n += 1;
        }
        n
    }

    /// Largest free low block, high block and fence run.
    pub fn largest_free(&self) -> (u64, u64, u32) {
        (
            self.low.largest_free(),
            self.high.largest_free(),
            u32::try_from(self.fences.largest_free()).unwrap_or(u32::MAX),
        )
    }

    /// Whether nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.low.used.is_empty() && self.high.used.is_empty() && self.fences.used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_host_is_valid_and_pools_exclude_reserve() {
        let h = HostDescription::default();
        h.validate().unwrap();
        assert_eq!(h.low_pool(), (128 * MIB, 512 * MIB));
        assert_eq!(h.high_pool(), (896 * MIB, 4 << 30));
        assert_eq!(h.fence_pool(), (4, 32));
        let bad = HostDescription {
            aperture_size: 100 * MIB,
            ..h
        };
        assert!(matches!(
            bad.validate(),
            Err(PartitionError::InvalidHost(_))
        ));
    }

    #[test]
    fn exhaustion_names_the_limit_and_release_returns() {
        let mut p = Partitioner::new(HostDescription::default()).unwrap();
        let a = p.allocate(256 * MIB, 1024 * MIB, 4).unwrap();
        assert_eq!(a.low.base, 128 * MIB);
        let err = p.allocate(256 * MIB, 64 * MIB, 4).unwrap_err();
        assert_eq!(
            err,
            PartitionError::LowExhausted {
                requested: 256 * MIB,
                largest_free: 128 * MIB
            }
        );
        assert!(matches!(
            p.allocate(64 * MIB, 64 * MIB, 40),
            Err(PartitionError::FencesExhausted {
                requested: 40,
                largest_free: 24
            })
        ));
        assert!(matches!(
            p.allocate(0, 64 * MIB, 1),
            Err(PartitionError::BadSize { .. })
        ));
        p.release(&a).unwrap();
        assert!(p.is_empty());
        assert!(matches!(
            p.release(&a),
            Err(PartitionError::NotAllocated(_))
        ));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(u64, u64, u32),
        Destroy(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..=160, 1u64..=600, 0u32..=6).prop_map(|(l, h, f)| Op::Create(
                l * MIB,
                h * MIB,
                f
            )),
            any::<usize>().prop_map(Op::Destroy),
        ]
    }

    fn disjoint(host: &HostDescription, live: &[Allocation]) {
        let reserve_low = GmWindow {
            base: 0,
            size: host.host_low_reserve,
        };
        let reserve_high = GmWindow {
            base: host.aperture_size,
            size: host.host_high_reserve,
        };
        for (i, a) in live.iter().enumerate() {
            assert!(a.low.end() <= host.aperture_size);
            assert!(a.high.base >= host.aperture_size && a.high.end() <= host.ggtt_size);
            for w in [&a.low, &a.high] {
                assert!(!w.overlaps(&reserve_low) && !w.overlaps(&reserve_high));
            }
            assert!(a.fences.count == 0 || a.fences.base >= host.host_fences);
            assert!(a.fences.base + a.fences.count <= host.fence_count);
            for b in &live[i + 1..] {
                assert!(!a.low.overlaps(&b.low) && !a.high.overlaps(&b.high));
                let fa = a.fences.base..a.fences.base + a.fences.count;
                let fb = b.fences.base..b.fences.base + b.fences.count;
                assert!(fa.is_empty() || fb.is_empty() || fa.end <= fb.start || fb.end <= fa.start);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn windows_never_overlap_and_destroy_returns_everything(ops in proptest::collection::vec(op(), 1..64)) {
            let host = HostDescription::default();
            let mut p = Partitioner::new(host).unwrap();
            let fresh = p.clone();
            let mut live: Vec<Allocation> = Vec::new();
            for o in ops {
                match o {
                    Op::Create(l, h, f) => {
                        if live.len() < 64 {
                            if let Ok(a) = p.allocate(l, h, f) {
                                live.push(a);
                            }
                        }
                    }
                    Op::Destroy(i) if !live.is_empty() => {
                        let a = live.swap_remove(i % live.len());
                        p.release(&a).unwrap();
                    }
                    Op::Destroy(_) => {}
                }
                disjoint(&host, &live);
            }
            for a in live.drain(..) {
                p.release(&a).unwrap();
            }
            prop_assert_eq!(p, fresh);
        }
    }
}
