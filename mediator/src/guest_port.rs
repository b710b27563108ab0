//! The view from inside a guest: what a guest-side driver model uses to reach its device.
//!
//! The simulated Xen implements this for its vCPUs (each call becomes an ioreq through the
//! shared-page ABI and waits for the answer), so the guest model in this crate drives the
//! vGPU exactly as a real guest's driver would, through the same dispatch path.

use std::time::Duration;

use crate::memory::GuestMemory;

/// A delivered message-signalled interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// Address as programmed in the MSI capability.
    pub addr: u64,
    /// Data as programmed in the MSI capability.
    pub data: u32,
}

/// Guest-side access to the platform: MMIO, port I/O, PCI configuration (through
/// CF8/CFC semantics, already decoded to bus/device/function), the guest's own RAM, and
/// interrupt delivery.
pub trait GuestPort: Send + Sync {
    /// An MMIO read of `size` (1, 2, 4, 8) bytes.
    fn mmio_read(&self, addr: u64, size: u8) -> u64;
    /// An MMIO write of `size` (1, 2, 4, 8) bytes.
    fn mmio_write(&self, addr: u64, size: u8, value: u64);
    /// A port read of `size` (1, 2, 4) bytes.
    fn pio_read(&self, port: u16, size: u8) -> u32;
    /// A port write of `size` (1, 2, 4) bytes.
    fn pio_write(&self, port: u16, size: u8, value: u32);
    /// A configuration read of device `bdf` (`bus << 8 | dev << 3 | fn`) at `reg`.
    fn pci_cfg_read(&self, bdf: u16, reg: u16, size: u8) -> u32;
    /// A configuration write of device `bdf` at `reg`.
    fn pci_cfg_write(&self, bdf: u16, reg: u16, size: u8, value: u32);
    /// The guest's own RAM (direct access, as the guest's CPU has).
    fn ram(&self) -> &dyn GuestMemory;
    /// Waits up to `timeout` for the next interrupt delivered to this guest.
    fn wait_msi(&self, timeout: Duration) -> Option<Msi>;
}
