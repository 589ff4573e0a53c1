//! A hostile or broken middleware on loopback: it reads each request whole
//! (and records it), then answers as its current [`Behaviour`] says: an
//! endless chunked body, an endless header line, endless `100 Continue`
//! heads, a 1 GiB body, 500 for one notification, or a plain 204. Every loop
//! is bounded in bytes and time, every socket has timeouts, and every thread
//! is stopped and joined when the server is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `200`, `Transfer-Encoding: chunked`, then 64 KiB chunks without end.
    EndlessChunkedBody,
    /// `200`, then one header line that never ends.
    EndlessHeaderLine,
    /// `100 Continue` heads without end, never a final answer.
    EndlessContinue,
    /// `200` with `Content-Length: 1073741824`, and that body.
    GigabyteBody,
    /// `500` to notifications whose subject contains this text, `204` to the others.
    FailWhenSubjectContains(String),
    /// `204 No Content`.
    Behave,
}

/// The most one hostile answer writes ("endless" is bounded here, far
/// beyond any bound the relay should have).
pub const HOSTILE_MAX_BYTES: u64 = 1 << 30;
/// The longest one hostile answer lasts.
pub const HOSTILE_MAX_TIME: Duration = Duration::from_secs(30);
/// No connection thread lives longer than this.
const CONN_MAX_TIME: Duration = Duration::from_secs(300);
/// Connections served at once (the relay holds a few per endpoint).
const MAX_CONNS: usize = 64;

/// One request the server read, and what it answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub subject: String,
    pub notification_id: Option<String>,
    /// The status of a complete answer; `None` for a hostile one.
    pub status: Option<u16>,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    behaviour: Mutex<Option<Behaviour>>,
    stop: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    /// Bytes written in hostile answers.
    hostile_bytes: AtomicU64,
    /// Hostile answers begun.
    hostile_answers: AtomicUsize,
    conns: AtomicUsize,
}

pub struct HostileServer {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HostileServer {
    pub fn start(b: Behaviour) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        *shared.behaviour.lock().unwrap() = Some(b);
        let sh = shared.clone();
        let accept = thread::spawn(move || accept_loop(listener, sh));
        HostileServer {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Changes how requests from now on are answered.
    pub fn set(&self, b: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = Some(b);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Subjects answered with `status`.
    pub fn answered(&self, status: u16) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.status == Some(status))
            .map(|s| s.subject)
            .collect()
    }

    pub fn hostile_answers(&self) -> usize {
        self.shared.hostile_answers.load(Ordering::Relaxed)
    }

    pub fn hostile_bytes(&self) -> u64 {
        self.shared.hostile_bytes.load(Ordering::Relaxed)
    }

    /// Waits until `pred(self)` holds, at most `timeout`.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&HostileServer) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if pred(self) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        pred(self)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let started = Instant::now();
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < CONN_MAX_TIME {
        conns.retain(|c| !c.is_finished());
        match listener.accept() {
            Ok((s, _)) if conns.len() < MAX_CONNS => {
                let sh = shared.clone();
                conns.push(thread::spawn(move || serve(s, &sh)));
            }
            Ok((s, _)) => drop(s),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    // Each ends within its socket timeouts once `stop` is set.
    for c in conns {
        let _ = c.join();
    }
}

fn stopped(shared: &Shared) -> bool {
    shared.stop.load(Ordering::Relaxed)
}

/// Reads one request: `None` at the end of the connection, when stopped, or
/// after `deadline`.
fn read_request(r: &mut BufReader<TcpStream>, shared: &Shared, deadline: Instant) -> Option<Seen> {
    let mut head: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut line = String::new();
    loop {
        // On a timeout, what was read stays in `line`: the next call appends.
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stopped(shared) || Instant::now() > deadline {
                    return None;
                }
                continue;
            }
            Err(_) => return None,
        }
        total += line.len();
        if !line.ends_with('\n') || total > 64 * 1024 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(std::mem::take(&mut line));
    }
    let header = |name: &str| {
        head.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    let mut body = vec![0u8; len];
    let mut got = 0;
    let until = Instant::now() + Duration::from_secs(10);
    while got < len {
        match r.read(&mut body[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !stopped(shared)
                    && Instant::now() < until =>
            {
                continue
            }
            Err(_) => return None,
        }
    }
    let subject = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["subject"].as_str().map(str::to_string))
        .unwrap_or_default();
    Some(Seen {
        subject,
        notification_id: header("x-notification-id"),
        status: None,
        at: Instant::now(),
    })
}

fn serve(conn: TcpStream, shared: &Shared) {
    shared.conns.fetch_add(1, Ordering::Relaxed);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    // A peer that stops reading without closing ends the answer, not the test.
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let started = Instant::now();
    while !stopped(shared) && started.elapsed() < CONN_MAX_TIME {
        let Some(mut seen) = read_request(&mut r, shared, started + CONN_MAX_TIME) else {
            break;
        };
        let b = shared.behaviour.lock().unwrap().clone().unwrap();
        let status = match &b {
            Behaviour::Behave => Some(204),
            Behaviour::FailWhenSubjectContains(m) if seen.subject.contains(m.as_str()) => Some(500),
            Behaviour::FailWhenSubjectContains(_) => Some(204),
            _ => None,
        };
        seen.status = status;
        shared.seen.lock().unwrap().push(seen);
        let ok = match status {
            Some(204) => w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_ok(),
            Some(s) => w
                .write_all(format!("HTTP/1.1 {s} Status\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .is_ok(),
            None => {
                shared.hostile_answers.fetch_add(1, Ordering::Relaxed);
                misbehave(&mut w, &b, shared);
                false
            }
        };
        if !ok {
            break;
        }
    }
    shared.conns.fetch_sub(1, Ordering::Relaxed);
}

/// Writes one hostile answer until the peer gives up (a write fails), the
/// server stops, or the byte or time bound is reached.
fn misbehave(w: &mut TcpStream, b: &Behaviour, shared: &Shared) {
    let (head, unit): (&[u8], Vec<u8>) = match b {
        Behaviour::EndlessChunkedBody => {
            let mut chunk = b"10000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'x', 0x10000));
            chunk.extend_from_slice(b"\r\n");
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                chunk,
            )
        }
        Behaviour::EndlessHeaderLine => (b"HTTP/1.1 200 OK\r\nX-Endless: ", vec![b'a'; 0x10000]),
        Behaviour::EndlessContinue => (b"", b"HTTP/1.1 100 Continue\r\n\r\n".repeat(2048)),
        Behaviour::GigabyteBody => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n",
            vec![b'{'; 0x10000],
        ),
        _ => unreachable!("not hostile"),
    };
    let started = Instant::now();
    let mut written = 0u64;
    if w.write_all(head).is_err() {
        return;
    }
    written += head.len() as u64;
    shared
        .hostile_bytes
        .fetch_add(head.len() as u64, Ordering::Relaxed);
    let limit = match b {
        Behaviour::GigabyteBody => head.len() as u64 + (1 << 30),
        _ => HOSTILE_MAX_BYTES,
    };
    while written < limit && started.elapsed() < HOSTILE_MAX_TIME && !stopped(shared) {
        let n = unit.len().min((limit - written) as usize);
        if w.write_all(&unit[..n]).is_err() {
            return;
        }
        written += n as u64;
        shared.hostile_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}
