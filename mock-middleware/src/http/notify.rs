//! `PUT /preliminary/http-notify/v1/notify`: Dovecot's `ox` driver talks to this.
//!
//! Processing follows OX's `DovecotPushRESTService` step by step (see the spec §1); where OX
//! answers an error with an empty body, the mock answers the same status with a JSON body that
//! says what is wrong. Accepted new-mail notifications are queued for the push pipeline without
//! waiting for any provider; a full queue answers 503 with `Retry-After`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::State as S;
use crate::event::MailEvent;
use crate::push::PushJob;
use crate::recording::NotificationRecord;
use crate::store::now_ms;

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// Answers anything but PUT with 405 and `Allow: PUT`.
pub async fn wrong_method(method: Method) -> Response {
    let mut r = (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": format!("Method {method} is not allowed here; use PUT.")})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("PUT"));
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn success() -> Response {
    (StatusCode::OK, Json(json!({"success": true}))).into_response()
}

/// Constant-time check of the Basic credentials against the configured login and password.
pub fn basic_auth_ok(headers: &HeaderMap, login: Option<&str>, password: Option<&str>) -> bool {
    let (Some(login), Some(password)) = (login, password) else {
        return false;
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1): `Basic`, `basic`, `BASIC`.
    let Some(b64) = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest)
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return false;
    };
    // Hash both sides so that the comparison time does not depend on lengths either.
    let h = |b: &[u8]| Sha256::digest(b);
    let user_ok = h(&raw[..colon]).ct_eq(&h(login.as_bytes()));
    let pass_ok = h(&raw[colon + 1..]).ct_eq(&h(password.as_bytes()));
    bool::from(user_ok & pass_ok)
}

fn unauthorized() -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "Missing or wrong HTTP Basic credentials.",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"OX REST\", encoding=\"UTF-8\""),
    );
    r
}

/// The fields of the notify body that OX reads; everything else is ignored (and recorded).
#[derive(Deserialize)]
struct NotifyBody {
    event: Option<Value>,
    user: Option<Value>,
    folder: Option<Value>,
    #[serde(rename = "imap-uid")]
    imap_uid: Option<Value>,
    unread: Option<Value>,
    unseen: Option<Value>,
    from: Option<Value>,
    subject: Option<Value>,
}

/// The notify handler.
pub async fn notify(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let seq = s.recorder.next_seq();
    let mut rec = NotificationRecord::new(seq, now_ms());
    let (result, response) = handle(&s, &headers, body, seq, &mut rec).await;
    rec.status = response.status().as_u16();
    rec.result = result;
    s.recorder.record_notification(rec);
    s.metrics.notification(result);
    s.metrics
        .notify_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(
    s: &S,
    headers: &HeaderMap,
    body: Body,
    seq: u64,
    rec: &mut NotificationRecord,
) -> (&'static str, Response) {
    let st = &s.settings;
    if !basic_auth_ok(
        headers,
        st.basic_login.as_deref(),
        st.basic_password.as_ref().map(|p| p.expose()),
    ) {
        // Recorded without headers, and no pending fault is used up by a stranger.
        return ("unauthorized", unauthorized());
    }
    rec.set_headers(headers);
    if let Some(fault) = s.faults.take() {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if let Some(status) = fault.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut r = error(status, "Injected fault (POST /mock/faults).");
            if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS
            {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return ("fault", r);
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return (
            "too_large",
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is larger than 64 KiB.",
            ),
        );
    }
    // The whole body within the body timeout (tower-http's timeout is per frame only).
    let within = s.settings.limits.public.body_timeout;
    let limited = http_body_util::Limited::new(body, MAX_BODY).collect();
    let Ok(collected) = tokio::time::timeout(within, limited).await else {
        return (
            "body_timeout",
            error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "The request body did not arrive within {} ms.",
                    within.as_millis()
                ),
            ),
        );
    };
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return (
                "too_large",
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The request body is larger than 64 KiB.",
                ),
            )
        }
        Err(e) if e.is::<tower_http::timeout::TimeoutError>() => {
            return (
                "body_timeout",
                error(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body stalled longer than the body timeout.",
                ),
            )
        }
        Err(_) => {
            return (
                "bad_request",
                error(
                    StatusCode::BAD_REQUEST,
                    "The request body could not be read.",
                ),
            )
        }
    };
    rec.set_body(&bytes);
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return (
            "missing_body",
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Missing request body (OX SVL-0023).",
            ),
        );
    };
    let parsed: NotifyBody = match serde_json::from_slice(&bytes) {
        Ok(v) if *first == b'{' => v,
        Err(e) if *first == b'{' => {
            return (
                "malformed",
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("The body is not valid JSON: {e}."),
                ),
            )
        }
        _ if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() => {
            return (
                "json_error",
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The body must be a JSON object (OX SVL-0009).",
                ),
            )
        }
        _ => {
            return (
                "malformed",
                error(StatusCode::BAD_REQUEST, "The body is not valid JSON."),
            )
        }
    };
    if parsed.event.as_ref().and_then(Value::as_str) != Some("messageNew") {
        return ("ignored_event", success());
    }
    let Some((user_id, context_id)) = parsed
        .user
        .as_ref()
        .and_then(Value::as_str)
        .and_then(parse_user)
    else {
        rec.note = Some("user is not <userId>@<contextId>; OX ignores such notifications");
        return ("ignored_user", success());
    };
    let Some(folder) = parsed.folder.as_ref().and_then(Value::as_str) else {
        return (
            "missing_field",
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Missing the field \"folder\" (OX SVL-0009).",
            ),
        );
    };
    let Some(uid) = parsed.imap_uid.as_ref().and_then(as_long) else {
        return (
            "missing_field",
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Missing or non-integer field \"imap-uid\" (OX SVL-0009).",
            ),
        );
    };
    let count = |v: &Option<Value>| v.as_ref().and_then(as_long);
    let unread = match (count(&parsed.unread), s.settings.strict_ox) {
        (Some(n), _) => n,
        (None, false) => count(&parsed.unseen).unwrap_or(-1),
        (None, true) => -1,
    };
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let event = Arc::new(MailEvent::new(
        context_id,
        user_id,
        folder.to_string(),
        uid,
        text(parsed.from),
        text(parsed.subject),
        unread,
    ));
    rec.event = Some(event.clone());
    let subs = match s.subs.for_user(context_id, user_id).await {
        Ok(v) => crate::push::targets(v),
        Err(e) => return store_unavailable(&e),
    };
    if subs.is_empty() {
        return ("no_subscription", success());
    }
    // A slot in the queue first, so that a claimed notification is always queued.
    let Ok(permit) = s.queue.try_reserve() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The push queue is full; retry later.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return ("queue_full", r);
    };
    // No push twice: the first node to claim the id in the database pushes; a repeat (a
    // retry after a timeout, a balancer resending, a second Dovecot endpoint) is answered 200
    // and dropped. The claim row holds the event, so if this node dies before its pushes are
    // done another node sends them (crate::cluster).
    let claim = match notification_id(headers) {
        None => None,
        Some(id) => {
            let json = serde_json::to_string(&*event).unwrap_or_default();
            let (node, id2) = (s.node.clone(), id.clone());
            let claimed = crate::store::index::blocking(s.subs.store(), move |st| {
                st.claim(&id2, &node, &json, now_ms())
            })
            .await;
            match claimed {
                Ok(true) => Some(crate::push::ClaimTicket::new(
                    id,
                    s.subs.store().clone(),
                    &s.inflight,
                )),
                Ok(false) => {
                    rec.note = Some("X-Notification-Id seen before: pushed once, by the first node that accepted it");
                    return ("duplicate", success());
                }
                Err(e) => return store_unavailable(&e),
            }
        }
    };
    permit.send(PushJob {
        seq,
        received: Instant::now(),
        event,
        subs,
        claim,
    });
    s.metrics.queue_depth.inc();
    ("accepted", success())
}

/// 503 + `Retry-After` when the store cannot answer: the sender retries, nothing is lost.
fn store_unavailable(e: &crate::store::StoreError) -> (&'static str, Response) {
    tracing::warn!(error = %e, "notification refused: the store is not reachable");
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The subscription store is not reachable; retry later.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    ("store_unavailable", r)
}

/// `X-Notification-Id` (the relay's, with its `notification_id` option): 1 to 128 visible
/// ASCII characters, else ignored.
fn notification_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-notification-id")?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_string())
}

/// `<userId>@<contextId>`, split at the first `@`, both integers.
pub fn parse_user(u: &str) -> Option<(i32, i32)> {
    let (uid, cid) = u.split_once('@')?;
    Some((uid.parse().ok()?, cid.parse().ok()?))
}

fn as_long(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parsing_like_ox() {
        assert_eq!(parse_user("3@1"), Some((3, 1)));
        assert_eq!(parse_user("3@1@x"), None);
        assert_eq!(parse_user("@1"), None);
        assert_eq!(parse_user("alice"), None);
        assert_eq!(parse_user(""), None);
    }

    #[test]
    fn basic_auth_compares_both_parts() {
        let mut h = HeaderMap::new();
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        h.insert(header::AUTHORIZATION, enc("ox:secret").parse().unwrap());
        assert!(basic_auth_ok(&h, Some("ox"), Some("secret")));
        assert!(!basic_auth_ok(&h, Some("ox"), Some("secreT")));
        assert!(!basic_auth_ok(&h, None, None));
        for scheme in ["BASIC", "bAsIc"] {
            let v = enc("ox:secret").replacen("Basic", scheme, 1);
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            assert!(basic_auth_ok(&h, Some("ox"), Some("secret")), "{scheme}");
        }
        h.insert(header::AUTHORIZATION, enc("oxsecret").parse().unwrap());
        assert!(!basic_auth_ok(&h, Some("ox"), Some("secret")));
    }
}
