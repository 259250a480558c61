//! The worker: runs a job's tasks over any `Transport` with checkpoints and
//! exactly-once (or at-least-once) output.
//!
//! - [`logic`]: what the worker runs (`JobLogic`, `TaskLogic`);
//! - [`mutant`]: test-only switches that break the protocol on purpose.

pub mod logic;
pub mod mutant;

pub use logic::{JobLogic, TaskLogic};
pub use mutant::{Faithful, Mutant, Mutants, Selected};
