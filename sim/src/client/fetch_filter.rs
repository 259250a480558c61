//! Turning a Fetch answer into messages, as Kafka's consumer does
//! (`CompletedFetch` in the Java client).
//!
//! Under read_committed the broker returns the log up to the last stable
//! offset together with the aborted transactions that overlap it; the
//! consumer drops a transactional batch whose producer has an aborted
//! transaction that started at or before the batch, until that producer's
//! ABORT marker. Control batches are never returned, under either
//! isolation. Records before the fetch offset (a batch may start before
//! it) are skipped. The next fetch offset moves past every batch looked
//! at, control and aborted ones included, so they are never read again.

use std::collections::BTreeSet;
use std::sync::Arc;

use eddyline_engine::transport::{Isolation, Message};

use crate::protocol::{ControlType, FetchResult};

/// The messages of one partition's fetch answer and where to fetch next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilteredFetch {
    pub messages: Vec<Message>,
    pub next_fetch_offset: i64,
}

/// Filters one partition's Fetch result fetched from `fetch_offset`.
pub fn filter_fetch(
    fetch_offset: i64,
    isolation: Isolation,
    result: &FetchResult,
) -> FilteredFetch {
    filter_fetch_owned(fetch_offset, isolation, result.clone())
}

/// [`filter_fetch`] taking the answer: the messages take its records'
/// keys, values and headers instead of copies.
pub fn filter_fetch_owned(
    fetch_offset: i64,
    isolation: Isolation,
    result: FetchResult,
) -> FilteredFetch {
    let mut aborted = result.aborted_transactions;
    aborted.sort_by_key(|transaction| (transaction.first_offset, transaction.producer_id));
    let mut aborted = aborted.into_iter().peekable();
    let mut aborted_producers = BTreeSet::new();
    // Never hand out what the broker should not have sent: past the last
    // stable offset (read_committed) or the high watermark.
    let visible_end = match isolation {
        Isolation::ReadCommitted => result.last_stable_offset,
        Isolation::ReadUncommitted => result.high_watermark,
    };
    let mut messages = Vec::new();
    // One name shared by the messages of this answer.
    let topic: Arc<str> = Arc::from(result.topic.as_str());
    let mut next_fetch_offset = fetch_offset;
    for batch in result.batches {
        if batch.base_offset >= visible_end {
            break;
        }
        let last_offset = batch.next_offset() - 1;
        if last_offset < fetch_offset {
            continue;
        }
        assert!(
            batch.base_offset >= next_fetch_offset || next_fetch_offset == fetch_offset,
            "fetch of {}-{} returned overlapping batches at {}",
            result.topic,
            result.partition,
            batch.base_offset
        );
        next_fetch_offset = next_fetch_offset.max(batch.next_offset());
        if isolation == Isolation::ReadCommitted {
            while let Some(transaction) =
                aborted.next_if(|transaction| transaction.first_offset <= last_offset)
            {
                aborted_producers.insert(transaction.producer_id);
            }
            if batch.control == Some(ControlType::Abort) {
                aborted_producers.remove(&batch.producer_id);
            }
            if batch.transactional && aborted_producers.contains(&batch.producer_id) {
                continue;
            }
        }
        if batch.control.is_some() {
            continue;
        }
        let base_offset = batch.base_offset;
        for (index, record) in batch.records.into_iter().enumerate() {
            let offset = base_offset + index as i64;
            if offset < fetch_offset {
                continue;
            }
            messages.push(Message {
                topic: Arc::clone(&topic),
                partition: result.partition,
                offset,
                key: record.key.map(Into::into),
                value: record.value.map(Into::into),
                timestamp_ms: record.timestamp_ms,
                headers: record.headers,
            });
        }
    }
    FilteredFetch {
        messages,
        next_fetch_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AbortedTransaction, RecordBatch, RecordData};

    fn data(
        base_offset: i64,
        producer_id: i64,
        transactional: bool,
        values: &[&str],
    ) -> RecordBatch {
        RecordBatch {
            base_offset,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional,
            control: None,
            records: values
                .iter()
                .map(|v| RecordData {
                    key: None,
                    value: Some(v.as_bytes().to_vec()),
                    timestamp_ms: 7,
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn marker(offset: i64, producer_id: i64, control: ControlType) -> RecordBatch {
        RecordBatch {
            base_offset: offset,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: -1,
            transactional: true,
            control: Some(control),
            records: vec![],
        }
    }

    fn result(batches: Vec<RecordBatch>, aborted: Vec<(i64, i64)>, lso: i64) -> FetchResult {
        FetchResult {
            topic: "t".into(),
            partition: 0,
            error: None,
            high_watermark: lso,
            last_stable_offset: lso,
            log_start_offset: 0,
            aborted_transactions: aborted
                .into_iter()
                .map(|(producer_id, first_offset)| AbortedTransaction {
                    producer_id,
                    first_offset,
                })
                .collect(),
            batches,
        }
    }

    fn values(fetch: &FilteredFetch) -> Vec<(i64, String)> {
        fetch
            .messages
            .iter()
            .map(|m| {
                (
                    m.offset,
                    String::from_utf8(m.value.clone().unwrap().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn aborted_records_are_dropped_and_committed_ones_kept_under_read_committed() {
        // Producer 1 aborts a transaction interleaved with producer 2's
        // committed one.
        let fetched = result(
            vec![
                data(0, 1, true, &["a1", "a2"]),
                data(2, 2, true, &["c1"]),
                marker(3, 1, ControlType::Abort),
                data(4, 2, true, &["c2"]),
                marker(5, 2, ControlType::Commit),
                data(6, 1, true, &["n1"]),
                marker(7, 1, ControlType::Commit),
            ],
            vec![(1, 0)],
            8,
        );
        let fetch = filter_fetch(0, Isolation::ReadCommitted, &fetched);
        assert_eq!(
            values(&fetch),
            vec![(2, "c1".into()), (4, "c2".into()), (6, "n1".into())]
        );
        assert_eq!(fetch.next_fetch_offset, 8);
    }

    #[test]
    fn read_uncommitted_sees_aborted_records_but_never_control_batches() {
        let fetched = result(
            vec![data(0, 1, true, &["a1"]), marker(1, 1, ControlType::Abort)],
            vec![(1, 0)],
            2,
        );
        let fetch = filter_fetch(0, Isolation::ReadUncommitted, &fetched);
        assert_eq!(values(&fetch), vec![(0, "a1".into())]);
        assert_eq!(fetch.next_fetch_offset, 2);
    }

    #[test]
    fn an_aborted_transaction_that_began_before_the_fetch_offset_is_still_dropped() {
        let fetched = result(
            vec![
                data(0, 1, true, &["a1", "a2", "a3"]),
                marker(3, 1, ControlType::Abort),
                data(4, 3, false, &["plain"]),
            ],
            vec![(1, 0)],
            5,
        );
        let fetch = filter_fetch(2, Isolation::ReadCommitted, &fetched);
        assert_eq!(values(&fetch), vec![(4, "plain".into())]);
        assert_eq!(fetch.next_fetch_offset, 5);
    }

    #[test]
    fn records_before_the_fetch_offset_and_past_the_stable_offset_are_skipped() {
        let fetched = result(
            vec![
                data(0, 4, false, &["x0", "x1", "x2"]),
                data(3, 4, false, &["x3"]),
            ],
            vec![],
            3,
        );
        let fetch = filter_fetch(1, Isolation::ReadCommitted, &fetched);
        assert_eq!(values(&fetch), vec![(1, "x1".into()), (2, "x2".into())]);
        assert_eq!(fetch.next_fetch_offset, 3);
    }

    #[test]
    fn a_producers_later_transaction_after_its_abort_marker_is_kept() {
        let fetched = result(
            vec![
                data(0, 1, true, &["a"]),
                marker(1, 1, ControlType::Abort),
                data(2, 1, true, &["b"]),
                marker(3, 1, ControlType::Commit),
            ],
            vec![(1, 0)],
            4,
        );
        let fetch = filter_fetch(0, Isolation::ReadCommitted, &fetched);
        assert_eq!(values(&fetch), vec![(2, "b".into())]);
    }

    #[test]
    fn an_empty_answer_keeps_the_fetch_offset() {
        let fetch = filter_fetch(9, Isolation::ReadCommitted, &result(vec![], vec![], 9));
        assert!(fetch.messages.is_empty());
        assert_eq!(fetch.next_fetch_offset, 9);
    }
}
