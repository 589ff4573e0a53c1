//! Gating: mailapp-config.yml host blocks, mobile_mail_app per user/context, allowedClients.

mod common;

use common::*;
use serde_json::{json, Value};

const MAILAPP_YML: &str = "default:\n  host: all\n  mail_app_enabled: true\nintranet:\n  host: mail.intranet.example\n  mail_app_enabled: false\n";

async fn login_on_host(h: &Harness, host: &str, client: &str) -> Value {
    h.http
        .post(h.url("/ajax/login?action=login"))
        .header("host", host)
        .form(&[
            ("name", "alice"),
            ("password", "pw-alice"),
            ("client", client),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn host_block_refuses_mail_app_login_and_names_the_block() {
    let h = Harness::start(Opts {
        mailapp_yml: Some(MAILAPP_YML.into()),
        ..Default::default()
    })
    .await;
    let v = login_on_host(&h, "mail.intranet.example:8009", "open-xchange-mailapp").await;
    assert_eq!(v["code"], "MOCK-0001");
    assert_eq!(v["categories"], "PERMISSION_DENIED");
    assert!(v["error"].as_str().unwrap().contains("\"intranet\""), "{v}");
    let v = login_on_host(
        &h,
        "mail.intranet.example",
        "open-xchange-mobile-api-facade-ios",
    )
    .await;
    assert_eq!(v["code"], "MOCK-0001");
    // Other clients on that host, and the mail app on other hosts, log in.
    assert!(
        login_on_host(&h, "mail.intranet.example", "open-xchange-appsuite").await["session"]
            .is_string()
    );
    assert!(
        login_on_host(&h, "mail.example.com", "open-xchange-mailapp").await["session"].is_string()
    );
}

#[tokio::test]
async fn capability_cascade_decides_who_may_subscribe() {
    // alice: user true; bob: nothing (server default false); carol: context 2 true.
    let h = Harness::start(Opts::default()).await;
    let bob = h.session("bob", "pw-bob", "open-xchange-mailapp").await;
    let v = h
        .pns(
            &bob,
            "subscribe",
            json!({"token": "aa", "transport": "apn", "topics": ["ox:mail:new"]}),
        )
        .await;
    assert_eq!(v["code"], "MOCK-0002", "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("com.openexchange.capability.mobile_mail_app"));
    let carol = h.session("carol", "pw-carol", "open-xchange-mailapp").await;
    h.subscribe(&carol, "bb", "apn").await;
    let alice = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    h.subscribe(&alice, "cc", "apn").await;
    assert_eq!(h.subscriptions().await.len(), 2);
}

#[tokio::test]
async fn server_wide_capability_and_user_override_to_false() {
    let users = "users:\n  - login: alice\n    password: pw-alice\n    userId: 3\n    contextId: 1\n    mobile_mail_app: false\n  - login: bob\n    password: pw-bob\n    userId: 4\n    contextId: 1\n";
    let opts = Opts {
        users_yml: users.into(),
        extra_props: "com.openexchange.capability.mobile_mail_app=true\n".into(),
        ..Default::default()
    };
    let h = Harness::start(opts).await;
    let bob = h.session("bob", "pw-bob", "open-xchange-mailapp").await;
    h.subscribe(&bob, "aa", "apn").await;
    let alice = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let v = h
        .pns(
            &alice,
            "subscribe",
            json!({"token": "bb", "transport": "apn", "topics": ["*"]}),
        )
        .await;
    assert_eq!(v["code"], "MOCK-0002");
}

#[tokio::test]
async fn allowed_clients_refuse_other_clients_at_subscribe_and_at_send() {
    let opts = Opts {
        extra_props: "com.openexchange.push.allowedClients=\"open-xchange-mobile-api-facade*\"\n"
            .into(),
        ..Default::default()
    };
    let h = Harness::start(opts).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let v = h
        .pns(
            &l,
            "subscribe",
            json!({"token": "aa", "transport": "apn", "topics": ["ox:mail:new"]}),
        )
        .await;
    assert_eq!(v["code"], "MOCK-0003", "{v}");
    assert!(v["error"].as_str().unwrap().contains("allowedClients"));
    let f = h
        .session("alice", "pw-alice", "open-xchange-mobile-api-facade-ios")
        .await;
    h.subscribe(&f, APNS_TOKEN, "apn").await;
    h.notify(&new_mail("3@1", 5)).await;
    let p = h.wait_pushes(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(p[0]["outcome"], "delivered", "{p:?}");
    let body = &h.fake_requests("apns").await[0]["body"];
    assert_eq!(body["cid"], "default0/INBOX/5", "facade cid format");
    assert_eq!(body["aps"]["sound"], "default");
}

#[tokio::test]
async fn subscription_of_an_allowed_client_without_generator_is_recorded() {
    let opts = Opts {
        extra_props: "com.openexchange.push.allowedClients=\n".into(),
        ..Default::default()
    };
    let h = Harness::start(opts).await;
    let l = h.session("alice", "pw-alice", "USM-EAS").await;
    h.subscribe(&l, APNS_TOKEN, "apn").await;
    h.notify(&new_mail("3@1", 5)).await;
    let p = h.wait_pushes(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(p[0]["outcome"], "no_generator");
    assert!(h.fake_requests("apns").await.is_empty());
}
