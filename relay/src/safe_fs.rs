//! Every file the relay opens, opened the careful way.
//!
//! - The spool is one directory, owned by the relay's user with mode 0700,
//!   checked when it is opened; every file in it is opened relative to the
//!   directory's descriptor, never following a symlink (`O_NOFOLLOW`), and
//!   checked after opening to be a regular file owned by the relay's user.
//!   Reads are bounded. New files are created with `O_EXCL`, mode 0600.
//! - Files named by a client (a CA file or directory from the mail user's
//!   `ssl_client_*` settings) are opened only when neither they nor any
//!   directory above them can be changed by anyone but root or the relay's
//!   user, without blocking (`O_NONBLOCK`: a FIFO is refused, not waited on),
//!   and read with a size bound.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn cstring(s: &[u8]) -> Result<CString, String> {
    CString::new(s).map_err(|_| "a path contains a NUL byte".to_string())
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, String> {
    // SAFETY: stat is plain data; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(format!("fstat() failed: {}", errno()));
    }
    Ok(st)
}

fn euid() -> u32 {
    // SAFETY: plain getter.
    unsafe { libc::geteuid() }
}

fn is(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// Reads all of `file`, failing when it holds more than `max` bytes.
fn read_bounded(file: File, max: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{what}: read failed: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!("{what}: larger than {max} bytes"));
    }
    Ok(buf)
}

/// The relay's spool directory.
pub struct SpoolDir {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl SpoolDir {
    /// Opens (creating it if its parent lets us) the spool directory and checks
    /// that only the relay's user can reach into it.
    pub fn open(path: &Path) -> Result<SpoolDir, String> {
        let shown = path.display();
        if !path.is_absolute() {
            return Err(format!(
                "spool directory {shown}: expected an absolute path"
            ));
        }
        check_ancestors(path)?;
        let c = cstring(path.as_os_str().as_bytes())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: c is a valid C string.
        let mut fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 && errno().raw_os_error() == Some(libc::ENOENT) {
            // SAFETY: as above.
            if unsafe { libc::mkdir(c.as_ptr(), 0o700) } != 0 {
                return Err(format!(
                    "spool directory {shown} does not exist and cannot be created ({}); create \
                     it owned by the relay's user with mode 0700 (make install does)",
                    errno()
                ));
            }
            // SAFETY: as above.
            fd = unsafe { libc::open(c.as_ptr(), flags) };
        }
        if fd < 0 {
            return Err(format!(
                "spool directory {shown}: {} (it must be a directory, not a symlink)",
                errno()
            ));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(&fd)?;
        if st.st_uid != euid() {
            return Err(format!(
                "spool directory {shown} is owned by uid {}, not by the relay's user (uid {}): \
                 chown it to the relay's user, mode 0700",
                st.st_uid,
                euid()
            ));
        }
        if st.st_mode & 0o077 != 0 {
            // Ours: tighten it rather than refuse.
            // SAFETY: fd is open.
            if unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) } != 0 {
                return Err(format!(
                    "spool directory {shown}: chmod 0700 failed: {}",
                    errno()
                ));
            }
            crate::log::warning(format!(
                "spool directory {shown} had mode {:o}: set to 0700",
                st.st_mode & 0o7777
            ));
        }
        Ok(SpoolDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    fn open_at(&self, name: &str, flags: i32, mode: libc::mode_t) -> Result<OwnedFd, String> {
        let c = cstring(name.as_bytes())?;
        // SAFETY: the directory descriptor is open; c is a valid C string.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        if fd < 0 {
            return Err(format!("{}/{name}: {}", self.path.display(), errno()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Checks that an opened entry is a regular file of ours.
    fn check_regular(&self, fd: &OwnedFd, name: &str) -> Result<libc::stat, String> {
        let st = fstat(fd)?;
        if !is(&st, libc::S_IFREG) || st.st_uid != euid() {
            return Err(format!(
                "{}/{name} is not a regular file owned by the relay's user: skipped",
                self.path.display()
            ));
        }
        Ok(st)
    }

    /// The names of the directory's entries.
    pub fn list(&self) -> Result<Vec<String>, String> {
        // SAFETY: dup of an open descriptor; fdopendir takes ownership.
        let dup = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(format!("{}: {}", self.path.display(), errno()));
        }
        // SAFETY: dup is a directory descriptor we own; fdopendir takes it.
        let dir = unsafe { libc::fdopendir(dup) };
        if dir.is_null() {
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(format!("{}: {}", self.path.display(), errno()));
        }
        // SAFETY: rewinddir on a valid DIR (the dup shares the offset).
        unsafe { libc::rewinddir(dir) };
        let mut names = Vec::new();
        loop {
            // SAFETY: dir is valid until closedir below.
            let ent = unsafe { libc::readdir(dir) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is NUL-terminated within the entry.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            if let Ok(s) = name.to_str() {
                if s != "." && s != ".." {
                    names.push(s.to_string());
                }
            }
        }
        // SAFETY: dir came from fdopendir.
        unsafe { libc::closedir(dir) };
        Ok(names)
    }

    /// Reads a file of the spool: regular, ours, at most `max` bytes. A FIFO
    /// or device is refused without blocking.
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let fd = self.open_at(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
        let st = self.check_regular(&fd, name)?;
        if st.st_size as u64 > max {
            return Err(format!(
                "{}/{name} has {} bytes, more than the {max} a spool file can have: skipped",
                self.path.display(),
                st.st_size
            ));
        }
        read_bounded(
            File::from(fd),
            max,
            &format!("{}/{name}", self.path.display()),
        )
    }

    /// Creates a new file (never an existing one), mode 0600, for appending.
    pub fn create(&self, name: &str) -> Result<File, String> {
        let fd = self.open_at(
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_APPEND,
            0o600,
        )?;
        Ok(File::from(fd))
    }

    /// Opens (creating if needed) the lock file and takes its exclusive lock:
    /// one relay per spool.
    pub fn lock(&self) -> Result<File, String> {
        let fd = self.open_at(
            "lock",
            libc::O_RDWR | libc::O_CREAT | libc::O_NONBLOCK,
            0o600,
        )?;
        self.check_regular(&fd, "lock")?;
        // SAFETY: fd is open.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(format!(
                "another ox-push-relay uses the spool {} ({}); only one may run per spool",
                self.path.display(),
                errno()
            ));
        }
        Ok(File::from(fd))
    }

    pub fn unlink(&self, name: &str) -> Result<(), String> {
        let c = cstring(name.as_bytes())?;
        // SAFETY: the directory descriptor is open; c is a valid C string.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(format!(
                "{}/{name}: unlink failed: {}",
                self.path.display(),
                errno()
            ));
        }
        Ok(())
    }

    /// Makes created and removed entries durable.
    pub fn sync(&self) {
        // SAFETY: fd is open.
        unsafe { libc::fsync(self.fd.as_raw_fd()) };
    }
}

/// Fails unless every directory above `path` can be changed only by root or
/// the relay's user (a sticky world-writable directory such as /tmp is fine:
/// others cannot rename or remove what is ours in it).
fn check_ancestors(path: &Path) -> Result<(), String> {
    let me = euid();
    for dir in path.ancestors().skip(1) {
        let Ok(md) = std::fs::metadata(dir) else {
            continue;
        };
        let writable_by_others = md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0;
        if (md.uid() != 0 && md.uid() != me) || writable_by_others {
            return Err(format!(
                "{} is below {}, which someone other than root and the relay's user can \
                 change: refused",
                path.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Reads a file a client named (a CA file): the real path and every directory
/// above it must be changeable only by root or the relay's user, the file a
/// regular file owned by one of them and not writable by others, at most
/// `max` bytes.
pub fn read_trusted(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_ancestors(&real)?;
    let c = cstring(real.as_os_str().as_bytes())?;
    // SAFETY: c is a valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!("{}: {}", real.display(), errno()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(&fd)?;
    let me = euid();
    if !is(&st, libc::S_IFREG) || (st.st_uid != 0 && st.st_uid != me) || st.st_mode & 0o022 != 0 {
        return Err(format!(
            "{} must be a regular file owned by root (or the relay's user) and writable only \
             by its owner",
            real.display()
        ));
    }
    if st.st_size as u64 > max {
        return Err(format!("{}: larger than {max} bytes", real.display()));
    }
    read_bounded(File::from(fd), max, &real.display().to_string())
}

/// The regular files of a directory a client named (a CA directory), with the
/// same rules as [`read_trusted`] for the directory itself.
pub fn list_trusted(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let real = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    check_ancestors(&real.join("x"))?;
    let mut out: Vec<PathBuf> = std::fs::read_dir(&real)
        .map_err(|e| format!("{}: {e}", real.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
