//! Recording of what arrived and what was pushed, plus scripted faults for the notify endpoint.
//!
//! This is the integration-testing surface of the admin listener: tests and operators read the
//! recordings to see exactly which notifications came in (with headers, secrets redacted) and
//! which pushes went to which provider with which outcome.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::event::MailEvent;

/// One notify request as recorded. Kept compact (raw body, typed event) and rendered as JSON
/// only when `/mock/notifications` is read, so recording costs little on the hot path.
#[derive(Debug, Clone)]
pub struct NotificationRecord {
    pub seq: u64,
    pub received_ms: i64,
    /// Header names and values, secrets already redacted. Copied, not shared: a shared
    /// `HeaderMap` or body would pin hyper's whole read buffer for as long as it is recorded.
    pub headers: Vec<(String, String)>,
    pub body: Option<Box<[u8]>>,
    pub status: u16,
    pub result: &'static str,
    pub note: Option<&'static str>,
    pub event: Option<Arc<MailEvent>>,
}

impl NotificationRecord {
    pub fn new(seq: u64, received_ms: i64, headers: &HeaderMap) -> NotificationRecord {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let v = if k == header::AUTHORIZATION || k == header::COOKIE {
                    "<redacted>".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (k.as_str().to_string(), v)
            })
            .collect();
        NotificationRecord {
            seq,
            received_ms,
            headers,
            body: None,
            status: 0,
            result: "",
            note: None,
            event: None,
        }
    }

    /// Records a copy of the body.
    pub fn set_body(&mut self, b: &[u8]) {
        self.body = Some(b.into());
    }

    /// The JSON shape served by `GET /mock/notifications` (secrets were redacted on recording).
    pub fn to_json(&self) -> Value {
        let mut h = Map::new();
        for (k, v) in &self.headers {
            h.insert(k.clone(), Value::String(v.clone()));
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
    pub request: Value,
    pub attempts: u32,
    pub history: Vec<Value>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_token: Option<String>,
}

/// Bounded, ordered recordings; the oldest entries fall off when `max` is reached.
pub struct Recorder {
    max: usize,
    seq: AtomicU64,
    notifications: Mutex<VecDeque<NotificationRecord>>,
    pushes: Mutex<VecDeque<PushRecord>>,
}

fn push_bounded<T>(max: usize, list: &Mutex<VecDeque<T>>, v: T) {
    let mut l = list.lock().unwrap_or_else(|p| p.into_inner());
    if l.len() >= max {
        l.pop_front();
    }
    l.push_back(v);
}

impl Recorder {
    pub fn new(max: usize) -> Recorder {
        Recorder {
            max,
            seq: AtomicU64::new(0),
            notifications: Mutex::new(VecDeque::new()),
            pushes: Mutex::new(VecDeque::new()),
        }
    }

    /// A fresh sequence number shared by notifications and pushes.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn record_notification(&self, v: NotificationRecord) {
        push_bounded(self.max, &self.notifications, v);
    }

    pub fn record_push(&self, v: PushRecord) {
        push_bounded(self.max, &self.pushes, v);
    }

    pub fn notifications(&self) -> Vec<Value> {
        let l: Vec<NotificationRecord> = self
            .notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
            .iter()
            .cloned()
            .collect();
        l.iter()
            .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
            .collect()
    }

    pub fn clear(&self) {
        self.notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Body of `POST /mock/faults`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub status: Option<u16>,
    pub count: Option<u32>,
    pub delay_ms: Option<u64>,
}

/// What the notify handler must do for the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultAction {
    pub status: Option<u16>,
    pub delay_ms: u64,
}

/// The pending fault script.
#[derive(Default)]
pub struct Faults {
    pending: Mutex<Option<(FaultSpec, u32)>>,
}

impl Faults {
    /// Installs a script: the next `count` (default 1) notify requests get `status` (if any)
    /// after `delay_ms` (if any). Rejects a status outside 100..=599.
    pub fn set(&self, spec: FaultSpec) -> Result<(), String> {
        if let Some(s) = spec.status {
            if !(100..=599).contains(&s) {
                return Err(format!("status {s} is not an HTTP status code (100-599)"));
            }
        }
        let count = spec.count.unwrap_or(1);
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) =
            (count > 0).then_some((spec, count));
        Ok(())
    }

    /// Takes one fault for the current request, if any is pending.
    pub fn take(&self) -> Option<FaultAction> {
        let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (spec, left) = g.as_mut()?;
        let action = FaultAction {
            status: spec.status,
            delay_ms: spec.delay_ms.unwrap_or(0),
        };
        *left -= 1;
        if *left == 0 {
            *g = None;
        }
        Some(action)
    }

    pub fn clear(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down_and_default_to_one() {
        let f = Faults::default();
        f.set(FaultSpec {
            status: Some(503),
            count: Some(2),
            delay_ms: None,
        })
        .unwrap();
        assert_eq!(
            f.take(),
            Some(FaultAction {
                status: Some(503),
                delay_ms: 0
            })
        );
        assert!(f.take().is_some());
        assert!(f.take().is_none());
        f.set(FaultSpec {
            status: None,
            count: None,
            delay_ms: Some(5),
        })
        .unwrap();
        assert_eq!(
            f.take(),
            Some(FaultAction {
                status: None,
                delay_ms: 5
            })
        );
        assert!(f.take().is_none());
        assert!(f
            .set(FaultSpec {
                status: Some(42),
                count: None,
                delay_ms: None
            })
            .is_err());
    }

    #[test]
    fn recorder_is_bounded_ordered_and_redacts() {
        let r = Recorder::new(2);
        for i in 0..3 {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, "Basic c2VjcmV0".parse().unwrap());
            let mut n = NotificationRecord::new(i, 0, &h);
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
}
