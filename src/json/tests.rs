use super::*;

/// As Dovecot 2.3 escapes (lower-case hex).
fn esc(b: &[u8]) -> String {
    let mut out = Vec::new();
    escape_with(&mut out, b, false);
    String::from_utf8(out).unwrap()
}

#[test]
fn escapes_like_dovecot() {
    assert_eq!(esc(b"a\"b\\c"), r#"a\"b\\c"#);
    assert_eq!(esc(b"\x08\x0c\n\r\t"), r"\b\f\n\r\t");
    assert_eq!(esc(b"\x01\x1f"), r"\u0001\u001f");
    assert_eq!(esc(b"\x7f"), "\x7f");
    assert_eq!(esc("\u{2028}x\u{2029}".as_bytes()), r"\u2028x\u2029");
    assert_eq!(esc("é😀".as_bytes()), "é😀");
}

#[test]
fn dovecot_2_4_writes_control_characters_in_upper_case_hex() {
    let mut out = Vec::new();
    escape_with(&mut out, b"\x1b[0m\x01\n", true);
    assert_eq!(String::from_utf8(out).unwrap(), r"\u001B[0m\u0001\n");
    // The build's own choice follows the headers it was built against.
    let mut out = Vec::new();
    escape_into(&mut out, b"\x1b");
    let want = if crate::sys::DOVECOT_2_4 {
        r"\u001B"
    } else {
        r"\u001b"
    };
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

#[test]
fn invalid_utf8_is_one_replacement_per_byte() {
    assert_eq!(esc(b"caf\xe9!"), "caf\u{fffd}!");
    assert_eq!(esc(b"\xff\xfe"), "\u{fffd}\u{fffd}");
    assert_eq!(esc(b"\x80"), "\u{fffd}");
    // A truncated 3-byte sequence at the end: one per byte.
    assert_eq!(esc(b"a\xe2\x82"), "a\u{fffd}\u{fffd}");
    // A surrogate (CESU-8) is invalid: one per byte.
    assert_eq!(esc(b"\xed\xa0\x80"), "\u{fffd}\u{fffd}\u{fffd}");
}

#[test]
fn body_field_order_and_presence() {
    let n = Notification {
        user: b"alice",
        folder: b"INBOX",
        uid_validity: 1795911532,
        uid: 2,
        from: Some(b"Bob <bob@example.org>"),
        subject: Some(b"Hi\n there"),
        snippet: Some(b"Hello \"world\""),
        unseen: Some(2),
        ..Default::default()
    };
    assert_eq!(
        String::from_utf8(body(Event::MessageNew, &n)).unwrap(),
        r#"{"user":"alice","event":"messageNew","folder":"INBOX","imap-uidvalidity":1795911532,"imap-uid":2,"from":"Bob <bob@example.org>","subject":"Hi\n there","snippet":"Hello \"world\"","unseen":2}"#
    );
    let bare = Notification {
        user: b"3@1",
        folder: b"INBOX",
        uid_validity: 7,
        uid: 9,
        ..Default::default()
    };
    assert_eq!(
        String::from_utf8(body(Event::MessageNew, &bare)).unwrap(),
        r#"{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uidvalidity":7,"imap-uid":9}"#
    );
}

#[test]
fn flags_events_add_lists_before_unseen() {
    let n = Notification {
        user: b"u",
        folder: b"INBOX",
        uid_validity: 1,
        uid: 5,
        flags: vec![b"\\Seen"],
        keywords: vec![b"$Label1"],
        unseen: Some(0),
        ..Default::default()
    };
    assert_eq!(
        String::from_utf8(body(Event::FlagsSet, &n)).unwrap(),
        r#"{"user":"u","event":"flagsSet","folder":"INBOX","imap-uidvalidity":1,"imap-uid":5,"flags":["\\Seen"],"keywords":["$Label1"],"unseen":0}"#
    );
}

#[test]
fn body_is_valid_json_for_hostile_input() {
    let n = Notification {
        user: b"u\xff",
        folder: b"INBOX",
        from: Some(b"\x00\x01\"\\\xc3"),
        subject: Some(&[0xe2, 0x80, 0xa8, b'\n', 0xed, 0xa0, 0x80]),
        snippet: Some(b""),
        ..Default::default()
    };
    let b = body(Event::MessageNew, &n);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["snippet"], "");
}
