//! What the node accepts from a validator (SPEC §4.1, §4.5), as pure rules: who may score, when
//! a PING's address is usable, how long a signed message's nonce is remembered.

use std::net::IpAddr;

use crate::scoring::{MIN_VALIDATOR_HUNDREDTHS, percentage_hundredths};

/// How long past its window a nonce is kept: the node's, the other replicas' and the database's
/// clocks may differ, and a nonce forgotten while its message is still in some node's window
/// could be accepted twice.
pub const NONCE_MARGIN_SECONDS: i64 = 60;

/// Why the registry refuses a message (SPEC §4.1), in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message names a pool that is not in `poolList`.
    PoolNotRegistered,
    /// The validator is unknown, or has no numeric percentage.
    ValidatorNotFound,
    /// The validator's percentage is below [`MIN_VALIDATOR_HUNDREDTHS`].
    NotEnoughPercentage,
}

/// Whether a message may score: `pool_registered` is `None` when the message names no pool,
/// `validator_percentage` what the registry holds for its validator. `Ok` is the validator's
/// percentage in hundredths, what its TASK adds to the pool's score.
pub fn may_score(
    pool_registered: Option<bool>,
    validator_percentage: Option<f64>,
) -> Result<i64, Refusal> {
    if pool_registered == Some(false) {
        return Err(Refusal::PoolNotRegistered);
    }
    let percentage = validator_percentage.ok_or(Refusal::ValidatorNotFound)?;
    let hundredths = percentage_hundredths(percentage);
    if hundredths < MIN_VALIDATOR_HUNDREDTHS {
        return Err(Refusal::NotEnoughPercentage);
    }
    Ok(hundredths)
}

/// Whether a pool could reach a validator at this address. Pool clients build
/// `ws://{ip}:{port}`, which an IPv6 address turns into an invalid URL; loopback, link-local,
/// unspecified, broadcast and multicast addresses lead a pool to itself or nowhere. Private
/// ranges stay: validators on private networks are real.
pub fn reachable_by_pools(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 0.0.0.0/8 means "this network": nothing a pool can connect to.
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(_) => false,
    }
}

/// Until when (unix seconds) the nonce of a message stamped `ts` is remembered: its window, then
/// [`NONCE_MARGIN_SECONDS`].
pub fn nonce_kept_until(ts: i64, window_seconds: u32) -> i64 {
    ts.saturating_add(i64::from(window_seconds) + NONCE_MARGIN_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_checks_run_pool_then_validator_then_percentage() {
        assert_eq!(
            may_score(Some(false), None),
            Err(Refusal::PoolNotRegistered)
        );
        assert_eq!(may_score(Some(true), None), Err(Refusal::ValidatorNotFound));
        assert_eq!(may_score(None, None), Err(Refusal::ValidatorNotFound));
        assert_eq!(
            may_score(None, Some(0.99)),
            Err(Refusal::NotEnoughPercentage)
        );
        assert_eq!(
            may_score(Some(true), Some(f64::NAN)),
            Err(Refusal::NotEnoughPercentage)
        );
        assert_eq!(may_score(None, Some(1.0)), Ok(100));
        assert_eq!(may_score(Some(true), Some(5.01)), Ok(501));
    }

    #[test]
    fn pools_reach_private_and_public_ipv4_only() {
        for ip in [
            "127.0.0.1",
            "127.8.8.8",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!reachable_by_pools(&ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.20",
            "100.64.0.1",
            "203.0.113.7",
            "8.8.8.8",
        ] {
            assert!(reachable_by_pools(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_nonce_outlives_its_window_by_the_margin() {
        assert_eq!(
            nonce_kept_until(1_000, 60),
            1_000 + 60 + NONCE_MARGIN_SECONDS
        );
        assert_eq!(nonce_kept_until(i64::MAX, 60), i64::MAX);
    }
}
