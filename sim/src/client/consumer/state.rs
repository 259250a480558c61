//! The consumer's state, shared by `poll` and the background tasks:
//! owned partitions with their positions and buffered messages, the group
//! membership, and the events `poll` has not handed out yet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use eddyline_engine::transport::{ConsumerEvent, Message, TopicPartition, TransportError};
use tokio::time::Instant;

use super::super::connection::Endpoint;
use crate::protocol::BrokerId;

/// How the consumer gets its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Neither `assign` nor `subscribe` yet.
    Idle,
    /// `assign`: the partitions the application named.
    Manual,
    /// `subscribe`: the group's assignment.
    Group,
}

/// One owned partition.
#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    /// The offset of the next record to hand out; `None` until resolved.
    pub position: Option<i64>,
    /// Skip the committed offset: the position comes from the reset policy
    /// (after OFFSET_OUT_OF_RANGE).
    pub reset_only: bool,
    /// A position lookup is running.
    pub resolving: bool,
    /// Bumped when the position is set from outside (seek, reassignment):
    /// answers to fetches and lookups begun before are dropped.
    pub epoch: u64,
    /// Fetched messages not handed out yet, in offset order.
    pub buffered: VecDeque<Message>,
    /// Where the buffered fetch ended (past control and aborted batches).
    pub buffer_end: Option<i64>,
    pub fetch_in_flight: bool,
    /// The leader epoch of the last fetch (fencing stale leaders).
    pub leader_epoch: Option<i32>,
}

impl PartitionState {
    /// Whether this partition can be fetched now.
    pub(crate) fn fetchable(&self) -> bool {
        self.position.is_some() && self.buffered.is_empty() && !self.fetch_in_flight
    }
}

/// Where a group member is in the eager rebalance protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Joining (or rejoining) the group; no assignment.
    Joining,
    /// Owns its assignment and heartbeats.
    Stable,
    /// A rebalance began: `Revoked` is queued (or was handed out when
    /// `delivered`); the member keeps its partitions and generation until
    /// the `poll` after the one that handed it out.
    RevokePending { delivered: bool },
    /// The session is gone: `Lost` is queued. The member still lists its
    /// partitions (so `seek` and `committed` work as before, as in Kafka's
    /// clients, which act on a lost session in `poll`) but fetches and
    /// hands out nothing; handing out `Lost` drops them and rejoins.
    LostPending,
}

/// Group membership.
#[derive(Debug)]
pub(crate) struct GroupState {
    pub group_id: String,
    pub subscription: Vec<String>,
    pub member_id: String,
    /// -1 before the first successful join.
    pub generation_id: i32,
    pub phase: Phase,
    pub coordinator: Option<Endpoint>,
    /// Whether an assignment was ever received (`group_metadata`).
    pub assigned_once: bool,
    pub last_heartbeat_ok: Instant,
    /// When the `max.poll.interval.ms` check timer started (the last
    /// assignment): librdkafka checks every 500 ms from then.
    pub poll_check_since: Option<Instant>,
    /// The member left its group because it did not poll in time: it
    /// rejoins as a new member (empty member id), and not before the
    /// application polled again (librdkafka's
    /// `RD_KAFKA_CGRP_F_MAX_POLL_EXCEEDED`).
    pub left_for_max_poll: bool,
}

impl GroupState {
    pub(crate) fn new(group_id: String, subscription: Vec<String>, now: Instant) -> Self {
        Self {
            group_id,
            subscription,
            member_id: String::new(),
            generation_id: -1,
            phase: Phase::Joining,
            coordinator: None,
            assigned_once: false,
            last_heartbeat_ok: now,
            poll_check_since: None,
            left_for_max_poll: false,
        }
    }
}

/// When the application last called `poll`, for `max.poll.interval.ms`
/// (librdkafka's `rk_ts_last_poll`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollClock {
    /// A poll is running: the interval is not enforced (librdkafka's
    /// `rd_kafka_app_poll_start` with a blocking poll).
    Polling,
    /// The last poll returned then (or the consumer was created then).
    Since(Instant),
}

#[derive(Debug)]
pub(crate) struct State {
    pub mode: Mode,
    pub partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Group events not handed out yet, in order.
    pub events: VecDeque<ConsumerEvent>,
    pub group: Option<GroupState>,
    /// An error `poll` must report (the group cannot go on).
    pub fatal: Option<TransportError>,
    /// An error the next `poll` reports once, after the `after_events`
    /// events queued before it (librdkafka's consumer error op in the
    /// queue: `_MAX_POLL_EXCEEDED`).
    pub poll_error: Option<(usize, TransportError)>,
    pub poll_clock: PollClock,
    pub fetch_brokers: BTreeSet<BrokerId>,
    pub metadata_in_flight: bool,
    pub metadata_not_before: Option<Instant>,
    pub resolve_not_before: Option<Instant>,
    pub next_epoch: u64,
    /// Rotates which partition `poll` takes messages from first.
    pub rotation: usize,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            mode: Mode::Idle,
            partitions: BTreeMap::new(),
            events: VecDeque::new(),
            group: None,
            fatal: None,
            poll_error: None,
            poll_clock: PollClock::Since(crate::client::now()),
            fetch_brokers: BTreeSet::new(),
            metadata_in_flight: false,
            metadata_not_before: None,
            resolve_not_before: None,
            next_epoch: 1,
            rotation: 0,
        }
    }

    pub(crate) fn fresh_partition(&mut self) -> PartitionState {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        PartitionState {
            epoch,
            ..PartitionState::default()
        }
    }

    /// Replaces the owned partitions; partitions kept keep their state.
    pub(crate) fn set_partitions(&mut self, partitions: &[TopicPartition]) {
        let mut old = std::mem::take(&mut self.partitions);
        for partition in partitions {
            let state = match old.remove(partition) {
                Some(state) => state,
                None => self.fresh_partition(),
            };
            self.partitions.insert(partition.clone(), state);
        }
    }

    pub(crate) fn owned(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Starts an eager rebalance: the member revokes the partitions it owns
    /// (a `Revoked` event, handed out before it rejoins), or rejoins at once
    /// if it owns none.
    pub(crate) fn begin_rebalance(&mut self, owned: Vec<TopicPartition>) {
        let group = self.group.as_mut().expect("only a group member rebalances");
        if owned.is_empty() {
            group.phase = Phase::Joining;
        } else {
            group.phase = Phase::RevokePending { delivered: false };
            self.events.push_back(ConsumerEvent::Revoked(owned));
        }
    }

    /// Whether messages may be handed out now (not during a revoke).
    pub(crate) fn messages_allowed(&self) -> bool {
        !matches!(
            self.group.as_ref().map(|group| &group.phase),
            Some(Phase::RevokePending { .. } | Phase::Joining | Phase::LostPending)
        )
    }

    /// The error `poll` reports now, if one is due: once every event queued
    /// before it was handed out. The application polled, so a member that
    /// left for exceeding `max.poll.interval.ms` may rejoin.
    pub(crate) fn take_poll_error(&mut self) -> Option<TransportError> {
        match &self.poll_error {
            Some((0, _)) => {
                let (_, error) = self.poll_error.take().expect("matched");
                if let Some(group) = self.group.as_mut() {
                    group.left_for_max_poll = group.phase == Phase::LostPending;
                }
                Some(error)
            }
            _ => None,
        }
    }

    /// Hands out at most `max` events: group events first (in order), then
    /// messages, round-robin over partitions, advancing positions. Events
    /// queued after a pending poll error wait until it is handed out.
    pub(crate) fn take_events(&mut self, max: usize) -> Vec<ConsumerEvent> {
        let max = match &self.poll_error {
            Some((before, _)) => max.min(*before),
            None => max,
        };
        let mut out = Vec::new();
        while out.len() < max {
            let Some(event) = self.events.pop_front() else {
                break;
            };
            let revoked = matches!(event, ConsumerEvent::Revoked(_));
            let lost = matches!(event, ConsumerEvent::Lost(_));
            out.push(event);
            if let Some((before, _)) = self.poll_error.as_mut() {
                *before -= 1;
            }
            if lost {
                if let Some(group) = self.group.as_mut() {
                    if group.phase == Phase::LostPending {
                        group.phase = Phase::Joining;
                        group.generation_id = -1;
                    }
                    if group.left_for_max_poll {
                        // It left the group: it joins again as a new member.
                        group.member_id.clear();
                        group.left_for_max_poll = false;
                    }
                }
                self.partitions.clear();
                return out;
            }
            if revoked {
                if let Some(group) = self.group.as_mut() {
                    if group.phase == (Phase::RevokePending { delivered: false }) {
                        group.phase = Phase::RevokePending { delivered: true };
                    }
                }
                // Nothing after a revoke in the same poll.
                return out;
            }
        }
        if !self.events.is_empty() || !self.messages_allowed() || self.poll_error.is_some() {
            return out;
        }
        let keys: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| !state.buffered.is_empty())
            .map(|(partition, _)| partition.clone())
            .collect();
        if keys.is_empty() {
            return out;
        }
        let start = self.rotation % keys.len();
        self.rotation = self.rotation.wrapping_add(1);
        for index in 0..keys.len() {
            if out.len() >= max {
                break;
            }
            let partition = &keys[(start + index) % keys.len()];
            let state = self.partitions.get_mut(partition).expect("listed above");
            while out.len() < max {
                let Some(message) = state.buffered.pop_front() else {
                    break;
                };
                let position = state.position.expect("buffered partitions have a position");
                assert!(
                    message.offset >= position,
                    "{partition}: message {} behind position {position}",
                    message.offset
                );
                state.position = Some(message.offset + 1);
                out.push(ConsumerEvent::Message(message));
            }
            if state.buffered.is_empty() {
                if let (Some(end), Some(position)) = (state.buffer_end.take(), state.position) {
                    state.position = Some(position.max(end));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(partition: i32, offset: i64) -> Message {
        Message {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            value: None,
            timestamp_ms: 0,
            headers: vec![],
        }
    }

    fn with_buffer(state: &mut State, partition: i32, offsets: &[i64], end: i64) {
        let tp = TopicPartition::new("t", partition);
        let entry = state.partitions.entry(tp).or_default();
        entry.position = Some(offsets[0]);
        entry.buffered = offsets.iter().map(|o| message(partition, *o)).collect();
        entry.buffer_end = Some(end);
    }

    #[test]
    fn messages_come_out_in_offset_order_and_positions_skip_past_control_records() {
        let mut state = State::new();
        with_buffer(&mut state, 0, &[3, 4, 6], 8);
        let events = state.take_events(2);
        assert_eq!(events.len(), 2);
        let tp = TopicPartition::new("t", 0);
        assert_eq!(state.partitions[&tp].position, Some(5));
        let events = state.take_events(10);
        assert_eq!(events, vec![ConsumerEvent::Message(message(0, 6))]);
        assert_eq!(state.partitions[&tp].position, Some(8));
    }

    #[test]
    fn group_events_come_before_messages_and_nothing_follows_a_revoke() {
        let mut state = State::new();
        with_buffer(&mut state, 0, &[0, 1], 2);
        state.group = Some(GroupState {
            member_id: "m".into(),
            generation_id: 1,
            phase: Phase::RevokePending { delivered: false },
            assigned_once: true,
            ..GroupState::new("g".into(), vec!["t".into()], crate::client::now())
        });
        state
            .events
            .push_back(ConsumerEvent::Revoked(vec![TopicPartition::new("t", 0)]));
        let events = state.take_events(10);
        assert_eq!(
            events,
            vec![ConsumerEvent::Revoked(vec![TopicPartition::new("t", 0)])]
        );
        assert_eq!(
            state.group.as_ref().unwrap().phase,
            Phase::RevokePending { delivered: true }
        );
        assert!(
            state.take_events(10).is_empty(),
            "no messages during a revoke"
        );
    }

    #[test]
    fn a_lost_member_keeps_listing_its_partitions_until_lost_is_handed_out() {
        let mut state = State::new();
        with_buffer(&mut state, 0, &[0], 1);
        state
            .partitions
            .get_mut(&TopicPartition::new("t", 0))
            .unwrap()
            .buffered
            .clear();
        state.group = Some(GroupState {
            member_id: "m".into(),
            generation_id: 4,
            phase: Phase::LostPending,
            assigned_once: true,
            ..GroupState::new("g".into(), vec!["t".into()], crate::client::now())
        });
        state
            .events
            .push_back(ConsumerEvent::Lost(vec![TopicPartition::new("t", 0)]));
        assert_eq!(state.owned(), vec![TopicPartition::new("t", 0)]);
        let events = state.take_events(10);
        assert_eq!(
            events,
            vec![ConsumerEvent::Lost(vec![TopicPartition::new("t", 0)])]
        );
        assert!(state.owned().is_empty());
        let group = state.group.as_ref().unwrap();
        assert_eq!(
            (group.phase.clone(), group.generation_id),
            (Phase::Joining, -1)
        );
    }

    #[test]
    fn a_poll_error_comes_after_the_events_queued_before_it_and_before_the_loss() {
        let mut state = State::new();
        with_buffer(&mut state, 0, &[0], 1);
        state.group = Some(GroupState {
            member_id: "m".into(),
            generation_id: 2,
            phase: Phase::LostPending,
            assigned_once: true,
            left_for_max_poll: true,
            ..GroupState::new("g".into(), vec!["t".into()], crate::client::now())
        });
        let owned = vec![TopicPartition::new("t", 0)];
        state
            .events
            .push_back(ConsumerEvent::Assigned(owned.clone()));
        let error = TransportError::new(
            eddyline_engine::transport::ErrorKind::Retriable,
            eddyline_engine::transport::ErrorCode::MaxPollExceeded,
            "late",
        );
        state.poll_error = Some((1, error.clone()));
        state.events.push_back(ConsumerEvent::Lost(owned.clone()));
        assert!(state.take_poll_error().is_none(), "an event comes first");
        assert_eq!(
            state.take_events(10),
            vec![ConsumerEvent::Assigned(owned.clone())]
        );
        assert_eq!(state.take_poll_error(), Some(error));
        assert!(state.take_poll_error().is_none(), "reported once");
        assert_eq!(state.take_events(10), vec![ConsumerEvent::Lost(owned)]);
        let group = state.group.as_ref().unwrap();
        assert_eq!(group.phase, Phase::Joining);
        assert!(group.member_id.is_empty(), "rejoins as a new member");
        assert!(!group.left_for_max_poll, "free to rejoin");
    }

    #[test]
    fn partitions_take_turns_when_the_batch_is_small() {
        let mut state = State::new();
        with_buffer(&mut state, 0, &[0, 1, 2], 3);
        with_buffer(&mut state, 1, &[0, 1, 2], 3);
        let first = state.take_events(2);
        let second = state.take_events(2);
        let partition = |events: &[ConsumerEvent]| match &events[0] {
            ConsumerEvent::Message(m) => m.partition,
            other => panic!("{other:?}"),
        };
        assert_ne!(partition(&first), partition(&second));
    }
}
