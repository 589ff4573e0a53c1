//! Who may touch what, one push per device, and clear errors for new clients (issue 11,
//! points 2, 3 and 5), over real HTTP against fake providers.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
/// bob (4@1) gets the capability server-wide, so alice (3@1) and bob share context 1.
const SAME_CONTEXT: &str = "com.openexchange.capability.mobile_mail_app=true\n";
const TOKEN_A: &str = "aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111";
const TOKEN_B: &str = "bbbb2222bbbb2222bbbb2222bbbb2222bbbb2222bbbb2222bbbb2222bbbb2222";

async fn mailapp_session(h: &Harness, who: &str) -> Login {
    h.session(who, &format!("pw-{who}"), "open-xchange-mailapp")
        .await
}

#[tokio::test]
async fn alias_double_subscribe_through_both_apis_gives_one_push() {
    let h = Harness::start(Opts::default()).await;
    let l = mailapp_session(&h, "alice").await;
    h.subscribe(&l, APNS_TOKEN, "apn").await;
    h.subscribe(&l, APNS_TOKEN, "apns").await;
    h.subscribe(&l, APNS_TOKEN, "apns_http2").await;
    let q = format!("action=subscribe&token={APNS_TOKEN}&serviceId=apn&providerId=mail");
    assert_eq!(h.mobilenotifier(&l, &q).await, json!({"data": {}}));
    let subs = h.subscriptions().await;
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["transport"], "apn");
    h.notify(&new_mail("3@1", 1)).await;
    let p = h.wait_pushes(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.fake_requests("apns").await.len(), 1, "{p:?}");
}

#[tokio::test]
async fn fcm_transport_is_an_alias_of_gcm_and_unknown_ones_name_the_accepted_values() {
    let h = Harness::start(Opts {
        fcm: true,
        ..Default::default()
    })
    .await;
    let l = mailapp_session(&h, "alice").await;
    h.subscribe(&l, "fcm-token-1", "fcm").await;
    h.subscribe(&l, "fcm-token-1", "gcm").await;
    let subs = h.subscriptions().await;
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["transport"], "gcm");
    let v = h
        .pns(
            &l,
            "subscribe",
            json!({"token": "x", "transport": "wns", "topics": ["ox:mail:new"]}),
        )
        .await;
    assert_eq!(v["code"], "SVL-0010");
    let msg = v["error"].as_str().unwrap();
    for name in ["apn", "apns", "gcm", "fcm"] {
        assert!(msg.contains(name), "{msg}");
    }
    h.notify(&new_mail("3@1", 1)).await;
    assert_eq!(h.wait_pushes(1, WAIT).await[0]["outcome"], "delivered");
}

#[tokio::test]
async fn session_without_client_parameter_is_refused_at_subscribe_naming_it() {
    let h = Harness::start(Opts::default()).await;
    let l = h
        .session_form(&[("name", "alice"), ("password", "pw-alice")])
        .await;
    let v = h
        .pns(
            &l,
            "subscribe",
            json!({"token": APNS_TOKEN, "transport": "apn", "topics": ["ox:mail:new"]}),
        )
        .await;
    assert_eq!(v["code"], "MOCK-0004", "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("\"client\"") && msg.contains("client=open-xchange-mailapp"),
        "{msg}"
    );
}

#[tokio::test]
async fn wrong_methods_get_405_naming_the_documented_one() {
    let h = Harness::start(Opts::default()).await;
    for (method, path, allow) in [
        ("GET", "/ajax/pns?action=subscribe", "PUT"),
        ("POST", "/appsuite/api/pns?action=subscribe", "PUT"),
        (
            "DELETE",
            "/ajax/mobilenotifier?action=subscribe",
            "GET, POST, PUT",
        ),
        ("PUT", "/ajax/capabilities?action=all", "GET"),
    ] {
        let r = h
            .http
            .request(method.parse().unwrap(), h.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(method) && msg.contains(allow), "{msg}");
    }
}

#[tokio::test]
async fn user_a_cannot_update_unsubscribe_or_move_user_b_token() {
    let h = Harness::start(Opts {
        extra_props: SAME_CONTEXT.into(),
        ..Default::default()
    })
    .await;
    let alice = mailapp_session(&h, "alice").await; // B, the victim
    let bob = mailapp_session(&h, "bob").await; // A, the attacker, same context
    h.subscribe(&alice, TOKEN_B, "apn").await;
    h.subscribe(&bob, TOKEN_A, "apn").await;
    let owner_of = |subs: &[Value], token: &str| {
        subs.iter()
            .filter(|s| s["token"] == token)
            .map(|s| s["user_id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    // Update B's token to A's: B keeps its token, A's stays A's.
    let q = format!("action=updateToken&token={TOKEN_B}&newToken={TOKEN_A}&serviceId=apn");
    assert_eq!(h.mobilenotifier(&bob, &q).await, json!({"data": {}}));
    // Move B's token onto A's subscription: refused.
    let q = format!("action=updateToken&token={TOKEN_A}&newToken={TOKEN_B}&serviceId=apn");
    let v = h.mobilenotifier(&bob, &q).await;
    assert_eq!(v["code"], "SVL-0010", "{v}");
    assert!(v["error"].as_str().unwrap().contains("another user"), "{v}");
    // Unsubscribe B's token: only A's own subscriptions are touched (none with that token).
    let q = format!("action=unsubscribe&token={TOKEN_B}&serviceId=apn&providerId=mail");
    assert_eq!(h.mobilenotifier(&bob, &q).await, json!({"data": {}}));
    let v = h
        .pns(
            &bob,
            "unsubscribe",
            json!({"token": TOKEN_B, "transport": "apn"}),
        )
        .await;
    assert_eq!(v, json!({"data": {"success": true}}));
    let subs = h.subscriptions().await;
    assert_eq!(owner_of(&subs, TOKEN_B), [3], "{subs:?}");
    assert_eq!(owner_of(&subs, TOKEN_A), [4], "{subs:?}");
    // B's mail still goes to B's device only.
    h.notify(&new_mail("3@1", 1)).await;
    h.wait_pushes(1, WAIT).await;
    let sent = h.fake_requests("apns").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["token"], TOKEN_B);
    // A fresh subscribe from the device itself (the new owner) does re-bind it.
    h.subscribe(&bob, TOKEN_B, "apn").await;
    assert_eq!(owner_of(&h.subscriptions().await, TOKEN_B), [4]);
}
