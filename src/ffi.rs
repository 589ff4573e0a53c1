//! The only `extern "C"` functions of the plugin: the API the C shim calls.
//!
//! Every function runs its body through `guard`, which catches a panic, logs
//! one error line naming the function, the panic message and its location, and
//! returns the documented fallback. Nothing unwinds into Dovecot.
//!
//! Ownership: `OxPushInstance` is created by `ox_push_instance_new` and released
//! by `ox_push_instance_free`. Every pointer passed in is borrowed for the call
//! only and copied if kept. Callers: Dovecot's ioloop thread only (checked in
//! debug builds).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use crate::instance::{Begin, Instance, Lookup, TlsSettings, UserContext};
use crate::json::{Event, Notification};
pub use crate::log::OxPushLogLevel;
use crate::log::Sink;

/// Result of the calls that can fail.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OxPushResult {
    /// Done / take part in the transaction.
    Ok = 0,
    /// Nothing to do (disabled instance, unwatched mailbox, push not active).
    Skip = 1,
    /// Bad arguments (NULL where a value is required).
    Invalid = 2,
    /// Rust panicked; the panic was logged.
    Panicked = 99,
}

/// Outcome of the shim's METADATA lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OxPushLookupStatus {
    Found = 0,
    NotFound = 1,
    Error = 2,
}

/// Writes one log line. `msg` is UTF-8, not NUL-terminated, valid for the call.
pub type OxPushLogFn = Option<
    unsafe extern "C" fn(ctx: *mut c_void, level: OxPushLogLevel, msg: *const c_char, len: usize),
>;

/// A borrowed byte string; `ptr == NULL` means absent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OxPushBytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl OxPushBytes {
    /// # Safety
    /// `ptr` must be NULL or point to `len` readable bytes for the call.
    unsafe fn get<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            None
        } else {
            // SAFETY: guaranteed by the caller (see the function's contract).
            Some(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
        }
    }
}

/// Per-user settings the shim reads from Dovecot.
#[repr(C)]
pub struct OxPushUserSettings {
    /// The mail user's name (NUL-terminated).
    pub username: *const c_char,
    /// Dovecot's `base_dir`, where the relay socket is by default.
    pub base_dir: *const c_char,
    /// `ssl_client_ca_file`, or NULL.
    pub ca_file: *const c_char,
    /// `ssl_client_ca_dir`, or NULL.
    pub ca_dir: *const c_char,
    /// `ssl_client_require_valid_cert`.
    pub verify_cert: bool,
    /// Debug logging wanted for this user (mail_debug / log_debug filter).
    pub debug: bool,
    /// An autocreated user (LDA/LMTP raw user): do not repeat config messages.
    pub quiet: bool,
}

/// One event of one message, as the shim found it in the transaction.
#[repr(C)]
pub struct OxPushNotification {
    /// One of the `OX_PUSH_EVENT_*` bits.
    pub event: u32,
    /// The transaction's METADATA `user=` value.
    pub metadata_user: OxPushBytes,
    pub folder: OxPushBytes,
    pub uid_validity: u32,
    pub uid: u32,
    pub from: OxPushBytes,
    pub subject: OxPushBytes,
    pub snippet: OxPushBytes,
    pub has_unseen: bool,
    pub unseen: u32,
    /// System flag names (flagsSet/flagsClear), `flags_count` entries or NULL.
    pub flags: *const OxPushBytes,
    pub flags_count: usize,
    /// Keywords (flagsSet/flagsClear), `keywords_count` entries or NULL.
    pub keywords: *const OxPushBytes,
    pub keywords_count: usize,
}

pub const OX_PUSH_EVENT_MESSAGE_NEW: u32 = 1 << 0;
pub const OX_PUSH_EVENT_MESSAGE_READ: u32 = 1 << 1;
pub const OX_PUSH_EVENT_MESSAGE_TRASH: u32 = 1 << 2;
pub const OX_PUSH_EVENT_MESSAGE_EXPUNGE: u32 = 1 << 3;
pub const OX_PUSH_EVENT_FLAGS_SET: u32 = 1 << 4;
pub const OX_PUSH_EVENT_FLAGS_CLEAR: u32 = 1 << 5;

const _: () = assert!(OX_PUSH_EVENT_MESSAGE_NEW == 1 << (Event::MessageNew as u32));
const _: () = assert!(OX_PUSH_EVENT_FLAGS_CLEAR == 1 << (Event::FlagsClear as u32));

/// Opaque per-user driver instance.
pub struct OxPushInstance {
    inner: Instance,
    log: ShimLog,
    /// Backing store for the `user=` value handed out by `begin_txn`.
    last_user: Vec<u8>,
}

#[derive(Clone, Copy)]
struct ShimLog {
    f: OxPushLogFn,
    ctx: *mut c_void,
    debug: bool,
}

impl Sink for ShimLog {
    fn log(&self, level: OxPushLogLevel, msg: &str) {
        if level == OxPushLogLevel::Debug && !self.debug {
            return;
        }
        if let Some(f) = self.f {
            // SAFETY: the shim's callback takes (ctx, level, ptr, len) and only
            // reads `len` bytes during the call.
            unsafe { f(self.ctx, level, msg.as_ptr().cast(), msg.len()) };
        }
    }
    fn debug_enabled(&self) -> bool {
        self.debug
    }
}

/// Runs `f`, turning a panic into one error line and `fallback`.
pub(crate) fn guard<T>(
    name: &str,
    log: Option<&dyn Sink>,
    fallback: T,
    f: impl FnOnce() -> T,
) -> T {
    debug_assert!(on_dovecot_thread(), "{name} called from a second thread");
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let loc = PANIC_LOCATION.with(|l| l.take()).unwrap_or_default();
            let line = format!("BUG: {name} panicked: {what}{loc}; the notification may be lost");
            match log {
                Some(sink) => sink.log(OxPushLogLevel::Error, &line),
                None => crate::log::background(OxPushLogLevel::Error, line),
            }
            fallback
        }
    }
}

/// The process's state is thread-local: every call must come from the thread
/// that made the first one (Dovecot's ioloop thread).
fn on_dovecot_thread() -> bool {
    static FIRST: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();
    *FIRST.get_or_init(|| std::thread::current().id()) == std::thread::current().id() || cfg!(test)
}

thread_local! {
    static PANIC_LOCATION: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// Records panic locations for [`guard`] instead of printing to stderr, which
/// Dovecot would log as a raw line.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let loc = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            PANIC_LOCATION.with(|c| c.set(Some(loc)));
        }));
    });
}

/// # Safety
/// `p` must be NULL or a NUL-terminated string valid for the call.
unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a CStr> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { CStr::from_ptr(p) })
    }
}

/// Dovecot 2.4: the values of one `push_notification <name> { }` block, as
/// Dovecot's settings parser typed them. Strings are NUL-terminated, NULL for
/// "" is fine; lists carry their count. Everything is borrowed for the call.
#[repr(C)]
pub struct OxPushBlockSettings {
    /// The block's name.
    pub name: *const c_char,
    /// `ox_url`.
    pub url: *const c_char,
    /// `ox_user_from_metadata`.
    pub user_from_metadata: bool,
    /// `ox_cache_ttl` (milliseconds).
    pub cache_ttl_msecs: u64,
    /// The block's `http_client_request_timeout` (0: lib-http's one minute).
    pub request_timeout_msecs: u32,
    /// `ox_push_max_age` (seconds).
    pub max_age_secs: u32,
    /// `ox_push_shutdown_timeout` (milliseconds).
    pub shutdown_timeout_msecs: u32,
    /// `ox_push_folders`: `folders_count` names.
    pub folders: *const *const c_char,
    pub folders_count: usize,
    /// `ox_push_events`: `events_count` names.
    pub events: *const *const c_char,
    pub events_count: usize,
    /// `ox_push_notification_id`.
    pub notification_id: bool,
    /// `ox_push_relay_socket` ("" or NULL: `<base_dir>/ox-push`).
    pub relay_socket: *const c_char,
}

/// Builds an instance under the guard; `make` gets the user's parts.
///
/// # Safety
/// `settings` (and its strings) must be NULL or valid for the call; `log_ctx`
/// must stay valid until `ox_push_instance_free`.
unsafe fn new_instance(
    name: &str,
    settings: *const OxPushUserSettings,
    log: OxPushLogFn,
    log_ctx: *mut c_void,
    make: impl FnOnce(&UserContext<'_>, &ShimLog) -> Option<Instance>,
) -> *mut OxPushInstance {
    install_panic_hook();
    // SAFETY: settings is NULL or valid for the call (contract).
    let set = unsafe { settings.as_ref() };
    let sink = ShimLog {
        f: log,
        ctx: log_ctx,
        debug: set.is_some_and(|s| s.debug),
    };
    guard(name, Some(&sink), std::ptr::null_mut(), || {
        let Some(set) = set else {
            return std::ptr::null_mut();
        };
        // SAFETY: the settings' strings are NULL or valid for the call (contract).
        let opt = |p| unsafe { cstr(p) }.map(|c| c.to_string_lossy().into_owned());
        let base_dir = opt(set.base_dir).unwrap_or_else(|| "/run/dovecot".to_string());
        let user = UserContext {
            // SAFETY: as above.
            username: unsafe { cstr(set.username) }.map_or(&b""[..], |c| c.to_bytes()),
            base_dir: Path::new(&base_dir),
            tls: TlsSettings {
                ca_file: opt(set.ca_file),
                ca_dir: opt(set.ca_dir),
                verify: set.verify_cert,
            },
            quiet: set.quiet,
        };
        match make(&user, &sink) {
            Some(inner) => Box::into_raw(Box::new(OxPushInstance {
                inner,
                log: sink,
                last_user: Vec::new(),
            })),
            None => std::ptr::null_mut(),
        }
    })
}

/// Dovecot 2.3: creates the instance for one
/// `push_notification_driverN = ox:<raw_config>` of one user. Never NULL unless
/// `raw_config` or `settings` is NULL or Rust panicked; a bad config gives an
/// instance that is disabled (`ox_push_instance_enabled` is false) after one
/// error line through `log` (once per process).
///
/// # Safety
/// `raw_config` and `settings` (and its strings) must be valid for the call;
/// `log_ctx` must stay valid until `ox_push_instance_free`.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_new(
    raw_config: *const c_char,
    settings: *const OxPushUserSettings,
    log: OxPushLogFn,
    log_ctx: *mut c_void,
) -> *mut OxPushInstance {
    // SAFETY: contract of this function.
    let raw = unsafe { cstr(raw_config) };
    // SAFETY: contract of this function.
    unsafe {
        new_instance("ox_push_instance_new", settings, log, log_ctx, |u, sink| {
            Some(Instance::new(&raw?.to_string_lossy(), u, sink))
        })
    }
}

/// Dovecot 2.4: the same for one `push_notification <name> { }` block.
///
/// # Safety
/// `block` and `settings` (and everything they point to) must be valid for
/// the call; `log_ctx` must stay valid until `ox_push_instance_free`.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_new_block(
    block: *const OxPushBlockSettings,
    settings: *const OxPushUserSettings,
    log: OxPushLogFn,
    log_ctx: *mut c_void,
) -> *mut OxPushInstance {
    // SAFETY: contract of this function.
    let block = unsafe { block.as_ref() };
    // SAFETY: contract of this function.
    unsafe {
        new_instance(
            "ox_push_instance_new_block",
            settings,
            log,
            log_ctx,
            |u, sink| {
                let b = block?;
                let s = |p| cstr(p).map_or(std::borrow::Cow::Borrowed(""), |c| c.to_string_lossy());
                let list = |p: *const *const c_char, n: usize| -> Vec<std::borrow::Cow<'_, str>> {
                    if p.is_null() {
                        return Vec::new();
                    }
                    std::slice::from_raw_parts(p, n)
                        .iter()
                        .map(|e| s(*e))
                        .collect()
                };
                let (name, url, socket) = (s(b.name), s(b.url), s(b.relay_socket));
                let events = list(b.events, b.events_count);
                let settings = crate::config::BlockSettings {
                    name: &name,
                    url: &url,
                    user_from_metadata: b.user_from_metadata,
                    cache_ttl_msecs: b.cache_ttl_msecs,
                    request_timeout_msecs: b.request_timeout_msecs,
                    max_age_secs: b.max_age_secs,
                    shutdown_timeout_msecs: b.shutdown_timeout_msecs,
                    folders: list(b.folders, b.folders_count)
                        .into_iter()
                        .map(|c| c.into_owned())
                        .collect(),
                    events: events.iter().map(|c| c.as_ref()).collect(),
                    notification_id: b.notification_id,
                    relay_socket: &socket,
                };
                Some(Instance::from_block(&settings, u, sink))
            },
        )
    }
}

/// Releases an instance; NULL is fine.
///
/// # Safety
/// `inst` must be NULL or come from `ox_push_instance_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_free(inst: *mut OxPushInstance) {
    guard("ox_push_instance_free", None, (), || {
        if !inst.is_null() {
            // SAFETY: contract of this function.
            drop(unsafe { Box::from_raw(inst) });
        }
    })
}

/// False when the config was rejected (the instance then never takes part).
///
/// # Safety
/// `inst` must be NULL or a live instance.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_enabled(inst: *const OxPushInstance) -> bool {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_ref() }) else {
        return false;
    };
    guard("ox_push_instance_enabled", Some(&i.log), false, || {
        i.inner.enabled()
    })
}

/// The `OX_PUSH_EVENT_*` bits this instance subscribes to.
///
/// # Safety
/// `inst` must be NULL or a live instance.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_events(inst: *const OxPushInstance) -> u32 {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_ref() }) else {
        return 0;
    };
    guard("ox_push_instance_events", Some(&i.log), 0, || {
        i.inner.events()
    })
}

/// The `push_notification_event_message_flags` to request for MessageNew.
#[no_mangle]
pub extern "C" fn ox_push_messagenew_flags() -> u32 {
    crate::sys::MESSAGENEW_FLAGS
}

/// Whether mailbox `vname` is watched (`folders=`, default `INBOX`).
///
/// # Safety
/// `inst` must be NULL or a live instance; `vname` valid for the call.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_watches(
    inst: *const OxPushInstance,
    vname: OxPushBytes,
) -> bool {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_ref() }) else {
        return false;
    };
    guard("ox_push_instance_watches", Some(&i.log), false, || {
        // SAFETY: contract of this function.
        unsafe { vname.get() }.is_some_and(|v| i.inner.watches(v))
    })
}

/// Whether the METADATA entry must be read now (`now`: ioloop time, seconds).
///
/// # Safety
/// `inst` must be NULL or a live instance.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_needs_lookup(
    inst: *const OxPushInstance,
    now: i64,
) -> bool {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_ref() }) else {
        return false;
    };
    guard("ox_push_instance_needs_lookup", Some(&i.log), true, || {
        i.inner.needs_lookup(now)
    })
}

/// Hands over the result of reading the METADATA entry: the value when `Found`,
/// the error text when `Error`. Copied; logged as the built-in driver does.
///
/// # Safety
/// `inst` must be NULL or a live instance; `value` valid for the call.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_set_lookup(
    inst: *mut OxPushInstance,
    now: i64,
    status: OxPushLookupStatus,
    value: OxPushBytes,
) {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_mut() }) else {
        return;
    };
    let log = i.log;
    guard("ox_push_instance_set_lookup", Some(&log), (), || {
        // SAFETY: contract of this function.
        let v = unsafe { value.get() }.unwrap_or(b"").to_vec();
        let lookup = match status {
            OxPushLookupStatus::Found => Lookup::Found(v),
            OxPushLookupStatus::NotFound => Lookup::NotFound,
            OxPushLookupStatus::Error => Lookup::Error(String::from_utf8_lossy(&v).into_owned()),
        };
        i.inner.set_lookup(now, lookup, &log);
    })
}

/// Decides whether the instance takes part in a transaction (after the lookup).
/// On `Ok`, `*user_r`/`*user_len_r` point at the `user=` value, owned by the
/// instance and valid until the next call on it: copy it.
///
/// # Safety
/// `inst` must be NULL or a live instance; out-parameters writable.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_begin_txn(
    inst: *mut OxPushInstance,
    user_r: *mut *const u8,
    user_len_r: *mut usize,
) -> OxPushResult {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_mut() }) else {
        return OxPushResult::Invalid;
    };
    let log = i.log;
    guard(
        "ox_push_instance_begin_txn",
        Some(&log),
        OxPushResult::Panicked,
        || {
            if user_r.is_null() || user_len_r.is_null() {
                return OxPushResult::Invalid;
            }
            match i.inner.begin(&log) {
                Begin::Skip => OxPushResult::Skip,
                Begin::Active { user } => {
                    i.last_user = user;
                    // SAFETY: out-parameters checked non-NULL above.
                    unsafe {
                        *user_r = i.last_user.as_ptr();
                        *user_len_r = i.last_user.len();
                    }
                    OxPushResult::Ok
                }
            }
        },
    )
}

/// Hands one notification to the relay client: queued in memory and written
/// to the relay socket at once when the socket takes it (non-blocking). Never
/// waits. `*timeout_r` is set to what [`ox_push_client_next`] would return.
///
/// # Safety
/// `inst` must be NULL or a live instance; `n` and everything it points to
/// valid for the call; `timeout_r` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ox_push_instance_submit(
    inst: *const OxPushInstance,
    n: *const OxPushNotification,
    timeout_r: *mut i64,
) -> OxPushResult {
    // SAFETY: contract of this function.
    let Some(i) = (unsafe { inst.as_ref() }) else {
        return OxPushResult::Invalid;
    };
    let result = guard(
        "ox_push_instance_submit",
        Some(&i.log),
        OxPushResult::Panicked,
        || {
            // SAFETY: contract of this function.
            let Some(n) = (unsafe { n.as_ref() }) else {
                return OxPushResult::Invalid;
            };
            let Some(event) = Event::ALL.into_iter().find(|e| e.bit() == n.event) else {
                return OxPushResult::Invalid;
            };
            let list = |p: *const OxPushBytes, count: usize| -> Vec<&[u8]> {
                if p.is_null() {
                    return Vec::new();
                }
                // SAFETY: contract: `count` entries, each valid for the call.
                unsafe { std::slice::from_raw_parts(p, count) }
                    .iter()
                    .filter_map(|b| unsafe { b.get() })
                    .collect()
            };
            // SAFETY: contract of this function (all byte strings valid for the call).
            let notification = unsafe {
                Notification {
                    user: b"",
                    folder: n.folder.get().unwrap_or(b""),
                    uid_validity: n.uid_validity,
                    uid: n.uid,
                    from: n.from.get(),
                    subject: n.subject.get(),
                    snippet: n.snippet.get(),
                    unseen: n.has_unseen.then_some(n.unseen),
                    flags: list(n.flags, n.flags_count),
                    keywords: list(n.keywords, n.keywords_count),
                }
            };
            // SAFETY: contract of this function.
            let metadata_user = unsafe { n.metadata_user.get() }.unwrap_or(b"");
            i.inner.submit(event, metadata_user, notification, &i.log);
            OxPushResult::Ok
        },
    );
    if !timeout_r.is_null() {
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { *timeout_r = ox_push_client_next() };
    }
    result
}

/// Milliseconds until `d` (rounded up, so that a timer does not fire early), or
/// -1 for no deadline.
fn timeout_ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| {
        i64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
    })
}

/// The relay client's descriptor: watch it with `io_add(IO_READ)` and call
/// [`ox_push_client_run`] when it is readable. The same for the whole process;
/// -1 if it could not be created (logged).
#[no_mangle]
pub extern "C" fn ox_push_client_fd() -> c_int {
    install_panic_hook();
    guard("ox_push_client_fd", None, -1, crate::client::poll_fd)
}

/// Does the relay socket's pending work without blocking (writes, answers,
/// reconnects). Returns the milliseconds until it wants to run again, or -1.
#[no_mangle]
pub extern "C" fn ox_push_client_run() -> i64 {
    guard("ox_push_client_run", None, -1, || {
        crate::client::run();
        timeout_ms(crate::client::next_timeout())
    })
}

/// The milliseconds until the relay client wants to run again, or -1.
#[no_mangle]
pub extern "C" fn ox_push_client_next() -> i64 {
    guard("ox_push_client_next", None, -1, || {
        timeout_ms(crate::client::next_timeout())
    })
}

/// Writes every queued log line of the relay client through `log(ctx, ...)`.
///
/// # Safety
/// `log` must be a valid callback for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn ox_push_log_drain(log: OxPushLogFn, ctx: *mut c_void) {
    let sink = ShimLog {
        f: log,
        ctx,
        debug: true,
    };
    guard("ox_push_log_drain", Some(&sink), (), || {
        for (level, line) in crate::log::drain() {
            sink.log(level, &line);
        }
    })
}

/// At plugin deinit (process exit): waits at most the largest configured
/// `shutdown_timeout` for the relay to take what is queued, and logs (through
/// `log`) what it could not hand over. Returns how many notifications were
/// dropped.
///
/// # Safety
/// `log` must be a valid callback for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn ox_push_shutdown(log: OxPushLogFn, ctx: *mut c_void) -> u64 {
    let sink = ShimLog {
        f: log,
        ctx,
        debug: true,
    };
    guard("ox_push_shutdown", Some(&sink), 0, || {
        let timeout = crate::client::shutdown_timeout().unwrap_or(Duration::from_millis(
            crate::config::DEFAULT_SHUTDOWN_TIMEOUT_MSECS.into(),
        ));
        let dropped = crate::client::shutdown(timeout);
        for (level, line) in crate::log::drain() {
            sink.log(level, &line);
        }
        dropped
    })
}

#[cfg(test)]
mod tests;
