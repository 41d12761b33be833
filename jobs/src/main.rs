//! `minerpool-job`: one pass of a job, then exit. The last line on stdout is a one-line JSON
//! summary; a failure exits 1 with the reason on stderr, a blocked run exits 3.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use minerpool_core::chain::ChainClient;
use minerpool_core::config::{Config, Secrets};
use minerpool_core::store::Store;
use minerpool_jobs::payouts::PayoutsRequest;
use minerpool_jobs::{
    BLOCKED_EXIT_CODE, Context, DEFAULT_LOCK_TTL, Job, JobError, RunOutcome, run_with,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "minerpool-job",
    version,
    about = "Runs one pass of a minerpool job",
    after_help = "Exit status (the last line on stdout is a one-line JSON summary with the same outcome):\n  \
      0    succeeded (including nothing to do) or already-running (another run holds the lock)\n  \
      1    failed: the reason is on stderr and in the summary's \"error\"\n  \
      3    blocked: the run could not do its work (payouts.fee not covered while payouts are due,\n       \
      a wallet that cannot cover them, rewards.startHeight above the chain's tip); the summary's\n       \
      \"reason\" says why, and the run passes once that is resolved\n  \
      143  stopped by SIGTERM or SIGINT before its next step"
)]
struct Cli {
    #[command(subcommand)]
    job: JobCommand,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Credit the iNode's new income from the next blocks and share it out
    Rewards(Args),
    /// Refresh the validators' stake percentages from the chain
    Validators(Args),
    /// Pay pending balances on chain (or record what would be paid, with sender dry-run)
    Payouts(PayoutsArgs),
    /// Decay pool scores and reset validator scores
    Decay(Args),
    /// Check that received = credited = pending + in flight + paid, per address and in total,
    /// and that what the chain's blocks show the wallet paid is what the ledger says it paid
    Audit(Args),
    /// List the spends of the iNode wallet the chain shows, and adopt or acknowledge a foreign
    /// one (a spend minerpool did not make holds the payouts until it is resolved)
    #[command(subcommand)]
    Spends(SpendsCommand),
}

#[derive(Subcommand)]
enum SpendsCommand {
    /// The foreign spends (with --all, every spend read), newest first, as JSON
    List {
        #[command(flatten)]
        args: Args,
        /// Every spend read, our own batches' included
        #[arg(long)]
        all: bool,
        /// At most this many
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Record a foreign spend's outputs to known payees as paid (it must be in a block the
    /// rewards job has credited; never more than the chain paid each)
    Adopt(ResolveArgs),
    /// Record that the operator moved those coins: balances unchanged
    Acknowledge(ResolveArgs),
}

#[derive(clap::Args)]
struct ResolveArgs {
    #[command(flatten)]
    args: Args,
    /// The spend's transaction hash (see `spends list`)
    hash: String,
    /// Why: recorded with the decision
    #[arg(long)]
    reason: String,
}

#[derive(clap::Args)]
struct Args {
    /// The minerpool YAML configuration file
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(clap::Args)]
struct PayoutsArgs {
    #[command(flatten)]
    args: Args,
    /// Abandon this payout batch: spend its transaction's inputs back to the iNode wallet and,
    /// once that is in a block, return its amounts to pending (later runs carry it on)
    #[arg(long, value_name = "BATCH")]
    abandon: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    minerpool_core::logging::init();
    let cli = Cli::parse();
    let mut request = PayoutsRequest::default();
    let (job, args) = match cli.job {
        JobCommand::Spends(command) => return spends(command).await,
        JobCommand::Rewards(a) => (Job::Rewards, a),
        JobCommand::Validators(a) => (Job::Validators, a),
        JobCommand::Payouts(p) => {
            request.abandon = p.abandon;
            (Job::Payouts, p.args)
        }
        JobCommand::Decay(a) => (Job::Decay, a),
        JobCommand::Audit(a) => (Job::Audit, a),
    };
    // A CronJob pod being deleted gets SIGTERM, then SIGKILL after its grace period: the run
    // finishes the step it is in (a transaction commits whole or not at all) and begins no other.
    let stop = CancellationToken::new();
    let signal = tokio::spawn(stop_on_signal(stop.clone()));
    let result = run(job, args, &request, stop.clone()).await;
    // The signal task raised `stop` just before returning its signal's name.
    let told = if stop.is_cancelled() {
        Some(signal.await.unwrap_or("a signal"))
    } else {
        signal.abort();
        None
    };
    match result {
        Ok(summary) => {
            let mut line = summary.to_json();
            if let Some(signal) = told {
                line["signal"] = serde_json::json!(format!(
                    "{signal} arrived during the run; the run had begun every step it needed and finished them"
                ));
            }
            println!("{line}");
            if let RunOutcome::Blocked(reason) = &summary.outcome {
                eprintln!("minerpool-job {job}: blocked: {reason}");
                ExitCode::from(BLOCKED_EXIT_CODE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            let stopped = e
                .downcast_ref::<JobError>()
                .is_some_and(JobError::is_stopped);
            eprintln!("minerpool-job {job}: {e:#}");
            if stopped {
                let signal = told.unwrap_or("a stop request");
                println!(
                    "{}",
                    serde_json::json!({ "job": job.name(), "outcome": "stopped", "signal": signal, "error": format!("{e:#}") })
                );
                // As a shell reports a process ended by SIGTERM.
                ExitCode::from(143)
            } else {
                println!(
                    "{}",
                    serde_json::json!({ "job": job.name(), "outcome": "failed", "error": format!("{e:#}") })
                );
                ExitCode::FAILURE
            }
        }
    }
}

/// `minerpool-job spends …`: prints the answer as one JSON line, or the refusal on stderr
/// (exit 1).
async fn spends(command: SpendsCommand) -> ExitCode {
    use minerpool_jobs::spends::{Resolve, list, resolve};
    let result = async {
        let args = match &command {
            SpendsCommand::List { args, .. } => args,
            SpendsCommand::Adopt(r) | SpendsCommand::Acknowledge(r) => &r.args,
        };
        let (_, _, store) = open(args).await?;
        let answer = match &command {
            SpendsCommand::List { all, limit, .. } => list(&store, *all, *limit).await?,
            SpendsCommand::Adopt(r) => resolve(&store, Resolve::Adopt, &r.hash, &r.reason).await?,
            SpendsCommand::Acknowledge(r) => {
                resolve(&store, Resolve::Acknowledge, &r.hash, &r.reason).await?
            }
        };
        anyhow::Ok(answer)
    }
    .await;
    match result {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("minerpool-job spends: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises `stop` at the first SIGTERM or SIGINT, and returns which it was.
async fn stop_on_signal(stop: CancellationToken) -> &'static str {
    let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM; only Ctrl-C stops a run cleanly");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    };
    tracing::warn!(
        signal,
        "told to stop: the step under way finishes, no other begins"
    );
    stop.cancel();
    signal
}

async fn run(
    job: Job,
    args: Args,
    request: &PayoutsRequest,
    stop: CancellationToken,
) -> anyhow::Result<minerpool_jobs::Summary> {
    let (config, secrets, store) = open(&args).await?;
    let chain = ChainClient::new(&config.chain)?;
    let context = Context {
        config,
        store,
        chain,
        lock_ttl: lock_ttl()?,
        wallet_key: secrets.wallet_key.clone(),
        stop,
    };
    Ok(run_with(job, &context, request).await?)
}

/// The configuration, the secrets, and the store checked for transactions with its indexes
/// made: what every command that touches the database starts with.
async fn open(args: &Args) -> anyhow::Result<(Config, Secrets, Store)> {
    let config = Config::load(&args.config)?;
    let secrets = Secrets::from_env()?;
    let store = Store::connect(&secrets.mongodb_uri, &config.mongodb.database).await?;
    store
        .require_replica_set()
        .await
        .context("checking the MongoDB server")?;
    store.ensure_indexes().await?;
    Ok((config, secrets, store))
}

/// `MINERPOOL_JOB_LOCK_TTL_SECONDS` overrides how long a crashed run's lock blocks the next run.
fn lock_ttl() -> anyhow::Result<std::time::Duration> {
    match std::env::var("MINERPOOL_JOB_LOCK_TTL_SECONDS") {
        Ok(v) => {
            let seconds: u64 = v.parse().ok().filter(|s| *s > 0).with_context(|| {
                format!("MINERPOOL_JOB_LOCK_TTL_SECONDS={v:?} is not a positive number of seconds")
            })?;
            Ok(std::time::Duration::from_secs(seconds))
        }
        Err(_) => Ok(DEFAULT_LOCK_TTL),
    }
}
