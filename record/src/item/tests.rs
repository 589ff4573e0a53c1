use super::*;

pub(crate) fn sample() -> Item {
    Item {
        id: *b"0123456789abcdef",
        created_ms: 1_700_000_000_123,
        policy: Policy {
            timeout_ms: 2000,
            max_age_secs: 600,
            notification_id: true,
        },
        target: Target {
            url: "http://login:secret@127.0.0.1:8009/notify".into(),
            tls_verify: true,
            ca_file: Some("/etc/ssl/ca.pem".into()),
            ca_dir: None,
        },
        body: br#"{"user":"3@1","event":"messageNew"}"#.to_vec(),
    }
}

#[test]
fn round_trip() {
    let item = sample();
    let mut buf = Vec::new();
    item.encode(&mut buf).unwrap();
    assert_eq!(Item::decode(&buf).unwrap(), item);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let mut buf = Vec::new();
    sample().encode(&mut buf).unwrap();
    for n in 0..buf.len() {
        assert!(Item::decode(&buf[..n]).is_err(), "prefix of {n} bytes");
    }
    buf.push(0);
    assert!(Item::decode(&buf).unwrap_err().0.contains("trailing"));
}

#[test]
fn crafted_lengths_are_checked_before_use() {
    let mut buf = Vec::new();
    sample().encode(&mut buf).unwrap();
    let body_len_at = buf.len() - sample().body.len() - 4;
    buf[body_len_at..body_len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Item::decode(&buf).unwrap_err().0.contains("body"));
    // A URL length past the end of the buffer.
    let mut buf = Vec::new();
    sample().encode(&mut buf).unwrap();
    buf[41..43].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(Item::decode(&buf).is_err());
}

#[test]
fn out_of_range_policy_is_refused() {
    let mut item = sample();
    item.policy.timeout_ms = 0;
    let mut buf = Vec::new();
    item.encode(&mut buf).unwrap();
    assert!(Item::decode(&buf).unwrap_err().0.contains("timeout"));
}

#[test]
fn oversized_fields_are_refused_when_encoding() {
    let mut item = sample();
    item.body = vec![b'x'; MAX_BODY + 1];
    let mut buf = vec![7];
    assert!(item.encode(&mut buf).is_err());
    assert_eq!(buf, vec![7], "nothing written on failure");
    let mut item = sample();
    item.target.url = "x".repeat(MAX_URL + 1);
    assert!(item.encode(&mut Vec::new()).is_err());
}

#[test]
fn debug_never_shows_the_password_or_the_body() {
    let s = format!("{:?}", sample());
    assert!(!s.contains("secret"), "{s}");
    assert!(!s.contains("messageNew"), "{s}");
    assert!(s.contains("login:***@"), "{s}");
    assert_eq!(sample().id_string(), "30313233-3435-3637-3839-616263646566");
}
