//! ox_push: a drop-in replacement for Dovecot's push_notification `ox` driver.
//!
//! # The FFI boundary
//! Dovecot loads `lib30_ox_push_plugin.so`, made of two halves:
//! - the C shim (`dovecot-plugin/`) is the only code that calls Dovecot: it
//!   registers the driver under the name `ox`, reads users, mailboxes,
//!   METADATA, mailbox status and event data, and writes Dovecot's log. It hands
//!   Rust plain, borrowed bytes and copies nothing back but plain values;
//! - this crate owns everything that can be tested without Dovecot: config
//!   parsing ([`config`]), the activation rules ([`instance`]), the JSON body
//!   ([`json`]) and the relay client ([`client`]), which hands every
//!   notification to the `ox-push-relay` service over a unix socket without
//!   ever blocking Dovecot's ioloop: the shim watches the client's epoll
//!   descriptor and arms its timer.
//!
//! A mail process runs as the mail user, so this crate opens, writes and reads
//! no file, and starts no thread: the relay owns the spool, the retries, the
//! credentials at rest and the connections to the middleware.
//!
//! All `extern "C"` functions live in [`ffi`] (and the module contract in
//! `module`); each runs under one panic guard. Only Dovecot's ioloop thread
//! enters them, and the process-wide state is thread-local. See
//! `docs/ARCHITECTURE.md`.

pub mod client;
pub mod config;
pub mod ffi;
pub mod instance;
pub mod json;
pub mod log;
mod module;
mod sys;
