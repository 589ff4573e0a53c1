//! The new-mail event built from an accepted notification.
//!
//! Mirrors what OX derives from http-notify: the `com/openexchange/push` event properties and
//! the PNS message data (`folder` prefixed with `default0/`, MIME-decoded subject, sender split
//! into e-mail and display name). The mock records the event and fans it out to the user's
//! subscriptions instead of going through OSGi.

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

/// A new-mail notification, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct MailEvent {
    pub context_id: i32,
    pub user_id: i32,
    pub folder: String,
    pub uid: i64,
    pub from: Option<String>,
    pub email: Option<String>,
    pub displayname: Option<String>,
    pub subject: Option<String>,
    pub unread: i64,
}

impl MailEvent {
    pub fn new(
        context_id: i32,
        user_id: i32,
        folder: String,
        uid: i64,
        from: Option<String>,
        subject: Option<String>,
        unread: i64,
    ) -> MailEvent {
        let (displayname, email) = from.as_deref().map(parse_address).unwrap_or((None, None));
        MailEvent {
            context_id,
            user_id,
            folder,
            uid,
            from,
            email,
            displayname,
            subject: subject.map(|s| decode_mime_words(&s)),
            unread,
        }
    }

    /// `default0/<folder>`, OX's full name for the primary account's folder.
    pub fn full_folder(&self) -> String {
        format!("default0/{}", self.folder)
    }

    /// The sender as the mail app shows it: display name, else address, else `(no sender)`.
    pub fn sender(&self) -> String {
        self.displayname
            .clone()
            .or_else(|| self.email.clone())
            .unwrap_or_else(|| "(no sender)".into())
    }

    /// The subject or `(no subject)`.
    pub fn subject_or_default(&self) -> String {
        self.subject
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(no subject)".into())
    }

    /// The `com/openexchange/push` event properties, as OX names them.
    pub fn ox_properties(&self) -> Value {
        json!({
            "topic": "com/openexchange/push",
            "com.openexchange.push.folder": "default0/INBOX",
            "com.openexchange.push.user": self.user_id,
            "com.openexchange.push.context": self.context_id,
            "com.openexchange.push.session": null,
            "com.openexchange.push.ids": self.uid.to_string(),
            "com.openexchange.push.container": [{
                "id": self.uid.to_string(),
                "folder": self.full_folder(),
                "from": self.from,
                "subject": self.subject,
                "unread": self.unread,
            }],
            "com.openexchange.push.noforward": true,
            "pns": {
                "topic": "ox:mail:new",
                "folder": self.full_folder(),
                "id": self.uid.to_string(),
                "email": self.email,
                "displayname": self.displayname,
                "subject": self.subject,
                "unread": (self.unread >= 0).then_some(self.unread),
            }
        })
    }
}

/// Splits `"Name" <addr>` / `Name <addr>` / `addr` into (display name, address), MIME-decoding
/// the name.
pub fn parse_address(raw: &str) -> (Option<String>, Option<String>) {
    let raw = raw.trim();
    if let (Some(lt), true) = (raw.rfind('<'), raw.ends_with('>')) {
        let addr = raw[lt + 1..raw.len() - 1].trim().to_string();
        let name = raw[..lt].trim().trim_matches('"').trim();
        let name = (!name.is_empty()).then(|| decode_mime_words(name));
        return (name, (!addr.is_empty()).then_some(addr));
    }
    if raw.contains('@') && !raw.contains(' ') {
        return (None, Some(raw.to_string()));
    }
    let decoded = decode_mime_words(raw);
    ((!decoded.is_empty()).then_some(decoded), None)
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) for UTF-8, US-ASCII and ISO-8859-1;
/// anything undecodable is kept verbatim.
pub fn decode_mime_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, after) = rest.split_at(start);
        let decoded = decode_one(&after[2..]);
        match decoded {
            Some((text, consumed)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &after[2 + consumed..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &after[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_one(s: &str) -> Option<(String, usize)> {
    let mut parts = s.splitn(3, '?');
    let charset = parts.next()?.to_ascii_lowercase();
    let enc = parts.next()?.to_ascii_uppercase();
    let tail = parts.next()?;
    let end = tail.find("?=")?;
    let text = &tail[..end];
    let consumed = charset.len() + enc.len() + 2 + end + 2;
    let bytes = match enc.as_str() {
        "B" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "Q" => {
            let mut b = Vec::new();
            let mut it = text.bytes();
            while let Some(c) = it.next() {
                match c {
                    b'_' => b.push(b' '),
                    b'=' => {
                        let h = [it.next()?, it.next()?];
                        b.push(u8::from_str_radix(std::str::from_utf8(&h).ok()?, 16).ok()?);
                    }
                    c => b.push(c),
                }
            }
            b
        }
        _ => return None,
    };
    let text = match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8(bytes).ok()?,
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| b as char).collect(),
        _ => return None,
    };
    Some((text, consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_mime_words() {
        assert_eq!(
            parse_address("\"Alice A\" <a@x.org>"),
            (Some("Alice A".into()), Some("a@x.org".into()))
        );
        assert_eq!(parse_address("b@x.org"), (None, Some("b@x.org".into())));
        assert_eq!(
            parse_address("=?UTF-8?B?SsO2cmc=?= <j@x.org>").0.as_deref(),
            Some("Jörg")
        );
        assert_eq!(
            decode_mime_words("=?iso-8859-1?Q?Gr=FC=DFe_aus?= Bonn"),
            "Grüße aus Bonn"
        );
        assert_eq!(decode_mime_words("=?UTF-8?Q?a?= =?UTF-8?Q?b?="), "ab");
        assert_eq!(decode_mime_words("plain =?bogus"), "plain =?bogus");
    }

    #[test]
    fn event_properties_follow_ox_names() {
        let e = MailEvent::new(
            1,
            3,
            "INBOX".into(),
            42,
            Some("Bob <b@x.org>".into()),
            None,
            -1,
        );
        let p = e.ox_properties();
        assert_eq!(p["com.openexchange.push.folder"], "default0/INBOX");
        assert_eq!(p["com.openexchange.push.ids"], "42");
        assert_eq!(p["com.openexchange.push.noforward"], true);
        assert_eq!(p["pns"]["unread"], Value::Null);
        assert_eq!(e.sender(), "Bob");
        assert_eq!(e.subject_or_default(), "(no subject)");
    }
}
