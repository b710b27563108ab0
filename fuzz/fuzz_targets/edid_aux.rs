//! Fuzz target: the EDID/AUX path of the virtual monitor. Arbitrary AUX requests (native
//! DPCD reads/writes and I2C-over-AUX EDID transactions, with the DDC state carried from
//! one to the next) go to `DpSink::transfer`, arbitrary GMBUS register sequences go to
//! `Gmbus`, and arbitrary bytes go through the EDID decoders. Replies must stay within
//! the AUX message size; an EDID built for any valid mode must have a valid checksum and decode
//! back to its own preferred timing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediator::display::dp::{DpSink, AUX_MAX_BYTES};
use mediator::display::edid::{self, EDID_LEN};
use mediator::display::gmbus::Gmbus;
use mediator::display::monitor::MonitorConfig;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (mode, rest) = data.split_at(8);
    // Modes come from operators and are validated (`MonitorConfig::new`) before an EDID
    // is built for them; only valid ones go to `build`.
    let built = MonitorConfig::new(
        u32::from(u16::from_le_bytes([mode[0], mode[1]])),
        u32::from(u16::from_le_bytes([mode[2], mode[3]])),
        u32::from(mode[4]),
    )
    .ok()
    .and_then(|cfg| edid::build(&cfg));
    if let Some(e) = &built {
        assert!(edid::checksum_ok(e));
        let t = edid::preferred_timing(e).expect("a built EDID has a preferred timing");
        assert_eq!(
            edid::encode_dtd(&t, (0, 0)).map(|d| edid::decode_dtd(&d)),
            Some(Some(t))
        );
    }
    let edid_bytes: Vec<u8> = match (mode[5] & 1, built) {
        (0, Some(e)) => e.to_vec(),
        _ => rest.iter().copied().cycle().take(EDID_LEN).collect(),
    };
    // The decoders on arbitrary bytes.
    let _ = edid::checksum_ok(&edid_bytes);
    let _ = edid::preferred_timing(&edid_bytes);
    if let Some(d) = rest.get(..18).and_then(|d| <&[u8; 18]>::try_from(d).ok()) {
        let _ = edid::decode_dtd(d);
    }

    // AUX: each request is a length byte then that many bytes.
    let mut sink = DpSink::new();
    let mut gmbus = Gmbus::new(Some(mode[6] & 7));
    let mut i = 0usize;
    while let Some(&n) = rest.get(i) {
        let n = usize::from(n) % (AUX_MAX_BYTES + 4);
        let Some(req) = rest.get(i + 1..i + 1 + n) else {
            break;
        };
        i += 1 + n;
        if n >= 8 && req[0] == 0xff {
            // A GMBUS register access instead of an AUX request.
            let v = u32::from_le_bytes([req[2], req[3], req[4], req[5]]);
            let d = u32::from_le_bytes([req[4], req[5], req[6], req[7]]);
            match req[1] & 7 {
                0 => drop(gmbus.write_gmbus0(v)),
                1 => drop(gmbus.write_gmbus1(v, d)),
                2 => drop(gmbus.read_gmbus2()),
                3 => gmbus.write_gmbus2(v),
                _ => drop(gmbus.read_gmbus3(&edid_bytes)),
            }
            continue;
        }
        let reply = sink.transfer(req, &edid_bytes);
        assert!(!reply.is_empty(), "every AUX request gets a reply code");
        assert!(
            reply.len() <= AUX_MAX_BYTES,
            "reply of {} bytes",
            reply.len()
        );
        let _ = sink.dpcd(u32::from_le_bytes([
            req.first().copied().unwrap_or(0),
            0,
            0,
            0,
        ]));
    }
});
