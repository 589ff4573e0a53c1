//! Differential test: every message of `tests/corpus/` is delivered by LMTP into
//! one Dovecot running the built-in `ox` driver and one running ours, each with
//! two driver entries (with and without `user_from_metadata`). Method, target,
//! header names (in order), Authorization, Content-Type and body bytes must be
//! identical; only `Date`, the `Host` port and `imap-uidvalidity` may differ.

mod support;

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use support::*;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The `imap-uid` of a request body: the corpus is delivered in order into an
/// empty INBOX, so the uid names the message.
fn uid_of(r: &Captured) -> u64 {
    let body = r.body_str();
    let key = "\"imap-uid\":";
    let at = body.find(key).map_or(0, |p| p + key.len());
    body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// Delivers the corpus into a Dovecot with `driver`; returns the requests per
/// path in message order (the relay sends on several connections at once, so
/// arrival order is not message order).
fn run(driver: Driver, messages: &[(String, Vec<u8>)]) -> (Vec<Captured>, Vec<Captured>, String) {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts::new(
        driver,
        vec![
            format!(
                "ox:url={} user_from_metadata",
                cap.url("login:s3cr%%2Bt@", "/meta?x=1")
            ),
            format!("ox:url={}", cap.url("login:s3cr%%2Bt@", "/plain")),
        ],
    ));
    dc.set_metadata("alice", "user=3@1");
    for (name, msg) in messages {
        let r = dc.lmtp(&["alice"], msg);
        assert!(
            r[0].starts_with("250"),
            "{driver:?} {name}: {r:?}\n{}",
            dc.log()
        );
    }
    let all = cap.wait_for(2 * messages.len(), Duration::from_secs(60));
    let pick = |f: &dyn Fn(&Captured) -> bool| {
        let mut v: Vec<Captured> = all.iter().filter(|r| f(r)).cloned().collect();
        v.sort_by_key(uid_of);
        v
    };
    let meta = pick(&|r| r.target.starts_with("/meta"));
    let plain = pick(&|r| r.target == "/plain");
    (meta, plain, dc.log())
}

#[test]
fn corpus_requests_are_identical_to_the_builtin_driver() {
    let messages = corpus();
    assert!(messages.len() >= 30, "corpus too small: {}", messages.len());
    let m2 = messages.clone();
    let builtin = thread::spawn(move || run(Driver::Builtin, &m2));
    let ours = run(Driver::OxPush, &messages);
    let builtin = builtin.join().unwrap();

    let mut mismatches = Vec::new();
    for (label, theirs, mine) in [
        ("meta", &builtin.0, &ours.0),
        ("plain", &builtin.1, &ours.1),
    ] {
        assert_eq!(
            theirs.len(),
            messages.len(),
            "built-in {label}: {}",
            builtin.2
        );
        assert_eq!(mine.len(), messages.len(), "ours {label}: {}", ours.2);
        for (i, (t, m)) in theirs.iter().zip(mine.iter()).enumerate() {
            let name = &messages[i].0;
            let checks = [
                ("method", t.method == m.method),
                ("target", t.target == m.target),
                ("header names", t.header_names() == m.header_names()),
                (
                    "Authorization",
                    t.header("Authorization") == m.header("Authorization"),
                ),
                (
                    "Content-Type",
                    t.header("Content-Type") == m.header("Content-Type"),
                ),
                (
                    "Connection",
                    t.header("Connection") == m.header("Connection"),
                ),
                (
                    "Content-Length",
                    t.header("Content-Length") == m.header("Content-Length"),
                ),
                (
                    "body",
                    norm_uidvalidity(&t.body) == norm_uidvalidity(&m.body),
                ),
            ];
            for (what, ok) in checks {
                if !ok {
                    mismatches.push(format!(
                        "{name} ({label}): {what} differs\n  built-in: {:?} {:?}\n  ours:     {:?} {:?}",
                        t.header_names(),
                        String::from_utf8_lossy(&t.body),
                        m.header_names(),
                        String::from_utf8_lossy(&m.body)
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // 2.3's built-in driver logs the password at debug level (2.4's no
    // longer does); ours never does.
    assert!(
        dovecot_env().v24 || builtin.2.contains("login:s3cr%2Bt@"),
        "expected the built-in driver's leak as a control"
    );
    assert!(
        !ours.2.contains("s3cr+t") && !ours.2.contains("s3cr%2Bt"),
        "password in our log"
    );
}
