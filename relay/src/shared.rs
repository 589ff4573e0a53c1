//! What every task of the relay shares: the state, the settings, the count of
//! client connections, and the switch that stops the sender tasks.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::queue::State;
use crate::send::task;
use crate::settings::Settings;

/// What every task shares.
pub struct Core {
    pub state: Arc<Mutex<State>>,
    pub settings: Settings,
    pub started: Instant,
    /// Mail process connections open now.
    pub clients: AtomicUsize,
    /// Endpoints whose sender tasks run.
    pub senders_started: Mutex<usize>,
    pub shutdown: watch::Sender<bool>,
}

impl Core {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the sender tasks of endpoints that appeared since the last call.
    pub fn wake_new_endpoints(&self) {
        let mut known = self
            .senders_started
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let new = self.lock().endpoints_after(*known);
        for (ep, peer, wake) in new {
            *known = ep + 1;
            for _ in 0..self.settings.concurrency {
                tokio::spawn(task::sender(
                    self.state.clone(),
                    self.shutdown.subscribe(),
                    ep,
                    peer.clone(),
                    wake.clone(),
                ));
            }
        }
    }

    /// Tells every sender task to stop (their items stay pending).
    pub fn stop_senders(&self) {
        let _ = self.shutdown.send(true);
    }
}
