//! Waiting in tests for what another task or process makes visible.
//!
//! A test that has seen one effect (a reply, a status) must not assume a second, separately
//! written effect (a metric, an Event, a document) is already there: it polls for it with a
//! deadline, and a failure shows the last value it saw.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits by default: generous, because a loaded CI machine is slow, and a
/// passing wait returns as soon as the value is there.
pub const DEADLINE: Duration = Duration::from_secs(60);

const INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok`, and returns that value. `Err` carries what was seen
/// instead; once `timeout` has passed the test fails, naming `what` and showing the last `Err`.
pub async fn until_ok<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen:?}")
            }
            Err(_) => tokio::time::sleep(INTERVAL).await,
        }
    }
}

/// Calls `read` until `accept` holds for what it returned, and returns that value.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut read: F,
    accept: impl Fn(&T) -> bool,
) -> T
where
    T: fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let accept = &accept;
    until_ok(what, timeout, || {
        let value = read();
        async move {
            let value = value.await;
            if accept(&value) {
                Ok(value)
            } else {
                Err(value)
            }
        }
    })
    .await
}

/// The value of one series in a Prometheus text exposition: `series` is the name with its
/// labels exactly as exposed (`name{a="x",b="y"}`), `None` if the series is not there.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

/// Text shown as it is in a failure message (not escaped, as `Debug` of a `String` would be).
pub struct Shown(pub String);

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Waits until `url` answers with a success status, as a starting server's `/readyz` does once
/// it is ready (before that it refuses connections or answers 503).
pub async fn http_ok(url: &str) {
    let client = reqwest::Client::new();
    until_ok(&format!("{url} to answer 2xx"), DEADLINE, || {
        let response = client.get(url).send();
        async move {
            match response.await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(Shown(format!("HTTP {}", response.status()))),
                Err(e) => Err(Shown(format!("no answer: {e}"))),
            }
        }
    })
    .await
}

/// Scrapes the `/metrics` page at `url` until `series` has a value `accept` takes, and returns
/// it. Counters are bumped after the work they count, so a test that has seen the work's effect
/// waits here for the count; a failure shows the last value and the whole page.
pub async fn metric(url: &str, series: &str, accept: impl Fn(f64) -> bool) -> f64 {
    let client = reqwest::Client::new();
    let what = format!("{series} at {url} to reach the expected value");
    until_ok(&what, DEADLINE, || {
        let response = client.get(url).send();
        let accept = &accept;
        async move {
            let page = match response.await {
                Ok(response) => response.text().await,
                Err(e) => Err(e),
            }
            .map_err(|e| Shown(format!("no page: {e}")))?;
            match sample(&page, series) {
                Some(value) if accept(value) => Ok(value),
                value => Err(Shown(format!("{series} = {value:?} in\n{page}"))),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
                        y_total{kind=\"TASK\",outcome=\"success\"} 1\ny_count 0.5\n# EOF\n";

    #[test]
    fn a_sample_is_found_by_its_exact_series() {
        assert_eq!(sample(PAGE, "x_total"), Some(3.0));
        assert_eq!(
            sample(PAGE, "y_total{kind=\"TASK\",outcome=\"success\"}"),
            Some(1.0)
        );
        assert_eq!(sample(PAGE, "y_count"), Some(0.5));
        assert_eq!(
            sample(PAGE, "y_total"),
            None,
            "labels are part of the series"
        );
        assert_eq!(sample(PAGE, "x"), None, "no prefix match");
        assert_eq!(
            sample(PAGE, "# TYPE x_total"),
            None,
            "comments are not samples"
        );
    }

    #[tokio::test]
    async fn a_wait_returns_the_first_accepted_value() {
        let mut reads = 0;
        let value = until(
            "the third read",
            Duration::from_secs(5),
            || {
                reads += 1;
                std::future::ready(reads)
            },
            |&n| n >= 3,
        )
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a value that never comes; last seen: 7")]
    async fn a_wait_that_times_out_names_what_and_the_last_value() {
        until(
            "a value that never comes",
            Duration::from_millis(250),
            || std::future::ready(7),
            |&n| n == 8,
        )
        .await;
    }
}
