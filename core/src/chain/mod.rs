//! Client of the uPow node HTTP API: timeouts on every call, bounded retries with backoff on
//! idempotent reads, errors that name the URL and status, and no secret in any message.

mod payer;
mod types;

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use payer::*;
pub use types::*;

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
    },
    #[error("{url}: malformed response: {message}")]
    Malformed { url: String, message: String },
    #[error("{url}: the chain refused: {error}")]
    Refused { url: String, error: String },
    #[error("invalid chain URL {url}: {message}")]
    BadUrl { url: String, message: String },
}

impl ChainError {
    /// Worth asking again: the chain or the network may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            ChainError::Timeout { .. } | ChainError::Transport { .. } => true,
            ChainError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
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
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("minerpool/", env!("CARGO_PKG_VERSION")))
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
        })
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

    /// An idempotent GET, retried on transient failures.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ChainError> {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        loop {
            match self.send(self.http.get(url), url).await {
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
