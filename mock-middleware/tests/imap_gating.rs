//! Gating with IMAP-backed login against a real Dovecot: the capability off refuses subscribe
//! with OX's error envelope (and nothing reaches Dovecot); a host disabled in
//! mailapp-config.yml refuses the login even with the right IMAP password.

mod chain;
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};

const CLIENT: &str = "open-xchange-mailapp";

/// OX's error envelope: every field present with its type.
fn assert_envelope(v: &Value, code: &str) {
    assert_eq!(v["code"], code, "{v}");
    assert!(v["error"].is_string(), "{v}");
    assert!(v["error_params"].is_array(), "{v}");
    assert!(v["error_id"].is_string(), "{v}");
    assert!(v["error_desc"].is_string(), "{v}");
    assert_eq!(v["categories"], "PERMISSION_DENIED", "{v}");
    assert!(v["category"].is_number(), "{v}");
    assert!(v.get("data").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_off_refuses_subscribe_and_sets_no_metadata() {
    // chain::start turns the capability on; a later line in the same file wins.
    let c = chain::start("com.openexchange.capability.mobile_mail_app=false\n").await;
    // Login itself works (IMAP), the capability list does not offer the mail app.
    let l = c.h.session("alice", "pw", CLIENT).await;
    let caps: Value =
        c.h.http
            .get(c.h.url(&format!(
                "/ajax/capabilities?action=all&session={}",
                l.session
            )))
            .header("cookie", &l.cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let ids: Vec<&str> = caps["data"]
        .as_array()
        .expect("capabilities")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(ids.contains(&"webmail"), "{caps}");
    assert!(!ids.contains(&"mobile_mail_app"), "{caps}");
    let v =
        c.h.pns(
            &l,
            "subscribe",
            json!({"token": "aa11", "transport": "apn", "topics": ["ox:mail:new"]}),
        )
        .await;
    assert_envelope(&v, "MOCK-0002");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("com.openexchange.capability.mobile_mail_app"),
        "{v}"
    );
    let r =
        c.h.http
            .post(c.h.url(&format!(
                "/appsuite/api/mobilenotifier?action=subscribe&session={}",
                l.session
            )))
            .header("cookie", &l.cookie)
            .form(&[
                ("token", "bb22"),
                ("serviceId", "gcm"),
                ("providerId", "mail"),
            ])
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
    assert_envelope(&r, "MOCK-0002");
    // Nothing stored, nothing registered, Dovecot untouched.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(c.h.subscriptions().await.is_empty());
    assert_eq!(
        c.h.get_json(c.h.admin("/mock/registrations")).await,
        json!([])
    );
    assert_eq!(
        tokio::task::block_in_place(|| c.dc.get_metadata("alice")),
        ""
    );
}

async fn login_on_host(c: &chain::Chain, host: &str, pw: &str) -> Value {
    c.h.http
        .post(c.h.url("/ajax/login?action=login"))
        .header("host", host)
        .form(&[("name", "alice"), ("password", pw), ("client", CLIENT)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_disabled_in_mailapp_config_refuses_imap_login() {
    let mut c = chain::start("").await;
    std::fs::write(
        c.h.dir.path().join("mailapp-config.yml"),
        "default:\n  host: all\n  mail_app_enabled: true\nintranet:\n  host: mail.intranet.example\n  mail_app_enabled: false\n",
    )
    .unwrap();
    c.h.restart_server().await;
    let v = login_on_host(&c, "mail.intranet.example", "pw").await;
    assert_envelope(&v, "MOCK-0001");
    assert!(v["error"].as_str().unwrap().contains("\"intranet\""), "{v}");
    assert!(v.get("session").is_none(), "{v}");
    // The same credentials on another host log in through IMAP with alice's fixed ids.
    let ok = login_on_host(&c, "mail.example.com", "pw").await;
    assert!(ok["session"].is_string(), "{ok}");
    assert_eq!(
        (ok["user_id"].as_i64(), ok["context_id"].as_i64()),
        (Some(3), Some(1))
    );
    let bad = login_on_host(&c, "mail.example.com", "wrong").await;
    assert_eq!(bad["code"], "LGI-0006", "{bad}");
}
