//! Scripted faults for the notify endpoint (`POST /mock/faults`): the next `count` requests
//! from an authenticated sender wait `delay_ms` (bounded) and answer `status`.

use std::sync::Mutex;

use serde::Deserialize;

/// Largest accepted `delay_ms` of a fault.
pub const MAX_FAULT_DELAY_MS: u64 = 30_000;

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
        if spec.delay_ms.is_some_and(|d| d > MAX_FAULT_DELAY_MS) {
            return Err(format!(
                "delay_ms must be at most {MAX_FAULT_DELAY_MS} (a delayed request holds a connection)"
            ));
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
        assert!(f
            .set(FaultSpec {
                status: None,
                count: None,
                delay_ms: Some(MAX_FAULT_DELAY_MS + 1)
            })
            .is_err());
    }
}
