//! Per-vGPU statistics and type capabilities as plain, serialisable data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cmd::RejectReason;
use crate::counters::VgpuCounters;
use crate::display::DisplayCaps;
use crate::host::EngineId;
use crate::manager::VgpuId;
use crate::partition::Allocation;
use crate::vtypes::TypeInfo;

use super::{Gvt, GvtError};

/// A vGPU type with how many more fit and what display it offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCaps {
    /// The type and its available instances.
    #[serde(flatten)]
    pub info: TypeInfo,
    /// Display capabilities.
    pub display: DisplayCaps,
}

/// Everything counted about one vGPU (register model, pipeline, scheduler).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VgpuStats {
    /// vGPU id.
    pub id: u32,
    /// Type name.
    pub type_name: String,
    /// Scheduler weight.
    pub weight: u32,
    /// GGTT windows and fences.
    pub allocation: Allocation,
    /// Guest accesses routed through [`Gvt::io`].
    pub accesses: u64,
    /// Register-model counters.
    pub vgpu: VgpuCounters,
    /// Workloads handed to the host.
    pub submitted: u64,
    /// Workloads completed.
    pub completed: u64,
    /// Scanner rejections by reason (only non-zero reasons).
    pub rejected: BTreeMap<String, u64>,
    /// Total scanner rejections.
    pub rejected_total: u64,
    /// Elements failed because the context image was unreadable.
    pub context_errors: u64,
    /// PPGTT shadowing failures.
    pub ppgtt_errors: u64,
    /// PPGTT entries refused because they point outside this guest's RAM.
    pub ppgtt_foreign_entries: u64,
    /// Trapped writes to write-protected page tables.
    pub protected_writes: u64,
    /// Trapped writes to guest RAM the vGPU no longer protects, committed for the guest
    /// (see `GvtIo`); non-zero means the platform's protection outlived the model's.
    #[serde(default)]
    pub unprotected_ram_writes: u64,
    /// Of those, writes that could not be committed.
    #[serde(default)]
    pub unprotected_ram_write_errors: u64,
    /// Re-shadows after such writes.
    pub ppgtt_reshadows: u64,
    /// Host execution faults (e.g. an unmapped address).
    pub faults: u64,
    /// Engine hangs caused by this vGPU.
    pub hangs: u64,
    /// Engine resets of this vGPU's engines after its hangs.
    pub engine_resets: u64,
    /// GGTT entries reflected into the host.
    pub ggtt_reflected: u64,
    /// GGTT entries the host refused.
    pub ggtt_refused: u64,
    /// ELSP pairs accepted / refused by the execlist model, summed over engines.
    pub elsp_accepted: u64,
    /// Refused ELSP pairs.
    pub elsp_rejected: u64,
    /// Submissions the host refused.
    pub host_refusals: u64,
    /// Queued workloads dropped by resets.
    pub dropped: u64,
    /// Interrupt events raised by the pipeline.
    pub irqs_raised: u64,
    /// Modelled engine time per engine (`rcs0`, `bcs0`, `vcs0`, `vecs0`), ns.
    pub engine_ns: BTreeMap<String, u64>,
    /// Total modelled engine time, ns.
    pub engine_ns_total: u64,
    /// This vGPU's fraction of all engine time charged to all vGPUs (0 if none).
    pub engine_share: f64,
    /// Weight / total weight of all vGPUs.
    pub expected_share: f64,
    /// Workloads waiting for an engine.
    pub queued: usize,
}

impl Gvt {
    /// Statistics of vGPU `id`.
    pub fn stats(&self, id: VgpuId) -> Result<VgpuStats, GvtError> {
        let v = self.manager.get(id).ok_or(GvtError::NotFound(id))?;
        let c = self.ctx.get(&id).ok_or(GvtError::NotFound(id))?;
        let p = c.pipeline.counters();
        let pp = c.pipeline.ppgtt().counters();
        let rejected = RejectReason::ALL
            .into_iter()
            .filter(|r| p.rejected.get(*r) > 0)
            .map(|r| (format!("{r:?}"), p.rejected.get(r)))
            .collect();
        let (mut acc, mut rej) = (0, 0);
        for e in EngineId::ALL {
            let ec = c.pipeline.engine(e).counters();
            acc += ec.elsp_accepted;
            rej += ec.elsp_rejected;
        }
        let total: u64 = c.engine_ns.iter().fold(0, |a, n| a.saturating_add(*n));
        let all: u64 = self
            .ctx
            .values()
            .flat_map(|c| c.engine_ns)
            .fold(0, u64::saturating_add);
        let weights: u64 = self
            .manager
            .list()
            .iter()
            .filter_map(|i| self.manager.get(*i))
            .map(|v| u64::from(v.config().weight))
            .sum();
        let weight = v.config().weight;
        Ok(VgpuStats {
            id: id.0,
            type_name: v.config().type_name.clone(),
            weight,
            allocation: v.config().allocation,
            accesses: c.accesses,
            vgpu: *v.counters(),
            submitted: p.submitted,
            completed: p.completed,
            rejected,
            rejected_total: p.rejected.total(),
            context_errors: p.context_errors,
            ppgtt_errors: p.ppgtt_errors,
            ppgtt_foreign_entries: pp.foreign_entries,
            protected_writes: c.protected_writes,
            unprotected_ram_writes: c.unprotected_ram_writes,
            unprotected_ram_write_errors: c.unprotected_ram_write_errors,
            ppgtt_reshadows: pp.reshadows,
            faults: p.faults,
            hangs: p.hangs,
            engine_resets: p.engine_resets,
            ggtt_reflected: p.ggtt_reflected,
            ggtt_refused: p.ggtt_refused,
            elsp_accepted: acc,
            elsp_rejected: rej,
            host_refusals: c.host_refusals,
            dropped: c.dropped,
            irqs_raised: c.irqs_raised,
            engine_ns: EngineId::ALL
                .into_iter()
                .map(|e| (e.name().to_string(), c.engine_ns[e.index()]))
                .collect(),
            engine_ns_total: total,
            engine_share: if all == 0 {
                0.0
            } else {
                total as f64 / all as f64
            },
            expected_share: if weights == 0 {
                0.0
            } else {
                f64::from(weight) / weights as f64
            },
            queued: c.queues.iter().map(|q| q.len()).sum(),
        })
    }
}
