//! The worker: runs a job's tasks over any `Transport` with checkpoints and
//! exactly-once (or at-least-once) output.
//!
//! - [`core`]: the I/O-free state machine (every decision of the protocol);
//! - [`driver`]: the one async driver that runs the core over any transport
//!   and checkpoint store;
//! - [`logic`]: what the worker runs (`JobLogic`, `TaskLogic`);
//! - [`mutant`]: test-only switches that break the protocol on purpose.

pub mod core;
pub mod driver;
pub mod logic;
pub mod mutant;

pub use core::{Command, Delivery, Stopped, WorkerConfig, WorkerCore, WorkerStats};
pub use logic::{JobLogic, TaskLogic};
pub use mutant::{Faithful, Mutant, Mutants, Selected};

use crate::error::{Error, Result};

/// The transaction-timeout guard (the data-loss trap of Flink's Kafka sink):
/// a transaction must outlive the longest time a checkpoint can stay open,
/// which is the checkpoint interval plus the time a failed worker needs to
/// come back and commit (its restart budget). With a shorter timeout the
/// coordinator aborts a transaction the worker still means to commit, and
/// what it held is lost.
pub fn check_transaction_timeout(
    transaction_timeout_ms: u64,
    checkpoint_interval_ms: u64,
    restart_budget_ms: u64,
) -> Result<()> {
    let open_ms_max = checkpoint_interval_ms.saturating_add(restart_budget_ms);
    if transaction_timeout_ms > open_ms_max {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "transaction_timeout_ms = {transaction_timeout_ms} must be greater than the checkpoint \
         interval ({checkpoint_interval_ms} ms) plus the restart budget ({restart_budget_ms} ms) \
         = {open_ms_max} ms: a transaction can stay open that long, and the coordinator would \
         abort it (and lose its outputs) before the worker commits it"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_timeout_not_above_interval_plus_restart_budget_is_refused() {
        assert!(check_transaction_timeout(60_001, 30_000, 30_000).is_ok());
        let error = check_transaction_timeout(60_000, 30_000, 30_000)
            .unwrap_err()
            .to_string();
        assert!(error.contains("transaction_timeout_ms = 60000"), "{error}");
        assert!(error.contains("= 60000 ms"), "{error}");
        assert!(check_transaction_timeout(10_000, 30_000, 0).is_err());
        assert!(check_transaction_timeout(u64::MAX, u64::MAX, 1).is_err());
    }
}
