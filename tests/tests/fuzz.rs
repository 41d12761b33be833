//! Arbitrary input for every parser of what comes from outside that needs no database: the
//! WebSocket message parser, the config loader, the uPow transaction parser and every chain
//! answer. Each must give an answer or a clear error, and never panic. (HTTP bodies and
//! WebSocket frames through a running node, with the database, are in node/tests/http.rs.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use minerpool_core::chain::{ChainClient, RetryPolicy};
use minerpool_core::config::Config;
use minerpool_core::upow::Transaction;
use minerpool_node::websocket::{self, Request};
use minerpool_tests::fixtures::{INODE, REWARD};
use minerpool_tests::fuzz::{any_body, any_json, shaped_json};
use proptest::prelude::*;
use serde_json::Value;

const REPLIES: [&str; 5] = [
    websocket::INVALID_FORMAT,
    websocket::INVALID_ADDRESS,
    websocket::INVALID_IP,
    websocket::INVALID_PORT,
    websocket::UNKNOWN_TYPE,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_websocket_parser_answers_everything(
        body in prop_oneof![
            any_body(&["type", "pool_wallet", "validator_wallet", "val_id", "ip", "port"]),
            (prop_oneof![Just("TASK"), Just("PING"), Just("OTHER")],
             shaped_json(&["pool_wallet", "validator_wallet", "val_id", "ip", "port"]))
                .prop_map(|(kind, mut v)| {
                    v["type"] = Value::from(kind);
                    v.to_string().into_bytes()
                }),
        ]
    ) {
        let text = String::from_utf8_lossy(&body);
        match websocket::parse(&text) {
            Ok(Request::Task { val_id, .. }) => prop_assert!(!val_id.is_empty() && val_id.len() <= 256),
            Ok(Request::Ping { port, .. }) => prop_assert!(port != 0),
            Ok(Request::Other { .. }) => {}
            Err(reply) => prop_assert!(REPLIES.contains(&reply), "unexpected reply {reply:?}"),
        }
    }

    #[test]
    fn the_config_loader_answers_everything(
        text in prop_oneof![
            "\\PC{0,300}",
            any_json().prop_map(|v| v.to_string()),
            (shaped_json(&["mongodb", "chain", "rewards", "validators", "node", "payouts", "schedule"]),
             shaped_json(&["apiUrl", "validatorsUrl", "requestTimeoutSeconds", "rateLimitWaitSeconds", "allowInsecureHttp"]))
                .prop_map(|(mut v, chain)| {
                    let mut chain = chain;
                    chain["inodeWallet"] = Value::from(INODE);
                    chain["rewardAddress"] = Value::from(REWARD);
                    v["chain"] = chain;
                    v.to_string()
                }),
        ]
    ) {
        if let Err(e) = Config::from_yaml_str(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn the_upow_transaction_parser_answers_everything(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        version in 1u8..=3,
    ) {
        let _ = Transaction::parse(&bytes);
        let _ = Transaction::parse_wire(&bytes);
        // Past the version byte, so the counts and lengths after it are read too.
        let mut versioned = vec![version];
        versioned.extend_from_slice(&bytes);
        if let Err(e) = Transaction::parse(&versioned) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// A chain API that answers whatever the test sets: status and body.
struct Hostile {
    answer: Arc<Mutex<(u16, Vec<u8>)>>,
    client: ChainClient,
}

impl Hostile {
    async fn start() -> Hostile {
        let answer = Arc::new(Mutex::new((200, Vec::new())));
        let shared = answer.clone();
        let router = Router::new().fallback(move || {
            let (status, body) = shared.lock().unwrap().clone();
            async move {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let mut config = Config::with_wallets(INODE, REWARD);
        config.chain.api_url = format!("http://{address}");
        config.chain.allow_insecure_http = true;
        config.chain.request_timeout_seconds = 5;
        config.chain.rate_limit_wait_seconds = 0;
        let client = ChainClient::with_retry(
            &config.chain,
            RetryPolicy {
                attempts: 1,
                first_backoff: Duration::from_millis(1),
            },
        )
        .unwrap();
        Hostile { answer, client }
    }
}

#[test]
fn every_chain_answer_is_read_or_refused_without_panic() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hostile = runtime.block_on(Hostile::start());
    let statuses = prop_oneof![Just(200u16), Just(404), Just(500), Just(429)];
    let bodies = prop_oneof![
        any_body(&["ok", "result", "error"]),
        shaped_json(&["ok", "result", "error"]).prop_map(|mut v| {
            v["ok"] = Value::from(true);
            v.to_string().into_bytes()
        }),
        proptest::collection::vec(
            shaped_json(&[
                "block",
                "transactions",
                "validator",
                "stake",
                "totalStake",
                "vote"
            ]),
            0..4
        )
        .prop_map(|blocks| serde_json::json!({"ok": true, "result": blocks})
            .to_string()
            .into_bytes()),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&(statuses, bodies), |(status, body)| {
            *hostile.answer.lock().unwrap() = (status, body);
            runtime.block_on(async {
                let c = &hostile.client;
                if let Err(e) = c.blocks_details(20001, 5).await {
                    assert!(e.to_string().contains("get_blocks_details"), "{e}");
                }
                if let Err(e) = c.validators_info(INODE).await {
                    assert!(e.to_string().contains("get_validators_info"), "{e}");
                }
                if let Err(e) = c.address_info(INODE).await {
                    assert!(e.to_string().contains("get_address_info"), "{e}");
                }
                if let Err(e) = c.transaction_status(&"ab".repeat(32)).await {
                    assert!(e.to_string().contains("get_transaction"), "{e}");
                }
                let _ = c.push_transaction("00", &"ab".repeat(32)).await;
            });
            Ok(())
        })
        .unwrap();
}
