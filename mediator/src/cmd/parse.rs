//! Command header decoding (§6.1): what a header dword is and how many dwords it spans.
//!
//! Pure functions over a `u32`; every input decodes to a command or a [`ParseError`],
//! nothing panics. The length is in dwords, header included, always ≥ 1.

use thiserror::Error;

use crate::host::EngineId;

/// What a command is, as far as the scanner and the executor care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// MI_NOOP (00).
    Noop,
    /// MI_USER_INTERRUPT (02).
    UserInterrupt,
    /// MI_WAIT_FOR_EVENT (03).
    WaitForEvent,
    /// MI_ARB_CHECK (05).
    ArbCheck,
    /// MI_ARB_ON_OFF (08).
    ArbOnOff,
    /// MI_BATCH_BUFFER_END (0A).
    BatchBufferEnd,
    /// Any other one-dword MI command (opcodes 00–0F): a no-op for the model.
    MiOneDword,
    /// MI_LOAD_SCAN_LINES_INCL/EXCL (12, 13).
    LoadScanLines,
    /// MI_DISPLAY_FLIP (14).
    DisplayFlip,
    /// MI_SET_CONTEXT (18): legacy ring mode only.
    SetContext,
    /// MI_MATH (1A).
    Math,
    /// MI_SEMAPHORE_SIGNAL (1B).
    SemaphoreSignal,
    /// MI_SEMAPHORE_WAIT (1C).
    SemaphoreWait,
    /// MI_FORCE_WAKEUP (1D).
    ForceWakeup,
    /// MI_STORE_DATA_IMM (20).
    StoreDataImm,
    /// MI_STORE_DATA_INDEX (21).
    StoreDataIndex,
    /// MI_LOAD_REGISTER_IMM (22).
    LoadRegisterImm,
    /// MI_UPDATE_GTT (23).
    UpdateGtt,
    /// MI_STORE_REGISTER_MEM (24).
    StoreRegisterMem,
    /// MI_FLUSH_DW (26).
    FlushDw,
    /// MI_CLFLUSH (27).
    Clflush,
    /// MI_REPORT_PERF_COUNT (28).
    ReportPerfCount,
    /// MI_LOAD_REGISTER_MEM (29).
    LoadRegisterMem,
    /// MI_LOAD_REGISTER_REG (2A).
    LoadRegisterReg,
    /// MI_RS_STORE_DATA_IMM (2B).
    RsStoreDataImm,
    /// MI_LOAD_URB_MEM / MI_STORE_URB_MEM (2C, 2D).
    UrbMem,
    /// MI opcode 2E (memory-to-memory copy).
    MemToMem,
    /// MI_ATOMIC (2F).
    Atomic,
    /// MI_BATCH_BUFFER_START (31).
    BatchBufferStart,
    /// MI_CONDITIONAL_BATCH_BUFFER_END (36).
    ConditionalBbEnd,
    /// PIPE_CONTROL (7A00), RCS only.
    PipeControl,
    /// Any other GFXPIPE command (3D state, media, MFX, VEBOX): length-decoded, skipped.
    Gfx,
    /// XY_COLOR_BLT (2D opcode 50), BCS only.
    XyColorBlt,
    /// XY_SRC_COPY_BLT (2D opcode 53), BCS only.
    XySrcCopyBlt,
    /// XY_FAST_COPY_BLT (2D opcode 42), BCS only.
    XyFastCopyBlt,
    /// Any other known 2D command: length-decoded, not executed.
    Blt,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmd {
    /// The raw header dword.
    pub header: u32,
    /// What it is.
    pub op: Op,
    /// Length in dwords, header included (1..=65537).
    pub len: u32,
}

/// Why a header does not decode.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Reserved client type or an opcode with no known meaning.
    #[error("unknown command header {0:#010x}")]
    Unknown(u32),
    /// A known command that this engine does not execute (e.g. a blit on RCS).
    #[error("command {header:#010x} is not valid on {engine}")]
    WrongEngine { header: u32, engine: EngineId },
}

/// Bits 31:29 of a header.
pub fn client(header: u32) -> u32 {
    header >> 29
}

/// MI opcode, bits 28:23.
pub fn mi_opcode(header: u32) -> u32 {
    (header >> 23) & 0x3f
}

/// Decodes a header for `engine` (§6.1).
pub fn decode(engine: EngineId, header: u32) -> Result<Cmd, ParseError> {
    let (op, len) = match client(header) {
        0 => decode_mi(header)?,
        2 => decode_2d(engine, header)?,
        3 => decode_gfx(engine, header)?,
        _ => return Err(ParseError::Unknown(header)),
    };
    Ok(Cmd { header, op, len })
}

/// `field + 2` where `field = header & mask`.
fn field_len(header: u32, mask: u32) -> u32 {
    (header & mask) + 2
}

fn decode_mi(h: u32) -> Result<(Op, u32), ParseError> {
    let opc = mi_opcode(h);
    let one = |op| Ok((op, 1));
    let std = |op| Ok((op, field_len(h, 0xff)));
    match opc {
        0x00 => one(Op::Noop),
        0x02 => one(Op::UserInterrupt),
        0x03 => one(Op::WaitForEvent),
        0x05 => one(Op::ArbCheck),
        0x08 => one(Op::ArbOnOff),
        0x0A => one(Op::BatchBufferEnd),
        0x01..=0x0F => one(Op::MiOneDword),
        0x12 => Ok((Op::LoadScanLines, 2)),
        0x13 => std(Op::LoadScanLines),
        0x14 => std(Op::DisplayFlip),
        0x18 => std(Op::SetContext),
        0x1A => std(Op::Math),
        0x1B => std(Op::SemaphoreSignal),
        0x1C => std(Op::SemaphoreWait),
        0x1D => std(Op::ForceWakeup),
        0x20 => Ok((Op::StoreDataImm, field_len(h, 0x3ff))),
        0x21 => std(Op::StoreDataIndex),
        0x22 => std(Op::LoadRegisterImm),
        0x23 => Ok((Op::UpdateGtt, field_len(h, 0x3ff))),
        0x24 => std(Op::StoreRegisterMem),
        0x26 => Ok((Op::FlushDw, field_len(h, 0x3f))),
        0x27 => Ok((Op::Clflush, field_len(h, 0x3ff))),
        0x28 => Ok((Op::ReportPerfCount, field_len(h, 0x3f))),
        0x29 => std(Op::LoadRegisterMem),
        0x2A => std(Op::LoadRegisterReg),
        0x2B => std(Op::RsStoreDataImm),
        0x2C | 0x2D => std(Op::UrbMem),
        0x2E => std(Op::MemToMem),
        0x2F => std(Op::Atomic),
        0x31 => std(Op::BatchBufferStart),
        0x36 => std(Op::ConditionalBbEnd),
        _ => Err(ParseError::Unknown(h)),
    }
}

/// 2D opcodes (bits 28:22) accepted on BCS, length bits 7:0 + 2.
const KNOWN_2D: &[u32] = &[
    0x01, 0x03, 0x11, 0x24, 0x25, 0x26, 0x31, 0x40, 0x43, 0x50, 0x51, 0x52, 0x54, 0x55, 0x56, 0x57,
    0x58, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76,
];

fn decode_2d(engine: EngineId, h: u32) -> Result<(Op, u32), ParseError> {
    if engine != EngineId::Bcs {
        return Err(ParseError::WrongEngine { header: h, engine });
    }
    let op = match (h >> 22) & 0x7f {
        0x50 => Op::XyColorBlt,
        0x53 => Op::XySrcCopyBlt,
        0x42 => Op::XyFastCopyBlt,
        o if KNOWN_2D.contains(&o) => Op::Blt,
        _ => return Err(ParseError::Unknown(h)),
    };
    Ok((op, field_len(h, 0xff)))
}

fn decode_gfx(engine: EngineId, h: u32) -> Result<(Op, u32), ParseError> {
    let pipeline = (h >> 27) & 3;
    let opcode = (h >> 24) & 7;
    let sub = (h >> 16) & 0xff;
    match engine {
        EngineId::Rcs => Ok(decode_render(h, pipeline, opcode, sub)),
        EngineId::Vcs | EngineId::Vecs => Ok((Op::Gfx, field_len(h, 0xfff))),
        EngineId::Bcs => Err(ParseError::WrongEngine { header: h, engine }),
    }
}

fn decode_render(h: u32, pipeline: u32, opcode: u32, sub: u32) -> (Op, u32) {
    match (pipeline, opcode, sub) {
        (1, 1, 0x04) => (Op::Gfx, 1),                 // PIPELINE_SELECT
        (1, 0, 0x0B) => (Op::Gfx, 1),                 // 3DSTATE_VF_STATISTICS
        (2, _, _) => (Op::Gfx, field_len(h, 0xffff)), // MEDIA_*
        (3, 2, 0x00) => (Op::PipeControl, field_len(h, 0xff)),
        (3, 1, 0x17) | (3, 1, 0x43..=0x47) => (Op::Gfx, field_len(h, 0x1ff)),
        (3, 1, 0x39 | 0x3A) => (Op::Gfx, field_len(h, 0x7ff)),
        _ => (Op::Gfx, field_len(h, 0xff)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(e: EngineId, h: u32) -> u32 {
        decode(e, h).unwrap().len
    }

    #[test]
    fn spec_header_values_decode_to_spec_lengths() {
        assert_eq!(decode(EngineId::Rcs, 0).unwrap().op, Op::Noop);
        assert_eq!(len(EngineId::Rcs, 0x1040_0002), 4); // SDI GGTT
        assert_eq!(len(EngineId::Rcs, 0x1100_0001), 3); // LRI one reg
        assert_eq!(len(EngineId::Bcs, 0x1300_0002), 4); // FLUSH_DW
        assert_eq!(len(EngineId::Rcs, 0x1880_0101), 3); // BB_START PPGTT
        assert_eq!(len(EngineId::Rcs, 0x7A00_0004), 6); // PIPE_CONTROL
        assert_eq!(len(EngineId::Rcs, 0x6904_0000), 1); // PIPELINE_SELECT
        assert_eq!(len(EngineId::Rcs, 0x680B_0000), 1); // VF_STATISTICS
        assert_eq!(len(EngineId::Bcs, 0x5430_0005), 7); // XY_COLOR_BLT
        assert_eq!(len(EngineId::Bcs, 0x54F0_0008), 10); // XY_SRC_COPY_BLT
        assert_eq!(
            decode(EngineId::Rcs, 0x0500_0000).unwrap().op,
            Op::BatchBufferEnd
        );
        assert_eq!(decode(EngineId::Rcs, 0x0280_0000).unwrap().op, Op::ArbCheck);
    }

    #[test]
    fn wide_length_fields_follow_the_opcode() {
        assert_eq!(len(EngineId::Rcs, 0x1000_03ff), 0x401); // SDI: bits 9:0
        assert_eq!(len(EngineId::Rcs, 0x1300_00ff), 0x3f + 2); // FLUSH_DW: bits 5:0
        assert_eq!(len(EngineId::Rcs, 0x7000_ffff), 0x1_0001); // MEDIA: bits 15:0
        assert_eq!(len(EngineId::Vcs, 0x7000_ffff), 0xfff + 2); // MFX: bits 11:0
        assert_eq!(len(EngineId::Rcs, 0x7917_01ff), 0x1ff + 2); // SO_DECL_LIST
        assert_eq!(len(EngineId::Rcs, 0x0900_00ff), 2); // LOAD_SCAN_LINES_INCL
    }

    #[test]
    fn engine_restrictions_and_unknowns_are_errors() {
        assert!(matches!(
            decode(EngineId::Rcs, 0x5430_0005),
            Err(ParseError::WrongEngine { .. })
        ));
        assert!(matches!(
            decode(EngineId::Bcs, 0x7A00_0004),
            Err(ParseError::WrongEngine { .. })
        ));
        assert_eq!(
            decode(EngineId::Rcs, 0x2000_0000),
            Err(ParseError::Unknown(0x2000_0000))
        );
        assert_eq!(
            decode(EngineId::Rcs, 0x1f80_0000),
            Err(ParseError::Unknown(0x1f80_0000))
        );
        assert!(decode(EngineId::Bcs, 0x5fc0_0000).is_err());
    }

    #[test]
    fn every_header_decodes_without_panicking_to_a_positive_length() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            for e in EngineId::ALL {
                if let Ok(c) = decode(e, x) {
                    assert!((1..=0x1_0001).contains(&c.len));
                }
            }
        }
    }
}
