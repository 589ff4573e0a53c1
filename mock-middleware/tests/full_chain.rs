//! End to end with real processes: Dovecot + the ox_push plugin, mock-middleware with IMAP
//! login and permanent listeners, fake APNs / FCM (issue 5).

mod chain;
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

const APNS_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";
const FCM_TOKEN: &str = "fcm-token-android-1";

fn body(r: &Value) -> Value {
    match &r["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    }
}

async fn mobilenotifier(c: &chain::Chain, l: &common::Login, action: &str, token: &str) -> Value {
    c.h.http
        .post(c.h.url(&format!(
            "/appsuite/api/mobilenotifier?action={action}&session={}",
            l.session
        )))
        .header("cookie", &l.cookie)
        .form(&[
            ("token", token),
            ("serviceId", "gcm"),
            ("providerId", "mail"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_chain_subscribe_push_unsubscribe() {
    let c = chain::start("").await;
    // IMAP-backed login: wrong password refused, right one gives alice's fixed ids.
    let bad = c.h.login("alice", "wrong", "open-xchange-mailapp").await;
    assert_eq!(bad["code"], "LGI-0006", "{bad}");
    let ok = c.h.login("alice", "pw", "open-xchange-mailapp").await;
    assert_eq!(
        (ok["user_id"].as_i64(), ok["context_id"].as_i64()),
        (Some(3), Some(1)),
        "{ok}"
    );
    // bob is not in users.yml: ids assigned at first login, stable on the next.
    let b1 = c.h.login("bob", "pw", "open-xchange-mailapp").await;
    let b2 = c.h.login("bob", "pw", "open-xchange-mailapp").await;
    assert_eq!(b1["user_id"], b2["user_id"]);
    assert_eq!(b1["context_id"], b2["context_id"]);
    assert_ne!(
        (b1["user_id"].as_i64(), b1["context_id"].as_i64()),
        (Some(3), Some(1))
    );

    // iPhone (pns, apn) and Android (mobilenotifier, gcm).
    let iphone = c.h.session("alice", "pw", "open-xchange-mailapp").await;
    c.h.subscribe(&iphone, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
    let android = c.h.session("alice", "pw", "open-xchange-mailapp").await;
    assert_eq!(
        mobilenotifier(&c, &android, "subscribe", FCM_TOKEN).await,
        json!({"data": {}})
    );
    let listed = c.h.get_json(c.h.admin("/mock/pushusers")).await;
    assert_eq!(
        listed,
        json!([{"context": 1, "user": 3, "permanent": true}])
    );

    let t0 = c.deliver("alice", "First push");
    let apns = c.wait_fake("apns", 1, Duration::from_secs(1)).await;
    let fcm = c.wait_fake("fcm", 1, Duration::from_secs(1)).await;
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(1), "pushes took {elapsed:?}");
    assert_eq!(apns.len(), 1, "{apns:?}");
    assert_eq!(fcm.len(), 1, "{fcm:?}");
    let a = body(&apns[0]);
    assert_eq!(a["aps"]["alert"], "Bob\nFirst push", "{a}");
    assert_eq!(a["aps"]["badge"], 1, "{a}");
    assert_eq!(apns[0]["token"], APNS_TOKEN);
    let f = body(&fcm[0]);
    assert_eq!(f["message"]["token"], FCM_TOKEN, "{f}");
    assert_eq!(f["message"]["data"]["subject"], "First push", "{f}");

    // One device leaves: METADATA stays; the last one leaves: NIL, and mail sends nothing.
    let v =
        c.h.pns(
            &iphone,
            "unsubscribe",
            json!({"token": APNS_TOKEN, "transport": "apn"}),
        )
        .await;
    assert_eq!(v, json!({"data": {"success": true}}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.wait_metadata("alice", "user=3@1").await;
    assert_eq!(
        mobilenotifier(&c, &android, "unsubscribe", FCM_TOKEN).await,
        json!({"data": {}})
    );
    c.wait_metadata("alice", "").await;
    assert_eq!(c.h.get_json(c.h.admin("/mock/pushusers")).await, json!([]));
    c.deliver("alice", "Nobody listens");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.h.fake_requests("apns").await.len(), 1);
    assert_eq!(c.h.fake_requests("fcm").await.len(), 1);
    let notes = c.h.get_json(c.h.admin("/mock/notifications")).await;
    assert_eq!(
        notes.as_array().unwrap().len(),
        1,
        "Dovecot must not notify: {notes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_token_clears_metadata() {
    let c = chain::start("").await;
    let l = c.h.session("alice", "pw", "open-xchange-mailapp").await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
    c.h.script(
        json!({"provider": "apns", "token": APNS_TOKEN, "status": 410, "reason": "Unregistered"}),
    )
    .await;
    c.deliver("alice", "To a dead phone");
    c.wait_metadata("alice", "").await;
    // The removal is logged with APNs' reason, and the NIL line says why (not "unsubscribe").
    let end = Instant::now() + Duration::from_secs(5);
    let nil = "push registration removed (METADATA NIL): unregistered by APNs (Unregistered)";
    while !chain::logs().text().contains(nil) {
        assert!(
            Instant::now() < end,
            "no {nil:?}:\n{}",
            chain::logs().text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = chain::logs().text();
    assert!(
        log.contains("INFO") && log.contains("dead token removed: APNs answered Unregistered"),
        "{log}"
    );
    assert!(c.h.subscriptions().await.is_empty());
    let regs = c.h.get_json(c.h.admin("/mock/registrations")).await;
    assert_eq!(regs, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reasserts_with_rdb_credentials() {
    let mut c = chain::start(
        "com.openexchange.push.credstorage.enabled=true\ncom.openexchange.push.credstorage.passcrypt=pc-1\ncom.openexchange.push.credstorage.rdb=true\n",
    )
    .await;
    let l = c.h.session("alice", "pw", "open-xchange-mailapp").await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
    // Someone removes it behind the middleware's back; a restart puts it back from the
    // credentials in the database (no live session survives the restart).
    c.unset_metadata("alice").await;
    c.h.restart_server().await;
    c.wait_metadata("alice", "user=3@1").await;
    assert_eq!(c.h.subscriptions().await.len(), 1);
    let t0 = c.deliver("alice", "After restart");
    let apns = c.wait_fake("apns", 1, Duration::from_secs(1)).await;
    assert_eq!(apns.len(), 1, "push after restart, {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_rdb_logs_who_cannot_be_reasserted() {
    let mut c = chain::start(
        "com.openexchange.push.credstorage.enabled=true\ncom.openexchange.push.credstorage.passcrypt=pc-1\n",
    )
    .await;
    let l = c.h.session("alice", "pw", "open-xchange-mailapp").await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
    c.h.restart_server().await;
    let end = Instant::now() + Duration::from_secs(5);
    let want = "cannot assert push registration for user=3, context=1: no stored credentials: com.openexchange.push.credstorage.rdb=false";
    while !chain::logs().text().contains(want) {
        assert!(
            Instant::now() < end,
            "no log line {want:?}:\n{}",
            chain::logs().text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The registration itself survived and is listed.
    let regs = c.h.get_json(c.h.admin("/mock/registrations")).await;
    assert_eq!(
        regs,
        json!([{"context": 1, "user": 3, "client": "open-xchange-mailapp"}])
    );
    assert!(
        !chain::logs().text().contains("pw\""),
        "a password leaked into the log"
    );
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mock-middleware"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cli_pushusers_and_tls_refusal() {
    let c = chain::start("").await;
    std::fs::write(
        c.h.dir.path().join("branding.yml"),
        format!("providers:\n  - id: local\n    name: Local\n    serverUrl: {}\n    logoUrl: https://x.example/l.png\n    ciColor: \"#0a6ebd\"\n", c.h.url("")),
    )
    .unwrap();
    let base = c.h.url("");
    // The device: provider lookup fails without branding (not loaded at start) → use the URL.
    let out = tokio::task::block_in_place(|| {
        bin()
            .args([
                "device",
                "--url",
                &base,
                "--user",
                "alice",
                "--transport",
                "apn",
                "--token",
                APNS_TOKEN,
                "--name",
                "iPhone",
            ])
            .env("DEVICE_PASSWORD", "pw")
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("via http://") && text.contains("/appsuite/api"),
        "{text}"
    );
    assert!(text.contains("(user 3 in context 1)"), "{text}");
    c.wait_metadata("alice", "user=3@1").await;
    // listpushusers / pushusers against the database (admin listener on port 0 is unknown).
    let dir = c.h.dir.path().to_str().unwrap().to_string();
    let l = tokio::task::block_in_place(|| {
        bin()
            .args(["pushusers", "--config-dir", &dir, "-l"])
            .output()
            .unwrap()
    });
    let t = String::from_utf8_lossy(&l.stdout);
    assert!(t.starts_with("Context | User | Client\n"), "{t}");
    assert!(t.contains("1       | 3    | open-xchange-mailapp"), "{t}");
    let r = tokio::task::block_in_place(|| {
        bin()
            .args([
                "pushusers",
                "--config-dir",
                &dir,
                "-r",
                "-c",
                "1",
                "-u",
                "9",
                "-i",
                "open-xchange-mailapp",
            ])
            .output()
            .unwrap()
    });
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "No such push registration for user 9 in context 1 for client 'open-xchange-mailapp'"
    );
    let lp = tokio::task::block_in_place(|| {
        bin()
            .args(["listpushusers", "--config-dir", &dir])
            .output()
            .unwrap()
    });
    assert!(!lp.status.success());
    assert!(
        String::from_utf8_lossy(&lp.stderr).contains("No running mock-middleware at"),
        "{lp:?}"
    );
    // A TLS server whose certificate is not in the web roots is refused.
    let tls_url = format!("https://127.0.0.1:{}", c.h.fakes.apns_addr.port());
    let out = tokio::task::block_in_place(|| {
        bin()
            .args([
                "device", "--url", &tls_url, "--user", "alice", "--token", "ab",
            ])
            .env("DEVICE_PASSWORD", "pw")
            .output()
            .unwrap()
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("TLS certificate is not trusted"), "{err}");
}
