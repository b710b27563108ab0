//! XenStore hotplug: the toolstack (`xengt-ctl create`, or any script) writes
//! `/local/domain/0/backend/vgt/<domid>/0/{frontend-id, type | low_gm_sz + high_gm_sz +
//! fence_sz, primary, ggtt-backing, online, state=1}`; the daemon validates it, writes `state=2`
//! (InitWait), waits for the guest domain `/local/domain/<domid>` to exist (up to
//! `limits.connect_timeout_secs`), creates the vGPU + ioreq server, writes back what it
//! chose and `state=4` (Connected). `state=5` (Closing) or `online=0` from the toolstack,
//! the directory vanishing, or `@releaseDomain` for a dead domain tear it down; the
//! daemon then writes `state=6` (Closed) if the directory still exists. Invalid entries
//! get `state=6` plus `hotplug-error` saying what is wrong. Layout: `xengt/README.md`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use xen_backend::xenstore::{WatchEvent, XenbusState, XsClient, XsError, XsOps};

use crate::daemon::{valid_guest_domid, Daemon, Origin};
use crate::xlcfg::{parse_ggtt_backing, GgttBacking, VgpuRequest};

/// Backend root watched by the daemon.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vgt";
/// Watch token for the backend tree.
pub const TOKEN_BACKEND: &str = "xengt-backend";
/// Watch token for `@releaseDomain`.
pub const TOKEN_RELEASE: &str = "xengt-release";

/// Hotplug errors (setup only; per-device problems are reported in XenStore).
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// XenStore failed.
    #[error("xenstore: {0}")]
    Xs(XsError),
}

impl From<XsError> for HotplugError {
    fn from(e: XsError) -> Self {
        Self::Xs(e)
    }
}

/// Backend directory of one guest's vGPU.
pub fn device_path(domid: u16) -> String {
    format!("{BACKEND_ROOT}/{domid}/0")
}

/// Hotplug state: devices waiting for their domain.
#[derive(Debug, Default)]
pub struct Hotplug {
    pending: BTreeMap<u16, (VgpuRequest, Instant)>,
}

fn read_u64(xs: &XsClient, dir: &str, key: &str) -> Result<Option<u64>, String> {
    match xs.read_opt(&format!("{dir}/{key}")) {
        Ok(None) => Ok(None),
        Ok(Some(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{key} = {s:?} is not a decimal number")),
        Err(e) => Err(format!("cannot read {key}: {e}")),
    }
}

impl Hotplug {
    /// Registers the watches and marks the daemon hotplug-capable.
    pub fn start(daemon: &mut Daemon, xs: &XsClient) -> Result<Self, HotplugError> {
        xs.mkdir(BACKEND_ROOT)?;
        xs.watch(BACKEND_ROOT, TOKEN_BACKEND)?;
        xs.watch("@releaseDomain", TOKEN_RELEASE)?;
        daemon.hotplug_active = true;
        Ok(Hotplug::default())
    }

    /// Reacts to watch events (treated as hints: everything is re-read).
    pub fn on_events(&mut self, daemon: &mut Daemon, xs: &XsClient, events: &[WatchEvent]) {
        if events.iter().any(|e| e.token == TOKEN_RELEASE) {
            self.reap_dead(daemon, xs);
        }
        if events.iter().any(|e| e.token == TOKEN_BACKEND) || xs.dropped_watch_events() > 0 {
            self.rescan(daemon, xs);
        }
    }

    /// Periodic work: retry pending devices, time out frontends that never appear.
    pub fn tick(&mut self, daemon: &mut Daemon, xs: &XsClient) {
        let timeout = Duration::from_secs(daemon.config().limits.connect_timeout_secs);
        let ids: Vec<u16> = self.pending.keys().copied().collect();
        for domid in ids {
            let Some((req, since)) = self.pending.get(&domid).cloned() else {
                continue;
            };
            if self.try_connect(daemon, xs, domid, &req) {
                continue;
            }
            if since.elapsed() >= timeout {
                self.pending.remove(&domid);
                fail(
                    xs,
                    domid,
                    &format!(
                        "guest domain {domid} never appeared within {}s",
                        timeout.as_secs()
                    ),
                );
            }
        }
    }

    /// Re-reads the whole backend tree.
    pub fn rescan(&mut self, daemon: &mut Daemon, xs: &XsClient) {
        let entries = match xs.directory(BACKEND_ROOT) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => {
                tracing::warn!(%e, "cannot list {BACKEND_ROOT}");
                return;
            }
        };
        let mut seen = Vec::new();
        for name in entries {
            let Some(domid) = name
                .parse::<u16>()
                .ok()
                .filter(|d| valid_guest_domid(*d) && d.to_string() == name)
            else {
                tracing::warn!(entry = %name, "ignoring malformed backend entry (not a guest domid)");
                continue;
            };
            seen.push(domid);
            self.examine(daemon, xs, domid);
        }
        // Directories that vanished (force destroy): tear down.
        let gone: Vec<u16> = daemon
            .vgpus()
            .values()
            .filter(|v| v.rec.origin != Origin::Control && !seen.contains(&v.domid))
            .map(|v| v.domid)
            .collect();
        for domid in gone {
            tracing::info!(domid, "backend directory removed; destroying vGPU");
            let _ = daemon.destroy(domid);
        }
        self.pending.retain(|d, _| seen.contains(d));
    }

    fn examine(&mut self, daemon: &mut Daemon, xs: &XsClient, domid: u16) {
        let dir = device_path(domid);
        let state = match xs.read_opt(&format!("{dir}/state")) {
            Ok(Some(s)) => XenbusState::parse(&s),
            Ok(None) => return, // toolstack still writing; the state write triggers us again
            Err(e) => {
                tracing::warn!(domid, %e, "cannot read backend state");
                return;
            }
        };
        let online = xs.read_opt(&format!("{dir}/online")).ok().flatten();
        let attached = daemon.vgpus().contains_key(&domid);
        let closing =
            state == Some(XenbusState::Closing) || online.as_deref().map(str::trim) == Some("0");
        if closing {
            self.pending.remove(&domid);
            if attached {
                let _ = daemon.destroy(domid);
            }
            set_state(xs, domid, XenbusState::Closed);
            return;
        }
        match state {
            Some(XenbusState::Initialising) if !attached && !self.pending.contains_key(&domid) => {
                match parse_request(daemon, xs, domid) {
                    Ok(req) => {
                        set_state(xs, domid, XenbusState::InitWait);
                        if !self.try_connect(daemon, xs, domid, &req) {
                            self.pending.insert(domid, (req, Instant::now()));
                        }
                    }
                    Err(msg) => fail(xs, domid, &msg),
                }
            }
            None => fail(xs, domid, "state is not a XenbusState number (0-8)"),
            _ => {}
        }
    }

    /// Creates the device if the domain exists; true if done (connected or failed).
    fn try_connect(
        &mut self,
        daemon: &mut Daemon,
        xs: &XsClient,
        domid: u16,
        req: &VgpuRequest,
    ) -> bool {
        match xs.exists(&format!("/local/domain/{domid}")) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(domid, %e, "cannot check domain");
                return false;
            }
        }
        self.pending.remove(&domid);
        // Simulation: the domain XenStore announces becomes a simulated domain.
        if let Err(e) = daemon.ensure_sim_domain(domid) {
            fail(xs, domid, &e.message);
            return true;
        }
        match daemon.attach(domid, req, Origin::Xenstore) {
            Ok(info) => {
                let dir = device_path(domid);
                let r = xs.transaction(|tx| {
                    let w = |k: &str, v: String| tx.write(&format!("{dir}/{k}"), v.as_bytes());
                    w("server-id", info.server_id.to_string())?;
                    w("pci-slot", info.pci_slot.clone())?;
                    w("bar0", format!("{:#x}", info.bar0))?;
                    w("bar2", format!("{:#x}", info.bar2))?;
                    w("low-gm-base", format!("{:#x}", info.low_gm.base))?;
                    w("low-gm-size", format!("{:#x}", info.low_gm.size))?;
                    w("high-gm-base", format!("{:#x}", info.high_gm.base))?;
                    w("high-gm-size", format!("{:#x}", info.high_gm.size))?;
                    w("fence-base", info.fence_base.to_string())?;
                    w("fence-count", info.fence_count.to_string())?;
                    w(
                        "chosen-type",
                        info.type_name.clone().unwrap_or_else(|| "custom".into()),
                    )?;
                    w("hotplug-status", "connected".into())?;
                    w("state", XenbusState::Connected.as_u8().to_string())
                });
                if let Err(e) = r {
                    tracing::warn!(domid, %e, "cannot publish vGPU; tearing it down");
                    let _ = daemon.destroy(domid);
                }
            }
            Err(e) => fail(xs, domid, &e.message),
        }
        true
    }

    /// `@releaseDomain`: destroy the vGPUs of domains that are gone, however they were
    /// created (hotplug, control socket, resumed); see [`Daemon::domain_gone`].
    pub fn reap_dead(&mut self, daemon: &mut Daemon, xs: &XsClient) {
        let dead: Vec<(u16, Origin)> = daemon
            .vgpus()
            .values()
            .filter(|v| daemon.domain_gone(v.domid))
            .map(|v| (v.domid, v.rec.origin))
            .collect();
        for (domid, origin) in dead {
            tracing::info!(domid, ?origin, "domain released; destroying its vGPU");
            let _ = daemon.destroy_of_dead_domain(domid);
            if origin == Origin::Control {
                continue;
            }
            if let Err(e) = xs.rm(&format!("{BACKEND_ROOT}/{domid}")) {
                tracing::warn!(domid, %e, "cannot remove backend directory");
            }
        }
    }

    /// Shutdown: mark every hotplugged device Closed (the vGPUs are destroyed by the caller).
    pub fn close_all(&self, daemon: &Daemon, xs: &XsClient) {
        for v in daemon
            .vgpus()
            .values()
            .filter(|v| v.rec.origin != Origin::Control)
        {
            set_state(xs, v.domid, XenbusState::Closed);
        }
        for domid in self.pending.keys() {
            set_state(xs, *domid, XenbusState::Closed);
        }
    }
}

fn parse_request(daemon: &Daemon, xs: &XsClient, domid: u16) -> Result<VgpuRequest, String> {
    let dir = device_path(domid);
    match read_u64(xs, &dir, "frontend-id")? {
        Some(f) if f == u64::from(domid) => {}
        Some(f) => {
            return Err(format!(
                "frontend-id {f} does not match the directory's domid {domid}"
            ))
        }
        None => return Err("frontend-id is missing".into()),
    }
    let type_name = xs
        .read_opt(&format!("{dir}/type"))
        .map_err(|e| e.to_string())?;
    let mut req = match type_name {
        Some(t) => daemon
            .request_for_type(Some(t.trim()))
            .map_err(|e| e.message)?,
        None => {
            let low = read_u64(xs, &dir, "low_gm_sz")?;
            let high = read_u64(xs, &dir, "high_gm_sz")?;
            let fences = read_u64(xs, &dir, "fence_sz")?;
            let (Some(low), Some(high)) = (low, high) else {
                return Err("need either type or low_gm_sz and high_gm_sz".into());
            };
            let fences =
                u32::try_from(fences.unwrap_or(4)).map_err(|_| "fence_sz too large".to_string())?;
            let t = daemon
                .config()
                .types
                .iter()
                .find(|t| t.low_gm_mib == low && t.high_gm_mib == high && t.fences == fences);
            VgpuRequest {
                type_name: t.map(|t| t.name.clone()),
                low_gm_mib: low,
                high_gm_mib: high,
                fences,
                primary: None,
                monitor_config_file: None,
                ggtt_backing: Default::default(),
                preset_bars: false,
            }
        }
    };
    req.preset_bars = match read_u64(xs, &dir, "preset-bars")? {
        None | Some(0) => false,
        Some(1) => true,
        Some(v) => return Err(format!("preset-bars = {v}: allowed 0 or 1")),
    };
    req.primary = match read_u64(xs, &dir, "primary")? {
        None => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(v) => return Err(format!("primary = {v}: allowed 0 or 1")),
    };
    req.ggtt_backing = match xs
        .read_opt(&format!("{dir}/ggtt-backing"))
        .map_err(|e| format!("cannot read ggtt-backing: {e}"))?
    {
        None => GgttBacking::Trapped,
        Some(s) => parse_ggtt_backing(&s)
            .ok_or_else(|| format!("ggtt-backing = {s:?}: allowed ram or trapped"))?,
    };
    daemon.check_request(&req).map_err(|e| e.message)?;
    Ok(req)
}

fn set_state(xs: &XsClient, domid: u16, s: XenbusState) {
    let dir = device_path(domid);
    // Only if the directory still exists: never resurrect a removed device.
    let r = xs.transaction(|tx| {
        if tx.exists(&dir)? {
            tx.write(&format!("{dir}/state"), s.as_u8().to_string().as_bytes())?;
        }
        Ok(())
    });
    if let Err(e) = r {
        tracing::warn!(domid, %e, "cannot write backend state");
    }
}

fn fail(xs: &XsClient, domid: u16, msg: &str) {
    tracing::warn!(domid, "hotplug refused: {msg}");
    let dir = device_path(domid);
    let _ = xs.write(&format!("{dir}/hotplug-error"), msg.as_bytes());
    set_state(xs, domid, XenbusState::Closed);
}

#[cfg(test)]
mod tests;
