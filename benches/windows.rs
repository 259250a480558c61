//! Windowed aggregation throughput: the engine next to a hand-written
//! single-pass hash-map baseline over the same in-memory records.
//!
//! Workload (seeded): 1M records, keys uniform over 1k or 100k users, event
//! time advancing 1 ms per record with up to 2 s of disorder, 1% of records
//! 2–20 s late. The engine runs the full semantics (per-record watermarks
//! with D = 2 s, allowed lateness 5 s, on-time firings, late updates, the
//! late side output, purging) and hands every output to the caller; the
//! baseline folds each record into a `HashMap` keyed by (key, window) with
//! no watermark at all and returns its results at the end.
//!
//! `cargo bench --bench windows -- --noplot`: criterion's groups, then a
//! table of ratios from engine and baseline runs interleaved round by round
//! (median of `EDDY_BENCH_ROUNDS`, default 5), which keeps the ratio honest
//! on a machine shared with other work. `EDDY_BENCH_RATIOS=0` skips the
//! table; `EDDY_BENCH_SHAPES=session,sliding` limits it. The ratios go to
//! BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use eddyline_engine::aggregate::Summary;
use eddyline_engine::watermark::WatermarkConfig;
use eddyline_engine::window::{WindowConfig, WindowKind, WindowTask};
use eddyline_engine::{Key, Record};
use eddyline_sim::Seed;

const RECORDS: usize = 1_000_000;
const OUT_OF_ORDERNESS_MS: i64 = 2_000;
const ALLOWED_LATENESS_MS: i64 = 5_000;
const SIZE_MS: i64 = 60_000;
const SLIDE_MS: i64 = 10_000;
const FINE_SLIDE_MS: i64 = 2_000;
const GAP_MS: i64 = 30_000;

fn workload(keys: usize) -> Vec<Record<i64>> {
    let mut rng = Seed::new(0x5eed)
        .derive(&format!("bench/windows/{keys}"))
        .rng();
    let names: Vec<Key> = (0..keys).map(|i| Key::from(format!("user-{i}"))).collect();
    let base_ms = 1_700_000_000_000i64;
    (0..RECORDS)
        .map(|i| {
            let key = names[rng.below(keys as u64) as usize].clone();
            let mut ts = base_ms + i as i64 - rng.range_i64(0, OUT_OF_ORDERNESS_MS);
            if rng.chance(0.01) {
                ts -= rng.range_i64(2_000, 20_000);
            }
            Record::new(key, ts, rng.range_i64(1, 100))
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Shape {
    Tumbling,
    Sliding,
    /// Sliding with 30 windows per record (ratio table only): shows the
    /// cost of size / slide.
    SlidingFine,
    Session,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Tumbling => "tumbling",
            Shape::Sliding => "sliding",
            Shape::SlidingFine => "sliding-2s",
            Shape::Session => "session",
        }
    }

    fn slide_ms(self) -> i64 {
        match self {
            Shape::SlidingFine => FINE_SLIDE_MS,
            _ => SLIDE_MS,
        }
    }

    fn kind(self) -> WindowKind {
        match self {
            Shape::Tumbling => WindowKind::tumbling(SIZE_MS, 0),
            Shape::Sliding | Shape::SlidingFine => WindowKind::sliding(SIZE_MS, self.slide_ms(), 0),
            Shape::Session => WindowKind::session(GAP_MS),
        }
        .unwrap()
    }
}

/// The engine: every record through a one-input window task; returns the
/// number of outputs (firings and late records).
fn engine(shape: Shape, records: Vec<Record<i64>>) -> usize {
    let mut task: WindowTask<u32, i64, Summary> = WindowTask::new(
        WatermarkConfig::new(OUT_OF_ORDERNESS_MS, None).unwrap(),
        WindowConfig::new(shape.kind(), ALLOWED_LATENESS_MS).unwrap(),
        Summary,
        [0u32],
        Duration::ZERO,
    )
    .unwrap();
    let mut out = Vec::with_capacity(1_024);
    let mut outputs = 0;
    for record in records {
        task.process(&0, record, Duration::ZERO, &mut out).unwrap();
        outputs += out.len();
        for output in out.drain(..) {
            black_box(output);
        }
    }
    task.finish(&mut out).unwrap();
    outputs + out.len()
}

#[derive(Clone, Copy)]
struct Acc {
    count: u64,
    sum: i64,
    min_ts: i64,
    max_ts: i64,
}

impl Acc {
    fn new() -> Self {
        Acc {
            count: 0,
            sum: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }

    fn add(&mut self, ts: i64, value: i64) {
        self.count += 1;
        self.sum += value;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
    }
}

/// The baseline: one pass, one hash map, no watermarks; results at the end.
fn baseline(shape: Shape, records: Vec<Record<i64>>) -> usize {
    match shape {
        Shape::Tumbling => {
            let mut windows: HashMap<(Key, i64), Acc> = HashMap::new();
            for Record { key, ts, value } in records {
                let start = ts - ts.rem_euclid(SIZE_MS);
                windows
                    .entry((key, start))
                    .or_insert_with(Acc::new)
                    .add(ts, value);
            }
            let results: Vec<_> = windows.into_iter().collect();
            black_box(&results);
            results.len()
        }
        Shape::Sliding | Shape::SlidingFine => {
            let slide_ms = shape.slide_ms();
            let mut windows: HashMap<(Key, i64), Acc> = HashMap::new();
            for Record { key, ts, value } in records {
                let mut start = ts - ts.rem_euclid(slide_ms);
                while start > ts - SIZE_MS {
                    windows
                        .entry((key.clone(), start))
                        .or_insert_with(Acc::new)
                        .add(ts, value);
                    start -= slide_ms;
                }
            }
            let results: Vec<_> = windows.into_iter().collect();
            black_box(&results);
            results.len()
        }
        Shape::Session => {
            // Per key, disjoint sessions (start, end, acc); a record merges
            // every session it overlaps or touches.
            let mut sessions: HashMap<Key, Vec<(i64, i64, Acc)>> = HashMap::new();
            for Record { key, ts, value } in records {
                let list = sessions.entry(key).or_default();
                let (mut start, mut end) = (ts, ts + GAP_MS);
                let mut acc = Acc::new();
                acc.add(ts, value);
                list.retain(|(other_start, other_end, other)| {
                    if *other_start <= end && *other_end >= start {
                        start = start.min(*other_start);
                        end = end.max(*other_end);
                        acc.count += other.count;
                        acc.sum += other.sum;
                        acc.min_ts = acc.min_ts.min(other.min_ts);
                        acc.max_ts = acc.max_ts.max(other.max_ts);
                        false
                    } else {
                        true
                    }
                });
                list.push((start, end, acc));
            }
            let results: Vec<_> = sessions
                .into_iter()
                .flat_map(|(key, list)| {
                    list.into_iter()
                        .map(move |s| (key.clone(), s.0, s.1, s.2.count))
                })
                .collect();
            black_box(&results);
            results.len()
        }
    }
}

fn windows(c: &mut Criterion) {
    for keys in [1_000usize, 100_000] {
        let records = workload(keys);
        for shape in [Shape::Tumbling, Shape::Sliding, Shape::Session] {
            let mut group = c.benchmark_group(format!("{}/{}k-keys", shape.name(), keys / 1_000));
            group.throughput(Throughput::Elements(RECORDS as u64));
            group.sample_size(10);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(5));
            group.bench_function("engine", |b| {
                b.iter_batched(
                    || records.clone(),
                    |records| engine(shape, records),
                    BatchSize::LargeInput,
                )
            });
            group.bench_function("baseline", |b| {
                b.iter_batched(
                    || records.clone(),
                    |records| baseline(shape, records),
                    BatchSize::LargeInput,
                )
            });
            group.finish();
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Engine and baseline alternate, round after round, so that both see the
/// same machine load; the medians give the ratio.
fn ratios() {
    let rounds: usize = std::env::var("EDDY_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(5);
    println!();
    println!(
        "windows: engine vs baseline over {RECORDS} records, median of {rounds} interleaved rounds"
    );
    println!(
        "{:<10} {:>5} {:>11} {:>13} {:>8} {:>20} {:>9}",
        "window", "keys", "engine ms", "baseline ms", "ratio", "engine vs tumbling", "outputs"
    );
    for keys in [1_000usize, 100_000] {
        let records = workload(keys);
        let mut tumbling_engine = Duration::ZERO;
        for shape in [
            Shape::Tumbling,
            Shape::Sliding,
            Shape::SlidingFine,
            Shape::Session,
        ] {
            if let (Shape::SlidingFine, 100_000) = (shape, keys) {
                // Sparse keys: ~30 outputs per record (and a ~30M-entry
                // baseline map); the row only shows the dense regime.
                continue;
            }
            if let Ok(only) = std::env::var("EDDY_BENCH_SHAPES")
                && !only.split(',').any(|name| name == shape.name())
            {
                continue;
            }
            let mut engine_times = Vec::new();
            let mut baseline_times = Vec::new();
            let mut outputs = 0;
            for _ in 0..rounds {
                let input = records.clone();
                let started = Instant::now();
                outputs = black_box(engine(shape, input));
                engine_times.push(started.elapsed());
                let input = records.clone();
                let started = Instant::now();
                black_box(baseline(shape, input));
                baseline_times.push(started.elapsed());
            }
            let (engine_time, baseline_time) = (median(engine_times), median(baseline_times));
            if let Shape::Tumbling = shape {
                tumbling_engine = engine_time;
            }
            println!(
                "{:<10} {:>5} {:>11.1} {:>13.1} {:>7.2}x {:>19.2}x {:>9}",
                shape.name(),
                format!("{}k", keys / 1_000),
                engine_time.as_secs_f64() * 1e3,
                baseline_time.as_secs_f64() * 1e3,
                baseline_time.as_secs_f64() / engine_time.as_secs_f64(),
                engine_time.as_secs_f64() / tumbling_engine.as_secs_f64(),
                outputs,
            );
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    windows(&mut criterion);
    criterion.final_summary();
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    if benchmarking && std::env::var("EDDY_BENCH_RATIOS").as_deref() != Ok("0") {
        ratios();
    }
}
