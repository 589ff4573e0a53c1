//! A minimal HTTP/1.1 client for one request shape: `PUT` with a JSON body over a
//! kept-alive connection, plain or TLS (rustls).
//!
//! Why not ureq: the request must carry exactly the header set and order that
//! Dovecot's lib-http writes (`Host`, `Date`, `Authorization`, `Content-Length`,
//! `Connection: Keep-Alive`, `Content-Type`), with that capitalisation and nothing
//! else. ureq 2 always adds `User-Agent` and `Accept`; ureq 3 lower-cases every
//! header name. Responses are parsed by `httparse`.
//!
//! Runs only on sender threads, never on Dovecot's ioloop thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A handle that can abort a blocked send from another thread (at shutdown).
#[derive(Clone, Default)]
pub struct Aborter(Arc<Mutex<Option<TcpStream>>>);

impl Aborter {
    pub fn abort(&self) {
        if let Ok(guard) = self.0.lock() {
            if let Some(s) = guard.as_ref() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
    fn set(&self, s: Option<TcpStream>) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = s;
        }
    }
}

pub struct Client {
    url: EndpointUrl,
    timeout: Duration,
    tls_settings: TlsSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Stream>,
    pub aborter: Aborter,
}

impl Client {
    pub fn new(url: EndpointUrl, timeout: Duration, tls_settings: TlsSettings) -> Client {
        Client {
            url,
            timeout,
            tls_settings,
            tls: None,
            conn: None,
            aborter: Aborter::default(),
        }
    }

    /// The exact request bytes (head and body).
    pub fn request_bytes(&self, body: &[u8], extra: &[(&str, &str)], date: SystemTime) -> Vec<u8> {
        let mut head = format!(
            "PUT {} HTTP/1.1\r\nHost: {}\r\nDate: {}\r\n",
            self.url.target,
            self.url.authority,
            httpdate::fmt_http_date(date)
        );
        if let Some(auth) = self.url.basic_auth() {
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

    /// One attempt: sends the request and reads the response within `timeout`.
    /// A kept-alive connection that turns out to be closed is replaced once
    /// without counting as an attempt.
    pub fn send(
        &mut self,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Result<Response, TransportError> {
        let request = self.request_bytes(body, extra, SystemTime::now());
        let deadline = Instant::now() + self.timeout;
        let reused = self.conn.is_some();
        match self.attempt(&request, deadline) {
            Err(Attempt::NothingReceived(_)) if reused => {
                self.close();
                self.attempt(&request, deadline)
                    .map_err(Attempt::into_error)
            }
            other => other.map_err(Attempt::into_error),
        }
    }

    pub fn close(&mut self) {
        self.conn = None;
        self.aborter.set(None);
    }

    fn attempt(&mut self, request: &[u8], deadline: Instant) -> Result<Response, Attempt> {
        if self.conn.is_none() {
            let stream = self.connect(deadline).map_err(Attempt::Other)?;
            self.aborter.set(stream.tcp().try_clone().ok());
            self.conn = Some(stream);
        }
        let result = self.exchange(request, deadline);
        match &result {
            Ok((_, keep)) if *keep => {}
            _ => self.close(),
        }
        result.map(|(r, _)| r)
    }

    fn connect(&mut self, deadline: Instant) -> Result<Stream, TransportError> {
        let addrs: Vec<_> = (self.url.connect_host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| TransportError::Lookup(format!("{}: {e}", self.url.connect_host)))?
            .collect();
        let mut last = TransportError::Lookup(format!("{}: no addresses", self.url.connect_host));
        for addr in addrs {
            let left = remaining(deadline).ok_or(TransportError::Timeout)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    // Writes are small; one timeout per connection is enough.
                    let _ = tcp.set_write_timeout(Some(self.timeout));
                    if !self.url.https {
                        return Ok(Stream::Plain(tcp));
                    }
                    let config = match &self.tls {
                        Some(c) => c.clone(),
                        None => {
                            let c = crate::tls::client_config(&self.tls_settings)
                                .map_err(TransportError::Tls)?;
                            self.tls = Some(c.clone());
                            c
                        }
                    };
                    let name =
                        rustls::pki_types::ServerName::try_from(self.url.connect_host.clone())
                            .map_err(|e| TransportError::Tls(e.to_string()))?;
                    let conn = rustls::ClientConnection::new(config, name)
                        .map_err(|e| TransportError::Tls(e.to_string()))?;
                    return Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))));
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => last = TransportError::Timeout,
                Err(e) => last = TransportError::Connect(format!("connect({addr}) failed: {e}")),
            }
        }
        Err(last)
    }

    fn exchange(&mut self, request: &[u8], deadline: Instant) -> Result<(Response, bool), Attempt> {
        let conn = self.conn.as_mut().expect("connected");
        if remaining(deadline).is_none() {
            return Err(Attempt::Other(TransportError::Timeout));
        }
        conn.write_all(request)
            .and_then(|_| conn.flush())
            .map_err(|e| Attempt::NothingReceived(io_error(e)))?;
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        loop {
            // Read until a complete head is there.
            let (status, reason, retry_after, body_kind, close, head_len) = loop {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = resp.code.unwrap_or(0);
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
                                let v = v.to_ascii_lowercase();
                                close = v.contains("close");
                            } else if h.name.eq_ignore_ascii_case("retry-after") {
                                retry_after = parse_retry_after(v.trim());
                            }
                        }
                        let kind = if (100..200).contains(&status) || status == 204 || status == 304
                        {
                            BodyKind::None
                        } else if chunked {
                            BodyKind::Chunked
                        } else if let Some(l) = length {
                            BodyKind::Length(l)
                        } else {
                            BodyKind::UntilClose
                        };
                        break (status, reason, retry_after, kind, close, n);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => {
                        return Err(Attempt::Other(TransportError::Lost(format!(
                            "invalid response: {e}"
                        ))))
                    }
                }
                if read_more(conn, &mut buf, deadline)? == 0 {
                    return Err(if buf.is_empty() {
                        Attempt::NothingReceived(TransportError::Lost("EOF".to_string()))
                    } else {
                        Attempt::Other(TransportError::Lost("EOF in response head".to_string()))
                    });
                }
            };
            buf.drain(..head_len);
            if (100..200).contains(&status) {
                continue; // 100 Continue and friends: the real answer follows.
            }
            let keep = match body_kind {
                BodyKind::None => !close,
                BodyKind::Length(l) => {
                    while buf.len() < l {
                        if read_more(conn, &mut buf, deadline)? == 0 {
                            return Err(Attempt::Other(TransportError::Lost(
                                "EOF in response body".to_string(),
                            )));
                        }
                    }
                    !close && buf.len() == l
                }
                BodyKind::Chunked => {
                    while !chunked_complete(&buf) {
                        if read_more(conn, &mut buf, deadline)? == 0 {
                            return Err(Attempt::Other(TransportError::Lost(
                                "EOF in chunked body".to_string(),
                            )));
                        }
                    }
                    !close
                }
                BodyKind::UntilClose => {
                    while read_more(conn, &mut buf, deadline)? > 0 {
                        if buf.len() > 1 << 20 {
                            break;
                        }
                    }
                    false
                }
            };
            return Ok((
                Response {
                    status,
                    reason,
                    retry_after,
                },
                keep,
            ));
        }
    }
}

enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

enum Attempt {
    /// The connection died before any response byte: safe to retry at once on
    /// a fresh connection when it was a reused one.
    NothingReceived(TransportError),
    Other(TransportError),
}

impl Attempt {
    fn into_error(self) -> TransportError {
        match self {
            Attempt::NothingReceived(e) | Attempt::Other(e) => e,
        }
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn io_error(e: io::Error) -> TransportError {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return TransportError::Tls(e.to_string());
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::Timeout,
        _ => TransportError::Lost(e.to_string()),
    }
}

fn read_more(conn: &mut Stream, buf: &mut Vec<u8>, deadline: Instant) -> Result<usize, Attempt> {
    let left = remaining(deadline).ok_or(Attempt::Other(TransportError::Timeout))?;
    let _ = conn.tcp().set_read_timeout(Some(left));
    let mut chunk = [0u8; 4096];
    // EINTR is routine here: in LMTP, Dovecot changes the process's euid per
    // recipient, and glibc signals every thread to follow.
    let result = loop {
        match conn.read(&mut chunk) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match result {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if buf.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {
            Err(Attempt::NothingReceived(io_error(e)))
        }
        Err(e) => Err(Attempt::Other(io_error(e))),
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

#[cfg(test)]
mod tests;
