//! The simulated cluster's consumer: manual assignment or group membership
//! (see [`group`]), fetching from partition leaders in the background while
//! the application processes, read_committed filtering
//! ([`crate::client::fetch_filter`]), positions from committed offsets or
//! the reset policy, and explicit offset commits.
//!
//! `poll` starts fetches for partitions whose buffer is empty (one fetch in
//! flight per broker, as the Java consumer does), starts position lookups,
//! and hands out what is ready: group events first, then messages in
//! offset order per partition.

mod group;
mod state;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, ErrorCode, ErrorKind, GroupMetadata, Isolation,
    OffsetAndMetadata, OffsetReset, TopicPartition, TransportError, TransportResult,
};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use self::state::{GroupState, Mode, Phase, PollClock, State};
use super::errors::{self, OFFSET_OUT_OF_RANGE};
use super::fetch_filter::filter_fetch_owned;
use super::metadata::Leader;
use super::network::{Attempt, Backoff, Coordinator, Lane, NetworkClient, deadline_error};
use super::signal::Signal;
use super::{ms, now};
use crate::protocol::{
    BrokerId, FetchPartition, FetchRequest, FetchResponse, FetchResult, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, OffsetFetchResult, OffsetSpec, answer_for,
};

pub(crate) struct Shared {
    net: NetworkClient,
    config: ConsumerConfig,
    state: RefCell<State>,
    /// Raised on every change `poll` or the group task waits for.
    signal: Signal,
}

/// The simulated cluster's consumer.
pub struct SimConsumer {
    shared: Rc<Shared>,
    group_task: Option<JoinHandle<()>>,
    /// Enforces `max.poll.interval.ms` while subscribed.
    poll_watch: Option<JoinHandle<()>>,
    tasks: JoinSet<()>,
}

/// Marks a running `poll` for `max.poll.interval.ms`: the interval is not
/// enforced while the application waits in `poll`, and counts again from
/// when it returns (also when the poll future is dropped).
struct PollClockGuard {
    shared: Rc<Shared>,
}

impl PollClockGuard {
    fn start(shared: &Rc<Shared>) -> Self {
        shared.state.borrow_mut().poll_clock = PollClock::Polling;
        Self {
            shared: Rc::clone(shared),
        }
    }
}

impl Drop for PollClockGuard {
    fn drop(&mut self) {
        self.shared.state.borrow_mut().poll_clock = PollClock::Since(now());
    }
}

impl SimConsumer {
    pub(crate) fn new(net: NetworkClient, config: ConsumerConfig) -> Self {
        Self {
            shared: Rc::new(Shared {
                net,
                config,
                state: RefCell::new(State::new()),
                signal: Signal::default(),
            }),
            group_task: None,
            poll_watch: None,
            tasks: JoinSet::new(),
        }
    }

    fn group_id(&self, call: &str) -> TransportResult<String> {
        self.shared.config.group_id.clone().ok_or_else(|| {
            errors::invalid_state(format!("{call} needs a consumer with a group id"))
        })
    }

    fn request_deadline(&self) -> Instant {
        now() + ms(self.shared.config.request_timeout_ms)
    }

    /// Starts what the owned partitions need: metadata for unknown leaders,
    /// position lookups, fetches.
    fn maintain(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        let shared = &self.shared;
        let now_instant = now();
        // The leader of each owned partition, in partition order (nothing
        // below changes the metadata or the set of owned partitions).
        let leaders: Vec<Option<Leader>> = {
            let state = shared.state.borrow();
            let metadata = shared.net.metadata();
            state
                .partitions
                .keys()
                .map(|partition| metadata.leader(partition))
                .collect()
        };
        // Metadata for partitions without a known leader.
        let missing: Vec<String> = {
            let state = shared.state.borrow();
            let topics: BTreeSet<String> = state
                .partitions
                .keys()
                .zip(&leaders)
                .filter(|(_, leader)| leader.is_none())
                .map(|(partition, _)| partition.topic.clone())
                .collect();
            topics.into_iter().collect()
        };
        {
            let mut state = shared.state.borrow_mut();
            let allowed = state.metadata_not_before.is_none_or(|at| at <= now_instant);
            if !missing.is_empty() && !state.metadata_in_flight && allowed {
                state.metadata_in_flight = true;
                drop(state);
                self.tasks
                    .spawn_local(refresh_metadata(Rc::clone(shared), missing));
            }
        }
        // Position lookups.
        let to_resolve: Vec<(TopicPartition, u64, bool)> = {
            let mut state = shared.state.borrow_mut();
            let allowed = state.resolve_not_before.is_none_or(|at| at <= now_instant);
            if allowed {
                state
                    .partitions
                    .iter_mut()
                    .filter(|(_, partition)| partition.position.is_none() && !partition.resolving)
                    .map(|(tp, partition)| {
                        partition.resolving = true;
                        (tp.clone(), partition.epoch, partition.reset_only)
                    })
                    .collect()
            } else {
                Vec::new()
            }
        };
        if !to_resolve.is_empty() {
            self.tasks
                .spawn_local(resolve_positions(Rc::clone(shared), to_resolve));
        }
        // Fetches, one per broker.
        let mut by_broker: BTreeMap<BrokerId, Vec<PlannedFetch>> = BTreeMap::new();
        let max_records = shared.net.options().fetch_max_records;
        {
            let mut state = shared.state.borrow_mut();
            if !state.messages_allowed() {
                return;
            }
            let state = &mut *state;
            let busy = &state.fetch_brokers;
            for ((partition, owned), leader) in state.partitions.iter_mut().zip(&leaders) {
                if !owned.fetchable() {
                    continue;
                }
                let Some(leader) = leader else {
                    continue;
                };
                if busy.contains(&leader.broker) {
                    continue;
                }
                owned.fetch_in_flight = true;
                owned.leader_epoch = Some(leader.leader_epoch);
                by_broker
                    .entry(leader.broker)
                    .or_default()
                    .push(PlannedFetch {
                        partition: partition.clone(),
                        fetch_offset: owned.position.expect("fetchable"),
                        leader_epoch: leader.leader_epoch,
                        epoch: owned.epoch,
                    });
            }
            state.fetch_brokers.extend(by_broker.keys().copied());
        }
        for (broker, planned) in by_broker {
            self.tasks
                .spawn_local(fetch(Rc::clone(shared), broker, planned, max_records));
        }
    }

    /// Completes a revoke whose event was handed out by an earlier poll.
    fn complete_revoke(&self) {
        let mut state = self.shared.state.borrow_mut();
        let done = matches!(
            state.group.as_ref().map(|group| &group.phase),
            Some(Phase::RevokePending { delivered: true })
        );
        if done {
            state.partitions.clear();
            state.group.as_mut().expect("group").phase = Phase::Joining;
            drop(state);
            self.shared.signal.raise();
        }
    }

    fn generation_for_commit(&self) -> TransportResult<(i32, String)> {
        let state = self.shared.state.borrow();
        match (&state.mode, state.group.as_ref()) {
            (Mode::Group, Some(group)) => match group.phase {
                Phase::Stable | Phase::RevokePending { .. } | Phase::LostPending
                    if group.generation_id >= 0 =>
                {
                    Ok((group.generation_id, group.member_id.clone()))
                }
                _ => Err(TransportError::new(
                    ErrorKind::Retriable,
                    ErrorCode::RebalanceInProgress,
                    "commit while the member is (re)joining its group",
                )),
            },
            _ => Ok((-1, String::new())),
        }
    }
}

impl Drop for SimConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.group_task.take() {
            task.abort();
        }
        if let Some(task) = self.poll_watch.take() {
            task.abort();
        }
        self.tasks.abort_all();
        self.shared.net.close_all();
    }
}

async fn refresh_metadata(shared: Rc<Shared>, topics: Vec<String>) {
    let _ = shared.net.refresh_metadata(&topics).await;
    {
        let mut state = shared.state.borrow_mut();
        state.metadata_in_flight = false;
        state.metadata_not_before = Some(now() + ms(shared.net.options().retry_backoff_ms));
    }
    shared.signal.raise();
}

/// Marks partitions whose leader answered with a leadership error (or not
/// at all) for a metadata refresh.
fn leader_stale(shared: &Shared, partition: &TopicPartition) {
    shared.net.invalidate_leader(partition);
    shared.state.borrow_mut().metadata_not_before = None;
}

/// A partition to fetch: where from, in which leader epoch, and the
/// partition's epoch in the consumer (a changed one makes the answer stale).
struct PlannedFetch {
    partition: TopicPartition,
    fetch_offset: i64,
    leader_epoch: i32,
    epoch: u64,
}

async fn fetch(shared: Rc<Shared>, broker: BrokerId, planned: Vec<PlannedFetch>, max_records: u32) {
    let options = shared.net.options().clone();
    let isolation = shared.config.isolation;
    let request = FetchRequest {
        replica_id: None,
        isolation,
        max_wait_ms: options.fetch_max_wait_ms,
        partitions: planned
            .iter()
            .map(|planned| FetchPartition {
                topic: planned.partition.topic.clone(),
                partition: planned.partition.partition,
                fetch_offset: planned.fetch_offset,
                current_leader_epoch: Some(planned.leader_epoch),
                max_records,
            })
            .collect(),
    };
    let timeout = ms(shared.config.request_timeout_ms) + ms(options.fetch_max_wait_ms);
    let result = shared
        .net
        .call_broker(broker, Lane::Fetch, request, timeout)
        .await;
    let mut stale = Vec::new();
    {
        let mut state = shared.state.borrow_mut();
        state.fetch_brokers.remove(&broker);
        // Each answer is taken (moved into messages) when its partition
        // is handled.
        let mut results: Option<Vec<Option<FetchResult>>> = match result {
            Ok(FetchResponse {
                error: None,
                partitions,
            }) => Some(partitions.into_iter().map(Some).collect()),
            Ok(FetchResponse { error: Some(_), .. }) | Err(_) => None,
        };
        for requested in planned {
            let tp = requested.partition;
            let Some(owned) = state.partitions.get_mut(&tp) else {
                continue;
            };
            if owned.epoch != requested.epoch {
                // Seeked or reassigned meanwhile: the answer is stale.
                owned.fetch_in_flight = false;
                continue;
            }
            owned.fetch_in_flight = false;
            if owned.position != Some(requested.fetch_offset) {
                continue;
            }
            let Some(results) = &mut results else {
                stale.push(tp);
                continue;
            };
            let Some(answer) = results
                .iter_mut()
                .find(|r| {
                    r.as_ref()
                        .is_some_and(|r| r.topic == tp.topic && r.partition == tp.partition)
                })
                .and_then(Option::take)
            else {
                panic!("Fetch answer from broker {broker} without {tp}");
            };
            match answer.error {
                None => {
                    let filtered = filter_fetch_owned(requested.fetch_offset, isolation, answer);
                    if filtered.messages.is_empty() {
                        owned.position =
                            Some(requested.fetch_offset.max(filtered.next_fetch_offset));
                    } else {
                        owned.buffered = filtered.messages.into();
                        owned.buffer_end = Some(filtered.next_fetch_offset);
                    }
                }
                Some(ErrorCode::Other(OFFSET_OUT_OF_RANGE)) => {
                    owned.position = None;
                    owned.reset_only = true;
                }
                Some(_) => stale.push(tp),
            }
        }
    }
    for partition in &stale {
        leader_stale(&shared, partition);
    }
    shared.signal.raise();
}

/// Looks up positions: the committed offset (if the consumer has a group
/// and the partition is not being reset), else the reset policy.
async fn resolve_positions(shared: Rc<Shared>, partitions: Vec<(TopicPartition, u64, bool)>) {
    let deadline = now() + ms(shared.config.request_timeout_ms);
    let mut resolved: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut need_reset: Vec<TopicPartition> = Vec::new();
    let committed_wanted: Vec<TopicPartition> = partitions
        .iter()
        .filter(|(_, _, reset_only)| !reset_only)
        .map(|(tp, _, _)| tp.clone())
        .collect();
    need_reset.extend(
        partitions
            .iter()
            .filter(|(_, _, reset_only)| *reset_only)
            .map(|(tp, _, _)| tp.clone()),
    );
    let mut failed = false;
    match (&shared.config.group_id, committed_wanted.is_empty()) {
        (_, true) => {}
        (None, false) => need_reset.extend(committed_wanted),
        (Some(group_id), false) => {
            match fetch_committed(&shared, group_id, &committed_wanted, deadline).await {
                Ok(committed) => {
                    for (tp, offset) in committed_wanted.into_iter().zip(committed) {
                        match offset {
                            Some(offset) if offset.offset >= 0 => {
                                resolved.insert(tp, offset.offset);
                            }
                            _ => need_reset.push(tp),
                        }
                    }
                }
                Err(_) => failed = true,
            }
        }
    }
    if !need_reset.is_empty() {
        let spec = match shared.config.offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
        };
        match list_offsets(&shared, &need_reset, spec, deadline).await {
            Ok(offsets) => resolved.extend(offsets),
            Err(_) => failed = true,
        }
    }
    {
        let mut state = shared.state.borrow_mut();
        for (tp, epoch, _) in &partitions {
            let Some(owned) = state.partitions.get_mut(tp) else {
                continue;
            };
            if owned.epoch != *epoch {
                continue;
            }
            owned.resolving = false;
            if owned.position.is_none() {
                if let Some(offset) = resolved.get(tp) {
                    owned.position = Some(*offset);
                    owned.reset_only = false;
                }
            }
        }
        if failed {
            state.resolve_not_before = Some(now() + ms(shared.net.options().retry_backoff_ms));
        }
    }
    shared.signal.raise();
}

/// OffsetFetch from the group coordinator, with `require_stable` under
/// read_committed; retries UNSTABLE_OFFSET_COMMIT and coordinator errors
/// until `deadline`.
async fn fetch_committed(
    shared: &Shared,
    group_id: &str,
    partitions: &[TopicPartition],
    deadline: Instant,
) -> TransportResult<Vec<Option<OffsetAndMetadata>>> {
    let require_stable = shared.config.isolation == Isolation::ReadCommitted;
    let context = format!("OffsetFetch({group_id})");
    let coordinator = Coordinator::group(group_id);
    shared
        .net
        .coordinator_call(
            &coordinator,
            &context,
            deadline,
            ms(shared.config.request_timeout_ms),
            || OffsetFetchRequest {
                group_id: group_id.to_string(),
                partitions: partitions.to_vec(),
                require_stable,
            },
            |OffsetFetchResponse { error, offsets }| {
                let mut first_error = error;
                let mut answers = Vec::with_capacity(partitions.len());
                if first_error.is_none() {
                    for partition in partitions {
                        let OffsetFetchResult { offset, error, .. } =
                            answer_for("OffsetFetch", &offsets, partition);
                        if let Some(code) = error {
                            first_error.get_or_insert(*code);
                        }
                        answers.push(offset.clone().filter(|offset| offset.offset >= 0));
                    }
                }
                match first_error {
                    None => Attempt::Done(answers),
                    Some(code) => Attempt::of_error(code, &context, |code| {
                        Attempt::Fail(errors::broker_error(code, &context))
                    }),
                }
            },
        )
        .await
}

/// ListOffsets for partitions with one spec, to their leaders; retries
/// leadership errors until `deadline`.
async fn list_offsets(
    shared: &Shared,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
    deadline: Instant,
) -> TransportResult<BTreeMap<TopicPartition, i64>> {
    let mut found = BTreeMap::new();
    let mut remaining: Vec<TopicPartition> = partitions.to_vec();
    let mut backoff = Backoff::new(shared.net.options());
    loop {
        let topics: Vec<String> = remaining
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let unknown = {
            let metadata = shared.net.metadata();
            remaining.iter().any(|tp| metadata.leader(tp).is_none())
        };
        if unknown {
            let _ = shared.net.refresh_metadata(&topics).await;
        }
        let mut last_error = None;
        let by_leader = group_by_leader(shared, &remaining, &mut last_error);
        let mut retry = Vec::new();
        for (broker, tps) in by_leader {
            let answer = list_offsets_at(shared, broker, tps, spec, deadline, &mut found).await?;
            if let Some((error, tps)) = answer {
                last_error = Some(error);
                retry.extend(tps);
            }
        }
        retry.extend(
            remaining
                .iter()
                .filter(|tp| !found.contains_key(*tp) && !retry.contains(*tp))
                .cloned()
                .collect::<Vec<_>>(),
        );
        remaining = retry;
        if remaining.is_empty() {
            return Ok(found);
        }
        if now() >= deadline {
            return Err(deadline_error(last_error.unwrap_or_else(|| {
                errors::timed_out("ListOffsets did not complete in time")
            })));
        }
        backoff.sleep_until_at_most(deadline).await;
    }
}

/// The partitions by their leader in the metadata; a partition without
/// one leaves its error in `last_error`.
fn group_by_leader(
    shared: &Shared,
    partitions: &[TopicPartition],
    last_error: &mut Option<TransportError>,
) -> BTreeMap<BrokerId, Vec<TopicPartition>> {
    let mut by_leader: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
    {
        let metadata = shared.net.metadata();
        for tp in partitions {
            match metadata.leader(tp) {
                Some(leader) => by_leader.entry(leader.broker).or_default().push(tp.clone()),
                None => {
                    *last_error = Some(errors::broker_error(
                        match metadata.topic(&tp.topic) {
                            Some(super::metadata::TopicState::Error(code)) => *code,
                            _ => ErrorCode::Other(errors::LEADER_NOT_AVAILABLE),
                        },
                        format!("ListOffsets({tp})"),
                    ));
                }
            }
        }
    }
    by_leader
}

/// One ListOffsets to `broker` for `tps`: the offsets found go into
/// `found`; answers the partitions to retry with the last error, if any.
async fn list_offsets_at(
    shared: &Shared,
    broker: BrokerId,
    tps: Vec<TopicPartition>,
    spec: OffsetSpec,
    deadline: Instant,
    found: &mut BTreeMap<TopicPartition, i64>,
) -> TransportResult<Option<(TransportError, Vec<TopicPartition>)>> {
    let mut last_error = None;
    let mut retry = Vec::new();
    let request = ListOffsetsRequest {
        isolation: shared.config.isolation,
        partitions: tps
            .iter()
            .map(|tp| ListOffsetsPartition {
                topic_partition: tp.clone(),
                spec,
            })
            .collect(),
    };
    let timeout = shared
        .net
        .attempt_timeout(deadline, ms(shared.config.request_timeout_ms));
    match shared
        .net
        .call_broker(broker, Lane::Control, request, timeout)
        .await
    {
        Ok(ListOffsetsResponse { results }) => {
            for tp in tps {
                let answer = &answer_for("ListOffsets", &results, &tp).offset;
                match answer {
                    Ok(offset) => {
                        found.insert(tp, *offset);
                    }
                    Err(code) if errors::is_retriable(*code) => {
                        leader_stale(shared, &tp);
                        last_error =
                            Some(errors::broker_error(*code, format!("ListOffsets({tp})")));
                        retry.push(tp);
                    }
                    Err(code) => {
                        return Err(errors::broker_error(*code, format!("ListOffsets({tp})")));
                    }
                }
            }
        }
        Err(error) => {
            for tp in &tps {
                leader_stale(shared, tp);
            }
            last_error = Some(errors::from_net(&error, "ListOffsets"));
            retry.extend(tps);
        }
    }
    Ok(last_error.map(|error| (error, retry)))
}

/// The error that ends a commit whose partition got `code` (not retriable).
fn commit_refused(context: &str, generation_id: i32, code: ErrorCode) -> TransportError {
    match code {
        // The member is no longer part of that generation: it was replaced
        // (KIP-447 wording).
        ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId | ErrorCode::FencedInstanceId => {
            TransportError::new(
                ErrorKind::Fenced,
                code,
                format!("{context}: generation {generation_id} rejected: {code:?}"),
            )
        }
        ErrorCode::RebalanceInProgress => TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::RebalanceInProgress,
            format!("{context}: the group is rebalancing"),
        ),
        code => errors::broker_error(code, context),
    }
}

impl Consumer for SimConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> TransportResult<()> {
        let group_id = self.group_id("subscribe")?;
        if topics.is_empty() || topics.iter().any(String::is_empty) {
            return Err(errors::invalid_state("subscribe needs topic names"));
        }
        let mut subscription = topics.to_vec();
        subscription.sort();
        subscription.dedup();
        {
            let mut state = self.shared.state.borrow_mut();
            match state.mode {
                Mode::Manual => {
                    return Err(errors::invalid_state(
                        "subscribe on a consumer that used assign",
                    ));
                }
                Mode::Group => {
                    let owned = state.owned();
                    let group = state.group.as_mut().expect("group mode has a group");
                    if group.subscription == subscription {
                        return Ok(());
                    }
                    group.subscription = subscription;
                    // A new subscription means a rebalance (eager revoke).
                    if group.phase == Phase::Stable {
                        state.begin_rebalance(owned);
                    }
                }
                Mode::Idle => {
                    state.mode = Mode::Group;
                    state.group = Some(GroupState::new(group_id, subscription, now()));
                }
            }
        }
        if self.group_task.is_none() {
            self.group_task = Some(tokio::task::spawn_local(group::run(Rc::clone(
                &self.shared,
            ))));
            self.poll_watch = Some(tokio::task::spawn_local(group::watch_max_poll(Rc::clone(
                &self.shared,
            ))));
        }
        self.shared.signal.raise();
        Ok(())
    }

    async fn assign(&mut self, partitions: &[TopicPartition]) -> TransportResult<()> {
        if partitions
            .iter()
            .any(|tp| tp.partition < 0 || tp.topic.is_empty())
        {
            return Err(errors::invalid_state("assign needs valid topic partitions"));
        }
        let mut wanted = partitions.to_vec();
        wanted.sort();
        wanted.dedup();
        {
            let mut state = self.shared.state.borrow_mut();
            if state.mode == Mode::Group {
                return Err(errors::invalid_state(
                    "assign on a consumer that used subscribe",
                ));
            }
            state.mode = Mode::Manual;
            state.set_partitions(&wanted);
        }
        self.shared.signal.raise();
        Ok(())
    }

    async fn poll(
        &mut self,
        max_events: usize,
        timeout: Duration,
    ) -> TransportResult<Vec<ConsumerEvent>> {
        if let Some(fatal) = self.shared.state.borrow().fatal.clone() {
            return Err(fatal);
        }
        let _polling = PollClockGuard::start(&self.shared);
        self.complete_revoke();
        if max_events == 0 {
            return Ok(Vec::new());
        }
        let deadline = now() + timeout;
        loop {
            let seen = self.shared.signal.generation();
            self.maintain();
            let error = self.shared.state.borrow_mut().take_poll_error();
            if let Some(error) = error {
                // The member may rejoin now that the application polled.
                self.shared.signal.raise();
                return Err(error);
            }
            let events = self.shared.state.borrow_mut().take_events(max_events);
            if !events.is_empty() {
                // Handing out `Lost` moves the member on: wake the group task.
                self.shared.signal.raise();
                return Ok(events);
            }
            if let Some(fatal) = self.shared.state.borrow().fatal.clone() {
                return Err(fatal);
            }
            if now() >= deadline {
                return Ok(Vec::new());
            }
            self.shared.signal.changed_since_or(seen, deadline).await;
        }
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> TransportResult<()> {
        if offset < 0 {
            return Err(errors::invalid_state(format!(
                "seek of {partition} to negative offset {offset}"
            )));
        }
        {
            let mut state = self.shared.state.borrow_mut();
            let epoch = state.next_epoch;
            state.next_epoch += 1;
            let Some(owned) = state.partitions.get_mut(partition) else {
                return Err(errors::invalid_state(format!(
                    "seek of {partition}, which this consumer does not own"
                )));
            };
            owned.position = Some(offset);
            owned.reset_only = false;
            owned.epoch = epoch;
            owned.buffered.clear();
            owned.buffer_end = None;
            owned.resolving = false;
        }
        self.shared.signal.raise();
        Ok(())
    }

    async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> TransportResult<Vec<Option<OffsetAndMetadata>>> {
        let group_id = self.group_id("committed")?;
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        fetch_committed(&self.shared, &group_id, partitions, self.request_deadline()).await
    }

    async fn commit(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> TransportResult<()> {
        let group_id = self.group_id("commit")?;
        if offsets.is_empty() {
            return Ok(());
        }
        let (generation_id, member_id) = self.generation_for_commit()?;
        let deadline = self.request_deadline();
        let context = format!("OffsetCommit({group_id})");
        self.shared
            .net
            .commit_offsets_call(
                &group_id,
                &context,
                deadline,
                ms(self.shared.config.request_timeout_ms),
                offsets.to_vec(),
                |offsets| OffsetCommitRequest {
                    group_id: group_id.clone(),
                    generation_id,
                    member_id: member_id.clone(),
                    offsets,
                },
                |OffsetCommitResponse { results }| results,
                |code| commit_refused(&context, generation_id, code),
            )
            .await
    }

    /// The next offset to hand out. A drained fetch moves it to where the
    /// fetch ended, past control batches and aborted records, as the Java
    /// consumer's `FetchCollector.fetchRecords` moves the subscription's
    /// position to the completed fetch's `nextFetchOffset`.
    fn position(&self, partition: &TopicPartition) -> TransportResult<Option<i64>> {
        let state = self.shared.state.borrow();
        Ok(state
            .partitions
            .get(partition)
            .and_then(|owned| owned.position))
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let group_id = self.shared.config.group_id.clone()?;
        let state = self.shared.state.borrow();
        match (&state.mode, state.group.as_ref()) {
            (Mode::Group, Some(group)) if group.assigned_once => Some(GroupMetadata {
                group_id,
                generation_id: group.generation_id,
                member_id: group.member_id.clone(),
                group_instance_id: None,
            }),
            // Manual assignment with a group id: offsets are committed
            // without a generation, as Kafka's clients do.
            (Mode::Manual, _) => Some(GroupMetadata {
                group_id,
                generation_id: -1,
                member_id: String::new(),
                group_instance_id: None,
            }),
            _ => None,
        }
    }

    async fn offsets_range(&mut self, partition: &TopicPartition) -> TransportResult<(i64, i64)> {
        let deadline = self.request_deadline();
        let parts = std::slice::from_ref(partition);
        let earliest = list_offsets(&self.shared, parts, OffsetSpec::Earliest, deadline).await?;
        let latest = list_offsets(&self.shared, parts, OffsetSpec::Latest, deadline).await?;
        Ok((earliest[partition], latest[partition]))
    }

    /// Leaves the group, as both Kafka clients do on close: best effort.
    /// A LeaveGroup that gets no answer (coordinator unreachable) is not an
    /// error — the session then expires at the broker; only a refusal that
    /// says the client is misconfigured is returned.
    async fn close(mut self) -> TransportResult<()> {
        if let Some(task) = self.group_task.take() {
            task.abort();
        }
        if let Some(task) = self.poll_watch.take() {
            task.abort();
        }
        self.tasks.abort_all();
        let result = group::leave(&self.shared).await;
        self.shared.net.close_all();
        match result {
            Err(error) if error.kind == ErrorKind::Fatal => Err(error),
            _ => Ok(()),
        }
    }
}
