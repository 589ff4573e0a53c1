//! The loopback HTTP receiver of `bench/delivery.py`, in Rust: it shares the
//! machine's CPUs with the Dovecot under test, so it must cost little per
//! request (the Python receiver it replaces cost about 60 µs per request).
//!
//! Usage: bench_receiver <port> <ok|hang|down>
//!
//! Speaks the Python receiver's protocol: it prints `{"ready":true}`, then reads
//! one command per line on stdin and answers one JSON line on stdout:
//! `mode ok|hang`, `down`, `up`, `count` (requests, answered, connections
//! accepted), `dump`, `clear`; `quit` ends it.
//! Every request is recorded as `[t, body, answered, mode]`, `t` being
//! CLOCK_MONOTONIC seconds when the body was read (Python's `time.monotonic()`).
//! "hang": requests are read and never answered; when the mode goes back to
//! "ok", held connections are closed. "down": the listening socket and every
//! connection are closed, so connects are refused. Only 127.0.0.1.

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use serde_json::{json, Value};

fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[derive(Default)]
struct State {
    hang: bool,
    records: Vec<(f64, String, bool, &'static str)>,
    conns: Vec<TcpStream>,
    /// Connections accepted so far.
    accepted: usize,
    listener: Option<TcpListener>,
}

struct Receiver {
    port: u16,
    state: Mutex<State>,
    unhang: Condvar,
}

impl Receiver {
    fn up(self: &Arc<Self>) {
        let mut st = self.state.lock().unwrap();
        if st.listener.is_some() {
            return;
        }
        let l = TcpListener::bind(("127.0.0.1", self.port)).expect("bind");
        let accept = l.try_clone().expect("listener clone");
        st.listener = Some(l);
        let me = self.clone();
        thread::spawn(move || {
            while let Ok((c, _)) = accept.accept() {
                let _ = c.set_nodelay(true);
                if let Ok(copy) = c.try_clone() {
                    let mut st = me.state.lock().unwrap();
                    st.conns.push(copy);
                    st.accepted += 1;
                }
                let me = me.clone();
                thread::spawn(move || me.serve(c));
            }
        });
    }

    fn down(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(l) = st.listener.take() {
            // Wakes the accept thread (EINVAL) and refuses new connects.
            // SAFETY: shutdown on our own listening socket.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for c in st.conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn serve(&self, mut c: TcpStream) {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let head_end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p;
                }
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            buf.drain(..head_end + 4);
            while buf.len() < len {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..len).collect();
            let t = monotonic();
            let mut st = self.state.lock().unwrap();
            let hang = st.hang;
            st.records.push((
                t,
                String::from_utf8_lossy(&body).into_owned(),
                !hang,
                if hang { "hang" } else { "ok" },
            ));
            if hang {
                // Held until the mode is "ok" again, then closed unanswered.
                while st.hang {
                    st = self.unhang.wait(st).unwrap();
                }
                return;
            }
            drop(st);
            if c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
                return;
            }
        }
    }

    fn command(self: &Arc<Self>, line: &str) -> Value {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["mode", m] => {
                self.state.lock().unwrap().hang = *m == "hang";
                self.unhang.notify_all();
            }
            ["down"] => self.down(),
            ["up"] => self.up(),
            ["count"] => {
                let st = self.state.lock().unwrap();
                return json!({
                    "n": st.records.len(),
                    "ok": st.records.iter().filter(|r| r.2).count(),
                    "last": st.records.last().map(|r| r.0),
                    "conns": st.accepted,
                });
            }
            ["dump"] => {
                let st = self.state.lock().unwrap();
                let records: Vec<Value> = st
                    .records
                    .iter()
                    .map(|(t, body, answered, mode)| json!([t, body, answered, mode]))
                    .collect();
                return json!({ "records": records });
            }
            ["clear"] => self.state.lock().unwrap().records.clear(),
            _ => {}
        }
        json!({})
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: bench_receiver <port> <ok|hang|down>");
    let mode = args.get(2).map_or("ok", String::as_str);
    let r = Arc::new(Receiver {
        port,
        state: Mutex::new(State {
            hang: mode == "hang",
            ..Default::default()
        }),
        unhang: Condvar::new(),
    });
    if mode != "down" {
        r.up();
    }
    let out = std::io::stdout();
    println!("{}", json!({"ready": true}));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "quit" {
            break;
        }
        let answer = r.command(&line);
        let mut o = out.lock();
        let _ = writeln!(o, "{answer}");
        let _ = o.flush();
    }
    r.state.lock().unwrap().hang = false;
    r.unhang.notify_all();
}
