//! The daemon's state and the control operations on it (no I/O besides XenStore writes):
//! vGPUs by domain, the device backend (which owns the one allocator, the mediator's
//! partitioner), persistence of each vGPU in XenStore ([`persist`]).

mod ops;
pub mod persist;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediator::display::DisplayCaps;
use mediator::partition::MIB;
use serde::Serialize;
use serde_json::Value;
use xen_backend::xenstore::{XenbusState, XsClient, XsOps};

pub use persist::{Record, PERSIST_ROOT};

use crate::backend::BackendError;
use crate::config::DaemonConfig;
use crate::mediated::MediatedBackend;
use crate::proto::{ErrorBody, ErrorCode, TypeInfo, VgpuInfo};
use crate::xlcfg::VgpuRequest;

/// Guest PCI address of every vGPU (00:02.0, where i915 expects the IGD).
pub const PCI_SLOT: &str = "0000:00:02.0";
/// Guest BAR0 (16 MiB MMIO + GTT) placement.
pub const BAR0: u64 = 0xF000_0000;
/// Guest BAR2 (aperture) placement for guests without PCI firmware: above 4 GiB, so it
/// neither meets guest RAM nor BAR0, and aligned for any aperture size up to 256 GiB.
pub const BAR2: u64 = 0x40_0000_0000;

/// How a vGPU came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Control socket `attach`/`create`.
    Control,
    /// XenStore hotplug.
    Xenstore,
    /// Re-attached after a daemon restart.
    Resumed,
}

/// One live vGPU.
#[derive(Clone, Debug)]
pub struct Vgpu {
    /// Persisted facts.
    pub rec: Record,
    /// Guest domain.
    pub domid: u16,
    /// Current XenbusState.
    pub state: XenbusState,
    /// fd to poll, if the backend has one.
    pub poll_fd: Option<std::os::fd::RawFd>,
    /// `/local/domain/<domid>` existed in XenStore at attach time, so its removal means
    /// the domain is gone.
    pub in_xenstore: bool,
}

impl Vgpu {
    /// Protocol view (without the live device details `info` adds).
    pub fn info(&self) -> VgpuInfo {
        VgpuInfo {
            domid: self.domid,
            // Filled in by the daemon (`ops`), which knows where names come from.
            name: None,
            type_name: self.rec.type_name.clone(),
            state: self.state.name().to_string(),
            low_gm: self.rec.low,
            high_gm: self.rec.high,
            fence_base: self.rec.fence_base,
            fence_count: self.rec.fence_count,
            server_id: self.rec.server_id,
            pci_slot: PCI_SLOT.to_string(),
            // The live addresses are filled in by the daemon (`fill_live_bars`).
            bar0: 0,
            bar2: 0,
            origin: match self.rec.origin {
                Origin::Control => "control",
                Origin::Xenstore => "xenstore",
                Origin::Resumed => "resumed",
            }
            .to_string(),
            ggtt_backing: crate::xlcfg::ggtt_backing_name(self.rec.ggtt_backing).to_string(),
            plane: None,
            plane_error: None,
            counters: None,
        }
    }
}

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn backend_err(e: BackendError) -> ErrorBody {
    let code = match e {
        BackendError::NoSuchDomain(_) => ErrorCode::UnknownDomain,
        BackendError::Busy(_) => ErrorCode::AlreadyAttached,
        BackendError::NoResources(_) => ErrorCode::NoResources,
        BackendError::NoImage(_) => ErrorCode::NoImage,
        BackendError::Unsupported(_) => ErrorCode::Unsupported,
        BackendError::Failed(_) => ErrorCode::Backend,
    };
    err(code, e.to_string())
}

/// The daemon state.
pub struct Daemon {
    cfg: DaemonConfig,
    backend: MediatedBackend,
    vgpus: BTreeMap<u16, Vgpu>,
    xs: Option<Arc<XsClient>>,
    /// Set by the hotplug module when its watches are registered.
    pub hotplug_active: bool,
    /// When this state was created (`status` uptime).
    started: Instant,
    /// Names of simulated domains `create`d from an xl config ([`ops`]).
    sim_names: BTreeMap<u16, String>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("vgpus", &self.vgpus.len())
            .finish_non_exhaustive()
    }
}

/// Domain ids a guest can have (not dom0, below DOMID_FIRST_RESERVED).
pub fn valid_guest_domid(domid: u16) -> bool {
    domid != 0 && domid < 0x7FF0
}

impl Daemon {
    /// A daemon with no vGPUs. `xs` enables persistence.
    pub fn new(cfg: DaemonConfig, backend: MediatedBackend, xs: Option<Arc<XsClient>>) -> Self {
        Daemon {
            cfg,
            backend,
            vgpus: BTreeMap::new(),
            xs,
            hotplug_active: false,
            started: Instant::now(),
            sim_names: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DaemonConfig {
        &self.cfg
    }

    /// Applies a reloaded (already validated) config: SIGHUP. The `host` section is fixed
    /// for the daemon's life, since the GGTT and fences were partitioned from it, so a
    /// changed one is refused as a whole. `types`, `default_type` and `limits` apply to
    /// vGPUs created from now on; existing vGPUs keep their placement and type (their
    /// records carry their sizes), and a lower `max_vgpus` only stops new ones. Returns
    /// the names of the sections that changed.
    pub fn reload(&mut self, cfg: DaemonConfig) -> Result<Vec<&'static str>, ErrorBody> {
        if cfg.host != self.cfg.host {
            return Err(err(
                ErrorCode::BadRequest,
                "the host section changed; it cannot change while xengtd runs (restart \
                 xengtd to apply it)",
            ));
        }
        let mut changed = Vec::new();
        if cfg.types != self.cfg.types {
            changed.push("types");
            self.backend.set_types(cfg.mediator_types());
        }
        if cfg.default_type != self.cfg.default_type {
            changed.push("default_type");
        }
        if cfg.limits != self.cfg.limits {
            changed.push("limits");
        }
        if changed.is_empty() {
            changed.push("nothing");
        }
        self.cfg = cfg;
        Ok(changed)
    }

    /// The backend.
    pub fn backend(&self) -> &MediatedBackend {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut MediatedBackend {
        &mut self.backend
    }

    /// The XenStore connection, if any.
    pub fn xenstore(&self) -> Option<&Arc<XsClient>> {
        self.xs.as_ref()
    }

    /// Live vGPUs.
    pub fn vgpus(&self) -> &BTreeMap<u16, Vgpu> {
        &self.vgpus
    }

    /// Types with their free capacity (the partitioner's count, capped by the free vGPU
    /// slots) and display capabilities.
    pub fn types(&self) -> Vec<TypeInfo> {
        let slots = self
            .cfg
            .limits
            .max_vgpus
            .saturating_sub(u32::try_from(self.vgpus.len()).unwrap_or(u32::MAX));
        let avail = self.backend.types();
        self.cfg
            .types
            .iter()
            .map(|t| TypeInfo {
                name: t.name.clone(),
                low_gm_mib: t.low_gm_mib,
                high_gm_mib: t.high_gm_mib,
                fences: t.fences,
                edid: t.edid,
                available_instances: avail
                    .iter()
                    .find(|a| a.info.ty.name == t.name)
                    .map_or(0, |a| a.info.available_instances.min(slots)),
                display: DisplayCaps::for_type(&t.name, t.low_gm_mib.saturating_mul(MIB)),
            })
            .collect()
    }

    /// The request for a type name (`None` = default type).
    pub fn request_for_type(&self, name: Option<&str>) -> Result<VgpuRequest, ErrorBody> {
        let name = name.unwrap_or(&self.cfg.default_type);
        let t = self.cfg.find_type(name).ok_or_else(|| {
            err(
                ErrorCode::NoSuchType,
                format!(
                    "no vGPU type {name:?}; available: {}",
                    self.cfg.type_names().join(", ")
                ),
            )
        })?;
        Ok(VgpuRequest {
            type_name: Some(t.name.clone()),
            low_gm_mib: t.low_gm_mib,
            high_gm_mib: t.high_gm_mib,
            fences: t.fences,
            primary: None,
            monitor_config_file: None,
            ggtt_backing: Default::default(),
            preset_bars: false,
        })
    }

    /// Re-checks a request against the types/limits (requests may come from XenStore or a
    /// client, not only from `xlcfg`).
    pub fn check_request(&self, req: &VgpuRequest) -> Result<(), ErrorBody> {
        let typed = self.cfg.types.iter().any(|t| {
            req.type_name.as_deref().map_or(true, |n| n == t.name)
                && t.low_gm_mib == req.low_gm_mib
                && t.high_gm_mib == req.high_gm_mib
                && t.fences == req.fences
        });
        let custom = req.type_name.is_none()
            && self.cfg.limits.custom.as_ref().is_some_and(|c| {
                (c.low_min_mib..=c.low_max_mib).contains(&req.low_gm_mib)
                    && (c.high_min_mib..=c.high_max_mib).contains(&req.high_gm_mib)
                    && req.fences <= c.max_fences
            });
        if typed || custom {
            Ok(())
        } else {
            Err(err(
                ErrorCode::NoSuchType,
                format!(
                    "sizes {}/{} MiB, {} fences match no type; available: {}",
                    req.low_gm_mib,
                    req.high_gm_mib,
                    req.fences,
                    self.cfg.type_names().join(", ")
                ),
            ))
        }
    }

    fn domain_in_xenstore(&self, domid: u16) -> bool {
        self.xs
            .as_ref()
            .is_some_and(|xs| matches!(xs.exists(&format!("/local/domain/{domid}")), Ok(true)))
    }

    /// Simulation: makes sure a simulated domain `domid` exists (XenStore hotplug and
    /// `attach` of an unknown id start one). No-op on Xen or if it exists.
    pub fn ensure_sim_domain(&mut self, domid: u16) -> Result<(), ErrorBody> {
        if self.backend.kind() != "sim" || self.backend.domain_alive(domid) {
            return Ok(());
        }
        self.backend
            .start_domain(Some(domid), None)
            .map(drop)
            .map_err(backend_err)
    }

    /// Creates a vGPU for an existing domain.
    pub fn attach(
        &mut self,
        domid: u16,
        req: &VgpuRequest,
        origin: Origin,
    ) -> Result<VgpuInfo, ErrorBody> {
        self.check_request(req)?;
        if self.vgpus.contains_key(&domid) {
            return Err(err(
                ErrorCode::AlreadyAttached,
                format!("domain {domid} already has a vGPU; destroy it first"),
            ));
        }
        if self.vgpus.len() >= usize::try_from(self.cfg.limits.max_vgpus).unwrap_or(usize::MAX) {
            return Err(err(
                ErrorCode::NoResources,
                format!("limit of {} vGPUs reached", self.cfg.limits.max_vgpus),
            ));
        }
        if !self.backend.domain_alive(domid) {
            return Err(err(
                ErrorCode::UnknownDomain,
                format!("domain {domid} does not exist"),
            ));
        }
        let handle = self
            .backend
            .create_device(domid, req, None)
            .map_err(backend_err)?;
        let mut rec = Record::new(
            handle.server_id,
            req.type_name.clone(),
            &handle.placement,
            origin,
            self.backend.owns_domain(domid),
        );
        rec.ggtt_backing = req.ggtt_backing;
        rec.preset_bars = req.preset_bars;
        self.persist(domid, &rec);
        let v = Vgpu {
            rec,
            domid,
            state: XenbusState::Connected,
            poll_fd: handle.poll_fd,
            in_xenstore: self.domain_in_xenstore(domid),
        };
        let mut info = v.info();
        self.fill_live_bars(&mut info);
        tracing::info!(
            domid,
            server_id = handle.server_id,
            ?origin,
            "vGPU attached"
        );
        self.vgpus.insert(domid, v);
        Ok(info)
    }

    /// Destroys a vGPU (and a simulated domain the daemon started). Finds out first
    /// whether the domain is gone; a caller that already knows uses
    /// [`Daemon::destroy_of_dead_domain`].
    pub fn destroy(&mut self, domid: u16) -> Result<VgpuInfo, ErrorBody> {
        let gone = self.vgpus.contains_key(&domid) && self.domain_gone(domid);
        self.destroy_known(domid, gone)
    }

    /// Destroys the vGPU of a domain known to be gone: no final effects are applied, and
    /// the hypervisor's refusals during teardown are expected.
    pub fn destroy_of_dead_domain(&mut self, domid: u16) -> Result<VgpuInfo, ErrorBody> {
        self.destroy_known(domid, true)
    }

    fn destroy_known(&mut self, domid: u16, gone: bool) -> Result<VgpuInfo, ErrorBody> {
        if gone {
            self.backend.mark_domain_gone(domid);
        }
        let Some(mut v) = self.vgpus.remove(&domid) else {
            return Err(err(
                ErrorCode::UnknownDomain,
                format!("domain {domid} has no vGPU (see `xengt-ctl list`)"),
            ));
        };
        self.backend.destroy_device(domid);
        self.sim_names.remove(&domid);
        self.unpersist(domid);
        v.state = XenbusState::Closed;
        tracing::info!(domid, "vGPU destroyed");
        Ok(v.info())
    }

    /// Whether `domid`'s domain is gone: the hypervisor does not know it, or it was in
    /// XenStore at attach time and its `/local/domain/<domid>` is gone now.
    pub fn domain_gone(&self, domid: u16) -> bool {
        let xs_gone = self.vgpus.get(&domid).is_some_and(|v| v.in_xenstore)
            && self.xs.as_ref().is_some_and(|xs| {
                matches!(xs.exists(&format!("/local/domain/{domid}")), Ok(false))
            });
        xs_gone || !self.backend.domain_alive(domid)
    }

    /// Services one device; a dead domain's vGPU is destroyed. Returns false if destroyed.
    pub fn service(&mut self, domid: u16) -> bool {
        match self.backend.service(domid) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(domid, %e, "device failed; tearing the vGPU down");
                let _ = self.destroy(domid);
                false
            }
        }
    }

    /// Runs the vGPUs' due timers; vGPUs of domains found dead are destroyed.
    pub fn tick(&mut self) {
        for domid in self.backend.tick() {
            tracing::warn!(domid, "domain gone while delivering timer effects");
            let _ = self.destroy_of_dead_domain(domid);
        }
    }

    /// How long until [`Daemon::tick`] has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.backend.next_deadline()
    }

    /// Tears every vGPU down (shutdown).
    pub fn destroy_all(&mut self) {
        let ids: Vec<u16> = self.vgpus.keys().copied().collect();
        for d in ids {
            let _ = self.destroy(d);
        }
    }
}

#[cfg(test)]
mod tests;
