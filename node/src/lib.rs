//! The minerpool node: the legacy WebSocket protocol (SPEC §4.1) and the HTTP API (SPEC §4.2)
//! over the shared database. It keeps no state of its own, so any number of replicas can serve
//! one database.

pub mod connections;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod proxy_header;
pub mod standalone;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minerpool_core::config::{Config, Secrets};
use minerpool_core::store::Store;
use minerpool_core::store::intake::front::Intake;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::connections::{Lifecycle, ShutdownReport};
use crate::metrics::Metrics;

/// Limits of both servers; the WebSocket ones are the spec's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open WebSocket connections per replica.
    pub max_connections: usize,
    /// Largest accepted frame or message.
    pub max_frame_bytes: usize,
    /// A WebSocket connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Open HTTP connections per replica.
    pub max_http_connections: usize,
    /// Open connections from one client address, on each server.
    pub max_connections_per_client: u32,
    /// An HTTP connection on which the client sends nothing for this long is closed.
    pub http_idle_timeout: Duration,
    /// An HTTP connection is closed once this old, however busy (a trickling client holds a
    /// place for no longer).
    pub http_connection_lifetime: Duration,
    /// A request not answered within this is answered 503.
    pub http_request_timeout: Duration,
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
    /// Once the servers stop accepting, open connections get this long to finish.
    pub shutdown_timeout: Duration,
    /// Each connection starts with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        let node = &config.node;
        Limits {
            max_connections: node.max_connections as usize,
            max_frame_bytes: 4 * 1024,
            idle_timeout: Duration::from_secs(10),
            max_http_connections: node.max_http_connections as usize,
            max_connections_per_client: node.max_connections_per_client,
            http_idle_timeout: Duration::from_secs(node.http_idle_timeout_seconds.into()),
            http_connection_lifetime: Duration::from_secs(HTTP_CONNECTION_LIFETIME_SECONDS),
            http_request_timeout: Duration::from_secs(node.http_request_timeout_seconds.into()),
            max_body_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(node.shutdown_timeout_seconds.into()),
            proxy_protocol: node.proxy_protocol,
        }
    }
}

const HTTP_CONNECTION_LIFETIME_SECONDS: u64 = 300;

/// What every handler shares.
pub struct NodeState {
    pub store: Store,
    /// Checks and records TASKs and PINGs.
    pub intake: Intake,
    pub config: Config,
    pub secrets: Secrets,
    pub metrics: Metrics,
    pub limits: Limits,
    /// The legacy admin key, parsed once; `None` disables `/modify-pool-list/`.
    pub admin_rsa_key: Option<rsa::RsaPrivateKey>,
    /// Set when the node is told to stop: `/readyz` fails so that load balancers stop sending
    /// new connections while the listeners still accept them.
    pub draining: std::sync::atomic::AtomicBool,
    /// Bounds `/modify-pool-list/` per client address and in all.
    pub admin_rate_limit: http::legacy::AdminRateLimit,
}

impl NodeState {
    /// The state of a node serving `config`, with its limits and rate limits from the config.
    pub fn new(
        store: Store,
        intake: Intake,
        config: Config,
        secrets: Secrets,
        admin_rsa_key: Option<rsa::RsaPrivateKey>,
    ) -> NodeState {
        NodeState {
            store,
            intake,
            limits: Limits::from_config(&config),
            admin_rate_limit: http::legacy::AdminRateLimit::from_config(&config),
            config,
            secrets,
            metrics: Metrics::default(),
            admin_rsa_key,
            draining: Default::default(),
        }
    }
}

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
        tokio::spawn(websocket::serve(
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
