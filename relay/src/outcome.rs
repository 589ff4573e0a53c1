//! The vocabulary between the scheduler ([`crate::queue`]) and the senders
//! ([`crate::send`]): the job a sender task takes, how its attempt ended, and
//! how long a failed one waits.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ox_push_record::Policy;

/// A notification's id (the record's `Item::id`).
pub type Id = [u8; 16];

/// The work a sender task gets.
pub enum Take {
    Job(Job),
    /// Nothing to do before this time (None: until woken).
    Wait(Option<Instant>),
}

pub struct Job {
    pub id: Id,
    pub body: Bytes,
    pub policy: Policy,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    Sent {
        status: u16,
        reason: String,
    },
    /// 3xx, or 4xx other than 408 and 429: the middleware refused it for good.
    Refused {
        status: u16,
        reason: String,
    },
    /// Worth another try after a delay (its own, or the server's Retry-After).
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// No connection could be made (lookup, connect, TLS): pause the endpoint.
    NoConnection {
        why: String,
    },
    /// The task stopped (shutdown): the item stays pending.
    Abandoned,
}

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Exponential backoff with ±25 % jitter: 100 ms, 200 ms, ... capped at 5 s.
pub fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = exp.min(BACKOFF_CAP);
    // A random number without a crate: the standard library's hasher keys
    // are random per process, and the counter makes each call differ.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(CALLS.fetch_add(1, Ordering::Relaxed));
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(0.75 + unit * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jitters() {
        assert!(backoff(1) <= Duration::from_millis(125));
        assert!(backoff(3) >= Duration::from_millis(300));
        assert!(backoff(30) <= Duration::from_millis(6250));
        let all: std::collections::HashSet<_> = (0..20).map(|_| backoff(5)).collect();
        assert!(all.len() > 1, "jitter");
    }
}
