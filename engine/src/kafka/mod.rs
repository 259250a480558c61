//! The [`Transport`] seam over real Apache Kafka, through `rdkafka`
//! (librdkafka 2.12).
//!
//! ```no_run
//! # async fn example() -> eddyline_engine::transport::TransportResult<()> {
//! use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
//! // EDDY_KAFKA_CONFIG / EDDY_KAFKA_* supply credentials (see `config`).
//! let config = KafkaConfig::from_sources(Some("127.0.0.1:9092"), std::env::vars())?;
//! let transport = KafkaTransport::connect(config).await?;
//! # Ok(()) }
//! ```
//!
//! # How the seam's guarantees are kept
//!
//! - **Producers** are librdkafka producers with `enable.idempotence=true`,
//!   `acks=all` and the `murmur2_random` partitioner (Kafka's default for keyed
//!   records). A record with neither key nor partition is rejected before it
//!   reaches librdkafka. A transactional producer's delivery timeout is capped
//!   at its transaction timeout (librdkafka requires it).
//! - **Transactions** are librdkafka's. Its blocking calls (init, commit,
//!   abort, send offsets, flush) run on tokio's blocking pool.
//!   `send_offsets_to_transaction` rebuilds the consumer-group metadata from
//!   the seam's [`GroupMetadata`] (generation, member id) so that the broker
//!   fences a stale generation (KIP-447); see [`ffi`].
//! - **Consumers** never auto-commit (`enable.auto.commit=false`), use the
//!   eager `range` assignor (as the simulator does) and the configured
//!   isolation level. The rebalance callback records the rebalance and does
//!   not apply it: a revocation is reported by `poll` while the member still
//!   owns its partitions and its generation, and is applied (`unassign`) at
//!   the next `poll`; an assignment is reported, `seek`s are collected, and it
//!   is applied (`assign` with those positions, else the committed offsets,
//!   else the reset policy) at the next `poll`. A lost assignment (session
//!   timeout) is unassigned at once and reported as `Lost`.
//! - **Committed offsets** under read_committed: librdkafka sends OffsetFetch
//!   with `require_stable` for read_committed consumers and retries while the
//!   broker answers UNSTABLE_OFFSET_COMMIT, so `committed` waits for open
//!   transactions (bounded by the request timeout).
//! - **Offsets range**: ListOffsets with the consumer's isolation level: the
//!   end is the last stable offset under read_committed, the high watermark
//!   under read_uncommitted.
//!
//! # Cluster metadata
//!
//! Outside the seam, [`KafkaTransport::cluster_metadata`] reports what a
//! Metadata answer lists: the live brokers and a topic's leader, replicas and
//! in-sync replicas per partition (the conformance suite watches failovers
//! on a three-node cluster with it).
//!
//! # Errors a user meets
//!
//! Connecting, metadata and admin calls are bounded by the configuration's
//! timeout (`EDDY_KAFKA_TIMEOUT_MS`, default 10 s). An unreachable broker, a
//! failed authentication and a missing topic each fail with one line naming
//! the address or the topic; secrets are redacted from every message
//! ([`config`]).

mod call;
pub mod config;
mod context;
mod error;
mod ffi;

mod admin;
mod consumer;
mod metadata;
mod producer;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{Producer as _, ThreadedProducer};

pub use admin::KafkaAdmin;
pub use config::{KafkaConfig, Redactor};
pub use consumer::KafkaConsumer;
pub use metadata::{ClusterMetadata, PartitionReplicas};
pub use producer::{KafkaDelivery, KafkaProducer};

use call::{blocking, bounded, create_client};
use context::{CHECK_INTERVAL, ClientShared, ProducerCtx};

use crate::transport::{ConsumerConfig, ProducerConfig, Transport, TransportResult};

/// Real Kafka behind the [`Transport`] seam.
#[derive(Clone, Debug)]
pub struct KafkaTransport {
    config: Arc<KafkaConfig>,
}

impl KafkaTransport {
    /// A transport for this configuration; nothing is contacted yet.
    pub fn new(config: KafkaConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// A transport whose broker answered a metadata request within the
    /// configuration's timeout: fails with one line naming the address if it
    /// is unreachable or refuses the credentials.
    pub async fn connect(config: KafkaConfig) -> TransportResult<Self> {
        let transport = Self::new(config);
        transport.check_connection().await?;
        Ok(transport)
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    pub(crate) fn shared(&self) -> Arc<ClientShared> {
        ClientShared::new(
            self.config.redactor(),
            self.config.bootstrap().to_string(),
            self.config.log_to_stderr(),
        )
    }

    /// Asks the cluster for its metadata, within the configuration's timeout.
    pub async fn check_connection(&self) -> TransportResult<()> {
        let shared = self.shared();
        // A producer client: its polling thread serves librdkafka's error
        // events, so a refused connection or failed authentication is known
        // at once (the admin client never serves them).
        let mut client_config = self.config.client_config();
        client_config.set("client.id", "eddyline-connect");
        let client: Arc<ThreadedProducer<ProducerCtx>> = Arc::new(create_client(
            &self.config,
            client_config,
            ProducerCtx::new(Arc::clone(&shared)),
            "connect",
        )?);
        let timeout_ms = self.config.timeout_ms();
        let what = format!("connecting to Kafka at {}", self.config.bootstrap());
        bounded(&shared, &what, timeout_ms, async {
            loop {
                let probe = Arc::clone(&client);
                let attempt = blocking(&what, move || {
                    probe
                        .client()
                        .fetch_metadata(None, Duration::from_millis(500))
                })
                .await?;
                match attempt {
                    Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
                    _ => tokio::time::sleep(CHECK_INTERVAL).await,
                }
            }
        })
        .await
    }
}

impl Transport for KafkaTransport {
    type Admin = KafkaAdmin;
    type Consumer = KafkaConsumer;
    type Producer = KafkaProducer;

    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn admin(&self) -> TransportResult<KafkaAdmin> {
        KafkaAdmin::new(Arc::clone(&self.config), self.shared())
    }

    async fn consumer(&self, config: &ConsumerConfig) -> TransportResult<KafkaConsumer> {
        KafkaConsumer::new(Arc::clone(&self.config), self.shared(), config.clone())
    }

    async fn producer(&self, config: &ProducerConfig) -> TransportResult<KafkaProducer> {
        KafkaProducer::new(Arc::clone(&self.config), self.shared(), config.clone())
    }
}

#[cfg(test)]
mod tests;
