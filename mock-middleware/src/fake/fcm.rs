//! Fake Google endpoints: OAuth token (`POST /token`), FCM v1 send and legacy `/fcm/send`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{json, Value};

use super::{ConnInfo, FakeState, Script};
use crate::push::fcm::SCOPE;

pub fn router(state: Arc<FakeState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn google_error(
    status: u16,
    google_status: &str,
    message: &str,
    code: Option<&str>,
    token_field: bool,
) -> Value {
    let mut details = Vec::new();
    if let Some(c) = code {
        details.push(
            json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}),
        );
    }
    if token_field {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}));
    }
    json!({"error": {"code": status, "message": message, "status": google_status, "details": details}})
}

fn reply(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", s.into());
    }
    r
}

async fn handle(
    State(s): State<Arc<FakeState>>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let provider = if path == "/token" {
        "oauth"
    } else if path == "/fcm/send" {
        "gcm"
    } else {
        "fcm"
    };
    let mut rec = json!({"provider": provider, "conn": conn.id, "method": method.as_str(), "path": path, "body": parsed});
    let (status, body, retry) = if method != Method::POST {
        (405, json!({"error": "POST only"}), None)
    } else if provider == "oauth" {
        oauth(&s, &body)
    } else if provider == "gcm" {
        legacy(&s, &headers, &parsed).await
    } else {
        v1(&s, &headers, &path, &parsed, body.len()).await
    };
    rec["status"] = json!(status);
    rec["response"] = body.clone();
    s.record(rec);
    reply(status, body, retry)
}

fn oauth(s: &FakeState, body: &[u8]) -> (u16, Value, Option<u64>) {
    let form: Vec<(String, String)> = url_pairs(body);
    let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    let bad = |why: &str| {
        (
            400,
            json!({"error": "invalid_grant", "error_description": why}),
            None,
        )
    };
    if get("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return (400, json!({"error": "unsupported_grant_type"}), None);
    }
    let Some(assertion) = get("assertion") else {
        return bad("missing assertion");
    };
    let Some((email, key)) = &s.cfg.fcm_account else {
        return bad("no service account configured");
    };
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let Ok(data) = jsonwebtoken::decode::<Value>(assertion, key, &v) else {
        return bad("Invalid JWT Signature.");
    };
    let c = &data.claims;
    if c["iss"].as_str() != Some(email.as_str()) {
        return bad("Invalid issuer");
    }
    let aud = c["aud"].as_str().unwrap_or("");
    let aud_ok = match &s.cfg.oauth_audience {
        Some(a) => a == aud,
        None => aud.ends_with("/token"),
    };
    if !aud_ok {
        return bad("Invalid JWT: audience");
    }
    if !c["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .any(|x| x == SCOPE)
    {
        return bad("Invalid scope");
    }
    let (iat, exp) = (
        c["iat"].as_u64().unwrap_or(0),
        c["exp"].as_u64().unwrap_or(0),
    );
    if exp <= iat || exp - iat > 3600 {
        return bad("Invalid JWT: Token must be a short-lived token (60 minutes)");
    }
    let life = s.cfg.token_lifetime_s.max(1);
    (
        200,
        json!({"access_token": s.issue_token(life), "expires_in": life, "token_type": "Bearer"}),
        None,
    )
}

fn url_pairs(body: &[u8]) -> Vec<(String, String)> {
    let uri: Result<Uri, _> = format!("/?{}", String::from_utf8_lossy(body)).parse();
    uri.ok()
        .and_then(|u| axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&u).ok())
        .map(|q| q.0)
        .unwrap_or_default()
}

async fn apply_script(sc: &Script) {
    if let Some(ms) = sc.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn v1(
    s: &FakeState,
    headers: &HeaderMap,
    path: &str,
    msg: &Value,
    size: usize,
) -> (u16, Value, Option<u64>) {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| s.token_valid(t)) {
        return (
            401,
            google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
                None,
                false,
            ),
            None,
        );
    }
    if !(path.starts_with("/v1/projects/") && path.ends_with("/messages:send")) {
        return (
            404,
            google_error(404, "NOT_FOUND", "Unknown path.", None, false),
            None,
        );
    }
    let m = &msg["message"];
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|k| m[**k].is_string())
        .count();
    let invalid = |why: &str| {
        (
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                why,
                Some("INVALID_ARGUMENT"),
                false,
            ),
            None,
        )
    };
    if !m.is_object() || targets != 1 {
        return invalid("The message must have exactly one of token, topic, condition.");
    }
    if m.get("data").is_some_and(|d| {
        !d.as_object()
            .is_some_and(|o| o.values().all(Value::is_string))
    }) {
        return invalid("Invalid value at 'message.data': all values must be strings.");
    }
    if size > 4096 + 200 || m.get("data").map(|d| d.to_string().len()).unwrap_or(0) > 4096 {
        return invalid("Message is too big.");
    }
    let token = m["token"].as_str().unwrap_or("");
    if let Some(sc) = s.take_script("fcm", token) {
        apply_script(&sc).await;
        let st = sc.status.unwrap_or(200);
        if st != 200 {
            let code = sc.reason.as_deref().unwrap_or("INTERNAL");
            let gs = match code {
                "UNREGISTERED" => "NOT_FOUND",
                "QUOTA_EXCEEDED" => "RESOURCE_EXHAUSTED",
                "SENDER_ID_MISMATCH" => "PERMISSION_DENIED",
                other => other,
            };
            return (
                st,
                google_error(
                    st,
                    gs,
                    "Scripted failure.",
                    Some(code),
                    sc.token_field.unwrap_or(false),
                ),
                sc.retry_after,
            );
        }
    }
    let project = path
        .trim_start_matches("/v1/projects/")
        .trim_end_matches("/messages:send");
    (
        200,
        json!({"name": format!("projects/{project}/messages/{}", rand::random::<u64>())}),
        None,
    )
}

async fn legacy(s: &FakeState, headers: &HeaderMap, msg: &Value) -> (u16, Value, Option<u64>) {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("key="));
    if s.cfg.gcm_key.is_none() || key != s.cfg.gcm_key.as_deref() {
        return (401, json!({"error": "Unauthorized"}), None);
    }
    let ids: Vec<String> = match (&msg["registration_ids"], &msg["to"]) {
        (Value::Array(a), _) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        (_, Value::String(t)) => vec![t.clone()],
        _ => {
            return (
                400,
                json!({"error": "missing registration_ids or to"}),
                None,
            )
        }
    };
    let (mut success, mut failure, mut canon, mut results) = (0, 0, 0, Vec::new());
    for id in &ids {
        let sc = s.take_script("gcm", id);
        if let Some(sc) = &sc {
            apply_script(sc).await;
            if let Some(st) = sc.status.filter(|st| *st != 200) {
                return (st, json!({"error": "scripted"}), sc.retry_after);
            }
        }
        match sc.as_ref().and_then(|x| x.reason.clone()) {
            Some(err) => {
                failure += 1;
                results.push(json!({"error": err}));
            }
            None => {
                success += 1;
                let mut r = json!({"message_id": format!("0:{}", rand::random::<u64>())});
                if let Some(c) = sc.and_then(|x| x.canonical) {
                    canon += 1;
                    r["registration_id"] = json!(c);
                }
                results.push(r);
            }
        }
    }
    (
        200,
        json!({"multicast_id": rand::random::<u32>(), "success": success, "failure": failure, "canonical_ids": canon, "results": results}),
        None,
    )
}
