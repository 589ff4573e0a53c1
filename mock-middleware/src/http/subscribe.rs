//! Subscribe API `pns` (7.8.3+), the gating shared with the legacy `mobilenotifier`
//! ([`super::mobilenotifier`]), transports and topics.
//!
//! Gating, in order: the session's client must match `com.openexchange.push.allowedClients`;
//! a mail-app client must be enabled for the request host by `mailapp-config.yml`; the user must
//! have `com.openexchange.capability.mobile_mail_app` (user → context → server cascade).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::envelope::{data, OxError};
use super::login::is_mail_app;
use super::session::Session;
use super::State as S;
use crate::store::{now_ms, SubKey, Subscription};

/// Transports accepted at subscribe time, with the id they are stored under: `apns` and
/// `apns_http2` are OX's aliases of `apn`; `fcm` (which OX lacks, FCM rides on `gcm`) is
/// accepted as an alias of `gcm`. Storing the canonical id keeps one subscription per device.
pub const TRANSPORTS: &[(&str, &str)] = &[
    ("apn", "apn"),
    ("apns", "apn"),
    ("apns_http2", "apn"),
    ("gcm", "gcm"),
    ("fcm", "gcm"),
];

/// The canonical transport id of `t`, if accepted.
pub fn canonical_transport(t: &str) -> Option<&'static str> {
    TRANSPORTS.iter().find(|(a, _)| *a == t).map(|(_, c)| *c)
}

/// The client the mail app logs in with.
pub const MAILAPP_CLIENT: &str = "open-xchange-mailapp";

/// OX's topic syntax: `*`, or `[A-Za-z0-9_-]` segments joined by single `:`, optional `:*`.
pub fn valid_topic(t: &str) -> bool {
    if t == "*" {
        return true;
    }
    let body = t.strip_suffix(":*").unwrap_or(t);
    !body.is_empty()
        && body.split(':').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// Applies the three gates for a subscription by `session` for `client`.
pub(super) fn gate(
    s: &S,
    sess: &Session,
    client: &str,
    headers: &HeaderMap,
) -> Result<(), OxError> {
    let allowed = &s.settings.allowed_clients;
    if !crate::wildcard::client_allowed(allowed, client) {
        if !sess.client_given {
            return Err(OxError::refused(
                "MOCK-0004",
                format!("The session was logged in without the parameter \"client\" (so it counts as \"{client}\", which may not receive push); log in with client={MAILAPP_CLIENT}."),
            ));
        }
        return Err(OxError::refused(
            "MOCK-0003",
            format!("Client \"{client}\" may not receive push: it matches no pattern of com.openexchange.push.allowedClients."),
        ));
    }
    if is_mail_app(client) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let d = s.settings.mailapp.decide(host);
        if !d.enabled {
            return Err(OxError::refused(
                "MOCK-0001",
                format!(
                    "Mail app subscriptions are disabled for this host by mailapp-config.yml block \"{}\" (mail_app_enabled: false).",
                    d.block.unwrap_or_default()
                ),
            ));
        }
    }
    if !s
        .settings
        .users
        .mobile_mail_app(sess.context_id, sess.user_id, s.settings.mobile_mail_app)
    {
        return Err(OxError::refused(
            "MOCK-0002",
            format!(
                "User {} in context {} lacks the capability com.openexchange.capability.mobile_mail_app.",
                sess.user_id, sess.context_id
            ),
        ));
    }
    Ok(())
}

pub(super) fn store_failed(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "subscription store failed");
    OxError::new(
        "MOCK-0500",
        super::envelope::Category::Error,
        "The subscription could not be stored.",
    )
    .into_response()
}

/// `PUT /ajax/pns?action=subscribe|unsubscribe` with a JSON body.
pub async fn pns(
    State(s): State<S>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let action = match q.get("action").map(String::as_str) {
        None => return OxError::missing_param("action").into_response(),
        Some(a @ ("subscribe" | "unsubscribe")) => a.to_string(),
        Some(a) => return OxError::unknown_action(a, "pns").into_response(),
    };
    let sess = match s
        .sessions
        .check(q.get("session").map(String::as_str), &headers)
        .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match pns_inner(&s, &sess, &action, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn pns_inner(
    s: &S,
    sess: &Session,
    action: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OxError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(OxError::missing_body());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| OxError::json(&e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| OxError::json("the body is not a JSON object"))?;
    let string = |k: &str| -> Result<Option<String>, OxError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(x)) => Ok(Some(x.clone())),
            Some(_) => Err(OxError::invalid_param(k, "expected a string")),
        }
    };
    let client = match string("client")? {
        Some(c) if c != sess.client => {
            return Err(OxError::invalid_param(
                "client",
                "differs from the session's client",
            ))
        }
        Some(c) => c,
        None => sess.client.clone(),
    };
    if client.is_empty() {
        return Err(OxError::missing_field("client"));
    }
    let token = string("token")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OxError::missing_field("token"))?;
    let transport = string("transport")?.ok_or_else(|| OxError::missing_field("transport"))?;
    let Some(transport) = canonical_transport(&transport) else {
        return Err(OxError::invalid_param(
            "transport",
            &format!("\"{transport}\" is not accepted; expected apn, apns, apns_http2, gcm or fcm"),
        ));
    };
    let transport = transport.to_string();
    if action == "unsubscribe" {
        let key = SubKey {
            context_id: sess.context_id,
            user_id: sess.user_id,
            client,
            transport,
            token,
        };
        s.subs.remove(key, "unsubscribe").await.map_err(|e| {
            tracing::error!(error = %e, "subscription store failed");
            OxError::new(
                "MOCK-0500",
                super::envelope::Category::Error,
                "The subscription could not be removed.",
            )
        })?;
        return Ok(data(json!({"success": true})));
    }
    let topics = match obj.get("topics") {
        None | Some(Value::Null) => return Err(OxError::missing_field("topics")),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| OxError::invalid_param("topics", "expected strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(OxError::invalid_param(
                "topics",
                "expected an array of strings",
            ))
        }
    };
    if topics.is_empty() {
        return Err(OxError::missing_field("topics"));
    }
    if let Some(bad) = topics.iter().find(|t| !valid_topic(t)) {
        return Err(OxError::invalid_param(
            "topics",
            &format!("INVALID_TOPIC: \"{bad}\" is not a valid topic"),
        ));
    }
    gate(s, sess, &client, headers)?;
    s.subs
        .put(Subscription {
            context_id: sess.context_id,
            user_id: sess.user_id,
            client: client.as_str().into(),
            transport: transport.into(),
            token,
            topics: topics.clone().into(),
            created: now_ms(),
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "subscription store failed");
            OxError::new(
                "MOCK-0500",
                super::envelope::Category::Error,
                "The subscription could not be stored.",
            )
        })?;
    s.listeners
        .subscribed(sess.context_id, sess.user_id, &client, &topics)
        .await;
    Ok(data(json!({"success": true})))
}

#[cfg(test)]
mod tests {
    use super::valid_topic;

    #[test]
    fn topic_syntax_like_ox() {
        for ok in [
            "*",
            "ox:mail:new",
            "ox:mail:*",
            "a_b-c",
            "ox:calendar:updates",
        ] {
            assert!(valid_topic(ok), "{ok}");
        }
        for bad in [
            "",
            ":ox",
            "ox:",
            "ox::mail",
            "ox:*:new",
            "ox mail",
            "*:x",
            "ox:mail:new*",
        ] {
            assert!(!valid_topic(bad), "{bad}");
        }
    }
}
