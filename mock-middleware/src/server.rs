//! Wiring: builds the store, providers, pipeline and both listeners from [`Settings`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ApnsAuth, Settings};
use crate::faults::Faults;
use crate::http::{self, AppState};
use crate::listeners::Listeners;
use crate::metrics::Metrics;
use crate::push::client::ProviderClient;
use crate::push::h2::H2Client;
use crate::push::{self, apns, fcm, gcm, Providers};
use crate::recording::Recorder;
use crate::store::Subscriptions;
use crate::tls;

/// A startup failure; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("APNs: {0}.")]
    Apns(String),
    #[error("FCM: {0}.")]
    Fcm(String),
    #[error("Cannot listen on {0}: {1}.")]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}")]
    Push(#[from] crate::config::push::StartupRefusal),
    #[error("Credential storage: {0}.")]
    Credentials(#[from] crate::listeners::creds::CredError),
    #[error("{0}")]
    Branding(String),
    #[error("Admin token: {0}.")]
    AdminToken(String),
    #[error("Cluster key: {0}.")]
    ClusterKey(String),
}

/// A running instance; dropping it does not stop it, call [`Running::shutdown`].
pub struct Running {
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: http::State,
    pub node: Arc<crate::cluster::Node>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops both listeners and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Builds the providers that the settings enable.
pub fn providers(s: &Settings) -> Result<Providers, StartError> {
    let timeout = Duration::from_millis(s.push_timeout_ms);
    let conns = s.push_connections;
    let mut p = Providers::default();
    if s.apns.enabled {
        let topic = s.apns.topic.clone().unwrap_or_default();
        let (client, jwt) = match s.apns.auth {
            ApnsAuth::Jwt => {
                let path = s.apns.private_key.clone().unwrap_or_default();
                let pem = std::fs::read(&path)
                    .map_err(|e| StartError::Apns(format!("{}: {e}", path.display())))?;
                let signer = apns::JwtSigner::new(
                    &pem,
                    s.apns.key_id.as_deref().unwrap_or(""),
                    s.apns.team_id.as_deref().unwrap_or(""),
                )
                .map_err(|e| {
                    StartError::Apns(format!("{} is not a P-256 .p8 key: {e}", path.display()))
                })?;
                (
                    H2Client::new(
                        &s.apns_base(),
                        s.tls_ca_file.as_deref(),
                        None,
                        timeout,
                        conns,
                    )?,
                    Some(signer),
                )
            }
            ApnsAuth::Certificate => {
                let path = s.apns.keystore.clone().unwrap_or_default();
                let pem =
                    tls::pkcs12_to_pem(&path, s.apns.password.as_ref().map_or("", |p| p.expose()))?;
                (
                    H2Client::new(
                        &s.apns_base(),
                        s.tls_ca_file.as_deref(),
                        Some(&pem),
                        timeout,
                        conns,
                    )?,
                    None,
                )
            }
        };
        p.apns = Some(Arc::new(apns::Apns {
            client,
            base: s.apns_base(),
            topic: topic.into(),
            expiration_s: s.apns_expiration_s,
            jwt,
        }));
    }
    if s.gcm.enabled {
        let client = ProviderClient::new(conns, || {
            tls::http_client(s.tls_ca_file.as_deref(), None, timeout)
        })?;
        if let Some(path) = &s.gcm.service_account {
            let sa = fcm::ServiceAccount::load(path).map_err(StartError::Fcm)?;
            let f = fcm::Fcm::new(client, &s.fcm_url, s.fcm_oauth_url.as_deref(), sa)
                .map_err(StartError::Fcm)?;
            p.gcm = Some(Arc::new(f));
        } else if let Some(key) = &s.gcm.key {
            p.gcm = Some(Arc::new(gcm::Gcm {
                client,
                url: s.gcm_url.clone(),
                key: key.clone(),
            }));
        }
    }
    Ok(p)
}

/// Opens the store, starts the pipeline and both listeners.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let providers = providers(&settings)?;
    start_with(settings, providers).await
}

/// Like [`start`] with explicit providers (tests plug doubles in here).
pub async fn start_with(settings: Settings, providers: Providers) -> Result<Running, StartError> {
    settings.push.check()?;
    let branding = match &settings.push.branding {
        Some(p) => Some(crate::http::config::Branding::load(p).map_err(StartError::Branding)?),
        None => None,
    };
    let (db, pool) = (settings.db.clone(), settings.cluster.pool_size);
    let store = off_executor(move || crate::store::open(&db, pool)).await?;
    let st = store.clone();
    let subs = off_executor(move || Subscriptions::open(st)).await?;
    let http_l = TcpListener::bind(settings.http_listen)
        .await
        .map_err(|e| StartError::Bind(settings.http_listen, e))?;
    let admin_l = TcpListener::bind(settings.admin_listen)
        .await
        .map_err(|e| StartError::Bind(settings.admin_listen, e))?;
    let http_addr = http_l
        .local_addr()
        .map_err(|e| StartError::Bind(settings.http_listen, e))?;
    let admin_addr = admin_l
        .local_addr()
        .map_err(|e| StartError::Bind(settings.admin_listen, e))?;
    let node_id = settings
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(|| crate::cluster::default_node_id(http_addr.port()));
    let cluster_key = if store.shared() {
        let path = settings.cluster.key_file.clone();
        let k = off_executor(move || Ok(crate::cluster::cluster_key(&path)))
            .await?
            .map_err(|e| {
                StartError::ClusterKey(format!("{}: {e}", settings.cluster.key_file.display()))
            })?;
        Some(k)
    } else {
        None
    };
    let s2 = settings.clone();
    let (st2, subs2, n2) = (store.clone(), subs.clone(), node_id.clone());
    let listeners = off_executor(move || {
        Ok(Listeners::open(
            &s2,
            st2,
            subs2,
            n2,
            cluster_key.as_ref().map(|k| k.expose()),
        ))
    })
    .await??;
    let weak = Arc::downgrade(&listeners);
    subs.set_removal_hook(Arc::new(move |cid, uid, why| {
        if let Some(l) = weak.upgrade() {
            tokio::spawn(async move { l.subscriptions_removed(cid, uid, why).await });
        }
    }));
    let recorder = Arc::new(Recorder::with_bytes(
        settings.recordings_max,
        settings.recordings_max_bytes,
    ));
    if store.shared() {
        recorder.share(crate::recording_shared::SharedRecordings::start(
            store.clone(),
            node_id.clone(),
            settings.recordings_max,
            settings.recordings_max_bytes,
        ));
    }
    let metrics = Arc::new(Metrics::new());
    let queue = push::start(
        &settings,
        providers,
        subs.clone(),
        recorder.clone(),
        metrics.clone(),
    );
    if settings.basic_login.is_none() || settings.basic_password.is_none() {
        tracing::warn!("com.openexchange.rest.services.basic-auth.login/.password are not set: every notify request will get 401");
    }
    let admin_token = {
        let path = settings.admin_token_file.clone();
        tokio::task::spawn_blocking(move || crate::http::admin_auth::load_or_create(&path))
            .await
            .map_err(|e| StartError::AdminToken(e.to_string()))?
            .map_err(|e| {
                StartError::AdminToken(format!("{}: {e}", settings.admin_token_file.display()))
            })?
    };
    for (what, addr) in [
        ("mock.http.listen", http_addr),
        ("mock.admin.listen", admin_addr),
    ] {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "{what} is not a loopback address and the listener has no TLS: passwords, session secrets and tokens cross the network in clear; put a TLS proxy in front or bind to 127.0.0.1");
        }
    }
    let sessions = crate::http::session::Sessions::with_store(
        settings.login.session_idle,
        settings.login.session_max,
        &store,
    );
    let throttle = crate::http::throttle::Throttle::new(settings.login.throttle.clone());
    let state = Arc::new(AppState {
        admin_token,
        settings: Arc::new(settings),
        subs,
        sessions,
        throttle,
        recorder,
        faults: Faults::default(),
        metrics,
        queue,
        listeners: listeners.clone(),
        branding,
        node: node_id.clone(),
        inflight: crate::push::Inflight::default(),
    });
    let node = Arc::new(crate::cluster::Node::new(
        node_id,
        http_addr.to_string(),
        admin_addr.to_string(),
        state.settings.cluster.clone(),
        store.clone(),
    ));
    let (stop, rx) = watch::channel(false);
    let cluster = tokio::spawn(crate::cluster::run(
        crate::cluster::Parts {
            node: node.clone(),
            listeners: listeners.clone(),
            subs: state.subs.clone(),
            queue: state.queue.clone(),
            metrics: state.metrics.clone(),
            inflight: state.inflight.clone(),
        },
        rx.clone(),
    ));
    let mut limits = state.settings.limits.clone();
    limits.fit(http::listen::raise_nofile());
    tracing::info!(
        public = limits.public.max_connections,
        admin = limits.admin.max_connections,
        "connection limits"
    );
    let tasks = vec![
        cluster,
        http::listen::serve(
            http_l,
            http::public_router(state.clone()),
            limits.public,
            rx.clone(),
        ),
        http::listen::serve(admin_l, http::admin_router(state.clone()), limits.admin, rx),
    ];
    let count = state.subs.count().await.unwrap_or(0);
    tracing::info!(%http_addr, %admin_addr, node = %node.id, store = %store.describe(), subscriptions = count, "mock-middleware listening");
    Ok(Running {
        http_addr,
        admin_addr,
        state,
        node,
        stop,
        tasks,
    })
}

/// Runs start-up work (opening files, migrating, reading keys) on the blocking pool.
async fn off_executor<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::store::StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::store::StoreError::Db(e.to_string()))?
}
