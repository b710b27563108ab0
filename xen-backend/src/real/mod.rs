//! The real Xen layer: safe RAII handles over libxendevicemodel, libxenforeignmemory
//! and libxenevtchn, bring-up and teardown in the order of `xen-abi.md` §2.6.
//!
//! Bring-up: `nr_vcpus` → create server (bufioreq OFF or ATOMIC) → `map_resource`
//! (frame 1 alone, or frames 0..2 with a buffered ring) → buffered port → `map_pcidev`,
//! ranges, mem-type claim → enable → read each slot's `vp_eport` → bind one local port per
//! vCPU (+ the buffered port) on one evtchn handle. The first `service` call scans every
//! slot, which covers requests that raced the binding.
//!
//! Teardown (`Drop`): disable, release the mem-type claim, destroy the server, unbind the
//! ports, unmap the pages, close handles; ESRCH (domain already gone) is ignored.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mediator::bus::Space;
use mediator::memory::GuestMemoryError;

use crate::abi::{
    xenmem_resource_ioreq_server_frame_ioreq, Sbdf, HVMMEM_IOREQ_SERVER, HVMMEM_RAM_RW,
    HVM_IOREQSRV_BUFIOREQ_ATOMIC, HVM_IOREQSRV_BUFIOREQ_OFF, IOREQ_SLOTS,
    XENMEM_RESOURCE_IOREQ_SERVER, XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ,
    XEN_DMOP_IOREQ_MEM_ACCESS_WRITE,
};
use crate::api::{DeviceServer, DomainInfo, Hypervisor, ServerOptions, XenBackendError};
use crate::ffi::ctrl::XenCtrl;
use crate::ffi::eventfd::poll_readable;
use crate::ffi::page::{BufferedIopage, SharedIopage};
use crate::ffi::xen::{DeviceModel, EventChannel, ForeignMemory};
use crate::mapcache::{FrameMapper, MapCache, MappedFrames};
use crate::server::{IoreqServer, Platform};

/// Most event-channel ports consumed per `service` call.
const MAX_PENDING_PER_SERVICE: usize = 4 * IOREQ_SLOTS;

fn is_esrch(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// A real Xen, reached through the dlopen'd libraries.
#[derive(Debug, Clone)]
pub struct RealXen {
    dm: Arc<DeviceModel>,
    fm: Arc<ForeignMemory>,
}

impl RealXen {
    /// Loads the libraries and opens the device-model and foreign-memory handles.
    /// Fails with a typed error (no panic) without the libraries or `/dev/xen`.
    pub fn open() -> Result<Self, XenBackendError> {
        Ok(Self {
            dm: Arc::new(DeviceModel::open()?),
            fm: ForeignMemory::open()?,
        })
    }

    fn op(op: &'static str, domid: u16) -> impl Fn(io::Error) -> XenBackendError {
        move |source| {
            if is_esrch(&source) {
                XenBackendError::DomainGone(domid)
            } else {
                XenBackendError::Op { op, domid, source }
            }
        }
    }
}

/// The created server; destroyed on drop.
#[derive(Debug)]
struct ServerHandle {
    dm: Arc<DeviceModel>,
    domid: u16,
    id: u16,
    wp_claimed: bool,
    /// The domain is known to be gone: Xen already tore the server down with it.
    domain_gone: bool,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let log = |what: &str, r: io::Result<()>| {
            if let Err(e) = r {
                if self.domain_gone || is_esrch(&e) {
                    tracing::debug!(domid = self.domid, id = self.id, error = %e, "{what}: domain gone");
                } else {
                    tracing::warn!(domid = self.domid, id = self.id, error = %e, "{what} failed");
                }
            }
        };
        log(
            "disable",
            self.dm.set_ioreq_server_state(self.domid, self.id, false),
        );
        if self.wp_claimed {
            log(
                "release mem type",
                self.dm.map_mem_type_to_ioreq_server(
                    self.domid,
                    self.id,
                    HVMMEM_IOREQ_SERVER as u16,
                    0,
                ),
            );
        }
        log("destroy", self.dm.destroy_ioreq_server(self.domid, self.id));
    }
}

/// The real [`Platform`]. Field order is drop order: server first, then the ports.
#[derive(Debug)]
struct RealPlatform {
    server: ServerHandle,
    evtchn: EventChannel,
    /// Local port of each vCPU's slot.
    ports: Vec<u32>,
    port_to_vcpu: HashMap<u32, usize>,
    buf_port: Option<u32>,
    /// libxenctrl, opened on the first `PopulateRam`.
    ctrl: Option<XenCtrl>,
    /// RAM this server populated (released on drop).
    populated: Vec<Populated>,
}

/// One range of frames populated for the domain, and how much `maxmem` grew for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Populated {
    first_gfn: u64,
    count: u64,
    added_kb: u64,
}

/// Extra `maxmem` headroom per populate, as the recipe's `ramggtt` used.
const POPULATE_SLACK_KB: u64 = 1024;

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn gfn_list(first: u64, count: u64) -> io::Result<Vec<u64>> {
    (0..count)
        .map(|i| first.checked_add(i).ok_or_else(|| errno(libc::EINVAL)))
        .collect()
}

impl RealPlatform {
    fn ctrl(&mut self) -> io::Result<&XenCtrl> {
        if self.ctrl.is_none() {
            match XenCtrl::open() {
                Ok(c) => self.ctrl = Some(c),
                Err(e) => {
                    tracing::warn!(domid = self.server.domid, error = %e, "libxenctrl unavailable");
                    return Err(errno(libc::ENOSYS));
                }
            }
        }
        self.ctrl.as_ref().ok_or_else(|| errno(libc::ENOSYS))
    }

    /// `setmaxmem(+count pages)` then `populate_physmap_exact` (recipe §4 pitfall 8).
    fn populate(&mut self, first_gfn: u64, count: u64) -> io::Result<()> {
        let overlaps = self.populated.iter().any(|p| {
            first_gfn < p.first_gfn.saturating_add(p.count)
                && p.first_gfn < first_gfn.saturating_add(count)
        });
        if overlaps {
            return Err(errno(libc::EEXIST));
        }
        let gfns = gfn_list(first_gfn, count)?;
        let domid = self.server.domid;
        let added_kb = count
            .checked_mul(4)
            .and_then(|k| k.checked_add(POPULATE_SLACK_KB))
            .ok_or_else(|| errno(libc::EINVAL))?;
        let ctrl = self.ctrl()?;
        let max = ctrl.max_memkb(domid)?;
        let raised = max
            .checked_add(added_kb)
            .ok_or_else(|| errno(libc::EINVAL))?;
        ctrl.set_max_memkb(domid, raised)?;
        if let Err(e) = ctrl.populate(domid, &gfns) {
            let _ = ctrl.set_max_memkb(domid, max);
            return Err(e);
        }
        tracing::info!(domid, first_gfn, count, "populated RAM for the GGTT window");
        self.populated.push(Populated {
            first_gfn,
            count,
            added_kb,
        });
        Ok(())
    }

    /// `decrease_reservation_exact`, then `maxmem` back down.
    fn release(&mut self, p: Populated) -> io::Result<()> {
        let gfns = gfn_list(p.first_gfn, p.count)?;
        let domid = self.server.domid;
        let ctrl = self.ctrl()?;
        ctrl.depopulate(domid, &gfns)?;
        let max = ctrl.max_memkb(domid)?;
        ctrl.set_max_memkb(domid, max.saturating_sub(p.added_kb))
    }
}

impl Drop for RealPlatform {
    fn drop(&mut self) {
        if self.server.domain_gone {
            // The frames went with the domain.
            return;
        }
        for p in std::mem::take(&mut self.populated) {
            if let Err(e) = self.release(p) {
                if !is_esrch(&e) {
                    tracing::warn!(domid = self.server.domid, error = %e, "releasing populated RAM failed");
                }
            }
        }
    }
}

impl Platform for RealPlatform {
    fn domid(&self) -> u16 {
        self.server.domid
    }

    fn domain_gone(&mut self) {
        self.server.domain_gone = true;
    }

    fn server_id(&self) -> u16 {
        self.server.id
    }

    fn poll_fd(&self) -> RawFd {
        self.evtchn.fd()
    }

    fn take_events(&mut self) -> Result<bool, XenBackendError> {
        let domid = self.server.domid;
        let mut any = false;
        for _ in 0..MAX_PENDING_PER_SERVICE {
            let readable = poll_readable(self.evtchn.fd(), Some(Duration::ZERO))
                .map_err(RealXen::op("poll evtchn", domid))?;
            if !readable {
                break;
            }
            let port = match self.evtchn.pending() {
                Ok(p) => p,
                Err(e) if e.raw_os_error() == Some(libc::EFBIG) => {
                    // Kernel ring overflow: every slot is rescanned anyway.
                    tracing::warn!(domid, "event channel ring overflowed");
                    any = true;
                    break;
                }
                Err(e) => return Err(RealXen::op("xenevtchn_pending", domid)(e)),
            };
            // Unmask before handling (QEMU's order); the state machine makes a
            // duplicate wake-up harmless.
            self.evtchn
                .unmask(port)
                .map_err(RealXen::op("xenevtchn_unmask", domid))?;
            if !self.port_to_vcpu.contains_key(&port) && Some(port) != self.buf_port {
                tracing::warn!(domid, port, "event on an unknown port");
            }
            any = true;
        }
        Ok(any)
    }

    fn notify(&mut self, vcpu: usize) -> io::Result<()> {
        let port = *self
            .ports
            .get(vcpu)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.evtchn.notify(port)
    }

    fn map_range(&mut self, space: Space, first: u64, last: u64, map: bool) -> io::Result<()> {
        let (dm, domid, id) = (&self.server.dm, self.server.domid, self.server.id);
        match space {
            Space::Mmio => dm.io_range(domid, id, true, first, last, map),
            Space::Pio => dm.io_range(domid, id, false, first, last, map),
            Space::PciConfig => {
                for v in first..=last {
                    let v =
                        u32::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                    dm.pcidev(domid, id, Sbdf::from_u32(v), map)?;
                }
                Ok(())
            }
        }
    }

    fn inject_msi(&mut self, addr: u64, data: u32) -> io::Result<()> {
        self.server.dm.inject_msi(self.server.domid, addr, data)
    }

    fn write_protect(&mut self, gfn: u64, protect: bool) -> io::Result<()> {
        let t = if protect {
            HVMMEM_IOREQ_SERVER
        } else {
            HVMMEM_RAM_RW
        };
        self.server.dm.set_mem_type(self.server.domid, t, gfn, 1)
    }

    fn populate_ram(&mut self, first_gfn: u64, count: u64, populate: bool) -> io::Result<()> {
        if populate {
            return self.populate(first_gfn, count);
        }
        let i = self
            .populated
            .iter()
            .position(|p| p.first_gfn == first_gfn && p.count == count)
            .ok_or_else(|| errno(libc::ENOENT))?;
        let p = self.populated.remove(i);
        self.release(p)
    }
}

/// Guest frames through `xenforeignmemory_map`.
#[derive(Debug)]
struct RealFrameMapper {
    fm: Arc<ForeignMemory>,
    domid: u16,
}

impl FrameMapper for RealFrameMapper {
    fn map(&self, first_gfn: u64, count: usize) -> Result<Arc<dyn MappedFrames>, GuestMemoryError> {
        let gfns: Vec<u64> = (0..count as u64)
            .map_while(|i| first_gfn.checked_add(i))
            .collect();
        self.fm
            .map_frames(self.domid, &gfns)
            .map(|m| Arc::new(m) as Arc<dyn MappedFrames>)
            .map_err(|e| GuestMemoryError::MapFailed {
                gfn: first_gfn,
                reason: e.to_string(),
            })
    }
}

impl Hypervisor for RealXen {
    fn attach(
        &self,
        domid: u16,
        opts: ServerOptions,
    ) -> Result<Box<dyn DeviceServer>, XenBackendError> {
        let nr = self.dm.nr_vcpus(domid).map_err(|e| {
            if is_esrch(&e) {
                XenBackendError::NoSuchDomain(domid)
            } else {
                XenBackendError::Op {
                    op: "nr_vcpus",
                    domid,
                    source: e,
                }
            }
        })?;
        let nr = usize::try_from(nr).unwrap_or(IOREQ_SLOTS).min(IOREQ_SLOTS);
        let mode = if opts.buffered {
            HVM_IOREQSRV_BUFIOREQ_ATOMIC
        } else {
            HVM_IOREQSRV_BUFIOREQ_OFF
        };
        let id = self
            .dm
            .create_ioreq_server(domid, mode)
            .map_err(Self::op("create_ioreq_server", domid))?;
        let mut server = ServerHandle {
            dm: Arc::clone(&self.dm),
            domid,
            id,
            wp_claimed: false,
            domain_gone: false,
        };
        // Pages: frame 0 = buffered, frame 1 = synchronous.
        let (first, count) = if opts.buffered {
            (XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ, 2)
        } else {
            (xenmem_resource_ioreq_server_frame_ioreq(0), 1)
        };
        let res = self
            .fm
            .map_resource(
                domid,
                XENMEM_RESOURCE_IOREQ_SERVER,
                u32::from(id),
                first,
                count,
            )
            .map_err(Self::op("map_resource", domid))?;
        let bad_map = || XenBackendError::Op {
            op: "map_resource",
            domid,
            source: io::Error::from_raw_os_error(libc::EFAULT),
        };
        let page = res.page::<SharedIopage>(count - 1).ok_or_else(bad_map)?;
        let buf = if opts.buffered {
            Some(res.page::<BufferedIopage>(0).ok_or_else(bad_map)?)
        } else {
            None
        };
        let buf_remote = if opts.buffered {
            Some(
                self.dm
                    .bufioreq_port(domid, id)
                    .map_err(Self::op("get_ioreq_server_info", domid))?,
            )
        } else {
            None
        };
        for s in &opts.pci_devices {
            self.dm
                .pcidev(domid, id, *s, true)
                .map_err(Self::op("map_pcidev", domid))?;
        }
        for (mmio, ranges) in [(true, &opts.mmio), (false, &opts.pio)] {
            for r in ranges {
                self.dm
                    .io_range(domid, id, mmio, r.base(), r.last(), true)
                    .map_err(Self::op("map_io_range", domid))?;
            }
        }
        if opts.write_protect {
            self.dm
                .map_mem_type_to_ioreq_server(
                    domid,
                    id,
                    HVMMEM_IOREQ_SERVER as u16,
                    XEN_DMOP_IOREQ_MEM_ACCESS_WRITE,
                )
                .map_err(Self::op("map_mem_type_to_ioreq_server", domid))?;
            server.wp_claimed = true;
        }
        self.dm
            .set_ioreq_server_state(domid, id, true)
            .map_err(Self::op("set_ioreq_server_state", domid))?;
        // vp_eport is valid only after enabling.
        let mut evtchn = EventChannel::open()?;
        let mut ports = Vec::with_capacity(nr);
        let mut port_to_vcpu = HashMap::new();
        for (v, cell) in page.slots.iter().enumerate().take(nr) {
            let remote = cell.vp_eport.load(std::sync::atomic::Ordering::Acquire);
            let local = evtchn
                .bind_interdomain(domid, remote)
                .map_err(Self::op("xenevtchn_bind_interdomain", domid))?;
            ports.push(local);
            port_to_vcpu.insert(local, v);
        }
        let buf_port = match buf_remote {
            Some(r) => Some(
                evtchn
                    .bind_interdomain(domid, r)
                    .map_err(Self::op("xenevtchn_bind_interdomain", domid))?,
            ),
            None => None,
        };
        let platform = RealPlatform {
            server,
            evtchn,
            ports,
            port_to_vcpu,
            buf_port,
            ctrl: None,
            populated: Vec::new(),
        };
        let mem = Arc::new(MapCache::new(
            Box::new(RealFrameMapper {
                fm: Arc::clone(&self.fm),
                domid,
            }),
            opts.map_cache_buckets,
        ));
        tracing::info!(domid, id, vcpus = nr, "ioreq server enabled");
        Ok(Box::new(IoreqServer::new(platform, page, buf, nr, mem)))
    }

    fn destroy_ioreq_server(&self, domid: u16, id: u16) -> Result<(), XenBackendError> {
        let gone = |e: io::Error| {
            if is_esrch(&e) {
                XenBackendError::NoSuchDomain(domid)
            } else {
                XenBackendError::Op {
                    op: "destroy_ioreq_server",
                    domid,
                    source: e,
                }
            }
        };
        // Disabling first stops new requests reaching its (unserviced) pages; a failure
        // here is not fatal, the destroy below is what matters.
        if let Err(e) = self.dm.set_ioreq_server_state(domid, id, false) {
            if is_esrch(&e) {
                return Err(XenBackendError::NoSuchDomain(domid));
            }
            tracing::debug!(domid, id, error = %e, "disabling a stale ioreq server failed");
        }
        self.dm.destroy_ioreq_server(domid, id).map_err(gone)?;
        tracing::info!(domid, id, "stale ioreq server destroyed");
        Ok(())
    }

    fn domain_info(&self, domid: u16) -> Result<DomainInfo, XenBackendError> {
        match self.dm.nr_vcpus(domid) {
            Ok(vcpus) => Ok(DomainInfo { domid, vcpus }),
            Err(e) if is_esrch(&e) => Err(XenBackendError::NoSuchDomain(domid)),
            Err(source) => Err(XenBackendError::Op {
                op: "nr_vcpus",
                domid,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_xen_is_a_typed_error() {
        match RealXen::open() {
            Ok(x) => assert!(x.domain_info(crate::abi::DOMID_INVALID).is_err()),
            Err(XenBackendError::Unavailable(e)) => assert!(!e.to_string().is_empty()),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}
