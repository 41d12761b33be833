//! The dashboard: read-only web pages under `/`, rendered on the server from the same store
//! queries as `/api/v1`, with their stylesheet and script served by the node (no request leaves
//! it). Each page replaces its `<main>` every few seconds without a full reload.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bson::DateTime;
use maud::{DOCTYPE, Markup, html};
use minerpool_core::address::check_format;
use minerpool_core::store::StoreError;
use minerpool_core::store::documents::{JobOutcome, RewardDistribution};

use crate::NodeState;

type Shared = State<Arc<NodeState>>;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new()
        .route("/", get(overview))
        .route("/pools", get(pools))
        // `/validators` is the legacy JSON list.
        .route("/validator-list", get(validators))
        .route("/distributions", get(distributions))
        .route("/address/{address}", get(address))
        .route("/assets/dashboard.css", get(stylesheet))
        .route("/assets/dashboard.js", get(script))
}

/// Seconds between a page's refreshes of its `<main>`.
const REFRESH_SECONDS: u32 = 10;
/// Hours of income the overview's chart shows.
const CHART_HOURS: usize = 48;
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

/// Coins with 8 decimals, from smallest units, exactly.
fn coins(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let units = units.unsigned_abs();
    format!("{sign}{}.{:08}", units / 100_000_000, units % 100_000_000)
}

fn when(time: Option<DateTime>) -> String {
    time.and_then(|t| t.try_to_rfc3339_string().ok())
        .map(|t| t.replace('T', " ").trim_end_matches('Z').to_owned() + " UTC")
        .unwrap_or_else(|| "never".into())
}

fn address_link(address: &str) -> Markup {
    html! { a.address href={ "/address/" (address) } { (address) } }
}

async fn overview(State(state): Shared) -> Result<Page, Page> {
    let store = &state.store;
    let totals = store.totals().await?;
    let mut jobs = Vec::new();
    for job in minerpool_jobs::Job::ALL {
        let runs = store.recent_job_runs(Some(job.name()), 1, None).await?;
        jobs.push((job.name(), runs.into_iter().next()));
    }
    let recent = store
        .recent_distributions(200, None)
        .await?
        .into_iter()
        .map(|d| (d.created_at, d.received))
        .collect::<Vec<_>>();
    let hourly = income_per_hour(&recent, DateTime::now(), CHART_HOURS);
    Ok(ok(
        "Overview",
        html! {
            section.cards {
                div.card { h2 { "Last scanned block" } p.figure #last-scanned { (totals.last_scanned_height.map_or("none yet".into(), |h| h.to_string())) } }
                div.card { h2 { "Received" } p.figure #received { (coins(totals.received)) } }
                div.card { h2 { "Credited" } p.figure #credited { (coins(totals.credited)) } }
                div.card { h2 { "Pending" } p.figure #pending { (coins(totals.pending)) } }
                div.card { h2 { "Paid" } p.figure #paid { (coins(totals.paid)) } }
            }
            p.note { "Totals as of " (when(totals.as_of)) " (refreshed by the rewards and payouts jobs)." }
            h2 { "Income per hour, last " (CHART_HOURS) " hours" }
            @if hourly.iter().all(|u| *u == 0) {
                p.empty #no-income { "No income in the last " (CHART_HOURS) " hours." }
            }
            (bar_chart(&hourly))
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

/// Smallest units received in each of the last `hours` hours, oldest first (the last bucket is
/// the hour ending at `now`). Distributions outside the window are left out.
pub fn income_per_hour(received: &[(DateTime, i64)], now: DateTime, hours: usize) -> Vec<i64> {
    const HOUR_MS: i64 = 3_600_000;
    let mut buckets = vec![0_i64; hours];
    for (at, units) in received {
        let age = now.timestamp_millis() - at.timestamp_millis();
        if age < 0 {
            continue;
        }
        let hours_ago = (age / HOUR_MS) as usize;
        if hours_ago < hours {
            let bucket = &mut buckets[hours - 1 - hours_ago];
            *bucket = bucket.saturating_add(*units);
        }
    }
    buckets
}

/// An SVG bar per value, scaled to the largest; each bar's title holds its exact amount.
fn bar_chart(values: &[i64]) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let width = values.len() * 10;
    html! {
        svg.chart #income-chart viewBox={ "0 0 " (width) " 100" } preserveAspectRatio="none" role="img" aria-label="income per hour" {
            @for (i, value) in values.iter().enumerate() {
                @let height = (*value as f64 / max as f64 * 100.0).max(if *value > 0 { 1.0 } else { 0.0 });
                rect x=(i * 10 + 1) y=(format!("{:.2}", 100.0 - height)) width="8" height=(format!("{height:.2}")) {
                    title { (coins(*value)) }
                }
            }
        }
    }
}

async fn pools(State(state): Shared) -> Result<Page, Page> {
    let pools = state.store.pool_overviews(None, PAGE_ROWS).await?;
    Ok(ok(
        "Pools",
        html! {
            @if pools.is_empty() {
                p.empty { "No pool is registered or scored yet." }
            } @else {
                table #pools {
                    thead { tr { th { "Pool" } th { "Registered" } th { "Score" } th { "Last activity" } } }
                    tbody {
                        @for pool in &pools {
                            tr {
                                td { (address_link(&pool.pool_address)) }
                                td { (if pool.registered { "yes" } else { "no" }) }
                                td.score { (pool.score) }
                                td { (when(pool.last_active_time)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn validators(State(state): Shared) -> Result<Page, Page> {
    let validators = state.store.validators_page(None, PAGE_ROWS).await?;
    Ok(ok(
        "Validators",
        html! {
            @if validators.is_empty() {
                p.empty { "No validator is known yet." }
            } @else {
                table #validators {
                    thead { tr { th { "Validator" } th { "Online" } th { "Percentage" } th { "Stake" } th { "Last ping" } } }
                    tbody {
                        @for (address, validator) in &validators {
                            @match validator {
                                Ok(v) => tr {
                                    td { (address_link(address)) }
                                    td { (if v.score == 1 { "yes" } else { "no" }) }
                                    td { (format!("{:.2} %", v.percentage)) }
                                    td { (v.total_stake) }
                                    td { (when(v.ping)) }
                                },
                                Err(_) => tr { td { (address_link(address)) } td colspan="4" { "unreadable record" } },
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(serde::Deserialize)]
struct Paging {
    /// Milliseconds since the epoch: distributions created before it.
    before: Option<i64>,
}

async fn distributions(State(state): Shared, Query(paging): Query<Paging>) -> Result<Page, Page> {
    let before = paging.before.map(DateTime::from_millis);
    let found: Vec<RewardDistribution> =
        state.store.recent_distributions(PAGE_ROWS, before).await?;
    let next = (found.len() as i64 == PAGE_ROWS)
        .then(|| found.last().map(|d| d.created_at.timestamp_millis()))
        .flatten();
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
                @if let Some(next) = next {
                    p { a #next href={ "/distributions?before=" (next) } { "Older" } }
                }
            }
        },
    ))
}

async fn address(State(state): Shared, Path(address): Path<String>) -> Result<Page, Page> {
    let not_found = || {
        page(
            StatusCode::NOT_FOUND,
            "Unknown address",
            html! {
                p.empty #unknown { "minerpool has no record of " code { (address) } "." }
                p { a href="/" { "Back to the overview" } }
            },
        )
    };
    if check_format(&address).is_err() {
        return Err(not_found());
    }
    let store = &state.store;
    let balance = store.balance_of(&address).await?;
    let payouts = store.payouts_of(&address, PAGE_ROWS, None).await?;
    let pool = store.pool_overview(&address).await?;
    if balance.is_none() && payouts.is_empty() && pool.is_none() {
        return Err(not_found());
    }
    let (pending, paid) = balance.as_ref().map_or((0, 0), |b| (b.pending, b.paid));
    Ok(ok(
        "Address",
        html! {
            p.address { code #address { (address) } }
            section.cards {
                div.card { h2 { "Pending" } p.figure #pending { (coins(pending)) } }
                div.card { h2 { "Paid" } p.figure #paid { (coins(paid)) } }
                @if let Some(pool) = &pool {
                    div.card { h2 { "Pool score" } p.figure #score { (pool.score) } }
                }
            }
            h2 { "Payout batches" }
            @if payouts.is_empty() {
                p.empty { "No payout yet." }
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
            }
        },
    ))
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
    fn income_falls_in_its_hour_and_old_income_is_left_out() {
        let now = DateTime::from_millis(10 * 3_600_000);
        let at = |ms: i64| DateTime::from_millis(ms);
        let hourly = income_per_hour(
            &[
                (at(10 * 3_600_000 - 1), 5),
                (at(10 * 3_600_000 - 10), 7),
                (at(9 * 3_600_000 - 1), 3),
                (at(1), 100),
                (at(11 * 3_600_000), 9),
            ],
            now,
            3,
        );
        assert_eq!(hourly, vec![0, 3, 12]);
    }

    #[test]
    fn coins_are_exact() {
        assert_eq!(coins(0), "0.00000000");
        assert_eq!(coins(123_456_789), "1.23456789");
        assert_eq!(coins(9_007_199_254_740_993), "90071992.54740993");
    }
}
