//! The records a job writes.
//!
//! - A **firing**, to the output topic: key = the key's bytes, value = a
//!   JSON object `{<key_field>, "window_start", "window_end", <aggregate
//!   fields in order>, "kind"}` (decimals as strings), timestamp
//!   `window_end - 1`; the key picks the partition; headers `eddy.watermark`
//!   (the task's watermark at emission) and `eddy.task` (the task number,
//!   which is the input partition number), both decimal.
//! - A **late record** (all of its windows were late), to the late topic,
//!   and a **bad record**, to the dead-letter topic: the message as it was
//!   read (key, value, timestamp, headers), with headers added: the source
//!   topic, partition and offset, and the watermark it was judged against
//!   (late) or the reason (dead letter). A message without a key goes to
//!   partition 0 (Kafka needs a key or a partition, and Eddyline never
//!   relies on sticky partitioning).

use std::fmt::Write;

use crate::time::EventTime;
use crate::transport::{Header, Message, ProducerRecord};
use crate::window::Firing;

use super::value::{OutputValue, write_json_string};

/// Why a record is in the dead-letter topic.
pub const HEADER_ERROR: &str = "eddy.error";
/// The topic the record was read from.
pub const HEADER_SOURCE_TOPIC: &str = "eddy.source.topic";
/// Its partition, in decimal.
pub const HEADER_SOURCE_PARTITION: &str = "eddy.source.partition";
/// Its offset, in decimal.
pub const HEADER_SOURCE_OFFSET: &str = "eddy.source.offset";
/// The watermark a late record was judged against, or the task's
/// watermark when it emitted a firing, in decimal ms.
pub const HEADER_WATERMARK: &str = "eddy.watermark";
/// The number of the task that emitted a firing (its input partition
/// number), in decimal.
pub const HEADER_TASK: &str = "eddy.task";

/// Where and how a job writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outputs {
    pub topic: String,
    pub key_field: String,
    pub late_topic: String,
    pub dead_letter_topic: Option<String>,
    /// The aggregate fields of a firing, in order.
    pub fields: Vec<String>,
}

impl Outputs {
    /// The output record of one firing, emitted by task `task` while its
    /// watermark was `watermark`.
    pub fn firing(
        &self,
        firing: &Firing<Vec<OutputValue>>,
        watermark: EventTime,
        task: i32,
    ) -> ProducerRecord {
        assert_eq!(
            firing.result.len(),
            self.fields.len(),
            "a firing carries one value per aggregate field"
        );
        let mut json = String::with_capacity(64 + 16 * self.fields.len());
        json.push('{');
        write_json_string(&self.key_field, &mut json);
        json.push(':');
        write_json_string(&firing.key, &mut json);
        write!(
            json,
            r#","window_start":{},"window_end":{}"#,
            firing.window.start, firing.window.end
        )
        .expect("writing to a String");
        for (name, value) in self.fields.iter().zip(&firing.result) {
            json.push(',');
            write_json_string(name, &mut json);
            json.push(':');
            value.write_json(&mut json);
        }
        json.push_str(r#","kind":"#);
        write_json_string(firing.kind.as_str(), &mut json);
        json.push('}');
        ProducerRecord {
            topic: self.topic.clone(),
            partition: None,
            key: Some(firing.key.as_bytes().to_vec()),
            value: Some(json.into_bytes()),
            timestamp_ms: Some(firing.window.max_timestamp()),
            headers: vec![
                (
                    HEADER_WATERMARK.to_string(),
                    watermark.to_string().into_bytes(),
                ),
                (HEADER_TASK.to_string(), task.to_string().into_bytes()),
            ],
        }
    }

    /// A record all of whose windows were late, as it was read.
    pub fn late(&self, message: &Message, watermark: EventTime) -> ProducerRecord {
        as_read(
            &self.late_topic,
            message,
            (
                HEADER_WATERMARK.to_string(),
                watermark.to_string().into_bytes(),
            ),
        )
    }

    /// A bad record, as it was read, with the reason.
    pub fn dead_letter(&self, message: &Message, reason: &str) -> ProducerRecord {
        let topic = self
            .dead_letter_topic
            .as_deref()
            .expect("a job that dead-letters has a dead-letter topic (checked at validation)");
        as_read(
            topic,
            message,
            (HEADER_ERROR.to_string(), reason.as_bytes().to_vec()),
        )
    }
}

/// `message` for `topic`, its headers followed by the source coordinates
/// and `extra`.
fn as_read(topic: &str, message: &Message, extra: Header) -> ProducerRecord {
    let mut headers = message.headers.clone();
    headers.push((
        HEADER_SOURCE_TOPIC.to_string(),
        message.topic.as_bytes().to_vec(),
    ));
    headers.push((
        HEADER_SOURCE_PARTITION.to_string(),
        message.partition.to_string().into_bytes(),
    ));
    headers.push((
        HEADER_SOURCE_OFFSET.to_string(),
        message.offset.to_string().into_bytes(),
    ));
    headers.push(extra);
    ProducerRecord {
        topic: topic.to_string(),
        partition: if message.key.is_some() { None } else { Some(0) },
        key: message.key.as_deref().map(<[u8]>::to_vec),
        value: message.value.as_deref().map(<[u8]>::to_vec),
        timestamp_ms: Some(message.timestamp_ms),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::record::Key;
    use crate::time::TimeWindow;
    use crate::transport::Bytes;
    use crate::window::FiringKind;

    fn outputs() -> Outputs {
        Outputs {
            topic: "out".to_string(),
            key_field: "user_id".to_string(),
            late_topic: "late".to_string(),
            dead_letter_topic: Some("dead".to_string()),
            fields: vec!["order_count".to_string(), "total_revenue".to_string()],
        }
    }

    fn message(key: Option<&[u8]>) -> Message {
        Message {
            topic: "orders".into(),
            partition: 3,
            offset: 41,
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::from_static(b"{oops")),
            timestamp_ms: 1_234,
            headers: vec![("trace".to_string(), b"t1".to_vec())],
        }
    }

    #[test]
    fn a_firing_is_one_json_object_in_a_fixed_field_order_at_window_end_minus_one() {
        let firing = Firing {
            key: Key::from("u\"1"),
            window: TimeWindow::new(3_600_000, 7_200_000),
            kind: FiringKind::LateUpdate,
            result: vec![
                OutputValue::Unsigned(2),
                OutputValue::Decimal("0.30".parse::<Decimal>().unwrap()),
            ],
            watermark: 7_200_000,
        };
        let record = outputs().firing(&firing, 7_200_000, 3);
        assert_eq!(
            String::from_utf8(record.value.unwrap()).unwrap(),
            r#"{"user_id":"u\"1","window_start":3600000,"window_end":7200000,"order_count":2,"total_revenue":"0.30","kind":"late_update"}"#
        );
        assert_eq!(record.key.as_deref(), Some(&b"u\"1"[..]));
        assert_eq!(record.timestamp_ms, Some(7_199_999));
        assert_eq!((record.topic.as_str(), record.partition), ("out", None));
        assert_eq!(
            record.headers,
            [
                ("eddy.watermark".to_string(), b"7200000".to_vec()),
                ("eddy.task".to_string(), b"3".to_vec()),
            ]
        );
    }

    #[test]
    fn dead_letters_and_late_records_keep_the_message_and_add_coordinates() {
        let dead = outputs().dead_letter(&message(Some(b"k")), "the value is not JSON");
        assert_eq!(dead.topic, "dead");
        assert_eq!(
            (dead.key.as_deref(), dead.partition),
            (Some(&b"k"[..]), None)
        );
        assert_eq!(dead.value.as_deref(), Some(&b"{oops"[..]));
        assert_eq!(dead.timestamp_ms, Some(1_234));
        let headers: Vec<(&str, &[u8])> = dead
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        assert_eq!(
            headers,
            [
                ("trace", &b"t1"[..]),
                ("eddy.source.topic", b"orders"),
                ("eddy.source.partition", b"3"),
                ("eddy.source.offset", b"41"),
                ("eddy.error", b"the value is not JSON"),
            ]
        );
        let late = outputs().late(&message(None), -5);
        assert_eq!((late.topic.as_str(), late.partition), ("late", Some(0)));
        assert_eq!(
            late.headers.last(),
            Some(&("eddy.watermark".to_string(), b"-5".to_vec()))
        );
    }
}
