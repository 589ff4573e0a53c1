//! What to do with an attempt's outcome: done, give up, or retry after a
//! backoff (exponential with jitter, or the server's `Retry-After`).

use std::time::Duration;

use crate::http::{Response, TransportError};

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

pub(crate) enum Outcome {
    Sent,
    Permanent,
    Retry(Option<Duration>),
}

pub(crate) fn classify(r: &Result<Response, TransportError>) -> Outcome {
    match r {
        Ok(resp) if (200..300).contains(&resp.status) => Outcome::Sent,
        Ok(resp) if resp.status == 408 || resp.status == 429 || resp.status >= 500 => {
            Outcome::Retry(resp.retry_after)
        }
        Ok(_) => Outcome::Permanent,
        Err(_) => Outcome::Retry(None),
    }
}

pub(crate) fn describe(r: &Result<Response, TransportError>) -> String {
    match r {
        Ok(resp) => format!("{} {}", resp.status, resp.reason),
        Err(e) => e.to_string(),
    }
}

/// Exponential backoff with ±25 % jitter: 100 ms, 200 ms, ... capped at 5 s.
pub fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = exp.min(BACKOFF_CAP);
    let jitter = 0.75 + fastrand::f64() * 0.5;
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(125));
        assert!(backoff(3) >= Duration::from_millis(300));
        assert!(backoff(30) <= Duration::from_millis(6250));
    }

    #[test]
    fn classification() {
        let r = |s| {
            Ok(Response {
                status: s,
                reason: String::new(),
                retry_after: None,
            })
        };
        assert!(matches!(classify(&r(204)), Outcome::Sent));
        assert!(matches!(classify(&r(500)), Outcome::Retry(_)));
        assert!(matches!(classify(&r(429)), Outcome::Retry(_)));
        assert!(matches!(classify(&r(408)), Outcome::Retry(_)));
        assert!(matches!(classify(&r(400)), Outcome::Permanent));
        assert!(matches!(classify(&r(302)), Outcome::Permanent));
        assert!(matches!(
            classify(&Err(TransportError::Timeout)),
            Outcome::Retry(None)
        ));
    }
}
