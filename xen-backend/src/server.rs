//! The generic ioreq server loop, shared by the real and the simulated Xen.
//!
//! [`IoreqServer`] owns the mapped pages, the dispatcher and the map cache, and talks to
//! the hypervisor only through the small [`Platform`] trait (events, notify, range and
//! memory-type calls, MSI). The dispatch code is therefore identical on both.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use mediator::bus::{IoHandler, Space};
use mediator::effects::{Effect, Effects};
use mediator::memory::GuestMemory;

use crate::api::{DeviceServer, ServerCounters, ServiceReport, XenBackendError};
use crate::dispatch::Dispatcher;
use crate::ffi::page::{BufferedIopage, PageRef, SharedIopage};
use crate::ioreq::{drain_buffered, take};
use crate::mapcache::MapCache;

/// Most PCI functions one `Trap`/`Untrap` of config space may name.
pub const MAX_PCI_FUNCTIONS_PER_EFFECT: u64 = 256;
/// Most frames one `PopulateRam`/`ReleaseRam` may name (16 MiB; the GGTT window is 8).
pub const MAX_POPULATE_FRAMES: u64 = 4096;

/// What a hypervisor must provide to one ioreq server.
pub trait Platform: Send {
    /// Domain served.
    fn domid(&self) -> u16;
    /// Server id.
    fn server_id(&self) -> u16;
    /// The fd the daemon polls.
    fn poll_fd(&self) -> RawFd;
    /// Consumes pending event notifications (and unmasks them). Returns whether any was
    /// pending; `DomainGone` if the domain no longer exists.
    fn take_events(&mut self) -> Result<bool, XenBackendError>;
    /// Notifies the local port of `vcpu`'s slot after it was answered.
    fn notify(&mut self, vcpu: usize) -> io::Result<()>;
    /// Adds (`map`) or removes a range; for `PciConfig`, `first..=last` are SBDFs.
    fn map_range(&mut self, space: Space, first: u64, last: u64, map: bool) -> io::Result<()>;
    /// Injects an MSI.
    fn inject_msi(&mut self, addr: u64, data: u32) -> io::Result<()>;
    /// Sets a frame to `HVMMEM_ioreq_server` (`protect`) or back to `ram_rw`.
    fn write_protect(&mut self, gfn: u64, protect: bool) -> io::Result<()>;
    /// Makes `count` frames from `first_gfn` RAM of the domain (`populate`), or gives
    /// frames populated this way back. The platform remembers what it populated and
    /// releases it when dropped.
    fn populate_ram(&mut self, first_gfn: u64, count: u64, populate: bool) -> io::Result<()>;
    /// The domain is known to be gone: teardown failures are expected from now on.
    fn domain_gone(&mut self) {}
    /// Whether an error means the domain is gone (ESRCH on a real Xen).
    fn is_gone(&self, err: &io::Error) -> bool {
        err.raw_os_error() == Some(libc::ESRCH)
    }
}

/// The pirq a PV-on-HVM Linux guest encodes in an MSI address when it programs vector 0
/// (Xen's `hvm_inject_msi`): destination-ID bits 19:12 give the low byte, address bits
/// 63:40 the rest. Xen delivers such an MSI as an event on that pirq of the same domain.
pub fn xen_msi_pirq(addr: u64) -> u64 {
    ((addr >> 32) & 0xFFFF_FF00) | ((addr >> 12) & 0xFF)
}

/// One ioreq server over a [`Platform`].
pub struct IoreqServer<P: Platform> {
    // Field order is drop order: the platform (which destroys the server and unbinds its
    // ports) goes first, the page mappings after it, as QEMU does.
    platform: P,
    page: PageRef<SharedIopage>,
    buf: Option<PageRef<BufferedIopage>>,
    nr_vcpus: usize,
    dispatcher: Dispatcher,
    mem: Arc<MapCache>,
    fx: Effects,
    gone: bool,
}

impl<P: Platform> std::fmt::Debug for IoreqServer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoreqServer")
            .field("domid", &self.platform.domid())
            .field("id", &self.platform.server_id())
            .field("nr_vcpus", &self.nr_vcpus)
            .finish()
    }
}

impl<P: Platform> IoreqServer<P> {
    /// Wraps an enabled server whose ports are bound.
    pub fn new(
        platform: P,
        page: PageRef<SharedIopage>,
        buf: Option<PageRef<BufferedIopage>>,
        nr_vcpus: usize,
        mem: Arc<MapCache>,
    ) -> Self {
        let domid = platform.domid();
        Self {
            platform,
            page,
            buf,
            nr_vcpus: nr_vcpus.min(crate::abi::IOREQ_SLOTS),
            dispatcher: Dispatcher::new(domid),
            mem,
            fx: Effects::new(),
            gone: false,
        }
    }

    fn gone_error(&mut self) -> XenBackendError {
        self.gone = true;
        self.platform.domain_gone();
        XenBackendError::DomainGone(self.platform.domid())
    }

    /// Applies and clears `self.fx`; returns how many effects were applied.
    fn flush_effects(&mut self) -> Result<u32, XenBackendError> {
        let mut fx = std::mem::take(&mut self.fx);
        let r = apply_effects(
            &mut self.platform,
            &mut self.dispatcher,
            &self.mem,
            fx.drain(),
        );
        self.fx = fx; // keep the allocation
        match r {
            Err(()) => Err(self.gone_error()),
            Ok(n) => Ok(n),
        }
    }
}

fn apply_effects<P: Platform>(
    p: &mut P,
    d: &mut Dispatcher,
    mem: &MapCache,
    effects: impl Iterator<Item = Effect>,
) -> Result<u32, ()> {
    let mut applied = 0u32;
    for e in effects {
        let r = match &e {
            Effect::Trap { space, range } | Effect::Untrap { space, range } => {
                let map = matches!(e, Effect::Trap { .. });
                match space {
                    Space::PciConfig => {
                        let (first, last) = (range.base() >> 32, range.last() >> 32);
                        if last - first >= MAX_PCI_FUNCTIONS_PER_EFFECT {
                            Err(io::Error::from_raw_os_error(libc::E2BIG))
                        } else {
                            p.map_range(*space, first, last, map)
                        }
                    }
                    _ => p.map_range(*space, range.base(), range.last(), map),
                }
            }
            Effect::InjectMsi { addr, data } => {
                if data & 0xFF == 0 && xen_msi_pirq(*addr) == 0 {
                    // Vector 0 is Xen's PV-on-HVM form: the pirq sits in the address
                    // (xen-abi.md, MSI). Pirq 0 names nothing; Xen would say ERANGE.
                    Err(io::Error::from_raw_os_error(libc::ERANGE))
                } else {
                    // Native vector, or a pirq Xen binds to the guest's own event
                    // channel (it refuses pirqs bound to anything but emulated MSI).
                    p.inject_msi(*addr, *data)
                }
            }
            Effect::WriteProtect { gfn, protect } => p.write_protect(*gfn, *protect),
            Effect::PopulateRam { range } | Effect::ReleaseRam { range } => {
                let populate = matches!(e, Effect::PopulateRam { .. });
                let pg = mediator::memory::PAGE_SIZE;
                if range.base() % pg != 0 || range.len() % pg != 0 {
                    Err(io::Error::from_raw_os_error(libc::EINVAL))
                } else if range.len() / pg > MAX_POPULATE_FRAMES {
                    Err(io::Error::from_raw_os_error(libc::E2BIG))
                } else {
                    let r = p.populate_ram(range.base() / pg, range.len() / pg, populate);
                    // Frames appeared or went away: no stale mapping may survive.
                    mem.invalidate();
                    r
                }
            }
        };
        let c = d.counters_mut();
        match r {
            Ok(()) => {
                c.effects_applied = c.effects_applied.saturating_add(1);
                applied = applied.saturating_add(1);
            }
            Err(err) if p.is_gone(&err) => return Err(()),
            Err(err) => {
                c.effect_errors = c.effect_errors.saturating_add(1);
                tracing::warn!(domid = p.domid(), effect = ?e, %err, "effect refused");
            }
        }
    }
    Ok(applied)
}

impl<P: Platform> DeviceServer for IoreqServer<P> {
    fn domid(&self) -> u16 {
        self.platform.domid()
    }

    fn server_id(&self) -> u16 {
        self.platform.server_id()
    }

    fn poll_fd(&self) -> RawFd {
        self.platform.poll_fd()
    }

    fn service(&mut self, handler: &mut dyn IoHandler) -> Result<ServiceReport, XenBackendError> {
        if self.gone {
            return Err(XenBackendError::DomainGone(self.platform.domid()));
        }
        let signalled = match self.platform.take_events() {
            Ok(s) => s,
            Err(XenBackendError::DomainGone(_)) => return Err(self.gone_error()),
            Err(e) => return Err(e),
        };
        let mut report = ServiceReport::default();
        if let Some(buf) = &self.buf {
            let drained = drain_buffered(buf);
            for b in &drained.requests {
                self.dispatcher
                    .handle_buffered(b, self.mem.as_ref(), handler, &mut self.fx);
                report.buffered = report.buffered.saturating_add(1);
            }
            for err in &drained.errors {
                let c = self.dispatcher.counters_mut();
                c.buffered_protocol_errors = c.buffered_protocol_errors.saturating_add(1);
                tracing::warn!(domid = self.platform.domid(), %err, "buffered ring");
            }
        }
        for vcpu in 0..self.nr_vcpus {
            let Some(pending) = take(&self.page, vcpu) else {
                continue;
            };
            let reply =
                self.dispatcher
                    .handle(pending.request(), self.mem.as_ref(), handler, &mut self.fx);
            if reply.invalidate {
                self.mem.invalidate();
            }
            // Effects first (e.g. a BAR move), so the guest's next access is routed anew.
            let mut fx = std::mem::take(&mut self.fx);
            let applied = apply_effects(
                &mut self.platform,
                &mut self.dispatcher,
                &self.mem,
                fx.drain(),
            );
            self.fx = fx;
            let answered = pending.complete(reply.data);
            match applied {
                Ok(n) => report.effects = report.effects.saturating_add(n),
                Err(()) => return Err(self.gone_error()),
            }
            if let Err(err) = self.platform.notify(answered.vcpu) {
                if self.platform.is_gone(&err) {
                    return Err(self.gone_error());
                }
                tracing::warn!(domid = self.platform.domid(), vcpu, %err, "notify failed");
            }
            report.handled = report.handled.saturating_add(1);
        }
        report.effects = report.effects.saturating_add(self.flush_effects()?);
        if signalled && report.handled == 0 && report.buffered == 0 {
            let c = self.dispatcher.counters_mut();
            c.spurious = c.spurious.saturating_add(1);
        }
        Ok(report)
    }

    fn apply(&mut self, effects: Effects) -> Result<u32, XenBackendError> {
        if self.gone {
            return Err(XenBackendError::DomainGone(self.platform.domid()));
        }
        match apply_effects(
            &mut self.platform,
            &mut self.dispatcher,
            &self.mem,
            effects.into_iter(),
        ) {
            Ok(n) => Ok(n),
            Err(()) => Err(self.gone_error()),
        }
    }

    fn guest_memory(&self) -> Arc<dyn GuestMemory> {
        Arc::clone(&self.mem) as Arc<dyn GuestMemory>
    }

    fn mark_domain_gone(&mut self) {
        self.gone = true;
        self.platform.domain_gone();
    }

    fn counters(&self) -> ServerCounters {
        ServerCounters {
            dispatch: self.dispatcher.counters(),
            map_cache: self.mem.stats(),
        }
    }
}
