//! Scenario files: a job, a workload, a cluster, faults and what the
//! checker is to find, in TOML. Every key but `job` has a default (shown):
//!
//! ```toml
//! job = "../jobs/click-counts.toml"   # relative to this file
//! delivery = "exactly_once"           # or "at_least_once"; default: the job's
//! seeds = "1..200"                    # the sweep's seeds (end excluded)
//! expect = "pass"                     # or { detect = "<anomaly>", mutant = "<mutant>" }
//!
//! [workload]
//! kind = "clicks"          # window-stats | clicks | orders; default: by the job's input topic
//! records = 400
//! partitions = 4           # of the input and output topics
//! keys = 12
//! key_skew = 0.0           # 0: uniform; else key k weighs 1 / (k + 1)^key_skew
//! rate_per_s = 40.0        # records sent per simulated second
//! burst_chance = 0.0       # per record: the next burst_records go at once
//! burst_records = 20
//! idle_partitions = 0      # partitions without records from 2 s to 10 s of sending
//! out_of_order = 0.2       # fractions: within the job's D ...
//! late = 0.08              # ... late within its allowed lateness L ...
//! beyond_lateness = 0.04   # ... beyond L (the late output) ...
//! undecodable = 0.01       # ... and not decodable (the dead letters)
//!
//! [cluster]
//! brokers = 3
//! replication = 3
//! min_insync = 2
//! timings = "fast"         # or "kafka-3.8"
//! workers = 3              # worker hosts w1..w3
//! session_timeout_ms = 2000
//! checkpoint_store = "sim" # or "topic" (the Kafka topic store)
//!
//! [faults]
//! until_ms = 15000                 # the safety phase: every fault is undone by then
//! worker_crash_per_s = 0.0         # drawn faults: mean per simulated second
//! pause_per_s = 0.0
//! freeze_per_s = 0.0
//! broker_crash_per_s = 0.0
//! leader_move_per_s = 0.0
//! network_partition_per_s = 0.0
//! latency_spike_per_s = 0.0
//! transaction_expiry_per_s = 0.0
//! consumer_join_leave_per_s = 0.0  # a worker leaves its group and joins later
//! crash_at_step_chance = 0.0       # per protocol step (snapshot, offsets, commit)
//! store_write_failure = 0.0        # checkpoint store: shares of failing calls
//! store_read_failure = 0.0
//! # store_ack_before_sync_ms = 500 # writes lost if the writer crashes this soon
//!
//! [[faults.at]]                    # listed faults, any number
//! at_ms = 3000
//! kind = "crash-at-step"           # crash the host at its first such step from at_ms
//! host = "w1"
//! step = "commit"                  # snapshot | offsets | commit
//!
//! [checker]
//! liveness_ms = 60000              # the drain must finish this long after until_ms
//! ```
//!
//! Listed fault kinds and their keys: `crash`, `restart`, `leave` (`host`);
//! `crash-at-step` (`host`, `step`); `pause`, `freeze` (`host`,
//! `duration_ms`); `crash-broker`, `restart-broker` (`broker`);
//! `move-leader` (`topic`, `partition`, optional `to`); `partition`, `heal`
//! (`a`, `b`: host lists); `heal-all`; `max-latency` (`max_ms`); `latency`
//! (`a`, `b`, `min_ms`, `max_ms`); `expire-transactions`.
//!
//! Every key is checked: an unknown key, a value of the wrong type, a
//! fraction outside `[0, 1]`, a job file that does not load or a fault
//! that outlives the safety phase is refused with one line naming the file,
//! the key and (where known) the line. A [`Scenario`] can also be built in
//! code; [`Scenario::to_toml`] writes a file that parses back to an equal
//! value.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use eddyline_engine::job::Job;
use eddyline_engine::transport::TopicPartition;
use eddyline_engine::worker::{Delivery, Mutant};
use eddyline_sim::faults::Fault;
use serde::{Deserialize, Serialize};

use crate::checker::AnomalyKind;

/// A scenario refused: one line naming the file, the key and the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

/// When drawn faults start (simulated ms): the cluster is up and the
/// topics exist by then in every preset (the run waits for the topics
/// anyway, and applies what falls earlier once they exist).
pub const FAULTS_FROM_MS: u64 = 1_000;

/// The shortest safety phase a scenario with faults may have.
pub const MIN_UNTIL_MS: u64 = FAULTS_FROM_MS + 2_000;

/// A scenario: what to run and what the checker should find.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The job file. Relative paths in a file are resolved against the
    /// file's directory when it is read (the value holds the resolved path).
    pub job: PathBuf,
    /// Default: the job's own delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryName>,
    /// The seeds a sweep runs by default.
    #[serde(default)]
    pub seeds: SeedRange,
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub workload: WorkloadSpec,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub faults: FaultsSpec,
    #[serde(default)]
    pub checker: CheckerSpec,
}

/// A job's delivery guarantee, as a scenario names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryName {
    ExactlyOnce,
    AtLeastOnce,
}

impl From<DeliveryName> for Delivery {
    fn from(name: DeliveryName) -> Delivery {
        match name {
            DeliveryName::ExactlyOnce => Delivery::ExactlyOnce,
            DeliveryName::AtLeastOnce => Delivery::AtLeastOnce,
        }
    }
}

/// A range of seeds, written `"1..200"` (end excluded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SeedRange {
    pub start: u64,
    pub end: u64,
}

impl SeedRange {
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }
}

impl Default for SeedRange {
    fn default() -> Self {
        Self { start: 1, end: 200 }
    }
}

impl TryFrom<String> for SeedRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl std::str::FromStr for SeedRange {
    type Err = String;

    /// `A..B` (B excluded, as in Rust) or `A..=B`, decimal; not empty. The
    /// scenario files' `seeds` and the command line's `--seeds` both.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("bad seed range {text:?}: {why} (expected A..B or A..=B)");
        let number = |part: &str| -> Result<u64, String> {
            part.trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("{part:?} is not a number")))
        };
        let (start, end) = if let Some((a, b)) = text.split_once("..=") {
            let end = number(b)?
                .checked_add(1)
                .ok_or_else(|| bad("end too large"))?;
            (number(a)?, end)
        } else if let Some((a, b)) = text.split_once("..") {
            (number(a)?, number(b)?)
        } else {
            return Err(bad("no \"..\""));
        };
        if start >= end {
            return Err(bad("the range is empty"));
        }
        Ok(Self { start, end })
    }
}

impl From<SeedRange> for String {
    fn from(range: SeedRange) -> String {
        format!("{}..{}", range.start, range.end)
    }
}

/// What the checker should find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ExpectRepr", into = "ExpectRepr")]
pub enum Expect {
    /// No anomaly on any seed.
    #[default]
    Pass,
    /// This anomaly on some seed of the sweep (a positive control), with
    /// this mutant switched on (none: an at-least-once control).
    Detect {
        anomaly: AnomalyKind,
        mutant: Option<Mutant>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ExpectRepr {
    Word(String),
    Detect(DetectRepr),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectRepr {
    detect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mutant: Option<String>,
}

impl TryFrom<ExpectRepr> for Expect {
    type Error = String;

    fn try_from(repr: ExpectRepr) -> Result<Self, String> {
        match repr {
            ExpectRepr::Word(word) if word == "pass" => Ok(Expect::Pass),
            ExpectRepr::Word(word) => Err(format!(
                "{word:?}: expected \"pass\" or {{ detect = \"<anomaly>\", mutant = \"<mutant>\" }}"
            )),
            ExpectRepr::Detect(DetectRepr { detect, mutant }) => {
                let anomaly = AnomalyKind::from_str(&detect)?;
                let mutant = mutant
                    .map(|name| Mutant::from_str(&name).map_err(|e| e.to_string()))
                    .transpose()?;
                Ok(Expect::Detect { anomaly, mutant })
            }
        }
    }
}

impl From<Expect> for ExpectRepr {
    fn from(expect: Expect) -> ExpectRepr {
        match expect {
            Expect::Pass => ExpectRepr::Word("pass".to_string()),
            Expect::Detect { anomaly, mutant } => ExpectRepr::Detect(DetectRepr {
                detect: anomaly.name().to_string(),
                mutant: mutant.map(|m| m.name().to_string()),
            }),
        }
    }
}

/// Which generator writes the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// `{"key", "ts", "value"}` JSON.
    WindowStats,
    /// User clicks: `user_id`, `session_id`, `page_url`, `timestamp_ms`,
    /// `referrer` (nullable).
    Clicks,
    /// Debezium change events of an `orders` table.
    Orders,
}

impl WorkloadKind {
    /// The name a scenario file uses.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::WindowStats => "window-stats",
            WorkloadKind::Clicks => "clicks",
            WorkloadKind::Orders => "orders",
        }
    }

    /// The field of a record's value that holds its key.
    pub fn key_field(self) -> &'static str {
        match self {
            WorkloadKind::WindowStats => "key",
            WorkloadKind::Clicks => "user_id",
            WorkloadKind::Orders => "after.user_id",
        }
    }

    /// The kind that fits a job reading `topic`, for scenarios that name
    /// none.
    pub fn for_input_topic(topic: &str) -> WorkloadKind {
        match topic {
            "user-clicks" => WorkloadKind::Clicks,
            "orders" => WorkloadKind::Orders,
            _ => WorkloadKind::WindowStats,
        }
    }
}

/// `[workload]`: the input records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Default: from the job's input topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<WorkloadKind>,
    /// A recording of the job's input topic (`eddy record`, `eddy sim run
    /// --dump DIR --parquet`): its records are the workload, in each
    /// partition's recorded order, on as many partitions as it has; the
    /// generator's settings but `records` (a cut, for shrinking) and
    /// `rate_per_s` are then unused. Relative to the scenario file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<PathBuf>,
    pub records: usize,
    /// Partitions of the input topic (and of the output topics).
    pub partitions: i32,
    /// Distinct keys (users).
    pub keys: u64,
    /// 0: keys uniform; else a Zipf-like exponent (key `k` weighs
    /// `1 / (k + 1)^key_skew`).
    pub key_skew: f64,
    /// Records sent per simulated second.
    pub rate_per_s: f64,
    /// Chance per record that a burst starts: the next `burst_records`
    /// records are sent at once.
    pub burst_chance: f64,
    pub burst_records: usize,
    /// The first this many partitions get no records from 2 s to 10 s of
    /// sending (their keys' records go to the next busy partition's keys).
    pub idle_partitions: i32,
    /// Fractions of the records: out of order within the job's
    /// out-of-orderness bound `D`; late within its allowed lateness `L`;
    /// beyond `L` (the late output); undecodable (the dead letters).
    pub out_of_order: f64,
    pub late: f64,
    pub beyond_lateness: f64,
    pub undecodable: f64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            kind: None,
            recording: None,
            records: 400,
            partitions: 4,
            keys: 12,
            key_skew: 0.0,
            rate_per_s: 40.0,
            burst_chance: 0.0,
            burst_records: 20,
            idle_partitions: 0,
            out_of_order: 0.2,
            late: 0.08,
            beyond_lateness: 0.04,
            undecodable: 0.01,
        }
    }
}

/// The cluster's timing preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimingsName {
    #[serde(rename = "kafka-3.8")]
    Kafka38,
    #[serde(rename = "fast")]
    Fast,
}

/// Where the workers keep their snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The simulator's shared store, with the `[faults]` store failures.
    Sim,
    /// The Kafka topic store (chunks inside the worker's transaction).
    Topic,
}

/// `[cluster]`: brokers and workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    pub brokers: usize,
    pub replication: i16,
    pub min_insync: i16,
    pub timings: TimingsName,
    /// Worker hosts `w1..wN`.
    pub workers: usize,
    /// The workers' consumer session timeout.
    pub session_timeout_ms: u32,
    pub checkpoint_store: StoreKind,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            brokers: 3,
            replication: 3,
            min_insync: 2,
            timings: TimingsName::Fast,
            workers: 3,
            session_timeout_ms: 2_000,
            checkpoint_store: StoreKind::Sim,
        }
    }
}

impl ClusterSpec {
    /// The worker host names, `w1..wN`.
    pub fn worker_hosts(&self) -> Vec<String> {
        (1..=self.workers).map(|n| format!("w{n}")).collect()
    }
}

/// `[faults]`: the safety phase, drawn faults and listed ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSpec {
    /// The safety phase ends here: every fault is undone by then.
    pub until_ms: u64,
    /// Mean faults per simulated second, per kind.
    pub worker_crash_per_s: f64,
    pub pause_per_s: f64,
    pub freeze_per_s: f64,
    pub broker_crash_per_s: f64,
    pub leader_move_per_s: f64,
    pub network_partition_per_s: f64,
    pub latency_spike_per_s: f64,
    pub transaction_expiry_per_s: f64,
    /// A worker leaves its group (stops) and joins again later.
    pub consumer_join_leave_per_s: f64,
    /// Chance per protocol step (snapshot write, offsets, commit) that the
    /// worker crashes while the step is in flight.
    pub crash_at_step_chance: f64,
    /// Checkpoint-store faults: shares of failing writes and reads, and
    /// writes acknowledged this long before they are durable (lost if the
    /// writer crashes meanwhile).
    pub store_write_failure: f64,
    pub store_read_failure: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_ack_before_sync_ms: Option<u64>,
    /// Faults at listed instants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<ListedFault>,
}

impl Default for FaultsSpec {
    fn default() -> Self {
        Self {
            until_ms: 15_000,
            worker_crash_per_s: 0.0,
            pause_per_s: 0.0,
            freeze_per_s: 0.0,
            broker_crash_per_s: 0.0,
            leader_move_per_s: 0.0,
            network_partition_per_s: 0.0,
            latency_spike_per_s: 0.0,
            transaction_expiry_per_s: 0.0,
            consumer_join_leave_per_s: 0.0,
            crash_at_step_chance: 0.0,
            store_write_failure: 0.0,
            store_read_failure: 0.0,
            store_ack_before_sync_ms: None,
            at: Vec::new(),
        }
    }
}

impl FaultsSpec {
    /// The drawn faults' rates per second, by key.
    pub fn rates(&self) -> [(&'static str, f64); 9] {
        [
            ("worker_crash_per_s", self.worker_crash_per_s),
            ("pause_per_s", self.pause_per_s),
            ("freeze_per_s", self.freeze_per_s),
            ("broker_crash_per_s", self.broker_crash_per_s),
            ("leader_move_per_s", self.leader_move_per_s),
            ("network_partition_per_s", self.network_partition_per_s),
            ("latency_spike_per_s", self.latency_spike_per_s),
            ("transaction_expiry_per_s", self.transaction_expiry_per_s),
            ("consumer_join_leave_per_s", self.consumer_join_leave_per_s),
        ]
    }

    /// Whether anything is drawn from the seed (listed faults aside).
    pub fn draws(&self) -> bool {
        self.rates().iter().any(|(_, rate)| *rate > 0.0) || self.crash_at_step_chance > 0.0
    }

    /// These faults with nothing drawn: only the listed ones (and the
    /// store's, which are per call).
    pub fn listed_only(&self, at: Vec<ListedFault>) -> FaultsSpec {
        FaultsSpec {
            until_ms: self.until_ms,
            store_write_failure: self.store_write_failure,
            store_read_failure: self.store_read_failure,
            store_ack_before_sync_ms: self.store_ack_before_sync_ms,
            at,
            ..FaultsSpec::default()
        }
    }
}

/// `[checker]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckerSpec {
    /// The drain must finish this long after `until_ms`.
    pub liveness_ms: u64,
}

impl Default for CheckerSpec {
    fn default() -> Self {
        Self {
            liveness_ms: 60_000,
        }
    }
}

/// A protocol step a worker can crash at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Writing a snapshot to the checkpoint store.
    Snapshot,
    /// Sending the offsets (to the transaction, or committing them).
    Offsets,
    /// Committing the transaction (or flushing, at least once).
    Commit,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Snapshot => "snapshot",
            Step::Offsets => "offsets",
            Step::Commit => "commit",
        }
    }
}

/// One fault at a listed instant, as `[[faults.at]]` writes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "FaultRepr", into = "FaultRepr")]
pub struct ListedFault {
    pub at_ms: u64,
    pub fault: FaultKind,
}

/// Every kind of fault a scenario can list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// `crash`: the worker host crashes.
    Crash {
        host: String,
    },
    /// `restart`: the worker host starts (again): a crashed worker comes
    /// back, a stopped or left one joins.
    Restart {
        host: String,
    },
    /// `crash-at-step`: the host crashes at its first protocol step `step`
    /// at or after `at_ms`, while the step is in flight.
    CrashAtStep {
        host: String,
        step: Step,
    },
    /// `leave`: the worker stops and leaves its group (a `restart` brings
    /// it back).
    Leave {
        host: String,
    },
    /// `pause`: messages to and from the host are held.
    Pause {
        host: String,
        duration_ms: u64,
    },
    /// `freeze`: the host's code stops whole (a zombie when it resumes).
    Freeze {
        host: String,
        duration_ms: u64,
    },
    /// `crash-broker` / `restart-broker`.
    CrashBroker {
        broker: i32,
    },
    RestartBroker {
        broker: i32,
    },
    /// `move-leader`: of `topic`-`partition`, to `to` (none: the next live
    /// in-sync replica).
    MoveLeader {
        topic: String,
        partition: i32,
        to: Option<i32>,
    },
    /// `partition` / `heal`: no message passes between `a` and `b`.
    Partition {
        a: Vec<String>,
        b: Vec<String>,
    },
    Heal {
        a: Vec<String>,
        b: Vec<String>,
    },
    /// `heal-all`.
    HealAll,
    /// `max-latency`: every link's maximum latency.
    MaxLatency {
        max_ms: u64,
    },
    /// `latency`: both bounds of the links between `a` and `b`.
    Latency {
        a: Vec<String>,
        b: Vec<String>,
        min_ms: u64,
        max_ms: u64,
    },
    /// `expire-transactions`: every open transaction times out now.
    ExpireTransactions,
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Crash { .. } => "crash",
            FaultKind::Restart { .. } => "restart",
            FaultKind::CrashAtStep { .. } => "crash-at-step",
            FaultKind::Leave { .. } => "leave",
            FaultKind::Pause { .. } => "pause",
            FaultKind::Freeze { .. } => "freeze",
            FaultKind::CrashBroker { .. } => "crash-broker",
            FaultKind::RestartBroker { .. } => "restart-broker",
            FaultKind::MoveLeader { .. } => "move-leader",
            FaultKind::Partition { .. } => "partition",
            FaultKind::Heal { .. } => "heal",
            FaultKind::HealAll => "heal-all",
            FaultKind::MaxLatency { .. } => "max-latency",
            FaultKind::Latency { .. } => "latency",
            FaultKind::ExpireTransactions => "expire-transactions",
        }
    }

    /// The simulator's fault, for the kinds the cluster applies itself
    /// (`crash-at-step` and `leave` are the worker hosts').
    pub fn cluster_fault(&self) -> Option<Fault> {
        Some(match self.clone() {
            FaultKind::Crash { host } => Fault::CrashHost(host),
            FaultKind::Restart { host } => Fault::RestartHost(host),
            FaultKind::Pause { host, duration_ms } => Fault::PauseHost { host, duration_ms },
            FaultKind::Freeze { host, duration_ms } => Fault::FreezeHost { host, duration_ms },
            FaultKind::CrashBroker { broker } => Fault::CrashBroker(broker),
            FaultKind::RestartBroker { broker } => Fault::RestartBroker(broker),
            FaultKind::MoveLeader {
                topic,
                partition,
                to,
            } => Fault::MoveLeader {
                partition: TopicPartition::new(topic, partition),
                to,
            },
            FaultKind::Partition { a, b } => Fault::Partition { a, b },
            FaultKind::Heal { a, b } => Fault::Heal { a, b },
            FaultKind::HealAll => Fault::HealAll,
            FaultKind::MaxLatency { max_ms } => Fault::SetMaxLatency { max_ms },
            FaultKind::Latency {
                a,
                b,
                min_ms,
                max_ms,
            } => Fault::SetLatency {
                a,
                b,
                min_ms,
                max_ms,
            },
            FaultKind::ExpireTransactions => Fault::ExpireTransactions,
            FaultKind::CrashAtStep { .. } | FaultKind::Leave { .. } => return None,
        })
    }

    /// The listed form of a simulator fault.
    pub fn from_cluster_fault(fault: &Fault) -> FaultKind {
        match fault.clone() {
            Fault::CrashHost(host) => FaultKind::Crash { host },
            Fault::RestartHost(host) => FaultKind::Restart { host },
            Fault::PauseHost { host, duration_ms } => FaultKind::Pause { host, duration_ms },
            Fault::FreezeHost { host, duration_ms } => FaultKind::Freeze { host, duration_ms },
            Fault::CrashBroker(broker) => FaultKind::CrashBroker { broker },
            Fault::RestartBroker(broker) => FaultKind::RestartBroker { broker },
            Fault::MoveLeader { partition, to } => FaultKind::MoveLeader {
                topic: partition.topic.clone(),
                partition: partition.partition,
                to,
            },
            Fault::Partition { a, b } => FaultKind::Partition { a, b },
            Fault::Heal { a, b } => FaultKind::Heal { a, b },
            Fault::HealAll => FaultKind::HealAll,
            Fault::SetMaxLatency { max_ms } => FaultKind::MaxLatency { max_ms },
            Fault::SetLatency {
                a,
                b,
                min_ms,
                max_ms,
            } => FaultKind::Latency {
                a,
                b,
                min_ms,
                max_ms,
            },
            Fault::ExpireTransactions => FaultKind::ExpireTransactions,
        }
    }

    /// The worker host it targets, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            FaultKind::Crash { host }
            | FaultKind::Restart { host }
            | FaultKind::CrashAtStep { host, .. }
            | FaultKind::Leave { host }
            | FaultKind::Pause { host, .. }
            | FaultKind::Freeze { host, .. } => Some(host),
            _ => None,
        }
    }

    /// How long it lasts by itself (pauses and freezes end on their own).
    pub fn duration_ms(&self) -> u64 {
        match self {
            FaultKind::Pause { duration_ms, .. } | FaultKind::Freeze { duration_ms, .. } => {
                *duration_ms
            }
            _ => 0,
        }
    }
}

impl fmt::Display for ListedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms: ", self.at_ms)?;
        match &self.fault {
            FaultKind::CrashAtStep { host, step } => {
                write!(f, "crash {host} at its next {} step", step.name())
            }
            FaultKind::Leave { host } => write!(f, "{host} leaves its group"),
            other => match other.cluster_fault() {
                Some(fault) => write!(f, "{fault}"),
                None => write!(f, "{}", other.name()),
            },
        }
    }
}

/// `[[faults.at]]` as written: every parameter a kind may take.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRepr {
    at_ms: u64,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    broker: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_ms: Option<u64>,
}

/// A listed fault's parameter, or the error naming what is missing.
fn needs<T>(value: Option<T>, kind: &str, key: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("a {kind:?} fault needs `{key}`"))
}

impl TryFrom<FaultRepr> for ListedFault {
    type Error = String;

    fn try_from(r: FaultRepr) -> Result<Self, String> {
        let kind = r.kind.as_str();
        let host = || needs(r.host.clone(), kind, "host");
        let duration = || needs(r.duration_ms, kind, "duration_ms");
        let sides = || {
            Ok::<_, String>((
                needs(r.a.clone(), kind, "a")?,
                needs(r.b.clone(), kind, "b")?,
            ))
        };
        let fault = match kind {
            "crash" => FaultKind::Crash { host: host()? },
            "restart" => FaultKind::Restart { host: host()? },
            "crash-at-step" => FaultKind::CrashAtStep {
                host: host()?,
                step: needs(r.step, kind, "step")?,
            },
            "leave" => FaultKind::Leave { host: host()? },
            "pause" => FaultKind::Pause {
                host: host()?,
                duration_ms: duration()?,
            },
            "freeze" => FaultKind::Freeze {
                host: host()?,
                duration_ms: duration()?,
            },
            "crash-broker" => FaultKind::CrashBroker {
                broker: needs(r.broker, kind, "broker")?,
            },
            "restart-broker" => FaultKind::RestartBroker {
                broker: needs(r.broker, kind, "broker")?,
            },
            "move-leader" => FaultKind::MoveLeader {
                topic: needs(r.topic.clone(), kind, "topic")?,
                partition: needs(r.partition, kind, "partition")?,
                to: r.to,
            },
            "partition" => {
                let (a, b) = sides()?;
                FaultKind::Partition { a, b }
            }
            "heal" => {
                let (a, b) = sides()?;
                FaultKind::Heal { a, b }
            }
            "heal-all" => FaultKind::HealAll,
            "max-latency" => FaultKind::MaxLatency {
                max_ms: needs(r.max_ms, kind, "max_ms")?,
            },
            "latency" => {
                let (a, b) = sides()?;
                FaultKind::Latency {
                    a,
                    b,
                    min_ms: needs(r.min_ms, kind, "min_ms")?,
                    max_ms: needs(r.max_ms, kind, "max_ms")?,
                }
            }
            "expire-transactions" => FaultKind::ExpireTransactions,
            other => {
                return Err(format!(
                    "unknown fault kind {other:?} (known: crash, restart, crash-at-step, leave, \
                     pause, freeze, crash-broker, restart-broker, move-leader, partition, heal, \
                     heal-all, max-latency, latency, expire-transactions)"
                ));
            }
        };
        Ok(ListedFault {
            at_ms: r.at_ms,
            fault,
        })
    }
}

impl From<ListedFault> for FaultRepr {
    fn from(listed: ListedFault) -> FaultRepr {
        let mut r = FaultRepr {
            at_ms: listed.at_ms,
            kind: listed.fault.name().to_string(),
            ..FaultRepr::default()
        };
        match listed.fault {
            FaultKind::Crash { host } | FaultKind::Restart { host } | FaultKind::Leave { host } => {
                r.host = Some(host)
            }
            FaultKind::CrashAtStep { host, step } => {
                r.host = Some(host);
                r.step = Some(step);
            }
            FaultKind::Pause { host, duration_ms } | FaultKind::Freeze { host, duration_ms } => {
                r.host = Some(host);
                r.duration_ms = Some(duration_ms);
            }
            FaultKind::CrashBroker { broker } | FaultKind::RestartBroker { broker } => {
                r.broker = Some(broker)
            }
            FaultKind::MoveLeader {
                topic,
                partition,
                to,
            } => {
                r.topic = Some(topic);
                r.partition = Some(partition);
                r.to = to;
            }
            FaultKind::Partition { a, b } | FaultKind::Heal { a, b } => {
                r.a = Some(a);
                r.b = Some(b);
            }
            FaultKind::MaxLatency { max_ms } => r.max_ms = Some(max_ms),
            FaultKind::Latency {
                a,
                b,
                min_ms,
                max_ms,
            } => {
                r.a = Some(a);
                r.b = Some(b);
                r.min_ms = Some(min_ms);
                r.max_ms = Some(max_ms);
            }
            FaultKind::HealAll | FaultKind::ExpireTransactions => {}
        }
        r
    }
}

// ---------------------------------------------------------------------------
// Reading, writing and checking

impl Scenario {
    /// A scenario of `job` with every default: no faults, `expect = "pass"`.
    pub fn new(job: impl Into<PathBuf>) -> Scenario {
        Scenario {
            job: job.into(),
            delivery: None,
            seeds: SeedRange::default(),
            expect: Expect::Pass,
            workload: WorkloadSpec::default(),
            cluster: ClusterSpec::default(),
            faults: FaultsSpec::default(),
            checker: CheckerSpec::default(),
        }
    }

    /// Reads and checks a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| ScenarioError(format!("{origin}: cannot read: {error}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Scenario::from_toml_str(&text, &origin, dir)
    }

    /// Parses and checks a scenario's text; `origin` names it in errors and
    /// a relative job path is resolved against `dir`.
    pub fn from_toml_str(text: &str, origin: &str, dir: &Path) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|error| parse_error(text, origin, &error))?;
        if scenario.job.is_relative() {
            scenario.job = dir.join(&scenario.job);
        }
        if let Some(recording) = &mut scenario.workload.recording
            && recording.is_relative()
        {
            *recording = dir.join(&*recording);
        }
        scenario.job = std::fs::canonicalize(&scenario.job).unwrap_or(scenario.job);
        scenario.check().map_err(|(key, message)| {
            let line = locate(text, &key).map_or(String::new(), |line| format!(":{line}"));
            ScenarioError(format!("{origin}{line}: `{key}`: {message}"))
        })?;
        Ok(scenario)
    }

    /// The scenario as a file that parses back to an equal value (the job
    /// path as held: absolute once read from a file).
    pub fn to_toml(&self) -> String {
        let text = toml::to_string(self).expect("a scenario is always representable in TOML");
        // One blank line before each table, as people write them (whether
        // or not the serializer already put one there).
        text.replace("\n[", "\n\n[").replace("\n\n\n[", "\n\n[")
    }

    /// Loads the scenario's job.
    pub fn load_job(&self) -> Result<Job, ScenarioError> {
        Job::from_file(&self.job).map_err(|error| ScenarioError(format!("job: {error}")))
    }

    /// The delivery the run uses: the scenario's, else the job's.
    pub fn delivery(&self, job: &Job) -> Delivery {
        self.delivery.map_or(job.delivery(), Delivery::from)
    }

    /// The workload kind: the scenario's, else the one the job's input
    /// topic suggests.
    pub fn workload_kind(&self, job: &Job) -> WorkloadKind {
        self.workload
            .kind
            .unwrap_or_else(|| WorkloadKind::for_input_topic(&job.input_topics()[0]))
    }

    /// Checks what serde cannot: `(key, why)` of the first problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        let job =
            Job::from_file(&self.job).map_err(|error| ("job".to_string(), error.to_string()))?;
        self.check_workload_fits(&job)?;
        self.check_workload()?;
        self.check_cluster()?;
        self.check_faults()?;
        Ok(())
    }

    /// The workload writes the fields the job reads its key from.
    fn check_workload_fits(&self, job: &Job) -> Result<(), (String, String)> {
        let kind = self.workload_kind(job);
        let key = &job.spec().input.key;
        if *key == kind.key_field() {
            return Ok(());
        }
        Err(problem(
            "workload.kind",
            format!(
                "a {:?} workload keys its records by `{}`, but job {:?} reads its key from \
                 `{key}`",
                kind.name(),
                kind.key_field(),
                job.name()
            ),
        ))
    }

    fn check_workload(&self) -> Result<(), (String, String)> {
        let w = &self.workload;
        let fractions = [
            ("out_of_order", w.out_of_order),
            ("late", w.late),
            ("beyond_lateness", w.beyond_lateness),
            ("undecodable", w.undecodable),
            ("burst_chance", w.burst_chance),
        ];
        for (key, value) in fractions {
            fraction(&format!("workload.{key}"), value)?;
        }
        let sum = w.out_of_order + w.late + w.beyond_lateness + w.undecodable;
        if sum > 1.0 {
            return Err(problem(
                "workload.out_of_order",
                format!("the fractions add up to {sum}, more than 1"),
            ));
        }
        positive("workload.partitions", i64::from(w.partitions))?;
        positive("workload.keys", w.keys as i64)?;
        positive("workload.burst_records", w.burst_records as i64)?;
        if !(w.rate_per_s > 0.0 && w.rate_per_s.is_finite()) {
            return Err(problem("workload.rate_per_s", "must be a positive number"));
        }
        if !(w.key_skew >= 0.0 && w.key_skew.is_finite()) {
            return Err(problem(
                "workload.key_skew",
                "must be 0 or a positive exponent",
            ));
        }
        if w.idle_partitions < 0 || w.idle_partitions >= w.partitions {
            return Err(problem(
                "workload.idle_partitions",
                format!("must be in 0..{} (fewer than the partitions)", w.partitions),
            ));
        }
        Ok(())
    }

    fn check_cluster(&self) -> Result<(), (String, String)> {
        let c = &self.cluster;
        positive("cluster.brokers", c.brokers as i64)?;
        positive("cluster.workers", c.workers as i64)?;
        if c.replication < 1 || c.replication as usize > c.brokers {
            return Err(problem(
                "cluster.replication",
                format!("must be in 1..={} (the brokers)", c.brokers),
            ));
        }
        if c.min_insync < 1 || c.min_insync > c.replication {
            return Err(problem(
                "cluster.min_insync",
                format!("must be in 1..={} (the replication)", c.replication),
            ));
        }
        let min_session = match c.timings {
            TimingsName::Kafka38 => eddyline_sim::config::KAFKA_TIMINGS,
            TimingsName::Fast => eddyline_sim::config::FAST_TIMINGS,
        }
        .group_min_session_timeout_ms;
        if c.session_timeout_ms < min_session.max(100) {
            return Err(problem(
                "cluster.session_timeout_ms",
                format!(
                    "{} ms is below the brokers' group.min.session.timeout.ms ({min_session} ms) \
                     or 100 ms",
                    c.session_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    fn check_faults(&self) -> Result<(), (String, String)> {
        let f = &self.faults;
        for (key, rate) in f.rates() {
            if !(rate >= 0.0 && rate.is_finite()) {
                return Err(problem(
                    &format!("faults.{key}"),
                    "must be a rate >= 0 per second",
                ));
            }
        }
        let shares = [
            ("crash_at_step_chance", f.crash_at_step_chance),
            ("store_write_failure", f.store_write_failure),
            ("store_read_failure", f.store_read_failure),
        ];
        for (key, value) in shares {
            fraction(&format!("faults.{key}"), value)?;
        }
        let any = f.draws() || !f.at.is_empty();
        if any && f.until_ms < MIN_UNTIL_MS {
            return Err(problem(
                "faults.until_ms",
                format!(
                    "{} ms is too short: faults start at {FAULTS_FROM_MS} ms and need until at \
                     least {MIN_UNTIL_MS} ms",
                    f.until_ms
                ),
            ));
        }
        if self.checker.liveness_ms < 5_000 {
            return Err(problem("checker.liveness_ms", "must be at least 5000 ms"));
        }
        for listed in &f.at {
            self.check_listed(listed)?;
        }
        Ok(())
    }

    fn check_listed(&self, listed: &ListedFault) -> Result<(), (String, String)> {
        let until = self.faults.until_ms;
        let end = listed.at_ms + listed.fault.duration_ms();
        if end >= until {
            return Err(problem(
                "faults.at.at_ms",
                format!("`{listed}` is not over before until_ms = {until}"),
            ));
        }
        if let Some(host) = listed.fault.host() {
            if !self.cluster.worker_hosts().iter().any(|h| h == host) {
                return Err(problem(
                    "faults.at.host",
                    format!(
                        "`{listed}`: no worker host {host:?} (the workers are w1..w{})",
                        self.cluster.workers
                    ),
                ));
            }
        }
        let broker = match &listed.fault {
            FaultKind::CrashBroker { broker } | FaultKind::RestartBroker { broker } => {
                Some(*broker)
            }
            FaultKind::MoveLeader { to, .. } => *to,
            _ => None,
        };
        if let Some(broker) = broker {
            if broker < 0 || broker as usize >= self.cluster.brokers {
                return Err(problem(
                    "faults.at.broker",
                    format!("`{listed}`: no broker {broker}"),
                ));
            }
        }
        Ok(())
    }
}

fn problem(key: &str, message: impl Into<String>) -> (String, String) {
    (key.to_string(), message.into())
}

fn fraction(key: &str, value: f64) -> Result<(), (String, String)> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(problem(key, format!("{value} is not a fraction in [0, 1]")))
    }
}

fn positive(key: &str, value: i64) -> Result<(), (String, String)> {
    if value > 0 {
        Ok(())
    } else {
        Err(problem(key, format!("{value}: must be at least 1")))
    }
}

/// One line for a TOML error: the file, the line, the key at fault (found
/// from the error's position) and toml's message.
fn parse_error(text: &str, origin: &str, error: &toml::de::Error) -> ScenarioError {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return ScenarioError(format!("{origin}: {message}"));
    };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    if let Some(field) = missing_field(&message) {
        // The span is the table that lacks the field.
        return match key_at_line(text, line).filter(|_| span.start > 0) {
            Some(table) => ScenarioError(format!("{origin}:{line}: `{table}.{field}`: {message}")),
            None => ScenarioError(format!("{origin}: `{field}`: {message}")),
        };
    }
    match key_at_line(text, line) {
        Some(key) => ScenarioError(format!("{origin}:{line}: `{key}`: {message}")),
        None => ScenarioError(format!("{origin}:{line}: {message}")),
    }
}

/// The field a "missing field `x`" message names.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The table header in force at each line, and the key a line sets.
fn lines_with_keys(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut table = String::new();
    text.lines().enumerate().filter_map(move |(index, line)| {
        let line = line.trim();
        if line.starts_with('[') {
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            return Some((index + 1, table.clone()));
        }
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        if key.is_empty() || key.starts_with('#') {
            return None;
        }
        let full = if table.is_empty() {
            key.to_string()
        } else {
            format!("{table}.{key}")
        };
        Some((index + 1, full))
    })
}

/// The dotted key set (or table opened) on `line`.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    lines_with_keys(text)
        .find(|(number, _)| *number == line)
        .map(|(_, key)| key)
}

/// The first line that sets `key` (dotted), if any.
fn locate(text: &str, key: &str) -> Option<usize> {
    lines_with_keys(text)
        .find(|(_, found)| found == key)
        .map(|(line, _)| line)
}
