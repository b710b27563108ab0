//! The real device path behind [`VgpuBackend`]: a xen-backend [`Hypervisor`] (RealXen on a
//! dom0, or the simulated Xen) attaches an ioreq server per domain, and the mediator's
//! [`VgpuManager`] creates the vGPU that answers its requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use mediator::manager::{CreateRequest, VgpuId, VgpuManager};
use mediator::partition::HostDescription;
use mediator::vgpu::DEFAULT_SBDF;
use mediator::vtypes::VgpuType as MediatorType;
use xen_backend::abi::Sbdf;
use xen_backend::{DeviceServer, Hypervisor, ServerOptions, XenBackendError};

use crate::alloc::Placement;
use crate::backend::{BackendError, DeviceHandle, VgpuBackend};
use crate::config::DaemonConfig;
use crate::proto::WindowInfo;

const MIB: u64 = 1 << 20;

/// Hypervisor + vGPU manager.
pub struct MediatedBackend {
    kind: &'static str,
    hv: Arc<dyn Hypervisor>,
    manager: VgpuManager,
    devices: BTreeMap<u16, (VgpuId, Box<dyn DeviceServer>)>,
}

impl std::fmt::Debug for MediatedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediatedBackend")
            .field("kind", &self.kind)
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

fn sbdf_of(raw: u32) -> Option<Sbdf> {
    let seg = u16::try_from(raw >> 16).ok()?;
    let bus = u8::try_from((raw >> 8) & 0xFF).ok()?;
    let dev = u8::try_from((raw >> 3) & 0x1F).ok()?;
    let func = u8::try_from(raw & 7).ok()?;
    Sbdf::new(seg, bus, dev, func)
}

impl MediatedBackend {
    /// A backend over `hv` with the daemon's host and types.
    pub fn new(
        kind: &'static str,
        hv: Arc<dyn Hypervisor>,
        cfg: &DaemonConfig,
    ) -> Result<Self, BackendError> {
        let h = &cfg.host;
        let host = HostDescription {
            device_id: h.device_id,
            ggtt_size: h.ggtt_mib.saturating_mul(MIB),
            aperture_size: h.aperture_mib.saturating_mul(MIB),
            fence_count: h.fences,
            host_low_reserve: h.host_low_mib.saturating_mul(MIB),
            host_high_reserve: h.host_high_mib.saturating_mul(MIB),
            host_fences: h.host_fences,
        };
        let types = cfg
            .types
            .iter()
            .map(|t| MediatorType {
                name: t.name.clone(),
                low_gm: t.low_gm_mib.saturating_mul(MIB),
                high_gm: t.high_gm_mib.saturating_mul(MIB),
                fences: t.fences,
                // Bigger vGPUs get a bigger share, as GVT's types do.
                weight: u32::try_from((t.low_gm_mib / 32).clamp(1, 64)).unwrap_or(1),
            })
            .collect();
        let manager = VgpuManager::new(host, types)
            .map_err(|e| BackendError::Failed(format!("vGPU manager: {e}")))?;
        Ok(MediatedBackend {
            kind,
            hv,
            manager,
            devices: BTreeMap::new(),
        })
    }
}

fn map_err(e: XenBackendError, domid: u16) -> BackendError {
    match e {
        XenBackendError::NoSuchDomain(_) | XenBackendError::DomainGone(_) => {
            BackendError::NoSuchDomain(domid)
        }
        other => BackendError::Failed(other.to_string()),
    }
}

impl VgpuBackend for MediatedBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn domain_alive(&self, domid: u16) -> bool {
        self.hv.domain_info(domid).is_ok()
    }

    fn create_device(
        &mut self,
        domid: u16,
        type_name: Option<&str>,
        p: &Placement,
    ) -> Result<DeviceHandle, BackendError> {
        if self.devices.contains_key(&domid) {
            return Err(BackendError::Busy(domid));
        }
        let sbdf =
            sbdf_of(DEFAULT_SBDF).ok_or_else(|| BackendError::Failed("bad default SBDF".into()))?;
        let opts = ServerOptions {
            pci_devices: vec![sbdf],
            write_protect: true,
            ..ServerOptions::default()
        };
        let server = self.hv.attach(domid, opts).map_err(|e| map_err(e, domid))?;
        let req = match type_name {
            Some(t) => CreateRequest::of_type(t),
            None => CreateRequest::custom(p.low.size / MIB, p.high.size / MIB, p.fence_count),
        };
        let id = self
            .manager
            .create(&req, server.guest_memory())
            .map_err(|e| BackendError::Failed(format!("creating the vGPU: {e}")))?;
        let placement = self.manager.get(id).map(|v| {
            let a = v.config().allocation;
            Placement {
                low: WindowInfo {
                    base: a.low.base,
                    size: a.low.size,
                },
                high: WindowInfo {
                    base: a.high.base,
                    size: a.high.size,
                },
                fence_base: a.fences.base,
                fence_count: a.fences.count,
            }
        });
        let handle = DeviceHandle {
            server_id: server.server_id(),
            poll_fd: Some(server.poll_fd()),
            placement,
        };
        self.devices.insert(domid, (id, server));
        Ok(handle)
    }

    fn destroy_device(&mut self, domid: u16) {
        if let Some((id, server)) = self.devices.remove(&domid) {
            if let Err(e) = self.manager.destroy(id) {
                tracing::warn!(domid, %e, "vGPU manager destroy failed");
            }
            drop(server); // tears the ioreq server down
        }
    }

    fn destroy_stale_server(&mut self, domid: u16, server_id: u16) {
        // xen-backend exposes no "destroy server by id" yet; the stale server dies with
        // the domain. Say so instead of pretending.
        tracing::warn!(
            domid,
            server_id,
            "stale ioreq server left for Xen to reap with the domain"
        );
    }

    fn service(&mut self, domid: u16) -> Result<(), BackendError> {
        let Some((id, server)) = self.devices.get_mut(&domid) else {
            return Err(BackendError::NoSuchDomain(domid));
        };
        let Some(vgpu) = self.manager.get_mut(*id) else {
            return Err(BackendError::NoSuchDomain(domid));
        };
        server
            .service(vgpu)
            .map(drop)
            .map_err(|e| map_err(e, domid))
    }

    fn start_domain(&mut self, _name: &str) -> Result<u16, BackendError> {
        Err(BackendError::Failed(
            "this backend cannot start domains (use xl create)".into(),
        ))
    }

    fn stop_domain(&mut self, _domid: u16) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{Daemon, Origin};
    use xen_backend::{SimDomainConfig, SimXen};

    #[test]
    fn attach_creates_a_server_on_the_simulated_xen_and_destroy_removes_it() {
        let xen = SimXen::new();
        let dom = xen.create_domain(SimDomainConfig::default()).unwrap();
        let cfg = DaemonConfig::default();
        let b = MediatedBackend::new("sim-xen", Arc::new(xen.clone()), &cfg).unwrap();
        let mut d = Daemon::new(cfg, Box::new(b), None);
        let req = d.request_for_type(Some("GVTg_V5_4")).unwrap();
        let info = d.attach(dom.domid(), &req, Origin::Control, false).unwrap();
        assert_eq!(dom.server_count(), 1);
        assert_eq!(info.low_gm.size, 128 * MIB);
        assert!(d.vgpus()[&dom.domid()].poll_fd.is_some());
        assert!(d.service(dom.domid()));
        // Unknown domain: typed error, nothing left behind.
        assert!(d.attach(999, &req, Origin::Control, false).is_err());
        d.destroy(dom.domid()).unwrap();
        assert_eq!(dom.server_count(), 0);
        // A destroyed domain makes service() tear the vGPU down.
        d.attach(dom.domid(), &req, Origin::Control, false).unwrap();
        xen.destroy_domain(dom.domid());
        assert!(!d.service(dom.domid()));
        assert!(d.vgpus().is_empty());
    }
}
