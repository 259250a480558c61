//! [`ParquetTransport`]: the `Transport` seam over recordings.
//!
//! The recorded topics are logs in memory at their recorded offsets (each
//! partition from its range's start to its end; an offset without a
//! recorded record, a transaction marker or an aborted record when it was
//! recorded, is skipped as readers skip markers), so a consumer reads each
//! partition in offset order and reports the recorded end offsets. Every
//! other topic (the job's outputs) is an in-memory log with transactions:
//! what the worker commits there is read back with
//! [`ParquetTransport::committed`] and written as a recording with
//! [`ParquetTransport::write_committed`]. The guarantees of the seam are
//! [`MemoryKafka`]'s, on which this transport stands: one process, no
//! time, no network.

use std::collections::BTreeMap;
use std::path::Path;

use super::write::write_recording;
use super::{OffsetRange, Recording, RecordingInfo};
use crate::error::{Error, Result};
use crate::memory::{MemoryAdmin, MemoryConsumer, MemoryKafka, MemoryProducer};
use crate::transport::{
    Admin, Consumer, ConsumerConfig, Message, NewTopic, ProducerConfig, TopicPartition, Transport,
    TransportResult,
};

/// Recordings as a transport; clones share the logs.
#[derive(Clone, Default)]
pub struct ParquetTransport {
    logs: MemoryKafka,
    /// The recorded topics.
    recorded: BTreeMap<String, RecordingInfo>,
    /// One past the last recorded record of each recorded partition that
    /// has records.
    last_records: BTreeMap<TopicPartition, i64>,
}

fn transport_error(error: crate::transport::TransportError) -> Error {
    Error::Invalid(error.message)
}

impl ParquetTransport {
    /// A transport whose topics are these recordings (one topic each).
    pub async fn from_recordings(recordings: &[Recording]) -> Result<Self> {
        Self::from_owned_recordings(recordings.to_vec()).await
    }

    /// [`Self::from_recordings`] with recordings the caller gives up: their
    /// records move into the logs instead of being copied.
    pub async fn from_owned_recordings(recordings: Vec<Recording>) -> Result<Self> {
        let mut transport = Self::default();
        let admin = transport.logs.admin().await.map_err(transport_error)?;
        for mut recording in recordings {
            let info = &recording.info;
            if transport.recorded.contains_key(&info.topic) {
                return Err(Error::Invalid(format!(
                    "topic {} is recorded twice",
                    info.topic
                )));
            }
            admin
                .create_topic(&NewTopic {
                    name: info.topic.clone(),
                    partitions: info.partition_count,
                    replication_factor: 1,
                    configs: Vec::new(),
                })
                .await
                .map_err(transport_error)?;
            for range in &info.offset_ranges {
                let tp = TopicPartition::new(info.topic.clone(), range.partition);
                let messages = recording
                    .partitions
                    .remove(&range.partition)
                    .unwrap_or_default();
                let last = messages.last().map(|last| last.offset + 1);
                transport
                    .logs
                    .load_partition_owned(&tp, range.start, range.end, messages)
                    .map_err(transport_error)?;
                if let Some(last) = last {
                    transport.last_records.insert(tp, last);
                }
            }
            transport.recorded.insert(info.topic.clone(), info.clone());
        }
        Ok(transport)
    }

    /// Creates a topic that is not recorded (an output).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let admin = self.logs.admin().await.map_err(transport_error)?;
        admin
            .create_topic(&NewTopic {
                name: name.to_string(),
                partitions,
                replication_factor: 1,
                configs: Vec::new(),
            })
            .await
            .map_err(transport_error)
    }

    /// What a recorded topic's file said about it.
    pub fn recorded(&self, topic: &str) -> Option<&RecordingInfo> {
        self.recorded.get(topic)
    }

    /// Where a bounded run over the recorded `topics` ends: one past each
    /// partition's last recorded record, 0 for a partition without records.
    /// Not the recorded end offsets: a worker's position starts at 0 and
    /// moves with the records it reads, so a trailing transaction marker
    /// (or an empty partition whose log starts past 0) would never be
    /// reached; nothing lies there to read.
    pub fn end_offsets(&self, topics: &[String]) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut ends = BTreeMap::new();
        for topic in topics {
            let info = self
                .recorded
                .get(topic)
                .ok_or_else(|| Error::Invalid(format!("no recording of topic {topic}")))?;
            for range in &info.offset_ranges {
                let tp = TopicPartition::new(topic.clone(), range.partition);
                let end = self.last_records.get(&tp).copied().unwrap_or(0);
                ends.insert(tp, end);
            }
        }
        Ok(ends)
    }

    /// Every committed record of a topic (what a read_committed reader
    /// sees), by partition in offset order, and each partition's range:
    /// from 0 to its last stable offset.
    pub async fn committed(
        &self,
        topic: &str,
    ) -> Result<(BTreeMap<i32, Vec<Message>>, Vec<OffsetRange>)> {
        let admin = self.logs.admin().await.map_err(transport_error)?;
        let partitions = admin
            .partition_count(topic)
            .await
            .map_err(transport_error)?;
        let mut reader = self
            .logs
            .consumer(&ConsumerConfig::new("recording-reader", None))
            .await
            .map_err(transport_error)?;
        let mut records = BTreeMap::new();
        let mut ranges = Vec::new();
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic, partition);
            let (start, end) = reader.offsets_range(&tp).await.map_err(transport_error)?;
            ranges.push(OffsetRange {
                partition,
                start,
                end,
            });
            let messages = self.logs.committed_records(&tp).map_err(transport_error)?;
            records.insert(partition, messages);
        }
        Ok((records, ranges))
    }

    /// Writes a topic's committed records as a recording at `path`; returns
    /// the number of rows.
    pub async fn write_committed(&self, topic: &str, path: &Path, source: &str) -> Result<u64> {
        let (records, offset_ranges) = self.committed(topic).await?;
        let info = RecordingInfo {
            topic: topic.to_string(),
            source: source.to_string(),
            partition_count: offset_ranges.len() as i32,
            offset_ranges,
        };
        write_recording(path, &info, &records)
    }
}

impl Transport for ParquetTransport {
    type Admin = MemoryAdmin;
    type Consumer = MemoryConsumer;
    type Producer = MemoryProducer;

    fn name(&self) -> &'static str {
        "parquet"
    }

    async fn admin(&self) -> TransportResult<MemoryAdmin> {
        self.logs.admin().await
    }

    async fn consumer(&self, config: &ConsumerConfig) -> TransportResult<MemoryConsumer> {
        self.logs.consumer(config).await
    }

    async fn producer(&self, config: &ProducerConfig) -> TransportResult<MemoryProducer> {
        self.logs.producer(config).await
    }
}
