//! The `Transport` seam: everything the engine needs from Kafka.
//!
//! Two implementations keep the guarantees written here: the simulated
//! cluster (`eddyline-sim`, on turmoil) and real Apache Kafka through
//! `rdkafka` ([`crate::kafka`]). The Kafka-semantics conformance suite is
//! written against these traits alone and runs unchanged against both; where
//! they disagree, real Kafka is right.
//!
//! # Guarantees both implementations keep
//!
//! **Per-partition order and offsets.** A partition is a log. Offsets are
//! dense `i64`s from 0 that only grow; a record keeps its offset forever.
//! Records produced by one producer to one partition are appended in send
//! order (idempotence: a retried batch is never duplicated or reordered).
//! Transaction control markers take an offset each: a committed transaction
//! that wrote `n` records to a partition moves its end offset by `n + 1`.
//! Consumers see a partition's records in offset order, never a gap other
//! than control markers and (under read_committed) aborted records.
//!
//! **Keys and partitions.** A [`ProducerRecord`] without an explicit
//! partition and with a key goes to `murmur2(key) & 0x7fffffff % partitions`,
//! exactly as Kafka's default partitioner ([`partition_for_key`]).
//!
//! **Transactional visibility.** Under [`Isolation::ReadCommitted`] a consumer
//! sees a transaction's records only after its commit marker, never an
//! aborted record, and never reads past the last stable offset (the first
//! offset of the oldest open transaction): an open transaction blocks
//! read_committed readers of that partition at the LSO, even for later
//! records of other producers. Under [`Isolation::ReadUncommitted`] a consumer
//! reads up to the high watermark.
//!
//! **Atomic commit.** [`Producer::commit_transaction`] makes every record the
//! transaction wrote and every offset it sent with
//! [`Producer::send_offsets_to_transaction`] visible together, or none of
//! them. A transaction that is aborted, or not committed before
//! `transaction_timeout_ms`, is aborted by the coordinator.
//!
//! **Fencing.** [`Producer::init_transactions`] bumps the producer epoch of
//! its transactional id and aborts any transaction the previous incarnation
//! left open; from then on the previous incarnation's calls fail with
//! [`ErrorKind::Fenced`]. An offset commit inside a transaction carries the
//! consumer-group generation ([`GroupMetadata`]); the coordinator rejects it
//! (`IllegalGeneration`, `UnknownMemberId`, `FencedInstanceId`) when the
//! member is no longer part of that generation (KIP-447).
//!
//! **Group membership.** Eager rebalancing: before a rebalance completes,
//! every member is told [`ConsumerEvent::Revoked`] for all it owns, and it
//! keeps ownership until its next [`Consumer::poll`]; then it sees
//! [`ConsumerEvent::Assigned`] with its new assignment. A member that misses
//! its session timeout loses its partitions ([`ConsumerEvent::Lost`]) and must
//! not commit for them.
//!
//! **Committed offsets.** An offset committed with metadata reads back with
//! the same metadata. Under read_committed, [`Consumer::committed`] waits
//! (bounded by the request timeout) while a transaction holding offsets for
//! that partition is still open, so a new owner never starts from offsets that
//! are about to change (KIP-447's stable offsets).
//!
//! # Errors
//!
//! Every call returns a [`TransportError`] whose [`ErrorKind`] says what the
//! caller must do, and whose [`ErrorCode`] names the Kafka error, so that the
//! conformance suite can compare the simulator's answers with a broker's.
//!
//! # Runtime
//!
//! The traits are async and need no `Send`: the simulator drives them on
//! turmoil's single-threaded host runtimes; the rdkafka implementation moves
//! librdkafka's blocking calls off the runtime with `spawn_blocking`.
#![allow(async_fn_in_trait)]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record header: a name and opaque bytes (Kafka allows duplicates; order is kept).
pub type Header = (String, Vec<u8>);

/// A record read from a partition: the one record type of the simulator,
/// real Kafka and recordings.
///
/// The topic and the bytes are shared, not owned: a consumer hands out one
/// `Arc<str>` per topic, and may hand out keys and values as slices of one
/// buffer of a poll's records (cloning a message copies no bytes; a kept
/// key or value keeps that buffer alive). Serialized exactly as a `String`
/// and `Option<Vec<u8>>` would be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    #[serde(with = "optional_bytes")]
    pub key: Option<Bytes>,
    #[serde(with = "optional_bytes")]
    pub value: Option<Bytes>,
    /// The record's Kafka timestamp (create time), in ms since the epoch.
    pub timestamp_ms: i64,
    pub headers: Vec<Header>,
}

impl Message {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}

/// `Option<Bytes>` serialized as `Option<Vec<u8>>` (a sequence of bytes),
/// so that `Message`'s encoding does not depend on how its bytes are held.
mod optional_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        bytes.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        Ok(Option::<Vec<u8>>::deserialize(d)?.map(Bytes::from))
    }
}

/// A record to produce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: Kafka's default partitioner ([`partition_for_key`] for a keyed
    /// record). A record with neither key nor partition is rejected with
    /// [`ErrorCode::InvalidRecord`]: Eddyline never relies on sticky
    /// partitioning, whose choices differ between clients.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// `None`: the producer's clock at send time.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<Header>,
}

/// Where a produced record landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A committed position and the metadata string stored with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to read.
    pub offset: i64,
    pub metadata: String,
}

/// What a transactional offset commit carries so that the group coordinator
/// can fence a member that is no longer in the group (KIP-447).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMetadata {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// Which records a consumer may read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    /// Up to the last stable offset; aborted records filtered out.
    #[default]
    ReadCommitted,
    /// Up to the high watermark, aborted and open transactions included.
    ReadUncommitted,
}

/// Where a consumer starts on a partition that has no committed offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs (`min.insync.replicas`, `cleanup.policy`, ...), in order.
    pub configs: Vec<(String, String)>,
}

/// How a consumer is set up. Offsets are never auto-committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    /// `None`: no group; only [`Consumer::assign`] may be used.
    pub group_id: Option<String>,
    pub client_id: String,
    pub isolation: Isolation,
    pub offset_reset: OffsetReset,
    pub session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    /// Upper bound on how long one request may take before it fails with
    /// [`ErrorKind::Timeout`].
    pub request_timeout_ms: u32,
    /// librdkafka's `max.poll.interval.ms`: a group member that does not
    /// call [`Consumer::poll`] for longer leaves its group (its partitions
    /// go to the others); its next poll fails once with
    /// [`ErrorCode::MaxPollExceeded`], then it rejoins as a new member. Also
    /// the rebalance timeout the member announces. At least
    /// `session_timeout_ms`.
    pub max_poll_interval_ms: u32,
}

impl ConsumerConfig {
    pub fn new(client_id: impl Into<String>, group_id: Option<String>) -> Self {
        Self {
            group_id,
            client_id: client_id.into(),
            isolation: Isolation::ReadCommitted,
            offset_reset: OffsetReset::Earliest,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            request_timeout_ms: 30_000,
            max_poll_interval_ms: 300_000,
        }
    }
}

/// How a producer is set up. Producers are always idempotent with acks=all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerConfig {
    pub client_id: String,
    /// `Some`: a transactional producer; `None`: idempotent only.
    pub transactional_id: Option<String>,
    pub transaction_timeout_ms: u32,
    /// How long the producer may wait to fill a batch.
    pub linger_ms: u32,
    pub request_timeout_ms: u32,
    /// How long a send may be retried before it fails (`delivery.timeout.ms`).
    pub delivery_timeout_ms: u32,
}

impl ProducerConfig {
    pub fn new(client_id: impl Into<String>, transactional_id: Option<String>) -> Self {
        Self {
            client_id: client_id.into(),
            transactional_id,
            transaction_timeout_ms: 60_000,
            linger_ms: 5,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
        }
    }
}

/// What [`Consumer::poll`] reports, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// This member's new assignment (eager protocol: all it owns now). Each
    /// partition's position is its committed offset, else the reset policy;
    /// [`Consumer::seek`] may change it before the next poll.
    Assigned(Vec<TopicPartition>),
    /// Every partition this member owns is about to be revoked. The member
    /// still owns them, and its generation is still valid, until its next
    /// [`Consumer::poll`]: checkpoint and commit before polling again.
    Revoked(Vec<TopicPartition>),
    /// These partitions were taken away without a revoke (session timeout,
    /// fenced member). The member's generation is gone; commits for them fail.
    Lost(Vec<TopicPartition>),
    /// A record, in offset order within its partition.
    Message(Message),
}

/// What the caller must do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Try the same call again; nothing was lost.
    Retriable,
    /// The current transaction cannot commit: abort it, then carry on.
    Abortable,
    /// This producer or group member was replaced by a newer one: stop using
    /// it, drop the tasks it served, and do not commit anything more.
    Fenced,
    /// The client cannot go on (bad configuration, unsupported broker,
    /// authentication failure, a broken invariant): stop.
    Fatal,
    /// The call did not complete in time; its outcome is unknown.
    Timeout,
}

/// Kafka error codes that the engine or the conformance suite tell apart,
/// with the wire numbers of the Kafka protocol where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The broker (or all brokers) could not be reached.
    BrokerNotAvailable,
    /// The call did not complete within its timeout (client side).
    TimedOut,
    /// A record without a key or a partition; a value that cannot be sent.
    InvalidRecord,
    /// The client was used in the wrong state (commit without begin, ...).
    InvalidState,
    UnknownTopicOrPartition,
    NotLeaderOrFollower,
    RequestTimedOut,
    NetworkException,
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    NotCoordinator,
    MessageTooLarge,
    RecordListTooLarge,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    TopicAlreadyExists,
    InvalidPartitions,
    IllegalGeneration,
    UnknownMemberId,
    RebalanceInProgress,
    FencedInstanceId,
    UnstableOffsetCommit,
    OutOfOrderSequenceNumber,
    DuplicateSequenceNumber,
    InvalidProducerEpoch,
    ProducerFenced,
    InvalidProducerIdMapping,
    InvalidTxnState,
    ConcurrentTransactions,
    TransactionCoordinatorFenced,
    InvalidTransactionTimeout,
    SaslAuthenticationFailed,
    /// Any other Kafka error, by wire number (negative: client-local).
    Other(i32),
    // New variants go here, at the end: serde encodes a variant by its
    // index (the simulator's protocol carries these codes, and its golden
    // test pins the bytes).
    /// The group member did not poll within `max_poll_interval_ms` and left
    /// its group (librdkafka's local `_MAX_POLL_EXCEEDED`, -147).
    MaxPollExceeded,
}

/// Writes the one table of Kafka wire numbers: [`ErrorCode::kafka_code`],
/// [`ErrorCode::from_kafka_code`] and [`ErrorCode::WIRE_CODES`] all come
/// from it, so the two directions cannot disagree.
macro_rules! wire_codes {
    ($($variant:ident = $code:literal,)*) => {
        impl ErrorCode {
            /// Every code that has its own variant, with its wire number.
            pub const WIRE_CODES: &[(ErrorCode, i16)] = &[$((ErrorCode::$variant, $code),)*];

            /// The Kafka protocol's number for this error, if it has one.
            pub fn kafka_code(self) -> Option<i16> {
                Some(match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Other(code) => i16::try_from(code).ok()?,
                    ErrorCode::BrokerNotAvailable
                    | ErrorCode::TimedOut
                    | ErrorCode::InvalidRecord
                    | ErrorCode::InvalidState
                    | ErrorCode::MaxPollExceeded => return None,
                })
            }

            /// The error for a Kafka protocol number.
            pub fn from_kafka_code(code: i16) -> Self {
                match code {
                    $($code => ErrorCode::$variant,)*
                    other => ErrorCode::Other(i32::from(other)),
                }
            }
        }
    };
}

wire_codes! {
    UnknownTopicOrPartition = 3,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    MessageTooLarge = 10,
    NetworkException = 13,
    CoordinatorLoadInProgress = 14,
    CoordinatorNotAvailable = 15,
    NotCoordinator = 16,
    RecordListTooLarge = 18,
    NotEnoughReplicas = 19,
    NotEnoughReplicasAfterAppend = 20,
    IllegalGeneration = 22,
    UnknownMemberId = 25,
    RebalanceInProgress = 27,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    OutOfOrderSequenceNumber = 45,
    DuplicateSequenceNumber = 46,
    InvalidProducerEpoch = 47,
    InvalidTxnState = 48,
    InvalidProducerIdMapping = 49,
    InvalidTransactionTimeout = 50,
    ConcurrentTransactions = 51,
    TransactionCoordinatorFenced = 52,
    SaslAuthenticationFailed = 58,
    FencedInstanceId = 82,
    UnstableOffsetCommit = 88,
    ProducerFenced = 90,
}

/// An error from a transport call: what to do ([`ErrorKind`]), which Kafka
/// error it was ([`ErrorCode`]), and a one-line description that never
/// contains credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message} ({code:?}, {kind:?})")]
pub struct TransportError {
    pub kind: ErrorKind,
    pub code: ErrorCode,
    pub message: String,
}

impl TransportError {
    pub fn new(kind: ErrorKind, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.kind == ErrorKind::Retriable
    }
}

/// Results of transport calls.
pub type TransportResult<T> = Result<T, TransportError>;

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed `0x9747b28c`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Topic administration.
pub trait Admin {
    /// Creates a topic. An existing topic fails with
    /// [`ErrorCode::TopicAlreadyExists`].
    async fn create_topic(&self, topic: &NewTopic) -> TransportResult<()>;

    /// The number of partitions of a topic; [`ErrorCode::UnknownTopicOrPartition`]
    /// if it does not exist.
    async fn partition_count(&self, topic: &str) -> TransportResult<i32>;
}

/// A consumer: either a group member ([`Consumer::subscribe`]) or a reader of
/// partitions it names ([`Consumer::assign`]). Offsets are committed only by
/// explicit calls.
pub trait Consumer {
    /// Joins the consumer group and subscribes to these topics. Assignment and
    /// revocation are reported by [`Consumer::poll`].
    async fn subscribe(&mut self, topics: &[String]) -> TransportResult<()>;

    /// Reads these partitions without group management, each from its
    /// committed offset (if the consumer has a group id) or the reset policy.
    async fn assign(&mut self, partitions: &[TopicPartition]) -> TransportResult<()>;

    /// Waits up to `timeout` for events and returns those that are ready, at
    /// most `max_events`, in order; an empty vector when none came in time.
    /// Polling also completes a pending revoke (see [`ConsumerEvent::Revoked`])
    /// and keeps the group session alive.
    async fn poll(
        &mut self,
        max_events: usize,
        timeout: Duration,
    ) -> TransportResult<Vec<ConsumerEvent>>;

    /// Sets the position of an owned partition: the next record returned is
    /// the first at or after `offset`.
    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> TransportResult<()>;

    /// The committed offsets (with metadata) of the group for these
    /// partitions, `None` where nothing was committed; waits while a
    /// transaction holding offsets for them is open (see the module doc).
    async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> TransportResult<Vec<Option<OffsetAndMetadata>>>;

    /// Commits offsets outside any transaction (at-least-once mode).
    async fn commit(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> TransportResult<()>;

    /// The position of an owned partition: the offset of the next record
    /// [`Consumer::poll`] hands out. It moves past each record handed out and
    /// past what a consumer reads but never hands out: transaction markers,
    /// and aborted records under read_committed. That is how a reader tells
    /// it has reached an end offset that a marker sits below, as librdkafka's
    /// `rd_kafka_position` (which stores control messages' offsets in
    /// `rd_kafka_op_handle_std`) and the Java `KafkaConsumer.position` do.
    /// `None` for a partition not owned or whose position is not known yet
    /// (before its committed offset or the reset policy was applied).
    fn position(&self, partition: &TopicPartition) -> TransportResult<Option<i64>>;

    /// The group metadata to pass to [`Producer::send_offsets_to_transaction`];
    /// `None` before the first assignment or without a group.
    fn group_metadata(&self) -> Option<GroupMetadata>;

    /// The first offset and the end offset of a partition. The end offset is
    /// the last stable offset under read_committed and the high watermark
    /// under read_uncommitted.
    async fn offsets_range(&mut self, partition: &TopicPartition) -> TransportResult<(i64, i64)>;

    /// Leaves the group (a clean revoke) and closes the consumer.
    async fn close(self) -> TransportResult<()>;
}

/// An idempotent (and, with a transactional id, transactional) producer with
/// acks=all.
pub trait Producer {
    /// Resolves when a sent record is acknowledged (acks=all), or fails.
    type Delivery: Future<Output = TransportResult<Delivered>>;

    /// Registers the transactional id with its coordinator, fencing every
    /// older incarnation and aborting what it left open. Call once, first.
    async fn init_transactions(&mut self) -> TransportResult<()>;

    async fn begin_transaction(&mut self) -> TransportResult<()>;

    /// Queues a record and returns at once; the returned future resolves when
    /// it is acknowledged. Within a transaction the record becomes visible to
    /// read_committed readers only when the transaction commits.
    fn send(&mut self, record: ProducerRecord) -> TransportResult<Self::Delivery>;

    /// Waits until every queued record is acknowledged or has failed; fails
    /// with the first error.
    async fn flush(&mut self) -> TransportResult<()>;

    /// Adds consumed positions to the current transaction, fenced by the
    /// group generation in `group`.
    async fn send_offsets_to_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
    ) -> TransportResult<()>;

    /// Flushes, then commits the current transaction (see the module doc).
    /// If any send of the transaction failed, the commit fails with
    /// [`ErrorKind::Abortable`] and nothing becomes visible.
    async fn commit_transaction(&mut self) -> TransportResult<()>;

    /// Aborts the current transaction; its records are never visible to
    /// read_committed readers.
    async fn abort_transaction(&mut self) -> TransportResult<()>;
}

/// A way to reach Kafka: the simulator's cluster or a real broker.
pub trait Transport {
    type Admin: Admin;
    type Consumer: Consumer;
    type Producer: Producer;

    /// `"sim"` or `"kafka"`: which implementation this is (for reports).
    fn name(&self) -> &'static str;

    async fn admin(&self) -> TransportResult<Self::Admin>;

    async fn consumer(&self, config: &ConsumerConfig) -> TransportResult<Self::Consumer>;

    async fn producer(&self, config: &ProducerConfig) -> TransportResult<Self::Producer>;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values computed with Kafka's Java client
    // (org.apache.kafka.common.utils.Utils.murmur2 / toPositive).
    #[test]
    fn murmur2_matches_the_java_client() {
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn partition_for_key_is_positive_modulo() {
        for key in [&b"u1"[..], b"", b"\xff\xfe", b"a-little-bit-long-string"] {
            let p = partition_for_key(key, 12);
            assert!((0..12).contains(&p));
        }
        assert_eq!(partition_for_key(b"21", 1), 0);
    }

    #[test]
    fn a_message_encodes_as_owned_bytes_would() {
        #[derive(Serialize)]
        struct Owned {
            topic: String,
            partition: i32,
            offset: i64,
            key: Option<Vec<u8>>,
            value: Option<Vec<u8>>,
            timestamp_ms: i64,
            headers: Vec<Header>,
        }
        let message = Message {
            topic: "t".into(),
            partition: 3,
            offset: 7,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            timestamp_ms: 11,
            headers: vec![("h".to_string(), b"v".to_vec())],
        };
        let owned = Owned {
            topic: "t".to_string(),
            partition: 3,
            offset: 7,
            key: Some(b"k".to_vec()),
            value: None,
            timestamp_ms: 11,
            headers: vec![("h".to_string(), b"v".to_vec())],
        };
        let encoded = postcard::to_stdvec(&message).unwrap();
        assert_eq!(encoded, postcard::to_stdvec(&owned).unwrap());
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
        assert_eq!(postcard::from_bytes::<Message>(&encoded).unwrap(), message);
    }

    #[test]
    fn error_codes_round_trip_through_wire_numbers() {
        for code in [3_i16, 6, 22, 25, 27, 47, 48, 51, 88, 90, 9999] {
            assert_eq!(ErrorCode::from_kafka_code(code).kafka_code(), Some(code));
        }
    }

    #[test]
    fn every_named_code_round_trips_and_no_wire_number_is_named_twice() {
        let mut numbers = std::collections::BTreeSet::new();
        for &(code, number) in ErrorCode::WIRE_CODES {
            assert!(!matches!(code, ErrorCode::Other(_)), "{code:?}");
            assert_eq!(code.kafka_code(), Some(number), "{code:?}");
            assert_eq!(ErrorCode::from_kafka_code(number), code, "{number}");
            assert!(numbers.insert(number), "wire number {number} named twice");
        }
        // Every wire number a Kafka error can have: the named ones map to
        // their variant, the others to `Other` and back to themselves.
        for number in i16::MIN..=i16::MAX {
            let code = ErrorCode::from_kafka_code(number);
            assert_eq!(code.kafka_code(), Some(number), "{code:?}");
            assert_eq!(
                matches!(code, ErrorCode::Other(_)),
                !numbers.contains(&number),
                "{number}"
            );
        }
        for code in [
            ErrorCode::BrokerNotAvailable,
            ErrorCode::TimedOut,
            ErrorCode::InvalidRecord,
            ErrorCode::InvalidState,
        ] {
            assert_eq!(code.kafka_code(), None, "{code:?} is client-side");
        }
    }
}
