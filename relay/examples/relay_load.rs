//! Load generator for `bench/relay.sh`: hands N notifications to a running
//! relay over C client connections (as C mail processes would, each writing
//! its frames and reading the acknowledgements), then waits until the relay
//! reports them sent (or, with `--no-wait`, only acknowledged).
//!
//! Usage: relay_load SOCKET URL N C [--no-wait]
//! Prints one JSON line: {"n":..,"clients":..,"accept_secs":..,"sent_secs":..}
//! (accept: every notification acknowledged; sent: the relay's `sent` counter
//! reached N, i.e. every request answered by the middleware).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ox_push_record::frame::{self, AckStatus, Frame, MAX_PAYLOAD};
use ox_push_record::{Item, Policy, Target};

fn body(i: usize) -> Vec<u8> {
    format!(
        "{{\"user\":\"3@1\",\"event\":\"messageNew\",\"folder\":\"INBOX\",\"imap-uidvalidity\":1795911532,\
         \"imap-uid\":{i},\"from\":\"Bob <bob@example.org>\",\"subject\":\"load {i}\",\
         \"snippet\":\"Hello world, this is a notification body of a typical size.\",\"unseen\":{i}}}"
    )
    .into_bytes()
}

fn sent(socket: &std::path::Path) -> u64 {
    let json = frame::request_stats(socket, Duration::from_secs(5)).expect("stats");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    v["endpoints"]
        .as_array()
        .map(|a| a.iter().map(|e| e["sent"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

fn client(socket: PathBuf, url: String, from: usize, to: usize) {
    let mut s = UnixStream::connect(&socket).expect("connect to the relay");
    let mut r = s.try_clone().unwrap();
    let n = to - from;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 65536];
        let mut acked = 0;
        while acked < n {
            let k = r.read(&mut chunk).expect("read acks");
            assert!(k > 0, "relay closed the connection");
            buf.extend_from_slice(&chunk[..k]);
            let mut used = 0;
            while let Some((f, len)) = frame::decode(&buf[used..], MAX_PAYLOAD).unwrap() {
                used += len;
                match f {
                    Frame::Ack { status, .. } => {
                        assert!(!matches!(status, AckStatus::Refused(_)), "{status:?}");
                        acked += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            buf.drain(..used);
        }
    });
    let mut out = Vec::with_capacity(64 * 1024);
    for i in from..to {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        id[8..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
        let item = Item {
            id,
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            policy: Policy {
                timeout_ms: 2000,
                max_age_secs: 3600,
                notification_id: false,
            },
            target: Target {
                url: url.clone(),
                tls_verify: true,
                ca_file: None,
                ca_dir: None,
            },
            body: body(i),
        };
        Frame::Notify {
            seq: (i - from + 1) as u64,
            item,
        }
        .encode(&mut out)
        .unwrap();
        if out.len() >= 32 * 1024 {
            s.write_all(&out).unwrap();
            out.clear();
        }
    }
    s.write_all(&out).unwrap();
    reader.join().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: relay_load SOCKET URL N CLIENTS [--no-wait]");
        std::process::exit(2);
    }
    let socket = PathBuf::from(&args[1]);
    let url = args[2].clone();
    let n: usize = args[3].parse().unwrap();
    let c: usize = args[4].parse().unwrap();
    let wait = !args.iter().any(|a| a == "--no-wait");
    let before = sent(&socket);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..c)
        .map(|k| {
            let (socket, url) = (socket.clone(), url.clone());
            std::thread::spawn(move || client(socket, url, k * n / c, (k + 1) * n / c))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let accepted = t0.elapsed();
    let mut done = accepted;
    if wait {
        let until = Instant::now() + Duration::from_secs(600);
        while sent(&socket) < before + n as u64 {
            assert!(Instant::now() < until, "not all sent within 600 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        done = t0.elapsed();
    }
    println!(
        "{}",
        serde_json::json!({
            "n": n,
            "clients": c,
            "accept_secs": accepted.as_secs_f64(),
            "sent_secs": done.as_secs_f64(),
        })
    );
}
