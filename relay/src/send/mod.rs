//! Sending to the middleware: one [`Peer`] per endpoint, a fixed number of
//! sender tasks per peer (each owns at most one kept-alive connection, so the
//! pool never holds more connections than tasks), and one [`attempt`] per try.
//!
//! The request is the built-in driver's, byte for byte (see [`http`]); every
//! answer is read with bounds (headers by hyper's buffer limit, the body by
//! `--response-max-size`); an answer over them closes the connection and
//! counts as a failed attempt. Each attempt (connect, request, answer) is
//! bounded by the notification's `timeout_msecs`.

pub mod http;
pub mod task;
mod tls;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ox_push_record::{EndpointUrl, Target};

use crate::outcome::{Job, Outcome};

/// One endpoint as the senders see it.
pub struct Peer {
    /// The URL with the password masked: the only form in logs and counters.
    pub label: String,
    pub url: EndpointUrl,
    pub target: Target,
    /// The largest answer body read.
    pub response_max: usize,
    /// Connections open now.
    pub connections: Arc<AtomicUsize>,
    tls: Mutex<Option<Arc<rustls::ClientConfig>>>,
}

impl Peer {
    pub fn new(url: EndpointUrl, target: Target, response_max: usize) -> Peer {
        Peer {
            label: url.masked.clone(),
            url,
            target,
            response_max,
            connections: Arc::default(),
            tls: Mutex::new(None),
        }
    }

    /// The TLS client configuration, built at the first https connection
    /// (reading the CA files off the runtime's threads). A failure is not
    /// remembered: a fixed CA file is picked up by the next attempt.
    async fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(c) = self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(c);
        }
        let target = self.target.clone();
        let config = tokio::task::spawn_blocking(move || tls::client_config(&target))
            .await
            .map_err(|e| format!("TLS setup failed: {e}"))??;
        *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = Some(config.clone());
        Ok(config)
    }
}

/// The answer to one attempt, classified as the retry rules want it.
fn classify(status: u16, reason: String, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Sent { status, reason },
        408 | 429 | 500..=599 => Outcome::Retry {
            why: format!("{status} {reason}"),
            retry_after,
        },
        300..=399 => Outcome::Refused {
            status,
            reason: format!("{reason} (Redirect refused)"),
        },
        _ => Outcome::Refused { status, reason },
    }
}

/// One try at sending `job` on the sender task's connection `conn` (made
/// first if there is none). Returns the outcome and whether a new connection
/// was made.
pub async fn attempt(peer: &Peer, conn: &mut Option<http::Conn>, job: &Job) -> (Outcome, bool) {
    let deadline = Instant::now() + Duration::from_millis(job.policy.timeout_ms.into());
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut connected = false;
    // Twice at most: a kept-alive connection the server had closed is
    // replaced once, without counting as an attempt.
    for _ in 0..2 {
        if conn.as_ref().is_none_or(http::Conn::is_closed) {
            *conn = None;
            match tokio::time::timeout_at(deadline, http::Conn::open(peer)).await {
                Err(_) => {
                    return (
                        Outcome::NoConnection {
                            why: "connect timed out".into(),
                        },
                        connected,
                    )
                }
                Ok(Err(why)) => return (Outcome::NoConnection { why }, connected),
                Ok(Ok(c)) => {
                    *conn = Some(c);
                    connected = true;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let request = http::request(peer, job);
        match tokio::time::timeout_at(deadline, c.send(request, peer.response_max)).await {
            Err(_) => {
                *conn = None;
                let why = "Request timed out".to_string();
                return (
                    Outcome::Retry {
                        why,
                        retry_after: None,
                    },
                    connected,
                );
            }
            Ok(Ok(answer)) => {
                return (
                    classify(answer.status, answer.reason, answer.retry_after),
                    connected,
                )
            }
            Ok(Err(http::SendError::ClosedBeforeSending)) => {
                *conn = None;
                continue;
            }
            Ok(Err(http::SendError::Failed(why))) => {
                *conn = None;
                return (
                    Outcome::Retry {
                        why,
                        retry_after: None,
                    },
                    connected,
                );
            }
        }
    }
    (
        Outcome::Retry {
            why: "Connection lost before the request was sent".into(),
            retry_after: None,
        },
        connected,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_as_the_retry_rules_say() {
        let c = |s| classify(s, "x".into(), None);
        assert!(matches!(c(204), Outcome::Sent { .. }));
        assert!(matches!(c(500), Outcome::Retry { .. }));
        assert!(matches!(c(503), Outcome::Retry { .. }));
        assert!(matches!(c(429), Outcome::Retry { .. }));
        assert!(matches!(c(408), Outcome::Retry { .. }));
        assert!(matches!(c(400), Outcome::Refused { .. }));
        assert!(matches!(c(302), Outcome::Refused { .. }));
    }
}
