//! Settings of the permanent-listener path: IMAP towards Dovecot (`mock.imap.*`), OX's
//! `mail-push.properties` keys (`com.openexchange.push.*`) and the credential storage.

use std::path::PathBuf;

use super::{ConfigError, Reader, Secret};

/// How the IMAP connection to Dovecot is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapTls {
    None,
    StartTls,
    Tls,
}

/// `mock.imap.*`: the Dovecot that logins are checked against and METADATA is set on.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: ImapTls,
    pub ca_file: Option<PathBuf>,
    pub master_user: Option<String>,
    pub master_password: Option<Secret>,
    /// Bound of one IMAP conversation (connect + commands).
    pub timeout_ms: u64,
    /// Pause before the single retry of a failed registration (OX: 5 s).
    pub retry_delay_ms: u64,
}

/// Format of stored passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredFormat {
    /// AES-256-GCM, random nonce, key from Argon2id over passcrypt (the default).
    Aead,
    /// OX 7.x `CryptoServiceImpl`: AES-128-CBC, zero IV, PBKDF2-SHA1 with a fixed salt.
    OxLegacy,
}

/// `com.openexchange.push.credstorage.*` plus `mock.credstorage.format`.
#[derive(Debug, Clone)]
pub struct CredStorageSettings {
    pub enabled: bool,
    pub passcrypt: Option<Secret>,
    pub rdb: bool,
    pub format: CredFormat,
}

/// Everything about permanent listeners.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// `mock.imap.host` set: logins go to IMAP and permanent listeners set METADATA.
    pub imap: Option<ImapSettings>,
    pub allow_permanent: bool,
    pub credstorage: CredStorageSettings,
    /// `branding.yml` for `/config/providers` (optional).
    pub branding: Option<PathBuf>,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            imap: None,
            allow_permanent: true,
            credstorage: CredStorageSettings {
                enabled: false,
                passcrypt: None,
                rdb: false,
                format: CredFormat::Aead,
            },
            branding: None,
        }
    }
}

/// OX's start-up failure text when credstorage is on without passcrypt.
pub const MISSING_PASSCRYPT: &str = "Property \"com.openexchange.push.credstorage.enabled\" set to \"true\", but missing value for \"com.openexchange.push.credstorage.passcrypt\" property.";

/// A start-up refusal that is not about one bad value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupRefusal(pub String);

pub(super) fn read(r: &Reader<'_>) -> Result<PushSettings, ConfigError> {
    let mut s = PushSettings::default();
    if let Some(host) = r.string("mock.imap.host").filter(|h| !h.is_empty()) {
        let tls = match r.string("mock.imap.tls").as_deref() {
            None | Some("none") => ImapTls::None,
            Some("starttls") => ImapTls::StartTls,
            Some("tls") => ImapTls::Tls,
            Some(_) => return Err(r.invalid("mock.imap.tls", "none, starttls or tls")),
        };
        let default_port = if tls == ImapTls::Tls { 993 } else { 143 };
        s.imap = Some(ImapSettings {
            host,
            port: r
                .parse("mock.imap.port", "a TCP port number")?
                .unwrap_or(default_port),
            tls,
            ca_file: r.existing_file("mock.imap.ca_file")?,
            master_user: r.string("mock.imap.master.user"),
            master_password: r.secret("mock.imap.master.password"),
            timeout_ms: r.positive("mock.imap.timeout_ms")?.unwrap_or(10_000),
            retry_delay_ms: r
                .parse("mock.imap.retry_delay_ms", "a number of milliseconds")?
                .unwrap_or(5_000),
        });
    }
    if let Some(i) = &s.imap {
        let cleartext_ok = r
            .boolean("mock.imap.allow_cleartext_master")?
            .unwrap_or(false);
        if i.master_user.is_some() && i.tls == ImapTls::None && !cleartext_ok {
            return Err(r.invalid(
                "mock.imap.tls",
                "starttls or tls when mock.imap.master.user is set (the master password would cross the network in clear; set mock.imap.allow_cleartext_master=true to allow it anyway)",
            ));
        }
    }
    s.allow_permanent = r
        .boolean("com.openexchange.push.allowPermanentPush")?
        .unwrap_or(true);
    let c = &mut s.credstorage;
    c.enabled = r
        .boolean("com.openexchange.push.credstorage.enabled")?
        .unwrap_or(false);
    c.passcrypt = r.secret("com.openexchange.push.credstorage.passcrypt");
    c.rdb = r
        .boolean("com.openexchange.push.credstorage.rdb")?
        .unwrap_or(false);
    c.format = match r.string("mock.credstorage.format").as_deref() {
        None | Some("aead") => CredFormat::Aead,
        Some("ox-legacy") => CredFormat::OxLegacy,
        Some(_) => return Err(r.invalid("mock.credstorage.format", "aead or ox-legacy")),
    };
    s.branding = r.existing_file("mock.branding.file")?.or_else(|| {
        let p = r.dir.join("branding.yml");
        p.is_file().then_some(p)
    });
    Ok(s)
}

impl PushSettings {
    /// OX refuses to start the push bundle when credstorage is on without passcrypt.
    pub fn check(&self) -> Result<(), StartupRefusal> {
        let empty = self
            .credstorage
            .passcrypt
            .as_ref()
            .is_none_or(|p| p.expose().trim().is_empty());
        if self.credstorage.enabled && empty {
            return Err(StartupRefusal(MISSING_PASSCRYPT.into()));
        }
        Ok(())
    }
}
