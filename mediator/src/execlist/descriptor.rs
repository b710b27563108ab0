//! Context descriptors and the four-write ELSP protocol (spec §5.3, §5.4).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// PPGTT addressing mode, descriptor bits 4:3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressingMode {
    /// 0: advanced (SVM) context; not supported by GVT.
    Advanced,
    /// 1: legacy 32-bit, 3-level PPGTT with four PDPs.
    Legacy32,
    /// 2: advanced 64-bit (SVM); not supported.
    Advanced64,
    /// 3: legacy 64-bit, 4-level PPGTT (what Gen9 i915 uses).
    Legacy64,
}

/// A 64-bit execlist context descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContextDescriptor(pub u64);

impl std::fmt::Debug for ContextDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContextDescriptor({:#018x})", self.0)
    }
}

impl ContextDescriptor {
    /// Bit 0: the element is valid.
    pub fn valid(self) -> bool {
        self.0 & 1 != 0
    }

    /// Bit 1: force page-directory restore.
    pub fn force_pd_restore(self) -> bool {
        self.0 & 0x2 != 0
    }

    /// Bit 2: force restore (reload head and tail from the image).
    pub fn force_restore(self) -> bool {
        self.0 & 0x4 != 0
    }

    /// Bits 4:3: addressing mode.
    pub fn addressing_mode(self) -> AddressingMode {
        match (self.0 >> 3) & 3 {
            0 => AddressingMode::Advanced,
            1 => AddressingMode::Legacy32,
            2 => AddressingMode::Advanced64,
            _ => AddressingMode::Legacy64,
        }
    }

    /// Bit 8: PPGTT enable ("privilege access").
    pub fn ppgtt(self) -> bool {
        self.0 & 0x100 != 0
    }

    /// Bits 31:12: GGTT address of the context image.
    pub fn lrca(self) -> u32 {
        super::lo32(self.0) & 0xFFFF_F000
    }

    /// Bits 63:32: the context id reported back in CSB entries.
    pub fn context_id(self) -> u32 {
        super::hi32(self.0)
    }
}

/// Why an ELSP submission was refused (GVT's validation order, spec §5.3).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ElspError {
    /// Element 0 lacks the valid bit.
    #[error("element 0 of the ELSP pair is not valid")]
    Element0Invalid,
    /// A valid element has bit 8 (PPGTT) clear: "unexpected GGTT elsp submission".
    #[error("valid descriptor {0:#x} has the PPGTT bit clear")]
    GgttSubmission(u64),
    /// A valid element uses an advanced (SVM) addressing mode.
    #[error("descriptor {0:#x} uses an unsupported addressing mode")]
    AddressingMode(u64),
    /// Execlists are not enabled on the engine (RING_MODE bit 15 clear).
    #[error("ELSP written while execlists are disabled")]
    NotEnabled,
    /// A pending pair already exists; hardware has only two queues.
    #[error("ELSP queue overflow: a pending pair already exists")]
    QueueFull,
}

/// A validated pair of descriptors: element 0 always valid, element 1 optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElspPair {
    /// Element 0, executed first.
    pub elem0: ContextDescriptor,
    /// Element 1, if valid.
    pub elem1: Option<ContextDescriptor>,
}

impl ElspPair {
    /// Validates two raw descriptors as GVT does.
    pub fn validate(desc0: u64, desc1: u64) -> Result<Self, ElspError> {
        let d0 = ContextDescriptor(desc0);
        let d1 = ContextDescriptor(desc1);
        if !d0.valid() {
            return Err(ElspError::Element0Invalid);
        }
        for d in [d0, d1].into_iter().filter(|d| d.valid()) {
            if !d.ppgtt() {
                return Err(ElspError::GgttSubmission(d.0));
            }
            if !matches!(
                d.addressing_mode(),
                AddressingMode::Legacy32 | AddressingMode::Legacy64
            ) {
                return Err(ElspError::AddressingMode(d.0));
            }
        }
        Ok(Self {
            elem0: d0,
            elem1: d1.valid().then_some(d1),
        })
    }

    /// The valid elements in execution order.
    pub fn elements(&self) -> impl Iterator<Item = ContextDescriptor> {
        std::iter::once(self.elem0).chain(self.elem1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_i915_boot_descriptor() {
        // From the nested trace: ctx0 hi 0x20, lo 0x41fe651d.
        let d = ContextDescriptor(0x20_41fe_651d);
        assert!(d.valid());
        assert!(d.force_restore());
        assert!(!d.force_pd_restore());
        assert_eq!(d.addressing_mode(), AddressingMode::Legacy64);
        assert!(d.ppgtt());
        assert_eq!(d.lrca(), 0x41fe_6000);
        assert_eq!(d.context_id(), 0x20);
    }

    #[test]
    fn validation_follows_gvt_order() {
        assert_eq!(
            ElspPair::validate(0, 0x119),
            Err(ElspError::Element0Invalid)
        );
        assert_eq!(
            ElspPair::validate(0x19, 0),
            Err(ElspError::GgttSubmission(0x19))
        );
        assert_eq!(
            ElspPair::validate(0x119, 0x1001),
            Err(ElspError::GgttSubmission(0x1001))
        );
        assert_eq!(
            ElspPair::validate(0x101, 0),
            Err(ElspError::AddressingMode(0x101))
        );
        let p = ElspPair::validate(0x1119, 0x2119).unwrap();
        assert_eq!(p.elements().count(), 2);
        let p = ElspPair::validate(0x1109, 0).unwrap();
        assert_eq!(p.elem0.addressing_mode(), AddressingMode::Legacy32);
        assert_eq!(p.elem1, None);
    }
}
