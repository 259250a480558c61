//! Live mode on a local broker: the worker (the real driver and core over
//! the rdkafka transport, as `eddy live` runs it) exactly-once vs
//! at-least-once, and at-least-once vs a bare rdkafka consume→produce loop
//! that does the same decoding and window work by hand.
//!
//! `EDDY_KAFKA_BOOTSTRAP=127.0.0.1:PORT cargo bench --bench live` (start a
//! broker with `scripts/kafka start`). Without the variable the bench says
//! so and measures nothing.
//!
//! Workload: `EDDY_BENCH_RECORDS` (default 1,000,000) JSON records
//! `{"key","ts","value"}` on 4 partitions (250 keys each), event time
//! rising 1 ms per record per partition; the job counts and sums per key
//! in 10 s tumbling windows (out-of-orderness 1 s) with a checkpoint every
//! second (directory store): a window closes every 10,000 records of a
//! partition, 25,000 firings in all at the default size. Every run reads
//! the same input topic with a group and output topics of its own, from
//! the first record to the end (bounded: the last windows fire at the end)
//! and its last commit. The clock starts at a run's first record, so group
//! join and client start-up are not counted. Rounds interleave the three
//! (EO, ALO, bare; `EDDY_BENCH_ROUNDS`, default 3); the ratios are of the
//! medians.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use eddyline_engine::checkpoint::DirStore;
use eddyline_engine::job::{AggregateFunction, AggregateSpec, Job, JobWindowSpec};
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{Admin, NewTopic, TopicPartition, Transport};
use eddyline_engine::worker::driver::{self, Clients};
use eddyline_engine::worker::{Delivery, Faithful, Stopped, WorkerCore};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;
const KEYS: usize = 1_000;
const WINDOW_MS: i64 = 10_000;
const OUT_OF_ORDERNESS_MS: i64 = 1_000;
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
const BASE_MS: i64 = 1_700_000_000_000;

fn records() -> usize {
    std::env::var("EDDY_BENCH_RECORDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000)
}

fn rounds() -> usize {
    std::env::var("EDDY_BENCH_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn create_topics(transport: &KafkaTransport, topics: &[String]) {
    runtime().block_on(async {
        let admin = transport.admin().await.expect("admin");
        for topic in topics {
            admin
                .create_topic(&NewTopic {
                    name: topic.clone(),
                    partitions: PARTITIONS,
                    replication_factor: 1,
                    configs: Vec::new(),
                })
                .await
                .expect("create a topic");
        }
    });
}

fn bare_producer(bootstrap: &str, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer")
}

/// Writes the workload (not timed); the end offset of each partition.
fn load(bootstrap: &str, topic: &str, records: usize) -> BTreeMap<i32, i64> {
    let producer = bare_producer(bootstrap, "bench-live-load");
    let mut counts = BTreeMap::new();
    for i in 0..records {
        let partition = (i % PARTITIONS as usize) as i32;
        let per_partition = i / PARTITIONS as usize;
        let key = format!("user-{}", (i * 7919) % KEYS);
        let ts = BASE_MS + per_partition as i64;
        let value = format!(r#"{{"key":"{key}","ts":{ts},"value":{}}}"#, i % 100);
        loop {
            let record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(value.as_bytes())
                .timestamp(ts);
            match producer.send(record) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        *counts.entry(partition).or_insert(0) += 1;
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("the load is acknowledged");
    counts
}

fn job(name: &str, input: &str, delivery: Delivery, store: &std::path::Path) -> Job {
    Job::builder(name)
        .input([input])
        .key("key")
        .event_time("ts")
        .out_of_orderness_ms(OUT_OF_ORDERNESS_MS)
        .window(JobWindowSpec::tumbling(WINDOW_MS))
        .aggregate(AggregateSpec::count("count"))
        .aggregate(AggregateSpec::of("sum", AggregateFunction::Sum, "value"))
        .output(&format!("{name}-out"))
        .late_topic(&format!("{name}-late"))
        .dead_letter_topic(&format!("{name}-dead"))
        .checkpoint_interval_ms(CHECKPOINT_INTERVAL.as_millis() as u64)
        .checkpoint_store(eddyline_engine::job::StoreSpec::Dir(store.to_path_buf()))
        .delivery(delivery)
        .build()
        .expect("a valid job")
}

/// One bounded worker run: from its first record to its stop.
fn worker_run(
    transport: &KafkaTransport,
    input: &str,
    ends: &BTreeMap<i32, i64>,
    delivery: Delivery,
    run: &str,
) -> (Duration, u64) {
    let name = format!("bench-live-{run}");
    let job = job(&name, input, delivery, &std::env::temp_dir().join(&name));
    create_topics(
        transport,
        &[
            format!("{name}-out"),
            format!("{name}-late"),
            format!("{name}-dead"),
        ],
    );
    let mut config = job.worker_config(&name, 1);
    config.end_offsets = Some(
        ends.iter()
            .map(|(p, end)| (TopicPartition::new(input, *p), *end))
            .collect(),
    );
    let core = WorkerCore::new(job.clone(), config, Faithful).expect("a worker");
    let mut store = DirStore::new(std::env::temp_dir().join(&name));
    let mut first_record: Option<Instant> = None;
    let mut records_out = 0;
    let stopped = runtime().block_on(driver::run(
        transport,
        &mut store,
        core,
        Clients::new(&name),
        |core, _command| {
            let stats = core.stats();
            if first_record.is_none() && stats.records_in > 0 {
                first_record = Some(Instant::now());
            }
            records_out = stats.records_out;
        },
    ));
    let ended = Instant::now();
    assert!(
        matches!(stopped, Ok(Stopped::Finished)),
        "the run finished: {stopped:?}"
    );
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&name));
    (
        ended - first_record.expect("records were read"),
        records_out,
    )
}

/// A window's aggregate in the bare loop.
#[derive(Default)]
struct Acc {
    count: i64,
    sum: i64,
}

/// One partition's state in the bare loop.
#[derive(Default)]
struct PartitionState {
    max_ts: Option<i64>,
    watermark: i64,
    /// Open windows by end, then key.
    windows: BTreeMap<i64, HashMap<String, Acc>>,
    position: i64,
}

/// The bare loop: rdkafka's BaseConsumer reading every partition, the same
/// JSON decoding, per-partition watermarks, tumbling windows with count
/// and sum, each firing produced as the worker's JSON (with its headers)
/// by an idempotent producer; every second, flush then commit the
/// offsets (at-least-once, as the worker does it). From the first record
/// to the last commit.
fn bare_run(bootstrap: &str, input: &str, ends: &BTreeMap<i32, i64>, run: &str) -> (Duration, u64) {
    let name = format!("bench-live-{run}");
    let output = format!("{name}-out");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    let mut list = TopicPartitionList::new();
    for partition in ends.keys() {
        list.add_partition_offset(input, *partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&list).expect("assign");
    let producer = bare_producer(bootstrap, &name);
    let mut states: BTreeMap<i32, PartitionState> = ends
        .keys()
        .map(|p| {
            (
                *p,
                PartitionState {
                    watermark: i64::MIN,
                    ..PartitionState::default()
                },
            )
        })
        .collect();
    let mut first_record: Option<Instant> = None;
    let mut last_commit = Instant::now();
    let mut records_out = 0_u64;
    let mut out = Vec::new();
    let at_end =
        |states: &BTreeMap<i32, PartitionState>| states.iter().all(|(p, s)| s.position >= ends[p]);
    while !at_end(&states) {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = result.expect("a record");
        first_record.get_or_insert_with(Instant::now);
        let partition = message.partition();
        let state = states.get_mut(&partition).expect("an assigned partition");
        state.position = message.offset() + 1;
        let value: serde_json::Value =
            serde_json::from_slice(message.payload().expect("a value")).expect("JSON");
        let key = value["key"].as_str().expect("a key").to_string();
        let ts = value["ts"].as_i64().expect("a time");
        let amount = value["value"].as_i64().expect("a value");
        let start = ts - ts.rem_euclid(WINDOW_MS);
        let end = start + WINDOW_MS;
        if end - 1 > state.watermark {
            let acc = state
                .windows
                .entry(end)
                .or_default()
                .entry(key)
                .or_default();
            acc.count += 1;
            acc.sum += amount;
        }
        let candidate = ts - OUT_OF_ORDERNESS_MS - 1;
        state.max_ts = Some(state.max_ts.map_or(ts, |max| max.max(ts)));
        state.watermark = state.watermark.max(candidate);
        fire(state, partition, false, &mut out);
        for (key, body, timestamp, headers) in out.drain(..) {
            send(&producer, &output, &key, &body, timestamp, &headers);
            records_out += 1;
        }
        if last_commit.elapsed() >= CHECKPOINT_INTERVAL {
            commit(&producer, &consumer, input, &states);
            last_commit = Instant::now();
        }
    }
    for (partition, state) in states.iter_mut() {
        fire(state, *partition, true, &mut out);
    }
    for (key, body, timestamp, headers) in out.drain(..) {
        send(&producer, &output, &key, &body, timestamp, &headers);
        records_out += 1;
    }
    commit(&producer, &consumer, input, &states);
    let ended = Instant::now();
    (
        ended - first_record.expect("records were read"),
        records_out,
    )
}

type Fired = (String, Vec<u8>, i64, Vec<(String, String)>);

/// Fires every window the watermark reached (all at the end of input),
/// as the worker's output record: JSON value, timestamp, headers.
fn fire(state: &mut PartitionState, task: i32, all: bool, out: &mut Vec<Fired>) {
    let watermark = if all { i64::MAX } else { state.watermark };
    while let Some(entry) = state.windows.first_entry() {
        let end = *entry.key();
        if end - 1 > watermark {
            break;
        }
        let mut keys: Vec<(String, Acc)> = entry.remove().into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, acc) in keys {
            let body = serde_json::json!({
                "key": key,
                "window_start": end - WINDOW_MS,
                "window_end": end,
                "count": acc.count,
                "sum": acc.sum,
                "kind": "on_time",
            });
            let headers = vec![
                ("eddy.task".to_string(), task.to_string()),
                ("eddy.watermark".to_string(), watermark.to_string()),
            ];
            out.push((
                key,
                serde_json::to_vec(&body).expect("JSON"),
                end - 1,
                headers,
            ));
        }
    }
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &str,
    body: &[u8],
    timestamp: i64,
    headers: &[(String, String)],
) {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    loop {
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key.as_bytes())
            .payload(body)
            .timestamp(timestamp)
            .headers(owned.clone());
        match producer.send(record) {
            Ok(()) => return,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// At-least-once: flush the outputs, then commit the positions.
fn commit(
    producer: &ThreadedProducer<DefaultProducerContext>,
    consumer: &BaseConsumer,
    input: &str,
    states: &BTreeMap<i32, PartitionState>,
) {
    producer
        .flush(Duration::from_secs(60))
        .expect("outputs flushed");
    let mut list = TopicPartitionList::new();
    for (partition, state) in states {
        if state.position > 0 {
            list.add_partition_offset(input, *partition, Offset::Offset(state.position))
                .expect("a partition");
        }
    }
    if list.count() > 0 {
        consumer
            .commit(&list, CommitMode::Sync)
            .expect("offsets committed");
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let Ok(bootstrap) = std::env::var("EDDY_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "bench live: set EDDY_KAFKA_BOOTSTRAP=HOST:PORT (scripts/kafka start prints it); \
             nothing measured"
        );
        return;
    };
    // `cargo bench` passes `--bench`; a filter that is not ours skips us.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "live".contains(f.as_str())) {
        return;
    }
    let config = KafkaConfig::from_sources(Some(&bootstrap), std::iter::empty()).expect("a config");
    let transport = runtime()
        .block_on(KafkaTransport::connect(config))
        .expect("connect");
    let tag = format!("{}-{}", std::process::id(), BASE_MS % 997);
    let input = format!("bench-live-in-{tag}");
    create_topics(&transport, std::slice::from_ref(&input));
    let records = records();
    let loaded = Instant::now();
    let ends = load(&bootstrap, &input, records);
    println!(
        "bench live: {records} records on {PARTITIONS} partitions loaded in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );
    let rate = |(took, _): (Duration, u64)| records as f64 / took.as_secs_f64();
    let (mut exactly_once, mut at_least_once, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds() {
        let eo = worker_run(
            &transport,
            &input,
            &ends,
            Delivery::ExactlyOnce,
            &format!("eo-{tag}-{round}"),
        );
        let alo = worker_run(
            &transport,
            &input,
            &ends,
            Delivery::AtLeastOnce,
            &format!("alo-{tag}-{round}"),
        );
        let bare_name = format!("bare-{tag}-{round}");
        create_topics(&transport, &[format!("bench-live-{bare_name}-out")]);
        let hand = bare_run(&bootstrap, &input, &ends, &bare_name);
        assert_eq!(eo.1, alo.1, "both deliveries fire the same windows");
        assert_eq!(alo.1, hand.1, "the bare loop fires the same windows");
        println!(
            "round {round}: exactly-once {:.0} rec/s ({:.2} s), at-least-once {:.0} rec/s ({:.2} s), \
             bare loop {:.0} rec/s ({:.2} s); {} outputs each",
            rate(eo),
            eo.0.as_secs_f64(),
            rate(alo),
            alo.0.as_secs_f64(),
            rate(hand),
            hand.0.as_secs_f64(),
            alo.1
        );
        exactly_once.push(rate(eo));
        at_least_once.push(rate(alo));
        bare.push(rate(hand));
    }
    let (eo, alo, hand) = (median(exactly_once), median(at_least_once), median(bare));
    println!(
        "live ratio: exactly-once / at-least-once = {:.2} (medians {eo:.0} / {alo:.0} rec/s; target >= 0.9)",
        eo / alo
    );
    println!(
        "live ratio: at-least-once worker / bare rdkafka loop = {:.2} (medians {alo:.0} / {hand:.0} rec/s; target >= 0.7)",
        alo / hand
    );
}
