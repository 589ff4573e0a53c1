//! Subject and sender as a mail client shows them: RFC 5322 unfolding and RFC 2047 encoded words
//! in every charset of the WHATWG Encoding Standard, through Stalwart's `mail-parser`
//! (feature `full_encoding`, i.e. `encoding_rs` with its label lookup) instead of hand-written
//! decoding.
//!
//! Dovecot hands the header values over as they stand in the message: folded, possibly with
//! encoded words. The values are put back into a one-header block and parsed like a message
//! header, then every run of whitespace (CR, LF, tabs, spaces) collapses to one space, as OX
//! shows them. An encoded word in an unknown charset, or a broken one, stays as raw text.

use mail_parser::{HeaderValue, MessageParser};

/// Puts `raw` into a header block `Name: raw` that a parser reads as one header: every line
/// break becomes a fold, so a value with bare LFs cannot end the header early.
fn header_block(name: &str, raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + name.len() + 8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let mut prev_cr = false;
    for b in raw.bytes() {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n ");
                prev_cr = true;
                continue;
            }
            b'\n' if prev_cr => {}
            b'\n' => out.extend_from_slice(b"\r\n "),
            0 => out.push(b' '),
            b => out.push(b),
        }
        prev_cr = false;
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Collapses every run of whitespace (including CR and LF) to one space and trims the ends.
pub fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Encoded words (`=?charset?B|Q?text?=`), for finding those whose charset no decoder knows.
fn encoded_word() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"=\?([^?\s]+)\?[bBqQ]\?[^?\s]*\?=").expect("static regex"))
}

/// True when the WHATWG Encoding Standard (via `encoding_rs`'s label lookup) knows the charset
/// of an encoded word; an RFC 2231 language suffix (`charset*lang`) is ignored.
fn known_charset(label: &str) -> bool {
    let label = label.split('*').next().unwrap_or(label);
    encoding_rs::Encoding::for_label(label.as_bytes()).is_some()
        || label.eq_ignore_ascii_case("utf-7")
}

fn decode_unstructured(raw: &str) -> String {
    let block = header_block("Subject", raw);
    MessageParser::default()
        .parse_headers(&block)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| raw.to_string())
}

/// The subject as a client shows it: unfolded, decoded, whitespace runs collapsed. Encoded words
/// in a charset nobody knows stay as they are.
pub fn decode_subject(raw: &str) -> String {
    // Nothing folded, nothing encoded: only whitespace runs to collapse.
    if !raw.contains("=?") && !raw.bytes().any(|b| b < 0x20) {
        return collapse_ws(raw);
    }
    let mut out = String::new();
    let mut rest = 0;
    for m in encoded_word().captures_iter(raw) {
        let (whole, charset) = (m.get(0).expect("match"), &m[1]);
        if known_charset(charset) {
            continue;
        }
        out.push_str(&decode_unstructured(&raw[rest..whole.start()]));
        out.push(' ');
        out.push_str(whole.as_str());
        out.push(' ');
        rest = whole.end();
    }
    out.push_str(&decode_unstructured(&raw[rest..]));
    collapse_ws(&out)
}

/// `Name <addr>` or `addr` without anything that needs a real parser (encoded words, quotes,
/// comments, groups, escapes, line breaks): the common case, split directly.
fn simple_from(raw: &str) -> Option<(Option<String>, Option<String>)> {
    let special = |c: char| matches!(c, '"' | '(' | ')' | ',' | ';' | ':' | '\\') || c.is_control();
    if raw.contains("=?") || raw.chars().any(special) {
        return None;
    }
    let raw = raw.trim();
    match raw.strip_suffix('>').and_then(|r| r.rsplit_once('<')) {
        Some((name, addr)) if !name.contains(['<', '>', '@']) && !addr.contains(['<', ' ']) => {
            let name = collapse_ws(name);
            let addr = addr.trim();
            Some((
                (!name.is_empty()).then_some(name),
                (!addr.is_empty()).then(|| addr.to_string()),
            ))
        }
        None if raw.contains('@') && !raw.contains([' ', '<', '>']) => {
            Some((None, Some(raw.to_string())))
        }
        _ => None,
    }
}

/// Splits a `From` value into (display name, address), both decoded and unfolded.
pub fn parse_from(raw: &str) -> (Option<String>, Option<String>) {
    if let Some(simple) = simple_from(raw) {
        return simple;
    }
    let block = header_block("From", raw);
    let parsed = MessageParser::default().parse_headers(&block);
    let first = parsed.as_ref().and_then(|m| match m.header("From") {
        Some(HeaderValue::Address(a)) => a.first().map(|x| {
            (
                x.name().map(collapse_ws).filter(|n| !n.is_empty()),
                x.address()
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            )
        }),
        _ => None,
    });
    match first {
        Some((name, addr)) if name.is_some() || addr.is_some() => (name, addr),
        _ => {
            // Not an address at all (a bare name, or garbage): show it decoded as text.
            let text = decode_subject(raw);
            ((!text.is_empty()).then_some(text), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_subject_is_unfolded_and_whitespace_collapsed() {
        assert_eq!(
            decode_subject("Re: Planning agenda,\r\n travel,\r\n\tbudget  and   more"),
            "Re: Planning agenda, travel, budget and more"
        );
        assert_eq!(decode_subject("a\nb\rc"), "a b c");
    }

    #[test]
    fn every_whatwg_charset_is_decoded() {
        let cases = [
            (
                "=?windows-1252?Q?Rechnung_=96_99_=80_f=E4llig?=",
                "Rechnung – 99 € fällig",
            ),
            ("=?ISO-8859-15?Q?Preis_=A4_10?=", "Preis € 10"),
            (
                "=?ISO-2022-JP?B?GyRCRnxLXDhsJE4lRiU5JUgbKEI=?=",
                "日本語のテスト",
            ),
            ("=?Shift_JIS?B?k/qWe4zq?=", "日本語"),
            ("=?EUC-KR?B?x9Gxub7u?=", "한국어"),
            ("=?GB18030?B?1tDOxA==?=", "中文"),
            ("=?KOI8-R?B?8NLJ18XU?=", "Привет"),
            ("=?Big5?B?pKSk5Q==?=", "中文"),
            (
                "=?UTF-8?B?SsO2cmc=?= =?utf-8?q?_M=C3=BCller?=",
                "Jörg Müller",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_subject(raw), want, "{raw}");
        }
    }

    #[test]
    fn unknown_charset_and_broken_words_show_the_raw_text() {
        assert_eq!(decode_subject("=?x-unknown?Q?abc?="), "=?x-unknown?Q?abc?=");
        assert_eq!(decode_subject("plain =?bogus"), "plain =?bogus");
    }

    #[test]
    fn senders() {
        assert_eq!(
            parse_from("\"Alice A\" <a@x.org>"),
            (Some("Alice A".into()), Some("a@x.org".into()))
        );
        assert_eq!(parse_from("b@x.org"), (None, Some("b@x.org".into())));
        assert_eq!(
            parse_from("=?windows-1252?Q?J=F6rg_=96_IT?=\r\n <j@x.org>")
                .0
                .as_deref(),
            Some("Jörg – IT")
        );
        assert_eq!(parse_from("Just A Name").0.as_deref(), Some("Just A Name"));
        assert_eq!(
            parse_from("Bench   User <bench@example.org>"),
            (Some("Bench User".into()), Some("bench@example.org".into()))
        );
        assert_eq!(
            parse_from("\"Doe, John\" <j@x.org>"),
            (Some("Doe, John".into()), Some("j@x.org".into()))
        );
        assert_eq!(parse_from(""), (None, None));
    }
}
