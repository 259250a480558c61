//! Eddyline's simulated Kafka cluster on turmoil: a controller and brokers
//! as hosts, clients behind the engine's `Transport` seam, seeded fault
//! injection and the run's trace.
//!
//! - [`cluster`]: [`cluster::SimCluster`] and [`cluster::ClusterHandle`], the
//!   public API for everything above the brokers; [`config`]: the cluster's
//!   settings ([`config::ClusterConfig`]) and well-known names;
//! - [`broker`]: the broker hosts (logs, replication, the group and
//!   transaction coordinators); the controller (leaders, ISRs, metadata) is
//!   internal;
//! - [`protocol`]: the Kafka APIs as Rust values (the wire contract with
//!   clients); [`internal`]: broker and controller messages; [`records`]:
//!   the ids, records and batches both share;
//! - [`faults`]: faults and fault schedules; [`trace`]: the run's trace and
//!   its hash; [`world`]: the seeded turmoil builder and the clock;
//! - [`seed`]: the run's seed, its named child seeds and the only random
//!   number generator; [`seed_context`]: the seed a panic names;
//! - [`rpc`]: a request/response connection (brokers' and tests' raw client);
//! - [`client`]: [`client::SimTransport`], the engine's `Transport` over the
//!   simulated brokers (producer, consumer, admin);
//! - [`checkpoint_store`]: the checkpoint store the worker hosts of a run
//!   share, with seeded write and read failures and lost unsynced writes.
//!
//! Determinism: a run is a function of its seed. No wall clock, no OS
//! randomness, no threads, no hash-order iteration, no environment reads:
//! all randomness comes from [`seed::DetRng`], every setting from
//! [`config::ClusterConfig`] (`sim/tests/determinism.rs` scans the sources
//! for what would break this).

pub mod broker;
pub mod checkpoint_store;
pub mod client;
pub mod cluster;
pub mod config;
pub(crate) mod controller;
pub mod faults;
pub mod internal;
pub mod protocol;
pub mod records;
pub mod rpc;
pub mod seed;
pub mod seed_context;
pub mod trace;
pub mod world;

pub use client::SimTransport;
pub use seed::{DetRng, Seed};
