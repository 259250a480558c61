//! Eddyline's engine: one production engine for event-time stream processing
//! on Kafka, run unchanged over the simulator, real Kafka or Parquet replays.
//!
//! - [`time`], [`record`]: the one time type and the one record type;
//! - [`transport`]: the `Transport` seam to Kafka, with its guarantees;
//! - [`kafka`]: the seam over real Apache Kafka (rdkafka);

pub mod error;
pub mod kafka;
pub mod record;
pub mod time;
pub mod transport;

pub use error::{Error, Result};
pub use record::{Key, Record};
pub use time::EventTime;
