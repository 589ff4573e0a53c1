//! The login credentials of live sessions, which a permanent listener may log in with.
//!
//! One node keeps them in memory, encrypted under a key that exists only in this process and
//! decrypted only for the moment an IMAP login needs them. Nodes sharing a store keep them in
//! the `live_credentials` table instead (a login on node 1 and a subscribe on node 2 must let
//! the listener's owner, maybe node 3, log in), encrypted under the cluster key that every node
//! reads from the configuration directory, bound to the (context, user) row, and expiring with
//! the session's maximum lifetime (OX keeps the password in the session, in Hazelcast).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::creds::{row_ad, Cipher, Credential};
use crate::store::index::blocking;
use crate::store::{now_ms, Store, StoredCredential};

type UserKey = (i32, i32);

pub(super) struct Live {
    mem: Mutex<HashMap<UserKey, StoredCredential>>,
    cipher: Cipher,
    /// The shared store and how long a credential stays there, when the store is shared.
    shared: Option<(Arc<dyn Store>, Duration)>,
}

impl Live {
    /// In memory, or in `store` when it is shared (then `key` is the cluster key).
    pub(super) fn new(store: &Arc<dyn Store>, key: Option<&str>, ttl: Duration) -> Live {
        match key.filter(|_| store.shared()) {
            Some(k) => Live {
                mem: Mutex::default(),
                cipher: Cipher::from_secret(k),
                shared: Some((store.clone(), ttl)),
            },
            None => Live {
                mem: Mutex::default(),
                cipher: Cipher::random(),
                shared: None,
            },
        }
    }

    pub(super) async fn put(&self, cid: i32, uid: i32, c: &Credential) {
        let row = StoredCredential {
            login: c.login.clone(),
            password_enc: self.cipher.encrypt(&c.password, &row_ad(cid, uid)),
        };
        match &self.shared {
            None => {
                self.mem.lock().expect("live lock").insert((cid, uid), row);
            }
            Some((store, ttl)) => {
                let expires = now_ms() + ttl.as_millis() as i64;
                let r = blocking(store, move |st| {
                    st.put_live_credential(cid, uid, &row, expires)
                })
                .await;
                if let Err(e) = r {
                    tracing::warn!(user = uid, context = cid, error = %e, "live credential not shared");
                }
            }
        }
    }

    async fn row(&self, cid: i32, uid: i32) -> Option<StoredCredential> {
        match &self.shared {
            None => self
                .mem
                .lock()
                .expect("live lock")
                .get(&(cid, uid))
                .cloned(),
            Some((store, _)) => {
                let now = now_ms();
                blocking(store, move |st| st.live_credential(cid, uid, now))
                    .await
                    .ok()
                    .flatten()
            }
        }
    }

    pub(super) async fn get(&self, cid: i32, uid: i32) -> Option<Credential> {
        let row = self.row(cid, uid).await?;
        let password = self
            .cipher
            .decrypt(&row.password_enc, &row_ad(cid, uid))
            .ok()?;
        Some(Credential {
            login: row.login,
            password,
        })
    }

    pub(super) async fn login(&self, cid: i32, uid: i32) -> Option<String> {
        self.row(cid, uid).await.map(|r| r.login)
    }

    pub(super) async fn forget(&self, cid: i32, uid: i32) {
        match &self.shared {
            None => {
                self.mem.lock().expect("live lock").remove(&(cid, uid));
            }
            Some((store, _)) => {
                let _ = blocking(store, move |st| st.delete_live_credential(cid, uid)).await;
            }
        }
    }
}
