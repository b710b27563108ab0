//! Scanner tests: acceptance, every structural rejection, the audit, copy semantics, and a
//! property test over random command streams.

use proptest::prelude::*;

use super::parse::decode;
use super::*;
use crate::host::{EngineId, GmRange, PpgttHandle};
use crate::memory::{GuestMemory, VecMemory};

/// Guest RAM is 4 MiB; GGTT and PPGTT both map gma → gpa identically below 4 MiB.
const MEM: u64 = 4 << 20;
const RING: u64 = 0x1_0000;
const BB: u64 = 0x2_0000;

fn tr(_: GmSpace, gma: u64) -> Option<u64> {
    (gma < MEM).then_some(gma)
}

fn req(engine: EngineId, tail: u32) -> ScanRequest {
    ScanRequest {
        owner: 1,
        engine,
        tag: 7,
        seqno: 9,
        ring: RingSlice {
            start: RING,
            size: 4096,
            head: 0,
            tail,
        },
        windows: [
            GmRange {
                start: 0,
                size: 2 << 20,
            },
            GmRange {
                start: 2 << 20,
                size: 2 << 20,
            },
        ],
        ppgtt: Some(PpgttHandle(1)),
        context: WorkloadContext::default(),
    }
}

fn put(mem: &VecMemory, gma: u64, dwords: &[u32]) {
    for (i, d) in dwords.iter().enumerate() {
        mem.write_u32(gma + 4 * i as u64, *d).unwrap();
    }
}

/// Writes `ring` at the ring start (padded with NOOPs to a qword) and scans it.
fn scan_ring(
    mem: &VecMemory,
    engine: EngineId,
    ring: &[u32],
) -> Result<ShadowWorkload, ScanReject> {
    let mut r = ring.to_vec();
    if r.len() % 2 == 1 {
        r.push(0);
    }
    put(mem, RING, &r);
    let s = Scanner::new(engine, ScanLimits::default());
    s.scan(&req(engine, 4 * r.len() as u32), mem, &tr)
}

fn bb_start(gma: u64, flags: u32) -> [u32; 3] {
    [0x1880_0001 | flags, gma as u32, (gma >> 32) as u32]
}

const BB_END: u32 = 0x0500_0000;
const SECOND: u32 = 1 << 22;

fn reason(r: Result<ShadowWorkload, ScanReject>) -> RejectReason {
    r.unwrap_err().reason
}

#[test]
fn accepts_a_kernel_request_and_copies_ring_and_batch() {
    let mem = VecMemory::new(MEM);
    put(
        &mem,
        BB,
        &[
            0x1100_0001,
            0x7004,
            0xffff_0000,
            0x1040_0002,
            0x3000,
            0,
            5,
            BB_END,
        ],
    );
    let mut ring = vec![0x1040_0002, 0x1000, 0, 4, 0x0400_0000];
    ring.extend(bb_start(BB, 0));
    ring.extend([0x0100_0000, 0x0280_0000]);
    let w = scan_ring(&mem, EngineId::Rcs, &ring).unwrap();
    assert_eq!(&w.ring()[..ring.len()], &ring[..]);
    let key = BatchKey {
        gma: BB,
        ppgtt: false,
        level: 1,
    };
    assert_eq!(w.batch(key).unwrap().dwords().len(), 8);
    assert_eq!((w.owner(), w.tag(), w.seqno()), (1, 7, 9));
}

#[test]
fn the_copy_is_immune_to_later_guest_writes() {
    let mem = VecMemory::new(MEM);
    put(&mem, BB, &[0x1040_0002, 0x3000, 0, 5, BB_END]);
    let w = scan_ring(&mem, EngineId::Rcs, &bb_start(BB, 0)).unwrap();
    put(&mem, BB, &[0x1040_0002, 0x3000, 0, 6, BB_END]);
    assert_eq!(w.batches()[0].dwords()[3], 5);
}

#[test]
fn second_level_from_ring_and_third_level_are_rejected() {
    let mem = VecMemory::new(MEM);
    put(&mem, BB, &[BB_END]);
    let r = scan_ring(&mem, EngineId::Rcs, &bb_start(BB, SECOND));
    assert_eq!(reason(r), RejectReason::NestingTooDeep);

    let mut l1 = bb_start(BB + 0x100, SECOND).to_vec();
    l1.push(BB_END);
    put(&mem, BB, &l1);
    let mut l2 = bb_start(BB + 0x200, SECOND).to_vec();
    l2.push(BB_END);
    put(&mem, BB + 0x100, &l2);
    put(&mem, BB + 0x200, &[BB_END]);
    let r = scan_ring(&mem, EngineId::Rcs, &bb_start(BB, 0));
    let e = r.unwrap_err();
    assert_eq!(e.reason, RejectReason::NestingTooDeep);
    assert!(matches!(e.buffer, BufferId::Batch(k) if k.level == 2));
}

#[test]
fn chain_loops_are_copied_once_and_long_chains_are_rejected() {
    let mem = VecMemory::new(MEM);
    put(&mem, BB, &bb_start(BB + 0x100, 0));
    put(&mem, BB + 0x100, &bb_start(BB, 0));
    // A loop is safe to run from the copies: each batch is copied once and the engine's
    // hang detection ends it (what a self-jumping i915 hang batch relies on).
    let w = scan_ring(&mem, EngineId::Rcs, &bb_start(BB, 0)).unwrap();
    assert_eq!(w.batches().len(), 2);
    put(&mem, BB + 0x300, &bb_start(BB + 0x300, 0));
    let w = scan_ring(&mem, EngineId::Rcs, &bb_start(BB + 0x300, 0)).unwrap();
    assert_eq!(w.batches().len(), 1);

    for i in 0..100u64 {
        put(&mem, BB + i * 0x10, &bb_start(BB + (i + 1) * 0x10, 0));
    }
    let r = scan_ring(&mem, EngineId::Rcs, &bb_start(BB, 0));
    assert_eq!(reason(r), RejectReason::TooManyChains);
}

#[test]
fn truncated_batches_and_missing_ends_are_rejected() {
    let mem = VecMemory::new(MEM);
    // LRI for two registers (5 dwords) starting 2 dwords before unmapped memory.
    put(&mem, MEM - 8, &[0x1100_0003, 0x7004]);
    let r = scan_ring(&mem, EngineId::Rcs, &bb_start(MEM - 8, 0));
    assert_eq!(reason(r), RejectReason::Truncated);

    put(&mem, MEM - 8, &[0, 0]);
    let r = scan_ring(&mem, EngineId::Rcs, &bb_start(MEM - 8, 0));
    assert_eq!(reason(r), RejectReason::MissingBatchEnd);
}

#[test]
fn ring_commands_running_past_the_tail_are_rejected() {
    let mem = VecMemory::new(MEM);
    // SDI needs 4 dwords; only 2 are inside [head, tail).
    let r = scan_ring(&mem, EngineId::Rcs, &[0x1040_0002, 0x1000]);
    assert_eq!(reason(r), RejectReason::RunsPastTail);
}

#[test]
fn ring_wraps_and_geometry_is_checked() {
    let mem = VecMemory::new(MEM);
    put(&mem, RING + 4096 - 8, &[0x1040_0002, 0x1000]);
    put(&mem, RING, &[0, 5]);
    let s = Scanner::new(EngineId::Rcs, ScanLimits::default());
    let mut rq = req(EngineId::Rcs, 8);
    rq.ring.head = 4096 - 8;
    let w = s.scan(&rq, &mem, &tr).unwrap();
    assert_eq!(w.ring(), &[0x1040_0002, 0x1000, 0, 5]);
    rq.ring.tail = 4;
    assert_eq!(
        reason(s.scan(&rq, &mem, &tr)),
        RejectReason::BadRingGeometry
    );
    rq.ring.tail = 4096;
    assert_eq!(
        reason(s.scan(&rq, &mem, &tr)),
        RejectReason::BadRingGeometry
    );
}

#[test]
fn lri_to_a_register_outside_the_whitelist_is_rejected() {
    let mem = VecMemory::new(MEM);
    let ok = scan_ring(&mem, EngineId::Rcs, &[0x1100_0001, 0x2244, 0x0008_0008]);
    assert!(ok.is_ok());
    let r = scan_ring(&mem, EngineId::Rcs, &[0x1100_0001, 0x10_1008, 1]);
    assert_eq!(reason(r), RejectReason::RegisterNotAllowed);
    let r = scan_ring(&mem, EngineId::Rcs, &[0x1200_0002, 0x2358, 0x1000, 0]);
    assert_eq!(reason(r), RejectReason::RegisterNotAllowed);
    let r = scan_ring(&mem, EngineId::Rcs, &[0x1500_0001, 0x2600, 0x2608]);
    assert_eq!(reason(r), RejectReason::ForbiddenCommand);
}

#[test]
fn writes_outside_the_windows_are_rejected() {
    let mem = VecMemory::new(MEM);
    let r = scan_ring(&mem, EngineId::Rcs, &[0x1040_0002, 0, 1, 4]); // 4 GiB + 0
    assert_eq!(reason(r), RejectReason::AddressOutOfWindow);
    // PIPE_CONTROL QW write with the GGTT bit, straddling the end of the high window.
    let pc = [0x7A00_0004, (1 << 24) | (1 << 14), (4 << 20) - 4, 0, 1, 0];
    assert_eq!(
        reason(scan_ring(&mem, EngineId::Rcs, &pc)),
        RejectReason::AddressOutOfWindow
    );
    // MI_FLUSH_DW index mode beyond the status page.
    let fl = [0x1320_4002, 0x1000, 0, 1];
    assert_eq!(
        reason(scan_ring(&mem, EngineId::Bcs, &fl)),
        RejectReason::IndexOutOfRange
    );
    // A blit into memory beyond the windows.
    let blt = [0x5430_0005, 0x03F0_1000, 0, 0x0010_0010, 0, 1, 0];
    assert_eq!(
        reason(scan_ring(&mem, EngineId::Bcs, &blt)),
        RejectReason::AddressOutOfWindow
    );
}

#[test]
fn unknown_and_forbidden_commands_are_rejected() {
    let mem = VecMemory::new(MEM);
    let r = scan_ring(&mem, EngineId::Rcs, &[0x1f80_0000]);
    assert_eq!(reason(r), RejectReason::UnknownCommand);
    let r = scan_ring(&mem, EngineId::Rcs, &[0x0E40_8002, 0, 0x1000, 0]);
    assert_eq!(reason(r), RejectReason::ForbiddenCommand);
    let r = scan_ring(&mem, EngineId::Rcs, &[0x5430_0005]);
    assert_eq!(reason(r), RejectReason::UnknownCommand);
}

#[test]
fn ppgtt_batches_get_privileged_writes_patched_out_not_rejected() {
    let mem = VecMemory::new(MEM);
    let batch = [
        0x1100_0001,
        0x10_1008,
        1,
        0x1040_0002,
        0x1000,
        0,
        5,
        0x1000_0002,
        0x1000,
        0,
        6,
        BB_END,
    ];
    put(&mem, BB, &batch);
    let w = scan_ring(&mem, EngineId::Rcs, &bb_start(BB, 1 << 8)).unwrap();
    let b = &w.batches()[0];
    assert!(b.key().ppgtt && !b.privileged());
    assert_eq!(&b.dwords()[..7], &[0; 7]);
    assert_eq!(&b.dwords()[7..], &batch[7..]);

    let mut rq = req(EngineId::Rcs, 16);
    rq.ppgtt = None;
    put(&mem, RING, &bb_start(BB, 1 << 8));
    put(&mem, RING + 12, &[0]);
    let s = Scanner::new(EngineId::Rcs, ScanLimits::default());
    assert_eq!(
        reason(s.scan(&rq, &mem, &tr)),
        RejectReason::PpgttWithoutContext
    );
}

#[test]
fn size_and_batch_count_limits_hold() {
    let mem = VecMemory::new(MEM);
    put(&mem, BB, &[BB_END]);
    put(&mem, BB + 0x40, &[BB_END]);
    let mut ring = bb_start(BB, 0).to_vec();
    ring.extend(bb_start(BB, 0)); // the same batch twice: copied once
    ring.extend(bb_start(BB + 0x40, 0));
    let limits = ScanLimits {
        max_batches: 1,
        ..ScanLimits::default()
    };
    ring.push(0);
    put(&mem, RING, &ring);
    let s = Scanner::new(EngineId::Rcs, limits);
    let r = s.scan(&req(EngineId::Rcs, 24), &mem, &tr).unwrap();
    assert_eq!(r.batches().len(), 1);
    let r = s.scan(&req(EngineId::Rcs, 40), &mem, &tr);
    assert_eq!(reason(r), RejectReason::TooManyBatches);

    // A 16 KiB batch of NOOPs with a 4 KiB limit.
    let small = Scanner::new(
        EngineId::Rcs,
        ScanLimits {
            max_total_bytes: 4096,
            ..ScanLimits::default()
        },
    );
    put(&mem, RING, &bb_start(BB + 0x1000, 0));
    put(&mem, RING + 12, &[0]);
    let r = small.scan(&req(EngineId::Rcs, 16), &mem, &tr);
    assert_eq!(reason(r), RejectReason::TooLarge);
}

#[test]
fn counters_count_per_reason() {
    let mut c = RejectCounters::default();
    c.record(RejectReason::ChainLoop);
    c.record(RejectReason::ChainLoop);
    c.record(RejectReason::TooLarge);
    assert_eq!(c.get(RejectReason::ChainLoop), 2);
    assert_eq!(c.get(RejectReason::TooLarge), 1);
    assert_eq!(c.get(RejectReason::Unmapped), 0);
    assert_eq!(c.total(), 3);
    let idx: std::collections::HashSet<_> = RejectReason::ALL.iter().map(|r| r.index()).collect();
    assert_eq!(idx.len(), RejectReason::ALL.len());
}

/// Checks that `dwords` decodes exactly, command after command, to its end.
fn decodes_exactly(engine: EngineId, dwords: &[u32]) -> Option<u32> {
    let mut i = 0usize;
    let mut last = 0;
    while i < dwords.len() {
        let c = decode(engine, dwords[i]).ok()?;
        last = dwords[i];
        i += c.len as usize;
    }
    (i == dwords.len()).then_some(last)
}

fn header_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(BB_END),
        Just(0x1880_0001),
        Just(0x1880_0101),
        Just(0x1880_0001 | SECOND),
        Just(0x1100_0001),
        Just(0x1040_0002),
        Just(0x7A00_0004),
        Just(0x1300_0002),
        any::<u32>(),
        0u32..0x4000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_streams_never_panic_and_accepted_copies_decode(
        ring in proptest::collection::vec(header_strategy(), 0..64),
        batch in proptest::collection::vec(header_strategy(), 0..256),
        engine in prop_oneof![Just(EngineId::Rcs), Just(EngineId::Bcs), Just(EngineId::Vcs)],
    ) {
        let mem = VecMemory::new(MEM);
        // Batch targets in random dwords land anywhere; put the batch where low values point.
        put(&mem, 0, &batch);
        put(&mem, BB, &batch);
        if let Ok(w) = scan_ring(&mem, engine, &ring) {
            prop_assert!(decodes_exactly(engine, w.ring()).is_some());
            for b in w.batches() {
                let last = decodes_exactly(engine, b.dwords());
                prop_assert!(last.is_some());
                let op = last.map(|h| decode(engine, h).map(|c| c.op));
                prop_assert!(matches!(
                    op,
                    Some(Ok(super::parse::Op::BatchBufferEnd | super::parse::Op::BatchBufferStart))
                ));
            }
        }
    }
}
