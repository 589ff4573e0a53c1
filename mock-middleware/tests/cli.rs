//! The binary: configuration errors at startup, and the whole demo flow across processes
//! (init-demo → fake-providers + serve → notify PUT → push recorded at the fake APNs).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mock-middleware");

/// Kills the child when dropped, so a failing test leaves nothing running.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn");
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn wait_status(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn invalid_config_stops_startup_with_one_line_naming_file_key_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mock.properties"),
        "mock.admin.listen=nowhere\n",
    )
    .unwrap();
    let log = dir.path().join("err.log");
    let mut p = Proc::spawn(
        &["serve", "--config-dir", dir.path().to_str().unwrap()],
        &log,
    );
    let status =
        wait_status(&mut p.child, Duration::from_secs(20)).expect("serve exits on bad config");
    assert_eq!(status.code(), Some(2));
    let err = p.log();
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for needle in [
        "mock.properties",
        "mock.admin.listen",
        "\"nowhere\"",
        "socket address",
    ] {
        assert!(lines[0].contains(needle), "{needle} missing in {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_flow_pushes_a_notification_to_the_fake_apns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let ports = free_ports(5);
    let ps: Vec<String> = ports.iter().map(u16::to_string).collect();
    let out = Command::new(BIN)
        .args([
            "init-demo",
            "--dir",
            d.to_str().unwrap(),
            "--http-port",
            &ps[0],
            "--admin-port",
            &ps[1],
        ])
        .args([
            "--apns-port",
            &ps[2],
            "--fcm-port",
            &ps[3],
            "--fake-admin-port",
            &ps[4],
        ])
        .args(["--rest-password", "demo-rest-pw"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("http-notify URL for Dovecot: "))
        .expect("URL line")
        .to_string();
    assert!(
        url.starts_with("http://dovecot:demo-rest-pw@127.0.0.1:"),
        "{url}"
    );
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("seeded APNs device token: "))
        .expect("token line")
        .to_string();
    let cfg = d.to_str().unwrap();
    let fakes = Proc::spawn(
        &["fake-providers", "--config-dir", cfg],
        &dir.path().join("fakes.log"),
    );
    let serve = Proc::spawn(
        &["serve", "--config-dir", cfg],
        &dir.path().join("serve.log"),
    );
    let http = reqwest::Client::new();
    let admin = format!("http://127.0.0.1:{}", ports[1]);
    let fake_admin = format!("http://127.0.0.1:{}", ports[4]);
    let ready = |u: String| {
        let http = http.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                if http
                    .get(&u)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(
        ready(format!("{fake_admin}/fake/stats")).await,
        "fakes not ready: {}",
        fakes.log()
    );
    assert!(
        ready(format!("{admin}/metrics")).await,
        "serve not ready: {}",
        serve.log()
    );
    // Dovecot puts the credentials in the URL userinfo; send them as Basic auth.
    let (creds, rest) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once('@')
        .unwrap();
    let (user, pass) = creds.split_once(':').unwrap();
    let body = r#"{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uid":12,"imap-uidvalidity":1,"unseen":2,"from":"Demo <demo@example.org>","subject":"Demo push"}"#;
    let r = http
        .put(format!("http://{rest}"))
        .basic_auth(user, Some(pass))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", serve.log());
    let got = poll_nonempty(
        &http,
        &format!("{fake_admin}/fake/requests?provider=apns"),
        20,
    )
    .await;
    assert_eq!(
        got[0]["status"],
        200,
        "fake saw {got}; serve log: {}; fakes log: {}",
        serve.log(),
        fakes.log()
    );
    assert_eq!(got[0]["token"], token.as_str());
    assert_eq!(got[0]["body"]["aps"]["alert"], "Demo\nDemo push");
    assert_eq!(got[0]["jwt"]["iss"], "DEMOTEAM12");
    // The middleware records the push when the fake's answer is back, which can be a moment
    // after the fake recorded the request: poll, bounded.
    // /mock/* needs the bearer token init-demo wrote (0600) next to the configuration.
    let r = http
        .get(format!("{admin}/mock/pushes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let token = std::fs::read_to_string(d.join("admin.token")).unwrap();
    let mut bearer = reqwest::header::HeaderMap::new();
    bearer.insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    let admin_http = reqwest::Client::builder()
        .default_headers(bearer)
        .build()
        .unwrap();
    let pushes = poll_nonempty(&admin_http, &format!("{admin}/mock/pushes"), 10).await;
    assert_eq!(pushes[0]["outcome"], "delivered", "{pushes}");
}

/// GETs `url` until it answers a non-empty JSON array, for at most `secs`
/// seconds; returns the last answer.
async fn poll_nonempty(http: &reqwest::Client, url: &str, secs: u64) -> Value {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        if v.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > end {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
