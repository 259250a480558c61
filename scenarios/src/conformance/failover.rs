//! Losing a partition leader: acknowledged acks=all writes survive, and the
//! idempotent producer's retries of in-flight batches are written once.

use std::cell::Cell;
use std::time::Duration;

use eddyline_engine::transport::{
    Admin, Consumer, Delivered, Isolation, Producer, ProducerRecord, TopicPartition,
};

use super::log::{verify_deliveries, verify_read_back};
use super::support::{
    OrFail, TransactionSteps, at, await_deliveries, committed_offsets, ensure, outside_the_group,
    record_to, send_all, transaction_with_offsets, verdict,
};
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
