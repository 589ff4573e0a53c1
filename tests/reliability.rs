//! Never slow down a delivery, never lose a notification: the plugin against a
//! real Dovecot with a receiver that hangs, is down, fails, or is killed under.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(15);

fn start(drivers: Vec<String>) -> Dovecot {
    let dc = Dovecot::start(DovecotOpts::new(Driver::OxPush, drivers));
    dc.set_metadata("alice", "user=3@1");
    dc.set_metadata("bob", "user=4@1");
    dc
}

/// A driver line whose spool is inside the Dovecot temp dir (created by the
/// harness with mode 1777). The directory name is fixed by the harness.
fn line(url: &str, extra: &str) -> String {
    format!("ox:url={url} user_from_metadata {extra}")
}

fn deliver_timed(dc: &Dovecot, rcpt: &str, subject: &str) -> Duration {
    let t = Instant::now();
    let r = dc.lmtp(&[rcpt], &simple_message(subject));
    assert!(r[0].starts_with("250"), "{r:?}\n{}", dc.log());
    t.elapsed()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn hanging_receiver_does_not_slow_delivery_and_notifications_arrive_later() {
    let cap = Capture::start();
    cap.set_default(Reply::Hang);
    let dc = start(vec![line(
        &cap.url("", "/n"),
        "timeout_msecs=300 spool_dir=SPOOL",
    )]);
    for s in ["h1", "h2", "h3"] {
        let took = deliver_timed(&dc, "alice", s);
        // The built-in driver would take timeout x attempts (600 ms) here.
        assert!(took < Duration::from_millis(250), "delivery took {took:?}");
    }
    std::thread::sleep(Duration::from_millis(700));
    cap.set_default(Reply::Status(204));
    let until = Instant::now() + WAIT;
    loop {
        let got: BTreeSet<String> = subjects(&cap.requests()).into_iter().collect();
        if set(&["h1", "h2", "h3"]).is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < until,
            "missing notifications: {got:?}\n{}",
            dc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dc.log().contains("Request timed out"), "{}", dc.log());
}

#[test]
fn receiver_down_then_up_everything_arrives_in_order() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/n");
    let dc = start(vec![line(&url, "spool_dir=SPOOL")]);
    // One LMTP session (one process, one queue): order is kept per queue.
    let msgs: Vec<Vec<u8>> = ["d1", "d2", "d3", "d4"]
        .iter()
        .map(|s| simple_message(s))
        .collect();
    let t = Instant::now();
    assert!(dc
        .lmtp_session("alice", &msgs)
        .iter()
        .all(|r| r.starts_with("250")));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        dc.wait_log(WAIT, |l| l.contains("Connection refused")),
        "{}",
        dc.log()
    );
    // Spooled while the receiver is down.
    assert_eq!(dc.spooled(), 4, "{}", dc.log());
    let cap = Capture::start_on(port);
    let reqs = cap.wait_for(4, WAIT);
    assert_eq!(subjects(&reqs), ["d1", "d2", "d3", "d4"], "{}", dc.log());
    // Sent files leave the spool.
    let until = Instant::now() + WAIT;
    while dc.spooled() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dc.spooled(), 0);
}

#[test]
fn server_errors_are_retried_client_errors_are_not() {
    let cap = Capture::start();
    cap.script(vec![
        Reply::Status(500),
        Reply::StatusRetryAfter(503, 1),
        Reply::Status(204),
        Reply::Status(400),
    ]);
    let dc = start(vec![line(
        &cap.url("", "/n"),
        "spool_dir=SPOOL notification_id",
    )]);
    deliver_timed(&dc, "alice", "retry-me");
    let reqs = cap.wait_for(3, WAIT);
    assert_eq!(
        subjects(&reqs),
        ["retry-me", "retry-me", "retry-me"],
        "{}",
        dc.log()
    );
    // Retry-After: 1 was honoured between the 2nd and 3rd attempt.
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(950));
    // The same notification id on every attempt, so receivers can dedupe.
    let ids: BTreeSet<_> = reqs
        .iter()
        .map(|r| r.header("X-Notification-Id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1);
    deliver_timed(&dc, "alice", "refused");
    assert!(
        dc.wait_log(WAIT, |l| l
            .contains("Error when sending notification: 400 Bad Request")
            && l.contains("not retried")),
        "{}",
        dc.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        subjects(&cap.requests())
            .iter()
            .filter(|s| *s == "refused")
            .count(),
        1
    );
}

#[test]
fn killed_lmtp_process_is_replayed_by_the_next_one() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/n");
    let dc = start(vec![line(&url, "spool_dir=SPOOL")]);
    deliver_timed(&dc, "alice", "before-kill");
    let lmtp = dc.children("lmtp");
    assert!(!lmtp.is_empty());
    for pid in lmtp {
        // SAFETY: signalling a process of our private Dovecot.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert_eq!(dc.spooled(), 1, "{}", dc.log());
    let cap = Capture::start_on(port);
    // A new lmtp process loads the driver and replays what the dead one left.
    deliver_timed(&dc, "alice", "after-kill");
    let reqs = cap.wait_for(2, WAIT);
    let got: BTreeSet<String> = subjects(&reqs).into_iter().collect();
    assert_eq!(got, set(&["before-kill", "after-kill"]), "{}", dc.log());
    assert!(
        dc.log().contains("Replaying 1 spooled notification(s)"),
        "{}",
        dc.log()
    );
}

#[test]
fn unusable_spool_falls_back_to_memory() {
    let cap = Capture::start();
    let dc = start(vec![line(
        &cap.url("", "/n"),
        "spool_dir=/proc/ox-push-cannot-exist",
    )]);
    deliver_timed(&dc, "alice", "mem");
    assert_eq!(cap.wait_for(1, WAIT).len(), 1, "{}", dc.log());
    let log = dc.log();
    assert!(
        log.contains("Error: ")
            && log.contains(
                "push-notification-ox: Spool directory /proc/ox-push-cannot-exist is unusable"
            ),
        "{log}"
    );
    assert!(log.contains("kept in memory only"), "{log}");
}

#[test]
fn max_age_and_spool_max_size_drop_with_log_lines() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/n");
    let dc = start(vec![
        line(&url, "spool_dir=SPOOL max_age=1s"),
        format!("ox:url=http://127.0.0.1:{port}/small user_from_metadata spool_dir=SPOOL spool_max_size=700"),
    ]);
    // One LMTP session: one process, one queue per endpoint (the bound is per
    // process and endpoint).
    let msgs: Vec<Vec<u8>> = ["a1", "a2", "a3"]
        .iter()
        .map(|s| simple_message(s))
        .collect();
    assert!(dc
        .lmtp_session("alice", &msgs)
        .iter()
        .all(|r| r.starts_with("250")));
    assert!(
        dc.wait_log(WAIT, |l| l.contains("oldest notification(s)")
            && l.contains("spool_max_size=700 exceeded")),
        "{}",
        dc.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let cap = Capture::start_on(port);
    assert!(
        dc.wait_log(WAIT, |l| l.contains("older than max_age (1s)")),
        "{}",
        dc.log()
    );
    cap.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    // Nothing of /n (all too old); /small kept only the newest.
    let reqs = cap.requests();
    assert!(
        reqs.iter().all(|r| r.target == "/small"),
        "{:?}",
        subjects(&reqs)
    );
    assert_eq!(subjects(&reqs).last().map(String::as_str), Some("a3"));
    assert!(reqs.len() < 3, "{:?}", subjects(&reqs));
}

#[test]
fn dead_endpoint_does_not_delay_another() {
    let dead_port = free_port();
    let cap = Capture::start();
    let dc = start(vec![
        format!("ox:url=http://127.0.0.1:{dead_port}/dead user_from_metadata spool_dir=SPOOL"),
        line(&cap.url("", "/live"), "spool_dir=SPOOL"),
    ]);
    let t = Instant::now();
    for s in ["l1", "l2", "l3"] {
        deliver_timed(&dc, "alice", s);
    }
    let reqs = cap.wait_for(3, WAIT);
    assert_eq!(subjects(&reqs), ["l1", "l2", "l3"]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// A host name that does not resolve: the lookup runs beside Dovecot (never
/// in a delivery), fails with one clear line, and is retried; another endpoint
/// of the same process is not held up.
#[test]
fn unresolvable_host_is_logged_and_does_not_delay_delivery() {
    let cap = Capture::start();
    let dc = start(vec![
        "ox:url=http://push.invalid/n user_from_metadata spool_dir=SPOOL timeout_msecs=500"
            .to_string(),
        line(&cap.url("", "/live"), "spool_dir=SPOOL"),
    ]);
    let t = Instant::now();
    for s in ["u1", "u2"] {
        let took = deliver_timed(&dc, "alice", s);
        assert!(took < Duration::from_millis(250), "delivery took {took:?}");
    }
    assert_eq!(subjects(&cap.wait_for(2, WAIT)), ["u1", "u2"]);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // A name service that answers says so; one that hangs runs into the timeout.
    assert!(
        dc.wait_log(WAIT, |l| l.contains("Error when sending notification")
            && l.contains("to http://push.invalid/n")
            && (l.contains("Failed to lookup host: push.invalid")
                || l.contains("Request timed out"))),
        "{}",
        dc.log()
    );
}

#[test]
fn lda_exits_within_shutdown_timeout_and_leaves_the_rest_in_the_spool() {
    let cap = Capture::start();
    cap.set_default(Reply::Hang);
    let dc = start(vec![line(
        &cap.url("", "/n"),
        "spool_dir=SPOOL timeout_msecs=5000",
    )]);
    let t = Instant::now();
    assert_eq!(
        dc.lda("alice", &simple_message("lda-hang")),
        0,
        "{}",
        dc.log()
    );
    let took = t.elapsed();
    // shutdown_timeout is 100 ms; the built-in driver would wait 2 x 5 s here.
    assert!(
        took < Duration::from_millis(1500),
        "dovecot-lda took {took:?}"
    );
    assert_eq!(dc.spooled(), 1, "{}", dc.log());
    assert!(
        dc.wait_log(WAIT, |l| l
            .contains("not sent yet at exit: left in the spool")),
        "{}",
        dc.log()
    );
    // The next process replays it.
    cap.set_default(Reply::Status(204));
    assert_eq!(dc.lda("alice", &simple_message("lda-next")), 0);
    let until = Instant::now() + WAIT;
    loop {
        let got: BTreeSet<String> = subjects(&cap.requests()).into_iter().collect();
        if got.contains("lda-hang") && got.contains("lda-next") {
            break;
        }
        assert!(Instant::now() < until, "{got:?}\n{}", dc.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
