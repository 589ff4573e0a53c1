//! Benchmark helpers: seed subscriptions in bulk and drive PUT load from a second process.
//!
//! `load seed` writes subscriptions straight into the SQLite file before the server starts
//! (what "pre-created" means in the benchmark); `load run` keeps `connections` keep-alive HTTP/1.1
//! connections busy with notify PUTs for a bounded time and count, and prints one JSON line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::store::{now_ms, Subscription};

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub cmd: LoadCmd,
}

#[derive(Subcommand, Debug)]
pub enum LoadCmd {
    /// Insert `users` subscriptions (user ids 1..=users in context 1, client
    /// open-xchange-mailapp, transport apn) into the database file.
    Seed {
        /// A SQLite file or a `postgres://` URL.
        #[arg(long)]
        db: String,
        #[arg(long)]
        users: u32,
    },
    /// The bare client loop of the benchmark: `pushes` APNs pushes straight into a (fake) APNs
    /// with the middleware's own sender (HTTP/2, JWT), `concurrency` in flight; prints pushes/s
    /// and this process's CPU time per push. The yardstick the middleware is measured against.
    Bare {
        /// APNs base URL, e.g. https://127.0.0.1:8443.
        #[arg(long)]
        url: String,
        /// PEM file with the CA to trust.
        #[arg(long)]
        ca_file: PathBuf,
        /// The `.p8` key, key id and team id.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        team_id: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 50_000)]
        pushes: u64,
        #[arg(long, default_value_t = 1000)]
        tokens: u32,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// PUT notifications for random users in 1..=users.
    Run {
        /// The notify URL; several, comma-separated, spread the connections over nodes.
        #[arg(long)]
        url: String,
        /// Send a fresh `X-Notification-Id` (UUID) with every notification, as the relay's
        /// `notification_id` option does.
        #[arg(long)]
        ids: bool,
        #[arg(long, default_value = "dovecot")]
        login: String,
        #[arg(long)]
        password: crate::config::Secret,
        #[arg(long, default_value_t = 1000)]
        users: u32,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 10_000_000)]
        max_requests: u64,
        /// Added to every user id (to address users without subscriptions).
        #[arg(long, default_value_t = 0)]
        user_offset: u64,
        /// Total requests per second across all connections; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
}

/// User plus system CPU time of this process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct passed by pointer.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs a `load` subcommand.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    match args.cmd {
        LoadCmd::Seed { db, users } => {
            let store = tokio::task::spawn_blocking(move || {
                let target = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
                    crate::config::DbTarget::Postgres(db.as_str().into())
                } else {
                    crate::config::DbTarget::Sqlite(db.into())
                };
                crate::store::open(&target, 1)
            })
            .await??;
            let subs: Vec<Subscription> = (1..=users as i32)
                .map(|u| Subscription {
                    context_id: 1,
                    user_id: u,
                    client: "open-xchange-mailapp".into(),
                    transport: "apn".into(),
                    token: format!("{:064x}", u),
                    topics: vec!["ox:mail:new".to_string()].into(),
                    created: now_ms(),
                })
                .collect();
            tokio::task::spawn_blocking(move || store.put_many(&subs)).await??;
            println!("{}", json!({"seeded": users}));
        }
        LoadCmd::Bare {
            url,
            ca_file,
            key,
            key_id,
            team_id,
            topic,
            pushes,
            tokens,
            concurrency,
        } => {
            let p8 = std::fs::read(&key)?;
            let base = url.trim_end_matches('/').to_string();
            let client = crate::push::h2::H2Client::new(
                &base,
                Some(&ca_file),
                None,
                Duration::from_secs(10),
                1,
            )?;
            let apns = Arc::new(crate::push::apns::Apns {
                client,
                base,
                topic: topic.into(),
                expiration_s: 86_400,
                jwt: Some(crate::push::apns::JwtSigner::new(&p8, &key_id, &team_id)?),
            });
            let event = crate::event::MailEvent::new(
                1,
                1,
                "INBOX".into(),
                1,
                Some("Bench <bench@example.org>".into()),
                Some("load test".into()),
                3,
            );
            let msg = Arc::new(
                crate::push::payload::build(
                    "open-xchange-mailapp",
                    crate::push::payload::Kind::Apns,
                    &event,
                )
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
            let (next, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let cpu0 = cpu_seconds();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (apns, msg, next, ok) = (apns.clone(), msg.clone(), next.clone(), ok.clone());
                tasks.push(tokio::spawn(async move {
                    use crate::push::Provider;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= pushes {
                            break;
                        }
                        let token = format!("{:064x}", i % tokens as u64 + 1);
                        let a = apns.send(&token, &msg).await;
                        if a.outcome == crate::push::Outcome::Delivered {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
            let secs = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            let delivered = ok.load(Ordering::Relaxed);
            println!(
                "{}",
                json!({"pushes": delivered, "seconds": secs, "pushes_per_s": delivered as f64 / secs,
                       "cpu_us_per_push": cpu * 1e6 / delivered.max(1) as f64})
            );
        }
        LoadCmd::Run {
            url,
            login,
            password,
            users,
            connections,
            seconds,
            max_requests,
            rate,
            user_offset,
            ids,
        } => {
            let urls: Vec<String> = url.split(',').map(|u| u.trim().to_string()).collect();
            let auth = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{login}:{}", password.expose()))
            );
            let client = reqwest::Client::builder()
                .http1_only()
                .pool_max_idle_per_host(connections)
                .build()?;
            let (ok, busy, other, sent) = (
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
            );
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..connections {
                let (client, url, auth) =
                    (client.clone(), urls[c % urls.len()].clone(), auth.clone());
                let (ok, busy, other, sent) =
                    (ok.clone(), busy.clone(), other.clone(), sent.clone());
                let interval =
                    (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
                tasks.push(tokio::spawn(async move {
                    let mut i = c as u64;
                    let mut next = Instant::now();
                    while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < max_requests {
                        if let Some(iv) = interval {
                            next += iv;
                            tokio::time::sleep_until(next.into()).await;
                        }
                        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let user = (i >> 33) % users as u64 + 1 + user_offset;
                        let body = format!(
                            "{{\"user\":\"{user}@1\",\"event\":\"messageNew\",\"folder\":\"INBOX\",\"imap-uid\":{i},\"imap-uidvalidity\":1,\"unseen\":3,\"from\":\"Bench <bench@example.org>\",\"subject\":\"load test\",\"snippet\":\"x\"}}",
                            i = i % 1_000_000
                        );
                        let mut req = client.put(&url).header("authorization", &auth).header("content-type", "application/json");
                        if ids {
                            req = req.header("x-notification-id", uuid::Uuid::new_v4().to_string());
                        }
                        match req.body(body).send().await {
                            Ok(r) if r.status().as_u16() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(r) if r.status().as_u16() == 503 => busy.fetch_add(1, Ordering::Relaxed),
                            _ => other.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
            let secs = started.elapsed().as_secs_f64();
            let accepted = ok.load(Ordering::Relaxed);
            println!(
                "{}",
                json!({"seconds": secs, "accepted": accepted, "rejected_503": busy.load(Ordering::Relaxed),
                       "errors": other.load(Ordering::Relaxed), "accepted_per_s": accepted as f64 / secs})
            );
        }
    }
    Ok(())
}
