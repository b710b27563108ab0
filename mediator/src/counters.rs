//! Per-vGPU counters (plain, serde-serialisable), asserted by tests and exported by the
//! daemon.

use serde::{Deserialize, Serialize};

/// Everything a vGPU counts. All counters only grow (until a counters reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuCounters {
    /// MMIO reads served (any BAR region).
    pub mmio_reads: u64,
    /// MMIO writes served (any BAR region).
    pub mmio_writes: u64,
    /// Config-space reads for this device.
    pub pci_reads: u64,
    /// Config-space writes for this device.
    pub pci_writes: u64,
    /// Config accesses addressed to another SBDF (answered all-ones / ignored).
    pub pci_other_device: u64,
    /// Register reads of offsets not in the register table.
    pub untracked_reads: u64,
    /// Register writes to offsets not in the register table.
    pub untracked_writes: u64,
    /// Reads in the PVINFO page.
    pub pvinfo_reads: u64,
    /// PVINFO writes dropped by the acceptance rules.
    pub pvinfo_writes_dropped: u64,
    /// Guest-to-host notifications received.
    pub g2v_notifications: u64,
    /// GGTT PTE reads.
    pub ggtt_reads: u64,
    /// GGTT PTE writes applied.
    pub ggtt_writes_applied: u64,
    /// GGTT PTE writes outside the vGPU's windows.
    pub ggtt_dropped_outside: u64,
    /// GGTT PTE writes of present entries whose frame the guest does not own.
    pub ggtt_dropped_not_owned: u64,
    /// GGTT accesses with a bad size or alignment.
    pub ggtt_dropped_bad_access: u64,
    /// Aperture accesses that reached guest RAM.
    pub aperture_accesses: u64,
    /// Aperture accesses outside the vGPU's mappable window or through an invalid PTE.
    pub aperture_unmapped: u64,
    /// Accesses to the unused BAR0 range 200000–7FFFFF.
    pub bar0_unused_accesses: u64,
    /// Fence accesses beyond `fence_num`.
    pub fence_out_of_range: u64,
    /// Accesses with unsupported size/alignment, unclaimed addresses or spaces.
    pub unsupported_accesses: u64,
    /// MSIs injected.
    pub msi_injected: u64,
    /// Interrupts due while MSI was disabled (nothing sent).
    pub msi_suppressed: u64,
    /// ELSP submissions (four writes) received.
    pub elsp_submissions: u64,
    /// GDRST writes (reset requests).
    pub resets_requested: u64,
    /// Times failsafe mode was entered.
    pub failsafe_entries: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// RAM-backed GGTT: syncs of the PTE window (flush, submission, scanout).
    #[serde(default)]
    pub ggtt_ram_syncs: u64,
    /// RAM-backed GGTT: pages of PTEs copied out of guest RAM.
    #[serde(default)]
    pub ggtt_ram_pages_read: u64,
    /// RAM-backed GGTT: entries found changed (each then counted like a trapped write).
    #[serde(default)]
    pub ggtt_ram_entries_changed: u64,
    /// RAM-backed GGTT: pages that could not be read.
    #[serde(default)]
    pub ggtt_ram_read_errors: u64,
    /// Fence writes leaving an enabled fence invalid (ignored, acts as disabled).
    #[serde(default)]
    pub fence_invalid: u64,
    /// Aperture accesses detiled through a fence (also counted in `aperture_accesses`).
    #[serde(default)]
    pub aperture_detiled: u64,
    /// Aperture accesses failed because a fenced byte would be stored beyond its fence's
    /// range (a partial last tile row); also counted in `aperture_unmapped`.
    #[serde(default)]
    pub aperture_fence_outside: u64,
}
