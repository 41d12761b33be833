//! The whole flow, headless, against the real binaries: the chain simulator pays the iNode,
//! `minerpool-node standalone` scans and credits, validators report over the WebSocket, and the
//! numbers must agree to the unit.

mod browser;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bson::{Document, doc};
use futures::{SinkExt, StreamExt};
use minerpool_core::config::Config;
use minerpool_core::config::Sender;
use minerpool_core::money::Amount;
use minerpool_core::rewards::{
    Percentages, PoolWeight, ValidatorWeight, credits_by_address, distribute, income_by_block,
};
use minerpool_core::scoring::decayed_pool_score;
use minerpool_core::store::Store;
use minerpool_core::store::history::{HOUR_MS, Hours};
use minerpool_core::store::ledger::{Balance, RewardDistribution};
use minerpool_core::store::names;
use minerpool_core::testing::{fresh_store, mongodb_uri};
use minerpool_core::upow::{address_of, parse_private_key};
use minerpool_tests::chain_sim::{
    ChainSim, Scenario, SimBlock, SimOutput, SimTransaction, SimUtxo, SimValidator, TxState,
};
use minerpool_tests::fixtures::*;
use minerpool_tests::free_port;
use minerpool_tests::wait::{self, DEADLINE};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A binary of the workspace, next to this test's own directory (`target/<profile>/`).
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo nextest run --workspace` (or `cargo build -p minerpool-node`)",
        path.display()
    );
    path
}

fn amount(text: &str) -> Amount {
    Amount::parse(text).unwrap()
}

/// Five blocks, each paying the iNode once, then ten that pay it nothing and settle the five
/// (`rewards.confirmations`, default 10).
fn chain() -> (Scenario, i64) {
    let paid = ["12.5", "0.1", "0.2", "7.00000001", "3.33333333"];
    let blocks = paid
        .iter()
        .enumerate()
        .map(|(i, a)| SimBlock {
            id: 20001 + i as u64,
            hash: None,
            timestamp: minerpool_tests::chain_sim::now_seconds(),
            transactions: vec![SimTransaction {
                hash: format!("e2e-{i}"),
                coinbase: false,
                transaction_type: Some("REGULAR".into()),
                inputs: vec![PAYER.into()],
                outputs: vec![SimOutput {
                    address: INODE.into(),
                    amount: amount(a),
                    output_type: "REGULAR".into(),
                }],
                spent: vec![],
            }],
        })
        .chain((20006..=20015).map(|id| {
            SimBlock::new(
                id,
                vec![SimTransaction {
                    hash: format!("e2e-coinbase-{id}"),
                    coinbase: true,
                    transaction_type: None,
                    inputs: vec![],
                    outputs: vec![SimOutput {
                        address: PAYER.into(),
                        amount: amount("6"),
                        output_type: "REGULAR".into(),
                    }],
                    spent: vec![],
                }],
            )
        }))
        .collect();
    let total = paid.iter().map(|a| amount(a).units()).sum();
    let validators = vec![
        SimValidator {
            address: VALIDATOR_1.into(),
            stake: amount("600"),
            votes: vec![],
        },
        SimValidator {
            address: VALIDATOR_2.into(),
            stake: amount("300"),
            votes: vec![],
        },
        SimValidator {
            address: VALIDATOR_3.into(),
            stake: amount("100"),
            votes: vec![],
        },
    ];
    (
        Scenario {
            blocks,
            validators,
            utxos: vec![],
        },
        total,
    )
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn send(ws: &str, message: Value) -> String {
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
    match socket.next().await {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("no text reply: {other:?}"),
    }
}

#[tokio::test]
async fn income_is_credited_to_the_unit_and_scores_follow_the_rules() {
    let store = fresh_store("end_to_end").await;
    let (scenario, total) = chain();
    let sim = ChainSim::start(scenario).await;
    let (http_port, ws_port) = (free_port(), free_port());
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.chain.api_url = sim.url.clone();
    config.chain.allow_insecure_http = true;
    config.rewards.blocks_per_run = 2;
    config.node.http_address = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.node.websocket_address = format!("127.0.0.1:{ws_port}").parse().unwrap();
    config.schedule.rewards_seconds = 1;
    config.schedule.validators_seconds = 1;
    config.schedule.decay_seconds = 3;
    let node = standalone(&config, &[("MINERPOOL_ADMIN_TOKEN", "e2e-token")]).await;
    let api = format!("http://127.0.0.1:{http_port}");
    let ws = format!("ws://127.0.0.1:{ws_port}");

    let added = reqwest::Client::new()
        .post(format!("{api}/api/v1/pools"))
        .bearer_auth("e2e-token")
        .json(&json!({ "address": POOL_A }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status().as_u16(), 201);

    let validators = format!("{api}/validators");
    wait::until(
        "the validators job to list the validators",
        DEADLINE,
        || get(&validators),
        |v| v.as_object().is_some_and(|o| o.len() == 3),
    )
    .await;
    // The node's cached registry follows the database within moments: until it has, a
    // validator is not found yet, and a real one would send its PING again.
    for v in [VALIDATOR_1, VALIDATOR_2] {
        let ping = json!({ "type": "PING", "validator_wallet": v, "ip": "10.0.0.1", "port": 5502 });
        wait::until(
            "the node to know the validator",
            DEADLINE,
            || send(&ws, ping.clone()),
            |pong| {
                assert!(
                    pong == "SUCCESS: Pong" || pong == "ERROR: Validator not found",
                    "{pong}"
                );
                pong == "SUCCESS: Pong"
            },
        )
        .await;
    }
    // 60 % adds ceil(60/5) = 12, 30 % adds 6.
    let reply = send(&ws, json!({ "type": "TASK", "pool_wallet": POOL_A, "validator_wallet": VALIDATOR_1, "val_id": "e1" })).await;
    assert_eq!(reply, "SUCCESS: e1");
    let reply = send(&ws, json!({ "type": "TASK", "pool_wallet": POOL_A, "validator_wallet": VALIDATOR_2, "val_id": "e2" })).await;
    assert_eq!(reply, "SUCCESS: e2");
    let pool = get(&format!("{api}/api/v1/pools/{POOL_A}")).await;
    let score = pool["score"].as_i64().unwrap();
    let mut allowed = vec![18];
    while *allowed.last().unwrap() > 0 {
        allowed.push(decayed_pool_score(*allowed.last().unwrap()));
    }
    assert!(
        allowed.contains(&score),
        "score {score} follows TASK then decay: {allowed:?}"
    );
    wait::until(
        "a decay run to lower the pool score",
        DEADLINE,
        || async {
            let pool = get(&format!("{api}/api/v1/pools/{POOL_A}")).await;
            let now = pool["score"].as_i64().unwrap();
            assert!(
                allowed.contains(&now),
                "score {now} is on the decay path {allowed:?}"
            );
            now
        },
        |&now| now < 18,
    )
    .await;

    // The height moves in the same transaction as the credits: these stats show them all.
    let stats_url = format!("{api}/api/v1/stats");
    let stats = wait::until(
        "the chain to be scanned",
        DEADLINE,
        || get(&stats_url),
        |stats| stats["lastScannedHeight"] == 20005,
    )
    .await;
    let total_text = Amount::from_units(total).unwrap().to_string();
    assert_eq!(stats["received"], total_text, "{stats}");
    assert_eq!(stats["credited"], total_text, "{stats}");

    // The API agrees with the database, and the database with the chain, to the unit.
    let balances: Vec<Document> = futures::TryStreamExt::try_collect(
        store
            .collection::<Document>(names::BALANCES)
            .find(doc! {})
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let pending: i64 = balances.iter().map(|b| b.get_i64("pending").unwrap()).sum();
    assert_eq!(pending, total);
    assert_eq!(stats["pending"], total_text);
    let distributions: Vec<Document> = futures::TryStreamExt::try_collect(
        store
            .collection::<Document>(names::REWARD_DISTRIBUTIONS)
            .find(doc! {})
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let mut received = 0;
    for d in &distributions {
        let lines: i64 = d
            .get_array("lines")
            .unwrap()
            .iter()
            .map(|l| l.as_document().unwrap().get_i64("units").unwrap())
            .sum();
        assert_eq!(lines, d.get_i64("received").unwrap(), "conservation");
        received += lines;
    }
    assert_eq!(received, total);

    // The dashboard shows what the API shows.
    let overview = page(&format!("{api}/")).await;
    for (id, field) in [
        ("received", "received"),
        ("credited", "credited"),
        ("pending", "pending"),
        ("in-flight", "inFlight"),
        ("paid", "paid"),
        ("fees-spent", "feesSpent"),
    ] {
        assert_eq!(text_of(&overview, id), stats[field], "{id} on the overview");
    }
    assert_eq!(text_of(&overview, "last-scanned"), "20005");
    // How far behind: the rewards job's last answer from the chain, which goes past the last
    // scanned block by the confirmations it waits for.
    let chain = stats["chainHeight"]
        .as_i64()
        .expect("the chain height seen");
    assert!(chain > 20005, "{stats}");
    assert_eq!(
        text_of(&overview, "behind"),
        format!("{} blocks", chain - 20005)
    );
    assert_eq!(text_of(&overview, "chain-height"), chain.to_string());
    assert!(
        overview.contains("<rect") && !overview.contains("id=\"no-income\""),
        "the income chart has bars: {overview}"
    );
    // Decay runs every few seconds: the page's score is the API's just before or just after.
    let before = get(&format!("{api}/api/v1/pools/{POOL_A}")).await["score"].clone();
    let pools = page(&format!("{api}/pools")).await;
    let after = get(&format!("{api}/api/v1/pools/{POOL_A}")).await["score"].clone();
    assert!(
        [before, after]
            .iter()
            .any(|score| pools.contains(&format!("<td class=\"score\">{score}</td>"))),
        "{pools}"
    );
    let credited = balances[0].get_str("address").unwrap().to_owned();
    let address = page(&format!("{api}/address/{credited}")).await;
    let balance = get(&format!("{api}/api/v1/balances/{credited}")).await;
    assert_eq!(text_of(&address, "pending"), balance["pending"]);
    assert_eq!(text_of(&address, "paid"), balance["paid"]);
    let listed = page(&format!("{api}/distributions")).await;
    assert_eq!(
        listed.matches("<tr><td>").count(),
        distributions.len(),
        "{listed}"
    );

    // Each credit line of the address, summed, is what it was credited: its balance.
    let credits = get(&format!("{api}/api/v1/credits/{credited}?limit=200")).await;
    let lines = credits["credits"].as_array().unwrap();
    let credited_units: i64 = lines.iter().map(|c| units_of(&c["amount"])).sum();
    assert_eq!(
        credited_units,
        units_of(&balance["pending"]) + units_of(&balance["paid"]),
        "{credits}"
    );
    assert_eq!(
        address.matches("<td class=\"amount\">").count(),
        lines.len(),
        "every credit line on the address page: {address}"
    );
    // Its earnings per hour add up to the same, on the page and in the API.
    let history = get(&format!("{api}/api/v1/history/{credited}")).await;
    let earned: i64 = history["earned"]
        .as_array()
        .unwrap()
        .iter()
        .map(units_of)
        .sum();
    assert_eq!(earned, credited_units, "{history}");
    assert_eq!(chart_total(&address, "earnings-chart"), earned, "{address}");

    // The pool's page: its score and its score chart, recorded by the decay runs.
    let pool_page = page(&format!("{api}/pool/{POOL_A}")).await;
    let shown: i64 = text_of(&pool_page, "score").parse().unwrap();
    assert!(allowed.contains(&shown), "{shown} on the decay path");
    // Two hours, in case the hour turned since the last decay run.
    let scores = get(&format!("{api}/api/v1/history/{POOL_A}?hours=2")).await;
    let recorded: Vec<i64> = scores["poolScore"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(!recorded.is_empty(), "a score recorded: {scores}");
    assert!(recorded.iter().all(|s| allowed.contains(s)), "{scores}");
    assert!(
        pool_page.contains("id=\"score-chart\"") && !pool_page.contains("id=\"no-scores\""),
        "{pool_page}"
    );
    // A validator's page: its percentage as the API gives it, online as recorded.
    let validator = get(&format!("{api}/api/v1/validators/{VALIDATOR_1}")).await;
    let validator_page = page(&format!("{api}/validator/{VALIDATOR_1}")).await;
    assert_eq!(
        text_of(&validator_page, "percentage"),
        format!("{} %", validator["percentage"].as_str().unwrap())
    );
    let online = get(&format!("{api}/api/v1/history/{VALIDATOR_1}?hours=2")).await;
    assert!(
        online["validatorScore"]
            .as_array()
            .unwrap()
            .contains(&json!(1)),
        "it sent a TASK: {online}"
    );
    // Every payout batch the API lists is on the page (none here: nothing reached the minimum).
    let batches = get(&format!("{api}/api/v1/payout-batches?limit=200")).await;
    let batch_page = page(&format!("{api}/payouts")).await;
    let listed = batches["batches"].as_array().unwrap().len();
    assert_eq!(batch_page.matches("<td class=\"state\">").count(), listed);
    if listed == 0 {
        assert!(batch_page.contains("No payout batch yet"), "{batch_page}");
    }
    in_a_browser(&api, &stats, &credited).await;

    stop(node).await;
}

/// The same pages in headless Chromium on a phone-sized screen: the figures of `/api/v1`, a
/// drawn chart, navigation, a refresh without reload, and a friendly 404. Screenshots of each
/// page go to `target/screenshots/`.
async fn in_a_browser(api: &str, stats: &Value, credited: &str) {
    use fantoccini::Locator;
    let browser = browser::Browser::start().await;
    let c = &browser.client;
    let loaded_at = bson::DateTime::now();
    c.goto(&format!("{api}/")).await.unwrap();
    for id in ["received", "credited", "pending", "paid"] {
        let shown = c.find(Locator::Id(id)).await.unwrap().text().await.unwrap();
        assert_eq!(shown, stats[id], "#{id} in the browser");
    }
    let drawn = browser
        .eval(
            "const bars = [...document.querySelectorAll('#income-chart rect')];
             return [bars.length, bars.filter(b => b.getBoundingClientRect().height > 0).length,
                     document.getElementById('income-chart').getBoundingClientRect().width];",
        )
        .await;
    assert_eq!(drawn[0], 48, "one bar an hour: {drawn}");
    assert!(drawn[1].as_u64().unwrap() >= 1, "a bar is drawn: {drawn}");
    assert!(
        drawn[2].as_f64().unwrap() > 300.0,
        "the chart fills the screen: {drawn}"
    );
    let overflow = browser.overflow().await;
    assert!(overflow <= 0, "the page fits a phone screen: {overflow}");
    browser.screenshot("overview").await;
    let income = get(&format!("{api}/api/v1/income?hours=48")).await;
    check_axes(&browser, "income-chart", &income["received"], loaded_at).await;
    browser.resize(1280, 900).await;
    c.refresh().await.unwrap();
    check_axes(&browser, "income-chart", &income["received"], loaded_at).await;
    browser.screenshot("overview-desktop").await;
    browser.resize(390, 844).await;
    c.refresh().await.unwrap();

    // The page refreshes its content in place: a value set on the window survives it.
    browser
        .eval("window.marker = 1; document.getElementById('main').dataset.seen = 'old'; return 0;")
        .await;
    let refreshed = browser::wait_for(
        &browser,
        "return document.getElementById('main').dataset.seen === undefined && window.marker === 1;",
        Duration::from_secs(25),
    )
    .await;
    assert!(refreshed, "the content was replaced without a reload");

    // Through the navigation: each link opens its page, whose table is there.
    for (link, table, path) in [
        ("Pools", "pools", "/pools"),
        ("Validators", "validators", "/validator-list"),
        ("Distributions", "distributions", "/distributions"),
        ("Payouts", "main", "/payouts"),
    ] {
        c.find(Locator::LinkText(link))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait().for_element(Locator::Id(table)).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), path);
        browser.screenshot(table).await;
    }

    c.goto(&format!("{api}/address/{credited}")).await.unwrap();
    let pending = c
        .find(Locator::Id("pending"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let balance = get(&format!("{api}/api/v1/balances/{credited}")).await;
    assert_eq!(pending, balance["pending"]);
    let earnings = browser
        .eval("return document.querySelectorAll('#earnings-chart rect').length;")
        .await;
    assert!(
        earnings.as_u64().unwrap() >= 1,
        "its earnings are drawn: {earnings}"
    );
    browser.screenshot("address").await;

    // From the pools list to a pool's page, whose charts are drawn.
    c.goto(&format!("{api}/pools")).await.unwrap();
    c.find(Locator::LinkText(POOL_A))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("score-chart"))
        .await
        .unwrap();
    assert_eq!(
        c.current_url().await.unwrap().path(),
        format!("/pool/{POOL_A}")
    );
    let bars = browser
        .eval(
            "return ['score-chart', 'earnings-chart'].map(id =>
               [...document.querySelectorAll('#' + id + ' rect')]
                 .filter(b => b.getBoundingClientRect().height > 0).length);",
        )
        .await;
    assert!(bars[0].as_u64().unwrap() >= 1, "a score is drawn: {bars}");
    // A week: a tick each midnight, labelled with the day of the month.
    let week = readable_labels(&browser, "score-chart").await;
    assert_eq!(week[1].len(), 7, "{week:?}");
    browser.screenshot("pool").await;
    c.goto(&format!("{api}/validator-list")).await.unwrap();
    c.find(Locator::LinkText(VALIDATOR_1))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("online")).await.unwrap();
    let validator = get(&format!("{api}/api/v1/validators/{VALIDATOR_1}")).await;
    let shown = c
        .find(Locator::Id("percentage"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        shown,
        format!("{} %", validator["percentage"].as_str().unwrap())
    );
    browser.screenshot("validator").await;

    c.goto(&format!("{api}/address/{PAYER}")).await.unwrap();
    let unknown = c
        .find(Locator::Id("unknown"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(unknown.contains("has no record of"), "{unknown}");
    browser.screenshot("unknown-address").await;
    browser.close().await;
}

/// The labels of chart `id` (amount, time, date) as the browser lays them out, each readable:
/// at least 11 px, inside the window; the time labels clear of each other and of the `UTC`
/// beside them.
async fn readable_labels(browser: &browser::Browser, id: &str) -> Vec<Vec<String>> {
    let laid_out = browser
        .eval(&format!(
            "return ['amount', 'time', 'date', 'unit'].map(kind =>
               [...document.querySelectorAll('#{id} text.' + kind)].map(t => {{
                 const r = t.getBoundingClientRect();
                 return [t.textContent, r.left, r.right, parseFloat(getComputedStyle(t).fontSize)];
               }}));"
        ))
        .await;
    let width = browser.eval("return window.innerWidth;").await;
    let width = width.as_f64().unwrap();
    let kinds: Vec<&Vec<Value>> = laid_out
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_array().unwrap())
        .collect();
    let number = |v: &Value| v.as_f64().unwrap();
    for label in kinds.iter().copied().flatten() {
        assert!(
            number(&label[3]) >= 11.0 && number(&label[1]) >= 0.0 && number(&label[2]) <= width,
            "{label} is readable in a {width} px window"
        );
    }
    assert_eq!(kinds[3].len(), 1, "one UTC: {laid_out}");
    let mut row = vec![&kinds[3][0]];
    row.extend(kinds[1]);
    for pair in row.windows(2) {
        assert!(
            number(&pair[0][2]) + 4.0 <= number(&pair[1][1]),
            "time labels clear of each other in {id}: {pair:?}"
        );
    }
    kinds
        .iter()
        .take(3)
        .map(|kind| {
            kind.iter()
                .map(|l| l[0].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The axes of chart `id`, readable ([`readable_labels`]): the amount labels evenly spaced
/// "nice" coins (1, 2 or 5 × 10^k smallest units) from 0 to the first step at or above the
/// highest of `hourly` (API amounts); the time labels the UTC hours that are multiples of 12
/// (the overview's 48 hours, as loaded at `loaded_at` or since), today's date among the dates.
async fn check_axes(
    browser: &browser::Browser,
    id: &str,
    hourly: &Value,
    loaded_at: bson::DateTime,
) {
    let labels = readable_labels(browser, id).await;
    let amounts: Vec<i64> = labels[0].iter().map(|t| amount(t).units()).collect();
    assert!(amounts.len() >= 2 && amounts[0] == 0, "{amounts:?}");
    let step = amounts[1];
    assert!(
        amounts.windows(2).all(|p| p[1] - p[0] == step),
        "evenly spaced: {amounts:?}"
    );
    assert!(
        ["1", "2", "5"].contains(&step.to_string().trim_end_matches('0')),
        "a nice step: {amounts:?}"
    );
    let highest = hourly
        .as_array()
        .unwrap()
        .iter()
        .map(units_of)
        .max()
        .unwrap();
    let top = *amounts.last().unwrap();
    assert!(
        top >= highest && top - step < highest.max(1),
        "the axis ends at the first step reaching {highest}: {amounts:?}"
    );

    let expected = |now: bson::DateTime| -> Vec<String> {
        let hours = Hours::ending_at(now, 48);
        (0..48)
            .map(|i| hours.first + i * HOUR_MS)
            .filter(|ms| ms % (12 * HOUR_MS) == 0)
            .map(|ms| {
                bson::DateTime::from_millis(ms)
                    .to_chrono()
                    .format("%H:%M")
                    .to_string()
            })
            .collect()
    };
    let shown = &labels[1];
    assert!(
        *shown == expected(loaded_at) || *shown == expected(bson::DateTime::now()),
        "every 12 h in UTC: {shown:?}"
    );
    let today = bson::DateTime::now()
        .to_chrono()
        .format("%-d %b")
        .to_string();
    assert!(labels[2].contains(&today), "{today} in {:?}", labels[2]);
}

/// Smallest units of an API amount ("12.50000000").
fn units_of(amount: &Value) -> i64 {
    amount.as_str().unwrap().replace('.', "").parse().unwrap()
}

/// The sum of a chart's bars, from the exact amounts in their titles ("<hour>: 1.00000000").
fn chart_total(html: &str, id: &str) -> i64 {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let chart = &html[start..start + html[start..].find("</svg>").unwrap()];
    chart
        .split("<title>")
        .skip(1)
        .map(|t| {
            let text = &t[..t.find("</title>").unwrap()];
            units_of(&Value::from(text.rsplit(": ").next().unwrap()))
        })
        .sum()
}

/// A dashboard page's HTML (200 expected).
async fn page(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    response.text().await.unwrap()
}

/// The text of the element with `id`, up to its first tag.
fn text_of(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"))
        + marker.len();
    html[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Starts `minerpool-node standalone` with `config` and extra environment; returns once it is
/// ready.
async fn standalone(config: &Config, env: &[(&str, &str)]) -> tokio::process::Child {
    let config_path = std::env::temp_dir().join(format!("{}.yaml", config.mongodb.database));
    std::fs::write(&config_path, config.to_yaml()).unwrap();
    let mut command = tokio::process::Command::new(workspace_binary("minerpool-node"));
    command
        .args(["standalone", "--config"])
        .arg(&config_path)
        .env("MONGODB_URI", mongodb_uri())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let node = command.spawn().expect("start minerpool-node");
    wait::http_ok(&format!("http://{}/readyz", config.node.http_address)).await;
    node
}

/// SIGTERM: a graceful stop with exit 0.
async fn stop(mut node: tokio::process::Child) {
    let pid = node.id().expect("running") as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), node.wait())
        .await
        .expect("the node stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn standalone_pays_due_balances_on_its_schedule_through_the_chain() {
    let store = fresh_store("end_to_end_payouts").await;
    let key = "0xc0ffee";
    let wallet = address_of(parse_private_key(key).unwrap().verifying_key());
    let sim = ChainSim::start(Scenario {
        utxos: vec![SimUtxo {
            owner: wallet.clone(),
            tx_hash: format!("{:064x}", 1),
            index: 0,
            amount: amount("10"),
        }],
        ..Scenario::default()
    })
    .await;
    let (due, small) = (amount("3"), amount("0.5"));
    for (address, pending) in [(POOL_A, due), (POOL_B, small)] {
        store
            .balances()
            .insert_one(Balance {
                address: address.into(),
                pending: pending.units(),
                paid: 0,
                updated_at: None,
            })
            .await
            .unwrap();
    }
    let http_port = free_port();
    let mut config = Config::with_wallets(&wallet, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.chain.api_url = sim.url.clone();
    config.chain.allow_insecure_http = true;
    config.node.http_address = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.node.websocket_address = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.payouts.sender = Sender::Upow;
    config.payouts.minimum_payout = amount("1");
    config.schedule.payouts_seconds = 1;
    let node = standalone(&config, &[("MINERPOOL_WALLET_KEY", key)]).await;
    let api = format!("http://127.0.0.1:{http_port}");

    wait::until(
        "a scheduled payouts run to push the due balance",
        wait::DEADLINE,
        || async { sim.pending_paid_to(POOL_A) },
        |paid| *paid == (due.units() as u64, 1),
    )
    .await;
    // Pushed, not yet in a block: out of pending, not paid, still credited.
    let stats_url = format!("{api}/api/v1/stats");
    let stats = wait::until(
        "the totals to show the batch in flight",
        wait::DEADLINE,
        || get(&stats_url),
        |stats| stats["inFlight"] == due.to_string(),
    )
    .await;
    let credited = Amount::checked_sum([due, small]).unwrap().to_string();
    assert_eq!(stats["credited"], credited, "{stats}");
    assert_eq!(stats["pending"], small.to_string(), "{stats}");
    assert_eq!(stats["paid"], Amount::ZERO.to_string(), "{stats}");
    let block = sim.mine();
    // Buried as deep as payouts need to count it settled.
    for _ in 0..config.rewards.confirmations {
        sim.mine();
    }
    wait::until(
        "a later run to see it in a block and count it paid",
        wait::DEADLINE,
        || {
            let url = format!("{api}/api/v1/balances/{POOL_A}");
            async move { get(&url).await }
        },
        |balance| balance["paid"] == due.to_string(),
    )
    .await;
    let balance = get(&format!("{api}/api/v1/balances/{POOL_A}")).await;
    assert_eq!(balance["pending"], Amount::ZERO.to_string(), "{balance}");
    let stats = wait::until(
        "the totals to show the batch paid",
        wait::DEADLINE,
        || get(&stats_url),
        |stats| stats["paid"] == due.to_string(),
    )
    .await;
    assert_eq!(stats["inFlight"], Amount::ZERO.to_string(), "{stats}");
    assert_eq!(stats["credited"], credited, "{stats}");
    assert_eq!(sim.confirmed_paid_to(POOL_A), (due.units() as u64, 1));
    let hashes = sim.mined_hashes();
    assert_eq!(hashes.len(), 1, "one transaction in all: {hashes:?}");
    assert_eq!(sim.tx_state(&hashes[0]), TxState::Mined { block });
    // The payout batches page shows it with its transaction, as the API does.
    let batches = get(&format!("{api}/api/v1/payout-batches")).await;
    assert_eq!(
        batches["batches"][0]["txHash"],
        json!(hashes[0]),
        "{batches}"
    );
    let listed = page(&format!("{api}/payouts")).await;
    assert!(listed.contains(&hashes[0]), "{listed}");
    assert!(
        listed.contains("<td class=\"state\">confirmed</td>"),
        "{listed}"
    );
    // Under the minimum: left alone.
    let small_balance = get(&format!("{api}/api/v1/balances/{POOL_B}")).await;
    assert_eq!(
        (&small_balance["pending"], &small_balance["paid"]),
        (&json!(small.to_string()), &json!(Amount::ZERO.to_string()))
    );
    assert_eq!(sim.paid_to(POOL_B), (0, 0));
    stop(node).await;
}

/// A day of income at varied block times, three blocks an hour, credited two blocks a pass (so
/// some passes straddle an hour), as the rewards job records them: what each block paid at its
/// block time, the lines shared out by the rules.
async fn seed_a_day(store: &Store, now: i64) {
    let hour = now - now.rem_euclid(HOUR_MS);
    let blocks: Vec<(i64, i64, Amount)> = (0..72_i64)
        .map(|n| {
            let (h, j) = (23 - n / 3, n % 3);
            let minute = (h * 7) % 14 + j * 20 + (j * h) % 5;
            let units = ((n * 37) % 23 + 3) * 7_654_321 + n;
            (
                30_000 + n,
                hour - h * HOUR_MS + minute * 60_000,
                Amount::from_units(units).unwrap(),
            )
        })
        .filter(|(_, at, _)| *at < now)
        .collect();
    let pools = [
        PoolWeight {
            address: POOL_A.into(),
            score: 5,
        },
        PoolWeight {
            address: POOL_B.into(),
            score: 3,
        },
    ];
    let validators = [
        ValidatorWeight {
            address: VALIDATOR_1.into(),
            hundredths: 6000,
            active: true,
        },
        ValidatorWeight {
            address: VALIDATOR_2.into(),
            hundredths: 3000,
            active: true,
        },
        ValidatorWeight {
            address: VALIDATOR_3.into(),
            hundredths: 1000,
            active: false,
        },
    ];
    let split = Percentages {
        fee: 18,
        pools: 41,
        validators: 41,
    };
    let mut owed: BTreeMap<String, i64> = BTreeMap::new();
    for pass in blocks.chunks(2) {
        let received = Amount::checked_sum(pass.iter().map(|(_, _, a)| *a)).unwrap();
        let lines = distribute(received, split, REWARD, &pools, &validators).unwrap();
        for (address, units) in credits_by_address(&lines) {
            *owed.entry(address.to_owned()).or_default() += units;
        }
        let (first, last) = (pass[0].0, pass[pass.len() - 1].0);
        let time_of = |block: i64| {
            pass.iter()
                .find(|(id, _, _)| *id == block)
                .map(|(_, at, _)| bson::DateTime::from_millis(*at))
        };
        store
            .reward_distributions()
            .insert_one(RewardDistribution {
                id: format!("{first}-{last}"),
                first_block: first,
                last_block: last,
                received: received.units(),
                hashes: pass.iter().map(|(id, _, _)| format!("day-{id}")).collect(),
                lines,
                created_at: bson::DateTime::from_millis(
                    (pass[pass.len() - 1].1 + 180_000).min(now),
                ),
                received_by_block: income_by_block(
                    pass.iter().map(|(id, _, a)| (*id, *a)),
                    time_of,
                )
                .unwrap(),
            })
            .await
            .unwrap();
    }
    store
        .balances()
        .insert_many(owed.into_iter().map(|(address, pending)| Balance {
            address,
            pending,
            paid: 0,
            updated_at: None,
        }))
        .await
        .unwrap();
    store.refresh_totals().await.unwrap();

    // The store's hours are the blocks' hours, to the unit.
    let hours = Hours::ending_at(bson::DateTime::from_millis(now), 48);
    let by_block = hours.sum(blocks.iter().map(|(_, at, a)| (*at, a.units())));
    assert_eq!(store.income_per_hour(hours).await.unwrap(), by_block);
}

/// The overview of a day of income on a phone and on a desktop: the chart by block time, its
/// axes labelled and readable on both. Its screenshots (`overview-day-phone`,
/// `overview-day-desktop`) are the ones under `docs/screenshots/`.
#[tokio::test]
async fn a_day_of_income_is_charted_by_block_time_on_a_phone_and_a_desktop() {
    let store = fresh_store("end_to_end_day").await;
    seed_a_day(&store, bson::DateTime::now().timestamp_millis()).await;
    let sim = ChainSim::start(Scenario::default()).await;
    let http_port = free_port();
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.chain.api_url = sim.url.clone();
    config.chain.allow_insecure_http = true;
    config.node.http_address = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.node.websocket_address = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Nothing reaches it: no payout is tried against the empty chain.
    config.payouts.minimum_payout = amount("1000000");
    let node = standalone(&config, &[]).await;
    let api = format!("http://127.0.0.1:{http_port}");
    let income = get(&format!("{api}/api/v1/income?hours=48")).await;
    let hourly = income["received"].as_array().unwrap();
    assert!(
        hourly.iter().filter(|u| units_of(u) > 0).count() >= 24,
        "a bar for every hour of the day: {income}"
    );

    let browser = browser::Browser::start().await;
    for (width, height, name) in [
        (390, 844, "overview-day-phone"),
        (1280, 900, "overview-day-desktop"),
    ] {
        browser.resize(width, height).await;
        let loaded_at = bson::DateTime::now();
        browser.client.goto(&format!("{api}/")).await.unwrap();
        check_axes(&browser, "income-chart", &income["received"], loaded_at).await;
        let overflow = browser.overflow().await;
        assert!(overflow <= 0, "fits {width} px: {overflow}");
        // The chart in view for the screenshot.
        browser
            .eval("document.getElementById('income-chart').scrollIntoView({block: 'center'}); return 0;")
            .await;
        browser.screenshot(name).await;
    }
    browser.close().await;
    stop(node).await;
}
