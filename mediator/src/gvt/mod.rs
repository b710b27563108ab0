//! The mediator for one physical GPU: every vGPU, the host GPU, the schedulers and each
//! vGPU's submission pipeline, wired together.
//!
//! [`Gvt`] owns
//! * the [`VgpuManager`] (partitioning, types, the [`Vgpu`] register models);
//! * a `Box<dyn HostGpu>`, by default the software Gen9 engine ([`SwGpu`]) configured to
//!   partition exactly like the manager ([`SwConfig::for_host`]);
//! * one weighted [`Scheduler`] per engine, over the caller's [`Clock`];
//! * per vGPU: its [`Pipeline`] (execlists, shadow PPGTTs, scanner), its queue of scanned
//!   workloads per engine, and the effects produced outside guest accesses.
//!
//! The daemon's loop uses exactly this API:
//! * [`Gvt::io`] for every trapped access (`server.service(&mut gvt.io(id)?)`): the access
//!   goes to the vGPU (or, for a write-protected page-table frame, to the pipeline), then
//!   the vGPU's events are drained into the pipeline, the host GGTT and the queues in the
//!   same call;
//! * [`Gvt::poll`] when [`Gvt::next_deadline`] is due: finishes workloads whose modelled
//!   engine time has elapsed (CSB, seqno, interrupts), starts the next workloads the
//!   schedulers pick, handles faults and hangs, and ticks the display's vblank timers; it
//!   returns the effects (MSIs) per vGPU for `server.apply`.
//!
//! Time: a workload runs on the host synchronously at submission, but its completion is
//! delivered only when the clock reaches its start plus its modelled engine time, so the
//! engine is busy for exactly the time the scheduler charges.
//!
//! Anticipation: a guest that waits for each request before submitting the next has an
//! empty queue at every completion, and a purely work-conserving pick would then hand the
//! engine to the next vGPU every time, turning any weights into 1:1. So when a vGPU's
//! workload finishes with its queue empty while it still has credit, the engine is held
//! for it for up to one scheduler tick ([`ANTICIPATION`]); a refill within that window
//! continues its slice, otherwise the scheduler picks normally.

mod io;
mod run;
mod stats;

pub use run::ANTICIPATION;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub use io::GvtIo;
pub use stats::{TypeCaps, VgpuStats};

use crate::clock::Clock;
use crate::cmd::ShadowWorkload;
use crate::display::fb::{Frame, PlaneInfo};
use crate::display::png::{encode_png, PngExportError};
use crate::display::FbError;
use crate::effects::Effects;
use crate::host::{
    EngineId, GmRange, HostError, HostEvent, HostGpu, HostGtt, HostPte, OwnerId, PpgttHandle,
    ReserveAt, ReserveRequest,
};
use crate::manager::{CreateRequest, ManagerError, VgpuId, VgpuManager};
use crate::memory::GuestMemory;
use crate::partition::HostDescription;
use crate::pvinfo::CAP_HWSP_EMULATION;
use crate::sched::{SchedConfig, SchedError, Scheduler};
use crate::sw::{SwConfig, SwGpu};
use crate::vgpu::Vgpu;
use crate::vtypes;
use crate::workload::{Pipeline, PipelineEnv};

/// Why a [`Gvt`] operation failed.
#[derive(Debug, Error)]
pub enum GvtError {
    /// The manager refused (type, size, room, limit).
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The host refused.
    #[error("host GPU: {0}")]
    Host(HostError),
    /// The host reserved other windows than the manager allocated (host and manager are
    /// configured for different hosts).
    #[error("host reserved {host} but the manager allocated {manager}")]
    HostMismatch {
        /// What the host reserved.
        host: String,
        /// What the manager allocated.
        manager: String,
    },
    /// The scheduler refused (weight out of range).
    #[error(transparent)]
    Sched(#[from] SchedError),
    /// No vGPU with that id.
    #[error("no vGPU with id {0:?}")]
    NotFound(VgpuId),
    /// The framebuffer could not be decoded or read.
    #[error(transparent)]
    Framebuffer(#[from] FbError),
    /// PNG encoding failed.
    #[error(transparent)]
    Png(#[from] PngExportError),
}

impl From<HostError> for GvtError {
    fn from(e: HostError) -> Self {
        Self::Host(e)
    }
}

/// Per-vGPU state besides the [`Vgpu`] itself.
struct VgpuCtx {
    pipeline: Pipeline,
    /// Scanned workloads waiting for their engine, per engine index.
    queues: [VecDeque<ShadowWorkload>; 4],
    /// Effects produced outside guest accesses (completions), returned by `poll`.
    fx: Effects,
    /// `ggtt_writes_applied` when the GGTT was last reflected into the host.
    ggtt_seen: u64,
    /// Modelled engine time charged, per engine index.
    engine_ns: [u64; 4],
    /// Guest accesses routed through [`Gvt::io`].
    accesses: u64,
    /// Writes to write-protected page-table frames.
    protected_writes: u64,
    /// Trapped writes to guest RAM the pipeline does not protect (committed).
    unprotected_ram_writes: u64,
    /// Of those, writes that could not be committed (the frame would not map).
    unprotected_ram_write_errors: u64,
    /// Interrupt events raised from the pipeline.
    irqs_raised: u64,
    /// Submissions the host refused.
    host_refusals: u64,
    /// Queued workloads dropped by resets.
    dropped: u64,
}

/// A workload executing on one engine until `done_at`.
#[derive(Debug)]
struct Running {
    owner: VgpuId,
    done_at: Duration,
    events: Vec<HostEvent>,
}

/// The mediator of one physical GPU. See the module documentation.
pub struct Gvt {
    manager: VgpuManager,
    host: Box<dyn HostGpu>,
    clock: Arc<dyn Clock>,
    scheds: [Scheduler<Arc<dyn Clock>>; 4],
    running: [Option<Running>; 4],
    /// Anticipation per engine: the vGPU whose workload just finished keeps the engine
    /// until this time if it refills its queue (see [`Gvt::poll`]).
    hold: [Option<(VgpuId, Duration)>; 4],
    ctx: BTreeMap<VgpuId, VgpuCtx>,
}

impl fmt::Debug for Gvt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gvt")
            .field("vgpus", &self.manager.list())
            .finish_non_exhaustive()
    }
}

/// Forwards [`HostGtt`] to the whole host (keeps the crate's MSRV free of trait upcasts).
pub(crate) struct GttOf<'a>(pub &'a mut dyn HostGpu);

/// Runs `f` with `vgpu`'s pipeline environment: its guest RAM and GGTT, `host`'s page
/// tables and the effects list `fx`.
pub(crate) fn with_env<R>(
    vgpu: &Vgpu,
    host: &mut dyn HostGpu,
    fx: &mut Effects,
    f: impl FnOnce(&mut PipelineEnv<'_>) -> R,
) -> R {
    let mut gtt = GttOf(host);
    let mut env = PipelineEnv {
        mem: vgpu.mem().as_ref(),
        ggtt: vgpu.ggtt(),
        host: &mut gtt,
        fx,
    };
    f(&mut env)
}

impl HostGtt for GttOf<'_> {
    fn ggtt_write(
        &mut self,
        owner: OwnerId,
        index: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError> {
        self.0.ggtt_write(owner, index, pte)
    }
    fn ppgtt_create(&mut self, owner: OwnerId) -> Result<PpgttHandle, HostError> {
        self.0.ppgtt_create(owner)
    }
    fn ppgtt_map(
        &mut self,
        handle: PpgttHandle,
        gma: u64,
        pte: Option<HostPte>,
    ) -> Result<(), HostError> {
        self.0.ppgtt_map(handle, gma, pte)
    }
    fn ppgtt_destroy(&mut self, handle: PpgttHandle) -> Result<(), HostError> {
        self.0.ppgtt_destroy(handle)
    }
}

fn owner(id: VgpuId) -> OwnerId {
    id.0
}

impl Gvt {
    /// A mediator for `host` with the built-in vGPU types, on the software Gen9 engine.
    pub fn new(host: HostDescription, clock: Arc<dyn Clock>) -> Result<Gvt, GvtError> {
        let gpu = SwGpu::new(SwConfig::for_host(&host));
        Self::with_host(host, Box::new(gpu), clock)
    }

    /// A mediator on a caller-provided host GPU. Its partitioning must agree with `host`
    /// (otherwise [`Gvt::create_vgpu`] fails with [`GvtError::HostMismatch`]).
    pub fn with_host(
        host: HostDescription,
        gpu: Box<dyn HostGpu>,
        clock: Arc<dyn Clock>,
    ) -> Result<Gvt, GvtError> {
        Self::with_types(host, vtypes::builtin_types(), gpu, clock)
    }

    /// A mediator offering `types` (e.g. the daemon's configured types) on a
    /// caller-provided host GPU (see [`Gvt::with_host`]).
    pub fn with_types(
        host: HostDescription,
        types: Vec<vtypes::VgpuType>,
        gpu: Box<dyn HostGpu>,
        clock: Arc<dyn Clock>,
    ) -> Result<Gvt, GvtError> {
        let manager = VgpuManager::new(host, types)?;
        let scheds =
            EngineId::ALL.map(|_| Scheduler::new(Arc::clone(&clock), SchedConfig::default()));
        Ok(Gvt {
            manager,
            host: gpu,
            clock,
            scheds,
            running: [None, None, None, None],
            hold: [None; 4],
            ctx: BTreeMap::new(),
        })
    }

    /// Creates a vGPU with guest RAM `mem`: allocates its windows and fences, reserves the
    /// same in the host, registers it with every engine's scheduler at its type's weight.
    pub fn create_vgpu(
        &mut self,
        req: &CreateRequest,
        mem: Arc<dyn GuestMemory>,
    ) -> Result<VgpuId, GvtError> {
        let id = self.manager.create(req, Arc::clone(&mem))?;
        self.finish_create(id, mem, false)
    }

    /// Like [`Gvt::create_vgpu`], at exactly the windows and fences of `at` (a vGPU
    /// re-created where its guest already ballooned). The host must place it there too,
    /// else [`GvtError::HostMismatch`].
    pub fn create_vgpu_at(
        &mut self,
        req: &CreateRequest,
        at: &crate::partition::Allocation,
        mem: Arc<dyn GuestMemory>,
    ) -> Result<VgpuId, GvtError> {
        let id = self.manager.create_at(req, at, Arc::clone(&mem))?;
        self.finish_create(id, mem, true)
    }

    fn finish_create(
        &mut self,
        id: VgpuId,
        mem: Arc<dyn GuestMemory>,
        exact: bool,
    ) -> Result<VgpuId, GvtError> {
        match self.attach_host(id, mem, exact) {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = self.host.release(owner(id));
                for s in &mut self.scheds {
                    let _ = s.remove_vgpu(owner(id));
                }
                let _ = self.manager.destroy(id);
                Err(e)
            }
        }
    }

    fn attach_host(
        &mut self,
        id: VgpuId,
        mem: Arc<dyn GuestMemory>,
        exact: bool,
    ) -> Result<(), GvtError> {
        let v = self.manager.get(id).ok_or(GvtError::NotFound(id))?;
        let cfg = v.config().clone();
        let a = cfg.allocation;
        let res = self.host.reserve(ReserveRequest {
            owner: owner(id),
            low_size: a.low.size,
            high_size: a.high.size,
            fences: a.fences.count,
            memory: mem,
            at: exact.then_some(ReserveAt {
                low_start: a.low.base,
                high_start: a.high.base,
                fence_base: a.fences.base,
            }),
        })?;
        let low = GmRange {
            start: a.low.base,
            size: a.low.size,
        };
        let high = GmRange {
            start: a.high.base,
            size: a.high.size,
        };
        let fences_ok = a.fences.count == 0
            || (res.fence_base == a.fences.base && res.fence_count == a.fences.count);
        if res.low != low || res.high != high || !fences_ok {
            return Err(GvtError::HostMismatch {
                host: format!("{res:?}"),
                manager: format!("{a:?}"),
            });
        }
        for s in &mut self.scheds {
            s.add_vgpu(owner(id), cfg.weight)?;
        }
        let hwsp = cfg.caps & CAP_HWSP_EMULATION != 0;
        self.ctx.insert(
            id,
            VgpuCtx {
                pipeline: Pipeline::new(owner(id), [low, high], hwsp),
                queues: Default::default(),
                fx: Effects::new(),
                ggtt_seen: 0,
                engine_ns: [0; 4],
                accesses: 0,
                protected_writes: 0,
                unprotected_ram_writes: 0,
                unprotected_ram_write_errors: 0,
                irqs_raised: 0,
                host_refusals: 0,
                dropped: 0,
            },
        );
        Ok(())
    }

    /// Destroys a vGPU: drops its shadows (the returned effects lift their write
    /// protection; apply them if the domain still exists), releases its host reservation
    /// and scheduler entries, returns its windows to the manager.
    pub fn destroy_vgpu(&mut self, id: VgpuId) -> Result<Effects, GvtError> {
        let mut fx = Effects::new();
        let vgpu = self.manager.get(id).ok_or(GvtError::NotFound(id))?;
        if let Some(mut c) = self.ctx.remove(&id) {
            with_env(vgpu, self.host.as_mut(), &mut fx, |env| {
                c.pipeline.reset(env)
            });
        }
        for r in self.running.iter_mut() {
            if r.as_ref().is_some_and(|r| r.owner == id) {
                // The engine finishes the workload; nobody is told.
                if let Some(r) = r.as_mut() {
                    r.events.clear();
                }
            }
        }
        for s in &mut self.scheds {
            let _ = s.remove_vgpu(owner(id));
        }
        for h in self.hold.iter_mut() {
            if h.is_some_and(|(who, _)| who == id) {
                *h = None;
            }
        }
        let _ = self.host.release(owner(id));
        self.manager.destroy(id)?;
        Ok(fx)
    }

    /// The access handler for vGPU `id` (see [`GvtIo`]); `None` if there is no such vGPU.
    pub fn io(&mut self, id: VgpuId) -> Option<GvtIo<'_>> {
        (self.manager.get(id).is_some() && self.ctx.contains_key(&id)).then(|| GvtIo::new(self, id))
    }

    /// Ids of all vGPUs.
    pub fn list(&self) -> Vec<VgpuId> {
        self.manager.list()
    }

    /// A vGPU's register model (read-only: configuration, counters, display).
    pub fn vgpu(&self, id: VgpuId) -> Option<&Vgpu> {
        self.manager.get(id)
    }

    /// A vGPU's pipeline (execlists, shadows, counters).
    pub fn pipeline(&self, id: VgpuId) -> Option<&Pipeline> {
        self.ctx.get(&id).map(|c| &c.pipeline)
    }

    /// The host description being partitioned.
    pub fn host_description(&self) -> &HostDescription {
        self.manager.host()
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Replaces the type table for vGPUs created from now on ([`VgpuManager::set_types`]).
    pub fn set_types(&mut self, types: Vec<vtypes::VgpuType>) {
        self.manager.set_types(types);
    }

    /// The vGPU types with available instances and display capabilities.
    pub fn types(&self) -> Vec<TypeCaps> {
        self.manager
            .types()
            .into_iter()
            .map(|t| TypeCaps {
                display: crate::display::DisplayCaps::for_type(&t.ty.name, t.ty.low_gm),
                info: t,
            })
            .collect()
    }

    /// The decoded primary plane of vGPU `id` (pipe, format, size, GGTT offset, …).
    pub fn plane_info(&self, id: VgpuId) -> Result<PlaneInfo, GvtError> {
        let v = self.manager.get(id).ok_or(GvtError::NotFound(id))?;
        Ok(v.display().primary_plane()?)
    }

    /// The guest's framebuffer read through its GGTT, decoded to RGBA.
    pub fn scanout(&self, id: VgpuId) -> Result<Frame, GvtError> {
        let v = self.manager.get(id).ok_or(GvtError::NotFound(id))?;
        Ok(v.scanout()?)
    }

    /// The guest's framebuffer as PNG bytes.
    pub fn screenshot(&self, id: VgpuId) -> Result<Vec<u8>, GvtError> {
        let frame = self.scanout(id)?;
        Ok(encode_png(&frame.image)?)
    }
}

#[cfg(test)]
mod tests;
