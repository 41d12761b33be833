//! `minerpool-node`: `serve` (the servers, what the Deployment runs) and `standalone` (servers
//! and jobs in one process).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use minerpool_core::chain::ChainClient;
use minerpool_core::config::{Config, Secrets};
use minerpool_core::store::Store;
use minerpool_core::store::intake::front::{Intake, IntakeOptions};
use minerpool_jobs::{Context, DEFAULT_LOCK_TTL};
use minerpool_node::{NodeState, parse_admin_key, standalone, start};

#[derive(Parser)]
#[command(
    name = "minerpool-node",
    version,
    about = "The minerpool iNode: WebSocket and HTTP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the WebSocket protocol and the HTTP API
    Serve {
        /// The minerpool YAML configuration file
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Serve, and run the rewards, payouts, validators and decay jobs on their intervals, in one process
    Standalone {
        /// The minerpool YAML configuration file
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Convert the original iNode's layout.json into a minerpool config file on stdout
    ImportLayout {
        /// The original layout.json
        #[arg(value_name = "FILE")]
        layout: PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minerpool-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    minerpool_core::logging::init();
    let (config_path, with_jobs) = match Cli::parse().command {
        Command::Serve { config } => (config, false),
        Command::Standalone { config } => (config, true),
        Command::ImportLayout { layout } => return import_layout(&layout),
    };
    let config = Config::load(&config_path)?;
    let secrets = Secrets::from_env()?;
    let wallet_key = secrets.wallet_key.clone();
    let store = Store::connect(&secrets.mongodb_uri, &config.mongodb.database).await?;
    store
        .require_replica_set()
        .await
        .context("checking the MongoDB server")?;
    store.ensure_indexes().await?;
    let admin_rsa_key = secrets
        .admin_rsa_key
        .as_deref()
        .map(parse_admin_key)
        .transpose()?;
    let (http_address, websocket_address, shutdown_delay) = (
        config.node.http_address,
        config.node.websocket_address,
        config.node.shutdown_delay_seconds,
    );
    let open_files = raise_open_files_limit();
    let intake = Intake::start(store.clone(), IntakeOptions::from_config(&config.node)).await?;
    tracing::info!(messages = %intake.describe(), "TASK and PING intake");
    let state = NodeState::new(
        store.clone(),
        intake,
        config.clone(),
        secrets,
        admin_rsa_key,
    );
    if let Some(open_files) = open_files {
        state.metrics.set_limit("open_files", open_files);
        let needed = u64::from(config.node.max_connections)
            + u64::from(config.node.max_http_connections)
            + 64;
        if open_files < needed {
            tracing::warn!(
                open_files,
                needed,
                "the open-files limit is below node.maxConnections + node.maxHttpConnections + 64: connections past it fail to be accepted"
            );
        }
    }
    tracing::info!(
        open_files = ?open_files,
        websocket_connections = config.node.max_connections,
        http_connections = config.node.max_http_connections,
        connections_per_client = config.node.max_connections_per_client,
        http_idle_timeout_seconds = config.node.http_idle_timeout_seconds,
        http_request_timeout_seconds = config.node.http_request_timeout_seconds,
        "limits"
    );
    let node = start(state, http_address, websocket_address).await?;
    let stop_jobs = tokio_util::sync::CancellationToken::new();
    let jobs = if with_jobs {
        let context = Context {
            chain: ChainClient::new(&config.chain)?,
            config,
            store,
            lock_ttl: DEFAULT_LOCK_TTL,
            wallet_key: wallet_key.clone(),
            stop: stop_jobs.clone(),
        };
        standalone::spawn_schedule(context)
    } else {
        Vec::new()
    };
    let (signal, delay) = match shutdown_signal().await {
        // SIGTERM comes from an orchestrator that is still routing to this node.
        Signal::Terminate => ("SIGTERM", Duration::from_secs(shutdown_delay.into())),
        Signal::Interrupt => ("SIGINT", Duration::ZERO),
    };
    tracing::info!(
        signal,
        delay_seconds = delay.as_secs(),
        "shutting down: finishing in-flight work"
    );
    // Jobs finish the step they are in while the servers drain.
    stop_jobs.cancel();
    let report = node.drain(delay).await;
    for job in jobs {
        let _ = job.await;
    }
    tracing::info!(
        from_backlog = report.from_backlog,
        connections_cut = report.cut,
        writer_flushed = report.writer_flushed,
        "stopped"
    );
    Ok(())
}

fn import_layout(path: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let imported = minerpool_core::layout::import_layout(&text)?;
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    print!("{}", imported.config.to_yaml());
    Ok(())
}

/// Raises the soft open-files limit to the hard one (often 1024 soft and far more hard), and
/// returns the limit in force.
fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

enum Signal {
    Terminate,
    Interrupt,
}

async fn shutdown_signal() -> Signal {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}
