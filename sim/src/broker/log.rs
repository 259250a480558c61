//! A partition's log: batches indexed by offset, the leader-epoch cache,
//! producer state, open transactions and the aborted-transaction index.
//!
//! The log is the broker's "disk": it survives a crash of the broker host
//! (it lives outside the host closure). Everything in it is a function of
//! the batches, and every append goes through [`PartitionLog::push_batch`],
//! so a leader's and a follower's derived state agree, and truncation can
//! rebuild it by replaying the remaining batches (Kafka's log recovery).
//!
//! Simplification: no retention, compaction or segments; the log start
//! offset is always 0, and an appended batch is durable at once (as if
//! flushed; Kafka relies on replication rather than fsync for this).

use std::collections::BTreeMap;

use eddyline_engine::transport::ErrorCode;

use crate::broker::producer_state::{
    AppendCheck, BatchMeta, ProducerStateTable, increment_sequence,
};
use crate::internal::{BatchHeader, ReplicaBatch};
use crate::protocol::{
    AbortedTransaction, ControlType, ProduceBatch, ProducerEpoch, ProducerId, RecordBatch,
    RecordData,
};
use crate::seed_context::current_seed;

/// No leader epoch / no offset (Kafka's `UNDEFINED_EPOCH`).
pub(crate) const UNDEFINED_EPOCH: i32 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AbortedTxn {
    producer_id: ProducerId,
    first_offset: i64,
    last_offset: i64,
}

/// A batch as the log stores it: its header, and its postcard encoding as
/// a [`RecordBatch`] (made once at append; fetches send these bytes as
/// they are, and replicas copy them without decoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredBatch {
    pub header: BatchHeader,
    pub encoded: Vec<u8>,
}

impl StoredBatch {
    pub(crate) fn encode(batch: &RecordBatch) -> Self {
        Self {
            header: BatchHeader::of(batch),
            encoded: postcard::to_stdvec(batch).expect("record batches encode"),
        }
    }

    /// The batch with its records (coordinator loading, inspection).
    pub(crate) fn decode(&self) -> RecordBatch {
        postcard::from_bytes(&self.encoded).unwrap_or_else(|e| {
            panic!(
                "stored batch at {} does not decode: {e} (seed {})",
                self.header.base_offset,
                current_seed()
            )
        })
    }

    #[cfg(test)]
    pub(crate) fn to_replica(&self) -> ReplicaBatch {
        ReplicaBatch {
            header: self.header,
            encoded: crate::internal::RawBytes(self.encoded.clone()),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PartitionLog {
    /// Grows with the log: there is no retention (see the module's note).
    batches: Vec<StoredBatch>,
    log_end_offset: i64,
    /// (leader epoch, its start offset), increasing in both.
    epochs: Vec<(i32, i64)>,
    producers: ProducerStateTable,
    /// First offsets of open transactions -> their producer.
    ongoing: BTreeMap<i64, ProducerId>,
    /// Transactions whose marker is appended but maybe not yet below the
    /// high watermark: first offset -> marker offset (Kafka's
    /// `ProducerStateManager.unreplicatedTxns`). Such a transaction still
    /// holds the last stable offset at its first offset until the high
    /// watermark passes its marker. Entries the high watermark has passed are
    /// ignored and pruned at the next marker.
    completed_unreplicated: BTreeMap<i64, i64>,
    /// Aborted transactions in marker (= last offset) order; grows with the
    /// log, which has no retention.
    aborted: Vec<AbortedTxn>,
    /// The high watermark (checkpointed with the log).
    pub high_watermark: i64,
}

/// The approximate size of a batch as Kafka's RecordBatch v2 would store it
/// (61 bytes of batch header, about 20 per record plus its payload).
pub(crate) fn batch_size_bytes(records: &[RecordData]) -> usize {
    61 + records
        .iter()
        .map(|record| {
            20 + record.key.as_ref().map_or(0, Vec::len)
                + record.value.as_ref().map_or(0, Vec::len)
                + record
                    .headers
                    .iter()
                    .map(|(name, value)| 2 + name.len() + value.len())
                    .sum::<usize>()
        })
        .sum::<usize>()
}

impl PartitionLog {
    pub(crate) fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    pub(crate) fn latest_epoch(&self) -> i32 {
        self.epochs
            .last()
            .map_or(UNDEFINED_EPOCH, |&(epoch, _)| epoch)
    }

    /// Kafka's last stable offset: the first offset of the oldest
    /// transaction that is open or whose marker the high watermark has not
    /// yet passed, or the high watermark, whichever is lower.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        let open = self.ongoing.first_key_value().map(|(&first, _)| first);
        let unreplicated = self
            .completed_unreplicated
            .iter()
            .find(|&(_, &marker)| marker >= self.high_watermark)
            .map(|(&first, _)| first);
        [open, unreplicated]
            .into_iter()
            .flatten()
            .fold(self.high_watermark, i64::min)
    }

    /// How many markers were written for the producer (see
    /// `ProducerEntry::markers`).
    pub(crate) fn marker_count(&self, producer_id: ProducerId) -> u64 {
        self.producers
            .get(producer_id)
            .map_or(0, |entry| entry.markers)
    }

    /// Whether the producer has an open transaction on this partition.
    pub(crate) fn has_open_transaction(&self, producer_id: ProducerId) -> bool {
        self.producers
            .get(producer_id)
            .is_some_and(|entry| entry.current_txn_first_offset.is_some())
    }

    /// A new leader records where its epoch starts (Kafka's
    /// `maybeAssignEpochStartOffset`).
    pub(crate) fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        if epoch > self.latest_epoch() {
            self.push_epoch(epoch, start_offset);
        }
    }

    /// Moves the high watermark (leader: as the ISR catches up; follower:
    /// as the leader says, within its own log).
    pub(crate) fn set_high_watermark(&mut self, high_watermark: i64) {
        assert!(
            (0..=self.log_end_offset).contains(&high_watermark),
            "high watermark {high_watermark} outside the log [0, {}] (seed {})",
            self.log_end_offset,
            current_seed()
        );
        self.high_watermark = high_watermark;
        self.assert_invariants();
    }

    /// A leader epoch starts at `start_offset`: the cache grows in both
    /// epoch and start offset, and never starts past the log end.
    fn push_epoch(&mut self, epoch: i32, start_offset: i64) {
        if let Some(&(last_epoch, last_start)) = self.epochs.last() {
            assert!(
                epoch > last_epoch && start_offset >= last_start,
                "epoch cache out of order: ({epoch}, {start_offset}) after \
                 ({last_epoch}, {last_start}) (seed {})",
                current_seed()
            );
        }
        assert!(
            start_offset <= self.log_end_offset,
            "epoch {epoch} starts at {start_offset}, past the log end {} (seed {})",
            self.log_end_offset,
            current_seed()
        );
        self.epochs.push((epoch, start_offset));
    }

    /// What holds of the log after every change: log start (0) <= last
    /// stable offset <= high watermark <= log end, and the latest epoch
    /// starts within the log.
    fn assert_invariants(&self) {
        let last_stable_offset = self.last_stable_offset();
        assert!(
            0 <= last_stable_offset
                && last_stable_offset <= self.high_watermark
                && self.high_watermark <= self.log_end_offset,
            "log offsets out of order: 0 <= LSO {last_stable_offset} <= HW {} <= LEO {} \
             (seed {})",
            self.high_watermark,
            self.log_end_offset,
            current_seed()
        );
        if let Some(&(epoch, start)) = self.epochs.last() {
            assert!(
                start <= self.log_end_offset,
                "epoch {epoch} starts at {start}, past the log end {} (seed {})",
                self.log_end_offset,
                current_seed()
            );
        }
    }

    /// Validates a producer's batch against the producer state (leader).
    pub(crate) fn check_produce(&self, batch: &ProduceBatch) -> Result<AppendCheck, ErrorCode> {
        if batch.records.is_empty() {
            return Err(crate::protocol::codes::INVALID_REQUEST);
        }
        if batch.producer_id < 0 {
            return Ok(AppendCheck::Append);
        }
        let count = batch.records.len() as i32;
        self.producers.check_data(
            batch.producer_id,
            batch.producer_epoch,
            batch.base_sequence,
            increment_sequence(batch.base_sequence, count - 1),
            batch.transactional,
        )
    }

    /// Appends a validated producer batch as leader; returns its base offset.
    pub(crate) fn append_as_leader(&mut self, batch: ProduceBatch, leader_epoch: i32) -> i64 {
        let base_offset = self.log_end_offset;
        self.push_batch(StoredBatch::encode(&RecordBatch {
            base_offset,
            partition_leader_epoch: leader_epoch,
            producer_id: batch.producer_id,
            producer_epoch: batch.producer_epoch,
            base_sequence: batch.base_sequence,
            transactional: batch.transactional,
            control: None,
            records: batch.records,
        }));
        base_offset
    }

    /// Validates a transaction marker against the producer state (leader).
    pub(crate) fn check_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        coordinator_epoch: i32,
    ) -> Result<(), ErrorCode> {
        self.producers
            .check_marker(producer_id, producer_epoch, coordinator_epoch)
    }

    /// Appends a validated transaction marker as leader; returns its offset.
    pub(crate) fn append_marker_as_leader(
        &mut self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        control: ControlType,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> i64 {
        let offset = self.log_end_offset;
        self.push_batch(StoredBatch::encode(&RecordBatch {
            base_offset: offset,
            partition_leader_epoch: leader_epoch,
            producer_id,
            producer_epoch,
            // Markers carry the coordinator epoch where data batches carry
            // a sequence (Kafka stores it in the control record's value).
            base_sequence: coordinator_epoch,
            transactional: true,
            control: Some(control),
            records: Vec::new(),
        }));
        offset
    }

    /// Appends batches fetched from the leader (follower side).
    pub(crate) fn append_replicated(&mut self, batches: Vec<ReplicaBatch>) {
        for batch in batches {
            assert_eq!(
                batch.header.base_offset,
                self.log_end_offset,
                "replicated batch does not continue the log (seed {})",
                current_seed()
            );
            self.push_batch(StoredBatch {
                header: batch.header,
                encoded: batch.encoded.0,
            });
        }
    }

    /// The one path by which batches enter the log.
    fn push_batch(&mut self, batch: StoredBatch) {
        let header = batch.header;
        assert!(
            header.offset_count() > 0,
            "empty batch appended (seed {})",
            current_seed()
        );
        assert_eq!(
            header.base_offset,
            self.log_end_offset,
            "append does not continue the log (seed {})",
            current_seed()
        );
        if header.partition_leader_epoch > self.latest_epoch() {
            self.push_epoch(header.partition_leader_epoch, header.base_offset);
        }
        self.apply_to_state(&header);
        self.log_end_offset = header.next_offset();
        self.batches.push(batch);
        self.assert_invariants();
    }

    fn apply_to_state(&mut self, batch: &BatchHeader) {
        if batch.producer_id < 0 {
            return;
        }
        match batch.control {
            Some(control) => {
                let first = self.producers.apply_marker(
                    batch.producer_id,
                    batch.producer_epoch,
                    batch.base_sequence,
                );
                if let Some(first_offset) = first {
                    let removed = self.ongoing.remove(&first_offset);
                    assert_eq!(
                        removed,
                        Some(batch.producer_id),
                        "open transaction index out of step (seed {})",
                        current_seed()
                    );
                    let high_watermark = self.high_watermark;
                    self.completed_unreplicated
                        .retain(|_, &mut marker| marker >= high_watermark);
                    self.completed_unreplicated
                        .insert(first_offset, batch.base_offset);
                    if control == ControlType::Abort {
                        self.aborted.push(AbortedTxn {
                            producer_id: batch.producer_id,
                            first_offset,
                            last_offset: batch.base_offset,
                        });
                    }
                }
            }
            None => {
                let count = batch.record_count;
                let meta = BatchMeta {
                    first_sequence: batch.base_sequence,
                    last_sequence: increment_sequence(batch.base_sequence, count - 1),
                    base_offset: batch.base_offset,
                    last_offset: batch.next_offset() - 1,
                };
                let opened = self.producers.apply_data(
                    batch.producer_id,
                    batch.producer_epoch,
                    meta,
                    batch.transactional,
                );
                if let Some(first_offset) = opened {
                    self.ongoing.insert(first_offset, batch.producer_id);
                }
            }
        }
    }

    /// Removes every batch at or after `offset` and rebuilds the derived
    /// state from the batches that remain.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        if offset >= self.log_end_offset {
            // Nothing to cut but epochs that start at the end and hold no
            // data (Kafka's `truncateFromEnd`).
            self.epochs.retain(|&(_, start)| start < offset);
            return;
        }
        let keep = self
            .batches
            .partition_point(|b| b.header.base_offset < offset);
        if let Some(last) = keep.checked_sub(1).map(|i| &self.batches[i].header) {
            assert!(
                last.next_offset() <= offset,
                "truncation to {offset} splits batch at {} (seed {})",
                last.base_offset,
                current_seed()
            );
        }
        self.batches.truncate(keep);
        self.log_end_offset = self.batches.last().map_or(0, |b| b.header.next_offset());
        assert!(
            self.log_end_offset <= offset,
            "truncation left the log past {offset} (seed {})",
            current_seed()
        );
        self.epochs
            .retain(|&(_, start)| start < self.log_end_offset);
        self.high_watermark = self.high_watermark.min(self.log_end_offset);
        self.producers = ProducerStateTable::default();
        self.ongoing.clear();
        self.completed_unreplicated.clear();
        self.aborted.clear();
        let batches = std::mem::take(&mut self.batches);
        for batch in &batches {
            self.apply_to_state(&batch.header);
        }
        self.batches = batches;
        self.assert_invariants();
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch at or
    /// below `requested` and the offset where the next epoch starts (the log
    /// end for the latest epoch); `(UNDEFINED_EPOCH, -1)` if there is none.
    pub(crate) fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let latest = self.latest_epoch();
        if latest == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, -1);
        }
        if requested == latest {
            return (latest, self.log_end_offset);
        }
        let next = self
            .epochs
            .partition_point(|&(epoch, _)| epoch <= requested);
        if next == 0 {
            return (UNDEFINED_EPOCH, -1);
        }
        let found = self.epochs[next - 1].0;
        match self.epochs.get(next) {
            Some(&(_, start)) => (found, start),
            None => (found, self.log_end_offset),
        }
    }

    /// The batches from the one holding `from` up to `upper` (exclusive),
    /// at least one batch and then until `max_records` records are reached.
    pub(crate) fn read(&self, from: i64, upper: i64, max_records: u32) -> &[StoredBatch] {
        let start = self
            .batches
            .partition_point(|b| b.header.next_offset() <= from);
        let mut end = start;
        let mut records = 0u64;
        while end < self.batches.len() {
            let batch = &self.batches[end].header;
            if batch.next_offset() > upper {
                break;
            }
            if end > start && records >= u64::from(max_records) {
                break;
            }
            records += batch.offset_count() as u64;
            end += 1;
        }
        &self.batches[start..end]
    }

    /// The aborted transactions overlapping `[from, upper)`.
    pub(crate) fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTransaction> {
        let start = self.aborted.partition_point(|txn| txn.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|txn| txn.first_offset < upper)
            .map(|txn| AbortedTransaction {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
            })
            .collect()
    }

    /// Every batch (coordinator state loading reads whole internal logs).
    pub(crate) fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> RecordData {
        RecordData {
            key: None,
            value: Some(value.as_bytes().to_vec()),
            timestamp_ms: 0,
            headers: Vec::new(),
        }
    }

    fn produce(pid: ProducerId, seq: i32, count: usize, transactional: bool) -> ProduceBatch {
        ProduceBatch {
            topic: "t".into(),
            partition: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            transactional,
            records: (0..count).map(|i| record(&i.to_string())).collect(),
        }
    }

    fn append(log: &mut PartitionLog, batch: ProduceBatch, epoch: i32) -> i64 {
        assert_eq!(log.check_produce(&batch), Ok(AppendCheck::Append));
        log.append_as_leader(batch, epoch)
    }

    #[test]
    fn offsets_are_dense_and_markers_take_one_offset() {
        let mut log = PartitionLog::default();
        assert_eq!(append(&mut log, produce(1, 0, 3, true), 0), 0);
        assert_eq!(append(&mut log, produce(1, 3, 2, true), 0), 3);
        assert_eq!(log.check_marker(1, 0, 0), Ok(()));
        assert_eq!(
            log.append_marker_as_leader(1, 0, ControlType::Commit, 0, 0),
            5
        );
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(append(&mut log, produce(-1, -1, 1, false), 0), 6);
        assert_eq!(log.read(4, 7, 100).len(), 3);
        // A read from the middle of a batch returns the whole batch.
        assert_eq!(log.read(4, 7, 100)[0].header.base_offset, 3);
        // Stored batches decode to what was appended.
        let decoded = log.read(0, 3, 100)[0].decode();
        assert_eq!(decoded.records, produce(1, 0, 3, true).records);
        assert_eq!(BatchHeader::of(&decoded), log.read(0, 3, 100)[0].header);
        assert_eq!(log.read(0, 7, 1).len(), 1);
        // Never past the upper bound.
        assert_eq!(log.read(0, 5, 100).len(), 2);
    }

    #[test]
    fn an_open_transaction_holds_the_last_stable_offset_until_its_marker() {
        let mut log = PartitionLog::default();
        append(&mut log, produce(-1, -1, 2, false), 0);
        append(&mut log, produce(5, 0, 2, true), 0);
        append(&mut log, produce(-1, -1, 2, false), 0);
        log.high_watermark = log.log_end_offset();
        assert_eq!(log.last_stable_offset(), 2);
        log.append_marker_as_leader(5, 0, ControlType::Abort, 0, 0);
        // Until the high watermark passes the marker, the transaction still
        // holds the last stable offset (Kafka's unreplicated transactions).
        assert_eq!(log.last_stable_offset(), 2);
        log.high_watermark = log.log_end_offset() - 1;
        assert_eq!(log.last_stable_offset(), 2);
        log.high_watermark = log.log_end_offset();
        assert_eq!(log.last_stable_offset(), 7);
        assert_eq!(
            log.aborted_between(0, 7),
            vec![AbortedTransaction {
                producer_id: 5,
                first_offset: 2
            }]
        );
        assert!(log.aborted_between(7, 7).is_empty());
        assert!(log.aborted_between(0, 2).is_empty());
    }

    #[test]
    fn truncation_rebuilds_producer_state_and_the_epoch_cache() {
        let mut log = PartitionLog::default();
        log.assign_epoch(0, 0);
        append(&mut log, produce(1, 0, 2, false), 0);
        log.assign_epoch(2, 2);
        append(&mut log, produce(1, 2, 2, true), 2);
        append(&mut log, produce(1, 4, 1, true), 2);
        assert_eq!(log.end_offset_for_epoch(0), (0, 2));
        assert_eq!(log.end_offset_for_epoch(1), (0, 2));
        assert_eq!(log.end_offset_for_epoch(2), (2, 5));
        assert_eq!(log.end_offset_for_epoch(7), (2, 5));
        log.high_watermark = 5;
        log.truncate_to(2);
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.high_watermark, 2);
        assert_eq!(log.latest_epoch(), 0);
        assert!(!log.has_open_transaction(1));
        assert_eq!(log.last_stable_offset(), 2);
        // The truncated batches are no longer duplicates: they append again.
        assert_eq!(
            log.check_produce(&produce(1, 2, 2, true)),
            Ok(AppendCheck::Append)
        );
    }

    #[test]
    fn a_batch_size_counts_keys_values_and_headers() {
        let mut r = record("abc");
        r.key = Some(vec![1, 2]);
        r.headers.push(("h".into(), vec![0; 4]));
        assert_eq!(batch_size_bytes(&[r]), 61 + 20 + 2 + 3 + 2 + 1 + 4);
    }
}
