//! The public face of the simulated cluster: [`SimCluster`] builds a seeded
//! turmoil simulation with a controller and brokers, runs client and worker
//! hosts against it, and applies faults; [`ClusterHandle`] lets code inside
//! hosts request faults and inspect the cluster.
//!
//! ```no_run
//! use eddyline_sim::cluster::{ClusterConfig, SimCluster};
//! use eddyline_sim::Seed;
//!
//! let mut cluster = SimCluster::new(Seed::new(7), ClusterConfig::default()).unwrap();
//! let bootstrap = cluster.bootstrap();
//! let handle = cluster.handle();
//! cluster.client("test", async move {
//!     // talk to `bootstrap` over turmoil TCP; `handle.crash_broker(1)`, ...
//!     let _ = (bootstrap, handle);
//!     Ok(())
//! });
//! cluster.run().unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::TopicPartition;

use crate::broker::{self, BrokerContext, BrokerControl, BrokerDisk};
use crate::controller::{self, Controller};
use crate::faults::{Fault, FaultRates, FaultSchedule, FaultTargets};
use crate::internal::PartitionImage;
use crate::protocol::{BrokerId, RecordBatch};
use crate::seed::Seed;
use crate::trace::{EventKind, Node, Trace, TraceSummary};
use crate::world::{self, DEFAULT_EPOCH_MS, WorldSettings};

/// The port brokers serve the client protocol on.
pub const BROKER_PORT: u16 = 9092;
/// The controller's host name and port.
pub const CONTROLLER_HOST: &str = "controller";
pub const CONTROLLER_PORT: u16 = 9093;
/// The internal topics holding coordinator state.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The simulated cluster's settings. Defaults are Kafka's, scaled down in
/// time where Kafka's are tuned for real networks (each such default says
/// Kafka's value).
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
    /// Simulated time per step.
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
    /// `replica.lag.time.max.ms` (Kafka: 30000).
    pub replica_lag_max_ms: u64,
    /// `replica.fetch.wait.max.ms` (Kafka: 500).
    pub replica_fetch_wait_max_ms: u32,
    /// Records per partition per replica fetch.
    pub replica_fetch_max_records: u32,
    /// `broker.heartbeat.interval.ms` (Kafka: 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms` (Kafka: 9000).
    pub broker_session_timeout_ms: u64,
    /// Timeout of controller and inter-broker calls (Kafka: 30000).
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
    /// Print every trace event to stderr (also `EDDY_SIM_TRACE=1`).
    pub trace_echo: bool,
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
            tick_ms: 1,
            duration_limit_ms: 600_000,
            epoch_ms: DEFAULT_EPOCH_MS,
            tcp_capacity: 1024,
            offsets_topic_partitions: 4,
            transaction_state_partitions: 4,
            internal_topic_replication_factor: 3,
            replica_lag_max_ms: 1_000,
            replica_fetch_wait_max_ms: 100,
            replica_fetch_max_records: 5_000,
            broker_heartbeat_interval_ms: 100,
            broker_session_timeout_ms: 600,
            inter_broker_request_timeout_ms: 1_000,
            metadata_max_wait_ms: 500,
            coordinator_load_delay_ms: 5,
            coordinator_write_timeout_ms: 5_000,
            group_initial_rebalance_delay_ms: 100,
            group_min_session_timeout_ms: 10,
            group_max_session_timeout_ms: 1_800_000,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_check_interval_ms: 1_000,
            transaction_partition_verification: true,
            max_message_bytes: 1_048_588,
            tcp_give_up_ms: 127_000,
            producer_id_block_size: 1_000,
            trace_echo: std::env::var_os("EDDY_SIM_TRACE").is_some_and(|v| v == "1"),
        }
    }
}

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
        for (name, value) in [
            ("default_partitions", i64::from(self.default_partitions)),
            (
                "offsets_topic_partitions",
                i64::from(self.offsets_topic_partitions),
            ),
            (
                "transaction_state_partitions",
                i64::from(self.transaction_state_partitions),
            ),
            (
                "internal_topic_replication_factor",
                i64::from(self.internal_topic_replication_factor),
            ),
            ("replica_lag_max_ms", self.replica_lag_max_ms as i64),
            (
                "broker_heartbeat_interval_ms",
                self.broker_heartbeat_interval_ms as i64,
            ),
            (
                "broker_session_timeout_ms",
                self.broker_session_timeout_ms as i64,
            ),
            (
                "inter_broker_request_timeout_ms",
                self.inter_broker_request_timeout_ms as i64,
            ),
            (
                "transaction_abort_check_interval_ms",
                self.transaction_abort_check_interval_ms as i64,
            ),
            ("producer_id_block_size", self.producer_id_block_size),
            (
                "replica_fetch_max_records",
                i64::from(self.replica_fetch_max_records),
            ),
        ] {
            if value < 1 {
                return Err(ConfigError::NotPositive(name));
            }
        }
        self.world_settings(Seed::new(0)).validate()?;
        Ok(())
    }

    fn world_settings(&self, seed: Seed) -> WorldSettings {
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

    /// Every setting as `(name, value)`, for the run's settings listing.
    pub fn settings(&self) -> Vec<(String, String)> {
        let entries: Vec<(&str, String)> = vec![
            ("brokers", self.brokers.to_string()),
            ("replication_factor", self.replication_factor.to_string()),
            ("min_insync_replicas", self.min_insync_replicas.to_string()),
            ("default_partitions", self.default_partitions.to_string()),
            ("latency_min_ms", self.latency_min_ms.to_string()),
            ("latency_max_ms", self.latency_max_ms.to_string()),
            ("tick_ms", self.tick_ms.to_string()),
            ("duration_limit_ms", self.duration_limit_ms.to_string()),
            ("epoch_ms", self.epoch_ms.to_string()),
            ("tcp_capacity", self.tcp_capacity.to_string()),
            (
                "offsets_topic_partitions",
                self.offsets_topic_partitions.to_string(),
            ),
            (
                "transaction_state_partitions",
                self.transaction_state_partitions.to_string(),
            ),
            (
                "internal_topic_replication_factor",
                self.internal_topic_replication_factor.to_string(),
            ),
            ("replica_lag_max_ms", self.replica_lag_max_ms.to_string()),
            (
                "replica_fetch_wait_max_ms",
                self.replica_fetch_wait_max_ms.to_string(),
            ),
            (
                "replica_fetch_max_records",
                self.replica_fetch_max_records.to_string(),
            ),
            (
                "broker_heartbeat_interval_ms",
                self.broker_heartbeat_interval_ms.to_string(),
            ),
            (
                "broker_session_timeout_ms",
                self.broker_session_timeout_ms.to_string(),
            ),
            (
                "inter_broker_request_timeout_ms",
                self.inter_broker_request_timeout_ms.to_string(),
            ),
            (
                "metadata_max_wait_ms",
                self.metadata_max_wait_ms.to_string(),
            ),
            (
                "coordinator_load_delay_ms",
                self.coordinator_load_delay_ms.to_string(),
            ),
            (
                "coordinator_write_timeout_ms",
                self.coordinator_write_timeout_ms.to_string(),
            ),
            (
                "group_initial_rebalance_delay_ms",
                self.group_initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group_min_session_timeout_ms",
                self.group_min_session_timeout_ms.to_string(),
            ),
            (
                "group_max_session_timeout_ms",
                self.group_max_session_timeout_ms.to_string(),
            ),
            (
                "transaction_max_timeout_ms",
                self.transaction_max_timeout_ms.to_string(),
            ),
            (
                "transaction_abort_check_interval_ms",
                self.transaction_abort_check_interval_ms.to_string(),
            ),
            (
                "transaction_partition_verification",
                self.transaction_partition_verification.to_string(),
            ),
            ("max_message_bytes", self.max_message_bytes.to_string()),
            ("tcp_give_up_ms", self.tcp_give_up_ms.to_string()),
            (
                "producer_id_block_size",
                self.producer_id_block_size.to_string(),
            ),
        ];
        entries
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect()
    }
}

thread_local! {
    static CURRENT_SEED: Cell<Option<Seed>> = const { Cell::new(None) };
}

/// The seed of the simulation running on this thread, for panic messages
/// (a broken invariant inside the simulator names the seed that shows it).
pub fn current_seed() -> String {
    CURRENT_SEED.with(|seed| match seed.get() {
        Some(seed) => seed.to_string(),
        None => "unknown".to_string(),
    })
}

/// Chains a panic hook (once per process) that prints the seed of the
/// simulation running on the panicking thread after the panic message, so
/// that every broken invariant inside the simulator (an assertion, an
/// `expect`) names the seed that reproduces it.
fn install_seed_panic_hook() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(seed) = CURRENT_SEED.with(Cell::get) {
                eprintln!("simulation seed {seed} (repro: EDDY_SEED={seed})");
            }
        }));
    });
}

/// A failed run: the seed, when, why, and the end of the trace.
#[derive(Debug, thiserror::Error)]
#[error("simulation failed at {at_ms} ms (seed {seed}, repro: EDDY_SEED={seed}): {message}")]
pub struct SimError {
    pub seed: Seed,
    pub at_ms: u64,
    pub message: String,
    pub trace: TraceSummary,
}

struct ControlShared {
    seed: Seed,
    config: Rc<ClusterConfig>,
    controller: Rc<Controller>,
    trace: Trace,
    requests: RefCell<Vec<Fault>>,
    brokers_down: RefCell<BTreeSet<BrokerId>>,
    disks: Vec<Rc<RefCell<BrokerDisk>>>,
}

/// Control of the cluster usable from inside hosts (cheap to clone, not
/// `Send`). Faults requested here are applied by the run loop between
/// steps (within one tick); queries read the controller's view directly.
#[derive(Clone)]
pub struct ClusterHandle {
    shared: Rc<ControlShared>,
}

impl ClusterHandle {
    /// Requests a fault; applied before the next step.
    pub fn apply(&self, fault: Fault) {
        self.shared.requests.borrow_mut().push(fault);
    }

    pub fn crash_broker(&self, id: BrokerId) {
        self.apply(Fault::CrashBroker(id));
    }

    pub fn restart_broker(&self, id: BrokerId) {
        self.apply(Fault::RestartBroker(id));
    }

    /// Moves the partition's leadership to `to` (`None`: another live ISR
    /// member). Refused (and traced as such) if `to` is not a live ISR
    /// member.
    pub fn move_leader(&self, partition: &TopicPartition, to: Option<BrokerId>) {
        self.apply(Fault::MoveLeader {
            partition: partition.clone(),
            to,
        });
    }

    /// Cuts the hosts of `a` from those of `b` (see [`Fault::Partition`]:
    /// held, as TCP retransmits, until the heal or TCP's give-up time).
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        self.apply(Fault::Partition {
            a: a.iter().map(|s| s.to_string()).collect(),
            b: b.iter().map(|s| s.to_string()).collect(),
        });
    }

    pub fn heal(&self, a: &[&str], b: &[&str]) {
        self.apply(Fault::Heal {
            a: a.iter().map(|s| s.to_string()).collect(),
            b: b.iter().map(|s| s.to_string()).collect(),
        });
    }

    pub fn heal_all(&self) {
        self.apply(Fault::HealAll);
    }

    pub fn set_max_latency(&self, max_ms: u64) {
        self.apply(Fault::SetMaxLatency { max_ms });
    }

    /// Sets both latency bounds of every link between `a` and `b` (every
    /// link if both are empty): a slow broker, a slow client, jitter.
    pub fn set_latency(&self, a: &[&str], b: &[&str], min_ms: u64, max_ms: u64) {
        self.apply(Fault::SetLatency {
            a: a.iter().map(|s| s.to_string()).collect(),
            b: b.iter().map(|s| s.to_string()).collect(),
            min_ms,
            max_ms,
        });
    }

    pub fn crash_host(&self, host: &str) {
        self.apply(Fault::CrashHost(host.to_string()));
    }

    pub fn restart_host(&self, host: &str) {
        self.apply(Fault::RestartHost(host.to_string()));
    }

    /// Makes a worker a zombie for `duration_ms` (see [`Fault::PauseHost`]).
    pub fn pause_host(&self, host: &str, duration_ms: u64) {
        self.apply(Fault::PauseHost {
            host: host.to_string(),
            duration_ms,
        });
    }

    /// Every open transaction is aborted by its coordinator, as if its
    /// timeout had expired.
    pub fn expire_transactions(&self) {
        self.apply(Fault::ExpireTransactions);
    }

    /// The partition's leader as the controller knows it now.
    pub fn leader_of(&self, partition: &TopicPartition) -> Option<BrokerId> {
        self.shared.controller.leader_of(partition)
    }

    /// The partition's leader, epochs, replicas and ISR as the controller
    /// knows them now.
    pub fn partition_state(&self, partition: &TopicPartition) -> Option<PartitionImage> {
        self.shared.controller.partition_state(partition)
    }

    /// Whether the broker is registered with the controller and unfenced.
    pub fn is_broker_live(&self, id: BrokerId) -> bool {
        self.shared.controller.is_broker_live(id)
    }

    /// Whether the broker host is down (crashed and not restarted).
    pub fn is_broker_down(&self, id: BrokerId) -> bool {
        self.shared.brokers_down.borrow().contains(&id)
    }

    /// Whether every broker is live and the internal topics exist: the
    /// cluster is ready for clients.
    pub fn is_ready(&self) -> bool {
        self.shared.controller.internal_topics_created()
            && (0..self.shared.config.brokers as BrokerId).all(|id| self.is_broker_live(id))
    }

    /// A replica's log as it is on the broker's disk now (crashed brokers
    /// included): its batches and high watermark. `None` if the broker does
    /// not host the partition. For checkers and tests.
    pub fn replica_log(
        &self,
        broker: BrokerId,
        partition: &TopicPartition,
    ) -> Option<(Vec<RecordBatch>, i64)> {
        let disk = self
            .shared
            .disks
            .get(usize::try_from(broker).ok()?)?
            .borrow();
        let log = disk.logs.get(partition)?;
        Some((
            log.batches().iter().map(|b| b.decode()).collect(),
            log.high_watermark,
        ))
    }

    /// Kafka's replication safety property, checked on the brokers' disks:
    /// any two replicas of a partition hold the same batches below the
    /// lower of their high watermarks (committed data is never lost or
    /// rewritten). Returns every violation found, one line each.
    pub fn verify_replicas(&self) -> Result<(), Vec<String>> {
        let disks: Vec<_> = self.shared.disks.iter().map(|d| d.borrow()).collect();
        let mut partitions: BTreeSet<&TopicPartition> = BTreeSet::new();
        for disk in &disks {
            partitions.extend(disk.logs.keys());
        }
        let mut violations = Vec::new();
        for tp in partitions {
            let replicas: Vec<(usize, &crate::broker::log::PartitionLog)> = disks
                .iter()
                .enumerate()
                .filter_map(|(id, disk)| disk.logs.get(tp).map(|log| (id, log)))
                .collect();
            for (i, (a, log_a)) in replicas.iter().enumerate() {
                for (b, log_b) in &replicas[i + 1..] {
                    let committed = log_a.high_watermark.min(log_b.high_watermark);
                    let prefix_a = log_a.read(0, committed, u32::MAX);
                    let prefix_b = log_b.read(0, committed, u32::MAX);
                    if prefix_a != prefix_b {
                        violations.push(format!(
                            "{tp}: broker-{a} and broker-{b} differ below offset {committed} \
                             (seed {})",
                            self.shared.seed
                        ));
                    }
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Broker host names, for clients to bootstrap from.
    pub fn bootstrap(&self) -> Vec<String> {
        (0..self.shared.config.brokers as BrokerId)
            .map(broker::broker_host)
            .collect()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.shared.config
    }

    pub fn seed(&self) -> Seed {
        self.shared.seed
    }

    /// Simulated ms since the start of the run.
    pub fn now_ms(&self) -> u64 {
        world::now_ms()
    }

    pub fn trace(&self) -> TraceSummary {
        self.shared.trace.summary(64)
    }
}

/// A seeded simulated Kafka cluster: a controller host, broker hosts, and
/// the client and worker hosts a test adds.
pub struct SimCluster {
    seed: Seed,
    config: Rc<ClusterConfig>,
    sim: turmoil::Sim<'static>,
    shared: Rc<ControlShared>,
    broker_controls: Vec<Rc<BrokerControl>>,
    trace: Trace,
    /// Scheduled faults, keyed by (time, order of scheduling).
    schedule: BTreeMap<(u64, u64), Fault>,
    next_schedule_index: u64,
    /// Worker hosts that can crash, restart and pause.
    worker_hosts: BTreeSet<String>,
    /// Every node, in registration order (controller, brokers, others).
    nodes: Vec<String>,
    /// Partitioned host pairs (ordered) with the time each was cut, and
    /// pairs held by pauses (how many pauses hold each).
    partitioned: BTreeMap<(String, String), u64>,
    held: BTreeMap<(String, String), u64>,
    /// Partitioned pairs past `tcp_give_up_ms`: their links drop messages.
    given_up: BTreeSet<(String, String)>,
    /// What turmoil does with each link's messages now (absent: delivers).
    links: BTreeMap<(String, String), LinkMode>,
    /// Pauses to end: (time, host).
    pauses: BTreeSet<(u64, String)>,
    /// Links given their own latency bounds (SetLatency).
    tuned_links: BTreeSet<(String, String)>,
    derived: Vec<(String, Seed)>,
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        CURRENT_SEED.with(|current| {
            if current.get() == Some(self.seed) {
                current.set(None);
            }
        });
    }
}

impl SimCluster {
    /// Builds the simulation: the seeded turmoil world, the controller and
    /// the brokers (which start, register and elect leaders in the first
    /// simulated milliseconds).
    pub fn new(seed: Seed, config: ClusterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        install_seed_panic_hook();
        CURRENT_SEED.with(|current| current.set(Some(seed)));
        let network_seed = seed.derive("network");
        let placement_seed = seed.derive("placement");
        let faults_seed = seed.derive("faults");
        let mut sim = world::build_sim(&config.world_settings(network_seed))?;
        let brokers = config.brokers;
        let config = Rc::new(config);
        let trace = Trace::new(config.trace_echo);
        let controller = Rc::new(Controller::new(
            config.clone(),
            trace.clone(),
            placement_seed.rng(),
        ));
        let mut nodes = vec![CONTROLLER_HOST.to_string()];
        {
            let controller = controller.clone();
            sim.host(CONTROLLER_HOST, move || controller::run(controller.clone()));
        }
        let mut broker_controls = Vec::new();
        let mut disks = Vec::new();
        for id in 0..config.brokers as BrokerId {
            let control = Rc::new(BrokerControl::default());
            let disk = Rc::new(RefCell::new(BrokerDisk::default()));
            disks.push(disk.clone());
            let context = BrokerContext {
                id,
                seed: seed.derive(&format!("broker-{id}")),
                config: config.clone(),
                disk,
                trace: trace.clone(),
                control: control.clone(),
            };
            let host = broker::broker_host(id);
            sim.host(host.as_str(), move || broker::run(context.clone()));
            nodes.push(host);
            broker_controls.push(control);
        }
        let shared = Rc::new(ControlShared {
            seed,
            config: config.clone(),
            controller,
            trace: trace.clone(),
            requests: RefCell::new(Vec::new()),
            brokers_down: RefCell::new(BTreeSet::new()),
            disks,
        });
        Ok(Self {
            seed,
            config,
            sim,
            shared,
            broker_controls,
            trace,
            schedule: BTreeMap::new(),
            next_schedule_index: 0,
            worker_hosts: BTreeSet::new(),
            nodes,
            partitioned: BTreeMap::new(),
            held: BTreeMap::new(),
            given_up: BTreeSet::new(),
            links: BTreeMap::new(),
            pauses: BTreeSet::new(),
            tuned_links: BTreeSet::new(),
            derived: [
                ("network".to_string(), network_seed),
                ("placement".to_string(), placement_seed),
                ("faults".to_string(), faults_seed),
            ]
            .into_iter()
            .chain((0..brokers).map(|id| {
                let name = format!("broker-{id}");
                let seed = seed.derive(&name);
                (name, seed)
            }))
            .collect(),
        })
    }

    pub fn seed(&self) -> Seed {
        self.seed
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Broker host names (port [`BROKER_PORT`]), for clients to bootstrap.
    pub fn bootstrap(&self) -> Vec<String> {
        self.handle().bootstrap()
    }

    pub fn handle(&self) -> ClusterHandle {
        ClusterHandle {
            shared: self.shared.clone(),
        }
    }

    /// Adds a client host: test code that runs once. The run ends when
    /// every client has returned (an error fails the run).
    pub fn client<F>(&mut self, name: &str, future: F)
    where
        F: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.client(name, future);
        self.nodes.push(name.to_string());
    }

    /// Adds a restartable worker host: `factory` builds its software at
    /// start and at every restart. It can be crashed, restarted and paused
    /// (faults), and never ends the run by itself.
    pub fn host<F, Fut>(&mut self, name: &str, factory: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.host(name, factory);
        self.worker_hosts.insert(name.to_string());
        self.nodes.push(name.to_string());
    }

    /// Like [`SimCluster::host`], but the host starts stopped: it first runs
    /// when restarted (a consumer that joins later).
    pub fn stopped_host<F, Fut>(&mut self, name: &str, factory: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.host(name, factory);
        self.sim.crash(name);
    }

    /// Every node: controller, brokers, then clients and hosts as added.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Adds faults to apply when simulated time reaches their `at_ms`.
    pub fn schedule(&mut self, faults: FaultSchedule) {
        for (at_ms, fault) in faults.events() {
            self.schedule
                .insert((*at_ms, self.next_schedule_index), fault.clone());
            self.next_schedule_index += 1;
        }
    }

    /// What a drawn fault schedule may target in this cluster now.
    pub fn fault_targets(&self, partitions: Vec<TopicPartition>) -> FaultTargets {
        FaultTargets {
            brokers: (0..self.config.brokers as BrokerId).collect(),
            hosts: self.worker_hosts.iter().cloned().collect(),
            partitions,
            all_nodes: self.nodes.clone(),
            base_max_latency_ms: self.config.latency_max_ms,
        }
    }

    /// Draws faults over `[start_ms, end_ms)` from the run's `faults`
    /// child seed (the same seed always draws the same schedule).
    pub fn draw_faults(
        &self,
        rates: &FaultRates,
        partitions: Vec<TopicPartition>,
        start_ms: u64,
        end_ms: u64,
    ) -> FaultSchedule {
        let mut rng = self.seed.derive("faults").rng();
        FaultSchedule::draw(
            &mut rng,
            rates,
            &self.fault_targets(partitions),
            start_ms,
            end_ms,
        )
    }

    /// The run's seed, its derived child seeds, and every setting.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![("seed".to_string(), self.seed.to_string())];
        for (name, seed) in &self.derived {
            settings.push((format!("seed.{name}"), seed.to_string()));
        }
        settings.extend(self.config.settings());
        settings
    }

    pub fn trace(&self) -> TraceSummary {
        self.trace.summary(64)
    }

    /// Simulated ms since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.sim.elapsed().as_millis() as u64
    }

    /// Runs until every client host has returned.
    pub fn run(&mut self) -> Result<(), SimError> {
        loop {
            if self.step()? {
                if std::env::var_os("EDDY_SIM_HASH").is_some_and(|v| v == "1") {
                    // A run's fingerprint, to compare runs across changes.
                    let trace = self.trace.summary(0);
                    eprintln!(
                        "sim run: seed {} hash {:016x} events {} simulated {} ms",
                        self.seed,
                        trace.hash,
                        trace.events,
                        self.elapsed_ms()
                    );
                }
                return Ok(());
            }
        }
    }

    /// Runs for `duration_ms` of simulated time or until every client has
    /// returned; `Ok(true)` if they have.
    pub fn run_for(&mut self, duration_ms: u64) -> Result<bool, SimError> {
        let until = self.elapsed_ms() + duration_ms;
        while self.elapsed_ms() < until {
            if self.step()? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Applies due faults, then advances the simulation one tick.
    pub fn step(&mut self) -> Result<bool, SimError> {
        CURRENT_SEED.with(|current| current.set(Some(self.seed)));
        let now = self.elapsed_ms();
        world::set_outside_host_now_ms(now);
        self.apply_due(now);
        match self.sim.step() {
            Ok(finished) => Ok(finished),
            Err(error) => Err(SimError {
                seed: self.seed,
                at_ms: self.elapsed_ms(),
                message: error.to_string(),
                trace: self.trace.summary(64),
            }),
        }
    }

    fn apply_due(&mut self, now: u64) {
        while let Some((&(at_ms, index), _)) = self.schedule.first_key_value() {
            if at_ms > now {
                break;
            }
            let fault = self
                .schedule
                .remove(&(at_ms, index))
                .expect("first key exists");
            self.apply_fault(fault, now);
        }
        let requested: Vec<Fault> = std::mem::take(&mut *self.shared.requests.borrow_mut());
        for fault in requested {
            self.apply_fault(fault, now);
        }
        if !self.partitioned.is_empty() {
            self.give_up_partitions(now);
        }
        while let Some((at_ms, _)) = self.pauses.first() {
            if *at_ms > now {
                break;
            }
            let (_, host) = self.pauses.pop_first().expect("first exists");
            self.end_pause(&host, now);
        }
    }

    fn trace_fault(&self, fault: &Fault, applied: bool) {
        let kind = if applied {
            EventKind::Fault
        } else {
            EventKind::FaultSkipped
        };
        self.trace
            .record_name(Node::Cluster, kind, &fault.to_string(), [0; 4]);
    }

    fn known_node(&self, host: &str) -> bool {
        self.nodes.iter().any(|node| node == host)
    }

    fn apply_fault(&mut self, fault: Fault, now: u64) {
        let applied = match &fault {
            Fault::CrashBroker(id) => {
                let known = (0..self.config.brokers as BrokerId).contains(id);
                if known && self.shared.brokers_down.borrow_mut().insert(*id) {
                    self.sim.crash(broker::broker_host(*id));
                    true
                } else {
                    false
                }
            }
            Fault::RestartBroker(id) => {
                if (0..self.config.brokers as BrokerId).contains(id) {
                    self.shared.brokers_down.borrow_mut().remove(id);
                    self.sim.bounce(broker::broker_host(*id));
                    true
                } else {
                    false
                }
            }
            Fault::CrashHost(host) => {
                if self.worker_hosts.contains(host) && self.sim.is_host_running(host.as_str()) {
                    self.sim.crash(host.as_str());
                    true
                } else {
                    false
                }
            }
            Fault::RestartHost(host) => {
                if self.worker_hosts.contains(host) {
                    self.sim.bounce(host.as_str());
                    true
                } else {
                    false
                }
            }
            Fault::PauseHost { host, duration_ms } => {
                if self.known_node(host) {
                    self.start_pause(host, now + duration_ms);
                    true
                } else {
                    false
                }
            }
            Fault::MoveLeader { partition, to } => {
                self.shared.controller.move_leader(partition, *to).is_ok()
            }
            Fault::Partition { a, b } => {
                let known = a.iter().chain(b).all(|host| self.known_node(host));
                if known {
                    for x in a {
                        for y in b {
                            self.cut(x, y, now);
                        }
                    }
                }
                known
            }
            Fault::Heal { a, b } => {
                for x in a {
                    for y in b {
                        self.repair(x, y);
                    }
                }
                true
            }
            Fault::HealAll => {
                let pairs: Vec<(String, String)> = self.partitioned.keys().cloned().collect();
                for (x, y) in pairs {
                    self.repair(&x, &y);
                }
                true
            }
            Fault::SetMaxLatency { max_ms } => {
                let max_ms = (*max_ms).max(self.config.latency_min_ms);
                self.sim
                    .set_max_message_latency(Duration::from_millis(max_ms));
                // Links with their own latency (SetLatency) follow too.
                for (x, y) in self.node_pairs(&[], &[]) {
                    if self.tuned_links.contains(&(x.clone(), y.clone())) {
                        self.sim.set_link_max_message_latency(
                            x.as_str(),
                            y.as_str(),
                            Duration::from_millis(max_ms),
                        );
                    }
                }
                true
            }
            Fault::SetLatency {
                a,
                b,
                min_ms,
                max_ms,
            } => {
                let known = a.iter().chain(b).all(|host| self.known_node(host));
                if known && min_ms <= max_ms {
                    for (x, y) in self.node_pairs(a, b) {
                        self.sim.set_link_latency(
                            x.as_str(),
                            y.as_str(),
                            Duration::from_millis(*min_ms),
                        );
                        self.sim.set_link_max_message_latency(
                            x.as_str(),
                            y.as_str(),
                            Duration::from_millis(*max_ms),
                        );
                        self.tuned_links.insert((x, y));
                    }
                    true
                } else {
                    false
                }
            }
            Fault::ExpireTransactions => {
                for control in &self.broker_controls {
                    control.request_transaction_expiry();
                }
                true
            }
        };
        self.trace_fault(&fault, applied);
    }

    /// Distinct ordered host pairs between `a` and `b` (all known nodes if
    /// both are empty).
    fn node_pairs(&self, a: &[String], b: &[String]) -> BTreeSet<(String, String)> {
        let (a, b) = if a.is_empty() && b.is_empty() {
            (self.nodes.as_slice(), self.nodes.as_slice())
        } else {
            (a, b)
        };
        let mut pairs = BTreeSet::new();
        for x in a {
            for y in b {
                if x != y {
                    pairs.insert(Self::pair(x, y));
                }
            }
        }
        pairs
    }

    fn pair(x: &str, y: &str) -> (String, String) {
        if x <= y {
            (x.to_string(), y.to_string())
        } else {
            (y.to_string(), x.to_string())
        }
    }

    fn cut(&mut self, x: &str, y: &str, now: u64) {
        if x == y {
            return;
        }
        let pair = Self::pair(x, y);
        if !self.partitioned.contains_key(&pair) {
            self.partitioned.insert(pair.clone(), now);
            if self.config.tcp_give_up_ms == 0 {
                self.given_up.insert(pair.clone());
            }
            self.sync_link(&pair);
        }
    }

    fn repair(&mut self, x: &str, y: &str) {
        if x == y {
            return;
        }
        let pair = Self::pair(x, y);
        if self.partitioned.remove(&pair).is_some() {
            self.given_up.remove(&pair);
            self.sync_link(&pair);
        }
    }

    /// Partitions that lasted `tcp_give_up_ms` start dropping messages.
    fn give_up_partitions(&mut self, now: u64) {
        let give_up_ms = self.config.tcp_give_up_ms;
        let due: Vec<(String, String)> = self
            .partitioned
            .iter()
            .filter(|(pair, cut_at)| {
                now.saturating_sub(**cut_at) >= give_up_ms && !self.given_up.contains(*pair)
            })
            .map(|(pair, _)| pair.clone())
            .collect();
        for pair in due {
            self.given_up.insert(pair.clone());
            self.sync_link(&pair);
            self.trace.record_name(
                Node::Cluster,
                EventKind::Fault,
                &format!("tcp give-up {} | {}", pair.0, pair.1),
                [0; 4],
            );
        }
    }

    /// Puts a link in the mode its partition and pauses call for: held
    /// while partitioned or paused (TCP retransmits what a partition loses;
    /// a paused host's messages wait), dropping once a partition outlasted
    /// `tcp_give_up_ms`, delivering otherwise. Held messages are delivered
    /// when the link is released.
    fn sync_link(&mut self, pair: &(String, String)) {
        let wanted = if self.given_up.contains(pair) {
            LinkMode::Drop
        } else if self.partitioned.contains_key(pair) || self.held.contains_key(pair) {
            LinkMode::Hold
        } else {
            LinkMode::Deliver
        };
        let current = self.links.get(pair).copied().unwrap_or(LinkMode::Deliver);
        if wanted == current {
            return;
        }
        let (x, y) = (pair.0.as_str(), pair.1.as_str());
        match (current, wanted) {
            (LinkMode::Hold, LinkMode::Deliver) => self.sim.release(x, y),
            (LinkMode::Drop, LinkMode::Deliver) => self.sim.repair(x, y),
            (_, LinkMode::Hold) => self.sim.hold(x, y),
            (_, LinkMode::Drop) => self.sim.partition(x, y),
            (_, LinkMode::Deliver) => unreachable!("handled above"),
        }
        if wanted == LinkMode::Deliver {
            self.links.remove(pair);
        } else {
            self.links.insert(pair.clone(), wanted);
        }
    }

    fn start_pause(&mut self, host: &str, until_ms: u64) {
        let others: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.as_str() != host)
            .cloned()
            .collect();
        for other in others {
            let pair = Self::pair(host, &other);
            *self.held.entry(pair.clone()).or_insert(0) += 1;
            self.sync_link(&pair);
        }
        self.pauses.insert((until_ms, host.to_string()));
    }

    fn end_pause(&mut self, host: &str, _now: u64) {
        let others: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.as_str() != host)
            .cloned()
            .collect();
        for other in others {
            let pair = Self::pair(host, &other);
            let Some(holds) = self.held.get_mut(&pair) else {
                continue;
            };
            *holds -= 1;
            if *holds == 0 {
                self.held.remove(&pair);
                // Still partitioned: what was held waits for the heal.
                self.sync_link(&pair);
            }
        }
        self.trace.record_name(
            Node::Cluster,
            EventKind::Fault,
            &format!("resume {host}"),
            [0; 4],
        );
    }
}

/// What turmoil does with a link's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkMode {
    Deliver,
    Hold,
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::log::PartitionLog;
    use crate::protocol::{ProduceBatch, RecordData};

    fn log_with(value: &str, high_watermark: i64) -> PartitionLog {
        let mut log = PartitionLog::default();
        log.append_as_leader(
            ProduceBatch {
                topic: "t".into(),
                partition: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                transactional: false,
                records: vec![RecordData {
                    key: None,
                    value: Some(value.as_bytes().to_vec()),
                    timestamp_ms: 0,
                    headers: Vec::new(),
                }],
            },
            0,
        );
        log.high_watermark = high_watermark;
        log
    }

    #[test]
    fn replica_verification_catches_divergent_committed_data_only() {
        let cluster = SimCluster::new(Seed::new(1), ClusterConfig::default()).unwrap();
        let handle = cluster.handle();
        let tp = TopicPartition::new("t", 0);
        let set = |broker: usize, log: PartitionLog| {
            handle.shared.disks[broker]
                .borrow_mut()
                .logs
                .insert(tp.clone(), log);
        };
        set(0, log_with("a", 1));
        set(1, log_with("a", 1));
        // Uncommitted divergence (the replica's HW is 0) is allowed.
        set(2, log_with("b", 0));
        assert_eq!(handle.verify_replicas(), Ok(()));
        set(2, log_with("b", 1));
        let violations = handle.verify_replicas().unwrap_err();
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].contains("t-0"), "{violations:?}");
    }

    #[test]
    fn a_bad_config_is_refused_with_a_reason() {
        let config = ClusterConfig {
            latency_min_ms: 10,
            latency_max_ms: 1,
            ..ClusterConfig::default()
        };
        let error = SimCluster::new(Seed::new(1), config).err().unwrap();
        assert!(error.to_string().contains("latency"), "{error}");
        let config = ClusterConfig {
            replication_factor: 4,
            ..ClusterConfig::default()
        };
        assert_eq!(
            SimCluster::new(Seed::new(1), config).err().unwrap(),
            ConfigError::ReplicationFactor(4)
        );
    }

    #[test]
    fn settings_list_the_seed_its_children_and_every_config_value() {
        let cluster = SimCluster::new(Seed::new(99), ClusterConfig::default()).unwrap();
        let settings = cluster.settings();
        assert_eq!(settings[0], ("seed".to_string(), "99".to_string()));
        let names: Vec<&str> = settings.iter().map(|(name, _)| name.as_str()).collect();
        for name in [
            "seed.network",
            "seed.placement",
            "seed.faults",
            "brokers",
            "tick_ms",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(
            settings
                .iter()
                .find(|(name, _)| name == "seed.network")
                .unwrap()
                .1,
            Seed::new(99).derive("network").to_string()
        );
    }
}
