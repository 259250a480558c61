//! Decoding a Kafka message into the window core's record, in this order:
//!
//! 1. **decode**: the value is UTF-8 JSON, an object; for `debezium-json`
//!    a change event (inside the `schema`/`payload` wrapper if there is
//!    one). A missing value (a tombstone) is skipped for `debezium-json`
//!    (Debezium writes one after each delete, for log compaction) and bad
//!    for `json`.
//! 2. **filter**: a record the filter refuses is skipped (a Debezium
//!    delete, whose `after` is null, fails any comparison on `after.…`).
//! 3. **key and event time**: the key is a string or an integer (written
//!    in decimal); the event time an integer in the job's unit, in
//!    `[0, EVENT_TIME_MAX_MS]` once in ms.
//! 4. **aggregate fields**: each read with its aggregate's type; `null`
//!    is kept as a gap the aggregate skips.
//!
//! Anything wrong on the way makes the record bad, with a one-line reason.

use serde_json::value::RawValue;

use super::aggregates::{JobValue, Slot};
use super::filter::Filter;
use super::path::{Document, FieldPath, Found, JsonKind};
use super::spec::{Format, TimeUnit};
use super::value::{FieldType, Scalar, describe_json, plain_string, string_text};
use crate::record::{Key, Record};
use crate::time::EventTime;
use crate::transport::Message;

/// The largest event time a record may have: 9999-12-31T23:59:59.999Z.
/// Later (or negative) times are taken for garbage, not data.
pub const EVENT_TIME_MAX_MS: EventTime = 253_402_300_799_999;

/// The Debezium operations: create, read (snapshot), update, delete,
/// truncate.
const DEBEZIUM_OPS: [&str; 5] = ["c", "r", "u", "d", "t"];

/// What became of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    Record(Record<JobValue>),
    /// Not an event: a Debezium tombstone, or refused by the filter.
    Skipped(Skip),
    /// A bad record, and why.
    Bad(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Tombstone,
    Filtered,
}

/// Turns messages into records.
#[derive(Clone, Debug)]
pub struct Decoder {
    pub format: Format,
    pub key: FieldPath,
    pub time: FieldPath,
    pub unit: TimeUnit,
    pub filter: Option<Filter>,
    pub slots: Vec<Slot>,
}

impl Decoder {
    pub fn decode(&self, message: &Message) -> Decoded {
        let Some(value) = &message.value else {
            return match self.format {
                Format::DebeziumJson => Decoded::Skipped(Skip::Tombstone),
                Format::Json => Decoded::Bad("the record has no value (a tombstone)".to_string()),
            };
        };
        match self.decode_value(value) {
            Ok(Some(record)) => Decoded::Record(record),
            Ok(None) => Decoded::Skipped(Skip::Filtered),
            Err(reason) => Decoded::Bad(reason),
        }
    }

    /// The record, `None` if the filter refuses it, or why it is bad.
    fn decode_value(&self, value: &[u8]) -> Result<Option<Record<JobValue>>, String> {
        let text = std::str::from_utf8(value).map_err(|error| {
            format!(
                "the value is not UTF-8 (invalid byte at {})",
                error.valid_up_to()
            )
        })?;
        let document = match self.format {
            // The usual record, a valid object, in one pass; anything else
            // the checked way, which says what is wrong with it.
            Format::Json => match Document::object(text) {
                Some(document) => document,
                None => Document::new(json_object(text)?),
            },
            Format::DebeziumJson => {
                let root = json_object(text)?;
                let document = Document::new(root);
                let event = change_event(&document, root)?;
                document.rooted_at(event)
            }
        };
        let document = &document;
        if let Some(filter) = &self.filter {
            if !filter.matches(document)? {
                return Ok(None);
            }
        }
        let key = self.key_of(document)?;
        let ts = self.event_time_of(document)?;
        let mut value = JobValue::default();
        for slot in &self.slots {
            value.slots.push(read_slot(document, slot)?);
        }
        Ok(Some(Record::new(key, ts, value)))
    }

    fn key_of(&self, document: &Document<'_>) -> Result<Key, String> {
        let raw = present(document, &self.key, "key field")?;
        // A string without escapes (the usual key) is its own text: the
        // key is made from it in one allocation.
        if let Some(text) = plain_string(raw) {
            return Ok(Key::from(text));
        }
        let key = match JsonKind::of(raw) {
            JsonKind::String => {
                Some(Scalar::String(string_text(raw).map_err(|reason| {
                    format!("key field {}: {reason}", self.key)
                })?))
            }
            JsonKind::Number => Scalar::from_json(raw, FieldType::Integer).ok(),
            _ => None,
        };
        match key {
            Some(Scalar::String(text)) => Ok(Key::from(text)),
            Some(Scalar::Integer(number)) => Ok(Key::from(number.to_string())),
            _ => Err(format!(
                "key field {}: expected a string or an integer, found {}",
                self.key,
                describe_json(raw)
            )),
        }
    }

    fn event_time_of(&self, document: &Document<'_>) -> Result<EventTime, String> {
        let path = &self.time;
        let raw = present(document, path, "event-time field")?;
        let value = Scalar::from_json(raw, FieldType::Integer)
            .map_err(|reason| format!("event-time field {path}: {reason}"))?
            .as_integer()
            .expect("an integer");
        let unit = self.unit.name();
        if value < 0 {
            return Err(format!(
                "event-time field {path}: {value} {unit} is before 1970 (event times are >= 0)"
            ));
        }
        match self.unit.to_ms(value) {
            Some(ms) if ms <= EVENT_TIME_MAX_MS => Ok(ms),
            _ => Err(format!(
                "event-time field {path}: {value} {unit} is after the year 9999"
            )),
        }
    }
}

/// The value's JSON text, an object, or why it is not.
fn json_object(text: &str) -> Result<&RawValue, String> {
    let root: &RawValue =
        serde_json::from_str(text).map_err(|error| format!("the value is not JSON: {error}"))?;
    let kind = JsonKind::of(root);
    if kind != JsonKind::Object {
        return Err(format!(
            "the value is not a JSON object (it is {})",
            kind.name()
        ));
    }
    Ok(root)
}

/// The field's JSON (not `null`), or why it is absent.
fn present<'a>(
    document: &Document<'a>,
    path: &FieldPath,
    what: &str,
) -> Result<&'a RawValue, String> {
    match document.lookup(path) {
        Found::Value(raw) => Ok(raw),
        Found::Null => Err(format!("{what} {path} is null")),
        Found::Missing => Err(format!("{what} {path} is missing")),
        Found::Inside(kind) => Err(format!(
            "{what} {path} is missing (its path crosses {})",
            kind.name()
        )),
        Found::Invalid(reason) => Err(format!("{what} {path}: {reason}")),
    }
}

fn read_slot(document: &Document<'_>, slot: &Slot) -> Result<Option<Scalar>, String> {
    let path = &slot.path;
    match document.lookup(path) {
        Found::Null => Ok(None),
        Found::Value(raw) => Scalar::from_json(raw, slot.field_type)
            .map(Some)
            .map_err(|reason| format!("aggregate field {path}: {reason}")),
        Found::Missing | Found::Inside(_) | Found::Invalid(_) => {
            present(document, path, "aggregate field").map(|_| None)
        }
    }
}

/// The change event inside a Debezium message: the message itself, or its
/// `payload` when the JSON converter wrapped it with its `schema`.
fn change_event<'a>(document: &Document<'a>, root: &'a RawValue) -> Result<&'a RawValue, String> {
    let member_of = |object, key| document.member(object, key);
    let event = match (member_of(root, "schema"), member_of(root, "payload")) {
        (Found::Value(_) | Found::Null, Found::Value(payload)) => payload,
        (Found::Value(_) | Found::Null, Found::Null) => {
            return Err("not a Debezium change event: the payload is null".to_string());
        }
        (Found::Invalid(reason), _) | (_, Found::Invalid(reason)) => return Err(reason),
        _ => root,
    };
    let not_event = |why: String| format!("not a Debezium change event: {why}");
    if JsonKind::of(event) != JsonKind::Object {
        return Err(not_event(format!(
            "the payload is {}",
            JsonKind::of(event).name()
        )));
    }
    let op = match member_of(event, "op") {
        Found::Value(raw) => Scalar::from_json(raw, FieldType::String)
            .map_err(|reason| not_event(format!("op: {reason}")))?,
        Found::Invalid(reason) => return Err(reason),
        Found::Null | Found::Missing | Found::Inside(_) => {
            return Err(not_event("it has no `op`".to_string()));
        }
    };
    let op = op.as_str().expect("a string");
    if !DEBEZIUM_OPS.contains(&op) {
        return Err(not_event(format!(
            "unknown op {op:?} (expected c, r, u, d or t)"
        )));
    }
    for image in ["before", "after"] {
        if let Found::Value(raw) = member_of(event, image) {
            let kind = JsonKind::of(raw);
            if kind != JsonKind::Object {
                return Err(not_event(format!("`{image}` is {}", kind.name())));
            }
        }
    }
    Ok(event)
}
