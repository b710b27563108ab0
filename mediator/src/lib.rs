//! The hypervisor-agnostic Gen9 vGPU device model.
//!
//! Everything a guest can reach goes through [`bus::IoHandler`]; everything the model wants
//! the platform to do (trap or untrap a range, raise an MSI, write-protect a guest frame) is
//! returned as [`effects::Effect`] data and applied by the backend. Guest RAM is reached
//! only through [`memory::GuestMemory`], which copies: the model never holds a reference
//! into guest memory.
#![forbid(unsafe_code)]

pub mod bus;
pub mod clock;
pub mod cmd;
pub mod counters;
pub mod display;
pub mod effects;
pub mod execlist;
pub mod fence;
pub mod ggtt;
pub mod ggtt_ram;
pub mod guest;
pub mod guest_port;
pub mod gvt;
pub mod host;
pub mod irq;
pub mod manager;
pub mod memory;
pub mod mmio;
pub mod partition;
pub mod pci;
pub mod ppgtt;
pub mod pvinfo;
pub mod regs;
pub mod sched;
pub mod sw;
pub mod tiling;
pub mod vgpu;
pub mod vtypes;
pub mod workload;
