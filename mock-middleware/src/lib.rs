//! mock-middleware: an OX-faithful receiver of Dovecot's http-notify requests that turns new-mail
//! notifications into real APNs / FCM / GCM pushes, plus fake providers for tests and demos.
//!
//! The service:
//! - [`config`]: the OX-style property set of a directory and the mock's YAML files, resolved
//!   once into `Settings`; secrets behind a redacting type; listener and login limits.
//! - [`server`]: wiring: store, providers, pipeline and both listeners from the settings.
//! - [`http`]: the public listener (http-notify, login, capabilities, `pns`, `mobilenotifier`,
//!   `/config/providers`) and the admin listener (recordings, faults, registrations behind a
//!   bearer token; `/metrics`), served with connection, timeout and size limits.
//! - [`mime`]: subjects and senders as a mail client shows them (unfolding, every charset).
//! - [`event`]: the new-mail event derived from an accepted notification (OX's properties).
//! - [`push`]: the queue, payloads and the APNs / FCM v1 / legacy GCM senders over one
//!   multiplexed HTTP/2 connection per provider.
//! - [`store`]: the durable state behind the `Store` trait, in SQLite (one node) or PostgreSQL
//!   (several nodes), plus the in-memory index a single node's notify path reads.
//! - [`cluster`]: heartbeats, listener leases and unfinished notifications of nodes sharing a
//!   store.
//! - [`listeners`]: permanent listeners (METADATA registration in Dovecot over IMAP) and the
//!   credential storage.
//! - [`recording`]: what arrived and what was pushed (bounded); [`recording_shared`]: the same
//!   in the shared store for a cluster; [`faults`]: injected faults.
//! - [`metrics`]: Prometheus metrics and the latency reservoir.
//! - [`wildcard`]: OX's client wildcard patterns (`allowedClients`).
//! - [`tls`]: the production TLS client and server configuration.
//!
//! Around it:
//! - [`fake`]: fake APNs, fake OAuth/FCM/GCM (real on the wire) and their admin listener.
//! - [`testpki`]: throw-away CA and certificates for tests, demos and the fakes.
//! - [`tools`]: the command-line tools (`init-demo`, `device`, `load`, `pushusers`).

pub mod cluster;
pub mod config;
pub mod event;
pub mod fake;
pub mod faults;
pub mod http;
pub mod listeners;
pub mod metrics;
pub mod mime;
pub mod push;
pub mod recording;
pub mod recording_shared;
pub mod server;
pub mod store;
pub mod testpki;
pub mod tls;
pub mod tools;
pub mod wildcard;
