//! A hostile or broken middleware cannot hurt delivery, the relay, or the
//! other endpoints (issue 9, "a hostile or broken middleware kills LMTP"):
//! with a real Dovecot and the relay as its service, one endpoint answers
//! with an endless chunked body, an endless header line, endless `100
//! Continue` heads or a 1 GiB body, while a second, healthy endpoint of the
//! same driver set keeps receiving every notification. The relay's memory
//! stays bounded, no Dovecot process dies, and once the hostile endpoint
//! behaves, its notifications arrive.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// The relay's resident memory may never exceed this. Its own bounds: an
/// answer's header block and body are cut at `--response-max-size` (64 KiB)
/// per connection, with 4 connections per endpoint; its baseline (runtime,
/// spool, buffers) measured about 9.5 MB, and stayed there under every attack
/// below. 64 MB leaves room for allocator slack and a busier host, yet is a
/// sixteenth of the 1 GiB body: with that bound lifted (`--response-max-size
/// 900M`), the endless header line and the 1 GiB body took the relay past
/// 85 MB within this scenario, so a missing bound does not stay under it.
const RSS_BOUND_KB: u64 = 64 * 1024;
/// `--response-max-size` (the relay's default).
const RESPONSE_MAX: u64 = 64 * 1024;
const MESSAGES: usize = 8;

fn relay_peak_kb(dc: &Dovecot, pid: i32) -> u64 {
    // VmHWM: the peak resident set since the relay started, so a spike
    // between two samples is not missed.
    status_kb(pid, "VmHWM").unwrap_or_else(|| panic!("relay {pid} is gone\n{}", dc.log()))
}

/// Lines that mean a Dovecot process (or the relay) died or gave up.
fn deaths(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("killed with signal") || l.contains("Panic") || l.contains("Fatal"))
        .collect()
}

fn endpoint_stats(stats: &serde_json::Value, port: u16) -> &serde_json::Value {
    stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["endpoint"]
                .as_str()
                .unwrap_or("")
                .contains(&format!(":{port}/"))
        })
        .unwrap_or_else(|| panic!("no endpoint on port {port}: {stats}"))
}

/// The scenario of every hostile answer: `push_notification_driver` points
/// at the hostile middleware, `push_notification_driver2` at a healthy one.
fn hostile_middleware_is_harmless(b: Behaviour) {
    let hostile = HostileServer::start(b.clone());
    let healthy = Capture::start();
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![
            // timeout_msecs as 2.3's default (2.4.1's http_client_request_timeout
            // is a minute): each hostile attempt ends within the test.
            format!(
                "ox:url={} user_from_metadata timeout_msecs=2000",
                hostile.url("/notify")
            ),
            format!(
                "ox:url={} user_from_metadata timeout_msecs=2000",
                healthy.url("", "/notify")
            ),
        ],
    ));
    dc.set_metadata("alice", "user=3@1");
    let relay = dc.relay_pid().expect("relay service running");

    // Deliveries while the middleware misbehaves: every one is answered at
    // once and reaches the healthy endpoint within seconds.
    let mut delivered = Vec::new();
    for i in 0..MESSAGES {
        let subject = format!("hostile-{i}");
        let t = Instant::now();
        let reply = dc.lmtp(&["alice"], &simple_message(&subject));
        assert!(reply[0].starts_with("250"), "{reply:?}\n{}", dc.log());
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "delivery took {:?}\n{}",
            t.elapsed(),
            dc.log()
        );
        delivered.push((subject, t));
        std::thread::sleep(Duration::from_millis(150));
    }
    let got = healthy.wait_for(MESSAGES, Duration::from_secs(10));
    for (subject, t) in &delivered {
        let r = got
            .iter()
            .find(|r| r.body_str().contains(&format!("\"subject\":\"{subject}\"")))
            .unwrap_or_else(|| {
                panic!("{subject} never reached the healthy endpoint\n{}", dc.log())
            });
        assert!(
            r.at.duration_since(*t) < Duration::from_secs(5),
            "{subject} reached the healthy endpoint after {:?}\n{}",
            r.at.duration_since(*t),
            dc.log()
        );
    }
    // The attack really happened, more than once (retries), and for the
    // streaming ones the relay was offered more than it may keep.
    assert!(
        hostile.wait(Duration::from_secs(20), |h| h.hostile_answers() >= 3),
        "the hostile middleware answered only {} time(s)\n{}",
        hostile.hostile_answers(),
        dc.log()
    );
    assert!(
        hostile.answered(204).is_empty(),
        "the hostile middleware behaved"
    );
    if b != Behaviour::GigabyteBody {
        assert!(
            hostile.hostile_bytes() > RESPONSE_MAX,
            "only {} hostile bytes written",
            hostile.hostile_bytes()
        );
    }
    let peak = relay_peak_kb(&dc, relay);
    assert!(
        peak < RSS_BOUND_KB,
        "relay peak RSS {peak} kB while the middleware sent {} bytes\n{}",
        hostile.hostile_bytes(),
        dc.log()
    );
    // An endless answer ends when the attempt's timeout (2 s) does.
    let until = Instant::now() + Duration::from_secs(20);
    let h = loop {
        let stats = dc.relay_stats();
        let h = endpoint_stats(&stats, hostile.port).clone();
        if h["retried"].as_u64().unwrap() >= 1 || Instant::now() > until {
            break h;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        h["retried"].as_u64().unwrap() >= 1,
        "hostile answers must count as failed attempts: {h}"
    );
    assert_eq!(h["sent"].as_u64().unwrap(), 0, "{h}");

    // The middleware behaves: everything it was sent arrives.
    hostile.set(Behaviour::Behave);
    let all_arrived = |h: &HostileServer| {
        let ok = h.answered(204);
        delivered.iter().all(|(s, _)| ok.contains(s))
    };
    assert!(
        hostile.wait(Duration::from_secs(30), all_arrived),
        "answered 204: {:?}\n{}",
        hostile.answered(204),
        dc.log()
    );
    // Each notification reached the healthy endpoint exactly once.
    let healthy_subjects = subjects(&healthy.requests());
    for (s, _) in &delivered {
        assert_eq!(
            healthy_subjects.iter().filter(|h| *h == s).count(),
            1,
            "{s}: {healthy_subjects:?}"
        );
    }

    let peak = relay_peak_kb(&dc, relay);
    assert!(
        peak < RSS_BOUND_KB,
        "relay peak RSS {peak} kB\n{}",
        dc.log()
    );
    assert_eq!(
        dc.relay_pid(),
        Some(relay),
        "the relay was restarted\n{}",
        dc.log()
    );
    let log = dc.log();
    assert!(deaths(&log).is_empty(), "{:?}\n{log}", deaths(&log));
}

#[test]
fn endless_chunked_body_does_not_grow_the_relay_or_stop_other_endpoints() {
    hostile_middleware_is_harmless(Behaviour::EndlessChunkedBody);
}

#[test]
fn endless_header_line_does_not_grow_the_relay_or_stop_other_endpoints() {
    hostile_middleware_is_harmless(Behaviour::EndlessHeaderLine);
}

#[test]
fn endless_100_continue_does_not_grow_the_relay_or_stop_other_endpoints() {
    hostile_middleware_is_harmless(Behaviour::EndlessContinue);
}

#[test]
fn gigabyte_body_does_not_grow_the_relay_or_stop_other_endpoints() {
    hostile_middleware_is_harmless(Behaviour::GigabyteBody);
}

/// One notification answered 500 (retried with its own backoff) while the
/// others are answered 204: with a single connection to the endpoint
/// (`--concurrency 1`), the others still arrive at once, and the failing one
/// arrives once the middleware accepts it.
#[test]
fn one_item_answered_500_does_not_hold_back_the_others() {
    let mw = HostileServer::start(Behaviour::FailWhenSubjectContains("poison".into()));
    let dc = Dovecot::start(DovecotOpts {
        relay: RelayMode::Service(vec!["--debug".into(), "--concurrency".into(), "1".into()]),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} user_from_metadata notification_id timeout_msecs=2000",
                mw.url("/notify")
            )],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("poison"))[0].starts_with("250"));
    assert!(
        mw.wait(Duration::from_secs(10), |m| m.answered(500).len() >= 2),
        "the failing notification was not retried: {:?}\n{}",
        mw.seen(),
        dc.log()
    );
    let mut delivered = Vec::new();
    for i in 0..MESSAGES {
        let subject = format!("healthy-{i}");
        let t = Instant::now();
        assert!(dc.lmtp(&["alice"], &simple_message(&subject))[0].starts_with("250"));
        delivered.push((subject, t));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        mw.wait(Duration::from_secs(10), |m| {
            let ok = m.answered(204);
            delivered.iter().all(|(s, _)| ok.contains(s))
        }),
        "answered 204: {:?}\n{}",
        mw.answered(204),
        dc.log()
    );
    let seen = mw.seen();
    for (subject, t) in &delivered {
        let first = seen
            .iter()
            .find(|s| s.subject == *subject && s.status == Some(204))
            .unwrap();
        assert!(
            first.at.duration_since(*t) < Duration::from_secs(3),
            "{subject} held back for {:?}\n{}",
            first.at.duration_since(*t),
            dc.log()
        );
    }
    // Still failing, still retried, under one stable X-Notification-Id.
    assert!(mw.answered(204).iter().all(|s| s != "poison"));
    let poison: Vec<&Seen> = seen.iter().filter(|s| s.subject == "poison").collect();
    assert!(poison.len() >= 3, "{poison:?}");
    assert!(poison[0].notification_id.is_some(), "{poison:?}");
    assert!(
        poison
            .iter()
            .all(|s| s.notification_id == poison[0].notification_id),
        "{poison:?}"
    );

    mw.set(Behaviour::Behave);
    assert!(
        mw.wait(Duration::from_secs(15), |m| m
            .answered(204)
            .iter()
            .any(|s| s == "poison")),
        "{:?}\n{}",
        mw.seen(),
        dc.log()
    );
    let log = dc.log();
    assert!(deaths(&log).is_empty(), "{:?}\n{log}", deaths(&log));
}
