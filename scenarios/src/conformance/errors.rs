//! Error codes a user meets: existing and missing topics, and transactional
//! calls out of order.

use eddyline_engine::transport::{Admin, ErrorCode, NewTopic, Producer, TransportError};

use super::support::{
    OrFail, TransactionSteps, describe, ensure, record, send_one, verdict, verify_refusal,
};
use super::{ConformanceEnv, Cx, Failure};

/// [`verify_refusal`] as a check result.
fn refused_with<T: std::fmt::Debug>(
    result: Result<T, TransportError>,
    call: &str,
    code: ErrorCode,
) -> Result<TransportError, Failure> {
    verdict(verify_refusal(result, call, code))
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
    let error = refused_with(
        again,
        "creating an existing topic",
        ErrorCode::TopicAlreadyExists,
    )?;
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
    let mut last = None;
    for call in [
        "partition_count of a missing topic",
        // Asking must not create it (brokers may auto-create topics on
        // metadata requests).
        "partition_count of a missing topic asked a second time (did asking create it?)",
    ] {
        let answer = admin.partition_count(&missing).await;
        last = Some(refused_with(
            answer,
            call,
            ErrorCode::UnknownTopicOrPartition,
        )?);
    }
    let error = last.expect("the topic was asked for");
    cx.note(format!("missing topic: {}", describe(&error)));
    Ok(())
}

pub(super) async fn committing_without_a_transaction_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let mut producer = cx.transactional_producer().await?;
    let error = refused_with(
        producer.commit_transaction().await,
        "commit_transaction without begin",
        ErrorCode::InvalidState,
    )?;
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
        let result = send_one(&mut producer, record(topic, Some(partition), "k", "v")).await;
        let call = format!("sending to {what}");
        let error = refused_with(result, &call, ErrorCode::UnknownTopicOrPartition)?;
        let after_ms = cx.env.elapsed().saturating_sub(started).as_millis();
        outcomes.push(format!("{what}: {} after {after_ms} ms", describe(&error)));
    }
    cx.note(outcomes.join("; "));
    Ok(())
}
