//! Client sessions: id + secret cookie, as OX's login servlet hands them out.
//!
//! A single node keeps sessions in memory (a restart loses them, as a single OX node without
//! Hazelcast would). Nodes sharing a store keep them in its `sessions` table (OX keeps them in
//! Hazelcast), so a login on one node is valid on every other: the row holds the secret's
//! SHA-256 only. A request proves its session with `?session=<id>` and the
//! `open-xchange-secret-<hash>` cookie.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::index::blocking;
use crate::store::{now_ms, SessionRow, Store};

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
    /// The shared store, when sessions live there.
    shared: Option<Arc<dyn Store>>,
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
            shared: None,
        }
    }

    /// Sessions kept in `store` when it is shared by several nodes, else in memory.
    pub fn with_store(idle: Duration, max: Duration, store: &Arc<dyn Store>) -> Sessions {
        Sessions {
            shared: store.shared().then(|| store.clone()),
            ..Sessions::new(idle, max)
        }
    }

    fn failed(e: crate::store::StoreError) -> OxError {
        tracing::error!(error = %e, "session store failed");
        OxError::new(
            "MOCK-0500",
            super::envelope::Category::TryAgain,
            "The session store is not reachable; try again.",
        )
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

    /// A new session (stored before it is handed out when the store is shared).
    pub async fn create(
        &self,
        login: &str,
        user_id: i32,
        context_id: i32,
        client: Option<&str>,
        user_agent: &str,
    ) -> Result<Arc<Session>, OxError> {
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
        if let Some(store) = &self.shared {
            let now = now_ms();
            let row = SessionRow {
                id: s.id.clone(),
                secret_sha256: hex::encode(Sha256::digest(s.secret.expose().as_bytes())),
                hash: s.hash.clone(),
                login: s.login.clone(),
                user_id,
                context_id,
                client: s.client.clone(),
                client_given,
                created_ms: now,
                last_used_ms: now,
            };
            let (idle, max) = (self.idle.as_millis() as i64, self.max.as_millis() as i64);
            blocking(store, move |st| {
                st.prune_sessions(now - idle, now - max)?;
                st.put_session(&row)
            })
            .await
            .map_err(Self::failed)?;
            return Ok(s);
        }
        self.prune();
        self.map
            .write()
            .expect("sessions lock")
            .insert(s.id.clone(), s.clone());
        Ok(s)
    }

    pub async fn remove(&self, id: &str) -> bool {
        if let Some(store) = &self.shared {
            let id = id.to_string();
            return blocking(store, move |st| st.remove_session(&id))
                .await
                .unwrap_or(false);
        }
        self.map
            .write()
            .expect("sessions lock")
            .remove(id)
            .is_some()
    }

    /// A stored session, checked for expiry (and touched) in the store.
    async fn load(
        &self,
        store: &Arc<dyn Store>,
        sid: &str,
    ) -> Result<Option<Arc<Session>>, OxError> {
        let id = sid.to_string();
        let (idle, max) = (self.idle.as_millis() as i64, self.max.as_millis() as i64);
        let row = blocking(store, move |st| {
            let now = now_ms();
            let Some(r) = st.session(&id)? else {
                return Ok(None);
            };
            if now - r.last_used_ms > idle || now - r.created_ms > max {
                st.remove_session(&id)?;
                return Ok(None);
            }
            st.touch_session(&id, now)?;
            Ok(Some(r))
        })
        .await
        .map_err(Self::failed)?;
        Ok(row.map(|r| {
            Arc::new(Session {
                id: r.id,
                secret: crate::config::Secret::new(r.secret_sha256),
                hash: r.hash,
                login: r.login,
                user_id: r.user_id,
                context_id: r.context_id,
                client: r.client,
                client_given: r.client_given,
                created: Instant::now(),
                last_used_ms: AtomicU64::new(0),
            })
        }))
    }

    /// Resolves `?session=` plus the secret cookie, with OX's error codes.
    pub async fn check(
        &self,
        sid: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Arc<Session>, OxError> {
        let sid = sid
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OxError::missing_param("session"))?;
        if let Some(store) = &self.shared {
            // The row holds the secret's SHA-256 (hex), compared in constant time.
            let session = self
                .load(store, sid)
                .await?
                .ok_or_else(|| OxError::session_expired(sid))?;
            let name = format!("open-xchange-secret-{}", session.hash);
            let Some(given) = cookie(headers, &name) else {
                return Err(OxError::missing_cookie(&name));
            };
            use subtle::ConstantTimeEq;
            let given = hex::encode(Sha256::digest(given.as_bytes()));
            if !bool::from(given.as_bytes().ct_eq(session.secret.expose().as_bytes())) {
                return Err(OxError::session_expired(sid));
            }
            return Ok(session);
        }
        let session = self
            .map
            .read()
            .expect("sessions lock")
            .get(sid)
            .cloned()
            .ok_or_else(|| OxError::session_expired(sid))?;
        let now = Instant::now();
        if self.expired(&session, now) {
            self.remove(sid).await;
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

    #[tokio::test]
    async fn session_needs_id_and_secret_cookie() {
        let s = Sessions::default();
        let sess = s
            .create("a", 3, 1, Some("open-xchange-mailapp"), "UA")
            .await
            .unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(s.check(None, &h).await.unwrap_err().code, "SVL-0002");
        assert_eq!(
            s.check(Some("nope"), &h).await.unwrap_err().code,
            "SES-0203"
        );
        let e = s.check(Some(&sess.id), &h).await.unwrap_err();
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
        assert_eq!(s.check(Some(&sess.id), &h).await.unwrap().user_id, 3);
        assert!(s.remove(&sess.id).await);
        assert_eq!(
            s.check(Some(&sess.id), &h).await.unwrap_err().code,
            "SES-0203"
        );
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_and_at_their_maximum_age() {
        let s = Sessions::new(Duration::from_millis(200), Duration::from_millis(500));
        let sess = s.create("a", 3, 1, Some("c"), "UA").await.unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("open-xchange-secret-{}={}", sess.hash, sess.secret.expose())
                .parse()
                .unwrap(),
        );
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(120));
            assert!(
                s.check(Some(&sess.id), &h).await.is_ok(),
                "kept alive by use"
            );
        }
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(
            s.check(Some(&sess.id), &h).await.unwrap_err().code,
            "SES-0203"
        );
        let idle = s.create("a", 3, 1, Some("c"), "UA").await.unwrap();
        h.insert(
            header::COOKIE,
            format!("open-xchange-secret-{}={}", idle.hash, idle.secret.expose())
                .parse()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            s.check(Some(&idle.id), &h).await.unwrap_err().code,
            "SES-0203"
        );
    }
}
