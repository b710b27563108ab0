//! Fuzz target: the synchronous ioreq path as a guest (through Xen) drives it. Each 32-byte
//! chunk of the input is written into a vCPU's slot of a shared ioreq page exactly as the
//! guest-controlled fields would arrive (state forced to READY), taken with
//! `ioreq::take`, served by `Dispatcher::handle` against guest RAM and a test IoHandler,
//! and answered. It must never panic, every handler access must be 1, 2, 4 or 8 bytes,
//! every slot must end up answered (IORESP_READY), and port, MMIO and config-space reads
//! must produce data (invalidate and time-offset requests carry none).
#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use mediator::bus::{set_le_value, IoHandler, Space};
use mediator::effects::Effects;
use mediator::memory::{GuestMemory, VecMemory};
use xen_backend::abi::{
    Ioreq, IOREQ_SLOTS, IOREQ_TYPE_COPY, IOREQ_TYPE_PCI_CONFIG, IOREQ_TYPE_PIO, STATE_IOREQ_READY,
    STATE_IORESP_READY,
};
use xen_backend::dispatch::Dispatcher;
use xen_backend::ffi::page::SharedIopage;
use xen_backend::ioreq;

/// Guest RAM: 64 KiB, so data pointers land in RAM often and outside it often.
const RAM: u64 = 64 << 10;
/// Handler calls allowed per request (the dispatcher caps repeat counts).
const MAX_CALLS: usize = 1 << 16;

/// Checks every access and answers reads with a value derived from the address.
#[derive(Default)]
struct Checker {
    calls: usize,
}

impl IoHandler for Checker {
    fn read(&mut self, _space: Space, addr: u64, data: &mut [u8], _fx: &mut Effects) {
        assert!(
            matches!(data.len(), 1 | 2 | 4 | 8),
            "read of {}",
            data.len()
        );
        self.calls += 1;
        set_le_value(data, addr.rotate_left(17) ^ 0x5a5a_5a5a_5a5a_5a5a);
    }
    fn write(&mut self, _space: Space, _addr: u64, data: &[u8], _fx: &mut Effects) {
        assert!(
            matches!(data.len(), 1 | 2 | 4 | 8),
            "write of {}",
            data.len()
        );
        self.calls += 1;
    }
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

fuzz_target!(|data: &[u8]| {
    let mem = VecMemory::new(RAM);
    // The first KiB of the input also seeds guest RAM (data-pointer buffers).
    let _ = mem.write(0, &data[..data.len().min(1024)]);
    let page = SharedIopage::default();
    let mut disp = Dispatcher::new(1);
    for (n, c) in data.chunks_exact(32).enumerate().take(64) {
        let vcpu = usize::from(c[28]) % IOREQ_SLOTS;
        let cell = &page.slots[vcpu];
        cell.addr.store(u64_at(c, 0), Ordering::Relaxed);
        cell.data.store(u64_at(c, 8), Ordering::Relaxed);
        cell.count.store(u32_at(c, 16), Ordering::Relaxed);
        cell.size.store(u32_at(c, 20), Ordering::Relaxed);
        cell.vp_eport.store(u32_at(c, 24), Ordering::Relaxed);
        cell.typ.store(c[31], Ordering::Relaxed);
        let flags = (c[30] & !0x0f) | STATE_IOREQ_READY;
        cell.flags.store(flags, Ordering::Release);
        let Some(pending) = ioreq::take(&page, vcpu) else {
            panic!("a READY slot must be taken (request {n})");
        };
        let req: Ioreq = *pending.request();
        let mut h = Checker::default();
        let mut fx = Effects::new();
        let reply = disp.handle(&req, &mem, &mut h, &mut fx);
        assert!(h.calls <= MAX_CALLS, "{} handler calls", h.calls);
        let access = matches!(
            req.typ,
            IOREQ_TYPE_PIO | IOREQ_TYPE_COPY | IOREQ_TYPE_PCI_CONFIG
        );
        if access && req.is_read() && !req.data_is_ptr() {
            assert!(
                reply.data.is_some(),
                "a read must be answered with data: {req:?}"
            );
        }
        let _ = pending.complete(reply.data);
        let state = cell.flags.load(Ordering::Acquire) & 0x0f;
        assert_eq!(state, STATE_IORESP_READY);
        assert!(
            ioreq::take(&page, vcpu).is_none(),
            "answered slot taken again"
        );
    }
});
