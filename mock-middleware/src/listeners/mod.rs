//! Permanent listeners (spec §3, §10): a user with a mail subscription of an allowed client is
//! registered in Dovecot by one `SETMETADATA "" (/private/vendor/vendor.dovecot/http-notify
//! "user=<uid>@<cid>")`; the last mail subscription gone → `NIL`. Registrations (OX's
//! `registeredPush`) live in SQLite and are re-asserted at start-up.
//!
//! Each user is reconciled by one task at a time: it reads whether the user still has a
//! registration and makes Dovecot agree, so racing subscribe/unsubscribe calls converge.
//! IMAP credentials, in order: the Dovecot master user, the password of a live session,
//! the credential storage.

pub mod creds;
pub mod imap;
mod reconcile;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::config::{PushSettings, Settings, UsersFile};
use crate::listeners::imap::{Imap, ImapError};
use crate::store::registry::StoredCredential;
use crate::store::{SqliteStore, StoreError, Subscriptions};
use creds::{Cipher, CredError, CredStore, Credential};

/// The topic that makes a subscription a mail subscription.
pub const MAIL_TOPIC: &str = "ox:mail:new";

type UserKey = (i32, i32);

/// Shared state of the permanent listeners.
pub struct Listeners {
    push: PushSettings,
    users: UsersFile,
    allowed_clients: Vec<String>,
    db: Arc<SqliteStore>,
    subs: Subscriptions,
    creds: Option<CredStore>,
    /// Credentials of live sessions (memory only), keyed by (context, user); the password is
    /// kept encrypted under a key that exists only in this process, and decrypted only for the
    /// moment an IMAP login needs it.
    live: Mutex<HashMap<UserKey, StoredCredential>>,
    live_cipher: Cipher,
    /// Users whose METADATA registration is in place: (context, user).
    running: Mutex<BTreeSet<UserKey>>,
    locks: Mutex<HashMap<UserKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
}

impl Listeners {
    /// Builds the listeners; fails when the credential storage cannot be opened.
    pub fn open(
        s: &Settings,
        db: Arc<SqliteStore>,
        subs: Subscriptions,
    ) -> Result<Arc<Listeners>, CredError> {
        let creds = CredStore::open(&s.push.credstorage, &db)?;
        Ok(Arc::new(Listeners {
            push: s.push.clone(),
            users: s.users.clone(),
            allowed_clients: s.allowed_clients.clone(),
            db,
            subs,
            creds,
            live: Mutex::default(),
            live_cipher: Cipher::random(),
            running: Mutex::default(),
            locks: Mutex::default(),
        }))
    }

    /// True when logins go to IMAP (`mock.imap.host` is set).
    pub fn imap_login(&self) -> bool {
        self.push.imap.is_some()
    }

    /// IMAP LOGIN against Dovecot; on success the user's stable ids (userId, contextId).
    pub async fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> Result<(i32, i32), LoginError> {
        let imap = self.push.imap.as_ref().expect("imap_login checked");
        match Imap::open(imap, login, password).await {
            Ok(c) => c.logout().await,
            Err(ImapError::Auth { .. }) => {
                return Err(LoginError::Refused("authentication failed".into()))
            }
            Err(e) => return Err(LoginError::Unavailable(e.to_string())),
        }
        let (db, users, l) = (self.db.clone(), self.users.clone(), login.to_string());
        let ids = blocking(move || db.user_ids(&l, &users))
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let cred = Credential {
            login: login.to_string(),
            password: password.to_string(),
        };
        self.live_put(ids.1, ids.0, &cred);
        Ok(ids)
    }

    fn client_allowed(&self, client: &str) -> bool {
        crate::wildcard::client_allowed(&self.allowed_clients, client)
    }

    /// After a subscription was stored: registers the user when it has mail interest.
    pub async fn subscribed(self: &Arc<Self>, cid: i32, uid: i32, client: &str, topics: &[String]) {
        let mail = topics
            .iter()
            .any(|t| t == "*" || t == MAIL_TOPIC || t == "ox:mail:*" || t == "ox:*");
        if !mail || self.push.imap.is_none() || !self.client_allowed(client) {
            return;
        }
        if !self.push.allow_permanent {
            tracing::info!(
                user = uid,
                context = cid,
                "com.openexchange.push.allowPermanentPush=false: no permanent listener started"
            );
            return;
        }
        let (db, c) = (self.db.clone(), client.to_string());
        if let Err(e) = blocking(move || db.add_registration(cid, uid, &c)).await {
            tracing::error!(error = %e, "push registration could not be stored");
            return;
        }
        if let (Some(store), Some(cred)) = (&self.creds, self.live_get(cid, uid)) {
            if let Err(e) = store.put(cid, uid, &cred).await {
                tracing::error!(user = uid, context = cid, error = %e, "credentials could not be stored");
            }
        }
        self.spawn_reconcile(cid, uid, "subscribe".into());
    }

    /// After subscriptions of a user went away: drops registrations without mail subscriptions.
    /// `why` names what removed them (`unsubscribe`, `unregistered by APNs`, ...) and ends up in
    /// the log line of the METADATA NIL.
    pub async fn subscriptions_removed(self: &Arc<Self>, cid: i32, uid: i32, why: String) {
        if self.push.imap.is_none() {
            return;
        }
        let db = self.db.clone();
        let regs = match blocking(move || db.registrations()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "push registrations could not be read");
                return;
            }
        };
        let subs = self.subs.for_user(cid, uid);
        let mut changed = false;
        for (_, _, client) in regs.into_iter().filter(|r| r.0 == cid && r.1 == uid) {
            let still = subs
                .iter()
                .any(|s| *s.client == *client && s.matches_topic(MAIL_TOPIC));
            if !still {
                let db = self.db.clone();
                changed |= blocking(move || db.remove_registration(cid, uid, &client))
                    .await
                    .unwrap_or(false);
            }
        }
        if changed {
            self.spawn_reconcile(cid, uid, why);
        }
    }

    /// `pushusers -r`: removes one registration; true when it existed.
    pub async fn unregister(
        self: &Arc<Self>,
        cid: i32,
        uid: i32,
        client: &str,
    ) -> Result<bool, StoreError> {
        let (db, c) = (self.db.clone(), client.to_string());
        let gone = blocking(move || db.remove_registration(cid, uid, &c)).await?;
        if gone {
            self.spawn_reconcile(cid, uid, "pushusers -r".into());
        }
        Ok(gone)
    }

    /// Start-up: re-asserts every registered user.
    pub async fn reassert_all(self: &Arc<Self>) {
        if self.push.imap.is_none() {
            return;
        }
        let db = self.db.clone();
        let users: BTreeSet<UserKey> = match blocking(move || db.registrations()).await {
            Ok(r) => r.into_iter().map(|(c, u, _)| (c, u)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "push registrations could not be read");
                return;
            }
        };
        tracing::info!(users = users.len(), "re-asserting push registrations");
        for (cid, uid) in users {
            self.spawn_reconcile(cid, uid, "start-up".into());
        }
    }

    /// Running listeners (context, user), sorted.
    pub fn running(&self) -> Vec<(i32, i32)> {
        self.running
            .lock()
            .expect("running lock")
            .iter()
            .copied()
            .collect()
    }

    /// Every registration (context, user, client), sorted.
    pub async fn registrations(&self) -> Result<Vec<(i32, i32, String)>, StoreError> {
        let db = self.db.clone();
        blocking(move || db.registrations()).await
    }

    fn spawn_reconcile(self: &Arc<Self>, cid: i32, uid: i32, why: String) {
        let me = self.clone();
        tokio::spawn(async move { me.reconcile(cid, uid, why).await });
    }
}
