//! The KRaft controller, modelled as one always-available host
//! `controller`.
//!
//! Simplification (documented in BROKER-NOTES.md): there is one controller
//! and it never fails or fails over; its state lives outside its host, and
//! the run loop never crashes it. Network partitions can still isolate it,
//! and brokers that cannot reach it lose their session and are fenced,
//! exactly as with a KRaft quorum that a broker cannot reach.
//!
//! What it does, as Kafka's controller does:
//! - brokers register (with an incarnation that grows on every start) and
//!   heartbeat; a broker that misses heartbeats for the session timeout, or
//!   that re-registers after a restart, is fenced: it leaves every ISR it
//!   is in (unless it is the last member) and its leaderships move to the
//!   first live in-sync replica in replica order (unclean election is
//!   disabled: no live ISR member, no leader);
//! - a fenced broker is unfenced by its next heartbeat after registering,
//!   and then leads the offline partitions whose ISR it is in;
//! - ISR changes arrive from leaders as AlterPartition (partition epoch
//!   checked, additions must be live brokers);
//! - CreateTopics (forwarded by brokers) with Kafka's rack-unaware replica
//!   placement, seeded;
//! - producer id blocks for InitProducerId;
//! - metadata propagation: every change bumps the metadata epoch; brokers
//!   long-poll for newer images.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, NewTopic, TopicPartition};
use tokio::sync::watch;
use turmoil::net::{TcpListener, TcpStream};

use crate::config::{CONTROLLER_PORT, ClusterConfig, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::internal::{
    BrokerImage, InternalRequest, InternalResponse, MetadataImage, PartitionImage, TopicImage,
};
use crate::protocol::{
    BrokerId, Frame, Request, Response, TopicError, codes, read_frame, write_frame,
};
use crate::seed::DetRng;
use crate::trace::{EventKind, Node, Subject, Trace, broker_mask};
use crate::world::now_ms;

struct BrokerEntry {
    host: String,
    incarnation: u64,
    broker_epoch: i64,
    fenced: bool,
    last_heartbeat_ms: u64,
}

/// The controller's state (the metadata log, materialised).
pub(crate) struct ControllerState {
    brokers: BTreeMap<BrokerId, BrokerEntry>,
    topics: BTreeMap<String, TopicImage>,
    epoch: u64,
    next_broker_epoch: i64,
    next_producer_id: i64,
    placement: DetRng,
    internal_topics_created: bool,
    image_cache: Option<Rc<MetadataImage>>,
}

/// The controller: state outside the host, so the run loop and the
/// [`crate::cluster::ClusterHandle`] can read it and apply leader moves.
pub(crate) struct Controller {
    config: Rc<ClusterConfig>,
    trace: Trace,
    state: RefCell<ControllerState>,
    changed: watch::Sender<u64>,
}

/// A leader election, for the trace.
struct Election {
    topic: String,
    partition: i32,
    leader: Option<BrokerId>,
    leader_epoch: i32,
    isr_mask: i64,
}

impl Election {
    /// The election just made in partition `index` of `topic`.
    fn of(topic: &str, index: usize, partition: &PartitionImage) -> Self {
        assert!(
            partition
                .leader
                .is_none_or(|leader| partition.isr.contains(&leader)),
            "{topic}-{index}: an elected leader is in the ISR (seed {})",
            crate::seed_context::current_seed()
        );
        Election {
            topic: topic.to_string(),
            partition: index as i32,
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
            isr_mask: broker_mask(&partition.isr),
        }
    }
}

impl Controller {
    pub(crate) fn new(config: Rc<ClusterConfig>, trace: Trace, placement: DetRng) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            config,
            trace,
            state: RefCell::new(ControllerState {
                brokers: BTreeMap::new(),
                topics: BTreeMap::new(),
                epoch: 1,
                next_broker_epoch: 1,
                next_producer_id: 1000,
                placement,
                internal_topics_created: false,
                image_cache: None,
            }),
            changed,
        }
    }

    /// The current metadata image (shared until the next change).
    pub(crate) fn image(&self) -> Rc<MetadataImage> {
        let mut state = self.state.borrow_mut();
        if let Some(image) = &state.image_cache {
            return image.clone();
        }
        let image = Rc::new(MetadataImage {
            epoch: state.epoch,
            brokers: state
                .brokers
                .iter()
                .map(|(&id, entry)| {
                    (
                        id,
                        BrokerImage {
                            host: entry.host.clone(),
                            fenced: entry.fenced,
                        },
                    )
                })
                .collect(),
            topics: state.topics.clone(),
        });
        state.image_cache = Some(image.clone());
        image
    }

    /// The leader of a partition as the controller knows it now.
    pub(crate) fn leader_of(&self, tp: &TopicPartition) -> Option<BrokerId> {
        let state = self.state.borrow();
        partition_of(&state.topics, tp).and_then(|p| p.leader)
    }

    /// The partition's state as the controller knows it now.
    pub(crate) fn partition_state(&self, tp: &TopicPartition) -> Option<PartitionImage> {
        let state = self.state.borrow();
        partition_of(&state.topics, tp).cloned()
    }

    /// Whether the broker is registered and unfenced.
    pub(crate) fn is_broker_live(&self, broker: BrokerId) -> bool {
        let state = self.state.borrow();
        state
            .brokers
            .get(&broker)
            .is_some_and(|entry| !entry.fenced)
    }

    pub(crate) fn internal_topics_created(&self) -> bool {
        self.state.borrow().internal_topics_created
    }

    /// Moves a partition's leadership to `to` (a controlled leader move, as
    /// a reassignment or a preferred-leader election does); `None` picks the
    /// next live in-sync replica after the current leader. Returns the new
    /// leader, or why the move was refused.
    pub(crate) fn move_leader(
        &self,
        tp: &TopicPartition,
        to: Option<BrokerId>,
    ) -> Result<BrokerId, &'static str> {
        let mut state = self.state.borrow_mut();
        let ControllerState {
            brokers, topics, ..
        } = &mut *state;
        let live = |id: &BrokerId| brokers.get(id).is_some_and(|entry| !entry.fenced);
        let partition = partition_of_mut(topics, tp).ok_or("unknown partition")?;
        let current = partition.leader;
        let target = match to {
            Some(target) => {
                if Some(target) == current {
                    return Err("already the leader");
                }
                if !partition.isr.contains(&target) {
                    return Err("target is not in the ISR");
                }
                if !live(&target) {
                    return Err("target broker is fenced");
                }
                target
            }
            None => {
                let candidates: Vec<BrokerId> = partition
                    .isr
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != current && live(id))
                    .collect();
                let after = candidates
                    .iter()
                    .copied()
                    .find(|&id| current.is_some_and(|leader| id > leader));
                after
                    .or_else(|| candidates.first().copied())
                    .ok_or("no other live in-sync replica")?
            }
        };
        partition.leader = Some(target);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
        let (leader_epoch, isr_mask) = (partition.leader_epoch, broker_mask(&partition.isr));
        drop(state);
        self.trace.record(
            Node::Controller,
            EventKind::Election,
            Subject::Partition(&tp.topic, tp.partition),
            [i64::from(target), i64::from(leader_epoch), isr_mask, 0],
        );
        self.bump();
        Ok(target)
    }

    fn bump(&self) {
        {
            let mut state = self.state.borrow_mut();
            state.epoch += 1;
            state.image_cache = None;
        }
        self.changed.send_modify(|version| *version += 1);
    }

    fn handle(&self, request: InternalRequest) -> Result<InternalResponse, MetadataWait> {
        Ok(match request {
            InternalRequest::RegisterBroker {
                broker_id,
                incarnation,
                host,
            } => self.register(broker_id, incarnation, host),
            InternalRequest::BrokerHeartbeat {
                broker_id,
                broker_epoch,
            } => self.heartbeat(broker_id, broker_epoch),
            InternalRequest::FetchMetadata {
                known_epoch,
                max_wait_ms,
                ..
            } => {
                if self.state.borrow().epoch > known_epoch {
                    InternalResponse::FetchMetadata {
                        image: Some((*self.image()).clone()),
                    }
                } else {
                    return Err(MetadataWait {
                        known_epoch,
                        max_wait_ms,
                    });
                }
            }
            InternalRequest::AlterPartition {
                broker_id,
                broker_epoch,
                topic_partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => InternalResponse::AlterPartition {
                result: self.alter_partition(
                    broker_id,
                    broker_epoch,
                    &topic_partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                ),
            },
            InternalRequest::CreateTopics { topics } => InternalResponse::CreateTopics {
                results: topics
                    .iter()
                    .map(|topic| TopicError {
                        name: topic.name.clone(),
                        error: self.create_topic(topic, false).err(),
                    })
                    .collect(),
            },
            InternalRequest::AllocateProducerIds { .. } => {
                let count = self.config.producer_id_block_size;
                let first = {
                    let mut state = self.state.borrow_mut();
                    let first = state.next_producer_id;
                    state.next_producer_id += count;
                    first
                };
                self.trace.record(
                    Node::Controller,
                    EventKind::ProducerIdsAllocated,
                    Subject::None,
                    [first, count, 0, 0],
                );
                InternalResponse::AllocateProducerIds {
                    error: None,
                    first_producer_id: first,
                    count,
                }
            }
            InternalRequest::OffsetsForLeaderEpoch { .. }
            | InternalRequest::ReplicaFetch { .. }
            | InternalRequest::WriteTxnMarkers { .. }
            | InternalRequest::VerifyTxnPartitions { .. } => InternalResponse::Error {
                error: codes::INVALID_REQUEST,
            },
        })
    }

    fn register(&self, broker_id: BrokerId, incarnation: u64, host: String) -> InternalResponse {
        if broker_id < 0 || broker_id as usize >= self.config.brokers {
            return InternalResponse::RegisterBroker {
                error: Some(codes::INVALID_REQUEST),
                broker_epoch: -1,
            };
        }
        let previous = {
            let state = self.state.borrow();
            state
                .brokers
                .get(&broker_id)
                .map(|entry| (entry.incarnation, entry.broker_epoch, entry.fenced))
        };
        if let Some((known_incarnation, broker_epoch, _)) = previous {
            if known_incarnation == incarnation {
                return InternalResponse::RegisterBroker {
                    error: None,
                    broker_epoch,
                };
            }
        }
        // A restart: the previous incarnation is gone. Fence it now rather
        // than waiting for its session to expire (Kafka does the same when
        // a broker re-registers with a new incarnation id).
        if let Some((_, _, false)) = previous {
            self.fence(broker_id);
        }
        let broker_epoch = {
            let mut state = self.state.borrow_mut();
            let broker_epoch = state.next_broker_epoch;
            state.next_broker_epoch += 1;
            state.brokers.insert(
                broker_id,
                BrokerEntry {
                    host,
                    incarnation,
                    broker_epoch,
                    fenced: true,
                    last_heartbeat_ms: now_ms(),
                },
            );
            broker_epoch
        };
        self.trace.record(
            Node::Controller,
            EventKind::BrokerRegistered,
            Subject::None,
            [i64::from(broker_id), broker_epoch, 0, 0],
        );
        self.bump();
        InternalResponse::RegisterBroker {
            error: None,
            broker_epoch,
        }
    }

    fn heartbeat(&self, broker_id: BrokerId, broker_epoch: i64) -> InternalResponse {
        let fenced = {
            let mut state = self.state.borrow_mut();
            match state.brokers.get_mut(&broker_id) {
                Some(entry) if entry.broker_epoch == broker_epoch => {
                    entry.last_heartbeat_ms = now_ms();
                    entry.fenced
                }
                _ => {
                    return InternalResponse::BrokerHeartbeat {
                        error: Some(codes::STALE_BROKER_EPOCH),
                        fenced: true,
                    };
                }
            }
        };
        if fenced {
            self.unfence(broker_id);
        }
        InternalResponse::BrokerHeartbeat {
            error: None,
            fenced: false,
        }
    }

    /// Traces a broker's fencing or unfencing, then the elections it caused.
    fn trace_fencing(
        &self,
        kind: EventKind,
        broker_id: BrokerId,
        broker_epoch: i64,
        elections: &[Election],
    ) {
        self.trace.record(
            Node::Controller,
            kind,
            Subject::None,
            [i64::from(broker_id), broker_epoch, 0, 0],
        );
        for election in elections {
            self.trace.record(
                Node::Controller,
                EventKind::Election,
                Subject::Partition(&election.topic, election.partition),
                [
                    election.leader.map_or(-1, i64::from),
                    i64::from(election.leader_epoch),
                    election.isr_mask,
                    0,
                ],
            );
        }
    }

    /// Fences a broker: out of every ISR it is not the last member of, and
    /// its leaderships move to live in-sync replicas.
    pub(crate) fn fence(&self, broker_id: BrokerId) {
        let mut elections = Vec::new();
        let broker_epoch;
        {
            let mut state = self.state.borrow_mut();
            let ControllerState {
                brokers, topics, ..
            } = &mut *state;
            let Some(entry) = brokers.get_mut(&broker_id) else {
                return;
            };
            if entry.fenced {
                return;
            }
            entry.fenced = true;
            broker_epoch = entry.broker_epoch;
            let live: Vec<BrokerId> = brokers
                .iter()
                .filter(|(_, entry)| !entry.fenced)
                .map(|(&id, _)| id)
                .collect();
            for (name, topic) in topics.iter_mut() {
                for (index, partition) in topic.partitions.iter_mut().enumerate() {
                    let mut changed = false;
                    if partition.isr.contains(&broker_id) && partition.isr.len() > 1 {
                        partition.isr.retain(|&id| id != broker_id);
                        changed = true;
                    }
                    if partition.leader == Some(broker_id) {
                        partition.leader = partition
                            .replicas
                            .iter()
                            .copied()
                            .find(|id| partition.isr.contains(id) && live.contains(id));
                        partition.leader_epoch += 1;
                        changed = true;
                        elections.push(Election::of(name, index, partition));
                    }
                    if changed {
                        partition.partition_epoch += 1;
                    }
                }
            }
        }
        self.trace_fencing(EventKind::BrokerFenced, broker_id, broker_epoch, &elections);
        self.bump();
    }

    fn unfence(&self, broker_id: BrokerId) {
        let mut elections = Vec::new();
        let broker_epoch;
        {
            let mut state = self.state.borrow_mut();
            let entry = state
                .brokers
                .get_mut(&broker_id)
                .expect("unfencing a registered broker");
            entry.fenced = false;
            broker_epoch = entry.broker_epoch;
            for (name, topic) in state.topics.iter_mut() {
                for (index, partition) in topic.partitions.iter_mut().enumerate() {
                    if partition.leader.is_none() && partition.isr.contains(&broker_id) {
                        partition.leader = Some(broker_id);
                        partition.leader_epoch += 1;
                        partition.partition_epoch += 1;
                        elections.push(Election::of(name, index, partition));
                    }
                }
            }
        }
        self.trace_fencing(
            EventKind::BrokerUnfenced,
            broker_id,
            broker_epoch,
            &elections,
        );
        self.bump();
        self.maybe_create_internal_topics();
    }

    /// `__consumer_offsets` and `__transaction_state` are created once every
    /// configured broker has registered and been unfenced (Kafka creates
    /// them on the first FindCoordinator; creating them at start-up makes
    /// their placement independent of client timing).
    fn maybe_create_internal_topics(&self) {
        let ready = {
            let state = self.state.borrow();
            !state.internal_topics_created
                && state.brokers.values().filter(|entry| !entry.fenced).count()
                    == self.config.brokers
        };
        if !ready {
            return;
        }
        self.state.borrow_mut().internal_topics_created = true;
        let replication_factor = self
            .config
            .internal_topic_replication_factor
            .min(self.config.brokers as i16);
        for (name, partitions) in [
            (OFFSETS_TOPIC, self.config.offsets_topic_partitions),
            (
                TRANSACTION_STATE_TOPIC,
                self.config.transaction_state_partitions,
            ),
        ] {
            let topic = NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor,
                configs: vec![(
                    "min.insync.replicas".to_string(),
                    self.config
                        .min_insync_replicas
                        .min(replication_factor)
                        .to_string(),
                )],
            };
            let result = self.create_topic(&topic, true);
            assert!(
                result.is_ok(),
                "creating internal topic {name} failed: {result:?} (seed {})",
                crate::seed_context::current_seed()
            );
        }
    }

    fn create_topic(&self, topic: &NewTopic, internal: bool) -> Result<(), ErrorCode> {
        let result = self.try_create_topic(topic, internal);
        self.trace.record(
            Node::Controller,
            EventKind::TopicCreated,
            Subject::Name(&topic.name),
            [
                i64::from(topic.partitions),
                i64::from(topic.replication_factor),
                result
                    .err()
                    .and_then(ErrorCode::kafka_code)
                    .map_or(0, i64::from),
                0,
            ],
        );
        if result.is_ok() {
            self.bump();
        }
        result
    }

    fn try_create_topic(&self, topic: &NewTopic, internal: bool) -> Result<(), ErrorCode> {
        if !valid_topic_name(&topic.name) {
            return Err(codes::INVALID_TOPIC);
        }
        let mut min_insync_replicas = self.config.min_insync_replicas;
        for (key, value) in &topic.configs {
            if key == "min.insync.replicas" {
                min_insync_replicas = value
                    .parse::<i16>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(codes::INVALID_CONFIG)?;
            }
        }
        let mut state = self.state.borrow_mut();
        if state.topics.contains_key(&topic.name) {
            return Err(ErrorCode::TopicAlreadyExists);
        }
        let partitions = match topic.partitions {
            -1 => self.config.default_partitions,
            n if n >= 1 => n,
            _ => return Err(ErrorCode::InvalidPartitions),
        };
        let replication_factor = match topic.replication_factor {
            -1 => self.config.replication_factor,
            n if n >= 1 => n,
            _ => return Err(codes::INVALID_REPLICATION_FACTOR),
        };
        let live: Vec<BrokerId> = state
            .brokers
            .iter()
            .filter(|(_, entry)| !entry.fenced)
            .map(|(&id, _)| id)
            .collect();
        if replication_factor as usize > live.len() {
            return Err(codes::INVALID_REPLICATION_FACTOR);
        }
        let assignment = place_replicas(
            &mut state.placement,
            &live,
            partitions,
            replication_factor as usize,
        );
        let image = TopicImage {
            partitions: assignment
                .into_iter()
                .map(|replicas| PartitionImage {
                    leader: Some(replicas[0]),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: replicas.clone(),
                    replicas,
                })
                .collect(),
            min_insync_replicas,
            internal,
            configs: topic.configs.clone(),
        };
        state.topics.insert(topic.name.clone(), image);
        Ok(())
    }

    fn alter_partition(
        &self,
        broker_id: BrokerId,
        broker_epoch: i64,
        tp: &TopicPartition,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    ) -> Result<PartitionImage, ErrorCode> {
        let result = {
            let mut state = self.state.borrow_mut();
            let ControllerState {
                brokers, topics, ..
            } = &mut *state;
            match brokers.get(&broker_id) {
                Some(entry) if entry.broker_epoch == broker_epoch => {}
                _ => return Err(codes::STALE_BROKER_EPOCH),
            }
            let partition =
                partition_of_mut(topics, tp).ok_or(ErrorCode::UnknownTopicOrPartition)?;
            if partition.leader != Some(broker_id) {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if partition.leader_epoch != leader_epoch {
                return Err(codes::FENCED_LEADER_EPOCH);
            }
            if partition.partition_epoch != partition_epoch {
                return Err(codes::INVALID_UPDATE_VERSION);
            }
            let valid_members = isr.contains(&broker_id)
                && isr.iter().all(|id| partition.replicas.contains(id))
                && isr.iter().all(|id| {
                    partition.isr.contains(id) || brokers.get(id).is_some_and(|entry| !entry.fenced)
                });
            if !valid_members {
                return Err(codes::INELIGIBLE_REPLICA);
            }
            let ordered: Vec<BrokerId> = partition
                .replicas
                .iter()
                .copied()
                .filter(|id| isr.contains(id))
                .collect();
            if ordered == partition.isr {
                return Ok(partition.clone());
            }
            partition.isr = ordered;
            partition.partition_epoch += 1;
            partition.clone()
        };
        self.trace.record(
            Node::Controller,
            EventKind::IsrChange,
            Subject::Partition(&tp.topic, tp.partition),
            [
                broker_mask(&result.isr),
                i64::from(result.partition_epoch),
                i64::from(result.leader_epoch),
                0,
            ],
        );
        self.bump();
        Ok(result)
    }

    fn check_sessions(&self) {
        let now = now_ms();
        let expired: Vec<BrokerId> = {
            let state = self.state.borrow();
            state
                .brokers
                .iter()
                .filter(|(_, entry)| {
                    !entry.fenced
                        && now.saturating_sub(entry.last_heartbeat_ms)
                            > self.config.broker_session_timeout_ms
                })
                .map(|(&id, _)| id)
                .collect()
        };
        for broker_id in expired {
            self.fence(broker_id);
        }
    }
}

struct MetadataWait {
    known_epoch: u64,
    max_wait_ms: u32,
}

fn partition_of<'a>(
    topics: &'a BTreeMap<String, TopicImage>,
    tp: &TopicPartition,
) -> Option<&'a PartitionImage> {
    let topic = topics.get(&tp.topic)?;
    usize::try_from(tp.partition)
        .ok()
        .and_then(|index| topic.partitions.get(index))
}

fn partition_of_mut<'a>(
    topics: &'a mut BTreeMap<String, TopicImage>,
    tp: &TopicPartition,
) -> Option<&'a mut PartitionImage> {
    let topic = topics.get_mut(&tp.topic)?;
    usize::try_from(tp.partition)
        .ok()
        .and_then(|index| topic.partitions.get_mut(index))
}

/// Kafka's legal topic names: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(crate) fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Kafka's rack-unaware replica assignment (`AdminUtils.assignReplicasToBrokers`)
/// with its random start index and shift drawn from the seeded RNG.
pub(crate) fn place_replicas(
    rng: &mut DetRng,
    brokers: &[BrokerId],
    partitions: i32,
    replication_factor: usize,
) -> Vec<Vec<BrokerId>> {
    let n = brokers.len();
    assert!(
        replication_factor >= 1 && replication_factor <= n,
        "placement needs 1..=brokers replicas"
    );
    let start_index = rng.below(n as u64) as usize;
    let mut shift = rng.below(n as u64) as usize;
    let mut assignment = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions as usize {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start_index) % n;
        let mut replicas = vec![brokers[first]];
        for j in 0..replication_factor - 1 {
            let index = if n == 1 {
                first
            } else {
                (first + 1 + (shift + j) % (n - 1)) % n
            };
            replicas.push(brokers[index]);
        }
        assignment.push(replicas);
    }
    assignment
}

/// The controller host's software.
pub(crate) async fn run(controller: Rc<Controller>) -> turmoil::Result {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, CONTROLLER_PORT)).await?;
    let checker = controller.clone();
    tokio::task::spawn_local(async move {
        let interval = Duration::from_millis(checker.config.broker_heartbeat_interval_ms.max(1));
        loop {
            tokio::time::sleep(interval).await;
            checker.check_sessions();
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(serve(controller.clone(), stream));
    }
}

async fn serve(controller: Rc<Controller>, mut stream: TcpStream) {
    loop {
        let frame: Frame<Request> = match read_frame(&mut stream).await {
            Ok(Some(frame)) => frame,
            _ => return,
        };
        let response = match frame.body {
            Request::Internal(request) => match controller.handle(request) {
                Ok(response) => response,
                Err(wait) => wait_for_metadata(&controller, wait).await,
            },
            _ => InternalResponse::Error {
                error: codes::INVALID_REQUEST,
            },
        };
        let reply = Frame {
            correlation_id: frame.correlation_id,
            body: Response::Internal(response),
        };
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

async fn wait_for_metadata(controller: &Controller, wait: MetadataWait) -> InternalResponse {
    let mut changed = controller.changed.subscribe();
    let timeout = tokio::time::sleep(Duration::from_millis(u64::from(wait.max_wait_ms)));
    tokio::pin!(timeout);
    loop {
        if controller.state.borrow().epoch > wait.known_epoch {
            return InternalResponse::FetchMetadata {
                image: Some((*controller.image()).clone()),
            };
        }
        tokio::select! {
            biased;
            result = changed.changed() => {
                if result.is_err() {
                    return InternalResponse::FetchMetadata { image: None };
                }
            }
            _ = &mut timeout => {
                return InternalResponse::FetchMetadata { image: None };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::Seed;

    #[test]
    fn placement_spreads_leaders_and_never_repeats_a_broker_in_a_partition() {
        let mut rng = Seed::new(3).rng();
        let brokers = [0, 1, 2];
        let assignment = place_replicas(&mut rng, &brokers, 12, 3);
        assert_eq!(assignment.len(), 12);
        let mut leaders = [0usize; 3];
        for replicas in &assignment {
            let mut sorted = replicas.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3, "{replicas:?}");
            leaders[replicas[0] as usize] += 1;
        }
        assert_eq!(leaders, [4, 4, 4]);
    }

    #[test]
    fn placement_is_a_function_of_the_seed() {
        let a = place_replicas(&mut Seed::new(9).rng(), &[0, 1, 2, 3], 8, 2);
        let b = place_replicas(&mut Seed::new(9).rng(), &[0, 1, 2, 3], 8, 2);
        assert_eq!(a, b);
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(valid_topic_name("user-clicks.v1_a"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name("a b"));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }
}
