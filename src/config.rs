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
//! the URL's password.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::endpoint::EndpointUrl;
use crate::json::Event;

pub const DEFAULT_CACHE_LIFETIME_SECS: u32 = 60;
pub const DEFAULT_MAX_RETRIES: u32 = 1;
pub const DEFAULT_TIMEOUT_MSECS: u32 = 2000;
pub const DEFAULT_SPOOL_DIR: &str = "/var/spool/dovecot-ox-push";
pub const DEFAULT_SPOOL_MAX_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_AGE_SECS: u32 = 600;
pub const DEFAULT_SHUTDOWN_TIMEOUT_MSECS: u32 = 100;
/// The header that carries the notification id when `notification_id` is on.
pub const NOTIFICATION_ID_HEADER: &str = "X-Notification-Id";

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
    pub spool_dir: PathBuf,
    pub spool_max_size: u64,
    pub spool_fsync: bool,
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

/// [`parse`], remembered per raw config for the life of the process: every
/// mail user of a process normally has the same few driver lines, and a
/// delivery should not parse them again.
pub fn parse_cached(raw: &str) -> Result<(Config, Vec<Complaint>), String> {
    type Parsed = Result<(Config, Vec<Complaint>), String>;
    static CACHE: once_cell::sync::Lazy<std::sync::Mutex<HashMap<String, Parsed>>> =
        once_cell::sync::Lazy::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(raw) {
        return p.clone();
    }
    let p = parse(raw);
    // Bounded: a process with ever new driver lines just parses each time.
    if cache.len() < 64 {
        cache.insert(raw.to_string(), p.clone());
    }
    p
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

const KNOWN_KEYS: &[&str] = &[
    "url",
    "user_from_metadata",
    "cache_lifetime",
    "max_retries",
    "timeout_msecs",
    "spool_dir",
    "spool_max_size",
    "spool_fsync",
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
    let url = EndpointUrl::parse(url_raw).map_err(|e| {
        format!(
            "Failed to parse OX REST URL {}: {e} (expected an absolute http:// or https:// URL); \
             this driver instance is disabled",
            crate::endpoint::mask_url(url_raw)
        )
    })?;

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

    let spool_dir = match map.get("spool_dir") {
        Some(v) if v.starts_with('/') => PathBuf::from(v),
        Some(v) => {
            warnings.push(Complaint::Warning(format!(
                "Invalid spool_dir={v}: expected an absolute path; using {DEFAULT_SPOOL_DIR}"
            )));
            PathBuf::from(DEFAULT_SPOOL_DIR)
        }
        None => PathBuf::from(DEFAULT_SPOOL_DIR),
    };
    let spool_max_size = match map.get("spool_max_size") {
        None => DEFAULT_SPOOL_MAX_SIZE,
        Some(v) => parse_size(v).unwrap_or_else(|e| {
            warnings.push(Complaint::Warning(format!(
                "Invalid spool_max_size={v}: {e} (expected a size such as 64M); using {}M",
                DEFAULT_SPOOL_MAX_SIZE / 1024 / 1024
            )));
            DEFAULT_SPOOL_MAX_SIZE
        }),
    };
    let spool_fsync = bool_or_default(&map, "spool_fsync", false, &mut warnings);
    let notification_id = bool_or_default(&map, "notification_id", false, &mut warnings);
    let max_age = time_or_default(&map, "max_age", DEFAULT_MAX_AGE_SECS, &mut warnings);
    let shutdown_timeout = match map.get("shutdown_timeout") {
        None => Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MSECS.into()),
        Some(v) => match parse_time_msecs(v) {
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
        None => Folders::List(vec!["INBOX".to_string()]),
        Some(&"*") => Folders::All,
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
                Folders::List(vec!["INBOX".to_string()])
            } else {
                Folders::List(list)
            }
        }
    };

    let events = match map.get("events") {
        None => Event::MessageNew.bit(),
        Some(v) => {
            let mut mask = 0;
            for name in v.split(',').filter(|n| !n.is_empty()) {
                match Event::from_wire_name(name) {
                    Some(e) => mask |= e.bit(),
                    None => warnings.push(Complaint::Warning(format!(
                        "Unknown event {name:?} in events={v}: expected a comma-separated list of \
                         messageNew, messageRead, messageTrash, messageExpunge, flagsSet, \
                         flagsClear; ignoring it"
                    ))),
                }
            }
            if mask == 0 {
                warnings.push(Complaint::Warning(format!(
                    "No valid event in events={v}; using messageNew"
                )));
                mask = Event::MessageNew.bit();
            }
            mask
        }
    };

    for key in map.keys() {
        if !KNOWN_KEYS.contains(key) {
            warnings.push(Complaint::Warning(format!(
                "Unknown setting {key:?} ignored (known: {})",
                KNOWN_KEYS.join(", ")
            )));
        }
    }

    Ok((
        Config {
            url,
            user_from_metadata: map.contains_key("user_from_metadata"),
            cache_lifetime: Duration::from_secs(cache_lifetime.into()),
            max_retries,
            timeout,
            spool_dir,
            spool_max_size,
            spool_fsync,
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

/// Dovecot's `str_to_uint`: decimal digits only, no sign, fits in 32 bits.
pub fn parse_uint(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Leading decimal digits and the rest, like `str_parse_uintmax`.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, s[end..].trim_start_matches(' ')))
}

fn unit_is(unit: &str, full: &str) -> bool {
    unit.len() <= full.len() && full[..unit.len()].eq_ignore_ascii_case(unit)
}

/// Dovecot's `settings_get_time` (seconds; a unit is required unless the value is 0).
pub fn parse_time_secs(s: &str) -> Result<u32, String> {
    parse_time(s, false)
}

/// Dovecot's `settings_get_time_msecs` (milliseconds).
pub fn parse_time_msecs(s: &str) -> Result<u32, String> {
    parse_time(s, true)
}

fn parse_time(s: &str, millis: bool) -> Result<u32, String> {
    let (mut num, unit) = split_number(s).ok_or_else(|| format!("Invalid time interval: {s}"))?;
    if unit.is_empty() && num != 0 {
        return Err(format!(
            "Time interval '{s}' is missing units (add e.g. 's' for seconds)"
        ));
    }
    let base: u64 = if millis { 1000 } else { 1 };
    let mut multiply = base;
    let mut rest = unit;
    match unit.bytes().next().map(|b| b.to_ascii_uppercase()) {
        Some(b'S') if unit_is(unit, "secs") || unit_is(unit, "seconds") => rest = "",
        Some(b'M') => {
            multiply = base * 60;
            if unit_is(unit, "mins") || unit_is(unit, "minutes") {
                rest = "";
            } else if ["msecs", "mseconds", "millisecs", "milliseconds"]
                .iter()
                .any(|f| unit_is(unit, f))
            {
                if !millis && num % 1000 != 0 {
                    return Err(format!("Milliseconds not supported for this setting: {s}"));
                }
                if !millis {
                    num /= 1000;
                }
                multiply = 1;
                rest = "";
            }
        }
        Some(b'H') => {
            multiply = base * 3600;
            if unit_is(unit, "hours") {
                rest = "";
            }
        }
        Some(b'D') => {
            multiply = base * 86400;
            if unit_is(unit, "days") {
                rest = "";
            }
        }
        Some(b'W') => {
            multiply = base * 7 * 86400;
            if unit_is(unit, "weeks") {
                rest = "";
            }
        }
        _ => {}
    }
    if !rest.is_empty() {
        return Err(format!("Invalid time interval: {s}"));
    }
    num.checked_mul(multiply)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("Time interval is too large: {s}"))
}

/// Dovecot's `settings_get_size`: a number with an optional B/K/M/G/T unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_number(s).ok_or_else(|| format!("Invalid size: {s}"))?;
    let mut chars = unit.chars();
    let multiply: u64 = match chars.next().map(|c| c.to_ascii_uppercase()) {
        None => 1,
        Some('B') => 1,
        Some('K') => 1 << 10,
        Some('M') => 1 << 20,
        Some('G') => 1 << 30,
        Some('T') => 1 << 40,
        Some(_) => return Err(format!("Invalid size: {s}")),
    };
    let mut rest: &str = chars.as_str();
    if multiply > 1 {
        rest = rest.strip_prefix(['i', 'I']).unwrap_or(rest);
        rest = rest.strip_prefix(['b', 'B']).unwrap_or(rest);
    }
    if !rest.is_empty() {
        return Err(format!("Invalid size: {s}"));
    }
    num.checked_mul(multiply)
        .ok_or_else(|| format!("Size is too large: {s}"))
}

#[cfg(test)]
mod tests;
