//! A private PostgreSQL for tests: Debian's `postgresql` package (`scripts/install-deps.sh`),
//! `initdb` into a temp dir (as the `postgres` system user when the tests run as root), a free
//! loopback port, trust authentication for the role `mm`, stopped (immediate) in `Drop`, so a
//! failing test stops it too.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    ctl: Ctl,
}

/// What `pg_ctl` needs, cloneable so that a restart can run on another thread while the test
/// keeps sending.
#[derive(Clone)]
pub struct Ctl {
    path: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed: run scripts/install-deps.sh (Debian package postgresql)",
        )
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb").1
}

fn ids(user: &str) -> Option<(u32, u32)> {
    let out = |flag: &str| {
        let o = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((out("-u")?, out("-g")?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// initdb + start; a database `mm` owned by role `mm` exists.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("mm-pg-").tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = if root {
            Some(ids("postgres").expect("user postgres (from the postgresql package)"))
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = free_port();
        let pg = Postgres {
            port,
            ctl: Ctl {
                path: dir.path().to_path_buf(),
                port,
                bin: bin_dir(),
                user,
            },
            dir,
        };
        let data = pg.ctl.data();
        let o = pg.ctl.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "mm",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        pg.start_server();
        pg.client("createdb", &["mm"]);
        pg
    }

    /// Starts the server again after [`Postgres::stop`] and waits until it accepts connections.
    pub fn start_server(&self) {
        self.ctl.start_server()
    }

    /// Stops the server at once (connections are cut, as in a crash or a failover).
    pub fn stop(&self) {
        self.ctl.stop()
    }

    /// A handle that can stop and start the server from another thread.
    pub fn ctl(&self) -> Ctl {
        self.ctl.clone()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.ctl.run(program, args)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A PostgreSQL client program against this server as role `mm`; its output, asserted
    /// successful.
    fn client(&self, program: &str, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "mm"];
        all.extend_from_slice(args);
        let o = self.run(program, &all);
        assert!(
            o.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A new, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        self.client("createdb", &[name]);
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://mm@127.0.0.1:{}/{db}", self.port)
    }

    /// One SQL statement through psql; its output rows.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.client("psql", &["-d", db, "-Atc", sql])
    }

    /// Waits until `pred` holds on the server's log, bounded by `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Ctl {
    fn data(&self) -> PathBuf {
        self.path.as_path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut c = Command::new(self.bin.join(program));
        c.args(args)
            .current_dir(self.path.as_path())
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c.output().unwrap()
    }

    /// Starts the server (after [`Postgres::stop`] too) and waits until it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=200",
            self.port,
            self.path.as_path().display()
        );
        let log = self.path.as_path().join("postgres.log");
        let o = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Stops the server at once (connections are cut, as in a crash or a failover).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
