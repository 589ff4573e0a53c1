//! The relay client against a fake relay on a real unix socket. Each test runs
//! on its own thread, so each has its own (thread-local) client.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use ox_push_record::frame::{self, AckStatus, Frame, MAX_PAYLOAD};
use ox_push_record::{Item, Policy, Target};

use super::*;

fn item(n: u8, body_len: usize) -> Item {
    Item {
        id: [n; 16],
        created_ms: 1,
        policy: Policy {
            timeout_ms: 2000,
            max_age_secs: 600,
            notification_id: false,
        },
        target: Target {
            url: "http://u:p@127.0.0.1:9/n".into(),
            tls_verify: true,
            ca_file: None,
            ca_dir: None,
        },
        body: vec![b'x'; body_len],
    }
}

struct FakeRelay {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: Option<UnixListener>,
}

impl FakeRelay {
    fn new() -> FakeRelay {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ox-push");
        FakeRelay {
            listener: Some(UnixListener::bind(&path).unwrap()),
            path,
            _dir: dir,
        }
    }

    /// A path where nothing listens (yet).
    fn absent() -> FakeRelay {
        let dir = tempfile::tempdir().unwrap();
        FakeRelay {
            path: dir.path().join("ox-push"),
            listener: None,
            _dir: dir,
        }
    }

    fn listen(&mut self) {
        self.listener = Some(UnixListener::bind(&self.path).unwrap());
    }

    fn accept(&self) -> Conn {
        let (s, _) = self.listener.as_ref().unwrap().accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn { s, buf: Vec::new() }
    }
}

struct Conn {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    fn frame(&mut self) -> Frame {
        loop {
            if let Some((f, n)) = frame::decode(&self.buf, MAX_PAYLOAD).unwrap() {
                self.buf.drain(..n);
                return f;
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "client closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn ack(&mut self, seq: u64) {
        let f = Frame::Ack {
            seq,
            status: AckStatus::Stored,
        };
        self.s.write_all(&f.to_bytes().unwrap()).unwrap();
    }
}

fn seq_of(f: &Frame) -> u64 {
    match f {
        Frame::Notify { seq, .. } => *seq,
        other => panic!("expected Notify, got {other:?}"),
    }
}

/// Runs the client until `pred` holds (bounded).
fn run_until(pred: impl Fn() -> bool) {
    for _ in 0..500 {
        run();
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("condition not reached");
}

#[test]
fn a_notification_is_written_at_submit_and_released_by_the_ack() {
    let relay = FakeRelay::new();
    configure(&relay.path).unwrap();
    submit(item(1, 10)).unwrap();
    let mut c = relay.accept();
    let f = c.frame();
    let Frame::Notify { seq, item: got } = &f else {
        panic!("{f:?}")
    };
    assert_eq!(got, &item(1, 10));
    assert_eq!(pending(), 1, "held until acknowledged");
    c.ack(*seq);
    run_until(|| pending() == 0);
    assert_eq!(next_timeout(), None);
}

#[test]
fn unreachable_relay_keeps_the_queue_and_reconnects_on_the_timer() {
    let mut relay = FakeRelay::absent();
    configure(&relay.path).unwrap();
    submit(item(1, 10)).unwrap();
    submit(item(2, 10)).unwrap();
    assert_eq!(pending(), 2);
    assert!(next_timeout().is_some(), "a reconnect is scheduled");
    let lines = crate::log::drain();
    assert_eq!(lines.len(), 1, "one line per outage: {lines:?}");
    assert!(
        lines[0].1.contains("Cannot connect to the ox-push relay"),
        "{lines:?}"
    );
    assert!(lines[0].1.contains("keeping 2 notification(s)") || lines[0].1.contains("keeping 1"));
    relay.listen();
    std::thread::sleep(next_timeout().unwrap());
    run();
    let mut c = relay.accept();
    let (a, b) = (c.frame(), c.frame());
    assert_eq!((seq_of(&a), seq_of(&b)), (1, 2), "in order");
    c.ack(1);
    c.ack(2);
    run_until(|| pending() == 0);
    let lines = crate::log::drain();
    assert!(
        lines
            .iter()
            .any(|l| l.1.contains("takes notifications again")),
        "{lines:?}"
    );
}

#[test]
fn unacknowledged_frames_are_sent_again_after_the_relay_dies() {
    let relay = FakeRelay::new();
    configure(&relay.path).unwrap();
    submit(item(1, 10)).unwrap();
    submit(item(2, 10)).unwrap();
    let mut c = relay.accept();
    assert_eq!(seq_of(&c.frame()), 1);
    c.ack(1);
    assert_eq!(seq_of(&c.frame()), 2);
    drop(c); // killed before acknowledging 2
    run_until(|| next_timeout().is_some());
    std::thread::sleep(next_timeout().unwrap());
    run();
    let mut c = relay.accept();
    let f = c.frame();
    assert_eq!(seq_of(&f), 2);
    let Frame::Notify { item: got, .. } = f else {
        unreachable!()
    };
    assert_eq!(
        got.id, [2; 16],
        "the same id, so the relay can drop a repeat"
    );
    c.ack(2);
    run_until(|| pending() == 0);
}

#[test]
fn the_queue_is_bounded_and_drops_are_reported_to_the_relay() {
    let mut relay = FakeRelay::absent();
    configure(&relay.path).unwrap();
    let body = 1 << 20;
    for n in 0..20u8 {
        submit(item(n, body)).unwrap();
    }
    let held = CLIENT.with_borrow(|c| c.as_ref().unwrap().held_bytes);
    assert!(held <= MAX_HELD_BYTES, "{held}");
    let kept = pending();
    assert!((14..20).contains(&kept), "{kept}");
    let lines = crate::log::drain();
    assert!(
        lines.iter().any(|l| l.1.contains("Dropped the 1 oldest")),
        "{lines:?}"
    );
    relay.listen();
    std::thread::sleep(next_timeout().unwrap());
    run();
    let mut c = relay.accept();
    // Frames of 1 MiB fill the socket: read on a thread while this one runs
    // the client.
    let reader = std::thread::spawn(move || (c.frame(), c.frame()));
    while !reader.is_finished() {
        run();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (report, first) = reader.join().unwrap();
    assert_eq!(
        report,
        Frame::Report {
            dropped: 20 - kept as u64
        }
    );
    let Frame::Notify { item: first, .. } = first else {
        panic!()
    };
    assert_eq!(first.id, [20 - kept as u8; 16], "the oldest were dropped");
}

#[test]
fn a_body_over_the_record_bound_is_refused_with_a_reason() {
    let relay = FakeRelay::new();
    configure(&relay.path).unwrap();
    let e = submit(item(1, ox_push_record::item::MAX_BODY + 1)).unwrap_err();
    assert!(e.contains("cannot be handed to the relay"), "{e}");
    assert_eq!(pending(), 0);
}

#[test]
fn shutdown_waits_at_most_its_timeout_and_counts_what_is_left() {
    let relay = FakeRelay::absent();
    configure(&relay.path).unwrap();
    submit(item(1, 10)).unwrap();
    crate::log::drain();
    let t = Instant::now();
    assert_eq!(shutdown(Duration::from_millis(150)), 1);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(140) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let lines = crate::log::drain();
    assert!(
        lines
            .iter()
            .any(|l| l.1.contains("1 notification(s) not handed")
                && l.1.contains("shutdown_timeout=150 ms")),
        "{lines:?}"
    );
}

#[test]
fn shutdown_returns_as_soon_as_the_relay_acknowledged() {
    let relay = FakeRelay::new();
    configure(&relay.path).unwrap();
    submit(item(1, 10)).unwrap();
    let mut c = relay.accept();
    let t = std::thread::spawn(move || {
        let seq = seq_of(&c.frame());
        std::thread::sleep(Duration::from_millis(50));
        c.ack(seq);
        c
    });
    let start = Instant::now();
    assert_eq!(shutdown(Duration::from_secs(5)), 0);
    assert!(start.elapsed() < Duration::from_secs(2));
    t.join().unwrap();
}

#[test]
fn a_relay_speaking_garbage_is_dropped_and_named() {
    let relay = FakeRelay::new();
    configure(&relay.path).unwrap();
    submit(item(1, 10)).unwrap();
    let mut c = relay.accept();
    c.frame();
    c.s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    run_until(|| next_timeout().is_some());
    let lines = crate::log::drain();
    assert!(
        lines
            .iter()
            .any(|l| l.1.contains("sent something unexpected")),
        "{lines:?}"
    );
    assert_eq!(pending(), 1, "kept for the next connection");
}

#[test]
fn a_second_socket_path_in_one_process_is_refused() {
    let a = FakeRelay::absent();
    let b = FakeRelay::absent();
    configure(&a.path).unwrap();
    configure(&a.path).unwrap();
    let e = configure(&b.path).unwrap_err();
    assert!(e.contains("one relay serves all endpoints"), "{e}");
}

#[test]
fn permission_denied_names_the_socket_and_the_fixes() {
    let e = io::Error::from_raw_os_error(libc::EACCES);
    let s = explain(Path::new("/run/dovecot/ox-push"), &e);
    assert!(s.contains("/run/dovecot/ox-push"), "{s}");
    assert!(s.contains("mail_access_groups"), "{s}");
    assert!(s.contains("LMTP"), "{s}");
}
