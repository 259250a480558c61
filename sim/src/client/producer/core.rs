//! The producer's state machine, free of I/O: the record accumulator,
//! per-partition sequence numbers and in-flight batches, retries, delivery
//! timeouts and the transaction state. The async shell (`super`) feeds it
//! broker answers and sends the batches it drains; tests feed it fake
//! answers.
//!
//! Rules kept here (those of Kafka's idempotent producer):
//! - a partition's records are batched in send order, and a batch gets the
//!   next sequence numbers of its partition when it is first drained;
//! - at most `max_in_flight` batches of a partition are in flight;
//! - a batch that fails with a retriable error is sent again with the same
//!   sequence numbers (the broker de-duplicates); while one is waiting for
//!   a retry, only the oldest unacknowledged batch of the partition may be
//!   (re)sent, so the broker sees sequences in order;
//! - a batch to retry waits until nothing else of its partition is in
//!   flight (librdkafka's `rd_kafka_idemp_drain_toppar`, "drain before
//!   retrying");
//! - OUT_OF_ORDER_SEQUENCE_NUMBER is judged as librdkafka 2.x judges it
//!   (`rd_kafka_handle_idempotent_Produce_error`): for the batch whose first
//!   sequence is the next one the producer expects to be acknowledged (the
//!   head of line) producer and broker disagree, a fatal error for both
//!   kinds of producer (`rd_kafka_idemp_set_fatal_error`); for a batch
//!   behind an unacknowledged one, an earlier batch may have failed: a
//!   transactional producer's transaction becomes abortable and its epoch is
//!   bumped after the abort (`rd_kafka_idemp_drain_epoch_bump` ->
//!   `rd_kafka_txn_set_abortable_error_with_bump`), an idempotent producer
//!   stops sending, waits for what is in flight, bumps its epoch itself and
//!   sends the unacknowledged batches again with sequences from 0
//!   (`rd_kafka_idemp_drain_epoch_bump` -> `rd_kafka_idemp_drain_done`);
//! - a batch that fails for good leaves a gap in the sequence: every later
//!   batch of the partition fails too (one whose answer is still out is
//!   resolved by that answer if it was appended), and the producer gets a
//!   new producer id (idempotent) or bumps its epoch when the transaction is
//!   aborted (transactional), as KIP-360 clients do;
//! - fencing errors are fatal: everything queued fails, every later call
//!   fails with [`ErrorKind::Fenced`];
//! - in a transaction, any failed record makes the transaction abortable:
//!   unsent records fail at once, commit fails with [`ErrorKind::Abortable`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use eddyline_engine::transport::{
    Delivered, ErrorCode, ErrorKind, TopicPartition, TransportError, TransportResult,
    partition_for_key,
};
use tokio::sync::oneshot;

use crate::client::errors;
use crate::protocol::{BrokerId, ProduceBatch, ProducerEpoch, ProducerId, RecordData};

/// Where a record's delivery outcome goes.
pub(crate) type DeliverySlot = oneshot::Sender<TransportResult<Delivered>>;

/// The producer id and epoch the broker gave this producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub id: ProducerId,
    pub epoch: ProducerEpoch,
}

/// The transaction state (transactional producers only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TxnState {
    Uninitialized,
    Ready,
    InTransaction,
    Committing,
    Aborting,
    /// A send (or offset commit) of the transaction failed: only abort is
    /// possible.
    Abortable(TransportError),
}

/// The settings the state machine needs, in ms.
#[derive(Clone, Debug)]
pub(crate) struct CoreSettings {
    pub transactional: bool,
    pub linger_ms: u64,
    pub delivery_timeout_ms: u64,
    /// How long a record waits for a topic the metadata says is missing.
    pub topic_missing_timeout_ms: u64,
    pub max_in_flight: usize,
    pub batch_max_records: usize,
    /// A batch takes no further record once it would exceed this many bytes
    /// (see `SimClientOptions::batch_max_bytes`); its first record always
    /// goes in, however large.
    pub batch_max_bytes: usize,
    /// librdkafka's `queue.buffering.max.messages` (see
    /// `SimClientOptions::queue_buffering_max_messages`).
    pub buffered_records_max: usize,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
}

struct PendingRecord {
    record: RecordData,
    slot: DeliverySlot,
    enqueued_ms: u64,
    /// What the record adds to a batch ([`record_batch_bytes`]).
    batch_bytes: usize,
}

/// A RecordBatch v2's header (Kafka's `DefaultRecordBatch.RECORD_BATCH_OVERHEAD`).
const BATCH_HEADER_BYTES: usize = 61;
/// What a record takes in a batch beyond its key, value and headers, and a
/// header beyond its name and value: the simulated broker's estimate
/// (`broker::log::batch_size_bytes`), which it compares with
/// `message.max.bytes`.
const BATCH_RECORD_OVERHEAD_BYTES: usize = 20;
const RECORD_HEADER_OVERHEAD_BYTES: usize = 2;

/// The bytes a record adds to a batch, counted as the simulated broker
/// counts them when it checks a batch against `message.max.bytes`
/// (`broker::log::batch_size_bytes`; a unit test holds the two equal), so a
/// batch the producer bounds is never refused for its size unless one
/// record alone is too large.
fn record_batch_bytes(record: &RecordData) -> usize {
    BATCH_RECORD_OVERHEAD_BYTES
        + record.key.as_ref().map_or(0, Vec::len)
        + record.value.as_ref().map_or(0, Vec::len)
        + record
            .headers
            .iter()
            .map(|(name, value)| RECORD_HEADER_OVERHEAD_BYTES + name.len() + value.len())
            .sum::<usize>()
}

struct UnassignedRecord {
    partition: Option<i32>,
    pending: PendingRecord,
}

fn pending_key(pending: &PendingRecord) -> Option<&[u8]> {
    pending.record.key.as_deref()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchState {
    InFlight,
    Retry { not_before_ms: u64 },
}

struct Batch {
    id: u64,
    base_sequence: i32,
    identity: Identity,
    records: Vec<RecordData>,
    slots: Vec<DeliverySlot>,
    deadline_ms: u64,
    state: BatchState,
    attempts: u32,
    /// An earlier batch of the partition failed for good: this one fails
    /// with this error unless its answer says it was appended.
    doomed: Option<TransportError>,
}

#[derive(Default)]
struct PartitionQueue {
    /// Changed only through `push_pending`, `pop_pending` and
    /// `take_pending`, which keep `pending_bytes`.
    pending: VecDeque<PendingRecord>,
    /// The sum of the pending records' `batch_bytes`.
    pending_bytes: usize,
    next_sequence: i32,
    /// The first sequence not acknowledged yet (librdkafka's
    /// `rktp_eos.next_ack_seq`): a batch starting here is the head of line.
    /// Moves only with acknowledgements, so a batch behind one that failed
    /// for good is still behind.
    next_ack_sequence: i32,
    /// Sequenced, unacknowledged batches in sequence order.
    batches: VecDeque<Batch>,
}

impl PartitionQueue {
    fn push_pending(&mut self, pending: PendingRecord) {
        self.pending_bytes += pending.batch_bytes;
        self.pending.push_back(pending);
    }

    fn pop_pending(&mut self) -> Option<PendingRecord> {
        let pending = self.pending.pop_front()?;
        self.pending_bytes -= pending.batch_bytes;
        Some(pending)
    }

    fn take_pending(&mut self) -> VecDeque<PendingRecord> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }
}

/// One batch to put in a Produce request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PlannedBatch {
    pub partition: TopicPartition,
    pub batch_id: u64,
    pub batch: ProduceBatch,
}

/// One Produce request: at most one batch per partition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProducePlan {
    pub broker: BrokerId,
    pub batches: Vec<PlannedBatch>,
}

/// A broker's answer for one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    Appended { base_offset: i64 },
    Failed(ErrorCode),
}

/// What the shell should do after an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FollowUp {
    /// The partition's leader looks stale: forget it and refresh metadata.
    pub refresh_leader: bool,
}

pub(crate) struct ProducerCore {
    settings: CoreSettings,
    identity: Option<Identity>,
    /// Idempotent producer: get a new producer id once nothing is in flight.
    identity_reset_pending: bool,
    /// Transactional producer: bump the epoch when the transaction aborts.
    epoch_bump_needed: bool,
    /// Idempotent producer: a batch was refused out of order behind an
    /// unacknowledged one; nothing is sent until nothing is in flight, then
    /// the epoch is bumped and every unacknowledged batch renumbered
    /// (librdkafka's DRAIN_BUMP state).
    epoch_bump_draining: bool,
    fatal: Option<TransportError>,
    txn: TxnState,
    txn_partitions: BTreeSet<TopicPartition>,
    txn_adding: BTreeSet<TopicPartition>,
    txn_offsets_added: bool,
    /// An AddPartitionsToTxn got no answer: the coordinator may know the
    /// transaction, so it must be ended explicitly.
    txn_maybe_started: bool,
    unassigned: BTreeMap<String, VecDeque<UnassignedRecord>>,
    partitions: BTreeMap<TopicPartition, PartitionQueue>,
    next_batch_id: u64,
    /// The first failure since the last flush finished.
    failure_since_flush: Option<TransportError>,
    flushing: u32,
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap at
/// `i32::MAX` back to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    assert!(
        sequence >= 0 && increment >= 0,
        "sequences are non-negative"
    );
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

impl ProducerCore {
    pub(crate) fn new(settings: CoreSettings) -> Self {
        assert!(settings.max_in_flight > 0, "max_in_flight must be positive");
        assert!(
            settings.batch_max_records > 0,
            "batch_max_records must be positive"
        );
        assert!(
            settings.batch_max_bytes > 0,
            "batch_max_bytes must be positive"
        );
        let txn = if settings.transactional {
            TxnState::Uninitialized
        } else {
            TxnState::Ready
        };
        Self {
            settings,
            identity: None,
            identity_reset_pending: false,
            epoch_bump_needed: false,
            epoch_bump_draining: false,
            fatal: None,
            txn,
            txn_partitions: BTreeSet::new(),
            txn_adding: BTreeSet::new(),
            txn_offsets_added: false,
            txn_maybe_started: false,
            unassigned: BTreeMap::new(),
            partitions: BTreeMap::new(),
            next_batch_id: 0,
            failure_since_flush: None,
            flushing: 0,
        }
    }

    // ---- identity ------------------------------------------------------

    pub(crate) fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// Idempotent producer: whether the shell should ask for a producer id
    /// now (none yet, or a reset is due and nothing is in flight).
    pub(crate) fn wants_identity(&self) -> bool {
        if self.settings.transactional || self.fatal.is_some() {
            return false;
        }
        self.identity.is_none() || (self.identity_reset_pending && !self.has_batches())
    }

    /// A new producer id or epoch: sequences restart at 0.
    pub(crate) fn set_identity(&mut self, identity: Identity) {
        assert!(
            !self.has_batches(),
            "producer identity changed with batches in flight"
        );
        self.identity = Some(identity);
        self.identity_reset_pending = false;
        self.epoch_bump_needed = false;
        self.epoch_bump_draining = false;
        for queue in self.partitions.values_mut() {
            queue.next_sequence = 0;
            queue.next_ack_sequence = 0;
        }
    }

    pub(crate) fn epoch_bump_needed(&self) -> bool {
        self.epoch_bump_needed
    }

    // ---- state checks --------------------------------------------------

    pub(crate) fn fatal(&self) -> Option<&TransportError> {
        self.fatal.as_ref()
    }

    pub(crate) fn txn_state(&self) -> &TxnState {
        &self.txn
    }

    /// Whether `send` may queue a record now.
    pub(crate) fn check_can_send(&self) -> TransportResult<()> {
        if let Some(fatal) = &self.fatal {
            return Err(fatal.clone());
        }
        if !self.settings.transactional {
            return Ok(());
        }
        match &self.txn {
            TxnState::InTransaction => Ok(()),
            TxnState::Abortable(error) => Err(abortable(error)),
            TxnState::Uninitialized => Err(errors::invalid_state(
                "send before init_transactions on a transactional producer",
            )),
            TxnState::Ready => Err(errors::invalid_state(
                "send outside a transaction on a transactional producer",
            )),
            TxnState::Committing | TxnState::Aborting => Err(errors::invalid_state(
                "send while the transaction is completing",
            )),
        }
    }

    // ---- queueing ------------------------------------------------------

    /// Queues a validated record. `partition_count`: the topic's partition
    /// count if the metadata knows it; without it (or while earlier records
    /// of the topic wait for it) the record waits, in order, for
    /// [`ProducerCore::assign_unassigned`].
    pub(crate) fn enqueue(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        record: RecordData,
        slot: DeliverySlot,
        now_ms: u64,
        partition_count: Option<i32>,
    ) {
        assert!(
            partition.is_some() || record.key.is_some(),
            "records without key and partition are refused before queueing"
        );
        let pending = PendingRecord {
            batch_bytes: record_batch_bytes(&record),
            record,
            slot,
            enqueued_ms: now_ms,
        };
        let waiting = self.unassigned.get(topic).is_some_and(|q| !q.is_empty());
        match partition_count {
            Some(count) if !waiting => {
                let chosen = choose_partition(partition, pending_key(&pending), count);
                assert!(
                    (0..count).contains(&chosen),
                    "partition {chosen} checked against count {count} before queueing"
                );
                self.partitions
                    .entry(TopicPartition::new(topic, chosen))
                    .or_default()
                    .push_pending(pending);
            }
            _ => {
                self.unassigned
                    .entry(topic.to_string())
                    .or_default()
                    .push_back(UnassignedRecord { partition, pending });
            }
        }
    }

    /// The records the producer holds until their delivery is reported:
    /// waiting for metadata, queued, and in unacknowledged batches.
    pub(crate) fn buffered_records(&self) -> usize {
        let unassigned: usize = self.unassigned.values().map(|queue| queue.len()).sum();
        let assigned: usize = self
            .partitions
            .values()
            .map(|queue| {
                queue.pending.len()
                    + queue
                        .batches
                        .iter()
                        .map(|batch| batch.slots.len())
                        .sum::<usize>()
            })
            .sum();
        unassigned + assigned
    }

    /// Whether one more record fits in the buffer: else QUEUE_FULL, a
    /// retriable error, at once (librdkafka's `rd_kafka_producev` without
    /// `RD_KAFKA_MSG_F_BLOCK`; the record is not taken, so sending it again
    /// later cannot duplicate it).
    pub(crate) fn check_buffer_space(&self) -> TransportResult<()> {
        let buffered = self.buffered_records();
        let buffered_max = self.settings.buffered_records_max;
        if buffered < buffered_max {
            return Ok(());
        }
        Err(TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::Other(errors::QUEUE_FULL),
            format!(
                "the producer's buffer is full: {buffered} records \
                 (queue.buffering.max.messages {buffered_max}) wait for delivery"
            ),
        ))
    }

    /// Topics whose records wait for metadata.
    pub(crate) fn has_unassigned(&self) -> bool {
        self.unassigned.values().any(|queue| !queue.is_empty())
    }

    /// Topics whose records wait for metadata.
    pub(crate) fn unassigned_topics(&self) -> Vec<String> {
        self.unassigned
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Moves a topic's waiting records to their partitions now that its
    /// partition count is known; a record for a partition the topic does not
    /// have fails.
    pub(crate) fn assign_unassigned(&mut self, topic: &str, partition_count: i32) {
        assert!(partition_count > 0, "a topic has at least one partition");
        let Some(queue) = self.unassigned.remove(topic) else {
            return;
        };
        for waiting in queue {
            let chosen = choose_partition(
                waiting.partition,
                pending_key(&waiting.pending),
                partition_count,
            );
            if (0..partition_count).contains(&chosen) {
                self.partitions
                    .entry(TopicPartition::new(topic, chosen))
                    .or_default()
                    .push_pending(waiting.pending);
            } else {
                let error = TransportError::new(
                    ErrorKind::Retriable,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{topic} has {partition_count} partitions, no partition {chosen}"),
                );
                let _ = waiting.pending.slot.send(Err(error.clone()));
                self.record_failure(error);
            }
        }
    }

    // ---- transactions --------------------------------------------------

    /// Partitions with data in the current transaction that the coordinator
    /// does not know yet (and that are not being added).
    pub(crate) fn partitions_to_add(&self) -> Vec<TopicPartition> {
        if !self.settings.transactional
            || !matches!(self.txn, TxnState::InTransaction | TxnState::Committing)
            || self.fatal.is_some()
        {
            return Vec::new();
        }
        self.partitions
            .iter()
            .filter(|(partition, queue)| {
                !queue.pending.is_empty()
                    && !self.txn_partitions.contains(*partition)
                    && !self.txn_adding.contains(*partition)
            })
            .map(|(partition, _)| partition.clone())
            .collect()
    }

    pub(crate) fn start_adding(&mut self, partitions: &[TopicPartition]) {
        self.txn_adding.extend(partitions.iter().cloned());
    }

    /// AddPartitionsToTxn's outcome for a partition: `None` added; `Some`
    /// failed for good (retriable errors are retried by the shell).
    pub(crate) fn partition_added(
        &mut self,
        partition: &TopicPartition,
        error: Option<TransportError>,
    ) {
        self.txn_adding.remove(partition);
        match error {
            None => {
                self.txn_partitions.insert(partition.clone());
            }
            Some(error) if error.kind == ErrorKind::Fenced || error.kind == ErrorKind::Fatal => {
                self.set_fatal(error)
            }
            Some(error) => self.record_failure(error),
        }
    }

    /// The AddPartitionsToTxn attempt ended without an answer for these
    /// partitions: they may be tried again.
    pub(crate) fn adding_abandoned(&mut self, partitions: &[TopicPartition]) {
        for partition in partitions {
            self.txn_adding.remove(partition);
        }
        self.txn_maybe_started = true;
    }

    pub(crate) fn txn_has_content(&self) -> bool {
        !self.txn_partitions.is_empty() || self.txn_offsets_added || self.txn_maybe_started
    }

    pub(crate) fn set_offsets_added(&mut self) {
        self.txn_offsets_added = true;
    }

    pub(crate) fn initialized(&mut self, identity: Identity) {
        assert_eq!(self.txn, TxnState::Uninitialized, "initialized twice");
        self.set_identity(identity);
        self.txn = TxnState::Ready;
    }

    pub(crate) fn begin(&mut self) -> TransportResult<()> {
        self.check_not_fatal()?;
        match &self.txn {
            TxnState::Ready => {
                self.txn = TxnState::InTransaction;
                self.txn_partitions.clear();
                self.txn_adding.clear();
                self.txn_offsets_added = false;
                self.txn_maybe_started = false;
                Ok(())
            }
            TxnState::Uninitialized => Err(errors::invalid_state(
                "begin_transaction before init_transactions",
            )),
            TxnState::Abortable(error) => Err(abortable(error)),
            state => Err(errors::invalid_state(format!(
                "begin_transaction while {}",
                describe(state)
            ))),
        }
    }

    /// Checks that offsets may be added to the current transaction.
    pub(crate) fn check_in_transaction(&self, call: &str) -> TransportResult<()> {
        self.check_not_fatal()?;
        match &self.txn {
            TxnState::InTransaction => Ok(()),
            TxnState::Abortable(error) => Err(abortable(error)),
            state => Err(errors::invalid_state(format!(
                "{call} while {}",
                describe(state)
            ))),
        }
    }

    /// Enters Committing (also to retry a commit that timed out).
    pub(crate) fn start_commit(&mut self) -> TransportResult<()> {
        self.check_not_fatal()?;
        match &self.txn {
            TxnState::InTransaction | TxnState::Committing => {
                self.txn = TxnState::Committing;
                Ok(())
            }
            TxnState::Abortable(error) => Err(abortable(error)),
            state => Err(errors::invalid_state(format!(
                "commit_transaction while {}",
                describe(state)
            ))),
        }
    }

    /// Enters Aborting: records not yet sent fail, as do batches waiting
    /// for a retry (their sequences are then unresolved: the epoch is
    /// bumped after the abort).
    pub(crate) fn start_abort(&mut self) -> TransportResult<()> {
        self.check_not_fatal()?;
        match &self.txn {
            TxnState::InTransaction
            | TxnState::Committing
            | TxnState::Aborting
            | TxnState::Abortable(_) => {
                self.txn = TxnState::Aborting;
                let error = TransportError::new(
                    ErrorKind::Abortable,
                    ErrorCode::Other(-1),
                    "the transaction was aborted before the record was sent",
                );
                self.fail_unsent(&error);
                Ok(())
            }
            state => Err(errors::invalid_state(format!(
                "abort_transaction while {}",
                describe(state)
            ))),
        }
    }

    /// The transaction ended (committed or aborted) at the coordinator.
    pub(crate) fn transaction_completed(&mut self) {
        assert!(
            matches!(self.txn, TxnState::Committing | TxnState::Aborting),
            "transaction completed while {}",
            describe(&self.txn)
        );
        self.txn = TxnState::Ready;
        self.txn_partitions.clear();
        self.txn_adding.clear();
        self.txn_offsets_added = false;
        self.txn_maybe_started = false;
    }

    /// A failure that makes the current transaction abortable (a failed
    /// offset commit, for example).
    pub(crate) fn make_abortable(&mut self, error: TransportError) {
        self.record_failure(error);
    }

    fn check_not_fatal(&self) -> TransportResult<()> {
        match &self.fatal {
            Some(fatal) => Err(fatal.clone()),
            None => Ok(()),
        }
    }

    // ---- draining ------------------------------------------------------

    pub(crate) fn begin_flush(&mut self) {
        self.flushing += 1;
    }

    /// Ends a flush; the first failure since the previous flush ended.
    pub(crate) fn end_flush(&mut self) -> Option<TransportError> {
        assert!(self.flushing > 0, "end_flush without begin_flush");
        self.flushing -= 1;
        self.failure_since_flush.take()
    }

    /// Whether a batch that failed with a retriable error will be sent
    /// again (not while a transaction is aborting or must abort).
    fn retries_allowed(&self) -> bool {
        self.fatal.is_none()
            && (!self.settings.transactional
                || matches!(self.txn, TxnState::InTransaction | TxnState::Committing))
    }

    fn sending_allowed(&self) -> bool {
        if self.fatal.is_some() || self.identity.is_none() {
            return false;
        }
        !self.settings.transactional
            || matches!(self.txn, TxnState::InTransaction | TxnState::Committing)
    }

    /// The batches to send now, grouped into Produce requests per broker.
    pub(crate) fn drain(
        &mut self,
        now_ms: u64,
        leader_of: &dyn Fn(&TopicPartition) -> Option<BrokerId>,
    ) -> Vec<ProducePlan> {
        if !self.sending_allowed() || !self.epoch_bump_drained() {
            return Vec::new();
        }
        let identity = self.identity.expect("sending requires an identity");
        let settings = self.settings.clone();
        let flushing = self.flushing > 0 || self.txn == TxnState::Committing;
        let new_batches_allowed = !self.identity_reset_pending;
        // Per broker: the k-th request gets the k-th batch of each partition.
        let mut requests: BTreeMap<BrokerId, Vec<Vec<PlannedBatch>>> = BTreeMap::new();
        for (partition, queue) in self.partitions.iter_mut() {
            if settings.transactional && !self.txn_partitions.contains(partition) {
                continue;
            }
            if queue.pending.is_empty() && queue.batches.is_empty() {
                continue;
            }
            let retry_waiting = queue
                .batches
                .iter()
                .any(|batch| matches!(batch.state, BatchState::Retry { .. }));
            let in_flight = queue
                .batches
                .iter()
                .any(|batch| batch.state == BatchState::InFlight);
            // Whether the loops below would plan anything (the leader is
            // looked up only then). A retry waits for the partition's
            // requests in flight to be answered first.
            let sendable = if retry_waiting {
                !in_flight
                    && queue.batches.front().is_some_and(|head| {
                        matches!(head.state, BatchState::Retry { not_before_ms } if not_before_ms <= now_ms)
                    })
            } else {
                new_batches_allowed
                    && queue.batches.len() < settings.max_in_flight
                    && front_ready(queue, &settings, flushing, now_ms)
            };
            if !sendable {
                continue;
            }
            let Some(broker) = leader_of(partition) else {
                continue;
            };
            let mut planned: Vec<PlannedBatch> = Vec::new();
            if retry_waiting {
                // Only the oldest unacknowledged batch may be resent.
                if let Some(head) = queue.batches.front_mut() {
                    if let BatchState::Retry { not_before_ms } = head.state {
                        if not_before_ms <= now_ms {
                            head.state = BatchState::InFlight;
                            head.attempts += 1;
                            planned.push(plan(partition, head, settings.transactional));
                        }
                    }
                }
            } else if new_batches_allowed {
                while queue.batches.len() < settings.max_in_flight
                    && front_ready(queue, &settings, flushing, now_ms)
                {
                    let batch = seal_batch(queue, &settings, identity, self.next_batch_id);
                    self.next_batch_id += 1;
                    planned.push(plan(partition, &batch, settings.transactional));
                    queue.batches.push_back(batch);
                }
            }
            let slots = requests.entry(broker).or_default();
            for (index, batch) in planned.into_iter().enumerate() {
                if slots.len() <= index {
                    slots.push(Vec::new());
                }
                slots[index].push(batch);
            }
        }
        requests
            .into_iter()
            .flat_map(|(broker, batches)| {
                batches
                    .into_iter()
                    .map(move |batches| ProducePlan { broker, batches })
            })
            .collect()
    }

    // ---- answers -------------------------------------------------------

    /// Applies the broker's answer for one batch.
    pub(crate) fn on_batch_outcome(
        &mut self,
        partition: &TopicPartition,
        batch_id: u64,
        outcome: BatchOutcome,
        now_ms: u64,
    ) -> FollowUp {
        let Some(queue) = self.partitions.get_mut(partition) else {
            return FollowUp::default();
        };
        let Some(index) = queue.batches.iter().position(|batch| batch.id == batch_id) else {
            // Already failed (fencing, abort): nothing more to say.
            return FollowUp::default();
        };
        assert_eq!(
            queue.batches[index].state,
            BatchState::InFlight,
            "an answer for batch {batch_id} of {partition} that is not in flight"
        );
        let code = match outcome {
            BatchOutcome::Appended { base_offset } => {
                self.complete_appended(partition, index, base_offset);
                return FollowUp::default();
            }
            BatchOutcome::Failed(ErrorCode::DuplicateSequenceNumber) => {
                // The broker already has it; Kafka's client reports success
                // (with an unknown offset if the broker gives none).
                self.complete_appended(partition, index, -1);
                return FollowUp::default();
            }
            BatchOutcome::Failed(code) => code,
        };
        let (doomed, deadline_ms, attempts) = {
            let batch = &queue.batches[index];
            (batch.doomed.clone(), batch.deadline_ms, batch.attempts)
        };
        if let Some(doomed) = doomed {
            self.fail_batch(partition, index, doomed);
            return FollowUp::default();
        }
        if errors::is_fencing_error(code) {
            self.fenced_while_producing(partition, index, code);
            return FollowUp::default();
        }
        if code == ErrorCode::OutOfOrderSequenceNumber {
            self.out_of_order(partition, index, now_ms);
            return FollowUp::default();
        }
        if errors::is_retriable(code) {
            let follow_up = FollowUp {
                refresh_leader: errors::is_leadership_error(code),
            };
            if !self.retries_allowed() {
                // The transaction is being aborted (or must be): nothing
                // will send this batch again. Its fate is unknown, so the
                // epoch is bumped after the abort.
                let error = TransportError::new(
                    ErrorKind::Abortable,
                    code,
                    format!(
                        "the transaction was aborted before the batch to {partition} was acknowledged (last error {code:?})"
                    ),
                );
                self.fail_for_good(partition, index, error);
            } else if deadline_ms <= now_ms {
                let error = TransportError::new(
                    ErrorKind::Timeout,
                    ErrorCode::TimedOut,
                    format!(
                        "delivery to {partition} timed out after {attempts} attempts (last error {code:?})"
                    ),
                );
                self.fail_for_good(partition, index, error);
            } else {
                let backoff = self.retry_backoff_ms(attempts);
                let batch = &mut self.partitions.get_mut(partition).expect("queue").batches[index];
                batch.state = BatchState::Retry {
                    not_before_ms: now_ms + backoff,
                };
            }
            return follow_up;
        }
        let error = TransportError::new(
            self.permanent_kind(),
            code,
            format!("producing to {partition} failed: {code:?}"),
        );
        self.fail_for_good(partition, index, error);
        FollowUp::default()
    }

    /// INVALID_PRODUCER_EPOCH (or another fencing code) for a batch: the
    /// batch fails with it and the producer is fenced. For a transactional
    /// producer librdkafka reports the fencing itself as `_FENCED`
    /// (`rd_kafka_handle_Produce_error`: `rd_kafka_txn_set_fatal_error(..,
    /// RD_KAFKA_RESP_ERR__FENCED, ..)`), which the rdkafka transport maps to
    /// PRODUCER_FENCED: later calls fail with that code.
    fn fenced_while_producing(
        &mut self,
        partition: &TopicPartition,
        index: usize,
        code: ErrorCode,
    ) {
        let queue = self.partitions.get_mut(partition).expect("queue exists");
        let batch = queue.batches.remove(index).expect("index is valid");
        let batch_error = TransportError::new(
            ErrorKind::Fenced,
            code,
            format!("producer fenced while producing to {partition}: {code:?}"),
        );
        for slot in batch.slots {
            let _ = slot.send(Err(batch_error.clone()));
        }
        let fatal_code = if self.settings.transactional && code == ErrorCode::InvalidProducerEpoch {
            ErrorCode::ProducerFenced
        } else {
            code
        };
        self.set_fatal(TransportError::new(
            ErrorKind::Fenced,
            fatal_code,
            format!(
                "the producer was fenced by a newer instance: producing to {partition} got {code:?}"
            ),
        ));
    }

    /// OUT_OF_ORDER_SEQUENCE_NUMBER for the batch at `index`, as librdkafka
    /// 2.x judges it in `rd_kafka_handle_idempotent_Produce_error`: by where
    /// the batch starts relative to the next sequence the producer expects
    /// to be acknowledged.
    fn out_of_order(&mut self, partition: &TopicPartition, index: usize, now_ms: u64) {
        let queue = self.partitions.get(partition).expect("queue exists");
        let batch = &queue.batches[index];
        let (base_sequence, deadline_ms) = (batch.base_sequence, batch.deadline_ms);
        let code = ErrorCode::OutOfOrderSequenceNumber;
        if base_sequence == queue.next_ack_sequence {
            // The head of line: the broker lost or rewrote what this
            // producer wrote. Ordering and exactly-once can no longer be
            // reasoned about (`rd_kafka_idemp_set_fatal_error`: a fatal
            // error, for a transactional producer through
            // `rd_kafka_txn_set_fatal_error`).
            self.set_fatal(TransportError::new(
                ErrorKind::Fatal,
                code,
                format!(
                    "producing to {partition} failed: the broker refused sequence {base_sequence}, the next one it should accept (sequence desynchronization)"
                ),
            ));
        } else if self.settings.transactional {
            // Behind an unacknowledged batch, which may have failed: the
            // transaction cannot commit and the epoch is bumped after the
            // abort (`rd_kafka_idemp_drain_epoch_bump` with a transaction:
            // `rd_kafka_txn_set_abortable_error_with_bump`).
            let error = TransportError::new(
                ErrorKind::Abortable,
                code,
                format!(
                    "producing to {partition} failed: sequence {base_sequence} refused behind an unacknowledged batch (skipped sequence numbers)"
                ),
            );
            self.fail_for_good(partition, index, error);
        } else if deadline_ms <= now_ms {
            let error = errors::timed_out(format!(
                "delivery to {partition} timed out (last error {code:?})"
            ));
            self.fail_for_good(partition, index, error);
        } else {
            // Idempotent: sent again, without counting an attempt, once
            // the epoch is bumped (`rd_kafka_idemp_drain_epoch_bump`).
            let queue = self.partitions.get_mut(partition).expect("queue exists");
            queue.batches[index].state = BatchState::Retry {
                not_before_ms: now_ms,
            };
            self.epoch_bump_draining = true;
        }
    }

    /// Idempotent producer: whether sending may go on. During an epoch-bump
    /// drain nothing is sent; once no batch is in flight the producer bumps
    /// its own epoch (`rd_kafka_idemp_drain_done`: `rd_kafka_pid_bump`, the
    /// epoch + 1 wrapping at `i16::MAX` like librdkafka) and renumbers every
    /// unacknowledged batch from sequence 0, partition by partition.
    fn epoch_bump_drained(&mut self) -> bool {
        if !self.epoch_bump_draining {
            return true;
        }
        let in_flight = self.partitions.values().any(|queue| {
            queue
                .batches
                .iter()
                .any(|batch| batch.state == BatchState::InFlight)
        });
        if in_flight {
            return false;
        }
        let identity = self.identity.expect("batches were sent with an identity");
        let bumped = Identity {
            id: identity.id,
            epoch: ((i32::from(identity.epoch) + 1) & i32::from(i16::MAX)) as ProducerEpoch,
        };
        self.identity = Some(bumped);
        for queue in self.partitions.values_mut() {
            let mut sequence = 0;
            for batch in queue.batches.iter_mut() {
                batch.identity = bumped;
                batch.base_sequence = sequence;
                let count = i32::try_from(batch.records.len()).expect("batch size fits in i32");
                sequence = increment_sequence(sequence, count);
            }
            queue.next_sequence = sequence;
            queue.next_ack_sequence = 0;
        }
        self.epoch_bump_draining = false;
        true
    }

    fn retry_backoff_ms(&self, attempts: u32) -> u64 {
        let shift = attempts.saturating_sub(1).min(16);
        (self.settings.retry_backoff_ms << shift).min(self.settings.retry_backoff_max_ms)
    }

    /// The kind of a permanent record failure: in a transaction it makes
    /// the transaction abortable; otherwise the record cannot be sent.
    fn permanent_kind(&self) -> ErrorKind {
        if self.settings.transactional {
            ErrorKind::Abortable
        } else {
            ErrorKind::Fatal
        }
    }

    fn complete_appended(&mut self, partition: &TopicPartition, index: usize, base_offset: i64) {
        let queue = self.partitions.get_mut(partition).expect("queue exists");
        let batch = queue.batches.remove(index).expect("index is valid");
        let count = i32::try_from(batch.slots.len()).expect("batch size fits in i32");
        queue.next_ack_sequence = increment_sequence(batch.base_sequence, count);
        for (offset_in_batch, slot) in batch.slots.into_iter().enumerate() {
            let offset = if base_offset >= 0 {
                base_offset + offset_in_batch as i64
            } else {
                -1
            };
            let _ = slot.send(Ok(Delivered {
                topic: partition.topic.clone(),
                partition: partition.partition,
                offset,
            }));
        }
    }

    fn fail_batch(&mut self, partition: &TopicPartition, index: usize, error: TransportError) {
        let queue = self.partitions.get_mut(partition).expect("queue exists");
        let batch = queue.batches.remove(index).expect("index is valid");
        for slot in batch.slots {
            let _ = slot.send(Err(error.clone()));
        }
        self.record_failure(error);
    }

    /// A sequenced batch failed for good: it fails, every later batch of the
    /// partition is doomed, and the sequence must be reset.
    fn fail_for_good(&mut self, partition: &TopicPartition, index: usize, error: TransportError) {
        let queue = self.partitions.get_mut(partition).expect("queue exists");
        let later_error = TransportError::new(
            error.kind,
            error.code,
            format!("an earlier batch to {partition} failed: {}", error.message),
        );
        // Doom later batches; those waiting for a retry fail right away.
        let mut later_retrying = Vec::new();
        for (later_index, batch) in queue.batches.iter_mut().enumerate().skip(index + 1) {
            batch.doomed = Some(later_error.clone());
            if matches!(batch.state, BatchState::Retry { .. }) {
                later_retrying.push(later_index);
            }
        }
        for later_index in later_retrying.into_iter().rev() {
            self.fail_batch(partition, later_index, later_error.clone());
        }
        self.fail_batch(partition, index, error);
        self.sequence_broken();
    }

    fn sequence_broken(&mut self) {
        if self.settings.transactional {
            self.epoch_bump_needed = true;
        } else {
            self.identity_reset_pending = true;
        }
    }

    /// Remembers a failure for flush and, in a transaction, makes it
    /// abortable (failing every record not sent yet).
    fn record_failure(&mut self, error: TransportError) {
        if self.failure_since_flush.is_none() {
            self.failure_since_flush = Some(error.clone());
        }
        if self.settings.transactional
            && matches!(self.txn, TxnState::InTransaction | TxnState::Committing)
        {
            let reason = abortable(&error);
            self.txn = TxnState::Abortable(reason.clone());
            self.fail_unsent(&TransportError::new(
                ErrorKind::Abortable,
                reason.code,
                format!("the transaction cannot commit: {}", reason.message),
            ));
        }
    }

    /// Fails records not sent yet and batches waiting for a retry.
    fn fail_unsent(&mut self, error: &TransportError) {
        for (_, queue) in std::mem::take(&mut self.unassigned) {
            for waiting in queue {
                let _ = waiting.pending.slot.send(Err(error.clone()));
            }
        }
        let mut broke_sequence = false;
        for queue in self.partitions.values_mut() {
            for pending in queue.take_pending() {
                let _ = pending.slot.send(Err(error.clone()));
            }
            // Batches behind the first one waiting for a retry can no longer
            // be appended once it is dropped: they are doomed.
            let Some(first_retry) = queue
                .batches
                .iter()
                .position(|batch| matches!(batch.state, BatchState::Retry { .. }))
            else {
                continue;
            };
            broke_sequence = true;
            let mut kept = VecDeque::new();
            for (index, mut batch) in queue.batches.drain(..).enumerate() {
                if matches!(batch.state, BatchState::Retry { .. }) {
                    for slot in batch.slots {
                        let _ = slot.send(Err(error.clone()));
                    }
                } else {
                    if index > first_retry {
                        batch.doomed.get_or_insert_with(|| error.clone());
                    }
                    kept.push_back(batch);
                }
            }
            queue.batches = kept;
        }
        if broke_sequence {
            self.sequence_broken();
        }
    }

    /// A fatal error (fencing, a broken invariant at the broker): every
    /// record fails, and so does every later call.
    pub(crate) fn set_fatal(&mut self, error: TransportError) {
        if self.fatal.is_some() {
            return;
        }
        self.fatal = Some(error.clone());
        if self.failure_since_flush.is_none() {
            self.failure_since_flush = Some(error.clone());
        }
        for (_, queue) in std::mem::take(&mut self.unassigned) {
            for waiting in queue {
                let _ = waiting.pending.slot.send(Err(error.clone()));
            }
        }
        for queue in self.partitions.values_mut() {
            for pending in queue.take_pending() {
                let _ = pending.slot.send(Err(error.clone()));
            }
            for batch in queue.batches.drain(..) {
                for slot in batch.slots {
                    let _ = slot.send(Err(error.clone()));
                }
            }
        }
        self.txn_adding.clear();
    }

    // ---- time ----------------------------------------------------------

    /// Fails records whose delivery timeout passed before they were sent,
    /// and batches waiting for a retry past it. A record waiting for the
    /// metadata of a topic that the metadata says does not exist fails
    /// with UNKNOWN_TOPIC_OR_PARTITION once it has waited
    /// `topic_missing_timeout_ms` (librdkafka's
    /// `topic.metadata.propagation.max.ms`: a topic just created may not be
    /// known to every broker yet). `missing(topic)`: the metadata's error
    /// for the topic, if it has one.
    pub(crate) fn expire(&mut self, now_ms: u64, missing: &dyn Fn(&str) -> Option<ErrorCode>) {
        let timeout_ms = self.settings.delivery_timeout_ms;
        let missing_ms = self.settings.topic_missing_timeout_ms;
        let mut failures = Vec::new();
        for (topic, queue) in self.unassigned.iter_mut() {
            let unknown = missing(topic);
            while let Some(front) = queue.front() {
                let waited_ms = now_ms.saturating_sub(front.pending.enqueued_ms);
                let error = match unknown {
                    Some(code) if waited_ms >= missing_ms => TransportError::new(
                        errors::kind_of(code),
                        code,
                        format!(
                            "topic {topic} not found in metadata for {missing_ms} ms ({code:?})"
                        ),
                    ),
                    _ if waited_ms >= timeout_ms => errors::timed_out(format!(
                        "record for {topic} not sent within {timeout_ms} ms: no metadata for the topic"
                    )),
                    _ => break,
                };
                let waiting = queue.pop_front().expect("front exists");
                let _ = waiting.pending.slot.send(Err(error.clone()));
                failures.push(error);
            }
        }
        self.unassigned.retain(|_, queue| !queue.is_empty());
        let mut expired_batches = Vec::new();
        for (partition, queue) in self.partitions.iter_mut() {
            while queue
                .pending
                .front()
                .is_some_and(|pending| pending.enqueued_ms + timeout_ms <= now_ms)
            {
                let pending = queue.pop_pending().expect("front exists");
                let error = errors::timed_out(format!(
                    "record for {partition} not sent within {timeout_ms} ms (no leader or no producer id)"
                ));
                let _ = pending.slot.send(Err(error.clone()));
                failures.push(error);
            }
            if let Some(index) = queue.batches.iter().position(|batch| {
                matches!(batch.state, BatchState::Retry { .. }) && batch.deadline_ms <= now_ms
            }) {
                expired_batches.push((partition.clone(), index, queue.batches[index].attempts));
            }
        }
        for error in failures {
            self.record_failure(error);
        }
        for (partition, index, attempts) in expired_batches {
            // A failure above may have failed the batch already.
            let still_there = self.partitions.get(&partition).is_some_and(|queue| {
                queue.batches.get(index).is_some_and(|batch| {
                    matches!(batch.state, BatchState::Retry { .. }) && batch.deadline_ms <= now_ms
                })
            });
            if still_there {
                let error = errors::timed_out(format!(
                    "delivery to {partition} timed out after {attempts} attempts"
                ));
                self.fail_for_good(&partition, index, error);
            }
        }
    }

    /// When the shell must look again even if nothing happens: a linger
    /// ending, a retry backoff ending, a delivery timeout.
    pub(crate) fn next_wakeup_ms(&self, now_ms: u64) -> Option<u64> {
        let settings = &self.settings;
        let mut next: Option<u64> = None;
        let mut consider = |at: u64| {
            if at > now_ms {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        };
        for queue in self.unassigned.values() {
            if let Some(front) = queue.front() {
                consider(front.pending.enqueued_ms + settings.delivery_timeout_ms);
                consider(front.pending.enqueued_ms + settings.topic_missing_timeout_ms);
            }
        }
        for queue in self.partitions.values() {
            if let Some(front) = queue.pending.front() {
                consider(front.enqueued_ms + settings.linger_ms);
                consider(front.enqueued_ms + settings.delivery_timeout_ms);
            }
            for batch in &queue.batches {
                if let BatchState::Retry { not_before_ms } = batch.state {
                    consider(not_before_ms);
                    consider(batch.deadline_ms);
                }
            }
        }
        next
    }

    // ---- inspection ----------------------------------------------------

    fn has_batches(&self) -> bool {
        self.partitions
            .values()
            .any(|queue| !queue.batches.is_empty())
    }

    /// Nothing queued, in flight, or being added to the transaction.
    pub(crate) fn is_idle(&self) -> bool {
        self.unassigned.values().all(VecDeque::is_empty)
            && self
                .partitions
                .values()
                .all(|queue| queue.pending.is_empty() && queue.batches.is_empty())
            && self.txn_adding.is_empty()
    }

    /// Whether a partition has queued or in-flight data (the shell asks for
    /// metadata for partitions without a leader).
    #[cfg(test)]
    pub(crate) fn partitions_with_data(&self) -> Vec<TopicPartition> {
        self.partitions_with_data_iter().cloned().collect()
    }

    /// Partitions with records queued or in flight, in order.
    pub(crate) fn partitions_with_data_iter(&self) -> impl Iterator<Item = &TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, queue)| !queue.pending.is_empty() || !queue.batches.is_empty())
            .map(|(partition, _)| partition)
    }
}

/// Whether the partition's oldest pending record starts a batch now: when
/// flushing, when a full batch waits (by records, or by bytes: librdkafka's
/// `rd_kafka_msgq_allow_wakeup_at` ends the linger once the queued bytes
/// reach `batch.size`), or when it lingered long enough.
fn front_ready(
    queue: &PartitionQueue,
    settings: &CoreSettings,
    flushing: bool,
    now_ms: u64,
) -> bool {
    queue.pending.front().is_some_and(|front| {
        flushing
            || queue.pending.len() >= settings.batch_max_records
            || BATCH_HEADER_BYTES + queue.pending_bytes >= settings.batch_max_bytes
            || front.enqueued_ms + settings.linger_ms <= now_ms
    })
}

/// How many of the partition's pending records the next batch takes: at
/// most `batch_max_records`, and no record that would take the batch past
/// `batch_max_bytes` — except the first, which goes in whatever its size (a
/// record larger than the broker's `message.max.bytes` is then refused
/// alone, with MESSAGE_TOO_LARGE). As librdkafka fills a MessageSet in
/// `rd_kafka_msgset_writer_write_msgq` (`rdkafka_msgset_writer.c`): it stops
/// before a message once `msgcnt > 0` and the set would exceed
/// `min(message.max.bytes, batch.size)`, or at `batch.num.messages`
/// (`rd_kafka_msgset_writer_init`'s `msetw_msgcntmax`).
fn batch_record_count(queue: &PartitionQueue, settings: &CoreSettings) -> usize {
    let mut count = 0;
    let mut batch_bytes = BATCH_HEADER_BYTES;
    for pending in queue.pending.iter().take(settings.batch_max_records) {
        if count > 0 && batch_bytes + pending.batch_bytes > settings.batch_max_bytes {
            break;
        }
        batch_bytes += pending.batch_bytes;
        count += 1;
    }
    assert!(
        count == 1 || batch_bytes <= settings.batch_max_bytes,
        "a batch of {count} records and {batch_bytes} bytes exceeds batch_max_bytes {}",
        settings.batch_max_bytes
    );
    count
}

/// Seals the next batch of the partition's pending records
/// ([`batch_record_count`]) as batch `id`, in flight, with the next
/// sequence numbers.
fn seal_batch(
    queue: &mut PartitionQueue,
    settings: &CoreSettings,
    identity: Identity,
    id: u64,
) -> Batch {
    let count = batch_record_count(queue, settings);
    assert!(count > 0, "a batch without records");
    let mut records = Vec::with_capacity(count);
    let mut slots = Vec::with_capacity(count);
    let mut deadline_ms = u64::MAX;
    for _ in 0..count {
        let pending = queue.pop_pending().expect("counted among the pending");
        deadline_ms = deadline_ms.min(pending.enqueued_ms + settings.delivery_timeout_ms);
        records.push(pending.record);
        slots.push(pending.slot);
    }
    let base_sequence = queue.next_sequence;
    let count_i32 = i32::try_from(count).expect("batch size fits in i32");
    queue.next_sequence = increment_sequence(base_sequence, count_i32);
    Batch {
        id,
        base_sequence,
        identity,
        records,
        slots,
        deadline_ms,
        state: BatchState::InFlight,
        attempts: 1,
        doomed: None,
    }
}

fn plan(partition: &TopicPartition, batch: &Batch, transactional: bool) -> PlannedBatch {
    PlannedBatch {
        partition: partition.clone(),
        batch_id: batch.id,
        batch: ProduceBatch {
            topic: partition.topic.clone(),
            partition: partition.partition,
            producer_id: batch.identity.id,
            producer_epoch: batch.identity.epoch,
            base_sequence: batch.base_sequence,
            transactional,
            records: batch.records.clone(),
        },
    }
}

/// The partition for a record: the explicit one, else murmur2 of the key.
fn choose_partition(partition: Option<i32>, key: Option<&[u8]>, partition_count: i32) -> i32 {
    match (partition, key) {
        (Some(partition), _) => partition,
        (None, Some(key)) => partition_for_key(key, partition_count),
        (None, None) => unreachable!("refused before queueing"),
    }
}

/// The error a caller sees for a call in an abortable transaction.
fn abortable(error: &TransportError) -> TransportError {
    TransportError::new(
        ErrorKind::Abortable,
        error.code,
        format!("the transaction must be aborted: {}", error.message),
    )
}

fn describe(state: &TxnState) -> &'static str {
    match state {
        TxnState::Uninitialized => "not initialized (call init_transactions)",
        TxnState::Ready => "no transaction is open",
        TxnState::InTransaction => "a transaction is open",
        TxnState::Committing => "the transaction is committing",
        TxnState::Aborting => "the transaction is aborting",
        TxnState::Abortable(_) => "the transaction must be aborted",
    }
}

#[cfg(test)]
mod tests;
