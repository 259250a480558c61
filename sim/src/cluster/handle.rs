//! [`ClusterHandle`]: control of the cluster from inside hosts (fault
//! requests, the controller's view), and the replica checker that holds the
//! brokers' disks to Kafka's replication safety property.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use eddyline_engine::transport::TopicPartition;

use crate::broker::log::PartitionLog;
use crate::broker::{self, BrokerDisk};
use crate::config::ClusterConfig;
use crate::controller::Controller;
use crate::faults::Fault;
use crate::internal::PartitionImage;
use crate::protocol::{BrokerId, RecordBatch};
use crate::seed::Seed;
use crate::trace::{EventKind, Node, Trace, TraceSummary};
use crate::world;

/// What the run loop and every handle share.
pub(super) struct ControlShared {
    pub(super) seed: Seed,
    pub(super) config: Rc<ClusterConfig>,
    pub(super) controller: Rc<Controller>,
    pub(super) trace: Trace,
    /// Faults requested from inside hosts, applied by the run loop.
    pub(super) requests: RefCell<Vec<Fault>>,
    pub(super) brokers_down: RefCell<BTreeSet<BrokerId>>,
    /// Every broker's disk, by broker id (crashed brokers' too).
    pub(super) disks: Vec<Rc<RefCell<BrokerDisk>>>,
    /// When each worker host crashed (a restart of a running host
    /// included), oldest first: what the simulated checkpoint store needs
    /// to lose a crashed writer's unsynced writes.
    pub(super) host_crashes: RefCell<BTreeMap<String, Vec<u64>>>,
}

/// Control of the cluster usable from inside hosts (cheap to clone, not
/// `Send`). Faults requested here are applied by the run loop between
/// steps (within one tick); queries read the controller's view directly.
#[derive(Clone)]
pub struct ClusterHandle {
    pub(super) shared: Rc<ControlShared>,
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
            a: host_names(a),
            b: host_names(b),
        });
    }

    pub fn heal(&self, a: &[&str], b: &[&str]) {
        self.apply(Fault::Heal {
            a: host_names(a),
            b: host_names(b),
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
            a: host_names(a),
            b: host_names(b),
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

    /// Stops a worker host whole for `duration_ms`: its code and timers
    /// (see [`Fault::FreezeHost`]).
    pub fn freeze_host(&self, host: &str, duration_ms: u64) {
        self.apply(Fault::FreezeHost {
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
        let violations = replica_violations(&disks, self.shared.seed);
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

    /// The simulated times (ms) at which worker host `host` crashed, a
    /// restart of a running host included, oldest first; empty for a host
    /// that never did (and for client hosts, which cannot).
    pub fn host_crash_times(&self, host: &str) -> Vec<u64> {
        self.shared
            .host_crashes
            .borrow()
            .get(host)
            .cloned()
            .unwrap_or_default()
    }

    /// Records a fault injected by something other than the run loop (the
    /// simulated checkpoint store) in the run's trace.
    pub fn trace_fault(&self, description: &str) {
        self.shared
            .trace
            .record_name(Node::Cluster, EventKind::Fault, description, [0; 4]);
    }
}

fn host_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Every pair of replicas (by broker id) of a partition that differ below
/// the lower of their high watermarks, one line each, partitions in order.
fn replica_violations(disks: &[std::cell::Ref<'_, BrokerDisk>], seed: Seed) -> Vec<String> {
    let mut partitions: BTreeSet<&TopicPartition> = BTreeSet::new();
    for disk in disks {
        partitions.extend(disk.logs.keys());
    }
    let mut violations = Vec::new();
    for tp in partitions {
        let replicas: Vec<(usize, &PartitionLog)> = disks
            .iter()
            .enumerate()
            .filter_map(|(id, disk)| disk.logs.get(tp).map(|log| (id, log)))
            .collect();
        assert!(
            !replicas.is_empty(),
            "{tp} was listed from a disk holding it"
        );
        for (i, (a, log_a)) in replicas.iter().enumerate() {
            for (b, log_b) in &replicas[i + 1..] {
                assert!(a < b, "replica pairs are checked once, in broker order");
                let committed = log_a.high_watermark.min(log_b.high_watermark);
                let prefix_a = log_a.read(0, committed, u32::MAX);
                let prefix_b = log_b.read(0, committed, u32::MAX);
                if prefix_a != prefix_b {
                    violations.push(format!(
                        "{tp}: broker-{a} and broker-{b} differ below offset {committed} \
                         (seed {seed})"
                    ));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::SimCluster;
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
}
