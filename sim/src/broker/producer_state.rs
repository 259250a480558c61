//! Per-partition producer state: idempotence and transactions, as Kafka's
//! `ProducerStateManager` keeps it.
//!
//! For each producer id: its epoch, the metadata of its last
//! [`BATCHES_PER_PRODUCER`] batches (for de-duplicating retries), the
//! coordinator epoch of its last marker, and the first offset of its open
//! transaction on this partition. The leader validates appends against it;
//! leaders and followers update it from every batch they append, so a new
//! leader has the same state (it is a function of the log).

use std::collections::{BTreeMap, VecDeque};

use eddyline_engine::transport::ErrorCode;

use crate::protocol::{ProducerEpoch, ProducerId};

/// Kafka keeps the metadata of the last 5 batches per producer and
/// partition (and so allows at most 5 in-flight requests per connection
/// for idempotent producers).
pub(crate) const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: ProducerEpoch,
    pub batches: VecDeque<BatchMeta>,
    pub coordinator_epoch: i32,
    pub current_txn_first_offset: Option<i64>,
    /// Markers written for this producer (KIP-890's verification guard: a
    /// marker between verification and append invalidates the append).
    pub markers: u64,
}

/// What the leader should do with a data batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppendCheck {
    Append,
    /// A retry of a batch already in the log: answer with its offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from
/// `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

fn in_sequence(last_sequence: i32, next_sequence: i32) -> bool {
    next_sequence == increment_sequence(last_sequence, 1)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerStateTable {
    /// Every producer id that wrote to the partition. Unbounded by design:
    /// Kafka expires idle producer ids after `producer.id.expiration.ms`
    /// (a day), longer than any simulated run; this model never expires
    /// them.
    producers: BTreeMap<ProducerId, ProducerEntry>,
}

impl ProducerStateTable {
    pub(crate) fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Validates a data batch from a producer (leader side).
    pub(crate) fn check_data(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        first_sequence: i32,
        last_sequence: i32,
        transactional: bool,
    ) -> Result<AppendCheck, ErrorCode> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // An unknown producer may start at any sequence (its state may
            // have been removed with old data), as in Kafka.
            return Ok(AppendCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if first_sequence < 0 {
            // A coordinator's write (TxnOffsetCommit): no sequence (Kafka
            // checks sequences of client appends only).
            if !transactional && entry.current_txn_first_offset.is_some() {
                return Err(ErrorCode::InvalidTxnState);
            }
            return Ok(AppendCheck::Append);
        }
        if epoch > entry.epoch {
            if first_sequence != 0 {
                return Err(ErrorCode::OutOfOrderSequenceNumber);
            }
            return Ok(AppendCheck::Append);
        }
        if let Some(duplicate) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return Ok(AppendCheck::Duplicate {
                base_offset: duplicate.base_offset,
                last_offset: duplicate.last_offset,
            });
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_sequence, first_sequence) => {
                return Err(ErrorCode::OutOfOrderSequenceNumber);
            }
            // The epoch came from a marker: sequences restart at 0.
            None if first_sequence != 0 => return Err(ErrorCode::OutOfOrderSequenceNumber),
            _ => {}
        }
        if !transactional && entry.current_txn_first_offset.is_some() {
            return Err(ErrorCode::InvalidTxnState);
        }
        Ok(AppendCheck::Append)
    }

    /// The producer's entry (made with `coordinator_epoch` if new), moved
    /// to `epoch`: a new epoch forgets the sequences of the old one.
    fn entry_in_epoch(
        &mut self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        coordinator_epoch: i32,
    ) -> &mut ProducerEntry {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                coordinator_epoch,
                current_txn_first_offset: None,
                markers: 0,
            });
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry
    }

    /// Records an appended data batch. Returns the batch's base offset if
    /// it opened a transaction on this partition.
    pub(crate) fn apply_data(
        &mut self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        batch: BatchMeta,
        transactional: bool,
    ) -> Option<i64> {
        let entry = self.entry_in_epoch(producer_id, epoch, -1);
        if batch.first_sequence >= 0 {
            if entry.batches.len() == BATCHES_PER_PRODUCER {
                entry.batches.pop_front();
            }
            entry.batches.push_back(batch);
            assert!(entry.batches.len() <= BATCHES_PER_PRODUCER);
        }
        if transactional && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(batch.base_offset);
            return Some(batch.base_offset);
        }
        None
    }

    /// Validates a transaction marker from a coordinator.
    pub(crate) fn check_marker(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        coordinator_epoch: i32,
    ) -> Result<(), ErrorCode> {
        if let Some(entry) = self.producers.get(&producer_id) {
            if epoch < entry.epoch {
                return Err(ErrorCode::InvalidProducerEpoch);
            }
            if coordinator_epoch < entry.coordinator_epoch {
                return Err(ErrorCode::TransactionCoordinatorFenced);
            }
        }
        Ok(())
    }

    /// Records an appended marker. Returns the first offset of the
    /// transaction it closed on this partition, if one was open.
    pub(crate) fn apply_marker(
        &mut self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        coordinator_epoch: i32,
    ) -> Option<i64> {
        let entry = self.entry_in_epoch(producer_id, epoch, coordinator_epoch);
        entry.coordinator_epoch = coordinator_epoch;
        entry.markers += 1;
        entry.current_txn_first_offset.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: i32, last: i32, base: i64) -> BatchMeta {
        BatchMeta {
            first_sequence: first,
            last_sequence: last,
            base_offset: base,
            last_offset: base + i64::from(last - first),
        }
    }

    #[test]
    fn sequences_wrap_from_max_to_zero() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
    }

    #[test]
    fn a_retried_batch_among_the_last_five_is_a_duplicate_with_its_first_offsets() {
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            assert_eq!(
                table.check_data(7, 0, i * 10, i * 10 + 9, false),
                Ok(AppendCheck::Append)
            );
            table.apply_data(7, 0, meta(i * 10, i * 10 + 9, i64::from(i) * 10), false);
        }
        assert_eq!(
            table.check_data(7, 0, 50, 59, false),
            Ok(AppendCheck::Duplicate {
                base_offset: 50,
                last_offset: 59
            })
        );
        assert_eq!(
            table.check_data(7, 0, 10, 19, false),
            Ok(AppendCheck::Duplicate {
                base_offset: 10,
                last_offset: 19
            })
        );
        // The first batch fell out of the window of five: not a duplicate,
        // and out of sequence.
        assert_eq!(
            table.check_data(7, 0, 0, 9, false),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn a_gap_in_sequences_is_out_of_order_and_an_old_epoch_is_rejected() {
        let mut table = ProducerStateTable::default();
        table.apply_data(1, 2, meta(0, 4, 0), false);
        assert_eq!(
            table.check_data(1, 2, 6, 8, false),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(table.check_data(1, 2, 5, 8, false), Ok(AppendCheck::Append));
        assert_eq!(
            table.check_data(1, 1, 5, 8, false),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            table.check_data(1, 3, 5, 8, false),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(table.check_data(1, 3, 0, 8, false), Ok(AppendCheck::Append));
    }

    #[test]
    fn a_marker_closes_the_open_transaction_and_fences_older_epochs() {
        let mut table = ProducerStateTable::default();
        assert_eq!(table.apply_data(4, 0, meta(0, 1, 10), true), Some(10));
        assert_eq!(table.apply_data(4, 0, meta(2, 3, 12), true), None);
        assert_eq!(
            table.check_data(4, 0, 4, 4, false),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(table.check_marker(4, 1, 0), Ok(()));
        assert_eq!(table.apply_marker(4, 1, 0), Some(10));
        assert_eq!(
            table.check_marker(4, 0, 0),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            table.check_marker(4, 1, -5),
            Err(ErrorCode::TransactionCoordinatorFenced)
        );
        assert_eq!(
            table.check_data(4, 0, 4, 4, true),
            Err(ErrorCode::InvalidProducerEpoch)
        );
    }
}
