//! Prometheus metrics of the operator (`/metrics`): reconciles, failures by reason, duration,
//! and whether this replica leads.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: String,
}

/// Cheap to clone: every metric is shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub invalid_specs: Counter,
    pub duration: Histogram,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let invalid_specs = Counter::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let leader = Gauge::default();
        let mut registry = Registry::with_prefix("minerpool_operator");
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "invalid_specs",
            "Reconciles that found an invalid spec and applied nothing",
            invalid_specs.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            failures,
            invalid_specs,
            duration,
            leader,
        }
    }
}

impl Metrics {
    pub fn observe(&self, took: Duration, failure: Option<&'static str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&FailureLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
