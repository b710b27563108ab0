//! vGPU types: GVT-g's four sizes plus validated custom sizes (spec §3.3).
//!
//! | Name | Low GM | High GM | Fences | Weight |
//! |---|---|---|---|---|
//! | `GVTg_V5_8` | 64 MiB | 384 MiB | 4 | 2 |
//! | `GVTg_V5_4` | 128 MiB | 512 MiB | 4 | 4 |
//! | `GVTg_V5_2` | 256 MiB | 1024 MiB | 4 | 8 |
//! | `GVTg_V5_1` | 512 MiB | 2048 MiB | 4 | 16 |
//!
//! The suffix is GVT's "instances per GPU" hint (`GVTg_V5_n`); the real count on a given
//! host is [`available_instances`], computed from what the partitioner has left.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::partition::{HostDescription, Partitioner, MIB};

/// Granule of custom window sizes.
pub const SIZE_STEP_MIB: u64 = 4;
/// Smallest custom low (mappable) window: room for a framebuffer.
pub const MIN_LOW_MIB: u64 = 8;
/// Smallest custom high window: rings, contexts and status pages live there.
pub const MIN_HIGH_MIB: u64 = 32;

/// Why a type name or custom size was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VtypeError {
    /// No type of that name.
    #[error("unknown vGPU type {name:?}; known types: {known:?}")]
    UnknownType {
        /// The requested name.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// Low GM size out of range or not a multiple of the step.
    #[error("low GM {value} MiB invalid: allowed {min}..={max} MiB in steps of {step} MiB")]
    LowSize {
        /// Requested MiB.
        value: u64,
        /// Minimum MiB.
        min: u64,
        /// Maximum MiB (the host's low pool).
        max: u64,
        /// Step in MiB.
        step: u64,
    },
    /// High GM size out of range or not a multiple of the step.
    #[error("high GM {value} MiB invalid: allowed {min}..={max} MiB in steps of {step} MiB")]
    HighSize {
        /// Requested MiB.
        value: u64,
        /// Minimum MiB.
        min: u64,
        /// Maximum MiB (the host's high pool).
        max: u64,
        /// Step in MiB.
        step: u64,
    },
    /// More fences than the host has for vGPUs.
    #[error("{value} fences invalid: allowed 0..={max}")]
    Fences {
        /// Requested fences.
        value: u32,
        /// Maximum.
        max: u32,
    },
}

/// One vGPU shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuType {
    /// Name used by the operator.
    pub name: String,
    /// Low (mappable) GM in bytes.
    pub low_gm: u64,
    /// High (non-mappable) GM in bytes.
    pub high_gm: u64,
    /// Fence registers.
    pub fences: u32,
    /// Scheduler weight.
    pub weight: u32,
}

/// A type with the number of instances that could still be created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    /// The type.
    #[serde(flatten)]
    pub ty: VgpuType,
    /// How many more vGPUs of this type fit now.
    pub available_instances: u32,
}

/// GVT-g's four types.
pub fn builtin_types() -> Vec<VgpuType> {
    [
        (8, 64, 384, 2),
        (4, 128, 512, 4),
        (2, 256, 1024, 8),
        (1, 512, 2048, 16),
    ]
    .into_iter()
    .map(|(n, low, high, weight)| VgpuType {
        name: format!("GVTg_V5_{n}"),
        low_gm: low * MIB,
        high_gm: high * MIB,
        fences: 4,
        weight,
    })
    .collect()
}

/// Finds a type by name.
pub fn find<'a>(types: &'a [VgpuType], name: &str) -> Result<&'a VgpuType, VtypeError> {
    types
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| VtypeError::UnknownType {
            name: name.to_string(),
            known: types.iter().map(|t| t.name.clone()).collect(),
        })
}

/// Validates a custom size against the host and returns it as a type named `custom`.
/// The weight is proportional to the low GM (64 MiB → 2), clamped to 1..=16.
pub fn custom(
    host: &HostDescription,
    low_mib: u64,
    high_mib: u64,
    fences: u32,
) -> Result<VgpuType, VtypeError> {
    let (ls, le) = host.low_pool();
    let (hs, he) = host.high_pool();
    let (fs, fe) = host.fence_pool();
    let low_max = (le - ls) / MIB;
    let high_max = he.saturating_sub(hs) / MIB;
    let fence_max = u32::try_from(fe - fs).unwrap_or(0);
    if low_mib < MIN_LOW_MIB || low_mib > low_max || low_mib % SIZE_STEP_MIB != 0 {
        return Err(VtypeError::LowSize {
            value: low_mib,
            min: MIN_LOW_MIB,
            max: low_max,
            step: SIZE_STEP_MIB,
        });
    }
    if high_mib < MIN_HIGH_MIB || high_mib > high_max || high_mib % SIZE_STEP_MIB != 0 {
        return Err(VtypeError::HighSize {
            value: high_mib,
            min: MIN_HIGH_MIB,
            max: high_max,
            step: SIZE_STEP_MIB,
        });
    }
    if fences > fence_max {
        return Err(VtypeError::Fences {
            value: fences,
            max: fence_max,
        });
    }
    let weight = u32::try_from((low_mib / 32).clamp(1, 16)).unwrap_or(1);
    Ok(VgpuType {
        name: "custom".to_string(),
        low_gm: low_mib * MIB,
        high_gm: high_mib * MIB,
        fences,
        weight,
    })
}

/// How many more vGPUs of `ty` the partitioner can hand out now.
pub fn available_instances(p: &Partitioner, ty: &VgpuType) -> u32 {
    p.count_fit(ty.low_gm, ty.high_gm, ty.fences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_counts_on_default_host() {
        let p = Partitioner::new(HostDescription::default()).unwrap();
        let counts: Vec<u32> = builtin_types()
            .iter()
            .map(|t| available_instances(&p, t))
            .collect();
        // 384 MiB of low GM and 28 fences for vGPUs.
        assert_eq!(counts, vec![6, 3, 1, 0]);
    }

    #[test]
    fn custom_sizes_name_the_limit() {
        let h = HostDescription::default();
        assert!(custom(&h, 64, 384, 4).is_ok());
        assert_eq!(
            custom(&h, 6, 384, 4),
            Err(VtypeError::LowSize {
                value: 6,
                min: 8,
                max: 384,
                step: 4
            })
        );
        assert!(matches!(
            custom(&h, 64, 4000, 4),
            Err(VtypeError::HighSize { max: 3200, .. })
        ));
        assert!(matches!(
            custom(&h, 64, 66, 4),
            Err(VtypeError::HighSize { .. })
        ));
        assert_eq!(
            custom(&h, 64, 384, 29),
            Err(VtypeError::Fences { value: 29, max: 28 })
        );
        let e = find(&builtin_types(), "nope").unwrap_err();
        assert!(e.to_string().contains("GVTg_V5_4"));
    }
}
