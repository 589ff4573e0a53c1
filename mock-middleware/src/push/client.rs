//! The outbound HTTP/2 clients (reqwest) towards Google's endpoints: FCM v1 and its OAuth
//! token endpoint (two hosts through one client), legacy GCM. APNs, the hot path with one
//! origin, uses the leaner [`super::h2::H2Client`].
//!
//! APNs (and Google's endpoints) speak HTTP/2. With ALPN left open, hyper's pool cannot know
//! before a handshake completes that a connection will multiplex, so a cold burst opened one
//! TLS connection per concurrent request (47–55 measured). Each client here is built with HTTP/2
//! prior knowledge, so the pool waits for the one connection being set up and multiplexes every
//! request over it. More connections only by configuration (`mock.push.connections`): each is a
//! separate client with its own single connection, used in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One or more single-connection HTTP/2 clients, used round-robin.
pub struct ProviderClient {
    clients: Vec<reqwest::Client>,
    next: AtomicUsize,
}

impl ProviderClient {
    /// `make` builds one client; it is called `connections` times (at least once).
    pub fn new<E>(
        connections: usize,
        mut make: impl FnMut() -> Result<reqwest::Client, E>,
    ) -> Result<ProviderClient, E> {
        let clients = (0..connections.max(1))
            .map(|_| make())
            .collect::<Result<Vec<_>, E>>()?;
        Ok(ProviderClient {
            clients,
            next: AtomicUsize::new(0),
        })
    }

    /// The client for the next request.
    pub fn get(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }
}

impl From<reqwest::Client> for ProviderClient {
    fn from(c: reqwest::Client) -> Self {
        ProviderClient {
            clients: vec![c],
            next: AtomicUsize::new(0),
        }
    }
}
