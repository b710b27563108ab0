//! Time-driven work of the vGPUs, run from the daemon's event loop: display vblank timers
//! (`Vgpu::display_tick`); effects they produce (MSIs) go out through the vGPU's ioreq
//! server (`DeviceServer::apply`).

use std::time::Duration;

use mediator::effects::Effects;
use xen_backend::XenBackendError;

use super::MediatedBackend;

impl MediatedBackend {
    /// The backend clock in nanoseconds.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs every vGPU's due timers and applies their effects. Returns the domains whose
    /// server reported the domain gone (the caller destroys those vGPUs).
    pub fn tick(&mut self) -> Vec<u16> {
        let now = self.now_ns();
        let mut dead = Vec::new();
        for (domid, dev) in self.devices.iter_mut() {
            let Some(vgpu) = self.manager.get_mut(dev.id) else {
                continue;
            };
            let mut fx = Effects::new();
            vgpu.display_tick(now, &mut fx);
            if fx.is_empty() {
                continue;
            }
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

    /// How long until some vGPU's timer is due (`None`: no timer runs).
    pub fn next_deadline(&self) -> Option<Duration> {
        let now = self.now_ns();
        self.devices
            .values()
            .filter_map(|d| self.manager.get(d.id))
            .filter_map(|v| v.display_next_deadline_ns())
            .min()
            .map(|t| Duration::from_nanos(t.saturating_sub(now)))
    }
}
