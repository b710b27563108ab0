//! The software command streamer: executes a [`ShadowWorkload`]'s copied ring slice and
//! batches (§5.6, §6.2–§6.5, §6.8), with a deterministic cost model.
//!
//! Cost model ([`CostModel`], all values in nanoseconds of engine time): every command costs
//! `per_command_ns + per_dword_ns × length`; a blit adds `per_pixel_ns` per pixel; each
//! MI_SEMAPHORE_WAIT poll costs `semaphore_poll_ns`. Engine time is what the scheduler
//! charges, so shares are reproducible. A semaphore that stays unsatisfied for
//! `semaphore_polls` polls, or more than `max_commands` executed commands, is a hang.

use std::collections::HashMap;

use super::blit;
use super::space::Access;
use crate::cmd::parse::{decode, Cmd, Op};
use crate::cmd::{BatchKey, ShadowWorkload};
use crate::host::{AddressSpace, EngineInterrupts, FaultReason};

/// Deterministic engine-time costs (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostModel {
    /// Fixed cost of any command.
    pub per_command_ns: u64,
    /// Additional cost per dword of a command.
    pub per_dword_ns: u64,
    /// Cost per blitted pixel.
    pub per_pixel_ns: u64,
    /// Cost of one semaphore poll.
    pub semaphore_poll_ns: u64,
    /// Polls before an unsatisfied semaphore is declared a hang.
    pub semaphore_polls: u32,
    /// Commands per workload before it is declared a hang.
    pub max_commands: u64,
    /// Largest blit in pixels (bigger ones fault).
    pub max_blit_pixels: u64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            per_command_ns: 50,
            per_dword_ns: 5,
            per_pixel_ns: 1,
            semaphore_poll_ns: 1_000,
            semaphore_polls: 1_000,
            max_commands: 4_000_000,
            max_blit_pixels: 16 << 20,
        }
    }
}

/// How execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Fault(FaultReason),
    Hang,
}

impl From<FaultReason> for Stop {
    fn from(f: FaultReason) -> Self {
        Stop::Fault(f)
    }
}

/// Result of running one workload.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub end: Result<(), Stop>,
    pub time_ns: u64,
    pub interrupts: EngineInterrupts,
    pub reg_writes: Vec<(u32, u32)>,
}

struct Frame<'w> {
    dwords: &'w [u32],
    pos: usize,
    level: u8,
    ppgtt: bool,
}

/// Executor state for one workload.
pub(crate) struct Exec<'a, 'w> {
    pub w: &'w ShadowWorkload,
    pub acc: Access<'a>,
    pub regs: &'a mut HashMap<u32, u32>,
    pub cost: CostModel,
    /// Engine time before this workload (for RING_TIMESTAMP).
    pub time_base_ns: u64,
    pub time_ns: u64,
    pub interrupts: EngineInterrupts,
    pub reg_writes: Vec<(u32, u32)>,
}

fn dw(body: &[u32], i: usize) -> u32 {
    body.get(i).copied().unwrap_or(0)
}

fn gma48(lo: u32, hi: u32) -> u64 {
    u64::from(lo & !3) | (u64::from(hi & 0xffff) << 32)
}

impl<'a, 'w> Exec<'a, 'w> {
    /// Runs the workload to completion, a fault or a hang.
    pub fn run(mut self) -> Outcome {
        let end = self.run_inner();
        Outcome {
            end,
            time_ns: self.time_ns,
            interrupts: self.interrupts,
            reg_writes: self.reg_writes,
        }
    }

    fn charge(&mut self, ns: u64) {
        self.time_ns = self.time_ns.saturating_add(ns);
    }

    fn run_inner(&mut self) -> Result<(), Stop> {
        let w = self.w;
        let mut stack = vec![Frame {
            dwords: w.ring(),
            pos: 0,
            level: 0,
            ppgtt: false,
        }];
        let mut steps = 0u64;
        while let Some(top) = stack.last_mut() {
            let pos = top.pos;
            let Some(&h) = top.dwords.get(pos) else {
                stack.pop();
                continue;
            };
            steps += 1;
            if steps > self.cost.max_commands {
                return Err(Stop::Hang);
            }
            let bad = FaultReason::BadCommand {
                offset: (pos as u64).saturating_mul(4),
                header: h,
            };
            let cmd = decode(w.engine(), h).map_err(|_| bad.clone())?;
            let end = pos.saturating_add(cmd.len as usize);
            let body = top.dwords.get(pos..end).ok_or(bad.clone())?;
            top.pos = end;
            let (level, ppgtt) = (top.level, top.ppgtt);
            let per = self.cost.per_dword_ns.saturating_mul(u64::from(cmd.len));
            self.charge(self.cost.per_command_ns.saturating_add(per));
            match cmd.op {
                Op::BatchBufferEnd if level == 0 => return Err(bad.into()),
                Op::BatchBufferEnd => {
                    stack.pop();
                }
                Op::BatchBufferStart => {
                    let second = h & (1 << 22) != 0;
                    let key_ppgtt = ppgtt || h & (1 << 8) != 0;
                    let gma = gma48(dw(body, 1), dw(body, 2));
                    let (new_level, replace) = match (level, second) {
                        (0, false) => (1, false),
                        (1, true) => (2, false),
                        (1 | 2, false) => (level, true),
                        _ => return Err(bad.into()),
                    };
                    let key = BatchKey {
                        gma,
                        ppgtt: key_ppgtt,
                        level: new_level,
                    };
                    let batch = w.batch(key).ok_or(FaultReason::UnscannedBatch { gma })?;
                    let frame = Frame {
                        dwords: batch.dwords(),
                        pos: 0,
                        level: new_level,
                        ppgtt: key_ppgtt,
                    };
                    if replace {
                        stack.pop();
                    }
                    stack.push(frame);
                }
                _ => self.exec(&cmd, body, ppgtt)?,
            }
        }
        Ok(())
    }

    /// Address space for a command's GGTT-select bit; `None` means "drop" (a GGTT access
    /// from a non-privileged batch, §6.3).
    pub(super) fn space(
        &self,
        ggtt: bool,
        nonpriv: bool,
    ) -> Result<Option<AddressSpace>, FaultReason> {
        if ggtt && nonpriv {
            return Ok(None);
        }
        self.acc.space(ggtt).map(Some)
    }

    fn write(&mut self, ggtt: bool, nonpriv: bool, gma: u64, data: &[u8]) -> Result<(), Stop> {
        if let Some(space) = self.space(ggtt, nonpriv)? {
            self.acc.write(space, gma, data)?;
        }
        Ok(())
    }

    fn reg_write(&mut self, reg: u32, val: u32) {
        let reg = reg & 0x7F_FFFC;
        self.regs.insert(reg, val);
        self.reg_writes.push((reg, val));
    }

    /// 12 MHz RING_TIMESTAMP derived from engine time (§5.1).
    fn timestamp(&self) -> u64 {
        self.time_base_ns
            .saturating_add(self.time_ns)
            .saturating_mul(3)
            / 250
    }

    fn reg_read(&self, reg: u32) -> u32 {
        let reg = reg & 0x7F_FFFC;
        let rel = reg.wrapping_sub(self.w.engine().mmio_base());
        match rel {
            0x358 => self.timestamp() as u32,
            0x35C => (self.timestamp() >> 32) as u32,
            _ => self.regs.get(&reg).copied().unwrap_or(0),
        }
    }

    /// The PPHWSP address for store-data-index (§6.4: PPHWSP = LRCA + offset).
    fn index_addr(&self, offset: u64) -> u64 {
        self.w.context().lrca.saturating_add(offset & 0xFFF)
    }

    fn exec(&mut self, cmd: &Cmd, body: &[u32], nonpriv: bool) -> Result<(), Stop> {
        let h = cmd.header;
        let ggtt_bit = h & (1 << 22) != 0;
        match cmd.op {
            Op::UserInterrupt => {
                self.interrupts.user = self.interrupts.user.saturating_add(1);
            }
            Op::StoreDataImm => {
                let addr = gma48(dw(body, 1), dw(body, 2));
                let lo = dw(body, 3).to_le_bytes();
                if cmd.len >= 5 {
                    let v = u64::from(dw(body, 3)) | (u64::from(dw(body, 4)) << 32);
                    self.write(ggtt_bit, nonpriv, addr, &v.to_le_bytes())?;
                } else {
                    self.write(ggtt_bit, nonpriv, addr, &lo)?;
                }
            }
            Op::LoadRegisterImm => {
                for pair in body.get(1..).unwrap_or(&[]).chunks_exact(2) {
                    self.reg_write(dw(pair, 0), dw(pair, 1));
                }
            }
            Op::StoreRegisterMem => {
                let v = self.reg_read(dw(body, 1));
                let addr = gma48(dw(body, 2), dw(body, 3));
                self.write(ggtt_bit, nonpriv, addr, &v.to_le_bytes())?;
            }
            Op::LoadRegisterMem => {
                if let Some(space) = self.space(ggtt_bit, nonpriv)? {
                    let v = self.acc.read_u32(space, gma48(dw(body, 2), dw(body, 3)))?;
                    self.reg_write(dw(body, 1), v);
                }
            }
            Op::LoadRegisterReg => {
                let v = self.reg_read(dw(body, 1));
                self.reg_write(dw(body, 2), v);
            }
            Op::FlushDw => self.flush_dw(cmd, body, nonpriv)?,
            Op::PipeControl => self.pipe_control(body, nonpriv)?,
            Op::SemaphoreWait => self.semaphore(body, ggtt_bit, nonpriv)?,
            Op::XyColorBlt | Op::XySrcCopyBlt => {
                let pixels = blit::run(self, cmd, body, nonpriv)?;
                self.charge(pixels.saturating_mul(self.cost.per_pixel_ns));
            }
            // Everything else is length-decoded and skipped (§6.8).
            _ => {}
        }
        Ok(())
    }

    fn flush_dw(&mut self, cmd: &Cmd, body: &[u32], nonpriv: bool) -> Result<(), Stop> {
        let h = cmd.header;
        if h & (1 << 8) != 0 {
            self.interrupts.flush_notify = self.interrupts.flush_notify.saturating_add(1);
        }
        let post = (h >> 14) & 3;
        let lo = dw(body, 1);
        let mut ggtt = lo & (1 << 2) != 0;
        let mut addr = u64::from(lo & !7) | (u64::from(dw(body, 2) & 0xffff) << 32);
        if h & (1 << 21) != 0 {
            addr = self.index_addr(addr);
            ggtt = true;
        }
        match post {
            1 if cmd.len >= 5 => {
                let v = u64::from(dw(body, 3)) | (u64::from(dw(body, 4)) << 32);
                self.write(ggtt, nonpriv, addr, &v.to_le_bytes())
            }
            1 => self.write(ggtt, nonpriv, addr, &dw(body, 3).to_le_bytes()),
            3 => {
                let ts = self.timestamp();
                self.write(ggtt, nonpriv, addr, &ts.to_le_bytes())
            }
            _ => Ok(()),
        }
    }

    fn pipe_control(&mut self, body: &[u32], nonpriv: bool) -> Result<(), Stop> {
        let flags = dw(body, 1);
        if flags & (1 << 8) != 0 {
            self.interrupts.flush_notify = self.interrupts.flush_notify.saturating_add(1);
        }
        if flags & (1 << 23) != 0 {
            self.reg_write(dw(body, 2), dw(body, 4));
            return Ok(());
        }
        let mut ggtt = flags & (1 << 24) != 0;
        let mut addr = gma48(dw(body, 2), dw(body, 3));
        if flags & (1 << 21) != 0 {
            addr = self.index_addr(addr);
            ggtt = true;
        }
        let value = match (flags >> 14) & 3 {
            1 => u64::from(dw(body, 4)) | (u64::from(dw(body, 5)) << 32),
            2 | 3 => self.timestamp(),
            _ => return Ok(()),
        };
        self.write(ggtt, nonpriv, addr, &value.to_le_bytes())
    }

    fn semaphore(&mut self, body: &[u32], ggtt: bool, nonpriv: bool) -> Result<(), Stop> {
        let Some(space) = self.space(ggtt, nonpriv)? else {
            return Ok(());
        };
        let data = dw(body, 1);
        let addr = gma48(dw(body, 2), dw(body, 3));
        let op = (dw(body, 0) >> 12) & 7;
        let poll = dw(body, 0) & (1 << 15) != 0;
        let polls = if poll { self.cost.semaphore_polls } else { 1 };
        for _ in 0..polls.max(1) {
            let v = self.acc.read_u32(space, addr)?;
            let ok = match op {
                0 => v > data,
                1 => v >= data,
                2 => v < data,
                3 => v <= data,
                4 => v == data,
                5 => v != data,
                _ => {
                    return Err(FaultReason::BadCommand {
                        offset: 0,
                        header: dw(body, 0),
                    }
                    .into())
                }
            };
            self.charge(self.cost.semaphore_poll_ns);
            if ok {
                return Ok(());
            }
        }
        Err(Stop::Hang)
    }
}
