//! The access path: a trapped guest access goes to the vGPU (or to the pipeline for a
//! write-protected page-table frame); the vGPU's events are then drained into the
//! pipeline, the host GGTT and the engine queues before the access returns.

use std::sync::Arc;

use tracing::{debug, warn};

use crate::bus::{IoHandler, Space};
use crate::effects::{Effect, Effects};
use crate::host::{EngineId, HostGpu};
use crate::manager::VgpuId;
use crate::memory::PAGE_SHIFT;
use crate::regs::MMIO_SIZE;
use crate::vgpu::{Vgpu, VgpuEvent};
use crate::workload::PipelineOutput;

use super::{with_env, GttOf, Gvt, VgpuCtx};

/// The [`IoHandler`] of one vGPU, borrowed from its [`Gvt`] ([`Gvt::io`]).
///
/// * MMIO writes to a guest frame the pipeline write-protected (a guest PPGTT table) go
///   to [`crate::workload::Pipeline::protected_write`], which commits and re-shadows.
/// * Everything else goes to the [`Vgpu`].
/// * Then the vGPU's events are handled: GGTT changes are reflected into the host GGTT
///   (on PTE writes, GFX_FLSH_CNTL and before each submission), execlist events go to
///   the pipeline, accepted workloads are queued for the scheduler, the pipeline's
///   interrupts are raised in the vGPU (MSI effects into `fx`) and the execlist
///   registers the guest reads (CSB, EXECLIST_STATUS, CSB pointer) are mirrored into the
///   vGPU's register file.
pub struct GvtIo<'a> {
    gvt: &'a mut Gvt,
    id: VgpuId,
}

impl std::fmt::Debug for GvtIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GvtIo").field("id", &self.id).finish()
    }
}

impl<'a> GvtIo<'a> {
    pub(super) fn new(gvt: &'a mut Gvt, id: VgpuId) -> Self {
        Self { gvt, id }
    }

    fn access(&mut self, f: impl FnOnce(&mut Vgpu, &mut VgpuCtx, &mut dyn HostGpu) -> bool) {
        let Gvt {
            manager, host, ctx, ..
        } = &mut *self.gvt;
        let (Some(vgpu), Some(c)) = (manager.get_mut(self.id), ctx.get_mut(&self.id)) else {
            return;
        };
        c.accesses = c.accesses.saturating_add(1);
        f(vgpu, c, host.as_mut());
    }
}

impl IoHandler for GvtIo<'_> {
    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], fx: &mut Effects) {
        self.access(|vgpu, c, host| {
            vgpu.read(space, addr, data, fx);
            drain_events(vgpu, c, host, fx);
            true
        });
    }

    fn write(&mut self, space: Space, addr: u64, data: &[u8], fx: &mut Effects) {
        self.access(|vgpu, c, host| {
            if space == Space::Mmio && c.pipeline.is_write_protected(addr) {
                c.protected_writes = c.protected_writes.saturating_add(1);
                with_env(vgpu, host, fx, |env| {
                    c.pipeline.protected_write(addr, data, env)
                });
                return true;
            }
            if space == Space::Mmio && !vgpu.claims_mmio(addr) {
                let gfn = addr >> PAGE_SHIFT;
                if vgpu.mem().owns_frame(gfn) {
                    commit_unprotected(vgpu, c, addr, data, fx);
                    return true;
                }
            }
            vgpu.write(space, addr, data, fx);
            drain_events(vgpu, c, host, fx);
            true
        });
    }
}

/// A write to guest RAM outside the vGPU's BARs that the pipeline does not protect.
///
/// The platform forwards a write to a RAM frame only while the frame is typed for this
/// server (Xen's `p2m_ioreq_server`), and such a write is not committed by the platform.
/// The model has stopped protecting this frame (its PPGTT was destroyed or re-walked, or
/// lifting the protection failed), so the write is the guest's own store into a frame it
/// may already reuse for anything: dropping it would corrupt the guest. It is committed,
/// counted (`unprotected_ram_writes`), and the protection is lifted again.
fn commit_unprotected(vgpu: &Vgpu, c: &mut VgpuCtx, addr: u64, data: &[u8], fx: &mut Effects) {
    c.unprotected_ram_writes = c.unprotected_ram_writes.saturating_add(1);
    let n = c.unprotected_ram_writes;
    let ok = vgpu.mem().write(addr, data).is_ok();
    if !ok {
        c.unprotected_ram_write_errors = c.unprotected_ram_write_errors.saturating_add(1);
    }
    // Rate-limited: the 1st, 2nd, 4th, 8th... occurrence.
    if n.is_power_of_two() {
        warn!(
            vgpu = vgpu.config().id,
            gpa = format_args!("{addr:#x}"),
            len = data.len(),
            committed = ok,
            count = n,
            "trapped write to an unprotected guest RAM frame: committed, protection lifted"
        );
    }
    fx.push(Effect::WriteProtect {
        gfn: addr >> PAGE_SHIFT,
        protect: false,
    });
}

/// Reflects the guest GGTT entries changed since the last call into the host GGTT.
pub(super) fn reflect_ggtt(vgpu: &mut Vgpu, c: &mut VgpuCtx, host: &mut dyn HostGpu) {
    let applied = vgpu.counters().ggtt_writes_applied;
    let changes = vgpu.ggtt_mut().take_dirty();
    c.ggtt_seen = applied;
    if changes.is_empty() {
        return;
    }
    let mem = Arc::clone(vgpu.mem());
    let mut gtt = GttOf(host);
    for ch in changes {
        c.pipeline
            .reflect_ggtt(ch.index, ch.gpa.map(|g| g | 1), mem.as_ref(), &mut gtt);
    }
}

/// Handles the vGPU's queued events (see [`GvtIo`]).
pub(super) fn drain_events(
    vgpu: &mut Vgpu,
    c: &mut VgpuCtx,
    host: &mut dyn HostGpu,
    fx: &mut Effects,
) {
    if vgpu.counters().ggtt_writes_applied != c.ggtt_seen {
        reflect_ggtt(vgpu, c, host);
    }
    let events = vgpu.take_events();
    if events.is_empty() {
        return;
    }
    let mut out = PipelineOutput::default();
    for ev in &events {
        match ev {
            VgpuEvent::GgttFlush => {
                reflect_ggtt(vgpu, c, host);
                continue;
            }
            VgpuEvent::ElspSubmit { .. } => reflect_ggtt(vgpu, c, host),
            VgpuEvent::Reset { full, engines } => {
                for e in EngineId::ALL {
                    if *full || engines[e.index()] {
                        drop_queue(c, e);
                    }
                }
            }
            VgpuEvent::DeviceReset => {
                for e in EngineId::ALL {
                    drop_queue(c, e);
                }
            }
            _ => {}
        }
        adopt_csb_ptrs(vgpu, c);
        with_env(vgpu, host, fx, |env| {
            c.pipeline.on_vgpu_event(ev, env, &mut out)
        });
    }
    apply_output(vgpu, c, out, fx);
}

fn drop_queue(c: &mut VgpuCtx, e: EngineId) {
    if let Some(q) = c.queues.get_mut(e.index()) {
        c.dropped = c.dropped.saturating_add(q.len() as u64);
        q.clear();
    }
}

/// Gives the pipeline the guest-written CSB pointers before it writes CSB events.
pub(super) fn adopt_csb_ptrs(vgpu: &Vgpu, c: &mut VgpuCtx) {
    for e in EngineId::ALL {
        let v = vgpu
            .regs()
            .get(e.mmio_base() + crate::execlist::regs::CONTEXT_STATUS_PTR);
        c.pipeline.adopt_csb_ptr(e, v & 0x0707);
    }
}

/// Applies what the pipeline produced to the vGPU: interrupts, queued workloads, register
/// writes of completed workloads, mirrored execlist registers.
pub(super) fn apply_output(
    vgpu: &mut Vgpu,
    c: &mut VgpuCtx,
    out: PipelineOutput,
    fx: &mut Effects,
) {
    for w in out.workloads {
        if let Some(q) = c.queues.get_mut(w.engine().index()) {
            q.push_back(w);
        }
    }
    for (off, value) in out.reg_writes {
        if off < MMIO_SIZE && off % 4 == 0 {
            vgpu.regs_mut().set(off, value);
        }
    }
    for e in EngineId::ALL {
        for (off, value) in c.pipeline.mirrored_regs(e) {
            vgpu.regs_mut().set(off, value);
        }
    }
    for irq in out.irqs {
        c.irqs_raised = c.irqs_raised.saturating_add(1);
        vgpu.raise_irq(irq.into(), fx);
    }
    if !out.reset_engines.is_empty() {
        debug!(vgpu = vgpu.config().id, engines = ?out.reset_engines, "pipeline reset engines");
    }
}
