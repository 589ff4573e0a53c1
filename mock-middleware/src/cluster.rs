//! How nodes sharing one store agree: heartbeats, listener leases, unfinished notifications.
//!
//! Every node (a single SQLite node too) writes a heartbeat into `nodes` every
//! `mock.cluster.heartbeat_ms`; its listener leases are valid as long as that heartbeat is
//! younger than `mock.cluster.lease_ms` (one row renews them all). On each tick it also takes:
//! - the leases of nodes whose heartbeat is older than the lease (they died or lost the
//!   database), and re-asserts METADATA for each user, so a dead node's users move within
//!   lease + heartbeat; then forgets the dead node;
//! - about once a minute (and at start-up), the leases of registered users that have none;
//! - unfinished notification claims of dead nodes (and of its own earlier run), whose pushes it
//!   sends: a notification answered 200 is pushed even if the node that accepted it dies;
//! - its own unfinished claims older than a lease that no job of it holds (the database
//!   committed a claim but the answer was lost, so the request was answered 503 and its retry
//!   dropped as a repeat).
//!
//! Taking from another node waits until this node has itself heartbeaten without a gap for a
//! whole lease period: after a database outage every node gets the chance to renew first, so a
//! live node's work is not taken only because the database was away. A single SQLite node has
//! no one else to wait for. Reconcile requests addressed to this node (another node received
//! the subscribe) are polled every 250 ms.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{ClusterSettings, Secret};
use crate::event::MailEvent;
use crate::listeners::Listeners;
use crate::push::{ClaimTicket, PushJob};
use crate::store::index::blocking;
use crate::store::{now_ms, NodeRow, PendingClaim, Store, Subscriptions};

/// This node: its id and what it knows about its own health.
pub struct Node {
    pub id: String,
    pub started_ms: i64,
    pub http_addr: String,
    pub admin_addr: String,
    pub settings: ClusterSettings,
    pub store: Arc<dyn Store>,
    /// Since when heartbeats have succeeded without a gap (None: the last one failed).
    healthy_since: Mutex<Option<i64>>,
}

/// The default node id: `<hostname>:<public port>` (stable across restarts on one port).
pub fn default_node_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{port}")
}

/// Reads the cluster key, creating it (0600, 256 random bits) when missing; a node that loses
/// the race to create it reads the winner's.
pub fn cluster_key(path: &Path) -> std::io::Result<Secret> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..50 {
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => return Ok(Secret::new(t.trim())),
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = hex::encode(rand::random::<[u8; 32]>());
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(mut f) => {
                        f.write_all(format!("{key}\n").as_bytes())?;
                        return Ok(Secret::new(key));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("the file stays empty"))
}

impl Node {
    pub fn new(
        id: String,
        http_addr: String,
        admin_addr: String,
        settings: ClusterSettings,
        store: Arc<dyn Store>,
    ) -> Node {
        Node {
            id,
            started_ms: now_ms(),
            http_addr,
            admin_addr,
            settings,
            store,
            healthy_since: Mutex::new(None),
        }
    }

    fn lease_ms(&self) -> i64 {
        self.settings.lease.as_millis() as i64
    }

    /// Heartbeat and lease renewal; true when the database answered.
    async fn beat(&self) -> bool {
        let now = now_ms();
        let row = NodeRow {
            node_id: self.id.clone(),
            http_addr: self.http_addr.clone(),
            admin_addr: self.admin_addr.clone(),
            started_ms: self.started_ms,
            heartbeat_ms: now,
        };
        let r = blocking(&self.store, move |st| st.heartbeat(&row)).await;
        let mut h = self.healthy_since.lock().expect("health lock");
        match r {
            Ok(()) => {
                h.get_or_insert(now);
                true
            }
            Err(e) => {
                if h.take().is_some() {
                    tracing::warn!(error = %e, "cluster heartbeat failed; not taking over anything until the database answers again for a whole lease period");
                }
                false
            }
        }
    }

    /// True when this node may take leases and claims from other nodes.
    fn may_take(&self) -> bool {
        if !self.store.shared() {
            return true;
        }
        let since = *self.healthy_since.lock().expect("health lock");
        since.is_some_and(|s| now_ms() - s >= self.lease_ms())
    }
}

/// Everything the cluster loop acts on.
pub struct Parts {
    pub node: Arc<Node>,
    pub listeners: Arc<Listeners>,
    pub subs: Subscriptions,
    pub queue: mpsc::Sender<PushJob>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub inflight: crate::push::Inflight,
}

/// Runs the heartbeat loop until `stop`; then leaves the cluster (its leases go at once).
pub async fn run(p: Parts, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(p.node.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                if p.node.beat().await {
                    take_over(&p, ticks).await;
                    ticks += 1;
                }
            }
            _ = poll.tick(), if p.node.store.shared() && p.listeners.enabled() => requests(&p).await,
        }
    }
    let id = p.node.id.clone();
    if let Err(e) = blocking(&p.node.store, move |st| st.leave(&id)).await {
        tracing::warn!(error = %e, "could not leave the cluster; other nodes take over when the leases expire");
    }
}

async fn requests(p: &Parts) {
    let id = p.node.id.clone();
    if let Ok(reqs) = blocking(&p.node.store, move |st| st.take_reconcile_requests(&id)).await {
        for (cid, uid, why) in reqs {
            p.listeners.spawn_reconcile(cid, uid, why);
        }
    }
}

async fn take_over(p: &Parts, tick: u64) {
    let n = &p.node;
    let (id, now, lease, started) = (n.id.clone(), now_ms(), n.lease_ms(), n.started_ms);
    let steal = n.may_take();
    // A single node's store has no other live node: every other id is an earlier run.
    let dead_before = if n.store.shared() {
        now - lease
    } else {
        i64::MAX
    };
    let keep = n.settings.dedup_keep.as_millis() as i64;
    let listeners = p.listeners.enabled();
    // The full scan for unleased registrations is a safety net (a subscribe takes the lease
    // at once): at start-up and about once a minute.
    let scan = tick % 20 == 0;
    // Claims of this node that none of its jobs holds (taken before the query, so that a claim
    // finishing meanwhile is not mistaken for an orphan; retake_claim re-checks it).
    let held = p.inflight.lock().expect("inflight lock").clone();
    let r = blocking(&n.store, move |st| {
        let mut users: Vec<(i32, i32, String)> = Vec::new();
        if listeners && tick == 0 {
            // Start-up: this node's own leases from an earlier run are re-asserted.
            users.extend(
                st.leases()?
                    .into_iter()
                    .filter(|l| l.node_id == id)
                    .map(|l| (l.context_id, l.user_id, "start-up".to_string())),
            );
        }
        let mut claims = Vec::new();
        if steal {
            for dead in st.dead_nodes(&id, dead_before)? {
                if listeners {
                    let why = format!("lease taken over from node {dead}");
                    users.extend(
                        st.take_leases_of(&dead, &id)?
                            .into_iter()
                            .map(|(c, u)| (c, u, why.clone())),
                    );
                }
                claims.extend(st.take_orphan_claims(&id, now - lease, started, now)?);
                st.forget_node(&dead, dead_before)?;
            }
            if listeners && scan {
                users.extend(st.acquire_unleased(&id)?.into_iter().map(|(c, u, prev)| {
                    let why = match prev {
                        Some(_) => "lease of a node that is gone".to_string(),
                        None => "start-up".to_string(),
                    };
                    (c, u, why)
                }));
            }
            if scan {
                claims.extend(st.take_orphan_claims(&id, now - lease, started, now)?);
            }
        }
        for c in st.own_pending_claims(&id, now - lease)? {
            if !held.contains(&c) {
                if let Some(event) = st.retake_claim(&c, &id, now)? {
                    claims.push(PendingClaim { id: c, event });
                }
            }
        }
        if scan {
            st.purge_claims(now - keep)?;
        }
        Ok((users, claims))
    })
    .await;
    let (users, claims) = match r {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cluster take-over failed");
            return;
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (cid, uid, why) in users {
        if seen.insert((cid, uid)) {
            tracing::info!(user = uid, context = cid, node = %n.id, reason = %why, "listener lease held");
            p.listeners.spawn_reconcile(cid, uid, why);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for c in claims {
        if !seen.insert(c.id.clone()) {
            continue;
        }
        let Ok(event) = serde_json::from_str::<MailEvent>(&c.event) else {
            tracing::error!(id = %c.id, "an unfinished notification cannot be read; dropped");
            continue;
        };
        let subs = match p.subs.for_user(event.context_id, event.user_id).await {
            Ok(s) => crate::push::targets(s),
            Err(e) => {
                tracing::warn!(error = %e, "an unfinished notification waits for the database");
                continue;
            }
        };
        tracing::info!(id = %c.id, user = event.user_id, context = event.context_id, "pushing an unfinished notification of a node that is gone");
        let job = PushJob {
            seq: 0,
            received: std::time::Instant::now(),
            event: Arc::new(event),
            subs,
            claim: Some(ClaimTicket::new(c.id, n.store.clone(), &p.inflight)),
        };
        if p.queue.send(job).await.is_err() {
            return;
        }
        p.metrics.queue_depth.inc();
    }
}
