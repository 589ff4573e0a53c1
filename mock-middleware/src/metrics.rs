//! Prometheus metrics and a latency reservoir for percentile reporting.
//!
//! Counters follow the integration-testing needs of issue 4: notifications by result, pushes by
//! transport and outcome, queue depth and latency histograms. The reservoir keeps recent
//! notification→acknowledged latencies so `/mock/latency` can report exact p50/p99 for the
//! benchmark without histogram-bucket interpolation.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabel {
    pub transport: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

const RESERVOIR: usize = 200_000;

/// All metrics of one service instance.
pub struct Metrics {
    registry: Registry,
    pub notifications: Family<ResultLabel, Counter>,
    pub pushes: Family<PushLabel, Counter>,
    pub queue_depth: Gauge,
    pub subscriptions: Gauge,
    pub notify_seconds: Histogram,
    pub push_latency: Family<TransportLabel, Histogram>,
    samples: Mutex<(Vec<f64>, usize)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mock");
        let notifications = Family::<ResultLabel, Counter>::default();
        let pushes = Family::<PushLabel, Counter>::default();
        let queue_depth = Gauge::default();
        let subscriptions = Gauge::default();
        let notify_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let push_latency = Family::<TransportLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "notifications",
            "http-notify requests by result",
            notifications.clone(),
        );
        registry.register("pushes", "pushes by transport and outcome", pushes.clone());
        registry.register(
            "queue_depth",
            "notifications waiting in the push queue",
            queue_depth.clone(),
        );
        registry.register(
            "subscriptions",
            "subscriptions held in memory",
            subscriptions.clone(),
        );
        registry.register(
            "notify_duration_seconds",
            "time to answer an http-notify request",
            notify_seconds.clone(),
        );
        registry.register(
            "push_latency_seconds",
            "notification accepted to provider acknowledged, per transport",
            push_latency.clone(),
        );
        Metrics {
            registry,
            notifications,
            pushes,
            queue_depth,
            subscriptions,
            notify_seconds,
            push_latency,
            samples: Mutex::new((Vec::new(), 0)),
        }
    }

    pub fn notification(&self, result: &'static str) {
        self.notifications
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn push(&self, transport: &'static str, outcome: &'static str) {
        self.pushes
            .get_or_create(&PushLabel { transport, outcome })
            .inc();
    }

    /// Records one notification→acknowledged latency.
    pub fn ack_latency(&self, transport: &'static str, seconds: f64) {
        self.push_latency
            .get_or_create(&TransportLabel { transport })
            .observe(seconds);
        let mut g = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (v, next) = &mut *g;
        if v.len() < RESERVOIR {
            v.push(seconds);
        } else {
            v[*next] = seconds;
            *next = (*next + 1) % RESERVOIR;
        }
    }

    /// (count, p50, p99) in milliseconds over the reservoir; resets it when `reset`.
    pub fn latency_summary(&self, reset: bool) -> (usize, f64, f64) {
        let mut g = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = g.0.clone();
        if reset {
            *g = (Vec::new(), 0);
        }
        drop(g);
        if v.is_empty() {
            return (0, 0.0, 0.0);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize] * 1000.0;
        (v.len(), pct(0.50), pct(0.99))
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_families_and_percentiles_work() {
        let m = Metrics::new();
        m.notification("accepted");
        m.push("apns", "delivered");
        for i in 1..=100 {
            m.ack_latency("apns", i as f64 / 1000.0);
        }
        let text = m.encode();
        assert!(
            text.contains("mock_notifications_total{result=\"accepted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mock_pushes_total{transport=\"apns\",outcome=\"delivered\"} 1"),
            "{text}"
        );
        assert!(text.contains("mock_push_latency_seconds_bucket"), "{text}");
        let (n, p50, p99) = m.latency_summary(true);
        assert_eq!(n, 100);
        assert!((p50 - 50.0).abs() <= 1.0, "{p50}");
        assert!((p99 - 99.0).abs() <= 1.0, "{p99}");
        assert_eq!(m.latency_summary(false).0, 0);
    }
}
