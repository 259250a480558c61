//! Shared helpers of the real-Kafka integration tests.
//!
//! The tests that need a broker are `#[ignore]`d; `scripts/test` starts one
//! (`scripts/kafka start`) and runs them with `--include-ignored` and
//! `EDDY_KAFKA_BOOTSTRAP` / `EDDY_KAFKA_BOOTSTRAP_SASL` set.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, Isolation, Message, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition, Transport,
};

pub const NEEDS_BROKER: &str = "needs a Kafka broker: scripts/test runs it";

/// The test broker's plaintext address; a clear failure if it is not set.
pub fn bootstrap() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!("EDDY_KAFKA_BOOTSTRAP is not set: start a broker with `scripts/kafka start` (scripts/test does)")
    })
}

/// The test broker's SASL/SCRAM address.
pub fn bootstrap_sasl() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP_SASL").unwrap_or_else(|_| {
        panic!("EDDY_KAFKA_BOOTSTRAP_SASL is not set: start a broker with `scripts/kafka start` (scripts/test does)")
    })
}

/// The SCRAM user `scripts/kafka` creates (test-only credentials).
pub fn sasl_credentials() -> (String, String) {
    (
        std::env::var("EDDY_KAFKA_TEST_SASL_USERNAME").unwrap_or_else(|_| "eddy-test".into()),
        std::env::var("EDDY_KAFKA_TEST_SASL_PASSWORD")
            .unwrap_or_else(|_| "eddy-test-secret".into()),
    )
}

pub fn transport() -> KafkaTransport {
    KafkaTransport::new(KafkaConfig::new(bootstrap()))
}

/// A name no earlier run used: topics persist while the broker runs.
pub fn unique(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    format!(
        "{name}-{}-{run}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn create_topic(transport: &KafkaTransport, name: &str, partitions: i32) {
    let admin = transport.admin().await.expect("admin client");
    admin
        .create_topic(&NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
}

pub fn record(topic: &str, partition: i32, key: &str, value: &str) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition: Some(partition),
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

pub fn producer_config(name: &str, transactional_id: Option<String>) -> ProducerConfig {
    let mut config = ProducerConfig::new(name, transactional_id);
    config.linger_ms = 1;
    config.request_timeout_ms = 15_000;
    config.delivery_timeout_ms = 15_000;
    config.transaction_timeout_ms = 30_000;
    config
}

pub fn consumer_config(name: &str, group: Option<String>, isolation: Isolation) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(name, group);
    config.isolation = isolation;
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 500;
    config.request_timeout_ms = 15_000;
    config
}

/// Produces `values` to one partition with an idempotent producer and waits
/// for every acknowledgement.
pub async fn produce_plain(
    transport: &KafkaTransport,
    topic: &str,
    partition: i32,
    values: &[&str],
) {
    let mut producer = transport
        .producer(&producer_config("plain", None))
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for value in values {
        deliveries.push(
            producer
                .send(record(topic, partition, "k", value))
                .expect("send"),
        );
    }
    for delivery in deliveries {
        delivery.await.expect("delivery");
    }
}

/// Reads one partition from the start (no group) until `expected` records
/// came or `wait` passed; returns the values read.
pub async fn read_partition(
    transport: &KafkaTransport,
    topic: &str,
    partition: i32,
    isolation: Isolation,
    expected: usize,
    wait: Duration,
) -> Vec<Message> {
    let mut consumer = transport
        .consumer(&consumer_config("reader", None, isolation))
        .await
        .expect("consumer");
    consumer
        .assign(&[TopicPartition::new(topic, partition)])
        .await
        .expect("assign");
    let mut messages = Vec::new();
    let steps = (wait.as_millis() / 100).max(1);
    for _ in 0..steps {
        for event in consumer
            .poll(1000, Duration::from_millis(100))
            .await
            .expect("poll")
        {
            if let ConsumerEvent::Message(message) = event {
                messages.push(message);
            }
        }
        if messages.len() >= expected && expected > 0 {
            break;
        }
    }
    consumer.close().await.expect("close");
    messages
}

pub fn values(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.value.as_deref().unwrap_or_default().to_vec()).expect("utf-8"))
        .collect()
}
