//! CPU per notification of the plugin's own code, outside Dovecot, on one thread
//! as in a Dovecot process: the commit callback's part (spool record, queue,
//! request written on the kept-alive loopback connection) and the ioloop
//! callback's part (answer read, spool record acknowledged). A receiver thread
//! answers 204; its CPU is measured apart. Run by `bench/plugin-cpu.sh`.
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

    let raw = format!("url=http://u:p@127.0.0.1:{port}/notify spool_dir={spool}");
    let (cfg, _) = ox_push::config::parse(&raw).unwrap();
    let tls = TlsSettings::default();
    let (ep, err) = ox_push::sender::endpoint_for(&raw, &cfg, &tls).unwrap();
    assert!(err.is_none(), "{err:?}");
    let subject = b"Lunch at noon? =?UTF-8?Q?J=C3=B6rg?= says hi".to_vec();
    let snippet = "Shall we meet at the usual place? ".repeat(6).into_bytes();
    let poll_fd = ox_push::sender::poll_fd();
    let notification = |i: u64| {
        let n = Notification {
            user: b"3@1",
            folder: b"INBOX",
            uid_validity: 1795914095,
            uid: i as u32 + 1,
            from: Some(b"Alice Example <alice@example.org>"),
            subject: Some(&subject),
            snippet: Some(&snippet),
            unseen: Some(i as u32),
            ..Default::default()
        };
        body(Event::MessageNew, &n)
    };
    // What Dovecot's ioloop does between deliveries: wait for the sender's poll
    // descriptor (or its timer), then let it run, until the answer is handled.
    let ioloop_until = |want: u64, run_cpu: &mut Duration| {
        while received.load(Ordering::Relaxed) < want || ox_push::sender::pending() > 0 {
            let mut pfd = libc::pollfd {
                fd: poll_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 10) };
            let t = thread_cpu();
            ox_push::sender::run();
            *run_cpu += thread_cpu() - t;
        }
    };

    // Warm up (connection, spool directory, allocator).
    let mut ignored = Duration::ZERO;
    for i in 0..200 {
        ox_push::sender::submit(ep, notification(i)).unwrap();
        ioloop_until(i + 1, &mut ignored);
    }

    let proc0 = process_cpu();
    let recv0 = Duration::from_nanos(receiver_cpu.load(Ordering::Relaxed));
    let wall0 = Instant::now();
    let mut submit_cpu = Duration::ZERO;
    let mut run_cpu = Duration::ZERO;
    for i in 0..count {
        // One delivery at a time, as one LMTP process does.
        let t = thread_cpu();
        ox_push::sender::submit(ep, notification(i + 200)).unwrap();
        submit_cpu += thread_cpu() - t;
        ioloop_until(200 + i + 1, &mut run_cpu);
    }
    let wall = wall0.elapsed();
    let recv = Duration::from_nanos(receiver_cpu.load(Ordering::Relaxed)) - recv0;
    let total = process_cpu() - proc0;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!("spool\t{spool}");
    println!("notifications\t{count}");
    println!(
        "commit path (JSON body, spool record, request written) µs/notification\t{:.1}",
        per(submit_cpu)
    );
    println!(
        "ioloop callbacks (answer read, spool acknowledged) µs/notification\t{:.1}",
        per(run_cpu)
    );
    println!(
        "plugin total µs/notification\t{:.1}",
        per(submit_cpu + run_cpu)
    );
    println!(
        "process CPU minus receiver µs/notification\t{:.1}",
        per(total.saturating_sub(recv))
    );
    println!(
        "throughput notifications/s\t{:.0}",
        count as f64 / wall.as_secs_f64()
    );
}
