//! xl guest configuration files (`xl.cfg(5)` syntax) and the historical XenGT keys
//! (xen-abi.md §5.5): `vgt`, `vgt_low_gm_sz`, `vgt_high_gm_sz`, `vgt_fence_sz`,
//! `vgt_primary`, `vgt_monitor_config_file`, plus `name`, `type`/`builder`, `memory`.
//!
//! Any other key starting with `vgt` is refused with the nearest known key ([`keys`]): xl
//! would ignore a typo and the guest would silently get the default type. A `vgt = 1`
//! guest must not use populate-on-demand: `maxmem`, if given, must equal `memory`.
//!
//! Sizes are validated against the daemon's vGPU types ([`DaemonConfig::types`]): the
//! given keys must all match one type, or — only if `limits.custom` is configured — lie
//! within the custom bounds. Errors carry `file:line` and the allowed values.

mod keys;
mod syntax;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::DaemonConfig;
pub use keys::VGT_KEYS;
pub use mediator::ggtt_ram::GgttBacking;
pub use syntax::{parse as parse_settings, parse_int, Setting, SyntaxError, Value};

/// Errors reading a guest configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XlCfgError {
    /// The file could not be read.
    #[error("{file}: cannot read: {msg}")]
    Read {
        /// File.
        file: String,
        /// OS error text.
        msg: String,
    },
    /// xl.cfg syntax error.
    #[error("{file}:{line}: syntax error: {msg}")]
    Syntax {
        /// File.
        file: String,
        /// Line.
        line: usize,
        /// Detail.
        msg: String,
    },
    /// A setting with a bad value.
    #[error("{file}:{line}: {key}: {msg}")]
    Invalid {
        /// File.
        file: String,
        /// Line of the setting (0 if absent).
        line: usize,
        /// Key.
        key: String,
        /// What is wrong and what is allowed.
        msg: String,
    },
}

/// Guest kind (`type=`; legacy `builder="hvm"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// Fully virtualised with QEMU.
    Hvm,
    /// PVH: HVM container, no device model.
    Pvh,
    /// Paravirtualised (cannot have a vGPU: no ioreq servers).
    Pv,
}

/// What the guest asks of the vGPU mediator (the toolstack writes this to XenStore).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuRequest {
    /// Matching type name, or `None` for a custom size.
    pub type_name: Option<String>,
    /// Low (aperture) GM in MiB.
    pub low_gm_mib: u64,
    /// High GM in MiB.
    pub high_gm_mib: u64,
    /// Fence registers.
    pub fences: u32,
    /// `vgt_primary`: `None` = unspecified (-1).
    pub primary: Option<bool>,
    /// `vgt_monitor_config_file`.
    pub monitor_config_file: Option<String>,
    /// How the GGTT PTE window reaches the vGPU: RAM for HVM guests (the real i915
    /// rewrites the whole GGTT, which trapped would take an hour under nested TCG),
    /// trapped otherwise. XenStore key `ggtt-backing` (`ram` | `trapped`).
    #[serde(default)]
    pub ggtt_backing: GgttBacking,
    /// The guest has no firmware that programs PCI BARs (PVH): the daemon places BAR0 and
    /// BAR2 at its fixed addresses and enables decode itself when the vGPU is created.
    #[serde(default)]
    pub preset_bars: bool,
}

/// The parts of an xl config the daemon cares about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// `name`.
    pub name: String,
    /// `type`.
    pub guest_type: GuestType,
    /// `memory` in MiB.
    pub memory_mib: Option<u64>,
    /// The vGPU, if `vgt=1`.
    pub vgpu: Option<VgpuRequest>,
    /// `device_model_override` names xengt's stock-xl hook ([`DM_HOOK_NAME`]): `xl create`
    /// itself hands the vGPU over, through the hook, before the guest's QEMU starts.
    #[serde(default)]
    pub dm_hook: bool,
}

/// File name of the device-model hook the package installs (`/usr/libexec/xengt/`).
pub const DM_HOOK_NAME: &str = "qemu-dm-vgt";

/// Reads and validates a file.
pub fn load(path: &Path, cfg: &DaemonConfig) -> Result<GuestConfig, XlCfgError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| XlCfgError::Read {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    parse(&text, &file, cfg)
}

struct Ctx<'a> {
    file: &'a str,
    map: BTreeMap<String, Setting>,
}

impl Ctx<'_> {
    fn invalid<T>(&self, key: &str, msg: impl Into<String>) -> Result<T, XlCfgError> {
        Err(XlCfgError::Invalid {
            file: self.file.to_string(),
            line: self.map.get(key).map_or(0, |s| s.line),
            key: key.to_string(),
            msg: msg.into(),
        })
    }

    fn string(&self, key: &str) -> Result<Option<String>, XlCfgError> {
        match self.map.get(key).map(|s| &s.value) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => self.invalid(key, "expected a quoted string"),
        }
    }

    /// Numbers may be written bare or quoted (libxlu stores both as text).
    fn int(&self, key: &str) -> Result<Option<i64>, XlCfgError> {
        let text = match self.map.get(key).map(|s| &s.value) {
            None => return Ok(None),
            Some(Value::Num(t) | Value::Str(t)) => t,
            Some(Value::List(_)) => return self.invalid(key, "expected a number, not a list"),
        };
        match parse_int(text) {
            Some(v) => Ok(Some(v)),
            None => self.invalid(key, format!("{text:?} is not a number (decimal or 0x hex)")),
        }
    }

    fn uint(&self, key: &str, max: u64) -> Result<Option<u64>, XlCfgError> {
        match self.int(key)? {
            None => Ok(None),
            Some(v) => match u64::try_from(v) {
                Ok(u) if u <= max => Ok(Some(u)),
                _ => self.invalid(key, format!("{v} is out of range 0..={max}")),
            },
        }
    }
}

/// Parses text; `file` names it in errors.
pub fn parse(text: &str, file: &str, cfg: &DaemonConfig) -> Result<GuestConfig, XlCfgError> {
    let map = parse_settings(text).map_err(|e| XlCfgError::Syntax {
        file: file.to_string(),
        line: e.line,
        msg: e.msg,
    })?;
    let cx = Ctx { file, map };
    let unknown = cx
        .map
        .iter()
        .filter(|(k, _)| keys::is_unknown_vgt_key(k))
        .min_by_key(|(_, s)| s.line);
    if let Some((key, _)) = unknown {
        return cx.invalid(key, keys::unknown_key_message(key));
    }
    let Some(name) = cx.string("name")? else {
        return cx.invalid("name", "missing: every guest needs name = \"...\"");
    };
    if let Err(why) = check_domain_name(&name) {
        return cx.invalid("name", why);
    }
    let guest_type = guest_type(&cx)?;
    let memory_mib = cx.uint("memory", 1 << 30)?;
    let vgt = match cx.int("vgt")? {
        None | Some(0) => false,
        Some(1) => true,
        Some(v) => return cx.invalid("vgt", format!("{v} is not 0 or 1")),
    };
    if vgt {
        no_populate_on_demand(&cx, memory_mib)?;
    }
    let vgpu = if vgt {
        if guest_type == GuestType::Pv {
            return cx.invalid(
                "vgt",
                "a vGPU needs type = \"hvm\" or \"pvh\" (PV guests have no ioreq servers)",
            );
        }
        let mut req = vgpu_request(&cx, cfg)?;
        req.ggtt_backing = ggtt_backing(&cx, guest_type)?;
        Some(req)
    } else {
        for k in [
            "vgt_low_gm_sz",
            "vgt_high_gm_sz",
            "vgt_fence_sz",
            "vgt_ggtt_backing",
        ] {
            if cx.map.contains_key(k) {
                return cx.invalid(k, "set without vgt = 1");
            }
        }
        None
    };
    let vgpu = vgpu.map(|mut v| {
        v.preset_bars = guest_type == GuestType::Pvh;
        v
    });
    let dm_hook = dm_hook(&cx, vgt, guest_type)?;
    Ok(GuestConfig {
        name,
        guest_type,
        memory_mib,
        vgpu,
        dm_hook,
    })
}

/// Whether `device_model_override` names the xengt hook, and if so that the rest of the
/// config lets it work: `vgt = 1`, an HVM guest (only HVM guests have a device model), and
/// `device_model_args_hvm` carrying `"-xengt-config", "<path>"` (the hook reads the `vgt*`
/// keys from that file; xl does not pass them on).
fn dm_hook(cx: &Ctx<'_>, vgt: bool, guest_type: GuestType) -> Result<bool, XlCfgError> {
    const KEY: &str = "device_model_override";
    let Some(path) = cx.string(KEY)? else {
        return Ok(false);
    };
    if Path::new(&path).file_name().and_then(|n| n.to_str()) != Some(DM_HOOK_NAME) {
        return Ok(false);
    }
    if !vgt {
        return cx.invalid(
            KEY,
            "names the xengt vGPU hook but the config has no vgt = 1",
        );
    }
    if guest_type != GuestType::Hvm {
        return cx.invalid(
            KEY,
            "the xengt vGPU hook needs type = \"hvm\" (only HVM guests have a device model)",
        );
    }
    const ARGS: &str = "device_model_args_hvm";
    let items = match cx.map.get(ARGS).map(|s| &s.value) {
        Some(Value::List(items)) => items.as_slice(),
        Some(_) => return cx.invalid(ARGS, "expected a list of quoted strings"),
        None => &[],
    };
    let has_config = items.windows(2).any(|w| {
        matches!(&w[0], Value::Str(f) if f == "-xengt-config")
            && matches!(&w[1], Value::Str(p) if !p.is_empty())
    });
    if !has_config {
        let line = cx.map.get(KEY).map_or(0, |s| s.line);
        return Err(XlCfgError::Invalid {
            file: cx.file.to_string(),
            line,
            key: ARGS.to_string(),
            msg: format!(
                "the xengt hook in {KEY} needs {ARGS} = [ \"-xengt-config\", \"{}\" ] (this file's path)",
                cx.file
            ),
        });
    }
    Ok(true)
}

/// Why `name` cannot be a domain name: 1-64 characters, none a control character, not
/// all digits (xl and xengt-ctl read an all-digit argument as a domain id).
pub fn check_domain_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err("must be 1-64 printable characters");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must not be all digits (it would be read as a domain id)");
    }
    Ok(())
}

/// libxl refuses populate-on-demand (`memory` < `maxmem`) for vgt guests: the vGPU's
/// DMA may reach pages that are not populated yet. `maxmem` alone means memory = maxmem.
fn no_populate_on_demand(cx: &Ctx<'_>, memory: Option<u64>) -> Result<(), XlCfgError> {
    let (Some(mem), Some(max)) = (memory, cx.uint("maxmem", 1 << 30)?) else {
        return Ok(());
    };
    if max > mem {
        return cx.invalid(
            "maxmem",
            format!("{max} > memory {mem}: a vGPU guest cannot use populate-on-demand; set maxmem = {mem} (or remove maxmem)"),
        );
    }
    if max < mem {
        return cx.invalid(
            "maxmem",
            format!("{max} < memory {mem}: set maxmem = {mem} (or remove maxmem)"),
        );
    }
    Ok(())
}

fn guest_type(cx: &Ctx<'_>) -> Result<GuestType, XlCfgError> {
    let t = match cx.string("type")? {
        Some(t) => t,
        None => match cx.string("builder")?.as_deref() {
            Some("hvm") => return Ok(GuestType::Hvm),
            Some("generic") | None => return Ok(GuestType::Pv),
            Some(o) => {
                return cx.invalid("builder", format!("{o:?}: allowed \"hvm\", \"generic\""))
            }
        },
    };
    match t.as_str() {
        "hvm" => Ok(GuestType::Hvm),
        "pvh" => Ok(GuestType::Pvh),
        "pv" => Ok(GuestType::Pv),
        o => cx.invalid("type", format!("{o:?}: allowed \"hvm\", \"pvh\", \"pv\"")),
    }
}

/// `vgt_ggtt_backing = "ram" | "trapped"`; by default RAM for HVM guests (which run the
/// real i915) and trapped for PVH.
fn ggtt_backing(cx: &Ctx<'_>, guest_type: GuestType) -> Result<GgttBacking, XlCfgError> {
    match cx.string("vgt_ggtt_backing")?.as_deref() {
        None if guest_type == GuestType::Hvm => Ok(GgttBacking::Ram),
        None => Ok(GgttBacking::Trapped),
        Some(s) => match parse_ggtt_backing(s) {
            Some(b) => Ok(b),
            None => cx.invalid(
                "vgt_ggtt_backing",
                format!("{s:?}: allowed \"ram\", \"trapped\""),
            ),
        },
    }
}

/// The XenStore/xl spelling of a [`GgttBacking`].
pub fn ggtt_backing_name(b: GgttBacking) -> &'static str {
    match b {
        GgttBacking::Trapped => "trapped",
        GgttBacking::Ram => "ram",
    }
}

/// Parses `ram` / `trapped` (surrounding whitespace allowed).
pub fn parse_ggtt_backing(s: &str) -> Option<GgttBacking> {
    match s.trim() {
        "ram" => Some(GgttBacking::Ram),
        "trapped" => Some(GgttBacking::Trapped),
        _ => None,
    }
}

fn list_u64(vals: impl Iterator<Item = u64>) -> String {
    let mut v: Vec<u64> = vals.collect();
    v.sort_unstable();
    v.dedup();
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn vgpu_request(cx: &Ctx<'_>, cfg: &DaemonConfig) -> Result<VgpuRequest, XlCfgError> {
    let low = cx.uint("vgt_low_gm_sz", 4096)?;
    let high = cx.uint("vgt_high_gm_sz", 4096)?;
    let fences = cx.uint("vgt_fence_sz", 32)?;
    let primary = match cx.int("vgt_primary")? {
        None | Some(-1) => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(v) => return cx.invalid("vgt_primary", format!("{v}: allowed -1, 0, 1")),
    };
    let monitor_config_file = cx.string("vgt_monitor_config_file")?;
    if let Some(p) = &monitor_config_file {
        if !p.starts_with('/') {
            return cx.invalid("vgt_monitor_config_file", "must be an absolute path");
        }
    }
    // A type matching every size given (all absent = the default type).
    let matches = |t: &&crate::config::VgpuType| {
        low.map_or(true, |l| l == t.low_gm_mib)
            && high.map_or(true, |h| h == t.high_gm_mib)
            && fences.map_or(true, |f| f == u64::from(t.fences))
    };
    let chosen = if low.is_none() && high.is_none() && fences.is_none() {
        cfg.find_type(&cfg.default_type)
    } else {
        cfg.types.iter().find(matches)
    };
    if let Some(t) = chosen {
        return Ok(VgpuRequest {
            type_name: Some(t.name.clone()),
            low_gm_mib: t.low_gm_mib,
            high_gm_mib: t.high_gm_mib,
            fences: t.fences,
            primary,
            monitor_config_file,
            ggtt_backing: GgttBacking::Trapped,
            preset_bars: false,
        });
    }
    if let Some(c) = &cfg.limits.custom {
        let fit = |v: u64, lo: u64, hi: u64| v >= lo && v <= hi && v % c.granularity_mib == 0;
        let l = low.unwrap_or(c.low_min_mib);
        let h = high.unwrap_or(c.high_min_mib);
        let f = fences.unwrap_or(0);
        if !fit(l, c.low_min_mib, c.low_max_mib) {
            return cx.invalid(
                "vgt_low_gm_sz",
                format!(
                    "{l} MiB is outside the custom range {}..={} MiB (multiples of {})",
                    c.low_min_mib, c.low_max_mib, c.granularity_mib
                ),
            );
        }
        if !fit(h, c.high_min_mib, c.high_max_mib) {
            return cx.invalid(
                "vgt_high_gm_sz",
                format!(
                    "{h} MiB is outside the custom range {}..={} MiB (multiples of {})",
                    c.high_min_mib, c.high_max_mib, c.granularity_mib
                ),
            );
        }
        let f = u32::try_from(f).ok().filter(|f| *f <= c.max_fences);
        let Some(f) = f else {
            return cx.invalid("vgt_fence_sz", format!("allowed 0..={}", c.max_fences));
        };
        return Ok(VgpuRequest {
            type_name: None,
            low_gm_mib: l,
            high_gm_mib: h,
            fences: f,
            primary,
            monitor_config_file,
            ggtt_backing: GgttBacking::Trapped,
            preset_bars: false,
        });
    }
    // Name the first key that matches no type at all, with its allowed values.
    if let Some(l) = low.filter(|l| !cfg.types.iter().any(|t| t.low_gm_mib == *l)) {
        return cx.invalid(
            "vgt_low_gm_sz",
            format!(
                "{l} MiB matches no vGPU type; allowed: {}",
                list_u64(cfg.types.iter().map(|t| t.low_gm_mib))
            ),
        );
    }
    if let Some(h) = high.filter(|h| !cfg.types.iter().any(|t| t.high_gm_mib == *h)) {
        return cx.invalid(
            "vgt_high_gm_sz",
            format!(
                "{h} MiB matches no vGPU type; allowed: {}",
                list_u64(cfg.types.iter().map(|t| t.high_gm_mib))
            ),
        );
    }
    if let Some(f) = fences.filter(|f| !cfg.types.iter().any(|t| u64::from(t.fences) == *f)) {
        return cx.invalid(
            "vgt_fence_sz",
            format!(
                "{f} matches no vGPU type; allowed: {}",
                list_u64(cfg.types.iter().map(|t| u64::from(t.fences)))
            ),
        );
    }
    let combos: Vec<String> = cfg
        .types
        .iter()
        .map(|t| {
            format!(
                "{} = {}/{}/{}",
                t.name, t.low_gm_mib, t.high_gm_mib, t.fences
            )
        })
        .collect();
    let key = if low.is_some() {
        "vgt_low_gm_sz"
    } else {
        "vgt_high_gm_sz"
    };
    cx.invalid(
        key,
        format!(
            "the combination of sizes matches no vGPU type; allowed low/high/fences: {}",
            combos.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests;
