//! Recordings of nodes sharing a store: every node's notifications and pushes in the store's
//! `recordings` table, so `/mock/notifications` and `/mock/pushes` on any node show the
//! cluster's (each entry names its `node`).
//!
//! The hot path only hands the record to a bounded channel (a full channel drops the record and
//! counts it); one task per node renders the JSON and appends whatever has arrived in one
//! multi-row INSERT, and trims the table to `mock.recordings.max` entries and
//! `mock.recordings.max_bytes` of bodies per kind every two seconds. Recordings are the testing
//! surface, not state: a batch the database refuses is dropped (and counted), never retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::recording::{NotificationRecord, PushRecord};
use crate::store::index::blocking;
use crate::store::schema::{NOTIFICATION, PUSH};
use crate::store::{Store, StoreError};

/// Records waiting to be written.
const CHANNEL: usize = 10_000;
/// Records per write at most.
const BATCH: usize = 1_000;

pub enum Rec {
    Notification(NotificationRecord),
    Push(Box<PushRecord>),
}

/// The shared recordings of one node.
pub struct SharedRecordings {
    tx: mpsc::Sender<Rec>,
    store: Arc<dyn Store>,
    /// Records dropped (channel full or the database refused a batch).
    pub dropped: Arc<AtomicU64>,
}

impl SharedRecordings {
    /// Starts the writer task of node `node`.
    pub fn start(store: Arc<dyn Store>, node: String, max: usize, max_bytes: usize) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(
            rx,
            store.clone(),
            node,
            (max as i64, max_bytes.min(i64::MAX as usize) as i64),
            dropped.clone(),
        ));
        Arc::new(SharedRecordings { tx, store, dropped })
    }

    /// Queues a record without waiting.
    pub fn send(&self, r: Rec) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The cluster's records of one kind, oldest first, each with its `node`.
    pub async fn read(&self, push: bool) -> Result<Vec<Value>, StoreError> {
        let kind = if push { PUSH } else { NOTIFICATION };
        let rows = blocking(&self.store, move |st| st.recordings(kind)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(node, body)| {
                let mut v: Value = serde_json::from_str(&body).ok()?;
                v["node"] = Value::String(node);
                Some(v)
            })
            .collect())
    }

    /// Forgets the cluster's recordings.
    pub async fn clear(&self) -> Result<(), StoreError> {
        blocking(&self.store, |st| st.clear_recordings()).await
    }
}

fn render(r: &Rec) -> (i32, i64, String) {
    match r {
        Rec::Notification(n) => (NOTIFICATION, n.received_ms, n.to_json().to_string()),
        Rec::Push(p) => (
            PUSH,
            p.finished_ms,
            serde_json::to_string(p).unwrap_or_default(),
        ),
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Rec>,
    store: Arc<dyn Store>,
    node: String,
    (max, max_bytes): (i64, i64),
    dropped: Arc<AtomicU64>,
) {
    let mut trimmed = Instant::now();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let rows: Vec<(i32, i64, String)> = batch.iter().map(render).collect();
        let (n, id) = (rows.len() as u64, node.clone());
        if let Err(e) = blocking(&store, move |st| st.append_recordings(&id, &rows)).await {
            if dropped.fetch_add(n, Ordering::Relaxed) == 0 {
                tracing::warn!(error = %e, "recordings dropped: the store refused them");
            }
        }
        if trimmed.elapsed() > Duration::from_secs(2) {
            trimmed = Instant::now();
            let _ = blocking(&store, move |st| {
                st.trim_recordings(NOTIFICATION, max, max_bytes)?;
                st.trim_recordings(PUSH, max, max_bytes)
            })
            .await;
        }
    }
}
