//! `eddy live`: bad usage and bad input exit 2 with one line (a job that
//! does not load, a transaction timeout the guard refuses, an unreachable
//! broker within the stated timeout, a missing input topic); against a real
//! broker (scripts/test runs those) it reads its input, commits output that
//! a read_committed consumer sees, serves /metrics that Prometheus' parser
//! accepts, and stops on SIGTERM with a last commit, exit 0.

mod cli_common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, NewTopic, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Transport,
};

/// The timeout the tests give connecting (EDDY_KAFKA_TIMEOUT_MS).
const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// `eddy live ARGS` without the caller's Kafka settings (a test harness may
/// export `EDDY_KAFKA_*` variables for other tests).
fn eddy_command(args: &[&str]) -> Command {
    let mut live = vec!["live"];
    live.extend_from_slice(args);
    cli_common::eddy_command(&live, CONNECT_TIMEOUT_MS)
}

fn eddy(args: &[&str]) -> Output {
    eddy_command(args).output().expect("running eddy")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_one_line_exit_2(output: &Output, needle: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.contains(needle), "{needle:?} in {text}");
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("eddy-live-{name}")));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

/// A name no earlier run used: topics persist while the broker runs.
fn unique(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    format!(
        "{name}-{}-{run}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A small job: counts per key in tumbling 1 s windows over JSON
/// `{"key", "ts"}`, checkpointing every second (`extra_checkpoint` may
/// say otherwise).
fn job_toml(name: &str, input: &str, store: &str, extra_delivery: &str) -> String {
    job_toml_with(name, input, store, "interval_ms = 1000", extra_delivery)
}

fn job_toml_with(
    name: &str,
    input: &str,
    store: &str,
    interval: &str,
    extra_delivery: &str,
) -> String {
    format!(
        r#"name = "{name}"

[input]
topics = ["{input}"]
format = "json"
key = "key"

[event_time]
field = "ts"
out_of_orderness_ms = 0

[window]
kind = "tumbling"
size_ms = 1000

[[aggregates]]
name = "count"
function = "count"

[output]
topic = "{name}-out"
key_field = "key"
late_topic = "{name}-late"
dead_letter_topic = "{name}-dead"

[checkpoint]
{interval}
restart_budget_ms = 5000
store = {store}

[delivery]
{extra_delivery}
"#
    )
}

fn write_job(dir: &Path, text: &str) -> String {
    let path = dir.join("job.toml");
    std::fs::write(&path, text).expect("writing the job");
    path.display().to_string()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    port
}

#[test]
fn a_missing_job_file_exits_2_with_one_line_naming_it() {
    let output = eddy(&["--job", "no-such-job.toml", "--bootstrap", "127.0.0.1:1"]);
    assert_one_line_exit_2(&output, "no-such-job.toml");
}

#[test]
fn a_job_that_does_not_parse_exits_2_with_one_line() {
    let dir = temp_dir("bad-job");
    let job = write_job(&dir, "name = \"x\"\n[input]\ntopics = 3\n");
    let output = eddy(&["--job", &job, "--bootstrap", "127.0.0.1:1"]);
    assert_one_line_exit_2(&output, "input.topics");
}

#[test]
fn a_transaction_timeout_the_guard_refuses_exits_2_before_connecting() {
    let dir = temp_dir("timeout");
    let job = write_job(
        &dir,
        &job_toml(
            "t",
            "in",
            "{ dir = \"snapshots\" }",
            "transaction_timeout_ms = 3000",
        ),
    );
    let output = eddy(&["--job", &job, "--bootstrap", "127.0.0.1:1"]);
    assert_one_line_exit_2(&output, "transaction_timeout_ms = 3000");
}

#[test]
fn the_simulators_store_is_refused() {
    let dir = temp_dir("sim-store");
    let job = write_job(&dir, &job_toml("s", "in", "\"sim\"", ""));
    let output = eddy(&["--job", &job, "--bootstrap", "127.0.0.1:1"]);
    assert_one_line_exit_2(&output, "sim");
}

#[test]
fn a_bad_worker_id_or_metrics_address_exits_2() {
    let dir = temp_dir("bad-args");
    let job = write_job(&dir, &job_toml("a", "in", "{ dir = \"s\" }", ""));
    let output = eddy(&[
        "--job",
        &job,
        "--bootstrap",
        "127.0.0.1:1",
        "--worker-id",
        "a b",
    ]);
    assert_one_line_exit_2(&output, "--worker-id");
    let output = eddy(&[
        "--job",
        &job,
        "--bootstrap",
        "127.0.0.1:1",
        "--metrics-addr",
        "9464",
    ]);
    assert_one_line_exit_2(&output, "--metrics-addr");
    let output = eddy(&["--job", &job]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn an_unreachable_broker_exits_2_with_one_line_naming_it_within_the_timeout() {
    let dir = temp_dir("unreachable");
    let job = write_job(&dir, &job_toml("u", "in", "{ dir = \"s\" }", ""));
    let address = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let output = eddy(&["--job", &job, "--bootstrap", &address]);
    let took = started.elapsed();
    assert_one_line_exit_2(&output, &address);
    // The stated timeout, plus the process start and client teardown.
    assert!(
        took < Duration::from_millis(CONNECT_TIMEOUT_MS) + Duration::from_secs(8),
        "took {took:?}"
    );
}

// ---------------------------------------------------------------------------
// Against a real broker

fn bootstrap() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!("EDDY_KAFKA_BOOTSTRAP is not set: start a broker with `scripts/kafka start` (scripts/test does)")
    })
}

fn transport() -> KafkaTransport {
    KafkaTransport::new(KafkaConfig::new(bootstrap()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn create_topic(transport: &KafkaTransport, name: &str, partitions: i32) {
    let admin = transport.admin().await.expect("admin client");
    admin
        .create_topic(&NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
}

/// Writes `per_partition` records to each partition of `topic`, with event
/// times one second apart (windows close as the watermark passes them).
async fn produce(transport: &KafkaTransport, topic: &str, partitions: i32, per_partition: i64) {
    let mut producer = transport
        .producer(&ProducerConfig::new("live-test-input", None))
        .await
        .expect("a producer");
    for partition in 0..partitions {
        for i in 0..per_partition {
            let value = format!(r#"{{"key":"k{}","ts":{}}}"#, i % 3, 1_000_000 + i * 1_000);
            producer
                .send(ProducerRecord {
                    topic: topic.to_string(),
                    partition: Some(partition),
                    key: Some(format!("k{}", i % 3).into_bytes()),
                    value: Some(value.into_bytes()),
                    timestamp_ms: None,
                    headers: Vec::new(),
                })
                .expect("a send");
        }
    }
    producer.flush().await.expect("a flush");
}

/// Everything committed in `topic` (read_committed): each partition that
/// has records read until the reader's position (past markers and aborted
/// records) reaches its end offset, the last stable offset, taken first.
async fn read_committed(transport: &KafkaTransport, topic: &str, partitions: i32) -> usize {
    let mut consumer = transport
        .consumer(&ConsumerConfig::new(unique("live-test-reader"), None))
        .await
        .expect("a consumer");
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    // An empty partition (start = end) has no position to wait for.
    let mut ends = Vec::new();
    for tp in &tps {
        let (start, end) = consumer.offsets_range(tp).await.expect("end offsets");
        ends.push((start < end).then_some(end));
    }
    consumer.assign(&tps).await.expect("assign");
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tps.iter().zip(&ends).all(|(tp, end)| {
        end.is_none_or(|end| {
            consumer
                .position(tp)
                .expect("a position")
                .is_some_and(|position| position >= end)
        })
    }) {
        assert!(Instant::now() < deadline, "{topic} not read to its end");
        let events = consumer
            .poll(500, Duration::from_millis(200))
            .await
            .expect("poll");
        count += events
            .iter()
            .filter(|event| matches!(event, ConsumerEvent::Message(_)))
            .count();
    }
    count
}

/// The group's committed offsets of `topic`'s partitions.
async fn committed_offsets(
    transport: &KafkaTransport,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let mut consumer = transport
        .consumer(&ConsumerConfig::new(
            unique("live-test-offsets"),
            Some(group.to_string()),
        ))
        .await
        .expect("a consumer");
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer
        .committed(&tps)
        .await
        .expect("committed offsets")
        .into_iter()
        .map(|committed| committed.map(|c| c.offset))
        .collect()
}

/// A python3 that has prometheus_client (installed with pip if missing:
/// the test command must work on a fresh machine).
fn python_with_prometheus_client() {
    cli_common::python_with("prometheus_client", "prometheus-client");
}

/// Scrapes `http://addr/metrics` and parses it with Prometheus' own Python
/// parsers: the text-format parser accepts it, and the OpenMetrics parser
/// (the format served, with its types) gives `name{labels} value` lines of
/// every sample; or the parsers' complaint.
fn scrape(addr: &str) -> Result<Vec<String>, String> {
    const SCRIPT: &str = r#"
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
with urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5) as response:
    text = response.read().decode()
list(text_string_to_metric_families(text))
families = list(om_families(text))
types = {f.name: f.type for f in families}
assert types.get("eddy_records_in") == "counter", types
assert types.get("eddy_consumer_lag_records") == "gauge", types
assert types.get("eddy_checkpoint_duration_seconds") == "histogram", types
for family in families:
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let output = Command::new("python3")
        .args(["-c", SCRIPT, addr])
        .output()
        .map_err(|error| error.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

fn sample(samples: &[String], prefix: &str) -> Option<f64> {
    samples
        .iter()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn free_port() -> u16 {
    closed_port()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn a_missing_input_topic_exits_2_with_one_line_naming_it() {
    let dir = temp_dir("missing-input");
    let input = unique("live-missing-in");
    let job = write_job(
        &dir,
        &job_toml(&unique("live-missing"), &input, "{ dir = \"s\" }", ""),
    );
    let started = Instant::now();
    let output = eddy(&["--job", &job, "--bootstrap", &bootstrap()]);
    assert_one_line_exit_2(&output, &input);
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// How `eddy live` reaches the broker in a test.
enum Access {
    Plaintext,
    /// SCRAM over the SASL listener, credentials from EDDY_KAFKA_* only.
    Sasl,
}

/// Runs a job end to end: input in, metrics, and a SIGTERM that exits 0
/// after the one checkpoint of the run (its interval is a minute: nothing
/// commits before the stop), with the offsets committed to the end of the
/// input and output a read_committed consumer sees.
fn runs_a_job(store: &str, access: Access) {
    python_with_prometheus_client();
    let rt = runtime();
    let transport = transport();
    let name = unique("live-job");
    let input = format!("{name}-in");
    const PARTITIONS: i32 = 2;
    const PER_PARTITION: i64 = 20;
    rt.block_on(async {
        create_topic(&transport, &input, PARTITIONS).await;
        produce(&transport, &input, PARTITIONS, PER_PARTITION).await;
    });
    let dir = temp_dir("job");
    let store = store.replace("{name}", &name);
    let job = write_job(
        &dir,
        &job_toml_with(
            &name,
            &input,
            &store,
            "interval_ms = 60000",
            "transaction_timeout_ms = 120000",
        ),
    );
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let log = dir.join("stderr.log");
    let (address, secret) = match access {
        Access::Plaintext => (bootstrap(), None),
        Access::Sasl => {
            let address = std::env::var("EDDY_KAFKA_BOOTSTRAP_SASL")
                .expect("EDDY_KAFKA_BOOTSTRAP_SASL (scripts/test sets it)");
            let password = std::env::var("EDDY_KAFKA_TEST_SASL_PASSWORD")
                .unwrap_or_else(|_| "eddy-test-secret".into());
            (address, Some(password))
        }
    };
    let mut command = eddy_command(&[
        "--job",
        &job,
        "--bootstrap",
        &address,
        "--metrics-addr",
        &metrics_addr,
    ]);
    if let Some(password) = &secret {
        let username =
            std::env::var("EDDY_KAFKA_TEST_SASL_USERNAME").unwrap_or_else(|_| "eddy-test".into());
        command
            .env("EDDY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
            .env("EDDY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
            .env("EDDY_KAFKA_SASL_USERNAME", username)
            .env("EDDY_KAFKA_SASL_PASSWORD", password);
    }
    let mut child = command
        .env("EDDY_KAFKA_TIMEOUT_MS", "10000")
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("eddy live starts");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Every input record processed, and lag known for both partitions.
    let deadline = Instant::now() + Duration::from_secs(90);
    let samples = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("eddy live exited early ({status}): {}", log_text());
        }
        if let Ok(samples) = scrape(&metrics_addr) {
            let records_in = sample(&samples, "eddy_records_in_total").unwrap_or(0.0);
            let lag_series = samples
                .iter()
                .filter(|s| s.starts_with("eddy_consumer_lag_records{"))
                .count();
            if records_in >= (PARTITIONS as i64 * PER_PARTITION) as f64
                && lag_series == PARTITIONS as usize
            {
                break samples;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "no progress in 90 s: {:?}\n{}",
                scrape(&metrics_addr),
                log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for partition in 0..PARTITIONS {
        let series =
            format!(r#"eddy_consumer_lag_records{{partition="{partition}",topic="{input}"}}"#);
        assert!(
            samples.iter().any(|s| s.starts_with(&series)),
            "{series} in {samples:#?}"
        );
    }
    for name in [
        "eddy_records_out_total",
        "eddy_watermark_ms{task=\"0\"}",
        "eddy_watermark_lag_seconds{task=\"1\"}",
        "eddy_checkpoint_duration_seconds_count",
        "eddy_checkpoint_size_bytes",
        "eddy_transactions_aborted_total",
        "eddy_late_records_total",
        "eddy_dead_letter_records_total",
        "eddy_rebalances_total",
    ] {
        assert!(sample(&samples, name).is_some(), "{name} in {samples:#?}");
    }

    assert_eq!(
        sample(&samples, "eddy_transactions_committed_total"),
        Some(0.0),
        "the checkpoint interval is a minute: nothing committed before the stop"
    );
    sigterm(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no exit within 60 s of SIGTERM: {}", log_text())
    });
    let text = log_text();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("SIGTERM"), "{text}");
    assert!(
        text.contains("checkpoints=1"),
        "the stop's checkpoint: {text}"
    );
    assert!(text.contains(&address), "the bootstrap is logged: {text}");
    if let Some(password) = &secret {
        assert!(
            !text.contains(password.as_str()),
            "a secret in the log: {text}"
        );
    }

    rt.block_on(async {
        let offsets = committed_offsets(&transport, &name, &input, PARTITIONS).await;
        assert_eq!(
            offsets,
            vec![Some(PER_PARTITION); PARTITIONS as usize],
            "{text}"
        );
        let committed = read_committed(&transport, &format!("{name}-out"), PARTITIONS).await;
        assert!(committed > 0, "committed output: {text}");
    });
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_runs_a_job_with_the_directory_store_and_stops_on_sigterm() {
    runs_a_job("{ dir = \"snapshots\" }", Access::Plaintext);
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_runs_a_job_with_the_topic_store_and_stops_on_sigterm() {
    runs_a_job("{ kafka = \"{name}-checkpoints\" }", Access::Plaintext);
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_runs_a_job_over_sasl_with_credentials_from_the_environment_only() {
    runs_a_job("{ kafka = \"{name}-checkpoints\" }", Access::Sasl);
}

/// Starts `eddy live` on `job` (in `dir`) with metrics; its stderr goes to
/// `dir/<log>`.
fn spawn_live(dir: &Path, job: &str, log: &str) -> (Child, String, PathBuf) {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let log = dir.join(log);
    let child = eddy_command(&[
        "--job",
        job,
        "--bootstrap",
        &bootstrap(),
        "--metrics-addr",
        &metrics_addr,
        "--worker-id",
        "restarted",
    ])
    .env("EDDY_KAFKA_TIMEOUT_MS", "10000")
    .current_dir(dir)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("a log file"))
    .spawn()
    .expect("eddy live starts");
    (child, metrics_addr, log)
}

/// Waits until `eddy_records_in_total` reaches `records`, then stops the
/// worker with SIGTERM and expects exit 0.
fn run_until_records_in(child: &mut Child, metrics_addr: &str, log: &Path, records: f64) {
    wait_for_records_in(child, metrics_addr, log, records);
    stop_with_sigterm(child, log);
}

fn stop_with_sigterm(child: &mut Child, log: &Path) {
    sigterm(child);
    let status = wait_with_timeout(child, Duration::from_secs(60)).expect("an exit after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits until `eddy_records_in_total` reaches `records`; returns the
/// samples then.
fn wait_for_records_in(
    child: &mut Child,
    metrics_addr: &str,
    log: &Path,
    records: f64,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "eddy live exited early ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let samples = scrape(metrics_addr).unwrap_or_default();
        let seen = sample(&samples, "eddy_records_in_total");
        if seen == Some(records) {
            return samples;
        }
        assert!(
            seen.is_none_or(|seen| seen < records),
            "{seen:?} records in, expected {records}"
        );
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{seen:?} of {records} records in after 90 s: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn a_restarted_worker_resumes_from_its_last_checkpoint() {
    python_with_prometheus_client();
    let rt = runtime();
    let transport = transport();
    let name = unique("live-restart");
    let input = format!("{name}-in");
    const PARTITIONS: i32 = 2;
    rt.block_on(async {
        create_topic(&transport, &input, PARTITIONS).await;
        produce(&transport, &input, PARTITIONS, 10).await;
    });
    let dir = temp_dir("restart");
    let store = format!("{{ kafka = \"{name}-checkpoints\" }}");
    let job = write_job(&dir, &job_toml(&name, &input, &store, ""));

    let (mut first, metrics_addr, log) = spawn_live(&dir, &job, "first.log");
    run_until_records_in(&mut first, &metrics_addr, &log, 20.0);
    rt.block_on(async {
        produce(&transport, &input, PARTITIONS, 10).await;
    });
    // Only what came after the first run's last checkpoint is read again.
    let (mut second, metrics_addr, log) = spawn_live(&dir, &job, "second.log");
    run_until_records_in(&mut second, &metrics_addr, &log, 20.0);
    rt.block_on(async {
        let offsets = committed_offsets(&transport, &name, &input, PARTITIONS).await;
        assert_eq!(offsets, vec![Some(20); PARTITIONS as usize]);
    });
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn a_second_worker_with_the_same_id_fences_the_first_whose_output_never_commits() {
    python_with_prometheus_client();
    let rt = runtime();
    let transport = transport();
    let name = unique("live-fence");
    let input = format!("{name}-in");
    const PARTITIONS: i32 = 2;
    rt.block_on(async {
        create_topic(&transport, &input, PARTITIONS).await;
        produce(&transport, &input, PARTITIONS, 20).await;
    });
    let dir = temp_dir("fence");
    let store = format!("{{ kafka = \"{name}-checkpoints\" }}");
    // A minute between checkpoints: the first worker's transaction is open
    // when the second one starts.
    let job = write_job(
        &dir,
        &job_toml_with(
            &name,
            &input,
            &store,
            "interval_ms = 60000",
            "transaction_timeout_ms = 120000",
        ),
    );
    let (mut first, metrics_addr, first_log) = spawn_live(&dir, &job, "first.log");
    wait_for_records_in(&mut first, &metrics_addr, &first_log, 40.0);
    let (mut second, metrics_addr, second_log) = spawn_live(&dir, &job, "second.log");
    let status = wait_with_timeout(&mut first, Duration::from_secs(90)).unwrap_or_else(|| {
        let _ = first.kill();
        panic!(
            "the first worker was not fenced: {}",
            std::fs::read_to_string(&first_log).unwrap_or_default()
        )
    });
    let first_text = std::fs::read_to_string(&first_log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{first_text}");
    assert!(first_text.contains("fenced"), "{first_text}");
    let samples = wait_for_records_in(&mut second, &metrics_addr, &second_log, 40.0);
    let records_out = sample(&samples, "eddy_records_out_total").expect("records out");
    stop_with_sigterm(&mut second, &second_log);
    rt.block_on(async {
        let offsets = committed_offsets(&transport, &name, &input, PARTITIONS).await;
        assert_eq!(offsets, vec![Some(20); PARTITIONS as usize]);
        let committed = read_committed(&transport, &format!("{name}-out"), PARTITIONS).await;
        assert_eq!(
            committed as f64, records_out,
            "only the second worker's output is committed"
        );
    });
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn stop_at_end_finishes_when_a_partitions_records_all_expired() {
    // Partition 1's records are all deleted (as retention does): its log
    // starts at its end offset, so it has nothing to read and its consumer
    // never reports a position there. The bounded run must still finish,
    // with partition 0 read to its end.
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let rt = runtime();
    let transport = transport();
    let name = unique("live-expired");
    let input = format!("{name}-in");
    const PARTITIONS: i32 = 2;
    const PER_PARTITION: i64 = 5;
    rt.block_on(async {
        create_topic(&transport, &input, PARTITIONS).await;
        produce(&transport, &input, PARTITIONS, PER_PARTITION).await;
    });
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("an admin client");
    let mut expired = TopicPartitionList::new();
    expired
        .add_partition_offset(&input, 1, Offset::Offset(PER_PARTITION))
        .unwrap();
    rt.block_on(admin.delete_records(&expired, &AdminOptions::new()))
        .expect("records deleted");
    let dir = temp_dir("expired");
    let job = write_job(
        &dir,
        &job_toml(
            &name,
            &input,
            &format!("{{ dir = {:?} }}", dir.join("s")),
            "",
        ),
    );
    let log_path = dir.join("stderr.log");
    let mut child = eddy_command(&["--job", &job, "--bootstrap", &bootstrap(), "--stop-at-end"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("a log file"))
        .spawn()
        .expect("start eddy live");
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    if status.is_none() {
        child.kill().unwrap();
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the bounded run ended with {status:?}: {log}"
    );
    let offsets = rt.block_on(committed_offsets(&transport, &name, &input, PARTITIONS));
    assert_eq!(
        offsets[0],
        Some(PER_PARTITION),
        "partition 0 read to its end"
    );
}
