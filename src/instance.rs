//! One driver instance for one mail user: its parsed config, its endpoint, and
//! the METADATA activation cache, with the built-in driver's rules.

use crate::config::{self, Complaint, Config};
use crate::http::TlsSettings;
use crate::json::{self, Event, Notification};
use crate::log::{OxPushLogLevel, Sink};
use crate::sender::{self, EndpointId};

/// The server METADATA entry that switches push on for a user.
pub const METADATA_KEY: &str = "/private/vendor/vendor.dovecot/http-notify";

/// What looking up the METADATA entry gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Vec<u8>),
    NotFound,
    Error(String),
}

/// Decision for one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    Skip,
    /// Take part; `user` is the METADATA `user=` value.
    Active {
        user: Vec<u8>,
    },
}

pub struct Instance {
    pub config: Option<Config>,
    endpoint: Option<EndpointId>,
    tls: TlsSettings,
    username: Vec<u8>,
    /// (ioloop time in seconds, raw value) of the last successful lookup.
    cache: Option<(i64, Vec<u8>)>,
}

/// Dovecot's tab-unescaping (`str_tabunescape`): \001 followed by 1, t, r, n, 0.
fn tab_unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == 0x01 && i + 1 < s.len() {
            out.push(match s[i + 1] {
                b'1' => 0x01,
                b't' => b'\t',
                b'r' => b'\r',
                b'n' => b'\n',
                b'0' => 0,
                other => other,
            });
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The `user=` value of a METADATA entry: elements split on TAB and
/// tab-unescaped, each split at its first `=`, the last `user` wins.
pub fn metadata_user(value: &[u8]) -> Option<Vec<u8>> {
    let mut user = None;
    for element in value.split(|b| *b == b'\t') {
        let element = tab_unescape(element);
        if let Some(eq) = element.iter().position(|b| *b == b'=') {
            if &element[..eq] == b"user" {
                user = Some(element[eq + 1..].to_vec());
            }
        }
    }
    user
}

impl Instance {
    /// Parses the config and finds (or creates) the endpoint. A bad config gives
    /// one error line and a disabled instance; `quiet` (autocreated users such as
    /// LDA's raw user) suppresses the config lines so each is logged once.
    pub fn new(
        raw: &str,
        username: &[u8],
        tls: TlsSettings,
        quiet: bool,
        log: &dyn Sink,
    ) -> Instance {
        let mut inst = Instance {
            config: None,
            endpoint: None,
            tls,
            username: username.to_vec(),
            cache: None,
        };
        match config::parse_cached(raw) {
            Err(e) => {
                if !quiet {
                    log.log(OxPushLogLevel::Error, &e);
                }
            }
            Ok((cfg, complaints)) => {
                if !quiet {
                    for c in complaints {
                        match c {
                            Complaint::Error(m) => log.log(OxPushLogLevel::Error, &m),
                            Complaint::Warning(m) => log.log(OxPushLogLevel::Warning, &m),
                        }
                    }
                }
                if log.debug_enabled() {
                    crate::log::set_background_debug(true);
                    log.log(
                        OxPushLogLevel::Debug,
                        &format!("Using URL {}", cfg.url.masked),
                    );
                    log.log(
                        OxPushLogLevel::Debug,
                        &format!("Using cache lifetime: {}", cfg.cache_lifetime.as_secs()),
                    );
                }
                if !quiet {
                    match sender::endpoint_for(raw, &cfg, &inst.tls) {
                        Ok((ep, err)) => {
                            if let Some(e) = err {
                                log.log(OxPushLogLevel::Error, &e);
                            }
                            inst.endpoint = Some(ep);
                        }
                        Err(e) => log.log(OxPushLogLevel::Error, &e),
                    }
                }
                inst.config = Some(cfg);
            }
        }
        inst
    }

    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    pub fn watches(&self, vname: &[u8]) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.folders.watches(vname))
    }

    pub fn events(&self) -> u32 {
        self.config.as_ref().map_or(0, |c| c.events)
    }

    pub fn needs_lookup(&self, now: i64) -> bool {
        match (&self.cache, &self.config) {
            (Some((at, _)), Some(c)) => at + c.cache_lifetime.as_secs() as i64 <= now,
            _ => true,
        }
    }

    pub fn set_lookup(&mut self, now: i64, lookup: Lookup, log: &dyn Sink) {
        match lookup {
            Lookup::Found(v) => self.cache = Some((now, v)),
            Lookup::NotFound => {
                self.cache = None;
                log.log(
                    OxPushLogLevel::Debug,
                    &format!(
                        "Skipped because not active ({METADATA_KEY} METADATA not set; enable \
                         push with SETMETADATA \"\" ({METADATA_KEY} \"user=<uid>@<cid>\"))"
                    ),
                );
            }
            Lookup::Error(e) => {
                self.cache = None;
                log.log(
                    OxPushLogLevel::Error,
                    &format!("Skipped because unable to get attribute: {e}"),
                );
            }
        }
    }

    /// After the lookup: take part in the transaction or not.
    pub fn begin(&self, log: &dyn Sink) -> Begin {
        let Some((_, value)) = &self.cache else {
            return Begin::Skip;
        };
        match metadata_user(value) {
            None => {
                log.log(
                    OxPushLogLevel::Error,
                    &format!(
                        "No user provided in config: the {METADATA_KEY} METADATA value has no \
                         user= element (expected e.g. user=3@1)"
                    ),
                );
                Begin::Skip
            }
            Some(user) => {
                if log.debug_enabled() {
                    log.log(
                        OxPushLogLevel::Debug,
                        &format!("User ({})", String::from_utf8_lossy(&user)),
                    );
                }
                Begin::Active { user }
            }
        }
    }

    /// Builds the body and queues it; `metadata_user` is the transaction's `user=`.
    pub fn submit(&self, event: Event, metadata_user: &[u8], n: Notification<'_>, log: &dyn Sink) {
        let (Some(cfg), Some(ep)) = (&self.config, &self.endpoint) else {
            return;
        };
        let user: &[u8] = if cfg.user_from_metadata {
            metadata_user
        } else {
            &self.username
        };
        let body = json::body(event, &Notification { user, ..n });
        if log.debug_enabled() {
            log.log(
                OxPushLogLevel::Debug,
                &format!("Sending notification: {}", String::from_utf8_lossy(&body)),
            );
        }
        if let Err(e) = sender::submit(*ep, body) {
            log.log(OxPushLogLevel::Error, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_user_parsing_like_builtin() {
        assert_eq!(metadata_user(b"user=3@1"), Some(b"3@1".to_vec()));
        assert_eq!(metadata_user(b"user=a=b"), Some(b"a=b".to_vec()));
        assert_eq!(
            metadata_user(b"user=first user=second"),
            Some(b"first user=second".to_vec())
        );
        assert_eq!(metadata_user(b"user="), Some(Vec::new()));
        assert_eq!(metadata_user(b"user=1@2\tfoo=bar"), Some(b"1@2".to_vec()));
        assert_eq!(
            metadata_user(b"foo=bar\tuser=x\tuser=y"),
            Some(b"y".to_vec())
        );
        assert_eq!(metadata_user(b"foo\tbar=baz"), None);
        assert_eq!(metadata_user(b"user=a\x01tb"), Some(b"a\tb".to_vec()));
    }
}
