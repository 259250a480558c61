//! An in-memory Kafka for one process: the `Transport` seam over logs held
//! in memory, for benchmarks, the worker's property tests, and as the base
//! of replaying recordings.
//!
//! It keeps the seam's guarantees (see [`crate::transport`]) for clients in
//! one process and one thread: dense offsets, per-partition order, keys to
//! partitions by murmur2, transactional visibility (read_committed readers
//! stop at the first record of an open transaction and never see an
//! aborted one; control markers take an offset), atomic commit of records
//! and offsets, fencing of older incarnations of a transactional id, the
//! group generation check of transactional offset commits, and an eager
//! consumer group whose members split the partitions by range.
//!
//! What it leaves out, on purpose: networks, brokers, replication, time
//! (timestamps default to 0; nothing expires, so a transaction is never
//! aborted by a timeout; a consumer dropped without closing leaves its
//! group at once, where Kafka would wait for its session to expire),
//! and the wait of [`Consumer::committed`] for open transactions (it
//! returns the offsets committed so far).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use crate::transport::{
    Admin, Bytes, Consumer, ConsumerConfig, ConsumerEvent, Delivered, ErrorCode, ErrorKind,
    GroupMetadata, Isolation, Message, NewTopic, OffsetAndMetadata, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Transport, TransportError, TransportResult, partition_for_key,
};

fn error(kind: ErrorKind, code: ErrorCode, message: impl Into<String>) -> TransportError {
    TransportError::new(kind, code, message)
}

/// How a transaction ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxnStatus {
    Open,
    Committed,
    Aborted,
}

/// One offset of a partition log.
#[derive(Clone, Debug)]
struct Slot {
    /// `None`: a control marker.
    message: Option<Message>,
    /// The transaction that wrote it, if any.
    txn: Option<u64>,
}

/// One partition's log: the slots from offset `start` on (a log loaded
/// from a recording may start past 0).
#[derive(Clone, Debug, Default)]
struct Log {
    start: i64,
    slots: Vec<Slot>,
}

impl Log {
    /// The offset the next slot takes.
    fn end(&self) -> i64 {
        self.start + self.slots.len() as i64
    }

    fn push(&mut self, slot: Slot) {
        self.slots.push(slot);
    }
}

#[derive(Default)]
struct Txn {
    /// The transactional id that opened it.
    owner: String,
    status: Option<TxnStatus>,
    /// Offsets to commit with it: (group, partition) → offset.
    offsets: BTreeMap<(String, TopicPartition), OffsetAndMetadata>,
    /// Each partition it wrote to, with the offset of its first record there.
    partitions: BTreeMap<TopicPartition, i64>,
}

#[derive(Default)]
struct Member {
    assigned: Vec<TopicPartition>,
    /// Group events not yet handed out.
    events: VecDeque<ConsumerEvent>,
    topics: Vec<String>,
}

#[derive(Default)]
struct Group {
    generation: i32,
    members: BTreeMap<String, Member>,
    committed: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Vec<Log>>,
    groups: BTreeMap<String, Group>,
    txns: BTreeMap<u64, Txn>,
    /// The transactions not yet ended (read_committed stops at their first
    /// records).
    open: BTreeSet<u64>,
    next_txn: u64,
    /// The current epoch of every transactional id.
    epochs: BTreeMap<String, u32>,
    next_member: u64,
}

impl State {
    fn log(&self, tp: &TopicPartition) -> TransportResult<&Log> {
        self.topics
            .get(&tp.topic)
            .and_then(|partitions| partitions.get(usize::try_from(tp.partition).ok()?))
            .ok_or_else(|| {
                error(
                    ErrorKind::Fatal,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{tp} does not exist"),
                )
            })
    }

    fn status(&self, slot: &Slot) -> TxnStatus {
        match slot.txn {
            None => TxnStatus::Committed,
            Some(txn) => self.txns[&txn].status.unwrap_or(TxnStatus::Open),
        }
    }

    /// The end offset a reader with `isolation` may read up to.
    fn end(&self, tp: &TopicPartition, isolation: Isolation) -> TransportResult<i64> {
        let end = self.log(tp)?.end();
        Ok(match isolation {
            Isolation::ReadUncommitted => end,
            Isolation::ReadCommitted => self
                .open
                .iter()
                .filter_map(|txn| self.txns[txn].partitions.get(tp).copied())
                .min()
                .unwrap_or(end),
        })
    }

    /// Range assignment over the group's members, every member told to
    /// revoke what it owns and then given its new share (eager protocol).
    fn rebalance(&mut self, group_id: &str) {
        let topics_of: BTreeMap<String, usize> = self
            .topics
            .iter()
            .map(|(name, partitions)| (name.clone(), partitions.len()))
            .collect();
        let group = self.groups.get_mut(group_id).expect("the group exists");
        group.generation += 1;
        let members: Vec<String> = group.members.keys().cloned().collect();
        let mut shares: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
        let topics: BTreeSet<String> = group
            .members
            .values()
            .flat_map(|member| member.topics.iter().cloned())
            .collect();
        for topic in topics {
            let subscribers: Vec<&String> = members
                .iter()
                .filter(|m| group.members[*m].topics.contains(&topic))
                .collect();
            let partitions = topics_of.get(&topic).copied().unwrap_or(0);
            let (per, extra) = (
                partitions / subscribers.len(),
                partitions % subscribers.len(),
            );
            let mut next = 0;
            for (i, member) in subscribers.into_iter().enumerate() {
                let count = per + usize::from(i < extra);
                for partition in next..next + count {
                    shares
                        .entry(member.clone())
                        .or_default()
                        .push(TopicPartition::new(topic.clone(), partition as i32));
                }
                next += count;
            }
        }
        for (id, member) in &mut group.members {
            let old = std::mem::take(&mut member.assigned);
            if !old.is_empty() {
                member.events.push_back(ConsumerEvent::Revoked(old));
            }
            let mut new = shares.remove(id).unwrap_or_default();
            new.sort();
            member.assigned = new.clone();
            member.events.push_back(ConsumerEvent::Assigned(new));
        }
    }
}

/// The in-memory cluster; clones share it.
#[derive(Clone, Default)]
pub struct MemoryKafka {
    state: Rc<RefCell<State>>,
}

impl MemoryKafka {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record of a partition a read_committed reader sees, in offset
    /// order (for tests and replay).
    pub fn committed_records(&self, tp: &TopicPartition) -> TransportResult<Vec<Message>> {
        let state = self.state.borrow();
        let log = state.log(tp)?;
        let end = (state.end(tp, Isolation::ReadCommitted)? - log.start) as usize;
        Ok(log.slots[..end]
            .iter()
            .filter(|slot| state.status(slot) == TxnStatus::Committed)
            .filter_map(|slot| slot.message.clone())
            .collect())
    }

    /// Fills an empty partition with recorded records at their own offsets:
    /// the log runs from `start` to `end`, and an offset with no record (a
    /// transaction marker or an aborted record when it was recorded) is a
    /// slot that readers skip, as they skip markers. For replaying
    /// recordings.
    pub fn load_partition(
        &self,
        tp: &TopicPartition,
        start: i64,
        end: i64,
        messages: &[Message],
    ) -> TransportResult<()> {
        self.load_partition_owned(tp, start, end, messages.to_vec())
    }

    /// [`Self::load_partition`] with records the caller gives up (moved
    /// into the log, not copied).
    pub fn load_partition_owned(
        &self,
        tp: &TopicPartition,
        start: i64,
        end: i64,
        messages: Vec<Message>,
    ) -> TransportResult<()> {
        let mut state = self.state.borrow_mut();
        let log = state
            .topics
            .get_mut(&tp.topic)
            .and_then(|partitions| partitions.get_mut(usize::try_from(tp.partition).ok()?))
            .ok_or_else(|| {
                error(
                    ErrorKind::Fatal,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{tp} does not exist"),
                )
            })?;
        let invalid = |what: String| {
            Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidRecord,
                format!("{tp}: {what}"),
            ))
        };
        if !log.slots.is_empty() {
            return invalid("a partition is loaded once, before it is written".to_string());
        }
        if start < 0 || end < start {
            return invalid(format!("{start}..{end} is not a range of offsets"));
        }
        let mut slots = Vec::with_capacity((end - start) as usize);
        for message in messages {
            let at = start + slots.len() as i64;
            if message.offset < at
                || message.offset >= end
                || *message.topic != *tp.topic
                || message.partition != tp.partition
            {
                return invalid(format!(
                    "record at offset {} out of order or outside {start}..{end}",
                    message.offset
                ));
            }
            let gap = Slot {
                message: None,
                txn: None,
            };
            slots.resize((message.offset - start) as usize, gap);
            slots.push(Slot {
                message: Some(message),
                txn: None,
            });
        }
        slots.resize(
            (end - start) as usize,
            Slot {
                message: None,
                txn: None,
            },
        );
        *log = Log { start, slots };
        Ok(())
    }

    /// The offsets a group committed.
    pub fn group_offsets(&self, group_id: &str) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let state = self.state.borrow();
        state
            .groups
            .get(group_id)
            .map(|group| group.committed.clone())
            .unwrap_or_default()
    }
}

/// The admin client.
pub struct MemoryAdmin {
    state: Rc<RefCell<State>>,
}

impl Admin for MemoryAdmin {
    async fn create_topic(&self, topic: &NewTopic) -> TransportResult<()> {
        let mut state = self.state.borrow_mut();
        if state.topics.contains_key(&topic.name) {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::TopicAlreadyExists,
                format!("topic {} exists", topic.name),
            ));
        }
        if topic.partitions < 1 {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidPartitions,
                format!("topic {} needs at least one partition", topic.name),
            ));
        }
        let partitions = vec![Log::default(); topic.partitions as usize];
        state.topics.insert(topic.name.clone(), partitions);
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> TransportResult<i32> {
        let state = self.state.borrow();
        match state.topics.get(topic) {
            Some(partitions) => Ok(partitions.len() as i32),
            None => Err(error(
                ErrorKind::Fatal,
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {topic} does not exist"),
            )),
        }
    }
}

/// A consumer: a group member or a reader of assigned partitions.
pub struct MemoryConsumer {
    state: Rc<RefCell<State>>,
    config: ConsumerConfig,
    member_id: Option<String>,
    /// Partitions read without a group (assign).
    assigned: Vec<TopicPartition>,
    positions: BTreeMap<TopicPartition, i64>,
}

impl MemoryConsumer {
    fn owned(&self) -> Vec<TopicPartition> {
        match &self.member_id {
            None => self.assigned.clone(),
            Some(member) => {
                let state = self.state.borrow();
                let group = &state.groups[self.group_id()];
                group.members[member].assigned.clone()
            }
        }
    }

    fn group_id(&self) -> &str {
        self.config.group_id.as_deref().unwrap_or("")
    }

    fn start_position(&self, tp: &TopicPartition) -> i64 {
        let state = self.state.borrow();
        state
            .groups
            .get(self.group_id())
            .and_then(|group| group.committed.get(tp))
            .map_or(0, |committed| committed.offset)
    }

    /// A pending group event, handed out before any record.
    fn next_group_event(&mut self) -> Option<ConsumerEvent> {
        let member = self.member_id.clone()?;
        let group_id = self.group_id().to_string();
        let event = {
            let mut state = self.state.borrow_mut();
            let group = state.groups.get_mut(&group_id)?;
            group.members.get_mut(&member)?.events.pop_front()?
        };
        if let ConsumerEvent::Assigned(partitions) = &event {
            self.positions.clear();
            for tp in partitions {
                let position = self.start_position(tp);
                self.positions.insert(tp.clone(), position);
            }
        }
        Some(event)
    }

    fn read(&mut self, max_events: usize) -> TransportResult<Vec<ConsumerEvent>> {
        let state = self.state.borrow();
        let mut events = Vec::new();
        for (tp, position) in &mut self.positions {
            let end = state.end(tp, self.config.isolation)?;
            let log = state.log(tp)?;
            // Below the log start: read from the start, as Kafka's reset does.
            *position = (*position).max(log.start);
            while *position < end && events.len() < max_events {
                let slot = &log.slots[(*position - log.start) as usize];
                *position += 1;
                let visible = self.config.isolation == Isolation::ReadUncommitted
                    || state.status(slot) == TxnStatus::Committed;
                if let (Some(message), true) = (&slot.message, visible) {
                    events.push(ConsumerEvent::Message(message.clone()));
                }
            }
        }
        Ok(events)
    }
}

impl MemoryConsumer {
    /// Leaves the group (its partitions go to the others).
    fn leave(&mut self) {
        if let Some(member_id) = self.member_id.take() {
            let group_id = self.group_id().to_string();
            let mut state = self.state.borrow_mut();
            if let Some(group) = state.groups.get_mut(&group_id) {
                group.members.remove(&member_id);
                if !group.members.is_empty() {
                    state.rebalance(&group_id);
                }
            }
        }
    }
}

/// A consumer dropped without `close` (a crashed process) leaves at once:
/// nothing here expires a session.
impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Consumer for MemoryConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> TransportResult<()> {
        let Some(group_id) = self.config.group_id.clone() else {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "subscribe needs a group id",
            ));
        };
        let mut state = self.state.borrow_mut();
        state.next_member += 1;
        let member_id = format!("{}-{}", self.config.client_id, state.next_member);
        let group = state.groups.entry(group_id.clone()).or_default();
        let member = Member {
            topics: topics.to_vec(),
            ..Member::default()
        };
        group.members.insert(member_id.clone(), member);
        state.rebalance(&group_id);
        self.member_id = Some(member_id);
        Ok(())
    }

    async fn assign(&mut self, partitions: &[TopicPartition]) -> TransportResult<()> {
        self.assigned = partitions.to_vec();
        self.positions.clear();
        for tp in partitions {
            self.state.borrow().log(tp)?;
            let position = self.start_position(tp);
            self.positions.insert(tp.clone(), position);
        }
        Ok(())
    }

    async fn poll(
        &mut self,
        max_events: usize,
        timeout: Duration,
    ) -> TransportResult<Vec<ConsumerEvent>> {
        if let Some(event) = self.next_group_event() {
            return Ok(vec![event]);
        }
        let events = self.read(max_events)?;
        if events.is_empty() {
            tokio::time::sleep(timeout).await;
        }
        Ok(events)
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> TransportResult<()> {
        if !self.owned().contains(partition) {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                format!("seek on {partition}, which this consumer does not own"),
            ));
        }
        self.positions.insert(partition.clone(), offset.max(0));
        Ok(())
    }

    /// Reading steps over markers' slots and, under read_committed, over
    /// aborted records, so the position is already past them.
    fn position(&self, partition: &TopicPartition) -> TransportResult<Option<i64>> {
        if !self.owned().contains(partition) {
            return Ok(None);
        }
        Ok(self.positions.get(partition).copied())
    }

    async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> TransportResult<Vec<Option<OffsetAndMetadata>>> {
        let state = self.state.borrow();
        let group = state.groups.get(self.group_id());
        Ok(partitions
            .iter()
            .map(|tp| group.and_then(|group| group.committed.get(tp).cloned()))
            .collect())
    }

    async fn commit(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> TransportResult<()> {
        let group_id = self.group_id().to_string();
        let mut state = self.state.borrow_mut();
        let group = state.groups.entry(group_id).or_default();
        for (tp, offset) in offsets {
            group.committed.insert(tp.clone(), offset.clone());
        }
        Ok(())
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let member_id = self.member_id.clone()?;
        let state = self.state.borrow();
        let group = state.groups.get(self.group_id())?;
        Some(GroupMetadata {
            group_id: self.group_id().to_string(),
            generation_id: group.generation,
            member_id,
            group_instance_id: None,
        })
    }

    async fn offsets_range(&mut self, partition: &TopicPartition) -> TransportResult<(i64, i64)> {
        let state = self.state.borrow();
        let start = state.log(partition)?.start;
        Ok((start, state.end(partition, self.config.isolation)?))
    }

    async fn close(mut self) -> TransportResult<()> {
        self.leave();
        Ok(())
    }
}

/// A producer; transactional with a transactional id.
pub struct MemoryProducer {
    state: Rc<RefCell<State>>,
    config: ProducerConfig,
    epoch: Option<u32>,
    txn: Option<u64>,
    /// A send of the open transaction failed: only abort is possible.
    failed: Option<TransportError>,
}

impl MemoryProducer {
    /// Fails if a newer incarnation of the transactional id exists.
    fn check_epoch(&self) -> TransportResult<()> {
        let Some(id) = &self.config.transactional_id else {
            return Ok(());
        };
        let current = self.state.borrow().epochs.get(id).copied();
        match (self.epoch, current) {
            (Some(mine), Some(current)) if mine == current => Ok(()),
            (None, _) => Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "init_transactions first",
            )),
            _ => Err(error(
                ErrorKind::Fenced,
                ErrorCode::ProducerFenced,
                format!("transactional id {id:?} has a newer incarnation"),
            )),
        }
    }

    fn open_txn(&self) -> TransportResult<u64> {
        self.check_epoch()?;
        self.txn.ok_or_else(|| {
            error(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "no transaction is open",
            )
        })
    }

    /// Ends the open transaction: markers in its partitions, its offsets
    /// committed if it commits.
    fn end(&mut self, status: TxnStatus) -> TransportResult<()> {
        let txn = self.open_txn()?;
        end_txn(&mut self.state.borrow_mut(), txn, status);
        self.txn = None;
        self.failed = None;
        Ok(())
    }
}

fn end_txn(state: &mut State, txn: u64, status: TxnStatus) {
    let record = state.txns.get_mut(&txn).expect("a known transaction");
    record.status = Some(status);
    let partitions: Vec<TopicPartition> = record.partitions.keys().cloned().collect();
    state.open.remove(&txn);
    let offsets = std::mem::take(&mut record.offsets);
    for tp in partitions {
        let log = &mut state.topics.get_mut(&tp.topic).expect("a topic")[tp.partition as usize];
        log.push(Slot {
            message: None,
            txn: Some(txn),
        });
    }
    if status == TxnStatus::Committed {
        for ((group_id, tp), offset) in offsets {
            let group = state.groups.entry(group_id).or_default();
            group.committed.insert(tp, offset);
        }
    }
}

impl Producer for MemoryProducer {
    type Delivery = std::future::Ready<TransportResult<Delivered>>;

    async fn init_transactions(&mut self) -> TransportResult<()> {
        let Some(id) = self.config.transactional_id.clone() else {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "init_transactions needs a transactional id",
            ));
        };
        let mut state = self.state.borrow_mut();
        let epoch = state.epochs.get(&id).map_or(0, |epoch| epoch + 1);
        state.epochs.insert(id.clone(), epoch);
        // What the previous incarnation left open is aborted.
        let open: Vec<u64> = state
            .open
            .iter()
            .filter(|txn| state.txns[*txn].owner == id)
            .copied()
            .collect();
        for txn in open {
            end_txn(&mut state, txn, TxnStatus::Aborted);
        }
        self.epoch = Some(epoch);
        Ok(())
    }

    async fn begin_transaction(&mut self) -> TransportResult<()> {
        self.check_epoch()?;
        if self.txn.is_some() {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "a transaction is already open",
            ));
        }
        let mut state = self.state.borrow_mut();
        state.next_txn += 1;
        let txn = state.next_txn;
        let owner = self.config.transactional_id.clone().unwrap_or_default();
        state.txns.insert(
            txn,
            Txn {
                owner,
                ..Txn::default()
            },
        );
        state.open.insert(txn);
        self.txn = Some(txn);
        Ok(())
    }

    fn send(&mut self, record: ProducerRecord) -> TransportResult<Self::Delivery> {
        let txn = match &self.config.transactional_id {
            Some(_) => Some(self.open_txn()?),
            None => None,
        };
        let mut state = self.state.borrow_mut();
        let partitions = match state.topics.get(&record.topic) {
            Some(partitions) => partitions.len() as i32,
            None => {
                let failure = error(
                    ErrorKind::Abortable,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {} does not exist", record.topic),
                );
                self.failed = Some(failure.clone());
                return Err(failure);
            }
        };
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                return Err(error(
                    ErrorKind::Abortable,
                    ErrorCode::InvalidRecord,
                    "a record without a key or a partition",
                ));
            }
        };
        let log = &mut state.topics.get_mut(&record.topic).expect("checked")[partition as usize];
        let offset = log.end();
        log.push(Slot {
            message: Some(Message {
                topic: record.topic.as_str().into(),
                partition,
                offset,
                key: record.key.map(Bytes::from),
                value: record.value.map(Bytes::from),
                timestamp_ms: record.timestamp_ms.unwrap_or(0),
                headers: record.headers,
            }),
            txn,
        });
        if let Some(txn) = txn {
            let tp = TopicPartition::new(record.topic.clone(), partition);
            let partitions = &mut state.txns.get_mut(&txn).expect("open").partitions;
            partitions.entry(tp).or_insert(offset);
        }
        let delivered = Delivered {
            topic: record.topic,
            partition,
            offset,
        };
        Ok(std::future::ready(Ok(delivered)))
    }

    async fn flush(&mut self) -> TransportResult<()> {
        Ok(())
    }

    async fn send_offsets_to_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
    ) -> TransportResult<()> {
        let txn = self.open_txn()?;
        let mut state = self.state.borrow_mut();
        let generation = state.groups.get(&group.group_id).map(|g| g.generation);
        // KIP-447: a member of an older generation is refused; generation
        // -1 (no member) is accepted, as Kafka does.
        if group.generation_id >= 0 && generation != Some(group.generation_id) {
            let refused = error(
                ErrorKind::Abortable,
                ErrorCode::IllegalGeneration,
                format!(
                    "generation {} of group {} is not current ({generation:?})",
                    group.generation_id, group.group_id
                ),
            );
            self.failed = Some(refused.clone());
            return Err(refused);
        }
        let record = state.txns.get_mut(&txn).expect("open");
        for (tp, offset) in offsets {
            record
                .offsets
                .insert((group.group_id.clone(), tp.clone()), offset.clone());
        }
        Ok(())
    }

    async fn commit_transaction(&mut self) -> TransportResult<()> {
        if let Some(failed) = self.failed.clone() {
            return Err(error(
                ErrorKind::Abortable,
                failed.code,
                format!("the transaction cannot commit: {}", failed.message),
            ));
        }
        self.end(TxnStatus::Committed)
    }

    async fn abort_transaction(&mut self) -> TransportResult<()> {
        self.end(TxnStatus::Aborted)
    }
}

impl Transport for MemoryKafka {
    type Admin = MemoryAdmin;
    type Consumer = MemoryConsumer;
    type Producer = MemoryProducer;

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn admin(&self) -> TransportResult<MemoryAdmin> {
        Ok(MemoryAdmin {
            state: Rc::clone(&self.state),
        })
    }

    async fn consumer(&self, config: &ConsumerConfig) -> TransportResult<MemoryConsumer> {
        Ok(MemoryConsumer {
            state: Rc::clone(&self.state),
            config: config.clone(),
            member_id: None,
            assigned: Vec::new(),
            positions: BTreeMap::new(),
        })
    }

    async fn producer(&self, config: &ProducerConfig) -> TransportResult<MemoryProducer> {
        Ok(MemoryProducer {
            state: Rc::clone(&self.state),
            config: config.clone(),
            epoch: None,
            txn: None,
            failed: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    fn record(topic: &str, partition: i32, value: &str) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            partition: Some(partition),
            key: None,
            value: Some(value.as_bytes().to_vec()),
            timestamp_ms: Some(1),
            headers: Vec::new(),
        }
    }

    async fn kafka_with(topic: &str, partitions: i32) -> MemoryKafka {
        let kafka = MemoryKafka::new();
        let new = NewTopic {
            name: topic.into(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
        };
        kafka
            .admin()
            .await
            .unwrap()
            .create_topic(&new)
            .await
            .unwrap();
        kafka
    }

    fn values(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8(m.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    async fn transactional(kafka: &MemoryKafka, id: &str) -> MemoryProducer {
        let config = ProducerConfig::new(id, Some(id.to_string()));
        let mut producer = kafka.producer(&config).await.unwrap();
        producer.init_transactions().await.unwrap();
        producer
    }

    #[test]
    fn memory_read_committed_stops_at_an_open_transaction_and_never_shows_an_aborted_one() {
        block_on(async {
            let kafka = kafka_with("t", 1).await;
            let tp = TopicPartition::new("t", 0);
            let mut producer = transactional(&kafka, "p").await;
            producer.begin_transaction().await.unwrap();
            drop(producer.send(record("t", 0, "aborted")).unwrap());
            producer.abort_transaction().await.unwrap();
            producer.begin_transaction().await.unwrap();
            drop(producer.send(record("t", 0, "committed")).unwrap());
            producer.commit_transaction().await.unwrap();
            producer.begin_transaction().await.unwrap();
            drop(producer.send(record("t", 0, "open")).unwrap());
            assert_eq!(
                values(&kafka.committed_records(&tp).unwrap()),
                ["committed"]
            );
            let mut reader = kafka
                .consumer(&ConsumerConfig::new("r", None))
                .await
                .unwrap();
            // aborted, marker, committed, marker: the open one is at 4.
            assert_eq!(reader.offsets_range(&tp).await.unwrap(), (0, 4));
            reader.assign(std::slice::from_ref(&tp)).await.unwrap();
            let events = reader.poll(10, Duration::ZERO).await.unwrap();
            assert_eq!(events.len(), 1, "{events:?}");
        });
    }

    #[test]
    fn memory_a_loaded_partition_keeps_its_offsets_and_readers_skip_the_gaps() {
        block_on(async {
            let kafka = kafka_with("t", 2).await;
            let tp = TopicPartition::new("t", 0);
            let at = |offset: i64| Message {
                topic: "t".into(),
                partition: 0,
                offset,
                key: None,
                value: Some(offset.to_string().into_bytes().into()),
                timestamp_ms: 1,
                headers: Vec::new(),
            };
            let messages = vec![at(100), at(101), at(104)];
            kafka.load_partition(&tp, 100, 106, &messages).unwrap();
            let mut reader = kafka
                .consumer(&ConsumerConfig::new("r", None))
                .await
                .unwrap();
            assert_eq!(reader.offsets_range(&tp).await.unwrap(), (100, 106));
            reader.assign(std::slice::from_ref(&tp)).await.unwrap();
            let events = reader.poll(10, Duration::ZERO).await.unwrap();
            let read: Vec<ConsumerEvent> =
                messages.into_iter().map(ConsumerEvent::Message).collect();
            assert_eq!(events, read);
            // A send after the load goes to the end offset.
            let mut producer = kafka
                .producer(&ProducerConfig::new("p", None))
                .await
                .unwrap();
            let delivered = producer
                .send(record("t", 0, "next"))
                .unwrap()
                .await
                .unwrap();
            assert_eq!(delivered.offset, 106);
            let other = TopicPartition::new("t", 1);
            let error = kafka.load_partition(&other, 0, 1, &[at(0)]).unwrap_err();
            assert!(error.message.contains("out of order or outside"), "{error}");
            assert!(kafka.load_partition(&tp, 0, 0, &[]).is_err(), "loaded once");
        });
    }

    #[test]
    fn memory_a_newer_incarnation_fences_the_older_and_aborts_what_it_left_open() {
        block_on(async {
            let kafka = kafka_with("t", 1).await;
            let mut old = transactional(&kafka, "worker").await;
            old.begin_transaction().await.unwrap();
            drop(old.send(record("t", 0, "zombie")).unwrap());
            let _new = transactional(&kafka, "worker").await;
            let error = old.commit_transaction().await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fenced);
            let tp = TopicPartition::new("t", 0);
            assert!(kafka.committed_records(&tp).unwrap().is_empty());
            let mut reader = kafka
                .consumer(&ConsumerConfig::new("r", None))
                .await
                .unwrap();
            assert_eq!(
                reader.offsets_range(&tp).await.unwrap(),
                (0, 2),
                "aborted: not open"
            );
        });
    }

    #[test]
    fn memory_offsets_sent_to_a_transaction_are_committed_with_it_and_a_stale_generation_is_refused()
     {
        block_on(async {
            let kafka = kafka_with("t", 2).await;
            let mut member = kafka
                .consumer(&ConsumerConfig::new("c", Some("g".into())))
                .await
                .unwrap();
            member.subscribe(&["t".to_string()]).await.unwrap();
            let events = member.poll(10, Duration::ZERO).await.unwrap();
            let both = vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
            assert_eq!(events, vec![ConsumerEvent::Assigned(both)]);
            let group = member.group_metadata().unwrap();
            let mut producer = transactional(&kafka, "p").await;
            producer.begin_transaction().await.unwrap();
            let offset = OffsetAndMetadata {
                offset: 5,
                metadata: "m".into(),
            };
            let offsets = vec![(TopicPartition::new("t", 0), offset.clone())];
            producer
                .send_offsets_to_transaction(&offsets, &group)
                .await
                .unwrap();
            assert!(kafka.group_offsets("g").is_empty(), "not before the commit");
            producer.commit_transaction().await.unwrap();
            assert_eq!(
                kafka.group_offsets("g")[&TopicPartition::new("t", 0)],
                offset
            );
            // A second member joins: the first one's generation is stale.
            let mut other = kafka
                .consumer(&ConsumerConfig::new("d", Some("g".into())))
                .await
                .unwrap();
            other.subscribe(&["t".to_string()]).await.unwrap();
            producer.begin_transaction().await.unwrap();
            let error = producer
                .send_offsets_to_transaction(&offsets, &group)
                .await
                .unwrap_err();
            assert_eq!(
                (error.kind, error.code),
                (ErrorKind::Abortable, ErrorCode::IllegalGeneration)
            );
            assert_eq!(
                producer.commit_transaction().await.unwrap_err().kind,
                ErrorKind::Abortable
            );
            producer.abort_transaction().await.unwrap();
        });
    }

    #[test]
    fn memory_members_split_the_partitions_by_range_and_a_leaver_hands_its_share_over() {
        block_on(async {
            let kafka = kafka_with("t", 3).await;
            let config = |id: &str| ConsumerConfig::new(id, Some("g".into()));
            let mut a = kafka.consumer(&config("a")).await.unwrap();
            a.subscribe(&["t".to_string()]).await.unwrap();
            let mut b = kafka.consumer(&config("b")).await.unwrap();
            b.subscribe(&["t".to_string()]).await.unwrap();
            let tps = |ps: &[i32]| {
                ps.iter()
                    .map(|p| TopicPartition::new("t", *p))
                    .collect::<Vec<_>>()
            };
            // a: assigned all, then revoked, then its share of two members.
            assert_eq!(
                a.poll(10, Duration::ZERO).await.unwrap(),
                vec![ConsumerEvent::Assigned(tps(&[0, 1, 2]))]
            );
            assert_eq!(
                a.poll(10, Duration::ZERO).await.unwrap(),
                vec![ConsumerEvent::Revoked(tps(&[0, 1, 2]))]
            );
            assert_eq!(
                a.poll(10, Duration::ZERO).await.unwrap(),
                vec![ConsumerEvent::Assigned(tps(&[0, 1]))]
            );
            assert_eq!(
                b.poll(10, Duration::ZERO).await.unwrap(),
                vec![ConsumerEvent::Assigned(tps(&[2]))]
            );
            a.close().await.unwrap();
            assert_eq!(
                b.poll(10, Duration::ZERO).await.unwrap(),
                vec![ConsumerEvent::Revoked(tps(&[2]))]
            );
            assert_eq!(
                b.poll(10, Duration::ZERO).await.unwrap(),
                vec![ConsumerEvent::Assigned(tps(&[0, 1, 2]))]
            );
        });
    }
}
