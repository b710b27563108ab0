//! Guest RAM through cached foreign mappings (QEMU's "mapcache", XenGT's "vmem").
//!
//! Frames are mapped in buckets of [`BUCKET_FRAMES`] consecutive gfns with one batch call
//! that reports per-page errors (holes such as the MMIO hole do not fail the bucket). At
//! most `max_buckets` stay mapped; the least recently used is evicted. A bucket in use is
//! pinned by an `Arc` held during the copy, so eviction or an INVALIDATE flush never
//! unmaps memory that is being copied: the mapping goes away when the last user drops it.
//! [`MapCache`] implements [`GuestMemory`] with copies only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mediator::memory::{GuestMemory, GuestMemoryError, PAGE_SHIFT, PAGE_SIZE};

/// Frames per bucket (1 MiB).
pub const BUCKET_FRAMES: usize = 256;
/// Default bound on mapped buckets (64 MiB).
pub const DEFAULT_MAX_BUCKETS: usize = 64;

/// A batch of mapped frames; per-frame failures are allowed.
pub trait MappedFrames: Send + Sync {
    /// Whether frame `idx` of the batch is mapped.
    fn frame_ok(&self, idx: usize) -> bool;
    /// Copies out of frame `idx` at `offset`; `offset + buf.len() <= PAGE_SIZE`.
    fn read(&self, idx: usize, offset: usize, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Copies into frame `idx` at `offset`; `offset + buf.len() <= PAGE_SIZE`.
    fn write(&self, idx: usize, offset: usize, buf: &[u8]) -> Result<(), GuestMemoryError>;
}

/// Maps batches of guest frames (foreign memory, or the simulated Xen's RAM).
pub trait FrameMapper: Send + Sync {
    /// Maps `count` consecutive frames starting at `first_gfn`.
    fn map(&self, first_gfn: u64, count: usize) -> Result<Arc<dyn MappedFrames>, GuestMemoryError>;
}

/// Counters of the map cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MapCacheStats {
    /// Bucket lookups that hit.
    pub hits: u64,
    /// Buckets mapped.
    pub maps: u64,
    /// Buckets evicted by the LRU bound.
    pub evictions: u64,
    /// INVALIDATE flushes.
    pub flushes: u64,
    /// Buckets currently cached.
    pub cached: u64,
}

#[derive(Default)]
struct Inner {
    buckets: HashMap<u64, (Arc<dyn MappedFrames>, u64)>,
    tick: u64,
    generation: u64,
    stats: MapCacheStats,
}

/// A bounded, LRU-evicted cache of mapped buckets implementing [`GuestMemory`].
pub struct MapCache {
    mapper: Box<dyn FrameMapper>,
    max_buckets: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MapCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapCache")
            .field("max_buckets", &self.max_buckets)
            .field("stats", &self.stats())
            .finish()
    }
}

impl MapCache {
    /// A cache over `mapper` keeping at most `max_buckets` (at least 1) buckets mapped.
    pub fn new(mapper: Box<dyn FrameMapper>, max_buckets: usize) -> Self {
        Self {
            mapper,
            max_buckets: max_buckets.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every cached mapping (INVALIDATE). Mappings in use stay valid until released.
    pub fn invalidate(&self) {
        let mut g = self.lock();
        g.buckets.clear();
        g.generation = g.generation.wrapping_add(1);
        g.stats.flushes = g.stats.flushes.saturating_add(1);
        g.stats.cached = 0;
    }

    /// Current statistics.
    pub fn stats(&self) -> MapCacheStats {
        self.lock().stats
    }

    /// The bucket holding `gfn`, pinned for the caller.
    fn bucket(&self, gfn: u64) -> Result<(Arc<dyn MappedFrames>, usize), GuestMemoryError> {
        let frames = BUCKET_FRAMES as u64;
        let key = gfn / frames;
        let idx = usize::try_from(gfn % frames).unwrap_or(0);
        let generation = {
            let mut g = self.lock();
            g.tick = g.tick.wrapping_add(1);
            let tick = g.tick;
            if let Some((m, used)) = g.buckets.get_mut(&key) {
                *used = tick;
                let m = Arc::clone(m);
                g.stats.hits = g.stats.hits.saturating_add(1);
                return Ok((m, idx));
            }
            g.generation
        };
        // Map outside the lock (a hypercall); insert only if no flush happened meanwhile.
        let first = key * frames;
        let mapped = self.mapper.map(first, BUCKET_FRAMES)?;
        let mut g = self.lock();
        g.stats.maps = g.stats.maps.saturating_add(1);
        if g.generation == generation {
            if g.buckets.len() >= self.max_buckets {
                if let Some(victim) = g
                    .buckets
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| *k)
                {
                    g.buckets.remove(&victim);
                    g.stats.evictions = g.stats.evictions.saturating_add(1);
                }
            }
            let tick = g.tick;
            g.buckets.insert(key, (Arc::clone(&mapped), tick));
            g.stats.cached = g.buckets.len() as u64;
        }
        Ok((mapped, idx))
    }

    /// Splits `[gpa, gpa + len)` into per-frame pieces and runs `f(bucket, idx, offset, range)`.
    fn for_each_piece(
        &self,
        gpa: u64,
        len: usize,
        mut f: impl FnMut(
            &dyn MappedFrames,
            usize,
            usize,
            std::ops::Range<usize>,
        ) -> Result<(), GuestMemoryError>,
    ) -> Result<(), GuestMemoryError> {
        let not_ram = || GuestMemoryError::NotRam {
            gpa,
            len: len as u64,
        };
        let len64 = u64::try_from(len).map_err(|_| not_ram())?;
        if len64 > 0 {
            gpa.checked_add(len64 - 1).ok_or_else(not_ram)?;
        }
        let mut done = 0usize;
        while done < len {
            let addr = gpa + done as u64; // checked above
            let gfn = addr >> PAGE_SHIFT;
            let offset = usize::try_from(addr % PAGE_SIZE).map_err(|_| not_ram())?;
            let chunk = (PAGE_SIZE as usize - offset).min(len - done);
            let (bucket, idx) = self.bucket(gfn)?;
            if !bucket.frame_ok(idx) {
                return Err(GuestMemoryError::NotRam {
                    gpa: addr,
                    len: chunk as u64,
                });
            }
            f(bucket.as_ref(), idx, offset, done..done + chunk)?;
            done += chunk;
        }
        Ok(())
    }
}

impl GuestMemory for MapCache {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len();
        self.for_each_piece(gpa, len, |b, idx, off, r| match buf.get_mut(r) {
            Some(dst) => b.read(idx, off, dst),
            None => Err(GuestMemoryError::NotRam {
                gpa,
                len: len as u64,
            }),
        })
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len();
        self.for_each_piece(gpa, len, |b, idx, off, r| match buf.get(r) {
            Some(src) => b.write(idx, off, src),
            None => Err(GuestMemoryError::NotRam {
                gpa,
                len: len as u64,
            }),
        })
    }

    fn owns_frame(&self, gfn: u64) -> bool {
        if gfn.checked_mul(PAGE_SIZE).is_none() {
            return false;
        }
        self.bucket(gfn).is_ok_and(|(b, idx)| b.frame_ok(idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediator::memory::VecMemory;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Frames backed by a VecMemory; frames >= `limit` fail; counts live mappings.
    struct TestMapper {
        ram: Arc<VecMemory>,
        limit: u64,
        live: Arc<AtomicUsize>,
    }
    struct TestFrames {
        ram: Arc<VecMemory>,
        first: u64,
        limit: u64,
        live: Arc<AtomicUsize>,
    }
    impl Drop for TestFrames {
        fn drop(&mut self) {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    impl MappedFrames for TestFrames {
        fn frame_ok(&self, idx: usize) -> bool {
            self.first + (idx as u64) < self.limit
        }
        fn read(&self, idx: usize, off: usize, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
            self.ram
                .read((self.first + idx as u64) * PAGE_SIZE + off as u64, buf)
        }
        fn write(&self, idx: usize, off: usize, buf: &[u8]) -> Result<(), GuestMemoryError> {
            self.ram
                .write((self.first + idx as u64) * PAGE_SIZE + off as u64, buf)
        }
    }
    impl FrameMapper for TestMapper {
        fn map(&self, first: u64, _n: usize) -> Result<Arc<dyn MappedFrames>, GuestMemoryError> {
            self.live.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(TestFrames {
                ram: Arc::clone(&self.ram),
                first,
                limit: self.limit,
                live: Arc::clone(&self.live),
            }))
        }
    }

    fn cache(max: usize) -> (MapCache, Arc<VecMemory>, Arc<AtomicUsize>) {
        let ram = Arc::new(VecMemory::new(8 << 20));
        let live = Arc::new(AtomicUsize::new(0));
        let m = TestMapper {
            ram: Arc::clone(&ram),
            limit: 1000,
            live: Arc::clone(&live),
        };
        (MapCache::new(Box::new(m), max), ram, live)
    }

    #[test]
    fn copies_across_pages_and_buckets() {
        let (c, ram, _) = cache(4);
        let gpa = (BUCKET_FRAMES as u64) * PAGE_SIZE - 3;
        c.write(gpa, &[1, 2, 3, 4, 5, 6]).unwrap();
        let mut b = [0u8; 6];
        ram.read(gpa, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6]);
        let mut r = [0u8; 6];
        c.read(gpa, &mut r).unwrap();
        assert_eq!(r, b);
        assert_eq!(c.stats().maps, 2);
    }

    #[test]
    fn per_page_errors_and_bounds() {
        let (c, _, _) = cache(4);
        assert!(c.owns_frame(999));
        assert!(!c.owns_frame(1000));
        assert!(!c.owns_frame(u64::MAX));
        assert!(c.read_u32(1000 * PAGE_SIZE).is_err());
        assert!(c.read(u64::MAX - 1, &mut [0u8; 4]).is_err());
        assert!(c.write(999 * PAGE_SIZE + 4094, &[0u8; 4]).is_err());
    }

    #[test]
    fn lru_bound_and_invalidate_unmap() {
        let (c, _, live) = cache(2);
        let bucket = |n: u64| n * BUCKET_FRAMES as u64 * PAGE_SIZE;
        c.read_u32(bucket(0)).unwrap();
        c.read_u32(bucket(1)).unwrap();
        c.read_u32(bucket(0)).unwrap(); // 0 is now most recent
        c.read_u32(bucket(2)).unwrap(); // evicts 1
        assert_eq!(live.load(Ordering::SeqCst), 2);
        let s = c.stats();
        assert_eq!((s.evictions, s.cached), (1, 2));
        c.read_u32(bucket(0)).unwrap();
        assert_eq!(c.stats().hits, 2);
        // pinned mapping survives a flush until released
        let (pinned, _) = c.bucket(0).unwrap();
        c.invalidate();
        assert_eq!(live.load(Ordering::SeqCst), 1);
        drop(pinned);
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert_eq!(c.stats().flushes, 1);
    }
}
