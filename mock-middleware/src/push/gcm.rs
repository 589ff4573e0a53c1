//! Legacy GCM / FCM legacy HTTP (`key=` auth), kept for OX's compatibility mode only.
//!
//! One token per request (`registration_ids` of one) so the per-subscription outcome is direct;
//! results are index-aligned, a `registration_id` is the canonical token that replaces ours.

use std::time::Duration;

use serde_json::{json, Value};

use super::payload::{Kind, Message};
use super::{json_attempt, Attempt, BoxFuture, Outcome, Provider, SentRequest};

/// Classifies a legacy answer for the token at index 0.
pub fn classify(status: u16, body: &Value, after: Option<Duration>) -> (Outcome, String) {
    match status {
        200 => {}
        401 => return (Outcome::Credential, "Unauthorized".into()),
        s if s >= 500 => return (Outcome::Retry(after), format!("HTTP {s}")),
        s => return (Outcome::DropMessage, format!("HTTP {s}")),
    }
    let r = &body["results"][0];
    if let Some(e) = r["error"].as_str() {
        let o = match e {
            "Unavailable" | "InternalServerError" | "DeviceMessageRateExceeded" => {
                Outcome::Retry(after)
            }
            "MessageTooBig" | "InvalidDataKey" | "InvalidTtl" => Outcome::DropMessage,
            // NotRegistered, InvalidRegistration, MissingRegistration, MismatchSenderId,
            // InvalidPackageName and, as OX did, any other error: drop the token.
            _ => Outcome::DropToken,
        };
        return (o, e.to_string());
    }
    match r["registration_id"].as_str() {
        Some(new) if !new.is_empty() => (Outcome::Replace(new.to_string()), "canonical id".into()),
        _ if r["message_id"].is_string() => (Outcome::Delivered, String::new()),
        _ => (Outcome::DropMessage, "result without message_id".into()),
    }
}

/// The legacy sender.
pub struct Gcm {
    pub client: super::client::ProviderClient,
    pub url: String,
    pub key: crate::config::Secret,
}

impl Provider for Gcm {
    fn name(&self) -> &'static str {
        "gcm"
    }
    fn kind(&self) -> Kind {
        Kind::Data
    }
    fn send<'a>(&'a self, token: &'a str, msg: &'a Message) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let url = format!("{}/fcm/send", self.url.trim_end_matches('/'));
            let Message::Data { data } = msg else {
                return Attempt {
                    outcome: Outcome::DropMessage,
                    status: None,
                    reason: "not a data message".into(),
                    url,
                    request: SentRequest::None,
                };
            };
            let body = json!({"registration_ids": [token], "data": data, "priority": "high", "collapse_key": "new-mail"});
            let resp = self
                .client
                .get()
                .post(&url)
                .header("authorization", format!("key={}", self.key.expose()))
                .json(&body)
                .send()
                .await;
            json_attempt(resp, url, SentRequest::Json(body), classify).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_results() {
        let ok = json!({"results": [{"message_id": "1"}]});
        assert_eq!(classify(200, &ok, None).0, Outcome::Delivered);
        let canon = json!({"results": [{"message_id": "1", "registration_id": "NEW"}]});
        assert_eq!(
            classify(200, &canon, None).0,
            Outcome::Replace("NEW".into())
        );
        let gone = json!({"results": [{"error": "NotRegistered"}]});
        assert_eq!(classify(200, &gone, None).0, Outcome::DropToken);
        let busy = json!({"results": [{"error": "Unavailable"}]});
        assert_eq!(classify(200, &busy, None).0, Outcome::Retry(None));
        assert_eq!(classify(401, &Value::Null, None).0, Outcome::Credential);
        assert_eq!(classify(502, &Value::Null, None).0, Outcome::Retry(None));
    }
}
