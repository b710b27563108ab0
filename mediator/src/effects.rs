//! Side effects a device asks the platform to perform, returned as data.
//!
//! Devices never call the hypervisor. A BAR reprogramming, an MSI, or a request to
//! write-protect a page-table frame, or a range to back with RAM, is pushed onto an [`Effects`] list; the backend
//! (real Xen or the simulated one) applies the list after the access completes.

use serde::{Deserialize, Serialize};

use crate::bus::{GuestRange, Space};

/// One thing the platform must do on the device's behalf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Start routing guest accesses of `range` in `space` to this device.
    Trap { space: Space, range: GuestRange },
    /// Stop routing `range` in `space` to this device.
    Untrap { space: Space, range: GuestRange },
    /// Deliver a message-signalled interrupt exactly as the guest programmed it.
    InjectMsi { addr: u64, data: u32 },
    /// Write-protect (`true`) or release (`false`) one guest frame: guest writes to a
    /// protected frame arrive as MMIO write requests and are not committed by the platform.
    WriteProtect { gfn: u64, protect: bool },
    /// Make `range` (page-aligned guest-physical, normally inside the MMIO hole) ordinary
    /// RAM of the guest, zero-filled, that the guest reads and writes without trapping
    /// and the device reads through its guest memory (RAM-backed GGTT window,
    /// [`crate::ggtt_ram`]).
    PopulateRam { range: GuestRange },
    /// Remove RAM added by [`Effect::PopulateRam`] from the guest again.
    ReleaseRam { range: GuestRange },
}

/// An ordered list of effects collected during one or more accesses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects(Vec<Effect>);

impl Effects {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one effect.
    pub fn push(&mut self, effect: Effect) {
        self.0.push(effect);
    }

    /// Whether nothing was requested.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The effects in the order they were requested.
    pub fn as_slice(&self) -> &[Effect] {
        &self.0
    }

    /// Removes and returns every effect, leaving the list empty for reuse.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Effect> {
        self.0.drain(..)
    }
}

impl IntoIterator for Effects {
    type Item = Effect;
    type IntoIter = std::vec::IntoIter<Effect>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
