//! Recordings against a real broker (scripts/test runs these with
//! EDDY_KAFKA_BOOTSTRAP set): `eddy record` of a topic written in
//! transactions (offsets skipped by commit markers) reads back every
//! record at its offset, bounded by the end offsets seen at start; the
//! replay of that recording equals what `eddy live` committed for the same
//! input, key by key; and `eddy replay --bootstrap` produces to Kafka
//! exactly what the replay writes to a file.

mod cli_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::recording::Recording;
use eddyline_engine::transport::{
    Admin, Bytes, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig, ProducerRecord,
    TopicPartition, Transport,
};

mod recording_common;

const PARTITIONS: i32 = 2;

fn bootstrap() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!("EDDY_KAFKA_BOOTSTRAP is not set: start a broker with `scripts/kafka start` (scripts/test does)")
    })
}

/// A name no earlier run used: topics persist while the broker runs.
fn unique(name: &str) -> String {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    format!("{name}-{}-{run}", std::process::id())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("recording-live")
        .join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `eddy ARGS` without the caller's Kafka settings.
fn eddy(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EDDY_KAFKA_") {
            command.env_remove(name);
        }
    }
    command
}

fn run_ok(args: &[&str]) -> String {
    let output = eddy(args).output().unwrap();
    assert!(
        output.status.success(),
        "eddy {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `eddy record` of `topic` (bounded) into `out`.
fn record(bootstrap: &str, topic: &str, out: &Path) {
    run_ok(&[
        "record",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// `eddy replay` of `input` through `job` into the recording `out`.
fn replay_to(job: &Path, input: &Path, out: &Path) {
    run_ok(&[
        "replay",
        "--job",
        job.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// Writes `{"key", "ts", "value"}` records to each partition in
/// transactions of 7 records (each commit marker takes an offset), then,
/// per partition, one record far in event time that closes every window of
/// the others in live mode (a live worker's watermark never goes to the
/// end). Returns the records written per partition.
async fn produce(transport: &KafkaTransport, topic: &str, per_partition: i64) -> usize {
    let admin = transport.admin().await.unwrap();
    admin
        .create_topic(&NewTopic {
            name: topic.to_string(),
            partitions: PARTITIONS,
            replication_factor: 1,
            configs: Vec::new(),
        })
        .await
        .unwrap();
    let id = unique("recording-feeder");
    let mut producer = transport
        .producer(&ProducerConfig::new(id.clone(), Some(id)))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    let mut written = 0;
    for partition in 0..PARTITIONS {
        let mut records = Vec::new();
        for i in 0..per_partition {
            // A key lives in one partition (one task), as with Kafka's
            // partitioner: its outputs come in one order.
            let key = format!("p{partition}-k{}", (i * 7) % 5);
            // Event time mostly rising, every fifth record 3 s back.
            let ts = 1_000_000 + i * 700 - if i % 5 == 4 { 3_000 } else { 0 };
            records.push((key, ts, i % 13));
        }
        records.push((format!("flush-{partition}"), 1_000_000_000, 0));
        for chunk in records.chunks(7) {
            producer.begin_transaction().await.unwrap();
            for (key, ts, value) in chunk {
                let json = format!(r#"{{"key":"{key}","ts":{ts},"value":{value}}}"#);
                producer
                    .send(ProducerRecord {
                        topic: topic.to_string(),
                        partition: Some(partition),
                        key: Some(key.clone().into_bytes()),
                        value: Some(json.into_bytes()),
                        timestamp_ms: Some(*ts),
                        headers: vec![("source".into(), b"recording-live".to_vec())],
                    })
                    .unwrap();
                written += 1;
            }
            producer.commit_transaction().await.unwrap();
        }
    }
    written
}

fn job_file(dir: &Path, input: &str, output: &str) -> PathBuf {
    let text = format!(
        r#"name = "{output}"

[input]
topics = ["{input}"]
format = "json"
key = "key"

[event_time]
field = "ts"
out_of_orderness_ms = 5_000

[window]
kind = "tumbling"
size_ms = 10_000
allowed_lateness_ms = 2_000

[[aggregates]]
name = "count"
function = "count"

[[aggregates]]
name = "sum"
function = "sum"
field = "value"

[output]
topic = "{output}"
key_field = "key"
late_topic = "{output}-late"
dead_letter_topic = "{output}-dead-letter"

[checkpoint]
interval_ms = 500
store = {{ dir = "{dir}" }}
"#,
        dir = dir.join("checkpoints").display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn committed(transport: &KafkaTransport, group: &str, topic: &str) -> Vec<Option<i64>> {
    let mut consumer = transport
        .consumer(&ConsumerConfig::new(
            unique("probe"),
            Some(group.to_string()),
        ))
        .await
        .unwrap();
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer
        .committed(&tps)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.map(|c| c.offset))
        .collect()
}

/// A record's partition, key and value.
type Placed = (i32, Option<Bytes>, Option<Bytes>);

type ByKey = BTreeMap<Option<Vec<u8>>, Vec<Vec<u8>>>;

fn by_key(recording: &Recording) -> ByKey {
    let mut keys = ByKey::new();
    for message in recording.messages() {
        keys.entry(message.key.as_deref().map(<[u8]>::to_vec))
            .or_default()
            .push(message.value.as_deref().unwrap_or_default().to_vec());
    }
    keys
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn record_keeps_offsets_and_replay_equals_the_live_committed_output_and_produces_it_to_kafka() {
    let bootstrap = bootstrap();
    let transport = KafkaTransport::new(KafkaConfig::new(bootstrap.clone()));
    let dir = temp_dir("live");
    let input = unique("rec-input");
    let output = unique("rec-output");
    let written = runtime().block_on(produce(&transport, &input, 120));
    let job = job_file(&dir, &input, &output);
    let input_file = dir.join("input.parquet");
    record(&bootstrap, &input, &input_file);
    let recording = Recording::read(&input_file).unwrap();
    assert_eq!(recording.len(), written, "every committed record recorded");
    for range in &recording.info.offset_ranges {
        let messages = &recording.partitions[&range.partition];
        // 121 records in transactions of 7: 18 commit markers.
        assert_eq!(
            range.end,
            121 + 18,
            "{range:?}: the end offset, markers counted"
        );
        assert!(
            messages.last().unwrap().offset < range.end - 1,
            "a marker last"
        );
        assert!(
            messages.windows(2).any(|w| w[1].offset > w[0].offset + 1),
            "offsets skip the markers"
        );
        assert_eq!(
            messages[0].headers,
            vec![("source".to_string(), b"recording-live".to_vec())]
        );
    }

    // The same input through `eddy live`, stopped once it committed it all.
    let mut live = eddy(&[
        "live",
        "--job",
        job.to_str().unwrap(),
        "--bootstrap",
        &bootstrap,
        "--worker-id",
        &unique("w"),
    ])
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // A worker commits the position after the last record it read.
    let ends: Vec<Option<i64>> = recording
        .partitions
        .values()
        .map(|messages| messages.last().map(|m| m.offset + 1))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while runtime().block_on(committed(&transport, &output, &input)) != ends {
        assert!(
            Instant::now() < deadline,
            "live mode did not commit its input"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    Command::new("kill")
        .args(["-TERM", &live.id().to_string()])
        .status()
        .unwrap();
    assert!(
        live.wait().unwrap().success(),
        "live mode stops with exit 0"
    );
    let live_file = dir.join("live-output.parquet");
    record(&bootstrap, &output, &live_file);
    let replay_file = dir.join("replay-output.parquet");
    replay_to(&job, &input_file, &replay_file);
    recording_common::pyarrow_check(&[input_file.clone(), live_file.clone(), replay_file.clone()]);
    let mut replayed = by_key(&Recording::read(&replay_file).unwrap());
    let live_output = by_key(&Recording::read(&live_file).unwrap());
    // Only the replay reaches the end of its input: the flush records'
    // own windows fire there, and live mode never fires them.
    for partition in 0..PARTITIONS {
        let flush = Some(format!("flush-{partition}").into_bytes());
        assert!(
            replayed.remove(&flush).is_some(),
            "the replay fired the last windows"
        );
        assert!(!live_output.contains_key(&flush));
    }
    assert!(live_output.len() >= 5, "{:?}", live_output.keys());
    assert!(
        replayed == live_output,
        "the replay's output differs from the live committed output"
    );

    // The same replay produced to Kafka: what a read_committed reader sees
    // there is what the replay wrote to its file.
    let kafka_dir = dir.join("to-kafka");
    std::fs::create_dir_all(&kafka_dir).unwrap();
    let to_kafka = unique("rec-replayed");
    let job = job_file(&kafka_dir, &input, &to_kafka);
    run_ok(&[
        "replay",
        "--job",
        job.to_str().unwrap(),
        "--input",
        input_file.to_str().unwrap(),
        "--bootstrap",
        &bootstrap,
    ]);
    let produced_file = kafka_dir.join("produced.parquet");
    record(&bootstrap, &to_kafka, &produced_file);
    let produced = Recording::read(&produced_file).unwrap();
    assert_eq!(produced.info.partition_count, PARTITIONS);
    let replay = Recording::read(&replay_file).unwrap();
    let values = |r: &Recording| -> Vec<Placed> {
        r.messages()
            .map(|m| (m.partition, m.key.clone(), m.value.clone()))
            .collect()
    };
    assert!(
        values(&produced) == values(&replay),
        "the replay produced to Kafka differs from its file"
    );
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_stop_at_end_finishes_an_input_that_ends_in_commit_markers_as_its_replay_does() {
    // Every input partition ends in a commit marker: no record carries the
    // offset below the end. The bounded run must see, from its consumer's
    // position, that it reached the end; commit the offset past the marker;
    // fire every window (the flush records' too) and exit 0, with the output
    // a replay of the same input gives.
    let bootstrap = bootstrap();
    let transport = KafkaTransport::new(KafkaConfig::new(bootstrap.clone()));
    let dir = temp_dir("stop-at-end");
    let input = unique("rec-bounded-input");
    let output = unique("rec-bounded-output");
    runtime().block_on(produce(&transport, &input, 40));
    let job = job_file(&dir, &input, &output);
    let input_file = dir.join("input.parquet");
    record(&bootstrap, &input, &input_file);
    let recording = Recording::read(&input_file).unwrap();
    let ends: Vec<Option<i64>> = recording
        .info
        .offset_ranges
        .iter()
        .map(|range| Some(range.end))
        .collect();
    for (range, messages) in recording
        .info
        .offset_ranges
        .iter()
        .zip(recording.partitions.values())
    {
        assert!(
            messages.last().unwrap().offset < range.end - 1,
            "a marker last"
        );
    }
    let mut live = eddy(&[
        "live",
        "--job",
        job.to_str().unwrap(),
        "--bootstrap",
        &bootstrap,
        "--worker-id",
        &unique("w"),
        "--stop-at-end",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = live.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            live.kill().unwrap();
            panic!("the bounded run did not finish: its input ends in markers");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "the bounded run ended with {status}");
    assert_eq!(
        runtime().block_on(committed(&transport, &output, &input)),
        ends,
        "the committed offsets are the end offsets, past the last markers"
    );
    let live_file = dir.join("live-output.parquet");
    record(&bootstrap, &output, &live_file);
    let replay_file = dir.join("replay-output.parquet");
    replay_to(&job, &input_file, &replay_file);
    let live_output = by_key(&Recording::read(&live_file).unwrap());
    let replayed = by_key(&Recording::read(&replay_file).unwrap());
    for partition in 0..PARTITIONS {
        let flush = Some(format!("flush-{partition}").into_bytes());
        assert!(
            live_output.contains_key(&flush),
            "the bounded run fired the last windows"
        );
    }
    assert!(
        live_output == replayed,
        "the bounded live run's output differs from the replay's"
    );
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn record_follow_records_what_arrives_until_sigint() {
    let bootstrap = bootstrap();
    let transport = KafkaTransport::new(KafkaConfig::new(bootstrap.clone()));
    let dir = temp_dir("follow");
    let topic = unique("rec-follow");
    let before = runtime().block_on(produce(&transport, &topic, 20));
    let out = dir.join("follow.parquet");
    let mut follower = eddy(&[
        "record",
        "--bootstrap",
        &bootstrap,
        "--topic",
        &topic,
        "--out",
        out.to_str().unwrap(),
        "--follow",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // Records that arrive after the start are recorded too.
    let mut producer = runtime()
        .block_on(transport.producer(&ProducerConfig::new(unique("late-feeder"), None)))
        .unwrap();
    let after = 5;
    for i in 0..after {
        drop(
            producer
                .send(ProducerRecord {
                    topic: topic.clone(),
                    partition: Some(1),
                    key: Some(b"p1-after".to_vec()),
                    value: Some(format!(r#"{{"key":"p1-after","ts":{i},"value":1}}"#).into_bytes()),
                    timestamp_ms: Some(i),
                    headers: Vec::new(),
                })
                .unwrap(),
        );
    }
    runtime().block_on(producer.flush()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(!out.exists(), "written only when stopped");
    Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(
        follower.wait().unwrap().success(),
        "SIGINT ends it with exit 0"
    );
    let recording = Recording::read(&out).unwrap();
    assert_eq!(recording.len(), before + after as usize);
    let last = recording.partitions[&1].last().unwrap();
    assert_eq!(last.key.as_deref(), Some(&b"p1-after"[..]));
    assert_eq!(recording.info.offset_ranges[1].end, last.offset + 1);
}

#[test]
fn record_from_an_unreachable_broker_exits_2_with_one_line_and_writes_nothing() {
    let dir = temp_dir("unreachable");
    let out = dir.join("t.parquet");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = eddy(&[
        "record",
        "--bootstrap",
        &format!("127.0.0.1:{port}"),
        "--topic",
        "t",
        "--out",
        out.to_str().unwrap(),
    ])
    .env("EDDY_KAFKA_TIMEOUT_MS", "2000")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
