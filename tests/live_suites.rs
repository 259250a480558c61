//! Live suites on the real broker (scripts/test starts it and runs these
//! with `--ignored`): each shipped job loaded with `eddy load`, run with
//! `eddy live` and checked with `eddy verify`:
//!
//! - live: kills: the worker SIGKILLed at seeded points while its input
//!   arrives, restarted each time, then drained: verify finds nothing;
//! - live: two workers share the partitions, one is SIGKILLed (the
//!   survivor takes its partitions over), restarted (it rejoins): verify
//!   finds nothing;
//! - live: at-least-once under the same kills: verify reports duplicates
//!   (a positive control: the check can fail);
//! - sim vs real: the same scenario seed without faults gives the same
//!   input partitions and offsets, and the same committed output records
//!   per output partition, on the simulator and on the broker;
//! - errors of `eddy load` and `eddy verify`: one line, exit 2, within the
//!   stated timeout.
//!
//! The SIGTERM stop with a last checkpoint is in tests/live_cli.rs.
//! Each test uses its own topics and group (topics live as long as the
//! broker). Kill points come from a seed printed by each test; set
//! EDDY_SEED to replay one.

mod cli_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Bytes, Consumer, ConsumerConfig, ConsumerEvent, TopicPartition, Transport,
};
use eddyline_scenarios::run::{RunOptions, run};
use eddyline_scenarios::scenario::Scenario;
use eddyline_sim::Seed;

/// The timeout the tests give connecting (EDDY_KAFKA_TIMEOUT_MS).
const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// The workers' session timeout: a killed worker's partitions move this
/// long after the kill (the test broker's minimum is 1 s).
const SESSION_TIMEOUT_MS: &str = "1500";
/// The jobs' checkpoint interval in these suites.
const CHECKPOINT_INTERVAL_MS: u64 = 300;
/// How long a bounded run (`--stop-at-end`) may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// A shipped job and the workload kind that feeds it.
struct Shipped {
    file: &'static str,
    workload: &'static str,
}

const SHIPPED: [Shipped; 4] = [
    Shipped {
        file: "click-counts",
        workload: "clicks",
    },
    Shipped {
        file: "click-sessions",
        workload: "clicks",
    },
    Shipped {
        file: "order-revenue",
        workload: "orders",
    },
    Shipped {
        file: "window-stats",
        workload: "window-stats",
    },
];

fn shipped(file: &str) -> &'static Shipped {
    SHIPPED
        .iter()
        .find(|job| job.file == file)
        .expect("a shipped job")
}

fn bootstrap() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP").expect("EDDY_KAFKA_BOOTSTRAP (scripts/test sets it)")
}

/// A name no earlier run used: topics persist while the broker runs.
fn unique(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{name}-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// `eddy ARGS` without the caller's Kafka settings.
fn eddy(args: &[&str]) -> Command {
    cli_common::eddy_command(args, CONNECT_TIMEOUT_MS)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A seeded generator of kill points (splitmix64).
struct Draws(u64);

impl Draws {
    /// From EDDY_SEED if set, else from the test's name; printed.
    fn new(test: &str) -> Draws {
        let seed = match std::env::var("EDDY_SEED") {
            Ok(text) => text.parse().expect("EDDY_SEED is a number"),
            Err(_) => test.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
            }),
        };
        eprintln!("{test}: kill points from seed {seed} (EDDY_SEED={seed} replays them)");
        Draws(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in `low_ms..high_ms`.
    fn ms(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        Duration::from_millis(low_ms + self.next() % (high_ms - low_ms))
    }
}

/// One test's copy of a shipped job (its own name, topics and checkpoint
/// topic) and a scenario that feeds it.
struct Setup {
    dir: PathBuf,
    job: String,
    scenario: String,
    name: String,
    input: String,
    output: String,
    partitions: i32,
}

/// Copies `jobs/FILE.toml` with names of its own, a short checkpoint
/// interval and `delivery`, and writes a fault-free scenario of `records`
/// records sent at `rate_per_s`.
fn setup(file: &str, delivery: &str, records: usize, rate_per_s: u32) -> Setup {
    let job = shipped(file);
    let name = unique(file);
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let shipped_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("jobs/{file}.toml")),
    )
    .expect("the shipped job");
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    let mut lines = Vec::new();
    let mut named = false;
    for line in shipped_text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match key {
            "name" if !named => {
                named = true;
                format!("name = \"{name}\"")
            }
            "topics" => format!("topics = [\"{input}\"]"),
            "topic" => format!("topic = \"{output}\""),
            "late_topic" => format!("late_topic = \"{name}-late\""),
            "dead_letter_topic" => format!("dead_letter_topic = \"{name}-dead\""),
            _ => line.to_string(),
        };
        lines.push(replaced);
    }
    assert!(
        !shipped_text.contains("[checkpoint]") && !shipped_text.contains("[delivery]"),
        "the suites set these sections themselves"
    );
    lines.push(format!(
        "\n[checkpoint]\ninterval_ms = {CHECKPOINT_INTERVAL_MS}\nrestart_budget_ms = 5000\n\n\
         [delivery]\nguarantee = \"{delivery}\"\n"
    ));
    let job_path = dir.join("job.toml");
    std::fs::write(&job_path, lines.join("\n")).expect("write the job");
    let scenario_path = dir.join("scenario.toml");
    std::fs::write(
        &scenario_path,
        format!(
            r#"job = "{}"
seeds = "1..2"
expect = "pass"

[workload]
kind = "{}"
records = {records}
rate_per_s = {rate_per_s}

[cluster]
workers = 1

[faults]
until_ms = 1_000

[checker]
liveness_ms = 60_000
"#,
            job_path.display(),
            job.workload
        ),
    )
    .expect("write the scenario");
    let partitions = Scenario::from_file(&scenario_path)
        .expect("the scenario loads")
        .workload
        .partitions;
    Setup {
        dir,
        job: job_path.display().to_string(),
        scenario: scenario_path.display().to_string(),
        name,
        input,
        output,
        partitions,
    }
}

impl Setup {
    fn load(&self, seed: u64, paced: bool) -> Command {
        let seed = seed.to_string();
        let mut args = vec!["load", &self.scenario, "--seed", &seed, "--bootstrap", ""];
        let bootstrap = bootstrap();
        args[5] = &bootstrap;
        if paced {
            args.push("--paced");
        }
        eddy(&args)
    }

    fn load_now(&self, seed: u64) {
        let output = self.load(seed, false).output().expect("run eddy load");
        assert!(
            output.status.success(),
            "eddy load: {}",
            text(&output.stderr)
        );
    }

    /// `eddy live` with `worker_id`, its log in the setup's directory, and
    /// metrics on a free port (returned).
    fn live(&self, worker_id: &str, incarnation: usize, extra: &[&str]) -> Worker {
        let metrics = format!("127.0.0.1:{}", free_port());
        let log_path = self.dir.join(format!("{worker_id}-{incarnation}.log"));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let mut args = vec![
            "live",
            "--job",
            &self.job,
            "--bootstrap",
            "",
            "--worker-id",
            worker_id,
            "--metrics-addr",
            &metrics,
            "--session-timeout-ms",
            SESSION_TIMEOUT_MS,
        ];
        let bootstrap = bootstrap();
        args[4] = &bootstrap;
        args.extend(extra);
        let child = eddy(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start eddy live");
        Worker {
            child,
            metrics,
            log: log_path,
        }
    }

    fn verify(&self) -> Output {
        eddy(&["verify", "--job", &self.job, "--bootstrap", &bootstrap()])
            .output()
            .expect("run eddy verify")
    }

    /// A bounded run of one worker to the end of the input: exit 0.
    fn drain(&self, worker_id: &str, incarnation: usize) {
        let mut worker = self.live(worker_id, incarnation, &["--stop-at-end"]);
        let status = worker.wait(DRAIN_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.success()),
            "the bounded run ended with {status:?}: {}",
            worker.log_text()
        );
    }
}

struct Worker {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl Worker {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of a counter (`eddy_records_in_total`, ...), if served.
    fn counter(&self, name: &str) -> Option<f64> {
        let mut stream = TcpStream::connect(&self.metrics).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics);
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
    }

    /// Waits until counter `name` reaches `at_least`; panics after 60 s.
    fn wait_for(&mut self, name: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.counter(name).is_some_and(|value| value >= at_least) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the worker exited ({status}) early: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} never reached {at_least}: {}", self.log_text());
    }

    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        let _ = self.child.wait();
    }

    fn sigterm(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Waits until `topic` exists (a paced load creates it first); panics
/// after 30 s.
fn wait_for_topic(topic: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config =
            KafkaConfig::from_sources(Some(&bootstrap()), std::iter::empty()).expect("a config");
        let transport = KafkaTransport::connect(config).await.expect("connect");
        let admin = transport.admin().await.expect("an admin client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while admin.partition_count(topic).await.is_err() {
            assert!(Instant::now() < deadline, "topic {topic} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Waits for a paced load to finish, successfully.
fn finish_load(mut load: Child) {
    let output = load.wait().expect("wait for eddy load");
    assert!(output.success(), "eddy load ended with {output}");
}

fn verify_clean(setup: &Setup) {
    let output = setup.verify();
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "verify found anomalies:\n{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("verdict: pass"), "{stdout}");
    assert!(
        !stdout.contains("committed: 0 output"),
        "no output was committed: {stdout}"
    );
}

// ---------------------------------------------------------------------------
// SIGKILL at seeded points, then a bounded run; verify.

/// Loads at the scenario's pace while one worker runs; SIGKILLs it twice
/// at seeded points after it has read input, restarting it each time;
/// then drains with a bounded run. Returns the setup, for verify.
fn killed_twice(file: &str, delivery: &str, test: &str) -> Setup {
    let setup = setup(file, delivery, 4_000, 800);
    let mut draws = Draws::new(test);
    let load = setup
        .load(1, true)
        .spawn()
        .expect("start eddy load --paced");
    // The load creates the input, then the outputs: once the last exists
    // a worker starting now does not race it creating them.
    wait_for_topic(&format!("{}-dead", setup.name));
    let mut records_in_before = 0.0;
    for incarnation in 0..2 {
        let mut worker = setup.live("w1", incarnation, &[]);
        worker.wait_for("eddy_records_in_total", 1.0);
        std::thread::sleep(draws.ms(100, 900));
        let records_in = worker.counter("eddy_records_in_total").unwrap_or(0.0);
        assert!(records_in >= 1.0, "the worker read input before its kill");
        records_in_before += records_in;
        worker.sigkill();
        eprintln!("{test}: SIGKILL {incarnation} after {records_in} records in");
    }
    finish_load(load);
    setup.drain("w1", 2);
    assert!(records_in_before > 0.0);
    setup
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_kills_click_counts_killed_twice_and_restarted_verifies_clean() {
    verify_clean(&killed_twice(
        "click-counts",
        "exactly_once",
        "kills-click-counts",
    ));
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_kills_click_sessions_killed_twice_and_restarted_verifies_clean() {
    verify_clean(&killed_twice(
        "click-sessions",
        "exactly_once",
        "kills-click-sessions",
    ));
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_kills_order_revenue_killed_twice_and_restarted_verifies_clean() {
    verify_clean(&killed_twice(
        "order-revenue",
        "exactly_once",
        "kills-order-revenue",
    ));
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_kills_window_stats_killed_twice_and_restarted_verifies_clean() {
    verify_clean(&killed_twice(
        "window-stats",
        "exactly_once",
        "kills-window-stats",
    ));
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_kills_at_least_once_under_the_same_kills_verify_reports_duplicates() {
    let setup = killed_twice("click-counts", "at_least_once", "kills-at-least-once");
    let output = setup.verify();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: FAIL"), "{stdout}");
    assert!(stdout.contains("duplicate-output"), "{stdout}");
}

// ---------------------------------------------------------------------------
// Two workers; one killed: the survivor takes over, the killed one rejoins.

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn live_two_workers_one_killed_the_survivor_takes_over_the_killed_one_rejoins() {
    let test = "two-workers";
    let setup = setup("click-counts", "exactly_once", 5_000, 800);
    let mut draws = Draws::new(test);
    let load = setup
        .load(2, true)
        .spawn()
        .expect("start eddy load --paced");
    // The load creates the input, then the outputs: once the last exists
    // a worker starting now does not race it creating them.
    wait_for_topic(&format!("{}-dead", setup.name));
    let mut first = setup.live("w1", 0, &[]);
    let mut second = setup.live("w2", 0, &[]);
    first.wait_for("eddy_records_in_total", 1.0);
    second.wait_for("eddy_records_in_total", 1.0);
    let rebalances = second.counter("eddy_rebalances_total").unwrap_or(0.0);
    std::thread::sleep(draws.ms(100, 900));
    first.sigkill();
    // The survivor is assigned every partition once the session expires.
    second.wait_for("eddy_rebalances_total", rebalances + 1.0);
    let taken_over = second.counter("eddy_rebalances_total").unwrap_or(0.0);
    let mut rejoined = setup.live("w1", 1, &[]);
    // The restarted worker rejoins: the survivor rebalances again, and the
    // newcomer is assigned partitions.
    second.wait_for("eddy_rebalances_total", taken_over + 1.0);
    rejoined.wait_for("eddy_rebalances_total", 1.0);
    finish_load(load);
    for worker in [&mut rejoined, &mut second] {
        worker.sigterm();
        let status = worker.wait(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "SIGTERM: {status:?}: {}",
            worker.log_text()
        );
        assert!(
            worker
                .log_text()
                .contains("stopped after a last checkpoint"),
            "SIGTERM gives a last checkpoint: {}",
            worker.log_text()
        );
    }
    // Both drain together: each exits once the group committed the ends.
    let mut drain_one = setup.live("w1", 2, &["--stop-at-end"]);
    let mut drain_two = setup.live("w2", 1, &["--stop-at-end"]);
    for worker in [&mut drain_one, &mut drain_two] {
        let status = worker.wait(DRAIN_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.success()),
            "bounded run: {status:?}: {}",
            worker.log_text()
        );
    }
    verify_clean(&setup);
}

// ---------------------------------------------------------------------------
// The simulator and the broker: same seed, no faults, same committed output.

/// A record as both sides compare it: key, value, timestamp, headers.
type Compared = (Option<Bytes>, Option<Bytes>, i64, Vec<(String, Vec<u8>)>);

/// Reads every partition of `topic` with read_committed: per partition,
/// (offset, record) in offset order.
fn read_topic(topic: &str, partitions: i32) -> BTreeMap<i32, Vec<(i64, Compared)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config =
            KafkaConfig::from_sources(Some(&bootstrap()), std::iter::empty()).expect("a config");
        let transport = KafkaTransport::connect(config).await.expect("connect");
        let mut reader = transport
            .consumer(&ConsumerConfig::new(unique("read"), None))
            .await
            .expect("a consumer");
        let all: Vec<TopicPartition> = (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        reader.assign(&all).await.expect("assign");
        let mut read: BTreeMap<i32, Vec<(i64, Compared)>> =
            (0..partitions).map(|p| (p, Vec::new())).collect();
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_millis(1_500) {
            let events = reader
                .poll(1_000, Duration::from_millis(100))
                .await
                .expect("poll");
            for event in events {
                if let ConsumerEvent::Message(m) = event {
                    last = Instant::now();
                    read.entry(m.partition)
                        .or_default()
                        .push((m.offset, (m.key, m.value, m.timestamp_ms, m.headers)));
                }
            }
        }
        read
    })
}

fn compared(
    by_partition: &BTreeMap<i32, Vec<eddyline_engine::transport::Message>>,
) -> BTreeMap<i32, Vec<(i64, Compared)>> {
    by_partition
        .iter()
        .map(|(partition, messages)| {
            let records = messages
                .iter()
                .map(|m| {
                    (
                        m.offset,
                        (
                            m.key.clone(),
                            m.value.clone(),
                            m.timestamp_ms,
                            m.headers.clone(),
                        ),
                    )
                })
                .collect();
            (*partition, records)
        })
        .collect()
}

/// Per output partition, the records of each task (header `eddy.task`)
/// in offset order, offsets left out: the order in which the tasks'
/// records interleave in a partition is timing (the simulator's or the
/// broker's), each task's own order is not.
fn per_task(
    by_partition: BTreeMap<i32, Vec<(i64, Compared)>>,
) -> BTreeMap<(i32, String), Vec<Compared>> {
    let mut grouped: BTreeMap<(i32, String), Vec<Compared>> = BTreeMap::new();
    for (partition, records) in by_partition {
        for (_, record) in records {
            let task = record
                .3
                .iter()
                .find(|(name, _)| name == "eddy.task")
                .map_or("none".to_string(), |(_, value)| text(value));
            grouped.entry((partition, task)).or_default().push(record);
        }
    }
    grouped
}

/// Loads seed 5 of a fault-free scenario, runs the job to the end (one
/// worker, bounded) and verifies it; runs the same scenario and seed on
/// the simulator; the input (partitions, offsets, records) and the
/// committed output (per output partition, each task's records in order:
/// key, value, timestamp, headers) must be equal.
fn sim_equals_real(file: &str) {
    const SEED: u64 = 5;
    let setup = setup(file, "exactly_once", 1_500, 1_000);
    setup.load_now(SEED);
    setup.drain("w1", 0);
    verify_clean(&setup);
    let scenario = Scenario::from_file(&setup.scenario).expect("the scenario");
    let report = run(&scenario, &RunOptions::new(Seed::new(SEED))).expect("the simulated run");
    assert!(report.faults.is_empty(), "a fault-free run");
    let sim = &report.observation;
    let real_input = read_topic(&setup.input, setup.partitions);
    assert_eq!(
        compared(&sim.input),
        real_input,
        "the same input partitions, offsets and records"
    );
    let real_output = per_task(read_topic(&setup.output, setup.partitions));
    let sim_output = per_task(compared(&sim.output));
    let total: usize = sim_output.values().map(Vec::len).sum();
    assert!(total > 0, "the simulated run committed output");
    for ((partition, task), records) in &sim_output {
        let real = real_output
            .get(&(*partition, task.clone()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            records.len(),
            real.len(),
            "{}: output partition {partition}, task {task}: record counts",
            setup.name
        );
        for (index, (sim_record, real_record)) in records.iter().zip(&real).enumerate() {
            assert_eq!(
                sim_record, real_record,
                "{}: output partition {partition}, task {task}, record {index}",
                setup.name
            );
        }
    }
    assert_eq!(sim_output.len(), real_output.len());
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn sim_vs_real_click_counts_same_seed_same_committed_output() {
    sim_equals_real("click-counts");
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn sim_vs_real_click_sessions_same_seed_same_committed_output() {
    sim_equals_real("click-sessions");
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn sim_vs_real_order_revenue_same_seed_same_committed_output() {
    sim_equals_real("order-revenue");
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn sim_vs_real_window_stats_same_seed_same_committed_output() {
    sim_equals_real("window-stats");
}
