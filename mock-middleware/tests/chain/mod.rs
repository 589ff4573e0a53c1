//! Full-chain setup: a private Dovecot with the ox_push plugin (root harness) whose driver
//! points at an in-process mock-middleware, which logs users in by IMAP against that Dovecot.
//! Dovecot stops in `Drop`; the middleware and fakes stop with the test's runtime.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{Harness, Opts, REST_LOGIN, REST_PASSWORD};
use crate::support::{self, Dovecot, DovecotOpts, Driver};

/// Locates the plugin: `$OX_PUSH_PLUGIN`, `<workspace>/target/debug`, `$CARGO_TARGET_DIR/debug`;
/// builds it with `cargo build -p ox-push` when none exists. Sets `OX_PUSH_PLUGIN` for the harness.
pub fn ensure_plugin() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
        let mut candidates = Vec::new();
        if let Some(p) = std::env::var_os("OX_PUSH_PLUGIN") {
            candidates.push(PathBuf::from(p));
        }
        candidates.push(ws.join("target/debug/libox_push.so"));
        if let Some(t) = &target {
            candidates.push(t.join("debug/libox_push.so"));
        }
        let found = candidates.iter().find(|p| p.is_file()).cloned();
        let so = found.unwrap_or_else(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", "ox-push"])
                .current_dir(&ws)
                .status()
                .expect("run cargo build -p ox-push");
            assert!(st.success(), "cargo build -p ox-push failed");
            let t = target.unwrap_or_else(|| ws.join("target"));
            t.join("debug/libox_push.so")
        });
        assert!(so.is_file(), "plugin missing: {}", so.display());
        std::env::set_var("OX_PUSH_PLUGIN", &so);
        so
    })
    .clone()
}

/// Log lines of every middleware in this test binary (tracing → buffer).
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub fn logs() -> LogBuf {
    static L: OnceLock<LogBuf> = OnceLock::new();
    L.get_or_init(|| {
        let buf = LogBuf::default();
        let b2 = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || b2.clone())
            .init();
        buf
    })
    .clone()
}

/// Polls doveadm until `user`'s METADATA equals `want` ("" = unset), bounded by `within`;
/// the failure message carries `log()`.
pub async fn wait_metadata(
    dc: &Dovecot,
    user: &str,
    want: &str,
    within: Duration,
    log: &dyn Fn() -> String,
) {
    let end = Instant::now() + within;
    loop {
        let got = tokio::task::block_in_place(|| dc.get_metadata(user));
        if got == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "METADATA of {user} is {got:?}, want {want:?}\n--- middleware log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Unsets `user`'s push METADATA with doveadm, behind the middleware's back.
pub fn unset_metadata(dc: &Dovecot, user: &str) {
    tokio::task::block_in_place(|| {
        let key = support::METADATA_KEY;
        let out = dc.doveadm(&["mailbox", "metadata", "unset", "-u", user, "-s", "", key]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub struct Chain {
    pub dc: Dovecot,
    pub h: Harness,
}

/// Dovecot (alice/bob, password `pw`) + fakes + middleware with IMAP login; `props` are extra
/// properties. alice has fixed ids 3@1 from users.yml.
pub async fn start(props: &str) -> Chain {
    start_with(Vec::new(), props).await
}

/// Like [`start`], with extra Dovecot settings lines (`DovecotOpts.extra`), e.g. TLS or a
/// master passdb.
pub async fn start_with(dovecot_extra: Vec<String>, props: &str) -> Chain {
    logs();
    ensure_plugin();
    let port = support::free_port();
    let driver = format!(
        "ox:url=http://{REST_LOGIN}:{REST_PASSWORD}@127.0.0.1:{port}/preliminary/http-notify/v1/notify user_from_metadata"
    );
    let dc = tokio::task::block_in_place(|| {
        let mut o = DovecotOpts::new(Driver::OxPush, vec![driver]);
        o.extra = dovecot_extra;
        Dovecot::start(o)
    });
    let opts = Opts {
        apns: true,
        fcm: true,
        extra_props: format!(
            "mock.http.listen=127.0.0.1:{port}\nmock.imap.host=127.0.0.1\nmock.imap.port={}\n\
             mock.imap.retry_delay_ms=300\ncom.openexchange.capability.mobile_mail_app=true\n{props}",
            dc.imap_port
        ),
        users_yml: "users:\n  - login: alice\n    userId: 3\n    contextId: 1\n".into(),
        ..Opts::default()
    };
    let h = Harness::start(opts).await;
    Chain { dc, h }
}

impl Chain {
    /// Polls doveadm until alice's METADATA equals `want` ("" = unset); bounded by 10 s.
    pub async fn wait_metadata(&self, user: &str, want: &str) {
        wait_metadata(&self.dc, user, want, Duration::from_secs(10), &|| {
            logs().text()
        })
        .await
    }

    /// Unsets `user`'s push METADATA with doveadm, behind the middleware's back, and waits
    /// until Dovecot reports it unset.
    pub async fn unset_metadata(&self, user: &str) {
        unset_metadata(&self.dc, user);
        self.wait_metadata(user, "").await;
    }

    /// LMTP delivery; returns the instant of the LMTP reply.
    pub fn deliver(&self, user: &str, subject: &str) -> Instant {
        let r = tokio::task::block_in_place(|| {
            self.dc.lmtp(&[user], &support::simple_message(subject))
        });
        assert!(r.iter().all(|l| l.starts_with("250")), "LMTP: {r:?}");
        Instant::now()
    }

    /// Waits until the fake `provider` has `n` requests; bounded by `timeout`.
    pub async fn wait_fake(
        &self,
        provider: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            let v = self.h.fake_requests(provider).await;
            if v.len() >= n || Instant::now() > end {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
