//! The helpers of the simulator's integration tests, for both kinds:
//!
//! - broker tests talk the wire protocol directly over `rpc::Connection`
//!   (a tiny raw client) to check what a broker answers;
//! - client tests go through `SimTransport`, the engine's transport on the
//!   simulated cluster, with polling loops that have bounds.
//!
//! Every test's seed honours `EDDY_SEED` ([`seed_or`]); helpers that need
//! the cluster take its handle.
#![allow(dead_code)]

use std::time::Duration;

use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, ErrorCode, Isolation, Message, NewTopic,
    OffsetAndMetadata, ProducerConfig, ProducerRecord, TopicPartition, Transport,
};
use eddyline_sim::Seed;
use eddyline_sim::SimTransport;
use eddyline_sim::cluster::{BROKER_PORT, ClusterConfig, ClusterHandle, SimCluster};
use eddyline_sim::protocol::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, CreateTopicsRequest, CreateTopicsResponse, EndTxnRequest,
    EndTxnResponse, FetchPartition, FetchRequest, FetchResponse, FetchResult,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatResponse, InitProducerIdRequest,
    InitProducerIdResponse, LeaveGroupResponse, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceBatch, ProduceRequest, ProduceResponse, ProduceResult,
    ProducerEpoch, ProducerId, RecordData, Request, Response, TopicError, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use eddyline_sim::rpc::Connection;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The seed of a test: `EDDY_SEED` if set, else the given default.
pub fn seed_or(default: u64) -> Seed {
    match std::env::var("EDDY_SEED") {
        Ok(text) => text.parse().expect("EDDY_SEED must be a seed"),
        Err(_) => Seed::new(default),
    }
}

pub fn cluster(seed: u64) -> SimCluster {
    SimCluster::new(seed_or(seed), config_from_env()).expect("valid config")
}

/// The default cluster with the output the environment asks for:
/// `EDDY_SIM_TRACE=1` echoes every trace event, `EDDY_SIM_HASH=1` prints
/// each finished run's fingerprint (the library reads no environment).
pub fn config_from_env() -> ClusterConfig {
    let on = |name: &str| std::env::var_os(name).is_some_and(|value| value == "1");
    ClusterConfig {
        trace_echo: on("EDDY_SIM_TRACE"),
        print_run_fingerprint: on("EDDY_SIM_HASH"),
        ..ClusterConfig::default()
    }
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A broker that is not crashed, to send broker-agnostic requests to.
pub fn live_broker(handle: &ClusterHandle, attempt: usize) -> i32 {
    (0..3)
        .map(|i| ((attempt + i) % 3) as i32)
        .find(|&id| !handle.is_broker_down(id))
        .unwrap_or(0)
}

/// Waits until every broker is live and the internal topics exist.
pub async fn wait_ready(handle: &ClusterHandle) {
    for _ in 0..20_000 {
        if handle.is_ready() {
            return;
        }
        sleep_ms(5).await;
    }
    panic!("cluster not ready");
}

pub fn connect(broker: i32) -> Connection {
    Connection::new(&format!("broker-{broker}"), BROKER_PORT)
}

pub async fn call(connection: &mut Connection, request: Request) -> Response {
    connection
        .call(request, 30_000)
        .await
        .unwrap_or_else(|e| panic!("call failed: {e}"))
}

pub async fn create_topic(handle: &ClusterHandle, name: &str, partitions: i32) {
    let mut connection = connect(0);
    let response = call(
        &mut connection,
        Request::CreateTopics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor: -1,
                configs: Vec::new(),
            }],
            timeout_ms: 5_000,
        }),
    )
    .await;
    match response {
        Response::CreateTopics(CreateTopicsResponse { results }) => {
            assert_eq!(
                results,
                vec![TopicError {
                    name: name.to_string(),
                    error: None
                }]
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    // Wait until every partition has a leader and a full ISR.
    for partition in 0..partitions {
        let tp = TopicPartition::new(name, partition);
        wait_for(handle, |h| {
            h.partition_state(&tp)
                .is_some_and(|p| p.leader.is_some() && p.isr.len() == p.replicas.len())
        })
        .await;
    }
}

pub async fn wait_for(handle: &ClusterHandle, condition: impl Fn(&ClusterHandle) -> bool) {
    for _ in 0..20_000 {
        if condition(handle) {
            return;
        }
        sleep_ms(5).await;
    }
    panic!("condition not reached");
}

pub fn records(values: &[&str]) -> Vec<RecordData> {
    values
        .iter()
        .map(|value| RecordData {
            key: Some(value.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            timestamp_ms: 1,
            headers: Vec::new(),
        })
        .collect()
}

/// A batch from producer `producer_id`.
pub fn batch(
    tp: &TopicPartition,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    base_sequence: i32,
    transactional: bool,
    values: &[&str],
) -> ProduceBatch {
    ProduceBatch {
        topic: tp.topic.clone(),
        partition: tp.partition,
        producer_id,
        producer_epoch,
        base_sequence,
        transactional,
        records: records(values),
    }
}

pub async fn produce_to(
    connection: &mut Connection,
    transactional_id: Option<&str>,
    batch: ProduceBatch,
) -> ProduceResult {
    match call(
        connection,
        Request::Produce(ProduceRequest {
            transactional_id: transactional_id.map(str::to_string),
            // The producers' request.timeout.ms default (Java and librdkafka).
            timeout_ms: 30_000,
            batches: vec![batch],
        }),
    )
    .await
    {
        Response::Produce(ProduceResponse { mut results }) => results.remove(0),
        other => panic!("unexpected {other:?}"),
    }
}

/// Produces to the partition's current leader.
pub async fn produce(
    handle: &ClusterHandle,
    transactional_id: Option<&str>,
    batch: ProduceBatch,
) -> ProduceResult {
    let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
    let leader = handle.leader_of(&tp).expect("a leader");
    produce_to(&mut connect(leader), transactional_id, batch).await
}

pub async fn fetch_from(
    connection: &mut Connection,
    tp: &TopicPartition,
    offset: i64,
    isolation: Isolation,
    max_wait_ms: u32,
) -> FetchResult {
    match call(
        connection,
        Request::Fetch(FetchRequest {
            replica_id: None,
            isolation,
            max_wait_ms,
            partitions: vec![FetchPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                fetch_offset: offset,
                current_leader_epoch: None,
                max_records: 10_000,
            }],
        }),
    )
    .await
    {
        Response::Fetch(FetchResponse {
            error: None,
            mut partitions,
        }) => partitions.remove(0),
        other => panic!("unexpected {other:?}"),
    }
}

/// Fetches from the partition's current leader, without waiting.
pub async fn fetch(
    handle: &ClusterHandle,
    tp: &TopicPartition,
    offset: i64,
    isolation: Isolation,
) -> FetchResult {
    let leader = handle.leader_of(tp).expect("a leader");
    fetch_from(&mut connect(leader), tp, offset, isolation, 0).await
}

/// The values of the data records in a fetch result, with their offsets.
pub fn values(result: &FetchResult) -> Vec<(i64, String)> {
    result
        .batches
        .iter()
        .filter(|b| b.control.is_none())
        .flat_map(|b| {
            b.records.iter().enumerate().map(move |(i, r)| {
                (
                    b.base_offset + i as i64,
                    String::from_utf8(r.value.clone().unwrap_or_default()).unwrap(),
                )
            })
        })
        .collect()
}

pub fn ok(result: &ProduceResult) -> i64 {
    assert_eq!(result.error, None, "{result:?}");
    result.base_offset
}

pub fn err(result: &ProduceResult) -> ErrorCode {
    result
        .error
        .unwrap_or_else(|| panic!("expected an error: {result:?}"))
}

/// A connection to the coordinator of `key`, retrying while there is none.
pub async fn coordinator(
    handle: &ClusterHandle,
    key_type: eddyline_sim::protocol::CoordinatorType,
    key: &str,
) -> Connection {
    for attempt in 0..1_000 {
        // Any broker answers; a crashed one never does (try the next).
        let response = connect(live_broker(handle, attempt))
            .call(
                Request::FindCoordinator(FindCoordinatorRequest {
                    key_type,
                    key: key.to_string(),
                }),
                500,
            )
            .await;
        if let Ok(Response::FindCoordinator(FindCoordinatorResponse {
            error: None,
            node: Some(node),
        })) = response
        {
            return Connection::new(&node.host, BROKER_PORT);
        }
        sleep_ms(10).await;
    }
    panic!("no coordinator for {key}");
}

/// Calls the coordinator of `key` until it answers without a coordinator
/// error (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
/// CONCURRENT_TRANSACTIONS), as a client's retry loop would.
pub async fn coordinator_call(
    handle: &ClusterHandle,
    key_type: eddyline_sim::protocol::CoordinatorType,
    key: &str,
    request: Request,
) -> Response {
    let mut last = String::from("no answer");
    for _ in 0..1_000 {
        let mut connection = coordinator(handle, key_type, key).await;
        let response = match connection.call(request.clone(), 2_000).await {
            Ok(response) => response,
            Err(error) => {
                last = error.to_string();
                sleep_ms(10).await;
                continue;
            }
        };
        if !retriable_coordinator_error(&response) {
            return response;
        }
        last = format!("{response:?}");
        sleep_ms(10).await;
    }
    panic!(
        "coordinator never answered {request:?} (at {} ms; last: {last})",
        eddyline_sim::world::now_ms()
    );
}

fn retriable_coordinator_error(response: &Response) -> bool {
    let retriable = |error: &Option<ErrorCode>| {
        matches!(
            error,
            Some(
                ErrorCode::NotCoordinator
                    | ErrorCode::CoordinatorLoadInProgress
                    | ErrorCode::CoordinatorNotAvailable
                    | ErrorCode::ConcurrentTransactions
            )
        )
    };
    match response {
        Response::InitProducerId(InitProducerIdResponse { error, .. })
        | Response::AddOffsetsToTxn(AddOffsetsToTxnResponse { error })
        | Response::EndTxn(EndTxnResponse { error })
        | Response::Heartbeat(HeartbeatResponse { error })
        | Response::LeaveGroup(LeaveGroupResponse { error })
        | Response::OffsetFetch(OffsetFetchResponse { error, .. }) => retriable(error),
        Response::AddPartitionsToTxn(AddPartitionsToTxnResponse { results })
        | Response::TxnOffsetCommit(TxnOffsetCommitResponse { results })
        | Response::OffsetCommit(OffsetCommitResponse { results }) => {
            results.iter().any(|result| retriable(&result.error))
        }
        _ => false,
    }
}

pub async fn txn_call(
    handle: &ClusterHandle,
    transactional_id: &str,
    request: Request,
) -> Response {
    coordinator_call(
        handle,
        eddyline_sim::protocol::CoordinatorType::Transaction,
        transactional_id,
        request,
    )
    .await
}

pub async fn group_call(handle: &ClusterHandle, group_id: &str, request: Request) -> Response {
    coordinator_call(
        handle,
        eddyline_sim::protocol::CoordinatorType::Group,
        group_id,
        request,
    )
    .await
}

/// InitProducerId for a transactional id: (producer id, epoch).
pub async fn init_transactions(
    handle: &ClusterHandle,
    transactional_id: &str,
    timeout_ms: u32,
) -> (ProducerId, ProducerEpoch) {
    let response = txn_call(
        handle,
        transactional_id,
        Request::InitProducerId(InitProducerIdRequest {
            transactional_id: Some(transactional_id.to_string()),
            transaction_timeout_ms: timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
        }),
    )
    .await;
    match response {
        Response::InitProducerId(InitProducerIdResponse {
            error: None,
            producer_id,
            producer_epoch,
        }) => (producer_id, producer_epoch),
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn add_partitions(
    handle: &ClusterHandle,
    transactional_id: &str,
    (producer_id, producer_epoch): (ProducerId, ProducerEpoch),
    partitions: &[TopicPartition],
) -> Vec<Option<ErrorCode>> {
    match txn_call(
        handle,
        transactional_id,
        Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            partitions: partitions.to_vec(),
        }),
    )
    .await
    {
        Response::AddPartitionsToTxn(AddPartitionsToTxnResponse { results }) => {
            results.into_iter().map(|result| result.error).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn end_txn(
    handle: &ClusterHandle,
    transactional_id: &str,
    (producer_id, producer_epoch): (ProducerId, ProducerEpoch),
    committed: bool,
) -> Option<ErrorCode> {
    match txn_call(
        handle,
        transactional_id,
        Request::EndTxn(EndTxnRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            committed,
        }),
    )
    .await
    {
        Response::EndTxn(EndTxnResponse { error }) => error,
        other => panic!("unexpected {other:?}"),
    }
}

/// Waits until the partition's last stable offset reaches `offset`.
pub async fn wait_for_lso(handle: &ClusterHandle, tp: &TopicPartition, offset: i64) -> FetchResult {
    for _ in 0..2_000 {
        if let Some(leader) = handle.leader_of(tp) {
            let mut connection = connect(leader);
            if let Ok(Response::Fetch(FetchResponse { partitions, .. })) = connection
                .call(
                    Request::Fetch(FetchRequest {
                        replica_id: None,
                        isolation: Isolation::ReadCommitted,
                        max_wait_ms: 0,
                        partitions: vec![FetchPartition {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            fetch_offset: 0,
                            current_leader_epoch: None,
                            max_records: 100_000,
                        }],
                    }),
                    5_000,
                )
                .await
            {
                if partitions[0].error.is_none() && partitions[0].last_stable_offset >= offset {
                    return partitions[0].clone();
                }
            }
        }
        sleep_ms(10).await;
    }
    panic!("LSO of {tp} never reached {offset}");
}

// ---- client tests: through `SimTransport` ----------------------------

pub fn transport(handle: &ClusterHandle) -> SimTransport {
    SimTransport::new(handle.bootstrap())
}

/// Creates a topic through the transport's admin client (replication 3).
pub async fn admin_create_topic(transport: &SimTransport, name: &str, partitions: i32) {
    let admin = transport.admin().await.expect("admin");
    admin
        .create_topic(&NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: 3,
            configs: Vec::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

pub fn to_partition(topic: &str, partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition: Some(partition),
        key: None,
        value: Some(value.as_bytes().to_vec()),
        timestamp_ms: Some(1_000),
        headers: Vec::new(),
    }
}

pub fn keyed(topic: &str, key: &str, value: &str) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition: None,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        timestamp_ms: None,
        headers: vec![("h".to_string(), b"1".to_vec())],
    }
}

pub fn producer_config(name: &str, transactional_id: Option<&str>) -> ProducerConfig {
    let mut config = ProducerConfig::new(name, transactional_id.map(str::to_string));
    config.request_timeout_ms = 5_000;
    config.delivery_timeout_ms = 60_000;
    config.transaction_timeout_ms = 30_000;
    config
}

pub fn consumer_config(name: &str, group: Option<&str>) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(name, group.map(str::to_string));
    // Kafka's group.min.session.timeout.ms: the shortest session a broker
    // with Kafka's defaults accepts.
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 600;
    config.request_timeout_ms = 5_000;
    config
}

pub fn text(message: &Message) -> String {
    String::from_utf8(message.value.as_deref().unwrap_or_default().to_vec()).expect("utf-8 values")
}

pub fn messages(events: &[ConsumerEvent]) -> Vec<Message> {
    events
        .iter()
        .filter_map(|event| match event {
            ConsumerEvent::Message(message) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Polls until `done` holds for everything polled so far; panics after
/// `timeout_ms` of simulated time.
pub async fn poll_until<C: Consumer>(
    consumer: &mut C,
    timeout_ms: u64,
    mut done: impl FnMut(&[ConsumerEvent]) -> bool,
) -> Vec<ConsumerEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    let mut events = Vec::new();
    while !done(&events) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "poll_until: condition not met within {timeout_ms} ms; got {events:?}"
        );
        let batch = consumer
            .poll(100, Duration::from_millis(100))
            .await
            .expect("poll");
        events.extend(batch);
    }
    events
}

/// Polls until `count` messages came; returns them.
pub async fn read_messages<C: Consumer>(
    consumer: &mut C,
    count: usize,
    timeout_ms: u64,
) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    let mut read = Vec::with_capacity(count);
    while read.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read_messages: {} of {count} messages within {timeout_ms} ms",
            read.len()
        );
        let batch = consumer
            .poll(500, Duration::from_millis(100))
            .await
            .expect("poll");
        read.extend(batch.into_iter().filter_map(|event| match event {
            ConsumerEvent::Message(message) => Some(message),
            _ => None,
        }));
    }
    read
}

/// Polls for `duration_ms` and returns every event that came.
pub async fn poll_for<C: Consumer>(consumer: &mut C, duration_ms: u64) -> Vec<ConsumerEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(duration_ms);
    let mut events = Vec::new();
    while tokio::time::Instant::now() < deadline {
        events.extend(
            consumer
                .poll(100, Duration::from_millis(50))
                .await
                .expect("poll"),
        );
    }
    events
}

/// Polls for `duration_ms` and returns every message that came.
pub async fn read_for<C: Consumer>(consumer: &mut C, duration_ms: u64) -> Vec<Message> {
    messages(&poll_for(consumer, duration_ms).await)
}

pub fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

// ---- broker tests: settings and KIP-360 / KIP-447 calls ---------------

/// A cluster with [`config_from_env`] changed by `configure`: a test sets
/// the timings it relies on, whatever the defaults are.
pub fn cluster_with(seed: u64, configure: impl FnOnce(&mut ClusterConfig)) -> SimCluster {
    let mut config = config_from_env();
    configure(&mut config);
    SimCluster::new(seed_or(seed), config).expect("valid config")
}

fn init_producer_id_request(
    transactional_id: &str,
    timeout_ms: u32,
    (producer_id, producer_epoch): (ProducerId, ProducerEpoch),
) -> Request {
    Request::InitProducerId(InitProducerIdRequest {
        transactional_id: Some(transactional_id.to_string()),
        transaction_timeout_ms: timeout_ms,
        producer_id,
        producer_epoch,
    })
}

/// InitProducerId with the caller's producer id and epoch (KIP-360),
/// retried through coordinator errors and CONCURRENT_TRANSACTIONS as a
/// client does: the final answer.
pub async fn init_producer_id(
    handle: &ClusterHandle,
    transactional_id: &str,
    timeout_ms: u32,
    producer: (ProducerId, ProducerEpoch),
) -> InitProducerIdResponse {
    let request = init_producer_id_request(transactional_id, timeout_ms, producer);
    match txn_call(handle, transactional_id, request).await {
        Response::InitProducerId(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

/// InitProducerId with the caller's producer id and epoch, retried only
/// while the coordinator is not there: its first real answer (a
/// CONCURRENT_TRANSACTIONS is returned, not retried).
pub async fn init_producer_id_once(
    handle: &ClusterHandle,
    transactional_id: &str,
    timeout_ms: u32,
    producer: (ProducerId, ProducerEpoch),
) -> InitProducerIdResponse {
    let request = init_producer_id_request(transactional_id, timeout_ms, producer);
    for _ in 0..1_000 {
        let mut connection = coordinator(
            handle,
            eddyline_sim::protocol::CoordinatorType::Transaction,
            transactional_id,
        )
        .await;
        match connection.call(request.clone(), 2_000).await {
            Ok(Response::InitProducerId(InitProducerIdResponse {
                error:
                    Some(
                        ErrorCode::NotCoordinator
                        | ErrorCode::CoordinatorLoadInProgress
                        | ErrorCode::CoordinatorNotAvailable,
                    ),
                ..
            }))
            | Err(_) => sleep_ms(10).await,
            Ok(Response::InitProducerId(response)) => return response,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    panic!("no transaction coordinator answered for {transactional_id}");
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the
/// transaction.
pub async fn add_offsets(
    handle: &ClusterHandle,
    transactional_id: &str,
    (producer_id, producer_epoch): (ProducerId, ProducerEpoch),
    group_id: &str,
) -> Option<ErrorCode> {
    match txn_call(
        handle,
        transactional_id,
        Request::AddOffsetsToTxn(AddOffsetsToTxnRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            group_id: group_id.to_string(),
        }),
    )
    .await
    {
        Response::AddOffsetsToTxn(AddOffsetsToTxnResponse { error }) => error,
        other => panic!("unexpected {other:?}"),
    }
}

/// What a TxnOffsetCommit carries besides its offsets.
#[derive(Clone, Debug)]
pub struct TxnCommit<'a> {
    pub transactional_id: &'a str,
    pub group_id: &'a str,
    pub producer: (ProducerId, ProducerEpoch),
    pub generation_id: i32,
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
}

/// A TxnOffsetCommit of one offset, retried through coordinator errors:
/// the partition's error.
pub async fn txn_offset_commit(
    handle: &ClusterHandle,
    commit: &TxnCommit<'_>,
    tp: &TopicPartition,
    offset: i64,
) -> Option<ErrorCode> {
    let request = Request::TxnOffsetCommit(TxnOffsetCommitRequest {
        transactional_id: commit.transactional_id.to_string(),
        group_id: commit.group_id.to_string(),
        producer_id: commit.producer.0,
        producer_epoch: commit.producer.1,
        generation_id: commit.generation_id,
        member_id: commit.member_id.to_string(),
        group_instance_id: commit.group_instance_id.map(str::to_string),
        offsets: vec![(
            tp.clone(),
            OffsetAndMetadata {
                offset,
                metadata: format!("txn={offset}"),
            },
        )],
    });
    match group_call(handle, commit.group_id, request).await {
        Response::TxnOffsetCommit(TxnOffsetCommitResponse { results }) => {
            assert_eq!(results.len(), 1, "{results:?}");
            results[0].error
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// OffsetFetch of one partition: its committed offset and its error.
pub async fn fetch_committed(
    handle: &ClusterHandle,
    group_id: &str,
    tp: &TopicPartition,
    require_stable: bool,
) -> (Option<OffsetAndMetadata>, Option<ErrorCode>) {
    match group_call(
        handle,
        group_id,
        Request::OffsetFetch(OffsetFetchRequest {
            group_id: group_id.to_string(),
            partitions: vec![tp.clone()],
            require_stable,
        }),
    )
    .await
    {
        Response::OffsetFetch(OffsetFetchResponse {
            error: None,
            mut offsets,
        }) => {
            let answer = offsets.remove(0);
            (answer.offset, answer.error)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Fetches with `require_stable` until the answer is stable, for at most
/// `patience_ms` of simulated time: the last answer.
pub async fn fetch_stable(
    handle: &ClusterHandle,
    group_id: &str,
    tp: &TopicPartition,
    patience_ms: u64,
) -> (Option<OffsetAndMetadata>, Option<ErrorCode>) {
    let deadline = handle.now_ms() + patience_ms;
    loop {
        let answer = fetch_committed(handle, group_id, tp, true).await;
        if answer.1.is_none() || handle.now_ms() >= deadline {
            return answer;
        }
        sleep_ms(20).await;
    }
}

// ---- sequence checks: what a producer wrote, as the brokers store it ----

/// The id of the broker that coordinates `key` (FindCoordinator, retried
/// while there is none).
pub async fn coordinator_id(
    handle: &ClusterHandle,
    key_type: eddyline_sim::protocol::CoordinatorType,
    key: &str,
) -> i32 {
    for attempt in 0..1_000 {
        let response = connect(live_broker(handle, attempt))
            .call(
                Request::FindCoordinator(FindCoordinatorRequest {
                    key_type,
                    key: key.to_string(),
                }),
                500,
            )
            .await;
        if let Ok(Response::FindCoordinator(FindCoordinatorResponse {
            error: None,
            node: Some(node),
        })) = response
        {
            return node.id;
        }
        sleep_ms(10).await;
    }
    panic!("no coordinator for {key}");
}

/// The last data batch (not a marker) in the leader's log of `tp`: whose
/// producer id, epoch and sequences a test can reuse to write as that
/// producer.
pub fn last_data_batch(
    handle: &ClusterHandle,
    tp: &TopicPartition,
) -> eddyline_sim::records::RecordBatch {
    let leader = handle.leader_of(tp).expect("a leader");
    let (batches, _) = handle.replica_log(leader, tp).expect("the leader hosts it");
    batches
        .into_iter()
        .rev()
        .find(|batch| batch.control.is_none())
        .unwrap_or_else(|| panic!("no data batch in {tp}"))
}
