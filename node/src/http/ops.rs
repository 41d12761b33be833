//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::NodeState;

/// The probes, and `/metrics` unless it has a port of its own ([`metrics_router`]).
pub fn router(with_metrics: bool) -> Router<Arc<NodeState>> {
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        probes.merge(metrics_router())
    } else {
        probes
    }
}

/// `/metrics` alone, for `node.metricsAddress`.
pub fn metrics_router() -> Router<Arc<NodeState>> {
    Router::new().route("/metrics", get(metrics))
}

/// Ready when the database answers. The answer is the same whatever went wrong: the reason
/// (server addresses, driver messages) goes to the log, not to whoever asks.
async fn readyz(State(state): State<Arc<NodeState>>) -> impl IntoResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the database did not answer the ping");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(_) => {
            tracing::warn!("not ready: the database did not answer the ping within 2 s");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

/// The process's metrics, with the payouts, foreign spends, money and job gauges read from the
/// database first (stale values stay when it does not answer in time).
async fn metrics(State(state): State<Arc<NodeState>>) -> impl IntoResponse {
    let store = &state.store;
    let reads = async {
        let jobs = futures::future::join_all(
            minerpool_jobs::Job::ALL
                .into_iter()
                .map(|job| async move { (job.name(), store.job_health(job.name()).await) }),
        );
        tokio::join!(
            store.payouts_health(),
            store.foreign_spends_health(),
            store.totals(),
            jobs
        )
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), reads).await {
        Ok((payouts, foreign, totals, jobs)) => {
            let mut failures = Vec::new();
            match payouts {
                Ok(health) => state.metrics.set_payouts(&health),
                Err(e) => failures.push(format!("payouts health: {e}")),
            }
            match foreign {
                Ok(health) => state.metrics.set_foreign_spends(&health),
                Err(e) => failures.push(format!("foreign spends of the wallet: {e}")),
            }
            match totals {
                Ok(totals) => state.metrics.set_totals(&totals),
                Err(e) => failures.push(format!("money totals: {e}")),
            }
            for (job, health) in jobs {
                match health {
                    Ok(health) => state.metrics.set_job_health(job, &health),
                    Err(e) => failures.push(format!("{job} runs: {e}")),
                }
            }
            if !failures.is_empty() {
                tracing::warn!(failures = %failures.join("; "), "reading the database for /metrics");
            }
        }
        Err(_) => tracing::warn!("reading the database for /metrics: no answer within 2s"),
    }
    state.metrics.set_intake(&state.intake);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
