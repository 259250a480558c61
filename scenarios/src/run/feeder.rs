//! The feeder: creates the topics, then writes the workload at its send
//! times, and leaves the end offset of every input partition.

use std::collections::BTreeMap;
use std::rc::Rc;

use eddyline_engine::checkpoint::ensure_topic;
use eddyline_engine::transport::{Consumer, Producer, ProducerRecord, Transport};
use eddyline_sim::cluster::{ClusterHandle, SimCluster};

use super::shared::{
    Shared, consumer_config, create_topic, partitions_of, producer_config, sleep_ms, transport,
    wait_ready,
};
use crate::workload::InputRecord;

/// The Kafka topic store's topic, when the workers use it.
pub(super) const CHECKPOINT_TOPIC: &str = "checkpoints";

/// What the feeder creates and writes.
pub(super) struct FeederPlan {
    pub(super) input: String,
    /// Output, late and dead-letter topics.
    pub(super) outputs: Vec<String>,
    pub(super) partitions: i32,
    pub(super) replication: i16,
    pub(super) checkpoint_topic: bool,
    pub(super) records: Vec<InputRecord>,
}

pub(super) fn add_feeder(cluster: &mut SimCluster, plan: FeederPlan, shared: Rc<Shared>) {
    let handle = cluster.handle();
    cluster.client("feeder", async move {
        wait_ready(&handle).await;
        create_topics(&handle, &plan).await?;
        // Faults start once the topics exist (a three-replica topic needs
        // three live brokers, as in Kafka).
        shared.topics_ready.set(true);
        send_all(&handle, &plan).await?;
        let ends = read_ends(&handle, &plan).await?;
        *shared.ends.borrow_mut() = Some(ends);
        Ok(())
    });
}

async fn create_topics(handle: &ClusterHandle, plan: &FeederPlan) -> turmoil::Result {
    let transport = transport(handle);
    create_topic(&transport, &plan.input, plan.partitions, plan.replication).await?;
    for topic in &plan.outputs {
        create_topic(&transport, topic, plan.partitions, plan.replication).await?;
    }
    if plan.checkpoint_topic {
        let admin = transport.admin().await?;
        ensure_topic(&admin, CHECKPOINT_TOPIC, 2, plan.replication).await?;
    }
    Ok(())
}

/// Sends every record at its send time (ms after the first), each to its
/// partition, then flushes.
async fn send_all(handle: &ClusterHandle, plan: &FeederPlan) -> turmoil::Result {
    let mut producer = transport(handle)
        .producer(&producer_config("feeder"))
        .await?;
    let start_ms = handle.now_ms();
    for record in &plan.records {
        let due_ms = start_ms + record.send_ms;
        let now_ms = handle.now_ms();
        if due_ms > now_ms {
            sleep_ms(due_ms - now_ms).await;
        }
        producer.send(ProducerRecord {
            topic: plan.input.clone(),
            partition: Some(record.partition),
            key: Some(record.key.clone().into_bytes()),
            value: Some(record.value.clone()),
            timestamp_ms: Some(record.event_time_ms),
            headers: Vec::new(),
        })?;
    }
    producer.flush().await?;
    Ok(())
}

async fn read_ends(
    handle: &ClusterHandle,
    plan: &FeederPlan,
) -> Result<super::shared::Ends, Box<dyn std::error::Error>> {
    let mut reader = transport(handle)
        .consumer(&consumer_config("ends", None))
        .await?;
    let mut ends = BTreeMap::new();
    for partition in partitions_of(&plan.input, plan.partitions) {
        let (_, end) = reader.offsets_range(&partition).await?;
        ends.insert(partition, end);
    }
    Ok(ends)
}
