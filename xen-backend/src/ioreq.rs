//! The synchronous ioreq state protocol (`xen-abi.md` §1.3) and the buffered-ring
//! consumer (§1.5), over the atomic page views of [`crate::ffi::page`].
//!
//! The protocol is enforced by construction:
//! * [`take`] is the only way to obtain a [`PendingRequest`]; it moves a slot from
//!   `READY` to `INPROCESS` with a compare-exchange, so at most one token exists per
//!   published request.
//! * [`PendingRequest::complete`] consumes the token, writes `data` and then publishes
//!   `IORESP_READY` with release ordering. The token is not `Clone`, so a request cannot
//!   be answered twice:
//!
//! ```compile_fail
//! # fn f(p: xen_backend::ioreq::PendingRequest<'_>) {
//! let _ = p.complete(Some(1));
//! let _ = p.complete(Some(2)); // error: use of moved value
//! # }
//! ```
//! * A dropped token answers the request (reads with all-ones), so a request cannot be
//!   left unanswered either.
//! * No code path stores `NONE` or any state lower than the current one.

use std::sync::atomic::Ordering;

use thiserror::Error;

use crate::abi::{
    BufIoreq, Ioreq, FLAG_STATE_MASK, IOREQ_BUFFER_SLOT_NUM, STATE_IOREQ_INPROCESS,
    STATE_IOREQ_READY, STATE_IORESP_READY,
};
use crate::ffi::page::{BufferedIopage, IoreqCell, SharedIopage};

/// Protocol violations seen on the shared pages.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IoreqError {
    /// A qword entry's second half was not yet published.
    #[error("buffered ring: qword entry at {rd} has no second slot (write pointer {wr})")]
    TruncatedQword { rd: u32, wr: u32 },
    /// The write pointer is more than a ring ahead of the read pointer.
    #[error("buffered ring: write pointer {wr} is more than one ring ahead of {rd}")]
    Overrun { rd: u32, wr: u32 },
}

/// A request taken from its slot: the slot is `INPROCESS` and owned by this token.
#[derive(Debug)]
pub struct PendingRequest<'a> {
    cell: &'a IoreqCell,
    vcpu: usize,
    req: Ioreq,
    answered: bool,
}

/// Proof that a slot was answered; pass it to the notifier (`notify(vcpu)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the local port of this vCPU must be notified"]
pub struct Answered {
    /// The vCPU whose slot was answered.
    pub vcpu: usize,
}

/// Takes the request in slot `vcpu` if it is `READY`: one acquire load of the state,
/// copy of the slot, `READY → INPROCESS`. `None` if the slot is not `READY` (spurious
/// event, already taken, or out of range).
pub fn take(page: &SharedIopage, vcpu: usize) -> Option<PendingRequest<'_>> {
    let cell = page.slots.get(vcpu)?;
    let flags = cell.flags.load(Ordering::Acquire);
    if flags & FLAG_STATE_MASK != STATE_IOREQ_READY {
        return None;
    }
    let mut req = cell.snapshot();
    req.flags = flags;
    let inprocess = (flags & !FLAG_STATE_MASK) | STATE_IOREQ_INPROCESS;
    cell.flags
        .compare_exchange(flags, inprocess, Ordering::AcqRel, Ordering::Acquire)
        .ok()?;
    Some(PendingRequest {
        cell,
        vcpu,
        req,
        answered: false,
    })
}

impl PendingRequest<'_> {
    /// The copy of the slot taken when the request was `READY` (never re-read).
    pub fn request(&self) -> &Ioreq {
        &self.req
    }

    /// The vCPU (slot index).
    pub fn vcpu(&self) -> usize {
        self.vcpu
    }

    /// Answers: stores `data` (if any), then `IORESP_READY` with release ordering.
    pub fn complete(mut self, data: Option<u64>) -> Answered {
        self.finish(data);
        Answered { vcpu: self.vcpu }
    }

    fn finish(&mut self, data: Option<u64>) {
        if self.answered {
            return;
        }
        self.answered = true;
        if let Some(d) = data {
            self.cell.data.store(d, Ordering::Relaxed);
        }
        let hi = self.req.flags & !FLAG_STATE_MASK;
        self.cell
            .flags
            .store(hi | STATE_IORESP_READY, Ordering::Release);
    }
}

impl Drop for PendingRequest<'_> {
    fn drop(&mut self) {
        // An unanswered request would hang the vCPU forever: answer it.
        let data = self.req.is_read().then_some(u64::MAX);
        self.finish(data);
    }
}

/// What one drain of the buffered ring did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BufferedDrain {
    /// Decoded requests, in ring order.
    pub requests: Vec<BufIoreq>,
    /// Protocol errors seen (the ring is then left alone until the next event).
    pub errors: Vec<IoreqError>,
}

/// Most entries consumed per drain, so a flooding guest cannot monopolise the loop.
pub const MAX_BUFFERED_PER_DRAIN: usize = 4 * IOREQ_BUFFER_SLOT_NUM as usize;

/// Consumes every published buffered entry (QEMU's `handle_buffered_iopage`): read both
/// pointers, re-check, decode (two slots for a qword), advance `read_pointer` with an
/// atomic read-modify-write that fails if Xen changed the pair meanwhile.
pub fn drain_buffered(page: &BufferedIopage) -> BufferedDrain {
    let mut out = BufferedDrain::default();
    while out.requests.len() < MAX_BUFFERED_PER_DRAIN {
        let full = page.pointers.load(Ordering::Acquire);
        let rd = (full & 0xFFFF_FFFF) as u32; // low half
        let wr = (full >> 32) as u32; // high half
        if rd == wr {
            break;
        }
        let avail = wr.wrapping_sub(rd);
        if avail > IOREQ_BUFFER_SLOT_NUM {
            out.errors.push(IoreqError::Overrun { rd, wr });
            break;
        }
        let first = slot(page, rd).load(Ordering::Acquire);
        let (req, n) = if BufIoreq::slot_is_qword(first) {
            if avail < 2 {
                out.errors.push(IoreqError::TruncatedQword { rd, wr });
                break;
            }
            let second = slot(page, rd.wrapping_add(1)).load(Ordering::Acquire);
            (BufIoreq::decode(first, Some(second)), 2u64)
        } else {
            (BufIoreq::decode(first, None), 1u64)
        };
        // Advance read_pointer (low half) only if the pair is unchanged; otherwise Xen
        // canonicalised or published more: start over with fresh pointers.
        let new = (full & !0xFFFF_FFFF) | u64::from(rd.wrapping_add(n as u32));
        if page
            .pointers
            .compare_exchange(full, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            out.requests.push(req);
        }
    }
    out
}

fn slot(page: &BufferedIopage, ptr: u32) -> &std::sync::atomic::AtomicU64 {
    let idx = usize::try_from(ptr % IOREQ_BUFFER_SLOT_NUM).unwrap_or(0);
    // idx < 511 = slots.len(); `get` keeps this panic-free regardless.
    page.slots.get(idx).unwrap_or(&page.slots[0])
}

/// Producer side (Xen / the simulated Xen): appends `req` if there is room. Returns
/// `false` if the ring is full (the caller then sends the request synchronously).
pub fn push_buffered(page: &BufferedIopage, req: &BufIoreq) -> bool {
    let (words, n) = req.encode();
    loop {
        let full = page.pointers.load(Ordering::Acquire);
        let rd = (full & 0xFFFF_FFFF) as u32;
        let wr = (full >> 32) as u32;
        let used = wr.wrapping_sub(rd);
        let n32 = n as u32;
        if used.saturating_add(n32) > IOREQ_BUFFER_SLOT_NUM {
            return false;
        }
        for (i, w) in words.iter().take(n).enumerate() {
            slot(page, wr.wrapping_add(i as u32)).store(*w, Ordering::Relaxed);
        }
        // Publish: bump write_pointer (high half); canonicalise like Xen's ATOMIC mode
        // when both pointers passed a multiple of the ring size.
        let mut nrd = rd;
        let mut nwr = wr.wrapping_add(n32);
        if nrd >= IOREQ_BUFFER_SLOT_NUM {
            let k = (nrd / IOREQ_BUFFER_SLOT_NUM) * IOREQ_BUFFER_SLOT_NUM;
            nrd -= k;
            nwr = nwr.wrapping_sub(k);
        }
        let new = u64::from(nwr) << 32 | u64::from(nrd);
        if page
            .pointers
            .compare_exchange(full, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{IOREQ_TYPE_COPY, STATE_IOREQ_NONE};
    use std::sync::atomic::AtomicU64;

    fn publish(page: &SharedIopage, vcpu: usize, data: u64, read: bool) {
        let c = &page.slots[vcpu];
        c.addr.store(0x1000, Ordering::Relaxed);
        c.data.store(data, Ordering::Relaxed);
        c.size.store(4, Ordering::Relaxed);
        c.count.store(1, Ordering::Relaxed);
        c.typ.store(IOREQ_TYPE_COPY, Ordering::Relaxed);
        c.flags.store(
            Ioreq::make_flags(STATE_IOREQ_READY, false, read, false),
            Ordering::Release,
        );
    }

    fn state(page: &SharedIopage, vcpu: usize) -> u8 {
        page.slots[vcpu].flags.load(Ordering::Acquire) & FLAG_STATE_MASK
    }

    #[test]
    fn state_only_moves_forward_and_answers_once() {
        let page = SharedIopage::default();
        assert!(take(&page, 0).is_none(), "NONE slot is not taken");
        publish(&page, 3, 0, true);
        let p = take(&page, 3).unwrap();
        assert_eq!(state(&page, 3), STATE_IOREQ_INPROCESS);
        assert!(
            take(&page, 3).is_none(),
            "a taken slot cannot be taken again"
        );
        // the copy does not change when the slot does
        page.slots[3].addr.store(0xdead, Ordering::Relaxed);
        assert_eq!(p.request().addr, 0x1000);
        let a = p.complete(Some(0x55));
        assert_eq!(a.vcpu, 3);
        assert_eq!(state(&page, 3), STATE_IORESP_READY);
        assert_eq!(page.slots[3].data.load(Ordering::Relaxed), 0x55);
        assert!(take(&page, 3).is_none(), "answered slot stays answered");
        // the dir bit survives the state changes
        assert_ne!(page.slots[3].flags.load(Ordering::Relaxed) & 0x20, 0);
        assert!(take(&page, 999).is_none());
    }

    #[test]
    fn dropped_token_answers_reads_with_all_ones() {
        let page = SharedIopage::default();
        publish(&page, 1, 7, true);
        drop(take(&page, 1).unwrap());
        assert_eq!(state(&page, 1), STATE_IORESP_READY);
        assert_eq!(page.slots[1].data.load(Ordering::Relaxed), u64::MAX);
        publish(&page, 2, 7, false);
        drop(take(&page, 2).unwrap());
        assert_eq!(state(&page, 2), STATE_IORESP_READY);
        assert_eq!(
            page.slots[2].data.load(Ordering::Relaxed),
            7,
            "write data kept"
        );
    }

    #[test]
    fn concurrent_takers_get_one_token() {
        let page = SharedIopage::default();
        for round in 0..200u64 {
            publish(&page, 0, round, false);
            let won = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        if let Some(p) = take(&page, 0) {
                            won.fetch_add(1, Ordering::Relaxed);
                            let _ = p.complete(None);
                        }
                    });
                }
            });
            assert_eq!(won.load(Ordering::Relaxed), 1);
            page.slots[0]
                .flags
                .store(STATE_IOREQ_NONE, Ordering::Release);
        }
    }

    fn ring() -> BufferedIopage {
        BufferedIopage::default()
    }

    #[test]
    fn buffered_ring_round_trips_and_wraps() {
        let page = ring();
        let mut expect = Vec::new();
        for i in 0..2000u64 {
            let req = BufIoreq {
                typ: IOREQ_TYPE_COPY,
                read: false,
                size: if i % 3 == 0 { 8 } else { 4 },
                addr: 0xA0000 + (i as u32 % 0x100),
                data: if i % 3 == 0 { i << 40 | i } else { i },
            };
            if !push_buffered(&page, &req) {
                let d = drain_buffered(&page);
                assert!(d.errors.is_empty());
                assert_eq!(d.requests, std::mem::take(&mut expect));
                assert!(push_buffered(&page, &req));
            }
            expect.push(req);
        }
        let d = drain_buffered(&page);
        assert_eq!(d.requests, expect);
        let full = page.pointers.load(Ordering::Relaxed);
        assert_eq!(full & 0xFFFF_FFFF, full >> 32, "ring empty");
        assert!(
            (full >> 32) < 2 * u64::from(IOREQ_BUFFER_SLOT_NUM),
            "canonicalised"
        );
    }

    #[test]
    fn buffered_protocol_errors_are_reported_not_fatal() {
        let page = ring();
        // A qword first half published without its second half.
        let q = BufIoreq {
            typ: IOREQ_TYPE_COPY,
            read: false,
            size: 8,
            addr: 0xA0000,
            data: 1,
        };
        page.slots[0].store(q.encode().0[0], Ordering::Relaxed);
        page.pointers.store(1u64 << 32, Ordering::Release);
        let d = drain_buffered(&page);
        assert!(d.requests.is_empty());
        assert_eq!(d.errors, vec![IoreqError::TruncatedQword { rd: 0, wr: 1 }]);
        // Write pointer far ahead.
        page.pointers.store(5000u64 << 32, Ordering::Release);
        let d = drain_buffered(&page);
        assert!(matches!(d.errors[..], [IoreqError::Overrun { .. }]));
        let _ = AtomicU64::new(0);
    }
}
