//! Fuzz target: the XenStore wire decoder (`xen_backend::xenstore::wire`) on an arbitrary
//! byte stream from the daemon's socket, plus the parsers applied to what it carries
//! (permissions, XenbusState, paths, tokens). Decoding must never panic, never accept a
//! payload above `PAYLOAD_MAX`, and every decoded message must re-encode to the exact bytes
//! it was read from.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use xen_backend::xenstore::wire::{Message, WireError, HEADER_LEN, PAYLOAD_MAX};
use xen_backend::xenstore::{validate_path, validate_token, XenbusState, XsPerm};

fuzz_target!(|data: &[u8]| {
    let mut r = Cursor::new(data);
    loop {
        let start = r.position() as usize;
        match Message::read_from(&mut r) {
            Ok(m) => {
                assert!(m.payload.len() <= PAYLOAD_MAX);
                let end = r.position() as usize;
                assert_eq!(end - start, HEADER_LEN + m.payload.len());
                let again = m.encode().expect("a decoded message re-encodes");
                assert_eq!(&again[..], &data[start..end]);
                let _ = m.msg_type();
                if let Ok(text) = std::str::from_utf8(&m.payload) {
                    for part in text.split('\0') {
                        let _ = XsPerm::parse(part);
                        let _ = XenbusState::parse(part);
                        let _ = validate_path(part);
                        let _ = validate_token(part);
                    }
                }
            }
            Err(WireError::TooLarge(n)) => {
                assert!(n > PAYLOAD_MAX);
                break;
            }
            Err(_) => break,
        }
    }
});
