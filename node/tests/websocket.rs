//! The legacy WebSocket protocol against the real test MongoDB server, spoken as a raw client.

mod common;

use std::time::{Duration, Instant};

use common::{Options, node, node_process_with, node_with, ping, reply, task};
use futures::SinkExt;
use minerpool_core::store::TASK_GIVE_UP_AFTER;
use minerpool_core::store::intake::groups::GROUP_BEFORE_COMMIT;
use minerpool_core::testing::refuse_pool_score;
use minerpool_node::Limits;
use minerpool_node::websocket::*;
use minerpool_tests::fixtures::*;
use minerpool_tests::wait;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn every_reply_string() {
    let n = node("ws_replies").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 12.5).await;
    n.add_validator(VALIDATOR_2, 0.99).await;
    n.store
        .collection::<bson::Document>("validatorsList")
        .insert_one(bson::doc! { "wallet_address": VALIDATOR_3 })
        .await
        .unwrap();
    n.registry_shows(Some(VALIDATOR_3), None, |p| p.validator_found)
        .await;

    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_1, "v-1")).await,
        "SUCCESS: v-1"
    );
    assert_eq!(
        n.send(&ping(VALIDATOR_1, "10.0.0.1", 5502.into())).await,
        PONG
    );
    assert_eq!(n.send("not json").await, INVALID_FORMAT);
    assert_eq!(n.send("[1, 2]").await, INVALID_FORMAT);
    assert_eq!(
        n.send(&task(POOL_B, VALIDATOR_1, "1")).await,
        POOL_NOT_REGISTERED
    );
    assert_eq!(n.send(&task(POOL_A, PAYER, "1")).await, VALIDATOR_NOT_FOUND);
    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_3, "1")).await,
        VALIDATOR_NOT_FOUND,
        "a validator without a percentage is not a validator"
    );
    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_2, "1")).await,
        NOT_ENOUGH_PERCENTAGE
    );
    assert_eq!(
        n.send(&ping(PAYER, "10.0.0.1", 1.into())).await,
        VALIDATOR_NOT_FOUND
    );
    let other = format!(r#"{{"type":"HELLO","validator_wallet":"{VALIDATOR_1}"}}"#);
    assert_eq!(n.send(&other).await, UNKNOWN_TYPE);
    assert_eq!(n.send(r#"{"type":"HELLO"}"#).await, UNKNOWN_TYPE);
    assert_eq!(
        n.send(&task(POOL_A, "not-an-address", "1")).await,
        INVALID_ADDRESS
    );
    assert_eq!(
        NOT_ENOUGH_PERCENTAGE,
        "ERROR: Validator does not have enough percentage to be a validator."
    );
    assert_eq!(POOL_NOT_REGISTERED, "ERROR: Pool not registered.");
    n.node.shutdown().await;
}

#[tokio::test]
async fn task_score_follows_the_percentage_and_caps_at_100() {
    let n = node("ws_arithmetic").await;
    let pools = [POOL_A, POOL_B, POOL_C, INODE, REWARD, PAYER, MINER];
    let cases = [
        (0.5, 1),
        (1.0, 1),
        (5.0, 1),
        (5.01, 2),
        (10.0, 2),
        (50.0, 10),
        (100.0, 20),
    ];
    let validators = [VALIDATOR_1, VALIDATOR_2, VALIDATOR_3];
    for (i, ((percentage, increment), pool)) in cases.iter().zip(pools).enumerate() {
        let validator = validators[i % 3];
        n.set_percentage(validator, *percentage).await;
        n.register_pool(pool).await;
        let reply = n.send(&task(pool, validator, &format!("arith-{i}"))).await;
        if *percentage < 1.0 {
            assert_eq!(reply, NOT_ENOUGH_PERCENTAGE, "{percentage}");
            assert_eq!(n.pool_score(pool).await, None);
            continue;
        }
        assert_eq!(reply, format!("SUCCESS: arith-{i}"));
        assert_eq!(n.pool_score(pool).await, Some(*increment), "{percentage} %");
        let v = n.validator(validator).await;
        assert_eq!(v.get_i64("score"), Ok(1));
        assert!(v.get_datetime("last_active_time").is_ok());
    }
    // 100 % adds 20 a TASK: 20, 40, … 100, then stays at 100.
    for k in 0..7 {
        n.send(&task(MINER, VALIDATOR_1, &format!("cap-{k}"))).await;
    }
    assert_eq!(n.pool_score(MINER).await, Some(100));
}

#[tokio::test]
async fn a_repeated_val_id_adds_no_score_but_succeeds() {
    let n = node("ws_replay").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 50.0).await;
    n.add_validator(VALIDATOR_2, 50.0).await;
    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_1, "same")).await,
        "SUCCESS: same"
    );
    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_1, "same")).await,
        "SUCCESS: same"
    );
    assert_eq!(n.pool_score(POOL_A).await, Some(10));
    // The same val_id from another validator is another task.
    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_2, "same")).await,
        "SUCCESS: same"
    );
    assert_eq!(n.pool_score(POOL_A).await, Some(20));
}

#[tokio::test]
async fn ping_stores_contact_and_bad_ip_or_port_is_refused() {
    let n = node("ws_ping").await;
    n.add_validator(VALIDATOR_1, 5.0).await;
    assert_eq!(
        n.send(&ping(VALIDATOR_1, "192.0.2.7", "5502".into())).await,
        PONG
    );
    let v = n.validator(VALIDATOR_1).await;
    assert_eq!(v.get_str("ip"), Ok("192.0.2.7"));
    assert_eq!(v.get_i64("port"), Ok(5502));
    assert!(v.get_datetime("ping").is_ok());
    for (ip, port) in [
        ("999.0.0.1", serde_json::json!(5502)),
        ("localhost", serde_json::json!(5502)),
        ("", serde_json::json!(5502)),
        ("127.0.0.1", serde_json::json!(5502)),
        ("::1", serde_json::json!(5502)),
        ("169.254.1.1", serde_json::json!(5502)),
        ("0.0.0.0", serde_json::json!(5502)),
        ("224.0.0.5", serde_json::json!(5502)),
    ] {
        assert_eq!(
            n.send(&ping(VALIDATOR_1, ip, port)).await,
            INVALID_IP,
            "{ip}"
        );
    }
    for port in [
        serde_json::json!(0),
        serde_json::json!(65536),
        serde_json::json!(-1),
        serde_json::json!("http"),
        serde_json::json!(null),
        serde_json::json!(5502.5),
    ] {
        assert_eq!(
            n.send(&ping(VALIDATOR_1, "192.0.2.8", port.clone())).await,
            INVALID_PORT,
            "{port}"
        );
    }
    assert_eq!(
        n.validator(VALIDATOR_1).await.get_str("ip"),
        Ok("192.0.2.7"),
        "nothing stored"
    );
}

#[tokio::test]
async fn oversized_frames_and_silent_clients_are_closed() {
    let n = node_with(
        "ws_limits",
        Options {
            limits: Limits {
                idle_timeout: Duration::from_millis(500),
                ..Options::default().limits
            },
            ..Options::default()
        },
    )
    .await;
    let big = format!(r#"{{"type":"PING","padding":"{}"}}"#, "x".repeat(5000));
    let answer = n.send(&big).await;
    assert!(
        answer.contains(MESSAGE_TOO_LARGE) || answer == "CLOSED" || answer.starts_with("ERR"),
        "{answer}"
    );
    assert!(!answer.starts_with("SUCCESS"));

    let (mut silent, _) = tokio_tungstenite::connect_async(&n.ws).await.unwrap();
    let started = std::time::Instant::now();
    let answer = reply(&mut silent).await;
    assert!(answer == "CLOSED" || answer.starts_with("ERR"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed at the idle timeout"
    );

    // Binary frames are not messages.
    let (mut ws, _) = tokio_tungstenite::connect_async(&n.ws).await.unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(reply(&mut ws).await, INVALID_FORMAT);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_the_reason() {
    let n = node_with(
        "ws_cap",
        Options {
            limits: Limits {
                max_connections: 2,
                ..Options::default().limits
            },
            ..Options::default()
        },
    )
    .await;
    let (a, _) = tokio_tungstenite::connect_async(&n.ws).await.unwrap();
    let (b, _) = tokio_tungstenite::connect_async(&n.ws).await.unwrap();
    let (mut c, _) = tokio_tungstenite::connect_async(&n.ws).await.unwrap();
    assert_eq!(reply(&mut c).await, format!("CLOSE: {MAX_CONNECTIONS}"));
    // The server frees a slot when it notices the close, some time after the client has gone.
    drop((a, b));
    wait::until(
        "a slot to be free again",
        wait::DEADLINE,
        || n.send("nope"),
        |reply| reply == INVALID_FORMAT,
    )
    .await;
}

#[tokio::test]
async fn concurrent_tasks_lose_no_update() {
    let n = node("ws_concurrent").await;
    n.register_pool(POOL_A).await;
    // 100 validators at 1 % each add 1 a TASK: 100 concurrent TASKs must give exactly 100.
    let validators: Vec<String> = (0..100).map(|i| address_from_key(0x700 + i)).collect();
    for v in &validators {
        n.add_validator(v, 1.0).await;
    }
    let mut sends = Vec::new();
    for (i, v) in validators.iter().enumerate() {
        let message = task(POOL_A, v, &format!("c{i}"));
        let ws = n.ws.clone();
        sends.push(tokio::spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
            socket.send(Message::text(message)).await.unwrap();
            reply(&mut socket).await
        }));
    }
    for (i, s) in sends.into_iter().enumerate() {
        assert_eq!(s.await.unwrap(), format!("SUCCESS: c{i}"));
    }
    assert_eq!(n.pool_score(POOL_A).await, Some(100));
}

/// A wallet that is well-formed but not a P-256 point is refused before the database, even when
/// the original left it registered or listed: TASK and PING change nothing.
#[tokio::test]
async fn off_curve_wallets_are_refused() {
    let n = node("ws_off_curve").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 50.0).await;
    for address in [OFF_CURVE, OFF_CURVE_FULL] {
        n.register_pool(address).await;
        n.add_validator(address, 50.0).await;
        assert_eq!(
            n.send(&task(address, VALIDATOR_1, "p")).await,
            INVALID_ADDRESS
        );
        assert_eq!(n.pool_score(address).await, None);
        assert_eq!(n.send(&task(POOL_A, address, "v")).await, INVALID_ADDRESS);
        assert_eq!(
            n.send(&ping(address, "10.0.0.1", 5502.into())).await,
            INVALID_ADDRESS
        );
    }
    assert_eq!(n.pool_score(POOL_A).await, None, "no TASK counted");
    n.node.shutdown().await;
}

/// Sends `message` over `copies` connections at once; the replies.
async fn send_at_once(n: &common::TestNode, message: &str, copies: usize) -> Vec<String> {
    let sends: Vec<_> = (0..copies)
        .map(|_| {
            let (ws, message) = (n.ws.clone(), message.to_owned());
            tokio::spawn(async move {
                let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
                socket.send(Message::text(message)).await.unwrap();
                reply(&mut socket).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for send in sends {
        replies.push(send.await.unwrap());
    }
    replies
}

#[tokio::test]
async fn a_task_answered_with_an_error_is_scored_once_by_its_retries() {
    let n = node("ws_task_retry").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 50.0).await;
    let refusal = refuse_pool_score(&n.store, 10).await;
    let message = task(POOL_A, VALIDATOR_1, "r-1");
    assert_eq!(n.send(&message).await, INTERNAL_ERROR);
    n.store
        .collection::<bson::Document>("minerPool")
        .drop_index(refusal)
        .await
        .unwrap();

    for reply in send_at_once(&n, &message, 6).await {
        assert_eq!(reply, "SUCCESS: r-1");
    }
    assert_eq!(n.pool_score(POOL_A).await, Some(10), "scored exactly once");
    let v = n.validator(VALIDATOR_1).await;
    assert_eq!(v.get_i64("score"), Ok(1));
    assert!(v.get_datetime("last_active_time").is_ok());
}

#[tokio::test]
async fn identical_tasks_at_the_same_moment_score_once() {
    let n = node("ws_task_twins").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 50.0).await;
    for reply in send_at_once(&n, &task(POOL_A, VALIDATOR_1, "twin"), 8).await {
        assert_eq!(reply, "SUCCESS: twin");
    }
    assert_eq!(n.pool_score(POOL_A).await, Some(10));
}

async fn send_to(ws: &str, message: &str) -> String {
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    socket.send(Message::text(message)).await.unwrap();
    reply(&mut socket).await
}

/// A lone TASK is a group of one: the node crashes with its writes sent but not committed.
#[tokio::test]
async fn a_node_crashing_before_its_group_commits_leaves_the_task_to_its_retry() {
    let n = node("ws_group_crash").await;
    let fault = GROUP_BEFORE_COMMIT;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 50.0).await;
    let database = n.store.database().name().to_owned();
    let message = task(POOL_A, VALIDATOR_1, "crash-1");
    let configure = |_: &mut minerpool_core::config::Config| {};

    let (mut crashing, ws) = node_process_with(&database, Some(fault), configure).await;
    let answer = send_to(&ws, &message).await;
    assert!(!answer.starts_with("SUCCESS"), "{answer}");
    let status = tokio::time::timeout(Duration::from_secs(20), crashing.wait())
        .await
        .expect("the node aborted")
        .unwrap();
    assert!(!status.success(), "{status}");

    // The crashed node's transaction holds the receipt and the pool until the server aborts it
    // (`transactionLifetimeLimitSeconds`, 60 s on MongoDB and on the test server). Until then the
    // validator's retries get an error after the node's give-up time; none may succeed without
    // scoring, and the first that succeeds scores.
    let crashed_at = Instant::now();
    let bound = Duration::from_secs(60) + TASK_GIVE_UP_AFTER + Duration::from_secs(10);
    let (_restarted, ws) = node_process_with(&database, None, configure).await;
    loop {
        let answer = send_to(&ws, &message).await;
        if answer == "SUCCESS: crash-1" {
            break;
        }
        assert_eq!(answer, INTERNAL_ERROR);
        assert_eq!(n.pool_score(POOL_A).await, None, "an error reply scored");
        assert!(crashed_at.elapsed() < bound, "the pool stayed blocked");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(n.pool_score(POOL_A).await, Some(10), "scored exactly once");
    assert_eq!(send_to(&ws, &message).await, "SUCCESS: crash-1");
    assert_eq!(
        n.pool_score(POOL_A).await,
        Some(10),
        "the retry was a replay"
    );
}

/// Three node processes on one database, each writing its own groups, under concurrent TASKs
/// from 30 validators (some val_ids sent to two nodes at once, one pool crossing the cap, unknown
/// pools and validators, a validator below 1 %): every reply is the one-at-a-time reply, and
/// the scores are the sequential arithmetic.
#[tokio::test]
async fn three_node_processes_give_the_sequential_scores() {
    let n = node("ws_three_nodes").await;
    let validators: Vec<String> = (0..30).map(|i| address_from_key(0x900 + i)).collect();
    for (i, v) in validators.iter().enumerate() {
        // 1 % to 29.9 %: increments 1 to 6.
        n.add_validator(v, 1.0 + i as f64 * 0.99).await;
    }
    n.add_validator(VALIDATOR_3, 0.5).await;
    for pool in [POOL_A, POOL_B, POOL_C] {
        n.register_pool(pool).await;
    }
    let database = n.store.database().name().to_owned();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        // Every test client is 127.0.0.1.
        let unlimited = |config: &mut minerpool_core::config::Config| {
            config.node.max_connections_per_client = u32::MAX;
        };
        nodes.push(node_process_with(&database, None, unlimited).await);
    }
    let urls: Vec<String> = nodes.iter().map(|(_, ws)| ws.clone()).collect();

    // (message, expected reply); every TASK is sent to a node chosen round-robin, a repeat to
    // another node at the same moment.
    let mut sends: Vec<(String, String, String)> = Vec::new();
    let mut expected: std::collections::HashMap<&str, i64> = Default::default();
    for (i, v) in validators.iter().enumerate() {
        let increment = minerpool_core::scoring::pool_score_increment(
            minerpool_core::scoring::percentage_hundredths(1.0 + i as f64 * 0.99),
        );
        for k in 0..6 {
            let pool = [POOL_A, POOL_B, POOL_C][(i + k) % 3];
            let val_id = format!("{i}-{k}");
            let message = task(pool, v, &val_id);
            let reply = format!("SUCCESS: {val_id}");
            sends.push((urls[(i + k) % 3].clone(), message.clone(), reply.clone()));
            if k == 0 {
                sends.push((urls[(i + k + 1) % 3].clone(), message, reply));
            }
            let score = expected.entry(pool).or_insert(0);
            *score = minerpool_core::scoring::pool_score_after_task(*score, increment);
        }
    }
    sends.push((
        urls[0].clone(),
        task(MINER, &validators[0], "u"),
        POOL_NOT_REGISTERED.into(),
    ));
    sends.push((
        urls[1].clone(),
        task(POOL_A, PAYER, "u"),
        VALIDATOR_NOT_FOUND.into(),
    ));
    sends.push((
        urls[2].clone(),
        task(POOL_A, VALIDATOR_3, "u"),
        NOT_ENOUGH_PERCENTAGE.into(),
    ));
    let replies =
        futures::future::join_all(sends.iter().map(|(ws, message, _)| send_to(ws, message))).await;
    for ((_, message, want), got) in sends.iter().zip(&replies) {
        assert_eq!(got, want, "{message}");
    }
    for pool in [POOL_A, POOL_B, POOL_C] {
        assert_eq!(n.pool_score(pool).await, Some(expected[pool]), "{pool}");
    }
    assert!(
        expected.values().any(|s| *s == 100),
        "a pool crossed the cap: {expected:?}"
    );
    assert_eq!(n.pool_score(MINER).await, None);
}

/// Told to stop with a drain delay (SIGTERM in a pod), the node fails `/readyz` at once so that
/// the Service drops it, but still answers TASKs and HTTP until the delay is over; then both
/// ports refuse.
#[tokio::test]
async fn a_draining_node_is_unready_but_still_serves() {
    let n = node("ws_drain").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 12.5).await;
    let readyz = format!("{}/readyz", n.http);
    let status = |url: String| async move {
        let response = reqwest::get(url).await.expect("HTTP still answers");
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status(readyz.clone()).await, (200, "ready".to_owned()));

    let ws = n.ws.clone();
    let send = |message: String| {
        let ws = ws.clone();
        async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await?;
            socket.send(Message::text(message)).await?;
            Ok::<_, tokio_tungstenite::tungstenite::Error>(reply(&mut socket).await)
        }
    };
    let delay = Duration::from_secs(2);
    let drain_started = Instant::now();
    let drained = tokio::spawn(n.node.drain(delay));
    wait::until(
        "readyz fails once draining",
        Duration::from_secs(1),
        || status(readyz.clone()),
        |seen| *seen == (503, "shutting down".to_owned()),
    )
    .await;
    assert_eq!(
        send(task(POOL_A, VALIDATOR_1, "drain-1")).await.unwrap(),
        "SUCCESS: drain-1",
        "TASKs are still served while draining"
    );
    assert!(drain_started.elapsed() < delay, "the test outran the delay");

    drained.await.unwrap();
    assert!(drain_started.elapsed() >= delay);
    assert!(
        send(task(POOL_A, VALIDATOR_1, "drain-2")).await.is_err(),
        "after the drain the WebSocket port refuses"
    );
    assert!(reqwest::get(readyz).await.is_err(), "and so does HTTP");
}

/// Opens a TCP connection from a given loopback address (Linux routes all of 127/8 to lo).
async fn connect_from(
    from: [u8; 4],
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// One TASK from a client at `from`, and `/readyz` from the same address: both must be
/// answered within a second.
async fn answered_within_a_second(n: &common::TestNode, from: [u8; 4], val_id: &str) {
    let started = Instant::now();
    let ws_address = n.ws.trim_start_matches("ws://").parse().unwrap();
    let stream = connect_from(from, ws_address).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(n.ws.clone(), stream)
        .await
        .expect("handshake");
    ws.send(Message::text(task(POOL_A, VALIDATOR_1, val_id)))
        .await
        .unwrap();
    assert_eq!(reply(&mut ws).await, format!("SUCCESS: {val_id}"));
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    let ready = http.get(format!("{}/readyz", n.http)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "TASK and /readyz took {:?}",
        started.elapsed()
    );
}

/// A flood past every limit: silent and trickling connections on both ports far past the
/// per-client cap, then from many addresses past the total caps. A client on another address
/// is answered within a second while one address floods; past the total caps new connections
/// are refused at once, never left hanging, and once the idle timeouts cut the flood the node
/// answers again within a second.
#[tokio::test]
async fn a_flood_past_every_limit_leaves_the_node_answering() {
    let limits = Limits {
        max_connections: 40,
        max_http_connections: 40,
        max_connections_per_client: 10,
        idle_timeout: Duration::from_secs(2),
        http_idle_timeout: Duration::from_secs(2),
        http_connection_lifetime: Duration::from_secs(4),
        ..Options::default().limits
    };
    let n = node_with(
        "ws_flood",
        Options {
            limits,
            ..Options::default()
        },
    )
    .await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 12.5).await;
    let ws_address: std::net::SocketAddr = n.ws.trim_start_matches("ws://").parse().unwrap();
    let http_address: std::net::SocketAddr = n.http.trim_start_matches("http://").parse().unwrap();

    // One address: 100 connections to each port, silent or trickling half a request.
    let mut flood = Vec::new();
    for i in 0..100 {
        for to in [ws_address, http_address] {
            if let Ok(mut stream) = connect_from([127, 0, 0, 1], to).await {
                if i % 2 == 0 {
                    use tokio::io::AsyncWriteExt;
                    let _ = stream
                        .write_all(b"GET /validators HTTP/1.1\r\nHost: x\r\n")
                        .await;
                }
                flood.push(stream);
            }
        }
    }
    answered_within_a_second(&n, [127, 0, 0, 2], "flood-1").await;

    // Many addresses, past the total caps: a new connection is refused at once.
    for host in 10..20u8 {
        for _ in 0..10 {
            for to in [ws_address, http_address] {
                if let Ok(stream) = connect_from([127, 0, 0, host], to).await {
                    flood.push(stream);
                }
            }
        }
    }
    let refused_at = Instant::now();
    let stream = connect_from([127, 0, 0, 3], ws_address).await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(1),
        tokio_tungstenite::client_async(n.ws.clone(), stream),
    )
    .await
    .expect("a refusal, not a hang");
    if let Ok((mut ws, _)) = refused {
        assert_eq!(reply(&mut ws).await, MAX_CONNECTIONS);
    }
    assert!(refused_at.elapsed() < Duration::from_secs(1));
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        http.get(format!("{}/readyz", n.http)).send(),
    )
    .await
    .expect("an HTTP refusal, not a hang");
    assert!(
        answer.is_err(),
        "over the HTTP cap the connection is closed"
    );

    // The idle timeouts cut the flood; the node answers again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    answered_within_a_second(&n, [127, 0, 0, 4], "flood-2").await;
    let metrics = reqwest::get(format!("{}/metrics", n.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "minerpool_node_limit{limit=\"connections_per_client\"} 10",
        "minerpool_node_limit{limit=\"http_connections\"} 40",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    let refused_http = wait::sample(&metrics, "minerpool_node_http_connections_refused_total");
    assert!(refused_http.is_some_and(|v| v > 0.0), "{refused_http:?}");
    drop(flood);
}
