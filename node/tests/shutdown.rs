//! A node told to stop answers every message it took: TASKs in flight finish, connections the
//! kernel had queued are served, and what is still open at the shutdown timeout is closed with a
//! reason and counted. Against the real test MongoDB server and the real `minerpool-node` binary.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use common::{Options, node, node_process, node_process_as, node_with, reply, task};
use futures::{SinkExt, StreamExt, TryStreamExt};
use minerpool_core::money::Amount;
use minerpool_core::store::names;
use minerpool_node::websocket::transport::SHUTTING_DOWN;
use minerpool_tests::chain_sim::{ChainSim, Scenario, SimValidator, generate_blocks};
use minerpool_tests::fixtures::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// WebSocket clients sending TASKs back to back, one connection each, as validators do.
const WS_CLIENTS: usize = 16;
/// HTTP clients, each request on a new connection.
const HTTP_CLIENTS: usize = 2;

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    /// The node was not there to connect to: nothing was sent.
    Refused,
    Reply(String),
    /// Connected, but the connection ended without a reply.
    Cut(String),
}

async fn send_task(address: SocketAddr, message: String) -> Outcome {
    let stream =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            _ => return Outcome::Refused,
        };
    let url = format!("ws://{address}");
    let mut ws = match tokio_tungstenite::client_async(url, stream).await {
        Ok((ws, _)) => ws,
        Err(e) => return Outcome::Cut(format!("during the handshake: {e}")),
    };
    if let Err(e) = ws.send(Message::text(message)).await {
        return Outcome::Cut(format!("sending: {e}"));
    }
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => Outcome::Reply(text.to_string()),
        other => Outcome::Cut(format!("waiting for the reply: {other:?}")),
    }
}

async fn get_healthz(client: &reqwest::Client, url: &str) -> Outcome {
    match client.get(url).send().await {
        Ok(response) => match response.text().await {
            Ok(text) => Outcome::Reply(text),
            Err(e) => Outcome::Cut(format!("reading the body: {e}")),
        },
        Err(e) if e.is_connect() => Outcome::Refused,
        Err(e) => Outcome::Cut(format!("{e:?}")),
    }
}

/// Every attempt of every client: (client, what was sent, when, outcome).
type Attempts = Vec<(usize, String, Instant, Outcome)>;

#[derive(Clone, Copy, Debug)]
enum Signal {
    Term,
    Int,
}

/// Clients send continuously while the node process stops on `signal`, until it has exited and
/// refuses them: every TASK that reached the node is answered `SUCCESS`, every one answered so
/// is in the database (and no other), and HTTP requests are answered the same way.
async fn every_message_is_answered_while_the_node_stops(
    label: &str,
    signal: Signal,
    delay_seconds: u32,
) {
    let n = node(label).await;
    n.register_pool(POOL_A).await;
    // 1 %: each TASK adds 1, so the score stays far below the cap.
    n.add_validator(VALIDATOR_1, 1.0).await;
    let database = n.store.database().name().to_owned();
    let process = node_process(&database, None, |config| {
        config.node.shutdown_delay_seconds = delay_seconds;
    })
    .await;
    let succeeded = answered_while_stopping(&n, process, label, signal, delay_seconds).await;
    assert_eq!(n.pool_score(POOL_A).await, Some(succeeded.min(100) as i64));
}

/// Sends TASKs and HTTP requests to `process` until it has stopped on `signal` and refuses
/// them; checks that every connection it took was answered and that the TASKs stored are
/// exactly those answered `SUCCESS`. Returns how many succeeded.
async fn answered_while_stopping(
    n: &common::TestNode,
    mut process: common::NodeProcess,
    label: &str,
    signal: Signal,
    delay_seconds: u32,
) -> usize {
    let ws_address: SocketAddr = process.ws.trim_start_matches("ws://").parse().unwrap();
    let healthz = format!("{}/healthz", process.http);
    let exited = Arc::new(AtomicBool::new(false));

    let mut clients = Vec::new();
    for client in 0..WS_CLIENTS {
        let (exited, label) = (exited.clone(), label.to_owned());
        clients.push(tokio::spawn(async move {
            let mut attempts: Attempts = Vec::new();
            for i in 0.. {
                let val_id = format!("{label}-{client}-{i}");
                let outcome = send_task(ws_address, task(POOL_A, VALIDATOR_1, &val_id)).await;
                let refused = matches!(outcome, Outcome::Refused);
                attempts.push((client, val_id, Instant::now(), outcome));
                if refused && exited.load(Ordering::SeqCst) {
                    break;
                }
                if refused {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            attempts
        }));
    }
    for client in WS_CLIENTS..WS_CLIENTS + HTTP_CLIENTS {
        let (exited, healthz) = (exited.clone(), healthz.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut attempts: Attempts = Vec::new();
            loop {
                let outcome = get_healthz(&http, &healthz).await;
                let refused = matches!(outcome, Outcome::Refused);
                attempts.push((client, healthz.clone(), Instant::now(), outcome));
                if refused && exited.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(if refused { 20 } else { 5 })).await;
            }
            attempts
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = process.child.id().expect("the node runs").to_string();
    let flag = match signal {
        Signal::Term => "-TERM",
        Signal::Int => "-INT",
    };
    let signalled = Instant::now();
    let sent = std::process::Command::new("kill")
        .args([flag, &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {flag} {pid}");
    let status = tokio::time::timeout(Duration::from_secs(60), process.child.wait())
        .await
        .expect("the node exited")
        .unwrap();
    let exit_took = signalled.elapsed();
    exited.store(true, Ordering::SeqCst);
    assert!(status.success(), "the node exited with {status}");

    let mut attempts: Attempts = Vec::new();
    for client in clients {
        attempts.extend(
            tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .expect("every client stopped once the node refused it")
                .unwrap(),
        );
    }
    let cut: Vec<_> = attempts
        .iter()
        .filter(|(_, _, _, outcome)| matches!(outcome, Outcome::Cut(_)))
        .collect();
    let answered = |from_ws: bool| {
        attempts
            .iter()
            .filter(move |(client, _, _, outcome)| {
                (*client < WS_CLIENTS) == from_ws && matches!(outcome, Outcome::Reply(_))
            })
            .collect::<Vec<_>>()
    };
    let (ws_answered, http_answered) = (answered(true), answered(false));
    let after_signal = |answers: &[&(usize, String, Instant, Outcome)]| {
        answers
            .iter()
            .filter(|(_, _, at, _)| *at > signalled)
            .count()
    };
    eprintln!(
        "{label}: {} TASKs answered ({} after the signal), {} HTTP requests answered ({} after), {} refused, {} cut; the node exited {:.2} s after the signal",
        ws_answered.len(),
        after_signal(&ws_answered),
        http_answered.len(),
        after_signal(&http_answered),
        attempts
            .iter()
            .filter(|(_, _, _, o)| matches!(o, Outcome::Refused))
            .count(),
        cut.len(),
        exit_took.as_secs_f64(),
    );
    let examples: Vec<String> = cut
        .iter()
        .take(5)
        .map(|(_, sent, _, outcome)| match outcome {
            Outcome::Cut(why) => format!("{sent}: {why}"),
            _ => unreachable!(),
        })
        .collect();
    assert!(
        cut.is_empty(),
        "{} of {} connections ended without an answer, e.g. {examples:?}",
        cut.len(),
        attempts.len(),
    );
    assert!(ws_answered.len() > 20, "too little load to show anything");
    if delay_seconds > 0 {
        assert!(
            after_signal(&ws_answered) > 0 && after_signal(&http_answered) > 0,
            "nothing was served during the drain delay"
        );
    }

    let mut succeeded = BTreeSet::new();
    for (_, val_id, _, outcome) in &ws_answered {
        let Outcome::Reply(reply) = outcome else {
            unreachable!()
        };
        assert_eq!(reply, &format!("SUCCESS: {val_id}"), "TASK {val_id}");
        succeeded.insert(val_id.clone());
    }
    for (_, _, _, outcome) in &http_answered {
        assert!(matches!(outcome, Outcome::Reply(body) if body == "ok"));
    }
    let stored: BTreeSet<String> = n
        .store
        .collection::<Document>(names::TASK_RECEIPTS)
        .find(doc! { "validator_wallet": VALIDATOR_1 })
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|receipt| receipt.get_str("val_id").unwrap().to_owned())
        .collect();
    assert_eq!(
        stored, succeeded,
        "the TASKs in the database are exactly those answered SUCCESS"
    );
    succeeded.len()
}

/// SIGTERM, as a pod's deletion sends: the node fails readiness and serves for its delay, then
/// stops.
#[tokio::test]
async fn every_message_is_answered_through_sigterm_with_a_delay() {
    every_message_is_answered_while_the_node_stops("stop_sigterm", Signal::Term, 2).await;
}

/// SIGINT (Ctrl-C): no delay, the node stops at once, and still answers what it took.
#[tokio::test]
async fn every_message_is_answered_through_sigint() {
    every_message_is_answered_while_the_node_stops("stop_sigint", Signal::Int, 0).await;
}

/// Standalone mode stops the same way, with its jobs running every second against a chain that
/// keeps paying: every TASK answered and stored as answered, and every job run it began ended
/// (none left `running`), each finished or stopped before a step it had not begun.
#[tokio::test]
async fn standalone_answers_every_message_and_ends_every_job_run() {
    let label = "stop_standalone";
    let n = node(label).await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 1.0).await;
    let database = n.store.database().name().to_owned();
    let sim = ChainSim::start(Scenario {
        validators: vec![SimValidator {
            address: VALIDATOR_1.into(),
            stake: Amount::parse("100").unwrap(),
            votes: vec![],
        }],
        ..Scenario::default()
    })
    .await;
    generate_blocks(&sim, INODE.into(), Duration::from_millis(200), 100, 7);
    let process = node_process_as("standalone", &database, None, |config| {
        config.node.shutdown_delay_seconds = 1;
        config.chain.api_url = sim.url.clone();
        config.chain.allow_insecure_http = true;
        config.rewards.start_height = 100;
        config.rewards.blocks_per_run = 2;
        config.rewards.confirmations = 1;
        config.schedule.rewards_seconds = 1;
        config.schedule.payouts_seconds = 1;
        config.schedule.validators_seconds = 1;
        config.schedule.decay_seconds = 1;
    })
    .await;
    answered_while_stopping(&n, process, label, Signal::Term, 1).await;
    let runs: Vec<Document> = n
        .store
        .collection::<Document>(names::JOB_RUNS)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(runs.len() >= 4, "the jobs ran: {runs:?}");
    for run in &runs {
        let outcome = run.get_str("outcome").unwrap();
        assert_ne!(outcome, "running", "a job run was left running: {run}");
        if outcome == "failed" {
            let error = run.get_str("error").unwrap_or("");
            assert!(error.starts_with("stopped:"), "a job run failed: {run}");
        }
    }
}

/// Connections still open at the shutdown timeout are closed with a reason and counted: a
/// WebSocket client that never sends its message gets a close frame saying the server is
/// shutting down, an HTTP client that never finishes its request is closed, and an idle
/// keep-alive connection is closed at once without waiting for the timeout.
#[tokio::test]
async fn connections_open_at_the_timeout_are_closed_with_a_reason() {
    let mut options = Options::default();
    options.limits.shutdown_timeout = Duration::from_secs(1);
    let n = node_with("stop_timeout", options).await;
    let metrics = n.node.metrics();

    let (mut silent, _) = tokio_tungstenite::connect_async(&n.ws).await.unwrap();
    let mut half = TcpStream::connect(n.node.http_address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n")
        .await
        .unwrap();
    let mut keep_alive = TcpStream::connect(n.node.http_address).await.unwrap();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let read = keep_alive.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let stopping = tokio::spawn(n.node.shutdown());
    // The idle keep-alive connection is closed at the stop, not at the timeout.
    let closed = tokio::time::timeout(Duration::from_millis(500), keep_alive.read(&mut answer))
        .await
        .expect("the idle keep-alive connection was closed at once");
    assert_eq!(closed.unwrap(), 0);

    let report = stopping.await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!((report.cut, report.all_ended), (2, true), "{report:?}");
    assert_eq!(reply(&mut silent).await, format!("CLOSE: {SHUTTING_DOWN}"));
    assert_eq!(half.read(&mut answer).await.unwrap_or(0), 0, "closed");
    let text = metrics.encode();
    for line in [
        r#"minerpool_node_connections_cut_total{server="websocket",during="waiting for the message"} 1"#,
        r#"minerpool_node_connections_cut_total{server="http",during="request"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}
