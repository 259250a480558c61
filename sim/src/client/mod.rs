//! The client side of the simulated cluster: [`SimTransport`], the engine's
//! [`Transport`] over turmoil TCP to the simulated brokers.
//!
//! It behaves as Kafka's clients do (librdkafka and the Java client are the
//! reference for what a user observes): bootstrap and a metadata cache that
//! follows leader changes; an always-idempotent producer with per-partition
//! sequence numbers, linger batching, at most five in-flight batches per
//! partition and retries that keep their sequence numbers; transactions
//! with AddPartitionsToTxn, AddOffsetsToTxn + TxnOffsetCommit and EndTxn;
//! consumers that fetch from partition leaders, filter aborted transactions
//! under read_committed, and take part in consumer groups with the eager
//! protocol and the range assignor. See `sim/CLIENT-NOTES.md` for the
//! choices made where Kafka's clients differ from each other.
//!
//! Everything runs inside turmoil hosts: single-threaded, on the host's
//! `LocalSet` (background work uses `tokio::task::spawn_local`), with time
//! from `tokio::time` only (simulated), no randomness and ordered maps.

mod admin;
pub mod assignor;
mod connection;
mod consumer;
mod errors;
pub mod fetch_filter;
mod metadata;
mod network;
mod producer;
mod signal;

use std::time::Duration;

use eddyline_engine::transport::{
    ConsumerConfig, ErrorCode, ErrorKind, ProducerConfig, Transport, TransportError,
    TransportResult,
};
use tokio::time::Instant;

pub use admin::SimAdmin;
pub use connection::Endpoint;
pub use consumer::SimConsumer;
pub use producer::{SimDelivery, SimProducer};

use network::NetworkClient;

/// The port simulated brokers listen on unless a bootstrap entry names one.
pub const DEFAULT_BROKER_PORT: u16 = 9092;

/// The simulated clock of the current host. The one place the client reads
/// time: `tokio::time` is driven by turmoil inside a simulation.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now() // determinism: allow (tokio's clock is simulated by turmoil)
}

/// The producer's wall clock in ms since the epoch: turmoil's simulated
/// clock (the record timestamp of a send without one).
pub(crate) fn wall_clock_ms() -> i64 {
    let since_epoch =
        turmoil::since_epoch().expect("SimTransport runs only inside a turmoil simulation host");
    i64::try_from(since_epoch.as_millis()).expect("simulated clock fits in i64 ms")
}

/// Settings of the simulated clients that the seam's configs do not carry,
/// with Kafka's defaults (or librdkafka's where they differ and matter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimClientOptions {
    /// The port of a bootstrap entry without one and of metadata hosts.
    pub broker_port: u16,
    /// `socket.connection.setup.timeout.ms`.
    pub connect_timeout_ms: u32,
    /// `reconnect.backoff.ms`: the wait before reconnecting to an endpoint
    /// that could not be reached.
    pub reconnect_backoff_ms: u32,
    /// `retry.backoff.ms`: the first wait before a retry (doubling).
    pub retry_backoff_ms: u32,
    /// `retry.backoff.max.ms`.
    pub retry_backoff_max_ms: u32,
    /// The timeout of one metadata request (then the next broker is tried).
    pub metadata_timeout_ms: u32,
    /// The timeout of admin calls (the admin client has no config).
    pub admin_timeout_ms: u32,
    /// `fetch.wait.max.ms`: how long a broker may hold a fetch with no data.
    pub fetch_max_wait_ms: u32,
    /// Bound on records returned per partition by one fetch.
    pub fetch_max_records: u32,
    /// `max.in.flight.requests.per.connection` for the idempotent producer.
    pub max_in_flight_per_partition: usize,
    /// Bound on records in one produced batch.
    pub batch_max_records: usize,
    /// Bound on the bytes of one produced batch, counted as the simulated
    /// broker counts a batch against its `message.max.bytes` (1 048 588 by
    /// default): a batch takes no record that would take it past this
    /// bound, but its first record goes in whatever its size. librdkafka's
    /// `min(message.max.bytes, batch.size)`, both 1 000 000 by default
    /// (`rd_kafka_msgset_writer_write_msgq`); a queue holding this many
    /// bytes also ends the linger, as `batch.size` does in librdkafka.
    pub batch_max_bytes: usize,
    /// `max.request.size`: a larger record is refused at send.
    pub max_record_bytes: usize,
    /// librdkafka's `topic.metadata.propagation.max.ms`: how long a record
    /// waits for a topic the metadata says does not exist before it fails
    /// with UnknownTopicOrPartition. 10 s, as the rdkafka transport sets it
    /// (librdkafka's default is 30 s).
    pub topic_missing_timeout_ms: u32,
    /// librdkafka's `queue.buffering.max.messages`: the records a producer
    /// holds (waiting for metadata, queued, batched or in flight, until
    /// their delivery is reported) before `send` refuses more with
    /// QUEUE_FULL, a retriable error, at once — librdkafka's
    /// `rd_kafka_producev` without `RD_KAFKA_MSG_F_BLOCK`, which the
    /// rdkafka transport uses (Kafka's Java producer instead blocks `send`
    /// for up to `max.block.ms` in `BufferPool.allocate`; the seam's `send`
    /// does not wait). The simulated producer holds no bytes to bound, so
    /// `queue.buffering.max.kbytes` has no counterpart.
    pub queue_buffering_max_messages: usize,
    /// `max.in.flight.requests.per.connection`: requests a connection holds
    /// (queued to be written or waiting for their answer); a request beyond
    /// it waits, within its timeout, for one to finish, as librdkafka keeps
    /// it in the broker's output queue. This bounds the connection's
    /// outbox.
    pub max_in_flight_requests_per_connection: usize,
}

impl Default for SimClientOptions {
    fn default() -> Self {
        Self {
            broker_port: DEFAULT_BROKER_PORT,
            connect_timeout_ms: 10_000,
            reconnect_backoff_ms: 50,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1_000,
            metadata_timeout_ms: 5_000,
            admin_timeout_ms: 30_000,
            fetch_max_wait_ms: 500,
            fetch_max_records: 500,
            max_in_flight_per_partition: 5,
            batch_max_records: 1_000,
            // librdkafka's `batch.size` and `message.max.bytes` defaults.
            batch_max_bytes: 1_000_000,
            max_record_bytes: 1_048_576,
            topic_missing_timeout_ms: 10_000,
            // librdkafka's default.
            queue_buffering_max_messages: 100_000,
            // librdkafka's default.
            max_in_flight_requests_per_connection: 1_000_000,
        }
    }
}

/// The engine's [`Transport`] on the simulated cluster. Create it with the
/// cluster's bootstrap list; create clients from it inside turmoil hosts.
#[derive(Clone, Debug)]
pub struct SimTransport {
    bootstrap: Vec<Endpoint>,
    options: SimClientOptions,
}

impl SimTransport {
    /// A transport bootstrapping from these brokers (`"host"` or
    /// `"host:port"`, as `SimCluster::bootstrap()` gives them).
    ///
    /// # Panics
    /// If the list is empty or an entry is not a host name with an optional
    /// numeric port: the bootstrap list comes from the simulator, never
    /// from a user.
    pub fn new<S: AsRef<str>>(bootstrap: impl IntoIterator<Item = S>) -> Self {
        Self::with_options(bootstrap, SimClientOptions::default())
    }

    pub fn with_options<S: AsRef<str>>(
        bootstrap: impl IntoIterator<Item = S>,
        options: SimClientOptions,
    ) -> Self {
        let bootstrap: Vec<Endpoint> = bootstrap
            .into_iter()
            .map(|entry| {
                let entry = entry.as_ref();
                Endpoint::parse(entry, options.broker_port)
                    .unwrap_or_else(|| panic!("bad bootstrap entry {entry:?}"))
            })
            .collect();
        assert!(
            !bootstrap.is_empty(),
            "SimTransport needs a bootstrap broker"
        );
        Self { bootstrap, options }
    }

    pub fn options(&self) -> &SimClientOptions {
        &self.options
    }

    /// Each client instance gets its own connections and metadata, as in
    /// Kafka (the protocol carries no client id: the broker's trace names
    /// connections by host).
    fn network(&self) -> NetworkClient {
        NetworkClient::new(self.bootstrap.clone(), self.options.clone())
    }
}

fn check_timeout(name: &str, value_ms: u32) -> TransportResult<()> {
    if value_ms == 0 {
        return Err(TransportError::new(
            ErrorKind::Fatal,
            ErrorCode::Other(-1),
            format!("{name} must be positive"),
        ));
    }
    Ok(())
}

impl Transport for SimTransport {
    type Admin = SimAdmin;
    type Consumer = SimConsumer;
    type Producer = SimProducer;

    fn name(&self) -> &'static str {
        "sim"
    }

    async fn admin(&self) -> TransportResult<SimAdmin> {
        Ok(SimAdmin::new(self.network()))
    }

    async fn consumer(&self, config: &ConsumerConfig) -> TransportResult<SimConsumer> {
        check_timeout("request_timeout_ms", config.request_timeout_ms)?;
        check_timeout("session_timeout_ms", config.session_timeout_ms)?;
        check_timeout("heartbeat_interval_ms", config.heartbeat_interval_ms)?;
        if config.heartbeat_interval_ms >= config.session_timeout_ms {
            return Err(TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::Other(-1),
                "heartbeat_interval_ms must be lower than session_timeout_ms",
            ));
        }
        // librdkafka's range for `max.poll.interval.ms` (1 .. 86400000) and
        // its check in `rd_kafka_conf_finalize` for the classic protocol.
        if !(1..=86_400_000).contains(&config.max_poll_interval_ms)
            || config.max_poll_interval_ms < config.session_timeout_ms
        {
            return Err(TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::Other(-1),
                "max_poll_interval_ms must be within 1..=86400000 and at least session_timeout_ms",
            ));
        }
        if config.group_id.as_deref() == Some("") {
            return Err(TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::Other(-1),
                "group_id must not be empty",
            ));
        }
        Ok(SimConsumer::new(self.network(), config.clone()))
    }

    async fn producer(&self, config: &ProducerConfig) -> TransportResult<SimProducer> {
        check_timeout("request_timeout_ms", config.request_timeout_ms)?;
        check_timeout("delivery_timeout_ms", config.delivery_timeout_ms)?;
        check_timeout("transaction_timeout_ms", config.transaction_timeout_ms)?;
        if config.transactional_id.as_deref() == Some("") {
            return Err(TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::Other(-1),
                "transactional_id must not be empty",
            ));
        }
        Ok(SimProducer::new(self.network(), config.clone()))
    }
}

/// Milliseconds as a `Duration`.
pub(crate) fn ms(value: u32) -> Duration {
    Duration::from_millis(u64::from(value))
}
