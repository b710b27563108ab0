//! `dlopen` of the stable Xen libraries by versioned soname, and the `extern "C"`
//! function-pointer tables (prototypes from `xen-abi.md` §2.3, §3.1, §3.2).
//!
//! The libraries are loaded once per process and never unloaded, so the function
//! pointers stay valid for the life of the process.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::sync::OnceLock;

use super::FfiError;

/// `libxendevicemodel.so.1`.
pub const DEVICEMODEL_SONAME: &str = "libxendevicemodel.so.1";
/// `libxenforeignmemory.so.1`.
pub const FOREIGNMEMORY_SONAME: &str = "libxenforeignmemory.so.1";
/// `libxenevtchn.so.1`.
pub const EVTCHN_SONAME: &str = "libxenevtchn.so.1";

type Handle = *mut c_void;

/// libxendevicemodel functions used by the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceModelFns {
    pub open: unsafe extern "C" fn(*mut c_void, c_uint) -> Handle,
    pub close: unsafe extern "C" fn(Handle) -> c_int,
    pub create_ioreq_server: unsafe extern "C" fn(Handle, u16, c_int, *mut u16) -> c_int,
    pub get_ioreq_server_info:
        unsafe extern "C" fn(Handle, u16, u16, *mut u64, *mut u64, *mut u32) -> c_int,
    pub map_io_range_to_ioreq_server:
        unsafe extern "C" fn(Handle, u16, u16, c_int, u64, u64) -> c_int,
    pub unmap_io_range_from_ioreq_server:
        unsafe extern "C" fn(Handle, u16, u16, c_int, u64, u64) -> c_int,
    pub map_pcidev_to_ioreq_server:
        unsafe extern "C" fn(Handle, u16, u16, u16, u8, u8, u8) -> c_int,
    pub unmap_pcidev_from_ioreq_server:
        unsafe extern "C" fn(Handle, u16, u16, u16, u8, u8, u8) -> c_int,
    pub set_ioreq_server_state: unsafe extern "C" fn(Handle, u16, u16, c_int) -> c_int,
    pub destroy_ioreq_server: unsafe extern "C" fn(Handle, u16, u16) -> c_int,
    pub inject_msi: unsafe extern "C" fn(Handle, u16, u64, u32) -> c_int,
    /// `hvmmem_type_t` is a C enum: 4 bytes, passed as u32.
    pub set_mem_type: unsafe extern "C" fn(Handle, u16, u32, u64, u32) -> c_int,
    pub map_mem_type_to_ioreq_server: unsafe extern "C" fn(Handle, u16, u16, u16, u32) -> c_int,
    pub modified_memory: unsafe extern "C" fn(Handle, u16, u64, u32) -> c_int,
    pub nr_vcpus: unsafe extern "C" fn(Handle, u16, *mut c_uint) -> c_int,
    pub restrict: unsafe extern "C" fn(Handle, u16) -> c_int,
}

/// libxenforeignmemory functions used by the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForeignMemoryFns {
    pub open: unsafe extern "C" fn(*mut c_void, c_uint) -> Handle,
    pub close: unsafe extern "C" fn(Handle) -> c_int,
    pub map: unsafe extern "C" fn(Handle, u32, c_int, usize, *const u64, *mut c_int) -> *mut c_void,
    pub map2: unsafe extern "C" fn(
        Handle,
        u32,
        *mut c_void,
        c_int,
        c_int,
        usize,
        *const u64,
        *mut c_int,
    ) -> *mut c_void,
    pub unmap: unsafe extern "C" fn(Handle, *mut c_void, usize) -> c_int,
    pub map_resource: unsafe extern "C" fn(
        Handle,
        u16,
        c_uint,
        c_uint,
        c_ulong,
        c_ulong,
        *mut *mut c_void,
        c_int,
        c_int,
    ) -> *mut c_void,
    pub unmap_resource: unsafe extern "C" fn(Handle, *mut c_void) -> c_int,
    pub restrict: unsafe extern "C" fn(Handle, u16) -> c_int,
}

/// libxenevtchn functions used by the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvtchnFns {
    pub open: unsafe extern "C" fn(*mut c_void, c_uint) -> Handle,
    pub close: unsafe extern "C" fn(Handle) -> c_int,
    pub fd: unsafe extern "C" fn(Handle) -> c_int,
    pub bind_interdomain: unsafe extern "C" fn(Handle, u32, u32) -> c_int,
    pub notify: unsafe extern "C" fn(Handle, u32) -> c_int,
    pub pending: unsafe extern "C" fn(Handle) -> c_int,
    pub unmask: unsafe extern "C" fn(Handle, u32) -> c_int,
    pub unbind: unsafe extern "C" fn(Handle, u32) -> c_int,
    pub restrict: unsafe extern "C" fn(Handle, u16) -> c_int,
}

/// All three libraries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct XenLibs {
    pub dm: DeviceModelFns,
    pub fm: ForeignMemoryFns,
    pub ev: EvtchnFns,
}

/// Clone-able form of a load failure (kept in the `OnceLock`).
#[derive(Debug, Clone)]
pub(super) enum LoadError {
    Library {
        soname: &'static str,
        reason: String,
    },
    Symbol {
        soname: &'static str,
        symbol: &'static str,
    },
}

impl From<LoadError> for FfiError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Library { soname, reason } => FfiError::LibraryMissing { soname, reason },
            LoadError::Symbol { soname, symbol } => FfiError::SymbolMissing { soname, symbol },
        }
    }
}

pub(super) struct Lib {
    handle: *mut c_void,
    soname: &'static str,
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated thread-local string that stays
    // valid until the next dl* call on this thread; we copy it immediately.
    let p: *const c_char = unsafe { libc::dlerror() };
    if p.is_null() {
        return "unknown dlopen error".into();
    }
    // SAFETY: non-NULL, NUL-terminated (see above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub(super) fn open_lib(soname: &'static str, cname: &CStr) -> Result<Lib, LoadError> {
    // SAFETY: `cname` is NUL-terminated; dlopen runs the library's initialisers, which
    // for the Xen tool libraries only register with libxentoolcore.
    let handle = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(LoadError::Library {
            soname,
            reason: dlerror_text(),
        });
    }
    Ok(Lib { handle, soname })
}

/// Looks up `name` and reinterprets it as the function-pointer type `T`.
///
/// # Safety
/// `T` must be an `unsafe extern "C" fn` type whose signature matches the C prototype
/// of `name`.
pub(super) unsafe fn sym<T: Copy>(lib: &Lib, name: &'static CStr) -> Result<T, LoadError> {
    const { assert!(std::mem::size_of::<T>() == std::mem::size_of::<*mut c_void>()) };
    // SAFETY: handle came from a successful dlopen; `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(lib.handle, name.as_ptr()) };
    if p.is_null() {
        return Err(LoadError::Symbol {
            soname: lib.soname,
            symbol: name.to_str().unwrap_or("?"),
        });
    }
    // SAFETY: `p` is the non-NULL address of the function `name`; the caller guarantees
    // `T` is a function pointer with its exact C signature, and sizes match (asserted).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

fn load() -> Result<XenLibs, LoadError> {
    let dm = open_lib(DEVICEMODEL_SONAME, c"libxendevicemodel.so.1")?;
    let fm = open_lib(FOREIGNMEMORY_SONAME, c"libxenforeignmemory.so.1")?;
    let ev = open_lib(EVTCHN_SONAME, c"libxenevtchn.so.1")?;
    // SAFETY: (all `sym` calls below) each field's type is the hand-written prototype of
    // the named function from the Xen 4.17 headers (xen-abi.md §2.3, §3.1, §3.2).
    unsafe {
        Ok(XenLibs {
            dm: DeviceModelFns {
                open: sym(&dm, c"xendevicemodel_open")?,
                close: sym(&dm, c"xendevicemodel_close")?,
                create_ioreq_server: sym(&dm, c"xendevicemodel_create_ioreq_server")?,
                get_ioreq_server_info: sym(&dm, c"xendevicemodel_get_ioreq_server_info")?,
                map_io_range_to_ioreq_server: sym(
                    &dm,
                    c"xendevicemodel_map_io_range_to_ioreq_server",
                )?,
                unmap_io_range_from_ioreq_server: sym(
                    &dm,
                    c"xendevicemodel_unmap_io_range_from_ioreq_server",
                )?,
                map_pcidev_to_ioreq_server: sym(&dm, c"xendevicemodel_map_pcidev_to_ioreq_server")?,
                unmap_pcidev_from_ioreq_server: sym(
                    &dm,
                    c"xendevicemodel_unmap_pcidev_from_ioreq_server",
                )?,
                set_ioreq_server_state: sym(&dm, c"xendevicemodel_set_ioreq_server_state")?,
                destroy_ioreq_server: sym(&dm, c"xendevicemodel_destroy_ioreq_server")?,
                inject_msi: sym(&dm, c"xendevicemodel_inject_msi")?,
                set_mem_type: sym(&dm, c"xendevicemodel_set_mem_type")?,
                map_mem_type_to_ioreq_server: sym(
                    &dm,
                    c"xendevicemodel_map_mem_type_to_ioreq_server",
                )?,
                modified_memory: sym(&dm, c"xendevicemodel_modified_memory")?,
                nr_vcpus: sym(&dm, c"xendevicemodel_nr_vcpus")?,
                restrict: sym(&dm, c"xendevicemodel_restrict")?,
            },
            fm: ForeignMemoryFns {
                open: sym(&fm, c"xenforeignmemory_open")?,
                close: sym(&fm, c"xenforeignmemory_close")?,
                map: sym(&fm, c"xenforeignmemory_map")?,
                map2: sym(&fm, c"xenforeignmemory_map2")?,
                unmap: sym(&fm, c"xenforeignmemory_unmap")?,
                map_resource: sym(&fm, c"xenforeignmemory_map_resource")?,
                unmap_resource: sym(&fm, c"xenforeignmemory_unmap_resource")?,
                restrict: sym(&fm, c"xenforeignmemory_restrict")?,
            },
            ev: EvtchnFns {
                open: sym(&ev, c"xenevtchn_open")?,
                close: sym(&ev, c"xenevtchn_close")?,
                fd: sym(&ev, c"xenevtchn_fd")?,
                bind_interdomain: sym(&ev, c"xenevtchn_bind_interdomain")?,
                notify: sym(&ev, c"xenevtchn_notify")?,
                pending: sym(&ev, c"xenevtchn_pending")?,
                unmask: sym(&ev, c"xenevtchn_unmask")?,
                unbind: sym(&ev, c"xenevtchn_unbind")?,
                restrict: sym(&ev, c"xenevtchn_restrict")?,
            },
        })
    }
}

static LIBS: OnceLock<Result<XenLibs, LoadError>> = OnceLock::new();

/// The loaded libraries (loaded on first use, then cached, failures included).
pub(crate) fn libs() -> Result<&'static XenLibs, FfiError> {
    LIBS.get_or_init(load)
        .as_ref()
        .map_err(|e| e.clone().into())
}

/// Whether all three libraries can be loaded (for diagnostics and tests).
pub fn probe() -> Result<(), FfiError> {
    libs().map(|_| ())
}
