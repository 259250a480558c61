//! `eddy sim run --dump DIR`: what a run read and committed, as JSON lines.
//!
//! - `input.jsonl`: every input record in the log, by partition then
//!   offset: `{"partition","offset","key","ts","value"}` (`ts` is the
//!   record's timestamp, the event time the workload gave it; `value` is
//!   the record's JSON when it is JSON, else its text);
//! - `output.jsonl`: the committed output (read_committed), by partition
//!   then offset, one output record's JSON object per line — for a job with
//!   `eddy window`'s fields (window-stats), exactly the firing lines of
//!   `eddy window` without `step` and `watermark`;
//! - `late.jsonl`: `{"key","ts","value"}` of every committed late record;
//! - `dead-letter.jsonl`: `{"partition","offset","reason"}` of each source
//!   record sent to the dead letters;
//! - `spec.json` (jobs with `eddy window`'s fields): the job's window in the
//!   `eddy window` spec format, so its output can be compared with
//!   `eddy window` and Flink's.
//!
//! With `--parquet`, the same topics also as recordings (the format of
//! docs/recordings.md): `input.parquet`, `output.parquet`, `late.parquet`
//! and `dead-letter.parquet` (jobs with a dead-letter topic), each
//! partition's range from its first record to one past its last.
//!
//! Each file is written to a temporary name in DIR and renamed when
//! complete: a failed dump leaves no half-written file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use eddyline_engine::job::Job;
use eddyline_engine::job::spec::WindowKindName;
use eddyline_engine::recording::RecordingInfo;
use eddyline_engine::recording::write::write_recording;
use eddyline_engine::transport::Message;
use eddyline_scenarios::observation::Observation;
use serde_json::{Value, json};

use crate::CliError;

/// The output fields of `eddy window`'s firings (less step and watermark).
const WINDOW_FIELDS: [&str; 8] = [
    "key",
    "window_start",
    "window_end",
    "count",
    "sum",
    "min_ts",
    "max_ts",
    "kind",
];

/// Creates DIR if needed (before the run, so a bad DIR fails at once).
pub fn prepare(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::BadInput(format!("--dump {}: {e}", dir.display())))
}

pub fn write(dir: &Path, job: &Job, observation: &Observation) -> Result<(), CliError> {
    write_file(dir, "input.jsonl", &input_lines(&observation.input))?;
    write_file(dir, "output.jsonl", &output_lines(&observation.output))?;
    write_file(dir, "late.jsonl", &late_lines(&observation.late))?;
    write_file(
        dir,
        "dead-letter.jsonl",
        &dead_letter_lines(&observation.dead_letter),
    )?;
    if job.output_fields() == WINDOW_FIELDS {
        write_file(dir, "spec.json", &format!("{}\n", window_spec(job)))?;
    }
    Ok(())
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), CliError> {
    write_whole(&dir.join(name), text)
}

/// Writes `text` to a hidden temporary file beside `path`, renamed over it
/// once whole: an interrupted write leaves no half-written file.
pub(super) fn write_whole(path: &Path, text: &str) -> Result<(), CliError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| CliError::Internal(format!("{}: {e}", path.display()));
    std::fs::write(&temporary, text).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

fn messages(by_partition: &BTreeMap<i32, Vec<Message>>) -> impl Iterator<Item = &Message> {
    by_partition.values().flatten()
}

fn text(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// The record's JSON if it is JSON, else its text.
fn json_or_text(bytes: Option<&[u8]>) -> Value {
    bytes
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .unwrap_or_else(|| text(bytes))
}

fn lines(values: impl Iterator<Item = Value>) -> String {
    let mut out = String::new();
    for value in values {
        writeln!(out, "{value}").expect("writing to a String");
    }
    out
}

fn input_lines(input: &BTreeMap<i32, Vec<Message>>) -> String {
    lines(messages(input).map(|m| {
        json!({
            "partition": m.partition,
            "offset": m.offset,
            "key": text(m.key.as_deref()),
            "ts": m.timestamp_ms,
            "value": json_or_text(m.value.as_deref()),
        })
    }))
}

fn output_lines(output: &BTreeMap<i32, Vec<Message>>) -> String {
    lines(messages(output).map(|m| json_or_text(m.value.as_deref())))
}

fn late_lines(late: &BTreeMap<i32, Vec<Message>>) -> String {
    lines(messages(late).map(|m| {
        json!({
            "key": text(m.key.as_deref()),
            "ts": m.timestamp_ms,
            "value": json_or_text(m.value.as_deref()),
        })
    }))
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a [u8]> {
    message
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}

fn header_number(message: &Message, name: &str) -> Value {
    header(message, name)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<i64>().ok())
        .map_or(Value::Null, Value::from)
}

fn dead_letter_lines(dead: &BTreeMap<i32, Vec<Message>>) -> String {
    use eddyline_engine::job::encode::{
        HEADER_ERROR, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    };
    lines(messages(dead).map(|m| {
        json!({
            "partition": header_number(m, HEADER_SOURCE_PARTITION),
            "offset": header_number(m, HEADER_SOURCE_OFFSET),
            "reason": text(header(m, HEADER_ERROR)),
        })
    }))
}

/// The run's topics as recordings (`--parquet`).
pub fn write_parquet(
    dir: &Path,
    job: &Job,
    observation: &Observation,
    partitions: i32,
    source: &str,
) -> Result<(), CliError> {
    let mut topics = vec![
        ("input", job.input_topics()[0].as_str(), &observation.input),
        ("output", job.output_topic(), &observation.output),
        ("late", job.late_topic(), &observation.late),
    ];
    if let Some(dead) = job.dead_letter_topic() {
        topics.push(("dead-letter", dead, &observation.dead_letter));
    }
    for (name, topic, records) in topics {
        let info = RecordingInfo::covering(topic, source, partitions, records);
        let path = dir.join(format!("{name}.parquet"));
        write_recording(&path, &info, records).map_err(|e| CliError::Internal(e.to_string()))?;
    }
    Ok(())
}

/// The job's window as `eddy window`'s SPEC.json.
fn window_spec(job: &Job) -> Value {
    let spec = job.spec();
    let window = &spec.window;
    let window_json = match window.kind {
        WindowKindName::Tumbling => json!({
            "kind": "tumbling",
            "size": window.size_ms,
            "offset": window.offset_ms.unwrap_or(0),
        }),
        WindowKindName::Sliding => json!({
            "kind": "sliding",
            "size": window.size_ms,
            "slide": window.slide_ms,
            "offset": window.offset_ms.unwrap_or(0),
        }),
        WindowKindName::Session => json!({"kind": "session", "gap": window.gap_ms}),
    };
    json!({
        "window": window_json,
        "out_of_orderness": spec.event_time.out_of_orderness_ms,
        "allowed_lateness": window.allowed_lateness_ms,
    })
}
