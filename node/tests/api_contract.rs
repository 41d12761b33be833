//! The API and its document agree: every route is documented, and schemathesis (a third-party
//! fuzzer reading `/api/v1/openapi.json`) finds no failure of any of its checks, anonymous and
//! with the admin token, stateful phase included, against a node on seeded data.

mod common;

use std::process::Command;

use bson::{DateTime, doc};
use common::{ADMIN_TOKEN, TestNode, json_of, node};
use minerpool_tests::fixtures::{POOL_A, POOL_B, VALIDATOR_1, VALIDATOR_2, address_from_key};
use serde_json::Value;

const SCHEMATHESIS_VAR: &str = "MINERPOOL_TEST_SCHEMATHESIS";

fn schemathesis() -> String {
    std::env::var(SCHEMATHESIS_VAR).unwrap_or_else(|_| {
        panic!(
            "{SCHEMATHESIS_VAR} is not set: run the tests with `make test` (or \
             scripts/with-test-servers.sh, which installs schemathesis and sets it)"
        )
    })
}

/// A day of everything the API lists: pools, validators, distributions with their lines and
/// balances, payout batches, job runs of each outcome, and spends of the wallet.
async fn seed(n: &TestNode) {
    let store = &n.store;
    let now = DateTime::now().timestamp_millis();
    for i in 0..5_u64 {
        n.register_pool(&address_from_key(500 + i)).await;
    }
    n.register_pool(POOL_A).await;
    for (i, validator) in [VALIDATOR_1, VALIDATOR_2].into_iter().enumerate() {
        store
            .collection::<bson::Document>("validatorsList")
            .insert_one(doc! {
                "wallet_address": validator, "score": 1_i64, "percentage": 50.5,
                "totalStake": 1000.0 + i as f64, "vote": 0.0, "ip": "127.0.0.1",
                "port": 8000_i32 + i as i32, "ping": DateTime::from_millis(now - 60_000),
            })
            .await
            .unwrap();
    }
    for i in 0..30_i64 {
        let at = DateTime::from_millis(now - i * 3_600_000);
        store
            .collection::<bson::Document>("rewardDistributions")
            .insert_one(doc! {
                "_id": format!("{0}-{0}", 100 - i), "first_block": 100 - i, "last_block": 100 - i,
                "received": 1_000_000_i64 + i, "hashes": [format!("{:064x}", i)], "created_at": at,
                "lines": [
                    { "address": POOL_A, "kind": "pool", "units": 900_000_i64, "basis": { "score": { "score": 5_i64 } } },
                    { "address": VALIDATOR_1, "kind": "validator", "units": 50_000_i64, "basis": { "percentage": { "hundredths": 5050_i64 } } },
                    { "address": POOL_B, "kind": "fee", "units": 50_000_i64 + i, "basis": { "fee": { "percent": 5_i64 } } },
                ],
            })
            .await
            .unwrap();
        store
            .collection::<bson::Document>("payoutBatches")
            .insert_one(doc! {
                "_id": format!("{:024x}", i), "state": if i == 0 { "submitted" } else { "confirmed" },
                "total": 900_000_i64, "fee": 1_000_i64, "tx_hash": format!("{:064x}", 1000 + i),
                "recipients": [{ "address": POOL_A, "units": 900_000_i64 }],
                "created_at": at,
            })
            .await
            .unwrap();
        let (outcome, error, reason) = match i % 4 {
            0 => ("succeeded", None, None),
            1 => (
                "failed",
                Some("chain answered 500 at http://chain.example/get_block"),
                None,
            ),
            2 => (
                "blocked",
                None,
                Some("startHeight 900 is above the chain's tip 100"),
            ),
            _ => ("running", None, None),
        };
        let job = ["rewards", "payouts", "decay", "audit"][(i % 4) as usize];
        store
            .collection::<bson::Document>("jobRuns")
            .insert_one(doc! {
                "_id": format!("{:024x}", 5000 + i), "job": job,
                "outcome": outcome, "started_at": at, "summary": { "details": { "credited": "0.01000000" } },
                "error": error, "reason": reason, "rate_limited_seconds": (i as f64) / 2.0,
            })
            .await
            .unwrap();
    }
    store
        .collection::<bson::Document>("balances")
        .insert_one(doc! { "address": POOL_A, "pending": 1_234_567_i64, "paid": 27_000_000_i64 })
        .await
        .unwrap();
    // Spends of the wallet: ours, a foreign one in a credited block (adoptable), a foreign one
    // pending (only acknowledgeable), one already acknowledged, and how far they were read.
    let at = |ms: i64| DateTime::from_millis(now - ms);
    let spends = store.collection::<bson::Document>("walletSpends");
    for (i, (origin, block, resolved)) in [
        ("batch", Some(90_i64), false),
        ("foreign", Some(95), false),
        ("foreign", None, false),
        ("foreign", Some(96), true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut spend = doc! {
            "_id": format!("{:064x}", 2000 + i), "block": block,
            "block_time": block.map(|_| at(600_000)), "inputs": [{ "tx_hash": format!("{:064x}", 1), "index": 0_i64 }],
            "outputs": [{ "address": POOL_A, "units": 1_000_i64 }, { "address": POOL_B, "units": 7_i64 }],
            "change": 5_i64, "origin": origin, "first_seen_at": at(i as i64 * 1000), "updated_at": at(0),
        };
        if origin == "batch" {
            spend.insert("batch", format!("{:024x}", 1));
        }
        if resolved {
            spend.insert(
                "resolution",
                doc! { "kind": "acknowledged", "reason": "moved by hand", "at": at(0) },
            );
        }
        spends.insert_one(spend).await.unwrap();
    }
    let heights = store.collection::<bson::Document>("blockHeight");
    heights
        .insert_one(doc! { "_id": "last_block_height", "block_height": 100_i64 })
        .await
        .unwrap();
    heights
        .insert_one(doc! {
            "_id": "wallet_spends_read", "block_height": 100_i64, "block_hash": format!("{:064x}", 100),
            "from_height": 1_i64, "read_at": at(0),
        })
        .await
        .unwrap();
    store.refresh_totals().await.unwrap();
}

/// Runs schemathesis over the whole API; returns its output, having asserted it passed.
fn fuzz(n: &TestNode, token: Option<&str>) -> String {
    let mut command = Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemathesis.toml"
        ))
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", n.http))
        .args(["--checks", "all", "--max-examples", "30"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--generation-deterministic", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        // Where it keeps its state between runs: not in the source tree.
        .current_dir(env!("CARGO_TARGET_TMPDIR"));
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.output().expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(
        output.status.success(),
        "schemathesis found failures ({}):\n{text}",
        if token.is_some() {
            "with the admin token"
        } else {
            "anonymous"
        }
    );
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failure_anonymous_or_with_the_admin_token() {
    let n = node("api_contract_fuzz").await;
    seed(&n).await;
    let anonymous = tokio::task::block_in_place(|| fuzz(&n, None));
    let admin = tokio::task::block_in_place(|| fuzz(&n, Some(ADMIN_TOKEN)));
    let operations = documented_operations(&n).await;
    let cases = regex::Regex::new(r"(\d+) generated, (\d+) passed").unwrap();
    let links = regex::Regex::new(r"API Links: +(\d+) covered").unwrap();
    for text in [&anonymous, &admin] {
        // Every operation was tested, every generated case passed, and the stateful phase
        // followed links between operations (a registration, then reads and a removal of it).
        // All but the document's own operation, which schemathesis leaves out.
        assert!(
            text.contains(&format!("Tested: {}", operations - 1)),
            "{operations} operations documented: {text}"
        );
        let generated = cases
            .captures(text)
            .unwrap_or_else(|| panic!("no case count: {text}"));
        assert_eq!(generated[1], generated[2], "{text}");
        let covered = links
            .captures(text)
            .unwrap_or_else(|| panic!("no stateful phase: {text}"));
        assert!(covered[1].parse::<u32>().unwrap() >= 3, "{text}");
    }
}

/// How many operations the document describes.
async fn documented_operations(n: &TestNode) -> usize {
    let document: Value = json_of(format!("{}/api/v1/openapi.json", n.http)).await;
    document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|operations| operations.as_object().unwrap().len())
        .sum()
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let n = node("api_contract_routes").await;
    let document: Value = json_of(format!("{}/api/v1/openapi.json", n.http)).await;
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{paths:?}");
    let client = reqwest::Client::new();
    for (path, operations) in paths {
        let url = format!("{}/api/v1{}", n.http, path.replace("{address}", POOL_A));
        for method in operations.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = client.request(method.clone(), &url).send().await.unwrap();
            // A route the router lacks answers 404 or 405 with no JSON error body.
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!(
                serde_json::from_str::<Value>(&body).is_ok() || status == 204,
                "{method} {path}: {status} {body:?}"
            );
        }
    }
}

/// The router is built only from handlers that carry their own document (`routes!`), so that a
/// route cannot exist without it: no other way of adding a route appears in the API's code.
#[test]
fn no_api_route_is_added_outside_the_document() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/api");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for forbidden in [".route(", ".nest(", ".merge(", "Router::new", ".fallback("] {
            assert!(
                !source.contains(forbidden),
                "{} adds a route with {forbidden}: declare it with #[utoipa::path] and routes!",
                path.display()
            );
        }
    }
    let http = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"),
    )
    .unwrap();
    assert_eq!(
        http.matches("/api/v1").count(),
        1,
        "only api::router() is served under /api/v1"
    );
}

/// One rule on every route: a bad parameter is refused with 400 and a message naming it, never
/// clamped or ignored, and the document says so with each parameter's bounds and pattern.
#[tokio::test]
async fn every_route_refuses_a_bad_request_the_same_way_and_the_document_says_so() {
    let n = node("api_contract_rule").await;
    let lists = [
        ("/pools", "after"),
        ("/validators", "after"),
        ("/distributions", "before"),
        ("/payout-batches", "before"),
        ("/job-runs", "before"),
        (&*format!("/credits/{POOL_A}"), "before"),
        (&*format!("/payouts/{POOL_A}"), "before"),
    ];
    let client = reqwest::Client::new();
    let refused = |query: String, names: &'static str| {
        let client = client.clone();
        let url = format!("{}/api/v1{query}", n.http);
        async move {
            let response = client.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            let error = body["error"].as_str().unwrap_or_default().to_owned();
            assert_eq!(status, 400, "{query}: {body}");
            assert!(
                error.contains(names),
                "{query}: {error:?} does not name {names}"
            );
        }
    };
    for (path, cursor) in lists {
        refused(format!("{path}?limit=0"), "limit").await;
        refused(format!("{path}?limit=201"), "limit").await;
        refused(format!("{path}?limit=6098"), "limit").await;
        refused(format!("{path}?limit=ten"), "limit").await;
        refused(format!("{path}?colour=red"), "colour").await;
        refused(format!("{path}?{cursor}="), cursor).await;
        refused(format!("{path}?{cursor}=5.x.y"), cursor).await;
        // The largest page is still served.
        let response = client
            .get(format!("{}/api/v1{path}?limit=200", n.http))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}?limit=200");
    }
    refused("/job-runs?job=nope".into(), "job").await;
    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "colour=red",
        "filter=nope",
    ] {
        let name = query.split('=').next().unwrap();
        refused(format!("/wallet-spends?{query}"), name).await;
    }
    refused("/wallet-spends/0".into(), "hash").await;
    refused("/income?hours=745".into(), "hours").await;
    refused(format!("/history/{POOL_A}?hours=0"), "hours").await;
    for path in [
        "/balances/0",
        "/pools/0",
        "/validators/0",
        "/credits/0",
        "/payouts/0",
        "/history/0",
    ] {
        refused(path.into(), "address").await;
    }
    for body in [
        r#"{"address": ""}"#,
        r#"{"address": 5}"#,
        r#"{}"#,
        r#"{"address": "0", "x": 1}"#,
    ] {
        let response = client
            .post(format!("{}/api/v1/pools", n.http))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("address") || e.contains('x')),
            "{body}: {answer}"
        );
    }

    let document: Value = json_of(format!("{}/api/v1/openapi.json", n.http)).await;
    let limit = document["paths"]["/distributions"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(limit["schema"]["maximum"], 200);
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["default"], 20);
    assert!(
        document["info"]["description"]
            .as_str()
            .unwrap()
            .contains("refused with 400")
    );
    let address = &document["components"]["schemas"]["Address"]["pattern"];
    assert!(
        regex::Regex::new(address.as_str().unwrap())
            .unwrap()
            .is_match(POOL_A)
    );
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, method) in [
        ("/pools", "post"),
        ("/pools/{address}", "delete"),
        ("/validators/{address}/allow-unsigned", "post"),
    ] {
        assert_eq!(
            document["paths"][path][method]["security"],
            serde_json::json!([{ "bearer": [] }]),
            "{method} {path}"
        );
    }
    assert_eq!(
        document["components"]["schemas"]["Coins"]["pattern"],
        "^[0-9]+\\.[0-9]{8}$"
    );
}
