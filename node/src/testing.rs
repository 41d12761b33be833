//! A node started in-process (port 0) on a fresh database of the test server, and the raw
//! WebSocket frames clients send it: the one helper of the node's and the validator's tests and
//! benchmarks (feature `testing`, never in a binary).

use std::net::SocketAddr;
use std::time::Duration;

use bson::{Document, doc};
use futures::{SinkExt, StreamExt};
use minerpool_core::config::{Config, Protocol, Secrets};
use minerpool_core::store::Store;
use minerpool_core::store::intake::TaskWrites;
use minerpool_core::store::intake::front::{Intake, IntakeOptions};
use minerpool_core::store::names;
use minerpool_core::store::registry::Parties;
use minerpool_core::testing::{fresh_store, mongodb_uri};
use minerpool_tests::fixtures::{INODE, REWARD};
use tokio_tungstenite::tungstenite::Message;

use crate::state::{AdminRateLimit, Limits, NodeState};
use crate::{RunningNode, start};

/// The admin token of every test node.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running node on a database of its own, with its store and intake.
pub struct TestNode {
    pub store: Store,
    pub intake: Intake,
    pub node: RunningNode,
    pub http: String,
    pub ws: String,
}

/// How [`node_with`] starts a node.
pub struct Options {
    pub limits: Limits,
    pub admin_rsa_key: Option<rsa::RsaPrivateKey>,
    pub store: Option<Store>,
    /// `/modify-pool-list/` per client and in all, per minute.
    pub admin_requests_per_minute: (u32, u32),
    pub intake: IntakeOptions,
    /// `node.protocol`.
    pub protocol: Protocol,
    /// `node.metricsAddress`: a port of its own for `/metrics`.
    pub metrics_port: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits {
                // Every test client is 127.0.0.1: no per-client cap unless a test sets one.
                max_connections_per_client: u32::MAX,
                ..Limits::from_config(&Config::with_wallets(INODE, REWARD))
            },
            admin_rsa_key: None,
            store: None,
            admin_requests_per_minute: (u32::MAX, u32::MAX),
            intake: IntakeOptions::from_config(&Config::with_wallets(INODE, REWARD).node),
            protocol: Protocol::default(),
            metrics_port: false,
        }
    }
}

/// A node with the default [`Options`] on a fresh database named after `label`.
pub async fn node(label: &str) -> TestNode {
    node_with(label, Options::default()).await
}

/// A node started as `options` say.
pub async fn node_with(label: &str, options: Options) -> TestNode {
    // A given store may be unreachable on purpose: then do not ask it what it supports, nor
    // load a registry from it.
    let (store, intake) = match options.store {
        Some(store) => {
            let intake_options = IntakeOptions {
                registry_cache: false,
                ..options.intake
            };
            let intake = Intake::start_with(store.clone(), intake_options, TaskWrites::Separate)
                .await
                .expect("intake");
            (store, intake)
        }
        None => {
            let store = fresh_store(label).await;
            let intake = Intake::start(store.clone(), options.intake)
                .await
                .expect("intake");
            (store, intake)
        }
    };
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.node.protocol = options.protocol;
    if options.metrics_port {
        config.node.metrics_address = Some("127.0.0.1:0".parse().unwrap());
    }
    let secrets = Secrets {
        mongodb_uri: mongodb_uri(),
        wallet_key: None,
        admin_token: Some(ADMIN_TOKEN.into()),
        admin_rsa_key: None,
    };
    let mut state = NodeState::new(
        store.clone(),
        intake.clone(),
        config,
        secrets,
        options.admin_rsa_key,
    );
    state.limits = options.limits;
    state.admin_rate_limit = AdminRateLimit::new(
        options.admin_requests_per_minute.0,
        options.admin_requests_per_minute.1,
    );
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let node = start(state, any, any).await.expect("start the node");
    TestNode {
        http: format!("http://{}", node.http_address),
        ws: format!("ws://{}", node.websocket_address),
        store,
        intake,
        node,
    }
}

impl TestNode {
    /// Sends one frame, returns the text reply (or the close reason).
    pub async fn send(&self, message: &str) -> String {
        let (mut ws, _) = tokio_tungstenite::connect_async(&self.ws)
            .await
            .expect("connect");
        ws.send(Message::text(message)).await.expect("send");
        reply(&mut ws).await
    }

    /// Adds a validator and waits until the node's checks see it.
    pub async fn add_validator(&self, address: &str, percentage: f64) {
        self.store
            .collection::<Document>(names::VALIDATORS)
            .insert_one(
                doc! { "wallet_address": address, "percentage": percentage, "score": 0_i64 },
            )
            .await
            .unwrap();
        self.registry_shows(Some(address), None, |p| {
            p.validator_percentage == Some(percentage)
        })
        .await;
    }

    /// Sets (or adds) a validator's percentage and waits until the node's checks see it.
    pub async fn set_percentage(&self, address: &str, percentage: f64) {
        self.store
            .collection::<Document>(names::VALIDATORS)
            .update_one(
                doc! { "wallet_address": address },
                doc! { "$set": { "percentage": percentage } },
            )
            .upsert(true)
            .await
            .unwrap();
        self.registry_shows(Some(address), None, |p| {
            p.validator_percentage == Some(percentage)
        })
        .await;
    }

    /// Registers a pool and waits until the node's checks see it.
    pub async fn register_pool(&self, address: &str) {
        self.store.register_pool(address).await.unwrap();
        self.registry_shows(None, Some(address), |p| p.pool_registered)
            .await;
    }

    /// Waits (at most 5 s) until the node's checks answer as `shows` wants: a cached registry
    /// follows the database within milliseconds, not at once.
    pub async fn registry_shows(
        &self,
        validator: Option<&str>,
        pool: Option<&str>,
        shows: impl Fn(&Parties) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let parties = self.intake.parties(validator, pool).await.unwrap();
            if shows(&parties) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the node's registry never showed {validator:?} {pool:?}: {parties:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The pool's score; `None` before its first TASK.
    pub async fn pool_score(&self, address: &str) -> Option<i64> {
        self.store
            .pool_scores()
            .find_one(doc! { "pool_address": address })
            .await
            .unwrap()
            .map(|p| p.score)
    }

    /// The validator's document.
    pub async fn validator(&self, address: &str) -> Document {
        self.store
            .collection::<Document>(names::VALIDATORS)
            .find_one(doc! { "wallet_address": address })
            .await
            .unwrap()
            .expect("validator exists")
    }
}

/// The next thing the node sends: its text reply, or `CLOSE: <reason>`, `CLOSED`, `TIMEOUT`.
pub async fn reply<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        Ok(Some(Ok(Message::Close(Some(frame))))) => format!("CLOSE: {}", frame.reason),
        Ok(Some(Ok(Message::Close(None)))) | Ok(None) => "CLOSED".into(),
        Ok(Some(Ok(other))) => format!("OTHER: {other:?}"),
        Ok(Some(Err(e))) => format!("ERR: {e}"),
        Err(_) => "TIMEOUT".into(),
    }
}

/// A legacy TASK frame.
pub fn task(pool: &str, validator: &str, val_id: &str) -> String {
    serde_json::json!({
        "type": "TASK", "pool_wallet": pool, "validator_wallet": validator,
        "val_id": val_id, "ip": "127.0.0.1", "port": 5502,
    })
    .to_string()
}

/// A legacy PING frame.
pub fn ping(validator: &str, ip: &str, port: serde_json::Value) -> String {
    serde_json::json!({ "type": "PING", "validator_wallet": validator, "ip": ip, "port": port })
        .to_string()
}
