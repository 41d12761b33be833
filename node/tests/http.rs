//! The HTTP API against the real test MongoDB server.

mod common;

use bson::{DateTime, doc};
use common::{ADMIN_TOKEN, Options, json_of, node, node_with, task, text_of};
use minerpool_core::store::Store;
use minerpool_core::store::names;
use minerpool_tests::fixtures::*;
use minerpool_tests::wait;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn status_of(url: impl reqwest::IntoUrl) -> u16 {
    http().get(url).send().await.unwrap().status().as_u16()
}

/// Decodes `/validators` exactly as the original pool client does, in Python: `json.loads` of
/// every value, `datetime.fromisoformat(ping)` compared with `datetime.utcnow()`, and keeps the
/// validators with percentage ≥ 1 that pinged within 4 h. Prints the kept addresses.
const POOL_CLIENT: &str = r#"
import json, sys
from datetime import datetime, timedelta
body = json.loads(sys.stdin.read())
kept = []
for address, raw in body.items():
    v = json.loads(raw)
    if v["ping"] == "0":
        continue
    ping = datetime.fromisoformat(v["ping"])
    if v["percentage"] >= 1 and datetime.utcnow() - ping < timedelta(hours=4):
        kept.append("%s ws://%s:%d" % (address, v["ip"], v["port"]))
print("\n".join(sorted(kept)))
"#;

#[tokio::test]
async fn legacy_validators_are_read_the_way_the_original_pool_client_reads_them() {
    let n = node("http_validators").await;
    let body: Value = json_of(format!("{}/validators", n.http)).await;
    assert_eq!(
        body,
        json!({}),
        "no validators: an empty object, not an error"
    );

    let raw = n.store.collection::<bson::Document>(names::VALIDATORS);
    raw.insert_many([
        doc! { "wallet_address": VALIDATOR_1, "percentage": 12.5, "score": 1_i64,
        "ip": "192.0.2.1", "port": 5502_i64, "ping": DateTime::now(),
        "lastFetch": DateTime::now(), "totalStake": 10.0, "vote": 2.0 },
        // As the Python iNode left it: strings for port and times.
        doc! { "wallet_address": VALIDATOR_2, "percentage": 3.0, "score": 0,
        "ip": "192.0.2.2", "port": "5503", "ping": "0", "last_active_time": "0" },
        doc! { "wallet_address": VALIDATOR_3, "percentage": 0.5, "score": 0,
        "ip": "192.0.2.3", "port": 5504_i64, "ping": DateTime::now() },
    ])
    .await
    .unwrap();
    let text = http()
        .get(format!("{}/validators", n.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let v1: Value =
        serde_json::from_str(body[VALIDATOR_1].as_str().expect("a JSON string")).unwrap();
    assert!(
        v1.get("_id").is_none()
            && v1.get("lastFetch").is_none()
            && v1.get("wallet_address").is_none()
    );
    assert_eq!(v1["port"], 5502);
    assert_eq!(v1["percentage"], 12.5);
    let ping = v1["ping"].as_str().unwrap();
    assert_eq!(ping.len(), 26, "naive ISO-8601 with microseconds: {ping}");
    assert!(!ping.ends_with('Z') && !ping.contains('+'), "{ping}");
    let v2: Value = serde_json::from_str(body[VALIDATOR_2].as_str().unwrap()).unwrap();
    assert_eq!(v2["ping"], "0");
    assert_eq!(v2["port"], 5503, "string ports are served as numbers");

    let mut python = std::process::Command::new("python3")
        .args(["-c", POOL_CLIENT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the original client's decoding");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{VALIDATOR_1} ws://192.0.2.1:5502")
    );
}

/// A node whose legacy admin endpoint takes `key`.
async fn node_with_admin_key(label: &str, key: RsaPrivateKey) -> common::TestNode {
    node_with(
        label,
        Options {
            admin_rsa_key: Some(key),
            ..Options::default()
        },
    )
    .await
}

fn admin_key() -> RsaPrivateKey {
    let mut rng = rand::thread_rng();
    RsaPrivateKey::new(&mut rng, 2048).expect("generate an RSA key")
}

fn encrypt(key: &RsaPublicKey, text: &str) -> Vec<u8> {
    key.encrypt(
        &mut rand::thread_rng(),
        Oaep::new::<Sha256>(),
        text.as_bytes(),
    )
    .unwrap()
}

async fn modify(url: &str, body: Vec<u8>) -> (u16, Value) {
    let response = http()
        .post(format!("{url}/modify-pool-list/"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn modify_pool_list_adds_removes_and_refuses_replays_and_garbage() {
    let key = admin_key();
    let public = RsaPublicKey::from(&key);
    let n = node_with_admin_key("http_modify", key).await;
    let add = encrypt(&public, &format!("add:{POOL_A}"));
    let (status, body) = modify(&n.http, add.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert_eq!(body["message"], "Pool added successfully");
    assert!(body["pool_id"].is_string());

    let (status, body) = modify(&n.http, encrypt(&public, &format!("add:{POOL_A}"))).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "error", "message": "Pool address already exists"})
        )
    );

    let (status, body) = modify(&n.http, add).await;
    assert_eq!(status, 400, "the same ciphertext again is a replay: {body}");

    let (status, body) = modify(&n.http, encrypt(&public, &format!("remove:{POOL_A}"))).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "Pool removed successfully"})
        )
    );
    let (status, body) = modify(&n.http, encrypt(&public, &format!("remove:{POOL_B}"))).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "error", "message": "Pool address not found"})
        )
    );

    for garbage in [
        vec![],
        b"add:plain-text".to_vec(),
        vec![0u8; 256],
        vec![0xff; 10_000],
        encrypt(&public, "drop:everything"),
        encrypt(&public, "add:not-an-address"),
        encrypt(&public, "no colon"),
    ] {
        let (status, _) = modify(&n.http, garbage).await;
        assert_eq!(status, 400);
    }
    let other_key = RsaPublicKey::from(&admin_key());
    let (status, _) = modify(&n.http, encrypt(&other_key, &format!("add:{POOL_C}"))).await;
    assert_eq!(status, 400, "encrypted for another key");
    assert!(n.store.pool_overview(POOL_C).await.unwrap().is_none());
}

/// A pool address that is well-formed but not a P-256 point can never be paid: both APIs refuse
/// to register it, each in its own reply shape; one the original stored can still be removed.
#[tokio::test]
async fn off_curve_pool_addresses_are_refused_by_both_apis() {
    let key = admin_key();
    let public = RsaPublicKey::from(&key);
    let n = node_with_admin_key("http_off_curve", key).await;
    let url = format!("{}/api/v1/pools", n.http);
    for address in [OFF_CURVE, OFF_CURVE_FULL] {
        let r = http()
            .post(&url)
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "address": address }))
            .send()
            .await
            .unwrap();
        // Well-formed, so not a bad request: a registration that no payment could serve.
        assert_eq!(r.status().as_u16(), 422, "{address}");
        let error: Value = r.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains("not a P-256 point"), "{message}");
        assert!(
            message.contains(address),
            "the reply names the address: {message}"
        );

        let (status, body) = modify(&n.http, encrypt(&public, &format!("add:{address}"))).await;
        assert_eq!(
            (status, body),
            (
                400,
                json!({"status": "error", "message": "Invalid command"})
            ),
            "the legacy client's reply for an address it may not add"
        );
        assert!(n.store.pool_overview(address).await.unwrap().is_none());
    }

    // Left by the original iNode: still reachable, and removable through either API.
    n.register_pool(OFF_CURVE).await;
    let (status, body) = modify(&n.http, encrypt(&public, &format!("remove:{OFF_CURVE}"))).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "Pool removed successfully"})
        )
    );
    n.register_pool(OFF_CURVE_FULL).await;
    let one = format!("{url}/{OFF_CURVE_FULL}");
    assert_eq!(status_of(&one).await, 200);
    let removed = http()
        .delete(&one)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 204);
}

/// No answer tells one refused body from another: a ciphertext at or above the modulus (which a
/// binary search would use to find the modulus), one below it with a bad padding, one for
/// another key and a bad command all get the same status and the same bytes.
#[tokio::test]
async fn every_refused_admin_body_gets_the_same_answer() {
    use rsa::traits::PublicKeyParts;
    let key = admin_key();
    let public = RsaPublicKey::from(&key);
    let n = key.n().clone();
    let size = key.size();
    let node = node_with_admin_key("http_modify_same", key).await;
    let bodies = [
        (&n + rsa::BigUint::from(1u32)).to_bytes_be(),
        vec![0xff; size],
        (&n - rsa::BigUint::from(1u32)).to_bytes_be(),
        encrypt(&RsaPublicKey::from(&admin_key()), "add:x"),
        encrypt(&public, "drop:everything"),
        encrypt(&public, "add:not-an-address"),
        vec![7u8; size - 1],
        vec![],
    ];
    for body in bodies {
        let response = http()
            .post(format!("{}/modify-pool-list/", node.http))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{} bytes", body.len());
        assert_eq!(
            response.bytes().await.unwrap(),
            r#"{"status":"error","message":"Invalid command"}"#.as_bytes(),
            "{} bytes",
            body.len()
        );
    }
}

/// Each admin request costs a private-key operation: past the limit per client address, and
/// past the limit for all clients, the answer is 429 and no decryption runs.
#[tokio::test]
async fn admin_requests_are_limited_per_client_and_in_all() {
    let key = admin_key();
    let public = RsaPublicKey::from(&key);
    for (limits, allowed) in [((2, 100), 2), ((100, 3), 3)] {
        let n = node_with(
            "http_modify_limit",
            Options {
                admin_rsa_key: Some(key.clone()),
                admin_requests_per_minute: limits,
                ..Options::default()
            },
        )
        .await;
        for i in 0..allowed {
            let (status, _) = modify(&n.http, encrypt(&public, "drop:x")).await;
            assert_eq!(status, 400, "request {i} within {limits:?}");
        }
        let (status, body) = modify(&n.http, encrypt(&public, &format!("add:{POOL_A}"))).await;
        assert_eq!(status, 429, "{limits:?}: {body}");
        assert!(n.store.pool_overview(POOL_A).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn modify_pool_list_is_off_without_a_key() {
    let n = node("http_modify_off").await;
    let (status, _) = modify(&n.http, vec![1, 2, 3]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn admin_writes_need_the_token() {
    let n = node("http_admin").await;
    let url = format!("{}/api/v1/pools", n.http);
    let body = json!({ "address": POOL_A });
    let no_token = http().post(&url).json(&body).send().await.unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    let wrong = http()
        .post(&url)
        .bearer_auth("guess")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = http()
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 201);
    let again = http()
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    for bad in [
        json!({ "address": "nope" }),
        json!({ "adress": POOL_B }),
        json!([1]),
    ] {
        let r = http()
            .post(&url)
            .bearer_auth(ADMIN_TOKEN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let error: Value = r.json().await.unwrap();
        assert!(error["error"].is_string());
    }
    let listed: Value = json_of(url.as_str()).await;
    assert_eq!(listed["pools"][0]["address"], POOL_A);
    assert_eq!(listed["pools"][0]["registered"], true);

    let one = format!("{url}/{POOL_A}");
    assert_eq!(
        http().delete(&one).send().await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        http()
            .delete(&one)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    assert_eq!(
        http()
            .delete(&one)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn api_amounts_are_decimal_strings_and_stats_agree() {
    let n = node("http_amounts").await;
    n.store
        .balances()
        .insert_one(minerpool_core::store::ledger::Balance {
            address: POOL_A.into(),
            pending: 1_250_000_000,
            paid: 1,
            updated_at: None,
        })
        .await
        .unwrap();
    let balance: Value = json_of(format!("{}/api/v1/balances/{POOL_A}", n.http)).await;
    assert_eq!(
        balance,
        json!({ "address": POOL_A, "pending": "12.50000000", "paid": "0.00000001" })
    );
    let unknown: Value = json_of(format!("{}/api/v1/balances/{POOL_B}", n.http)).await;
    assert_eq!(unknown["pending"], "0.00000000");
    let bad = http()
        .get(format!("{}/api/v1/balances/x'%20OR%201", n.http))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    // The totals are refreshed by the jobs (here by hand), not summed by the public read.
    let stats: Value = json_of(format!("{}/api/v1/stats", n.http)).await;
    assert_eq!(stats["pending"], "0.00000000");
    assert_eq!(stats["asOf"], Value::Null);
    n.store.refresh_totals().await.unwrap();
    let stats: Value = json_of(format!("{}/api/v1/stats", n.http)).await;
    assert_eq!(stats["pending"], "12.50000000");
    assert_eq!(stats["paid"], "0.00000001");
    assert!(stats["asOf"].is_string());
    let openapi: Value = json_of(format!("{}/api/v1/openapi.json", n.http)).await;
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/balances/{address}"]["get"].is_object());
}

/// With `node.metricsAddress`, `/metrics` is served there and nowhere else, so that a network
/// policy can open it to the scrapers alone; the probes stay on the HTTP port.
#[tokio::test]
async fn metrics_on_a_port_of_their_own_leave_the_http_port() {
    let n = node_with(
        "http_metrics_port",
        Options {
            metrics_port: true,
            ..Options::default()
        },
    )
    .await;
    let metrics_address = n.node.metrics_address.expect("a metrics port");
    assert_ne!(metrics_address.port(), 0);
    assert_eq!(status_of(format!("{}/healthz", n.http)).await, 200);
    assert_eq!(status_of(format!("{}/metrics", n.http)).await, 404);
    let metrics = format!("http://{metrics_address}/metrics");
    wait::metric(
        &metrics,
        "minerpool_node_http_requests_total{route=\"/healthz\",status=\"200\"}",
        |n| n == 1.0,
    )
    .await;
    assert_eq!(
        status_of(format!("http://{metrics_address}/healthz")).await,
        404
    );
    // Without it, the HTTP port serves them (the standalone mode and the demo).
    let plain = node("http_metrics_default").await;
    assert!(plain.node.metrics_address.is_none());
    assert_eq!(status_of(format!("{}/metrics", plain.http)).await, 200);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let n = node("http_ops").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 10.0).await;
    assert_eq!(
        n.send(&task(POOL_A, VALIDATOR_1, "m1")).await,
        "SUCCESS: m1"
    );
    assert_eq!(status_of(format!("{}/healthz", n.http)).await, 200);
    assert_eq!(status_of(format!("{}/readyz", n.http)).await, 200);
    // Counted around the reply, not necessarily before the client sees it: wait for the counts.
    let metrics = format!("{}/metrics", n.http);
    wait::metric(
        &metrics,
        "minerpool_node_websocket_messages_total{kind=\"TASK\",protocol=\"unsigned\",outcome=\"success\"}",
        |n| n == 1.0,
    )
    .await;
    wait::metric(
        &metrics,
        "minerpool_node_http_requests_total{route=\"/healthz\",status=\"200\"}",
        |n| n == 1.0,
    )
    .await;
    wait::metric(&metrics, "minerpool_node_task_groups_total", |n| n == 1.0).await;
    wait::metric(&metrics, "minerpool_node_task_group_messages_total", |n| {
        n == 1.0
    })
    .await;
    wait::metric(&metrics, "minerpool_node_task_groups_failed_total", |n| {
        n == 0.0
    })
    .await;
    wait::metric(&metrics, "minerpool_node_registry_loads_total", |n| {
        n >= 1.0
    })
    .await;

    // A node whose database is down is alive but not ready.
    let down = Store::connect(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300",
        "down",
    )
    .await
    .unwrap();
    let n = node_with(
        "http_down",
        Options {
            store: Some(down),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(status_of(format!("{}/healthz", n.http)).await, 200);
    let ready = http()
        .get(format!("{}/readyz", n.http))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(
        ready.text().await.unwrap(),
        "database unavailable",
        "the driver's message (server addresses, timeouts) stays in the log"
    );
}

/// A failed run's stored error names chain URLs, query strings and response bodies: the public
/// sees that it failed, an admin sees why.
#[tokio::test]
async fn job_run_errors_are_shown_only_to_admins() {
    let n = node("http_run_errors").await;
    let detail = "http://10.1.2.3:3006/get_blocks_details?offset=5&limit=10: HTTP 500: \"{\\\"secret\\\": 1}\"";
    n.store
        .collection::<bson::Document>("jobRuns")
        .insert_one(doc! {
            "_id": "failed-run", "job": "rewards", "started_at": DateTime::now(),
            "ended_at": DateTime::now(), "outcome": "failed", "error": detail,
        })
        .await
        .unwrap();
    let runs = format!("{}/api/v1/job-runs?job=rewards", n.http);
    let public = json_of(&runs).await;
    let public_error = public["jobRuns"][0]["error"].as_str().unwrap().to_owned();
    assert_eq!(public["jobRuns"][0]["outcome"], "failed");
    for secret in ["10.1.2.3", "get_blocks_details", "offset", "secret", "500"] {
        assert!(
            !public_error.contains(secret),
            "{public_error:?} shows {secret:?}"
        );
    }
    let error_seen_with = |token: &'static str| {
        let runs = runs.clone();
        async move {
            let body: Value = http()
                .get(&runs)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["jobRuns"][0]["error"].clone()
        }
    };
    assert_eq!(
        error_seen_with("not-the-token").await,
        public_error.as_str()
    );
    assert_eq!(error_seen_with(ADMIN_TOKEN).await, detail);

    // A blocked run says why to everyone: its reason names amounts and what would unblock it.
    let reason =
        "payouts.fee 100.00000000 is not covered by the reward address's pending 1.90080000";
    n.store
        .collection::<bson::Document>("jobRuns")
        .insert_one(doc! {
            "_id": "blocked-run", "job": "payouts", "started_at": DateTime::now(),
            "ended_at": DateTime::now(), "outcome": "blocked", "reason": reason,
            "rate_limited_seconds": 31.5, "summary": { "details": { "due": "3.00000000" } },
        })
        .await
        .unwrap();
    let blocked = json_of(format!("{}/api/v1/job-runs?job=payouts", n.http)).await;
    let run = &blocked["jobRuns"][0];
    assert_eq!(run["outcome"], "blocked");
    assert_eq!(run["reason"], reason);
    assert_eq!(run["rateLimitedSeconds"], 31.5);
    assert_eq!(run["error"], Value::Null);
}

#[tokio::test]
async fn metrics_show_payouts_waiting_for_a_block_and_balances_held_aside() {
    let n = node("http_payouts_metrics").await;
    let metrics = format!("{}/metrics", n.http);
    wait::metric(&metrics, "minerpool_node_payouts_batches_in_flight", |v| {
        v == 0.0
    })
    .await;
    let signed_at = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 120_000);
    n.store
        .collection::<bson::Document>("payoutBatches")
        .insert_one(bson::doc! {
            "_id": "b1", "state": "submitted", "recipients": [], "total": 0_i64,
            "created_at": signed_at, "updated_at": signed_at, "signed_at": signed_at,
        })
        .await
        .unwrap();
    n.store
        .collection::<bson::Document>("jobRuns")
        .insert_one(bson::doc! {
            "_id": "r1", "job": "payouts", "started_at": bson::DateTime::now(), "outcome": "succeeded",
            "summary": { "details": { "held": [{ "address": "x", "units": 1_i64, "reason": "off curve" }] } },
        })
        .await
        .unwrap();
    let page = text_of(&metrics).await;
    let value =
        |series: &str| wait::sample(&page, series).unwrap_or_else(|| panic!("{series} in {page}"));
    assert_eq!(value("minerpool_node_payouts_batches_in_flight"), 1.0);
    assert!(value("minerpool_node_payouts_oldest_unconfirmed_seconds") >= 120.0);
    assert_eq!(value("minerpool_node_payouts_held_balances"), 1.0);
}

/// The money totals and each job's newest runs, as `/metrics` shows them: the same figures as
/// `/api/v1/stats`, failures counted since the newest success, a running run counted by its start.
#[tokio::test]
async fn metrics_show_money_and_job_health() {
    let n = node("http_job_metrics").await;
    let balances = n.store.collection::<bson::Document>("balances");
    // More units than a double holds exactly: the figures must not pass through one.
    let big = 9_007_199_254_740_993_i64;
    for (address, pending, paid) in [("a", big - 3, 5_i64), ("b", 3, 0)] {
        balances
            .insert_one(bson::doc! { "address": address, "pending": pending, "paid": paid })
            .await
            .unwrap();
    }
    // Money out of pending and not yet paid (batches awaiting a block, with their fees), and
    // fees the chain took, count as credited; refunded and dry-run batches do not.
    for (id, state, total, fee) in [
        ("in-flight", "submitted", 7_i64, 2_i64),
        ("abandoning", "abandoning", 10, 0),
        ("confirmed", "confirmed", 100, 3),
        ("refunded", "failed", 50, 1),
        ("dry-run", "simulated", 9, 0),
    ] {
        n.store
            .collection::<bson::Document>("payoutBatches")
            .insert_one(bson::doc! { "_id": id, "state": state, "total": total, "fee": fee })
            .await
            .unwrap();
    }
    // The chain height the rewards job records stays through a refresh of the totals.
    n.store.record_chain_height(20_123).await.unwrap();
    n.store.refresh_totals().await.unwrap();
    let ms = |seconds: i64| bson::DateTime::from_millis(seconds * 1000);
    let runs = n.store.collection::<bson::Document>("jobRuns");
    for (id, job, outcome, started, ended) in [
        ("r1", "rewards", "succeeded", 100, Some(110)),
        ("r2", "rewards", "failed", 200, Some(207)),
        ("r3", "rewards", "failed", 300, Some(302)),
        ("r4", "rewards", "running", 400, None),
        ("a1", "audit", "failed", 500, Some(530)),
        ("p1", "payouts", "succeeded", 600, Some(601)),
        ("p2", "payouts", "blocked", 700, Some(740)),
    ] {
        let mut run =
            bson::doc! { "_id": id, "job": job, "outcome": outcome, "started_at": ms(started) };
        if let Some(ended) = ended {
            run.insert("ended_at", ms(ended));
        }
        if outcome == "blocked" {
            // As minerpool-job records a blocked run that waited on rate limits.
            run.insert("reason", "payouts.fee 100.00000000 is not covered …");
            run.insert("rate_limited_seconds", 31.5);
        }
        runs.insert_one(run).await.unwrap();
    }
    let page = text_of(format!("{}/metrics", n.http)).await;
    let value =
        |series: &str| wait::sample(&page, series).unwrap_or_else(|| panic!("{series} in {page}"));
    let exact = |series: &str| {
        page.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<i64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{series} as an integer in {page}"))
    };
    assert_eq!(exact("minerpool_node_money_units{kind=\"pending\"}"), big);
    assert_eq!(exact("minerpool_node_money_units{kind=\"paid\"}"), 5);
    assert_eq!(exact("minerpool_node_money_units{kind=\"in_flight\"}"), 19);
    assert_eq!(exact("minerpool_node_money_units{kind=\"fees_spent\"}"), 3);
    assert_eq!(
        exact("minerpool_node_money_units{kind=\"credited\"}"),
        big + 5 + 19 + 3
    );
    let stats: serde_json::Value = reqwest::get(format!("{}/api/v1/stats", n.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["paid"], "0.00000005", "{stats}");
    assert_eq!(stats["inFlight"], "0.00000019", "{stats}");
    assert_eq!(stats["feesSpent"], "0.00000003", "{stats}");
    assert_eq!(stats["chainHeight"], 20_123, "{stats}");
    assert_eq!(exact("minerpool_node_chain_height_seen"), 20_123);
    let rewards = |name: &str| {
        value(&format!(
            "minerpool_node_{name}{{minerpool_job=\"rewards\"}}"
        ))
    };
    assert_eq!(rewards("job_last_run_start_seconds"), 400.0);
    assert_eq!(rewards("job_last_run_failed"), 1.0);
    assert_eq!(rewards("job_consecutive_failures"), 2.0);
    assert_eq!(rewards("job_last_run_duration_seconds"), 2.0);
    assert_eq!(rewards("job_last_success_seconds"), 110.0);
    assert_eq!(
        value("minerpool_node_job_last_run_failed{minerpool_job=\"audit\"}"),
        1.0
    );
    // A blocked run is its own outcome: not a failure, not a success.
    assert!(
        page.lines()
            .any(|l| l == "minerpool_node_job_last_run_blocked{minerpool_job=\"payouts\"} 1"),
        "{page}"
    );
    assert!(
        page.lines().any(|l| l
            == "minerpool_node_job_last_run_rate_limited_seconds{minerpool_job=\"payouts\"} 31.5"),
        "{page}"
    );
    assert_eq!(rewards("job_last_run_blocked"), 0.0);
    assert_eq!(
        value("minerpool_node_job_last_run_failed{minerpool_job=\"payouts\"}"),
        0.0
    );
    assert_eq!(
        value("minerpool_node_job_consecutive_failures{minerpool_job=\"payouts\"}"),
        0.0
    );
    assert_eq!(
        value("minerpool_node_job_last_success_seconds{minerpool_job=\"payouts\"}"),
        601.0
    );
    assert!(
        !page.contains("minerpool_job=\"decay\""),
        "a job that never ran shows nothing: {page}"
    );
}

/// The dashboard on an empty database says there is nothing yet; an unknown or malformed
/// address is a friendly 404; every page and asset is served by the node itself.
#[tokio::test]
async fn dashboard_pages_say_when_there_is_nothing_and_need_nothing_from_elsewhere() {
    let n = node("http_pages").await;
    let get = |path: &str| {
        let url = format!("{}{path}", n.http);
        async move {
            let response = reqwest::get(&url).await.unwrap();
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, kind, response.text().await.unwrap())
        }
    };
    for (path, empty) in [
        ("/", "No income in the last 48 hours."),
        ("/", "id=\"behind\">not known yet<"),
        ("/pools", "No pool is registered or scored yet."),
        ("/validator-list", "No validator is known yet."),
        ("/distributions", "No distribution yet"),
        ("/payouts", "No payout batch yet"),
    ] {
        let (status, kind, html) = get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(html.contains(empty), "{path}: {html}");
        assert!(
            html.contains("href=\"/pools\""),
            "{path} links the other pages"
        );
        for external in ["http://", "https://", "//cdn", "src=\"//", "href=\"//"] {
            assert!(!html.contains(external), "{path} names {external}: {html}");
        }
    }
    for path in [
        format!("/address/{POOL_A}"),
        "/address/not-an-address".into(),
        format!("/pool/{POOL_A}"),
        format!("/validator/{VALIDATOR_1}"),
        "/pool/%3Cb%3E".into(),
    ] {
        let (status, kind, html) = get(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(html.contains("has no record of"), "{path}: {html}");
    }
    for (path, kind) in [
        ("/assets/dashboard.css", "text/css"),
        ("/assets/dashboard.js", "text/javascript"),
    ] {
        let (status, served, body) = get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(served.starts_with(kind), "{path}: {served}");
        assert!(!body.contains("http"), "{path} reaches elsewhere: {body}");
    }
    // A registered pool has a page, and markup in stored data is shown, not run.
    n.register_pool(POOL_A).await;
    let (status, _, html) = get(&format!("/address/{POOL_A}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("id=\"address\">{POOL_A}<")),
        "{html}"
    );
    assert!(html.contains(&format!("href=\"/pool/{POOL_A}\"")), "{html}");
    assert!(html.contains("No credit line."), "{html}");
    let (status, _, html) = get(&format!("/pool/{POOL_A}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("No score recorded yet"), "{html}");
    assert!(html.contains("Nothing credited in this time."), "{html}");
    // A validator never credited has its page, and its address page says what it is.
    n.add_validator(VALIDATOR_1, 10.0).await;
    let (status, _, html) = get(&format!("/validator/{VALIDATOR_1}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"percentage\">10.00 %<"), "{html}");
    assert!(html.contains("id=\"online\">no<"), "{html}");
    let (status, _, html) = get(&format!("/address/{VALIDATOR_1}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!("href=\"/validator/{VALIDATOR_1}\"")),
        "{html}"
    );
    n.store
        .collection::<bson::Document>("validatorsList")
        .insert_one(bson::doc! { "wallet_address": "<script>alert(1)</script>", "percentage": 5.0 })
        .await
        .unwrap();
    let (_, _, listed) = get("/validator-list").await;
    assert!(
        listed.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{listed}"
    );
    assert!(!listed.contains("<script>alert"), "{listed}");
    // A failed run stands out.
    n.store
        .collection::<bson::Document>("jobRuns")
        .insert_one(bson::doc! {
            "_id": "r1", "job": "rewards", "outcome": "failed", "started_at": bson::DateTime::now(),
        })
        .await
        .unwrap();
    let (_, _, overview) = get("/").await;
    assert!(
        overview.contains("<tr class=\"failed\"><td>rewards</td>"),
        "{overview}"
    );
    // A list longer than a page links to the next one, until every row was shown once.
    let pools: Vec<bson::Document> = (0..60)
        .map(|i| bson::doc! { "pool_address": format!("{POOL_B}{i:02}") })
        .collect();
    n.store
        .collection::<bson::Document>("poolList")
        .insert_many(pools)
        .await
        .unwrap();
    let mut shown = Vec::new();
    let mut path = "/pools".to_owned();
    for _ in 0..5 {
        let (status, _, html) = get(&path).await;
        assert_eq!(status, 200, "{path}");
        shown.extend(
            html.split("href=\"/pool/")
                .skip(1)
                .map(|rest| rest[..rest.find('"').unwrap()].to_owned()),
        );
        match html.split("id=\"next\" href=\"").nth(1) {
            Some(rest) => path = rest[..rest.find('"').unwrap()].replace("&amp;", "&"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..60).map(|i| format!("{POOL_B}{i:02}")).collect();
    expected.push(POOL_A.to_owned());
    expected.sort();
    assert_eq!(shown, expected, "every pool once, by address");
    // The newest-first lists go on from the last row shown, even when a page ends between
    // rows of one millisecond (one payouts run writes several batches).
    let start = DateTime::now().timestamp_millis();
    let batches: Vec<bson::Document> = (0..120_i64)
        .map(|i| {
            bson::doc! {
                "_id": format!("batch-{}", 999 - i), "state": "confirmed", "kind": "payout",
                "recipients": [{ "address": POOL_B, "units": 1_i64 }], "total": 1_i64,
                "created_at": DateTime::from_millis(start - (i / 3) * 1000),
            }
        })
        .collect();
    n.store
        .collection::<bson::Document>("payoutBatches")
        .insert_many(batches)
        .await
        .unwrap();
    for (first, id) in [
        ("/payouts".to_owned(), "next"),
        (format!("/address/{POOL_B}"), "older-payouts"),
    ] {
        let mut shown = Vec::new();
        let mut path = first.clone();
        for _ in 0..5 {
            let (status, _, html) = get(&path).await;
            assert_eq!(status, 200, "{path}: {html}");
            shown.extend(
                html.split("<td>batch-")
                    .skip(1)
                    .map(|rest| format!("batch-{}", &rest[..rest.find('<').unwrap()])),
            );
            match html.split(&format!("id=\"{id}\" href=\"")).nth(1) {
                Some(rest) => path = rest[..rest.find('"').unwrap()].replace("&amp;", "&"),
                None => break,
            }
        }
        let expected: Vec<String> = (0..120).map(|i| format!("batch-{}", 999 - i)).collect();
        assert_eq!(shown, expected, "{first}: every batch once, newest first");
    }
    // A cursor no page handed out is a page that says so, not an error of the server.
    for path in [
        "/payouts?before=yesterday".to_owned(),
        "/distributions?before=5.x".to_owned(),
        format!("/address/{POOL_A}?credits_before=1.2.3"),
        format!("/address/{POOL_A}?payouts_before=-1"),
    ] {
        let (status, kind, html) = get(&path).await;
        assert_eq!(status, 400, "{path}: {html}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(html.contains("id=\"bad-cursor\""), "{path}: {html}");
        assert!(html.contains("is not a cursor"), "{path}: {html}");
    }
}

#[tokio::test]
async fn an_admin_request_that_failed_can_be_sent_again_and_takes_effect_once() {
    let key = admin_key();
    let public = RsaPublicKey::from(&key);
    let n = node_with_admin_key("http_modify_retry", key).await;
    // The server refuses any new registry entry: a unique index on a field no entry has (each
    // indexes as null), and one entry already there.
    n.register_pool(POOL_B).await;
    n.store
        .database()
        .run_command(bson::doc! { "createIndexes": "poolList", "indexes": [
            { "key": { "refused": 1 }, "name": "refused", "unique": true },
        ] })
        .await
        .unwrap();
    let add = encrypt(&public, &format!("add:{POOL_A}"));
    let (status, _) = modify(&n.http, add.clone()).await;
    assert_eq!(status, 503);
    n.store
        .collection::<bson::Document>("poolList")
        .drop_index("refused")
        .await
        .unwrap();

    // The admin sends the same ciphertext again, several times at once: one adds the pool.
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let (url, body) = (n.http.clone(), add.clone());
            tokio::spawn(async move { modify(&url, body).await })
        })
        .collect();
    let mut replies = Vec::new();
    for send in sends {
        replies.push(send.await.unwrap());
    }
    let added: Vec<_> = replies
        .iter()
        .filter(|(status, _)| *status == 200)
        .collect();
    assert_eq!(added.len(), 1, "{replies:?}");
    assert_eq!(added[0].1["message"], "Pool added successfully");
    assert!(
        replies.iter().all(|(status, body)| *status == 200
            || (*status == 400 && body["message"] == "Replayed request")),
        "{replies:?}"
    );
    assert!(
        n.store
            .pool_overview(POOL_A)
            .await
            .unwrap()
            .unwrap()
            .registered
    );
}

/// Arbitrary bodies, paths and frames through a running node: every one gets an answer that is
/// not a server error (no panic, no 5xx), and none changes what is stored.
#[test]
fn hostile_http_bodies_and_frames_change_nothing() {
    use minerpool_tests::fuzz::any_body;
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = admin_key();
    let n = runtime.block_on(node_with_admin_key("http_fuzz", key));
    runtime.block_on(n.register_pool(POOL_A));
    let counts = |n: &common::TestNode| {
        let store = n.store.clone();
        async move {
            let mut counts = Vec::new();
            for name in [
                names::POOL_LIST,
                names::MINER_POOL,
                names::VALIDATORS,
                "balances",
            ] {
                counts.push(
                    store
                        .collection::<bson::Document>(name)
                        .count_documents(doc! {})
                        .await
                        .unwrap(),
                );
            }
            counts
        }
    };
    let before = runtime.block_on(counts(&n));
    let segment =
        "[^/?#]{1,40}".prop_map(|s| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>());
    let input = (
        any_body(&[
            "address",
            "type",
            "pool_wallet",
            "validator_wallet",
            "val_id",
        ]),
        segment,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&input, |(body, segment)| {
            runtime.block_on(async {
                let base = &n.http;
                let requests = [
                    http()
                        .post(format!("{base}/api/v1/pools"))
                        .bearer_auth(ADMIN_TOKEN)
                        .header("content-type", "application/json")
                        .body(body.clone()),
                    http()
                        .post(format!("{base}/modify-pool-list/"))
                        .body(body.clone()),
                    http().get(format!("{base}/api/v1/balances/{segment}")),
                    http().get(format!("{base}/api/v1/pools/{segment}")),
                    http().get(format!("{base}/api/v1/payouts/{segment}")),
                    http().get(format!("{base}/api/v1/distributions?limit={segment}")),
                    http().get(format!(
                        "{base}/api/v1/job-runs?job={segment}&limit={segment}"
                    )),
                    http().get(format!("{base}/api/v1/validators/{segment}")),
                    http().get(format!("{base}/api/v1/credits/{segment}?before={segment}")),
                    http().get(format!("{base}/api/v1/payout-batches?before={segment}")),
                    http().get(format!("{base}/api/v1/history/{segment}?hours={segment}")),
                    http().get(format!("{base}/api/v1/income?hours={segment}")),
                    http().get(format!("{base}/pool/{segment}")),
                    http().get(format!("{base}/validator/{segment}")),
                    http().get(format!("{base}/address/{segment}?credits_before={segment}")),
                    http().get(format!("{base}/payouts?before={segment}")),
                ];
                for request in requests {
                    let response = request.send().await.unwrap();
                    let status = response.status().as_u16();
                    assert!(status < 500, "{status} for {:?}", response.url().as_str());
                }
                // The same bytes as a WebSocket frame: an answer, never a dropped connection.
                let text = String::from_utf8_lossy(&body).into_owned();
                if !text.is_empty() && text.len() <= 4096 {
                    let reply = n.send(&text).await;
                    assert!(
                        reply.starts_with("ERROR: ") || reply.starts_with("SUCCESS"),
                        "{reply}"
                    );
                }
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(
        runtime.block_on(counts(&n)),
        before,
        "hostile input changed what is stored"
    );
}

/// Following `next` walks a list page by page: each item once, newest first (or by address),
/// and `next` is null on the last page.
#[tokio::test]
async fn lists_page_through_their_cursors() {
    let n = node("http_paging").await;
    // Three rows to a millisecond, so that pages of 10 end between rows of the same time; keys
    // fall as rows get older, so that the expected order is the insertion order.
    let start = DateTime::now().timestamp_millis();
    let time = |i: i64| DateTime::from_millis(start - (i / 3) * 1000);
    let key = |i: i64| 99 - i;
    let pool = |i: i64| minerpool_tests::fixtures::address_from_key(1000 + i as u64);
    for i in 0..25_i64 {
        n.store
            .collection::<bson::Document>("jobRuns")
            .insert_one(doc! {
                "_id": format!("run-{}", key(i)), "job": "decay", "outcome": "succeeded",
                "started_at": time(i),
            })
            .await
            .unwrap();
        n.register_pool(&pool(i)).await;
        n.store
            .collection::<bson::Document>("payoutBatches")
            .insert_one(doc! {
                "_id": format!("batch-{}", key(i)), "state": "confirmed", "total": i,
                "recipients": [{ "address": POOL_B, "units": i }],
                "created_at": time(i),
            })
            .await
            .unwrap();
        n.store
            .collection::<bson::Document>("rewardDistributions")
            .insert_one(doc! {
                "_id": format!("{0}-{0}", key(i)), "first_block": key(i), "last_block": key(i),
                "received": 10_i64, "hashes": [], "created_at": time(i),
                "lines": [
                    { "address": POOL_B, "kind": "pool", "units": i, "basis": { "score": { "score": 5_i64 } } },
                    { "address": POOL_A, "kind": "fee", "units": 1_i64, "basis": { "fee": { "percent": 5_i64 } } },
                    { "address": POOL_B, "kind": "fee", "units": 1_i64, "basis": { "fee": { "percent": 5_i64 } } },
                ],
            })
            .await
            .unwrap();
    }
    let walk = |path: &str, list: &'static str, cursor: &'static str| {
        let (base, path) = (n.http.clone(), path.to_owned());
        async move {
            let mut seen = Vec::new();
            let mut next: Option<String> = None;
            for _ in 0..10 {
                let url = match &next {
                    Some(c) => format!("{base}{path}?limit=10&{cursor}={c}"),
                    None => format!("{base}{path}?limit=10"),
                };
                let page = json_of(url).await;
                let items = page[list].as_array().unwrap().clone();
                seen.extend(items.iter().map(|i| {
                    i.get("id")
                        .or(i.get("address"))
                        .or(i.get("batch"))
                        .or(i.get("distribution"))
                        .or(i.get("blocks"))
                        .and_then(Value::as_str)
                        .unwrap()
                        .to_owned()
                }));
                match page["next"].as_str() {
                    Some(c) => next = Some(c.to_owned()),
                    None => return seen,
                }
            }
            panic!("{path}: more pages than items");
        }
    };
    let runs = walk("/api/v1/job-runs", "jobRuns", "before").await;
    let expected: Vec<String> = (0..25).map(|i| format!("run-{}", key(i))).collect();
    assert_eq!(runs, expected, "newest first, each once");
    let distributions = walk("/api/v1/distributions", "distributions", "before").await;
    let expected: Vec<String> = (0..25).map(|i| format!("{0}-{0}", key(i))).collect();
    assert_eq!(distributions, expected, "newest first, each once");
    let pools = walk("/api/v1/pools", "pools", "after").await;
    let mut expected: Vec<String> = (0..25).map(pool).collect();
    expected.sort();
    assert_eq!(pools, expected, "by address, each once");
    let batches = walk("/api/v1/payout-batches", "batches", "before").await;
    let expected: Vec<String> = (0..25).map(|i| format!("batch-{}", key(i))).collect();
    assert_eq!(batches, expected, "newest first, each once");
    let payouts = walk(&format!("/api/v1/payouts/{POOL_B}"), "payouts", "before").await;
    assert_eq!(payouts, expected, "newest first, each once");
    // Two lines of each distribution credit POOL_B: a page holds 10 distributions, 20 lines.
    let credits_path = format!("/api/v1/credits/{POOL_B}");
    let credits = walk(&credits_path, "credits", "before").await;
    let expected: Vec<String> = (0..25)
        .flat_map(|i| [format!("{0}-{0}", key(i)), format!("{0}-{0}", key(i))])
        .collect();
    assert_eq!(credits, expected, "newest first, each line once");
    let first: Value = json_of(format!("{}{credits_path}?limit=1", n.http)).await;
    assert_eq!(
        first["credits"],
        json!([
            { "distribution": "99-99", "kind": "pool", "amount": "0.00000000", "basis": { "score": { "score": 5 } }, "createdAt": first["credits"][0]["createdAt"] },
            { "distribution": "99-99", "kind": "fee", "amount": "0.00000001", "basis": { "fee": { "percent": 5 } }, "createdAt": first["credits"][0]["createdAt"] },
        ]),
        "only the address's own lines"
    );
    for bad in [
        "/api/v1/history/{POOL_A}?hours=0",
        "/api/v1/history/{POOL_A}?hours=745",
        "/api/v1/history/{POOL_A}?hours=a",
        "/api/v1/history/{POOL_A}?days=2",
        "/api/v1/income?hours=-1",
        "/api/v1/payout-batches?before=yesterday",
        "/api/v1/payout-batches?before=5.",
        "/api/v1/distributions?before=5.x",
        "/api/v1/distributions?before=-5",
        "/api/v1/credits/{POOL_A}?before=yesterday",
        "/api/v1/credits/{POOL_A}?before=1.2.3",
        "/api/v1/credits/x'%20OR%201",
        "/api/v1/validators/x'%20OR%201",
    ] {
        let url = format!("{}{}", n.http, bad.replace("{POOL_A}", POOL_A));
        let response = http().get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        status_of(format!("{}/api/v1/validators/{POOL_A}", n.http)).await,
        404
    );
    let history: Value = json_of(format!("{}/api/v1/history/{POOL_B}?hours=2", n.http)).await;
    assert_eq!(history["hours"], 2);
    assert_eq!(history["poolScore"], json!([null, null]));
    let earned: Vec<i64> = history["earned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().replace('.', "").parse().unwrap())
        .collect();
    assert_eq!(earned.len(), 2);
    assert_eq!(
        earned.iter().sum::<i64>(),
        (0..25).map(|i| i + 1).sum::<i64>()
    );
    let bad = http()
        .get(format!("{}/api/v1/job-runs?before=yesterday", n.http))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"yesterday\" is not a cursor")),
        "the error names what was wrong: {body}"
    );
}
