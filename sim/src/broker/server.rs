//! Connections and request routing.
//!
//! A connection's requests are handled one at a time, in order (Kafka mutes
//! a connection while a request is in flight): read, handle (possibly
//! waiting: long-poll Fetch, acks=all Produce), answer, read the next.

use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, Isolation, NewTopic};
use turmoil::net::TcpStream;

use crate::broker::coordinator_shards::coordinator_for;
use crate::broker::fetch::{handle_fetch, handle_replica_fetch};
use crate::broker::leader_write::{append_to_leader, check_leader, wait_for_replication};
use crate::broker::producer_ids::allocate_producer_id;
use crate::broker::{Broker, error_code_for_trace, group_coordinator, txn_coordinator};
use crate::config::{CONTROLLER_HOST, CONTROLLER_PORT};
use crate::internal::{EpochEnd, EpochEndOffset, EpochQuery, InternalRequest, InternalResponse};
use crate::protocol::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, BrokerInfo, CoordinatorType, CreateTopicsRequest,
    CreateTopicsResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, Frame, FrameBuffer, HeartbeatRequest,
    HeartbeatResponse, InitProducerIdRequest, InitProducerIdResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsResponse, ListOffsetsResult, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, OffsetSpec,
    PartitionMetadata, ProduceBatch, ProduceRequest, ProduceResponse, ProduceResult, ProducerEpoch,
    ProducerId, Request, Response, SyncGroupRequest, SyncGroupResponse, TopicError, TopicMetadata,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, codes, read_frame_buffered,
    write_frame_buffered, write_started_frame,
};
use crate::rpc::Connection;
use crate::trace::{EventKind, Subject};

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
/// [`crate::broker::fetch_encoding`]).
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

/// The first error a response carries (0 if none), for the trace.
fn first_error(response: &Response) -> i64 {
    let first = |errors: &mut dyn Iterator<Item = Option<ErrorCode>>| {
        errors
            .flatten()
            .next()
            .map_or(0, |e| error_code_for_trace(Some(e)))
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
        | Response::EndTxn(EndTxnResponse { error }) => error_code_for_trace(*error),
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
                trace_request(broker, api, error);
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
            producer_id,
            producer_epoch,
            ..
        }) => handle_init_idempotent_producer(broker, producer_id, producer_epoch).await,
        request @ (Request::InitProducerId(InitProducerIdRequest { .. })
        | Request::AddPartitionsToTxn(AddPartitionsToTxnRequest { .. })
        | Request::AddOffsetsToTxn(AddOffsetsToTxnRequest { .. })
        | Request::EndTxn(EndTxnRequest { .. })) => txn_coordinator::handle(broker, request).await,
        request @ (Request::JoinGroup(JoinGroupRequest { .. })
        | Request::SyncGroup(SyncGroupRequest { .. })
        | Request::Heartbeat(HeartbeatRequest { .. })
        | Request::LeaveGroup(LeaveGroupRequest { .. })
        | Request::OffsetCommit(OffsetCommitRequest { .. })
        | Request::OffsetFetch(OffsetFetchRequest { .. })) => {
            group_coordinator::handle(broker, request).await
        }
        Request::TxnOffsetCommit(request) => {
            // KIP-890: the group coordinator has the transaction verified
            // (Kafka's `ReplicaManager` and `AddPartitionsToTxnManager`).
            let transactional_id = request.transactional_id.clone();
            let producer = (request.producer_id, request.producer_epoch);
            group_coordinator::txn_offset_commit(broker, request, |offsets_partition| {
                txn_coordinator::verify_offsets_append(
                    broker,
                    transactional_id,
                    producer,
                    offsets_partition,
                )
            })
            .await
        }
        Request::Internal(request) => Response::Internal(handle_internal(broker, request).await),
    };
    if traced {
        trace_request(broker, api, first_error(&response));
    }
    Reply::Value(response)
}

/// A handled request in the trace: its API and its first error.
fn trace_request(broker: &Broker, api: i64, error: i64) {
    broker.trace.record(
        broker.node(),
        EventKind::Request,
        Subject::None,
        [api, error, 0, 0],
    );
}

async fn handle_internal(broker: &Rc<Broker>, request: InternalRequest) -> InternalResponse {
    match request {
        InternalRequest::OffsetsForLeaderEpoch { queries } => {
            InternalResponse::OffsetsForLeaderEpoch {
                results: queries
                    .into_iter()
                    .map(|query| EpochEndOffset {
                        result: offsets_for_leader_epoch(broker, &query),
                        topic_partition: query.topic_partition,
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

fn offsets_for_leader_epoch(broker: &Broker, query: &EpochQuery) -> Result<EpochEnd, ErrorCode> {
    let state = broker.state.borrow();
    check_leader(
        &state,
        &query.topic_partition,
        Some(query.current_leader_epoch),
    )?;
    let disk = broker.disk.borrow();
    let (leader_epoch, end_offset) =
        disk.logs[&query.topic_partition].end_offset_for_epoch(query.leader_epoch);
    Ok(EpochEnd {
        leader_epoch,
        end_offset,
    })
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

/// InitProducerId without a transactional id: a fresh producer id at
/// epoch 0, whatever id and epoch are named (Kafka 3.8's
/// `TransactionCoordinator.handleInitProducerId`), once they are both
/// named or neither (`KafkaApis.handleInitProducerIdRequest`).
async fn handle_init_idempotent_producer(
    broker: &Broker,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
) -> Response {
    let allocated = match txn_coordinator::expected_producer(producer_id, producer_epoch) {
        Ok(_) => allocate_producer_id(broker).await,
        Err(error) => Err(error),
    };
    match allocated {
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
