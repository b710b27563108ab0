//! Persistence: `/xengt/vgpu/<domid>` holds a JSON [`Record`] (server id, type,
//! placement) while the vGPU exists; a restarted daemon reads them ([`Daemon::resume`]),
//! destroys each stale ioreq server by id, and re-attaches live domains at the same
//! placement (the mediator's partitioner reserves exactly it).

use serde::{Deserialize, Serialize};
use xen_backend::xenstore::{XenbusState, XsOps};

use super::{valid_guest_domid, Daemon, Origin, Vgpu};
use crate::backend::Placement;
use crate::proto::WindowInfo;
use crate::xlcfg::{GgttBacking, VgpuRequest};

/// Where the daemon persists its vGPUs in XenStore.
pub const PERSIST_ROOT: &str = "/xengt/vgpu";

const MIB: u64 = 1 << 20;

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
    /// GGTT window backing chosen at creation (kept across a daemon restart).
    #[serde(default)]
    pub ggtt_backing: GgttBacking,
    /// The daemon programmed the BARs (PVH guest without PCI firmware).
    #[serde(default)]
    pub preset_bars: bool,
}

impl Record {
    /// A record of a vGPU placed at `p`.
    pub fn new(
        server_id: u16,
        type_name: Option<String>,
        p: &Placement,
        origin: Origin,
        owns_domain: bool,
    ) -> Self {
        Record {
            server_id,
            type_name,
            low: p.low,
            high: p.high,
            fence_base: p.fence_base,
            fence_count: p.fence_count,
            origin,
            owns_domain,
            ggtt_backing: GgttBacking::Trapped,
            preset_bars: false,
        }
    }

    /// Where the vGPU was.
    pub fn placement(&self) -> Placement {
        Placement {
            low: self.low,
            high: self.high,
            fence_base: self.fence_base,
            fence_count: self.fence_count,
        }
    }

    /// The request that re-creates the vGPU (sizes from the placement).
    pub fn request(&self) -> VgpuRequest {
        VgpuRequest {
            type_name: self.type_name.clone(),
            low_gm_mib: self.low.size / MIB,
            high_gm_mib: self.high.size / MIB,
            fences: self.fence_count,
            primary: None,
            monitor_config_file: None,
            ggtt_backing: self.ggtt_backing,
            preset_bars: self.preset_bars,
        }
    }
}

impl Daemon {
    pub(super) fn persist(&self, domid: u16, rec: &Record) {
        if let Some(xs) = &self.xs {
            let text = serde_json::to_vec(rec).unwrap_or_default();
            if let Err(e) = xs.write(&format!("{PERSIST_ROOT}/{domid}"), &text) {
                tracing::warn!(domid, %e, "cannot persist vGPU record");
            }
        }
    }

    pub(super) fn unpersist(&self, domid: u16) {
        if let Some(xs) = &self.xs {
            if let Err(e) = xs.rm(&format!("{PERSIST_ROOT}/{domid}")) {
                tracing::warn!(domid, %e, "cannot remove vGPU record");
            }
        }
    }

    /// Start-up: destroy every persisted (stale) ioreq server, re-attach vGPUs of live
    /// domains at their old placement, drop the rest. Returns one human line per record.
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
        // The old daemon's server still claims the vGPU's PCI slot: it must go first.
        let stale = self.backend.destroy_stale_server(domid, rec.server_id);
        if rec.owns_domain || !self.backend.domain_alive(domid) {
            self.unpersist(domid);
            return format!("domain {domid}: vGPU not resumed (domain gone or was simulated by the old daemon); {stale}");
        }
        let p = rec.placement();
        match self.backend.create_device(domid, &rec.request(), Some(&p)) {
            Ok(h) => {
                let rec = Record {
                    server_id: h.server_id,
                    origin: Origin::Resumed,
                    ..rec
                };
                self.persist(domid, &rec);
                let in_xenstore = self.domain_in_xenstore(domid);
                self.vgpus.insert(
                    domid,
                    Vgpu {
                        rec,
                        domid,
                        state: XenbusState::Connected,
                        poll_fd: h.poll_fd,
                        in_xenstore,
                    },
                );
                format!(
                    "domain {domid}: vGPU re-attached at its old placement (device state reset); {stale}"
                )
            }
            Err(e) => {
                self.unpersist(domid);
                format!("domain {domid}: vGPU not resumed: {e}; {stale}")
            }
        }
    }
}
