//! The one schema of a recorded topic.
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `topic` | string | the recorded topic (the same on every row) |
//! | `partition` | int32 | |
//! | `offset` | int64 | |
//! | `timestamp_ms` | int64 | the Kafka timestamp, ms since the epoch |
//! | `timestamp_type` | string | `create_time` |
//! | `key` | binary, nullable | |
//! | `value` | binary, nullable | |
//! | `headers` | list of struct `{key: string, value: binary}` | in order, duplicates kept |
//!
//! Rows are sorted by partition, then offset; zstd compression. The file's
//! key-value metadata carries [`META_FORMAT_VERSION`], [`META_SOURCE`],
//! [`META_TOPIC`], [`META_PARTITION_COUNT`] and [`META_OFFSET_RANGES`] (a
//! JSON array of `{"partition", "start", "end"}`).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

/// The version of this format; a reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;

pub const META_FORMAT_VERSION: &str = "eddyline.recording.format_version";
pub const META_SOURCE: &str = "eddyline.recording.source";
pub const META_TOPIC: &str = "eddyline.recording.topic";
pub const META_PARTITION_COUNT: &str = "eddyline.recording.partition_count";
pub const META_OFFSET_RANGES: &str = "eddyline.recording.offset_ranges";

/// The value of `timestamp_type` for a producer's (create) time, the only
/// timestamp the seam carries.
pub const TIMESTAMP_CREATE_TIME: &str = "create_time";
/// The value of `timestamp_type` for a broker's append time.
pub const TIMESTAMP_LOG_APPEND_TIME: &str = "log_append_time";

/// The struct of one header.
pub fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, false),
    ])
}

/// The list item of the `headers` column.
pub fn header_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(header_fields()), false))
}

/// The Arrow schema of a recording.
pub fn arrow_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("timestamp_type", DataType::Utf8, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("headers", DataType::List(header_item()), false),
    ]))
}

/// How a data type reads in an error message.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::List(item) => format!("list<{}>", type_name(item.data_type())),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(", "))
        }
        other => format!("{other}").to_lowercase(),
    }
}

/// Types equal up to the names of list items (Arrow writers call them
/// `item` or `element`) and nullability.
fn same_type(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::List(a), DataType::List(b)) => same_type(a.data_type(), b.data_type()),
        (DataType::Struct(a), DataType::Struct(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(a, b)| a.name() == b.name() && same_type(a.data_type(), b.data_type()))
        }
        (a, b) => a == b,
    }
}

/// Checks a file's schema against the recording schema: the same columns
/// in the same order with the same types. The error says the first
/// difference.
pub fn check(found: &Schema) -> Result<(), String> {
    let expected = arrow_schema();
    for (index, want) in expected.fields().iter().enumerate() {
        let Some(have) = found.fields().get(index) else {
            return Err(format!(
                "not an Eddyline recording: column {} `{}` is missing",
                index + 1,
                want.name()
            ));
        };
        if have.name() != want.name() {
            return Err(format!(
                "not an Eddyline recording: column {} is `{}`, expected `{}`",
                index + 1,
                have.name(),
                want.name()
            ));
        }
        if !same_type(have.data_type(), want.data_type()) {
            return Err(format!(
                "not an Eddyline recording: column `{}` is {}, expected {}",
                want.name(),
                type_name(have.data_type()),
                type_name(want.data_type())
            ));
        }
    }
    if let Some(extra) = found.fields().get(expected.fields().len()) {
        return Err(format!(
            "not an Eddyline recording: unexpected column `{}`",
            extra.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_schema_accepts_itself_and_names_the_first_wrong_column() {
        assert_eq!(check(&arrow_schema()), Ok(()));
        let mut fields: Vec<Field> = arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[2] = Field::new("offset", DataType::Int32, false);
        let error = check(&Schema::new(fields.clone())).unwrap_err();
        assert_eq!(
            error,
            "not an Eddyline recording: column `offset` is int32, expected int64"
        );
        fields[2] = Field::new("offset", DataType::Int64, false);
        fields.truncate(7);
        let error = check(&Schema::new(fields)).unwrap_err();
        assert!(error.contains("`headers` is missing"), "{error}");
    }

    #[test]
    fn recording_schema_list_item_names_do_not_matter() {
        let mut fields: Vec<Field> = arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let element = Field::new("element", DataType::Struct(header_fields()), true);
        fields[7] = Field::new("headers", DataType::List(Arc::new(element)), true);
        assert_eq!(check(&Schema::new(fields)), Ok(()));
    }
}
