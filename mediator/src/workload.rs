//! The submission pipeline of one vGPU (spec §5, §6): ELSP → context image → shadow PPGTT
//! → copy and audit the ring slice and batches ([`Scanner`]) → a [`ShadowWorkload`] for the
//! host; host events → context write-back, user interrupts, CSB, context-switch interrupt.
//!
//! The pipeline does not own the host queue: accepted workloads are returned in
//! [`PipelineOutput::workloads`] for the caller to hand to the scheduler / [`HostEngines`]
//! (effects as data), and the caller feeds every [`HostEvent`] for this owner back through
//! [`Pipeline::host_event`].
//!
//! [`HostEngines`]: crate::host::HostEngines

use std::collections::BTreeMap;

use thiserror::Error;
use tracing::{debug, warn};

use crate::cmd::{
    GmSpace, RejectCounters, RejectReason, RingSlice, ScanLimits, ScanRequest, Scanner,
    ShadowWorkload, WorkloadContext,
};
use crate::effects::Effects;
use crate::execlist::{
    engine_from_mmio, write_ring_head, AddressingMode, CompletionStatus, ContextError,
    ContextImage, ContextKey, CsbTarget, ElementToken, EngineId, ExeclistEngine, ExeclistOutput,
    GgttLookup, GtIrq, IrqKind, Submission,
};
use crate::host::{GmRange, HostEvent, HostGtt, HostPte, OwnerId};
use crate::memory::{GuestMemory, PAGE_SHIFT};
use crate::ppgtt::{PpgttError, PpgttManager, PpgttRoot};

/// PVINFO `g2v_notify` codes (spec §2).
pub mod g2v {
    /// 3-level PPGTT created (`pdp[0..3]`).
    pub const PPGTT_L3_CREATE: u32 = 2;
    /// 3-level PPGTT destroyed.
    pub const PPGTT_L3_DESTROY: u32 = 3;
    /// 4-level PPGTT created (`pdp[0]` = PML4).
    pub const PPGTT_L4_CREATE: u32 = 4;
    /// 4-level PPGTT destroyed.
    pub const PPGTT_L4_DESTROY: u32 = 5;
}

/// Why a submitted element was not turned into a workload.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WorkloadError {
    /// The context image could not be read.
    #[error("context image: {0}")]
    Context(#[from] ContextError),
    /// The context's PPGTT could not be shadowed.
    #[error("PPGTT: {0}")]
    Ppgtt(#[from] PpgttError),
    /// The scanner refused the commands.
    #[error("command scan: {0:?}")]
    Scan(RejectReason),
}

/// Per-vGPU pipeline counters (tests and operators assert these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Workloads handed to the host.
    pub submitted: u64,
    /// Workloads the host completed.
    pub completed: u64,
    /// Scanner rejections, per reason.
    pub rejected: RejectCounters,
    /// Elements failed because the context image was unreadable.
    pub context_errors: u64,
    /// Elements failed because the PPGTT could not be shadowed.
    pub ppgtt_errors: u64,
    /// Host execution faults.
    pub faults: u64,
    /// Host-detected hangs.
    pub hangs: u64,
    /// Engine resets of this vGPU (after hangs).
    pub engine_resets: u64,
    /// Guest GGTT entries reflected into the host GGTT.
    pub ggtt_reflected: u64,
    /// Guest GGTT entries refused (foreign frame or host refusal).
    pub ggtt_refused: u64,
}

/// What one call produced, besides effects.
#[derive(Debug, Default)]
pub struct PipelineOutput {
    /// Interrupt events to raise in the virtual interrupt tree, in order.
    pub irqs: Vec<GtIrq>,
    /// Workloads to queue on the host (through the scheduler), in order.
    pub workloads: Vec<ShadowWorkload>,
    /// Register writes executed by completed workloads, for the vregs.
    pub reg_writes: Vec<(u32, u32)>,
    /// Engines whose host queue must be reset (after a hang of this vGPU's workload).
    pub reset_engines: Vec<EngineId>,
}

/// What the pipeline needs from its vGPU for one call.
pub struct PipelineEnv<'a> {
    /// Guest RAM.
    pub mem: &'a dyn GuestMemory,
    /// The guest GGTT (validated by the vGPU's GGTT model).
    pub ggtt: &'a dyn GgttLookup,
    /// Host page tables, for shadow PPGTTs.
    pub host: &'a mut dyn HostGtt,
    /// Effects (write protection) for the platform.
    pub fx: &'a mut Effects,
}

impl std::fmt::Debug for PipelineEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineEnv").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    engine: EngineId,
    token: ElementToken,
    lrca: u32,
    tail: u32,
}

/// Execlists, shadow PPGTTs and in-flight workloads of one vGPU.
#[derive(Debug)]
pub struct Pipeline {
    owner: OwnerId,
    windows: [GmRange; 2],
    hwsp_emulation: bool,
    engines: [ExeclistEngine; 4],
    scanners: [Scanner; 4],
    ppgtt: PpgttManager,
    inflight: BTreeMap<u64, InFlight>,
    next_tag: u64,
    next_seqno: u32,
    counters: PipelineCounters,
}

impl Pipeline {
    /// A pipeline for `owner` whose GGTT windows are `windows` (low, high).
    pub fn new(owner: OwnerId, windows: [GmRange; 2], hwsp_emulation: bool) -> Self {
        Self {
            owner,
            windows,
            hwsp_emulation,
            engines: EngineId::ALL.map(ExeclistEngine::new),
            scanners: EngineId::ALL.map(|e| Scanner::new(e, ScanLimits::default())),
            ppgtt: PpgttManager::new(owner),
            inflight: BTreeMap::new(),
            next_tag: 1,
            next_seqno: 1,
            counters: PipelineCounters::default(),
        }
    }

    /// Counters.
    pub fn counters(&self) -> &PipelineCounters {
        &self.counters
    }

    /// One engine's execlist state.
    pub fn engine(&self, e: EngineId) -> &ExeclistEngine {
        &self.engines[e.index()]
    }

    /// The shadow PPGTTs.
    pub fn ppgtt(&self) -> &PpgttManager {
        &self.ppgtt
    }

    /// Workloads handed out and not yet reported back.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Serves a 32-bit read of an execlist register (`offset` from BAR0); `None` if the
    /// register is not one the pipeline owns.
    pub fn mmio_read(&self, offset: u32) -> Option<u32> {
        let (e, rel) = engine_from_mmio(offset)?;
        self.engines.get(e.index())?.mmio_read(rel)
    }

    /// Serves a 32-bit write of an execlist register. Returns `false` if not owned.
    pub fn mmio_write(
        &mut self,
        offset: u32,
        value: u32,
        env: &mut PipelineEnv<'_>,
        out: &mut PipelineOutput,
    ) -> bool {
        let Some((e, rel)) = engine_from_mmio(offset) else {
            return false;
        };
        if !ExeclistEngine::owns(rel) {
            return false;
        }
        let mut ex = ExeclistOutput::default();
        let target = self.target(env);
        if let Some(engine) = self.engines.get_mut(e.index()) {
            // A refused pair is counted by the engine; the guest sees no CSB event.
            let _ = engine.mmio_write(rel, value, target, &mut ex);
        }
        self.absorb(ex, env, out);
        true
    }

    fn target<'a>(&self, env: &'a PipelineEnv<'_>) -> CsbTarget<'a> {
        CsbTarget {
            ggtt: env.ggtt,
            mem: env.mem,
            hwsp_emulation: self.hwsp_emulation,
        }
    }

    /// Takes execlist output: forwards interrupts, turns submissions into workloads.
    fn absorb(&mut self, ex: ExeclistOutput, env: &mut PipelineEnv<'_>, out: &mut PipelineOutput) {
        out.irqs.extend(ex.irqs);
        for sub in ex.submissions {
            match self.prepare(sub, env) {
                Ok(w) => {
                    self.counters.submitted += 1;
                    out.workloads.push(w);
                }
                Err(err) => {
                    self.count(&err);
                    debug!(owner = self.owner, engine = %sub.engine, %err, "element failed");
                    let mut ex = ExeclistOutput::default();
                    let target = self.target(env);
                    if let Some(engine) = self.engines.get_mut(sub.engine.index()) {
                        let tail = engine.mmio_read(crate::execlist::regs::RING_TAIL);
                        engine.complete(
                            sub.token,
                            CompletionStatus::Error,
                            tail.unwrap_or(0),
                            target,
                            &mut ex,
                        );
                    }
                    // Promotions of a pending pair are processed the same way.
                    self.absorb(ex, env, out);
                }
            }
        }
    }

    fn count(&mut self, err: &WorkloadError) {
        match err {
            WorkloadError::Context(_) => self.counters.context_errors += 1,
            WorkloadError::Ppgtt(_) => self.counters.ppgtt_errors += 1,
            WorkloadError::Scan(r) => self.counters.rejected.record(*r),
        }
    }

    /// Reads the context, shadows its PPGTT and scans its ring slice.
    fn prepare(
        &mut self,
        sub: Submission,
        env: &mut PipelineEnv<'_>,
    ) -> Result<ShadowWorkload, WorkloadError> {
        let img = ContextImage::read(sub.desc.lrca(), env.ggtt, env.mem)?;
        let root = match sub.desc.addressing_mode() {
            AddressingMode::Legacy32 => PpgttRoot::L3(img.pdp),
            _ => PpgttRoot::L4(img.pml4()),
        };
        let handle = self.ppgtt.create(root, env.mem, env.host, env.fx)?;
        let key = ContextKey {
            lrca: sub.desc.lrca(),
            ctx_id: sub.desc.context_id(),
        };
        let engine = &mut self.engines[sub.engine.index()];
        let head = match engine.resume_head(key) {
            Some(t) if !sub.desc.force_restore() => t,
            _ => img.head_offset(),
        };
        let tail = img.tail_offset();
        let tag = self.next_tag;
        let seqno = self.next_seqno;
        let req = ScanRequest {
            owner: self.owner,
            engine: sub.engine,
            tag,
            seqno,
            ring: RingSlice {
                start: u64::from(img.ring_start()),
                size: img.ring_size(),
                head,
                tail,
            },
            windows: self.windows,
            ppgtt: Some(handle),
            context: WorkloadContext {
                lrca: u64::from(sub.desc.lrca()),
                ctx_id: sub.desc.context_id(),
            },
        };
        let ppgtt = &self.ppgtt;
        let ggtt = env.ggtt;
        let tr = |space: GmSpace, gma: u64| match space {
            GmSpace::Ggtt => ggtt.gma_to_gpa(gma),
            GmSpace::Ppgtt => ppgtt
                .translate(root, gma)
                .map(|l| l.gfn << PAGE_SHIFT | (gma & 0xfff)),
        };
        let w = self.scanners[sub.engine.index()]
            .scan(&req, env.mem, &tr)
            .map_err(|r| WorkloadError::Scan(r.reason))?;
        self.next_tag = self.next_tag.wrapping_add(1);
        self.next_seqno = self.next_seqno.wrapping_add(1);
        engine.note_inflight(sub.token, key, tail);
        self.inflight.insert(
            tag,
            InFlight {
                engine: sub.engine,
                token: sub.token,
                lrca: sub.desc.lrca(),
                tail,
            },
        );
        Ok(w)
    }

    /// Feeds back one host event for this owner's workload.
    pub fn host_event(
        &mut self,
        ev: &HostEvent,
        env: &mut PipelineEnv<'_>,
        out: &mut PipelineOutput,
    ) {
        let (tag, status) = match ev {
            HostEvent::Complete { tag, .. } => (*tag, CompletionStatus::Done),
            HostEvent::Fault { tag, .. } | HostEvent::Hang { tag, .. } => {
                (*tag, CompletionStatus::Error)
            }
        };
        let Some(f) = self.inflight.remove(&tag) else {
            return; // stale: the engine was reset since
        };
        let mut ex = ExeclistOutput::default();
        match ev {
            HostEvent::Complete {
                interrupts,
                reg_writes,
                ..
            } => {
                self.counters.completed += 1;
                // 1. write back the context head (spec §5.6), 2. collected events.
                if let Err(e) = write_ring_head(f.lrca, f.tail, env.ggtt, env.mem) {
                    debug!(owner = self.owner, %e, "context head write-back failed");
                }
                let irq = |kind| GtIrq {
                    engine: f.engine,
                    kind,
                };
                if interrupts.user > 0 {
                    ex.irqs.push(irq(IrqKind::User));
                }
                if interrupts.flush_notify > 0 {
                    ex.irqs.push(irq(IrqKind::FlushNotify));
                }
                out.reg_writes.extend_from_slice(reg_writes);
            }
            HostEvent::Fault { reason, .. } => {
                self.counters.faults += 1;
                debug!(owner = self.owner, ?reason, "workload faulted");
            }
            HostEvent::Hang { .. } => {}
        }
        let target = self.target(env);
        let engine = &mut self.engines[f.engine.index()];
        engine.complete(f.token, status, f.tail, target, &mut ex);
        if matches!(ev, HostEvent::Hang { .. }) {
            self.counters.hangs += 1;
            self.counters.engine_resets += 1;
            warn!(owner = self.owner, engine = %f.engine, "engine hang: resetting this vGPU's engine");
            engine.reset();
            self.inflight.retain(|_, g| g.engine != f.engine);
            out.reset_engines.push(f.engine);
            ex.submissions.clear();
        }
        self.absorb(ex, env, out);
    }

    /// A PVINFO `g2v_notify` write with the current `pdp[]` values.
    pub fn g2v_notify(&mut self, code: u32, pdp: [u64; 4], env: &mut PipelineEnv<'_>) {
        let res = match code {
            g2v::PPGTT_L3_CREATE => self
                .ppgtt
                .create(PpgttRoot::L3(pdp), env.mem, env.host, env.fx)
                .map(|_| ()),
            g2v::PPGTT_L4_CREATE => self
                .ppgtt
                .create(PpgttRoot::L4(pdp[0]), env.mem, env.host, env.fx)
                .map(|_| ()),
            g2v::PPGTT_L3_DESTROY => {
                self.ppgtt.destroy(PpgttRoot::L3(pdp), env.host, env.fx);
                Ok(())
            }
            g2v::PPGTT_L4_DESTROY => {
                self.ppgtt.destroy(PpgttRoot::L4(pdp[0]), env.host, env.fx);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = res {
            self.counters.ppgtt_errors += 1;
            debug!(owner = self.owner, code, %e, "g2v PPGTT create failed");
        }
    }

    /// Whether `gpa` is a write-protected page-table frame: the vGPU's IoHandler must route
    /// MMIO writes there to [`Pipeline::protected_write`].
    pub fn is_write_protected(&self, gpa: u64) -> bool {
        self.ppgtt.is_protected(gpa)
    }

    /// A trapped guest write to a write-protected page-table frame.
    pub fn protected_write(&mut self, gpa: u64, data: &[u8], env: &mut PipelineEnv<'_>) {
        if let Err(e) = self
            .ppgtt
            .trapped_write(gpa, data, env.mem, env.host, env.fx)
        {
            self.counters.ppgtt_errors += 1;
            debug!(owner = self.owner, %e, "re-shadow after trapped write failed");
        }
    }

    /// Reflects one validated guest GGTT entry into the host GGTT (spec §4.3). `pte` is
    /// the guest's 64-bit value; `None` or an invalid/foreign frame unmaps.
    pub fn reflect_ggtt(
        &mut self,
        index: u64,
        pte: Option<u64>,
        mem: &dyn GuestMemory,
        host: &mut dyn HostGtt,
    ) {
        let entry = pte.filter(|v| v & 1 != 0).and_then(|v| {
            let gfn = (v & 0x0000_3FFF_FFFF_F000) >> PAGE_SHIFT;
            let owned = mem.owns_frame(gfn);
            if !owned {
                self.counters.ggtt_refused += 1;
            }
            owned.then_some(HostPte {
                owner: self.owner,
                gfn,
                writable: true,
            })
        });
        match host.ggtt_write(self.owner, index, entry) {
            Ok(()) => self.counters.ggtt_reflected += 1,
            Err(_) => self.counters.ggtt_refused += 1,
        }
    }

    /// vGPU or full GPU reset: every engine back to reset state, every shadow dropped.
    pub fn reset(&mut self, env: &mut PipelineEnv<'_>) {
        for e in &mut self.engines {
            e.reset_all();
        }
        self.inflight.clear();
        self.ppgtt.destroy_all(env.host, env.fx);
    }

    /// One engine reset (GDRST engine bit or RESET_CTL): forgets its pairs and in-flight
    /// work; registers are kept.
    pub fn reset_engine(&mut self, engine: EngineId) {
        self.engines[engine.index()].reset();
        self.inflight.retain(|_, g| g.engine != engine);
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
