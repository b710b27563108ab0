//! The `HostGpu` contract: what the mediator needs from "the real GPU".
//!
//! This is the interface a real i915 host driver (GVT's `intel_gvt_ops` side) would have to
//! offer to a dom0 mediator. The reference implementation is the software Gen9 engine in
//! [`crate::sw`]; a hardware-backed implementation would sit on top of i915.
//!
//! The contract is split into three small traits, joined by [`HostGpu`]:
//! * [`HostPartition`]: describe the host, reserve and release per-vGPU GGTT ranges and
//!   fences (§3.3, §4.4);
//! * [`HostGtt`]: write host GGTT entries and build shadow PPGTTs (§4.2, §4.7);
//! * [`HostEngines`]: submit a scanned [`ShadowWorkload`], receive [`HostEvent`]s, reset
//!   one engine (§5, §6).
//!
//! Frames are named by [`HostPte`] = (owner, guest frame number). A real host translates
//! that pair to a machine frame (MFN, e.g. through the Xen p2m of the owning domain) when
//! it writes the hardware PTE; the software engine keeps the pair and reaches guest RAM
//! through the owner's [`GuestMemory`]. Either way the host never maps a frame that the
//! owner does not own.
//!
//! Graphics-memory addresses (GMA) are host-view addresses: GVT partitions one physical
//! GGTT, so guest GMA = host GMA and commands need range checks only (§4.4).

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use crate::cmd::ShadowWorkload;
use crate::memory::GuestMemory;

/// Identifies the owner of guest frames and workloads: a vGPU, in practice its domain id.
pub type OwnerId = u32;

/// A Gen9 GT2 command streamer (§5.1). The one engine type of the crate: the register
/// tables, the vGPU's events, execlists, the scanner and the host all use it. VCS1
/// (GT3/GT4 only) is not modelled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum EngineId {
    /// Render command streamer, base 02000.
    Rcs,
    /// Blitter command streamer, base 22000.
    Bcs,
    /// Video decode command streamer, base 12000.
    Vcs,
    /// Video enhancement command streamer, base 1A000.
    Vecs,
}

impl EngineId {
    /// All GT2 engines, in index order (i915's order).
    pub const ALL: [EngineId; 4] = [EngineId::Rcs, EngineId::Bcs, EngineId::Vcs, EngineId::Vecs];

    /// Dense index 0..4, usable for per-engine arrays.
    pub const fn index(self) -> usize {
        match self {
            EngineId::Rcs => 0,
            EngineId::Bcs => 1,
            EngineId::Vcs => 2,
            EngineId::Vecs => 3,
        }
    }

    /// MMIO base of the engine's register block (§5.1).
    pub const fn mmio_base(self) -> u32 {
        match self {
            EngineId::Rcs => 0x2000,
            EngineId::Bcs => 0x22000,
            EngineId::Vcs => 0x12000,
            EngineId::Vecs => 0x1A000,
        }
    }

    /// Same as [`EngineId::mmio_base`] (the register tables' name).
    pub const fn base(self) -> u32 {
        self.mmio_base()
    }

    /// Short name (`rcs0`, `bcs0`, `vcs0`, `vecs0`).
    pub const fn name(self) -> &'static str {
        match self {
            EngineId::Rcs => "rcs0",
            EngineId::Bcs => "bcs0",
            EngineId::Vcs => "vcs0",
            EngineId::Vecs => "vecs0",
        }
    }

    /// GDRST bit that resets this engine (§3.5).
    pub const fn gdrst_bit(self) -> u32 {
        match self {
            EngineId::Rcs => 1 << 1,
            EngineId::Vcs => 1 << 2,
            EngineId::Bcs => 1 << 3,
            EngineId::Vecs => 1 << 4,
        }
    }

    /// The engine whose 4 KiB register block contains `offset`, if any.
    pub fn from_offset(offset: u32) -> Option<EngineId> {
        EngineId::ALL
            .into_iter()
            .find(|e| (e.base()..e.base() + 0x1000).contains(&offset))
    }
}

impl fmt::Display for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Static description of the host GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// PCI device id of the physical GPU (e.g. 0x1912 for SKL GT2).
    pub device_id: u16,
    /// Size of the global GTT address space in bytes (4 GiB on Gen9, §4.1).
    pub ggtt_size: u64,
    /// Size of the CPU-visible aperture (mappable GM) in bytes (§4.1, §4.5).
    pub aperture_size: u64,
    /// Number of fence registers available for partitioning.
    pub fence_count: u32,
    /// Engines present on this GPU.
    pub engines: Vec<EngineId>,
}

/// A contiguous graphics-memory range `[start, start + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GmRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes (a multiple of 4 KiB).
    pub size: u64,
}

impl GmRange {
    /// Whether `[addr, addr + len)` lies entirely inside this range (`len` > 0).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let (Some(end), Some(my_end)) = (addr.checked_add(len), self.start.checked_add(self.size))
        else {
            return false;
        };
        len > 0 && addr >= self.start && end <= my_end
    }

    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// What a vGPU asks the host for when it is created.
#[derive(Clone)]
pub struct ReserveRequest {
    /// The owner (domain id) of the vGPU.
    pub owner: OwnerId,
    /// Bytes of mappable (low, aperture) GM.
    pub low_size: u64,
    /// Bytes of unmappable (high) GM.
    pub high_size: u64,
    /// Number of fence registers.
    pub fences: u32,
    /// The owner's RAM. A real host uses the owner id to translate frames to MFNs and may
    /// ignore this; the software engine reaches guest RAM only through it.
    pub memory: Arc<dyn GuestMemory>,
    /// Place exactly here instead of first fit (a vGPU re-created where its guest already
    /// ballooned); refused with `NoRoom` if any part is taken or outside its pool.
    pub at: Option<ReserveAt>,
}

/// An exact placement for [`ReserveRequest::at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveAt {
    /// First byte of the low (mappable) window.
    pub low_start: u64,
    /// First byte of the high window.
    pub high_start: u64,
    /// First fence.
    pub fence_base: u32,
}

impl fmt::Debug for ReserveRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReserveRequest")
            .field("owner", &self.owner)
            .field("low_size", &self.low_size)
            .field("high_size", &self.high_size)
            .field("fences", &self.fences)
            .finish_non_exhaustive()
    }
}

/// What the host granted: the vGPU's two GGTT windows and its fence registers. These
/// become the PVINFO ballooning values (§2, §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Mappable window, inside `[0, aperture_size)`.
    pub low: GmRange,
    /// Unmappable window, inside `[aperture_size, ggtt_size)`.
    pub high: GmRange,
    /// First fence register.
    pub fence_base: u32,
    /// Number of fence registers.
    pub fence_count: u32,
}

impl Reservation {
    /// GVT's audit rule (§6.6): `[addr, addr + len)` lies within the low window or within
    /// the high window (a range straddling both is rejected).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.low.contains(addr, len) || self.high.contains(addr, len)
    }
}

/// A host page-table entry: which guest frame a GGTT or shadow-PPGTT page maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostPte {
    /// Owner of the frame.
    pub owner: OwnerId,
    /// Guest frame number in the owner's physical address space. A real host translates
    /// it to a machine frame before writing hardware.
    pub gfn: u64,
    /// GPU writes allowed (PPGTT bit 1, §4.7). GGTT entries are always writable.
    pub writable: bool,
}

/// Opaque handle of a shadow PPGTT built in the host (§4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PpgttHandle(pub u64);

/// Which address space a buffer or an address is resolved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSpace {
    /// The global GTT.
    Ggtt,
    /// A shadow PPGTT previously created with [`HostGtt::ppgtt_create`].
    Ppgtt(PpgttHandle),
}

/// Interrupt-worthy events collected while executing one workload (§5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineInterrupts {
    /// MI_USER_INTERRUPT executed this many times.
    pub user: u32,
    /// PIPE_CONTROL notify (RCS) or MI_FLUSH_DW notify (other engines) executed.
    pub flush_notify: u32,
}

/// Why execution of a workload stopped with a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultReason {
    /// An address was not mapped (or mapped to another owner's frame) in the space used.
    Unmapped { space: AddressSpace, gma: u64 },
    /// A write to a read-only PPGTT page.
    ReadOnly { gma: u64 },
    /// A command the engine cannot execute (unknown opcode, bad length).
    BadCommand { offset: u64, header: u32 },
    /// A batch start to an address that is not among the workload's scanned batches.
    UnscannedBatch { gma: u64 },
    /// Guest RAM access failed.
    Memory(String),
}

/// Something the host reports back to the mediator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// The workload ran to its end.
    Complete {
        /// Engine it ran on.
        engine: EngineId,
        /// Owner of the workload.
        owner: OwnerId,
        /// The submitter's workload tag.
        tag: u64,
        /// The submitter's sequence number, now also in the engine's host status page.
        seqno: u32,
        /// Modelled engine time consumed, in nanoseconds.
        engine_time_ns: u64,
        /// Interrupts to inject at completion.
        interrupts: EngineInterrupts,
        /// Register writes done by the workload (LRI, LRM, LRR), in order, for the vregs.
        reg_writes: Vec<(u32, u32)>,
    },
    /// Execution stopped on an error; the engine remains usable.
    Fault {
        /// Engine.
        engine: EngineId,
        /// Owner of the workload.
        owner: OwnerId,
        /// Workload tag.
        tag: u64,
        /// Why.
        reason: FaultReason,
        /// Engine time consumed until the fault.
        engine_time_ns: u64,
    },
    /// The engine hung running this workload; it refuses work until [`HostEngines::reset`].
    Hang {
        /// Engine.
        engine: EngineId,
        /// Owner of the workload.
        owner: OwnerId,
        /// Workload tag.
        tag: u64,
        /// Engine time burnt until the hang was declared.
        engine_time_ns: u64,
    },
}

/// Errors of the host contract.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Not enough free GGTT space or fences for a reservation.
    #[error("no room for owner {owner}: {what}")]
    NoRoom { owner: OwnerId, what: &'static str },
    /// The owner already has a reservation.
    #[error("owner {0} already has a reservation")]
    AlreadyReserved(OwnerId),
    /// The owner has no reservation.
    #[error("owner {0} is unknown to the host")]
    UnknownOwner(OwnerId),
    /// A GGTT index beyond the table or outside the owner's windows.
    #[error("GGTT index {index:#x} is not writable by owner {owner}")]
    GgttIndex { owner: OwnerId, index: u64 },
    /// A PTE names a frame the owner does not own.
    #[error("frame {gfn:#x} does not belong to owner {owner}")]
    ForeignFrame { owner: OwnerId, gfn: u64 },
    /// Unknown PPGTT handle, or one owned by someone else.
    #[error("unknown PPGTT handle {0:?}")]
    UnknownPpgtt(PpgttHandle),
    /// The engine does not exist on this host.
    #[error("engine {0} is not present")]
    NoEngine(EngineId),
    /// The engine is hung and must be reset first.
    #[error("engine {0} is hung")]
    EngineHung(EngineId),
    /// A resource limit (e.g. number of shadow PPGTTs) was hit.
    #[error("host limit reached: {0}")]
    Limit(&'static str),
}

/// Host description and GGTT/fence partitioning (§3.3, §4.4).
pub trait HostPartition {
    /// Static description of the host GPU.
    fn info(&self) -> HostInfo;
    /// Carves a low and a high GGTT window and fences for a new vGPU. Fails rather than
    /// overlapping another owner.
    fn reserve(&mut self, req: ReserveRequest) -> Result<Reservation, HostError>;
    /// Returns an owner's windows and fences, clears its GGTT entries and destroys its
    /// shadow PPGTTs.
    fn release(&mut self, owner: OwnerId) -> Result<(), HostError>;
}

/// Host page tables: the GGTT and shadow PPGTTs (§4.2, §4.7).
pub trait HostGtt {
    /// Sets GGTT entry `index` (GMA `index << 12`) on behalf of `owner`. `None` unmaps
    /// (a real host would point at a scratch page). The index must lie in the owner's
    /// windows and the frame must be the owner's.
    fn ggtt_write(
        &mut self,
        owner: OwnerId,
        index: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError>;
    /// Creates an empty shadow PPGTT for `owner`.
    fn ppgtt_create(&mut self, owner: OwnerId) -> Result<PpgttHandle, HostError>;
    /// Maps (or, with `None`, unmaps) the 4 KiB page at `gma` in a shadow PPGTT.
    fn ppgtt_map(
        &mut self,
        handle: PpgttHandle,
        gma: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError>;
    /// Destroys a shadow PPGTT.
    fn ppgtt_destroy(&mut self, handle: PpgttHandle) -> Result<(), HostError>;
}

/// Engine submission, events and reset (§5, §6).
pub trait HostEngines {
    /// Queues a scanned workload on its engine. The host executes only the workload's
    /// copies of the ring and batches; it never re-reads them from guest memory.
    fn submit(&mut self, workload: ShadowWorkload) -> Result<(), HostError>;
    /// Takes all events that have happened since the last call, oldest first.
    fn poll_events(&mut self) -> Vec<HostEvent>;
    /// Resets one engine: drops its queue and clears a hang. Other engines are untouched.
    fn reset(&mut self, engine: EngineId) -> Result<(), HostError>;
}

/// The whole host contract.
pub trait HostGpu: HostPartition + HostGtt + HostEngines + Send {}

impl<T: HostPartition + HostGtt + HostEngines + Send> HostGpu for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gm_range_contains_checks_both_ends_and_overflow() {
        let r = GmRange {
            start: 0x1000,
            size: 0x2000,
        };
        assert!(r.contains(0x1000, 0x2000));
        assert!(!r.contains(0x1000, 0x2001));
        assert!(!r.contains(0xfff, 4));
        assert!(!r.contains(0x1000, 0));
        assert!(!r.contains(u64::MAX, 2));
    }

    #[test]
    fn reservation_rejects_straddling_ranges() {
        let res = Reservation {
            low: GmRange {
                start: 0,
                size: 0x1000,
            },
            high: GmRange {
                start: 0x1000,
                size: 0x1000,
            },
            fence_base: 0,
            fence_count: 0,
        };
        assert!(res.contains(0xffc, 4));
        assert!(res.contains(0x1000, 4));
        assert!(!res.contains(0xffc, 8));
    }

    #[test]
    fn engine_indices_are_dense() {
        for (i, e) in EngineId::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
