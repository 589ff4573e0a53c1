//! Secrets stay secret (issue 11, point 7): no settings `Debug` shows one, `init-demo` writes
//! owner-only files, a master password never crosses the network in clear by default, login
//! cookies carry `SameSite` (and `Secure` behind TLS), passwords are not taken from URLs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use mock_middleware::config::{Properties, Settings, UsersFile};

const SECRETS: &[&str] = &[
    "basic-pw-S3",
    "p12-pw-S4",
    "gcm-key-S5",
    "master-pw-S6",
    "passcrypt-S7",
    "user-pw-S8",
];

fn settings_from(text: &str, dir: &Path) -> Result<Settings, String> {
    let mut p = Properties::default();
    p.merge_text(text, &dir.join("mock.properties"));
    Settings::from_properties(&p, dir).map_err(|e| e.to_string())
}

#[test]
fn settings_debug_output_contains_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ks.p12"), b"x").unwrap();
    let text = "com.openexchange.rest.services.basic-auth.login=dovecot\n\
        com.openexchange.rest.services.basic-auth.password=basic-pw-S3\n\
        com.openxchange.mobilepush.events.apn.ios.keystore=ks.p12\n\
        com.openxchange.mobilepush.events.apn.ios.password=p12-pw-S4\n\
        com.openxchange.mobilepush.events.gcm.key=gcm-key-S5\n\
        mock.imap.host=127.0.0.1\nmock.imap.tls=tls\nmock.imap.master.user=master\n\
        mock.imap.master.password=master-pw-S6\n\
        com.openexchange.push.credstorage.enabled=true\n\
        com.openexchange.push.credstorage.passcrypt=passcrypt-S7\n";
    let mut s = settings_from(text, dir.path()).unwrap();
    s.users = UsersFile::parse(
        "users:\n  - login: a\n    password: user-pw-S8\n    userId: 3\n    contextId: 1\n",
        Path::new("users.yml"),
    )
    .unwrap();
    let dbg = format!("{s:?} {s:#?}");
    for secret in SECRETS {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
    assert!(dbg.contains("<redacted>"), "{dbg}");
}

#[test]
fn imap_master_password_over_cleartext_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let base = "mock.imap.host=127.0.0.1\nmock.imap.master.user=m\nmock.imap.master.password=p\n";
    let err = settings_from(base, dir.path()).unwrap_err();
    assert!(
        err.contains("mock.imap.tls") && err.contains("in clear"),
        "{err}"
    );
    assert!(settings_from(&format!("{base}mock.imap.tls=starttls\n"), dir.path()).is_ok());
    let allowed = format!("{base}mock.imap.allow_cleartext_master=true\n");
    assert!(settings_from(&allowed, dir.path()).is_ok());
}

#[test]
fn init_demo_writes_keys_passwords_and_database_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    std::fs::create_dir_all(&d).unwrap();
    // A file left with wider permissions by an earlier run is tightened too.
    std::fs::write(d.join("mock.properties"), "old").unwrap();
    std::fs::set_permissions(
        d.join("mock.properties"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let ports = mock_middleware::tools::demo::DemoPorts {
        http: 1,
        admin: 2,
        apns: 3,
        fcm: 4,
        fake_admin: 5,
    };
    mock_middleware::tools::demo::init_demo(&d, ports, Default::default()).unwrap();
    let mut seen = 0;
    for e in std::fs::read_dir(&d).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", e.path().display());
        seen += 1;
    }
    assert!(seen >= 9, "{seen} files");
}

/// Logs alice in (optionally as if behind a TLS proxy) and returns the Set-Cookie values.
async fn login_cookies(h: &Harness, behind_tls: bool) -> Vec<String> {
    let mut r = h.http.post(h.url("/ajax/login?action=login")).form(&[
        ("name", "alice"),
        ("password", "pw-alice"),
        ("client", "open-xchange-mailapp"),
    ]);
    if behind_tls {
        r = r.header("x-forwarded-proto", "https");
    }
    let r = r.send().await.unwrap();
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn login_cookies_are_samesite_and_secure_behind_tls() {
    let h = Harness::start(Opts::default()).await;
    let plain = login_cookies(&h, false).await;
    assert_eq!(plain.len(), 4);
    assert!(
        plain
            .iter()
            .all(|c| c.contains("SameSite=Lax") && !c.contains("Secure")),
        "{plain:?}"
    );
    let tls = login_cookies(&h, true).await;
    assert!(
        tls.iter()
            .all(|c| c.contains("SameSite=Lax") && c.contains("; Secure")),
        "{tls:?}"
    );
}

#[tokio::test]
async fn password_in_the_query_string_is_refused() {
    let h = Harness::start(Opts::default()).await;
    let v = h
        .post_form(
            "/ajax/login?action=login&name=alice&password=pw-alice",
            &[("client", "open-xchange-mailapp")],
        )
        .await;
    assert_eq!(v["code"], "SVL-0010", "{v}");
    assert!(v["error"].as_str().unwrap().contains("password"), "{v}");
    assert!(v.get("session").is_none(), "{v}");
}

#[tokio::test]
async fn basic_scheme_is_matched_case_insensitively() {
    use base64::Engine;
    let h = Harness::start(Opts::default()).await;
    let creds =
        base64::engine::general_purpose::STANDARD.encode(format!("{REST_LOGIN}:{REST_PASSWORD}"));
    for scheme in ["Basic", "basic", "BASIC"] {
        let r = h
            .http
            .put(h.url("/preliminary/http-notify/v1/notify"))
            .header("authorization", format!("{scheme} {creds}"))
            .body(new_mail("3@1", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
}
