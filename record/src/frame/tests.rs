use super::*;
use crate::item::{Policy, Target};

fn notify() -> Frame {
    Frame::Notify {
        seq: 42,
        item: Item {
            id: [7; 16],
            created_ms: 5,
            policy: Policy {
                timeout_ms: 100,
                max_age_secs: 60,
                notification_id: false,
            },
            target: Target {
                url: "http://h/n".into(),
                tls_verify: false,
                ca_file: None,
                ca_dir: Some("/etc/ssl/certs".into()),
            },
            body: b"{}".to_vec(),
        },
    }
}

fn all() -> Vec<Frame> {
    vec![
        notify(),
        Frame::Ack {
            seq: 1,
            status: AckStatus::Stored,
        },
        Frame::Ack {
            seq: 2,
            status: AckStatus::Duplicate,
        },
        Frame::Ack {
            seq: 3,
            status: AckStatus::Refused("spool full".into()),
        },
        Frame::Report { dropped: 9 },
        Frame::StatsRequest,
        Frame::Stats {
            json: b"{\"a\":1}".to_vec(),
        },
        Frame::Error {
            message: "bad".into(),
        },
    ]
}

#[test]
fn every_frame_round_trips_and_is_incomplete_until_whole() {
    for f in all() {
        let bytes = f.to_bytes().unwrap();
        let (back, used) = decode(&bytes, MAX_PAYLOAD).unwrap().unwrap();
        assert_eq!((back, used), (f.clone(), bytes.len()));
        for n in 0..bytes.len() {
            assert_eq!(decode(&bytes[..n], MAX_PAYLOAD), Ok(None), "{f:?} at {n}");
        }
    }
}

#[test]
fn two_frames_in_one_buffer() {
    let mut buf = Vec::new();
    notify().encode(&mut buf).unwrap();
    Frame::StatsRequest.encode(&mut buf).unwrap();
    let (_, used) = decode(&buf, MAX_PAYLOAD).unwrap().unwrap();
    let (f, _) = decode(&buf[used..], MAX_PAYLOAD).unwrap().unwrap();
    assert_eq!(f, Frame::StatsRequest);
}

#[test]
fn garbage_and_foreign_versions_are_named() {
    assert_eq!(
        decode(b"GET / HTTP/1.1\r\n", 100),
        Err(FrameError::BadMagic)
    );
    assert_eq!(decode(b"OXq", 100), Err(FrameError::BadMagic));
    let mut v = Frame::StatsRequest.to_bytes().unwrap();
    v[4] = 9;
    let e = decode(&v, 100).unwrap_err();
    assert_eq!(e, FrameError::UnsupportedVersion(9));
    assert!(e.to_string().contains("one build"));
    v[4] = VERSION;
    v[5] = 77;
    assert_eq!(decode(&v, 100), Err(FrameError::UnknownKind(77)));
}

#[test]
fn announced_length_over_the_bound_is_refused_from_the_header_alone() {
    let mut v = Frame::StatsRequest.to_bytes().unwrap();
    v[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode(&v, 1 << 20),
        Err(FrameError::TooLarge {
            len: u32::MAX as usize,
            max: 1 << 20
        })
    );
}

#[test]
fn trailing_bytes_inside_a_payload_are_malformed() {
    let mut v = Frame::Report { dropped: 1 }.to_bytes().unwrap();
    v.push(0);
    let len = (v.len() - HEADER_LEN) as u32;
    v[8..12].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        decode(&v, 100),
        Err(FrameError::Malformed(Kind::Report, _))
    ));
}

#[test]
fn random_mutations_never_panic() {
    let base = notify().to_bytes().unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut v = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % v.len();
            v[i] = next() as u8;
        }
        let cut = (next() as usize) % (v.len() + 1);
        let _ = decode(&v[..cut], MAX_PAYLOAD);
    }
}

#[test]
fn long_texts_are_clipped_at_a_character_boundary() {
    let f = Frame::Error {
        message: "é".repeat(1000),
    };
    let (back, _) = decode(&f.to_bytes().unwrap(), MAX_PAYLOAD)
        .unwrap()
        .unwrap();
    let Frame::Error { message } = back else {
        panic!()
    };
    assert_eq!(message.len(), 1024);
}
