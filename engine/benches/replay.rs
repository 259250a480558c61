//! Parquet replay: rows per second through the worker vs a bare arrow-rs
//! decode of the same file.
//!
//! Workload (seeded): `RECORDS` JSON records `{"key", "ts", "value"}` of the
//! shipped window-stats job's input topic over 4 partitions, 10,000 keys,
//! event time rising 1 ms every 10 records per partition, written as a
//! recording (zstd) once.
//!
//! - decode: the file read with `ParquetRecordBatchReaderBuilder` to Arrow
//!   batches, every value's bytes touched: the floor of any reader;
//! - replay: the whole of `eddy replay` but the output file: the recording
//!   read and checked into records, then the window-stats job through the
//!   worker's driver and core over the Parquet transport (JSON decoding,
//!   windows, checkpoints, transactions, every window fired at the end).
//!
//! `cargo bench -p eddyline-engine --no-default-features --features parquet
//! --bench replay -- --noplot` (in the engine, so that its release build
//! has no librdkafka, simulator or command line in it): criterion's groups,
//! then the two interleaved round by round (median of `EDDY_BENCH_ROUNDS`,
//! default 3) and their ratio. The figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use criterion::{Criterion, Throughput};
use eddyline_engine::job::Job;
use eddyline_engine::recording::write::write_recording;
use eddyline_engine::recording::{Recording, RecordingInfo, ReplayOptions, replay};
use eddyline_engine::transport::Message;
use eddyline_engine::worker::Stopped;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const RECORDS: usize = 1_000_000;
const PARTITIONS: i32 = 4;
const KEYS: u64 = 10_000;

fn job() -> Job {
    Job::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../jobs/window-stats.toml"
    ))
    .expect("the shipped job")
}

fn recording_path() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-replay-events.parquet");
    if path.exists() {
        return path;
    }
    // SplitMix64 from a fixed seed: the same workload every run.
    let mut state = 0x5eed_u64;
    let mut below = |n: u64| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    };
    let base_ms = 1_700_000_000_000_i64;
    let mut partitions: std::collections::BTreeMap<i32, Vec<Message>> = Default::default();
    for i in 0..RECORDS {
        let partition = (i % PARTITIONS as usize) as i32;
        let per_partition = i / PARTITIONS as usize;
        let key = format!("user-{}", below(KEYS));
        let ts = base_ms + (per_partition / 10) as i64;
        let value = format!(r#"{{"key":"{key}","ts":{ts},"value":{}}}"#, below(100));
        partitions.entry(partition).or_default().push(Message {
            topic: "events".into(),
            partition,
            offset: per_partition as i64,
            key: Some(key.into_bytes().into()),
            value: Some(value.into_bytes().into()),
            timestamp_ms: ts,
            headers: Vec::new(),
        });
    }
    let info = RecordingInfo::covering("events", "benches/replay.rs", PARTITIONS, &partitions);
    write_recording(&path, &info, &partitions).expect("the bench recording");
    path
}

/// Decodes every batch and touches every value: rows.
fn decode(path: &Path) -> usize {
    let file = std::fs::File::open(path).expect("the recording");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a parquet file")
        .with_batch_size(8_192)
        .build()
        .expect("a reader");
    let mut rows = 0;
    let mut bytes = 0;
    for batch in reader {
        let batch = batch.expect("a batch");
        rows += batch.num_rows();
        let values = batch.column(6).as_binary::<i32>();
        for i in 0..values.len() {
            bytes += values.value(i).len();
        }
    }
    black_box(bytes);
    rows
}

/// Reads and checks the recording into the seam's messages: rows (where
/// the replay's time goes, before the worker).
fn read_messages(path: &Path) -> usize {
    black_box(Recording::read(path).expect("the recording")).len()
}

/// Reads the recording and replays the job over it: rows.
fn replay_file(path: &Path) -> usize {
    let recording = Recording::read(path).expect("the recording");
    let rows = recording.len();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let done = runtime
        .block_on(replay(
            job(),
            &[recording],
            &ReplayOptions::default(),
            |_| {},
        ))
        .expect("the replay");
    assert_eq!(done.stopped, Stopped::Finished);
    assert_eq!(done.stats.records_in as usize, rows);
    black_box(done.stats.records_out);
    rows
}

fn timed(run: impl FnOnce() -> usize) -> f64 {
    let started = Instant::now();
    let rows = run();
    rows as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let path = recording_path();
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    {
        let mut group = criterion.benchmark_group("replay");
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.bench_function("bare arrow-rs decode", |b| b.iter(|| decode(&path)));
        group.bench_function("replay through the worker", |b| {
            b.iter(|| replay_file(&path))
        });
        group.finish();
    }
    criterion.final_summary();
    let rounds: usize = std::env::var("EDDY_BENCH_ROUNDS").ok().map_or(3, |text| {
        text.parse().expect("EDDY_BENCH_ROUNDS must be a number")
    });
    let (mut decoded, mut read, mut replayed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        decoded.push(timed(|| decode(&path)));
        read.push(timed(|| read_messages(&path)));
        replayed.push(timed(|| replay_file(&path)));
    }
    let (decoded, read, replayed) = (median(decoded), median(read), median(replayed));
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!("{RECORDS} records, {PARTITIONS} partitions, {size} bytes (zstd)");
    println!("| run | rows/s |");
    println!("| --- | ---: |");
    println!("| bare arrow-rs decode | {decoded:.0} |");
    println!("| recording read into the seam's messages (checked) | {read:.0} |");
    println!("| replay through the worker (window-stats) | {replayed:.0} |");
    println!(
        "| **ratio** (target ≥ 0.6) | **{:.3}** |",
        replayed / decoded
    );
}
