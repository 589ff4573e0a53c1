//! SQLite implementation of [`Store`], with `PRAGMA user_version` migrations.
//!
//! One connection behind a mutex is enough: every write is small and the hot path reads from
//! the in-memory index, not from here. WAL mode keeps writes cheap and crash-safe.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError, SubKey, Subscription};

/// Ordered migrations; entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["CREATE TABLE subscriptions (
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
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"];

/// A SQLite file holding subscriptions.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Db(format!("{}: {e}", parent.display())))?;
        }
        // A new database is created owner-only (0600); SQLite gives its -wal and -shm files the
        // same mode.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        migrate(&conn)?;
        normalize_transports(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// Inserts many subscriptions in one transaction (benchmark seeding).
    pub fn put_many(&self, subs: &[Subscription]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        {
            let mut st = tx
                .prepare(&format!(
                    "INSERT OR REPLACE INTO subscriptions ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7)"
                ))
                .map_err(db)?;
            for s in subs {
                let topics =
                    serde_json::to_string(&*s.topics).map_err(|e| StoreError::Db(e.to_string()))?;
                st.execute(params![
                    s.context_id,
                    s.user_id,
                    &*s.client,
                    &*s.transport,
                    s.token,
                    topics,
                    s.created
                ])
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Runs `f` on the connection (the registry tables live in the same file).
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(db)?;
    }
    Ok(())
}

/// Rewrites transport aliases to their canonical id (`apns`, `apns_http2` → `apn`; `fcm` →
/// `gcm`); a row that then duplicates another (same client, transport and token) is merged
/// into it, so one device gets one push. Runs at every start-up.
fn normalize_transports(conn: &Connection) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE OR REPLACE subscriptions SET transport = CASE
                 WHEN transport IN ('apns', 'apns_http2') THEN 'apn' ELSE 'gcm' END
             WHERE transport IN ('apns', 'apns_http2', 'fcm')",
            [],
        )
        .map_err(db)?;
    if n > 0 {
        tracing::info!(rows = n, "transport aliases normalised (duplicates merged)");
    }
    Ok(())
}

fn row_to_sub(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    let topics: String = r.get(5)?;
    Ok(Subscription {
        context_id: r.get(0)?,
        user_id: r.get(1)?,
        client: r.get::<_, String>(2)?.into(),
        transport: r.get::<_, String>(3)?.into(),
        token: r.get(4)?,
        topics: serde_json::from_str::<Vec<String>>(&topics)
            .unwrap_or_default()
            .into(),
        created: r.get(6)?,
    })
}

const COLS: &str = "context_id, user_id, client, transport, token, topics, created";

/// Writes one subscription row, replacing any with the same key.
fn insert_or_replace(conn: &Connection, s: &Subscription) -> Result<(), StoreError> {
    let topics = serde_json::to_string(&*s.topics).map_err(|e| StoreError::Db(e.to_string()))?;
    conn.execute(
        &format!("INSERT OR REPLACE INTO subscriptions ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7)"),
        params![
            s.context_id,
            s.user_id,
            &*s.client,
            &*s.transport,
            s.token,
            topics,
            s.created
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// The subscriptions matching `filter` (a `WHERE …` clause over `params`).
fn select_subs(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Subscription>, StoreError> {
    let mut st = conn
        .prepare(&format!("SELECT {COLS} FROM subscriptions {filter}"))
        .map_err(db)?;
    let rows = st.query_map(params, row_to_sub).map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

impl Store for SqliteStore {
    fn put(&self, s: &Subscription) -> Result<Option<Subscription>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        let prev = tx
            .query_row(
                &format!("SELECT {COLS} FROM subscriptions WHERE client=?1 AND transport=?2 AND token=?3"),
                params![&*s.client, &*s.transport, s.token],
                row_to_sub,
            )
            .optional()
            .map_err(db)?;
        insert_or_replace(&tx, s)?;
        tx.commit().map_err(db)?;
        Ok(prev)
    }

    fn remove(&self, k: &SubKey) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .execute(
                "DELETE FROM subscriptions WHERE context_id=?1 AND user_id=?2 AND client=?3 AND transport=?4 AND token=?5",
                params![k.context_id, k.user_id, k.client, k.transport, k.token],
            )
            .map_err(db)?;
        Ok(n > 0)
    }

    fn remove_token(
        &self,
        owner: (i32, i32),
        transport: &str,
        token: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (cid, uid) = owner;
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        let filter = "WHERE context_id=?1 AND user_id=?2 AND transport=?3 AND token=?4";
        let gone = select_subs(&tx, filter, params![cid, uid, transport, token])?;
        tx.execute(
            &format!("DELETE FROM subscriptions {filter}"),
            params![cid, uid, transport, token],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(gone)
    }

    fn replace_token(
        &self,
        transport: &str,
        old: &str,
        new: &str,
        owner: Option<(i32, i32)>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (cid, uid) = owner.unzip();
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        let mut found = select_subs(
            &tx,
            "WHERE transport=?1 AND token=?2 AND (?3 IS NULL OR (context_id=?3 AND user_id=?4))",
            params![transport, old, cid, uid],
        )?;
        if let Some((cid, uid)) = owner {
            let taken = select_subs(
                &tx,
                "WHERE transport=?1 AND token=?2 AND NOT (context_id=?3 AND user_id=?4)",
                params![transport, new, cid, uid],
            )?;
            if !taken.is_empty() {
                return Err(StoreError::TokenTaken);
            }
        }
        for s in &mut found {
            tx.execute(
                "DELETE FROM subscriptions WHERE client=?1 AND transport=?2 AND token=?3",
                params![&*s.client, &*s.transport, old],
            )
            .map_err(db)?;
            s.token = new.to_string();
            insert_or_replace(&tx, s)?;
        }
        tx.commit().map_err(db)?;
        Ok(found)
    }

    fn load_all(&self, f: &mut dyn FnMut(Subscription)) -> Result<(), StoreError> {
        let conn = self.lock();
        {
            let mut st = conn
                .prepare(&format!("SELECT {COLS} FROM subscriptions"))
                .map_err(db)?;
            let mut rows = st.query([]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                f(row_to_sub(r).map_err(db)?);
            }
        }
        // The startup scan filled SQLite's page cache; give that memory back.
        conn.execute_batch("PRAGMA shrink_memory;").map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn alias_duplicates_are_merged_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        let st = SqliteStore::open(&path).unwrap();
        let mk = |transport: &str, created| Subscription {
            context_id: 1,
            user_id: 3,
            client: "open-xchange-mailapp".into(),
            transport: transport.into(),
            token: "aa".into(),
            topics: vec!["ox:mail:new".to_string()].into(),
            created,
        };
        // Rows as an older version stored them: one device under three transport ids.
        st.put_many(&[
            mk("apn", 1),
            mk("apns", 2),
            mk("apns_http2", 3),
            mk("fcm", 4),
        ])
        .unwrap();
        drop(st);
        let st = SqliteStore::open(&path).unwrap();
        let mut rows = Vec::new();
        st.load_all(&mut |s| rows.push(s.transport.to_string()))
            .unwrap();
        rows.sort();
        assert_eq!(rows, ["apn", "gcm"]);
    }

    #[test]
    fn legacy_unsubscribe_removes_only_the_callers_token() {
        let dir = tempfile::tempdir().unwrap();
        let st = SqliteStore::open(&dir.path().join("x.sqlite")).unwrap();
        let mk = |cid, uid, client: &str| Subscription {
            context_id: cid,
            user_id: uid,
            client: client.into(),
            transport: "apn".into(),
            token: "aa".into(),
            topics: vec!["ox:mail:new".to_string()].into(),
            created: 1,
        };
        st.put(&mk(1, 1, "x")).unwrap();
        st.put(&mk(1, 2, "y")).unwrap();
        st.put(&mk(2, 2, "z")).unwrap();
        assert_eq!(st.remove_token((1, 1), "apn", "aa").unwrap().len(), 1);
        let mut n = 0;
        st.load_all(&mut |_| n += 1).unwrap();
        assert_eq!(n, 2, "only the caller's own subscription went");
    }
}
