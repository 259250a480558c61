//! Consumer groups: eager rebalances (revoke before assign), where new
//! owners start, leaving, and KIP-447 generation fencing of transactional
//! offset commits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use eddyline_engine::transport::{
    Consumer, ConsumerEvent, GroupMetadata, Isolation, Message, OffsetAndMetadata, Producer,
    ProducerRecord, TopicPartition, TransportError,
};

use super::support::{
    ConsumerOf, OrFail, POLL, POLL_MAX_EVENTS, SETTLE, TransactionSteps, at, committed_offsets,
    describe, ensure, fail, record, record_to, send_all, transaction_with_offsets, verdict,
};
use super::{ConformanceEnv, Cx, Failure};

/// Heartbeats often enough that a rebalance is noticed quickly on a real
/// broker too (the broker's minimum session timeout is 6 s).
const HEARTBEAT_INTERVAL_MS: u32 = 300;
const SESSION_TIMEOUT_MS: u32 = 10_000;

/// One member's group event, as the ownership model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GroupStep {
    Assigned(BTreeSet<i32>),
    Revoked(BTreeSet<i32>),
    Lost(BTreeSet<i32>),
    /// The member polled again after a revoke, or closed: from here on it
    /// no longer owns what it revoked.
    Released,
}

/// A group member under test: its consumer and what it has seen.
pub(super) struct Member<C> {
    pub(super) label: &'static str,
    consumer: Option<C>,
    pub(super) owned: BTreeSet<i32>,
    pub(super) revoke_pending: bool,
    /// How many assignments it has seen; messages are tagged with it.
    pub(super) assignments: usize,
    pub(super) messages: Vec<(usize, Message)>,
}

impl<C: Consumer> Member<C> {
    fn new(label: &'static str, consumer: C) -> Self {
        Self {
            label,
            consumer: Some(consumer),
            owned: BTreeSet::new(),
            revoke_pending: false,
            assignments: 0,
            messages: Vec::new(),
        }
    }

    /// Offsets this member read per partition under its current assignment.
    pub(super) fn current_offsets(&self) -> BTreeMap<i32, Vec<i64>> {
        let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (assignment, message) in &self.messages {
            if *assignment == self.assignments {
                offsets
                    .entry(message.partition)
                    .or_default()
                    .push(message.offset);
            }
        }
        offsets
    }

    /// Has read up to `last_offset` in every partition it owns now.
    pub(super) fn caught_up(&self, last_offset: i64) -> bool {
        let offsets = self.current_offsets();
        self.owned
            .iter()
            .all(|p| offsets.get(p).is_some_and(|o| o.contains(&last_offset)))
    }

    /// The member's consumer; it must not have left.
    pub(super) fn open_consumer(&mut self) -> &mut C {
        let label = self.label;
        self.consumer
            .as_mut()
            .unwrap_or_else(|| panic!("the {label} member is open"))
    }

    /// The member's group metadata, which it has once it owns partitions.
    pub(super) fn metadata(&self) -> Result<GroupMetadata, Failure> {
        let consumer = self.consumer.as_ref();
        let Some(metadata) = consumer.expect("the member is open").group_metadata() else {
            fail!("group_metadata() was None for a member that owns partitions");
        };
        Ok(metadata)
    }

    fn close_now(&mut self, steps: &mut Vec<(usize, GroupStep)>, index: usize) -> Option<C> {
        steps.push((index, GroupStep::Released));
        self.owned.clear();
        self.revoke_pending = false;
        self.consumer.take()
    }
}

fn partitions_of(topic: &str, tps: &[TopicPartition]) -> Result<BTreeSet<i32>, Failure> {
    let mut set = BTreeSet::new();
    for tp in tps {
        ensure!(
            tp.topic == topic,
            "assigned a partition of another topic: {tp}"
        );
        set.insert(tp.partition);
    }
    Ok(set)
}

/// Polls one member once, recording its events in the shared timeline.
async fn poll_member<C: Consumer>(
    topic: &str,
    index: usize,
    member: &mut Member<C>,
    steps: &mut Vec<(usize, GroupStep)>,
) -> Result<(), Failure> {
    let Some(consumer) = member.consumer.as_mut() else {
        return Ok(());
    };
    if member.revoke_pending {
        steps.push((index, GroupStep::Released));
        member.owned.clear();
        member.revoke_pending = false;
    }
    let events = consumer
        .poll(POLL_MAX_EVENTS, POLL)
        .await
        .or_fail(&format!("polling {}", member.label))?;
    for event in events {
        match event {
            ConsumerEvent::Assigned(tps) => {
                let set = partitions_of(topic, &tps)?;
                steps.push((index, GroupStep::Assigned(set.clone())));
                member.owned = set;
                member.assignments += 1;
            }
            ConsumerEvent::Revoked(tps) => {
                let set = partitions_of(topic, &tps)?;
                steps.push((index, GroupStep::Revoked(set)));
                member.revoke_pending = true;
            }
            ConsumerEvent::Lost(tps) => {
                let set = partitions_of(topic, &tps)?;
                for p in &set {
                    member.owned.remove(p);
                }
                steps.push((index, GroupStep::Lost(set)));
            }
            ConsumerEvent::Message(message) => {
                member.messages.push((member.assignments, message));
            }
        }
    }
    Ok(())
}

/// A group under test: its topic, its members in the order they joined, and
/// one timeline of all their group events.
pub(super) struct Group<C> {
    name: String,
    pub(super) topic: String,
    /// Every partition of the topic.
    all: BTreeSet<i32>,
    pub(super) members: Vec<Member<C>>,
    steps: Vec<(usize, GroupStep)>,
}

impl<C: Consumer> Group<C> {
    /// A group with a fresh name, no members yet, on `topic` of
    /// `partitions` partitions.
    pub(super) fn new<E: ConformanceEnv>(cx: &Cx<'_, E>, topic: String, partitions: i32) -> Self {
        Self {
            name: cx.name("group"),
            topic,
            all: (0..partitions).collect(),
            members: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The members' labels, in the order they joined (their timeline index).
    fn labels(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.label).collect()
    }

    pub(super) fn timeline(&self) -> String {
        render_timeline(&self.labels(), &self.steps)
    }

    /// Every open member owns something and has no revoke pending, and
    /// together they own every partition exactly once.
    pub(super) fn stable(&self) -> bool {
        let mut union = BTreeSet::new();
        let mut total = 0;
        for m in self.members.iter().filter(|m| m.consumer.is_some()) {
            if m.revoke_pending || m.owned.is_empty() {
                return false;
            }
            total += m.owned.len();
            union.extend(m.owned.iter().copied());
        }
        union == self.all && total == self.all.len()
    }

    /// The eager protocol's promises held over the whole timeline.
    pub(super) fn verify_ownership(&self) -> Result<(), Failure> {
        verdict(verify_exclusive_ownership(&self.labels(), &self.steps))
    }

    /// Polls every member once, in join order.
    async fn poll_all(&mut self) -> Result<(), Failure> {
        for (index, member) in self.members.iter_mut().enumerate() {
            poll_member(&self.topic, index, member, &mut self.steps).await?;
        }
        Ok(())
    }

    /// Takes member `index`'s consumer out of the group's hands (it owns
    /// nothing from here on); the caller closes it.
    fn leave(&mut self, index: usize) -> Option<C> {
        self.members[index].close_now(&mut self.steps, index)
    }

    /// Closes every member that is still open, in join order.
    pub(super) async fn close(mut self) -> Result<(), Failure> {
        for m in &mut self.members {
            if let Some(consumer) = m.consumer.take() {
                consumer.close().await.or_fail("closing")?;
            }
        }
        Ok(())
    }
}

/// Polls every member in turn until `done` holds (then for [`SETTLE`] more),
/// or fails when the env's patience runs out.
pub(super) async fn drive<E: ConformanceEnv>(
    cx: &Cx<'_, E>,
    group: &mut Group<ConsumerOf<E>>,
    what: &str,
    done: impl Fn(&Group<ConsumerOf<E>>) -> bool,
) -> Result<(), Failure> {
    drive_until(cx, group, what, done).await?;
    let settle_until = cx.env.elapsed() + SETTLE;
    while cx.env.elapsed() < settle_until {
        group.poll_all().await?;
    }
    Ok(())
}

/// Polls every member in turn until `done` holds, and not once more (a
/// member told to revoke still owns its partitions then), or fails when
/// the env's patience runs out.
pub(super) async fn drive_until<E: ConformanceEnv>(
    cx: &Cx<'_, E>,
    group: &mut Group<ConsumerOf<E>>,
    what: &str,
    done: impl Fn(&Group<ConsumerOf<E>>) -> bool,
) -> Result<(), Failure> {
    let deadline = cx.deadline();
    while !done(group) {
        if cx.env.elapsed() >= deadline {
            fail!(
                "waited {} ms for {what}; timeline: {}",
                cx.env.patience().as_millis(),
                group.timeline()
            );
        }
        group.poll_all().await?;
    }
    Ok(())
}

/// `first: +[0,1] -[0,1] release; second: +[2]` — the timeline as text.
pub(crate) fn render_timeline(labels: &[&str], steps: &[(usize, GroupStep)]) -> String {
    let mut out = String::new();
    for (index, step) in steps {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let label = labels.get(*index).copied().unwrap_or("?");
        let _ = match step {
            GroupStep::Assigned(ps) => write!(out, "{label} assigned {ps:?}"),
            GroupStep::Revoked(ps) => write!(out, "{label} revoked {ps:?}"),
            GroupStep::Lost(ps) => write!(out, "{label} lost {ps:?}"),
            GroupStep::Released => write!(out, "{label} released"),
        };
    }
    out
}

/// The eager protocol's promises, over one timeline of all members: a member
/// is assigned only when it owns nothing (it revoked, and released, all it
/// had); a revoke names everything the member owns; and no partition is
/// ever owned by two members at once (a revoked partition stays owned until
/// the member's next poll).
pub(crate) fn verify_exclusive_ownership(
    labels: &[&str],
    steps: &[(usize, GroupStep)],
) -> Result<(), String> {
    let mut owned: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); labels.len()];
    let mut revoked: Vec<bool> = vec![false; labels.len()];
    for (position, (member, step)) in steps.iter().enumerate() {
        let member = *member;
        let context = || {
            format!(
                "at step {position} ({}); timeline: {}",
                labels[member],
                render_timeline(labels, steps)
            )
        };
        match step {
            GroupStep::Assigned(partitions) => {
                if !owned[member].is_empty() {
                    return Err(format!(
                        "{} was assigned {partitions:?} while still owning {:?}: no revoke came first {}",
                        labels[member],
                        owned[member],
                        context()
                    ));
                }
                for (other, theirs) in owned.iter().enumerate() {
                    if other != member
                        && let Some(p) = partitions.intersection(theirs).next()
                    {
                        return Err(format!(
                            "{} was assigned partition {p} while {} still owned it {}",
                            labels[member],
                            labels[other],
                            context()
                        ));
                    }
                }
                owned[member] = partitions.clone();
            }
            GroupStep::Revoked(partitions) => {
                if *partitions != owned[member] {
                    return Err(format!(
                        "{} was told to revoke {partitions:?} but owned {:?} (an eager revoke names everything) {}",
                        labels[member],
                        owned[member],
                        context()
                    ));
                }
                revoked[member] = true;
            }
            GroupStep::Released => {
                owned[member].clear();
                revoked[member] = false;
            }
            GroupStep::Lost(partitions) => {
                for p in partitions {
                    owned[member].remove(p);
                }
            }
        }
    }
    Ok(())
}

/// Produces `per_partition` records to every partition of `topic`.
async fn fill<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    topic: &str,
    partitions: i32,
    per_partition: usize,
) -> Result<(), Failure> {
    let mut producer = cx.producer(None).await?;
    let records: Vec<_> = (0..partitions)
        .flat_map(|p| (0..per_partition).map(move |i| (p, i)))
        .map(|(p, i)| record(topic, Some(p), &format!("p{p}"), &format!("p{p}-{i}")))
        .collect();
    send_all(&mut producer, &records).await?;
    producer.flush().await.or_fail("flushing")?;
    Ok(())
}

/// Subscribes a new member, `label`, to the group's topic; `client_id`:
/// `None` for a fresh run-unique one.
pub(super) async fn join<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    group: &mut Group<ConsumerOf<E>>,
    label: &'static str,
    client_id: Option<&str>,
) -> Result<(), Failure> {
    let mut consumer = cx
        .consumer_with(Some(&group.name), Isolation::ReadCommitted, |config| {
            config.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
            config.session_timeout_ms = SESSION_TIMEOUT_MS;
            if let Some(client_id) = client_id {
                config.client_id = client_id.to_string();
            }
        })
        .await?;
    consumer
        .subscribe(std::slice::from_ref(&group.topic))
        .await
        .or_fail(&format!("subscribing {label}"))?;
    group.members.push(Member::new(label, consumer));
    Ok(())
}

/// Joins the group's first member and waits until it owns every partition.
async fn join_first<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    group: &mut Group<ConsumerOf<E>>,
    label: &'static str,
    client_id: Option<&str>,
) -> Result<(), Failure> {
    join(cx, group, label, client_id).await?;
    drive(cx, group, "the first member's assignment", Group::stable).await
}

/// The commit every partition gets from the first owner in the joining
/// check.
fn commits_of(
    topic: &str,
    partitions: &BTreeSet<i32>,
    offset: i64,
) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    partitions
        .iter()
        .map(|p| (TopicPartition::new(topic, *p), at(offset, "first-owner")))
        .collect()
}

/// What an owner read of each partition under its current assignment runs
/// from `first` to `last`, once each: where a new owner starts reading.
pub(crate) fn verify_read_ranges(
    owner: &str,
    read: &BTreeMap<i32, Vec<i64>>,
    first: i64,
    last: i64,
) -> Result<(), String> {
    let expected: Vec<i64> = (first..=last).collect();
    for (partition, offsets) in read {
        if *offsets != expected {
            return Err(format!(
                "{owner} read partition {partition} at offsets {offsets:?}, expected {first}..={last}"
            ));
        }
    }
    Ok(())
}

pub(super) async fn a_joining_member_makes_the_group_revoke_before_assigning<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 3;
    const LAST_OFFSET: i64 = PER_PARTITION as i64 - 1;
    const COMMITTED_OFFSET: i64 = 1;
    let topic = cx.topic("rebalance", PARTITIONS).await?;
    fill(cx, &topic, PARTITIONS, PER_PARTITION).await?;
    let mut group = Group::new(cx, topic, PARTITIONS);
    join(cx, &mut group, "first", None).await?;
    drive(
        cx,
        &mut group,
        "the first member to own every partition and read it",
        |g| {
            let first = &g.members[0];
            first.owned.len() == PARTITIONS as usize
                && !first.revoke_pending
                && first.caught_up(LAST_OFFSET)
        },
    )
    .await?;
    // With no committed offset, the first owner starts at the earliest offset.
    verdict(
        verify_read_ranges(
            "the first owner",
            &group.members[0].current_offsets(),
            0,
            LAST_OFFSET,
        )
        .map_err(|e| format!("{e} (nothing committed)")),
    )?;
    let commits = commits_of(&group.topic, &group.all, COMMITTED_OFFSET);
    group.members[0]
        .open_consumer()
        .commit(&commits)
        .await
        .or_fail("committing as the first member")?;

    join(cx, &mut group, "second", None).await?;
    drive(
        cx,
        &mut group,
        "the group to rebalance over both members",
        |g| {
            g.members[0].assignments >= 2
                && g.members[1].assignments >= 1
                && g.stable()
                && g.members.iter().all(|m| m.caught_up(LAST_OFFSET))
        },
    )
    .await?;

    group.verify_ownership()?;
    ensure!(
        group
            .steps
            .iter()
            .any(|(m, s)| *m == 0 && *s == GroupStep::Revoked(group.all.clone())),
        "the first member was never told to revoke its partitions: {}",
        group.timeline()
    );
    for m in &group.members {
        ensure!(
            m.owned.len() == 2,
            "after the rebalance {} owns {:?}; the range assignor gives 2 of 4 partitions to each of 2 members",
            m.label,
            m.owned
        );
        // A new owner starts at the committed offset, not the reset policy.
        verdict(
            verify_read_ranges(m.label, &m.current_offsets(), COMMITTED_OFFSET, LAST_OFFSET)
                .map_err(|e| format!("after the rebalance, {e} (from the committed offset)")),
        )?;
    }
    cx.note(group.timeline());
    cx.note(format!(
        "after the rebalance both owners started at the committed offset {COMMITTED_OFFSET}"
    ));
    group.close().await
}

pub(super) async fn a_member_that_leaves_hands_its_partitions_over<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 4;
    let topic = cx.topic("leave", PARTITIONS).await?;
    fill(cx, &topic, PARTITIONS, 2).await?;
    let mut group = Group::new(cx, topic, PARTITIONS);
    // One member at a time, so that every target goes through the same
    // generations (two members joining at once may or may not share one).
    join_first(cx, &mut group, "stays", None).await?;
    join(cx, &mut group, "leaves", None).await?;
    drive(cx, &mut group, "both members to own partitions", |g| {
        g.stable() && g.members.iter().all(|m| m.owned.len() == 2)
    })
    .await?;
    let handed_over = group.members[1].owned.clone();
    let leaving = group.leave(1).expect("the leaving member is open");
    leaving
        .close()
        .await
        .or_fail("closing the leaving member")?;
    let assignments_before = group.members[0].assignments;
    drive(
        cx,
        &mut group,
        "the remaining member to own every partition",
        |g| g.members[0].assignments > assignments_before && g.stable(),
    )
    .await?;
    group.verify_ownership()?;
    ensure!(
        group.members[0].owned == group.all,
        "after the other member left, the remaining one owns {:?}, expected {:?}",
        group.members[0].owned,
        group.all
    );
    cx.note(group.timeline());
    cx.note(format!(
        "the leaving member's {handed_over:?} moved to the remaining member"
    ));
    group.close().await
}

pub(super) async fn the_range_assignor_orders_members_by_client_id<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 4;
    let topic = cx.topic("member-order", PARTITIONS).await?;
    let mut group = Group::new(cx, topic, PARTITIONS);
    // The member that joins first has the client id that sorts last.
    let base = cx.name("client");
    let late_name = format!("{base}-zulu");
    let early_name = format!("{base}-alpha");
    join_first(cx, &mut group, "zulu", Some(&late_name)).await?;
    join(cx, &mut group, "alpha", Some(&early_name)).await?;
    drive(cx, &mut group, "the rebalance over both members", |g| {
        g.members[0].assignments >= 2 && g.stable()
    })
    .await?;
    group.verify_ownership()?;
    for (m, client_id) in group.members.iter().zip([&late_name, &early_name]) {
        let Some(metadata) = m.consumer.as_ref().and_then(|c| c.group_metadata()) else {
            fail!("{} owns partitions but has no group metadata", m.label);
        };
        ensure!(
            metadata.member_id.starts_with(&format!("{client_id}-")),
            "{}'s member id is {:?}; Kafka's member ids are the client id, a dash and a UUID (client id {client_id:?})",
            m.label,
            metadata.member_id
        );
    }
    let (zulu, alpha) = (&group.members[0].owned, &group.members[1].owned);
    ensure!(
        *alpha == BTreeSet::from([0, 1]) && *zulu == BTreeSet::from([2, 3]),
        "the range assignor gave alpha {alpha:?} and zulu {zulu:?}; it orders members by member id, so alpha (joined second, smaller client id) gets partitions 0 and 1"
    );
    cx.note(group.timeline());
    cx.note("both member ids begin with their client ids; alpha (joined second) got {0, 1}, zulu {2, 3}");
    group.close().await
}

/// Sends `output` and `offsets` with the `stale` generation in a new
/// transaction and returns the error the offsets were refused with; if they
/// are accepted, commits (to say how that ended) and fails.
pub(super) async fn refusal_of_stale_offsets<P: Producer>(
    producer: &mut P,
    output: ProducerRecord,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    stale: &GroupMetadata,
    current: &GroupMetadata,
) -> Result<TransportError, Failure> {
    producer.begin("begin_transaction").await?;
    send_all(producer, &[output]).await?;
    match producer.send_offsets_to_transaction(offsets, stale).await {
        Err(error) => Ok(error),
        Ok(()) => {
            let outcome = match producer.commit_transaction().await {
                Ok(()) => "and committed".to_string(),
                Err(error) => format!("and the commit failed with {}", describe(&error)),
            };
            fail!(
                "send_offsets_to_transaction accepted offsets of generation {} while the group is at generation {} ({outcome}); Kafka rejects them at once",
                stale.generation_id,
                current.generation_id
            );
        }
    }
}

pub(super) async fn a_transactional_offset_commit_with_a_stale_generation_is_rejected<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 2;
    let topic = cx.topic("generations", PARTITIONS).await?;
    let mut group = Group::new(cx, topic, PARTITIONS);
    join_first(cx, &mut group, "first", None).await?;
    // Taken once the assignment has settled (the rdkafka transport fills in
    // the metadata when it applies an assignment, at the poll after the one
    // that reported it; see CONFORMANCE-NOTES.md).
    let stale = group.members[0].metadata()?;
    join(cx, &mut group, "second", None).await?;
    drive(cx, &mut group, "the rebalance to the second member", |g| {
        g.members[0].assignments >= 2 && g.stable()
    })
    .await?;
    let current = group.members[0].metadata()?;
    ensure!(
        current.generation_id > stale.generation_id && current.group_id == group.name,
        "the rebalance did not move the generation: before {stale:?}, after {current:?}"
    );
    let owned = group.members[0].owned.iter().next();
    let partition = TopicPartition::new(
        &group.topic,
        *owned.expect("the first member owns a partition"),
    );

    let mut producer = cx.transactional_producer().await?;
    let output = record_to(&partition, "k", "output");
    let stale_offsets = [(partition.clone(), at(1, "stale"))];
    let error =
        refusal_of_stale_offsets(&mut producer, output, &stale_offsets, &stale, &current).await?;
    let (kind, code) = cx.expect.stale_generation;
    ensure!(
        (error.kind, error.code) == (kind, code),
        "the stale offsets were rejected with {}, expected {kind:?}/{code:?}",
        describe(&error)
    );
    // Abortable: abort, then carry on with the same producer.
    producer
        .abort("abort_transaction after the rejected offsets")
        .await?;
    let reader = group.members[0].open_consumer();
    let committed = committed_offsets(reader, std::slice::from_ref(&partition)).await?;
    ensure!(
        committed == vec![None],
        "after the rejected commit, {partition} has committed offset {committed:?}, expected none"
    );

    // The current generation's commit goes through.
    let output = record_to(&partition, "k", "output");
    let current_offsets = [(partition.clone(), at(1, "current"))];
    let stage = " after the abort";
    transaction_with_offsets(&mut producer, output, &current_offsets, &current, stage).await?;
    producer
        .commit("commit_transaction with the current generation")
        .await?;
    let reader = group.members[0].open_consumer();
    let committed = committed_offsets(reader, std::slice::from_ref(&partition)).await?;
    ensure!(
        committed == vec![Some(current_offsets[0].1.clone())],
        "the current generation's offsets read back as {committed:?}"
    );
    cx.note(format!(
        "generation {} -> {}; the stale offsets were rejected by send_offsets_to_transaction with {}; after an abort the same producer committed the current generation's offsets",
        stale.generation_id,
        current.generation_id,
        describe(&error)
    ));
    group.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[i32]) -> BTreeSet<i32> {
        ps.iter().copied().collect()
    }

    const LABELS: [&str; 2] = ["first", "second"];

    fn honest() -> Vec<(usize, GroupStep)> {
        vec![
            (0, GroupStep::Assigned(set(&[0, 1, 2, 3]))),
            (0, GroupStep::Revoked(set(&[0, 1, 2, 3]))),
            (0, GroupStep::Released),
            (1, GroupStep::Assigned(set(&[2, 3]))),
            (0, GroupStep::Assigned(set(&[0, 1]))),
        ]
    }

    #[test]
    fn an_eager_rebalance_passes() {
        assert_eq!(verify_exclusive_ownership(&LABELS, &honest()), Ok(()));
    }

    #[test]
    fn assigning_a_partition_before_its_owner_released_it_fails() {
        let mut steps = honest();
        // The second member is assigned before the first member's next poll.
        steps.swap(2, 3);
        let error = verify_exclusive_ownership(&LABELS, &steps).unwrap_err();
        assert!(error.contains("while first still owned it"), "{error}");
    }

    #[test]
    fn an_assignment_without_a_revoke_fails() {
        let steps = vec![
            (0, GroupStep::Assigned(set(&[0, 1, 2, 3]))),
            (0, GroupStep::Assigned(set(&[0, 1]))),
        ];
        let error = verify_exclusive_ownership(&LABELS, &steps).unwrap_err();
        assert!(error.contains("no revoke came first"), "{error}");
    }

    #[test]
    fn an_owner_that_starts_elsewhere_than_expected_fails_the_read_ranges_check() {
        let read = BTreeMap::from([(0, vec![1, 2]), (1, vec![1, 2])]);
        assert_eq!(verify_read_ranges("second", &read, 1, 2), Ok(()));
        for tampered in [
            BTreeMap::from([(0, vec![0, 1, 2]), (1, vec![1, 2])]),
            BTreeMap::from([(0, vec![1, 2]), (1, vec![2])]),
            BTreeMap::from([(0, vec![1, 1, 2])]),
        ] {
            let error = verify_read_ranges("second", &tampered, 1, 2).unwrap_err();
            assert!(error.starts_with("second read partition"), "{error}");
        }
    }

    #[test]
    fn a_partial_revoke_fails_under_the_eager_protocol() {
        let steps = vec![
            (0, GroupStep::Assigned(set(&[0, 1, 2, 3]))),
            (0, GroupStep::Revoked(set(&[2, 3]))),
        ];
        assert!(verify_exclusive_ownership(&LABELS, &steps).is_err());
    }
}
