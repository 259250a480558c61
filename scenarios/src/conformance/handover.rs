//! KIP-447's transactional handover within one eager rebalance: the old
//! owner sends its consumed positions with the generation it has when it is
//! told to revoke; the new owner's `committed()` waits while they are
//! pending and then returns them; the same generation is refused once the
//! rebalance is over; and every input reaches the output exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use eddyline_engine::transport::{
    Consumer, GroupMetadata, Isolation, OffsetAndMetadata, Producer, ProducerRecord, TopicPartition,
};

use super::groups::{
    Group, Member, drive, drive_until, join, refusal_of_stale_offsets, verify_read_ranges,
};
use super::offsets::verify_waited_for_stable_offsets;
use super::support::{
    ConsumerOf, OrFail, TransactionSteps, at, describe, ensure, record, record_to, send_all,
    value_text, values, verdict,
};
use super::{ConformanceEnv, Cx, Failure};

const PARTITIONS: i32 = 2;
/// Inputs per partition in each of the two rounds.
const PER_ROUND: i64 = 3;
/// How long the old owner's transaction stays open after the new owner
/// asked for its committed offsets.
const HOLD: Duration = Duration::from_millis(1_500);
/// The metadata the old owner commits its positions with.
const HANDED_OVER: &str = "old-owner";

/// Every input became exactly one output (`out-<input>`), and nothing else
/// is in the output: what exactly-once processing through a rebalance
/// means.
pub(crate) fn verify_each_input_once(inputs: &[String], outputs: &[String]) -> Result<(), String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for output in outputs {
        *counts.entry(output.clone()).or_default() += 1;
    }
    let mut missing = Vec::new();
    let mut repeated = Vec::new();
    for input in inputs {
        let output = format!("out-{input}");
        match counts.remove(&output) {
            None => missing.push(input.clone()),
            Some(1) => {}
            Some(n) => repeated.push(format!("{input} x{n}")),
        }
    }
    let unexpected: Vec<String> = counts.into_keys().collect();
    if missing.is_empty() && repeated.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the output holds {} records for {} inputs: missing {missing:?}, repeated {repeated:?}, not from any input {unexpected:?}",
        outputs.len(),
        inputs.len()
    ))
}

/// Produces round `round`'s inputs: `PER_ROUND` records to each partition.
async fn fill_round<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    topic: &str,
    round: i64,
) -> Result<Vec<String>, Failure> {
    let mut producer = cx.producer(None).await?;
    let records: Vec<ProducerRecord> = (0..PARTITIONS)
        .flat_map(|p| (round * PER_ROUND..(round + 1) * PER_ROUND).map(move |i| (p, i)))
        .map(|(p, i)| record(topic, Some(p), &format!("p{p}"), &format!("p{p}-{i}")))
        .collect();
    send_all(&mut producer, &records).await?;
    producer.flush().await.or_fail("flushing")?;
    Ok(records
        .iter()
        .map(|r| value_text(r.value.as_deref()))
        .collect())
}

/// Sends, in the producer's open transaction, one output for each record
/// the member read under its current assignment.
async fn send_outputs<C: Consumer, P: Producer>(
    producer: &mut P,
    member: &Member<C>,
    output: &TopicPartition,
) -> Result<(), Failure> {
    let read: Vec<_> = member
        .messages
        .iter()
        .filter(|(assignment, _)| *assignment == member.assignments)
        .map(|(_, message)| message)
        .collect();
    let outputs: Vec<ProducerRecord> = values(&read)
        .iter()
        .map(|value| record_to(output, value, &format!("out-{value}")))
        .collect();
    send_all(producer, &outputs).await?;
    Ok(())
}

/// The positions after what the member read under its current assignment.
fn next_offsets<C: Consumer>(
    topic: &str,
    member: &Member<C>,
) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    member
        .current_offsets()
        .into_iter()
        .map(|(partition, read)| {
            let next = read.last().map_or(0, |last| last + 1);
            (TopicPartition::new(topic, partition), at(next, HANDED_OVER))
        })
        .collect()
}

/// The new owner (member 1) asks for the committed offsets of what it was
/// assigned while the old owner's transaction still holds them; the old
/// owner commits [`HOLD`] later. Returns the answer, when it came and when
/// the commit returned (both after the question), and the partition asked.
async fn ask_while_the_old_owner_commits<E: ConformanceEnv, P: Producer>(
    cx: &Cx<'_, E>,
    group: &mut Group<ConsumerOf<E>>,
    old_producer: &mut P,
) -> Result<
    (
        Vec<Option<OffsetAndMetadata>>,
        Duration,
        Duration,
        TopicPartition,
    ),
    Failure,
> {
    let new_owner = &group.members[1];
    ensure!(
        new_owner.owned.len() == 1,
        "the new owner was assigned {:?}; the range assignor gives one of two partitions to each of two members",
        new_owner.owned
    );
    let partition = TopicPartition::new(&group.topic, *new_owner.owned.first().expect("one"));
    let reader = group.members[1].open_consumer();
    let env = cx.env;
    let asked_at = env.elapsed();
    let (read, commit) = tokio::join!(
        async {
            let read = reader.committed(std::slice::from_ref(&partition)).await;
            (read, env.elapsed().saturating_sub(asked_at))
        },
        async {
            env.sleep(HOLD).await;
            let commit = old_producer.commit_transaction().await;
            (commit, env.elapsed().saturating_sub(asked_at))
        }
    );
    let (read, answered_after) = read;
    let (commit, committed_after) = commit;
    commit.or_fail("the old owner's commit_transaction")?;
    let read = read.or_fail("the new owner's committed()")?;
    Ok((read, answered_after, committed_after, partition))
}

/// Each member processes what it read under its current assignment in a
/// transaction of its own, with its current generation, and commits.
async fn process_second_round<C: Consumer, P: Producer>(
    group: &Group<C>,
    producers: [&mut P; 2],
    output: &TopicPartition,
) -> Result<(), Failure> {
    for (member, producer) in group.members.iter().zip(producers) {
        verdict(
            verify_read_ranges(
                member.label,
                &member.current_offsets(),
                PER_ROUND,
                2 * PER_ROUND - 1,
            )
            .map_err(|e| format!("after the handover, {e} (from the committed offsets)")),
        )?;
        let who = format!(" ({} owner, second round)", member.label);
        producer.begin(&format!("begin_transaction{who}")).await?;
        send_outputs(producer, member, output).await?;
        producer
            .send_offsets_to_transaction(&next_offsets(&group.topic, member), &member.metadata()?)
            .await
            .or_fail(&format!("send_offsets_to_transaction{who}"))?;
        producer.commit(&format!("commit_transaction{who}")).await?;
    }
    Ok(())
}

/// The first round up to the rebalance: the old owner reads every input
/// and writes their outputs in a transaction it keeps open; a new member
/// joins; told to revoke, the old owner sends its positions with the
/// generation it has. Told to revoke, a member still owns its partitions
/// and its generation until its next poll, so the coordinator takes the
/// offsets (`GroupCoordinator.validateOffsetCommit` compares the
/// generation, which moves only when the rebalance completes). Returns
/// the revoking generation's metadata and the positions it sent.
async fn send_offsets_on_revocation<E: ConformanceEnv, P: Producer>(
    cx: &mut Cx<'_, E>,
    group: &mut Group<ConsumerOf<E>>,
    old_producer: &mut P,
    output: &TopicPartition,
) -> Result<(GroupMetadata, Vec<(TopicPartition, OffsetAndMetadata)>), Failure> {
    join(cx, group, "old", None).await?;
    drive(cx, group, "the old owner to read every input", |g| {
        let old = &g.members[0];
        old.owned.len() == PARTITIONS as usize
            && !old.revoke_pending
            && old.caught_up(PER_ROUND - 1)
    })
    .await?;
    old_producer.begin("begin_transaction (old owner)").await?;
    send_outputs(old_producer, &group.members[0], output).await?;
    join(cx, group, "new", None).await?;
    drive_until(cx, group, "the old owner to be told to revoke", |g| {
        g.members[0].revoke_pending
    })
    .await?;
    let revoking = group.members[0].metadata()?;
    let handed = next_offsets(&group.topic, &group.members[0]);
    old_producer
        .send_offsets_to_transaction(&handed, &revoking)
        .await
        .or_fail("send_offsets_to_transaction on revocation, with the generation it had")?;
    Ok((revoking, handed))
}

pub(super) async fn in_one_rebalance_the_old_owners_transaction_hands_each_input_over_once<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let input = cx.topic("handover-in", PARTITIONS).await?;
    let output = cx.single_partition_topic("handover-out").await?;
    let mut inputs = fill_round(cx, &input, 0).await?;
    let mut group = Group::new(cx, input.clone(), PARTITIONS);
    let mut old_producer = cx.transactional_producer().await?;
    let (revoking, handed) =
        send_offsets_on_revocation(cx, &mut group, &mut old_producer, &output).await?;
    drive(cx, &mut group, "the rebalance over both members", |g| {
        g.members[0].assignments >= 2 && g.members[1].assignments >= 1 && g.stable()
    })
    .await?;
    group.verify_ownership()?;
    let current = group.members[0].metadata()?;
    ensure!(
        current.generation_id > revoking.generation_id,
        "the rebalance did not move the generation: {revoking:?} then {current:?}"
    );

    let (read, answered_after, committed_after, asked) =
        ask_while_the_old_owner_commits(cx, &mut group, &mut old_producer).await?;
    verdict(
        verify_waited_for_stable_offsets(
            &read,
            &at(PER_ROUND, HANDED_OVER),
            answered_after,
            committed_after,
            HOLD,
        )
        .map_err(|e| format!("the new owner of {asked}: {e}")),
    )?;

    // After its next poll the generation it revoked with is gone.
    let stale_output = record_to(&output, "stale", "stale-output");
    let error = refusal_of_stale_offsets(
        &mut old_producer,
        stale_output,
        &handed,
        &revoking,
        &current,
    )
    .await?;
    let (kind, code) = cx.expect.stale_generation;
    ensure!(
        (error.kind, error.code) == (kind, code),
        "the old owner's offsets of generation {} were refused with {} once the group was at generation {}, expected {kind:?}/{code:?}",
        revoking.generation_id,
        describe(&error),
        current.generation_id
    );
    old_producer
        .abort("abort_transaction after the refused offsets")
        .await?;

    inputs.extend(fill_round(cx, &input, 1).await?);
    let last = 2 * PER_ROUND - 1;
    drive(
        cx,
        &mut group,
        "both owners to read the second round",
        |g| g.stable() && g.members.iter().all(|m| m.caught_up(last)),
    )
    .await?;
    let mut new_producer = cx.transactional_producer().await?;
    process_second_round(&group, [&mut old_producer, &mut new_producer], &output).await?;
    let read = cx
        .read(
            std::slice::from_ref(&output),
            Isolation::ReadCommitted,
            inputs.len(),
        )
        .await?;
    let refs: Vec<_> = read.iter().collect();
    verdict(verify_each_input_once(&inputs, &values(&refs)))?;
    cx.note(group.timeline());
    cx.note(format!(
        "generation {} -> {}: the new owner's committed() for {asked} answered offset {PER_ROUND} after {} ms, the old owner's commit returned after {} ms; generation {} then refused with {}",
        revoking.generation_id,
        current.generation_id,
        answered_after.as_millis(),
        committed_after.as_millis(),
        revoking.generation_id,
        describe(&error)
    ));
    cx.note(format!(
        "{} inputs, {} outputs, each input once",
        inputs.len(),
        read.len()
    ));
    group.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_missing_repeated_or_foreign_output_fails_the_exactly_once_check() {
        let inputs = texts(&["p0-0", "p1-0"]);
        assert_eq!(
            verify_each_input_once(&inputs, &texts(&["out-p1-0", "out-p0-0"])),
            Ok(())
        );
        for (outputs, says) in [
            (texts(&["out-p0-0"]), "missing [\"p1-0\"]"),
            (texts(&["out-p0-0", "out-p1-0", "out-p0-0"]), "p0-0 x2"),
            (
                texts(&["out-p0-0", "out-p1-0", "out-stale"]),
                "not from any input [\"out-stale\"]",
            ),
        ] {
            let error = verify_each_input_once(&inputs, &outputs).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }
}
