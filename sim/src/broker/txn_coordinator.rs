//! The transaction coordinator, and the partition-leader side of
//! transactions (markers, KIP-890 verification).
//!
//! Each partition of `__transaction_state` is a shard: the broker leading it
//! coordinates the transactional ids that hash to it. Every state
//! transition of a transactional id is written to that partition (acks=all)
//! before it takes effect, as in Kafka's `TransactionStateManager`; a new
//! leader loads the shard by replaying the log (after
//! `coordinator_load_delay_ms`, answering COORDINATOR_LOAD_IN_PROGRESS
//! meanwhile) and completes any transaction it finds in PrepareCommit or
//! PrepareAbort by writing its markers.
//!
//! States and transitions are Kafka's: Empty -> Ongoing (AddPartitionsToTxn
//! / AddOffsetsToTxn) -> PrepareCommit | PrepareAbort (EndTxn, answered
//! once the prepare record is durable) -> markers written to every
//! partition of the transaction via WriteTxnMarkers -> CompleteCommit |
//! CompleteAbort. InitProducerId bumps the epoch (fencing older
//! incarnations); if a transaction is open it is first aborted with a
//! bumped epoch and the caller gets CONCURRENT_TRANSACTIONS (it retries and
//! gets the next epoch). A transaction open longer than its timeout is
//! aborted the same way (the producer is then fenced).
//!
//! The epoch before the last bump (`last_producer_epoch`, KIP-360) is
//! remembered only when the bump itself named the epoch it replaced (an
//! InitProducerId with the caller's producer id and epoch): a plain init
//! and a fence forget it, so a zombie cannot pass for the instance that
//! made the last bump. Kafka 3.8 does not write it to
//! `__transaction_state` (`TransactionLog.valueToBytes`): a new
//! coordinator starts without it.
//!
//! Simplification: transactional ids never expire.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::broker::coordinator_shards::{
    CoordinatorShard, CoordinatorShards, ShardOwnership, ShardedTopic, coordinator_for,
};
use crate::broker::leader_write::{
    PendingWrite, VerificationGuard, append_to_leader, await_replicated, wait_for_replication,
};
use crate::broker::producer_ids::allocate_producer_id;
use crate::broker::{Broker, broker_host, coordinator_partition, group_coordinator};
use crate::config::{BROKER_PORT, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::internal::{InternalRequest, InternalResponse, MarkerResult, TxnMarker};
use crate::protocol::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, BrokerId, ControlType, CoordinatorType, EndTxnRequest,
    EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, PartitionError, ProduceBatch,
    ProducerEpoch, ProducerId, RecordData, Request, Response, codes,
};
use crate::rpc::Connection;
use crate::trace::{EventKind, Subject};
use crate::world::now_ms;

/// Back-off between rounds of marker writes that did not all succeed.
const MARKER_RETRY_MS: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Whether a transactional id may move from `previous` to this state
    /// (Kafka's `TransactionState.validPreviousStates`, without the states
    /// this model does not have: Dead, PrepareEpochFence).
    fn can_follow(self, previous: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(previous, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(previous, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit | PrepareAbort => previous == Ongoing,
            CompleteCommit => previous == PrepareCommit,
            CompleteAbort => previous == PrepareAbort,
        }
    }

    fn code(self) -> i64 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }
}

/// A transactional id's state: the record written to `__transaction_state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TxnMetadata {
    transactional_id: String,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    /// The epoch a KIP-360 bump replaced, so that its retry gets the same
    /// answer; -1 after a plain init or a fence. In memory only (cleared
    /// on load, as Kafka's `TransactionLog.readTxnRecordValue` does).
    last_producer_epoch: ProducerEpoch,
    /// The producer id before the last init (differs from `producer_id`
    /// after an epoch exhaustion rotated it); in memory only, like
    /// `last_producer_epoch`.
    last_producer_id: ProducerId,
    timeout_ms: u32,
    state: TxnState,
    partitions: BTreeSet<TopicPartition>,
    txn_start_ms: u64,
}

/// Kafka's `TransactionMetadata.isEpochExhausted`: the last epochs are
/// kept so that the coordinator can always fence a producer.
fn epoch_exhausted(epoch: ProducerEpoch) -> bool {
    epoch >= ProducerEpoch::MAX - 1
}

impl TxnMetadata {
    /// The open transaction aborted with a bumped epoch, which fences the
    /// producer; the epoch before is forgotten. Kafka 3.8's
    /// `TransactionMetadata.prepareFenceProducerEpoch` (epoch + 1, not
    /// again after a fence whose write failed: `hasFailedEpochFence`), then
    /// `TransactionCoordinator.endTransaction` for the epoch fence
    /// (`lastProducerEpoch = NO_PRODUCER_EPOCH`, PrepareAbort).
    fn fenced_for_abort(&self, after_failed_fence: bool) -> TxnMetadata {
        assert_eq!(
            self.state,
            TxnState::Ongoing,
            "only an open transaction is fenced"
        );
        // Producers never get the last epoch (`isEpochExhausted` rotates
        // the id first): only a fence reaches it, and the next does not bump.
        assert!(
            self.producer_epoch < ProducerEpoch::MAX || after_failed_fence,
            "transactional id {}: fencing epoch {} would overflow (seed {})",
            self.transactional_id,
            self.producer_epoch,
            crate::seed_context::current_seed()
        );
        let mut fenced = self.clone();
        if !after_failed_fence {
            fenced.producer_epoch += 1;
        }
        fenced.last_producer_epoch = -1;
        fenced.state = TxnState::PrepareAbort;
        fenced
    }

    /// The epoch after an InitProducerId in Empty or Complete*, and the
    /// epoch to remember as the last one: Kafka 3.8's
    /// `TransactionMetadata.prepareIncrementProducerEpoch`. A plain init
    /// bumps and forgets; a KIP-360 bump naming the current epoch bumps and
    /// remembers it; one naming the remembered epoch is a retry of that
    /// bump and gets the current epoch again; any other epoch is fenced.
    fn next_epoch(
        &self,
        expected_epoch: Option<ProducerEpoch>,
    ) -> Result<(ProducerEpoch, ProducerEpoch), ErrorCode> {
        if epoch_exhausted(self.producer_epoch) {
            // Kafka throws an IllegalStateException here (an exhausted
            // epoch with another expected epoch than the current one).
            return Err(codes::UNKNOWN_SERVER_ERROR);
        }
        match expected_epoch {
            None => Ok((self.producer_epoch + 1, -1)),
            Some(epoch) if epoch == self.producer_epoch => {
                Ok((self.producer_epoch + 1, self.producer_epoch))
            }
            Some(epoch) if epoch == self.last_producer_epoch => {
                Ok((self.producer_epoch, self.last_producer_epoch))
            }
            Some(_) => Err(ErrorCode::ProducerFenced),
        }
    }

    /// Asserts that `self` may replace `previous`: a legal transition, and
    /// the producer epoch of one producer id only grows.
    fn assert_follows(&self, previous: &TxnMetadata) {
        assert!(
            self.state.can_follow(previous.state),
            "transactional id {}: illegal transition {:?} -> {:?} (seed {})",
            self.transactional_id,
            previous.state,
            self.state,
            crate::seed_context::current_seed()
        );
        assert!(
            self.producer_id != previous.producer_id
                || self.producer_epoch >= previous.producer_epoch,
            "transactional id {}: producer epoch went back {} -> {} (seed {})",
            self.transactional_id,
            previous.producer_epoch,
            self.producer_epoch,
            crate::seed_context::current_seed()
        );
    }
}

#[derive(Debug)]
struct TxnEntry {
    metadata: TxnMetadata,
    /// A state write is in flight: other requests get
    /// CONCURRENT_TRANSACTIONS (Kafka's `pendingState`).
    pending: bool,
    /// The write of a fence failed: the epoch is bumped in memory and the
    /// next fence does not bump it again (Kafka's `hasFailedEpochFence`).
    failed_epoch_fence: bool,
}

impl TxnEntry {
    fn new(metadata: TxnMetadata, pending: bool) -> TxnEntry {
        TxnEntry {
            metadata,
            pending,
            failed_epoch_fence: false,
        }
    }
}

#[derive(Debug)]
struct TxnShard {
    ownership: ShardOwnership,
    /// Every transactional id used on this shard: ids never expire here
    /// (Kafka's `transactional.id.expiration.ms` is a week).
    txns: BTreeMap<String, TxnEntry>,
}

/// The transaction coordinator's state on one broker.
#[derive(Debug, Default)]
pub(crate) struct TxnCoordinator {
    shards: CoordinatorShards<TxnShard>,
    /// Expiry requests already handled (see `BrokerControl`).
    expiries_seen: u64,
}

impl CoordinatorShard for TxnShard {
    fn ownership(&mut self) -> &mut ShardOwnership {
        &mut self.ownership
    }
}

/// The transaction coordinator's shards: the partitions of
/// `__transaction_state`.
const TXN_SHARDS: ShardedTopic<TxnShard> = ShardedTopic {
    topic: TRANSACTION_STATE_TOPIC,
    partitions: |broker| broker.config.transaction_state_partitions,
    shards: |state| &mut state.txns.shards,
};

fn trace_txn(broker: &Broker, metadata: &TxnMetadata) {
    broker.trace.record(
        broker.node(),
        EventKind::TxnState,
        Subject::Name(&metadata.transactional_id),
        [
            metadata.state.code(),
            metadata.producer_id,
            i64::from(metadata.producer_epoch),
            metadata.partitions.len() as i64,
        ],
    );
}

/// Kafka's mapping of a failed `__transaction_state` write.
fn write_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        _ => codes::UNKNOWN_SERVER_ERROR,
    }
}

/// Writes a transition to the log (acks=all), then applies it and clears
/// the entry's pending flag. The caller has set the flag.
async fn write_transition(
    broker: &Broker,
    partition: i32,
    coordinator_epoch: i32,
    metadata: TxnMetadata,
) -> Result<(), ErrorCode> {
    let record = RecordData {
        key: Some(metadata.transactional_id.as_bytes().to_vec()),
        value: Some(postcard::to_stdvec(&metadata).expect("txn records encode")),
        timestamp_ms: 0,
        headers: Vec::new(),
    };
    let batch = ProduceBatch {
        topic: TRANSACTION_STATE_TOPIC.to_string(),
        partition,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
        records: vec![record],
    };
    let written = match append_to_leader(broker, batch, true) {
        Err(error) => Err(write_error(error)),
        Ok(appended) => {
            let timeout_ms = broker.config.coordinator_write_timeout_ms;
            await_replicated(broker, &appended.pending, timeout_ms)
                .await
                .map_err(write_error)
        }
    };
    let transactional_id = metadata.transactional_id.clone();
    let applied = TXN_SHARDS.with_key(broker, &transactional_id, |shard, _| {
        if shard.ownership.coordinator_epoch != coordinator_epoch {
            return Err(ErrorCode::NotCoordinator);
        }
        match shard.txns.get_mut(&transactional_id) {
            Some(entry) => {
                assert!(entry.pending, "a transition is written for a pending entry");
                entry.pending = false;
                if written.is_ok() {
                    metadata.assert_follows(&entry.metadata);
                    trace_txn(broker, &metadata);
                    entry.metadata = metadata;
                    entry.failed_epoch_fence = false;
                }
            }
            None => {
                if written.is_ok() {
                    trace_txn(broker, &metadata);
                    shard
                        .txns
                        .insert(transactional_id.clone(), TxnEntry::new(metadata, false));
                }
            }
        }
        written
    });
    broker.notify_changed();
    match applied {
        Ok(result) => result,
        Err(_) => Err(ErrorCode::NotCoordinator),
    }
}

pub(crate) async fn handle(broker: &Rc<Broker>, request: Request) -> Response {
    match request {
        Request::InitProducerId(InitProducerIdRequest {
            transactional_id: Some(transactional_id),
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
        }) => {
            let result = match expected_producer(producer_id, producer_epoch) {
                Ok(expected) => {
                    let request = InitRequest {
                        transactional_id,
                        timeout_ms: transaction_timeout_ms,
                        expected,
                    };
                    init_producer_id(broker, request).await
                }
                Err(error) => Err(error),
            };
            match result {
                Ok((producer_id, producer_epoch)) => {
                    Response::InitProducerId(InitProducerIdResponse {
                        error: None,
                        producer_id,
                        producer_epoch,
                    })
                }
                Err(error) => Response::InitProducerId(InitProducerIdResponse {
                    error: Some(error),
                    producer_id: -1,
                    producer_epoch: -1,
                }),
            }
        }
        Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        }) => Response::AddPartitionsToTxn(AddPartitionsToTxnResponse {
            results: add_partitions(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            )
            .await
            .into_iter()
            .map(|(topic_partition, error)| PartitionError {
                topic_partition,
                error,
            })
            .collect(),
        }),
        Request::AddOffsetsToTxn(AddOffsetsToTxnRequest {
            transactional_id,
            producer_id,
            producer_epoch,
            group_id,
        }) => {
            let tp = TopicPartition::new(
                OFFSETS_TOPIC,
                coordinator_partition(&group_id, broker.config.offsets_topic_partitions),
            );
            let results = add_partitions(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                vec![tp],
            )
            .await;
            Response::AddOffsetsToTxn(AddOffsetsToTxnResponse {
                error: results.into_iter().next().and_then(|(_, error)| error),
            })
        }
        Request::EndTxn(EndTxnRequest {
            transactional_id,
            producer_id,
            producer_epoch,
            committed,
        }) => Response::EndTxn(EndTxnResponse {
            error: end_txn(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                committed,
            )
            .await
            .err(),
        }),
        other => unreachable!("not a transaction request: {other:?}"),
    }
}

/// The producer id and epoch an InitProducerId names (KIP-360): both -1
/// for none, both set, or INVALID_REQUEST (Kafka 3.8's
/// `KafkaApis.handleInitProducerIdRequest`).
pub(crate) fn expected_producer(
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
) -> Result<Option<(ProducerId, ProducerEpoch)>, ErrorCode> {
    match (producer_id, producer_epoch) {
        (-1, -1) => Ok(None),
        (-1, _) | (_, -1) => Err(codes::INVALID_REQUEST),
        named => Ok(Some(named)),
    }
}

/// An InitProducerId request for a transactional id.
struct InitRequest {
    transactional_id: String,
    timeout_ms: u32,
    /// The caller's current id and epoch (KIP-360), if it has them.
    expected: Option<(ProducerId, ProducerEpoch)>,
}

/// A transition decided under the shard, its entry marked pending: to be
/// written to `__transaction_state-<partition>` in `coordinator_epoch`.
struct Transition {
    partition: i32,
    coordinator_epoch: i32,
    next: TxnMetadata,
}

impl Transition {
    /// Marks the entry of `next` pending and makes the transition.
    fn claim(shard: &mut TxnShard, partition: i32, next: TxnMetadata) -> Transition {
        let entry = shard
            .txns
            .get_mut(&next.transactional_id)
            .expect("checked above");
        assert!(
            !entry.pending,
            "one transition at a time per transactional id"
        );
        entry.pending = true;
        Transition {
            partition,
            coordinator_epoch: shard.ownership.coordinator_epoch,
            next,
        }
    }

    async fn write(self, broker: &Broker) -> Result<(), ErrorCode> {
        write_transition(broker, self.partition, self.coordinator_epoch, self.next).await
    }
}

enum InitStep {
    /// Write this metadata; `new_id` if the id is new (no durable state yet).
    Write {
        transition: Transition,
        new_id: bool,
    },
    /// Abort the open transaction first (with this fenced metadata).
    Fence(Transition),
    /// A fresh producer id is needed first (a new transactional id, or an
    /// exhausted epoch).
    NeedsProducerId,
}

/// What an InitProducerId does to a known transactional id.
#[derive(Debug, PartialEq)]
enum InitTransition {
    /// Write this Empty state and answer with its id and epoch.
    Init(TxnMetadata),
    /// Abort the open transaction with this fenced state first.
    Fence(TxnMetadata),
    /// The epoch is exhausted: a fresh producer id is needed.
    NeedsProducerId,
}

async fn init_producer_id(
    broker: &Rc<Broker>,
    request: InitRequest,
) -> Result<(ProducerId, ProducerEpoch), ErrorCode> {
    let transactional_id = &request.transactional_id;
    if transactional_id.is_empty() {
        return Err(codes::INVALID_REQUEST);
    }
    if request.timeout_ms == 0 || request.timeout_ms > broker.config.transaction_max_timeout_ms {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    // Kafka allocates a producer id only when it needs one (a new
    // transactional id, or a rotation): ask, allocate, ask again.
    let mut fresh_id = None;
    let step = loop {
        let now = now_ms();
        let step = TXN_SHARDS.with_key(broker, transactional_id, |shard, partition| {
            init_step(shard, partition, &request, fresh_id, now)
        })??;
        match step {
            InitStep::NeedsProducerId => {
                assert!(fresh_id.is_none(), "a fresh producer id is always used");
                fresh_id = Some(allocate_producer_id(broker).await?);
            }
            step => break step,
        }
    };
    match step {
        InitStep::Write { transition, new_id } => {
            let metadata = transition.next.clone();
            let written = transition.write(broker).await;
            if written.is_err() && new_id {
                // The new id's first write failed: it has no state at all.
                let _ = TXN_SHARDS.with_key(broker, transactional_id, |shard, _| {
                    if shard
                        .txns
                        .get(transactional_id)
                        .is_some_and(|e| !e.pending && e.metadata == metadata)
                    {
                        shard.txns.remove(transactional_id);
                    }
                });
            }
            written.map(|()| (metadata.producer_id, metadata.producer_epoch))
        }
        InitStep::Fence(transition) => {
            fence_and_abort(broker, transition).await?;
            Err(ErrorCode::ConcurrentTransactions)
        }
        InitStep::NeedsProducerId => unreachable!("allocated above"),
    }
}

/// Writes a fence (PrepareAbort with the bumped epoch), then the markers
/// in the background. If the write fails the bump stays in memory and
/// the next fence does not bump again (Kafka's
/// `TransactionCoordinator.endTransaction`, `hasFailedEpochFence`).
async fn fence_and_abort(broker: &Rc<Broker>, transition: Transition) -> Result<(), ErrorCode> {
    let (partition, coordinator_epoch) = (transition.partition, transition.coordinator_epoch);
    let fenced = transition.next.clone();
    match transition.write(broker).await {
        Ok(()) => {
            spawn_completion(
                broker,
                partition,
                coordinator_epoch,
                fenced.transactional_id,
            );
            Ok(())
        }
        Err(error) => {
            let transactional_id = &fenced.transactional_id;
            let _ = TXN_SHARDS.with_key(broker, transactional_id, |shard, _| {
                if shard.ownership.coordinator_epoch != coordinator_epoch {
                    return;
                }
                if let Some(entry) = shard.txns.get_mut(transactional_id) {
                    let open = &mut entry.metadata;
                    if !entry.pending && open.state == TxnState::Ongoing {
                        open.producer_epoch = fenced.producer_epoch;
                        open.last_producer_epoch = fenced.last_producer_epoch;
                        entry.failed_epoch_fence = true;
                    }
                }
            });
            Err(error)
        }
    }
}

/// Decides an InitProducerId under the shard: a new id's first state, or
/// what [`init_transition`] makes of a known one.
fn init_step(
    shard: &mut TxnShard,
    partition: i32,
    request: &InitRequest,
    fresh_id: Option<ProducerId>,
    now: u64,
) -> Result<InitStep, ErrorCode> {
    let transactional_id = &request.transactional_id;
    let Some(entry) = shard.txns.get(transactional_id) else {
        let Some(producer_id) = fresh_id else {
            return Ok(InitStep::NeedsProducerId);
        };
        // Kafka creates it with epoch -1 and bumps it: epoch 0, whatever
        // the request names (`prepareIncrementProducerEpoch`).
        let metadata = TxnMetadata {
            transactional_id: transactional_id.clone(),
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            last_producer_id: producer_id,
            timeout_ms: request.timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            txn_start_ms: now,
        };
        shard.txns.insert(
            transactional_id.clone(),
            TxnEntry::new(metadata.clone(), true),
        );
        let transition = Transition {
            partition,
            coordinator_epoch: shard.ownership.coordinator_epoch,
            next: metadata,
        };
        return Ok(InitStep::Write {
            transition,
            new_id: true,
        });
    };
    if entry.pending {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    let decided = init_transition(
        &entry.metadata,
        entry.failed_epoch_fence,
        request,
        fresh_id,
        now,
    )?;
    Ok(match decided {
        InitTransition::NeedsProducerId => InitStep::NeedsProducerId,
        InitTransition::Fence(fenced) => {
            InitStep::Fence(Transition::claim(shard, partition, fenced))
        }
        InitTransition::Init(next) => InitStep::Write {
            transition: Transition::claim(shard, partition, next),
            new_id: false,
        },
    })
}

/// An InitProducerId for a known transactional id, as Kafka 3.8's
/// `TransactionCoordinator.prepareInitProducerIdTransit` decides it: a
/// named producer id must be the current one (or the one an exhausted
/// epoch rotated away, for a retry), else PRODUCER_FENCED; while markers
/// are written, CONCURRENT_TRANSACTIONS; an open transaction is fenced and
/// aborted whatever epoch is named; otherwise the next epoch
/// ([`TxnMetadata::next_epoch`]), or a fresh producer id at epoch 0 when
/// the epoch is exhausted and the request names no other epoch
/// (`prepareProducerIdRotation`, remembering the old epoch only for a
/// KIP-360 request).
fn init_transition(
    current: &TxnMetadata,
    after_failed_fence: bool,
    request: &InitRequest,
    fresh_id: Option<ProducerId>,
    now: u64,
) -> Result<InitTransition, ErrorCode> {
    if let Some((producer_id, producer_epoch)) = request.expected {
        let known = producer_id == current.producer_id
            || (producer_id == current.last_producer_id && epoch_exhausted(producer_epoch));
        if !known {
            return Err(ErrorCode::ProducerFenced);
        }
    }
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ErrorCode::ConcurrentTransactions),
        TxnState::Ongoing => Ok(InitTransition::Fence(
            current.fenced_for_abort(after_failed_fence),
        )),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let expected_epoch = request.expected.map(|(_, epoch)| epoch);
            let rotate = epoch_exhausted(current.producer_epoch)
                && expected_epoch.is_none_or(|epoch| epoch == current.producer_epoch);
            let (producer_id, producer_epoch, last_producer_epoch) = if rotate {
                let Some(fresh) = fresh_id else {
                    return Ok(InitTransition::NeedsProducerId);
                };
                let last = if expected_epoch.is_some() {
                    current.producer_epoch
                } else {
                    -1
                };
                (fresh, 0, last)
            } else {
                let (epoch, last) = current.next_epoch(expected_epoch)?;
                (current.producer_id, epoch, last)
            };
            Ok(InitTransition::Init(TxnMetadata {
                transactional_id: current.transactional_id.clone(),
                producer_id,
                producer_epoch,
                last_producer_epoch,
                last_producer_id: current.producer_id,
                timeout_ms: request.timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_ms: now,
            }))
        }
    }
}

/// Checks the caller's producer id and epoch against the coordinator's.
fn check_producer<'a>(
    shard: &'a TxnShard,
    transactional_id: &str,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
) -> Result<&'a TxnMetadata, ErrorCode> {
    let entry = shard
        .txns
        .get(transactional_id)
        .ok_or(ErrorCode::InvalidProducerIdMapping)?;
    if entry.metadata.producer_id != producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if entry.metadata.producer_epoch != producer_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    if entry.pending {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    Ok(&entry.metadata)
}

async fn add_partitions(
    broker: &Rc<Broker>,
    transactional_id: String,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, Option<ErrorCode>)> {
    let answer = |error: Option<ErrorCode>| {
        partitions
            .iter()
            .map(|tp| (tp.clone(), error))
            .collect::<Vec<_>>()
    };
    if let Some(results) = unknown_partitions(broker, &partitions) {
        return results;
    }
    let now = now_ms();
    let step = TXN_SHARDS.with_key(broker, &transactional_id, |shard, partition| {
        let current = check_producer(shard, &transactional_id, producer_id, producer_epoch)?;
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(ErrorCode::ConcurrentTransactions);
            }
            TxnState::Ongoing if partitions.iter().all(|tp| current.partitions.contains(tp)) => {
                return Ok(None);
            }
            _ => {}
        }
        let mut next = current.clone();
        if next.state != TxnState::Ongoing {
            next.txn_start_ms = now;
            next.partitions.clear();
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        Ok(Some(Transition::claim(shard, partition, next)))
    });
    match step {
        Err(error) | Ok(Err(error)) => answer(Some(error)),
        Ok(Ok(None)) => answer(None),
        Ok(Ok(Some(transition))) => answer(transition.write(broker).await.err()),
    }
}

/// If some of `partitions` are not in the metadata: the answer, those
/// UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED.
fn unknown_partitions(
    broker: &Broker,
    partitions: &[TopicPartition],
) -> Option<Vec<(TopicPartition, Option<ErrorCode>)>> {
    let unknown: Vec<&TopicPartition> = {
        let state = broker.state.borrow();
        partitions
            .iter()
            .filter(|tp| state.metadata.partition(tp).is_none())
            .collect()
    };
    if unknown.is_empty() {
        return None;
    }
    let results = partitions
        .iter()
        .map(|tp| {
            let error = if unknown.contains(&tp) {
                ErrorCode::UnknownTopicOrPartition
            } else {
                codes::OPERATION_NOT_ATTEMPTED
            };
            (tp.clone(), Some(error))
        })
        .collect();
    Some(results)
}

async fn end_txn(
    broker: &Rc<Broker>,
    transactional_id: String,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    committed: bool,
) -> Result<(), ErrorCode> {
    let step = TXN_SHARDS.with_key(broker, &transactional_id, |shard, partition| {
        let current = check_producer(shard, &transactional_id, producer_id, producer_epoch)?;
        match (current.state, committed) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                return Ok(None);
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(ErrorCode::ConcurrentTransactions);
            }
            _ => return Err(ErrorCode::InvalidTxnState),
        }
        let mut next = current.clone();
        next.state = if committed {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        Ok(Some(Transition::claim(shard, partition, next)))
    })??;
    let Some(transition) = step else {
        return Ok(());
    };
    let (partition, coordinator_epoch) = (transition.partition, transition.coordinator_epoch);
    transition.write(broker).await?;
    spawn_completion(broker, partition, coordinator_epoch, transactional_id);
    Ok(())
}

/// Writes the markers of a prepared transaction, then its completion.
fn spawn_completion(
    broker: &Rc<Broker>,
    partition: i32,
    coordinator_epoch: i32,
    transactional_id: String,
) {
    let broker = broker.clone();
    tokio::task::spawn_local(async move {
        complete(&broker, partition, coordinator_epoch, transactional_id).await;
    });
}

async fn complete(
    broker: &Rc<Broker>,
    partition: i32,
    coordinator_epoch: i32,
    transactional_id: String,
) {
    let mut remaining: Option<BTreeSet<TopicPartition>> = None;
    loop {
        let current = {
            let state = broker.state.borrow();
            let Some(shard) = state.txns.shards.get(partition) else {
                return;
            };
            if shard.ownership.coordinator_epoch != coordinator_epoch {
                return;
            }
            let Some(entry) = shard.txns.get(&transactional_id) else {
                return;
            };
            entry.metadata.clone()
        };
        let committed = match current.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return,
        };
        let todo = remaining.get_or_insert_with(|| current.partitions.clone());
        if !todo.is_empty() {
            let done = write_markers_round(
                broker,
                &current,
                committed,
                coordinator_epoch,
                todo.iter().cloned().collect(),
            )
            .await;
            for tp in done {
                todo.remove(&tp);
            }
        }
        if !todo.is_empty() {
            tokio::time::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
            continue;
        }
        // Every marker is written: the transaction is complete.
        let claimed = TXN_SHARDS.with_key(broker, &transactional_id, |shard, _| {
            if shard.ownership.coordinator_epoch != coordinator_epoch {
                return false;
            }
            match shard.txns.get_mut(&transactional_id) {
                Some(entry) if !entry.pending && entry.metadata == current => {
                    entry.pending = true;
                    true
                }
                _ => false,
            }
        });
        if claimed != Ok(true) {
            tokio::time::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
            continue;
        }
        let mut next = current.clone();
        next.state = if committed {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        match write_transition(broker, partition, coordinator_epoch, next).await {
            Ok(()) => return,
            Err(ErrorCode::NotCoordinator) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(MARKER_RETRY_MS)).await,
        }
    }
}

/// Sends the markers to each partition's current leader; returns the
/// partitions whose marker is written.
async fn write_markers_round(
    broker: &Rc<Broker>,
    metadata: &TxnMetadata,
    committed: bool,
    coordinator_epoch: i32,
    partitions: Vec<TopicPartition>,
) -> Vec<TopicPartition> {
    let mut by_leader: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
    let mut done = Vec::new();
    {
        let state = broker.state.borrow();
        for tp in partitions {
            match state.metadata.partition(&tp) {
                // A deleted partition needs no marker (Kafka drops it).
                None if !state.metadata.topics.contains_key(&tp.topic) => done.push(tp),
                None => {}
                Some(p) => {
                    if let Some(leader) = p.leader {
                        by_leader.entry(leader).or_default().push(tp);
                    }
                }
            }
        }
    }
    for (leader, partitions) in by_leader {
        let marker = TxnMarker {
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            committed,
            coordinator_epoch,
            partitions,
        };
        let response = if leader == broker.id {
            handle_write_markers(broker, vec![marker]).await
        } else {
            let mut connection = Connection::with_reconnects(
                &broker_host(leader),
                BROKER_PORT,
                broker.reconnects.clone(),
            );
            let request = Request::Internal(InternalRequest::WriteTxnMarkers {
                markers: vec![marker],
            });
            match connection
                .call(request, broker.config.inter_broker_request_timeout_ms)
                .await
            {
                Ok(Response::Internal(response)) => response,
                _ => continue,
            }
        };
        if let InternalResponse::WriteTxnMarkers { results } = response {
            for result in results {
                for outcome in result.partitions {
                    if outcome.error.is_none() {
                        done.push(outcome.topic_partition);
                    }
                }
            }
        }
    }
    done
}

/// WriteTxnMarkers at a partition leader: append each marker (acks=all);
/// a marker on `__consumer_offsets` completes the transaction's offsets.
pub(crate) async fn handle_write_markers(
    broker: &Rc<Broker>,
    markers: Vec<TxnMarker>,
) -> InternalResponse {
    let mut results = Vec::with_capacity(markers.len());
    for marker in markers {
        let control = if marker.committed {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let mut outcomes: Vec<PartitionError> = Vec::new();
        let mut pending: Vec<(usize, PendingWrite)> = Vec::new();
        for tp in &marker.partitions {
            match append_marker(broker, tp, &marker, control) {
                Ok(write) => {
                    pending.push((outcomes.len(), write));
                    outcomes.push(PartitionError {
                        topic_partition: tp.clone(),
                        error: None,
                    });
                }
                Err(error) => outcomes.push(PartitionError {
                    topic_partition: tp.clone(),
                    error: Some(error),
                }),
            }
        }
        if !pending.is_empty() {
            let writes: Vec<PendingWrite> = pending.iter().map(|(_, w)| w.clone()).collect();
            let replicated = wait_for_replication(
                broker,
                &writes,
                broker.config.inter_broker_request_timeout_ms,
            )
            .await;
            for ((index, write), outcome) in pending.into_iter().zip(replicated) {
                outcomes[index].error = outcome;
                if outcome.is_none() && write.tp.topic == OFFSETS_TOPIC {
                    group_coordinator::complete_transaction(
                        broker,
                        write.tp.partition,
                        marker.producer_id,
                        control,
                    );
                }
            }
        }
        results.push(MarkerResult {
            producer_id: marker.producer_id,
            partitions: outcomes,
        });
    }
    InternalResponse::WriteTxnMarkers { results }
}

fn append_marker(
    broker: &Broker,
    tp: &TopicPartition,
    marker: &TxnMarker,
    control: ControlType,
) -> Result<PendingWrite, ErrorCode> {
    let moved;
    let write;
    {
        let state = broker.state.borrow();
        if state.metadata.partition(tp).is_none() {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        let replica = state
            .replicas
            .get(tp)
            .filter(|r| r.is_leader())
            .ok_or(ErrorCode::NotLeaderOrFollower)?;
        if replica.is_under_min_isr() {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        let mut disk = broker.disk.borrow_mut();
        let log = disk.logs.get_mut(tp).expect("a replica has a log");
        log.check_marker(
            marker.producer_id,
            marker.producer_epoch,
            marker.coordinator_epoch,
        )?;
        let offset = log.append_marker_as_leader(
            marker.producer_id,
            marker.producer_epoch,
            control,
            marker.coordinator_epoch,
            replica.leader_epoch,
        );
        broker.trace_partition(
            EventKind::Marker,
            tp,
            [
                offset,
                marker.producer_id,
                i64::from(marker.committed),
                i64::from(marker.producer_epoch),
            ],
        );
        moved = replica.maybe_advance_high_watermark(broker.id, log);
        write = PendingWrite {
            tp: tp.clone(),
            leader_epoch: replica.leader_epoch,
            required_offset: offset + 1,
        };
    }
    if let Some((from, to)) = moved {
        broker.trace_partition(EventKind::HighWatermark, tp, [from, to, 0, 0]);
    }
    broker.notify_changed();
    Ok(write)
}

/// KIP-890 at the coordinator: is each partition in the producer's ongoing
/// transaction? Kafka 3.8's `TransactionCoordinator.
/// handleVerifyPartitionsInTransaction`: another producer id is
/// INVALID_PRODUCER_ID_MAPPING, another epoch PRODUCER_FENCED, markers
/// being written CONCURRENT_TRANSACTIONS, a partition not in the
/// transaction TRANSACTION_ABORTABLE, which the leader reports to clients
/// of the versions modelled here as INVALID_TXN_STATE
/// (`AddPartitionsToTxnManager`, `defaultError`).
pub(crate) fn handle_verify(
    broker: &Rc<Broker>,
    transactional_id: &str,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    partitions: Vec<TopicPartition>,
) -> InternalResponse {
    let verdict = TXN_SHARDS.with_key(broker, transactional_id, |shard, _| {
        let entry = shard
            .txns
            .get(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let metadata = &entry.metadata;
        if metadata.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if metadata.producer_epoch != producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if matches!(
            metadata.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        // Partitions are in the set from their AddPartitionsToTxn until the
        // transaction completes (the set is empty outside Ongoing).
        Ok(partitions
            .iter()
            .map(|tp| {
                let member = metadata.partitions.contains(tp);
                PartitionError {
                    topic_partition: tp.clone(),
                    error: (!member).then_some(ErrorCode::InvalidTxnState),
                }
            })
            .collect::<Vec<_>>())
    });
    let results = match verdict {
        Ok(Ok(results)) => results,
        Ok(Err(error)) | Err(error) => partitions
            .into_iter()
            .map(|topic_partition| PartitionError {
                topic_partition,
                error: Some(error),
            })
            .collect(),
    };
    InternalResponse::VerifyTxnPartitions { results }
}

/// KIP-890 at a partition leader: the first transactional write of a
/// transaction to a partition is verified with the coordinator, so that a
/// late write from a finished transaction cannot open a hanging one. One
/// entry per batch: `Some(error)` to refuse it.
pub(crate) async fn verify_produce(
    broker: &Rc<Broker>,
    transactional_id: Option<&str>,
    batches: &[ProduceBatch],
) -> Vec<Option<ErrorCode>> {
    let mut verdicts: Vec<Option<ErrorCode>> = vec![None; batches.len()];
    let to_verify = batches_to_verify(broker, transactional_id, batches, &mut verdicts);
    let Some(transactional_id) = transactional_id else {
        return verdicts;
    };
    if to_verify.is_empty() {
        return verdicts;
    }
    let first = &batches[to_verify[0].index];
    let partitions: Vec<TopicPartition> = to_verify.iter().map(|v| v.tp.clone()).collect();
    let results = ask_coordinator_to_verify(
        broker,
        transactional_id,
        (first.producer_id, first.producer_epoch),
        partitions,
    )
    .await;
    let disk = broker.disk.borrow();
    for verifying in to_verify {
        let producer_id = batches[verifying.index].producer_id;
        let verdict = match results.get(&verifying.tp).copied() {
            None => Some(ErrorCode::NotEnoughReplicas),
            Some(None) => {
                // A marker landed while we asked: the verification is stale.
                let markers_now = disk
                    .logs
                    .get(&verifying.tp)
                    .map_or(0, |log| log.marker_count(producer_id));
                (markers_now != verifying.markers_before).then_some(ErrorCode::InvalidTxnState)
            }
            // Coordinator trouble is retriable for the producer (Kafka
            // answers NOT_ENOUGH_REPLICAS so that old clients retry:
            // `ReplicaManager.appendRecordsWithTransactionVerification`).
            Some(Some(
                ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::ConcurrentTransactions
                | ErrorCode::NetworkException,
            )) => Some(ErrorCode::NotEnoughReplicas),
            Some(Some(error)) => Some(error),
        };
        verdicts[verifying.index] = verdict;
    }
    drop(disk);
    verdicts
}

/// KIP-890 for a TxnOffsetCommit: before the group coordinator appends the
/// offsets to `tp` (its `__consumer_offsets` partition), the transaction
/// coordinator must confirm that `tp` is in the producer's ongoing
/// transaction, unless the producer already has a transaction open there.
/// Kafka 3.8's `GroupCoordinator.handleTxnCommitOffsets` through
/// `ReplicaManager.maybeStartTransactionVerificationForPartition`
/// (`UnifiedLog.maybeStartTransactionVerification`). The guard is checked
/// again at the append.
pub(crate) async fn verify_offsets_append(
    broker: &Rc<Broker>,
    transactional_id: String,
    (producer_id, producer_epoch): (ProducerId, ProducerEpoch),
    tp: TopicPartition,
) -> Result<VerificationGuard, ErrorCode> {
    if !broker.config.transaction_partition_verification {
        return Ok(VerificationGuard::Unchecked);
    }
    let markers = {
        let state = broker.state.borrow();
        let disk = broker.disk.borrow();
        let leads = state.replicas.get(&tp).is_some_and(|r| r.is_leader());
        match disk.logs.get(&tp).filter(|_| leads) {
            None => return Ok(VerificationGuard::Unchecked),
            Some(log) if log.has_open_transaction(producer_id) => {
                return Ok(VerificationGuard::OpenTransaction);
            }
            Some(log) => log.marker_count(producer_id),
        }
    };
    let results = ask_coordinator_to_verify(
        broker,
        &transactional_id,
        (producer_id, producer_epoch),
        vec![tp.clone()],
    )
    .await;
    match results.get(&tp).copied() {
        Some(None) => Ok(VerificationGuard::Verified { markers }),
        Some(Some(error)) => Err(error),
        None => Err(ErrorCode::NetworkException),
    }
}

/// A batch whose partition must be verified with the coordinator.
struct Verifying {
    /// Its place in the request.
    index: usize,
    tp: TopicPartition,
    /// The producer's marker count on the partition before asking.
    markers_before: u64,
}

/// The batches (transactional, on partitions this broker leads) whose
/// first write must be verified; refuses in `verdicts` those sent without
/// a transactional id.
fn batches_to_verify(
    broker: &Broker,
    transactional_id: Option<&str>,
    batches: &[ProduceBatch],
    verdicts: &mut [Option<ErrorCode>],
) -> Vec<Verifying> {
    let mut to_verify = Vec::new();
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    for (index, batch) in batches.iter().enumerate() {
        if !batch.transactional || batch.producer_id < 0 {
            continue;
        }
        let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
        let leads = state.replicas.get(&tp).is_some_and(|r| r.is_leader());
        let Some(log) = disk.logs.get(&tp).filter(|_| leads) else {
            // Not the leader: the append reports it.
            continue;
        };
        if transactional_id.is_none() {
            verdicts[index] = Some(ErrorCode::InvalidTxnState);
            continue;
        }
        if broker.config.transaction_partition_verification
            && !log.has_open_transaction(batch.producer_id)
        {
            let markers_before = log.marker_count(batch.producer_id);
            to_verify.push(Verifying {
                index,
                tp,
                markers_before,
            });
        }
    }
    to_verify
}

/// Asks the transaction coordinator (this broker or another) whether each
/// partition is in the producer's ongoing transaction.
async fn ask_coordinator_to_verify(
    broker: &Rc<Broker>,
    transactional_id: &str,
    (producer_id, producer_epoch): (ProducerId, ProducerEpoch),
    partitions: Vec<TopicPartition>,
) -> BTreeMap<TopicPartition, Option<ErrorCode>> {
    let response = match coordinator_for(broker, CoordinatorType::Transaction, transactional_id) {
        Err(error) => Err(error),
        Ok((_, node)) if node.id == broker.id => Ok(handle_verify(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions.clone(),
        )),
        Ok((_, node)) => {
            let mut connection =
                Connection::with_reconnects(&node.host, BROKER_PORT, broker.reconnects.clone());
            let request = Request::Internal(InternalRequest::VerifyTxnPartitions {
                transactional_id: transactional_id.to_string(),
                producer_id,
                producer_epoch,
                partitions: partitions.clone(),
            });
            match connection
                .call(request, broker.config.inter_broker_request_timeout_ms)
                .await
            {
                Ok(Response::Internal(response)) => Ok(response),
                // Kafka's `AddPartitionsToTxnManager`: a disconnect or a
                // timeout is NETWORK_EXCEPTION.
                _ => Err(ErrorCode::NetworkException),
            }
        }
    };
    match response {
        // `AddPartitionsToTxnManager`: producers expect INVALID_PRODUCER_EPOCH
        // for an old epoch.
        Ok(InternalResponse::VerifyTxnPartitions { results }) => results
            .into_iter()
            .map(|outcome| {
                let error = match outcome.error {
                    Some(ErrorCode::ProducerFenced) => Some(ErrorCode::InvalidProducerEpoch),
                    other => other,
                };
                (outcome.topic_partition, error)
            })
            .collect(),
        Ok(_) => BTreeMap::new(),
        Err(error) => partitions
            .iter()
            .map(|tp| (tp.clone(), Some(error)))
            .collect(),
    }
}

/// Aborts transactions open longer than their timeout (and all open ones
/// when the run loop asks: `Fault::ExpireTransactions`).
pub(crate) async fn timeout_checker(broker: Rc<Broker>) {
    let interval = Duration::from_millis(broker.config.transaction_abort_check_interval_ms);
    loop {
        tokio::select! {
            biased;
            _ = broker.control.wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let requested = broker.control.transaction_expiries.get();
        let expire_all = {
            let mut state = broker.state.borrow_mut();
            let expire_all = requested > state.txns.expiries_seen;
            state.txns.expiries_seen = requested;
            expire_all
        };
        let now = now_ms();
        let mut expired = Vec::new();
        {
            let mut state = broker.state.borrow_mut();
            for (partition, shard) in state.txns.shards.loaded_iter_mut() {
                let coordinator_epoch = shard.ownership.coordinator_epoch;
                for entry in shard.txns.values_mut() {
                    // Kafka's `TransactionStateManager.timedOutTransactions`
                    // (Ongoing, no transition pending, start + timeout < now),
                    // then `TransactionCoordinator.abortTimedOutTransactions`.
                    let metadata = &entry.metadata;
                    let overdue = now > metadata.txn_start_ms + u64::from(metadata.timeout_ms);
                    if entry.pending
                        || metadata.state != TxnState::Ongoing
                        || !(overdue || expire_all)
                    {
                        continue;
                    }
                    let fenced = metadata.fenced_for_abort(entry.failed_epoch_fence);
                    entry.pending = true;
                    expired.push(Transition {
                        partition,
                        coordinator_epoch,
                        next: fenced,
                    });
                }
            }
        }
        for fence in expired {
            let fenced = &fence.next;
            broker.trace.record(
                broker.node(),
                EventKind::TxnTimedOut,
                Subject::Name(&fenced.transactional_id),
                [fenced.producer_id, i64::from(fenced.producer_epoch), 0, 0],
            );
            let broker = broker.clone();
            tokio::task::spawn_local(async move {
                let _ = fence_and_abort(&broker, fence).await;
            });
        }
    }
}

/// This broker now leads `__transaction_state-<partition>`: load it after
/// the load delay, then finish the transactions it finds prepared.
pub(crate) fn start_loading(broker: &Rc<Broker>, partition: i32, leader_epoch: i32) {
    let shard = TxnShard {
        ownership: ShardOwnership::loading(leader_epoch),
        txns: BTreeMap::new(),
    };
    TXN_SHARDS.start_loading(broker, partition, leader_epoch, shard, move |broker| {
        let prepared = load(broker, partition, leader_epoch);
        for transactional_id in prepared {
            spawn_completion(broker, partition, leader_epoch, transactional_id);
        }
    });
}

/// Replays the shard's log; returns the transactional ids it finds
/// prepared (their markers are still to be written).
fn load(broker: &Broker, partition: i32, leader_epoch: i32) -> Vec<String> {
    let replayed = TXN_SHARDS.replay(broker, partition, leader_epoch, |shard, tp| {
        let disk = broker.disk.borrow();
        for stored in disk.logs[tp].batches() {
            let batch = stored.decode();
            for record in &batch.records {
                let Some(value) = &record.value else {
                    continue;
                };
                let mut metadata: TxnMetadata = postcard::from_bytes(value).unwrap_or_else(|e| {
                    panic!(
                        "undecodable record in {tp} at {}: {e} (seed {})",
                        batch.base_offset,
                        crate::seed_context::current_seed()
                    )
                });
                // Kafka 3.8 does not store them: `TransactionLog.
                // readTxnRecordValue` loads NO_PRODUCER_ID / NO_PRODUCER_EPOCH.
                metadata.last_producer_id = -1;
                metadata.last_producer_epoch = -1;
                shard.txns.insert(
                    metadata.transactional_id.clone(),
                    TxnEntry::new(metadata, false),
                );
            }
        }
        let prepared: Vec<String> = shard
            .txns
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.metadata.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        (shard.txns.len() as i64, prepared)
    });
    replayed.unwrap_or_default()
}

/// This broker no longer leads `__transaction_state-<partition>`.
pub(crate) fn unload(broker: &Rc<Broker>, partition: i32) {
    TXN_SHARDS.unload(broker, partition);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_states_follow_kafkas_valid_previous_states() {
        use TxnState::*;
        let all = [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
        ];
        // Kafka's TransactionState.validPreviousStates, less Dead and
        // PrepareEpochFence.
        let legal = [
            (Empty, Empty),
            (CompleteCommit, Empty),
            (CompleteAbort, Empty),
            (Empty, Ongoing),
            (Ongoing, Ongoing),
            (CompleteCommit, Ongoing),
            (CompleteAbort, Ongoing),
            (Ongoing, PrepareCommit),
            (Ongoing, PrepareAbort),
            (PrepareCommit, CompleteCommit),
            (PrepareAbort, CompleteAbort),
        ];
        crate::broker::assert_transition_table(&all, &legal, |previous, next| {
            next.can_follow(previous)
        });
    }

    fn metadata(epoch: ProducerEpoch, last_epoch: ProducerEpoch, state: TxnState) -> TxnMetadata {
        TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 4,
            producer_epoch: epoch,
            last_producer_epoch: last_epoch,
            last_producer_id: 4,
            timeout_ms: 100,
            state,
            partitions: BTreeSet::new(),
            txn_start_ms: 0,
        }
    }

    fn init(expected: Option<(ProducerId, ProducerEpoch)>) -> InitRequest {
        InitRequest {
            transactional_id: "t".into(),
            timeout_ms: 100,
            expected,
        }
    }

    #[test]
    fn a_fence_bumps_the_epoch_once_and_forgets_the_one_before() {
        let open = metadata(7, 6, TxnState::Ongoing);
        let fenced = open.fenced_for_abort(false);
        assert_eq!(fenced.state, TxnState::PrepareAbort);
        assert_eq!((fenced.producer_epoch, fenced.last_producer_epoch), (8, -1));
        fenced.assert_follows(&open);
        // After a fence whose write failed (epoch bumped in memory), the
        // next fence does not bump again (`hasFailedEpochFence`).
        let bumped_in_memory = metadata(8, -1, TxnState::Ongoing);
        assert_eq!(bumped_in_memory.fenced_for_abort(true).producer_epoch, 8);
        // Only a fence reaches the last epoch.
        let at_limit = metadata(ProducerEpoch::MAX - 1, -1, TxnState::Ongoing);
        assert_eq!(
            at_limit.fenced_for_abort(false).producer_epoch,
            ProducerEpoch::MAX
        );
    }

    #[test]
    fn an_init_bumps_forgets_or_repeats_the_epoch_as_kafka_does() {
        let done = metadata(7, 6, TxnState::CompleteCommit);
        let next = |expected| match init_transition(&done, false, &init(expected), None, 0) {
            Ok(InitTransition::Init(next)) => Ok((next.producer_epoch, next.last_producer_epoch)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(error) => Err(error),
        };
        assert_eq!(next(None), Ok((8, -1)));
        assert_eq!(next(Some((4, 7))), Ok((8, 7)));
        // A retry of the bump that replaced epoch 6.
        assert_eq!(next(Some((4, 6))), Ok((7, 6)));
        assert_eq!(next(Some((4, 5))), Err(ErrorCode::ProducerFenced));
        assert_eq!(next(Some((5, 7))), Err(ErrorCode::ProducerFenced));
        // While markers are written: retry later, whatever the epoch.
        let prepared = metadata(7, 6, TxnState::PrepareCommit);
        assert_eq!(
            init_transition(&prepared, false, &init(Some((4, 1))), None, 0),
            Err(ErrorCode::ConcurrentTransactions)
        );
        // An open transaction is fenced whatever the epoch named.
        let open = metadata(7, -1, TxnState::Ongoing);
        assert_eq!(
            init_transition(&open, false, &init(Some((4, 1))), None, 0),
            Ok(InitTransition::Fence(open.fenced_for_abort(false)))
        );
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id_and_a_retry_of_the_rotation_gets_it_again() {
        let exhausted = metadata(ProducerEpoch::MAX - 1, -1, TxnState::CompleteCommit);
        let plain = init(None);
        assert_eq!(
            init_transition(&exhausted, false, &plain, None, 0),
            Ok(InitTransition::NeedsProducerId)
        );
        let identity = |next: &TxnMetadata| {
            (
                next.producer_id,
                next.producer_epoch,
                next.last_producer_id,
                next.last_producer_epoch,
            )
        };
        let Ok(InitTransition::Init(rotated)) =
            init_transition(&exhausted, false, &plain, Some(9), 0)
        else {
            panic!("a plain init rotates an exhausted epoch");
        };
        assert_eq!(identity(&rotated), (9, 0, 4, -1));
        // A KIP-360 bump naming the exhausted epoch rotates and remembers it.
        let bump = init(Some((4, ProducerEpoch::MAX - 1)));
        let Ok(InitTransition::Init(rotated)) =
            init_transition(&exhausted, false, &bump, Some(9), 0)
        else {
            panic!("a bump rotates an exhausted epoch");
        };
        assert_eq!(identity(&rotated), (9, 0, 4, ProducerEpoch::MAX - 1));
        // Its retry names the old id: it gets the new id and epoch again.
        let Ok(InitTransition::Init(again)) = init_transition(&rotated, false, &bump, None, 0)
        else {
            panic!("the retry of a rotation is answered");
        };
        assert_eq!((again.producer_id, again.producer_epoch), (9, 0));
        // The old id with an epoch that is not exhausted is another producer.
        assert_eq!(
            init_transition(&rotated, false, &init(Some((4, 3))), None, 0),
            Err(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn a_named_producer_id_and_epoch_are_both_given_or_neither() {
        assert_eq!(expected_producer(-1, -1), Ok(None));
        assert_eq!(expected_producer(4, 7), Ok(Some((4, 7))));
        assert_eq!(expected_producer(4, -1), Err(codes::INVALID_REQUEST));
        assert_eq!(expected_producer(-1, 7), Err(codes::INVALID_REQUEST));
    }
}
