//! Fuzz target: arbitrary bytes as ring and batch memory, plus a few bytes of request
//! parameters, through the scanner. It must never panic; an accepted workload must contain
//! only batches the scan copied.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediator::cmd::{GmSpace, RingSlice, ScanLimits, ScanRequest, Scanner, WorkloadContext};
use mediator::host::{EngineId, GmRange, PpgttHandle};
use mediator::memory::{GuestMemory, VecMemory};

/// Guest RAM size: 64 KiB; the fuzz input is copied to its start.
const MEM: u64 = 64 << 10;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (params, body) = data.split_at(8);
    let engine = EngineId::ALL[usize::from(params[0] & 3)];
    let head = u32::from(u16::from_le_bytes([params[1], params[2]]) & 0x0ffc);
    let tail = u32::from(u16::from_le_bytes([params[3], params[4]]) & 0x0ff8);
    let ring_page = u64::from(params[5] & 0x0f) << 12;
    let ppgtt = (params[6] & 1 == 1).then_some(PpgttHandle(1));
    let mem = VecMemory::new(MEM);
    let n = body.len().min(MEM as usize);
    let _ = mem.write(0, &body[..n]);
    // PPGTT addresses are offset by 1 MiB so the two spaces differ.
    let tr = |space: GmSpace, gma: u64| match space {
        GmSpace::Ggtt => (gma < MEM).then_some(gma),
        GmSpace::Ppgtt => gma.checked_sub(1 << 20).filter(|a| *a < MEM),
    };
    let req = ScanRequest {
        owner: 1,
        engine,
        tag: 0,
        seqno: 0,
        ring: RingSlice {
            start: ring_page,
            size: 4096,
            head,
            tail,
        },
        windows: [
            GmRange {
                start: 0,
                size: 32 << 10,
            },
            GmRange {
                start: 32 << 10,
                size: 32 << 10,
            },
        ],
        ppgtt,
        context: WorkloadContext::default(),
    };
    let limits = ScanLimits {
        max_chain: 16,
        max_batches: 32,
        max_total_bytes: 256 << 10,
    };
    if let Ok(w) = Scanner::new(engine, limits).scan(&req, &mem, &tr) {
        assert!(w.copied_bytes() <= 256 << 10);
    }
});
