//! Daemon configuration (`--config FILE`): the host GPU, the vGPU types, limits.
//!
//! Format: **JSON** (serde_json is already a dependency; TOML would add one). Every field
//! has a default, so `{}` is a valid file; the defaults mirror GVT's four "GVTg_V5_*" types
//! on a 256 MiB-aperture / 4 GiB-GGTT Gen9 host (gen9-vgpu.md §3.3). Unknown fields are
//! rejected so typos do not pass silently. Example: `configs/xengtd.json`.

use std::path::Path;

use mediator::partition::{HostDescription, MIB};
use serde::{Deserialize, Serialize};

/// Errors loading or validating the daemon configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// Not valid JSON or wrong field types.
    #[error("{path}:{line}:{column}: {msg}")]
    Parse {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde said.
        msg: String,
    },
    /// Values that do not fit together.
    #[error("{path}: {msg}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong and how to fix it.
        msg: String,
    },
}

/// The host GPU the vGPUs are carved from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostGpu {
    /// PCI device id presented to guests (Gen9 SKL GT2 desktop = 0x1912): a JSON number
    /// (`6418`) or a hex string (`"0x1912"`).
    #[serde(deserialize_with = "device_id_from_json")]
    pub device_id: u16,
    /// CPU-visible aperture (low GM) in MiB.
    pub aperture_mib: u64,
    /// Whole GGTT address space (low + high GM) in MiB.
    pub ggtt_mib: u64,
    /// Fence registers on the host.
    pub fences: u32,
    /// Low GM kept for the host (dom0) in MiB, taken from the start of the aperture.
    pub host_low_mib: u64,
    /// High GM kept for the host in MiB.
    pub host_high_mib: u64,
    /// Fences kept for the host.
    pub host_fences: u32,
}

/// A PCI id as a number or a `"0x…"` hex string (ids are always written in hex).
fn device_id_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Num(i64),
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    let bad = |what: &dyn std::fmt::Display| {
        D::Error::custom(format!(
            "device_id {what} is not a PCI device id (0..=0xffff, a number or a string like \"0x1912\")"
        ))
    };
    match Id::deserialize(d)? {
        Id::Num(n) => u16::try_from(n).map_err(|_| bad(&n)),
        Id::Other(_) => Err(bad(&"of this JSON type")),
        Id::Text(t) => {
            let hex = t
                .strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .ok_or_else(|| bad(&format!("{t:?}")))?;
            u16::from_str_radix(hex, 16).map_err(|_| bad(&format!("{t:?}")))
        }
    }
}

impl Default for HostGpu {
    fn default() -> Self {
        HostGpu {
            device_id: 0x1912,
            aperture_mib: 1024,
            ggtt_mib: 4096,
            fences: 32,
            host_low_mib: 0,
            host_high_mib: 0,
            host_fences: 0,
        }
    }
}

/// One vGPU type (xl `vgt_low_gm_sz`/`vgt_high_gm_sz`/`vgt_fence_sz` must match one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VgpuType {
    /// Name, e.g. `GVTg_V5_4`.
    pub name: String,
    /// Low (aperture) GM in MiB.
    pub low_gm_mib: u64,
    /// High (hidden) GM in MiB.
    pub high_gm_mib: u64,
    /// Fence registers.
    pub fences: u32,
    /// Default EDID resolution `[width, height]`.
    #[serde(default = "default_edid")]
    pub edid: [u32; 2],
}

fn default_edid() -> [u32; 2] {
    [1920, 1200]
}

/// Bounds for sizes that match no type (only if `custom` is set in [`Limits`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomLimits {
    /// Smallest low GM in MiB.
    pub low_min_mib: u64,
    /// Largest low GM in MiB.
    pub low_max_mib: u64,
    /// Smallest high GM in MiB.
    pub high_min_mib: u64,
    /// Largest high GM in MiB.
    pub high_max_mib: u64,
    /// Sizes must be multiples of this many MiB.
    pub granularity_mib: u64,
    /// Most fences.
    pub max_fences: u32,
}

/// Global limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most vGPUs at once.
    pub max_vgpus: u32,
    /// Allow sizes outside the type table, within these bounds (`null` = types only).
    pub custom: Option<CustomLimits>,
    /// Seconds a hotplugged vGPU may stay unconnected before it is torn down.
    pub connect_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vgpus: 8,
            custom: None,
            connect_timeout_secs: 30,
        }
    }
}

/// The whole daemon configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Host GPU.
    pub host: HostGpu,
    /// vGPU types (order = preference when a guest config names no size).
    pub types: Vec<VgpuType>,
    /// Type used when a guest says only `vgt=1`.
    pub default_type: String,
    /// Limits.
    pub limits: Limits,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        let t = |name: &str, low, high, edid: [u32; 2]| VgpuType {
            name: name.to_string(),
            low_gm_mib: low,
            high_gm_mib: high,
            fences: 4,
            edid,
        };
        DaemonConfig {
            host: HostGpu::default(),
            types: vec![
                t("GVTg_V5_8", 64, 384, [1024, 768]),
                t("GVTg_V5_4", 128, 512, [1920, 1200]),
                t("GVTg_V5_2", 256, 1024, [1920, 1200]),
                t("GVTg_V5_1", 512, 2048, [1920, 1200]),
            ],
            default_type: "GVTg_V5_4".to_string(),
            limits: Limits::default(),
        }
    }
}

impl DaemonConfig {
    /// Loads and validates a JSON file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            cause: source,
        })?;
        Self::from_json(&text, &name)
    }

    /// Parses and validates JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: DaemonConfig = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            line: e.line(),
            column: e.column(),
            msg: e.to_string(),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Checks that the types fit the host and names are unique.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |msg: String| {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                msg,
            })
        };
        let h = &self.host;
        if h.aperture_mib == 0 || h.aperture_mib > h.ggtt_mib {
            return bad(format!(
                "host.aperture_mib ({}) must be 1..=host.ggtt_mib ({})",
                h.aperture_mib, h.ggtt_mib
            ));
        }
        if h.ggtt_mib > 4096 {
            return bad(format!(
                "host.ggtt_mib ({}) exceeds 4096 (Gen9 GGTT is 4 GiB)",
                h.ggtt_mib
            ));
        }
        if h.host_low_mib > h.aperture_mib
            || h.host_high_mib > h.ggtt_mib - h.aperture_mib
            || h.host_fences > h.fences
            || h.fences > 32
        {
            return bad("host reserves exceed the host's resources (or fences > 32)".into());
        }
        if let Err(e) = self.host_description().validate() {
            return bad(format!("host: {e}"));
        }
        if self.types.is_empty() {
            return bad("at least one vGPU type is required".into());
        }
        for (i, t) in self.types.iter().enumerate() {
            if t.name.is_empty()
                || !t
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            {
                return bad(format!(
                    "types[{i}].name {:?} must be [A-Za-z0-9_-]+",
                    t.name
                ));
            }
            if self.types.iter().skip(i + 1).any(|o| o.name == t.name) {
                return bad(format!("type name {:?} appears twice", t.name));
            }
            if t.low_gm_mib == 0 || t.high_gm_mib == 0 || t.fences > h.fences {
                return bad(format!(
                    "type {}: low/high GM must be > 0 and fences <= host.fences",
                    t.name
                ));
            }
        }
        if !self.types.iter().any(|t| t.name == self.default_type) {
            return bad(format!(
                "default_type {:?} is not one of the types ({})",
                self.default_type,
                self.type_names().join(", ")
            ));
        }
        if let Some(c) = &self.limits.custom {
            if c.granularity_mib == 0
                || c.low_min_mib > c.low_max_mib
                || c.high_min_mib > c.high_max_mib
            {
                return bad("limits.custom: need granularity_mib > 0 and min <= max".into());
            }
        }
        Ok(())
    }

    /// The host as the mediator's partitioner sees it (the one allocator of the daemon).
    pub fn host_description(&self) -> HostDescription {
        let h = &self.host;
        HostDescription {
            device_id: h.device_id,
            ggtt_size: h.ggtt_mib.saturating_mul(MIB),
            aperture_size: h.aperture_mib.saturating_mul(MIB),
            fence_count: h.fences,
            host_low_reserve: h.host_low_mib.saturating_mul(MIB),
            host_high_reserve: h.host_high_mib.saturating_mul(MIB),
            host_fences: h.host_fences,
        }
    }

    /// The types as the mediator's [`mediator::vtypes::VgpuType`]s. The scheduler weight
    /// grows with the low GM as GVT's types do (64 MiB → 2 … 512 MiB → 16).
    pub fn mediator_types(&self) -> Vec<mediator::vtypes::VgpuType> {
        self.types
            .iter()
            .map(|t| mediator::vtypes::VgpuType {
                name: t.name.clone(),
                low_gm: t.low_gm_mib.saturating_mul(MIB),
                high_gm: t.high_gm_mib.saturating_mul(MIB),
                fences: t.fences,
                weight: u32::try_from((t.low_gm_mib / 32).clamp(1, 64)).unwrap_or(1),
            })
            .collect()
    }

    /// Type names in table order.
    pub fn type_names(&self) -> Vec<String> {
        self.types.iter().map(|t| t.name.clone()).collect()
    }

    /// Looks a type up by name.
    pub fn find_type(&self, name: &str) -> Option<&VgpuType> {
        self.types.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_takes_a_number_or_a_hex_string() {
        let id = |v: &str| {
            DaemonConfig::from_json(&format!(r#"{{"host": {{"device_id": {v}}}}}"#), "t")
                .map(|c| c.host.device_id)
        };
        assert_eq!(id("6418").unwrap(), 0x1912);
        assert_eq!(id(r#""0x1912""#).unwrap(), 0x1912);
        assert_eq!(id(r#""0X191b""#).unwrap(), 0x191b);
        for bad in [r#""1912""#, r#""0xzz""#, "65536", "-1", r#""0x10000""#] {
            let e = id(bad).unwrap_err().to_string();
            assert!(e.contains("device_id"), "{bad}: {e}");
        }
    }

    /// The cause is in the message once: errors carry it in `Display` and return no
    /// `source()`, so an `anyhow` chain printed with `{:#}` does not repeat it.
    #[test]
    fn a_missing_file_names_its_cause_once() {
        let e = DaemonConfig::load(Path::new("/nonexistent/xengtd.json")).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(e).context("loading the config"));
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(text.contains("/nonexistent/xengtd.json"), "{text}");
    }

    #[test]
    fn empty_object_is_the_default() {
        let c = DaemonConfig::from_json("{}", "t").unwrap();
        assert_eq!(c, DaemonConfig::default());
        assert_eq!(c.types.len(), 4);
    }

    #[test]
    fn example_file_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/xengtd.json");
        let c = DaemonConfig::load(&p).unwrap();
        assert!(c.find_type(&c.default_type).is_some());
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = DaemonConfig::from_json("{\n \"hostx\": 1}", "f.json").unwrap_err();
        assert!(e.to_string().starts_with("f.json:2:"), "{e}");
        let e = DaemonConfig::from_json(r#"{"default_type":"nope"}"#, "f").unwrap_err();
        assert!(e.to_string().contains("GVTg_V5_8"), "{e}");
        let e = DaemonConfig::from_json(r#"{"host":{"aperture_mib":0}}"#, "f").unwrap_err();
        assert!(e.to_string().contains("aperture_mib"), "{e}");
        // The mediator's partitioner rules apply too (power-of-two aperture).
        let e = DaemonConfig::from_json(r#"{"host":{"aperture_mib":768}}"#, "f").unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        let dup = r#"{"types":[{"name":"a","low_gm_mib":1,"high_gm_mib":1,"fences":0},
                               {"name":"a","low_gm_mib":1,"high_gm_mib":1,"fences":0}],
                     "default_type":"a"}"#;
        assert!(DaemonConfig::from_json(dup, "f").is_err());
    }
}
