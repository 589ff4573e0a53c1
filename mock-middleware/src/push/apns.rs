//! APNs over HTTP/2: token (ES256 JWT) or certificate (PKCS#12) authentication.
//!
//! One JWT per (key id, team) is shared by all requests and refreshed after 50 minutes (Apple:
//! at most every 20, at least every 60 minutes); an `ExpiredProviderToken` answer forces one
//! early refresh and one resend. Answers are classified by status first, then reason, per
//! push-providers.md §1.4.

use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::payload::{Kind, Message};
use super::{Attempt, BoxFuture, Outcome, Provider, SentRequest};

/// Seconds after which a cached provider token is replaced.
pub const JWT_REFRESH_S: u64 = 50 * 60;

/// Signs and caches the APNs provider token.
pub struct JwtSigner {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    cache: Mutex<Option<(String, u64)>>,
}

impl JwtSigner {
    /// `p8_pem` is Apple's `.p8` file (PKCS#8 PEM, P-256).
    pub fn new(
        p8_pem: &[u8],
        key_id: &str,
        team_id: &str,
    ) -> Result<JwtSigner, jsonwebtoken::errors::Error> {
        Ok(JwtSigner {
            key: EncodingKey::from_ec_pem(p8_pem)?,
            key_id: key_id.into(),
            team_id: team_id.into(),
            cache: Mutex::new(None),
        })
    }

    /// The token to use at UNIX time `now`; signs a new one when none is cached or the cached
    /// one is [`JWT_REFRESH_S`] old.
    pub fn token(&self, now: u64) -> Result<String, jsonwebtoken::errors::Error> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tok, iat)) = c.as_ref() {
            if now.saturating_sub(*iat) < JWT_REFRESH_S {
                return Ok(tok.clone());
            }
        }
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.key_id.clone());
        let tok = jsonwebtoken::encode(&h, &json!({"iss": self.team_id, "iat": now}), &self.key)?;
        *c = Some((tok.clone(), now));
        Ok(tok)
    }

    /// Drops the cached token (after `ExpiredProviderToken`).
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Classifies an APNs answer.
pub fn classify(status: u16, reason: &str, after: Option<Duration>) -> Outcome {
    match (status, reason) {
        (200, _) => Outcome::Delivered,
        (400, "BadDeviceToken" | "DeviceTokenNotForTopic" | "MissingDeviceToken") => {
            Outcome::DropToken
        }
        (400, "IdleTimeout") => Outcome::Retry(after),
        (410, _) => Outcome::DropToken,
        (403, _) => Outcome::Credential,
        (429, _) => Outcome::Retry(after),
        (s, _) if s >= 500 => Outcome::Retry(after),
        _ => Outcome::DropMessage,
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The APNs sender.
pub struct Apns {
    pub client: super::h2::H2Client,
    pub base: String,
    pub topic: std::sync::Arc<str>,
    pub expiration_s: u64,
    /// `None` for certificate auth (the identity is in `client`).
    pub jwt: Option<JwtSigner>,
}

/// An APNs device token as Apple issues them: hex digits, an even number of them, at most 200
/// (100 bytes, the largest Apple ever allowed; today's tokens are 64). Anything else would be
/// put into the request path unchecked, so it is never sent.
pub fn valid_token(token: &str) -> bool {
    (2..=200).contains(&token.len())
        && token.len() % 2 == 0
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Apns {
    async fn once(&self, token: &str, msg: &Message) -> Attempt {
        if !valid_token(token) {
            return Attempt {
                outcome: Outcome::DropToken,
                status: None,
                reason:
                    "BadDeviceToken: not an even-length hex token of at most 200 digits (not sent)"
                        .into(),
                url: format!("{}/3/device/<invalid token>", self.base),
                request: SentRequest::None,
            };
        }
        let url = format!("{}/3/device/{}", self.base, token);
        let uri = match self.client.uri(&format!("/3/device/{token}")) {
            Ok(u) => u,
            Err(e) => {
                return Attempt {
                    outcome: Outcome::DropToken,
                    status: None,
                    reason: format!("BadDeviceToken: not usable in a request path ({e}; not sent)"),
                    url,
                    request: SentRequest::None,
                }
            }
        };
        let Message::Apns {
            text,
            push_type,
            priority,
            collapse_id,
            ..
        } = msg
        else {
            return Attempt {
                outcome: Outcome::DropMessage,
                status: None,
                reason: "not an APNs message".into(),
                url,
                request: SentRequest::None,
            };
        };
        let expiration = if self.expiration_s == 0 {
            0
        } else {
            unix_now() + self.expiration_s
        };
        // A v4 UUID from the thread-local generator (Uuid::new_v4 asks the kernel every time).
        let apns_id = uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string();
        let mut req = http::Request::post(uri)
            .header("apns-topic", &*self.topic)
            .header("apns-push-type", *push_type)
            .header("apns-priority", priority.to_string())
            .header("apns-expiration", expiration.to_string())
            .header("apns-collapse-id", collapse_id.as_str())
            .header("apns-id", apns_id.as_str())
            .header("content-type", "application/json");
        if let Some(j) = &self.jwt {
            match j.token(unix_now()) {
                Ok(t) => req = req.header("authorization", format!("bearer {t}")),
                Err(e) => {
                    return Attempt {
                        outcome: Outcome::Credential,
                        status: None,
                        reason: format!("JWT signing failed: {e}"),
                        url,
                        request: SentRequest::None,
                    }
                }
            }
        }
        let req = match req.body(http_body_util::Full::new(text.clone())) {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    outcome: Outcome::DropMessage,
                    status: None,
                    reason: format!("request not representable: {e}"),
                    url,
                    request: SentRequest::None,
                }
            }
        };
        let request = SentRequest::Apns {
            topic: self.topic.clone(),
            push_type,
            priority: *priority,
            expiration,
            collapse_id: collapse_id.clone(),
            apns_id,
            body: text.clone(),
        };
        match self.client.send(req).await {
            Err(e) => Attempt::transport(e, url, request),
            Ok(a) => {
                let status = a.status.as_u16();
                let after = super::retry_after(&a.headers);
                let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                let reason = v
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Attempt {
                    outcome: classify(status, &reason, after),
                    status: Some(status),
                    reason,
                    url,
                    request,
                }
            }
        }
    }
}

impl Provider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }
    fn kind(&self) -> Kind {
        Kind::Apns
    }
    fn send<'a>(&'a self, token: &'a str, msg: &'a Message) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let a = self.once(token, msg).await;
            if a.reason == "ExpiredProviderToken" {
                if let Some(j) = &self.jwt {
                    j.invalidate();
                    return self.once(token, msg).await;
                }
            }
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_policy() {
        assert_eq!(classify(200, "", None), Outcome::Delivered);
        assert_eq!(classify(410, "Unregistered", None), Outcome::DropToken);
        assert_eq!(classify(400, "BadDeviceToken", None), Outcome::DropToken);
        assert_eq!(
            classify(400, "DeviceTokenNotForTopic", None),
            Outcome::DropToken
        );
        assert_eq!(classify(400, "BadTopic", None), Outcome::DropMessage);
        assert_eq!(classify(413, "PayloadTooLarge", None), Outcome::DropMessage);
        assert_eq!(
            classify(403, "InvalidProviderToken", None),
            Outcome::Credential
        );
        let d = Some(Duration::from_secs(2));
        assert_eq!(classify(429, "TooManyRequests", d), Outcome::Retry(d));
        assert_eq!(
            classify(503, "ServiceUnavailable", None),
            Outcome::Retry(None)
        );
    }

    #[test]
    fn only_hex_tokens_go_into_the_path() {
        assert!(valid_token(&"ab".repeat(32)));
        for bad in ["", "a", "abc", "zz", "ab/../x", "ab%2F", &"ab".repeat(101)] {
            assert!(!valid_token(bad), "{bad}");
        }
    }

    #[test]
    fn jwt_is_reused_then_refreshed_after_50_minutes() {
        let kp = rcgen::KeyPair::generate().unwrap();
        let s = JwtSigner::new(kp.serialize_pem().as_bytes(), "ABCDEFGHIJ", "TEAM123456").unwrap();
        let t0 = s.token(1_000_000).unwrap();
        assert_eq!(s.token(1_000_000 + 20 * 60).unwrap(), t0);
        assert_eq!(s.token(1_000_000 + JWT_REFRESH_S - 1).unwrap(), t0);
        let t1 = s.token(1_000_000 + JWT_REFRESH_S).unwrap();
        assert_ne!(t1, t0);
        let h = jsonwebtoken::decode_header(&t1).unwrap();
        assert_eq!(h.alg, Algorithm::ES256);
        assert_eq!(h.kid.as_deref(), Some("ABCDEFGHIJ"));
        s.invalidate();
        assert_ne!(
            s.token(1_000_000 + JWT_REFRESH_S).unwrap(),
            t1,
            "new iat? same second gives same claims but fresh ECDSA nonce"
        );
    }
}
