//! Concurrent WebSocket clients sending TASKs as validators do (one connection, one frame, one
//! reply per TASK, each client sending its next TASK once answered), against a node on the test
//! MongoDB server. The same load runs three times in this process for each client count: with
//! groups of one and the registry cache off (one transaction and one registry read per TASK),
//! then with groups and the cache on, unsigned and then signed (SPEC §4.5; each TASK signed with
//! its validator's key, before the clock starts, as validators sign on their own machines). Printed per run: TASKs/s, p50/p99/max latency, database
//! commands per TASK (command monitoring), the node's CPU time per TASK (its own runtime
//! threads), failed TASKs, and the ratios. Then the cost of verifying one signed message alone,
//! and the resident set size of the real `minerpool-node` binary.
//!
//! Run: `scripts/with-test-servers.sh cargo bench -p minerpool-node --bench websocket`
//! (`BENCH_CLIENTS=50,500`, `BENCH_SECONDS=10`, `BENCH_POOLS=1` to change the load,
//! `BENCH_MAX_GROUP` for `node.maxGroupSize`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::{SinkExt, StreamExt};
use minerpool_core::config::{Config, Secrets};
use minerpool_core::message::{Statement, check_signature, parse, signed_frame};
use minerpool_core::signed::{new_nonce, unix_now};
use minerpool_core::store::intake::front::{Intake, IntakeOptions};
use minerpool_core::store::names;
use minerpool_core::store::{CommandCounter, Store};
use minerpool_core::testing::{counting_store, mongodb_uri};
use minerpool_core::upow::parse_private_key;
use minerpool_node::{NodeState, RunningNode, start};
use minerpool_tests::fixtures::{INODE, REWARD, address_from_key};
use minerpool_tests::free_port;
use tokio_tungstenite::tungstenite::Message;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key_number(kind: u8, i: usize) -> u64 {
    (u64::from(kind) << 32) + i as u64
}

fn address(kind: u8, i: usize) -> String {
    address_from_key(key_number(kind, i))
}

/// How the runs differ.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Groups and the registry cache; off: groups of one and a registry read per TASK.
    grouped: bool,
    /// Every TASK signed.
    signed: bool,
}

/// The validators (one per client, 5 % each: +1 a TASK) and the registered pools.
async fn seed(store: &Store, clients: usize, pools: usize) -> (Vec<String>, Vec<String>) {
    let validators: Vec<String> = (0..clients).map(|i| address(1, i)).collect();
    let pools: Vec<String> = (0..pools).map(|i| address(2, i)).collect();
    let docs: Vec<Document> = validators
        .iter()
        .map(|v| doc! { "wallet_address": v, "percentage": 5.0, "score": 0_i64 })
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

/// What the clients saw.
struct Load {
    latencies: Vec<Duration>,
    failed: u64,
    /// From the first TASK sent to the last answered (frames made before are not in it).
    elapsed: Duration,
}

/// Every client sends TASKs back to back until `seconds` have passed, signed with its
/// validator's key when `signed`. A validator signs on its own machine, so the signed frames are
/// made before the clock starts (enough for the run; past them a client signs as it goes): the
/// load measures the node, not the clients' signing on the same cores.
async fn load(
    ws: &str,
    validators: &[String],
    pools: &[String],
    seconds: Duration,
    signed: bool,
) -> Load {
    let presigned = if signed {
        (12_000 / validators.len().max(1)).max(20)
    } else {
        0
    };
    let frame = move |c: usize, k: usize, validator: &str, pools: &[String]| {
        let (pool, val_id) = (pools[(c + k) % pools.len()].clone(), format!("{c}-{k}"));
        if signed {
            let key = parse_private_key(&format!("{:x}", key_number(1, c))).expect("key");
            let task = Statement::Task { pool, val_id };
            signed_frame(&key, INODE, &task, unix_now(), &new_nonce()).to_string()
        } else {
            serde_json::json!({
                "type": "TASK", "pool_wallet": pool,
                "validator_wallet": validator, "val_id": val_id,
            })
            .to_string()
        }
    };
    let ready: Vec<Vec<String>> = validators
        .iter()
        .enumerate()
        .map(|(c, v)| (0..presigned).map(|k| frame(c, k, v, pools)).collect())
        .collect();
    let started = Instant::now();
    let deadline = started + seconds;
    let mut clients = Vec::new();
    for ((c, validator), ready) in validators.iter().enumerate().zip(ready) {
        let ws = ws.to_owned();
        let validator = validator.clone();
        let pools = pools.to_vec();
        clients.push(tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0);
            let mut k = 0;
            while Instant::now() < deadline {
                let message = match ready.get(k) {
                    Some(message) => message.clone(),
                    None => frame(c, k, &validator, &pools),
                };
                k += 1;
                let started = Instant::now();
                let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&ws).await else {
                    failed += 1;
                    continue;
                };
                let sent = socket.send(Message::text(message)).await;
                match (sent, socket.next().await) {
                    (Ok(()), Some(Ok(Message::Text(reply)))) if reply.starts_with("SUCCESS") => {
                        latencies.push(started.elapsed());
                    }
                    _ => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut all = Load {
        latencies: Vec::new(),
        failed: 0,
        elapsed: Duration::ZERO,
    };
    for client in clients {
        let (latencies, failed) = client.await.expect("client");
        all.latencies.extend(latencies);
        all.failed += failed;
    }
    all.elapsed = started.elapsed();
    all.latencies.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU time of this process's threads named `node` (the node's runtime), from /proc.
fn node_cpu() -> Duration {
    let ticks_per_second = 100; // USER_HZ on Linux
    let mut ticks = 0_u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some((name, rest)) = stat.split_once(") ") else {
                continue;
            };
            if !name.ends_with("(node") {
                continue;
            }
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
        }
    }
    Duration::from_millis(ticks * 1000 / ticks_per_second)
}

struct Run {
    tasks: u64,
    elapsed: Duration,
    load: Load,
    commands: u64,
    cpu: Duration,
    receipts: u64,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64()
    }
}

/// A node on a fresh database, in the node runtime, with `grouped` deciding both switches.
async fn node(
    clients: usize,
    pools: usize,
    grouped: bool,
) -> (Store, CommandCounter, RunningNode, Vec<String>, Vec<String>) {
    let (store, counter) = counting_store("bench_ws").await;
    let (validators, pools) = seed(&store, clients, pools).await;
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.node.max_connections = (clients * 2) as u32;
    // Every benchmark client is 127.0.0.1.
    config.node.max_connections_per_client = u32::MAX;
    config.node.max_group_size = if grouped {
        env_or("BENCH_MAX_GROUP", config.node.max_group_size)
    } else {
        1
    };
    config.node.registry_cache = grouped;
    let intake = Intake::start(store.clone(), IntakeOptions::from_config(&config.node))
        .await
        .unwrap();
    println!("    {}", intake.describe());
    let secrets = Secrets {
        mongodb_uri: mongodb_uri(),
        ..Secrets::default()
    };
    let mut state = NodeState::new(store.clone(), intake, config, secrets, None);
    state.admin_rate_limit = minerpool_node::state::AdminRateLimit::new(u32::MAX, u32::MAX);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let node = start(state, any, any).await.unwrap();
    (store, counter, node, validators, pools)
}

fn run(
    node_runtime: &tokio::runtime::Runtime,
    client_runtime: &tokio::runtime::Runtime,
    clients: usize,
    pools: usize,
    seconds: Duration,
    mode: Mode,
) -> Run {
    let (store, counter, running, validators, pools) =
        node_runtime.block_on(node(clients, pools, mode.grouped));
    let ws = format!("ws://{}", running.websocket_address);
    let (commands_before, cpu_before) = (counter.count(), node_cpu());
    let load = client_runtime.block_on(load(&ws, &validators, &pools, seconds, mode.signed));
    let elapsed = load.elapsed;
    let (commands, cpu) = (counter.count() - commands_before, node_cpu() - cpu_before);
    let receipts = node_runtime.block_on(async {
        let receipts = store
            .collection::<Document>(names::TASK_RECEIPTS)
            .count_documents(doc! {})
            .await
            .unwrap();
        running.shutdown().await;
        store.database().drop().await.unwrap();
        receipts
    });
    Run {
        tasks: load.latencies.len() as u64,
        elapsed,
        load,
        commands,
        cpu,
        receipts,
    }
}

fn report(label: &str, run: &Run) {
    let tasks = run.tasks.max(1) as f64;
    println!(
        "  {label:<26} {:>7.0} TASK/s  p50 {:>7.1?}  p99 {:>7.1?}  max {:>7.1?}  {:>5.2} commands/TASK  {:>6.0} µs CPU/TASK  {} failed  ({} TASKs, {} receipts)",
        run.per_second(),
        percentile(&run.load.latencies, 0.50),
        percentile(&run.load.latencies, 0.99),
        run.load.latencies.last().copied().unwrap_or_default(),
        run.commands as f64 / tasks,
        run.cpu.as_secs_f64() * 1e6 / tasks,
        run.load.failed,
        run.tasks,
        run.receipts,
    );
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

fn main() {
    let client_counts: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "50,500".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let seconds = Duration::from_secs(env_or("BENCH_SECONDS", 10));
    let pools = env_or("BENCH_POOLS", 1_usize);
    let node_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("node")
        .enable_all()
        .build()
        .unwrap();
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()
        .unwrap();
    for &clients in &client_counts {
        println!(
            "websocket TASK load: {clients} clients for {seconds:?}, {clients} validators at 5 %, {pools} pool(s)"
        );
        let run_in = |mode| {
            run(
                &node_runtime,
                &client_runtime,
                clients,
                pools,
                seconds,
                mode,
            )
        };
        let baseline = run_in(Mode {
            grouped: false,
            signed: false,
        });
        report("groups of one, no cache:", &baseline);
        let grouped = run_in(Mode {
            grouped: true,
            signed: false,
        });
        report("groups, cache, unsigned:", &grouped);
        let signed = run_in(Mode {
            grouped: true,
            signed: true,
        });
        report("groups, cache, signed:", &signed);
        println!(
            "  ratios: groups {:.1}x the TASKs/s of groups of one; signed {:.2}x the TASKs/s of unsigned",
            grouped.per_second() / baseline.per_second().max(f64::MIN_POSITIVE),
            signed.per_second() / grouped.per_second().max(f64::MIN_POSITIVE)
        );
    }
    verification_cost();
    let clients = client_counts.iter().copied().max().unwrap_or(50);
    client_runtime.block_on(resident_set(clients, pools, seconds));
}

/// What the node spends on a signed message before any database work: parsing the frame,
/// taking the key from the validator's address, verifying the signature, checking the window.
fn verification_cost() {
    let rounds = env_or("BENCH_VERIFY_ROUNDS", 2000_u32);
    let frames: Vec<String> = (0..64)
        .map(|i| {
            let key = parse_private_key(&format!("{:x}", key_number(1, i))).unwrap();
            let task = Statement::Task {
                pool: address(2, 0),
                val_id: i.to_string(),
            };
            signed_frame(&key, INODE, &task, unix_now(), &new_nonce()).to_string()
        })
        .collect();
    let now = unix_now();
    let check = |frame: &str| check_signature(frame, INODE, 60, now).expect("a valid signed frame");
    let started = Instant::now();
    for round in 0..rounds {
        check(&frames[round as usize % frames.len()]);
    }
    let signed = started.elapsed() / rounds;
    let started = Instant::now();
    for round in 0..rounds {
        let _ = parse(&frames[round as usize % frames.len()]);
    }
    let parse_only = started.elapsed() / rounds;
    let pieces: Vec<(String, Vec<u8>, String)> = frames
        .iter()
        .map(|text| {
            let frame: serde_json::Value = serde_json::from_str(text).unwrap();
            let request = parse(text).unwrap();
            let (ts, nonce) = (
                frame["ts"].as_i64().unwrap(),
                frame["nonce"].as_str().unwrap(),
            );
            let bytes = request.signed_bytes(INODE, ts, nonce).unwrap();
            let validator = frame["validator_wallet"].as_str().unwrap().to_owned();
            (validator, bytes, frame["sig"].as_str().unwrap().to_owned())
        })
        .collect();
    let started = Instant::now();
    for round in 0..rounds {
        let (validator, bytes, sig) = &pieces[round as usize % pieces.len()];
        minerpool_core::signed::verify(validator, bytes, sig).expect("verifies");
    }
    let verify_only = started.elapsed() / rounds;
    println!(
        "signed message checks alone ({rounds} rounds): {:.1} µs per message: parsing {:.1} µs (as for an unsigned one), the signature {:.1} µs",
        signed.as_secs_f64() * 1e6,
        parse_only.as_secs_f64() * 1e6,
        verify_only.as_secs_f64() * 1e6
    );
}

/// The real binary, for its memory, under the largest load.
async fn resident_set(clients: usize, pools: usize, seconds: Duration) {
    let (store, _) = counting_store("bench_ws_rss").await;
    let (validators, pools) = seed(&store, clients, pools).await;
    let (http_port, ws_port) = (free_port(), free_port());
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.node.http_address = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.node.websocket_address = format!("127.0.0.1:{ws_port}").parse().unwrap();
    config.node.max_connections_per_client = u32::MAX;
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
    let seen = load(&ws, &validators, &pools, seconds, false).await;
    sampler.abort();
    println!("minerpool-node (release binary) resident set size");
    println!("  idle:                 {:.1} MiB", idle as f64 / 1024.0);
    println!(
        "  under {clients}-client load: {:.1} MiB (peak; {} TASKs, {} failed)",
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        seen.latencies.len(),
        seen.failed
    );
    child.kill().await.ok();
    store.database().drop().await.unwrap();
}
