//! What every handler of both servers shares: the store, the configuration, the metrics and the
//! limits. Nothing here knows a route or a message: the servers are built on top of it.

use std::time::Duration;

use minerpool_core::config::{Config, Secrets};
use minerpool_core::store::Store;
use minerpool_core::store::intake::front::Intake;

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
    pub admin_rate_limit: AdminRateLimit,
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
            admin_rate_limit: AdminRateLimit::from_config(&config),
            config,
            secrets,
            metrics: Metrics::default(),
            admin_rsa_key,
            draining: Default::default(),
        }
    }
}

/// Admin requests per client address and in all, per minute: each costs a private-key
/// operation, so a flood must not take the node's CPU (or time the key at leisure).
pub struct AdminRateLimit {
    per_client: u32,
    total: u32,
    window: std::sync::Mutex<AdminWindow>,
}

#[derive(Default)]
struct AdminWindow {
    started: Option<std::time::Instant>,
    total: u32,
    by_client: std::collections::HashMap<std::net::IpAddr, u32>,
}

impl AdminRateLimit {
    pub fn from_config(config: &minerpool_core::config::Config) -> AdminRateLimit {
        AdminRateLimit::new(
            config.node.admin_requests_per_minute_per_client,
            config.node.admin_requests_per_minute,
        )
    }

    pub fn new(per_client: u32, total: u32) -> AdminRateLimit {
        AdminRateLimit {
            per_client,
            total,
            window: Default::default(),
        }
    }

    /// Counts one request from `client`; false when it is over either limit.
    pub fn admit(&self, client: std::net::IpAddr) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if window
            .started
            .is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(60))
        {
            *window = AdminWindow {
                started: Some(now),
                ..AdminWindow::default()
            };
        }
        if window.total >= self.total {
            return false;
        }
        let from_client = window.by_client.entry(client).or_default();
        if *from_client >= self.per_client {
            return false;
        }
        *from_client += 1;
        window.total += 1;
        true
    }
}
