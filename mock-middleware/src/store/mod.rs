//! Durable state behind one [`Store`] trait: subscriptions, permanent-listener registrations,
//! credentials, sessions, and what a cluster of nodes needs to agree on (notification claims,
//! node heartbeats, listener leases).
//!
//! Two backends run the same SQL ([`sql::SqlStore`] over a small [`sql::Backend`] seam):
//! SQLite (one node, the default) and PostgreSQL (several nodes sharing one database). The
//! trait is blocking on purpose: every caller already runs it on tokio's blocking pool (the
//! hot path of a single SQLite node reads the in-memory [`Subscriptions`] index instead), and
//! the PostgreSQL backend drives its async driver (tokio-postgres with a deadpool pool) on a
//! runtime of its own, so one seam serves both and neither blocks the async executor. See
//! docs/MOCK-MIDDLEWARE.md, "Several nodes over PostgreSQL", for the reasoning.

pub mod index;
pub mod pg;
mod recordings;
mod registry;
pub mod schema;
pub mod shared;
pub mod sql;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{DbTarget, UsersFile};
pub use index::{RemovalHook, Subscriptions};
pub use sqlite::SqliteStore;

/// A device subscription, from `pns` or the legacy `mobilenotifier` module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub context_id: i32,
    pub user_id: i32,
    /// Interned: many subscriptions share one client id.
    pub client: Arc<str>,
    /// Interned: one of a handful of transport ids.
    pub transport: Arc<str>,
    pub token: String,
    /// Interned: most subscriptions share one topic list.
    pub topics: Arc<[String]>,
    /// UNIX milliseconds.
    pub created: i64,
}

impl Subscription {
    /// True when one of the topics matches `topic` (`*`, exact, or a `prefix:*` wildcard).
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| {
            t == "*"
                || t == topic
                || t.strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with(':') && topic.starts_with(prefix))
        })
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("The subscription database failed: {0}.")]
    Db(String),
    #[error("The subscription database schema version {found} is newer than this program knows ({known}).")]
    TooNew { found: i64, known: i64 },
    #[error("The new token is registered by another user; only a subscribe from that device can move it.")]
    TokenTaken,
}

/// Identity of one subscription row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SubKey {
    pub context_id: i32,
    pub user_id: i32,
    pub client: String,
    pub transport: String,
    pub token: String,
}

impl From<&Subscription> for SubKey {
    fn from(s: &Subscription) -> Self {
        SubKey {
            context_id: s.context_id,
            user_id: s.user_id,
            client: s.client.to_string(),
            transport: s.transport.to_string(),
            token: s.token.clone(),
        }
    }
}

/// One stored credential row (the password as stored, i.e. encrypted).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub login: String,
    pub password_enc: String,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// A client session as stored: the secret only as its SHA-256, so the database never holds a
/// usable secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub secret_sha256: String,
    pub hash: String,
    pub login: String,
    pub user_id: i32,
    pub context_id: i32,
    pub client: String,
    pub client_given: bool,
    pub created_ms: i64,
    pub last_used_ms: i64,
}

/// A node of the cluster as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    pub node_id: String,
    pub http_addr: String,
    pub admin_addr: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
}

/// The owner of one user's permanent listener. A lease is valid while its owner's heartbeat
/// is: renewing a node's leases is one heartbeat row, whatever the number of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    pub context_id: i32,
    pub user_id: i32,
    pub node_id: String,
    /// True when the owner has the METADATA registration in place.
    pub asserted: bool,
}

/// A notification claimed by a node whose pushes are not finished (the outbox row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingClaim {
    pub id: String,
    /// The accepted notification's event, as JSON (see [`crate::event::MailEvent`]).
    pub event: String,
}

/// Durable storage. Every method blocks; async callers run them on tokio's blocking pool.
pub trait Store: Shared + Send + Sync + 'static {
    /// True when several nodes share this store: the in-memory index is then not the truth,
    /// and the notify path reads the database.
    fn shared(&self) -> bool;
    /// A short name for logs (`sqlite FILE`, `postgres HOST:PORT/DB`).
    fn describe(&self) -> String;
    /// The schema version in force (after the start-up migrations).
    fn schema_version(&self) -> Result<i64, StoreError>;

    // Subscriptions.
    /// Inserts or replaces the subscription keyed by (client, transport, token); returns the
    /// subscription that held that token before (possibly another user's).
    fn put(&self, sub: &Subscription) -> Result<Option<Subscription>, StoreError>;
    /// Inserts many subscriptions in one transaction (benchmark seeding, imports).
    fn put_many(&self, subs: &[Subscription]) -> Result<(), StoreError>;
    /// Removes by (context, user, client, transport, token); returns whether a row went away.
    fn remove(&self, sub_key: &SubKey) -> Result<bool, StoreError>;
    /// Removes the subscriptions of `owner` (context, user) with this transport and token, for
    /// any client (legacy `mobilenotifier` unsubscribe); returns what was removed.
    fn remove_token(
        &self,
        owner: (i32, i32),
        transport: &str,
        token: &str,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// Replaces a token: with `owner`, only that user's subscriptions (`updateToken`), and
    /// [`StoreError::TokenTaken`] when another user holds `new`; without, everywhere (a
    /// provider's canonical id). Returns the updated subscriptions.
    fn replace_token(
        &self,
        transport: &str,
        old: &str,
        new: &str,
        owner: Option<(i32, i32)>,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// Hands every stored subscription to `f` without collecting them first.
    fn load_all(&self, f: &mut dyn FnMut(Subscription)) -> Result<(), StoreError>;
    /// The subscriptions of one user.
    fn for_user(&self, context_id: i32, user_id: i32) -> Result<Vec<Subscription>, StoreError>;
    /// Number of subscriptions.
    fn count(&self) -> Result<i64, StoreError>;

    // Users, registrations (OX's registeredPush), credentials, meta.
    /// The (userId, contextId) of `login`: users.yml's fixed ids first, else the ids assigned at
    /// its first login (context per mail domain, user id per login), assigned now if new.
    fn user_ids(&self, login: &str, fixed: &UsersFile) -> Result<(i32, i32), StoreError>;
    /// The login that was assigned (context, user), if any.
    fn login_of(&self, context_id: i32, user_id: i32) -> Result<Option<String>, StoreError>;
    /// Adds a registration; true when it is new.
    fn add_registration(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError>;
    /// Removes a registration; true when it existed.
    fn remove_registration(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError>;
    /// Every registration, sorted by context, user, client.
    fn registrations(&self) -> Result<Vec<(i32, i32, String)>, StoreError>;
    fn put_credential(&self, cid: i32, uid: i32, cred: &StoredCredential)
        -> Result<(), StoreError>;
    fn credential(&self, cid: i32, uid: i32) -> Result<Option<StoredCredential>, StoreError>;
    fn delete_credential(&self, cid: i32, uid: i32) -> Result<(), StoreError>;
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` unless the key has one; returns the value in force (so nodes starting
    /// together agree on one salt or check value).
    fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError>;
}

/// What the nodes of a cluster share beyond subscriptions: sessions and their login
/// credentials, notification claims, node heartbeats and listener leases. A single SQLite node
/// uses the same tables (one node is a cluster of one).
pub trait Shared {
    // Sessions and the login credentials of live sessions (shared by the nodes).
    fn put_session(&self, s: &SessionRow) -> Result<(), StoreError>;
    fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError>;
    fn touch_session(&self, id: &str, last_used_ms: i64) -> Result<(), StoreError>;
    fn remove_session(&self, id: &str) -> Result<bool, StoreError>;
    /// Drops sessions unused since `idle_before` or created before `created_before`.
    fn prune_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError>;
    fn put_live_credential(
        &self,
        cid: i32,
        uid: i32,
        cred: &StoredCredential,
        expires_ms: i64,
    ) -> Result<(), StoreError>;
    fn live_credential(
        &self,
        cid: i32,
        uid: i32,
        now_ms: i64,
    ) -> Result<Option<StoredCredential>, StoreError>;
    fn delete_live_credential(&self, cid: i32, uid: i32) -> Result<(), StoreError>;

    // Notification claims: the outbox that makes "no push twice" and "nothing accepted lost".
    /// Claims notification `id` for `node`, storing its event; true when this call claimed it,
    /// false when someone did before (a duplicate).
    fn claim(&self, id: &str, node: &str, event: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Withdraws a claim this node made but could not queue.
    fn release_claim(&self, id: &str, node: &str) -> Result<(), StoreError>;
    /// Marks a claim done: its pushes are finished.
    fn finish_claim(&self, id: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Moves to `node` the unfinished claims of nodes whose heartbeat is older than
    /// `dead_before`, and of `node`'s own earlier run (claimed before `started_ms`).
    fn take_orphan_claims(
        &self,
        node: &str,
        dead_before: i64,
        started_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<PendingClaim>, StoreError>;
    /// This node's unfinished claims made before `before` (candidates for
    /// [`Shared::retake_claim`] when no job of this node holds them).
    fn own_pending_claims(&self, node: &str, before: i64) -> Result<Vec<String>, StoreError>;
    /// Confirms that `node`'s claim `id` is still unfinished (stamping it `now_ms`); its event.
    fn retake_claim(&self, id: &str, node: &str, now_ms: i64)
        -> Result<Option<String>, StoreError>;
    /// Deletes finished claims older than `before`.
    fn purge_claims(&self, before: i64) -> Result<u64, StoreError>;

    // The cluster's recordings (`kind`: [`schema::NOTIFICATION`] or [`schema::PUSH`]).
    /// Appends rendered records (kind, at_ms, JSON body) of `node`.
    fn append_recordings(&self, node: &str, rows: &[(i32, i64, String)]) -> Result<(), StoreError>;
    /// Every kept record of `kind` in insertion order: (node, JSON body).
    fn recordings(&self, kind: i32) -> Result<Vec<(String, String)>, StoreError>;
    /// Keeps the newest `max` records of `kind`, and of those no more than `max_bytes` of bodies.
    fn trim_recordings(&self, kind: i32, max: i64, max_bytes: i64) -> Result<u64, StoreError>;
    fn clear_recordings(&self) -> Result<(), StoreError>;

    // Nodes and listener leases.
    fn heartbeat(&self, node: &NodeRow) -> Result<(), StoreError>;
    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError>;
    /// A node leaving: its row and its leases go, so others take over at once.
    fn leave(&self, node: &str) -> Result<(), StoreError>;
    /// Nodes other than `node` whose heartbeat is older than `dead_before`.
    fn dead_nodes(&self, node: &str, dead_before: i64) -> Result<Vec<String>, StoreError>;
    /// Moves every lease of node `dead` to `node`; the users moved.
    fn take_leases_of(&self, dead: &str, node: &str) -> Result<Vec<(i32, i32)>, StoreError>;
    /// Forgets node `dead` (its row and reconcile requests) if it is still dead.
    fn forget_node(&self, dead: &str, dead_before: i64) -> Result<(), StoreError>;
    /// Takes the leases of registered users without one, and leases whose owner has no
    /// heartbeat row at all; the users taken with their previous owner.
    fn acquire_unleased(&self, node: &str) -> Result<Vec<(i32, i32, Option<String>)>, StoreError>;
    /// The owner of (cid, uid)'s lease, taking it for `node` when there is none or its owner's
    /// heartbeat is older than `dead_before`.
    fn lease_owner(
        &self,
        cid: i32,
        uid: i32,
        node: &str,
        dead_before: i64,
    ) -> Result<String, StoreError>;
    /// Drops `node`'s lease of (cid, uid) when the user has no registration left.
    fn release_lease(&self, cid: i32, uid: i32, node: &str) -> Result<(), StoreError>;
    fn leases(&self) -> Result<Vec<LeaseRow>, StoreError>;
    fn set_asserted(
        &self,
        cid: i32,
        uid: i32,
        node: &str,
        asserted: bool,
    ) -> Result<(), StoreError>;
    /// Asks `owner` to reconcile (cid, uid) (it polls [`Store::take_reconcile_requests`]).
    fn request_reconcile(
        &self,
        owner: &str,
        cid: i32,
        uid: i32,
        why: &str,
    ) -> Result<(), StoreError>;
    fn take_reconcile_requests(&self, node: &str) -> Result<Vec<(i32, i32, String)>, StoreError>;
}

/// Opens (and migrates) the store `mock.db` names: a PostgreSQL URL or a SQLite file.
pub fn open(target: &DbTarget, pool_size: usize) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match target {
        DbTarget::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        DbTarget::Postgres(url) => Arc::new(pg::PgStore::open(url.expose(), pool_size)?),
    })
}

/// Opens a SQLite file (kept for tools and tests that name a file).
pub fn open_sqlite(path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

/// Current time in UNIX milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
