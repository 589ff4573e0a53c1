//! The durable spool: an append-only journal per process, written before the
//! commit callback returns.
//!
//! Layout: `<spool_dir>/<euid>/<endpoint key>/`
//! - `journal-<pid>-<n>.log`: segments (about 1 MiB each) of the records
//!   appended by process `<pid>`: `N <id> <created ms> <body length>\n<body>\n`
//!   when a notification is queued, `A <id>\n` when it was sent or dropped. One
//!   `write(2)` per record, no file created or removed per notification. A segment
//!   whose notifications are all done is removed (the newest is truncated), so
//!   the disk holds about what is queued. A record torn by a crash is ignored.
//! - `owner-<pid>.lock`: flocked by `<pid>` for as long as it lives. The journal
//!   of a process whose lock can be taken is claimed by renaming it (atomic, so two
//!   processes never replay the same journal); its pending records are appended to
//!   the claimer's own journal and queued there.
//! - `label`: the endpoint URL with its password masked, for `ox-push-stats`;
//! - `stats-<pid>.json`: that process's counters.
//!
//! The per-euid level keeps processes of different mail uids apart: mail
//! processes run as the user's uid, and LMTP, running as root, switches its
//! euid to each recipient's. A journal is written through a file descriptor
//! opened once, so later appends and acks work whatever the euid is then.
//! The spool root should be mode 1777 like /tmp (`make install` creates it so).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::journal::new_record;
pub use crate::journal::{pending_in_dir, pending_records};

/// One queued notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub created_ms: u64,
    pub body: Vec<u8>,
    /// Where the item is spooled: (euid directory, journal segment).
    pub journal: Option<(u32, u64)>,
}

impl Item {
    pub fn size(&self) -> u64 {
        self.body.len() as u64 + 64
    }
}

fn flock_nb(f: &File) -> bool {
    // SAFETY: f is an open file; flock has no memory effects.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Stable 64-bit FNV-1a, for the endpoint directory name.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// One euid directory of this endpoint, as this process uses it.
struct Dir {
    path: PathBuf,
    /// Held for the life of the process: marks our journal as ours.
    _owner: File,
    journal: Mutex<Journal>,
}

/// A process's journal in one directory: segments `journal-<pid>-<n>.log`;
/// records go to the newest, a segment is removed once every notification
/// in it was sent or dropped, so the disk holds about what is queued.
struct Journal {
    segments: std::collections::VecDeque<Segment>,
    next: u64,
}

struct Segment {
    no: u64,
    file: File,
    size: u64,
    /// Records written to this segment and not yet acknowledged.
    pending: u64,
}

/// A segment is closed for new records at this size.
const SEGMENT_MAX: u64 = 1 << 20;
/// The newest segment is truncated when nothing is pending and it is this big.
const TRUNCATE_AT: u64 = 64 << 10;

pub struct Spool {
    root: PathBuf,
    key: String,
    label: String,
    pid: u32,
    fsync: bool,
    dirs: Mutex<HashMap<u32, Arc<Dir>>>,
    /// The euid the spool was opened with: where this process's stats live.
    home_uid: u32,
}

impl Spool {
    /// Opens the endpoint's spool for the current euid (creating it), so that
    /// an unusable spool is reported at start, not at the first delivery.
    pub fn open(root: &Path, key: &str, label: &str, fsync: bool) -> io::Result<Spool> {
        let spool = Spool {
            root: root.to_path_buf(),
            key: key.to_string(),
            label: label.to_string(),
            pid: std::process::id(),
            fsync,
            dirs: Mutex::new(HashMap::new()),
            home_uid: euid(),
        };
        let dir = spool.dir_for(euid())?;
        // Prove the directory is writable now.
        let probe = dir.path.join(format!("probe-{}", spool.pid));
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        Ok(spool)
    }

    /// The directory of the current euid (for tests).
    #[cfg(test)]
    pub fn dir(&self) -> Option<PathBuf> {
        self.dir_for(euid()).ok().map(|d| d.path.clone())
    }

    fn segment_name(&self, no: u64) -> String {
        format!("journal-{}-{}.log", self.pid, no)
    }

    fn dir_for(&self, uid: u32) -> io::Result<Arc<Dir>> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = dirs.get(&uid) {
            return Ok(d.clone());
        }
        let path = self.root.join(uid.to_string()).join(&self.key);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path.join("tmp"))?;
        let owner = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path.join(format!("owner-{}.lock", self.pid)))?;
        if !flock_nb(&owner) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "owner lock held by another process",
            ));
        }
        let label_path = path.join("label");
        if fs::read_to_string(&label_path).ok().as_deref() != Some(self.label.as_str()) {
            let _ = fs::write(&label_path, &self.label);
        }
        let dir = Arc::new(Dir {
            path,
            _owner: owner,
            journal: Mutex::new(Journal {
                segments: std::collections::VecDeque::new(),
                next: 0,
            }),
        });
        dirs.insert(uid, dir.clone());
        Ok(dir)
    }

    /// Appends a record to the newest segment (opening a new one when there is
    /// none or it is full); returns the segment number.
    fn append(
        &self,
        dir: &Dir,
        journal: &mut Journal,
        record: &[u8],
        new: bool,
    ) -> io::Result<u64> {
        let full = journal
            .segments
            .back()
            .is_none_or(|s| new && s.size >= SEGMENT_MAX);
        if full {
            let no = journal.next;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(dir.path.join(self.segment_name(no)))?;
            journal.next += 1;
            journal.segments.push_back(Segment {
                no,
                file,
                size: 0,
                pending: 0,
            });
        }
        let seg = journal.segments.back_mut().expect("one segment at least");
        seg.file.write_all(record)?;
        if self.fsync {
            seg.file.sync_data()?;
        }
        seg.size += record.len() as u64;
        if new {
            seg.pending += 1;
        }
        Ok(seg.no)
    }

    /// Appends the item to the current euid's journal; on success
    /// `item.journal` says where.
    pub fn write(&self, item: &mut Item) -> io::Result<()> {
        let uid = euid();
        let dir = self.dir_for(uid)?;
        let record = new_record(item);
        let mut journal = dir.journal.lock().unwrap_or_else(|e| e.into_inner());
        let seg = self.append(&dir, &mut journal, &record, true)?;
        item.journal = Some((uid, seg));
        Ok(())
    }

    /// Records that the item was sent or dropped. A segment whose records are
    /// all done is removed (the newest one is truncated instead).
    pub fn ack(&self, item: &Item) {
        let Some((uid, no)) = item.journal else {
            return;
        };
        let Some(dir) = self
            .dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .cloned()
        else {
            return;
        };
        let mut journal = dir.journal.lock().unwrap_or_else(|e| e.into_inner());
        let newest = journal.segments.back().map(|s| s.no);
        let Some(pos) = journal.segments.iter().position(|s| s.no == no) else {
            return;
        };
        let seg = &mut journal.segments[pos];
        seg.pending = seg.pending.saturating_sub(1);
        if seg.pending == 0 {
            if Some(no) != newest {
                journal.segments.remove(pos);
                let _ = fs::remove_file(dir.path.join(self.segment_name(no)));
                return;
            }
            // Once it has grown, empty the newest segment (O_APPEND: the next
            // record starts at offset 0); a small one just gets the ack, which
            // is cheaper than a truncate per notification.
            if seg.size >= TRUNCATE_AT && seg.file.set_len(0).is_ok() {
                seg.size = 0;
                return;
            }
        }
        let record = format!("A {}\n", item.id);
        let _ = self.append(&dir, &mut journal, record.as_bytes(), false);
    }

    /// The endpoint directories this euid can look into: its own, or all of
    /// them when running as root.
    fn visible_dirs(&self) -> Vec<(u32, PathBuf)> {
        let me = euid();
        if me != 0 {
            return vec![(me, self.root.join(me.to_string()).join(&self.key))];
        }
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let uid: u32 = e.file_name().to_str()?.parse().ok()?;
                let p = e.path().join(&self.key);
                p.is_dir().then_some((uid, p))
            })
            .collect()
    }

    /// Pending notifications of dead processes, claimed for us (appended to our
    /// journal), oldest first. With `own`, also a journal named with our pid
    /// that we have not opened (left by an earlier process with the same pid):
    /// only at start.
    pub fn claim_orphans(&self, own: bool) -> Vec<Item> {
        let mut out = Vec::new();
        for (uid, path) in self.visible_dirs() {
            let Ok(entries) = fs::read_dir(&path) else {
                continue;
            };
            let names: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            let mut dead: HashMap<u32, bool> = HashMap::new();
            let mut is_dead = |pid: u32| -> bool {
                *dead.entry(pid).or_insert_with(|| {
                    match File::open(path.join(format!("owner-{pid}.lock"))) {
                        // Taking the lock proves the owner is gone; it is
                        // released when `f` drops.
                        Ok(f) => flock_nb(&f),
                        Err(_) => true,
                    }
                })
            };
            let opened_own = self
                .dirs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&uid)
                .is_some_and(|d| {
                    d.journal
                        .lock()
                        .map(|j| !j.segments.is_empty())
                        .unwrap_or(true)
                });
            // Segments per process, in order: acks may sit in a later segment
            // than the record they acknowledge.
            let mut by_pid: std::collections::BTreeMap<u32, Vec<(u64, String)>> =
                Default::default();
            for name in &names {
                let Some((pid, no)) = name
                    .strip_prefix("journal-")
                    .and_then(|r| r.strip_suffix(".log"))
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(p, n)| Some((p.parse::<u32>().ok()?, n.parse::<u64>().ok()?)))
                else {
                    continue;
                };
                by_pid.entry(pid).or_default().push((no, name.clone()));
            }
            for (pid, mut segments) in by_pid {
                if pid == self.pid {
                    if !own || opened_own {
                        continue;
                    }
                } else if !is_dead(pid) {
                    continue;
                }
                segments.sort();
                let mut data = Vec::new();
                let mut claimed = Vec::new();
                for (no, name) in &segments {
                    let target = path.join(format!("tmp/claimed-{pid}-{no}-{}.log", self.pid));
                    if fs::rename(path.join(name), &target).is_err() {
                        continue; // someone else claimed it first
                    }
                    if let Ok(d) = fs::read(&target) {
                        data.extend_from_slice(&d);
                    }
                    claimed.push(target);
                }
                if claimed.is_empty() {
                    continue;
                }
                let items = pending_records(&data);
                let mut ok = true;
                if !items.is_empty() {
                    let Ok(dir) = self.dir_for(uid) else { continue };
                    let mut journal = dir.journal.lock().unwrap_or_else(|e| e.into_inner());
                    for mut item in items {
                        match self.append(&dir, &mut journal, &new_record(&item), true) {
                            Ok(seg) => {
                                item.journal = Some((uid, seg));
                                out.push(item);
                            }
                            Err(_) => {
                                ok = false;
                                break;
                            }
                        }
                    }
                }
                if ok {
                    for c in claimed {
                        let _ = fs::remove_file(c);
                    }
                }
            }
            // Counters of processes that are gone: into the archive.
            for name in &names {
                let Some(pid) = name
                    .strip_prefix("stats-")
                    .and_then(|r| r.strip_suffix(".json"))
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid != self.pid && is_dead(pid) {
                    crate::stats::archive(&path, &path.join(name));
                }
            }
            // Lock files of processes that are gone.
            for name in &names {
                let Some(pid) = name
                    .strip_prefix("owner-")
                    .and_then(|r| r.strip_suffix(".lock"))
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid != self.pid && is_dead(pid) {
                    let _ = fs::remove_file(path.join(name));
                }
            }
        }
        out.sort_by_key(|i| i.created_ms);
        out
    }

    /// At exit: remove our journal and lock where nothing is pending.
    pub fn release(&self) {
        let dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        for d in dirs.values() {
            let journal = d.journal.lock().unwrap_or_else(|e| e.into_inner());
            if journal.segments.iter().all(|s| s.pending == 0) {
                for s in &journal.segments {
                    let _ = fs::remove_file(d.path.join(self.segment_name(s.no)));
                }
                let _ = fs::remove_file(d.path.join(format!("owner-{}.lock", self.pid)));
            }
        }
    }

    /// Writes this process's counters into the directory of the euid the spool
    /// was opened with (one file per process, whatever LMTP's euid is now).
    pub fn write_stats(&self, json: &str) {
        let dir = self.root.join(self.home_uid.to_string()).join(&self.key);
        let name = format!("stats-{}.json", self.pid);
        let tmp = dir.join("tmp").join(&name);
        if fs::write(&tmp, json).is_ok() {
            let _ = fs::rename(&tmp, dir.join(&name));
        }
    }
}

#[cfg(test)]
mod tests;
