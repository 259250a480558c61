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
//! Simplification: transactional ids never expire.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::broker::server::{
    PendingWrite, allocate_producer_id, append_to_leader, coordinator_for, wait_for_replication,
};
use crate::broker::{Broker, broker_host, coordinator_partition, group_coordinator};
use crate::cluster::{BROKER_PORT, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::internal::{InternalRequest, InternalResponse, TxnMarker};
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
    /// The epoch before the last bump (KIP-360 retries of InitProducerId).
    last_producer_epoch: ProducerEpoch,
    timeout_ms: u32,
    state: TxnState,
    partitions: BTreeSet<TopicPartition>,
    txn_start_ms: u64,
}

#[derive(Debug)]
struct TxnEntry {
    metadata: TxnMetadata,
    /// A state write is in flight: other requests get
    /// CONCURRENT_TRANSACTIONS (Kafka's `pendingState`).
    pending: bool,
}

#[derive(Debug)]
struct TxnShard {
    coordinator_epoch: i32,
    loaded: bool,
    txns: BTreeMap<String, TxnEntry>,
}

/// The transaction coordinator's state on one broker.
#[derive(Debug, Default)]
pub(crate) struct TxnCoordinator {
    shards: BTreeMap<i32, TxnShard>,
    /// Expiry requests already handled (see `BrokerControl`).
    expiries_seen: u64,
}

fn shard_of(broker: &Broker, transactional_id: &str) -> i32 {
    coordinator_partition(transactional_id, broker.config.transaction_state_partitions)
}

fn with_shard<R>(
    broker: &Broker,
    transactional_id: &str,
    f: impl FnOnce(&mut TxnShard, i32) -> R,
) -> Result<R, ErrorCode> {
    let partition = shard_of(broker, transactional_id);
    let mut state = broker.state.borrow_mut();
    let shard = state
        .txns
        .shards
        .get_mut(&partition)
        .ok_or(ErrorCode::NotCoordinator)?;
    if !shard.loaded {
        return Err(ErrorCode::CoordinatorLoadInProgress);
    }
    Ok(f(shard, partition))
}

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
            let outcome = wait_for_replication(
                broker,
                std::slice::from_ref(&appended.pending),
                broker.config.coordinator_write_timeout_ms,
            )
            .await;
            match outcome[0] {
                None => Ok(()),
                Some(error) => Err(write_error(error)),
            }
        }
    };
    let transactional_id = metadata.transactional_id.clone();
    let applied = with_shard(broker, &transactional_id, |shard, _| {
        if shard.coordinator_epoch != coordinator_epoch {
            return Err(ErrorCode::NotCoordinator);
        }
        match shard.txns.get_mut(&transactional_id) {
            Some(entry) => {
                entry.pending = false;
                if written.is_ok() {
                    trace_txn(broker, &metadata);
                    entry.metadata = metadata;
                }
            }
            None => {
                if written.is_ok() {
                    trace_txn(broker, &metadata);
                    shard.txns.insert(
                        transactional_id.clone(),
                        TxnEntry {
                            metadata,
                            pending: false,
                        },
                    );
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
            let result = init_producer_id(
                broker,
                transactional_id,
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
            )
            .await;
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

enum InitStep {
    /// Write this metadata; `true` if the id is new (no durable state yet).
    Write(i32, i32, TxnMetadata, bool),
    /// Abort the open transaction first (with this fenced metadata).
    Fence(i32, i32, TxnMetadata),
}

async fn init_producer_id(
    broker: &Rc<Broker>,
    transactional_id: String,
    timeout_ms: u32,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
) -> Result<(ProducerId, ProducerEpoch), ErrorCode> {
    if transactional_id.is_empty() {
        return Err(codes::INVALID_REQUEST);
    }
    if timeout_ms == 0 || timeout_ms > broker.config.transaction_max_timeout_ms {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    let known = with_shard(broker, &transactional_id, |shard, _| {
        shard
            .txns
            .get(&transactional_id)
            .map(|e| e.metadata.clone())
    })?;
    // A new id, or an epoch about to overflow, needs a fresh producer id.
    let needs_new_id = match &known {
        None => true,
        Some(metadata) => metadata.producer_epoch >= ProducerEpoch::MAX - 1,
    };
    let fresh_id = if needs_new_id {
        Some(allocate_producer_id(broker).await?)
    } else {
        None
    };
    let now = now_ms();
    let step = with_shard(broker, &transactional_id, |shard, partition| {
        let coordinator_epoch = shard.coordinator_epoch;
        let Some(entry) = shard.txns.get_mut(&transactional_id) else {
            let producer_id = fresh_id.ok_or(ErrorCode::ConcurrentTransactions)?;
            let metadata = TxnMetadata {
                transactional_id: transactional_id.clone(),
                producer_id,
                producer_epoch: 0,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_ms: now,
            };
            shard.txns.insert(
                transactional_id.clone(),
                TxnEntry {
                    metadata: metadata.clone(),
                    pending: true,
                },
            );
            return Ok(InitStep::Write(
                partition,
                coordinator_epoch,
                metadata,
                true,
            ));
        };
        if entry.pending {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let current = &entry.metadata;
        if producer_id >= 0
            && (producer_id != current.producer_id
                || (producer_epoch != current.producer_epoch
                    && producer_epoch != current.last_producer_epoch))
        {
            return Err(ErrorCode::ProducerFenced);
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                let mut fenced = current.clone();
                if fenced.producer_epoch < ProducerEpoch::MAX - 1 {
                    fenced.last_producer_epoch = fenced.producer_epoch;
                    fenced.producer_epoch += 1;
                }
                fenced.state = TxnState::PrepareAbort;
                entry.pending = true;
                Ok(InitStep::Fence(partition, coordinator_epoch, fenced))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = current.clone();
                match fresh_id {
                    Some(fresh) => {
                        next.producer_id = fresh;
                        next.producer_epoch = 0;
                        next.last_producer_epoch = -1;
                    }
                    None => {
                        next.last_producer_epoch = next.producer_epoch;
                        next.producer_epoch += 1;
                    }
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.txn_start_ms = now;
                entry.pending = true;
                Ok(InitStep::Write(partition, coordinator_epoch, next, false))
            }
        }
    })??;
    match step {
        InitStep::Write(partition, coordinator_epoch, metadata, new_id) => {
            let answer = (metadata.producer_id, metadata.producer_epoch);
            let written =
                write_transition(broker, partition, coordinator_epoch, metadata.clone()).await;
            if written.is_err() && new_id {
                // The new id's first write failed: it has no state at all.
                let _ = with_shard(broker, &transactional_id, |shard, _| {
                    if shard
                        .txns
                        .get(&transactional_id)
                        .is_some_and(|e| !e.pending && e.metadata == metadata)
                    {
                        shard.txns.remove(&transactional_id);
                    }
                });
            }
            written.map(|()| answer)
        }
        InitStep::Fence(partition, coordinator_epoch, fenced) => {
            let written =
                write_transition(broker, partition, coordinator_epoch, fenced.clone()).await;
            if written.is_ok() {
                spawn_completion(
                    broker,
                    partition,
                    coordinator_epoch,
                    fenced.transactional_id,
                );
            }
            written?;
            Err(ErrorCode::ConcurrentTransactions)
        }
    }
}

/// Checks the caller's producer id and epoch against the coordinator's.
fn check_producer(
    entry: Option<&TxnEntry>,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
) -> Result<&TxnEntry, ErrorCode> {
    let entry = entry.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    if entry.metadata.producer_id != producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if entry.metadata.producer_epoch != producer_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    if entry.pending {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    Ok(entry)
}

async fn add_partitions(
    broker: &Rc<Broker>,
    transactional_id: String,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, Option<ErrorCode>)> {
    let fail = |error: ErrorCode| {
        partitions
            .iter()
            .map(|tp| (tp.clone(), Some(error)))
            .collect::<Vec<_>>()
    };
    let unknown: Vec<&TopicPartition> = {
        let state = broker.state.borrow();
        partitions
            .iter()
            .filter(|tp| state.metadata.partition(tp).is_none())
            .collect()
    };
    if !unknown.is_empty() {
        return partitions
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
    }
    let now = now_ms();
    let step = with_shard(broker, &transactional_id, |shard, partition| {
        let coordinator_epoch = shard.coordinator_epoch;
        let entry = check_producer(
            shard.txns.get(&transactional_id),
            producer_id,
            producer_epoch,
        )?;
        let current = &entry.metadata;
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
        shard
            .txns
            .get_mut(&transactional_id)
            .expect("checked above")
            .pending = true;
        Ok(Some((partition, coordinator_epoch, next)))
    });
    match step {
        Err(error) | Ok(Err(error)) => fail(error),
        Ok(Ok(None)) => partitions.iter().map(|tp| (tp.clone(), None)).collect(),
        Ok(Ok(Some((partition, coordinator_epoch, next)))) => {
            match write_transition(broker, partition, coordinator_epoch, next).await {
                Ok(()) => partitions.iter().map(|tp| (tp.clone(), None)).collect(),
                Err(error) => fail(error),
            }
        }
    }
}

async fn end_txn(
    broker: &Rc<Broker>,
    transactional_id: String,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    committed: bool,
) -> Result<(), ErrorCode> {
    let step = with_shard(broker, &transactional_id, |shard, partition| {
        let coordinator_epoch = shard.coordinator_epoch;
        let entry = check_producer(
            shard.txns.get(&transactional_id),
            producer_id,
            producer_epoch,
        )?;
        let current = &entry.metadata;
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
        shard
            .txns
            .get_mut(&transactional_id)
            .expect("checked above")
            .pending = true;
        Ok(Some((partition, coordinator_epoch, next)))
    })??;
    let Some((partition, coordinator_epoch, next)) = step else {
        return Ok(());
    };
    write_transition(broker, partition, coordinator_epoch, next).await?;
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
            let Some(shard) = state.txns.shards.get(&partition) else {
                return;
            };
            if shard.coordinator_epoch != coordinator_epoch {
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
        let claimed = with_shard(broker, &transactional_id, |shard, _| {
            if shard.coordinator_epoch != coordinator_epoch {
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
            for (_, partitions) in results {
                for (tp, error) in partitions {
                    if error.is_none() {
                        done.push(tp);
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
        let mut outcomes: Vec<(TopicPartition, Option<ErrorCode>)> = Vec::new();
        let mut pending: Vec<(usize, PendingWrite)> = Vec::new();
        for tp in &marker.partitions {
            match append_marker(broker, tp, &marker, control) {
                Ok(write) => {
                    pending.push((outcomes.len(), write));
                    outcomes.push((tp.clone(), None));
                }
                Err(error) => outcomes.push((tp.clone(), Some(error))),
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
                outcomes[index].1 = outcome;
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
        results.push((marker.producer_id, outcomes));
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
        if replica.isr.len() < replica.min_insync_replicas.max(1) as usize {
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
/// transaction?
pub(crate) fn handle_verify(
    broker: &Rc<Broker>,
    transactional_id: &str,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    partitions: Vec<TopicPartition>,
) -> InternalResponse {
    let verdict = with_shard(broker, transactional_id, |shard, _| {
        let entry = shard
            .txns
            .get(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let metadata = &entry.metadata;
        if metadata.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if metadata.producer_epoch != producer_epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        Ok(partitions
            .iter()
            .map(|tp| {
                let member =
                    metadata.state == TxnState::Ongoing && metadata.partitions.contains(tp);
                (tp.clone(), (!member).then_some(ErrorCode::InvalidTxnState))
            })
            .collect::<Vec<_>>())
    });
    let results = match verdict {
        Ok(Ok(results)) => results,
        Ok(Err(error)) | Err(error) => partitions.into_iter().map(|tp| (tp, Some(error))).collect(),
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
    // (batch index, partition, marker count before verifying)
    let mut to_verify: Vec<(usize, TopicPartition, u64)> = Vec::new();
    {
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
                to_verify.push((index, tp, log.marker_count(batch.producer_id)));
            }
        }
    }
    let Some(transactional_id) = transactional_id else {
        return verdicts;
    };
    if to_verify.is_empty() {
        return verdicts;
    }
    let first = &batches[to_verify[0].0];
    let (producer_id, producer_epoch) = (first.producer_id, first.producer_epoch);
    let partitions: Vec<TopicPartition> = to_verify.iter().map(|(_, tp, _)| tp.clone()).collect();
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
                _ => Err(ErrorCode::CoordinatorNotAvailable),
            }
        }
    };
    let results: BTreeMap<TopicPartition, Option<ErrorCode>> = match response {
        Ok(InternalResponse::VerifyTxnPartitions { results }) => results.into_iter().collect(),
        Ok(_) => BTreeMap::new(),
        Err(error) => partitions
            .iter()
            .map(|tp| (tp.clone(), Some(error)))
            .collect(),
    };
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    for (index, tp, markers_before) in to_verify {
        let batch = &batches[index];
        let verdict = match results.get(&tp).copied() {
            None => Some(ErrorCode::NotEnoughReplicas),
            Some(None) => {
                // A marker landed while we asked: the verification is stale.
                let markers_now = disk
                    .logs
                    .get(&tp)
                    .map_or(0, |log| log.marker_count(batch.producer_id));
                (markers_now != markers_before).then_some(ErrorCode::InvalidTxnState)
            }
            // Coordinator trouble is retriable for the producer (Kafka
            // answers NOT_ENOUGH_REPLICAS so that old clients retry).
            Some(Some(
                ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::ConcurrentTransactions,
            )) => Some(ErrorCode::NotEnoughReplicas),
            Some(Some(error)) => Some(error),
        };
        verdicts[index] = verdict;
    }
    drop(disk);
    drop(state);
    verdicts
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
            for (&partition, shard) in state.txns.shards.iter_mut() {
                if !shard.loaded {
                    continue;
                }
                let coordinator_epoch = shard.coordinator_epoch;
                for entry in shard.txns.values_mut() {
                    let metadata = &entry.metadata;
                    let overdue = now >= metadata.txn_start_ms + u64::from(metadata.timeout_ms);
                    if entry.pending
                        || metadata.state != TxnState::Ongoing
                        || !(overdue || expire_all)
                    {
                        continue;
                    }
                    let mut fenced = metadata.clone();
                    if fenced.producer_epoch < ProducerEpoch::MAX - 1 {
                        fenced.last_producer_epoch = fenced.producer_epoch;
                        fenced.producer_epoch += 1;
                    }
                    fenced.state = TxnState::PrepareAbort;
                    entry.pending = true;
                    expired.push((partition, coordinator_epoch, fenced));
                }
            }
        }
        for (partition, coordinator_epoch, fenced) in expired {
            broker.trace.record(
                broker.node(),
                EventKind::TxnTimedOut,
                Subject::Name(&fenced.transactional_id),
                [fenced.producer_id, i64::from(fenced.producer_epoch), 0, 0],
            );
            let broker = broker.clone();
            tokio::task::spawn_local(async move {
                let transactional_id = fenced.transactional_id.clone();
                if write_transition(&broker, partition, coordinator_epoch, fenced)
                    .await
                    .is_ok()
                {
                    complete(&broker, partition, coordinator_epoch, transactional_id).await;
                }
            });
        }
    }
}

/// This broker now leads `__transaction_state-<partition>`: load it after
/// the load delay, then finish the transactions it finds prepared.
pub(crate) fn start_loading(broker: &Rc<Broker>, partition: i32, leader_epoch: i32) {
    broker.state.borrow_mut().txns.shards.insert(
        partition,
        TxnShard {
            coordinator_epoch: leader_epoch,
            loaded: false,
            txns: BTreeMap::new(),
        },
    );
    let broker = broker.clone();
    tokio::task::spawn_local(async move {
        tokio::time::sleep(Duration::from_millis(
            broker.config.coordinator_load_delay_ms,
        ))
        .await;
        let prepared = load(&broker, partition, leader_epoch);
        for transactional_id in prepared {
            spawn_completion(&broker, partition, leader_epoch, transactional_id);
        }
    });
}

fn load(broker: &Broker, partition: i32, leader_epoch: i32) -> Vec<String> {
    let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
    let (entries, prepared) = {
        let mut state = broker.state.borrow_mut();
        let still_leader = state
            .replicas
            .get(&tp)
            .is_some_and(|r| r.is_leader() && r.leader_epoch == leader_epoch);
        let Some(shard) = state.txns.shards.get_mut(&partition) else {
            return Vec::new();
        };
        if shard.coordinator_epoch != leader_epoch || shard.loaded || !still_leader {
            return Vec::new();
        }
        let disk = broker.disk.borrow();
        for stored in disk.logs[&tp].batches() {
            let batch = stored.decode();
            for record in &batch.records {
                let Some(value) = &record.value else {
                    continue;
                };
                let metadata: TxnMetadata = postcard::from_bytes(value).unwrap_or_else(|e| {
                    panic!(
                        "undecodable record in {tp} at {}: {e} (seed {})",
                        batch.base_offset,
                        crate::cluster::current_seed()
                    )
                });
                shard.txns.insert(
                    metadata.transactional_id.clone(),
                    TxnEntry {
                        metadata,
                        pending: false,
                    },
                );
            }
        }
        shard.loaded = true;
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
    };
    broker.trace_partition(
        EventKind::CoordinatorLoaded,
        &tp,
        [i64::from(leader_epoch), entries, 0, 0],
    );
    broker.notify_changed();
    prepared
}

/// This broker no longer leads `__transaction_state-<partition>`.
pub(crate) fn unload(broker: &Rc<Broker>, partition: i32) {
    let removed = broker.state.borrow_mut().txns.shards.remove(&partition);
    if let Some(shard) = removed {
        broker.trace_partition(
            EventKind::CoordinatorUnloaded,
            &TopicPartition::new(TRANSACTION_STATE_TOPIC, partition),
            [i64::from(shard.coordinator_epoch), 0, 0, 0],
        );
        broker.notify_changed();
    }
}
