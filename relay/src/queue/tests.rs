use super::*;
use ox_push_record::{Policy, Target};
use std::time::Duration;

fn item(n: u8, url: &str) -> Item {
    Item {
        id: [n; 16],
        created_ms: now_ms(),
        policy: Policy {
            timeout_ms: 1000,
            max_age_secs: 60,
            notification_id: false,
        },
        target: Target {
            url: url.to_string(),
            tls_verify: true,
            ca_file: None,
            ca_dir: None,
        },
        body: vec![b'x'; 100],
    }
}

fn state(dir: &Path, max_bytes: u64) -> State {
    let (spool, replayed) = Spool::open(&dir.join("spool"), false).unwrap();
    State::new(spool, replayed, max_bytes, 65536)
}

use std::path::Path;

const A: &str = "http://u:p@127.0.0.1:1/a";
const B: &str = "http://127.0.0.1:2/b";

fn job(s: &mut State, ep: usize) -> Job {
    match s.take(ep, Instant::now()) {
        Take::Job(j) => j,
        Take::Wait(w) => panic!("no job, wait {w:?}"),
    }
}

fn sent() -> Outcome {
    Outcome::Sent {
        status: 204,
        reason: "No Content".into(),
    }
}

#[test]
fn accepted_items_are_taken_in_order_and_done_when_sent() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    let acks = s.accept(vec![(1, item(1, A)), (2, item(2, A))]);
    assert_eq!(acks, vec![(1, AckStatus::Stored), (2, AckStatus::Stored)]);
    assert_eq!(s.endpoints.len(), 1);
    let j = job(&mut s, 0);
    assert_eq!(j.id, [1; 16]);
    s.complete(0, j.id, sent(), Instant::now());
    let j = job(&mut s, 0);
    assert_eq!(j.id, [2; 16]);
    s.complete(0, j.id, sent(), Instant::now());
    assert_eq!(s.pending(), 0);
    assert_eq!(s.endpoints[0].counters.sent, 2);
    assert!(matches!(s.take(0, Instant::now()), Take::Wait(None)));
}

#[test]
fn a_resent_notification_is_a_duplicate_while_pending_and_after_it_was_sent() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    s.accept(vec![(1, item(1, A))]);
    assert_eq!(
        s.accept(vec![(2, item(1, A))]),
        vec![(2, AckStatus::Duplicate)]
    );
    let j = job(&mut s, 0);
    s.complete(0, j.id, sent(), Instant::now());
    assert_eq!(
        s.accept(vec![(3, item(1, A))]),
        vec![(3, AckStatus::Duplicate)]
    );
    assert_eq!(s.counters.duplicates, 2);
}

#[test]
fn an_invalid_url_is_refused_with_a_reason_that_hides_the_password() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    let acks = s.accept(vec![(1, item(1, "http://u:LEAK@h:0/n"))]);
    let AckStatus::Refused(why) = &acks[0].1 else {
        panic!("{acks:?}")
    };
    assert!(why.contains("Port 0") && !why.contains("LEAK"), "{why}");
    assert_eq!(s.pending(), 0);
}

#[test]
fn one_failing_item_does_not_hold_back_the_others() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    s.accept(vec![(1, item(1, A)), (2, item(2, A)), (3, item(3, A))]);
    let j = job(&mut s, 0);
    s.complete(
        0,
        j.id,
        Outcome::Retry {
            why: "500 Internal Server Error".into(),
            retry_after: Some(Duration::from_secs(30)),
        },
        Instant::now(),
    );
    for want in [2, 3] {
        let j = job(&mut s, 0);
        assert_eq!(j.id, [want; 16]);
        s.complete(0, j.id, sent(), Instant::now());
    }
    // The failed one waits for its Retry-After.
    let Take::Wait(Some(when)) = s.take(0, Instant::now()) else {
        panic!()
    };
    assert!(when > Instant::now() + Duration::from_secs(29));
    let Take::Job(j) = s.take(0, when) else {
        panic!()
    };
    assert_eq!(j.id, [1; 16]);
    assert_eq!(s.endpoints[0].counters.retried, 1);
}

#[test]
fn a_connection_failure_pauses_the_endpoint_and_keeps_the_order() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    s.accept(vec![(1, item(1, A)), (2, item(2, A))]);
    let j = job(&mut s, 0);
    s.complete(
        0,
        j.id,
        Outcome::NoConnection {
            why: "connect(127.0.0.1:1) failed: Connection refused".into(),
        },
        Instant::now(),
    );
    let Take::Wait(Some(until)) = s.take(0, Instant::now()) else {
        panic!("paused")
    };
    let Take::Job(j) = s.take(0, until) else {
        panic!()
    };
    assert_eq!(j.id, [1; 16], "back at the front");
    s.connected(0);
    s.complete(0, j.id, sent(), until);
    assert_eq!(job(&mut s, 0).id, [2; 16]);
}

#[test]
fn endpoints_are_independent() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    s.accept(vec![(1, item(1, A)), (2, item(2, B))]);
    assert_eq!(s.endpoints.len(), 2);
    let j = job(&mut s, 0);
    s.complete(
        0,
        j.id,
        Outcome::NoConnection {
            why: "refused".into(),
        },
        Instant::now(),
    );
    assert_eq!(job(&mut s, 1).id, [2; 16]);
}

#[test]
fn refused_and_expired_items_are_dropped_and_counted() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 1 << 20);
    let mut old = item(2, A);
    old.created_ms -= 61_000;
    s.accept(vec![(1, item(1, A)), (2, old), (3, item(3, A))]);
    let j = job(&mut s, 0);
    s.complete(
        0,
        j.id,
        Outcome::Refused {
            status: 400,
            reason: "Bad Request".into(),
        },
        Instant::now(),
    );
    assert_eq!(job(&mut s, 0).id, [3; 16], "2 is too old");
    let c = &s.endpoints[0].counters;
    assert_eq!((c.refused, c.dropped_age), (1, 1));
}

#[test]
fn a_full_spool_drops_the_oldest() {
    let t = tempfile::tempdir().unwrap();
    let mut s = state(t.path(), 250);
    s.accept(vec![(1, item(1, A)), (2, item(2, A)), (3, item(3, A))]);
    assert_eq!(s.pending(), 2);
    assert_eq!(s.endpoints[0].counters.dropped_size, 1);
    assert_eq!(job(&mut s, 0).id, [2; 16]);
}

#[test]
fn pending_items_are_replayed_after_a_restart_and_sent_ones_stay_duplicates() {
    let t = tempfile::tempdir().unwrap();
    {
        let mut s = state(t.path(), 1 << 20);
        s.accept(vec![(1, item(1, A)), (2, item(2, B))]);
        let j = job(&mut s, 0);
        s.complete(0, j.id, sent(), Instant::now());
    }
    let mut s = state(t.path(), 1 << 20);
    assert_eq!(s.pending(), 1);
    assert_eq!(s.counters.replayed, 1);
    let ep = s
        .endpoints
        .iter()
        .position(|e| e.peer.label == "http://127.0.0.1:2/b")
        .unwrap();
    assert_eq!(job(&mut s, ep).id, [2; 16]);
    assert_eq!(
        s.accept(vec![(9, item(1, A))]),
        vec![(9, AckStatus::Duplicate)],
        "the sent one is remembered across the restart"
    );
}
