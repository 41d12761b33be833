//! The dashboard: read-only web pages under `/`, rendered on the server from the same store
//! queries as `/api/v1`, with their stylesheet and script served by the node (no request leaves
//! it). Each page replaces its `<main>` every few seconds without a full reload.

use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bson::DateTime;
use maud::{DOCTYPE, Markup, html};
use minerpool_core::address::check_syntax;
use minerpool_core::store::StoreError;
use minerpool_core::store::history::{Hours, ScoreKind};
use minerpool_core::store::ledger::CreditLine;
use minerpool_core::store::ledger::{Basis, RewardDistribution};
use minerpool_core::store::runs::JobOutcome;
use minerpool_core::store::spends::ForeignSpendsHealth;

use super::chart::{Measure, bar_chart};
use super::text::when;
use minerpool_core::store::paging::{Before, NewestFirst, next_before, next_cursor};

use crate::state::NodeState;

type Shared = State<Arc<NodeState>>;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new()
        .route("/", get(overview))
        .route("/pools", get(pools))
        .route("/pool/{address}", get(pool))
        // `/validators` is the legacy JSON list.
        .route("/validator-list", get(validators))
        .route("/validator/{address}", get(validator))
        .route("/distributions", get(distributions))
        .route("/payouts", get(payout_batches))
        .route("/address/{address}", get(address))
        .route("/assets/dashboard.css", get(stylesheet))
        .route("/assets/dashboard.js", get(script))
}

/// Seconds between a page's refreshes of its `<main>`.
const REFRESH_SECONDS: u32 = 10;
/// Hours of income the overview's chart shows.
const CHART_HOURS: usize = 48;
/// Hours of score and earnings a pool's or validator's page shows (7 days).
const HISTORY_HOURS: usize = 7 * 24;
/// Rows of a list page.
const PAGE_ROWS: i64 = 50;

/// A page or a page-shaped error.
struct Page {
    status: StatusCode,
    markup: Markup,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.markup).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    }
}

impl From<StoreError> for Page {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "dashboard page");
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            html! { p.empty { "The database does not answer; this page tries again shortly." } },
        )
    }
}

fn page(status: StatusCode, title: &str, body: Markup) -> Page {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · minerpool" }
                link rel="stylesheet" href="/assets/dashboard.css";
                script defer src="/assets/dashboard.js" {}
            }
            body {
                header {
                    nav {
                        a href="/" { "Overview" }
                        a href="/pools" { "Pools" }
                        a href="/validator-list" { "Validators" }
                        a href="/distributions" { "Distributions" }
                        a href="/payouts" { "Payouts" }
                    }
                }
                main id="main" data-refresh=(REFRESH_SECONDS) {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Page { status, markup }
}

fn ok(title: &str, body: Markup) -> Page {
    page(StatusCode::OK, title, body)
}

/// Coins with 8 decimals, from smallest units, exactly (as the job summaries write them).
use minerpool_core::money::coins_text as coins;

/// A link to the page of `address` under `/{page}/`.
fn address_link(page: &str, address: &str) -> Markup {
    html! { a.address href={ "/" (page) "/" (address) } { (address) } }
}

async fn overview(State(state): Shared) -> Result<Page, Page> {
    let store = &state.store;
    let totals = store.totals().await?;
    let mut jobs = Vec::new();
    for job in minerpool_jobs::Job::ALL {
        let runs = store.recent_job_runs(Some(job.name()), 1, None).await?;
        jobs.push((job.name(), runs.into_iter().next()));
    }
    let hours = Hours::ending_at(DateTime::now(), CHART_HOURS);
    let hourly = store.income_per_hour(hours).await?;
    let foreign = store.foreign_spends_health().await?;
    Ok(ok(
        "Overview",
        html! {
            (payouts_held(&foreign))
            section.cards {
                div.card { h2 { "Last scanned block" } p.figure #last-scanned { (totals.last_scanned_height.map_or("none yet".into(), |h| h.to_string())) } }
                div.card { h2 { "Behind the chain" } p.figure #behind { (behind(totals.last_scanned_height, totals.chain_height)) } }
                div.card { h2 { "Received" } p.figure #received { (coins(totals.received)) } }
                div.card { h2 { "Credited" } p.figure #credited { (coins(totals.credited)) } }
                div.card { h2 { "Pending" } p.figure #pending { (coins(totals.pending)) } }
                div.card { h2 { "In flight" } p.figure #in-flight { (coins(totals.in_flight)) } }
                div.card { h2 { "Paid" } p.figure #paid { (coins(totals.paid)) } }
                div.card { h2 { "Fees spent" } p.figure #fees-spent { (coins(totals.fees_spent)) } }
            }
            p.note {
                "Totals as of " (when(totals.as_of)) " (refreshed by the rewards and payouts jobs). "
                @if let Some(chain) = totals.chain_height {
                    "The chain had reached at least block " span #chain-height { (chain) } " when the rewards job last asked; it credits blocks once they are "
                    (state.config.rewards.confirmations) " blocks deep."
                }
            }
            h2 { "Income per hour (coins, by block time), last " (CHART_HOURS) " hours" }
            @if hourly.iter().all(|u| *u == 0) {
                p.empty #no-income { "No income in the last " (CHART_HOURS) " hours." }
            }
            (bar_chart("income-chart", "income per hour", hours, &amounts(&hourly), Measure::Coins))
            h2 { "Jobs" }
            table #jobs {
                thead { tr { th { "Job" } th { "Last run" } th { "Outcome" } } }
                tbody {
                    @for (job, run) in &jobs {
                        @match run {
                            Some(run) => {
                                @let outcome = match run.outcome {
                                    JobOutcome::Succeeded => "succeeded",
                                    JobOutcome::Failed => "failed",
                                    JobOutcome::Blocked => "blocked",
                                    JobOutcome::Running => "running",
                                };
                                tr class=(outcome) { td { (job) } td { (when(Some(run.started_at))) } td.outcome { (outcome) } }
                            }
                            None => tr { td { (job) } td { "never" } td { "" } }
                        }
                    }
                }
            }
        },
    ))
}

/// The warning that payouts are held while a foreign spend of the wallet is unresolved (SPEC
/// §5.3 point 5); nothing when none is.
fn payouts_held(foreign: &ForeignSpendsHealth) -> Markup {
    const LIST: &str = "/api/v1/wallet-spends?filter=unresolved";
    html! {
        @if foreign.unresolved > 0 {
            p.warning #payouts-held role="alert" {
                strong {
                    "Payouts held: " (foreign.unresolved) " foreign spend"
                    (if foreign.unresolved == 1 { "" } else { "s" })
                    " of the wallet, " (coins(foreign.units)) " coins"
                }
                " — see " a href=(LIST) { (LIST) }
                ". A spend minerpool did not make may be a stolen key; an admin adopts or acknowledges each."
            }
        }
    }
}

/// Blocks between the last scanned and the highest the chain answered with.
fn behind(scanned: Option<i64>, chain: Option<i64>) -> String {
    match (scanned, chain) {
        (Some(scanned), Some(chain)) => {
            let blocks = (chain - scanned).max(0);
            format!("{blocks} block{}", if blocks == 1 { "" } else { "s" })
        }
        _ => "not known yet".into(),
    }
}

fn amounts(units: &[i64]) -> Vec<Option<i64>> {
    units.iter().copied().map(Some).collect()
}

#[derive(serde::Deserialize)]
struct ByAddress {
    /// The last address of the previous page.
    after: Option<String>,
}

/// The `after` cursor of a full page: its last address.
fn next_after(rows: usize, last: Option<&str>) -> Option<&str> {
    next_cursor(rows, PAGE_ROWS, last)
}

/// The link `text` (element id `id`) to the page at `path` whose `param` is `cursor`, through
/// a percent-encoded query; nothing on a last page (no cursor).
fn next_link(path: &str, param: &str, cursor: Option<&str>, (id, text): (&str, &str)) -> Markup {
    html! {
        @if let Some(cursor) = cursor {
            p { a id=(id) href={ (path) "?" (param) "=" (percent_encoding::utf8_percent_encode(cursor, percent_encoding::NON_ALPHANUMERIC)) } { (text) } }
        }
    }
}

/// A `before` of a newest-first list, parsed; a 400 page when it is not one.
fn before<K: FromStr>(text: Option<&str>) -> Result<Option<Before<K>>, Page> {
    text.map(|text| {
        text.parse::<Before<K>>().map_err(|e| {
            page(
                StatusCode::BAD_REQUEST,
                "Not a page of this list",
                html! { p.empty #bad-cursor { "The link's " (e.to_string()) "." } p { a href="/" { "Back to the overview" } } },
            )
        })
    })
    .transpose()
}

/// The `before` cursor of a full page: after its last row.
fn older_than<R: NewestFirst>(rows: &[R]) -> Option<String> {
    next_before(rows, PAGE_ROWS).map(|b| b.to_string())
}

async fn pools(State(state): Shared, Query(paging): Query<ByAddress>) -> Result<Page, Page> {
    let pools = state
        .store
        .pool_overviews(paging.after.as_deref(), PAGE_ROWS)
        .await?;
    let addresses: Vec<String> = pools.iter().map(|p| p.pool_address.clone()).collect();
    let balances = state.store.balances_of(&addresses).await?;
    Ok(ok(
        "Pools",
        html! {
            @if pools.is_empty() {
                p.empty { "No pool is registered or scored yet." }
            } @else {
                table #pools {
                    thead { tr { th { "Pool" } th { "Registered" } th { "Score" } th { "Last activity" } th { "Earned" } } }
                    tbody {
                        @for pool in &pools {
                            tr {
                                td { (address_link("pool", &pool.pool_address)) }
                                td { (if pool.registered { "yes" } else { "no" }) }
                                td.score { (pool.score) }
                                td { (when(pool.last_active_time)) }
                                td.earned { (coins(balances.get(&pool.pool_address).map_or(0, |b| b.pending.saturating_add(b.paid)))) }
                            }
                        }
                    }
                }
                p.note { "Earned: everything credited to the address, paid or pending." }
                (next_link("/pools", "after", next_after(pools.len(), pools.last().map(|p| p.pool_address.as_str())), ("next", "Next")))
            }
        },
    ))
}

/// The 404 page of an address minerpool does not know in a role.
fn unknown(what: &str, address: &str) -> Page {
    page(
        StatusCode::NOT_FOUND,
        &format!("Unknown {what}"),
        html! {
            p.empty #unknown { "minerpool has no record of " code { (address) } " as " (what) "." }
            p { a href="/" { "Back to the overview" } }
        },
    )
}

/// The address a pool's or validator's page is about, with a link to its address page.
fn address_heading(address: &str) -> Markup {
    html! { p.address { code #address { (address) } " · " a href={ "/address/" (address) } { "balance, credits and payouts" } } }
}

/// The earnings chart of an address, with its heading.
async fn earnings_chart(state: &NodeState, address: &str, hours: Hours) -> Result<Markup, Page> {
    let earned = state.store.earnings_per_hour(address, hours).await?;
    Ok(html! {
        h2 { "Earnings per hour (coins, by block time), last " (hours.count / 24) " days" }
        @if earned.iter().all(|u| *u == 0) {
            p.empty #no-earnings { "Nothing credited in this time." }
        }
        (bar_chart("earnings-chart", "earnings per hour", hours, &amounts(&earned), Measure::Coins))
    })
}

async fn pool(State(state): Shared, Path(address): Path<String>) -> Result<Page, Page> {
    if check_syntax(&address).is_err() {
        return Err(unknown("a pool", &address));
    }
    let Some(pool) = state.store.pool_overview(&address).await? else {
        return Err(unknown("a pool", &address));
    };
    let hours = Hours::ending_at(DateTime::now(), HISTORY_HOURS);
    let scores = state
        .store
        .score_per_hour(ScoreKind::Pool, &address, hours)
        .await?;
    Ok(ok(
        "Pool",
        html! {
            (address_heading(&address))
            section.cards {
                div.card { h2 { "Score" } p.figure #score { (pool.score) } }
                div.card { h2 { "Registered" } p.figure #registered { (if pool.registered { "yes" } else { "no" }) } }
                div.card { h2 { "Last activity" } p.figure { (when(pool.last_active_time)) } }
            }
            h2 { "Score per hour, last " (HISTORY_HOURS / 24) " days" }
            @if scores.iter().all(Option::is_none) {
                p.empty #no-scores { "No score recorded yet: the decay job records one each time it runs." }
            }
            (bar_chart("score-chart", "highest score per hour", hours, &scores, Measure::Score))
            (earnings_chart(&state, &address, hours).await?)
        },
    ))
}

async fn validators(State(state): Shared, Query(paging): Query<ByAddress>) -> Result<Page, Page> {
    let validators = state
        .store
        .validators_page(paging.after.as_deref(), PAGE_ROWS)
        .await?;
    Ok(ok(
        "Validators",
        html! {
            @if validators.is_empty() {
                p.empty { "No validator is known yet." }
            } @else {
                table #validators {
                    thead { tr { th { "Validator" } th { "Online" } th { "Percentage" } th { "Stake" } th { "Last ping" } th { "Signs" } } }
                    tbody {
                        @for (address, validator) in &validators {
                            @match validator {
                                Ok(v) => tr {
                                    td { (address_link("validator", address)) }
                                    td { (if v.score == 1 { "yes" } else { "no" }) }
                                    td { (format!("{:.2} %", v.percentage)) }
                                    td { (v.total_stake) }
                                    td { (when(v.ping)) }
                                    td.signs { (signs(v.signed_since)) }
                                },
                                Err(_) => tr { td { (address) } td colspan="5" { "unreadable record" } },
                            }
                        }
                    }
                }
                (next_link("/validator-list", "after", next_after(validators.len(), validators.last().map(|(a, _)| a.as_str())), ("next", "Next")))
            }
        },
    ))
}

async fn validator(State(state): Shared, Path(address): Path<String>) -> Result<Page, Page> {
    if check_syntax(&address).is_err() {
        return Err(unknown("a validator", &address));
    }
    let Some(found) = state.store.validator_of(&address).await? else {
        return Err(unknown("a validator", &address));
    };
    let hours = Hours::ending_at(DateTime::now(), HISTORY_HOURS);
    let online = state
        .store
        .score_per_hour(ScoreKind::Validator, &address, hours)
        .await?;
    let link = address_heading(&address);
    let Ok(v) = found else {
        return Ok(ok(
            "Validator",
            html! { (link) p.empty #unreadable { "Its record cannot be read; the validators job rewrites it at its next run." } },
        ));
    };
    Ok(ok(
        "Validator",
        html! {
            (link)
            section.cards {
                div.card { h2 { "Online" } p.figure #online { (if v.score == 1 { "yes" } else { "no" }) } }
                div.card { h2 { "Percentage" } p.figure #percentage { (format!("{:.2} %", v.percentage)) } }
                div.card { h2 { "Stake" } p.figure #stake { (v.total_stake) } }
                div.card { h2 { "Last ping" } p.figure { (when(v.ping)) } }
                div.card { h2 { "Last TASK" } p.figure { (when(v.last_active_time)) } }
                div.card { h2 { "Signs its messages" } p.figure #signs { (signs(v.signed_since)) } }
            }
            h2 { "Online per hour, last " (HISTORY_HOURS / 24) " days" }
            @if online.iter().all(Option::is_none) {
                p.empty #no-scores { "Nothing recorded yet: the decay job records whether it was online each time it runs." }
            }
            (bar_chart("score-chart", "online per hour", hours, &online, Measure::Online))
            (earnings_chart(&state, &address, hours).await?)
        },
    ))
}

/// Whether a validator signs its messages, and since when (SPEC §4.5).
fn signs(signed_since: Option<DateTime>) -> Markup {
    match signed_since {
        Some(since) => html! { "yes, since " (when(Some(since))) },
        None => html! { "no" },
    }
}

#[derive(serde::Deserialize)]
struct Paging {
    /// The previous page's last row (a [`Before`]).
    before: Option<String>,
}

async fn distributions(State(state): Shared, Query(paging): Query<Paging>) -> Result<Page, Page> {
    let before = before(paging.before.as_deref())?;
    let found: Vec<RewardDistribution> = state
        .store
        .recent_distributions(PAGE_ROWS, before.as_ref())
        .await?;
    let next = older_than(&found);
    Ok(ok(
        "Distributions",
        html! {
            @if found.is_empty() {
                p.empty { "No distribution yet: the rewards job has not credited any income." }
            } @else {
                table #distributions {
                    thead { tr { th { "Blocks" } th { "Received" } th { "Lines" } th { "Created" } } }
                    tbody {
                        @for d in &found {
                            tr { td { (d.first_block) "–" (d.last_block) } td { (coins(d.received)) } td { (d.lines.len()) } td { (when(Some(d.created_at))) } }
                        }
                    }
                }
                (next_link("/distributions", "before", next.as_deref(), ("next", "Older")))
            }
        },
    ))
}

async fn payout_batches(State(state): Shared, Query(paging): Query<Paging>) -> Result<Page, Page> {
    let before = before(paging.before.as_deref())?;
    let batches = state
        .store
        .recent_payout_batches(PAGE_ROWS, before.as_ref())
        .await?;
    let next = older_than(&batches);
    Ok(ok(
        "Payout batches",
        html! {
            @if batches.is_empty() {
                p.empty { "No payout batch yet: balances are paid once they reach the minimum payout." }
            } @else {
                table #batches {
                    thead { tr { th { "Batch" } th { "Kind" } th { "State" } th { "Recipients" } th { "Total" } th { "Fee" } th { "Transaction" } th { "Created" } } }
                    tbody {
                        @for b in &batches {
                            tr class=(b.state) {
                                td { (b.id) } td { (b.kind) } td.state { (b.state) } td { (b.recipients) }
                                td { (coins(b.total)) } td { (coins(b.fee)) }
                                td { code { (b.tx_hash.as_deref().unwrap_or("")) } }
                                td { (when(b.created_at)) }
                            }
                        }
                    }
                }
                (next_link("/payouts", "before", next.as_deref(), ("next", "Older")))
            }
        },
    ))
}

#[derive(serde::Deserialize)]
struct AddressPaging {
    /// The last distribution of the previous page of credit lines (a [`Before`]).
    credits_before: Option<String>,
    /// The last batch of the previous page of payouts (a [`Before`]).
    payouts_before: Option<String>,
}

async fn address(
    State(state): Shared,
    Path(address): Path<String>,
    Query(paging): Query<AddressPaging>,
) -> Result<Page, Page> {
    if check_syntax(&address).is_err() {
        return Err(unknown("an address", &address));
    }
    let store = &state.store;
    let credits_before = before(paging.credits_before.as_deref())?;
    let payouts_before = before(paging.payouts_before.as_deref())?;
    // Independent reads: one round trip's wait for all of them.
    let (balance, credits, payouts, pool, validator) = tokio::try_join!(
        store.balance_of(&address),
        store.credits_of(&address, PAGE_ROWS, credits_before.as_ref()),
        store.payouts_of(&address, PAGE_ROWS, payouts_before.as_ref()),
        store.pool_overview(&address),
        store.validator_of(&address),
    )?;
    let paging_used = credits_before.is_some() || payouts_before.is_some();
    if balance.is_none()
        && credits.is_empty()
        && payouts.is_empty()
        && pool.is_none()
        && validator.is_none()
        && !paging_used
    {
        return Err(unknown("an address", &address));
    }
    let (pending, paid) = balance.as_ref().map_or((0, 0), |b| (b.pending, b.paid));
    let next_credits = CreditLine::next_page(&credits, PAGE_ROWS).map(|b| b.to_string());
    let next_payouts = older_than(&payouts);
    let address_path = format!("/address/{address}");
    let hours = Hours::ending_at(DateTime::now(), HISTORY_HOURS);
    Ok(ok(
        "Address",
        html! {
            p.address { code #address { (address) } }
            @if pool.is_some() || validator.is_some() {
                p.roles {
                    @if pool.is_some() { a #pool-link href={ "/pool/" (address) } { "its pool page" } " " }
                    @if validator.is_some() { a #validator-link href={ "/validator/" (address) } { "its validator page" } }
                }
            }
            section.cards {
                div.card { h2 { "Pending" } p.figure #pending { (coins(pending)) } }
                div.card { h2 { "Paid" } p.figure #paid { (coins(paid)) } }
                @if let Some(pool) = &pool {
                    div.card { h2 { "Pool score" } p.figure #score { (pool.score) } }
                }
            }
            (earnings_chart(&state, &address, hours).await?)
            h2 { "Credit lines" }
            @if credits.is_empty() {
                p.empty #no-credits { "No credit line." }
            } @else {
                table #credits {
                    thead { tr { th { "Distribution" } th { "As" } th { "Amount" } th { "Basis" } th { "Created" } } }
                    tbody {
                        @for c in &credits {
                            tr {
                                td { (c.distribution) }
                                td { (format!("{:?}", c.line.kind).to_lowercase()) }
                                td.amount { (coins(c.line.units)) }
                                td { (basis(&c.line.basis)) }
                                td { (when(Some(c.created_at))) }
                            }
                        }
                    }
                }
                (next_link(&address_path, "credits_before", next_credits.as_deref(), ("older-credits", "Older credit lines")))
            }
            h2 { "Payout batches" }
            @if payouts.is_empty() {
                p.empty #no-payouts { "No payout yet." }
            } @else {
                table #payouts {
                    thead { tr { th { "Batch" } th { "State" } th { "Amount" } th { "Transaction" } th { "Created" } } }
                    tbody {
                        @for line in &payouts {
                            tr {
                                td { (line.batch_id) }
                                td { (line.state) }
                                td { (coins(line.units)) }
                                td { code { (line.tx_hash.as_deref().unwrap_or("")) } }
                                td { (when(line.created_at)) }
                            }
                        }
                    }
                }
                (next_link(&address_path, "payouts_before", next_payouts.as_deref(), ("older-payouts", "Older payouts")))
            }
        },
    ))
}

/// Why a credit line has its size, in words.
fn basis(basis: &Basis) -> String {
    match basis {
        Basis::Fee { percent } => format!("fee {percent} %"),
        Basis::Score { score } => format!("score {score}"),
        Basis::Percentage { hundredths } => {
            format!("stake {}.{:02} %", hundredths / 100, hundredths % 100)
        }
        Basis::Remainder => "remainder".into(),
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/dashboard.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/dashboard.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coins_are_exact() {
        assert_eq!(coins(0), "0.00000000");
        assert_eq!(coins(123_456_789), "1.23456789");
        assert_eq!(coins(9_007_199_254_740_993), "90071992.54740993");
    }
}
