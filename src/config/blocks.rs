//! Dovecot 2.4: the settings of one `push_notification <name> { }` block, as
//! Dovecot's own settings parser already typed and checked them (the built-in
//! driver's `ox_url`, `ox_user_from_metadata`, `ox_cache_ttl`, the block's
//! `http_client_request_timeout`, and this plugin's `ox_push_*` keys, which
//! the settings module registers). What is left to check here is what only we
//! know: the URL as the relay will use it, event names, folder lists.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_events, parse_folders, parse_url, Complaint, Config};

/// One block's values (borrowed from the shim for the call).
#[derive(Clone, Debug, Default)]
pub struct BlockSettings<'a> {
    /// The block's name (`push_notification <name> { }`), for messages.
    pub name: &'a str,
    pub url: &'a str,
    pub user_from_metadata: bool,
    /// `ox_cache_ttl`, milliseconds as the setting is documented (Dovecot
    /// 2.4.1's built-in driver adds it to a seconds clock instead).
    pub cache_ttl_msecs: u64,
    /// `http_client_request_timeout` of the block; 0 means lib-http's one minute.
    pub request_timeout_msecs: u32,
    pub max_age_secs: u32,
    pub shutdown_timeout_msecs: u32,
    pub folders: Vec<String>,
    pub events: Vec<&'a str>,
    pub notification_id: bool,
    /// `""`: `<base_dir>/ox-push`.
    pub relay_socket: &'a str,
}

/// The configuration of a block, or the one error line that disables it.
pub fn from_block(b: &BlockSettings<'_>) -> Result<(Config, Vec<Complaint>), String> {
    let mut warnings = Vec::new();
    if b.url.is_empty() {
        return Err(format!(
            "push_notification {} {{ }} has no ox_url (ox_url = http[s]://[user:password@]host[:port]/path); \
             this driver instance is disabled",
            b.name
        ));
    }
    let url = parse_url(b.url)?;
    let events = if b.events.is_empty() {
        crate::json::Event::MessageNew.bit()
    } else {
        parse_events(b.events.iter().copied(), "ox_push_events", &mut warnings)
    };
    let timeout = Duration::from_millis(if b.request_timeout_msecs == 0 {
        60_000
    } else {
        u64::from(b.request_timeout_msecs)
    });
    // Dovecot's check already refuses a relative path and a shutdown_timeout
    // over the maximum; a value that slipped past is capped, not trusted.
    let shutdown = b
        .shutdown_timeout_msecs
        .min(super::MAX_SHUTDOWN_TIMEOUT_MSECS);
    Ok((
        Config {
            url,
            user_from_metadata: b.user_from_metadata,
            cache_lifetime: Duration::from_millis(b.cache_ttl_msecs),
            max_retries: super::DEFAULT_MAX_RETRIES,
            timeout,
            relay_socket: (b.relay_socket.starts_with('/')).then(|| PathBuf::from(b.relay_socket)),
            max_age: Duration::from_secs(u64::from(b.max_age_secs.max(1))),
            shutdown_timeout: Duration::from_millis(shutdown.into()),
            folders: parse_folders(b.folders.clone()),
            events,
            notification_id: b.notification_id,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Event;

    fn block<'a>() -> BlockSettings<'a> {
        BlockSettings {
            name: "ox",
            url: "http://u:p@127.0.0.1:8009/n",
            cache_ttl_msecs: 60_000,
            max_age_secs: 600,
            shutdown_timeout_msecs: 100,
            ..Default::default()
        }
    }

    #[test]
    fn a_block_with_defaults_is_the_2_3_default_config() {
        let (c, w) = from_block(&block()).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            c.cache_lifetime,
            Duration::from_secs(60),
            "ox_cache_ttl is milliseconds"
        );
        assert_eq!(c.timeout, Duration::from_secs(60), "lib-http's default");
        assert_eq!(c.events, Event::MessageNew.bit());
        assert!(c.folders.watches(b"INBOX") && !c.folders.watches(b"Other"));
        assert_eq!(c.relay_socket, None);
    }

    #[test]
    fn lists_and_socket() {
        let b = BlockSettings {
            folders: vec!["*".into()],
            events: vec!["messageNew", "flagsSet", "bogus"],
            relay_socket: "/run/x/ox-push",
            request_timeout_msecs: 2000,
            ..block()
        };
        let (c, w) = from_block(&b).unwrap();
        assert!(c.folders.watches(b"Anything"));
        assert_eq!(c.events, Event::MessageNew.bit() | Event::FlagsSet.bit());
        assert!(format!("{w:?}").contains("bogus"));
        assert_eq!(c.relay_socket, Some(PathBuf::from("/run/x/ox-push")));
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_missing_or_bad_url_disables_the_block_without_quoting_it() {
        let e = from_block(&BlockSettings { url: "", ..block() }).unwrap_err();
        assert!(e.contains("push_notification ox { } has no ox_url"), "{e}");
        let e = from_block(&BlockSettings {
            url: "http://u:SECRET@h:0/n",
            ..block()
        })
        .unwrap_err();
        assert!(e.contains("Port 0") && !e.contains("SECRET"), "{e}");
    }
}
