//! Turns ioreqs into [`IoHandler`] calls (`xen-abi.md` §1.4).
//!
//! One [`Dispatcher::handle`] call serves one request copied out of its slot: PIO,
//! MMIO (including `count > 1` repeats and `data_is_ptr` copies through guest RAM in the
//! direction `df` says), PCI configuration (SBDF decode), INVALIDATE, TIMEOFFSET and
//! buffered writes. Every malformed request is answered (reads with all-ones), counted in
//! [`DispatchCounters`], and logged at a limited rate; work per request is capped by
//! [`MAX_REP_COUNT`].

use std::time::{Duration, Instant};

use mediator::bus::{le_value, IoHandler, Space};
use mediator::effects::Effects;
use mediator::memory::GuestMemory;
use serde::Serialize;

use crate::abi::{
    BufIoreq, Ioreq, IOREQ_TYPE_COPY, IOREQ_TYPE_INVALIDATE, IOREQ_TYPE_PCI_CONFIG, IOREQ_TYPE_PIO,
    IOREQ_TYPE_TIMEOFFSET,
};

/// Most elements one repeated request may touch; larger counts are refused.
pub const MAX_REP_COUNT: u32 = 4096;
/// Highest PCI configuration register (with the AMD CF8 extension).
pub const MAX_PCI_REGISTER: u32 = 0xFFF;

/// What the dispatcher saw, per server. Tests assert these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DispatchCounters {
    /// Synchronous requests answered.
    pub requests: u64,
    /// Buffered requests consumed.
    pub buffered: u64,
    /// Port I/O requests.
    pub pio: u64,
    /// MMIO requests.
    pub mmio: u64,
    /// PCI configuration requests.
    pub pci_config: u64,
    /// Handler calls made (one per element of a repeated request).
    pub elements: u64,
    /// INVALIDATE requests (map cache flushed).
    pub invalidate: u64,
    /// TIMEOFFSET requests (ignored).
    pub timeoffset: u64,
    /// Requests of an unknown type.
    pub unknown_type: u64,
    /// Requests with a size the type does not allow.
    pub bad_size: u64,
    /// Requests with `count` 0 or above [`MAX_REP_COUNT`].
    pub bad_count: u64,
    /// Requests whose address span wraps or is out of the space.
    pub bad_address: u64,
    /// `data_is_ptr` requests whose buffer is not guest RAM (or not allowed).
    pub bad_data_ptr: u64,
    /// PCI configuration requests beyond register 0xFFF.
    pub bad_pci_register: u64,
    /// Buffered-ring protocol errors.
    pub buffered_protocol_errors: u64,
    /// Events that found no request ready.
    pub spurious: u64,
    /// Effects applied through the platform.
    pub effects_applied: u64,
    /// Effects the platform refused.
    pub effect_errors: u64,
    /// Log lines suppressed by the rate limiter.
    pub logs_suppressed: u64,
}

/// The reply to one synchronous request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// New value of the slot's `data` (`None` leaves it untouched).
    pub data: Option<u64>,
    /// The map cache must be flushed before answering.
    pub invalidate: bool,
}

const LOG_BURST: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// Allows `LOG_BURST` messages per second.
#[derive(Debug)]
struct RateLimiter {
    window_start: Instant,
    in_window: u32,
}

impl RateLimiter {
    fn new() -> Self {
        Self {
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= LOG_WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window <= LOG_BURST
    }
}

/// Serves requests of one server; owns its counters.
#[derive(Debug)]
pub struct Dispatcher {
    counters: DispatchCounters,
    limiter: RateLimiter,
    domid: u16,
}

/// Which counter a rejection bumps.
#[derive(Clone, Copy, Debug)]
enum Bad {
    Size,
    Count,
    Address,
    DataPtr,
    PciRegister,
    Type,
}

fn all_ones(req: &Ioreq) -> Reply {
    Reply {
        data: (req.is_read() && !req.data_is_ptr()).then_some(u64::MAX),
        invalidate: false,
    }
}

fn size_of_access(size: u32, max: u32) -> Option<usize> {
    match size {
        1 | 2 | 4 => usize::try_from(size).ok(),
        8 if max >= 8 => Some(8),
        _ => None,
    }
}

/// `base ± i * step`, `None` on wrap.
fn step_addr(base: u64, i: u64, step: u64, df: bool) -> Option<u64> {
    let off = i.checked_mul(step)?;
    if df {
        base.checked_sub(off)
    } else {
        base.checked_add(off)
    }
}

/// Whether the whole span of `count` elements of `size` bytes at `base` stays in
/// `0..=limit` without wrapping.
fn span_ok(base: u64, count: u32, size: usize, df: bool, limit: u64) -> bool {
    let size = size as u64; // 1..=8
    let Some(far) = step_addr(base, u64::from(count.saturating_sub(1)), size, df) else {
        return false;
    };
    let lo = base.min(far);
    let hi = base.max(far).checked_add(size - 1);
    hi.is_some_and(|h| h <= limit) && lo <= limit
}

impl Dispatcher {
    /// A dispatcher for a server of domain `domid` (used in log lines).
    pub fn new(domid: u16) -> Self {
        Self {
            counters: DispatchCounters::default(),
            limiter: RateLimiter::new(),
            domid,
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> DispatchCounters {
        self.counters
    }

    /// Mutable counters, for the server loop (spurious events, effects).
    pub fn counters_mut(&mut self) -> &mut DispatchCounters {
        &mut self.counters
    }

    /// Logs a guest-triggerable event, rate-limited.
    pub fn log_guest(&mut self, what: &str, req: &Ioreq) {
        if self.limiter.allow() {
            tracing::warn!(
                domid = self.domid,
                typ = req.typ,
                addr = req.addr,
                size = req.size,
                count = req.count,
                flags = req.flags,
                "{what}"
            );
        } else {
            self.counters.logs_suppressed = self.counters.logs_suppressed.saturating_add(1);
        }
    }

    fn reject(&mut self, bad: Bad, req: &Ioreq) -> Reply {
        let c = &mut self.counters;
        let (counter, what) = match bad {
            Bad::Size => (&mut c.bad_size, "ioreq with invalid size"),
            Bad::Count => (&mut c.bad_count, "ioreq with invalid repeat count"),
            Bad::Address => (
                &mut c.bad_address,
                "ioreq address span wraps or is out of range",
            ),
            Bad::DataPtr => (&mut c.bad_data_ptr, "ioreq data pointer is not guest RAM"),
            Bad::PciRegister => (&mut c.bad_pci_register, "PCI config register out of range"),
            Bad::Type => (&mut c.unknown_type, "ioreq of unknown type"),
        };
        *counter = counter.saturating_add(1);
        self.log_guest(what, req);
        all_ones(req)
    }

    /// Serves one synchronous request copied out of its slot.
    pub fn handle(
        &mut self,
        req: &Ioreq,
        mem: &dyn GuestMemory,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) -> Reply {
        self.counters.requests = self.counters.requests.saturating_add(1);
        self.serve(req, mem, h, fx)
    }

    /// Serves one buffered write (no reply).
    pub fn handle_buffered(
        &mut self,
        b: &BufIoreq,
        mem: &dyn GuestMemory,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) {
        self.counters.buffered = self.counters.buffered.saturating_add(1);
        let req = Ioreq {
            addr: u64::from(b.addr),
            data: b.data,
            count: 1,
            size: u32::from(b.size),
            flags: Ioreq::make_flags(0, false, b.read, false),
            typ: b.typ,
            ..Ioreq::default()
        };
        let _ = self.serve(&req, mem, h, fx);
    }

    fn serve(
        &mut self,
        req: &Ioreq,
        mem: &dyn GuestMemory,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) -> Reply {
        match req.typ {
            IOREQ_TYPE_PIO => {
                self.counters.pio = self.counters.pio.saturating_add(1);
                self.pio(req, mem, h, fx)
            }
            IOREQ_TYPE_COPY => {
                self.counters.mmio = self.counters.mmio.saturating_add(1);
                self.mmio(req, mem, h, fx)
            }
            IOREQ_TYPE_PCI_CONFIG => {
                self.counters.pci_config = self.counters.pci_config.saturating_add(1);
                self.pci(req, h, fx)
            }
            IOREQ_TYPE_INVALIDATE => {
                self.counters.invalidate = self.counters.invalidate.saturating_add(1);
                Reply {
                    data: None,
                    invalidate: true,
                }
            }
            IOREQ_TYPE_TIMEOFFSET => {
                self.counters.timeoffset = self.counters.timeoffset.saturating_add(1);
                Reply::default()
            }
            _ => self.reject(Bad::Type, req),
        }
    }

    fn pio(
        &mut self,
        req: &Ioreq,
        mem: &dyn GuestMemory,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) -> Reply {
        let Some(size) = size_of_access(req.size, 4) else {
            return self.reject(Bad::Size, req);
        };
        if !span_ok(req.addr, 1, size, false, 0xFFFF) {
            return self.reject(Bad::Address, req);
        }
        if req.data_is_ptr() {
            return self.rep(Space::Pio, req, size, true, mem, h, fx);
        }
        self.single(Space::Pio, req.addr, req, size, h, fx)
    }

    fn mmio(
        &mut self,
        req: &Ioreq,
        mem: &dyn GuestMemory,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) -> Reply {
        let Some(size) = size_of_access(req.size, 8) else {
            return self.reject(Bad::Size, req);
        };
        self.rep(Space::Mmio, req, size, false, mem, h, fx)
    }

    fn pci(&mut self, req: &Ioreq, h: &mut dyn IoHandler, fx: &mut Effects) -> Reply {
        let Some(size) = size_of_access(req.size, 4) else {
            return self.reject(Bad::Size, req);
        };
        if req.count != 1 {
            return self.reject(Bad::Count, req);
        }
        if req.data_is_ptr() {
            return self.reject(Bad::DataPtr, req);
        }
        let (_sbdf, reg) = crate::abi::Sbdf::from_ioreq_addr(req.addr);
        if !span_ok(u64::from(reg), 1, size, false, u64::from(MAX_PCI_REGISTER)) {
            return self.reject(Bad::PciRegister, req);
        }
        self.single(Space::PciConfig, req.addr, req, size, h, fx)
    }

    fn single(
        &mut self,
        space: Space,
        addr: u64,
        req: &Ioreq,
        size: usize,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) -> Reply {
        self.counters.elements = self.counters.elements.saturating_add(1);
        let mut buf = [0u8; 8];
        let b = &mut buf[..size];
        if req.is_read() {
            h.read(space, addr, b, fx);
            Reply {
                data: Some(le_value(b)),
                invalidate: false,
            }
        } else {
            b.copy_from_slice(&req.data.to_le_bytes()[..size]);
            h.write(space, addr, b, fx);
            Reply::default()
        }
    }

    /// Repeated access: device address `addr ± i*size` (or fixed for port I/O), RAM
    /// address `data ± i*size` when `data_is_ptr`.
    #[allow(clippy::too_many_arguments)]
    fn rep(
        &mut self,
        space: Space,
        req: &Ioreq,
        size: usize,
        fixed_port: bool,
        mem: &dyn GuestMemory,
        h: &mut dyn IoHandler,
        fx: &mut Effects,
    ) -> Reply {
        if req.count == 0 || req.count > MAX_REP_COUNT {
            return self.reject(Bad::Count, req);
        }
        let df = req.df();
        if !fixed_port && !span_ok(req.addr, req.count, size, df, u64::MAX) {
            return self.reject(Bad::Address, req);
        }
        let ptr = req.data_is_ptr();
        if ptr && !span_ok(req.data, req.count, size, df, u64::MAX) {
            return self.reject(Bad::DataPtr, req);
        }
        let step = size as u64; // 1..=8
        let mut buf = [0u8; 8];
        let value = req.data.to_le_bytes();
        let mut last = None;
        for i in 0..u64::from(req.count) {
            let dev = if fixed_port {
                Some(req.addr)
            } else {
                step_addr(req.addr, i, step, df)
            };
            let ram = if ptr {
                step_addr(req.data, i, step, df)
            } else {
                Some(0)
            };
            let (Some(dev), Some(ram)) = (dev, ram) else {
                return self.reject(Bad::Address, req);
            };
            let b = &mut buf[..size];
            self.counters.elements = self.counters.elements.saturating_add(1);
            match (req.is_read(), ptr) {
                (true, false) => {
                    h.read(space, dev, b, fx);
                    last = Some(le_value(b));
                }
                (false, false) => {
                    b.copy_from_slice(&value[..size]);
                    h.write(space, dev, b, fx);
                }
                (true, true) => {
                    h.read(space, dev, b, fx);
                    if mem.write(ram, b).is_err() {
                        return self.reject(Bad::DataPtr, req);
                    }
                }
                (false, true) => {
                    if mem.read(ram, b).is_err() {
                        return self.reject(Bad::DataPtr, req);
                    }
                    h.write(space, dev, b, fx);
                }
            }
        }
        Reply {
            data: last,
            invalidate: false,
        }
    }
}

#[cfg(test)]
mod tests;
