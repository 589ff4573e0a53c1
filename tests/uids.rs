//! The right UID, always: with 4 concurrent LMTP sessions into one INBOX, every
//! notification carries the UID that IMAP shows for that message. (Dovecot's
//! built-in driver sends "imap-uid":0 for many of them on maildir, because a
//! delivery's commit only tries to lock dovecot-uidlist.)

mod support;

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use support::*;

const SESSIONS: usize = 4;
const PER_SESSION: usize = 25;

fn run(mail_location: &str) {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts {
        mail_location: mail_location.to_string(),
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!("ox:url={} user_from_metadata", cap.url("", "/n"))],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    let port = dc.lmtp_port;
    let workers: Vec<_> = (0..SESSIONS)
        .map(|s| {
            thread::spawn(move || {
                for i in 0..PER_SESSION {
                    let subject = format!("s{s}-m{i}");
                    let msg = format!(
                        "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
                         Message-ID: <{subject}@example.org>\r\n\r\nbody {subject}\r\n"
                    );
                    let r = lmtp_deliver(port, "sender@example.org", &["alice"], msg.as_bytes());
                    assert!(r[0].starts_with("250"), "{r:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let total = SESSIONS * PER_SESSION;
    let reqs = cap.wait_for(total, Duration::from_secs(30));
    assert_eq!(reqs.len(), total, "{}", dc.log());
    let mut imap = dc.imap("alice");
    imap.cmd("SELECT INBOX");
    let by_msgid: BTreeMap<String, u32> = imap
        .uid_message_ids()
        .into_iter()
        .map(|(uid, mid)| (mid.trim_matches(['<', '>']).to_string(), uid))
        .collect();
    assert_eq!(by_msgid.len(), total);
    let mut wrong = Vec::new();
    for r in &reqs {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let subject = v["subject"].as_str().unwrap();
        let sent = v["imap-uid"].as_u64().unwrap() as u32;
        let actual = by_msgid[&format!("{subject}@example.org")];
        if sent != actual {
            wrong.push(format!("{subject}: sent {sent}, IMAP {actual}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{mail_location}: {} wrong UIDs: {wrong:?}",
        wrong.len()
    );
}

#[test]
fn concurrent_lmtp_sessions_get_real_uids_maildir() {
    run("maildir:~/Maildir");
}

#[test]
fn concurrent_lmtp_sessions_get_real_uids_sdbox() {
    run("sdbox:~/sdbox");
}

#[test]
fn concurrent_lmtp_sessions_get_real_uids_mdbox() {
    run("mdbox:~/mdbox");
}
