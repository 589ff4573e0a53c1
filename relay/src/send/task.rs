//! A sender task: one of `--concurrency` per endpoint. It takes the next item,
//! sends it on its own kept-alive connection (so an endpoint never has more
//! connections than tasks), reports the outcome, and closes the connection
//! after [`IDLE_CLOSE`] unused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::{attempt, Peer};
use crate::outcome::{Outcome, Take};
use crate::queue::State;

/// A sender task closes its kept-alive connection after this long unused.
const IDLE_CLOSE: Duration = Duration::from_secs(60);

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// One sender task of endpoint `ep`: takes items, sends them on its own
/// kept-alive connection, reports the outcome.
pub async fn sender(
    state: Arc<Mutex<State>>,
    mut shutdown: watch::Receiver<bool>,
    ep: usize,
    peer: Arc<Peer>,
    wake: Arc<Notify>,
) {
    let mut conn = None;
    let mut last_used = Instant::now();
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let take = lock(&state).take(ep, Instant::now());
        match take {
            Take::Job(job) => {
                let (outcome, connected) = tokio::select! {
                    r = attempt(&peer, &mut conn, &job) => r,
                    _ = shutdown.changed() => (Outcome::Abandoned, false),
                };
                let stop = matches!(outcome, Outcome::Abandoned);
                {
                    let mut s = lock(&state);
                    if connected {
                        s.connected(ep);
                    }
                    s.complete(ep, job.id, outcome, Instant::now());
                }
                if stop {
                    return;
                }
                last_used = Instant::now();
            }
            Take::Wait(until) => {
                let idle = conn.is_some().then_some(last_used + IDLE_CLOSE);
                let wake_at = match (until, idle) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let sleep = async {
                    match wake_at {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = notified => {}
                    _ = sleep => {}
                    _ = shutdown.changed() => return,
                }
                if conn.is_some() && last_used.elapsed() >= IDLE_CLOSE {
                    conn = None;
                }
            }
        }
    }
}
