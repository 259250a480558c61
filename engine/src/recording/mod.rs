//! Recordings: one topic as a Parquet file, and the transport that replays
//! it through the worker.
//!
//! - [`schema`]: the one schema of a recorded topic (the columns, their
//!   types, the file metadata keys) and its check on files read;
//! - [`write`]: [`RecordingWriter`], rows appended in partition then offset
//!   order to a temporary file in the target directory, renamed when the
//!   footer is written;
//! - [`read`]: [`Recording::read`], every bad file (empty, truncated,
//!   corrupt, another schema, rows out of order) a one-line
//!   [`crate::Error::Invalid`] naming the file and the problem;
//! - [`transport`]: [`ParquetTransport`], the `Transport` seam over
//!   recordings: the recorded partitions are logs at their recorded offsets
//!   (read in offset order, with their end offsets), and what the worker
//!   commits to its output topics is written back as recordings;
//! - [`replay`]: a job over a recording as a bounded backfill, through the
//!   worker's one driver.
//!
//! Times are the records' Kafka timestamps in ms since the epoch, as the
//! seam carries them ([`crate::transport::Message::timestamp_ms`]).

pub mod read;
pub mod replay;
pub mod schema;
pub mod transport;
pub mod write;

use std::collections::BTreeMap;

use crate::transport::Message;

pub use replay::{Replay, ReplayOptions, replay, replay_owned};
pub use schema::FORMAT_VERSION;
pub use transport::ParquetTransport;
pub use write::RecordingWriter;

/// The offsets of one recorded partition: `[start, end)`. `start` is the
/// first offset the recording covers (the first record's, or the log start
/// when recorded from Kafka) and `end` the end offset it was recorded up to
/// (a transaction's commit marker may leave `end` past the last record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffsetRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// What a recording's file metadata says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The recorded topic.
    pub topic: String,
    /// Where the records came from, in words (`kafka HOST:PORT`, `eddy sim
    /// run SCENARIO --seed N`, `eddy replay --job JOB.toml`).
    pub source: String,
    /// The topic's partition count; every partition has a range, empty ones
    /// included.
    pub partition_count: i32,
    /// One range per partition, by partition.
    pub offset_ranges: Vec<OffsetRange>,
}

impl RecordingInfo {
    /// The info of a topic whose every partition's records are given, each
    /// partition's range running from its first record to one past its
    /// last (`[0, 0)` for an empty partition).
    pub fn covering(
        topic: impl Into<String>,
        source: impl Into<String>,
        partition_count: i32,
        messages: &BTreeMap<i32, Vec<Message>>,
    ) -> Self {
        let offset_ranges = (0..partition_count)
            .map(|partition| {
                let records = messages.get(&partition).map(Vec::as_slice).unwrap_or(&[]);
                match (records.first(), records.last()) {
                    (Some(first), Some(last)) => OffsetRange {
                        partition,
                        start: first.offset,
                        end: last.offset + 1,
                    },
                    _ => OffsetRange {
                        partition,
                        start: 0,
                        end: 0,
                    },
                }
            })
            .collect();
        Self {
            topic: topic.into(),
            source: source.into(),
            partition_count,
            offset_ranges,
        }
    }
}

/// A recorded topic, read back: its info and its records, by partition in
/// offset order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    pub info: RecordingInfo,
    pub partitions: BTreeMap<i32, Vec<Message>>,
}

impl Recording {
    /// The number of records.
    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record, by partition then offset.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.partitions.values().flatten()
    }
}
