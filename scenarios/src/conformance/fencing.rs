//! Fencing at the edges of a transaction: the late sends of a producer
//! whose epoch was bumped, and a new incarnation that starts while the
//! previous one's commit is still being completed.

use eddyline_engine::transport::{
    Delivered, Isolation, Producer, ProducerConfig, ProducerRecord, TopicPartition, TransportResult,
};

use super::support::{
    Ending, OrFail, TransactionSteps, delivered_pairs, describe, ensure, offsets, read_pairs,
    record_to, send_all, send_each, transaction, verdict, verify_partition_contents,
};
use super::transactions::{offsets_from, records};
use super::{ConformanceEnv, Cx, Failure};

/// Every late send of a fenced producer failed (at `send` or at its
/// delivery); a late send that was acknowledged reached the log.
pub(crate) fn verify_late_sends_refused(
    sends: &[(&str, TransportResult<Delivered>)],
) -> Result<(), String> {
    for (what, outcome) in sends {
        if let Ok(delivered) = outcome {
            return Err(format!(
                "the fenced producer's late send {what} was acknowledged at {}-{} offset {}",
                delivered.topic, delivered.partition, delivered.offset
            ));
        }
    }
    Ok(())
}

/// The fenced producer's late sends: one to `in_txn` (already in its
/// transaction) and one to `new` (not yet in it). Returns what became of
/// them, each with a description for the notes.
async fn late_sends<P: Producer>(
    producer: &mut P,
    in_txn: &TopicPartition,
    new: &TopicPartition,
) -> (Vec<TransportResult<Delivered>>, String) {
    let late = [
        record_to(in_txn, "late", "late-in-txn"),
        record_to(new, "late", "late-new-partition"),
    ];
    let outcomes = send_each(producer, &late).await;
    let described: Vec<String> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(delivered) => format!("acknowledged at offset {}", delivered.offset),
            Err(error) => describe(error),
        })
        .collect();
    (outcomes, described.join(" / "))
}

/// Fails unless the late sends were refused and `in_txn` and `new` hold,
/// read_uncommitted (everything in the log up to the high watermark),
/// exactly `in_txn_holds` and `new_holds`.
async fn verify_never_logged<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    when: &str,
    outcomes: Vec<TransportResult<Delivered>>,
    (in_txn, in_txn_holds): (&TopicPartition, &[(i64, String)]),
    (new, new_holds): (&TopicPartition, &[(i64, String)]),
) -> Result<(), Failure> {
    let mut outcomes = outcomes.into_iter();
    let sends = [
        ("to a partition in the transaction", outcomes.next()),
        ("to a partition new to the transaction", outcomes.next()),
    ];
    let sends: Vec<(&str, TransportResult<Delivered>)> = sends
        .into_iter()
        .map(|(what, outcome)| (what, outcome.expect("two late sends")))
        .collect();
    verdict(verify_late_sends_refused(&sends).map_err(|e| format!("{when}: {e}")))?;
    for (partition, holds) in [(in_txn, in_txn_holds), (new, new_holds)] {
        let read = cx
            .read(
                std::slice::from_ref(partition),
                Isolation::ReadUncommitted,
                holds.len(),
            )
            .await?;
        verdict(
            verify_partition_contents(&partition.to_string(), &read_pairs(&read), holds)
                .map_err(|e| format!("{when}, read_uncommitted: {e}")),
        )?;
    }
    Ok(())
}

/// Begins a transaction and writes one record to `partition` in it.
async fn open_with_one_record<P: Producer>(
    producer: &mut P,
    partition: &TopicPartition,
) -> Result<Vec<(i64, String)>, Failure> {
    let zombie = [record_to(partition, "zombie", "zombie")];
    let delivered = transaction(producer, &zombie, Ending::LeftOpen, " (to be fenced)").await?;
    Ok(delivered_pairs(&zombie, &delivered))
}

pub(super) async fn a_fenced_producers_late_sends_never_reach_the_log<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const TIMEOUT_MS: u32 = 2_000;
    let marker = cx.expect.control_marker_offsets;
    // After the coordinator's timeout abort (which bumps the epoch).
    let topic = cx.topic("late-after-timeout", 2).await?;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let id = cx.name("txn");
    let short = |config: &mut ProducerConfig| config.transaction_timeout_ms = TIMEOUT_MS;
    let mut timed_out = cx.producer_with(Some(&id), short).await?;
    let zombie = open_with_one_record(&mut timed_out, &p0).await?;
    cx.await_stable_end(&p0, 1 + marker).await?;
    let (outcomes, after_timeout) = late_sends(&mut timed_out, &p0, &p1).await;
    let when = "after the coordinator's timeout abort";
    verify_never_logged(cx, when, outcomes, (&p0, &zombie), (&p1, &[])).await?;
    cx.expect_ranges(&p0, (0, 1 + marker), when).await?;
    cx.expect_ranges(&p1, (0, 0), when).await?;

    // After a second init_transactions with the same id.
    let topic = cx.topic("late-after-init", 2).await?;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let id = cx.name("txn");
    let mut first = cx.producer(Some(&id)).await?;
    let zombie = open_with_one_record(&mut first, &p0).await?;
    let mut second = cx.producer(Some(&id)).await?;
    let (outcomes, after_init) = late_sends(&mut first, &p0, &p1).await;
    let when = "after a second init_transactions";
    verify_never_logged(cx, when, outcomes, (&p0, &zombie), (&p1, &[])).await?;
    // The new incarnation's records follow the abort marker its init wrote.
    let current = [
        record_to(&p0, "k", "current"),
        record_to(&p1, "k", "current"),
    ];
    let delivered = transaction(&mut second, &current, Ending::Commit, " (second)").await?;
    ensure!(
        offsets(&delivered) == vec![1 + marker, 0],
        "the new incarnation's records got offsets {:?}, expected [{}, 0]: right after the abort marker on {p0}, first on {p1}",
        offsets(&delivered),
        1 + marker
    );
    cx.await_stable_end(&p0, 2 + marker).await?;
    cx.expect_ranges(&p0, (0, 2 + 2 * marker), when).await?;
    cx.note(format!(
        "late sends after the timeout abort (in txn / new partition): {after_timeout}"
    ));
    cx.note(format!("late sends after a second init: {after_init}"));
    cx.note(format!(
        "neither reached the log; the new incarnation's records at {:?}",
        offsets(&delivered)
    ));
    Ok(())
}

pub(super) async fn a_commit_followed_at_once_by_a_new_init_stays_committed<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const RECORDS: usize = 3;
    let marker = cx.expect.control_marker_offsets;
    let p0 = cx.single_partition_topic("commit-then-init").await?;
    let id = cx.name("txn");
    let mut first = cx.producer(Some(&id)).await?;
    // Created beforehand, so that its init_transactions follows the commit
    // at once: the coordinator is still writing the commit's markers
    // (PrepareCommit), answers CONCURRENT_TRANSACTIONS, and bumps the epoch
    // only once the commit is complete
    // (`TransactionCoordinator.prepareInitProducerIdTransit`); it never
    // aborts a transaction whose commit it has logged.
    let mut second = cx.uninitialized_producer(Some(&id), |_| {}).await?;
    let committed = records(&p0, "committed-", RECORDS);
    let delivered_committed = producer_commit(&mut first, &committed).await?;
    let committed_at = cx.env.elapsed();
    second
        .init_transactions()
        .await
        .or_fail("the new instance's init_transactions right after the commit")?;
    let init_took = cx.env.elapsed().saturating_sub(committed_at);

    let n = RECORDS as i64;
    cx.await_stable_end(&p0, n).await?;
    cx.expect_ranges(&p0, (0, n + marker), "after the commit and the new init")
        .await?;
    let current = records(&p0, "current-", 1);
    let delivered = transaction(&mut second, &current, Ending::Commit, " (new instance)").await?;
    ensure!(
        offsets(&delivered) == offsets_from(n + marker, 1),
        "the new instance's first record got offset {:?}, expected {} (right after the commit marker)",
        offsets(&delivered),
        n + marker
    );
    let mut expected = delivered_pairs(&committed, &delivered_committed);
    expected.extend(delivered_pairs(&current, &delivered));
    cx.read_exactly(&p0, Isolation::ReadCommitted, &expected)
        .await?;
    cx.note(format!(
        "init_transactions returned {} ms after the commit; the {RECORDS} committed records stayed visible; the new instance's record at {:?}",
        init_took.as_millis(),
        offsets(&delivered)
    ));
    Ok(())
}

/// Writes `records` in one transaction and commits it; the deliveries must
/// be at `0..records.len()`.
async fn producer_commit<P: Producer>(
    producer: &mut P,
    records: &[ProducerRecord],
) -> Result<Vec<Delivered>, Failure> {
    producer.begin("begin_transaction").await?;
    let delivered = send_all(producer, records).await?;
    ensure!(
        offsets(&delivered) == offsets_from(0, records.len()),
        "the committed transaction's records got offsets {:?}, expected 0..{}",
        offsets(&delivered),
        records.len()
    );
    producer.commit("commit_transaction").await?;
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddyline_engine::transport::{ErrorCode, ErrorKind, TransportError};

    #[test]
    fn an_acknowledged_late_send_fails_the_refusal_check() {
        let refused = || {
            Err(TransportError::new(
                ErrorKind::Fenced,
                ErrorCode::InvalidProducerEpoch,
                "fenced",
            ))
        };
        assert_eq!(
            verify_late_sends_refused(&[("a", refused()), ("b", refused())]),
            Ok(())
        );
        let acknowledged = Ok(Delivered {
            topic: "t".into(),
            partition: 1,
            offset: 0,
        });
        let error =
            verify_late_sends_refused(&[("a", refused()), ("b", acknowledged)]).unwrap_err();
        assert!(
            error.contains("late send b was acknowledged at t-1 offset 0"),
            "{error}"
        );
    }
}
