//! Group and manually-assigned consumers over rdkafka's base consumer, with
//! rebalances deferred to the next poll (see the module doc of `kafka`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::call::{blocking, bounded, create_client, explain, topic_metadata};
use super::config::KafkaConfig;
use super::context::{ClientShared, ConsumerCtx, RebalanceOp};
use super::error::{code_of, error, from_kafka_error};
use super::ffi;
use crate::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, ErrorCode, ErrorKind, GroupMetadata, Isolation,
    Message, OffsetAndMetadata, OffsetReset, TopicPartition, TransportError, TransportResult,
};

type Inner = BaseConsumer<ConsumerCtx>;

/// How long one wait inside `poll` lasts before the queue is checked again
/// even without librdkafka's signal.
const POLL_WAIT_MAX: Duration = Duration::from_millis(50);

/// The most events a poll reserves room for up front.
const MAX_PREALLOCATED_EVENTS: usize = 4_096;

/// A Kafka consumer behind the seam.
pub struct KafkaConsumer {
    inner: Arc<Inner>,
    /// Notified when librdkafka's consumer queue becomes non-empty.
    ready: Arc<Notify>,
    shared: Arc<ClientShared>,
    config: ConsumerConfig,
    kafka: Arc<KafkaConfig>,
    /// Partitions this member reads now.
    owned: BTreeSet<TopicPartition>,
    /// Reported as revoked; unassigned at the next poll.
    revoke_pending: bool,
    /// Reported as assigned (or manually assigned); assigned at the next
    /// poll, from these positions (`Offset::Invalid`: the committed offset,
    /// else the reset policy). A seek before that poll changes the position
    /// here, so the partition starts where it should with one assign:
    /// librdkafka could let an assign from the beginning, re-assigned at
    /// once with an offset, deliver from the beginning.
    assign_pending: Option<BTreeMap<TopicPartition, Offset>>,
    /// The group metadata of the current assignment.
    group_metadata: Option<GroupMetadata>,
    /// An error met after events were collected, returned by the next poll.
    deferred_error: Option<TransportError>,
    subscribed: bool,
    /// Where the topic names, keys and values of messages come from.
    records: RecordBuffer,
}

/// The topic names of consumed records, one shared `Arc<str>` per topic
/// instead of a `String` per record; and their keys and values, copied out of librdkafka's
/// fetch buffers into chunks of this buffer and handed out as `Bytes`
/// slices of them: one allocation per chunk instead of one per key and one
/// per value, and no allocator churn when a poll's batch is kept until the
/// caller drops it. A chunk is freed when the last slice of it is dropped,
/// so a key or value kept for long keeps its chunk (at most
/// [`RECORD_CHUNK_BYTES`], or the record's own size if larger) alive.
#[derive(Default)]
struct RecordBuffer {
    /// The names of the topics read so far.
    topics: Vec<Arc<str>>,
    chunk: BytesMut,
}

/// The size of one chunk of a [`RecordBuffer`].
const RECORD_CHUNK_BYTES: usize = 64 * 1024;

impl RecordBuffer {
    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.topics.iter().find(|known| ***known == *name) {
            return Arc::clone(known);
        }
        let known: Arc<str> = Arc::from(name);
        self.topics.push(Arc::clone(&known));
        known
    }

    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.is_empty() {
            return Bytes::new();
        }
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            // The slices handed out keep the old chunk for as long as they
            // live; a record larger than a chunk gets one of its own size.
            self.chunk = BytesMut::with_capacity(RECORD_CHUNK_BYTES.max(bytes.len()));
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.split().freeze()
    }
}

impl KafkaConsumer {
    pub(crate) fn new(
        kafka: Arc<KafkaConfig>,
        shared: Arc<ClientShared>,
        config: ConsumerConfig,
    ) -> TransportResult<Self> {
        let mut client_config = kafka.client_config();
        client_config
            .set("client.id", &config.client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "range")
            .set(
                "isolation.level",
                match config.isolation {
                    Isolation::ReadCommitted => "read_committed",
                    Isolation::ReadUncommitted => "read_uncommitted",
                },
            )
            .set(
                "auto.offset.reset",
                match config.offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            )
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                config.heartbeat_interval_ms.to_string(),
            )
            .set(
                "max.poll.interval.ms",
                config.max_poll_interval_ms.to_string(),
            )
            .set(
                "socket.timeout.ms",
                config.request_timeout_ms.max(10).to_string(),
            );
        match &config.group_id {
            Some(group) => client_config.set("group.id", group),
            // librdkafka's assign needs a group id even when no group is
            // joined; this one is never joined nor committed to (without a
            // group the seam refuses commit/committed/subscribe).
            None => client_config.set(
                "group.id",
                format!("eddyline-no-group-{}", config.client_id),
            ),
        };
        let mut inner: Inner = create_client(
            &kafka,
            client_config,
            ConsumerCtx::new(Arc::clone(&shared)),
            &format!("consumer '{}'", config.client_id),
        )?;
        // librdkafka calls this from its threads when the consumer queue
        // gets something: a waiting poll wakes at once instead of at its
        // next timer tick. A permit is kept if no poll waits, so no wake-up
        // is lost between a drain that found nothing and the wait.
        let ready = Arc::new(Notify::new());
        let signal = Arc::clone(&ready);
        inner.set_nonempty_callback(move || signal.notify_one());
        Ok(Self {
            inner: Arc::new(inner),
            ready,
            shared,
            config,
            kafka,
            owned: BTreeSet::new(),
            revoke_pending: false,
            assign_pending: None,
            group_metadata: None,
            deferred_error: None,
            subscribed: false,
            records: RecordBuffer::default(),
        })
    }

    fn fail(&self, kind: ErrorKind, code: ErrorCode, message: &str) -> TransportError {
        error(kind, code, message, &self.shared.redactor)
    }

    fn map(&self, what: &str, e: &KafkaError) -> TransportError {
        from_kafka_error(what, e, &self.shared.redactor)
    }

    /// Fails with one line naming the first of `topics` that does not exist.
    async fn check_topics_exist(&self, topics: &[String]) -> TransportResult<()> {
        let timeout_ms = self.kafka.timeout_ms();
        for topic in topics {
            let what = format!(
                "reading metadata of topic '{topic}' at {}",
                self.kafka.bootstrap()
            );
            let inner = Arc::clone(&self.inner);
            let name = topic.clone();
            let fetch = move |timeout| inner.fetch_metadata(Some(&name), timeout);
            let exists = topic_metadata(&self.shared, &what, timeout_ms, fetch, |metadata| {
                Ok(metadata.topics().iter().any(|t| {
                    t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                }))
            })
            .await?;
            if !exists {
                return Err(self.fail(
                    ErrorKind::Retriable,
                    ErrorCode::UnknownTopicOrPartition,
                    &format!(
                        "topic '{topic}' does not exist at {}",
                        self.kafka.bootstrap()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Applies what the previous poll reported: a revoke, then an assignment.
    fn complete_pending_rebalance(&mut self) -> TransportResult<()> {
        if self.revoke_pending {
            self.revoke_pending = false;
            self.owned.clear();
            self.group_metadata = None;
            self.inner
                .unassign()
                .map_err(|e| self.map("completing a revoke (unassign)", &e))?;
        }
        if let Some(assignment) = self.assign_pending.take() {
            let mut list = TopicPartitionList::with_capacity(assignment.len());
            for (partition, offset) in &assignment {
                list.add_partition_offset(&partition.topic, partition.partition, *offset)
                    .map_err(|e| self.map("building an assignment", &e))?;
            }
            self.inner
                .assign(&list)
                .map_err(|e| self.map("completing an assignment (assign)", &e))?;
            self.owned = assignment.into_keys().collect();
            if self.subscribed {
                self.group_metadata = ffi::consumer_group_metadata(self.inner.client());
            }
        }
        Ok(())
    }

    fn message_of(records: &mut RecordBuffer, message: &BorrowedMessage<'_>) -> Message {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Message {
            topic: records.topic(message.topic()),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|key| records.copy(key)),
            value: message.payload().map(|value| records.copy(value)),
            timestamp_ms: message.timestamp().to_millis().unwrap_or(-1),
            headers,
        }
    }

    /// Moves what is ready into `events`, without blocking. Stops after a
    /// rebalance event so that the caller sees it before anything else.
    fn drain(&mut self, events: &mut Vec<ConsumerEvent>, max_events: usize) -> TransportResult<()> {
        // A bound on librdkafka events consumed without yielding one of ours
        // (offset-commit and rebalance bookkeeping events).
        let mut quiet_polls = 0_usize;
        while events.len() < max_events && quiet_polls < 64 {
            if let Some(op) = self.inner.context().next_rebalance() {
                match op {
                    RebalanceOp::Revoke(partitions) => {
                        self.revoke_pending = true;
                        self.assign_pending = None;
                        events.push(ConsumerEvent::Revoked(partitions));
                        return Ok(());
                    }
                    RebalanceOp::Assign(partitions) => {
                        self.assign_pending = Some(
                            partitions
                                .iter()
                                .cloned()
                                .map(|p| (p, Offset::Invalid))
                                .collect(),
                        );
                        // The seam promises group metadata from the first
                        // assignment on: librdkafka already holds the new
                        // generation when it hands out the assignment.
                        self.group_metadata = ffi::consumer_group_metadata(self.inner.client());
                        events.push(ConsumerEvent::Assigned(partitions));
                        return Ok(());
                    }
                    RebalanceOp::Lost(partitions) => {
                        self.owned.clear();
                        self.group_metadata = None;
                        self.assign_pending = None;
                        self.revoke_pending = false;
                        events.push(ConsumerEvent::Lost(partitions));
                        continue;
                    }
                    RebalanceOp::Error(reason) => {
                        self.owned.clear();
                        self.group_metadata = None;
                        return Err(self.fail(ErrorKind::Retriable, ErrorCode::Other(-1), &reason));
                    }
                }
            }
            if self.revoke_pending || self.assign_pending.is_some() {
                // Nothing more until the next poll applies the rebalance.
                return Ok(());
            }
            match self.inner.poll(Duration::ZERO) {
                None => {
                    if !self.inner.context().has_rebalance() {
                        return Ok(());
                    }
                    quiet_polls += 1;
                }
                Some(Ok(message)) => {
                    let message = Self::message_of(&mut self.records, &message);
                    events.push(ConsumerEvent::Message(message));
                }
                Some(Err(e)) => {
                    let what = format!(
                        "consumer '{}' polling Kafka at {}",
                        self.config.client_id,
                        self.kafka.bootstrap()
                    );
                    let mut mapped = self.map(&what, &e);
                    if !matches!(e, KafkaError::MessageConsumptionFatal(_))
                        && mapped.kind != ErrorKind::Fenced
                        && mapped.code != ErrorCode::SaslAuthenticationFailed
                    {
                        // librdkafka goes on after a consumer error: polling
                        // again is the way on.
                        mapped.kind = ErrorKind::Retriable;
                    }
                    if let Some(RDKafkaErrorCode::UnknownTopicOrPartition) = e.rdkafka_error_code()
                    {
                        mapped.message = format!(
                            "{what}: a subscribed topic does not exist at {}: {e}",
                            self.kafka.bootstrap()
                        );
                    }
                    if events.is_empty() {
                        return Err(mapped);
                    }
                    self.deferred_error = Some(mapped);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn require_group(&self, call: &str) -> TransportResult<&str> {
        self.config.group_id.as_deref().ok_or_else(|| {
            self.fail(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                &format!(
                    "{call} needs a consumer with a group id (consumer '{}')",
                    self.config.client_id
                ),
            )
        })
    }

    fn partition_list(
        &self,
        partitions: impl IntoIterator<Item = (TopicPartition, Offset, Option<String>)>,
    ) -> TransportResult<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (partition, offset, metadata) in partitions {
            list.add_partition_offset(&partition.topic, partition.partition, offset)
                .map_err(|e| self.map("building a partition list", &e))?;
            if let Some(metadata) = metadata {
                list.find_partition(&partition.topic, partition.partition)
                    .expect("the partition was just added")
                    .set_metadata(metadata);
            }
        }
        Ok(list)
    }
}

impl Consumer for KafkaConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> TransportResult<()> {
        self.require_group("subscribe")?;
        self.check_topics_exist(topics).await?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner
            .subscribe(&names)
            .map_err(|e| self.map(&format!("subscribing to {topics:?}"), &e))?;
        self.subscribed = true;
        Ok(())
    }

    async fn assign(&mut self, partitions: &[TopicPartition]) -> TransportResult<()> {
        if self.subscribed {
            return Err(self.fail(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "assign on a consumer that subscribed to a group",
            ));
        }
        let topics: BTreeSet<String> = partitions.iter().map(|p| p.topic.clone()).collect();
        self.check_topics_exist(&topics.into_iter().collect::<Vec<_>>())
            .await?;
        let start = match (&self.config.group_id, self.config.offset_reset) {
            // librdkafka reads the committed offset, else applies the reset policy.
            (Some(_), _) => Offset::Invalid,
            (None, OffsetReset::Earliest) => Offset::Beginning,
            (None, OffsetReset::Latest) => Offset::End,
        };
        // Applied by the next poll, after any seeks (see `assign_pending`).
        self.owned.clear();
        self.assign_pending = Some(partitions.iter().map(|p| (p.clone(), start)).collect());
        Ok(())
    }

    async fn poll(
        &mut self,
        max_events: usize,
        timeout: Duration,
    ) -> TransportResult<Vec<ConsumerEvent>> {
        let max_events = max_events.max(1);
        if let Some(error) = self.deferred_error.take() {
            return Err(error);
        }
        self.complete_pending_rebalance()?;
        // Sized once for a full batch: growing a vector of messages by
        // doubling copies each one several times.
        let mut events = Vec::with_capacity(max_events.min(MAX_PREALLOCATED_EVENTS));
        self.drain(&mut events, max_events)?;
        if !events.is_empty() || timeout.is_zero() {
            return Ok(events);
        }
        // Wait for librdkafka's signal (or, as a safety net, a short timer):
        // nothing is taken from librdkafka while waiting, so dropping this
        // future (a cancelled poll) loses nothing.
        let ready = Arc::clone(&self.ready);
        let waited = tokio::time::timeout(timeout, async {
            loop {
                tokio::select! {
                    () = ready.notified() => {}
                    () = tokio::time::sleep(POLL_WAIT_MAX) => {}
                }
                let mut events = Vec::with_capacity(max_events.min(MAX_PREALLOCATED_EVENTS));
                self.drain(&mut events, max_events)?;
                if !events.is_empty() {
                    return Ok(events);
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_elapsed) => Ok(Vec::new()),
        }
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> TransportResult<()> {
        if let Some(pending) = self.assign_pending.as_mut() {
            if let Some(position) = pending.get_mut(partition) {
                *position = Offset::Offset(offset);
                return Ok(());
            }
        }
        if !self.owned.contains(partition) {
            return Err(self.fail(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                &format!(
                    "seek on {partition}, which consumer '{}' does not own",
                    self.config.client_id
                ),
            ));
        }
        // Re-assigning with positions is librdkafka's reliable seek: unlike
        // rd_kafka_seek it works before the partition's first fetch, and it
        // drops what was prefetched. The other partitions keep their places.
        let current = self
            .inner
            .position()
            .map_err(|e| self.map("reading positions", &e))?;
        let mut positions = Vec::with_capacity(self.owned.len());
        for owned in &self.owned {
            let position = if owned == partition {
                Offset::Offset(offset)
            } else {
                current
                    .find_partition(&owned.topic, owned.partition)
                    .map(|e| e.offset())
                    .unwrap_or(Offset::Invalid)
            };
            positions.push((owned.clone(), position, None));
        }
        let list = self.partition_list(positions)?;
        self.inner
            .assign(&list)
            .map_err(|e| self.map(&format!("seeking {partition} to {offset}"), &e))
    }

    /// librdkafka's application position (`rd_kafka_position`), which it
    /// also moves over the control messages it never returns
    /// (`rd_kafka_op_handle_std` stores their offsets). A seek not yet
    /// applied by a poll answers with its offset.
    fn position(&self, partition: &TopicPartition) -> TransportResult<Option<i64>> {
        if let Some(pending) = &self.assign_pending {
            return Ok(match pending.get(partition) {
                Some(Offset::Offset(offset)) => Some(*offset),
                _ => None,
            });
        }
        if !self.owned.contains(partition) {
            return Ok(None);
        }
        let positions = self
            .inner
            .position()
            .map_err(|e| self.map("reading positions", &e))?;
        Ok(
            match positions
                .find_partition(&partition.topic, partition.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            },
        )
    }

    async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> TransportResult<Vec<Option<OffsetAndMetadata>>> {
        let group = self.require_group("committed")?.to_string();
        let list = self.partition_list(
            partitions
                .iter()
                .map(|p| (p.clone(), Offset::Invalid, None)),
        )?;
        let timeout_ms = self.config.request_timeout_ms;
        let what = format!(
            "reading committed offsets of group '{group}' at {}",
            self.kafka.bootstrap()
        );
        let inner = Arc::clone(&self.inner);
        let result = blocking(&what, move || {
            inner.committed_offsets(list, Duration::from_millis(u64::from(timeout_ms)))
        })
        .await?;
        let list =
            result.map_err(|e| explain(&self.shared, &what, timeout_ms, self.map(&what, &e)))?;
        let mut out = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let element = list
                .find_partition(&partition.topic, partition.partition)
                .expect("librdkafka answers for every partition asked");
            if let Err(e) = element.error() {
                return Err(explain(
                    &self.shared,
                    &what,
                    timeout_ms,
                    self.map(&format!("{what}: {partition}"), &e),
                ));
            }
            out.push(match element.offset() {
                Offset::Offset(offset) => Some(OffsetAndMetadata {
                    offset,
                    metadata: element.metadata().to_string(),
                }),
                _ => None,
            });
        }
        Ok(out)
    }

    async fn commit(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> TransportResult<()> {
        let group = self.require_group("commit")?.to_string();
        let list = self.partition_list(offsets.iter().map(|(p, o)| {
            (
                p.clone(),
                Offset::Offset(o.offset),
                Some(o.metadata.clone()),
            )
        }))?;
        let timeout_ms = self.config.request_timeout_ms;
        let what = format!(
            "committing offsets of group '{group}' at {}",
            self.kafka.bootstrap()
        );
        let inner = Arc::clone(&self.inner);
        let what_inner = what.clone();
        bounded(&self.shared, &what, timeout_ms, async move {
            blocking(&what_inner, move || inner.commit(&list, CommitMode::Sync)).await
        })
        .await?
        .map_err(|e| {
            let mut mapped = self.map(&what, &e);
            if let Some(code) = e.rdkafka_error_code() {
                mapped.code = code_of(code);
            }
            explain(&self.shared, &what, timeout_ms, mapped)
        })
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.group_metadata.clone()
    }

    async fn offsets_range(&mut self, partition: &TopicPartition) -> TransportResult<(i64, i64)> {
        let timeout_ms = self
            .config
            .request_timeout_ms
            .min(self.kafka.timeout_ms().max(1))
            .max(1);
        let what = format!(
            "reading the offsets of {partition} at {}",
            self.kafka.bootstrap()
        );
        let inner = Arc::clone(&self.inner);
        let topic = partition.topic.clone();
        let number = partition.partition;
        let result = blocking(&what, move || {
            inner.fetch_watermarks(&topic, number, Duration::from_millis(u64::from(timeout_ms)))
        })
        .await?;
        result.map_err(|e| {
            let mut mapped = self.map(&what, &e);
            if mapped.code == ErrorCode::UnknownTopicOrPartition {
                mapped.message =
                    format!("{partition} does not exist at {}", self.kafka.bootstrap());
            }
            explain(&self.shared, &what, timeout_ms, mapped)
        })
    }

    async fn close(self) -> TransportResult<()> {
        self.inner.context().closing.store(true, Ordering::SeqCst);
        if self.subscribed {
            self.inner.unsubscribe();
        }
        let inner = Arc::clone(&self.inner);
        drop(self);
        // Dropping the last handle leaves the group (librdkafka's close); it
        // blocks, so it runs off the runtime.
        blocking("closing a consumer", move || drop(inner)).await
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // librdkafka's close (in BaseConsumer's drop) waits for the revoke.
        self.inner.context().closing.store(true, Ordering::SeqCst);
    }
}
