//! Signed validator messages (SPEC §4.5) against the real test MongoDB server: every refusal with
//! its exact reply and nothing stored changed, the modes, no downgrade on every replica, and one
//! signed TASK sent to two replicas at once scoring once.

mod common;

use std::time::Duration;

use bson::{Document, doc};
use common::{ADMIN_TOKEN, Options, TestNode, json_of, node, node_with, text_of};
use minerpool_core::acceptance::NONCE_MARGIN_SECONDS;
use minerpool_core::config::Protocol;
use minerpool_core::message::*;
use minerpool_core::signed::{new_nonce, unix_now};
use minerpool_core::store::names;
use minerpool_core::upow::parse_private_key;
use minerpool_tests::fixtures::*;
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};

const KEY: u64 = 0x5151_0001;
const OTHER_KEY: u64 = 0x5151_0002;

fn key(number: u64) -> SigningKey {
    parse_private_key(&format!("{number:x}")).unwrap()
}

fn task_by(key: &SigningKey, pool: &str, val_id: &str, ts: i64, nonce: &str) -> Value {
    let task = Statement::Task {
        pool: pool.into(),
        val_id: val_id.into(),
    };
    signed_frame(key, INODE, &task, ts, nonce)
}

fn signed_task(pool: &str, val_id: &str) -> Value {
    task_by(&key(KEY), pool, val_id, unix_now(), &new_nonce())
}

fn signed_ping(ip: &str, port: u16) -> Value {
    let ping = Statement::Ping {
        ip: ip.parse().unwrap(),
        port,
    };
    signed_frame(&key(KEY), INODE, &ping, unix_now(), &new_nonce())
}

fn unsigned_task(validator: &str, pool: &str, val_id: &str) -> Value {
    json!({ "type": "TASK", "pool_wallet": pool, "validator_wallet": validator, "val_id": val_id })
}

/// What a refused message must leave as it was.
#[derive(Debug, PartialEq)]
struct Stored {
    pools: Vec<Document>,
    validators: Vec<Document>,
    receipts: Vec<Document>,
    nonces: Vec<Document>,
}

async fn all(n: &TestNode, collection: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    n.store
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn stored(n: &TestNode) -> Stored {
    Stored {
        pools: all(n, names::MINER_POOL).await,
        validators: all(n, names::VALIDATORS).await,
        receipts: all(n, names::TASK_RECEIPTS).await,
        nonces: all(n, names::SIGNED_NONCES).await,
    }
}

/// A node with pools A and B registered, the signing validator and another one known.
async fn signing_node(label: &str, protocol: Protocol) -> (TestNode, String, String) {
    let n = node_with(
        label,
        Options {
            protocol,
            ..Options::default()
        },
    )
    .await;
    let (me, other) = (address_from_key(KEY), address_from_key(OTHER_KEY));
    n.register_pool(POOL_A).await;
    n.register_pool(POOL_B).await;
    n.add_validator(&me, 20.0).await;
    n.add_validator(&other, 20.0).await;
    (n, me, other)
}

fn with(frame: &Value, field: &str, value: Value) -> Value {
    let mut frame = frame.clone();
    frame[field] = value;
    frame
}

fn without(frame: &Value, field: &str) -> Value {
    let mut frame = frame.clone();
    frame.as_object_mut().unwrap().remove(field);
    frame
}

/// Flips one bit of the signature's hex text, keeping it hex.
fn flip_bit(sig: &str, bit: usize) -> String {
    let mut bytes = hex::decode(sig).unwrap();
    bytes[bit / 8] ^= 1 << (bit % 8);
    hex::encode(bytes)
}

#[tokio::test]
async fn every_refusal_of_a_signed_message_is_exact_and_changes_nothing() {
    let (n, me, other) = signing_node("signed_refusals", Protocol::Both).await;
    // A first signed PING and TASK, accepted: the state every refusal below must leave alone.
    assert_eq!(
        n.send(&signed_ping("10.0.0.1", 5502).to_string()).await,
        PONG
    );
    let first = signed_task(POOL_A, "first");
    assert_eq!(n.send(&first.to_string()).await, "SUCCESS: first");
    let before = stored(&n).await;
    assert_eq!(
        n.pool_score(POOL_A).await,
        Some(4),
        "+4 for a validator at 20 %"
    );
    assert_eq!(before.nonces.len(), 2);

    let fresh = signed_task(POOL_A, "fresh");
    let sig = fresh["sig"].as_str().unwrap().to_owned();
    let ping = signed_ping("10.0.0.1", 5502);
    let now = unix_now();
    let mut refused: Vec<(&str, Value, &str)> = vec![
        (
            "signed by another validator's key",
            with(
                &task_by(&key(OTHER_KEY), POOL_A, "x", now, &new_nonce()),
                "validator_wallet",
                json!(me),
            ),
            INVALID_SIGNATURE,
        ),
        (
            "another validator's own valid signature, under my address",
            with(
                &fresh,
                "sig",
                task_by(
                    &key(OTHER_KEY),
                    POOL_A,
                    "fresh",
                    now,
                    fresh["nonce"].as_str().unwrap(),
                )["sig"]
                    .clone(),
            ),
            INVALID_SIGNATURE,
        ),
        (
            "sig too short",
            with(&fresh, "sig", json!(sig[..126])),
            INVALID_SIGNATURE,
        ),
        (
            "sig too long",
            with(&fresh, "sig", json!(format!("{sig}00"))),
            INVALID_SIGNATURE,
        ),
        (
            "sig not hex",
            with(&fresh, "sig", json!("z".repeat(128))),
            INVALID_SIGNATURE,
        ),
        (
            "sig in upper case",
            with(&fresh, "sig", json!(sig.to_uppercase())),
            INVALID_SIGNATURE,
        ),
        (
            "sig not a string",
            with(&fresh, "sig", json!(12)),
            INVALID_SIGNATURE,
        ),
        (
            "sig of zeros",
            with(&fresh, "sig", json!("0".repeat(128))),
            INVALID_SIGNATURE,
        ),
        (
            "pool changed",
            with(&fresh, "pool_wallet", json!(POOL_B)),
            INVALID_SIGNATURE,
        ),
        (
            "val_id changed",
            with(&fresh, "val_id", json!("fresh2")),
            INVALID_SIGNATURE,
        ),
        (
            "validator changed",
            with(&fresh, "validator_wallet", json!(other)),
            INVALID_SIGNATURE,
        ),
        (
            "ts changed",
            with(&fresh, "ts", json!(fresh["ts"].as_i64().unwrap() + 1)),
            INVALID_SIGNATURE,
        ),
        (
            "nonce changed",
            with(&fresh, "nonce", json!(new_nonce())),
            INVALID_SIGNATURE,
        ),
        (
            "ip changed",
            with(&ping, "ip", json!("10.0.0.2")),
            INVALID_SIGNATURE,
        ),
        (
            "port changed",
            with(&ping, "port", json!(5503)),
            INVALID_SIGNATURE,
        ),
        (
            "signed for another iNode",
            signed_frame(
                &key(KEY),
                REWARD,
                &Statement::Task {
                    pool: POOL_A.into(),
                    val_id: "inode".into(),
                },
                now,
                &new_nonce(),
            ),
            INVALID_SIGNATURE,
        ),
        ("ts missing", without(&fresh, "ts"), INVALID_SIGNATURE),
        ("nonce missing", without(&fresh, "nonce"), INVALID_SIGNATURE),
        ("sig missing", without(&fresh, "sig"), INVALID_SIGNATURE),
        (
            "only ts",
            without(&without(&fresh, "sig"), "nonce"),
            INVALID_SIGNATURE,
        ),
        (
            "ts as text",
            with(&fresh, "ts", json!(now.to_string())),
            INVALID_SIGNATURE,
        ),
        (
            "ts null",
            with(&fresh, "ts", Value::Null),
            INVALID_SIGNATURE,
        ),
        (
            "nonce too short",
            task_by(&key(KEY), POOL_A, "n", now, "00ff"),
            INVALID_SIGNATURE,
        ),
        (
            "nonce in upper case",
            task_by(&key(KEY), POOL_A, "n", now, &new_nonce().to_uppercase()),
            INVALID_SIGNATURE,
        ),
        (
            "ts two minutes in the past",
            task_by(&key(KEY), POOL_A, "old", now - 120, &new_nonce()),
            MESSAGE_EXPIRED,
        ),
        (
            "ts two minutes in the future",
            task_by(&key(KEY), POOL_A, "early", now + 120, &new_nonce()),
            MESSAGE_EXPIRED,
        ),
        (
            "expired and badly signed: the signature is checked first",
            with(
                &task_by(&key(KEY), POOL_A, "old", now - 120, &new_nonce()),
                "val_id",
                json!("x"),
            ),
            INVALID_SIGNATURE,
        ),
        (
            "a used nonce with a new val_id",
            task_by(
                &key(KEY),
                POOL_A,
                "reused",
                now,
                first["nonce"].as_str().unwrap(),
            ),
            NONCE_USED,
        ),
        (
            "a used nonce naming an unregistered pool: the nonce is checked first",
            task_by(
                &key(KEY),
                POOL_C,
                "reused",
                now,
                first["nonce"].as_str().unwrap(),
            ),
            NONCE_USED,
        ),
        (
            "a fresh nonce naming an unregistered pool",
            task_by(&key(KEY), POOL_C, "c", now, &new_nonce()),
            POOL_NOT_REGISTERED,
        ),
        (
            "an unsigned TASK after a signed one",
            unsigned_task(&me, POOL_A, "unsigned"),
            SIGNATURE_REQUIRED,
        ),
        (
            "an unsigned PING after a signed one",
            json!({ "type": "PING", "validator_wallet": me, "ip": "10.9.9.9", "port": 1 }),
            SIGNATURE_REQUIRED,
        ),
    ];
    for bit in [0, 255, 256, 511] {
        refused.push((
            "one flipped bit",
            with(&fresh, "sig", json!(flip_bit(&sig, bit))),
            INVALID_SIGNATURE,
        ));
    }
    for (what, frame, reply) in &refused {
        assert_eq!(n.send(&frame.to_string()).await, *reply, "{what}: {frame}");
        assert_eq!(stored(&n).await, before, "{what} changed what is stored");
    }

    // The same message again is a resend: the first reply, nothing more.
    assert_eq!(n.send(&first.to_string()).await, "SUCCESS: first");
    // A retried TASK (same val_id, fresh nonce) replies SUCCESS without score.
    assert_eq!(
        n.send(&signed_task(POOL_A, "first").to_string()).await,
        "SUCCESS: first"
    );
    assert_eq!(n.pool_score(POOL_A).await, Some(4), "no score for either");
    // The validator that never signed still sends unsigned TASKs.
    assert_eq!(
        n.send(&unsigned_task(&other, POOL_A, "legacy").to_string())
            .await,
        "SUCCESS: legacy"
    );
    assert_eq!(n.pool_score(POOL_A).await, Some(8));
}

#[tokio::test]
async fn the_signed_protocol_refuses_unsigned_messages_and_legacy_ignores_signatures() {
    let (n, me, _) = signing_node("signed_only", Protocol::Signed).await;
    let before = stored(&n).await;
    for frame in [
        unsigned_task(&me, POOL_A, "1"),
        json!({ "type": "PING", "validator_wallet": me, "ip": "10.0.0.1", "port": 5502 }),
    ] {
        assert_eq!(n.send(&frame.to_string()).await, SIGNATURE_REQUIRED);
    }
    assert_eq!(stored(&n).await, before);
    assert_eq!(
        n.send(&signed_task(POOL_A, "1").to_string()).await,
        "SUCCESS: 1"
    );
    assert_eq!(n.pool_score(POOL_A).await, Some(4));

    // legacy: whatever signature a message carries is ignored, as the original iNode did.
    let (n, me, _) = signing_node("signed_legacy", Protocol::Legacy).await;
    let junk = with(&signed_task(POOL_A, "2"), "sig", json!("not a signature"));
    assert_eq!(n.send(&junk.to_string()).await, "SUCCESS: 2");
    assert_eq!(
        n.send(&unsigned_task(&me, POOL_A, "3").to_string()).await,
        "SUCCESS: 3"
    );
    assert!(
        !n.validator(&me).await.contains_key("signed_since"),
        "legacy records no signing"
    );
    assert!(all(&n, names::SIGNED_NONCES).await.is_empty());
}

/// Two replicas on one database: a validator that signed on one is refused unsigned messages on
/// the other; the admin call on either lifts it, and the next signed message sets it again.
#[tokio::test]
async fn no_downgrade_holds_on_every_replica_until_an_admin_lifts_it() {
    let (a, me, _) = signing_node("signed_replicas", Protocol::Both).await;
    let b = node_with(
        "signed_replicas_b",
        Options {
            store: Some(a.store.clone()),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(
        b.send(&unsigned_task(&me, POOL_A, "u1").to_string()).await,
        "SUCCESS: u1",
        "unsigned is fine before the first signed message"
    );
    assert_eq!(
        a.send(&signed_task(POOL_A, "s1").to_string()).await,
        "SUCCESS: s1"
    );
    let since = a.validator(&me).await.get_datetime("signed_since").cloned();
    assert!(since.is_ok(), "signing is recorded with its time");
    // At once on both: the write checks the validator's document in its transaction, whatever
    // a replica's cached registry has seen so far.
    for replica in [&a, &b] {
        assert_eq!(
            replica
                .send(&unsigned_task(&me, POOL_A, "u2").to_string())
                .await,
            SIGNATURE_REQUIRED
        );
    }
    let api: Value = json_of(format!("{}/api/v1/validators/{me}", b.http)).await;
    assert_eq!(api["signs"], json!(true));
    assert!(api["signedSince"].is_string(), "{api}");
    let page = text_of(format!("{}/validator/{me}", b.http)).await;
    assert!(page.contains("yes, since"), "the dashboard says it signs");

    let lift = |token: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/validators/{me}/allow-unsigned", b.http))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(lift("wrong").await.unwrap().status(), 401);
    assert!(a.validator(&me).await.contains_key("signed_since"));
    let lifted = lift(ADMIN_TOKEN).await.unwrap();
    assert_eq!(lifted.status(), 200);
    let lifted: Value = lifted.json().await.unwrap();
    assert_eq!(lifted["wasSigning"], json!(true));
    for (i, replica) in [&a, &b].into_iter().enumerate() {
        let val_id = format!("after-lift-{i}");
        let frame = unsigned_task(&me, POOL_A, &val_id).to_string();
        minerpool_tests::wait::until(
            &format!("replica {i} takes unsigned messages again"),
            Duration::from_secs(5),
            || replica.send(&frame),
            |reply| *reply == format!("SUCCESS: {val_id}"),
        )
        .await;
    }
    let unknown = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/validators/{PAYER}/allow-unsigned",
            b.http
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        b.send(&signed_task(POOL_A, "s2").to_string()).await,
        "SUCCESS: s2"
    );
    assert!(b.validator(&me).await.contains_key("signed_since"));
}

/// The same signed TASKs sent to two replicas at the same moment: each scores once, and both
/// replicas answer SUCCESS (the second is a resend of the first).
#[tokio::test]
async fn a_signed_task_sent_to_two_replicas_at_once_scores_once() {
    let (a, _, _) = signing_node("signed_two", Protocol::Both).await;
    let b = node_with(
        "signed_two_b",
        Options {
            store: Some(a.store.clone()),
            ..Options::default()
        },
    )
    .await;
    let frames: Vec<String> = (0..20)
        .map(|i| signed_task(POOL_A, &format!("t{i}")).to_string())
        .collect();
    let sends = frames
        .iter()
        .flat_map(|frame| [a.send(frame), b.send(frame)]);
    let replies = futures::future::join_all(sends).await;
    for (i, pair) in replies.chunks(2).enumerate() {
        let expected = format!("SUCCESS: t{i}");
        assert_eq!(pair, [expected.clone(), expected], "TASK {i}");
    }
    assert_eq!(a.pool_score(POOL_A).await, Some(80), "20 TASKs at +4 each");
    assert_eq!(all(&a, names::TASK_RECEIPTS).await.len(), 20);
    assert_eq!(all(&a, names::SIGNED_NONCES).await.len(), 20);
}

#[tokio::test]
async fn metrics_count_messages_by_protocol_and_refusals_by_reason() {
    let (n, me, _) = signing_node("signed_metrics", Protocol::Both).await;
    n.send(&signed_task(POOL_A, "1").to_string()).await;
    n.send(&with(&signed_task(POOL_A, "2"), "val_id", json!("x")).to_string())
        .await;
    n.send(&unsigned_task(&me, POOL_A, "3").to_string()).await;
    let metrics = text_of(format!("{}/metrics", n.http)).await;
    for line in [
        r#"minerpool_node_websocket_messages_total{kind="TASK",protocol="signed",outcome="success"} 1"#,
        r#"minerpool_node_websocket_messages_total{kind="TASK",protocol="signed",outcome="invalid-signature"} 1"#,
        r#"minerpool_node_websocket_messages_total{kind="TASK",protocol="unsigned",outcome="signature-required"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// The nonces expire by themselves: a TTL index on their expiry, which lies past the window.
#[tokio::test]
async fn nonces_are_kept_for_the_window_and_then_expire() {
    let (n, _, _) = signing_node("signed_ttl", Protocol::Both).await;
    let frame = signed_task(POOL_A, "1");
    n.send(&frame.to_string()).await;
    let nonce = &all(&n, names::SIGNED_NONCES).await[0];
    let expires = nonce.get_datetime("expires_at").unwrap().timestamp_millis() / 1000;
    let ts = frame["ts"].as_i64().unwrap();
    assert_eq!(expires, ts + 60 + NONCE_MARGIN_SECONDS);
    let indexes = n
        .store
        .collection::<Document>(names::SIGNED_NONCES)
        .list_indexes()
        .await
        .unwrap();
    use futures::TryStreamExt;
    let indexes: Vec<_> = indexes.try_collect().await.unwrap();
    assert!(
        indexes.iter().any(|i| i.keys == doc! { "expires_at": 1 }
            && i.options.as_ref().and_then(|o| o.expire_after) == Some(Duration::ZERO)),
        "{indexes:?}"
    );
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[0-9a-fA-Fz]{0,140}".prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            Just(json!([1, 2])),
            Just(json!({ "a": 1 })),
        ]
    }

    const FIELDS: [&str; 9] = [
        "type",
        "validator_wallet",
        "pool_wallet",
        "val_id",
        "ts",
        "nonce",
        "sig",
        "ip",
        "port",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Signed-looking objects, each a valid signed TASK or PING with fields replaced or
        /// removed: the node answers every one, and stores nothing unless the signature holds.
        #[test]
        fn arbitrary_signed_looking_objects_change_nothing_unless_signed(
            ping in any::<bool>(),
            changes in proptest::collection::vec((0..FIELDS.len(), proptest::option::of(value())), 0..3),
        ) {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let n = shared_node().await;
                let mut frame = if ping { signed_ping("10.1.2.3", 4000) } else { signed_task(POOL_A, &new_nonce()) };
                for (field, value) in &changes {
                    frame = match value {
                        Some(value) => with(&frame, FIELDS[*field], value.clone()),
                        None => without(&frame, FIELDS[*field]),
                    };
                }
                let text = frame.to_string();
                let valid = check_signature(&text, INODE, 60, unix_now()) == Ok(true);
                let before = stored(n).await;
                let reply = n.send(&text).await;
                prop_assert!(reply.starts_with("SUCCESS") || reply.starts_with("ERROR: "), "{reply}");
                if !valid {
                    prop_assert!(!reply.starts_with("SUCCESS"), "{text} -> {reply}");
                    prop_assert_eq!(stored(n).await, before, "{} -> {}", text, reply);
                }
                Ok(())
            })?;
        }
    }

    /// One node for every case (each case has its own runtime, so the node runs on its own).
    async fn shared_node() -> &'static TestNode {
        static NODE: std::sync::OnceLock<&'static TestNode> = std::sync::OnceLock::new();
        if let Some(n) = NODE.get() {
            return n;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let (n, _, _) = signing_node("signed_arbitrary", Protocol::Both).await;
                tx.send(Box::leak(Box::new(n)) as &'static TestNode)
                    .unwrap();
                std::future::pending::<()>().await;
            });
        });
        let n = rx.recv().unwrap();
        NODE.get_or_init(|| n)
    }
}

#[tokio::test]
async fn the_api_and_the_validator_list_show_who_signs() {
    let (n, me, other) = signing_node("signed_visible", Protocol::Both).await;
    n.send(&signed_task(POOL_A, "1").to_string()).await;
    let list: Value = json_of(format!("{}/api/v1/validators", n.http)).await;
    let signs = |address: &str| {
        list["validators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["address"] == json!(address))
            .map(|v| (v["signs"].clone(), v["signedSince"].is_string()))
    };
    assert_eq!(signs(&me), Some((json!(true), true)));
    assert_eq!(signs(&other), Some((json!(false), false)));
    let page = text_of(format!("{}/validator-list", n.http)).await;
    assert!(page.contains("<th>Signs</th>"), "{page}");
    assert_eq!(page.matches("yes, since").count(), 1, "{page}");
}

#[tokio::test]
async fn a_plain_node_fixture_accepts_unsigned_tasks() {
    // The default protocol is `both`: today's validators keep working.
    let n = node("signed_default").await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 20.0).await;
    assert_eq!(
        n.send(&unsigned_task(VALIDATOR_1, POOL_A, "1").to_string())
            .await,
        "SUCCESS: 1"
    );
}
