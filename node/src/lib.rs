//! The minerpool node: the legacy WebSocket protocol (SPEC §4.1) and the HTTP API (SPEC §4.2)
//! over the shared database. It keeps no state of its own, so any number of replicas can serve
//! one database.
//!
//! The modules, lowest first: each uses only the modules listed before it (the workspace's
//! module order test reads this list and fails on a use that goes up it or on any circle).
//!
//! 1. `metrics`: the Prometheus metrics of both servers.
//! 2. `gate`: connection limits in all and per client, accept back-off.
//! 3. `connections`: how both servers take in and let go of connections (stop, finish, cut).
//! 4. `proxy_header`: PROXY protocol headers naming the client behind a load balancer.
//! 5. `state`: what every handler shares: store, configuration, metrics, limits.
//! 6. `websocket`: the WebSocket server's parts, and the message format re-exported from core.
//! 7. `websocket::protocol`: the answer to one frame: signature, registry checks, write, reply.
//! 8. `websocket::transport`: accepting WebSocket connections, the one frame, close reasons.
//! 9. `http::text`: how the dashboard writes a moment.
//! 10. `http::chart`: the dashboard's SVG bar charts.
//! 11. `http::pages`: the dashboard's pages.
//! 12. `http::legacy`: the original iNode's HTTP endpoints.
//! 13. `http::ops`: liveness, readiness and metrics.
//! 14. `http::api::answers`: the API's answers and errors, with their schemas.
//! 15. `http::api::params`: the API's parameters, with their schemas.
//! 16. `http::api`: the versioned JSON API and its OpenAPI document.
//! 17. `http`: the HTTP server: its routers and connections.
//! 18. `standalone`: the servers and the jobs on their intervals in one process.
//! 19. `testing`: a node on a test server's database, for tests and benchmarks (feature
//!     `testing`).

pub mod connections;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod proxy_header;
pub mod standalone;
pub mod state;
pub mod websocket;

#[cfg(feature = "testing")]
pub mod testing;

pub use state::{Limits, NodeState};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::connections::{Lifecycle, ShutdownReport};
use crate::metrics::Metrics;

/// A running node: its bound addresses and a way to stop it.
pub struct RunningNode {
    pub http_address: SocketAddr,
    pub websocket_address: SocketAddr,
    /// Where `/metrics` is served when `node.metricsAddress` gives it a port of its own.
    pub metrics_address: Option<SocketAddr>,
    state: Arc<NodeState>,
    lifecycle: Lifecycle,
    /// The two accept loops; each returns how many queued connections it took after the stop.
    servers: Vec<JoinHandle<usize>>,
}

/// How long the group writer gets to write what it holds once every connection has ended.
const WRITER_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl RunningNode {
    /// The node's metrics (shared: they keep counting after this is taken).
    pub fn metrics(&self) -> Metrics {
        self.state.metrics.clone()
    }

    /// Fails readiness, keeps serving for `delay`, then shuts down. In Kubernetes the pod's
    /// removal from the Service's endpoints reaches every kube-proxy a moment after SIGTERM
    /// reaches the pod; connections sent in that moment are still served instead of refused.
    pub async fn drain(self, delay: std::time::Duration) -> ShutdownReport {
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if !delay.is_zero() {
            tracing::info!(
                delay_seconds = delay.as_secs_f64(),
                "draining: not ready, still serving"
            );
            tokio::time::sleep(delay).await;
        }
        self.shutdown().await
    }

    /// Stops accepting once the queued connections are taken, lets every open connection
    /// finish (for at most `node.shutdownTimeoutSeconds`, then closes the rest with a reason),
    /// and has the group writer write what it holds (see [`connections`]).
    pub async fn shutdown(self) -> ShutdownReport {
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.lifecycle.stop.cancel();
        let mut report = ShutdownReport::default();
        for server in self.servers {
            report.from_backlog += server.await.unwrap_or(0);
        }
        let (cut, all_ended) = self
            .lifecycle
            .finish(self.state.limits.shutdown_timeout)
            .await;
        report.cut = cut;
        report.all_ended = all_ended;
        report.writer_flushed = self.state.intake.close(WRITER_FLUSH_TIMEOUT).await;
        if !report.writer_flushed {
            tracing::error!(
                "the group writer did not finish its group in time; its messages' clients were already answered or cut, and their retries are safe"
            );
        }
        tracing::info!(
            from_backlog = report.from_backlog,
            cut = report.cut,
            writer_flushed = report.writer_flushed,
            "servers stopped"
        );
        report
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("MINERPOOL_ADMIN_RSA_KEY: {0}")]
    AdminKey(String),
}

/// Binds both servers (port 0 picks a free port) and serves until [`RunningNode::shutdown`].
pub async fn start(
    state: NodeState,
    http_address: SocketAddr,
    websocket_address: SocketAddr,
) -> Result<RunningNode, NodeError> {
    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address)
            .await
            .map_err(|source| NodeError::Bind { address, source })
    };
    let http_listener = bind(http_address).await?;
    let websocket_listener = bind(websocket_address).await?;
    let metrics_listener = match state.config.node.metrics_address {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let http_address = http_listener.local_addr().expect("bound");
    let websocket_address = websocket_listener.local_addr().expect("bound");
    let metrics_address = metrics_listener
        .as_ref()
        .map(|l| l.local_addr().expect("bound"));
    let state = Arc::new(state);
    let limits = state.limits;
    for (limit, value) in [
        ("websocket_connections", limits.max_connections as u64),
        ("http_connections", limits.max_http_connections as u64),
        (
            "connections_per_client",
            limits.max_connections_per_client.into(),
        ),
    ] {
        state.metrics.set_limit(limit, value);
    }
    let lifecycle = Lifecycle::new(state.metrics.connections_cut.clone());
    let servers = vec![
        tokio::spawn(http::serve(http_listener, state.clone(), lifecycle.clone())),
        tokio::spawn(websocket::transport::serve(
            websocket_listener,
            state.clone(),
            lifecycle.clone(),
        )),
    ];
    if let Some(listener) = metrics_listener {
        tokio::spawn(http::serve_metrics(
            listener,
            state.clone(),
            lifecycle.clone(),
        ));
    }
    tracing::info!(%http_address, %websocket_address, ?metrics_address, "node serving");
    Ok(RunningNode {
        http_address,
        websocket_address,
        metrics_address,
        state,
        lifecycle,
        servers,
    })
}

/// Parses the legacy admin key: PEM (PKCS#8 or PKCS#1), or base64 of PEM as the original's
/// `SHA_PRIVATE_KEY` was.
pub fn parse_admin_key(text: &str) -> Result<rsa::RsaPrivateKey, NodeError> {
    use base64::Engine as _;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let text = text.trim();
    let pem = if text.starts_with("-----BEGIN") {
        text.to_owned()
    } else {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .map_err(|e| NodeError::AdminKey(format!("neither PEM nor base64 of PEM: {e}")))?;
        String::from_utf8(decoded)
            .map_err(|_| NodeError::AdminKey("base64 does not decode to PEM text".into()))?
    };
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|e| NodeError::AdminKey(format!("not an RSA private key in PEM: {e}")))
}
