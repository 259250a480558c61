//! Consumer groups: eager rebalances (revoke before assign), where new
//! owners start, leaving, and KIP-447 generation fencing of transactional
//! offset commits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use eddyline_engine::transport::{
    Consumer, ConsumerEvent, ErrorCode, ErrorKind, Isolation, Message, OffsetAndMetadata, Producer,
    TopicPartition,
};

use super::support::{
    ConsumerOf, OrFail, POLL, POLL_MAX_EVENTS, SETTLE, describe, ensure, fail, record, send_all,
    verdict,
};
use super::{ConformanceEnv, Cx, Failure};

/// Heartbeats often enough that a rebalance is noticed quickly on a real
/// broker too (the broker's minimum session timeout is 6 s).
const HEARTBEAT_INTERVAL_MS: u32 = 300;
const SESSION_TIMEOUT_MS: u32 = 10_000;

/// How Kafka rejects a transactional offset commit from a member that is
/// still in the group but at an older generation (KIP-447): the group
/// coordinator answers TxnOffsetCommit with ILLEGAL_GENERATION, which
/// `send_offsets_to_transaction` reports as abortable (measured on Kafka 3.8
/// with librdkafka 2.12; see CONFORMANCE-NOTES.md).
pub(crate) const STALE_GENERATION: (ErrorKind, ErrorCode) =
    (ErrorKind::Abortable, ErrorCode::IllegalGeneration);

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
struct Member<C> {
    label: &'static str,
    consumer: Option<C>,
    owned: BTreeSet<i32>,
    revoke_pending: bool,
    /// How many assignments it has seen; messages are tagged with it.
    assignments: usize,
    messages: Vec<(usize, Message)>,
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
    fn current_offsets(&self) -> BTreeMap<i32, Vec<i64>> {
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
    fn caught_up(&self, last_offset: i64) -> bool {
        let offsets = self.current_offsets();
        self.owned
            .iter()
            .all(|p| offsets.get(p).is_some_and(|o| o.contains(&last_offset)))
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

/// Polls every member in turn until `done` holds (then for [`SETTLE`] more),
/// or fails when the env's patience runs out.
async fn drive<E: ConformanceEnv>(
    cx: &Cx<'_, E>,
    topic: &str,
    members: &mut [Member<ConsumerOf<E>>],
    steps: &mut Vec<(usize, GroupStep)>,
    what: &str,
    done: impl Fn(&[Member<ConsumerOf<E>>]) -> bool,
) -> Result<(), Failure> {
    let deadline = cx.deadline();
    while !done(members) {
        if cx.env.elapsed() >= deadline {
            fail!(
                "waited {} ms for {what}; timeline: {}",
                cx.env.patience().as_millis(),
                render_timeline(
                    members
                        .iter()
                        .map(|m| m.label)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    steps
                )
            );
        }
        for (index, member) in members.iter_mut().enumerate() {
            poll_member(topic, index, member, steps).await?;
        }
    }
    let settle_until = cx.env.elapsed() + SETTLE;
    while cx.env.elapsed() < settle_until {
        for (index, member) in members.iter_mut().enumerate() {
            poll_member(topic, index, member, steps).await?;
        }
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

async fn member<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    label: &'static str,
    group: &str,
    topic: &str,
) -> Result<Member<ConsumerOf<E>>, Failure> {
    member_named(cx, label, group, topic, None).await
}

/// A subscribed member; `client_id`: `None` for a fresh run-unique one.
async fn member_named<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    label: &'static str,
    group: &str,
    topic: &str,
    client_id: Option<&str>,
) -> Result<Member<ConsumerOf<E>>, Failure> {
    let mut consumer = cx
        .consumer_with(Some(group), Isolation::ReadCommitted, |config| {
            config.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
            config.session_timeout_ms = SESSION_TIMEOUT_MS;
            if let Some(client_id) = client_id {
                config.client_id = client_id.to_string();
            }
        })
        .await?;
    consumer
        .subscribe(&[topic.to_string()])
        .await
        .or_fail(&format!("subscribing {label}"))?;
    Ok(Member::new(label, consumer))
}

fn stable<C>(members: &[Member<C>], all: &BTreeSet<i32>) -> bool {
    let live: Vec<&Member<C>> = members.iter().filter(|m| m.consumer.is_some()).collect();
    let mut union = BTreeSet::new();
    let mut total = 0;
    for m in &live {
        if m.revoke_pending || m.owned.is_empty() {
            return false;
        }
        total += m.owned.len();
        union.extend(m.owned.iter().copied());
    }
    union == *all && total == all.len()
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
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let group = cx.name("group");
    let mut steps = Vec::new();
    let mut members = vec![member(cx, "first", &group, &topic).await?];

    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the first member to own every partition and read it",
        |m| {
            m[0].owned.len() == PARTITIONS as usize
                && !m[0].revoke_pending
                && m[0].caught_up(LAST_OFFSET)
        },
    )
    .await?;
    // With no committed offset, the first owner starts at the earliest offset.
    for (partition, offsets) in members[0].current_offsets() {
        ensure!(
            offsets == (0..=LAST_OFFSET).collect::<Vec<_>>(),
            "the first owner of partition {partition} (nothing committed) read offsets {offsets:?}, expected 0..={LAST_OFFSET}"
        );
    }
    let commits: Vec<(TopicPartition, OffsetAndMetadata)> = all
        .iter()
        .map(|p| {
            (
                TopicPartition::new(&topic, *p),
                OffsetAndMetadata {
                    offset: COMMITTED_OFFSET,
                    metadata: "first-owner".to_string(),
                },
            )
        })
        .collect();
    members[0]
        .consumer
        .as_mut()
        .expect("the first member is open")
        .commit(&commits)
        .await
        .or_fail("committing as the first member")?;

    members.push(member(cx, "second", &group, &topic).await?);
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the group to rebalance over both members",
        |m| {
            m[0].assignments >= 2
                && m[1].assignments >= 1
                && stable(m, &all)
                && m.iter().all(|m| m.caught_up(LAST_OFFSET))
        },
    )
    .await?;

    let labels = ["first", "second"];
    verdict(verify_exclusive_ownership(&labels, &steps))?;
    ensure!(
        steps
            .iter()
            .any(|(m, s)| *m == 0 && *s == GroupStep::Revoked(all.clone())),
        "the first member was never told to revoke its partitions: {}",
        render_timeline(&labels, &steps)
    );
    for m in &members {
        ensure!(
            m.owned.len() == 2,
            "after the rebalance {} owns {:?}; the range assignor gives 2 of 4 partitions to each of 2 members",
            m.label,
            m.owned
        );
        // A new owner starts at the committed offset, not the reset policy.
        for (partition, offsets) in m.current_offsets() {
            ensure!(
                offsets == (COMMITTED_OFFSET..=LAST_OFFSET).collect::<Vec<_>>(),
                "after the rebalance, {} read partition {partition} at offsets {offsets:?}, expected {COMMITTED_OFFSET}..={LAST_OFFSET} (from the committed offset)",
                m.label
            );
        }
    }
    cx.note(render_timeline(&labels, &steps));
    cx.note(format!(
        "after the rebalance both owners started at the committed offset {COMMITTED_OFFSET}"
    ));
    for m in &mut members {
        if let Some(consumer) = m.consumer.take() {
            consumer.close().await.or_fail("closing")?;
        }
    }
    Ok(())
}

pub(super) async fn a_member_that_leaves_hands_its_partitions_over<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 4;
    let topic = cx.topic("leave", PARTITIONS).await?;
    fill(cx, &topic, PARTITIONS, 2).await?;
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let group = cx.name("group");
    let mut steps = Vec::new();
    // One member at a time, so that every target goes through the same
    // generations (two members joining at once may or may not share one).
    let mut members = vec![member(cx, "stays", &group, &topic).await?];
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the first member's assignment",
        |m| stable(m, &all),
    )
    .await?;
    members.push(member(cx, "leaves", &group, &topic).await?);
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "both members to own partitions",
        |m| stable(m, &all) && m.iter().all(|m| m.owned.len() == 2),
    )
    .await?;
    let handed_over = members[1].owned.clone();
    let leaving = members[1]
        .close_now(&mut steps, 1)
        .expect("the leaving member is open");
    leaving
        .close()
        .await
        .or_fail("closing the leaving member")?;
    let assignments_before = members[0].assignments;
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the remaining member to own every partition",
        |m| m[0].assignments > assignments_before && stable(m, &all),
    )
    .await?;
    let labels = ["stays", "leaves"];
    verdict(verify_exclusive_ownership(&labels, &steps))?;
    ensure!(
        members[0].owned == all,
        "after the other member left, the remaining one owns {:?}, expected {all:?}",
        members[0].owned
    );
    cx.note(render_timeline(&labels, &steps));
    cx.note(format!(
        "the leaving member's {handed_over:?} moved to the remaining member"
    ));
    if let Some(consumer) = members[0].consumer.take() {
        consumer.close().await.or_fail("closing")?;
    }
    Ok(())
}

pub(super) async fn the_range_assignor_orders_members_by_client_id<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 4;
    let topic = cx.topic("member-order", PARTITIONS).await?;
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let group = cx.name("group");
    // The member that joins first has the client id that sorts last.
    let base = cx.name("client");
    let late_name = format!("{base}-zulu");
    let early_name = format!("{base}-alpha");
    let mut steps = Vec::new();
    let mut members = vec![member_named(cx, "zulu", &group, &topic, Some(&late_name)).await?];
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the first member's assignment",
        |m| stable(m, &all),
    )
    .await?;
    members.push(member_named(cx, "alpha", &group, &topic, Some(&early_name)).await?);
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the rebalance over both members",
        |m| m[0].assignments >= 2 && stable(m, &all),
    )
    .await?;
    let labels = ["zulu", "alpha"];
    verdict(verify_exclusive_ownership(&labels, &steps))?;
    for (m, client_id) in members.iter().zip([&late_name, &early_name]) {
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
    ensure!(
        members[1].owned == BTreeSet::from([0, 1]) && members[0].owned == BTreeSet::from([2, 3]),
        "the range assignor gave alpha {:?} and zulu {:?}; it orders members by member id, so alpha (joined second, smaller client id) gets partitions 0 and 1",
        members[1].owned,
        members[0].owned
    );
    cx.note(render_timeline(&labels, &steps));
    cx.note("both member ids begin with their client ids; alpha (joined second) got {0, 1}, zulu {2, 3}");
    for m in &mut members {
        if let Some(consumer) = m.consumer.take() {
            consumer.close().await.or_fail("closing")?;
        }
    }
    Ok(())
}

pub(super) async fn a_transactional_offset_commit_with_a_stale_generation_is_rejected<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 2;
    let topic = cx.topic("generations", PARTITIONS).await?;
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let group = cx.name("group");
    let mut steps = Vec::new();
    let mut members = vec![member(cx, "first", &group, &topic).await?];
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the first member's assignment",
        |m| stable(m, &all),
    )
    .await?;
    // Taken once the assignment has settled (the rdkafka transport fills in
    // the metadata when it applies an assignment, at the poll after the one
    // that reported it; see CONFORMANCE-NOTES.md).
    let Some(stale) = members[0]
        .consumer
        .as_ref()
        .expect("the first member is open")
        .group_metadata()
    else {
        fail!("group_metadata() was None for a member that owns partitions");
    };
    members.push(member(cx, "second", &group, &topic).await?);
    drive(
        cx,
        &topic,
        &mut members,
        &mut steps,
        "the rebalance to the second member",
        |m| m[0].assignments >= 2 && stable(m, &all),
    )
    .await?;
    let Some(current) = members[0]
        .consumer
        .as_ref()
        .expect("the first member is open")
        .group_metadata()
    else {
        fail!("group_metadata() was None for a member that owns partitions");
    };
    ensure!(
        current.generation_id > stale.generation_id && current.group_id == group,
        "the rebalance did not move the generation: before {stale:?}, after {current:?}"
    );
    let partition = TopicPartition::new(
        &topic,
        *members[0]
            .owned
            .iter()
            .next()
            .expect("the first member owns a partition"),
    );

    let id = cx.name("txn");
    let mut producer = cx.producer(Some(&id)).await?;
    producer
        .begin_transaction()
        .await
        .or_fail("begin_transaction")?;
    send_all(
        &mut producer,
        &[record(&topic, Some(partition.partition), "k", "output")],
    )
    .await?;
    let stale_offsets = [(
        partition.clone(),
        OffsetAndMetadata {
            offset: 1,
            metadata: "stale".to_string(),
        },
    )];
    let error = match producer
        .send_offsets_to_transaction(&stale_offsets, &stale)
        .await
    {
        Err(error) => error,
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
    };
    ensure!(
        (error.kind, error.code) == STALE_GENERATION,
        "the stale offsets were rejected with {}, expected {:?}/{:?}",
        describe(&error),
        STALE_GENERATION.0,
        STALE_GENERATION.1
    );
    // Abortable: abort, then carry on with the same producer.
    producer
        .abort_transaction()
        .await
        .or_fail("abort_transaction after the rejected offsets")?;
    let reader = members[0]
        .consumer
        .as_mut()
        .expect("the first member is open");
    let committed = reader
        .committed(std::slice::from_ref(&partition))
        .await
        .or_fail("reading committed offsets")?;
    ensure!(
        committed == vec![None],
        "after the rejected commit, {partition} has committed offset {committed:?}, expected none"
    );

    // The current generation's commit goes through.
    producer
        .begin_transaction()
        .await
        .or_fail("begin_transaction after the abort")?;
    send_all(
        &mut producer,
        &[record(&topic, Some(partition.partition), "k", "output")],
    )
    .await?;
    let current_offsets = [(
        partition.clone(),
        OffsetAndMetadata {
            offset: 1,
            metadata: "current".to_string(),
        },
    )];
    producer
        .send_offsets_to_transaction(&current_offsets, &current)
        .await
        .or_fail("send_offsets_to_transaction with the current generation")?;
    producer
        .commit_transaction()
        .await
        .or_fail("commit_transaction with the current generation")?;
    let reader = members[0]
        .consumer
        .as_mut()
        .expect("the first member is open");
    let committed = reader
        .committed(std::slice::from_ref(&partition))
        .await
        .or_fail("reading committed offsets")?;
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
    for m in &mut members {
        if let Some(consumer) = m.consumer.take() {
            consumer.close().await.or_fail("closing")?;
        }
    }
    Ok(())
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
    fn a_partial_revoke_fails_under_the_eager_protocol() {
        let steps = vec![
            (0, GroupStep::Assigned(set(&[0, 1, 2, 3]))),
            (0, GroupStep::Revoked(set(&[2, 3]))),
        ];
        assert!(verify_exclusive_ownership(&LABELS, &steps).is_err());
    }
}
