//! Writing a recording: rows in partition then offset order, zstd, the file
//! metadata in the footer; a temporary file in the target's directory,
//! renamed over the target once complete, so a failed write never leaves a
//! half-written recording under the target's name.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::OffsetBufferBuilder;
use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::schema::{self, TIMESTAMP_CREATE_TIME};
use super::{OffsetRange, RecordingInfo};
use crate::error::{Error, Result};
use crate::transport::Message;

/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 8_192;
/// Rows per row group: large enough for good compression, small enough
/// that a reader can start on a file without holding all of it.
const ROW_GROUP_ROWS: usize = 65_536;
/// zstd's level: its default, a good ratio at millions of rows per second.
const ZSTD_LEVEL: i32 = 3;

/// Writes one topic's records to a recording. Append in partition then
/// offset order, then [`RecordingWriter::finish`]; dropped unfinished, it
/// removes its temporary file.
pub struct RecordingWriter {
    path: PathBuf,
    temporary: PathBuf,
    writer: Option<ArrowWriter<File>>,
    topic: String,
    pending: Vec<Message>,
    /// Per partition: the first and last offset appended.
    seen: BTreeMap<i32, (i64, i64)>,
    rows: u64,
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::Io(format!(
        "{}: {}",
        path.display(),
        one_line(&error.to_string())
    ))
}

pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The temporary file a write of `path` goes to: in the same directory, so
/// the final rename never crosses a file system.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording".to_string());
    path.with_file_name(format!(".{name}.tmp"))
}

impl RecordingWriter {
    /// Starts a recording of `topic` at `path` (written to a temporary file
    /// beside it until [`RecordingWriter::finish`]).
    pub fn create(path: &Path, topic: &str) -> Result<Self> {
        if path.file_name().is_none() {
            return Err(Error::Invalid(format!(
                "{}: not a file name",
                path.display()
            )));
        }
        let temporary = temporary_path(path);
        let file = File::create(&temporary).map_err(|e| io_error(&temporary, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("eddyline {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(file, schema::arrow_schema(), Some(properties))
            .map_err(|e| io_error(&temporary, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            temporary,
            writer: Some(writer),
            topic: topic.to_string(),
            pending: Vec::with_capacity(BATCH_ROWS),
            seen: BTreeMap::new(),
            rows: 0,
        })
    }

    /// Appends one record: of this writer's topic, after every record
    /// appended before it in (partition, offset) order.
    pub fn append(&mut self, message: &Message) -> Result<()> {
        if *message.topic != *self.topic {
            return Err(Error::Invalid(format!(
                "{}: a record of topic {:?} in a recording of {:?}",
                self.path.display(),
                message.topic,
                self.topic
            )));
        }
        let last = self.seen.last_key_value().map(|(p, (_, o))| (*p, *o));
        if let Some(last) = last
            && (message.partition, message.offset) <= last
        {
            return Err(Error::Invalid(format!(
                "{}: record {}-{} appended after {}-{}: rows go in partition, then offset order",
                self.path.display(),
                message.partition,
                message.offset,
                last.0,
                last.1
            )));
        }
        self.seen
            .entry(message.partition)
            .and_modify(|(_, last)| *last = message.offset)
            .or_insert((message.offset, message.offset));
        self.pending.push(message.clone());
        self.rows += 1;
        if self.pending.len() >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = batch_of(&self.pending);
        self.pending.clear();
        let writer = self.writer.as_mut().expect("an unfinished writer");
        writer
            .write(&batch)
            .map_err(|e| io_error(&self.temporary, e))
    }

    /// Writes the footer with `info`, syncs and renames the file to its
    /// name; returns the number of rows. Every appended record must lie in
    /// its partition's range of `info`.
    pub fn finish(mut self, info: &RecordingInfo) -> Result<u64> {
        self.check_info(info)?;
        self.flush_batch()?;
        let mut writer = self.writer.take().expect("an unfinished writer");
        for (key, value) in metadata(info) {
            writer.append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let file = writer
            .into_inner()
            .map_err(|e| io_error(&self.temporary, e))?;
        file.sync_all().map_err(|e| io_error(&self.temporary, e))?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path).map_err(|e| io_error(&self.path, e))?;
        Ok(self.rows)
    }

    fn check_info(&self, info: &RecordingInfo) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(format!("{}: {what}", self.path.display())));
        if info.topic != self.topic {
            return bad(format!(
                "the info names topic {:?}, the records {:?}",
                info.topic, self.topic
            ));
        }
        let partitions: Vec<i32> = info.offset_ranges.iter().map(|r| r.partition).collect();
        if partitions != (0..info.partition_count).collect::<Vec<_>>() {
            return bad(format!(
                "offset ranges for partitions {partitions:?} of a topic of {} partitions",
                info.partition_count
            ));
        }
        for (partition, (first, last)) in &self.seen {
            let range = info.offset_ranges.get(*partition as usize);
            let inside = range.is_some_and(|r| r.start <= *first && *last < r.end);
            if !inside {
                return bad(format!(
                    "partition {partition}'s records {first}..={last} lie outside its range {range:?}"
                ));
            }
        }
        Ok(())
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Unfinished: no half-written file is left behind.
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// The footer's key-value metadata.
fn metadata(info: &RecordingInfo) -> Vec<(&'static str, String)> {
    let ranges: Vec<&OffsetRange> = info.offset_ranges.iter().collect();
    vec![
        (
            schema::META_FORMAT_VERSION,
            schema::FORMAT_VERSION.to_string(),
        ),
        (schema::META_SOURCE, info.source.clone()),
        (schema::META_TOPIC, info.topic.clone()),
        (
            schema::META_PARTITION_COUNT,
            info.partition_count.to_string(),
        ),
        (
            schema::META_OFFSET_RANGES,
            serde_json::to_string(&ranges).expect("ranges serialize"),
        ),
    ]
}

/// One Arrow batch of records in the recording schema.
fn batch_of(messages: &[Message]) -> RecordBatch {
    let topic: StringArray = messages.iter().map(|m| Some(&*m.topic)).collect();
    let partition: Int32Array = messages.iter().map(|m| m.partition).collect();
    let offset: Int64Array = messages.iter().map(|m| m.offset).collect();
    let timestamp: Int64Array = messages.iter().map(|m| m.timestamp_ms).collect();
    let timestamp_type: StringArray = messages
        .iter()
        .map(|_| Some(TIMESTAMP_CREATE_TIME))
        .collect();
    let key: BinaryArray = messages.iter().map(|m| m.key.as_deref()).collect();
    let value: BinaryArray = messages.iter().map(|m| m.value.as_deref()).collect();
    let mut lengths = OffsetBufferBuilder::new(messages.len());
    let mut header_keys = Vec::new();
    let mut header_values = Vec::new();
    for message in messages {
        lengths.push_length(message.headers.len());
        for (name, bytes) in &message.headers {
            header_keys.push(Some(name.as_str()));
            header_values.push(Some(bytes.as_slice()));
        }
    }
    let header_structs = StructArray::new(
        schema::header_fields(),
        vec![
            Arc::new(StringArray::from(header_keys)) as ArrayRef,
            Arc::new(BinaryArray::from(header_values)) as ArrayRef,
        ],
        None,
    );
    let headers = ListArray::new(
        schema::header_item(),
        lengths.finish(),
        Arc::new(header_structs),
        None,
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(topic),
        Arc::new(partition),
        Arc::new(offset),
        Arc::new(timestamp),
        Arc::new(timestamp_type),
        Arc::new(key),
        Arc::new(value),
        Arc::new(headers),
    ];
    RecordBatch::try_new(schema::arrow_schema(), columns).expect("columns match the schema")
}

/// Writes a whole topic: `partitions` holds each partition's records in
/// offset order.
pub fn write_recording(
    path: &Path,
    info: &RecordingInfo,
    partitions: &BTreeMap<i32, Vec<Message>>,
) -> Result<u64> {
    let mut writer = RecordingWriter::create(path, &info.topic)?;
    for message in partitions.values().flatten() {
        writer.append(message)?;
    }
    writer.finish(info)
}
