//! The engine's one record type.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::EventTime;

/// A grouping key. Shared, cheap to clone, ordered (keyed state iterates in
/// key order so that output never depends on hash order).
pub type Key = Arc<str>;

/// One decoded input record: its key, its event time and its value.
///
/// Transport-level messages (bytes, offsets, headers) are
/// [`crate::transport::Message`]; a job's decoder turns each into a `Record`
/// or a dead-letter entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<V> {
    pub key: Key,
    pub ts: EventTime,
    pub value: V,
}

impl<V> Record<V> {
    pub fn new(key: impl Into<Key>, ts: EventTime, value: V) -> Self {
        Self {
            key: key.into(),
            ts,
            value,
        }
    }
}
