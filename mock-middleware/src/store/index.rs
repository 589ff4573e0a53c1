//! The in-memory index of subscriptions in front of the durable [`Store`].
//!
//! A single node on SQLite must never wait on disk in the notify handler, so it holds every
//! subscription in memory, keyed by (context, user): writes go to the store first (off the
//! async executor) and then to the index. When the store is shared by several nodes
//! ([`Store::shared`]), another node may have changed any row, so the index is not kept and
//! every read goes to the database (one indexed query per notification).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::{Store, StoreError, SubKey, Subscription};

/// Runs a store call on tokio's blocking pool, never on the async executor.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
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
    /// The store is shared with other nodes: reads go to it, the index stays empty.
    shared: bool,
}

impl Subscriptions {
    /// Loads every stored subscription into memory (not for a shared store). Blocking.
    pub fn open(store: Arc<dyn Store>) -> Result<Subscriptions, StoreError> {
        let mut index = Index::new();
        let mut interner = Interner::default();
        let shared = store.shared();
        if !shared {
            store.load_all(&mut |s| {
                let s = interner.intern(s);
                index
                    .entry((s.context_id, s.user_id))
                    .or_default()
                    .push(Arc::new(s));
            })?;
        }
        index.shrink_to_fit();
        Ok(Subscriptions {
            store,
            index: Arc::new(RwLock::new(index)),
            interner: Arc::new(Mutex::new(interner)),
            on_removed: Arc::default(),
            shared,
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

    /// The durable store behind the index.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// True when the store is shared by several nodes (reads go to the database).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// The user's subscriptions: from memory (a cheap clone of shared pointers) on a single
    /// node, from the database when it is shared.
    pub async fn for_user(
        &self,
        context_id: i32,
        user_id: i32,
    ) -> Result<Vec<Arc<Subscription>>, StoreError> {
        if self.shared {
            let rows = self
                .blocking(move |st| st.for_user(context_id, user_id))
                .await?;
            return Ok(rows.into_iter().map(Arc::new).collect());
        }
        Ok(self.indexed(context_id, user_id))
    }

    /// The user's subscriptions in the index (single node only; never touches the database).
    pub fn indexed(&self, context_id: i32, user_id: i32) -> Vec<Arc<Subscription>> {
        self.index
            .read()
            .expect("index lock")
            .get(&(context_id, user_id))
            .cloned()
            .unwrap_or_default()
    }

    /// Number of subscriptions (the cluster's, when shared).
    pub async fn count(&self) -> Result<usize, StoreError> {
        if self.shared {
            return Ok(self.blocking(|st| st.count()).await? as usize);
        }
        Ok(self
            .index
            .read()
            .expect("index lock")
            .values()
            .map(Vec::len)
            .sum())
    }

    /// Every subscription, for inspection (the cluster's, when shared).
    pub async fn all(&self) -> Result<Vec<Arc<Subscription>>, StoreError> {
        if self.shared {
            return self
                .blocking(|st| {
                    let mut v = Vec::new();
                    st.load_all(&mut |s| v.push(Arc::new(s)))?;
                    Ok(v)
                })
                .await;
        }
        Ok(self
            .index
            .read()
            .expect("index lock")
            .values()
            .flatten()
            .cloned()
            .collect())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        blocking(&self.store, f).await
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
            if !self.shared {
                idx.entry((sub.context_id, sub.user_id))
                    .or_default()
                    .push(Arc::new(sub));
            }
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
            if self.shared {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

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
        assert!(subs.indexed(1, 2).is_empty(), "token moved to user 9");
        assert_eq!(subs.indexed(1, 9).len(), 1);
        subs.replace_token("apn".into(), "ab".into(), "cd".into(), None)
            .await
            .unwrap();
        assert_eq!(subs.indexed(1, 9)[0].token, "cd");
        let reopened = Subscriptions::open(store).unwrap();
        assert_eq!(reopened.indexed(1, 9)[0].token, "cd");
        assert_eq!(reopened.count().await.unwrap(), 1);
    }
}
