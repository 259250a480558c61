//! What one run observed: the facts the checker judges.
//!
//! A run (`run`) fills an [`Observation`] after its heal-and-drain phase;
//! the checker (`checker`) judges it against the reference model. The
//! checker reads nothing else: whatever an anomaly's definition needs is
//! here, taken from what a Kafka client or an operator could see (topics
//! read back, the group's committed offsets, the brokers' logs), never from
//! the engine's internals.

use std::collections::{BTreeMap, BTreeSet};

use eddyline_engine::transport::Message;

/// A transaction marker in an output partition's log (leader's log after
/// the run), with the producer that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerSeen {
    pub partition: i32,
    pub offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// `true` for COMMIT, `false` for ABORT.
    pub commit: bool,
}

/// A data batch of a producer in an output partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSeen {
    pub partition: i32,
    pub base_offset: i64,
    /// Offsets taken: `base_offset .. base_offset + records`.
    pub records: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transactional: bool,
}

/// Everything a run observed, once its faults stopped and it drained (or
/// gave up draining at the liveness bound).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Every input record in the log, per input partition, in offset order
    /// (the input is written without transactions: all of it counts).
    pub input: BTreeMap<i32, Vec<Message>>,
    /// The job's output topic read with `read_committed`, per partition, in
    /// offset order.
    pub output: BTreeMap<i32, Vec<Message>>,
    /// The late-output topic, `read_committed`, per partition.
    pub late: BTreeMap<i32, Vec<Message>>,
    /// The dead-letter topic, `read_committed`, per partition (empty when
    /// the job has none).
    pub dead_letter: BTreeMap<i32, Vec<Message>>,
    /// The output topic's leader logs after the run: every data batch, in
    /// log order per partition.
    pub output_batches: Vec<BatchSeen>,
    /// The output topic's transaction markers, in log order per partition.
    pub output_markers: Vec<MarkerSeen>,
    /// The consumer group's committed offset of each input partition as
    /// sampled during the run, in time order: (simulated ms, offset). A
    /// sample is taken whenever the committed value changes.
    pub committed_offsets: BTreeMap<i32, Vec<(u64, i64)>>,
    /// Every task committed the end of its input within the liveness bound.
    pub drained: bool,
    /// When the drain finished (simulated ms), if it did.
    pub drained_at_ms: Option<u64>,
    /// Output, late or dead-letter partitions whose last stable offset was
    /// still below the high watermark long after the drain: an open
    /// transaction that nobody finishes (`topic-partition` names).
    pub unstable: BTreeSet<String>,
}
