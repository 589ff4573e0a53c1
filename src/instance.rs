//! One driver instance for one mail user: its parsed config, where its
//! notifications go, and the METADATA activation cache, with the built-in
//! driver's rules.

use std::path::Path;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use ox_push_record::{Item, Policy, Target};

use crate::client;
use crate::config::{self, Complaint, Config, DEFAULT_RELAY_SOCKET_NAME};
use crate::json::{self, Event, Notification};
use crate::log::{OxPushLogLevel, Sink};

/// What the shim tells an instance about the mail user it serves.
pub struct UserContext<'a> {
    pub username: &'a [u8],
    /// Dovecot's `base_dir` (the relay socket is there by default).
    pub base_dir: &'a Path,
    pub tls: TlsSettings,
    /// An autocreated user (LDA's and LMTP's raw user): says nothing.
    pub quiet: bool,
}

/// The mail user's TLS client settings (`ssl_client_*`), passed on to the relay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<String>,
    pub ca_dir: Option<String>,
    pub verify: bool,
}

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
    /// The parsed driver line, shared by every user of the process; only set
    /// when it parsed.
    config: Option<Rc<config::Parsed>>,
    /// Where notifications go; None when the relay socket was refused.
    target: Option<Target>,
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
    /// Dovecot 2.3: parses the driver line (once per process and line) and
    /// sets up the relay client. A bad config gives one error line per process
    /// and a disabled instance; `quiet` (autocreated users such as LDA's raw
    /// user) suppresses the config lines.
    pub fn new(raw: &str, user: &UserContext<'_>, log: &dyn Sink) -> Instance {
        let parsed = config::parse_cached(raw);
        Instance::build(parsed, raw, user, log)
    }

    /// Dovecot 2.4: the same from a `push_notification <name> { }` block.
    pub fn from_block(
        block: &config::BlockSettings<'_>,
        user: &UserContext<'_>,
        log: &dyn Sink,
    ) -> Instance {
        let parsed = Rc::new(config::from_block(block));
        // Complaints once per process and block (the key is never logged).
        let key = format!("{block:?}");
        Instance::build(parsed, &key, user, log)
    }

    fn build(
        parsed: Rc<config::Parsed>,
        report_key: &str,
        user: &UserContext<'_>,
        log: &dyn Sink,
    ) -> Instance {
        let mut inst = Instance {
            config: None,
            target: None,
            username: user.username.to_vec(),
            cache: None,
        };
        // Autocreated users (LDA's and LMTP's raw user) never speak, and the
        // first real one speaks for the whole process.
        let speak = !user.quiet && config::first_report(report_key);
        let ok = match &*parsed {
            Err(e) => {
                if speak {
                    log.log(OxPushLogLevel::Error, e);
                }
                return inst;
            }
            Ok(ok) => ok,
        };
        let cfg = &ok.0;
        if speak {
            for c in &ok.1 {
                match c {
                    Complaint::Error(m) => log.log(OxPushLogLevel::Error, m),
                    Complaint::Warning(m) => log.log(OxPushLogLevel::Warning, m),
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
            log.log(
                OxPushLogLevel::Debug,
                &format!(
                    "Using request timeout: {} ms, max age: {} s",
                    cfg.timeout.as_millis(),
                    cfg.max_age.as_secs()
                ),
            );
        }
        let socket = cfg
            .relay_socket
            .clone()
            .unwrap_or_else(|| user.base_dir.join(DEFAULT_RELAY_SOCKET_NAME));
        match client::configure(&socket) {
            Ok(()) => {
                client::note_shutdown_timeout(cfg.shutdown_timeout);
                inst.target = Some(Target {
                    url: cfg.url.as_str().to_string(),
                    tls_verify: user.tls.verify,
                    ca_file: user.tls.ca_file.clone(),
                    ca_dir: user.tls.ca_dir.clone(),
                })
            }
            Err(e) => {
                if speak {
                    log.log(OxPushLogLevel::Error, &e);
                }
                return inst;
            }
        }
        inst.config = Some(parsed.clone());
        inst
    }

    fn cfg(&self) -> Option<&Config> {
        match self.config.as_deref() {
            Some(Ok((c, _))) => Some(c),
            _ => None,
        }
    }

    /// False when the config or the relay socket was refused: the instance then
    /// never takes part in a transaction.
    pub fn enabled(&self) -> bool {
        self.cfg().is_some() && self.target.is_some()
    }

    pub fn watches(&self, vname: &[u8]) -> bool {
        self.cfg().is_some_and(|c| c.folders.watches(vname))
    }

    pub fn events(&self) -> u32 {
        self.cfg().map_or(0, |c| c.events)
    }

    pub fn needs_lookup(&self, now: i64) -> bool {
        match (&self.cache, self.cfg()) {
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

    /// Builds the body and hands it to the relay client; `metadata_user` is the
    /// transaction's `user=`.
    pub fn submit(&self, event: Event, metadata_user: &[u8], n: Notification<'_>, log: &dyn Sink) {
        let (Some(cfg), Some(target)) = (self.cfg(), &self.target) else {
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
        let item = Item {
            id: new_id(),
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            policy: Policy {
                timeout_ms: cfg.timeout.as_millis().clamp(1, u32::MAX.into()) as u32,
                max_age_secs: cfg.max_age.as_secs().min(u32::MAX.into()) as u32,
                notification_id: cfg.notification_id,
            },
            target: target.clone(),
            body,
        };
        if let Err(e) = client::submit(item) {
            log.log(OxPushLogLevel::Error, &e);
        }
    }
}

/// A random version-4 UUID: the notification's id, kept by the relay across
/// retries and restarts (`X-Notification-Id`), and what it drops repeats by.
pub fn new_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: id is a valid buffer of 16 bytes.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), libc::GRND_NONBLOCK) };
    if n != id.len() as isize {
        // No entropy yet (early boot): unique enough from time and pid.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id = (t ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
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
