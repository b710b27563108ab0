//! Client ⇄ in-process test server over the real wire protocol.

use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::test_server::TestServer;
use super::*;

fn pair() -> (TestServer, XsClient) {
    let srv = TestServer::start().unwrap();
    let c = XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap();
    (srv, c)
}

fn events_for(c: &XsClient, token: &str, min: usize) -> Vec<WatchEvent> {
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(c.wait_watch_events(Duration::from_millis(100)).unwrap());
        if got.iter().filter(|e| e.token == token).count() >= min {
            break;
        }
    }
    got.into_iter().filter(|e| e.token == token).collect()
}

#[test]
fn read_write_mkdir_rm_directory() {
    let (_srv, c) = pair();
    c.write("/vgt/1/state", b"1").unwrap();
    assert_eq!(c.read("/vgt/1/state").unwrap(), b"1");
    assert_eq!(c.read_opt("/vgt/1/nope").unwrap(), None);
    c.mkdir("/vgt/2").unwrap();
    let mut d = c.directory("/vgt").unwrap();
    d.sort();
    assert_eq!(d, vec!["1", "2"]);
    c.rm("/vgt").unwrap();
    let err = c.read("/vgt/1/state").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!c.exists("/vgt").unwrap());
    // Values are binary-safe.
    c.write("/bin", &[0, 1, 255]).unwrap();
    assert_eq!(c.read("/bin").unwrap(), vec![0, 1, 255]);
    assert!(c.read_string("/bin").is_err());
}

#[test]
fn invalid_paths_never_reach_the_server() {
    let (_srv, c) = pair();
    assert!(matches!(
        c.write("/a//b", b"x"),
        Err(XsError::InvalidPath(..))
    ));
    assert!(matches!(c.read("/a b"), Err(XsError::InvalidPath(..))));
    let big = vec![b'x'; 5000];
    assert!(matches!(c.write("/big", &big), Err(XsError::TooLarge(_))));
    // The connection is still usable.
    c.write("/ok", b"1").unwrap();
}

#[test]
fn permissions_roundtrip() {
    let (_srv, c) = pair();
    c.write("/p/q", b"").unwrap();
    let perms = [XsPerm::new(0, Access::None), XsPerm::new(5, Access::Read)];
    c.set_perms("/p/q", &perms).unwrap();
    assert_eq!(c.get_perms("/p/q").unwrap(), perms);
    assert_eq!(
        c.set_perms("/missing/x", &perms).unwrap_err().errno(),
        Some(XsErrno::ENOENT)
    );
    assert!(c.set_perms("/p/q", &[]).is_err());
}

#[test]
fn transaction_commits_atomically() {
    let (srv, c) = pair();
    let other = XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap();
    c.transaction(|tx| {
        tx.write("/t/a", b"1")?;
        tx.write("/t/b", b"2")?;
        // Not visible outside before commit.
        assert!(!other.exists("/t/a")?);
        assert_eq!(tx.read("/t/a")?, b"1");
        Ok(())
    })
    .unwrap();
    assert_eq!(other.read("/t/b").unwrap(), b"2");
    assert_eq!(srv.stats().commits, 1);
}

#[test]
fn transaction_retried_on_eagain() {
    let (srv, c) = pair();
    srv.force_conflicts(2);
    let runs = Cell::new(0);
    c.transaction(|tx| {
        runs.set(runs.get() + 1);
        tx.write("/r", runs.get().to_string().as_bytes())
    })
    .unwrap();
    assert_eq!(runs.get(), 3);
    assert_eq!(c.read("/r").unwrap(), b"3");
    assert_eq!(srv.stats().conflicts, 2);
}

#[test]
fn real_conflict_from_a_concurrent_writer_is_retried() {
    let (srv, c) = pair();
    let other = XsClient::connect_path(srv.socket_path().to_str().unwrap()).unwrap();
    c.write("/counter", b"0").unwrap();
    let runs = Cell::new(0);
    c.transaction(|tx| {
        runs.set(runs.get() + 1);
        let v: u32 = tx.read_string("/counter")?.parse().unwrap();
        if runs.get() == 1 {
            other.write("/counter", b"10")?; // concurrent update → our commit conflicts
        }
        tx.write("/counter", (v + 1).to_string().as_bytes())
    })
    .unwrap();
    assert_eq!(runs.get(), 2);
    assert_eq!(c.read("/counter").unwrap(), b"11");
}

#[test]
fn transaction_gives_up_after_bound() {
    let (srv, c) = pair();
    srv.force_conflicts(100);
    let err = c
        .transaction_with_retries(3, |tx| tx.write("/x", b"1"))
        .unwrap_err();
    assert!(matches!(err, XsError::RetriesExhausted(3)), "{err}");
    assert!(!c.exists("/x").unwrap());
}

#[test]
fn closure_error_aborts() {
    let (_srv, c) = pair();
    let err = c
        .transaction(|tx| {
            tx.write("/y", b"1")?;
            tx.read("/does/not/exist").map(drop)
        })
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(!c.exists("/y").unwrap());
}

#[test]
fn watches_fire_on_register_change_and_descendants() {
    let (_srv, c) = pair();
    c.watch("/backend/vgt", "hp").unwrap();
    let first = events_for(&c, "hp", 1);
    assert_eq!(first[0].path, "/backend/vgt");
    c.write("/backend/vgt/5/0/state", b"1").unwrap();
    // Creates /backend/vgt, …/5, …/5/0 and …/state: four events, in order.
    let evs = events_for(&c, "hp", 4);
    let paths: Vec<&str> = evs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/backend/vgt",
            "/backend/vgt/5",
            "/backend/vgt/5/0",
            "/backend/vgt/5/0/state"
        ]
    );
    // Unrelated path: nothing.
    c.write("/elsewhere", b"1").unwrap();
    c.write("/backend/vgtx", b"1").unwrap();
    assert!(c
        .wait_watch_events(Duration::from_millis(100))
        .unwrap()
        .is_empty());
    // Duplicate registration rejected.
    assert_eq!(
        c.watch("/backend/vgt", "hp").unwrap_err().errno(),
        Some(XsErrno::EEXIST)
    );
    c.unwatch("/backend/vgt", "hp").unwrap();
    c.write("/backend/vgt/6", b"1").unwrap();
    assert!(c
        .wait_watch_events(Duration::from_millis(100))
        .unwrap()
        .is_empty());
}

#[test]
fn watch_fd_becomes_readable_and_is_drained() {
    let (_srv, c) = pair();
    let other_srv_client = &c;
    c.watch("/w", "t").unwrap();
    // Poll the fd through mio, as the daemon does.
    let mut poll = mio::Poll::new().unwrap();
    let fd = c.watch_fd();
    poll.registry()
        .register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(1),
            mio::Interest::READABLE,
        )
        .unwrap();
    let mut events = mio::Events::with_capacity(4);
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(events.iter().any(|e| e.token() == mio::Token(1)));
    let evs = other_srv_client.take_watch_events();
    assert_eq!(evs.len(), 1);
    assert!(c.take_watch_events().is_empty());
}

#[test]
fn removing_a_parent_fires_child_watches() {
    let (_srv, c) = pair();
    c.write("/d/child/x", b"1").unwrap();
    c.watch("/d/child/x", "c").unwrap();
    events_for(&c, "c", 1);
    c.rm("/d").unwrap();
    let evs = events_for(&c, "c", 1);
    assert_eq!(evs[0].path, "/d/child/x");
}

#[test]
fn release_domain_watch() {
    let (srv, c) = pair();
    srv.introduce_domain(7);
    assert!(c.is_domain_introduced(7).unwrap());
    c.watch("@releaseDomain", "rel").unwrap();
    events_for(&c, "rel", 1);
    srv.release_domain(7);
    let evs = events_for(&c, "rel", 1);
    assert_eq!(evs[0].path, "@releaseDomain");
    assert!(!c.is_domain_introduced(7).unwrap());
    assert!(!c.exists("/local/domain/7").unwrap());
    assert_eq!(c.get_domain_path(7).unwrap(), "/local/domain/7");
}

#[test]
fn events_and_replies_do_not_mix_under_load() {
    let (_srv, c) = pair();
    c.mkdir("/load").unwrap();
    c.watch("/load", "l").unwrap();
    for i in 0..200 {
        c.write(&format!("/load/{i}"), b"v").unwrap();
        assert_eq!(c.read(&format!("/load/{i}")).unwrap(), b"v");
    }
    let evs = events_for(&c, "l", 201);
    assert_eq!(evs.len(), 201);
}

#[test]
fn server_gone_gives_closed_not_hang() {
    let (srv, mut c) = pair();
    c.set_timeout(Duration::from_secs(5));
    drop(srv);
    let err = c.read("/x").unwrap_err();
    assert!(matches!(err, XsError::Closed | XsError::Wire(_)), "{err}");
    // The write may fail (EPIPE) before the reader thread has seen EOF.
    for _ in 0..100 {
        if c.is_closed() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(c.is_closed());
    assert!(matches!(
        c.wait_watch_events(Duration::from_secs(1)),
        Err(XsError::Closed)
    ));
}

#[test]
fn server_survives_garbage_and_oversize_clients() {
    let (srv, c) = pair();
    let mut raw = UnixStream::connect(srv.socket_path()).unwrap();
    let msg = wire::Message {
        ty: 999,
        req_id: 1,
        tx_id: 0,
        payload: b"x\0".to_vec(),
    };
    msg.write_to(&mut raw).unwrap();
    let reply = wire::Message::read_from(&mut raw).unwrap();
    assert_eq!(reply.msg_type(), Some(wire::MsgType::Error));
    let mut hdr = Vec::new();
    for w in [2u32, 1, 0, 99999] {
        hdr.extend_from_slice(&w.to_le_bytes());
    }
    raw.write_all(&hdr).unwrap();
    c.write("/still", b"ok").unwrap();
    assert_eq!(c.read("/still").unwrap(), b"ok");
}

/// Children `n000000`…: each name plus its NUL is 8 bytes.
fn fill(c: &XsClient, dir: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("n{i:06}")).collect();
    for n in &names {
        c.write(&format!("{dir}/{n}"), b"").unwrap();
    }
    names
}

#[test]
fn directory_of_2000_children_lists_completely_through_parts() {
    let (srv, c) = pair();
    let want = fill(&c, "/big", 2000);
    // The plain request is refused like cxenstored refuses it.
    let err = c
        .request(
            wire::MsgType::Directory,
            wire::join_fields(&["/big"]),
            "/big",
        )
        .unwrap_err();
    assert_eq!(err.errno(), Some(XsErrno::E2BIG));
    let mut got = c.directory("/big").unwrap();
    got.sort();
    assert_eq!(got, want);
    let st = srv.stats();
    // 16 000 bytes of names in parts of at most 4096 bytes.
    assert!(st.directory_parts >= 4, "{st:?}");
    assert_eq!(st.directory_part_starts, 1);
    // The same through a transaction.
    let in_tx = c.transaction(|tx| tx.directory("/big")).unwrap();
    assert_eq!(in_tx.len(), 2000);
}

#[test]
fn directory_part_only_when_the_list_exceeds_4096_bytes() {
    let (srv, c) = pair();
    // 512 names of 8 bytes: exactly 4096 bytes, one XS_DIRECTORY reply.
    let mut want = fill(&c, "/edge", 512);
    assert_eq!(c.directory("/edge").unwrap(), want);
    assert_eq!(srv.stats().directory_parts, 0);
    c.write("/edge/x", b"").unwrap();
    want.push("x".into());
    assert_eq!(c.directory("/edge").unwrap(), want);
    assert!(srv.stats().directory_parts >= 2);
}

#[test]
fn directory_listing_restarts_when_the_generation_changes() {
    let (srv, c) = pair();
    let mut want = fill(&c, "/busy", 2000);
    srv.write_after_next_directory_part("/busy/zz-late");
    let mut got = c.directory("/busy").unwrap();
    got.sort();
    want.push("zz-late".into());
    assert_eq!(got, want);
    // The child written after the first part forced exactly one restart from offset 0.
    assert_eq!(srv.stats().directory_part_starts, 2);
    // A write elsewhere does not disturb a listing.
    srv.write_after_next_directory_part("/elsewhere/x");
    assert_eq!(c.directory("/busy").unwrap().len(), 2001);
    assert_eq!(srv.stats().directory_part_starts, 3);
}
