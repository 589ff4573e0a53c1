//! Key material and configuration generators: `init-demo`, and the fakes' view of a config dir.
//!
//! `init-demo` writes a complete, working configuration directory (properties, users, gating
//! file, APNs `.p8` key, FCM service account, CA and server certificate for the fakes) so that
//! fake providers + `serve` + one notify PUT end in a push recorded at the fake APNs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;

use crate::config::{Properties, Settings};
use crate::fake::FakeConfig;
use crate::store::{now_ms, SqliteStore, Store, Subscription};
use crate::testpki::TestPki;

/// A generator or loader failure.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}: {1}.")]
    Io(String, String),
    #[error("Key handling failed: {0}.")]
    Key(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DemoError + '_ {
    move |e| DemoError::Io(path.display().to_string(), e.to_string())
}

/// A new APNs signing key as Apple ships it (`.p8`: PKCS#8 PEM, P-256).
pub fn apns_p8() -> Result<String, DemoError> {
    rcgen::KeyPair::generate()
        .map(|k| k.serialize_pem())
        .map_err(|e| DemoError::Key(e.to_string()))
}

/// The ES256 verification key of a `.p8` file.
pub fn apns_public(p8_pem: &str) -> Result<DecodingKey, DemoError> {
    let kp = rcgen::KeyPair::from_pem(p8_pem).map_err(|e| DemoError::Key(e.to_string()))?;
    DecodingKey::from_ec_pem(kp.public_key_pem().as_bytes())
        .map_err(|e| DemoError::Key(e.to_string()))
}

/// A new service-account JSON document (RSA 2048) for `project_id` with `token_uri`.
pub fn service_account(project_id: &str, token_uri: &str) -> Result<String, DemoError> {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .map_err(|e| DemoError::Key(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| DemoError::Key(e.to_string()))?;
    let doc = json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": hex::encode(rand::random::<[u8; 20]>()),
        "private_key": pem.as_str(),
        "client_email": format!("firebase-adminsdk@{project_id}.iam.gserviceaccount.com"),
        "client_id": "100000000000000000000",
        "token_uri": token_uri,
    });
    serde_json::to_string_pretty(&doc).map_err(|e| DemoError::Key(e.to_string()))
}

/// (client_email, RS256 verification key) of a service-account document.
pub fn service_account_public(json_text: &str) -> Result<(String, DecodingKey), DemoError> {
    let v: serde_json::Value =
        serde_json::from_str(json_text).map_err(|e| DemoError::Key(e.to_string()))?;
    let pem = v["private_key"]
        .as_str()
        .ok_or_else(|| DemoError::Key("no private_key".into()))?;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| DemoError::Key(e.to_string()))?;
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| DemoError::Key(e.to_string()))?;
    let dk =
        DecodingKey::from_rsa_pem(public.as_bytes()).map_err(|e| DemoError::Key(e.to_string()))?;
    Ok((
        v["client_email"].as_str().unwrap_or_default().to_string(),
        dk,
    ))
}

/// What `fake-providers --config-dir` serves: listen addresses, TLS files and what to accept,
/// all read from the same directory the middleware uses.
pub struct FakeSetup {
    pub cfg: FakeConfig,
    pub apns: SocketAddr,
    pub fcm: SocketAddr,
    pub admin: SocketAddr,
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

/// Reads the fakes' settings (`mock.fake.*`) and credentials from a configuration directory.
pub fn fake_setup(dir: &Path) -> Result<FakeSetup, DemoError> {
    let settings = Settings::load(dir).map_err(|e| DemoError::Key(e.to_string()))?;
    let props = Properties::load_dir(dir).map_err(io(dir))?;
    let get = |k: &str, d: &str| {
        props
            .get(k)
            .map(|v| v.value.trim().to_string())
            .unwrap_or_else(|| d.to_string())
    };
    let addr = |k: &str, d: &str| -> Result<SocketAddr, DemoError> {
        get(k, d)
            .parse()
            .map_err(|_| DemoError::Key(format!("{k} must be a socket address")))
    };
    let read = |k: &str, d: &str| -> Result<String, DemoError> {
        let p = dir.join(get(k, d));
        std::fs::read_to_string(&p).map_err(io(&p))
    };
    let mut cfg = FakeConfig {
        token_lifetime_s: get("mock.fake.oauth.expires_in", "3599")
            .parse()
            .unwrap_or(3599),
        ..Default::default()
    };
    if let (Some(p), Some(kid), Some(team)) = (
        &settings.apns.private_key,
        &settings.apns.key_id,
        &settings.apns.team_id,
    ) {
        let pem = std::fs::read_to_string(p).map_err(io(p))?;
        cfg.apns_keys
            .push((kid.clone(), team.clone(), Arc::new(apns_public(&pem)?)));
    }
    if let Some(p) = &settings.gcm.service_account {
        let text = std::fs::read_to_string(p).map_err(io(p))?;
        let (email, key) = service_account_public(&text)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| DemoError::Key(e.to_string()))?;
        cfg.oauth_audience = settings
            .fcm_oauth_url
            .clone()
            .or_else(|| v["token_uri"].as_str().map(str::to_string));
        cfg.fcm_account = Some((email, Arc::new(key)));
    }
    cfg.gcm_key = settings.gcm.key.as_ref().map(|k| k.expose().to_string());
    cfg.records_max = get("mock.fake.records.max", "10000")
        .parse()
        .unwrap_or(10_000);
    let client_ca_pem = settings
        .tls_ca_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok());
    Ok(FakeSetup {
        cfg,
        apns: addr("mock.fake.apns.listen", "127.0.0.1:8443")?,
        fcm: addr("mock.fake.fcm.listen", "127.0.0.1:8444")?,
        admin: addr("mock.fake.admin.listen", "127.0.0.1:8445")?,
        cert_pem: read("mock.fake.tls.cert", "fake-server.pem")?,
        key_pem: read("mock.fake.tls.key", "fake-server.key")?,
        client_ca_pem,
    })
}

/// Ports used by `init-demo`.
#[derive(Debug, Clone, Copy)]
pub struct DemoPorts {
    pub http: u16,
    pub admin: u16,
    pub apns: u16,
    pub fcm: u16,
    pub fake_admin: u16,
}

/// Passwords for `init-demo`; random when `None`.
#[derive(Debug, Clone, Default)]
pub struct DemoSecrets {
    pub rest_password: Option<String>,
    pub user_password: Option<String>,
}

/// The demo user and device that `init-demo` creates.
pub const DEMO_USER: (&str, i32, i32) = ("demo", 3, 1);

/// Writes a complete demo configuration into `dir`; returns the lines to print.
pub fn init_demo(dir: &Path, p: DemoPorts, secrets: DemoSecrets) -> Result<Vec<String>, DemoError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Keys, passwords, tokens and the database: readable by the owner only (0600).
    let write = |name: &str, text: &str| -> Result<(), DemoError> {
        let path = dir.join(name);
        crate::config::secret::write_private(&path, text.as_bytes()).map_err(io(&path))
    };
    let pki = TestPki::generate().map_err(|e| DemoError::Key(e.to_string()))?;
    write("fake-ca.pem", &pki.ca_pem)?;
    write("fake-server.pem", &pki.server_cert_pem)?;
    write("fake-server.key", &pki.server_key_pem)?;
    write("apns-key.p8", &apns_p8()?)?;
    let token_uri = format!("https://127.0.0.1:{}/token", p.fcm);
    write(
        "fcm-service-account.json",
        &service_account("mock-demo", &token_uri)?,
    )?;
    let rest_password = secrets
        .rest_password
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 12]>()));
    let user_password = secrets
        .user_password
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 6]>()));
    for (what, v) in [
        ("rest password", &rest_password),
        ("user password", &user_password),
    ] {
        if v.is_empty() || v.contains(['@', ':', '/', '\n', ' ']) {
            return Err(DemoError::Key(format!(
                "the {what} must be non-empty without '@', ':', '/', spaces or newlines"
            )));
        }
    }
    let (login, uid, cid) = DEMO_USER;
    let props = format!(
        "# Written by `mock-middleware init-demo`.\n\
mock.http.listen=127.0.0.1:{http}\nmock.admin.listen=127.0.0.1:{admin}\nmock.db=mock-middleware.sqlite\n\
mock.apns.url=https://127.0.0.1:{apns}\nmock.fcm.url=https://127.0.0.1:{fcm}\nmock.gcm.url=https://127.0.0.1:{fcm}\n\
mock.tls.ca_file=fake-ca.pem\n\
com.openexchange.rest.services.basic-auth.login=dovecot\ncom.openexchange.rest.services.basic-auth.password={rest_password}\n\
com.openexchange.capability.mobile_mail_app=false\n\
com.openexchange.push.allowedClients=\"USM-EAS*\", \"USM-JSON*\", \"open-xchange-mailapp\", \"open-xchange-mobile-api-facade*\"\n\
com.openxchange.mobilepush.events.apn.ios.enabled=true\ncom.openxchange.mobilepush.events.apn.ios.authtype=jwt\n\
com.openxchange.mobilepush.events.apn.ios.privatekey=apns-key.p8\ncom.openxchange.mobilepush.events.apn.ios.keyid=DEMOKEY123\n\
com.openxchange.mobilepush.events.apn.ios.teamid=DEMOTEAM12\ncom.openxchange.mobilepush.events.apn.ios.topic=com.openexchange.mailapp\n\
com.openxchange.mobilepush.events.apn.ios.production=false\n\
com.openxchange.mobilepush.events.gcm.enabled=true\ncom.openxchange.mobilepush.events.gcm.serviceaccount=fcm-service-account.json\n\
mock.fake.apns.listen=127.0.0.1:{apns}\nmock.fake.fcm.listen=127.0.0.1:{fcm}\nmock.fake.admin.listen=127.0.0.1:{fake_admin}\n\
mock.fake.tls.cert=fake-server.pem\nmock.fake.tls.key=fake-server.key\n",
        http = p.http, admin = p.admin, apns = p.apns, fcm = p.fcm, fake_admin = p.fake_admin
    );
    write("mock.properties", &props)?;
    let admin_token = crate::http::admin_auth::generate();
    write("admin.token", &format!("{}\n", admin_token.expose()))?;
    write(
        "users.yml",
        &format!("users:\n  - login: {login}\n    password: {user_password}\n    userId: {uid}\n    contextId: {cid}\n    mobile_mail_app: true\ncontexts: []\n"),
    )?;
    write(
        "mailapp-config.yml",
        "default:\n  host: all\n  mail_app_enabled: true\n",
    )?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    let db = dir.join("mock-middleware.sqlite");
    let store = SqliteStore::open(&db).map_err(|e| DemoError::Key(e.to_string()))?;
    store
        .put(&Subscription {
            context_id: cid,
            user_id: uid,
            client: "open-xchange-mailapp".into(),
            transport: "apn".into(),
            token: token.clone(),
            topics: vec!["ox:mail:new".to_string()].into(),
            created: now_ms(),
        })
        .map_err(|e| DemoError::Key(e.to_string()))?;
    Ok(vec![
        format!("config dir: {}", dir.display()),
        format!("http-notify URL for Dovecot: http://dovecot:{rest_password}@127.0.0.1:{}/preliminary/http-notify/v1/notify", p.http),
        format!("demo user: login={login} password={user_password} userId={uid} contextId={cid} (METADATA user={uid}@{cid})"),
        format!("seeded APNs device token: {token}"),
        format!("middleware admin: http://127.0.0.1:{}/mock/pushes (Authorization: Bearer <token in {}>)", p.admin, dir.join("admin.token").display()),
        format!("fake providers admin: http://127.0.0.1:{}/fake/requests", p.fake_admin),
    ])
}
