//! The HTTP capture server of the test harness: records every request a
//! driver sends, answers as scripted (status, Retry-After, delay, hang), plain
//! or over TLS with a generated CA.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request the capture server received.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.clone()).collect()
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the capture server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    StatusRetryAfter(u16, u32),
    /// Read the request, never answer (until the server is dropped).
    Hang,
    /// Answer after a delay.
    Delayed(Duration, u16),
}

#[derive(Default)]
struct CaptureState {
    tls: Option<Arc<rustls::ServerConfig>>,
    requests: Vec<Captured>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    closed: bool,
    /// Connections accepted so far.
    accepted: usize,
}

/// A loopback HTTP/1.1 server that records every request.
pub struct Capture {
    pub port: u16,
    state: Arc<(Mutex<CaptureState>, Condvar)>,
    listener: Option<TcpListener>,
}

impl Capture {
    pub fn start() -> Capture {
        Capture::start_on(0)
    }

    pub fn start_on(port: u16) -> Capture {
        Capture::start_with(port, None)
    }

    /// An https capture server with a certificate for 127.0.0.1 and localhost
    /// signed by a fresh CA; returns the server and the CA's PEM.
    pub fn start_tls() -> (Capture, String) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ox-push test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        (Capture::start_with(0, Some(Arc::new(config))), ca.pem())
    }

    fn start_with(port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Capture {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state: Arc<(Mutex<CaptureState>, Condvar)> = Arc::default();
        state.0.lock().unwrap().tls = tls;
        let l = listener.try_clone().unwrap();
        let st = state.clone();
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { break };
                {
                    let mut s = st.0.lock().unwrap();
                    if s.closed {
                        break;
                    }
                    s.accepted += 1;
                }
                let st = st.clone();
                thread::spawn(move || serve_conn(conn, st));
            }
        });
        Capture {
            port,
            state,
            listener: Some(listener),
        }
    }

    pub fn url(&self, userinfo: &str, path: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next requests with these replies, then with the default.
    pub fn script(&self, replies: Vec<Reply>) {
        self.state.0.lock().unwrap().script.extend(replies);
    }

    pub fn set_default(&self, r: Reply) {
        self.state.0.lock().unwrap().default = Some(r);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.0.lock().unwrap().accepted
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Waits until at least `n` requests arrived (or the timeout passed).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let until = Instant::now() + timeout;
        let mut st = self.state.0.lock().unwrap();
        while st.requests.len() < n {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            st = self.state.1.wait_timeout(st, left).unwrap().0;
        }
        st.requests.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.state.0.lock().unwrap().closed = true;
        self.state.1.notify_all();
        if let Some(l) = self.listener.take() {
            // Unblock accept().
            let _ = TcpStream::connect(l.local_addr().unwrap());
        }
    }
}

/// A connection the capture server talks over: plain TCP or TLS.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn serve_conn(conn: TcpStream, st: Arc<(Mutex<CaptureState>, Condvar)>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let tls = st.0.lock().unwrap().tls.clone();
    let stream: Box<dyn Conn> = match tls {
        Some(config) => {
            let server = rustls::ServerConnection::new(config).unwrap();
            Box::new(rustls::StreamOwned::new(server, conn))
        }
        None => Box::new(conn),
    };
    let mut r = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.to_string(), v.trim_start().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let reply = {
            let mut s = st.0.lock().unwrap();
            s.requests.push(Captured {
                method,
                target,
                headers,
                body,
                at: Instant::now(),
            });
            st.1.notify_all();
            s.script
                .pop_front()
                .or_else(|| s.default.clone())
                .unwrap_or(Reply::Status(204))
        };
        let (status, retry_after) = match reply {
            Reply::Status(s) => (s, None),
            Reply::StatusRetryAfter(s, ra) => (s, Some(ra)),
            Reply::Delayed(d, s) => {
                thread::sleep(d);
                (s, None)
            }
            Reply::Hang => {
                // Hold the connection until the server goes away.
                loop {
                    if st.0.lock().unwrap().closed {
                        return;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let reason = match status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            408 => "Request Timeout",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut resp = format!("HTTP/1.1 {status} {reason}\r\n");
        if let Some(ra) = retry_after {
            resp.push_str(&format!("Retry-After: {ra}\r\n"));
        }
        if status == 204 {
            resp.push_str("\r\n");
        } else {
            resp.push_str("Content-Length: 0\r\n\r\n");
        }
        if r.get_mut()
            .write_all(resp.as_bytes())
            .and_then(|_| r.get_mut().flush())
            .is_err()
        {
            return;
        }
    }
}

impl Capture {
    pub fn clear(&self) {
        self.state.0.lock().unwrap().requests.clear();
    }
}

/// Subjects (from the JSON bodies) of captured requests.
pub fn subjects(reqs: &[Captured]) -> Vec<String> {
    reqs.iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| v["subject"].as_str().map(str::to_string))
        .collect()
}
