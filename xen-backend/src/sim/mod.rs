//! The simulated Xen: in-process HVM domains that speak the real shared-page ioreq ABI.
//!
//! Each domain has RAM (at guest-physical 0), up to 128 vCPUs ([`SimVcpu`], a
//! [`GuestPort`]) and up to 8 ioreq servers. A vCPU access is routed like Xen does
//! (enabled servers from the highest id down; MMIO/port ranges and PCI SBDFs per server;
//! unclaimed reads are all-ones), written into the server's ioreq page, signalled through
//! an eventfd (the daemon's poll fd), and the vCPU blocks until `IORESP_READY`. Writes to
//! the VGA window go through the buffered ring; guest writes to `HVMMEM_ioreq_server`
//! frames become ioreqs and are not committed; MSIs land in a per-domain queue.
//! [`SimXen`] implements [`Hypervisor`], so the daemon runs unchanged on it.

mod domain;
mod memory;
mod platform;
pub mod rangeset;
mod vcpu;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mediator::bus::Space;
use mediator::guest_port::GuestPort;
use mediator::memory::GuestMemory;
use thiserror::Error;

pub use domain::SimDomainStats;
pub use memory::SIM_MAX_EXTRA_RAM;
pub use vcpu::{SimVcpu, VGA_WINDOW};

use crate::abi::{IOREQ_SLOTS, MAX_NR_IOREQ_SERVERS};
use crate::api::{DeviceServer, DomainInfo, Hypervisor, ServerOptions, XenBackendError};
use crate::ffi::eventfd::EventFd;
use crate::ffi::page::{BufferedIopage, PageRef, SharedIopage};
use crate::mapcache::MapCache;
use crate::server::{IoreqServer, Platform};
use domain::{Domain, Ranges, SimServer};
use platform::{SimFrameMapper, SimPlatform};

/// Largest simulated RAM (RAM is contiguous from 0, below the 32-bit MMIO hole).
pub const SIM_MAX_RAM: u64 = 3 << 30;

/// Errors creating simulated domains.
#[derive(Debug, Error)]
pub enum SimXenError {
    /// RAM size 0, not page-aligned, or above [`SIM_MAX_RAM`].
    #[error("invalid RAM size {0:#x}")]
    BadRam(u64),
    /// vCPU count 0 or above 128.
    #[error("invalid vCPU count {0}")]
    BadVcpus(usize),
    /// Domain ids exhausted, or the requested id is not a guest domain id.
    #[error("no free (or no valid) domain id")]
    NoDomid,
    /// The requested domain id is taken.
    #[error("domain {0} already exists")]
    DomidInUse(u16),
    /// eventfd creation failed.
    #[error("eventfd: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for SimXenError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Shape of a simulated domain.
#[derive(Clone, Copy, Debug)]
pub struct SimDomainConfig {
    /// RAM size in bytes (page multiple, at most [`SIM_MAX_RAM`]).
    pub ram_bytes: u64,
    /// Number of vCPUs (1..=128).
    pub vcpus: usize,
    /// How long a vCPU waits for an answer before giving up (reads all-ones).
    pub response_timeout: Duration,
}

impl Default for SimDomainConfig {
    fn default() -> Self {
        Self {
            ram_bytes: 64 << 20,
            vcpus: 1,
            response_timeout: Duration::from_secs(10),
        }
    }
}

/// A simulated hypervisor; cheap to clone (shared state).
#[derive(Clone, Debug, Default)]
pub struct SimXen {
    domains: Arc<Mutex<HashMap<u16, Arc<Domain>>>>,
}

/// A handle to a simulated domain (the "guest" side).
#[derive(Clone, Debug)]
pub struct SimDomain {
    dom: Arc<Domain>,
}

impl SimXen {
    /// An empty hypervisor.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Arc<Domain>>> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a domain with the lowest free id ≥ 1.
    pub fn create_domain(&self, cfg: SimDomainConfig) -> Result<SimDomain, SimXenError> {
        self.create_domain_inner(None, cfg)
    }

    /// Creates a domain with id `domid` (a guest id: 1..DOMID_SELF, i.e. below DOMID_FIRST_RESERVED); fails with
    /// [`SimXenError::DomidInUse`] if it exists and [`SimXenError::NoDomid`] if the id is
    /// not a guest id.
    pub fn create_domain_with_id(
        &self,
        domid: u16,
        cfg: SimDomainConfig,
    ) -> Result<SimDomain, SimXenError> {
        self.create_domain_inner(Some(domid), cfg)
    }

    fn create_domain_inner(
        &self,
        want: Option<u16>,
        cfg: SimDomainConfig,
    ) -> Result<SimDomain, SimXenError> {
        let pg = mediator::memory::PAGE_SIZE;
        if cfg.ram_bytes == 0 || cfg.ram_bytes % pg != 0 || cfg.ram_bytes > SIM_MAX_RAM {
            return Err(SimXenError::BadRam(cfg.ram_bytes));
        }
        if cfg.vcpus == 0 || cfg.vcpus > IOREQ_SLOTS {
            return Err(SimXenError::BadVcpus(cfg.vcpus));
        }
        let mut doms = self.lock();
        let domid = match want {
            Some(d) if d == 0 || d >= crate::abi::DOMID_SELF => return Err(SimXenError::NoDomid),
            Some(d) if doms.contains_key(&d) => return Err(SimXenError::DomidInUse(d)),
            Some(d) => d,
            None => (1..crate::abi::DOMID_SELF)
                .find(|d| !doms.contains_key(d))
                .ok_or(SimXenError::NoDomid)?,
        };
        let dom = Arc::new(Domain::new(
            domid,
            cfg.ram_bytes,
            cfg.vcpus,
            cfg.response_timeout,
        )?);
        doms.insert(domid, Arc::clone(&dom));
        Ok(SimDomain { dom })
    }

    /// Destroys a domain: requests in flight fail, servers report `DomainGone`.
    /// Returns whether it existed.
    pub fn destroy_domain(&self, domid: u16) -> bool {
        let dom = self.lock().remove(&domid);
        if let Some(d) = &dom {
            d.destroy();
        }
        dom.is_some()
    }

    /// Ids of existing domains.
    pub fn domains(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.lock().keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// A handle to an existing domain.
    pub fn domain(&self, domid: u16) -> Option<SimDomain> {
        self.lock()
            .get(&domid)
            .map(|d| SimDomain { dom: Arc::clone(d) })
    }

    fn attach_inner(
        &self,
        domid: u16,
        opts: ServerOptions,
    ) -> Result<Box<dyn DeviceServer>, XenBackendError> {
        let dom = self
            .lock()
            .get(&domid)
            .cloned()
            .ok_or(XenBackendError::NoSuchDomain(domid))?;
        let page = Arc::new(SharedIopage::default());
        let buf = opts.buffered.then(|| Arc::new(BufferedIopage::default()));
        let event = EventFd::new(true).map_err(|source| XenBackendError::Op {
            op: "create_ioreq_server",
            domid,
            source,
        })?;
        // create_ioreq_server: lowest free id, starts disabled.
        let server = {
            let mut servers = dom.servers.write().unwrap_or_else(|p| p.into_inner());
            let id = (0..MAX_NR_IOREQ_SERVERS)
                .find(|i| servers.get(*i).is_some_and(Option::is_none))
                .ok_or(XenBackendError::TooManyServers(domid))?;
            let s = Arc::new(SimServer {
                id: u16::try_from(id).unwrap_or(0),
                page: Arc::clone(&page),
                buf: buf.clone(),
                event,
                enabled: Default::default(),
                dead: Default::default(),
                ranges: Mutex::new(Ranges::default()),
            });
            if let Some(slot) = servers.get_mut(id) {
                *slot = Some(Arc::clone(&s));
            }
            s
        };
        // From here on the platform's Drop destroys the server on any error.
        let mut platform = SimPlatform {
            dom: Arc::clone(&dom),
            server: Arc::clone(&server),
            populated: Vec::new(),
        };
        let op_err = |op, source| XenBackendError::Op { op, domid, source };
        for sbdf in &opts.pci_devices {
            let v = u64::from(sbdf.to_u32());
            platform
                .map_range(Space::PciConfig, v, v, true)
                .map_err(|e| op_err("map_pcidev", e))?;
        }
        for (space, ranges) in [(Space::Mmio, &opts.mmio), (Space::Pio, &opts.pio)] {
            for r in ranges {
                platform
                    .map_range(space, r.base(), r.last(), true)
                    .map_err(|e| op_err("map_io_range", e))?;
            }
        }
        if opts.write_protect {
            let mut wp = dom.wp.write().unwrap_or_else(|p| p.into_inner());
            if wp.0.is_some() {
                return Err(op_err(
                    "map_mem_type_to_ioreq_server",
                    std::io::Error::from_raw_os_error(libc::EBUSY),
                ));
            }
            wp.0 = Some(server.id);
        }
        // set_ioreq_server_state(1): Xen fills in vp_eport now.
        for (i, cell) in page.slots.iter().enumerate().take(dom.vcpus) {
            cell.vp_eport
                .store(u32::try_from(100 + i).unwrap_or(0), Ordering::Relaxed);
        }
        server.enabled.store(true, Ordering::Release);
        let mem = Arc::new(MapCache::new(
            Box::new(SimFrameMapper {
                dom: Arc::clone(&dom),
            }),
            opts.map_cache_buckets,
        ));
        let srv = IoreqServer::new(
            platform,
            PageRef::heap(page),
            buf.map(PageRef::heap),
            dom.vcpus,
            mem,
        );
        Ok(Box::new(srv))
    }
}

impl Hypervisor for SimXen {
    fn attach(
        &self,
        domid: u16,
        opts: ServerOptions,
    ) -> Result<Box<dyn DeviceServer>, XenBackendError> {
        self.attach_inner(domid, opts)
    }

    fn destroy_ioreq_server(&self, domid: u16, id: u16) -> Result<(), XenBackendError> {
        let dom = self
            .lock()
            .get(&domid)
            .cloned()
            .ok_or(XenBackendError::NoSuchDomain(domid))?;
        if dom.server(id).is_none() {
            return Err(XenBackendError::Op {
                op: "destroy_ioreq_server",
                domid,
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        dom.remove_server(id);
        Ok(())
    }

    fn domain_info(&self, domid: u16) -> Result<DomainInfo, XenBackendError> {
        let d = self
            .lock()
            .get(&domid)
            .cloned()
            .ok_or(XenBackendError::NoSuchDomain(domid))?;
        Ok(DomainInfo {
            domid,
            vcpus: u32::try_from(d.vcpus).unwrap_or(0),
        })
    }
}

impl SimDomain {
    /// Domain id.
    pub fn domid(&self) -> u16 {
        self.dom.domid
    }

    /// Number of vCPUs.
    pub fn vcpus(&self) -> usize {
        self.dom.vcpus
    }

    /// RAM size in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.dom.ram_bytes
    }

    /// vCPU `i` as a guest port.
    pub fn vcpu(&self, i: usize) -> Option<Arc<dyn GuestPort>> {
        self.sim_vcpu(i).map(|v| v as Arc<dyn GuestPort>)
    }

    /// vCPU `i` with the simulation-only extras (rep accesses, raw slots, INVALIDATE).
    pub fn sim_vcpu(&self, i: usize) -> Option<Arc<SimVcpu>> {
        (i < self.dom.vcpus).then(|| {
            Arc::new(SimVcpu {
                dom: Arc::clone(&self.dom),
                index: i,
            })
        })
    }

    /// The RAM as "Xen" sees it (RAM at 0 plus populated regions): unprotected, for
    /// test setup and inspection.
    pub fn ram(&self) -> Arc<dyn GuestMemory> {
        Arc::new(memory::DomainRam(Arc::clone(&self.dom)))
    }

    /// RAM regions populated at run time (`Effect::PopulateRam`), as (first gfn, frames).
    pub fn extra_ram(&self) -> Vec<(u64, u64)> {
        self.dom.extra_regions()
    }

    /// Whether the domain was destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.dom.is_destroyed()
    }

    /// Hypervisor-side counters.
    pub fn stats(&self) -> SimDomainStats {
        self.dom.snapshot_stats()
    }

    /// Whether guest frame `gfn` is currently write-protected.
    pub fn is_write_protected(&self, gfn: u64) -> bool {
        let wp = self.dom.wp.read().unwrap_or_else(|p| p.into_inner());
        wp.1.contains(&gfn)
    }

    /// Number of ioreq servers that exist.
    pub fn server_count(&self) -> usize {
        let s = self.dom.servers.read().unwrap_or_else(|p| p.into_inner());
        s.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests;
