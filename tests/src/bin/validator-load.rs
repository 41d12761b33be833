//! `validator-load`: many validators' TASKs against one or more node addresses at once, as
//! validators do when a pool is busy. Prints a one-line JSON summary and exits non-zero when a
//! TASK was not answered `SUCCESS`.
//!
//! Two ways to send:
//! - `--tasks N`: N TASKs with distinct `val_id`s, spread round-robin over the URLs. With
//!   `--retry`, a TASK that fails (refused connection, reset, error reply) is sent again to the
//!   next URL until it succeeds, as a validator retries; the pool's score must then come out as
//!   if each TASK had been sent once.
//! - `--seconds S`: TASKs for S seconds, never retried: every failure counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    name = "validator-load",
    about = "Sends validators' TASKs to minerpool nodes"
)]
struct Cli {
    /// A node's WebSocket URL (repeat for several)
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// A pool the TASKs are for (repeat for several: TASK i goes to pool i mod n)
    #[arg(long = "pool", required = true)]
    pools: Vec<String>,
    #[arg(long)]
    validator: String,
    /// Prefix of the `val_id`s (each TASK gets PREFIX-i)
    #[arg(long)]
    prefix: String,
    /// Send this many TASKs
    #[arg(long, conflicts_with = "seconds", required_unless_present = "seconds")]
    tasks: Option<u64>,
    /// Send TASKs for this many seconds instead
    #[arg(long)]
    seconds: Option<u64>,
    /// TASKs in flight at once
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Start at most this many TASKs a second (spreads --tasks over time)
    #[arg(long)]
    per_second: Option<f64>,
    /// Retry a failed TASK on the next URL (with --tasks)
    #[arg(long)]
    retry: bool,
    /// Give up retrying a TASK after this many seconds
    #[arg(long, default_value_t = 60)]
    give_up_seconds: u64,
}

struct Counters {
    next: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    turn: AtomicUsize,
    first_failure: std::sync::Mutex<Option<String>>,
    /// SUCCESS replies by URL.
    by_url: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// SUCCESS replies, and TASKs never answered SUCCESS, by pool.
    by_pool: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl Counters {
    /// One TASK for `pool`, answered SUCCESS or given up on.
    fn count_for_pool(&self, pool: &str, succeeded: bool) {
        let mut by_pool = self.by_pool.lock().unwrap();
        let (ok, failed) = by_pool.entry(pool.to_owned()).or_default();
        *if succeeded { ok } else { failed } += 1;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Arc::new(Cli::parse());
    let counters = Arc::new(Counters {
        next: AtomicU64::new(0),
        succeeded: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        turn: AtomicUsize::new(0),
        first_failure: std::sync::Mutex::new(None),
        by_url: Default::default(),
        by_pool: Default::default(),
    });
    let started = Instant::now();
    let workers = (0..cli.concurrency.max(1))
        .map(|_| tokio::spawn(worker(cli.clone(), counters.clone(), started)))
        .collect::<Vec<_>>();
    for worker in workers {
        worker.await.context("a sender panicked")?;
    }
    let succeeded = counters.succeeded.load(Ordering::SeqCst);
    let failed = counters.failed.load(Ordering::SeqCst);
    let summary = serde_json::json!({
        "tasks": succeeded + failed,
        "succeeded": succeeded,
        "failed": failed,
        "retries": counters.retries.load(Ordering::SeqCst),
        "seconds": started.elapsed().as_secs_f64(),
        "firstFailure": counters.first_failure.lock().unwrap().clone(),
        "succeededByUrl": counters.by_url.lock().unwrap().clone(),
        "byPool": counters
            .by_pool
            .lock()
            .unwrap()
            .iter()
            .map(|(pool, (succeeded, failed))| {
                (pool.clone(), serde_json::json!({"succeeded": succeeded, "failed": failed}))
            })
            .collect::<serde_json::Map<_, _>>(),
    });
    println!("{summary}");
    if failed > 0 {
        bail!("{failed} TASKs were not answered SUCCESS");
    }
    Ok(())
}

async fn worker(cli: Arc<Cli>, counters: Arc<Counters>, started: Instant) {
    loop {
        if let Some(seconds) = cli.seconds
            && started.elapsed() >= Duration::from_secs(seconds)
        {
            return;
        }
        let i = counters.next.fetch_add(1, Ordering::SeqCst);
        if cli.tasks.is_some_and(|n| i >= n) {
            return;
        }
        if let Some(rate) = cli.per_second.filter(|r| *r > 0.0) {
            tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let pool = &cli.pools[(i % cli.pools.len() as u64) as usize];
        let message = serde_json::json!({
            "type": "TASK", "pool_wallet": pool, "validator_wallet": cli.validator,
            "val_id": format!("{}-{i}", cli.prefix), "ip": "203.0.113.7", "port": 5502,
        })
        .to_string();
        let give_up = Instant::now() + Duration::from_secs(cli.give_up_seconds);
        loop {
            let url = &cli.urls[counters.turn.fetch_add(1, Ordering::SeqCst) % cli.urls.len()];
            match send(url, &message).await {
                Ok(reply) if reply.starts_with("SUCCESS") => {
                    counters.succeeded.fetch_add(1, Ordering::SeqCst);
                    counters.count_for_pool(pool, true);
                    *counters
                        .by_url
                        .lock()
                        .unwrap()
                        .entry(url.clone())
                        .or_default() += 1;
                    break;
                }
                outcome => {
                    let why = match outcome {
                        Ok(reply) => format!("{url}: {reply}"),
                        Err(e) => format!("{url}: {e:#}"),
                    };
                    if cli.retry && cli.tasks.is_some() && Instant::now() < give_up {
                        counters.retries.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    counters.failed.fetch_add(1, Ordering::SeqCst);
                    counters.count_for_pool(pool, false);
                    counters.first_failure.lock().unwrap().get_or_insert(why);
                    break;
                }
            }
        }
    }
}

async fn send(url: &str, message: &str) -> anyhow::Result<String> {
    let exchange = async {
        // A pod that is gone does not refuse: its address just never answers. A validator gives
        // up on it quickly and tries elsewhere.
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .context("no connection within 2 s")?
        .context("connecting")?;
        ws.send(Message::text(message)).await.context("sending")?;
        match ws.next().await {
            Some(Ok(Message::Text(text))) => Ok(text.to_string()),
            Some(Ok(Message::Close(Some(frame)))) => Ok(frame.reason.to_string()),
            Some(Ok(other)) => bail!("unexpected frame {other:?}"),
            Some(Err(e)) => Err(e).context("reading the reply"),
            None => bail!("closed without a reply"),
        }
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .context("no reply within 15 s")?
}
