//! Simulation speed (the numbers are in BENCHMARKS.md): simulated records
//! per wall second and time compression for a produce/consume workload, and
//! seeds per minute for a 10,000-record run with faults.
//!
//! Workload: the seeded 3-broker cluster (RF 3, min.insync 2) with 1 ms
//! latency on every link, a 12-partition topic, and one worker host running
//! the real clients through `SimTransport`: an idempotent producer (acks=all,
//! linger 5 ms, Kafka's defaults otherwise) sending keyed records (8-byte
//! keys, 100-byte values) at a fixed simulated rate of 10,000 records/s
//! (10 per simulated ms), and a read_committed consumer assigned all 12
//! partitions, polling until it has read every record. The run checks that
//! every record is read exactly once.
//!
//! - `throughput`: 100,000 records (10 s of simulated production). Time
//!   compression = simulated seconds / wall second of the whole run
//!   (cluster start-up and topic creation included).
//! - `faults`: 10,000 records, with per seed a broker crash and restart, a
//!   leader move and a network partition (a broker cut from every node, or
//!   the worker cut from the brokers) while producing. Wall time per run and
//!   seeds per minute.
//! - for reference: turmoil alone stepping 5 idle hosts (the ceiling: a
//!   cluster is 5 hosts, controller + 3 brokers + the worker), and the idle
//!   cluster.
//!
//! `cargo bench --bench sim -- --noplot`: criterion's groups, then a table
//! from runs interleaved round by round (median of `EDDY_BENCH_ROUNDS`,
//! default 5; each round runs `EDDY_BENCH_FAULT_SEEDS` fault seeds, default
//! 10), which keeps the numbers comparable on a shared machine.
//! `EDDY_BENCH_RATIOS=0` skips the table; `EDDY_BENCH_PROFILE=<records>`
//! makes one throughput run of that many records and nothing else (for a
//! profiler). The results go to BENCHMARKS.md.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, NewTopic, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Transport,
};
use eddyline_sim::cluster::{ClusterConfig, ClusterHandle, SimCluster};
use eddyline_sim::faults::{Fault, FaultSchedule};
use eddyline_sim::world::{self, WorldSettings};
use eddyline_sim::{Seed, SimTransport};

const PARTITIONS: i32 = 12;
const RECORDS_PER_MS: u64 = 10;
const THROUGHPUT_RECORDS: u64 = 100_000;
const FAULT_RECORDS: u64 = 10_000;
const VALUE_BYTES: usize = 100;
const TOPIC: &str = "load";
/// The time-compression target of the simulator (issue #3).
const COMPRESSION_TARGET: f64 = 100.0;

/// What one run took.
#[derive(Clone, Copy, Debug)]
struct RunStats {
    wall: Duration,
    simulated_ms: u64,
    records: u64,
}

impl RunStats {
    fn compression(&self) -> f64 {
        self.simulated_ms as f64 / 1_000.0 / self.wall.as_secs_f64()
    }

    fn records_per_wall_s(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }
}

/// One-millisecond links and the fast timings (the benchmark measures how
/// fast the simulator runs a workload, and its history in BENCHMARKS.md was
/// taken with these timings; Kafka's would make the fault run's failover
/// stall longer, which measures Kafka's timeouts, not the simulator);
/// `EDDY_SIM_TRACE=1` echoes the trace and `EDDY_SIM_HASH=1` prints each
/// run's fingerprint (the library reads no environment).
fn cluster_config() -> ClusterConfig {
    let on = |name: &str| std::env::var_os(name).is_some_and(|value| value == "1");
    ClusterConfig {
        latency_min_ms: 1,
        latency_max_ms: 1,
        trace_echo: on("EDDY_SIM_TRACE"),
        print_run_fingerprint: on("EDDY_SIM_HASH"),
        ..ClusterConfig::default().with_fast_timings()
    }
}

async fn wait_ready(handle: &ClusterHandle) {
    while !handle.is_ready() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Appends `value` as exactly `width` decimal digits.
fn push_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Record `i`: key `k<7 digits>`, value `value-<10 digits>-xxx...`.
fn record(i: u64) -> ProducerRecord {
    let mut key = Vec::with_capacity(8);
    key.push(b'k');
    push_digits(&mut key, i % 10_007, 7);
    let mut value = Vec::with_capacity(VALUE_BYTES);
    value.extend_from_slice(b"value-");
    push_digits(&mut value, i, 10);
    value.push(b'-');
    value.resize(VALUE_BYTES, b'x');
    ProducerRecord {
        topic: TOPIC.to_string(),
        partition: None,
        key: Some(key),
        value: Some(value),
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

fn index_of(value: &[u8]) -> usize {
    std::str::from_utf8(&value[6..16])
        .expect("utf-8 values")
        .parse()
        .expect("numbered values")
}

/// The workload inside the worker host: produce `records` at the fixed
/// rate while a read_committed consumer reads them all.
async fn worker(
    handle: ClusterHandle,
    records: u64,
    read: Rc<Cell<u64>>,
) -> Result<(), Box<dyn std::error::Error>> {
    wait_ready(&handle).await;
    let transport = SimTransport::new(handle.bootstrap());
    let admin = transport.admin().await?;
    admin
        .create_topic(&NewTopic {
            name: TOPIC.to_string(),
            partitions: PARTITIONS,
            replication_factor: 3,
            configs: Vec::new(),
        })
        .await?;
    let mut producer = transport.producer(&ProducerConfig::new("p", None)).await?;
    let mut consumer = transport.consumer(&ConsumerConfig::new("c", None)).await?;
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    consumer.assign(&all).await?;
    let producing = tokio::task::spawn_local(async move {
        let mut period = tokio::time::interval(Duration::from_millis(1));
        let mut next = 0;
        while next < records {
            period.tick().await;
            for _ in 0..RECORDS_PER_MS.min(records - next) {
                // The delivery is checked by the consumer reading it.
                drop(producer.send(record(next))?);
                next += 1;
            }
        }
        producer.flush().await?;
        Ok::<_, eddyline_engine::transport::TransportError>(())
    });
    let mut seen = vec![false; records as usize];
    let mut count = 0;
    while count < records {
        for event in consumer.poll(500, Duration::from_millis(100)).await? {
            if let ConsumerEvent::Message(message) = event {
                let index = index_of(message.value.as_deref().expect("a value"));
                assert!(
                    !std::mem::replace(&mut seen[index], true),
                    "record {index} read twice (seed {})",
                    handle.seed()
                );
                count += 1;
            }
        }
    }
    read.set(count);
    producing.await??;
    Ok(())
}

/// Per seed: a broker crash and restart, a leader move and a network
/// partition, all while the producer runs (it produces for 1 s).
fn faults(cluster: &SimCluster) -> FaultSchedule {
    let mut rng = cluster.seed().derive("bench/faults").rng();
    let broker = rng.below(3) as i32;
    let crash_at = rng.range_u64(200, 500);
    let mut events = vec![
        (crash_at, Fault::CrashBroker(broker)),
        (
            crash_at + rng.range_u64(200, 500),
            Fault::RestartBroker(broker),
        ),
        (
            rng.range_u64(300, 900),
            Fault::MoveLeader {
                partition: TopicPartition::new(TOPIC, rng.below(PARTITIONS as u64) as i32),
                to: None,
            },
        ),
    ];
    let (a, b): (Vec<String>, Vec<String>) = if rng.chance(0.5) {
        let cut = format!("broker-{}", rng.below(3));
        let others = cluster
            .nodes()
            .iter()
            .filter(|node| **node != cut)
            .cloned()
            .collect();
        (vec![cut], others)
    } else {
        (vec!["worker".to_string()], cluster.bootstrap())
    };
    let cut_at = rng.range_u64(500, 1_000);
    let heal_at = cut_at + rng.range_u64(100, 400);
    events.push((
        cut_at,
        Fault::Partition {
            a: a.clone(),
            b: b.clone(),
        },
    ));
    events.push((heal_at, Fault::Heal { a, b }));
    FaultSchedule::listed(events)
}

fn run(seed: u64, records: u64, with_faults: bool) -> RunStats {
    let mut cluster = SimCluster::new(Seed::new(seed), cluster_config()).expect("valid config");
    let handle = cluster.handle();
    let read = Rc::new(Cell::new(0));
    {
        let read = read.clone();
        cluster.client("worker", worker(handle, records, read));
    }
    if with_faults {
        let schedule = faults(&cluster);
        cluster.schedule(schedule);
    }
    let started = Instant::now();
    if let Err(error) = cluster.run() {
        panic!("{error}\n{}", error.trace.excerpt.join("\n"));
    }
    let wall = started.elapsed();
    assert_eq!(read.get(), records, "seed {seed}");
    RunStats {
        wall,
        simulated_ms: cluster.elapsed_ms(),
        records,
    }
}

/// turmoil alone: 5 hosts that never wake, for 10 s of simulated time.
fn turmoil_floor() -> RunStats {
    let settings = WorldSettings {
        seed: Seed::new(1),
        epoch_ms: world::DEFAULT_EPOCH_MS,
        tick_ms: 1,
        duration_limit_ms: 60_000,
        latency_min_ms: 1,
        latency_max_ms: 1,
        tcp_capacity: 64,
    };
    let mut sim = world::build_sim(&settings).expect("valid settings");
    for i in 0..4 {
        sim.host(format!("idle-{i}").as_str(), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    sim.client("client", async {
        tokio::time::sleep(Duration::from_millis(10_000)).await;
        Ok(())
    });
    let started = Instant::now();
    sim.run().expect("idle hosts run");
    RunStats {
        wall: started.elapsed(),
        simulated_ms: sim.elapsed().as_millis() as u64,
        records: 0,
    }
}

/// The cluster with an idle worker, for 10 s of simulated time.
fn idle_cluster() -> RunStats {
    let mut cluster = SimCluster::new(Seed::new(3), cluster_config()).expect("valid config");
    let handle = cluster.handle();
    cluster.client("worker", async move {
        wait_ready(&handle).await;
        tokio::time::sleep(Duration::from_millis(10_000)).await;
        Ok(())
    });
    let started = Instant::now();
    cluster.run().expect("an idle cluster runs");
    RunStats {
        wall: started.elapsed(),
        simulated_ms: cluster.elapsed_ms(),
        records: 0,
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(THROUGHPUT_RECORDS));
    group.bench_function("throughput/10k-per-s/100k-records", |b| {
        b.iter(|| black_box(run(1, THROUGHPUT_RECORDS, false)))
    });
    group.throughput(Throughput::Elements(FAULT_RECORDS));
    let mut seed = 1_000;
    group.bench_function("faults/10k-records", |b| {
        b.iter(|| {
            seed += 1;
            black_box(run(seed, FAULT_RECORDS, true))
        })
    });
    group.finish();
}

fn median(mut samples: Vec<RunStats>) -> RunStats {
    samples.sort_by_key(|stats| stats.wall);
    samples[samples.len() / 2]
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// The runs alternate round after round, so that all see the same machine
/// load; medians per row.
fn ratios() {
    let rounds = env_count("EDDY_BENCH_ROUNDS", 5);
    let fault_seeds = env_count("EDDY_BENCH_FAULT_SEEDS", 10);
    let mut floor = Vec::new();
    let mut idle = Vec::new();
    let mut throughput = Vec::new();
    let mut faulted = Vec::new();
    let mut fault_rounds = Vec::new();
    for round in 0..rounds {
        floor.push(turmoil_floor());
        idle.push(idle_cluster());
        throughput.push(run(1, THROUGHPUT_RECORDS, false));
        let started = Instant::now();
        for i in 0..fault_seeds {
            faulted.push(run(
                (round * fault_seeds + i) as u64 + 1,
                FAULT_RECORDS,
                true,
            ));
        }
        fault_rounds.push(started.elapsed() / fault_seeds as u32);
    }
    let (floor, idle, throughput) = (median(floor), median(idle), median(throughput));
    let fault_median = median(faulted.clone());
    fault_rounds.sort();
    let per_seed = fault_rounds[fault_rounds.len() / 2];
    let worst = faulted.iter().map(|s| s.wall).max().expect("runs");
    println!();
    println!(
        "sim: 3 brokers, {PARTITIONS} partitions, RF 3, 1 ms latency; median of {rounds} \
         interleaved rounds ({fault_seeds} fault seeds per round)"
    );
    println!(
        "{:<34} {:>8} {:>13} {:>9} {:>12} {:>15} {:>9}",
        "run", "records", "simulated ms", "wall ms", "compression", "records/wall s", "target"
    );
    let row = |name: &str, stats: &RunStats, target: &str| {
        let rate = if stats.records > 0 {
            format!("{:.0}", stats.records_per_wall_s())
        } else {
            "-".to_string()
        };
        println!(
            "{:<34} {:>8} {:>13} {:>9.1} {:>11.1}x {:>15} {:>9}",
            name,
            stats.records,
            stats.simulated_ms,
            stats.wall.as_secs_f64() * 1e3,
            stats.compression(),
            rate,
            target
        );
    };
    row("turmoil alone, 5 idle hosts", &floor, "ceiling");
    row("idle cluster + idle worker", &idle, "-");
    row(
        "10k records/s, 100k records",
        &throughput,
        &format!(">= {COMPRESSION_TARGET:.0}x"),
    );
    row("10k records with faults (median)", &fault_median, "< 1 s");
    println!(
        "faults: {:.1} ms wall per seed (worst {:.1} ms): {:.0} seeds per minute",
        per_seed.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        60.0 / per_seed.as_secs_f64()
    );
    println!(
        "throughput: {:.2}x of the target compression, {:.2}x of turmoil's ceiling",
        throughput.compression() / COMPRESSION_TARGET,
        throughput.compression() / floor.compression()
    );
}

fn main() {
    if let Ok(records) = std::env::var("EDDY_BENCH_PROFILE") {
        // One throughput run (for a profiler), then nothing else.
        let records = records.parse().expect("EDDY_BENCH_PROFILE=<records>");
        let stats = run(1, records, false);
        println!(
            "{records} records: {} ms simulated in {:.1} ms wall: {:.1}x",
            stats.simulated_ms,
            stats.wall.as_secs_f64() * 1e3,
            stats.compression()
        );
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    if benchmarking && std::env::var("EDDY_BENCH_RATIOS").as_deref() != Ok("0") {
        ratios();
    }
}
