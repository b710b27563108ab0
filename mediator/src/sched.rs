//! Weighted time-slice scheduler for one engine (GVT-g's "TBS" policy), pure logic over a
//! [`Clock`].
//!
//! * Every `balance_period` (100 ms) each vGPU is allotted
//!   `period × weight / total_weight` of engine time. Unused credit is not carried over;
//!   overdraft is (bounded to one period), so a vGPU that overran pays it back.
//! * Every `tick` (1 ms) the engine may switch vGPU: the current one keeps the engine while
//!   it is busy, has credit and its tick has not expired; otherwise the least recently
//!   picked busy vGPU with credit runs. If no busy vGPU has credit the scheduler stays
//!   work-conserving and picks the busy vGPU with the most credit.
//! * Engine time is charged from the host's completion events ([`Scheduler::charge`]),
//!   i.e. the modelled cost of what actually ran.
//! * A vGPU that hangs the engine ([`Scheduler::report_hang`]) loses the engine and is
//!   charged a penalty; the caller resets the engine and the others continue.
//!
//! The caller's loop per engine: `pick()` → scan and submit that vGPU's next workload →
//! on its event, `charge()` (and `report_hang()` on a hang).

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use crate::clock::Clock;
use crate::host::OwnerId;

/// Scheduler timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedConfig {
    /// Time slice granularity (GVT: 1 ms).
    pub tick: Duration,
    /// Credit re-allocation period (GVT: 100 ms).
    pub balance_period: Duration,
    /// Credit removed from a vGPU that hung the engine.
    pub hang_penalty: Duration,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(1),
            balance_period: Duration::from_millis(100),
            hang_penalty: Duration::from_millis(100),
        }
    }
}

/// Scheduler errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchedError {
    /// Weight must be 1..=MAX_WEIGHT.
    #[error("weight {0} out of range 1..={MAX_WEIGHT}")]
    BadWeight(u32),
    /// The vGPU is already registered.
    #[error("vGPU {0} already registered")]
    Duplicate(OwnerId),
    /// The vGPU is not registered.
    #[error("vGPU {0} unknown")]
    Unknown(OwnerId),
}

/// Largest accepted weight.
pub const MAX_WEIGHT: u32 = 1000;

/// Per-vGPU accounting, for tests and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgpuSchedStats {
    /// Configured weight.
    pub weight: u32,
    /// Total engine time charged.
    pub used: Duration,
    /// Credit left in this period, ns (negative = overdraft).
    pub left_ns: i64,
    /// Times this vGPU was picked after another.
    pub switches_in: u64,
    /// Hangs reported.
    pub hangs: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    weight: u32,
    busy: bool,
    left_ns: i64,
    used_ns: u64,
    last_pick: u64,
    switches_in: u64,
    hangs: u64,
}

/// The scheduler for one engine.
#[derive(Debug)]
pub struct Scheduler<C: Clock> {
    clock: C,
    cfg: SchedConfig,
    vgpus: BTreeMap<OwnerId, Entry>,
    current: Option<(OwnerId, Duration)>,
    next_balance: Duration,
    seq: u64,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl<C: Clock> Scheduler<C> {
    /// A scheduler with no vGPUs; the first balance happens at the first `pick`.
    pub fn new(clock: C, cfg: SchedConfig) -> Self {
        let next_balance = clock.now();
        Self {
            clock,
            cfg,
            vgpus: BTreeMap::new(),
            current: None,
            next_balance,
            seq: 0,
        }
    }

    /// Registers a vGPU with `weight` (idle until [`Scheduler::set_busy`]).
    pub fn add_vgpu(&mut self, id: OwnerId, weight: u32) -> Result<(), SchedError> {
        if weight == 0 || weight > MAX_WEIGHT {
            return Err(SchedError::BadWeight(weight));
        }
        if self.vgpus.contains_key(&id) {
            return Err(SchedError::Duplicate(id));
        }
        self.vgpus.insert(
            id,
            Entry {
                weight,
                busy: false,
                left_ns: 0,
                used_ns: 0,
                last_pick: 0,
                switches_in: 0,
                hangs: 0,
            },
        );
        Ok(())
    }

    /// Unregisters a vGPU.
    pub fn remove_vgpu(&mut self, id: OwnerId) -> Result<(), SchedError> {
        self.vgpus.remove(&id).ok_or(SchedError::Unknown(id))?;
        if self.current.is_some_and(|(c, _)| c == id) {
            self.current = None;
        }
        Ok(())
    }

    /// Whether `id` has queued work for this engine.
    pub fn set_busy(&mut self, id: OwnerId, busy: bool) -> Result<(), SchedError> {
        self.vgpus.get_mut(&id).ok_or(SchedError::Unknown(id))?.busy = busy;
        Ok(())
    }

    fn balance(&mut self, now: Duration) {
        let period = ns(self.cfg.balance_period);
        let total: u64 = self.vgpus.values().map(|e| u64::from(e.weight)).sum();
        while now >= self.next_balance {
            for e in self.vgpus.values_mut() {
                let share = i128::from(period) * i128::from(e.weight) / i128::from(total.max(1));
                let share = i64::try_from(share).unwrap_or(i64::MAX);
                e.left_ns = e.left_ns.clamp(-period, 0).saturating_add(share);
            }
            self.next_balance = self.next_balance.saturating_add(self.cfg.balance_period);
            if self.cfg.balance_period.is_zero() {
                break;
            }
        }
    }

    /// Which vGPU should submit its next workload now (`None` if nobody is busy).
    pub fn pick(&mut self) -> Option<OwnerId> {
        let now = self.clock.now();
        self.balance(now);
        if let Some((id, since)) = self.current {
            let keep = self.vgpus.get(&id).is_some_and(|e| e.busy && e.left_ns > 0)
                && now.saturating_sub(since) < self.cfg.tick;
            if keep {
                return Some(id);
            }
        }
        let busy = self.vgpus.iter().filter(|(_, e)| e.busy);
        let with_credit = busy
            .clone()
            .filter(|(_, e)| e.left_ns > 0)
            .min_by_key(|(_, e)| e.last_pick);
        let chosen = with_credit
            .or_else(|| busy.max_by_key(|(_, e)| (e.left_ns, std::cmp::Reverse(e.last_pick))))
            .map(|(id, _)| *id)?;
        self.seq = self.seq.saturating_add(1);
        let prev = self.current.map(|(c, _)| c);
        if let Some(e) = self.vgpus.get_mut(&chosen) {
            e.last_pick = self.seq;
            if prev != Some(chosen) {
                e.switches_in = e.switches_in.saturating_add(1);
            }
        }
        self.current = Some((chosen, now));
        Some(chosen)
    }

    /// Charges `engine_ns` of engine time (from a completion, fault or hang event).
    pub fn charge(&mut self, id: OwnerId, engine_ns: u64) {
        if let Some(e) = self.vgpus.get_mut(&id) {
            e.used_ns = e.used_ns.saturating_add(engine_ns);
            let d = i64::try_from(engine_ns).unwrap_or(i64::MAX);
            e.left_ns = e.left_ns.saturating_sub(d);
        }
    }

    /// `id` hung the engine: it loses the engine and `hang_penalty` of credit.
    pub fn report_hang(&mut self, id: OwnerId) {
        let penalty = ns(self.cfg.hang_penalty);
        if let Some(e) = self.vgpus.get_mut(&id) {
            e.hangs = e.hangs.saturating_add(1);
            e.left_ns = e.left_ns.saturating_sub(penalty);
        }
        if self.current.is_some_and(|(c, _)| c == id) {
            self.current = None;
        }
    }

    /// Accounting for `id`.
    pub fn stats(&self, id: OwnerId) -> Option<VgpuSchedStats> {
        self.vgpus.get(&id).map(|e| VgpuSchedStats {
            weight: e.weight,
            used: Duration::from_nanos(e.used_ns),
            left_ns: e.left_ns,
            switches_in: e.switches_in,
            hangs: e.hangs,
        })
    }

    /// `id`'s fraction of all engine time charged so far (0 if none).
    pub fn share(&self, id: OwnerId) -> f64 {
        let total: u64 = self.vgpus.values().map(|e| e.used_ns).sum();
        let mine = self.vgpus.get(&id).map_or(0, |e| e.used_ns);
        if total == 0 {
            0.0
        } else {
            mine as f64 / total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    fn sched() -> (FakeClock, Scheduler<FakeClock>) {
        let c = FakeClock::new();
        (c.clone(), Scheduler::new(c, SchedConfig::default()))
    }

    /// Deterministic workload costs between 100 µs and 1.3 ms.
    fn cost(i: u64) -> u64 {
        100_000 + (i.wrapping_mul(2_654_435_761) % 1_200_000)
    }

    /// Runs both-busy vGPUs for `secs` simulated seconds; returns engine time used each.
    fn run(s: &mut Scheduler<FakeClock>, c: &FakeClock, ids: &[OwnerId], span: Duration) {
        let mut i = 0;
        while c.now() < span {
            let id = s.pick().unwrap();
            assert!(ids.contains(&id));
            let t = cost(i);
            i += 1;
            c.advance_ns(t);
            s.charge(id, t);
        }
    }

    #[test]
    fn weights_2_and_8_get_one_to_four_within_5_percent_over_a_second() {
        let (c, mut s) = sched();
        s.add_vgpu(1, 2).unwrap();
        s.add_vgpu(2, 8).unwrap();
        s.set_busy(1, true).unwrap();
        s.set_busy(2, true).unwrap();
        run(&mut s, &c, &[1, 2], Duration::from_secs(1));
        let a = s.stats(1).unwrap().used.as_nanos() as f64;
        let b = s.stats(2).unwrap().used.as_nanos() as f64;
        let ratio = a / b;
        assert!((ratio - 0.25).abs() <= 0.25 * 0.05, "ratio {ratio}");
        assert!((s.share(1) - 0.2).abs() < 0.01, "share {}", s.share(1));
        // Time slicing really switches, not one long run per period.
        assert!(s.stats(1).unwrap().switches_in > 10);
    }

    #[test]
    fn an_idle_vgpu_leaves_the_engine_to_the_busy_one() {
        let (c, mut s) = sched();
        s.add_vgpu(1, 1).unwrap();
        s.add_vgpu(2, 9).unwrap();
        s.set_busy(1, true).unwrap();
        run(&mut s, &c, &[1], Duration::from_millis(300));
        assert_eq!(s.stats(2).unwrap().used, Duration::ZERO);
        assert!(s.stats(1).unwrap().used >= Duration::from_millis(299));
        s.set_busy(1, false).unwrap();
        assert_eq!(s.pick(), None);
    }

    #[test]
    fn a_hanging_vgpu_is_penalised_and_the_other_keeps_running() {
        let (c, mut s) = sched();
        s.add_vgpu(1, 5).unwrap();
        s.add_vgpu(2, 5).unwrap();
        s.set_busy(1, true).unwrap();
        s.set_busy(2, true).unwrap();
        let mut picks = Vec::new();
        for _ in 0..40 {
            let id = s.pick().unwrap();
            picks.push(id);
            c.advance_ns(500_000);
            s.charge(id, 500_000);
            if id == 1 && s.stats(1).unwrap().hangs == 0 {
                s.report_hang(1);
            }
        }
        assert_eq!(s.stats(1).unwrap().hangs, 1);
        // After the hang, vGPU 2 gets the engine for the rest of its credit.
        let first_hang = picks.iter().position(|p| *p == 1).unwrap();
        assert!(picks[first_hang + 1..].iter().all(|p| *p == 2));
    }

    #[test]
    fn registration_is_validated() {
        let (_, mut s) = sched();
        assert_eq!(s.add_vgpu(1, 0), Err(SchedError::BadWeight(0)));
        assert_eq!(
            s.add_vgpu(1, MAX_WEIGHT + 1),
            Err(SchedError::BadWeight(1001))
        );
        s.add_vgpu(1, 1).unwrap();
        assert_eq!(s.add_vgpu(1, 1), Err(SchedError::Duplicate(1)));
        assert_eq!(s.set_busy(7, true), Err(SchedError::Unknown(7)));
        s.remove_vgpu(1).unwrap();
        assert_eq!(s.remove_vgpu(1), Err(SchedError::Unknown(1)));
    }
}
