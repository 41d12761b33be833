//! Crash points for tests of exactly-once behaviour. When the environment variable
//! `MINERPOOL_FAULT` names a point (`rewards:before-commit`, …), the process aborts there — a real
//! crash, with no unwinding and no cleanup, as a killed pod would. Unset, this does nothing.

/// The variable naming the point to crash at.
pub const FAULT_VAR: &str = "MINERPOOL_FAULT";

/// Aborts the process if `MINERPOOL_FAULT` equals `point`.
pub fn crash_point(point: &str) {
    if std::env::var(FAULT_VAR).is_ok_and(|wanted| wanted == point) {
        eprintln!("{FAULT_VAR}={point}: aborting here");
        std::process::abort();
    }
}
