//! Time: running workloads on the host engines under the schedulers, delivering their
//! completions when their modelled engine time has elapsed, and display vblank ticks.

use std::time::Duration;

use tracing::warn;

use crate::effects::Effects;
use crate::host::{EngineId, FaultReason, HostEvent};
use crate::manager::VgpuId;
use crate::workload::PipelineOutput;

use super::io::{adopt_csb_ptrs, apply_output, reflect_ggtt};
use super::{owner, with_env, Gvt, Running};

/// Bound on workloads started per engine in one [`Gvt::poll`] (zero-cost workloads would
/// otherwise let one call run forever).
const MAX_STARTS_PER_POLL: usize = 4096;

/// How long an engine waits for the vGPU whose workload just finished to submit more
/// (one scheduler tick).
pub const ANTICIPATION: Duration = Duration::from_millis(1);

fn ns_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn event_ns(ev: &HostEvent) -> u64 {
    match ev {
        HostEvent::Complete { engine_time_ns, .. }
        | HostEvent::Fault { engine_time_ns, .. }
        | HostEvent::Hang { engine_time_ns, .. } => *engine_time_ns,
    }
}

impl Gvt {
    /// Advances everything to the clock's now: delivers finished workloads (context
    /// write-back, CSB, seqno, user and context-switch interrupts; faults as error
    /// completions; hangs reset the engine for that vGPU only and cost it scheduler
    /// credit), starts the workloads the per-engine schedulers pick (1 ms slices,
    /// weighted), and ticks each vGPU's vblank timers. Returns the effects (MSIs) produced
    /// per vGPU, for `DeviceServer::apply`.
    pub fn poll(&mut self) -> Vec<(VgpuId, Effects)> {
        let now = self.clock.now();
        for e in EngineId::ALL {
            self.run_engine(e, now);
        }
        let now_ns = ns_of(now);
        let Gvt { manager, ctx, .. } = self;
        let mut out = Vec::new();
        for (id, c) in ctx.iter_mut() {
            if let Some(v) = manager.get_mut(*id) {
                v.display_tick(now_ns, &mut c.fx);
            }
            if !c.fx.is_empty() {
                out.push((*id, std::mem::take(&mut c.fx)));
            }
        }
        out
    }

    /// When [`Gvt::poll`] next has work: the earliest workload completion or vblank, or
    /// now if work is queued on an idle engine. `None` if nothing is pending. In the
    /// clock's time base ([`crate::clock::Clock::now`]).
    pub fn next_deadline(&self) -> Option<Duration> {
        let now = self.clock.now();
        let mut best: Option<Duration> = None;
        let mut consider = |d: Duration| best = Some(best.map_or(d, |b| b.min(d)));
        for (i, r) in self.running.iter().enumerate() {
            match (r, self.hold[i]) {
                (Some(r), _) => consider(r.done_at),
                (None, Some((who, until))) => {
                    let refilled = self.ctx.get(&who).is_some_and(|c| !c.queues[i].is_empty());
                    consider(if refilled { now } else { until });
                }
                (None, None) if self.ctx.values().any(|c| !c.queues[i].is_empty()) => consider(now),
                (None, None) => {}
            }
        }
        for id in self.manager.list() {
            if let Some(ns) = self
                .manager
                .get(id)
                .and_then(|v| v.display_next_deadline_ns())
            {
                consider(Duration::from_nanos(ns));
            }
        }
        best
    }

    fn run_engine(&mut self, e: EngineId, now: Duration) {
        let i = e.index();
        for _ in 0..MAX_STARTS_PER_POLL {
            if let Some(r) = &self.running[i] {
                if r.done_at > now {
                    return;
                }
                if let Some(r) = self.running[i].take() {
                    let who = r.owner;
                    self.finish(e, r);
                    let idle = self.ctx.get(&who).is_some_and(|c| c.queues[i].is_empty());
                    let credit = self.scheds[i]
                        .stats(owner(who))
                        .is_some_and(|s| s.left_ns > 0);
                    if idle && credit {
                        self.hold[i] = Some((who, now.saturating_add(ANTICIPATION)));
                    }
                }
            }
            if let Some((who, until)) = self.hold[i] {
                let refilled = self.ctx.get(&who).is_some_and(|c| !c.queues[i].is_empty());
                let others = self
                    .ctx
                    .iter()
                    .any(|(id, c)| *id != who && !c.queues[i].is_empty());
                if !refilled && others && now < until {
                    return;
                }
                self.hold[i] = None;
            }
            for (id, c) in &self.ctx {
                let _ = self.scheds[i].set_busy(owner(*id), !c.queues[i].is_empty());
            }
            let Some(o) = self.scheds[i].pick() else {
                return;
            };
            let id = VgpuId(o);
            let Gvt {
                manager, host, ctx, ..
            } = &mut *self;
            let (Some(vgpu), Some(c)) = (manager.get_mut(id), ctx.get_mut(&id)) else {
                return;
            };
            let Some(w) = c.queues[i].pop_front() else {
                return;
            };
            reflect_ggtt(vgpu, c, host.as_mut());
            let (tag, wowner) = (w.tag(), w.owner());
            let mut events = match host.submit(w) {
                Ok(()) => host.poll_events(),
                Err(err) => {
                    c.host_refusals = c.host_refusals.saturating_add(1);
                    warn!(vgpu = o, %e, %err, "host refused a workload");
                    vec![HostEvent::Fault {
                        engine: e,
                        owner: wowner,
                        tag,
                        reason: FaultReason::Memory(format!("host refused: {err}")),
                        engine_time_ns: 0,
                    }]
                }
            };
            // The software host runs synchronously: every event is this workload's.
            events.retain(|ev| match ev {
                HostEvent::Complete { owner, .. }
                | HostEvent::Fault { owner, .. }
                | HostEvent::Hang { owner, .. } => *owner == o,
            });
            let ns: u64 = events.iter().map(event_ns).fold(0, u64::saturating_add);
            self.scheds[i].charge(o, ns);
            if let Some(c) = self.ctx.get_mut(&id) {
                c.engine_ns[i] = c.engine_ns[i].saturating_add(ns);
            }
            self.running[i] = Some(Running {
                owner: id,
                done_at: now.saturating_add(Duration::from_nanos(ns)),
                events,
            });
        }
    }

    /// Delivers a finished workload's events to its vGPU.
    fn finish(&mut self, e: EngineId, r: Running) {
        let i = e.index();
        let Gvt {
            manager,
            host,
            ctx,
            scheds,
            ..
        } = self;
        let (Some(vgpu), Some(c)) = (manager.get_mut(r.owner), ctx.get_mut(&r.owner)) else {
            return; // destroyed meanwhile
        };
        let mut out = PipelineOutput::default();
        let mut fx = Effects::new();
        adopt_csb_ptrs(vgpu, c);
        for ev in &r.events {
            if matches!(ev, HostEvent::Hang { .. }) {
                scheds[i].report_hang(owner(r.owner));
            }
            with_env(vgpu, host.as_mut(), &mut fx, |env| {
                c.pipeline.host_event(ev, env, &mut out)
            });
        }
        for reset in out.reset_engines.clone() {
            if let Err(err) = host.reset(reset) {
                warn!(%reset, %err, "engine reset failed");
            }
            let q = &mut c.queues[reset.index()];
            c.dropped = c.dropped.saturating_add(q.len() as u64);
            q.clear();
        }
        apply_output(vgpu, c, out, &mut fx);
        for effect in fx {
            c.fx.push(effect);
        }
    }
}
