//! ox-push-relay: the one unprivileged service that owns the ox_push plugin's
//! spool, retries and connections to the OX middleware.
//!
//! This file is glue: privileges, the log, the socket, the runtime, signals.
//! The work is in [`intake`] (the socket mail processes write to), [`queue`]
//! (what is pending, per endpoint, and the counters of [`counters`]),
//! [`spool`] (the journal, through [`safe_fs`]), [`send`] (HTTP to the
//! middleware, one [`send::task`] per connection; [`outcome`] is what the
//! scheduler and the senders tell each other) and [`metrics`]. [`shared`] is
//! what the tasks share. Modules depend on each other in one direction only:
//! intake and metrics on shared; shared on queue and send; queue on send, spool,
//! outcome and counters; send on outcome; spool and send's TLS on safe_fs.

mod counters;
mod intake;
mod listen;
mod log;
mod metrics;
mod outcome;
mod privileges;
mod queue;
mod safe_fs;
mod send;
mod settings;
mod shared;
mod spool;

use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::watch;

use crate::queue::State;
use crate::settings::Settings;
use crate::shared::Core;

/// How long a new relay waits for the spool lock of one that is stopping
/// (Dovecot starts the new one at a reload before the old one is gone).
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// Dovecot's FATAL_DEFAULT exit code: the master logs it as a fatal failure.
const EXIT_FATAL: u8 = 89;

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
    core.stop_senders();
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
        state: Arc::new(Mutex::new(state)),
        settings,
        started: Instant::now(),
        clients: AtomicUsize::new(0),
        senders_started: Mutex::new(0),
        shutdown,
    });
    Ok((core, listener))
}

fn main() -> ExitCode {
    let dovecot_log =
        std::env::var("LOG_SERVICE").is_ok_and(|v| v == "1") || listen::under_dovecot();
    let settings = match Settings::try_parse() {
        Ok(s) => s,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line naming the option, the value and what is expected
            // (under Dovecot every stderr line would be an error of its own).
            log::init(dovecot_log, false);
            let text = e.to_string();
            log::fatal(text.lines().next().unwrap_or("invalid command line"));
            return ExitCode::from(EXIT_FATAL);
        }
    };
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
    let threads = usize::from(settings.threads);
    let (core, listener) = match start(settings) {
        Ok(x) => x,
        Err(e) => {
            log::fatal(e);
            return ExitCode::from(EXIT_FATAL);
        }
    };
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
