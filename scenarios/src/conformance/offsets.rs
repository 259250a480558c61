//! Committed offsets: metadata round trips, transactional offsets, and
//! KIP-447's stable offsets.

use std::time::Duration;

use eddyline_engine::transport::{
    Consumer, Isolation, OffsetAndMetadata, Producer, ProducerConfig, TopicPartition,
};

use super::support::{
    OrFail, TransactionSteps, at, committed_offsets, describe, fail, outside_the_group, record_to,
    send_all, transaction_with_offsets, verdict,
};
use super::transactions::verify_fenced;
use super::{ConformanceEnv, Cx, Failure};

/// Compares what `committed` returned with what is expected, per partition.
pub(crate) fn verify_committed(
    partitions: &[TopicPartition],
    read: &[Option<OffsetAndMetadata>],
    expected: &[Option<OffsetAndMetadata>],
) -> Result<(), String> {
    if read.len() != partitions.len() {
        return Err(format!(
            "committed() answered {} entries for {} partitions",
            read.len(),
            partitions.len()
        ));
    }
    for ((partition, read), expected) in partitions.iter().zip(read).zip(expected) {
        if read != expected {
            return Err(format!(
                "{partition}: committed is {read:?}, expected {expected:?}"
            ));
        }
    }
    Ok(())
}

/// `committed()` asked under read_committed while a transaction held
/// offsets: it answered with the transaction's offset, and only once the
/// transaction had committed (no earlier than `hold`, how long the
/// transaction stayed open after the question).
pub(crate) fn verify_waited_for_stable_offsets(
    read: &[Option<OffsetAndMetadata>],
    expected: &OffsetAndMetadata,
    answered_after: Duration,
    committed_after: Duration,
    hold: Duration,
) -> Result<(), String> {
    if read != [Some(expected.clone())] {
        return Err(format!(
            "committed() answered {read:?} after {} ms, while the transaction (committed at {} ms) held offset {}: it must wait for stable offsets",
            answered_after.as_millis(),
            committed_after.as_millis(),
            expected.offset
        ));
    }
    if answered_after < hold {
        return Err(format!(
            "committed() answered after {} ms, before the transaction committed",
            answered_after.as_millis()
        ));
    }
    Ok(())
}

/// After the coordinator aborted a transaction that held offsets, the
/// group's committed offset is the one committed before it (`previous`),
/// never the aborted transaction's (`aborted`): Kafka's group coordinator
/// drops a transaction's pending offsets when its abort marker reaches
/// `__consumer_offsets` (`GroupMetadataManager.handleTxnCompletion`).
pub(crate) fn verify_offsets_released(
    read: &[Option<OffsetAndMetadata>],
    previous: &OffsetAndMetadata,
    aborted: &OffsetAndMetadata,
) -> Result<(), String> {
    match read {
        [Some(offset)] if offset == previous => Ok(()),
        [Some(offset)] if offset == aborted => Err(format!(
            "committed() answered the aborted transaction's offset {} {:?}: the coordinator's abort must discard it",
            offset.offset, offset.metadata
        )),
        other => Err(format!(
            "committed() answered {other:?} after the coordinator's abort, expected the offset committed before it: {} {:?}",
            previous.offset, previous.metadata
        )),
    }
}

/// Waits until the coordinator has aborted the transaction whose first
/// record is at `open_at`: the read_committed end (the LSO) moves past it.
/// Returns how long after `since` that was seen.
async fn await_coordinator_abort<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
    partition: &TopicPartition,
    open_at: i64,
    since: Duration,
) -> Result<Duration, Failure> {
    let deadline = cx.deadline();
    loop {
        let (_, end) = cx.range(partition, Isolation::ReadCommitted).await?;
        if end > open_at {
            return Ok(cx.env.elapsed().saturating_sub(since));
        }
        if cx.env.elapsed() >= deadline {
            fail!(
                "the transaction at offset {open_at} of {partition} was still open {} ms after it began",
                cx.env.elapsed().saturating_sub(since).as_millis()
            );
        }
        cx.env.sleep(Duration::from_millis(200)).await;
    }
}

pub(super) async fn a_timeout_abort_releases_the_transactions_offsets<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const TIMEOUT_MS: u32 = 2_000;
    let p0 = cx.single_partition_topic("abort-offsets").await?;
    let group = cx.name("group");
    let outside = outside_the_group(&group);
    let id = cx.name("txn");
    let short_timeout = |config: &mut ProducerConfig| config.transaction_timeout_ms = TIMEOUT_MS;
    let mut producer = cx.producer_with(Some(&id), short_timeout).await?;
    let previous = at(5, "committed-before");
    let offsets = [(p0.clone(), previous.clone())];
    let output = record_to(&p0, "k", "committed-output");
    transaction_with_offsets(&mut producer, output, &offsets, &outside, "").await?;
    producer.commit("commit_transaction").await?;

    // The next transaction holds offset 9 and is left open past its timeout.
    let aborted = at(9, "aborted");
    let offsets = [(p0.clone(), aborted.clone())];
    let opened_at = cx.env.elapsed();
    producer.begin("begin_transaction (left open)").await?;
    let abandoned = send_all(&mut producer, &[record_to(&p0, "k", "abandoned")]).await?;
    producer
        .send_offsets_to_transaction(&offsets, &outside)
        .await
        .or_fail("send_offsets_to_transaction (left open)")?;
    let aborted_after = await_coordinator_abort(cx, &p0, abandoned[0].offset, opened_at).await?;

    let mut reader = cx.consumer(Some(&group), Isolation::ReadCommitted).await?;
    let read = committed_offsets(&mut reader, std::slice::from_ref(&p0)).await?;
    verdict(verify_offsets_released(&read, &previous, &aborted))?;
    let call = "the late commit of the transaction the coordinator aborted";
    let fenced = verdict(verify_fenced(
        producer.commit_transaction().await,
        call,
        cx.expect.fenced_code,
    ))?;
    let read = committed_offsets(&mut reader, std::slice::from_ref(&p0)).await?;
    verdict(
        verify_offsets_released(&read, &previous, &aborted)
            .map_err(|e| format!("after the late commit: {e}")),
    )?;

    // A new incarnation of the transactional id commits offsets of its own.
    let mut successor = cx.producer(Some(&id)).await?;
    let next = at(11, "committed-after");
    let offsets = [(p0.clone(), next.clone())];
    let output = record_to(&p0, "k", "successor-output");
    transaction_with_offsets(
        &mut successor,
        output,
        &offsets,
        &outside,
        " (new producer)",
    )
    .await?;
    successor
        .commit("commit_transaction (new producer)")
        .await?;
    let read = committed_offsets(&mut reader, std::slice::from_ref(&p0)).await?;
    verdict(
        verify_committed(std::slice::from_ref(&p0), &read, &[Some(next)])
            .map_err(|e| format!("after the new producer's commit: {e}")),
    )?;
    reader.close().await.or_fail("closing")?;
    cx.note(format!(
        "aborted by the coordinator {} ms after it began (timeout {TIMEOUT_MS} ms); committed() then read offset 5, not 9; the late commit failed with {}; the new producer's offset 11 read back",
        aborted_after.as_millis(),
        describe(&fenced)
    ));
    Ok(())
}

pub(super) async fn a_committed_offset_reads_back_with_its_metadata<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let topic = cx.topic("commits", 3).await?;
    let group = cx.name("group");
    let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(&topic, p)).collect();
    // A checkpoint id as the engine writes it, text that needs escaping in
    // most formats, and non-ASCII text.
    let metadata = r#"checkpoint=17;"quoted";back\slash;ünïcode ✓"#;
    let mut writer = cx.consumer(Some(&group), Isolation::ReadCommitted).await?;
    writer
        .commit(&[
            (partitions[0].clone(), at(5, metadata)),
            (partitions[1].clone(), at(0, "")),
        ])
        .await
        .or_fail("committing offsets")?;
    let expected = vec![Some(at(5, metadata)), Some(at(0, "")), None];
    let read = committed_offsets(&mut writer, &partitions).await?;
    verdict(verify_committed(&partitions, &read, &expected))?;

    // Another client of the group sees the same, and a later commit replaces it.
    let mut other = cx.consumer(Some(&group), Isolation::ReadCommitted).await?;
    let read = committed_offsets(&mut other, &partitions).await?;
    verdict(
        verify_committed(&partitions, &read, &expected).map_err(|e| format!("another client: {e}")),
    )?;
    writer
        .commit(&[(partitions[0].clone(), at(8, "checkpoint=18"))])
        .await
        .or_fail("committing offsets again")?;
    let read = committed_offsets(&mut other, &partitions).await?;
    let expected = vec![Some(at(8, "checkpoint=18")), Some(at(0, "")), None];
    verdict(
        verify_committed(&partitions, &read, &expected)
            .map_err(|e| format!("after a second commit: {e}")),
    )?;
    writer.close().await.or_fail("closing")?;
    other.close().await.or_fail("closing")?;
    cx.note(format!(
        "p0 read back {:?}; p2 (never committed) read back None",
        read[0]
    ));
    Ok(())
}

pub(super) async fn offsets_sent_in_a_transaction_appear_on_commit_only<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let p0 = cx.single_partition_topic("txn-offsets").await?;
    let group = cx.name("group");
    let outside = outside_the_group(&group);
    let mut producer = cx.transactional_producer().await?;
    let mut reader = cx.consumer(Some(&group), Isolation::ReadCommitted).await?;

    // One transaction writing a record and offsets, then ending; what the
    // group's committed offset reads afterwards must be `expected`.
    let mut committed_after =
        async |commit: bool, offset: i64, metadata: &str, expected: OffsetAndMetadata| {
            let output = record_to(&p0, "k", &format!("output-{offset}"));
            let offsets = [(p0.clone(), at(offset, metadata))];
            transaction_with_offsets(&mut producer, output, &offsets, &outside, "").await?;
            if commit {
                producer.commit("commit_transaction").await?;
            } else {
                producer.abort("abort_transaction").await?;
            }
            let read = committed_offsets(&mut reader, std::slice::from_ref(&p0)).await?;
            let what = if commit {
                "after the commit"
            } else {
                "after the abort"
            };
            verdict(
                verify_committed(std::slice::from_ref(&p0), &read, &[Some(expected)])
                    .map_err(|e| format!("{what}: {e}")),
            )
        };
    committed_after(true, 7, "checkpoint=1", at(7, "checkpoint=1")).await?;
    committed_after(false, 9, "checkpoint=2", at(7, "checkpoint=1")).await?;
    reader.close().await.or_fail("closing")?;
    cx.note(
        "committed txn stored offset 7 'checkpoint=1'; the aborted txn's offset 9 was discarded",
    );
    Ok(())
}

pub(super) async fn committed_waits_for_pending_transactional_offsets<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    /// How long the transaction stays open while `committed` is asked.
    const HOLD: Duration = Duration::from_millis(1_500);
    let p0 = cx.single_partition_topic("stable-offsets").await?;
    let group = cx.name("group");
    let outside = outside_the_group(&group);
    let mut producer = cx.transactional_producer().await?;
    let mut reader = cx
        .consumer_with(Some(&group), Isolation::ReadCommitted, |config| {
            config.request_timeout_ms = 15_000;
        })
        .await?;

    let output = record_to(&p0, "k", "output");
    let offsets = [(p0.clone(), at(3, "checkpoint=3"))];
    transaction_with_offsets(&mut producer, output, &offsets, &outside, "").await?;

    let env = cx.env;
    let asked_at = env.elapsed();
    let (read, commit) = tokio::join!(
        async {
            let read = reader.committed(std::slice::from_ref(&p0)).await;
            (read, env.elapsed().saturating_sub(asked_at))
        },
        async {
            env.sleep(HOLD).await;
            let commit = producer.commit_transaction().await;
            (commit, env.elapsed().saturating_sub(asked_at))
        }
    );
    let (read, answered_after) = read;
    let (commit, committed_after) = commit;
    commit.or_fail("commit_transaction")?;
    let read = match read {
        Ok(read) => read,
        Err(error) => fail!(
            "committed() failed after {} ms while the transaction held offsets (it should wait for the commit at {} ms): {error}",
            answered_after.as_millis(),
            committed_after.as_millis()
        ),
    };
    verdict(verify_waited_for_stable_offsets(
        &read,
        &at(3, "checkpoint=3"),
        answered_after,
        committed_after,
        HOLD,
    ))?;
    reader.close().await.or_fail("closing")?;
    cx.note(format!(
        "committed() waited {} ms and returned the transaction's offset once it committed",
        answered_after.as_millis()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answering_before_the_commit_or_without_its_offset_fails() {
        let expected = at(3, "checkpoint=3");
        let hold = Duration::from_millis(1_500);
        let (after, committed) = (Duration::from_millis(1_510), Duration::from_millis(1_505));
        let read = vec![Some(expected.clone())];
        assert_eq!(
            verify_waited_for_stable_offsets(&read, &expected, after, committed, hold),
            Ok(())
        );
        let early = Duration::from_millis(10);
        let error =
            verify_waited_for_stable_offsets(&read, &expected, early, committed, hold).unwrap_err();
        assert!(
            error.contains("before the transaction committed"),
            "{error}"
        );
        for wrong in [vec![None], vec![Some(at(3, ""))], vec![]] {
            assert!(
                verify_waited_for_stable_offsets(&wrong, &expected, after, committed, hold)
                    .is_err()
            );
        }
    }

    #[test]
    fn an_aborted_transactions_offset_or_none_fails_the_release_check() {
        let previous = at(5, "committed-before");
        let aborted = at(9, "aborted");
        let read = vec![Some(previous.clone())];
        assert_eq!(verify_offsets_released(&read, &previous, &aborted), Ok(()));
        let error =
            verify_offsets_released(&[Some(aborted.clone())], &previous, &aborted).unwrap_err();
        assert!(error.contains("aborted transaction's offset 9"), "{error}");
        for wrong in [
            vec![None],
            vec![Some(at(5, ""))],
            vec![],
            vec![read[0].clone(), None],
        ] {
            let error = verify_offsets_released(&wrong, &previous, &aborted).unwrap_err();
            assert!(
                error.contains("expected the offset committed before"),
                "{error}"
            );
        }
    }

    #[test]
    fn lost_or_altered_metadata_fails_the_committed_check() {
        let partitions = vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
        let expected = vec![Some(at(5, "checkpoint=17")), None];
        assert_eq!(verify_committed(&partitions, &expected, &expected), Ok(()));
        for tampered in [
            vec![Some(at(5, "")), None],
            vec![Some(at(5, "checkpoint=1")), None],
            vec![Some(at(4, "checkpoint=17")), None],
            vec![Some(at(5, "checkpoint=17")), Some(at(0, ""))],
            vec![Some(at(5, "checkpoint=17"))],
        ] {
            assert!(verify_committed(&partitions, &tampered, &expected).is_err());
        }
    }
}
