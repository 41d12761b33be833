//! A uPow chain simulator: an HTTP server with the node API's response shapes
//! (upow/TRANSACTIONS.md §8), serving blocks and validators from a scenario or a seeded
//! generator, and failing on request (timeout, HTTP 500, malformed JSON, a block without
//! transactions, a reorganisation, a skipped block, HTTP 429 rate limits) so tests can see how
//! minerpool copes.
//!
//! The payer half (`push_tx`, `get_transaction`, `get_address_info`, mining) answers as the real
//! node does (§8–9), including where the node is unkind: a re-push of a transaction it already
//! holds is "Transaction just added" only while the hash is among its last 100 accepted, and
//! "Transaction has not been added" after that, exactly like a bad transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use minerpool_core::money::{Amount, UNITS_PER_COIN};
use minerpool_core::upow::{
    Input, MAX_INPUTS, Output, Transaction, address_of, decode_address, parse_private_key,
};
use p256::ecdsa::SigningKey;
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
    /// Accept the transaction, then answer HTTP 500 `Exception: ` (accepted, yet the client
    /// sees an error).
    AcceptThenServerError,
    /// Accept the transaction, then answer "Transaction has not been added" (as another node
    /// behind a load balancer does when the request is retried there).
    AcceptThenNotAdded,
    /// HTTP 500 without accepting.
    ServerError,
    /// Refuse every transaction ("Transaction has not been added").
    Reject,
    /// "Node is already syncing", without accepting.
    Syncing,
    /// HTTP 403 "Access forbidden temporarily.", without accepting.
    Forbidden,
}

/// How long a lagging node keeps giving a stale `get_transaction` answer for a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// For the next so many lookups of that transaction.
    Lookups(u32),
    /// For so long after the change.
    For(Duration),
}

/// What a lagging node answers meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// "Transaction not found".
    NotFound,
    /// Pending (`is_confirm` false, no block).
    Pending,
}

/// Where the simulated node has a pushed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// Never accepted, dropped, or forgotten.
    Unknown,
    Pending,
    Mined {
        block: u64,
    },
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
    /// The block's time, epoch seconds, as the chain gives it: when the block was made, unless
    /// a script says otherwise.
    #[serde(default = "now_seconds")]
    pub timestamp: i64,
}

/// The time now, epoch seconds.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SimBlock {
    /// A block with the default hash, made now.
    pub fn new(id: u64, transactions: Vec<SimTransaction>) -> SimBlock {
        SimBlock {
            id,
            hash: None,
            transactions,
            timestamp: now_seconds(),
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// The outputs the inputs spend, in input order. Empty (as in hand-written scenarios): the
    /// inputs render with placeholder outputs and spend nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spent: Vec<SimSpent>,
}

/// An output a transaction input spends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpent {
    pub tx_hash: String,
    pub index: u8,
    pub amount: Amount,
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
    /// The confirmed unspent outputs.
    utxos: Vec<SimUtxo>,
    /// Confirmed outputs since spent (the node still knows their transactions).
    spent_utxos: Vec<SimUtxo>,
    /// Accepted transactions not yet in a block, in order of acceptance.
    pending: Vec<Pushed>,
    /// Pushed transactions in a block, with its id, in the order they were mined.
    mined: Vec<(u64, Pushed)>,
    /// The node's cache of its last accepted hashes, oldest first.
    recent: VecDeque<String>,
    accept_lag: Option<Lag>,
    mine_lag: Option<(Lag, Stale)>,
    /// Transactions whose lookups are still answered stale.
    lagging: HashMap<String, Lagging>,
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
    /// Bodies the next `get_transaction` requests get instead of the real answer.
    transaction_answers: VecDeque<Value>,
    /// Until then the chain is down: see [`ChainSim::go_down`].
    down_until: Option<Instant>,
}

impl ChainState {
    fn is_down(&self) -> bool {
        self.down_until.is_some_and(|until| Instant::now() < until)
    }

    /// Down for `window` from now; `None`: up again.
    fn set_down(&mut self, window: Option<Duration>) {
        self.down_until = window.map(|w| Instant::now() + w);
    }
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
        let mut chain = ChainState {
            blocks: scenario.blocks.into_iter().map(|b| (b.id, b)).collect(),
            validators: scenario.validators,
            utxos: scenario.utxos,
            ..ChainState::default()
        };
        let ids: Vec<u64> = chain.blocks.keys().copied().collect();
        for id in ids {
            confirm_block(&mut chain, id);
        }
        let state = Arc::new(Mutex::new(chain));
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

    /// Adds (or replaces) a block; its outputs become spendable (see [`confirm_block`]).
    pub fn add_block(&self, block: SimBlock) {
        add_block(&mut self.lock(), block);
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

    /// The chain is down for `window`: every endpoint answers HTTP 500, and a push is taken
    /// (it is mined in a later block) but answered 500 all the same, the unkindest outage for a
    /// payer: the answer says nothing about whether the money moved. Blocks are still made.
    pub fn go_down(&self, window: Duration) {
        self.lock().set_down(Some(window));
    }

    /// How the next pushes are answered.
    pub fn set_push_mode(&self, mode: PushMode) {
        self.lock().push_mode = Some(mode);
    }

    /// Puts every pending transaction not held ([`ChainSim::hold_pending`]) into a new block
    /// after the tip, served by `get_blocks_details`; returns its id.
    pub fn mine(&self) -> u64 {
        mine(&mut self.lock())
    }

    /// A transaction answers "Transaction not found" for `lag` after it is accepted (a lagging
    /// node); applies to transactions accepted from now on. `None`: no lag.
    pub fn set_accept_lag(&self, lag: Option<Lag>) {
        self.lock().accept_lag = lag;
    }

    /// A transaction answers `stale` for `lag` after it is mined; applies to transactions mined
    /// from now on. `None`: no lag.
    pub fn set_mine_lag(&self, lag: Option<(Lag, Stale)>) {
        self.lock().mine_lag = lag;
    }

    /// Forgets a pending transaction, as a node does with one that never propagated: its inputs
    /// are spendable again and it answers "Transaction not found", but, as on the real node, its
    /// hash stays in the list of the last accepted ones, so a re-push is answered "Transaction
    /// just added" until that list moves on or the node restarts ([`ChainSim::restart`]).
    /// False if it was not pending.
    pub fn drop_pending(&self, hash: &str) -> bool {
        let mut state = self.lock();
        let before = state.pending.len();
        state.pending.retain(|p| p.hash != hash);
        state.lagging.remove(hash);
        state.pending.len() < before
    }

    /// Pays `outputs` (address, coins) from the confirmed coins of `key`'s address, as another
    /// holder of the key would (a thief, a second installation paying from the same key), so
    /// tests can check that minerpool notices payments it did not make. The largest coins not
    /// spent by a pending transaction are taken first, the change goes back to the owner, and
    /// the transaction goes through the node's judgement like a push (push modes and outages
    /// aside: it was pushed elsewhere), so it is pending and the next block mines it. Returns
    /// its hash, or why not (not enough coins, refused by the node).
    pub fn spend_as_holder(
        &self,
        key: &SigningKey,
        outputs: Vec<(String, Amount)>,
    ) -> Result<String, String> {
        spend_as_holder(&mut self.lock(), key, Spend::Pay(outputs))
    }

    /// Sends every coin of `key`'s address not spent by a pending transaction (the largest
    /// 255, the most one transaction spends) to `to`, without change: a thief sweeping the
    /// wallet. See [`ChainSim::spend_as_holder`].
    pub fn sweep_as_holder(&self, key: &SigningKey, to: &str) -> Result<String, String> {
        spend_as_holder(&mut self.lock(), key, Spend::Sweep(to.to_owned()))
    }

    /// Keeps the pending transaction `hash` out of the blocks mined from now on (a transaction
    /// that lingers in the mempool), until [`ChainSim::release_pending`]; meanwhile it is
    /// pending to every lookup and [`ChainSim::drop_pending`] still forgets it. False if it is
    /// not pending.
    pub fn hold_pending(&self, hash: &str) -> bool {
        set_held(&mut self.lock(), hash, true)
    }

    /// The held transaction `hash` goes into the next block again. False if it was not held.
    pub fn release_pending(&self, hash: &str) -> bool {
        set_held(&mut self.lock(), hash, false)
    }

    /// A node restart: its in-memory list of the last accepted hashes is empty again (pending
    /// transactions are in its database and stay).
    pub fn restart(&self) {
        self.lock().recent.clear();
    }

    /// The next `get_transaction` answers are these bodies (HTTP 200), in order, whatever was
    /// asked: for testing how a client reads a malformed answer.
    pub fn answer_transactions_with(&self, bodies: Vec<Value>) {
        self.lock().transaction_answers.extend(bodies);
    }

    /// Units paid to `address` by pushed transactions that are in a block, and how many
    /// transactions paid it.
    pub fn confirmed_paid_to(&self, address: &str) -> (u64, usize) {
        let state = self.lock();
        paid_by(state.mined.iter().map(|(_, p)| p), address)
    }

    /// Units paid to `address` by pending transactions, and how many transactions paid it.
    pub fn pending_paid_to(&self, address: &str) -> (u64, usize) {
        paid_by(self.lock().pending.iter(), address)
    }

    /// Units paid to `address` by accepted transactions, pending or mined, and how many
    /// transactions paid it.
    pub fn paid_to(&self, address: &str) -> (u64, usize) {
        let state = self.lock();
        paid_by(
            state
                .pending
                .iter()
                .chain(state.mined.iter().map(|(_, p)| p)),
            address,
        )
    }

    /// Hashes of the pushed transactions in blocks, in the order they were mined.
    pub fn mined_hashes(&self) -> Vec<String> {
        self.lock()
            .mined
            .iter()
            .map(|(_, p)| p.hash.clone())
            .collect()
    }

    /// Where the node has the pushed transaction `hash`.
    pub fn tx_state(&self, hash: &str) -> TxState {
        let state = self.lock();
        if state.pending.iter().any(|p| p.hash == hash) {
            return TxState::Pending;
        }
        state
            .mined
            .iter()
            .find(|(_, p)| p.hash == hash)
            .map_or(TxState::Unknown, |(block, _)| TxState::Mined {
                block: *block,
            })
    }

    /// Units in the confirmed unspent outputs of `address` (what `get_address_info` calls its
    /// balance: outputs that pending transactions spend still count).
    pub fn confirmed_spendable(&self, address: &str) -> u64 {
        let state = self.lock();
        state
            .utxos
            .iter()
            .filter(|u| same_address(&u.owner, address))
            .map(|u| u.amount.units() as u64)
            .sum()
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
    let chain = Router::new()
        .merge(blocks_routes())
        .merge(validators_routes())
        .merge(payer_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            unless_down,
        ));
    chain.merge(control_routes()).with_state(state)
}

/// While the chain is down every endpoint but `push_tx` answers 500 (a push is taken first:
/// see [`push_tx`]).
async fn unless_down(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let down = state.lock().unwrap_or_else(|e| e.into_inner()).is_down();
    if down && request.uri().path() != "/push_tx" {
        return server_error("Exception: the node is down");
    }
    next.run(request).await
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
        .route(
            "/sim/fail",
            post(control_fail).delete(control_clear_failures),
        )
        .route("/sim/blocks", post(control_add_block))
        .route("/sim/reorg", post(control_reorg))
        .route("/sim/skip", post(control_skip))
        .route("/sim/rate-limits", put(control_rate_limits))
        .route("/sim/validators", put(control_set_validators))
        .route("/sim/down", post(control_down).delete(control_up))
        .route("/sim/spend", post(control_spend))
        .route("/sim/release", post(control_release))
}

/// A control body that does not parse (an unknown field, a missing one): HTTP 400 with the
/// reason, for the script that sent it.
fn bad_body(rejection: JsonRejection) -> Response {
    (StatusCode::BAD_REQUEST, rejection.body_text()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendRequest {
    /// The private key, hex, as the iNode reads it.
    key: String,
    to: String,
    /// Coins, decimal text; `None` (null or absent): every spendable coin.
    #[serde(default)]
    amount: Option<Amount>,
    /// Keep the transaction out of blocks until `POST /sim/release`.
    #[serde(default)]
    hold: bool,
}

/// `POST /sim/spend`: [`ChainSim::spend_as_holder`] (or a sweep without `amount`), optionally
/// held; `{"tx_hash": …}`, or HTTP 400 with the reason.
async fn control_spend(
    State(state): State<Shared>,
    body: Result<Json<SpendRequest>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return bad_body(rejection),
    };
    let key = match parse_private_key(&body.key) {
        Ok(key) => key,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let spend = match body.amount {
        Some(amount) => Spend::Pay(vec![(body.to, amount)]),
        None => Spend::Sweep(body.to),
    };
    // One lock: a generated block cannot mine the transaction before it is held.
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    match spend_as_holder(&mut state, &key, spend) {
        Ok(hash) => {
            set_held(&mut state, &hash, body.hold);
            Json(json!({ "tx_hash": hash })).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    hash: String,
}

/// `POST /sim/release {"hash": …}`: [`ChainSim::release_pending`]; 404 if it was not held.
async fn control_release(
    State(state): State<Shared>,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return bad_body(rejection),
    };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if set_held(&mut state, &body.hash, false) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, "not a held pending transaction").into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownRequest {
    seconds: u64,
}

/// `POST /sim/down {"seconds": N}`: see [`ChainSim::go_down`].
async fn control_down(State(state): State<Shared>, Json(body): Json<DownRequest>) -> StatusCode {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_down(Some(Duration::from_secs(body.seconds)));
    StatusCode::NO_CONTENT
}

/// `DELETE /sim/down`: the chain is up again.
async fn control_up(State(state): State<Shared>) -> StatusCode {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_down(None);
    StatusCode::NO_CONTENT
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

/// Drops every planned failure: the chain answers well again.
async fn control_clear_failures(State(state): State<Shared>) -> StatusCode {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .failures
        .clear();
    StatusCode::NO_CONTENT
}

async fn control_add_block(State(state): State<Shared>, Json(block): Json<SimBlock>) -> StatusCode {
    add_block(&mut state.lock().unwrap_or_else(|e| e.into_inner()), block);
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
    RawValue::from_string(decimal_text(amount)).expect("a decimal literal is JSON")
}

/// An amount as Python's `"{:f}"` writes a normalised `Decimal`: `5`, `1.5`, `0.00000001`.
fn decimal_text(amount: Amount) -> String {
    let units = amount.units();
    if units % UNITS_PER_COIN == 0 {
        (units / UNITS_PER_COIN).to_string()
    } else {
        amount.to_string().trim_end_matches('0').to_owned()
    }
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
            "random": block.id, "difficulty": 6.5, "reward": 6, "timestamp": block.timestamp,
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
    let (inputs, fees) = render_inputs(tx);
    let mut rendered = json!({
        "is_coinbase": false, "hash": tx.hash, "block_hash": block_hash, "block_no": block_id,
        "datetime": "2024-06-01T12:34:56", "message": null, "is_confirm": true,
        "inputs": inputs, "delta": null, "fees": fees, "outputs": outputs,
    });
    if let Some(kind) = &tx.transaction_type {
        rendered["transaction_type"] = json!(kind);
    }
    rendered
}

/// Emits a block paying `wallet` every `every`, from `start` on: a coinbase to a miner, a
/// REGULAR transaction whose amount comes from a seeded sequence (so runs repeat exactly), and
/// every pending transaction not held (a miner confirms what is pending).
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
            let income = SimTransaction {
                hash: format!("{:064x}", id * 2 + 1),
                coinbase: false,
                transaction_type: Some("REGULAR".into()),
                inputs: vec![crate::fixtures::PAYER.into()],
                outputs: vec![SimOutput {
                    address: wallet.clone(),
                    amount,
                    output_type: regular(),
                }],
                spent: vec![],
            };
            add_block_mining_pending(&mut sim.lock(), id, vec![income]);
            id += 1;
            tokio::time::sleep(every).await;
        }
    });
}

/// A coinbase paying the miner 6 coins, as every block has.
fn coinbase(block: u64) -> SimTransaction {
    SimTransaction {
        hash: format!("{:064x}", block * 2),
        coinbase: true,
        transaction_type: None,
        inputs: vec![],
        outputs: vec![SimOutput {
            address: crate::fixtures::MINER.into(),
            amount: Amount::from_units(6 * UNITS_PER_COIN).expect("positive"),
            output_type: regular(),
        }],
        spent: vec![],
    }
}

/// Adds block `id`: a coinbase, `transactions`, then every pending transaction not held.
fn add_block_mining_pending(state: &mut ChainState, id: u64, transactions: Vec<SimTransaction>) {
    let mut all = vec![coinbase(id)];
    all.extend(transactions);
    all.extend(state.pending.iter().filter(|p| !p.held).map(Pushed::to_sim));
    add_block(state, SimBlock::new(id, all));
}

/// A new block after the tip holding every pending transaction not held; returns its id.
fn mine(state: &mut ChainState) -> u64 {
    let id = state.blocks.keys().next_back().map_or(1, |tip| tip + 1);
    add_block_mining_pending(state, id, Vec::new());
    id
}

fn add_block(state: &mut ChainState, block: SimBlock) {
    let id = block.id;
    state.blocks.insert(id, block);
    confirm_block(state, id);
}

/// What a block in the chain means for the payer half, as the node applies it: the outputs
/// its transactions spend are gone, their REGULAR outputs (0–255: an input index is one byte)
/// become spendable by their addresses, pending transactions it holds are mined, and pending
/// ones whose inputs it spent are dropped.
fn confirm_block(state: &mut ChainState, id: u64) {
    let Some(block) = state.blocks.get(&id) else {
        return;
    };
    let mut created = Vec::new();
    let mut spent = Vec::new();
    for tx in &block.transactions {
        spent.extend(tx.spent.iter().map(|s| (s.tx_hash.clone(), s.index)));
        for (index, output) in tx.outputs.iter().enumerate() {
            if let Ok(index) = u8::try_from(index)
                && output.output_type == "REGULAR"
            {
                created.push(SimUtxo {
                    owner: output.address.clone(),
                    tx_hash: tx.hash.clone(),
                    index,
                    amount: output.amount,
                });
            }
        }
    }
    let hashes: Vec<String> = block.transactions.iter().map(|t| t.hash.clone()).collect();
    for utxo in created {
        if !state
            .utxos
            .iter()
            .any(|u| u.tx_hash == utxo.tx_hash && u.index == utxo.index)
        {
            state.utxos.push(utxo);
        }
    }
    let (gone, kept): (Vec<SimUtxo>, Vec<SimUtxo>) = std::mem::take(&mut state.utxos)
        .into_iter()
        .partition(|u| spent.iter().any(|(h, i)| *h == u.tx_hash && *i == u.index));
    state.utxos = kept;
    state.spent_utxos.extend(gone);
    let (included, still): (Vec<Pushed>, Vec<Pushed>) = std::mem::take(&mut state.pending)
        .into_iter()
        .partition(|p| hashes.contains(&p.hash));
    for pushed in included {
        match state.mine_lag {
            Some((lag, answer)) => {
                let lagging = Lagging::new(lag, answer);
                state.lagging.insert(pushed.hash.clone(), lagging);
            }
            None => {
                state.lagging.remove(&pushed.hash);
            }
        }
        state.mined.push((id, pushed));
    }
    let utxos = &state.utxos;
    state.pending = still
        .into_iter()
        .filter(|p| {
            p.spent
                .iter()
                .all(|s| find_utxo(utxos, &s.tx_hash, s.index).is_some())
        })
        .collect();
}

/// Whether a pending transaction spends output `index` of `tx_hash`.
fn spent_by_pending(state: &ChainState, tx_hash: &str, index: u8) -> bool {
    state
        .pending
        .iter()
        .flat_map(|p| &p.spent)
        .any(|s| s.tx_hash == tx_hash && s.index == index)
}

fn find_utxo<'a>(utxos: &'a [SimUtxo], tx_hash: &str, index: u8) -> Option<&'a SimUtxo> {
    utxos
        .iter()
        .find(|u| u.tx_hash == tx_hash && u.index == index)
}

/// Whether two address strings name the same key (either form, as the node looks them up).
fn same_address(a: &str, b: &str) -> bool {
    a == b || matches!((decode_address(a), decode_address(b)), (Ok(x), Ok(y)) if x == y)
}

/// Units paid to `address` by `transactions`, and how many of them paid it.
fn paid_by<'a>(transactions: impl Iterator<Item = &'a Pushed>, address: &str) -> (u64, usize) {
    let Ok(bytes) = decode_address(address) else {
        return (0, 0);
    };
    let mut total = 0;
    let mut count = 0;
    for pushed in transactions {
        let paid: u64 = pushed
            .tx
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

/// The most accepted hashes the node remembers ("Transaction just added").
const RECENT_ACCEPTED: usize = 100;

/// A transaction the node accepted, with what its inputs spend.
#[derive(Debug, Clone)]
struct Pushed {
    hash: String,
    tx: Transaction,
    /// Owner of each input's spent output.
    owners: Vec<String>,
    spent: Vec<SimSpent>,
    /// Kept out of mined blocks until released: see [`ChainSim::hold_pending`].
    held: bool,
}

impl Pushed {
    /// As a block holds it.
    fn to_sim(&self) -> SimTransaction {
        SimTransaction {
            hash: self.hash.clone(),
            coinbase: false,
            transaction_type: Some("REGULAR".into()),
            inputs: self.owners.clone(),
            outputs: self
                .tx
                .outputs
                .iter()
                .map(|o| SimOutput {
                    address: output_address(&o.address),
                    amount: Amount::from_units(o.units as i64).expect("an accepted amount"),
                    output_type: regular(),
                })
                .collect(),
            spent: self.spent.clone(),
        }
    }

    /// The "nice transaction" of a pending transaction (§8.3): no block, not confirmed.
    fn render_pending(&self) -> Value {
        let mut rendered = render_transaction(&self.to_sim(), 0, "");
        for key in ["block_hash", "block_no", "datetime"] {
            rendered[key] = Value::Null;
        }
        rendered["is_confirm"] = json!(false);
        if let Some(message) = &self.tx.message {
            rendered["message"] = json!(hex::encode(message));
        }
        rendered
    }
}

/// An output's address as the node shows it: base58 of the 33-byte form, hex of the 64-byte one.
fn output_address(bytes: &[u8]) -> String {
    if bytes.len() == 33 {
        bs58::encode(bytes).into_string()
    } else {
        hex::encode(bytes)
    }
}

/// A stale answer still to give for one transaction.
#[derive(Debug, Clone, Copy)]
struct Lagging {
    answer: Stale,
    left: LagLeft,
}

#[derive(Debug, Clone, Copy)]
enum LagLeft {
    Lookups(u32),
    Until(Instant),
}

impl Lagging {
    fn new(lag: Lag, answer: Stale) -> Lagging {
        let left = match lag {
            Lag::Lookups(n) => LagLeft::Lookups(n),
            Lag::For(duration) => LagLeft::Until(Instant::now() + duration),
        };
        Lagging { answer, left }
    }

    /// The stale answer for this lookup, if the lag lasts; counts the lookup.
    fn take(&mut self) -> Option<Stale> {
        match &mut self.left {
            LagLeft::Lookups(0) => None,
            LagLeft::Lookups(n) => {
                *n -= 1;
                Some(self.answer)
            }
            LagLeft::Until(until) => (Instant::now() < *until).then_some(self.answer),
        }
    }
}

#[derive(Deserialize)]
struct AddressQuery {
    address: String,
    #[serde(default)]
    show_pending: Option<String>,
}

/// `get_address_info` (§8.2): confirmed unspent outputs (those pending transactions spend
/// included), their plain sum, and with `show_pending` the pending spends of this address.
async fn address_info(State(state): State<Shared>, Query(q): Query<AddressQuery>) -> Response {
    if let Some(response) = rate_limited(&state, Limited::AddressInfo) {
        return response;
    }
    if let Some(failure) = next_failure(&state)
        && let Some(response) = failure_response(failure).await
    {
        return response;
    }
    if decode_address(&q.address).is_err() {
        return server_error("Uncaught ValueError exception");
    }
    let show_pending = matches!(q.show_pending.as_deref(), Some("true" | "True" | "1"));
    let state = state.lock().unwrap_or_else(|e| e.into_inner());
    let own: Vec<&SimUtxo> = state
        .utxos
        .iter()
        .filter(|u| same_address(&u.owner, &q.address))
        .collect();
    let balance =
        Amount::from_units(own.iter().map(|u| u.amount.units()).sum()).expect("a sum of amounts");
    let spendable: Vec<Value> = own
        .iter()
        .map(
            |u| json!({ "amount": decimal_text(u.amount), "tx_hash": u.tx_hash, "index": u.index }),
        )
        .collect();
    let pending_spent: Vec<Value> = state
        .pending
        .iter()
        .flat_map(|p| p.spent.iter().zip(&p.owners))
        .filter(|(_, owner)| same_address(owner, &q.address))
        .map(|(s, _)| json!({ "tx_hash": s.tx_hash, "index": s.index }))
        .collect();
    let pending_transactions: Vec<Value> = state
        .pending
        .iter()
        .filter(|p| {
            p.owners.iter().any(|o| same_address(o, &q.address))
                || p.to_sim()
                    .outputs
                    .iter()
                    .any(|o| same_address(&o.address, &q.address))
        })
        .map(Pushed::render_pending)
        .collect();
    let (pending_spent, pending_transactions) = if show_pending {
        (json!(pending_spent), json!(pending_transactions))
    } else {
        (Value::Null, Value::Null)
    };
    Json(json!({ "ok": true, "result": {
        "balance": decimal_text(balance), "stake": "0",
        "spendable_outputs": spendable,
        "pending_transactions": pending_transactions,
        "pending_spent_outputs": pending_spent,
        "stake_outputs": null, "delegate_spent_votes": null, "delegate_unspent_votes": null,
        "inode_registration_outputs": null, "validator_unspent_votes": null,
        "validator_spent_votes": null, "is_inode": null, "is_inode_active": null,
        "is_validator": null,
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

/// `{"ok": false, "error": …}` with `status`.
fn refusal(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "ok": false, "error": error }))).into_response()
}

const NOT_ADDED: &str = "Transaction has not been added";

fn not_added() -> Response {
    refusal(StatusCode::OK, NOT_ADDED)
}

fn server_error(error: &str) -> Response {
    refusal(StatusCode::INTERNAL_SERVER_ERROR, error)
}

/// Why the node does not accept a pushed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// HTTP 500 with this error text (parsing, or an unknown first input).
    Raised(&'static str),
    /// Among the last accepted hashes.
    JustAdded,
    /// Any failed check of verification or the pending spends.
    NotAdded,
}

impl Refused {
    /// The node's error text.
    fn text(self) -> &'static str {
        match self {
            Refused::Raised(error) => error,
            Refused::JustAdded => "Transaction just added",
            Refused::NotAdded => NOT_ADDED,
        }
    }

    fn response(self) -> Response {
        let status = match self {
            Refused::Raised(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Refused::JustAdded | Refused::NotAdded => StatusCode::OK,
        };
        refusal(status, self.text())
    }
}

/// `push_tx` (§8.1): the push mode first, then the node's judgement, then the answer the mode
/// gives for an accepted transaction.
async fn push_tx(shared: Shared, tx_hex: &str) -> Response {
    let mode = {
        let state = shared.lock().unwrap_or_else(|e| e.into_inner());
        if state.is_down() {
            PushMode::AcceptThenServerError
        } else {
            state.push_mode.unwrap_or(PushMode::Normal)
        }
    };
    match mode {
        PushMode::ServerError => return server_error("Exception: "),
        PushMode::Reject => return not_added(),
        PushMode::Syncing => return refusal(StatusCode::OK, "Node is already syncing"),
        PushMode::Forbidden => {
            return refusal(StatusCode::FORBIDDEN, "Access forbidden temporarily.");
        }
        _ => {}
    }
    let hash = {
        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
        match judge(&state, tx_hex) {
            Ok(pushed) => accept(&mut state, pushed),
            Err(refused) => return refused.response(),
        }
    };
    match mode {
        PushMode::AcceptThenTimeout => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        PushMode::AcceptThenServerError => return server_error("Exception: "),
        PushMode::AcceptThenNotAdded => return not_added(),
        _ => {}
    }
    Json(json!({ "ok": true, "result": "Transaction has been accepted", "tx_hash": hash }))
        .into_response()
}

/// Records an accepted transaction: pending, its hash in the recent cache, its lag; returns
/// its hash.
fn accept(state: &mut ChainState, pushed: Pushed) -> String {
    let hash = pushed.hash.clone();
    state.recent.push_back(hash.clone());
    while state.recent.len() > RECENT_ACCEPTED {
        state.recent.pop_front();
    }
    match state.accept_lag {
        Some(lag) => {
            let lagging = Lagging::new(lag, Stale::NotFound);
            state.lagging.insert(hash.clone(), lagging);
        }
        None => {
            state.lagging.remove(&hash);
        }
    }
    state.pending.push(pushed);
    hash
}

/// Outputs to pay: address, coins.
type Payments = Vec<(String, Amount)>;

/// What another holder of a wallet key spends.
enum Spend {
    /// These outputs, with change back to the owner.
    Pay(Payments),
    /// Every spendable coin to this address.
    Sweep(String),
}

/// Builds and signs `spend` from the confirmed coins of `key`'s address not spent by a pending
/// transaction, largest first, then judges and accepts it as a push: see
/// [`ChainSim::spend_as_holder`].
fn spend_as_holder(
    state: &mut ChainState,
    key: &SigningKey,
    spend: Spend,
) -> Result<String, String> {
    let owner = address_of(key.verifying_key());
    let mut coins: Vec<&SimUtxo> = state
        .utxos
        .iter()
        .filter(|u| same_address(&u.owner, &owner) && !spent_by_pending(state, &u.tx_hash, u.index))
        .collect();
    coins.sort_by_key(|u| std::cmp::Reverse(u.amount));
    let (coins, outputs) = match spend {
        Spend::Pay(pay) => pay_from(coins, pay, &owner)?,
        Spend::Sweep(_) if coins.is_empty() => {
            return Err(format!("not enough coins: {owner} has none spendable"));
        }
        Spend::Sweep(to) => {
            coins.truncate(MAX_INPUTS);
            let all = coins.iter().map(|u| units(u.amount)).sum();
            (coins, vec![(to, coins_of(all))])
        }
    };
    let tx = signed_spend(key, &coins, outputs)?;
    let pushed = judge(state, &tx.to_hex())
        .map_err(|refused| format!("refused by the node: {}", refused.text()))?;
    Ok(accept(state, pushed))
}

/// The coins (from `coins`, in order) that cover `pay`, and the outputs: `pay` and the change
/// to `owner`.
fn pay_from<'a>(
    coins: Vec<&'a SimUtxo>,
    mut pay: Payments,
    owner: &str,
) -> Result<(Vec<&'a SimUtxo>, Payments), String> {
    if pay.is_empty() {
        return Err("no outputs to pay".into());
    }
    if let Some((to, _)) = pay.iter().find(|(_, amount)| *amount == Amount::ZERO) {
        return Err(format!("the output to {to} pays nothing"));
    }
    let wanted: u64 = pay.iter().map(|(_, amount)| units(*amount)).sum();
    let available: u64 = coins.iter().map(|u| units(u.amount)).sum();
    if wanted > available {
        return Err(format!(
            "not enough coins: {owner} has {} spendable, {} asked",
            coins_of(available),
            coins_of(wanted)
        ));
    }
    let mut taken = Vec::new();
    let mut gathered = 0;
    for coin in coins {
        if gathered >= wanted {
            break;
        }
        gathered += units(coin.amount);
        taken.push(coin);
    }
    if gathered > wanted {
        pay.push((owner.to_owned(), coins_of(gathered - wanted)));
    }
    Ok((taken, pay))
}

/// A version-3 transaction spending `coins` to `outputs`, signed by `key` for every input (as
/// minerpool's payer signs).
fn signed_spend(
    key: &SigningKey,
    coins: &[&SimUtxo],
    outputs: Payments,
) -> Result<Transaction, String> {
    let inputs = coins
        .iter()
        .map(|u| {
            let tx_hash = hex::decode(&u.tx_hash)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("coin {:?} has no 32-byte hash", u.tx_hash))?;
            Ok(Input {
                tx_hash,
                index: u.index,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let outputs = outputs
        .into_iter()
        .map(|(to, amount)| {
            let address = decode_address(&to).map_err(|e| e.to_string())?;
            Ok(Output {
                address: address.to_vec(),
                units: units(amount),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut tx = Transaction::new(inputs, outputs, None).map_err(|e| e.to_string())?;
    tx.sign(&vec![key; tx.inputs.len()])
        .map_err(|e| e.to_string())?;
    Ok(tx)
}

fn units(amount: Amount) -> u64 {
    amount.units() as u64
}

/// `units` as an amount (sums of amounts stay within the supply).
fn coins_of(units: u64) -> Amount {
    Amount::from_units(units as i64).expect("a sum of amounts")
}

/// Holds or releases the pending transaction `hash`: see [`ChainSim::hold_pending`]. Whether
/// it was pending, and, to release, held.
fn set_held(state: &mut ChainState, hash: &str, held: bool) -> bool {
    state
        .pending
        .iter_mut()
        .find(|p| p.hash == hash)
        .is_some_and(|p| std::mem::replace(&mut p.held, held) || held)
}

/// The HTTP 500 text the node's parser raises for bytes our wire parser refuses.
fn parse_error_text(bytes: &[u8], error: &minerpool_core::upow::UpowError) -> &'static str {
    if bytes.first().is_some_and(|version| *version > 3) {
        "Uncaught NotImplementedError exception"
    } else if error.to_string().contains(" type ") {
        // An input or output type byte the node's enums do not hold.
        "Uncaught ValueError exception"
    } else {
        // The parser's assertions (a bad specifier, a coinbase) and truncations.
        "Exception: "
    }
}

/// Whether an output's address bytes are a point of the curve, whatever its prefix byte (the
/// node's parser reads any prefix other than 43 as "y even").
fn is_point(address: &[u8]) -> bool {
    match address.len() {
        33 => {
            let mut even = address.to_vec();
            even[0] = 42;
            decode_address(&bs58::encode(even).into_string()).is_ok()
        }
        64 => decode_address(&hex::encode(address)).is_ok(),
        _ => false,
    }
}

/// What the node knows of an input's output, for the owner lookup of the first input.
enum Known {
    Output,
    /// The transaction exists, but not this output index.
    NoSuchIndex,
    Unknown,
}

fn known_output(state: &ChainState, tx_hash: &str, index: u8) -> Known {
    let count = state
        .pending
        .iter()
        .chain(state.mined.iter().map(|(_, p)| p))
        .find(|p| p.hash == tx_hash)
        .map(|p| p.tx.outputs.len())
        .or_else(|| {
            state
                .blocks
                .values()
                .flat_map(|b| b.transactions.iter())
                .find(|t| t.hash == tx_hash)
                .map(|t| t.outputs.len())
        });
    match count {
        Some(n) if usize::from(index) < n => Known::Output,
        Some(_) => Known::NoSuchIndex,
        // Seeded coins: the node knows the transaction they come from.
        None if state
            .utxos
            .iter()
            .chain(&state.spent_utxos)
            .any(|u| u.tx_hash == tx_hash) =>
        {
            Known::Output
        }
        None => Known::Unknown,
    }
}

/// Judges a pushed transaction in the node's order (TRANSACTIONS.md §9): parse, the recent
/// cache, the first input's owner, verification, pending spends.
fn judge(state: &ChainState, tx_hex: &str) -> Result<Pushed, Refused> {
    let bytes =
        hex::decode(tx_hex).map_err(|_| Refused::Raised("Uncaught ValueError exception"))?;
    let mut tx = Transaction::parse_wire(&bytes)
        .map_err(|e| Refused::Raised(parse_error_text(&bytes, &e)))?;
    if !tx.outputs.iter().all(|o| is_point(&o.address)) {
        return Err(Refused::Raised("Uncaught ValueError exception"));
    }
    // The node hashes its own serialisation, which writes a repeated signature once.
    let mut seen = std::collections::HashSet::new();
    tx.signatures.retain(|s| seen.insert(*s));
    let hash = tx.hash();
    if state.recent.contains(&hash) {
        return Err(Refused::JustAdded);
    }
    let first = tx
        .inputs
        .first()
        .ok_or(Refused::Raised("Uncaught IndexError exception"))?;
    match known_output(state, &hex::encode(first.tx_hash), first.index) {
        Known::Output => {}
        Known::NoSuchIndex => return Err(Refused::Raised("Uncaught IndexError exception")),
        Known::Unknown => return Err(Refused::Raised("Exception: ")),
    }
    // verify(): no output spent twice, every input confirmed unspent, signatures, outputs, fee.
    let mut distinct = std::collections::HashSet::new();
    if !tx
        .inputs
        .iter()
        .all(|i| distinct.insert((i.tx_hash, i.index)))
    {
        return Err(Refused::NotAdded);
    }
    let mut owners = Vec::new();
    let mut owner_bytes = Vec::new();
    let mut spent = Vec::new();
    for input in &tx.inputs {
        let tx_hash = hex::encode(input.tx_hash);
        let utxo = find_utxo(&state.utxos, &tx_hash, input.index).ok_or(Refused::NotAdded)?;
        owner_bytes.push(decode_address(&utxo.owner).map_err(|_| Refused::NotAdded)?);
        owners.push(utxo.owner.clone());
        spent.push(SimSpent {
            tx_hash,
            index: input.index,
            amount: utxo.amount,
        });
    }
    tx.verify(&owner_bytes).map_err(|_| Refused::NotAdded)?;
    // Only canonical prefixes survive the node's re-encoding with the signature intact.
    let outputs_ok = !tx.outputs.is_empty()
        && tx
            .outputs
            .iter()
            .all(|o| o.units > 0 && (o.address.len() == 64 || matches!(o.address[0], 42 | 43)));
    let inputs_total: u64 = spent.iter().map(|s| s.amount.units() as u64).sum();
    let outputs_total = tx
        .outputs
        .iter()
        .try_fold(0u64, |sum, o| sum.checked_add(o.units));
    if !outputs_ok || outputs_total.is_none_or(|total| total > inputs_total) {
        return Err(Refused::NotAdded);
    }
    if spent
        .iter()
        .any(|s| spent_by_pending(state, &s.tx_hash, s.index))
    {
        return Err(Refused::NotAdded);
    }
    Ok(Pushed {
        hash,
        tx,
        owners,
        spent,
        held: false,
    })
}

#[derive(Deserialize)]
struct TransactionQuery {
    tx_hash: String,
}

/// `get_transaction` (§8.3): a lagging node's stale answer while it lasts, else pending, in a
/// block (as `get_blocks_details` renders it), or "Transaction not found".
async fn get_transaction(
    State(state): State<Shared>,
    Query(q): Query<TransactionQuery>,
) -> Response {
    if let Some(response) = rate_limited(&state, Limited::GetTransaction) {
        return response;
    }
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(body) = state.transaction_answers.pop_front() {
        return Json(body).into_response();
    }
    match find_transaction(&mut state, &q.tx_hash) {
        Some(result) => Json(json!({ "ok": true, "result": result })).into_response(),
        None => refusal(StatusCode::OK, "Transaction not found"),
    }
}

fn find_transaction(state: &mut ChainState, hash: &str) -> Option<Value> {
    let stale = match state.lagging.get_mut(hash).map(Lagging::take) {
        Some(None) => {
            state.lagging.remove(hash);
            None
        }
        other => other.flatten(),
    };
    match stale {
        Some(Stale::NotFound) => return None,
        Some(Stale::Pending) => {
            return state
                .pending
                .iter()
                .chain(state.mined.iter().map(|(_, p)| p))
                .find(|p| p.hash == hash)
                .map(Pushed::render_pending);
        }
        None => {}
    }
    if let Some(pending) = state.pending.iter().find(|p| p.hash == hash) {
        return Some(pending.render_pending());
    }
    let block = state
        .blocks
        .values()
        .find(|b| b.transactions.iter().any(|t| t.hash == hash))?;
    let rendered = render_block(block, false);
    rendered["transactions"]
        .as_array()?
        .iter()
        .find(|t| t["hash"] == hash)
        .cloned()
}

/// The inputs of a "nice transaction" and its fee: the spent outputs when known, placeholder
/// outputs of 1 coin otherwise (hand-written scenarios).
fn render_inputs(tx: &SimTransaction) -> (Vec<Value>, Box<RawValue>) {
    if tx.spent.is_empty() {
        let inputs = tx
            .inputs
            .iter()
            .enumerate()
            .map(|(i, owner)| json!({ "index": 0, "tx_hash": format!("{:064x}", i), "address": owner, "amount": 1 }))
            .collect();
        return (inputs, number(Amount::ZERO));
    }
    let inputs = tx
        .spent
        .iter()
        .zip(&tx.inputs)
        .map(|(s, owner)| json!({ "index": s.index, "tx_hash": s.tx_hash, "address": owner, "amount": number(s.amount) }))
        .collect();
    let spent: i64 = tx.spent.iter().map(|s| s.amount.units()).sum();
    let paid: i64 = tx.outputs.iter().map(|o| o.amount.units()).sum();
    let fee = Amount::from_units(spent - paid).unwrap_or(Amount::ZERO);
    (inputs, number(fee))
}
