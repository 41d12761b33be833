//! Test fixtures shared across minerpool's crates, and the uPow chain simulator that tests and
//! the demo use in place of the public chain.

pub mod chain_sim;
pub mod fixtures;
pub mod fuzz;
pub mod wait;

/// A TCP port on the loopback interface that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}
