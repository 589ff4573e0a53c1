//! Versioned schema migrations of both backends, applied at start-up (and by
//! `mock-middleware migrate`). Entry `i` brings a schema from version `i` to `i + 1`; a
//! database newer than the program is refused.
//!
//! SQLite keeps its version in `PRAGMA user_version` (versions 1 and 2 are the single-node
//! schema of earlier releases); PostgreSQL in the table `mm_schema`, migrated under an advisory
//! lock so that nodes starting together apply each step once.

/// SQLite: INTEGER is 64-bit, so ids and milliseconds share it.
pub const SQLITE: &[&str] = &[
    "CREATE TABLE subscriptions (
        context_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        client TEXT NOT NULL,
        transport TEXT NOT NULL,
        token TEXT NOT NULL,
        topics TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (client, transport, token)
    );
    CREATE INDEX subscriptions_user ON subscriptions (context_id, user_id);",
    // Permanent listeners: ids of IMAP-authenticated users, OX's registeredPush and
    // credentials tables, and the credential storage's key check.
    "CREATE TABLE contexts (domain TEXT PRIMARY KEY, context_id INTEGER NOT NULL UNIQUE);
    CREATE TABLE users (login TEXT PRIMARY KEY, context_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
        UNIQUE (context_id, user_id));
    CREATE TABLE registered_push (context_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
        client TEXT NOT NULL, PRIMARY KEY (context_id, user_id, client));
    CREATE TABLE credentials (context_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
        login TEXT NOT NULL, password TEXT NOT NULL, PRIMARY KEY (context_id, user_id));
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    // Sessions, live credentials, notification claims, nodes and leases (issue 12).
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, hash TEXT NOT NULL,
        login TEXT NOT NULL, user_id INTEGER NOT NULL, context_id INTEGER NOT NULL,
        client TEXT NOT NULL, client_given INTEGER NOT NULL, created_ms INTEGER NOT NULL,
        last_used_ms INTEGER NOT NULL);
    CREATE TABLE live_credentials (context_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
        login TEXT NOT NULL, password TEXT NOT NULL, expires_ms INTEGER NOT NULL,
        PRIMARY KEY (context_id, user_id));
    CREATE TABLE notification_claims (id TEXT PRIMARY KEY, node_id TEXT NOT NULL,
        state INTEGER NOT NULL, event TEXT NOT NULL, claimed_ms INTEGER NOT NULL, done_ms INTEGER);
    CREATE INDEX claims_pending ON notification_claims (state, node_id);
    CREATE INDEX claims_done ON notification_claims (done_ms);
    CREATE TABLE nodes (node_id TEXT PRIMARY KEY, http_addr TEXT NOT NULL, admin_addr TEXT NOT NULL,
        started_ms INTEGER NOT NULL, heartbeat_ms INTEGER NOT NULL);
    CREATE TABLE leases (context_id INTEGER NOT NULL, user_id INTEGER NOT NULL, node_id TEXT NOT NULL,
        asserted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (context_id, user_id));
    CREATE INDEX leases_node ON leases (node_id);
    CREATE TABLE reconcile_requests (seq INTEGER PRIMARY KEY AUTOINCREMENT, node_id TEXT NOT NULL,
        context_id INTEGER NOT NULL, user_id INTEGER NOT NULL, why TEXT NOT NULL);
    CREATE INDEX reconcile_node ON reconcile_requests (node_id)",
    // The cluster's recordings (what arrived, what was pushed), written in batches.
    "CREATE TABLE recordings (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,
        node_id TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
    CREATE INDEX recordings_kind ON recordings (kind, seq)",
];

/// PostgreSQL: ids INT4, milliseconds INT8, flags INT4 (0/1) so that the same SQL runs on both.
pub const POSTGRES: &[&str] = &[
    "CREATE TABLE subscriptions (
        context_id INT4 NOT NULL, user_id INT4 NOT NULL, client TEXT NOT NULL,
        transport TEXT NOT NULL, token TEXT NOT NULL, topics TEXT NOT NULL, created INT8 NOT NULL,
        PRIMARY KEY (client, transport, token));
    CREATE INDEX subscriptions_user ON subscriptions (context_id, user_id);
    CREATE TABLE contexts (domain TEXT PRIMARY KEY, context_id INT4 NOT NULL UNIQUE);
    CREATE TABLE users (login TEXT PRIMARY KEY, context_id INT4 NOT NULL, user_id INT4 NOT NULL,
        UNIQUE (context_id, user_id));
    CREATE TABLE registered_push (context_id INT4 NOT NULL, user_id INT4 NOT NULL,
        client TEXT NOT NULL, PRIMARY KEY (context_id, user_id, client));
    CREATE TABLE credentials (context_id INT4 NOT NULL, user_id INT4 NOT NULL,
        login TEXT NOT NULL, password TEXT NOT NULL, PRIMARY KEY (context_id, user_id));
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, hash TEXT NOT NULL,
        login TEXT NOT NULL, user_id INT4 NOT NULL, context_id INT4 NOT NULL,
        client TEXT NOT NULL, client_given INT4 NOT NULL, created_ms INT8 NOT NULL,
        last_used_ms INT8 NOT NULL);
    CREATE TABLE live_credentials (context_id INT4 NOT NULL, user_id INT4 NOT NULL,
        login TEXT NOT NULL, password TEXT NOT NULL, expires_ms INT8 NOT NULL,
        PRIMARY KEY (context_id, user_id));
    CREATE TABLE notification_claims (id TEXT PRIMARY KEY, node_id TEXT NOT NULL,
        state INT4 NOT NULL, event TEXT NOT NULL, claimed_ms INT8 NOT NULL, done_ms INT8);
    CREATE INDEX claims_pending ON notification_claims (state, node_id);
    CREATE INDEX claims_done ON notification_claims (done_ms);
    CREATE TABLE nodes (node_id TEXT PRIMARY KEY, http_addr TEXT NOT NULL, admin_addr TEXT NOT NULL,
        started_ms INT8 NOT NULL, heartbeat_ms INT8 NOT NULL);
    CREATE TABLE leases (context_id INT4 NOT NULL, user_id INT4 NOT NULL, node_id TEXT NOT NULL,
        asserted INT4 NOT NULL DEFAULT 0,
        PRIMARY KEY (context_id, user_id));
    CREATE INDEX leases_node ON leases (node_id);
    CREATE TABLE reconcile_requests (seq BIGSERIAL PRIMARY KEY, node_id TEXT NOT NULL,
        context_id INT4 NOT NULL, user_id INT4 NOT NULL, why TEXT NOT NULL);
    CREATE INDEX reconcile_node ON reconcile_requests (node_id)",
    "CREATE TABLE recordings (seq BIGSERIAL PRIMARY KEY, kind INT4 NOT NULL, node_id TEXT NOT NULL,
        at_ms INT8 NOT NULL, body TEXT NOT NULL);
    CREATE INDEX recordings_kind ON recordings (kind, seq)",
];

/// Recording kinds.
pub const NOTIFICATION: i32 = 0;
pub const PUSH: i32 = 1;

/// Claim states.
pub const PENDING: i32 = 0;
pub const DONE: i32 = 1;
