//! The set of vGPUs on one host: creation by type or custom size, destruction, lookup.
//!
//! [`VgpuManager`] owns the [`Partitioner`]; creating a vGPU allocates its windows and
//! fences, destroying it returns them, and [`VgpuManager::types`] reports how many more
//! instances of each type still fit.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::memory::GuestMemory;
use crate::partition::{Allocation, HostDescription, PartitionError, Partitioner};
use crate::vgpu::{Vgpu, VgpuConfig, DEFAULT_SBDF};
use crate::vtypes::{self, TypeInfo, VgpuType, VtypeError};

/// Most vGPUs one manager holds.
pub const MAX_VGPUS: usize = 64;

/// A vGPU's identity (also its PVINFO `vgt_id`, ≥ 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VgpuId(pub u32);

/// Why a manager operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManagerError {
    /// The type name or custom size is invalid.
    #[error(transparent)]
    Type(#[from] VtypeError),
    /// The host has no room left (names the exhausted resource).
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// The manager already holds the maximum number of vGPUs.
    #[error("too many vGPUs: the limit is {limit}")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// No vGPU with that id.
    #[error("no vGPU with id {0:?}")]
    NotFound(VgpuId),
}

/// The size of a vGPU to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SizeRequest {
    /// One of the manager's types, by name.
    Type(String),
    /// Custom sizes, validated against the host ([`vtypes::custom`]).
    Custom {
        /// Low (mappable) GM in MiB.
        low_mib: u64,
        /// High GM in MiB.
        high_mib: u64,
        /// Fence registers.
        fences: u32,
    },
}

/// Everything needed to create a vGPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// Its size.
    pub size: SizeRequest,
    /// The PCI SBDF the guest sees (default 00:02.0).
    pub sbdf: u32,
    /// Headless (all pipes fused off) or with display.
    pub headless: bool,
    /// GGTT PTE window trapped (default) or backed by guest RAM ([`crate::ggtt_ram`]).
    #[serde(default)]
    pub ggtt_backing: crate::ggtt_ram::GgttBacking,
}

impl CreateRequest {
    /// A headless vGPU of a named type at 00:02.0.
    pub fn of_type(name: &str) -> Self {
        Self {
            size: SizeRequest::Type(name.to_string()),
            sbdf: DEFAULT_SBDF,
            headless: true,
            ggtt_backing: crate::ggtt_ram::GgttBacking::Trapped,
        }
    }

    /// A headless vGPU of custom size at 00:02.0.
    pub fn custom(low_mib: u64, high_mib: u64, fences: u32) -> Self {
        Self {
            size: SizeRequest::Custom {
                low_mib,
                high_mib,
                fences,
            },
            sbdf: DEFAULT_SBDF,
            headless: true,
            ggtt_backing: crate::ggtt_ram::GgttBacking::Trapped,
        }
    }
}

/// All vGPUs of one host.
#[derive(Debug)]
pub struct VgpuManager {
    partitioner: Partitioner,
    types: Vec<VgpuType>,
    vgpus: BTreeMap<VgpuId, Vgpu>,
}

impl VgpuManager {
    /// A manager for `host` offering `types` (e.g. [`vtypes::builtin_types`]).
    pub fn new(host: HostDescription, types: Vec<VgpuType>) -> Result<Self, ManagerError> {
        Ok(Self {
            partitioner: Partitioner::new(host)?,
            types,
            vgpus: BTreeMap::new(),
        })
    }

    /// The host description.
    pub fn host(&self) -> &HostDescription {
        self.partitioner.host()
    }

    /// Replaces the type table (a reloaded daemon config). Existing vGPUs keep their
    /// placement whatever their type was; only new requests see the new table.
    pub fn set_types(&mut self, types: Vec<VgpuType>) {
        self.types = types;
    }

    /// The types with how many more instances of each fit now.
    pub fn types(&self) -> Vec<TypeInfo> {
        self.types
            .iter()
            .map(|t| TypeInfo {
                ty: t.clone(),
                available_instances: vtypes::available_instances(&self.partitioner, t),
            })
            .collect()
    }

    fn next_id(&self) -> VgpuId {
        // Lowest free id ≥ 1; ids are reused after destroy.
        let mut id = 1u32;
        for k in self.vgpus.keys() {
            if k.0 != id {
                break;
            }
            id += 1;
        }
        VgpuId(id)
    }

    /// Creates a vGPU with guest RAM `mem`; allocates its windows and fences.
    pub fn create(
        &mut self,
        request: &CreateRequest,
        mem: Arc<dyn GuestMemory>,
    ) -> Result<VgpuId, ManagerError> {
        self.create_inner(request, None, mem)
    }

    /// Like [`VgpuManager::create`], but at exactly `at` (a vGPU re-created where its
    /// guest's PVINFO ballooning already put it). `at` must have the request's sizes.
    pub fn create_at(
        &mut self,
        request: &CreateRequest,
        at: &Allocation,
        mem: Arc<dyn GuestMemory>,
    ) -> Result<VgpuId, ManagerError> {
        self.create_inner(request, Some(at), mem)
    }

    fn create_inner(
        &mut self,
        request: &CreateRequest,
        at: Option<&Allocation>,
        mem: Arc<dyn GuestMemory>,
    ) -> Result<VgpuId, ManagerError> {
        if self.vgpus.len() >= MAX_VGPUS {
            return Err(ManagerError::TooMany { limit: MAX_VGPUS });
        }
        let ty = match &request.size {
            SizeRequest::Type(name) => vtypes::find(&self.types, name)?.clone(),
            SizeRequest::Custom {
                low_mib,
                high_mib,
                fences,
            } => vtypes::custom(self.host(), *low_mib, *high_mib, *fences)?,
        };
        let allocation = match at {
            None => self
                .partitioner
                .allocate(ty.low_gm, ty.high_gm, ty.fences)?,
            Some(a) => {
                if (a.low.size, a.high.size, a.fences.count) != (ty.low_gm, ty.high_gm, ty.fences) {
                    return Err(PartitionError::NotAllocated(*a).into());
                }
                self.partitioner.reserve(a)?;
                *a
            }
        };
        let id = self.next_id();
        let mut config = VgpuConfig::new(id.0, &ty.name, allocation, ty.weight);
        config.device_id = self.host().device_id;
        config.sbdf = request.sbdf;
        config.headless = request.headless;
        config.ggtt_backing = request.ggtt_backing;
        let vgpu = Vgpu::new(config, self.partitioner.host(), mem);
        tracing::info!(id = id.0, ty = %ty.name, ?allocation, "vGPU created");
        self.vgpus.insert(id, vgpu);
        Ok(id)
    }

    /// Destroys a vGPU and returns its resources; gives back the device for final
    /// teardown (untrapping is the backend's job).
    pub fn destroy(&mut self, id: VgpuId) -> Result<Vgpu, ManagerError> {
        let vgpu = self.vgpus.remove(&id).ok_or(ManagerError::NotFound(id))?;
        self.partitioner.release(&vgpu.config().allocation)?;
        tracing::info!(id = id.0, "vGPU destroyed");
        Ok(vgpu)
    }

    /// A vGPU by id.
    pub fn get(&self, id: VgpuId) -> Option<&Vgpu> {
        self.vgpus.get(&id)
    }

    /// A vGPU by id, mutably.
    pub fn get_mut(&mut self, id: VgpuId) -> Option<&mut Vgpu> {
        self.vgpus.get_mut(&id)
    }

    /// Ids of all vGPUs, ascending.
    pub fn list(&self) -> Vec<VgpuId> {
        self.vgpus.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use crate::partition::MIB;

    fn mem() -> Arc<dyn GuestMemory> {
        Arc::new(VecMemory::new(MIB))
    }

    fn avail(m: &VgpuManager, name: &str) -> u32 {
        m.types()
            .into_iter()
            .find(|t| t.ty.name == name)
            .map(|t| t.available_instances)
            .unwrap()
    }

    #[test]
    fn available_instances_drop_and_recover() {
        let mut m = VgpuManager::new(HostDescription::default(), vtypes::builtin_types()).unwrap();
        let before = avail(&m, "GVTg_V5_4");
        assert_eq!(before, 3);
        let a = m
            .create(&CreateRequest::of_type("GVTg_V5_4"), mem())
            .unwrap();
        assert_eq!(avail(&m, "GVTg_V5_4"), before - 1);
        assert_eq!(avail(&m, "GVTg_V5_8"), 4);
        let b = m.create(&CreateRequest::custom(64, 384, 4), mem()).unwrap();
        assert_eq!(m.list(), vec![a, b]);
        assert_eq!(m.get(b).unwrap().config().id, 2);
        m.destroy(a).unwrap();
        m.destroy(b).unwrap();
        assert_eq!(avail(&m, "GVTg_V5_4"), before);
        assert_eq!(m.destroy(a).unwrap_err(), ManagerError::NotFound(a));
        assert!(m.list().is_empty());
    }

    #[test]
    fn create_at_reuses_an_exact_placement_or_names_the_clash() {
        let mut m = VgpuManager::new(HostDescription::default(), vtypes::builtin_types()).unwrap();
        let req = CreateRequest::of_type("GVTg_V5_4");
        let a = m.create(&req, mem()).unwrap();
        let at = m.get(a).unwrap().config().allocation;
        // Taken: refused, nothing leaked.
        let before = avail(&m, "GVTg_V5_8");
        assert!(matches!(
            m.create_at(&req, &at, mem()),
            Err(ManagerError::Partition(PartitionError::LowExhausted { .. }))
        ));
        assert_eq!(avail(&m, "GVTg_V5_8"), before);
        m.destroy(a).unwrap();
        let b = m.create_at(&req, &at, mem()).unwrap();
        assert_eq!(m.get(b).unwrap().config().allocation, at);
        // Sizes that do not match the type are refused.
        m.destroy(b).unwrap();
        let small = CreateRequest::of_type("GVTg_V5_8");
        assert!(m.create_at(&small, &at, mem()).is_err());
        assert_eq!(avail(&m, "GVTg_V5_4"), 3);
    }

    #[test]
    fn errors_name_the_limit() {
        let mut m = VgpuManager::new(HostDescription::default(), vtypes::builtin_types()).unwrap();
        assert!(matches!(
            m.create(&CreateRequest::of_type("GVTg_V5_1"), mem()),
            Err(ManagerError::Partition(PartitionError::LowExhausted { .. }))
        ));
        assert!(matches!(
            m.create(&CreateRequest::of_type("bogus"), mem()),
            Err(ManagerError::Type(VtypeError::UnknownType { .. }))
        ));
        let e = m
            .create(&CreateRequest::custom(8, 32, 99), mem())
            .unwrap_err();
        assert!(e.to_string().contains("0..=28"), "{e}");
        // 384 MiB of low GM: 48 windows of 8 MiB.
        let mut n = 0;
        while m.create(&CreateRequest::custom(8, 32, 0), mem()).is_ok() {
            n += 1;
        }
        assert_eq!(n, 48);
        assert!(matches!(
            m.create(&CreateRequest::custom(8, 32, 0), mem()),
            Err(ManagerError::Partition(PartitionError::LowExhausted { .. }))
        ));
        let big = HostDescription {
            aperture_size: 1 << 30,
            ..HostDescription::default()
        };
        let mut m = VgpuManager::new(big, vtypes::builtin_types()).unwrap();
        for _ in 0..MAX_VGPUS {
            m.create(&CreateRequest::custom(8, 32, 0), mem()).unwrap();
        }
        assert_eq!(
            m.create(&CreateRequest::custom(8, 32, 0), mem()),
            Err(ManagerError::TooMany { limit: MAX_VGPUS })
        );
    }
}
