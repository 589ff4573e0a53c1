//! Payload generators per client and transport, with safe truncation to 4096 bytes.
//!
//! OX sends only when a message generator exists for the subscription's client
//! (`NO_SUCH_GENERATOR` otherwise); the mock has generators for `open-xchange-mailapp` and the
//! OX Mail v2 facade (spec §7.4). A payload that would exceed the provider limit is shortened by
//! cutting the subject first, then the sender, always at a character boundary; one that still
//! does not fit is never sent.

use serde_json::{json, Map, Value};

use crate::event::MailEvent;

/// Provider limit for APNs and FCM payloads.
pub const MAX_PAYLOAD: usize = 4096;

/// Which wire format to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Apns,
    Data,
}

/// A message ready for a provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Apns {
        body: Value,
        /// `body` serialised once: what is sent, and what its size is.
        text: bytes::Bytes,
        push_type: &'static str,
        priority: u8,
        collapse_id: String,
    },
    Data {
        data: Map<String, Value>,
    },
}

impl Message {
    pub fn size(&self) -> usize {
        match self {
            Message::Apns { text, .. } => text.len(),
            Message::Data { data } => Value::Object(data.clone()).to_string().len(),
        }
    }
}

/// Why no message could be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    NoGenerator,
    TooLarge(usize),
}

fn is_facade(client: &str) -> bool {
    client.starts_with("open-xchange-mobile-api-facade")
}

/// An APNs alert: "sender\nsubject" with the given sound, the unread count as badge if known.
fn apns_alert(
    e: &MailEvent,
    subject: &str,
    sender: &str,
    sound: &str,
    cid: String,
    collapse_id: String,
) -> Message {
    let mut aps = json!({"alert": format!("{sender}\n{subject}"), "sound": sound});
    if e.unread >= 0 {
        aps["badge"] = json!(e.unread);
    }
    apns_message(json!({"aps": aps, "cid": cid}), "alert", 10, collapse_id)
}

fn apns_message(
    body: Value,
    push_type: &'static str,
    priority: u8,
    collapse_id: String,
) -> Message {
    let text = serde_json::to_vec(&body).unwrap_or_default().into();
    Message::Apns {
        body,
        text,
        push_type,
        priority,
        collapse_id,
    }
}

fn render(
    client: &str,
    kind: Kind,
    e: &MailEvent,
    subject: &str,
    sender: &str,
) -> Result<Message, BuildError> {
    let mailapp = client == "open-xchange-mailapp";
    if !mailapp && !is_facade(client) {
        return Err(BuildError::NoGenerator);
    }
    let cid = if mailapp {
        format!("{}:{}", e.full_folder(), e.uid)
    } else {
        format!("{}/{}", e.full_folder(), e.uid)
    };
    let collapse_id: String = cid.chars().take(64).collect();
    Ok(match (kind, mailapp) {
        (Kind::Apns, true) => apns_alert(e, subject, sender, "beep.wav", cid, collapse_id),
        (Kind::Apns, false) if e.subject.as_deref().is_some_and(|s| !s.is_empty()) => {
            apns_alert(e, subject, sender, "default", cid, collapse_id)
        }
        (Kind::Apns, false) => apns_message(
            json!({"aps": {"content-available": 1}, "cid": cid}),
            "background",
            5,
            collapse_id,
        ),
        (Kind::Data, true) => {
            let mut d = Map::new();
            d.insert("cid".into(), json!(cid));
            d.insert("subject".into(), json!(subject));
            d.insert("sender".into(), json!(sender));
            if e.unread >= 0 {
                d.insert("unread".into(), json!(e.unread.to_string()));
            }
            Message::Data { data: d }
        }
        (Kind::Data, false) => {
            let mut d = Map::new();
            d.insert("cid".into(), json!(cid));
            d.insert("folder".into(), json!(e.full_folder()));
            d.insert("id".into(), json!(e.uid.to_string()));
            d.insert("subject".into(), json!(subject));
            if let Some(v) = &e.email {
                d.insert("email".into(), json!(v));
            }
            d.insert("displayname".into(), json!(sender));
            if e.unread >= 0 {
                d.insert("unread".into(), json!(e.unread.to_string()));
            }
            Message::Data { data: d }
        }
    })
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let ell = '…';
    let budget = max.saturating_sub(ell.len_utf8());
    let mut end = budget.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_string();
    if max >= ell.len_utf8() {
        out.push(ell);
    }
    out
}

/// Builds the message for `client` in `kind`, truncated to [`MAX_PAYLOAD`].
pub fn build(client: &str, kind: Kind, e: &MailEvent) -> Result<Message, BuildError> {
    let mut subject = e.subject_or_default();
    let mut sender = e.sender();
    for _ in 0..64 {
        let m = render(client, kind, e, &subject, &sender)?;
        let size = m.size();
        if size <= MAX_PAYLOAD {
            return Ok(m);
        }
        let over = size - MAX_PAYLOAD;
        if !subject.is_empty() {
            subject = truncate(&subject, subject.len().saturating_sub(over.max(4)));
            if subject == "…" {
                subject.clear();
            }
        } else if !sender.is_empty() {
            sender = truncate(&sender, sender.len().saturating_sub(over.max(4)));
            if sender == "…" {
                sender.clear();
            }
        } else {
            return Err(BuildError::TooLarge(size));
        }
    }
    let m = render(client, kind, e, &subject, &sender)?;
    Err(BuildError::TooLarge(m.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(subject: &str, from: &str, unread: i64) -> MailEvent {
        MailEvent::new(
            1,
            3,
            "INBOX".into(),
            7,
            Some(from.into()),
            Some(subject.into()),
            unread,
        )
    }

    #[test]
    fn mailapp_apns_payload_as_spec() {
        let m = build(
            "open-xchange-mailapp",
            Kind::Apns,
            &ev("Hi", "Bob <b@x.org>", 4),
        )
        .unwrap();
        let Message::Apns {
            body,
            push_type,
            priority,
            ..
        } = m
        else {
            panic!()
        };
        assert_eq!(
            body,
            json!({"aps":{"alert":"Bob\nHi","sound":"beep.wav","badge":4},"cid":"default0/INBOX:7"})
        );
        assert_eq!((push_type, priority), ("alert", 10));
        let m = build("open-xchange-mailapp", Kind::Apns, &ev("Hi", "b@x.org", -1)).unwrap();
        let Message::Apns { body, .. } = m else {
            panic!()
        };
        assert!(
            body["aps"].get("badge").is_none(),
            "badge omitted when unread unknown"
        );
    }

    #[test]
    fn data_payload_has_only_strings_and_facade_silent_variant() {
        let Message::Data { data } =
            build("open-xchange-mailapp", Kind::Data, &ev("S", "A <a@x>", 2)).unwrap()
        else {
            panic!()
        };
        assert!(data.values().all(Value::is_string));
        assert_eq!(data["unread"], "2");
        let Message::Apns {
            push_type,
            priority,
            body,
            ..
        } = build(
            "open-xchange-mobile-api-facade-ios",
            Kind::Apns,
            &ev("", "A <a@x>", 2),
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!((push_type, priority), ("background", 5));
        assert_eq!(body["aps"]["content-available"], 1);
        assert_eq!(
            build("USM-EAS", Kind::Apns, &ev("", "", 0)),
            Err(BuildError::NoGenerator)
        );
    }

    #[test]
    fn oversized_subject_is_cut_at_char_boundary_and_fits() {
        let long = "ü\"".repeat(3000);
        for kind in [Kind::Apns, Kind::Data] {
            let m = build(
                "open-xchange-mailapp",
                kind,
                &ev(&long, &"S".repeat(6000), 1),
            )
            .unwrap();
            assert!(m.size() <= MAX_PAYLOAD, "{}", m.size());
            assert!(
                m.size() > MAX_PAYLOAD - 64,
                "not cut needlessly short: {}",
                m.size()
            );
        }
        assert_eq!(truncate("äbcd", 4), "…");
        assert_eq!(truncate("äbcdef", 6), "äb…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn folder_too_long_is_never_sent() {
        let e = MailEvent::new(1, 3, "F".repeat(5000), 7, None, None, 1);
        assert!(matches!(
            build("open-xchange-mailapp", Kind::Apns, &e),
            Err(BuildError::TooLarge(_))
        ));
    }
}
