//! Permanent listeners (spec §3, §10): a user with a mail subscription of an allowed client is
//! registered in Dovecot by one `SETMETADATA "" (/private/vendor/vendor.dovecot/http-notify
//! "user=<uid>@<cid>")`; the last mail subscription gone → `NIL`. Registrations (OX's
//! `registeredPush`) live in SQLite and are re-asserted at start-up.
//!
//! Each user is reconciled by one task at a time on one node, the owner of the user's lease
//! (table `leases`): it reads whether the user still has a registration and makes Dovecot
//! agree, so racing subscribe/unsubscribe calls converge. A node that is not the owner asks
//! the owner ([`crate::store::Shared::request_reconcile`]); a dead owner's leases move to a
//! live node ([`crate::cluster`]), which re-asserts them. IMAP credentials, in order: the
//! Dovecot master user, the password of a live session, the credential storage.

pub mod creds;
pub mod imap;
mod live;
mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{PushSettings, Settings, UsersFile};
use crate::listeners::imap::{Imap, ImapError};
use crate::store::index::blocking as store_blocking;
use crate::store::{now_ms, Store, StoreError, Subscriptions};
use creds::{CredError, CredStore, Credential};

/// The topic that makes a subscription a mail subscription.
pub const MAIL_TOPIC: &str = "ox:mail:new";

type UserKey = (i32, i32);

/// Shared state of the permanent listeners.
pub struct Listeners {
    push: PushSettings,
    users: UsersFile,
    allowed_clients: Vec<String>,
    db: Arc<dyn Store>,
    subs: Subscriptions,
    creds: Option<CredStore>,
    /// Credentials of live sessions ([`live`]).
    live: live::Live,
    /// This node's id (the owner named in `leases`) and the lease length.
    node: String,
    lease: Duration,
    locks: Mutex<HashMap<UserKey, Arc<tokio::sync::Mutex<()>>>>,
    /// IMAP conversations at once: a node taking over a dead node's users (or starting up)
    /// re-asserts them without opening one Dovecot connection per user at the same time.
    imap_slots: Arc<tokio::sync::Semaphore>,
}

/// IMAP conversations of the permanent listeners at once, per node.
pub const IMAP_CONCURRENCY: usize = 16;

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

impl Listeners {
    /// Builds the listeners of node `node`; fails when the credential storage cannot be
    /// opened. `cluster_key` encrypts live credentials in a shared store. Blocking.
    pub fn open(
        s: &Settings,
        db: Arc<dyn Store>,
        subs: Subscriptions,
        node: String,
        cluster_key: Option<&str>,
    ) -> Result<Arc<Listeners>, CredError> {
        let creds = CredStore::open(&s.push.credstorage, &db)?;
        let live = live::Live::new(&db, cluster_key, s.login.session_max);
        Ok(Arc::new(Listeners {
            push: s.push.clone(),
            users: s.users.clone(),
            allowed_clients: s.allowed_clients.clone(),
            db,
            subs,
            creds,
            live,
            node,
            lease: s.cluster.lease,
            locks: Mutex::default(),
            imap_slots: Arc::new(tokio::sync::Semaphore::new(IMAP_CONCURRENCY)),
        }))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        store_blocking(&self.db, f).await
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
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
        let (users, l) = (self.users.clone(), login.to_string());
        let ids = self
            .blocking(move |db| db.user_ids(&l, &users))
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let cred = Credential {
            login: login.to_string(),
            password: password.to_string(),
        };
        self.live.put(ids.1, ids.0, &cred).await;
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
        let c = client.to_string();
        if let Err(e) = self
            .blocking(move |db| db.add_registration(cid, uid, &c))
            .await
        {
            tracing::error!(error = %e, "push registration could not be stored");
            return;
        }
        if let Some(store) = &self.creds {
            if let Some(cred) = self.live.get(cid, uid).await {
                if let Err(e) = store.put(cid, uid, &cred).await {
                    tracing::error!(user = uid, context = cid, error = %e, "credentials could not be stored");
                }
            }
        }
        self.route(cid, uid, "subscribe".into()).await;
    }

    /// After subscriptions of a user went away: drops registrations without mail subscriptions.
    /// `why` names what removed them (`unsubscribe`, `unregistered by APNs`, ...) and ends up in
    /// the log line of the METADATA NIL.
    pub async fn subscriptions_removed(self: &Arc<Self>, cid: i32, uid: i32, why: String) {
        if self.push.imap.is_none() {
            return;
        }
        let regs = self.blocking(|db| db.registrations()).await;
        let subs = self.subs.for_user(cid, uid).await;
        let (regs, subs) = match (regs, subs) {
            (Ok(r), Ok(s)) => (r, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "push registrations could not be read");
                return;
            }
        };
        let mut changed = false;
        for (_, _, client) in regs.into_iter().filter(|r| r.0 == cid && r.1 == uid) {
            let still = subs
                .iter()
                .any(|s| *s.client == *client && s.matches_topic(MAIL_TOPIC));
            if !still {
                changed |= self
                    .blocking(move |db| db.remove_registration(cid, uid, &client))
                    .await
                    .unwrap_or(false);
            }
        }
        if changed {
            self.route(cid, uid, why).await;
        }
    }

    /// `pushusers -r`: removes one registration; true when it existed.
    pub async fn unregister(
        self: &Arc<Self>,
        cid: i32,
        uid: i32,
        client: &str,
    ) -> Result<bool, StoreError> {
        let c = client.to_string();
        let gone = self
            .blocking(move |db| db.remove_registration(cid, uid, &c))
            .await?;
        if gone {
            self.route(cid, uid, "pushusers -r".into()).await;
        }
        Ok(gone)
    }

    /// Running listeners (context, user), sorted: the cluster's users whose lease owner has
    /// the METADATA registration in place and a fresh heartbeat.
    pub async fn running(&self) -> Result<Vec<(i32, i32)>, StoreError> {
        let alive_since = now_ms() - self.lease.as_millis() as i64;
        let (nodes, leases) = self.blocking(|db| Ok((db.nodes()?, db.leases()?))).await?;
        let alive: std::collections::HashSet<String> = nodes
            .into_iter()
            .filter(|n| n.heartbeat_ms >= alive_since)
            .map(|n| n.node_id)
            .collect();
        Ok(leases
            .into_iter()
            .filter(|l| l.asserted && alive.contains(&l.node_id))
            .map(|l| (l.context_id, l.user_id))
            .collect())
    }

    /// Every registration (context, user, client), sorted.
    pub async fn registrations(&self) -> Result<Vec<(i32, i32, String)>, StoreError> {
        self.blocking(|db| db.registrations()).await
    }

    /// Has the owner of (cid, uid)'s lease reconcile it: this node when it holds (or now
    /// takes) the lease, else the owner through a request row it polls.
    pub async fn route(self: &Arc<Self>, cid: i32, uid: i32, why: String) {
        if self.push.imap.is_some() && self.own_or_forward(cid, uid, &why).await {
            self.spawn_reconcile(cid, uid, why);
        }
    }

    /// True when this node owns (or now takes) the lease of (cid, uid); else the work is
    /// handed to the owner as a reconcile request (or the store failed: logged).
    async fn own_or_forward(&self, cid: i32, uid: i32, why: &str) -> bool {
        let (node, now, lease) = (self.node.clone(), now_ms(), self.lease.as_millis() as i64);
        let w = why.to_string();
        let r = self
            .blocking(move |db| {
                let owner = db.lease_owner(cid, uid, &node, now - lease)?;
                if owner != node {
                    db.request_reconcile(&owner, cid, uid, &w)?;
                }
                Ok(owner)
            })
            .await;
        match r {
            Ok(owner) if owner == self.node => true,
            Ok(owner) => {
                tracing::debug!(user = uid, context = cid, %owner, "reconcile requested from the lease owner");
                false
            }
            Err(e) => {
                tracing::error!(user = uid, context = cid, error = %e, "push registration owner could not be determined");
                false
            }
        }
    }

    /// True when IMAP (and so permanent listeners) is configured.
    pub fn enabled(&self) -> bool {
        self.push.imap.is_some()
    }

    /// Reconciles (cid, uid) on this node (it owns the lease).
    pub fn spawn_reconcile(self: &Arc<Self>, cid: i32, uid: i32, why: String) {
        let me = self.clone();
        tokio::spawn(async move { me.reconcile(cid, uid, why).await });
    }
}
