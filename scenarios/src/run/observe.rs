//! The observer host: samples the group's committed offsets through the
//! run, heals the cluster at the end of the safety phase, waits for the
//! drain (bounded by the liveness bound), stops the workers, waits for
//! every transaction to finish, and reads everything back into the
//! [`Observation`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{Consumer, ConsumerEvent, Message, TopicPartition, Transport};
use eddyline_sim::SimTransport;
use eddyline_sim::cluster::{ClusterHandle, SimCluster};
use eddyline_sim::records::ControlType;

use super::faults::heal;
use super::shared::{
    Shared, consumer_config, partitions_of, sleep_ms, transport, uncommitted_config, wait_ready,
};
use crate::observation::{BatchSeen, MarkerSeen, Observation};

/// How often the committed offsets are sampled and the drain checked.
const SAMPLE_EVERY_MS: u64 = 200;
/// After the stop, how long the workers get for their last checkpoint.
const STOP_GRACE_MS: u64 = 3_000;
/// How long to wait for every transaction to finish after the stop: a
/// frozen or crashed worker's transaction is aborted at its timeout plus
/// the coordinator's abort check.
pub(super) const STABLE_PATIENCE_MS: u64 = 35_000;
/// Polls of a read-back, at most.
const READ_POLLS_MAX: usize = 2_000;
/// Empty polls in a row after which a read-back gives up (a safety net: a
/// read-back normally ends once it has read the last visible record of
/// every partition; long stretches of aborted transactions make many
/// polls in a row empty before that).
const READ_EMPTY_POLLS: usize = 300;

/// The topics the observer reads.
#[derive(Clone)]
pub(super) struct Topics {
    pub(super) group: String,
    pub(super) input: String,
    pub(super) output: String,
    pub(super) late: String,
    pub(super) dead_letter: Option<String>,
    pub(super) partitions: i32,
}

impl Topics {
    fn outputs(&self) -> Vec<String> {
        let mut topics = vec![self.output.clone(), self.late.clone()];
        topics.extend(self.dead_letter.clone());
        topics
    }
}

pub(super) fn add_observer(
    cluster: &mut SimCluster,
    topics: Topics,
    shared: Rc<Shared>,
    observed: Rc<RefCell<Option<Observation>>>,
) {
    let handle = cluster.handle();
    cluster.client("observer", async move {
        wait_ready(&handle).await;
        let mut samples = Samples::new(&handle, &topics).await?;
        while handle.now_ms() < shared.until_ms {
            sleep_ms(SAMPLE_EVERY_MS).await;
            samples.take(&handle).await;
        }
        heal(&handle, &shared);
        let drained_at_ms = drain(&handle, &shared, &mut samples).await;
        shared.done.set(true);
        sleep_ms(STOP_GRACE_MS).await;
        samples.take(&handle).await;
        let unstable = wait_until_stable(&handle, &topics).await;
        let observation = read_back(&handle, &topics, samples.seen, drained_at_ms, unstable).await;
        *observed.borrow_mut() = Some(observation);
        Ok(())
    });
}

/// The group's committed offsets of the input partitions, sampled.
struct Samples {
    group: <SimTransport as Transport>::Consumer,
    partitions: Vec<TopicPartition>,
    seen: BTreeMap<i32, Vec<(u64, i64)>>,
}

impl Samples {
    async fn new(
        handle: &ClusterHandle,
        topics: &Topics,
    ) -> Result<Samples, Box<dyn std::error::Error>> {
        let config = consumer_config("inspector", Some(&topics.group));
        let group = transport(handle).consumer(&config).await?;
        Ok(Samples {
            group,
            partitions: partitions_of(&topics.input, topics.partitions),
            seen: BTreeMap::new(),
        })
    }

    /// Notes every committed offset that changed since the last sample.
    async fn take(&mut self, handle: &ClusterHandle) -> Option<BTreeMap<i32, i64>> {
        let committed = self.group.committed(&self.partitions).await.ok()?;
        let now_ms = handle.now_ms();
        let mut current = BTreeMap::new();
        for (tp, committed) in self.partitions.iter().zip(committed) {
            let Some(offset) = committed.map(|c| c.offset) else {
                continue;
            };
            current.insert(tp.partition, offset);
            let samples = self.seen.entry(tp.partition).or_default();
            if samples.last().is_none_or(|&(_, last)| last != offset) {
                samples.push((now_ms, offset));
            }
        }
        Some(current)
    }
}

/// Waits until every task committed the end of its input (and the group's
/// offsets say so), up to the deadline; when it did, if it did.
async fn drain(handle: &ClusterHandle, shared: &Shared, samples: &mut Samples) -> Option<u64> {
    while handle.now_ms() < shared.deadline_ms {
        sleep_ms(SAMPLE_EVERY_MS).await;
        let committed = samples.take(handle).await;
        let Some(ends) = shared.ends.borrow().clone() else {
            continue;
        };
        let finished = shared.finished.borrow().len() >= ends.len();
        let at_end = committed.is_some_and(|committed| {
            ends.iter()
                .all(|(tp, end)| committed.get(&tp.partition).copied().unwrap_or(0) >= *end)
        });
        if finished && at_end {
            return Some(handle.now_ms());
        }
    }
    None
}

/// Waits until every output partition's last stable offset reaches its
/// high watermark; returns those that never did.
async fn wait_until_stable(handle: &ClusterHandle, topics: &Topics) -> BTreeSet<String> {
    let transport = transport(handle);
    let (Ok(mut committed), Ok(mut uncommitted)) = (
        transport.consumer(&consumer_config("lso", None)).await,
        transport.consumer(&uncommitted_config("hw")).await,
    ) else {
        return BTreeSet::new();
    };
    let deadline_ms = handle.now_ms() + STABLE_PATIENCE_MS;
    loop {
        let mut unstable = BTreeSet::new();
        for topic in topics.outputs() {
            for tp in partitions_of(&topic, topics.partitions) {
                let lso = committed.offsets_range(&tp).await.map(|(_, end)| end);
                let hw = uncommitted.offsets_range(&tp).await.map(|(_, end)| end);
                if !matches!((lso, hw), (Ok(lso), Ok(hw)) if lso == hw) {
                    unstable.insert(tp.to_string());
                }
            }
        }
        if unstable.is_empty() || handle.now_ms() >= deadline_ms {
            return unstable;
        }
        sleep_ms(500).await;
    }
}

async fn read_back(
    handle: &ClusterHandle,
    topics: &Topics,
    committed_offsets: BTreeMap<i32, Vec<(u64, i64)>>,
    drained_at_ms: Option<u64>,
    unstable: BTreeSet<String>,
) -> Observation {
    let dead_letter = match &topics.dead_letter {
        Some(topic) => read_topic(handle, topic, topics.partitions).await,
        None => BTreeMap::new(),
    };
    let (output_batches, output_markers) = leader_logs(handle, &topics.output, topics.partitions);
    Observation {
        input: read_topic(handle, &topics.input, topics.partitions).await,
        output: read_topic(handle, &topics.output, topics.partitions).await,
        late: read_topic(handle, &topics.late, topics.partitions).await,
        dead_letter,
        output_batches,
        output_markers,
        committed_offsets,
        drained: drained_at_ms.is_some(),
        drained_at_ms,
        unstable,
    }
}

/// A topic read back with `read_committed`, per partition in offset order.
async fn read_topic(
    handle: &ClusterHandle,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<Message>> {
    let mut by_partition: BTreeMap<i32, Vec<Message>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    let Ok(mut reader) = transport(handle)
        .consumer(&consumer_config(&format!("read-{topic}"), None))
        .await
    else {
        return by_partition;
    };
    let all = partitions_of(topic, partitions);
    let mut ends = BTreeMap::new();
    for tp in &all {
        if let Ok((_, end)) = reader.offsets_range(tp).await {
            ends.insert(tp.partition, end);
        }
    }
    if reader.assign(&all).await.is_err() {
        return by_partition;
    }
    let last_visible = last_visible_offsets(handle, topic, partitions);
    let mut empty_polls = 0;
    for _ in 0..READ_POLLS_MAX {
        let events = reader
            .poll(500, Duration::from_millis(100))
            .await
            .unwrap_or_default();
        let messages: Vec<Message> = events
            .into_iter()
            .filter_map(|event| match event {
                ConsumerEvent::Message(message) => Some(message),
                _ => None,
            })
            .collect();
        empty_polls = if messages.is_empty() {
            empty_polls + 1
        } else {
            0
        };
        for message in messages {
            by_partition
                .entry(message.partition)
                .or_default()
                .push(message);
        }
        let read_to_end = by_partition.iter().all(|(partition, messages)| {
            let end = ends.get(partition).copied().unwrap_or(0);
            let last_seen = messages.last().map(|m| m.offset);
            match last_visible.get(partition) {
                Some(Some(last)) => last_seen.is_some_and(|seen| seen >= *last),
                Some(None) => true,
                None => last_seen.map_or(end == 0, |seen| seen + 1 >= end),
            }
        });
        if read_to_end || empty_polls >= READ_EMPTY_POLLS {
            break;
        }
    }
    for messages in by_partition.values_mut() {
        messages.sort_by_key(|m| m.offset);
        messages.dedup_by_key(|m| m.offset);
    }
    by_partition
}

/// For each partition of `topic`, the offset of the last record a
/// `read_committed` reader can see, from the leader's log below its high
/// watermark: the last data record that is not transactional, or whose
/// producer's next marker in that partition commits it (`None`: no such
/// record). Absent for a partition without a live leader. A read-back is
/// complete once it has read that record: only then, because a stretch of
/// aborted transactions reads as empty polls.
fn last_visible_offsets(
    handle: &ClusterHandle,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Option<i64>> {
    let mut found = BTreeMap::new();
    for tp in partitions_of(topic, partitions) {
        let Some(leader) = handle.leader_of(&tp) else {
            continue;
        };
        let Some((log, high_watermark)) = handle.replica_log(leader, &tp) else {
            continue;
        };
        // Backwards: the fate of a transactional batch is the first marker
        // of its producer after it, the latest one met so far.
        let mut fate: BTreeMap<i64, bool> = BTreeMap::new();
        let mut last = None;
        for batch in log.iter().rev().filter(|b| b.base_offset < high_watermark) {
            if let Some(control) = batch.control {
                fate.insert(batch.producer_id, control == ControlType::Commit);
                continue;
            }
            let visible =
                !batch.transactional || fate.get(&batch.producer_id).copied() == Some(true);
            if visible && !batch.records.is_empty() {
                last = Some(batch.next_offset() - 1);
                break;
            }
        }
        found.insert(tp.partition, last);
    }
    found
}

/// The output topic's data batches and transaction markers, from each
/// partition's leader's log, in log order.
fn leader_logs(
    handle: &ClusterHandle,
    topic: &str,
    partitions: i32,
) -> (Vec<BatchSeen>, Vec<MarkerSeen>) {
    let mut batches = Vec::new();
    let mut markers = Vec::new();
    for tp in partitions_of(topic, partitions) {
        let Some(leader) = handle.leader_of(&tp) else {
            continue;
        };
        let Some((log, _)) = handle.replica_log(leader, &tp) else {
            continue;
        };
        for batch in log {
            match batch.control {
                Some(control) => markers.push(MarkerSeen {
                    partition: tp.partition,
                    offset: batch.base_offset,
                    producer_id: batch.producer_id,
                    producer_epoch: batch.producer_epoch,
                    commit: control == ControlType::Commit,
                }),
                None => batches.push(BatchSeen {
                    partition: tp.partition,
                    base_offset: batch.base_offset,
                    records: batch.offset_count(),
                    producer_id: batch.producer_id,
                    producer_epoch: batch.producer_epoch,
                    transactional: batch.transactional,
                }),
            }
        }
    }
    (batches, markers)
}
