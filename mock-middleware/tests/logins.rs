//! Logins (issue 11, point 6): throttling per login and per address kicks in and recovers;
//! sessions expire when idle.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const THROTTLE: &str = "mock.login.throttle.free_attempts=2\nmock.login.throttle.base_ms=800\nmock.login.throttle.max_ms=3000\n";

async fn login_raw(h: &Harness, name: &str, password: &str) -> (Value, Option<String>) {
    let r = h
        .http
        .post(h.url("/ajax/login?action=login"))
        .form(&[
            ("name", name),
            ("password", password),
            ("client", "open-xchange-mailapp"),
        ])
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.json().await.unwrap(), retry)
}

/// A middleware whose throttle blocks after 2 failures for 0.8 s, doubling up to 3 s.
async fn throttled() -> Harness {
    Harness::start(Opts {
        extra_props: THROTTLE.into(),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn login_throttling_kicks_in_and_recovers() {
    let h = throttled().await;
    for _ in 0..3 {
        assert_eq!(login_raw(&h, "alice", "wrong").await.0["code"], "LGI-0006");
    }
    // Blocked now, even with the right password, and told when to come back.
    let (v, retry) = login_raw(&h, "alice", "pw-alice").await;
    assert_eq!(v["code"], "MOCK-0429", "{v}");
    assert_eq!(v["categories"], "TRY_AGAIN");
    assert!(retry.is_some(), "Retry-After");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (v, _) = login_raw(&h, "alice", "pw-alice").await;
    assert!(v["session"].is_string(), "recovered: {v}");
}

#[tokio::test]
async fn guessing_many_logins_from_one_address_blocks_that_address() {
    let h = throttled().await;
    for name in ["x1", "x2", "x3"] {
        assert_eq!(login_raw(&h, name, "guess").await.0["code"], "LGI-0006");
    }
    let (v, _) = login_raw(&h, "bob", "pw-bob").await;
    assert_eq!(v["code"], "MOCK-0429", "{v}");
}

#[tokio::test]
async fn idle_sessions_expire() {
    let h = Harness::start(Opts {
        extra_props: "mock.session.idle_timeout_s=1\n".into(),
        ..Default::default()
    })
    .await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let caps = |l: &Login| {
        let r = h
            .http
            .get(h.url(&format!(
                "/ajax/capabilities?action=all&session={}",
                l.session
            )))
            .header("cookie", &l.cookie);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert!(caps(&l).await["data"].is_array());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(caps(&l).await["code"], "SES-0203");
}
