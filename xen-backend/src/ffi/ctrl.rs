//! The few libxenctrl calls the RAM-backed GGTT window needs (recipe
//! `nested-xen-hvm-i915.md` §4 pitfall 8): raise the domain's `maxmem`, then
//! `populate_physmap_exact` frames inside the MMIO hole; `decrease_reservation_exact`
//! and lower `maxmem` again to give them back.
//!
//! **Known limit:** libxenctrl has no stable ABI. It is loaded by its per-release
//! soname [`XENCTRL_SONAME`] (`libxenctrl.so.4.17`, the Xen of the nested test setup),
//! and `xc_domain_getinfo`'s `xc_dominfo_t` layout is the 4.17 x86-64 one (checked at run
//! time as far as possible: the returned domid must match and `max_memkb` must cover
//! `nr_pages`). Another Xen release needs a new soname here (and a layout check); without
//! the library, populating fails with `ENOSYS` and the effect is counted as refused.

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::io;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::OnceLock;

use super::dl::{cached, fn_table, open_lib, LoadError};
use super::xen::PRIVCMD;
use super::FfiError;

/// The per-release soname loaded.
pub const XENCTRL_SONAME: &str = "libxenctrl.so.4.17";

type Handle = *mut c_void;

fn_table! {
    /// The libxenctrl calls used here.
    struct CtrlFns {
        open: unsafe extern "C" fn(*mut c_void, *mut c_void, c_uint) -> Handle =
            c"xc_interface_open",
        close: unsafe extern "C" fn(Handle) -> c_int = c"xc_interface_close",
        getinfo: unsafe extern "C" fn(Handle, u32, c_uint, *mut c_void) -> c_int =
            c"xc_domain_getinfo",
        setmaxmem: unsafe extern "C" fn(Handle, u32, u64) -> c_int = c"xc_domain_setmaxmem",
        populate_exact:
            unsafe extern "C" fn(Handle, u32, c_ulong, c_uint, c_uint, *mut u64) -> c_int =
            c"xc_domain_populate_physmap_exact",
        decrease_exact: unsafe extern "C" fn(Handle, u32, c_ulong, c_uint, *mut u64) -> c_int =
            c"xc_domain_decrease_reservation_exact",
    }
}

fn load() -> Result<CtrlFns, LoadError> {
    let l = open_lib(XENCTRL_SONAME, c"libxenctrl.so.4.17")?;
    // SAFETY: each field type of `CtrlFns` is the prototype from Xen 4.17's xenctrl.h:
    // xc_interface_open(xentoollog_logger*, xentoollog_logger*, unsigned),
    // xc_interface_close(xc_interface*), xc_domain_getinfo(xch, uint32_t, unsigned int,
    // xc_dominfo_t*), xc_domain_setmaxmem(xch, uint32_t, uint64_t),
    // xc_domain_populate_physmap_exact(xch, uint32_t, unsigned long, unsigned int,
    // unsigned int, xen_pfn_t*), xc_domain_decrease_reservation_exact(xch, uint32_t,
    // unsigned long, unsigned int, xen_pfn_t*); xen_pfn_t is a 64-bit unsigned long on
    // x86-64.
    unsafe { CtrlFns::load(&l) }
}

static FNS: OnceLock<Result<CtrlFns, LoadError>> = OnceLock::new();

fn fns() -> Result<&'static CtrlFns, FfiError> {
    cached(&FNS, load)
}

/// Byte offsets in the 4.17 x86-64 `xc_dominfo_t`.
const DOMINFO_DOMID: usize = 0;
const DOMINFO_NR_PAGES: usize = 16;
const DOMINFO_MAX_MEMKB: usize = 64;
/// Room for one `xc_dominfo_t` (about 112 bytes in 4.17), with margin.
const DOMINFO_BUF: usize = 64;

/// An `xc_interface` handle.
#[derive(Debug)]
pub struct XenCtrl {
    f: &'static CtrlFns,
    h: NonNull<c_void>,
}

// SAFETY: an xc_interface is a privcmd fd plus a hypercall buffer cache guarded by the
// library's own lock; libxenctrl allows calls from any thread.
unsafe impl Send for XenCtrl {}
// SAFETY: as above.
unsafe impl Sync for XenCtrl {}

fn check(rc: c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn u64_at(buf: &[u64], byte_off: usize) -> u64 {
    buf.get(byte_off / 8).copied().unwrap_or(0)
}

impl XenCtrl {
    /// `xc_interface_open(NULL, NULL, 0)`.
    pub fn open() -> Result<Self, FfiError> {
        let f = fns()?;
        if !Path::new(PRIVCMD).exists() {
            return Err(FfiError::NoXenDevice(PRIVCMD));
        }
        // SAFETY: NULL loggers and flags 0 are documented valid arguments.
        let h = unsafe { (f.open)(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        NonNull::new(h)
            .map(|h| Self { f, h })
            .ok_or_else(|| FfiError::Open {
                call: "xc_interface_open",
                cause: io::Error::last_os_error(),
            })
    }

    /// The domain's current `max_memkb`.
    pub fn max_memkb(&self, domid: u16) -> io::Result<u64> {
        let mut buf = [0u64; DOMINFO_BUF];
        // SAFETY: live handle; `buf` is 512 writable, 8-aligned bytes, more than one
        // xc_dominfo_t, and max_doms = 1 makes the library write at most one entry.
        let n = unsafe {
            (self.f.getinfo)(
                self.h.as_ptr(),
                u32::from(domid),
                1,
                buf.as_mut_ptr().cast::<c_void>(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = u64_at(&buf, DOMINFO_DOMID) & 0xffff_ffff;
        if n != 1 || got != u64::from(domid) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let max_kb = u64_at(&buf, DOMINFO_MAX_MEMKB);
        let pages = u64_at(&buf, DOMINFO_NR_PAGES);
        if max_kb == 0
            || pages
                .checked_mul(4)
                .map_or(true, |kb| kb > max_kb.saturating_add(4096))
        {
            // Not the 4.17 layout (or a nonsensical answer): refuse to act on it.
            return Err(io::Error::from_raw_os_error(libc::EPROTO));
        }
        Ok(max_kb)
    }

    /// `xc_domain_setmaxmem`.
    pub fn set_max_memkb(&self, domid: u16, kb: u64) -> io::Result<()> {
        // SAFETY: live handle; scalar arguments.
        check(unsafe { (self.f.setmaxmem)(self.h.as_ptr(), u32::from(domid), kb) })
    }

    /// `xc_domain_populate_physmap_exact` of order-0 extents at `gfns`.
    pub fn populate(&self, domid: u16, gfns: &[u64]) -> io::Result<()> {
        let mut g = gfns.to_vec();
        let n =
            c_ulong::try_from(g.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // SAFETY: live handle; `g` holds exactly `n` xen_pfn_t the call may read and
        // rewrite; order 0, flags 0.
        check(unsafe {
            (self.f.populate_exact)(self.h.as_ptr(), u32::from(domid), n, 0, 0, g.as_mut_ptr())
        })
    }

    /// `xc_domain_decrease_reservation_exact` of order-0 extents at `gfns` (for an
    /// auto-translated guest the extents are guest frame numbers).
    pub fn depopulate(&self, domid: u16, gfns: &[u64]) -> io::Result<()> {
        let mut g = gfns.to_vec();
        let n =
            c_ulong::try_from(g.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // SAFETY: live handle; `g` holds exactly `n` xen_pfn_t; order 0.
        check(unsafe {
            (self.f.decrease_exact)(self.h.as_ptr(), u32::from(domid), n, 0, g.as_mut_ptr())
        })
    }
}

impl Drop for XenCtrl {
    fn drop(&mut self) {
        // SAFETY: the handle is live and not used after this.
        unsafe { (self.f.close)(self.h.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_xenctrl_symbol_exists_where_the_library_is_installed() {
        match load() {
            Ok(_) | Err(LoadError::Library { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn missing_xenctrl_is_a_typed_error() {
        match XenCtrl::open() {
            Ok(x) => assert!(x.max_memkb(crate::abi::DOMID_INVALID).is_err()),
            Err(FfiError::LibraryMissing { soname, .. }) => assert_eq!(soname, XENCTRL_SONAME),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
