//! Per-endpoint counters as operators read them: each process writes
//! `stats-<pid>.json` in the endpoint's spool directory; counters of processes
//! that are gone are folded into `stats-archive.json` by the next scan, so the
//! totals survive process restarts. [`collect`] sums everything for
//! `ox-push-stats`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// Counters, per endpoint and process.
#[derive(Default, Debug)]
pub struct Stats {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub dropped_age: AtomicU64,
    pub dropped_size: AtomicU64,
    pub failed: AtomicU64,
    pub replayed: AtomicU64,
}

impl Stats {
    pub fn to_json(&self, depth: usize, label: &str) -> String {
        serde_json::json!({
            "endpoint": label,
            "pid": std::process::id(),
            "queued": self.queued.load(Ordering::Relaxed),
            "sent": self.sent.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "dropped_age": self.dropped_age.load(Ordering::Relaxed),
            "dropped_size": self.dropped_size.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "replayed": self.replayed.load(Ordering::Relaxed),
            "depth": depth,
        })
        .to_string()
    }
}

/// The counters every stats file carries.
pub const COUNTERS: [&str; 7] = [
    "queued",
    "sent",
    "retried",
    "dropped_age",
    "dropped_size",
    "failed",
    "replayed",
];

/// Adds the counters of `from` into `into`.
pub fn add(into: &mut Map<String, Value>, from: &Value) {
    for key in COUNTERS {
        let sum = into.get(key).and_then(Value::as_u64).unwrap_or(0)
            + from.get(key).and_then(Value::as_u64).unwrap_or(0);
        into.insert(key.to_string(), Value::from(sum));
    }
}

/// Folds a dead process's stats file into the directory's archive.
pub fn archive(dir: &Path, stats_file: &Path) {
    let Some(dead) = fs::read(stats_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        let _ = fs::remove_file(stats_file);
        return;
    };
    let archive_path = dir.join("stats-archive.json");
    let mut total = fs::read(&archive_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .unwrap_or_default();
    add(&mut total, &dead);
    let tmp = dir.join("tmp").join("stats-archive.json");
    if fs::write(&tmp, Value::Object(total).to_string()).is_ok()
        && fs::rename(&tmp, &archive_path).is_ok()
    {
        let _ = fs::remove_file(stats_file);
    }
}

/// One endpoint's totals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EndpointTotals {
    pub label: String,
    pub counters: BTreeMap<String, u64>,
    /// Notifications waiting in the spool's journals.
    pub depth: u64,
    /// Processes currently reporting.
    pub processes: u64,
}

/// Sums every endpoint directory under `root` (`<root>/<uid>/<key>/`), merging
/// directories of the same endpoint (label) across uids.
pub fn collect(root: &Path) -> std::io::Result<Vec<EndpointTotals>> {
    let mut by_label: BTreeMap<String, EndpointTotals> = BTreeMap::new();
    for uid_dir in fs::read_dir(root)?.flatten() {
        let Ok(keys) = fs::read_dir(uid_dir.path()) else {
            continue;
        };
        for key_dir in keys.flatten() {
            let dir = key_dir.path();
            let label =
                fs::read_to_string(dir.join("label")).unwrap_or_else(|_| dir.display().to_string());
            let t = by_label
                .entry(label.clone())
                .or_insert_with(|| EndpointTotals {
                    label,
                    ..Default::default()
                });
            let Ok(files) = fs::read_dir(&dir) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with("stats-") && name.ends_with(".json") {
                    let Some(v) = fs::read(f.path())
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    else {
                        continue;
                    };
                    if name != "stats-archive.json" {
                        t.processes += 1;
                    }
                    for key in COUNTERS {
                        *t.counters.entry(key.to_string()).or_default() +=
                            v.get(key).and_then(Value::as_u64).unwrap_or(0);
                    }
                }
            }
            t.depth += crate::spool::pending_in_dir(&dir) as u64;
        }
    }
    Ok(by_label.into_values().collect())
}

/// The table `ox-push-stats` prints.
pub fn render(totals: &[EndpointTotals]) -> String {
    let mut out = String::from(
        "endpoint\tqueued\tsent\tretried\tdropped_age\tdropped_size\tfailed\treplayed\tspool_depth\tprocesses\n",
    );
    for t in totals {
        out.push_str(&t.label);
        for key in COUNTERS {
            out.push_str(&format!("\t{}", t.counters.get(key).copied().unwrap_or(0)));
        }
        out.push_str(&format!("\t{}\t{}\n", t.depth, t.processes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_and_collect() {
        let root = std::env::temp_dir().join(format!("oxstats-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("5000").join("abc");
        fs::create_dir_all(dir.join("tmp")).unwrap();
        fs::write(dir.join("label"), "http://u:***@h/n").unwrap();
        fs::write(
            dir.join("stats-1.json"),
            r#"{"queued":3,"sent":2,"retried":1}"#,
        )
        .unwrap();
        fs::write(dir.join("stats-2.json"), r#"{"queued":1,"sent":1}"#).unwrap();
        fs::write(dir.join("journal-3.log"), "N a 1 2\n{}\n").unwrap();
        archive(&dir, &dir.join("stats-1.json"));
        assert!(!dir.join("stats-1.json").exists());
        let t = collect(&root).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].counters["queued"], 4);
        assert_eq!(t[0].counters["sent"], 3);
        assert_eq!(t[0].counters["retried"], 1);
        assert_eq!((t[0].depth, t[0].processes), (1, 1));
        assert!(render(&t).contains("http://u:***@h/n\t4\t3\t1\t0\t0\t0\t0\t1\t1"));
        let _ = fs::remove_dir_all(&root);
    }
}
