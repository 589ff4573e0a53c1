//! The permanent-listener tables in the SQLite file: stable user ids for IMAP logins,
//! OX's `registeredPush` (context, user, client), `credentials` and a small `meta` table.
//! Methods are blocking; async callers run them through `spawn_blocking`.

use rusqlite::{params, OptionalExtension};

use super::{SqliteStore, StoreError};
use crate::config::UsersFile;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
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

impl SqliteStore {
    /// The (userId, contextId) of `login`: users.yml's fixed ids first, else the ids assigned at
    /// its first login (context per mail domain, user id per login), assigned now if new.
    pub fn user_ids(&self, login: &str, fixed: &UsersFile) -> Result<(i32, i32), StoreError> {
        if let Some(u) = fixed.find(login) {
            return Ok((u.user_id, u.context_id));
        }
        let domain = login
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        self.with_conn(|c| {
            let tx = c.transaction().map_err(db)?;
            if let Some(ids) = tx
                .query_row(
                    "SELECT user_id, context_id FROM users WHERE login=?1",
                    [login],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?
            {
                return Ok(ids);
            }
            let cid: i32 = match tx
                .query_row(
                    "SELECT context_id FROM contexts WHERE domain=?1",
                    [&domain],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
            {
                Some(c) => c,
                None => {
                    let db_max: i32 = tx
                        .query_row(
                            "SELECT COALESCE(MAX(context_id), 0) FROM contexts",
                            [],
                            |r| r.get(0),
                        )
                        .map_err(db)?;
                    let fixed_max = fixed.users.iter().map(|u| u.context_id).max().unwrap_or(0);
                    let c = db_max.max(fixed_max) + 1;
                    tx.execute(
                        "INSERT INTO contexts (domain, context_id) VALUES (?1, ?2)",
                        params![domain, c],
                    )
                    .map_err(db)?;
                    c
                }
            };
            let db_max: i32 = tx
                .query_row(
                    "SELECT COALESCE(MAX(user_id), 2) FROM users WHERE context_id=?1",
                    [cid],
                    |r| r.get(0),
                )
                .map_err(db)?;
            let fixed_max = fixed
                .users
                .iter()
                .filter(|u| u.context_id == cid)
                .map(|u| u.user_id)
                .max()
                .unwrap_or(0);
            // OX gives the context admin id 2; users start at 3.
            let uid = db_max.max(fixed_max) + 1;
            tx.execute(
                "INSERT INTO users (login, context_id, user_id) VALUES (?1, ?2, ?3)",
                params![login, cid, uid],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok((uid, cid))
        })
    }

    /// The login that was assigned (context, user), if any.
    pub fn login_of(&self, context_id: i32, user_id: i32) -> Result<Option<String>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT login FROM users WHERE context_id=?1 AND user_id=?2",
                params![context_id, user_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
        })
    }

    /// Adds a registration; true when it is new.
    pub fn add_registration(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT OR IGNORE INTO registered_push (context_id, user_id, client) VALUES (?1,?2,?3)",
                params![cid, uid, client],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
    }

    /// Removes a registration; true when it existed.
    pub fn remove_registration(
        &self,
        cid: i32,
        uid: i32,
        client: &str,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM registered_push WHERE context_id=?1 AND user_id=?2 AND client=?3",
                params![cid, uid, client],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
    }

    /// Every registration, sorted by context, user, client.
    pub fn registrations(&self) -> Result<Vec<(i32, i32, String)>, StoreError> {
        self.with_conn(|c| {
            let mut st = c
                .prepare("SELECT context_id, user_id, client FROM registered_push ORDER BY 1, 2, 3")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    pub fn put_credential(
        &self,
        cid: i32,
        uid: i32,
        cred: &StoredCredential,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT OR REPLACE INTO credentials (context_id, user_id, login, password) VALUES (?1,?2,?3,?4)",
                params![cid, uid, cred.login, cred.password_enc],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    pub fn credential(&self, cid: i32, uid: i32) -> Result<Option<StoredCredential>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT login, password FROM credentials WHERE context_id=?1 AND user_id=?2",
                params![cid, uid],
                |r| {
                    Ok(StoredCredential {
                        login: r.get(0)?,
                        password_enc: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
    }

    pub fn delete_credential(&self, cid: i32, uid: i32) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM credentials WHERE context_id=?1 AND user_id=?2",
                params![cid, uid],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with_conn(|c| {
            c.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
                .optional()
                .map_err(db)
        })
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(db)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ids_are_stable_per_login_and_context_per_domain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        let fixed = UsersFile::parse(
            "users:\n  - login: demo\n    userId: 7\n    contextId: 1\n",
            Path::new("users.yml"),
        )
        .unwrap();
        let st = SqliteStore::open(&path).unwrap();
        assert_eq!(st.user_ids("demo", &fixed).unwrap(), (7, 1));
        let a = st.user_ids("alice@a.example", &fixed).unwrap();
        let b = st.user_ids("bob@a.example", &fixed).unwrap();
        let c = st.user_ids("carol@c.example", &fixed).unwrap();
        assert_eq!(a, (3, 2));
        assert_eq!(b, (4, 2));
        assert_eq!(c, (3, 3));
        drop(st);
        let st = SqliteStore::open(&path).unwrap();
        assert_eq!(st.user_ids("bob@a.example", &fixed).unwrap(), b);
        assert_eq!(
            st.login_of(2, 3).unwrap().as_deref(),
            Some("alice@a.example")
        );
    }
}
