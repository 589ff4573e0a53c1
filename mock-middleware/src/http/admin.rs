//! Admin listener handlers: the integration-testing surface.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::State as S;
use crate::faults::FaultSpec;

/// `GET /mock/notifications`: every recorded notify request, in arrival order (the cluster's,
/// each with its `node`, when the store is shared).
pub async fn notifications(State(s): State<S>) -> Response {
    match s.recorder.shared() {
        None => Json(Value::Array(s.recorder.notifications())).into_response(),
        Some(sh) => match sh.read(false).await {
            Ok(v) => Json(Value::Array(v)).into_response(),
            Err(e) => failed(e),
        },
    }
}

/// `GET /mock/pushes`: every push attempt result, in completion order (the cluster's when the
/// store is shared).
pub async fn pushes(State(s): State<S>) -> Response {
    match s.recorder.shared() {
        None => Json(Value::Array(s.recorder.pushes())).into_response(),
        Some(sh) => match sh.read(true).await {
            Ok(v) => Json(Value::Array(v)).into_response(),
            Err(e) => failed(e),
        },
    }
}

fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

/// `GET /mock/subscriptions`: the subscriptions (in memory, or the cluster's in the shared
/// store).
pub async fn subscriptions(State(s): State<S>) -> Response {
    match s.subs.all().await {
        Ok(v) => Json(json!(v
            .iter()
            .map(|x| x.as_ref().clone())
            .collect::<Vec<_>>()))
        .into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /mock/cluster`: this node, every node's last heartbeat and every listener lease.
pub async fn cluster(State(s): State<S>) -> Response {
    let r =
        crate::store::index::blocking(s.subs.store(), |st| Ok((st.nodes()?, st.leases()?))).await;
    match r {
        Ok((nodes, leases)) => Json(json!({
            "node": s.node,
            "store": s.subs.store().describe(),
            "now_ms": crate::store::now_ms(),
            "nodes": nodes,
            "leases": leases,
            "recordings_dropped": s.recorder.shared().map_or(0, |r| r.dropped.load(std::sync::atomic::Ordering::Relaxed)),
        }))
        .into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /mock/faults` with `{"status":503,"count":5,"delay_ms":0}`.
pub async fn faults(State(s): State<S>, body: axum::body::Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("The fault body is not {{\"status\", \"count\", \"delay_ms\"}}: {e}")})),
            )
                .into_response()
        }
    };
    match s.faults.set(spec) {
        Ok(()) => Json(json!({"success": true})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

/// `DELETE /mock/recordings`: forget recordings and pending faults.
pub async fn clear(State(s): State<S>) -> Response {
    s.recorder.clear();
    s.faults.clear();
    if let Some(sh) = s.recorder.shared() {
        if let Err(e) = sh.clear().await {
            return failed(e);
        }
    }
    Json(json!({"success": true})).into_response()
}

#[derive(serde::Deserialize)]
pub struct LatencyQuery {
    #[serde(default)]
    reset: bool,
}

/// `GET /mock/latency[?reset=true]`: p50/p99 of notification→acknowledged latency.
pub async fn latency(State(s): State<S>, Query(q): Query<LatencyQuery>) -> Json<Value> {
    let (count, p50, p99) = s.metrics.latency_summary(q.reset);
    Json(json!({"count": count, "p50_ms": p50, "p99_ms": p99}))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): State<S>) -> Response {
    if let Ok(n) = s.subs.count().await {
        s.metrics.subscriptions.set(n as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// `GET /mock/pushusers`: running permanent listeners of the cluster
/// (`[{"context":1,"user":3,"permanent":true}]`).
pub async fn pushusers(State(s): State<S>) -> Response {
    match s.listeners.running().await {
        Ok(r) => Json(json!(r
            .iter()
            .map(|(c, u)| json!({"context": c, "user": u, "permanent": true}))
            .collect::<Vec<_>>()))
        .into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /mock/registrations`: OX's `registeredPush` rows.
pub async fn registrations(State(s): State<S>) -> Response {
    match s.listeners.registrations().await {
        Ok(r) => Json(json!(r
            .iter()
            .map(|(c, u, cl)| json!({"context": c, "user": u, "client": cl}))
            .collect::<Vec<_>>()))
        .into_response(),
        Err(e) => failed(e),
    }
}

/// `DELETE /mock/registrations?context=&user=&client=` (`pushusers -r`): `{"deleted":bool}`.
pub async fn unregister(
    State(s): State<S>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i32>().ok());
    let (Some(c), Some(u), Some(cl)) = (num("context"), num("user"), q.get("client")) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "context, user and client are required"})),
        )
            .into_response();
    };
    match s.listeners.unregister(c, u, cl).await {
        Ok(d) => Json(json!({"deleted": d})).into_response(),
        Err(e) => failed(e),
    }
}
