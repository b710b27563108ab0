//! A guest model that behaves like the i915 guest of spec §3 and §5, for tests and the
//! demo: it drives a [`GuestPort`](crate::guest_port::GuestPort) exactly as the guest's
//! driver would.

pub mod cmds;
pub mod driver;
pub mod layout;

pub use driver::{Completion, GuestConfig, GuestError, GuestGpu, PvInfo, Surface};
