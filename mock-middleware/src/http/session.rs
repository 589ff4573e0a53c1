//! Client sessions: id + secret cookie, as OX's login servlet hands them out.
//!
//! Sessions live in memory only (OX keeps them in Hazelcast; a restart of a single node loses
//! them too). A request proves its session with `?session=<id>` and the
//! `open-xchange-secret-<hash>` cookie.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::envelope::OxError;

/// The client of a login without `client` parameter (OX's web UI).
pub const DEFAULT_CLIENT: &str = "open-xchange-appsuite";

/// One logged-in client (`Debug` hides the secret).
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub secret: crate::config::Secret,
    pub hash: String,
    pub login: String,
    pub user_id: i32,
    pub context_id: i32,
    pub client: String,
    /// False when the login had no `client` parameter (the client is then OX's default).
    pub client_given: bool,
    created: Instant,
    /// Milliseconds after `created` of the last use.
    last_used_ms: AtomicU64,
}

/// All sessions; each expires when unused for `idle` or `max` after its login.
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    idle: Duration,
    max: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(Duration::from_secs(3600), Duration::from_secs(86_400))
    }
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

/// The opaque cookie-name hash: hex digest of client id and User-Agent, truncated.
pub fn cookie_hash(client: &str, user_agent: &str) -> String {
    let d = Sha256::digest(format!("{client}\n{user_agent}").as_bytes());
    hex::encode(&d[..16])
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Sessions {
        Sessions {
            map: RwLock::default(),
            idle,
            max,
        }
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        let age = now.duration_since(s.created);
        let idle = age.saturating_sub(Duration::from_millis(
            s.last_used_ms.load(Ordering::Relaxed),
        ));
        age > self.max || idle > self.idle
    }

    /// Drops expired sessions (called at each login, so the table cannot grow without bound).
    fn prune(&self) {
        let now = Instant::now();
        self.map
            .write()
            .expect("sessions lock")
            .retain(|_, s| !self.expired(s, now));
    }

    pub fn create(
        &self,
        login: &str,
        user_id: i32,
        context_id: i32,
        client: Option<&str>,
        user_agent: &str,
    ) -> Arc<Session> {
        let client_given = client.is_some();
        let client = client.unwrap_or(DEFAULT_CLIENT);
        let s = Arc::new(Session {
            id: random_hex(16),
            secret: random_hex(16).into(),
            hash: cookie_hash(client, user_agent),
            login: login.to_string(),
            user_id,
            context_id,
            client: client.to_string(),
            client_given,
            created: Instant::now(),
            last_used_ms: AtomicU64::new(0),
        });
        self.prune();
        self.map
            .write()
            .expect("sessions lock")
            .insert(s.id.clone(), s.clone());
        s
    }

    pub fn remove(&self, id: &str) -> bool {
        self.map
            .write()
            .expect("sessions lock")
            .remove(id)
            .is_some()
    }

    /// Resolves `?session=` plus the secret cookie, with OX's error codes.
    pub fn check(&self, sid: Option<&str>, headers: &HeaderMap) -> Result<Arc<Session>, OxError> {
        let sid = sid
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OxError::missing_param("session"))?;
        let session = self
            .map
            .read()
            .expect("sessions lock")
            .get(sid)
            .cloned()
            .ok_or_else(|| OxError::session_expired(sid))?;
        let now = Instant::now();
        if self.expired(&session, now) {
            self.remove(sid);
            return Err(OxError::session_expired(sid));
        }
        let name = format!("open-xchange-secret-{}", session.hash);
        let Some(given) = cookie(headers, &name) else {
            return Err(OxError::missing_cookie(&name));
        };
        use subtle::ConstantTimeEq;
        let same = Sha256::digest(given.as_bytes())
            .ct_eq(&Sha256::digest(session.secret.expose().as_bytes()));
        if !bool::from(same) {
            return Err(OxError::session_expired(sid));
        }
        let used = now.duration_since(session.created).as_millis() as u64;
        session.last_used_ms.store(used, Ordering::Relaxed);
        Ok(session)
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_needs_id_and_secret_cookie() {
        let s = Sessions::default();
        let sess = s.create("a", 3, 1, Some("open-xchange-mailapp"), "UA");
        let mut h = HeaderMap::new();
        assert_eq!(s.check(None, &h).unwrap_err().code, "SVL-0002");
        assert_eq!(s.check(Some("nope"), &h).unwrap_err().code, "SES-0203");
        let e = s.check(Some(&sess.id), &h).unwrap_err();
        assert!(
            e.message
                .starts_with("Missing cookie: open-xchange-secret-"),
            "{}",
            e.message
        );
        h.insert(
            header::COOKIE,
            format!(
                "x=1; open-xchange-secret-{}={}",
                sess.hash,
                sess.secret.expose()
            )
            .parse()
            .unwrap(),
        );
        assert_eq!(s.check(Some(&sess.id), &h).unwrap().user_id, 3);
        assert!(s.remove(&sess.id));
        assert_eq!(s.check(Some(&sess.id), &h).unwrap_err().code, "SES-0203");
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_maximum_age() {
        let s = Sessions::new(Duration::from_millis(200), Duration::from_millis(500));
        let sess = s.create("a", 3, 1, Some("c"), "UA");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("open-xchange-secret-{}={}", sess.hash, sess.secret.expose())
                .parse()
                .unwrap(),
        );
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(120));
            assert!(s.check(Some(&sess.id), &h).is_ok(), "kept alive by use");
        }
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(s.check(Some(&sess.id), &h).unwrap_err().code, "SES-0203");
        let idle = s.create("a", 3, 1, Some("c"), "UA");
        h.insert(
            header::COOKIE,
            format!("open-xchange-secret-{}={}", idle.hash, idle.secret.expose())
                .parse()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(s.check(Some(&idle.id), &h).unwrap_err().code, "SES-0203");
    }
}
