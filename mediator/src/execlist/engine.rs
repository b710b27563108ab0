//! The Gen9 GT2 engines, their MMIO bases and interrupt positions (spec §5.1, §5.9).

use serde::{Deserialize, Serialize};

/// One command streamer of a GT2 part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EngineId {
    /// Render (RCS0), base 02000.
    Rcs,
    /// Blitter (BCS0), base 22000.
    Bcs,
    /// Video decode (VCS0), base 12000.
    Vcs0,
    /// Video enhancement (VECS0), base 1A000.
    Vecs,
}

impl EngineId {
    /// Every engine, in index order.
    pub const ALL: [EngineId; 4] = [EngineId::Rcs, EngineId::Bcs, EngineId::Vcs0, EngineId::Vecs];

    /// MMIO base of the engine's registers.
    pub fn base(self) -> u32 {
        match self {
            EngineId::Rcs => 0x02000,
            EngineId::Bcs => 0x22000,
            EngineId::Vcs0 => 0x12000,
            EngineId::Vecs => 0x1A000,
        }
    }

    /// Dense index 0..4 (ALL order).
    pub fn index(self) -> usize {
        match self {
            EngineId::Rcs => 0,
            EngineId::Bcs => 1,
            EngineId::Vcs0 => 2,
            EngineId::Vecs => 3,
        }
    }

    /// The engine with dense index `i`.
    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    /// GT interrupt bank (0..=3) holding this engine's bits.
    pub fn gt_bank(self) -> u8 {
        match self {
            EngineId::Rcs | EngineId::Bcs => 0,
            EngineId::Vcs0 => 1,
            EngineId::Vecs => 3,
        }
    }

    /// Shift of the engine's 16-bit field inside its GT bank.
    pub fn irq_shift(self) -> u8 {
        match self {
            EngineId::Bcs => 16,
            _ => 0,
        }
    }

    /// Splits an MMIO offset into (engine, offset from its base) if it falls in one of the
    /// 4 KiB engine register blocks.
    pub fn from_mmio(offset: u32) -> Option<(Self, u32)> {
        Self::ALL.into_iter().find_map(|e| {
            offset
                .checked_sub(e.base())
                .filter(|rel| *rel < 0x1000)
                .map(|rel| (e, rel))
        })
    }

    /// Short name, as i915 prints it.
    pub fn name(self) -> &'static str {
        match self {
            EngineId::Rcs => "rcs0",
            EngineId::Bcs => "bcs0",
            EngineId::Vcs0 => "vcs0",
            EngineId::Vecs => "vecs0",
        }
    }
}

/// An engine interrupt event (spec §3.8 per-engine bit positions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IrqKind {
    /// MI_USER_INTERRUPT, bit 0.
    User,
    /// Command-streamer master error, bit 3.
    CsError,
    /// PIPE_CONTROL notify (RCS) / MI_FLUSH_DW notify (others), bit 4.
    FlushNotify,
    /// Context switch (new CSB entries), bit 8.
    ContextSwitch,
}

impl IrqKind {
    /// Bit position inside the engine's 16-bit field.
    pub fn bit(self) -> u8 {
        match self {
            IrqKind::User => 0,
            IrqKind::CsError => 3,
            IrqKind::FlushNotify => 4,
            IrqKind::ContextSwitch => 8,
        }
    }
}

/// One interrupt event to raise in the virtual interrupt tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GtIrq {
    /// Engine that raised it.
    pub engine: EngineId,
    /// What happened.
    pub kind: IrqKind,
}

impl GtIrq {
    /// GT bank index (0..=3): the bank at 44300 + 10·bank.
    pub fn bank(self) -> u8 {
        self.engine.gt_bank()
    }

    /// Bit inside the bank's 32-bit IIR/IMR/IER.
    pub fn bit(self) -> u8 {
        self.engine.irq_shift() + self.kind.bit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_bits_match_spec_5_9() {
        let b = |engine, kind| {
            let i = GtIrq { engine, kind };
            (i.bank(), i.bit())
        };
        assert_eq!(b(EngineId::Rcs, IrqKind::ContextSwitch), (0, 8));
        assert_eq!(b(EngineId::Bcs, IrqKind::ContextSwitch), (0, 24));
        assert_eq!(b(EngineId::Bcs, IrqKind::User), (0, 16));
        assert_eq!(b(EngineId::Bcs, IrqKind::FlushNotify), (0, 20));
        assert_eq!(b(EngineId::Vcs0, IrqKind::User), (1, 0));
        assert_eq!(b(EngineId::Vecs, IrqKind::ContextSwitch), (3, 8));
        assert_eq!(b(EngineId::Rcs, IrqKind::CsError), (0, 3));
    }

    #[test]
    fn mmio_offsets_resolve_to_engines() {
        assert_eq!(EngineId::from_mmio(0x2230), Some((EngineId::Rcs, 0x230)));
        assert_eq!(EngineId::from_mmio(0x22370), Some((EngineId::Bcs, 0x370)));
        assert_eq!(EngineId::from_mmio(0x1A3A0), Some((EngineId::Vecs, 0x3A0)));
        assert_eq!(EngineId::from_mmio(0x3000), None);
        assert_eq!(EngineId::from_mmio(0x1C230), None);
        for e in EngineId::ALL {
            assert_eq!(EngineId::from_index(e.index()), Some(e));
        }
    }
}
