//! A tiny raw client for broker tests: requests over `rpc::Connection`.
//! (The real client is `SimTransport`; these tests talk the wire protocol
//! directly to check what a broker answers.)
#![allow(dead_code)]

use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, Isolation, NewTopic, TopicPartition};
use eddyline_sim::Seed;
use eddyline_sim::cluster::{BROKER_PORT, ClusterConfig, ClusterHandle, SimCluster};
use eddyline_sim::protocol::{
    FetchPartition, FetchResult, ProduceBatch, ProduceResult, ProducerEpoch, ProducerId,
    RecordData, Request, Response,
};
use eddyline_sim::rpc::Connection;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn cluster(seed: u64) -> SimCluster {
    SimCluster::new(Seed::new(seed), ClusterConfig::default()).expect("valid config")
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Waits until every broker is live and the internal topics exist.
pub async fn wait_ready(handle: &ClusterHandle) {
    for _ in 0..10_000 {
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
        Request::CreateTopics {
            topics: vec![NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor: -1,
                configs: Vec::new(),
            }],
            timeout_ms: 5_000,
        },
    )
    .await;
    match response {
        Response::CreateTopics { results } => assert_eq!(results, vec![(name.to_string(), None)]),
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
        Request::Produce {
            transactional_id: transactional_id.map(str::to_string),
            timeout_ms: 5_000,
            batches: vec![batch],
        },
    )
    .await
    {
        Response::Produce { mut results } => results.remove(0),
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
        Request::Fetch {
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
        },
    )
    .await
    {
        Response::Fetch {
            error: None,
            mut partitions,
        } => partitions.remove(0),
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
