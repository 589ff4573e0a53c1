//! Subscription storage: a durable [`Store`] plus an in-memory index for the hot path.
//!
//! The notify handler must never wait on disk, so every subscription is also held in memory,
//! keyed by (context, user). Writes go to the durable store first (off the async executor) and
//! then to the index. The [`Store`] trait is what a PostgreSQL backend would implement to let
//! several middleware nodes share subscriptions.

pub mod registry;
pub mod sqlite;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::Serialize;

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

/// Durable storage of subscriptions. Methods are blocking; callers run them off the executor.
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces the subscription keyed by (client, transport, token); returns the
    /// subscription that held that token before (possibly another user's).
    fn put(&self, sub: &Subscription) -> Result<Option<Subscription>, StoreError>;
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
    /// Every stored subscription (read once at startup to build the index).
    /// Hands every stored subscription to `f` (read once at startup to build the index),
    /// without collecting them first.
    fn load_all(&self, f: &mut dyn FnMut(Subscription)) -> Result<(), StoreError>;
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

type Index = HashMap<(i32, i32), Vec<Arc<Subscription>>>;

/// Shares equal client ids, transports and topic lists between subscriptions, so that 100,000
/// subscriptions cost little more than their tokens.
#[derive(Default)]
struct Interner {
    strs: HashSet<Arc<str>>,
    topics: HashSet<Arc<[String]>>,
}

impl Interner {
    fn intern(&mut self, mut s: Subscription) -> Subscription {
        s.client = self.str(&s.client);
        s.transport = self.str(&s.transport);
        s.topics = match self.topics.get(&*s.topics) {
            Some(t) => t.clone(),
            None => {
                self.topics.insert(s.topics.clone());
                s.topics
            }
        };
        s
    }
    fn str(&mut self, v: &Arc<str>) -> Arc<str> {
        match self.strs.get(&**v) {
            Some(x) => x.clone(),
            None => {
                self.strs.insert(v.clone());
                v.clone()
            }
        }
    }
}

/// Called with (context, user, why) after subscriptions of that user went away; `why` is what
/// the log says (`unsubscribe`, `unregistered by APNs`, ...).
pub type RemovalHook = Arc<dyn Fn(i32, i32, String) + Send + Sync>;

/// The durable store plus its in-memory index.
#[derive(Clone)]
pub struct Subscriptions {
    store: Arc<dyn Store>,
    index: Arc<RwLock<Index>>,
    interner: Arc<Mutex<Interner>>,
    on_removed: Arc<OnceLock<RemovalHook>>,
}

impl Subscriptions {
    /// Loads every stored subscription into memory.
    pub fn open(store: Arc<dyn Store>) -> Result<Subscriptions, StoreError> {
        let mut index = Index::new();
        let mut interner = Interner::default();
        store.load_all(&mut |s| {
            let s = interner.intern(s);
            index
                .entry((s.context_id, s.user_id))
                .or_default()
                .push(Arc::new(s));
        })?;
        index.shrink_to_fit();
        Ok(Subscriptions {
            store,
            index: Arc::new(RwLock::new(index)),
            interner: Arc::new(Mutex::new(interner)),
            on_removed: Arc::default(),
        })
    }

    /// Installs the hook told about users that lost subscriptions (unsubscribe, dead token,
    /// token moved to another user). Only the first call has an effect.
    pub fn set_removal_hook(&self, hook: RemovalHook) {
        let _ = self.on_removed.set(hook);
    }

    fn removed(&self, context_id: i32, user_id: i32, why: &str) {
        if let Some(h) = self.on_removed.get() {
            h(context_id, user_id, why.to_string());
        }
    }

    /// The user's subscriptions (a cheap clone of shared pointers; never touches the database).
    pub fn for_user(&self, context_id: i32, user_id: i32) -> Vec<Arc<Subscription>> {
        self.index
            .read()
            .expect("index lock")
            .get(&(context_id, user_id))
            .cloned()
            .unwrap_or_default()
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .expect("index lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// True when no subscription is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every subscription, for inspection.
    pub fn all(&self) -> Vec<Arc<Subscription>> {
        self.index
            .read()
            .expect("index lock")
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
    }

    /// Stores a subscription; a previous holder of the same (client, transport, token) is replaced.
    pub async fn put(&self, sub: Subscription) -> Result<(), StoreError> {
        let sub = self.interner.lock().expect("interner lock").intern(sub);
        let s2 = sub.clone();
        let previous = self.blocking(move |st| st.put(&s2)).await?;
        let moved = {
            let mut idx = self.index.write().expect("index lock");
            let moved = previous.as_ref().and_then(|prev| {
                remove_from(&mut idx, &SubKey::from(prev));
                ((prev.context_id, prev.user_id) != (sub.context_id, sub.user_id))
                    .then_some((prev.context_id, prev.user_id))
            });
            remove_from(&mut idx, &SubKey::from(&sub));
            idx.entry((sub.context_id, sub.user_id))
                .or_default()
                .push(Arc::new(sub));
            moved
        };
        if let Some((c, u)) = moved {
            self.removed(c, u, "token moved to another user");
        }
        Ok(())
    }

    /// Removes one subscription; returns whether it existed. `why` goes to the removal hook.
    pub async fn remove(&self, key: SubKey, why: &str) -> Result<bool, StoreError> {
        let k2 = key.clone();
        let gone = self.blocking(move |st| st.remove(&k2)).await?;
        remove_from(&mut self.index.write().expect("index lock"), &key);
        if gone {
            self.removed(key.context_id, key.user_id, why);
        }
        Ok(gone)
    }

    /// Removes the caller's own subscriptions of a token (legacy unsubscribe).
    pub async fn remove_token(
        &self,
        owner: (i32, i32),
        transport: String,
        token: String,
    ) -> Result<usize, StoreError> {
        let removed = self
            .blocking(move |st| st.remove_token(owner, &transport, &token))
            .await?;
        {
            let mut idx = self.index.write().expect("index lock");
            for s in &removed {
                remove_from(&mut idx, &SubKey::from(s));
            }
        }
        let users: HashSet<(i32, i32)> =
            removed.iter().map(|s| (s.context_id, s.user_id)).collect();
        for (c, u) in users {
            self.removed(c, u, "unsubscribe");
        }
        Ok(removed.len())
    }

    /// Replaces a token for `transport`: only `owner`'s subscriptions when given (see
    /// [`Store::replace_token`]), else everywhere.
    pub async fn replace_token(
        &self,
        transport: String,
        old: String,
        new: String,
        owner: Option<(i32, i32)>,
    ) -> Result<usize, StoreError> {
        let (t2, o2, n2) = (transport.clone(), old.clone(), new.clone());
        let updated = self
            .blocking(move |st| st.replace_token(&t2, &o2, &n2, owner))
            .await?;
        let mut idx = self.index.write().expect("index lock");
        for s in &updated {
            let mut old_key = SubKey::from(s);
            old_key.token = old.clone();
            remove_from(&mut idx, &old_key);
            remove_from(&mut idx, &SubKey::from(s));
            let s = self
                .interner
                .lock()
                .expect("interner lock")
                .intern(s.clone());
            idx.entry((s.context_id, s.user_id))
                .or_default()
                .push(Arc::new(s));
        }
        Ok(updated.len())
    }
}

fn remove_from(idx: &mut Index, key: &SubKey) {
    if let Some(list) = idx.get_mut(&(key.context_id, key.user_id)) {
        list.retain(|s| {
            !(*s.client == *key.client && *s.transport == *key.transport && s.token == key.token)
        });
        if list.is_empty() {
            idx.remove(&(key.context_id, key.user_id));
        }
    }
}

/// Current time in UNIX milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(t: &[&str]) -> Subscription {
        Subscription {
            context_id: 1,
            user_id: 2,
            client: "c".into(),
            transport: "apn".into(),
            token: "ab".into(),
            topics: t.iter().map(|s| s.to_string()).collect::<Vec<_>>().into(),
            created: 0,
        }
    }

    #[test]
    fn topic_matching() {
        assert!(sub(&["*"]).matches_topic("ox:mail:new"));
        assert!(sub(&["ox:mail:new"]).matches_topic("ox:mail:new"));
        assert!(sub(&["ox:mail:*"]).matches_topic("ox:mail:new"));
        assert!(sub(&["ox:*"]).matches_topic("ox:mail:new"));
        assert!(!sub(&["ox:calendar:updates"]).matches_topic("ox:mail:new"));
        assert!(!sub(&["ox:ma*"]).matches_topic("ox:mail:new"));
    }

    #[tokio::test]
    async fn index_follows_store_including_token_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).unwrap());
        let subs = Subscriptions::open(store.clone()).unwrap();
        subs.put(sub(&["ox:mail:new"])).await.unwrap();
        let mut other = sub(&["*"]);
        other.user_id = 9;
        subs.put(other).await.unwrap();
        assert!(subs.for_user(1, 2).is_empty(), "token moved to user 9");
        assert_eq!(subs.for_user(1, 9).len(), 1);
        subs.replace_token("apn".into(), "ab".into(), "cd".into(), None)
            .await
            .unwrap();
        assert_eq!(subs.for_user(1, 9)[0].token, "cd");
        let reopened = Subscriptions::open(store).unwrap();
        assert_eq!(reopened.for_user(1, 9)[0].token, "cd");
        assert_eq!(reopened.len(), 1);
    }
}
