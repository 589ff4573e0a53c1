//! Configuration: the OX-style property set of a directory plus the mock's YAML files.
//!
//! Everything the service reads is resolved here once, at startup, into [`Settings`]. A value
//! that cannot be used stops startup with one line naming the file, key, value and the expected
//! form, so that an operator can fix it without reading code.

pub mod cluster;
pub mod limits;
pub mod mailapp;
pub mod properties;
pub mod push;
mod reader;
pub mod secret;
pub mod users;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::wildcard::{parse_client_patterns, wildcard_match};
pub use cluster::{ClusterSettings, DbTarget};
pub use mailapp::MailAppConfig;
pub use properties::Properties;
pub use push::{CredFormat, ImapSettings, ImapTls, PushSettings};
use reader::Reader;
pub use secret::Secret;
pub use users::{UserEntry, UsersFile};

/// Prefix of the legacy mobile push properties; OX spells it `openxchange` (sic).
pub const MOBILEPUSH: &str = "com.openxchange.mobilepush.events";

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {key}={value:?} is invalid: expected {expected}.")]
    Invalid {
        file: String,
        key: String,
        value: String,
        expected: String,
    },
    #[error("{file}: cannot be read: {reason}.")]
    Unreadable { file: String, reason: String },
}

/// How APNs requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnsAuth {
    Jwt,
    Certificate,
}

/// APNs transport settings (`com.openxchange.mobilepush.events.apn.ios.*`).
#[derive(Debug, Clone)]
pub struct ApnsSettings {
    pub enabled: bool,
    pub auth: ApnsAuth,
    pub keystore: Option<PathBuf>,
    pub password: Option<Secret>,
    pub production: bool,
    pub private_key: Option<PathBuf>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub topic: Option<String>,
}

/// FCM v1 / legacy GCM settings (`com.openxchange.mobilepush.events.gcm.*`).
#[derive(Debug, Clone, Default)]
pub struct GcmSettings {
    pub enabled: bool,
    pub key: Option<Secret>,
    pub service_account: Option<PathBuf>,
}

/// Every setting of the service, resolved. `Default` is what an empty directory gives.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Bearer token file of the admin listener's `/mock/*` (created 0600 when missing).
    pub admin_token_file: PathBuf,
    /// `mock.db`: a SQLite file or a PostgreSQL URL.
    pub db: DbTarget,
    pub cluster: ClusterSettings,
    pub apns_url: Option<String>,
    pub fcm_url: String,
    pub fcm_oauth_url: Option<String>,
    pub gcm_url: String,
    pub tls_ca_file: Option<PathBuf>,
    pub basic_login: Option<String>,
    pub basic_password: Option<Secret>,
    pub strict_ox: bool,
    pub queue_capacity: usize,
    pub push_concurrency: usize,
    /// HTTP/2 connections per provider host and credential (`mock.push.connections`).
    pub push_connections: usize,
    pub push_timeout_ms: u64,
    pub retry_max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_age_ms: u64,
    pub recordings_max: usize,
    /// Approximate bytes kept in each recording list (`mock.recordings.max_bytes`).
    pub recordings_max_bytes: usize,
    pub apns_expiration_s: u64,
    pub mobile_mail_app: bool,
    pub allowed_clients: Vec<String>,
    pub apns: ApnsSettings,
    pub gcm: GcmSettings,
    pub users: UsersFile,
    pub mailapp: MailAppConfig,
    pub push: PushSettings,
    pub limits: limits::ListenerLimits,
    pub login: limits::LoginSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_dir: PathBuf::from("."),
            http_listen: "127.0.0.1:8009".parse().expect("literal"),
            admin_listen: "127.0.0.1:8010".parse().expect("literal"),
            admin_token_file: PathBuf::from("admin.token"),
            db: DbTarget::Sqlite(PathBuf::from("mock-middleware.sqlite")),
            cluster: ClusterSettings::default(),
            apns_url: None,
            fcm_url: "https://fcm.googleapis.com".into(),
            fcm_oauth_url: None,
            gcm_url: "https://fcm.googleapis.com".into(),
            tls_ca_file: None,
            basic_login: None,
            basic_password: None,
            strict_ox: false,
            queue_capacity: 65536,
            push_concurrency: 256,
            push_connections: 1,
            push_timeout_ms: 10_000,
            retry_max_attempts: 5,
            retry_base_ms: 200,
            retry_max_age_ms: 60_000,
            recordings_max: 10_000,
            recordings_max_bytes: 32 << 20,
            apns_expiration_s: 86_400,
            mobile_mail_app: false,
            allowed_clients: parse_client_patterns(DEFAULT_ALLOWED_CLIENTS),
            apns: ApnsSettings {
                enabled: false,
                auth: ApnsAuth::Jwt,
                keystore: None,
                password: None,
                production: true,
                private_key: None,
                key_id: None,
                team_id: None,
                topic: None,
            },
            gcm: GcmSettings::default(),
            users: UsersFile::default(),
            mailapp: MailAppConfig::default(),
            push: PushSettings::default(),
            limits: limits::ListenerLimits::default(),
            login: limits::LoginSettings::default(),
        }
    }
}

/// Default of `com.openexchange.push.allowedClients`: the shipped 7.x list plus OX Mail v2.
pub const DEFAULT_ALLOWED_CLIENTS: &str =
    "\"USM-EAS*\", \"USM-JSON*\", \"open-xchange-mailapp\", \"open-xchange-mobile-api-facade*\"";

impl Settings {
    /// The APNs base URL in force: `mock.apns.url`, else Apple's production or sandbox host.
    pub fn apns_base(&self) -> String {
        match &self.apns_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if self.apns.production => "https://api.push.apple.com".into(),
            None => "https://api.sandbox.push.apple.com".into(),
        }
    }

    /// Loads a configuration directory: every `*.properties` file plus `users.yml` and
    /// `mailapp-config.yml` when present.
    pub fn load(dir: &Path) -> Result<Settings, ConfigError> {
        let props = Properties::load_dir(dir).map_err(|e| ConfigError::Unreadable {
            file: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut s = Settings::from_properties(&props, dir)?;
        let users_path = dir.join("users.yml");
        if users_path.exists() {
            s.users = UsersFile::load(&users_path)?;
        }
        let mailapp_path = dir.join("mailapp-config.yml");
        if mailapp_path.exists() {
            s.mailapp = MailAppConfig::load(&mailapp_path)?;
        }
        Ok(s)
    }

    /// Resolves the property set; relative paths are taken relative to `dir`.
    pub fn from_properties(p: &Properties, dir: &Path) -> Result<Settings, ConfigError> {
        let mut s = Settings {
            config_dir: dir.to_path_buf(),
            ..Settings::default()
        };
        let r = Reader { p, dir };
        s.http_listen = r
            .parse("mock.http.listen", "a socket address like 127.0.0.1:8009")?
            .unwrap_or(s.http_listen);
        s.admin_listen = r
            .parse("mock.admin.listen", "a socket address like 127.0.0.1:8010")?
            .unwrap_or(s.admin_listen);
        s.admin_token_file = r
            .path("mock.admin.token_file")
            .unwrap_or_else(|| dir.join("admin.token"));
        s.db = cluster::read_db(&r, s.db)?;
        s.cluster = cluster::read(&r)?;
        s.apns_url = r.url("mock.apns.url")?;
        s.fcm_url = r.url("mock.fcm.url")?.unwrap_or(s.fcm_url);
        s.fcm_oauth_url = r.url("mock.fcm.oauth.url")?;
        s.gcm_url = r.url("mock.gcm.url")?.unwrap_or(s.gcm_url);
        s.tls_ca_file = r.existing_file("mock.tls.ca_file")?;
        s.basic_login = r.string("com.openexchange.rest.services.basic-auth.login");
        s.basic_password = r.secret("com.openexchange.rest.services.basic-auth.password");
        s.strict_ox = r.boolean("mock.strict_ox")?.unwrap_or(s.strict_ox);
        s.queue_capacity = r
            .positive("mock.queue.capacity")?
            .unwrap_or(s.queue_capacity as u64) as usize;
        s.push_concurrency = r
            .positive("mock.push.concurrency")?
            .unwrap_or(s.push_concurrency as u64) as usize;
        s.push_connections = r
            .positive("mock.push.connections")?
            .unwrap_or(s.push_connections as u64)
            .min(16) as usize;
        s.push_timeout_ms = r
            .positive("mock.push.timeout_ms")?
            .unwrap_or(s.push_timeout_ms);
        s.retry_max_attempts = r
            .positive("mock.push.retry.max_attempts")?
            .unwrap_or(s.retry_max_attempts as u64) as u32;
        s.retry_base_ms = r
            .positive("mock.push.retry.base_ms")?
            .unwrap_or(s.retry_base_ms);
        s.retry_max_age_ms = r
            .positive("mock.push.retry.max_age_ms")?
            .unwrap_or(s.retry_max_age_ms);
        s.recordings_max = r
            .positive("mock.recordings.max")?
            .unwrap_or(s.recordings_max as u64) as usize;
        s.recordings_max_bytes = r
            .positive("mock.recordings.max_bytes")?
            .unwrap_or(s.recordings_max_bytes as u64) as usize;
        s.apns_expiration_s = r
            .parse("mock.apns.expiration_s", "a number of seconds")?
            .unwrap_or(s.apns_expiration_s);
        s.mobile_mail_app = r
            .boolean("com.openexchange.capability.mobile_mail_app")?
            .unwrap_or(s.mobile_mail_app);
        if let Some(v) = p.get("com.openexchange.push.allowedClients") {
            s.allowed_clients = parse_client_patterns(&v.value);
        }
        let apn = |k: &str| format!("{MOBILEPUSH}.apn.ios.{k}");
        s.apns.enabled = r.boolean(&apn("enabled"))?.unwrap_or(false);
        s.apns.keystore = r.path(&apn("keystore"));
        s.apns.password = r.secret(&apn("password"));
        s.apns.production = r.boolean(&apn("production"))?.unwrap_or(true);
        s.apns.private_key = r.path(&apn("privatekey"));
        s.apns.key_id = r.string(&apn("keyid"));
        s.apns.team_id = r.string(&apn("teamid"));
        s.apns.topic = r.string(&apn("topic"));
        s.apns.auth = match p.get(&apn("authtype")) {
            None if s.apns.keystore.is_some() && s.apns.private_key.is_none() => {
                ApnsAuth::Certificate
            }
            None => ApnsAuth::Jwt,
            Some(v) => match v.value.trim() {
                "jwt" => ApnsAuth::Jwt,
                "certificate" => ApnsAuth::Certificate,
                _ => return Err(r.invalid(&apn("authtype"), "\"jwt\" or \"certificate\"")),
            },
        };
        if s.apns.enabled {
            s.apns_check(&r)?;
        }
        let gcm = |k: &str| format!("{MOBILEPUSH}.gcm.{k}");
        s.gcm.enabled = r.boolean(&gcm("enabled"))?.unwrap_or(false);
        s.gcm.key = r.secret(&gcm("key"));
        s.gcm.service_account = r.existing_file(&gcm("serviceaccount"))?;
        if s.gcm.enabled && s.gcm.key.is_none() && s.gcm.service_account.is_none() {
            return Err(r.invalid(
                &gcm("enabled"),
                "gcm.serviceaccount or gcm.key to be set when gcm.enabled is true",
            ));
        }
        s.push = push::read(&r)?;
        s.limits = limits::read(&r)?;
        s.login = limits::read_login(&r)?;
        Ok(s)
    }

    fn apns_check(&self, r: &Reader<'_>) -> Result<(), ConfigError> {
        let apn = |k: &str| format!("{MOBILEPUSH}.apn.ios.{k}");
        match self.apns.auth {
            ApnsAuth::Jwt => {
                r.existing_file(&apn("privatekey"))?.ok_or_else(|| {
                    r.invalid(
                        &apn("privatekey"),
                        "the path of an APNs .p8 key when authtype is jwt",
                    )
                })?;
                for k in ["keyid", "teamid"] {
                    let v = r.string(&apn(k)).unwrap_or_default();
                    if v.len() != 10 || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return Err(r.invalid(&apn(k), "a 10-character Apple identifier"));
                    }
                }
            }
            ApnsAuth::Certificate => {
                r.existing_file(&apn("keystore"))?.ok_or_else(|| {
                    r.invalid(
                        &apn("keystore"),
                        "the path of a PKCS#12 file when authtype is certificate",
                    )
                })?;
            }
        }
        if self.apns.topic.is_none() {
            return Err(r.invalid(&apn("topic"), "the app's bundle id (the apns-topic header)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str) -> Properties {
        let mut p = Properties::default();
        p.merge_text(text, Path::new("/etc/ox/mock.properties"));
        p
    }

    #[test]
    fn defaults_when_empty() {
        let s = Settings::from_properties(&props(""), Path::new("/tmp")).unwrap();
        assert_eq!(s.http_listen.to_string(), "127.0.0.1:8009");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:8010");
        assert_eq!(s.apns_base(), "https://api.push.apple.com");
        assert!(!s.mobile_mail_app);
    }

    #[test]
    fn invalid_value_names_file_key_value_and_expectation() {
        let err = Settings::from_properties(&props("mock.http.listen=nope\n"), Path::new("/tmp"))
            .unwrap_err();
        let line = err.to_string();
        assert!(line.contains("/etc/ox/mock.properties"), "{line}");
        assert!(line.contains("mock.http.listen"), "{line}");
        assert!(line.contains("\"nope\""), "{line}");
        assert!(line.contains("socket address"), "{line}");
        let err = Settings::from_properties(&props("mock.queue.capacity=0\n"), Path::new("/tmp"))
            .unwrap_err();
        assert!(err.to_string().contains("positive integer"));
        let err = Settings::from_properties(&props("mock.strict_ox=yes\n"), Path::new("/tmp"))
            .unwrap_err();
        assert!(err.to_string().contains("true or false"));
        let err = Settings::from_properties(&props("mock.apns.url=ftp://x\n"), Path::new("/tmp"))
            .unwrap_err();
        assert!(err.to_string().contains("URL"));
    }

    #[test]
    fn sample_file_loads_and_states_the_defaults() {
        let text = include_str!("../../mock.properties.sample");
        let s = Settings::from_properties(&props(text), Path::new("/tmp")).unwrap();
        let d = Settings::default();
        assert_eq!(s.http_listen, d.http_listen);
        assert_eq!(s.admin_listen, d.admin_listen);
        assert_eq!(s.queue_capacity, d.queue_capacity);
        assert_eq!(s.push_concurrency, d.push_concurrency);
        assert_eq!(s.retry_max_attempts, d.retry_max_attempts);
        assert_eq!(s.retry_base_ms, d.retry_base_ms);
        assert_eq!(s.retry_max_age_ms, d.retry_max_age_ms);
        assert_eq!(s.recordings_max, d.recordings_max);
        assert_eq!(s.push_timeout_ms, d.push_timeout_ms);
        assert_eq!(s.apns_expiration_s, d.apns_expiration_s);
        assert_eq!(s.allowed_clients, d.allowed_clients);
        assert_eq!(s.fcm_url, d.fcm_url);
        assert_eq!(s.gcm_url, d.gcm_url);
        assert_eq!(s.apns_base(), d.apns_base());
        assert_eq!(s.push_connections, d.push_connections);
        assert_eq!(s.recordings_max_bytes, d.recordings_max_bytes);
        let (l, dl) = (&s.limits, &d.limits);
        assert_eq!(l.public.max_connections, dl.public.max_connections);
        assert_eq!(l.public.header_timeout, dl.public.header_timeout);
        assert_eq!(l.public.body_timeout, dl.public.body_timeout);
        assert_eq!(l.public.max_header_bytes, dl.public.max_header_bytes);
        assert_eq!(l.public.max_body_bytes, dl.public.max_body_bytes);
        assert_eq!(l.admin.max_connections, dl.admin.max_connections);
        let (c, dc) = (&s.cluster, &d.cluster);
        assert_eq!(c.lease, dc.lease);
        assert_eq!(c.heartbeat, dc.heartbeat);
        assert_eq!(c.dedup_keep, dc.dedup_keep);
        assert_eq!(c.pool_size, dc.pool_size);
        let (g, dg) = (&s.login, &d.login);
        assert_eq!(g.throttle.free, dg.throttle.free);
        assert_eq!(g.throttle.base, dg.throttle.base);
        assert_eq!(g.throttle.max, dg.throttle.max);
        assert_eq!(g.session_idle, dg.session_idle);
        assert_eq!(g.session_max, dg.session_max);
    }

    #[test]
    fn apns_enabled_requires_key_material() {
        let text = "com.openxchange.mobilepush.events.apn.ios.enabled=true\n";
        let err = Settings::from_properties(&props(text), Path::new("/tmp")).unwrap_err();
        assert!(err.to_string().contains("privatekey"), "{err}");
    }
}
