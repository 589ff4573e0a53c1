//! A value that must never be printed: passwords, keys, tokens.
//!
//! Every settings struct derives `Debug`; a `Secret` field prints as `Secret(<redacted>)` there,
//! so a debug log line or a panic message cannot leak it. Reading the value is explicit
//! ([`Secret::expose`]), which makes each use easy to find.

use serde::Deserialize;

/// A string that `Debug` and `Display` never show.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Secret {
        Secret(v.into())
    }

    /// The value itself, for the one place that needs it (a comparison, a request header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Writes `data` to `path` readable and writable by the owner only (0600), also when the file
/// existed with wider permissions before.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// For command-line arguments (`clap` parses through `FromStr`).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl From<&str> for Secret {
    fn from(v: &str) -> Self {
        Secret(v.to_string())
    }
}

impl From<String> for Secret {
    fn from(v: String) -> Self {
        Secret(v)
    }
}
