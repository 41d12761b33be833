//! The process's TLS setup.

/// Chooses rustls' crypto provider for the process: the Kubernetes client and the HTTP client
/// bring in two, and rustls will not guess. Call before the first client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
