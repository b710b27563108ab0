//! The virtual interrupt tree (spec §3.8, GVT's model).
//!
//! State lives in the vGPU's [`RegisterFile`] (MASTER_IRQ and each bank's ISR/IMR/IIR/IER),
//! so it is serialised with the registers. Semantics:
//! * raise bit *b* of bank *K*: latched into IIR only if IMR[*b*] = 0;
//! * propagate: a bank's summary bit in MASTER_IRQ is set iff `IIR & IER` (restricted to
//!   the bank's half for GT banks) is non-zero;
//! * deliver: an MSI is due iff MASTER bit 31 is set and any summary bit is set;
//!   re-evaluated after every IIR/IER/IMR/MASTER write (level-triggered behaviour);
//! * IIR is write-1-to-clear; MASTER takes only bit 31 from a write.
//!
//! Whether the MSI is actually sent (MSI capability enabled) is the vGPU's decision:
//! [`raise`] and [`after_write`] only say whether an interrupt is due.

use serde::{Deserialize, Serialize};

use crate::mmio::EngineId;
use crate::regs::{RegKind, RegSpec, RegisterFile};

/// GEN8_MASTER_IRQ.
pub const MASTER_IRQ: u32 = 0x4_4200;
/// MASTER_IRQ global enable.
pub const MASTER_ENABLE: u32 = 1 << 31;

/// Offsets of the four registers inside a bank.
pub mod bank_reg {
    /// Interrupt status (live level; not updated by GVT except SDEISR).
    pub const ISR: u32 = 0x0;
    /// Interrupt mask (1 = masked: not latched).
    pub const IMR: u32 = 0x4;
    /// Interrupt identity (latched, write-1-to-clear).
    pub const IIR: u32 = 0x8;
    /// Interrupt enable (which IIR bits reach MASTER).
    pub const IER: u32 = 0xc;
}

/// An interrupt register bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IrqBank {
    /// GT0: RCS (15:0), BCS (31:16).
    Gt0,
    /// GT1: VCS0 (15:0), VCS1 (31:16).
    Gt1,
    /// GT2: PM/GuC.
    Gt2,
    /// GT3: VECS (15:0).
    Gt3,
    /// DE pipe A.
    DePipeA,
    /// DE pipe B.
    DePipeB,
    /// DE pipe C.
    DePipeC,
    /// DE port (AUX done, …).
    DePort,
    /// DE misc.
    DeMisc,
    /// PCU.
    Pcu,
    /// South display (PCH): SDEISR/IMR/IIR/IER at C4000.
    Sde,
}

impl IrqBank {
    /// Every bank.
    pub const ALL: [IrqBank; 11] = [
        IrqBank::Gt0,
        IrqBank::Gt1,
        IrqBank::Gt2,
        IrqBank::Gt3,
        IrqBank::DePipeA,
        IrqBank::DePipeB,
        IrqBank::DePipeC,
        IrqBank::DePort,
        IrqBank::DeMisc,
        IrqBank::Pcu,
        IrqBank::Sde,
    ];

    /// MMIO offset of the bank's ISR.
    pub const fn base(self) -> u32 {
        match self {
            IrqBank::Gt0 => 0x4_4300,
            IrqBank::Gt1 => 0x4_4310,
            IrqBank::Gt2 => 0x4_4320,
            IrqBank::Gt3 => 0x4_4330,
            IrqBank::DePipeA => 0x4_4400,
            IrqBank::DePipeB => 0x4_4410,
            IrqBank::DePipeC => 0x4_4420,
            IrqBank::DePort => 0x4_4440,
            IrqBank::DeMisc => 0x4_4460,
            IrqBank::Pcu => 0x4_44e0,
            IrqBank::Sde => 0xc_4000,
        }
    }

    /// (IIR bits, MASTER_IRQ summary bit) pairs.
    pub const fn summary(self) -> &'static [(u32, u32)] {
        match self {
            IrqBank::Gt0 => &[(0x0000_ffff, 1 << 0), (0xffff_0000, 1 << 1)],
            IrqBank::Gt1 => &[(0x0000_ffff, 1 << 2), (0xffff_0000, 1 << 3)],
            IrqBank::Gt2 => &[(0x0000_ffff, 1 << 4)],
            IrqBank::Gt3 => &[(0x0000_ffff, 1 << 6)],
            IrqBank::DePipeA => &[(u32::MAX, 1 << 16)],
            IrqBank::DePipeB => &[(u32::MAX, 1 << 17)],
            IrqBank::DePipeC => &[(u32::MAX, 1 << 18)],
            IrqBank::DePort => &[(u32::MAX, 1 << 20)],
            IrqBank::DeMisc => &[(u32::MAX, 1 << 22)],
            IrqBank::Pcu => &[(u32::MAX, 1 << 30)],
            IrqBank::Sde => &[(u32::MAX, 1 << 23)],
        }
    }

    /// The bank whose registers contain `offset`.
    pub fn from_offset(offset: u32) -> Option<IrqBank> {
        IrqBank::ALL
            .into_iter()
            .find(|b| (b.base()..b.base() + 0x10).contains(&offset))
    }
}

/// Per-engine interrupt events (bit positions within the engine's 16-bit field, §3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EngineIrq {
    /// MI_USER_INTERRUPT (bit 0).
    UserInterrupt,
    /// Command-streamer master error (bit 3).
    CsError,
    /// PIPE_CONTROL / MI_FLUSH_DW notify (bit 4).
    Notify,
    /// Context switch: new CSB entries (bit 8).
    ContextSwitch,
    /// Wait on semaphore (bit 11).
    WaitOnSemaphore,
}

impl EngineIrq {
    const fn bit(self) -> u8 {
        match self {
            EngineIrq::UserInterrupt => 0,
            EngineIrq::CsError => 3,
            EngineIrq::Notify => 4,
            EngineIrq::ContextSwitch => 8,
            EngineIrq::WaitOnSemaphore => 11,
        }
    }
}

/// One interrupt source: bit `bit` of `bank`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IrqEvent {
    /// The bank.
    pub bank: IrqBank,
    /// Bit 0..=31 (higher values are ignored).
    pub bit: u8,
}

impl IrqEvent {
    /// The event `what` of engine `e` (§5.9 bit positions).
    pub const fn engine(e: EngineId, what: EngineIrq) -> Self {
        let (bank, shift) = match e {
            EngineId::Rcs => (IrqBank::Gt0, 0),
            EngineId::Bcs => (IrqBank::Gt0, 16),
            EngineId::Vcs => (IrqBank::Gt1, 0),
            EngineId::Vecs => (IrqBank::Gt3, 0),
        };
        Self {
            bank,
            bit: what.bit() + shift,
        }
    }

    /// DE pipe vblank (bit 0 of the pipe bank); `pipe` 0..=2, others map to pipe C.
    pub const fn vblank(pipe: u8) -> Self {
        let bank = match pipe {
            0 => IrqBank::DePipeA,
            1 => IrqBank::DePipeB,
            _ => IrqBank::DePipeC,
        };
        Self { bank, bit: 0 }
    }
}

/// Register-table rows for MASTER_IRQ and every bank.
pub fn reg_specs() -> Vec<RegSpec> {
    let mut v = vec![RegSpec {
        offset: MASTER_IRQ,
        reset: 0,
        writable: MASTER_ENABLE,
        w1c: 0,
        kind: RegKind::Irq,
        section: "§3.8",
    }];
    for b in IrqBank::ALL {
        let base = b.base();
        v.push(RegSpec::ro(base + bank_reg::ISR, 0, RegKind::Irq, "§3.8"));
        v.push(RegSpec::rw(
            base + bank_reg::IMR,
            u32::MAX,
            RegKind::Irq,
            "§3.8",
        ));
        v.push(RegSpec {
            offset: base + bank_reg::IIR,
            reset: 0,
            writable: 0,
            w1c: u32::MAX,
            kind: RegKind::Irq,
            section: "§3.8",
        });
        v.push(RegSpec::rw(base + bank_reg::IER, 0, RegKind::Irq, "§3.8"));
    }
    v
}

/// Recomputes the MASTER_IRQ summary bits from every bank's `IIR & IER`.
pub fn propagate(regs: &mut RegisterFile) {
    let mut summary = 0u32;
    for b in IrqBank::ALL {
        let pending = regs.get(b.base() + bank_reg::IIR) & regs.get(b.base() + bank_reg::IER);
        for &(mask, bit) in b.summary() {
            if pending & mask != 0 {
                summary |= bit;
            }
        }
    }
    let master = regs.get(MASTER_IRQ) & MASTER_ENABLE;
    regs.set(MASTER_IRQ, master | summary);
}

/// Whether an interrupt is due: MASTER enabled and some summary bit set.
pub fn due(regs: &RegisterFile) -> bool {
    let m = regs.get(MASTER_IRQ);
    m & MASTER_ENABLE != 0 && m & !MASTER_ENABLE != 0
}

/// Raises `ev`: latches it unless masked, propagates, and says whether an interrupt is
/// due.
pub fn raise(regs: &mut RegisterFile, ev: IrqEvent) -> bool {
    let Some(bit) = 1u32.checked_shl(u32::from(ev.bit)) else {
        return false;
    };
    let base = ev.bank.base();
    if regs.get(base + bank_reg::IMR) & bit == 0 {
        let iir = regs.get(base + bank_reg::IIR);
        regs.set(base + bank_reg::IIR, iir | bit);
    }
    propagate(regs);
    due(regs)
}

/// Call after a guest write to an [`RegKind::Irq`] register (storage already applied):
/// propagates and says whether an interrupt is due.
pub fn after_write(regs: &mut RegisterFile) -> bool {
    propagate(regs);
    due(regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::RegTable;

    fn setup() -> (RegTable, RegisterFile) {
        let t = RegTable::new(reg_specs());
        let f = RegisterFile::with_reset(&t);
        (t, f)
    }

    #[test]
    fn masked_events_are_not_latched() {
        let (_, mut f) = setup();
        let ev = IrqEvent::engine(EngineId::Rcs, EngineIrq::UserInterrupt);
        assert!(!raise(&mut f, ev));
        assert_eq!(f.get(0x4_4308), 0);
    }

    #[test]
    fn guest_isr_protocol() {
        let (t, mut f) = setup();
        // Postinstall: GT0 IER/IMR, master enable.
        f.write(&t, 0x4_430c, 0x0909_0909, 0xf);
        f.write(&t, 0x4_4304, !0x0909_0909, 0xf);
        f.write(&t, MASTER_IRQ, MASTER_ENABLE, 0xf);
        assert!(!after_write(&mut f));
        let ev = IrqEvent::engine(EngineId::Bcs, EngineIrq::ContextSwitch);
        assert_eq!(ev.bit, 24);
        assert!(raise(&mut f, ev));
        assert_eq!(f.get(MASTER_IRQ), MASTER_ENABLE | 1 << 1);
        // ISR: master off, read summary, clear IIR, master on.
        f.write(&t, MASTER_IRQ, 0, 0xf);
        assert!(!after_write(&mut f));
        assert_eq!(f.read(&t, MASTER_IRQ).value, 1 << 1);
        let iir = f.read(&t, 0x4_4308).value;
        assert_eq!(iir, 1 << 24);
        f.write(&t, 0x4_4308, iir, 0xf);
        assert!(!after_write(&mut f));
        f.write(&t, MASTER_IRQ, MASTER_ENABLE, 0xf);
        assert!(!after_write(&mut f));
        assert_eq!(f.get(MASTER_IRQ), MASTER_ENABLE);
    }

    #[test]
    fn pending_work_refires_when_master_reenabled() {
        let (t, mut f) = setup();
        f.write(&t, 0x4_433c, 0x909, 0xf);
        f.write(&t, 0x4_4334, 0, 0xf);
        assert!(!raise(
            &mut f,
            IrqEvent::engine(EngineId::Vecs, EngineIrq::UserInterrupt)
        ));
        f.write(&t, MASTER_IRQ, MASTER_ENABLE, 0xf);
        assert!(after_write(&mut f));
        // IIR writes of all-ones from reset clear everything (guest checks IIR reads 0).
        f.write(&t, 0x4_4338, u32::MAX, 0xf);
        assert!(!after_write(&mut f));
        assert_eq!(f.read(&t, 0x4_4338).value, 0);
    }

    #[test]
    fn ier_gates_summary_and_sde_maps_to_bit_23() {
        let (t, mut f) = setup();
        f.write(&t, 0xc_4004, 0, 0xf);
        f.write(&t, MASTER_IRQ, MASTER_ENABLE, 0xf);
        assert!(!raise(
            &mut f,
            IrqEvent {
                bank: IrqBank::Sde,
                bit: 23
            }
        ));
        f.write(&t, 0xc_400c, 1 << 23, 0xf);
        assert!(after_write(&mut f));
        assert_eq!(f.get(MASTER_IRQ) & (1 << 23), 1 << 23);
        assert!(!raise(
            &mut f,
            IrqEvent {
                bank: IrqBank::Sde,
                bit: 200
            }
        ));
    }
}
