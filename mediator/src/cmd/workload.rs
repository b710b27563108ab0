//! The scanned, copied unit of work handed to [`crate::host::HostEngines::submit`].

use crate::host::{EngineId, OwnerId, PpgttHandle};

/// Identifies one copied batch buffer inside a workload: its start address, the address
/// space it was fetched from and its nesting level (1 = first level, 2 = second level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchKey {
    /// Graphics address of the first dword (as in the BB_START command).
    pub gma: u64,
    /// Fetched through the context's PPGTT (BB_START bit 8) rather than the GGTT.
    pub ppgtt: bool,
    /// 1 for a first-level batch (started from the ring or chained), 2 for second level.
    pub level: u8,
}

/// A copied batch buffer, from its first dword up to and including its terminating
/// MI_BATCH_BUFFER_END or chaining MI_BATCH_BUFFER_START.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowBatch {
    pub(crate) key: BatchKey,
    pub(crate) dwords: Vec<u32>,
}

impl ShadowBatch {
    /// Where the batch came from.
    pub fn key(&self) -> BatchKey {
        self.key
    }
    /// The copied (and possibly patched, see [`crate::cmd::scan`]) commands.
    pub fn dwords(&self) -> &[u32] {
        &self.dwords
    }
    /// A non-privileged (PPGTT) batch: the executor applies the §6.3 privilege rules.
    pub fn privileged(&self) -> bool {
        !self.key.ppgtt
    }
}

/// Per-submission context information the executor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadContext {
    /// GGTT address of the context image (LRCA); page 0 is the PPHWSP that store-data-index
    /// commands address (§5.5, §6.4).
    pub lrca: u64,
    /// Context id from the descriptor (opaque, reported back by the submitter).
    pub ctx_id: u32,
}

/// A scanned workload: a copy of the ring slice `[head, tail)` and of every batch it
/// reaches. Only the scanner ([`crate::cmd::Scanner`]) creates these, so anything
/// submitted to a host has passed the audit; the host executes these copies and never
/// re-reads guest memory for commands (self-modifying batches have no effect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowWorkload {
    pub(crate) owner: OwnerId,
    pub(crate) engine: EngineId,
    pub(crate) tag: u64,
    pub(crate) seqno: u32,
    pub(crate) ppgtt: Option<PpgttHandle>,
    pub(crate) context: WorkloadContext,
    pub(crate) ring_head: u32,
    pub(crate) ring_tail: u32,
    pub(crate) ring: Vec<u32>,
    pub(crate) batches: Vec<ShadowBatch>,
}

impl ShadowWorkload {
    /// Owner (vGPU / domain) of the workload.
    pub fn owner(&self) -> OwnerId {
        self.owner
    }
    /// Engine to run on.
    pub fn engine(&self) -> EngineId {
        self.engine
    }
    /// Submitter's tag, echoed in the completion event.
    pub fn tag(&self) -> u64 {
        self.tag
    }
    /// Submitter's sequence number, echoed in the completion event.
    pub fn seqno(&self) -> u32 {
        self.seqno
    }
    /// Host shadow PPGTT used for PPGTT-selecting commands and batches, if any.
    pub fn ppgtt(&self) -> Option<PpgttHandle> {
        self.ppgtt
    }
    /// Context information.
    pub fn context(&self) -> WorkloadContext {
        self.context
    }
    /// Ring head byte offset the copy starts at.
    pub fn ring_head(&self) -> u32 {
        self.ring_head
    }
    /// Ring tail byte offset the copy ends at.
    pub fn ring_tail(&self) -> u32 {
        self.ring_tail
    }
    /// The copied ring slice, linearised (wrap already resolved).
    pub fn ring(&self) -> &[u32] {
        &self.ring
    }
    /// All copied batches.
    pub fn batches(&self) -> &[ShadowBatch] {
        &self.batches
    }
    /// The copied batch with this key, if the scan reached it.
    pub fn batch(&self, key: BatchKey) -> Option<&ShadowBatch> {
        self.batches.iter().find(|b| b.key == key)
    }
    /// Total copied bytes (ring plus batches).
    pub fn copied_bytes(&self) -> u64 {
        let dwords = self.batches.iter().fold(self.ring.len() as u64, |acc, b| {
            acc.saturating_add(b.dwords.len() as u64)
        });
        dwords.saturating_mul(4)
    }
}
