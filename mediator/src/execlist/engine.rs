//! The Gen9 GT2 engines, their MMIO bases and interrupt positions (spec §5.1, §5.9).

pub use crate::host::EngineId;

/// GT interrupt bank (0..=3) holding `engine`'s bits (spec §5.1).
pub fn gt_bank(engine: EngineId) -> u8 {
    match engine {
        EngineId::Rcs | EngineId::Bcs => 0,
        EngineId::Vcs => 1,
        EngineId::Vecs => 3,
    }
}

/// Shift of `engine`'s 16-bit field inside its GT bank.
pub fn irq_shift(engine: EngineId) -> u8 {
    match engine {
        EngineId::Bcs => 16,
        _ => 0,
    }
}

/// Splits an MMIO offset into (engine, offset from its base) if it falls in one of the
/// 4 KiB engine register blocks.
pub fn engine_from_mmio(offset: u32) -> Option<(EngineId, u32)> {
    EngineId::ALL.into_iter().find_map(|e| {
        offset
            .checked_sub(e.mmio_base())
            .filter(|rel| *rel < 0x1000)
            .map(|rel| (e, rel))
    })
}

/// An engine interrupt event (spec §3.8 per-engine bit positions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GtIrq {
    /// Engine that raised it.
    pub engine: EngineId,
    /// What happened.
    pub kind: IrqKind,
}

impl GtIrq {
    /// GT bank index (0..=3): the bank at 44300 + 10·bank.
    pub fn bank(self) -> u8 {
        gt_bank(self.engine)
    }

    /// Bit inside the bank's 32-bit IIR/IMR/IER.
    pub fn bit(self) -> u8 {
        irq_shift(self.engine) + self.kind.bit()
    }
}

impl From<GtIrq> for crate::irq::IrqEvent {
    fn from(i: GtIrq) -> Self {
        let bank = match i.bank() {
            0 => crate::irq::IrqBank::Gt0,
            1 => crate::irq::IrqBank::Gt1,
            _ => crate::irq::IrqBank::Gt3,
        };
        Self { bank, bit: i.bit() }
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
        assert_eq!(b(EngineId::Vcs, IrqKind::User), (1, 0));
        assert_eq!(b(EngineId::Vecs, IrqKind::ContextSwitch), (3, 8));
        assert_eq!(b(EngineId::Rcs, IrqKind::CsError), (0, 3));
        // Agrees with the interrupt tree's own engine mapping.
        use crate::irq::{EngineIrq, IrqEvent};
        for mine in EngineId::ALL {
            let theirs = mine;
            let ev: IrqEvent = GtIrq {
                engine: mine,
                kind: IrqKind::ContextSwitch,
            }
            .into();
            assert_eq!(ev, IrqEvent::engine(theirs, EngineIrq::ContextSwitch));
            let ev: IrqEvent = GtIrq {
                engine: mine,
                kind: IrqKind::User,
            }
            .into();
            assert_eq!(ev, IrqEvent::engine(theirs, EngineIrq::UserInterrupt));
        }
    }

    #[test]
    fn mmio_offsets_resolve_to_engines() {
        assert_eq!(engine_from_mmio(0x2230), Some((EngineId::Rcs, 0x230)));
        assert_eq!(engine_from_mmio(0x22370), Some((EngineId::Bcs, 0x370)));
        assert_eq!(engine_from_mmio(0x1A3A0), Some((EngineId::Vecs, 0x3A0)));
        assert_eq!(engine_from_mmio(0x3000), None);
        assert_eq!(engine_from_mmio(0x1C230), None);
    }
}
