//! Eddyline's engine: one production engine for event-time stream processing
//! on Kafka, run unchanged over the simulator, real Kafka or Parquet replays.
//!
//! - [`time`], [`record`]: the one time type and the one record type;
//! - [`transport`]: the `Transport` seam to Kafka, with its guarantees;
//! - [`watermark`]: per-partition bounded-out-of-orderness watermarks and
//!   the task watermark over them (with opt-in idleness);
//! - [`window`]: window assigners and the keyed event-time window operator
//!   (Flink's trigger and lateness semantics), and the window task;
//! - [`aggregate`]: the `Aggregator` trait, built-in aggregates and
//!   process-window functions;
//! - [`spec`]: the JSON window spec of `eddy window`;
//! - [`job`]: jobs (a TOML file or the Rust API) and the task logic they run;
//! - [`snapshot`]: the versioned encoding of operator state;
//! - [`checkpoint`]: the checkpoint store trait and its implementations;
//! - [`worker`]: the worker that runs a job's tasks over a transport, with
//!   checkpoints and exactly-once output;
//! - [`memory`]: the seam over logs in memory (one process): benchmarks,
//!   property tests, and the base of replays;
//! - `kafka`: the seam over real Apache Kafka (rdkafka), behind the
//!   default `kafka` feature;
//! - `recording`: topics as Parquet files, and the seam over them that
//!   replays a recording through the worker (feature `parquet`);

pub mod aggregate;
pub mod checkpoint;
pub mod error;
pub mod job;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub mod record;
#[cfg(feature = "parquet")]
pub mod recording;
pub mod snapshot;
pub mod spec;
pub mod time;
pub mod transport;
pub mod watermark;
pub mod window;
pub mod worker;

pub use error::{Error, Result};
pub use record::{Key, Record};
pub use time::EventTime;
