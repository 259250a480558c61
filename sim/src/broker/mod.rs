//! A simulated Kafka broker: a turmoil host serving `crate::protocol` on
//! port 9092.
//!
//! - [`log`]: partition logs (the broker's disk, surviving crashes);
//! - [`producer_state`]: idempotence and transaction state per partition;
//! - [`partition`]: the in-memory replica state (role, ISR, followers);
//! - [`server`]: connections and request routing (one request at a time
//!   per connection), and the small requests (metadata, list offsets,
//!   find coordinator);
//! - [`leader_write`]: the leader's write path (append, then wait for the
//!   ISR: acks=all), shared by Produce and both coordinators;
//! - [`fetch`]: client and follower fetches (long poll, follower progress);
//! - [`fetch_encoding`]: Fetch answers encoded straight from stored batches;
//! - [`replication`]: the controller session, metadata propagation,
//!   follower fetchers with truncation, ISR maintenance;
//! - [`group_coordinator`] and [`txn_coordinator`]: the coordinators,
//!   whose state lives in the internal topics, sharded by partition
//!   ([`coordinator_shards`]: taking a shard over and dropping it).
//!
//! All state of a running broker is in one [`Broker`] behind `RefCell`s,
//! shared by the host's tasks (single-threaded; no borrow is ever held
//! across an `.await`). Waiters (acks=all, long-poll fetches) re-check
//! their condition whenever [`Broker::changed`] ticks.

pub(crate) mod coordinator_shards;
pub(crate) mod fetch;
pub(crate) mod fetch_encoding;
pub(crate) mod group_coordinator;
pub(crate) mod leader_write;
pub(crate) mod log;
pub(crate) mod partition;
pub(crate) mod producer_ids;
pub(crate) mod producer_state;
pub(crate) mod replication;
pub(crate) mod server;
pub(crate) mod txn_coordinator;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::rc::Rc;

use eddyline_engine::transport::{ErrorCode, TopicPartition};
use tokio::sync::{Notify, watch};
use turmoil::net::TcpListener;

use crate::broker::group_coordinator::GroupCoordinator;
use crate::broker::log::PartitionLog;
use crate::broker::partition::{FollowerProgress, LeaderState, Replica, Role};
use crate::broker::txn_coordinator::TxnCoordinator;
use crate::config::{BROKER_PORT, ClusterConfig, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::internal::{MetadataImage, PartitionImage};
use crate::protocol::BrokerId;
use crate::rpc::Reconnects;
use crate::seed::{DetRng, Seed};
use crate::trace::{EventKind, Node, Subject, Trace};
use crate::world::now_ms;

/// What survives a broker crash: its logs, and a start counter.
#[derive(Default)]
pub(crate) struct BrokerDisk {
    /// Grows by one at every start (the controller tells restarts apart).
    pub incarnation: u64,
    pub logs: BTreeMap<TopicPartition, PartitionLog>,
}

/// Requests from the run loop to a broker's software (outside the host,
/// so they reach whichever incarnation is running).
#[derive(Default)]
pub(crate) struct BrokerControl {
    /// Grows by one at every [`crate::faults::Fault::ExpireTransactions`].
    pub transaction_expiries: Cell<u64>,
    pub wake: Notify,
}

impl BrokerControl {
    pub(crate) fn request_transaction_expiry(&self) {
        self.transaction_expiries
            .set(self.transaction_expiries.get() + 1);
        self.wake.notify_one();
    }
}

/// What a broker host is built from (cloned into the host factory).
#[derive(Clone)]
pub(crate) struct BrokerContext {
    pub id: BrokerId,
    pub config: Rc<ClusterConfig>,
    pub disk: Rc<RefCell<BrokerDisk>>,
    pub trace: Trace,
    pub control: Rc<BrokerControl>,
    /// The broker's child seed (member ids).
    pub seed: Seed,
}

/// A running broker's volatile state.
pub(crate) struct BrokerState {
    pub metadata: Rc<MetadataImage>,
    /// -1 until registered with the controller.
    pub broker_epoch: i64,
    /// One per partition the metadata places on this broker.
    pub replicas: BTreeMap<TopicPartition, Replica>,
    /// Leaders this broker runs a fetcher for, with the fetcher's wake-up
    /// (new partitions to fetch cut its long poll short).
    pub fetchers: BTreeMap<BrokerId, Rc<Notify>>,
    /// The unused part of this broker's producer id block: `next..end`.
    pub producer_ids: (i64, i64),
    pub groups: GroupCoordinator,
    pub txns: TxnCoordinator,
}

/// A running broker.
pub(crate) struct Broker {
    pub id: BrokerId,
    pub incarnation: u64,
    pub config: Rc<ClusterConfig>,
    pub disk: Rc<RefCell<BrokerDisk>>,
    pub state: RefCell<BrokerState>,
    /// Ticks on every log append, high-watermark move, truncation and
    /// metadata change: waiters re-check their condition.
    pub changed: watch::Sender<u64>,
    /// Wakes the ISR manager (a follower caught up).
    pub isr_wake: Notify,
    pub trace: Trace,
    pub control: Rc<BrokerControl>,
    /// Draws group member ids (seeded per broker and incarnation).
    pub member_ids: RefCell<DetRng>,
    /// Spaces this broker's connection attempts per address.
    pub reconnects: Reconnects,
}

/// An error as the trace records it: Kafka's code, 0 for none, -1 for an
/// error Kafka has no code for.
pub(crate) fn error_code_for_trace(error: Option<ErrorCode>) -> i64 {
    error
        .map(|e| e.kafka_code().map_or(-1, i64::from))
        .unwrap_or(0)
}

/// The turmoil host name of a broker.
pub fn broker_host(id: BrokerId) -> String {
    format!("broker-{id}")
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
pub fn java_string_hashcode(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The internal-topic partition that holds a group's or transactional id's
/// state: `Utils.abs(key.hashCode) % partitions`, as Kafka computes it.
pub fn coordinator_partition(key: &str, partitions: i32) -> i32 {
    let hash = java_string_hashcode(key);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

/// One partition of a metadata image that names this broker a replica.
struct PartitionUpdate<'a> {
    tp: &'a TopicPartition,
    image: &'a PartitionImage,
    now: u64,
}

/// What applying a metadata image leaves to do once the state is released.
#[derive(Default)]
struct MetadataEffects {
    /// Internal partitions this broker now leads: load their coordinator.
    became_leader: Vec<(TopicPartition, i32)>,
    /// Internal partitions this broker no longer leads: unload.
    lost_leadership: Vec<TopicPartition>,
    /// Leaders this broker now follows: ensure a fetcher for each.
    new_followers: BTreeSet<BrokerId>,
}

impl Broker {
    fn new(context: &BrokerContext, incarnation: u64) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            id: context.id,
            incarnation,
            config: context.config.clone(),
            disk: context.disk.clone(),
            state: RefCell::new(BrokerState {
                metadata: Rc::new(MetadataImage::default()),
                broker_epoch: -1,
                replicas: BTreeMap::new(),
                fetchers: BTreeMap::new(),
                producer_ids: (0, 0),
                groups: GroupCoordinator::default(),
                txns: TxnCoordinator::default(),
            }),
            changed,
            isr_wake: Notify::new(),
            trace: context.trace.clone(),
            control: context.control.clone(),
            member_ids: RefCell::new(
                context
                    .seed
                    .derive(&format!("member-ids/{incarnation}"))
                    .rng(),
            ),
            reconnects: Reconnects::default(),
        }
    }

    pub(crate) fn node(&self) -> Node {
        Node::Broker(self.id)
    }

    /// Wakes every waiter to re-check its condition.
    pub(crate) fn notify_changed(&self) {
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    pub(crate) fn trace_partition(&self, kind: EventKind, tp: &TopicPartition, values: [i64; 4]) {
        self.trace.record(
            self.node(),
            kind,
            Subject::Partition(&tp.topic, tp.partition),
            values,
        );
    }

    /// Applies a metadata image from the controller: creates replicas for
    /// new partitions, and moves each replica to the role its leader epoch
    /// says. Starts fetchers and coordinator loads as needed.
    pub(crate) fn apply_metadata(self: &Rc<Self>, image: MetadataImage) {
        let now = now_ms();
        let image = Rc::new(image);
        let mut effects = MetadataEffects::default();
        {
            let mut state = self.state.borrow_mut();
            if image.epoch <= state.metadata.epoch {
                return;
            }
            state.metadata = image.clone();
            let mut disk = self.disk.borrow_mut();
            for (topic, topic_image) in &image.topics {
                for (index, partition) in topic_image.partitions.iter().enumerate() {
                    if !partition.replicas.contains(&self.id) {
                        continue;
                    }
                    let tp = TopicPartition::new(topic.clone(), index as i32);
                    let log = disk.logs.entry(tp.clone()).or_default();
                    let replica = state.replicas.entry(tp.clone()).or_insert_with(|| Replica {
                        leader_epoch: -1,
                        partition_epoch: -1,
                        replicas: partition.replicas.clone(),
                        isr: partition.isr.clone(),
                        min_insync_replicas: topic_image.min_insync_replicas,
                        internal: topic_image.internal,
                        role: Role::Offline,
                    });
                    replica.replicas = partition.replicas.clone();
                    replica.min_insync_replicas = topic_image.min_insync_replicas;
                    replica.internal = topic_image.internal;
                    let update = PartitionUpdate {
                        tp: &tp,
                        image: partition,
                        now,
                    };
                    if partition.leader_epoch > replica.leader_epoch {
                        self.change_role(&update, replica, log, &mut effects);
                    } else if partition.leader_epoch == replica.leader_epoch
                        && partition.partition_epoch > replica.partition_epoch
                    {
                        self.change_isr(&update, replica, log);
                    }
                }
            }
        }
        self.trace.record(
            self.node(),
            EventKind::MetadataApplied,
            Subject::None,
            [image.epoch as i64, 0, 0, 0],
        );
        for leader in effects.new_followers {
            replication::ensure_fetcher(self, leader);
        }
        for tp in effects.lost_leadership {
            self.unload_coordinator(&tp);
        }
        for (tp, leader_epoch) in effects.became_leader {
            self.load_coordinator(tp, leader_epoch);
        }
        self.notify_changed();
    }

    /// A new leader epoch for a replica: it becomes leader, follower or
    /// offline.
    fn change_role(
        &self,
        update: &PartitionUpdate<'_>,
        replica: &mut Replica,
        log: &mut PartitionLog,
        effects: &mut MetadataEffects,
    ) {
        let (tp, partition) = (update.tp, update.image);
        assert!(
            partition.leader_epoch > replica.leader_epoch,
            "{tp}: leader epochs only grow (seed {})",
            crate::seed_context::current_seed()
        );
        let was_leader = replica.is_leader();
        replica.leader_epoch = partition.leader_epoch;
        replica.partition_epoch = partition.partition_epoch;
        replica.isr = partition.isr.clone();
        match partition.leader {
            Some(leader) if leader == self.id => {
                self.become_leader(update, replica, log);
                if replica.internal {
                    effects
                        .became_leader
                        .push((tp.clone(), partition.leader_epoch));
                }
            }
            Some(leader) => {
                replica.role = Role::Follower {
                    leader,
                    needs_truncation: true,
                };
                effects.new_followers.insert(leader);
                self.trace_partition(
                    EventKind::BecomeFollower,
                    tp,
                    [i64::from(partition.leader_epoch), i64::from(leader), 0, 0],
                );
            }
            None => {
                replica.role = Role::Offline;
                self.trace_partition(
                    EventKind::BecomeFollower,
                    tp,
                    [i64::from(partition.leader_epoch), -1, 0, 0],
                );
            }
        }
        if was_leader && !replica.is_leader() && replica.internal {
            effects.lost_leadership.push(tp.clone());
        }
    }

    /// This broker leads the partition from its log end in the new epoch.
    fn become_leader(
        &self,
        update: &PartitionUpdate<'_>,
        replica: &mut Replica,
        log: &mut PartitionLog,
    ) {
        let (tp, partition, now) = (update.tp, update.image, update.now);
        let end = log.log_end_offset();
        log.assign_epoch(partition.leader_epoch, end);
        let followers = partition
            .replicas
            .iter()
            .filter(|&&id| id != self.id)
            .map(|&id| {
                (
                    id,
                    FollowerProgress {
                        log_end_offset: None,
                        last_caught_up_ms: now,
                        leader_end_offset_at_last_fetch: 0,
                        last_fetch_ms: now,
                    },
                )
            })
            .collect();
        replica.role = Role::Leader(LeaderState {
            epoch_start_offset: end,
            followers,
            pending_isr: None,
        });
        self.trace_partition(
            EventKind::BecomeLeader,
            tp,
            [i64::from(partition.leader_epoch), end, 0, 0],
        );
        if let Some((from, to)) = replica.maybe_advance_high_watermark(self.id, log) {
            self.trace_partition(EventKind::HighWatermark, tp, [from, to, 0, 0]);
        }
    }

    /// A new ISR in the same leader epoch (a newer partition epoch).
    fn change_isr(
        &self,
        update: &PartitionUpdate<'_>,
        replica: &mut Replica,
        log: &mut PartitionLog,
    ) {
        let partition = update.image;
        replica.partition_epoch = partition.partition_epoch;
        replica.isr = partition.isr.clone();
        if let Role::Leader(leader) = &mut replica.role {
            leader.pending_isr = None;
        }
        if let Some((from, to)) = replica.maybe_advance_high_watermark(self.id, log) {
            self.trace_partition(EventKind::HighWatermark, update.tp, [from, to, 0, 0]);
        }
    }

    /// Starts loading coordinator state from an internal partition this
    /// broker now leads.
    fn load_coordinator(self: &Rc<Self>, tp: TopicPartition, leader_epoch: i32) {
        if tp.topic == OFFSETS_TOPIC {
            group_coordinator::start_loading(self, tp.partition, leader_epoch);
        } else if tp.topic == TRANSACTION_STATE_TOPIC {
            txn_coordinator::start_loading(self, tp.partition, leader_epoch);
        }
    }

    fn unload_coordinator(self: &Rc<Self>, tp: &TopicPartition) {
        if tp.topic == OFFSETS_TOPIC {
            group_coordinator::unload(self, tp.partition);
        } else if tp.topic == TRANSACTION_STATE_TOPIC {
            txn_coordinator::unload(self, tp.partition);
        }
    }

    /// A new group member id, `<client_id>-<uuid>` as Kafka makes them,
    /// the UUID drawn from this broker incarnation's seeded generator.
    pub(crate) fn new_member_id(&self, client_id: &str) -> String {
        let mut rng = self.member_ids.borrow_mut();
        let (high, low) = (rng.next_u64(), rng.next_u64());
        format!(
            "{client_id}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }
}

/// The broker host's software: recover, then serve.
pub(crate) async fn run(context: BrokerContext) -> turmoil::Result {
    let incarnation = {
        let mut disk = context.disk.borrow_mut();
        disk.incarnation += 1;
        // Log recovery: the logs are as they were; a high watermark is
        // never above the log end.
        for log in disk.logs.values_mut() {
            log.high_watermark = log.high_watermark.min(log.log_end_offset());
        }
        disk.incarnation
    };
    context.trace.record(
        Node::Broker(context.id),
        EventKind::BrokerStarted,
        Subject::None,
        [incarnation as i64, 0, 0, 0],
    );
    let broker = Rc::new(Broker::new(&context, incarnation));
    tokio::task::spawn_local(replication::controller_session(broker.clone()));
    tokio::task::spawn_local(replication::metadata_poller(broker.clone()));
    tokio::task::spawn_local(replication::isr_manager(broker.clone()));
    tokio::task::spawn_local(txn_coordinator::timeout_checker(broker.clone()));
    tokio::task::spawn_local(group_coordinator::session_checker(broker.clone()));
    // Kafka 3.8 serves no client before the broker has caught up with the
    // metadata log: `BrokerServer.startup` waits for the lifecycle
    // manager's `initialCatchUpFuture` before
    // `socketServer.enableRequestProcessing`. A restarted broker that
    // answered from an empty image would call every topic unknown, and a
    // consumer group's leader would then assign nothing.
    caught_up_with_metadata(&broker).await;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, BROKER_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(server::serve_connection(broker.clone(), stream));
    }
}

/// Returns once the broker has applied a metadata image from the
/// controller (the controller always sends its latest whole image).
async fn caught_up_with_metadata(broker: &Broker) {
    let mut changed = broker.changed.subscribe();
    while broker.state.borrow().metadata.epoch == 0 {
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Test support: `can_follow(previous, next)` holds exactly for the pairs
/// in `legal`, over every pair of `all` (a state machine's transition
/// table checked against Kafka's `validPreviousStates`).
#[cfg(test)]
pub(crate) fn assert_transition_table<S: Copy + PartialEq + std::fmt::Debug>(
    all: &[S],
    legal: &[(S, S)],
    can_follow: impl Fn(S, S) -> bool,
) {
    for &previous in all {
        for &next in all {
            assert_eq!(
                can_follow(previous, next),
                legal.contains(&(previous, next)),
                "{previous:?} -> {next:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_partitions_match_kafkas_hashing() {
        // "".hashCode() == 0; "a".hashCode() == 97; "group".hashCode() == 98629247
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("group"), 98_629_247);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Utils.abs gives 0.
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
        assert_eq!(coordinator_partition("polygenelubricants", 50), 0);
        assert_eq!(coordinator_partition("group", 50), 98_629_247 % 50);
        // Negative hashes are made positive before the modulo.
        assert_eq!(java_string_hashcode("abcdefghij"), -634_317_659);
        assert_eq!(coordinator_partition("abcdefghij", 4), 3);
        assert_eq!(coordinator_partition("txn-1", 4), 2);
    }
}
