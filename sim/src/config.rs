//! The simulated cluster's configuration and its well-known names: the
//! ports and host names brokers, the controller and clients agree on, the
//! internal topics, and [`ClusterConfig`] with its validation and its
//! settings listing.
//!
//! This module imports nothing of the brokers, the controller or the
//! cluster, so that all of them can depend on it.

use crate::seed::Seed;
use crate::world::{self, DEFAULT_EPOCH_MS, WorldSettings};

/// The port brokers serve the client protocol on.
pub const BROKER_PORT: u16 = 9092;
/// The controller's host name and port.
pub const CONTROLLER_HOST: &str = "controller";
pub const CONTROLLER_PORT: u16 = 9093;
/// The internal topics holding coordinator state.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The simulated cluster's settings.
///
/// The timings default to Apache Kafka 3.8's own defaults (each field says
/// Kafka's setting and value), so that a failover stalls a run as long as it
/// stalls a real cluster: long enough for watermark idleness, session
/// timeouts and transaction timeouts to fire. [`ClusterConfig::with_fast_timings`]
/// scales them down for quicker runs; the settings listing names which
/// timings a run used (`timings = kafka-3.8 | fast | custom`).
///
/// Sizes are smaller than Kafka's where only cost depends on them (4
/// partitions per internal topic instead of 50), and topics are replicated
/// by default (replication factor 3, min.insync.replicas 2, where Kafka
/// defaults to 1 and 1), because a single replica cannot fail over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Number of brokers (ids `0..brokers`, hosts `broker-<id>`).
    pub brokers: usize,
    /// `default.replication.factor` for CreateTopics with -1 (Kafka: 1; we
    /// use 3 so that topics are replicated by default).
    pub replication_factor: i16,
    /// `min.insync.replicas` default for topics (Kafka: 1).
    pub min_insync_replicas: i16,
    /// `num.partitions` for CreateTopics with -1 (Kafka: 1).
    pub default_partitions: i32,
    /// Network latency bounds per message.
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Simulated time per step. Every host runs once per step; inside a
    /// step its own timers fire at their exact instants (turmoil's hosts are
    /// paused-clock tokio runtimes that jump from timer to timer), but a
    /// message is handed to its destination only at the destination's next
    /// step, so a message's latency is its drawn latency rounded up to a
    /// step. The default, 5 ms, is the default maximum latency: a message
    /// then takes one or two steps. 1 ms (the previous default) gives finer
    /// interleavings at about 3x the cost of a run, since turmoil steps
    /// every host on every tick whether or not anything is due
    /// (BENCHMARKS.md, "scenario sweeps").
    pub tick_ms: u64,
    /// A run not finished after this much simulated time fails.
    pub duration_limit_ms: u64,
    /// Simulated wall-clock start, ms since the Unix epoch.
    pub epoch_ms: u64,
    /// TCP segments buffered per direction per connection.
    pub tcp_capacity: usize,
    /// `offsets.topic.num.partitions` (Kafka: 50).
    pub offsets_topic_partitions: i32,
    /// `transaction.state.log.num.partitions` (Kafka: 50).
    pub transaction_state_partitions: i32,
    /// Replication factor of the internal topics, capped by `brokers`
    /// (Kafka: 3).
    pub internal_topic_replication_factor: i16,
    /// `replica.lag.time.max.ms` (Kafka: 30000): how long a follower may
    /// stay behind before the leader drops it from the ISR.
    pub replica_lag_max_ms: u64,
    /// `replica.fetch.wait.max.ms` (Kafka: 500).
    pub replica_fetch_wait_max_ms: u32,
    /// Records per partition per replica fetch.
    pub replica_fetch_max_records: u32,
    /// `broker.heartbeat.interval.ms` (Kafka: 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms` (Kafka: 9000).
    pub broker_session_timeout_ms: u64,
    /// Timeout of controller and inter-broker calls (`request.timeout.ms`
    /// of the broker's channels; Kafka: 30000).
    pub inter_broker_request_timeout_ms: u64,
    /// How long a broker's metadata long poll waits at the controller.
    pub metadata_max_wait_ms: u32,
    /// How long a new coordinator answers COORDINATOR_LOAD_IN_PROGRESS
    /// before its state is loaded from the internal topic.
    pub coordinator_load_delay_ms: u64,
    /// How long a coordinator waits for its internal-topic write to be
    /// replicated (`offsets.commit.timeout.ms`; Kafka: 5000).
    pub coordinator_write_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms` (Kafka: 3000).
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` (Kafka: 6000).
    pub group_min_session_timeout_ms: u32,
    /// `group.max.session.timeout.ms` (Kafka: 1800000).
    pub group_max_session_timeout_ms: u32,
    /// `transaction.max.timeout.ms` (Kafka: 900000).
    pub transaction_max_timeout_ms: u32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    /// (Kafka: 10000).
    pub transaction_abort_check_interval_ms: u64,
    /// `transaction.partition.verification.enable` (KIP-890; Kafka 3.8:
    /// true).
    pub transaction_partition_verification: bool,
    /// `max.message.bytes` (Kafka: 1048588).
    pub max_message_bytes: usize,
    /// How long a network partition may last before TCP gives up on it:
    /// until then a partitioned link holds its segments and delivers them
    /// at the heal (TCP retransmits them); from then on it drops everything
    /// until the heal, and the streams that carried data stay stalled
    /// (their owners notice through request timeouts). Linux gives up on a
    /// connect after 127 s (`tcp_syn_retries` = 6) and on an established
    /// stream after ~924.6 s (`tcp_retries2` = 15); a Kafka request never
    /// waits that long (its owner times it out and closes the connection),
    /// so the shorter bound is used: it also bounds the connection attempts
    /// a heal delivers at once to a listener (turmoil holds at most
    /// `tcp_capacity` of them). 0: drop from the start.
    pub tcp_give_up_ms: u64,
    /// Producer ids per block handed to a broker (Kafka: 1000).
    pub producer_id_block_size: i64,
    /// Print every trace event to stderr. Library code reads no
    /// environment: the test helpers and the CLI set this from
    /// `EDDY_SIM_TRACE=1`.
    pub trace_echo: bool,
    /// When a run finishes, print its fingerprint to stderr (`sim run: seed
    /// S hash H events E simulated T ms`), to compare runs across changes;
    /// the test helpers and the CLI set this from `EDDY_SIM_HASH=1`.
    pub print_run_fingerprint: bool,
    /// Capture the trace events around this place
    /// ([`crate::trace::TraceSummary::focus`]); changes nothing else.
    pub trace_focus: Option<crate::trace::TraceFocus>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            brokers: 3,
            replication_factor: 3,
            min_insync_replicas: 2,
            default_partitions: 1,
            latency_min_ms: 1,
            latency_max_ms: 5,
            tick_ms: 5,
            duration_limit_ms: 600_000,
            epoch_ms: DEFAULT_EPOCH_MS,
            tcp_capacity: 1024,
            offsets_topic_partitions: 4,
            transaction_state_partitions: 4,
            internal_topic_replication_factor: 3,
            replica_lag_max_ms: KAFKA_TIMINGS.replica_lag_max_ms,
            replica_fetch_wait_max_ms: KAFKA_TIMINGS.replica_fetch_wait_max_ms,
            replica_fetch_max_records: 5_000,
            broker_heartbeat_interval_ms: KAFKA_TIMINGS.broker_heartbeat_interval_ms,
            broker_session_timeout_ms: KAFKA_TIMINGS.broker_session_timeout_ms,
            inter_broker_request_timeout_ms: KAFKA_TIMINGS.inter_broker_request_timeout_ms,
            metadata_max_wait_ms: 500,
            coordinator_load_delay_ms: 5,
            coordinator_write_timeout_ms: 5_000,
            group_initial_rebalance_delay_ms: KAFKA_TIMINGS.group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms: KAFKA_TIMINGS.group_min_session_timeout_ms,
            group_max_session_timeout_ms: 1_800_000,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_check_interval_ms: KAFKA_TIMINGS.transaction_abort_check_interval_ms,
            transaction_partition_verification: true,
            max_message_bytes: 1_048_588,
            tcp_give_up_ms: 127_000,
            producer_id_block_size: 1_000,
            trace_echo: false,
            print_run_fingerprint: false,
            trace_focus: None,
        }
    }
}

/// The settings that set how long things take in the cluster: the ones
/// [`ClusterConfig::with_fast_timings`] changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub replica_lag_max_ms: u64,
    pub replica_fetch_wait_max_ms: u32,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    pub inter_broker_request_timeout_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: u32,
    pub transaction_abort_check_interval_ms: u64,
}

/// Apache Kafka 3.8's defaults (`ReplicationConfigs`, `KRaftConfigs`,
/// `GroupCoordinatorConfig`, `TransactionStateManagerConfigs`).
pub const KAFKA_TIMINGS: Timings = Timings {
    replica_lag_max_ms: 30_000,
    replica_fetch_wait_max_ms: 500,
    broker_heartbeat_interval_ms: 2_000,
    broker_session_timeout_ms: 9_000,
    inter_broker_request_timeout_ms: 30_000,
    group_initial_rebalance_delay_ms: 3_000,
    group_min_session_timeout_ms: 6_000,
    transaction_abort_check_interval_ms: 10_000,
};

/// Kafka's timings scaled down 10-30x (and the minimum session timeout
/// lifted): runs finish sooner, but a failover stalls a run for well under
/// a second, too short for idleness or transaction timeouts to fire. For
/// tests of behaviour that does not depend on how long a stall lasts.
pub const FAST_TIMINGS: Timings = Timings {
    replica_lag_max_ms: 1_000,
    replica_fetch_wait_max_ms: 100,
    broker_heartbeat_interval_ms: 100,
    broker_session_timeout_ms: 600,
    inter_broker_request_timeout_ms: 1_000,
    group_initial_rebalance_delay_ms: 100,
    group_min_session_timeout_ms: 10,
    transaction_abort_check_interval_ms: 1_000,
};

/// Why a configuration cannot build a cluster.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cluster needs 1..=63 brokers, got {0}")]
    Brokers(usize),
    #[error("replication_factor {0} must be in 1..=brokers")]
    ReplicationFactor(i16),
    #[error("min_insync_replicas {0} must be at least 1")]
    MinInsyncReplicas(i16),
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error(transparent)]
    World(#[from] world::WorldError),
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers == 0 || self.brokers > 63 {
            return Err(ConfigError::Brokers(self.brokers));
        }
        if self.replication_factor < 1 || self.replication_factor as usize > self.brokers {
            return Err(ConfigError::ReplicationFactor(self.replication_factor));
        }
        if self.min_insync_replicas < 1 {
            return Err(ConfigError::MinInsyncReplicas(self.min_insync_replicas));
        }
        // Each value as `i64` (`as`, so that an unsigned value above
        // `i64::MAX` counts as not positive).
        macro_rules! positive {
            ($($field:ident),* $(,)?) => {
                [$((stringify!($field), self.$field as i64)),*]
            };
        }
        let positive = positive![
            default_partitions,
            offsets_topic_partitions,
            transaction_state_partitions,
            internal_topic_replication_factor,
            replica_lag_max_ms,
            broker_heartbeat_interval_ms,
            broker_session_timeout_ms,
            inter_broker_request_timeout_ms,
            transaction_abort_check_interval_ms,
            producer_id_block_size,
            replica_fetch_max_records,
        ];
        for (name, value) in positive {
            if value < 1 {
                return Err(ConfigError::NotPositive(name));
            }
        }
        self.world_settings(Seed::new(0)).validate()?;
        Ok(())
    }

    /// This configuration with the given timings.
    pub fn with_timings(self, timings: Timings) -> Self {
        Self {
            replica_lag_max_ms: timings.replica_lag_max_ms,
            replica_fetch_wait_max_ms: timings.replica_fetch_wait_max_ms,
            broker_heartbeat_interval_ms: timings.broker_heartbeat_interval_ms,
            broker_session_timeout_ms: timings.broker_session_timeout_ms,
            inter_broker_request_timeout_ms: timings.inter_broker_request_timeout_ms,
            group_initial_rebalance_delay_ms: timings.group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms: timings.group_min_session_timeout_ms,
            transaction_abort_check_interval_ms: timings.transaction_abort_check_interval_ms,
            ..self
        }
    }

    /// This configuration with [`FAST_TIMINGS`].
    pub fn with_fast_timings(self) -> Self {
        self.with_timings(FAST_TIMINGS)
    }

    /// The timings this configuration uses.
    pub fn timings(&self) -> Timings {
        Timings {
            replica_lag_max_ms: self.replica_lag_max_ms,
            replica_fetch_wait_max_ms: self.replica_fetch_wait_max_ms,
            broker_heartbeat_interval_ms: self.broker_heartbeat_interval_ms,
            broker_session_timeout_ms: self.broker_session_timeout_ms,
            inter_broker_request_timeout_ms: self.inter_broker_request_timeout_ms,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms: self.group_min_session_timeout_ms,
            transaction_abort_check_interval_ms: self.transaction_abort_check_interval_ms,
        }
    }

    /// `kafka-3.8` when every timing is Kafka's default, `fast` when they
    /// are [`FAST_TIMINGS`], else `custom`.
    pub fn timings_name(&self) -> &'static str {
        match self.timings() {
            t if t == KAFKA_TIMINGS => "kafka-3.8",
            t if t == FAST_TIMINGS => "fast",
            _ => "custom",
        }
    }

    /// One line for a run's header: the timing preset and, unless they are
    /// Kafka's, every timing with Kafka's value beside those that differ.
    pub fn timings_summary(&self) -> String {
        let name = self.timings_name();
        if name == "kafka-3.8" {
            return "timings kafka-3.8 (Kafka 3.8's defaults)".to_string();
        }
        let ours = self.settings();
        let kafka = ClusterConfig::default()
            .with_timings(KAFKA_TIMINGS)
            .settings();
        let timing_names = [
            "replica_lag_max_ms",
            "replica_fetch_wait_max_ms",
            "broker_heartbeat_interval_ms",
            "broker_session_timeout_ms",
            "inter_broker_request_timeout_ms",
            "group_initial_rebalance_delay_ms",
            "group_min_session_timeout_ms",
            "transaction_abort_check_interval_ms",
        ];
        let differing: Vec<String> = ours
            .iter()
            .zip(&kafka)
            .filter(|((field, value), (_, kafka_value))| {
                timing_names.contains(&field.as_str()) && value != kafka_value
            })
            .map(|((field, value), (_, kafka_value))| {
                format!("{field}={value} (Kafka {kafka_value})")
            })
            .collect();
        format!(
            "timings {name}: {}; the rest Kafka 3.8's",
            differing.join(", ")
        )
    }

    pub(crate) fn world_settings(&self, seed: Seed) -> WorldSettings {
        WorldSettings {
            seed,
            epoch_ms: self.epoch_ms,
            tick_ms: self.tick_ms,
            duration_limit_ms: self.duration_limit_ms,
            latency_min_ms: self.latency_min_ms,
            latency_max_ms: self.latency_max_ms,
            tcp_capacity: self.tcp_capacity,
        }
    }

    /// Every setting as `(name, value)`, for the run's settings listing,
    /// after `timings` (which preset the timings are).
    pub fn settings(&self) -> Vec<(String, String)> {
        macro_rules! settings {
            ($($field:ident),* $(,)?) => {
                vec![$((stringify!($field).to_string(), self.$field.to_string())),*]
            };
        }
        let mut listing = vec![("timings".to_string(), self.timings_name().to_string())];
        listing.extend(settings![
            brokers,
            replication_factor,
            min_insync_replicas,
            default_partitions,
            latency_min_ms,
            latency_max_ms,
            tick_ms,
            duration_limit_ms,
            epoch_ms,
            tcp_capacity,
            offsets_topic_partitions,
            transaction_state_partitions,
            internal_topic_replication_factor,
            replica_lag_max_ms,
            replica_fetch_wait_max_ms,
            replica_fetch_max_records,
            broker_heartbeat_interval_ms,
            broker_session_timeout_ms,
            inter_broker_request_timeout_ms,
            metadata_max_wait_ms,
            coordinator_load_delay_ms,
            coordinator_write_timeout_ms,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            transaction_max_timeout_ms,
            transaction_abort_check_interval_ms,
            transaction_partition_verification,
            max_message_bytes,
            tcp_give_up_ms,
            producer_id_block_size,
        ]);
        listing
    }
}
