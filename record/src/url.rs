//! The endpoint URL (`url=`), parsed the way Dovecot's `http_url_parse` sees it
//! with `HTTP_URL_ALLOW_USERINFO_PART`, plus what the request needs from it:
//! the `Host` authority as written (port only when the URL names one), the
//! request target (path and query; `/` when empty), and Basic credentials from
//! the percent-decoded userinfo.
//!
//! The password never leaves this module except inside the `Authorization`
//! header and the record sent to the relay ([`EndpointUrl::as_str`]): [`mask_url`]
//! is the only way a URL reaches a log line, `Debug` prints the masked form, and
//! no parse error quotes any part of the URL (a password with a space in it is
//! split by the config tokenizer, and its first half would look like a port).

use base64::Engine;

#[derive(Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    pub https: bool,
    /// Host as written; IPv6 literals keep their brackets.
    pub host: String,
    /// Host for connecting (brackets removed).
    pub connect_host: String,
    pub port: u16,
    /// `host[:port]` exactly as the built-in driver puts it in `Host:`.
    pub authority: String,
    /// Path and query, e.g. `/preliminary/http-notify/v1/notify`.
    pub target: String,
    user: Option<String>,
    password: Option<String>,
    /// The URL with the password replaced, for logs and counters.
    pub masked: String,
    /// The URL as configured (with the password): only for the relay record.
    raw: String,
}

impl std::fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

/// Replaces the password of a URL-like string by `***`, even when the string
/// does not parse as a URL. Used for every URL that reaches a log line.
pub fn mask_url(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return mask_userinfo(raw, 0);
    };
    mask_userinfo(raw, scheme_end + 3)
}

fn mask_userinfo(raw: &str, start: usize) -> String {
    let rest = &raw[start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{}{}{}", &raw[..start], masked, &raw[start + at..])
        }
        None => raw.to_string(),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "Invalid %-encoding in userinfo".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "userinfo is not valid UTF-8".to_string())
}

impl EndpointUrl {
    pub fn parse(raw: &str) -> Result<EndpointUrl, String> {
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| "Relative HTTP URL not allowed".to_string())?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(format!("Not an HTTP URL (scheme {scheme:?})")),
        };
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority_full, tail) = rest.split_at(auth_end);
        let (userinfo, hostport) = match authority_full.rfind('@') {
            Some(at) => (Some(&authority_full[..at]), &authority_full[at + 1..]),
            None => (None, authority_full),
        };
        let (host, port_str) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6
                .find(']')
                .ok_or_else(|| "Unterminated IPv6 address literal".to_string())?;
            let after = &v6[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err("Invalid characters after IPv6 address".to_string()),
            };
            (&hostport[..close + 2], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("HTTP URL does not allow empty host identifier".to_string());
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~[]:%".contains(&b))
        {
            return Err("Invalid character in host name".to_string());
        }
        let port = match port_str {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        "Invalid port number (expected 1-65535; a password with a space, \
                         '/', '?', '#' or '@' in it must be percent-encoded)"
                            .to_string()
                    })?,
            ),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
                None => (Some(percent_decode(ui)?), None),
            },
        };
        let path_query = tail.split('#').next().unwrap_or("");
        let target = if path_query.is_empty() || path_query.starts_with('?') {
            format!("/{path_query}")
        } else {
            path_query.to_string()
        };
        if port == Some(0) {
            return Err("Port 0 cannot be connected to (expected 1-65535)".to_string());
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("Invalid character in path".to_string());
        }
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(EndpointUrl {
            https,
            connect_host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            host: host.to_string(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            authority,
            target,
            user,
            password,
            masked: mask_url(raw),
            raw: raw.to_string(),
        })
    }

    /// The URL exactly as configured, password included: what the plugin puts
    /// in the relay record, never in a log line.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `Basic <base64(user:password)>` when the URL has a user and a password,
    /// as lib-http sends it.
    pub fn basic_auth(&self) -> Option<String> {
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
