//! The xengtd daemon as a library: configuration, hotplug, the control protocol.
#![forbid(unsafe_code)]

pub mod config;
pub mod xlcfg;
