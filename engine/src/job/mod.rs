//! Jobs: what to read, how to decode, filter, key and time it, which
//! windows and aggregates to compute and where to write, from a TOML file
//! or the Rust API; and the [`JobLogic`](crate::worker::JobLogic) the
//! worker runs for them. The format for users: `docs/jobs.md`.
//!
//! Modules, dependencies pointing one way: `problem`, `path` ← `value` ←
//! `filter`, `functions` ← `aggregates` ← `spec` ← `parse`, `decode`,
//! `encode` ← `definition` (the validated [`Job`]) ← `builder` (the Rust
//! API), `runner` (the tasks). This file only declares and re-exports.

pub mod aggregates;
pub mod builder;
pub mod decode;
pub mod definition;
pub mod encode;
pub mod filter;
pub mod functions;
pub mod parse;
pub mod path;
pub mod problem;
pub mod runner;
pub mod spec;
pub mod value;

pub use aggregates::{AggregateFunction, AggregateSpec, JobValue};
pub use builder::JobBuilder;
pub use decode::{Decoded, EVENT_TIME_MAX_MS, Skip};
pub use definition::Job;
pub use encode::{
    HEADER_ERROR, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC, HEADER_TASK,
    HEADER_WATERMARK,
};
pub use filter::{FilterSpec, Literal};
pub use functions::{CLICK_SESSION_SUMMARY, Functions, ProcessInput, ProcessWindow};
pub use runner::{JobTask, MutatedJob};
pub use spec::{
    CheckpointSpec, Delivery, DeliverySpec, EventTimeSpec, Format, InputSpec, JobSpec,
    JobWindowSpec, OnBadRecord, OutputSpec, StoreSpec, TimeUnit, WindowKindName,
};
pub use value::{FieldType, OutputValue, Row, Scalar};

#[cfg(test)]
mod tests;
