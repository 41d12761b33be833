//! The HTTP server: one router per concern, state in an `Arc`.

mod api;
mod chart;
pub mod legacy;
mod ops;
mod pages;
mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::connections::{Lifecycle, accept_until_stopped};
use crate::gate::{Admission, ClientAddr, Gate, Guarded};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::state::NodeState;

pub use api::openapi;

pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .merge(legacy::router())
        .merge(ops::router(state.config.node.metrics_address.is_none()))
        .merge(pages::router())
        .nest("/api/v1", api::router())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .with_state(state)
}

/// Serves `/metrics` on its own port until the lifecycle's stop. Only scrapers reach it, so it
/// has no connection gate of its own.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<NodeState>,
    lifecycle: Lifecycle,
) {
    let app = ops::metrics_router().with_state(state);
    let stop = lifecycle.stop.clone();
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(%error, "the metrics server stopped");
    }
}

/// Serves HTTP/1.1 until the lifecycle's stop, then takes the queued connections (see
/// [`crate::connections`]); each open connection finishes the request in flight, and keep-alive
/// connections close after it. Returns how many connections were taken after the stop.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<NodeState>,
    lifecycle: Lifecycle,
) -> usize {
    let app = router(state.clone());
    let limits = state.limits;
    let gate = Gate::new(
        limits.max_http_connections,
        limits.max_connections_per_client,
    );
    let stop = lifecycle.stop.clone();
    let clients = crate::proxy_header::ClientAddresses::new(
        "http",
        limits.proxy_protocol,
        limits.http_idle_timeout,
        state.metrics.refused_proxy_headers.clone(),
    );
    let take = {
        let lifecycle = lifecycle.clone();
        Arc::new(move |stream: tokio::net::TcpStream, address: SocketAddr| {
            match gate.admit(address.ip()) {
                Admission::Admitted(pass) => {
                    let io = Guarded::new(
                        stream,
                        pass,
                        limits.http_idle_timeout,
                        limits.http_connection_lifetime,
                    );
                    lifecycle.spawn(connection(io, address, app.clone(), lifecycle.clone()));
                }
                Admission::Refused(_) => {
                    state.metrics.refused_http_connections.inc();
                    drop(stream);
                }
            }
        })
    };
    accept_until_stopped(listener, "http", stop, |stream, peer| {
        let take = take.clone();
        clients.hand_over(&lifecycle, stream, peer, move |stream, client| {
            take(stream, client)
        });
    })
    .await
}

/// One HTTP connection, as axum's own server runs it, with the lifecycle's signals. At the stop,
/// a connection that has begun a request shuts down gracefully (the request in flight is
/// answered, then it closes; an idle keep-alive connection closes at once); one that has not yet
/// sent a request is left to send it, and its answer carries `Connection: close` (hyper's
/// graceful shutdown would close it unanswered, as idle). At the cut it is closed.
async fn connection(io: Guarded, client: SocketAddr, app: Router, lifecycle: Lifecycle) {
    use tower::ServiceExt as _;
    let began = Arc::new(AtomicBool::new(false));
    let app = {
        let began = began.clone();
        app.map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                began.store(true, Ordering::SeqCst);
                // The client's address, for the per-client limits of the admin endpoint.
                request
                    .extensions_mut()
                    .insert(ConnectInfo(ClientAddr(client)));
                request
            },
        )
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(
            hyper_util::rt::TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(app),
        );
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, %client, "HTTP connection ended with an error");
                }
                return;
            }
            _ = lifecycle.stop.cancelled(), if !stopping => {
                if began.load(Ordering::SeqCst) {
                    connection.as_mut().graceful_shutdown();
                }
                stopping = true;
            }
            _ = lifecycle.cut.cancelled() => {
                lifecycle.count_cut("http", "request", client);
                return;
            }
        }
    }
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
    let mut response = response;
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        // Stopping: the connection closes after this answer, so a keep-alive client opens its
        // next one where the Service now routes.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}
