//! GGTT/fence partitioning and the page-table writers of the software host
//! ([`HostPartition`] and [`HostGtt`] for [`SwGpu`]).

use std::collections::HashMap;

use super::space::{Ppgtt, GGTT_ENTRIES};
use super::SwGpu;
use crate::host::{
    GmRange, HostError, HostGtt, HostInfo, HostPartition, HostPte, OwnerId, PpgttHandle,
    Reservation, ReserveRequest,
};
use crate::memory::{PAGE_SHIFT, PAGE_SIZE};

/// Current reservations.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    pub by_owner: HashMap<OwnerId, Reservation>,
}

impl Partitions {
    /// First fit of `size` bytes in `[lo, hi)` avoiding the ranges `taken`.
    fn fit(taken: &[GmRange], lo: u64, hi: u64, size: u64) -> Option<GmRange> {
        let mut sorted: Vec<GmRange> = taken.to_vec();
        sorted.sort_by_key(|r| r.start);
        let mut cur = lo;
        for r in sorted.iter().filter(|r| r.end() > lo && r.start < hi) {
            if r.start >= cur && r.start - cur >= size {
                break;
            }
            cur = cur.max(r.end());
        }
        let end = cur.checked_add(size)?;
        (end <= hi).then_some(GmRange { start: cur, size })
    }

    /// `want` if it lies in `[lo, hi)` and overlaps none of `taken`.
    fn fit_exact(taken: &[GmRange], lo: u64, hi: u64, want: GmRange) -> Option<GmRange> {
        let end = want.start.checked_add(want.size)?;
        let clash = taken
            .iter()
            .any(|r| r.size > 0 && r.start < end && want.start < r.end());
        (want.start >= lo && end <= hi && !clash).then_some(want)
    }

    /// Fences `[base, base + n)` if inside `[first, total)` and free.
    fn fences_exact(&self, first: u32, total: u32, base: u32, n: u32) -> Option<u32> {
        let end = base.checked_add(n)?;
        let clash = self.by_owner.values().any(|r| {
            n > 0 && r.fence_count > 0 && r.fence_base < end && base < r.fence_base + r.fence_count
        });
        (base >= first && end <= total && !clash).then_some(base)
    }

    fn fit_fences(&self, first: u32, total: u32, n: u32) -> Option<u32> {
        let mut taken: Vec<(u32, u32)> = self
            .by_owner
            .values()
            .map(|r| (r.fence_base, r.fence_count))
            .collect();
        taken.sort_unstable();
        let mut cur = first;
        for (b, c) in taken {
            if b >= cur && b - cur >= n {
                break;
            }
            cur = cur.max(b.saturating_add(c));
        }
        (cur.checked_add(n)? <= total).then_some(cur)
    }
}

fn valid_size(s: u64) -> bool {
    s > 0 && s % PAGE_SIZE == 0
}

impl HostPartition for SwGpu {
    fn info(&self) -> HostInfo {
        self.cfg.info.clone()
    }

    fn reserve(&mut self, req: ReserveRequest) -> Result<Reservation, HostError> {
        let owner = req.owner;
        if self.part.by_owner.contains_key(&owner) {
            return Err(HostError::AlreadyReserved(owner));
        }
        let room = |what| HostError::NoRoom { owner, what };
        if !valid_size(req.low_size) || !valid_size(req.high_size) {
            return Err(room("window sizes must be non-zero multiples of 4 KiB"));
        }
        let info = &self.cfg.info;
        let mut lows: Vec<GmRange> = self.part.by_owner.values().map(|r| r.low).collect();
        lows.push(GmRange {
            start: 0,
            size: self.cfg.host_low_reserved,
        });
        let mut highs: Vec<GmRange> = self.part.by_owner.values().map(|r| r.high).collect();
        highs.push(GmRange {
            start: info.aperture_size,
            size: self.cfg.host_high_reserved,
        });
        let (ap, gg, hf, fc) = (
            info.aperture_size,
            info.ggtt_size,
            self.cfg.host_fences,
            info.fence_count,
        );
        let (low, high, fence_base) = match req.at {
            None => (
                Partitions::fit(&lows, 0, ap, req.low_size),
                Partitions::fit(&highs, ap, gg, req.high_size),
                self.part.fit_fences(hf, fc, req.fences),
            ),
            Some(at) => {
                let w = |start, size| GmRange { start, size };
                (
                    Partitions::fit_exact(&lows, 0, ap, w(at.low_start, req.low_size)),
                    Partitions::fit_exact(&highs, ap, gg, w(at.high_start, req.high_size)),
                    self.part.fences_exact(hf, fc, at.fence_base, req.fences),
                )
            }
        };
        let low = low.ok_or(room("low (mappable) GM"))?;
        let high = high.ok_or(room("high GM"))?;
        let fence_base = fence_base.ok_or(room("fences"))?;
        let res = Reservation {
            low,
            high,
            fence_base,
            fence_count: req.fences,
        };
        self.part.by_owner.insert(owner, res);
        self.tables.memory.insert(owner, req.memory);
        Ok(res)
    }

    fn release(&mut self, owner: OwnerId) -> Result<(), HostError> {
        self.part
            .by_owner
            .remove(&owner)
            .ok_or(HostError::UnknownOwner(owner))?;
        self.tables.ggtt.retain(|_, p| p.owner != owner);
        self.tables.ppgtts.retain(|_, p| p.owner != owner);
        self.tables.memory.remove(&owner);
        for e in &mut self.engines {
            e.regs.remove(&owner);
        }
        Ok(())
    }
}

impl SwGpu {
    fn check_frame(&self, owner: OwnerId, pte: Option<HostPte>) -> Result<(), HostError> {
        let Some(p) = pte else { return Ok(()) };
        let mem = self
            .tables
            .memory
            .get(&owner)
            .ok_or(HostError::UnknownOwner(owner))?;
        if p.owner != owner || !mem.owns_frame(p.gfn) {
            return Err(HostError::ForeignFrame { owner, gfn: p.gfn });
        }
        Ok(())
    }
}

impl HostGtt for SwGpu {
    fn ggtt_write(
        &mut self,
        owner: OwnerId,
        index: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError> {
        let res = self
            .part
            .by_owner
            .get(&owner)
            .ok_or(HostError::UnknownOwner(owner))?;
        let gma = index.checked_shl(PAGE_SHIFT).unwrap_or(u64::MAX);
        if index >= GGTT_ENTRIES || !res.contains(gma, PAGE_SIZE) {
            return Err(HostError::GgttIndex { owner, index });
        }
        self.check_frame(owner, pte)?;
        match pte {
            Some(p) => self.tables.ggtt.insert(index, p),
            None => self.tables.ggtt.remove(&index),
        };
        Ok(())
    }

    fn ppgtt_create(&mut self, owner: OwnerId) -> Result<PpgttHandle, HostError> {
        if !self.part.by_owner.contains_key(&owner) {
            return Err(HostError::UnknownOwner(owner));
        }
        let n = self
            .tables
            .ppgtts
            .values()
            .filter(|p| p.owner == owner)
            .count();
        if n >= self.cfg.max_ppgtts_per_owner {
            return Err(HostError::Limit("shadow PPGTTs per owner"));
        }
        let h = PpgttHandle(self.next_ppgtt);
        self.next_ppgtt = self.next_ppgtt.wrapping_add(1);
        self.tables.ppgtts.insert(
            h,
            Ppgtt {
                owner,
                pages: HashMap::new(),
            },
        );
        Ok(h)
    }

    fn ppgtt_map(
        &mut self,
        handle: PpgttHandle,
        gma: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError> {
        let owner = self
            .tables
            .ppgtts
            .get(&handle)
            .map(|p| p.owner)
            .ok_or(HostError::UnknownPpgtt(handle))?;
        self.check_frame(owner, pte)?;
        let page = (gma >> PAGE_SHIFT) & 0xF_FFFF_FFFF;
        let pages = &mut self
            .tables
            .ppgtts
            .get_mut(&handle)
            .ok_or(HostError::UnknownPpgtt(handle))?
            .pages;
        match pte {
            Some(p) => pages.insert(page, p),
            None => pages.remove(&page),
        };
        Ok(())
    }

    fn ppgtt_destroy(&mut self, handle: PpgttHandle) -> Result<(), HostError> {
        self.tables
            .ppgtts
            .remove(&handle)
            .map(|_| ())
            .ok_or(HostError::UnknownPpgtt(handle))
    }
}
