//! Checkpoint stores: where task snapshots live between a checkpoint and
//! the restore that reads it.
//!
//! # The guarantee every store keeps
//!
//! A snapshot read back is byte-equal to the one written under the same
//! [`SnapshotId`], or the read is an error: [`crate::Error::MissingSnapshot`]
//! when the store does not have it, [`crate::Error::CorruptSnapshot`] when
//! what it has fails its checksum or framing, [`crate::Error::Store`] when
//! the store cannot be reached. A store never returns other bytes, a
//! prefix, or an empty snapshot in place of a missing one.
//!
//! A write that returned `Ok` is durable in the sense of the store (synced
//! to disk and renamed into place for the directory store; produced inside
//! the worker's transaction for the topic store, durable when that commits).
//! The worker commits a checkpoint only after every write of it returned
//! `Ok`, and names it in the committed offsets' metadata, so a commit never
//! names a snapshot that was not written.
//!
//! Snapshot ids are never reused for other bytes: the id carries the
//! writer's incarnation, so a zombie's late write cannot replace the
//! snapshot a newer owner committed.
//!
//! # The implementations
//!
//! - [`envelope`]: what every store keeps for a snapshot (magic, version,
//!   the id, the length, CRC-32), and the name checks all stores share;
//! - [`DirStore`]: one file per snapshot in a directory tree, written to
//!   a temporary file, synced and renamed into place;
//! - [`TopicStore`]: snapshots as chunk records of a compacted Kafka topic,
//!   produced by the worker inside its transaction; generic over the
//!   `Transport`, so it runs on the simulator and on real Kafka;
//! - [`MemoryStore`]: a map in memory, for one process (benchmarks,
//!   tests);
//! - the simulator's store (`eddyline_sim::checkpoint_store`): shared by
//!   the worker hosts of a run, with seeded write and read failures and
//!   lost unsynced writes.
#![allow(async_fn_in_trait)]

mod dir;
pub mod envelope;
mod memory;
mod topic;

pub use dir::DirStore;
pub use memory::MemoryStore;
pub use topic::{TopicStore, TopicStoreOptions, ensure_topic};

use std::fmt;

use crate::error::Result;
use crate::transport::ProducerRecord;

/// Names one snapshot of one task.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    /// The job's name.
    pub job: String,
    /// The task: its partition number.
    pub task: i32,
    /// The checkpoint number; grows over every owner of the task.
    pub checkpoint: u64,
    /// The writing worker's incarnation (unique per worker process start).
    pub incarnation: u64,
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/task-{}/checkpoint-{}-{:016x}",
            self.job, self.task, self.checkpoint, self.incarnation
        )
    }
}

/// Where snapshots are written and read back (see the module doc for the
/// guarantee).
pub trait CheckpointStore {
    /// Writes `bytes` as snapshot `id`. Returns the records the worker must
    /// produce inside the same transaction as the checkpoint's outputs and
    /// offsets (the topic store's snapshot chunks); empty for a store that
    /// is durable on its own.
    async fn write(&mut self, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<ProducerRecord>>;

    /// The bytes written as snapshot `id`.
    async fn read(&mut self, id: &SnapshotId) -> Result<Vec<u8>>;

    /// Removes the snapshots of `job`'s task `task` with a checkpoint
    /// number below `below` (garbage once checkpoint `below` committed);
    /// returns how many it removed. A store that collects by other means
    /// (compaction) may return 0.
    async fn collect(&mut self, job: &str, task: i32, below: u64) -> Result<usize>;
}

#[cfg(test)]
mod tests;
