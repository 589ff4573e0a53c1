//! The relay's command line. Under Dovecot it is the service's `executable`
//! line (`executable = /usr/lib/dovecot/ox-push-relay --spool /var/spool/...`);
//! outside Dovecot (tests, a systemd unit) `--listen` names the socket.
//! Sizes take Dovecot's units (`64M`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ox_push_record::units::parse_size;

pub const DEFAULT_SPOOL: &str = "/var/spool/dovecot-ox-push";

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| format!("{e} (expected a size such as 64M)"))
}

fn size_usize(s: &str) -> Result<usize, String> {
    size(s).map(|v| v.min(usize::MAX as u64) as usize)
}

fn mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s}: expected an octal mode such as 0660"))
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ox-push-relay",
    version,
    about = "Takes push notifications from Dovecot's mail processes (the ox_push plugin), \
             spools them, and sends them to the OX middleware with retries."
)]
pub struct Settings {
    /// Listen on this unix socket (outside Dovecot). Under Dovecot's master the
    /// service's unix_listener is used.
    #[arg(long, value_name = "PATH")]
    pub listen: Option<PathBuf>,
    /// Mode of the --listen socket: who may hand in notifications.
    #[arg(long, default_value = "0660", value_parser = mode, value_name = "OCTAL")]
    pub socket_mode: u32,
    /// Group of the --listen socket (default: the relay's group).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// The spool directory: owned by the relay's user, mode 0700.
    #[arg(long, default_value = DEFAULT_SPOOL, value_name = "DIR")]
    pub spool: PathBuf,
    /// The most notification bytes kept; beyond it the oldest are dropped.
    #[arg(long, default_value = "256M", value_parser = size, value_name = "SIZE")]
    pub spool_max_size: u64,
    /// fdatasync the journal before acknowledging (survives a machine crash,
    /// not only a process crash).
    #[arg(long)]
    pub fsync: bool,
    /// Connections (and requests in flight) per endpoint.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// The largest record a mail process may send.
    #[arg(long, default_value = "1M", value_parser = size_usize, value_name = "SIZE")]
    pub max_record_size: usize,
    /// The largest answer body read from the middleware (and header block).
    #[arg(long, default_value = "64K", value_parser = size_usize, value_name = "SIZE")]
    pub response_max_size: usize,
    /// Mail process connections accepted at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_clients: usize,
    /// Serve the counters in the Prometheus text format at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads. One is the default: the relay waits on sockets, and a
    /// second thread mostly adds wake-ups (measured: 60 against 130-160 µs of
    /// CPU per notification at delivery rates, 51,000 against 47,000
    /// notifications/s flat out; docs/BENCHMARKS.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Write debug lines.
    #[arg(long)]
    pub debug: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_dovecot_units() {
        let s = Settings::try_parse_from(["ox-push-relay"]).unwrap();
        assert_eq!(s.spool, PathBuf::from(DEFAULT_SPOOL));
        assert_eq!(s.spool_max_size, 256 << 20);
        assert_eq!(s.max_record_size, 1 << 20);
        assert_eq!(s.socket_mode, 0o660);
        let s = Settings::try_parse_from([
            "r",
            "--spool-max-size",
            "1G",
            "--socket-mode",
            "0600",
            "--concurrency",
            "8",
        ])
        .unwrap();
        assert_eq!(
            (s.spool_max_size, s.socket_mode, s.concurrency),
            (1 << 30, 0o600, 8)
        );
    }

    #[test]
    fn bad_values_name_what_is_expected() {
        let e = Settings::try_parse_from(["r", "--spool-max-size", "lots"]).unwrap_err();
        assert!(e.to_string().contains("expected a size"), "{e}");
        let e = Settings::try_parse_from(["r", "--socket-mode", "999"]).unwrap_err();
        assert!(e.to_string().contains("octal"), "{e}");
        assert!(Settings::try_parse_from(["r", "--concurrency", "0"]).is_err());
    }
}
