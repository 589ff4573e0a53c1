//! Log lines from Rust to Dovecot's log.
//!
//! Code running for a mail user logs through a [`Sink`] that calls straight
//! back into the shim, which writes the line with that user's event. The relay
//! client, which serves every user of the process, queues its lines here; it
//! only runs inside shim calls (submit, its io and timeout callbacks, the
//! shutdown), and the shim drains the queue at the end of each of them with the
//! process-wide event. Everything runs on Dovecot's one thread.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

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

/// Collects lines (tests).
#[derive(Default)]
pub struct Collect(pub RefCell<Vec<(OxPushLogLevel, String)>>, pub bool);

impl Sink for Collect {
    fn log(&self, level: OxPushLogLevel, msg: &str) {
        self.0.borrow_mut().push((level, msg.to_string()));
    }
    fn debug_enabled(&self) -> bool {
        self.1
    }
}

/// At most this many queued lines; beyond it, lines are counted and summarised.
const MAX_QUEUED: usize = 1000;

thread_local! {
    static QUEUE: RefCell<(VecDeque<(OxPushLogLevel, String)>, usize)> =
        RefCell::default();
    /// Whether the relay client's debug lines are wanted (any user with debug on).
    static BACKGROUND_DEBUG: Cell<bool> = const { Cell::new(false) };
}

/// Turns the relay client's debug lines on (a user with mail_debug exists).
pub fn set_background_debug(on: bool) {
    if on {
        BACKGROUND_DEBUG.set(true);
    }
}

/// Checked before a debug line is formatted.
pub fn background_debug() -> bool {
    BACKGROUND_DEBUG.get()
}

/// Queues a line for the shim to write.
pub fn background(level: OxPushLogLevel, msg: String) {
    if level == OxPushLogLevel::Debug && !background_debug() {
        return;
    }
    QUEUE.with_borrow_mut(|(lines, dropped)| {
        if lines.len() >= MAX_QUEUED {
            *dropped += 1;
        } else {
            lines.push_back((level, msg));
        }
    })
}

/// Takes every queued line.
pub fn drain() -> Vec<(OxPushLogLevel, String)> {
    QUEUE.with_borrow_mut(|(lines, dropped)| {
        let mut out: Vec<_> = lines.drain(..).collect();
        if *dropped > 0 {
            out.push((
                OxPushLogLevel::Warning,
                format!("{dropped} log lines were dropped: the log queue was full"),
            ));
            *dropped = 0;
        }
        out
    })
}
