//! The durable spool: one file per notification, written before the commit
//! callback returns, removed after the endpoint accepted it.
//!
//! Layout: `<spool_dir>/<euid>/<endpoint key>/`
//! - `<created ms>-<pid>-<seq>.ntf`: `OXPUSH1 <id> <created ms>\n<body>`;
//!   written under `tmp/` and renamed into place, so a reader never sees half a file;
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    dir: PathBuf,
    pid: u32,
    fsync: bool,
    seq: AtomicU64,
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

impl Spool {
    /// Opens (creating) the endpoint's spool directory and takes our owner lock.
    pub fn open(root: &Path, key: &str, label: &str, fsync: bool) -> io::Result<Spool> {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let dir = root.join(euid.to_string()).join(key);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("tmp"))?;
        let pid = std::process::id();
        let owner = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(format!("owner-{pid}.lock")))?;
        if !flock_nb(&owner) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "owner lock held by another process",
            ));
        }
        let label_path = dir.join("label");
        if fs::read_to_string(&label_path).ok().as_deref() != Some(label) {
            let _ = fs::write(&label_path, label);
        }
        // Prove the directory is writable now, not at the first delivery.
        let probe = dir.join("tmp").join(format!("probe-{pid}"));
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        Ok(Spool {
            dir,
            pid,
            fsync,
            seq: AtomicU64::new(0),
            _owner: owner,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the item's file; on success `item.file` names it.
    pub fn write(&self, item: &mut Item) -> io::Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{:016}-{}-{}.ntf", item.created_ms, self.pid, seq);
        let tmp = self.dir.join("tmp").join(&name);
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut data = format!("OXPUSH1 {} {}\n", item.id, item.created_ms).into_bytes();
        data.extend_from_slice(&item.body);
        let written = f.write_all(&data).and_then(|_| {
            if self.fsync {
                f.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let dest = self.dir.join(&name);
        fs::rename(&tmp, &dest)?;
        if self.fsync {
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        item.file = Some(dest);
        Ok(())
    }

    pub fn remove(&self, item: &Item) {
        if let Some(f) = &item.file {
            let _ = fs::remove_file(f);
        }
    }

    /// Files left by dead processes (and by an earlier process with our pid),
    /// claimed for us, oldest first. `known` tells which files we already hold.
    pub fn claim_orphans(&self, known: &dyn Fn(&Path) -> bool) -> Vec<Item> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".ntf"))
            .collect();
        names.sort();
        let mut dead_checked: std::collections::HashMap<u32, Option<File>> = Default::default();
        let mut out = Vec::new();
        for name in names {
            let Some((_, pid)) = parse_name(&name) else {
                continue;
            };
            let path = self.dir.join(&name);
            if pid == self.pid {
                if known(&path) {
                    continue;
                }
            } else {
                let lock = dead_checked.entry(pid).or_insert_with(|| {
                    let lock_path = self.dir.join(format!("owner-{pid}.lock"));
                    match File::open(&lock_path) {
                        Ok(f) if flock_nb(&f) => Some(f),
                        Ok(_) => None, // alive
                        Err(_) => Some(File::open("/dev/null").ok()?),
                    }
                });
                if lock.is_none() {
                    continue;
                }
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let created = parse_name(&name).map_or(0, |(c, _)| c);
            let new_path = self
                .dir
                .join(format!("{:016}-{}-{}.ntf", created, self.pid, seq));
            if pid != self.pid && fs::rename(&path, &new_path).is_err() {
                continue; // someone else claimed it first
            }
            let path = if pid == self.pid { path } else { new_path };
            match read_item(&path) {
                Some(item) => out.push(item),
                None => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        // Remove the lock files of the dead processes we took over.
        for (pid, lock) in dead_checked {
            if lock.is_some() && pid != self.pid {
                let _ = fs::remove_file(self.dir.join(format!("owner-{pid}.lock")));
            }
        }
        out
    }
}

fn read_item(path: &Path) -> Option<Item> {
    let data = fs::read(path).ok()?;
    let nl = data.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    let mut parts = head.split(' ');
    if parts.next()? != "OXPUSH1" {
        return None;
    }
    let id = parts.next()?.to_string();
    let created_ms = parts.next()?.parse().ok()?;
    Some(Item {
        id,
        created_ms,
        body: data[nl + 1..].to_vec(),
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
            assert!(s.claim_orphans(&|p| p == held).is_empty());
        }
        // ...but a new spool in this process (same pid, earlier instance gone)
        // sees it as a leftover.
        let s = Spool::open(&root, "k", "http://h/", false).unwrap();
        let got = s.claim_orphans(&|_| false);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id.as_str(), got[0].body.as_slice()), ("id2", &b"{\"n\":2}"[..]));
        // A dead process's files (no lock holder) are claimed and renamed.
        let dead = s.dir().join("0000000000000005-999999-0.ntf");
        fs::write(&dead, b"OXPUSH1 x 5\n{}").unwrap();
        let got = s.claim_orphans(&|p| p.to_string_lossy().contains("-0.ntf") && false);
        assert!(got.iter().any(|i| i.id == "x"));
        assert!(!dead.exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn live_owner_keeps_its_files() {
        let root = std::env::temp_dir().join(format!("oxspool-live-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let s = Spool::open(&root, "k", "l", false).unwrap();
        // Simulate another live process: its lock file, locked by a separate fd.
        let other = s.dir().join("owner-4242424.lock");
        let f = File::create(&other).unwrap();
        assert!(flock_nb(&f));
        fs::write(s.dir().join("0000000000000001-4242424-0.ntf"), b"OXPUSH1 y 1\n{}").unwrap();
        assert!(s.claim_orphans(&|_| false).is_empty());
        drop(f);
        assert_eq!(s.claim_orphans(&|_| false).len(), 1);
        let _ = fs::remove_dir_all(&root);
    }
}
