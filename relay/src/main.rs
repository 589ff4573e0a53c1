//! ox-push-relay: the one unprivileged service that owns the ox_push plugin's
//! spool, retries and connections to the OX middleware.
//!
//! This file is glue: privileges, the log, the socket, the runtime, signals.
//! The work is in [`intake`] (the socket mail processes write to), [`queue`]
//! (what is pending, per endpoint), [`spool`] (the journal), [`send`] (HTTP to
//! the middleware) and [`metrics`].

mod intake;
mod listen;
mod log;
mod metrics;
mod privileges;
mod queue;
mod safe_fs;
mod send;
mod settings;
mod spool;

use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::{watch, Notify};

use crate::queue::{Outcome, State, Take};
use crate::send::Peer;
use crate::settings::Settings;

/// A sender task closes its kept-alive connection after this long unused.
const IDLE_CLOSE: Duration = Duration::from_secs(60);
/// How long a new relay waits for the spool lock of one that is stopping
/// (Dovecot starts the new one at a reload before the old one is gone).
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// Dovecot's FATAL_DEFAULT exit code: the master logs it as a fatal failure.
const EXIT_FATAL: u8 = 89;

/// What every task shares.
pub struct Core {
    pub state: Mutex<State>,
    pub settings: Settings,
    pub started: Instant,
    /// Mail process connections open now.
    pub clients: AtomicUsize,
    /// Endpoints whose sender tasks run.
    senders_started: Mutex<usize>,
    shutdown: watch::Sender<bool>,
}

impl Core {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the sender tasks of endpoints that appeared since the last call.
    pub fn wake_new_endpoints(self: &Core) {
        let mut known = self
            .senders_started
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let new = self.lock().endpoints_after(*known);
        for (ep, peer, wake) in new {
            *known = ep + 1;
            for _ in 0..self.settings.concurrency {
                let core = CORE.get().expect("core set before tasks").clone();
                tokio::spawn(sender(core, ep, peer.clone(), wake.clone()));
            }
        }
    }
}

static CORE: std::sync::OnceLock<Arc<Core>> = std::sync::OnceLock::new();

/// One sender task of endpoint `ep`: takes items, sends them on its own
/// kept-alive connection, reports the outcome.
async fn sender(core: Arc<Core>, ep: usize, peer: Arc<Peer>, wake: Arc<Notify>) {
    let mut shutdown = core.shutdown.subscribe();
    let mut conn = None;
    let mut last_used = Instant::now();
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let take = core.lock().take(ep, Instant::now());
        match take {
            Take::Job(job) => {
                let (outcome, connected) = tokio::select! {
                    r = send::attempt(&peer, &mut conn, &job) => r,
                    _ = shutdown.changed() => (Outcome::Abandoned, false),
                };
                let stop = matches!(outcome, Outcome::Abandoned);
                {
                    let mut s = core.lock();
                    if connected {
                        s.connected(ep);
                    }
                    s.complete(ep, job.id, outcome, Instant::now());
                }
                if stop {
                    return;
                }
                last_used = Instant::now();
            }
            Take::Wait(until) => {
                let idle = conn.is_some().then_some(last_used + IDLE_CLOSE);
                let wake_at = match (until, idle) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let sleep = async {
                    match wake_at {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = notified => {}
                    _ = sleep => {}
                    _ = shutdown.changed() => return,
                }
                if conn.is_some() && last_used.elapsed() >= IDLE_CLOSE {
                    conn = None;
                }
            }
        }
    }
}

/// Resolves when Dovecot's master is gone: we hold the write end of a pipe
/// whose read end the master holds, and it reports an error once the master
/// has exited (as libdovecot watches it, with IO_ERROR).
async fn master_dead() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use tokio::io::Interest;
    // SAFETY: MASTER_DEAD_FD is the pipe the master passed us; nothing else in
    // this process uses or closes it, so we own it from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(listen::MASTER_DEAD_FD) };
    // SAFETY: the descriptor stays open as long as the AsyncFd owns it.
    match unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, Interest::ERROR) } {
        Ok(fd) => {
            let _ = fd.ready(Interest::ERROR).await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn run(core: Arc<Core>, listener: std::os::unix::net::UnixListener) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::fatal(format!("relay socket: {e}"));
            return;
        }
    };
    core.wake_new_endpoints();
    if let Some(addr) = core.settings.metrics_listen {
        tokio::spawn(metrics::serve(addr, core.clone()));
    }
    tokio::spawn(intake::serve(listener, core.clone()));
    let signal = |kind| {
        let mut s = tokio::signal::unix::signal(kind).expect("signal handler");
        async move { s.recv().await }
    };
    let (term, int, quit) = (
        signal(tokio::signal::unix::SignalKind::terminate()),
        signal(tokio::signal::unix::SignalKind::interrupt()),
        signal(tokio::signal::unix::SignalKind::quit()),
    );
    // SIGHUP (Dovecot reload): nothing to reload; do not die of it.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("signal handler");
    tokio::spawn(async move { while hup.recv().await.is_some() {} });
    let under_dovecot = listen::under_dovecot();
    tokio::select! {
        _ = term => log::info("SIGTERM: stopping"),
        _ = int => log::info("SIGINT: stopping"),
        _ = quit => log::info("SIGQUIT: stopping (Dovecot reload)"),
        _ = async { if under_dovecot { master_dead().await } else { std::future::pending().await } } => {
            log::info("Dovecot's master is gone: stopping")
        }
    }
    let _ = core.shutdown.send(true);
    // Let the sender tasks put their items back.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut s = core.lock();
    s.flush();
    log::info(format!(
        "stopped; {} notification(s) stay in the spool",
        s.pending()
    ));
}

fn open_spool(settings: &Settings) -> Result<(spool::Spool, spool::Replayed), String> {
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match spool::Spool::open(&settings.spool, settings.fsync) {
            Err(e) if e.contains("another ox-push-relay") && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn start(settings: Settings) -> Result<(Arc<Core>, std::os::unix::net::UnixListener), String> {
    privileges::drop_privileges()?;
    let nofile = privileges::raise_nofile();
    let listener = match &settings.listen {
        Some(path) => listen::bind(path, settings.socket_mode, settings.socket_group.as_deref())?,
        None if listen::under_dovecot() => {
            let l = listen::from_master()?;
            listen::report_status();
            l
        }
        None => {
            return Err(
                "no socket to listen on: give --listen PATH, or run ox-push-relay as a \
                        Dovecot service (see dovecot-plugin/95-ox-push.conf)"
                    .into(),
            )
        }
    };
    let (spool, replayed) = open_spool(&settings)?;
    let state = State::new(
        spool,
        replayed,
        settings.spool_max_size,
        settings.response_max_size,
    );
    log::info(format!(
        "ox-push-relay {} started: spool {} ({} pending), {} connection(s) per endpoint, \
         open files limit {nofile}",
        env!("CARGO_PKG_VERSION"),
        settings.spool.display(),
        state.pending(),
        settings.concurrency,
    ));
    let (shutdown, _) = watch::channel(false);
    let core = Arc::new(Core {
        state: Mutex::new(state),
        settings,
        started: Instant::now(),
        clients: AtomicUsize::new(0),
        senders_started: Mutex::new(0),
        shutdown,
    });
    Ok((core, listener))
}

fn main() -> ExitCode {
    let settings = Settings::parse();
    let dovecot_log =
        std::env::var("LOG_SERVICE").is_ok_and(|v| v == "1") || listen::under_dovecot();
    // Dovecot passes its global log_debug filter; the relay has no event
    // filters of its own, so a filter naming our category turns debug on.
    let filter = std::env::var("LOG_DEBUG")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let debug =
        settings.debug || filter.contains("push-notification") || filter.contains("ox-push");
    log::init(dovecot_log, debug);
    // A few arenas keep the address space small (Dovecot's vsz_limit).
    // SAFETY: mallopt before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let threads = settings.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(4)
    });
    let (core, listener) = match start(settings) {
        Ok(x) => x,
        Err(e) => {
            log::fatal(e);
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let _ = CORE.set(core.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::fatal(format!("cannot start the runtime: {e}"));
            return ExitCode::from(EXIT_FATAL);
        }
    };
    runtime.block_on(run(core, listener));
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::SUCCESS
}
