//! Client of the uPow node HTTP API: timeouts on every call, bounded retries with backoff on
//! idempotent reads, waiting out the node's rate limits (HTTP 429), errors that name the URL and
//! status, and no secret in any message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::types::*;

use crate::config::ChainConfig;

/// Responses larger than this are refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What went wrong calling the chain; every variant names the URL (credentials removed).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: request failed: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
        /// The `Retry-After` header in seconds, if the answer had one.
        retry_after: Option<Duration>,
    },
    #[error("{url}: still rate limited (HTTP 429) after waiting {waited:?} in all: {body}")]
    RateLimited {
        url: String,
        waited: Duration,
        body: String,
    },
    #[error("{url}: malformed response: {message}")]
    Malformed { url: String, message: String },
    #[error("{url}: the chain refused: {error}")]
    Refused { url: String, error: String },
    #[error("invalid chain URL {url}: {message}")]
    BadUrl { url: String, message: String },
}

/// Redirects stay on the host, scheme and port they started from (a chain API that redirects
/// elsewhere could make a job fetch internal addresses and publish what they answer), never
/// lead to plain http unless it is allowed, and stop after a few hops.
fn redirect_policy(allow_insecure_http: bool) -> reqwest::redirect::Policy {
    const MAX_HOPS: usize = 5;
    reqwest::redirect::Policy::custom(move |attempt| {
        let from = &attempt.previous()[0];
        let to = attempt.url();
        let same_origin = to.host_str() == from.host_str()
            && to.port_or_known_default() == from.port_or_known_default()
            && (to.scheme() == from.scheme()
                || (from.scheme() == "http" && to.scheme() == "https"));
        if !same_origin {
            let refused = format!(
                "a redirect to another origin ({}) is refused",
                redact(to.as_str())
            );
            attempt.error(refused)
        } else if to.scheme() == "http" && !allow_insecure_http {
            attempt.error("a redirect to plain http is refused")
        } else if attempt.previous().len() > MAX_HOPS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

impl ChainError {
    /// Worth asking again: the chain or the network may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            ChainError::Timeout { .. } | ChainError::Transport { .. } => true,
            ChainError::RateLimited { .. } => true,
            ChainError::Status { status, .. } => *status >= 500 || *status == TOO_MANY_REQUESTS,
            _ => false,
        }
    }
}

const TOO_MANY_REQUESTS: u16 = 429;

/// Longest single wait after a 429 without `Retry-After`: the node's windows are a second or a
/// minute long, so doubling past half a minute only overshoots.
pub const MAX_RATE_LIMIT_STEP: Duration = Duration::from_secs(30);

/// How long to wait after the `nth` 429 in a row (1-based), having waited `waited` so far within a
/// total `budget`; `None`: give up now.
///
/// The node's `Retry-After` is honoured when present (and if it reaches past the budget there is
/// no point waiting at all); otherwise the wait starts at `first` and doubles, each step at most
/// [`MAX_RATE_LIMIT_STEP`], the last one cut to what is left of the budget so the final attempt
/// comes just as it runs out.
pub fn rate_limit_wait(
    retry_after: Option<Duration>,
    nth: u32,
    first: Duration,
    waited: Duration,
    budget: Duration,
) -> Option<Duration> {
    let left = budget.checked_sub(waited).filter(|left| !left.is_zero())?;
    match retry_after {
        Some(wait) => (wait <= left).then_some(wait),
        None => {
            let doubled = first
                .checked_mul(1u32.checked_shl(nth.saturating_sub(1)).unwrap_or(u32::MAX))
                .unwrap_or(MAX_RATE_LIMIT_STEP);
            Some(doubled.min(MAX_RATE_LIMIT_STEP).min(left))
        }
    }
}

/// How reads are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChainClient {
    http: reqwest::Client,
    api_url: String,
    validators_url: String,
    timeout: Duration,
    retry: RetryPolicy,
    /// Total wait allowed for rate limits within one read (`chain.rateLimitWaitSeconds`).
    rate_limit_budget: Duration,
    /// Milliseconds this client (and its clones since the last [`ChainClient::metered`]) spent
    /// waiting out rate limits: a job reports it, since the node's limits are shared by every
    /// client on one address and a slow run otherwise looks like a slow chain.
    rate_limited_ms: Arc<AtomicU64>,
}

/// The `{"ok": …, "result": …, "error": …}` envelope of most endpoints.
#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    #[serde(default = "Option::default")]
    result: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

impl ChainClient {
    pub fn new(config: &ChainConfig) -> Result<ChainClient, ChainError> {
        ChainClient::with_retry(config, RetryPolicy::default())
    }

    pub fn with_retry(config: &ChainConfig, retry: RetryPolicy) -> Result<ChainClient, ChainError> {
        let timeout = Duration::from_secs(config.request_timeout_seconds);
        let insecure = config.allow_insecure_http;
        for url in [config.api_url.clone(), config.validators_url()] {
            if !insecure && !url.starts_with("https://") {
                return Err(ChainError::BadUrl {
                    url: redact(&url),
                    message: "not https (set chain.allowInsecureHttp to allow plain http)".into(),
                });
            }
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("minerpool/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect_policy(insecure))
            .build()
            .map_err(|e| ChainError::BadUrl {
                url: redact(&config.api_url),
                message: e.to_string(),
            })?;
        Ok(ChainClient {
            http,
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            validators_url: config.validators_url(),
            timeout,
            retry,
            rate_limit_budget: Duration::from_secs(config.rate_limit_wait_seconds),
            rate_limited_ms: Arc::default(),
        })
    }

    /// The same client with its own rate-limit meter starting at zero (one per job run; clones
    /// share it).
    pub fn metered(&self) -> ChainClient {
        ChainClient {
            rate_limited_ms: Arc::default(),
            ..self.clone()
        }
    }

    /// Time spent waiting out rate limits (HTTP 429) since this meter began.
    pub fn rate_limited(&self) -> Duration {
        Duration::from_millis(self.rate_limited_ms.load(Ordering::Relaxed))
    }

    /// `get_blocks_details`: blocks with id ≥ `offset`, at most `limit`. Every block must carry
    /// its transactions (at least the coinbase); one that does not is a malformed answer.
    pub async fn blocks_details(
        &self,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<BlockDetails>, ChainError> {
        let url = format!(
            "{}/get_blocks_details?offset={offset}&limit={limit}",
            self.api_url
        );
        let blocks: Vec<BlockDetails> = self.get_enveloped(&url).await?;
        for block in &blocks {
            if block.transactions.is_empty() {
                return Err(ChainError::Malformed {
                    url: redact(&url),
                    message: format!(
                        "block {} has no transactions (every block has at least its coinbase)",
                        block.block.id
                    ),
                });
            }
        }
        let mut previous = None;
        for block in &blocks {
            if block.block.id < offset || previous.is_some_and(|p| block.block.id <= p) {
                return Err(ChainError::Malformed {
                    url: redact(&url),
                    message: format!(
                        "block {} is out of order (asked from {offset})",
                        block.block.id
                    ),
                });
            }
            previous = Some(block.block.id);
        }
        Ok(blocks)
    }

    /// `get_validators_info` for `inode_wallet` (a bare JSON array).
    pub async fn validators_info(
        &self,
        inode_wallet: &str,
    ) -> Result<Vec<ValidatorInfo>, ChainError> {
        let url = format!("{}{inode_wallet}", self.validators_url);
        self.get_json(&url).await
    }

    /// A GET whose answer is wrapped in the `ok`/`result` envelope.
    pub async fn get_enveloped<T: DeserializeOwned>(&self, url: &str) -> Result<T, ChainError> {
        let envelope: Envelope<T> = self.get_json(url).await?;
        open_envelope(url, envelope)
    }

    /// An idempotent GET, retried on transient failures. A 429 does not count as an attempt: it is
    /// waited out (see [`rate_limit_wait`]) within `chain.rateLimitWaitSeconds`, so a job slowed
    /// by the node's rate limits finishes instead of failing.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ChainError> {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        let mut limited = 0;
        let mut waited = Duration::ZERO;
        loop {
            match self.send(self.http.get(url), url).await {
                Err(ChainError::Status {
                    url: shown,
                    status: TOO_MANY_REQUESTS,
                    body,
                    retry_after,
                }) => {
                    limited += 1;
                    let Some(wait) = rate_limit_wait(
                        retry_after,
                        limited,
                        self.retry.first_backoff,
                        waited,
                        self.rate_limit_budget,
                    ) else {
                        return Err(ChainError::RateLimited {
                            url: shown,
                            waited,
                            body,
                        });
                    };
                    tracing::warn!(
                        url = %shown,
                        wait_ms = wait.as_millis() as u64,
                        waited_ms = waited.as_millis() as u64,
                        wait_from = if retry_after.is_some() { "retry-after" } else { "backoff" },
                        "chain rate limit (HTTP 429); waiting before asking again"
                    );
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    self.rate_limited_ms.fetch_add(
                        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                }
                Err(e) if e.is_transient() && attempt < self.retry.attempts => {
                    tracing::warn!(error = %e, attempt, "chain read failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A POST of a JSON body, sent once (not idempotent in general).
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, ChainError> {
        self.send(self.http.post(url).json(body), url).await
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ChainError> {
        let shown = redact(url);
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                ChainError::Timeout {
                    url: shown.clone(),
                    timeout: self.timeout,
                }
            } else {
                ChainError::Transport {
                    url: shown.clone(),
                    message: without_url(&e),
                }
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ChainError::Malformed {
                    url: shown,
                    message: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(ChainError::Status {
                url: shown,
                status: status.as_u16(),
                body: excerpt(&body),
                retry_after,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ChainError::Malformed {
            url: shown,
            message: format!("{e} (body starts {})", excerpt(&body)),
        })
    }
}

fn open_envelope<T>(url: &str, envelope: Envelope<T>) -> Result<T, ChainError> {
    match envelope {
        Envelope {
            ok: true,
            result: Some(result),
            ..
        } => Ok(result),
        Envelope { ok: true, .. } => Err(ChainError::Malformed {
            url: redact(url),
            message: "\"ok\" is true but there is no \"result\"".into(),
        }),
        Envelope { error, .. } => Err(ChainError::Refused {
            url: redact(url),
            error: error.unwrap_or_else(|| "no error text".into()),
        }),
    }
}

/// The first 200 characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut shown: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// `url` without user name and password, so credentials never reach a log line.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
            }
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// reqwest's message without the URL it appends (ours is shown, redacted, already).
fn without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(&format!(" ({url})"), "");
        message = message.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_retry_after_the_wait_doubles_up_to_a_step_cap() {
        let budget = Duration::from_secs(600);
        let waits: Vec<Duration> = (1..=9)
            .map(|n| rate_limit_wait(None, n, 500 * MS, Duration::ZERO, budget).unwrap())
            .collect();
        let secs: Vec<f64> = waits.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(
            rate_limit_wait(None, 200, 500 * MS, Duration::ZERO, budget),
            Some(MAX_RATE_LIMIT_STEP),
            "no overflow however many 429s"
        );
    }

    #[test]
    fn the_last_wait_is_cut_to_the_budget_and_then_it_gives_up() {
        let budget = Duration::from_secs(10);
        assert_eq!(
            rate_limit_wait(None, 5, MS * 1000, Duration::from_secs(7), budget),
            Some(Duration::from_secs(3))
        );
        assert_eq!(rate_limit_wait(None, 6, MS, budget, budget), None);
        assert_eq!(
            rate_limit_wait(None, 1, MS, Duration::ZERO, Duration::ZERO),
            None,
            "a zero budget never waits"
        );
    }

    #[test]
    fn retry_after_is_honoured_unless_it_reaches_past_the_budget() {
        let budget = Duration::from_secs(120);
        let seven = Some(Duration::from_secs(7));
        assert_eq!(rate_limit_wait(seven, 1, MS, Duration::ZERO, budget), seven);
        assert_eq!(
            rate_limit_wait(seven, 3, MS, Duration::from_secs(115), budget),
            None
        );
    }
}
