//! The plugin inside a real Dovecot: takeover of `ox`, the built-in driver's
//! rules (METADATA gate, INBOX + MessageNew only, body, headers), config
//! handling and logging.

mod support;

use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn ours(drivers: Vec<String>) -> Dovecot {
    Dovecot::start(DovecotOpts::new(Driver::OxPush, drivers))
}

#[test]
fn lda_delivery_sends_the_builtin_request() {
    let cap = Capture::start();
    let tmp = tempfile::tempdir().unwrap();
    let dc = ours(vec![format!(
        "ox:url={} user_from_metadata",
        cap.url("login:secret%%2Bpw@", "/preliminary/http-notify/v1/notify")
    )]);
    let _ = tmp;
    dc.set_metadata("alice", "user=3@1");
    assert_eq!(
        dc.lda("alice", &simple_message("Hi there")),
        0,
        "{}",
        dc.log()
    );
    let reqs = cap.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", dc.log());
    let r = &reqs[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.target, "/preliminary/http-notify/v1/notify");
    assert_eq!(
        r.header_names(),
        [
            "Host",
            "Date",
            "Authorization",
            "Content-Length",
            "Connection",
            "Content-Type"
        ]
    );
    assert_eq!(r.header("Host").unwrap(), format!("127.0.0.1:{}", cap.port));
    // login:secret+pw, %-decoded as lib-http does.
    assert_eq!(
        r.header("Authorization").unwrap(),
        "Basic bG9naW46c2VjcmV0K3B3"
    );
    assert_eq!(r.header("Connection").unwrap(), "Keep-Alive");
    assert_eq!(
        r.header("Content-Type").unwrap(),
        "application/json; charset=utf-8"
    );
    assert_eq!(
        norm_uidvalidity(&r.body),
        r#"{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"from":"Bob <bob@example.org>","subject":"Hi there","snippet":"Hello \"world\"","unseen":1}"#
    );
    let log = dc.log();
    assert!(
        log.contains("push-notification-ox: Using URL http://login:***@127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains("secret"), "password in log:\n{log}");
}

#[test]
fn lmtp_two_recipients_two_requests_with_login_names() {
    let cap = Capture::start();
    let dc = ours(vec![format!("ox:url={}", cap.url("", "/notify"))]);
    dc.set_metadata("alice", "user=3@1");
    dc.set_metadata("bob", "user=4@1");
    let replies = dc.lmtp(&["alice", "bob"], &simple_message("two"));
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let reqs = cap.wait_for(2, WAIT);
    let mut users: Vec<String> = reqs
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["user"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    users.sort();
    // Without user_from_metadata the Dovecot user name is sent.
    assert_eq!(
        users,
        ["alice", "bob"],
        "{:?}",
        reqs.iter().map(|r| r.body_str()).collect::<Vec<_>>()
    );
    // No userinfo in the URL: no Authorization header.
    assert!(reqs.iter().all(|r| r.header("Authorization").is_none()));
}

#[test]
fn nothing_is_sent_without_activation_or_outside_inbox_delivery() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        extra: work_folder_settings(),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} user_from_metadata",
                cap.url("u:p@", "/n")
            )],
        )
    });
    // 1. No METADATA at all.
    assert!(dc.lmtp(&["alice"], &simple_message("no metadata"))[0].starts_with("250"));
    // 2. METADATA without user=.
    dc.set_metadata("alice", "foo=bar");
    assert!(dc.lmtp(&["alice"], &simple_message("no user"))[0].starts_with("250"));
    assert!(
        dc.wait_log(WAIT, |l| l
            .contains("push-notification-ox: No user provided in config")),
        "{}",
        dc.log()
    );
    dc.set_metadata("alice", "user=3@1");
    // 3. IMAP APPEND to INBOX (MessageAppend, not MessageNew).
    let mut imap = dc.imap("alice");
    let out = imap.append("INBOX", &simple_message("appended"));
    assert!(out.last().unwrap().contains("OK"), "{out:?}");
    // 4. Delivery into another folder.
    assert!(dc.lmtp(&["alice+Work"], &simple_message("to work"))[0].starts_with("250"));
    // A control delivery that must arrive, and be the only one.
    assert!(dc.lmtp(&["alice"], &simple_message("control"))[0].starts_with("250"));
    let reqs = cap.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let reqs = if reqs.len() == 1 {
        cap.requests()
    } else {
        reqs
    };
    assert_eq!(
        reqs.len(),
        1,
        "{:?}\n{}",
        reqs.iter().map(|r| r.body_str()).collect::<Vec<_>>(),
        dc.log()
    );
    assert!(reqs[0].body_str().contains("\"subject\":\"control\""));
    assert!(
        dc.log()
            .contains("Skipped because Work is not a watched mailbox"),
        "{}",
        dc.log()
    );
    // Only the control delivery synced INBOX for `unseen` (the built-in driver
    // also syncs for the APPEND, which sends nothing).
    assert_eq!(
        dc.log().matches("Got status of mailbox").count(),
        1,
        "{}",
        dc.log()
    );
}

/// Dovecot 2.3: the driver line's own problems (2.4 checks its blocks' types
/// itself; see `bad_blocks_on_dovecot_2_4`).
#[test]
fn bad_config_disables_only_that_instance_and_delivery_succeeds() {
    if dovecot_env().v24 {
        return;
    }
    let cap = Capture::start();
    let good = format!(
        "ox:url={} user_from_metadata",
        cap.url("u:topsecret@", "/good")
    );
    let dc = ours(vec![
        "ox:user_from_metadata".to_string(), // no url
        format!("ox:url={} cache_lifetime=60", cap.url("u:topsecret@", "/x")), // no unit
        format!("ox:url=ftp://u:topsecret@127.0.0.1:{}/x", cap.port), // bad scheme
        format!("{good} max_retries=abc timeout_msecs=-5 frobnicate=1"), // fallbacks
    ]);
    dc.set_metadata("alice", "user=3@1");
    assert!(
        dc.lmtp(&["alice"], &simple_message("lmtp"))[0].starts_with("250 "),
        "{}",
        dc.log()
    );
    assert_eq!(dc.lda("alice", &simple_message("lda")), 0, "{}", dc.log());
    let reqs = cap.wait_for(2, WAIT);
    assert_eq!(reqs.len(), 2, "{}", dc.log());
    assert!(reqs.iter().all(|r| r.target == "/good"));
    let log = dc.log();
    for needle in [
        "Error: push-notification-ox: Driver requires the url parameter",
        "Error: push-notification-ox: Failed to parse OX cache_lifetime 60: Time interval '60' is missing units",
        "Error: push-notification-ox: Failed to parse OX REST URL ftp://...: Not an HTTP URL",
        "Warning: push-notification-ox: Invalid max_retries=abc: expected an unsigned integer; using the default 1",
        "Warning: push-notification-ox: Invalid timeout_msecs=-5",
        "Warning: push-notification-ox: Unknown setting \"frobnicate\" ignored",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in\n{log}");
    }
    assert!(!log.contains("topsecret"), "password in log:\n{log}");
    // One line per problem and process, not one per (raw) user: LDA logs each
    // once, the LMTP process once.
    assert_eq!(
        log.matches("Driver requires the url parameter").count(),
        2,
        "{log}"
    );
}

#[test]
fn several_entries_each_with_their_own_settings() {
    let slow = Capture::start();
    let fast = Capture::start();
    slow.set_default(Reply::Delayed(Duration::from_millis(600), 204));
    let dc = ours(vec![
        // The first entry's 300 ms timeout must not apply to the second.
        format!("ox:url={} timeout_msecs=300", slow.url("", "/slow")),
        format!(
            "ox:url={} user_from_metadata timeout_msecs=5000",
            fast.url("", "/fast")
        ),
    ]);
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("both"))[0].starts_with("250"));
    let f = fast.wait_for(1, WAIT);
    assert_eq!(f.len(), 1);
    assert!(f[0].body_str().starts_with("{\"user\":\"3@1\""));
    let s = slow.wait_for(1, WAIT);
    assert!(s[0].body_str().starts_with("{\"user\":\"alice\""));
}

#[test]
fn metadata_value_forms() {
    let cap = Capture::start();
    let dc = ours(vec![format!(
        "ox:url={} user_from_metadata cache_lifetime=0",
        cap.url("", "/n")
    )]);
    for (value, expected) in [
        ("user=7@2\tfoo=bar", "7@2"),
        ("user=a=b", "a=b"),
        ("user=first user=second", "first user=second"),
    ] {
        // The file dict notices a change by its mtime (seconds).
        std::thread::sleep(Duration::from_millis(1100));
        dc.set_metadata("alice", value);
        assert!(dc.lmtp(&["alice"], &simple_message("m"))[0].starts_with("250"));
        let reqs = cap.wait_for(1, WAIT);
        assert_eq!(reqs.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&reqs.last().unwrap().body).unwrap();
        assert_eq!(v["user"], expected, "{value:?}");
        cap.clear();
    }
}

#[test]
fn https_with_dovecot_ssl_client_ca_file() {
    let (cap, ca_pem) = Capture::start_tls();
    let untrusted = Capture::start_tls().0;
    // Where Dovecot (and the relay, which reads it) can see it.
    let ca_dir = dovecot_env().tempdir("oxpush-ca-");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    chmod(&ca_file, 0o644);
    let dc = Dovecot::start(DovecotOpts {
        extra: vec![format!(
            "ssl_client_ca_file = {}",
            dovecot_env().inner(&ca_file)
        )],
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![
                format!(
                    "ox:url=https://u:pw@127.0.0.1:{}/tls user_from_metadata",
                    cap.port
                ),
                format!(
                    "ox:url=https://127.0.0.1:{}/untrusted user_from_metadata",
                    untrusted.port
                ),
            ],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("over tls"))[0].starts_with("250"));
    let reqs = cap.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", dc.log());
    assert_eq!(reqs[0].target, "/tls");
    assert_eq!(reqs[0].header("Authorization"), Some("Basic dTpwdw=="));
    assert!(reqs[0].body_str().contains("\"subject\":\"over tls\""));
    // A certificate from a CA Dovecot does not trust is refused (and retried).
    assert!(
        dc.wait_log(WAIT, |l| l.contains(
            "TLS handshake with 127.0.0.1 failed: invalid peer certificate"
        )),
        "{}",
        dc.log()
    );
    assert!(untrusted.requests().is_empty());
}

#[test]
fn debug_lines_follow_dovecot_log_debug_filters() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        extra: vec![
            "mail_debug = no".into(),
            "log_debug = category=push-notification".into(),
        ],
        relay: RelayMode::Service(Vec::new()),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!("ox:url={} user_from_metadata", cap.url("", "/n"))],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("filtered"))[0].starts_with("250"));
    cap.wait_for(1, WAIT);
    assert!(
        dc.wait_log(WAIT, |l| l.contains(
            "ox-push: Debug: push-notification-ox: Notification sent successfully: 204 No Content"
        )),
        "{}",
        dc.log()
    );
    let log = dc.log();
    assert!(
        log.contains("push-notification-ox: Sending notification: {\"user\":\"3@1\""),
        "{log}"
    );
    // Only our category: other subsystems stay quiet.
    assert!(!log.contains("Debug: auth-master"), "{log}");

    let quiet = Capture::start();
    let dc2 = Dovecot::start(DovecotOpts {
        extra: vec!["mail_debug = no".into()],
        relay: RelayMode::Service(Vec::new()),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!("ox:url={} user_from_metadata", quiet.url("", "/n"))],
        )
    });
    dc2.set_metadata("alice", "user=3@1");
    assert!(dc2.lmtp(&["alice"], &simple_message("quiet"))[0].starts_with("250"));
    quiet.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!dc2.log().contains("push-notification-ox"), "{}", dc2.log());
    assert!(!dc2.log().contains("Debug:"), "{}", dc2.log());
}

/// The sender lives in Dovecot's ioloop: an lmtp process has no thread of
/// ours (every extra thread would be signalled at each of LMTP's euid
/// switches). A host name is looked up on a short-lived helper thread, and
/// when `localhost` gives ::1 first, the next address is tried.
#[test]
fn lmtp_process_runs_no_extra_thread_and_host_names_work() {
    let cap = Capture::start();
    let dc = ours(vec![format!(
        "ox:url=http://localhost:{}/notify user_from_metadata",
        cap.port
    )]);
    dc.set_metadata("alice", "user=3@1");
    // Open while the threads are counted (Dovecot 2.4 ends the lmtp process
    // with its connection).
    let mut conn = LmtpConn::open(dc.lmtp_port);
    for i in 0..3 {
        let r = conn.deliver(
            "s@example.org",
            &["alice"],
            &simple_message(&format!("thread-{i}")),
        );
        assert!(r[0].starts_with("250"), "{r:?}");
    }
    assert_eq!(cap.wait_for(3, WAIT).len(), 3, "{}", dc.log());
    let lmtp = dc.children("lmtp");
    assert!(!lmtp.is_empty());
    let threads = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // The lookup thread ends right after its answer; allow it a moment.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while lmtp.iter().any(|&p| threads(p) > 1) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in lmtp {
        assert_eq!(threads(pid), 1, "lmtp process {pid} has extra threads");
    }
}

/// Dovecot 2.4: a block that cannot work (no `ox_url`; Dovecot's own config
/// check refuses a bad URL before anything starts) disables only itself, once
/// per process; the other blocks deliver.
#[test]
fn bad_blocks_on_dovecot_2_4_disable_only_themselves() {
    if !dovecot_env().v24 {
        return;
    }
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        extra: vec![
            "push_notification ox {\n  ox_user_from_metadata = yes\n}".into(),
            format!(
                "push_notification good {{\n  driver = ox\n  ox_url = {}\n  \
                 ox_user_from_metadata = yes\n}}",
                cap.url("u:topsecret@", "/good")
            ),
        ],
        ..DovecotOpts::new(Driver::OxPush, Vec::new())
    });
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("lmtp"))[0].starts_with("250 "));
    assert_eq!(dc.lda("alice", &simple_message("lda")), 0, "{}", dc.log());
    let reqs = cap.wait_for(2, WAIT);
    assert_eq!(reqs.len(), 2, "{}", dc.log());
    let log = dc.log();
    assert!(
        log.contains("Error: push-notification-ox: push_notification ox { } has no ox_url"),
        "{log}"
    );
    assert!(!log.contains("topsecret"), "password in log:\n{log}");
    // Once per process (LMTP, LDA), not per (raw) user.
    assert_eq!(log.matches("has no ox_url").count(), 2, "{log}");
}

/// Dovecot 2.4: the settings module teaches doveconf our keys: it shows their
/// defaults and refuses bad values with a message naming the key.
#[test]
fn doveconf_knows_and_checks_the_ox_push_keys_on_dovecot_2_4() {
    if !dovecot_env().v24 {
        return;
    }
    let cap = Capture::start();
    let dc = ours(vec![format!(
        "ox:url={} user_from_metadata max_age=5mins events=messageNew,flagsSet",
        cap.url("", "/n")
    )]);
    let out = dc.command("doveconf").arg("-n").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // doveconf shows a key by its shortest name in the block (in a block
    // named ox: push_max_age for push_notification_ox_push_max_age).
    assert!(text.contains("max_age = 5mins"), "{text}");
    assert!(text.contains("events = messageNew flagsSet"), "{text}");
    let all = dc.command("doveconf").arg("-d").output().unwrap();
    let all = String::from_utf8_lossy(&all.stdout);
    assert!(all.contains("ox_push_shutdown_timeout = 100 ms"), "{all}");
    for (bad, says) in [
        (
            "ox_push_shutdown_timeout = 11s",
            "more than the maximum of 10000 ms",
        ),
        (
            "ox_push_events = messageNew nonsense",
            "unknown event 'nonsense'",
        ),
        (
            "ox_push_relay_socket = relative/path",
            "must be an absolute path",
        ),
        ("ox_push_frobnicate = 1", "ox_push_frobnicate"),
    ] {
        let conf = dc.path().join("bad.conf");
        let base = std::fs::read_to_string(&dc.conf).unwrap();
        std::fs::write(
            &conf,
            format!("{base}push_notification ox {{\n  {bad}\n}}\n"),
        )
        .unwrap();
        let out = dovecot_env()
            .command(&dc.path().join("settings"), "doveconf")
            .args(["-n", "-c", &dovecot_env().inner(&conf)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(err.contains(says), "{bad}: {err}");
    }
}

/// Dovecot 2.4 ignores the 2.3 line `push_notification_driver = ox:...`;
/// the plugin says so, once, without the line's value (its password).
#[test]
fn the_ignored_2_3_driver_line_is_reported_on_dovecot_2_4() {
    if !dovecot_env().v24 {
        return;
    }
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        extra: vec![format!(
            "push_notification_driver = ox:url={} user_from_metadata",
            cap.url("u:topsecret@", "/n")
        )],
        ..DovecotOpts::new(Driver::OxPush, Vec::new())
    });
    dc.set_metadata("alice", "user=3@1");
    assert!(dc.lmtp(&["alice"], &simple_message("legacy"))[0].starts_with("250"));
    let log = dc.log();
    assert!(
        log.contains("push_notification_driver = <driver>:<settings> line (Dovecot 2.3 syntax) does nothing in Dovecot 2.4"),
        "{log}"
    );
    assert!(!log.contains("topsecret"), "{log}");
}
