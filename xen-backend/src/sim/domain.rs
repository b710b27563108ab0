//! State of one simulated HVM domain: RAM, ioreq servers with their range sets and
//! pages, write-protected frames, the MSI queue, and the per-vCPU wake-up eventfds.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use mediator::bus::Space;
use mediator::guest_port::Msi;
use mediator::memory::VecMemory;

use crate::abi::{Ioreq, MAX_NR_IOREQ_SERVERS, STATE_IOREQ_NONE};
use crate::ffi::eventfd::EventFd;
use crate::ffi::page::{BufferedIopage, SharedIopage};
use crate::sim::rangeset::RangeSet;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Range sets of one server: MMIO, port, PCI (SBDF values).
#[derive(Debug, Default)]
pub(crate) struct Ranges {
    pub mmio: RangeSet,
    pub pio: RangeSet,
    pub pci: RangeSet,
}

impl Ranges {
    pub fn set_mut(&mut self, space: Space) -> &mut RangeSet {
        match space {
            Space::Mmio => &mut self.mmio,
            Space::Pio => &mut self.pio,
            Space::PciConfig => &mut self.pci,
        }
    }
    pub fn set(&self, space: Space) -> &RangeSet {
        match space {
            Space::Mmio => &self.mmio,
            Space::Pio => &self.pio,
            Space::PciConfig => &self.pci,
        }
    }
}

/// "Xen's" side of one ioreq server.
#[derive(Debug)]
pub(crate) struct SimServer {
    pub id: u16,
    pub page: Arc<SharedIopage>,
    pub buf: Option<Arc<BufferedIopage>>,
    /// The daemon's poll fd: signalled for every request ("event channel").
    pub event: EventFd,
    pub enabled: AtomicBool,
    pub dead: AtomicBool,
    pub ranges: Mutex<Ranges>,
}

/// Counters of the simulated hypervisor for one domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDomainStats {
    /// Accesses no server claimed (reads answered all-ones).
    pub unclaimed: u64,
    /// Buffered writes put in a ring.
    pub buffered: u64,
    /// Guest writes to write-protected frames sent as ioreqs.
    pub protected_writes: u64,
    /// Requests that got no answer in time, or hit a slot still busy.
    pub stuck: u64,
    /// MSIs delivered.
    pub msis: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub unclaimed: AtomicU64,
    pub buffered: AtomicU64,
    pub protected_writes: AtomicU64,
    pub stuck: AtomicU64,
    pub msis: AtomicU64,
}

/// One simulated domain.
#[derive(Debug)]
pub(crate) struct Domain {
    pub domid: u16,
    pub ram: Arc<VecMemory>,
    pub ram_bytes: u64,
    /// RAM populated at run time outside `ram` ([`crate::sim::memory`]).
    pub extra: RwLock<Vec<crate::sim::memory::ExtraRam>>,
    pub vcpus: usize,
    pub timeout: Duration,
    pub servers: RwLock<[Option<Arc<SimServer>>; MAX_NR_IOREQ_SERVERS]>,
    /// Server owning `HVMMEM_ioreq_server`, and the protected frames.
    pub wp: RwLock<(Option<u16>, HashSet<u64>)>,
    pub msi: Mutex<VecDeque<Msi>>,
    pub msi_cv: Condvar,
    pub destroyed: AtomicBool,
    /// One blocking eventfd per vCPU: "the vCPU is woken by the emulator's notify".
    pub wake: Vec<EventFd>,
    /// Serialises each vCPU's accesses (one request in flight per slot).
    pub vcpu_busy: Vec<Mutex<()>>,
    pub cf8: Mutex<u32>,
    pub stats: Stats,
}

impl Domain {
    pub fn new(domid: u16, ram_bytes: u64, vcpus: usize, timeout: Duration) -> io::Result<Self> {
        let mut wake = Vec::with_capacity(vcpus);
        for _ in 0..vcpus {
            wake.push(EventFd::new(false)?);
        }
        Ok(Self {
            domid,
            ram: Arc::new(VecMemory::new(ram_bytes)),
            ram_bytes,
            extra: RwLock::new(Vec::new()),
            vcpus,
            timeout,
            servers: RwLock::new(Default::default()),
            wp: RwLock::new((None, HashSet::new())),
            msi: Mutex::new(VecDeque::new()),
            msi_cv: Condvar::new(),
            destroyed: AtomicBool::new(false),
            wake,
            vcpu_busy: (0..vcpus).map(|_| Mutex::new(())).collect(),
            cf8: Mutex::new(0),
            stats: Stats::default(),
        })
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// Xen's `ioreq_server_select`: enabled servers from the highest id down; the first
    /// whose set contains the whole span.
    pub fn select(&self, space: Space, first: u64, last: u64) -> Option<Arc<SimServer>> {
        let servers = self.servers.read().unwrap_or_else(|p| p.into_inner());
        servers.iter().rev().flatten().find_map(|s| {
            let ok = s.enabled.load(Ordering::Acquire)
                && !s.dead.load(Ordering::Acquire)
                && lock(&s.ranges).set(space).contains(first, last);
            ok.then(|| Arc::clone(s))
        })
    }

    pub fn server(&self, id: u16) -> Option<Arc<SimServer>> {
        let servers = self.servers.read().unwrap_or_else(|p| p.into_inner());
        servers.get(usize::from(id)).cloned().flatten()
    }

    /// The enabled server that claimed write protection, if `gfn` is protected.
    pub fn protector(&self, gfn: u64) -> Option<Arc<SimServer>> {
        let owner = {
            let wp = self.wp.read().unwrap_or_else(|p| p.into_inner());
            match wp.0 {
                Some(id) if wp.1.contains(&gfn) => id,
                _ => return None,
            }
        };
        self.server(owner)
            .filter(|s| s.enabled.load(Ordering::Acquire) && !s.dead.load(Ordering::Acquire))
    }

    /// Delivers an MSI to the domain's queue.
    pub fn deliver_msi(&self, msi: Msi) {
        lock(&self.msi).push_back(msi);
        self.stats.msis.fetch_add(1, Ordering::Relaxed);
        self.msi_cv.notify_all();
    }

    /// Marks a server dead and wakes everyone who might wait on it.
    pub fn kill_server(&self, s: &SimServer) {
        s.dead.store(true, Ordering::Release);
        let _ = s.event.signal();
        for w in &self.wake {
            let _ = w.signal();
        }
    }

    /// Removes server `id` (destroy_ioreq_server): releases its write-protect claim.
    pub fn remove_server(&self, id: u16) {
        let removed = {
            let mut servers = self.servers.write().unwrap_or_else(|p| p.into_inner());
            servers.get_mut(usize::from(id)).and_then(Option::take)
        };
        if let Some(s) = removed {
            let mut wp = self.wp.write().unwrap_or_else(|p| p.into_inner());
            if wp.0 == Some(id) {
                wp.0 = None;
                wp.1.clear();
            }
            drop(wp);
            self.kill_server(&s);
        }
    }

    /// Destroys the domain: every server dies, every waiting vCPU wakes.
    pub fn destroy(&self) {
        self.destroyed.store(true, Ordering::Release);
        let servers: Vec<Arc<SimServer>> = {
            let s = self.servers.read().unwrap_or_else(|p| p.into_inner());
            s.iter().flatten().cloned().collect()
        };
        for s in &servers {
            self.kill_server(s);
        }
        for w in &self.wake {
            let _ = w.signal();
        }
        self.msi_cv.notify_all();
    }

    /// Fills slot `vcpu` of `s` and publishes it, then waits for the answer.
    /// `None` if the request was not answered (domain/server gone, timeout, busy slot).
    pub fn round_trip(&self, s: &SimServer, vcpu: usize, req: &Ioreq) -> Option<u64> {
        use crate::abi::{FLAG_STATE_MASK, STATE_IOREQ_READY, STATE_IORESP_READY};
        let cell = s.page.slots.get(vcpu)?;
        let wake = self.wake.get(vcpu)?;
        let state = cell.flags.load(Ordering::Acquire) & FLAG_STATE_MASK;
        if state == STATE_IORESP_READY {
            // A late answer to an earlier, timed-out request: Xen would consume it.
            cell.flags.store(STATE_IOREQ_NONE, Ordering::Release);
        } else if state != STATE_IOREQ_NONE {
            self.stats.stuck.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        cell.addr.store(req.addr, Ordering::Relaxed);
        cell.data.store(req.data, Ordering::Relaxed);
        cell.count.store(req.count, Ordering::Relaxed);
        cell.size.store(req.size, Ordering::Relaxed);
        cell.typ.store(req.typ, Ordering::Relaxed);
        let flags = (req.flags & !FLAG_STATE_MASK) | STATE_IOREQ_READY;
        cell.flags.store(flags, Ordering::Release);
        if s.event.signal().is_err() {
            return None;
        }
        loop {
            let st = cell.flags.load(Ordering::Acquire) & FLAG_STATE_MASK;
            if st == STATE_IORESP_READY {
                let data = cell.data.load(Ordering::Relaxed);
                cell.flags.store(STATE_IOREQ_NONE, Ordering::Release);
                return Some(data);
            }
            if self.is_destroyed() || s.dead.load(Ordering::Acquire) {
                return None;
            }
            match wake.wait(Some(self.timeout)) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    self.stats.stuck.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
    }

    pub fn snapshot_stats(&self) -> SimDomainStats {
        let s = &self.stats;
        SimDomainStats {
            unclaimed: s.unclaimed.load(Ordering::Relaxed),
            buffered: s.buffered.load(Ordering::Relaxed),
            protected_writes: s.protected_writes.load(Ordering::Relaxed),
            stuck: s.stuck.load(Ordering::Relaxed),
            msis: s.msis.load(Ordering::Relaxed),
        }
    }
}
