//! Everything Xen: the ioreq ABI, the dispatch loop, foreign memory and its map cache,
//! event channels, XenStore, the real libxen* layer and the simulated Xen.
//!
//! Only the `ffi` module may contain `unsafe`; everything else is safe Rust over it.
//!
//! Entry points: [`Hypervisor`] (implemented by [`sim::SimXen`] and, on a real dom0,
//! `real::RealXen`) attaches a [`DeviceServer`] to a domain; the daemon polls
//! [`DeviceServer::poll_fd`] and calls [`DeviceServer::service`] with its
//! `mediator::bus::IoHandler`.

#![deny(unsafe_code)]

pub mod abi;
pub mod api;
pub mod dispatch;
#[allow(unsafe_code)]
pub mod ffi;
pub mod ioreq;
pub mod mapcache;
pub mod real;
pub mod server;
pub mod sim;
pub mod xenstore;

pub use api::{
    DeviceServer, DomainInfo, Hypervisor, ServerCounters, ServerOptions, ServiceReport,
    XenBackendError,
};
pub use real::RealXen;
pub use sim::{SimDomain, SimDomainConfig, SimXen};
