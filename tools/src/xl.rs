//! `create` on real Xen: `xl create -p`, the XenStore backend entries, wait for Connected,
//! `xl unpause`; any failure destroys the half-made domain. A config that uses the
//! stock-xl hook (`device_model_override`, see `dmhook`) is a plain `xl create`: the hook
//! does the hand-off.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use xen_backend::xenstore::{XenbusState, XsClient, XsOps};
use xengt::hotplug::device_path;
use xengt::xlcfg::{GuestConfig, VgpuRequest};

fn xl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("xl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run xl: {e} (is xen-utils installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "xl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Creates the domain paused, hands the vGPU to xengtd through XenStore, unpauses.
pub fn create(cfg_path: &Path, guest: &GuestConfig, timeout: Duration) -> Result<u16, String> {
    let Some(req) = &guest.vgpu else {
        return Err(format!("{}: no vgt = 1 in the config", cfg_path.display()));
    };
    let path = cfg_path.to_str().ok_or("config path is not UTF-8")?;
    let name = guest.name.as_str();
    if guest.dm_hook {
        // xl runs the hook as the device model: it hands the vGPU over and waits for
        // Connected while the domain is paused, and xl unpauses only after that. A hook
        // failure makes xl destroy the domain itself.
        xl(&["create", path])?;
        return xl(&["domid", name])?
            .parse()
            .map_err(|_| format!("xl domid {name} did not print a domain id"));
    }
    xl(&["create", "-p", path])?;
    let result = (|| {
        let domid: u16 = xl(&["domid", name])?
            .parse()
            .map_err(|_| format!("xl domid {name} did not print a domain id"))?;
        hand_off(domid, req, timeout)?;
        xl(&["unpause", name])?;
        Ok(domid)
    })();
    if result.is_err() {
        let _ = xl(&["destroy", name]);
    }
    result
}

/// Hands the vGPU request to xengtd through the domain's XenStore backend directory and
/// waits until xengtd reports it Connected (or Closed, with its reason). The domain stays
/// as it is (paused, for `create` and the device-model hook).
pub fn hand_off(domid: u16, req: &VgpuRequest, timeout: Duration) -> Result<(), String> {
    let xs = XsClient::connect().map_err(|e| e.to_string())?;
    let dir = device_path(domid);
    xs.watch(&dir, "xengt-ctl").map_err(|e| e.to_string())?;
    xs.transaction(|tx| {
        let w = |k: &str, v: String| tx.write(&format!("{dir}/{k}"), v.as_bytes());
        w("frontend-id", domid.to_string())?;
        w("frontend", format!("/local/domain/{domid}"))?;
        w("online", "1".into())?;
        match &req.type_name {
            Some(t) => w("type", t.clone())?,
            None => {
                w("low_gm_sz", req.low_gm_mib.to_string())?;
                w("high_gm_sz", req.high_gm_mib.to_string())?;
                w("fence_sz", req.fences.to_string())?;
            }
        }
        w(
            "ggtt-backing",
            xengt::xlcfg::ggtt_backing_name(req.ggtt_backing).into(),
        )?;
        if let Some(p) = req.primary {
            w("primary", u8::from(p).to_string())?;
        }
        if req.preset_bars {
            // PVH: no firmware will program the BARs; the daemon places them.
            w("preset-bars", "1".into())?;
        }
        w("state", XenbusState::Initialising.as_u8().to_string())
    })
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        let state = xs
            .read_opt(&format!("{dir}/state"))
            .map_err(|e| e.to_string())?;
        match state.as_deref().and_then(XenbusState::parse) {
            Some(XenbusState::Connected) => break,
            Some(XenbusState::Closed) => {
                let why = xs.read_opt(&format!("{dir}/hotplug-error")).ok().flatten();
                return Err(format!(
                    "xengtd refused the vGPU: {}",
                    why.unwrap_or_else(|| "no reason given".into())
                ));
            }
            _ => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "xengtd did not connect the vGPU within {}s (is xengtd running with XenStore?)",
                timeout.as_secs()
            ));
        }
        xs.wait_watch_events(left.min(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
