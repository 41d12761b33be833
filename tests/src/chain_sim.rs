//! A uPow chain simulator: an HTTP server with the node API's response shapes
//! (upow/TRANSACTIONS.md §8), serving blocks and validators from a scenario or a seeded
//! generator, and failing on request (timeout, HTTP 500, malformed JSON, a block without
//! transactions, a reorganisation, a skipped block, HTTP 429 rate limits) so tests can see how
//! minerpool copes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use minerpool_core::money::{Amount, UNITS_PER_COIN};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What the simulated chain holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub blocks: Vec<SimBlock>,
    #[serde(default)]
    pub validators: Vec<SimValidator>,
    /// Unspent outputs the chain starts with (the iNode wallet's coins, for payouts).
    #[serde(default)]
    pub utxos: Vec<SimUtxo>,
}

/// An unspent output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUtxo {
    pub owner: String,
    pub tx_hash: String,
    pub index: u8,
    pub amount: Amount,
}

/// How `push_tx` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushMode {
    Normal,
    /// Accept the transaction, then never answer (the client times out).
    AcceptThenTimeout,
    /// HTTP 500 without accepting.
    ServerError,
    /// Refuse every transaction ("Transaction has not been added").
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBlock {
    pub id: u64,
    /// `None`: derived from the id (and, after a [`ChainSim::reorg`], from the reorg count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default)]
    pub transactions: Vec<SimTransaction>,
}

impl SimBlock {
    /// A block with the default hash.
    pub fn new(id: u64, transactions: Vec<SimTransaction>) -> SimBlock {
        SimBlock {
            id,
            hash: None,
            transactions,
        }
    }

    /// The hash the chain shows for this block.
    pub fn hash(&self) -> String {
        self.hash
            .clone()
            .unwrap_or_else(|| derived_hash(self.id, 0))
    }
}

/// A block hash from its id and the reorganisation that made it (0: the original chain), so
/// every reorganisation changes the hash of each block it replaces.
fn derived_hash(id: u64, reorg: u64) -> String {
    format!("{reorg:016x}{id:048x}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTransaction {
    pub hash: String,
    #[serde(default)]
    pub coinbase: bool,
    /// `None` renders no `transaction_type` (as coinbases have none).
    #[serde(default)]
    pub transaction_type: Option<String>,
    /// Owners of the spent outputs.
    #[serde(default)]
    pub inputs: Vec<String>,
    pub outputs: Vec<SimOutput>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimOutput {
    pub address: String,
    pub amount: Amount,
    #[serde(default = "regular", rename = "type")]
    pub output_type: String,
}

fn regular() -> String {
    "REGULAR".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimValidator {
    pub address: String,
    pub stake: Amount,
    #[serde(default)]
    pub votes: Vec<Amount>,
}

/// A way to answer badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Answer after an hour (clients time out first).
    Timeout,
    /// HTTP 500 `{"ok": false, "error": "Exception: "}`.
    ServerError,
    /// A body that is not JSON.
    Malformed,
    /// A block without its transactions.
    EmptyBlock,
}

#[derive(Debug, Default)]
struct ChainState {
    blocks: BTreeMap<u64, SimBlock>,
    validators: Vec<SimValidator>,
    /// Failures still to serve, in order, each for so many requests.
    failures: Vec<(Failure, u32)>,
    requests: u64,
    utxos: Vec<SimUtxo>,
    /// Accepted transactions not yet in a block, by hash.
    pending: BTreeMap<String, minerpool_core::upow::Transaction>,
    /// Transactions in a block: hash → block id.
    mined: BTreeMap<String, (u64, minerpool_core::upow::Transaction)>,
    push_mode: Option<PushMode>,
    /// Reorganisations so far (each gives the blocks it replaces new hashes).
    reorgs: u64,
    /// Block ids `get_blocks_details` leaves out.
    skipped: BTreeSet<u64>,
    rate_limits: Option<RateLimits>,
    /// Per rate-limited endpoint: when its current window started and the requests in it.
    windows: BTreeMap<&'static str, (Instant, u32)>,
    /// Requests answered 429.
    rate_limited: u64,
}

/// A rate limit of the node: so many requests per window (fixed windows, as the node's
/// slowapi limiter counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub per_ms: u64,
}

/// Which endpoints answer 429 beyond their limit (TRANSACTIONS.md §8); `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default)]
    pub blocks_details: Option<RateLimit>,
    #[serde(default)]
    pub get_transaction: Option<RateLimit>,
    #[serde(default)]
    pub address_info: Option<RateLimit>,
    /// Send `Retry-After` (whole seconds to the window's end). The node does not (slowapi's
    /// headers are off), so the default is without.
    #[serde(default)]
    pub retry_after: bool,
}

impl RateLimits {
    /// The node's own limits: `get_blocks_details` 10 a minute, `get_transaction` 2 a second,
    /// `get_address_info` 15 a second.
    pub fn node() -> RateLimits {
        RateLimits::node_scaled(1000)
    }

    /// The node's request counts with every window `1/factor`-th as long (`node_scaled(60)`:
    /// 10 `get_blocks_details` a second), so tests need not wait a real minute.
    pub fn node_scaled(factor: u64) -> RateLimits {
        let limit = |requests, per_ms: u64| {
            Some(RateLimit {
                requests,
                per_ms: (per_ms * 1000 / factor.max(1)).max(1),
            })
        };
        RateLimits {
            blocks_details: limit(10, 60_000),
            get_transaction: limit(2, 1000),
            address_info: limit(15, 1000),
            retry_after: false,
        }
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct ChainSim {
    pub url: String,
    state: Arc<Mutex<ChainState>>,
}

impl ChainSim {
    /// Serves `scenario` on a free loopback port.
    pub async fn start(scenario: Scenario) -> ChainSim {
        ChainSim::serve("127.0.0.1:0".parse().expect("address"), scenario)
            .await
            .expect("bind a loopback port")
    }

    /// Serves `scenario` on `address`.
    pub async fn serve(address: SocketAddr, scenario: Scenario) -> std::io::Result<ChainSim> {
        let state = Arc::new(Mutex::new(ChainState {
            blocks: scenario.blocks.into_iter().map(|b| (b.id, b)).collect(),
            validators: scenario.validators,
            utxos: scenario.utxos,
            ..ChainState::default()
        }));
        let listener = tokio::net::TcpListener::bind(address).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "chain simulator stopped");
            }
        });
        Ok(ChainSim { url, state })
    }

    /// The next `times` requests to the chain endpoints fail with `failure`.
    pub fn fail_next(&self, failure: Failure, times: u32) {
        self.lock().failures.push((failure, times));
    }

    pub fn add_block(&self, block: SimBlock) {
        self.lock().blocks.insert(block.id, block);
    }

    pub fn set_validators(&self, validators: Vec<SimValidator>) {
        self.lock().validators = validators;
    }

    /// The highest block id, if any.
    pub fn tip(&self) -> Option<u64> {
        self.lock().blocks.keys().next_back().copied()
    }

    /// The hash the chain shows for block `id`, if it has one.
    pub fn block_hash(&self, id: u64) -> Option<String> {
        self.lock().blocks.get(&id).map(SimBlock::hash)
    }

    /// A reorganisation from `from_height` on: see [`reorg`].
    pub fn reorg(&self, from_height: u64, replacements: Vec<SimBlock>) -> Result<(), String> {
        reorg(&mut self.lock(), from_height, replacements)
    }

    /// `get_blocks_details` leaves block `id` out of its answers from now on.
    pub fn skip(&self, id: u64) {
        self.lock().skipped.insert(id);
    }

    /// Rate limits from now on (`None`: none, the default).
    pub fn set_rate_limits(&self, limits: Option<RateLimits>) {
        let mut state = self.lock();
        state.rate_limits = limits;
        state.windows.clear();
    }

    /// Requests answered HTTP 429 so far.
    pub fn rate_limited(&self) -> u64 {
        self.lock().rate_limited
    }

    /// How the next pushes are answered.
    pub fn set_push_mode(&self, mode: PushMode) {
        self.lock().push_mode = Some(mode);
    }

    /// Puts every pending transaction into a new block.
    pub fn mine(&self) {
        mine(&mut self.lock());
    }

    /// Units paid to `address` by accepted transactions (pending or mined), and how many
    /// transactions paid it.
    pub fn paid_to(&self, address: &str) -> (u64, usize) {
        let state = self.lock();
        let Ok(bytes) = minerpool_core::upow::decode_address(address) else {
            return (0, 0);
        };
        let mut total = 0;
        let mut count = 0;
        for tx in state
            .pending
            .values()
            .chain(state.mined.values().map(|(_, tx)| tx))
        {
            let paid: u64 = tx
                .outputs
                .iter()
                .filter(|o| o.address == bytes)
                .map(|o| o.units)
                .sum();
            if paid > 0 {
                total += paid;
                count += 1;
            }
        }
        (total, count)
    }

    /// Accepted transactions so far (pending and mined).
    pub fn accepted(&self) -> usize {
        let state = self.lock();
        state.pending.len() + state.mined.len()
    }

    /// Requests served to the chain endpoints so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shared = Arc<Mutex<ChainState>>;

fn router(state: Shared) -> Router {
    Router::new()
        .merge(blocks_routes())
        .merge(validators_routes())
        .merge(payer_routes())
        .merge(control_routes())
        .with_state(state)
}

fn blocks_routes() -> Router<Shared> {
    Router::new().route("/get_blocks_details", get(blocks_details))
}

fn validators_routes() -> Router<Shared> {
    Router::new().route("/get_validators_info", get(validators_info))
}

/// What a payer uses: its coins, pushing, and looking a transaction up.
fn payer_routes() -> Router<Shared> {
    Router::new()
        .route("/get_address_info", get(address_info))
        .route("/push_tx", get(push_tx_query).post(push_tx_body))
        .route("/get_transaction", get(get_transaction))
}

/// Test control: failures, blocks and validators, under `/sim/`.
fn control_routes() -> Router<Shared> {
    Router::new()
        .route(
            "/sim/mine",
            post(|State(state): State<Shared>| async move {
                mine(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
                StatusCode::NO_CONTENT
            }),
        )
        .route("/sim/fail", post(control_fail))
        .route("/sim/blocks", post(control_add_block))
        .route("/sim/reorg", post(control_reorg))
        .route("/sim/skip", post(control_skip))
        .route("/sim/rate-limits", put(control_rate_limits))
        .route("/sim/validators", put(control_set_validators))
}

/// Takes the next planned failure, counting the request.
fn next_failure(state: &Shared) -> Option<Failure> {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.requests += 1;
    let (failure, left) = state.failures.first_mut()?;
    let failure = *failure;
    *left -= 1;
    if *left == 0 {
        state.failures.remove(0);
    }
    Some(failure)
}

async fn failure_response(failure: Failure) -> Option<Response> {
    match failure {
        Failure::Timeout => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        }
        Failure::ServerError => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "ok": false, "error": "Exception: " })),
            )
                .into_response(),
        ),
        Failure::Malformed => Some(
            (
                [("content-type", "application/json")],
                "{\"ok\": true, \"result\": [{\"block\"",
            )
                .into_response(),
        ),
        Failure::EmptyBlock => None,
    }
}

#[derive(Deserialize)]
struct BlocksQuery {
    offset: u64,
    limit: usize,
}

async fn blocks_details(State(state): State<Shared>, Query(q): Query<BlocksQuery>) -> Response {
    if let Some(response) = rate_limited(&state, Limited::BlocksDetails) {
        return response;
    }
    let failure = next_failure(&state);
    if let Some(failure) = failure
        && let Some(response) = failure_response(failure).await
    {
        return response;
    }
    let blocks: Vec<Value> = {
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .blocks
            .range(q.offset..)
            .filter(|(id, _)| !state.skipped.contains(id))
            .take(q.limit.min(1000))
            .map(|(_, block)| render_block(block, failure == Some(Failure::EmptyBlock)))
            .collect()
    };
    Json(json!({ "ok": true, "result": blocks })).into_response()
}

#[derive(Deserialize)]
struct ValidatorsQuery {
    #[serde(default)]
    inode: Option<String>,
}

async fn validators_info(
    State(state): State<Shared>,
    Query(q): Query<ValidatorsQuery>,
) -> Response {
    if let Some(failure) = next_failure(&state)
        && let Some(response) = failure_response(failure).await
    {
        return response;
    }
    let state = state.lock().unwrap_or_else(|e| e.into_inner());
    let wallet = q.inode.unwrap_or_default();
    let listed: Vec<Value> = state
        .validators
        .iter()
        .map(|v| {
            json!({
                "validator": v.address,
                "vote": v.votes.iter().enumerate().map(|(i, count)| json!({
                    "wallet": wallet,
                    "vote_count": number(*count),
                    "tx_hash": format!("{:064x}", i),
                    "index": 0,
                })).collect::<Vec<_>>(),
                "totalStake": number(v.stake),
            })
        })
        .collect();
    Json(Value::Array(listed)).into_response()
}

#[derive(Deserialize)]
struct FailRequest {
    mode: Failure,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

async fn control_fail(State(state): State<Shared>, Json(body): Json<FailRequest>) -> StatusCode {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.failures.push((body.mode, body.times.max(1)));
    StatusCode::NO_CONTENT
}

async fn control_add_block(State(state): State<Shared>, Json(block): Json<SimBlock>) -> StatusCode {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.blocks.insert(block.id, block);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReorgRequest {
    from: u64,
    #[serde(default)]
    blocks: Vec<SimBlock>,
}

async fn control_reorg(State(state): State<Shared>, Json(body): Json<ReorgRequest>) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    match reorg(&mut state, body.from, body.blocks) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipRequest {
    id: u64,
}

async fn control_skip(State(state): State<Shared>, Json(body): Json<SkipRequest>) -> StatusCode {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.skipped.insert(body.id);
    StatusCode::NO_CONTENT
}

async fn control_rate_limits(
    State(state): State<Shared>,
    Json(limits): Json<Option<RateLimits>>,
) -> StatusCode {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.rate_limits = limits;
    state.windows.clear();
    StatusCode::NO_CONTENT
}

/// Replaces the chain from `from` on, as a reorganisation does: every block from there gets a
/// new hash, and each of `replacements` (ids ≥ `from`) takes the place of the block with its id
/// (the orphan's transactions vanish with it) or extends the chain.
fn reorg(state: &mut ChainState, from: u64, replacements: Vec<SimBlock>) -> Result<(), String> {
    if let Some(early) = replacements.iter().find(|b| b.id < from) {
        return Err(format!(
            "replacement block {} is below the reorganisation height {from}",
            early.id
        ));
    }
    state.reorgs += 1;
    let generation = state.reorgs;
    for (id, block) in state.blocks.range_mut(from..) {
        block.hash = Some(derived_hash(*id, generation));
    }
    for mut block in replacements {
        block
            .hash
            .get_or_insert_with(|| derived_hash(block.id, generation));
        state.blocks.insert(block.id, block);
    }
    Ok(())
}

/// An endpoint the node rate-limits.
#[derive(Debug, Clone, Copy)]
enum Limited {
    BlocksDetails,
    GetTransaction,
    AddressInfo,
}

/// The node's 429 when `endpoint` is over its limit in the current window, else `None` (the
/// request counts). Called first in each rate-limited handler.
fn rate_limited(state: &Shared, endpoint: Limited) -> Option<Response> {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let limits = state.rate_limits?;
    let (name, limit) = match endpoint {
        Limited::BlocksDetails => ("get_blocks_details", limits.blocks_details?),
        Limited::GetTransaction => ("get_transaction", limits.get_transaction?),
        Limited::AddressInfo => ("get_address_info", limits.address_info?),
    };
    let per = Duration::from_millis(limit.per_ms);
    let now = Instant::now();
    let window = state.windows.entry(name).or_insert((now, 0));
    if now.duration_since(window.0) >= per {
        *window = (now, 0);
    }
    window.1 += 1;
    if window.1 <= limit.requests {
        return None;
    }
    let left = per.saturating_sub(now.duration_since(window.0));
    state.rate_limited += 1;
    let body = Json(json!({
        "error": format!("Rate limit exceeded: {} per {}", limit.requests, period(per)),
    }));
    let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    if limits.retry_after {
        let seconds = left.as_millis().div_ceil(1000).max(1);
        response.headers_mut().insert(
            "retry-after",
            seconds
                .to_string()
                .parse()
                .expect("digits are a header value"),
        );
    }
    Some(response)
}

/// A window as slowapi names it: `1 minute`, `1 second`, or (for shortened test windows)
/// milliseconds.
fn period(per: Duration) -> String {
    let ms = per.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{} minute", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} second", ms / 1000)
    } else {
        format!("{ms} millisecond")
    }
}

async fn control_set_validators(
    State(state): State<Shared>,
    Json(validators): Json<Vec<SimValidator>>,
) -> StatusCode {
    state.lock().unwrap_or_else(|e| e.into_inner()).validators = validators;
    StatusCode::NO_CONTENT
}

/// An amount as the node writes a Python `Decimal` through FastAPI: an integer when whole, else
/// a float literal (`6`, `12.5`).
fn number(amount: Amount) -> Box<RawValue> {
    let units = amount.units();
    let text = if units % UNITS_PER_COIN == 0 {
        (units / UNITS_PER_COIN).to_string()
    } else {
        amount.to_string().trim_end_matches('0').to_owned()
    };
    RawValue::from_string(text).expect("a decimal literal is JSON")
}

fn render_block(block: &SimBlock, without_transactions: bool) -> Value {
    let hash = block.hash();
    let transactions: Vec<Value> = if without_transactions {
        Vec::new()
    } else {
        block
            .transactions
            .iter()
            .map(|tx| render_transaction(tx, block.id, &hash))
            .collect()
    };
    json!({
        "block": {
            "id": block.id, "hash": hash, "content": "00", "address": "miner",
            "random": block.id, "difficulty": 6.5, "reward": 6, "timestamp": 1_717_245_296 + block.id,
        },
        "transactions": transactions,
    })
}

fn render_transaction(tx: &SimTransaction, block_id: u64, block_hash: &str) -> Value {
    let outputs: Vec<Value> = tx
        .outputs
        .iter()
        .map(|o| json!({ "address": o.address, "amount": number(o.amount), "type": o.output_type }))
        .collect();
    if tx.coinbase {
        return json!({
            "is_coinbase": true, "hash": tx.hash, "block_hash": block_hash,
            "block_no": block_id, "datetime": "2024-06-01T12:34:56", "outputs": outputs,
        });
    }
    let inputs: Vec<Value> = tx
        .inputs
        .iter()
        .enumerate()
        .map(|(i, owner)| json!({ "index": 0, "tx_hash": format!("{:064x}", i), "address": owner, "amount": 1 }))
        .collect();
    let mut rendered = json!({
        "is_coinbase": false, "hash": tx.hash, "block_hash": block_hash, "block_no": block_id,
        "datetime": "2024-06-01T12:34:56", "message": null, "is_confirm": true,
        "inputs": inputs, "delta": null, "fees": 0, "outputs": outputs,
    });
    if let Some(kind) = &tx.transaction_type {
        rendered["transaction_type"] = json!(kind);
    }
    rendered
}

/// Emits a block paying `wallet` every `every`, from `start` on: a coinbase to a miner and a
/// REGULAR transaction whose amount comes from a seeded sequence (so runs repeat exactly).
pub fn generate_blocks(sim: &ChainSim, wallet: String, every: Duration, start: u64, seed: u64) {
    let sim = sim.clone();
    tokio::spawn(async move {
        let mut state = seed.max(1);
        let mut id = sim.tip().map_or(start, |tip| tip + 1);
        loop {
            // xorshift64: small, seeded, and the same on every machine.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let units = (state % 50 + 1) as i64 * UNITS_PER_COIN / 4 + (state % 97) as i64;
            let amount = Amount::from_units(units).expect("positive");
            sim.add_block(SimBlock {
                id,
                hash: None,
                transactions: vec![
                    SimTransaction {
                        hash: format!("{:064x}", id * 2),
                        coinbase: true,
                        transaction_type: None,
                        inputs: vec![],
                        outputs: vec![SimOutput {
                            address: crate::fixtures::MINER.into(),
                            amount: Amount::from_units(6 * UNITS_PER_COIN).expect("positive"),
                            output_type: regular(),
                        }],
                    },
                    SimTransaction {
                        hash: format!("{:064x}", id * 2 + 1),
                        coinbase: false,
                        transaction_type: Some("REGULAR".into()),
                        inputs: vec![crate::fixtures::PAYER.into()],
                        outputs: vec![SimOutput {
                            address: wallet.clone(),
                            amount,
                            output_type: regular(),
                        }],
                    },
                ],
            });
            id += 1;
            tokio::time::sleep(every).await;
        }
    });
}

fn mine(state: &mut ChainState) {
    let block = state.blocks.keys().next_back().map_or(1, |tip| tip + 1);
    let pending = std::mem::take(&mut state.pending);
    for (hash, tx) in pending {
        state.utxos.retain(|u| {
            !tx.inputs
                .iter()
                .any(|i| hex::encode(i.tx_hash) == u.tx_hash && i.index == u.index)
        });
        for (index, output) in tx.outputs.iter().enumerate() {
            state.utxos.push(SimUtxo {
                owner: bs58::encode(&output.address).into_string(),
                tx_hash: hash.clone(),
                index: index as u8,
                amount: Amount::from_units(output.units as i64).expect("positive"),
            });
        }
        state.mined.insert(hash, (block, tx));
    }
}

#[derive(Deserialize)]
struct AddressQuery {
    address: String,
}

async fn address_info(State(state): State<Shared>, Query(q): Query<AddressQuery>) -> Response {
    if let Some(response) = rate_limited(&state, Limited::AddressInfo) {
        return response;
    }
    if let Some(failure) = next_failure(&state)
        && let Some(response) = failure_response(failure).await
    {
        return response;
    }
    let state = state.lock().unwrap_or_else(|e| e.into_inner());
    let spendable: Vec<Value> = state
        .utxos
        .iter()
        .filter(|u| u.owner == q.address)
        .map(|u| json!({ "amount": u.amount.to_string().trim_end_matches('0').trim_end_matches('.'), "tx_hash": u.tx_hash, "index": u.index }))
        .collect();
    let pending_spent: Vec<Value> = state
        .pending
        .values()
        .flat_map(|tx| tx.inputs.iter())
        .map(|i| json!({ "tx_hash": hex::encode(i.tx_hash), "index": i.index }))
        .collect();
    Json(json!({ "ok": true, "result": {
        "balance": "0", "stake": "0",
        "spendable_outputs": spendable,
        "pending_transactions": [],
        "pending_spent_outputs": pending_spent,
    } }))
    .into_response()
}

#[derive(Deserialize)]
struct PushQuery {
    tx_hex: String,
}

async fn push_tx_query(State(state): State<Shared>, Query(q): Query<PushQuery>) -> Response {
    push_tx(state, &q.tx_hex).await
}

async fn push_tx_body(State(state): State<Shared>, Json(body): Json<PushQuery>) -> Response {
    push_tx(state, &body.tx_hex).await
}

fn not_added() -> Response {
    Json(json!({ "ok": false, "error": "Transaction has not been added" })).into_response()
}

fn exception() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "ok": false, "error": "Exception: " })),
    )
        .into_response()
}

/// Judges a pushed transaction as the node does (TRANSACTIONS.md §9), with the project's own
/// parser and verifier.
async fn push_tx(shared: Shared, tx_hex: &str) -> Response {
    use minerpool_core::upow::{Transaction, decode_address};
    let mode = shared
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_mode
        .unwrap_or(PushMode::Normal);
    match mode {
        PushMode::ServerError => return exception(),
        PushMode::Reject => return not_added(),
        _ => {}
    }
    let Ok(bytes) = hex::decode(tx_hex) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "ok": false, "error": "Uncaught ValueError exception" })),
        )
            .into_response();
    };
    let Ok(tx) = Transaction::parse(&bytes) else {
        return exception();
    };
    let hash = tx.hash();
    {
        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
        if state.pending.contains_key(&hash) || state.mined.contains_key(&hash) {
            return Json(json!({ "ok": false, "error": "Transaction just added" })).into_response();
        }
        let mut owners = Vec::new();
        let mut inputs_total = 0u64;
        for (i, input) in tx.inputs.iter().enumerate() {
            let spent_hash = hex::encode(input.tx_hash);
            let Some(utxo) = state
                .utxos
                .iter()
                .find(|u| u.tx_hash == spent_hash && u.index == input.index)
            else {
                return if i == 0 { exception() } else { not_added() };
            };
            let pending_spent = state.pending.values().any(|p| {
                p.inputs
                    .iter()
                    .any(|pi| pi.tx_hash == input.tx_hash && pi.index == input.index)
            });
            if pending_spent {
                return not_added();
            }
            let Ok(owner) = decode_address(&utxo.owner) else {
                return not_added();
            };
            owners.push(owner);
            inputs_total += utxo.amount.units() as u64;
        }
        let outputs_total: u64 = tx.outputs.iter().map(|o| o.units).sum();
        if tx.verify(&owners).is_err() || outputs_total > inputs_total {
            return not_added();
        }
        state.pending.insert(hash.clone(), tx);
    }
    if mode == PushMode::AcceptThenTimeout {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Json(json!({ "ok": true, "result": "Transaction has been accepted", "tx_hash": hash }))
        .into_response()
}

#[derive(Deserialize)]
struct TransactionQuery {
    tx_hash: String,
}

async fn get_transaction(
    State(state): State<Shared>,
    Query(q): Query<TransactionQuery>,
) -> Response {
    if let Some(response) = rate_limited(&state, Limited::GetTransaction) {
        return response;
    }
    let state = state.lock().unwrap_or_else(|e| e.into_inner());
    let found = if state.pending.contains_key(&q.tx_hash) {
        Some((false, Value::Null))
    } else {
        state
            .mined
            .get(&q.tx_hash)
            .map(|(block, _)| (true, json!(block)))
    };
    match found {
        Some((confirmed, block)) => Json(json!({ "ok": true, "result": {
            "is_coinbase": false, "hash": q.tx_hash, "block_no": block, "is_confirm": confirmed,
            "transaction_type": "REGULAR",
        } }))
        .into_response(),
        None => Json(json!({ "ok": false, "error": "Transaction not found" })).into_response(),
    }
}
