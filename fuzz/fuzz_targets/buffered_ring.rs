//! Fuzz target: the buffered ioreq ring consumer. The input fills the pointer pair and the
//! 511 slots of a buffered iopage (everything Xen and, through it, the guest control);
//! `ioreq::drain_buffered` must never panic, must consume a bounded number of entries and
//! must never move the read pointer past the write pointer; every decoded request is then
//! served by `Dispatcher::handle_buffered` with a test IoHandler.
#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use mediator::bus::{set_le_value, IoHandler, Space};
use mediator::effects::Effects;
use mediator::memory::VecMemory;
use xen_backend::abi::IOREQ_BUFFER_SLOT_NUM;
use xen_backend::dispatch::Dispatcher;
use xen_backend::ffi::page::BufferedIopage;
use xen_backend::ioreq::{self, MAX_BUFFERED_PER_DRAIN};

#[derive(Default)]
struct Sink {
    writes: usize,
}

impl IoHandler for Sink {
    fn read(&mut self, _space: Space, addr: u64, data: &mut [u8], _fx: &mut Effects) {
        assert!(matches!(data.len(), 1 | 2 | 4 | 8));
        set_le_value(data, addr);
    }
    fn write(&mut self, _space: Space, _addr: u64, data: &[u8], _fx: &mut Effects) {
        assert!(matches!(data.len(), 1 | 2 | 4 | 8));
        self.writes += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (ptrs, slots) = data.split_at(8);
    let page = BufferedIopage::default();
    let mut pointers = [0u8; 8];
    pointers.copy_from_slice(ptrs);
    let full = u64::from_le_bytes(pointers);
    page.pointers.store(full, Ordering::Relaxed);
    for (slot, c) in page.slots.iter().zip(slots.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        slot.store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
    let (rd0, wr) = (full as u32, (full >> 32) as u32);
    let drained = ioreq::drain_buffered(&page);
    assert!(drained.requests.len() <= MAX_BUFFERED_PER_DRAIN);
    let after = page.pointers.load(Ordering::Acquire);
    let rd1 = after as u32;
    assert_eq!(
        (after >> 32) as u32,
        wr,
        "the consumer never writes write_pointer"
    );
    let consumed = rd1.wrapping_sub(rd0);
    assert!(
        consumed <= wr.wrapping_sub(rd0),
        "read pointer passed write pointer"
    );
    assert!(
        consumed <= IOREQ_BUFFER_SLOT_NUM,
        "consumed more than the ring holds"
    );
    let mem = VecMemory::new(4096);
    let mut disp = Dispatcher::new(1);
    let mut h = Sink::default();
    let mut fx = Effects::new();
    for b in &drained.requests {
        assert!(matches!(b.size, 1 | 2 | 4 | 8));
        disp.handle_buffered(b, &mem, &mut h, &mut fx);
    }
});
