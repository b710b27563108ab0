//! Events a vGPU produces for subsystems implemented elsewhere (execlists, PPGTT
//! shadowing, display, host-GGTT sync, the daemon). They are queued in the vGPU state and
//! drained with [`super::Vgpu::take_events`] after each access (or batch of accesses).

use serde::{Deserialize, Serialize};

use crate::mmio::EngineId;
use crate::pvinfo::G2vEvent;

/// Bound on queued events; further events are dropped and counted.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Something another subsystem must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VgpuEvent {
    /// Four ELSP writes completed on `engine` (§5.3): `descs[0]` is element 0, `descs[1]`
    /// element 1 (0 = "only one context"). Not validated here.
    ElspSubmit {
        /// The engine.
        engine: EngineId,
        /// Element 0 and element 1 descriptors.
        descs: [u64; 2],
    },
    /// RING_MODE RUN_LIST_ENABLE changed (§5.2).
    ExeclistEnable {
        /// The engine.
        engine: EngineId,
        /// New state.
        enabled: bool,
    },
    /// RING_HWS_PGA written with this graphics address (§5.1).
    HwsPga {
        /// The engine.
        engine: EngineId,
        /// GGTT address of the status page.
        gm: u32,
    },
    /// GDRST requested resets. `full` = bit 0; `engines` lists the engine bits; execlist
    /// state of those engines was reset in the vGPU (ELSP latches, execlists-enabled).
    Reset {
        /// Full GPU reset.
        full: bool,
        /// Engines reset (all four on a full reset).
        engines: [bool; 4],
    },
    /// A guest-to-host notification (PPGTT create/destroy, …), §2.
    G2v(G2vEvent),
    /// PVINFO `display_ready` written (1 = the guest drives its display now).
    DisplayReady(u32),
    /// GFX_FLSH_CNTL written: GGTT updates are complete (§4.6); sync a host shadow now.
    GgttFlush,
    /// A register with [`crate::regs::RegKind::Display`] was written (value as stored).
    DisplayWrite {
        /// BAR0 offset.
        offset: u32,
        /// Stored value after the write.
        value: u32,
    },
    /// The vGPU entered failsafe mode (§2) and stopped emitting execlist events.
    Failsafe(FailsafeReason),
    /// The device model was reset ([`super::Vgpu::reset`]).
    DeviceReset,
}

/// Why failsafe mode was entered (§2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailsafeReason {
    /// The guest wrote PVINFO `rsv5` (insufficient resources).
    InsufficientResource,
    /// Execlists enabled before PVINFO was ever read.
    ExeclistsBeforePvinfo,
    /// A fence beyond `fence_num` touched before PVINFO was ever read.
    FenceBeforePvinfo,
}
