//! Placement of vGPU graphics-memory windows and fences in the host's GGTT (first fit).
//!
//! Stand-in for the mediator core's partitioner until it is wired in: the daemon only needs
//! "give me a low window, a high window and fences of these sizes, or say why not".

use std::collections::BTreeMap;

use crate::config::HostGpu;
use crate::proto::WindowInfo;

const MIB: u64 = 1 << 20;

/// Why a placement failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    /// Not enough contiguous space/fences left.
    #[error("not enough free {what}: need {need}, largest free block {free}")]
    Exhausted {
        /// Which resource.
        what: &'static str,
        /// Requested amount.
        need: u64,
        /// Largest free block.
        free: u64,
    },
    /// Domain already placed.
    #[error("domain {0} already has a placement")]
    Duplicate(u16),
}

/// What one vGPU got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Aperture window (bytes).
    pub low: WindowInfo,
    /// Hidden window (bytes).
    pub high: WindowInfo,
    /// First fence.
    pub fence_base: u32,
    /// Fence count.
    pub fence_count: u32,
}

/// First-fit allocator over the three pools.
#[derive(Clone, Debug)]
pub struct Allocator {
    low_pool: (u64, u64),
    high_pool: (u64, u64),
    fence_pool: (u64, u64),
    placed: BTreeMap<u16, Placement>,
}

fn first_fit(pool: (u64, u64), used: &mut [(u64, u64)], need: u64) -> Result<u64, u64> {
    used.sort_unstable();
    let mut cursor = pool.0;
    let mut largest = 0;
    for &(b, s) in used.iter() {
        if b.saturating_sub(cursor) >= need {
            return Ok(cursor);
        }
        largest = largest.max(b.saturating_sub(cursor));
        cursor = cursor.max(b.saturating_add(s));
    }
    let tail = pool.1.saturating_sub(cursor);
    if tail >= need {
        Ok(cursor)
    } else {
        Err(largest.max(tail))
    }
}

impl Allocator {
    /// Pools from the host description (host reserves come first in each pool).
    pub fn new(h: &HostGpu) -> Self {
        let ap = h.aperture_mib.saturating_mul(MIB);
        let ggtt = h.ggtt_mib.saturating_mul(MIB);
        Allocator {
            low_pool: (h.host_low_mib.saturating_mul(MIB).min(ap), ap),
            high_pool: (
                ap.saturating_add(h.host_high_mib.saturating_mul(MIB))
                    .min(ggtt),
                ggtt,
            ),
            fence_pool: (u64::from(h.host_fences), u64::from(h.fences)),
            placed: BTreeMap::new(),
        }
    }

    /// Reserves windows for `domid`.
    pub fn place(
        &mut self,
        domid: u16,
        low_mib: u64,
        high_mib: u64,
        fences: u32,
    ) -> Result<Placement, AllocError> {
        if self.placed.contains_key(&domid) {
            return Err(AllocError::Duplicate(domid));
        }
        let p = self.fit(low_mib, high_mib, fences)?;
        self.placed.insert(domid, p);
        Ok(p)
    }

    /// Reserves an exact placement (used when resuming a persisted vGPU).
    pub fn place_exact(&mut self, domid: u16, p: Placement) -> Result<(), AllocError> {
        let overlap = |a: WindowInfo, b: WindowInfo| {
            a.base < b.base.saturating_add(b.size) && b.base < a.base.saturating_add(a.size)
        };
        let inside = |w: WindowInfo, pool: (u64, u64)| {
            w.base >= pool.0 && w.base.saturating_add(w.size) <= pool.1
        };
        let fence_end = u64::from(p.fence_base) + u64::from(p.fence_count);
        let clash = self.placed.values().any(|q| {
            overlap(p.low, q.low)
                || overlap(p.high, q.high)
                || (u64::from(p.fence_base) < u64::from(q.fence_base) + u64::from(q.fence_count)
                    && u64::from(q.fence_base) < fence_end
                    && p.fence_count > 0
                    && q.fence_count > 0)
        });
        if self.placed.contains_key(&domid) {
            return Err(AllocError::Duplicate(domid));
        }
        if clash
            || !inside(p.low, self.low_pool)
            || !inside(p.high, self.high_pool)
            || fence_end > self.fence_pool.1
        {
            return Err(AllocError::Exhausted {
                what: "space at the persisted placement",
                need: 0,
                free: 0,
            });
        }
        self.placed.insert(domid, p);
        Ok(())
    }

    fn fit(&self, low_mib: u64, high_mib: u64, fences: u32) -> Result<Placement, AllocError> {
        let low_need = low_mib.saturating_mul(MIB);
        let high_need = high_mib.saturating_mul(MIB);
        let mut lows: Vec<_> = self
            .placed
            .values()
            .map(|p| (p.low.base, p.low.size))
            .collect();
        let mut highs: Vec<_> = self
            .placed
            .values()
            .map(|p| (p.high.base, p.high.size))
            .collect();
        let mut fs: Vec<_> = self
            .placed
            .values()
            .map(|p| (u64::from(p.fence_base), u64::from(p.fence_count)))
            .collect();
        let low = first_fit(self.low_pool, &mut lows, low_need).map_err(|free| {
            AllocError::Exhausted {
                what: "low (aperture) GM bytes",
                need: low_need,
                free,
            }
        })?;
        let high = first_fit(self.high_pool, &mut highs, high_need).map_err(|free| {
            AllocError::Exhausted {
                what: "high GM bytes",
                need: high_need,
                free,
            }
        })?;
        let fb = first_fit(self.fence_pool, &mut fs, u64::from(fences)).map_err(|free| {
            AllocError::Exhausted {
                what: "fence registers",
                need: u64::from(fences),
                free,
            }
        })?;
        Ok(Placement {
            low: WindowInfo {
                base: low,
                size: low_need,
            },
            high: WindowInfo {
                base: high,
                size: high_need,
            },
            fence_base: u32::try_from(fb).unwrap_or(u32::MAX),
            fence_count: fences,
        })
    }

    /// Frees a domain's windows; returns what it had.
    pub fn release(&mut self, domid: u16) -> Option<Placement> {
        self.placed.remove(&domid)
    }

    /// How many more of this size fit (up to `cap`).
    pub fn available(&self, low_mib: u64, high_mib: u64, fences: u32, cap: u32) -> u32 {
        let mut probe = self.clone();
        let mut n = 0;
        let mut id = u16::MAX;
        while n < cap && probe.place(id, low_mib, high_mib, fences).is_ok() {
            n += 1;
            id = id.wrapping_sub(1);
        }
        n
    }

    /// Number of placements.
    pub fn len(&self) -> usize {
        self.placed.len()
    }

    /// True when nothing is placed.
    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_disjoint_and_reuses_freed_space() {
        let mut a = Allocator::new(&HostGpu::default());
        let p1 = a.place(1, 512, 2048, 4).unwrap();
        let p2 = a.place(2, 512, 512, 4).unwrap();
        assert_eq!(p1.low.base, 0);
        assert_eq!(p2.low.base, 512 * MIB);
        assert_ne!(p1.fence_base, p2.fence_base);
        assert!(matches!(
            a.place(3, 64, 64, 4),
            Err(AllocError::Exhausted { .. })
        ));
        assert_eq!(a.available(64, 64, 4, 100), 0);
        a.release(1).unwrap();
        assert_eq!(a.available(512, 2048, 4, 100), 1);
        assert_eq!(a.place(3, 64, 64, 4).unwrap().low.base, 0);
        assert_eq!(a.place(3, 64, 64, 4), Err(AllocError::Duplicate(3)));
    }

    #[test]
    fn host_reserves_and_exact_placement() {
        let h = HostGpu {
            host_low_mib: 64,
            host_fences: 2,
            ..HostGpu::default()
        };
        let mut a = Allocator::new(&h);
        let p = a.place(1, 64, 384, 4).unwrap();
        assert_eq!(p.low.base, 64 * MIB);
        assert_eq!(p.fence_base, 2);
        assert!(a.place_exact(2, p).is_err());
        a.release(1);
        a.place_exact(2, p).unwrap();
        assert_eq!(a.len(), 1);
    }
}
