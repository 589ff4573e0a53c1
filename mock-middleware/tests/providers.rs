//! Connections towards the providers and fakes that behave like them (issue 11, points 10–11):
//! a cold burst shares one HTTP/2 connection; the fake APNs echoes `apns-id` and passes a send
//! by a third-party client (aioapns from PyPI, installed on first use).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Runs `cmd` to completion within `limit`, killing it otherwise; returns (success, output).
fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (st.success(), text);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// aioapns installed (pip --target) below the cargo target directory, once.
fn aioapns_dir() -> PathBuf {
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let dir = target.join("third-party/aioapns-4.0");
    if !dir.join("aioapns").is_dir() {
        let (ok, out) = run_bounded(
            Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                dir.to_str().unwrap(),
                "aioapns==4.0",
            ]),
            Duration::from_secs(300),
        );
        assert!(
            ok,
            "installing aioapns failed (scripts/install-deps.sh installs python3-pip):\n{out}"
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_burst_of_pushes_opens_one_connection_to_apns() {
    let h = Harness::start(Opts::default()).await;
    let l = h.session("alice", "pw-alice", "open-xchange-mailapp").await;
    let n = 120;
    for i in 0..n {
        h.subscribe(&l, &format!("{i:064x}"), "apn").await;
    }
    // One mail, 120 devices: 120 pushes start at once on a cold client.
    h.notify(&new_mail("3@1", 1)).await;
    let p = h.wait_pushes(n, Duration::from_secs(20)).await;
    assert_eq!(p.len(), n);
    assert!(p.iter().all(|x| x["outcome"] == "delivered"), "{p:?}");
    let conns: std::collections::BTreeSet<String> = h
        .fake_requests("apns")
        .await
        .iter()
        .map(|r| r["conn"].to_string())
        .collect();
    assert_eq!(conns.len(), 1, "connections used: {conns:?}");
    let stats = h.get_json(h.fake_admin("/fake/stats")).await;
    assert_eq!(stats["connections"], 1, "{stats}");
}

/// One request straight to the fake APNs with `bearer`; returns (status, apns-id answered).
async fn send_to_fake(h: &Harness, bearer: &str, apns_id: &str) -> (u16, String) {
    let ca = std::fs::read(h.dir.path().join("ca.pem")).unwrap();
    let c = reqwest::Client::builder()
        .use_rustls_tls()
        .http2_prior_knowledge()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let r = c
        .post(format!(
            "https://127.0.0.1:{}/3/device/{APNS_TOKEN}",
            h.fakes.apns_addr.port()
        ))
        .header("authorization", format!("bearer {bearer}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .header("apns-id", apns_id)
        .body(r#"{"aps":{"alert":"x"}}"#)
        .send()
        .await
        .unwrap();
    let id = r.headers()["apns-id"].to_str().unwrap().to_string();
    (r.status().as_u16(), id)
}

fn signer(h: &Harness) -> mock_middleware::push::apns::JwtSigner {
    let p8 = std::fs::read(h.dir.path().join("key.p8")).unwrap();
    mock_middleware::push::apns::JwtSigner::new(&p8, KEY_ID, TEAM_ID).unwrap()
}

#[tokio::test]
async fn fake_apns_echoes_the_request_apns_id() {
    let h = Harness::start(Opts::default()).await;
    let jwt = signer(&h)
        .token(mock_middleware::push::apns::unix_now())
        .unwrap();
    let id = "8e1d3a4c-1f0b-4d6e-9a57-0c2b3d4e5f60";
    assert_eq!(send_to_fake(&h, &jwt, id).await, (200, id.to_string()));
}

#[tokio::test]
async fn fake_apns_accepts_a_jwt_in_padded_standard_base64() {
    use base64::Engine;
    let h = Harness::start(Opts::default()).await;
    let (url, std) = (
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    );
    // Header and claims chosen so that their standard base64 needs padding.
    let now = mock_middleware::push::apns::unix_now();
    let head = std.encode(format!(r#"{{"alg":"ES256","kid":"{KEY_ID}","typ":"JWT"}}"#));
    let claims = std.encode(format!(r#"{{"iss":"{TEAM_ID}","iat":{now}}}"#));
    let signed = format!("{head}.{claims}");
    let p8 = std::fs::read(h.dir.path().join("key.p8")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&p8).unwrap();
    let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, jsonwebtoken::Algorithm::ES256)
        .unwrap();
    let padded = format!("{signed}.{}", std.encode(url.decode(sig).unwrap()));
    assert!(
        padded.contains('=') || padded.contains('+') || padded.contains('/'),
        "{padded}"
    );
    let id = "0f0e0d0c-0b0a-4908-8706-050403020100";
    assert_eq!(send_to_fake(&h, &padded, id).await, (200, id.to_string()));
    // A tampered signature is still refused.
    let mut bad = padded.clone();
    bad.replace_range(bad.len() - 6..bad.len() - 3, "AAA");
    assert_eq!(send_to_fake(&h, &bad, id).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_apns_passes_a_send_by_aioapns() {
    let dir = tokio::task::spawn_blocking(aioapns_dir).await.unwrap();
    let h = Harness::start(Opts::default()).await;
    let d = h.dir.path();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/third_party/aioapns_send.py");
    let port = h.fakes.apns_addr.port().to_string();
    let (ca, key) = (d.join("ca.pem"), d.join("key.p8"));
    let (ok, out) = tokio::task::spawn_blocking(move || {
        run_bounded(
            Command::new("python3")
                .arg(script)
                .args(["127.0.0.1", &port])
                .arg(ca)
                .arg(key)
                .args([KEY_ID, TEAM_ID, TOPIC, APNS_TOKEN])
                .env("PYTHONPATH", dir),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert!(ok, "aioapns send failed:\n{out}");
    assert!(out.contains("successful=True"), "{out}");
    let got = h.fake_requests("apns").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["status"], 200);
    assert_eq!(got[0]["body"], json!({"aps": {"alert": "sent by aioapns"}}));
}
