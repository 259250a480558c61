//! Broker-to-broker and broker-to-controller messages (replica fetches use
//! the public `Fetch` with a replica id). Owned by the broker model.
//!
//! They follow the KRaft-era Apache Kafka APIs of the same names
//! (BrokerRegistration, BrokerHeartbeat, the metadata log fetch,
//! AlterPartition, CreateTopics forwarding, AllocateProducerIds,
//! OffsetsForLeaderEpoch, WriteTxnMarkers, and KIP-890's verification form
//! of AddPartitionsToTxn), reduced to what the simulated cluster uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use eddyline_engine::transport::{ErrorCode, NewTopic, TopicPartition};

pub use crate::records::RawBytes;
use crate::records::{
    BrokerId, ControlType, FetchPartition, PartitionError, ProducerEpoch, ProducerId, RecordBatch,
    TopicError, offset_count,
};

/// A partition's state as the controller publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// `None`: no live in-sync replica (the partition is offline).
    pub leader: Option<BrokerId>,
    /// Bumped on every leader change (election, move, fencing).
    pub leader_epoch: i32,
    /// Bumped on every change of the partition's state (leader or ISR).
    pub partition_epoch: i32,
    /// The assigned replicas, preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas, in replica order.
    pub isr: Vec<BrokerId>,
}

/// A topic's state as the controller publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub partitions: Vec<PartitionImage>,
    pub min_insync_replicas: i16,
    /// `__consumer_offsets` and `__transaction_state`.
    pub internal: bool,
    pub configs: Vec<(String, String)>,
}

/// A broker as the controller publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub host: String,
    /// A fenced broker leads nothing and is not offered to clients.
    pub fenced: bool,
}

/// The cluster metadata at one metadata epoch (KRaft's metadata image).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub epoch: u64,
    pub brokers: BTreeMap<BrokerId, BrokerImage>,
    pub topics: BTreeMap<String, TopicImage>,
}

impl MetadataImage {
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionImage> {
        let topic = self.topics.get(&tp.topic)?;
        usize::try_from(tp.partition)
            .ok()
            .and_then(|index| topic.partitions.get(index))
    }
}

/// What a broker needs to know of a batch without decoding its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: Option<ControlType>,
    /// Data records in the batch (0 for a control batch).
    pub record_count: i32,
}

impl BatchHeader {
    pub fn of(batch: &RecordBatch) -> Self {
        Self {
            base_offset: batch.base_offset,
            partition_leader_epoch: batch.partition_leader_epoch,
            producer_id: batch.producer_id,
            producer_epoch: batch.producer_epoch,
            base_sequence: batch.base_sequence,
            transactional: batch.transactional,
            control: batch.control,
            record_count: batch.records.len() as i32,
        }
    }

    /// How many offsets the batch takes (a control batch takes one).
    pub fn offset_count(&self) -> i64 {
        offset_count(self.control, i64::from(self.record_count))
    }

    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.offset_count()
    }
}

/// A batch as replicas copy it: its header and its encoding as a
/// `RecordBatch` (never decoded on the way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaBatch {
    pub header: BatchHeader,
    pub encoded: RawBytes,
}

/// One partition of a replica fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchResult {
    pub error: Option<ErrorCode>,
    pub high_watermark: i64,
    pub batches: Vec<ReplicaBatch>,
}

/// A question for a leader during follower truncation (KIP-101/279): what
/// is the end offset of `leader_epoch` (or the largest epoch below it)?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochQuery {
    pub topic_partition: TopicPartition,
    /// The leader epoch the follower believes current (fencing).
    pub current_leader_epoch: i32,
    /// The follower's latest epoch in its own log.
    pub leader_epoch: i32,
}

/// The markers of one transaction, for the leaders of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMarker {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub committed: bool,
    /// The leader epoch of the coordinator's `__transaction_state`
    /// partition; an older coordinator's markers are fenced.
    pub coordinator_epoch: i32,
    pub partitions: Vec<TopicPartition>,
}

/// The end of an epoch in a leader's log, as OffsetsForLeaderEpoch finds
/// it: the largest epoch at or below the one asked for, and the offset
/// where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEnd {
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// One partition's answer in OffsetsForLeaderEpoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEndOffset {
    pub topic_partition: TopicPartition,
    pub result: Result<EpochEnd, ErrorCode>,
}

/// One transaction's outcome in WriteTxnMarkers: per partition, whether its
/// marker was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerResult {
    pub producer_id: ProducerId,
    pub partitions: Vec<PartitionError>,
}

/// A request between brokers or to the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InternalRequest {
    /// A broker (re)starting: `incarnation` grows with every start, so the
    /// controller can tell a restart from a retry.
    RegisterBroker {
        broker_id: BrokerId,
        incarnation: u64,
        host: String,
    },
    BrokerHeartbeat {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// Long poll for the metadata image: answered at once if the
    /// controller's epoch is newer than `known_epoch`, else after at most
    /// `max_wait_ms` with no image.
    FetchMetadata {
        broker_id: BrokerId,
        known_epoch: u64,
        max_wait_ms: u32,
    },
    /// A leader asking to change a partition's ISR.
    AlterPartition {
        broker_id: BrokerId,
        broker_epoch: i64,
        topic_partition: TopicPartition,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    /// Forwarded from a broker's CreateTopics.
    CreateTopics {
        topics: Vec<NewTopic>,
    },
    /// A block of producer ids for InitProducerId.
    AllocateProducerIds {
        broker_id: BrokerId,
    },
    OffsetsForLeaderEpoch {
        queries: Vec<EpochQuery>,
    },
    /// A follower's fetch (Kafka's Fetch with a replica id): reads to the
    /// log end and reports the follower's log end offset to the leader.
    /// Batches travel encoded, so replication never decodes records.
    ReplicaFetch {
        replica_id: BrokerId,
        max_wait_ms: u32,
        partitions: Vec<FetchPartition>,
    },
    WriteTxnMarkers {
        markers: Vec<TxnMarker>,
    },
    /// KIP-890: is each partition part of the producer's ongoing
    /// transaction? Sent by a partition leader to the transaction
    /// coordinator before the first transactional append of a transaction.
    VerifyTxnPartitions {
        transactional_id: String,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        partitions: Vec<TopicPartition>,
    },
}

/// A response between brokers or from the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InternalResponse {
    RegisterBroker {
        error: Option<ErrorCode>,
        broker_epoch: i64,
    },
    BrokerHeartbeat {
        error: Option<ErrorCode>,
        fenced: bool,
    },
    FetchMetadata {
        image: Option<MetadataImage>,
    },
    AlterPartition {
        result: Result<PartitionImage, ErrorCode>,
    },
    CreateTopics {
        results: Vec<TopicError>,
    },
    AllocateProducerIds {
        error: Option<ErrorCode>,
        first_producer_id: ProducerId,
        count: i64,
    },
    /// Per query: the epoch found and its end offset.
    OffsetsForLeaderEpoch {
        results: Vec<EpochEndOffset>,
    },
    /// One result per requested partition, in order.
    ReplicaFetch {
        partitions: Vec<ReplicaFetchResult>,
    },
    WriteTxnMarkers {
        results: Vec<MarkerResult>,
    },
    VerifyTxnPartitions {
        results: Vec<PartitionError>,
    },
    /// The request could not be handled at all (sent to the wrong node).
    Error {
        error: ErrorCode,
    },
}
