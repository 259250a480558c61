//! Recordings: the Parquet format written and read back, every kind of bad
//! file refused with one line naming it, and replays through the worker
//! over the Parquet transport.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use eddyline_engine::job::Job;
use eddyline_engine::recording::write::write_recording;
use eddyline_engine::recording::{
    OffsetRange, Recording, RecordingInfo, RecordingWriter, ReplayOptions, replay,
};
use eddyline_engine::transport::{Bytes, Message};
use eddyline_engine::worker::Stopped;
use parquet::arrow::ArrowWriter;

fn dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("recording")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn message(topic: &str, partition: i32, offset: i64, value: &str) -> Message {
    Message {
        topic: topic.into(),
        partition,
        offset,
        key: Some(format!("k{offset}").into_bytes().into()),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        timestamp_ms: 1_700_000_000_000 + offset,
        headers: vec![("h".into(), b"1".to_vec()), ("h".into(), b"2".to_vec())],
    }
}

/// Two partitions: offsets with gaps (transaction markers) in 0, a null
/// key and value, and an empty partition 2.
fn sample() -> (RecordingInfo, BTreeMap<i32, Vec<Message>>) {
    let mut partitions = BTreeMap::new();
    partitions.insert(
        0,
        vec![
            message("t", 0, 0, "a"),
            message("t", 0, 1, "b"),
            message("t", 0, 3, "c"),
        ],
    );
    let mut null = message("t", 1, 5, "");
    null.key = None;
    null.value = None;
    null.headers.clear();
    partitions.insert(1, vec![null]);
    let info = RecordingInfo {
        topic: "t".into(),
        source: "a test".into(),
        partition_count: 3,
        offset_ranges: vec![
            OffsetRange {
                partition: 0,
                start: 0,
                end: 5,
            },
            OffsetRange {
                partition: 1,
                start: 5,
                end: 6,
            },
            OffsetRange {
                partition: 2,
                start: 0,
                end: 0,
            },
        ],
    };
    (info, partitions)
}

fn read_error(path: &Path) -> String {
    let error = Recording::read(path).unwrap_err();
    assert!(
        matches!(error, eddyline_engine::Error::Invalid(_)),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(
        text.starts_with(&path.display().to_string()),
        "names the file: {text}"
    );
    text
}

#[test]
fn recording_reads_back_what_was_written_records_metadata_and_all() {
    let dir = dir("round-trip");
    let path = dir.join("t.parquet");
    let (info, partitions) = sample();
    assert_eq!(write_recording(&path, &info, &partitions).unwrap(), 4);
    let read = Recording::read(&path).unwrap();
    assert_eq!(read.info, info);
    assert_eq!(read.partitions, partitions);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["t.parquet"], "no temporary file left");
}

#[test]
fn recording_writer_refuses_rows_out_of_order_and_leaves_nothing_when_dropped() {
    let dir = dir("out-of-order");
    let path = dir.join("t.parquet");
    let mut writer = RecordingWriter::create(&path, "t").unwrap();
    writer.append(&message("t", 1, 4, "x")).unwrap();
    let error = writer.append(&message("t", 0, 9, "y")).unwrap_err();
    assert!(
        error.to_string().contains("partition, then offset order"),
        "{error}"
    );
    let error = writer.append(&message("u", 1, 5, "y")).unwrap_err();
    assert!(error.to_string().contains("topic \"u\""), "{error}");
    drop(writer);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn recording_an_empty_file_is_refused_with_its_name() {
    let path = dir("empty").join("empty.parquet");
    std::fs::write(&path, b"").unwrap();
    assert!(read_error(&path).ends_with("empty file (0 bytes), not a Parquet file"));
}

#[test]
fn recording_a_missing_file_is_refused_with_its_name() {
    let path = dir("missing").join("missing.parquet");
    assert!(read_error(&path).contains("cannot open"));
}

#[test]
fn recording_a_truncated_file_is_refused_with_its_name() {
    let dir = dir("truncated");
    let path = dir.join("t.parquet");
    let (info, partitions) = sample();
    write_recording(&path, &info, &partitions).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(read_error(&path).contains("truncated or not a Parquet file"));
}

#[test]
fn recording_a_corrupt_footer_or_page_is_refused_with_its_name() {
    let dir = dir("corrupt");
    let path = dir.join("t.parquet");
    let (info, partitions) = sample();
    write_recording(&path, &info, &partitions).unwrap();
    let good = std::fs::read(&path).unwrap();
    // The footer's length field (the 4 bytes before the magic) made absurd.
    let mut footer = good.clone();
    let at = footer.len() - 8;
    footer[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &footer).unwrap();
    assert!(read_error(&path).contains("corrupt Parquet footer"));
    // The data pages overwritten with garbage, the footer intact.
    let mut pages = good;
    for byte in &mut pages[4..200] {
        *byte = 0xa5;
    }
    std::fs::write(&path, &pages).unwrap();
    let text = read_error(&path);
    assert!(text.contains("corrupt"), "{text}");
}

#[test]
fn recording_a_parquet_file_of_another_schema_is_refused_with_its_name() {
    let path = dir("schema").join("other.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let text = read_error(&path);
    assert!(
        text.ends_with("not an Eddyline recording: column 1 is `n`, expected `topic`"),
        "{text}"
    );
}

#[test]
fn recording_a_file_with_the_schema_but_no_metadata_is_refused_with_its_name() {
    let dir = dir("no-metadata");
    let path = dir.join("t.parquet");
    let (info, partitions) = sample();
    write_recording(&path, &info, &partitions).unwrap();
    let read = Recording::read(&path).unwrap();
    // Rewrite its rows with a bare arrow writer: same schema, no metadata.
    let bare = dir.join("bare.parquet");
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&bare).unwrap(),
        batches[0].schema(),
        None,
    )
    .unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
    assert_eq!(read.len(), 4);
    assert!(read_error(&bare).contains("no eddyline.recording.format_version"));
}

fn window_stats() -> Job {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../jobs/window-stats.toml");
    Job::from_file(path).unwrap()
}

/// `events` over three partitions, with offsets that skip (as markers do)
/// and a trailing skipped offset in partition 0, and an empty partition 2.
fn events() -> Recording {
    let mut partitions: BTreeMap<i32, Vec<Message>> = BTreeMap::new();
    let rows = [
        (0, 0, "a", 1_000, 5),
        (0, 1, "b", 3_000, 1),
        (0, 3, "a", 12_000, 2),
        (0, 4, "a", 2_000, 7), // out of order, within the bound
        (1, 10, "c", 500, 4),
        (1, 12, "c", 25_000, 9),
    ];
    for (partition, offset, key, ts, value) in rows {
        let json = format!(r#"{{"key":"{key}","ts":{ts},"value":{value}}}"#);
        let mut message = message("events", partition, offset, &json);
        message.key = Some(Bytes::copy_from_slice(key.as_bytes()));
        message.timestamp_ms = ts;
        message.headers.clear();
        partitions.entry(partition).or_default().push(message);
    }
    let info = RecordingInfo {
        topic: "events".into(),
        source: "a test".into(),
        partition_count: 3,
        offset_ranges: vec![
            OffsetRange {
                partition: 0,
                start: 0,
                end: 6,
            },
            OffsetRange {
                partition: 1,
                start: 10,
                end: 13,
            },
            // Empty, its log starting past 0: the replay still ends.
            OffsetRange {
                partition: 2,
                start: 7,
                end: 7,
            },
        ],
    };
    Recording { info, partitions }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(future)
}

fn values(records: &BTreeMap<i32, Vec<Message>>) -> Vec<String> {
    records
        .values()
        .flatten()
        .map(|m| String::from_utf8(m.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn replay_runs_the_job_to_the_recordings_end_and_fires_every_window() {
    block_on(async {
        let input = events();
        let done = replay(window_stats(), &[input], &ReplayOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(done.stopped, Stopped::Finished);
        assert_eq!(done.stats.records_in, 6);
        let (output, _) = done.transport.committed("window-stats").await.unwrap();
        let mut fired = values(&output);
        fired.sort();
        // Every window fires by the end (the watermark at i64::MAX): a's
        // [0, 10 s) and [10 s, 20 s), b's, c's two.
        assert_eq!(fired.len(), 5, "{fired:#?}");
        assert!(
            fired
                .iter()
                .any(|f| f.contains(r#""key":"c""#) && f.contains(r#""window_start":20000"#)),
            "{fired:#?}"
        );
    });
}

#[test]
fn replay_output_written_as_a_recording_reads_back_equal_and_two_replays_are_byte_identical() {
    let dir = dir("replay-twice");
    let mut files = Vec::new();
    for run in 0..2 {
        let path = dir.join(format!("out-{run}.parquet"));
        block_on(async {
            let done = replay(
                window_stats(),
                &[events()],
                &ReplayOptions::default(),
                |_| {},
            )
            .await
            .unwrap();
            done.transport
                .write_committed("window-stats", &path, "a replay")
                .await
                .unwrap();
            let (committed, _) = done.transport.committed("window-stats").await.unwrap();
            let read = Recording::read(&path).unwrap();
            assert_eq!(
                read.partitions.values().flatten().count(),
                committed.values().flatten().count()
            );
            assert_eq!(values(&read.partitions), values(&committed));
        });
        files.push(std::fs::read(&path).unwrap());
    }
    assert_eq!(files[0], files[1], "two replays, the same bytes");
}

#[test]
fn replay_refuses_a_recording_of_another_topic() {
    block_on(async {
        let mut input = events();
        input.info.topic = "clicks".into();
        for message in input.partitions.values_mut().flatten() {
            message.topic = "clicks".into();
        }
        let error = replay(window_stats(), &[input], &ReplayOptions::default(), |_| {})
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("reads topic events"), "{error}");
    });
}
