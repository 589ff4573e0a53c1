//! The relay's counters, as `ox-push-stats` reads them (JSON over the relay
//! socket) and as Prometheus scrapes them (`--metrics-listen`). Endpoints are
//! named by their masked URL only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::log;
use crate::shared::Core;

/// Everything, as one JSON document.
pub fn snapshot(core: &Core) -> Value {
    let s = core.lock();
    let endpoints: Vec<Value> = s
        .endpoints
        .iter()
        .map(|e| {
            let c = &e.counters;
            json!({
                "endpoint": e.peer.label,
                "queued": c.queued,
                "sent": c.sent,
                "retried": c.retried,
                "dropped_age": c.dropped_age,
                "dropped_size": c.dropped_size,
                "refused": c.refused,
                "in_flight": e.in_flight,
                "depth": e.depth,
                "connections": e.peer.connections.load(Ordering::Relaxed),
            })
        })
        .collect();
    let c = &s.counters;
    json!({
        "relay": {
            "pid": std::process::id(),
            "uptime_secs": core.started.elapsed().as_secs(),
            "spool": s.spool_path(),
            "spool_depth": s.pending(),
            "spool_bytes": s.spool_bytes(),
            "journal_segments": s.segments(),
            "clients": core.clients.load(Ordering::Relaxed),
            "replayed": c.replayed,
            "duplicates": c.duplicates,
            "records_refused": c.records_refused,
            "protocol_errors": c.protocol_errors,
            "dropped_in_mail_processes": c.dropped_in_mail_processes,
            "journal_errors": c.journal_errors,
        },
        "endpoints": endpoints,
    })
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn prometheus(snap: &Value) -> String {
    let mut out = String::new();
    let relay = &snap["relay"];
    let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: &Value| {
        out.push_str(&format!(
            "# HELP ox_push_relay_{name} {help}\n# TYPE ox_push_relay_{name} {kind}\n\
             ox_push_relay_{name} {}\n",
            v.as_u64().unwrap_or(0)
        ));
    };
    gauge(
        &mut out,
        "spool_depth",
        "Notifications pending.",
        "gauge",
        &relay["spool_depth"],
    );
    gauge(
        &mut out,
        "spool_bytes",
        "Bytes of pending notification bodies.",
        "gauge",
        &relay["spool_bytes"],
    );
    gauge(
        &mut out,
        "clients",
        "Mail process connections.",
        "gauge",
        &relay["clients"],
    );
    gauge(
        &mut out,
        "replayed_total",
        "Notifications read back from the spool at start.",
        "counter",
        &relay["replayed"],
    );
    gauge(
        &mut out,
        "duplicates_total",
        "Notifications resent by mail processes and dropped as repeats.",
        "counter",
        &relay["duplicates"],
    );
    gauge(
        &mut out,
        "records_refused_total",
        "Records refused as malformed.",
        "counter",
        &relay["records_refused"],
    );
    gauge(
        &mut out,
        "protocol_errors_total",
        "Client connections closed for breaking the protocol.",
        "counter",
        &relay["protocol_errors"],
    );
    gauge(
        &mut out,
        "dropped_in_mail_processes_total",
        "Notifications mail processes dropped before the relay took them.",
        "counter",
        &relay["dropped_in_mail_processes"],
    );
    gauge(
        &mut out,
        "journal_errors_total",
        "Failed journal writes.",
        "counter",
        &relay["journal_errors"],
    );
    let per = [
        (
            "notifications_queued_total",
            "queued",
            "counter",
            "Notifications taken from mail processes.",
        ),
        (
            "notifications_sent_total",
            "sent",
            "counter",
            "Notifications the middleware accepted (2xx).",
        ),
        (
            "attempts_retried_total",
            "retried",
            "counter",
            "Failed attempts that are retried.",
        ),
        (
            "notifications_dropped_age_total",
            "dropped_age",
            "counter",
            "Notifications dropped as older than max_age.",
        ),
        (
            "notifications_dropped_size_total",
            "dropped_size",
            "counter",
            "Notifications dropped because the spool was full.",
        ),
        (
            "notifications_refused_total",
            "refused",
            "counter",
            "Notifications the middleware refused (not retried).",
        ),
        ("in_flight", "in_flight", "gauge", "Attempts under way."),
        (
            "endpoint_depth",
            "depth",
            "gauge",
            "Notifications pending for the endpoint.",
        ),
        (
            "connections",
            "connections",
            "gauge",
            "Connections open to the endpoint.",
        ),
    ];
    let empty = Vec::new();
    let eps = snap["endpoints"].as_array().unwrap_or(&empty);
    for (name, key, kind, help) in per {
        out.push_str(&format!(
            "# HELP ox_push_relay_{name} {help}\n# TYPE ox_push_relay_{name} {kind}\n"
        ));
        for e in eps {
            out.push_str(&format!(
                "ox_push_relay_{name}{{endpoint=\"{}\"}} {}\n",
                label(e["endpoint"].as_str().unwrap_or("")),
                e[key].as_u64().unwrap_or(0)
            ));
        }
    }
    out
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, core: Arc<Core>) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            log::error(format!("metrics_listen {addr}: {e}; no metrics endpoint"));
            return;
        }
    };
    if !addr.ip().is_loopback() {
        log::warning(format!(
            "metrics_listen {addr} is not a loopback address: anyone who can reach it sees \
             the endpoints (masked) and the counters"
        ));
    }
    let open = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            continue; // over the connection limit: closed
        };
        let core = core.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let core = core.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" && req.method() == "GET" {
                        Response::builder()
                            .header("Content-Type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(prometheus(&snapshot(&core)))))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"only GET /metrics\n")))
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("static response"))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_endpoint_and_escapes_labels() {
        let snap = json!({
            "relay": {"spool_depth": 3, "clients": 2},
            "endpoints": [
                {"endpoint": "http://u:***@h/\"x\"", "sent": 5, "queued": 6},
            ],
        });
        let text = prometheus(&snap);
        assert!(text.contains("ox_push_relay_spool_depth 3\n"), "{text}");
        assert!(
            text.contains(
                "ox_push_relay_notifications_sent_total{endpoint=\"http://u:***@h/\\\"x\\\"\"} 5\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE ox_push_relay_notifications_sent_total counter"));
    }
}
