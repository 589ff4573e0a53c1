//! FCM HTTP v1: service-account JSON → RS256 assertion → OAuth2 bearer (cached) → send.
//!
//! The access token is fetched once and reused until shortly before it expires (single-flight
//! behind an async mutex); a `401` from the send endpoint drops it and resends once. Errors are
//! classified by `details[].errorCode` first, then by HTTP status (push-providers.md §2.3).

use std::path::Path;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Value};

use super::apns::unix_now;
use super::payload::{Kind, Message};
use super::{json_attempt, Attempt, BoxFuture, Outcome, Provider, SentRequest};

/// The FCM scope requested in the assertion.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a Google service-account file that the sender uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

impl ServiceAccount {
    pub fn load(path: &Path) -> Result<ServiceAccount, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: is not a service-account JSON file: {e}",
                path.display()
            )
        })
    }
}

/// Classifies an FCM v1 answer.
pub fn classify(status: u16, body: &Value, after: Option<Duration>) -> (Outcome, String) {
    if status == 200 {
        return (Outcome::Delivered, String::new());
    }
    let err = &body["error"];
    let details = err["details"].as_array().cloned().unwrap_or_default();
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .map(str::to_string);
    let token_violation = details.iter().any(|d| {
        d["fieldViolations"].as_array().is_some_and(|v| {
            v.iter()
                .any(|f| f["field"].as_str() == Some("message.token"))
        })
    }) || err["message"]
        .as_str()
        .is_some_and(|m| m.contains("registration token"));
    let reason = code
        .clone()
        .or_else(|| err["status"].as_str().map(str::to_string))
        .unwrap_or_default();
    let outcome = match code.as_deref() {
        Some("UNREGISTERED" | "SENDER_ID_MISMATCH") => Outcome::DropToken,
        Some("INVALID_ARGUMENT") if token_violation => Outcome::DropToken,
        Some("INVALID_ARGUMENT") => Outcome::DropMessage,
        Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" | "UNSPECIFIED_ERROR") => {
            Outcome::Retry(after)
        }
        Some("THIRD_PARTY_AUTH_ERROR") => Outcome::Credential,
        _ => match status {
            401 | 403 => Outcome::Credential,
            429 => Outcome::Retry(after),
            s if s >= 500 => Outcome::Retry(after),
            _ => Outcome::DropMessage,
        },
    };
    (outcome, reason)
}

/// The FCM v1 sender.
pub struct Fcm {
    client: super::client::ProviderClient,
    send_url: String,
    token_url: String,
    sa: ServiceAccount,
    key: EncodingKey,
    cache: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    /// `token_url` overrides the service account's `token_uri` when set (`mock.fcm.oauth.url`).
    pub fn new(
        client: super::client::ProviderClient,
        fcm_base: &str,
        token_url: Option<&str>,
        sa: ServiceAccount,
    ) -> Result<Fcm, String> {
        let key = EncodingKey::from_rsa_pem(sa.private_key.as_bytes())
            .map_err(|e| format!("service account private_key is unusable: {e}"))?;
        Ok(Fcm {
            client,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                fcm_base.trim_end_matches('/'),
                sa.project_id
            ),
            token_url: token_url
                .map(str::to_string)
                .unwrap_or_else(|| sa.token_uri.clone()),
            sa,
            key,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The cached access token, fetching a new one when absent or within 60 s (or 10 % of its
    /// lifetime) of expiry.
    async fn access_token(&self) -> Result<String, String> {
        let mut c = self.cache.lock().await;
        if let Some((t, exp)) = c.as_ref() {
            if Instant::now() < *exp {
                return Ok(t.clone());
            }
        }
        let now = unix_now();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(self.sa.private_key_id.clone());
        let claims = json!({"iss": self.sa.client_email, "scope": SCOPE, "aud": self.token_url, "iat": now, "exp": now + 3600});
        let assertion = jsonwebtoken::encode(&h, &claims, &self.key)
            .map_err(|e| format!("assertion signing failed: {e}"))?;
        let resp = self
            .client
            .get()
            .post(&self.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("token endpoint unreachable: {e}"))?;
        let status = resp.status();
        let v: Value = super::bounded_json(resp)
            .await
            .map_err(|e| format!("token endpoint answered no usable JSON: {e}"))?;
        let (Some(tok), true) = (v["access_token"].as_str(), status.is_success()) else {
            return Err(format!("token endpoint refused the assertion ({status})"));
        };
        let life = v["expires_in"].as_u64().unwrap_or(3600);
        let margin = (life / 10).min(60);
        *c = Some((
            tok.to_string(),
            Instant::now() + Duration::from_secs(life.saturating_sub(margin)),
        ));
        Ok(tok.to_string())
    }

    async fn once(&self, token: &str, msg: &Message) -> Attempt {
        let url = self.send_url.clone();
        let Message::Data { data } = msg else {
            return Attempt {
                outcome: Outcome::DropMessage,
                status: None,
                reason: "not a data message".into(),
                url,
                request: SentRequest::None,
            };
        };
        let body =
            json!({"message": {"token": token, "data": data, "android": {"priority": "HIGH"}}});
        let bearer = match self.access_token().await {
            Ok(t) => t,
            Err(e) => {
                return Attempt {
                    outcome: Outcome::Retry(None),
                    status: None,
                    reason: e,
                    url,
                    request: SentRequest::Json(body),
                }
            }
        };
        let resp = self
            .client
            .get()
            .post(&url)
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await;
        json_attempt(resp, url, SentRequest::Json(body), classify).await
    }
}

impl Provider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }
    fn kind(&self) -> Kind {
        Kind::Data
    }
    fn send<'a>(&'a self, token: &'a str, msg: &'a Message) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let a = self.once(token, msg).await;
            if a.status == Some(401) {
                *self.cache.lock().await = None;
                return self.once(token, msg).await;
            }
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: &str, field: Option<&str>) -> Value {
        let mut details = vec![
            json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}),
        ];
        if let Some(f) = field {
            details.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": f, "description": "x"}]}));
        }
        json!({"error": {"code": status, "message": "m", "status": "S", "details": details}})
    }

    #[test]
    fn classification_follows_policy() {
        assert_eq!(
            classify(404, &err(404, "UNREGISTERED", None), None).0,
            Outcome::DropToken
        );
        assert_eq!(
            classify(
                400,
                &err(400, "INVALID_ARGUMENT", Some("message.token")),
                None
            )
            .0,
            Outcome::DropToken
        );
        assert_eq!(
            classify(
                400,
                &err(400, "INVALID_ARGUMENT", Some("message.data")),
                None
            )
            .0,
            Outcome::DropMessage
        );
        assert_eq!(
            classify(403, &err(403, "SENDER_ID_MISMATCH", None), None).0,
            Outcome::DropToken
        );
        let d = Some(Duration::from_secs(1));
        assert_eq!(
            classify(429, &err(429, "QUOTA_EXCEEDED", None), d).0,
            Outcome::Retry(d)
        );
        assert_eq!(
            classify(503, &err(503, "UNAVAILABLE", None), None).0,
            Outcome::Retry(None)
        );
        assert_eq!(
            classify(401, &json!({"error": {"status": "UNAUTHENTICATED"}}), None),
            (Outcome::Credential, "UNAUTHENTICATED".into())
        );
        assert_eq!(
            classify(200, &json!({"name": "x"}), None).0,
            Outcome::Delivered
        );
    }
}
