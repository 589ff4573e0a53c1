//! Log lines on stderr, in the form whoever reads stderr understands.
//!
//! Under Dovecot's master (`LOG_SERVICE=1` in the environment), stderr goes to
//! Dovecot's log process, which logs every plain line as an error. So each line
//! is written in the child log protocol of Dovecot's `lib/failures.c`:
//! `\x01`, the log type + 1 as one byte, our pid, a space, the text, a newline,
//! in one `write(2)` of at most `PIPE_BUF` bytes. Outside Dovecot (a terminal,
//! systemd's journal) a line is `Level: text`.
//!
//! No line ever contains a URL password: callers log endpoints by their masked
//! label only.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
    Fatal = 4,
}

const PLAIN: u8 = 0;
const DOVECOT: u8 = 1;
/// Dovecot's log pipe takes lines of at most PIPE_BUF bytes in one piece.
const MAX_LINE: usize = 4000;

static MODE: AtomicU8 = AtomicU8::new(PLAIN);
static DEBUG: AtomicBool = AtomicBool::new(false);

/// `dovecot`: speak the child log protocol; `debug`: write debug lines.
pub fn init(dovecot: bool, debug: bool) {
    MODE.store(if dovecot { DOVECOT } else { PLAIN }, Ordering::Relaxed);
    DEBUG.store(debug, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// The bytes of one line (without the trailing newline's guarantee of
/// atomicity being lost: it is cut to fit).
pub fn format_line(level: Level, msg: &str, dovecot: bool, pid: u32) -> Vec<u8> {
    let mut text: String = msg
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if text.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [...]");
    }
    let mut line = Vec::with_capacity(text.len() + 24);
    if dovecot {
        line.push(1);
        line.push(level as u8 + 1);
        line.extend_from_slice(pid.to_string().as_bytes());
        line.push(b' ');
    } else {
        let name = match level {
            Level::Debug => "Debug: ",
            Level::Info => "Info: ",
            Level::Warning => "Warning: ",
            Level::Error => "Error: ",
            Level::Fatal => "Fatal: ",
        };
        line.extend_from_slice(name.as_bytes());
    }
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    line
}

pub fn log(level: Level, msg: &str) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let line = format_line(
        level,
        msg,
        MODE.load(Ordering::Relaxed) == DOVECOT,
        std::process::id(),
    );
    // One write per line: lines from several threads never interleave.
    let _ = std::io::stderr().lock().write_all(&line);
}

pub fn debug(msg: impl AsRef<str>) {
    if debug_enabled() {
        log(Level::Debug, msg.as_ref());
    }
}

pub fn info(msg: impl AsRef<str>) {
    log(Level::Info, msg.as_ref());
}

pub fn warning(msg: impl AsRef<str>) {
    log(Level::Warning, msg.as_ref());
}

pub fn error(msg: impl AsRef<str>) {
    log(Level::Error, msg.as_ref());
}

pub fn fatal(msg: impl AsRef<str>) {
    log(Level::Fatal, msg.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_child_protocol() {
        assert_eq!(
            format_line(Level::Info, "relay started", true, 42),
            b"\x01\x0242 relay started\n"
        );
        assert_eq!(
            format_line(Level::Warning, "w", true, 7),
            b"\x01\x037 w\n".to_vec()
        );
        assert_eq!(format_line(Level::Error, "e", false, 7), b"Error: e\n");
    }

    #[test]
    fn a_line_is_one_line_and_fits_the_pipe() {
        let l = format_line(Level::Error, &format!("a\nb{}", "é".repeat(5000)), true, 1);
        assert!(l.len() <= 4096);
        assert_eq!(l.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(std::str::from_utf8(&l[3..]).is_ok());
    }
}
