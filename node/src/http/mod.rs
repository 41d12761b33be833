//! The HTTP server: one router per concern, state in an `Arc`.

mod api;
pub mod legacy;
mod ops;
mod pages;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::NodeState;
use crate::metrics::{RequestLabels, RouteLabels};

pub use api::openapi;

pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .merge(legacy::router())
        .merge(ops::router())
        .merge(pages::router())
        .nest("/api/v1", api::router())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .with_state(state)
}

/// Counts requests and their latency by matched route (never by raw path, which is unbounded).
async fn observe(State(state): State<Arc<NodeState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let response =
        match tokio::time::timeout(state.limits.http_request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "request timed out",
            )
                .into_response(),
        };
    let metrics = &state.metrics;
    metrics
        .http_latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
