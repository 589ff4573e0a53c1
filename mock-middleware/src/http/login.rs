//! Client API: `login` (login/logout) and `capabilities`, with the mail-app host gate.
//!
//! Login checks `users.yml` in this issue; the follow-up switches it to IMAP against Dovecot.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::envelope::{data, OxError};
use super::State as S;
use crate::listeners::LoginError;
use crate::wildcard::wildcard_match;

/// Clients that count as the mail app for the `mailapp-config.yml` gate.
pub fn is_mail_app(client: &str) -> bool {
    client == "open-xchange-mailapp" || wildcard_match("open-xchange-mobile-api-facade*", client)
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Parameters from the query string and, for form posts, the body.
fn params(
    query: HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> HashMap<String, String> {
    let mut p = query;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        if let Ok(form) = serde_urlencoded_pairs(body) {
            for (k, v) in form {
                p.entry(k).or_insert(v);
            }
        }
    }
    p
}

fn serde_urlencoded_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ()> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{}", String::from_utf8_lossy(body))
            .parse()
            .map_err(|_| ())?,
    )
    .map(|q| q.0)
    .map_err(|_| ())
}

/// Merged request parameters (query + urlencoded body).
pub fn request_params(
    query: HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> HashMap<String, String> {
    params(query, headers, body)
}

/// `/ajax/login?action=login|logout`.
pub async fn login(
    State(s): State<S>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if q.contains_key("password") {
        return OxError::invalid_param(
            "password",
            "it must be sent in the POST body, never in the URL (URLs end up in logs)",
        )
        .into_response();
    }
    let p = params(q, &headers, &body);
    match p.get("action").map(String::as_str) {
        None => OxError::missing_param("action").into_response(),
        Some("login") if method == Method::POST => {
            let ip = peer.map(|p| p.0 .0.ip().to_string()).unwrap_or_default();
            do_login(&s, &p, &headers, &ip).await
        }
        Some("login") => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            Json(json!({"error": "action=login must be sent as POST."})),
        )
            .into_response(),
        Some("logout") => match s
            .sessions
            .check(p.get("session").map(String::as_str), &headers)
            .await
        {
            Ok(sess) => {
                s.sessions.remove(&sess.id).await;
                StatusCode::OK.into_response()
            }
            Err(e) => e.into_response(),
        },
        Some(other) => OxError::unknown_action(other, "login").into_response(),
    }
}

async fn do_login(s: &S, p: &HashMap<String, String>, headers: &HeaderMap, ip: &str) -> Response {
    let Some(name) = p.get("name") else {
        return OxError::missing_param("name").into_response();
    };
    let Some(password) = p.get("password") else {
        return OxError::missing_param("password").into_response();
    };
    // Throttled per address and per login before any password check (an IMAP-backed check
    // costs a Dovecot connection, and Dovecot penalises our address for everyone).
    let user_key = format!("user:{}", name.to_lowercase());
    let keys = [format!("ip:{ip}"), user_key.clone()];
    if let Err(wait) = s.throttle.check(&keys) {
        let secs = wait.as_secs().max(1);
        let mut r = OxError::new(
            "MOCK-0429",
            super::envelope::Category::TryAgain,
            format!(
                "Too many failed logins for this user or from this address; try again in {secs} s."
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let given = p.get("client").filter(|c| !c.is_empty()).cloned();
    let client = given
        .clone()
        .unwrap_or_else(|| super::session::DEFAULT_CLIENT.into());
    if is_mail_app(&client) {
        let d = s.settings.mailapp.decide(&host(headers));
        if !d.enabled {
            let block = d.block.unwrap_or_default();
            return OxError::refused(
                "MOCK-0001",
                format!("Mail app logins are disabled for this host by mailapp-config.yml block \"{block}\" (mail_app_enabled: false)."),
            )
            .into_response();
        }
    }
    let bad_credentials = || {
        s.throttle.failure(&keys);
        OxError::new(
            "LGI-0006",
            super::envelope::Category::UserInput,
            "The user name or password is incorrect.",
        )
        .into_response()
    };
    let (user_id, context_id) = if s.listeners.imap_login() {
        match s.listeners.authenticate(name, password).await {
            Ok(ids) => ids,
            Err(LoginError::Refused(_)) => return bad_credentials(),
            Err(LoginError::Unavailable(reason)) => {
                tracing::warn!(login = %name, %reason, "IMAP login could not be checked");
                return OxError::new(
                    "LGI-0003",
                    super::envelope::Category::TryAgain,
                    "The login could not be checked: the mail server is not reachable.",
                )
                .into_response();
            }
        }
    } else {
        // Both sides hashed, and a dummy compared when the login is unknown: the time taken
        // tells neither the password's length nor whether the user exists.
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let user = s.settings.users.find(name);
        let dummy = crate::config::Secret::default();
        let stored = user.map_or(&dummy, |u| &u.password);
        let same =
            Sha256::digest(stored.expose().as_bytes()).ct_eq(&Sha256::digest(password.as_bytes()));
        match user {
            Some(u) if bool::from(same) && !u.password.is_empty() => (u.user_id, u.context_id),
            _ => return bad_credentials(),
        }
    };
    s.throttle.success(&user_key);
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sess = match s
        .sessions
        .create(name, user_id, context_id, given.as_deref(), ua)
        .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let body = json!({
        "session": sess.id,
        "user": name,
        "user_id": user_id,
        "context_id": context_id,
        "locale": "en_US",
    });
    let mut r = (StatusCode::OK, Json(body)).into_response();
    // `Secure` when the client reached us over TLS (a TLS-terminating proxy says so in
    // X-Forwarded-Proto); `SameSite` always.
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let attrs = if tls {
        "; Path=/; SameSite=Lax; Secure"
    } else {
        "; Path=/; SameSite=Lax"
    };
    let cookies = [
        format!(
            "open-xchange-secret-{}={}{attrs}; HttpOnly",
            sess.hash,
            sess.secret.expose()
        ),
        format!(
            "open-xchange-session-{}={}{attrs}; HttpOnly",
            sess.hash, sess.id
        ),
        format!(
            "open-xchange-public-session-{}={}{attrs}",
            sess.hash, sess.hash
        ),
        format!("JSESSIONID={}.mock{attrs}; HttpOnly", sess.hash),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// `/ajax/capabilities?action=all`.
pub async fn capabilities(
    State(s): State<S>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match q.get("action").map(String::as_str) {
        None => return OxError::missing_param("action").into_response(),
        Some("all") => {}
        Some(other) => return OxError::unknown_action(other, "capabilities").into_response(),
    }
    let sess = match s
        .sessions
        .check(q.get("session").map(String::as_str), &headers)
        .await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut caps = vec!["webmail", "push", "mobile"];
    if s.settings
        .users
        .mobile_mail_app(sess.context_id, sess.user_id, s.settings.mobile_mail_app)
    {
        caps.push("mobile_mail_app");
    }
    data(json!(caps
        .iter()
        .map(|c| json!({"id": c, "attributes": {}}))
        .collect::<Vec<_>>()))
}
