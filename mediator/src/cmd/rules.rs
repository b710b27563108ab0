//! Per-command audit rules (§6.3–§6.7) applied to a command already copied out of guest
//! memory. Privileged buffers (the ring and GGTT batches) get GVT's checks and are
//! rejected on a violation; non-privileged (PPGTT) batches get the hardware's rules: a
//! privileged-only write is patched to MI_NOOPs in the copy (§6.3 "treat as no-op").

use super::audit::{in_windows, RegWhitelist, PIPE_CONTROL_REGS};
use super::parse::{Cmd, Op};
use super::scan::RejectReason;
use super::workload::BatchKey;
use crate::host::GmRange;

/// Where the command sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufCtx<'a> {
    /// 0 = ring, 1 = first-level batch, 2 = second-level batch.
    pub level: u8,
    /// The buffer was fetched through the PPGTT: non-privileged.
    pub ppgtt: bool,
    /// The context has a PPGTT (descriptor bit 8 and a shadow root).
    pub has_ppgtt: bool,
    pub regs: &'a RegWhitelist,
    pub windows: &'a [GmRange],
}

/// What the walker does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Continue with the next command.
    Next,
    /// The command was dropped (patched to NOOPs); continue.
    Dropped,
    /// MI_BATCH_BUFFER_END: the buffer ends here.
    End,
    /// Call a batch and come back (from the ring: first level; from level 1: second level).
    Call(BatchKey),
    /// Jump to a batch; the buffer ends here.
    Chain(BatchKey),
}

type Verdict = Result<Flow, RejectReason>;

/// 48-bit graphics address from a (bits 31:2, bits 47:32) dword pair.
pub(crate) fn gma48(lo: u32, hi: u32) -> u64 {
    u64::from(lo & !3) | (u64::from(hi & 0xffff) << 32)
}

fn dw(body: &[u32], i: usize) -> u32 {
    body.get(i).copied().unwrap_or(0)
}

fn check_addr(ctx: &BufCtx<'_>, addr: u64, len: u64) -> Verdict {
    if in_windows(ctx.windows, addr, len) {
        Ok(Flow::Next)
    } else {
        Err(RejectReason::AddressOutOfWindow)
    }
}

/// Drops a command in a non-privileged batch: the copy gets NOOPs.
fn drop_cmd(body: &mut [u32]) -> Verdict {
    body.fill(0);
    Ok(Flow::Dropped)
}

/// Whether [`audit`] may do anything for `op` but return `Ok(Flow::Next)` with the body
/// untouched. The scanner's fast path only length-decodes commands for which this is
/// `false`. Exhaustive on purpose: a new [`Op`] must be classified here (and the test
/// `unaudited_ops_pass_unchanged_in_every_context` checks the classification).
pub(crate) fn needs_audit(op: Op) -> bool {
    match op {
        Op::Noop
        | Op::UserInterrupt
        | Op::WaitForEvent
        | Op::ArbCheck
        | Op::ArbOnOff
        | Op::MiOneDword
        | Op::LoadScanLines
        | Op::Math
        | Op::ForceWakeup
        | Op::Gfx
        | Op::Blt => false,
        Op::BatchBufferEnd
        | Op::BatchBufferStart
        | Op::LoadRegisterImm
        | Op::LoadRegisterMem
        | Op::StoreRegisterMem
        | Op::LoadRegisterReg
        | Op::StoreDataImm
        | Op::PipeControl
        | Op::FlushDw
        | Op::Atomic
        | Op::SemaphoreWait
        | Op::SemaphoreSignal
        | Op::ReportPerfCount
        | Op::StoreDataIndex
        | Op::Clflush
        | Op::ConditionalBbEnd
        | Op::UpdateGtt
        | Op::MemToMem
        | Op::SetContext
        | Op::RsStoreDataImm
        | Op::XyColorBlt
        | Op::XySrcCopyBlt
        | Op::DisplayFlip
        | Op::UrbMem
        | Op::XyFastCopyBlt => true,
    }
}

/// Audits one command. `body` is the command's dwords in the copy (`cmd.len` of them).
///
/// `cmd` is taken by value: the scanner builds it from scalars in registers, and a
/// by-reference `Cmd` made it spill and reload the struct in its hot loop.
pub(crate) fn audit(ctx: &BufCtx<'_>, cmd: Cmd, body: &mut [u32]) -> Verdict {
    let cmd = &cmd;
    let h = cmd.header;
    let ggtt_bit = h & (1 << 22) != 0;
    match cmd.op {
        Op::BatchBufferEnd if ctx.level == 0 => Err(RejectReason::ForbiddenCommand),
        Op::BatchBufferEnd => Ok(Flow::End),
        Op::BatchBufferStart => bb_start(ctx, cmd, body),
        Op::LoadRegisterImm => lri(ctx, cmd, body),
        Op::LoadRegisterMem | Op::StoreRegisterMem => reg_mem(ctx, cmd, body),
        Op::LoadRegisterReg if ctx.ppgtt => {
            let dst = dw(body, 2);
            if ctx.regs.nonpriv_allowed(dst) {
                Ok(Flow::Next)
            } else {
                drop_cmd(body)
            }
        }
        Op::StoreDataImm => sdi(ctx, cmd, body),
        Op::PipeControl => pipe_control(ctx, cmd, body),
        Op::FlushDw => flush_dw(ctx, cmd, body),
        Op::Atomic => atomic(ctx, body, ggtt_bit),
        Op::SemaphoreWait if ctx.ppgtt => {
            if cmd.len != 4 {
                Err(RejectReason::BadLength)
            } else if ggtt_bit {
                drop_cmd(body)
            } else {
                Ok(Flow::Next)
            }
        }
        Op::LoadRegisterReg
        | Op::SemaphoreWait
        | Op::SemaphoreSignal
        | Op::ReportPerfCount
        | Op::StoreDataIndex
        | Op::Clflush
        | Op::ConditionalBbEnd
        | Op::UpdateGtt
        | Op::MemToMem
        | Op::SetContext
        | Op::RsStoreDataImm => {
            if ctx.ppgtt {
                drop_cmd(body)
            } else {
                Err(RejectReason::ForbiddenCommand)
            }
        }
        Op::XyColorBlt | Op::XySrcCopyBlt => blit(ctx, cmd, body),
        // These carry graphics addresses whose fields the audit does not decode. Through the
        // PPGTT they can reach only the guest's own shadowed frames; in a privileged (GGTT)
        // buffer they could reach outside the vGPU's windows, so they are refused there.
        // MI_DISPLAY_FLIP drives the (virtual) display and is privileged-only.
        Op::XyFastCopyBlt => fast_copy(ctx, cmd, body),
        Op::UrbMem if ctx.ppgtt => Ok(Flow::Next),
        Op::DisplayFlip if ctx.ppgtt => drop_cmd(body),
        Op::DisplayFlip | Op::UrbMem => Err(RejectReason::ForbiddenCommand),
        _ => Ok(Flow::Next),
    }
}

fn bb_start(ctx: &BufCtx<'_>, cmd: &Cmd, body: &[u32]) -> Verdict {
    let h = cmd.header;
    if cmd.len != 3 {
        return Err(RejectReason::BadLength);
    }
    if h & (1 << 15) != 0 || h & (1 << 10) != 0 {
        // Predication and the resource streamer are not modelled.
        return Err(RejectReason::ForbiddenCommand);
    }
    let second = h & (1 << 22) != 0;
    // The PPGTT selection persists for a batch, its chains and its callees (§6.3).
    let ppgtt = ctx.ppgtt || h & (1 << 8) != 0;
    if ppgtt && !ctx.has_ppgtt {
        return Err(RejectReason::PpgttWithoutContext);
    }
    let gma = gma48(dw(body, 1), dw(body, 2));
    if !ppgtt && !in_windows(ctx.windows, gma, 4) {
        return Err(RejectReason::AddressOutOfWindow);
    }
    match (ctx.level, second) {
        (0, true) | (2, true) => Err(RejectReason::NestingTooDeep),
        (0, false) => Ok(Flow::Call(BatchKey {
            gma,
            ppgtt,
            level: 1,
        })),
        (1, true) => Ok(Flow::Call(BatchKey {
            gma,
            ppgtt,
            level: 2,
        })),
        (level, _) => Ok(Flow::Chain(BatchKey { gma, ppgtt, level })),
    }
}

fn lri(ctx: &BufCtx<'_>, cmd: &Cmd, body: &mut [u32]) -> Verdict {
    if cmd.len < 3 || cmd.len % 2 == 0 {
        return Err(RejectReason::BadLength);
    }
    let regs = body.iter().skip(1).step_by(2).map(|r| r & 0x7F_FFFC);
    if ctx.ppgtt {
        let all_ok = regs.clone().all(|r| ctx.regs.nonpriv_allowed(r));
        return if all_ok {
            Ok(Flow::Next)
        } else {
            drop_cmd(body)
        };
    }
    for r in regs {
        if !ctx.regs.lri_allowed(r) {
            return Err(RejectReason::RegisterNotAllowed);
        }
    }
    Ok(Flow::Next)
}

fn reg_mem(ctx: &BufCtx<'_>, cmd: &Cmd, body: &mut [u32]) -> Verdict {
    if cmd.len != 4 {
        return Err(RejectReason::BadLength);
    }
    let reg = dw(body, 1) & 0x7F_FFFC;
    let ggtt = cmd.header & (1 << 22) != 0;
    if ctx.ppgtt {
        let load_bad = cmd.op == Op::LoadRegisterMem && !ctx.regs.nonpriv_allowed(reg);
        return if ggtt || load_bad {
            drop_cmd(body)
        } else {
            Ok(Flow::Next)
        };
    }
    if !ctx.regs.mem_allowed(reg) {
        return Err(RejectReason::RegisterNotAllowed);
    }
    if ggtt {
        return check_addr(ctx, gma48(dw(body, 2), dw(body, 3)), 4);
    }
    Ok(Flow::Next)
}

fn sdi(ctx: &BufCtx<'_>, cmd: &Cmd, body: &mut [u32]) -> Verdict {
    if cmd.len != 4 && cmd.len != 5 {
        return Err(RejectReason::BadLength);
    }
    if cmd.header & (1 << 22) == 0 {
        return Ok(Flow::Next);
    }
    if ctx.ppgtt {
        return drop_cmd(body);
    }
    let bytes = if cmd.len == 5 { 8 } else { 4 };
    check_addr(ctx, gma48(dw(body, 1), dw(body, 2)), bytes)
}

fn pipe_control(ctx: &BufCtx<'_>, cmd: &Cmd, body: &mut [u32]) -> Verdict {
    if cmd.len != 6 {
        return Err(RejectReason::BadLength);
    }
    let flags = dw(body, 1);
    let post = (flags >> 14) & 3;
    let index = flags & (1 << 21) != 0;
    let ggtt = flags & (1 << 24) != 0;
    let lri_post = flags & (1 << 23) != 0;
    if lri_post && !PIPE_CONTROL_REGS.contains(&(dw(body, 2) & 0x7F_FFFC)) {
        return if ctx.ppgtt {
            drop_cmd(body)
        } else {
            Err(RejectReason::RegisterNotAllowed)
        };
    }
    if post == 0 || lri_post {
        return Ok(Flow::Next);
    }
    if ctx.ppgtt && (ggtt || index) {
        return drop_cmd(body);
    }
    let addr = gma48(dw(body, 2), dw(body, 3));
    if index {
        return if addr.saturating_add(8) <= 4096 {
            Ok(Flow::Next)
        } else {
            Err(RejectReason::IndexOutOfRange)
        };
    }
    if ggtt {
        return check_addr(ctx, addr, 8);
    }
    Ok(Flow::Next)
}

fn flush_dw(ctx: &BufCtx<'_>, cmd: &Cmd, body: &mut [u32]) -> Verdict {
    if cmd.len != 4 && cmd.len != 5 {
        return Err(RejectReason::BadLength);
    }
    let post = (cmd.header >> 14) & 3;
    if post == 0 {
        return Ok(Flow::Next);
    }
    let index = cmd.header & (1 << 21) != 0;
    let lo = dw(body, 1);
    let ggtt = lo & (1 << 2) != 0;
    if ctx.ppgtt && (ggtt || index) {
        return drop_cmd(body);
    }
    let addr = u64::from(lo & !7) | (u64::from(dw(body, 2) & 0xffff) << 32);
    let bytes = if cmd.len == 5 || post == 3 { 8 } else { 4 };
    if index {
        return if addr.saturating_add(bytes) <= 4096 {
            Ok(Flow::Next)
        } else {
            Err(RejectReason::IndexOutOfRange)
        };
    }
    if ggtt {
        return check_addr(ctx, addr, bytes);
    }
    Ok(Flow::Next)
}

fn atomic(ctx: &BufCtx<'_>, body: &mut [u32], ggtt: bool) -> Verdict {
    if !ggtt {
        return Ok(Flow::Next);
    }
    if ctx.ppgtt {
        return drop_cmd(body);
    }
    let size = 4u64 << ((dw(body, 0) >> 19) & 3);
    check_addr(ctx, gma48(dw(body, 1), dw(body, 2)), size)
}

/// Bytes a blit surface spans: `pitch` × rows (rows rounded up to whole 8-row tiles).
pub(crate) fn surface_extent(pitch: u32, y_end: u32, tiled: bool) -> u64 {
    let rows = if tiled {
        u64::from(y_end).div_ceil(8) * 8
    } else {
        u64::from(y_end)
    };
    u64::from(pitch).saturating_mul(rows)
}

/// Blits are length-decoded only by GVT; in privileged buffers this model also checks
/// that the surfaces lie in the windows (stricter than GVT, which relies on hardware).
fn blit(ctx: &BufCtx<'_>, cmd: &Cmd, body: &[u32]) -> Verdict {
    let want = if cmd.op == Op::XyColorBlt { 7 } else { 10 };
    if cmd.len != want {
        return Err(RejectReason::BadLength);
    }
    if ctx.ppgtt {
        return Ok(Flow::Next);
    }
    let br13 = dw(body, 1);
    let dst_tiled = cmd.header & (1 << 11) != 0;
    let mut pitch = br13 & 0xffff;
    if dst_tiled {
        pitch = pitch.saturating_mul(4);
    }
    let y2 = dw(body, 3) >> 16;
    let dst = gma48(dw(body, 4), dw(body, 5));
    check_addr(ctx, dst, surface_extent(pitch, y2, dst_tiled).max(1))?;
    if cmd.op == Op::XySrcCopyBlt {
        let src_tiled = cmd.header & (1 << 15) != 0;
        let mut spitch = dw(body, 7) & 0xffff;
        if src_tiled {
            spitch = spitch.saturating_mul(4);
        }
        let h = y2.saturating_sub(dw(body, 2) >> 16);
        let sy_end = (dw(body, 6) >> 16).saturating_add(h);
        let src = gma48(dw(body, 8), dw(body, 9));
        check_addr(ctx, src, surface_extent(spitch, sy_end, src_tiled).max(1))?;
    }
    Ok(Flow::Next)
}

/// XY_FAST_COPY_BLT (10 dwords): destination at dwords 4–5 spanning rows up to y2
/// (dword 3), source at dwords 8–9 spanning the same height from its y1 (dword 6). The
/// tiling fields differ from the legacy blits (destination: dword 1 bits 31:30; source:
/// header bits 21:20); any tiled surface is checked with the larger tiled extent, which
/// is never smaller than what the engine could touch.
fn fast_copy(ctx: &BufCtx<'_>, cmd: &Cmd, body: &[u32]) -> Verdict {
    if cmd.len != 10 {
        return Err(RejectReason::BadLength);
    }
    if ctx.ppgtt {
        return Ok(Flow::Next);
    }
    let extent = |pitch: u32, rows: u32, tiled: bool| {
        let pitch = if tiled {
            pitch.saturating_mul(4)
        } else {
            pitch
        };
        surface_extent(pitch, rows, tiled).max(1)
    };
    let y2 = dw(body, 3) >> 16;
    let dst_tiled = dw(body, 1) >> 30 != 0;
    let dst = gma48(dw(body, 4), dw(body, 5));
    check_addr(ctx, dst, extent(dw(body, 1) & 0xffff, y2, dst_tiled))?;
    let h = y2.saturating_sub(dw(body, 2) >> 16);
    let sy_end = (dw(body, 6) >> 16).saturating_add(h);
    let src_tiled = (cmd.header >> 20) & 0b11 != 0;
    let src = gma48(dw(body, 8), dw(body, 9));
    check_addr(ctx, src, extent(dw(body, 7) & 0xffff, sy_end, src_tiled))?;
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::audit::RegWhitelist;
    use crate::cmd::parse::decode;
    use crate::host::EngineId;

    /// Every (engine, op, length) the decoder produces, one header each.
    fn decodable() -> Vec<(EngineId, Cmd)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for e in EngineId::ALL {
            for hi in 0u32..=0xffff {
                for lo in [0u32, 1, 2, 3, 0x1f] {
                    if let Ok(c) = decode(e, hi << 16 | lo) {
                        if seen.insert((e, c.op, c.len)) {
                            out.push((e, c));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn unaudited_address_carriers_are_refused_in_privileged_buffers() {
        let windows = [GmRange {
            start: 0,
            size: 1 << 20,
        }];
        let mut seen = 0;
        for (engine, cmd) in decodable() {
            if !matches!(cmd.op, Op::DisplayFlip | Op::UrbMem) {
                continue;
            }
            seen += 1;
            let regs = RegWhitelist::gen9(engine);
            let ctx = |level, ppgtt| BufCtx {
                level,
                ppgtt,
                has_ppgtt: true,
                regs: &regs,
                windows: &windows,
            };
            let mut body = vec![0u32; cmd.len as usize];
            body[0] = cmd.header;
            for level in 0..3u8 {
                assert_eq!(
                    audit(&ctx(level, false), cmd, &mut body.clone()),
                    Err(RejectReason::ForbiddenCommand),
                    "{cmd:?} at level {level}"
                );
            }
            assert!(audit(&ctx(1, true), cmd, &mut body).is_ok(), "{cmd:?}");
        }
        assert!(seen > 0, "no address-carrying command was decodable");
    }

    #[test]
    fn fast_copy_addresses_are_checked_against_the_windows_in_privileged_buffers() {
        let windows = [GmRange {
            start: 0x10_0000,
            size: 1 << 20,
        }];
        let regs = RegWhitelist::gen9(EngineId::Bcs);
        let ctx = |ppgtt| BufCtx {
            level: 1,
            ppgtt,
            has_ppgtt: true,
            regs: &regs,
            windows: &windows,
        };
        let cmd = decode(EngineId::Bcs, 0x5080_0008).unwrap();
        assert_eq!(cmd.op, Op::XyFastCopyBlt);
        // 16x16 pixels, pitch 64 bytes, linear.
        let body =
            |dst: u32, src: u32| vec![0x5080_0008, 64, 0, 0x0010_0010, dst, 0, 0, 64, src, 0];
        let inside = body(0x10_0000, 0x10_8000);
        assert_eq!(audit(&ctx(false), cmd, &mut inside.clone()), Ok(Flow::Next));
        for bad in [
            body(0x30_0000, 0x10_8000),
            body(0x10_0000, 0x0),
            body(0x1f_ffc0, 0x10_0000),
        ] {
            assert_eq!(
                audit(&ctx(false), cmd, &mut bad.clone()),
                Err(RejectReason::AddressOutOfWindow),
                "{bad:x?}"
            );
            // Through the PPGTT the guest can reach only its own shadowed frames.
            assert_eq!(audit(&ctx(true), cmd, &mut bad.clone()), Ok(Flow::Next));
        }
    }

    #[test]
    fn unaudited_ops_pass_unchanged_in_every_context() {
        let windows = [GmRange {
            start: 0,
            size: 1 << 20,
        }];
        let mut x: u32 = 0x9e37_79b9;
        let mut audited = 0;
        for (engine, cmd) in decodable() {
            if needs_audit(cmd.op) {
                audited += 1;
                continue;
            }
            let regs = RegWhitelist::gen9(engine);
            for level in 0..3u8 {
                for (ppgtt, has_ppgtt) in [(false, false), (false, true), (true, true)] {
                    let ctx = BufCtx {
                        level,
                        ppgtt,
                        has_ppgtt,
                        regs: &regs,
                        windows: &windows,
                    };
                    for _ in 0..4 {
                        let mut body: Vec<u32> = (0..cmd.len)
                            .map(|_| {
                                x ^= x << 13;
                                x ^= x >> 17;
                                x ^= x << 5;
                                x
                            })
                            .collect();
                        body[0] = cmd.header;
                        let before = body.clone();
                        assert_eq!(audit(&ctx, cmd, &mut body), Ok(Flow::Next), "{cmd:?}");
                        assert_eq!(body, before, "{cmd:?}");
                    }
                }
            }
        }
        assert!(audited > 0);
    }
}
