//! Time-driven work of the vGPUs, run from the daemon's event loop: [`Gvt::poll`]
//! (workload completions, scheduling, hang checks, display vblank) at
//! [`Gvt::next_deadline`]; the effects it returns (MSIs) go out through each vGPU's ioreq
//! server (`DeviceServer::apply`).
//!
//! [`Gvt::poll`]: mediator::gvt::Gvt::poll
//! [`Gvt::next_deadline`]: mediator::gvt::Gvt::next_deadline

use std::time::Duration;

use xen_backend::XenBackendError;

use super::MediatedBackend;

impl MediatedBackend {
    /// Runs the mediator's due work and applies the effects. Returns the domains whose
    /// server reported the domain gone (the caller destroys those vGPUs).
    pub fn tick(&mut self) -> Vec<u16> {
        let mut dead = Vec::new();
        for (id, fx) in self.gvt.poll() {
            let Some((domid, dev)) = self.devices.iter_mut().find(|(_, d)| d.id == id) else {
                continue;
            };
            match dev.server.apply(fx) {
                Ok(_) => {}
                Err(XenBackendError::DomainGone(_)) | Err(XenBackendError::NoSuchDomain(_)) => {
                    dead.push(*domid);
                }
                Err(e) => tracing::warn!(domid, %e, "applying timer effects failed"),
            }
        }
        dead
    }

    /// How long until [`MediatedBackend::tick`] has work (`None`: nothing pending).
    pub fn next_deadline(&self) -> Option<Duration> {
        let now = self.gvt.clock().now();
        self.gvt.next_deadline().map(|t| t.saturating_sub(now))
    }
}
