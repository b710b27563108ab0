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

/// Declares a table of `extern "C"` function pointers from one library, each field once
/// with its exact type and C symbol (`name: type = c"symbol"`), plus an
/// `unsafe fn load(&Lib)` that looks every symbol up with [`sym`] and fails with the
/// library's soname and the first missing symbol.
macro_rules! fn_table {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $ty:ty = $symbol:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Looks every symbol of the table up in `lib`.
            ///
            /// # Safety
            /// Every field's type must be the exact C prototype of its symbol.
            unsafe fn load(lib: &$crate::ffi::dl::Lib) -> Result<Self, $crate::ffi::dl::LoadError> {
                Ok(Self {
                    $(
                        // SAFETY: the caller guarantees that the declared type is the
                        // symbol's C prototype, which is `sym`'s contract.
                        $field: unsafe { $crate::ffi::dl::sym::<$ty>(lib, $symbol)? },
                    )*
                })
            }
        }
    };
}
pub(super) use fn_table;

fn_table! {
    /// libxendevicemodel functions used by the backend.
    pub(crate) struct DeviceModelFns {
        open: unsafe extern "C" fn(*mut c_void, c_uint) -> Handle = c"xendevicemodel_open",
        close: unsafe extern "C" fn(Handle) -> c_int = c"xendevicemodel_close",
        create_ioreq_server: unsafe extern "C" fn(Handle, u16, c_int, *mut u16) -> c_int =
            c"xendevicemodel_create_ioreq_server",
        get_ioreq_server_info:
            unsafe extern "C" fn(Handle, u16, u16, *mut u64, *mut u64, *mut u32) -> c_int =
            c"xendevicemodel_get_ioreq_server_info",
        map_io_range_to_ioreq_server:
            unsafe extern "C" fn(Handle, u16, u16, c_int, u64, u64) -> c_int =
            c"xendevicemodel_map_io_range_to_ioreq_server",
        unmap_io_range_from_ioreq_server:
            unsafe extern "C" fn(Handle, u16, u16, c_int, u64, u64) -> c_int =
            c"xendevicemodel_unmap_io_range_from_ioreq_server",
        map_pcidev_to_ioreq_server:
            unsafe extern "C" fn(Handle, u16, u16, u16, u8, u8, u8) -> c_int =
            c"xendevicemodel_map_pcidev_to_ioreq_server",
        unmap_pcidev_from_ioreq_server:
            unsafe extern "C" fn(Handle, u16, u16, u16, u8, u8, u8) -> c_int =
            c"xendevicemodel_unmap_pcidev_from_ioreq_server",
        set_ioreq_server_state: unsafe extern "C" fn(Handle, u16, u16, c_int) -> c_int =
            c"xendevicemodel_set_ioreq_server_state",
        destroy_ioreq_server: unsafe extern "C" fn(Handle, u16, u16) -> c_int =
            c"xendevicemodel_destroy_ioreq_server",
        inject_msi: unsafe extern "C" fn(Handle, u16, u64, u32) -> c_int =
            c"xendevicemodel_inject_msi",
        /// `hvmmem_type_t` is a C enum: 4 bytes, passed as u32.
        set_mem_type: unsafe extern "C" fn(Handle, u16, u32, u64, u32) -> c_int =
            c"xendevicemodel_set_mem_type",
        map_mem_type_to_ioreq_server: unsafe extern "C" fn(Handle, u16, u16, u16, u32) -> c_int =
            c"xendevicemodel_map_mem_type_to_ioreq_server",
        modified_memory: unsafe extern "C" fn(Handle, u16, u64, u32) -> c_int =
            c"xendevicemodel_modified_memory",
        nr_vcpus: unsafe extern "C" fn(Handle, u16, *mut c_uint) -> c_int =
            c"xendevicemodel_nr_vcpus",
        restrict: unsafe extern "C" fn(Handle, u16) -> c_int = c"xendevicemodel_restrict",
    }
}

fn_table! {
    /// libxenforeignmemory functions used by the backend.
    pub(crate) struct ForeignMemoryFns {
        open: unsafe extern "C" fn(*mut c_void, c_uint) -> Handle = c"xenforeignmemory_open",
        close: unsafe extern "C" fn(Handle) -> c_int = c"xenforeignmemory_close",
        map: unsafe extern "C" fn(Handle, u32, c_int, usize, *const u64, *mut c_int) -> *mut c_void =
            c"xenforeignmemory_map",
        map2: unsafe extern "C" fn(
            Handle,
            u32,
            *mut c_void,
            c_int,
            c_int,
            usize,
            *const u64,
            *mut c_int,
        ) -> *mut c_void = c"xenforeignmemory_map2",
        unmap: unsafe extern "C" fn(Handle, *mut c_void, usize) -> c_int =
            c"xenforeignmemory_unmap",
        map_resource: unsafe extern "C" fn(
            Handle,
            u16,
            c_uint,
            c_uint,
            c_ulong,
            c_ulong,
            *mut *mut c_void,
            c_int,
            c_int,
        ) -> *mut c_void = c"xenforeignmemory_map_resource",
        unmap_resource: unsafe extern "C" fn(Handle, *mut c_void) -> c_int =
            c"xenforeignmemory_unmap_resource",
        restrict: unsafe extern "C" fn(Handle, u16) -> c_int = c"xenforeignmemory_restrict",
    }
}

fn_table! {
    /// libxenevtchn functions used by the backend.
    pub(crate) struct EvtchnFns {
        open: unsafe extern "C" fn(*mut c_void, c_uint) -> Handle = c"xenevtchn_open",
        close: unsafe extern "C" fn(Handle) -> c_int = c"xenevtchn_close",
        fd: unsafe extern "C" fn(Handle) -> c_int = c"xenevtchn_fd",
        bind_interdomain: unsafe extern "C" fn(Handle, u32, u32) -> c_int =
            c"xenevtchn_bind_interdomain",
        notify: unsafe extern "C" fn(Handle, u32) -> c_int = c"xenevtchn_notify",
        pending: unsafe extern "C" fn(Handle) -> c_int = c"xenevtchn_pending",
        unmask: unsafe extern "C" fn(Handle, u32) -> c_int = c"xenevtchn_unmask",
        unbind: unsafe extern "C" fn(Handle, u32) -> c_int = c"xenevtchn_unbind",
        restrict: unsafe extern "C" fn(Handle, u16) -> c_int = c"xenevtchn_restrict",
    }
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
    // SAFETY: every field type in the three tables is the hand-written prototype of its
    // symbol from the Xen 4.17 headers (xen-abi.md §2.3, §3.1, §3.2).
    unsafe {
        Ok(XenLibs {
            dm: DeviceModelFns::load(&dm)?,
            fm: ForeignMemoryFns::load(&fm)?,
            ev: EvtchnFns::load(&ev)?,
        })
    }
}

/// The cached result of a loader: runs `load` on first use, keeps the outcome (failures
/// included) for the life of the process.
pub(super) fn cached<T>(
    cell: &'static OnceLock<Result<T, LoadError>>,
    load: fn() -> Result<T, LoadError>,
) -> Result<&'static T, FfiError> {
    cell.get_or_init(load)
        .as_ref()
        .map_err(|e| e.clone().into())
}

static LIBS: OnceLock<Result<XenLibs, LoadError>> = OnceLock::new();

/// The loaded libraries (loaded on first use, then cached, failures included).
pub(crate) fn libs() -> Result<&'static XenLibs, FfiError> {
    cached(&LIBS, load)
}

/// Whether all three libraries can be loaded (for diagnostics and tests).
pub fn probe() -> Result<(), FfiError> {
    libs().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn_table! {
        /// A libc function.
        struct Good {
            getpid: unsafe extern "C" fn() -> c_int = c"getpid",
        }
    }

    fn_table! {
        /// Two libc functions, one of them misspelt (never loads, so never read).
        #[allow(dead_code)]
        struct Probe {
            getpid: unsafe extern "C" fn() -> c_int = c"getpid",
            nope: unsafe extern "C" fn() -> c_int = c"getpid_no_such_symbol",
        }
    }

    #[test]
    fn a_table_loads_and_a_missing_symbol_names_library_and_symbol() {
        let libc = open_lib("libc.so.6", c"libc.so.6").unwrap();
        // SAFETY: test only: `getpid` is `pid_t getpid(void)` with pid_t = int.
        let good = unsafe { Good::load(&libc) }.unwrap();
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { (good.getpid)() };
        assert_eq!(u32::try_from(pid).ok(), Some(std::process::id()));
        // SAFETY: test only: `getpid` is `pid_t getpid(void)` (pid_t = int); the load
        // fails before the misspelt entry could be used.
        let err = unsafe { Probe::load(&libc) }.unwrap_err();
        match err {
            LoadError::Symbol { soname, symbol } => {
                assert_eq!(soname, "libc.so.6");
                assert_eq!(symbol, "getpid_no_such_symbol");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            open_lib("libxengt-nonexistent.so.9", c"libxengt-nonexistent.so.9"),
            Err(LoadError::Library { .. })
        ));
    }

    #[test]
    fn every_declared_xen_symbol_exists_where_the_libraries_are_installed() {
        // Without the libraries (no Xen packages) only LibraryMissing is acceptable; with
        // them, a SymbolMissing means a misspelt symbol name in a table.
        match probe() {
            Ok(()) | Err(FfiError::LibraryMissing { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
