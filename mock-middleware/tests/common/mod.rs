//! Shared harness: fake providers over real TLS + HTTP/2 and a middleware instance, both in this
//! process on loopback ports, configured through a real configuration directory in a temp dir.
//! Everything runs on the test's own tokio runtime, so it stops when the test ends, pass or fail.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mock_middleware::config::Settings;
use mock_middleware::fake::{self, FakeConfig, RunningFakes};
use mock_middleware::server::{self, Running};
use mock_middleware::tools::demo;
use mock_middleware::{testpki, tls};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const REST_LOGIN: &str = "dovecot";
pub const REST_PASSWORD: &str = "s3cret";
pub const TOPIC: &str = "com.example.mailapp";
pub const KEY_ID: &str = "KEYID12345";
pub const TEAM_ID: &str = "TEAMID1234";

/// One RSA service account per test binary (RSA key generation is slow in debug builds).
fn service_account_template() -> &'static str {
    static SA: OnceLock<String> = OnceLock::new();
    SA.get_or_init(|| demo::service_account("mock-test", "TOKEN_URI").expect("service account"))
}

#[derive(Clone)]
pub struct Opts {
    pub apns: bool,
    pub apns_certificate: bool,
    pub fcm: bool,
    pub gcm_key: bool,
    pub extra_props: String,
    pub users_yml: String,
    pub mailapp_yml: Option<String>,
    pub token_lifetime_s: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            apns: true,
            apns_certificate: false,
            fcm: false,
            gcm_key: false,
            extra_props: String::new(),
            users_yml: "users:\n  - login: alice\n    password: pw-alice\n    userId: 3\n    contextId: 1\n    mobile_mail_app: true\n  - login: bob\n    password: pw-bob\n    userId: 4\n    contextId: 1\n  - login: carol\n    password: pw-carol\n    userId: 5\n    contextId: 2\ncontexts:\n  - contextId: 2\n    mobile_mail_app: true\n".into(),
            mailapp_yml: None,
            token_lifetime_s: 3599,
        }
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub fakes: RunningFakes,
    pub server: Option<Running>,
    pub http: reqwest::Client,
    /// Sends the admin bearer token (`admin.token` in the config dir) with every request.
    pub admin_http: reqwest::Client,
    pub admin_token: String,
    pub opts: Opts,
}

pub struct Login {
    pub session: String,
    pub cookie: String,
}

impl Harness {
    pub async fn start(opts: Opts) -> Harness {
        let mut h = Harness::prepare(opts).await;
        h.start_server().await;
        h
    }

    /// The configuration directory and the fakes, without a middleware (tests that run the
    /// middleware as processes start them themselves).
    pub async fn prepare(opts: Opts) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let pki = testpki::TestPki::generate().expect("pki");
        std::fs::write(d.join("ca.pem"), &pki.ca_pem).unwrap();
        let p8 = demo::apns_p8().unwrap();
        std::fs::write(d.join("key.p8"), &p8).unwrap();
        let (al, fl, ml) = (bind().await, bind().await, bind().await);
        let fcm_port = fl.local_addr().unwrap().port();
        let token_uri = format!("https://127.0.0.1:{fcm_port}/token");
        let mut cfg = FakeConfig {
            token_lifetime_s: opts.token_lifetime_s,
            gcm_key: Some("legacy-server-key".into()),
            oauth_audience: Some(token_uri.clone()),
            ..Default::default()
        };
        cfg.apns_keys.push((
            KEY_ID.into(),
            TEAM_ID.into(),
            Arc::new(demo::apns_public(&p8).unwrap()),
        ));
        let sa = service_account_template().replace("TOKEN_URI", &token_uri);
        std::fs::write(d.join("sa.json"), &sa).unwrap();
        let (email, key) = demo::service_account_public(&sa).unwrap();
        cfg.fcm_account = Some((email, Arc::new(key)));
        let tls_cfg =
            tls::server_config(&pki.server_cert_pem, &pki.server_key_pem, Some(&pki.ca_pem))
                .unwrap();
        let fakes = fake::start_on(cfg, tls_cfg, al, fl, ml).unwrap();
        let apn = "com.openxchange.mobilepush.events.apn.ios";
        let mut props = format!(
            "mock.http.listen=127.0.0.1:0\nmock.admin.listen=127.0.0.1:0\nmock.db=db/mock.sqlite\n\
             mock.apns.url=https://127.0.0.1:{}\nmock.fcm.url=https://127.0.0.1:{fcm_port}\nmock.gcm.url=https://127.0.0.1:{fcm_port}\n\
             mock.tls.ca_file=ca.pem\nmock.push.retry.base_ms=50\nmock.push.timeout_ms=5000\n\
             com.openexchange.rest.services.basic-auth.login={REST_LOGIN}\ncom.openexchange.rest.services.basic-auth.password={REST_PASSWORD}\n",
            fakes.apns_addr.port()
        );
        if opts.apns {
            props += &format!("{apn}.enabled=true\n{apn}.topic={TOPIC}\n{apn}.production=false\n");
            if opts.apns_certificate {
                let (cert, key) = pki.client_cert("apns-client").unwrap();
                std::fs::write(
                    d.join("apns.p12"),
                    testpki::write_pkcs12(&cert, &key, "p12pass").unwrap(),
                )
                .unwrap();
                props += &format!(
                    "{apn}.authtype=certificate\n{apn}.keystore=apns.p12\n{apn}.password=p12pass\n"
                );
            } else {
                props += &format!("{apn}.authtype=jwt\n{apn}.privatekey=key.p8\n{apn}.keyid={KEY_ID}\n{apn}.teamid={TEAM_ID}\n");
            }
        }
        let gcm = "com.openxchange.mobilepush.events.gcm";
        if opts.fcm {
            props += &format!("{gcm}.enabled=true\n{gcm}.serviceaccount=sa.json\n");
        } else if opts.gcm_key {
            props += &format!("{gcm}.enabled=true\n{gcm}.key=legacy-server-key\n");
        }
        props += &opts.extra_props;
        std::fs::write(d.join("mock.properties"), props).unwrap();
        std::fs::write(d.join("users.yml"), &opts.users_yml).unwrap();
        if let Some(m) = &opts.mailapp_yml {
            std::fs::write(d.join("mailapp-config.yml"), m).unwrap();
        }
        let admin_token = hex::encode(rand::random::<[u8; 16]>());
        std::fs::write(d.join("admin.token"), format!("{admin_token}\n")).unwrap();
        let mut bearer = reqwest::header::HeaderMap::new();
        bearer.insert(
            "authorization",
            format!("Bearer {admin_token}").parse().unwrap(),
        );
        let admin_http = reqwest::Client::builder()
            .default_headers(bearer)
            .build()
            .unwrap();
        Harness {
            dir,
            fakes,
            server: None,
            http: reqwest::Client::new(),
            admin_http,
            admin_token,
            opts,
        }
    }

    pub async fn start_server(&mut self) {
        let settings = Settings::load(self.dir.path()).expect("settings");
        self.server = Some(server::start(settings).await.expect("server start"));
    }

    pub async fn restart_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.start_server().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.as_ref().unwrap().http_addr, path)
    }
    pub fn admin(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.server.as_ref().unwrap().admin_addr,
            path
        )
    }
    pub fn fake_admin(&self, path: &str) -> String {
        format!("http://{}{}", self.fakes.admin_addr, path)
    }

    pub async fn notify(&self, body: &str) -> reqwest::Response {
        self.http
            .put(self.url("/preliminary/http-notify/v1/notify"))
            .basic_auth(REST_LOGIN, Some(REST_PASSWORD))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, name: &str, password: &str, client: &str) -> Value {
        self.http
            .post(self.url("/ajax/login?action=login"))
            .form(&[("name", name), ("password", password), ("client", client)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Logs in and returns session id plus the cookie header carrying the secret.
    pub async fn session(&self, name: &str, password: &str, client: &str) -> Login {
        self.session_form(&[("name", name), ("password", password), ("client", client)])
            .await
    }

    /// Logs in with exactly these form fields; the session and its cookies.
    pub async fn session_form(&self, form: &[(&str, &str)]) -> Login {
        login_at(
            &self.http,
            &self.url("/appsuite/api/login?action=login"),
            form,
        )
        .await
    }

    /// POSTs a form to a public path; the JSON answer.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Value {
        json_of(self.http.post(self.url(path)).form(form)).await
    }

    /// `GET /ajax/mobilenotifier?session=…&<query>` with the session's cookie.
    pub async fn mobilenotifier(&self, l: &Login, query: &str) -> Value {
        let url = self.url(&format!(
            "/ajax/mobilenotifier?session={}&{query}",
            l.session
        ));
        json_of(self.http.get(url).header("cookie", &l.cookie)).await
    }

    /// `POST /mock/faults` with `spec` (admin token sent).
    pub async fn fault(&self, spec: Value) -> reqwest::Response {
        self.admin_http
            .post(self.admin("/mock/faults"))
            .json(&spec)
            .send()
            .await
            .unwrap()
    }

    pub async fn pns(&self, l: &Login, action: &str, body: Value) -> Value {
        self.http
            .put(self.url(&format!("/ajax/pns?action={action}&session={}", l.session)))
            .header("cookie", &l.cookie)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn subscribe(&self, l: &Login, token: &str, transport: &str) {
        let v = self
            .pns(
                l,
                "subscribe",
                json!({"token": token, "transport": transport, "topics": ["ox:mail:new"]}),
            )
            .await;
        assert_eq!(v, json!({"data": {"success": true}}), "subscribe failed");
    }

    /// The admin `/metrics` text (open: no token sent).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.admin("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GET a JSON document; admin URLs get the bearer token.
    pub async fn get_json(&self, url: String) -> Value {
        self.admin_http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn script(&self, s: Value) {
        let r = self
            .http
            .post(self.fake_admin("/fake/script"))
            .json(&s)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Polls `/mock/pushes` until `n` pushes are recorded or `timeout` passes.
    pub async fn wait_pushes(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let end = Instant::now() + timeout;
        loop {
            let v = self.get_json(self.admin("/mock/pushes")).await;
            let list = v.as_array().cloned().unwrap_or_default();
            if list.len() >= n || Instant::now() > end {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn fake_requests(&self, provider: &str) -> Vec<Value> {
        self.get_json(self.fake_admin(&format!("/fake/requests?provider={provider}")))
            .await
            .as_array()
            .cloned()
            .unwrap()
    }

    pub async fn subscriptions(&self) -> Vec<Value> {
        self.get_json(self.admin("/mock/subscriptions"))
            .await
            .as_array()
            .cloned()
            .unwrap()
    }
}

/// POSTs a login form to `url`; the session and the cookie header carrying its secret.
pub async fn login_at(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Login {
    let r = http.post(url).form(form).send().await.unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let v: Value = r.json().await.unwrap();
    let session = v["session"]
        .as_str()
        .unwrap_or_else(|| panic!("no session in the login answer: {v}"));
    Login {
        session: session.to_string(),
        cookie,
    }
}

/// Sends the request; its JSON answer.
pub async fn json_of(r: reqwest::RequestBuilder) -> Value {
    r.send().await.unwrap().json().await.unwrap()
}

pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A new-mail notification for user 3 in context 1, as Dovecot sends it.
pub fn new_mail(user: &str, uid: u32) -> String {
    json!({"user": user, "event": "messageNew", "folder": "INBOX", "imap-uid": uid, "imap-uidvalidity": 1,
           "unseen": 7, "from": "\"Alice Sender\" <alice@example.org>", "subject": "Hello", "snippet": "hi"})
    .to_string()
}

pub mod cluster;
pub mod pg;

pub const APNS_TOKEN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
