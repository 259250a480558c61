//! What the hosts of one run share (single-threaded: `Rc`, `Cell`,
//! `RefCell`), and the small client helpers they all use.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eddyline_engine::transport::{
    Admin, ConsumerConfig, Isolation, NewTopic, ProducerConfig, TopicPartition, Transport,
};
use eddyline_engine::worker::WorkerStats;
use eddyline_sim::SimTransport;
use eddyline_sim::cluster::ClusterHandle;

use crate::scenario::{FaultKind, ListedFault, Step};

/// The end offset of every input partition, once the feeder wrote it all.
pub(super) type Ends = BTreeMap<TopicPartition, i64>;

/// The state of a run that its hosts share.
#[derive(Default)]
pub(super) struct Shared {
    /// The safety phase's end; the drain's deadline.
    pub(super) until_ms: u64,
    pub(super) deadline_ms: u64,
    pub(super) ends: RefCell<Option<Ends>>,
    /// The topics exist: faults may start.
    pub(super) topics_ready: Cell<bool>,
    /// The drain is over (or gave up): the workers stop.
    pub(super) done: Cell<bool>,
    /// The tasks that committed a checkpoint after the end of their input.
    pub(super) finished: RefCell<BTreeSet<i32>>,
    /// Why each incarnation of each worker stopped: (host, reason).
    pub(super) stops: RefCell<Vec<(String, String)>>,
    /// Each error that made the feeder replace its producer.
    pub(super) feeder_failures: RefCell<Vec<String>>,
    /// The latest stats of every incarnation: (host, start) → stats.
    pub(super) stats: RefCell<BTreeMap<(String, u64), WorkerStats>>,
    /// Every fault applied, in the order applied.
    pub(super) applied: RefCell<Vec<ListedFault>>,
    /// Worker hosts crashed and not restarted yet.
    pub(super) down: RefCell<BTreeSet<String>>,
    /// Worker hosts that left their group and did not join again yet.
    pub(super) leaving: RefCell<BTreeSet<String>>,
    /// Hosts crashed at a protocol step by the drawn chance: the restarter
    /// brings them back.
    pub(super) step_crashed: RefCell<Vec<String>>,
    /// Listed crashes at protocol steps not yet fired, per host.
    pub(super) armed: RefCell<BTreeMap<String, Vec<(u64, Step)>>>,
}

impl Shared {
    /// Notes a fault applied now, and what it does to the workers' state.
    pub(super) fn record(&self, at_ms: u64, fault: FaultKind) {
        match &fault {
            FaultKind::Crash { host } | FaultKind::CrashAtStep { host, .. } => {
                self.down.borrow_mut().insert(host.clone());
            }
            FaultKind::Restart { host } => {
                self.down.borrow_mut().remove(host);
                self.leaving.borrow_mut().remove(host);
            }
            FaultKind::Leave { host } => {
                self.leaving.borrow_mut().insert(host.clone());
            }
            _ => {}
        }
        self.applied.borrow_mut().push(ListedFault { at_ms, fault });
    }
}

pub(super) async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Waits until every broker is live and the internal topics exist.
pub(super) async fn wait_ready(handle: &ClusterHandle) {
    for _ in 0..20_000 {
        if handle.is_ready() {
            return;
        }
        sleep_ms(5).await;
    }
}

pub(super) fn transport(handle: &ClusterHandle) -> SimTransport {
    SimTransport::new(handle.bootstrap())
}

pub(super) fn producer_config(name: &str) -> ProducerConfig {
    let mut config = ProducerConfig::new(name, None);
    config.request_timeout_ms = 5_000;
    config.delivery_timeout_ms = 60_000;
    config.transaction_timeout_ms = 30_000;
    config
}

/// A reader's settings (no group unless given), `read_committed`.
pub(super) fn consumer_config(name: &str, group: Option<&str>) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(name, group.map(str::to_string));
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 600;
    config.request_timeout_ms = 5_000;
    config
}

pub(super) fn uncommitted_config(name: &str) -> ConsumerConfig {
    ConsumerConfig {
        isolation: Isolation::ReadUncommitted,
        ..consumer_config(name, None)
    }
}

pub(super) async fn create_topic(
    transport: &SimTransport,
    name: &str,
    partitions: i32,
    replication_factor: i16,
) -> turmoil::Result {
    let admin = transport.admin().await?;
    admin
        .create_topic(&NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        })
        .await?;
    Ok(())
}

pub(super) fn partitions_of(topic: &str, count: i32) -> Vec<TopicPartition> {
    (0..count).map(|p| TopicPartition::new(topic, p)).collect()
}
