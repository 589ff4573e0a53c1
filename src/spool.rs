//! The durable spool: one file per notification, written before the commit
//! callback returns, removed after the endpoint accepted it.
//!
//! Layout: `<spool_dir>/<euid>/<endpoint key>/`
//! - `<created ms>-<pid>-<seq>.ntf`: `OXPUSH2 <id> <created ms> <body length>\n<body>`,
//!   written with one create and one write; the length exposes a file torn by a crash;
//! - `owner-<pid>.lock`: flocked by process `<pid>` for as long as it lives; files
//!   named with the pid of a process whose lock can be taken belong to a dead
//!   process and are claimed (renamed to the claimer's pid: rename is atomic, so
//!   two processes never send the same file);
//! - `label`: the endpoint URL with its password masked, for `ox-push-stats`;
//! - `stats-<pid>.json`: that process's counters.
//!
//! The per-euid level keeps processes of different mail uids apart (mail
//! processes run as the user's uid); the spool root should be mode 1777 like
//! /tmp (`make install` creates it so).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One queued notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub created_ms: u64,
    pub body: Vec<u8>,
    /// The spool file, if the item is spooled.
    pub file: Option<PathBuf>,
}

impl Item {
    pub fn size(&self) -> u64 {
        self.body.len() as u64 + 64
    }
}

pub struct Spool {
    root: PathBuf,
    key: String,
    label: String,
    pid: u32,
    fsync: bool,
    seq: AtomicU64,
    /// Per effective uid: the endpoint directory and our owner lock in it.
    /// LMTP runs as root and switches its euid to each recipient's uid, so one
    /// process writes into several uid directories.
    dirs: Mutex<HashMap<u32, Arc<Dir>>>,
    /// The euid the spool was opened with: where this process's stats live.
    home_uid: u32,
}

struct Dir {
    path: PathBuf,
    /// Held for the life of the process: marks our files as ours.
    _owner: File,
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

fn parse_name(name: &str) -> Option<(u64, u32)> {
    let stem = name.strip_suffix(".ntf")?;
    let mut parts = stem.split('-');
    let created = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    Some((created, pid))
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
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
            seq: AtomicU64::new(0),
            dirs: Mutex::new(HashMap::new()),
            home_uid: euid(),
        };
        let dir = spool.dir_for(euid())?;
        // Prove the directory is writable now.
        let probe = dir.path.join("tmp").join(format!("probe-{}", spool.pid));
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        Ok(spool)
    }

    /// The directory of the current euid.
    pub fn dir(&self) -> Option<PathBuf> {
        self.dir_for(euid()).ok().map(|d| d.path.clone())
    }

    fn dir_for(&self, uid: u32) -> io::Result<Arc<Dir>> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = dirs.get(&uid) {
            if d.path.exists() {
                return Ok(d.clone());
            }
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
        });
        dirs.insert(uid, dir.clone());
        Ok(dir)
    }

    /// Writes the item's file (into the current euid's directory); on success
    /// `item.file` names it. One create and one write: no rename, because
    /// other processes never read a live process's files, and the header
    /// carries the body length so that a file torn by a crash is recognised.
    pub fn write(&self, item: &mut Item) -> io::Result<()> {
        let dir = self.dir_for(euid())?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = dir
            .path
            .join(format!("{:016}-{}-{}.ntf", item.created_ms, self.pid, seq));
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        let mut data = Vec::with_capacity(item.body.len() + 80);
        data.extend_from_slice(
            format!(
                "OXPUSH2 {} {} {}\n",
                item.id,
                item.created_ms,
                item.body.len()
            )
            .as_bytes(),
        );
        data.extend_from_slice(&item.body);
        let written =
            f.write_all(&data)
                .and_then(|_| if self.fsync { f.sync_all() } else { Ok(()) });
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        if self.fsync {
            if let Ok(d) = File::open(&dir.path) {
                let _ = d.sync_all();
            }
        }
        item.file = Some(path);
        Ok(())
    }

    /// Removes a file. False when the current euid may not (LMTP is serving
    /// another uid right now): the caller retries later.
    pub fn remove_file(&self, file: &Path) -> bool {
        match fs::remove_file(file) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(_) => false,
        }
    }

    pub fn remove(&self, item: &Item) -> bool {
        item.file.as_deref().is_none_or(|f| self.remove_file(f))
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

    /// Files left by dead processes, claimed for us, oldest first. With
    /// `own`, also files named with our pid that `known` does not hold (left by
    /// an earlier process with the same pid): only at start, since later our
    /// own new files are briefly on disk before they are queued.
    pub fn claim_orphans(&self, own: bool, known: &dyn Fn(&Path) -> bool) -> Vec<Item> {
        let mut out = Vec::new();
        for (uid, path) in self.visible_dirs() {
            let Ok(entries) = fs::read_dir(&path) else {
                continue;
            };
            let names: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            let mut ntf: Vec<&String> = names.iter().filter(|n| n.ends_with(".ntf")).collect();
            ntf.sort();
            let mut dead: HashMap<u32, bool> = HashMap::new();
            let mut is_dead = |pid: u32| -> bool {
                *dead.entry(pid).or_insert_with(|| {
                    match File::open(path.join(format!("owner-{pid}.lock"))) {
                        // Taking the lock proves the owner is gone; it is
                        // released when `f` drops, and the file removed below.
                        Ok(f) => flock_nb(&f),
                        Err(_) => true,
                    }
                })
            };
            let mut claimed_any = false;
            for name in &ntf {
                let Some((created, pid)) = parse_name(name) else {
                    continue;
                };
                let file = path.join(name);
                if pid == self.pid {
                    if !own || known(&file) {
                        continue;
                    }
                } else if !is_dead(pid) {
                    continue;
                }
                // We must hold our own owner lock in this directory before
                // files carry our pid there.
                if !claimed_any {
                    if self.dir_for(uid).is_err() {
                        break;
                    }
                    claimed_any = true;
                }
                let target = if pid == self.pid {
                    file
                } else {
                    let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                    let new = path.join(format!("{created:016}-{}-{seq}.ntf", self.pid));
                    if fs::rename(&file, &new).is_err() {
                        continue; // someone else claimed it first
                    }
                    new
                };
                match read_item(&target) {
                    Some(item) => out.push(item),
                    None => {
                        let _ = fs::remove_file(&target);
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
            // Lock files of processes that are gone and left nothing behind.
            for name in &names {
                let Some(pid) = name
                    .strip_prefix("owner-")
                    .and_then(|r| r.strip_suffix(".lock"))
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                let has_files = ntf
                    .iter()
                    .any(|n| parse_name(n).is_some_and(|(_, p)| p == pid));
                if pid != self.pid && !has_files && is_dead(pid) {
                    let _ = fs::remove_file(path.join(name));
                }
            }
        }
        out.sort_by_key(|i| i.created_ms);
        out
    }

    /// At exit: drop our owner locks where we left no files.
    pub fn release(&self) {
        let dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        for d in dirs.values() {
            let ours = format!("-{}-", self.pid);
            let has_files = fs::read_dir(&d.path)
                .map(|it| {
                    it.flatten().any(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.ends_with(".ntf") && n.contains(&ours)
                    })
                })
                .unwrap_or(true);
            if !has_files {
                let _ = fs::remove_file(d.path.join(format!("owner-{}.lock", self.pid)));
            }
        }
    }

    /// Writes this process's counters into the directory of the euid the spool
    /// was opened with (one file per process, whatever LMTP's euid is now).
    pub fn write_stats(&self, json: &str) {
        let dir = self.root.join(self.home_uid.to_string()).join(&self.key);
        {
            let name = format!("stats-{}.json", self.pid);
            let tmp = dir.join("tmp").join(&name);
            if fs::write(&tmp, json).is_ok() {
                let _ = fs::rename(&tmp, dir.join(&name));
            }
        }
    }
}

fn read_item(path: &Path) -> Option<Item> {
    let data = fs::read(path).ok()?;
    let nl = data.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    let mut parts = head.split(' ');
    if parts.next()? != "OXPUSH2" {
        return None;
    }
    let id = parts.next()?.to_string();
    let created_ms = parts.next()?.parse().ok()?;
    let len: usize = parts.next()?.parse().ok()?;
    let body = &data[nl + 1..];
    // A file torn by a crash (or the machine going down without
    // spool_fsync) is not sent half.
    if body.len() != len {
        return None;
    }
    Some(Item {
        id,
        created_ms,
        body: body.to_vec(),
        file: Some(path.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64) -> Item {
        Item {
            id: format!("id{n}"),
            created_ms: 1000 + n,
            body: format!("{{\"n\":{n}}}").into_bytes(),
            file: None,
        }
    }

    #[test]
    fn write_read_and_own_leftovers() {
        let root = std::env::temp_dir().join(format!("oxspool-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        {
            let s = Spool::open(&root, "k", "http://h/", false).unwrap();
            let mut a = item(1);
            s.write(&mut a).unwrap();
            let mut b = item(2);
            s.write(&mut b).unwrap();
            s.remove(&a);
            // A file we hold is not claimed again...
            let held = b.file.clone().unwrap();
            assert!(s.claim_orphans(true, &|p| p == held).is_empty());
        }
        // ...but a new spool in this process (same pid, earlier instance gone)
        // sees it as a leftover.
        let s = Spool::open(&root, "k", "http://h/", false).unwrap();
        let got = s.claim_orphans(true, &|_| false);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].id.as_str(), got[0].body.as_slice()),
            ("id2", &b"{\"n\":2}"[..])
        );
        // A dead process's files (no lock holder) are claimed and renamed.
        let dead = s.dir().unwrap().join("0000000000000005-999999-0.ntf");
        fs::write(&dead, b"OXPUSH2 x 5 2\n{}").unwrap();
        let got = s.claim_orphans(true, &|_| false);
        assert!(got.iter().any(|i| i.id == "x"));
        assert!(!dead.exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn fsync_mode_writes_durably_readable_files() {
        let root = std::env::temp_dir().join(format!("oxspool-fsync-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let s = Spool::open(&root, "k", "l", true).unwrap();
        let mut a = item(7);
        s.write(&mut a).unwrap();
        let path = a.file.clone().unwrap();
        assert_eq!(read_item(&path).unwrap().body, b"{\"n\":7}");
        assert!(s.remove(&a));
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn live_owner_keeps_its_files() {
        let root = std::env::temp_dir().join(format!("oxspool-live-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let s = Spool::open(&root, "k", "l", false).unwrap();
        // Simulate another live process: its lock file, locked by a separate fd.
        let other = s.dir().unwrap().join("owner-4242424.lock");
        let f = File::create(&other).unwrap();
        assert!(flock_nb(&f));
        fs::write(
            s.dir().unwrap().join("0000000000000001-4242424-0.ntf"),
            b"OXPUSH2 y 1 2\n{}",
        )
        .unwrap();
        assert!(s.claim_orphans(true, &|_| false).is_empty());
        drop(f);
        assert_eq!(s.claim_orphans(true, &|_| false).len(), 1);
        let _ = fs::remove_dir_all(&root);
    }
}
