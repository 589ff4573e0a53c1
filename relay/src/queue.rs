//! What the relay holds: every pending notification, one queue per endpoint,
//! the counters, and the spool they are journaled in. One lock guards it all;
//! nothing under it waits for the network.
//!
//! Scheduling: each endpoint has a FIFO of items ready to send and a heap of
//! items waiting for their retry time. An answer that asks for a retry (5xx,
//! 408, 429, a timeout, a connection lost after the request) delays only that
//! item, by its own backoff or `Retry-After`: the others are not held back. A
//! connection that cannot be made at all pauses the endpoint (every item would
//! fail the same way) and puts the item back at the front, keeping the order.
//! Items older than their `max_age` are dropped when their turn comes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ox_push_record::frame::AckStatus;
use ox_push_record::{EndpointUrl, Item, Target};
use tokio::sync::Notify;

use crate::counters::{Counters, EndpointCounters};
use crate::log;
use crate::outcome::{backoff, Id, Job, Outcome, Take};
use crate::send::Peer;
use crate::spool::{Replayed, Spool};

/// How many ids of sent notifications are remembered to drop repeats.
const RECENT_IDS: usize = 100_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Entry {
    item: Item,
    endpoint: usize,
    segment: u64,
    serial: u64,
    failures: u32,
}

/// One endpoint (a distinct URL with credentials and TLS settings).
pub struct Endpoint {
    pub peer: Arc<Peer>,
    ready: VecDeque<Id>,
    delayed: BinaryHeap<Reverse<(Instant, u64, Id)>>,
    paused_until: Option<Instant>,
    connect_failures: u32,
    pub wake: Arc<Notify>,
    pub counters: EndpointCounters,
    pub in_flight: usize,
    pub depth: usize,
}

/// Ids of recently finished notifications, oldest forgotten first.
#[derive(Default)]
struct Recent {
    set: HashSet<Id>,
    order: VecDeque<Id>,
}

impl Recent {
    fn insert(&mut self, id: Id) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > RECENT_IDS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

pub struct State {
    spool: Spool,
    items: HashMap<Id, Entry>,
    /// Arrival order, for dropping the oldest when the spool is full.
    order: BTreeMap<u64, Id>,
    serial: u64,
    recent: Recent,
    pub endpoints: Vec<Endpoint>,
    index: HashMap<Target, usize>,
    bytes: u64,
    max_bytes: u64,
    pub counters: Counters,
    /// Settings every endpoint's sender uses.
    pub response_max: usize,
}

impl State {
    pub fn new(spool: Spool, replayed: Replayed, max_bytes: u64, response_max: usize) -> State {
        let mut s = State {
            spool,
            items: HashMap::new(),
            order: BTreeMap::new(),
            serial: 0,
            recent: Recent::default(),
            endpoints: Vec::new(),
            index: HashMap::new(),
            bytes: 0,
            max_bytes,
            counters: Counters::default(),
            response_max,
        };
        for id in replayed.done {
            s.recent.insert(id);
        }
        let n = replayed.items.len();
        for (item, segment) in replayed.items {
            match EndpointUrl::parse(&item.target.url) {
                Ok(url) => {
                    let ep = s.endpoint_for(&item.target, url);
                    s.insert(item, ep, segment);
                }
                Err(e) => {
                    log::error(format!("journal item with an invalid URL dropped ({e})"));
                    s.spool.done(&item.id, segment);
                }
            }
        }
        if n > 0 {
            s.counters.replayed += n as u64;
            log::info(format!(
                "Replaying {n} notification(s) from the spool {}",
                s.spool.path().display()
            ));
        }
        s
    }

    fn endpoint_for(&mut self, target: &Target, url: EndpointUrl) -> usize {
        if let Some(&i) = self.index.get(target) {
            return i;
        }
        let i = self.endpoints.len();
        self.endpoints.push(Endpoint {
            peer: Arc::new(Peer::new(url, target.clone(), self.response_max)),
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            paused_until: None,
            connect_failures: 0,
            wake: Arc::new(Notify::new()),
            counters: EndpointCounters::default(),
            in_flight: 0,
            depth: 0,
        });
        self.index.insert(target.clone(), i);
        i
    }

    /// Endpoints created since `known` (their sender tasks must be started).
    pub fn endpoints_after(&self, known: usize) -> Vec<(usize, Arc<Peer>, Arc<Notify>)> {
        self.endpoints
            .iter()
            .enumerate()
            .skip(known)
            .map(|(i, e)| (i, e.peer.clone(), e.wake.clone()))
            .collect()
    }

    fn insert(&mut self, item: Item, endpoint: usize, segment: u64) {
        self.serial += 1;
        let id = item.id;
        self.bytes += item.body.len() as u64;
        self.order.insert(self.serial, id);
        let ep = &mut self.endpoints[endpoint];
        ep.ready.push_back(id);
        ep.depth += 1;
        self.items.insert(
            id,
            Entry {
                item,
                endpoint,
                segment,
                serial: self.serial,
                failures: 0,
            },
        );
    }

    /// Takes notifications from a client: journals them and queues them.
    /// Returns the acknowledgement for each, in order.
    pub fn accept(&mut self, batch: Vec<(u64, Item)>) -> Vec<(u64, AckStatus)> {
        let mut acks = Vec::with_capacity(batch.len());
        let mut woken = HashSet::new();
        for (seq, item) in batch {
            if self.items.contains_key(&item.id) || self.recent.set.contains(&item.id) {
                self.counters.duplicates += 1;
                acks.push((seq, AckStatus::Duplicate));
                continue;
            }
            let url = match EndpointUrl::parse(&item.target.url) {
                Ok(u) => u,
                Err(e) => {
                    self.counters.records_refused += 1;
                    acks.push((
                        seq,
                        AckStatus::Refused(format!("invalid endpoint URL: {e}")),
                    ));
                    continue;
                }
            };
            let ep = self.endpoint_for(&item.target, url);
            let segment = self.spool.add(&item);
            self.endpoints[ep].counters.queued += 1;
            self.insert(item, ep, segment);
            woken.insert(ep);
            acks.push((seq, AckStatus::Stored));
        }
        self.enforce_size();
        if let Err(e) = self.spool.flush() {
            self.counters.journal_errors += 1;
            log::error(format!(
                "{e}: {} notification(s) are kept in memory only",
                woken.len()
            ));
        }
        for ep in woken {
            self.endpoints[ep].wake.notify_waiters();
            self.endpoints[ep].wake.notify_one();
        }
        acks
    }

    /// Drops the oldest notifications while the spool holds more than its
    /// bound.
    fn enforce_size(&mut self) {
        let mut dropped: HashMap<usize, u64> = HashMap::new();
        while self.bytes > self.max_bytes {
            let Some((_, id)) = self.order.first_key_value().map(|(k, v)| (*k, *v)) else {
                break;
            };
            let Some(ep) = self.items.get(&id).map(|e| e.endpoint) else {
                break;
            };
            self.finish(&id);
            self.endpoints[ep].counters.dropped_size += 1;
            *dropped.entry(ep).or_default() += 1;
        }
        for (ep, n) in dropped {
            log::warning(format!(
                "Dropped the {n} oldest notification(s) for {}: the spool holds at most {} bytes \
                 (--spool-max-size)",
                self.endpoints[ep].peer.label, self.max_bytes
            ));
        }
    }

    /// Removes an item for good (journaled as done).
    fn finish(&mut self, id: &Id) -> Option<Entry> {
        let e = self.items.remove(id)?;
        self.order.remove(&e.serial);
        self.bytes -= e.item.body.len() as u64;
        self.spool.done(id, e.segment);
        self.recent.insert(*id);
        self.endpoints[e.endpoint].depth -= 1;
        Some(e)
    }

    /// The next item for a sender of endpoint `ep`, or how long to wait.
    pub fn take(&mut self, ep: usize, now: Instant) -> Take {
        let now_ms = now_ms();
        let e = &mut self.endpoints[ep];
        if let Some(t) = e.paused_until.filter(|t| *t > now) {
            return Take::Wait(Some(t));
        }
        while e.delayed.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            if let Some(Reverse((_, _, id))) = e.delayed.pop() {
                e.ready.push_back(id);
            }
        }
        loop {
            let e = &mut self.endpoints[ep];
            let Some(id) = e.ready.pop_front() else {
                let next = e.delayed.peek().map(|Reverse((t, _, _))| *t);
                return Take::Wait(next);
            };
            let Some(entry) = self.items.get(&id) else {
                continue; // dropped meanwhile
            };
            let age_ms = now_ms.saturating_sub(entry.item.created_ms);
            let max_age = entry.item.policy.max_age_secs;
            if age_ms > u64::from(max_age) * 1000 {
                let item_id = entry.item.id_string();
                self.finish(&id);
                let e = &mut self.endpoints[ep];
                e.counters.dropped_age += 1;
                log::warning(format!(
                    "push-notification-ox: Dropped notification {item_id} for {}: older than max_age \
                     ({max_age}s)",
                    e.peer.label
                ));
                continue;
            }
            self.endpoints[ep].in_flight += 1;
            return Take::Job(Job {
                id,
                body: Bytes::copy_from_slice(&entry.item.body),
                policy: entry.item.policy,
            });
        }
    }

    /// A connection to the endpoint was made: its pause is over.
    pub fn connected(&mut self, ep: usize) {
        let e = &mut self.endpoints[ep];
        e.connect_failures = 0;
        e.paused_until = None;
    }

    /// Records how an attempt ended.
    pub fn complete(&mut self, ep: usize, id: Id, outcome: Outcome, now: Instant) {
        self.endpoints[ep].in_flight -= 1;
        let label = self.endpoints[ep].peer.label.clone();
        match outcome {
            Outcome::Sent { status, reason } => {
                if self.finish(&id).is_some() {
                    self.endpoints[ep].counters.sent += 1;
                }
                log::debug(format!(
                    "push-notification-ox: Notification sent successfully: {status} {reason} ({label})"
                ));
            }
            Outcome::Refused { status, reason } => {
                let shown = self.items.get(&id).map(|e| e.item.id_string());
                if self.finish(&id).is_some() {
                    self.endpoints[ep].counters.refused += 1;
                }
                log::error(format!(
                    "push-notification-ox: Error when sending notification {}: {status} {reason} (to \
                     {label}; not \
                     retried: the middleware refused it)",
                    shown.unwrap_or_default()
                ));
            }
            Outcome::Retry { why, retry_after } => {
                let Some(entry) = self.items.get_mut(&id) else {
                    return;
                };
                entry.failures = entry.failures.saturating_add(1);
                let failures = entry.failures;
                let delay = retry_after.unwrap_or_else(|| backoff(failures));
                let serial = entry.serial;
                let shown = entry.item.id_string();
                let e = &mut self.endpoints[ep];
                e.counters.retried += 1;
                e.delayed.push(Reverse((now + delay, serial, id)));
                let line = format!(
                    "push-notification-ox: Error when sending notification {shown}: {why} (to {label}; \
                     attempt \
                     {failures}, retrying in {} ms)",
                    delay.as_millis()
                );
                if failures == 1 || failures % 10 == 0 {
                    log::warning(line);
                } else {
                    log::debug(line);
                }
            }
            Outcome::NoConnection { why } => {
                let e = &mut self.endpoints[ep];
                e.connect_failures = e.connect_failures.saturating_add(1);
                let delay = backoff(e.connect_failures);
                e.paused_until = Some(now + delay);
                e.counters.retried += 1;
                if self.items.contains_key(&id) {
                    e.ready.push_front(id);
                }
                let (failures, depth) = (e.connect_failures, e.depth);
                let line = format!(
                    "push-notification-ox: Error when sending notification: {why} (to {label}; retrying in \
                     {} ms; \
                     {depth} queued)",
                    delay.as_millis()
                );
                if failures == 1 || failures % 10 == 0 {
                    log::warning(line);
                } else {
                    log::debug(line);
                }
            }
            Outcome::Abandoned => {
                if self.items.contains_key(&id) {
                    self.endpoints[ep].ready.push_front(id);
                }
            }
        }
        self.maintain();
    }

    /// Writes the journal records of finished attempts and moves items out of
    /// old segments when those pile up.
    fn maintain(&mut self) {
        let moves = self.spool.compact_candidates();
        for (id, old) in moves {
            if let Some(entry) = self.items.get_mut(&id) {
                entry.segment = self.spool.add(&entry.item);
            }
            self.spool.moved(&id, old);
        }
        if let Err(e) = self.spool.flush() {
            self.counters.journal_errors += 1;
            log::error(e);
        }
    }

    /// Writes what is buffered (at shutdown).
    pub fn flush(&mut self) {
        self.maintain();
    }

    pub fn pending(&self) -> usize {
        self.items.len()
    }

    pub fn spool_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn segments(&self) -> usize {
        self.spool.segments()
    }

    pub fn spool_path(&self) -> String {
        self.spool.path().display().to_string()
    }
}

#[cfg(test)]
mod tests;
