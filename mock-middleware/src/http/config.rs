//! The app's configuration service: `GET /config/providers` and `/config/providers/<id>` from
//! `branding.yml` (project convention), validated at start-up.
//!
//! ```yaml
//! providers:
//!   - id: example            # [a-z0-9_-]+, unique
//!     name: Example Mail
//!     serverUrl: https://mail.example.com      # the middleware base URL the app talks to
//!     logoUrl: https://mail.example.com/logo.png
//!     ciColor: "#0a6ebd"     # corporate identity colour, #RRGGBB
//! ```

use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::State as S;

/// One provider of the startup wizard.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub server_url: String,
    pub logo_url: String,
    pub ci_color: String,
}

/// The parsed `branding.yml`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    pub providers: Vec<Provider>,
}

fn url_ok(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://")) && u.len() > 8 && !u.contains(' ')
}

impl Branding {
    /// Reads and validates the file; the error names the file, the provider and the field.
    pub fn load(path: &Path) -> Result<Branding, String> {
        let file = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot be read: {e}."))?;
        Branding::parse(&text).map_err(|e| format!("{file}: {e}"))
    }

    pub fn parse(text: &str) -> Result<Branding, String> {
        let b: Branding =
            serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML: {e}."))?;
        let mut seen = std::collections::HashSet::new();
        for (i, p) in b.providers.iter().enumerate() {
            let bad = |field: &str, expected: &str| {
                format!(
                    "providers[{i}] ({:?}): {field} is invalid: expected {expected}.",
                    p.id
                )
            };
            if p.id.is_empty()
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(bad("id", "lower-case letters, digits, '-' or '_'"));
            }
            if !seen.insert(p.id.clone()) {
                return Err(bad("id", "a unique id"));
            }
            if p.name.trim().is_empty() {
                return Err(bad("name", "a non-empty name"));
            }
            if !url_ok(&p.server_url) {
                return Err(bad("serverUrl", "an http:// or https:// URL"));
            }
            if !url_ok(&p.logo_url) {
                return Err(bad("logoUrl", "an http:// or https:// URL"));
            }
            let c = p.ci_color.strip_prefix('#').unwrap_or("");
            if c.len() != 6 || !c.chars().all(|x| x.is_ascii_hexdigit()) {
                return Err(bad("ciColor", "a colour like \"#0a6ebd\""));
            }
        }
        Ok(b)
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": what}))).into_response()
}

/// `GET /config/providers`.
pub async fn providers(State(s): State<S>) -> Response {
    match &s.branding {
        Some(b) => Json(json!({"providers": b.providers})).into_response(),
        None => not_found("No branding.yml is configured."),
    }
}

/// `GET /config/providers/<id>`.
pub async fn provider(State(s): State<S>, UrlPath(id): UrlPath<String>) -> Response {
    match s
        .branding
        .as_ref()
        .and_then(|b| b.providers.iter().find(|p| p.id == id))
    {
        Some(p) => Json(p).into_response(),
        None => not_found(&format!("No provider \"{id}\".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "providers:\n  - id: ex\n    name: Ex\n    serverUrl: https://a.example\n    logoUrl: https://a.example/l.png\n    ciColor: \"#0a6ebd\"\n";

    #[test]
    fn validation_names_the_field() {
        assert_eq!(Branding::parse(OK).unwrap().providers[0].id, "ex");
        let e = Branding::parse(&OK.replace("#0a6ebd", "blue")).unwrap_err();
        assert!(e.contains("ciColor"), "{e}");
        let e = Branding::parse(&OK.replace("https://a.example\n", "mail\n")).unwrap_err();
        assert!(e.contains("serverUrl"), "{e}");
        let e = Branding::parse(&format!("{OK}{}", &OK[11..])).unwrap_err();
        assert!(e.contains("unique"), "{e}");
        assert!(Branding::parse("providers: 3")
            .unwrap_err()
            .contains("YAML"));
    }
}
