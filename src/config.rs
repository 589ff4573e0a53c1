//! Driver configuration: the value of `push_notification_driver[N] = ox:<config>`.
//!
//! Tokenised exactly as Dovecot's push_notification framework does (split on
//! spaces, empty tokens skipped, `key=value` split at the first `=`, a bare `key`
//! has the value `""`, a later duplicate wins), with the built-in driver's keys and
//! defaults. Where the built-in driver refuses to start (missing or unparsable
//! `url`, `cache_lifetime` without a unit) this instance is disabled instead, so
//! that later `push_notification_driverN` entries keep working. Where it silently
//! falls back (`max_retries`, `timeout_msecs`) we fall back too, but say so.
//! Every complaint names the key, the value and what is expected; none contains
//! any part of the URL's userinfo.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use ox_push_record::units::{parse_time_msecs, parse_time_secs, parse_uint};
use ox_push_record::EndpointUrl;

use crate::json::Event;

pub const DEFAULT_CACHE_LIFETIME_SECS: u32 = 60;
pub const DEFAULT_MAX_RETRIES: u32 = 1;
pub const DEFAULT_TIMEOUT_MSECS: u32 = 2000;
pub const DEFAULT_MAX_AGE_SECS: u32 = 600;
pub const DEFAULT_SHUTDOWN_TIMEOUT_MSECS: u32 = 100;
/// `shutdown_timeout` is capped here: it is how long a mail process may wait
/// at exit for the relay, and `1000h` once kept an lmtp process from exiting.
pub const MAX_SHUTDOWN_TIMEOUT_MSECS: u32 = 10_000;
/// The relay socket's name in Dovecot's `base_dir` (the `unix_listener` of the
/// `ox-push` service).
pub const DEFAULT_RELAY_SOCKET_NAME: &str = "ox-push";

/// Which mailboxes an instance watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Folders {
    /// Every mailbox (`folders=*`).
    All,
    /// Exactly these vnames (the built-in driver: `INBOX` only).
    List(Vec<String>),
}

impl Folders {
    pub fn watches(&self, vname: &[u8]) -> bool {
        match self {
            Folders::All => true,
            Folders::List(list) => list.iter().any(|f| f.as_bytes() == vname),
        }
    }
}

/// One driver instance's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub url: EndpointUrl,
    pub user_from_metadata: bool,
    pub cache_lifetime: Duration,
    pub max_retries: u32,
    pub timeout: Duration,
    /// `relay_socket=`; None: `<base_dir>/ox-push`.
    pub relay_socket: Option<PathBuf>,
    pub max_age: Duration,
    pub shutdown_timeout: Duration,
    pub folders: Folders,
    /// Bit mask of [`Event::bit`].
    pub events: u32,
    pub notification_id: bool,
}

/// A message for the log, produced while parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Complaint {
    Error(String),
    Warning(String),
}

pub type Parsed = Result<(Config, Vec<Complaint>), String>;

/// [`parse`], remembered per raw config for the life of the process: every
/// mail user of a process normally has the same few driver lines, and a
/// delivery should not parse them again.
pub fn parse_cached(raw: &str) -> Rc<Parsed> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Rc<Parsed>>> = RefCell::default();
    }
    CACHE.with_borrow_mut(|cache| {
        if let Some(p) = cache.get(raw) {
            return p.clone();
        }
        let p = Rc::new(parse(raw));
        // Bounded: a process with ever new driver lines just parses each time.
        if cache.len() < 64 {
            cache.insert(raw.to_string(), p.clone());
        }
        p
    })
}

/// True the first time it is asked for `raw` in this process: a driver line's
/// complaints are logged once per process, not once per mail user.
pub fn first_report(raw: &str) -> bool {
    thread_local! {
        static REPORTED: RefCell<std::collections::HashSet<String>> = RefCell::default();
    }
    REPORTED.with_borrow_mut(|set| set.len() < 64 && set.insert(raw.to_string()))
}

/// The endpoint URL, or the one error line that disables the instance.
pub(crate) fn parse_url(raw: &str) -> Result<EndpointUrl, String> {
    EndpointUrl::parse(raw).map_err(|e| {
        // Only the scheme: the rest may hold a part of a password (one with a
        // space in it is cut by the tokenizer, and its halves land anywhere).
        let shown = match raw.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://..."),
            None if raw.starts_with('/') => "(a path)".to_string(),
            None => "(not a URL)".to_string(),
        };
        format!(
            "Failed to parse OX REST URL {shown}: {e} (expected an absolute http:// or https:// \
             URL); this driver instance is disabled"
        )
    })
}

/// The event mask of a list of event names; unknown names are complaints.
pub(crate) fn parse_events<'a>(
    names: impl IntoIterator<Item = &'a str>,
    shown: &str,
    warnings: &mut Vec<Complaint>,
) -> u32 {
    let mut mask = 0;
    for name in names.into_iter().filter(|n| !n.is_empty()) {
        match Event::from_wire_name(name) {
            Some(e) => mask |= e.bit(),
            None => warnings.push(Complaint::Warning(format!(
                "Unknown event {name:?} in {shown}: expected a list of messageNew, \
                 messageRead, messageTrash, messageExpunge, flagsSet, flagsClear; ignoring it"
            ))),
        }
    }
    if mask == 0 {
        warnings.push(Complaint::Warning(format!(
            "No valid event in {shown}; using messageNew"
        )));
        mask = Event::MessageNew.bit();
    }
    mask
}

/// Which folders a list of names means (`*` alone: all).
pub(crate) fn parse_folders(list: Vec<String>) -> Folders {
    if list.len() == 1 && list[0] == "*" {
        Folders::All
    } else if list.is_empty() {
        Folders::List(vec!["INBOX".to_string()])
    } else {
        Folders::List(list)
    }
}

/// Splits the raw config the way the push_notification framework does.
pub fn tokenize(raw: &str) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        match token.split_once('=') {
            Some((k, v)) => map.insert(k, v),
            None => map.insert(token, ""),
        };
    }
    map
}

/// Keys of the per-process spool that the relay took over, and where they went.
const MOVED_KEYS: &[(&str, &str)] = &[
    ("spool_dir", "ox-push-relay --spool DIR"),
    ("spool_max_size", "ox-push-relay --spool-max-size SIZE"),
    ("spool_fsync", "ox-push-relay --fsync"),
];

const KNOWN_KEYS: &[&str] = &[
    "url",
    "user_from_metadata",
    "cache_lifetime",
    "max_retries",
    "timeout_msecs",
    "relay_socket",
    "max_age",
    "shutdown_timeout",
    "folders",
    "events",
    "notification_id",
];

/// Parses one instance's config. `Err` carries the one error line that disables
/// the instance; `Ok` carries the config plus warnings for values that fell back.
pub fn parse(raw: &str) -> Result<(Config, Vec<Complaint>), String> {
    let map = tokenize(raw);
    let mut warnings = Vec::new();

    let url_raw = map.get("url").ok_or_else(|| {
        "Driver requires the url parameter (url=http[s]://[user:password@]host[:port]/path); \
         this driver instance is disabled"
            .to_string()
    })?;
    let url = parse_url(url_raw)?;

    let cache_lifetime = match map.get("cache_lifetime") {
        None => DEFAULT_CACHE_LIFETIME_SECS,
        Some(v) => parse_time_secs(v).map_err(|e| {
            format!(
                "Failed to parse OX cache_lifetime {v}: {e} (expected a time interval such as \
                 60s or 2mins); this driver instance is disabled"
            )
        })?,
    };

    let max_retries = uint_or_default(&map, "max_retries", DEFAULT_MAX_RETRIES, &mut warnings);
    let timeout_msecs =
        uint_or_default(&map, "timeout_msecs", DEFAULT_TIMEOUT_MSECS, &mut warnings);
    // lib-http treats 0 as its own default of one minute.
    let timeout = Duration::from_millis(if timeout_msecs == 0 {
        60_000
    } else {
        u64::from(timeout_msecs)
    });

    let relay_socket = match map.get("relay_socket") {
        None => None,
        Some(v) if v.starts_with('/') => Some(PathBuf::from(v)),
        Some(v) => {
            warnings.push(Complaint::Warning(format!(
                "Invalid relay_socket={v}: expected an absolute path; using \
                 <base_dir>/{DEFAULT_RELAY_SOCKET_NAME}"
            )));
            None
        }
    };
    let notification_id = bool_or_default(&map, "notification_id", false, &mut warnings);
    let max_age = time_or_default(&map, "max_age", DEFAULT_MAX_AGE_SECS, &mut warnings);
    let shutdown_timeout = match map.get("shutdown_timeout") {
        None => Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MSECS.into()),
        Some(v) => match parse_time_msecs(v) {
            Ok(ms) if ms > MAX_SHUTDOWN_TIMEOUT_MSECS => {
                warnings.push(Complaint::Warning(format!(
                    "shutdown_timeout={v} is above the maximum of {MAX_SHUTDOWN_TIMEOUT_MSECS}ms \
                     (it is how long a mail process may wait for the relay at exit); using \
                     {MAX_SHUTDOWN_TIMEOUT_MSECS}ms"
                )));
                Duration::from_millis(MAX_SHUTDOWN_TIMEOUT_MSECS.into())
            }
            Ok(ms) => Duration::from_millis(ms.into()),
            Err(e) => {
                warnings.push(Complaint::Warning(format!(
                    "Invalid shutdown_timeout={v}: {e} (expected a time such as 100ms or 1s); \
                     using {DEFAULT_SHUTDOWN_TIMEOUT_MSECS}ms"
                )));
                Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MSECS.into())
            }
        },
    };

    let folders = match map.get("folders") {
        None => parse_folders(Vec::new()),
        Some(v) => {
            let list: Vec<String> = v
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            if list.is_empty() {
                warnings.push(Complaint::Warning(format!(
                    "Invalid folders={v}: expected a comma-separated list of mailbox names or *; \
                     using INBOX"
                )));
            }
            parse_folders(list)
        }
    };

    let events = match map.get("events") {
        None => Event::MessageNew.bit(),
        Some(v) => parse_events(v.split(','), &format!("events={v}"), &mut warnings),
    };

    for key in map.keys() {
        if KNOWN_KEYS.contains(key) {
            continue;
        }
        if let Some(to) = MOVED_KEYS.iter().find(|(k, _)| k == key).map(|(_, to)| to) {
            warnings.push(Complaint::Warning(format!(
                "{key} is no longer a driver setting: the ox-push relay service owns the spool \
                 now (set it there: {to}; see PLUGIN.md); ignored here"
            )));
        } else if key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            warnings.push(Complaint::Warning(format!(
                "Unknown setting {key:?} ignored (known: {})",
                KNOWN_KEYS.join(", ")
            )));
        } else {
            // Not a key name: most likely the second half of a value that had
            // a space in it, e.g. a password. Never quote it.
            warnings.push(Complaint::Warning(
                "A word that is not a setting name was ignored: values cannot contain spaces \
                 (a password with a space must be percent-encoded as %%20)"
                    .to_string(),
            ));
        }
    }

    Ok((
        Config {
            url,
            user_from_metadata: map.contains_key("user_from_metadata"),
            cache_lifetime: Duration::from_secs(cache_lifetime.into()),
            max_retries,
            timeout,
            relay_socket,
            max_age: Duration::from_secs(max_age.into()),
            shutdown_timeout,
            folders,
            events,
            notification_id,
        },
        warnings,
    ))
}

fn uint_or_default(
    map: &BTreeMap<&str, &str>,
    key: &str,
    default: u32,
    warnings: &mut Vec<Complaint>,
) -> u32 {
    match map.get(key) {
        None => default,
        Some(v) => parse_uint(v).unwrap_or_else(|| {
            warnings.push(Complaint::Warning(format!(
                "Invalid {key}={v}: expected an unsigned integer; using the default {default}"
            )));
            default
        }),
    }
}

fn time_or_default(
    map: &BTreeMap<&str, &str>,
    key: &str,
    default_secs: u32,
    warnings: &mut Vec<Complaint>,
) -> u32 {
    match map.get(key) {
        None => default_secs,
        Some(v) => parse_time_secs(v).unwrap_or_else(|e| {
            warnings.push(Complaint::Warning(format!(
                "Invalid {key}={v}: {e} (expected a time interval such as 10mins); using the \
                 default {default_secs}s"
            )));
            default_secs
        }),
    }
}

fn bool_or_default(
    map: &BTreeMap<&str, &str>,
    key: &str,
    default: bool,
    warnings: &mut Vec<Complaint>,
) -> bool {
    match map.get(key).map(|v| v.to_ascii_lowercase()) {
        None => default,
        // A bare key turns the option on, like `user_from_metadata`.
        Some(v) if v.is_empty() || v == "yes" || v == "true" || v == "1" => true,
        Some(v) if v == "no" || v == "false" || v == "0" => false,
        Some(v) => {
            warnings.push(Complaint::Warning(format!(
                "Invalid {key}={v}: expected yes or no; using {}",
                if default { "yes" } else { "no" }
            )));
            default
        }
    }
}

mod blocks;
pub use blocks::{from_block, BlockSettings};

#[cfg(test)]
mod tests;
