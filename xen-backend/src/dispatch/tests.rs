#![allow(clippy::too_many_arguments, clippy::type_complexity)]

use super::*;
use crate::abi::{IOREQ_TYPE_COPY, STATE_IOREQ_READY};
use mediator::bus::set_le_value;
use mediator::memory::VecMemory;

/// Records every call; reads return `addr` xor a marker.
#[derive(Default)]
struct Rec {
    calls: Vec<(Space, u64, bool, Vec<u8>)>,
}

impl IoHandler for Rec {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], _fx: &mut Effects) {
        set_le_value(data, addr ^ 0xA5A5_0000);
        self.calls.push((space, addr, true, data.to_vec()));
    }
    fn write(&mut self, space: Space, addr: u64, data: &[u8], _fx: &mut Effects) {
        self.calls.push((space, addr, false, data.to_vec()));
    }
}

fn req(
    typ: u8,
    addr: u64,
    data: u64,
    size: u32,
    count: u32,
    read: bool,
    ptr: bool,
    df: bool,
) -> Ioreq {
    Ioreq {
        addr,
        data,
        count,
        size,
        flags: Ioreq::make_flags(STATE_IOREQ_READY, ptr, read, df),
        typ,
        ..Ioreq::default()
    }
}

fn run(r: &Ioreq, mem: &VecMemory) -> (Reply, Rec, DispatchCounters) {
    let mut d = Dispatcher::new(1);
    let mut h = Rec::default();
    let mut fx = Effects::new();
    let reply = d.handle(r, mem, &mut h, &mut fx);
    (reply, h, d.counters())
}

#[test]
fn single_reads_and_writes_of_every_size() {
    let mem = VecMemory::new(4096);
    for size in [1u32, 2, 4, 8] {
        let (rep, h, _) = run(
            &req(IOREQ_TYPE_COPY, 0x1000, 0, size, 1, true, false, false),
            &mem,
        );
        let full = 0x1000u64 ^ 0xA5A5_0000;
        let mask = if size == 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        assert_eq!(rep.data, Some(full & mask));
        assert_eq!(h.calls.len(), 1);
        let (rep, h, _) = run(
            &req(
                IOREQ_TYPE_COPY,
                0x2000,
                0x1122_3344_5566_7788,
                size,
                1,
                false,
                false,
                false,
            ),
            &mem,
        );
        assert_eq!(rep.data, None);
        assert_eq!(
            h.calls[0].3,
            0x1122_3344_5566_7788u64.to_le_bytes()[..size as usize]
        );
    }
    let (rep, h, _) = run(
        &req(IOREQ_TYPE_PIO, 0x3f8, 0xAB, 1, 1, false, false, false),
        &mem,
    );
    assert_eq!(
        (rep.data, h.calls[0].0, h.calls[0].3.clone()),
        (None, Space::Pio, vec![0xAB])
    );
}

#[test]
fn rep_with_data_pointer_copies_both_directions() {
    for df in [false, true] {
        let mem = VecMemory::new(8192);
        // MMIO -> RAM (read), 4 elements of 2 bytes
        let base = if df { 0x106 } else { 0x100 };
        let ram = if df { 0x806 } else { 0x800 };
        let (rep, h, c) = run(&req(IOREQ_TYPE_COPY, base, ram, 2, 4, true, true, df), &mem);
        assert_eq!(rep.data, None);
        assert_eq!(c.elements, 4);
        for (i, call) in h.calls.iter().enumerate() {
            let i = i as u64;
            let dev = if df { base - 2 * i } else { base + 2 * i };
            let r = if df { ram - 2 * i } else { ram + 2 * i };
            assert_eq!(call.1, dev);
            let mut b = [0u8; 2];
            mem.read(r, &mut b).unwrap();
            assert_eq!(
                u64::from(u16::from_le_bytes(b)),
                (dev ^ 0xA5A5_0000) & 0xFFFF
            );
        }
        // RAM -> PIO (write), port fixed
        mem.write(0x900, &[1, 2, 3, 4, 5, 6]).unwrap();
        let start = if df { 0x905 } else { 0x900 };
        let (_, h, _) = run(
            &req(IOREQ_TYPE_PIO, 0x60, start, 1, 6, false, true, df),
            &mem,
        );
        let bytes: Vec<u8> = h.calls.iter().map(|c| c.3[0]).collect();
        assert!(h.calls.iter().all(|c| c.1 == 0x60));
        if df {
            assert_eq!(bytes, vec![6, 5, 4, 3, 2, 1]);
        } else {
            assert_eq!(bytes, vec![1, 2, 3, 4, 5, 6]);
        }
    }
}

#[test]
fn rep_without_pointer_repeats_value_and_keeps_last_read() {
    let mem = VecMemory::new(4096);
    let (rep, h, _) = run(
        &req(IOREQ_TYPE_COPY, 0x100, 0, 4, 3, true, false, false),
        &mem,
    );
    assert_eq!(rep.data, Some(0x108 ^ 0xA5A5_0000));
    assert_eq!(h.calls.len(), 3);
    let (_, h, _) = run(
        &req(IOREQ_TYPE_COPY, 0x100, 7, 4, 3, false, false, true),
        &mem,
    );
    let addrs: Vec<u64> = h.calls.iter().map(|c| c.1).collect();
    assert_eq!(addrs, vec![0x100, 0xFC, 0xF8]);
}

#[test]
fn pci_config_keeps_sbdf_address() {
    let mem = VecMemory::new(4096);
    let a = crate::abi::Sbdf::new(0, 0, 2, 0).unwrap().ioreq_addr(0x10);
    let (rep, h, c) = run(
        &req(IOREQ_TYPE_PCI_CONFIG, a, 0, 4, 1, true, false, false),
        &mem,
    );
    assert_eq!(h.calls[0].0, Space::PciConfig);
    assert_eq!(h.calls[0].1, a);
    assert_eq!(rep.data, Some((a ^ 0xA5A5_0000) & 0xFFFF_FFFF));
    assert_eq!(c.pci_config, 1);
}

#[test]
fn hostile_requests_are_answered_and_counted() {
    let mem = VecMemory::new(4096);
    let cases: Vec<(Ioreq, fn(&DispatchCounters) -> u64)> = vec![
        (req(99, 0, 0, 4, 1, true, false, false), |c| c.unknown_type),
        (
            req(IOREQ_TYPE_COPY, 0x100, 0, 0, 1, true, false, false),
            |c| c.bad_size,
        ),
        (
            req(IOREQ_TYPE_COPY, 0x100, 0, 3, 1, true, false, false),
            |c| c.bad_size,
        ),
        (
            req(IOREQ_TYPE_COPY, 0x100, 0, 16, 1, true, false, false),
            |c| c.bad_size,
        ),
        (
            req(IOREQ_TYPE_PIO, 0x100, 0, 8, 1, true, false, false),
            |c| c.bad_size,
        ),
        (
            req(IOREQ_TYPE_COPY, 0x100, 0, 4, u32::MAX, true, false, false),
            |c| c.bad_count,
        ),
        (
            req(IOREQ_TYPE_COPY, 0x100, 0, 4, 0, true, false, false),
            |c| c.bad_count,
        ),
        (
            req(IOREQ_TYPE_COPY, u64::MAX - 2, 0, 4, 1, true, false, false),
            |c| c.bad_address,
        ),
        (req(IOREQ_TYPE_COPY, 4, 0, 4, 3, true, false, true), |c| {
            c.bad_address
        }),
        (
            req(IOREQ_TYPE_PIO, 0xFFFF, 0, 2, 1, true, false, false),
            |c| c.bad_address,
        ),
        (
            req(IOREQ_TYPE_COPY, 0x100, 1 << 40, 4, 2, true, true, false),
            |c| c.bad_data_ptr,
        ),
        (
            req(
                IOREQ_TYPE_COPY,
                0x100,
                u64::MAX - 1,
                4,
                2,
                false,
                true,
                false,
            ),
            |c| c.bad_data_ptr,
        ),
        (
            req(IOREQ_TYPE_PCI_CONFIG, 0x1000, 0, 4, 1, true, false, false),
            |c| c.bad_pci_register,
        ),
        (
            req(IOREQ_TYPE_PCI_CONFIG, 0xFFE, 0, 4, 1, true, false, false),
            |c| c.bad_pci_register,
        ),
        (
            req(IOREQ_TYPE_PCI_CONFIG, 0x10, 0, 4, 2, true, false, false),
            |c| c.bad_count,
        ),
    ];
    for (r, counter) in cases {
        let (rep, h, c) = run(&r, &mem);
        assert_eq!(counter(&c), 1, "{r:?} counted");
        if r.is_read() && !r.data_is_ptr() {
            assert_eq!(rep.data, Some(u64::MAX), "{r:?} answered all-ones");
        }
        if r.data_is_ptr() {
            assert!(h.calls.len() <= 1, "stopped at the first bad element");
        } else {
            assert!(h.calls.is_empty(), "{r:?} must not reach the handler");
        }
    }
}

#[test]
fn invalidate_and_timeoffset_are_special() {
    let mem = VecMemory::new(4096);
    let (rep, h, c) = run(
        &req(
            crate::abi::IOREQ_TYPE_INVALIDATE,
            0,
            !0,
            4,
            1,
            false,
            false,
            false,
        ),
        &mem,
    );
    assert!(rep.invalidate && h.calls.is_empty() && c.invalidate == 1);
    let (rep, h, c) = run(
        &req(
            crate::abi::IOREQ_TYPE_TIMEOFFSET,
            0,
            5,
            8,
            1,
            false,
            false,
            false,
        ),
        &mem,
    );
    assert!(!rep.invalidate && h.calls.is_empty() && c.timeoffset == 1);
}

#[test]
fn buffered_writes_reach_the_handler() {
    let mem = VecMemory::new(4096);
    let mut d = Dispatcher::new(1);
    let mut h = Rec::default();
    let mut fx = Effects::new();
    let b = BufIoreq {
        typ: IOREQ_TYPE_COPY,
        read: false,
        size: 8,
        addr: 0xA0010,
        data: 0x0102_0304_0506_0708,
    };
    d.handle_buffered(&b, &mem, &mut h, &mut fx);
    assert_eq!(h.calls[0].1, 0xA0010);
    assert_eq!(
        h.calls[0].3,
        0x0102_0304_0506_0708u64.to_le_bytes().to_vec()
    );
    assert_eq!(d.counters().buffered, 1);
}

#[test]
fn log_flood_is_rate_limited() {
    let mem = VecMemory::new(4096);
    let mut d = Dispatcher::new(1);
    let mut h = Rec::default();
    let mut fx = Effects::new();
    for _ in 0..100 {
        d.handle(
            &req(77, 0, 0, 4, 1, true, false, false),
            &mem,
            &mut h,
            &mut fx,
        );
    }
    assert_eq!(d.counters().unknown_type, 100);
    assert!(d.counters().logs_suppressed >= 100 - u64::from(LOG_BURST));
}
