//! `mailapp-config.yml`: per-host switch for mail-app logins (a project convention).
//!
//! OX's real file format is not public; the mock models it on the documented `as-config.yml`
//! host matching: blocks apply by `host` (exact, case-insensitive, or `all`) or `hostRegex`;
//! the `default` block is applied first, then every other applicable block in file order.

use regex::Regex;
use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

use super::ConfigError;

#[derive(Debug, Clone)]
struct Block {
    name: String,
    host: Option<String>,
    host_regex: Option<Regex>,
    mail_app_enabled: Option<bool>,
}

/// The parsed file; an absent file allows mail-app logins everywhere.
#[derive(Debug, Clone, Default)]
pub struct MailAppConfig {
    blocks: Vec<Block>,
}

/// The outcome of evaluating the file for one host, with the block that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAppDecision {
    pub enabled: bool,
    pub block: Option<String>,
}

impl MailAppConfig {
    pub fn load(path: &Path) -> Result<MailAppConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<MailAppConfig, ConfigError> {
        let invalid = |key: &str, value: String, expected: &str| ConfigError::Invalid {
            file: path.display().to_string(),
            key: key.to_string(),
            value,
            expected: expected.to_string(),
        };
        let root: Mapping = match serde_yaml_ng::from_str::<Value>(text) {
            Ok(Value::Mapping(m)) => m,
            Ok(Value::Null) => Mapping::new(),
            Ok(_) => return Err(invalid("<root>", String::new(), "a map of named blocks")),
            Err(e) => return Err(invalid("<root>", e.to_string(), "valid YAML")),
        };
        let mut blocks = Vec::new();
        for (name, body) in root {
            let name = name.as_str().unwrap_or_default().to_string();
            let Value::Mapping(body) = body else {
                return Err(invalid(
                    &name,
                    format!("{body:?}"),
                    "a map with host/hostRegex/mail_app_enabled",
                ));
            };
            let mut block = Block {
                name: name.clone(),
                host: None,
                host_regex: None,
                mail_app_enabled: None,
            };
            for (k, v) in body {
                let key = k.as_str().unwrap_or_default();
                let full = format!("{name}.{key}");
                match key {
                    "host" => {
                        block.host = Some(
                            v.as_str()
                                .ok_or_else(|| {
                                    invalid(&full, format!("{v:?}"), "a host name or all")
                                })?
                                .to_ascii_lowercase(),
                        )
                    }
                    "hostRegex" => {
                        let s = v.as_str().ok_or_else(|| {
                            invalid(&full, format!("{v:?}"), "a regular expression")
                        })?;
                        block.host_regex =
                            Some(Regex::new(s).map_err(|_| {
                                invalid(&full, s.to_string(), "a regular expression")
                            })?);
                    }
                    "mail_app_enabled" => {
                        block.mail_app_enabled = Some(
                            v.as_bool()
                                .ok_or_else(|| invalid(&full, format!("{v:?}"), "true or false"))?,
                        )
                    }
                    _ => {}
                }
            }
            blocks.push(block);
        }
        // The `default` block is applied first regardless of its position.
        blocks.sort_by_key(|b| b.name != "default");
        Ok(MailAppConfig { blocks })
    }

    /// Evaluates the blocks for a request `Host` header value (port stripped).
    pub fn decide(&self, host_header: &str) -> MailAppDecision {
        let host = strip_port(host_header).to_ascii_lowercase();
        let mut d = MailAppDecision {
            enabled: true,
            block: None,
        };
        for b in &self.blocks {
            let applies = b.host.as_deref().is_some_and(|h| h == "all" || h == host)
                || b.host_regex.as_ref().is_some_and(|r| r.is_match(&host));
            if let (true, Some(v)) = (applies, b.mail_app_enabled) {
                d = MailAppDecision {
                    enabled: v,
                    block: Some(b.name.clone()),
                };
            }
        }
        d
    }
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "intranet:\n  host: mail.intranet.example\n  mail_app_enabled: false\ndefault:\n  host: all\n  mail_app_enabled: true\nlab:\n  hostRegex: '^lab[0-9]+\\.'\n  mail_app_enabled: false\nnohost:\n  mail_app_enabled: false\n";

    #[test]
    fn later_blocks_override_default_and_port_is_stripped() {
        let c = MailAppConfig::parse(TEXT, Path::new("m.yml")).unwrap();
        assert_eq!(c.decide("other.example").block.as_deref(), Some("default"));
        assert!(c.decide("other.example:443").enabled);
        let d = c.decide("Mail.Intranet.Example:8009");
        assert!(!d.enabled);
        assert_eq!(d.block.as_deref(), Some("intranet"));
        assert!(!c.decide("lab7.example").enabled);
        assert!(MailAppConfig::default().decide("x").enabled);
    }

    #[test]
    fn bad_value_is_reported() {
        let err = MailAppConfig::parse(
            "default:\n  host: all\n  mail_app_enabled: maybe\n",
            Path::new("m.yml"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("default.mail_app_enabled"),
            "{err}"
        );
    }
}
