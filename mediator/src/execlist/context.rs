//! The logical ring context image (spec §5.5): the register-state page at LRCA + 4096,
//! read through the guest GGTT into a copy, then decoded.

use thiserror::Error;

use crate::memory::{GuestMemory, PAGE_SIZE};

use super::GgttLookup;

/// Dword indices inside the register-state page (spec §5.5 table).
mod dw {
    pub const CTX_CONTROL: usize = 0x03;
    pub const RING_HEAD: usize = 0x05;
    pub const RING_TAIL: usize = 0x07;
    pub const RING_START: usize = 0x09;
    pub const RING_CTL: usize = 0x0B;
    pub const BB_PER_CTX_PTR: usize = 0x19;
    pub const INDIRECT_CTX: usize = 0x1B;
    pub const CTX_TIMESTAMP: usize = 0x23;
    /// PDP3 UDW value; PDPn UDW at 0x25 + 4·(3 − n), LDW two dwords later.
    pub const PDP3_UDW: usize = 0x25;
    /// Dwords copied: everything up to and including PDP0_LDW's value (0x33).
    pub const COPIED: usize = 0x34;
}

/// Why a context image could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ContextError {
    /// LRCA + 4096 does not translate through the guest GGTT.
    #[error("context register page at GGTT {0:#x} is not mapped")]
    Unmapped(u64),
    /// Guest memory refused the copy.
    #[error("context register page at GPA {0:#x} is not guest RAM")]
    NotRam(u64),
}

/// Identity of a context for lite-restore detection: equal LRCA and context id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextKey {
    /// GGTT address of the image.
    pub lrca: u32,
    /// Descriptor context id.
    pub ctx_id: u32,
}

/// The values the model needs from a context image at submission, copied once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextImage {
    /// GGTT address of the image (page 0 is the PPHWSP).
    pub lrca: u32,
    /// CONTEXT_CONTROL value (bit 0 restore inhibit).
    pub ctx_control: u32,
    /// RING_HEAD (bits 20:2 offset, bits 31:21 wrap count).
    pub head: u32,
    /// RING_TAIL (bits 20:3 offset).
    pub tail: u32,
    /// RING_START: GGTT address of the ring.
    pub start: u32,
    /// RING_CTL: bit 0 valid, bits 20:12 pages − 1.
    pub ctl: u32,
    /// BB_PER_CTX_PTR (RCS workaround batch).
    pub bb_per_ctx: u32,
    /// INDIRECT_CTX (RCS workaround batch).
    pub indirect_ctx: u32,
    /// CTX_TIMESTAMP.
    pub timestamp: u32,
    /// PDP0..PDP3 as (UDW << 32 | LDW). In 4-level mode PDP0 is the PML4.
    pub pdp: [u64; 4],
}

impl ContextImage {
    /// Copies and decodes the register-state page of the image at `lrca`.
    pub fn read(
        lrca: u32,
        ggtt: &dyn GgttLookup,
        mem: &dyn GuestMemory,
    ) -> Result<Self, ContextError> {
        let gpa = state_page_gpa(lrca, ggtt)?;
        let mut raw = [0u8; dw::COPIED * 4];
        mem.read(gpa, &mut raw)
            .map_err(|_| ContextError::NotRam(gpa))?;
        let d = |i: usize| -> u32 {
            let at = i * 4;
            raw.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .unwrap_or(0)
        };
        let mut pdp = [0u64; 4];
        for (n, p) in pdp.iter_mut().enumerate() {
            let udw = dw::PDP3_UDW + 4 * (3 - n);
            *p = u64::from(d(udw)) << 32 | u64::from(d(udw + 2));
        }
        Ok(Self {
            lrca,
            ctx_control: d(dw::CTX_CONTROL),
            head: d(dw::RING_HEAD),
            tail: d(dw::RING_TAIL),
            start: d(dw::RING_START),
            ctl: d(dw::RING_CTL),
            bb_per_ctx: d(dw::BB_PER_CTX_PTR),
            indirect_ctx: d(dw::INDIRECT_CTX),
            timestamp: d(dw::CTX_TIMESTAMP),
            pdp,
        })
    }

    /// Ring size in bytes: (CTL & 1FF000) + 4096.
    pub fn ring_size(&self) -> u32 {
        (self.ctl & 0x1F_F000) + 4096
    }

    /// Head byte offset inside the ring (bits 20:2).
    pub fn head_offset(&self) -> u32 {
        self.head & 0x1F_FFFC
    }

    /// Tail byte offset inside the ring (bits 20:3).
    pub fn tail_offset(&self) -> u32 {
        self.tail & 0x1F_FFF8
    }

    /// RING_START as a 4 KiB-aligned GGTT address.
    pub fn ring_start(&self) -> u32 {
        self.start & !0xfff
    }

    /// Whether RING_CTL bit 0 (ring valid) is set.
    pub fn ring_valid(&self) -> bool {
        self.ctl & 1 != 0
    }

    /// PML4 address in 4-level mode.
    pub fn pml4(&self) -> u64 {
        self.pdp[0]
    }
}

fn state_page_gpa(lrca: u32, ggtt: &dyn GgttLookup) -> Result<u64, ContextError> {
    let gma = u64::from(lrca & !0xfff) + PAGE_SIZE;
    ggtt.gma_to_gpa(gma).ok_or(ContextError::Unmapped(gma))
}

/// Writes back RING_HEAD (dword 05 of the register-state page) on completion (spec §5.6).
pub fn write_ring_head(
    lrca: u32,
    head: u32,
    ggtt: &dyn GgttLookup,
    mem: &dyn GuestMemory,
) -> Result<(), ContextError> {
    let gpa = state_page_gpa(lrca, ggtt)?;
    let at = gpa + (dw::RING_HEAD as u64) * 4;
    mem.write_u32(at, head)
        .map_err(|_| ContextError::NotRam(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;

    struct Flat;
    impl GgttLookup for Flat {
        fn gma_to_gpa(&self, gma: u64) -> Option<u64> {
            (gma < 0x10_0000).then_some(gma)
        }
    }

    #[test]
    fn reads_ring_registers_and_pml4_from_the_state_page() {
        let mem = VecMemory::new(0x10_0000);
        let page = 0x5000 + 4096;
        let put = |dw: u64, v: u32| mem.write_u32(page + dw * 4, v).unwrap();
        put(0x05, 0x0020_0040);
        put(0x07, 0x88);
        put(0x09, 0x7000);
        put(0x0B, 0x3001);
        put(0x31, 0x1);
        put(0x33, 0x0210_6000);
        put(0x2F, 0x3000); // PDP1_LDW value
        let c = ContextImage::read(0x5000, &Flat, &mem).unwrap();
        assert_eq!(c.head_offset(), 0x40);
        assert_eq!(c.tail_offset(), 0x88);
        assert_eq!(c.ring_start(), 0x7000);
        assert_eq!(c.ring_size(), 0x4000);
        assert!(c.ring_valid());
        assert_eq!(c.pml4(), 0x1_0210_6000);
        assert_eq!(c.pdp[1], 0x3000);
        write_ring_head(0x5000, 0x88, &Flat, &mem).unwrap();
        assert_eq!(ContextImage::read(0x5000, &Flat, &mem).unwrap().head, 0x88);
    }

    #[test]
    fn unmapped_or_non_ram_images_are_errors() {
        let mem = VecMemory::new(0x2000);
        assert!(matches!(
            ContextImage::read(0x20_0000, &Flat, &mem),
            Err(ContextError::Unmapped(_))
        ));
        assert!(matches!(
            ContextImage::read(0x8000, &Flat, &mem),
            Err(ContextError::NotRam(_))
        ));
    }
}
