//! Login throttling per client address and per login name, with exponential backoff.
//!
//! An IMAP-backed login attempt opens a Dovecot connection, and Dovecot then penalises the
//! middleware's address for everyone; a guessing client must be slowed down here first. After
//! `free` failures a key (address or login) is blocked for `base`, doubling with each further
//! failure up to `max`; a success clears it. Entries are pruned so the table stays bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Settings (`mock.login.throttle.*`).
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            free: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

struct Entry {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

/// The throttle table.
pub struct Throttle {
    cfg: ThrottleSettings,
    map: Mutex<HashMap<String, Entry>>,
}

const MAX_ENTRIES: usize = 100_000;

impl Throttle {
    pub fn new(cfg: ThrottleSettings) -> Throttle {
        Throttle {
            cfg,
            map: Mutex::default(),
        }
    }

    /// `Err(wait)` when one of `keys` is blocked now.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys
            .iter()
            .filter_map(|k| g.get(k))
            .map(|e| e.blocked_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts a failed attempt against every key.
    pub fn failure(&self, keys: &[String]) {
        let now = Instant::now();
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_ENTRIES {
            let max = self.cfg.max;
            g.retain(|_, e| now.duration_since(e.last) < max);
        }
        for k in keys {
            let e = g.entry(k.clone()).or_insert(Entry {
                failures: 0,
                blocked_until: now,
                last: now,
            });
            // A key quiet for longer than the longest block starts over.
            if now.duration_since(e.last) > self.cfg.max {
                e.failures = 0;
            }
            e.failures += 1;
            e.last = now;
            if e.failures > self.cfg.free {
                let n = (e.failures - self.cfg.free - 1).min(20);
                let block = self.cfg.base.saturating_mul(1 << n).min(self.cfg.max);
                e.blocked_until = now + block;
            }
        }
    }

    /// A successful login clears the login name's record (not the address's: one good
    /// password does not excuse guessing others from the same place).
    pub fn success(&self, login_key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(login_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_free_attempts_with_growing_backoff() {
        let t = Throttle::new(ThrottleSettings {
            free: 2,
            base: Duration::from_secs(10),
            max: Duration::from_secs(25),
        });
        let k = vec!["user:a".to_string()];
        t.failure(&k);
        t.failure(&k);
        assert!(t.check(&k).is_ok());
        t.failure(&k);
        let w1 = t.check(&k).unwrap_err();
        assert!(w1 > Duration::from_secs(9) && w1 <= Duration::from_secs(10));
        t.failure(&k);
        let w2 = t.check(&k).unwrap_err();
        assert!(w2 > Duration::from_secs(19), "{w2:?}");
        t.failure(&k);
        assert!(
            t.check(&k).unwrap_err() <= Duration::from_secs(25),
            "capped"
        );
        t.success("user:a");
        assert!(t.check(&k).is_ok());
    }
}
