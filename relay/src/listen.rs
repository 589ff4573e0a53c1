//! Where the relay's socket comes from: Dovecot's master (the service's
//! `unix_listener`, passed as the first listener descriptor), or `--listen`.

use std::ffi::CString;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// `MASTER_LISTEN_FD_FIRST` of Dovecot 2.3's master-interface.h; 2.4 puts
/// its config descriptor there and the listeners one later.
const MASTER_LISTEN_FDS: [RawFd; 2] = [7, 8];
/// `MASTER_STATUS_FD`: where a service reports how many clients it takes.
const MASTER_STATUS_FD: RawFd = 5;
/// `MASTER_DEAD_FD`: the write end of a pipe that reports an error once the
/// master is gone.
pub const MASTER_DEAD_FD: RawFd = 6;

/// True when Dovecot's master started this process.
pub fn under_dovecot() -> bool {
    std::env::var_os("SERVICE_NAME").is_some()
}

fn sockopt(fd: RawFd, opt: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: v and len are valid out-parameters.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

/// The listener Dovecot's master passed (descriptor 7 on 2.3, 8 on 2.4).
pub fn from_master() -> Result<UnixListener, String> {
    let Some(fd) = MASTER_LISTEN_FDS.into_iter().find(|&fd| {
        sockopt(fd, libc::SO_DOMAIN) == Some(libc::AF_UNIX)
            && sockopt(fd, libc::SO_ACCEPTCONN) == Some(1)
    }) else {
        return Err(
            "Dovecot passed no listening unix socket: give the service block one \
                    unix_listener (see dovecot-plugin/95-ox-push.conf)"
                .into(),
        );
    };
    // SAFETY: fd 7 is the listener the master passed; we take ownership.
    let l = unsafe { UnixListener::from_raw_fd(fd) };
    l.set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    Ok(l)
}

/// Tells the master this process is up and takes clients (`struct
/// master_status`: pid, the generation as `uid`, available client slots);
/// without it the master kills the process after 30 seconds.
pub fn report_status() {
    let num = |name: &str| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut rec = [0u8; 12];
    rec[..4].copy_from_slice(&(std::process::id() as i32).to_ne_bytes());
    rec[4..8].copy_from_slice(&num("GENERATION").to_ne_bytes());
    rec[8..].copy_from_slice(&num("CLIENT_LIMIT").max(1).to_ne_bytes());
    // SAFETY: writing a valid buffer to the status pipe the master passed.
    let n = unsafe { libc::write(MASTER_STATUS_FD, rec.as_ptr().cast(), rec.len()) };
    if n != rec.len() as isize {
        crate::log::warning(format!(
            "cannot report to Dovecot's master: {}",
            std::io::Error::last_os_error()
        ));
    }
}

fn gid_of(group: &str) -> Result<u32, String> {
    if let Ok(n) = group.parse() {
        return Ok(n);
    }
    let c = CString::new(group).map_err(|_| "invalid group name".to_string())?;
    // SAFETY: getgrnam returns NULL or a pointer valid until the next call;
    // this runs once, before any thread exists.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        return Err(format!("unknown group {group:?}"));
    }
    // SAFETY: checked non-NULL.
    Ok(unsafe { (*g).gr_gid })
}

/// Binds `path` with `mode` (and `group`). A stale socket of ours at `path`
/// is replaced; anything else there is refused.
pub fn bind(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, String> {
    let shown = path.display();
    if let Ok(md) = std::fs::symlink_metadata(path) {
        // SAFETY: plain getter.
        let me = unsafe { libc::geteuid() };
        if !md.file_type().is_socket() || md.uid() != me {
            return Err(format!(
                "{shown} exists and is not a socket of the relay's user: refused"
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("{shown}: {e}"))?;
    }
    // Nobody may connect before the mode is set: bind with a tight umask.
    // SAFETY: umask is process-wide; this runs before any thread exists.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l.map_err(|e| format!("{shown}: bind failed: {e}"))?;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| "NUL in path".to_string())?;
    if let Some(g) = group {
        let gid = gid_of(g)?;
        // SAFETY: c is a valid path; -1 keeps the owner.
        if unsafe { libc::lchown(c.as_ptr(), u32::MAX, gid) } != 0 {
            return Err(format!(
                "{shown}: chgrp {g} failed: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: c is a valid path.
    if unsafe { libc::chmod(c.as_ptr(), mode) } != 0 {
        return Err(format!(
            "{shown}: chmod failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    l.set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    Ok(l)
}
