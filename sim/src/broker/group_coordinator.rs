//! The group coordinator: Kafka's classic consumer-group protocol (eager
//! rebalancing), committed offsets, and transactional offset commits.
//!
//! Each partition of `__consumer_offsets` is a shard: the broker leading it
//! coordinates the groups that hash to it (`abs(javaHash(group)) %
//! partitions`). All durable state is in that partition's log: offset
//! commits, group metadata (generation, leader, members and their
//! assignments, written when the leader's SyncGroup completes), and
//! transactional offset commits (a transactional batch of the producer,
//! visible only once the transaction's COMMIT marker lands in the same
//! partition). A new leader loads the shard by replaying the log, after
//! `coordinator_load_delay_ms` during which it answers
//! COORDINATOR_LOAD_IN_PROGRESS. Loaded groups keep their generation and
//! members; members that do not heartbeat within their session timeout are
//! removed, as in Kafka.
//!
//! Protocol (Kafka's `GroupCoordinator`): JoinGroup parks until the
//! rebalance completes (every known member rejoined, or the rebalance
//! timeout removed those that did not; the first rebalance of an empty
//! group waits `group.initial.rebalance.delay.ms`); the new generation's
//! leader gets the members and runs the assignor; SyncGroup from the
//! leader stores and hands out the assignment; Heartbeat answers
//! REBALANCE_IN_PROGRESS while a rebalance is pending; session timeouts
//! and LeaveGroup remove members.
//!
//! A first JoinGroup (empty member id) is answered MEMBER_ID_REQUIRED with
//! a member id `<client_id>-<uuid>` (KIP-394), the uuid drawn from the
//! broker's seeded generator. Simplification: `group_instance_id` (static
//! membership, KIP-345) is stored but gives no special treatment.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, OffsetAndMetadata, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::broker::coordinator_shards::{
    CoordinatorShard, CoordinatorShards, ShardOwnership, ShardedTopic,
};
use crate::broker::leader_write::{
    Appended, VerificationGuard, append_to_leader, await_replicated,
};
use crate::config::OFFSETS_TOPIC;
use crate::protocol::{
    ControlType, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    JoinMember, JoinProtocol, LeaveGroupRequest, LeaveGroupResponse, MemberAssignment,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchResult, PartitionError, ProduceBatch, ProducerEpoch, ProducerId, RecordBatch,
    RecordData, Request, Response, SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, codes,
};
use crate::trace::{EventKind, Subject};
use crate::world::now_ms;

/// How often the coordinator checks sessions and rebalance deadlines.
const GROUP_TICK_MS: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// Whether a group may move from `previous` to this state (Kafka's
    /// `GroupState.validPreviousStates`, without Dead: groups are never
    /// deleted here).
    fn can_follow(self, previous: GroupState) -> bool {
        use GroupState::*;
        match self {
            Empty => previous == PreparingRebalance,
            PreparingRebalance => matches!(previous, Stable | CompletingRebalance | Empty),
            CompletingRebalance => previous == PreparingRebalance,
            Stable => previous == CompletingRebalance,
        }
    }

    fn code(self) -> i64 {
        match self {
            GroupState::Empty => 0,
            GroupState::PreparingRebalance => 1,
            GroupState::CompletingRebalance => 2,
            GroupState::Stable => 3,
        }
    }
}

/// What a parked JoinGroup answers with.
#[derive(Clone, Debug)]
struct JoinResult {
    generation: i32,
    protocol: Option<String>,
    leader: String,
    members: Vec<JoinMember>,
}

#[derive(Clone, Debug)]
struct Member {
    group_instance_id: Option<String>,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    protocol_type: String,
    protocols: Vec<JoinProtocol>,
    assignment: Vec<TopicPartition>,
    last_heartbeat_ms: u64,
    join_order: u64,
    /// A JoinGroup of this member is parked (keeps the member alive).
    awaiting_join: bool,
    join_result: Option<JoinResult>,
    /// The join completed and this member has not sent SyncGroup since
    /// (Kafka's `pendingSyncMembers`): removed if it does not within the
    /// rebalance timeout. Does not keep the member alive.
    pending_sync: bool,
    /// A SyncGroup of this member is parked waiting for the assignment
    /// (Kafka's `awaitingSyncCallback`): keeps the member alive, and gets
    /// REBALANCE_IN_PROGRESS if the generation ends first.
    awaiting_sync: bool,
    sync_result: Option<(i32, Result<Vec<TopicPartition>, ErrorCode>)>,
}

#[derive(Clone, Debug)]
struct CommittedOffset {
    offset: OffsetAndMetadata,
    /// Where the commit record is in `__consumer_offsets` (later wins).
    log_offset: i64,
}

#[derive(Clone, Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// Bounded by the clients that join: a member that stops heartbeating
    /// is removed after its session timeout.
    members: BTreeMap<String, Member>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, not yet
    /// joined, with the time they expire (their session timeout).
    pending_members: BTreeMap<String, u64>,
    /// One per partition the group committed (Kafka expires them after
    /// `offsets.retention.minutes`, longer than any simulated run).
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// Non-transactional commits being written, per partition.
    pending_commits: BTreeMap<TopicPartition, u32>,
    /// PreparingRebalance: members not rejoined by then are removed.
    rebalance_deadline_ms: u64,
    /// The initial rebalance delay of an empty group ends then.
    initial_delay_until_ms: Option<u64>,
    initial_delay_limit_ms: u64,
    /// CompletingRebalance: members not synced by then are removed.
    sync_deadline_ms: u64,
    /// The group became empty: its record must be written.
    needs_store: bool,
}

impl Group {
    fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            pending_commits: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            initial_delay_limit_ms: 0,
            sync_deadline_ms: 0,
            needs_store: false,
        }
    }

    /// The member a static member's `group_instance_id` maps to (Kafka's
    /// `GroupMetadata.currentStaticMemberId`). Members are not replaced by
    /// instance id here (static membership is otherwise not modelled): the
    /// latest to join with it.
    fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .filter(|(_, member)| member.group_instance_id.as_deref() == Some(group_instance_id))
            .max_by_key(|(_, member)| member.join_order)
            .map(|(member_id, _)| member_id.as_str())
    }

    /// Moves the group to `next`, which must be a legal successor of its
    /// state (loading a shard sets states directly: it is not a transition).
    fn transition(&mut self, group_id: &str, next: GroupState) {
        assert!(
            next.can_follow(self.state),
            "group {group_id}: illegal transition {:?} -> {next:?} (seed {})",
            self.state,
            crate::seed_context::current_seed()
        );
        self.state = next;
    }

    /// Takes `offset` for `tp` unless a later commit record (by its place
    /// in the log) is already there.
    fn commit_if_newer(
        &mut self,
        tp: &TopicPartition,
        offset: &OffsetAndMetadata,
        log_offset: i64,
    ) {
        let newer = self
            .offsets
            .get(tp)
            .is_none_or(|existing| existing.log_offset < log_offset);
        if newer {
            self.offsets.insert(
                tp.clone(),
                CommittedOffset {
                    offset: offset.clone(),
                    log_offset,
                },
            );
        }
    }

    fn max_rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| u64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// The protocols every member supports, in the order of the member that
    /// joined first; each member votes for its first supported candidate.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().min_by_key(|m| m.join_order)?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|p| &p.name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|p| &p.name == *name))
            })
            .collect();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for member in self.members.values() {
            if let Some(index) = member
                .protocols
                .iter()
                .find_map(|p| candidates.iter().position(|c| **c == p.name))
            {
                votes[index] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let index = votes.iter().position(|&v| v == best)?;
        Some(candidates[index].clone())
    }

    /// Whether a joining member's protocols fit the group's.
    fn supports(&self, protocol_type: &str, protocols: &[JoinProtocol]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|p| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|q| q.name == p.name))
        })
    }
}

#[derive(Clone, Debug)]
struct PendingTxnOffset {
    offset: OffsetAndMetadata,
    log_offset: i64,
}

/// One `__consumer_offsets` partition this broker leads.
#[derive(Debug)]
struct Shard {
    ownership: ShardOwnership,
    /// Every group id used on this shard: groups are not deleted (Kafka
    /// deletes an empty group once its offsets expire, which no simulated
    /// run reaches).
    groups: BTreeMap<String, Group>,
    /// Transactional offsets not yet committed or aborted, by producer.
    /// Bounded by the producers with an open transaction: its marker
    /// removes the entry.
    pending_txn: BTreeMap<ProducerId, BTreeMap<(String, TopicPartition), PendingTxnOffset>>,
    next_join_order: u64,
}

/// The group coordinator's state on one broker.
#[derive(Debug, Default)]
pub(crate) struct GroupCoordinator {
    shards: CoordinatorShards<Shard>,
}

impl CoordinatorShard for Shard {
    fn ownership(&mut self) -> &mut ShardOwnership {
        &mut self.ownership
    }
}

/// The group coordinator's shards: the partitions of `__consumer_offsets`.
const GROUP_SHARDS: ShardedTopic<Shard> = ShardedTopic {
    topic: OFFSETS_TOPIC,
    partitions: |broker| broker.config.offsets_topic_partitions,
    shards: |state| &mut state.groups.shards,
};

/// A record in `__consumer_offsets` (postcard-encoded in the value).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum GroupRecord {
    Offset {
        group: String,
        partition: TopicPartition,
        offset: OffsetAndMetadata,
    },
    Group {
        group: String,
        generation: i32,
        protocol_type: Option<String>,
        protocol: Option<String>,
        leader: Option<String>,
        members: Vec<StoredMember>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredMember {
    member_id: String,
    group_instance_id: Option<String>,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    protocol_type: String,
    protocols: Vec<JoinProtocol>,
    assignment: Vec<TopicPartition>,
}

fn encode(group: &str, record: &GroupRecord) -> RecordData {
    RecordData {
        key: Some(group.as_bytes().to_vec()),
        value: Some(postcard::to_stdvec(record).expect("group records encode")),
        timestamp_ms: 0,
        headers: Vec::new(),
    }
}

fn group_record_count(shard: &Shard) -> i64 {
    shard
        .groups
        .values()
        .map(|g| g.offsets.len() as i64 + 1)
        .sum()
}

impl Shard {
    fn replay_record(&mut self, record: GroupRecord, log_offset: i64, now: u64) {
        match record {
            GroupRecord::Offset {
                group,
                partition,
                offset,
            } => {
                let group = self.groups.entry(group).or_insert_with(Group::new);
                group
                    .offsets
                    .insert(partition, CommittedOffset { offset, log_offset });
            }
            GroupRecord::Group {
                group,
                generation,
                protocol_type,
                protocol,
                leader,
                members,
            } => {
                let next_join_order = &mut self.next_join_order;
                let group = self.groups.entry(group).or_insert_with(Group::new);
                group.generation = generation;
                group.protocol_type = protocol_type;
                group.protocol = protocol;
                group.leader = leader;
                group.members = members
                    .into_iter()
                    .map(|stored| {
                        *next_join_order += 1;
                        (
                            stored.member_id,
                            Member {
                                group_instance_id: stored.group_instance_id,
                                session_timeout_ms: stored.session_timeout_ms,
                                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                                protocol_type: stored.protocol_type,
                                protocols: stored.protocols,
                                assignment: stored.assignment,
                                last_heartbeat_ms: now,
                                join_order: *next_join_order,
                                awaiting_join: false,
                                join_result: None,
                                pending_sync: false,
                                awaiting_sync: false,
                                sync_result: None,
                            },
                        )
                    })
                    .collect();
                group.state = if group.members.is_empty() {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                };
            }
        }
    }

    fn complete_txn(&mut self, producer_id: ProducerId, committed: bool) -> usize {
        let Some(pending) = self.pending_txn.remove(&producer_id) else {
            return 0;
        };
        let count = pending.len();
        if committed {
            for ((group, partition), pending) in pending {
                let group = self.groups.entry(group).or_insert_with(Group::new);
                group.commit_if_newer(&partition, &pending.offset, pending.log_offset);
            }
        }
        count
    }

    fn has_pending_txn_offset(&self, group: &str, partition: &TopicPartition) -> bool {
        self.pending_txn.values().any(|offsets| {
            offsets
                .keys()
                .any(|(g, p)| g.as_str() == group && p == partition)
        })
    }
}

fn trace_group(broker: &Broker, group_id: &str, group: &Group) {
    broker.trace.record(
        broker.node(),
        EventKind::GroupState,
        Subject::Name(group_id),
        [
            group.state.code(),
            i64::from(group.generation),
            group.members.len() as i64,
            0,
        ],
    );
}

/// Moves a group to PreparingRebalance (members must rejoin).
fn prepare_rebalance(broker: &Broker, group_id: &str, group: &mut Group, now: u64) {
    if group.state == GroupState::CompletingRebalance {
        // Members parked in SyncGroup learn that the generation is over;
        // nobody is waited for to sync any more.
        for member in group.members.values_mut() {
            member.pending_sync = false;
            if member.awaiting_sync {
                member.answer_sync(group.generation, Err(ErrorCode::RebalanceInProgress), now);
            }
        }
    }
    let was_empty = group.state == GroupState::Empty;
    group.transition(group_id, GroupState::PreparingRebalance);
    group.rebalance_deadline_ms = now + group.max_rebalance_timeout_ms();
    if was_empty && broker.config.group_initial_rebalance_delay_ms > 0 {
        group.initial_delay_until_ms = Some(now + broker.config.group_initial_rebalance_delay_ms);
        group.initial_delay_limit_ms = group.rebalance_deadline_ms;
    } else {
        group.initial_delay_until_ms = None;
    }
    trace_group(broker, group_id, group);
}

fn remove_member(broker: &Broker, group_id: &str, group: &mut Group, member_id: &str, reason: i64) {
    if group.members.remove(member_id).is_none() {
        return;
    }
    broker.trace.record(
        broker.node(),
        EventKind::GroupMemberRemoved,
        Subject::Name(group_id),
        [i64::from(group.generation), reason, 0, 0],
    );
    if group.leader.as_deref() == Some(member_id) {
        group.leader = group
            .members
            .iter()
            .min_by_key(|(_, m)| m.join_order)
            .map(|(id, _)| id.clone());
    }
}

/// Completes a pending rebalance if every member rejoined (and the initial
/// delay is over) or the rebalance timeout passed.
fn maybe_complete_join(broker: &Broker, group_id: &str, group: &mut Group, now: u64) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let delayed = group
        .initial_delay_until_ms
        .is_some_and(|until| now < until);
    // Kafka waits for pending members too (their second JoinGroup).
    let all_joined =
        group.members.values().all(|m| m.awaiting_join) && group.pending_members.is_empty();
    let timed_out = now >= group.rebalance_deadline_ms;
    if !(timed_out || (all_joined && !delayed)) {
        return;
    }
    let missing: Vec<String> = group
        .members
        .iter()
        .filter(|(_, m)| !m.awaiting_join)
        .map(|(id, _)| id.clone())
        .collect();
    for member_id in missing {
        remove_member(broker, group_id, group, &member_id, 1);
    }
    // The only place a generation changes (loading aside): it only grows.
    group.generation = group
        .generation
        .checked_add(1)
        .expect("group generations do not overflow");
    group.initial_delay_until_ms = None;
    if group.members.is_empty() {
        group.transition(group_id, GroupState::Empty);
        group.protocol = None;
        group.protocol_type = None;
        group.leader = None;
        // Kafka stores the empty group (its new generation, no members).
        group.needs_store = true;
        trace_group(broker, group_id, group);
        return;
    }
    group.protocol = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|leader| !group.members.contains_key(leader))
    {
        group.leader = group
            .members
            .iter()
            .min_by_key(|(_, m)| m.join_order)
            .map(|(id, _)| id.clone());
    }
    let leader = group
        .leader
        .clone()
        .expect("a non-empty group has a leader");
    let protocol = group.protocol.clone();
    let all_members = join_members(&group.members, protocol.as_ref());
    let generation = group.generation;
    for (id, member) in group.members.iter_mut() {
        // Kafka schedules each member's next heartbeat expiration now; a
        // member is kept alive by its SyncGroup only once that arrives.
        member.awaiting_join = false;
        member.pending_sync = true;
        member.awaiting_sync = false;
        member.sync_result = None;
        member.last_heartbeat_ms = now;
        member.join_result = Some(JoinResult {
            generation,
            protocol: protocol.clone(),
            leader: leader.clone(),
            members: if *id == leader {
                all_members.clone()
            } else {
                Vec::new()
            },
        });
    }
    group.transition(group_id, GroupState::CompletingRebalance);
    group.sync_deadline_ms = now + group.max_rebalance_timeout_ms();
    trace_group(broker, group_id, group);
}

/// The members as the leader's JoinGroup answer lists them, each with its
/// metadata for the chosen protocol.
fn join_members(members: &BTreeMap<String, Member>, protocol: Option<&String>) -> Vec<JoinMember> {
    members
        .iter()
        .map(|(id, m)| JoinMember {
            member_id: id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            metadata: m
                .protocols
                .iter()
                .find(|p| Some(&p.name) == protocol)
                .map(|p| p.metadata.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// Periodic work: session timeouts, rebalance and sync deadlines.
pub(crate) async fn session_checker(broker: Rc<Broker>) {
    loop {
        tokio::time::sleep(Duration::from_millis(GROUP_TICK_MS)).await;
        let now = now_ms();
        let mut changed = false;
        {
            let mut state = broker.state.borrow_mut();
            for (_, shard) in state.groups.shards.loaded_iter_mut() {
                for (group_id, group) in shard.groups.iter_mut() {
                    let pending_before = group.pending_members.len();
                    group.pending_members.retain(|_, expiry| *expiry > now);
                    changed |= group.pending_members.len() != pending_before;
                    let expired: Vec<String> = group
                        .members
                        .iter()
                        .filter(|(_, m)| {
                            !m.awaiting_join
                                && !m.awaiting_sync
                                && now.saturating_sub(m.last_heartbeat_ms)
                                    > u64::from(m.session_timeout_ms)
                        })
                        .map(|(id, _)| id.clone())
                        .collect();
                    // Kafka's pending-sync expiration (rebalance timeout after
                    // the join completed) applies in Stable too: a member
                    // that never sent SyncGroup is removed.
                    let unsynced: Vec<String> = if matches!(
                        group.state,
                        GroupState::CompletingRebalance | GroupState::Stable
                    ) && now >= group.sync_deadline_ms
                    {
                        group
                            .members
                            .iter()
                            .filter(|(_, m)| m.pending_sync)
                            .map(|(id, _)| id.clone())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    for member_id in &expired {
                        remove_member(&broker, group_id, group, member_id, 2);
                    }
                    for member_id in &unsynced {
                        remove_member(&broker, group_id, group, member_id, 3);
                    }
                    if !expired.is_empty() || !unsynced.is_empty() {
                        changed = true;
                        match group.state {
                            GroupState::Stable | GroupState::CompletingRebalance => {
                                prepare_rebalance(&broker, group_id, group, now)
                            }
                            GroupState::Empty | GroupState::PreparingRebalance => {}
                        }
                    }
                    if group.state == GroupState::PreparingRebalance {
                        let before = group.generation;
                        maybe_complete_join(&broker, group_id, group, now);
                        changed |= group.generation != before;
                    }
                }
            }
        }
        if changed {
            broker.notify_changed();
        }
        store_emptied_groups(&broker);
    }
}

/// Writes the record of every group that became empty (no members, its
/// new generation), so that a coordinator loading the log later does not
/// bring back members that left.
fn store_emptied_groups(broker: &Rc<Broker>) {
    let mut writes = Vec::new();
    {
        let mut state = broker.state.borrow_mut();
        for (partition, shard) in state.groups.shards.loaded_iter_mut() {
            for (group_id, group) in shard.groups.iter_mut() {
                if !std::mem::take(&mut group.needs_store) || !group.members.is_empty() {
                    continue;
                }
                let record = GroupRecord::Group {
                    group: group_id.clone(),
                    generation: group.generation,
                    protocol_type: None,
                    protocol: None,
                    leader: None,
                    members: Vec::new(),
                };
                writes.push((partition, encode(group_id, &record)));
            }
        }
    }
    for (partition, record) in writes {
        let broker = broker.clone();
        tokio::task::spawn_local(async move {
            // A failure leaves the older record; members it names expire
            // after a reload, as in Kafka when such a write fails.
            let _ = write_records(&broker, partition, None, vec![record]).await;
        });
    }
}

pub(crate) async fn handle(broker: &Rc<Broker>, request: Request) -> Response {
    match request {
        Request::JoinGroup(request) => join_group(broker, &request).await,
        Request::SyncGroup(request) => sync_group(broker, request).await,
        Request::Heartbeat(HeartbeatRequest {
            group_id,
            generation_id,
            member_id,
        }) => Response::Heartbeat(HeartbeatResponse {
            error: heartbeat(broker, &group_id, generation_id, &member_id).err(),
        }),
        Request::LeaveGroup(LeaveGroupRequest {
            group_id,
            member_id,
        }) => Response::LeaveGroup(LeaveGroupResponse {
            error: leave_group(broker, &group_id, &member_id).err(),
        }),
        Request::OffsetCommit(OffsetCommitRequest {
            group_id,
            generation_id,
            member_id,
            offsets,
        }) => offset_commit(broker, group_id, generation_id, member_id, offsets).await,
        Request::OffsetFetch(OffsetFetchRequest {
            group_id,
            partitions,
            require_stable,
        }) => offset_fetch(broker, &group_id, partitions, require_stable),
        // Verified with the transaction coordinator first: see
        // `txn_offset_commit`, which the server calls.
        other => unreachable!("not a group request: {other:?}"),
    }
}

fn join_error(error: ErrorCode, member_id: String) -> Response {
    Response::JoinGroup(JoinGroupResponse {
        error: Some(error),
        generation_id: -1,
        protocol_name: None,
        leader: String::new(),
        member_id,
        members: Vec::new(),
    })
}

impl Member {
    /// Answers the member's SyncGroup for `generation` with `result`. A
    /// member parked in SyncGroup also has its session restarted: Kafka
    /// 3.8's `GroupCoordinator.propagateAssignment` calls
    /// `completeAndScheduleNextHeartbeatExpiration` for every member whose
    /// sync callback it invokes, so an answered member has a whole session
    /// to heartbeat or rejoin.
    fn answer_sync(
        &mut self,
        generation: i32,
        result: Result<Vec<TopicPartition>, ErrorCode>,
        now: u64,
    ) {
        if self.awaiting_sync {
            self.last_heartbeat_ms = now;
        }
        self.awaiting_sync = false;
        self.sync_result = Some((generation, result));
    }

    /// The member's state as a JoinGroup `request` registers it.
    fn joining(request: &JoinGroupRequest, join_order: u64, now: u64) -> Member {
        Member {
            group_instance_id: request.group_instance_id.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocol_type: request.protocol_type.clone(),
            protocols: request.protocols.clone(),
            assignment: Vec::new(),
            last_heartbeat_ms: now,
            join_order,
            awaiting_join: true,
            join_result: None,
            pending_sync: false,
            awaiting_sync: false,
            sync_result: None,
        }
    }
}

/// Where a registered JoinGroup stands: answered at once, or parked until
/// the rebalance completes (in this coordinator epoch).
enum JoinStep {
    Answer(JoinResult),
    Park { coordinator_epoch: i32 },
}

async fn join_group(broker: &Rc<Broker>, request: &JoinGroupRequest) -> Response {
    if let Err(error) = check_join(broker, request) {
        return join_error(error, request.member_id.clone());
    }
    let now = now_ms();
    if request.member_id.is_empty() {
        return require_member_id(broker, request, now);
    }
    let registered = GROUP_SHARDS.with_key(broker, &request.group_id, |shard, _| {
        register_join(broker, shard, request, now)
    });
    let coordinator_epoch = match registered {
        Err(error) | Ok(Err(error)) => return join_error(error, request.member_id.clone()),
        Ok(Ok(JoinStep::Answer(result))) => {
            return join_response(request.member_id.clone(), result);
        }
        Ok(Ok(JoinStep::Park { coordinator_epoch })) => coordinator_epoch,
    };
    broker.notify_changed();
    await_join(broker, request, coordinator_epoch).await
}

/// The checks of a JoinGroup that need no group.
fn check_join(broker: &Broker, request: &JoinGroupRequest) -> Result<(), ErrorCode> {
    if request.group_id.is_empty() {
        return Err(codes::INVALID_GROUP_ID);
    }
    if request.session_timeout_ms < broker.config.group_min_session_timeout_ms
        || request.session_timeout_ms > broker.config.group_max_session_timeout_ms
    {
        return Err(codes::INVALID_SESSION_TIMEOUT);
    }
    if request.protocol_type.is_empty() || request.protocols.is_empty() {
        return Err(codes::INCONSISTENT_GROUP_PROTOCOL);
    }
    Ok(())
}

/// KIP-394: a first JoinGroup gets its member id back with
/// MEMBER_ID_REQUIRED, and joins with it; until then it is a pending member.
fn require_member_id(broker: &Broker, request: &JoinGroupRequest, now: u64) -> Response {
    let member_id = broker.new_member_id(&request.client_id);
    let pending = GROUP_SHARDS.with_key(broker, &request.group_id, |shard, _| {
        let group = shard
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(Group::new);
        group.pending_members.insert(
            member_id.clone(),
            now + u64::from(request.session_timeout_ms),
        );
    });
    match pending {
        Ok(()) => join_error(codes::MEMBER_ID_REQUIRED, member_id),
        Err(error) => join_error(error, String::new()),
    }
}

/// Registers (or updates) the member; answers at once if nothing changes.
fn register_join(
    broker: &Broker,
    shard: &mut Shard,
    request: &JoinGroupRequest,
    now: u64,
) -> Result<JoinStep, ErrorCode> {
    let member_id = &request.member_id;
    let Some(group) = shard.groups.get_mut(&request.group_id) else {
        return Err(ErrorCode::UnknownMemberId);
    };
    let new_member = !group.members.contains_key(member_id);
    if new_member && group.pending_members.remove(member_id).is_none() {
        return Err(ErrorCode::UnknownMemberId);
    }
    shard.next_join_order += 1;
    let join_order = shard.next_join_order;
    let coordinator_epoch = shard.ownership.coordinator_epoch;
    let group = shard
        .groups
        .get_mut(&request.group_id)
        .expect("inserted above");
    if !group.supports(&request.protocol_type, &request.protocols) {
        return Err(codes::INCONSISTENT_GROUP_PROTOCOL);
    }
    if new_member {
        join_new_member(broker, group, request, join_order, now);
        return Ok(JoinStep::Park { coordinator_epoch });
    }
    match rejoin_member(broker, group, request, now) {
        Some(result) => Ok(JoinStep::Answer(result)),
        None => Ok(JoinStep::Park { coordinator_epoch }),
    }
}

/// Adds a new member (its second JoinGroup) and starts or extends the
/// rebalance.
fn join_new_member(
    broker: &Broker,
    group: &mut Group,
    request: &JoinGroupRequest,
    join_order: u64,
    now: u64,
) {
    let group_id = &request.group_id;
    group.members.insert(
        request.member_id.clone(),
        Member::joining(request, join_order, now),
    );
    if group.members.len() == 1 {
        group.protocol_type = Some(request.protocol_type.clone());
    }
    match group.state {
        GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(broker, group_id, group, now);
        }
        GroupState::PreparingRebalance => {
            group.rebalance_deadline_ms = group
                .rebalance_deadline_ms
                .max(now + u64::from(request.rebalance_timeout_ms));
            if let Some(until) = group.initial_delay_until_ms {
                // Kafka's InitialDelayedJoin: each new member extends
                // the delay, up to the rebalance timeout.
                group.initial_delay_until_ms = Some(
                    (now + broker.config.group_initial_rebalance_delay_ms)
                        .max(until)
                        .min(group.initial_delay_limit_ms),
                );
            }
        }
    }
    maybe_complete_join(broker, group_id, group, now);
}

/// A known member joins again: answered at once (`Some`) if its protocols
/// are unchanged and the group is past the join, else it starts (or joins)
/// a rebalance and parks.
fn rejoin_member(
    broker: &Broker,
    group: &mut Group,
    request: &JoinGroupRequest,
    now: u64,
) -> Option<JoinResult> {
    let group_id = &request.group_id;
    let member_id = &request.member_id;
    let is_leader = group.leader.as_deref() == Some(member_id.as_str());
    let state = group.state;
    let generation = group.generation;
    let protocol = group.protocol.clone();
    let leader = group.leader.clone().unwrap_or_default();
    let member = group.members.get_mut(member_id).expect("known member");
    let same_protocols = member.protocols == request.protocols;
    member.last_heartbeat_ms = now;
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.group_instance_id = request.group_instance_id.clone();
    member.protocols = request.protocols.clone();
    let answer_now = match state {
        GroupState::CompletingRebalance => same_protocols,
        GroupState::Stable => same_protocols && !is_leader,
        GroupState::Empty | GroupState::PreparingRebalance => false,
    };
    if answer_now {
        let members = if is_leader {
            join_members(&group.members, protocol.as_ref())
        } else {
            Vec::new()
        };
        return Some(JoinResult {
            generation,
            protocol,
            leader,
            members,
        });
    }
    member.awaiting_join = true;
    member.join_result = None;
    member.pending_sync = false;
    member.awaiting_sync = false;
    if state != GroupState::PreparingRebalance {
        prepare_rebalance(broker, group_id, group, now);
    }
    maybe_complete_join(broker, group_id, group, now);
    None
}

/// Parks a JoinGroup until the rebalance completes (bounded: the rebalance
/// timeout, the initial delay and a margin).
async fn await_join(
    broker: &Broker,
    request: &JoinGroupRequest,
    coordinator_epoch: i32,
) -> Response {
    let (group_id, member_id) = (&request.group_id, &request.member_id);
    let mut changed = broker.changed.subscribe();
    let bound_ms = u64::from(request.rebalance_timeout_ms)
        + broker.config.group_initial_rebalance_delay_ms
        + 10 * GROUP_TICK_MS
        + 60_000;
    let timeout = tokio::time::sleep(Duration::from_millis(bound_ms));
    tokio::pin!(timeout);
    loop {
        let outcome = GROUP_SHARDS.with_key(broker, group_id, |shard, _| {
            if shard.ownership.coordinator_epoch != coordinator_epoch {
                return Some(Err(ErrorCode::NotCoordinator));
            }
            let Some(member) = shard
                .groups
                .get_mut(group_id)
                .and_then(|g| g.members.get_mut(member_id))
            else {
                return Some(Err(ErrorCode::UnknownMemberId));
            };
            member.join_result.take().map(Ok)
        });
        match outcome {
            Err(error) | Ok(Some(Err(error))) => return join_error(error, member_id.clone()),
            Ok(Some(Ok(result))) => return join_response(member_id.clone(), result),
            Ok(None) => {}
        }
        tokio::select! {
            biased;
            result = changed.changed() => {
                if result.is_err() {
                    return join_error(ErrorCode::NotCoordinator, member_id.clone());
                }
            }
            _ = &mut timeout => {
                return join_error(ErrorCode::RebalanceInProgress, member_id.clone());
            }
        }
    }
}

fn join_response(member_id: String, result: JoinResult) -> Response {
    Response::JoinGroup(JoinGroupResponse {
        error: None,
        generation_id: result.generation,
        protocol_name: result.protocol,
        leader: result.leader,
        member_id,
        members: result.members,
    })
}

fn sync_error(error: ErrorCode) -> Response {
    Response::SyncGroup(SyncGroupResponse {
        error: Some(error),
        assignment: Vec::new(),
    })
}

/// Maps a coordinator write failure (or a failed transaction
/// verification) to what Kafka's group coordinator answers
/// (`GroupMetadataManager.maybeConvertOffsetCommitError`).
fn write_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::NetworkException => ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => ErrorCode::Other(28),
        other => other,
    }
}

/// Appends records to the shard's partition as leader (transactional if
/// written for a producer).
fn append_records(
    broker: &Broker,
    partition: i32,
    producer: Option<(ProducerId, ProducerEpoch)>,
    records: Vec<RecordData>,
) -> Result<Appended, ErrorCode> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let batch = ProduceBatch {
        topic: OFFSETS_TOPIC.to_string(),
        partition,
        producer_id,
        producer_epoch,
        base_sequence: -1,
        transactional: producer.is_some(),
        records,
    };
    append_to_leader(broker, batch, true).map_err(write_error)
}

/// Waits for acks=all of an append to the shard's partition.
async fn await_records(broker: &Broker, appended: &Appended) -> Result<(), ErrorCode> {
    let timeout_ms = broker.config.coordinator_write_timeout_ms;
    await_replicated(broker, &appended.pending, timeout_ms)
        .await
        .map_err(write_error)
}

/// Appends records to the shard's partition and waits for acks=all.
/// Returns the log offset of the first record.
async fn write_records(
    broker: &Broker,
    partition: i32,
    producer: Option<(ProducerId, ProducerEpoch)>,
    records: Vec<RecordData>,
) -> Result<i64, ErrorCode> {
    let appended = append_records(broker, partition, producer, records)?;
    await_records(broker, &appended).await?;
    Ok(appended.base_offset)
}

/// Where a SyncGroup stands once checked against the group.
enum SyncStep {
    Answer(Response),
    /// The leader's assignment: store this group record, then hand it out.
    Store {
        coordinator_epoch: i32,
        partition: i32,
        record: GroupRecord,
    },
    /// A follower: wait for the leader's assignment.
    Wait {
        coordinator_epoch: i32,
    },
}

async fn sync_group(broker: &Rc<Broker>, request: SyncGroupRequest) -> Response {
    let now = now_ms();
    let step = GROUP_SHARDS.with_key(broker, &request.group_id, |shard, partition| {
        sync_step(shard, partition, &request, now)
    });
    match step {
        Err(error) => sync_error(error),
        Ok(SyncStep::Answer(response)) => response,
        Ok(SyncStep::Wait { coordinator_epoch }) => {
            await_assignment(broker, &request, coordinator_epoch).await
        }
        Ok(SyncStep::Store {
            coordinator_epoch,
            partition,
            record,
        }) => store_assignment(broker, &request, coordinator_epoch, partition, record).await,
    }
}

/// Checks a SyncGroup against the group: answers at once, or says what to
/// do (store the leader's assignment, or wait for it).
fn sync_step(shard: &mut Shard, partition: i32, request: &SyncGroupRequest, now: u64) -> SyncStep {
    let (group_id, member_id) = (&request.group_id, &request.member_id);
    let coordinator_epoch = shard.ownership.coordinator_epoch;
    let Some(group) = shard.groups.get_mut(group_id) else {
        return SyncStep::Answer(sync_error(ErrorCode::UnknownMemberId));
    };
    let Some(member) = group.members.get_mut(member_id) else {
        return SyncStep::Answer(sync_error(ErrorCode::UnknownMemberId));
    };
    member.last_heartbeat_ms = now;
    if request.generation_id != group.generation {
        return SyncStep::Answer(sync_error(ErrorCode::IllegalGeneration));
    }
    match group.state {
        GroupState::Empty => SyncStep::Answer(sync_error(ErrorCode::UnknownMemberId)),
        GroupState::PreparingRebalance => {
            SyncStep::Answer(sync_error(ErrorCode::RebalanceInProgress))
        }
        GroupState::Stable => {
            member.pending_sync = false;
            SyncStep::Answer(Response::SyncGroup(SyncGroupResponse {
                error: None,
                assignment: member.assignment.clone(),
            }))
        }
        GroupState::CompletingRebalance => {
            // Its SyncGroup now keeps the member alive until answered.
            member.pending_sync = false;
            member.awaiting_sync = true;
            if group.leader.as_deref() != Some(member_id.as_str()) {
                return SyncStep::Wait { coordinator_epoch };
            }
            SyncStep::Store {
                coordinator_epoch,
                partition,
                record: assigned_group_record(group_id, group, &request.assignments),
            }
        }
    }
}

/// The record of a group with the leader's assignment.
fn assigned_group_record(
    group_id: &str,
    group: &Group,
    assignments: &[MemberAssignment],
) -> GroupRecord {
    let assigned: BTreeMap<&String, &Vec<TopicPartition>> = assignments
        .iter()
        .map(|assignment| (&assignment.member_id, &assignment.partitions))
        .collect();
    let members = group
        .members
        .iter()
        .map(|(id, m)| StoredMember {
            member_id: id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocol_type: m.protocol_type.clone(),
            protocols: m.protocols.clone(),
            assignment: assigned
                .get(id)
                .map(|tps| (*tps).clone())
                .unwrap_or_default(),
        })
        .collect();
    GroupRecord::Group {
        group: group_id.to_string(),
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        members,
    }
}

/// The leader's SyncGroup: writes the group record, then (if the group is
/// still in the same rebalance) hands every member its assignment, or ends
/// the generation if the write failed.
async fn store_assignment(
    broker: &Broker,
    request: &SyncGroupRequest,
    coordinator_epoch: i32,
    partition: i32,
    record: GroupRecord,
) -> Response {
    let (group_id, generation_id) = (&request.group_id, request.generation_id);
    let GroupRecord::Group { members, .. } = &record else {
        unreachable!("a group record");
    };
    let assigned: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), m.assignment.clone()))
        .collect();
    let stored = write_records(broker, partition, None, vec![encode(group_id, &record)]).await;
    let applied = GROUP_SHARDS.with_key(broker, group_id, |shard, _| {
        if shard.ownership.coordinator_epoch != coordinator_epoch {
            return Err(ErrorCode::NotCoordinator);
        }
        let Some(group) = shard.groups.get_mut(group_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if group.state != GroupState::CompletingRebalance || group.generation != generation_id {
            return Err(ErrorCode::RebalanceInProgress);
        }
        let stored_at = now_ms();
        match stored {
            Ok(_) => {
                for (id, member) in group.members.iter_mut() {
                    // The record was made from this generation's members,
                    // and a member leaving would have ended the generation.
                    assert!(
                        assigned.contains_key(id),
                        "group {group_id}: member {id} of generation {generation_id} has no \
                         assignment (seed {})",
                        crate::seed_context::current_seed()
                    );
                    member.assignment = assigned.get(id).cloned().unwrap_or_default();
                    let assignment = member.assignment.clone();
                    member.answer_sync(generation_id, Ok(assignment), stored_at);
                }
                group.transition(group_id, GroupState::Stable);
                trace_group(broker, group_id, group);
                let own = group.members.get_mut(&request.member_id).map(|m| {
                    m.sync_result = None;
                    m.assignment.clone()
                });
                own.ok_or(ErrorCode::UnknownMemberId)
            }
            Err(error) => {
                for member in group.members.values_mut() {
                    member.answer_sync(generation_id, Err(error), stored_at);
                }
                prepare_rebalance(broker, group_id, group, stored_at);
                Err(error)
            }
        }
    });
    broker.notify_changed();
    match applied {
        Ok(Ok(assignment)) => Response::SyncGroup(SyncGroupResponse {
            error: None,
            assignment,
        }),
        Ok(Err(error)) | Err(error) => sync_error(error),
    }
}

/// A follower's SyncGroup: waits for the leader's assignment (or the end
/// of the generation).
async fn await_assignment(
    broker: &Broker,
    request: &SyncGroupRequest,
    coordinator_epoch: i32,
) -> Response {
    let (group_id, generation_id) = (&request.group_id, request.generation_id);
    let mut changed = broker.changed.subscribe();
    loop {
        let outcome = GROUP_SHARDS.with_key(broker, group_id, |shard, _| {
            if shard.ownership.coordinator_epoch != coordinator_epoch {
                return Some(Err(ErrorCode::NotCoordinator));
            }
            let Some(group) = shard.groups.get_mut(group_id) else {
                return Some(Err(ErrorCode::UnknownMemberId));
            };
            let state = group.state;
            let generation = group.generation;
            let Some(member) = group.members.get_mut(&request.member_id) else {
                return Some(Err(ErrorCode::UnknownMemberId));
            };
            if let Some((generation, result)) = member.sync_result.take() {
                if generation == generation_id {
                    return Some(result);
                }
            }
            if generation != generation_id {
                return Some(Err(ErrorCode::RebalanceInProgress));
            }
            if state == GroupState::Stable {
                return Some(Ok(member.assignment.clone()));
            }
            None
        });
        match outcome {
            Err(error) | Ok(Some(Err(error))) => return sync_error(error),
            Ok(Some(Ok(assignment))) => {
                return Response::SyncGroup(SyncGroupResponse {
                    error: None,
                    assignment,
                });
            }
            Ok(None) => {}
        }
        if changed.changed().await.is_err() {
            return sync_error(ErrorCode::NotCoordinator);
        }
    }
}

fn heartbeat(
    broker: &Broker,
    group_id: &str,
    generation_id: i32,
    member_id: &str,
) -> Result<(), ErrorCode> {
    let now = now_ms();
    GROUP_SHARDS.with_key(broker, group_id, |shard, _| {
        let group = shard
            .groups
            .get_mut(group_id)
            .ok_or(ErrorCode::UnknownMemberId)?;
        if group.state == GroupState::Empty {
            return Err(ErrorCode::UnknownMemberId);
        }
        let state = group.state;
        let generation = group.generation;
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(ErrorCode::UnknownMemberId)?;
        if generation_id != generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        member.last_heartbeat_ms = now;
        match state {
            GroupState::PreparingRebalance => Err(ErrorCode::RebalanceInProgress),
            _ => Ok(()),
        }
    })?
}

fn leave_group(broker: &Broker, group_id: &str, member_id: &str) -> Result<(), ErrorCode> {
    let now = now_ms();
    let result = GROUP_SHARDS.with_key(broker, group_id, |shard, _| {
        let group = shard
            .groups
            .get_mut(group_id)
            .ok_or(ErrorCode::UnknownMemberId)?;
        if !group.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        remove_member(broker, group_id, group, member_id, 0);
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                prepare_rebalance(broker, group_id, group, now);
                maybe_complete_join(broker, group_id, group, now);
            }
            GroupState::PreparingRebalance => maybe_complete_join(broker, group_id, group, now),
            GroupState::Empty => {}
        }
        Ok(())
    })?;
    broker.notify_changed();
    result
}

type OffsetResults = Vec<PartitionError>;

/// One answer for every offset of a commit.
fn offset_results(
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    error: Option<ErrorCode>,
) -> OffsetResults {
    offsets
        .iter()
        .map(|(tp, _)| PartitionError {
            topic_partition: tp.clone(),
            error,
        })
        .collect()
}

fn all_failed(offsets: &[(TopicPartition, OffsetAndMetadata)], error: ErrorCode) -> OffsetResults {
    offset_results(offsets, Some(error))
}

/// Whether a commit may be written for the member it names, as Kafka
/// 3.8's `GroupCoordinator.validateOffsetCommit` decides for both kinds:
/// a negative generation commits into an empty group from outside; once
/// a generation, a member id or a group instance id is given, the member
/// must be current ([`validate_current_member`]) and the generation the
/// group's (ILLEGAL_GENERATION); with none of them only a transactional
/// commit (older versions carry none) or one into an empty group goes
/// through, else UNKNOWN_MEMBER_ID.
fn validate_offset_commit(
    group: &Group,
    request: &CommitRequest<'_>,
    transactional: bool,
) -> Result<(), ErrorCode> {
    if request.generation_id < 0 && group.state == GroupState::Empty {
        return Ok(());
    }
    if request.generation_id >= 0
        || !request.member_id.is_empty()
        || request.group_instance_id.is_some()
    {
        validate_current_member(group, request.member_id, request.group_instance_id)?;
        if request.generation_id != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        return Ok(());
    }
    if !transactional && group.state != GroupState::Empty {
        return Err(ErrorCode::UnknownMemberId);
    }
    Ok(())
}

/// Kafka 3.8's `GroupCoordinator.validateCurrentMember`: a group instance
/// id must map to the member id (FENCED_INSTANCE_ID if it maps to another,
/// UNKNOWN_MEMBER_ID if to none), and the member must be in the group
/// (UNKNOWN_MEMBER_ID).
fn validate_current_member(
    group: &Group,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> Result<(), ErrorCode> {
    if let Some(instance_id) = group_instance_id {
        match group.static_member_id(instance_id) {
            Some(current) if current != member_id => return Err(ErrorCode::FencedInstanceId),
            Some(_) => {}
            None => return Err(ErrorCode::UnknownMemberId),
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(ErrorCode::UnknownMemberId);
    }
    Ok(())
}

/// Runs a commit's checks on the group's shard: the coordinator epoch and
/// the partition to write to, or the answer (one error for every offset).
fn admit_commit(
    broker: &Broker,
    group_id: &str,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    check: impl FnOnce(&mut Shard) -> Result<(), ErrorCode>,
) -> Result<(i32, i32), OffsetResults> {
    let admitted = GROUP_SHARDS.with_key(broker, group_id, |shard, partition| {
        check(shard)?;
        Ok((shard.ownership.coordinator_epoch, partition))
    });
    match admitted {
        Err(error) | Ok(Err(error)) => Err(all_failed(offsets, error)),
        Ok(Ok(admitted)) => Ok(admitted),
    }
}

/// The commit records of `offsets`.
fn offset_records(
    group_id: &str,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
) -> Vec<RecordData> {
    offsets
        .iter()
        .map(|(tp, offset)| {
            encode(
                group_id,
                &GroupRecord::Offset {
                    group: group_id.to_string(),
                    partition: tp.clone(),
                    offset: offset.clone(),
                },
            )
        })
        .collect()
}

fn trace_offsets_committed(
    broker: &Broker,
    group_id: &str,
    count: usize,
    generation_id: i32,
    producer_id: ProducerId,
) {
    broker.trace.record(
        broker.node(),
        EventKind::OffsetsCommitted,
        Subject::Name(group_id),
        [count as i64, i64::from(generation_id), producer_id, 0],
    );
}

/// A consumer's commit, as Kafka 3.8's `GroupCoordinator.
/// handleCommitOffsets` / `doCommitOffsets` admit it: an unknown group
/// only from outside (negative generation, else ILLEGAL_GENERATION); then
/// [`validate_offset_commit`]; then by state: Empty writes, Stable and
/// PreparingRebalance also count as the member's heartbeat,
/// CompletingRebalance answers REBALANCE_IN_PROGRESS (the member and its
/// generation are valid, it must wait for its assignment).
fn check_offset_commit(
    shard: &mut Shard,
    request: &CommitRequest<'_>,
    now: u64,
) -> Result<(), ErrorCode> {
    let group = match shard.groups.get_mut(request.group_id) {
        Some(group) => group,
        None if request.generation_id < 0 => shard
            .groups
            .entry(request.group_id.to_string())
            .or_insert_with(Group::new),
        None => return Err(ErrorCode::IllegalGeneration),
    };
    validate_offset_commit(group, request, false)?;
    match group.state {
        GroupState::Empty => {}
        GroupState::Stable | GroupState::PreparingRebalance => {
            let member = group
                .members
                .get_mut(request.member_id)
                .expect("a non-empty group only takes commits from its members");
            member.last_heartbeat_ms = now;
        }
        GroupState::CompletingRebalance => return Err(ErrorCode::RebalanceInProgress),
    }
    for (tp, _) in request.offsets {
        *group.pending_commits.entry(tp.clone()).or_insert(0) += 1;
    }
    Ok(())
}

/// What both kinds of offset commit carry (OffsetCommit has no group
/// instance id in this protocol).
struct CommitRequest<'a> {
    group_id: &'a str,
    generation_id: i32,
    member_id: &'a str,
    group_instance_id: Option<&'a str>,
    offsets: &'a [(TopicPartition, OffsetAndMetadata)],
}

async fn offset_commit(
    broker: &Rc<Broker>,
    group_id: String,
    generation_id: i32,
    member_id: String,
    offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
) -> Response {
    let now = now_ms();
    let request = CommitRequest {
        group_id: &group_id,
        generation_id,
        member_id: &member_id,
        group_instance_id: None,
        offsets: &offsets,
    };
    let admitted = admit_commit(broker, &group_id, &offsets, |shard| {
        check_offset_commit(shard, &request, now)
    });
    let (coordinator_epoch, partition) = match admitted {
        Err(results) => return Response::OffsetCommit(OffsetCommitResponse { results }),
        Ok(admitted) => admitted,
    };
    let records = offset_records(&group_id, &offsets);
    let stored = write_records(broker, partition, None, records).await;
    let _ = GROUP_SHARDS.with_key(broker, &group_id, |shard, _| {
        if shard.ownership.coordinator_epoch != coordinator_epoch {
            return;
        }
        let Some(group) = shard.groups.get_mut(&group_id) else {
            return;
        };
        for (index, (tp, offset)) in offsets.iter().enumerate() {
            if let Some(count) = group.pending_commits.get_mut(tp) {
                *count -= 1;
                if *count == 0 {
                    group.pending_commits.remove(tp);
                }
            }
            if let Ok(base) = stored {
                group.commit_if_newer(tp, offset, base + index as i64);
            }
        }
    });
    if stored.is_ok() {
        trace_offsets_committed(broker, &group_id, offsets.len(), generation_id, -1);
    }
    broker.notify_changed();
    Response::OffsetCommit(OffsetCommitResponse {
        results: offsets
            .iter()
            .map(|(tp, _)| PartitionError {
                topic_partition: tp.clone(),
                error: stored.err(),
            })
            .collect(),
    })
}

fn offset_fetch(
    broker: &Broker,
    group_id: &str,
    partitions: Vec<TopicPartition>,
    require_stable: bool,
) -> Response {
    let result = GROUP_SHARDS.with_key(broker, group_id, |shard, _| {
        let group = shard.groups.get(group_id);
        let partitions = if partitions.is_empty() {
            group
                .map(|g| g.offsets.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            partitions
        };
        partitions
            .into_iter()
            .map(|tp| {
                let unstable = require_stable
                    && (shard.has_pending_txn_offset(group_id, &tp)
                        || group.is_some_and(|g| g.pending_commits.contains_key(&tp)));
                if unstable {
                    return OffsetFetchResult {
                        topic_partition: tp,
                        offset: None,
                        error: Some(ErrorCode::UnstableOffsetCommit),
                    };
                }
                let committed = group
                    .and_then(|g| g.offsets.get(&tp))
                    .map(|c| c.offset.clone());
                OffsetFetchResult {
                    topic_partition: tp,
                    offset: committed,
                    error: None,
                }
            })
            .collect()
    });
    match result {
        Ok(offsets) => Response::OffsetFetch(OffsetFetchResponse {
            error: None,
            offsets,
        }),
        Err(error) => Response::OffsetFetch(OffsetFetchResponse {
            error: Some(error),
            offsets: Vec::new(),
        }),
    }
}

/// A transactional commit, as Kafka 3.8's `GroupCoordinator.
/// handleTxnCommitOffsets` takes it: the group must be here
/// (`validateGroupStatus`; a new group id gets an empty group), the
/// transaction is verified with the transaction coordinator before
/// anything else (KIP-890: `verify`, given the group's `__consumer_offsets`
/// partition; its errors are answered as `GroupMetadataManager.
/// maybeConvertOffsetCommitError` maps them), then the member
/// ([`validate_offset_commit`], KIP-447), then the offsets are written as
/// part of the producer's transaction, pending until its marker lands.
pub(crate) async fn txn_offset_commit<V, F>(
    broker: &Rc<Broker>,
    request: TxnOffsetCommitRequest,
    verify: V,
) -> Response
where
    V: FnOnce(TopicPartition) -> F,
    F: Future<Output = Result<VerificationGuard, ErrorCode>>,
{
    let answer = |error: Option<ErrorCode>| {
        Response::TxnOffsetCommit(TxnOffsetCommitResponse {
            results: offset_results(&request.offsets, error),
        })
    };
    let group_id = &request.group_id;
    let located = GROUP_SHARDS.with_key(broker, group_id, |shard, partition| {
        shard
            .groups
            .entry(group_id.clone())
            .or_insert_with(Group::new);
        partition
    });
    let partition = match located {
        Ok(partition) => partition,
        Err(error) => return answer(Some(error)),
    };
    let guard = match verify(TopicPartition::new(OFFSETS_TOPIC, partition)).await {
        Ok(guard) => guard,
        Err(error) => return answer(Some(write_error(error))),
    };
    let commit = CommitRequest {
        group_id,
        generation_id: request.generation_id,
        member_id: &request.member_id,
        group_instance_id: request.group_instance_id.as_deref(),
        offsets: &request.offsets,
    };
    let admitted = admit_commit(broker, group_id, &request.offsets, |shard| {
        let group = shard
            .groups
            .entry(group_id.clone())
            .or_insert_with(Group::new);
        validate_offset_commit(group, &commit, true)
    });
    let (coordinator_epoch, partition) = match admitted {
        Err(results) => return Response::TxnOffsetCommit(TxnOffsetCommitResponse { results }),
        Ok(admitted) => admitted,
    };
    let stored = store_txn_offsets(broker, &request, coordinator_epoch, partition, guard).await;
    if stored.is_ok() {
        trace_offsets_committed(
            broker,
            group_id,
            request.offsets.len(),
            request.generation_id,
            request.producer_id,
        );
    }
    answer(stored.err())
}

/// Appends a TxnOffsetCommit's offsets to `__consumer_offsets-<partition>`
/// as part of the producer's transaction, if the verification still holds
/// (`guard`, checked with the append: no await in between), and waits for
/// acks=all. The offsets are pending (they make require_stable fetches
/// unstable) from the append until the transaction's marker lands.
async fn store_txn_offsets(
    broker: &Broker,
    request: &TxnOffsetCommitRequest,
    coordinator_epoch: i32,
    partition: i32,
    guard: VerificationGuard,
) -> Result<(), ErrorCode> {
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    if let Some(log) = broker.disk.borrow().logs.get(&tp) {
        guard.check(log, request.producer_id)?;
    }
    let records = offset_records(&request.group_id, &request.offsets);
    let producer = (request.producer_id, request.producer_epoch);
    let appended = append_records(broker, partition, Some(producer), records)?;
    let _ = GROUP_SHARDS.with_key(broker, &request.group_id, |shard, _| {
        if shard.ownership.coordinator_epoch != coordinator_epoch {
            return;
        }
        let pending = shard.pending_txn.entry(request.producer_id).or_default();
        for (index, (tp, offset)) in request.offsets.iter().enumerate() {
            pending.insert(
                (request.group_id.clone(), tp.clone()),
                PendingTxnOffset {
                    offset: offset.clone(),
                    log_offset: appended.base_offset + index as i64,
                },
            );
        }
    });
    await_records(broker, &appended).await
}

/// A transaction marker landed on a `__consumer_offsets` partition this
/// broker leads: its pending offsets become committed or are dropped.
pub(crate) fn complete_transaction(
    broker: &Broker,
    partition: i32,
    producer_id: ProducerId,
    control: ControlType,
) {
    let completed = {
        let mut state = broker.state.borrow_mut();
        match state.groups.shards.loaded_mut(partition) {
            Ok(shard) => shard.complete_txn(producer_id, control == ControlType::Commit),
            Err(_) => 0,
        }
    };
    if completed > 0 {
        broker.notify_changed();
    }
}

/// This broker now leads `__consumer_offsets-<partition>`: load its state
/// after the load delay.
pub(crate) fn start_loading(broker: &Rc<Broker>, partition: i32, leader_epoch: i32) {
    let shard = Shard {
        ownership: ShardOwnership::loading(leader_epoch),
        groups: BTreeMap::new(),
        pending_txn: BTreeMap::new(),
        next_join_order: 0,
    };
    GROUP_SHARDS.start_loading(broker, partition, leader_epoch, shard, move |broker| {
        load(broker, partition, leader_epoch);
    });
}

fn load(broker: &Broker, partition: i32, leader_epoch: i32) {
    let now = now_ms();
    GROUP_SHARDS.replay(broker, partition, leader_epoch, |shard, tp| {
        let disk = broker.disk.borrow();
        for stored in disk.logs[tp].batches() {
            if let Some(control) = stored.header.control {
                shard.complete_txn(stored.header.producer_id, control == ControlType::Commit);
                continue;
            }
            replay_batch(shard, tp, &stored.decode(), now);
        }
        (group_record_count(shard), ())
    });
}

/// Replays one data batch of `__consumer_offsets` into its shard.
fn replay_batch(shard: &mut Shard, tp: &TopicPartition, batch: &RecordBatch, now: u64) {
    if let Some(control) = batch.control {
        shard.complete_txn(batch.producer_id, control == ControlType::Commit);
        return;
    }
    for (index, record) in batch.records.iter().enumerate() {
        let Some(value) = &record.value else {
            continue;
        };
        let record: GroupRecord = postcard::from_bytes(value).unwrap_or_else(|e| {
            panic!(
                "undecodable record in {tp} at {}: {e} (seed {})",
                batch.base_offset,
                crate::seed_context::current_seed()
            )
        });
        let log_offset = batch.base_offset + index as i64;
        if batch.transactional {
            if let GroupRecord::Offset {
                group,
                partition: offset_partition,
                offset,
            } = record
            {
                shard
                    .pending_txn
                    .entry(batch.producer_id)
                    .or_default()
                    .insert(
                        (group, offset_partition),
                        PendingTxnOffset { offset, log_offset },
                    );
            }
        } else {
            shard.replay_record(record, log_offset, now);
        }
    }
}

/// This broker no longer leads `__consumer_offsets-<partition>`.
pub(crate) fn unload(broker: &Rc<Broker>, partition: i32) {
    GROUP_SHARDS.unload(broker, partition);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_states_follow_kafkas_valid_previous_states() {
        use GroupState::*;
        let all = [Empty, PreparingRebalance, CompletingRebalance, Stable];
        // Kafka's GroupState.validPreviousStates, less Dead.
        let legal = [
            (PreparingRebalance, Empty),
            (Empty, PreparingRebalance),
            (Stable, PreparingRebalance),
            (CompletingRebalance, PreparingRebalance),
            (PreparingRebalance, CompletingRebalance),
            (CompletingRebalance, Stable),
        ];
        crate::broker::assert_transition_table(&all, &legal, |previous, next| {
            next.can_follow(previous)
        });
    }

    #[test]
    #[should_panic(expected = "illegal transition")]
    fn an_illegal_group_transition_panics() {
        let mut group = Group::new();
        group.transition("g", GroupState::Stable);
    }
}
