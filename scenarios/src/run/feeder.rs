//! The feeder: creates the topics, then writes the workload at its send
//! times, and leaves the end offset of every input partition.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use eddyline_engine::checkpoint::ensure_topic;
use eddyline_engine::transport::{Consumer, ErrorKind, Producer, Transport, TransportResult};
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
        send_all(&handle, &plan, &shared).await?;
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

/// How many times the feeder replaces a producer that failed for good
/// before the run fails.
const PRODUCER_REPLACEMENTS_MAX: u32 = 8;

/// Sends every record at its send time (ms after the first), each to its
/// partition, then flushes.
///
/// The feeder is the world outside the job, and writes as a careful
/// application does: an idempotent producer can fail for good (librdkafka's
/// "sequence desynchronization", for instance, when a partition's stale
/// leader answers a request held by a network partition with
/// OUT_OF_ORDER_SEQUENCE_NUMBER for the head of the line), and the feeder
/// then replaces it and sends again every record whose delivery did not
/// succeed, in order, before going on. A record whose request reached the
/// log before the failure may so be written twice; the checker judges the
/// job against the input as committed, duplicates included.
async fn send_all(handle: &ClusterHandle, plan: &FeederPlan, shared: &Shared) -> turmoil::Result {
    let transport = transport(handle);
    let start_ms = handle.now_ms();
    let mut sending = Sending {
        unconfirmed: Vec::new(),
        resend: VecDeque::new(),
        next: 0,
    };
    let mut replacements = 0;
    loop {
        let mut producer = transport.producer(&producer_config("feeder")).await?;
        match sending.run(handle, plan, &mut producer, start_ms).await {
            Ok(()) => return Ok(()),
            Err(error)
                if error.kind == ErrorKind::Fatal && replacements < PRODUCER_REPLACEMENTS_MAX =>
            {
                replacements += 1;
                shared
                    .feeder_failures
                    .borrow_mut()
                    .push(error.message.clone());
                // A failed producer has failed every delivery it had not
                // confirmed: these resolve at once.
                for (index, delivery) in std::mem::take(&mut sending.unconfirmed) {
                    if delivery.await.is_err() {
                        sending.resend.push_back(index);
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The feeder's progress through the workload across producers.
struct Sending<D> {
    /// Records sent by the current producer, with their deliveries.
    unconfirmed: Vec<(usize, D)>,
    /// Records to send again first (their delivery failed), in order.
    resend: VecDeque<usize>,
    /// The next record of the workload to send.
    next: usize,
}

impl<D> Sending<D> {
    async fn run<P: Producer<Delivery = D>>(
        &mut self,
        handle: &ClusterHandle,
        plan: &FeederPlan,
        producer: &mut P,
        start_ms: u64,
    ) -> TransportResult<()> {
        let record = |index: usize| plan.records[index].producer_record(&plan.input);
        while let Some(&index) = self.resend.front() {
            self.unconfirmed
                .push((index, producer.send(record(index))?));
            self.resend.pop_front();
        }
        while self.next < plan.records.len() {
            let due_ms = start_ms + plan.records[self.next].send_ms;
            let now_ms = handle.now_ms();
            if due_ms > now_ms {
                sleep_ms(due_ms - now_ms).await;
            }
            self.unconfirmed
                .push((self.next, producer.send(record(self.next))?));
            self.next += 1;
        }
        producer.flush().await
    }
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
