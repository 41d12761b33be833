//! The versioned JSON API under `/api/v1`. Amounts are decimal strings with 8 decimals, never
//! JSON floats. Writes need `Authorization: Bearer <MINERPOOL_ADMIN_TOKEN>`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use minerpool_core::address::{AddressError, check_format, check_syntax};
use minerpool_core::money::Amount;
use minerpool_core::store::StoreError;
use minerpool_core::store::activity::{CreditLine, PoolOverview, PoolRegistration};
use minerpool_core::store::documents::Validator;
use minerpool_core::store::history::{Hours, MAX_HOURS, ScoreKind};
use minerpool_core::store::reads::{Before, NewestFirst, next_before, next_cursor};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::legacy::legacy_time;
use crate::NodeState;

type Shared = State<Arc<NodeState>>;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/pools", get(list_pools).post(add_pool))
        .route("/pools/{address}", get(get_pool).delete(remove_pool))
        .route("/validators", get(list_validators))
        .route("/validators/{address}", get(get_validator))
        .route(
            "/validators/{address}/allow-unsigned",
            axum::routing::post(allow_unsigned),
        )
        .route("/credits/{address}", get(list_credits))
        .route("/payout-batches", get(list_payout_batches))
        .route("/history/{address}", get(history))
        .route("/income", get(income))
        .route("/balances/{address}", get(get_balance))
        .route("/payouts/{address}", get(list_payouts))
        .route("/distributions", get(list_distributions))
        .route("/job-runs", get(list_job_runs))
        .route("/stats", get(stats))
}

/// An API error: a status and a message naming what was wrong.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "API request failed");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        )
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn units(units: i64) -> String {
    Amount::from_units(units.max(0))
        .unwrap_or(Amount::ZERO)
        .to_string()
}

/// An address that looks something up (or removes it) only needs the written form: what the
/// original stored under an off-curve address must stay reachable.
fn valid_address(address: &str) -> Result<(), ApiError> {
    address_rule(address, check_syntax)
}

/// An address entering the registry must be payable (the strict rule).
fn payable_address(address: &str) -> Result<(), ApiError> {
    address_rule(address, check_format)
}

fn address_rule(address: &str, rule: fn(&str) -> Result<(), AddressError>) -> Result<(), ApiError> {
    rule(address)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("address {address:?}: {e}")))
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
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "writes are disabled: MINERPOOL_ADMIN_TOKEN is not set".into(),
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
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ))
    }
}

fn pool_json(pool: &PoolOverview) -> Value {
    json!({
        "address": pool.pool_address,
        "registered": pool.registered,
        "score": pool.score,
        "lastActiveTime": legacy_time(pool.last_active_time),
    })
}

async fn list_pools(
    State(state): Shared,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let page = page(query)?;
    let found = state
        .store
        .pool_overviews(page.after.as_deref(), page.limit())
        .await?;
    let next = page.next(&found, |p| p.pool_address.clone());
    let pools: Vec<Value> = found.iter().map(pool_json).collect();
    Ok(Json(json!({ "pools": pools, "next": next })))
}

async fn get_pool(State(state): Shared, Path(address): Path<String>) -> ApiResult {
    valid_address(&address)?;
    match state.store.pool_overview(&address).await? {
        Some(pool) => Ok(Json(pool_json(&pool))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no pool {address}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPool {
    address: String,
}

async fn add_pool(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Json<AddPool>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    payable_address(&body.address)?;
    match state.store.register_pool(&body.address).await? {
        PoolRegistration::Added { id } => Ok((
            StatusCode::CREATED,
            Json(json!({ "address": body.address, "id": id })),
        )
            .into_response()),
        PoolRegistration::AlreadyExists => Err(ApiError(
            StatusCode::CONFLICT,
            format!("pool {} is already registered", body.address),
        )),
    }
}

async fn remove_pool(
    State(state): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    valid_address(&address)?;
    if state.store.unregister_pool(&address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no pool {address}"),
        ))
    }
}

async fn list_validators(
    State(state): Shared,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let page = page(query)?;
    let found = state
        .store
        .validators_page(page.after.as_deref(), page.limit())
        .await?;
    let next = page.next(&found, |(address, _)| address.clone());
    let validators: Vec<Value> = found
        .into_iter()
        .map(|(address, validator)| validator_json(&address, validator))
        .collect();
    Ok(Json(json!({ "validators": validators, "next": next })))
}

fn validator_json(address: &str, validator: Result<Validator, String>) -> Value {
    match validator {
        Ok(v) => json!({
            "address": address,
            "score": v.score,
            "percentage": format!("{:.2}", v.percentage),
            "totalStake": v.total_stake,
            "ip": v.ip,
            "port": v.port,
            "ping": v.ping.map(rfc3339),
            "lastActiveTime": v.last_active_time.map(rfc3339),
            "signs": v.signed_since.is_some(),
            "signedSince": v.signed_since.map(rfc3339),
        }),
        Err(error) => json!({ "address": address, "error": error }),
    }
}

async fn get_validator(State(state): Shared, Path(address): Path<String>) -> ApiResult {
    valid_address(&address)?;
    match state.store.validator_of(&address).await? {
        Some(validator) => Ok(Json(validator_json(&address, validator))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no validator {address}"),
        )),
    }
}

/// Lets a validator that signs send unsigned messages again under `node.protocol: both` (SPEC
/// §4.5): for a validator that must go back to software that does not sign. Its next valid
/// signed message records it as signing again.
async fn allow_unsigned(
    State(state): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> ApiResult {
    authorize(&state, &headers)?;
    valid_address(&address)?;
    if state.store.validator_of(&address).await?.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no validator {address}"),
        ));
    }
    let was_signing = state
        .store
        .allow_unsigned(&address, bson::DateTime::now())
        .await?;
    tracing::info!(validator = %address, was_signing, "unsigned messages allowed again for the validator");
    Ok(Json(
        json!({ "address": address, "signs": false, "wasSigning": was_signing }),
    ))
}

async fn list_credits(
    State(state): Shared,
    Path(address): Path<String>,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    valid_address(&address)?;
    let page = page(query)?;
    let found = state
        .store
        .credits_of(&address, page.limit(), page.before()?.as_ref())
        .await?;
    let next = CreditLine::next_page(&found, page.limit()).map(|b| b.to_string());
    let credits: Vec<Value> = found
        .iter()
        .map(|c| {
            json!({
                "distribution": c.distribution,
                "kind": c.line.kind,
                "amount": units(c.line.units),
                "basis": c.line.basis,
                "createdAt": rfc3339(c.created_at),
            })
        })
        .collect();
    Ok(Json(
        json!({ "address": address, "credits": credits, "next": next }),
    ))
}

async fn list_payout_batches(
    State(state): Shared,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let page = page(query)?;
    let found = state
        .store
        .recent_payout_batches(page.limit(), page.before()?.as_ref())
        .await?;
    let next = page.next_before(&found);
    let batches: Vec<Value> = found
        .iter()
        .map(|b| {
            json!({
                "batch": b.id,
                "kind": b.kind,
                "state": b.state,
                "recipients": b.recipients,
                "total": units(b.total),
                "fee": units(b.fee),
                "txHash": b.tx_hash,
                "createdAt": b.created_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(json!({ "batches": batches, "next": next })))
}

/// How many hours a history covers: `hours` (1 to 744, default 168).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    #[serde(default)]
    hours: Option<u32>,
}

fn window(
    query: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> Result<Hours, ApiError> {
    let Query(window) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let hours = window.hours.unwrap_or(168) as usize;
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("hours must be 1 to {MAX_HOURS}, got {hours}"),
        ));
    }
    Ok(Hours::ending_at(bson::DateTime::now(), hours))
}

/// An address's earnings and scores per hour, oldest hour first.
async fn history(
    State(state): Shared,
    Path(address): Path<String>,
    query: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    valid_address(&address)?;
    let hours = window(query)?;
    let store = &state.store;
    let earned = store.earnings_per_hour(&address, hours).await?;
    let pool = store
        .score_per_hour(ScoreKind::Pool, &address, hours)
        .await?;
    let validator = store
        .score_per_hour(ScoreKind::Validator, &address, hours)
        .await?;
    Ok(Json(json!({
        "address": address,
        "from": rfc3339(hours.start()),
        "hours": hours.count,
        "earned": earned.into_iter().map(units).collect::<Vec<_>>(),
        "poolScore": pool,
        "validatorScore": validator,
    })))
}

/// Units received per hour, over every distribution, oldest hour first.
async fn income(
    State(state): Shared,
    query: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let hours = window(query)?;
    let received = state.store.income_per_hour(hours).await?;
    Ok(Json(json!({
        "from": rfc3339(hours.start()),
        "hours": hours.count,
        "received": received.into_iter().map(units).collect::<Vec<_>>(),
    })))
}

fn rfc3339(time: bson::DateTime) -> String {
    time.try_to_rfc3339_string().unwrap_or_default()
}

async fn get_balance(State(state): Shared, Path(address): Path<String>) -> ApiResult {
    valid_address(&address)?;
    let (pending, paid) = state
        .store
        .balance_of(&address)
        .await?
        .map_or((0, 0), |b| (b.pending, b.paid));
    Ok(Json(json!({
        "address": address,
        "pending": units(pending),
        "paid": units(paid),
    })))
}

async fn list_payouts(
    State(state): Shared,
    Path(address): Path<String>,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    valid_address(&address)?;
    let page = page(query)?;
    let found = state
        .store
        .payouts_of(&address, page.limit(), page.before()?.as_ref())
        .await?;
    let next = page.next_before(&found);
    let payouts: Vec<Value> = found
        .iter()
        .map(|p| {
            json!({
                "batch": p.batch_id,
                "state": p.state,
                "amount": units(p.units),
                "txHash": p.tx_hash,
                "createdAt": p.created_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(
        json!({ "address": address, "payouts": payouts, "next": next }),
    ))
}

/// Paging of the public lists: `limit` (1 to 200, default 20) and a cursor to the next page,
/// the `next` of the previous answer: `after` (an address) for pools and validators, `before`
/// (a [`Before`]: the last row's milliseconds and key) for the newest-first lists.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

impl Page {
    fn limit(&self) -> i64 {
        i64::from(self.limit.unwrap_or(20)).clamp(1, minerpool_core::store::reads::MAX_PAGE)
    }

    fn before<K: std::str::FromStr>(&self) -> Result<Option<Before<K>>, ApiError> {
        self.before
            .as_deref()
            .map(|text| {
                text.parse::<Before<K>>()
                    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("before {e}")))
            })
            .transpose()
    }

    /// The `after` cursor of the next page: the last key, when this page is full.
    fn next<T>(&self, found: &[T], key: impl Fn(&T) -> String) -> Option<String> {
        next_cursor(found.len(), self.limit(), found.last().map(key))
    }

    /// The `before` cursor of the next page: after the last row, when this page is full.
    fn next_before<R: NewestFirst>(&self, found: &[R]) -> Option<String> {
        next_before(found, self.limit()).map(|b| b.to_string())
    }
}

fn page(
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Page, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn list_distributions(
    State(state): Shared,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let page = page(query)?;
    let found = state
        .store
        .recent_distributions(page.limit(), page.before()?.as_ref())
        .await?;
    let next = page.next_before(&found);
    let distributions: Vec<Value> = found
        .iter()
        .map(|d| {
            json!({
                "blocks": d.id,
                "received": units(d.received),
                "transactions": d.hashes,
                "lines": d.lines.iter().map(|l| json!({
                    "address": l.address,
                    "kind": l.kind,
                    "amount": units(l.units),
                    "basis": l.basis,
                })).collect::<Vec<_>>(),
                "createdAt": rfc3339(d.created_at),
            })
        })
        .collect();
    Ok(Json(
        json!({ "distributions": distributions, "next": next }),
    ))
}

async fn list_job_runs(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let page = page(query)?;
    let admin = is_admin(&state, &headers);
    let found = state
        .store
        .recent_job_runs(page.job.as_deref(), page.limit(), page.before()?.as_ref())
        .await?;
    let next = page.next_before(&found);
    let runs: Vec<Value> = found
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "job": r.job,
                "outcome": r.outcome,
                "startedAt": rfc3339(r.started_at),
                "endedAt": r.ended_at.map(rfc3339),
                "summary": r.summary,
                "error": match &r.error {
                    Some(detail) if admin => Some(detail.as_str()),
                    Some(_) => Some(RUN_FAILED_PUBLIC),
                    None => None,
                },
            })
        })
        .collect();
    Ok(Json(json!({ "jobRuns": runs, "next": next })))
}

async fn stats(State(state): Shared) -> ApiResult {
    let totals = state.store.totals().await?;
    Ok(Json(json!({
        "lastScannedHeight": totals.last_scanned_height,
        "chainHeight": totals.chain_height,
        "distributions": totals.distributions,
        "received": units(totals.received),
        "credited": units(totals.credited),
        "pending": units(totals.pending),
        "inFlight": units(totals.in_flight),
        "paid": units(totals.paid),
        "feesSpent": units(totals.fees_spent),
        "asOf": totals.as_of.map(rfc3339),
    })))
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> Value {
    let amount =
        json!({ "type": "string", "pattern": "^[0-9]+\\.[0-9]{8}$", "example": "12.50000000" });
    let address = json!({ "name": "address", "in": "path", "required": true, "schema": { "type": "string" } });
    let limit = json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 20 } });
    let after = json!({ "name": "after", "in": "query", "description": "the previous page's `next`", "schema": { "type": "string" } });
    let before = json!({ "name": "before", "in": "query", "description": "the previous page's `next`: the last row's milliseconds since the epoch, '.', and its key", "schema": { "type": "string" } });
    let hours = json!({ "name": "hours", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_HOURS, "default": 168 } });
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let ok = |schema: Value| json!({ "description": "OK", "content": { "application/json": { "schema": schema } } });
    let admin = json!([{ "bearer": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "minerpool node API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/api/v1" }],
        "paths": {
            "/pools": {
                "get": { "summary": "Registered pools with their scores, by address", "parameters": [limit, after], "responses": { "200": ok(json!({ "type": "object" })) } },
                "post": {
                    "summary": "Register a pool", "security": admin,
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["address"], "additionalProperties": false,
                        "properties": { "address": { "type": "string" } } } } } },
                    "responses": { "201": ok(json!({ "type": "object" })), "400": error, "401": error, "403": error, "409": error }
                }
            },
            "/pools/{address}": {
                "get": { "summary": "One pool", "parameters": [address], "responses": { "200": ok(json!({ "type": "object" })), "404": error } },
                "delete": { "summary": "Remove a pool", "security": admin, "parameters": [address],
                    "responses": { "204": { "description": "removed" }, "401": error, "403": error, "404": error } }
            },
            "/validators": { "get": { "summary": "Validators, by address", "parameters": [limit, after], "responses": { "200": ok(json!({ "type": "object" })) } } },
            "/validators/{address}": { "get": { "summary": "One validator; `signs` and `signedSince` say whether (and since when) it sends signed messages, and so is refused unsigned ones under protocol both", "parameters": [address], "responses": { "200": ok(json!({ "type": "object" })), "400": error, "404": error } } },
            "/validators/{address}/allow-unsigned": { "post": { "summary": "Let a validator that signs send unsigned messages again (protocol both); its next signed message records it as signing again", "security": admin, "parameters": [address],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "address": { "type": "string" }, "signs": { "type": "boolean" }, "wasSigning": { "type": "boolean" } } })), "400": error, "401": error, "403": error, "404": error } } },
            "/credits/{address}": { "get": { "summary": "Ledger lines crediting an address, newest first (a page holds `limit` distributions)", "parameters": [address, limit, before],
                "responses": { "200": ok(json!({ "type": "object" })), "400": error } } },
            "/payout-batches": { "get": { "summary": "Every payout batch, newest first", "parameters": [limit, before],
                "responses": { "200": ok(json!({ "type": "object" })), "400": error } } },
            "/history/{address}": { "get": { "summary": "An address's earnings, pool score and validator score per hour (UTC), oldest first; a score is null for an hour with no record", "parameters": [address, hours.clone()],
                "responses": { "200": ok(json!({ "type": "object" })), "400": error } } },
            "/income": { "get": { "summary": "Units received per hour (UTC), oldest first", "parameters": [hours],
                "responses": { "200": ok(json!({ "type": "object" })), "400": error } } },
            "/payouts/{address}": { "get": { "summary": "Payout batches paying an address, newest first", "parameters": [address, limit, before],
                "responses": { "200": ok(json!({ "type": "object" })), "400": error } } },
            "/balances/{address}": { "get": { "summary": "Pending and paid amounts of an address", "parameters": [address],
                "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Balance" })), "400": error } } },
            "/distributions": { "get": { "summary": "Reward distributions, newest first", "parameters": [limit, before],
                "responses": { "200": ok(json!({ "type": "object" })) } } },
            "/job-runs": { "get": { "summary": "Job runs, newest first", "parameters": [limit, before,
                { "name": "job", "in": "query", "schema": { "type": "string" } }],
                "responses": { "200": ok(json!({ "type": "object" })) } } },
            "/stats": { "get": { "summary": "Scanned height and totals, as of the last rewards or payouts run", "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Stats" })) } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } } },
                "Balance": { "type": "object", "properties": { "address": { "type": "string" }, "pending": amount, "paid": amount } },
                "Stats": { "type": "object", "properties": {
                    "lastScannedHeight": { "type": ["integer", "null"] },
                    "chainHeight": { "type": ["integer", "null"], "description": "the highest block the chain answered the rewards job's last request with: it reached at least this far" },
                    "received": amount, "credited": amount, "pending": amount, "inFlight": amount,
                    "paid": amount, "feesSpent": amount,
                    "asOf": { "type": ["string", "null"], "format": "date-time" } } }
            }
        }
    })
}
