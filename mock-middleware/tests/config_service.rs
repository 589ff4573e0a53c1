//! The app's side: the configuration service (`/config/providers` from branding.yml) over real
//! HTTP, start-up refusal of an invalid branding.yml, and `mock-middleware device` resolving a
//! provider through the service and discovering the API path (Grizzly 404 → `/appsuite/api`,
//! any other answer → `/ajax` through a stub in front of the middleware).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_mock-middleware");

/// Kills the child when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits for the exit within `limit`; returns (status code, stdout, stderr).
    fn finish(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                let mut out = String::new();
                let mut err = String::new();
                use std::io::Read;
                if let Some(mut o) = self.0.stdout.take() {
                    o.read_to_string(&mut out).unwrap();
                }
                if let Some(mut e) = self.0.stderr.take() {
                    e.read_to_string(&mut err).unwrap();
                }
                return (st.code(), out, err);
            }
            assert!(
                Instant::now() < end,
                "process did not finish within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(args: &[&str], password: &str) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("DEVICE_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mock-middleware"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stand-in reverse proxy in front of the middleware whose `/appsuite/...` answers are NOT
/// Grizzly's (an nginx-like 404, or `status_for_appsuite`); everything else is forwarded.
#[derive(Clone)]
struct Stub {
    target: String,
    appsuite_status: StatusCode,
    seen: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

async fn stub_handler(State(s): State<Stub>, req: Request) -> Response {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    s.seen
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri().path()));
    if req.uri().path().starts_with("/appsuite/") {
        let body = if s.appsuite_status == StatusCode::OK {
            "{\"status\":\"up\"}".to_string()
        } else {
            "<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>".to_string()
        };
        return (s.appsuite_status, body).into_response();
    }
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let mut r = s.http.request(method, format!("{}{pq}", s.target));
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            r = r.header(k, v);
        }
    }
    let resp = match r.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    out.body(Body::from(resp.bytes().await.unwrap())).unwrap()
}

/// Serves the stub on `listener`; the task ends with the test's runtime.
fn serve_stub(listener: tokio::net::TcpListener, stub: Stub) {
    let app = axum::Router::new().fallback(stub_handler).with_state(stub);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
}

fn provider(id: &str, name: &str, url: &str, colour: &str) -> String {
    format!("  - id: {id}\n    name: {name}\n    serverUrl: {url}\n    logoUrl: {url}/logo.png\n    ciColor: \"{colour}\"\n")
}

struct Setup {
    h: Harness,
    _branding: tempfile::TempDir,
    base: String,
    stub_url: String,
    stub_seen: Arc<Mutex<Vec<String>>>,
}

/// Middleware on a fixed port with a branding.yml naming it ("local") and a non-Grizzly proxy
/// in front of it ("proxied").
async fn setup() -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let stub_listener = bind().await;
    let stub_url = format!("http://{}", stub_listener.local_addr().unwrap());
    let bdir = tempfile::tempdir().unwrap();
    let bfile = bdir.path().join("branding.yml");
    std::fs::write(
        &bfile,
        format!(
            "providers:\n{}{}",
            provider("local", "Local Mail", &base, "#0a6ebd"),
            provider("proxied", "Behind nginx", &stub_url, "#FF8800")
        ),
    )
    .unwrap();
    let h = Harness::start(Opts {
        extra_props: format!(
            "mock.http.listen=127.0.0.1:{port}\nmock.branding.file={}\n",
            bfile.display()
        ),
        ..Default::default()
    })
    .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    serve_stub(
        stub_listener,
        Stub {
            target: base.clone(),
            appsuite_status: StatusCode::NOT_FOUND,
            seen: seen.clone(),
            http: reqwest::Client::new(),
        },
    );
    Setup {
        h,
        _branding: bdir,
        base,
        stub_url,
        stub_seen: seen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_served_from_branding_yml() {
    let s = setup().await;
    let r =
        s.h.http
            .get(s.h.url("/config/providers"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"providers": [
            {"id": "local", "name": "Local Mail", "serverUrl": s.base, "logoUrl": format!("{}/logo.png", s.base), "ciColor": "#0a6ebd"},
            {"id": "proxied", "name": "Behind nginx", "serverUrl": s.stub_url, "logoUrl": format!("{}/logo.png", s.stub_url), "ciColor": "#FF8800"},
        ]})
    );
    let r =
        s.h.http
            .get(s.h.url("/config/providers/proxied"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": "proxied", "name": "Behind nginx", "serverUrl": s.stub_url, "logoUrl": format!("{}/logo.png", s.stub_url), "ciColor": "#FF8800"})
    );
    let r =
        s.h.http
            .get(s.h.url("/config/providers/nope"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "No provider \"nope\"."})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_branding_yml_means_404() {
    let h = Harness::start(Opts::default()).await;
    let r = h.http.get(h.url("/config/providers")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .get(h.url("/config/providers/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn invalid_branding_yml_stops_startup_with_one_clear_line() {
    let cases = [
        (
            provider("ex", "Ex", "https://a.example", "blue"),
            vec![
                "branding.yml",
                "providers[0]",
                "\"ex\"",
                "ciColor",
                "#0a6ebd",
            ],
        ),
        (
            provider("Ex Mail", "Ex", "https://a.example", "#0a6ebd"),
            vec!["branding.yml", "providers[0]", "id is invalid"],
        ),
        (
            "  - id: ex\n    name: Ex\n    serverUrl: https://a.example\n".to_string(),
            vec!["branding.yml", "invalid YAML", "logoUrl"],
        ),
    ];
    for (body, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mock.properties"),
            "mock.http.listen=127.0.0.1:0\nmock.admin.listen=127.0.0.1:0\nmock.db=db.sqlite\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("branding.yml"),
            format!("providers:\n{body}"),
        )
        .unwrap();
        let p = spawn(&["serve", "--config-dir", dir.path().to_str().unwrap()], "");
        let (code, _, err) = p.finish(Duration::from_secs(20));
        assert!(
            matches!(code, Some(c) if c != 0),
            "serve must refuse to start: {code:?} {err}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected:\n{err}");
        for n in needles {
            assert!(lines[0].contains(n), "{n:?} missing in {err}");
        }
    }
}

/// Starts a stub proxy in front of `target` that answers `/appsuite/api/` with `status`;
/// returns its base URL.
async fn status_stub(target: &str, status: StatusCode) -> String {
    let l = bind().await;
    let url = format!("http://{}", l.local_addr().unwrap());
    serve_stub(
        l,
        Stub {
            target: target.to_string(),
            appsuite_status: status,
            seen: Arc::new(Mutex::new(Vec::new())),
            http: reqwest::Client::new(),
        },
    );
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_recognises_grizzly_and_falls_back_to_ajax() {
    let s = setup().await;
    let c = reqwest::Client::new();
    // The middleware answers /appsuite/api/ with Grizzly's 404 page.
    assert_eq!(
        mock_middleware::tools::device::discover(&c, &s.base)
            .await
            .unwrap(),
        format!("{}/appsuite/api", s.base)
    );
    // A proxy with its own 404 page: /ajax.
    assert_eq!(
        mock_middleware::tools::device::discover(&c, &format!("{}/", s.stub_url))
            .await
            .unwrap(),
        format!("{}/ajax", s.stub_url)
    );
    // A 2xx answer at /appsuite/api/ counts as an App Suite.
    let ok_url = status_stub(&s.base, StatusCode::OK).await;
    assert_eq!(
        mock_middleware::tools::device::discover(&c, &ok_url)
            .await
            .unwrap(),
        format!("{ok_url}/appsuite/api")
    );
    // 503 at the probe: not an App Suite answer either.
    let busy_url = status_stub(&s.base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        mock_middleware::tools::device::discover(&c, &busy_url)
            .await
            .unwrap(),
        format!("{busy_url}/ajax")
    );
}

/// Polls the middleware until it holds `n` subscriptions.
async fn wait_subscriptions(h: &Harness, n: usize) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let v = h.subscriptions().await;
        if v.len() >= n {
            return v;
        }
        assert!(
            Instant::now() < end,
            "{n} subscriptions expected, have {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_resolves_a_provider_and_shows_its_push() {
    let s = setup().await;
    let fake_admin = s.h.fake_admin("");
    let dev = spawn(
        &[
            "device",
            "--url",
            &s.base,
            "--provider",
            "local",
            "--user",
            "alice",
            "--transport",
            "apn",
            "--token",
            APNS_TOKEN,
            "--name",
            "iPhone",
            "--fake-admin",
            &fake_admin,
            "--pushes",
            "1",
            "--timeout-s",
            "20",
        ],
        "pw-alice",
    );
    let subs = wait_subscriptions(&s.h, 1).await;
    assert_eq!(subs[0]["token"], APNS_TOKEN, "{subs:?}");
    let r = s.h.notify(&new_mail("3@1", 9)).await;
    assert_eq!(r.status(), 200);
    let (code, out, err) = tokio::task::block_in_place(|| dev.finish(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("[iPhone] provider Local Mail → \"{}\"", s.base),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!(
            "[iPhone] logged in as alice (user 3 in context 1) via {}/appsuite/api",
            s.base
        ),
        "{out}"
    );
    assert!(
        lines[2].starts_with("[iPhone] subscribed apn token 0a1b2c3d"),
        "{out}"
    );
    assert_eq!(
        lines[3], "[iPhone] push received: from \"Alice Sender\", subject \"Hello\", badge 7",
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_behind_a_non_grizzly_server_uses_ajax() {
    let s = setup().await;
    let dev = spawn(
        &[
            "device",
            "--url",
            &s.base,
            "--provider",
            "proxied",
            "--user",
            "alice",
            "--transport",
            "gcm",
            "--token",
            "fcm-token-1",
            "--name",
            "Android",
        ],
        "pw-alice",
    );
    let (code, out, err) = tokio::task::block_in_place(|| dev.finish(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "[Android] logged in as alice (user 3 in context 1) via {}/ajax",
            s.stub_url
        )),
        "{out}"
    );
    let seen = s.stub_seen.lock().unwrap().clone();
    assert_eq!(seen[0], "GET /appsuite/api/", "{seen:?}");
    assert!(seen.iter().any(|l| l == "POST /ajax/login"), "{seen:?}");
    assert!(seen.iter().any(|l| l == "PUT /ajax/pns"), "{seen:?}");
    assert!(
        !seen.iter().skip(1).any(|l| l.contains("/appsuite/")),
        "{seen:?}"
    );
    let subs = s.h.subscriptions().await;
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["token"], "fcm-token-1");
    assert_eq!(subs[0]["transport"], "gcm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_with_an_unknown_provider_fails_clearly() {
    let s = setup().await;
    let dev = spawn(
        &[
            "device",
            "--url",
            &s.base,
            "--provider",
            "nope",
            "--user",
            "alice",
            "--token",
            "ab",
        ],
        "pw-alice",
    );
    let (code, out, err) = tokio::task::block_in_place(|| dev.finish(Duration::from_secs(30)));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(&format!(
            "provider \"nope\" unknown at {}/config/providers/nope (404 Not Found)",
            s.base
        )),
        "{err}"
    );
    assert!(s.h.subscriptions().await.is_empty());
}
