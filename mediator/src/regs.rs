//! The virtual register file: GVT's 2 MiB "vreg" array plus the table that gives
//! registers their semantics (spec §3.5, §3.9).
//!
//! [`RegisterFile`] is plain data (serde-serialisable): one `u32` per dword of the 2 MiB
//! MMIO window of BAR0. A [`RegTable`] maps dword offsets to a [`RegSpec`] row (reset
//! value, writable mask, write-1-to-clear mask, [`RegKind`], spec section). Offsets not
//! in the table are *untracked*: they behave as plain read-back storage initialised to 0,
//! exactly as GVT treats untracked MMIO, and every access to them is reported as
//! untracked so the vGPU can count it.
//!
//! The register file applies the storage semantics of a kind (writable mask, W1C,
//! masked "mode-mask" registers, the reset/idle handshakes); side effects that reach
//! other subsystems (interrupts, execlists, display, PVINFO) are dispatched by the
//! caller on the returned [`WriteOutcome::kind`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::mmio::EngineId;

/// Size of the MMIO register window at the start of BAR0 (GVT's `mmio_size`).
pub const MMIO_SIZE: u32 = 0x20_0000;
/// Number of dwords in the register window.
pub const VREG_DWORDS: usize = (MMIO_SIZE / 4) as usize;

/// What a register does besides storing bits. Each variant documents its semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegKind {
    /// Read-back storage under the writable and W1C masks.
    Plain,
    /// Masked ("mode-mask") register: bits 31:16 of a write enable bits 15:0. Reads return
    /// 0 in bits 31:16, as hardware does.
    Masked,
    /// RING_MI_MODE (base+9C): masked; bit 9 MODE_IDLE always reads 1 (engines are idle
    /// from the MMIO point of view; the execlist model does not hold the ring).
    MiMode,
    /// RING_RESET_CTL (base+D0): masked; bit 1 (ready-to-reset) follows bit 0 (request),
    /// bit 2 (catastrophic error) always 0 (§3.5).
    ResetCtl,
    /// GEN6_GDRST 941C: a write requests the resets in its bits; reads are always 0
    /// ("reset done"). Dispatched: engine/device reset, GuC status (§3.5, §3.9).
    Gdrst,
    /// GEN6_PCODE_MAILBOX 138124: commands 5/6/7 as §3.9, then READY and the error field
    /// are cleared.
    PcodeMailbox,
    /// FORCEWAKE request register (masked); the resulting low 16 bits are mirrored into
    /// the ack register at `ack` (§3.9).
    Forcewake {
        /// Offset of the matching ACK register.
        ack: u32,
    },
    /// GUC_STATUS C000: bit 0 is set by a GuC reset and cleared by the first read (§3.9).
    GucStatus,
    /// Stores the write but always reads 0 (TLB invalidate registers 4260..4270, §3.9).
    ReadZero,
    /// Interrupt tree register (MASTER_IRQ and the ISR/IMR/IIR/IER banks, §3.8).
    /// Storage semantics here; delivery is evaluated by [`crate::irq`].
    Irq,
    /// Fence register dword (100000 + 8·i); only `fence_num` fences are usable (§4.5).
    Fence,
    /// RING_MODE / GFX_MODE (base+29C): masked; bit 15 RUN_LIST_ENABLE switches the engine
    /// to execlists (§5.2). Dispatched to the execlist subsystem as an event.
    RingMode(EngineId),
    /// RING_ELSP (base+230): the four-write submit port (§5.3). Write-only, reads 0.
    /// Dispatched to the execlist subsystem (another module) as a submission event.
    Elsp(EngineId),
    /// RING_HWS_PGA (base+80): stored; dispatched so the execlist subsystem can track the
    /// engine's hardware status page.
    HwsPga(EngineId),
    /// Execlist-owned read-only state (EXECLIST_STATUS base+234/238, CSB entries
    /// base+370..39F): the guest cannot write it; the execlist subsystem updates it through
    /// [`RegisterFile::set`].
    ExeclistState(EngineId),
    /// RING_CONTEXT_STATUS_PTR (base+3A0): masked; the execlist subsystem reads the
    /// guest-written write pointer from storage (§5.7).
    CsbPtr(EngineId),
    /// GFX_FLSH_CNTL 101008: GGTT TLB flush doorbell; dispatched so a host-GGTT shadow can
    /// sync (§4.6).
    GgttFlush,
    /// RING_TIMESTAMP (base+358 low, base+35C high): a free-running 12 MHz counter
    /// (CTC_MODE 0, §3.9). Read-only; the vGPU computes it from its own monotonic clock,
    /// so it advances (user space reads it through I915_REG_READ for GL timestamps).
    Timestamp {
        /// The upper dword.
        high: bool,
    },
    /// Display power-well control (HSW_PWR_WELL_CTL1..4, 45400..4540C): every state bit
    /// (even) follows its request bit (odd), so power-well enables complete at once. Needed
    /// even headless (recipe §6: i915 6.1 polls it unconditionally).
    PowerWell,
    /// Display register with emulated side effects. Storage is plain; the write is
    /// dispatched to the display subsystem (another module) as an event.
    Display,
    /// The PVINFO page 78000..78FFF (§2); writes go through [`crate::pvinfo`] rules.
    Pvinfo,
}

/// One row of a register table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegSpec {
    /// Byte offset in BAR0 (dword aligned).
    pub offset: u32,
    /// Value after device reset.
    pub reset: u32,
    /// Bits a guest write may change (for masked kinds: of the low 16 bits).
    pub writable: u32,
    /// Bits cleared by writing 1.
    pub w1c: u32,
    /// Semantics.
    pub kind: RegKind,
    /// Spec section that defines the row.
    pub section: &'static str,
}

impl RegSpec {
    /// A row with a full writable mask and no W1C bits.
    pub const fn rw(offset: u32, reset: u32, kind: RegKind, section: &'static str) -> Self {
        Self {
            offset,
            reset,
            writable: u32::MAX,
            w1c: 0,
            kind,
            section,
        }
    }

    /// A read-only row.
    pub const fn ro(offset: u32, reset: u32, kind: RegKind, section: &'static str) -> Self {
        Self {
            offset,
            reset,
            writable: 0,
            w1c: 0,
            kind,
            section,
        }
    }
}

/// Lookup from offset to row; built once per vGPU from the static Gen9 tables.
#[derive(Clone, Debug, Default)]
pub struct RegTable {
    rows: HashMap<u32, RegSpec>,
}

impl RegTable {
    /// A table from rows; a later row for the same offset replaces an earlier one.
    pub fn new(rows: impl IntoIterator<Item = RegSpec>) -> Self {
        let rows = rows
            .into_iter()
            .filter(|r| r.offset % 4 == 0 && r.offset < MMIO_SIZE)
            .map(|r| (r.offset, r))
            .collect();
        Self { rows }
    }

    /// The row for a dword offset, if tracked.
    pub fn get(&self, offset: u32) -> Option<&RegSpec> {
        self.rows.get(&(offset & !3))
    }

    /// Number of tracked registers.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// All rows (unordered).
    pub fn iter(&self) -> impl Iterator<Item = &RegSpec> {
        self.rows.values()
    }
}

/// What a register write did, for the caller's side-effect dispatch and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The register's kind (`Plain` for untracked offsets).
    pub kind: RegKind,
    /// Whether the offset is in the table.
    pub tracked: bool,
    /// Stored value before the write.
    pub old: u32,
    /// Stored value after the write.
    pub new: u32,
    /// The written value with unwritten bytes taken from `old` (W1C bits of unwritten
    /// bytes zeroed).
    pub value: u32,
}

/// Result of a register read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The value the guest sees.
    pub value: u32,
    /// The register's kind (`Plain` for untracked offsets).
    pub kind: RegKind,
    /// Whether the offset is in the table.
    pub tracked: bool,
}

/// GVT-style 2 MiB array of virtual registers, indexed by offset / 4. Plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterFile {
    vreg: Vec<u32>,
}

impl Default for RegisterFile {
    fn default() -> Self {
        Self {
            vreg: vec![0; VREG_DWORDS],
        }
    }
}

fn index(offset: u32) -> Option<usize> {
    if offset < MMIO_SIZE {
        usize::try_from(offset / 4).ok()
    } else {
        None
    }
}

/// Mask of the bytes a `byte_enable` (bit n = byte n) selects.
pub fn byte_mask(byte_enable: u8) -> u32 {
    (0..4).fold(0u32, |m, i| {
        if byte_enable & (1 << i) != 0 {
            m | (0xff << (8 * i))
        } else {
            m
        }
    })
}

/// New stored value of a masked register: bits 31:16 of `value` enable bits 15:0.
pub fn masked_update(old: u32, value: u32, writable: u32) -> u32 {
    let mask = (value >> 16) & writable & 0xffff;
    ((old & !mask) | (value & mask)) & 0xffff
}

impl RegisterFile {
    /// A zeroed register file.
    pub fn new() -> Self {
        Self::default()
    }

    /// A register file holding every row's reset value.
    pub fn with_reset(table: &RegTable) -> Self {
        let mut f = Self::new();
        f.reset(table, 0..MMIO_SIZE);
        f
    }

    /// Restores the reset values of every dword in `range` (rows from `table`, 0
    /// elsewhere).
    pub fn reset(&mut self, table: &RegTable, range: std::ops::Range<u32>) {
        let start = range.start.min(MMIO_SIZE) / 4;
        let end = range.end.min(MMIO_SIZE).div_ceil(4);
        if let Some(s) = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| self.vreg.get_mut(a..b.max(a)))
        {
            s.fill(0);
        }
        for r in table.iter() {
            if r.offset / 4 >= start && r.offset / 4 < end {
                self.set(r.offset, r.reset);
            }
        }
    }

    /// Raw stored dword at `offset` (rounded down to a dword); 0 outside the window.
    pub fn get(&self, offset: u32) -> u32 {
        index(offset)
            .and_then(|i| self.vreg.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Stores a raw dword (for subsystems that own read-only state); ignored outside the
    /// window.
    pub fn set(&mut self, offset: u32, value: u32) {
        if let Some(slot) = index(offset).and_then(|i| self.vreg.get_mut(i)) {
            *slot = value;
        }
    }

    /// Guest read of the dword at `offset`, applying read semantics (MI_MODE idle bit,
    /// clear-on-read GuC status, write-only registers).
    pub fn read(&mut self, table: &RegTable, offset: u32) -> ReadOutcome {
        let offset = offset & !3;
        let stored = self.get(offset);
        let Some(spec) = table.get(offset) else {
            return ReadOutcome {
                value: stored,
                kind: RegKind::Plain,
                tracked: false,
            };
        };
        let value = match spec.kind {
            RegKind::MiMode => stored | (1 << 9),
            RegKind::Gdrst | RegKind::ReadZero | RegKind::Elsp(_) => 0,
            RegKind::GucStatus => {
                self.set(offset, stored & !1);
                stored
            }
            _ => stored,
        };
        ReadOutcome {
            value,
            kind: spec.kind,
            tracked: true,
        }
    }

    /// Guest write of `value` to the dword at `offset`, with `byte_enable` selecting the
    /// bytes written (0xF for a full dword). Applies the kind's storage semantics.
    pub fn write(
        &mut self,
        table: &RegTable,
        offset: u32,
        value: u32,
        byte_enable: u8,
    ) -> WriteOutcome {
        let offset = offset & !3;
        let be = byte_mask(byte_enable);
        let old = self.get(offset);
        let spec = table.get(offset).copied();
        let (kind, writable, w1c) = spec.map_or((RegKind::Plain, u32::MAX, 0), |s| {
            (s.kind, s.writable, s.w1c)
        });
        // Unwritten bytes keep the old value, except that W1C bits there are not "written 1".
        let merged = ((old & !be) | (value & be)) & !(w1c & !be);
        let plain = ((old & !(writable & be)) | (merged & writable & be)) & !(merged & w1c);
        let new = match kind {
            RegKind::Masked | RegKind::RingMode(_) | RegKind::CsbPtr(_) => {
                masked_update(old, merged, writable)
            }
            RegKind::MiMode => masked_update(old, merged, writable) & !(1 << 9),
            RegKind::ResetCtl => {
                let low = masked_update(old, merged, writable) & 1;
                low | (low << 1)
            }
            RegKind::Forcewake { ack } => {
                let v = masked_update(old, merged, writable);
                self.set(ack, v);
                v
            }
            RegKind::PcodeMailbox => pcode_command(self, merged),
            RegKind::PowerWell => {
                let req = merged & writable & 0xaaaa_aaaa;
                req | ((req >> 1) & 0x5555_5555)
            }
            RegKind::ExeclistState(_) => old,
            RegKind::Gdrst | RegKind::Elsp(_) => merged,
            _ => plain,
        };
        self.set(offset, new);
        WriteOutcome {
            kind,
            tracked: spec.is_some(),
            old,
            new,
            value: merged,
        }
    }
}

/// PCODE data register written by the mailbox commands.
pub const PCODE_DATA: u32 = 0x13_8128;

/// Executes a pcode mailbox command (§3.9) and returns the value to store in the mailbox.
fn pcode_command(regs: &mut RegisterFile, value: u32) -> u32 {
    match value & 0xff {
        0x06 => {
            let data = if regs.get(PCODE_DATA) == 0 {
                0x1e1a_1100
            } else {
                0x6151_4b3d
            };
            regs.set(PCODE_DATA, data);
        }
        0x07 => regs.set(PCODE_DATA, 1),
        0x05 => regs.set(PCODE_DATA, regs.get(PCODE_DATA) | 1),
        _ => {}
    }
    value & !(0x8000_0000 | 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RegTable {
        RegTable::new([
            RegSpec::rw(0x100, 0x55, RegKind::Plain, "test"),
            RegSpec {
                offset: 0x104,
                reset: 0,
                writable: 0x0000_ffff,
                w1c: 0xffff_0000,
                kind: RegKind::Plain,
                section: "test",
            },
            RegSpec::rw(0x108, 0, RegKind::Masked, "test"),
            RegSpec::rw(0x10c, 0, RegKind::ResetCtl, "test"),
            RegSpec::rw(0x110, 0x200, RegKind::MiMode, "test"),
            RegSpec::rw(0x114, 0, RegKind::Forcewake { ack: 0x118 }, "test"),
            RegSpec::rw(0x13_8124, 0, RegKind::PcodeMailbox, "test"),
            RegSpec::rw(0x11c, 1, RegKind::GucStatus, "test"),
            RegSpec::rw(0x120, 0, RegKind::PowerWell, "test"),
        ])
    }

    #[test]
    fn reset_values_and_untracked_storage() {
        let t = table();
        let mut f = RegisterFile::with_reset(&t);
        assert_eq!(f.read(&t, 0x100).value, 0x55);
        let r = f.read(&t, 0x2000);
        assert!(!r.tracked);
        assert_eq!(r.value, 0);
        let w = f.write(&t, 0x2000, 0xdead_beef, 0xf);
        assert!(!w.tracked);
        assert_eq!(f.read(&t, 0x2000).value, 0xdead_beef);
        // Out-of-window offsets are ignored.
        f.set(MMIO_SIZE, 7);
        assert_eq!(f.get(MMIO_SIZE), 0);
    }

    #[test]
    fn writable_and_w1c_masks() {
        let t = table();
        let mut f = RegisterFile::with_reset(&t);
        f.set(0x104, 0xffff_0000);
        f.write(&t, 0x104, 0x0001_1234, 0xf);
        assert_eq!(f.get(0x104), 0xfffe_1234);
        // A byte write to byte 0 does not clear W1C bits in other bytes.
        f.write(&t, 0x104, 0x0000_0056, 0x1);
        assert_eq!(f.get(0x104), 0xfffe_1256);
        // Byte write into the W1C byte 2 clears only the written ones.
        f.write(&t, 0x104, 0x00f0_0000, 0x4);
        assert_eq!(f.get(0x104), 0xff0e_1256);
    }

    #[test]
    fn masked_registers_follow_mode_mask_rule() {
        let t = table();
        let mut f = RegisterFile::with_reset(&t);
        f.write(&t, 0x108, 0xffff_0505, 0xf);
        assert_eq!(f.read(&t, 0x108).value, 0x505);
        f.write(&t, 0x108, 0x0001_0000, 0xf);
        assert_eq!(f.read(&t, 0x108).value, 0x504);
        f.write(&t, 0x108, 0x0000_00ff, 0xf);
        assert_eq!(f.read(&t, 0x108).value, 0x504);
    }

    #[test]
    fn handshakes() {
        let t = table();
        let mut f = RegisterFile::with_reset(&t);
        f.write(&t, 0x10c, 0x0001_0001, 0xf);
        assert_eq!(f.read(&t, 0x10c).value, 3);
        f.write(&t, 0x10c, 0x0001_0000, 0xf);
        assert_eq!(f.read(&t, 0x10c).value, 0);
        f.write(&t, 0x110, 0x0100_0100, 0xf);
        assert_eq!(f.read(&t, 0x110).value, 0x300);
        f.write(&t, 0x114, 0x0001_0001, 0xf);
        assert_eq!(f.get(0x118), 1);
        assert_eq!(f.read(&t, 0x11c).value, 1);
        assert_eq!(f.read(&t, 0x11c).value, 0);
        f.write(&t, 0x120, 0x8000_0000 | 0x8, 0xf);
        assert_eq!(f.read(&t, 0x120).value, 0xc000_000c);
    }

    #[test]
    fn pcode_mailbox_commands() {
        let t = table();
        let mut f = RegisterFile::with_reset(&t);
        f.write(&t, 0x13_8124, 0x8000_0006, 0xf);
        assert_eq!(f.get(PCODE_DATA), 0x1e1a_1100);
        assert_eq!(f.get(0x13_8124), 0);
        f.write(&t, 0x13_8124, 0x8000_0006, 0xf);
        assert_eq!(f.get(PCODE_DATA), 0x6151_4b3d);
        f.write(&t, 0x13_8124, 0x8000_0007, 0xf);
        assert_eq!(f.get(PCODE_DATA), 1);
        f.write(&t, 0x13_8124, 0x8000_001a, 0xf);
        assert_eq!(f.get(0x13_8124) & 0x8000_00ff, 0);
    }

    #[test]
    fn serde_round_trip() {
        let t = table();
        let f = RegisterFile::with_reset(&t);
        let s = serde_json::to_string(&f).unwrap();
        let g: RegisterFile = serde_json::from_str(&s).unwrap();
        assert_eq!(f, g);
    }
}
