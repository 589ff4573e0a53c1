//! OX's `/ajax` error envelope and the Grizzly "Not Found" page.
//!
//! Application errors of the client API are HTTP 200 with a JSON object carrying `error`,
//! `error_params`, `error_id`, `error_desc`, `code`, `categories` and the legacy `category`
//! number, exactly as OX answers them; apps branch on `code`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// OX exception categories used by the mock, with their legacy numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    UserInput,
    PermissionDenied,
    TryAgain,
    Error,
}

impl Category {
    fn name(self) -> &'static str {
        match self {
            Category::UserInput => "USER_INPUT",
            Category::PermissionDenied => "PERMISSION_DENIED",
            Category::TryAgain => "TRY_AGAIN",
            Category::Error => "ERROR",
        }
    }
    fn number(self) -> u8 {
        match self {
            Category::UserInput => 1,
            Category::PermissionDenied => 3,
            Category::TryAgain => 4,
            Category::Error => 8,
        }
    }
}

/// One OX error, rendered as the envelope.
#[derive(Debug, Clone)]
pub struct OxError {
    pub code: &'static str,
    pub message: String,
    pub params: Vec<String>,
    pub category: Category,
}

impl OxError {
    pub fn new(code: &'static str, category: Category, message: impl Into<String>) -> OxError {
        OxError {
            code,
            message: message.into(),
            params: Vec::new(),
            category,
        }
    }
    /// `SVL-0002`: a missing request parameter.
    pub fn missing_param(name: &str) -> OxError {
        Self::new(
            "SVL-0002",
            Category::UserInput,
            format!("Missing the following request parameter: {name}"),
        )
    }
    /// `SVL-0002`: a missing JSON field.
    pub fn missing_field(name: &str) -> OxError {
        Self::new(
            "SVL-0002",
            Category::UserInput,
            format!("Missing the following field in JSON data: {name}"),
        )
    }
    /// `SVL-0010`: an invalid parameter value.
    pub fn invalid_param(name: &str, why: &str) -> OxError {
        Self::new(
            "SVL-0010",
            Category::UserInput,
            format!("Invalid parameter \"{name}\": {why}"),
        )
    }
    /// `SVL-0021`: unknown action in a module.
    pub fn unknown_action(action: &str, module: &str) -> OxError {
        Self::new(
            "SVL-0021",
            Category::Error,
            format!("Unknown AJAX action {action} in module {module}."),
        )
    }
    /// `SVL-0009`: a JSON error.
    pub fn json(why: &str) -> OxError {
        Self::new(
            "SVL-0009",
            Category::Error,
            format!("A JSON error occurred: {why}"),
        )
    }
    /// `SVL-0023`: missing request body.
    pub fn missing_body() -> OxError {
        Self::new("SVL-0023", Category::Error, "Missing request body.")
    }
    /// `SES-0203`: the session is unknown or expired.
    pub fn session_expired(sid: &str) -> OxError {
        OxError {
            params: vec![sid.to_string()],
            ..Self::new(
                "SES-0203",
                Category::TryAgain,
                "Your session expired. Please login again.",
            )
        }
    }
    /// `SVL-0002`: the session's secret cookie is missing.
    pub fn missing_cookie(name: &str) -> OxError {
        Self::new(
            "SVL-0002",
            Category::UserInput,
            format!("Missing cookie: {name}. Please re-login."),
        )
    }
    /// A refusal by one of the mock's gating rules (project convention codes `MOCK-000x`).
    pub fn refused(code: &'static str, message: String) -> OxError {
        Self::new(code, Category::PermissionDenied, message)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "error": self.message,
            "error_params": self.params,
            "error_id": format!("{}-{}", rand::random::<u32>(), rand::random::<u16>()),
            "error_desc": self.message,
            "code": self.code,
            "categories": self.category.name(),
            "category": self.category.number(),
        })
    }
}

impl IntoResponse for OxError {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self.to_json())).into_response()
    }
}

/// Grizzly's HTML 404 page, which real OX answers for unmapped paths (the app probes
/// `GET /appsuite/api/`).
pub fn grizzly_not_found(path: &str) -> Response {
    let escaped = path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<html><head><title>Grizzly 2.4.4</title><style><!--div.header {{font-family:Tahoma,Arial,sans-serif;color:white;background-color:#003300;font-size:22px;-moz-border-radius-topleft: 10px;border-top-left-radius: 10px;-moz-border-radius-topright: 10px;border-top-right-radius: 10px;padding-left: 5px}}--></style></head><body><div class=\"header\">Not Found</div><div class=\"body\">Resource identified by path '{escaped}', does not exist.</div><div class=\"footer\">Grizzly 2.4.4</div></body></html>"
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html;charset=ISO-8859-1")],
        body,
    )
        .into_response()
}

/// A method the endpoint does not document: 405 with `Allow` and a sentence naming both (the
/// same answer as the http-notify endpoint's; project convention, OX's exact body for this
/// case is not public).
pub fn wrong_method(method: &axum::http::Method, allow: &'static str, module: &str) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, allow)],
        axum::Json(json!({
            "error": format!("Method {method} is not allowed for {module}; use {allow}.")
        })),
    )
        .into_response()
}

/// `{"data": value}`.
pub fn data(v: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({ "data": v }))).into_response()
}
