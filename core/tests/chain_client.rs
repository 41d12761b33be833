//! The chain API client against a local HTTP server: exact response shapes, timeouts, retries on
//! 5xx, malformed answers, and no credentials in messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use minerpool_core::chain::{ChainClient, ChainError, RetryPolicy};
use minerpool_core::config::Config;
use minerpool_core::money::Amount;

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

fn client(api_url: &str, timeout_seconds: u64) -> ChainClient {
    let mut config = Config::with_wallets("inode", "reward");
    config.chain.api_url = api_url.into();
    config.chain.allow_insecure_http = true;
    config.chain.request_timeout_seconds = timeout_seconds;
    ChainClient::with_retry(
        &config.chain,
        RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(10),
        },
    )
    .unwrap()
}

fn units(text: &str) -> Amount {
    Amount::parse(text).unwrap()
}

const BLOCKS: &str = r#"{"ok": true, "result": [
  {"block": {"id": 20001, "hash": "b1", "content": "00", "address": "miner", "random": 1,
             "difficulty": 6.5, "reward": 6.0, "timestamp": 1717245296},
   "transactions": [
     {"is_coinbase": true, "hash": "c1", "block_hash": "b1", "block_no": 20001,
      "datetime": "2024-06-01T12:34:56", "outputs": [{"address": "miner", "amount": 6.0, "type": "REGULAR"}]},
     {"is_coinbase": false, "hash": "t1", "block_hash": "b1", "block_no": 20001,
      "datetime": "2024-06-01T12:34:56", "message": null, "transaction_type": "REGULAR",
      "is_confirm": true,
      "inputs": [{"index": 0, "tx_hash": "p0", "address": "payer", "amount": 12.5}],
      "delta": null, "fees": 0,
      "outputs": [{"address": "inode", "amount": 12.1, "type": "REGULAR"},
                  {"address": "payer", "amount": 0.4, "type": "REGULAR"},
                  {"address": "inode", "amount": 1e-08, "type": "REGULAR"}]}
   ]}
]}"#;

#[tokio::test]
async fn blocks_details_are_read_with_exact_amounts() {
    let url = serve(Router::new().route(
        "/get_blocks_details",
        get(|| async { ([("content-type", "application/json")], BLOCKS) }),
    ))
    .await;
    let blocks = client(&url, 5).blocks_details(20001, 10).await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].block.id, 20001);
    let tx = &blocks[0].transactions[1];
    assert_eq!(tx.hash, "t1");
    assert_eq!(tx.transaction_type.as_deref(), Some("REGULAR"));
    assert_eq!(tx.inputs[0].address.as_deref(), Some("payer"));
    let amounts: Vec<Amount> = tx.outputs.iter().map(|o| o.amount).collect();
    assert_eq!(
        amounts,
        vec![units("12.1"), units("0.4"), units("0.00000001")]
    );
    assert!(blocks[0].transactions[0].is_coinbase);
}

#[tokio::test]
async fn the_query_carries_offset_and_limit() {
    let url = serve(Router::new().route(
        "/get_blocks_details",
        get(|q: axum::extract::RawQuery| async move {
            assert_eq!(q.0.as_deref(), Some("offset=20005&limit=7"));
            (
                [("content-type", "application/json")],
                r#"{"ok": true, "result": []}"#,
            )
        }),
    ))
    .await;
    assert!(
        client(&url, 5)
            .blocks_details(20005, 7)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn validators_info_is_a_bare_array() {
    let body = r#"[{"validator": "v1", "vote": [{"wallet": "inode", "vote_count": 10, "tx_hash": "h", "index": 0},
                                            {"wallet": "inode", "vote_count": 2.5, "tx_hash": "h2", "index": 1}],
                   "totalStake": 1234.5},
                  {"validator": "v2", "vote": [], "totalStake": 7}]"#;
    let url = serve(Router::new().route(
        "/get_validators_info",
        get(move |q: axum::extract::RawQuery| async move {
            assert_eq!(q.0.as_deref(), Some("inode=inode"));
            ([("content-type", "application/json")], body)
        }),
    ))
    .await;
    let validators = client(&url, 5).validators_info("inode").await.unwrap();
    assert_eq!(validators.len(), 2);
    assert_eq!(validators[0].validator, "v1");
    assert_eq!(validators[0].total_stake, units("1234.5"));
    assert_eq!(validators[0].vote[1].vote_count, units("2.5"));
    assert_eq!(validators[1].total_stake, units("7"));
}

#[tokio::test]
async fn a_slow_chain_times_out_with_the_url_named() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let url = serve(Router::new().route(
        "/get_blocks_details",
        get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }
        }),
    ))
    .await;
    let err = client(&url, 1).blocks_details(1, 1).await.unwrap_err();
    assert!(matches!(err, ChainError::Timeout { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("/get_blocks_details?offset=1&limit=1"),
        "{message}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "reads are retried, a bounded number of times"
    );
}

#[tokio::test]
async fn a_5xx_is_retried_and_then_succeeds() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let url = serve(Router::new().route(
        "/get_blocks_details",
        get(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        r#"{"ok": false, "error": "Exception: "}"#,
                    )
                        .into_response()
                } else {
                    ([("content-type", "application/json")], BLOCKS).into_response()
                }
            }
        }),
    ))
    .await;
    let blocks = client(&url, 5).blocks_details(20001, 10).await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_lasting_5xx_names_url_and_status() {
    let url = serve(Router::new().route(
        "/get_blocks_details",
        get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
    ))
    .await;
    let err = client(&url, 5).blocks_details(3, 2).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ChainError::Status { status: 502, .. }),
        "{err:?}"
    );
    assert!(message.contains("HTTP 502"), "{message}");
    assert!(message.contains("get_blocks_details"), "{message}");
    assert!(message.contains("upstream down"), "{message}");
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let url = serve(Router::new().route(
        "/get_blocks_details",
        get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::FORBIDDEN,
                    r#"{"ok": false, "error": "Access forbidden."}"#,
                )
            }
        }),
    ))
    .await;
    let err = client(&url, 5).blocks_details(3, 2).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Status { status: 403, .. }),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_answers_are_clear_errors() {
    let cases: Vec<(&'static str, &'static str)> = vec![
        ("{not json", "malformed response"),
        (r#"{"ok": true}"#, "no \"result\""),
        (
            r#"{"ok": false, "error": "Block not found"}"#,
            "Block not found",
        ),
        (
            r#"{"ok": true, "result": {"block": 1}}"#,
            "malformed response",
        ),
        (
            r#"{"ok": true, "result": [{"block": {"id": 5, "hash": "h"}, "transactions": []}]}"#,
            "block 5 has no transactions",
        ),
        (
            r#"{"ok": true, "result": [{"block": {"id": 5, "hash": "h"}}]}"#,
            "missing field `transactions`",
        ),
        (
            r#"{"ok": true, "result": [{"block": {"id": 2, "hash": "h"}, "transactions": [{"hash": "t"}]}]}"#,
            "out of order",
        ),
    ];
    for (body, expected) in cases {
        let url = serve(Router::new().route(
            "/get_blocks_details",
            get(move || async move { ([("content-type", "application/json")], body) }),
        ))
        .await;
        let err = client(&url, 5).blocks_details(5, 10).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{body}: {message}");
        assert!(message.contains("get_blocks_details"), "{body}: {message}");
    }
}

/// An output whose amount cannot be read does not refuse the whole answer (one odd transaction
/// must not stop a block's income): it is listed with what was wrong, and whoever reads the
/// transaction decides what that means (income unknown, a spend that cannot be adopted).
#[tokio::test]
async fn an_output_that_cannot_be_read_is_named_not_refused() {
    for (amount, expected) in [("0.123456789", "more than 8 decimals"), ("-1", "negative")] {
        let body: &'static str = Box::leak(
            format!(
                r#"{{"ok": true, "result": [{{"block": {{"id": 5, "hash": "h"}}, "transactions": [
                {{"hash": "t", "outputs": [{{"address": "a", "amount": {amount}}}, {{"address": "b", "amount": 1}}]}}]}}]}}"#
            )
            .into_boxed_str(),
        );
        let url = serve(Router::new().route(
            "/get_blocks_details",
            get(move || async move { ([("content-type", "application/json")], body) }),
        ))
        .await;
        let blocks = client(&url, 5).blocks_details(5, 10).await.unwrap();
        let tx = &blocks[0].transactions[0];
        assert_eq!(tx.outputs.len(), 1, "the readable output is read");
        assert_eq!(tx.unreadable_outputs.len(), 1);
        let unread = &tx.unreadable_outputs[0];
        assert_eq!((unread.index, unread.address.as_deref()), (0, Some("a")));
        assert!(
            unread.error.contains(expected),
            "{amount}: {}",
            unread.error
        );
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let url = serve(Router::new().route(
        "/get_validators_info",
        get(|| async { "[".repeat(minerpool_core::chain::MAX_RESPONSE_BYTES + 1) }),
    ))
    .await;
    let err = client(&url, 30).validators_info("inode").await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error_without_credentials() {
    let err = client("http://user:hunter2@127.0.0.1:9", 2)
        .blocks_details(1, 1)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ChainError::Transport { .. }), "{err:?}");
    assert!(message.contains("127.0.0.1:9"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

/// A chain API that redirects elsewhere must not make a job fetch another host (an internal
/// address whose answer the job would then log and publish): the redirect fails the read, and
/// the other host is never asked. A redirect on the same host is followed.
#[tokio::test]
async fn redirects_to_another_host_are_refused() {
    let hits = Arc::new(AtomicU32::new(0));
    let elsewhere = serve(Router::new().fallback({
        let hits = hits.clone();
        move || async move {
            hits.fetch_add(1, Ordering::SeqCst);
            BLOCKS
        }
    }))
    .await;
    // The same server under another name is another origin too.
    let renamed = elsewhere.replace("127.0.0.1", "localhost");
    let to_elsewhere = format!("{elsewhere}/get_blocks_details");
    let to_renamed = format!("{renamed}/get_blocks_details");
    let api = serve(
        Router::new()
            .route(
                "/get_blocks_details",
                get(move || async move {
                    (StatusCode::FOUND, [("location", to_elsewhere)]).into_response()
                }),
            )
            .route(
                "/get_validators_info",
                get(move || async move {
                    (StatusCode::TEMPORARY_REDIRECT, [("location", to_renamed)]).into_response()
                }),
            ),
    )
    .await;
    let chain = client(&api, 5);
    let err = chain.blocks_details(20001, 1).await.unwrap_err();
    assert!(
        err.to_string().contains("redirect to another origin"),
        "{err}"
    );
    let err = chain.validators_info("inode").await.unwrap_err();
    assert!(
        err.to_string().contains("redirect to another origin"),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the other host was asked");

    let moved = serve(
        Router::new()
            .route(
                "/get_blocks_details",
                get(|| async {
                    (
                        StatusCode::MOVED_PERMANENTLY,
                        [("location", "/v2/get_blocks_details")],
                    )
                        .into_response()
                }),
            )
            .route("/v2/get_blocks_details", get(|| async { BLOCKS })),
    )
    .await;
    let blocks = client(&moved, 5).blocks_details(20001, 1).await.unwrap();
    assert_eq!(blocks.len(), 1, "a redirect on the same host is followed");
}

/// Plain http is refused unless the config allows it, both by the config check and by the
/// client itself.
#[test]
fn plain_http_needs_allow_insecure_http() {
    let mut config = Config::with_wallets("inode", "reward");
    config.chain.api_url = "http://chain.example".into();
    let Err(err) = ChainClient::new(&config.chain) else {
        panic!("plain http was accepted");
    };
    assert!(matches!(err, ChainError::BadUrl { .. }), "{err}");
    assert!(err.to_string().contains("allowInsecureHttp"), "{err}");
    config.chain.api_url = "https://chain.example".into();
    config.chain.validators_url = Some("http://validators.example/v?inode=".into());
    assert!(
        ChainClient::new(&config.chain).is_err(),
        "the validators URL is held to the same rule"
    );
    config.chain.allow_insecure_http = true;
    ChainClient::new(&config.chain).expect("allowed");
}
