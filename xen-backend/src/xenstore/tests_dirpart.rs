//! The client's `DIRECTORY_PART` loop against a scripted, misbehaving store.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::wire::{join_fields, split_fields, Message, MsgType};
use super::*;

/// Answers part `n` (0-based, counted over the connection) requested at `offset`.
type Script = Box<dyn FnMut(u32, usize) -> Result<Vec<u8>, XsErrno> + Send>;

/// A one-connection fake xenstored: `XS_DIRECTORY` gets `E2BIG`, `DIRECTORY_PART` gets
/// whatever the script says. Records the offsets it was asked for.
struct Scripted {
    dir: PathBuf,
    offsets: Arc<Mutex<Vec<usize>>>,
    thread: Option<JoinHandle<()>>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Scripted {
    fn start(mut script: Script) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xs-script-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("socket")).unwrap();
        let offsets = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&offsets);
        let thread = std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut n = 0u32;
            while let Ok(msg) = Message::read_from(&mut s) {
                let reply = match msg.msg_type() {
                    Some(MsgType::DirectoryPart) => {
                        let offset = split_fields(&msg.payload)
                            .get(1)
                            .and_then(|f| std::str::from_utf8(f).ok())
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(usize::MAX);
                        seen.lock().unwrap().push(offset);
                        n += 1;
                        script(n - 1, offset)
                    }
                    _ => Err(XsErrno::E2BIG),
                };
                let (ty, payload) = match reply {
                    Ok(p) => (MsgType::DirectoryPart, p),
                    Err(e) => (MsgType::Error, join_fields(&[e.name()])),
                };
                let out = Message::new(ty, msg.req_id, msg.tx_id, payload);
                if out.write_to(&mut s).is_err() {
                    return;
                }
            }
        });
        Scripted {
            dir,
            offsets,
            thread: Some(thread),
        }
    }

    fn client(&self) -> XsClient {
        XsClient::connect_path(self.dir.join("socket").to_str().unwrap()).unwrap()
    }

    fn offsets(&self) -> Vec<usize> {
        self.offsets.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // The client is dropped first (it shuts its socket down), which ends the thread.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn list(script: Script) -> (Result<Vec<String>, XsError>, Vec<usize>) {
    let srv = Scripted::start(script);
    let c = srv.client();
    let r = c.directory("/d");
    drop(c);
    let offsets = srv.offsets();
    (r, offsets)
}

#[test]
fn offsets_are_byte_positions_in_the_child_list() {
    let (r, offsets) = list(Box::new(|_, offset| match offset {
        0 => Ok(b"5\0ab\0c\0".to_vec()),
        5 => Ok(b"5\0def\0\0".to_vec()),
        _ => Err(XsErrno::EINVAL),
    }));
    assert_eq!(r.unwrap(), vec!["ab", "c", "def"]);
    assert_eq!(offsets, vec![0, 5]);
}

#[test]
fn malformed_parts_are_clean_protocol_errors() {
    for bad in [
        &b"no-nul"[..],
        b"gen\0a\0\0",
        b"7\0unterminated",
        b"7\0",
        b"7\0a\0\0b\0",
        b"7\0a/b\0\0",
        b"7\0\xff\0\0",
    ] {
        let (r, offsets) = list(Box::new(move |_, _| Ok(bad.to_vec())));
        let err = r.unwrap_err();
        assert!(matches!(err, XsError::Protocol(_)), "{bad:?}: {err}");
        assert_eq!(offsets, vec![0], "{bad:?}: stopped at the first bad part");
    }
}

#[test]
fn endless_parts_stop_at_the_request_bound() {
    let (r, offsets) = list(Box::new(|_, _| Ok(b"1\0a\0".to_vec())));
    assert!(matches!(r, Err(XsError::ListingBound { .. })), "{r:?}");
    assert_eq!(offsets.len(), usize::try_from(MAX_DIRECTORY_PARTS).unwrap());
    // Each part advanced the offset by "a\0".
    assert_eq!(offsets.get(3), Some(&6));
}

#[test]
fn oversized_listing_stops_at_the_byte_bound() {
    let name = vec![b'n'; 3000];
    let mut part = b"1\0".to_vec();
    part.extend_from_slice(&name);
    part.push(0);
    let (r, offsets) = list(Box::new(move |_, _| Ok(part.clone())));
    assert!(matches!(r, Err(XsError::ListingBound { .. })), "{r:?}");
    // Stopped when the names passed MAX_DIRECTORY_BYTES, not at the request bound.
    assert_eq!(offsets.len(), MAX_DIRECTORY_BYTES / 3001 + 1);
}

#[test]
fn generation_changing_forever_stops_at_the_restart_bound() {
    let (r, offsets) = list(Box::new(|n, _| Ok(format!("{n}\0a\0").into_bytes())));
    assert!(matches!(r, Err(XsError::ListingBound { .. })), "{r:?}");
    let restarts = usize::try_from(MAX_DIRECTORY_RESTARTS).unwrap();
    // Every listing: part at 0, then a part at 2 with a new generation.
    assert_eq!(offsets.len(), 2 * (restarts + 1));
    assert_eq!(offsets.iter().filter(|o| **o == 0).count(), restarts + 1);
}

#[test]
fn store_without_directory_part_reports_e2big() {
    let (r, offsets) = list(Box::new(|_, _| Err(XsErrno::ENOSYS)));
    assert_eq!(r.unwrap_err().errno(), Some(XsErrno::E2BIG));
    assert_eq!(offsets, vec![0]);
}

#[test]
fn other_part_errors_pass_through() {
    let (r, _) = list(Box::new(|_, _| Err(XsErrno::EACCES)));
    assert_eq!(r.unwrap_err().errno(), Some(XsErrno::EACCES));
}
