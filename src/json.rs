//! The notification body, byte for byte as Dovecot's built-in `ox` driver writes it.
//!
//! Dovecot builds the body with `str_append` and `json_append_escaped`, not with a
//! JSON library, so the exact bytes (field order, presence rules, escaping) are a
//! contract of their own. serde_json cannot reproduce them: it takes `str` only (the
//! header values here are raw bytes, possibly invalid UTF-8), writes upper-case
//! `\u001F`, and leaves U+2028/U+2029 raw. Hence this small writer.

/// Whether control characters are escaped with upper-case hex (`\u001B`), as
/// Dovecot 2.4's `json_append_escaped` does; 2.3 writes `\u001b`. Decided by
/// the headers the plugin is built against: byte-identical means identical to
/// the built-in driver of the Dovecot that runs it.
pub const UPPER_HEX: bool = crate::sys::DOVECOT_2_4;

/// Appends `bytes` to `out` escaped exactly as the running Dovecot's
/// `json_append_escaped` ([`escape_with`] with [`UPPER_HEX`]).
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    escape_with(out, bytes, UPPER_HEX);
}

/// Appends `bytes` to `out` escaped as Dovecot's `json_append_escaped`:
/// `"` `\` `\b` `\f` `\n` `\r` `\t` as such, other bytes below 0x20 as `\u00xx` with
/// lower-case hex (2.3) or upper-case (`upper`, 2.4), U+2028/U+2029 as `\u2028`/`\u2029`, every byte of invalid UTF-8
/// as a raw U+FFFD (the bytes EF BF BD, not the escape `\ufffd`: Dovecot appends
/// `UNICODE_REPLACEMENT_CHAR_UTF8`; the differential test pins this), everything
/// else (0x7F and all valid non-ASCII) raw.
pub fn escape_with(out: &mut Vec<u8>, bytes: &[u8], upper: bool) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_str(out, valid, upper);
                return;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `valid_up_to` guarantees this prefix is UTF-8.
                escape_str(out, std::str::from_utf8(valid).unwrap_or_default(), upper);
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

fn escape_str(out: &mut Vec<u8>, s: &str, upper: bool) {
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
                let hex = if upper {
                    format!("\\u{:04X}", c as u32)
                } else {
                    format!("\\u{:04x}", c as u32)
                };
                out.extend_from_slice(hex.as_bytes());
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
mod tests;
