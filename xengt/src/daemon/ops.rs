//! Control operations ([`Op`]) on the daemon state.
//!
//! Domain names: with XenStore a domain's name is `/local/domain/<domid>/name` (written
//! by the toolstack; checked like a config's `name`, since the domain's own directory
//! may be writable by it); a simulated domain's name is the xl config's `name` for
//! `create`d guests and `sim-<domid>` otherwise.

use std::collections::BTreeSet;

use serde_json::Value;
use xen_backend::xenstore::XsOps;

use super::{backend_err, err, to_value, valid_guest_domid, Daemon, Origin};
use crate::proto::{
    base64_encode, CountersView, DomainInfo, ErrorBody, ErrorCode, Op, PlaneView, ScreenshotInfo,
    StatusInfo, VgpuInfo, PROTO_VERSION,
};
use crate::xlcfg::{check_domain_name, GuestConfig};

fn no_vgpu(domid: u16) -> ErrorBody {
    err(
        ErrorCode::UnknownDomain,
        format!("domain {domid} has no vGPU (see `xengt-ctl list`)"),
    )
}

impl Daemon {
    /// Executes one control operation.
    pub fn handle(&mut self, op: Op) -> Result<Value, ErrorBody> {
        match op {
            Op::Status => Ok(to_value(&self.status())),
            Op::List => Ok(to_value(
                &self
                    .vgpus
                    .values()
                    .map(|v| {
                        let mut info = v.info();
                        self.fill_live_bars(&mut info);
                        info.name = self.domain_name(info.domid);
                        info
                    })
                    .collect::<Vec<_>>(),
            )),
            Op::Domains => Ok(to_value(&self.domains())),
            Op::Types => Ok(to_value(&self.types())),
            Op::Info { domid } => self.info(domid).map(|v| to_value(&v)),
            Op::Attach { domid, type_name } => {
                let req = self.request_for_type(type_name.as_deref())?;
                if !valid_guest_domid(domid) {
                    return Err(err(
                        ErrorCode::BadRequest,
                        format!("domid {domid} is not a guest domain id (1..32751)"),
                    ));
                }
                self.check_request(&req)?;
                if self.vgpus.contains_key(&domid) {
                    return Err(err(
                        ErrorCode::AlreadyAttached,
                        format!("domain {domid} already has a vGPU; destroy it first"),
                    ));
                }
                // Simulation: `attach DOMID` starts the simulated domain DOMID.
                self.ensure_sim_domain(domid)?;
                let r = self.attach(domid, &req, Origin::Control);
                if r.is_err() {
                    self.backend.stop_domain(domid);
                }
                r.map(|v| self.named(v))
            }
            Op::Create { config } => self.create(&config).map(|v| self.named(v)),
            Op::Destroy { domid } => {
                // Named before the teardown, which may take the domain (and name) along.
                let name = self.domain_name(domid);
                self.destroy(domid).map(|mut v| {
                    v.name = name;
                    to_value(&v)
                })
            }
            Op::Screenshot { domid } => self.screenshot(domid).map(|v| to_value(&v)),
        }
    }

    fn status(&self) -> StatusInfo {
        StatusInfo {
            version: PROTO_VERSION,
            backend: self.backend.kind().to_string(),
            vgpus: self.vgpus.len(),
            hotplug: self.hotplug_active,
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            xenstore: self.xs.as_ref().is_some_and(|xs| !xs.is_closed()),
            max_vgpus: self.cfg.limits.max_vgpus,
            default_type: self.cfg.default_type.clone(),
        }
    }

    fn named(&self, mut v: VgpuInfo) -> Value {
        v.name = self.domain_name(v.domid);
        to_value(&v)
    }

    /// A domain's name (see the module doc), `None` if unknown or not a valid name.
    pub fn domain_name(&self, domid: u16) -> Option<String> {
        if let Some(xs) = &self.xs {
            let name = xs.read_opt(&format!("/local/domain/{domid}/name"));
            if let Ok(Some(n)) = name {
                return check_domain_name(&n).is_ok().then_some(n);
            }
        }
        if self.backend.kind() != "sim" || !self.backend.domain_alive(domid) {
            return None;
        }
        Some(
            self.sim_names
                .get(&domid)
                .cloned()
                .unwrap_or_else(|| format!("sim-{domid}")),
        )
    }

    /// Every domain the daemon knows: XenStore's `/local/domain`, the simulated domains it
    /// started, the domains with a vGPU.
    pub fn domains(&self) -> Vec<DomainInfo> {
        let mut ids: BTreeSet<u16> = self.vgpus.keys().copied().collect();
        ids.extend(self.sim_names.keys().copied());
        if let Some(xs) = &self.xs {
            if let Ok(dirs) = xs.directory("/local/domain") {
                ids.extend(dirs.iter().filter_map(|d| d.parse::<u16>().ok()));
            }
        }
        ids.into_iter()
            .map(|domid| DomainInfo {
                domid,
                name: self.domain_name(domid),
                vgpu: self.vgpus.contains_key(&domid),
            })
            .collect()
    }

    fn create(&mut self, config: &GuestConfig) -> Result<VgpuInfo, ErrorBody> {
        if self.backend.kind() != "sim" {
            return Err(err(ErrorCode::Unsupported, "create through the daemon exists only with --backend sim; on Xen xengt-ctl runs `xl create -p` itself"));
        }
        // The config came over the socket: its name is checked again, and, as xl does,
        // two domains may not share one.
        let name = &config.name;
        if let Err(why) = check_domain_name(name) {
            return Err(err(ErrorCode::BadRequest, format!("name {name:?} {why}")));
        }
        if let Some(other) = self
            .domains()
            .iter()
            .find(|d| d.name.as_ref() == Some(name))
        {
            return Err(err(
                ErrorCode::BadRequest,
                format!("domain {} is already named {name:?}", other.domid),
            ));
        }
        let Some(req) = config.vgpu.clone() else {
            return Err(err(
                ErrorCode::BadRequest,
                format!("guest {name} has no vgt = 1"),
            ));
        };
        self.check_request(&req)?;
        let domid = self
            .backend
            .start_domain(None, config.memory_mib)
            .map_err(backend_err)?;
        let r = self.attach(domid, &req, Origin::Control);
        match &r {
            Ok(_) => {
                self.sim_names.insert(domid, name.clone());
            }
            Err(_) => self.backend.stop_domain(domid),
        }
        r
    }

    /// Sets `bar0`/`bar2` to where the guest (or, for PVH, the daemon) placed them; 0 while
    /// a BAR is unprogrammed or being sized.
    pub(crate) fn fill_live_bars(&self, info: &mut VgpuInfo) {
        let (bar0, bar2) = self.backend.bar_addresses(info.domid);
        info.bar0 = bar0.unwrap_or(0);
        info.bar2 = bar2.unwrap_or(0);
    }

    /// One vGPU with its live plane and counters.
    pub fn info(&self, domid: u16) -> Result<VgpuInfo, ErrorBody> {
        let v = self.vgpus.get(&domid).ok_or_else(|| no_vgpu(domid))?;
        let mut info = v.info();
        self.fill_live_bars(&mut info);
        info.name = self.domain_name(domid);
        if let Some(view) = self.backend.device_view(domid) {
            match &view.plane {
                Ok(p) => info.plane = Some(PlaneView::from(p)),
                Err(e) => info.plane_error = Some(e.to_string()),
            }
            let c = view.counters;
            info.counters = Some(CountersView {
                ggtt_writes_dropped: c
                    .ggtt_dropped_outside
                    .saturating_add(c.ggtt_dropped_not_owned)
                    .saturating_add(c.ggtt_dropped_bad_access),
                vgpu: c,
                server: to_value(&view.server),
                mediator: view.stats.as_ref().map_or(Value::Null, to_value),
            });
        }
        Ok(info)
    }

    /// The guest's primary plane as a base64 PNG.
    pub fn screenshot(&self, domid: u16) -> Result<ScreenshotInfo, ErrorBody> {
        if !self.vgpus.contains_key(&domid) {
            return Err(no_vgpu(domid));
        }
        let shot = self.backend.screenshot(domid).map_err(backend_err)?;
        Ok(ScreenshotInfo {
            plane: PlaneView::from(&shot.plane),
            png_base64: base64_encode(&shot.png),
            complete: shot.complete,
        })
    }
}

#[cfg(test)]
mod tests;
