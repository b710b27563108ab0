//! The daemon-side [`Platform`] and [`FrameMapper`] of the simulated Xen.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mediator::bus::Space;
use mediator::guest_port::Msi;
use mediator::memory::{GuestMemoryError, PAGE_SIZE};

use crate::api::XenBackendError;
use crate::mapcache::{FrameMapper, MappedFrames};
use crate::server::Platform;
use crate::sim::domain::{Domain, SimServer};

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// One attached server, as seen from the daemon.
#[derive(Debug)]
pub(crate) struct SimPlatform {
    pub dom: Arc<Domain>,
    pub server: Arc<SimServer>,
    /// Extra RAM this server populated, as (first gfn, frames); released on drop.
    pub populated: Vec<(u64, u64)>,
}

impl SimPlatform {
    fn check(&self) -> io::Result<()> {
        if self.dom.is_destroyed() || self.server.dead.load(Ordering::Acquire) {
            Err(errno(libc::ESRCH))
        } else {
            Ok(())
        }
    }
}

impl Platform for SimPlatform {
    fn domid(&self) -> u16 {
        self.dom.domid
    }

    fn server_id(&self) -> u16 {
        self.server.id
    }

    fn poll_fd(&self) -> RawFd {
        self.server.event.as_raw_fd()
    }

    fn take_events(&mut self) -> Result<bool, XenBackendError> {
        if self.check().is_err() {
            return Err(XenBackendError::DomainGone(self.dom.domid));
        }
        let n = self
            .server
            .event
            .take()
            .map_err(|source| XenBackendError::Op {
                op: "evtchn pending",
                domid: self.dom.domid,
                source,
            })?;
        Ok(n > 0)
    }

    fn notify(&mut self, vcpu: usize) -> io::Result<()> {
        self.check()?;
        self.dom
            .wake
            .get(vcpu)
            .ok_or_else(|| errno(libc::EINVAL))?
            .signal()
    }

    fn map_range(&mut self, space: Space, first: u64, last: u64, map: bool) -> io::Result<()> {
        self.check()?;
        let mut r = self.server.ranges.lock().unwrap_or_else(|p| p.into_inner());
        let set = r.set_mut(space);
        if map {
            set.add(first, last)
        } else {
            set.remove(first, last)
        }
    }

    fn inject_msi(&mut self, addr: u64, data: u32) -> io::Result<()> {
        self.check()?;
        if addr >> 20 != 0xFEE {
            return Err(errno(libc::EINVAL));
        }
        self.dom.deliver_msi(Msi { addr, data });
        Ok(())
    }

    fn write_protect(&mut self, gfn: u64, protect: bool) -> io::Result<()> {
        self.check()?;
        if !self.dom.owns_frame(gfn) {
            return Err(errno(libc::EINVAL));
        }
        let mut wp = self.dom.wp.write().unwrap_or_else(|p| p.into_inner());
        if wp.0 != Some(self.server.id) {
            return Err(errno(libc::EINVAL));
        }
        if protect {
            wp.1.insert(gfn);
        } else {
            wp.1.remove(&gfn);
        }
        Ok(())
    }

    fn populate_ram(&mut self, first_gfn: u64, count: u64, populate: bool) -> io::Result<()> {
        self.check()?;
        self.dom.populate(first_gfn, count, populate)?;
        if populate {
            self.populated.push((first_gfn, count));
        } else {
            self.populated.retain(|&r| r != (first_gfn, count));
        }
        Ok(())
    }
}

impl Drop for SimPlatform {
    fn drop(&mut self) {
        // destroy_ioreq_server: ranges go, the claim is released, waiting vCPUs wake.
        self.dom.remove_server(self.server.id);
        // The daemon gives back the RAM it populated (as the real layer does).
        for (gfn, n) in std::mem::take(&mut self.populated) {
            let _ = self.dom.populate(gfn, n, false);
        }
    }
}

/// Maps frames of the simulated domain's RAM (dom0's foreign mapping).
#[derive(Debug)]
pub(crate) struct SimFrameMapper {
    pub dom: Arc<Domain>,
}

#[derive(Debug)]
struct SimFrames {
    dom: Arc<Domain>,
    first: u64,
    count: usize,
}

impl SimFrames {
    fn gpa(&self, idx: usize, off: usize) -> Result<u64, GuestMemoryError> {
        let gfn = self.first.checked_add(idx as u64);
        match gfn {
            Some(g) if idx < self.count && self.dom.owns_frame(g) => Ok(g * PAGE_SIZE + off as u64),
            _ => Err(GuestMemoryError::MapFailed {
                gfn: gfn.unwrap_or(u64::MAX),
                reason: "not mapped".into(),
            }),
        }
    }
}

impl MappedFrames for SimFrames {
    fn frame_ok(&self, idx: usize) -> bool {
        self.gpa(idx, 0).is_ok()
    }
    fn read(&self, idx: usize, offset: usize, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.dom.ram_read(self.gpa(idx, offset)?, buf)
    }
    fn write(&self, idx: usize, offset: usize, buf: &[u8]) -> Result<(), GuestMemoryError> {
        self.dom.ram_write(self.gpa(idx, offset)?, buf)
    }
}

impl FrameMapper for SimFrameMapper {
    fn map(&self, first_gfn: u64, count: usize) -> Result<Arc<dyn MappedFrames>, GuestMemoryError> {
        if self.dom.is_destroyed() {
            return Err(GuestMemoryError::MapFailed {
                gfn: first_gfn,
                reason: "domain is gone".into(),
            });
        }
        Ok(Arc::new(SimFrames {
            dom: Arc::clone(&self.dom),
            first: first_gfn,
            count,
        }))
    }
}
