//! The mail process's end of the relay socket: hands each notification to the
//! ox-push-relay service, never blocking Dovecot's ioloop.
//!
//! One connection per process, made at the first notification, on a
//! non-blocking unix stream socket registered (edge-triggered) with an epoll
//! instance of our own; the shim watches that epoll descriptor with Dovecot's
//! `io_add()` and arms one timer for reconnecting ([`next_timeout`]). Every
//! notification is one `Notify` frame in a bounded in-memory queue until the
//! relay acknowledges it (it is in the relay's journal then). When the
//! connection breaks, every unacknowledged frame is sent again on the next one;
//! the relay drops repeats by notification id. When the queue is full, the
//! oldest frame not yet written is dropped, counted, and later reported to the
//! relay. At exit, [`shutdown`] waits at most `shutdown_timeout` for the
//! acknowledgements.
//!
//! This module opens no file: a mail process runs as the mail user, and anything
//! it could write, that user could write too. Everything runs on Dovecot's one
//! thread; the state is thread-local.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ox_push_record::frame::{self, AckStatus, Frame};
use ox_push_record::Item;

use crate::log::{background, background_debug, OxPushLogLevel};

/// The queue's bound per process, in bytes of frames (a notification is
/// typically under 1 KiB).
pub const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;
/// The queue's bound per process, in notifications.
pub const MAX_HELD: usize = 50_000;
/// What the relay sends back is acknowledgements and errors: small.
const MAX_INBOUND: usize = 64 * 1024;
const RECONNECT_FIRST: Duration = Duration::from_millis(5);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// While the relay stays unreachable, one line this often.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(60);

struct Entry {
    /// `None` for a `Report`, which the relay does not acknowledge.
    seq: Option<u64>,
    frame: Vec<u8>,
}

struct Outage {
    since: Instant,
    logged: Instant,
    error: String,
}

pub struct Client {
    path: PathBuf,
    epoll: OwnedFd,
    sock: Option<OwnedFd>,
    /// Frames not acknowledged yet, in the order they are written.
    held: VecDeque<Entry>,
    held_bytes: usize,
    /// How many entries at the front of `held` are written on this connection.
    written: usize,
    /// Bytes of `held[written]` written so far.
    pos: usize,
    next_seq: u64,
    inbuf: Vec<u8>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Dropped here and not reported to the relay yet.
    unreported: u64,
    outage: Option<Outage>,
}

thread_local! {
    static CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
    static EPOLL: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
    /// The largest `shutdown_timeout` of the instances of this process.
    static SHUTDOWN_TIMEOUT: std::cell::Cell<Option<Duration>> =
        const { std::cell::Cell::new(None) };
}

/// Remembers an instance's `shutdown_timeout`; the process waits for the
/// largest one at exit.
pub fn note_shutdown_timeout(d: Duration) {
    SHUTDOWN_TIMEOUT.set(Some(SHUTDOWN_TIMEOUT.get().map_or(d, |t| t.max(d))));
}

/// The `shutdown_timeout` to wait at exit.
pub fn shutdown_timeout() -> Option<Duration> {
    SHUTDOWN_TIMEOUT.get()
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// The descriptor the shim watches (readable when the relay socket wants
/// attention); created once per process. -1 when epoll is not available.
pub fn poll_fd() -> RawFd {
    EPOLL.with_borrow_mut(|e| {
        if e.is_none() {
            // SAFETY: plain syscall; the result is checked.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                background(
                    OxPushLogLevel::Error,
                    format!("epoll_create1() failed: {}", errno()),
                );
                return -1;
            }
            // SAFETY: fd is a fresh descriptor we own.
            *e = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        e.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    })
}

/// Sets the relay socket of this process (the first driver instance decides;
/// one relay serves a host). An instance naming another socket is refused.
pub fn configure(path: &Path) -> Result<(), String> {
    if poll_fd() < 0 {
        return Err("cannot watch the relay socket (epoll_create1 failed)".into());
    }
    CLIENT.with_borrow_mut(|c| match c {
        Some(c) if c.path == path => Ok(()),
        Some(c) => Err(format!(
            "relay_socket={} differs from {} used by another driver instance of this \
             process; one relay serves all endpoints, so this instance is disabled",
            path.display(),
            c.path.display()
        )),
        None => {
            let epoll = EPOLL.with_borrow(|e| e.as_ref().map(OwnedFd::try_clone));
            let Some(Ok(epoll)) = epoll else {
                return Err("cannot watch the relay socket (epoll descriptor)".into());
            };
            *c = Some(Client::new(path.to_path_buf(), epoll));
            Ok(())
        }
    })
}

/// Queues a notification and writes it at once if the socket takes it.
pub fn submit(item: Item) -> Result<(), String> {
    with_client(|c| c.submit(item, Instant::now()))
        .unwrap_or_else(|| Err("the relay client is not configured".into()))
}

/// Does the socket work that is possible now (after the epoll descriptor
/// became readable, or the timer fired).
pub fn run() {
    with_client(|c| {
        c.drain_events();
        c.pump(Instant::now());
    });
}

/// When the timer should fire next (reconnecting), if at all.
pub fn next_timeout() -> Option<Duration> {
    with_client(|c| c.next_timeout(Instant::now())).flatten()
}

/// Notifications waiting for the relay's acknowledgement in this process.
pub fn pending() -> usize {
    with_client(|c| c.pending()).unwrap_or(0)
}

/// At process exit: waits up to `timeout` for the relay to take what is
/// queued. Returns how many notifications were dropped (logged already).
pub fn shutdown(timeout: Duration) -> u64 {
    let Some(mut c) = CLIENT.with_borrow_mut(Option::take) else {
        return 0;
    };
    c.finish(timeout)
}

fn with_client<R>(f: impl FnOnce(&mut Client) -> R) -> Option<R> {
    CLIENT.with_borrow_mut(|c| c.as_mut().map(f))
}

/// A non-blocking connection to the unix socket at `path`. A full backlog (a
/// relay that does not accept) is an error, never a wait.
fn connect(path: &Path) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket path is too long for a unix socket",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    loop {
        // SAFETY: addr is a valid sockaddr_un of at least `len` bytes.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(fd);
        }
        let e = errno();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The name of the group that owns the socket at `path` (stat only: the
/// socket is not opened), or its number.
fn socket_group(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::metadata(path) else {
        return "$default_internal_group".to_string();
    };
    let gid = md.gid();
    // SAFETY: group is plain data; all-zero is a valid value.
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = [0u8; 4096];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: group, buf and out are valid for the call; out is NULL or points
    // to group, whose strings live in buf.
    let r = unsafe {
        libc::getgrgid_r(
            gid,
            &mut group,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if r == 0 && !out.is_null() {
        // SAFETY: gr_name is a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(group.gr_name) };
        return name.to_string_lossy().into_owned();
    }
    gid.to_string()
}

/// What to tell an operator about a failed connect, and how to fix it.
fn explain(path: &Path, e: &io::Error) -> String {
    let base = format!(
        "Cannot connect to the ox-push relay at {}: {e}",
        path.display()
    );
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            // SAFETY: plain getters.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let group = socket_group(path);
            format!(
                "{base}. This process (uid {uid}, gid {gid}) is not in the socket's group \
                 {group}. dovecot-lda started by the MTA as the mail user has no access: \
                 deliver with LMTP, or start dovecot-lda as root with -d and set \
                 mail_access_groups = {group} for it (protocol lda {{ }}), or widen the \
                 socket's mode (then any local user can forge pushes; see PLUGIN.md, \
                 Security model)"
            )
        }
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => format!(
            "{base}. Is the ox-push service configured and Dovecot running? (see \
             dovecot-plugin/95-ox-push.conf)"
        ),
        Some(libc::EAGAIN) => format!("{base} (the relay is not accepting connections)"),
        _ => base,
    }
}

impl Client {
    fn new(path: PathBuf, epoll: OwnedFd) -> Client {
        Client {
            path,
            epoll,
            sock: None,
            held: VecDeque::new(),
            held_bytes: 0,
            written: 0,
            pos: 0,
            next_seq: 1,
            inbuf: Vec::new(),
            failures: 0,
            retry_at: None,
            unreported: 0,
            outage: None,
        }
    }

    fn pending(&self) -> usize {
        self.held.iter().filter(|e| e.seq.is_some()).count()
    }

    fn submit(&mut self, item: Item, now: Instant) -> Result<(), String> {
        let seq = self.next_seq;
        let frame = Frame::Notify { seq, item }.to_bytes().map_err(|e| {
            self.count_dropped(1);
            format!("Notification dropped: it cannot be handed to the relay ({e})")
        })?;
        self.next_seq += 1;
        self.make_room(frame.len());
        self.held_bytes += frame.len();
        self.held.push_back(Entry {
            seq: Some(seq),
            frame,
        });
        self.pump(now);
        Ok(())
    }

    /// Drops the oldest frames not started yet until `len` more bytes fit.
    fn make_room(&mut self, len: usize) {
        let mut dropped = 0;
        while self.held_bytes + len > MAX_HELD_BYTES || self.held.len() >= MAX_HELD {
            // The frame being written cannot be taken back out of the stream.
            let first_free = self.written + usize::from(self.pos > 0);
            let Some(i) = (first_free..self.held.len()).find(|&i| self.held[i].seq.is_some())
            else {
                break;
            };
            let e = self.held.remove(i).expect("index in range");
            self.held_bytes -= e.frame.len();
            dropped += 1;
        }
        if dropped > 0 {
            self.count_dropped(dropped);
            background(
                OxPushLogLevel::Warning,
                format!(
                    "Dropped the {dropped} oldest notification(s) waiting for the ox-push relay \
                     at {}: this process holds at most {} MiB / {MAX_HELD} notifications \
                     while the relay does not take them",
                    self.path.display(),
                    MAX_HELD_BYTES >> 20
                ),
            );
        }
    }

    fn count_dropped(&mut self, n: u64) {
        self.unreported += n;
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.sock.is_some() || (self.held.is_empty() && self.unreported == 0) {
            return None;
        }
        Some(
            self.retry_at
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
        )
    }

    fn drain_events(&mut self) {
        // SAFETY: epoll_event is plain data.
        let mut events: [libc::epoll_event; 8] = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: events is a valid buffer of 8 entries.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 8, 0) };
            if n < 8 {
                break;
            }
        }
    }

    /// Connects if needed, writes what the socket takes, reads the answers.
    fn pump(&mut self, now: Instant) {
        if self.sock.is_none() {
            if (self.held.is_empty() && self.unreported == 0)
                || self.retry_at.is_some_and(|t| t > now)
            {
                return;
            }
            if let Err(e) = self.open() {
                self.failed(&e, now);
                return;
            }
        }
        if let Err(e) = self.write_some().and_then(|()| self.read_some()) {
            self.failed(&e, now);
        }
    }

    fn open(&mut self) -> Result<(), String> {
        let fd = connect(&self.path).map_err(|e| explain(&self.path, &e))?;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: 1,
        };
        // SAFETY: both descriptors are open; ev is valid for the call.
        if unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        } < 0
        {
            return Err(format!("epoll_ctl() failed: {}", errno()));
        }
        self.sock = Some(fd);
        self.written = 0;
        self.pos = 0;
        self.inbuf.clear();
        if self.unreported > 0 {
            let report = Frame::Report {
                dropped: self.unreported,
            }
            .to_bytes()
            .expect("a report always encodes");
            self.unreported = 0;
            self.held_bytes += report.len();
            self.held.push_front(Entry {
                seq: None,
                frame: report,
            });
        }
        Ok(())
    }

    /// The connection broke or could not be made: everything not acknowledged
    /// is written again on the next one, after a backoff.
    fn failed(&mut self, error: &str, now: Instant) {
        // Closing the descriptor removes it from the epoll set.
        self.sock = None;
        self.written = 0;
        self.pos = 0;
        self.failures = self.failures.saturating_add(1);
        let delay = RECONNECT_FIRST
            .saturating_mul(1 << self.failures.saturating_sub(1).min(10))
            .min(RECONNECT_MAX);
        self.retry_at = Some(now + delay);
        let queued = self.pending();
        match &mut self.outage {
            None => {
                background(
                    OxPushLogLevel::Error,
                    format!("{error}; keeping {queued} notification(s) in memory and retrying"),
                );
                self.outage = Some(Outage {
                    since: now,
                    logged: now,
                    error: error.to_string(),
                });
            }
            Some(o) => {
                if now.duration_since(o.logged) >= COMPLAINT_INTERVAL {
                    o.logged = now;
                    background(
                        OxPushLogLevel::Error,
                        format!(
                            "{error}; unreachable for {}s, {queued} notification(s) in memory",
                            now.duration_since(o.since).as_secs()
                        ),
                    );
                }
                o.error = error.to_string();
            }
        }
    }

    fn write_some(&mut self) -> Result<(), String> {
        let Some(sock) = &self.sock else {
            return Ok(());
        };
        let fd = sock.as_raw_fd();
        while self.written < self.held.len() {
            let frame = &self.held[self.written].frame;
            let rest = &frame[self.pos..];
            // SAFETY: rest is valid for rest.len() bytes; MSG_NOSIGNAL: a closed
            // peer is an error, not a SIGPIPE.
            let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = errno();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(()),
                    _ => {
                        return Err(format!(
                            "Writing to the ox-push relay at {} failed: {e}",
                            self.path.display()
                        ))
                    }
                }
            }
            self.pos += n as usize;
            if self.pos == frame.len() {
                self.pos = 0;
                if self.held[self.written].seq.is_none() {
                    // A report is done once written.
                    let e = self.held.remove(self.written).expect("index in range");
                    self.held_bytes -= e.frame.len();
                } else {
                    self.written += 1;
                }
            }
        }
        Ok(())
    }

    fn read_some(&mut self) -> Result<(), String> {
        let Some(sock) = &self.sock else {
            return Ok(());
        };
        let fd = sock.as_raw_fd();
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: chunk is a valid buffer of its length.
            let n = unsafe { libc::recv(fd, chunk.as_mut_ptr().cast(), chunk.len(), 0) };
            if n < 0 {
                let e = errno();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(()),
                    _ => {
                        return Err(format!(
                            "Reading from the ox-push relay at {} failed: {e}",
                            self.path.display()
                        ))
                    }
                }
            }
            if n == 0 {
                return Err(format!(
                    "The ox-push relay at {} closed the connection",
                    self.path.display()
                ));
            }
            self.inbuf.extend_from_slice(&chunk[..n as usize]);
            self.take_frames()?;
        }
    }

    fn take_frames(&mut self) -> Result<(), String> {
        let mut used = 0;
        let result = loop {
            match frame::decode(&self.inbuf[used..], MAX_INBOUND) {
                Ok(None) => break Ok(()),
                Ok(Some((f, n))) => {
                    used += n;
                    if let Err(e) = self.handle(f) {
                        break Err(e);
                    }
                }
                Err(e) => {
                    break Err(format!(
                        "The ox-push relay at {} sent something unexpected: {e}",
                        self.path.display()
                    ))
                }
            }
        };
        self.inbuf.drain(..used);
        result
    }

    fn handle(&mut self, f: Frame) -> Result<(), String> {
        match f {
            Frame::Ack { seq, status } => {
                let expected = self.held.front().and_then(|e| e.seq);
                if self.written == 0 || expected != Some(seq) {
                    return Err(format!(
                        "The ox-push relay at {} acknowledged notification {seq}, expected \
                         {expected:?}",
                        self.path.display()
                    ));
                }
                let e = self.held.pop_front().expect("front exists");
                self.held_bytes -= e.frame.len();
                self.written -= 1;
                self.failures = 0;
                if let Some(o) = self.outage.take() {
                    background(
                        OxPushLogLevel::Info,
                        format!(
                            "The ox-push relay at {} takes notifications again (after {} ms)",
                            self.path.display(),
                            o.since.elapsed().as_millis()
                        ),
                    );
                }
                match status {
                    AckStatus::Stored | AckStatus::Duplicate => {
                        if background_debug() {
                            background(
                                OxPushLogLevel::Debug,
                                format!("Notification {seq} handed to the relay"),
                            );
                        }
                    }
                    AckStatus::Refused(why) => background(
                        OxPushLogLevel::Error,
                        format!("The ox-push relay refused a notification: {why}; dropped"),
                    ),
                }
                Ok(())
            }
            Frame::Error { message } => Err(format!(
                "The ox-push relay at {} reported an error: {message}",
                self.path.display()
            )),
            other => Err(format!(
                "The ox-push relay at {} sent an unexpected {:?} frame",
                self.path.display(),
                other.kind()
            )),
        }
    }

    /// Waits up to `timeout` for the queue to drain; returns what is left.
    fn finish(&mut self, timeout: Duration) -> u64 {
        let until = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            self.drain_events();
            self.pump(now);
            if self.pending() == 0 {
                return 0;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            if left.is_zero() {
                break;
            }
            match (&self.sock, self.retry_at) {
                (Some(_), _) => {
                    let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                    // SAFETY: epoll_event is plain data; the buffer is valid.
                    let mut ev: [libc::epoll_event; 1] = unsafe { std::mem::zeroed() };
                    // SAFETY: see above.
                    unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), ev.as_mut_ptr(), 1, ms) };
                }
                (None, retry) => {
                    let wake = retry.unwrap_or(now).min(until);
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                }
            }
        }
        let left = self.pending() as u64;
        let why = self.outage.as_ref().map_or_else(
            || "it did not acknowledge them in time".to_string(),
            |o| o.error.clone(),
        );
        background(
            OxPushLogLevel::Error,
            format!(
                "{left} notification(s) not handed to the ox-push relay at {} within \
                 shutdown_timeout={} ms are dropped ({why})",
                self.path.display(),
                timeout.as_millis()
            ),
        );
        left
    }
}

#[cfg(test)]
mod tests;
