//! mock-middleware: an OX-faithful receiver of Dovecot's http-notify requests that turns new-mail
//! notifications into real APNs / FCM / GCM pushes, plus fake providers for tests and demos.
//!
//! Layout: [`config`] (properties + YAML), [`store`] (SQLite + in-memory index), [`http`] (the
//! public and admin listeners), [`push`] (queue, payloads, providers), [`fake`] (fake APNs/FCM),
//! [`server`] (wiring), [`demo`] (`init-demo`).

pub mod cli;
pub mod config;
pub mod demo;
pub mod device;
pub mod event;
pub mod fake;
pub mod http;
pub mod imap;
pub mod listeners;
pub mod loadgen;
pub mod metrics;
pub mod mime;
pub mod push;
pub mod recording;
pub mod server;
pub mod store;
pub mod tls;
