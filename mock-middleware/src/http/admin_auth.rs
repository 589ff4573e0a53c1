//! Authentication of the admin listener's `/mock/*` endpoints: a bearer token.
//!
//! The admin listener shows every notification body and full device token, deletes
//! registrations and injects faults, so any local user must not reach it. The token lives in
//! `mock.admin.token_file` (default `admin.token` in the configuration directory, mode 0600);
//! `init-demo` writes it and `serve` creates it when it is missing. It is compared in constant
//! time. `/metrics` stays open and carries no tokens or subjects.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::State as S;
use crate::config::Secret;

/// A new random token (256 bits, hex).
pub fn generate() -> Secret {
    Secret::new(hex::encode(rand::random::<[u8; 32]>()))
}

/// Reads the token file, creating it (0600) with a new token when it does not exist.
pub fn load_or_create(path: &Path) -> std::io::Result<Secret> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(Secret::new(t.trim())),
        Ok(_) => Err(std::io::Error::other("the file is empty")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = generate();
            crate::config::secret::write_private(path, format!("{}\n", t.expose()).as_bytes())?;
            tracing::info!(file = %path.display(), "admin token created");
            Ok(t)
        }
        Err(e) => Err(e),
    }
}

/// True when `headers` carry `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_ok(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = v.split_once(' ') else {
        return false;
    };
    let same =
        Sha256::digest(given.trim().as_bytes()).ct_eq(&Sha256::digest(token.expose().as_bytes()));
    scheme.eq_ignore_ascii_case("bearer") && bool::from(same)
}

/// Middleware for `/mock/*`: 401 with `WWW-Authenticate: Bearer` unless the token matches.
pub async fn require(State(s): State<S>, req: Request, next: Next) -> Response {
    if bearer_ok(req.headers(), &s.admin_token) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"mock-middleware admin\"")],
        Json(json!({"error": "The admin endpoints need \"Authorization: Bearer <token>\" with the token from mock.admin.token_file (admin.token in the configuration directory)."})),
    )
        .into_response()
}
