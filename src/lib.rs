//! ox_push: a drop-in replacement for Dovecot 2.3's push_notification `ox` driver.
//!
//! # The FFI boundary
//! Dovecot loads `lib30_ox_push_plugin.so`, made of two halves:
//! - the C shim (`dovecot-plugin/ox-push-plugin.c`) is the only code that calls
//!   Dovecot: it registers the driver under the name `ox`, reads users,
//!   mailboxes, METADATA, mailbox status and event data, and writes Dovecot's
//!   log. It hands Rust plain, borrowed bytes and copies nothing back but plain
//!   values;
//! - this crate owns everything that can be tested without Dovecot: config
//!   parsing ([`config`]), the URL ([`endpoint`]), the JSON body ([`json`]), the
//!   durable spool ([`spool`]), non-blocking HTTP ([`http`], [`tls`]) and the
//!   sender ([`sender`]), which runs inside Dovecot's ioloop on non-blocking
//!   sockets: the shim watches its poll descriptor and arms its timer.
//!
//! All `extern "C"` functions live in [`ffi`]; each runs under one panic guard.
//! Only Dovecot's ioloop thread enters them. The one other thread, a short-lived
//! host name lookup, touches nothing but its result slot. Log lines produced
//! outside a shim call travel through [`log`]'s queue and are written by the
//! shim. See `docs/ARCHITECTURE.md`.

pub mod config;
pub mod endpoint;
pub mod ffi;
pub mod http;
pub mod instance;
pub mod journal;
pub mod json;
pub mod log;
mod module;
mod retry;
pub mod sender;
pub mod spool;
pub mod stats;
mod sys;
pub mod tls;

/// Keeps this module mapped after Dovecot's `dlclose()`: a host name lookup
/// thread still running at exit must never run into unmapped code. Done once,
/// when the first such thread starts.
pub(crate) fn keep_loaded() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let addr = keep_loaded as *const libc::c_void;
        // SAFETY: dladdr only reads the address; info is a valid out-parameter.
        if unsafe { libc::dladdr(addr, &mut info) } != 0 && !info.dli_fname.is_null() {
            // SAFETY: dli_fname is a NUL-terminated path owned by the loader;
            // RTLD_NOLOAD only takes a reference to the already loaded object.
            unsafe {
                libc::dlopen(
                    info.dli_fname,
                    libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                )
            };
        }
    });
}
