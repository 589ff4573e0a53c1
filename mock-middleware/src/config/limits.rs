//! Listener limits (`mock.http.*`, `mock.admin.max_connections`): connection caps, header and
//! body timeouts, request size caps. Defaults are in [`crate::http::listen::Limits`].

use std::time::Duration;

use super::{ConfigError, Reader};
use crate::http::listen::Limits;

/// Limits of the public and the admin listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Public listener; `max_connections` 0 means "as many as the descriptor budget allows".
    pub public: Limits,
    pub admin: Limits,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            public: Limits {
                max_connections: 0,
                ..Limits::default()
            },
            admin: Limits {
                max_connections: 64,
                ..Limits::default()
            },
        }
    }
}

impl ListenerLimits {
    /// Caps both listeners to what `nofile` descriptors allow, keeping
    /// [`crate::http::listen::FD_RESERVE`] free.
    pub fn fit(&mut self, nofile: usize) {
        let reserve = crate::http::listen::FD_RESERVE;
        self.admin.max_connections = self.admin.max_connections.min(nofile / 8).max(4);
        let budget = nofile
            .saturating_sub(reserve + self.admin.max_connections)
            .max(16);
        self.public.max_connections = match self.public.max_connections {
            0 => budget,
            n => n.min(budget),
        };
    }
}

pub(super) fn read(r: &Reader<'_>) -> Result<ListenerLimits, ConfigError> {
    let mut l = ListenerLimits::default();
    let ms = |k: &str, d: Duration| -> Result<Duration, ConfigError> {
        Ok(r.positive(k)?.map(Duration::from_millis).unwrap_or(d))
    };
    let p = &mut l.public;
    p.max_connections = r
        .parse(
            "mock.http.max_connections",
            "a number of connections (0: from the descriptor limit)",
        )?
        .unwrap_or(0);
    p.header_timeout = ms("mock.http.header_timeout_ms", p.header_timeout)?;
    p.body_timeout = ms("mock.http.body_timeout_ms", p.body_timeout)?;
    p.max_header_bytes = r
        .positive("mock.http.max_header_bytes")?
        .map_or(p.max_header_bytes, |v| v as usize);
    p.max_body_bytes = r
        .positive("mock.http.max_body_bytes")?
        .map_or(p.max_body_bytes, |v| v as usize);
    l.admin.max_connections = r
        .positive("mock.admin.max_connections")?
        .map_or(l.admin.max_connections, |v| v as usize);
    Ok(l)
}
