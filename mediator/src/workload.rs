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
    regs, write_ring_head, AddressingMode, CompletionStatus, ContextError, ContextImage,
    ContextKey, CsbTarget, ElementToken, EngineId, ExeclistEngine, ExeclistOutput, GgttLookup,
    GtIrq, IrqKind, Submission,
};
use crate::host::{GmRange, HostEvent, HostGtt, HostPte, OwnerId};
use crate::memory::{GuestMemory, PAGE_SHIFT};
use crate::ppgtt::{PpgttError, PpgttManager, PpgttRoot};
use crate::pvinfo::G2vEvent;
use crate::vgpu::VgpuEvent;

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
    Context(ContextError),
    /// The context's PPGTT could not be shadowed.
    #[error("PPGTT: {0}")]
    Ppgtt(PpgttError),
    /// The scanner refused the commands.
    #[error("command scan: {0:?}")]
    Scan(RejectReason),
}

impl From<ContextError> for WorkloadError {
    fn from(e: ContextError) -> Self {
        Self::Context(e)
    }
}

impl From<PpgttError> for WorkloadError {
    fn from(e: PpgttError) -> Self {
        Self::Ppgtt(e)
    }
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

    /// Takes one event of the vGPU's register model (the single MMIO model: the vGPU
    /// latches ELSP and owns the registers; this pipeline owns what follows):
    /// * `ElspSubmit`: the pair is accepted or refused (§5.3); accepted elements become
    ///   workloads in `out` (or are failed with a CSB error event);
    /// * `ExeclistEnable` / `HwsPga`: mirrored into the engine's execlist state (§5.2);
    /// * `Reset`: engine resets forget that engine's pairs and in-flight work, a full reset
    ///   (and `DeviceReset`) also drops every shadow PPGTT;
    /// * `G2v`: PPGTT create/destroy notifications (§2).
    ///
    /// Other events are not the pipeline's and are ignored.
    pub fn on_vgpu_event(
        &mut self,
        ev: &VgpuEvent,
        env: &mut PipelineEnv<'_>,
        out: &mut PipelineOutput,
    ) {
        match *ev {
            VgpuEvent::ElspSubmit { engine, descs } => {
                let mut ex = ExeclistOutput::default();
                let target = self.target(env);
                // A refused pair is counted by the engine; the guest sees no CSB event.
                let _ = self.engines[engine.index()].submit(descs[0], descs[1], target, &mut ex);
                self.absorb(ex, env, out);
            }
            VgpuEvent::ExeclistEnable { engine, enabled } => {
                let v = if enabled { 0x8000_8000 } else { 0x8000_0000 };
                self.engines[engine.index()].set_reg(regs::RING_MODE, v);
            }
            VgpuEvent::HwsPga { engine, gm } => {
                self.engines[engine.index()].set_reg(regs::RING_HWS_PGA, gm);
            }
            VgpuEvent::Reset { full: true, .. } | VgpuEvent::DeviceReset => self.reset(env),
            VgpuEvent::Reset { engines, .. } => {
                for e in EngineId::ALL.into_iter().filter(|e| engines[e.index()]) {
                    self.engines[e.index()].reset_all();
                    self.inflight.retain(|_, g| g.engine != e);
                }
            }
            VgpuEvent::G2v(g) => {
                let (code, pdp) = match g {
                    G2vEvent::PpgttL3Create { pdps } => (g2v::PPGTT_L3_CREATE, pdps),
                    G2vEvent::PpgttL3Destroy { pdps } => (g2v::PPGTT_L3_DESTROY, pdps),
                    G2vEvent::PpgttL4Create { pml4 } => (g2v::PPGTT_L4_CREATE, [pml4, 0, 0, 0]),
                    G2vEvent::PpgttL4Destroy { pml4 } => (g2v::PPGTT_L4_DESTROY, [pml4, 0, 0, 0]),
                    _ => return,
                };
                self.g2v_notify(code, pdp, env);
            }
            _ => {}
        }
    }

    /// Adopts the guest-written RING_CONTEXT_STATUS_PTR of `engine` (the value stored in
    /// the vGPU's register file) before new CSB events are written (§5.7).
    pub fn adopt_csb_ptr(&mut self, engine: EngineId, value: u32) {
        self.engines[engine.index()].set_reg(regs::CONTEXT_STATUS_PTR, 0x0707_0000 | value);
    }

    /// The execlist registers of `engine` the guest reads, as (BAR0 offset, value):
    /// EXECLIST_STATUS, the CSB entries, RING_CONTEXT_STATUS_PTR and RING_HEAD/TAIL. The
    /// caller stores them in the vGPU's register file after every pipeline call.
    pub fn mirrored_regs(&self, engine: EngineId) -> Vec<(u32, u32)> {
        let base = engine.mmio_base();
        let e = &self.engines[engine.index()];
        let mut rels = vec![
            regs::EXECLIST_STATUS_LO,
            regs::EXECLIST_STATUS_HI,
            regs::CONTEXT_STATUS_PTR,
            regs::RING_HEAD,
            regs::RING_TAIL,
        ];
        rels.extend((regs::CSB_BASE..regs::CSB_END).step_by(4));
        rels.into_iter()
            .filter_map(|r| Some((base.checked_add(r)?, e.mmio_read(r)?)))
            .collect()
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
                        let tail = engine.mmio_read(regs::RING_TAIL);
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
        let w = match self.scanners[sub.engine.index()].scan(&req, env.mem, &tr) {
            Ok(w) => w,
            Err(r) => {
                // The rejected commands are skipped: the context's head moves to its tail,
                // as after a reset that drops the guilty request (§5.6).
                if let Err(e) = write_ring_head(sub.desc.lrca(), tail, env.ggtt, env.mem) {
                    debug!(owner = self.owner, %e, "head write-back after rejection failed");
                }
                return Err(WorkloadError::Scan(r.reason));
            }
        };
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
        // 1. write back the context head (spec §5.6; after a fault or hang the guilty
        // request is skipped, as a reset does), 2. collected events.
        if let Err(e) = write_ring_head(f.lrca, f.tail, env.ggtt, env.mem) {
            debug!(owner = self.owner, %e, "context head write-back failed");
        }
        match ev {
            HostEvent::Complete {
                interrupts,
                reg_writes,
                ..
            } => {
                self.counters.completed += 1;
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
