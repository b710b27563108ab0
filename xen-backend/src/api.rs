//! The public face of the backend: [`Hypervisor`] (attach to a domain) and
//! [`DeviceServer`] (one ioreq server, serviced from the daemon's event loop).
//!
//! Implemented by the real Xen layer ([`crate::real::RealXen`]) and the simulated Xen
//! ([`crate::sim::SimXen`]); code above this module does not know which one it runs on.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use mediator::bus::{GuestRange, IoHandler};
use mediator::effects::Effects;
use mediator::memory::GuestMemory;
use thiserror::Error;

use crate::abi::Sbdf;
use crate::dispatch::DispatchCounters;
use crate::ffi::FfiError;
use crate::mapcache::{MapCacheStats, DEFAULT_MAX_BUCKETS};

/// Errors of the backend's public API.
#[derive(Debug, Error)]
pub enum XenBackendError {
    /// The Xen libraries or devices are not available.
    #[error("Xen is not available: {0}")]
    Unavailable(FfiError),
    /// No domain with that id.
    #[error("domain {0} does not exist")]
    NoSuchDomain(u16),
    /// The domain was destroyed; drop the server.
    #[error("domain {0} is gone")]
    DomainGone(u16),
    /// All ioreq server ids of the domain are in use.
    #[error("domain {0} already has the maximum number of ioreq servers")]
    TooManyServers(u16),
    /// An option was refused.
    #[error("invalid server option: {0}")]
    InvalidOption(String),
    /// A hypervisor operation failed.
    #[error("{op} failed for domain {domid}")]
    Op {
        /// Which operation.
        op: &'static str,
        /// Target domain.
        domid: u16,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

impl From<FfiError> for XenBackendError {
    fn from(e: FfiError) -> Self {
        Self::Unavailable(e)
    }
}

/// What to claim when attaching to a domain.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// PCI functions whose configuration space is routed to this server.
    pub pci_devices: Vec<Sbdf>,
    /// MMIO ranges trapped from the start (more can be added with `Effect::Trap`).
    pub mmio: Vec<GuestRange>,
    /// Port ranges trapped from the start.
    pub pio: Vec<GuestRange>,
    /// Create a buffered ring (needed only to claim the legacy VGA window).
    pub buffered: bool,
    /// Claim `HVMMEM_ioreq_server` so `Effect::WriteProtect` works.
    pub write_protect: bool,
    /// Bound of the guest-memory map cache, in 1 MiB buckets.
    pub map_cache_buckets: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            pci_devices: Vec::new(),
            mmio: Vec::new(),
            pio: Vec::new(),
            buffered: false,
            write_protect: false,
            map_cache_buckets: DEFAULT_MAX_BUCKETS,
        }
    }
}

/// What the hypervisor says about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// Domain id.
    pub domid: u16,
    /// Number of vCPUs (= ioreq slots served).
    pub vcpus: u32,
}

/// What one [`DeviceServer::service`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceReport {
    /// Synchronous requests answered.
    pub handled: u32,
    /// Buffered requests consumed.
    pub buffered: u32,
    /// Effects applied.
    pub effects: u32,
}

/// Counters of one server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerCounters {
    /// Dispatch counters.
    pub dispatch: DispatchCounters,
    /// Map cache statistics.
    pub map_cache: MapCacheStats,
}

/// A hypervisor the daemon can attach device servers to.
pub trait Hypervisor: Send + Sync {
    /// Creates and enables an ioreq server for `domid` claiming what `opts` says.
    fn attach(
        &self,
        domid: u16,
        opts: ServerOptions,
    ) -> Result<Box<dyn DeviceServer>, XenBackendError>;
    /// Basic facts about a domain; `NoSuchDomain` if it does not exist.
    fn domain_info(&self, domid: u16) -> Result<DomainInfo, XenBackendError>;
    /// Destroys ioreq server `id` of `domid` that no [`DeviceServer`] of this process owns
    /// (one left behind by an earlier daemon): disables it and destroys it, which also
    /// drops its ranges and its `HVMMEM_ioreq_server` claim. `NoSuchDomain` if the domain
    /// is gone; an `Op` error (ENOENT on Xen) if no such server exists.
    /// The default refuses with ENOSYS (a hypervisor that cannot do it).
    fn destroy_ioreq_server(&self, domid: u16, id: u16) -> Result<(), XenBackendError> {
        let _ = id;
        Err(XenBackendError::Op {
            op: "destroy_ioreq_server",
            domid,
            source: io::Error::from_raw_os_error(libc::ENOSYS),
        })
    }
}

/// One ioreq server of one domain. Dropping it tears the server down.
pub trait DeviceServer: Send {
    /// Domain served.
    fn domid(&self) -> u16;
    /// Xen's ioreq server id.
    fn server_id(&self) -> u16;
    /// Readable when work may be pending (level-triggered; register it for reading).
    fn poll_fd(&self) -> RawFd;
    /// Handles everything pending: consumes events, drains the buffered ring, answers
    /// every `READY` slot through `handler`, applies the effects collected.
    /// `DomainGone` means the domain was destroyed: drop the server.
    fn service(&mut self, handler: &mut dyn IoHandler) -> Result<ServiceReport, XenBackendError>;
    /// Applies effects produced outside an access (timers, completions). Individual
    /// failures are counted (`effect_errors`); only `DomainGone` is returned.
    fn apply(&mut self, effects: Effects) -> Result<u32, XenBackendError>;
    /// The guest's RAM through the map cache.
    fn guest_memory(&self) -> Arc<dyn GuestMemory>;
    /// Counters so far.
    fn counters(&self) -> ServerCounters;
    /// The caller knows the domain is gone (destroyed or crashed): effects are no longer
    /// applied, and the teardown on drop expects the hypervisor to refuse it (logged at
    /// debug, not as warnings).
    fn mark_domain_gone(&mut self);
}
