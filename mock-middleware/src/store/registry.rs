//! Users, registrations (OX's `registeredPush`), credentials and the `meta` table in the
//! portable SQL of [`super::sql`].

use super::sql::{p, Backend, SqlStore};
use super::{StoreError, StoredCredential};
use crate::config::UsersFile;

impl<B: Backend> SqlStore<B> {
    pub fn assign_ids(&self, login: &str, fixed: &UsersFile) -> Result<(i32, i32), StoreError> {
        if let Some(u) = fixed.find(login) {
            return Ok((u.user_id, u.context_id));
        }
        let domain = login
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let lock = self.b.id_lock();
        self.b.tx(|c| {
            if let Some(l) = lock {
                c.query(l, &[])?;
            }
            let known = c.query(
                "SELECT user_id, context_id FROM users WHERE login=$1",
                p![login],
            )?;
            if let Some(r) = known.first() {
                return Ok((r[0].i32(), r[1].i32()));
            }
            let ctx = c.query(
                "SELECT context_id FROM contexts WHERE domain=$1",
                p![&domain],
            )?;
            let cid = match ctx.first() {
                Some(r) => r[0].i32(),
                None => {
                    let db_max = c
                        .query("SELECT COALESCE(MAX(context_id), 0) FROM contexts", &[])?[0][0]
                        .i32();
                    let fixed_max = fixed.users.iter().map(|u| u.context_id).max().unwrap_or(0);
                    let cid = db_max.max(fixed_max) + 1;
                    c.exec(
                        "INSERT INTO contexts (domain, context_id) VALUES ($1, $2)",
                        p![&domain, cid],
                    )?;
                    cid
                }
            };
            let db_max = c.query(
                "SELECT COALESCE(MAX(user_id), 2) FROM users WHERE context_id=$1",
                p![cid],
            )?[0][0]
                .i32();
            let fixed_max = fixed
                .users
                .iter()
                .filter(|u| u.context_id == cid)
                .map(|u| u.user_id)
                .max()
                .unwrap_or(0);
            // OX gives the context admin id 2; users start at 3.
            let uid = db_max.max(fixed_max) + 1;
            c.exec(
                "INSERT INTO users (login, context_id, user_id) VALUES ($1, $2, $3)",
                p![login, cid, uid],
            )?;
            Ok((uid, cid))
        })
    }

    pub fn get_login(&self, cid: i32, uid: i32) -> Result<Option<String>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT login FROM users WHERE context_id=$1 AND user_id=$2",
                p![cid, uid],
            )?
            .first()
            .map(|r| r[0].text()))
        })
    }

    pub fn add_reg(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "INSERT INTO registered_push (context_id, user_id, client) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
                p![cid, uid, client],
            )
            .map(|n| n > 0)
        })
    }

    pub fn remove_reg(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM registered_push WHERE context_id=$1 AND user_id=$2 AND client=$3",
                p![cid, uid, client],
            )
            .map(|n| n > 0)
        })
    }

    pub fn regs(&self) -> Result<Vec<(i32, i32, String)>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT context_id, user_id, client FROM registered_push ORDER BY 1, 2, 3",
                &[],
            )?
            .iter()
            .map(|r| (r[0].i32(), r[1].i32(), r[2].text()))
            .collect())
        })
    }

    pub fn put_cred(
        &self,
        table: &str,
        cid: i32,
        uid: i32,
        cr: &StoredCredential,
        expires: Option<i64>,
    ) -> Result<(), StoreError> {
        self.b.auto(|c| {
            match expires {
                None => c.exec(
                    "INSERT INTO credentials (context_id, user_id, login, password) VALUES ($1,$2,$3,$4)
                     ON CONFLICT (context_id, user_id) DO UPDATE SET login=excluded.login, password=excluded.password",
                    p![cid, uid, &cr.login, &cr.password_enc],
                ),
                Some(e) => c.exec(
                    &format!("INSERT INTO {table} (context_id, user_id, login, password, expires_ms) VALUES ($1,$2,$3,$4,$5)
                     ON CONFLICT (context_id, user_id) DO UPDATE SET login=excluded.login,
                     password=excluded.password, expires_ms=excluded.expires_ms"),
                    p![cid, uid, &cr.login, &cr.password_enc, e],
                ),
            }
            .map(|_| ())
        })
    }

    pub fn get_cred(
        &self,
        table: &str,
        cid: i32,
        uid: i32,
        now: Option<i64>,
    ) -> Result<Option<StoredCredential>, StoreError> {
        self.b.auto(|c| {
            let rows = match now {
                None => c.query(
                    &format!("SELECT login, password FROM {table} WHERE context_id=$1 AND user_id=$2"),
                    p![cid, uid],
                )?,
                Some(n) => c.query(
                    &format!("SELECT login, password FROM {table} WHERE context_id=$1 AND user_id=$2 AND expires_ms > $3"),
                    p![cid, uid, n],
                )?,
            };
            Ok(rows.first().map(|r| StoredCredential {
                login: r[0].text(),
                password_enc: r[1].text(),
            }))
        })
    }

    pub fn delete_cred(&self, table: &str, cid: i32, uid: i32) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.exec(
                &format!("DELETE FROM {table} WHERE context_id=$1 AND user_id=$2"),
                p![cid, uid],
            )
            .map(|_| ())
        })
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query("SELECT value FROM meta WHERE key=$1", p![key])?
                .first()
                .map(|r| r[0].text()))
        })
    }

    pub fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.b.tx(|c| {
            c.exec(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                p![key, value],
            )?;
            Ok(c.query("SELECT value FROM meta WHERE key=$1", p![key])?[0][0].text())
        })
    }
}
