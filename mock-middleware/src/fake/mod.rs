//! Fake APNs and FCM/GCM for tests and demos: real on the wire (HTTP/2 over TLS, ALPN `h2`).
//!
//! They check credentials and request shape like the real services (ES256 provider JWT or client
//! certificate for APNs; OAuth assertion, bearer and message shape for FCM; `key=` for legacy
//! GCM), record what arrived, and answer scripted failures. A plain-HTTP admin listener exposes
//! the recordings (`GET /fake/requests`) and takes scripts (`POST /fake/script`).

pub mod apns;
pub mod fcm;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the fakes accept.
#[derive(Clone, Default)]
pub struct FakeConfig {
    /// APNs signing keys: (key id, team id, public key).
    pub apns_keys: Vec<(String, String, Arc<DecodingKey>)>,
    /// Service account: (client_email, public key).
    pub fcm_account: Option<(String, Arc<DecodingKey>)>,
    /// Expected `aud` of OAuth assertions; `None` accepts any URL ending in `/token`.
    pub oauth_audience: Option<String>,
    /// `expires_in` of issued access tokens, seconds.
    pub token_lifetime_s: u64,
    /// Legacy GCM server key.
    pub gcm_key: Option<String>,
    /// Requests kept for `GET /fake/requests` (oldest dropped); 0 means the default 10,000.
    pub records_max: usize,
}

/// One scripted answer (`POST /fake/script`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// `apns`, `fcm` or `gcm`.
    pub provider: String,
    /// Only for this device token; any token when absent.
    #[serde(default)]
    pub token: Option<String>,
    /// HTTP status to answer (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// APNs reason, FCM errorCode, or GCM result error.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// How many requests it applies to (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// Legacy GCM canonical id to return.
    #[serde(default)]
    pub canonical: Option<String>,
    /// FCM INVALID_ARGUMENT: name `message.token` as the violated field.
    #[serde(default)]
    pub token_field: Option<bool>,
}

/// Shared state of the fakes.
pub struct FakeState {
    pub cfg: FakeConfig,
    records: Mutex<std::collections::VecDeque<Value>>,
    scripts: Mutex<Vec<(Script, u32)>>,
    issued: Mutex<HashMap<String, Instant>>,
    pub tokens_issued: AtomicU64,
    /// Requests recorded since start (the recording itself is capped).
    recorded: AtomicU64,
    conn_seq: AtomicU64,
    /// TCP connections accepted (counted before the TLS handshake, so a connection a client
    /// opens and abandons counts too).
    pub tcp_accepted: AtomicU64,
}

impl FakeState {
    pub fn new(cfg: FakeConfig) -> Arc<FakeState> {
        Arc::new(FakeState {
            cfg,
            records: Mutex::new(std::collections::VecDeque::new()),
            scripts: Mutex::new(Vec::new()),
            issued: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            conn_seq: AtomicU64::new(0),
            tcp_accepted: AtomicU64::new(0),
        })
    }

    pub fn record(&self, v: Value) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let max = if self.cfg.records_max == 0 {
            10_000
        } else {
            self.cfg.records_max
        };
        if r.len() >= max {
            r.pop_front();
        }
        r.push_back(v);
    }

    pub fn requests(&self, provider: Option<&str>) -> Vec<Value> {
        let r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        r.iter()
            .filter(|v| provider.is_none_or(|p| v["provider"] == p))
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn add_script(&self, s: Script) {
        let n = s.count.unwrap_or(1);
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((s, n));
    }

    /// The first pending script for this provider and token, consuming one use.
    pub fn take_script(&self, provider: &str, token: &str) -> Option<Script> {
        let mut g = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        let i = g.iter().position(|(s, n)| {
            *n > 0 && s.provider == provider && s.token.as_deref().is_none_or(|t| t == token)
        })?;
        g[i].1 -= 1;
        let s = g[i].0.clone();
        if g[i].1 == 0 {
            g.remove(i);
        }
        Some(s)
    }

    pub fn issue_token(&self, lifetime_s: u64) -> String {
        let t = format!("ya29.fake-{}", hex::encode(rand::random::<[u8; 16]>()));
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                t.clone(),
                Instant::now() + std::time::Duration::from_secs(lifetime_s),
            );
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        t
    }

    pub fn token_valid(&self, t: &str) -> bool {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(t)
            .is_some_and(|exp| Instant::now() < *exp)
    }
}

/// Per-TLS-connection facts handed to the handlers.
#[derive(Clone)]
pub struct ConnInfo {
    pub id: u64,
    /// Common name of a verified client certificate, if one was presented.
    pub client_cert: Option<String>,
    /// APNs provider-token tracking: (current token, when first seen on this connection,
    /// its verified claims).
    pub jwt: Arc<Mutex<Option<(String, Instant, Value)>>>,
}

/// Serves `router` over TLS (HTTP/2 only) until `stop` turns true.
pub fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    state: Arc<FakeState>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r { Ok(v) => v, Err(_) => continue },
                _ = stop.wait_for(|v| *v) => return,
            };
            state.tcp_accepted.fetch_add(1, Ordering::Relaxed);
            // Apple's and Google's front ends answer without Nagle delays; so do the fakes.
            let _ = tcp.set_nodelay(true);
            let (acceptor, router, state) = (acceptor.clone(), router.clone(), state.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| cert_cn(c.as_ref()));
                let info = ConnInfo {
                    id: state.conn_seq.fetch_add(1, Ordering::Relaxed) + 1,
                    client_cert,
                    jwt: Arc::default(),
                };
                let svc = tower::ServiceExt::map_request(
                    router,
                    move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        req
                    },
                );
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(1000)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    })
}

fn cert_cn(der: &[u8]) -> String {
    p12_keystore::Certificate::from_der(der)
        .map(|c| c.subject().to_string())
        .unwrap_or_else(|_| "<unparsable>".into())
}

#[derive(Deserialize)]
struct ProviderQuery {
    provider: Option<String>,
}

async fn requests(State(s): State<Arc<FakeState>>, Query(q): Query<ProviderQuery>) -> Json<Value> {
    Json(Value::Array(s.requests(q.provider.as_deref())))
}

async fn clear(State(s): State<Arc<FakeState>>) -> Json<Value> {
    s.clear();
    Json(json!({"success": true}))
}

async fn script(State(s): State<Arc<FakeState>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Script>(&body) {
        Ok(sc) if ["apns", "fcm", "gcm"].contains(&sc.provider.as_str()) => {
            s.add_script(sc);
            Json(json!({"success": true})).into_response()
        }
        Ok(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "provider must be apns, fcm or gcm"})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn stats(State(s): State<Arc<FakeState>>) -> Json<Value> {
    Json(
        json!({"oauth_tokens_issued": s.tokens_issued.load(Ordering::Relaxed), "requests": s.requests(None).len(), "requests_total": s.recorded.load(Ordering::Relaxed),
               "connections": s.tcp_accepted.load(Ordering::Relaxed)}),
    )
}

/// The fakes' plain-HTTP admin router.
pub fn admin_router(state: Arc<FakeState>) -> Router {
    Router::new()
        .route("/fake/requests", get(requests).delete(clear))
        .route("/fake/script", post(script))
        .route("/fake/stats", get(stats))
        .with_state(state)
}

/// Running fakes.
pub struct RunningFakes {
    pub apns_addr: SocketAddr,
    pub fcm_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<FakeState>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningFakes {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts fake APNs, fake FCM (OAuth + v1 + legacy) and the admin listener.
pub async fn start(
    cfg: FakeConfig,
    tls: Arc<rustls::ServerConfig>,
    apns: SocketAddr,
    fcm: SocketAddr,
    admin: SocketAddr,
) -> std::io::Result<RunningFakes> {
    let (al, fl, ml) = (
        TcpListener::bind(apns).await?,
        TcpListener::bind(fcm).await?,
        TcpListener::bind(admin).await?,
    );
    start_on(cfg, tls, al, fl, ml)
}

/// Like [`start`] on already-bound listeners (tests learn the ports before writing config).
pub fn start_on(
    cfg: FakeConfig,
    tls: Arc<rustls::ServerConfig>,
    al: TcpListener,
    fl: TcpListener,
    ml: TcpListener,
) -> std::io::Result<RunningFakes> {
    let state = FakeState::new(cfg);
    let (stop, rx) = watch::channel(false);
    let (apns_addr, fcm_addr, admin_addr) = (al.local_addr()?, fl.local_addr()?, ml.local_addr()?);
    let mut admin_rx = rx.clone();
    let admin_app = admin_router(state.clone());
    let tasks = vec![
        serve_tls(
            al,
            tls.clone(),
            apns::router(state.clone()),
            state.clone(),
            rx.clone(),
        ),
        serve_tls(fl, tls, fcm::router(state.clone()), state.clone(), rx),
        tokio::spawn(async move {
            let _ = axum::serve(ml, admin_app)
                .with_graceful_shutdown(async move {
                    let _ = admin_rx.wait_for(|v| *v).await;
                })
                .await;
        }),
    ];
    Ok(RunningFakes {
        apns_addr,
        fcm_addr,
        admin_addr,
        state,
        stop,
        tasks,
    })
}
