//! Limits (issue 11, points 4 and 8), against the real binary so that its descriptor limit and
//! memory can be set and read: a slowloris of 500 connections for 30 s, 1,100 slow connections
//! under `nofile=1024`, and 1,500 unauthenticated requests with 285 KB of headers.
//! Every attack runs on loopback, bounded in count and time; the server is killed on drop.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_mock-middleware");
const NOTIFY: &str = "/preliminary/http-notify/v1/notify";
const AUTH: &str = "Basic ZG92ZWNvdDpzM2NyZXQ="; // dovecot:s3cret

/// The `serve` process; killed when dropped.
struct Server {
    child: Child,
    http: u16,
    admin: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `serve` with `props` added; `nofile` sets soft and hard `RLIMIT_NOFILE` of the child.
async fn start(props: &str, nofile: Option<u64>) -> Server {
    start_on("127.0.0.1", props, nofile).await
}

/// Like [`start`], the public listener bound to `host`.
async fn start_on(host: &str, props: &str, nofile: Option<u64>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("mock.properties"),
        format!(
            "mock.http.listen={host}:{http}\nmock.admin.listen=127.0.0.1:{admin}\nmock.db=db.sqlite\n\
             com.openexchange.rest.services.basic-auth.login=dovecot\n\
             com.openexchange.rest.services.basic-auth.password=s3cret\n{props}"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config-dir", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe and only touches the child about to exec.
        unsafe {
            cmd.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().expect("spawn serve");
    let s = Server {
        child,
        http,
        admin,
        dir,
    };
    let end = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .is_err()
    {
        assert!(Instant::now() < end, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

/// The process's memory in KiB: (VmRSS, VmHWM).
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One good notify on a fresh connection; its answer time (panics when not 200 within 1 s).
async fn good_request(port: u16) -> Duration {
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let body = r#"{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uid":1}"#;
    let t = Instant::now();
    let r = c
        .put(format!("http://127.0.0.1:{port}{NOTIFY}"))
        .header("authorization", AUTH)
        .body(body)
        .send()
        .await;
    let took = t.elapsed();
    match r {
        Ok(r) => assert_eq!(r.status(), 200, "good request after {took:?}"),
        Err(e) => panic!("good request not answered within 1 s ({took:?}): {e}"),
    }
    took
}

/// One attacking connection, kept up (reopened when the server closes it) until `until`:
/// kind 0 stays silent, 1 sends a request head a byte at a time, 2 sends a complete head and
/// then a body (under the 64 KiB notify limit, so the server waits for it) a byte at a time.
async fn slow_client(port: u16, kind: usize, until: Instant) {
    while Instant::now() < until {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let head = format!("PUT {NOTIFY} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nContent-Length: 60000\r\n\r\n");
        if kind == 2 && s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut i = 0;
        while Instant::now() < until {
            let byte = match kind {
                0 => None,
                1 => head.as_bytes().get(i % (head.len() - 4)).copied(),
                _ => Some(b'x'),
            };
            if let Some(b) = byte {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
            } else if s.peer_addr().is_err() {
                break;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
}

/// Runs `n` slow connections for `secs` and a good request every 500 ms meanwhile; every good
/// request must be answered within 1 s. Returns the slowest answer.
async fn attack_and_probe(s: &Server, n: usize, secs: u64) -> Duration {
    let until = Instant::now() + Duration::from_secs(secs);
    let port = s.http;
    let attackers: Vec<_> = (0..n)
        .map(|i| tokio::spawn(slow_client(port, i % 3, until)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut worst = Duration::ZERO;
    while Instant::now() + Duration::from_millis(600) < until {
        worst = worst.max(good_request(port).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for a in attackers {
        a.abort();
    }
    worst
}

fn raise_own_nofile() {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_of_500_connections_for_30_s_does_not_stop_a_good_request() {
    raise_own_nofile();
    let s = start("", None).await;
    let worst = attack_and_probe(&s, 500, 30).await;
    assert!(worst < Duration::from_secs(1), "{worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nofile_1024_1100_slow_connections_do_not_stop_a_good_request() {
    raise_own_nofile();
    let s = start("", Some(1024)).await;
    let worst = attack_and_probe(&s, 1100, 15).await;
    assert!(worst < Duration::from_secs(1), "{worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_with_285_kb_of_headers_raise_rss_by_less_than_20_mb() {
    let s = start("", None).await;
    let pid = s.child.id();
    let (rss0, hwm0) = memory_kib(pid);
    let header_line = format!("X-Junk: {}\r\n", "j".repeat(28_500));
    let head = format!(
        "PUT {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n{}\r\n{{}}",
        header_line.repeat(10)
    );
    assert!(head.len() > 285_000);
    let port = s.http;
    let sender = |n: usize| {
        let head = head.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = c.write_all(head.as_bytes()).await;
                    let _ = c.shutdown().await;
                }
            }
        })
    };
    let senders: Vec<_> = (0..15).map(|_| sender(100)).collect();
    for t in senders {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("1,500 requests within 120 s")
            .unwrap();
    }
    // Reading every recording was what peaked at 1.65 GB.
    let token = std::fs::read_to_string(s.dir.path().join("admin.token")).unwrap();
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/mock/notifications", s.admin))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    good_request(s.http).await;
    let (rss1, hwm1) = memory_kib(pid);
    let grew = rss1.saturating_sub(rss0).max(hwm1.saturating_sub(hwm0));
    assert!(
        grew < 20 * 1024,
        "RSS grew by {grew} KiB (VmRSS {rss0}→{rss1}, VmHWM {hwm0}→{hwm1})"
    );
}

#[tokio::test]
async fn a_non_loopback_listener_without_tls_logs_a_warning() {
    // Bound to every address, but only ever talked to over loopback.
    let s = start_on("0.0.0.0", "", None).await;
    good_request(s.http).await;
    let log = s.log();
    assert!(
        log.contains("WARN") && log.contains("mock.http.listen is not a loopback address"),
        "{log}"
    );
    let quiet = start("", None).await;
    assert!(
        !quiet.log().contains("not a loopback address"),
        "{}",
        quiet.log()
    );
}
