//! Fuzz target: the control protocol request parser (`xengt::proto`) on an arbitrary
//! byte stream from the control socket, fed in arbitrary pieces: `take_lines` splits it,
//! `decode_request` parses each line. Neither may panic, no line may exceed `MAX_LINE`,
//! the pending tail stays bounded, and an accepted request must encode and decode to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xengt::proto::{self, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let mut buf = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // The first byte of each piece says how long the piece is.
        let n = usize::from(rest[0]).max(1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(piece);
        let Ok(lines) = proto::take_lines(&mut buf) else {
            return; // an over-long line drops the connection
        };
        assert!(buf.len() <= MAX_LINE);
        for line in lines {
            assert!(line.len() <= MAX_LINE);
            if let Ok(req) = proto::decode_request(&line) {
                let enc = proto::encode_line(&req);
                assert_eq!(enc.last(), Some(&b'\n'));
                let again = proto::decode_request(&enc[..enc.len() - 1]);
                assert_eq!(again.ok(), Some(req));
            }
        }
    }
});
