//! Eddyline's simulated Kafka cluster on turmoil: brokers as hosts, clients in
//! worker hosts behind the engine's `Transport` seam, seeded fault injection,
//! workload generators and the trace.
//!
//! - [`cluster`]: [`cluster::SimCluster`] and [`cluster::ClusterHandle`], the
//!   public API for everything above the brokers;
//! - [`protocol`]: the Kafka APIs as Rust values (the wire contract with
//!   clients); [`internal`]: broker and controller messages; [`records`]:
//!   the ids, records and batches both share;
//! - [`faults`]: faults and fault schedules; [`trace`]: the run's trace and
//!   its hash; [`world`]: the seeded turmoil builder and the clock;
//! - [`rpc`]: a request/response connection (brokers' and tests' raw client);
//! - [`client`]: [`client::SimTransport`], the engine's `Transport` over the
//!   simulated brokers (producer, consumer, admin).
//!
//! Determinism (SPEC §11): no wall clock, no OS randomness, no threads, no
//! hash-order iteration. All randomness comes from [`seed::DetRng`].

pub mod broker;
pub mod client;
pub mod cluster;
pub(crate) mod controller;
pub mod faults;
pub mod internal;
pub mod protocol;
pub mod records;
pub mod rpc;
pub mod seed;
pub mod trace;
pub mod world;

pub use client::SimTransport;
pub use seed::{DetRng, Seed};
