//! The Kafka topic store: snapshots as chunk records of a compacted topic,
//! written inside the worker's transaction.
//!
//! **Layout.** A snapshot's [envelope](super::envelope) is cut into chunks
//! of at most [`TopicStoreOptions::chunk_bytes`] (512 KiB by default, well
//! below Kafka's default 1 MB `message.max.bytes`). Chunk `i` of task `t`
//! of job `j` is one record with key `j/t/i`, to partition
//! `t % partitions` (explicit: never the key's hash), with headers
//! `eddy.checkpoint`, `eddy.incarnation`, `eddy.chunk` and `eddy.chunks`
//! (decimal). The keys do not name the checkpoint, so in the compacted
//! topic ([`ensure_topic`]: `cleanup.policy=compact`) each chunk of a
//! newer snapshot replaces the same chunk of the older one; when the newer
//! snapshot has fewer chunks, [`CheckpointStore::write`] also returns
//! tombstones (same key, no value) for the chunk indices beyond its count
//! that the task's previous snapshot used, as far as this store instance
//! knows. The worker produces all of them in the checkpoint's transaction,
//! so chunks and tombstones become visible exactly when the checkpoint
//! commits, and never if it aborts. Nor do aborted chunks ever replace
//! committed ones in compaction: Kafka's log cleaner leaves aborted batches
//! out of the key map it compacts by (`Cleaner.buildOffsetMapForSegment`
//! in `kafka.log.LogCleaner`, 3.8), and it cleans only below the last
//! stable offset, so the chunks of an open transaction take no part
//! (`LogCleanerManager.cleanableOffsets`).
//!
//! **Reading.** [`CheckpointStore::read`] opens a read_committed consumer
//! without a group, assigns the task's partition, seeks to its first
//! offset and reads towards the end offset `offsets_range` gave, keeping
//! the chunks whose headers name exactly the checkpoint and incarnation
//! asked for (a zombie's aborted chunks are never seen). It stops as soon
//! as every chunk is there, at the end offset, or after
//! [`TopicStoreOptions::empty_polls_max`] empty polls in a row (a
//! transaction's commit marker takes the last offset and is never
//! delivered, so a read that does not find its snapshot usually ends this
//! way). Then the chunks are joined and the envelope checked; a chunk
//! missing is [`Error::MissingSnapshot`]. Every transport error becomes
//! [`Error::Store`] naming the topic and partition.
//!
//! **Collecting.** Compaction does it: [`CheckpointStore::collect`]
//! removes nothing and returns 0. A snapshot older than the task's newest
//! committed one reads back only while the log cleaner has not yet
//! replaced its chunks (always in the simulator, which does not compact).
//! The call still serves a purpose: the worker calls it once checkpoint
//! `below` committed, which tells the store which chunk counts are now the
//! committed ones (see [`CheckpointStore::write`] on tombstones).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::envelope::{self, check_id, check_job, check_task};
use super::{CheckpointStore, SnapshotId};
use crate::error::{Error, Result};
use crate::transport::{
    Admin, Bytes, Consumer, ConsumerConfig, ConsumerEvent, ErrorCode, ErrorKind, Header, Isolation,
    Message, NewTopic, OffsetReset, ProducerRecord, TopicPartition, Transport, TransportError,
};

const HEADER_CHECKPOINT: &str = "eddy.checkpoint";
const HEADER_INCARNATION: &str = "eddy.incarnation";
const HEADER_CHUNK: &str = "eddy.chunk";
const HEADER_CHUNKS: &str = "eddy.chunks";

/// Records one poll of a read may return.
const POLL_EVENTS_MAX: usize = 500;

/// How a [`TopicStore`] cuts snapshots and reads them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStoreOptions {
    /// The largest chunk, in bytes (of the envelope). A chunk record is a
    /// little larger (key, headers); it must stay below the topic's
    /// `max.message.bytes` and the producer's `max.request.size`.
    pub chunk_bytes: usize,
    /// The client id of the consumers reads use.
    pub client_id: String,
    /// How long one poll of a read waits for records.
    pub poll_timeout_ms: u64,
    /// A read that got nothing from this many polls in a row stops there.
    pub empty_polls_max: u32,
    /// The request timeout of the consumers reads use.
    pub request_timeout_ms: u32,
}

impl Default for TopicStoreOptions {
    fn default() -> Self {
        Self {
            chunk_bytes: 512 * 1024,
            client_id: "eddyline-checkpoint-reader".to_string(),
            poll_timeout_ms: 200,
            // 5 s of silence: well above a fetch's long poll (500 ms) and
            // a metadata refresh after a leader change.
            empty_polls_max: 25,
            request_timeout_ms: 30_000,
        }
    }
}

/// Creates the compacted checkpoint topic unless it exists; returns its
/// partition count (of the existing topic, if it was there: its
/// configuration is not checked, the seam cannot read topic configs).
pub async fn ensure_topic<A: Admin>(
    admin: &A,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<i32> {
    let new_topic = NewTopic {
        name: topic.to_string(),
        partitions,
        replication_factor,
        configs: vec![("cleanup.policy".to_string(), "compact".to_string())],
    };
    match admin.create_topic(&new_topic).await {
        Ok(()) => {}
        Err(error) if error.code == ErrorCode::TopicAlreadyExists => {}
        Err(error) => {
            return Err(Error::Store(format!(
                "create checkpoint topic {topic}: {error}"
            )));
        }
    }
    admin
        .partition_count(topic)
        .await
        .map_err(|error| Error::Store(format!("checkpoint topic {topic}: {error}")))
}

/// What this store instance knows of one task's chunks in the topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TaskChunks {
    /// Chunk indices below this may hold a value in the topic (committed,
    /// or written by a transaction whose outcome this store does not know).
    live_max: u32,
    /// The last snapshot written: its checkpoint and chunk count.
    last_write: Option<(u64, u32)>,
}

/// Snapshots in a compacted Kafka topic (see the module doc).
pub struct TopicStore<T: Transport> {
    transport: T,
    topic: String,
    partitions: i32,
    options: TopicStoreOptions,
    tasks: BTreeMap<(String, i32), TaskChunks>,
}

impl<T: Transport> TopicStore<T> {
    /// A store on `topic`, which has `partitions` partitions (as
    /// [`ensure_topic`] returns them).
    pub fn new(
        transport: T,
        topic: impl Into<String>,
        partitions: i32,
        options: TopicStoreOptions,
    ) -> Result<Self> {
        let topic = topic.into();
        if topic.is_empty() || partitions <= 0 || options.chunk_bytes == 0 {
            return Err(Error::Invalid(format!(
                "checkpoint topic {topic:?} with {partitions} partitions and \
                 {}-byte chunks: needs a name, partitions and chunks of at least one byte",
                options.chunk_bytes
            )));
        }
        if options.empty_polls_max == 0 || options.poll_timeout_ms == 0 {
            return Err(Error::Invalid(
                "checkpoint topic reads need a poll timeout and at least one empty poll".into(),
            ));
        }
        Ok(Self {
            transport,
            topic,
            partitions,
            options,
            tasks: BTreeMap::new(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition that holds task `task`'s chunks.
    pub fn partition_of(&self, task: i32) -> i32 {
        assert!(task >= 0, "tasks are checked before they are placed");
        task % self.partitions
    }

    fn chunk_records(&self, id: &SnapshotId, sealed: &[u8]) -> Vec<ProducerRecord> {
        let chunks: Vec<&[u8]> = sealed.chunks(self.options.chunk_bytes).collect();
        let count = u32::try_from(chunks.len()).expect("fewer than 2^32 chunks");
        let partition = self.partition_of(id.task);
        chunks
            .into_iter()
            .enumerate()
            .map(|(index, chunk)| ProducerRecord {
                topic: self.topic.clone(),
                partition: Some(partition),
                key: Some(chunk_key(&id.job, id.task, index as u32).into_bytes()),
                value: Some(chunk.to_vec()),
                timestamp_ms: None,
                headers: chunk_headers(id, index as u32, count),
            })
            .collect()
    }

    fn tombstones(&self, id: &SnapshotId, from: u32, to: u32) -> Vec<ProducerRecord> {
        let partition = self.partition_of(id.task);
        (from..to)
            .map(|index| ProducerRecord {
                topic: self.topic.clone(),
                partition: Some(partition),
                key: Some(chunk_key(&id.job, id.task, index).into_bytes()),
                value: None,
                timestamp_ms: None,
                // Which checkpoint removed the chunk, for people reading the topic.
                headers: vec![
                    (HEADER_CHECKPOINT.to_string(), decimal(id.checkpoint)),
                    (HEADER_INCARNATION.to_string(), decimal(id.incarnation)),
                ],
            })
            .collect()
    }

    /// The records of snapshot `id`: its chunks, then tombstones for the
    /// chunk indices beyond its count that may still hold a value.
    fn records_for(&mut self, id: &SnapshotId, payload: &[u8]) -> Result<Vec<ProducerRecord>> {
        check_id(id)?;
        let sealed = envelope::seal(id, payload);
        let mut records = self.chunk_records(id, &sealed);
        let count = records.len() as u32;
        let known = self.tasks.entry((id.job.clone(), id.task)).or_default();
        let live_max = known.live_max;
        // Until a collect says which write committed, this one may or may
        // not: the chunks beyond its count stay possibly live.
        known.live_max = live_max.max(count);
        known.last_write = Some((id.checkpoint, count));
        records.extend(self.tombstones(id, count, live_max));
        Ok(records)
    }

    /// What a collect after checkpoint `below` committed tells: if the
    /// last write was that checkpoint, its chunks and tombstones are the
    /// committed state, and no index beyond its count holds a value.
    fn committed(&mut self, job: &str, task: i32, below: u64) {
        if let Some(known) = self.tasks.get_mut(&(job.to_string(), task)) {
            if let Some((checkpoint, count)) = known.last_write {
                if checkpoint == below {
                    known.live_max = count;
                }
            }
        }
    }

    fn store_error(&self, task: i32, what: &str, error: &TransportError) -> Error {
        Error::Store(format!(
            "checkpoint topic {} partition {}: {what}: {error}",
            self.topic,
            self.partition_of(task)
        ))
    }

    async fn read_chunks(&mut self, id: &SnapshotId) -> Result<Vec<u8>> {
        check_id(id)?;
        let tp = TopicPartition::new(self.topic.clone(), self.partition_of(id.task));
        let mut config = ConsumerConfig::new(self.options.client_id.clone(), None);
        config.isolation = Isolation::ReadCommitted;
        config.offset_reset = OffsetReset::Earliest;
        config.request_timeout_ms = self.options.request_timeout_ms;
        let mut consumer = self
            .transport
            .consumer(&config)
            .await
            .map_err(|e| self.store_error(id.task, "create a reader", &e))?;
        let scan = self.scan(&mut consumer, &tp, id).await;
        // The read is over either way; a failed close changes nothing of it.
        let _ = consumer.close().await;
        let scan = scan?;
        let known = self.tasks.entry((id.job.clone(), id.task)).or_default();
        known.live_max = known.live_max.max(scan.live_max());
        scan.assemble(id, &tp)
    }

    /// Reads `tp` from its first offset until every chunk of `id` is in,
    /// the end offset is reached, or polls stay empty (see the module doc).
    async fn scan(
        &self,
        consumer: &mut T::Consumer,
        tp: &TopicPartition,
        id: &SnapshotId,
    ) -> Result<Scan> {
        let failed = |what: &str, e: TransportError| self.store_error(id.task, what, &e);
        consumer
            .assign(std::slice::from_ref(tp))
            .await
            .map_err(|e| failed("assign", e))?;
        let (start, end) = consumer
            .offsets_range(tp)
            .await
            .map_err(|e| failed("read the offsets", e))?;
        let mut scan = Scan::new(start, end);
        if end <= start {
            return Ok(scan);
        }
        consumer
            .seek(tp, start)
            .await
            .map_err(|e| failed("seek", e))?;
        let timeout = Duration::from_millis(self.options.poll_timeout_ms);
        let empty_polls_max = self.options.empty_polls_max;
        // Each poll either delivers a record below `end` (at most
        // `end - start` of them) or is empty; empty ones in a row end the
        // read. Re-deliveries after a position reset would break that
        // count, hence the bound on every poll.
        let span = u64::try_from(end - start).expect("end > start");
        let polls_max = span
            .saturating_add(1)
            .saturating_mul(u64::from(empty_polls_max) + 1);
        let mut empty_polls = 0;
        for _ in 0..polls_max {
            if scan.complete() || scan.reached_end || empty_polls >= empty_polls_max {
                return Ok(scan);
            }
            let events = match consumer.poll(POLL_EVENTS_MAX, timeout).await {
                Ok(events) => events,
                Err(e) if matches!(e.kind, ErrorKind::Retriable | ErrorKind::Timeout) => {
                    empty_polls += 1;
                    continue;
                }
                Err(e) => return Err(failed("poll", e)),
            };
            let delivered = scan.take(events, tp, id);
            empty_polls = if delivered { 0 } else { empty_polls + 1 };
        }
        Err(Error::Store(format!(
            "checkpoint topic {tp}: read of {id} did not settle within {polls_max} polls"
        )))
    }
}

impl<T: Transport> CheckpointStore for TopicStore<T> {
    /// Returns the chunk records (and tombstones) the worker must produce
    /// in the checkpoint's transaction; the snapshot is durable when that
    /// transaction commits. Makes no call to Kafka.
    async fn write(&mut self, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<ProducerRecord>> {
        self.records_for(id, bytes)
    }

    async fn read(&mut self, id: &SnapshotId) -> Result<Vec<u8>> {
        self.read_chunks(id).await
    }

    /// Compaction collects: returns 0 (see the module doc).
    async fn collect(&mut self, job: &str, task: i32, below: u64) -> Result<usize> {
        check_job(job)?;
        check_task(task)?;
        self.committed(job, task, below);
        Ok(0)
    }
}

/// What a read found in the task's partition.
struct Scan {
    start: i64,
    end: i64,
    reached_end: bool,
    /// The chunks of the id asked for: index -> (chunk count, bytes).
    chunks: BTreeMap<u32, (u32, Bytes)>,
    /// Records of the task with a value but headers that do not parse.
    malformed: usize,
    /// Chunks of the id that disagree with another of the same index or
    /// count: the reason, for the error.
    conflict: Option<String>,
    /// Per chunk index of the task: whether its latest record has a value.
    live: BTreeMap<u32, bool>,
}

impl Scan {
    fn new(start: i64, end: i64) -> Self {
        Self {
            start,
            end,
            reached_end: end <= start,
            chunks: BTreeMap::new(),
            malformed: 0,
            conflict: None,
            live: BTreeMap::new(),
        }
    }

    /// One past the highest chunk index of the task whose latest record
    /// read has a value.
    fn live_max(&self) -> u32 {
        self.live
            .iter()
            .rev()
            .find(|(_, live)| **live)
            .map_or(0, |(index, _)| index + 1)
    }

    /// Takes the records of one poll; whether any was below the end offset.
    fn take(&mut self, events: Vec<ConsumerEvent>, tp: &TopicPartition, id: &SnapshotId) -> bool {
        let mut delivered = false;
        for event in events {
            let ConsumerEvent::Message(message) = event else {
                continue;
            };
            if *message.topic != *tp.topic || message.partition != tp.partition {
                continue;
            }
            if message.offset >= self.end {
                self.reached_end = true;
                continue;
            }
            delivered = true;
            if message.offset + 1 >= self.end {
                self.reached_end = true;
            }
            self.take_message(message, id);
        }
        delivered
    }

    fn take_message(&mut self, message: Message, id: &SnapshotId) {
        let Some(index) = message
            .key
            .as_deref()
            .and_then(|key| parse_chunk_key(key, &id.job, id.task))
        else {
            return;
        };
        self.live.insert(index, message.value.is_some());
        let Some(value) = message.value else {
            return;
        };
        let Some(chunk) = ChunkHeaders::parse(&message.headers) else {
            self.malformed += 1;
            return;
        };
        if chunk.checkpoint != id.checkpoint || chunk.incarnation != id.incarnation {
            return;
        }
        if chunk.index != index || chunk.index >= chunk.count {
            self.conflict = Some(format!(
                "the record at offset {} has key chunk {index} but headers chunk {} of {}",
                message.offset, chunk.index, chunk.count
            ));
            return;
        }
        if let Some((count, bytes)) = self.chunks.get(&index) {
            if *count != chunk.count || *bytes != value {
                self.conflict = Some(format!(
                    "two different chunks {index} (the second at offset {})",
                    message.offset
                ));
            }
            return;
        }
        self.chunks.insert(index, (chunk.count, value));
    }

    /// Whether every chunk of the snapshot is in (all agreeing on a count).
    fn complete(&self) -> bool {
        let Some((count, _)) = self.chunks.values().next() else {
            return false;
        };
        self.chunks.len() == *count as usize
            && self.chunks.keys().copied().eq(0..*count)
            && self.chunks.values().all(|(c, _)| c == count)
    }

    fn assemble(self, id: &SnapshotId, tp: &TopicPartition) -> Result<Vec<u8>> {
        let range = format!("offsets {}..{}", self.start, self.end);
        if let Some(conflict) = &self.conflict {
            return Err(Error::CorruptSnapshot(format!(
                "{id} in checkpoint topic {tp}: {conflict}"
            )));
        }
        let counts: BTreeSet<u32> = self.chunks.values().map(|(count, _)| *count).collect();
        if counts.len() > 1 {
            return Err(Error::CorruptSnapshot(format!(
                "{id} in checkpoint topic {tp}: its chunks disagree on their count ({counts:?})"
            )));
        }
        if !self.complete() {
            let of = counts.first().map_or(String::new(), |n| format!(" of {n}"));
            let malformed = match self.malformed {
                0 => String::new(),
                n => format!("; {n} records of the task had headers that do not parse"),
            };
            return Err(Error::MissingSnapshot(format!(
                "{id}: checkpoint topic {tp} ({range}) holds {} chunks{of}{malformed}",
                self.chunks.len()
            )));
        }
        let mut sealed = Vec::new();
        for (_, bytes) in self.chunks.into_values() {
            sealed.extend_from_slice(&bytes);
        }
        envelope::open(id, &sealed).map_err(|error| match error {
            Error::CorruptSnapshot(why) => {
                Error::CorruptSnapshot(format!("checkpoint topic {tp} ({range}): {why}"))
            }
            other => other,
        })
    }
}

/// The chunk headers of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkHeaders {
    checkpoint: u64,
    incarnation: u64,
    index: u32,
    count: u32,
}

impl ChunkHeaders {
    /// The headers, if each is present once as a decimal number.
    fn parse(headers: &[Header]) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let mut values = headers.iter().filter(|(n, _)| n == name);
            let (_, value) = values.next()?;
            if values.next().is_some() {
                return None;
            }
            std::str::from_utf8(value).ok()?.parse().ok()
        };
        Some(Self {
            checkpoint: field(HEADER_CHECKPOINT)?,
            incarnation: field(HEADER_INCARNATION)?,
            index: u32::try_from(field(HEADER_CHUNK)?).ok()?,
            count: u32::try_from(field(HEADER_CHUNKS)?).ok()?,
        })
    }
}

fn decimal(value: impl ToString) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn chunk_headers(id: &SnapshotId, index: u32, count: u32) -> Vec<Header> {
    vec![
        (HEADER_CHECKPOINT.to_string(), decimal(id.checkpoint)),
        (HEADER_INCARNATION.to_string(), decimal(id.incarnation)),
        (HEADER_CHUNK.to_string(), decimal(index)),
        (HEADER_CHUNKS.to_string(), decimal(count)),
    ]
}

/// `<job>/<task>/<chunk index>`.
pub(crate) fn chunk_key(job: &str, task: i32, index: u32) -> String {
    format!("{job}/{task}/{index}")
}

/// The chunk index of a key of `job`'s task `task`; `None` for any other
/// key. Job names contain no `/` ([`envelope::check_job`]), so a key has
/// exactly one reading.
pub(crate) fn parse_chunk_key(key: &[u8], job: &str, task: i32) -> Option<u32> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.split('/');
    let (key_job, key_task, key_index) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || key_job != job || key_task != task.to_string() {
        return None;
    }
    if key_index.is_empty() || !key_index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if key_index.len() > 1 && key_index.starts_with('0') {
        return None;
    }
    key_index.parse().ok()
}
