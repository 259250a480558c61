//! Error codes a user meets: existing and missing topics, and transactional
//! calls out of order.

use eddyline_engine::transport::{Admin, ErrorCode, NewTopic, Producer, TransportError};

use super::support::{OrFail, TransactionSteps, describe, ensure, fail, record};
use super::{ConformanceEnv, Cx, Failure};

/// The code of an error the check expected, or a failure saying it succeeded.
fn expect_error<T: std::fmt::Debug>(
    result: Result<T, TransportError>,
    call: &str,
) -> Result<TransportError, Failure> {
    match result {
        Ok(value) => fail!("{call} succeeded with {value:?}; it should have failed"),
        Err(error) => Ok(error),
    }
}

pub(super) async fn creating_a_topic_that_exists_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let topic = cx.topic("exists", 2).await?;
    let (replication_factor, _) = cx.env.replication();
    let admin = cx.admin().await?;
    let again = admin
        .create_topic(&NewTopic {
            name: topic.clone(),
            partitions: 3,
            replication_factor,
            configs: Vec::new(),
        })
        .await;
    let error = expect_error(again, "creating an existing topic")?;
    ensure!(
        error.code == ErrorCode::TopicAlreadyExists,
        "creating an existing topic failed with {}, expected TopicAlreadyExists",
        describe(&error)
    );
    let count = admin
        .partition_count(&topic)
        .await
        .or_fail("partition_count")?;
    ensure!(
        count == 2,
        "the existing topic now has {count} partitions, expected 2 (unchanged)"
    );
    cx.note(format!("create of an existing topic: {}", describe(&error)));
    Ok(())
}

pub(super) async fn asking_for_a_missing_topic_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let missing = cx.name("missing");
    let admin = cx.admin().await?;
    let error = expect_error(
        admin.partition_count(&missing).await,
        "partition_count of a missing topic",
    )?;
    ensure!(
        error.code == ErrorCode::UnknownTopicOrPartition,
        "partition_count of a missing topic failed with {}, expected UnknownTopicOrPartition",
        describe(&error)
    );
    // Asking must not create it (brokers may auto-create topics on metadata requests).
    let error = expect_error(
        admin.partition_count(&missing).await,
        "partition_count asked a second time",
    )?;
    ensure!(
        error.code == ErrorCode::UnknownTopicOrPartition,
        "the second partition_count of a missing topic failed with {}: asking seems to have created it",
        describe(&error)
    );
    cx.note(format!("missing topic: {}", describe(&error)));
    Ok(())
}

pub(super) async fn committing_without_a_transaction_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let mut producer = cx.transactional_producer().await?;
    let error = expect_error(
        producer.commit_transaction().await,
        "commit_transaction without begin",
    )?;
    ensure!(
        error.code == ErrorCode::InvalidState,
        "commit_transaction without begin failed with {}, expected InvalidState",
        describe(&error)
    );
    // The mistake does not break the producer.
    producer
        .begin("begin_transaction after the refused commit")
        .await?;
    producer
        .abort("abort_transaction of an empty transaction")
        .await?;
    cx.note(format!("commit without begin: {}", describe(&error)));
    Ok(())
}

pub(super) async fn sending_to_a_missing_partition_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let topic = cx.topic("two-partitions", 2).await?;
    let missing_topic = cx.name("missing");
    let mut producer = cx.producer(None).await?;
    let mut outcomes = Vec::new();
    for (what, topic, partition) in [
        ("partition 2 of a 2-partition topic", topic.as_str(), 2),
        ("a missing topic", missing_topic.as_str(), 0),
    ] {
        let started = cx.env.elapsed();
        let result = match producer.send(record(topic, Some(partition), "k", "v")) {
            Err(error) => Err(error),
            Ok(delivery) => delivery.await,
        };
        let error = expect_error(result, &format!("sending to {what}"))?;
        let after_ms = cx.env.elapsed().saturating_sub(started).as_millis();
        outcomes.push(format!("{what}: {} after {after_ms} ms", describe(&error)));
        ensure!(
            error.code == ErrorCode::UnknownTopicOrPartition,
            "sending to {what} failed with {}, expected UnknownTopicOrPartition",
            describe(&error)
        );
    }
    cx.note(outcomes.join("; "));
    Ok(())
}
