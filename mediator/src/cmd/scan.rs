//! The scanner: copies a ring slice and every batch it reaches out of guest memory, decodes
//! every command by the §6.1 length rules, audits it (§6.6, [`super::rules`]) and returns a
//! [`ShadowWorkload`] built from the copies, or a [`ScanReject`] with a countable reason.
//!
//! Guest memory is read exactly once per buffer (copy, then validate the copy), so a guest
//! that rewrites a batch after the scan changes nothing. Every structural limit is
//! enforced: batch nesting (two levels, §6.3), chain length (a chain loop runs from the
//! copies and ends in the engine's hang detection), total copied
//! size, commands truncated by the end of the buffer, ring commands running past the tail.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::audit::{in_windows, RegWhitelist};
use super::fetch::GmReader;
use super::parse::Cmd;
use super::rules::{audit, BufCtx, Flow};
use super::table::DecodeTable;
use super::workload::{BatchKey, ShadowBatch, ShadowWorkload, WorkloadContext};
use crate::host::{EngineId, GmRange, OwnerId, PpgttHandle};
use crate::memory::{GuestMemory, PAGE_SIZE};

/// Address space of a guest graphics address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GmSpace {
    /// The vGPU's view of the GGTT.
    Ggtt,
    /// The submitting context's (guest) PPGTT.
    Ppgtt,
}

/// Caller-provided translation from a guest graphics address to a guest-physical address
/// (through the guest's GGTT or the context's PPGTT). Called once per page read.
pub trait GmTranslate {
    /// The guest-physical address of `gma`, or `None` if unmapped.
    fn gma_to_gpa(&self, space: GmSpace, gma: u64) -> Option<u64>;
}

impl<F: Fn(GmSpace, u64) -> Option<u64>> GmTranslate for F {
    fn gma_to_gpa(&self, space: GmSpace, gma: u64) -> Option<u64> {
        self(space, gma)
    }
}

/// Why a workload was rejected. Field-less so callers can count per reason
/// ([`RejectCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Ring start/size/head/tail inconsistent or misaligned.
    BadRingGeometry,
    /// Ring or batch memory not mapped (translation or guest-RAM failure).
    Unmapped,
    /// A batch ends (unmapped memory or size limit) inside a command.
    Truncated,
    /// A batch ends between commands without MI_BATCH_BUFFER_END or a chain.
    MissingBatchEnd,
    /// A ring command's length runs past the tail.
    RunsPastTail,
    /// Unknown opcode, or a command for another engine.
    UnknownCommand,
    /// A known command with an invalid length.
    BadLength,
    /// A command a privileged buffer may not contain (§6.6 "unexpected command").
    ForbiddenCommand,
    /// LRI/LRM/SRM/LRR to a register outside the whitelist.
    RegisterNotAllowed,
    /// A GGTT address outside the vGPU's windows (or larger than 36 MiB).
    AddressOutOfWindow,
    /// A store-data-index offset beyond the status page.
    IndexOutOfRange,
    /// A second-level batch started from the ring or from a second-level batch.
    NestingTooDeep,
    /// A chain into a batch whose copy is still being made (a loop through a call
    /// that has not finished); loops back to finished copies are accepted.
    ChainLoop,
    /// Too many chain hops.
    TooManyChains,
    /// Too many distinct batches.
    TooManyBatches,
    /// Total copied bytes beyond the limit.
    TooLarge,
    /// A PPGTT batch in a context without a PPGTT.
    PpgttWithoutContext,
}

impl RejectReason {
    /// Every reason, in [`RejectReason::index`] order.
    pub const ALL: [RejectReason; 17] = [
        RejectReason::BadRingGeometry,
        RejectReason::Unmapped,
        RejectReason::Truncated,
        RejectReason::MissingBatchEnd,
        RejectReason::RunsPastTail,
        RejectReason::UnknownCommand,
        RejectReason::BadLength,
        RejectReason::ForbiddenCommand,
        RejectReason::RegisterNotAllowed,
        RejectReason::AddressOutOfWindow,
        RejectReason::IndexOutOfRange,
        RejectReason::NestingTooDeep,
        RejectReason::ChainLoop,
        RejectReason::TooManyChains,
        RejectReason::TooManyBatches,
        RejectReason::TooLarge,
        RejectReason::PpgttWithoutContext,
    ];

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Which buffer a rejection is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferId {
    /// The ring slice (offset relative to the head).
    Ring,
    /// A batch.
    Batch(BatchKey),
}

/// A rejected workload: reason, buffer, byte offset in it and the header involved.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("workload rejected: {reason:?} in {buffer:?} at +{offset:#x} (header {header:#010x})")]
pub struct ScanReject {
    /// Why.
    pub reason: RejectReason,
    /// Where.
    pub buffer: BufferId,
    /// Byte offset inside the buffer.
    pub offset: u64,
    /// The command header (0 if none).
    pub header: u32,
}

/// Per-reason rejection counters for a vGPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectCounters {
    counts: [u64; 17],
}

impl RejectCounters {
    /// Counts one rejection.
    pub fn record(&mut self, reason: RejectReason) {
        if let Some(c) = self.counts.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
    /// How many rejections had `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.counts.get(reason.index()).copied().unwrap_or(0)
    }
    /// Total rejections.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, c| a.saturating_add(*c))
    }
}

/// Structural limits. Nesting depth is fixed by hardware (ring → first → second level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Chain hops allowed in one chain sequence.
    pub max_chain: u32,
    /// Distinct batches per workload.
    pub max_batches: usize,
    /// Total bytes copied (ring plus batches).
    pub max_total_bytes: u64,
}

impl Default for ScanLimits {
    fn default() -> Self {
        Self {
            max_chain: 64,
            max_batches: 256,
            max_total_bytes: 16 << 20,
        }
    }
}

/// The ring slice to scan (values from the context image, §5.5, §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSlice {
    /// RING_START: GGTT address, 4 KiB aligned.
    pub start: u64,
    /// Ring size in bytes: a multiple of 4 KiB, at most 2 MiB.
    pub size: u32,
    /// Head byte offset (dword aligned, < size).
    pub head: u32,
    /// Tail byte offset (qword aligned, < size).
    pub tail: u32,
}

/// Everything the scanner needs to know about one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanRequest {
    /// Owner of the workload.
    pub owner: OwnerId,
    /// Engine it targets (selects the length rules and the register whitelist).
    pub engine: EngineId,
    /// Submitter's tag, echoed by the host.
    pub tag: u64,
    /// Submitter's sequence number, echoed by the host.
    pub seqno: u32,
    /// Ring location and the slice to run.
    pub ring: RingSlice,
    /// The vGPU's GGTT windows (low, high) for the address audit.
    pub windows: [GmRange; 2],
    /// Host shadow PPGTT of the context; `None` if the context has no PPGTT.
    pub ppgtt: Option<PpgttHandle>,
    /// Context information passed to the executor.
    pub context: WorkloadContext,
}

/// The scanner: stateless apart from its configuration, so one per engine can be shared.
#[derive(Debug, Clone)]
pub struct Scanner {
    limits: ScanLimits,
    regs: RegWhitelist,
}

impl Scanner {
    /// A scanner for `engine` with Gen9 register rules.
    pub fn new(engine: EngineId, limits: ScanLimits) -> Self {
        Self {
            limits,
            regs: RegWhitelist::gen9(engine),
        }
    }

    /// The register whitelist, e.g. to add registers learnt from a golden context.
    pub fn regs_mut(&mut self) -> &mut RegWhitelist {
        &mut self.regs
    }

    /// Copies, decodes and audits one submission. Never panics.
    pub fn scan(
        &self,
        req: &ScanRequest,
        mem: &dyn GuestMemory,
        tr: &dyn GmTranslate,
    ) -> Result<ShadowWorkload, ScanReject> {
        let mut st = ScanState {
            scanner: self,
            req,
            gm: GmReader { mem, tr },
            table: DecodeTable::for_engine(req.engine),
            batches: Vec::new(),
            done: BTreeMap::new(),
            in_progress: BTreeSet::new(),
            total: 0,
        };
        let ring = st.scan_ring()?;
        Ok(ShadowWorkload {
            owner: req.owner,
            engine: req.engine,
            tag: req.tag,
            seqno: req.seqno,
            ppgtt: req.ppgtt,
            context: req.context,
            ring_head: req.ring.head,
            ring_tail: req.ring.tail,
            ring,
            batches: st.batches,
        })
    }
}

struct ScanState<'a> {
    scanner: &'a Scanner,
    req: &'a ScanRequest,
    gm: GmReader<'a>,
    table: &'static DecodeTable,
    batches: Vec<ShadowBatch>,
    /// Ordered maps: keys are guest-chosen, so no hashing (and no hash flooding).
    done: BTreeMap<BatchKey, usize>,
    in_progress: BTreeSet<BatchKey>,
    total: u64,
}

fn reject(reason: RejectReason, buffer: BufferId, offset: usize, header: u32) -> ScanReject {
    ScanReject {
        reason,
        buffer,
        offset: (offset as u64).saturating_mul(4),
        header,
    }
}

impl ScanState<'_> {
    fn ctx(&self, level: u8, ppgtt: bool) -> BufCtx<'_> {
        BufCtx {
            level,
            ppgtt,
            has_ppgtt: self.req.ppgtt.is_some(),
            regs: &self.scanner.regs,
            windows: &self.req.windows,
        }
    }

    fn charge(&mut self, bytes: u64, buffer: BufferId) -> Result<(), ScanReject> {
        self.total = self.total.saturating_add(bytes);
        if self.total > self.scanner.limits.max_total_bytes {
            return Err(reject(RejectReason::TooLarge, buffer, 0, 0));
        }
        Ok(())
    }

    fn scan_ring(&mut self) -> Result<Vec<u32>, ScanReject> {
        let r = self.req.ring;
        let bad = |o| reject(RejectReason::BadRingGeometry, BufferId::Ring, o, 0);
        let size_ok = r.size > 0 && r.size % 4096 == 0 && r.size <= 2 << 20;
        if !size_ok || r.start % 4096 != 0 || r.head >= r.size || r.tail >= r.size {
            return Err(bad(0));
        }
        if r.head % 4 != 0 || r.tail % 8 != 0 {
            return Err(bad(0));
        }
        if !in_windows(&self.req.windows, r.start, u64::from(r.size)) {
            return Err(reject(
                RejectReason::AddressOutOfWindow,
                BufferId::Ring,
                0,
                0,
            ));
        }
        let len = if r.tail >= r.head {
            r.tail - r.head
        } else {
            r.size - r.head + r.tail
        };
        self.charge(u64::from(len), BufferId::Ring)?;
        // `len` < 2 MiB: lossless.
        let mut dwords = vec![0u32; len as usize / 4];
        let first = (r.size - r.head).min(len) as usize / 4;
        let (a, b) = dwords.split_at_mut(first);
        let ok = self
            .gm
            .read(GmSpace::Ggtt, r.start.saturating_add(u64::from(r.head)), a)
            && self.gm.read(GmSpace::Ggtt, r.start, b);
        if !ok {
            return Err(reject(RejectReason::Unmapped, BufferId::Ring, 0, 0));
        }
        self.walk_ring(&mut dwords)?;
        Ok(dwords)
    }

    fn walk_ring(&mut self, dwords: &mut [u32]) -> Result<(), ScanReject> {
        let mut i = 0usize;
        loop {
            i = self.table.skip_plain(dwords, i);
            let Some(&h) = dwords.get(i) else {
                return Ok(());
            };
            let (op, len) = self
                .table
                .op_len(h)
                .ok_or_else(|| reject(RejectReason::UnknownCommand, BufferId::Ring, i, h))?;
            let cmd = Cmd { header: h, op, len };
            let end = i.saturating_add(cmd.len as usize);
            let body = dwords
                .get_mut(i..end)
                .ok_or_else(|| reject(RejectReason::RunsPastTail, BufferId::Ring, i, h))?;
            let flow = audit(&self.ctx(0, false), cmd, body)
                .map_err(|r| reject(r, BufferId::Ring, i, h))?;
            if let Flow::Call(key) = flow {
                self.scan_chain(key)?;
            }
            i = end;
        }
    }

    /// Scans the batch at `key` and everything it chains to.
    fn scan_chain(&mut self, start: BatchKey) -> Result<(), ScanReject> {
        let mut key = start;
        let mut path = Vec::new();
        let mut hops = 0u32;
        let res = loop {
            // A chain back to a batch already copied (a loop, e.g. i915's self-jumping
            // hang batch) runs from that copy; the engine's hang detection ends it.
            if self.done.contains_key(&key) {
                break Ok(());
            }
            if self.in_progress.contains(&key) {
                break Err(reject(RejectReason::ChainLoop, BufferId::Batch(key), 0, 0));
            }
            if hops > self.scanner.limits.max_chain {
                break Err(reject(
                    RejectReason::TooManyChains,
                    BufferId::Batch(key),
                    0,
                    0,
                ));
            }
            hops += 1;
            self.in_progress.insert(key);
            path.push(key);
            match self.scan_batch(key) {
                Ok(Some(next)) => key = next,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        for k in path {
            self.in_progress.remove(&k);
        }
        res
    }

    /// Copies and audits one batch; returns its chain target, if it ends in a chain.
    ///
    /// The batch is copied in growing page-aligned chunks (its end is only known once it
    /// is decoded); each chunk is decoded right after it is copied, while it is in cache.
    /// Commands that only need their length are skipped by the table
    /// ([`DecodeTable::skip_plain`]); the others are decoded, completed and audited.
    fn scan_batch(&mut self, key: BatchKey) -> Result<Option<BatchKey>, ScanReject> {
        if self.batches.len() >= self.scanner.limits.max_batches {
            return Err(reject(
                RejectReason::TooManyBatches,
                BufferId::Batch(key),
                0,
                0,
            ));
        }
        let buf = BufferId::Batch(key);
        let space = if key.ppgtt {
            GmSpace::Ppgtt
        } else {
            GmSpace::Ggtt
        };
        let mut src = BatchSource {
            base: key.gma,
            space,
            dwords: Vec::new(),
            ended: false,
        };
        // Batches this one calls, in order, each once (a batch calling the same
        // second-level batch per draw scans it once).
        let mut calls = Vec::new();
        let mut called = CallSet::default();
        let scanner: &Scanner = self.scanner;
        let ctx = BufCtx {
            level: key.level,
            ppgtt: key.ppgtt,
            has_ppgtt: self.req.ppgtt.is_some(),
            regs: &scanner.regs,
            windows: &self.req.windows,
        };
        let mut i = 0usize;
        let next = loop {
            i = self.table.skip_plain(&src.dwords, i);
            if src.dwords.len() <= i && !self.fill(&mut src, i + 1, buf)? {
                let reason = if i == 0 {
                    RejectReason::Unmapped
                } else {
                    RejectReason::MissingBatchEnd
                };
                return Err(reject(reason, buf, i, 0));
            }
            let h = src.dwords.get(i).copied().unwrap_or(0);
            let (op, len) = self
                .table
                .op_len(h)
                .ok_or_else(|| reject(RejectReason::UnknownCommand, buf, i, h))?;
            let cmd = Cmd { header: h, op, len };
            let end = i.saturating_add(cmd.len as usize);
            if src.dwords.len() < end && !self.fill(&mut src, end, buf)? {
                return Err(reject(RejectReason::Truncated, buf, i, h));
            }
            let body = src
                .dwords
                .get_mut(i..end)
                .ok_or_else(|| reject(RejectReason::Truncated, buf, i, h))?;
            let flow = audit(&ctx, cmd, body).map_err(|r| reject(r, buf, i, h))?;
            i = end;
            match flow {
                Flow::Next | Flow::Dropped => {}
                Flow::End => break None,
                Flow::Call(k) => {
                    if called.insert(k) {
                        calls.push(k);
                    }
                }
                Flow::Chain(k) => break Some(k),
            }
        };
        src.dwords.truncate(i);
        self.charge((i as u64).saturating_mul(4), buf)?;
        let idx = self.batches.len();
        self.batches.push(ShadowBatch {
            key,
            dwords: src.dwords,
        });
        self.done.insert(key, idx);
        for c in calls {
            self.scan_chain(c)?;
        }
        Ok(next)
    }

    /// Makes `src` hold at least `want` dwords; `false` if the source ends first.
    fn fill(
        &mut self,
        src: &mut BatchSource,
        want: usize,
        buf: BufferId,
    ) -> Result<bool, ScanReject> {
        let cap = (self.scanner.limits.max_total_bytes / 4) as usize;
        while src.dwords.len() < want {
            if src.ended {
                return Ok(false);
            }
            if src.dwords.len() >= cap {
                return Err(reject(RejectReason::TooLarge, buf, src.dwords.len(), 0));
            }
            src.read_chunk(self.gm);
        }
        Ok(true)
    }
}

/// The distinct batches a batch calls. Batches typically call the same few second-level
/// batches once per draw: a small direct-mapped cache of keys already in the set answers
/// those repeats without a tree lookup. Keys are guest-chosen, so the set itself is
/// ordered (no hashing, no hash flooding); the cache only ever holds keys of the set.
#[derive(Default)]
struct CallSet {
    set: BTreeSet<BatchKey>,
    recent: [Option<BatchKey>; 16],
}

impl CallSet {
    /// Adds `k`; `true` if it was not in the set.
    fn insert(&mut self, k: BatchKey) -> bool {
        // Lossless: masked to 0..16.
        let slot = ((k.gma >> 12) & 15) as usize;
        let hit = self.recent.get(slot).is_some_and(|r| *r == Some(k));
        if hit {
            return false;
        }
        if let Some(r) = self.recent.get_mut(slot) {
            *r = Some(k);
        }
        self.set.insert(k)
    }
}

/// A batch being copied chunk by chunk.
struct BatchSource {
    base: u64,
    space: GmSpace,
    dwords: Vec<u32>,
    ended: bool,
}

/// Largest chunk a batch source copies at once (whole pages): big enough to amortise the
/// per-read costs, small enough to stay in cache until it is decoded.
const MAX_CHUNK: u64 = 64 << 10;

impl BatchSource {
    /// Appends the next chunk: up to the end of the current page, then doubling what has
    /// been copied so far (up to [`MAX_CHUNK`]), always ending on a page boundary. A page
    /// that does not translate or read ends the source.
    fn read_chunk(&mut self, gm: GmReader<'_>) {
        let have = self.dwords.len();
        let copied = (have as u64).saturating_mul(4);
        let Some(gma) = self.base.checked_add(copied) else {
            self.ended = true;
            return;
        };
        let want = copied.clamp(PAGE_SIZE, MAX_CHUNK);
        let page_end = (gma | (PAGE_SIZE - 1)).saturating_add(1);
        let end = (gma.saturating_add(want) & !(PAGE_SIZE - 1)).max(page_end);
        // ≤ (MAX_CHUNK + PAGE_SIZE) / 4: lossless.
        let n = (end.saturating_sub(gma) / 4) as usize;
        // The copy goes straight into the batch's own vector (zeroed first: safe code
        // cannot copy into uninitialised memory; the chunk is in cache either way).
        self.dwords.resize(have.saturating_add(n), 0);
        let got = gm.read_prefix(
            self.space,
            gma,
            self.dwords.get_mut(have..).unwrap_or_default(),
        );
        if got < n || end == u64::MAX {
            self.ended = true;
        }
        self.dwords.truncate(have.saturating_add(got));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_set_reports_each_key_once_across_cache_collisions() {
        let key = |gma, ppgtt, level| BatchKey { gma, ppgtt, level };
        let mut s = CallSet::default();
        // Same cache slot (page bits 15:12 equal), different keys, interleaved repeats.
        let keys = [
            key(0x1000, false, 2),
            key(0x11000, false, 2),
            key(0x1000, true, 2),
            key(0x1000, false, 1),
            key(0x1004, false, 2),
        ];
        for k in keys {
            assert!(s.insert(k), "{k:?} is new");
        }
        for _ in 0..3 {
            for k in keys.iter().rev() {
                assert!(!s.insert(*k), "{k:?} was seen");
            }
        }
        assert_eq!(s.set.len(), keys.len());
    }
}
