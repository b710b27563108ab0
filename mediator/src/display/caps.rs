//! What display a vGPU type offers, discoverable without creating a vGPU (the CLI prints it
//! in `types --json`).
//!
//! # Policy
//!
//! * A type whose name ends in `headless` (any case) has no display: SKL_DFSM fuses every
//!   pipe off (§3.5) and no plane interface is offered.
//! * Otherwise the vGPU has one DisplayPort monitor on DDI D (§7.5). Its default mode is
//!   GVT's: 1024×768 at 60 Hz when the type's mappable (low) graphics memory is below
//!   128 MiB, else 1920×1200 at 60 Hz.
//! * The largest mode offered is the biggest of [`CANDIDATE_MODES`] whose 32-bpp
//!   framebuffer, double-buffered, fits in half the low graphics memory (the other half is
//!   left for everything else the guest maps), and never smaller than the default mode.
//! * Plane interfaces: [`PlaneInterface::Region`] only. The model decodes the plane and
//!   copies it out of guest RAM ([`super::fb`]); there is no host GPU whose buffers could be
//!   exported as dmabufs, so [`PlaneInterface::Dmabuf`] is never offered here.

use serde::{Deserialize, Serialize};

use super::monitor::MonitorConfig;

/// Modes considered for the maximum, smallest first.
pub const CANDIDATE_MODES: [(u32, u32); 5] = [
    (1024, 768),
    (1920, 1200),
    (2560, 1600),
    (3840, 2160),
    (4096, 2304),
];

const MIB: u64 = 1 << 20;

/// How a consumer can get at the guest's framebuffer (VFIO's `VFIO_GFX_PLANE_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaneInterface {
    /// The plane is copied into a buffer (region) the consumer reads.
    Region,
    /// The plane is exported as a dmabuf.
    Dmabuf,
}

/// A display output of a vGPU type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCaps {
    /// DDI port letter.
    pub port: char,
    /// Connector kind.
    pub kind: String,
    /// The monitor attached at creation.
    pub default_monitor: MonitorConfig,
}

/// The display capabilities of a vGPU type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayCaps {
    /// Whether the type has display pipes at all.
    pub has_display: bool,
    /// How the framebuffer can be consumed.
    pub plane_interfaces: Vec<PlaneInterface>,
    /// Largest monitor width offered.
    pub max_width: u32,
    /// Largest monitor height offered.
    pub max_height: u32,
    /// Outputs.
    pub ports: Vec<PortCaps>,
}

impl DisplayCaps {
    /// Capabilities of type `name` with `low_gm_bytes` of mappable graphics memory.
    pub fn for_type(name: &str, low_gm_bytes: u64) -> Self {
        if name.to_ascii_lowercase().ends_with("headless") {
            return Self {
                has_display: false,
                plane_interfaces: Vec::new(),
                max_width: 0,
                max_height: 0,
                ports: Vec::new(),
            };
        }
        let default_monitor = default_monitor(low_gm_bytes);
        let budget = low_gm_bytes / 2;
        let (max_width, max_height) = CANDIDATE_MODES
            .iter()
            .copied()
            .filter(|&(w, h)| u64::from(w) * u64::from(h) * 4 * 2 <= budget)
            .chain([(default_monitor.width, default_monitor.height)])
            .max_by_key(|&(w, h)| u64::from(w) * u64::from(h))
            .unwrap_or((default_monitor.width, default_monitor.height));
        Self {
            has_display: true,
            plane_interfaces: vec![PlaneInterface::Region],
            max_width,
            max_height,
            ports: vec![PortCaps {
                port: 'D',
                kind: "DisplayPort".to_string(),
                default_monitor,
            }],
        }
    }

    /// Capabilities of one of GVT's Gen9 types by name (`"8"`, `"4"`, `"2"`, `"1"`, or
    /// `"GVTg_V5_8"` style), using its low GM size (§3.3); `None` for an
    /// unknown name. For any other type (e.g. a custom size) use [`DisplayCaps::for_type`]
    /// with its low GM size.
    pub fn for_gvt_type(name: &str) -> Option<Self> {
        let low_gm = gvt_low_gm(name)?;
        Some(Self::for_type(name, low_gm))
    }
}

/// The monitor a type gets by default (see the module policy).
pub fn default_monitor(low_gm_bytes: u64) -> MonitorConfig {
    if low_gm_bytes < 128 * MIB {
        MonitorConfig::XGA
    } else {
        MonitorConfig::default()
    }
}

/// Low (mappable) graphics memory of GVT's Gen9 types (§3.3).
pub fn gvt_low_gm(name: &str) -> Option<u64> {
    let n = name.strip_prefix("GVTg_V5_").unwrap_or(name);
    let n = n.strip_suffix("_headless").unwrap_or(n);
    Some(match n {
        "8" => 64 * MIB,
        "4" => 128 * MIB,
        "2" => 256 * MIB,
        "1" => 512 * MIB,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvt_types_follow_the_policy() {
        let t8 = DisplayCaps::for_gvt_type("GVTg_V5_8").unwrap();
        assert!(t8.has_display);
        assert_eq!(t8.ports[0].default_monitor, MonitorConfig::XGA);
        assert_eq!((t8.max_width, t8.max_height), (2560, 1600));
        let t4 = DisplayCaps::for_gvt_type("4").unwrap();
        assert_eq!(t4.ports[0].default_monitor, MonitorConfig::default());
        assert_eq!((t4.max_width, t4.max_height), (3840, 2160));
        let t1 = DisplayCaps::for_gvt_type("1").unwrap();
        assert_eq!((t1.max_width, t1.max_height), (4096, 2304));
        assert_eq!(t1.plane_interfaces, vec![PlaneInterface::Region]);
        assert!(DisplayCaps::for_gvt_type("banana").is_none());
        assert_eq!(DisplayCaps::for_gvt_type("GVTg_V5_4"), Some(t4));
    }

    #[test]
    fn headless_and_tiny_types() {
        let h = DisplayCaps::for_gvt_type("GVTg_V5_4_headless").unwrap();
        assert!(!h.has_display && h.plane_interfaces.is_empty() && h.ports.is_empty());
        let tiny = DisplayCaps::for_type("x", 4 * MIB);
        assert_eq!(
            (tiny.max_width, tiny.max_height),
            (1024, 768),
            "never below default"
        );
    }

    #[test]
    fn serialises_for_the_cli() {
        let j = serde_json::to_value(DisplayCaps::for_gvt_type("2").unwrap()).unwrap();
        assert_eq!(j["plane_interfaces"], serde_json::json!(["region"]));
        assert_eq!(j["ports"][0]["port"], "D");
        assert_eq!(j["ports"][0]["default_monitor"]["width"], 1920);
    }
}
