//! The xengtd daemon as a library: configuration, xl config parsing, the control protocol,
//! vGPU placement, the backend seam, XenStore hotplug and the event loop.
#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod hotplug;
pub mod mediated;
pub mod proto;
pub mod server;
pub mod sim_runtime;
pub mod xlcfg;
