//! The ox-push relay in tests: where its binary is, the unprivileged user it
//! runs as, its counters, and a relay started by hand (outside Dovecot, as a
//! systemd unit would run it) that the test can stop and start again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The relay's user in tests, as `make install` creates it.
pub const RELAY_USER: &str = "ox-push";

/// The relay binary next to the plugin (`target/<profile>/ox-push-relay`), or
/// `$OX_PUSH_RELAY`; built when missing.
pub fn relay_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("OX_PUSH_RELAY") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-binary> -> target/<profile>/ox-push-relay
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("ox-push-relay");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let ws = Path::new(env!("CARGO_MANIFEST_DIR"));
            let ws = if ws.join("relay").exists() {
                ws.to_path_buf()
            } else {
                ws.parent().unwrap().to_path_buf()
            };
            let st = Command::new(cargo)
                .args(["build", "-p", "ox-push-relay", "--bin", "ox-push-relay"])
                .current_dir(ws)
                .status()
                .unwrap();
            assert!(st.success(), "cargo build -p ox-push-relay failed");
        }
        assert!(bin.exists(), "relay not built: {}", bin.display());
        bin
    })
    .clone()
}

fn id_of(kind: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").arg(kind).arg(name).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// (uid, gid) of the relay service's user as Dovecot's system knows it (the
/// host's, or the 2.4 root's, where `make dovecot-2.4` creates it).
pub fn relay_user() -> (u32, u32) {
    match &super::dovecot_env().root {
        Some(_) => super::dovecot_env().ids(RELAY_USER),
        None => host_relay_user(),
    }
}

/// (uid, gid) of the relay's user on the host, created as a system user when
/// missing (a relay started by hand runs on the host).
pub fn host_relay_user() -> (u32, u32) {
    static U: OnceLock<(u32, u32)> = OnceLock::new();
    *U.get_or_init(|| {
        if id_of("-u", RELAY_USER).is_none() {
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(RELAY_USER)
                .status();
        }
        (
            id_of("-u", RELAY_USER).expect("relay user"),
            id_of("-g", RELAY_USER).expect("relay group"),
        )
    })
}

/// The uid and gid of a system user (e.g. "dovecot").
pub fn user_ids(name: &str) -> (u32, u32) {
    (
        id_of("-u", name).unwrap_or_else(|| panic!("no user {name}")),
        id_of("-g", name).unwrap_or_else(|| panic!("no group of {name}")),
    )
}

/// The counters of the relay listening on `socket`.
pub fn relay_stats(socket: &Path) -> serde_json::Value {
    let json = ox_push_record::frame::request_stats(socket, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("relay stats from {}: {e}", socket.display()));
    serde_json::from_slice(&json).unwrap()
}

/// A relay started by hand: as root with Dovecot's `RESTRICT_*` environment,
/// so that it drops to the relay's user itself, with `--listen`.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub spool: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Relay {
    /// A relay whose socket may be used by Dovecot's mail processes (group
    /// dovecot, mode 0660), with extra arguments.
    pub fn start(args: &[&str]) -> Relay {
        // Inside Dovecot's root, so that its mail processes see the socket.
        let dir = super::dovecot_env().tempdir("oxpush-relay-");
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let (uid, gid) = host_relay_user();
        std::os::unix::fs::chown(&spool, Some(uid), Some(gid)).unwrap();
        super::chmod(&spool, 0o700);
        let sockdir = dir.path().join("run");
        std::fs::create_dir(&sockdir).unwrap();
        std::os::unix::fs::chown(&sockdir, Some(uid), Some(gid)).unwrap();
        let mut r = Relay {
            socket: sockdir.join("ox-push"),
            spool,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.resume();
        r
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
    }

    /// Starts it (again) and waits until its socket answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let (uid, gid) = host_relay_user();
        // The socket's group: Dovecot's internal group as its mail processes
        // know it (a number: the 2.4 root's differs from the host's).
        let group = match &super::dovecot_env().root {
            Some(_) => super::dovecot_env().gid("dovecot").to_string(),
            None => "dovecot".to_string(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("relay.log"))
            .unwrap();
        let child = Command::new(relay_path())
            .arg("--listen")
            .arg(&self.socket)
            .arg("--spool")
            .arg(&self.spool)
            .args(["--socket-group", &group])
            .args(&self.args)
            .env("RESTRICT_SETUID", uid.to_string())
            .env("RESTRICT_SETGID", gid.to_string())
            .env("RESTRICT_SETEXTRAGROUPS", &group)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while ox_push_record::frame::request_stats(&self.socket, Duration::from_secs(1)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("relay exited with {st}:\n{}", self.log());
            }
            assert!(Instant::now() < until, "relay not ready:\n{}", self.log());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops it (SIGTERM, or SIGKILL with `kill`) and waits for it.
    pub fn stop(&mut self, kill: bool) {
        if let Some(mut c) = self.child.take() {
            let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
            let until = Instant::now() + Duration::from_secs(5);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > until {
                    let _ = c.kill();
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stats(&self) -> serde_json::Value {
        relay_stats(&self.socket)
    }

    /// The driver-line option that points the plugin at this relay.
    pub fn option(&self) -> String {
        format!("relay_socket={}", super::dovecot_env().inner(&self.socket))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop(true);
    }
}
