//! Test fixtures shared across minerpool's crates, and the uPow chain simulator that tests and
//! the demo use in place of the public chain.
//!
//! A module uses only the modules listed before it:
//!
//! 1. `fixtures`: real uPow addresses, and well-formed ones off the curve.
//! 2. `wait`: waiting for what another task or process makes visible.
//! 3. `fuzz`: input strategies for the property tests of every parser.
//! 4. `chain_sim`: the uPow chain simulator.

pub mod chain_sim;
pub mod fixtures;
pub mod fuzz;
pub mod wait;

/// A TCP port on the loopback interface that was free a moment ago, for a server a test starts
/// later. It is taken below the kernel's ephemeral range: a port from that range (what binding
/// port 0 gives) can be handed meanwhile to any outgoing connection on the machine, and tests
/// that open thousands of connections make that likely.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high > low {
        for _ in 0..200 {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            let port = low + (hasher.finish() % u64::from(high - low)) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}
