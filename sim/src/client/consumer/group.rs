//! Group membership, as Kafka's classic consumer protocol with eager
//! rebalancing: FindCoordinator, JoinGroup (with KIP-394's
//! MEMBER_ID_REQUIRED), the leader runs the range assignor, SyncGroup, then
//! Heartbeat every `heartbeat_interval_ms`.
//!
//! A heartbeat answered REBALANCE_IN_PROGRESS queues `Revoked(all owned)`;
//! the member keeps its partitions and generation until the `poll` after
//! the one that handed the event out, which moves the member back to
//! joining. A heartbeat answered UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION /
//! FENCED_INSTANCE_ID, or no successful heartbeat for the session timeout
//! (librdkafka's local session check), means the session is gone: the
//! partitions are dropped at once, `Lost(..)` is queued, and the member
//! rejoins.
//!
//! `max.poll.interval.ms` as librdkafka enforces it
//! (`rd_kafka_cgrp_max_poll_interval_check_tmr_cb`, checked twice a second
//! from the assignment): a member whose application has not called `poll`
//! for longer leaves the group (LeaveGroup), stops heartbeating, forgets its
//! member id and loses its partitions; its next `poll` fails once with
//! `_MAX_POLL_EXCEEDED` (queued after the events already waiting), the one
//! after hands out `Lost(..)`, and only then does it rejoin, as a new member.

use std::collections::BTreeMap;
use std::rc::Rc;

use eddyline_engine::transport::{
    ConsumerEvent, ErrorCode, ErrorKind, TopicPartition, TransportError,
};

use super::Shared;
use super::state::{Mode, Phase, PollClock};
use crate::client::assignor::{RANGE, decode_subscription, encode_subscription, range_assign};
use crate::client::connection::Endpoint;
use crate::client::errors::{self, MEMBER_ID_REQUIRED};
use crate::client::network::{Backoff, Lane};
use crate::client::{ms, now};
use crate::protocol::{
    CoordinatorType, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    JoinProtocol, LeaveGroupRequest, LeaveGroupResponse, MemberAssignment, SyncGroupRequest,
    SyncGroupResponse,
};

/// The protocol type of consumer groups.
const CONSUMER_PROTOCOL: &str = "consumer";
/// How much longer than the rebalance timeout a JoinGroup may take (the
/// Java client's margin).
const JOIN_MARGIN_MS: u32 = 5_000;
/// librdkafka checks `max.poll.interval.ms` on a 500 ms timer
/// (`rd_kafka_cgrp_start_max_poll_interval_timer`: "The timer interval is
/// 2 hz").
const MAX_POLL_CHECK_INTERVAL_MS: u64 = 500;

/// What ended a join attempt that did not produce an assignment.
enum JoinEnd {
    /// Try again after a backoff.
    Retry,
    /// Try again at once (new member id, or the rebalance moved on).
    RetryNow,
    /// The group cannot be joined: the consumer fails.
    Fatal(TransportError),
}

/// The background task of a group member; runs until the consumer goes.
pub(crate) async fn run(shared: Rc<Shared>) {
    let mut backoff = Backoff::new(shared.net.options());
    loop {
        let phase = match shared.state.borrow().group.as_ref() {
            Some(group) => group.phase.clone(),
            None => return,
        };
        if shared.state.borrow().fatal.is_some() {
            return;
        }
        match phase {
            Phase::Joining if waits_for_poll(&shared) => {
                // Left for exceeding max.poll.interval.ms: no rejoin before
                // the application polls (`rd_kafka_cgrp_join`).
                let seen = shared.signal.generation();
                if waits_for_poll(&shared) {
                    shared.signal.changed_since(seen).await;
                }
            }
            Phase::Joining => match join(&shared).await {
                Ok(()) => backoff.reset(shared.net.options()),
                Err(JoinEnd::RetryNow) => {}
                Err(JoinEnd::Retry) => tokio::time::sleep(backoff.next_delay()).await,
                Err(JoinEnd::Fatal(error)) => {
                    shared.state.borrow_mut().fatal = Some(error);
                    shared.signal.raise();
                    return;
                }
            },
            Phase::Stable | Phase::RevokePending { .. } => heartbeat_cycle(&shared).await,
            Phase::LostPending => {
                // Nothing to do until `poll` hands out `Lost`.
                let seen = shared.signal.generation();
                let waiting = shared.state.borrow().group.as_ref().map(|g| &g.phase)
                    == Some(&Phase::LostPending);
                if waiting {
                    shared.signal.changed_since(seen).await;
                }
            }
        }
    }
}

fn waits_for_poll(shared: &Shared) -> bool {
    shared
        .state
        .borrow()
        .group
        .as_ref()
        .is_some_and(|group| group.left_for_max_poll)
}

async fn coordinator(shared: &Shared) -> Result<Endpoint, JoinEnd> {
    let (cached, group_id) = {
        let state = shared.state.borrow();
        let group = state.group.as_ref().expect("group member");
        (group.coordinator.clone(), group.group_id.clone())
    };
    if let Some(endpoint) = cached {
        return Ok(endpoint);
    }
    let deadline = now() + ms(shared.config.request_timeout_ms);
    match shared
        .net
        .find_coordinator(CoordinatorType::Group, &group_id, deadline)
        .await
    {
        Ok(endpoint) => {
            if let Some(group) = shared.state.borrow_mut().group.as_mut() {
                group.coordinator = Some(endpoint.clone());
            }
            Ok(endpoint)
        }
        Err(error) if error.kind == ErrorKind::Fatal => Err(JoinEnd::Fatal(error)),
        Err(_) => Err(JoinEnd::Retry),
    }
}

fn forget_coordinator(shared: &Shared) {
    if let Some(group) = shared.state.borrow_mut().group.as_mut() {
        group.coordinator = None;
    }
}

/// One JoinGroup + SyncGroup round.
async fn join(shared: &Rc<Shared>) -> Result<(), JoinEnd> {
    let coordinator = coordinator(shared).await?;
    let (group_id, member_id, subscription) = {
        let state = shared.state.borrow();
        let group = state.group.as_ref().expect("group member");
        (
            group.group_id.clone(),
            group.member_id.clone(),
            group.subscription.clone(),
        )
    };
    let joined = join_group(shared, &coordinator, &group_id, member_id, &subscription).await?;
    let assignments = if joined.leader == joined.member_id {
        leader_assignment(shared, &joined.members).await
    } else {
        Vec::new()
    };
    let assignment = sync_group(shared, &coordinator, group_id, &joined, assignments).await?;
    install_assignment(shared, joined.generation_id, &subscription, assignment);
    Ok(())
}

/// A successful JoinGroup's answer.
struct Joined {
    generation_id: i32,
    leader: String,
    /// The member id the coordinator assigned.
    member_id: String,
    /// Every member's subscription (for the leader only).
    members: Vec<crate::protocol::JoinMember>,
}

/// JoinGroup: waits for the rebalance and answers the generation joined.
async fn join_group(
    shared: &Shared,
    coordinator: &Endpoint,
    group_id: &str,
    member_id: String,
    subscription: &[String],
) -> Result<Joined, JoinEnd> {
    // librdkafka announces `max.poll.interval.ms` as the rebalance timeout.
    let rebalance_timeout_ms = shared.config.max_poll_interval_ms;
    let request = JoinGroupRequest {
        group_id: group_id.to_string(),
        session_timeout_ms: shared.config.session_timeout_ms,
        rebalance_timeout_ms,
        member_id,
        group_instance_id: None,
        protocol_type: CONSUMER_PROTOCOL.to_string(),
        protocols: vec![JoinProtocol {
            name: RANGE.to_string(),
            metadata: encode_subscription(subscription),
        }],
        client_id: shared.config.client_id.clone(),
    };
    // The Java client waits `rebalance_timeout + 5 s` for a JoinGroup. Here
    // a JoinGroup is re-sent after `max(request, session timeout)`: Kafka
    // answers a known member's repeated JoinGroup with the current
    // generation (it is how a lost JoinGroup response is recovered), and in
    // the simulator a response can be lost for good (turmoil drops the
    // segments of a partitioned link; TCP would retransmit them).
    let join_timeout = ms(shared
        .config
        .request_timeout_ms
        .max(shared.config.session_timeout_ms)
        .min(rebalance_timeout_ms.saturating_add(JOIN_MARGIN_MS)));
    let response = shared
        .net
        .call(coordinator, Lane::Group, request, join_timeout)
        .await;
    let joined = match response {
        Ok(JoinGroupResponse {
            error: None,
            generation_id,
            leader,
            member_id,
            members,
            ..
        }) => Joined {
            generation_id,
            leader,
            member_id,
            members,
        },
        Ok(JoinGroupResponse {
            error: Some(code),
            member_id: offered,
            ..
        }) => {
            return Err(join_error(shared, code, Some(offered), "JoinGroup"));
        }
        Err(_) => {
            forget_coordinator(shared);
            return Err(JoinEnd::Retry);
        }
    };
    assert!(
        !joined.member_id.is_empty() && joined.generation_id >= 0,
        "JoinGroup succeeded without a member id or generation"
    );
    if let Some(group) = shared.state.borrow_mut().group.as_mut() {
        group.member_id = joined.member_id.clone();
    }
    Ok(joined)
}

/// SyncGroup: sends the leader's assignments (none from a follower) and
/// answers this member's partitions, sorted and without duplicates.
async fn sync_group(
    shared: &Shared,
    coordinator: &Endpoint,
    group_id: String,
    joined: &Joined,
    assignments: Vec<MemberAssignment>,
) -> Result<Vec<TopicPartition>, JoinEnd> {
    let sync_timeout = ms(shared.config.request_timeout_ms);
    let request = SyncGroupRequest {
        group_id,
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        assignments,
    };
    let response = shared
        .net
        .call(coordinator, Lane::Group, request, sync_timeout)
        .await;
    let assignment = match response {
        Ok(SyncGroupResponse {
            error: None,
            assignment,
        }) => assignment,
        Ok(SyncGroupResponse {
            error: Some(code), ..
        }) => return Err(join_error(shared, code, None, "SyncGroup")),
        Err(_) => {
            forget_coordinator(shared);
            return Err(JoinEnd::Retry);
        }
    };
    let mut assignment = assignment;
    assignment.sort();
    assignment.dedup();
    Ok(assignment)
}

/// The generation is joined: the member is `Stable` with `assignment`
/// (unless the consumer moved on meanwhile).
fn install_assignment(
    shared: &Shared,
    generation_id: i32,
    subscription: &[String],
    assignment: Vec<TopicPartition>,
) {
    {
        let mut state = shared.state.borrow_mut();
        if state.mode != Mode::Group {
            return;
        }
        let group = state.group.as_mut().expect("group member");
        if group.phase != Phase::Joining {
            // The consumer changed its mind meanwhile (a new subscription
            // is handled by the next round).
            return;
        }
        group.generation_id = generation_id;
        group.phase = Phase::Stable;
        group.assigned_once = true;
        group.last_heartbeat_ok = now();
        group.poll_check_since = Some(now());
        let resubscribed = group.subscription != subscription;
        state.set_partitions(&assignment);
        state
            .events
            .push_back(ConsumerEvent::Assigned(assignment.clone()));
        if resubscribed {
            // `subscribe` changed the topics while this round was running:
            // rebalance again for the new subscription (eager revoke).
            state.begin_rebalance(assignment);
        }
    }
    shared.signal.raise();
}

/// What a JoinGroup or SyncGroup error means for the next attempt.
fn join_error(shared: &Shared, code: ErrorCode, offered: Option<String>, call: &str) -> JoinEnd {
    let mut state = shared.state.borrow_mut();
    let group = state.group.as_mut().expect("group member");
    match code {
        ErrorCode::Other(MEMBER_ID_REQUIRED) => {
            let offered = offered.unwrap_or_default();
            assert!(
                !offered.is_empty(),
                "MEMBER_ID_REQUIRED without a member id"
            );
            group.member_id = offered;
            JoinEnd::RetryNow
        }
        ErrorCode::UnknownMemberId => {
            group.member_id.clear();
            group.generation_id = -1;
            JoinEnd::RetryNow
        }
        ErrorCode::IllegalGeneration | ErrorCode::RebalanceInProgress => JoinEnd::RetryNow,
        code if errors::is_coordinator_error(code) => {
            group.coordinator = None;
            JoinEnd::Retry
        }
        code if errors::is_retriable(code) => JoinEnd::Retry,
        code => JoinEnd::Fatal(TransportError::new(
            ErrorKind::Fatal,
            code,
            format!("{call} for group {} failed: {code:?}", group.group_id),
        )),
    }
}

/// The leader's assignment: the range assignor over every member's
/// subscription, with partition counts from fresh metadata.
async fn leader_assignment(
    shared: &Shared,
    members: &[crate::protocol::JoinMember],
) -> Vec<MemberAssignment> {
    let subscriptions: BTreeMap<String, Vec<String>> = members
        .iter()
        .map(|member| {
            (
                member.member_id.clone(),
                decode_subscription(&member.metadata).unwrap_or_default(),
            )
        })
        .collect();
    let mut topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
    topics.sort();
    topics.dedup();
    let deadline = now() + ms(shared.config.request_timeout_ms);
    // Topics that do not exist are left out, as Kafka's assignors do.
    let _ = shared
        .net
        .await_metadata(&topics, deadline, |cache| {
            topics.iter().all(|topic| cache.topic(topic).is_some())
        })
        .await;
    let counts: BTreeMap<String, i32> = {
        let metadata = shared.net.metadata();
        topics
            .iter()
            .filter_map(|topic| Some((topic.clone(), metadata.partition_count(topic)?)))
            .collect()
    };
    range_assign(&subscriptions, &counts)
        .into_iter()
        .map(|(member_id, partitions)| MemberAssignment {
            member_id,
            partitions,
        })
        .collect()
}

/// Sleeps until the next heartbeat is due (or the phase changes), then
/// sends it and acts on the answer.
async fn heartbeat_cycle(shared: &Rc<Shared>) {
    if !heartbeat_due(shared).await {
        return;
    }
    let (group_id, generation_id, member_id, phase) = {
        let state = shared.state.borrow();
        let Some(group) = state.group.as_ref() else {
            return;
        };
        (
            group.group_id.clone(),
            group.generation_id,
            group.member_id.clone(),
            group.phase.clone(),
        )
    };
    if !matches!(phase, Phase::Stable | Phase::RevokePending { .. }) {
        return;
    }
    let error = send_heartbeat(shared, group_id, generation_id, member_id).await;
    heartbeat_answered(shared, generation_id, error);
}

/// Sleeps until the next heartbeat is due: `false` if the phase changed
/// meanwhile (a completed revoke: go join).
async fn heartbeat_due(shared: &Shared) -> bool {
    let wake = now() + ms(shared.config.heartbeat_interval_ms);
    loop {
        let seen = shared.signal.generation();
        let due = {
            let state = shared.state.borrow();
            matches!(
                state.group.as_ref().map(|group| &group.phase),
                Some(Phase::Stable | Phase::RevokePending { .. })
            )
        };
        if !due {
            // The phase changed (a completed revoke): go join.
            return false;
        }
        if now() >= wake {
            return true;
        }
        shared.signal.changed_since_or(seen, wake).await;
    }
}

/// One Heartbeat: its error (a network failure as its code; no
/// coordinator as COORDINATOR_NOT_AVAILABLE).
async fn send_heartbeat(
    shared: &Shared,
    group_id: String,
    generation_id: i32,
    member_id: String,
) -> Option<ErrorCode> {
    let session_timeout = ms(shared.config.session_timeout_ms);
    match coordinator(shared).await {
        Err(_) => Some(ErrorCode::CoordinatorNotAvailable),
        Ok(endpoint) => {
            let request = HeartbeatRequest {
                group_id,
                generation_id,
                member_id,
            };
            // Half the session: a heartbeat stuck on a dead connection (a
            // partition turmoil healed without retransmitting) is noticed
            // in time for the next one to keep the session.
            let timeout = ms(shared.config.request_timeout_ms).min(session_timeout / 2);
            match shared
                .net
                .call(&endpoint, Lane::Group, request, timeout)
                .await
            {
                Ok(HeartbeatResponse { error }) => error,
                Err(error) => Some(errors::code_of_net(&error)),
            }
        }
    }
}

/// Acts on a heartbeat's answer for `generation_id` (unless the member
/// moved on while it was out).
fn heartbeat_answered(shared: &Shared, generation_id: i32, error: Option<ErrorCode>) {
    let session_timeout = ms(shared.config.session_timeout_ms);
    let mut state = shared.state.borrow_mut();
    let owned = state.owned();
    let Some(group) = state.group.as_mut() else {
        return;
    };
    if group.generation_id != generation_id
        || matches!(group.phase, Phase::Joining | Phase::LostPending)
    {
        // The member moved on while the heartbeat was out.
        return;
    }
    match error {
        None => group.last_heartbeat_ok = now(),
        Some(ErrorCode::RebalanceInProgress) => {
            // The heartbeat still counts for the session (Kafka completes it
            // before answering).
            group.last_heartbeat_ok = now();
            if group.phase == Phase::Stable {
                state.begin_rebalance(owned);
                drop(state);
                shared.signal.raise();
            }
        }
        Some(
            code @ (ErrorCode::UnknownMemberId
            | ErrorCode::IllegalGeneration
            | ErrorCode::FencedInstanceId),
        ) => {
            if code == ErrorCode::UnknownMemberId {
                group.member_id.clear();
            }
            drop(state);
            session_lost(shared, &format!("heartbeat answered {code:?}"));
        }
        Some(code) => {
            if errors::is_coordinator_error(code) {
                group.coordinator = None;
            }
            let silent_for = now().duration_since(group.last_heartbeat_ok);
            if silent_for >= session_timeout {
                drop(state);
                session_lost(shared, "no heartbeat got through for the session timeout");
            }
        }
    }
}

/// The member's session is gone: `Lost(owned)` is queued (replacing an
/// undelivered `Revoked`); fetching stops at once; handing `Lost` out drops
/// the partitions and rejoins. Without partitions the member rejoins now.
fn session_lost(shared: &Shared, _why: &str) {
    {
        let mut state = shared.state.borrow_mut();
        state
            .events
            .retain(|event| !matches!(event, ConsumerEvent::Revoked(_)));
        let owned = state.owned();
        for partition in state.partitions.values_mut() {
            partition.buffered.clear();
            partition.buffer_end = None;
        }
        let group = state.group.as_mut().expect("group member");
        if owned.is_empty() {
            group.phase = Phase::Joining;
            group.generation_id = -1;
        } else {
            // The stale generation stays visible until `Lost` is handed
            // out: commits with it are refused by the coordinator.
            group.phase = Phase::LostPending;
            state.events.push_back(ConsumerEvent::Lost(owned));
        }
    }
    shared.signal.raise();
}

/// LeaveGroup within the request timeout (consumer close). Sent on the
/// control connection: the group connection may hold a JoinGroup or
/// SyncGroup the broker is still parking, and a broker serves one request
/// of a connection at a time.
pub(crate) async fn leave(shared: &Shared) -> Result<(), TransportError> {
    let membership = {
        let state = shared.state.borrow();
        let Some(group) = state.group.as_ref() else {
            return Ok(());
        };
        (
            group.group_id.clone(),
            group.member_id.clone(),
            group.coordinator.clone(),
        )
    };
    send_leave(shared, membership).await
}

/// LeaveGroup for (group, member id, known coordinator).
async fn send_leave(
    shared: &Shared,
    (group_id, member_id, coordinator): (String, String, Option<Endpoint>),
) -> Result<(), TransportError> {
    if member_id.is_empty() {
        return Ok(());
    }
    let deadline = now() + ms(shared.config.request_timeout_ms);
    let endpoint = match coordinator {
        Some(endpoint) => endpoint,
        None => {
            shared
                .net
                .find_coordinator(CoordinatorType::Group, &group_id, deadline)
                .await?
        }
    };
    let request = LeaveGroupRequest {
        group_id,
        member_id,
    };
    match shared
        .net
        .call(
            &endpoint,
            Lane::Control,
            request,
            shared.net.request_timeout_until(deadline),
        )
        .await
    {
        Ok(LeaveGroupResponse { error: None }) => Ok(()),
        // Already gone from the group: nothing to leave.
        Ok(LeaveGroupResponse {
            error: Some(ErrorCode::UnknownMemberId),
        }) => Ok(()),
        Ok(LeaveGroupResponse { error: Some(code) }) => {
            Err(errors::broker_error(code, "LeaveGroup"))
        }
        Err(error) => Err(errors::from_net(&error, "LeaveGroup")),
    }
}

/// Enforces `max.poll.interval.ms` while the consumer is subscribed: wakes
/// at librdkafka's next 500 ms check after the interval could have passed,
/// and makes the member leave if it did.
pub(crate) async fn watch_max_poll(shared: Rc<Shared>) {
    let interval_ms = u64::from(shared.config.max_poll_interval_ms);
    loop {
        let seen = shared.signal.generation();
        match next_max_poll_check(&shared, interval_ms) {
            Some(at) => tokio::time::sleep_until(at).await,
            // Not assigned (or already left): wait for a change.
            None => shared.signal.changed_since(seen).await,
        }
        if let Some(exceeded_by_ms) = max_poll_exceeded_by(&shared, interval_ms) {
            leave_for_max_poll(&shared, interval_ms, exceeded_by_ms).await;
        }
    }
}

/// When the check timer next fires at or after the earliest moment the
/// interval could be exceeded; `None` while no check is due (no
/// assignment yet, or the member already left).
fn next_max_poll_check(shared: &Shared, interval_ms: u64) -> Option<tokio::time::Instant> {
    let state = shared.state.borrow();
    let group = state.group.as_ref()?;
    let since = group.poll_check_since?;
    if group.left_for_max_poll
        || !matches!(group.phase, Phase::Stable | Phase::RevokePending { .. })
    {
        return None;
    }
    let earliest = match state.poll_clock {
        PollClock::Since(polled) => polled + ms_u64(interval_ms + 1),
        PollClock::Polling => now() + ms_u64(interval_ms),
    };
    let waited_ms = u64::try_from(earliest.saturating_duration_since(since).as_millis())
        .expect("ms fit in u64");
    let ticks = waited_ms.div_ceil(MAX_POLL_CHECK_INTERVAL_MS).max(1);
    Some(since + ms_u64(ticks * MAX_POLL_CHECK_INTERVAL_MS))
}

/// By how many ms the application exceeded `max.poll.interval.ms`, if it
/// did (librdkafka's `rd_kafka_max_poll_exceeded`: not while it waits in a
/// poll).
fn max_poll_exceeded_by(shared: &Shared, interval_ms: u64) -> Option<u64> {
    let state = shared.state.borrow();
    let group = state.group.as_ref()?;
    if group.left_for_max_poll
        || !matches!(group.phase, Phase::Stable | Phase::RevokePending { .. })
    {
        return None;
    }
    let PollClock::Since(polled) = state.poll_clock else {
        return None;
    };
    let idle_ms = u64::try_from(now().duration_since(polled).as_millis()).expect("ms fit in u64");
    idle_ms.checked_sub(interval_ms).filter(|by| *by > 0)
}

/// `rd_kafka_cgrp_max_poll_interval_check_tmr_cb` for the classic
/// protocol: the `_MAX_POLL_EXCEEDED` error is queued, heartbeats stop, the
/// member leaves the group (LeaveGroup; a static member would not, and the
/// simulated consumer has none), forgets its member id and loses its
/// partitions (`rd_kafka_cgrp_revoke_all_rejoin_maybe` with `lost`).
async fn leave_for_max_poll(shared: &Shared, interval_ms: u64, exceeded_by_ms: u64) {
    let membership = {
        let mut state = shared.state.borrow_mut();
        state
            .events
            .retain(|event| !matches!(event, ConsumerEvent::Revoked(_)));
        for partition in state.partitions.values_mut() {
            partition.buffered.clear();
            partition.buffer_end = None;
        }
        let owned = state.owned();
        let error = TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::MaxPollExceeded,
            format!(
                "application maximum poll interval ({interval_ms}ms) exceeded by {exceeded_by_ms}ms: the member left its group"
            ),
        );
        state.poll_error = Some((state.events.len(), error));
        let group = state.group.as_mut().expect("group member");
        let membership = (
            group.group_id.clone(),
            group.member_id.clone(),
            group.coordinator.clone(),
        );
        group.left_for_max_poll = true;
        group.poll_check_since = None;
        if owned.is_empty() {
            group.phase = Phase::Joining;
            group.generation_id = -1;
            group.member_id.clear();
        } else {
            // As after a lost session: the stale generation stays visible
            // until `Lost` is handed out, and commits with it are refused.
            group.phase = Phase::LostPending;
            state.events.push_back(ConsumerEvent::Lost(owned));
        }
        membership
    };
    shared.signal.raise();
    // Best effort, as librdkafka's `rd_kafka_cgrp_leave`: without an answer
    // the session expires at the coordinator.
    let _ = send_leave(shared, membership).await;
}

fn ms_u64(value: u64) -> std::time::Duration {
    std::time::Duration::from_millis(value)
}
