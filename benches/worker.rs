//! The worker's cost of checkpoints: the same job over the same input with
//! a checkpoint every second of processing time, and with checkpoints off
//! (one at the end), through the real driver and worker core over the
//! in-memory transport and checkpoint store.
//!
//! Workload (seeded): 2,000,000 JSON records `{"key", "ts", "value"}` on one
//! partition, keys uniform over 100,000 users, event time advancing 1 ms
//! every 1,000 records, so that all 100,000 keys stay in one open 1-hour
//! tumbling window the whole run: every checkpoint snapshots 100k-key
//! window state. The job counts and sums per key (exactly-once delivery,
//! transactions on the in-memory transport).
//!
//! `cargo bench --bench worker -- --noplot`: the two runs interleaved
//! round by round (median of `EDDY_BENCH_ROUNDS`, default 3), their
//! throughput ratio, checkpoints taken, and the snapshot size and time of a
//! 100k-key task. The figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use eddyline_engine::checkpoint::MemoryStore;
use eddyline_engine::job::{AggregateFunction, AggregateSpec, Job, JobWindowSpec};
use eddyline_engine::memory::MemoryKafka;
use eddyline_engine::transport::{
    Admin, NewTopic, Producer, ProducerConfig, ProducerRecord, TopicPartition, Transport,
};
use eddyline_engine::worker::driver::{self, Clients};
use eddyline_engine::worker::{
    Command, Faithful, JobLogic, Stopped, TaskLogic, WorkerCore, WorkerStats,
};
use eddyline_sim::Seed;

const RECORDS: usize = 2_000_000;
const KEYS: u64 = 100_000;
const INPUT: &str = "events";

fn job(checkpoint_interval_ms: u64) -> Job {
    Job::builder("bench-window")
        .input([INPUT])
        .key("key")
        .event_time("ts")
        .window(JobWindowSpec::tumbling(3_600_000))
        .aggregate(AggregateSpec::count("count"))
        .aggregate(AggregateSpec::of("sum", AggregateFunction::Sum, "value"))
        .output("out")
        .late_topic("late")
        .dead_letter_topic("dead")
        .checkpoint_interval_ms(checkpoint_interval_ms)
        .transaction_timeout_ms(checkpoint_interval_ms.saturating_mul(2).max(120_000))
        .build()
        .expect("a valid job")
}

fn workload() -> Vec<ProducerRecord> {
    let mut rng = Seed::new(0x5eed).derive("bench/worker").rng();
    let base_ms = 1_700_000_000_000_i64;
    (0..RECORDS)
        .map(|i| {
            let key = format!("user-{}", rng.below(KEYS));
            let ts = base_ms + (i / 1_000) as i64;
            let value = format!(r#"{{"key":"{key}","ts":{ts},"value":{}}}"#, rng.below(100));
            ProducerRecord {
                topic: INPUT.into(),
                partition: Some(0),
                key: Some(key.into_bytes()),
                value: Some(value.into_bytes()),
                timestamp_ms: Some(ts),
                headers: Vec::new(),
            }
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

async fn loaded(records: &[ProducerRecord]) -> MemoryKafka {
    let kafka = MemoryKafka::new();
    let admin = kafka.admin().await.expect("admin");
    for topic in [INPUT, "out", "late", "dead"] {
        let new = NewTopic {
            name: topic.into(),
            partitions: 1,
            replication_factor: 1,
            configs: Vec::new(),
        };
        admin.create_topic(&new).await.expect("create");
    }
    let config = ProducerConfig::new("feeder", None);
    let mut producer = kafka.producer(&config).await.expect("producer");
    for record in records {
        drop(producer.send(record.clone()).expect("send"));
    }
    kafka
}

/// The wall time of each checkpoint of a run, from the driver's commands:
/// a command's time runs from the driver being handed it to the driver
/// being handed the next one (its call, and the core's handling of the
/// answer). A checkpoint's time is that of its commands (snapshot writes,
/// the transaction's begin, sends, offsets and commit, collects) plus,
/// for the poll whose answer began it (the snapshots are taken then), its
/// time beyond the median poll's. The last checkpoint of a run also fires
/// every window (end of input) and sends their results.
#[derive(Clone, Debug, Default)]
struct Spent {
    checkpoints: Vec<Duration>,
    /// The run's time on a CPU (see [`cpu_time`]).
    cpu: Option<Duration>,
}

impl Spent {
    /// Every checkpoint but the run's last, in ms.
    fn before_last_ms(&self) -> Vec<f64> {
        let before = &self.checkpoints[..self.checkpoints.len().saturating_sub(1)];
        before
            .iter()
            .map(|spent| spent.as_secs_f64() * 1e3)
            .collect()
    }

    fn last_ms(&self) -> f64 {
        self.checkpoints
            .last()
            .map_or(0.0, |spent| spent.as_secs_f64() * 1e3)
    }
}

/// What [`Spent`] counts a command as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Poll,
    Checkpoint,
    Other,
}

fn kind(command: &Command) -> Kind {
    match command {
        Command::Poll { .. } => Kind::Poll,
        Command::WriteSnapshot(..)
        | Command::BeginTransaction
        | Command::Send(_)
        | Command::SendOffsets { .. }
        | Command::CommitTransaction
        | Command::Collect { .. } => Kind::Checkpoint,
        _ => Kind::Other,
    }
}

/// The time this thread has spent on a CPU (Linux: the first field of
/// `/proc/thread-self/schedstat`, in ns); `None` elsewhere. On a shared
/// machine it leaves out the time the run waited for a CPU, which the wall
/// time counts.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One bounded run of the job over the loaded input: wall time, stats and
/// where the time went.
fn run(records: &[ProducerRecord], checkpoint_interval_ms: u64) -> (Duration, WorkerStats, Spent) {
    runtime().block_on(async {
        let kafka = loaded(records).await;
        let job = job(checkpoint_interval_ms);
        let config = job.worker_config("bench", 1);
        let mut core = WorkerCore::new(job, config, Faithful).expect("a worker");
        core.set_end_offsets([(TopicPartition::new(INPUT, 0), records.len() as i64)].into());
        let mut store = MemoryStore::new();
        let mut stats = WorkerStats::default();
        let mut previous: Option<(Instant, Kind)> = None;
        let mut polls = Vec::new();
        // Per checkpoint: the time of the poll that began it, of its
        // commands.
        let mut checkpoints: Vec<(Duration, Duration)> = Vec::new();
        let cpu_started = cpu_time();
        let started = Instant::now();
        let stopped = driver::run(
            &kafka,
            &mut store,
            core,
            Clients::new("bench"),
            |core, command| {
                let now = Instant::now();
                let next = kind(command);
                if let Some((then, was)) = previous {
                    let spent = now - then;
                    match was {
                        Kind::Poll if next == Kind::Checkpoint => {
                            checkpoints.push((spent, Duration::ZERO));
                        }
                        Kind::Poll => polls.push(spent),
                        Kind::Checkpoint => {
                            if let Some((_, commands)) = checkpoints.last_mut() {
                                *commands += spent;
                            }
                        }
                        Kind::Other => {}
                    }
                }
                previous = Some((now, next));
                stats = core.stats();
            },
        )
        .await
        .expect("the run");
        let wall = started.elapsed();
        let cpu = cpu_time().zip(cpu_started).map(|(end, start)| end - start);
        polls.sort();
        let median_poll = polls.get(polls.len() / 2).copied().unwrap_or_default();
        let spent = Spent {
            checkpoints: checkpoints
                .into_iter()
                .map(|(poll, commands)| poll.saturating_sub(median_poll) + commands)
                .collect(),
            cpu,
        };
        assert_eq!(stopped, Stopped::Finished);
        assert_eq!(
            stats.records_in,
            records.len() as u64,
            "every record processed"
        );
        (wall, stats, spent)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Snapshot size and time of one task holding `KEYS` keys' windows.
fn snapshot_figures(records: &[ProducerRecord]) -> (usize, Duration) {
    let job = job(1_000);
    let mut task = job.new_task(0, Duration::ZERO).expect("a task");
    let mut out = Vec::new();
    for (offset, record) in records.iter().take(1_000_000).enumerate() {
        let message = eddyline_engine::transport::Message {
            topic: INPUT.into(),
            partition: 0,
            offset: offset as i64,
            key: record.key.clone().map(Into::into),
            value: record.value.clone().map(Into::into),
            timestamp_ms: record.timestamp_ms.unwrap_or(0),
            headers: Vec::new(),
        };
        task.process(&message, Duration::ZERO, &mut out)
            .expect("process");
        out.clear();
    }
    let rounds = 5;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes = black_box(task.snapshot(Duration::ZERO).expect("snapshot")).len();
    }
    (bytes, started.elapsed() / rounds)
}

fn main() {
    let rounds: usize = std::env::var("EDDY_BENCH_ROUNDS").ok().map_or(3, |text| {
        text.parse().expect("EDDY_BENCH_ROUNDS must be a number")
    });
    let records = workload();
    let mut with = Vec::new();
    let mut without = Vec::new();
    let (mut checkpoints_with, mut checkpoints_without) = (0, 0);
    let mut checkpoint_ms = Vec::new();
    let (mut cpu_with, mut cpu_without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (wall_on, stats_on, spent_on) = run(&records, 1_000);
        let (wall_off, stats_off, spent_off) = run(&records, 24 * 3_600_000);
        checkpoints_with = stats_on.checkpoints_committed;
        checkpoints_without = stats_off.checkpoints_committed;
        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        eprintln!(
            "round {round}: 1 s checkpoints {:.0} ms ({} checkpoints, {} MB of snapshots; checkpoints {:.0?} ms, the last {:.0} ms), off {:.0} ms (its checkpoint {:.0} ms)",
            ms(wall_on),
            stats_on.checkpoints_committed,
            stats_on.snapshot_bytes_written / 1_000_000,
            spent_on.before_last_ms(),
            spent_on.last_ms(),
            ms(wall_off),
            spent_off.last_ms(),
        );
        checkpoint_ms.extend(spent_on.before_last_ms());
        if let (Some(on), Some(off)) = (spent_on.cpu, spent_off.cpu) {
            eprintln!(
                "round {round}: on a CPU: 1 s checkpoints {:.0} ms, off {:.0} ms",
                ms(on),
                ms(off)
            );
            cpu_with.push(RECORDS as f64 / on.as_secs_f64());
            cpu_without.push(RECORDS as f64 / off.as_secs_f64());
        }
        with.push(RECORDS as f64 / wall_on.as_secs_f64());
        without.push(RECORDS as f64 / wall_off.as_secs_f64());
    }
    let (with, without) = (median(with), median(without));
    let (bytes, time) = snapshot_figures(&records);
    println!("| run | records/s | checkpoints |");
    println!("| --- | ---: | ---: |");
    println!("| checkpoints every 1 s | {with:.0} | {checkpoints_with} |");
    println!("| checkpoints off (one at the end) | {without:.0} | {checkpoints_without} |");
    println!(
        "| **ratio** (target ≥ 0.95) | **{:.3}** | |",
        with / without
    );
    if !cpu_with.is_empty() {
        let (with, without) = (median(cpu_with), median(cpu_without));
        println!(
            "| on-CPU time: checkpoints every 1 s / off | {with:.0} / {without:.0} | ratio {:.3} |",
            with / without
        );
    }
    if !checkpoint_ms.is_empty() {
        println!();
        println!(
            "a checkpoint of 100k-key state inside the run (1 s checkpoints, all rounds, the runs' last ones left out): median {:.1} ms over {}",
            median(checkpoint_ms.clone()),
            checkpoint_ms.len()
        );
    }
    println!();
    println!(
        "snapshot of a task with {KEYS} keys' windows: {:.1} MB, {:.1} ms",
        bytes as f64 / 1e6,
        time.as_secs_f64() * 1e3
    );
}
