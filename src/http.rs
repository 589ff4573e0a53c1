//! A minimal, non-blocking HTTP/1.1 client for one request shape: `PUT` with a
//! JSON body over a kept-alive connection, plain or TLS (rustls).
//!
//! Why not ureq: the request must carry exactly the header set and order that
//! Dovecot's lib-http writes (`Host`, `Date`, `Authorization`, `Content-Length`,
//! `Connection: Keep-Alive`, `Content-Type`), with that capitalisation and nothing
//! else. ureq 2 always adds `User-Agent` and `Accept`; ureq 3 lower-cases every
//! header name; and both block. Responses are parsed by `httparse`.
//!
//! A [`Conn`] never blocks: it is registered with the sender's `mio` poll (whose
//! file descriptor Dovecot's ioloop watches) and [`Conn::progress`] does whatever
//! I/O the socket allows right now. [`Client`] drives one connection with a poll
//! of its own until an answer or a timeout (tests and the micro-benchmark).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::endpoint::EndpointUrl;

/// Why an attempt failed without an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Lookup(String),
    Connect(String),
    Timeout,
    /// Connection lost or protocol error after the request was (partly) sent.
    Lost(String),
    Tls(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Lookup(e) => write!(f, "Failed to lookup host: {e}"),
            TransportError::Connect(e) => write!(f, "connect failed: {e}"),
            TransportError::Timeout => f.write_str("Request timed out"),
            TransportError::Lost(e) => write!(f, "Connection lost: {e}"),
            TransportError::Tls(e) => write!(f, "TLS error: {e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// `Retry-After` in seconds (delta form; an HTTP date is converted).
    pub retry_after: Option<Duration>,
}

/// TLS settings from Dovecot's `ssl_client_*` (via the shim).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub ca_file: Option<String>,
    pub ca_dir: Option<String>,
    pub verify: bool,
}

/// The exact request bytes (head and body), header set and order as lib-http.
pub fn request_bytes(
    url: &EndpointUrl,
    body: &[u8],
    extra: &[(&str, &str)],
    date: SystemTime,
) -> Vec<u8> {
    let mut head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nDate: {}\r\n",
        url.target,
        url.authority,
        httpdate::fmt_http_date(date)
    );
    if let Some(auth) = url.basic_auth() {
        head.push_str("Authorization: ");
        head.push_str(&auth);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: Keep-Alive\r\nContent-Type: application/json; charset=utf-8\r\n",
        body.len()
    ));
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The addresses of the endpoint's host. Blocking (name service): the sender
/// calls it only on a helper thread, or for IP literals via [`literal_addrs`].
pub fn resolve(url: &EndpointUrl) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs: Vec<_> = (url.connect_host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| TransportError::Lookup(format!("{}: {e}", url.connect_host)))?
        .collect();
    if addrs.is_empty() {
        return Err(TransportError::Lookup(format!(
            "{}: no addresses",
            url.connect_host
        )));
    }
    Ok(addrs)
}

/// The address when the host is an IP literal (no lookup needed).
pub fn literal_addrs(url: &EndpointUrl) -> Option<Vec<SocketAddr>> {
    let ip: std::net::IpAddr = url.connect_host.parse().ok()?;
    Some(vec![SocketAddr::new(ip, url.port)])
}

/// What a connection's exchange has come to.
#[derive(Debug)]
pub enum Progress {
    /// Waiting for the socket.
    Pending,
    /// The answer; `keep` = the connection can carry the next request.
    Done(Response, bool),
    /// Failed before any byte of an answer arrived on a connection that had
    /// already carried a request: safe to repeat at once on a fresh one.
    NothingReceived(TransportError),
    Failed(TransportError),
}

/// One TCP (and TLS) connection, non-blocking, registered under a token.
pub struct Conn {
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    connected: bool,
    /// Plain connections: request bytes not written yet.
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    /// True once an exchange has completed on this connection.
    pub reused: bool,
}

impl Conn {
    /// Starts connecting to `addr` (returns at once). `tls`: the client config
    /// and server name for https.
    pub fn connect(
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        tls: Option<(
            Arc<rustls::ClientConfig>,
            rustls::pki_types::ServerName<'static>,
        )>,
    ) -> Result<Conn, TransportError> {
        let mut sock = TcpStream::connect(addr)
            .map_err(|e| TransportError::Connect(format!("connect({addr}) failed: {e}")))?;
        registry
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| TransportError::Connect(format!("poll registration failed: {e}")))?;
        let tls = match tls {
            Some((config, name)) => Some(Box::new(
                rustls::ClientConnection::new(config, name)
                    .map_err(|e| TransportError::Tls(e.to_string()))?,
            )),
            None => None,
        };
        Ok(Conn {
            sock,
            tls,
            connected: false,
            out: Vec::new(),
            out_pos: 0,
            inbuf: Vec::new(),
            reused: false,
        })
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    /// Queues a request; [`Conn::progress`] writes it.
    pub fn start(&mut self, request: &[u8]) -> Result<(), TransportError> {
        self.inbuf.clear();
        match &mut self.tls {
            // rustls buffers the plaintext until the handshake is done.
            Some(tls) => tls
                .writer()
                .write_all(request)
                .map_err(|e| TransportError::Tls(e.to_string())),
            None => {
                self.out.clear();
                self.out.extend_from_slice(request);
                self.out_pos = 0;
                Ok(())
            }
        }
    }

    /// An idle kept-alive connection: false when the server closed it (or
    /// sent something unasked), i.e. it must not be used again.
    pub fn idle_ok(&mut self) -> bool {
        if !self.connected {
            return true;
        }
        let mut chunk = [0u8; 512];
        matches!(self.read_some(&mut chunk), Ok(ReadState::WouldBlock))
    }

    /// Does the I/O the socket allows now and says where the exchange stands.
    pub fn progress(&mut self) -> Progress {
        if !self.connected {
            match self.sock.take_error() {
                Ok(Some(e)) | Err(e) => {
                    return Progress::Failed(TransportError::Connect(format!(
                        "connect({}) failed: {e}",
                        self.peer_name()
                    )))
                }
                Ok(None) => {}
            }
            match self.sock.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e)
                    if e.kind() == io::ErrorKind::NotConnected
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    return Progress::Pending
                }
                Err(e) => {
                    return Progress::Failed(TransportError::Connect(format!(
                        "connect({}) failed: {e}",
                        self.peer_name()
                    )))
                }
            }
            let _ = self.sock.set_nodelay(true);
        }
        if let Err(e) = self.flush() {
            return self.lost(e);
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.read_some(&mut chunk) {
                Ok(ReadState::WouldBlock) => break,
                Ok(ReadState::Data) => {
                    // The handshake may want to answer.
                    if let Err(e) = self.flush() {
                        return self.lost(e);
                    }
                }
                Ok(ReadState::Eof) => {
                    return match parse_response(&self.inbuf, true) {
                        Ok(Some((resp, _, _))) => self.finish(resp, false),
                        Ok(None) => unreachable!("parse_response with eof decides"),
                        Err(e) => self.lost(TransportError::Lost(e)),
                    };
                }
                Err(e) => return self.lost(e),
            }
        }
        match parse_response(&self.inbuf, false) {
            Ok(Some((resp, keep, _))) => self.finish(resp, keep),
            Ok(None) => Progress::Pending,
            Err(e) => Progress::Failed(TransportError::Lost(e)),
        }
    }

    fn finish(&mut self, resp: Response, keep: bool) -> Progress {
        self.reused = true;
        // An answer before the whole request was written (an early error):
        // the connection is out of step and must not carry another request.
        let written = match &self.tls {
            Some(tls) => !tls.wants_write(),
            None => self.out_pos >= self.out.len(),
        };
        Progress::Done(resp, keep && written)
    }

    fn lost(&self, e: TransportError) -> Progress {
        if self.reused && self.inbuf.is_empty() {
            Progress::NothingReceived(e)
        } else {
            Progress::Failed(e)
        }
    }

    fn peer_name(&self) -> String {
        self.sock
            .peer_addr()
            .map_or_else(|_| "server".to_string(), |a| a.to_string())
    }

    /// Writes what can be written now.
    fn flush(&mut self) -> Result<(), TransportError> {
        match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if retryable(&e) => break,
                        Err(e) => return Err(io_error(e)),
                    }
                }
            }
            None => {
                while self.out_pos < self.out.len() {
                    match self.sock.write(&self.out[self.out_pos..]) {
                        Ok(0) => return Err(TransportError::Lost("write returned 0".into())),
                        Ok(n) => self.out_pos += n,
                        Err(e) if retryable(&e) => break,
                        Err(e) => return Err(io_error(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads what is there into `inbuf` (plaintext).
    fn read_some(&mut self, chunk: &mut [u8]) -> Result<ReadState, TransportError> {
        match &mut self.tls {
            None => loop {
                match self.sock.read(chunk) {
                    Ok(0) => return Ok(ReadState::Eof),
                    Ok(n) => {
                        self.inbuf.extend_from_slice(&chunk[..n]);
                        return Ok(ReadState::Data);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(ReadState::WouldBlock)
                    }
                    Err(e) => return Err(io_error(e)),
                }
            },
            Some(tls) => {
                let got_tls = loop {
                    match tls.read_tls(&mut self.sock) {
                        Ok(0) => break None,
                        Ok(_) => break Some(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Some(false),
                        Err(e) => return Err(io_error(e)),
                    }
                };
                let state = tls
                    .process_new_packets()
                    .map_err(|e| TransportError::Tls(e.to_string()))?;
                let mut data = false;
                if state.plaintext_bytes_to_read() > 0 {
                    loop {
                        match tls.reader().read(chunk) {
                            Ok(0) => break,
                            Ok(n) => {
                                self.inbuf.extend_from_slice(&chunk[..n]);
                                data = true;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(io_error(e)),
                        }
                    }
                }
                match got_tls {
                    None => Ok(ReadState::Eof),
                    _ if state.peer_has_closed() => Ok(ReadState::Eof),
                    Some(true) => Ok(ReadState::Data),
                    Some(false) if data => Ok(ReadState::Data),
                    Some(false) => Ok(ReadState::WouldBlock),
                }
            }
        }
    }
}

enum ReadState {
    Data,
    WouldBlock,
    Eof,
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn io_error(e: io::Error) -> TransportError {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return TransportError::Tls(e.to_string());
    }
    match e.kind() {
        io::ErrorKind::TimedOut => TransportError::Timeout,
        _ => TransportError::Lost(e.to_string()),
    }
}

enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses a response in `buf`. `Ok(None)`: more bytes are needed (only when
/// `!eof`). `Ok(Some((response, keep_alive, consumed)))`. `Err`: invalid, or
/// the connection ended inside the response.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, bool, usize)>, String> {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if !eof => return Ok(None),
            Ok(httparse::Status::Partial) if buf.is_empty() => return Err("EOF".into()),
            Ok(httparse::Status::Partial) => return Err("EOF in response head".into()),
            Err(e) => return Err(format!("invalid response: {e}")),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) {
            pos += head_len; // 100 Continue and friends: the real answer follows.
            continue;
        }
        let reason = resp.reason.unwrap_or("").to_string();
        let mut retry_after = None;
        let mut length = None;
        let mut chunked = false;
        let mut close = resp.version == Some(0);
        for h in resp.headers.iter() {
            let v = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = v.to_ascii_lowercase().contains("close");
            } else if h.name.eq_ignore_ascii_case("retry-after") {
                retry_after = parse_retry_after(v.trim());
            }
        }
        let kind = if status == 204 || status == 304 {
            BodyKind::None
        } else if chunked {
            BodyKind::Chunked
        } else if let Some(l) = length {
            BodyKind::Length(l)
        } else {
            BodyKind::UntilClose
        };
        let response = Response {
            status,
            reason,
            retry_after,
        };
        let body = &rest[head_len..];
        let end = pos + head_len;
        return match kind {
            BodyKind::None => Ok(Some((response, !close && body.is_empty(), end))),
            BodyKind::Length(l) if body.len() >= l => {
                Ok(Some((response, !close && body.len() == l, end + l)))
            }
            BodyKind::Length(_) if eof => Err("EOF in response body".into()),
            BodyKind::Length(_) => Ok(None),
            BodyKind::Chunked if chunked_complete(body) => Ok(Some((response, !close, buf.len()))),
            BodyKind::Chunked if eof => Err("EOF in chunked body".into()),
            BodyKind::Chunked => Ok(None),
            BodyKind::UntilClose if eof || body.len() > 1 << 20 => {
                Ok(Some((response, false, buf.len())))
            }
            BodyKind::UntilClose => Ok(None),
        };
    }
}

/// True when `buf` holds a complete chunked body (ends with the last chunk and
/// the trailer section).
fn chunked_complete(buf: &[u8]) -> bool {
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else {
            return false;
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + line_end]);
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return true; // garbage: stop reading, the connection is closed after
        };
        pos += line_end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            return find(&buf[pos..], b"\r\n").is_some();
        }
        if buf.len() < pos + size + 2 {
            return false;
        }
        pos += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// One endpoint connection driven to completion with a poll of its own: one
/// request at a time, blocking the caller up to `timeout` per request. For
/// tests and the micro-benchmark; the plugin uses [`Conn`] through the sender.
pub struct Client {
    url: EndpointUrl,
    timeout: Duration,
    tls_settings: TlsSettings,
    poll: Poll,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(url: EndpointUrl, timeout: Duration, tls_settings: TlsSettings) -> Client {
        Client {
            url,
            timeout,
            tls_settings,
            poll: Poll::new().expect("epoll"),
            conn: None,
        }
    }

    /// One request; a kept-alive connection found closed is replaced once.
    pub fn send(
        &mut self,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Result<Response, TransportError> {
        let request = request_bytes(&self.url, body, extra, SystemTime::now());
        let deadline = Instant::now() + self.timeout;
        loop {
            if self.conn.is_none() {
                let addr = resolve(&self.url)?[0];
                let tls = tls_for(&self.url, &self.tls_settings, &mut None)?;
                self.conn = Some(Conn::connect(addr, self.poll.registry(), Token(0), tls)?);
            }
            let conn = self.conn.as_mut().expect("connected");
            conn.start(&request)?;
            let mut events = Events::with_capacity(4);
            let result = loop {
                match conn.progress() {
                    Progress::Pending => {}
                    other => break other,
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break Progress::Failed(TransportError::Timeout);
                };
                let _ = self.poll.poll(&mut events, Some(left));
            };
            match result {
                Progress::Done(r, keep) => {
                    if !keep {
                        self.close();
                    }
                    return Ok(r);
                }
                Progress::NothingReceived(_) => self.close(),
                Progress::Failed(e) => {
                    self.close();
                    return Err(e);
                }
                Progress::Pending => unreachable!(),
            }
        }
    }

    pub fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            c.deregister(self.poll.registry());
        }
    }
}

/// The TLS config (built once, into `cache`) and server name for https URLs.
pub fn tls_for(
    url: &EndpointUrl,
    settings: &TlsSettings,
    cache: &mut Option<Arc<rustls::ClientConfig>>,
) -> Result<
    Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    TransportError,
> {
    if !url.https {
        return Ok(None);
    }
    let config = match cache {
        Some(c) => c.clone(),
        None => {
            let c = crate::tls::client_config(settings).map_err(TransportError::Tls)?;
            *cache = Some(c.clone());
            c
        }
    };
    let name = rustls::pki_types::ServerName::try_from(url.connect_host.clone())
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    Ok(Some((config, name)))
}

#[cfg(test)]
mod tests;
