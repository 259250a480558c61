//! The vocabulary the client protocol ([`crate::protocol`]) and the
//! inter-broker protocol ([`crate::internal`]) share: node and producer ids,
//! records and batches as logs store them, a fetch position, and byte strings.
//!
//! It imports neither protocol, so both depend on it and never on each other
//! through it: `protocol` (whose envelopes carry the internal messages) ->
//! `internal` -> `records`.

use serde::{Deserialize, Serialize};

use eddyline_engine::transport::{ErrorCode, Header, TopicPartition};

/// A broker's node id.
pub type BrokerId = i32;
/// A producer id assigned by InitProducerId.
pub type ProducerId = i64;
/// A producer epoch; bumped by InitProducerId to fence older incarnations.
pub type ProducerEpoch = i16;

/// No producer id (a non-idempotent write; never used by Eddyline clients).
pub const NO_PRODUCER_ID: ProducerId = -1;
/// No producer epoch.
pub const NO_PRODUCER_EPOCH: ProducerEpoch = -1;

/// A record as a producer sends it and a log stores it.
///
/// Keys, values and header values travel as byte strings: the same bytes on
/// the wire as a sequence of `u8` (postcard writes both as a length and the
/// raw bytes), encoded and decoded with one copy instead of byte by byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordData {
    #[serde(with = "byte_strings::optional")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "byte_strings::optional")]
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: i64,
    #[serde(with = "byte_strings::headers")]
    pub headers: Vec<Header>,
}

/// The type of a transaction control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlType {
    Commit,
    Abort,
}

/// A batch as stored in a partition log and returned by Fetch: Kafka's
/// RecordBatch v2 without compression. A control batch holds no records and
/// takes exactly one offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub base_offset: i64,
    /// The leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub transactional: bool,
    /// `Some` for a transaction marker (then `records` is empty).
    pub control: Option<ControlType>,
    pub records: Vec<RecordData>,
}

impl RecordBatch {
    /// How many offsets the batch takes.
    pub fn offset_count(&self) -> i64 {
        offset_count(self.control, self.records.len() as i64)
    }

    /// The offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.offset_count()
    }
}

/// A partition in a Fetch request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    /// The leader epoch the fetcher believes current (fencing stale leaders).
    pub current_leader_epoch: Option<i32>,
    /// Bound on records returned for this partition.
    pub max_records: u32,
}

/// One topic's outcome (CreateTopics, from the controller and from a broker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicError {
    pub name: String,
    pub error: Option<ErrorCode>,
}

/// One partition's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionError {
    pub topic_partition: TopicPartition,
    pub error: Option<ErrorCode>,
}

/// Bytes carried as one length-prefixed blob (postcard's byte string: a
/// varint length, then the bytes, exactly as a sequence of `u8` encodes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawBytes(pub Vec<u8>);

impl Serialize for RawBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<RawBytes, E> {
                Ok(RawBytes(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<RawBytes, E> {
                Ok(RawBytes(bytes))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawBytes, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(RawBytes(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// Serde helpers that carry `Vec<u8>` fields as byte strings
/// (`serialize_bytes`) rather than sequences of `u8`. In postcard both are
/// a varint length followed by the bytes, so the encoding is unchanged (a
/// test checks it).
pub(crate) mod byte_strings {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::RawBytes;
    use eddyline_engine::transport::Header;

    /// A borrowed byte string for serializing.
    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// `Option<Vec<u8>>` as an optional byte string.
    pub(crate) mod optional {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            value: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(bytes) => serializer.serialize_some(&Bytes(bytes)),
                None => serializer.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Ok(Option::<RawBytes>::deserialize(deserializer)?.map(|bytes| bytes.0))
        }
    }

    /// Record headers: `(name, value)` pairs with the value as a byte string.
    pub(crate) mod headers {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            headers: &[Header],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(headers.len()))?;
            for (name, value) in headers {
                seq.serialize_element(&(name, Bytes(value)))?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<Header>, D::Error> {
            let pairs = Vec::<(String, RawBytes)>::deserialize(deserializer)?;
            Ok(pairs
                .into_iter()
                .map(|(name, value)| (name, value.0))
                .collect())
        }
    }
}

/// How many offsets a batch takes: one for a control batch (a transaction
/// marker), else one per record.
pub fn offset_count(control: Option<ControlType>, record_count: i64) -> i64 {
    assert!(record_count >= 0, "a batch of {record_count} records");
    if control.is_some() { 1 } else { record_count }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RecordData` as serde derives it without the byte-string helpers.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PlainRecord {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
        headers: Vec<Header>,
    }

    #[test]
    fn records_encode_as_the_derived_byte_sequences_would() {
        let long_value: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let cases = [
            RecordData {
                key: Some(b"k".to_vec()),
                value: Some(long_value.clone()),
                timestamp_ms: -7,
                headers: vec![("h".into(), vec![0, 255]), ("".into(), Vec::new())],
            },
            RecordData {
                key: None,
                value: Some(Vec::new()),
                timestamp_ms: 1_704_067_200_000,
                headers: Vec::new(),
            },
            RecordData {
                key: Some(long_value),
                value: None,
                timestamp_ms: 0,
                headers: Vec::new(),
            },
        ];
        for record in cases {
            let plain = PlainRecord {
                key: record.key.clone(),
                value: record.value.clone(),
                timestamp_ms: record.timestamp_ms,
                headers: record.headers.clone(),
            };
            let bytes = postcard::to_stdvec(&record).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&plain).unwrap());
            let decoded: RecordData = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded, record);
            let decoded_plain: PlainRecord = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded_plain, plain);
        }
    }
}
