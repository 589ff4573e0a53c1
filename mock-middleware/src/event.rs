//! The new-mail event built from an accepted notification.
//!
//! Mirrors what OX derives from http-notify: the `com/openexchange/push` event properties and
//! the PNS message data (`folder` prefixed with `default0/`, MIME-decoded subject, sender split
//! into e-mail and display name). The mock records the event and fans it out to the user's
//! subscriptions instead of going through OSGi.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A new-mail notification, parsed.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        let (displayname, email) = from
            .as_deref()
            .map(crate::mime::parse_from)
            .unwrap_or((None, None));
        MailEvent {
            context_id,
            user_id,
            folder,
            uid,
            from,
            email,
            displayname,
            subject: subject.map(|s| crate::mime::decode_subject(&s)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
