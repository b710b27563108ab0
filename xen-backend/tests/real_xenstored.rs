//! The XenStore client against the REAL cxenstored (Debian 12, Xen 4.17) running under the
//! fake-hypervisor shim. Run through `tests/tiers/xenstored-real.sh`, which starts the
//! server on a private socket and sets `XENSTORED_PATH`.

use std::cell::Cell;
use std::time::Duration;

use xen_backend::xenstore::wire::{join_fields, MsgType};
use xen_backend::xenstore::{Access, XsClient, XsErrno, XsError, XsOps, XsPerm};

fn client() -> XsClient {
    let path = std::env::var("XENSTORED_PATH").expect(
        "XENSTORED_PATH must point at the xenstored socket (see tests/tiers/xenstored-real.sh)",
    );
    XsClient::connect_path(&path).expect("connect to xenstored")
}

fn base(name: &str) -> String {
    format!("/test/xengt-{}-{name}", std::process::id())
}

fn wait_for(c: &XsClient, token: &str, path: &str) -> bool {
    for _ in 0..50 {
        let evs = c
            .wait_watch_events(Duration::from_millis(100))
            .expect("xenstore connection alive");
        if evs.iter().any(|e| e.token == token && e.path == path) {
            return true;
        }
    }
    false
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_read_write_directory_rm() {
    let c = client();
    let b = base("rw");
    c.write(&format!("{b}/a"), b"1").unwrap();
    c.write(&format!("{b}/b"), b"two").unwrap();
    c.mkdir(&format!("{b}/dir")).unwrap();
    let mut d = c.directory(&b).unwrap();
    d.sort();
    assert_eq!(d, vec!["a", "b", "dir"]);
    assert_eq!(c.read(&format!("{b}/b")).unwrap(), b"two");
    assert!(c.read(&format!("{b}/nope")).unwrap_err().is_not_found());
    c.rm(&b).unwrap();
    assert!(!c.exists(&b).unwrap());
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_directory_over_4_kib_lists_through_directory_part() {
    let c = client();
    let b = base("bigdir");
    let mut want: Vec<String> = (0..2000).map(|i| format!("device-{i:04}")).collect();
    for n in &want {
        c.write(&format!("{b}/{n}"), b"").unwrap();
    }
    // 24 000 bytes of names: the real store refuses the one-reply listing...
    let err = c
        .request(MsgType::Directory, join_fields(&[&b]), &b)
        .unwrap_err();
    assert_eq!(err.errno(), Some(XsErrno::E2BIG), "{err}");
    // ...and the client falls back to DIRECTORY_PART, outside and inside a transaction.
    let mut got = c.directory(&b).unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let in_tx = c.transaction(|tx| tx.directory(&b)).unwrap();
    assert_eq!(in_tx.len(), 2000);
    c.rm(&b).unwrap();
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_permissions() {
    let c = client();
    let b = base("perms");
    c.write(&b, b"").unwrap();
    let perms = [XsPerm::new(0, Access::None), XsPerm::new(3, Access::Read)];
    c.set_perms(&b, &perms).unwrap();
    assert_eq!(c.get_perms(&b).unwrap(), perms);
    c.rm(&b).unwrap();
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_transaction_commit_and_abort() {
    let c = client();
    let b = base("tx");
    c.transaction(|tx| {
        tx.write(&format!("{b}/x"), b"1")?;
        tx.write(&format!("{b}/y"), b"2")
    })
    .unwrap();
    assert_eq!(c.read(&format!("{b}/y")).unwrap(), b"2");
    let err = c
        .transaction(|tx| {
            tx.write(&format!("{b}/z"), b"3")?;
            tx.read(&format!("{b}/missing")).map(drop)
        })
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(!c.exists(&format!("{b}/z")).unwrap());
    c.rm(&b).unwrap();
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_transaction_conflict_is_retried() {
    let c = client();
    let other = client();
    let b = base("conflict");
    let key = format!("{b}/counter");
    c.write(&key, b"0").unwrap();
    let runs = Cell::new(0u32);
    c.transaction(|tx| {
        runs.set(runs.get() + 1);
        let v: u32 = tx.read_string(&key)?.parse().unwrap();
        if runs.get() == 1 {
            other.write(&key, b"10")?;
        }
        tx.write(&key, (v + 1).to_string().as_bytes())
    })
    .unwrap();
    assert_eq!(
        runs.get(),
        2,
        "xenstored must have refused the first commit with EAGAIN"
    );
    assert_eq!(c.read(&key).unwrap(), b"11");
    let exhausted = c.transaction_with_retries(1, |tx| {
        let _ = tx.read(&key)?;
        other.write(&key, b"x")?;
        tx.write(&key, b"y")
    });
    assert!(
        matches!(exhausted, Err(XsError::RetriesExhausted(1))),
        "{exhausted:?}"
    );
    c.rm(&b).unwrap();
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_watches_through_the_fd() {
    let c = client();
    let writer = client();
    let b = base("watch");
    c.mkdir(&b).unwrap();
    c.watch(&b, "tok").unwrap();
    assert!(wait_for(&c, "tok", &b), "initial event");
    writer.write(&format!("{b}/child"), b"v").unwrap();
    let mut poll = mio::Poll::new().unwrap();
    let fd = c.watch_fd();
    poll.registry()
        .register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(0),
            mio::Interest::READABLE,
        )
        .unwrap();
    let mut events = mio::Events::with_capacity(2);
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(!events.is_empty(), "watch fd never became readable");
    let got = c.take_watch_events();
    assert!(
        got.iter().any(|e| e.path == format!("{b}/child")),
        "{got:?}"
    );
    assert_eq!(
        c.watch(&b, "tok").unwrap_err().errno(),
        Some(XsErrno::EEXIST)
    );
    c.unwatch(&b, "tok").unwrap();
    c.rm(&b).unwrap();
}

#[test]
#[ignore = "needs a real xenstored: run tests/tiers/xenstored-real.sh"]
fn real_special_watches_and_domain_queries() {
    let c = client();
    c.watch("@releaseDomain", "rel").unwrap();
    assert!(
        wait_for(&c, "rel", "@releaseDomain"),
        "initial @releaseDomain event"
    );
    assert_eq!(c.get_domain_path(0).unwrap(), "/local/domain/0");
    assert!(c.is_domain_introduced(0).unwrap());
    c.unwatch("@releaseDomain", "rel").unwrap();
}
