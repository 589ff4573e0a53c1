//! A lean HTTP/2 client for one provider origin (APNs): hyper's connection-level HTTP/2 over
//! tokio-rustls, with no per-request URL parsing, redirect or retry layers and no pool.
//!
//! The push path is the hot path of the middleware; with reqwest every push parsed its URL twice
//! (once when built, once more in the redirect layer) and went through retry, redirect and pool
//! layers that an APNs sender never needs (Apple does not redirect, and retries are decided by
//! [`super::Outcome`]). Here the origin is parsed once, each request's path is the only thing
//! built per push, and each of the `connections` HTTP/2 connections multiplexes every request
//! sent over it. A connection that breaks is replaced by the next request; requests that were in
//! flight on it fail as transport errors and are retried by the push queue.
//!
//! Every answer is read with a bound ([`MAX_RESPONSE`]): a hostile or broken peer cannot make
//! the middleware buffer without limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;

use crate::tls::TlsError;

/// The largest answer body read from a provider (APNs answers are a few dozen bytes of JSON).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// An answer: status, headers and the (bounded) body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One origin (`https://host:port`, or `http://` for HTTP/2 without TLS), `connections`
/// HTTP/2 connections to it, used in turn.
pub struct H2Client {
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without a trailing `/` (usually empty).
    prefix: String,
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    conns: Vec<Slot>,
    next: AtomicUsize,
}

/// One connection: the current sender, and a lock held while a new one is being set up so that
/// a burst of requests waits for one handshake instead of opening one connection each.
struct Slot {
    current: Mutex<Option<SendRequest<Full<Bytes>>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Client {
    /// A client for `base` (`https://host[:port][/prefix]`). TLS trusts the web roots plus the
    /// certificates in `ca_file`, offers the client identity in `identity_pem` (key and chain)
    /// when given, and negotiates `h2` by ALPN.
    pub fn new(
        base: &str,
        ca_file: Option<&std::path::Path>,
        identity_pem: Option<&[u8]>,
        timeout: Duration,
        connections: usize,
    ) -> Result<H2Client, TlsError> {
        let bad = |why: String| TlsError::Parse(format!("provider URL {base}"), why);
        let uri: Uri = base
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("no scheme".into()))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("no host".into()))?;
        if uri.query().is_some() || authority.as_str().contains('@') {
            return Err(bad("must be scheme://host[:port][/path]".into()));
        }
        let https = match scheme.as_str() {
            "https" => true,
            "http" => false,
            other => return Err(bad(format!("scheme {other} (expected https or http)"))),
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let cfg = client_config(ca_file, identity_pem)?;
            let name = ServerName::try_from(host.clone()).map_err(|e| bad(e.to_string()))?;
            Some((tokio_rustls::TlsConnector::from(cfg), name))
        } else {
            None
        };
        Ok(H2Client {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
            host,
            port,
            tls,
            timeout,
            conns: (0..connections.max(1))
                .map(|_| Slot {
                    current: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The absolute URI for `path` (which starts with `/`) on this origin.
    pub fn uri(&self, path: &str) -> Result<Uri, http::Error> {
        let pq = PathAndQuery::try_from(format!("{}{path}", self.prefix))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// Sends `req` over the next connection (set up first when there is none or it broke) and
    /// reads the answer, all within the client's timeout.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let slot = &self.conns[i];
        let exchange = async {
            let mut sender = self.sender(slot).await?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    fn cached(slot: &Slot) -> Option<SendRequest<Full<Bytes>>> {
        let c = slot.current.lock().unwrap_or_else(|p| p.into_inner());
        c.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    async fn sender(&self, slot: &Slot) -> Result<SendRequest<Full<Bytes>>, String> {
        if let Some(s) = Self::cached(slot) {
            return Ok(s);
        }
        let _one_at_a_time = slot.connecting.lock().await;
        if let Some(s) = Self::cached(slot) {
            return Ok(s);
        }
        let s = self.connect().await?;
        *slot.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
        Ok(s)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", self.authority))?;
        let _ = tcp.set_nodelay(true);
        let builder = {
            let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(60))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
                .max_header_list_size(64 * 1024);
            b
        };
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.authority))?;
                self.handshake(builder, tls).await
            }
            None => self.handshake(builder, tcp).await,
        }
    }

    /// The HTTP/2 handshake over `io`; the connection is driven by its own task from then on.
    async fn handshake<T>(
        &self,
        builder: hyper::client::conn::http2::Builder<TokioExecutor>,
        io: T,
    ) -> Result<SendRequest<Full<Bytes>>, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP/2 with {}: {e}", self.authority))?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%authority, error = %e, "provider connection closed");
            }
        });
        Ok(sender)
    }
}

/// rustls client settings: web roots plus `ca_file`, optional client identity, ALPN `h2`.
fn client_config(
    ca_file: Option<&std::path::Path>,
    identity_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        let name = ca.display().to_string();
        let pem = std::fs::read(ca).map_err(|e| TlsError::Read(name.clone(), e.to_string()))?;
        let mut n = 0;
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            let c = c.map_err(|e| TlsError::Parse(name.clone(), e.to_string()))?;
            roots
                .add(c)
                .map_err(|e| TlsError::Parse(name.clone(), e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(TlsError::Parse(name, "no certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let p = |e: String| TlsError::Parse("client TLS settings".into(), e);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| p(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match identity_pem {
        Some(pem) => {
            let id = |e: String| TlsError::Parse("client identity".into(), e);
            let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<_, _>>()
                .map_err(|e| id(e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut &pem[..])
                .map_err(|e| id(e.to_string()))?
                .ok_or_else(|| id("no private key".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| id(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    /// An HTTP/2 (cleartext) server on loopback that answers every request with `answer`; each
    /// connection is closed after `per_conn` requests. Returns the base URL and the number of
    /// connections accepted so far.
    pub(crate) async fn h2_server(
        answer: fn() -> hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>,
        per_conn: usize,
    ) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let served = Arc::new(AtomicUsize::new(0));
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
                    let svc = hyper::service::service_fn(move |_req| {
                        if served.fetch_add(1, Ordering::SeqCst) + 1 >= per_conn {
                            if let Some(tx) = done_tx.lock().unwrap().take() {
                                let _ = tx.send(());
                            }
                        }
                        async move { Ok::<_, Infallible>(answer()) }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = done_rx => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    /// A body of 1 GiB in 16 KiB frames.
    struct Endless(usize);
    impl hyper::body::Body for Endless {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            let chunk = Bytes::from_static(&[b'x'; 16 * 1024]);
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
        }
    }
    pub(crate) fn endless(
    ) -> hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
        hyper::Response::new(Endless(64 * 1024).boxed())
    }

    fn ok() -> hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
        hyper::Response::new(Full::new(Bytes::new()).boxed())
    }

    fn request(c: &H2Client) -> Request<Full<Bytes>> {
        Request::post(c.uri("/3/device/ab").unwrap())
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    #[tokio::test]
    async fn a_hostile_provider_with_an_endless_answer_is_cut_at_the_bound() {
        // 1 GiB as a stream of 16 KiB frames: the client must stop at MAX_RESPONSE.
        let (base, _) = h2_server(endless, usize::MAX).await;
        let c = H2Client::new(&base, None, None, Duration::from_secs(10), 1).unwrap();
        let err = match c.send(request(&c)).await {
            Ok(a) => panic!("an answer of {} bytes was accepted", a.body.len()),
            Err(e) => e,
        };
        assert!(err.contains("reading the answer failed"), "{err}");
    }

    #[tokio::test]
    async fn a_connection_the_provider_closes_is_replaced_by_the_next_request() {
        let (base, accepted) = h2_server(ok, 1).await;
        let c = H2Client::new(&base, None, None, Duration::from_secs(10), 1).unwrap();
        for round in 1..=3 {
            let a = c.send(request(&c)).await.expect("sent");
            assert_eq!(a.status, StatusCode::OK);
            assert_eq!(accepted.load(Ordering::SeqCst), round);
            // The server closes the connection after its one answer; once the client has
            // seen that, the next request must open a new connection and succeed.
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while H2Client::cached(&c.conns[0]).is_some() {
                assert!(
                    std::time::Instant::now() < until,
                    "the close was never seen"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_connection() {
        let (base, accepted) = h2_server(ok, usize::MAX).await;
        let c = Arc::new(H2Client::new(&base, None, None, Duration::from_secs(10), 1).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.send(request(&c)).await.map(|a| a.status) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), StatusCode::OK);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn origins_other_than_scheme_host_port_path_are_refused() {
        let t = Duration::from_secs(1);
        for bad in [
            "ftp://example.org",
            "https://user:pw@example.org",
            "https://example.org/?q=1",
            "example.org",
        ] {
            assert!(H2Client::new(bad, None, None, t, 1).is_err(), "{bad}");
        }
        let c = H2Client::new("https://api.push.apple.com:443/x/", None, None, t, 2).unwrap();
        assert_eq!(
            c.uri("/3/device/ab").unwrap().to_string(),
            "https://api.push.apple.com:443/x/3/device/ab"
        );
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_a_transport_error_within_the_timeout() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = H2Client::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            None,
            Duration::from_secs(2),
            1,
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = c.send(request(&c)).await.err().unwrap();
        assert!(err.contains("connect to"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
