//! A software Gen9 GPU implementing [`HostGpu`]: the reference host for the mediator.
//!
//! * Host GGTT of 1 Mi entries and shadow PPGTTs ([`space`]); guest RAM is reached only
//!   through frames those tables map, via the owner's registered [`GuestMemory`].
//! * Four engines (RCS, BCS, VCS, VECS) executing the copied commands of a
//!   [`ShadowWorkload`] ([`exec`], [`blit`]); VCS and VECS run MI commands and skip
//!   MFX/VEBOX state.
//! * Execution is synchronous inside [`HostEngines::submit`]; the result is queued as a
//!   [`HostEvent`] with the modelled engine time ([`CostModel`]).
//! * Each engine has a host status page whose seqno is the last completed workload's
//!   ([`SwGpu::status_seqno`]).

mod blit;
pub mod exec;
mod partition;
pub mod space;

use std::collections::{HashMap, VecDeque};

use tracing::debug;

pub use exec::CostModel;
use exec::{Exec, Stop};
use space::{Access, Tables};

use crate::cmd::ShadowWorkload;
#[cfg(doc)]
use crate::host::HostGpu;
use crate::host::{EngineId, HostEngines, HostError, HostEvent, HostInfo, OwnerId};
#[cfg(doc)]
use crate::memory::GuestMemory;

/// Configuration of the software GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwConfig {
    /// Description reported by [`crate::host::HostPartition::info`].
    pub info: HostInfo,
    /// Low GM kept by the host itself at the bottom of the aperture (so vGPU windows start
    /// above 0 and guests exercise ballooning, §3.3).
    pub host_low_reserved: u64,
    /// High GM kept by the host right above the aperture.
    pub host_high_reserved: u64,
    /// Fence registers kept by the host (the first ones).
    pub host_fences: u32,
    /// Execution costs.
    pub cost: CostModel,
    /// Shadow PPGTTs per owner.
    pub max_ppgtts_per_owner: usize,
}

impl Default for SwConfig {
    fn default() -> Self {
        Self {
            info: HostInfo {
                device_id: 0x1912,
                ggtt_size: 4 << 30,
                aperture_size: 256 << 20,
                fence_count: 32,
                engines: EngineId::ALL.to_vec(),
            },
            host_low_reserved: 64 << 20,
            host_high_reserved: 0,
            host_fences: 0,
            cost: CostModel::default(),
            max_ppgtts_per_owner: 64,
        }
    }
}

impl SwConfig {
    /// A software GPU that partitions exactly like [`crate::partition::Partitioner`] does
    /// for `host` (same aperture, GGTT, fences and host reserves), so the windows the
    /// host reserves match the vGPU manager's allocations.
    pub fn for_host(host: &crate::partition::HostDescription) -> Self {
        let d = Self::default();
        Self {
            info: HostInfo {
                device_id: host.device_id,
                ggtt_size: host.ggtt_size,
                aperture_size: host.aperture_size,
                fence_count: host.fence_count,
                engines: d.info.engines.clone(),
            },
            host_low_reserved: host.host_low_reserve,
            host_high_reserved: host.host_high_reserve,
            host_fences: host.host_fences,
            ..d
        }
    }
}

#[derive(Debug, Default)]
struct Engine {
    hung: bool,
    /// Host status page seqno (last completed workload).
    seqno: u32,
    /// Total engine time executed, ns.
    busy_ns: u64,
    /// Register file per owner (LRI/LRM/LRR targets), the engine's view of "vregs".
    regs: HashMap<OwnerId, HashMap<u32, u32>>,
    resets: u64,
}

/// The software Gen9 GPU.
#[derive(Debug)]
pub struct SwGpu {
    cfg: SwConfig,
    tables: Tables,
    part: partition::Partitions,
    next_ppgtt: u64,
    engines: [Engine; 4],
    events: VecDeque<HostEvent>,
}

impl SwGpu {
    /// A software GPU with `cfg`.
    pub fn new(cfg: SwConfig) -> Self {
        Self {
            cfg,
            tables: Tables::default(),
            part: partition::Partitions::default(),
            next_ppgtt: 1,
            engines: Default::default(),
            events: VecDeque::new(),
        }
    }

    /// Seqno in `engine`'s host status page: the last completed workload's.
    pub fn status_seqno(&self, engine: EngineId) -> u32 {
        self.engine(engine).seqno
    }

    /// Total modelled engine time spent on `engine`, in ns.
    pub fn busy_ns(&self, engine: EngineId) -> u64 {
        self.engine(engine).busy_ns
    }

    /// Whether `engine` is hung (until [`HostEngines::reset`]).
    pub fn is_hung(&self, engine: EngineId) -> bool {
        self.engine(engine).hung
    }

    /// How many times `engine` was reset.
    pub fn resets(&self, engine: EngineId) -> u64 {
        self.engine(engine).resets
    }

    fn engine(&self, e: EngineId) -> &Engine {
        &self.engines[e.index()]
    }

    fn present(&self, e: EngineId) -> Result<(), HostError> {
        if self.cfg.info.engines.contains(&e) {
            Ok(())
        } else {
            Err(HostError::NoEngine(e))
        }
    }
}

impl HostEngines for SwGpu {
    fn submit(&mut self, w: ShadowWorkload) -> Result<(), HostError> {
        let e = w.engine();
        self.present(e)?;
        if self.engine(e).hung {
            return Err(HostError::EngineHung(e));
        }
        if !self.tables.memory.contains_key(&w.owner()) {
            return Err(HostError::UnknownOwner(w.owner()));
        }
        let cost = self.cfg.cost;
        let engine = &mut self.engines[e.index()];
        let regs = engine.regs.entry(w.owner()).or_default();
        let out = Exec {
            w: &w,
            acc: Access {
                tables: &self.tables,
                owner: w.owner(),
                ppgtt: w.ppgtt(),
                dropped_writes: 0,
            },
            regs,
            cost,
            time_base_ns: engine.busy_ns,
            time_ns: 0,
            interrupts: Default::default(),
            reg_writes: Vec::new(),
        }
        .run();
        engine.busy_ns = engine.busy_ns.saturating_add(out.time_ns);
        let (owner, tag, engine_time_ns) = (w.owner(), w.tag(), out.time_ns);
        let ev = match out.end {
            Ok(()) => {
                engine.seqno = w.seqno();
                HostEvent::Complete {
                    engine: e,
                    owner,
                    tag,
                    seqno: w.seqno(),
                    engine_time_ns,
                    interrupts: out.interrupts,
                    reg_writes: out.reg_writes,
                }
            }
            Err(Stop::Fault(reason)) => {
                debug!(%e, owner, tag, ?reason, "workload faulted");
                HostEvent::Fault {
                    engine: e,
                    owner,
                    tag,
                    reason,
                    engine_time_ns,
                }
            }
            Err(Stop::Hang) => {
                debug!(%e, owner, tag, "engine hung");
                engine.hung = true;
                HostEvent::Hang {
                    engine: e,
                    owner,
                    tag,
                    engine_time_ns,
                }
            }
        };
        self.events.push_back(ev);
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<HostEvent> {
        self.events.drain(..).collect()
    }

    fn reset(&mut self, engine: EngineId) -> Result<(), HostError> {
        self.present(engine)?;
        let en = &mut self.engines[engine.index()];
        en.hung = false;
        en.resets = en.resets.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
