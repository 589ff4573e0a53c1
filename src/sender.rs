//! Endpoints: one queue, one kept-alive connection and one retry state per
//! distinct endpoint configuration in a process, all driven on Dovecot's own
//! thread without ever blocking it.
//!
//! Every socket is non-blocking and registered with one `mio` poll. The shim
//! watches that poll's file descriptor with Dovecot's `io_add()` and keeps one
//! Dovecot timeout armed for the earliest deadline ([`next_timeout`]); both call
//! [`run`]. [`submit`] writes the spool record, queues the notification and
//! starts its request at once when the connection is free, so the request is
//! usually on the wire before the LMTP reply; the answer is read when the ioloop
//! next looks at the socket. No thread of ours exists in a mail process (but the
//! short-lived one of a host name lookup): Dovecot's LMTP changes the euid for
//! every recipient, and glibc makes every thread of the process follow, so an
//! extra thread costs every delivery several signals and context switches.
//!
//! Retries use exponential backoff with jitter on transport errors, timeouts,
//! 408, 429 and 5xx (honouring `Retry-After`); other 4xx and 3xx fail at once.
//! Items older than `max_age` are dropped and counted. At process exit,
//! [`shutdown`] drives the queues with its own poll for at most
//! `shutdown_timeout`; what is left stays in the spool.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::{Events, Poll, Registry, Token, Waker};
use once_cell::sync::Lazy;

use crate::config::{Config, NOTIFICATION_ID_HEADER};
use crate::http::{self, Conn, Progress, Response, TlsSettings, TransportError};
use crate::log::{background, OxPushLogLevel};
use crate::retry::{backoff, classify, describe, Outcome};
use crate::spool::{fnv1a, Item, Spool};
use crate::stats::Stats;

/// How often an endpoint looks for spool files left by dead processes.
const RESCAN_INTERVAL: Duration = Duration::from_secs(15);
/// Counters are written at most this often (a file write per notification
/// would cost more than the notification itself).
const STATS_INTERVAL: Duration = Duration::from_millis(500);
const WAKER: Token = Token(usize::MAX);

type Lookup = Arc<Mutex<Option<Result<Vec<SocketAddr>, TransportError>>>>;

/// The request being sent for the queue's head.
struct Attempt {
    request: Vec<u8>,
    deadline: Instant,
}

enum Phase {
    Idle,
    /// A helper thread resolves the host name (`Endpoint::lookup`).
    Resolving(Attempt),
    /// Connecting to `addrs[next - 1]`, or exchanging on the connection.
    Active(Attempt, Vec<SocketAddr>, usize),
}

pub struct Endpoint {
    pub label: String,
    config: Config,
    spool: Option<Spool>,
    pub stats: Stats,
    tls_settings: TlsSettings,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    token: Token,
    queue: VecDeque<Item>,
    bytes: u64,
    conn: Option<Conn>,
    /// The host name lookup in flight. It outlives an attempt that timed out
    /// waiting for it, so that a hanging name service never gets a second
    /// thread from this endpoint.
    lookup: Option<Lookup>,
    phase: Phase,
    failures: u32,
    next_attempt: Instant,
    last_scan: Instant,
    stats_dirty: bool,
    last_stats: Option<Instant>,
}

/// An endpoint of this process (index into the sender's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointId(usize);

struct Sender {
    poll: Poll,
    waker: Arc<Waker>,
    events: Events,
    endpoints: Vec<Endpoint>,
    keys: HashMap<String, usize>,
    /// Raw driver line → TLS settings → endpoint: the fast path at user init.
    by_raw: HashMap<String, HashMap<TlsSettings, usize>>,
}

static SENDER: Lazy<Mutex<Option<Sender>>> = Lazy::new(|| Mutex::new(None));

fn with_sender<R>(f: impl FnOnce(&mut Sender) -> R) -> Result<R, String> {
    let mut guard = SENDER.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let poll = Poll::new().map_err(|e| format!("Cannot create the sender's poll: {e}"))?;
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|e| format!("Cannot create the sender's waker: {e}"))?;
        *guard = Some(Sender {
            poll,
            waker: Arc::new(waker),
            events: Events::with_capacity(64),
            endpoints: Vec::new(),
            keys: HashMap::new(),
            by_raw: HashMap::new(),
        });
    }
    Ok(f(guard.as_mut().expect("just created")))
}

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

/// The poll's file descriptor, for Dovecot's ioloop to watch (-1 if no poll
/// could be created; the error is logged).
pub fn poll_fd() -> i32 {
    use std::os::fd::AsRawFd;
    match with_sender(|s| s.poll.as_raw_fd()) {
        Ok(fd) => fd,
        Err(e) => {
            background(OxPushLogLevel::Error, e);
            -1
        }
    }
}

/// The endpoint for `config` (parsed from the driver line `raw`), created (with
/// its spool and leftovers) on first use. Errors about the spool are returned
/// once, for the caller to log.
pub fn endpoint_for(
    raw: &str,
    config: &Config,
    tls: &TlsSettings,
) -> Result<(EndpointId, Option<String>), String> {
    let known = with_sender(|s| s.by_raw.get(raw).and_then(|t| t.get(tls)).copied())?;
    if let Some(i) = known {
        return Ok((EndpointId(i), None));
    }
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
    with_sender(|s| {
        if let Some(&i) = s.keys.get(&key) {
            s.by_raw
                .entry(raw.to_string())
                .or_default()
                .insert(tls.clone(), i);
            return (EndpointId(i), None);
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
        let i = s.endpoints.len();
        let now = Instant::now();
        let mut ep = Endpoint {
            label: config.url.masked.clone(),
            config: config.clone(),
            spool,
            stats: Stats::default(),
            tls_settings: tls.clone(),
            tls_config: None,
            token: Token(i),
            queue: VecDeque::new(),
            bytes: 0,
            conn: None,
            lookup: None,
            phase: Phase::Idle,
            failures: 0,
            next_attempt: now,
            last_scan: now,
            stats_dirty: true,
            last_stats: None,
        };
        // Leftovers of dead processes: replayed from the next run on.
        ep.adopt_orphans(true);
        s.endpoints.push(ep);
        s.keys.insert(key, i);
        s.by_raw
            .entry(raw.to_string())
            .or_default()
            .insert(tls.clone(), i);
        (EndpointId(i), error)
    })
}

/// Queues a notification: spool record first (so it survives this process),
/// then the in-memory queue, then starts sending. Never blocks on the network.
pub fn submit(id: EndpointId, body: Vec<u8>) -> Result<String, String> {
    with_sender(|s| {
        let Sender {
            poll,
            waker,
            endpoints,
            ..
        } = s;
        let Some(ep) = endpoints.get_mut(id.0) else {
            return Err("BUG: notification for an unknown endpoint".to_string());
        };
        let r = ep.submit(body);
        ep.drive(poll.registry(), waker, Instant::now());
        r
    })?
}

/// Does all pending work: reads what the sockets have, sends, retries, writes
/// counters. Returns the time until the next deadline (None: no timer needed).
pub fn run() -> Option<Duration> {
    with_sender(|s| s.run(Duration::ZERO)).ok().flatten()
}

/// Notifications queued in this process, all endpoints (the one being sent
/// included).
pub fn pending() -> usize {
    with_sender(|s| s.endpoints.iter().map(|e| e.queue.len()).sum()).unwrap_or(0)
}

/// The time until the next deadline, without doing any work.
pub fn next_timeout() -> Option<Duration> {
    with_sender(|s| s.next_timeout(Instant::now()))
        .ok()
        .flatten()
}

impl Sender {
    fn run(&mut self, wait: Duration) -> Option<Duration> {
        // Readiness is only a hint: every endpoint is driven anyway.
        let _ = self.poll.poll(&mut self.events, Some(wait));
        let now = Instant::now();
        for ep in &mut self.endpoints {
            ep.drive(self.poll.registry(), &self.waker, now);
            ep.housekeeping(now);
        }
        self.next_timeout(Instant::now())
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.endpoints
            .iter()
            .filter_map(Endpoint::next_deadline)
            .min()
            .map(|d| d.saturating_duration_since(now))
    }
}

impl Endpoint {
    fn submit(&mut self, body: Vec<u8>) -> Result<String, String> {
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
        self.stats_dirty = true;
        match spool_error {
            Some(e) => Err(e),
            None => Ok(id),
        }
    }

    fn busy(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    fn push(&mut self, items: Vec<Item>) {
        for item in items {
            self.bytes += item.size();
            self.queue.push_back(item);
        }
        let mut dropped = 0;
        // Keep the newest; never drop the head while it is being sent.
        let busy = usize::from(self.busy());
        while self.bytes > self.config.spool_max_size && self.queue.len() > busy + 1 {
            if let Some(old) = self.queue.remove(busy) {
                self.bytes -= old.size();
                self.ack(&old);
                dropped += 1;
            }
        }
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
    }

    fn adopt_orphans(&mut self, own: bool) -> usize {
        let Some(spool) = &self.spool else { return 0 };
        let items = spool.claim_orphans(own);
        let n = items.len();
        if n > 0 {
            self.stats.replayed.fetch_add(n as u64, Ordering::Relaxed);
            self.stats_dirty = true;
            background(
                OxPushLogLevel::Info,
                format!("Replaying {n} spooled notification(s) for {}", self.label),
            );
            self.push(items);
        }
        n
    }

    fn housekeeping(&mut self, now: Instant) {
        if self.stats_dirty
            && self
                .last_stats
                .is_none_or(|t| now.duration_since(t) >= STATS_INTERVAL)
        {
            self.write_stats();
            self.stats_dirty = false;
            self.last_stats = Some(now);
        }
        if self.spool.is_some() && now.duration_since(self.last_scan) >= RESCAN_INTERVAL {
            self.last_scan = now;
            self.adopt_orphans(false);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let work = match &self.phase {
            Phase::Resolving(a) | Phase::Active(a, _, _) => Some(a.deadline),
            Phase::Idle if !self.queue.is_empty() => Some(self.next_attempt),
            Phase::Idle => None,
        };
        let stats = self.stats_dirty.then(|| {
            self.last_stats
                .map_or_else(Instant::now, |t| t + STATS_INTERVAL)
        });
        let scan = self
            .spool
            .as_ref()
            .map(|_| self.last_scan + RESCAN_INTERVAL);
        [work, stats, scan].into_iter().flatten().min()
    }

    fn write_stats(&self) {
        if let Some(spool) = &self.spool {
            spool.write_stats(&self.stats.to_json(self.queue.len(), &self.label));
        }
    }

    /// Marks an item done in the spool (sent or dropped).
    fn ack(&self, item: &Item) {
        if let Some(spool) = &self.spool {
            spool.ack(item);
        }
    }

    fn close(&mut self, registry: &Registry) {
        if let Some(mut c) = self.conn.take() {
            c.deregister(registry);
        }
    }

    /// Moves the queue's head along as far as the sockets allow now.
    fn drive(&mut self, registry: &Registry, waker: &Arc<Waker>, now: Instant) {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Idle) {
                Phase::Idle => {
                    if self.queue.is_empty() || now < self.next_attempt {
                        return;
                    }
                    let Some(item) = self.queue.front() else {
                        return;
                    };
                    let age = Duration::from_millis(now_ms().saturating_sub(item.created_ms));
                    if age > self.config.max_age {
                        let item = self.pop_head();
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
                    let attempt = Attempt {
                        request: http::request_bytes(
                            &self.config.url,
                            &item.body,
                            &headers,
                            SystemTime::now(),
                        ),
                        deadline: now + self.config.timeout,
                    };
                    self.begin(attempt, registry, waker);
                }
                Phase::Resolving(attempt) => {
                    let result = self
                        .lookup
                        .as_ref()
                        .and_then(|l| l.lock().map(|mut r| r.take()).unwrap_or(None));
                    match result {
                        None if now >= attempt.deadline => {
                            self.complete(Err(TransportError::Timeout), now)
                        }
                        None => {
                            self.phase = Phase::Resolving(attempt);
                            return;
                        }
                        Some(r) => {
                            self.lookup = None;
                            match r {
                                Err(e) => self.complete(Err(e), now),
                                Ok(addrs) => self.connect(attempt, addrs, 0, registry, now),
                            }
                        }
                    }
                }
                Phase::Active(attempt, addrs, next) => {
                    let Some(conn) = &mut self.conn else {
                        self.connect(attempt, addrs, next, registry, now);
                        continue;
                    };
                    if now >= attempt.deadline {
                        self.close(registry);
                        self.complete(Err(TransportError::Timeout), now);
                        continue;
                    }
                    match conn.progress() {
                        Progress::Pending => {
                            self.phase = Phase::Active(attempt, addrs, next);
                            return;
                        }
                        Progress::Done(response, keep) => {
                            if !keep {
                                self.close(registry);
                            }
                            self.complete(Ok(response), now);
                        }
                        Progress::NothingReceived(_) => {
                            // A kept-alive connection the server had closed:
                            // again on a fresh one, not counted as an attempt.
                            self.close(registry);
                            self.begin(attempt, registry, waker);
                        }
                        Progress::Failed(e) => {
                            self.close(registry);
                            if matches!(e, TransportError::Connect(_)) && next < addrs.len() {
                                self.connect(attempt, addrs, next, registry, now);
                            } else {
                                self.complete(Err(e), now);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sends `attempt` on the kept-alive connection, or opens one.
    fn begin(&mut self, attempt: Attempt, registry: &Registry, waker: &Arc<Waker>) {
        if let Some(c) = &mut self.conn {
            // An idle connection the server closed is not worth a write.
            if c.idle_ok() && c.start(&attempt.request).is_ok() {
                self.phase = Phase::Active(attempt, Vec::new(), 0);
                return;
            }
            self.close(registry);
        }
        if let Some(addrs) = http::literal_addrs(&self.config.url) {
            self.phase = Phase::Active(attempt, addrs, 0);
            return;
        }
        if self.lookup.is_some() {
            self.phase = Phase::Resolving(attempt);
            return;
        }
        // Name service lookups block: on a short-lived helper thread.
        let lookup: Lookup = Arc::default();
        let (slot, waker, url) = (lookup.clone(), waker.clone(), self.config.url.clone());
        crate::keep_loaded();
        let spawned = thread::Builder::new()
            .name("ox-push-lookup".into())
            .spawn(move || {
                let r = http::resolve(&url);
                if let Ok(mut s) = slot.lock() {
                    *s = Some(r);
                }
                let _ = waker.wake();
            });
        if let Err(e) = spawned {
            if let Ok(mut s) = lookup.lock() {
                *s = Some(Err(TransportError::Lookup(format!(
                    "cannot start a lookup thread: {e}"
                ))));
            }
        }
        self.lookup = Some(lookup);
        self.phase = Phase::Resolving(attempt);
    }

    /// Opens a connection to `addrs[next]` and queues the request on it.
    fn connect(
        &mut self,
        attempt: Attempt,
        addrs: Vec<SocketAddr>,
        next: usize,
        registry: &Registry,
        now: Instant,
    ) {
        let Some(&addr) = addrs.get(next) else {
            self.complete(
                Err(TransportError::Connect("no address left".to_string())),
                now,
            );
            return;
        };
        let tls = match http::tls_for(&self.config.url, &self.tls_settings, &mut self.tls_config) {
            Ok(t) => t,
            Err(e) => return self.complete(Err(e), now),
        };
        match Conn::connect(addr, registry, self.token, tls).and_then(|mut c| {
            c.start(&attempt.request)?;
            Ok(c)
        }) {
            Ok(c) => {
                self.conn = Some(c);
                self.phase = Phase::Active(attempt, addrs, next + 1);
            }
            // The next address at the next step (self.conn is None).
            Err(_) if next + 1 < addrs.len() => {
                self.phase = Phase::Active(attempt, addrs, next + 1);
            }
            Err(e) => self.complete(Err(e), now),
        }
    }

    /// Removes the head (the item just handled) from the queue and the spool.
    fn pop_head(&mut self) -> Item {
        let item = self.queue.pop_front().expect("head");
        self.bytes = self.bytes.saturating_sub(item.size());
        self.ack(&item);
        self.stats_dirty = true;
        item
    }

    /// The head's attempt ended with `result`.
    fn complete(&mut self, result: Result<Response, TransportError>, now: Instant) {
        self.phase = Phase::Idle;
        self.stats_dirty = true;
        match classify(&result) {
            Outcome::Sent => {
                self.failures = 0;
                self.pop_head();
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                if let (Ok(r), true) = (&result, crate::log::background_debug()) {
                    background(
                        OxPushLogLevel::Debug,
                        format!("Notification sent successfully: {} {}", r.status, r.reason),
                    );
                }
            }
            Outcome::Permanent => {
                self.failures = 0;
                self.pop_head();
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
                self.failures = self.failures.saturating_add(1);
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                let delay = retry_after
                    .unwrap_or_else(|| backoff(self.failures))
                    .min(self.config.max_age);
                self.next_attempt = now + delay;
                let level = if self.failures == 1 || self.failures % 10 == 0 {
                    OxPushLogLevel::Warning
                } else {
                    OxPushLogLevel::Debug
                };
                background(
                    level,
                    format!(
                        "Error when sending notification: {} (to {}; attempt {}, \
                         retrying in {} ms; {} queued)",
                        describe(&result),
                        self.label,
                        self.failures,
                        delay.as_millis(),
                        self.queue.len()
                    ),
                );
            }
        }
    }
}

/// The largest `shutdown_timeout` of the endpoints in this process.
pub fn max_shutdown_timeout() -> Option<Duration> {
    let guard = SENDER.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .as_ref()?
        .endpoints
        .iter()
        .map(|e| e.config.shutdown_timeout)
        .max()
}

/// At process exit: drives the queues for up to `timeout`, then stops. What
/// is left stays in the spool for the next process.
pub fn shutdown(timeout: Duration) -> Vec<String> {
    let Some(mut s) = SENDER.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Vec::new();
    };
    let until = Instant::now() + timeout;
    loop {
        let next = s.run(Duration::ZERO);
        if s.endpoints.iter().all(|e| e.queue.is_empty()) {
            break;
        }
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        let wait = next
            .map_or(left, |n| n.min(left))
            .max(Duration::from_millis(1));
        let _ = s.poll.poll(&mut s.events, Some(wait));
    }
    let mut notes = Vec::new();
    for ep in &mut s.endpoints {
        let left = ep.queue.len();
        if left > 0 {
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
        ep.close(s.poll.registry());
        ep.write_stats();
        if let Some(spool) = &ep.spool {
            spool.release();
        }
    }
    notes
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod endpoint_tests;
