//! Safe views of the shared ioreq pages as atomics.
//!
//! [`SharedIopage`] and [`BufferedIopage`] have exactly the layout of Xen's
//! `shared_iopage` and `buffered_iopage` (4096 bytes each) but every field is an atomic, so
//! the protocol code above works on `&SharedIopage` without `unsafe` and is identical for a
//! foreign-mapped page of a real Xen and a heap page of the simulated Xen. A [`PageRef`]
//! keeps whatever owns the memory (an `Arc` of the heap page, or the resource mapping)
//! alive for as long as the view exists.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use std::mem::{align_of, offset_of, size_of};

use crate::abi::{Ioreq, IOREQ_BUFFER_SLOT_NUM, IOREQ_SLOTS, XEN_PAGE_SIZE};

/// One `struct ioreq` slot with every field atomic (same offsets as [`Ioreq`]).
#[repr(C)]
#[derive(Debug, Default)]
pub struct IoreqCell {
    /// `addr`.
    pub addr: AtomicU64,
    /// `data` (the only field the emulator writes besides the state).
    pub data: AtomicU64,
    /// `count`.
    pub count: AtomicU32,
    /// `size`.
    pub size: AtomicU32,
    /// `vp_eport` (written by Xen only).
    pub vp_eport: AtomicU32,
    /// `_pad0`.
    pub pad0: AtomicU16,
    /// The bit-field byte: state, data_is_ptr, dir, df.
    pub flags: AtomicU8,
    /// `type`.
    pub typ: AtomicU8,
}

impl IoreqCell {
    /// Copies every field with relaxed loads (call after an acquire load of `flags`).
    pub fn snapshot(&self) -> Ioreq {
        Ioreq {
            addr: self.addr.load(Ordering::Relaxed),
            data: self.data.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
            size: self.size.load(Ordering::Relaxed),
            vp_eport: self.vp_eport.load(Ordering::Relaxed),
            pad0: self.pad0.load(Ordering::Relaxed),
            flags: self.flags.load(Ordering::Relaxed),
            typ: self.typ.load(Ordering::Relaxed),
        }
    }
}

/// `struct shared_iopage`: one slot per vCPU.
#[repr(C)]
#[derive(Debug)]
pub struct SharedIopage {
    /// Slot `i` belongs to vCPU `i`.
    pub slots: [IoreqCell; IOREQ_SLOTS],
}

impl Default for SharedIopage {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| IoreqCell::default()),
        }
    }
}

/// Number of buffered-ring entries as an array length.
pub const BUF_SLOTS: usize = IOREQ_BUFFER_SLOT_NUM as usize;

/// `struct buffered_iopage`: the pointer pair and 511 eight-byte entries.
#[repr(C)]
#[derive(Debug)]
pub struct BufferedIopage {
    /// `read_pointer` (low 32 bits, emulator-owned) and `write_pointer` (high 32 bits,
    /// Xen-owned), accessed as one 64-bit word like Xen's `full` union member.
    pub pointers: AtomicU64,
    /// The ring; entry word 0 is the low half, word 1 the high half.
    pub slots: [AtomicU64; BUF_SLOTS],
}

impl Default for BufferedIopage {
    fn default() -> Self {
        Self {
            pointers: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

const _: () = {
    assert!(size_of::<IoreqCell>() == size_of::<Ioreq>());
    assert!(offset_of!(IoreqCell, data) == offset_of!(Ioreq, data));
    assert!(offset_of!(IoreqCell, count) == offset_of!(Ioreq, count));
    assert!(offset_of!(IoreqCell, size) == offset_of!(Ioreq, size));
    assert!(offset_of!(IoreqCell, vp_eport) == offset_of!(Ioreq, vp_eport));
    assert!(offset_of!(IoreqCell, flags) == offset_of!(Ioreq, flags));
    assert!(offset_of!(IoreqCell, typ) == offset_of!(Ioreq, typ));
    assert!(size_of::<SharedIopage>() == XEN_PAGE_SIZE);
    assert!(align_of::<SharedIopage>() <= XEN_PAGE_SIZE);
    assert!(size_of::<BufferedIopage>() == XEN_PAGE_SIZE);
    assert!(offset_of!(BufferedIopage, slots) == 8);
    assert!(align_of::<BufferedIopage>() <= XEN_PAGE_SIZE);
};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SharedIopage {}
    impl Sealed for super::BufferedIopage {}
}

/// A page layout made only of atomics, exactly one Xen page long, valid for any bit
/// pattern. Sealed: only the two ioreq page types implement it.
pub trait PageLayout: sealed::Sealed + Send + Sync + 'static {}
impl PageLayout for SharedIopage {}
impl PageLayout for BufferedIopage {}

/// A shared reference to one ioreq page, wherever it lives.
pub struct PageRef<T: PageLayout> {
    ptr: NonNull<T>,
    _owner: Arc<dyn Send + Sync>,
}

impl<T: PageLayout> std::fmt::Debug for PageRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageRef({:p})", self.ptr)
    }
}

// SAFETY: the page is made only of atomics (`T: Sync`), and the owner is `Send + Sync`;
// sharing or moving the view across threads is as safe as sharing `&T`.
unsafe impl<T: PageLayout> Send for PageRef<T> {}
// SAFETY: as above; `PageRef` only hands out `&T`.
unsafe impl<T: PageLayout> Sync for PageRef<T> {}

impl<T: PageLayout> PageRef<T> {
    /// A view of a heap page (the simulated Xen's side keeps the other `Arc`).
    pub fn heap(page: Arc<T>) -> Self {
        let ptr = NonNull::from(page.as_ref());
        Self { ptr, _owner: page }
    }

    /// A view of `XEN_PAGE_SIZE` bytes of mapped memory at `addr`, kept alive by `owner`.
    ///
    /// # Safety
    /// `addr` must be page-aligned, readable and writable for `XEN_PAGE_SIZE` bytes, and
    /// stay mapped for as long as `owner` is alive. Other parties (Xen) may modify it
    /// concurrently; that is fine because `T` consists only of atomics.
    pub(crate) unsafe fn mapped(addr: NonNull<u8>, owner: Arc<dyn Send + Sync>) -> Self {
        Self {
            ptr: addr.cast(),
            _owner: owner,
        }
    }
}

impl<T: PageLayout> std::ops::Deref for PageRef<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points to a live, suitably aligned `T`-sized region kept alive by
        // `_owner` (heap: the `Arc<T>` itself; mapped: the mapping, per `mapped`'s
        // contract). `T` is all atomics, so any bit pattern is valid and concurrent
        // modification through other references or by Xen is not a data race.
        unsafe { self.ptr.as_ref() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_pages_are_shared_views() {
        let page = Arc::new(SharedIopage::default());
        let view = PageRef::heap(Arc::clone(&page));
        page.slots[5].data.store(42, Ordering::Relaxed);
        assert_eq!(view.slots[5].snapshot().data, 42);
        drop(page);
        // the view keeps the page alive
        view.slots[0].addr.store(1, Ordering::Relaxed);
        assert_eq!(view.slots[0].addr.load(Ordering::Relaxed), 1);
    }
}
