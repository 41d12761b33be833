//! Logs of every minerpool binary: JSON lines on stderr (stdout carries results, such as a job's
//! summary), filtered by `RUST_LOG` (default `info`).

/// Installs the JSON log subscriber; call once at the start of `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}
