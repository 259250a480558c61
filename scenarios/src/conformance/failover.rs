//! Losing a partition leader: acknowledged acks=all writes survive, and the
//! idempotent producer's retries of in-flight batches are written once.

use std::cell::Cell;
use std::time::Duration;

use eddyline_engine::transport::{Isolation, Producer, ProducerRecord, TopicPartition};

use super::log::{verify_deliveries, verify_read_back};
use super::support::{OrFail, record, send_all, verdict};
use super::{BrokerControl, ConformanceEnv, Cx, Failure};

fn needs_control<E: ConformanceEnv>(cx: &Cx<'_, E>) -> Result<(), Failure> {
    if cx.env.broker_control() == BrokerControl::None {
        return Err(Failure::Skip("needs broker control".to_string()));
    }
    Ok(())
}

pub(super) async fn no_acknowledged_write_is_lost_when_the_leader_fails<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const EACH: usize = 20;
    needs_control(cx)?;
    let topic = cx.topic("failover", 1).await?;
    let p0 = TopicPartition::new(&topic, 0);
    let mut producer = cx.producer(None).await?;
    let before: Vec<ProducerRecord> = (0..EACH)
        .map(|i| record(&topic, Some(0), "k", &format!("before-{i}")))
        .collect();
    let mut delivered = send_all(&mut producer, &before).await?;

    let fault = cx.env.fail_leader(&p0).await.map_err(Failure::Fail)?;

    let after: Vec<ProducerRecord> = (0..EACH)
        .map(|i| record(&topic, Some(0), "k", &format!("after-{i}")))
        .collect();
    delivered.extend(send_all(&mut producer, &after).await?);
    producer.flush().await.or_fail("flushing")?;
    let mut all = before;
    all.extend(after);
    verdict(verify_deliveries(&all, &delivered, |_| 0))?;
    let read = cx
        .read(
            std::slice::from_ref(&p0),
            Isolation::ReadCommitted,
            all.len(),
        )
        .await?;
    verdict(verify_read_back(&all, &delivered, &read))?;
    cx.note(fault);
    cx.note(format!(
        "{EACH} records acknowledged before the fault (offsets 0..{EACH}) and {EACH} after all read back in place"
    ));
    Ok(())
}

pub(super) async fn records_in_flight_when_the_leader_fails_are_written_once<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const WAVES: usize = 20;
    const PER_WAVE: usize = 10;
    const WAVE_GAP: Duration = Duration::from_millis(20);
    needs_control(cx)?;
    let topic = cx.topic("in-flight", 1).await?;
    let p0 = TopicPartition::new(&topic, 0);
    let mut producer = cx.producer(None).await?;
    let records: Vec<ProducerRecord> = (0..WAVES * PER_WAVE)
        .map(|i| record(&topic, Some(0), "k", &format!("r-{i}")))
        .collect();

    // Waves of sends keep batches in flight while the env takes the leader
    // away; the producer retries whatever was not acknowledged, and the
    // broker must de-duplicate what it had already appended.
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
            let mut delivered = Vec::with_capacity(pending.len());
            for (index, delivery) in pending.into_iter().enumerate() {
                delivered.push(
                    delivery
                        .await
                        .or_fail(&format!("delivering record {index}"))?,
                );
            }
            producer.flush().await.or_fail("flushing")?;
            Ok::<_, Failure>(delivered)
        },
        async {
            env.sleep(WAVE_GAP * 3).await;
            let started_after_waves = waves_sent.get();
            let outcome = env.fail_leader(&p0).await;
            (outcome, started_after_waves, waves_sent.get())
        }
    );
    let (fault, waves_at_fault_start, waves_at_fault_end) = fault;
    let fault = fault.map_err(Failure::Fail)?;
    let delivered = sent?;
    verdict(verify_deliveries(&records, &delivered, |_| 0))?;
    let read = cx
        .read(
            std::slice::from_ref(&p0),
            Isolation::ReadCommitted,
            records.len(),
        )
        .await?;
    verdict(verify_read_back(&records, &delivered, &read))?;
    cx.note(fault);
    cx.note(format!(
        "the fault began after {waves_at_fault_start} of {WAVES} waves and ended after {waves_at_fault_end}; all {} records written once, in order",
        records.len()
    ));
    Ok(())
}
