//! Recording of what arrived and what was pushed (scripted faults for the notify endpoint are
//! in [`crate::faults`]).
//!
//! This is the integration-testing surface of the admin listener: tests and operators read the
//! recordings to see exactly which notifications came in (with headers, secrets redacted) and
//! which pushes went to which provider with which outcome.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::event::MailEvent;

/// One notify request as recorded. Kept compact (raw body, typed event) and rendered as JSON
/// only when `/mock/notifications` is read, so recording costs little on the hot path.
#[derive(Debug, Clone)]
pub struct NotificationRecord {
    pub seq: u64,
    pub received_ms: i64,
    /// Header lines `name: value\n`, secrets already redacted, in one allocation. Copied, not
    /// shared: a shared `HeaderMap` or body would pin hyper's whole read buffer for as long as
    /// it is recorded.
    pub headers: String,
    pub body: Option<Box<[u8]>>,
    pub status: u16,
    pub result: &'static str,
    pub note: Option<&'static str>,
    pub event: Option<Arc<MailEvent>>,
}

impl NotificationRecord {
    /// A record without headers: what an unauthenticated request gets (its headers are the
    /// sender's to choose and may be huge, so they are never kept).
    pub fn new(seq: u64, received_ms: i64) -> NotificationRecord {
        NotificationRecord {
            seq,
            received_ms,
            headers: String::new(),
            body: None,
            status: 0,
            result: "",
            note: None,
            event: None,
        }
    }

    /// Records the headers of an authenticated request, secrets redacted.
    pub fn set_headers(&mut self, headers: &HeaderMap) {
        let mut out = String::with_capacity(256);
        for (k, v) in headers {
            out.push_str(k.as_str());
            out.push_str(": ");
            if k == header::AUTHORIZATION || k == header::COOKIE {
                out.push_str("<redacted>");
            } else {
                out.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            out.push('\n');
        }
        self.headers = out;
    }

    /// The recorded headers as (name, value) pairs.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.lines().filter_map(|l| l.split_once(": "))
    }

    /// Approximate heap bytes held by this record (for `mock.recordings.max_bytes`).
    pub fn approx_bytes(&self) -> usize {
        let h = self.headers.len();
        let event = self.event.as_ref().map_or(0, |e| {
            256 + e.folder.len()
                + e.from.as_ref().map_or(0, String::len) * 2
                + e.subject.as_ref().map_or(0, String::len)
        });
        160 + h + self.body.as_ref().map_or(0, |b| b.len()) + event
    }

    /// Records a copy of the body.
    pub fn set_body(&mut self, b: &[u8]) {
        self.body = Some(b.into());
    }

    /// The JSON shape served by `GET /mock/notifications` (secrets were redacted on recording).
    pub fn to_json(&self) -> Value {
        let mut h = Map::new();
        for (k, v) in self.header_pairs() {
            h.insert(k.to_string(), Value::String(v.to_string()));
        }
        let body = self.body.as_ref().map(|b| {
            serde_json::from_slice::<Value>(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
        });
        let mut v = json!({
            "seq": self.seq,
            "received_ms": self.received_ms,
            "method": "PUT",
            "path": "/preliminary/http-notify/v1/notify",
            "headers": h,
            "body": body,
            "status": self.status,
            "result": self.result,
        });
        if let Some(n) = self.note {
            v["note"] = json!(n);
        }
        if let Some(e) = &self.event {
            v["event"] = e.ox_properties();
        }
        v
    }
}

/// One provider answer in a push's history.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub status: Option<u16>,
    pub reason: String,
}

/// One push as recorded (rendered by `GET /mock/pushes`).
#[derive(Debug, Clone, Serialize)]
pub struct PushRecord {
    pub seq: u64,
    pub notification_seq: u64,
    pub context_id: i32,
    pub user_id: i32,
    pub client: Arc<str>,
    pub transport: Arc<str>,
    pub token: String,
    pub provider: &'static str,
    pub outcome: &'static str,
    pub finished_ms: i64,
    pub status: Option<u16>,
    pub reason: String,
    pub url: String,
    pub request: crate::push::SentRequest,
    pub attempts: u32,
    pub history: Vec<AttemptRecord>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_token: Option<String>,
}

impl PushRecord {
    /// Approximate heap bytes held by this record (the request body is at most 4 KiB).
    pub fn approx_bytes(&self) -> usize {
        let request = if self.request.is_none() { 0 } else { 1024 };
        256 + self.token.len()
            + self.reason.len()
            + self.url.len()
            + request
            + self.history.len() * 96
    }
}

/// One bounded list: entries and the approximate bytes they hold.
struct Bounded<T> {
    list: VecDeque<T>,
    bytes: usize,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            list: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// Bounded, ordered recordings; the oldest entries fall off when `max` entries or `max_bytes`
/// (approximate heap bytes, per list) are reached.
pub struct Recorder {
    pub max: usize,
    pub max_bytes: usize,
    /// Set on nodes sharing a store: records go there instead of memory.
    shared: std::sync::OnceLock<Arc<crate::recording_shared::SharedRecordings>>,
    seq: AtomicU64,
    notifications: Mutex<Bounded<NotificationRecord>>,
    pushes: Mutex<Bounded<PushRecord>>,
}

fn push_bounded<T>(
    max: usize,
    max_bytes: usize,
    list: &Mutex<Bounded<T>>,
    v: T,
    size: impl Fn(&T) -> usize,
) {
    let mut l = list.lock().unwrap_or_else(|p| p.into_inner());
    l.bytes += size(&v);
    l.list.push_back(v);
    while l.list.len() > max || (l.bytes > max_bytes && l.list.len() > 1) {
        if let Some(old) = l.list.pop_front() {
            l.bytes = l.bytes.saturating_sub(size(&old));
        }
    }
}

impl Recorder {
    pub fn new(max: usize) -> Recorder {
        Recorder::with_bytes(max, usize::MAX)
    }

    /// At most `max` entries and about `max_bytes` bytes in each list.
    pub fn with_bytes(max: usize, max_bytes: usize) -> Recorder {
        Recorder {
            max,
            max_bytes,
            shared: std::sync::OnceLock::new(),
            seq: AtomicU64::new(0),
            notifications: Mutex::default(),
            pushes: Mutex::default(),
        }
    }

    /// A fresh sequence number shared by notifications and pushes.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends every further record to the shared store (nodes of a cluster).
    pub fn share(&self, s: Arc<crate::recording_shared::SharedRecordings>) {
        let _ = self.shared.set(s);
    }

    /// The shared recordings, when this node writes to the store.
    pub fn shared(&self) -> Option<&Arc<crate::recording_shared::SharedRecordings>> {
        self.shared.get()
    }

    pub fn record_notification(&self, v: NotificationRecord) {
        if let Some(s) = self.shared.get() {
            return s.send(crate::recording_shared::Rec::Notification(v));
        }
        let (max, bytes) = (self.max, self.max_bytes);
        push_bounded(max, bytes, &self.notifications, v, |r| r.approx_bytes());
    }

    pub fn record_push(&self, v: PushRecord) {
        if let Some(s) = self.shared.get() {
            return s.send(crate::recording_shared::Rec::Push(Box::new(v)));
        }
        let (max, bytes) = (self.max, self.max_bytes);
        push_bounded(max, bytes, &self.pushes, v, PushRecord::approx_bytes);
    }

    pub fn notifications(&self) -> Vec<Value> {
        let l: Vec<NotificationRecord> = self
            .notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .iter()
            .cloned()
            .collect();
        l.iter().map(NotificationRecord::to_json).collect()
    }

    pub fn pushes(&self) -> Vec<Value> {
        let l: Vec<PushRecord> = self
            .pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .iter()
            .cloned()
            .collect();
        l.iter()
            .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
            .collect()
    }

    pub fn clear(&self) {
        *self.notifications.lock().unwrap_or_else(|p| p.into_inner()) = Bounded::default();
        *self.pushes.lock().unwrap_or_else(|p| p.into_inner()) = Bounded::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_is_bounded_ordered_and_redacts() {
        let r = Recorder::new(2);
        for i in 0..3 {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, "Basic c2VjcmV0".parse().unwrap());
            let mut n = NotificationRecord::new(i, 0);
            n.set_headers(&h);
            n.set_body(b"{not json");
            r.record_notification(n);
        }
        let got = r.notifications();
        assert_eq!(
            got.iter()
                .map(|v| v["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(got[0]["headers"]["authorization"], "<redacted>");
        assert_eq!(got[0]["body"], "{not json");
        r.clear();
        assert!(r.notifications().is_empty());
    }

    #[test]
    fn recorder_is_bounded_by_bytes() {
        let r = Recorder::with_bytes(1000, 100_000);
        for i in 0..100 {
            let mut n = NotificationRecord::new(i, 0);
            n.set_body(&[b'x'; 10_000]);
            r.record_notification(n);
        }
        let got = r.notifications();
        assert!(got.len() < 11 && got.len() >= 9, "{}", got.len());
        assert_eq!(got.last().unwrap()["seq"], 99);
    }
}
