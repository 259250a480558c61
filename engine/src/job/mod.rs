//! Jobs: a TOML file (or the Rust API) that says what to read, how to
//! decode, filter, key and time it, which windows and aggregates to
//! compute and where to write, and the [`JobLogic`](crate::worker::JobLogic)
//! that runs it on the worker. The format for users: `docs/jobs.md`.

pub mod aggregates;
pub mod filter;
pub mod functions;
pub mod path;
pub mod problem;
pub mod value;
