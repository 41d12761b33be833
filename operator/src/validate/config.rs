//! The config file the node and the jobs read, rendered from the spec: what the spec leaves
//! unset keeps `minerpool_core::config`'s default (or the operator's, for the two that differ in
//! a cluster), and the config's own rules (addresses, URLs, the percentage sum, ranges) are
//! core's.

use std::net::SocketAddr;

use minerpool_core::config::{Config, ConfigError, Protocol, Sender};
use minerpool_core::money::Amount;

use crate::crd::MinerPoolSpec;
use crate::defaults::{DEFAULT_METRICS_PORT, DEFAULT_SHUTDOWN_DELAY_SECONDS};
use crate::problem::Problem;

/// The protocol `spec.node.protocol` names.
pub fn protocol(value: Option<&str>) -> Result<Protocol, Problem> {
    match value {
        None | Some("both") => Ok(Protocol::Both),
        Some("legacy") => Ok(Protocol::Legacy),
        Some("signed") => Ok(Protocol::Signed),
        Some(other) => Err(Problem::new(
            "spec.node.protocol",
            format!("{other:?} is not a protocol (legacy, both or signed)"),
        )),
    }
}

/// The sender `spec.payouts.sender` names.
pub fn sender(value: Option<&str>) -> Result<Sender, Problem> {
    match value {
        None | Some("dry-run") => Ok(Sender::DryRun),
        Some("upow") => Ok(Sender::Upow),
        Some(other) => Err(Problem::new(
            "spec.payouts.sender",
            format!("{other:?} is not a sender (dry-run or upow)"),
        )),
    }
}

/// The config the spec asks for. Each problem is pushed; the config returned is then only a
/// best effort.
pub fn render(spec: &MinerPoolSpec, problems: &mut Vec<Problem>) -> Config {
    let protocol = protocol(spec.node.protocol.as_deref()).unwrap_or_else(|problem| {
        problems.push(problem);
        Protocol::Both
    });
    let sender = sender(spec.payouts.sender.as_deref()).unwrap_or_else(|problem| {
        problems.push(problem);
        Sender::DryRun
    });
    if sender == Sender::Upow && spec.payouts.wallet_key_secret_ref.is_none() {
        problems.push(Problem::new(
            "spec.payouts.walletKeySecretRef",
            "is required when sender is upow",
        ));
    }

    let mut config = Config::with_wallets(&spec.chain.inode_wallet, &spec.chain.reward_address);
    let chain = &spec.chain;
    set(&mut config.chain.api_url, chain.api_url.clone());
    config.chain.validators_url = chain.validators_url.clone();
    set(
        &mut config.chain.allow_insecure_http,
        chain.allow_insecure_http,
    );
    set(
        &mut config.chain.request_timeout_seconds,
        chain.request_timeout_seconds,
    );
    set(
        &mut config.chain.rate_limit_wait_seconds,
        chain.rate_limit_wait_seconds,
    );
    set(&mut config.rewards.start_height, chain.start_height);
    set(&mut config.mongodb.database, spec.mongodb.database.clone());
    config.rewards.fee_percent = spec.rewards.fee_percent;
    config.rewards.pools_percent = spec.rewards.pools_percent;
    config.rewards.validators_percent = spec.rewards.validators_percent;
    set(
        &mut config.rewards.blocks_per_run,
        spec.rewards.blocks_per_run,
    );
    set(
        &mut config.rewards.confirmations,
        spec.rewards.confirmations,
    );
    set(&mut config.validators.limit, spec.validators.limit);
    let node = &spec.node;
    let n = &mut config.node;
    set(
        &mut n.http_address,
        node.http_port
            .map(|port| SocketAddr::from(([0, 0, 0, 0], port))),
    );
    set(
        &mut n.websocket_address,
        node.websocket_port
            .map(|port| SocketAddr::from(([0, 0, 0, 0], port))),
    );
    n.metrics_address = Some(SocketAddr::from((
        [0, 0, 0, 0],
        node.metrics_port.unwrap_or(DEFAULT_METRICS_PORT),
    )));
    set(&mut n.max_connections, node.max_connections);
    n.shutdown_delay_seconds = node
        .shutdown_delay_seconds
        .unwrap_or(DEFAULT_SHUTDOWN_DELAY_SECONDS);
    set(
        &mut n.shutdown_timeout_seconds,
        node.shutdown_timeout_seconds,
    );
    set(&mut n.max_http_connections, node.max_http_connections);
    set(
        &mut n.max_connections_per_client,
        node.max_connections_per_client,
    );
    set(
        &mut n.http_idle_timeout_seconds,
        node.http_idle_timeout_seconds,
    );
    set(
        &mut n.http_request_timeout_seconds,
        node.http_request_timeout_seconds,
    );
    set(
        &mut n.admin_requests_per_minute_per_client,
        node.admin_requests_per_minute_per_client,
    );
    set(
        &mut n.admin_requests_per_minute,
        node.admin_requests_per_minute,
    );
    set(&mut n.signed_window_seconds, node.signed_window_seconds);
    n.protocol = protocol;
    set(&mut n.max_group_size, node.max_group_size);
    set(&mut n.registry_cache, node.registry_cache);
    set(&mut n.registry_reload_seconds, node.registry_reload_seconds);
    set(&mut n.proxy_protocol, node.proxy_protocol);
    config.payouts.sender = sender;
    let mut amount = |field: &str, text: &Option<String>| {
        let text = text.as_ref()?;
        Amount::parse(text)
            .map_err(|e| {
                problems.push(Problem::new(
                    field,
                    format!("{text:?} is not an amount: {e}"),
                ))
            })
            .ok()
    };
    set(
        &mut config.payouts.minimum_payout,
        amount("spec.payouts.minimumPayout", &spec.payouts.minimum_payout),
    );
    set(
        &mut config.payouts.fee,
        amount("spec.payouts.fee", &spec.payouts.fee),
    );
    set(
        &mut config.payouts.max_outputs_per_tx,
        spec.payouts.max_outputs_per_tx,
    );
    set(
        &mut config.payouts.abandon_after_seconds,
        spec.payouts.abandon_after_seconds,
    );
    set(
        &mut config.history.score_retention_days,
        spec.history.score_retention_days,
    );
    // Core's rules; its keys are the spec's keys without the `spec.` prefix, apart from the
    // ones mapped by `spec_key`.
    if let Err(e) = config.validate() {
        problems.push(config_problem(e));
    }
    config
}

/// A spec field that is set replaces the config's default.
fn set<T>(config_value: &mut T, spec_value: Option<T>) {
    if let Some(value) = spec_value {
        *config_value = value;
    }
}

fn config_problem(error: ConfigError) -> Problem {
    match error {
        ConfigError::Invalid { key, message } => Problem {
            field: format!("spec.{}", spec_key(key)),
            message,
        },
        other => Problem {
            field: "spec".into(),
            message: other.to_string(),
        },
    }
}

/// The spec field a config key comes from.
fn spec_key(config_key: &str) -> String {
    match config_key {
        "rewards.startHeight" => "chain.startHeight".into(),
        "node.httpAddress" => "node.httpPort".into(),
        "node.websocketAddress" => "node.websocketPort".into(),
        "node.metricsAddress" => "node.metricsPort".into(),
        other => other.into(),
    }
}
