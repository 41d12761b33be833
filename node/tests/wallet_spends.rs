//! The wallet's spends through the HTTP API (SPEC §5.3 point 5): listed and read by anyone,
//! adopted or acknowledged with the admin token, counted in `/metrics` and shown on the
//! dashboard while one holds the payouts; against the real test MongoDB server.

mod common;

use bson::{DateTime, Document, doc};
use common::{ADMIN_TOKEN, TestNode, json_of, node, text_of};
use futures::TryStreamExt;
use minerpool_core::store::ledger::Balance;
use minerpool_core::store::names;
use minerpool_core::store::payouts::{PayoutBatch, Recipient};
use minerpool_core::store::spends::{SpendInput, SpendOrigin, WalletSpend};
use minerpool_tests::fixtures::{MINER, POOL_A, POOL_B};
use minerpool_tests::wait;
use serde_json::{Value, json};

/// A foreign spend in a block the rewards job credited: 12.5 coins to POOL_A (which has a
/// balance), 3 units to MINER (which has none), 5 back to the wallet.
const SETTLED: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
/// A foreign spend only pending: 0.5 coins to POOL_B.
const PENDING: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
/// One of our batches' own transactions.
const OURS: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
/// A hash no spend has.
const UNKNOWN: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

const POOL_A_PENDING: i64 = 50_000_000_000;
const POOL_A_PAID: i64 = 7;
const SETTLED_TO_POOL_A: i64 = 1_250_000_000;

/// The last block the rewards job credited, and the last block whose spends were read.
const CREDITED_TO: i64 = 100;
const READ_TO: i64 = 105;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn spend(
    hash: &str,
    origin: SpendOrigin,
    block: Option<i64>,
    outputs: &[(&str, i64)],
    first_seen_ms: i64,
) -> WalletSpend {
    let first_seen = DateTime::from_millis(first_seen_ms);
    WalletSpend {
        hash: hash.into(),
        block,
        block_hash: block.map(|b| format!("{b:064x}")),
        block_time: block.map(|b| DateTime::from_millis(1_700_000_000_000 + b * 60_000)),
        inputs: vec![SpendInput {
            tx_hash: Some("e5".repeat(32)),
            index: Some(0),
        }],
        outputs: outputs
            .iter()
            .map(|(address, units)| Recipient {
                address: (*address).into(),
                units: *units,
            })
            .collect(),
        change: 5,
        unreadable: None,
        origin,
        batch: (origin != SpendOrigin::Foreign).then(|| "b1".into()),
        dropped_at: None,
        resolution: None,
        first_seen_at: first_seen,
        updated_at: first_seen,
    }
}

/// Three spends (oldest first: ours, the settled foreign one, the pending foreign one), the
/// payees' balances, how far the rewards job credited and how far the spends were read.
async fn seed(n: &TestNode) {
    let store = &n.store;
    store
        .wallet_spends()
        .insert_many([
            spend(OURS, SpendOrigin::Batch, Some(80), &[(POOL_A, 10)], 1_000),
            spend(
                SETTLED,
                SpendOrigin::Foreign,
                Some(90),
                &[(POOL_A, SETTLED_TO_POOL_A), (MINER, 3)],
                2_000,
            ),
            spend(
                PENDING,
                SpendOrigin::Foreign,
                None,
                &[(POOL_B, 50_000_000)],
                3_000,
            ),
        ])
        .await
        .unwrap();
    store
        .balances()
        .insert_many([
            Balance {
                address: POOL_A.into(),
                pending: POOL_A_PENDING,
                paid: POOL_A_PAID,
                updated_at: None,
            },
            Balance {
                address: POOL_B.into(),
                pending: 100_000_000,
                paid: 0,
                updated_at: None,
            },
        ])
        .await
        .unwrap();
    let heights = store.collection::<Document>(names::BLOCK_HEIGHT);
    heights
        .insert_one(doc! { "_id": "last_block_height", "block_height": CREDITED_TO })
        .await
        .unwrap();
    heights
        .insert_one(doc! {
            "_id": "wallet_spends_read", "block_height": READ_TO,
            "block_hash": format!("{READ_TO:064x}"), "from_height": 1_i64,
            "read_at": DateTime::now(),
        })
        .await
        .unwrap();
}

/// POSTs `body` (sent as JSON text) to `/api/v1/wallet-spends/{hash}/{action}`.
async fn resolve(
    n: &TestNode,
    hash: &str,
    action: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request = http()
        .post(format!("{}/api/v1/wallet-spends/{hash}/{action}", n.http))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn reason(text: &str) -> String {
    json!({ "reason": text }).to_string()
}

async fn balance(n: &TestNode, address: &str) -> (i64, i64) {
    n.store
        .balance_of(address)
        .await
        .unwrap()
        .map_or((0, 0), |b| (b.pending, b.paid))
}

/// The two gauges, as one scrape shows them.
async fn foreign_gauges(n: &TestNode) -> (f64, f64) {
    let page = text_of(format!("{}/metrics", n.http)).await;
    let value =
        |series: &str| wait::sample(&page, series).unwrap_or_else(|| panic!("{series} in {page}"));
    (
        value("minerpool_node_wallet_foreign_spends"),
        value("minerpool_node_wallet_foreign_spend_units"),
    )
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn wallet_spends_are_listed_and_read_by_anyone() {
    let n = node("spends_list").await;
    let empty: Value = json_of(format!("{}/api/v1/wallet-spends", n.http)).await;
    assert_eq!(
        empty,
        json!({ "readTo": null, "unresolved": 0, "spends": [] }),
        "before the first read"
    );
    seed(&n).await;

    let all: Value = json_of(format!("{}/api/v1/wallet-spends", n.http)).await;
    assert_eq!(all["readTo"], READ_TO, "{all}");
    assert_eq!(all["unresolved"], 2, "{all}");
    let hashes: Vec<&str> = all["spends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["txHash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, [PENDING, SETTLED, OURS], "newest first");
    assert_eq!(
        all["spends"][1],
        json!({
            "txHash": SETTLED,
            "origin": "foreign",
            "batch": null,
            "where": "in block 90",
            "block": 90,
            "blockTime": "2023-11-14T23:43:20Z",
            "outputs": [
                { "address": POOL_A, "amount": "12.50000000" },
                { "address": MINER, "amount": "0.00000003" },
            ],
            "paid": "12.50000003",
            "change": "0.00000005",
            "unreadable": null,
            "unresolved": true,
            "resolution": null,
            "firstSeenAt": "1970-01-01T00:00:02Z",
        })
    );
    let pending = &all["spends"][0];
    assert_eq!(pending["where"], "pending");
    assert_eq!(pending["block"], Value::Null);
    assert_eq!(pending["blockTime"], Value::Null);
    assert_eq!(pending["paid"], "0.50000000");
    let ours = &all["spends"][2];
    assert_eq!(ours["origin"], "batch");
    assert_eq!(ours["batch"], "b1");
    assert_eq!(ours["unresolved"], false);

    for (query, expected) in [
        ("?filter=all", vec![PENDING, SETTLED, OURS]),
        ("?filter=foreign", vec![PENDING, SETTLED]),
        ("?filter=unresolved", vec![PENDING, SETTLED]),
        ("?filter=unresolved&limit=1", vec![PENDING]),
        ("?limit=2", vec![PENDING, SETTLED]),
    ] {
        let listed: Value = json_of(format!("{}/api/v1/wallet-spends{query}", n.http)).await;
        let hashes: Vec<&str> = listed["spends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["txHash"].as_str().unwrap())
            .collect();
        assert_eq!(hashes, expected, "{query}");
        assert_eq!(listed["unresolved"], 2, "whatever the filter: {query}");
    }

    let one: Value = json_of(format!("{}/api/v1/wallet-spends/{SETTLED}", n.http)).await;
    assert_eq!(one, all["spends"][1]);

    for (path, status, names) in [
        (format!("/wallet-spends/{UNKNOWN}"), 404, UNKNOWN),
        (
            format!("/wallet-spends/pending-spend-of:{UNKNOWN}:3"),
            404,
            "pending-spend-of",
        ),
        ("/wallet-spends/xyz".into(), 400, "hash"),
        (
            format!("/wallet-spends/{}", UNKNOWN.to_uppercase()),
            400,
            "hash",
        ),
        (
            format!("/wallet-spends/pending-spend-of:{UNKNOWN}:x"),
            400,
            "hash",
        ),
        ("/wallet-spends?filter=mine".into(), 400, "filter"),
        ("/wallet-spends?limit=0".into(), 400, "limit"),
        ("/wallet-spends?limit=201".into(), 400, "limit"),
        ("/wallet-spends?colour=red".into(), 400, "colour"),
    ] {
        let response = http()
            .get(format!("{}/api/v1{path}", n.http))
            .send()
            .await
            .unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(got, status, "{path}: {body}");
        assert!(error_of(&body).contains(names), "{path}: {body}");
    }
}

#[tokio::test]
async fn an_admin_adopts_or_acknowledges_a_foreign_spend_once() {
    let n = node("spends_resolve").await;
    seed(&n).await;
    assert_eq!(
        foreign_gauges(&n).await,
        (2.0, (SETTLED_TO_POOL_A + 3 + 50_000_000) as f64)
    );

    // Without the token, or with a wrong one, nothing is looked at.
    for token in [None, Some("guess")] {
        let (status, body) = resolve(&n, SETTLED, "adopt", token, &reason("mine")).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        let (status, _) = resolve(&n, PENDING, "acknowledge", token, &reason("mine")).await;
        assert_eq!(status, 401, "{token:?}");
    }

    // Malformed bodies and hashes are refused, each naming what was wrong, and change nothing.
    let long = "x".repeat(1001);
    for (body, names) in [
        ("{}".to_owned(), "reason"),
        (reason(""), "reason"),
        (reason(" \n\t "), "reason"),
        (reason(&long), "1000"),
        (json!({ "reason": 5 }).to_string(), "reason"),
        (json!({ "reason": null }).to_string(), "reason"),
        (
            json!({ "reason": "moved by hand", "force": true }).to_string(),
            "force",
        ),
        ("reason=moved".to_owned(), "JSON"),
        ("[\"moved\"]".to_owned(), "object"),
        (String::new(), "EOF"),
    ] {
        for action in ["adopt", "acknowledge"] {
            let (status, answer) = resolve(&n, SETTLED, action, Some(ADMIN_TOKEN), &body).await;
            assert_eq!(status, 400, "{action} {body:?}: {answer}");
            assert!(
                error_of(&answer).contains(names),
                "{action} {body:?}: {answer} does not name {names}"
            );
        }
    }
    let not_json = http()
        .post(format!("{}/api/v1/wallet-spends/{SETTLED}/adopt", n.http))
        .bearer_auth(ADMIN_TOKEN)
        .body(reason("moved"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 415, "no content type");
    let huge = reason(&"x".repeat(100_000));
    let (status, _) = resolve(&n, SETTLED, "adopt", Some(ADMIN_TOKEN), &huge).await;
    assert_eq!(status, 413, "over the body limit");
    for (hash, status, names) in [
        ("xyz", 400, "hash"),
        (&*UNKNOWN.to_uppercase(), 400, "hash"),
        (UNKNOWN, 404, UNKNOWN),
    ] {
        let (got, answer) = resolve(&n, hash, "adopt", Some(ADMIN_TOKEN), &reason("x")).await;
        assert_eq!(got, status, "{hash}: {answer}");
        assert!(error_of(&answer).contains(names), "{hash}: {answer}");
    }
    assert_eq!(balance(&n, POOL_A).await, (POOL_A_PENDING, POOL_A_PAID));
    assert_eq!(foreign_gauges(&n).await.0, 2.0);

    // Refused for what the spend is: 422 with the store's message.
    let (status, answer) = resolve(&n, PENDING, "adopt", Some(ADMIN_TOKEN), &reason("x")).await;
    assert_eq!(status, 422, "{answer}");
    assert!(error_of(&answer).contains("block"), "{answer}");
    for action in ["adopt", "acknowledge"] {
        let (status, answer) = resolve(&n, OURS, action, Some(ADMIN_TOKEN), &reason("x")).await;
        assert_eq!(status, 422, "{action}: {answer}");
        assert!(
            error_of(&answer).contains("not a foreign spend"),
            "{action}: {answer}"
        );
    }

    // Adopted: POOL_A's output is recorded paid, exactly, by a recovered batch.
    let why = "restored the store from Tuesday's backup; this batch was paid before the loss";
    let (status, adopted) = resolve(&n, SETTLED, "adopt", Some(ADMIN_TOKEN), &reason(why)).await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["txHash"], SETTLED);
    assert_eq!(adopted["unresolved"], false);
    let resolution = &adopted["resolution"];
    assert_eq!(resolution["kind"], "adopted");
    assert_eq!(resolution["reason"], why);
    assert!(resolution["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        resolution["adopted"],
        json!([{ "address": POOL_A, "amount": "12.50000000" }])
    );
    assert_eq!(
        resolution["notAdopted"],
        json!([{ "address": MINER, "amount": "0.00000003" }])
    );
    assert_eq!(
        balance(&n, POOL_A).await,
        (
            POOL_A_PENDING - SETTLED_TO_POOL_A,
            POOL_A_PAID + SETTLED_TO_POOL_A
        )
    );
    let recovered: Vec<PayoutBatch> = n
        .store
        .payout_batches()
        .find(doc! { "recovered.spend": SETTLED })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let batch = &recovered[0];
    assert_eq!(resolution["batch"], batch.id.as_str());
    assert_eq!(batch.tx_hash.as_deref(), Some(SETTLED));
    assert_eq!(batch.total, SETTLED_TO_POOL_A);
    assert_eq!(batch.recovered.as_ref().unwrap().reason, why);
    let read: Value = json_of(format!("{}/api/v1/wallet-spends/{SETTLED}", n.http)).await;
    assert_eq!(read, adopted, "the answer is what is stored");
    assert_eq!(foreign_gauges(&n).await, (1.0, 50_000_000.0));

    // Once only: a second decision is a conflict, and writes nothing.
    for action in ["adopt", "acknowledge"] {
        let (status, answer) =
            resolve(&n, SETTLED, action, Some(ADMIN_TOKEN), &reason("again")).await;
        assert_eq!(status, 409, "{action}: {answer}");
        assert!(
            error_of(&answer).contains("already adopted"),
            "{action}: {answer}"
        );
    }
    assert_eq!(
        balance(&n, POOL_A).await,
        (
            POOL_A_PENDING - SETTLED_TO_POOL_A,
            POOL_A_PAID + SETTLED_TO_POOL_A
        )
    );

    // A pending spend can be acknowledged: balances unchanged.
    let why = "moved to the cold wallet by hand";
    let (status, acknowledged) =
        resolve(&n, PENDING, "acknowledge", Some(ADMIN_TOKEN), &reason(why)).await;
    assert_eq!(status, 200, "{acknowledged}");
    assert_eq!(acknowledged["resolution"]["kind"], "acknowledged");
    assert_eq!(acknowledged["resolution"]["reason"], why);
    assert_eq!(acknowledged["resolution"]["batch"], Value::Null);
    assert_eq!(acknowledged["resolution"]["adopted"], json!([]));
    assert_eq!(acknowledged["where"], "pending");
    assert_eq!(balance(&n, POOL_B).await, (100_000_000, 0));
    let (status, _) = resolve(&n, PENDING, "acknowledge", Some(ADMIN_TOKEN), &reason(why)).await;
    assert_eq!(status, 409);

    assert_eq!(foreign_gauges(&n).await, (0.0, 0.0));
    let unresolved: Value =
        json_of(format!("{}/api/v1/wallet-spends?filter=unresolved", n.http)).await;
    assert_eq!(unresolved["unresolved"], 0);
    assert_eq!(unresolved["spends"], json!([]));
}

#[tokio::test]
async fn the_overview_says_payouts_are_held_while_a_foreign_spend_is_unresolved() {
    let n = node("spends_overview").await;
    let page = text_of(format!("{}/", n.http)).await;
    assert!(!page.contains("payouts-held"), "{page}");
    assert!(!page.contains("Payouts held"), "{page}");
    assert_eq!(foreign_gauges(&n).await, (0.0, 0.0));

    seed(&n).await;
    let page = text_of(format!("{}/", n.http)).await;
    assert!(
        page.contains("Payouts held: 2 foreign spends of the wallet, 13.00000003 coins"),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/api/v1/wallet-spends?filter=unresolved""#),
        "{page}"
    );

    let (status, _) = resolve(
        &n,
        SETTLED,
        "acknowledge",
        Some(ADMIN_TOKEN),
        &reason("mine"),
    )
    .await;
    assert_eq!(status, 200);
    let page = text_of(format!("{}/", n.http)).await;
    assert!(
        page.contains("Payouts held: 1 foreign spend of the wallet, 0.50000000 coins"),
        "{page}"
    );
    let (status, _) = resolve(
        &n,
        PENDING,
        "acknowledge",
        Some(ADMIN_TOKEN),
        &reason("mine"),
    )
    .await;
    assert_eq!(status, 200);
    let page = text_of(format!("{}/", n.http)).await;
    assert!(!page.contains("Payouts held"), "{page}");
}

#[tokio::test]
async fn the_document_describes_the_wallet_spends() {
    let n = node("spends_document").await;
    let document: Value = json_of(format!("{}/api/v1/openapi.json", n.http)).await;
    let paths = &document["paths"];
    assert!(paths["/wallet-spends"]["get"].is_object(), "{paths}");
    assert!(paths["/wallet-spends/{hash}"]["get"].is_object(), "{paths}");
    for action in ["adopt", "acknowledge"] {
        let post = &paths[format!("/wallet-spends/{{hash}}/{action}")]["post"];
        assert_eq!(
            post["security"],
            json!([{ "bearer": [] }]),
            "{action}: {post}"
        );
        for status in [
            "200", "400", "401", "403", "404", "409", "413", "415", "422", "503",
        ] {
            assert!(post["responses"][status].is_object(), "{action} {status}");
        }
    }
    assert!(
        paths["/wallet-spends"]["get"]["security"].is_null(),
        "reads are public"
    );
    let schemas = &document["components"]["schemas"];
    let hash = regex::Regex::new(schemas["SpendHash"]["pattern"].as_str().unwrap()).unwrap();
    assert!(hash.is_match(SETTLED));
    assert!(hash.is_match(&format!("pending-spend-of:{SETTLED}:3")));
    assert!(!hash.is_match("xyz"));
    assert_eq!(schemas["Reason"]["maxLength"], 1000);
    assert_eq!(schemas["Reason"]["minLength"], 1);
    assert_eq!(
        schemas["SpendDecision"]["additionalProperties"], false,
        "{}",
        schemas["SpendDecision"]
    );
    let spend = &schemas["WalletSpend"]["properties"];
    for field in [
        "txHash",
        "origin",
        "batch",
        "where",
        "block",
        "blockTime",
        "outputs",
        "paid",
        "change",
        "unreadable",
        "unresolved",
        "resolution",
        "firstSeenAt",
    ] {
        assert!(spend[field].is_object(), "{field} in {spend}");
    }
    assert_eq!(
        schemas["SpendOutput"]["properties"]["amount"]["$ref"],
        "#/components/schemas/Coins"
    );
}
