//! Fuzz target: the framebuffer decoder (`mediator::display::fb`). Arbitrary primary-plane
//! registers are decoded; small enough planes are then read out of guest memory through
//! an arbitrary GGTT (partly unmapped, partly pointing outside RAM). Neither may panic; a
//! decoded plane must respect the size limits and a read image must have the plane's
//! dimensions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediator::display::fb::{self, GttLookup, PlaneRegs, MAX_PIXELS};
use mediator::memory::{GuestMemory, VecMemory, PAGE_SIZE};

/// Guest RAM: 256 KiB.
const RAM: u64 = 256 << 10;
/// Planes read per input at most this many pixels (a 4096×4096 read per input would make
/// the fuzzer crawl; the decoder itself is checked at every size).
const READ_PIXELS: u64 = 256 * 256;

/// A GGTT from the input: page `p` maps to `table[p % len]` frames (bit 7: unmapped).
struct Gtt<'a>(&'a [u8]);

impl GttLookup for Gtt<'_> {
    fn gma_to_gpa(&self, gm: u64) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let e = self.0[((gm / PAGE_SIZE) % self.0.len() as u64) as usize];
        (e & 0x80 == 0).then(|| u64::from(e) * PAGE_SIZE * 3 / 2 + gm % PAGE_SIZE)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 25 {
        return;
    }
    let w = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let regs = PlaneRegs {
        ctl: w(0),
        stride: w(4),
        pos: w(8),
        size: w(12),
        surf: w(16),
        offset: w(20),
    };
    let pipe = u32::from(data[24] % 4);
    let Ok(info) = fb::decode(&regs, pipe) else {
        return;
    };
    let pixels = u64::from(info.width) * u64::from(info.height);
    assert!(pixels <= MAX_PIXELS);
    if pixels > READ_PIXELS {
        return;
    }
    let mem = VecMemory::new(RAM);
    let rest = &data[25..];
    let _ = mem.write(0, &rest[..rest.len().min(RAM as usize)]);
    if let Ok(frame) = fb::read_plane(&info, &Gtt(rest), &mem) {
        assert_eq!(frame.image.width, info.width);
        assert_eq!(frame.image.height, info.height);
    }
});
