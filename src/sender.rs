//! Endpoints: one queue, one sender thread, one kept-alive connection and one
//! retry state per distinct endpoint configuration in a process.
//!
//! The ioloop thread only appends to the queue (after writing the spool file);
//! the sender thread does all network work, so no Dovecot callback ever waits
//! for the middleware. Retries use exponential backoff with jitter on transport
//! errors, timeouts, 408, 429 and 5xx (honouring `Retry-After`); other 4xx and
//! 3xx fail at once. Items older than `max_age` are dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;

use crate::config::{Config, NOTIFICATION_ID_HEADER};
use crate::http::{Aborter, Client, TlsSettings};
use crate::log::{background, OxPushLogLevel};
use crate::retry::{backoff, classify, describe, Outcome};
use crate::spool::{fnv1a, Item, Spool};
use crate::stats::Stats;

/// How often a sender looks for files left by dead processes.
const RESCAN_INTERVAL: Duration = Duration::from_secs(15);

struct State {
    queue: VecDeque<Item>,
    bytes: u64,
    stop: bool,
    /// True while the sender works on the queue's head.
    busy: bool,
}

pub struct Endpoint {
    pub label: String,
    config: Config,
    spool: Option<Spool>,
    state: Mutex<State>,
    wake: Condvar,
    idle: Condvar,
    pub stats: Stats,
    /// Shared with the sender's client, so that shutdown can abort a blocked send.
    aborter: Aborter,
    started: AtomicBool,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

static ENDPOINTS: Lazy<Mutex<HashMap<String, Arc<Endpoint>>>> = Lazy::new(Default::default);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A random id for a notification, kept across retries and replays.
pub fn new_id() -> String {
    let v = fastrand::u128(..);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The endpoint for `config`, created (with its spool and leftovers) on first use.
/// Errors about the spool are returned once, for the caller to log.
pub fn endpoint_for(config: &Config, tls: &TlsSettings) -> (Arc<Endpoint>, Option<String>) {
    let key = format!(
        "{}|{:?}|{:?}|{}|{}|{}|{:?}|{}|{:?}",
        config.url.masked,
        config.url.basic_auth(),
        config.timeout,
        config.spool_dir.display(),
        config.spool_max_size,
        config.spool_fsync,
        config.max_age,
        config.notification_id,
        tls
    );
    let mut map = ENDPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ep) = map.get(&key) {
        return (ep.clone(), None);
    }
    let dir_key = format!("{:016x}", fnv1a(key.as_bytes()));
    let (spool, error) = match Spool::open(
        &config.spool_dir,
        &dir_key,
        &config.url.masked,
        config.spool_fsync,
    ) {
        Ok(s) => (Some(s), None),
        Err(e) => (
            None,
            Some(format!(
                "Spool directory {} is unusable ({e}); notifications for {} are kept in \
                     memory only and are lost if this process dies (set spool_dir= to a \
                     writable directory, or create {} with mode 1777)",
                config.spool_dir.display(),
                config.url.masked,
                config.spool_dir.display()
            )),
        ),
    };
    let ep = Arc::new(Endpoint {
        label: config.url.masked.clone(),
        config: config.clone(),
        spool,
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bytes: 0,
            stop: false,
            busy: false,
        }),
        wake: Condvar::new(),
        idle: Condvar::new(),
        stats: Stats::default(),
        aborter: Aborter::default(),
        started: AtomicBool::new(false),
        thread: Mutex::new(None),
    });
    map.insert(key, ep.clone());
    drop(map);
    // Leftovers of dead processes: replay them now, not at the next delivery.
    if ep.spool.is_some() && ep.adopt_orphans(true) > 0 {
        ep.ensure_thread(tls);
    }
    (ep, error)
}

impl Endpoint {
    /// Queues a notification: spool file first (so it survives this process),
    /// then the in-memory queue. Never blocks on the network.
    pub fn submit(self: &Arc<Self>, body: Vec<u8>, tls: &TlsSettings) -> Result<String, String> {
        let mut item = Item {
            id: new_id(),
            created_ms: now_ms(),
            body,
            journal: None,
        };
        let mut spool_error = None;
        if let Some(spool) = &self.spool {
            if let Err(e) = spool.write(&mut item) {
                spool_error = Some(format!(
                    "Writing to the spool in {} failed ({e}); this notification is kept in \
                     memory only",
                    self.config.spool_dir.display()
                ));
            }
        }
        let id = item.id.clone();
        self.push(vec![item]);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.ensure_thread(tls);
        match spool_error {
            Some(e) => Err(e),
            None => Ok(id),
        }
    }

    fn push(&self, items: Vec<Item>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            st.bytes += item.size();
            st.queue.push_back(item);
        }
        let mut dropped = 0;
        // Keep the newest; never drop the head while it is being sent.
        while st.bytes > self.config.spool_max_size && st.queue.len() > usize::from(st.busy) + 1 {
            let idx = usize::from(st.busy);
            if let Some(old) = st.queue.remove(idx) {
                st.bytes -= old.size();
                self.ack(&old);
                dropped += 1;
            }
        }
        drop(st);
        if dropped > 0 {
            self.stats
                .dropped_size
                .fetch_add(dropped, Ordering::Relaxed);
            background(
                OxPushLogLevel::Warning,
                format!(
                    "Dropped {dropped} oldest notification(s) for {}: spool_max_size={} exceeded",
                    self.label, self.config.spool_max_size
                ),
            );
        }
        self.wake.notify_all();
    }

    fn adopt_orphans(&self, own: bool) -> usize {
        let Some(spool) = &self.spool else { return 0 };
        let items = spool.claim_orphans(own);
        let n = items.len();
        if n > 0 {
            self.stats.replayed.fetch_add(n as u64, Ordering::Relaxed);
            background(
                OxPushLogLevel::Info,
                format!("Replaying {n} spooled notification(s) for {}", self.label),
            );
            self.push(items);
        }
        n
    }

    fn ensure_thread(self: &Arc<Self>, tls: &TlsSettings) {
        if self.started.load(Ordering::Acquire) || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let ep = self.clone();
        let tls = tls.clone();
        crate::keep_loaded();
        let handle = thread::Builder::new()
            .name("ox-push-sender".into())
            .spawn(move || loop {
                // A bug must not silently stop this endpoint's deliveries:
                // log it and start over (the queue and spool are intact).
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ep.clone().run(tls.clone())
                }));
                if run.is_ok() {
                    break;
                }
                background(
                    OxPushLogLevel::Error,
                    format!(
                        "BUG: the sender for {} panicked; restarting it in 1 s",
                        ep.label
                    ),
                );
                thread::sleep(Duration::from_secs(1));
            });
        match handle {
            Ok(h) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h),
            Err(e) => {
                self.started.store(false, Ordering::Release);
                background(
                    OxPushLogLevel::Error,
                    format!(
                        "Cannot start the sender thread: {e}; will retry at the next notification"
                    ),
                );
            }
        }
    }

    fn write_stats(&self) {
        if let Some(spool) = &self.spool {
            spool.write_stats(&self.stats.to_json(self.depth(), &self.label));
        }
    }

    /// Marks an item done in the spool (sent or dropped).
    fn ack(&self, item: &Item) {
        if let Some(spool) = &self.spool {
            spool.ack(item);
        }
    }

    fn run(self: Arc<Self>, tls: TlsSettings) {
        let mut client = Client::new(self.config.url.clone(), self.config.timeout, tls);
        client.aborter = self.aborter.clone();
        let mut failures: u32 = 0;
        let mut next_attempt = Instant::now();
        let mut last_scan = Instant::now();
        let mut stats_dirty = true;
        let mut last_stats = Instant::now() - Duration::from_secs(10);
        loop {
            // Counters: at most every 500 ms (a file write per notification
            // would cost more than the notification itself).
            if stats_dirty && last_stats.elapsed() >= Duration::from_millis(500) {
                self.write_stats();
                stats_dirty = false;
                last_stats = Instant::now();
            }
            if last_scan.elapsed() >= RESCAN_INTERVAL {
                last_scan = Instant::now();
                self.adopt_orphans(false);
            }
            // Wait for work (or for the backoff to pass), one wait at a time so
            // that housekeeping above runs between waits.
            let item = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.stop {
                    drop(st);
                    self.write_stats();
                    return;
                }
                let now = Instant::now();
                if st.queue.is_empty() || now < next_attempt {
                    st.busy = false;
                    let wait = if st.queue.is_empty() {
                        self.idle.notify_all();
                        if stats_dirty {
                            Duration::from_millis(500)
                        } else {
                            RESCAN_INTERVAL
                        }
                    } else {
                        next_attempt - now
                    };
                    let _ = self.wake.wait_timeout(st, wait);
                    continue;
                }
                st.busy = true;
                st.queue.front().cloned()
            };
            let Some(item) = item else { continue };
            stats_dirty = true;
            let age = Duration::from_millis(now_ms().saturating_sub(item.created_ms));
            if age > self.config.max_age {
                self.finish(&item);
                self.stats.dropped_age.fetch_add(1, Ordering::Relaxed);
                background(
                    OxPushLogLevel::Warning,
                    format!(
                        "Dropped notification {} for {}: older than max_age ({}s)",
                        item.id,
                        self.label,
                        self.config.max_age.as_secs()
                    ),
                );
                continue;
            }
            let headers: Vec<(&str, &str)> = if self.config.notification_id {
                vec![(NOTIFICATION_ID_HEADER, item.id.as_str())]
            } else {
                Vec::new()
            };
            let result = client.send(&item.body, &headers);
            match classify(&result) {
                Outcome::Sent => {
                    failures = 0;
                    self.finish(&item);
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    if let (Ok(r), true) = (&result, crate::log::background_debug()) {
                        background(
                            OxPushLogLevel::Debug,
                            format!("Notification sent successfully: {} {}", r.status, r.reason),
                        );
                    }
                }
                Outcome::Permanent => {
                    failures = 0;
                    self.finish(&item);
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    background(
                        OxPushLogLevel::Error,
                        format!(
                            "Error when sending notification: {} (to {}; not retried: the \
                             middleware refused it)",
                            describe(&result),
                            self.label
                        ),
                    );
                }
                Outcome::Retry(retry_after) => {
                    failures = failures.saturating_add(1);
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let delay = retry_after
                        .unwrap_or_else(|| backoff(failures))
                        .min(self.config.max_age);
                    next_attempt = Instant::now() + delay;
                    let level = if failures == 1 || failures % 10 == 0 {
                        OxPushLogLevel::Warning
                    } else {
                        OxPushLogLevel::Debug
                    };
                    background(
                        level,
                        format!(
                            "Error when sending notification: {} (to {}; attempt {failures}, \
                             retrying in {} ms; {} queued)",
                            describe(&result),
                            self.label,
                            delay.as_millis(),
                            self.depth()
                        ),
                    );
                }
            }
        }
    }

    fn depth(&self) -> usize {
        self.state.lock().map(|s| s.queue.len()).unwrap_or(0)
    }

    /// Removes the head (the item just handled) from the queue and the spool.
    fn finish(&self, item: &Item) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.queue.front().map(|h| &h.id) == Some(&item.id) {
            st.queue.pop_front();
            st.bytes = st.bytes.saturating_sub(item.size());
        }
        drop(st);
        self.ack(item);
    }

    /// Waits until the queue is empty or `until` passes; true when empty.
    fn wait_idle(&self, until: Instant) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.queue.is_empty() {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return false;
            };
            st = self
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn stop(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stop = true;
        drop(st);
        self.wake.notify_all();
        self.aborter.abort();
    }
}

/// The largest `shutdown_timeout` of the endpoints in this process.
pub fn max_shutdown_timeout() -> Option<Duration> {
    ENDPOINTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|e| e.config.shutdown_timeout)
        .max()
}

/// At process exit: give the senders up to `timeout` to empty their queues,
/// then stop them. What is left stays in the spool for the next process.
pub fn shutdown(timeout: Duration) -> Vec<String> {
    let endpoints: Vec<Arc<Endpoint>> = ENDPOINTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, v)| v)
        .collect();
    let until = Instant::now() + timeout;
    let mut notes = Vec::new();
    for ep in &endpoints {
        if ep.started.load(Ordering::Acquire) && !ep.wait_idle(until) {
            let left = ep.depth();
            notes.push(if ep.spool.is_some() {
                format!(
                    "{left} notification(s) for {} not sent yet at exit: left in the spool for \
                     the next process",
                    ep.label
                )
            } else {
                format!(
                    "{left} notification(s) for {} not sent at exit and lost (no usable spool)",
                    ep.label
                )
            });
        }
    }
    for ep in &endpoints {
        ep.stop();
    }
    for ep in &endpoints {
        if let Some(s) = &ep.spool {
            s.release();
        }
    }
    let join_until = Instant::now() + Duration::from_millis(50);
    for ep in &endpoints {
        let handle = ep.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            while !h.is_finished() && Instant::now() < join_until {
                thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            }
            // Otherwise the thread is detached; the module stays mapped
            // (keep_loaded), so it cannot run into unmapped code.
        }
    }
    notes
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod endpoint_tests;
