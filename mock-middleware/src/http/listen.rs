//! Serving a router on a TCP listener with limits, so that slow or idle connections and floods
//! of connections cannot stop good requests.
//!
//! - Connections are capped (`max_connections`, at most the process's file-descriptor budget).
//!   When the cap is reached, the newest connection is served and the oldest one without a
//!   request in progress is closed (else the oldest of all): a good request, which completes in
//!   milliseconds, is never the oldest, so it is always answered, while a slowloris only ever
//!   evicts its own connections.
//! - A connection that has not sent a complete request head within `header_timeout` is closed
//!   (hyper's `header_read_timeout`, also while idle between keep-alive requests; the HTTP/2
//!   preface sniffing before it is bounded the same way).
//! - Request heads are capped at `max_header_bytes` (431), bodies at `max_body_bytes` (413), and
//!   reading a body may take at most `body_timeout` (tower-http).
//! - `TCP_NODELAY` on every connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// Limits of one listener (documented with their keys and defaults in MOCK-MIDDLEWARE.md).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// File descriptors kept free for everything that is not a client connection (SQLite, provider
/// and IMAP connections, logs).
pub const FD_RESERVE: usize = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_nofile() -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let want = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
        usize::try_from(l.rlim_cur).unwrap_or(usize::MAX)
    }
}

struct Conn {
    abort: tokio::task::AbortHandle,
    busy: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Conn>>,
    next: AtomicU64,
}

impl Registry {
    /// Closes connections until fewer than `max` are open: the oldest idle first.
    fn make_room(&self, max: usize) {
        let mut g = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        while g.len() >= max.max(1) {
            let victim = g
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
                .or_else(|| g.iter().next())
                .map(|(id, _)| *id);
            match victim.and_then(|id| g.remove(&id)) {
                Some(c) => c.abort.abort(),
                None => break,
            }
        }
    }

    fn remove(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Serves `app` on `listener` with `limits` until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = app
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.max_body_bytes,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ));
    tokio::spawn(async move {
        let reg = Arc::new(Registry::default());
        let mut warned = false;
        loop {
            let tcp = tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        if !warned {
                            tracing::warn!(error = %e, "accept failed; retrying");
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => break,
            };
            let _ = tcp.set_nodelay(true);
            reg.make_room(limits.max_connections);
            let id = reg.next.fetch_add(1, Ordering::Relaxed);
            let busy = Arc::new(AtomicUsize::new(0));
            let (registered, wait) = tokio::sync::oneshot::channel::<()>();
            let (app, limits2, busy2, reg2) =
                (app.clone(), limits.clone(), busy.clone(), reg.clone());
            let task = tokio::spawn(async move {
                let _ = wait.await;
                connection(tcp, app, &limits2, busy2).await;
                reg2.remove(id);
            });
            reg.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(
                id,
                Conn {
                    abort: task.abort_handle(),
                    busy,
                },
            );
            let _ = registered.send(());
        }
        let conns = std::mem::take(&mut *reg.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for c in conns.values() {
            c.abort.abort();
        }
    })
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits (bounded) for the first bytes: `Some(true)` for the HTTP/2 preface, `Some(false)` for
/// anything else, `None` when the peer closed or sent nothing in time.
async fn sniff_h2(tcp: &TcpStream, within: Duration) -> Option<bool> {
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 24];
        loop {
            tcp.readable().await.ok()?;
            let n = tcp.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .ok()
    .flatten()
}

/// Counts requests in progress on one connection (an idle connection is evicted first).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(c: &Arc<AtomicUsize>) -> Busy {
        c.fetch_add(1, Ordering::Relaxed);
        Busy(c.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(tcp: TcpStream, app: Router, limits: &Limits, busy: Arc<AtomicUsize>) {
    let Some(h2) = sniff_h2(&tcp, limits.header_timeout).await else {
        return;
    };
    let svc = tower::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
        let (app, busy) = (app.clone(), busy.clone());
        async move {
            let _busy = Busy::new(&busy);
            app.oneshot(req.map(axum::body::Body::new)).await
        }
    });
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let io = TokioIo::new(tcp);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(limits.max_header_bytes as u32)
            .keep_alive_interval(Some(limits.header_timeout))
            .keep_alive_timeout(limits.header_timeout)
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .serve_connection(io, svc)
            .with_upgrades()
            .await;
    }
}
