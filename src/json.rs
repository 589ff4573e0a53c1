//! The notification body, byte for byte as Dovecot's built-in `ox` driver writes it.
//!
//! Dovecot builds the body with `str_append` and `json_append_escaped`, not with a
//! JSON library, so the exact bytes (field order, presence rules, escaping) are a
//! contract of their own. serde_json cannot reproduce them: it takes `str` only (the
//! header values here are raw bytes, possibly invalid UTF-8), writes upper-case
//! `\u001F`, and leaves U+2028/U+2029 raw. Hence this small writer.

/// Appends `bytes` to `out` escaped exactly as Dovecot 2.3's `json_append_escaped`:
/// `"` `\` `\b` `\f` `\n` `\r` `\t` as such, other bytes below 0x20 as `\u00xx` with
/// lower-case hex, U+2028/U+2029 as `\u2028`/`\u2029`, every byte of invalid UTF-8
/// as a raw U+FFFD (the bytes EF BF BD, not the escape `\ufffd`: Dovecot appends
/// `UNICODE_REPLACEMENT_CHAR_UTF8`; the differential test pins this), everything
/// else (0x7F and all valid non-ASCII) raw.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_str(out, valid);
                return;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `valid_up_to` guarantees this prefix is UTF-8.
                escape_str(out, std::str::from_utf8(valid).unwrap_or_default());
                // Dovecot replaces each invalid byte on its own (it decodes one
                // byte at a time when a sequence is broken), so a truncated
                // 3-byte sequence gives as many U+FFFD as it has bytes.
                let bad = e.error_len().unwrap_or(after.len()).max(1);
                for _ in 0..bad {
                    out.extend_from_slice("\u{fffd}".as_bytes());
                }
                rest = &after[bad..];
            }
        }
    }
}

fn escape_str(out: &mut Vec<u8>, s: &str) {
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Which mail event a notification reports. `MessageNew` is the built-in driver's
/// only event; the others are this project's opt-in extensions (`events=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    MessageNew,
    MessageRead,
    MessageTrash,
    MessageExpunge,
    FlagsSet,
    FlagsClear,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::MessageNew,
        Event::MessageRead,
        Event::MessageTrash,
        Event::MessageExpunge,
        Event::FlagsSet,
        Event::FlagsClear,
    ];

    /// The name on the wire and in `events=` (the framework's event name with a
    /// lower-case first letter, as the built-in driver writes `messageNew`).
    pub fn wire_name(self) -> &'static str {
        match self {
            Event::MessageNew => "messageNew",
            Event::MessageRead => "messageRead",
            Event::MessageTrash => "messageTrash",
            Event::MessageExpunge => "messageExpunge",
            Event::FlagsSet => "flagsSet",
            Event::FlagsClear => "flagsClear",
        }
    }

    pub fn from_wire_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.wire_name() == name)
    }

    /// Bit used in masks exchanged with the C shim.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Everything the body is made of, borrowed from the shim's call.
#[derive(Clone, Debug, Default)]
pub struct Notification<'a> {
    pub user: &'a [u8],
    pub folder: &'a [u8],
    pub uid_validity: u32,
    pub uid: u32,
    pub from: Option<&'a [u8]>,
    pub subject: Option<&'a [u8]>,
    pub snippet: Option<&'a [u8]>,
    pub unseen: Option<u32>,
    /// System flags (`\Seen`, ...) set or cleared, for flagsSet/flagsClear.
    pub flags: Vec<&'a [u8]>,
    /// Keywords set or cleared, for flagsSet/flagsClear.
    pub keywords: Vec<&'a [u8]>,
}

fn push_str_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    escape_into(out, value);
    out.push(b'"');
}

fn push_list_field(out: &mut Vec<u8>, name: &str, values: &[&[u8]]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        escape_into(out, v);
        out.push(b'"');
    }
    out.push(b']');
}

/// Builds the body. For `MessageNew` this is the built-in driver's body exactly:
/// `user, event, folder, imap-uidvalidity, imap-uid[, from][, subject][, snippet][, unseen]`.
/// Other events keep that head and add only `flags`/`keywords` (flagsSet/flagsClear)
/// before `unseen`.
pub fn body(event: Event, n: &Notification<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        160 + n.from.map_or(0, <[u8]>::len)
            + n.subject.map_or(0, <[u8]>::len)
            + n.snippet.map_or(0, <[u8]>::len),
    );
    out.extend_from_slice(b"{\"user\":\"");
    escape_into(&mut out, n.user);
    out.extend_from_slice(b"\",\"event\":\"");
    out.extend_from_slice(event.wire_name().as_bytes());
    out.extend_from_slice(b"\",\"folder\":\"");
    escape_into(&mut out, n.folder);
    out.extend_from_slice(
        format!(
            "\",\"imap-uidvalidity\":{},\"imap-uid\":{}",
            n.uid_validity, n.uid
        )
        .as_bytes(),
    );
    if let Some(from) = n.from {
        push_str_field(&mut out, "from", from);
    }
    if let Some(subject) = n.subject {
        push_str_field(&mut out, "subject", subject);
    }
    if let Some(snippet) = n.snippet {
        push_str_field(&mut out, "snippet", snippet);
    }
    if matches!(event, Event::FlagsSet | Event::FlagsClear) {
        push_list_field(&mut out, "flags", &n.flags);
        push_list_field(&mut out, "keywords", &n.keywords);
    }
    if let Some(unseen) = n.unseen {
        out.extend_from_slice(format!(",\"unseen\":{unseen}").as_bytes());
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(b: &[u8]) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, b);
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
}
