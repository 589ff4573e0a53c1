//! Where the state lives and how the nodes of a cluster agree (`mock.db`, `mock.cluster.*`).
//!
//! `mock.db` is a SQLite file (the default: one node) or a `postgres://user@host:port/db` URL
//! (several nodes sharing one database). The nodes of one cluster read the same configuration
//! directory: the same keys, secrets and `cluster.key`.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Reader, Secret};

/// The database `mock.db` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// A SQLite file (relative to the configuration directory).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (may carry a password, hence a [`Secret`]).
    Postgres(Secret),
}

impl DbTarget {
    /// True for PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DbTarget::Postgres(_))
    }
}

/// Cluster behaviour; only PostgreSQL makes several nodes, but a single node runs the same
/// heartbeat, leases and claims against its SQLite file.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's id (`mock.cluster.node_id`); default `<hostname>:<public port>`, so that a
    /// restarted node finds its own leases and unfinished claims again.
    pub node_id: Option<String>,
    /// A node whose heartbeat is older than this is dead: its listener leases and unfinished
    /// notifications move to a live node (`mock.cluster.lease_ms`, 15000).
    pub lease: Duration,
    /// Heartbeat, lease renewal and take-over interval (`mock.cluster.heartbeat_ms`, lease/5).
    pub heartbeat: Duration,
    /// How long finished notification ids are remembered to drop repeats
    /// (`mock.cluster.dedup_keep_s`, 3600: six times the relay's default `max_age` of 10 min).
    pub dedup_keep: Duration,
    /// Key file for the login credentials of live sessions in the shared store
    /// (`mock.cluster.key_file`, `cluster.key` in the directory; created 0600 when missing).
    pub key_file: PathBuf,
    /// PostgreSQL connections per node (`mock.db.pool_size`, 16).
    pub pool_size: usize,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: None,
            lease: Duration::from_millis(15_000),
            heartbeat: Duration::from_millis(3_000),
            dedup_keep: Duration::from_secs(3_600),
            key_file: PathBuf::from("cluster.key"),
            pool_size: 16,
        }
    }
}

/// `mock.db`: a URL selects PostgreSQL, anything else is a SQLite path.
pub(super) fn read_db(r: &Reader<'_>, default: DbTarget) -> Result<DbTarget, ConfigError> {
    let Some(v) = r.string("mock.db") else {
        return Ok(default);
    };
    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
        if v.parse::<tokio_postgres::Config>().is_err() {
            // The URL may carry a password: the error names the key, not the value.
            return Err(ConfigError::Invalid {
                file: r
                    .p
                    .get("mock.db")
                    .map(|v| v.file.display().to_string())
                    .unwrap_or_default(),
                key: "mock.db".into(),
                value: "<a postgres:// URL, not shown>".into(),
                expected: "postgres://user[:password]@host:port/database or a SQLite file path"
                    .into(),
            });
        }
        return Ok(DbTarget::Postgres(Secret::new(v)));
    }
    Ok(DbTarget::Sqlite(
        r.path("mock.db").unwrap_or_else(|| PathBuf::from(v)),
    ))
}

pub(super) fn read(r: &Reader<'_>) -> Result<ClusterSettings, ConfigError> {
    let mut c = ClusterSettings {
        key_file: r
            .path("mock.cluster.key_file")
            .unwrap_or_else(|| r.dir.join("cluster.key")),
        node_id: r.string("mock.cluster.node_id"),
        ..ClusterSettings::default()
    };
    if let Some(ms) = r.positive("mock.cluster.lease_ms")? {
        c.lease = Duration::from_millis(ms);
        c.heartbeat = c.lease / 5;
    }
    if let Some(ms) = r.positive("mock.cluster.heartbeat_ms")? {
        c.heartbeat = Duration::from_millis(ms);
    }
    if c.heartbeat * 2 > c.lease {
        return Err(r.invalid(
            "mock.cluster.heartbeat_ms",
            "at most half of mock.cluster.lease_ms (a live node must renew its leases before they expire)",
        ));
    }
    if let Some(s) = r.positive("mock.cluster.dedup_keep_s")? {
        c.dedup_keep = Duration::from_secs(s);
    }
    if let Some(n) = r.positive("mock.db.pool_size")? {
        c.pool_size = n.min(1024) as usize;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Properties, Settings};

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        let mut p = Properties::default();
        p.merge_text(text, Path::new("/etc/ox/mock.properties"));
        Settings::from_properties(&p, Path::new("/etc/ox"))
    }

    use std::path::Path;

    #[test]
    fn a_postgres_url_selects_postgres_and_a_path_keeps_sqlite() {
        let s = settings("mock.db=postgres://mm:pw@db.example.org:5433/mm\n").unwrap();
        assert!(s.db.is_postgres());
        assert!(
            !format!("{s:?}").contains("pw@"),
            "the URL's password is hidden"
        );
        let s = settings("mock.db=state/mm.sqlite\n").unwrap();
        assert_eq!(s.db, DbTarget::Sqlite("/etc/ox/state/mm.sqlite".into()));
        assert_eq!(
            settings("").unwrap().db,
            DbTarget::Sqlite("mock-middleware.sqlite".into())
        );
    }

    #[test]
    fn a_malformed_url_is_refused_without_printing_it() {
        let e = settings("mock.db=postgres://mm:secret@db:notaport/mm\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mock.db") && e.contains("postgres://user"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn heartbeat_must_leave_room_to_renew_before_the_lease_ends() {
        let s = settings("mock.cluster.lease_ms=3000\n").unwrap();
        assert_eq!(
            (s.cluster.lease.as_millis(), s.cluster.heartbeat.as_millis()),
            (3000, 600)
        );
        let e =
            settings("mock.cluster.lease_ms=3000\nmock.cluster.heartbeat_ms=2000\n").unwrap_err();
        assert!(e.to_string().contains("mock.cluster.heartbeat_ms"), "{e}");
    }
}
