//! Scanner throughput next to a memcpy of the same bytes out of the same guest memory,
//! measured in the same run (project issue 5; goal: scan ≥ 0.5 × memcpy).
//!
//! Workloads (each a ring slice calling one ~4 MiB first-level batch):
//! * RCS: repeated draws shaped like Mesa's: PIPE_CONTROL (with post-sync writes),
//!   3DSTATE_* of many lengths, 3DPRIMITIVE, MI_LOAD_REGISTER_IMM to whitelisted
//!   registers, MI_STORE_DATA_IMM into the GGTT window, and every draw a
//!   MI_BATCH_BUFFER_START to one of 16 second-level batches of 3D state;
//! * BCS: XY_COLOR_BLT / XY_SRC_COPY_BLT into the window, XY_FAST_COPY_BLT, MI_FLUSH_DW.
//!
//! "scan" is `Scanner::scan` end to end: GGTT translation per page, the guest reads, the
//! decode, the audit and the returned `ShadowWorkload` (its allocations included).
//! "memcpy" is `GuestMemory::read` of the same guest memory (`VecMemory`) for exactly the
//! buffers and byte counts the scan copied, one call per buffer, into a preallocated buffer.
//! Both are the best of `SCAN_BENCH_ITERS` (default 15) interleaved runs in wall time (on
//! a loaded machine the minimum is the run that was not preempted).
//!
//! Run with `cargo bench -p mediator --bench scan`; for instruction counts run the binary
//! under `valgrind --tool=callgrind` with `SCAN_BENCH_ITERS=1` (and `SCAN_BENCH_ENGINES=rcs0`
//! or `bcs0` for one engine).

use std::hint::black_box;
use std::time::{Duration, Instant};

use mediator::cmd::{
    GmSpace, RingSlice, ScanLimits, ScanRequest, Scanner, ShadowWorkload, WorkloadContext,
};
use mediator::host::{EngineId, GmRange, PpgttHandle};
use mediator::memory::{GuestMemory, VecMemory};

const MEM: u64 = 16 << 20;
const RING: u64 = 0x1000;
const BATCH: u64 = 0x10_0000;
const SECOND: u64 = 0x80_0000;
const SECOND_COUNT: u64 = 16;
const SECOND_STRIDE: u64 = 0x1000;
const TARGET_BYTES: usize = 4 << 20;
const BB_END: u32 = 0x0500_0000;

/// A command: `header` followed by `len - 1` dwords from `body` (zero-padded).
fn cmd(out: &mut Vec<u32>, header: u32, len: usize, body: &[u32]) {
    out.push(header);
    out.extend((0..len - 1).map(|i| body.get(i).copied().unwrap_or(0)));
}

/// 3D state of varied lengths: (header, total dwords).
const STATE: &[(u32, usize)] = &[
    (0x7808_0003, 5),  // 3DSTATE_VERTEX_BUFFERS
    (0x7809_0003, 5),  // 3DSTATE_VERTEX_ELEMENTS
    (0x7810_0007, 9),  // 3DSTATE_VS
    (0x7811_0008, 10), // 3DSTATE_GS
    (0x7813_0002, 4),  // 3DSTATE_SF
    (0x7820_000a, 12), // 3DSTATE_PS
    (0x784F_0002, 4),  // 3DSTATE_PS_EXTRA
    (0x7826_0000, 2),  // 3DSTATE_BINDING_TABLE_POINTERS_PS
    (0x782B_0000, 2),  // 3DSTATE_SAMPLER_STATE_POINTERS_PS
    (0x7815_0009, 11), // 3DSTATE_CONSTANT_VS
    (0x7917_0007, 9),  // 3DSTATE_SO_DECL_LIST (9-bit length field)
    (0x780A_0003, 5),  // 3DSTATE_INDEX_BUFFER
    (0x7805_0001, 3),  // 3DSTATE_DEPTH_BUFFER-ish
    (0x680B_0000, 1),  // 3DSTATE_VF_STATISTICS
];

fn draw(out: &mut Vec<u32>, n: u64) {
    // PIPE_CONTROL: CS stall + post-sync QW write to a PPGTT address (no GGTT bit).
    cmd(
        out,
        0x7A00_0004,
        6,
        &[(1 << 20) | (2 << 14), 0x4000, 0, 1, 0],
    );
    cmd(out, 0x6904_0000, 1, &[]); // PIPELINE_SELECT
    for &(h, len) in STATE {
        cmd(out, h, len, &[0x1000, 0x2000, 0x3000]);
    }
    // LRI to two whitelisted registers: a GPR and CACHE_MODE_1.
    cmd(out, 0x1100_0003, 5, &[0x2600, 1, 0x7004, 0x0001_0001]);
    let second = SECOND + (n % SECOND_COUNT) * SECOND_STRIDE;
    cmd(out, 0x1880_0001 | (1 << 22), 3, &[second as u32, 0]);
    cmd(out, 0x7B00_0005, 7, &[0, 3, 0, 1, 0, 0]); // 3DPRIMITIVE
    cmd(out, 0x1040_0002, 4, &[0x6000, 0, n as u32]); // SDI to the GGTT window
    cmd(out, 0x0280_0000, 1, &[]); // MI_ARB_CHECK
}

fn blits(out: &mut Vec<u32>, n: u64) {
    let dst = 0x40_0000 + (n % 64) * 0x1_0000;
    cmd(
        out,
        0x5430_0005,
        7,
        &[0x03F0_1000, 0, 0x0010_0010, dst as u32, 0, 0],
    );
    cmd(
        out,
        0x54F0_0008,
        10,
        &[
            0x03CC_1000,
            0,
            0x0010_0010,
            dst as u32,
            0,
            0,
            0x1000,
            0x30_0000,
            0,
        ],
    );
    cmd(out, 0x5080_0008, 10, &[0, 0, 0x0010_0010, dst as u32, 0, 0]); // XY_FAST_COPY_BLT
    cmd(out, 0x1300_4002, 4, &[0x5004, 0, 1]); // MI_FLUSH_DW post-sync write
}

fn first_level(engine: EngineId) -> Vec<u32> {
    let mut v = Vec::new();
    let mut n = 0;
    while v.len() * 4 < TARGET_BYTES {
        match engine {
            EngineId::Bcs => blits(&mut v, n),
            _ => draw(&mut v, n),
        }
        n += 1;
    }
    v.push(BB_END);
    v
}

/// A second-level batch: ~2 KiB of 3D state ending in MI_BATCH_BUFFER_END.
fn second_level() -> Vec<u32> {
    let mut v = Vec::new();
    while v.len() < 500 {
        for &(h, len) in STATE {
            cmd(&mut v, h, len, &[0x100, 0x200]);
        }
    }
    v.push(BB_END);
    v
}

fn put(mem: &VecMemory, gma: u64, d: &[u32]) {
    let bytes: Vec<u8> = d.iter().flat_map(|x| x.to_le_bytes()).collect();
    mem.write(gma, &bytes).expect("bench memory");
}

fn setup(engine: EngineId) -> (VecMemory, ScanRequest) {
    let mem = VecMemory::new(MEM);
    put(&mem, BATCH, &first_level(engine));
    for i in 0..SECOND_COUNT {
        put(&mem, SECOND + i * SECOND_STRIDE, &second_level());
    }
    let mut ring = Vec::new();
    if engine == EngineId::Rcs {
        cmd(&mut ring, 0x7A00_0004, 6, &[1 << 20, 0, 0, 0, 0]); // PIPE_CONTROL CS stall
    }
    let context_control = engine.mmio_base() + 0x244;
    cmd(&mut ring, 0x1100_0001, 3, &[context_control, 0x0008_0008]); // LRI
    cmd(&mut ring, 0x1880_0001, 3, &[BATCH as u32, 0]); // BB_START (GGTT)
    ring.push(0x0280_0000); // MI_ARB_CHECK
    ring.resize(ring.len().next_multiple_of(2) + 2, 0); // NOOP padding to a qword
    put(&mem, RING, &ring);
    let half = GmRange {
        start: 0,
        size: MEM / 2,
    };
    let req = ScanRequest {
        owner: 1,
        engine,
        tag: 0,
        seqno: 0,
        ring: RingSlice {
            start: RING,
            size: 4096,
            head: 0,
            tail: (ring.len() * 4) as u32,
        },
        windows: [
            half,
            GmRange {
                start: MEM / 2,
                ..half
            },
        ],
        ppgtt: Some(PpgttHandle(1)),
        context: WorkloadContext::default(),
    };
    (mem, req)
}

/// What the baseline copies: (guest address, bytes) of every buffer the scan copied.
fn copied_buffers(req: &ScanRequest, w: &ShadowWorkload) -> Vec<(u64, usize)> {
    let mut v = vec![(req.ring.start, w.ring().len() * 4)];
    v.extend(
        w.batches()
            .iter()
            .map(|b| (b.key().gma, b.dwords().len() * 4)),
    );
    v
}

fn bench(engine: EngineId, iters: usize) -> f64 {
    let (mem, req) = setup(engine);
    // Identity GGTT below MEM, translated per page as a real GTT walk would be.
    let tr = |_: GmSpace, gma: u64| (gma < MEM).then_some(gma);
    let scanner = Scanner::new(engine, ScanLimits::default());
    let w = scanner
        .scan(&req, &mem, &tr)
        .expect("realistic buffer scans");
    let want_batches = if engine == EngineId::Rcs {
        1 + SECOND_COUNT as usize
    } else {
        1
    };
    assert_eq!(
        w.batches().len(),
        want_batches,
        "the bench reaches every batch"
    );
    let bufs = copied_buffers(&req, &w);
    let bytes = w.copied_bytes();
    let mut dst = vec![0u8; bufs.iter().map(|b| b.1).max().unwrap_or(0)];
    drop(w);
    let (mut t_scan, mut t_copy) = (Duration::MAX, Duration::MAX);
    for _ in 0..iters {
        let t = Instant::now();
        let w = scanner.scan(&req, &mem, &tr).expect("scans");
        black_box(w);
        t_scan = t_scan.min(t.elapsed());
        let t = Instant::now();
        for &(gma, n) in &bufs {
            mem.read(black_box(gma), &mut dst[..n])
                .expect("baseline read");
            black_box(&mut dst);
        }
        t_copy = t_copy.min(t.elapsed());
    }
    let mbs = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    let ratio = mbs(t_scan) / mbs(t_copy);
    println!(
        "{engine}: {} KiB in {} buffers: scan {:.0} MB/s, memcpy {:.0} MB/s, ratio {:.3} (goal >= 0.5)",
        bytes / 1024,
        bufs.len(),
        mbs(t_scan),
        mbs(t_copy),
        ratio
    );
    ratio
}

fn main() {
    let iters = std::env::var("SCAN_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    println!(
        "scan = Scanner::scan end to end (per-page GGTT translation, guest reads, decode, \
         audit, ShadowWorkload allocation); memcpy = GuestMemory::read of the same buffers \
         and bytes from the same VecMemory into a reused buffer; best of {iters} (wall time)"
    );
    // SCAN_BENCH_ENGINES=bcs0 runs one engine (e.g. under callgrind).
    let only = std::env::var("SCAN_BENCH_ENGINES").unwrap_or_default();
    for engine in [EngineId::Rcs, EngineId::Bcs] {
        if only.is_empty() || only.contains(&engine.to_string()) {
            bench(engine, iters);
        }
    }
}
