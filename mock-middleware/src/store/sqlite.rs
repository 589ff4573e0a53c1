//! The SQLite backend: one file, one connection behind a mutex, WAL mode, `PRAGMA
//! user_version` migrations. Every write is small and a single node's hot path reads the
//! in-memory index, not this.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use super::sql::{Backend, Conn, Row, SqlStore, Val};
use super::{schema, StoreError};

/// A SQLite file holding the whole state of one node.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// The connection and the file name (for logs).
pub struct SqliteBackend {
    conn: Mutex<Connection>,
    path: String,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::I32(v) => ToSqlOutput::from(*v as i64),
            Val::I64(v) => ToSqlOutput::from(*v),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

struct SqliteConn<'a>(&'a Connection);

impl Conn for SqliteConn<'_> {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64, StoreError> {
        let mut st = self.0.prepare_cached(sql).map_err(db)?;
        st.execute(rusqlite::params_from_iter(p.iter()))
            .map(|n| n as u64)
            .map_err(db)
    }

    fn query(&mut self, sql: &str, p: &[Val]) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, p, &mut |r| out.push(r))?;
        Ok(out)
    }

    fn each(&mut self, sql: &str, p: &[Val], f: &mut dyn FnMut(Row)) -> Result<(), StoreError> {
        let mut st = self.0.prepare_cached(sql).map_err(db)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(p.iter())).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(db)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::I64(v),
                    ValueRef::Real(v) => Val::I64(v as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Val::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            f(row);
        }
        Ok(())
    }
}

impl Backend for SqliteBackend {
    fn tx<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        let r = f(&mut SqliteConn(&tx))?;
        tx.commit().map_err(db)?;
        Ok(r)
    }

    fn auto<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        f(&mut SqliteConn(&self.lock()))
    }

    fn id_lock(&self) -> Option<&'static str> {
        None
    }

    fn shared(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)
    }
}

impl SqliteBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SqlStore<SqliteBackend> {
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
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        migrate(&conn)?;
        normalize_transports(&conn)?;
        Ok(SqlStore {
            b: SqliteBackend {
                conn: Mutex::new(conn),
                path: path.display().to_string(),
            },
        })
    }

    /// Gives SQLite's page cache back after the start-up scan.
    pub fn shrink(&self) {
        let _ = self.b.lock().execute_batch("PRAGMA shrink_memory;");
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    let known = schema::SQLITE.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in schema::SQLITE.iter().enumerate().skip(version as usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        let st = SqliteStore::open(&path).unwrap();
        assert_eq!(st.b.version().unwrap(), schema::SQLITE.len() as i64);
        drop(st);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
