//! What the worker runs: a job's processing logic, one task per partition.
//!
//! The worker core ([`super::core`]) knows nothing of windows, formats or
//! fields: it owns partitions, positions, transactions and checkpoints, and
//! hands every input message to the [`TaskLogic`] of the task that owns its
//! partition. A job (`crate::job`) implements [`JobLogic`]; tests implement
//! it with small fakes.
//!
//! # Contract
//!
//! - A task is a pure function of the messages it was given, the processing
//!   times passed in and the snapshot it was restored from: it reads no
//!   clock, no randomness and no environment, so that a task restored from
//!   a snapshot and given the same messages produces the same outputs as the
//!   task that took the snapshot (the rule recovery stands on).
//! - `snapshot` then `restore_task` gives a task that behaves exactly as the
//!   original from that point on, its watermark included (watermarks never
//!   regress across a restore).
//! - Outputs are appended to `out` in emission order; they become visible
//!   to readers only through the worker's transaction (or, at-least-once,
//!   after the worker flushed them).
//! - A bad record is never a panic: it becomes a dead-letter output, or,
//!   when the job says `on_bad_record = "fail"`, [`crate::Error::BadRecord`]
//!   naming the record's topic, partition and offset.

use std::time::Duration;

use crate::error::Result;
use crate::time::EventTime;
use crate::transport::{Message, ProducerRecord};

/// A job as the worker sees it: its inputs, and how to make and restore the
/// task of one partition number. Mutants of the tasks' own logic
/// (`fire-early`, `drop-late`) belong to the job value (a job built with
/// them switched on); the worker's core has its own.
pub trait JobLogic {
    type Task: TaskLogic;

    /// The job's name: the consumer group, transactional ids and snapshot
    /// names derive from it.
    fn name(&self) -> &str;

    /// The input topics, co-partitioned: task `p` reads partition `p` of
    /// each, in this order.
    fn input_topics(&self) -> &[String];

    /// A fresh task for partition number `task` (no state, watermarks at
    /// `i64::MIN`), at processing time `now`.
    fn new_task(&self, task: i32, now: Duration) -> Result<Self::Task>;

    /// The task that took `snapshot`, continuing at processing time `now`.
    /// A snapshot that does not decode, or was taken by another job or
    /// task, is [`crate::Error::CorruptSnapshot`].
    fn restore_task(&self, task: i32, snapshot: &[u8], now: Duration) -> Result<Self::Task>;
}

/// The processing logic of one task.
pub trait TaskLogic {
    /// One message from one of the task's input partitions, at processing
    /// time `now`. Messages of one partition come in offset order.
    fn process(
        &mut self,
        message: &Message,
        now: Duration,
        out: &mut Vec<ProducerRecord>,
    ) -> Result<()>;

    /// Processing time has reached `now` (idle inputs may fire windows).
    fn on_processing_time(&mut self, now: Duration, out: &mut Vec<ProducerRecord>) -> Result<()>;

    /// End of a bounded input: the watermark goes to `i64::MAX` and every
    /// pending window fires.
    fn finish(&mut self, out: &mut Vec<ProducerRecord>) -> Result<()>;

    /// All of the task's state at processing time `now`, in a versioned
    /// encoding that [`JobLogic::restore_task`] reads back.
    fn snapshot(&self, now: Duration) -> Result<Vec<u8>>;

    /// The task watermark (the minimum over its active inputs).
    fn watermark(&self) -> EventTime;
}
