//! N concurrent WebSocket clients (default 500) sending TASKs, as validators do: one connection,
//! one frame, one reply per TASK. Prints TASKs/s, p50/p99 latency and MongoDB round trips per
//! TASK (command monitoring, with the node in this process), then the resident set size of the
//! real `minerpool-node` binary idle and under the same load.
//!
//! Run: `scripts/with-test-servers.sh cargo bench -p minerpool-node --bench websocket`
//! (`BENCH_CLIENTS`, `BENCH_TASKS_PER_CLIENT` to change the load).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::{SinkExt, StreamExt};
use minerpool_core::config::{Config, Secrets};
use minerpool_core::store::Store;
use minerpool_core::store::activity::TaskRecorder;
use minerpool_core::store::documents::names;
use minerpool_core::testing::{counting_store, mongodb_uri};
use minerpool_node::metrics::Metrics;
use minerpool_node::{Limits, NodeState, start};
use minerpool_tests::fixtures::{INODE, REWARD, address_from_key};
use minerpool_tests::free_port;
use tokio_tungstenite::tungstenite::Message;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn address(kind: u8, i: usize) -> String {
    address_from_key((u64::from(kind) << 32) + i as u64)
}

const POOLS: usize = 10;

async fn seed(store: &Store, clients: usize) -> (Vec<String>, Vec<String>) {
    let validators: Vec<String> = (0..clients).map(|i| address(1, i)).collect();
    let pools: Vec<String> = (0..POOLS).map(|i| address(2, i)).collect();
    let docs: Vec<Document> = validators
        .iter()
        .map(|v| doc! { "wallet_address": v, "percentage": 1.5, "score": 0_i64 })
        .collect();
    store
        .collection::<Document>(names::VALIDATORS)
        .insert_many(docs)
        .await
        .unwrap();
    for p in &pools {
        store.register_pool(p).await.unwrap();
    }
    (validators, pools)
}

/// Runs the load; returns every TASK's latency.
async fn load(
    ws: &str,
    validators: &[String],
    pools: &[String],
    per_client: usize,
) -> Vec<Duration> {
    let mut clients = Vec::new();
    for (c, validator) in validators.iter().enumerate() {
        let ws = ws.to_owned();
        let validator = validator.clone();
        let pools = pools.to_vec();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for k in 0..per_client {
                let message = serde_json::json!({
                    "type": "TASK", "pool_wallet": pools[(c + k) % pools.len()],
                    "validator_wallet": validator, "val_id": format!("{c}-{k}"),
                })
                .to_string();
                let started = Instant::now();
                let (mut socket, _) = tokio_tungstenite::connect_async(&ws)
                    .await
                    .expect("connect");
                socket.send(Message::text(message)).await.expect("send");
                match socket.next().await {
                    Some(Ok(Message::Text(reply))) if reply.starts_with("SUCCESS") => {}
                    other => panic!("unexpected reply: {other:?}"),
                }
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.expect("client"));
    }
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let clients = env_or("BENCH_CLIENTS", 500);
    let per_client = env_or("BENCH_TASKS_PER_CLIENT", 4);
    let tasks = clients * per_client;

    // Phase 1: the node in this process, its driver's commands counted.
    let (store, counter) = counting_store("bench_ws").await;
    let (validators, pools) = seed(&store, clients).await;
    let recorder = TaskRecorder::new(store.clone()).await.unwrap();
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.node.max_connections = (clients * 2) as u32;
    // Every benchmark client is 127.0.0.1.
    config.node.max_connections_per_client = u32::MAX;
    let state = NodeState {
        tasks: recorder.clone(),
        store: store.clone(),
        limits: Limits::from_config(&config),
        config,
        secrets: Secrets {
            mongodb_uri: mongodb_uri(),
            ..Secrets::default()
        },
        metrics: Metrics::default(),
        admin_rsa_key: None,
        draining: Default::default(),
        admin_rate_limit: minerpool_node::http::legacy::AdminRateLimit::new(u32::MAX, u32::MAX),
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let node = start(state, any, any).await.unwrap();
    let ws = format!("ws://{}", node.websocket_address);
    let before = counter.count();
    let started = Instant::now();
    let mut latencies = load(&ws, &validators, &pools, per_client).await;
    let elapsed = started.elapsed();
    let round_trips = counter.count() - before;
    latencies.sort();
    let scored: i64 = store
        .pool_scores()
        .find(doc! {})
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|p| p.unwrap().score)
        .sum();
    println!(
        "websocket TASK load: {clients} concurrent clients, {per_client} TASKs each, {POOLS} pools"
    );
    println!("  writes per TASK: {:?}", recorder.writes());
    println!("  TASKs:            {tasks} in {elapsed:.2?}");
    println!(
        "  throughput:       {:.0} TASKs/s",
        tasks as f64 / elapsed.as_secs_f64()
    );
    println!("  latency p50:      {:.1?}", percentile(&latencies, 0.50));
    println!("  latency p99:      {:.1?}", percentile(&latencies, 0.99));
    println!(
        "  round trips/TASK: {:.2}",
        round_trips as f64 / tasks as f64
    );
    println!("  pool score added: {scored} (each TASK adds 1; scores cap at 100 per pool)");
    node.shutdown().await;
    store.database().drop().await.unwrap();

    // Phase 2: the real binary, for its memory.
    let (store, _) = counting_store("bench_ws_rss").await;
    let (validators, pools) = seed(&store, clients).await;
    let (http_port, ws_port) = (free_port(), free_port());
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.node.http_address = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.node.websocket_address = format!("127.0.0.1:{ws_port}").parse().unwrap();
    let path = std::env::temp_dir().join(format!("{}.yaml", config.mongodb.database));
    std::fs::write(&path, config.to_yaml()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-node"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("MONGODB_URI", mongodb_uri())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start minerpool-node");
    let pid = child.id().unwrap();
    let ready = format!("http://127.0.0.1:{http_port}/readyz");
    for _ in 0..100 {
        if reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let ws = format!("ws://127.0.0.1:{ws_port}");
    load(&ws, &validators, &pools, per_client).await;
    sampler.abort();
    println!("minerpool-node (release binary) resident set size");
    println!("  idle:                 {:.1} MiB", idle as f64 / 1024.0);
    println!(
        "  under {clients}-client load: {:.1} MiB (peak)",
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    child.kill().await.ok();
    store.database().drop().await.unwrap();
}
