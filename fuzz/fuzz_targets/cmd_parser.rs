//! Fuzz target: every dword sequence decodes on every engine without panicking, every
//! decoded length is positive and bounded, and the scanner's table-driven decoder agrees
//! with the reference decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediator::cmd::parse::decode;
use mediator::cmd::table::DecodeTable;
use mediator::host::EngineId;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(4) {
        let h = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        for e in EngineId::ALL {
            let reference = decode(e, h);
            if let Ok(c) = reference {
                assert!((1..=0x1_0001).contains(&c.len));
            }
            assert_eq!(
                DecodeTable::for_engine(e).decode(h),
                reference,
                "{e} {h:#010x}"
            );
        }
    }
});
