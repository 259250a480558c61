//! Losing a partition leader: acknowledged acks=all writes survive, the
//! idempotent producer's retries of in-flight batches are written once, and
//! a transaction open across the failure ends whole.

use std::cell::Cell;
use std::time::Duration;

use eddyline_engine::transport::{
    Admin, Consumer, Delivered, ErrorKind, Isolation, Producer, ProducerRecord, TopicPartition,
    TransportError, TransportResult,
};

use super::log::{verify_deliveries, verify_read_back};
use super::support::{
    Ending, OrFail, TransactionSteps, at, await_deliveries, committed_offsets, delivered_pairs,
    describe, ensure, offsets, outside_the_group, read_pairs, record_to, send_all, send_each,
    transaction, transaction_with_offsets, verdict, verify_partition_contents,
};
use super::transactions::{offsets_from, records};
use super::{BrokerControl, ConformanceEnv, Cx, Failure};

/// Kafka's internal topic of group state and committed offsets.
const OFFSETS_TOPIC: &str = "__consumer_offsets";

fn needs_control<E: ConformanceEnv>(cx: &Cx<'_, E>) -> Result<(), Failure> {
    if cx.env.broker_control() == BrokerControl::None {
        return Err(Failure::Skip("needs broker control".to_string()));
    }
    Ok(())
}

/// Every record was acknowledged once, at dense offsets of `partition` in
/// send order, and reads back (read_committed) exactly as sent.
async fn verify_written_once<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    partition: &TopicPartition,
    records: &[ProducerRecord],
    delivered: &[Delivered],
) -> Result<(), Failure> {
    verdict(verify_deliveries(records, delivered, |_| 0))?;
    let read = cx
        .read(
            std::slice::from_ref(partition),
            Isolation::ReadCommitted,
            records.len(),
        )
        .await?;
    verdict(verify_read_back(records, delivered, &read))
}

pub(super) async fn no_acknowledged_write_is_lost_when_the_leader_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const EACH: usize = 20;
    needs_control(cx)?;
    let p0 = cx.single_partition_topic("failover").await?;
    let mut producer = cx.producer(None).await?;
    let before: Vec<ProducerRecord> = (0..EACH)
        .map(|i| record_to(&p0, "k", &format!("before-{i}")))
        .collect();
    let mut delivered = send_all(&mut producer, &before).await?;

    let fault = cx.env.fail_leader(&p0).await.map_err(Failure::Fail)?;

    let after: Vec<ProducerRecord> = (0..EACH)
        .map(|i| record_to(&p0, "k", &format!("after-{i}")))
        .collect();
    delivered.extend(send_all(&mut producer, &after).await?);
    producer.flush().await.or_fail("flushing")?;
    let mut all = before;
    all.extend(after);
    verify_written_once(cx, &p0, &all, &delivered).await?;
    cx.note(fault);
    cx.note(format!(
        "{EACH} records acknowledged before the fault (offsets 0..{EACH}) and {EACH} after all read back in place"
    ));
    Ok(())
}

pub(super) async fn records_retried_after_lost_acknowledgements_are_written_once<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const WAVES: usize = 20;
    const PER_WAVE: usize = 10;
    const WAVE_GAP: Duration = Duration::from_millis(20);
    needs_control(cx)?;
    let p0 = cx.single_partition_topic("in-flight").await?;
    let mut producer = cx.producer(None).await?;
    let records: Vec<ProducerRecord> = (0..WAVES * PER_WAVE)
        .map(|i| record_to(&p0, "k", &format!("r-{i}")))
        .collect();

    // Waves of sends keep batches in flight while the env makes the
    // leader's acknowledgements get lost; the producer retries whatever was
    // not acknowledged, and the broker must de-duplicate what it had
    // already appended.
    let env = cx.env;
    let waves_sent = Cell::new(0usize);
    let (sent, fault) = tokio::join!(
        async {
            let mut pending = Vec::with_capacity(records.len());
            for wave in records.chunks(PER_WAVE) {
                for r in wave {
                    pending.push(producer.send(r.clone()).or_fail("sending")?);
                }
                waves_sent.set(waves_sent.get() + 1);
                env.sleep(WAVE_GAP).await;
            }
            let delivered = await_deliveries(pending).await?;
            producer.flush().await.or_fail("flushing")?;
            Ok::<_, Failure>(delivered)
        },
        async {
            env.sleep(WAVE_GAP * 3).await;
            let started_after_waves = waves_sent.get();
            let outcome = env.lose_acknowledgements(&p0).await;
            (outcome, started_after_waves, waves_sent.get())
        }
    );
    let (fault, waves_at_fault_start, waves_at_fault_end) = fault;
    let fault = fault.map_err(Failure::Fail)?;
    let delivered = sent?;
    verify_written_once(cx, &p0, &records, &delivered).await?;
    cx.note(fault);
    cx.note(format!(
        "the fault began after {waves_at_fault_start} of {WAVES} waves and ended after {waves_at_fault_end}; all {} records written once, in order",
        records.len()
    ));
    Ok(())
}

/// How a transaction that was open across a leader failure ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SpanningEnd {
    /// `commit_transaction` succeeded.
    Committed,
    /// `commit_transaction` failed with this error; `abort_transaction`
    /// then succeeded.
    Aborted(TransportError),
}

/// What the partition showed once the transaction had ended and the last
/// stable offset had caught up with the high watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpanningView {
    /// The partition read from its start under read_committed.
    pub read: Vec<(i64, String)>,
    /// `offsets_range` under read_committed (its end is the LSO).
    pub committed_range: (i64, i64),
    /// `offsets_range` under read_uncommitted (its end is the HW).
    pub uncommitted_range: (i64, i64),
}

/// A transaction open across a leader failure either committed exactly
/// once (every record acknowledged, all of them read under read_committed
/// in send order at their acknowledged offsets, and the read_committed end
/// at the high watermark, past the records and the marker) or failed as a
/// whole: the commit failed with an abortable error, nothing of it is
/// visible under read_committed, and the LSO is back at the HW.
pub(crate) fn verify_spanning_transaction(
    end: &SpanningEnd,
    failed_sends: usize,
    view: &SpanningView,
    committed: &[(i64, String)],
    marker: i64,
) -> Result<(), String> {
    let (lso, hw) = (view.committed_range.1, view.uncommitted_range.1);
    match end {
        SpanningEnd::Committed => {
            if failed_sends > 0 {
                return Err(format!(
                    "the commit succeeded although {failed_sends} of the transaction's sends failed"
                ));
            }
            verify_partition_contents("after the commit", &view.read, committed)?;
            let expected = (0, committed.len() as i64 + marker);
            if view.committed_range != expected || view.uncommitted_range != expected {
                return Err(format!(
                    "after the commit the ranges are {:?} (read_committed) and {:?} (read_uncommitted), expected {expected:?} for both: {} records and the commit marker",
                    view.committed_range,
                    view.uncommitted_range,
                    committed.len()
                ));
            }
            Ok(())
        }
        SpanningEnd::Aborted(error) if error.kind != ErrorKind::Abortable => Err(format!(
            "the commit failed with {}: neither committed nor abortable",
            describe(error)
        )),
        SpanningEnd::Aborted(_) if !view.read.is_empty() => Err(format!(
            "after the abort read_committed sees {} records of the transaction: {:?}",
            view.read.len(),
            view.read
        )),
        SpanningEnd::Aborted(_) if lso != hw => Err(format!(
            "after the abort the read_committed end (LSO) is {lso}, the high watermark {hw}: the aborted transaction still holds readers"
        )),
        SpanningEnd::Aborted(_) => Ok(()),
    }
}

/// Commits, and repeats the commit while it times out or is retriable (the
/// seam's rule for an outcome that is not known yet) within the env's
/// patience; aborts after an abortable failure.
async fn end_spanning_transaction<E: ConformanceEnv>(
    cx: &Cx<'_, E>,
    producer: &mut impl Producer,
) -> Result<SpanningEnd, Failure> {
    let deadline = cx.deadline();
    loop {
        match producer.commit_transaction().await {
            Ok(()) => return Ok(SpanningEnd::Committed),
            Err(error)
                if matches!(error.kind, ErrorKind::Timeout | ErrorKind::Retriable)
                    && cx.env.elapsed() < deadline =>
            {
                cx.env.sleep(Duration::from_millis(100)).await;
            }
            Err(error) if error.kind == ErrorKind::Abortable => {
                let doing = format!(
                    "abort_transaction after the commit failed with {}",
                    describe(&error)
                );
                producer.abort(&doing).await?;
                return Ok(SpanningEnd::Aborted(error));
            }
            Err(error) => return Ok(SpanningEnd::Aborted(error)),
        }
    }
}

/// The acknowledged `(offset, value)` pairs of `outcomes` and the number
/// of sends that failed.
fn acknowledged(
    records: &[ProducerRecord],
    outcomes: &[TransportResult<Delivered>],
) -> (Vec<(i64, String)>, usize) {
    let mut pairs = Vec::new();
    let mut failed = 0;
    for (record, outcome) in records.iter().zip(outcomes) {
        match outcome {
            Ok(delivered) => pairs.extend(delivered_pairs(
                std::slice::from_ref(record),
                std::slice::from_ref(delivered),
            )),
            Err(_) => failed += 1,
        }
    }
    (pairs, failed)
}

pub(super) async fn a_transaction_spanning_a_leader_failure_commits_once_or_aborts_whole<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const EACH: usize = 10;
    needs_control(cx)?;
    let marker = cx.expect.control_marker_offsets;
    let p0 = cx.single_partition_topic("txn-failover").await?;
    let mut producer = cx.transactional_producer().await?;
    let mut all = records(&p0, "before-", EACH);
    producer.begin("begin_transaction").await?;
    let mut outcomes: Vec<_> = send_all(&mut producer, &all)
        .await?
        .into_iter()
        .map(Ok)
        .collect();

    let fault = cx.env.fail_leader(&p0).await.map_err(Failure::Fail)?;

    let after = records(&p0, "after-", EACH);
    outcomes.extend(send_each(&mut producer, &after).await);
    all.extend(after);
    let end = end_spanning_transaction(cx, &mut producer).await?;
    if let SpanningEnd::Aborted(error) = &end {
        ensure!(
            error.kind == ErrorKind::Abortable,
            "the commit failed with {}: neither committed nor abortable",
            describe(error)
        );
    }
    let (committed, failed_sends) = acknowledged(&all, &outcomes);
    let (committed_range, uncommitted_range) = cx.settled_ranges(&p0).await?;
    let read = cx
        .read(
            std::slice::from_ref(&p0),
            Isolation::ReadCommitted,
            all.len(),
        )
        .await?;
    let view = SpanningView {
        read: read_pairs(&read),
        committed_range,
        uncommitted_range,
    };
    verdict(verify_spanning_transaction(
        &end,
        failed_sends,
        &view,
        &committed,
        marker,
    ))?;

    // Either way the producer carries on: its next transaction lands at the
    // high watermark and commits.
    let hw = uncommitted_range.1;
    let next = records(&p0, "next-", 2);
    let delivered = transaction(&mut producer, &next, Ending::Commit, " (the next one)").await?;
    ensure!(
        offsets(&delivered) == offsets_from(hw, 2),
        "the next transaction's records got offsets {:?}, expected {:?} (at the high watermark {hw})",
        offsets(&delivered),
        offsets_from(hw, 2)
    );
    cx.await_stable_end(&p0, hw + 2).await?;
    cx.expect_ranges(&p0, (0, hw + 2 + marker), "after the next transaction")
        .await?;
    let mut visible = if end == SpanningEnd::Committed {
        committed
    } else {
        Vec::new()
    };
    visible.extend(delivered_pairs(&next, &delivered));
    cx.read_exactly(&p0, Isolation::ReadCommitted, &visible)
        .await?;
    cx.note(fault);
    cx.note(match &end {
        SpanningEnd::Committed => format!(
            "committed: all {} records at {:?}, read_committed end {} = high watermark",
            all.len(),
            committed_range,
            uncommitted_range.1
        ),
        SpanningEnd::Aborted(error) => format!(
            "aborted after {} ({failed_sends} sends failed): read_committed empty, LSO = HW = {hw}",
            describe(error)
        ),
    });
    Ok(())
}

/// Kafka's `String.hashCode()` over the id's UTF-16 code units.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition whose leader coordinates `group_id`:
/// `Utils.abs(groupId.hashCode()) % partitions`, as Kafka's group
/// coordinator places groups.
pub(crate) fn group_coordinator_partition(group_id: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(group_id);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

pub(super) async fn committed_offsets_survive_the_loss_of_the_group_coordinator<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    needs_control(cx)?;
    let topic = cx.topic("coordinator", 2).await?;
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    let group = cx.name("group");
    let outside = outside_the_group(&group);

    // One plain commit and one transactional commit before the failure.
    let mut writer = cx.consumer(Some(&group), Isolation::ReadCommitted).await?;
    writer
        .commit(&[(p0.clone(), at(5, "plain-before"))])
        .await
        .or_fail("committing offsets")?;
    writer.close().await.or_fail("closing")?;
    let mut producer = cx.transactional_producer().await?;
    let output = record_to(&p1, "k", "before");
    let offsets = [(p1.clone(), at(7, "txn-before"))];
    transaction_with_offsets(&mut producer, output, &offsets, &outside, "").await?;
    producer.commit("commit_transaction").await?;

    let admin = cx.admin().await?;
    let offsets_partitions = admin
        .partition_count(OFFSETS_TOPIC)
        .await
        .or_fail(&format!("partition_count({OFFSETS_TOPIC})"))?;
    let coordinator = TopicPartition::new(
        OFFSETS_TOPIC,
        group_coordinator_partition(&group, offsets_partitions),
    );
    let fault = cx
        .env
        .fail_leader(&coordinator)
        .await
        .map_err(Failure::Fail)?;

    // A new client of the group finds both commits on the new coordinator
    // (loaded from __consumer_offsets), and the producer carries on.
    let mut reader = cx.consumer(Some(&group), Isolation::ReadCommitted).await?;
    let read = committed_offsets(&mut reader, &[p0.clone(), p1.clone()]).await?;
    let expected = vec![Some(at(5, "plain-before")), Some(at(7, "txn-before"))];
    ensure!(
        read == expected,
        "after the group coordinator failed, the committed offsets are {read:?}, expected {expected:?}"
    );
    let output = record_to(&p1, "k", "after");
    let offsets = [(p1.clone(), at(8, "txn-after"))];
    let stage = " after the failure";
    transaction_with_offsets(&mut producer, output, &offsets, &outside, stage).await?;
    producer
        .commit("commit_transaction after the failure")
        .await?;
    let read = committed_offsets(&mut reader, std::slice::from_ref(&p1)).await?;
    ensure!(
        read == vec![Some(at(8, "txn-after"))],
        "the transaction committed after the failure stored {read:?}, expected offset 8 'txn-after'"
    );
    reader.close().await.or_fail("closing")?;
    cx.note(format!(
        "group coordinator partition {coordinator}; {fault}"
    ));
    cx.note("plain and transactional commits made before the failure read back; a new transaction committed after it");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: i64) -> Vec<(i64, String)> {
        (0..n).map(|i| (i, format!("v{i}"))).collect()
    }

    fn view(read: Vec<(i64, String)>, lso: i64, hw: i64) -> SpanningView {
        SpanningView {
            read,
            committed_range: (0, lso),
            uncommitted_range: (0, hw),
        }
    }

    fn aborted(kind: ErrorKind) -> SpanningEnd {
        let code = eddyline_engine::transport::ErrorCode::NotEnoughReplicas;
        SpanningEnd::Aborted(TransportError::new(kind, code, "failed"))
    }

    #[test]
    fn a_whole_commit_or_a_whole_abort_passes_the_spanning_check() {
        let committed = SpanningEnd::Committed;
        assert_eq!(
            verify_spanning_transaction(&committed, 0, &view(pairs(4), 5, 5), &pairs(4), 1),
            Ok(())
        );
        let abortable = aborted(ErrorKind::Abortable);
        assert_eq!(
            verify_spanning_transaction(&abortable, 2, &view(vec![], 3, 3), &pairs(2), 1),
            Ok(())
        );
    }

    #[test]
    fn a_partial_or_duplicated_commit_fails_the_spanning_check() {
        let committed = SpanningEnd::Committed;
        let mut duplicated = pairs(4);
        duplicated.insert(2, (2, "v2".to_string()));
        for (failed, view, says) in [
            (1, view(pairs(4), 5, 5), "sends failed"),
            (0, view(pairs(3), 5, 5), "expected 4 records"),
            (0, view(duplicated, 5, 5), "expected 4 records"),
            (0, view(pairs(4), 4, 5), "expected (0, 5) for both"),
            (0, view(pairs(4), 6, 6), "expected (0, 5) for both"),
        ] {
            let error =
                verify_spanning_transaction(&committed, failed, &view, &pairs(4), 1).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn a_visible_or_unfinished_abort_or_another_error_fails_the_spanning_check() {
        let abortable = aborted(ErrorKind::Abortable);
        for (end, view, says) in [
            (
                &abortable,
                view(pairs(1), 3, 3),
                "read_committed sees 1 records",
            ),
            (&abortable, view(vec![], 0, 3), "still holds readers"),
            (
                &aborted(ErrorKind::Fatal),
                view(vec![], 3, 3),
                "neither committed nor abortable",
            ),
            (
                &aborted(ErrorKind::Timeout),
                view(vec![], 3, 3),
                "neither committed nor abortable",
            ),
        ] {
            let error = verify_spanning_transaction(end, 0, &view, &pairs(2), 1).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn groups_map_to_offsets_partitions_as_kafka_places_them() {
        // Java: "my-group".hashCode() == -1_906_497_762, made positive
        // before the modulo; "polygenelubricants".hashCode() == i32::MIN,
        // which Kafka's Utils.abs maps to 0.
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(
            group_coordinator_partition("my-group", 50),
            1_906_497_762 % 50
        );
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(group_coordinator_partition("polygenelubricants", 50), 0);
        for name in ["a", "conf-group-0", "eddy-conf-1-2-group-3", "ünïcode"] {
            let p = group_coordinator_partition(name, 4);
            assert!((0..4).contains(&p), "{name}: {p}");
        }
    }
}
