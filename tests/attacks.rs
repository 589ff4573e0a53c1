//! Every attack of issue 9's "Why", replayed against the relay design, has
//! no effect. Tried as an attacker with a local shell account as the mail
//! user (uid 5000) would: files planted where the old per-process spool
//! looked (a `spool_dir=` the user owns, the user's home) are never named in
//! any syscall of any Dovecot process or of the relay (strace attached while
//! deliveries happen); the relay's spool and socket are out of the user's
//! reach; the relay refuses root and a spool it does not own; and a record
//! that breaks the protocol costs its sender the connection, nothing else.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ox_push_record::frame::{self, AckStatus, Frame};
use ox_push_record::{Item, Policy, Target};
use support::*;

const WAIT: Duration = Duration::from_secs(10);
/// The mail user the attacker is (alice).
const UID: u32 = 5000;
/// How long the old design's idle processes waited between spool rescans.
const OLD_RESCAN: Duration = Duration::from_secs(15);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A directory Dovecot can see (inside its root when it runs in one).
fn tempdir(prefix: &str) -> tempfile::TempDir {
    dovecot_env().tempdir(prefix)
}

/// A path as the traced processes name it (inside Dovecot's root).
fn seen(p: &Path) -> String {
    dovecot_env().inner(p)
}

fn lchown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o666) },
        0,
        "{}",
        p.display()
    );
}

/// The body of a push the attacker wants on a victim's phone.
fn forged_body(marker: &str) -> String {
    format!(
        r#"{{"user":"3@1","event":"messageNew","folder":"INBOX","imap-uidvalidity":1,"imap-uid":1,"from":"IT <it@example.org>","subject":"{marker}: your password expired","snippet":"log in at evil.example","unseen":1}}"#
    )
}

/// A journal in the old per-process format: `N <id> <ms> <len>\n<body>\n`.
fn old_journal(marker: &str) -> Vec<u8> {
    let mut j = Vec::new();
    for i in 0..3 {
        let body = forged_body(marker);
        j.extend_from_slice(
            format!(
                "N 0000000{i}-dead-beef-0000-000000000000 {} {}\n",
                now_ms(),
                body.len()
            )
            .as_bytes(),
        );
        j.extend_from_slice(body.as_bytes());
        j.push(b'\n');
    }
    j
}

/// What the attacker planted, and the root-owned things it aimed at.
struct Planted {
    _dir: tempfile::TempDir,
    /// The directory given as `spool_dir=` (the user owns it).
    spool_dir: PathBuf,
    /// Root's file that `stats-archive.json`, `label` ... point at (think
    /// /etc/ld.so.preload).
    target: PathBuf,
    target_before: (Vec<u8>, u64, i64, i64),
    /// Root's directory that the uid directory of root (LMTP's euid 0)
    /// points at: `probe-<pid>` would have been created there.
    root_dir: PathBuf,
    /// Every planted path, and the names that only a planted file has.
    needles: Vec<String>,
    /// Text of the forged notifications.
    marker: String,
}

fn snapshot(p: &Path) -> (Vec<u8>, u64, i64, i64) {
    let md = std::fs::metadata(p).unwrap();
    (
        std::fs::read(p).unwrap(),
        md.ino(),
        md.mtime(),
        md.mtime_nsec(),
    )
}

/// The old spool's layout under `root` for the attacker's uid, every entry
/// hostile: symlinks to root's file, a forged journal of a dead pid, a FIFO,
/// a 50 MB journal, a journal that is /dev/zero.
fn plant_old_layout(root: &Path, target: &Path, marker: &str, needles: &mut Vec<String>) {
    std::fs::create_dir_all(root).unwrap();
    let uid_dir = root.join(UID.to_string());
    let mut dirs = vec![uid_dir.clone()];
    for key in ["0123456789abcdef", "5bd1e9951a2b3c4d"] {
        dirs.push(uid_dir.join(key));
    }
    for d in &dirs {
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::os::unix::fs::symlink(target, d.join("tmp/stats-archive.json")).unwrap();
        std::os::unix::fs::symlink(target, d.join("label")).unwrap();
        std::os::unix::fs::symlink(target, d.join("owner-31337.lock")).unwrap();
        std::os::unix::fs::symlink(target, d.join("stats-31337.json")).unwrap();
        std::fs::write(d.join("journal-31336-1.log"), old_journal(marker)).unwrap();
        mkfifo(&d.join("journal-31338-1.log"));
        let big = std::fs::File::create(d.join("journal-31339-1.log")).unwrap();
        let mut head = format!(
            "N 00000009-dead-beef-0000-000000000000 {} 52428700\n",
            now_ms()
        );
        head.push_str(&forged_body(marker));
        (&big).write_all(head.as_bytes()).unwrap();
        big.set_len(50 << 20).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("journal-31340-1.log")).unwrap();
    }
    for name in [
        "stats-archive.json",
        "owner-31337.lock",
        "stats-31337.json",
        "journal-31336-1.log",
        "journal-31338-1.log",
        "journal-31339-1.log",
        "journal-31340-1.log",
        "probe-",
    ] {
        needles.push(name.to_string());
    }
    // Everything below `root` belongs to the attacker.
    for e in walk(root) {
        lchown(&e, UID);
        needles.push(seen(&e));
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if p.symlink_metadata().unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                out.push(e.path());
            }
        }
        i += 1;
    }
    out
}

fn plant(marker: &str) -> Planted {
    let dir = tempdir("oxpush-attack-");
    let t = dir.path();
    let root_dir = t.join("root-only");
    std::fs::create_dir(&root_dir).unwrap();
    chmod(&root_dir, 0o755);
    let target = root_dir.join("ld.so.preload");
    std::fs::write(&target, "# root's file: nobody else writes here\n").unwrap();
    chmod(&target, 0o644);
    let spool_dir = t.join("userspool");
    let mut needles = vec![seen(&target), seen(&root_dir)];
    plant_old_layout(&spool_dir, &target, marker, &mut needles);
    // LMTP ran as root between deliveries: root's uid directory, made a
    // symlink to root's directory by the user who owns the spool.
    std::os::unix::fs::symlink(&root_dir, spool_dir.join("0")).unwrap();
    lchown(&spool_dir.join("0"), UID);
    needles.push(seen(&spool_dir.join("0")));
    needles.push("userspool".to_string());
    // The old default spool_dir: nothing looks there either.
    needles.push("/var/spool/dovecot-ox-push".to_string());
    Planted {
        _dir: dir,
        spool_dir,
        target_before: snapshot(&target),
        target,
        root_dir,
        needles,
        marker: marker.to_string(),
    }
}

/// The same, in the mail user's home (anywhere the user can write).
fn plant_in_home(home: &Path, p: &mut Planted) {
    let spool = home.join("ox-push-spool");
    plant_old_layout(&spool, &p.target, &p.marker, &mut p.needles);
    p.needles.push("ox-push-spool".to_string());
    std::os::unix::fs::symlink(&p.target, home.join("stats-archive.json")).unwrap();
    lchown(&home.join("stats-archive.json"), UID);
    mkfifo(&home.join("journal-31341-1.log"));
    lchown(&home.join("journal-31341-1.log"), UID);
    std::fs::write(home.join("journal-31342-1.log"), old_journal(&p.marker)).unwrap();
    lchown(&home.join("journal-31342-1.log"), UID);
    for n in [
        "stats-archive.json",
        "journal-31341-1.log",
        "journal-31342-1.log",
    ] {
        p.needles.push(seen(&home.join(n)));
    }
    p.needles.push("journal-31341-1.log".into());
    p.needles.push("journal-31342-1.log".into());
}

/// What a replay of the planted spool produced.
struct Replay {
    dc: Dovecot,
    cap: Capture,
    planted: Planted,
    /// strace of every Dovecot process and the relay, and of dovecot-lda.
    trace: String,
    /// How long each LMTP delivery took.
    delivery_times: Vec<Duration>,
    /// Subjects delivered (each sent to two endpoints).
    subjects: Vec<String>,
    /// Peak resident memory of the relay and the lmtp processes, in kB.
    peaks_kb: Vec<(String, u64)>,
}

/// Plants the old spool in a `spool_dir=` the user owns and in the user's
/// home, attaches strace to every Dovecot process (and so to every process
/// Dovecot starts from then on, the relay included), delivers by LMTP, by
/// dovecot-lda (under strace too) and logs in by IMAP; with `idle`, lets the
/// processes sit idle that long and delivers again; with `kill_relay`, kills
/// the relay with SIGKILL in between (Dovecot restarts it; it reads its
/// spool back).
fn replay_old_spool_attacks(idle: Duration, kill_relay: bool) -> Replay {
    let marker = format!("FORGED-{}", std::process::id());
    let mut planted = plant(&marker);
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![
            format!(
                "ox:url={} user_from_metadata spool_dir={} spool_max_size=1M spool_fsync",
                cap.url("login:pw@", "/one"),
                planted.spool_dir.display()
            ),
            // No spool_dir=: the old default, /var/spool/dovecot-ox-push.
            format!("ox:url={} user_from_metadata", cap.url("", "/two")),
        ],
    ));
    dc.set_metadata("alice", "user=3@1");
    plant_in_home(&dc.path().join("home/alice"), &mut planted);
    let master = dc.master_pid().expect("master pid");
    let tree = process_tree(master);
    assert!(
        tree.contains(&dc.relay_pid().expect("relay")),
        "relay not below master"
    );
    let mut strace = Strace::attach(&tree, &dc.path().join("strace.out"));
    let mut delivered = Vec::new();
    let mut delivery_times = Vec::new();
    let mut deliver = |dc: &Dovecot, subject: String| {
        let t = Instant::now();
        let reply = dc.lmtp(&["alice"], &simple_message(&subject));
        delivery_times.push(t.elapsed());
        assert!(reply[0].starts_with("250"), "{reply:?}\n{}", dc.log());
        delivered.push(subject);
    };
    for i in 0..4 {
        deliver(&dc, format!("before-{i}"));
    }
    let mut imap = dc.imap("alice");
    let out = imap.cmd("SELECT INBOX");
    assert!(out.last().unwrap().contains("OK"), "{out:?}");
    let lmtp_before = dc.children("lmtp");
    if !idle.is_zero() {
        std::thread::sleep(idle);
        let out = imap.cmd("NOOP");
        assert!(out.last().unwrap().contains("OK"), "{out:?}");
    }
    let lmtp_after = dc.children("lmtp");
    // Dovecot 2.4 ends an lmtp process with its connection: none idles there.
    if !idle.is_zero() && !dovecot_env().v24 {
        assert!(
            lmtp_before.iter().any(|p| lmtp_after.contains(p)),
            "no lmtp process stayed idle for {idle:?}: {lmtp_before:?} {lmtp_after:?}"
        );
    }
    if kill_relay {
        let old = dc.relay_pid().unwrap();
        // SAFETY: signalling the relay this test's Dovecot started.
        unsafe { libc::kill(old, libc::SIGKILL) };
        let until = Instant::now() + WAIT;
        while dc.relay_pid().is_none_or(|p| p == old) {
            assert!(Instant::now() < until, "relay not restarted\n{}", dc.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for i in 0..3 {
        deliver(&dc, format!("after-{i}"));
    }
    drop(imap);
    let mut peaks_kb = Vec::new();
    for pid in dc.children("lmtp") {
        peaks_kb.push((format!("lmtp {pid}"), status_kb(pid, "VmHWM").unwrap_or(0)));
    }
    let relay = dc.relay_pid().unwrap();
    peaks_kb.push((format!("relay {relay}"), status_kb(relay, "VmHWM").unwrap()));
    // dovecot-lda, run by an MTA as root for the recipient, traced as well.
    // As Dovecot runs it (chrooted in a namespace for a 2.4 root; strace
    // follows the exec chain).
    let mut lda = dc.command("/usr/lib/dovecot/dovecot-lda");
    lda.args(["-d", "alice", "-f", "sender@example.org"]);
    let lda_args: Vec<String> = lda
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let lda_args: Vec<&str> = lda_args.iter().map(String::as_str).collect();
    let (code, lda_trace) = Strace::run(
        Path::new(lda.get_program()),
        &lda_args,
        &simple_message("by-lda"),
        &dc.path().join("strace-lda.out"),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "dovecot-lda\n{}", dc.log());
    delivered.push("by-lda".into());
    let got = cap.wait_for(2 * delivered.len(), WAIT);
    assert_eq!(
        got.len(),
        2 * delivered.len(),
        "{:?}\n{}",
        subjects(&got),
        dc.log()
    );
    // Time for anything forged to follow.
    std::thread::sleep(Duration::from_millis(500));
    let trace = strace.stop() + &lda_trace;
    Replay {
        dc,
        cap,
        planted,
        trace,
        delivery_times,
        subjects: delivered,
        peaks_kb,
    }
}

impl Replay {
    /// No syscall of any traced process named a planted file, and the trace
    /// did see what it should (so it was attached where it matters).
    fn assert_nothing_planted_was_named(&self) {
        let hits = lines_naming(&self.trace, &self.planted.needles);
        assert!(
            hits.is_empty(),
            "planted files named in syscalls:\n{}",
            hits.join("\n")
        );
        // Controls: lmtp (and lda) processes were traced opening the
        // user's mail and metadata in the home where files were planted,
        // and the relay was traced connecting to the middleware.
        let home = self.dc.path().join("home/alice");
        for shown in [
            format!("{}/Maildir", seen(&home)),
            format!("{}/dovecot-attributes", seen(&home)),
            format!("htons({})", self.cap.port),
        ] {
            assert!(
                self.trace.contains(&shown),
                "the trace does not show {shown}: not attached?\n{}",
                &self.trace[..self.trace.len().min(20_000)]
            );
        }
    }

    fn assert_root_files_untouched(&self) {
        assert_eq!(
            snapshot(&self.planted.target),
            self.planted.target_before,
            "root's file changed"
        );
        let entries: Vec<_> = std::fs::read_dir(&self.planted.root_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, ["ld.so.preload"], "root's directory changed");
    }

    fn assert_nothing_forged_was_sent(&self) {
        let reqs = self.cap.requests();
        let forged: Vec<String> = reqs
            .iter()
            .map(Captured::body_str)
            .filter(|b| b.contains(&self.planted.marker) || b.contains("evil.example"))
            .collect();
        assert!(forged.is_empty(), "forged pushes sent: {forged:?}");
        let mut got = subjects(&reqs);
        got.sort();
        let mut want: Vec<String> = self
            .subjects
            .iter()
            .flat_map(|s| [s.clone(), s.clone()])
            .collect();
        want.sort();
        assert_eq!(got, want, "{}", self.dc.log());
    }
}

/// Issue 9, attack 1: a symlink `tmp/stats-archive.json -> /etc/ld.so.preload`
/// (and `label`, lock and stats files, and root's uid directory) planted in a
/// spool directory the user owns made root write through it during the
/// rescan every 15 s. Now no process names any planted file, not even after
/// sitting idle past the old rescan interval, and root's file is unchanged.
#[test]
fn local_root_via_symlinks_in_the_old_spool_writes_nothing_through_them() {
    let r = replay_old_spool_attacks(OLD_RESCAN + Duration::from_secs(2), false);
    r.assert_nothing_planted_was_named();
    r.assert_root_files_untouched();
    // The old keys are still accepted, with a warning saying where they went
    // (Dovecot 2.3's driver line; 2.4 never had them).
    let log = r.dc.log();
    assert!(
        dovecot_env().v24 || log.contains("spool_dir is no longer a driver setting"),
        "{log}"
    );
}

/// Issue 9, attack 2: a journal of a "dead" pid planted in the user's spool
/// directory was replayed and sent with the endpoint's credentials. Now it is
/// never opened, also not by a relay that restarts after SIGKILL and reads
/// its own spool back, and no forged text reaches the middleware.
#[test]
fn forged_pushes_from_a_planted_journal_never_reach_the_middleware() {
    let r = replay_old_spool_attacks(Duration::ZERO, true);
    r.assert_nothing_planted_was_named();
    r.assert_nothing_forged_was_sent();
}

/// Issue 9, attack 3: a FIFO planted as a journal blocked the LMTP ioloop
/// forever. Now nobody opens it: every delivery is answered at once.
#[test]
fn planted_fifo_does_not_hang_delivery() {
    let r = replay_old_spool_attacks(Duration::ZERO, false);
    r.assert_nothing_planted_was_named();
    for (i, t) in r.delivery_times.iter().enumerate() {
        // Under strace; an opened FIFO would block until the LMTP timeout.
        assert!(
            *t < Duration::from_secs(5),
            "delivery {i} took {t:?}\n{}",
            r.dc.log()
        );
    }
}

/// Issue 9, attack 3: a 50 MB journal and one that is /dev/zero were read
/// whole. Now nobody opens them, and no process grows anywhere near them.
#[test]
fn planted_50mb_journal_and_dev_zero_are_never_read() {
    let r = replay_old_spool_attacks(Duration::ZERO, false);
    r.assert_nothing_planted_was_named();
    for (who, kb) in &r.peaks_kb {
        assert!(
            *kb > 0 && *kb < 40 * 1024,
            "{who}: peak RSS {kb} kB (the planted file has 50 MB)"
        );
    }
    assert!(r.peaks_kb.iter().any(|(w, _)| w.starts_with("lmtp")));
}

fn python_connect_and_send(
    uid: u32,
    groups: &[u32],
    socket: &Path,
    frame_file: &Path,
) -> std::process::Output {
    // Connects, sends the frame, prints the answer's first bytes in hex.
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                  s.settimeout(10)\n\
                  s.connect(sys.argv[1])\n\
                  s.sendall(open(sys.argv[2], 'rb').read())\n\
                  print(s.recv(64).hex())\n";
    run_as(
        uid,
        uid,
        groups,
        "/usr/bin/python3",
        &[
            "-c",
            script,
            socket.to_str().unwrap(),
            frame_file.to_str().unwrap(),
        ],
    )
}

fn notify_frame(url: &str, subject: &str, seq: u64) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&now_ms().to_be_bytes());
    id[8..].copy_from_slice(&(seq ^ u64::from(std::process::id()) << 20).to_be_bytes());
    Frame::Notify {
        seq,
        item: Item {
            id,
            created_ms: now_ms(),
            policy: Policy {
                timeout_ms: 2000,
                max_age_secs: 600,
                notification_id: true,
            },
            target: Target {
                url: url.to_string(),
                tls_verify: true,
                ca_file: None,
                ca_dir: None,
            },
            body: format!(r#"{{"user":"3@1","event":"messageNew","subject":"{subject}"}}"#)
                .into_bytes(),
        },
    }
    .to_bytes()
    .unwrap()
}

/// Issue 9, attack 2, the other way in: a local user writes a record to the
/// relay socket itself. The socket is mode 0660, group dovecot (Dovecot's
/// internal group, which mail processes have and a shell login does not): the
/// user's connect() fails with EACCES and nothing is sent. The same record
/// from a process with the group (as a mail process) arrives, so the refusal
/// is the socket's permission and nothing else.
#[test]
fn forged_pushes_from_a_local_user_cannot_reach_the_relay_socket() {
    let cap = Capture::start();
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![format!("ox:url={}", cap.url("", "/notify"))],
    ));
    let dovecot_gid = dovecot_env().gid("dovecot");
    let md = std::fs::metadata(&dc.relay_socket).unwrap();
    assert_eq!(md.mode() & 0o777, 0o660, "socket mode {:o}", md.mode());
    assert_eq!(md.gid(), dovecot_gid);
    let dir = tempdir("oxpush-forge-");
    let forged = dir.path().join("forged.bin");
    std::fs::write(&forged, notify_frame(&cap.url("", "/notify"), "FORGED", 1)).unwrap();
    let allowed = dir.path().join("allowed.bin");
    std::fs::write(
        &allowed,
        notify_frame(&cap.url("", "/notify"), "with-internal-group", 1),
    )
    .unwrap();
    for f in [&forged, &allowed] {
        chmod(f, 0o644);
    }

    let out = python_connect_and_send(UID, &[], &dc.relay_socket, &forged);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "connected: {out:?}");
    assert!(
        err.contains("PermissionError") && err.contains("Permission denied"),
        "{err}"
    );
    // ox-push-stats as the user: the same refusal.
    let stats = relay_path().with_file_name("ox-push-stats");
    let out = run_as(
        UID,
        UID,
        &[],
        stats.to_str().unwrap(),
        &[dc.relay_socket.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );

    // With the internal group: connected, acknowledged, sent.
    let out = python_connect_and_send(UID, &[dovecot_gid], &dc.relay_socket, &allowed);
    assert!(out.status.success(), "{out:?}\n{}", dc.log());
    let ack = String::from_utf8_lossy(&out.stdout);
    // "OXPR", version 1, kind Ack.
    assert!(ack.starts_with("4f5850520102"), "{ack}");
    let got = cap.wait_for(1, WAIT);
    assert_eq!(subjects(&got), ["with-internal-group"], "{}", dc.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cap.requests().len(), 1, "{}", dc.log());
}

/// Issue 9, attack 3 (clobbering, reading): the relay's spool is the relay
/// user's alone. The mail user, also with Dovecot's internal group (as a mail
/// process has it), can neither create, replace nor read anything in it.
#[test]
fn mail_user_cannot_write_or_read_the_relay_spool() {
    let cap = Capture::start();
    cap.set_default(Reply::Status(503));
    let dc = Dovecot::start(DovecotOpts::new(
        Driver::OxPush,
        vec![format!(
            "ox:url={} user_from_metadata",
            cap.url("", "/notify")
        )],
    ));
    dc.set_metadata("alice", "user=3@1");
    // Pending (503): the journal holds it.
    assert!(dc.lmtp(&["alice"], &simple_message("secret subject"))[0].starts_with("250"));
    assert!(cap.wait_for(1, WAIT).len() == 1, "{}", dc.log());
    let (relay_uid, _) = relay_user();
    let spool = &dc.spool;
    let md = std::fs::metadata(spool).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (relay_uid, 0o700));
    let mut segments = Vec::new();
    for e in std::fs::read_dir(spool).unwrap().flatten() {
        let md = e.path().symlink_metadata().unwrap();
        assert!(md.is_file(), "{}", e.path().display());
        assert_eq!(md.uid(), relay_uid, "{}", e.path().display());
        assert_eq!(
            md.mode() & 0o077,
            0,
            "{} {:o}",
            e.path().display(),
            md.mode()
        );
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("journal-") {
            segments.push(e.path());
        }
    }
    assert!(!segments.is_empty(), "no journal in the spool");
    let journal = segments[0].to_str().unwrap();
    assert!(String::from_utf8_lossy(&std::fs::read(journal).unwrap()).contains("secret subject"));
    let dovecot_gid = dovecot_env().gid("dovecot");
    let planted = spool.join("x");
    let p = planted.to_str().unwrap();
    let s = spool.to_str().unwrap();
    for groups in [vec![], vec![dovecot_gid]] {
        for (cmd, args) in [
            ("touch", vec![p]),
            ("mkfifo", vec![p]),
            ("ln", vec!["-s", "/etc/passwd", p]),
            ("ln", vec!["-sf", "/etc/passwd", journal]),
            ("cp", vec!["/etc/passwd", journal]),
            ("rm", vec!["-f", journal]),
            ("ls", vec![s]),
            ("cat", vec![journal]),
        ] {
            let out = run_as(UID, UID, &groups, cmd, &args);
            assert!(
                !out.status.success(),
                "{cmd} {args:?} as uid {UID} with groups {groups:?} succeeded"
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
                "{cmd}: {out:?}"
            );
        }
    }
    assert!(!planted.exists());
    assert!(std::fs::read(journal)
        .unwrap()
        .windows(14)
        .any(|w| w == b"secret subject"));
}

/// A relay of the host's kind started by hand, whatever the test asks: no
/// Dovecot environment unless given.
fn run_relay(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut c = Command::new(relay_path());
    c.args(args)
        .env_remove("SERVICE_NAME")
        .env_remove("LOG_SERVICE")
        .env_remove("RESTRICT_SETUID")
        .env_remove("RESTRICT_SETGID")
        .env_remove("RESTRICT_SETEXTRAGROUPS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = KillOnDrop(c.spawn().unwrap());
    let status = child.wait_timeout(Duration::from_secs(30));
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        if status.is_some() {
            let _ = e.read_to_string(&mut err);
        }
    }
    (status.and_then(|s| s.code()), err)
}

/// "It refuses to run as root" (issue 9): as root without Dovecot's
/// `RESTRICT_*` environment, with it naming root, or with a root group, the
/// relay exits with a fatal line before it creates its socket or spool.
#[test]
fn relay_refuses_to_run_as_root() {
    let dir = tempdir("oxpush-root-");
    let sock = dir.path().join("sock");
    let spool = dir.path().join("spool");
    let (relay_uid, relay_gid) = relay_user();
    let args = [
        "--listen",
        sock.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
    ];
    for env in [
        vec![],
        vec![
            ("RESTRICT_SETUID", "0".to_string()),
            ("RESTRICT_SETGID", "0".to_string()),
        ],
        vec![
            ("RESTRICT_SETUID", relay_uid.to_string()),
            ("RESTRICT_SETGID", "0".to_string()),
        ],
    ] {
        let (code, err) = run_relay(&args, &env);
        assert_eq!(code, Some(89), "{env:?}: {err}");
        assert!(
            err.starts_with("Fatal: ox-push-relay refuses to run as root"),
            "{env:?}: {err}"
        );
        assert!(!sock.exists() && !spool.exists(), "{env:?}: touched files");
    }
    // The control: the same as its own user starts (and is stopped).
    std::os::unix::fs::chown(dir.path(), Some(relay_uid), Some(relay_gid)).unwrap();
    let mut ok = KillOnDrop(
        Command::new(relay_path())
            .args(args)
            .env("RESTRICT_SETUID", relay_uid.to_string())
            .env("RESTRICT_SETGID", relay_gid.to_string())
            .env_remove("SERVICE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + WAIT;
    while frame::request_stats(&sock, Duration::from_secs(1)).is_err() {
        assert!(
            ok.0.try_wait().unwrap().is_none(),
            "the control relay exited"
        );
        assert!(Instant::now() < until, "the control relay did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The same under Dovecot: a service block with `user = root` gets a fatal
/// line in Dovecot's log, and delivery goes on unharmed.
#[test]
fn relay_service_configured_as_root_refuses_and_delivery_goes_on() {
    let cap = Capture::start();
    let dir = tempdir("oxpush-rootsvc-");
    let spool = dir.path().join("spool");
    let relay = dir.path().join("ox-push-relay");
    std::fs::copy(relay_path(), &relay).unwrap();
    let dc = Dovecot::start(DovecotOpts {
        relay: RelayMode::External,
        extra: vec![format!(
            "service ox-push {{\n  executable = {} --spool {}\n  \
             user = root\n  process_limit = 1\n  unix_listener ox-push {{\n    mode = 0660\n    \
             group = {}\n  }}\n}}",
            seen(&relay),
            seen(&spool),
            internal_group(),
        )],
        ..DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} shutdown_timeout=100ms",
                cap.url("", "/n")
            )],
        )
    });
    dc.set_metadata("alice", "user=3@1");
    let t = Instant::now();
    assert!(dc.lmtp(&["alice"], &simple_message("as root"))[0].starts_with("250"));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        dc.wait_log(WAIT, |l| l.lines().any(
            |l| l.contains("Fatal:") && l.contains("ox-push-relay refuses to run as root")
        )),
        "{}",
        dc.log()
    );
    assert!(!spool.exists());
    assert!(cap.requests().is_empty());
}

/// Issue 9, attack 3 (pre-created or symlinked directories accepted): the
/// relay refuses, with one fatal line, a spool directory owned by someone
/// else, one that is a symlink, and one below a directory the mail user can
/// change; it writes nothing into any of them.
#[test]
fn relay_refuses_a_spool_it_does_not_own_or_that_is_a_symlink() {
    let dir = tempdir("oxpush-spool-");
    let t = dir.path();
    let (relay_uid, relay_gid) = relay_user();
    let env = [
        ("RESTRICT_SETUID", relay_uid.to_string()),
        ("RESTRICT_SETGID", relay_gid.to_string()),
    ];
    // Owned by the mail user.
    let users = t.join("users-spool");
    std::fs::create_dir(&users).unwrap();
    chmod(&users, 0o777);
    chown(&users, UID);
    // A symlink (the user's choice of target) to a directory of the relay.
    let real = t.join("real-spool");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    std::os::unix::fs::chown(&real, Some(relay_uid), Some(relay_gid)).unwrap();
    let link = t.join("link-spool");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // The relay's own directory, below one the mail user owns (who can
    // rename it away and put another in its place).
    let user_dir = t.join("user-dir");
    std::fs::create_dir(&user_dir).unwrap();
    chmod(&user_dir, 0o755);
    chown(&user_dir, UID);
    let below = user_dir.join("spool");
    std::fs::create_dir(&below).unwrap();
    chmod(&below, 0o700);
    std::os::unix::fs::chown(&below, Some(relay_uid), Some(relay_gid)).unwrap();
    let sockdir = t.join("run");
    std::fs::create_dir(&sockdir).unwrap();
    std::os::unix::fs::chown(&sockdir, Some(relay_uid), Some(relay_gid)).unwrap();
    let sock = sockdir.join("sock");
    for (spool, why) in [
        (
            &users,
            format!("is owned by uid {UID}, not by the relay's user (uid {relay_uid})"),
        ),
        (&link, "(it must be a directory, not a symlink)".to_string()),
        (
            &below,
            format!(
                "is below {}, which someone other than root and the relay's user can change: \
                 refused",
                user_dir.display()
            ),
        ),
    ] {
        let (code, err) = run_relay(
            &[
                "--listen",
                sock.to_str().unwrap(),
                "--spool",
                spool.to_str().unwrap(),
            ],
            &env,
        );
        assert_eq!(code, Some(89), "{}: {err}", spool.display());
        let fatal: Vec<&str> = err.lines().filter(|l| l.starts_with("Fatal: ")).collect();
        assert_eq!(fatal.len(), 1, "{err}");
        assert!(
            fatal[0].contains(&spool.display().to_string()) && fatal[0].contains(&why),
            "{}: {err}",
            spool.display()
        );
    }
    for d in [&users, &real, &below] {
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            0,
            "{} was written to",
            d.display()
        );
    }
    let md = std::fs::metadata(&users).unwrap();
    assert_eq!((md.uid(), md.permissions().mode() & 0o777), (UID, 0o777));
}

/// The relay makes its spool itself when it is missing: mode 0700, its own.
#[test]
fn relay_creates_its_spool_for_its_user_alone() {
    let dir = tempdir("oxpush-newspool-");
    let (relay_uid, relay_gid) = relay_user();
    let base = dir.path().join("relay");
    std::fs::create_dir(&base).unwrap();
    std::os::unix::fs::chown(&base, Some(relay_uid), Some(relay_gid)).unwrap();
    let spool = base.join("spool");
    let sock = base.join("sock");
    let mut relay = KillOnDrop(
        Command::new(relay_path())
            .arg("--listen")
            .arg(&sock)
            .arg("--spool")
            .arg(&spool)
            .env("RESTRICT_SETUID", relay_uid.to_string())
            .env("RESTRICT_SETGID", relay_gid.to_string())
            .env_remove("SERVICE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + WAIT;
    while frame::request_stats(&sock, Duration::from_secs(1)).is_err() {
        assert!(relay.0.try_wait().unwrap().is_none(), "the relay exited");
        assert!(Instant::now() < until, "the relay did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let md = std::fs::metadata(&spool).unwrap();
    assert_eq!(
        (md.uid(), md.mode() & 0o7777),
        (relay_uid, 0o700),
        "spool {:o}",
        md.mode()
    );
    let out = run_as(UID, UID, &[], "ls", &[spool.to_str().unwrap()]);
    assert!(!out.status.success());
}

/// A raw client of the relay socket, as a mail process (or an attacker with
/// the internal group) would be.
struct RawClient {
    s: UnixStream,
    buf: Vec<u8>,
    seq: u64,
}

impl RawClient {
    fn connect(path: &Path) -> RawClient {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        RawClient {
            s,
            buf: Vec::new(),
            seq: 0,
        }
    }

    /// The next frame; `None` when the relay closed the connection.
    fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = frame::decode(&self.buf, frame::MAX_PAYLOAD).unwrap() {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read from the relay: {e}"),
            }
        }
    }

    /// Hands one notification in; returns the relay's acknowledgement.
    fn notify(&mut self, url: &str, subject: &str) -> AckStatus {
        self.seq += 1;
        let f = notify_frame(url, subject, self.seq);
        self.s.write_all(&f).unwrap();
        match self.next() {
            Some(Frame::Ack { seq, status }) if seq == self.seq => status,
            other => panic!("expected an Ack for {}, got {other:?}", self.seq),
        }
    }
}

/// A relay (Dovecot's service) with a well-behaved client on it: a
/// connection of its own, and LMTP deliveries.
struct Served {
    cap: Capture,
    dc: Dovecot,
    good: RawClient,
    subjects: Vec<String>,
}

impl Served {
    fn start() -> Served {
        let cap = Capture::start();
        let dc = Dovecot::start(DovecotOpts::new(
            Driver::OxPush,
            vec![format!(
                "ox:url={} user_from_metadata",
                cap.url("", "/notify")
            )],
        ));
        dc.set_metadata("alice", "user=3@1");
        let good = RawClient::connect(&dc.relay_socket);
        let mut s = Served {
            cap,
            dc,
            good,
            subjects: Vec::new(),
        };
        s.still_served("first");
        s
    }

    /// The good client's connection is served, and so are LMTP deliveries.
    fn still_served(&mut self, tag: &str) {
        let raw = format!("raw-{tag}");
        let url = self.cap.url("", "/notify");
        assert_eq!(self.good.notify(&url, &raw), AckStatus::Stored);
        let lmtp = format!("lmtp-{tag}");
        let t = Instant::now();
        let reply = self.dc.lmtp(&["alice"], &simple_message(&lmtp));
        assert!(reply[0].starts_with("250"), "{reply:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        self.subjects.push(raw);
        self.subjects.push(lmtp);
        let got = self.cap.wait_for(self.subjects.len(), WAIT);
        let mut got = subjects(&got);
        got.sort();
        let mut want = self.subjects.clone();
        want.sort();
        assert_eq!(got, want, "{}", self.dc.log());
    }

    /// Sends `bytes` on a connection of its own, expects one `Error` frame
    /// containing `why`, then the end of the connection, and one log line
    /// naming this process as the peer.
    fn attack(&mut self, bytes: &[u8], why: &str) {
        let mut bad = RawClient::connect(&self.dc.relay_socket);
        // The relay may close before all is written: that is the point.
        let _ = bad.s.write_all(bytes);
        match bad.next() {
            Some(Frame::Error { message }) => {
                assert!(message.contains(why), "{message:?} lacks {why:?}")
            }
            other => panic!("expected an Error frame for {why:?}, got {other:?}"),
        }
        assert!(bad.next().is_none(), "connection not closed after {why:?}");
        let peer = format!("relay client pid {} (uid 0): ", std::process::id());
        assert!(
            self.dc
                .wait_log(WAIT, |l| l.contains(&format!("{peer}{why}"))),
            "{}",
            self.dc.log()
        );
        let log = self.dc.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(why)).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("Warning:") && lines[0].ends_with("; connection closed"),
            "{}",
            lines[0]
        );
        self.still_served(why);
    }

    fn finish(self, attacks: usize) {
        let peer = format!("relay client pid {} (uid 0)", std::process::id());
        let log = self.dc.log();
        assert_eq!(
            log.lines().filter(|l| l.contains(&peer)).count(),
            attacks,
            "{log}"
        );
        let stats = self.dc.relay_stats();
        assert_eq!(
            stats["relay"]["protocol_errors"].as_u64(),
            Some(attacks as u64),
            "{stats}"
        );
    }
}

fn header(version: u8, kind: u8, len: u32) -> Vec<u8> {
    let mut h = frame::MAGIC.to_vec();
    h.extend_from_slice(&[version, kind, 0, 0]);
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// A record announcing more than `--max-record-size` (1 MiB) is refused from
/// its header, before its payload is read or any memory is set aside for it.
#[test]
fn oversized_record_costs_only_its_own_connection() {
    let mut s = Served::start();
    let mut big = header(frame::VERSION, 1, 2 << 20);
    big.extend(std::iter::repeat_n(b'x', 256 * 1024));
    s.attack(&big, "frame of 2097152 bytes, at most 1048576 accepted");
    s.attack(
        &header(frame::VERSION, 1, u32::MAX),
        "frame of 4294967295 bytes, at most 1048576 accepted",
    );
    s.finish(2);
}

/// Records whose header is fine but whose content is not: garbage, a length
/// field pointing far past the record (the old journal parser's overflow), an
/// over-long field, trailing bytes, an unknown kind, a kind only the relay
/// sends.
#[test]
fn malformed_record_costs_only_its_own_connection() {
    let mut s = Served::start();
    let url = s.cap.url("", "/notify");
    let mut garbage = header(frame::VERSION, 1, 48);
    garbage.extend_from_slice(&[0xff; 48]);
    s.attack(&garbage, "malformed Notify frame: flags: unknown bits 0xff");

    let good = notify_frame(&url, "never sent", 99);
    let body_len = br#"{"user":"3@1","event":"messageNew","subject":"never sent"}"#.len();
    let mut overflow = good.clone();
    let at = overflow.len() - body_len - 4;
    overflow[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    s.attack(
        &overflow,
        "malformed Notify frame: body: 4294967280 bytes, at most",
    );

    let mut long_url = good.clone();
    // header, seq, id, created, timeout, max_age, flags: then the URL length.
    let at = frame::HEADER_LEN + 8 + 16 + 8 + 4 + 4 + 1;
    long_url[at..at + 2].copy_from_slice(&0xffffu16.to_be_bytes());
    s.attack(
        &long_url,
        "malformed Notify frame: url: 65535 bytes, at most 4096 allowed",
    );

    let mut trailing = good.clone();
    trailing.extend_from_slice(b"abc");
    let len = (trailing.len() - frame::HEADER_LEN) as u32;
    trailing[8..12].copy_from_slice(&len.to_be_bytes());
    s.attack(
        &trailing,
        "malformed Notify frame: frame: 3 unexpected trailing bytes",
    );

    s.attack(&header(frame::VERSION, 99, 0), "unknown frame kind 99");
    let ack = Frame::Ack {
        seq: 1,
        status: AckStatus::Stored,
    };
    s.attack(&ack.to_bytes().unwrap(), "unexpected Ack frame");
    assert!(!subjects(&s.cap.requests())
        .iter()
        .any(|x| x == "never sent"));
    s.finish(6);
}

/// Something that is not an ox-push record (an HTTP request: someone pointed
/// the wrong client at the socket), and records of another protocol version.
#[test]
fn record_with_bad_magic_or_version_costs_only_its_own_connection() {
    let mut s = Served::start();
    s.attack(
        b"PUT /notify HTTP/1.1\r\nHost: x\r\n\r\n",
        "not an ox-push record (bad magic)",
    );
    let mut v2 = notify_frame(&s.cap.url("", "/notify"), "v2", 1);
    v2[4] = 2;
    s.attack(&v2, "protocol version 2 is not supported");
    s.attack(&header(0, 1, 0), "protocol version 0 is not supported");
    s.finish(3);
}

/// A record that never completes, its bytes dribbled one per second (so
/// that no single read waits long), is cut off once it has been incomplete
/// for the relay's limit (30 s), with one log line; the relay serves its
/// other clients all along.
#[test]
fn slow_partial_record_costs_only_its_own_connection() {
    let mut s = Served::start();
    let frame_bytes = notify_frame(&s.cap.url("", "/notify"), "slow", 1);
    let mut bad = RawClient::connect(&s.dc.relay_socket);
    bad.s
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let started = Instant::now();
    bad.s.write_all(&frame_bytes[..20]).unwrap();
    let mut sent = 20;
    let mut error = None;
    let mut closed_after = None;
    let mut served = 0;
    let mut chunk = [0u8; 4096];
    // Bounded: 45 s, or the whole record minus one byte.
    while started.elapsed() < Duration::from_secs(45) && sent < frame_bytes.len() - 1 {
        match bad.s.read(&mut chunk) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(n) => bad.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
        if let Ok(Some((f, n))) = frame::decode(&bad.buf, frame::MAX_PAYLOAD) {
            bad.buf.drain(..n);
            error = Some(f);
        }
        if bad.s.write_all(&frame_bytes[sent..sent + 1]).is_ok() {
            sent += 1;
        }
        // The others are served meanwhile (every ~5 s).
        if started.elapsed() > Duration::from_secs(5 * (served + 1)) {
            served += 1;
            s.still_served(&format!("meanwhile-{served}"));
        }
        std::thread::sleep(Duration::from_millis(950));
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "the relay still holds a record incomplete for {:?} ({sent} of {} bytes)\n{}",
            started.elapsed(),
            frame_bytes.len(),
            s.dc.log()
        )
    });
    assert!(
        closed_after < Duration::from_secs(40),
        "closed after {closed_after:?}"
    );
    assert!(
        matches!(&error, Some(Frame::Error { message }) if message.contains("a record stayed incomplete for 30s")),
        "{error:?}"
    );
    assert!(served >= 4, "{served}");
    s.still_served("after");
    assert!(
        s.dc.wait_log(WAIT, |l| l.contains(&format!(
            "relay client pid {} (uid 0): a record stayed incomplete for 30s; connection closed",
            std::process::id()
        ))),
        "{}",
        s.dc.log()
    );
    s.finish(1);
}
