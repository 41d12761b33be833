//! The versioned JSON API under `/api/v1`. Every handler's route, parameters and answers are
//! declared once, on the handler; the router and `/api/v1/openapi.json` are both built from those
//! declarations, so a route cannot exist without its document. Amounts are decimal strings with
//! 8 decimals, never JSON floats. Writes need `Authorization: Bearer <MINERPOOL_ADMIN_TOKEN>`.

mod answers;
mod params;

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minerpool_core::address::check_format;
use minerpool_core::job::Job;
use minerpool_core::store::StoreError;
use minerpool_core::store::history::ScoreKind;
use minerpool_core::store::ledger::CreditLine;
use minerpool_core::store::paging::{NewestFirst, next_before};
use minerpool_core::store::registry::Validator;
use minerpool_core::store::registry::{PoolOverview, PoolRegistration};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::answers::*;
use self::params::*;
use super::legacy::legacy_time_text;
use crate::state::NodeState;

type Shared = State<Arc<NodeState>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "minerpool node API",
        description = "Amounts are decimal strings with 8 decimals. A request with a parameter out \
                       of its documented form or bounds, an empty or malformed cursor, a malformed \
                       address or an unknown query parameter is refused with 400 and a message \
                       naming it: nothing is clamped or ignored."
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody, Coins, Address, SpendHash))
)]
struct ApiDoc;

/// The bearer token that every write asks for.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The API's routes and its document, from the same declarations.
fn parts() -> (axum::Router<Arc<NodeState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(document))
        .routes(routes!(list_pools, add_pool))
        .routes(routes!(get_pool, remove_pool))
        .routes(routes!(list_validators))
        .routes(routes!(get_validator))
        .routes(routes!(allow_unsigned))
        .routes(routes!(list_credits))
        .routes(routes!(list_payout_batches))
        .routes(routes!(history))
        .routes(routes!(income))
        .routes(routes!(get_balance))
        .routes(routes!(list_payouts))
        .routes(routes!(list_distributions))
        .routes(routes!(list_job_runs))
        .routes(routes!(stats))
        .routes(routes!(list_wallet_spends))
        .routes(routes!(get_wallet_spend))
        .routes(routes!(adopt_wallet_spend))
        .routes(routes!(acknowledge_wallet_spend))
        .split_for_parts()
}

/// The document, serialized once, from the declarations the first router was built from.
static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();

pub fn router() -> axum::Router<Arc<NodeState>> {
    let (router, document) = parts();
    DOCUMENT.get_or_init(|| serde_json::to_value(document).unwrap_or_default());
    router
}

/// The OpenAPI 3.1 document of this API, as `/api/v1/openapi.json` serves it.
pub fn openapi() -> &'static serde_json::Value {
    DOCUMENT.get_or_init(|| serde_json::to_value(parts().1).unwrap_or_default())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "document",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", body = Object)))]
async fn document() -> Json<&'static serde_json::Value> {
    Json(openapi())
}

/// Whether the request carries the admin token: admin reads see what public ones do not.
fn is_admin(state: &NodeState, headers: &HeaderMap) -> bool {
    authorize(state, headers).is_ok()
}

/// What the public sees of a failed run's error: stored errors name chain URLs, query strings
/// and response bodies, which stay in the logs and in admin reads.
const RUN_FAILED_PUBLIC: &str = "the run failed; the reason is in its log";

/// Compares the bearer token in constant time; writes are disabled when no token is set.
fn authorize(state: &NodeState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.secrets.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "writes are disabled: MINERPOOL_ADMIN_TOKEN is not set",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

fn pool_answer(pool: &PoolOverview) -> Pool {
    Pool {
        address: pool.pool_address.clone(),
        registered: pool.registered,
        score: pool.score,
        last_active_time: legacy_time_text(pool.last_active_time),
    }
}

/// Registered pools with their scores, by address.
#[utoipa::path(get, path = "/pools", tag = "pools", params(AddressPage), responses(
    (status = 200, body = Pools),
    ListRefusals))]
async fn list_pools(
    State(state): Shared,
    ApiQuery(page): ApiQuery<AddressPage>,
) -> ApiResult<Pools> {
    let after = page.after.as_ref().map(|a| a.0.as_str());
    let found = state.store.pool_overviews(after, page.limit.0).await?;
    Ok(Json(Pools {
        next: page.next(&found, |p| p.pool_address.clone()),
        pools: found.iter().map(pool_answer).collect(),
    }))
}

/// One pool.
#[utoipa::path(get, path = "/pools/{address}", tag = "pools", params(AddressPath), responses(
    (status = 200, body = Pool),
    LookupRefusals))]
async fn get_pool(State(state): Shared, ApiPath(path): ApiPath<AddressPath>) -> ApiResult<Pool> {
    let address = path.address.0;
    match state.store.pool_overview(&address).await? {
        Some(pool) => Ok(Json(pool_answer(&pool))),
        None => Err(ApiError::not_found(format!("no pool {address}"))),
    }
}

/// A pool to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddPool {
    /// It must also be a public key (a point on the curve), or no payment could reach it.
    address: Address,
}

/// Register a pool.
#[utoipa::path(post, path = "/pools", tag = "pools", request_body = AddPool,
    security(("bearer" = [])), responses(
    (status = 201, description = "registered", body = PoolAdded,
        headers(("Location" = String, description = "the new pool's URL"))),
    WriteRefusals,
    (status = 400, description = "the body is malformed or the address is not an address", body = ErrorBody),
    (status = 409, description = "the pool is already registered", body = ErrorBody),
    (status = 413, description = "the body is too large", body = ErrorBody),
    (status = 415, description = "the body is not application/json", body = ErrorBody),
    (status = 422, description = "the address is well-formed but not a public key: no payment could reach it", body = ErrorBody),
    (status = 503, description = "the database is unavailable, or the answer took longer than the node's request timeout", body = ErrorBody)))]
async fn add_pool(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<ApiJson<AddPool>, ApiError>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let ApiJson(body) = body?;
    let address = body.address.0;
    check_format(&address).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("address {address:?}: {e}"),
        )
    })?;
    match state.store.register_pool(&address).await? {
        PoolRegistration::Added { id } => Ok((
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/v1/pools/{address}"))],
            Json(PoolAdded { address, id }),
        )
            .into_response()),
        PoolRegistration::AlreadyExists => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("pool {address} is already registered"),
        )),
    }
}

/// Remove a pool.
#[utoipa::path(delete, path = "/pools/{address}", tag = "pools", params(AddressPath),
    security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    WriteRefusals, LookupRefusals))]
async fn remove_pool(
    State(state): Shared,
    headers: HeaderMap,
    path: Result<ApiPath<AddressPath>, ApiError>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let address = path?.0.address.0;
    if state.store.unregister_pool(&address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no pool {address}")))
    }
}

/// Validators, by address.
#[utoipa::path(get, path = "/validators", tag = "validators", params(AddressPage), responses(
    (status = 200, body = Validators),
    ListRefusals))]
async fn list_validators(
    State(state): Shared,
    ApiQuery(page): ApiQuery<AddressPage>,
) -> ApiResult<Validators> {
    let after = page.after.as_ref().map(|a| a.0.as_str());
    let found = state.store.validators_page(after, page.limit.0).await?;
    let next = page.next(&found, |(address, _)| address.clone());
    Ok(Json(Validators {
        validators: found
            .into_iter()
            .map(|(address, validator)| validator_answer(address, validator))
            .collect(),
        next,
    }))
}

fn validator_answer(address: String, validator: Result<Validator, String>) -> ValidatorEntry {
    match validator {
        Ok(v) => ValidatorEntry::Validator(answers::Validator {
            address,
            score: v.score,
            percentage: format!("{:.2}", v.percentage),
            total_stake: v.total_stake,
            ip: v.ip,
            port: v.port,
            ping: v.ping.map(rfc3339),
            last_active_time: v.last_active_time.map(rfc3339),
            signs: v.signed_since.is_some(),
            signed_since: v.signed_since.map(rfc3339),
        }),
        Err(error) => ValidatorEntry::Unreadable(UnreadableValidator { address, error }),
    }
}

/// One validator; `signs` and `signedSince` say whether (and since when) it sends signed
/// messages, and so is refused unsigned ones under protocol `both`.
#[utoipa::path(get, path = "/validators/{address}", tag = "validators", params(AddressPath), responses(
    (status = 200, body = ValidatorEntry),
    LookupRefusals))]
async fn get_validator(
    State(state): Shared,
    ApiPath(path): ApiPath<AddressPath>,
) -> ApiResult<ValidatorEntry> {
    let address = path.address.0;
    match state.store.validator_of(&address).await? {
        Some(validator) => Ok(Json(validator_answer(address, validator))),
        None => Err(ApiError::not_found(format!("no validator {address}"))),
    }
}

/// Let a validator that signs send unsigned messages again under protocol `both` (SPEC §4.5):
/// for a validator that must go back to software that does not sign. Its next valid signed
/// message records it as signing again.
#[utoipa::path(post, path = "/validators/{address}/allow-unsigned", tag = "validators",
    params(AddressPath), security(("bearer" = [])), responses(
    (status = 200, body = UnsignedAllowed),
    WriteRefusals, LookupRefusals))]
async fn allow_unsigned(
    State(state): Shared,
    headers: HeaderMap,
    path: Result<ApiPath<AddressPath>, ApiError>,
) -> ApiResult<UnsignedAllowed> {
    authorize(&state, &headers)?;
    let address = path?.0.address.0;
    if state.store.validator_of(&address).await?.is_none() {
        return Err(ApiError::not_found(format!("no validator {address}")));
    }
    let was_signing = state
        .store
        .allow_unsigned(&address, bson::DateTime::now())
        .await?;
    tracing::info!(validator = %address, was_signing, "unsigned messages allowed again for the validator");
    Ok(Json(UnsignedAllowed {
        address,
        signs: false,
        was_signing,
    }))
}

/// Ledger lines crediting an address, newest first (a page holds `limit` distributions).
#[utoipa::path(get, path = "/credits/{address}", tag = "ledger", params(AddressPath, HeightPage), responses(
    (status = 200, body = Credits),
    ListRefusals))]
async fn list_credits(
    State(state): Shared,
    ApiPath(path): ApiPath<AddressPath>,
    ApiQuery(page): ApiQuery<HeightPage>,
) -> ApiResult<Credits> {
    let address = path.address.0;
    let found = state
        .store
        .credits_of(&address, page.limit.0, NewestPage::before(&page))
        .await?;
    let next = CreditLine::next_page(&found, page.limit.0).map(|b| b.to_string());
    let credits = found
        .iter()
        .map(|c| Credit {
            distribution: c.distribution.clone(),
            kind: c.line.kind.into(),
            amount: Coins::of_units(c.line.units),
            basis: (&c.line.basis).into(),
            created_at: rfc3339(c.created_at),
        })
        .collect();
    Ok(Json(Credits {
        address,
        credits,
        next,
    }))
}

/// The `before` cursor of the page after `found`, when it is full.
fn next_page<R: NewestFirst>(found: &[R], limit: Limit) -> Option<String> {
    next_before(found, limit.0).map(|b| b.to_string())
}

/// Every payout batch, newest first.
#[utoipa::path(get, path = "/payout-batches", tag = "ledger", params(IdPage), responses(
    (status = 200, body = PayoutBatches),
    ListRefusals))]
async fn list_payout_batches(
    State(state): Shared,
    ApiQuery(page): ApiQuery<IdPage>,
) -> ApiResult<PayoutBatches> {
    let found = state
        .store
        .recent_payout_batches(page.limit.0, NewestPage::before(&page))
        .await?;
    Ok(Json(PayoutBatches {
        next: next_page(&found, page.limit),
        batches: found
            .iter()
            .map(|b| PayoutBatch {
                batch: b.id.clone(),
                kind: b.kind.clone(),
                state: b.state.clone(),
                recipients: b.recipients,
                total: Coins::of_units(b.total),
                fee: Coins::of_units(b.fee),
                tx_hash: b.tx_hash.clone(),
                created_at: b.created_at.map(rfc3339),
            })
            .collect(),
    }))
}

/// An address's earnings, pool score and validator score per hour (UTC), oldest first.
#[utoipa::path(get, path = "/history/{address}", tag = "ledger", params(AddressPath, Window), responses(
    (status = 200, body = History),
    ListRefusals))]
async fn history(
    State(state): Shared,
    ApiPath(path): ApiPath<AddressPath>,
    ApiQuery(window): ApiQuery<Window>,
) -> ApiResult<History> {
    let address = path.address.0;
    let hours = window.hours();
    let store = &state.store;
    let earned = store.earnings_per_hour(&address, hours).await?;
    let pool_score = store
        .score_per_hour(ScoreKind::Pool, &address, hours)
        .await?;
    let validator_score = store
        .score_per_hour(ScoreKind::Validator, &address, hours)
        .await?;
    Ok(Json(History {
        address,
        from: rfc3339(hours.start()),
        hours: hours.count,
        earned: earned.into_iter().map(Coins::of_units).collect(),
        pool_score,
        validator_score,
    }))
}

/// What the iNode received per hour (UTC), over every distribution, oldest first.
#[utoipa::path(get, path = "/income", tag = "ledger", params(Window), responses(
    (status = 200, body = Income),
    ListRefusals))]
async fn income(State(state): Shared, ApiQuery(window): ApiQuery<Window>) -> ApiResult<Income> {
    let hours = window.hours();
    let received = state.store.income_per_hour(hours).await?;
    Ok(Json(Income {
        from: rfc3339(hours.start()),
        hours: hours.count,
        received: received.into_iter().map(Coins::of_units).collect(),
    }))
}

/// Pending and paid amounts of an address (zero for an address never credited).
#[utoipa::path(get, path = "/balances/{address}", tag = "ledger", params(AddressPath), responses(
    (status = 200, body = Balance),
    ListRefusals))]
async fn get_balance(
    State(state): Shared,
    ApiPath(path): ApiPath<AddressPath>,
) -> ApiResult<Balance> {
    let address = path.address.0;
    let (pending, paid) = state
        .store
        .balance_of(&address)
        .await?
        .map_or((0, 0), |b| (b.pending, b.paid));
    Ok(Json(Balance {
        address,
        pending: Coins::of_units(pending),
        paid: Coins::of_units(paid),
    }))
}

/// Payout batches paying an address, newest first.
#[utoipa::path(get, path = "/payouts/{address}", tag = "ledger", params(AddressPath, IdPage), responses(
    (status = 200, body = Payouts),
    ListRefusals))]
async fn list_payouts(
    State(state): Shared,
    ApiPath(path): ApiPath<AddressPath>,
    ApiQuery(page): ApiQuery<IdPage>,
) -> ApiResult<Payouts> {
    let address = path.address.0;
    let found = state
        .store
        .payouts_of(&address, page.limit.0, NewestPage::before(&page))
        .await?;
    Ok(Json(Payouts {
        next: next_page(&found, page.limit),
        payouts: found
            .iter()
            .map(|p| Payout {
                batch: p.batch_id.clone(),
                state: p.state.clone(),
                amount: Coins::of_units(p.units),
                tx_hash: p.tx_hash.clone(),
                created_at: p.created_at.map(rfc3339),
            })
            .collect(),
        address,
    }))
}

/// Reward distributions with their ledger lines, newest first.
#[utoipa::path(get, path = "/distributions", tag = "ledger", params(HeightPage), responses(
    (status = 200, body = Distributions),
    ListRefusals))]
async fn list_distributions(
    State(state): Shared,
    ApiQuery(page): ApiQuery<HeightPage>,
) -> ApiResult<Distributions> {
    let found = state
        .store
        .recent_distributions(page.limit.0, NewestPage::before(&page))
        .await?;
    Ok(Json(Distributions {
        next: next_page(&found, page.limit),
        distributions: found
            .iter()
            .map(|d| Distribution {
                blocks: d.id.clone(),
                received: Coins::of_units(d.received),
                transactions: d.hashes.clone(),
                lines: d
                    .lines
                    .iter()
                    .map(|l| DistributionLine {
                        address: l.address.clone(),
                        kind: l.kind.into(),
                        amount: Coins::of_units(l.units),
                        basis: (&l.basis).into(),
                    })
                    .collect(),
                created_at: rfc3339(d.created_at),
            })
            .collect(),
    }))
}

/// Job runs, newest first. A failed run's `error` is shown in full only with the admin token
/// (it names chain URLs and answers); otherwise a generic reason.
#[utoipa::path(get, path = "/job-runs", tag = "jobs", params(JobRunsPage), responses(
    (status = 200, body = JobRuns),
    ListRefusals))]
async fn list_job_runs(
    State(state): Shared,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<JobRunsPage>,
) -> ApiResult<JobRuns> {
    let admin = is_admin(&state, &headers);
    let found = state
        .store
        .recent_job_runs(
            page.job.map(Job::name),
            page.limit.0,
            page.before.as_ref().map(|c| &c.0.0),
        )
        .await?;
    Ok(Json(JobRuns {
        next: next_page(&found, page.limit),
        job_runs: found
            .iter()
            .map(|r| answers::JobRun {
                id: r.id.clone(),
                job: r.job.clone(),
                outcome: r.outcome.into(),
                started_at: rfc3339(r.started_at),
                ended_at: r.ended_at.map(rfc3339),
                summary: serde_json::to_value(&r.summary).unwrap_or_default(),
                error: match &r.error {
                    Some(detail) if admin => Some(detail.clone()),
                    Some(_) => Some(RUN_FAILED_PUBLIC.to_owned()),
                    None => None,
                },
                reason: r.reason.clone(),
                rate_limited_seconds: r.rate_limited_seconds,
            })
            .collect(),
    }))
}

/// Scanned height and totals, as of the last rewards or payouts run.
#[utoipa::path(get, path = "/stats", tag = "ledger", responses(
    (status = 200, body = Stats),
    (status = 503, description = "the database is unavailable, or the answer took longer than the node's request timeout", body = ErrorBody)))]
async fn stats(State(state): Shared) -> ApiResult<Stats> {
    let totals = state.store.totals().await?;
    Ok(Json(Stats {
        last_scanned_height: totals.last_scanned_height,
        chain_height: totals.chain_height,
        distributions: totals.distributions,
        received: Coins::of_units(totals.received),
        credited: Coins::of_units(totals.credited),
        pending: Coins::of_units(totals.pending),
        in_flight: Coins::of_units(totals.in_flight),
        paid: Coins::of_units(totals.paid),
        fees_spent: Coins::of_units(totals.fees_spent),
        as_of: totals.as_of.map(rfc3339),
    }))
}

/// Spends of the iNode wallet the chain shows (SPEC §5.3 point 5), newest first: our payout
/// batches' transactions, their abandons, and foreign spends (not made by minerpool: a store
/// restored from a backup, a second installation with the same key, a stolen key). While a
/// foreign spend is unresolved, payouts are held.
#[utoipa::path(get, path = "/wallet-spends", tag = "wallet", params(SpendsPage), responses(
    (status = 200, body = WalletSpends),
    ListRefusals))]
async fn list_wallet_spends(
    State(state): Shared,
    ApiQuery(page): ApiQuery<SpendsPage>,
) -> ApiResult<WalletSpends> {
    let store = &state.store;
    let (found, health, read) = tokio::try_join!(
        store.list_wallet_spends(page.filter.into(), page.limit.0),
        store.foreign_spends_health(),
        store.spends_read(),
    )?;
    Ok(Json(WalletSpends {
        read_to: read.map(|r| r.block_height),
        unresolved: health.unresolved,
        spends: found.iter().map(WalletSpend::from).collect(),
    }))
}

/// The 404 of a spend no document records.
fn no_spend(hash: &str) -> ApiError {
    ApiError::not_found(format!(
        "no spend of the wallet {hash} is recorded (GET /api/v1/wallet-spends lists them)"
    ))
}

/// One spend of the iNode wallet.
#[utoipa::path(get, path = "/wallet-spends/{hash}", tag = "wallet", params(SpendHashPath), responses(
    (status = 200, body = WalletSpend),
    (status = 400, description = "the hash is malformed", body = ErrorBody),
    (status = 404, description = "no spend of the wallet has this hash", body = ErrorBody),
    (status = 503, description = "the database is unavailable, or the answer took longer than the node's request timeout", body = ErrorBody)))]
async fn get_wallet_spend(
    State(state): Shared,
    ApiPath(path): ApiPath<SpendHashPath>,
) -> ApiResult<WalletSpend> {
    let hash = path.hash.0;
    match state.store.wallet_spend(&hash).await? {
        Some(spend) => Ok(Json(WalletSpend::from(&spend))),
        None => Err(no_spend(&hash)),
    }
}

/// Why a foreign spend is adopted or acknowledged; recorded with the decision.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SpendDecision {
    reason: Reason,
}

#[derive(Clone, Copy, Debug)]
enum Decision {
    Adopt,
    Acknowledge,
}

/// Adopt a foreign spend: its outputs to addresses with a balance are recorded paid, exactly
/// what the chain paid each, by a recovered payout batch, in one transaction. Only a spend in a
/// block the rewards job has credited (at least `rewards.confirmations` deep) whose outputs can
/// all be read and which pays no address more than its pending can be adopted.
#[utoipa::path(post, path = "/wallet-spends/{hash}/adopt", tag = "wallet",
    params(SpendHashPath), request_body = SpendDecision, security(("bearer" = [])), responses(
    (status = 200, description = "adopted", body = WalletSpend),
    WriteRefusals,
    (status = 400, description = "the hash is malformed, or the body is not an object with a reason of 1 to 1000 characters (not only blanks) and nothing else", body = ErrorBody),
    (status = 404, description = "no spend of the wallet has this hash", body = ErrorBody),
    (status = 409, description = "the spend was already adopted or acknowledged, or the payees' balances changed meanwhile: nothing was written", body = ErrorBody),
    (status = 413, description = "the body is too large", body = ErrorBody),
    (status = 415, description = "the body is not application/json", body = ErrorBody),
    (status = 422, description = "the spend cannot be adopted (the message says why): it is not foreign, not in a block the rewards job has credited, its outputs cannot all be read, it pays no address with a balance, or it paid an address more than its pending", body = ErrorBody),
    (status = 503, description = "the database is unavailable, or the answer took longer than the node's request timeout", body = ErrorBody)))]
async fn adopt_wallet_spend(
    State(state): Shared,
    headers: HeaderMap,
    path: Result<ApiPath<SpendHashPath>, ApiError>,
    body: Result<ApiJson<ObjectBody<SpendDecision>>, ApiError>,
) -> ApiResult<WalletSpend> {
    resolve_spend(&state, &headers, path, body, Decision::Adopt).await
}

/// Acknowledge a foreign spend: the operator moved those coins; balances are unchanged. Any
/// foreign spend can be acknowledged, pending, dropped or unreadable ones included.
#[utoipa::path(post, path = "/wallet-spends/{hash}/acknowledge", tag = "wallet",
    params(SpendHashPath), request_body = SpendDecision, security(("bearer" = [])), responses(
    (status = 200, description = "acknowledged", body = WalletSpend),
    WriteRefusals,
    (status = 400, description = "the hash is malformed, or the body is not an object with a reason of 1 to 1000 characters (not only blanks) and nothing else", body = ErrorBody),
    (status = 404, description = "no spend of the wallet has this hash", body = ErrorBody),
    (status = 409, description = "the spend was already adopted or acknowledged: nothing was written", body = ErrorBody),
    (status = 413, description = "the body is too large", body = ErrorBody),
    (status = 415, description = "the body is not application/json", body = ErrorBody),
    (status = 422, description = "the spend is not foreign: it is one of our payout batches' own transactions", body = ErrorBody),
    (status = 503, description = "the database is unavailable, or the answer took longer than the node's request timeout", body = ErrorBody)))]
async fn acknowledge_wallet_spend(
    State(state): Shared,
    headers: HeaderMap,
    path: Result<ApiPath<SpendHashPath>, ApiError>,
    body: Result<ApiJson<ObjectBody<SpendDecision>>, ApiError>,
) -> ApiResult<WalletSpend> {
    resolve_spend(&state, &headers, path, body, Decision::Acknowledge).await
}

/// Checks the token, the hash and the body, in that order and before the database is read; a
/// refusal of the store is 422 when it is about what the spend is, 409 when it was resolved or
/// the balances moved meanwhile, with the store's message.
async fn resolve_spend(
    state: &NodeState,
    headers: &HeaderMap,
    path: Result<ApiPath<SpendHashPath>, ApiError>,
    body: Result<ApiJson<ObjectBody<SpendDecision>>, ApiError>,
    decision: Decision,
) -> ApiResult<WalletSpend> {
    authorize(state, headers)?;
    let hash = path?.0.hash.0;
    let reason = body?.0.0.reason.0;
    let store = &state.store;
    if store.wallet_spend(&hash).await?.is_none() {
        return Err(no_spend(&hash));
    }
    let resolved = match decision {
        Decision::Adopt => store.adopt_spend(&hash, &reason).await,
        Decision::Acknowledge => store.acknowledge_spend(&hash, &reason).await,
    }
    .map_err(|e| match e {
        StoreError::Invalid(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
        StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
        other => other.into(),
    })?;
    tracing::warn!(
        spend = %hash,
        ?decision,
        %reason,
        paid = %minerpool_core::money::coins_text(resolved.units()),
        batch = resolved.resolution.as_ref().and_then(|r| r.batch.as_deref()).unwrap_or(""),
        "a foreign spend of the wallet was resolved through the API"
    );
    Ok(Json(WalletSpend::from(&resolved)))
}
