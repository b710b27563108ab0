//! The daemon's device path: a xen-backend [`Hypervisor`] (RealXen on a dom0, or the
//! simulated Xen for `--backend sim`) attaches an ioreq server per domain, and the
//! mediator's [`Gvt`] (vGPU manager, software Gen9 engine, schedulers, per-vGPU execlist
//! pipelines) answers its requests and executes the guest's submissions.
//!
//! The manager's partitioner inside [`Gvt`] is the daemon's only allocator: placements,
//! `available_instances` and resumed placements all come from it.
//!
//! With `--backend sim` the simulated Xen lives inside the daemon: `attach DOMID` and
//! `create` start a simulated HVM domain ([`MediatedBackend::start_domain`]) which the
//! daemon also stops when the vGPU goes.

mod timers;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mediator::bus::{IoHandler, Space};
use mediator::clock::{Clock, RealClock};
use mediator::display::DisplayCaps;
use mediator::effects::Effects;
use mediator::gvt::{Gvt, GvtError, TypeCaps};
use mediator::manager::{CreateRequest, ManagerError, VgpuId};
use mediator::partition::{Allocation, MIB};
use mediator::pci::BarId;
use mediator::sw::{SwConfig, SwGpu};
use mediator::vgpu::DEFAULT_SBDF;
use xen_backend::abi::Sbdf;
use xen_backend::{
    DeviceServer, Hypervisor, ServerOptions, SimDomainConfig, SimXen, XenBackendError,
};

pub use view::{DeviceView, Screenshot};

use crate::backend::{BackendError, DeviceHandle, Placement};
use crate::config::DaemonConfig;
use crate::daemon::{BAR0, BAR2};
use crate::mmio_trace::{TraceSink, TracingIo};
use crate::xlcfg::VgpuRequest;

/// RAM of a simulated domain when the guest config gives none.
pub const SIM_DEFAULT_RAM_MIB: u64 = 64;
/// Largest RAM the daemon gives a simulated domain (it lives in the daemon's memory).
pub const SIM_MAX_RAM_MIB: u64 = 256;

/// One vGPU with its ioreq server.
struct Device {
    id: VgpuId,
    server: Box<dyn DeviceServer>,
}

/// Hypervisor + vGPU manager.
pub struct MediatedBackend {
    kind: &'static str,
    hv: Arc<dyn Hypervisor>,
    sim: Option<SimXen>,
    sim_started: BTreeSet<u16>,
    gvt: Gvt,
    devices: BTreeMap<u16, Device>,
    trace: Option<TraceSink>,
}

impl std::fmt::Debug for MediatedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediatedBackend")
            .field("kind", &self.kind)
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

/// PCI command register: memory space decode.
const PCI_COMMAND_MEMORY: u64 = 1 << 1;
/// PCI command register: bus mastering.
const PCI_COMMAND_MASTER: u64 = 1 << 2;

fn sbdf_of(raw: u32) -> Option<Sbdf> {
    let seg = u16::try_from(raw >> 16).ok()?;
    let bus = u8::try_from((raw >> 8) & 0xFF).ok()?;
    let dev = u8::try_from((raw >> 3) & 0x1F).ok()?;
    let func = u8::try_from(raw & 7).ok()?;
    Sbdf::new(seg, bus, dev, func)
}

fn map_err(e: XenBackendError, domid: u16) -> BackendError {
    match e {
        XenBackendError::NoSuchDomain(_) | XenBackendError::DomainGone(_) => {
            BackendError::NoSuchDomain(domid)
        }
        other => BackendError::Failed(other.to_string()),
    }
}

fn gvt_err(e: GvtError) -> BackendError {
    match e {
        GvtError::Manager(ManagerError::Partition(_) | ManagerError::TooMany { .. }) => {
            BackendError::NoResources(e.to_string())
        }
        other => BackendError::Failed(format!("creating the vGPU: {other}")),
    }
}

/// The mediator request for a daemon request: a named type, or custom sizes; with a
/// display unless the type's display capabilities say it has none.
pub fn create_request(req: &VgpuRequest) -> CreateRequest {
    let mut r = match &req.type_name {
        Some(t) => CreateRequest::of_type(t),
        None => CreateRequest::custom(req.low_gm_mib, req.high_gm_mib, req.fences),
    };
    let name = req.type_name.as_deref().unwrap_or("custom");
    r.ggtt_backing = req.ggtt_backing;
    r.headless = !DisplayCaps::for_type(name, req.low_gm_mib.saturating_mul(MIB)).has_display;
    r
}

impl MediatedBackend {
    /// A backend over `hv` (kind `xen`) with the daemon's host and types, on the
    /// software Gen9 engine and the real monotonic clock.
    pub fn new(
        kind: &'static str,
        hv: Arc<dyn Hypervisor>,
        cfg: &DaemonConfig,
    ) -> Result<Self, BackendError> {
        Self::build(kind, hv, None, cfg, Arc::new(RealClock::new()))
    }

    /// A backend over the simulated Xen `xen` (kind `sim`): it can start domains.
    pub fn with_sim(xen: SimXen, cfg: &DaemonConfig) -> Result<Self, BackendError> {
        Self::with_sim_clock(xen, cfg, Arc::new(RealClock::new()))
    }

    /// [`MediatedBackend::with_sim`] with the clock that drives workload completion,
    /// scheduling and vblank (tests use a fake one).
    pub fn with_sim_clock(
        xen: SimXen,
        cfg: &DaemonConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BackendError> {
        Self::build("sim", Arc::new(xen.clone()), Some(xen), cfg, clock)
    }

    fn build(
        kind: &'static str,
        hv: Arc<dyn Hypervisor>,
        sim: Option<SimXen>,
        cfg: &DaemonConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BackendError> {
        let host = cfg.host_description();
        let gpu = SwGpu::new(SwConfig::for_host(&host));
        let gvt = Gvt::with_types(host, cfg.mediator_types(), Box::new(gpu), clock)
            .map_err(|e| BackendError::Failed(format!("vGPU mediator: {e}")))?;
        Ok(MediatedBackend {
            kind,
            hv,
            sim,
            sim_started: BTreeSet::new(),
            gvt,
            devices: BTreeMap::new(),
            trace: None,
        })
    }

    /// The mediator (read-only: vGPUs, pipelines, stats).
    pub fn gvt(&self) -> &Gvt {
        &self.gvt
    }

    /// The vGPU id of `domid`'s device.
    pub fn vgpu_id(&self, domid: u16) -> Option<VgpuId> {
        self.devices.get(&domid).map(|d| d.id)
    }

    /// The simulated Xen, if this backend runs on one.
    pub fn sim_xen(&self) -> Option<&SimXen> {
        self.sim.as_ref()
    }

    /// `sim` or `xen`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// True if the hypervisor knows the domain.
    pub fn domain_alive(&self, domid: u16) -> bool {
        self.hv.domain_info(domid).is_ok()
    }

    /// The types with how many more instances fit now (from the partitioner) and their
    /// display capabilities.
    pub fn types(&self) -> Vec<TypeCaps> {
        self.gvt.types()
    }

    /// Replaces the type table for vGPUs created from now on (a reloaded config).
    pub fn set_types(&mut self, types: Vec<mediator::vtypes::VgpuType>) {
        self.gvt.set_types(types);
    }

    /// Creates vGPU + ioreq server for `domid`; at exactly `at` when resuming.
    pub fn create_device(
        &mut self,
        domid: u16,
        req: &VgpuRequest,
        at: Option<&Placement>,
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
        let creq = create_request(req);
        let mem = server.guest_memory();
        let id = match at {
            None => self.gvt.create_vgpu(&creq, mem),
            Some(p) => self.gvt.create_vgpu_at(&creq, &Allocation::from(*p), mem),
        }
        .map_err(gvt_err)?; // `server` drops here on failure: torn down
        let placement = self
            .gvt
            .vgpu(id)
            .map(|v| Placement::from(v.config().allocation))
            .ok_or_else(|| BackendError::Failed("vGPU vanished after creation".into()))?;
        let handle = DeviceHandle {
            server_id: server.server_id(),
            poll_fd: Some(server.poll_fd()),
            placement,
        };
        self.devices.insert(domid, Device { id, server });
        if req.preset_bars {
            if let Err(e) = self.preset_bars(domid) {
                self.destroy_device(domid);
                return Err(e);
            }
        }
        Ok(handle)
    }

    /// Plays the firmware for a guest without one (PVH): places BAR0 at [`BAR0`] and BAR2 at
    /// [`BAR2`] and enables memory decode and bus mastering, through the vGPU's own PCI
    /// configuration path, so the trap effects take the same route as a guest's writes.
    fn preset_bars(&mut self, domid: u16) -> Result<(), BackendError> {
        let dev = self
            .devices
            .get_mut(&domid)
            .ok_or(BackendError::NoSuchDomain(domid))?;
        let mut io = self
            .gvt
            .io(dev.id)
            .ok_or(BackendError::NoSuchDomain(domid))?;
        let cfg = |reg: u64| (u64::from(DEFAULT_SBDF) << 32) | reg;
        let split = |a: u64| (a & 0xffff_ffff, a >> 32);
        let (b0_lo, b0_hi) = split(BAR0);
        let (b2_lo, b2_hi) = split(BAR2);
        let mut fx = Effects::new();
        for (reg, value) in [
            (0x10, b0_lo),
            (0x14, b0_hi),
            (0x18, b2_lo),
            (0x1c, b2_hi),
            (0x04, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER),
        ] {
            let v = u32::try_from(value).unwrap_or(0);
            io.write(Space::PciConfig, cfg(reg), &v.to_le_bytes(), &mut fx);
        }
        dev.server.apply(fx).map_err(|e| map_err(e, domid))?;
        tracing::info!(domid, bar0 = %format!("{BAR0:#x}"), bar2 = %format!("{BAR2:#x}"), "BARs placed by the daemon (no guest firmware)");
        Ok(())
    }

    /// Where the vGPU's BAR0 and BAR2 currently decode (as programmed), if anywhere.
    pub fn bar_addresses(&self, domid: u16) -> (Option<u64>, Option<u64>) {
        let Some(v) = self.devices.get(&domid).and_then(|d| self.gvt.vgpu(d.id)) else {
            return (None, None);
        };
        let pci = v.pci();
        (
            pci.bar_range(BarId::Bar0).map(|r| r.base()),
            pci.bar_range(BarId::Bar2).map(|r| r.base()),
        )
    }

    /// Tells `domid`'s server its domain is gone, before [`Self::destroy_device`]: the
    /// final effects are skipped and the hypervisor's refusals are not warnings.
    pub fn mark_domain_gone(&mut self, domid: u16) {
        if let Some(dev) = self.devices.get_mut(&domid) {
            dev.server.mark_domain_gone();
        }
    }

    /// Tears the device down (idempotent), and a simulated domain the daemon started.
    pub fn destroy_device(&mut self, domid: u16) {
        if let Some(mut dev) = self.devices.remove(&domid) {
            match self.gvt.destroy_vgpu(dev.id) {
                // Lift the shadows' write protection while the server still exists.
                Ok(fx) if !fx.is_empty() => {
                    if let Err(e) = dev.server.apply(fx) {
                        tracing::debug!(domid, %e, "final effects not applied");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(domid, %e, "vGPU destroy failed"),
            }
            drop(dev.server); // tears the ioreq server down
        }
        if let Some(t) = self.trace.as_mut() {
            t.close_domain(domid);
        }
        self.stop_domain(domid);
    }

    /// Destroys an ioreq server left behind by an earlier daemon; returns what happened
    /// (also logged).
    pub fn destroy_stale_server(&mut self, domid: u16, server_id: u16) -> String {
        let msg = match self.hv.destroy_ioreq_server(domid, server_id) {
            Ok(()) => format!("stale ioreq server {server_id} of domain {domid} destroyed"),
            Err(XenBackendError::NoSuchDomain(_)) | Err(XenBackendError::DomainGone(_)) => {
                format!("stale ioreq server {server_id}: domain {domid} is gone (Xen reaped it)")
            }
            Err(e) => {
                format!("stale ioreq server {server_id} of domain {domid} not destroyed: {e}")
            }
        };
        tracing::warn!(domid, server_id, "{msg}");
        msg
    }

    /// Handles pending requests of one device; `NoSuchDomain` means it died.
    pub fn service(&mut self, domid: u16) -> Result<(), BackendError> {
        let Some(dev) = self.devices.get_mut(&domid) else {
            return Err(BackendError::NoSuchDomain(domid));
        };
        let bar0 = self
            .gvt
            .vgpu(dev.id)
            .and_then(|v| v.pci().bar_range(BarId::Bar0))
            .map(|r| r.base());
        let Some(mut io) = self.gvt.io(dev.id) else {
            return Err(BackendError::NoSuchDomain(domid));
        };
        let r = match self.trace.as_mut().and_then(|t| t.for_domain(domid)) {
            Some(trace) => {
                let mut tio = TracingIo {
                    inner: &mut io,
                    trace,
                    bar0,
                };
                let r = dev.server.service(&mut tio);
                trace.flush();
                r
            }
            None => dev.server.service(&mut io),
        };
        r.map(drop).map_err(|e| map_err(e, domid))
    }

    /// Records every guest access dispatched from now on into `trace`
    /// (`xengtd --mmio-trace`).
    pub fn set_mmio_trace(&mut self, trace: TraceSink) {
        self.trace = Some(trace);
    }

    /// Simulation only: starts a domain (with id `domid`, or the lowest free one).
    pub fn start_domain(
        &mut self,
        domid: Option<u16>,
        ram_mib: Option<u64>,
    ) -> Result<u16, BackendError> {
        let Some(xen) = &self.sim else {
            return Err(BackendError::Unsupported(
                "this backend cannot start domains (use xl create)".into(),
            ));
        };
        let ram = ram_mib
            .unwrap_or(SIM_DEFAULT_RAM_MIB)
            .clamp(16, SIM_MAX_RAM_MIB);
        let cfg = SimDomainConfig {
            ram_bytes: ram * MIB,
            ..SimDomainConfig::default()
        };
        let dom = match domid {
            Some(d) => xen.create_domain_with_id(d, cfg),
            None => xen.create_domain(cfg),
        }
        .map_err(|e| BackendError::Failed(format!("starting a simulated domain: {e}")))?;
        self.sim_started.insert(dom.domid());
        tracing::info!(
            domid = dom.domid(),
            ram_mib = ram,
            "simulated domain started"
        );
        Ok(dom.domid())
    }

    /// Whether the daemon started this (simulated) domain.
    pub fn owns_domain(&self, domid: u16) -> bool {
        self.sim_started.contains(&domid)
    }

    /// Simulation only: destroys a domain started with [`MediatedBackend::start_domain`].
    pub fn stop_domain(&mut self, domid: u16) {
        if self.sim_started.remove(&domid) {
            if let Some(xen) = &self.sim {
                xen.destroy_domain(domid);
                tracing::info!(domid, "simulated domain stopped");
            }
        }
    }
}

#[cfg(test)]
mod tests;
