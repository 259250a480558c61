//! Transactions: visibility on commit and abort, control markers, the last
//! stable offset, the coordinator's timeout abort, and producer fencing.

use std::time::Duration;

use eddyline_engine::transport::{
    Consumer, ErrorCode, ErrorKind, Isolation, Producer, ProducerRecord, TopicPartition,
    TransportError,
};

use super::support::{
    Ending, OrFail, TransactionSteps, delivered_pairs, describe, ensure, fail, offsets, read_for,
    read_into, read_pairs, record_to, send_all, transaction, verdict, verify_partition_contents,
};
use super::{ConformanceEnv, Cx, Failure};

/// A producer whose epoch was bumped is told so when it calls `call`: the
/// call fails with a `Fenced` error with `code` (Kafka's is
/// [`super::Expectations::fenced_code`]), which is returned.
pub(crate) fn verify_fenced(
    result: Result<(), TransportError>,
    call: &str,
    code: ErrorCode,
) -> Result<TransportError, String> {
    match result {
        Ok(()) => Err(format!(
            "{call} succeeded; a producer whose epoch was bumped must be fenced"
        )),
        Err(error) if error.kind == ErrorKind::Fenced && error.code == code => Ok(error),
        Err(error) => Err(format!(
            "{call} failed with {}, expected Fenced/{code:?}",
            describe(&error)
        )),
    }
}

/// The coordinator's abort of a transaction left open: it came no earlier
/// than the transaction's timeout, and it moved the last stable offset to
/// `end_expected` (past the records and the abort marker).
pub(crate) fn verify_timeout_abort(
    end: i64,
    end_expected: i64,
    aborted_after: Duration,
    timeout: Duration,
) -> Result<(), String> {
    if end != end_expected {
        return Err(format!(
            "after the timeout the read_committed end is {end}, expected {end_expected} (the records and the abort marker)"
        ));
    }
    if aborted_after < timeout {
        return Err(format!(
            "the transaction was aborted after {} ms, before its timeout of {} ms",
            aborted_after.as_millis(),
            timeout.as_millis()
        ));
    }
    Ok(())
}

/// `n` records to `partition` whose keys and values are `{prefix}0`,
/// `{prefix}1`, ...
pub(crate) fn records(partition: &TopicPartition, prefix: &str, n: usize) -> Vec<ProducerRecord> {
    (0..n)
        .map(|i| {
            let text = format!("{prefix}{i}");
            record_to(partition, &text, &text)
        })
        .collect()
}

/// Offsets `first, first + 1, ...` for `n` records.
pub(crate) fn offsets_from(first: i64, n: usize) -> Vec<i64> {
    (first..first + n as i64).collect()
}

pub(super) async fn a_committed_transaction_becomes_visible_and_its_marker_takes_an_offset<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let marker = cx.expect.control_marker_offsets;
    let topic = cx.topic("txn-commit", 2).await?;
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    let mut producer = cx.transactional_producer().await?;

    producer.begin("begin_transaction").await?;
    let first_p0 = records(&p0, "a", 3);
    let first_p1 = records(&p1, "b", 2);
    let delivered_p0 = send_all(&mut producer, &first_p0).await?;
    let delivered_p1 = send_all(&mut producer, &first_p1).await?;
    producer.flush().await.or_fail("flushing")?;
    ensure!(
        offsets(&delivered_p0) == offsets_from(0, 3)
            && offsets(&delivered_p1) == offsets_from(0, 2),
        "the transaction's records got offsets {:?} and {:?}, expected 0..3 and 0..2",
        offsets(&delivered_p0),
        offsets(&delivered_p1)
    );
    let open_committed = cx.range(&p0, Isolation::ReadCommitted).await?;
    let open_uncommitted = cx.range(&p0, Isolation::ReadUncommitted).await?;
    ensure!(
        open_committed == (0, 0) && open_uncommitted == (0, 3),
        "before the commit, {p0} ranges are {open_committed:?} (read_committed) and {open_uncommitted:?} (read_uncommitted); expected (0, 0) and (0, 3)"
    );

    producer.commit("commit_transaction").await?;
    for (partition, written) in [(&p0, 3), (&p1, 2)] {
        cx.await_stable_end(partition, written).await?;
        let when = format!("after committing {written} records (and their commit marker)");
        cx.expect_ranges(partition, (0, written + marker), &when)
            .await?;
    }

    // A second transaction's records come after the first one's marker.
    let second_p0 = records(&p0, "c", 2);
    let delivered_second = transaction(&mut producer, &second_p0, Ending::Commit, "").await?;
    ensure!(
        offsets(&delivered_second) == offsets_from(3 + marker, 2),
        "the second transaction's records got offsets {:?}, expected {:?} (after the first transaction's marker)",
        offsets(&delivered_second),
        offsets_from(3 + marker, 2)
    );

    let mut expected = delivered_pairs(&first_p0, &delivered_p0);
    expected.extend(delivered_pairs(&second_p0, &delivered_second));
    cx.read_exactly(&p0, Isolation::ReadCommitted, &expected)
        .await?;
    let expected = delivered_pairs(&first_p1, &delivered_p1);
    cx.read_exactly(&p1, Isolation::ReadCommitted, &expected)
        .await?;
    let end = cx.range(&p0, Isolation::ReadCommitted).await?.1;
    cx.note(format!(
        "p0: txn 1 records at {:?}, marker, txn 2 records at {:?}, end offset {end}; p1: txn 1 records at {:?}",
        offsets(&delivered_p0),
        offsets(&delivered_second),
        offsets(&delivered_p1)
    ));
    cx.note(format!(
        "while open: read_committed range {open_committed:?}, read_uncommitted {open_uncommitted:?}"
    ));
    Ok(())
}

pub(super) async fn an_aborted_transaction_is_hidden_from_read_committed<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let p0 = cx.single_partition_topic("txn-abort").await?;
    let mut producer = cx.transactional_producer().await?;

    let aborted = records(&p0, "aborted", 3);
    let delivered_aborted = transaction(&mut producer, &aborted, Ending::LeftOpen, "").await?;
    producer.abort("abort_transaction").await?;

    let committed = records(&p0, "committed", 2);
    let delivered_committed = transaction(&mut producer, &committed, Ending::Commit, "").await?;
    let marker = cx.expect.control_marker_offsets;
    ensure!(
        offsets(&delivered_aborted) == offsets_from(0, 3)
            && offsets(&delivered_committed) == offsets_from(3 + marker, 2),
        "offsets {:?} (aborted) and {:?} (committed), expected 0..3 and {:?} (after the abort marker)",
        offsets(&delivered_aborted),
        offsets(&delivered_committed),
        offsets_from(3 + marker, 2)
    );

    let expected = delivered_pairs(&committed, &delivered_committed);
    cx.read_exactly(&p0, Isolation::ReadCommitted, &expected)
        .await?;
    let mut everything = delivered_pairs(&aborted, &delivered_aborted);
    everything.extend(delivered_pairs(&committed, &delivered_committed));
    cx.read_exactly(&p0, Isolation::ReadUncommitted, &everything)
        .await?;
    let when = "with 5 records and 2 markers written";
    cx.expect_ranges(&p0, (0, 5 + 2 * marker), when).await?;
    cx.note(format!(
        "aborted records at {:?}, abort marker, committed records at {:?}, commit marker; end offset {}",
        offsets(&delivered_aborted),
        offsets(&delivered_committed),
        5 + 2 * marker
    ));
    Ok(())
}

pub(super) async fn an_open_transaction_holds_read_committed_readers_at_the_lso<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let p0 = cx.single_partition_topic("lso").await?;
    let mut plain = cx.producer(None).await?;
    let mut transactional = cx.transactional_producer().await?;

    let before = records(&p0, "before", 2);
    let delivered_before = send_all(&mut plain, &before).await?;
    let open = records(&p0, "open", 2);
    let delivered_open = transaction(&mut transactional, &open, Ending::LeftOpen, "").await?;
    let after = records(&p0, "after", 2);
    let delivered_after = send_all(&mut plain, &after).await?;
    ensure!(
        offsets(&delivered_before) == offsets_from(0, 2)
            && offsets(&delivered_open) == offsets_from(2, 2)
            && offsets(&delivered_after) == offsets_from(4, 2),
        "offsets {:?}, {:?}, {:?}; expected 0..2, 2..4, 4..6",
        offsets(&delivered_before),
        offsets(&delivered_open),
        offsets(&delivered_after)
    );

    let committed_range = cx.range(&p0, Isolation::ReadCommitted).await?;
    let uncommitted_range = cx.range(&p0, Isolation::ReadUncommitted).await?;
    ensure!(
        committed_range == (0, 2),
        "with a transaction open at offset 2, the read_committed range is {committed_range:?}, expected (0, 2): the end is the last stable offset"
    );
    ensure!(
        uncommitted_range == (0, 6),
        "the read_uncommitted range is {uncommitted_range:?}, expected (0, 6): the end is the high watermark"
    );

    // A read_committed reader stops at the LSO, even for the later records of
    // another producer; a read_uncommitted reader sees everything.
    let mut reader = cx
        .assigned_reader(std::slice::from_ref(&p0), Isolation::ReadCommitted)
        .await?;
    let mut seen = Vec::new();
    read_into(cx, &mut reader, &mut seen, 2).await?;
    read_for(cx, &mut reader, &mut seen, Duration::from_secs(1)).await?;
    verdict(
        verify_partition_contents(
            &p0.to_string(),
            &read_pairs(&seen),
            &delivered_pairs(&before, &delivered_before),
        )
        .map_err(|e| format!("read_committed behind an open transaction: {e}")),
    )?;
    let mut everything = delivered_pairs(&before, &delivered_before);
    everything.extend(delivered_pairs(&open, &delivered_open));
    everything.extend(delivered_pairs(&after, &delivered_after));
    cx.read_exactly(&p0, Isolation::ReadUncommitted, &everything)
        .await?;

    // The commit releases the same reader: it now sees the transaction and
    // the records behind it.
    transactional.commit("commit_transaction").await?;
    read_into(cx, &mut reader, &mut seen, 6).await?;
    verdict(
        verify_partition_contents(&p0.to_string(), &read_pairs(&seen), &everything)
            .map_err(|e| format!("read_committed after the commit: {e}")),
    )?;
    reader.close().await.or_fail("closing")?;
    cx.await_stable_end(&p0, 6).await?;
    let marker = cx.expect.control_marker_offsets;
    cx.expect_ranges(&p0, (0, 6 + marker), "after the commit")
        .await?;
    cx.note(format!(
        "open txn at 2..4: read_committed range {committed_range:?}, read_uncommitted {uncommitted_range:?}; after commit end {}",
        6 + marker
    ));
    Ok(())
}

pub(super) async fn a_transaction_left_open_past_its_timeout_is_aborted<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const TIMEOUT_MS: u32 = 2_000;
    let p0 = cx.single_partition_topic("txn-timeout").await?;
    let id = cx.name("txn");
    let mut producer = cx
        .producer_with(Some(&id), |config| {
            config.transaction_timeout_ms = TIMEOUT_MS
        })
        .await?;
    // Taken before the transaction begins on the coordinator (at its first
    // AddPartitionsToTxn), so "aborted after" is never shorter than the truth.
    let opened_at = cx.env.elapsed();
    let abandoned = records(&p0, "abandoned", 2);
    let delivered = transaction(&mut producer, &abandoned, Ending::LeftOpen, "").await?;

    let marker = cx.expect.control_marker_offsets;
    // The coordinator aborts on its own: the LSO moves past the records and
    // the abort marker without any call from the producer.
    let deadline = cx.deadline();
    let (end, aborted_after) = loop {
        let (_, end) = cx.range(&p0, Isolation::ReadCommitted).await?;
        if end > 0 {
            break (end, cx.env.elapsed().saturating_sub(opened_at));
        }
        if cx.env.elapsed() >= deadline {
            fail!(
                "the transaction was still open {} ms after it began (timeout {TIMEOUT_MS} ms)",
                cx.env.elapsed().saturating_sub(opened_at).as_millis()
            );
        }
        cx.env.sleep(Duration::from_millis(200)).await;
    };
    let timeout = Duration::from_millis(u64::from(TIMEOUT_MS));
    verdict(verify_timeout_abort(
        end,
        2 + marker,
        aborted_after,
        timeout,
    ))?;
    let read = cx
        .read(std::slice::from_ref(&p0), Isolation::ReadCommitted, 0)
        .await?;
    ensure!(
        read.is_empty(),
        "read_committed sees records of a transaction the coordinator aborted: {:?}",
        read_pairs(&read)
    );
    let expected = delivered_pairs(&abandoned, &delivered);
    cx.read_exactly(&p0, Isolation::ReadUncommitted, &expected)
        .await?;

    // The producer learns of it when it tries to commit.
    // The abort bumped the producer epoch.
    let call = "the late commit of a transaction the coordinator aborted";
    let error = verdict(verify_fenced(
        producer.commit_transaction().await,
        call,
        cx.expect.fenced_code,
    ))?;
    let visible = cx
        .read(std::slice::from_ref(&p0), Isolation::ReadCommitted, 0)
        .await?;
    ensure!(
        visible.is_empty(),
        "a late commit made aborted records visible: {:?}",
        read_pairs(&visible)
    );
    cx.note(format!(
        "aborted by the coordinator {} ms after it began (timeout {TIMEOUT_MS} ms); the late commit failed with {}",
        aborted_after.as_millis(),
        describe(&error)
    ));
    Ok(())
}

pub(super) async fn a_second_init_transactions_fences_the_first_producer<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let p0 = cx.single_partition_topic("fencing").await?;
    let id = cx.name("txn");
    let mut first = cx.producer(Some(&id)).await?;
    let zombie = records(&p0, "zombie", 2);
    let delivered_zombie = transaction(&mut first, &zombie, Ending::LeftOpen, " (first)").await?;

    // The new incarnation's init bumps the epoch and aborts the open transaction.
    let mut second = cx.producer(Some(&id)).await?;
    let call = "the fenced producer's commit";
    let error = verdict(verify_fenced(
        first.commit_transaction().await,
        call,
        cx.expect.fenced_code,
    ))?;
    let again = match first.begin_transaction().await {
        Ok(()) => fail!("the fenced producer began a new transaction"),
        Err(again) => again,
    };
    ensure!(
        again.kind == ErrorKind::Fenced,
        "after being fenced, begin_transaction failed with {}, expected kind Fenced",
        describe(&again)
    );

    let current = records(&p0, "current", 1);
    let delivered_current = transaction(&mut second, &current, Ending::Commit, " (second)").await?;
    let marker = cx.expect.control_marker_offsets;
    ensure!(
        offsets(&delivered_current) == vec![2 + marker],
        "the new incarnation's record got offset {:?}, expected {} (after the abort marker its init wrote)",
        offsets(&delivered_current),
        2 + marker
    );
    let expected = delivered_pairs(&current, &delivered_current);
    cx.read_exactly(&p0, Isolation::ReadCommitted, &expected)
        .await?;
    cx.note(format!(
        "fenced commit: {}; fenced begin: {}; zombie records at {:?} aborted, new record at {:?}",
        describe(&error),
        describe(&again),
        offsets(&delivered_zombie),
        offsets(&delivered_current)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_error_with_another_kind_or_code_fails() {
        let code = ErrorCode::ProducerFenced;
        let fenced = TransportError::new(ErrorKind::Fenced, code, "fenced");
        assert_eq!(
            verify_fenced(Err(fenced.clone()), "commit", code),
            Ok(fenced)
        );
        for wrong in [
            TransportError::new(ErrorKind::Fenced, ErrorCode::InvalidProducerEpoch, "old"),
            TransportError::new(ErrorKind::Abortable, code, "abortable"),
        ] {
            let error = verify_fenced(Err(wrong), "commit", code).unwrap_err();
            assert!(error.starts_with("commit failed with"), "{error}");
        }
        let error = verify_fenced(Ok(()), "commit", code).unwrap_err();
        assert!(error.starts_with("commit succeeded"), "{error}");
    }

    #[test]
    fn an_abort_before_the_timeout_or_without_its_marker_fails() {
        let timeout = Duration::from_millis(2_000);
        let on_time = Duration::from_millis(2_600);
        assert_eq!(verify_timeout_abort(3, 3, on_time, timeout), Ok(()));
        assert!(verify_timeout_abort(2, 3, on_time, timeout).is_err());
        let early = Duration::from_millis(1_999);
        let error = verify_timeout_abort(3, 3, early, timeout).unwrap_err();
        assert!(error.contains("before its timeout"), "{error}");
    }
}
