//! The daemon's narrow view of "a hypervisor that can host a vGPU": create/destroy the
//! device (vGPU + ioreq server) of a domain, poll/service it, ask whether a domain lives.
//!
//! [`SimBackend`] simulates guest domains in-process (`--backend sim`). The Xen backend
//! (xen-backend's `Hypervisor`/`DeviceServer` + the mediator's `VgpuManager`) plugs in
//! behind the same trait.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use crate::alloc::Placement;

/// Backend failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The domain does not exist (or died).
    #[error("domain {0} does not exist")]
    NoSuchDomain(u16),
    /// The domain already has a device.
    #[error("domain {0} already has a vGPU device")]
    Busy(u16),
    /// Anything else, with the reason.
    #[error("{0}")]
    Failed(String),
}

/// What the backend created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceHandle {
    /// ioreq server id.
    pub server_id: u16,
    /// fd to poll for work, if any.
    pub poll_fd: Option<RawFd>,
    /// Where the device really placed the windows, if it decides itself (the mediator's
    /// partitioner); the daemon reports this instead of its own admission placement.
    pub placement: Option<Placement>,
}

/// The hypervisor side of the daemon.
pub trait VgpuBackend: Send {
    /// `sim` or `xen`.
    fn kind(&self) -> &'static str;
    /// True if the domain exists.
    fn domain_alive(&self, domid: u16) -> bool;
    /// Creates vGPU + ioreq server for `domid` with this placement.
    fn create_device(
        &mut self,
        domid: u16,
        type_name: Option<&str>,
        placement: &Placement,
    ) -> Result<DeviceHandle, BackendError>;
    /// Tears the device down (idempotent).
    fn destroy_device(&mut self, domid: u16);
    /// Destroys a server left behind by an earlier daemon (idempotent).
    fn destroy_stale_server(&mut self, domid: u16, server_id: u16);
    /// Handles pending work of one device; `NoSuchDomain` means it died.
    fn service(&mut self, domid: u16) -> Result<(), BackendError>;
    /// A domain learned about from XenStore (the simulation adopts it; Xen ignores this).
    fn note_domain(&mut self, _domid: u16, _name: &str) {}
    /// Simulation only: start a domain; returns its id.
    fn start_domain(&mut self, name: &str) -> Result<u16, BackendError>;
    /// Simulation only: destroy a domain started with `start_domain`.
    fn stop_domain(&mut self, domid: u16);
}

/// Simulated domains and devices.
#[derive(Debug, Default)]
pub struct SimBackend {
    domains: BTreeMap<u16, String>,
    devices: BTreeMap<u16, u16>,
    next_domid: u16,
    /// Servers destroyed by `destroy_stale_server` (tests assert on it).
    pub stale_destroyed: Vec<(u16, u16)>,
}

impl SimBackend {
    /// Empty simulation; domids start at 1.
    pub fn new() -> Self {
        SimBackend {
            next_domid: 1,
            ..Default::default()
        }
    }

    /// Declares a domain that exists outside the daemon (tests, `attach` of a known id).
    pub fn add_domain(&mut self, domid: u16, name: &str) {
        self.domains.insert(domid, name.to_string());
        self.next_domid = self.next_domid.max(domid.saturating_add(1));
    }
}

impl VgpuBackend for SimBackend {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn domain_alive(&self, domid: u16) -> bool {
        self.domains.contains_key(&domid)
    }

    fn create_device(
        &mut self,
        domid: u16,
        _type_name: Option<&str>,
        _p: &Placement,
    ) -> Result<DeviceHandle, BackendError> {
        if !self.domains.contains_key(&domid) {
            return Err(BackendError::NoSuchDomain(domid));
        }
        if self.devices.contains_key(&domid) {
            return Err(BackendError::Busy(domid));
        }
        // Like Xen: lowest free id per domain; a sim domain has no QEMU, so 0.
        let server_id = 0;
        self.devices.insert(domid, server_id);
        Ok(DeviceHandle {
            server_id,
            poll_fd: None,
            placement: None,
        })
    }

    fn destroy_device(&mut self, domid: u16) {
        self.devices.remove(&domid);
    }

    fn destroy_stale_server(&mut self, domid: u16, server_id: u16) {
        self.stale_destroyed.push((domid, server_id));
    }

    fn service(&mut self, domid: u16) -> Result<(), BackendError> {
        if self.domains.contains_key(&domid) {
            Ok(())
        } else {
            Err(BackendError::NoSuchDomain(domid))
        }
    }

    fn note_domain(&mut self, domid: u16, name: &str) {
        if !self.domains.contains_key(&domid) {
            self.add_domain(domid, name);
        }
    }

    fn start_domain(&mut self, name: &str) -> Result<u16, BackendError> {
        let id = self.next_domid;
        if id >= 0x7FF0 {
            return Err(BackendError::Failed(
                "simulated domain ids exhausted".into(),
            ));
        }
        self.next_domid += 1;
        self.domains.insert(id, name.to_string());
        Ok(id)
    }

    fn stop_domain(&mut self, domid: u16) {
        self.devices.remove(&domid);
        self.domains.remove(&domid);
    }
}
