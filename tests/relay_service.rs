//! The relay as a Dovecot service: one pool of connections for every mail
//! process of the host, counters for operators, and a spool that outlives
//! Dovecot restarts and reloads.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn wait_count(cap: &Capture, n: usize, log: impl Fn() -> String) -> Vec<Captured> {
    let reqs = cap.wait_for(n, WAIT);
    assert!(reqs.len() >= n, "{} of {n}\n{}", reqs.len(), log());
    reqs
}

/// 200 IMAP processes marking mail \Seen (messageRead) while LMTP delivers:
/// each mail process talks only to the relay, and the relay holds at most
/// its pool (4 connections) to the middleware; every notification arrives.
#[test]
fn two_hundred_imap_sessions_share_the_relays_pool_of_connections() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        extra: vec![
            "mail_max_userip_connections = 1000".into(),
            "mail_debug = no".into(),
        ],
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} user_from_metadata events=messageNew,messageRead",
                cap.url("", "/n")
            )],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    let sessions = 200;
    let msgs: Vec<Vec<u8>> = (0..sessions)
        .map(|i| simple_message(&format!("m{i}")))
        .collect();
    for chunk in msgs.chunks(50) {
        assert!(dc
            .lmtp_session("alice", chunk)
            .iter()
            .all(|r| r.starts_with("250")));
    }
    wait_count(&cap, sessions, || dc.log());
    let dc_ref = &dc;
    // Log in all sessions first, so that 200 imap processes exist at once.
    let barrier = std::sync::Barrier::new(sessions + 1);
    let barrier = &barrier;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..sessions)
            .map(|i| {
                s.spawn(move || {
                    let mut imap = dc_ref.imap("alice");
                    imap.cmd("SELECT INBOX");
                    barrier.wait();
                    let out = imap.cmd(&format!("UID STORE {} +FLAGS (\\Seen)", i + 1));
                    assert!(out.last().unwrap().contains("OK"), "{out:?}");
                    barrier.wait();
                })
            })
            .collect();
        barrier.wait();
        assert!(
            dc_ref.children("imap").len() >= sessions,
            "{} imap processes",
            dc_ref.children("imap").len()
        );
        // Deliveries at the same time.
        let more: Vec<Vec<u8>> = (0..20).map(|i| simple_message(&format!("x{i}"))).collect();
        assert!(dc_ref
            .lmtp_session("alice", &more)
            .iter()
            .all(|r| r.starts_with("250")));
        barrier.wait();
        for w in workers {
            w.join().unwrap();
        }
    });
    let reqs = wait_count(&cap, 2 * sessions + 20, || dc.log());
    let reads: BTreeSet<u64> = reqs
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter(|v| v["event"] == "messageRead")
        .filter_map(|v| v["imap-uid"].as_u64())
        .collect();
    assert_eq!(reads.len(), sessions, "one messageRead per session");
    assert!(
        cap.connections() <= 4,
        "{} connections to the middleware (pool size 4)",
        cap.connections()
    );
    let stats = dc.relay_stats();
    assert!(
        stats["endpoints"][0]["connections"].as_u64().unwrap() <= 4,
        "{stats}"
    );
}

/// `--metrics-listen`: the counters in the Prometheus text format, endpoints
/// by their masked URL.
#[test]
fn relay_serves_its_counters_to_prometheus() {
    let cap = Capture::start();
    let port = free_port();
    let dc = Dovecot::start(DovecotOpts {
        relay: RelayMode::Service(vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")]),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} user_from_metadata",
                cap.url("u:hidden@", "/n")
            )],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("prom"))[0].starts_with("250"));
    cap.wait_for(1, WAIT);
    let label = format!("endpoint=\"http://u:***@127.0.0.1:{}/n\"", cap.port);
    let until = Instant::now() + WAIT;
    loop {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
        assert!(text.contains("# TYPE ox_push_relay_notifications_sent_total counter"));
        if text.contains(&format!(
            "ox_push_relay_notifications_sent_total{{{label}}} 1\n"
        )) {
            break;
        }
        assert!(Instant::now() < until, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the relay holds survives Dovecot being stopped and started: the
/// master starts the relay with Dovecot (process_min_avail = 1), and it
/// replays its spool without waiting for new mail.
#[test]
fn spooled_notifications_survive_a_dovecot_restart() {
    let port = free_port();
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![format!(
            "ox:url=http://127.0.0.1:{port}/n user_from_metadata"
        )],
    ));
    dc.set_metadata("alice", "user=3@1");
    let msgs: Vec<Vec<u8>> = ["p1", "p2", "p3"]
        .iter()
        .map(|s| simple_message(s))
        .collect();
    assert!(dc
        .lmtp_session("alice", &msgs)
        .iter()
        .all(|r| r.starts_with("250")));
    let until = Instant::now() + WAIT;
    while dc.spooled() < 3 {
        assert!(Instant::now() < until, "{}", dc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    dc.restart();
    let cap = Capture::start_on(port);
    let reqs = wait_count(&cap, 3, || dc.log());
    let got: BTreeSet<String> = subjects(&reqs).into_iter().collect();
    assert_eq!(got, ["p1", "p2", "p3"].map(String::from).into());
    // Dovecot's log process may write a service's first lines late.
    assert!(
        dc.wait_log(WAIT, |l| l
            .contains("Replaying 3 notification(s) from the spool")),
        "{}",
        dc.log()
    );
}

/// `doveadm reload` replaces the relay process (the old one stops, the new
/// one waits for the spool lock): nothing is lost on either side of it.
#[test]
fn a_dovecot_reload_loses_nothing() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![format!("ox:url={} user_from_metadata", cap.url("", "/n"))],
    ));
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("before"))[0].starts_with("250"));
    cap.wait_for(1, WAIT);
    let old = dc.relay_pid();
    let out = dc.doveadm(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let until = Instant::now() + WAIT;
    while dc.relay_pid() == old || dc.relay_pid().is_none() {
        assert!(Instant::now() < until, "relay not replaced\n{}", dc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dc.lmtp(&["alice"], &simple_message("after"))[0].starts_with("250"));
    let reqs = wait_count(&cap, 2, || dc.log());
    assert_eq!(
        subjects(&reqs).into_iter().collect::<BTreeSet<_>>(),
        ["before", "after"].map(String::from).into()
    );
}

/// `X-Notification-Id` is the same on every attempt, also after the relay was
/// killed and Dovecot started a new one that read it back from its spool.
#[test]
fn notification_id_is_stable_across_relay_restarts() {
    let cap = Capture::start();
    cap.set_default(Reply::Status(503));
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![format!(
            "ox:url={} user_from_metadata notification_id",
            cap.url("", "/n")
        )],
    ));
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("stable"))[0].starts_with("250"));
    wait_count(&cap, 2, || dc.log());
    let old = dc.relay_pid().expect("relay runs");
    // SAFETY: signalling a process of our private Dovecot.
    unsafe { libc::kill(old, libc::SIGKILL) };
    let until = Instant::now() + WAIT;
    while dc.relay_pid().is_none_or(|p| p == old) {
        assert!(Instant::now() < until, "relay not restarted\n{}", dc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = cap.requests().len();
    cap.set_default(Reply::Status(204));
    let reqs = wait_count(&cap, before + 1, || dc.log());
    let ids: BTreeSet<String> = reqs
        .iter()
        .map(|r| r.header("X-Notification-Id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}\n{}", dc.log());
    assert!(
        dc.wait_log(WAIT, |l| l.contains("Replaying 1 notification(s)")),
        "{}",
        dc.log()
    );
}
