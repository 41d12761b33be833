//! Test fixtures shared across minerpool's crates, and the uPow chain simulator that tests and
//! the demo use in place of the public chain.

pub mod chain_sim;
pub mod fixtures;
