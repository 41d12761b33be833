//! The one configuration file read by the node and the jobs (rendered by the operator into a
//! ConfigMap), and the secrets that come from the environment.
//!
//! Unknown keys and bad values are errors that name the key, so a typo never silently falls back
//! to a default.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::money::Amount;

/// What is wrong with the configuration; every variant names the key or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Syntax, unknown keys, wrong types and missing keys; the parser's message starts with the
    /// dotted path of the key.
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("environment variable {name} is required{why}")]
    MissingEnv {
        name: &'static str,
        why: &'static str,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mongodb: MongoConfig,
    pub chain: ChainConfig,
    #[serde(default)]
    pub rewards: RewardsConfig,
    #[serde(default)]
    pub validators: ValidatorsConfig,
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub payouts: PayoutsConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub history: HistoryConfig,
}

/// What the dashboard's charts keep that nothing else stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Days of hourly scores the decay job keeps (`scoreHistory`).
    pub score_retention_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            score_retention_days: 30,
        }
    }
}

/// The longest score history kept.
pub const MAX_SCORE_RETENTION_DAYS: u32 = 366;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MongoConfig {
    /// Database holding the shared state; `iNode` is the original's.
    pub database: String,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            database: "iNode".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainConfig {
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// `None`: `{apiUrl}/get_validators_info?inode=`.
    #[serde(default)]
    pub validators_url: Option<String>,
    /// The wallet that receives emissions and pays out.
    pub inode_wallet: String,
    /// Receives the fee and the unallocated remainder.
    pub reward_address: String,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// How long in all one read may wait out the node's HTTP 429 rate limits before it fails
    /// (`get_blocks_details` allows 10 a minute, so two minutes rides out any window).
    #[serde(default = "default_rate_limit_wait")]
    pub rate_limit_wait_seconds: u64,
    /// Allow `http://` chain URLs (tests, a simulator, a node on a private network). Off: the
    /// chain is reached over TLS only, and no redirect may lead to plain http.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_api_url() -> String {
    "https://api.upow.ai".into()
}

fn default_request_timeout() -> u64 {
    15
}

fn default_rate_limit_wait() -> u64 {
    120
}

/// Most `rewards.confirmations`: the last scanned block, one new block and the confirmations
/// above it must fit in one `get_blocks_details` answer (at most 1000 blocks).
pub const MAX_CONFIRMATIONS: u32 = 998;
/// A pod's grace period must cover the delay; Kubernetes' default is 30 s, 300 s is generous.
pub const MAX_SHUTDOWN_DELAY_SECONDS: u32 = 300;

/// Most seconds `node.shutdownTimeoutSeconds` may give open connections.
pub const MAX_SHUTDOWN_TIMEOUT_SECONDS: u32 = 300;

/// The widest window for a signed message's `ts`: every accepted nonce is kept for the window,
/// and a captured message can be sent by anyone until the window ends (once, then its nonce is
/// used).
pub const MAX_SIGNED_WINDOW_SECONDS: u32 = 3600;

/// A group write carries at most this many TASKs and PINGs: one `bulkWrite` stays far below the
/// server's 48 MB message and 100,000-operation limits, and a failed group fails a bounded
/// number of clients.
pub const MAX_GROUP_SIZE: u32 = 10_000;

/// Longest `chain.rateLimitWaitSeconds`: a job stuck longer than an hour is better failed.
pub const MAX_RATE_LIMIT_WAIT_SECONDS: u64 = 3600;

impl ChainConfig {
    /// The URL the validators job appends the iNode wallet to.
    pub fn validators_url(&self) -> String {
        match &self.validators_url {
            Some(url) => url.clone(),
            None => format!(
                "{}/get_validators_info?inode=",
                self.api_url.trim_end_matches('/')
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RewardsConfig {
    pub fee_percent: u8,
    pub pools_percent: u8,
    pub validators_percent: u8,
    /// First block scanned when no height is stored yet.
    pub start_height: u64,
    pub blocks_per_run: u32,
    /// Blocks credited must be at least this many below the chain tip, so a block that a reorg
    /// can still orphan is never credited (its income could vanish after being paid).
    pub confirmations: u32,
}

impl Default for RewardsConfig {
    fn default() -> Self {
        RewardsConfig {
            fee_percent: 18,
            pools_percent: 41,
            validators_percent: 41,
            start_height: 20001,
            blocks_per_run: 10,
            confirmations: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ValidatorsConfig {
    /// How many validators, by stake, share the validator part.
    pub limit: u32,
}

impl Default for ValidatorsConfig {
    fn default() -> Self {
        ValidatorsConfig { limit: 60 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeConfig {
    pub http_address: SocketAddr,
    pub websocket_address: SocketAddr,
    /// Where `/metrics` is served on its own, so that a network policy can open it to fewer
    /// clients than the API; unset, it is served on the HTTP address.
    pub metrics_address: Option<SocketAddr>,
    /// Open WebSocket connections per replica.
    pub max_connections: u32,
    /// After SIGTERM: seconds `/readyz` fails while both servers still accept, before they
    /// stop accepting and finish what is in flight.
    pub shutdown_delay_seconds: u32,
    /// Once the servers stop accepting: seconds open connections get to finish (a WebSocket
    /// its message and reply, HTTP its request); any still open then is closed with a reason.
    /// The pod's grace period covers the delay, this, and the writer's last flush.
    pub shutdown_timeout_seconds: u32,
    /// Open HTTP connections per replica.
    pub max_http_connections: u32,
    /// Open connections from one client address, on each of the two ports.
    pub max_connections_per_client: u32,
    /// An HTTP connection on which the client sends nothing for this long is closed.
    pub http_idle_timeout_seconds: u32,
    /// An HTTP request not answered within this is answered 503.
    pub http_request_timeout_seconds: u32,
    /// `/modify-pool-list/` requests a minute from one client address (each costs a private-key
    /// operation).
    pub admin_requests_per_minute_per_client: u32,
    /// `/modify-pool-list/` requests a minute from all clients together.
    pub admin_requests_per_minute: u32,
    /// Which messages are accepted: unsigned, signed (SPEC §4.5), or both.
    pub protocol: Protocol,
    /// A signed message's `ts` may be this many seconds from the node's clock, either side; its
    /// nonce is remembered that long.
    pub signed_window_seconds: u32,
    /// Most TASKs and PINGs in one group write (1: each in its own transaction).
    pub max_group_size: u32,
    /// The checks before scoring read an in-memory copy of `poolList` and `validatorsList`,
    /// kept current by a change stream; `false` reads the database for every message.
    pub registry_cache: bool,
    /// The cached registry is read again in full this often, whatever the change stream says.
    pub registry_reload_seconds: u32,
    /// Both ports read a PROXY protocol header (v1 or v2) before anything else, and take the
    /// client's address from it: behind a load balancer that sends one, the per-client limits
    /// and the logs see the validator rather than the balancer. A connection without a valid
    /// header is closed.
    pub proxy_protocol: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            http_address: SocketAddr::from(([0, 0, 0, 0], 8001)),
            websocket_address: SocketAddr::from(([0, 0, 0, 0], 5501)),
            metrics_address: None,
            max_connections: 1500,
            shutdown_delay_seconds: 0,
            shutdown_timeout_seconds: 20,
            max_http_connections: 256,
            max_connections_per_client: 64,
            http_idle_timeout_seconds: 30,
            http_request_timeout_seconds: 15,
            admin_requests_per_minute_per_client: 10,
            admin_requests_per_minute: 60,
            protocol: Protocol::Both,
            signed_window_seconds: 60,
            max_group_size: 512,
            registry_cache: true,
            registry_reload_seconds: 60,
            proxy_protocol: false,
        }
    }
}

/// Which WebSocket messages the node accepts (SPEC §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Unsigned messages only; signature fields are ignored.
    Legacy,
    /// Both, except that a validator that has sent a valid signed message is refused unsigned
    /// ones from then on.
    #[default]
    Both,
    /// Signed messages only.
    Signed,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Legacy => "legacy",
            Protocol::Both => "both",
            Protocol::Signed => "signed",
        }
    }
}

/// How payouts reach the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sender {
    /// Build and record batches, send nothing.
    DryRun,
    /// Sign and push uPow transactions.
    Upow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PayoutsConfig {
    pub sender: Sender,
    /// In coins, as a decimal string.
    pub minimum_payout: Amount,
    pub max_outputs_per_tx: u32,
    /// The transaction fee of each payout batch, taken from the reward address's own balance.
    pub fee: Amount,
    /// A batch whose transaction is still not in a block this long after signing is reported as
    /// stuck and abandoned (its inputs spent back to the wallet, then refunded once that is in a
    /// block). 0: never automatically, only by `minerpool-job payouts --abandon BATCH`.
    pub abandon_after_seconds: u64,
}

/// A uPow transaction has at most 255 outputs; one is the change.
pub const MAX_RECIPIENTS_PER_TX: u32 = 254;

impl Default for PayoutsConfig {
    fn default() -> Self {
        PayoutsConfig {
            sender: Sender::DryRun,
            minimum_payout: Amount::from_units(crate::money::UNITS_PER_COIN).expect("positive"),
            max_outputs_per_tx: 200,
            fee: Amount::ZERO,
            abandon_after_seconds: 3600,
        }
    }
}

/// Intervals of the jobs in standalone mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub rewards_seconds: u64,
    pub payouts_seconds: u64,
    pub validators_seconds: u64,
    pub decay_seconds: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            rewards_seconds: 60,
            payouts_seconds: 60,
            validators_seconds: 600,
            decay_seconds: 600,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml_str(&text)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The YAML file this config is read from.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a config always serialises")
    }

    /// A minimal config with every default, for the given wallets.
    pub fn with_wallets(inode_wallet: &str, reward_address: &str) -> Config {
        Config {
            mongodb: MongoConfig::default(),
            chain: ChainConfig {
                api_url: default_api_url(),
                validators_url: None,
                inode_wallet: inode_wallet.into(),
                reward_address: reward_address.into(),
                request_timeout_seconds: default_request_timeout(),
                rate_limit_wait_seconds: default_rate_limit_wait(),
                allow_insecure_http: false,
            },
            rewards: RewardsConfig::default(),
            validators: ValidatorsConfig::default(),
            node: NodeConfig::default(),
            payouts: PayoutsConfig::default(),
            schedule: ScheduleConfig::default(),
            history: HistoryConfig::default(),
        }
    }

    /// The checks serde cannot express: ranges, sums, URL and address syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mongodb.database.is_empty() {
            return Err(invalid("mongodb.database", "must not be empty"));
        }
        let insecure = self.chain.allow_insecure_http;
        check_url("chain.apiUrl", &self.chain.api_url, insecure)?;
        if let Some(url) = &self.chain.validators_url {
            check_url("chain.validatorsUrl", url, insecure)?;
        }
        check_wallet("chain.inodeWallet", &self.chain.inode_wallet)?;
        check_wallet("chain.rewardAddress", &self.chain.reward_address)?;
        if self.chain.request_timeout_seconds == 0 {
            return Err(invalid("chain.requestTimeoutSeconds", "must be at least 1"));
        }
        if self.chain.rate_limit_wait_seconds > MAX_RATE_LIMIT_WAIT_SECONDS {
            return Err(invalid(
                "chain.rateLimitWaitSeconds",
                format!(
                    "must be 0 to {MAX_RATE_LIMIT_WAIT_SECONDS}, got {}",
                    self.chain.rate_limit_wait_seconds
                ),
            ));
        }
        let r = &self.rewards;
        let sum =
            u32::from(r.fee_percent) + u32::from(r.pools_percent) + u32::from(r.validators_percent);
        if sum != 100 {
            return Err(invalid(
                "rewards",
                format!(
                    "feePercent + poolsPercent + validatorsPercent must be 100, got {} + {} + {} = {sum}",
                    r.fee_percent, r.pools_percent, r.validators_percent
                ),
            ));
        }
        if !(1..=1000).contains(&r.blocks_per_run) {
            return Err(invalid(
                "rewards.blocksPerRun",
                format!(
                    "must be 1 to 1000 (the chain's limit), got {}",
                    r.blocks_per_run
                ),
            ));
        }
        if r.confirmations > MAX_CONFIRMATIONS {
            return Err(invalid(
                "rewards.confirmations",
                format!(
                    "must be 0 to {MAX_CONFIRMATIONS} (one chain answer of at most 1000 blocks holds the last scanned block, a new one and the confirmations above it), got {}",
                    r.confirmations
                ),
            ));
        }
        if !(1..=1000).contains(&self.validators.limit) {
            return Err(invalid(
                "validators.limit",
                format!("must be 1 to 1000, got {}", self.validators.limit),
            ));
        }
        if self.node.max_connections == 0 {
            return Err(invalid("node.maxConnections", "must be at least 1"));
        }
        let node = &self.node;
        let mut servers = vec![
            ("node.httpAddress", "HTTP", node.http_address),
            ("node.websocketAddress", "WebSocket", node.websocket_address),
        ];
        if let Some(metrics) = node.metrics_address {
            servers.push(("node.metricsAddress", "metrics", metrics));
        }
        for (i, (key, server, address)) in servers.iter().enumerate() {
            for (_, other, earlier) in &servers[..i] {
                let ips_overlap = address.ip() == earlier.ip()
                    || address.ip().is_unspecified()
                    || earlier.ip().is_unspecified();
                // Port 0 asks the system for a free port, a different one for each server.
                if address.port() == earlier.port() && address.port() != 0 && ips_overlap {
                    return Err(invalid(
                        key,
                        format!(
                            "port {} is the {other} port too: the {server} and {other} servers need a port each",
                            address.port()
                        ),
                    ));
                }
            }
        }
        for (key, value) in [
            ("node.maxHttpConnections", self.node.max_http_connections),
            (
                "node.maxConnectionsPerClient",
                self.node.max_connections_per_client,
            ),
            (
                "node.httpIdleTimeoutSeconds",
                self.node.http_idle_timeout_seconds,
            ),
            (
                "node.httpRequestTimeoutSeconds",
                self.node.http_request_timeout_seconds,
            ),
            (
                "node.adminRequestsPerMinutePerClient",
                self.node.admin_requests_per_minute_per_client,
            ),
            (
                "node.adminRequestsPerMinute",
                self.node.admin_requests_per_minute,
            ),
            ("node.maxGroupSize", self.node.max_group_size),
            (
                "node.registryReloadSeconds",
                self.node.registry_reload_seconds,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.node.max_group_size > MAX_GROUP_SIZE {
            return Err(invalid(
                "node.maxGroupSize",
                format!(
                    "must be 1 to {MAX_GROUP_SIZE}, got {}",
                    self.node.max_group_size
                ),
            ));
        }
        if !(1..=MAX_SIGNED_WINDOW_SECONDS).contains(&self.node.signed_window_seconds) {
            return Err(invalid(
                "node.signedWindowSeconds",
                format!(
                    "must be 1 to {MAX_SIGNED_WINDOW_SECONDS}, got {}",
                    self.node.signed_window_seconds
                ),
            ));
        }
        if !(1..=MAX_SHUTDOWN_TIMEOUT_SECONDS).contains(&self.node.shutdown_timeout_seconds) {
            return Err(invalid(
                "node.shutdownTimeoutSeconds",
                format!(
                    "must be 1 to {MAX_SHUTDOWN_TIMEOUT_SECONDS}, got {}",
                    self.node.shutdown_timeout_seconds
                ),
            ));
        }
        if self.node.shutdown_delay_seconds > MAX_SHUTDOWN_DELAY_SECONDS {
            return Err(invalid(
                "node.shutdownDelaySeconds",
                format!(
                    "must be 0 to {MAX_SHUTDOWN_DELAY_SECONDS}, got {}",
                    self.node.shutdown_delay_seconds
                ),
            ));
        }
        let p = &self.payouts;
        if !(1..=MAX_RECIPIENTS_PER_TX).contains(&p.max_outputs_per_tx) {
            return Err(invalid(
                "payouts.maxOutputsPerTx",
                format!(
                    "must be 1 to {MAX_RECIPIENTS_PER_TX} (one output of 255 is the change), got {}",
                    p.max_outputs_per_tx
                ),
            ));
        }
        if p.minimum_payout == Amount::ZERO {
            return Err(invalid("payouts.minimumPayout", "must be more than 0"));
        }
        let s = &self.schedule;
        for (key, seconds) in [
            ("schedule.rewardsSeconds", s.rewards_seconds),
            ("schedule.payoutsSeconds", s.payouts_seconds),
            ("schedule.validatorsSeconds", s.validators_seconds),
            ("schedule.decaySeconds", s.decay_seconds),
        ] {
            if seconds == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let days = self.history.score_retention_days;
        if !(1..=MAX_SCORE_RETENTION_DAYS).contains(&days) {
            return Err(invalid(
                "history.scoreRetentionDays",
                format!("must be 1 to {MAX_SCORE_RETENTION_DAYS}, got {days}"),
            ));
        }
        Ok(())
    }
}

fn check_url(key: &'static str, url: &str, allow_insecure_http: bool) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" => Ok(()),
        Ok(parsed) if parsed.scheme() == "http" && allow_insecure_http => Ok(()),
        Ok(parsed) if parsed.scheme() == "http" => Err(invalid(
            key,
            format!(
                "{url:?} is plain http: use https://, or set chain.allowInsecureHttp: true for a chain on a trusted network"
            ),
        )),
        Ok(parsed) => Err(invalid(
            key,
            format!(
                "{url:?} must be an http or https URL, not {}",
                parsed.scheme()
            ),
        )),
        Err(e) => Err(invalid(key, format!("{url:?} is not a URL: {e}"))),
    }
}

fn check_wallet(key: &'static str, address: &str) -> Result<(), ConfigError> {
    crate::address::check_format(address)
        .map_err(|e| invalid(key, format!("{address:?} is not a uPow address: {e}")))
}

/// Secrets, read from the environment (never from the config file, never logged).
#[derive(Clone, Default)]
pub struct Secrets {
    pub mongodb_uri: String,
    /// Hex private key of the iNode wallet; needed by the `upow` sender.
    pub wallet_key: Option<String>,
    /// Enables the `/api/v1` writes.
    pub admin_token: Option<String>,
    /// PEM, or base64 of PEM; enables `/modify-pool-list/`.
    pub admin_rsa_key: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("mongodb_uri", &"<set>")
            .field("wallet_key", &set(&self.wallet_key))
            .field("admin_token", &set(&self.admin_token))
            .field("admin_rsa_key", &set(&self.admin_rsa_key))
            .finish()
    }
}

impl Secrets {
    pub fn from_env() -> Result<Secrets, ConfigError> {
        Secrets::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the secrets through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Secrets, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Ok(Secrets {
            mongodb_uri: get("MONGODB_URI").ok_or(ConfigError::MissingEnv {
                name: "MONGODB_URI",
                why: "",
            })?,
            wallet_key: get("MINERPOOL_WALLET_KEY"),
            admin_token: get("MINERPOOL_ADMIN_TOKEN"),
            admin_rsa_key: get("MINERPOOL_ADMIN_RSA_KEY"),
        })
    }

    /// The wallet key, required when payouts are really sent.
    pub fn require_wallet_key(&self) -> Result<&str, ConfigError> {
        self.wallet_key.as_deref().ok_or(ConfigError::MissingEnv {
            name: "MINERPOOL_WALLET_KEY",
            why: " when payouts.sender is upow",
        })
    }
}
