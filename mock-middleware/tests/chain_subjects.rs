//! What the phone shows (issue 11, point 1) through the real chain: Dovecot + the ox_push
//! plugin → mock-middleware → fake APNs and FCM. A folded subject arrives unfolded, and one
//! encoded word per charset that Europe's and Asia's mailers use arrives decoded, in the APNs
//! alert and in FCM's `data.subject`.

mod chain;
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

const APNS_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";

/// (raw Subject header value, what the phone must show).
const SUBJECTS: &[(&str, &str)] = &[
    (
        "Re: Planning meeting agenda,\r\n travel, budget\r\n\tand  more",
        "Re: Planning meeting agenda, travel, budget and more",
    ),
    (
        "=?windows-1252?Q?Rechnung_=96_99_=80_f=E4llig?=",
        "Rechnung – 99 € fällig",
    ),
    ("=?ISO-8859-15?B?UHJlaXMgpCAxMA==?=", "Preis € 10"),
    (
        "=?ISO-2022-JP?B?GyRCRnxLXDhsJE4lRiU5JUgbKEI=?=",
        "日本語のテスト",
    ),
    ("=?Shift_JIS?B?k/qWe4zq?=", "日本語"),
    ("=?EUC-KR?B?x9Gxub7u?=", "한국어"),
    ("=?GB18030?B?1tDOxA==?=", "中文"),
    ("=?KOI8-R?B?8NLJ18XU?=", "Привет"),
    ("=?Big5?B?pKSk5Q==?=", "中文"),
];

fn message(n: usize, subject: &str) -> Vec<u8> {
    format!(
        "From: =?windows-1252?Q?J=F6rg_=96_IT?= <j@example.org>\r\nTo: alice@example.org\r\n\
         Subject: {subject}\r\nMessage-ID: <subject-{n}@example.org>\r\n\r\nbody\r\n"
    )
    .into_bytes()
}

fn body(r: &Value) -> Value {
    match &r["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_subject_and_one_encoded_word_per_charset_reach_the_phone_decoded() {
    let c = chain::start("").await;
    let l = c.h.session("alice", "pw", "open-xchange-mailapp").await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.h.subscribe(&l, "fcm-token-subjects", "gcm").await;
    c.wait_metadata("alice", "user=3@1").await;
    for (n, (raw, _)) in SUBJECTS.iter().enumerate() {
        let r = tokio::task::block_in_place(|| c.dc.lmtp(&["alice"], &message(n, raw)));
        assert!(r.iter().all(|l| l.starts_with("250")), "LMTP: {r:?}");
    }
    let n = SUBJECTS.len();
    let apns = c.wait_fake("apns", n, Duration::from_secs(20)).await;
    let fcm = c.wait_fake("fcm", n, Duration::from_secs(20)).await;
    // What Dovecot sent: the values as they stand in the message (this is why the middleware
    // must unfold and decode).
    let notes = c.h.get_json(c.h.admin("/mock/notifications")).await;
    let sent: Vec<String> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"]["subject"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(sent.contains(&SUBJECTS[1].0.to_string()), "{sent:?}");
    assert!(sent.iter().any(|s| s.contains('\n')), "{sent:?}");
    let want: BTreeSet<String> = SUBJECTS.iter().map(|(_, w)| w.to_string()).collect();
    let alerts: BTreeSet<String> = apns
        .iter()
        .map(|r| body(r)["aps"]["alert"].as_str().unwrap_or("").to_string())
        .collect();
    let expected_alerts: BTreeSet<String> =
        want.iter().map(|s| format!("Jörg – IT\n{s}")).collect();
    assert_eq!(alerts, expected_alerts, "APNs alerts");
    let subjects: BTreeSet<String> = fcm
        .iter()
        .map(|r| {
            body(r)["message"]["data"]["subject"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(subjects, want, "FCM data.subject");
    assert!(
        fcm.iter()
            .all(|r| body(r)["message"]["data"]["sender"] == "Jörg – IT"),
        "{fcm:?}"
    );
}
