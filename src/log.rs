//! Log lines from Rust to Dovecot's log.
//!
//! Dovecot's logging is not thread-safe (it formats on the data stack), so only
//! the ioloop thread may call it. Code running inside a shim call logs through a
//! [`Sink`] that calls straight back into the shim. The sender, which has no
//! user at hand, pushes its lines into a process-wide queue; the sender only
//! runs inside shim calls (submit, its io and timeout callbacks, the shutdown),
//! and the shim drains the queue at the end of each of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use once_cell::sync::Lazy;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OxPushLogLevel {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
}

/// Where a log line goes.
pub trait Sink {
    fn log(&self, level: OxPushLogLevel, msg: &str);
    fn debug_enabled(&self) -> bool;
}

/// Collects lines (tests, and the queue's own sink).
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<(OxPushLogLevel, String)>>, pub bool);

impl Sink for Collect {
    fn log(&self, level: OxPushLogLevel, msg: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((level, msg.to_string()));
        }
    }
    fn debug_enabled(&self) -> bool {
        self.1
    }
}

/// At most this many queued lines; beyond it, lines are counted and summarised.
const MAX_QUEUED: usize = 10_000;

struct Queue {
    lines: VecDeque<(OxPushLogLevel, String)>,
    dropped: usize,
}

static QUEUE: Lazy<Mutex<Queue>> = Lazy::new(|| {
    Mutex::new(Queue {
        lines: VecDeque::new(),
        dropped: 0,
    })
});

/// Whether the sender's debug lines are wanted (any instance with debug on).
static BACKGROUND_DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns the sender's debug lines on (any instance with mail_debug).
pub fn set_background_debug(on: bool) {
    if on {
        BACKGROUND_DEBUG.store(true, Ordering::Relaxed);
    }
}

/// Checked before the sender formats a debug line.
pub fn background_debug() -> bool {
    BACKGROUND_DEBUG.load(Ordering::Relaxed)
}

/// Queues a line from any thread.
pub fn background(level: OxPushLogLevel, msg: String) {
    if level == OxPushLogLevel::Debug && !background_debug() {
        return;
    }
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if q.lines.len() >= MAX_QUEUED {
        q.dropped += 1;
        return;
    }
    q.lines.push_back((level, msg));
}

/// Takes every queued line (on Dovecot's thread).
pub fn drain() -> Vec<(OxPushLogLevel, String)> {
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<_> = q.lines.drain(..).collect();
    if q.dropped > 0 {
        out.push((
            OxPushLogLevel::Warning,
            format!(
                "{} log lines were dropped: the log queue was full",
                q.dropped
            ),
        ));
        q.dropped = 0;
    }
    out
}
