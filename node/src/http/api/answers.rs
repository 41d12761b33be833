//! Every answer of `/api/v1`, as the types the handlers return and the document describes.
//! Amounts are [`Coins`]: decimal strings with 8 decimals, never JSON numbers.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minerpool_core::money::Amount;
use minerpool_core::store::StoreError;
use minerpool_core::store::ledger::{Basis, LedgerKind};
use minerpool_core::store::payouts::Recipient;
use minerpool_core::store::runs::JobOutcome;
use minerpool_core::store::spends;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// What every refused or failed request answers: a message naming what was wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// What any read may answer besides its rows.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ListRefusals {
    /// a parameter is malformed, out of bounds or unknown
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// the database is unavailable, or the answer took longer than the node's request timeout
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a read or write of one named record may answer besides it.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum LookupRefusals {
    /// the address is malformed
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// there is no such record
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// the database is unavailable, or the answer took longer than the node's request timeout
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a write may answer before it looks at its request.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteRefusals {
    /// missing or wrong bearer token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// writes are disabled (no admin token is set)
    #[response(status = 403)]
    Disabled(ErrorBody),
}

/// An API error: a status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "API request failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

/// An amount of coins: a decimal string with 8 decimals.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Coins(String);

impl Coins {
    /// Smallest units as coins (a negative count, which no stored total should be, as zero).
    pub fn of_units(units: i64) -> Coins {
        Coins(
            Amount::from_units(units.max(0))
                .unwrap_or(Amount::ZERO)
                .to_string(),
        )
    }
}

impl PartialSchema for Coins {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some("^[0-9]+\\.[0-9]{8}$"))
            .description(Some("an amount of coins, with 8 decimals"))
            .examples([serde_json::json!("12.50000000")])
            .into()
    }
}

impl ToSchema for Coins {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Coins")
    }
}

/// A time in RFC 3339, UTC.
pub fn rfc3339(time: bson::DateTime) -> String {
    time.try_to_rfc3339_string().unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub address: String,
    pub registered: bool,
    pub score: i64,
    /// As the original iNode writes it: naive UTC ISO 8601 with microseconds, or "0" when never.
    pub last_active_time: String,
}

#[derive(Serialize, ToSchema)]
pub struct Pools {
    pub pools: Vec<Pool>,
    /// The `after` of the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PoolAdded {
    pub address: String,
    /// The registry entry's id.
    pub id: String,
}

/// A validator, or the error that keeps its stored document from being read.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ValidatorEntry {
    Validator(Validator),
    Unreadable(UnreadableValidator),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validator {
    pub address: String,
    /// 1 when it reported work since the last decay, else 0.
    pub score: i64,
    /// Share of the stake, in percent with 2 decimals.
    #[schema(pattern = "^[0-9]+\\.[0-9]{2}$")]
    pub percentage: String,
    /// The stake the chain reports, in coins, as the chain gives it.
    pub total_stake: f64,
    pub ip: Option<String>,
    pub port: Option<u16>,
    #[schema(format = DateTime)]
    pub ping: Option<String>,
    #[schema(format = DateTime)]
    pub last_active_time: Option<String>,
    /// Whether it sends signed messages (and so is refused unsigned ones under protocol `both`).
    pub signs: bool,
    #[schema(format = DateTime)]
    pub signed_since: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnreadableValidator {
    pub address: String,
    /// Why its stored document cannot be read.
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct Validators {
    pub validators: Vec<ValidatorEntry>,
    /// The `after` of the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsignedAllowed {
    pub address: String,
    pub signs: bool,
    /// Whether it was recorded as signing before.
    pub was_signing: bool,
}

/// Who a ledger line pays.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Fee,
    Pool,
    Validator,
    Unallocated,
}

impl From<LedgerKind> for LineKind {
    fn from(kind: LedgerKind) -> Self {
        match kind {
            LedgerKind::Fee => LineKind::Fee,
            LedgerKind::Pool => LineKind::Pool,
            LedgerKind::Validator => LineKind::Validator,
            LedgerKind::Unallocated => LineKind::Unallocated,
        }
    }
}

/// Why a ledger line has its size.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineBasis {
    /// The fee percentage of the whole.
    Fee { percent: i64 },
    /// The pool's score when the distribution was made.
    Score { score: i64 },
    /// The validator's stake percentage, in hundredths.
    Percentage { hundredths: i64 },
    /// Whatever no one else could receive.
    Remainder,
}

impl From<&Basis> for LineBasis {
    fn from(basis: &Basis) -> Self {
        match *basis {
            Basis::Fee { percent } => LineBasis::Fee { percent },
            Basis::Score { score } => LineBasis::Score { score },
            Basis::Percentage { hundredths } => LineBasis::Percentage { hundredths },
            Basis::Remainder => LineBasis::Remainder,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credit {
    /// The distribution's block range, `first-last`.
    pub distribution: String,
    pub kind: LineKind,
    pub amount: Coins,
    pub basis: LineBasis,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Credits {
    pub address: String,
    pub credits: Vec<Credit>,
    /// The `before` of the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutBatch {
    pub batch: String,
    /// `payout` (pays recipients) or `consolidation` (merges the wallet's coins).
    pub kind: String,
    /// `created`, `signed`, `submitted`, `abandoning`, `confirmed`, `failed`, `abandoned` or
    /// `simulated`.
    pub state: String,
    pub recipients: usize,
    /// Paid to the recipients.
    pub total: Coins,
    pub fee: Coins,
    pub tx_hash: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PayoutBatches {
    pub batches: Vec<PayoutBatch>,
    /// The `before` of the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub batch: String,
    pub state: String,
    pub amount: Coins,
    pub tx_hash: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Payouts {
    pub address: String,
    pub payouts: Vec<Payout>,
    /// The `before` of the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Balance {
    pub address: String,
    pub pending: Coins,
    pub paid: Coins,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub address: String,
    /// The first hour's start (UTC).
    #[schema(format = DateTime)]
    pub from: String,
    pub hours: usize,
    /// Credited in each hour, by the time of the blocks that carried the income.
    pub earned: Vec<Coins>,
    /// The highest pool score recorded in each hour; null for an hour with no record.
    pub pool_score: Vec<Option<i64>>,
    /// The highest validator score recorded in each hour; null for an hour with no record.
    pub validator_score: Vec<Option<i64>>,
}

#[derive(Serialize, ToSchema)]
pub struct Income {
    /// The first hour's start (UTC).
    #[schema(format = DateTime)]
    pub from: String,
    pub hours: usize,
    /// Received in each hour, by block time.
    pub received: Vec<Coins>,
}

#[derive(Serialize, ToSchema)]
pub struct DistributionLine {
    pub address: String,
    pub kind: LineKind,
    pub amount: Coins,
    pub basis: LineBasis,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    /// The block range, `first-last`.
    pub blocks: String,
    pub received: Coins,
    /// The hashes of the transactions that paid the iNode.
    pub transactions: Vec<String>,
    pub lines: Vec<DistributionLine>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Distributions {
    pub distributions: Vec<Distribution>,
    /// The `before` of the next page; null on the last page.
    pub next: Option<String>,
}

/// How a job run ended (or that it has not).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Running,
    Succeeded,
    /// It could not do its work (its `reason` says why); nothing is wrong with the run itself.
    Blocked,
    Failed,
}

impl From<JobOutcome> for RunOutcome {
    fn from(outcome: JobOutcome) -> Self {
        match outcome {
            JobOutcome::Running => RunOutcome::Running,
            JobOutcome::Succeeded => RunOutcome::Succeeded,
            JobOutcome::Blocked => RunOutcome::Blocked,
            JobOutcome::Failed => RunOutcome::Failed,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    pub id: String,
    pub job: String,
    pub outcome: RunOutcome,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// The run's figures, as its job's summary (README, "Job summaries").
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Why the run failed: in full with the admin token, otherwise a generic reason.
    pub error: Option<String>,
    /// Why a blocked run could not do its work, and what would unblock it.
    pub reason: Option<String>,
    /// Seconds the run waited out the chain's rate limits (shared by the jobs on one host).
    pub rate_limited_seconds: Option<f64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRuns {
    pub job_runs: Vec<JobRun>,
    /// The `before` of the next page; null on the last page.
    pub next: Option<String>,
}

/// Scanned height and money totals, as of the last rewards or payouts run.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub last_scanned_height: Option<i64>,
    /// The highest block the chain answered the rewards job's last request with: it reached at
    /// least this far.
    pub chain_height: Option<i64>,
    pub distributions: u64,
    pub received: Coins,
    /// pending + inFlight + paid + feesSpent.
    pub credited: Coins,
    pub pending: Coins,
    /// In payout batches not yet in a block.
    pub in_flight: Coins,
    pub paid: Coins,
    /// Fees of confirmed payout batches.
    pub fees_spent: Coins,
    #[schema(format = DateTime)]
    pub as_of: Option<String>,
}

/// Whose a spend of the wallet is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpendOrigin {
    /// One of our payout batches' own transaction.
    Batch,
    /// The transaction abandoning one of our batches.
    Abandon,
    /// Not made by minerpool: a store restored from a backup, a second installation with the
    /// same key, or a stolen key. Payouts are held while one is unresolved.
    Foreign,
}

impl From<spends::SpendOrigin> for SpendOrigin {
    fn from(origin: spends::SpendOrigin) -> Self {
        match origin {
            spends::SpendOrigin::Batch => SpendOrigin::Batch,
            spends::SpendOrigin::Abandon => SpendOrigin::Abandon,
            spends::SpendOrigin::Foreign => SpendOrigin::Foreign,
        }
    }
}

/// How an operator resolved a foreign spend.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionKind {
    /// Its outputs to known payees were recorded paid, by a recovered payout batch.
    Adopted,
    /// The operator moved those coins; balances unchanged.
    Acknowledged,
}

impl From<spends::ResolutionKind> for ResolutionKind {
    fn from(kind: spends::ResolutionKind) -> Self {
        match kind {
            spends::ResolutionKind::Adopted => ResolutionKind::Adopted,
            spends::ResolutionKind::Acknowledged => ResolutionKind::Acknowledged,
        }
    }
}

/// What a spend paid one address.
#[derive(Serialize, ToSchema)]
pub struct SpendOutput {
    pub address: String,
    pub amount: Coins,
}

fn spend_outputs(recipients: &[Recipient]) -> Vec<SpendOutput> {
    recipients
        .iter()
        .map(|r| SpendOutput {
            address: r.address.clone(),
            amount: Coins::of_units(r.units),
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendResolution {
    pub kind: ResolutionKind,
    /// Why, as the operator said.
    pub reason: String,
    #[schema(format = DateTime)]
    pub at: String,
    /// The recovered payout batch an adoption recorded.
    pub batch: Option<String>,
    /// What an adoption recorded as paid, per address.
    pub adopted: Vec<SpendOutput>,
    /// Outputs to addresses without a balance: not payments the books know of.
    pub not_adopted: Vec<SpendOutput>,
}

/// A transaction the chain shows spending the iNode wallet.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletSpend {
    /// The transaction hash, or `pending-spend-of:<hash>:<index>` for a pending spend the
    /// chain's node names only by the wallet output it spends.
    pub tx_hash: String,
    pub origin: SpendOrigin,
    /// Our payout batch, when the origin is `batch` or `abandon`.
    pub batch: Option<String>,
    /// `in block N`, `pending`, or `seen pending, since dropped` (it may still be mined).
    #[serde(rename = "where")]
    pub whereabouts: String,
    pub block: Option<i64>,
    /// The block's time on the chain.
    #[schema(format = DateTime)]
    pub block_time: Option<String>,
    /// What it paid each address other than the wallet.
    pub outputs: Vec<SpendOutput>,
    /// Their total: what left the wallet.
    pub paid: Coins,
    /// What it paid back to the wallet.
    pub change: Coins,
    /// Why its outputs cannot all be read (such a spend can only be acknowledged).
    pub unreadable: Option<String>,
    /// Foreign, neither adopted nor acknowledged: payouts are held while it is.
    pub unresolved: bool,
    pub resolution: Option<SpendResolution>,
    #[schema(format = DateTime)]
    pub first_seen_at: String,
}

impl From<&spends::WalletSpend> for WalletSpend {
    fn from(spend: &spends::WalletSpend) -> Self {
        WalletSpend {
            tx_hash: spend.hash.clone(),
            origin: spend.origin.into(),
            batch: spend.batch.clone(),
            whereabouts: spend.whereabouts().to_string(),
            block: spend.block,
            block_time: spend.block_time.map(rfc3339),
            outputs: spend_outputs(&spend.outputs),
            paid: Coins::of_units(spend.units()),
            change: Coins::of_units(spend.change),
            unreadable: spend.unreadable.clone(),
            unresolved: spend.is_unresolved(),
            resolution: spend.resolution.as_ref().map(|r| SpendResolution {
                kind: r.kind.into(),
                reason: r.reason.clone(),
                at: rfc3339(r.at),
                batch: r.batch.clone(),
                adopted: spend_outputs(&r.adopted),
                not_adopted: spend_outputs(&r.not_adopted),
            }),
            first_seen_at: rfc3339(spend.first_seen_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletSpends {
    /// The last block whose spends of the wallet were read; null before the first read.
    pub read_to: Option<i64>,
    /// Unresolved foreign spends, whatever the filter: payouts are held while there is one.
    pub unresolved: u64,
    /// Newest first (by when minerpool first saw them).
    pub spends: Vec<WalletSpend>,
}
