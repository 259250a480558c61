//! Helpers for the client's end-to-end tests: a 3-broker cluster, the
//! transport, and polling loops with bounds.
#![allow(dead_code)]

use std::time::Duration;

use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, Message, NewTopic, ProducerConfig,
    ProducerRecord, TopicPartition, Transport,
};
use eddyline_sim::Seed;
use eddyline_sim::SimTransport;
use eddyline_sim::cluster::{ClusterConfig, ClusterHandle, SimCluster};

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

pub fn transport(handle: &ClusterHandle) -> SimTransport {
    SimTransport::new(handle.bootstrap())
}

pub async fn create_topic(transport: &SimTransport, name: &str, partitions: i32) {
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
    config.session_timeout_ms = 3_000;
    config.heartbeat_interval_ms = 300;
    config.request_timeout_ms = 5_000;
    config
}

pub fn text(message: &Message) -> String {
    String::from_utf8(message.value.clone().unwrap_or_default()).expect("utf-8 values")
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
