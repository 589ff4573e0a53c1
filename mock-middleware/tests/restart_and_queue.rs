//! Durability and back-pressure: subscriptions survive a restart; a full queue answers 503.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn restart_keeps_subscriptions_and_pushes_still_go_out() {
    let mut h = Harness::start(Opts::default()).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    h.subscribe(&l, APNS_TOKEN, "apn").await;
    h.restart_server().await;
    let subs = h.subscriptions().await;
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["token"], APNS_TOKEN);
    assert_eq!(subs[0]["topics"], json!(["ox:mail:new"]));
    h.notify(&new_mail("3@1", 1)).await;
    let p = h.wait_pushes(1, Duration::from_secs(10)).await;
    assert_eq!(p[0]["outcome"], "delivered");
}

#[tokio::test]
async fn full_queue_answers_503_with_retry_after() {
    let opts = Opts {
        extra_props: "mock.queue.capacity=1\nmock.push.concurrency=1\n".into(),
        ..Default::default()
    };
    let h = Harness::start(opts).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    h.subscribe(&l, APNS_TOKEN, "apn").await;
    // The provider stalls: one push in flight, one notification queued, the rest is refused.
    h.script(json!({"provider": "apns", "delay_ms": 1500, "count": 5}))
        .await;
    let mut statuses = Vec::new();
    for uid in 0..4 {
        let r = h.notify(&new_mail("3@1", uid)).await;
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        statuses.push(r.status().as_u16());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].contains(&503), "{statuses:?}");
    let m = h.metrics().await;
    assert!(
        m.contains("mock_notifications_total{result=\"queue_full\"}"),
        "{m}"
    );
}
