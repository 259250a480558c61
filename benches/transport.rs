//! The real-Kafka transport against bare rdkafka, on a local broker.
//!
//! `EDDY_KAFKA_BOOTSTRAP=127.0.0.1:PORT cargo bench --bench transport`
//! (start a broker with `scripts/kafka start`). Without the variable the
//! bench says so and measures nothing.
//!
//! Measured, in records per second (100-byte values, 8-byte keys, one
//! partition, acks=all, idempotent, linger 5 ms, read_committed):
//! - produce: send N records and flush, through the seam vs bare rdkafka;
//! - consume: read N records from the start of a partition, through the
//!   seam's `poll` vs `BaseConsumer::poll`;
//! - transactional produce committing every 100 ms vs idempotent produce,
//!   both through the seam.
//!
//! Each measurement starts on a warm client: producers have sent and flushed
//! one record first (producer id, metadata and connection are set up), and a
//! consumer's clock starts at its first record, so that client start-up
//! (hundreds of ms, the same for both) does not hide the per-record cost.
//!
//! Criterion reports each; the ratios come from a separate interleaved run
//! (A, B, A, B, ...; the median of each) printed at the end, because
//! criterion does not compare two functions. With each ratio, the CPU time
//! per record of the whole runs (client start-up and close included) and of
//! the timed spans only (every thread of the process, from
//! /proc/self/task/*/schedstat).
//!
//! `EDDY_BENCH_RATIOS_ONLY=1`: only the interleaved ratios.
//! `EDDY_BENCH_PROFILE_CONSUME=seam|detach|borrow`: one consume loop only,
//! repeated, for a profiler.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, NewTopic, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Transport,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Runtime;

const PRODUCE_RECORDS: usize = 50_000;
const CONSUME_RECORDS: usize = 100_000;
const VALUE_BYTES: usize = 100;
const TRANSACTION_COMMIT_INTERVAL: Duration = Duration::from_millis(100);
const RATIO_ROUNDS: usize = 7;

struct Bench {
    bootstrap: String,
    transport: KafkaTransport,
    runtime: Runtime,
    run: String,
    topics: u32,
}

fn value() -> Vec<u8> {
    vec![b'x'; VALUE_BYTES]
}

fn key(i: usize) -> Vec<u8> {
    format!("{:08}", i % 1000).into_bytes()
}

impl Bench {
    fn topic(&mut self, name: &str) -> String {
        self.topics += 1;
        let topic = format!("bench-{name}-{}-{}", self.run, self.topics);
        let transport = self.transport.clone();
        let created = topic.clone();
        self.runtime.block_on(async move {
            let admin = transport.admin().await.expect("admin");
            admin
                .create_topic(&NewTopic {
                    name: created,
                    partitions: 1,
                    replication_factor: 1,
                    configs: Vec::new(),
                })
                .await
                .expect("create topic");
        });
        topic
    }

    fn seam_produce(&mut self, topic: &str, records: usize) -> Timed {
        let transport = self.transport.clone();
        let topic = topic.to_string();
        self.runtime.block_on(async move {
            let mut producer = transport
                .producer(&ProducerConfig::new("bench-seam", None))
                .await
                .expect("producer");
            let value = value();
            // Warm up (producer id, metadata, connection) off the clock.
            producer
                .send(ProducerRecord {
                    topic: topic.clone(),
                    partition: Some(0),
                    key: Some(key(0)),
                    value: Some(value.clone()),
                    timestamp_ms: None,
                    headers: Vec::new(),
                })
                .expect("send")
                .await
                .expect("warm-up delivery");
            // The records exist before the clock starts, as the engine's do.
            let batch = records_for(&topic, records, &value);
            let start = Timer::start();
            for record in batch {
                drop(producer.send(record).expect("send"));
            }
            producer.flush().await.expect("flush");
            start.stop()
        })
    }

    fn seam_produce_transactional(&mut self, topic: &str, records: usize) -> Timed {
        let transport = self.transport.clone();
        let topic = topic.to_string();
        let id = format!("bench-txn-{}-{}", self.run, self.topics);
        self.runtime.block_on(async move {
            let mut producer = transport
                .producer(&ProducerConfig::new("bench-txn", Some(id)))
                .await
                .expect("producer");
            producer.init_transactions().await.expect("init");
            let value = value();
            // Warm up (metadata, connection, first AddPartitionsToTxn) off the clock.
            producer.begin_transaction().await.expect("begin");
            producer
                .send(ProducerRecord {
                    topic: topic.clone(),
                    partition: Some(0),
                    key: Some(key(0)),
                    value: Some(value.clone()),
                    timestamp_ms: None,
                    headers: Vec::new(),
                })
                .expect("send");
            producer.commit_transaction().await.expect("commit");
            let batch = records_for(&topic, records, &value);
            let start = Timer::start();
            producer.begin_transaction().await.expect("begin");
            let mut began = Instant::now();
            for record in batch {
                drop(producer.send(record).expect("send"));
                if began.elapsed() >= TRANSACTION_COMMIT_INTERVAL {
                    producer.commit_transaction().await.expect("commit");
                    producer.begin_transaction().await.expect("begin");
                    began = Instant::now();
                }
            }
            producer.commit_transaction().await.expect("commit");
            start.stop()
        })
    }

    fn bare_producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "bench-bare")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("bare producer")
    }

    fn bare_produce(&mut self, topic: &str, records: usize) -> Timed {
        let producer = self.bare_producer();
        let value = value();
        // Warm up (producer id, metadata, connection) off the clock.
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key(&key(0))
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer
            .flush(Duration::from_secs(30))
            .expect("warm-up flush");
        let keys: Vec<Vec<u8>> = (0..records).map(key).collect();
        let start = Timer::start();
        for key in &keys {
            let mut record = BaseRecord::to(topic).partition(0).key(key).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, returned)) => {
                        record = returned;
                        producer.poll(Duration::from_millis(1));
                    }
                }
            }
        }
        // Wait for every acknowledgement the way the seam's flush does
        // (rdkafka's own flush re-checks only every 100 ms).
        while producer.in_flight_count() > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        start.stop()
    }

    fn seam_consume(&mut self, topic: &str, records: usize) -> Timed {
        let transport = self.transport.clone();
        let topic = topic.to_string();
        self.runtime.block_on(async move {
            let mut start = None;
            let mut consumer = transport
                .consumer(&ConsumerConfig::new("bench-seam-reader", None))
                .await
                .expect("consumer");
            consumer
                .assign(&[TopicPartition::new(&topic, 0)])
                .await
                .expect("assign");
            let mut read = 0;
            let mut bytes = 0;
            while read < records {
                for event in consumer
                    .poll(1_000, Duration::from_millis(100))
                    .await
                    .expect("poll")
                {
                    if let ConsumerEvent::Message(message) = event {
                        start.get_or_insert_with(Timer::start);
                        read += 1;
                        bytes += message.value.map_or(0, |v| v.len());
                    }
                }
            }
            black_box(bytes);
            let elapsed = start.expect("records were read").stop();
            consumer.close().await.expect("close");
            elapsed
        })
    }

    /// `detach`: copy each record out of librdkafka's buffer (an
    /// `OwnedMessage`), the work the seam's owned `Message` implies.
    fn bare_consume(&mut self, topic: &str, records: usize, detach: bool) -> Timed {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "bench-bare-reader")
            // The seam's settings: no offset store, no auto commit.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("bare consumer");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&list).expect("assign");
        let mut read = 0;
        let mut bytes = 0;
        let mut start = None;
        while read < records {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("message");
                // The clock starts at the first record (see the module doc).
                start.get_or_insert_with(Timer::start);
                read += 1;
                if detach {
                    let owned = message.detach();
                    bytes += owned.payload().map_or(0, <[u8]>::len);
                } else {
                    bytes += message.payload().map_or(0, <[u8]>::len);
                }
            }
        }
        black_box(bytes);
        start.expect("records were read").stop()
    }
}

/// The records of one run, built before the clock starts (as the engine's
/// exist before it sends them). Fewer than librdkafka's queue holds
/// (`queue.buffering.max.messages`, 100000), so a send never meets a full
/// queue.
fn records_for(topic: &str, records: usize, value: &[u8]) -> Vec<ProducerRecord> {
    assert!(records < 100_000, "a run fits librdkafka's queue");
    (0..records)
        .map(|i| ProducerRecord {
            topic: topic.to_string(),
            partition: Some(0),
            key: Some(key(i)),
            value: Some(value.to_vec()),
            timestamp_ms: None,
            headers: Vec::new(),
        })
        .collect()
}

/// A timed span: its wall time and the CPU time every thread of the
/// process spent in it.
#[derive(Clone, Copy)]
struct Timed {
    wall: Duration,
    cpu: Duration,
}

/// The start of a timed span.
struct Timer {
    wall: Instant,
    cpu: Duration,
}

impl Timer {
    fn start() -> Self {
        Self {
            cpu: threads_cpu(),
            wall: Instant::now(),
        }
    }

    fn stop(&self) -> Timed {
        let wall = self.wall.elapsed();
        Timed {
            wall,
            cpu: threads_cpu().saturating_sub(self.cpu),
        }
    }
}

/// The CPU time of the process's live threads (librdkafka's included), in
/// ns from /proc/self/task/*/schedstat: unlike /proc/self/stat's 10 ms
/// ticks, precise enough for a span of 100 ms, so that client start-up and
/// close can be left out of it as they are of the wall time. A thread that
/// ends inside a span loses its time (clients are closed after theirs).
fn threads_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0_u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|on_cpu| on_cpu.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

fn per_second(records: usize, elapsed: Duration) -> f64 {
    records as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU time this process has used so far (all threads, librdkafka's too),
/// from /proc (Linux; clock ticks of 10 ms). Unlike wall time it hardly
/// depends on what else runs on the machine.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the
    // 14th field and stime the 15th of the whole line.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// What interleaved runs of `a` and `b` measured: the median rate of
/// each; the CPU time per record of whole runs (client start-up and close
/// included) and of the timed spans only.
struct Ratios {
    rates: (f64, f64),
    run_cpu_ns: (f64, f64),
    span_cpu_ns: (f64, f64),
    /// The median over the rounds of each round's a/b rate ratio, and of
    /// its b/a timed CPU ratio: a round's two runs are seconds apart, so
    /// a burst of load elsewhere on the machine moves fewer of these than
    /// of the medians of each side.
    paired: (f64, f64),
}

/// Interleaved runs of `a` and `b` (A, B, A, B, ...).
fn interleaved(
    bench: &mut Bench,
    records: usize,
    mut a: impl FnMut(&mut Bench) -> Timed,
    mut b: impl FnMut(&mut Bench) -> Timed,
) -> Ratios {
    let mut rates_a = Vec::new();
    let mut rates_b = Vec::new();
    let mut cpu_a = Duration::ZERO;
    let mut cpu_b = Duration::ZERO;
    let mut span_a = Duration::ZERO;
    let mut span_b = Duration::ZERO;
    let mut paired_wall = Vec::new();
    let mut paired_cpu = Vec::new();
    for _ in 0..RATIO_ROUNDS {
        let before = process_cpu();
        let timed_a = a(bench);
        let middle = process_cpu();
        let timed_b = b(bench);
        cpu_a += middle - before;
        cpu_b += process_cpu() - middle;
        rates_a.push(per_second(records, timed_a.wall));
        rates_b.push(per_second(records, timed_b.wall));
        span_a += timed_a.cpu;
        span_b += timed_b.cpu;
        paired_wall.push(timed_b.wall.as_secs_f64() / timed_a.wall.as_secs_f64());
        paired_cpu.push(timed_b.cpu.as_secs_f64() / timed_a.cpu.as_secs_f64().max(1e-9));
    }
    let per_record_ns = |cpu: Duration| cpu.as_nanos() as f64 / (records * RATIO_ROUNDS) as f64;
    Ratios {
        rates: (median(rates_a), median(rates_b)),
        run_cpu_ns: (per_record_ns(cpu_a), per_record_ns(cpu_b)),
        span_cpu_ns: (per_record_ns(span_a), per_record_ns(span_b)),
        paired: (median(paired_wall), median(paired_cpu)),
    }
}

fn report(what: &str, a: &str, b: &str, ratios: &Ratios, note: &str) {
    let Ratios {
        rates,
        run_cpu_ns: cpu_ns,
        span_cpu_ns: span_ns,
        paired,
    } = ratios;
    println!(
        "transport ratio: {what:<12} {a} {:>9.0} rec/s {:>6.0} ns CPU/rec ({:>4.0} timed) | {b} {:>9.0} rec/s {:>6.0} ns CPU/rec ({:>4.0} timed) | wall ratio {:.2}, CPU ratio (b/a) {:.2}, timed CPU ratio {:.2}; per-round medians: wall {:.2}, timed CPU {:.2} {note}",
        rates.0,
        cpu_ns.0,
        span_ns.0,
        rates.1,
        cpu_ns.1,
        span_ns.1,
        rates.0 / rates.1,
        cpu_ns.1 / cpu_ns.0,
        span_ns.1 / span_ns.0,
        paired.0,
        paired.1,
    );
}

fn main() {
    let Ok(bootstrap) = std::env::var("EDDY_KAFKA_BOOTSTRAP") else {
        println!(
            "transport bench: EDDY_KAFKA_BOOTSTRAP is not set, so nothing was measured. \
             Start a broker with `scripts/kafka start` and run \
             `EDDY_KAFKA_BOOTSTRAP=127.0.0.1:PORT cargo bench --bench transport`."
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let transport = KafkaTransport::new(KafkaConfig::new(bootstrap.clone()));
    runtime
        .block_on(transport.check_connection())
        .unwrap_or_else(|e| panic!("transport bench: {e}"));
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    let mut bench = Bench {
        bootstrap,
        transport,
        runtime,
        run,
        topics: 0,
    };

    // A topic to read from, filled once.
    let filled = bench.topic("consume");
    bench.bare_produce(&filled, CONSUME_RECORDS);

    // One consume loop only, repeated, for a profiler (`perf record`):
    // `seam`, `detach` or `borrow`.
    if let Ok(which) = std::env::var("EDDY_BENCH_PROFILE_CONSUME") {
        for _ in 0..RATIO_ROUNDS * 2 {
            match which.as_str() {
                "seam" => bench.seam_consume(&filled, CONSUME_RECORDS),
                "detach" => bench.bare_consume(&filled, CONSUME_RECORDS, true),
                "borrow" => bench.bare_consume(&filled, CONSUME_RECORDS, false),
                other => panic!("EDDY_BENCH_PROFILE_CONSUME={other}: seam, detach or borrow"),
            };
        }
        return;
    }

    let mut criterion = Criterion::default().configure_from_args();
    if std::env::var("EDDY_BENCH_RATIOS_ONLY").is_err() {
        let mut group = criterion.benchmark_group("transport/produce");
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(PRODUCE_RECORDS as u64));
        let topic = bench.topic("produce");
        group.bench_function("seam_idempotent", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| bench.seam_produce(&topic, PRODUCE_RECORDS).wall)
                    .sum()
            })
        });
        group.bench_function("bare_rdkafka_idempotent", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| bench.bare_produce(&topic, PRODUCE_RECORDS).wall)
                    .sum()
            })
        });
        group.bench_function("seam_transactional_commit_every_100ms", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        bench
                            .seam_produce_transactional(&topic, PRODUCE_RECORDS)
                            .wall
                    })
                    .sum()
            })
        });
        group.finish();
        let mut group = criterion.benchmark_group("transport/consume");
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(CONSUME_RECORDS as u64));
        group.bench_function("seam_read_committed", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| bench.seam_consume(&filled, CONSUME_RECORDS).wall)
                    .sum()
            })
        });
        group.bench_function("bare_rdkafka_read_committed_detached", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| bench.bare_consume(&filled, CONSUME_RECORDS, true).wall)
                    .sum()
            })
        });
        group.bench_function("bare_rdkafka_read_committed_borrowed", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| bench.bare_consume(&filled, CONSUME_RECORDS, false).wall)
                    .sum()
            })
        });
        group.finish();
    }
    criterion.final_summary();

    // The ratios, from interleaved runs.
    let topic = bench.topic("ratio");
    let ratios = interleaved(
        &mut bench,
        PRODUCE_RECORDS,
        |b| b.seam_produce(&topic, PRODUCE_RECORDS),
        |b| b.bare_produce(&topic, PRODUCE_RECORDS),
    );
    report(
        "produce",
        "seam",
        "bare rdkafka",
        &ratios,
        "(target >= 0.9)",
    );
    let ratios = interleaved(
        &mut bench,
        CONSUME_RECORDS,
        |b| b.seam_consume(&filled, CONSUME_RECORDS),
        |b| b.bare_consume(&filled, CONSUME_RECORDS, true),
    );
    report(
        "consume",
        "seam",
        "bare rdkafka (detached)",
        &ratios,
        "(target >= 0.9)",
    );
    let ratios = interleaved(
        &mut bench,
        CONSUME_RECORDS,
        |b| b.seam_consume(&filled, CONSUME_RECORDS),
        |b| b.bare_consume(&filled, CONSUME_RECORDS, false),
    );
    report(
        "consume",
        "seam",
        "bare rdkafka (borrowed, no copy)",
        &ratios,
        "",
    );
    let ratios = interleaved(
        &mut bench,
        PRODUCE_RECORDS,
        |b| b.seam_produce_transactional(&topic, PRODUCE_RECORDS),
        |b| b.seam_produce(&topic, PRODUCE_RECORDS),
    );
    report(
        "produce txn",
        "transactional (commit every 100 ms)",
        "idempotent",
        &ratios,
        "",
    );
}
