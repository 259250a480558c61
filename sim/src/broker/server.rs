//! Connections and request handling.
//!
//! A connection's requests are handled one at a time, in order (Kafka mutes
//! a connection while a request is in flight): read, handle (possibly
//! waiting: long-poll Fetch, acks=all Produce), answer, read the next.

use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, Isolation, NewTopic, TopicPartition};
use turmoil::net::TcpStream;

use crate::broker::log::{StoredBatch, batch_size_bytes};
use crate::broker::partition::Role;
use crate::broker::producer_state::AppendCheck;
use crate::broker::{
    Broker, BrokerDisk, BrokerState, coordinator_partition, group_coordinator, txn_coordinator,
};
use crate::cluster::{CONTROLLER_HOST, CONTROLLER_PORT, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::internal::{EpochQuery, InternalRequest, InternalResponse};
use crate::protocol::{
    AbortedTransaction, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, BrokerId, BrokerInfo, CoordinatorType, CreateTopicsRequest,
    CreateTopicsResponse, EndTxnRequest, EndTxnResponse, FetchPartition, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, Frame, FrameBuffer,
    HeartbeatRequest, HeartbeatResponse, InitProducerIdRequest, InitProducerIdResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsResult,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, OffsetSpec, PartitionMetadata, ProduceBatch,
    ProduceRequest, ProduceResponse, ProduceResult, Request, Response, SyncGroupRequest,
    SyncGroupResponse, TopicError, TopicMetadata, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    codes, read_frame_buffered, write_frame_buffered, write_started_frame,
};
use crate::rpc::Connection;
use crate::trace::{EventKind, Subject};
use crate::world::now_ms;

/// Serves one client (or broker) connection until it closes.
pub(crate) async fn serve_connection(broker: Rc<Broker>, mut stream: TcpStream) {
    let mut input = FrameBuffer::default();
    let mut output = FrameBuffer::default();
    loop {
        let frame: Frame<Request> = match read_frame_buffered(&mut stream, &mut input).await {
            Ok(Some(frame)) => frame,
            // A clean close, a reset, or bytes that are not a request (Kafka
            // closes the connection on an invalid request).
            _ => return,
        };
        let written = match handle(&broker, frame.correlation_id, frame.body, &mut output).await {
            Reply::Value(response) => {
                let reply = Frame {
                    correlation_id: frame.correlation_id,
                    body: response,
                };
                write_frame_buffered(&mut stream, &reply, &mut output).await
            }
            Reply::Encoded => write_started_frame(&mut stream, &mut output).await,
        };
        if written.is_err() {
            return;
        }
    }
}

/// An answer: a value, or (Fetch) a frame already encoded in the
/// connection's output buffer, made directly from stored batches (see
/// [`encode_fetch_body`]).
enum Reply {
    Value(Response),
    Encoded,
}

/// Kafka's API key of a request (for the trace).
fn api_key(request: &Request) -> i64 {
    match request {
        Request::Produce(ProduceRequest { .. }) => 0,
        Request::Fetch(FetchRequest { .. }) => 1,
        Request::ListOffsets(ListOffsetsRequest { .. }) => 2,
        Request::Metadata(MetadataRequest { .. }) => 3,
        Request::OffsetCommit(OffsetCommitRequest { .. }) => 8,
        Request::OffsetFetch(OffsetFetchRequest { .. }) => 9,
        Request::FindCoordinator(FindCoordinatorRequest { .. }) => 10,
        Request::JoinGroup(JoinGroupRequest { .. }) => 11,
        Request::Heartbeat(HeartbeatRequest { .. }) => 12,
        Request::LeaveGroup(LeaveGroupRequest { .. }) => 13,
        Request::SyncGroup(SyncGroupRequest { .. }) => 14,
        Request::CreateTopics(CreateTopicsRequest { .. }) => 19,
        Request::InitProducerId(InitProducerIdRequest { .. }) => 22,
        Request::AddPartitionsToTxn(AddPartitionsToTxnRequest { .. }) => 24,
        Request::AddOffsetsToTxn(AddOffsetsToTxnRequest { .. }) => 25,
        Request::EndTxn(EndTxnRequest { .. }) => 26,
        Request::TxnOffsetCommit(TxnOffsetCommitRequest { .. }) => 28,
        Request::Internal(InternalRequest::OffsetsForLeaderEpoch { .. }) => 23,
        Request::Internal(InternalRequest::ReplicaFetch { .. }) => 1,
        Request::Internal(InternalRequest::WriteTxnMarkers { .. }) => 27,
        Request::Internal(_) => 1000,
    }
}

fn code(error: Option<ErrorCode>) -> i64 {
    error
        .map(|e| e.kafka_code().map_or(-1, i64::from))
        .unwrap_or(0)
}

/// The first error a response carries (0 if none), for the trace.
fn first_error(response: &Response) -> i64 {
    let first = |errors: &mut dyn Iterator<Item = Option<ErrorCode>>| {
        errors.flatten().next().map_or(0, |e| code(Some(e)))
    };
    match response {
        Response::Metadata(MetadataResponse { topics, .. }) => {
            first(&mut topics.iter().map(|t| t.error))
        }
        Response::CreateTopics(CreateTopicsResponse { results }) => {
            first(&mut results.iter().map(|r| r.error))
        }
        Response::Produce(ProduceResponse { results }) => {
            first(&mut results.iter().map(|r| r.error))
        }
        Response::Fetch(FetchResponse { error, partitions }) => {
            first(&mut std::iter::once(*error).chain(partitions.iter().map(|p| p.error)))
        }
        Response::ListOffsets(ListOffsetsResponse { results }) => {
            first(&mut results.iter().map(|r| r.offset.err()))
        }
        Response::FindCoordinator(FindCoordinatorResponse { error, .. })
        | Response::JoinGroup(JoinGroupResponse { error, .. })
        | Response::SyncGroup(SyncGroupResponse { error, .. })
        | Response::Heartbeat(HeartbeatResponse { error, .. })
        | Response::LeaveGroup(LeaveGroupResponse { error })
        | Response::InitProducerId(InitProducerIdResponse { error, .. })
        | Response::AddOffsetsToTxn(AddOffsetsToTxnResponse { error })
        | Response::EndTxn(EndTxnResponse { error }) => code(*error),
        Response::OffsetFetch(OffsetFetchResponse { error, offsets }) => {
            first(&mut std::iter::once(*error).chain(offsets.iter().map(|o| o.error)))
        }
        Response::OffsetCommit(OffsetCommitResponse { results })
        | Response::AddPartitionsToTxn(AddPartitionsToTxnResponse { results })
        | Response::TxnOffsetCommit(TxnOffsetCommitResponse { results }) => {
            first(&mut results.iter().map(|r| r.error))
        }
        Response::Internal(_) => 0,
    }
}

async fn handle(
    broker: &Rc<Broker>,
    correlation_id: u32,
    request: Request,
    output: &mut FrameBuffer,
) -> Reply {
    let api = api_key(&request);
    // Replica fetches and broker-to-broker calls show in the trace through
    // what they change (replica appends, truncations, markers).
    let traced = !matches!(
        request,
        Request::Fetch(FetchRequest {
            replica_id: Some(_),
            ..
        }) | Request::Internal(_)
    );
    let response = match request {
        Request::Fetch(FetchRequest {
            replica_id,
            isolation,
            max_wait_ms,
            partitions,
        }) => {
            let error = handle_fetch(
                broker,
                replica_id,
                isolation,
                max_wait_ms,
                partitions,
                output.start_frame(correlation_id),
            )
            .await;
            if traced {
                broker.trace.record(
                    broker.node(),
                    EventKind::Request,
                    Subject::None,
                    [api, error, 0, 0],
                );
            }
            return Reply::Encoded;
        }
        Request::Internal(InternalRequest::ReplicaFetch {
            replica_id,
            max_wait_ms,
            partitions,
        }) => {
            handle_replica_fetch(
                broker,
                replica_id,
                max_wait_ms,
                partitions,
                output.start_frame(correlation_id),
            )
            .await;
            return Reply::Encoded;
        }
        Request::Metadata(MetadataRequest { topics }) => handle_metadata(broker, topics),
        Request::CreateTopics(CreateTopicsRequest { topics, timeout_ms }) => {
            handle_create_topics(broker, topics, timeout_ms).await
        }
        Request::Produce(ProduceRequest {
            transactional_id,
            timeout_ms,
            batches,
        }) => handle_produce(broker, transactional_id, timeout_ms, batches).await,
        Request::ListOffsets(ListOffsetsRequest {
            isolation,
            partitions,
        }) => handle_list_offsets(broker, isolation, partitions),
        Request::FindCoordinator(FindCoordinatorRequest { key_type, key }) => {
            handle_find_coordinator(broker, key_type, &key)
        }
        Request::InitProducerId(InitProducerIdRequest {
            transactional_id: None,
            ..
        }) => handle_init_idempotent_producer(broker).await,
        request @ (Request::InitProducerId(InitProducerIdRequest { .. })
        | Request::AddPartitionsToTxn(AddPartitionsToTxnRequest { .. })
        | Request::AddOffsetsToTxn(AddOffsetsToTxnRequest { .. })
        | Request::EndTxn(EndTxnRequest { .. })) => txn_coordinator::handle(broker, request).await,
        request @ (Request::JoinGroup(JoinGroupRequest { .. })
        | Request::SyncGroup(SyncGroupRequest { .. })
        | Request::Heartbeat(HeartbeatRequest { .. })
        | Request::LeaveGroup(LeaveGroupRequest { .. })
        | Request::OffsetCommit(OffsetCommitRequest { .. })
        | Request::OffsetFetch(OffsetFetchRequest { .. })
        | Request::TxnOffsetCommit(TxnOffsetCommitRequest { .. })) => {
            group_coordinator::handle(broker, request).await
        }
        Request::Internal(request) => Response::Internal(handle_internal(broker, request).await),
    };
    if traced {
        broker.trace.record(
            broker.node(),
            EventKind::Request,
            Subject::None,
            [api, first_error(&response), 0, 0],
        );
    }
    Reply::Value(response)
}

async fn handle_internal(broker: &Rc<Broker>, request: InternalRequest) -> InternalResponse {
    match request {
        InternalRequest::OffsetsForLeaderEpoch { queries } => {
            InternalResponse::OffsetsForLeaderEpoch {
                results: queries
                    .into_iter()
                    .map(|query| {
                        let result = offsets_for_leader_epoch(broker, &query);
                        (query.topic_partition, result)
                    })
                    .collect(),
            }
        }
        InternalRequest::ReplicaFetch { .. } => {
            unreachable!("replica fetches are answered encoded (see `handle`)")
        }
        InternalRequest::WriteTxnMarkers { markers } => {
            txn_coordinator::handle_write_markers(broker, markers).await
        }
        InternalRequest::VerifyTxnPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        } => txn_coordinator::handle_verify(
            broker,
            &transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        ),
        _ => InternalResponse::Error {
            error: codes::INVALID_REQUEST,
        },
    }
}

/// Checks that this broker leads `tp` in the requester's epoch.
fn check_leader(
    state: &BrokerState,
    tp: &TopicPartition,
    current_leader_epoch: Option<i32>,
) -> Result<i32, ErrorCode> {
    let Some(replica) = state.replicas.get(tp) else {
        return Err(if state.metadata.partition(tp).is_none() {
            ErrorCode::UnknownTopicOrPartition
        } else {
            ErrorCode::NotLeaderOrFollower
        });
    };
    // Replicas are made from metadata images, which only grow: a replica's
    // partition is always known (so the lookup above decides alone).
    debug_assert!(
        state.metadata.partition(tp).is_some(),
        "replica of {tp} without metadata"
    );
    if let Some(epoch) = current_leader_epoch {
        if epoch < replica.leader_epoch {
            return Err(codes::FENCED_LEADER_EPOCH);
        }
        if epoch > replica.leader_epoch {
            return Err(codes::UNKNOWN_LEADER_EPOCH);
        }
    }
    if !replica.is_leader() {
        return Err(ErrorCode::NotLeaderOrFollower);
    }
    Ok(replica.leader_epoch)
}

fn offsets_for_leader_epoch(broker: &Broker, query: &EpochQuery) -> Result<(i32, i64), ErrorCode> {
    let state = broker.state.borrow();
    check_leader(
        &state,
        &query.topic_partition,
        Some(query.current_leader_epoch),
    )?;
    let disk = broker.disk.borrow();
    Ok(disk.logs[&query.topic_partition].end_offset_for_epoch(query.leader_epoch))
}

fn handle_metadata(broker: &Broker, topics: Option<Vec<String>>) -> Response {
    let image = broker.state.borrow().metadata.clone();
    let brokers: Vec<BrokerInfo> = image
        .brokers
        .iter()
        .filter(|(_, b)| !b.fenced)
        .map(|(&id, b)| BrokerInfo {
            id,
            host: b.host.clone(),
        })
        .collect();
    let controller_id = brokers.first().map_or(-1, |b| b.id);
    let names: Vec<String> = match topics {
        Some(names) => names,
        None => image.topics.keys().cloned().collect(),
    };
    let topics = names
        .into_iter()
        .map(|name| match image.topics.get(&name) {
            None => TopicMetadata {
                error: Some(if crate::controller::valid_topic_name(&name) {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    codes::INVALID_TOPIC
                }),
                name,
                partitions: Vec::new(),
            },
            Some(topic) => TopicMetadata {
                name,
                error: None,
                partitions: topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(index, p)| PartitionMetadata {
                        partition: index as i32,
                        error: p.leader.is_none().then_some(codes::LEADER_NOT_AVAILABLE),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    })
                    .collect(),
            },
        })
        .collect();
    Response::Metadata(MetadataResponse {
        brokers,
        controller_id,
        topics,
    })
}

async fn handle_create_topics(broker: &Broker, topics: Vec<NewTopic>, timeout_ms: u32) -> Response {
    let mut connection =
        Connection::with_reconnects(CONTROLLER_HOST, CONTROLLER_PORT, broker.reconnects.clone());
    let request = Request::Internal(InternalRequest::CreateTopics {
        topics: topics.clone(),
    });
    let results = match connection.call(request, u64::from(timeout_ms.max(1))).await {
        Ok(Response::Internal(InternalResponse::CreateTopics { results })) => results,
        _ => topics
            .iter()
            .map(|t| TopicError {
                name: t.name.clone(),
                error: Some(ErrorCode::RequestTimedOut),
            })
            .collect(),
    };
    // Answer once this broker's metadata has the new topics, so a client's
    // next request here finds them (bounded by the request's timeout).
    let created: Vec<&String> = results
        .iter()
        .filter(|result| result.error.is_none())
        .map(|result| &result.name)
        .collect();
    let mut changed = broker.changed.subscribe();
    let timeout = tokio::time::sleep(Duration::from_millis(u64::from(timeout_ms)));
    tokio::pin!(timeout);
    loop {
        let known = {
            let state = broker.state.borrow();
            created
                .iter()
                .all(|name| state.metadata.topics.contains_key(*name))
        };
        if known {
            break;
        }
        tokio::select! {
            biased;
            result = changed.changed() => if result.is_err() { break },
            _ = &mut timeout => break,
        }
    }
    Response::CreateTopics(CreateTopicsResponse { results })
}

/// A write waiting for acks=all: done once the high watermark reaches
/// `required_offset` in the same leader epoch.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub required_offset: i64,
}

/// What a leader append produced.
pub(crate) struct Appended {
    pub base_offset: i64,
    pub pending: PendingWrite,
}

/// Validates and appends a producer batch as leader.
pub(crate) fn append_to_leader(
    broker: &Broker,
    batch: ProduceBatch,
    allow_internal: bool,
) -> Result<Appended, ErrorCode> {
    let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
    let (producer_id, producer_epoch, sequence) =
        (batch.producer_id, batch.producer_epoch, batch.base_sequence);
    let result = append_to_leader_inner(broker, &tp, batch, allow_internal);
    if let Err(error) = &result {
        broker.trace_partition(
            EventKind::AppendRejected,
            &tp,
            [
                code(Some(*error)),
                producer_id,
                i64::from(producer_epoch),
                i64::from(sequence),
            ],
        );
    }
    result
}

fn append_to_leader_inner(
    broker: &Broker,
    tp: &TopicPartition,
    batch: ProduceBatch,
    allow_internal: bool,
) -> Result<Appended, ErrorCode> {
    let moved;
    let appended;
    {
        let state = broker.state.borrow();
        let leader_epoch = check_leader(&state, tp, None)?;
        let replica = &state.replicas[tp];
        if replica.internal && !allow_internal {
            return Err(codes::INVALID_TOPIC);
        }
        if !allow_internal && batch.producer_id >= 0 && batch.base_sequence < 0 {
            return Err(ErrorCode::OutOfOrderSequenceNumber);
        }
        if batch_size_bytes(&batch.records) > broker.config.max_message_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        if replica.isr.len() < replica.min_insync_replicas.max(1) as usize {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        let mut disk = broker.disk.borrow_mut();
        let log = disk.logs.get_mut(tp).expect("a replica has a log");
        match log.check_produce(&batch) {
            Err(error) => return Err(error),
            Ok(AppendCheck::Duplicate {
                base_offset,
                last_offset,
            }) => {
                broker.trace_partition(
                    EventKind::DuplicateBatch,
                    tp,
                    [
                        base_offset,
                        batch.producer_id,
                        i64::from(batch.base_sequence),
                        0,
                    ],
                );
                return Ok(Appended {
                    base_offset,
                    pending: PendingWrite {
                        tp: tp.clone(),
                        leader_epoch,
                        required_offset: last_offset + 1,
                    },
                });
            }
            Ok(AppendCheck::Append) => {}
        }
        let records = batch.records.len() as i64;
        let producer_id = batch.producer_id;
        let base_offset = log.append_as_leader(batch, leader_epoch);
        broker.trace_partition(
            EventKind::Append,
            tp,
            [base_offset, records, i64::from(leader_epoch), producer_id],
        );
        moved = replica.maybe_advance_high_watermark(broker.id, log);
        appended = Appended {
            base_offset,
            pending: PendingWrite {
                tp: tp.clone(),
                leader_epoch,
                required_offset: log.log_end_offset(),
            },
        };
    }
    if let Some((from, to)) = moved {
        broker.trace_partition(EventKind::HighWatermark, tp, [from, to, 0, 0]);
    }
    broker.notify_changed();
    Ok(appended)
}

/// The state of a pending write now: `Some(outcome)` once decided.
fn write_outcome(broker: &Broker, pending: &PendingWrite) -> Option<Option<ErrorCode>> {
    let state = broker.state.borrow();
    let Some(replica) = state.replicas.get(&pending.tp) else {
        return Some(Some(ErrorCode::NotLeaderOrFollower));
    };
    if !replica.is_leader() || replica.leader_epoch != pending.leader_epoch {
        return Some(Some(ErrorCode::NotLeaderOrFollower));
    }
    let disk = broker.disk.borrow();
    let log = &disk.logs[&pending.tp];
    if log.log_end_offset() < pending.required_offset {
        // Truncated under us (cannot happen while we lead in this epoch).
        return Some(Some(ErrorCode::NotLeaderOrFollower));
    }
    if log.high_watermark >= pending.required_offset {
        if replica.isr.len() < replica.min_insync_replicas.max(1) as usize {
            return Some(Some(ErrorCode::NotEnoughReplicasAfterAppend));
        }
        return Some(None);
    }
    None
}

/// Waits until every write is replicated to the ISR (the high watermark
/// passed it), the leader changed, or `timeout_ms` passed
/// (REQUEST_TIMED_OUT). Outcomes in the order of `pending`.
pub(crate) async fn wait_for_replication(
    broker: &Broker,
    pending: &[PendingWrite],
    timeout_ms: u64,
) -> Vec<Option<ErrorCode>> {
    let mut outcomes: Vec<Option<Option<ErrorCode>>> = vec![None; pending.len()];
    let mut changed = broker.changed.subscribe();
    let timeout = tokio::time::sleep(Duration::from_millis(timeout_ms));
    tokio::pin!(timeout);
    loop {
        for (outcome, write) in outcomes.iter_mut().zip(pending) {
            if outcome.is_none() {
                *outcome = write_outcome(broker, write);
            }
        }
        if outcomes.iter().all(Option::is_some) {
            break;
        }
        tokio::select! {
            biased;
            result = changed.changed() => if result.is_err() { break },
            _ = &mut timeout => break,
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Some(ErrorCode::RequestTimedOut)))
        .collect()
}

async fn handle_produce(
    broker: &Rc<Broker>,
    transactional_id: Option<String>,
    timeout_ms: u32,
    batches: Vec<ProduceBatch>,
) -> Response {
    let mut results: Vec<ProduceResult> = Vec::with_capacity(batches.len());
    let mut pending = Vec::new();
    let mut pending_index = Vec::new();
    // KIP-890: the first transactional write of a transaction to a
    // partition is verified with the transaction coordinator.
    let verified =
        txn_coordinator::verify_produce(broker, transactional_id.as_deref(), &batches).await;
    for (batch, verification) in batches.into_iter().zip(verified) {
        let mut result = ProduceResult {
            topic: batch.topic.clone(),
            partition: batch.partition,
            error: None,
            base_offset: -1,
            log_start_offset: 0,
        };
        let outcome = match verification {
            Some(error) => Err(error),
            None => append_to_leader(broker, batch, false),
        };
        match outcome {
            Ok(appended) => {
                result.base_offset = appended.base_offset;
                pending_index.push(results.len());
                pending.push(appended.pending);
            }
            Err(error) => result.error = Some(error),
        }
        results.push(result);
    }
    if !pending.is_empty() {
        let outcomes = wait_for_replication(broker, &pending, u64::from(timeout_ms)).await;
        for (index, outcome) in pending_index.into_iter().zip(outcomes) {
            if let Some(error) = outcome {
                results[index].error = Some(error);
                results[index].base_offset = -1;
            }
        }
    }
    Response::Produce(ProduceResponse { results })
}

/// Updates what the leader knows of a follower from its fetch.
fn record_follower_fetch(
    broker: &Broker,
    follower: BrokerId,
    partitions: &[FetchPartition],
    tps: &[TopicPartition],
) {
    let now = now_ms();
    let mut moved = Vec::new();
    let mut wake_isr = false;
    {
        let mut state = broker.state.borrow_mut();
        let mut disk = broker.disk.borrow_mut();
        for (asked, tp) in partitions.iter().zip(tps) {
            let Some(replica) = state.replicas.get_mut(tp) else {
                continue;
            };
            if asked.current_leader_epoch != Some(replica.leader_epoch) {
                continue;
            }
            let in_maximal_isr = replica.in_maximal_isr(follower);
            let log = disk.logs.get_mut(tp).expect("a replica has a log");
            let end = log.log_end_offset();
            let Role::Leader(leader) = &mut replica.role else {
                continue;
            };
            if asked.fetch_offset > end {
                continue;
            }
            let Some(progress) = leader.followers.get_mut(&follower) else {
                continue;
            };
            progress.log_end_offset = Some(asked.fetch_offset);
            if asked.fetch_offset >= end {
                progress.last_caught_up_ms = now;
            } else if asked.fetch_offset >= progress.leader_end_offset_at_last_fetch {
                progress.last_caught_up_ms = progress.last_fetch_ms;
            }
            progress.leader_end_offset_at_last_fetch = end;
            progress.last_fetch_ms = now;
            if !in_maximal_isr
                && asked.fetch_offset >= log.high_watermark
                && asked.fetch_offset >= leader.epoch_start_offset
            {
                wake_isr = true;
            }
            if let Some(change) = replica.maybe_advance_high_watermark(broker.id, log) {
                moved.push((tp.clone(), change));
            }
        }
    }
    for (tp, (from, to)) in &moved {
        broker.trace_partition(EventKind::HighWatermark, tp, [*from, *to, 0, 0]);
    }
    if !moved.is_empty() {
        broker.notify_changed();
    }
    if wake_isr {
        broker.isr_wake.notify_one();
    }
}

/// What one partition of a fetch returns, borrowed from the log.
struct FetchView<'a> {
    error: Option<ErrorCode>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    aborted: Vec<AbortedTransaction>,
    batches: &'a [StoredBatch],
}

/// Reads one partition of a fetch. With `materialize` false only says
/// whether there is anything to answer with (data or an error).
fn fetch_view<'a>(
    state: &BrokerState,
    disk: &'a BrokerDisk,
    replica: bool,
    isolation: Isolation,
    tp: &TopicPartition,
    asked: &FetchPartition,
    materialize: bool,
) -> (FetchView<'a>, bool) {
    let mut view = FetchView {
        error: None,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        aborted: Vec::new(),
        batches: &[],
    };
    if let Err(error) = check_leader(state, tp, asked.current_leader_epoch) {
        view.error = Some(error);
        return (view, true);
    }
    let log = &disk.logs[tp];
    view.high_watermark = log.high_watermark;
    view.last_stable_offset = log.last_stable_offset();
    view.log_start_offset = 0;
    if asked.fetch_offset < 0 || asked.fetch_offset > log.log_end_offset() {
        view.error = Some(codes::OFFSET_OUT_OF_RANGE);
        return (view, true);
    }
    let upper = match (replica, isolation) {
        (true, _) => log.log_end_offset(),
        (false, Isolation::ReadUncommitted) => log.high_watermark,
        (false, Isolation::ReadCommitted) => log.last_stable_offset(),
    };
    if asked.fetch_offset >= upper {
        return (view, false);
    }
    if materialize {
        view.batches = log.read(asked.fetch_offset, upper, asked.max_records.max(1));
        if let Some(last) = view.batches.last() {
            if !replica && isolation == Isolation::ReadCommitted {
                view.aborted = log.aborted_between(asked.fetch_offset, last.header.next_offset());
            }
        }
    }
    (view, true)
}

fn topic_partitions(partitions: &[FetchPartition]) -> Vec<TopicPartition> {
    partitions
        .iter()
        .map(|asked| TopicPartition::new(asked.topic.clone(), asked.partition))
        .collect()
}

/// Waits (up to `max_wait_ms`) until some partition has data or an error.
async fn wait_for_fetchable(
    broker: &Broker,
    replica: bool,
    isolation: Isolation,
    max_wait_ms: u32,
    partitions: &[FetchPartition],
    tps: &[TopicPartition],
) {
    let mut changed = broker.changed.subscribe();
    let timeout = tokio::time::sleep(Duration::from_millis(u64::from(max_wait_ms)));
    tokio::pin!(timeout);
    loop {
        let ready = {
            let state = broker.state.borrow();
            let disk = broker.disk.borrow();
            partitions.iter().zip(tps).any(|(asked, tp)| {
                fetch_view(&state, &disk, replica, isolation, tp, asked, false).1
            })
        };
        if ready || max_wait_ms == 0 {
            return;
        }
        tokio::select! {
            biased;
            result = changed.changed() => if result.is_err() { return },
            _ = &mut timeout => return,
        }
    }
}

/// The variant index of `Response::Fetch` in postcard's encoding (checked
/// by a test against the derived encoding).
const FETCH_RESPONSE_VARIANT: u64 = 3;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let buffer = std::mem::take(out);
    *out = postcard::to_extend(value, buffer).expect("fetch answers encode");
}

/// The postcard encoding of `Response::Fetch(FetchResponse { error: None, partitions })`
/// with each partition's batches copied from their stored encoding instead
/// of being decoded and encoded again.
fn encode_fetch_body(partitions: &[(&FetchPartition, FetchView<'_>)], out: &mut Vec<u8>) {
    let bytes: usize = partitions
        .iter()
        .flat_map(|(_, view)| view.batches.iter().map(|b| b.encoded.len()))
        .sum();
    out.reserve(bytes + 64 * partitions.len() + 16);
    put_varint(out, FETCH_RESPONSE_VARIANT);
    put(out, &None::<ErrorCode>);
    put_varint(out, partitions.len() as u64);
    for (asked, view) in partitions {
        put(
            out,
            &(
                &asked.topic,
                asked.partition,
                view.error,
                view.high_watermark,
                view.last_stable_offset,
                view.log_start_offset,
                &view.aborted,
            ),
        );
        put_varint(out, view.batches.len() as u64);
        for batch in view.batches {
            out.extend_from_slice(&batch.encoded);
        }
    }
}

/// A client's Fetch (or a replica's, with `replica_id`): appends the encoded
/// answer to `out` and returns the first error (for the trace).
async fn handle_fetch(
    broker: &Rc<Broker>,
    replica_id: Option<BrokerId>,
    isolation: Isolation,
    max_wait_ms: u32,
    partitions: Vec<FetchPartition>,
    out: &mut Vec<u8>,
) -> i64 {
    let tps = topic_partitions(&partitions);
    if let Some(follower) = replica_id {
        record_follower_fetch(broker, follower, &partitions, &tps);
    }
    let replica = replica_id.is_some();
    wait_for_fetchable(broker, replica, isolation, max_wait_ms, &partitions, &tps).await;
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    let views: Vec<(&FetchPartition, FetchView<'_>)> = partitions
        .iter()
        .zip(&tps)
        .map(|(asked, tp)| {
            let (view, _) = fetch_view(&state, &disk, replica, isolation, tp, asked, true);
            (asked, view)
        })
        .collect();
    encode_fetch_body(&views, out);
    code(views.iter().find_map(|(_, view)| view.error))
}

/// A follower's fetch: appends to `out` the encoded answer (a
/// `Response::Internal(InternalResponse::ReplicaFetch { .. })`), its batches
/// copied in their stored encoding.
async fn handle_replica_fetch(
    broker: &Rc<Broker>,
    replica_id: BrokerId,
    max_wait_ms: u32,
    partitions: Vec<FetchPartition>,
    out: &mut Vec<u8>,
) {
    let tps = topic_partitions(&partitions);
    record_follower_fetch(broker, replica_id, &partitions, &tps);
    wait_for_fetchable(
        broker,
        true,
        Isolation::ReadUncommitted,
        max_wait_ms,
        &partitions,
        &tps,
    )
    .await;
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    let views: Vec<FetchView<'_>> = partitions
        .iter()
        .zip(&tps)
        .map(|(asked, tp)| {
            fetch_view(
                &state,
                &disk,
                true,
                Isolation::ReadUncommitted,
                tp,
                asked,
                true,
            )
            .0
        })
        .collect();
    encode_replica_fetch_body(&views, out);
}

/// The postcard encoding of `Response::Internal(InternalResponse::ReplicaFetch
/// { partitions })`, one `ReplicaFetchResult` per view, with each batch's
/// stored encoding copied as its `RawBytes`.
fn encode_replica_fetch_body(views: &[FetchView<'_>], out: &mut Vec<u8>) {
    thread_local! {
        /// The encoding of the two enum variants: that of an answer with no
        /// partitions, without its final byte (the empty list's length).
        static PREFIX: Vec<u8> = {
            let mut empty = postcard::to_stdvec(&Response::Internal(
                InternalResponse::ReplicaFetch { partitions: Vec::new() },
            ))
            .expect("replica fetch answers encode");
            assert_eq!(empty.pop(), Some(0), "an empty list encodes as 0");
            empty
        };
    }
    let bytes: usize = views
        .iter()
        .flat_map(|view| view.batches.iter().map(|b| b.encoded.len() + 48))
        .sum();
    out.reserve(bytes + 32 * views.len() + 8);
    PREFIX.with(|prefix| out.extend_from_slice(prefix));
    put_varint(out, views.len() as u64);
    for view in views {
        put(out, &(view.error, view.high_watermark));
        put_varint(out, view.batches.len() as u64);
        for batch in view.batches {
            put(out, &batch.header);
            put_varint(out, batch.encoded.len() as u64);
            out.extend_from_slice(&batch.encoded);
        }
    }
}

fn handle_list_offsets(
    broker: &Broker,
    isolation: Isolation,
    partitions: Vec<ListOffsetsPartition>,
) -> Response {
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    let results = partitions
        .into_iter()
        .map(
            |ListOffsetsPartition {
                 topic_partition: tp,
                 spec,
             }| {
                let result = check_leader(&state, &tp, None).and_then(|_| {
                    let log = &disk.logs[&tp];
                    let leader = state.replicas[&tp]
                        .leader_state()
                        .expect("checked leader above");
                    if leader.epoch_start_offset > log.high_watermark {
                        return Err(codes::OFFSET_NOT_AVAILABLE);
                    }
                    Ok(match spec {
                        OffsetSpec::Earliest => 0,
                        OffsetSpec::Latest => match isolation {
                            Isolation::ReadUncommitted => log.high_watermark,
                            Isolation::ReadCommitted => log.last_stable_offset(),
                        },
                    })
                });
                ListOffsetsResult {
                    topic_partition: tp,
                    offset: result,
                }
            },
        )
        .collect();
    Response::ListOffsets(ListOffsetsResponse { results })
}

/// The internal partition and its leader for a coordinator key.
pub(crate) fn coordinator_for(
    broker: &Broker,
    key_type: CoordinatorType,
    key: &str,
) -> Result<(TopicPartition, BrokerInfo), ErrorCode> {
    let (topic, partitions) = match key_type {
        CoordinatorType::Group => (OFFSETS_TOPIC, broker.config.offsets_topic_partitions),
        CoordinatorType::Transaction => (
            TRANSACTION_STATE_TOPIC,
            broker.config.transaction_state_partitions,
        ),
    };
    let tp = TopicPartition::new(topic, coordinator_partition(key, partitions));
    let state = broker.state.borrow();
    let leader = state
        .metadata
        .partition(&tp)
        .and_then(|p| p.leader)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let host = state
        .metadata
        .brokers
        .get(&leader)
        .map(|b| b.host.clone())
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((tp, BrokerInfo { id: leader, host }))
}

fn handle_find_coordinator(broker: &Broker, key_type: CoordinatorType, key: &str) -> Response {
    if key.is_empty() {
        return Response::FindCoordinator(FindCoordinatorResponse {
            error: Some(codes::INVALID_REQUEST),
            node: None,
        });
    }
    match coordinator_for(broker, key_type, key) {
        Ok((_, node)) => Response::FindCoordinator(FindCoordinatorResponse {
            error: None,
            node: Some(node),
        }),
        Err(error) => Response::FindCoordinator(FindCoordinatorResponse {
            error: Some(error),
            node: None,
        }),
    }
}

/// Takes a producer id from this broker's block, fetching a new block from
/// the controller when it is used up.
pub(crate) async fn allocate_producer_id(broker: &Broker) -> Result<i64, ErrorCode> {
    {
        let mut state = broker.state.borrow_mut();
        let (next, end) = state.producer_ids;
        if next < end {
            state.producer_ids.0 += 1;
            return Ok(next);
        }
    }
    let mut connection =
        Connection::with_reconnects(CONTROLLER_HOST, CONTROLLER_PORT, broker.reconnects.clone());
    let request = Request::Internal(InternalRequest::AllocateProducerIds {
        broker_id: broker.id,
    });
    match connection
        .call(request, broker.config.inter_broker_request_timeout_ms)
        .await
    {
        Ok(Response::Internal(InternalResponse::AllocateProducerIds {
            error: None,
            first_producer_id,
            count,
        })) if count > 0 => {
            let mut state = broker.state.borrow_mut();
            state.producer_ids = (first_producer_id + 1, first_producer_id + count);
            Ok(first_producer_id)
        }
        _ => Err(ErrorCode::CoordinatorLoadInProgress),
    }
}

async fn handle_init_idempotent_producer(broker: &Broker) -> Response {
    match allocate_producer_id(broker).await {
        Ok(producer_id) => Response::InitProducerId(InitProducerIdResponse {
            error: None,
            producer_id,
            producer_epoch: 0,
        }),
        Err(error) => Response::InitProducerId(InitProducerIdResponse {
            error: Some(error),
            producer_id: -1,
            producer_epoch: -1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::ReplicaFetchResult;
    use crate::protocol::{ControlType, FetchResult, RecordBatch, RecordData};

    #[test]
    fn a_spliced_fetch_answer_decodes_as_the_derived_encoding_would() {
        let batch = |base: i64, control: Option<ControlType>| RecordBatch {
            base_offset: base,
            partition_leader_epoch: 2,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 3,
            transactional: true,
            control,
            records: if control.is_some() {
                Vec::new()
            } else {
                vec![RecordData {
                    key: Some(b"k".to_vec()),
                    value: None,
                    timestamp_ms: -5,
                    headers: vec![("h".into(), vec![1, 2])],
                }]
            },
        };
        let batches = vec![batch(4, None), batch(5, Some(ControlType::Abort))];
        let stored: Vec<StoredBatch> = batches.iter().map(StoredBatch::encode).collect();
        let asked = [
            FetchPartition {
                topic: "t".into(),
                partition: 1,
                fetch_offset: 4,
                current_leader_epoch: None,
                max_records: 10,
            },
            FetchPartition {
                topic: "u".into(),
                partition: 300,
                fetch_offset: 0,
                current_leader_epoch: Some(1),
                max_records: 10,
            },
        ];
        let aborted = vec![AbortedTransaction {
            producer_id: 7,
            first_offset: 4,
        }];
        let views = vec![
            (
                &asked[0],
                FetchView {
                    error: None,
                    high_watermark: 6,
                    last_stable_offset: 6,
                    log_start_offset: 0,
                    aborted: aborted.clone(),
                    batches: &stored,
                },
            ),
            (
                &asked[1],
                FetchView {
                    error: Some(codes::FENCED_LEADER_EPOCH),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted: Vec::new(),
                    batches: &[],
                },
            ),
        ];
        let expected = Response::Fetch(FetchResponse {
            error: None,
            partitions: vec![
                FetchResult {
                    topic: "t".into(),
                    partition: 1,
                    error: None,
                    high_watermark: 6,
                    last_stable_offset: 6,
                    log_start_offset: 0,
                    aborted_transactions: aborted,
                    batches,
                },
                FetchResult {
                    topic: "u".into(),
                    partition: 300,
                    error: Some(codes::FENCED_LEADER_EPOCH),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted_transactions: Vec::new(),
                    batches: Vec::new(),
                },
            ],
        });
        let mut body = vec![9];
        encode_fetch_body(&views, &mut body);
        let body = &body[1..];
        assert_eq!(body, postcard::to_stdvec(&expected).unwrap());
        let decoded: Response = postcard::from_bytes(body).unwrap();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_spliced_replica_fetch_answer_decodes_as_the_derived_encoding_would() {
        let record = |value: &[u8]| RecordData {
            key: None,
            value: Some(value.to_vec()),
            timestamp_ms: 1,
            headers: Vec::new(),
        };
        let big: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let batches = [
            RecordBatch {
                base_offset: 0,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                transactional: false,
                control: None,
                records: vec![record(b"a"), record(&big)],
            },
            RecordBatch {
                base_offset: 2,
                partition_leader_epoch: 3,
                producer_id: 9,
                producer_epoch: 0,
                base_sequence: 1,
                transactional: true,
                control: Some(ControlType::Commit),
                records: Vec::new(),
            },
        ];
        let stored: Vec<StoredBatch> = batches.iter().map(StoredBatch::encode).collect();
        let views = vec![
            FetchView {
                error: None,
                high_watermark: 2,
                last_stable_offset: 2,
                log_start_offset: 0,
                aborted: Vec::new(),
                batches: &stored,
            },
            FetchView {
                error: Some(ErrorCode::NotLeaderOrFollower),
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                aborted: Vec::new(),
                batches: &[],
            },
        ];
        let expected = Response::Internal(InternalResponse::ReplicaFetch {
            partitions: vec![
                ReplicaFetchResult {
                    error: None,
                    high_watermark: 2,
                    batches: stored.iter().map(StoredBatch::to_replica).collect(),
                },
                ReplicaFetchResult {
                    error: Some(ErrorCode::NotLeaderOrFollower),
                    high_watermark: -1,
                    batches: Vec::new(),
                },
            ],
        });
        let mut body = vec![7, 7];
        encode_replica_fetch_body(&views, &mut body);
        let body = &body[2..];
        assert_eq!(body, postcard::to_stdvec(&expected).unwrap());
        let decoded: Response = postcard::from_bytes(body).unwrap();
        assert_eq!(decoded, expected);
    }
}
