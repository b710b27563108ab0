//! Fuzz target: every dword sequence decodes on every engine without panicking, and every
//! decoded length is positive and bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediator::cmd::parse::decode;
use mediator::host::EngineId;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(4) {
        let h = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        for e in EngineId::ALL {
            if let Ok(c) = decode(e, h) {
                assert!((1..=0x1_0001).contains(&c.len));
            }
        }
    }
});
