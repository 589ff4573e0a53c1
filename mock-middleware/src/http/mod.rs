//! HTTP listeners: the public one (client API and `/preliminary`) and the admin one.
//!
//! Both are axum routers over one shared [`AppState`]. The follow-up issue's endpoints
//! (`/config/providers`, ...) slot in as further modules here.

pub mod admin;
pub mod admin_auth;
pub mod config;
pub mod envelope;
pub mod listen;
pub mod login;
pub mod mobilenotifier;
pub mod notify;
pub mod session;
pub mod subscribe;
pub mod throttle;

use std::sync::Arc;

use axum::routing::{get, put};
use axum::Router;
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::push::PushJob;
use crate::recording::Recorder;
use crate::store::Subscriptions;

/// Everything the handlers share.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub subs: Subscriptions,
    pub sessions: session::Sessions,
    pub recorder: Arc<Recorder>,
    pub faults: Faults,
    pub metrics: Arc<Metrics>,
    pub queue: mpsc::Sender<PushJob>,
    pub listeners: Arc<crate::listeners::Listeners>,
    pub branding: Option<config::Branding>,
    /// Failed-login throttling per address and per login name.
    pub throttle: throttle::Throttle,
    /// Bearer token of `/mock/*` on the admin listener.
    pub admin_token: crate::config::Secret,
    /// This node's id in the cluster (the owner named in claims and leases).
    pub node: String,
    /// The notification claims this node's jobs hold.
    pub inflight: crate::push::Inflight,
}

pub type State = Arc<AppState>;

/// The public router: `/preliminary/http-notify/v1/notify` plus the client API under `/ajax`
/// and `/appsuite/api`.
pub fn public_router(state: State) -> Router {
    use axum::http::Method;
    let wrong = |allow: &'static str, module: &'static str| {
        move |m: Method| async move { envelope::wrong_method(&m, allow, module) }
    };
    let api = Router::new()
        .route(
            "/login",
            get(login::login)
                .post(login::login)
                .fallback(wrong("GET, POST", "login")),
        )
        .route(
            "/capabilities",
            get(login::capabilities).fallback(wrong("GET", "capabilities")),
        )
        .route(
            "/mobilenotifier",
            get(mobilenotifier::mobilenotifier)
                .post(mobilenotifier::mobilenotifier)
                .put(mobilenotifier::mobilenotifier)
                .fallback(wrong("GET, POST, PUT", "mobilenotifier")),
        )
        .route("/pns", put(subscribe::pns).fallback(wrong("PUT", "pns")));
    Router::new()
        .route(
            "/preliminary/http-notify/v1/notify",
            put(notify::notify).fallback(notify::wrong_method),
        )
        .route("/config/providers", get(config::providers))
        .route("/config/providers/{id}", get(config::provider))
        .nest("/ajax", api.clone())
        .nest("/appsuite/api", api)
        .fallback(|uri: axum::http::Uri| async move { envelope::grizzly_not_found(uri.path()) })
        .with_state(state)
}

/// The admin router: recordings, faults and registrations behind the bearer token
/// ([`admin_auth`]); `/metrics` open.
pub fn admin_router(state: State) -> Router {
    let guarded = Router::new()
        .route("/mock/notifications", get(admin::notifications))
        .route("/mock/pushes", get(admin::pushes))
        .route("/mock/faults", axum::routing::post(admin::faults))
        .route("/mock/recordings", axum::routing::delete(admin::clear))
        .route("/mock/subscriptions", get(admin::subscriptions))
        .route("/mock/latency", get(admin::latency))
        .route("/mock/pushusers", get(admin::pushusers))
        .route("/mock/cluster", get(admin::cluster))
        .route(
            "/mock/registrations",
            get(admin::registrations).delete(admin::unregister),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin_auth::require,
        ));
    Router::new()
        .merge(guarded)
        .route("/metrics", get(admin::metrics))
        .with_state(state)
}
