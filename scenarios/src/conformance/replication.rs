//! Replication and `min.insync.replicas`: the effective min ISR of a topic
//! with fewer replicas than its `min.insync.replicas`, and a partition
//! whose ISR falls below it.

use std::time::Duration;

use eddyline_engine::transport::{
    Consumer, Delivered, ErrorCode, ErrorKind, Isolation, Producer, ProducerConfig, ProducerRecord,
    TopicPartition, TransportError, TransportResult,
};

use super::support::{
    ConsumerOf, OrFail, ProducerOf, SETTLE, delivered_pairs, describe, ensure, fail, read_for,
    read_into, read_pairs, record_to, send_all, send_each, send_one, verdict,
    verify_partition_contents,
};
use super::transactions::records;
use super::{ConformanceEnv, Cx, Failure, ReplicaState};

/// How long a producer that expects its writes to be refused keeps
/// retrying them (its delivery timeout): Kafka's clients retry
/// NOT_ENOUGH_REPLICAS until then.
const REFUSAL_TIMEOUT_MS: u32 = 3_000;

/// `min.insync.replicas` as a topic config.
fn min_insync(replicas: i16) -> Vec<(String, String)> {
    vec![("min.insync.replicas".to_string(), replicas.to_string())]
}

/// An idempotent producer whose sends give up after [`REFUSAL_TIMEOUT_MS`].
async fn impatient_producer<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<ProducerOf<E>, Failure> {
    cx.producer_with(None, |config: &mut ProducerConfig| {
        config.delivery_timeout_ms = REFUSAL_TIMEOUT_MS;
        config.request_timeout_ms = REFUSAL_TIMEOUT_MS / 2;
    })
    .await
}

/// Waits until the cluster's metadata shows `partition`'s replicas in a
/// state that satisfies `condition` and returns it; `what` names the state
/// for the failure when the env's patience runs out.
async fn await_replicas<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    partition: &TopicPartition,
    what: &str,
    condition: impl Fn(&ReplicaState) -> bool,
) -> Result<ReplicaState, Failure> {
    let began = cx.env.elapsed();
    let deadline = cx.deadline();
    loop {
        let state = cx.env.replica_state(partition).await;
        match &state {
            Ok(state) if condition(state) => return Ok(state.clone()),
            _ if cx.env.elapsed() >= deadline => fail!(
                "waited {} ms for {what}; {partition} is {state:?}",
                cx.env.elapsed().saturating_sub(began).as_millis()
            ),
            _ => cx.env.sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The writes to a partition whose ISR is `in_sync` replicas strong: if
/// `accepted` (the ISR is at least the effective min ISR), every record
/// was acknowledged at dense offsets from 0 in send order and reads back;
/// otherwise every write was refused and nothing reached the log.
pub(crate) fn verify_min_isr_writes(
    records: &[ProducerRecord],
    outcomes: &[TransportResult<Delivered>],
    read: &[(i64, String)],
    accepted: bool,
) -> Result<(), String> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(describe))
        .collect();
    if !accepted {
        if failed.len() != outcomes.len() || !read.is_empty() {
            return Err(format!(
                "{} of {} acks=all writes were acknowledged and {} records read back; expected every write refused (NOT_ENOUGH_REPLICAS)",
                outcomes.len() - failed.len(),
                outcomes.len(),
                read.len()
            ));
        }
        return Ok(());
    }
    if !failed.is_empty() {
        return Err(format!(
            "{} of {} acks=all writes failed ({}); the in-sync replicas are enough for the topic's effective min ISR",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        ));
    }
    let delivered: Vec<Delivered> = outcomes.iter().flatten().cloned().collect();
    let expected = delivered_pairs(records, &delivered);
    let dense: Vec<i64> = (0..records.len() as i64).collect();
    let offsets: Vec<i64> = delivered.iter().map(|d| d.offset).collect();
    if offsets != dense {
        return Err(format!(
            "the writes were acknowledged at offsets {offsets:?}, expected {dense:?}"
        ));
    }
    verify_partition_contents("read back", read, &expected)
}

pub(super) async fn a_replication_factor_1_topic_with_min_insync_2_accepts_acks_all_writes<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const RECORDS: usize = 5;
    const MIN_INSYNC: i16 = 2;
    let topic = cx
        .topic_with("rf1-min-isr-2", 1, 1, min_insync(MIN_INSYNC))
        .await?;
    let p0 = TopicPartition::new(&topic, 0);
    let state = await_replicas(cx, &p0, "a leader", |s| s.leader.is_some()).await?;
    ensure!(
        state.replicas.len() == 1 && state.isr.len() == 1,
        "{p0} was created with replication factor 1 but has replicas {:?} and ISR {:?}",
        state.replicas,
        state.isr
    );
    let needed = (cx.expect.effective_min_isr)(MIN_INSYNC, 1);
    let accepted = state.isr.len() as i16 >= needed;
    let mut producer = impatient_producer(cx).await?;
    let records = records(&p0, "acks-all-", RECORDS);
    let outcomes = send_each(&mut producer, &records).await;
    let expected_reads = if accepted { RECORDS } else { 0 };
    let read = cx
        .read(
            std::slice::from_ref(&p0),
            Isolation::ReadCommitted,
            expected_reads,
        )
        .await?;
    verdict(
        verify_min_isr_writes(&records, &outcomes, &read_pairs(&read), accepted).map_err(|e| {
            format!(
                "replication factor 1, min.insync.replicas {MIN_INSYNC}, ISR {:?}, {needed} in-sync replicas needed: {e}",
                state.isr
            )
        }),
    )?;
    cx.note(format!(
        "replicas {:?}, ISR {:?}: {RECORDS} acks=all writes acknowledged at 0..{RECORDS} and read back",
        state.replicas, state.isr
    ));
    Ok(())
}

/// The values of the records check 7 sends at each stage.
const IN_FLIGHT: &str = "in-flight";
const REFUSED: &str = "under-min-isr";
const AFTER: &str = "after-return";

/// What a partition whose ISR fell below its min ISR looked like, and what
/// became of the writes around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MinIsrTimeline {
    /// The records acknowledged before the follower stopped.
    pub before: Vec<(i64, String)>,
    /// The read_committed and read_uncommitted ranges under min ISR.
    pub under_ranges: ((i64, i64), (i64, i64)),
    /// What a read_uncommitted reader got from the start under min ISR.
    pub under_read: Vec<(i64, String)>,
    /// A record sent right after the follower stopped; awaited after it
    /// returned.
    pub in_flight: TransportResult<Delivered>,
    /// A record sent by another producer once the ISR had shrunk, with a
    /// delivery timeout of [`REFUSAL_TIMEOUT_MS`].
    pub refused: TransportResult<Delivered>,
    /// A record sent after the follower was back in the ISR.
    pub after: TransportResult<Delivered>,
    /// The ranges, and a read_uncommitted read from the start, at the end.
    pub after_ranges: ((i64, i64), (i64, i64)),
    pub after_read: Vec<(i64, String)>,
}

/// The seam reports an acks=all write that Kafka refused with
/// NOT_ENOUGH_REPLICAS either with that code or, because Kafka's clients
/// retry it until their delivery timeout, as a timeout (librdkafka's
/// `_MSG_TIMED_OUT`); which of the two it was is told by the log: a refused
/// write never reaches it (see CONFORMANCE-NOTES.md).
fn is_min_isr_refusal(error: &TransportError) -> bool {
    error.code == ErrorCode::NotEnoughReplicas
        || (error.kind == ErrorKind::Timeout && error.code == ErrorCode::TimedOut)
}

/// `offset` holds `value` in `pairs`.
fn holds(pairs: &[(i64, String)], value: &str) -> bool {
    pairs.iter().any(|(_, v)| v == value)
}

/// Kafka 3.8 (`held`): under min ISR the high watermark stays where it was
/// (`Partition.maybeIncrementLeaderHW` does not move it while
/// `isUnderMinIsr`), so neither isolation reads past the records
/// acknowledged before, even though the record in flight was appended; an
/// acks=all write is refused before it is appended
/// (`Partition.appendRecordsToLeader`: NOT_ENOUGH_REPLICAS); once the
/// follower is back the in-flight record is acknowledged right after the
/// earlier ones, the refused one is nowhere, and the partition takes writes
/// again. Not `held`: the partition keeps taking acks=all writes with only
/// the leader in sync.
pub(crate) fn verify_min_isr_timeline(t: &MinIsrTimeline, held: bool) -> Result<(), String> {
    let n = t.before.len() as i64;
    if !held {
        return match &t.refused {
            Ok(_) => Ok(()),
            Err(error) => Err(format!(
                "with the leader alone in sync, an acks=all write failed with {}; expected it acknowledged",
                describe(error)
            )),
        };
    }
    let stalled = ((0, n), (0, n));
    if t.under_ranges != stalled {
        return Err(format!(
            "under min ISR the ranges (read_committed, read_uncommitted) are {:?}, expected {stalled:?}: the high watermark must hold",
            t.under_ranges
        ));
    }
    verify_partition_contents("read under min ISR", &t.under_read, &t.before)?;
    match &t.refused {
        Ok(d) => {
            return Err(format!(
                "under min ISR an acks=all write was acknowledged at offset {}; expected NOT_ENOUGH_REPLICAS",
                d.offset
            ));
        }
        Err(error) if !is_min_isr_refusal(error) => {
            return Err(format!(
                "under min ISR an acks=all write failed with {}, expected NOT_ENOUGH_REPLICAS (or a delivery timeout of its retries)",
                describe(error)
            ));
        }
        Err(error)
            if error.code == ErrorCode::NotEnoughReplicas && holds(&t.after_read, REFUSED) =>
        {
            return Err(format!(
                "the write refused under min ISR reached the log: {:?}",
                t.after_read
            ));
        }
        Err(_) => {}
    }
    // A delivery timeout is an unknown outcome, not a refusal: on a real
    // cluster the leader may append a write before it has applied the ISR
    // shrink the controller published, and that write commits once the
    // follower is back. It may then appear once, right after the in-flight
    // record, never while the partition is under min ISR (checked above).
    let timed_out_but_written = holds(&t.after_read, REFUSED);
    let later_offset = if timed_out_but_written { n + 2 } else { n + 1 };
    for (what, outcome, offset) in [
        ("in-flight", &t.in_flight, n),
        ("later", &t.after, later_offset),
    ] {
        match outcome {
            Ok(d) if d.offset == offset => {}
            Ok(d) => {
                return Err(format!(
                    "the {what} record was acknowledged at offset {}, expected {offset}",
                    d.offset
                ));
            }
            Err(error) => {
                return Err(format!(
                    "the {what} record failed with {} after the follower returned",
                    describe(error)
                ));
            }
        }
    }
    let mut expected = t.before.clone();
    expected.push((n, IN_FLIGHT.to_string()));
    if timed_out_but_written {
        expected.push((n + 1, REFUSED.to_string()));
    }
    expected.push((later_offset, AFTER.to_string()));
    verify_partition_contents("read after the follower returned", &t.after_read, &expected)?;
    let resumed = ((0, later_offset + 1), (0, later_offset + 1));
    if t.after_ranges != resumed {
        return Err(format!(
            "after the follower returned the ranges are {:?}, expected {resumed:?}",
            t.after_ranges
        ));
    }
    Ok(())
}

/// The clients that look at the partition under min ISR, made (and
/// pointed at the partition's leader) while every broker is up: a client
/// made while one is stopped may ask the stopped broker first and wait out
/// its request timeout, as the simulator's clients do (a stopped broker
/// never answers there, as a dead machine does not).
struct Watchers<P, C> {
    /// An idempotent producer with a delivery timeout of
    /// [`REFUSAL_TIMEOUT_MS`], which wrote the last record before the stop.
    producer: P,
    /// A read_committed consumer, for the last stable offset.
    stable: C,
    /// A read_uncommitted reader of the partition from its start.
    reader: C,
    read: Vec<eddyline_engine::transport::Message>,
}

/// Writes the records before the stop (all but the last with `producer`,
/// the last with the watchers' own producer) and makes the watchers, whose
/// reader has read them all. Returns the records' `(offset, value)` pairs.
async fn write_before<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    partition: &TopicPartition,
    producer: &mut ProducerOf<E>,
    count: usize,
) -> Result<(Vec<(i64, String)>, Watchers<ProducerOf<E>, ConsumerOf<E>>), Failure> {
    let before = records(partition, "before-", count);
    let (first, last) = before.split_at(count - 1);
    let mut pairs = delivered_pairs(first, &send_all(producer, first).await?);
    let mut watcher = impatient_producer(cx).await?;
    pairs.extend(delivered_pairs(last, &send_all(&mut watcher, last).await?));
    let mut stable = cx.consumer(None, Isolation::ReadCommitted).await?;
    stable
        .offsets_range(partition)
        .await
        .or_fail(&format!("reading the offsets of {partition}"))?;
    let partitions = std::slice::from_ref(partition);
    let mut reader = cx
        .assigned_reader(partitions, Isolation::ReadUncommitted)
        .await?;
    let mut read = Vec::new();
    read_into(cx, &mut reader, &mut read, count).await?;
    let watchers = Watchers {
        producer: watcher,
        stable,
        reader,
        read,
    };
    Ok((pairs, watchers))
}

/// Under min ISR: a write of the watchers' producer (retried until its
/// delivery timeout), the ranges, and everything the reader has got from
/// the start. Closes the watchers' consumers.
async fn observe_under_min_isr<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    partition: &TopicPartition,
    mut watchers: Watchers<ProducerOf<E>, ConsumerOf<E>>,
) -> Result<UnderMinIsr, Failure> {
    let refused = send_one(&mut watchers.producer, record_to(partition, "k", REFUSED)).await;
    let doing = format!("reading the offsets of {partition} under min ISR");
    let committed = watchers
        .stable
        .offsets_range(partition)
        .await
        .or_fail(&doing)?;
    let uncommitted = watchers
        .reader
        .offsets_range(partition)
        .await
        .or_fail(&doing)?;
    read_for(cx, &mut watchers.reader, &mut watchers.read, SETTLE).await?;
    watchers
        .stable
        .close()
        .await
        .or_fail("closing a consumer")?;
    watchers
        .reader
        .close()
        .await
        .or_fail("closing a consumer")?;
    Ok(UnderMinIsr {
        refused,
        ranges: (committed, uncommitted),
        read: read_pairs(&watchers.read),
    })
}

/// What [`observe_under_min_isr`] saw.
struct UnderMinIsr {
    refused: TransportResult<Delivered>,
    ranges: ((i64, i64), (i64, i64)),
    read: Vec<(i64, String)>,
}

pub(super) async fn a_partition_under_min_isr_holds_its_high_watermark_until_the_follower_returns<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const BEFORE: usize = 5;
    const REPLICAS: i16 = 2;
    let topic = cx
        .topic_with("under-min-isr", 1, REPLICAS, min_insync(REPLICAS))
        .await?;
    let p0 = TopicPartition::new(&topic, 0);
    let in_sync = |s: &ReplicaState| s.leader.is_some() && s.isr.len() == REPLICAS as usize;
    let state = await_replicas(cx, &p0, "both replicas in sync", in_sync).await?;
    let leader = state.leader.expect("waited for a leader");
    let Some(&follower) = state.replicas.iter().find(|&&r| r != leader) else {
        fail!("{p0} has replicas {:?}: no follower", state.replicas);
    };
    // The ISR will be the leader alone.
    let held = 1 < (cx.expect.effective_min_isr)(REPLICAS, REPLICAS);
    let mut producer = cx.producer(None).await?;
    let (before, watchers) = write_before(cx, &p0, &mut producer, BEFORE).await?;

    let stopped = cx.env.stop_broker(follower).await.map_err(Failure::Fail)?;
    let in_flight = producer
        .send(record_to(&p0, "k", IN_FLIGHT))
        .or_fail("sending the in-flight record")?;
    let alone = |s: &ReplicaState| s.isr == [leader];
    let stopped_at = cx.env.elapsed();
    await_replicas(cx, &p0, "the ISR to shrink to the leader", alone).await?;
    let shrink_took = cx.env.elapsed().saturating_sub(stopped_at);
    let under = observe_under_min_isr(cx, &p0, watchers).await?;

    let started = cx.env.start_broker(follower).await.map_err(Failure::Fail)?;
    let back = |s: &ReplicaState| s.isr.contains(&follower);
    let started_at = cx.env.elapsed();
    await_replicas(cx, &p0, "the follower back in the ISR", back).await?;
    let rejoin_took = cx.env.elapsed().saturating_sub(started_at);
    let in_flight = in_flight.await;
    let after = send_one(&mut producer, record_to(&p0, "k", AFTER)).await;
    let after_ranges = cx.settled_ranges(&p0).await?;
    let partitions = std::slice::from_ref(&p0);
    let after_read = cx
        .read(partitions, Isolation::ReadUncommitted, BEFORE + 2)
        .await?;
    let timeline = MinIsrTimeline {
        before,
        under_ranges: under.ranges,
        under_read: under.read,
        in_flight,
        refused: under.refused,
        after,
        after_ranges,
        after_read: read_pairs(&after_read),
    };
    // Noted before the verdict, so that a failure shows the timeline.
    cx.note(format!(
        "{stopped} (follower of {p0}, leader {leader}); ISR [{leader}] after {} ms",
        shrink_took.as_millis()
    ));
    cx.note(format!(
        "under min ISR: ranges {:?}, read {:?}; a write by another producer: {}",
        timeline.under_ranges,
        timeline.under_read,
        outcome_text(&timeline.refused)
    ));
    cx.note(format!(
        "{started}; back in the ISR {} ms later; the in-flight record: {}; the next: {}; ranges {:?}",
        rejoin_took.as_millis(),
        outcome_text(&timeline.in_flight),
        outcome_text(&timeline.after),
        timeline.after_ranges
    ));
    verdict(verify_min_isr_timeline(&timeline, held))
}

/// A delivery as the notes print it.
fn outcome_text(outcome: &TransportResult<Delivered>) -> String {
    match outcome {
        Ok(delivered) => format!("acknowledged at offset {}", delivered.offset),
        Err(error) => format!("failed with {}", describe(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::support::record;

    fn p(offset: i64, value: &str) -> (i64, String) {
        (offset, value.to_string())
    }

    fn at(offset: i64) -> TransportResult<Delivered> {
        Ok(Delivered {
            topic: "t".into(),
            partition: 0,
            offset,
        })
    }

    fn timed_out() -> TransportResult<Delivered> {
        Err(TransportError::new(
            ErrorKind::Timeout,
            ErrorCode::TimedOut,
            "timed out",
        ))
    }

    fn kafka() -> MinIsrTimeline {
        let before = vec![p(0, "b0"), p(1, "b1")];
        let mut after_read = before.clone();
        after_read.extend([p(2, IN_FLIGHT), p(3, AFTER)]);
        MinIsrTimeline {
            before: before.clone(),
            under_ranges: ((0, 2), (0, 2)),
            under_read: before,
            in_flight: at(2),
            refused: timed_out(),
            after: at(3),
            after_ranges: ((0, 4), (0, 4)),
            after_read,
        }
    }

    #[test]
    fn kafkas_timeline_passes_only_when_the_hw_is_expected_to_hold() {
        assert_eq!(verify_min_isr_timeline(&kafka(), true), Ok(()));
        let error = verify_min_isr_timeline(&kafka(), false).unwrap_err();
        assert!(error.contains("expected it acknowledged"), "{error}");
    }

    #[test]
    fn a_moving_hw_an_accepted_or_logged_write_or_a_lost_record_fails() {
        let mut moved = kafka();
        moved.under_ranges = ((0, 3), (0, 3));
        moved.under_read.push(p(2, IN_FLIGHT));
        let error = verify_min_isr_timeline(&moved, true).unwrap_err();
        assert!(error.contains("the high watermark must hold"), "{error}");

        let mut accepted = kafka();
        accepted.refused = at(3);
        assert!(verify_min_isr_timeline(&accepted, true).is_err());

        let mut logged = kafka();
        logged.refused = Err(TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::NotEnoughReplicas,
            "not enough replicas",
        ));
        logged.after_read.insert(3, p(3, REFUSED));
        let error = verify_min_isr_timeline(&logged, true).unwrap_err();
        assert!(error.contains("reached the log"), "{error}");

        // A timed-out write that appears must come right after the
        // in-flight record, with the later record behind it.
        let mut misplaced = kafka();
        misplaced.after_read.push(p(4, REFUSED));
        assert!(verify_min_isr_timeline(&misplaced, true).is_err());

        let mut other = kafka();
        other.refused = Err(TransportError::new(
            ErrorKind::Fatal,
            ErrorCode::InvalidRecord,
            "bad",
        ));
        assert!(verify_min_isr_timeline(&other, true).is_err());

        let mut lost = kafka();
        lost.in_flight = timed_out();
        assert!(verify_min_isr_timeline(&lost, true).is_err());

        let mut stuck = kafka();
        stuck.after_ranges = ((0, 2), (0, 4));
        assert!(verify_min_isr_timeline(&stuck, true).is_err());
    }

    /// Seen on a real three-node cluster: the leader appended a write sent
    /// just after the controller shrank the ISR; the client timed out; the
    /// write committed once the follower was back.
    #[test]
    fn a_timed_out_write_may_commit_after_the_follower_returns() {
        let mut late = kafka();
        late.after_read.insert(3, p(3, REFUSED));
        late.after_read[4] = p(4, AFTER);
        late.after = at(4);
        late.after_ranges = ((0, 5), (0, 5));
        assert_eq!(verify_min_isr_timeline(&late, true), Ok(()));
    }

    #[test]
    fn the_broker_code_itself_counts_as_the_refusal() {
        let mut refused = kafka();
        refused.refused = Err(TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::NotEnoughReplicas,
            "not enough replicas",
        ));
        assert_eq!(verify_min_isr_timeline(&refused, true), Ok(()));
    }

    #[test]
    fn writes_are_judged_against_the_effective_min_isr() {
        let records: Vec<ProducerRecord> = (0..2)
            .map(|i| record("t", Some(0), "k", &format!("v{i}")))
            .collect();
        let acknowledged = vec![at(0), at(1)];
        let read = vec![p(0, "v0"), p(1, "v1")];
        assert_eq!(
            verify_min_isr_writes(&records, &acknowledged, &read, true),
            Ok(())
        );
        assert!(verify_min_isr_writes(&records, &acknowledged, &read, false).is_err());
        let refused = vec![timed_out(), timed_out()];
        assert_eq!(
            verify_min_isr_writes(&records, &refused, &[], false),
            Ok(())
        );
        let error = verify_min_isr_writes(&records, &refused, &[], true).unwrap_err();
        assert!(error.contains("2 of 2 acks=all writes failed"), "{error}");
        let gap = vec![at(0), at(2)];
        assert!(verify_min_isr_writes(&records, &gap, &read, true).is_err());
    }
}
