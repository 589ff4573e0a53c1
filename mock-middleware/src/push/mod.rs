//! The push pipeline: a bounded queue of accepted notifications, fanned out to subscriptions.
//!
//! The notify handler only enqueues. One dispatcher task takes jobs off the queue and starts a
//! task per subscription, limited by a semaphore (`mock.push.concurrency`), so a slow provider
//! backs the queue up (and the notify endpoint answers 503) instead of growing memory. Each push
//! is retried with backoff honouring `Retry-After`, bounded in attempts and age; dead tokens
//! delete the subscription, canonical ids replace it.

pub mod apns;
mod claim;
pub mod client;
pub mod fcm;
pub mod gcm;
pub mod h2;
pub mod payload;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::config::Settings;
use crate::event::MailEvent;
use crate::metrics::Metrics;
use crate::recording::{PushRecord, Recorder};
use crate::store::{now_ms, SubKey, Subscription, Subscriptions};
use crate::wildcard::client_allowed;
pub use claim::{targets, ClaimTicket, Inflight};
use payload::{BuildError, Kind, Message};

/// One accepted notification and the subscriptions it goes to.
pub struct PushJob {
    pub seq: u64,
    pub received: Instant,
    pub event: Arc<MailEvent>,
    pub subs: Vec<Arc<Subscription>>,
    /// The claim of a notification with an `X-Notification-Id`: marked done when the job is
    /// dropped, i.e. when every push of it has finished.
    pub claim: Option<ClaimTicket>,
}

/// What to do after one provider answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Delivered, and the provider named a canonical token to use from now on.
    Replace(String),
    DropToken,
    DropMessage,
    Credential,
    Retry(Option<Duration>),
}

/// One provider answer, for recording.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub reason: String,
    pub url: String,
    pub request: SentRequest,
}

/// What was sent, kept cheap on the hot path (no JSON tree copied per push) and rendered as
/// JSON only when `/mock/pushes` is read.
#[derive(Debug, Clone, Default)]
pub enum SentRequest {
    #[default]
    None,
    /// A JSON document built for sending anyway (FCM, GCM).
    Json(Value),
    /// An APNs request: its `apns-*` headers and the exact body bytes.
    Apns {
        topic: Arc<str>,
        push_type: &'static str,
        priority: u8,
        expiration: u64,
        collapse_id: String,
        apns_id: String,
        body: bytes::Bytes,
    },
}

impl SentRequest {
    pub fn is_none(&self) -> bool {
        matches!(self, SentRequest::None)
    }

    /// The JSON shape of `/mock/pushes`' `request`.
    pub fn to_json(&self) -> Value {
        match self {
            SentRequest::None => Value::Null,
            SentRequest::Json(v) => v.clone(),
            SentRequest::Apns {
                topic,
                push_type,
                priority,
                expiration,
                collapse_id,
                apns_id,
                body,
            } => json!({
                "headers": {"apns-topic": &**topic, "apns-push-type": push_type, "apns-priority": priority,
                            "apns-expiration": expiration, "apns-collapse-id": collapse_id, "apns-id": apns_id},
                "body": serde_json::from_slice::<Value>(body).unwrap_or(Value::Null),
            }),
        }
    }
}

impl serde::Serialize for SentRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A push provider seam: APNs, FCM v1 or legacy GCM (or a test double).
pub trait Provider: Send + Sync {
    /// Short name for metrics and recordings (`apns`, `fcm`, `gcm`).
    fn name(&self) -> &'static str;
    /// Which payload format this provider takes.
    fn kind(&self) -> Kind;
    /// Sends one message to one token and classifies the answer.
    fn send<'a>(&'a self, token: &'a str, msg: &'a Message) -> BoxFuture<'a, Attempt>;
}

/// The configured providers.
#[derive(Clone, Default)]
pub struct Providers {
    pub apns: Option<Arc<dyn Provider>>,
    /// FCM v1 when a service account is configured, else legacy GCM when a key is.
    pub gcm: Option<Arc<dyn Provider>>,
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date (a date in the past is "now").
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

impl Attempt {
    /// A request that got no answer (connection, TLS, timeout): retried.
    pub(crate) fn transport(e: impl std::fmt::Display, url: String, request: SentRequest) -> Self {
        Attempt {
            outcome: Outcome::Retry(None),
            status: None,
            reason: format!("transport: {e}"),
            url,
            request,
        }
    }
}

/// Reads a provider's answer as JSON, at most [`h2::MAX_RESPONSE`] bytes of it: a hostile or
/// broken endpoint cannot make the middleware buffer without limit.
pub(crate) async fn bounded_json(mut resp: reqwest::Response) -> Result<Value, String> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if buf.len() + chunk.len() > h2::MAX_RESPONSE {
            return Err(format!(
                "the answer is longer than {} bytes",
                h2::MAX_RESPONSE
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf).map_err(|e| e.to_string())
}

/// Turns the answer to a JSON-bodied send into an [`Attempt`]: a transport error is retried,
/// else `classify` judges the status, the JSON body (`null` if unreadable or longer than
/// [`h2::MAX_RESPONSE`]) and `Retry-After`.
pub(crate) async fn json_attempt(
    resp: reqwest::Result<reqwest::Response>,
    url: String,
    request: SentRequest,
    classify: impl FnOnce(u16, &Value, Option<Duration>) -> (Outcome, String),
) -> Attempt {
    match resp {
        Err(e) => Attempt::transport(e, url, request),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let after = retry_after(resp.headers());
            let v: Value = bounded_json(resp).await.unwrap_or(Value::Null);
            let (outcome, reason) = classify(status, &v, after);
            Attempt {
                outcome,
                status: Some(status),
                reason,
                url,
                request,
            }
        }
    }
}

/// Delay before retry number `attempt` (1-based): `Retry-After` if given, else exponential
/// backoff from `base` with up to 50 % jitter.
pub fn backoff(attempt: u32, base: Duration, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter = exp.mul_f64(rand::random::<f64>() * 0.5);
    exp + jitter
}

struct Ctx {
    providers: Providers,
    subs: Subscriptions,
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    allowed: Vec<String>,
    max_attempts: u32,
    base: Duration,
    max_age: Duration,
}

/// Starts the dispatcher; returns the queue's sending half.
pub fn start(
    settings: &Settings,
    providers: Providers,
    subs: Subscriptions,
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
) -> mpsc::Sender<PushJob> {
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let ctx = Arc::new(Ctx {
        providers,
        subs,
        recorder,
        metrics,
        allowed: settings.allowed_clients.clone(),
        max_attempts: settings.retry_max_attempts,
        base: Duration::from_millis(settings.retry_base_ms),
        max_age: Duration::from_millis(settings.retry_max_age_ms),
    });
    tokio::spawn(dispatch(
        rx,
        ctx,
        Arc::new(Semaphore::new(settings.push_concurrency)),
    ));
    tx
}

async fn dispatch(mut rx: mpsc::Receiver<PushJob>, ctx: Arc<Ctx>, sem: Arc<Semaphore>) {
    while let Some(job) = rx.recv().await {
        ctx.metrics.queue_depth.dec();
        let job = Arc::new(job);
        for sub in job.subs.clone() {
            let Ok(permit) = sem.clone().acquire_owned().await else {
                return;
            };
            let (ctx, job) = (ctx.clone(), job.clone());
            tokio::spawn(async move {
                push_one(&ctx, &job, &sub).await;
                drop(permit);
            });
        }
    }
}

/// A device token shortened for logs: tokens are credentials of a sort and never logged whole.
pub fn mask(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    if head.len() < token.len() {
        format!("{head}…")
    } else {
        "…".into()
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Replace(_) => "token_replaced",
        Outcome::DropToken => "token_removed",
        Outcome::DropMessage => "message_dropped",
        Outcome::Credential => "credential_error",
        Outcome::Retry(_) => "retries_exhausted",
    }
}

async fn push_one(ctx: &Ctx, job: &PushJob, sub: &Subscription) {
    let transport_label = match &*sub.transport {
        "gcm" => "gcm",
        _ => "apns",
    };
    let mut rec = PushRecord {
        seq: ctx.recorder.next_seq(),
        notification_seq: job.seq,
        context_id: sub.context_id,
        user_id: sub.user_id,
        client: sub.client.clone(),
        transport: sub.transport.clone(),
        token: sub.token.clone(),
        provider: transport_label,
        outcome: "",
        finished_ms: 0,
        status: None,
        reason: String::new(),
        url: String::new(),
        request: SentRequest::None,
        attempts: 0,
        history: Vec::new(),
        latency_ms: 0.0,
        new_token: None,
    };
    let finish = |mut rec: PushRecord, provider: &'static str, outcome: &'static str| {
        rec.provider = provider;
        rec.outcome = outcome;
        rec.finished_ms = now_ms();
        rec.latency_ms = job.received.elapsed().as_secs_f64() * 1000.0;
        ctx.metrics.push(provider, outcome);
        tracing::debug!(provider, outcome, token = %mask(&rec.token), status = ?rec.status, reason = %rec.reason, "push finished");
        ctx.recorder.record_push(rec);
    };
    if !client_allowed(&ctx.allowed, &sub.client) {
        return finish(rec, transport_label, "client_not_allowed");
    }
    let provider = if transport_label == "gcm" {
        &ctx.providers.gcm
    } else {
        &ctx.providers.apns
    };
    let Some(provider) = provider else {
        return finish(rec, transport_label, "transport_disabled");
    };
    let msg = match payload::build(&sub.client, provider.kind(), &job.event) {
        Ok(m) => m,
        Err(BuildError::NoGenerator) => return finish(rec, provider.name(), "no_generator"),
        Err(BuildError::TooLarge(n)) => {
            rec.reason = format!("payload of {n} bytes cannot be cut to 4096");
            return finish(rec, provider.name(), "payload_too_large");
        }
    };
    let started = Instant::now();
    let mut attempts = 0u32;
    let last = loop {
        attempts += 1;
        let a = provider.send(&sub.token, &msg).await;
        rec.history.push(crate::recording::AttemptRecord {
            status: a.status,
            reason: a.reason.clone(),
        });
        let Outcome::Retry(after) = a.outcome else {
            break a;
        };
        let delay = backoff(attempts, ctx.base, after);
        if attempts >= ctx.max_attempts || started.elapsed() + delay > ctx.max_age {
            break a;
        }
        tokio::time::sleep(delay).await;
    };
    if matches!(last.outcome, Outcome::Delivered | Outcome::Replace(_)) {
        ctx.metrics
            .ack_latency(provider.name(), job.received.elapsed().as_secs_f64());
    }
    match &last.outcome {
        Outcome::DropToken => {
            let who = match provider.name() {
                "apns" => "APNs",
                "fcm" => "FCM",
                _ => "GCM",
            };
            tracing::info!(
                provider = provider.name(),
                user = sub.user_id,
                context = sub.context_id,
                token = %mask(&sub.token),
                status = ?last.status,
                reason = %last.reason,
                "dead token removed: {who} answered {}",
                last.reason
            );
            let why = format!("unregistered by {who} ({})", last.reason);
            if let Err(e) = ctx.subs.remove(SubKey::from(sub), &why).await {
                tracing::error!(error = %e, "could not remove a dead subscription");
            }
        }
        Outcome::Replace(new) => {
            rec.new_token = Some(new.clone());
            if let Err(e) = ctx
                .subs
                .replace_token(
                    sub.transport.to_string(),
                    sub.token.clone(),
                    new.clone(),
                    None,
                )
                .await
            {
                tracing::error!(error = %e, "could not replace a token");
            }
        }
        Outcome::Credential => {
            tracing::warn!(provider = provider.name(), reason = %last.reason, "provider refused our credentials");
        }
        _ => {}
    }
    let name = outcome_name(&last.outcome);
    rec.status = last.status;
    rec.reason = last.reason;
    rec.url = last.url;
    rec.request = last.request;
    rec.attempts = attempts;
    finish(rec, provider.name(), name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hostile_fcm_or_oauth_endpoint_with_an_endless_answer_is_cut_at_the_bound() {
        // The reqwest-based senders (FCM, its OAuth token endpoint, GCM) read answers through
        // bounded_json: 1 GiB announced, at most MAX_RESPONSE read.
        let (base, _) = h2::tests::h2_server(h2::tests::endless, usize::MAX).await;
        let client = crate::tls::http_client(None, None, Duration::from_secs(10)).unwrap();
        let resp = client.post(format!("{base}/token")).send().await.unwrap();
        let err = bounded_json(resp).await.unwrap_err();
        assert!(err.contains("longer than 65536 bytes"), "{err}");
        // And a send through json_attempt is classified by its status, the body taken as null.
        let resp = client.post(format!("{base}/send")).send().await;
        let a = json_attempt(resp, base.clone(), SentRequest::None, |status, v, _| {
            assert!(v.is_null());
            (Outcome::DropMessage, format!("status {status}"))
        })
        .await;
        assert_eq!(a.reason, "status 200");
    }

    #[test]
    fn backoff_honours_retry_after_and_grows() {
        let base = Duration::from_millis(100);
        assert_eq!(
            backoff(3, base, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        for attempt in 1..5u32 {
            let d = backoff(attempt, base, None);
            let lo = base * (1 << (attempt - 1));
            assert!(d >= lo && d <= lo.mul_f64(1.5), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn tokens_are_masked_for_logs() {
        assert_eq!(mask("0123456789abcdef"), "01234567…");
        assert_eq!(mask("short"), "…");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(soon).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
