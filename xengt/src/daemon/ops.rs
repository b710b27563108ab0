//! Control operations ([`Op`]) on the daemon state.

use serde_json::Value;

use super::{backend_err, err, to_value, valid_guest_domid, Daemon, Origin};
use crate::proto::{
    base64_encode, CountersView, ErrorBody, ErrorCode, Op, PlaneView, ScreenshotInfo, StatusInfo,
    VgpuInfo, PROTO_VERSION,
};
use crate::xlcfg::GuestConfig;

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
            Op::Status => Ok(to_value(&StatusInfo {
                version: PROTO_VERSION,
                backend: self.backend.kind().to_string(),
                vgpus: self.vgpus.len(),
                hotplug: self.hotplug_active,
            })),
            Op::List => Ok(to_value(
                &self
                    .vgpus
                    .values()
                    .map(|v| {
                        let mut info = v.info();
                        self.fill_live_bars(&mut info);
                        info
                    })
                    .collect::<Vec<_>>(),
            )),
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
                r.map(|v| to_value(&v))
            }
            Op::Create { config } => self.create(&config).map(|v| to_value(&v)),
            Op::Destroy { domid } => self.destroy(domid).map(|v| to_value(&v)),
            Op::Screenshot { domid } => self.screenshot(domid).map(|v| to_value(&v)),
        }
    }

    fn create(&mut self, config: &GuestConfig) -> Result<VgpuInfo, ErrorBody> {
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
            .start_domain(None, config.memory_mib)
            .map_err(backend_err)?;
        let r = self.attach(domid, &req, Origin::Control);
        if r.is_err() {
            self.backend.stop_domain(domid);
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
