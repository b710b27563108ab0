//! The daemon's state and the control operations on it (no I/O besides XenStore writes):
//! vGPUs by domain, placement, backend devices, persistence of each vGPU in XenStore.
//!
//! Persistence: `/xengt/vgpu/<domid>` holds a JSON [`Record`] (server id, type, placement)
//! while the vGPU exists; a restarted daemon reads them ([`Daemon::resume`]) and re-attaches
//! live domains at the same placement or destroys the stale ioreq server and says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use xen_backend::xenstore::{XenbusState, XsClient, XsOps};

use crate::alloc::{Allocator, Placement};
use crate::backend::{BackendError, VgpuBackend};
use crate::config::DaemonConfig;
use crate::proto::{
    ErrorBody, ErrorCode, Op, StatusInfo, TypeInfo, VgpuInfo, WindowInfo, PROTO_VERSION,
};
use crate::xlcfg::VgpuRequest;

/// Where the daemon persists its vGPUs in XenStore.
pub const PERSIST_ROOT: &str = "/xengt/vgpu";
/// Guest PCI address of every vGPU (00:02.0, where i915 expects the IGD).
pub const PCI_SLOT: &str = "0000:00:02.0";
/// Guest BAR0 (16 MiB MMIO + GTT) placement.
pub const BAR0: u64 = 0xF000_0000;
/// Guest BAR2 (aperture) placement.
pub const BAR2: u64 = 0xE000_0000;

/// How a vGPU came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Control socket `attach`/`create`.
    Control,
    /// XenStore hotplug.
    Xenstore,
    /// Re-attached after a daemon restart.
    Resumed,
}

/// The persisted form of one vGPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// ioreq server id.
    pub server_id: u16,
    /// Type name.
    pub type_name: Option<String>,
    /// Low window.
    pub low: WindowInfo,
    /// High window.
    pub high: WindowInfo,
    /// First fence.
    pub fence_base: u32,
    /// Fences.
    pub fence_count: u32,
    /// Origin.
    pub origin: Origin,
    /// The daemon started the (simulated) domain and stops it on destroy.
    pub owns_domain: bool,
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
}

impl Vgpu {
    /// Protocol view.
    pub fn info(&self) -> VgpuInfo {
        VgpuInfo {
            domid: self.domid,
            type_name: self.rec.type_name.clone(),
            state: self.state.name().to_string(),
            low_gm: self.rec.low,
            high_gm: self.rec.high,
            fence_base: self.rec.fence_base,
            fence_count: self.rec.fence_count,
            server_id: self.rec.server_id,
            pci_slot: PCI_SLOT.to_string(),
            bar0: BAR0,
            bar2: BAR2,
            origin: match self.rec.origin {
                Origin::Control => "control",
                Origin::Xenstore => "xenstore",
                Origin::Resumed => "resumed",
            }
            .to_string(),
        }
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The daemon state.
pub struct Daemon {
    cfg: DaemonConfig,
    alloc: Allocator,
    backend: Box<dyn VgpuBackend>,
    vgpus: BTreeMap<u16, Vgpu>,
    xs: Option<Arc<XsClient>>,
    /// Set by the hotplug module when its watches are registered.
    pub hotplug_active: bool,
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
    pub fn new(
        cfg: DaemonConfig,
        backend: Box<dyn VgpuBackend>,
        xs: Option<Arc<XsClient>>,
    ) -> Self {
        Daemon {
            alloc: Allocator::new(&cfg.host),
            cfg,
            backend,
            vgpus: BTreeMap::new(),
            xs,
            hotplug_active: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DaemonConfig {
        &self.cfg
    }

    /// The backend.
    pub fn backend_mut(&mut self) -> &mut dyn VgpuBackend {
        self.backend.as_mut()
    }

    /// The XenStore connection, if any.
    pub fn xenstore(&self) -> Option<&Arc<XsClient>> {
        self.xs.as_ref()
    }

    /// Live vGPUs.
    pub fn vgpus(&self) -> &BTreeMap<u16, Vgpu> {
        &self.vgpus
    }

    /// Executes one control operation.
    pub fn handle(&mut self, op: Op) -> Result<Value, ErrorBody> {
        match op {
            Op::Status => Ok(to_value(&StatusInfo {
                version: PROTO_VERSION,
                backend: self.backend.kind().to_string(),
                vgpus: self.vgpus.len(),
                hotplug: self.hotplug_active,
            })),
            Op::List => Ok(to_value(
                &self.vgpus.values().map(Vgpu::info).collect::<Vec<_>>(),
            )),
            Op::Types => Ok(to_value(&self.types())),
            Op::Info { domid } => self
                .vgpus
                .get(&domid)
                .map(|v| to_value(&v.info()))
                .ok_or_else(|| {
                    err(
                        ErrorCode::UnknownDomain,
                        format!("domain {domid} has no vGPU (see `xengt-ctl list`)"),
                    )
                }),
            Op::Attach { domid, type_name } => {
                let req = self.request_for_type(type_name.as_deref())?;
                if !valid_guest_domid(domid) {
                    return Err(err(
                        ErrorCode::BadRequest,
                        format!("domid {domid} is not a guest domain id (1..32751)"),
                    ));
                }
                let owns = if self.backend.kind() == "sim" && !self.backend.domain_alive(domid) {
                    self.backend.note_domain(domid, &format!("sim-{domid}"));
                    true
                } else {
                    false
                };
                let r = self.attach(domid, &req, Origin::Control, owns);
                if r.is_err() && owns {
                    self.backend.stop_domain(domid);
                }
                r.map(|v| to_value(&v))
            }
            Op::Create { config } => {
                if self.backend.kind() != "sim" {
                    return Err(err(ErrorCode::Unsupported, "create through the daemon exists only with --backend sim; on Xen xengt-ctl runs `xl create -p` itself"));
                }
                let Some(req) = config.vgpu.clone() else {
                    return Err(err(
                        ErrorCode::BadRequest,
                        format!("guest {} has no vgt = 1", config.name),
                    ));
                };
                self.check_request(&req)?;
                let domid = self
                    .backend
                    .start_domain(&config.name)
                    .map_err(|e| err(ErrorCode::Backend, e.to_string()))?;
                let r = self.attach(domid, &req, Origin::Control, true);
                if r.is_err() {
                    self.backend.stop_domain(domid);
                }
                r.map(|v| to_value(&v))
            }
            Op::Destroy { domid } => self.destroy(domid).map(|v| to_value(&v)),
            Op::Screenshot { domid } => {
                if !self.vgpus.contains_key(&domid) {
                    return Err(err(
                        ErrorCode::UnknownDomain,
                        format!("domain {domid} has no vGPU"),
                    ));
                }
                Err(err(
                    ErrorCode::Unsupported,
                    "screenshot is not supported yet: the display model has not landed",
                ))
            }
        }
    }

    /// Types with their free capacity.
    pub fn types(&self) -> Vec<TypeInfo> {
        let slots = self
            .cfg
            .limits
            .max_vgpus
            .saturating_sub(u32::try_from(self.vgpus.len()).unwrap_or(u32::MAX));
        self.cfg
            .types
            .iter()
            .map(|t| TypeInfo {
                name: t.name.clone(),
                low_gm_mib: t.low_gm_mib,
                high_gm_mib: t.high_gm_mib,
                fences: t.fences,
                edid: t.edid,
                available_instances: self.alloc.available(
                    t.low_gm_mib,
                    t.high_gm_mib,
                    t.fences,
                    slots,
                ),
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

    /// Creates a vGPU for an existing domain.
    pub fn attach(
        &mut self,
        domid: u16,
        req: &VgpuRequest,
        origin: Origin,
        owns_domain: bool,
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
        let placement = self
            .alloc
            .place(domid, req.low_gm_mib, req.high_gm_mib, req.fences)
            .map_err(|e| err(ErrorCode::NoResources, e.to_string()))?;
        let handle = match self
            .backend
            .create_device(domid, req.type_name.as_deref(), &placement)
        {
            Ok(h) => h,
            Err(e) => {
                self.alloc.release(domid);
                let code = if matches!(e, BackendError::NoSuchDomain(_)) {
                    ErrorCode::UnknownDomain
                } else {
                    ErrorCode::Backend
                };
                return Err(err(code, e.to_string()));
            }
        };
        let placement = handle.placement.unwrap_or(placement);
        let rec = record(
            handle.server_id,
            req.type_name.clone(),
            &placement,
            origin,
            owns_domain,
        );
        self.persist(domid, &rec);
        let v = Vgpu {
            rec,
            domid,
            state: XenbusState::Connected,
            poll_fd: handle.poll_fd,
        };
        let info = v.info();
        tracing::info!(
            domid,
            server_id = handle.server_id,
            ?origin,
            "vGPU attached"
        );
        self.vgpus.insert(domid, v);
        Ok(info)
    }

    /// Destroys a vGPU (and a domain the daemon started).
    pub fn destroy(&mut self, domid: u16) -> Result<VgpuInfo, ErrorBody> {
        let Some(mut v) = self.vgpus.remove(&domid) else {
            return Err(err(
                ErrorCode::UnknownDomain,
                format!("domain {domid} has no vGPU (see `xengt-ctl list`)"),
            ));
        };
        self.backend.destroy_device(domid);
        if v.rec.owns_domain {
            self.backend.stop_domain(domid);
        }
        self.alloc.release(domid);
        self.unpersist(domid);
        v.state = XenbusState::Closed;
        tracing::info!(domid, "vGPU destroyed");
        Ok(v.info())
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

    /// Tears every vGPU down (shutdown).
    pub fn destroy_all(&mut self) {
        let ids: Vec<u16> = self.vgpus.keys().copied().collect();
        for d in ids {
            let _ = self.destroy(d);
        }
    }

    fn persist(&self, domid: u16, rec: &Record) {
        if let Some(xs) = &self.xs {
            let text = serde_json::to_vec(rec).unwrap_or_default();
            if let Err(e) = xs.write(&format!("{PERSIST_ROOT}/{domid}"), &text) {
                tracing::warn!(domid, %e, "cannot persist vGPU record");
            }
        }
    }

    fn unpersist(&self, domid: u16) {
        if let Some(xs) = &self.xs {
            if let Err(e) = xs.rm(&format!("{PERSIST_ROOT}/{domid}")) {
                tracing::warn!(domid, %e, "cannot remove vGPU record");
            }
        }
    }

    /// Start-up: re-attach persisted vGPUs of live domains at their old placement, destroy
    /// the rest. Returns one human line per record.
    pub fn resume(&mut self) -> Vec<String> {
        let Some(xs) = self.xs.clone() else {
            return Vec::new();
        };
        let ids = match xs.directory(PERSIST_ROOT) {
            Ok(ids) => ids,
            Err(e) if e.is_not_found() => return Vec::new(),
            Err(e) => return vec![format!("cannot read {PERSIST_ROOT}: {e}")],
        };
        let mut out = Vec::new();
        for id in ids {
            let path = format!("{PERSIST_ROOT}/{id}");
            let parsed = id
                .parse::<u16>()
                .ok()
                .filter(|d| valid_guest_domid(*d))
                .and_then(|d| {
                    let text = xs.read(&path).ok()?;
                    serde_json::from_slice::<Record>(&text).ok().map(|r| (d, r))
                });
            let Some((domid, rec)) = parsed else {
                out.push(format!("{path}: malformed record removed"));
                let _ = xs.rm(&path);
                continue;
            };
            out.push(self.resume_one(domid, rec));
        }
        for line in &out {
            tracing::warn!("{line}");
        }
        out
    }

    fn resume_one(&mut self, domid: u16, rec: Record) -> String {
        let stale = rec.server_id;
        if !self.backend.domain_alive(domid) || rec.owns_domain {
            self.backend.destroy_stale_server(domid, stale);
            self.unpersist(domid);
            return format!("domain {domid}: vGPU not resumed (domain gone or was simulated by the old daemon); server {stale} destroyed");
        }
        let p = Placement {
            low: rec.low,
            high: rec.high,
            fence_base: rec.fence_base,
            fence_count: rec.fence_count,
        };
        self.backend.destroy_stale_server(domid, stale);
        if let Err(e) = self.alloc.place_exact(domid, p) {
            self.unpersist(domid);
            return format!("domain {domid}: vGPU not resumed: {e}");
        }
        match self
            .backend
            .create_device(domid, rec.type_name.as_deref(), &p)
        {
            Ok(h) => {
                let rec = Record {
                    server_id: h.server_id,
                    origin: Origin::Resumed,
                    ..rec
                };
                self.persist(domid, &rec);
                self.vgpus.insert(
                    domid,
                    Vgpu {
                        rec,
                        domid,
                        state: XenbusState::Connected,
                        poll_fd: h.poll_fd,
                    },
                );
                format!(
                    "domain {domid}: vGPU re-attached at its old placement (device state reset)"
                )
            }
            Err(e) => {
                self.alloc.release(domid);
                self.unpersist(domid);
                format!("domain {domid}: vGPU not resumed: {e}")
            }
        }
    }
}

fn record(
    server_id: u16,
    type_name: Option<String>,
    p: &Placement,
    origin: Origin,
    owns_domain: bool,
) -> Record {
    Record {
        server_id,
        type_name,
        low: p.low,
        high: p.high,
        fence_base: p.fence_base,
        fence_count: p.fence_count,
        origin,
        owns_domain,
    }
}

#[cfg(test)]
mod tests;
