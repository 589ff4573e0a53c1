//! HTTP contract of the public and admin listeners: every endpoint and error.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const NOTIFY: &str = "/preliminary/http-notify/v1/notify";

#[tokio::test]
async fn notify_without_or_with_wrong_credentials_is_401_with_ox_realm() {
    let h = Harness::start(Opts::default()).await;
    let r = h
        .http
        .put(h.url(NOTIFY))
        .body(new_mail("3@1", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"OX REST\", encoding=\"UTF-8\""
    );
    let r = h
        .http
        .put(h.url(NOTIFY))
        .basic_auth(REST_LOGIN, Some("wrong"))
        .body(new_mail("3@1", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("Basic"));
}

#[tokio::test]
async fn notify_message_new_answers_success_and_records_event_with_redacted_auth() {
    let h = Harness::start(Opts::default()).await;
    let r = h.notify(&new_mail("3@1", 42)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    let rec = h.get_json(h.admin("/mock/notifications")).await;
    let n = &rec[0];
    assert_eq!(n["result"], "no_subscription");
    assert_eq!(n["headers"]["authorization"], "<redacted>");
    assert_eq!(n["event"]["com.openexchange.push.ids"], "42");
    assert_eq!(n["event"]["com.openexchange.push.folder"], "default0/INBOX");
    assert_eq!(n["event"]["com.openexchange.push.context"], 1);
    assert_eq!(n["event"]["pns"]["unread"], 7, "unseen read as the count");
    assert_eq!(n["event"]["pns"]["displayname"], "Alice Sender");
}

#[tokio::test]
async fn strict_ox_ignores_unseen_and_unread_wins() {
    let h = Harness::start(Opts {
        extra_props: "mock.strict_ox=true\n".into(),
        ..Default::default()
    })
    .await;
    h.notify(&new_mail("3@1", 1)).await;
    h.notify(r#"{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uid":2,"unread":5,"unseen":9}"#).await;
    let rec = h.get_json(h.admin("/mock/notifications")).await;
    assert_eq!(rec[0]["event"]["pns"]["unread"], Value::Null);
    assert_eq!(rec[1]["event"]["pns"]["unread"], 5);
}

#[tokio::test]
async fn notify_errors_have_ox_status_and_a_json_reason() {
    let h = Harness::start(Opts::default()).await;
    let cases: &[(&str, u16, &str)] = &[
        (
            r#"{"user":"3@1","event":"messageNew","imap-uid":1}"#,
            500,
            "folder",
        ),
        (
            r#"{"user":"3@1","event":"messageNew","folder":"INBOX"}"#,
            500,
            "imap-uid",
        ),
        ("", 500, "SVL-0023"),
        ("{not json", 400, "not valid JSON"),
        ("[1,2]", 500, "JSON object"),
    ];
    for (body, status, needle) in cases {
        let r = h.notify(body).await;
        assert_eq!(r.status().as_u16(), *status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
}

#[tokio::test]
async fn other_events_and_unparsable_users_are_accepted_and_recorded() {
    let h = Harness::start(Opts::default()).await;
    for body in [
        r#"{"user":"3@1","event":"FlagsSet","folder":"INBOX","imap-uid":1}"#,
        r#"{"user":"alice","event":"messageNew","folder":"INBOX","imap-uid":1}"#,
        r#"{"user":"@1","event":"messageNew","folder":"INBOX","imap-uid":1}"#,
    ] {
        let r = h.notify(body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    }
    let rec = h.get_json(h.admin("/mock/notifications")).await;
    let results: Vec<_> = rec
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results, ["ignored_event", "ignored_user", "ignored_user"]);
}

#[tokio::test]
async fn oversized_body_is_413_and_wrong_method_is_405() {
    let h = Harness::start(Opts::default()).await;
    let big = format!(
        r#"{{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uid":1,"snippet":"{}"}}"#,
        "x".repeat(70_000)
    );
    let r = h.notify(&big).await;
    assert_eq!(r.status(), 413);
    for m in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let r = h
            .http
            .request(m.clone(), h.url(NOTIFY))
            .basic_auth(REST_LOGIN, Some(REST_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{m}");
        assert_eq!(r.headers()["allow"], "PUT");
    }
}

#[tokio::test]
async fn faults_answer_the_next_count_requests_then_stop() {
    let h = Harness::start(Opts::default()).await;
    let r = h
        .fault(json!({"status": 503, "count": 2, "delay_ms": 150}))
        .await;
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let t = Instant::now();
        let r = h.notify(&new_mail("3@1", 1)).await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        assert!(t.elapsed() >= Duration::from_millis(150));
    }
    assert_eq!(h.notify(&new_mail("3@1", 1)).await.status(), 200);
    let bad = h.fault(json!({"status": 42})).await;
    assert_eq!(bad.status(), 400);
    let bad = h
        .admin_http
        .post(h.admin("/mock/faults"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn recordings_are_cleared_and_metrics_are_exposed() {
    let h = Harness::start(Opts::default()).await;
    h.notify(&new_mail("3@1", 1)).await;
    h.notify("{").await;
    let m = h.metrics().await;
    assert!(
        m.contains("mock_notifications_total{result=\"no_subscription\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("mock_notifications_total{result=\"malformed\"} 1"),
        "{m}"
    );
    assert!(m.contains("mock_queue_depth"), "{m}");
    assert!(m.contains("mock_notify_duration_seconds_bucket"), "{m}");
    let r = h
        .admin_http
        .delete(h.admin("/mock/recordings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.get_json(h.admin("/mock/notifications")).await, json!([]));
    assert_eq!(h.get_json(h.admin("/mock/pushes")).await, json!([]));
}

#[tokio::test]
async fn login_answers_ox_fields_and_cookies_and_errors() {
    let h = Harness::start(Opts::default()).await;
    let v = h.login("alice", "pw-alice", "open-xchange-mailapp").await;
    assert_eq!(v["user"], "alice");
    assert_eq!(v["user_id"], 3);
    assert_eq!(v["context_id"], 1);
    assert!(v["session"].as_str().unwrap().len() >= 32);
    assert!(v.get("data").is_none(), "login is not wrapped in data");
    let v = h.login("alice", "nope", "open-xchange-mailapp").await;
    assert_eq!(v["code"], "LGI-0006");
    assert_eq!(v["categories"], "USER_INPUT");
    let v = h
        .post_form("/ajax/login?action=login", &[("password", "x")])
        .await;
    assert_eq!(v["code"], "SVL-0002");
    assert!(v["error"].as_str().unwrap().contains("name"));
    let r = h
        .http
        .get(h.url("/ajax/login?action=login&name=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = h
        .http
        .post(h.url("/ajax/login?action=frobnicate"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], "SVL-0021");
    let r = h
        .http
        .post(h.url("/appsuite/api/login?action=login"))
        .form(&[("name", "alice"), ("password", "pw-alice")])
        .send()
        .await
        .unwrap();
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("open-xchange-secret-")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("open-xchange-session-")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("JSESSIONID=")),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn session_errors_and_logout() {
    let h = Harness::start(Opts::default()).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let caps = |q: String, cookie: Option<String>| {
        let mut r = h.http.get(h.url(&format!("/ajax/capabilities?{q}")));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(caps("action=all".into(), None).await["code"], "SVL-0002");
    let v = caps("action=all&session=doesnotexist".into(), None).await;
    assert_eq!(v["code"], "SES-0203");
    assert_eq!(v["categories"], "TRY_AGAIN");
    assert_eq!(v["category"], 4);
    assert_eq!(v["error_params"], json!(["doesnotexist"]));
    let v = caps(format!("action=all&session={}", l.session), None).await;
    assert_eq!(v["code"], "SVL-0002");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("Missing cookie: open-xchange-secret-"));
    let v = caps(
        format!("action=all&session={}", l.session),
        Some(l.cookie.clone()),
    )
    .await;
    let ids: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"mobile_mail_app".to_string()), "{ids:?}");
    assert_eq!(
        caps(
            format!("action=list&session={}", l.session),
            Some(l.cookie.clone())
        )
        .await["code"],
        "SVL-0021"
    );
    let r = h
        .http
        .get(h.url(&format!("/ajax/login?action=logout&session={}", l.session)))
        .header("cookie", &l.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        caps(format!("action=all&session={}", l.session), Some(l.cookie)).await["code"],
        "SES-0203"
    );
}

#[tokio::test]
async fn appsuite_api_root_and_unknown_paths_answer_grizzly_404() {
    let h = Harness::start(Opts::default()).await;
    for p in ["/appsuite/api/", "/nope"] {
        let r = h.http.get(h.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = r.text().await.unwrap();
        assert!(
            body.contains(&format!(
                "Resource identified by path '{p}', does not exist."
            )),
            "{body}"
        );
    }
}

#[tokio::test]
async fn pns_validates_like_ox() {
    let h = Harness::start(Opts::default()).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let cases = [
        (
            json!({"transport": "apn", "topics": ["ox:mail:new"]}),
            "SVL-0002",
            "token",
        ),
        (
            json!({"token": "ab", "topics": ["ox:mail:new"]}),
            "SVL-0002",
            "transport",
        ),
        (
            json!({"token": "ab", "transport": "apn"}),
            "SVL-0002",
            "topics",
        ),
        (
            json!({"token": "ab", "transport": "wns", "topics": ["ox:mail:new"]}),
            "SVL-0010",
            "transport",
        ),
        (
            json!({"token": "ab", "transport": "apn", "topics": ["ox::mail"]}),
            "SVL-0010",
            "INVALID_TOPIC",
        ),
        (
            json!({"client": "other", "token": "ab", "transport": "apn", "topics": ["*"]}),
            "SVL-0010",
            "client",
        ),
    ];
    for (body, code, needle) in cases {
        let v = h.pns(&l, "subscribe", body.clone()).await;
        assert_eq!(v["code"], code, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let raw = |b: &'static str| {
        let r = h
            .http
            .put(h.url(&format!("/ajax/pns?action=subscribe&session={}", l.session)))
            .header("cookie", &l.cookie)
            .body(b);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(raw("").await["code"], "SVL-0023");
    assert_eq!(raw("{oops").await["code"], "SVL-0009");
    assert_eq!(h.pns(&l, "frob", json!({})).await["code"], "SVL-0021");
    h.subscribe(&l, APNS_TOKEN, "apns_http2").await;
    assert_eq!(h.subscriptions().await.len(), 1);
    let v = h
        .pns(
            &l,
            "unsubscribe",
            json!({"token": APNS_TOKEN, "transport": "apns_http2"}),
        )
        .await;
    assert_eq!(v, json!({"data": {"success": true}}));
    assert!(h.subscriptions().await.is_empty());
}

#[tokio::test]
async fn pns_token_owned_by_another_user_moves() {
    let h = Harness::start(Opts::default()).await;
    let a = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let c = h.session("carol", "pw-carol", "open-xchange-mailapp").await;
    h.subscribe(&a, APNS_TOKEN, "apn").await;
    h.subscribe(&c, APNS_TOKEN, "apn").await;
    let subs = h.subscriptions().await;
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["user_id"], 5);
}

#[tokio::test]
async fn mobilenotifier_subscribe_update_unsubscribe_and_errors() {
    let h = Harness::start(Opts::default()).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let call = |q: &str| {
        let r = h
            .http
            .get(h.url(&format!(
                "/appsuite/api/mobilenotifier?session={}&{q}",
                l.session
            )))
            .header("cookie", &l.cookie);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(
        call("action=subscribe&token=aa11&serviceId=apn&providerId=mail").await,
        json!({"data": {}})
    );
    let subs = h.subscriptions().await;
    assert_eq!(subs[0]["topics"], json!(["ox:mail:new"]));
    assert_eq!(subs[0]["transport"], "apn");
    assert_eq!(
        call("action=updateToken&token=aa11&newToken=bb22&serviceId=apn").await,
        json!({"data": {}})
    );
    assert_eq!(h.subscriptions().await[0]["token"], "bb22");
    assert_eq!(
        call("action=subscribe&token=aa11&serviceId=apn&providerId=weather").await["code"],
        "SVL-0010"
    );
    assert_eq!(
        call("action=subscribe&token=aa11&serviceId=wns&providerId=mail").await["code"],
        "SVL-0010"
    );
    let v = call("action=subscribe&serviceId=apn&providerId=mail").await;
    assert_eq!(v["code"], "SVL-0002");
    assert!(v["error"].as_str().unwrap().contains("token"));
    assert_eq!(call("action=bogus").await["code"], "SVL-0021");
    assert_eq!(
        call("action=unsubscribe&token=bb22&serviceId=apn&providerId=mail").await,
        json!({"data": {}})
    );
    assert!(h.subscriptions().await.is_empty());
    // Form-encoded POST works too.
    let v: Value = h
        .http
        .post(h.url(&format!(
            "/ajax/mobilenotifier?action=subscribe&session={}",
            l.session
        )))
        .header("cookie", &l.cookie)
        .form(&[
            ("token", "cc33"),
            ("serviceId", "gcm"),
            ("providerId", "mail"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"data": {}}));
    assert_eq!(h.subscriptions().await[0]["transport"], "gcm");
}
