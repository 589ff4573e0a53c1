//! The relay socket: mail processes hand notifications over here.
//!
//! Each connection is read into a buffer bounded by the largest record
//! accepted (`--max-record-size`): the frame header is checked before its
//! payload is read, so an oversized or malformed record costs its sender the
//! connection (with one `Error` frame saying why and one log line naming the
//! peer's pid and uid), never the relay's memory or the other clients. A frame
//! left incomplete for [`PARTIAL_TIMEOUT`] closes the connection too. All
//! notifications read in one go are journaled with one write, then
//! acknowledged in order.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ox_push_record::frame::{self, Frame, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::log;
use crate::shared::Core;

/// A frame must arrive whole within this time once it has begun.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is on the other end (`SO_PEERCRED`), for log lines.
fn peer(stream: &UnixStream) -> String {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out-parameters for SO_PEERCRED.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r == 0 {
        format!("pid {} (uid {})", cred.pid, cred.uid)
    } else {
        "an unknown peer".to_string()
    }
}

pub async fn serve(listener: UnixListener, core: Arc<Core>) {
    let mut refused_logged = false;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                log::error(format!("accept() on the relay socket failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if core.clients.load(Ordering::Relaxed) >= core.settings.max_clients {
            if !refused_logged {
                log::error(format!(
                    "more than {} mail process connections (--max-clients): refusing new ones",
                    core.settings.max_clients
                ));
                refused_logged = true;
            }
            let _ = reply_error(stream, "too many connections to the relay").await;
            continue;
        }
        refused_logged = false;
        core.clients.fetch_add(1, Ordering::Relaxed);
        let core = core.clone();
        tokio::spawn(async move {
            let who = peer(&stream);
            if let Err(e) = client(stream, &core).await {
                core.lock().counters.protocol_errors += 1;
                log::warning(format!("relay client {who}: {e}; connection closed"));
            }
            core.clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn reply_error(mut stream: UnixStream, message: &str) -> std::io::Result<()> {
    let f = Frame::Error {
        message: message.to_string(),
    };
    let bytes = f.to_bytes().unwrap_or_default();
    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)?
}

/// Serves one connection until it ends; an `Err` names the protocol breach
/// (the peer got an `Error` frame).
async fn client(mut stream: UnixStream, core: &Core) -> Result<(), String> {
    let max = core.settings.max_record_size;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out = Vec::new();
    // When the frame being read must be whole: PARTIAL_TIMEOUT after its first
    // bytes, not after the last read (a byte now and then must not keep an
    // incomplete frame alive).
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Reads of up to 16 KiB; the frame header is checked as soon as it is
        // in, so the buffer never holds more than one record plus one read.
        buf.reserve(16 * 1024);
        let read = if buf.is_empty() {
            stream.read_buf(&mut buf).await
        } else {
            let until =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + PARTIAL_TIMEOUT);
            match tokio::time::timeout_at(until, stream.read_buf(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    let why = format!(
                        "a record stayed incomplete for {}s",
                        PARTIAL_TIMEOUT.as_secs()
                    );
                    let _ = reply_error(stream, &why).await;
                    return Err(why);
                }
            }
        };
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
        let mut used = 0;
        let mut batch = Vec::new();
        let breach = loop {
            match frame::decode(&buf[used..], max) {
                Ok(None) => break None,
                Ok(Some((f, n))) => {
                    used += n;
                    match f {
                        Frame::Notify { seq, item } => batch.push((seq, item)),
                        Frame::Report { dropped } => {
                            core.lock().counters.dropped_in_mail_processes += dropped;
                            log::warning(format!(
                                "a mail process dropped {dropped} notification(s) before handing \
                                 them over (its queue was full while the relay did not take them)"
                            ));
                        }
                        Frame::StatsRequest => {
                            let json = crate::metrics::snapshot(core).to_string().into_bytes();
                            Frame::Stats { json }.encode(&mut out)?;
                        }
                        other => break Some(format!("unexpected {:?} frame", other.kind())),
                    }
                }
                Err(e) => break Some(e.to_string()),
            }
        };
        if !batch.is_empty() {
            let acks = core.lock().accept(batch);
            core.wake_new_endpoints();
            for (seq, status) in acks {
                Frame::Ack { seq, status }.encode(&mut out)?;
            }
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            out.clear();
        }
        if let Some(why) = breach {
            let _ = reply_error(stream, &why).await;
            return Err(why);
        }
        buf.drain(..used);
        if used > 0 {
            // What is left is the start of the next frame.
            deadline = None;
        }
        // Room for the rest of the frame being read, never beyond the bound.
        if buf.capacity() > 2 * (max + HEADER_LEN) {
            buf.shrink_to(max + HEADER_LEN);
        }
    }
}
