//! IMAP towards a real Dovecot with TLS (`mock.imap.tls = starttls | tls`, `mock.imap.ca_file`
//! trusting a generated CA; an untrusted certificate refused), and the Dovecot master user path
//! (`mock.imap.master.*`, login `user*master`) re-asserting METADATA without stored credentials.

mod chain;
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mock_middleware::testpki::TestPki;
use serde_json::json;

const APNS_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";
const CLIENT: &str = "open-xchange-mailapp";

/// A directory Dovecot's processes can read (tempdirs are 0700).
fn readable_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Writes the server certificate and key, and the CA; returns Dovecot settings for TLS with an
/// implicit-TLS listener on `imaps_port` (a second `service imap-login` block overrides the
/// harness's `port = 0`; a later `ssl = yes` overrides its `ssl = no`).
fn tls_setup(dir: &Path, pki: &TestPki, imaps_port: u16) -> Vec<String> {
    std::fs::write(dir.join("server.pem"), &pki.server_cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &pki.server_key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    vec![
        "ssl = yes".into(),
        format!("ssl_cert = <{}", dir.join("server.pem").display()),
        format!("ssl_key = <{}", dir.join("server.key").display()),
        format!(
            "service imap-login {{\n  inet_listener imaps {{\n    port = {imaps_port}\n  }}\n}}"
        ),
    ]
}

/// Login over IMAP, subscribe, and the METADATA is set through the secured connection.
async fn login_subscribe_metadata(c: &chain::Chain) {
    let bad = c.h.login("alice", "wrong", CLIENT).await;
    assert_eq!(bad["code"], "LGI-0006", "{bad}");
    let l = c.h.session("alice", "pw", CLIENT).await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_trusted_ca() {
    let pki = TestPki::generate().unwrap();
    let d = readable_dir();
    let extra = tls_setup(d.path(), &pki, support::free_port());
    let c = chain::start_with(
        extra,
        &format!(
            "mock.imap.tls=starttls\nmock.imap.ca_file={}\n",
            d.path().join("ca.pem").display()
        ),
    )
    .await;
    login_subscribe_metadata(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_trusted_ca() {
    let pki = TestPki::generate().unwrap();
    let d = readable_dir();
    let imaps = support::free_port();
    let extra = tls_setup(d.path(), &pki, imaps);
    let c = chain::start_with(
        extra,
        &format!(
            "mock.imap.tls=tls\nmock.imap.port={imaps}\nmock.imap.ca_file={}\n",
            d.path().join("ca.pem").display()
        ),
    )
    .await;
    login_subscribe_metadata(&c).await;
    // The listener really is implicit TLS: a plain IMAP greeting does not come from it.
    let plain = tokio::task::block_in_place(|| {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", imaps)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut b = [0u8; 4];
        s.read(&mut b).map(|n| b[..n].to_vec()).unwrap_or_default()
    });
    assert_ne!(plain, b"* OK", "imaps port answered in plain text");
}

/// An untrusted certificate: the login cannot be checked (LGI-0003) and the log names TLS.
async fn refused(mode: &str) {
    let server_pki = TestPki::generate().unwrap();
    let other_ca = TestPki::generate().unwrap();
    let d = readable_dir();
    let imaps = support::free_port();
    let extra = tls_setup(d.path(), &server_pki, imaps);
    std::fs::write(d.path().join("other-ca.pem"), &other_ca.ca_pem).unwrap();
    let port = if mode == "tls" {
        format!("mock.imap.port={imaps}\n")
    } else {
        String::new()
    };
    let c = chain::start_with(
        extra,
        &format!(
            "mock.imap.tls={mode}\n{port}mock.imap.ca_file={}\n",
            d.path().join("other-ca.pem").display()
        ),
    )
    .await;
    let v = c.h.login("alice", "pw", CLIENT).await;
    assert_eq!(v["code"], "LGI-0003", "{v}");
    assert!(v.get("session").is_none(), "{v}");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let log = chain::logs().text();
        if log.contains("TLS towards IMAP failed: invalid peer certificate") {
            break;
        }
        assert!(Instant::now() < end, "no TLS failure in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_refuses_an_untrusted_certificate() {
    refused("tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_refuses_an_untrusted_certificate() {
    refused("starttls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_user_sets_metadata_without_stored_credentials() {
    let d = readable_dir();
    let master = d.path().join("master-users");
    std::fs::write(&master, "pushmaster:{plain}master-pw\n").unwrap();
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o644)).unwrap();
    let extra = vec![
        "auth_master_user_separator = *".to_string(),
        format!(
            "passdb {{\n  driver = passwd-file\n  args = {}\n  master = yes\n}}",
            master.display()
        ),
    ];
    // Credential storage stays off: after a restart only the master user can log in for alice.
    let mut c = chain::start_with(
        extra,
        // Loopback only: the cleartext master login is allowed explicitly.
        "mock.imap.master.user=pushmaster\nmock.imap.master.password=master-pw\nmock.imap.allow_cleartext_master=true\n",
    )
    .await;
    // Dovecot really accepts alice*pushmaster.
    tokio::task::block_in_place(|| {
        let mut i = support::Imap::login(c.dc.imap_port, "\"alice*pushmaster\"", "master-pw");
        let r = i.cmd("LOGOUT");
        assert!(r.iter().any(|l| l.contains("OK")), "{r:?}");
    });
    let l = c.h.session("alice", "pw", CLIENT).await;
    c.h.subscribe(&l, APNS_TOKEN, "apn").await;
    c.wait_metadata("alice", "user=3@1").await;
    // Someone clears it; a restart (no session, no stored credentials) puts it back.
    c.unset_metadata("alice").await;
    c.h.restart_server().await;
    c.wait_metadata("alice", "user=3@1").await;
    assert_eq!(
        c.h.get_json(c.h.admin("/mock/pushusers")).await,
        json!([{"context": 1, "user": 3, "permanent": true}])
    );
    // Dovecot saw the master login.
    assert!(
        tokio::task::block_in_place(|| c
            .dc
            .wait_log(Duration::from_secs(5), |l| l.contains("pushmaster"))),
        "{}",
        c.dc.log()
    );
    // The last device leaves: NIL through the master user as well.
    let v =
        c.h.pns(
            &c.h.session("alice", "pw", CLIENT).await,
            "unsubscribe",
            json!({"token": APNS_TOKEN, "transport": "apn"}),
        )
        .await;
    assert_eq!(v, json!({"data": {"success": true}}));
    c.wait_metadata("alice", "").await;
}
