//! Never slow down a delivery, never lose a notification: the plugin and the
//! relay against a real Dovecot with a middleware that hangs, is down, fails,
//! and with processes killed under them.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(20);

fn start_with(relay_args: &[&str], drivers: Vec<String>) -> Dovecot {
    let mut args = vec!["--debug".to_string()];
    args.extend(relay_args.iter().map(|s| s.to_string()));
    let dc = Dovecot::start(DovecotOpts {
        relay: RelayMode::Service(args),
        ..DovecotOpts::new(Driver::OxPush, drivers)
    });
    dc.set_metadata("alice", "user=3@1");
    dc.set_metadata("bob", "user=4@1");
    dc
}

fn start(drivers: Vec<String>) -> Dovecot {
    start_with(&[], drivers)
}

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

/// Waits until every subject of `want` arrived at `cap`.
fn wait_subjects(cap: &Capture, want: &BTreeSet<String>, log: impl Fn() -> String) {
    let until = Instant::now() + WAIT;
    loop {
        let got: BTreeSet<String> = subjects(&cap.requests()).into_iter().collect();
        if want.is_subset(&got) {
            return;
        }
        assert!(
            Instant::now() < until,
            "missing {:?}\n{}",
            want.difference(&got).collect::<Vec<_>>(),
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hanging_middleware_does_not_slow_delivery_and_notifications_arrive_later() {
    let cap = Capture::start();
    cap.set_default(Reply::Hang);
    let dc = start(vec![line(&cap.url("", "/n"), "timeout_msecs=300")]);
    for s in ["h1", "h2", "h3"] {
        let took = deliver_timed(&dc, "alice", s);
        // The built-in driver would take timeout x attempts (600 ms) here.
        assert!(took < Duration::from_millis(250), "delivery took {took:?}");
    }
    std::thread::sleep(Duration::from_millis(700));
    cap.set_default(Reply::Status(204));
    wait_subjects(&cap, &set(&["h1", "h2", "h3"]), || dc.log());
    assert!(dc.log().contains("Request timed out"), "{}", dc.log());
}

/// The middleware is down for a minute while mail arrives: deliveries stay
/// fast, the relay holds everything, and it all arrives, in order (one
/// connection per endpoint here), once the middleware is back.
#[test]
fn middleware_down_60s_then_up_everything_arrives_in_order() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/n");
    let dc = start_with(&["--concurrency", "1"], vec![line(&url, "")]);
    let outage = Instant::now();
    let mut want = Vec::new();
    for n in 0..6 {
        let s = format!("d{n}");
        let took = deliver_timed(&dc, "alice", &s);
        assert!(took < Duration::from_millis(250), "delivery took {took:?}");
        want.push(s);
        std::thread::sleep(Duration::from_secs(9));
    }
    assert!(dc.log().contains("Connection refused"), "{}", dc.log());
    assert_eq!(dc.spooled(), 6, "{}", dc.log());
    let rest = Duration::from_secs(60).saturating_sub(outage.elapsed());
    std::thread::sleep(rest);
    let cap = Capture::start_on(port);
    // The endpoint's backoff is at most 5 s.
    let reqs = cap.wait_for(6, WAIT);
    assert_eq!(subjects(&reqs), want, "{}", dc.log());
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
    let dc = start(vec![line(&cap.url("", "/n"), "notification_id")]);
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
        dc.wait_log(WAIT, |l| l.contains("400 Bad Request")
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
    assert_eq!(dc.relay_stats()["endpoints"][0]["refused"], 1);
}

/// An lmtp process killed right after its reply: the notification was
/// written to the relay socket before the reply, so it arrives even though
/// the relay was not reading at that moment (stopped).
#[test]
fn lmtp_killed_right_after_its_reply_the_notification_arrives() {
    let cap = Capture::start();
    let dc = start(vec![line(&cap.url("", "/n"), "")]);
    deliver_timed(&dc, "alice", "warm-up");
    cap.wait_for(1, WAIT);
    let relay = dc.relay_pid().expect("relay runs");
    // SAFETY: signalling processes of our private Dovecot.
    unsafe { libc::kill(relay, libc::SIGSTOP) };
    deliver_timed(&dc, "alice", "before-kill");
    for pid in dc.children("lmtp") {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: as above.
    unsafe { libc::kill(relay, libc::SIGCONT) };
    wait_subjects(&cap, &set(&["warm-up", "before-kill"]), || dc.log());
}

#[test]
fn max_age_and_spool_max_size_drop_with_log_lines() {
    let port = free_port();
    let dc = start_with(
        &["--spool-max-size", "400"],
        vec![line(&format!("http://127.0.0.1:{port}/n"), "max_age=1s")],
    );
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
            && l.contains("--spool-max-size")),
        "{}",
        dc.log()
    );
    let stats = dc.relay_stats();
    let ep = &stats["endpoints"][0];
    assert!(ep["dropped_size"].as_u64().unwrap() >= 1, "{stats}");
    std::thread::sleep(Duration::from_millis(1500));
    let _cap = Capture::start_on(port);
    assert!(
        dc.wait_log(WAIT, |l| l.contains("older than max_age (1s)")),
        "{}",
        dc.log()
    );
    let until = Instant::now() + WAIT;
    while dc.spooled() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = dc.relay_stats();
    let ep = &stats["endpoints"][0];
    assert_eq!(
        ep["dropped_size"].as_u64().unwrap() + ep["dropped_age"].as_u64().unwrap(),
        3,
        "{stats}"
    );
    assert_eq!(ep["sent"], 0, "{stats}");
}

#[test]
fn dead_endpoint_does_not_delay_another() {
    let dead_port = free_port();
    let cap = Capture::start();
    let dc = start(vec![
        format!("ox:url=http://127.0.0.1:{dead_port}/dead user_from_metadata"),
        line(&cap.url("", "/live"), ""),
    ]);
    let t = Instant::now();
    for s in ["l1", "l2", "l3"] {
        deliver_timed(&dc, "alice", s);
    }
    let reqs = cap.wait_for(3, WAIT);
    assert_eq!(
        subjects(&reqs).into_iter().collect::<BTreeSet<_>>(),
        set(&["l1", "l2", "l3"])
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// A host name that does not resolve: looked up by the relay (never in a
/// delivery), one clear line, retried; another endpoint is not held up.
#[test]
fn unresolvable_host_is_logged_and_does_not_delay_delivery() {
    let cap = Capture::start();
    let dc = start(vec![
        "ox:url=http://push.invalid/n user_from_metadata timeout_msecs=500".to_string(),
        line(&cap.url("", "/live"), ""),
    ]);
    let t = Instant::now();
    for s in ["u1", "u2"] {
        let took = deliver_timed(&dc, "alice", s);
        assert!(took < Duration::from_millis(250), "delivery took {took:?}");
    }
    let got: BTreeSet<_> = subjects(&cap.wait_for(2, WAIT)).into_iter().collect();
    assert_eq!(got, set(&["u1", "u2"]));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        dc.wait_log(WAIT, |l| l.contains("Error when sending notification")
            && l.contains("to http://push.invalid/n")
            && (l.contains("Failed to lookup host push.invalid")
                || l.contains("connect timed out"))),
        "{}",
        dc.log()
    );
}

/// kill -9 of the relay, several times, while notifications flow: Dovecot's
/// master restarts it, the mail processes hand their unacknowledged
/// notifications to the new one, and every notification arrives, with at
/// most 1 % duplicates (an attempt cut by the kill is repeated).
#[test]
fn relay_killed_while_notifications_flow_nothing_acknowledged_is_lost() {
    let cap = Capture::start();
    let dc = start(vec![line(&cap.url("", "/n"), "shutdown_timeout=5s")]);
    let total = 200;
    let dc_ref = &dc;
    let want: BTreeSet<String> = (0..total).map(|i| format!("k{i}")).collect();
    std::thread::scope(|s| {
        let senders: Vec<_> = (0..4)
            .map(|c| {
                s.spawn(move || {
                    let msgs: Vec<Vec<u8>> = (0..total / 4)
                        .map(|i| simple_message(&format!("k{}", c * (total / 4) + i)))
                        .collect();
                    for chunk in msgs.chunks(10) {
                        let replies = dc_ref.lmtp_session("alice", chunk);
                        assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
                    }
                })
            })
            .collect();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(400));
            if let Some(pid) = dc_ref.relay_pid() {
                // SAFETY: signalling a process of our private Dovecot.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for t in senders {
            t.join().unwrap();
        }
    });
    wait_subjects(&cap, &want, || dc.log());
    std::thread::sleep(Duration::from_millis(500));
    let got = subjects(&cap.requests());
    let duplicates = got.len() - want.len();
    assert!(
        duplicates * 100 <= total,
        "{duplicates} duplicates of {total}\n{}",
        dc.log()
    );
    assert!(
        !dc.log().contains("notification(s) at exit"),
        "nothing dropped\n{}",
        dc.log()
    );
}

/// A Dovecot whose relay the test starts and stops by hand, and its middleware.
fn with_a_relay_by_hand() -> (Capture, Relay, Dovecot) {
    let cap = Capture::start();
    let relay = Relay::start(&["--debug"]);
    let dc = Dovecot::start(DovecotOpts {
        relay: RelayMode::External,
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![line(&cap.url("", "/n"), &relay.option())],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    (cap, relay, dc)
}

/// dovecot-lda while the relay cannot be reached: the delivery succeeds, the
/// process exits within shutdown_timeout, and says what it dropped.
#[test]
fn lda_with_the_relay_down_exits_within_shutdown_timeout_and_logs_the_drop() {
    let (cap, mut relay, dc) = with_a_relay_by_hand();
    assert_eq!(
        dc.lda("alice", &simple_message("lda-up")),
        0,
        "{}",
        dc.log()
    );
    cap.wait_for(1, WAIT);
    relay.stop(false);
    let t = Instant::now();
    assert_eq!(
        dc.lda("alice", &simple_message("lda-down")),
        0,
        "{}",
        dc.log()
    );
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "dovecot-lda took {took:?}"
    );
    let log = dc.log();
    assert!(
        log.contains("Dropped 1 notification(s) at exit")
            && log.contains("Cannot connect to the ox-push relay"),
        "{log}"
    );
}

/// The relay stopped for 10 s while mail arrives on one LMTP connection:
/// every reply stays fast, the lmtp process keeps the notifications (its
/// queue is bounded; tests/../src/client/tests.rs covers the bound), and
/// everything arrives once the relay is back.
#[test]
fn relay_stopped_10s_deliveries_stay_fast_and_everything_arrives_after() {
    let (cap, mut relay, dc) = with_a_relay_by_hand();
    deliver_timed(&dc, "alice", "r-before");
    cap.wait_for(1, WAIT);
    relay.stop(false);
    let stopped = Instant::now();
    // One connection, open across the outage: its lmtp process holds the
    // notifications (Dovecot 2.4 ends an lmtp process with its connection,
    // and it would wait only shutdown_timeout then).
    let mut conn = LmtpConn::open(dc.lmtp_port);
    let t = Instant::now();
    for i in 0..20 {
        let r = conn.deliver(
            "s@example.org",
            &["alice"],
            &simple_message(&format!("r{i}")),
        );
        assert!(r[0].starts_with("250"), "{r:?}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "20 deliveries took {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    assert_eq!(cap.requests().len(), 1, "nothing while the relay is down");
    relay.resume();
    let want: BTreeSet<String> = (0..20).map(|i| format!("r{i}")).collect();
    wait_subjects(&cap, &want, || format!("{}\n{}", dc.log(), relay.log()));
    assert!(
        dc.log().contains("takes notifications again"),
        "{}",
        dc.log()
    );
}

/// dovecot-lda run by root with -d drops to the mail user; without
/// mail_access_groups it has no access to the relay socket: one clear error
/// that names the socket and the ways out, the delivery itself succeeds.
#[test]
fn lda_without_access_to_the_relay_socket_logs_one_clear_error_and_delivers() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        lda_access: false,
        ..DovecotOpts::new(Driver::OxPush, vec![line(&cap.url("", "/n"), "")])
    });
    dc.set_metadata("alice", "user=3@1");
    let t = Instant::now();
    assert_eq!(
        dc.lda("alice", &simple_message("no-access")),
        0,
        "{}",
        dc.log()
    );
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let log = dc.log();
    let socket = dovecot_env().inner(&dc.relay_socket);
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Cannot connect to the ox-push relay"))
        .collect();
    assert!(!errors.is_empty(), "{log}");
    assert!(
        errors[0].contains(&socket)
            && errors[0].contains("Permission denied")
            && errors[0].contains("not in the socket's group dovecot")
            && errors[0].contains("mail_access_groups"),
        "{}",
        errors[0]
    );
    assert!(log.contains("Dropped 1 notification(s) at exit"), "{log}");
    // LMTP (with the group) is unaffected.
    deliver_timed(&dc, "alice", "lmtp-ok");
    wait_subjects(&cap, &set(&["lmtp-ok"]), || dc.log());
    assert_eq!(
        subjects(&cap.requests()),
        ["lmtp-ok"],
        "the LDA one was dropped"
    );
}
