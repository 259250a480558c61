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
//! - hand loop: the same file decoded the same way, then the job's work
//!   written by hand as a straightforward program would (as the live
//!   bench's bare loop does on Kafka): `serde_json::Value` of each value,
//!   per partition a watermark and a `HashMap` per window end of
//!   per-key count, sum, min and max of the time, firing at the watermark
//!   (late updates within the allowed lateness), each firing encoded as
//!   the worker's output record (JSON value, key, timestamp, headers):
//!   the fair "bare" baseline of a replay;
//! - replay: the whole of `eddy replay` but the output file: the recording
//!   read and checked into records, then the window-stats job through the
//!   worker's driver and core over the Parquet transport (JSON decoding,
//!   windows, checkpoints, transactions, every window fired at the end).
//!
//! `cargo bench -p eddyline-engine --no-default-features --features parquet
//! --bench replay -- --noplot` (in the engine, so that its release build
//! has no librdkafka, simulator or command line in it): criterion's groups,
//! then the four interleaved round by round (median of `EDDY_BENCH_ROUNDS`,
//! default 3) and the ratios of replay to the bare decode and to the hand
//! loop. The figures go to BENCHMARKS.md.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use criterion::{Criterion, Throughput};
use eddyline_engine::job::Job;
use eddyline_engine::recording::write::write_recording;
use eddyline_engine::recording::{Recording, RecordingInfo, ReplayOptions, replay_owned};
use eddyline_engine::transport::Message;
use eddyline_engine::worker::Stopped;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

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
    let mut partitions: BTreeMap<i32, Vec<Message>> = Default::default();
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

/// The file's Arrow batches, as the bare readers decode them.
fn batches(path: &Path) -> ParquetRecordBatchReader {
    let file = std::fs::File::open(path).expect("the recording");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a parquet file")
        .with_batch_size(8_192)
        .build()
        .expect("a reader")
}

/// Decodes every batch and touches every value: rows.
fn decode(path: &Path) -> usize {
    let mut rows = 0;
    let mut bytes = 0;
    for batch in batches(path) {
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

/// Reads the recording and replays the job over it: rows and outputs.
fn replay_file(path: &Path) -> (usize, u64) {
    let recording = Recording::read(path).expect("the recording");
    let rows = recording.len();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let done = runtime
        .block_on(replay_owned(
            job(),
            vec![recording],
            &ReplayOptions::default(),
            |_| {},
        ))
        .expect("the replay");
    assert_eq!(done.stopped, Stopped::Finished);
    assert_eq!(done.stats.records_in as usize, rows);
    (rows, done.stats.records_out)
}

/// Decodes the file as [`decode`] does and does the job's work by hand
/// ([`HandTask`]): rows and outputs.
fn hand_loop(path: &Path) -> (usize, u64) {
    let mut tasks: BTreeMap<i32, HandTask> = BTreeMap::new();
    let mut out = Vec::new();
    let mut rows = 0;
    for batch in batches(path) {
        let batch = batch.expect("a batch");
        rows += batch.num_rows();
        let partitions = batch
            .column(1)
            .as_primitive::<arrow_array::types::Int32Type>();
        let values = batch.column(6).as_binary::<i32>();
        for i in 0..values.len() {
            let partition = partitions.value(i);
            tasks
                .entry(partition)
                .or_insert_with(|| HandTask::new(partition))
                .process(values.value(i), &mut out);
        }
    }
    for task in tasks.values_mut() {
        task.watermark = i64::MAX;
        task.advance(&mut out);
    }
    let outputs = out.len() as u64;
    black_box(out);
    (rows, outputs)
}

fn timed(run: impl FnOnce() -> usize) -> f64 {
    let started = Instant::now();
    let rows = run();
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The window-stats job's configuration (jobs/window-stats.toml), for the
/// hand-written loop.
const WINDOW_MS: i64 = 10_000;
const OUT_OF_ORDERNESS_MS: i64 = 5_000;
const ALLOWED_LATENESS_MS: i64 = 2_000;

/// A window's aggregates in the hand-written loop: the job's count, exact
/// sum of `value`, smallest and largest `ts`.
#[derive(Clone, Copy)]
struct Stats {
    count: u64,
    sum: i128,
    min_ts: i64,
    max_ts: i64,
}

impl Stats {
    fn new(ts: i64) -> Self {
        Self {
            count: 0,
            sum: 0,
            min_ts: ts,
            max_ts: ts,
        }
    }

    fn add(&mut self, ts: i64, value: i64) {
        self.count += 1;
        self.sum += i128::from(value);
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
    }
}

/// One partition's windows in the hand-written loop.
struct HandTask {
    task: i32,
    max_ts: Option<i64>,
    watermark: i64,
    /// Windows the watermark has not reached, by end, then key.
    pending: BTreeMap<i64, HashMap<String, Stats>>,
    /// Fired windows within their allowed lateness, by end, then key.
    fired: BTreeMap<i64, HashMap<String, Stats>>,
}

/// An output of the hand-written loop, as the worker writes it: topic,
/// key, value, timestamp, headers.
type HandOutput = (&'static str, Vec<u8>, Vec<u8>, i64, Vec<(String, Vec<u8>)>);

impl HandTask {
    fn new(task: i32) -> Self {
        Self {
            task,
            max_ts: None,
            watermark: i64::MIN,
            pending: BTreeMap::new(),
            fired: BTreeMap::new(),
        }
    }

    /// One record: judged against the watermark from before it, then the
    /// watermark it raises fires windows.
    fn process(&mut self, value: &[u8], out: &mut Vec<HandOutput>) {
        let json: serde_json::Value = serde_json::from_slice(value).expect("JSON");
        let key = json["key"].as_str().expect("a key");
        let ts = json["ts"].as_i64().expect("a time");
        let amount = json["value"].as_i64().expect("a value");
        let end = ts - ts.rem_euclid(WINDOW_MS) + WINDOW_MS;
        if end - 1 + ALLOWED_LATENESS_MS <= self.watermark {
            let headers = vec![(
                "eddy.watermark".to_string(),
                self.watermark.to_string().into_bytes(),
            )];
            out.push((
                "window-stats-late",
                key.as_bytes().to_vec(),
                value.to_vec(),
                ts,
                headers,
            ));
        } else if end - 1 <= self.watermark {
            let stats = self
                .fired
                .entry(end)
                .or_default()
                .entry(key.to_string())
                .or_insert(Stats::new(ts));
            stats.add(ts, amount);
            let stats = *stats;
            self.emit(key, end, &stats, "late_update", out);
        } else {
            self.pending
                .entry(end)
                .or_default()
                .entry(key.to_string())
                .or_insert(Stats::new(ts))
                .add(ts, amount);
        }
        let max_ts = self.max_ts.map_or(ts, |max| max.max(ts));
        self.max_ts = Some(max_ts);
        self.watermark = self.watermark.max(max_ts - OUT_OF_ORDERNESS_MS - 1);
        self.advance(out);
    }

    /// Fires the windows the watermark reached (in end, then key order),
    /// and forgets those past their allowed lateness.
    fn advance(&mut self, out: &mut Vec<HandOutput>) {
        while let Some(entry) = self.pending.first_entry() {
            let end = *entry.key();
            if end - 1 > self.watermark {
                break;
            }
            let windows = entry.remove();
            let mut keys: Vec<(&String, &Stats)> = windows.iter().collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, stats) in keys {
                self.emit(key, end, stats, "on_time", out);
            }
            self.fired.insert(end, windows);
        }
        while let Some(entry) = self.fired.first_entry() {
            if entry.key() - 1 + ALLOWED_LATENESS_MS > self.watermark {
                break;
            }
            entry.remove();
        }
    }

    /// A firing as the worker's output record: the JSON value, at the
    /// window's end - 1, with the task's watermark and number.
    fn emit(&self, key: &str, end: i64, stats: &Stats, kind: &str, out: &mut Vec<HandOutput>) {
        let body = serde_json::json!({
            "key": key,
            "window_start": end - WINDOW_MS,
            "window_end": end,
            "count": stats.count,
            "sum": stats.sum,
            "min_ts": stats.min_ts,
            "max_ts": stats.max_ts,
            "kind": kind,
        });
        let headers = vec![
            (
                "eddy.watermark".to_string(),
                self.watermark.to_string().into_bytes(),
            ),
            ("eddy.task".to_string(), self.task.to_string().into_bytes()),
        ];
        out.push((
            "window-stats",
            key.as_bytes().to_vec(),
            serde_json::to_vec(&body).expect("JSON"),
            end - 1,
            headers,
        ));
    }
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
        group.bench_function("hand-written decode, JSON and window loop", |b| {
            b.iter(|| hand_loop(&path))
        });
        group.bench_function("replay through the worker", |b| {
            b.iter(|| replay_file(&path))
        });
        group.finish();
    }
    criterion.final_summary();
    let rounds: usize = std::env::var("EDDY_BENCH_ROUNDS").ok().map_or(3, |text| {
        text.parse().expect("EDDY_BENCH_ROUNDS must be a number")
    });
    let (mut decoded, mut read, mut by_hand, mut replayed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        decoded.push(timed(|| decode(&path)));
        read.push(timed(|| read_messages(&path)));
        let mut hand_outputs = 0;
        by_hand.push(timed(|| {
            let (rows, outputs) = hand_loop(&path);
            hand_outputs = outputs;
            rows
        }));
        let mut worker_outputs = 0;
        replayed.push(timed(|| {
            let (rows, outputs) = replay_file(&path);
            worker_outputs = outputs;
            rows
        }));
        assert_eq!(
            hand_outputs, worker_outputs,
            "the hand loop writes the worker's outputs"
        );
    }
    let (decoded, read, by_hand, replayed) = (
        median(decoded),
        median(read),
        median(by_hand),
        median(replayed),
    );
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!("{RECORDS} records, {PARTITIONS} partitions, {size} bytes (zstd)");
    println!("| run | rows/s |");
    println!("| --- | ---: |");
    println!("| bare arrow-rs decode | {decoded:.0} |");
    println!("| recording read into the seam's messages (checked) | {read:.0} |");
    println!("| hand-written decode, JSON and window loop | {by_hand:.0} |");
    println!("| replay through the worker (window-stats) | {replayed:.0} |");
    println!(
        "| **ratio** replay / bare decode (target ≥ 0.6) | **{:.3}** |",
        replayed / decoded
    );
    println!(
        "| **ratio** replay / hand-written loop (target ≥ 0.6) | **{:.3}** |",
        replayed / by_hand
    );
}
