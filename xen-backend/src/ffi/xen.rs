//! Safe RAII handles over the dlopen'd Xen libraries: [`DeviceModel`],
//! [`ForeignMemory`] (with [`ResourceMapping`] and [`ForeignMapping`]) and
//! [`EventChannel`]. Each closes, unmaps or unbinds on `Drop`.

use std::collections::BTreeSet;
use std::ffi::{c_int, c_uint, c_void};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use mediator::memory::GuestMemoryError;

use super::dl::{libs, XenLibs};
use super::page::{PageLayout, PageRef};
use super::FfiError;
use crate::abi::{Sbdf, XEN_PAGE_SIZE};
use crate::mapcache::MappedFrames;

/// The privcmd device every libxen* handle needs.
pub const PRIVCMD: &str = "/dev/xen/privcmd";

fn check(rc: c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_handle(
    call: &'static str,
    f: impl FnOnce(&'static XenLibs) -> *mut c_void,
) -> Result<(&'static XenLibs, NonNull<c_void>), FfiError> {
    let l = libs()?;
    if !Path::new(PRIVCMD).exists() {
        return Err(FfiError::NoXenDevice(PRIVCMD));
    }
    let h = f(l);
    NonNull::new(h)
        .map(|h| (l, h))
        .ok_or_else(|| FfiError::Open {
            call,
            cause: io::Error::last_os_error(),
        })
}

/// A `xendevicemodel_handle`. Thread-safe (one DM_OP ioctl per call).
#[derive(Debug)]
pub struct DeviceModel {
    l: &'static XenLibs,
    h: NonNull<c_void>,
}

// SAFETY: a xendevicemodel handle is a file descriptor plus immutable state; the library
// allows calls from any thread (each call is one ioctl).
unsafe impl Send for DeviceModel {}
// SAFETY: as above; no call mutates shared handle state.
unsafe impl Sync for DeviceModel {}

impl DeviceModel {
    /// `xendevicemodel_open(NULL, 0)`.
    pub fn open() -> Result<Self, FfiError> {
        // SAFETY: NULL logger and flags 0 are documented valid arguments.
        let (l, h) = open_handle("xendevicemodel_open", |l| unsafe {
            (l.dm.open)(std::ptr::null_mut(), 0)
        })?;
        Ok(Self { l, h })
    }

    /// `create_ioreq_server`; returns the server id.
    pub fn create_ioreq_server(&self, domid: u16, bufioreq: i32) -> io::Result<u16> {
        let mut id: u16 = 0;
        // SAFETY: live handle; `id` is a valid out pointer for the call's duration.
        check(unsafe {
            (self.l.dm.create_ioreq_server)(self.h.as_ptr(), domid, bufioreq, &mut id)
        })?;
        Ok(id)
    }

    /// `get_ioreq_server_info` with both gfn pointers NULL (resource-mapping mode):
    /// returns the buffered-ring event-channel port.
    pub fn bufioreq_port(&self, domid: u16, id: u16) -> io::Result<u32> {
        let mut port: u32 = 0;
        // SAFETY: live handle; NULL gfn pointers are allowed (XEN_DMOP_no_gfns); `port`
        // is a valid out pointer.
        check(unsafe {
            (self.l.dm.get_ioreq_server_info)(
                self.h.as_ptr(),
                domid,
                id,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut port,
            )
        })?;
        Ok(port)
    }

    /// `map_io_range_to_ioreq_server` / `unmap_io_range_from_ioreq_server`
    /// (`last` inclusive).
    pub fn io_range(
        &self,
        domid: u16,
        id: u16,
        mmio: bool,
        first: u64,
        last: u64,
        map: bool,
    ) -> io::Result<()> {
        let f = if map {
            self.l.dm.map_io_range_to_ioreq_server
        } else {
            self.l.dm.unmap_io_range_from_ioreq_server
        };
        // SAFETY: live handle; scalar arguments only.
        check(unsafe { f(self.h.as_ptr(), domid, id, c_int::from(mmio), first, last) })
    }

    /// `map_pcidev_to_ioreq_server` / `unmap_pcidev_from_ioreq_server`.
    pub fn pcidev(&self, domid: u16, id: u16, s: Sbdf, map: bool) -> io::Result<()> {
        let f = if map {
            self.l.dm.map_pcidev_to_ioreq_server
        } else {
            self.l.dm.unmap_pcidev_from_ioreq_server
        };
        // SAFETY: live handle; scalar arguments only.
        check(unsafe {
            f(
                self.h.as_ptr(),
                domid,
                id,
                s.segment,
                s.bus,
                s.device,
                s.function,
            )
        })
    }

    /// `set_ioreq_server_state`.
    pub fn set_ioreq_server_state(&self, domid: u16, id: u16, enabled: bool) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments only.
        check(unsafe {
            (self.l.dm.set_ioreq_server_state)(self.h.as_ptr(), domid, id, c_int::from(enabled))
        })
    }

    /// `destroy_ioreq_server`.
    pub fn destroy_ioreq_server(&self, domid: u16, id: u16) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments only.
        check(unsafe { (self.l.dm.destroy_ioreq_server)(self.h.as_ptr(), domid, id) })
    }

    /// `inject_msi`.
    pub fn inject_msi(&self, domid: u16, addr: u64, data: u32) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments only.
        check(unsafe { (self.l.dm.inject_msi)(self.h.as_ptr(), domid, addr, data) })
    }

    /// `set_mem_type` for `nr` frames from `first_pfn`.
    pub fn set_mem_type(
        &self,
        domid: u16,
        mem_type: u32,
        first_pfn: u64,
        nr: u32,
    ) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments only.
        check(unsafe { (self.l.dm.set_mem_type)(self.h.as_ptr(), domid, mem_type, first_pfn, nr) })
    }

    /// `map_mem_type_to_ioreq_server` (`flags` 0 releases the claim).
    pub fn map_mem_type_to_ioreq_server(
        &self,
        domid: u16,
        id: u16,
        mem_type: u16,
        flags: u32,
    ) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments only.
        check(unsafe {
            (self.l.dm.map_mem_type_to_ioreq_server)(self.h.as_ptr(), domid, id, mem_type, flags)
        })
    }

    /// `modified_memory`.
    pub fn modified_memory(&self, domid: u16, first_pfn: u64, nr: u32) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments only.
        check(unsafe { (self.l.dm.modified_memory)(self.h.as_ptr(), domid, first_pfn, nr) })
    }

    /// `nr_vcpus`.
    pub fn nr_vcpus(&self, domid: u16) -> io::Result<u32> {
        let mut n: c_uint = 0;
        // SAFETY: live handle; `n` is a valid out pointer.
        check(unsafe { (self.l.dm.nr_vcpus)(self.h.as_ptr(), domid, &mut n) })?;
        Ok(n)
    }

    /// `restrict`: this handle may then only target `domid`.
    pub fn restrict(&self, domid: u16) -> io::Result<()> {
        // SAFETY: live handle; scalar argument.
        check(unsafe { (self.l.dm.restrict)(self.h.as_ptr(), domid) })
    }
}

impl Drop for DeviceModel {
    fn drop(&mut self) {
        // SAFETY: the handle is live and not used after this.
        unsafe { (self.l.dm.close)(self.h.as_ptr()) };
    }
}

/// A `xenforeignmemory_handle`.
#[derive(Debug)]
pub struct ForeignMemory {
    l: &'static XenLibs,
    h: NonNull<c_void>,
}

// SAFETY: the handle is a privcmd fd; map/unmap are independent ioctl/mmap calls that
// the library allows from any thread.
unsafe impl Send for ForeignMemory {}
// SAFETY: as above.
unsafe impl Sync for ForeignMemory {}

impl ForeignMemory {
    /// `xenforeignmemory_open(NULL, 0)`.
    pub fn open() -> Result<Arc<Self>, FfiError> {
        // SAFETY: NULL logger and flags 0 are valid.
        let (l, h) = open_handle("xenforeignmemory_open", |l| unsafe {
            (l.fm.open)(std::ptr::null_mut(), 0)
        })?;
        Ok(Arc::new(Self { l, h }))
    }

    /// `restrict`.
    pub fn restrict(&self, domid: u16) -> io::Result<()> {
        // SAFETY: live handle; scalar argument.
        check(unsafe { (self.l.fm.restrict)(self.h.as_ptr(), domid) })
    }

    /// `map_resource(domid, type, id, frame, nr)` read/write, shared.
    pub fn map_resource(
        self: &Arc<Self>,
        domid: u16,
        typ: u32,
        id: u32,
        frame: u64,
        nr: usize,
    ) -> io::Result<Arc<ResourceMapping>> {
        let mut addr: *mut c_void = std::ptr::null_mut();
        let frame = std::ffi::c_ulong::try_from(frame)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let nr_c = std::ffi::c_ulong::try_from(nr)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: live handle; `addr` is a valid in/out pointer holding a NULL hint;
        // prot/flags are the documented values.
        let res = unsafe {
            (self.l.fm.map_resource)(
                self.h.as_ptr(),
                domid,
                typ,
                id,
                frame,
                nr_c,
                &mut addr,
                libc::PROT_READ | libc::PROT_WRITE,
                0,
            )
        };
        let res = NonNull::new(res).ok_or_else(io::Error::last_os_error)?;
        let mapping = ResourceMapping {
            fm: Arc::clone(self),
            res,
            addr: NonNull::new(addr.cast::<u8>()),
            frames: nr,
        };
        if mapping.addr.is_none() {
            return Err(io::Error::from_raw_os_error(libc::EFAULT)); // Drop unmaps
        }
        Ok(Arc::new(mapping))
    }

    /// Maps `gfns` of `domid` contiguously, read/write, with per-page errors.
    pub fn map_frames(self: &Arc<Self>, domid: u16, gfns: &[u64]) -> io::Result<ForeignMapping> {
        if gfns.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut errs: Vec<c_int> = vec![0; gfns.len()];
        // SAFETY: live handle; `gfns` and `errs` are valid arrays of `gfns.len()`
        // elements for the call's duration.
        let p = unsafe {
            (self.l.fm.map)(
                self.h.as_ptr(),
                u32::from(domid),
                libc::PROT_READ | libc::PROT_WRITE,
                gfns.len(),
                gfns.as_ptr(),
                errs.as_mut_ptr(),
            )
        };
        let addr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(ForeignMapping {
            fm: Arc::clone(self),
            addr,
            errs,
        })
    }

    /// `map2` with an explicit address hint and extra mmap flags (e.g. `MAP_FIXED` to
    /// remap in place). Same per-page error semantics as [`Self::map_frames`].
    pub fn map_frames_at(
        self: &Arc<Self>,
        domid: u16,
        hint: Option<NonNull<u8>>,
        flags: c_int,
        gfns: &[u64],
    ) -> io::Result<ForeignMapping> {
        if gfns.is_empty() || flags & libc::MAP_FIXED != 0 && hint.is_none() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if flags & libc::MAP_FIXED != 0 {
            // Replacing arbitrary memory would be unsound from a safe API.
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        let mut errs: Vec<c_int> = vec![0; gfns.len()];
        let hint = hint.map_or(std::ptr::null_mut(), |h| h.as_ptr().cast::<c_void>());
        // SAFETY: live handle; without MAP_FIXED the hint is only advisory; arrays valid
        // for `gfns.len()` elements.
        let p = unsafe {
            (self.l.fm.map2)(
                self.h.as_ptr(),
                u32::from(domid),
                hint,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                gfns.len(),
                gfns.as_ptr(),
                errs.as_mut_ptr(),
            )
        };
        let addr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(ForeignMapping {
            fm: Arc::clone(self),
            addr,
            errs,
        })
    }
}

impl Drop for ForeignMemory {
    fn drop(&mut self) {
        // SAFETY: live handle, not used after this; every mapping holds an Arc, so none
        // outlives the handle.
        unsafe { (self.l.fm.close)(self.h.as_ptr()) };
    }
}

/// A mapped resource (the ioreq server's pages). Unmapped on drop.
#[derive(Debug)]
pub struct ResourceMapping {
    fm: Arc<ForeignMemory>,
    res: NonNull<c_void>,
    addr: Option<NonNull<u8>>,
    frames: usize,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics (PageRef);
// the resource handle is only used by Drop.
unsafe impl Send for ResourceMapping {}
// SAFETY: as above.
unsafe impl Sync for ResourceMapping {}

impl ResourceMapping {
    /// A view of page `index` of the mapping as `T`.
    pub fn page<T: PageLayout>(self: &Arc<Self>, index: usize) -> Option<PageRef<T>> {
        let base = self.addr?;
        if index >= self.frames {
            return None;
        }
        let off = index.checked_mul(XEN_PAGE_SIZE)?;
        // SAFETY: `index < frames`, so the offset stays inside the mapping.
        let p = unsafe { base.as_ptr().add(off) };
        let p = NonNull::new(p)?;
        let owner: Arc<dyn Send + Sync> = Arc::clone(self) as Arc<dyn Send + Sync>;
        // SAFETY: `p` is page-aligned (mmap result plus whole pages), mapped read/write
        // for XEN_PAGE_SIZE bytes, and `owner` keeps the mapping alive.
        Some(unsafe { PageRef::mapped(p, owner) })
    }
}

impl Drop for ResourceMapping {
    fn drop(&mut self) {
        // SAFETY: `res` came from map_resource on this handle and is released once.
        unsafe { (self.fm.l.fm.unmap_resource)(self.fm.h.as_ptr(), self.res.as_ptr()) };
    }
}

/// Guest frames mapped contiguously by `xenforeignmemory_map`. Unmapped on drop.
/// Access only by copying ([`MappedFrames`]); no reference into guest memory escapes.
#[derive(Debug)]
pub struct ForeignMapping {
    fm: Arc<ForeignMemory>,
    addr: NonNull<u8>,
    errs: Vec<c_int>,
}

// SAFETY: the mapping is foreign memory accessed only by bounded raw copies.
unsafe impl Send for ForeignMapping {}
// SAFETY: as above; concurrent copies into guest memory are as racy as the guest's own
// vCPUs, which is the accepted semantics of guest RAM.
unsafe impl Sync for ForeignMapping {}

impl ForeignMapping {
    fn span(&self, idx: usize, offset: usize, len: usize) -> Result<usize, GuestMemoryError> {
        let ok = self.errs.get(idx).is_some_and(|e| *e == 0)
            && offset.checked_add(len).is_some_and(|e| e <= XEN_PAGE_SIZE);
        if !ok {
            return Err(GuestMemoryError::MapFailed {
                gfn: idx as u64,
                reason: format!("frame {idx} not mapped or access out of page"),
            });
        }
        Ok(idx * XEN_PAGE_SIZE + offset)
    }

    /// Per-page result codes (0 or a negative errno).
    pub fn errors(&self) -> &[c_int] {
        &self.errs
    }
}

impl MappedFrames for ForeignMapping {
    fn frame_ok(&self, idx: usize) -> bool {
        self.errs.get(idx).is_some_and(|e| *e == 0)
    }

    fn read(&self, idx: usize, offset: usize, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let off = self.span(idx, offset, buf.len())?;
        // SAFETY: `off + buf.len()` lies inside a successfully mapped page (checked by
        // `span`); the source is foreign memory, never referenced, only copied.
        unsafe {
            std::ptr::copy_nonoverlapping(self.addr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&self, idx: usize, offset: usize, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let off = self.span(idx, offset, buf.len())?;
        // SAFETY: as in `read`; the destination is mapped writable.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.addr.as_ptr().add(off), buf.len())
        };
        Ok(())
    }
}

impl Drop for ForeignMapping {
    fn drop(&mut self) {
        // SAFETY: `addr` and the page count come from one successful map call and are
        // unmapped exactly once; no references into the mapping exist.
        unsafe {
            (self.fm.l.fm.unmap)(
                self.fm.h.as_ptr(),
                self.addr.as_ptr().cast(),
                self.errs.len(),
            )
        };
    }
}

/// A `xenevtchn_handle` with the ports it bound. Not `Sync`: one thread per handle.
#[derive(Debug)]
pub struct EventChannel {
    l: &'static XenLibs,
    h: NonNull<c_void>,
    bound: BTreeSet<u32>,
}

// SAFETY: the handle may move between threads; it is not shared (no Sync impl).
unsafe impl Send for EventChannel {}

impl EventChannel {
    /// `xenevtchn_open(NULL, 0)`.
    pub fn open() -> Result<Self, FfiError> {
        // SAFETY: NULL logger and flags 0 are valid.
        let (l, h) = open_handle("xenevtchn_open", |l| unsafe {
            (l.ev.open)(std::ptr::null_mut(), 0)
        })?;
        Ok(Self {
            l,
            h,
            bound: BTreeSet::new(),
        })
    }

    /// The pollable fd.
    pub fn fd(&self) -> RawFd {
        // SAFETY: live handle.
        unsafe { (self.l.ev.fd)(self.h.as_ptr()) }
    }

    /// `bind_interdomain`: returns the local port.
    pub fn bind_interdomain(&mut self, domid: u16, remote: u32) -> io::Result<u32> {
        // SAFETY: live handle; scalar arguments.
        let p = unsafe { (self.l.ev.bind_interdomain)(self.h.as_ptr(), u32::from(domid), remote) };
        let port = u32::try_from(p).map_err(|_| io::Error::last_os_error())?;
        self.bound.insert(port);
        Ok(port)
    }

    /// `notify` a local port.
    pub fn notify(&self, port: u32) -> io::Result<()> {
        // SAFETY: live handle; scalar argument.
        check(unsafe { (self.l.ev.notify)(self.h.as_ptr(), port) })
    }

    /// `pending`: the next signalled port (masked until [`Self::unmask`]). Blocks unless
    /// the fd is readable: poll first.
    pub fn pending(&self) -> io::Result<u32> {
        // SAFETY: live handle.
        let p = unsafe { (self.l.ev.pending)(self.h.as_ptr()) };
        u32::try_from(p).map_err(|_| io::Error::last_os_error())
    }

    /// `unmask`.
    pub fn unmask(&self, port: u32) -> io::Result<()> {
        // SAFETY: live handle; scalar argument.
        check(unsafe { (self.l.ev.unmask)(self.h.as_ptr(), port) })
    }

    /// `unbind` a port bound through this handle.
    pub fn unbind(&mut self, port: u32) -> io::Result<()> {
        if !self.bound.remove(&port) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: live handle; `port` was bound through it.
        check(unsafe { (self.l.ev.unbind)(self.h.as_ptr(), port) })
    }

    /// `restrict`.
    pub fn restrict(&self, domid: u16) -> io::Result<()> {
        // SAFETY: live handle; scalar argument.
        check(unsafe { (self.l.ev.restrict)(self.h.as_ptr(), domid) })
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        for port in std::mem::take(&mut self.bound) {
            // SAFETY: live handle; port bound through it.
            unsafe { (self.l.ev.unbind)(self.h.as_ptr(), port) };
        }
        // SAFETY: live handle, not used after this.
        unsafe { (self.l.ev.close)(self.h.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_xen_is_a_typed_error_not_a_panic() {
        // On a machine with the libraries and /dev/xen this opens for real; elsewhere the
        // error names what is missing.
        match DeviceModel::open() {
            Ok(_) => assert!(Path::new(PRIVCMD).exists()),
            Err(FfiError::LibraryMissing { soname, .. }) => assert!(soname.ends_with(".so.1")),
            Err(FfiError::NoXenDevice(p)) => assert_eq!(p, PRIVCMD),
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(EventChannel::open().is_ok() == ForeignMemory::open().is_ok());
    }
}
