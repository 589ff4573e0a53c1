//! The admin listener (issue 11, point 4): `/mock/*` needs the bearer token, `/metrics` is open
//! and shows no tokens or subjects, strangers neither fill the recordings with their headers nor
//! use up injected faults, and a fault's delay is bounded.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn admin_without_token_is_401() {
    let h = Harness::start(Opts::default()).await;
    for path in [
        "/mock/notifications",
        "/mock/pushes",
        "/mock/subscriptions",
        "/mock/registrations",
        "/mock/latency",
    ] {
        let r = h.http.get(h.admin(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"mock-middleware admin\""
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("Bearer"), "{v}");
        let r = h
            .http
            .get(h.admin(path))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = h
            .http
            .get(h.admin(path))
            .header("authorization", format!("bearer {}", h.admin_token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    for (method, path) in [("POST", "/mock/faults"), ("DELETE", "/mock/recordings")] {
        let r = h
            .http
            .request(method.parse().unwrap(), h.admin(path))
            .body(r#"{"status":503}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
}

#[tokio::test]
async fn metrics_stay_open_and_show_no_tokens_or_subjects() {
    let h = Harness::start(Opts::default()).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    h.subscribe(&l, APNS_TOKEN, "apn").await;
    h.notify(&new_mail("3@1", 1)).await;
    h.wait_pushes(1, Duration::from_secs(10)).await;
    let r = h.http.get(h.admin("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m = r.text().await.unwrap();
    assert!(m.contains("mock_pushes_total"), "{m}");
    for secret in [
        APNS_TOKEN,
        &APNS_TOKEN[..16],
        "Hello",
        "Alice Sender",
        &h.admin_token,
    ] {
        assert!(!m.contains(secret), "{secret} in /metrics");
    }
}

#[tokio::test]
async fn unauthenticated_notify_is_recorded_without_headers_and_leaves_faults_alone() {
    let h = Harness::start(Opts::default()).await;
    let r = h.fault(json!({"status": 503, "count": 1})).await;
    assert_eq!(r.status(), 200);
    let junk = "x".repeat(8 * 1024);
    let r = h
        .http
        .put(h.url("/preliminary/http-notify/v1/notify"))
        .header("x-junk", &junk)
        .body(new_mail("3@1", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let rec = h.get_json(h.admin("/mock/notifications")).await;
    assert_eq!(rec[0]["result"], "unauthorized");
    assert_eq!(rec[0]["headers"], json!({}), "{rec}");
    // The fault is still pending for the authenticated sender.
    assert_eq!(h.notify(&new_mail("3@1", 2)).await.status(), 503);
    assert_eq!(h.notify(&new_mail("3@1", 3)).await.status(), 200);
    let rec = h.get_json(h.admin("/mock/notifications")).await;
    assert_eq!(rec[1]["headers"]["authorization"], "<redacted>", "{rec}");
}

#[tokio::test]
async fn fault_delay_is_bounded() {
    let h = Harness::start(Opts::default()).await;
    let r = h.fault(json!({"delay_ms": 3_600_000})).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("delay_ms"), "{v}");
}
