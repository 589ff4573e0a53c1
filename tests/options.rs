//! Opt-in options beyond the built-in driver: `folders=`, `events=`,
//! `notification_id`. Without them the output stays the built-in driver's
//! (see tests/differential.rs).

mod support;

use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn folders_events_and_notification_id() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        extra: work_folder_settings(),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} user_from_metadata folders=INBOX,Work \
                 events=messageNew,messageRead,messageTrash,messageExpunge,flagsSet,flagsClear \
                 notification_id",
                cap.url("", "/n")
            )],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    // Sieve-like filing into a folder: watched with folders=.
    assert!(dc.lmtp(&["alice+Work"], &simple_message("filed"))[0].starts_with("250"));
    assert!(dc.lmtp(&["alice"], &simple_message("inbox"))[0].starts_with("250"));
    let reqs = cap.wait_for(2, WAIT);
    assert_eq!(reqs.len(), 2, "{}", dc.log());
    let bodies: Vec<String> = reqs.iter().map(|r| norm_uidvalidity(&r.body)).collect();
    assert!(bodies.contains(&r#"{"user":"3@1","event":"messageNew","folder":"Work","imap-uidvalidity":V,"imap-uid":1,"from":"Bob <bob@example.org>","subject":"filed","snippet":"Hello \"world\"","unseen":1}"#.to_string()), "{bodies:?}");
    for r in &reqs {
        let id = r.header("X-Notification-Id").expect("X-Notification-Id");
        assert_eq!(id.len(), 36, "{id}");
        // The extra header comes last; the built-in set is unchanged.
        assert_eq!(
            r.header_names(),
            [
                "Host",
                "Date",
                "Content-Length",
                "Connection",
                "Content-Type",
                "X-Notification-Id"
            ]
        );
    }
    cap.clear();

    let mut imap = dc.imap("alice");
    imap.cmd("SELECT INBOX");
    // Sorted: the relay sends on several connections, so two notifications
    // of one change may arrive in either order.
    let expect = |cap: &Capture, n: usize| -> Vec<String> {
        let reqs = cap.wait_for(n, WAIT);
        std::thread::sleep(Duration::from_millis(200));
        let all = cap.requests();
        assert_eq!(all.len(), reqs.len().max(n), "{}", dc.log());
        cap.clear();
        let mut bodies: Vec<String> = all.iter().map(|r| norm_uidvalidity(&r.body)).collect();
        bodies.sort();
        bodies
    };
    imap.cmd("STORE 1 +FLAGS (\\Seen $Label1)");
    assert_eq!(
        expect(&cap, 2),
        [
            r#"{"user":"3@1","event":"flagsSet","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"flags":["\\Seen"],"keywords":["$Label1"],"unseen":0}"#,
            r#"{"user":"3@1","event":"messageRead","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"unseen":0}"#,
        ]
    );
    imap.cmd("STORE 1 -FLAGS (\\Seen)");
    assert_eq!(
        expect(&cap, 1),
        [
            r#"{"user":"3@1","event":"flagsClear","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"flags":["\\Seen"],"keywords":[],"unseen":1}"#
        ]
    );
    imap.cmd("STORE 1 +FLAGS (\\Deleted)");
    assert_eq!(
        expect(&cap, 2),
        [
            r#"{"user":"3@1","event":"flagsSet","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"flags":["\\Deleted"],"keywords":[],"unseen":1}"#,
            r#"{"user":"3@1","event":"messageTrash","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"unseen":1}"#,
        ]
    );
    imap.cmd("EXPUNGE");
    assert_eq!(
        expect(&cap, 1),
        [
            r#"{"user":"3@1","event":"messageExpunge","folder":"INBOX","imap-uidvalidity":V,"imap-uid":1,"unseen":0}"#
        ]
    );
    // Not watched: a folder outside folders=.
    imap.cmd("CREATE Other");
    let out = imap.append("Other", &simple_message("other"));
    assert!(out.last().unwrap().contains("OK"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(cap.requests().is_empty(), "{:?}", subjects(&cap.requests()));
}

#[test]
fn ox_push_stats_reports_the_relays_counters() {
    let cap = Capture::start();
    cap.script(vec![Reply::Status(500)]);
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![format!(
            "ox:url={} user_from_metadata",
            cap.url("u:hidden@", "/n")
        )],
    ));
    dc.set_metadata("alice", "user=3@1");
    let msgs: Vec<Vec<u8>> = ["s1", "s2"].iter().map(|s| simple_message(s)).collect();
    assert!(dc
        .lmtp_session("alice", &msgs)
        .iter()
        .all(|r| r.starts_with("250")));
    cap.wait_for(3, WAIT);
    let bin = relay_path().with_file_name("ox-push-stats");
    let until = std::time::Instant::now() + WAIT;
    loop {
        let out = std::process::Command::new(&bin)
            .arg(&dc.relay_socket)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        assert!(!text.contains("hidden"), "{text}");
        let label = format!("http://u:***@127.0.0.1:{}/n", cap.port);
        // queued sent retried dropped_age dropped_size refused in_flight depth
        let row: Vec<String> = text
            .lines()
            .find(|l| l.starts_with(&label))
            .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
            .unwrap_or_default();
        if row.len() >= 8 && row[..8] == ["2", "2", "1", "0", "0", "0", "0", "0"] {
            let json = std::process::Command::new(&bin)
                .arg(&dc.relay_socket)
                .arg("--json")
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
            assert_eq!(v["endpoints"][0]["sent"], 2, "{v}");
            break;
        }
        assert!(std::time::Instant::now() < until, "{text}\n{}", dc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
