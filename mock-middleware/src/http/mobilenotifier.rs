//! Legacy subscribe API `mobilenotifier` (OX Mail v1): plain parameters from the query or a
//! form body. Unlike OX, `unsubscribe` and `updateToken` act only on the caller's own
//! subscriptions, and a token held by another user is never taken over by `updateToken`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::envelope::{data, OxError};
use super::login::request_params;
use super::subscribe::{gate, store_failed};
use super::State as S;
use crate::store::{now_ms, Subscription};

/// `/ajax/mobilenotifier?action=subscribe|unsubscribe|updateToken` (plain parameters).
pub async fn mobilenotifier(
    State(s): State<S>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = request_params(q, &headers, &body);
    let action = match p.get("action") {
        None => return OxError::missing_param("action").into_response(),
        Some(a) if ["subscribe", "unsubscribe", "updateToken"].contains(&a.as_str()) => a.clone(),
        Some(a) => return OxError::unknown_action(a, "mobilenotifier").into_response(),
    };
    let sess = match s
        .sessions
        .check(p.get("session").map(String::as_str), &headers)
        .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let need = |k: &str| {
        p.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| OxError::missing_param(k))
    };
    let result = (|| {
        let token = need("token")?;
        let service = need("serviceId")?;
        let transport = match service.as_str() {
            "apn" | "apn.macos" => "apn",
            "gcm" | "fcm" => "gcm",
            _ => {
                return Err(OxError::invalid_param(
                    "serviceId",
                    "expected apn, apn.macos, gcm or fcm",
                ))
            }
        };
        let provider = if action == "updateToken" {
            None
        } else {
            Some(need("providerId")?)
        };
        if let Some(pv) = &provider {
            if !["mail", "appointment", "tasks", "reminder", "drive"].contains(&pv.as_str()) {
                return Err(OxError::invalid_param(
                    "providerId",
                    "expected mail, appointment, tasks, reminder or drive",
                ));
            }
        }
        let new_token = if action == "updateToken" {
            Some(need("newToken")?)
        } else {
            None
        };
        Ok((token, transport.to_string(), provider, new_token))
    })();
    let (token, transport, provider, new_token) = match result {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let outcome = match action.as_str() {
        "subscribe" => {
            if let Err(e) = gate(&s, &sess, &sess.client, &headers) {
                return e.into_response();
            }
            let topic = match provider.as_deref() {
                Some("mail") => "ox:mail:new".to_string(),
                Some(other) => format!("ox:{other}"),
                None => unreachable!("subscribe always has a provider"),
            };
            let topics = vec![topic];
            let r = s
                .subs
                .put(Subscription {
                    context_id: sess.context_id,
                    user_id: sess.user_id,
                    client: sess.client.as_str().into(),
                    transport: transport.into(),
                    token,
                    topics: topics.clone().into(),
                    created: now_ms(),
                })
                .await;
            if r.is_ok() {
                s.listeners
                    .subscribed(sess.context_id, sess.user_id, &sess.client, &topics)
                    .await;
            }
            r
        }
        // Only the caller's own subscriptions (OX removed the token for every user of the
        // context: anyone could unsubscribe anyone).
        "unsubscribe" => s
            .subs
            .remove_token((sess.context_id, sess.user_id), transport, token)
            .await
            .map(|_| ()),
        // Only the caller's own token, and never onto a token another user holds: a token
        // changes owner only through a subscribe from the device itself.
        _ => s
            .subs
            .replace_token(
                transport,
                token,
                new_token.unwrap_or_default(),
                Some((sess.context_id, sess.user_id)),
            )
            .await
            .map(|_| ()),
    };
    match outcome {
        Ok(()) => data(json!({})),
        Err(crate::store::StoreError::TokenTaken) => OxError::invalid_param(
            "newToken",
            "the token is registered by another user; only a subscribe from that device can move it",
        )
        .into_response(),
        Err(e) => store_failed(e),
    }
}
