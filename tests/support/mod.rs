//! Test harness: a private Dovecot 2.3 on loopback with the ox-push relay as
//! one of its services, an HTTP capture server, a relay started by hand, and
//! LMTP / LDA / IMAP / doveadm clients. Every process started here is stopped
//! in `Drop`, also when the test fails; Dovecot's log (with the relay's lines)
//! is in every failure message.
#![allow(dead_code, unused_imports)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::thread;
use std::time::{Duration, Instant};

mod capture;
mod conf;
mod env;
mod hostile;
mod relay;
mod trace;
pub use capture::*;
pub use env::*;
pub use hostile::*;
pub use relay::*;
pub use trace::*;

pub const METADATA_KEY: &str = "/private/vendor/vendor.dovecot/http-notify";

/// The freshly built plugin (`target/<profile>/libox_push.so`), or `$OX_PUSH_PLUGIN` when set.
pub fn plugin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("OX_PUSH_PLUGIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>; `cargo test` refreshes the cdylib in
    // deps/, `cargo build` its copy one level up: take the newer.
    let deps = exe.parent().unwrap();
    let newest = [
        deps.join("libox_push.so"),
        deps.parent().unwrap().join("libox_push.so"),
    ]
    .into_iter()
    .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
    .max();
    let Some((_, so)) = newest else {
        panic!("plugin not built: no libox_push.so in {}", deps.display());
    };
    so
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which `ox` driver Dovecot runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// Dovecot's own (no ox_push in mail_plugins).
    Builtin,
    /// Ours.
    OxPush,
}

/// How the ox-push relay runs next to a Dovecot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// A service of this Dovecot (`service ox-push { ... }`), with these extra
    /// command-line arguments; its socket is `<base_dir>/ox-push`.
    Service(Vec<String>),
    /// None in dovecot.conf: the test starts one ([`Relay`]) or none.
    External,
}

pub struct DovecotOpts {
    pub driver: Driver,
    pub relay: RelayMode,
    /// `push_notification_driver`, `..._driver2`, ... values.
    pub drivers: Vec<String>,
    pub users: Vec<&'static str>,
    /// Extra top-level settings lines.
    pub extra: Vec<String>,
    pub mail_location: String,
    /// dovecot-lda (started as root with -d) keeps group dovecot
    /// (`mail_access_groups`), so it may use the relay socket.
    pub lda_access: bool,
}

impl DovecotOpts {
    pub fn new(driver: Driver, drivers: Vec<String>) -> DovecotOpts {
        DovecotOpts {
            driver,
            // Debug lines in the log of every test (the relay cannot see
            // mail_debug).
            relay: RelayMode::Service(vec!["--debug".into()]),
            drivers,
            users: vec!["alice", "bob"],
            extra: Vec::new(),
            mail_location: "maildir:~/Maildir".to_string(),
            lda_access: true,
        }
    }
}

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub lmtp_port: u16,
    pub imap_port: u16,
    pub conf: PathBuf,
    /// The relay service's spool (owned by the relay's user, mode 0700).
    pub spool: PathBuf,
    /// The relay service's socket.
    pub relay_socket: PathBuf,
}

impl Dovecot {
    pub fn start(opts: DovecotOpts) -> Dovecot {
        let e = dovecot_env();
        let dir = e.tempdir("oxpush-dc-");
        let t = dir.path().to_path_buf();
        let inner = |p: &Path| e.inner(p);
        for sub in ["run", "state", "plugins", "home"] {
            std::fs::create_dir_all(t.join(sub)).unwrap();
        }
        e.prepare(&t);
        let spool = t.join("relay-spool");
        std::fs::create_dir_all(&spool).unwrap();
        chmod(&spool, 0o700);
        let relay_user = relay_user();
        std::os::unix::fs::chown(&spool, Some(relay_user.0), Some(relay_user.1)).unwrap();
        // The modules as Dovecot sees them, and ours.
        let moddir = "/usr/lib/dovecot/modules";
        for entry in std::fs::read_dir(e.host(moddir)).unwrap().flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".so") {
                let target = Path::new(moddir).join(&name);
                std::os::unix::fs::symlink(target, t.join("plugins").join(&name)).unwrap();
            }
        }
        std::fs::copy(plugin_path(), t.join("plugins/lib30_ox_push_plugin.so")).unwrap();
        std::fs::copy(relay_path(), t.join("ox-push-relay")).unwrap();
        let mut users = String::new();
        for (i, u) in opts.users.iter().enumerate() {
            let home = t.join("home").join(u);
            std::fs::create_dir_all(&home).unwrap();
            let uid = 5000 + i;
            chown(&home, uid as u32);
            writeln!(users, "{u}:{{plain}}pw:{uid}:{uid}::{}::", inner(&home)).unwrap();
        }
        std::fs::write(t.join("users"), users).unwrap();
        let lmtp_port = free_port();
        let imap_port = free_port();
        let plugins: &[&str] = match opts.driver {
            Driver::Builtin => &["notify", "push_notification"],
            Driver::OxPush => &["notify", "push_notification", "ox_push"],
        };
        let relay = match (opts.driver, &opts.relay) {
            (Driver::OxPush, RelayMode::Service(args)) => Some((
                inner(&t.join("ox-push-relay")),
                inner(&spool),
                args.join(" "),
            )),
            _ => None,
        };
        let t_inner = inner(&t);
        let instance = t.file_name().unwrap().to_string_lossy().to_string();
        let conf = conf::render(
            e.v24,
            &conf::Parts {
                t: &t_inner,
                instance: &instance,
                mail_location: &opts.mail_location,
                plugins,
                lmtp_port,
                imap_port,
                lda_access: opts.lda_access,
                relay,
                extra: &opts.extra,
                drivers: &opts.drivers,
            },
        );
        let conf_path = t.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let dc = Dovecot {
            lmtp_port,
            imap_port,
            conf: conf_path,
            relay_socket: t.join("run/ox-push"),
            spool,
            dir,
        };
        dc.start_master();
        dc.wait_ready();
        dc
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the master (and with it every service, the relay included) and
    /// waits until it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.master_pid() else {
            return;
        };
        // SAFETY: signalling a process we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only checks for existence.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the same configuration again (after [`Dovecot::stop`]).
    pub fn restart(&self) {
        self.stop();
        self.start_master();
    }

    /// Waits until LMTP and IMAP answer with their greetings.
    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(15);
        for port in [self.lmtp_port, self.imap_port] {
            loop {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut line = String::new();
                    if BufReader::new(s).read_line(&mut line).is_ok() && !line.is_empty() {
                        break;
                    }
                }
                assert!(Instant::now() < until, "dovecot not ready\n{}", self.log());
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// A Dovecot program (absolute path as Dovecot sees it, or a name on its
    /// PATH) run against this instance's configuration.
    pub fn command(&self, program: &str) -> Command {
        let mut c = dovecot_env().command(&self.path().join("settings"), program);
        c.arg("-c").arg(self.conf_inner());
        c
    }

    /// dovecot.conf as Dovecot sees it.
    pub fn conf_inner(&self) -> String {
        dovecot_env().inner(&self.conf)
    }

    pub fn doveadm(&self, args: &[&str]) -> std::process::Output {
        self.command("doveadm").args(args).output().unwrap()
    }

    /// Starts the master and waits until LMTP and IMAP answer.
    fn start_master(&self) {
        // The daemon keeps its stdio: never give it our pipes.
        let t = self.path();
        let errfile = std::fs::File::create(t.join("startup.err")).unwrap();
        let status = self
            .command("dovecot")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errfile)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "dovecot failed to start: {}\n{}",
            std::fs::read_to_string(t.join("startup.err")).unwrap_or_default(),
            self.log()
        );
        self.wait_ready();
    }

    pub fn set_metadata(&self, user: &str, value: &str) {
        let out = self.doveadm(&[
            "mailbox",
            "metadata",
            "set",
            "-u",
            user,
            "-s",
            "",
            METADATA_KEY,
            value,
        ]);
        assert!(
            out.status.success(),
            "metadata set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn get_metadata(&self, user: &str) -> String {
        let out = self.doveadm(&[
            "mailbox",
            "metadata",
            "get",
            "-u",
            user,
            "-s",
            "",
            METADATA_KEY,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Delivers one message by LMTP; returns the reply line for each recipient.
    pub fn lmtp(&self, rcpts: &[&str], msg: &[u8]) -> Vec<String> {
        lmtp_deliver(self.lmtp_port, "sender@example.org", rcpts, msg)
    }

    /// Delivers one message with dovecot-lda; returns its exit code.
    pub fn lda(&self, user: &str, msg: &[u8]) -> i32 {
        let mut child = self
            .command("/usr/lib/dovecot/dovecot-lda")
            .args(["-d", user, "-f", "sender@example.org"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(msg).unwrap();
        let out = child.wait_with_output().unwrap();
        out.status.code().unwrap_or(-1)
    }

    pub fn imap(&self, user: &str) -> Imap {
        Imap::login(self.imap_port, user, "pw")
    }

    /// Waits until `pred(log)` holds, up to `timeout`.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if pred(&self.log()) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        pred(&self.log())
    }
    pub fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("run/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Pids of this instance's child processes named `name` (e.g. "lmtp").
    pub fn children(&self, name: &str) -> Vec<i32> {
        let Some(master) = self.master_pid() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let ppid: i32 = stat[close + 2..]
                .split(' ')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == master && comm == name {
                out.push(pid);
            }
        }
        out
    }

    /// The relay service's counters (`ox-push-stats --json`).
    pub fn relay_stats(&self) -> serde_json::Value {
        relay_stats(&self.relay_socket)
    }

    /// The notifications the relay holds (pending in its spool).
    pub fn spooled(&self) -> usize {
        self.relay_stats()["relay"]["spool_depth"]
            .as_u64()
            .unwrap_or(0) as usize
    }

    /// The relay service's pid.
    pub fn relay_pid(&self) -> Option<i32> {
        self.children("ox-push-relay").first().copied()
    }

    /// Delivers several messages over one LMTP connection (so one lmtp process
    /// handles them all); returns the reply per message.
    pub fn lmtp_session(&self, rcpt: &str, msgs: &[Vec<u8>]) -> Vec<String> {
        let msgs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        lmtp_transactions(self.lmtp_port, "sender@example.org", &[rcpt], &msgs)
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let pidfile = self.dir.path().join("run/master.pid");
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: signalling a process we started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let until = Instant::now() + Duration::from_secs(5);
                // SAFETY: signal 0 only checks for existence.
                while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < until {
                    thread::sleep(Duration::from_millis(10));
                }
                if unsafe { libc::kill(pid, 0) } == 0 {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

fn read_reply(r: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed; got {all:?}");
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all.trim_end().to_string();
        }
    }
}

fn lmtp_cmd(w: &mut TcpStream, r: &mut BufReader<TcpStream>, c: &str, expect: &str) {
    w.write_all(c.as_bytes()).unwrap();
    let rep = read_reply(r);
    assert!(rep.starts_with(expect), "{c:?}: {rep}");
}

/// An open LMTP connection: one lmtp process serves it for as long as it is
/// open (Dovecot 2.4 ends an lmtp process with its connection). QUIT on drop.
pub struct LmtpConn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl LmtpConn {
    pub fn open(port: u16) -> LmtpConn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = LmtpConn {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        };
        read_reply(&mut c.r);
        lmtp_cmd(&mut c.w, &mut c.r, "LHLO test\r\n", "250");
        c
    }

    /// One transaction; the reply per recipient.
    pub fn deliver(&mut self, from: &str, rcpts: &[&str], msg: &[u8]) -> Vec<String> {
        lmtp_cmd(
            &mut self.w,
            &mut self.r,
            &format!("MAIL FROM:<{from}>\r\n"),
            "250",
        );
        for rc in rcpts {
            lmtp_cmd(
                &mut self.w,
                &mut self.r,
                &format!("RCPT TO:<{rc}>\r\n"),
                "250",
            );
        }
        lmtp_cmd(&mut self.w, &mut self.r, "DATA\r\n", "354");
        self.w.write_all(&dot_stuff(msg)).unwrap();
        rcpts.iter().map(|_| read_reply(&mut self.r)).collect()
    }
}

impl Drop for LmtpConn {
    fn drop(&mut self) {
        let _ = self.w.write_all(b"QUIT\r\n");
    }
}

/// One LMTP connection, one transaction per message, all to `rcpts`;
/// returns the per-recipient replies of each message.
fn lmtp_transactions(port: u16, from: &str, rcpts: &[&str], msgs: &[&[u8]]) -> Vec<Vec<String>> {
    let mut c = LmtpConn::open(port);
    msgs.iter().map(|m| c.deliver(from, rcpts, m)).collect()
}

pub fn lmtp_deliver(port: u16, from: &str, rcpts: &[&str], msg: &[u8]) -> Vec<String> {
    lmtp_transactions(port, from, rcpts, &[msg]).remove(0)
}

/// Dot-stuffs a message and appends the terminator (lines end in CRLF on the wire).
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && out.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

pub fn simple_message(subject: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\n\r\nHello \"world\"\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// A tiny IMAP client: enough for APPEND, STORE, SEARCH and METADATA.
pub struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl Imap {
    pub fn login(port: u16, user: &str, pass: &str) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let w = s.try_clone().unwrap();
        let mut imap = Imap {
            r: BufReader::new(s),
            w,
            tag: 0,
        };
        let mut greeting = String::new();
        imap.r.read_line(&mut greeting).unwrap();
        let out = imap.cmd(&format!("LOGIN {user} {pass}"));
        assert!(out.last().unwrap().contains("OK"), "{out:?}");
        imap
    }

    /// Sends a command; returns all lines up to and including the tagged one.
    pub fn cmd(&mut self, c: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.w
            .write_all(format!("{tag} {c}\r\n").as_bytes())
            .unwrap();
        self.read_until_tagged(&tag)
    }

    fn read_until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "IMAP connection closed: {lines:?}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line.trim_end().to_string());
            if done {
                return lines;
            }
        }
    }

    pub fn append(&mut self, mailbox: &str, msg: &[u8]) -> Vec<String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.w
            .write_all(format!("{tag} APPEND {mailbox} {{{}}}\r\n", msg.len()).as_bytes())
            .unwrap();
        let mut cont = String::new();
        self.r.read_line(&mut cont).unwrap();
        assert!(cont.starts_with('+'), "{cont}");
        self.w.write_all(msg).unwrap();
        self.w.write_all(b"\r\n").unwrap();
        self.read_until_tagged(&tag)
    }

    /// UIDs of all messages in the selected mailbox, with their Message-ID.
    pub fn uid_message_ids(&mut self) -> Vec<(u32, String)> {
        let lines = self.cmd("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
        let mut out = Vec::new();
        let mut uid = None;
        for l in lines {
            if let Some(p) = l.find("UID ") {
                uid = l[p + 4..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|s| s.parse().ok());
            }
            if l.to_ascii_lowercase().starts_with("message-id:") {
                if let Some(u) = uid.take() {
                    out.push((u, l[11..].trim().to_string()));
                }
            }
        }
        out
    }
}

/// Settings for deliveries to `alice+Work` into an auto-created `Work` folder.
pub fn work_folder_settings() -> Vec<String> {
    vec![
        "recipient_delimiter = +".into(),
        "lmtp_save_to_detail_mailbox = yes".into(),
        "namespace inbox {\n  inbox = yes\n  mailbox Work {\n    auto = create\n  }\n}".into(),
    ]
}

/// Replaces the `imap-uidvalidity` value, which differs per mailbox, by `V`.
pub fn norm_uidvalidity(body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    let key = "\"imap-uidvalidity\":";
    let Some(p) = body.find(key).map(|p| p + key.len()) else {
        return body.into_owned();
    };
    let end = p + body[p..].chars().take_while(char::is_ascii_digit).count();
    format!("{}V{}", &body[..p], &body[end..])
}
