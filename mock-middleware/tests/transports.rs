//! Transport tests against the fake providers over real TLS and HTTP/2.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn with_device(opts: Opts, token: &str, transport: &str) -> Harness {
    let h = Harness::start(opts).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    h.subscribe(&l, token, transport).await;
    h
}

/// FCM v1 on, APNs off, alice subscribed with `fcm-token-1` on `gcm`.
async fn with_fcm_device() -> Harness {
    let opts = Opts {
        fcm: true,
        apns: false,
        ..Default::default()
    };
    with_device(opts, "fcm-token-1", "gcm").await
}

#[tokio::test]
async fn apns_jwt_push_arrives_with_ox_payload_headers_and_valid_jwt() {
    let h = with_device(Opts::default(), APNS_TOKEN, "apn").await;
    assert_eq!(h.notify(&new_mail("3@1", 4711)).await.status(), 200);
    let pushes = h.wait_pushes(1, WAIT).await;
    assert_eq!(pushes[0]["outcome"], "delivered", "{pushes:?}");
    assert_eq!(pushes[0]["status"], 200);
    let got = h.fake_requests("apns").await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["path"], format!("/3/device/{APNS_TOKEN}"));
    assert_eq!(r["headers"]["apns-topic"], TOPIC);
    assert_eq!(r["headers"]["apns-push-type"], "alert");
    assert_eq!(r["headers"]["apns-priority"], "10");
    assert!(
        r["headers"]["apns-expiration"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1_700_000_000
    );
    assert_eq!(r["headers"]["apns-collapse-id"], "default0/INBOX:4711");
    assert_eq!(r["jwt"]["iss"], TEAM_ID);
    assert_eq!(
        r["body"],
        json!({"aps": {"alert": "Alice Sender\nHello", "sound": "beep.wav", "badge": 7}, "cid": "default0/INBOX:4711"})
    );
    // A second push reuses the same provider token on the same HTTP/2 connection.
    h.notify(&new_mail("3@1", 4712)).await;
    h.wait_pushes(2, WAIT).await;
    let got = h.fake_requests("apns").await;
    assert_eq!(got[1]["status"], 200, "{:?}", got[1]);
    assert_eq!(got[0]["conn"], got[1]["conn"], "connection reused");
    assert_eq!(got[0]["jwt"]["iat"], got[1]["jwt"]["iat"], "JWT reused");
    let m = h.metrics().await;
    assert!(
        m.contains("mock_pushes_total{transport=\"apns\",outcome=\"delivered\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("mock_push_latency_seconds_count{transport=\"apns\"} 2"),
        "{m}"
    );
}

/// APNs on with extra properties, alice subscribed with `APNS_TOKEN` on `apn`.
async fn apns_device_with(extra_props: &str) -> Harness {
    let opts = Opts {
        extra_props: extra_props.into(),
        ..Default::default()
    };
    with_device(opts, APNS_TOKEN, "apn").await
}

/// One new-mail notification for alice (user 3@1); the pushes recorded for it.
async fn notify_once(h: &Harness) -> Vec<Value> {
    h.notify(&new_mail("3@1", 1)).await;
    h.wait_pushes(1, WAIT).await
}

/// The provider answers the next push with `status` and `reason`: the push is recorded
/// as `token_removed` with that reason, and the subscription is gone.
async fn answer_removes_the_subscription(h: Harness, provider: &str, status: u16, reason: &str) {
    h.script(json!({"provider": provider, "status": status, "reason": reason}))
        .await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "token_removed");
    assert_eq!(p[0]["reason"], reason);
    assert!(h.subscriptions().await.is_empty());
}

#[tokio::test]
async fn apns_410_unregistered_removes_the_subscription() {
    let h = with_device(Opts::default(), APNS_TOKEN, "apn").await;
    answer_removes_the_subscription(h, "apns", 410, "Unregistered").await;
}

#[tokio::test]
async fn apns_token_that_is_not_hex_never_reaches_a_url_and_is_removed() {
    let h = with_device(Opts::default(), "not-a-hex-token/../../x", "apn").await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "token_removed", "{p:?}");
    assert!(p[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("BadDeviceToken"));
    assert!(h.fake_requests("apns").await.is_empty(), "nothing sent");
    assert!(h.subscriptions().await.is_empty());
}

#[tokio::test]
async fn apns_429_is_retried_after_retry_after() {
    let h = with_device(Opts::default(), APNS_TOKEN, "apn").await;
    h.script(
        json!({"provider": "apns", "status": 429, "reason": "TooManyRequests", "retry_after": 1}),
    )
    .await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "delivered", "{p:?}");
    assert_eq!(p[0]["attempts"], 2);
    let got = h.fake_requests("apns").await;
    assert_eq!(got.len(), 2);
    let gap = p[0]["latency_ms"].as_f64().unwrap();
    assert!(
        gap >= 1000.0,
        "second attempt waited for Retry-After: {gap} ms"
    );
    assert_eq!(h.subscriptions().await.len(), 1);
}

#[tokio::test]
async fn apns_5xx_retries_are_bounded_and_keep_the_token() {
    let h = apns_device_with("mock.push.retry.max_attempts=3\n").await;
    h.script(
        json!({"provider": "apns", "status": 500, "reason": "InternalServerError", "count": 10}),
    )
    .await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "retries_exhausted");
    assert_eq!(p[0]["attempts"], 3);
    assert_eq!(h.fake_requests("apns").await.len(), 3);
    assert_eq!(h.subscriptions().await.len(), 1);
}

#[tokio::test]
async fn apns_certificate_auth_uses_the_pkcs12_client_identity() {
    let h = with_device(
        Opts {
            apns_certificate: true,
            ..Default::default()
        },
        APNS_TOKEN,
        "apn",
    )
    .await;
    h.notify(&new_mail("3@1", 9)).await;
    let p = h.wait_pushes(1, WAIT).await;
    assert_eq!(p[0]["outcome"], "delivered", "{p:?}");
    let got = h.fake_requests("apns").await;
    assert!(
        got[0]["client_cert"]
            .as_str()
            .unwrap()
            .contains("apns-client"),
        "{:?}",
        got[0]
    );
    assert!(got[0].get("jwt").is_none());
}

#[tokio::test]
async fn apns_unknown_key_is_a_credential_error_that_keeps_the_token() {
    // The fake knows KEY_ID only; sign with another key id.
    let h = apns_device_with("com.openxchange.mobilepush.events.apn.ios.keyid=OTHERKEY12\n").await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "credential_error");
    assert_eq!(p[0]["reason"], "InvalidProviderToken");
    assert_eq!(h.subscriptions().await.len(), 1);
}

#[tokio::test]
async fn oversized_subject_is_truncated_and_accepted_by_the_fake() {
    let h = with_device(Opts::default(), APNS_TOKEN, "apn").await;
    let body = json!({"user": "3@1", "event": "messageNew", "folder": "INBOX", "imap-uid": 1, "subject": "ä".repeat(5000), "from": "x@y.z"});
    h.notify(&body.to_string()).await;
    let p = h.wait_pushes(1, WAIT).await;
    assert_eq!(p[0]["outcome"], "delivered", "{p:?}");
    let alert = h.fake_requests("apns").await[0]["body"]["aps"]["alert"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(alert.ends_with('…'), "{alert}");
    assert!(alert.len() < 4096);
}

#[tokio::test]
async fn fcm_v1_fetches_one_oauth_token_and_sends_string_data() {
    let h = with_fcm_device().await;
    h.notify(&new_mail("3@1", 77)).await;
    h.notify(&new_mail("3@1", 78)).await;
    let p = h.wait_pushes(2, WAIT).await;
    assert!(
        p.iter()
            .all(|x| x["outcome"] == "delivered" && x["provider"] == "fcm"),
        "{p:?}"
    );
    let sent = h.fake_requests("fcm").await;
    assert_eq!(sent.len(), 2);
    let m = &sent[0]["body"]["message"];
    assert_eq!(m["token"], "fcm-token-1");
    assert_eq!(m["android"]["priority"], "HIGH");
    assert!(m["data"]
        .as_object()
        .unwrap()
        .values()
        .all(Value::is_string));
    assert_eq!(m["data"]["sender"], "Alice Sender");
    assert_eq!(m["data"]["unread"], "7");
    assert!(sent[0]["path"]
        .as_str()
        .unwrap()
        .starts_with("/v1/projects/mock-test/messages:send"));
    let stats = h.get_json(h.fake_admin("/fake/stats")).await;
    assert_eq!(stats["oauth_tokens_issued"], 1, "token cached");
}

#[tokio::test]
async fn fcm_expired_access_token_is_refreshed() {
    let opts = Opts {
        fcm: true,
        apns: false,
        token_lifetime_s: 1,
        ..Default::default()
    };
    let h = with_device(opts, "fcm-token-1", "gcm").await;
    h.notify(&new_mail("3@1", 1)).await;
    h.wait_pushes(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.notify(&new_mail("3@1", 2)).await;
    let p = h.wait_pushes(2, WAIT).await;
    assert!(p.iter().all(|x| x["outcome"] == "delivered"), "{p:?}");
    assert_eq!(
        h.get_json(h.fake_admin("/fake/stats")).await["oauth_tokens_issued"],
        2
    );
}

#[tokio::test]
async fn fcm_dead_tokens_remove_and_quota_is_retried() {
    let h = with_fcm_device().await;
    h.script(
        json!({"provider": "fcm", "status": 429, "reason": "QUOTA_EXCEEDED", "retry_after": 1}),
    )
    .await;
    let p = notify_once(&h).await;
    assert_eq!(
        (p[0]["outcome"].clone(), p[0]["attempts"].clone()),
        (json!("delivered"), json!(2)),
        "{p:?}"
    );
    h.script(json!({"provider": "fcm", "status": 400, "reason": "INVALID_ARGUMENT", "token_field": true})).await;
    h.notify(&new_mail("3@1", 2)).await;
    let p = h.wait_pushes(2, WAIT).await;
    assert_eq!(p[1]["outcome"], "token_removed", "{p:?}");
    assert!(h.subscriptions().await.is_empty());
}

#[tokio::test]
async fn fcm_unregistered_removes_the_subscription() {
    answer_removes_the_subscription(with_fcm_device().await, "fcm", 404, "UNREGISTERED").await;
}

#[tokio::test]
async fn legacy_gcm_canonical_id_replaces_and_not_registered_removes() {
    let h = with_device(
        Opts {
            gcm_key: true,
            apns: false,
            ..Default::default()
        },
        "old-token",
        "gcm",
    )
    .await;
    h.script(json!({"provider": "gcm", "canonical": "new-token"}))
        .await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "token_replaced", "{p:?}");
    let subs = h.subscriptions().await;
    assert_eq!(subs[0]["token"], "new-token");
    let sent = h.fake_requests("gcm").await;
    assert_eq!(sent[0]["body"]["registration_ids"], json!(["old-token"]));
    h.script(json!({"provider": "gcm", "reason": "NotRegistered"}))
        .await;
    h.notify(&new_mail("3@1", 2)).await;
    let p = h.wait_pushes(2, WAIT).await;
    assert_eq!(p[1]["outcome"], "token_removed", "{p:?}");
    assert_eq!(
        h.fake_requests("gcm").await[1]["body"]["registration_ids"],
        json!(["new-token"])
    );
    assert!(h.subscriptions().await.is_empty());
}

#[tokio::test]
async fn disabled_transport_is_recorded_not_sent() {
    let h = with_device(Opts::default(), "some-gcm-token", "gcm").await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "transport_disabled");
    assert!(h.fake_requests("gcm").await.is_empty());
}

#[tokio::test]
async fn apns_timeout_is_retried_on_a_fresh_attempt() {
    let h = apns_device_with("mock.push.timeout_ms=400\n").await;
    // The first request stalls past the client timeout; the retry is answered at once.
    h.script(json!({"provider": "apns", "delay_ms": 1500}))
        .await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "delivered", "{p:?}");
    assert_eq!(p[0]["attempts"], 2);
    let first = p[0]["history"][0]["reason"].as_str().unwrap();
    assert!(first.starts_with("transport:"), "{first}");
    assert_eq!(h.subscriptions().await.len(), 1);
}

#[tokio::test]
async fn fcm_unavailable_is_retried_and_sender_id_mismatch_removes() {
    let h = with_fcm_device().await;
    h.script(json!({"provider": "fcm", "status": 503, "reason": "UNAVAILABLE"}))
        .await;
    let p = notify_once(&h).await;
    assert_eq!(
        (p[0]["outcome"].clone(), p[0]["attempts"].clone()),
        (json!("delivered"), json!(2)),
        "{p:?}"
    );
    h.script(json!({"provider": "fcm", "status": 403, "reason": "SENDER_ID_MISMATCH"}))
        .await;
    h.notify(&new_mail("3@1", 2)).await;
    let p = h.wait_pushes(2, WAIT).await;
    assert_eq!(p[1]["outcome"], "token_removed", "{p:?}");
    assert!(h.subscriptions().await.is_empty());
}

#[tokio::test]
async fn apns_expired_provider_token_is_refreshed_once_and_resent() {
    let h = with_device(Opts::default(), APNS_TOKEN, "apn").await;
    h.script(json!({"provider": "apns", "status": 403, "reason": "ExpiredProviderToken"}))
        .await;
    let p = notify_once(&h).await;
    assert_eq!(p[0]["outcome"], "delivered", "{p:?}");
    let got = h.fake_requests("apns").await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0]["status"].clone(), got[0]["reason"].clone()),
        (json!(403), json!("ExpiredProviderToken"))
    );
    assert_eq!(
        got[1]["status"], 200,
        "the resend with a fresh JWT is accepted: {:?}",
        got[1]
    );
}
