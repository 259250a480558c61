//! Eddyline's simulated Kafka cluster on turmoil: brokers as hosts, clients in
//! worker hosts behind the engine's `Transport` seam, seeded fault injection,
//! workload generators and the trace.
//!
//! Determinism (SPEC §11): no wall clock, no OS randomness, no threads, no
//! hash-order iteration. All randomness comes from [`seed::DetRng`].

pub mod client;
pub mod internal;
pub mod protocol;
pub mod seed;

pub use client::SimTransport;
pub use seed::{DetRng, Seed};
