//! A checkpoint store in memory, shared by its clones: for one process
//! (benchmarks, tests, replays that need no durable state).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::{CheckpointStore, SnapshotId};
use crate::error::{Error, Result};
use crate::transport::ProducerRecord;

/// Snapshots in a map; never fails, forgets everything with the process.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    snapshots: Rc<RefCell<BTreeMap<SnapshotId, Vec<u8>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids of the snapshots it holds, in order.
    pub fn ids(&self) -> Vec<SnapshotId> {
        self.snapshots.borrow().keys().cloned().collect()
    }
}

impl CheckpointStore for MemoryStore {
    async fn write(&mut self, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<ProducerRecord>> {
        self.snapshots
            .borrow_mut()
            .insert(id.clone(), bytes.to_vec());
        Ok(Vec::new())
    }

    async fn read(&mut self, id: &SnapshotId) -> Result<Vec<u8>> {
        let snapshots = self.snapshots.borrow();
        snapshots
            .get(id)
            .cloned()
            .ok_or_else(|| Error::MissingSnapshot(format!("{id} is not in the memory store")))
    }

    async fn collect(&mut self, job: &str, task: i32, below: u64) -> Result<usize> {
        let mut snapshots = self.snapshots.borrow_mut();
        let before = snapshots.len();
        snapshots.retain(|id, _| !(id.job == job && id.task == task && id.checkpoint < below));
        Ok(before - snapshots.len())
    }
}
