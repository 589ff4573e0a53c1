//! Recording of what arrived and what was pushed, plus scripted faults for the notify endpoint.
//!
//! This is the integration-testing surface of the admin listener: tests and operators read the
//! recordings to see exactly which notifications came in (with headers, secrets redacted) and
//! which pushes went to which provider with which outcome.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::Value;

/// Bounded, ordered recordings; the oldest entries fall off when `max` is reached.
pub struct Recorder {
    max: usize,
    seq: AtomicU64,
    notifications: Mutex<VecDeque<Value>>,
    pushes: Mutex<VecDeque<Value>>,
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

    fn push_bounded(&self, list: &Mutex<VecDeque<Value>>, v: Value) {
        let mut l = list.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() >= self.max {
            l.pop_front();
        }
        l.push_back(v);
    }

    pub fn record_notification(&self, v: Value) {
        self.push_bounded(&self.notifications, v);
    }

    pub fn record_push(&self, v: Value) {
        self.push_bounded(&self.pushes, v);
    }

    pub fn notifications(&self) -> Vec<Value> {
        self.notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn pushes(&self) -> Vec<Value> {
        self.pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
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
    fn recorder_is_bounded_and_ordered() {
        let r = Recorder::new(2);
        for i in 0..3 {
            r.record_push(serde_json::json!(i));
        }
        assert_eq!(r.pushes(), vec![serde_json::json!(1), serde_json::json!(2)]);
        r.clear();
        assert!(r.pushes().is_empty());
    }
}
