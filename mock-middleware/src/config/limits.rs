//! Limits of listeners and logins: connection caps, header and body timeouts, request size
//! caps (`mock.http.*`, `mock.admin.max_connections`; defaults in
//! [`crate::http::listen::Limits`]), login throttling (`mock.login.throttle.*`) and session
//! lifetimes (`mock.session.*`).

use std::time::Duration;

use super::{ConfigError, Reader};
use crate::http::listen::Limits;
use crate::http::throttle::ThrottleSettings;

/// Login throttling and session lifetimes.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub throttle: ThrottleSettings,
    /// A session unused this long expires (`mock.session.idle_timeout_s`, 3600).
    pub session_idle: Duration,
    /// A session expires this long after login whatever its use
    /// (`mock.session.max_lifetime_s`, 86400).
    pub session_max: Duration,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            throttle: ThrottleSettings::default(),
            session_idle: Duration::from_secs(3600),
            session_max: Duration::from_secs(86_400),
        }
    }
}

pub(super) fn read_login(r: &Reader<'_>) -> Result<LoginSettings, ConfigError> {
    let mut l = LoginSettings::default();
    let t = &mut l.throttle;
    t.free = r
        .parse("mock.login.throttle.free_attempts", "a number of attempts")?
        .unwrap_or(t.free);
    t.base = r
        .positive("mock.login.throttle.base_ms")?
        .map_or(t.base, Duration::from_millis);
    t.max = r
        .positive("mock.login.throttle.max_ms")?
        .map_or(t.max, Duration::from_millis);
    l.session_idle = r
        .positive("mock.session.idle_timeout_s")?
        .map_or(l.session_idle, Duration::from_secs);
    l.session_max = r
        .positive("mock.session.max_lifetime_s")?
        .map_or(l.session_max, Duration::from_secs);
    Ok(l)
}

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
