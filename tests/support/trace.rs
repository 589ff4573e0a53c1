//! Watching processes from the outside: which files they name in their
//! syscalls (strace attached to running processes), how much memory they
//! hold (/proc), and running a command as another user (setpriv). Every
//! process started here is stopped when its guard is dropped, also when the
//! test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What [`Strace`] records: every syscall that takes a file name, plus the
/// socket calls that show a process is traced at all (a `connect` to the
/// middleware, an `accept` on the relay socket).
pub const TRACED_SYSCALLS: &str = "trace=%file,connect,accept,accept4";

/// `ppid` of a process, from /proc/<pid>/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    let close = stat.rfind(')')?;
    stat.get(close + 2..)?.split(' ').nth(1)?.parse().ok()
}

/// `root` and every process below it, from /proc.
pub fn process_tree(root: i32) -> Vec<i32> {
    let mut all: Vec<(i32, i32)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
            if let Some(ppid) = parent_of(pid) {
                all.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// A `kB` field of /proc/<pid>/status (`VmRSS`, `VmHWM`, ...).
pub fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn tracer_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

/// `strace -f` attached to running processes (and every process they start
/// from then on), writing to a file. Detaches when dropped.
pub struct Strace {
    child: Option<Child>,
    pub out: PathBuf,
    err: PathBuf,
}

/// The strace binary (scripts/install-deps.sh installs it).
fn strace_bin() -> &'static str {
    for p in ["/usr/bin/strace", "/bin/strace"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("strace is not installed (scripts/install-deps.sh installs it)");
}

fn strace_command(out: &Path) -> Command {
    let mut c = Command::new(strace_bin());
    // -qq: no attach/detach/exit lines; -s: whole path names, never "...".
    c.args(["-f", "-qq", "-s", "4096", "-e", TRACED_SYSCALLS, "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

impl Strace {
    /// Attaches to `pids` (all their threads, and their future children);
    /// returns once the kernel reports every one of them as traced.
    pub fn attach(pids: &[i32], out: &Path) -> Strace {
        let err = out.with_extension("err");
        let mut c = strace_command(out);
        for p in pids {
            c.arg("-p").arg(p.to_string());
        }
        c.stderr(std::fs::File::create(&err).unwrap());
        let mut s = Strace {
            child: Some(c.spawn().expect("strace")),
            out: out.to_path_buf(),
            err,
        };
        let me = s.child.as_ref().unwrap().id() as i32;
        let until = Instant::now() + Duration::from_secs(10);
        for &p in pids {
            // A process that is gone meanwhile has nothing left to trace.
            while tracer_of(p).is_some_and(|t| t != me) {
                if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("strace exited with {st}: {}", s.errors());
                }
                assert!(
                    Instant::now() < until,
                    "strace did not attach to {p}: {}",
                    s.errors()
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
        s
    }

    /// Runs `program args` under strace -f to its end, with `input` on its
    /// stdin and at most `timeout`; returns the program's exit code (None:
    /// killed at the timeout) and what strace recorded.
    pub fn run(
        program: &Path,
        args: &[&str],
        input: &[u8],
        out: &Path,
        timeout: Duration,
    ) -> (Option<i32>, String) {
        use std::io::Write;
        let mut c = strace_command(out);
        c.arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = KillOnDrop(c.spawn().expect("strace"));
        {
            let mut stdin = child.0.stdin.take().unwrap();
            let _ = stdin.write_all(input);
        }
        let until = Instant::now() + timeout;
        let code = loop {
            if let Some(st) = child.0.try_wait().unwrap() {
                break st.code();
            }
            if Instant::now() > until {
                break None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        drop(child);
        (code, std::fs::read_to_string(out).unwrap_or_default())
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// What strace wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Detaches from every traced process and waits for strace to end;
    /// returns everything it recorded.
    pub fn stop(&mut self) -> String {
        if let Some(c) = self.child.take() {
            // SIGINT: strace detaches cleanly, the tracees run on.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let mut guard = KillOnDrop(c);
            // Else SIGKILL (the kernel detaches its tracees) when dropped.
            let _ = guard.wait_timeout(Duration::from_secs(10));
        }
        self.output()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The lines of a strace output that contain any of `needles`.
pub fn lines_naming<'a>(trace: &'a str, needles: &[String]) -> Vec<&'a str> {
    trace
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n.as_str())))
        .collect()
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Waits at most `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > until {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `program args` as `uid`/`gid` with exactly the supplementary groups
/// `groups` (none: `--clear-groups`), via setpriv; at most 20 seconds.
pub fn run_as(uid: u32, gid: u32, groups: &[u32], program: &str, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        c.arg(format!("--groups={}", list.join(",")));
    }
    c.arg("--").arg(program).args(args);
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv");
    let mut guard = KillOnDrop(child);
    let status = guard.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some(),
        "{program} {args:?} as uid {uid}: still running after 20s"
    );
    let mut out = Output {
        status: status.unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut s) = guard.0.stdout.take() {
        let _ = s.read_to_end(&mut out.stdout);
    }
    if let Some(mut s) = guard.0.stderr.take() {
        let _ = s.read_to_end(&mut out.stderr);
    }
    out
}
