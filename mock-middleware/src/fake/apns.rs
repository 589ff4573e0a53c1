//! Fake APNs: `POST /3/device/<hex token>` checked like Apple does it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use jsonwebtoken::Algorithm;
use serde_json::{json, Map, Value};

use super::{ConnInfo, FakeState};
use crate::push::apns::unix_now;

const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "location",
    "pushtotalk",
    "widgets",
    "controls",
];

pub fn router(state: Arc<FakeState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Apple's answer: the request's `apns-id` echoed (clients such as aioapns match replies by it),
/// a fresh one only when the request had none.
fn answer(
    status: u16,
    reason: Option<&str>,
    retry_after: Option<u64>,
    apns_id: Option<&str>,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match reason {
        None => code.into_response(),
        Some(reason) if status == 410 => (
            code,
            axum::Json(json!({"reason": reason, "timestamp": unix_now() * 1000})),
        )
            .into_response(),
        Some(reason) => (code, axum::Json(json!({ "reason": reason }))).into_response(),
    };
    let id = apns_id
        .and_then(|v| axum::http::HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| {
            uuid::Uuid::new_v4()
                .to_string()
                .parse()
                .expect("uuid is a header value")
        });
    r.headers_mut().insert("apns-id", id);
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", s.into());
    }
    r
}

/// Checks the bearer JWT; `Err((status, reason))` on failure, `Ok(claims)` otherwise.
fn check_jwt(s: &FakeState, conn: &ConnInfo, auth: &str) -> Result<Value, (u16, &'static str)> {
    let token = auth
        .strip_prefix("bearer ")
        .or_else(|| auth.strip_prefix("Bearer "))
        .ok_or((403, "MissingProviderToken"))?;
    // A token already verified on this connection is not verified again (as Apple caches it),
    // only its age is checked.
    {
        let cur = conn.jwt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, _, claims)) = cur.as_ref() {
            if t == token {
                let iat = claims["iat"].as_u64().unwrap_or(0);
                if unix_now().saturating_sub(iat) > 3600 {
                    return Err((403, "ExpiredProviderToken"));
                }
                return Ok(claims.clone());
            }
        }
    }
    let invalid = (403, "InvalidProviderToken");
    let jwt = LenientJwt::parse(token).ok_or(invalid)?;
    if jwt.header["alg"] != "ES256" {
        return Err(invalid);
    }
    let kid = jwt.header["kid"].as_str().unwrap_or_default();
    let (_, team, key) = s
        .cfg
        .apns_keys
        .iter()
        .find(|(k, _, _)| k == kid)
        .ok_or(invalid)?;
    if !jwt.verify(key) || jwt.claims["iss"].as_str() != Some(team.as_str()) {
        return Err(invalid);
    }
    let data = jwt;
    let iat = data.claims["iat"].as_u64().ok_or(invalid)?;
    if unix_now().saturating_sub(iat) > 3600 {
        return Err((403, "ExpiredProviderToken"));
    }
    let mut cur = conn.jwt.lock().unwrap_or_else(|p| p.into_inner());
    match cur.as_ref() {
        Some((_, since, _)) if since.elapsed() < Duration::from_secs(20 * 60) => {
            return Err((429, "TooManyProviderTokenUpdates"))
        }
        _ => *cur = Some((token.to_string(), Instant::now(), data.claims.clone())),
    }
    Ok(data.claims)
}

/// A JWS in compact form read as Apple reads it: segments in base64url or in padded standard
/// base64 (which widely used clients send and Apple accepts); the signature is checked over the
/// segments exactly as they were sent.
pub struct LenientJwt<'a> {
    signed: &'a str,
    signature: Vec<u8>,
    pub header: Value,
    pub claims: Value,
}

/// Decodes base64url or standard base64, padded or not.
fn b64_lenient(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let norm: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(norm)
        .ok()
}

impl<'a> LenientJwt<'a> {
    pub fn parse(token: &'a str) -> Option<LenientJwt<'a>> {
        let (signed, sig) = token.rsplit_once('.')?;
        let (h, c) = signed.split_once('.')?;
        Some(LenientJwt {
            signed,
            signature: b64_lenient(sig)?,
            header: serde_json::from_slice(&b64_lenient(h)?).ok()?,
            claims: serde_json::from_slice(&b64_lenient(c)?).ok()?,
        })
    }

    /// ES256 signature check (raw r‖s) with `key`.
    pub fn verify(&self, key: &jsonwebtoken::DecodingKey) -> bool {
        use base64::Engine;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.signature);
        jsonwebtoken::crypto::verify(&sig, self.signed.as_bytes(), key, Algorithm::ES256)
            .unwrap_or(false)
    }
}

async fn handle(
    State(s): State<Arc<FakeState>>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut hdrs = Map::new();
    for (k, v) in &headers {
        if k != "authorization" {
            hdrs.insert(k.to_string(), json!(String::from_utf8_lossy(v.as_bytes())));
        }
    }
    let token = uri
        .path()
        .strip_prefix("/3/device/")
        .unwrap_or("")
        .to_string();
    let mut rec = json!({
        "provider": "apns", "conn": conn.id, "method": method.as_str(), "path": uri.path(), "token": token,
        "headers": hdrs, "client_cert": conn.client_cert, "body": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
    });
    let (status, reason, retry) =
        verdict(&s, &conn, &method, &uri, &headers, &body, &token, &mut rec).await;
    if reason.as_deref() == Some("ExpiredProviderToken") {
        // The provider must sign a new token now; that one is not a too-frequent update.
        *conn.jwt.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    rec["status"] = json!(status);
    rec["reason"] = json!(reason);
    s.record(rec);
    let apns_id = headers.get("apns-id").and_then(|v| v.to_str().ok());
    answer(status, reason.as_deref(), retry, apns_id)
}

#[allow(clippy::too_many_arguments)]
async fn verdict(
    s: &FakeState,
    conn: &ConnInfo,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    token: &str,
    rec: &mut Value,
) -> (u16, Option<String>, Option<u64>) {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let fail = |st: u16, r: &str| (st, Some(r.to_string()), None);
    if *method != Method::POST {
        return fail(405, "MethodNotAllowed");
    }
    if !uri.path().starts_with("/3/device/") {
        return fail(404, "BadPath");
    }
    match h("authorization") {
        Some(auth) => match check_jwt(s, conn, auth) {
            Ok(claims) => rec["jwt"] = claims,
            Err((st, r)) => return fail(st, r),
        },
        None if conn.client_cert.is_some() => {}
        None => return fail(403, "MissingProviderToken"),
    }
    if token.is_empty() || token.len() % 2 != 0 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return fail(400, "BadDeviceToken");
    }
    if h("apns-topic").is_none_or(str::is_empty) {
        return fail(400, "MissingTopic");
    }
    if h("apns-push-type").is_some_and(|t| !PUSH_TYPES.contains(&t)) {
        return fail(400, "InvalidPushType");
    }
    if h("apns-priority").is_some_and(|p| !["1", "5", "10"].contains(&p)) {
        return fail(400, "BadPriority");
    }
    if h("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return fail(400, "BadCollapseId");
    }
    if body.is_empty() {
        return fail(400, "PayloadEmpty");
    }
    if body.len() > 4096 {
        return fail(413, "PayloadTooLarge");
    }
    if serde_json::from_slice::<Value>(body)
        .map(|v| !v["aps"].is_object())
        .unwrap_or(true)
    {
        return fail(400, "BadPayload");
    }
    if let Some(sc) = s.take_script("apns", token) {
        if let Some(ms) = sc.delay_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let st = sc.status.unwrap_or(200);
        return (
            st,
            sc.reason
                .or_else(|| (st != 200).then(|| "InternalServerError".into())),
            sc.retry_after,
        );
    }
    (200, None, None)
}
