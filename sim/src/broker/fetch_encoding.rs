//! Fetch answers encoded straight from stored batches.
//!
//! A partition log keeps each batch in its postcard encoding, so a Fetch
//! answer is written by copying those bytes rather than decoding every
//! batch and encoding it again. The encoders below write exactly the bytes
//! postcard would write for the same `Response` value (the tests check it);
//! the enum tags in front come from encoding an empty answer of the same
//! variant, so nothing here depends on the declaration order of the
//! protocol's enums.

use std::sync::OnceLock;

use eddyline_engine::transport::ErrorCode;

use crate::broker::log::StoredBatch;
use crate::internal::InternalResponse;
use crate::protocol::{AbortedTransaction, FetchPartition, FetchResponse, Response};

/// What one partition of a fetch answers, its batches borrowed from the log.
pub(crate) struct FetchView<'a> {
    pub error: Option<ErrorCode>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub aborted: Vec<AbortedTransaction>,
    pub batches: &'a [StoredBatch],
}

impl FetchView<'_> {
    /// The answer for a partition that is not read: its error alone.
    pub(crate) fn empty() -> Self {
        FetchView {
            error: None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: Vec::new(),
            batches: &[],
        }
    }
}

/// The encoding of `sample`, an answer whose last field is an empty list,
/// without that list's length: the enum tags and fields before the list.
fn prefix_before_empty_list(sample: &Response) -> Vec<u8> {
    let mut bytes = postcard::to_stdvec(sample).expect("fetch answers encode");
    assert_eq!(
        bytes.pop(),
        Some(0),
        "an empty list encodes as its length 0"
    );
    bytes
}

/// The bytes before the partition list of `Response::Fetch(FetchResponse {
/// error: None, partitions })`: the variant's index and the absent error.
fn fetch_prefix() -> &'static [u8] {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        prefix_before_empty_list(&Response::Fetch(FetchResponse {
            error: None,
            partitions: Vec::new(),
        }))
    })
}

/// The bytes before the partition list of
/// `Response::Internal(InternalResponse::ReplicaFetch { partitions })`: the
/// indices of the two variants.
fn replica_fetch_prefix() -> &'static [u8] {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        prefix_before_empty_list(&Response::Internal(InternalResponse::ReplicaFetch {
            partitions: Vec::new(),
        }))
    })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let buffer = std::mem::take(out);
    *out = postcard::to_extend(value, buffer).expect("fetch answers encode");
}

/// Appends to `out` the postcard encoding of `Response::Fetch(FetchResponse {
/// error: None, partitions })`, each partition's batches copied from their
/// stored encoding.
pub(crate) fn encode_fetch_body(
    partitions: &[(&FetchPartition, FetchView<'_>)],
    out: &mut Vec<u8>,
) {
    let bytes: usize = partitions
        .iter()
        .flat_map(|(_, view)| view.batches.iter().map(|b| b.encoded.len()))
        .sum();
    out.reserve(bytes + 64 * partitions.len() + 16);
    out.extend_from_slice(fetch_prefix());
    put_varint(out, partitions.len() as u64);
    for (asked, view) in partitions {
        put(
            out,
            &(
                &asked.topic,
                asked.partition,
                view.error,
                view.high_watermark,
                view.last_stable_offset,
                view.log_start_offset,
                &view.aborted,
            ),
        );
        put_varint(out, view.batches.len() as u64);
        for batch in view.batches {
            out.extend_from_slice(&batch.encoded);
        }
    }
}

/// Appends to `out` the postcard encoding of
/// `Response::Internal(InternalResponse::ReplicaFetch { partitions })`, one
/// `ReplicaFetchResult` per view, each batch's stored encoding copied as its
/// `RawBytes`.
pub(crate) fn encode_replica_fetch_body(views: &[FetchView<'_>], out: &mut Vec<u8>) {
    let bytes: usize = views
        .iter()
        .flat_map(|view| view.batches.iter().map(|b| b.encoded.len() + 48))
        .sum();
    out.reserve(bytes + 32 * views.len() + 8);
    out.extend_from_slice(replica_fetch_prefix());
    put_varint(out, views.len() as u64);
    for view in views {
        put(out, &(view.error, view.high_watermark));
        put_varint(out, view.batches.len() as u64);
        for batch in view.batches {
            put(out, &batch.header);
            put_varint(out, batch.encoded.len() as u64);
            out.extend_from_slice(&batch.encoded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::ReplicaFetchResult;
    use crate::protocol::{ControlType, FetchResult, RecordBatch, RecordData, codes};

    #[test]
    fn empty_spliced_answers_are_postcards_encoding_of_the_same_values() {
        let mut body = Vec::new();
        encode_fetch_body(&[], &mut body);
        let expected = Response::Fetch(FetchResponse {
            error: None,
            partitions: Vec::new(),
        });
        assert_eq!(body, postcard::to_stdvec(&expected).unwrap());
        let mut body = Vec::new();
        encode_replica_fetch_body(&[], &mut body);
        let expected = Response::Internal(InternalResponse::ReplicaFetch {
            partitions: Vec::new(),
        });
        assert_eq!(body, postcard::to_stdvec(&expected).unwrap());
    }

    #[test]
    fn a_spliced_fetch_answer_decodes_as_the_derived_encoding_would() {
        let batch = |base: i64, control: Option<ControlType>| RecordBatch {
            base_offset: base,
            partition_leader_epoch: 2,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 3,
            transactional: true,
            control,
            records: if control.is_some() {
                Vec::new()
            } else {
                vec![RecordData {
                    key: Some(b"k".to_vec()),
                    value: None,
                    timestamp_ms: -5,
                    headers: vec![("h".into(), vec![1, 2])],
                }]
            },
        };
        let batches = vec![batch(4, None), batch(5, Some(ControlType::Abort))];
        let stored: Vec<StoredBatch> = batches.iter().map(StoredBatch::encode).collect();
        let asked = [
            FetchPartition {
                topic: "t".into(),
                partition: 1,
                fetch_offset: 4,
                current_leader_epoch: None,
                max_records: 10,
            },
            FetchPartition {
                topic: "u".into(),
                partition: 300,
                fetch_offset: 0,
                current_leader_epoch: Some(1),
                max_records: 10,
            },
        ];
        let aborted = vec![AbortedTransaction {
            producer_id: 7,
            first_offset: 4,
        }];
        let views = vec![
            (
                &asked[0],
                FetchView {
                    error: None,
                    high_watermark: 6,
                    last_stable_offset: 6,
                    log_start_offset: 0,
                    aborted: aborted.clone(),
                    batches: &stored,
                },
            ),
            (
                &asked[1],
                FetchView {
                    error: Some(codes::FENCED_LEADER_EPOCH),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted: Vec::new(),
                    batches: &[],
                },
            ),
        ];
        let expected = Response::Fetch(FetchResponse {
            error: None,
            partitions: vec![
                FetchResult {
                    topic: "t".into(),
                    partition: 1,
                    error: None,
                    high_watermark: 6,
                    last_stable_offset: 6,
                    log_start_offset: 0,
                    aborted_transactions: aborted,
                    batches,
                },
                FetchResult {
                    topic: "u".into(),
                    partition: 300,
                    error: Some(codes::FENCED_LEADER_EPOCH),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted_transactions: Vec::new(),
                    batches: Vec::new(),
                },
            ],
        });
        let mut body = vec![9];
        encode_fetch_body(&views, &mut body);
        let body = &body[1..];
        assert_eq!(body, postcard::to_stdvec(&expected).unwrap());
        let decoded: Response = postcard::from_bytes(body).unwrap();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_spliced_replica_fetch_answer_decodes_as_the_derived_encoding_would() {
        let record = |value: &[u8]| RecordData {
            key: None,
            value: Some(value.to_vec()),
            timestamp_ms: 1,
            headers: Vec::new(),
        };
        let big: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let batches = [
            RecordBatch {
                base_offset: 0,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                transactional: false,
                control: None,
                records: vec![record(b"a"), record(&big)],
            },
            RecordBatch {
                base_offset: 2,
                partition_leader_epoch: 3,
                producer_id: 9,
                producer_epoch: 0,
                base_sequence: 1,
                transactional: true,
                control: Some(ControlType::Commit),
                records: Vec::new(),
            },
        ];
        let stored: Vec<StoredBatch> = batches.iter().map(StoredBatch::encode).collect();
        let views = vec![
            FetchView {
                error: None,
                high_watermark: 2,
                last_stable_offset: 2,
                log_start_offset: 0,
                aborted: Vec::new(),
                batches: &stored,
            },
            FetchView {
                error: Some(ErrorCode::NotLeaderOrFollower),
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                aborted: Vec::new(),
                batches: &[],
            },
        ];
        let expected = Response::Internal(InternalResponse::ReplicaFetch {
            partitions: vec![
                ReplicaFetchResult {
                    error: None,
                    high_watermark: 2,
                    batches: stored.iter().map(StoredBatch::to_replica).collect(),
                },
                ReplicaFetchResult {
                    error: Some(ErrorCode::NotLeaderOrFollower),
                    high_watermark: -1,
                    batches: Vec::new(),
                },
            ],
        });
        let mut body = vec![7, 7];
        encode_replica_fetch_body(&views, &mut body);
        let body = &body[2..];
        assert_eq!(body, postcard::to_stdvec(&expected).unwrap());
        let decoded: Response = postcard::from_bytes(body).unwrap();
        assert_eq!(decoded, expected);
    }
}
