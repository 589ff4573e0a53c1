//! CPU per notification of the plugin's own code, outside Dovecot: the part that
//! runs on Dovecot's thread inside the commit callback (JSON body, spool file,
//! queue) and the part on the sender thread (HTTP/1.1 on a kept-alive loopback
//! connection, spool file removal). Run by `bench/plugin-cpu.sh`.
//!
//! Usage: submit_cost <spool dir> [count]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ox_push::http::TlsSettings;
use ox_push::json::{body, Event, Notification};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spool = args
        .get(1)
        .expect("usage: submit_cost <spool dir> [count]")
        .clone();
    let count: u64 = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(20_000);

    // Receiver: one kept-alive connection, 204 for every request.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicU64::new(0));
    let receiver_cpu = Arc::new(AtomicU64::new(0));
    {
        let received = received.clone();
        let receiver_cpu = receiver_cpu.clone();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut body = Vec::new();
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().unwrap();
                    }
                }
                body.resize(len, 0);
                r.read_exact(&mut body).unwrap();
                w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
                received.fetch_add(1, Ordering::Relaxed);
                receiver_cpu.store(thread_cpu().as_nanos() as u64, Ordering::Relaxed);
            }
        });
    }

    let (cfg, _) = ox_push::config::parse(&format!(
        "url=http://u:p@127.0.0.1:{port}/notify spool_dir={spool}"
    ))
    .unwrap();
    let tls = TlsSettings::default();
    let (ep, err) = ox_push::sender::endpoint_for(&cfg, &tls);
    assert!(err.is_none(), "{err:?}");
    let subject = b"Lunch at noon? =?UTF-8?Q?J=C3=B6rg?= says hi".to_vec();
    let snippet = "Shall we meet at the usual place? ".repeat(6).into_bytes();

    // Warm up (connection, spool directory, allocator).
    for _ in 0..200 {
        let n = Notification {
            user: b"3@1",
            folder: b"INBOX",
            uid_validity: 1795914095,
            uid: 1,
            from: Some(b"Alice Example <alice@example.org>"),
            subject: Some(&subject),
            snippet: Some(&snippet),
            unseen: Some(1),
            ..Default::default()
        };
        ep.submit(body(Event::MessageNew, &n), &tls).unwrap();
    }
    while received.load(Ordering::Relaxed) < 200 {
        std::thread::sleep(Duration::from_millis(1));
    }

    let proc0 = process_cpu();
    let recv0 = Duration::from_nanos(receiver_cpu.load(Ordering::Relaxed));
    let wall0 = Instant::now();
    let caller0 = thread_cpu();
    for i in 0..count {
        let n = Notification {
            user: b"3@1",
            folder: b"INBOX",
            uid_validity: 1795914095,
            uid: i as u32 + 2,
            from: Some(b"Alice Example <alice@example.org>"),
            subject: Some(&subject),
            snippet: Some(&snippet),
            unseen: Some(i as u32),
            ..Default::default()
        };
        ep.submit(body(Event::MessageNew, &n), &tls).unwrap();
    }
    let caller = thread_cpu() - caller0;
    while received.load(Ordering::Relaxed) < 200 + count {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the sender remove the last file.
    std::thread::sleep(Duration::from_millis(50));
    let wall = wall0.elapsed();
    let recv = Duration::from_nanos(receiver_cpu.load(Ordering::Relaxed)) - recv0;
    let total = process_cpu() - proc0;
    let sender = total.saturating_sub(caller).saturating_sub(recv);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!("spool\t{spool}");
    println!("notifications\t{count}");
    println!(
        "commit path (Dovecot thread) µs/notification\t{:.1}",
        per(caller)
    );
    println!("sender thread µs/notification\t{:.1}", per(sender));
    println!("plugin total µs/notification\t{:.1}", per(caller + sender));
    println!(
        "throughput notifications/s\t{:.0}",
        count as f64 / wall.as_secs_f64()
    );
}
