//! `minerpool-operator`: `run` reconciles MinerPools; `crd` prints the CRD.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, CustomResourceExt};
use minerpool_operator::leader::{Elector, LeaseSettings};
use minerpool_operator::reconcile::{self, Context, Scope};
use minerpool_operator::served_api::{ServedApis, VersionedKind};
use minerpool_operator::server::{self, Health};

#[derive(Parser)]
#[command(
    name = "minerpool-operator",
    version,
    about = "Kubernetes operator for MinerPool resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the MinerPool CustomResourceDefinition as YAML
    Crd,
    /// Reconcile MinerPools until SIGTERM
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of /healthz, /readyz and /metrics
    #[arg(
        long,
        env = "MINERPOOL_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_address: SocketAddr,
    /// Elect a leader through a Lease, so only one replica reconciles
    #[arg(long, env = "MINERPOOL_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease
    #[arg(
        long,
        env = "MINERPOOL_LEASE_NAME",
        default_value = "minerpool-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease; unset: the client's default namespace
    #[arg(long, env = "MINERPOOL_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Comma-separated namespaces to watch; empty: all namespaces
    #[arg(long, env = "MINERPOOL_WATCH_NAMESPACES", default_value = "")]
    watch_namespaces: String,
    /// This replica's identity in the Lease and in Events
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!(
                "{}",
                serde_yaml::to_string(&minerpool_operator::crd::MinerPool::crd())?
            );
            Ok(())
        }
        Command::Run(args) => {
            minerpool_core::logging::init();
            minerpool_operator::tls::install_crypto_provider();
            run(args).await
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .with_context(|| format!("binding {}", args.metrics_address))?;
    tracing::info!(address = %args.metrics_address, "serving /healthz, /readyz and /metrics");
    tokio::spawn(axum::serve(listener, server::router(health.clone())).into_future());

    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    // An API server that is not answering yet is waited for, not a reason to exit.
    let mut retry_in = Duration::from_secs(1);
    let apis = loop {
        let attempt = tokio::select! {
            attempt = ServedApis::discover(&client) => attempt,
            () = shutdown_signal() => return Ok(()),
        };
        match attempt {
            Ok(apis) => break apis,
            Err(e) => {
                tracing::warn!(error = %e, ?retry_in, "discovering the served API versions failed; retrying");
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(Duration::from_secs(30));
            }
        }
    };
    tracing::info!(
        cron_jobs = apis.api_version(VersionedKind::CronJob),
        disruption_budgets = apis.api_version(VersionedKind::PodDisruptionBudget),
        "served API versions"
    );
    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("minerpool-operator-{}", std::process::id()));
    let scope = match args
        .watch_namespaces
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect::<Vec<_>>()
    {
        list if list.is_empty() => Scope::AllNamespaces,
        list => Scope::Namespaces(list),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        apis,
        health.metrics.clone(),
        Some(identity.clone()),
    ));
    health.ready.store(true, Ordering::Relaxed);

    if !args.leader_election {
        health.metrics.leader.set(1);
        tracing::info!(?scope, "reconciling");
        reconcile::run(ctx, scope, shutdown_signal()).await;
        return Ok(());
    }

    let namespace = args
        .lease_namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let mut elector = Elector::new(leases, LeaseSettings::new(args.lease_name, identity));
    tracing::info!(lease = %elector.settings.name, %namespace, "waiting to lead");
    tokio::select! {
        () = elector.acquire() => {},
        () = shutdown_signal() => return Ok(()),
    }
    health.metrics.leader.set(1);
    tracing::info!(lease = %elector.settings.name, ?scope, "leading; reconciling");
    tokio::select! {
        () = reconcile::run(ctx, scope, shutdown_signal()) => {
            health.metrics.leader.set(0);
            Ok(())
        }
        error = elector.hold() => {
            // Leadership is lost: stop at once, without finishing in-flight reconciles (another
            // replica may lead from the lease's end), and exit non-zero so that the pod restarts
            // as a candidate.
            health.metrics.leader.set(0);
            tracing::error!(%error, "lost the Lease: exiting");
            std::process::exit(1);
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
