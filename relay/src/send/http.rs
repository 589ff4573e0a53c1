//! HTTP/1.1 with hyper: the built-in driver's request, bounded answers.
//!
//! hyper writes exactly the header set and order Dovecot's lib-http writes
//! (`Host`, `Date`, `Authorization`, `Content-Length`, `Connection:
//! Keep-Alive`, `Content-Type`) when the headers are inserted in that order and
//! names are written in title case; `tests/differential.rs` compares the bytes
//! with Dovecot's built-in driver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::Peer;
use crate::outcome::Job;

/// hyper needs at least this much read buffer.
const MIN_BUF: usize = 8192;

pub enum SendError {
    /// The kept-alive connection was closed before the request went out.
    ClosedBeforeSending,
    Failed(String),
}

pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub retry_after: Option<Duration>,
}

/// One connection of one sender task. Dropping it closes the connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    reused: bool,
    /// Bytes read from the middleware during the current exchange.
    read: Arc<AtomicUsize>,
}

/// Header blocks (including `1xx` heads) of one answer may take this much
/// beyond the body's bound.
const HEAD_ALLOWANCE: usize = 64 * 1024;

/// The connection's stream, refusing to read more than `budget` bytes per
/// exchange: an answer that never ends (endless `100 Continue` heads, say)
/// costs one bounded attempt, not the attempt's whole timeout of parsing.
struct Budgeted<T> {
    inner: T,
    read: Arc<AtomicUsize>,
    budget: usize,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Budgeted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.read.load(Ordering::Relaxed) > self.budget {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the answer is larger than {} bytes",
                self.budget
            ))));
        }
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Budgeted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a connection in its peer while the connection's task lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(counter: &Arc<AtomicUsize>) -> Counted {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn drive<C: std::future::Future>(conn: C, counted: Counted) {
    let _counted = counted;
    let _ = conn.await;
}

impl Conn {
    /// Looks the host up, connects (trying each address), does the TLS
    /// handshake for https, and the HTTP/1.1 handshake.
    pub async fn open(peer: &Peer) -> Result<Conn, String> {
        let url = &peer.url;
        let addrs: Vec<std::net::SocketAddr> = match url.connect_host.parse() {
            Ok(ip) => vec![std::net::SocketAddr::new(ip, url.port)],
            Err(_) => tokio::net::lookup_host((url.connect_host.as_str(), url.port))
                .await
                .map_err(|e| format!("Failed to lookup host {}: {e}", url.connect_host))?
                .collect(),
        };
        let mut last = format!("Failed to lookup host {}: no addresses", url.connect_host);
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connect({addr}) failed: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let _ = tcp.set_nodelay(true);
        if !url.https {
            return Conn::start(peer, tcp).await;
        }
        let config = peer.tls_config().await?;
        let name = rustls::pki_types::ServerName::try_from(url.connect_host.clone())
            .map_err(|e| format!("TLS: invalid server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {} failed: {e}", url.connect_host))?;
        Conn::start(peer, tls).await
    }

    /// The HTTP/1.1 handshake on a connected stream (plain or TLS): headers in
    /// title case, reads bounded.
    async fn start<T>(peer: &Peer, io: T) -> Result<Conn, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let read = Arc::new(AtomicUsize::new(0));
        let io = Budgeted {
            inner: io,
            read: read.clone(),
            budget: peer.response_max + HEAD_ALLOWANCE,
        };
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .max_buf_size(peer.response_max.max(MIN_BUF))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        Ok(Conn {
            sender,
            task: tokio::spawn(drive(conn, Counted::new(&peer.connections))),
            reused: false,
            read,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer, its body bounded by `max`.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        max: usize,
    ) -> Result<Answer, SendError> {
        if self.sender.ready().await.is_err() {
            return Err(SendError::ClosedBeforeSending);
        }
        // A new exchange: a new read budget.
        self.read.store(0, Ordering::Relaxed);
        let reused = self.reused;
        let response = self.sender.send_request(request).await.map_err(|e| {
            if reused && (e.is_canceled() || e.is_incomplete_message()) {
                SendError::ClosedBeforeSending
            } else {
                SendError::Failed(format!("Connection lost: {e}"))
            }
        })?;
        self.reused = true;
        let status = response.status().as_u16();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| response.status().canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = response.into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SendError::Failed(format!("Connection lost: {e}")))?;
            if let Some(data) = frame.data_ref() {
                total += data.len();
                if total > max {
                    return Err(SendError::Failed(format!(
                        "the answer's body is larger than {max} bytes (--response-max-size)"
                    )));
                }
            }
        }
        Ok(Answer {
            status,
            reason,
            retry_after,
        })
    }
}

/// The request: the built-in driver's headers in its order, then
/// `X-Notification-Id` when asked for.
pub fn request(peer: &Peer, job: &Job) -> Request<Full<Bytes>> {
    let url = &peer.url;
    let mut b = Request::builder()
        .method("PUT")
        .uri(url.target.as_str())
        .header("Host", url.authority.as_str())
        .header("Date", httpdate::fmt_http_date(SystemTime::now()));
    if let Some(auth) = url.basic_auth() {
        b = b.header("Authorization", auth);
    }
    b = b
        .header("Content-Length", job.body.len())
        .header("Connection", "Keep-Alive")
        .header("Content-Type", "application/json; charset=utf-8");
    if job.policy.notification_id {
        b = b.header(
            "X-Notification-Id",
            ox_push_record::item::id_string(&job.id),
        );
    }
    b.body(Full::new(job.body.clone()))
        .expect("validated URL and header values")
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(Duration::from_secs(3600)),
    )
}
