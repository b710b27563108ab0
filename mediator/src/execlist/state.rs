//! One engine's execlist state machine (spec §5.2, §5.7, §5.8): ELSP acceptance, the
//! running and pending pairs, CSB events and EXECLIST_STATUS.
//!
//! Model: every element of an accepted pair is handed out as a [`Submission`] carrying an
//! [`ElementToken`]; the pipeline executes them in order and reports each back with
//! [`ExeclistEngine::complete`]. Tokens of elements replaced by a lite restore become
//! stale: their completion writes no CSB event.

use std::collections::VecDeque;

use tracing::debug;

use crate::memory::GuestMemory;

use super::context::ContextKey;
use super::csb::{Csb, CsbEvent, HwspWrite};
use super::descriptor::{ContextDescriptor, ElspError, ElspPair};
use super::engine::{EngineId, GtIrq, IrqKind};
use super::{masked_update, regs, GgttLookup};

/// Identifies one submitted element until its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementToken(pub u64);

/// An element the pipeline must execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Engine it runs on.
    pub engine: EngineId,
    /// Token to report completion with.
    pub token: ElementToken,
    /// The element's descriptor.
    pub desc: ContextDescriptor,
}

/// How an element ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    /// Executed normally.
    Done,
    /// Rejected or faulted: the context is completed with a command-streamer error.
    Error,
}

/// What an access produced: interrupts to raise and elements to execute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExeclistOutput {
    /// Interrupt events, in order.
    pub irqs: Vec<GtIrq>,
    /// Elements to execute, in order.
    pub submissions: Vec<Submission>,
}

/// Where CSB entries go besides MMIO.
#[derive(Clone, Copy)]
pub struct CsbTarget<'a> {
    /// Guest GGTT for RING_HWS_PGA translation.
    pub ggtt: &'a dyn GgttLookup,
    /// Guest RAM.
    pub mem: &'a dyn GuestMemory,
    /// `VGT_CAPS_HWSP_EMULATION` advertised: write entries into the HWSP too.
    pub hwsp_emulation: bool,
}

impl std::fmt::Debug for CsbTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsbTarget")
            .field("hwsp_emulation", &self.hwsp_emulation)
            .finish()
    }
}

/// Per-engine counters tests and operators read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeclistCounters {
    /// Accepted ELSP pairs.
    pub elsp_accepted: u64,
    /// Refused ELSP pairs (invalid, GGTT, mode, disabled, overflow).
    pub elsp_rejected: u64,
    /// Lite restores.
    pub lite_restores: u64,
    /// CSB entries written.
    pub csb_entries: u64,
    /// CSB entries whose HWSP copy could not be written.
    pub hwsp_unmapped: u64,
    /// Elements completed normally.
    pub completed: u64,
    /// Elements completed with an error.
    pub errors: u64,
    /// Engine resets.
    pub resets: u64,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    pair: ElspPair,
    tokens: [ElementToken; 2],
    /// Which element is executing (0 or 1).
    current: u8,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    token: ElementToken,
    key: ContextKey,
    tail: u32,
}

/// One engine's execlist registers and state.
#[derive(Debug)]
pub struct ExeclistEngine {
    engine: EngineId,
    ring_mode: u32,
    hws_pga: u32,
    ring_head: u32,
    ring_tail: u32,
    csb: Csb,
    active: Option<Active>,
    pending: Option<ElspPair>,
    inflight: VecDeque<InFlight>,
    next_token: u64,
    counters: ExeclistCounters,
}

impl ExeclistEngine {
    /// An engine in reset state: execlists off, nothing running, CSB write pointer 7.
    pub fn new(engine: EngineId) -> Self {
        Self {
            engine,
            ring_mode: 0,
            hws_pga: 0,
            ring_head: 0,
            ring_tail: 0,
            csb: Csb::default(),
            active: None,
            pending: None,
            inflight: VecDeque::new(),
            next_token: 1,
            counters: ExeclistCounters::default(),
        }
    }

    /// Which engine this is.
    pub fn engine(&self) -> EngineId {
        self.engine
    }

    /// RUN_LIST_ENABLE is set in RING_MODE.
    pub fn enabled(&self) -> bool {
        self.ring_mode & regs::RUN_LIST_ENABLE != 0
    }

    /// RING_HWS_PGA as programmed.
    pub fn hws_pga(&self) -> u32 {
        self.hws_pga
    }

    /// The CSB (tests, debug).
    pub fn csb(&self) -> &Csb {
        &self.csb
    }

    /// Counters.
    pub fn counters(&self) -> ExeclistCounters {
        self.counters
    }

    /// Whether nothing is running or pending.
    pub fn idle(&self) -> bool {
        self.active.is_none() && self.pending.is_none()
    }

    /// Whether `rel` (offset from the engine base) is a register this module serves.
    pub fn owns(rel: u32) -> bool {
        matches!(
            rel,
            regs::RING_TAIL
                | regs::RING_HEAD
                | regs::RING_HWS_PGA
                | regs::RING_ELSP
                | regs::EXECLIST_STATUS_LO
                | regs::EXECLIST_STATUS_HI
                | regs::RING_MODE
                | regs::CONTEXT_STATUS_PTR
        ) || (regs::CSB_BASE..=regs::CSB_END).contains(&rel)
    }

    /// Serves a 32-bit read of an owned register; `None` if not owned.
    pub fn mmio_read(&self, rel: u32) -> Option<u32> {
        Some(match rel {
            regs::RING_TAIL => self.ring_tail,
            regs::RING_HEAD => self.ring_head,
            regs::RING_HWS_PGA => self.hws_pga,
            regs::RING_ELSP => 0,
            regs::EXECLIST_STATUS_LO => self.status_lo(),
            regs::EXECLIST_STATUS_HI => self.status_hi(),
            regs::RING_MODE => self.ring_mode,
            regs::CONTEXT_STATUS_PTR => self.csb.ptr_read(),
            r if (regs::CSB_BASE..=regs::CSB_END).contains(&r) => {
                self.csb.mmio_read(r - regs::CSB_BASE)
            }
            _ => return None,
        })
    }

    /// Mirrors a register value the guest wrote into the vGPU's register file (RING_MODE,
    /// RING_HWS_PGA, RING_CONTEXT_STATUS_PTR, RING_HEAD/TAIL). ELSP is not a register here:
    /// the vGPU latches the four writes and hands the pair to [`Self::submit`]. Returns
    /// `false` if `rel` is not one of those registers.
    pub fn set_reg(&mut self, rel: u32, value: u32) -> bool {
        match rel {
            regs::RING_TAIL => self.ring_tail = value,
            regs::RING_HEAD => self.ring_head = value,
            regs::RING_HWS_PGA => self.hws_pga = value & !0xfff,
            regs::RING_MODE => self.ring_mode = masked_update(self.ring_mode, value),
            regs::CONTEXT_STATUS_PTR => self.csb.ptr_write(value),
            _ => return false,
        }
        true
    }

    /// Accepts (or refuses) a descriptor pair as if written through ELSP.
    pub fn submit(
        &mut self,
        desc0: u64,
        desc1: u64,
        target: CsbTarget<'_>,
        out: &mut ExeclistOutput,
    ) -> Result<(), ElspError> {
        let res = self.accept(desc0, desc1, target, out);
        match res {
            Ok(()) => self.counters.elsp_accepted += 1,
            Err(e) => {
                self.counters.elsp_rejected += 1;
                debug!(engine = %self.engine, error = %e, "ELSP submission refused");
            }
        }
        res
    }

    fn accept(
        &mut self,
        desc0: u64,
        desc1: u64,
        target: CsbTarget<'_>,
        out: &mut ExeclistOutput,
    ) -> Result<(), ElspError> {
        if !self.enabled() {
            return Err(ElspError::NotEnabled);
        }
        let pair = ElspPair::validate(desc0, desc1)?;
        let Some(active) = self.active else {
            self.start(pair, target, out);
            return Ok(());
        };
        if is_lite_restore(&active, &pair) {
            self.counters.lite_restores += 1;
            let id = pair.elem0.context_id();
            self.activate(pair, out);
            self.csb_event(CsbEvent::PREEMPTED | CsbEvent::LITE_RESTORE, id, target);
            self.irq(IrqKind::ContextSwitch, out);
            return Ok(());
        }
        if self.pending.is_some() {
            return Err(ElspError::QueueFull);
        }
        self.pending = Some(pair);
        Ok(())
    }

    fn start(&mut self, pair: ElspPair, target: CsbTarget<'_>, out: &mut ExeclistOutput) {
        self.activate(pair, out);
        self.csb_event(CsbEvent::IDLE_TO_ACTIVE, 0, target);
        self.irq(IrqKind::ContextSwitch, out);
    }

    fn activate(&mut self, pair: ElspPair, out: &mut ExeclistOutput) {
        let mut tokens = [ElementToken(0); 2];
        for (slot, desc) in tokens.iter_mut().zip(pair.elements()) {
            *slot = ElementToken(self.next_token);
            self.next_token = self.next_token.wrapping_add(1);
            out.submissions.push(Submission {
                engine: self.engine,
                token: *slot,
                desc,
            });
        }
        self.active = Some(Active {
            pair,
            tokens,
            current: 0,
        });
    }

    /// Records that `token` (context `key`) was queued for execution up to `tail`, so a
    /// lite restore of the same context resumes from there.
    pub fn note_inflight(&mut self, token: ElementToken, key: ContextKey, tail: u32) {
        self.inflight.push_back(InFlight { token, key, tail });
    }

    /// The tail of the newest in-flight workload of context `key`, if any: where a
    /// resubmission of that context continues (spec §5.6).
    pub fn resume_head(&self, key: ContextKey) -> Option<u32> {
        self.inflight
            .iter()
            .rev()
            .find(|f| f.key == key)
            .map(|f| f.tail)
    }

    /// Reports an element finished; writes the CSB events of spec §5.7 ("recommended simple
    /// model") and raises the context-switch interrupt. `ring_tail` updates the MMIO
    /// RING_HEAD/RING_TAIL idle indication.
    pub fn complete(
        &mut self,
        token: ElementToken,
        status: CompletionStatus,
        ring_tail: u32,
        target: CsbTarget<'_>,
        out: &mut ExeclistOutput,
    ) {
        self.inflight.retain(|f| f.token != token);
        self.ring_tail = ring_tail;
        self.ring_head = ring_tail;
        match status {
            CompletionStatus::Done => self.counters.completed += 1,
            CompletionStatus::Error => {
                self.counters.errors += 1;
                self.irq(IrqKind::CsError, out);
            }
        }
        let Some(mut active) = self.active else {
            return;
        };
        let current = usize::from(active.current);
        if active.tokens.get(current) != Some(&token) {
            // Replaced by a lite restore, or not the running element: no event.
            return;
        }
        let id = if current == 0 {
            active.pair.elem0.context_id()
        } else {
            active.pair.elem1.map_or(0, |d| d.context_id())
        };
        if current == 0 && active.pair.elem1.is_some() {
            active.current = 1;
            self.active = Some(active);
            self.csb_event(CsbEvent::COMPLETE | CsbEvent::ELEMENT_SWITCH, id, target);
        } else {
            self.active = None;
            self.csb_event(CsbEvent::COMPLETE | CsbEvent::ACTIVE_TO_IDLE, id, target);
            if let Some(next) = self.pending.take() {
                self.activate(next, out);
                self.csb_event(CsbEvent::IDLE_TO_ACTIVE, 0, target);
            }
        }
        self.irq(IrqKind::ContextSwitch, out);
    }

    /// Engine reset (GDRST, RESET_CTL, or a host-detected hang): forgets running and
    /// pending pairs and any partial ELSP write; in-flight completions become stale.
    /// The CSB pointer and registers keep their values: the guest resets them itself.
    pub fn reset(&mut self) {
        self.active = None;
        self.pending = None;
        self.inflight.clear();
        self.counters.resets += 1;
    }

    /// Full reset including registers (GDRST full reset / vGPU reset).
    pub fn reset_all(&mut self) {
        let counters = self.counters;
        let next_token = self.next_token;
        *self = Self::new(self.engine);
        self.counters = counters;
        self.counters.resets += 1;
        self.next_token = next_token;
    }

    fn csb_event(&mut self, event: u32, ctx_id: u32, target: CsbTarget<'_>) {
        let hwsp = target
            .hwsp_emulation
            .then_some((self.hws_pga, target.ggtt, target.mem));
        let (_, hw) = self.csb.push(event, ctx_id, hwsp);
        self.counters.csb_entries += 1;
        if hw == HwspWrite::Unmapped {
            self.counters.hwsp_unmapped += 1;
        }
    }

    fn irq(&self, kind: IrqKind, out: &mut ExeclistOutput) {
        let irq = GtIrq {
            engine: self.engine,
            kind,
        };
        out.irqs.push(irq);
    }

    fn status_lo(&self) -> u32 {
        let mut v = 0;
        if let Some(a) = &self.active {
            v |= u32::from(a.current) & 1;
            v |= 1 << 4;
            if a.pair.elem1.is_some() {
                v |= 1 << 3;
            }
            v |= if a.current == 0 { 1 << 18 } else { 1 << 17 };
        }
        if self.pending.is_some() {
            v |= 1 << 2;
        }
        v
    }

    fn status_hi(&self) -> u32 {
        self.active.map_or(0, |a| {
            if a.current == 0 {
                a.pair.elem0.context_id()
            } else {
                a.pair.elem1.map_or(0, |d| d.context_id())
            }
        })
    }
}

fn key(d: ContextDescriptor) -> ContextKey {
    ContextKey {
        lrca: d.lrca(),
        ctx_id: d.context_id(),
    }
}

fn is_lite_restore(active: &Active, new: &ElspPair) -> bool {
    let new0 = key(new.elem0);
    match active.pair.elem1 {
        None => key(active.pair.elem0) == new0,
        Some(e1) => key(e1) == new0 && active.current == 1,
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
