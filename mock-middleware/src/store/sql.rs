//! The [`Store`] written once in SQL that SQLite (3.35+) and PostgreSQL both run: `$n`
//! placeholders numbered in order of first appearance (SQLite binds them by that order),
//! `ON CONFLICT … DO UPDATE` instead of `INSERT OR REPLACE`, `RETURNING`, integers for flags.
//! A backend only opens connections and transactions ([`Backend`], [`Conn`]).

use super::{StoreError, StoredCredential, SubKey, Subscription};
use crate::config::UsersFile;

/// A bound parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    I32(i32),
    I64(i64),
    Text(String),
}

impl Val {
    pub fn i64(&self) -> i64 {
        match self {
            Val::I32(v) => *v as i64,
            Val::I64(v) => *v,
            Val::Text(t) => t.parse().unwrap_or(0),
            Val::Null => 0,
        }
    }
    pub fn i32(&self) -> i32 {
        self.i64() as i32
    }
    pub fn text(&self) -> String {
        match self {
            Val::Text(t) => t.clone(),
            Val::Null => String::new(),
            v => v.i64().to_string(),
        }
    }
    pub fn opt_text(&self) -> Option<String> {
        (*self != Val::Null).then(|| self.text())
    }
}

impl From<i32> for Val {
    fn from(v: i32) -> Val {
        Val::I32(v)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I64(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::I32(v as i32)
    }
}

/// Parameters: `p![a, b, c]`.
#[macro_export]
macro_rules! p {
    ($($v:expr),* $(,)?) => { &[$($crate::store::sql::Val::from($v)),*][..] };
}
pub use p;

pub type Row = Vec<Val>;

/// One connection (inside a transaction or not).
pub trait Conn {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, p: &[Val]) -> Result<Vec<Row>, StoreError>;
    /// Hands each row to `f` (a backend may stream instead of collecting).
    fn each(&mut self, sql: &str, p: &[Val], f: &mut dyn FnMut(Row)) -> Result<(), StoreError> {
        self.query(sql, p)?.into_iter().for_each(f);
        Ok(())
    }
}

/// What a backend provides.
pub trait Backend: Send + Sync + 'static {
    /// Runs `f` in one transaction (committed when it returns `Ok`).
    fn tx<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;
    /// Runs `f` on a connection in autocommit mode (one round trip per statement).
    fn auto<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;
    /// A statement that serialises id assignment inside a transaction (PostgreSQL's advisory
    /// transaction lock); SQLite's single writer needs none.
    fn id_lock(&self) -> Option<&'static str>;
    fn shared(&self) -> bool;
    fn describe(&self) -> String;
    /// The schema version in force.
    fn version(&self) -> Result<i64, StoreError>;
}

/// The store over backend `B`.
pub struct SqlStore<B: Backend> {
    pub(crate) b: B,
}

pub(crate) const COLS: &str = "context_id, user_id, client, transport, token, topics, created";
const UPSERT_SUB: &str =
    "INSERT INTO subscriptions (context_id, user_id, client, transport, token, topics, created)
     VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (client, transport, token) DO UPDATE SET
     context_id = excluded.context_id, user_id = excluded.user_id, topics = excluded.topics,
     created = excluded.created";

pub(crate) fn to_sub(r: &Row) -> Subscription {
    Subscription {
        context_id: r[0].i32(),
        user_id: r[1].i32(),
        client: r[2].text().into(),
        transport: r[3].text().into(),
        token: r[4].text(),
        topics: serde_json::from_str::<Vec<String>>(&r[5].text())
            .unwrap_or_default()
            .into(),
        created: r[6].i64(),
    }
}

fn upsert(c: &mut dyn Conn, s: &Subscription) -> Result<(), StoreError> {
    let topics = serde_json::to_string(&*s.topics).map_err(|e| StoreError::Db(e.to_string()))?;
    c.exec(
        UPSERT_SUB,
        p![
            s.context_id,
            s.user_id,
            &*s.client,
            &*s.transport,
            &s.token,
            &topics,
            s.created
        ],
    )?;
    Ok(())
}

fn subs(c: &mut dyn Conn, filter: &str, p: &[Val]) -> Result<Vec<Subscription>, StoreError> {
    Ok(
        c.query(&format!("SELECT {COLS} FROM subscriptions {filter}"), p)?
            .iter()
            .map(to_sub)
            .collect(),
    )
}

impl<B: Backend> SqlStore<B> {
    pub fn put_sub(&self, s: &Subscription) -> Result<Option<Subscription>, StoreError> {
        self.b.tx(|c| {
            let prev = subs(
                c,
                "WHERE client=$1 AND transport=$2 AND token=$3",
                p![&*s.client, &*s.transport, &s.token],
            )?;
            upsert(c, s)?;
            Ok(prev.into_iter().next())
        })
    }

    pub fn put_many_subs(&self, list: &[Subscription]) -> Result<(), StoreError> {
        self.b.tx(|c| list.iter().try_for_each(|s| upsert(c, s)))
    }

    pub fn remove_sub(&self, k: &SubKey) -> Result<bool, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM subscriptions WHERE context_id=$1 AND user_id=$2 AND client=$3 AND transport=$4 AND token=$5",
                p![k.context_id, k.user_id, &k.client, &k.transport, &k.token],
            )
            .map(|n| n > 0)
        })
    }

    pub fn remove_token_subs(
        &self,
        (cid, uid): (i32, i32),
        transport: &str,
        token: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                &format!("DELETE FROM subscriptions WHERE context_id=$1 AND user_id=$2 AND transport=$3 AND token=$4 RETURNING {COLS}"),
                p![cid, uid, transport, token],
            )?
            .iter()
            .map(to_sub)
            .collect())
        })
    }

    pub fn replace_token_subs(
        &self,
        transport: &str,
        old: &str,
        new: &str,
        owner: Option<(i32, i32)>,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.b.tx(|c| {
            let mut found = match owner {
                Some((cid, uid)) => {
                    let taken = subs(
                        c,
                        "WHERE transport=$1 AND token=$2 AND NOT (context_id=$3 AND user_id=$4)",
                        p![transport, new, cid, uid],
                    )?;
                    if !taken.is_empty() {
                        return Err(StoreError::TokenTaken);
                    }
                    subs(
                        c,
                        "WHERE transport=$1 AND token=$2 AND context_id=$3 AND user_id=$4",
                        p![transport, old, cid, uid],
                    )?
                }
                None => subs(c, "WHERE transport=$1 AND token=$2", p![transport, old])?,
            };
            for s in &mut found {
                c.exec(
                    "DELETE FROM subscriptions WHERE client=$1 AND transport=$2 AND token=$3",
                    p![&*s.client, &*s.transport, old],
                )?;
                s.token = new.to_string();
                upsert(c, s)?;
            }
            Ok(found)
        })
    }

    pub fn subs_of(&self, cid: i32, uid: i32) -> Result<Vec<Subscription>, StoreError> {
        self.b
            .auto(|c| subs(c, "WHERE context_id=$1 AND user_id=$2", p![cid, uid]))
    }

    pub fn count_subs(&self) -> Result<i64, StoreError> {
        self.b
            .auto(|c| Ok(c.query("SELECT COUNT(*) FROM subscriptions", &[])?[0][0].i64()))
    }
}

impl<B: Backend> super::Store for SqlStore<B> {
    fn shared(&self) -> bool {
        self.b.shared()
    }
    fn describe(&self) -> String {
        self.b.describe()
    }
    fn schema_version(&self) -> Result<i64, StoreError> {
        self.b.version()
    }
    fn put(&self, sub: &Subscription) -> Result<Option<Subscription>, StoreError> {
        self.put_sub(sub)
    }
    fn put_many(&self, subs: &[Subscription]) -> Result<(), StoreError> {
        self.put_many_subs(subs)
    }
    fn remove(&self, k: &SubKey) -> Result<bool, StoreError> {
        self.remove_sub(k)
    }
    fn remove_token(
        &self,
        owner: (i32, i32),
        transport: &str,
        token: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.remove_token_subs(owner, transport, token)
    }
    fn replace_token(
        &self,
        transport: &str,
        old: &str,
        new: &str,
        owner: Option<(i32, i32)>,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.replace_token_subs(transport, old, new, owner)
    }
    fn load_all(&self, f: &mut dyn FnMut(Subscription)) -> Result<(), StoreError> {
        self.b.auto(|c| {
            c.each(
                &format!("SELECT {COLS} FROM subscriptions"),
                &[],
                &mut |r| f(to_sub(&r)),
            )
        })
    }
    fn for_user(&self, cid: i32, uid: i32) -> Result<Vec<Subscription>, StoreError> {
        self.subs_of(cid, uid)
    }
    fn count(&self) -> Result<i64, StoreError> {
        self.count_subs()
    }
    fn user_ids(&self, login: &str, fixed: &UsersFile) -> Result<(i32, i32), StoreError> {
        self.assign_ids(login, fixed)
    }
    fn login_of(&self, cid: i32, uid: i32) -> Result<Option<String>, StoreError> {
        self.get_login(cid, uid)
    }
    fn add_registration(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError> {
        self.add_reg(cid, uid, client)
    }
    fn remove_registration(&self, cid: i32, uid: i32, client: &str) -> Result<bool, StoreError> {
        self.remove_reg(cid, uid, client)
    }
    fn registrations(&self) -> Result<Vec<(i32, i32, String)>, StoreError> {
        self.regs()
    }
    fn put_credential(&self, cid: i32, uid: i32, c: &StoredCredential) -> Result<(), StoreError> {
        self.put_cred("credentials", cid, uid, c, None)
    }
    fn credential(&self, cid: i32, uid: i32) -> Result<Option<StoredCredential>, StoreError> {
        self.get_cred("credentials", cid, uid, None)
    }
    fn delete_credential(&self, cid: i32, uid: i32) -> Result<(), StoreError> {
        self.delete_cred("credentials", cid, uid)
    }
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.get_meta(key)
    }
    fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.init_meta(key, value)
    }
}
