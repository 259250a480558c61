//! Reading a recording. Every way a file can be bad is one line naming the
//! file and the problem ([`Error::Invalid`]): a missing or empty file, a
//! truncated one (no Parquet footer), a corrupt footer or page, another
//! schema, missing or inconsistent metadata, rows out of order or outside
//! their partition's recorded range.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BinaryArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::schema::{self, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME};
use super::write::one_line;
use super::{OffsetRange, Recording, RecordingInfo};
use crate::error::{Error, Result};
use crate::transport::{Bytes, Message};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8_192;

fn bad(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Invalid(format!(
        "{}: {}",
        path.display(),
        one_line(&problem.to_string())
    ))
}

/// Parquet files end with the magic bytes `PAR1`.
fn has_footer_magic(file: &mut File, length: u64) -> std::io::Result<bool> {
    if length < 4 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-4))?;
    let mut magic = [0_u8; 4];
    file.read_exact(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(&magic == b"PAR1")
}

/// The key-value metadata value `key`, or why it is missing.
fn meta<'a>(
    pairs: &'a BTreeMap<String, String>,
    key: &str,
) -> std::result::Result<&'a str, String> {
    pairs
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("not an Eddyline recording: no {key} in the file metadata"))
}

fn info_of(pairs: &BTreeMap<String, String>) -> std::result::Result<RecordingInfo, String> {
    let version = meta(pairs, schema::META_FORMAT_VERSION)?;
    if version != schema::FORMAT_VERSION.to_string() {
        return Err(format!(
            "recording format version {version}; this eddy reads version {}",
            schema::FORMAT_VERSION
        ));
    }
    let partition_count: i32 = meta(pairs, schema::META_PARTITION_COUNT)?
        .parse()
        .map_err(|e| format!("{}: {e}", schema::META_PARTITION_COUNT))?;
    if partition_count < 1 {
        return Err(format!(
            "{} is {partition_count}, at least 1 expected",
            schema::META_PARTITION_COUNT
        ));
    }
    let offset_ranges: Vec<OffsetRange> =
        serde_json::from_str(meta(pairs, schema::META_OFFSET_RANGES)?)
            .map_err(|e| format!("{}: {e}", schema::META_OFFSET_RANGES))?;
    let partitions: Vec<i32> = offset_ranges.iter().map(|r| r.partition).collect();
    if partitions != (0..partition_count).collect::<Vec<_>>() {
        return Err(format!(
            "{} lists partitions {partitions:?} for {partition_count} partitions",
            schema::META_OFFSET_RANGES
        ));
    }
    if let Some(range) = offset_ranges
        .iter()
        .find(|r| r.start < 0 || r.end < r.start)
    {
        return Err(format!(
            "partition {}'s offset range {}..{} is not a range",
            range.partition, range.start, range.end
        ));
    }
    Ok(RecordingInfo {
        topic: meta(pairs, schema::META_TOPIC)?.to_string(),
        source: meta(pairs, schema::META_SOURCE)?.to_string(),
        partition_count,
        offset_ranges,
    })
}

impl Recording {
    /// Reads a whole recording, checking its schema, metadata and order.
    pub fn read(path: &Path) -> Result<Recording> {
        let mut file = File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
        let length = file
            .metadata()
            .map_err(|e| bad(path, format!("cannot read: {e}")))?
            .len();
        if length == 0 {
            return Err(bad(path, "empty file (0 bytes), not a Parquet file"));
        }
        let magic = has_footer_magic(&mut file, length)
            .map_err(|e| bad(path, format!("cannot read: {e}")))?;
        if !magic {
            return Err(bad(
                path,
                format!(
                    "truncated or not a Parquet file: no Parquet footer at the end of its {length} bytes"
                ),
            ));
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(path, format!("corrupt Parquet footer: {e}")))?;
        schema::check(builder.schema()).map_err(|e| bad(path, e))?;
        let pairs: BTreeMap<String, String> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
            .collect();
        let info = info_of(&pairs).map_err(|e| bad(path, e))?;
        // Each partition's records at once: at most its recorded range,
        // and at most the file's rows (a range may be mostly markers).
        let file_rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let partitions = info
            .offset_ranges
            .iter()
            .map(|range| {
                let range_len = usize::try_from(range.end - range.start).unwrap_or(0);
                (
                    range.partition,
                    Vec::with_capacity(range_len.min(file_rows)),
                )
            })
            .collect();
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| bad(path, format!("corrupt: {e}")))?;
        let mut rows = Rows {
            info: &info,
            topic: Arc::from(info.topic.as_str()),
            partitions,
            last: None,
            row: 0,
        };
        for batch in reader {
            let batch = batch.map_err(|e| bad(path, format!("corrupt data: {e}")))?;
            rows.add(&batch).map_err(|e| bad(path, e))?;
        }
        let mut partitions = rows.partitions;
        // Partitions without records are not listed; a partition whose
        // range was mostly empty (compacted, markers) gives back what it
        // reserved.
        partitions.retain(|_, messages: &mut Vec<Message>| {
            if messages.capacity() > 2 * messages.len() {
                messages.shrink_to_fit();
            }
            !messages.is_empty()
        });
        Ok(Recording { info, partitions })
    }
}

/// The rows read so far, checked as they come.
struct Rows<'a> {
    info: &'a RecordingInfo,
    /// The recording's topic, shared by its messages.
    topic: Arc<str>,
    partitions: BTreeMap<i32, Vec<Message>>,
    last: Option<(i32, i64)>,
    row: u64,
}

impl Rows<'_> {
    fn add(&mut self, batch: &RecordBatch) -> std::result::Result<(), String> {
        for (index, name) in [
            "topic",
            "partition",
            "offset",
            "timestamp_ms",
            "timestamp_type",
            "headers",
        ]
        .iter()
        .enumerate()
        {
            let column = batch.column(if index == 5 { 7 } else { index });
            if column.null_count() > 0 {
                return Err(format!("column `{name}` has nulls"));
            }
        }
        let topic = batch.column(0).as_string::<i32>();
        let partition = batch.column(1).as_primitive::<Int32Type>();
        let offset = batch.column(2).as_primitive::<Int64Type>();
        let timestamp = batch.column(3).as_primitive::<Int64Type>();
        let timestamp_type = batch.column(4).as_string::<i32>();
        let key = batch.column(5).as_binary::<i32>();
        let value = batch.column(6).as_binary::<i32>();
        let headers = batch.column(7).as_list::<i32>();
        let header_structs = headers.values().as_struct();
        if header_structs.column(0).null_count() > 0 || header_structs.column(1).null_count() > 0 {
            return Err("a header with a null name or value".to_string());
        }
        let header_names = header_structs.column(0).as_string::<i32>();
        let header_values = header_structs.column(1).as_binary::<i32>();
        let header_offsets = headers.value_offsets();
        // One copy of each batch's key and value bytes; every record's key
        // and value are slices of it (the recording is held whole anyway).
        let key_data = Bytes::copy_from_slice(key.value_data());
        let value_data = Bytes::copy_from_slice(value.value_data());
        for i in 0..batch.num_rows() {
            let row = self.row;
            self.row += 1;
            if topic.value(i) != self.info.topic {
                return Err(format!(
                    "row {row}: topic {:?} in a recording of {:?}",
                    topic.value(i),
                    self.info.topic
                ));
            }
            let at = (partition.value(i), offset.value(i));
            if self.last.is_some_and(|last| at <= last) {
                let last = self.last.expect("checked");
                return Err(format!(
                    "row {row}: record {}-{} after {}-{}: rows must be sorted by partition, then offset",
                    at.0, at.1, last.0, last.1
                ));
            }
            self.last = Some(at);
            let Some(range) = usize::try_from(at.0)
                .ok()
                .and_then(|p| self.info.offset_ranges.get(p))
            else {
                return Err(format!(
                    "row {row}: partition {} of a topic of {} partitions",
                    at.0, self.info.partition_count
                ));
            };
            if at.1 < range.start || at.1 >= range.end {
                return Err(format!(
                    "row {row}: offset {} outside partition {}'s recorded range {}..{}",
                    at.1, at.0, range.start, range.end
                ));
            }
            let kind = timestamp_type.value(i);
            if kind != TIMESTAMP_CREATE_TIME && kind != TIMESTAMP_LOG_APPEND_TIME {
                return Err(format!("row {row}: timestamp_type {kind:?}"));
            }
            let (from, to) = (header_offsets[i] as usize, header_offsets[i + 1] as usize);
            let message = Message {
                topic: Arc::clone(&self.topic),
                partition: at.0,
                offset: at.1,
                key: key.is_valid(i).then(|| slice(&key_data, key, i)),
                value: value.is_valid(i).then(|| slice(&value_data, value, i)),
                timestamp_ms: timestamp.value(i),
                headers: (from..to)
                    .map(|h| {
                        (
                            header_names.value(h).to_string(),
                            header_values.value(h).to_vec(),
                        )
                    })
                    .collect(),
            };
            self.partitions.entry(at.0).or_default().push(message);
        }
        Ok(())
    }
}

/// Row `i` of a binary column, as a slice of `data` (a copy of the
/// column's value buffer).
fn slice(data: &Bytes, column: &BinaryArray, i: usize) -> Bytes {
    let offsets = column.value_offsets();
    data.slice(offsets[i] as usize..offsets[i + 1] as usize)
}
