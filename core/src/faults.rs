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

/// The variable naming a point to stall at, and how long (`point` or `point:seconds`, default
/// 5 s): a run that stops answering for a while, as a paused or starved pod does.
pub const PAUSE_VAR: &str = "MINERPOOL_PAUSE";

/// Sleeps the whole process's thread if `MINERPOOL_PAUSE` names `point`.
pub fn pause_point(point: &str) {
    let Ok(wanted) = std::env::var(PAUSE_VAR) else {
        return;
    };
    let (name, seconds) = match wanted
        .rsplit_once(':')
        .filter(|(_, s)| s.parse::<u64>().is_ok())
    {
        Some((name, seconds)) => (name, seconds.parse().unwrap_or(5)),
        None => (wanted.as_str(), 5),
    };
    if name == point {
        eprintln!("{PAUSE_VAR}={wanted}: stalling for {seconds} s");
        std::thread::sleep(std::time::Duration::from_secs(seconds));
    }
}
