//! Running guests on the simulated Xen against one [`Gvt`]: the glue shared by the
//! end-to-end tests and `xengtd demo`.
//!
//! [`SimRuntime`] owns a [`SimXen`], the [`Gvt`] and, per guest, the domain, its ioreq
//! server (PCI 00:02.0, write protection claimed) and its vGPU id. [`SimRuntime::pump`] is
//! one turn of the daemon's loop: wait for a server's fd (or the next deadline), service
//! every server through [`Gvt::io`], run [`Gvt::poll`] and apply the effects it returned.
//! Guest models run on their own threads against `domain.vcpu(0)`.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mediator::clock::Clock;
use mediator::gvt::{Gvt, GvtError};
use mediator::manager::{CreateRequest, VgpuId};
use mediator::partition::HostDescription;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use thiserror::Error;
use xen_backend::abi::Sbdf;
use xen_backend::{DeviceServer, Hypervisor, ServerOptions, SimDomain, SimDomainConfig, SimXen};

/// Why the runtime could not add a guest or run.
#[derive(Debug, Error)]
pub enum SimRuntimeError {
    /// The simulated hypervisor refused.
    #[error("simulated Xen: {0}")]
    Xen(String),
    /// The mediator refused.
    #[error(transparent)]
    Gvt(#[from] GvtError),
    /// Polling failed.
    #[error("poll: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for SimRuntimeError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// One guest: its domain, the device server serving it and its vGPU.
pub struct SimGuest {
    /// The simulated domain (vCPU ports, RAM, stats).
    pub domain: SimDomain,
    /// The ioreq server of the vGPU.
    pub server: Box<dyn DeviceServer>,
    /// The vGPU.
    pub id: VgpuId,
    /// Whether the domain is gone (server dropped from servicing).
    pub gone: bool,
}

impl std::fmt::Debug for SimGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimGuest")
            .field("domid", &self.domain.domid())
            .field("id", &self.id)
            .finish()
    }
}

/// Simulated Xen, the mediator and the guests' servers.
pub struct SimRuntime {
    /// The hypervisor.
    pub xen: SimXen,
    /// The mediator.
    pub gvt: Gvt,
    /// Guests in creation order.
    pub guests: Vec<SimGuest>,
    poll: Poll,
    events: Events,
}

impl std::fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRuntime")
            .field("guests", &self.guests)
            .finish_non_exhaustive()
    }
}

/// The PCI function of the vGPU.
pub fn vgpu_sbdf() -> Sbdf {
    Sbdf {
        segment: 0,
        bus: 0,
        device: 2,
        function: 0,
    }
}

impl SimRuntime {
    /// A runtime for the default host on the software engine, timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Result<Self, SimRuntimeError> {
        Self::with_gvt(Gvt::new(HostDescription::default(), clock)?)
    }

    /// A runtime around an existing mediator.
    pub fn with_gvt(gvt: Gvt) -> Result<Self, SimRuntimeError> {
        Ok(Self {
            xen: SimXen::new(),
            gvt,
            guests: Vec::new(),
            poll: Poll::new()?,
            events: Events::with_capacity(64),
        })
    }

    /// Creates a domain with `ram_bytes` of RAM and one vCPU, attaches a server and
    /// creates its vGPU. Returns the guest's index in [`SimRuntime::guests`].
    pub fn add_guest(
        &mut self,
        req: &CreateRequest,
        ram_bytes: u64,
    ) -> Result<usize, SimRuntimeError> {
        let domain = self
            .xen
            .create_domain(SimDomainConfig {
                ram_bytes,
                ..SimDomainConfig::default()
            })
            .map_err(|e| SimRuntimeError::Xen(e.to_string()))?;
        let opts = ServerOptions {
            pci_devices: vec![vgpu_sbdf()],
            write_protect: true,
            ..ServerOptions::default()
        };
        let mut server = self
            .xen
            .attach(domain.domid(), opts)
            .map_err(|e| SimRuntimeError::Xen(e.to_string()))?;
        let id = self.gvt.create_vgpu(req, server.guest_memory())?;
        let index = self.guests.len();
        let fd: RawFd = server.poll_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(index), Interest::READABLE)?;
        if let Some(mut io) = self.gvt.io(id) {
            let _ = server.service(&mut io);
        }
        self.guests.push(SimGuest {
            domain,
            server,
            id,
            gone: false,
        });
        Ok(index)
    }

    /// One loop turn: waits up to `max_wait` (less if the mediator has an earlier
    /// deadline) for a guest access, services every server, polls the mediator and applies
    /// its effects. Returns how many guest requests were answered.
    pub fn pump(&mut self, max_wait: Duration) -> Result<u32, SimRuntimeError> {
        let now = self.gvt.clock().now();
        let wait = match self.gvt.next_deadline() {
            Some(d) => d.saturating_sub(now).min(max_wait),
            None => max_wait,
        };
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        let mut handled = 0u32;
        for g in self.guests.iter_mut().filter(|g| !g.gone) {
            let Some(mut io) = self.gvt.io(g.id) else {
                continue;
            };
            match g.server.service(&mut io) {
                Ok(r) => handled = handled.saturating_add(r.handled),
                Err(e) => {
                    tracing::info!(domid = g.domain.domid(), %e, "server gone");
                    g.gone = true;
                }
            }
        }
        for (id, fx) in self.gvt.poll() {
            if let Some(g) = self.guests.iter_mut().find(|g| g.id == id && !g.gone) {
                if g.server.apply(fx).is_err() {
                    g.gone = true;
                }
            }
        }
        Ok(handled)
    }

    /// Whether every guest's vGPU has work queued or on an engine (used to advance a fake
    /// clock only while all guests are waiting for the GPU).
    pub fn all_busy(&self) -> bool {
        self.guests
            .iter()
            .all(|g| self.gvt.pipeline(g.id).is_some_and(|p| p.in_flight() > 0))
    }
}
