//! Scanner throughput next to a plain memcpy of the same bytes, measured in the same run.
//!
//! The buffer is a realistic RCS batch: repeated draw sequences of 3D state (the shape of
//! i915's null render state and Mesa draws: PIPE_CONTROL, 3DSTATE_* of various lengths,
//! 3DPRIMITIVE, LRI, stores), plus a BCS batch of blits. Run with
//! `cargo bench -p mediator --bench scan`. Prints MB/s for both and their ratio
//! (goal: scan ≥ 0.5 × memcpy).

use std::hint::black_box;
use std::time::{Duration, Instant};

use mediator::cmd::{GmSpace, RingSlice, ScanLimits, ScanRequest, Scanner, WorkloadContext};
use mediator::host::{EngineId, GmRange};
use mediator::memory::{GuestMemory, VecMemory};

const MEM: u64 = 8 << 20;
const RING: u64 = 0x1000;
const BATCH: u64 = 0x10_0000;
const TARGET_BYTES: usize = 4 << 20;

/// One draw's worth of 3D commands: (header, total dwords).
fn draw(out: &mut Vec<u32>) {
    let cmds: &[(u32, u32)] = &[
        (0x7A00_0004, 6),  // PIPE_CONTROL
        (0x6904_0000, 1),  // PIPELINE_SELECT
        (0x7808_0003, 5),  // 3DSTATE_VERTEX_BUFFERS
        (0x7809_0003, 5),  // 3DSTATE_VERTEX_ELEMENTS
        (0x7810_0007, 9),  // 3DSTATE_VS
        (0x7811_0008, 10), // 3DSTATE_GS
        (0x7820_000a, 12), // 3DSTATE_PS
        (0x7826_0000, 2),  // BINDING_TABLE_POINTERS_PS
        (0x782B_0000, 2),  // SAMPLER_STATE_POINTERS_PS
        (0x7819_0004, 6),  // 3DSTATE_CONSTANT_VS-ish
        (0x780A_0003, 5),  // 3DSTATE_INDEX_BUFFER
        (0x680B_0000, 1),  // 3DSTATE_VF_STATISTICS
        (0x7B00_0005, 7),  // 3DPRIMITIVE
    ];
    for &(h, len) in cmds {
        out.push(h);
        out.extend(std::iter::repeat(0).take(len as usize - 1));
    }
    out.extend([0x1100_0001, 0x2600, 1]); // LRI GPR
    out.extend([0x1000_0002, 0x4000, 0, 7]); // SDI PPGTT
}

fn blits(out: &mut Vec<u32>) {
    out.extend([0x5430_0005, 0x03F0_1000, 0, 0x0010_0010, 0x20_0000, 0, 0]);
    out.extend([
        0x54F0_0008,
        0x03CC_1000,
        0,
        0x0010_0010,
        0x20_0000,
        0,
        0,
        0x1000,
        0x30_0000,
        0,
    ]);
    out.extend([0x1300_4002, 0x5004, 0, 1]);
}

fn build(engine: EngineId) -> Vec<u32> {
    let mut v = Vec::new();
    while v.len() * 4 < TARGET_BYTES {
        match engine {
            EngineId::Bcs => blits(&mut v),
            _ => draw(&mut v),
        }
    }
    v.push(0x0500_0000);
    v
}

fn put(mem: &VecMemory, gma: u64, d: &[u32]) {
    let bytes: Vec<u8> = d.iter().flat_map(|x| x.to_le_bytes()).collect();
    mem.write(gma, &bytes).expect("bench memory");
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn bench(engine: EngineId) -> f64 {
    let mem = VecMemory::new(MEM);
    let batch = build(engine);
    put(&mem, BATCH, &batch);
    put(&mem, RING, &[0x1880_0001, BATCH as u32, 0, 0]);
    let tr = |_: GmSpace, gma: u64| (gma < MEM).then_some(gma);
    let req = ScanRequest {
        owner: 1,
        engine,
        tag: 0,
        seqno: 0,
        ring: RingSlice {
            start: RING,
            size: 4096,
            head: 0,
            tail: 16,
        },
        windows: [
            GmRange {
                start: 0,
                size: MEM / 2,
            },
            GmRange {
                start: MEM / 2,
                size: MEM / 2,
            },
        ],
        ppgtt: Some(mediator::host::PpgttHandle(1)),
        context: WorkloadContext::default(),
    };
    let scanner = Scanner::new(engine, ScanLimits::default());
    let bytes = batch.len() * 4;
    let t_scan = time(|| {
        let w = scanner
            .scan(&req, &mem, &tr)
            .expect("realistic buffer scans");
        black_box(w);
    });
    let src: Vec<u8> = batch.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut dst = vec![0u8; src.len()];
    let t_copy = time(|| {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    });
    let mbs = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    let ratio = mbs(t_scan) / mbs(t_copy);
    println!(
        "{engine}: {} KiB: scan {:.0} MB/s, memcpy {:.0} MB/s, ratio {:.3} (goal >= 0.5)",
        bytes / 1024,
        mbs(t_scan),
        mbs(t_copy),
        ratio
    );
    ratio
}

fn main() {
    bench(EngineId::Rcs);
    bench(EngineId::Bcs);
}
