//! Software GPU tests: scanned workloads executed against guest RAM through host tables.

use std::sync::Arc;

use super::*;
use crate::cmd::{GmSpace, RingSlice, ScanLimits, ScanRequest, Scanner, WorkloadContext};
use crate::host::{
    AddressSpace, FaultReason, HostGtt, HostPartition, HostPte, PpgttHandle, Reservation,
    ReserveAt, ReserveRequest,
};
use crate::memory::{GuestMemory, VecMemory};

/// 8 MiB of guest RAM: the low window maps gfn 0..1024, the high window gfn 1024..2048,
/// with pairs of pages swapped (page i → frame i ^ 1) so translation is visible.
struct Rig {
    gpu: SwGpu,
    mem: Arc<VecMemory>,
    res: Reservation,
    owner: u32,
    ppgtt: Option<PpgttHandle>,
}

const PAGES: u64 = 1024;

impl Rig {
    fn new() -> Self {
        Self::with_owner(SwGpu::new(SwConfig::default()), 1)
    }

    fn with_owner(mut gpu: SwGpu, owner: u32) -> Self {
        let mem = Arc::new(VecMemory::new(2 * PAGES * 4096));
        let res = gpu
            .reserve(ReserveRequest {
                owner,
                low_size: PAGES * 4096,
                high_size: PAGES * 4096,
                fences: 4,
                memory: mem.clone(),
                at: None,
            })
            .unwrap();
        for i in 0..PAGES {
            for (w, base) in [(res.low, 0), (res.high, PAGES)] {
                let pte = HostPte {
                    owner,
                    gfn: base + (i ^ 1),
                    writable: true,
                };
                gpu.ggtt_write(owner, (w.start >> 12) + i, Some(pte))
                    .unwrap();
            }
        }
        Self {
            gpu,
            mem,
            res,
            owner,
            ppgtt: None,
        }
    }

    /// Guest view of the same mapping (what the vGPU's guest GGTT says).
    fn gpa(&self, gma: u64) -> Option<u64> {
        for (w, base) in [(self.res.low, 0), (self.res.high, PAGES)] {
            if w.contains(gma, 1) {
                let page = (gma - w.start) >> 12;
                return Some(((base + (page ^ 1)) << 12) | (gma & 0xfff));
            }
        }
        None
    }

    fn put(&self, gma: u64, dwords: &[u32]) {
        for (i, d) in dwords.iter().enumerate() {
            let a = gma + 4 * i as u64;
            self.mem.write_u32(self.gpa(a).unwrap(), *d).unwrap();
        }
    }

    fn get(&self, gma: u64) -> u32 {
        self.mem.read_u32(self.gpa(gma).unwrap()).unwrap()
    }

    fn ring(&self) -> u64 {
        self.res.high.start
    }

    /// Writes `cmds` into the ring, scans and submits; returns the events.
    fn run(&mut self, engine: EngineId, cmds: &[u32], seqno: u32) -> Vec<HostEvent> {
        let w = self.scan(engine, cmds, seqno);
        self.gpu.submit(w).unwrap();
        self.gpu.poll_events()
    }

    fn scan(&self, engine: EngineId, cmds: &[u32], seqno: u32) -> ShadowWorkload {
        let mut c = cmds.to_vec();
        if c.len() % 2 == 1 {
            c.push(0);
        }
        self.put(self.ring(), &c);
        let req = ScanRequest {
            owner: self.owner,
            engine,
            tag: u64::from(seqno) + 100,
            seqno,
            ring: RingSlice {
                start: self.ring(),
                size: 4096,
                head: 0,
                tail: 4 * c.len() as u32,
            },
            windows: [self.res.low, self.res.high],
            ppgtt: self.ppgtt,
            context: WorkloadContext {
                lrca: self.res.high.start + 0x10_0000,
                ctx_id: 1,
            },
        };
        let tr = |space: GmSpace, gma: u64| match space {
            GmSpace::Ggtt => self.gpa(gma),
            // The test PPGTT maps gma 0x4000_0000 + x to the high window's x.
            GmSpace::Ppgtt => gma
                .checked_sub(0x4000_0000)
                .and_then(|x| self.gpa(self.res.high.start + x)),
        };
        Scanner::new(engine, ScanLimits::default())
            .scan(&req, self.mem.as_ref(), &tr)
            .unwrap()
    }

    /// Shadow PPGTT mirroring the scanner's test translation.
    fn make_ppgtt(&mut self, pages: u64) {
        let h = self.gpu.ppgtt_create(self.owner).unwrap();
        for p in 0..pages {
            let gfn = PAGES + (p ^ 1);
            let pte = HostPte {
                owner: self.owner,
                gfn,
                writable: p != 3,
            };
            self.gpu
                .ppgtt_map(h, 0x4000_0000 + (p << 12), Some(pte))
                .unwrap();
        }
        self.ppgtt = Some(h);
    }
}

fn complete(ev: &[HostEvent]) -> (u32, u64, crate::host::EngineInterrupts) {
    match ev {
        [HostEvent::Complete {
            seqno,
            engine_time_ns,
            interrupts,
            ..
        }] => (*seqno, *engine_time_ns, *interrupts),
        other => panic!("expected one completion, got {other:?}"),
    }
}

#[test]
fn store_dword_and_seqno_breadcrumb_land_and_complete() {
    let mut r = Rig::new();
    let target = r.res.low.start + 0x1_0004;
    let hwsp = r.res.high.start + 0x2000;
    let cmds = [
        0x1040_0002,
        target as u32,
        0,
        0xCAFE_F00D, // SDI GGTT
        0x7A00_0004,
        (1 << 24) | (1 << 14) | (1 << 20),
        hwsp as u32,
        0,
        42,
        0,           // PC QW seqno
        0x0100_0000, // MI_USER_INTERRUPT
    ];
    let ev = r.run(EngineId::Rcs, &cmds, 42);
    let (seqno, time, irq) = complete(&ev);
    assert_eq!(seqno, 42);
    assert_eq!(irq.user, 1);
    assert!(time > 0);
    assert_eq!(r.get(target), 0xCAFE_F00D);
    assert_eq!(r.get(hwsp), 42);
    assert_eq!(r.gpu.status_seqno(EngineId::Rcs), 42);
    // The frame really was the swapped one: gma page 0x10 → gfn 0x11.
    assert_eq!(r.mem.read_u32((0x11 << 12) | 4).unwrap(), 0xCAFE_F00D);
}

#[test]
fn bcs_color_blit_and_flush_dw_land_through_ggtt_frames() {
    let mut r = Rig::new();
    let dst = r.res.low.start + 0x2_0000;
    let hwsp = r.res.high.start + 0x2000;
    let pitch = 4096u32; // one page per row: every row is a different, swapped frame
    let cmds = [
        0x5430_0005,
        (3 << 24) | (0xF0 << 16) | pitch,
        (1 << 16) | 2,
        (4 << 16) | 6,
        dst as u32,
        0,
        0x00FF_8800, // XY_COLOR_BLT 32bpp (2,1)-(6,4)
        0x1300_4002 | (1 << 8),
        (hwsp as u32) | 4,
        0,
        7, // FLUSH_DW GGTT seqno + notify
        0x0100_0000,
    ];
    let ev = r.run(EngineId::Bcs, &cmds, 7);
    let (_, time, irq) = complete(&ev);
    assert_eq!(irq.flush_notify, 1);
    assert_eq!(r.get(hwsp), 7);
    for y in 0..5u64 {
        for x in 0..7u64 {
            let v = r.get(dst + y * u64::from(pitch) + 4 * x);
            let inside = (1..4).contains(&y) && (2..6).contains(&x);
            assert_eq!(v, if inside { 0x00FF_8800 } else { 0 }, "pixel ({x},{y})");
        }
    }
    // 12 pixels at 1 ns plus three commands.
    let c = CostModel::default();
    let cmd_cost = |len: u64| c.per_command_ns + c.per_dword_ns * len;
    assert_eq!(
        time,
        12 * c.per_pixel_ns + cmd_cost(7) + cmd_cost(4) + cmd_cost(1)
    );
}

#[test]
fn src_copy_blit_16bpp_from_x_tiled_source() {
    let mut r = Rig::new();
    let src = r.res.low.start + 0x4_0000; // X-tiled, pitch 512 bytes (one tile wide)
    let dst = r.res.low.start + 0x8_0000; // linear, pitch 64
                                          // Source pixel (x, y) at 16 bpp: tile row y % 8 of tile y / 8, byte 2x.
    for y in 0..10u64 {
        let tile = y / 8;
        let gma = src + tile * 4096 + (y % 8) * 512;
        let row: Vec<u32> = (0..4u32)
            .map(|i| ((y as u32) << 24) | ((i * 2 + 1) << 16) | ((y as u32) << 8) | (i * 2))
            .collect();
        r.put(gma, &row);
    }
    let cmds = [
        0x54C0_0008 | (1 << 15),
        (1 << 24) | (0xCC << 16) | 64,
        0,
        (10 << 16) | 8,
        dst as u32,
        0,
        0,
        512 / 4,
        src as u32,
        0,
    ];
    let ev = r.run(EngineId::Bcs, &cmds, 1);
    complete(&ev);
    for y in 0..10u64 {
        let lo = r.get(dst + y * 64);
        assert_eq!(
            lo,
            ((y as u32) << 24) | (1 << 16) | ((y as u32) << 8),
            "row {y}"
        );
    }
}

#[test]
fn batches_run_from_the_scanned_copy_not_from_guest_memory() {
    let mut r = Rig::new();
    let bb = r.res.high.start + 0x3000;
    let target = r.res.high.start + 0x5000;
    r.put(bb, &[0x1040_0002, target as u32, 0, 1, 0x0500_0000]);
    let w = r.scan(EngineId::Rcs, &[0x1880_0001, bb as u32, 0], 3);
    r.put(bb, &[0x1040_0002, target as u32, 0, 2, 0x0500_0000]);
    r.gpu.submit(w).unwrap();
    complete(&r.gpu.poll_events());
    assert_eq!(r.get(target), 1);
}

#[test]
fn ppgtt_batch_executes_through_the_shadow_ppgtt_and_drops_read_only_writes() {
    let mut r = Rig::new();
    r.make_ppgtt(8);
    let bb = 0x4000_1000u64;
    let rw = 0x4000_2000u64; // page 2 (writable)
    let ro = 0x4000_3000u64; // page 3 (read-only)
    let bb_cmds = [
        0x1000_0002,
        rw as u32,
        0,
        11, // SDI PPGTT
        0x1000_0002,
        ro as u32,
        0,
        12,
        0x0500_0000,
    ];
    // The guest view of the PPGTT maps page p to high-window page p.
    r.put(r.res.high.start + 0x1000, &bb_cmds);
    let ev = r.run(EngineId::Rcs, &[0x1880_0101, bb as u32, 0], 5);
    complete(&ev);
    assert_eq!(r.get(r.res.high.start + 0x2000), 11);
    assert_eq!(r.get(r.res.high.start + 0x3000), 0);
}

#[test]
fn a_hang_is_detected_and_reset_recovers_only_that_engine() {
    let mut r = Rig::new();
    r.make_ppgtt(8);
    let bb = 0x4000_1000u64;
    let sem = 0x4000_2000u32;
    // MI_SEMAPHORE_WAIT, poll mode, "memory == 1" on a dword that stays 0.
    r.put(
        r.res.high.start + 0x1000,
        &[0x0E00_C002, 1, sem, 0, 0x0500_0000],
    );
    let ring = [0x1880_0101, bb as u32, 0];
    let ev = r.run(EngineId::Rcs, &ring, 9);
    assert!(matches!(
        ev.as_slice(),
        [HostEvent::Hang {
            engine: EngineId::Rcs,
            tag: 109,
            ..
        }]
    ));
    assert!(r.gpu.is_hung(EngineId::Rcs));
    let again = r.scan(EngineId::Rcs, &[0], 10);
    assert_eq!(
        r.gpu.submit(again.clone()),
        Err(HostError::EngineHung(EngineId::Rcs))
    );
    // The blitter is unaffected.
    let ev = r.run(EngineId::Bcs, &[0x0100_0000], 11);
    assert_eq!(complete(&ev).0, 11);
    r.gpu.reset(EngineId::Rcs).unwrap();
    assert!(!r.gpu.is_hung(EngineId::Rcs));
    assert_eq!(
        (r.gpu.resets(EngineId::Rcs), r.gpu.resets(EngineId::Bcs)),
        (1, 0)
    );
    r.gpu.submit(again).unwrap();
    assert_eq!(complete(&r.gpu.poll_events()).0, 10);
}

#[test]
fn unmapped_addresses_fault_without_touching_memory() {
    let mut r = Rig::new();
    let target = r.res.low.start + 0x1000;
    r.gpu.ggtt_write(1, target >> 12, None).unwrap();
    let ev = r.run(EngineId::Rcs, &[0x1040_0002, target as u32, 0, 5], 1);
    assert!(matches!(
        ev.as_slice(),
        [HostEvent::Fault {
            reason: FaultReason::Unmapped {
                space: AddressSpace::Ggtt,
                ..
            },
            ..
        }]
    ));
    assert_eq!(r.gpu.status_seqno(EngineId::Rcs), 0);
}

#[test]
fn partitions_are_disjoint_and_tables_refuse_foreign_frames() {
    let mut gpu = SwGpu::new(SwConfig::default());
    let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(1 << 20));
    let mk = |owner, memory: &Arc<dyn GuestMemory>| ReserveRequest {
        owner,
        low_size: 64 << 20,
        high_size: 512 << 20,
        fences: 4,
        memory: memory.clone(),
        at: None,
    };
    let a = gpu.reserve(mk(1, &mem)).unwrap();
    let b = gpu.reserve(mk(2, &mem)).unwrap();
    assert!(
        a.low.start >= 64 << 20,
        "host keeps the bottom of the aperture"
    );
    assert!(a.low.end() <= b.low.start || b.low.end() <= a.low.start);
    assert!(a.high.end() <= b.high.start || b.high.end() <= a.high.start);
    assert_ne!(a.fence_base, b.fence_base);
    assert!(gpu.reserve(mk(3, &mem)).is_ok());
    assert!(matches!(
        gpu.reserve(mk(4, &mem)),
        Err(HostError::NoRoom { .. })
    ));
    assert_eq!(gpu.reserve(mk(1, &mem)), Err(HostError::AlreadyReserved(1)));

    let own = HostPte {
        owner: 1,
        gfn: 3,
        writable: true,
    };
    let idx = a.low.start >> 12;
    assert!(gpu.ggtt_write(1, idx, Some(own)).is_ok());
    assert!(matches!(
        gpu.ggtt_write(1, b.low.start >> 12, Some(own)),
        Err(HostError::GgttIndex { .. })
    ));
    let foreign = HostPte { owner: 2, ..own };
    assert!(matches!(
        gpu.ggtt_write(1, idx, Some(foreign)),
        Err(HostError::ForeignFrame { .. })
    ));
    let beyond = HostPte {
        gfn: 1 << 40,
        ..own
    };
    assert!(matches!(
        gpu.ggtt_write(1, idx, Some(beyond)),
        Err(HostError::ForeignFrame { .. })
    ));

    gpu.release(2).unwrap();
    let again = gpu.reserve(mk(4, &mem)).unwrap();
    assert_eq!(again.low, b.low);
}

#[test]
fn engine_time_is_deterministic_and_timestamps_advance() {
    let mut r = Rig::new();
    let slot = r.res.high.start + 0x6000;
    let cmds = [0x7A00_0004, (1 << 24) | (3 << 14), slot as u32, 0, 0, 0];
    let t1 = complete(&r.run(EngineId::Rcs, &cmds, 1)).1;
    let ts1 = u64::from(r.get(slot));
    let t2 = complete(&r.run(EngineId::Rcs, &cmds, 2)).1;
    let ts2 = u64::from(r.get(slot));
    assert_eq!(t1, t2);
    assert!(ts2 > ts1, "{ts2} > {ts1}");
    assert_eq!(r.gpu.busy_ns(EngineId::Rcs), t1 + t2);
}

/// A blit of `side`×`side` pixels into the rig's low window.
fn fill_blit(r: &Rig, side: u32) -> Vec<u32> {
    let dst = r.res.low.start + 0x10_0000;
    vec![
        0x5430_0005,
        (3 << 24) | (0xF0 << 16) | 4096,
        0,
        (side << 16) | side,
        dst as u32,
        0,
        0x1234_5678,
        0,
    ]
}

#[test]
fn scheduler_shares_hold_with_modelled_engine_costs() {
    use crate::clock::{Clock, FakeClock};
    use crate::sched::{SchedConfig, Scheduler};
    use std::time::Duration;

    let cfg = SwConfig {
        cost: CostModel {
            per_pixel_ns: 250,
            ..CostModel::default()
        },
        ..SwConfig::default()
    };
    let mut a = Rig::with_owner(SwGpu::new(cfg.clone()), 1);
    let gpu = std::mem::replace(&mut a.gpu, SwGpu::new(cfg));
    let mut b = Rig::with_owner(gpu, 2);
    let clock = FakeClock::new();
    let mut s = Scheduler::new(clock.clone(), SchedConfig::default());
    s.add_vgpu(1, 2).unwrap();
    s.add_vgpu(2, 8).unwrap();
    s.set_busy(1, true).unwrap();
    s.set_busy(2, true).unwrap();
    let (blit_a, blit_b) = (fill_blit(&a, 64), fill_blit(&b, 32));
    while clock.now() < Duration::from_secs(1) {
        let id = s.pick().unwrap();
        let ev = if id == 1 {
            std::mem::swap(&mut a.gpu, &mut b.gpu);
            let ev = a.run(EngineId::Bcs, &blit_a, 1);
            std::mem::swap(&mut a.gpu, &mut b.gpu);
            ev
        } else {
            b.run(EngineId::Bcs, &blit_b, 2)
        };
        let t = complete(&ev).1;
        clock.advance_ns(t);
        s.charge(id, t);
    }
    let ua = s.stats(1).unwrap().used.as_secs_f64();
    let ub = s.stats(2).unwrap().used.as_secs_f64();
    assert!((ua / ub - 0.25).abs() <= 0.0125, "ratio {}", ua / ub);
    assert_eq!(
        b.gpu.busy_ns(EngineId::Bcs),
        s.stats(1).unwrap().used.as_nanos() as u64 + s.stats(2).unwrap().used.as_nanos() as u64
    );
}

#[test]
fn exact_reservation_takes_the_asked_windows_or_refuses() {
    let mut gpu = SwGpu::new(SwConfig::default());
    let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(1 << 20));
    let first = gpu
        .reserve(ReserveRequest {
            owner: 1,
            low_size: 64 << 20,
            high_size: 512 << 20,
            fences: 4,
            memory: mem.clone(),
            at: None,
        })
        .unwrap();
    // Ask for the window after a gap left at the first-fit position.
    let at = ReserveAt {
        low_start: first.low.end() + (64 << 20),
        high_start: first.high.end() + (512 << 20),
        fence_base: first.fence_base + 8,
    };
    let req = |owner, at| ReserveRequest {
        owner,
        low_size: 64 << 20,
        high_size: 512 << 20,
        fences: 4,
        memory: mem.clone(),
        at: Some(at),
    };
    let r = gpu.reserve(req(2, at)).unwrap();
    assert_eq!(
        (r.low.start, r.high.start, r.fence_base),
        (at.low_start, at.high_start, at.fence_base)
    );
    // Overlapping a holder, or outside the pool: refused.
    let clash = ReserveAt {
        low_start: first.low.start,
        ..at
    };
    assert!(matches!(
        gpu.reserve(req(3, clash)),
        Err(HostError::NoRoom { .. })
    ));
    let outside = ReserveAt {
        low_start: 0,
        high_start: first.high.end(),
        fence_base: first.fence_base + 4,
    };
    assert!(matches!(
        gpu.reserve(req(3, outside)),
        Err(HostError::NoRoom { .. })
    ));
}
