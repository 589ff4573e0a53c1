//! Who the relay runs as: never root.
//!
//! Dovecot's master starts a service's program as root and passes the
//! service's `user`/`group` in the environment (`RESTRICT_SETUID`,
//! `RESTRICT_SETGID`, `RESTRICT_SETEXTRAGROUPS`); libdovecot applies them in
//! Dovecot's own programs, so this program applies them itself before it
//! touches any file or socket: supplementary groups, then gid, then uid, all of
//! real, effective and saved ids. Then, and also when started some other way
//! (systemd's `User=`), it refuses to go on as root. It also makes itself
//! non-dumpable: it holds the middleware's credentials.

use std::ffi::CString;

fn env_id(name: &str) -> Result<Option<u32>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v} is not a numeric id")),
    }
}

/// A group name or number of `RESTRICT_SETEXTRAGROUPS`.
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = CString::new(name).map_err(|_| format!("invalid group name {name:?}"))?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all buffers are valid for the call; out is NULL or points to grp.
    let r = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if r != 0 || out.is_null() {
        return Err(format!("unknown group {name:?} in RESTRICT_SETEXTRAGROUPS"));
    }
    Ok(grp.gr_gid)
}

/// Applies Dovecot's `RESTRICT_*` environment when started as root, then
/// checks that neither the real nor the effective uid or gid is 0.
pub fn drop_privileges() -> Result<(), String> {
    if std::env::var("RESTRICT_CHROOT").is_ok_and(|v| !v.is_empty()) {
        return Err(
            "chroot is not supported for the ox-push service (remove chroot = from its block)"
                .into(),
        );
    }
    let uid = env_id("RESTRICT_SETUID")?;
    let gid = env_id("RESTRICT_SETGID")?;
    // SAFETY: plain getter.
    let is_root = unsafe { libc::geteuid() } == 0;
    if let (true, Some(uid)) = (is_root, uid) {
        let gid = gid.ok_or("RESTRICT_SETUID without RESTRICT_SETGID")?;
        let mut groups = vec![gid];
        if let Ok(extra) = std::env::var("RESTRICT_SETEXTRAGROUPS") {
            for name in extra.split([',', ' ']).filter(|s| !s.is_empty()) {
                groups.push(group_id(name)?);
            }
        }
        // SAFETY: plain syscalls with valid arguments; each result is checked.
        unsafe {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(format!(
                    "setgroups() failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if libc::setresgid(gid, gid, gid) != 0 {
                return Err(format!(
                    "setresgid({gid}) failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if libc::setresuid(uid, uid, uid) != 0 {
                return Err(format!(
                    "setresuid({uid}) failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    check_not_root()?;
    // SAFETY: plain prctl; the credentials in memory must not end in a core
    // file or be readable through ptrace by other processes of this user.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    Ok(())
}

/// The check itself: root (real or effective uid or gid) is refused.
pub fn check_not_root() -> Result<(), String> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: valid out-parameters.
    unsafe {
        libc::getresuid(&mut r, &mut e, &mut s);
        libc::getresgid(&mut rg, &mut eg, &mut sg);
    }
    if r == 0 || e == 0 || s == 0 || rg == 0 || eg == 0 || sg == 0 {
        return Err(
            "ox-push-relay refuses to run as root: give its service block an \
                    unprivileged user (service ox-push { user = ox-push }), or start it as \
                    that user (systemd: User=ox-push)"
                .into(),
        );
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard limit (each client
/// connection and each connection to the middleware is one).
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-parameter / argument.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
