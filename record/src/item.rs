//! One notification as the relay receives, journals and sends it: where to
//! ([`Target`]), how hard to try ([`Policy`]), and the request body, which the
//! plugin built byte for byte as Dovecot's built-in driver would.

use crate::url::mask_url;
use crate::wire::{put_str16, DecodeError, Reader};

/// Longest URL accepted in a record.
pub const MAX_URL: usize = 4096;
/// Longest CA file or directory path accepted in a record.
pub const MAX_PATH: usize = 4096;
/// Longest body accepted in a record (the frame bound leaves room for the rest).
pub const MAX_BODY: usize = crate::frame::MAX_PAYLOAD - 2 * 1024 * 1024;
/// Longest per-attempt timeout a record may ask for.
pub const MAX_TIMEOUT_MS: u32 = 3_600_000;
/// Longest `max_age` a record may ask for (a week).
pub const MAX_AGE_SECS: u32 = 7 * 86_400;

/// Where a notification goes: the endpoint URL (with its credentials) and the
/// TLS settings of the mail user's Dovecot configuration. The relay keeps one
/// connection pool per distinct target.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The `url=` value as configured, password included.
    pub url: String,
    /// `ssl_client_require_valid_cert`.
    pub tls_verify: bool,
    /// `ssl_client_ca_file`.
    pub ca_file: Option<String>,
    /// `ssl_client_ca_dir`.
    pub ca_dir: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &mask_url(&self.url))
            .field("tls_verify", &self.tls_verify)
            .field("ca_file", &self.ca_file)
            .field("ca_dir", &self.ca_dir)
            .finish()
    }
}

/// How the relay treats one notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Per attempt: connect, request and answer (`timeout_msecs`).
    pub timeout_ms: u32,
    /// Dropped when older than this (`max_age`).
    pub max_age_secs: u32,
    /// Send `X-Notification-Id: <id>` (`notification_id`).
    pub notification_id: bool,
}

/// One notification.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// Random, made by the plugin; the same on every attempt and after relay
    /// restarts (`X-Notification-Id`), and what the relay deduplicates by.
    pub id: [u8; 16],
    /// When the plugin made it, milliseconds since the epoch.
    pub created_ms: u64,
    pub policy: Policy,
    pub target: Target,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("id", &self.id_string())
            .field("created_ms", &self.created_ms)
            .field("policy", &self.policy)
            .field("target", &self.target)
            .field("body_len", &self.body.len())
            .finish()
    }
}

const FLAG_NOTIFICATION_ID: u8 = 1;
const FLAG_TLS_VERIFY: u8 = 2;

impl Item {
    /// The id as a UUID string (what `X-Notification-Id` carries).
    pub fn id_string(&self) -> String {
        id_string(&self.id)
    }

    /// Appends the encoding to `out`. Fails (writing nothing) when a field is
    /// over its bound, so that a record the relay must refuse is never sent.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        if self.target.url.len() > MAX_URL {
            return Err(format!("the URL is longer than {MAX_URL} bytes"));
        }
        for p in [&self.target.ca_file, &self.target.ca_dir]
            .into_iter()
            .flatten()
        {
            if p.len() > MAX_PATH {
                return Err(format!("a CA path is longer than {MAX_PATH} bytes"));
            }
        }
        if self.body.len() > MAX_BODY {
            return Err(format!(
                "the body has {} bytes, at most {MAX_BODY} are allowed",
                self.body.len()
            ));
        }
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        out.extend_from_slice(&self.policy.timeout_ms.to_be_bytes());
        out.extend_from_slice(&self.policy.max_age_secs.to_be_bytes());
        let mut flags = 0;
        if self.policy.notification_id {
            flags |= FLAG_NOTIFICATION_ID;
        }
        if self.target.tls_verify {
            flags |= FLAG_TLS_VERIFY;
        }
        out.push(flags);
        put_str16(out, &self.target.url);
        put_str16(out, self.target.ca_file.as_deref().unwrap_or(""));
        put_str16(out, self.target.ca_dir.as_deref().unwrap_or(""));
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        Ok(())
    }

    /// Decodes exactly one item from `buf` (no trailing bytes allowed).
    pub fn decode(buf: &[u8]) -> Result<Item, DecodeError> {
        let mut r = Reader::new(buf);
        let item = Item::decode_from(&mut r)?;
        r.end("item")?;
        Ok(item)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Item, DecodeError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(r.take(16, "id")?);
        let created_ms = r.u64("created")?;
        let timeout_ms = r.u32("timeout")?;
        let max_age_secs = r.u32("max_age")?;
        let flags = r.u8("flags")?;
        if flags & !(FLAG_NOTIFICATION_ID | FLAG_TLS_VERIFY) != 0 {
            return Err(DecodeError(format!("flags: unknown bits {flags:#04x}")));
        }
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(DecodeError(format!(
                "timeout: {timeout_ms} ms, expected 1 to {MAX_TIMEOUT_MS}"
            )));
        }
        if max_age_secs > MAX_AGE_SECS {
            return Err(DecodeError(format!(
                "max_age: {max_age_secs} s, at most {MAX_AGE_SECS}"
            )));
        }
        let url = r.str16(MAX_URL, "url")?.to_string();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let ca_file = opt(r.str16(MAX_PATH, "ca_file")?);
        let ca_dir = opt(r.str16(MAX_PATH, "ca_dir")?);
        let body_len = r.u32("body length")? as usize;
        if body_len > MAX_BODY {
            return Err(DecodeError(format!(
                "body: {body_len} bytes, at most {MAX_BODY}"
            )));
        }
        let body = r.take(body_len, "body")?.to_vec();
        Ok(Item {
            id,
            created_ms,
            policy: Policy {
                timeout_ms,
                max_age_secs,
                notification_id: flags & FLAG_NOTIFICATION_ID != 0,
            },
            target: Target {
                url,
                tls_verify: flags & FLAG_TLS_VERIFY != 0,
                ca_file,
                ca_dir,
            },
            body,
        })
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lower-case hex.
pub fn id_string(id: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests;
