//! Client sessions: id + secret cookie, as OX's login servlet hands them out.
//!
//! Sessions live in memory only (OX keeps them in Hazelcast; a restart of a single node loses
//! them too). A request proves its session with `?session=<id>` and the
//! `open-xchange-secret-<hash>` cookie.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::envelope::OxError;

/// The client of a login without `client` parameter (OX's web UI).
pub const DEFAULT_CLIENT: &str = "open-xchange-appsuite";

/// One logged-in client.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub secret: String,
    pub hash: String,
    pub login: String,
    pub user_id: i32,
    pub context_id: i32,
    pub client: String,
    /// False when the login had no `client` parameter (the client is then OX's default).
    pub client_given: bool,
}

/// All sessions.
#[derive(Default)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
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
            secret: random_hex(16),
            hash: cookie_hash(client, user_agent),
            login: login.to_string(),
            user_id,
            context_id,
            client: client.to_string(),
            client_given,
        });
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
        let name = format!("open-xchange-secret-{}", session.hash);
        match cookie(headers, &name) {
            None => Err(OxError::missing_cookie(&name)),
            Some(v) if v == session.secret => Ok(session),
            Some(_) => Err(OxError::session_expired(sid)),
        }
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
            format!("x=1; open-xchange-secret-{}={}", sess.hash, sess.secret)
                .parse()
                .unwrap(),
        );
        assert_eq!(s.check(Some(&sess.id), &h).unwrap().user_id, 3);
        assert!(s.remove(&sess.id));
        assert_eq!(s.check(Some(&sess.id), &h).unwrap_err().code, "SES-0203");
    }
}
