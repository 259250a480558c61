//! Scenario files, workloads and scenario runs.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eddyline_engine::job::Job;
use eddyline_engine::worker::Mutant;
use eddyline_scenarios::checker::AnomalyKind;
use eddyline_scenarios::run::{RunOptions, RunReport, run};
use eddyline_scenarios::scenario::{
    DeliveryName, Expect, FaultKind, ListedFault, Scenario, Step, WorkloadKind,
};
use eddyline_scenarios::workload::{EventTimes, InputRecord, RecordClass, generate};
use eddyline_sim::Seed;

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn job_path(name: &str) -> PathBuf {
    scenarios_dir().join(format!("../jobs/{name}.toml"))
}

/// Every `*.toml` next to Cargo.toml but Cargo.toml: the shipped scenarios.
fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "toml")
                && path.file_name().is_some_and(|n| n != "Cargo.toml")
        })
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Scenario {
    Scenario::from_file(scenarios_dir().join(name)).unwrap()
}

#[test]
fn every_shipped_scenario_file_parses_and_each_mutant_has_a_control() {
    let files = shipped();
    assert!(files.len() >= 11, "{files:?}");
    let mut mutants = Vec::new();
    for file in &files {
        let scenario = Scenario::from_file(file).unwrap_or_else(|e| panic!("{e}"));
        if let Expect::Detect {
            mutant: Some(mutant),
            ..
        } = scenario.expect
        {
            mutants.push(mutant);
        }
    }
    mutants.sort();
    assert_eq!(mutants, Mutant::ALL.to_vec());
}

#[test]
fn the_example_in_the_format_documentation_parses() {
    let source = std::fs::read_to_string(scenarios_dir().join("src/scenario.rs")).unwrap();
    let example: String = source
        .lines()
        .skip_while(|line| *line != "//! ```toml")
        .skip(1)
        .take_while(|line| *line != "//! ```")
        .map(|line| {
            format!(
                "{}\n",
                line.trim_start_matches("//!").trim_start_matches(' ')
            )
        })
        .collect();
    let scenario = Scenario::from_toml_str(&example, "example.toml", &scenarios_dir())
        .unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(scenario.faults.at.len(), 1);
    assert_eq!(scenario.workload.kind, Some(WorkloadKind::Clicks));
}

/// A scenario built in code with every kind of listed fault.
fn rich_scenario() -> Scenario {
    let mut scenario = Scenario::new(std::fs::canonicalize(job_path("window-stats")).unwrap());
    scenario.delivery = Some(DeliveryName::AtLeastOnce);
    scenario.expect = Expect::Detect {
        anomaly: AnomalyKind::DuplicateOutput,
        mutant: Some(Mutant::SkipFencing),
    };
    scenario.workload.kind = Some(WorkloadKind::WindowStats);
    scenario.workload.key_skew = 1.2;
    scenario.faults.store_ack_before_sync_ms = Some(300);
    let host = || "w1".to_string();
    let kinds = vec![
        FaultKind::Crash { host: host() },
        FaultKind::Restart { host: host() },
        FaultKind::CrashAtStep {
            host: host(),
            step: Step::Offsets,
        },
        FaultKind::Leave { host: host() },
        FaultKind::Pause {
            host: host(),
            duration_ms: 100,
        },
        FaultKind::Freeze {
            host: host(),
            duration_ms: 100,
        },
        FaultKind::CrashBroker { broker: 1 },
        FaultKind::RestartBroker { broker: 1 },
        FaultKind::MoveLeader {
            topic: "events".into(),
            partition: 2,
            to: Some(0),
        },
        FaultKind::Partition {
            a: vec![host()],
            b: vec!["broker-0".into()],
        },
        FaultKind::Heal {
            a: vec![host()],
            b: vec!["broker-0".into()],
        },
        FaultKind::HealAll,
        FaultKind::MaxLatency { max_ms: 40 },
        FaultKind::Latency {
            a: vec![],
            b: vec![],
            min_ms: 1,
            max_ms: 5,
        },
        FaultKind::ExpireTransactions,
    ];
    scenario.faults.at = kinds
        .into_iter()
        .enumerate()
        .map(|(i, fault)| ListedFault {
            at_ms: 2_000 + 100 * i as u64,
            fault,
        })
        .collect();
    scenario
}

#[test]
fn a_scenario_written_with_to_toml_parses_back_to_an_equal_value() {
    let mut scenarios: Vec<Scenario> = shipped()
        .iter()
        .map(|file| Scenario::from_file(file).unwrap())
        .collect();
    scenarios.push(rich_scenario());
    for scenario in scenarios {
        let text = scenario.to_toml();
        let back = Scenario::from_toml_str(&text, "written.toml", Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, scenario, "{text}");
    }
}

/// The error of a scenario text (written next to the shipped ones).
fn error_of(text: &str) -> String {
    let error = Scenario::from_toml_str(text, "bad.toml", &scenarios_dir())
        .expect_err("refused")
        .to_string();
    assert_eq!(error.lines().count(), 1, "one line: {error}");
    assert!(error.starts_with("bad.toml"), "names the file: {error}");
    error
}

#[test]
fn a_bad_scenario_file_is_refused_in_one_line_naming_the_file_the_key_and_the_line() {
    let job = "job = \"../jobs/click-counts.toml\"\n";
    let unknown = error_of(&format!("{job}[workload]\nrecords = 10\nrecrods = 5\n"));
    assert!(unknown.contains("bad.toml:4"), "{unknown}");
    assert!(unknown.contains("workload.recrods"), "{unknown}");
    let wrong_type = error_of(&format!("{job}[workload]\nlate = \"many\"\n"));
    assert!(wrong_type.contains("bad.toml:3"), "{wrong_type}");
    assert!(wrong_type.contains("workload.late"), "{wrong_type}");
    let fraction = error_of(&format!("{job}\n[workload]\nbeyond_lateness = 1.5\n"));
    assert!(fraction.contains("bad.toml:4"), "{fraction}");
    assert!(fraction.contains("workload.beyond_lateness"), "{fraction}");
    assert!(fraction.contains("[0, 1]"), "{fraction}");
    let missing = error_of("job = \"../jobs/no-such-job.toml\"\n");
    assert!(
        missing.starts_with("bad.toml:1: `job`: cannot read"),
        "{missing}"
    );
    assert!(missing.contains("no-such-job"), "{missing}");
    let unfit = error_of(&format!("{job}[workload]\nkind = \"orders\"\n"));
    assert!(unfit.contains("bad.toml:3: `workload.kind`"), "{unfit}");
    let no_job = error_of("[workload]\nrecords = 10\n");
    assert!(no_job.contains("`job`: missing field"), "{no_job}");
    let no_time = error_of(&format!("{job}[[faults.at]]\nkind = \"heal-all\"\n"));
    assert!(no_time.contains("faults.at.at_ms"), "{no_time}");
    let short = error_of(&format!(
        "{job}[faults]\nuntil_ms = 500\nworker_crash_per_s = 1.0\n"
    ));
    assert!(
        short.contains("faults.until_ms") && short.contains(":3"),
        "{short}"
    );
    let anomaly = error_of(&format!("{job}expect = {{ detect = \"lost\" }}\n"));
    assert!(
        anomaly.contains("expect") && anomaly.contains("lost-output"),
        "{anomaly}"
    );
    let fault = error_of(&format!(
        "{job}[[faults.at]]\nat_ms = 2000\nkind = \"pause\"\nhost = \"w1\"\n"
    ));
    assert!(fault.contains("duration_ms"), "{fault}");
}

fn job(name: &str) -> Job {
    Job::from_file(job_path(name)).unwrap()
}

fn workload_of(name: &str, kind: WorkloadKind, records: usize, seed: u64) -> Vec<InputRecord> {
    let mut scenario = Scenario::new(job_path(name));
    scenario.workload.records = records;
    scenario.workload.burst_chance = 0.05;
    scenario.workload.idle_partitions = 1;
    generate(&scenario.workload, kind, &job(name), Seed::new(seed))
}

#[test]
fn a_workload_is_prefix_stable() {
    let cases = [
        ("window-stats", WorkloadKind::WindowStats),
        ("click-sessions", WorkloadKind::Clicks),
        ("order-revenue", WorkloadKind::Orders),
    ];
    for (name, kind) in cases {
        let long = workload_of(name, kind, 600, 7);
        let short = workload_of(name, kind, 250, 7);
        assert_eq!(long.len(), 600);
        assert_eq!(&long[..250], &short[..], "{name}");
        assert_ne!(
            workload_of(name, kind, 250, 8),
            short,
            "{name}: seeds differ"
        );
    }
}

#[test]
fn a_workload_is_sent_at_its_rate_above_a_record_per_millisecond_and_between_whole_milliseconds() {
    let send_times = |rate_per_s: f64| -> Vec<u64> {
        let mut scenario = Scenario::new(job_path("window-stats"));
        scenario.workload.records = 2_000;
        scenario.workload.rate_per_s = rate_per_s;
        generate(
            &scenario.workload,
            WorkloadKind::WindowStats,
            &job("window-stats"),
            Seed::new(3),
        )
        .iter()
        .map(|record| record.send_ms)
        .collect()
    };
    // The first record goes one interval after the start.
    // 5,000/s: five records in each millisecond, 2,000 in 400 ms.
    let fast = send_times(5_000.0);
    assert_eq!(&fast[..6], &[0, 0, 0, 0, 1, 1]);
    assert_eq!(fast.last(), Some(&400));
    // 800/s is 1.25 ms apart on average, not rounded to 1 ms (1,000/s).
    let between = send_times(800.0);
    assert_eq!(&between[..6], &[1, 2, 3, 5, 6, 7]);
    assert_eq!(between.last(), Some(&2_500));
    // Whole milliseconds stay as they were.
    let slow = send_times(40.0);
    assert_eq!(&slow[..3], &[25, 50, 75]);
}

/// Replays a workload per partition as a task would read it: each record's
/// class as the job's watermark and windows make it.
fn classes_seen(times: &EventTimes, records: &[InputRecord]) -> Vec<RecordClass> {
    let mut max_ts: BTreeMap<i32, i64> = BTreeMap::new();
    records
        .iter()
        .map(|record| {
            if matches!(
                record.class,
                RecordClass::Undecodable | RecordClass::Filtered
            ) {
                return record.class;
            }
            let ts = record.event_time_ms;
            let class = match max_ts.get(&record.partition) {
                None => RecordClass::InOrder,
                Some(&max) if ts >= max => RecordClass::InOrder,
                Some(&max) => match times.lateness(ts, times.watermark(max)) {
                    (false, _) => RecordClass::OutOfOrder,
                    (true, false) => RecordClass::Late,
                    (true, true) => RecordClass::BeyondLateness,
                },
            };
            let max = max_ts.entry(record.partition).or_insert(ts);
            *max = (*max).max(ts);
            class
        })
        .collect()
}

#[test]
fn a_workload_has_what_its_fractions_say_and_late_records_really_are_late() {
    for (name, kind) in [
        ("window-stats", WorkloadKind::WindowStats),
        ("click-counts", WorkloadKind::Clicks),
    ] {
        let records = workload_of(name, kind, 2_000, 3);
        let times = EventTimes::of_job(&job(name));
        let seen = classes_seen(&times, &records);
        let mut counts: BTreeMap<RecordClass, usize> = BTreeMap::new();
        for (record, seen) in records.iter().zip(&seen) {
            assert_eq!(record.class, *seen, "{name}: {record:?}");
            *counts.entry(*seen).or_default() += 1;
        }
        // Defaults: out of order 0.2, late 0.08, beyond 0.04, undecodable 0.01.
        let share = |class| counts.get(&class).copied().unwrap_or(0) as f64 / 2_000.0;
        assert!(
            (0.15..0.25).contains(&share(RecordClass::OutOfOrder)),
            "{name}: {counts:?}"
        );
        assert!(
            (0.05..0.11).contains(&share(RecordClass::Late)),
            "{name}: {counts:?}"
        );
        assert!(
            (0.025..0.06).contains(&share(RecordClass::BeyondLateness)),
            "{name}: {counts:?}"
        );
        assert!(
            (0.003..0.02).contains(&share(RecordClass::Undecodable)),
            "{name}: {counts:?}"
        );
    }
}

#[test]
fn an_idle_partition_gets_no_records_in_its_idle_stretch() {
    let records = workload_of("window-stats", WorkloadKind::WindowStats, 600, 4);
    let (from, to) = eddyline_scenarios::workload::IDLE_STRETCH_MS;
    let in_stretch = |r: &&InputRecord| (from..to).contains(&r.send_ms);
    assert!(records.iter().filter(in_stretch).count() > 100);
    assert!(!records.iter().filter(in_stretch).any(|r| r.partition == 0));
    assert!(records.iter().any(|r| r.partition == 0));
}

fn quiet(name: &str) -> Scenario {
    let mut scenario = Scenario::new(job_path(name));
    scenario.workload.records = 200;
    scenario.faults.until_ms = 6_000;
    scenario
}

fn run_seed(scenario: &Scenario, seed: u64) -> RunReport {
    run(scenario, &RunOptions::new(Seed::new(seed))).unwrap_or_else(|e| panic!("{e}"))
}

fn lines(by_partition: &BTreeMap<i32, Vec<eddyline_engine::transport::Message>>) -> usize {
    by_partition.values().map(Vec::len).sum()
}

#[test]
fn a_fault_free_run_drains_and_observes_output() {
    let report = run_seed(&quiet("click-counts"), 1);
    let observation = &report.observation;
    assert!(observation.drained, "stops: {:?}", report.stops);
    assert!(observation.drained_at_ms.unwrap() >= 6_000);
    assert!(
        observation.unstable.is_empty(),
        "{:?}",
        observation.unstable
    );
    assert_eq!(lines(&observation.input), 200);
    assert!(lines(&observation.output) > 10);
    assert!(lines(&observation.dead_letter) > 0);
    assert!(!observation.output_batches.is_empty());
    assert!(observation.output_markers.iter().any(|m| m.commit));
    assert!(!observation.committed_offsets.is_empty());
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    let settings: BTreeMap<_, _> = report.settings.iter().cloned().collect();
    for name in ["seed", "seed.workload", "timings", "brokers", "workers"] {
        assert!(settings.contains_key(name), "{name}: {settings:?}");
    }
}

#[test]
fn the_same_seed_twice_gives_the_same_trace_hash_and_observation() {
    let mut scenario = load("window-stats-faults.toml");
    scenario.workload.records = 200;
    let first = run_seed(&scenario, 3);
    let second = run_seed(&scenario, 3);
    assert_eq!(first.trace.hash, second.trace.hash);
    assert_eq!(first.trace.events, second.trace.events);
    assert_eq!(first.observation, second.observation);
    assert_eq!(first.faults, second.faults);
    assert!(!first.faults.is_empty());
}

#[test]
fn a_listed_faults_scenario_applies_exactly_its_faults() {
    let mut scenario = quiet("window-stats");
    let fault = |at_ms, fault| ListedFault { at_ms, fault };
    scenario.faults.at = vec![
        fault(2_000, FaultKind::Crash { host: "w1".into() }),
        fault(2_500, FaultKind::CrashBroker { broker: 2 }),
        fault(3_000, FaultKind::Restart { host: "w1".into() }),
        fault(3_200, FaultKind::RestartBroker { broker: 2 }),
        fault(3_500, FaultKind::Leave { host: "w2".into() }),
        fault(
            3_600,
            FaultKind::Freeze {
                host: "w3".into(),
                duration_ms: 1_000,
            },
        ),
        fault(4_500, FaultKind::Restart { host: "w2".into() }),
    ];
    let report = run_seed(&scenario, 2);
    assert_eq!(report.faults, scenario.faults.at);
    assert!(report.observation.drained, "stops: {:?}", report.stops);
}

#[test]
fn every_kind_of_listed_fault_is_applied_at_its_time_and_a_crash_at_a_step_at_that_step() {
    let mut scenario = rich_scenario();
    scenario.delivery = None;
    scenario.expect = Expect::Pass;
    scenario.workload.records = 200;
    // Without the leave: a worker that left stays out until the heal.
    scenario
        .faults
        .at
        .retain(|f| !matches!(f.fault, FaultKind::Leave { .. }));
    // A seed in which w1 owns a partition after its restart, so it reaches
    // the offsets step (in about half the seeds it owns none by then).
    let report = run_seed(&scenario, 2);
    let (at_step, others): (Vec<_>, Vec<_>) = report
        .faults
        .iter()
        .partition(|f| matches!(f.fault, FaultKind::CrashAtStep { .. }));
    let listed: Vec<&ListedFault> = scenario
        .faults
        .at
        .iter()
        .filter(|f| !matches!(f.fault, FaultKind::CrashAtStep { .. }))
        .collect();
    assert_eq!(others, listed);
    assert_eq!(at_step.len(), 1, "{:?}", report.faults);
    assert!(at_step[0].at_ms >= 2_200, "{:?}", at_step[0]);
    assert!(report.observation.drained, "stops: {:?}", report.stops);
}

/// Runs `scenario` with `seed`, then its reported faults as a listed
/// scenario (through its file); both runs' faults and observations.
fn drawn_and_replayed(scenario: &Scenario, seed: u64) -> (RunReport, RunReport) {
    let drawn = run_seed(scenario, seed);
    let replay = drawn.replay(scenario);
    assert!(!replay.faults.draws());
    let text = replay.to_toml();
    let replay = Scenario::from_toml_str(&text, "replay.toml", Path::new("/"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let replayed = run_seed(&replay, seed);
    (drawn, replayed)
}

#[test]
fn a_runs_reported_faults_replayed_as_a_listed_scenario_apply_the_same_faults() {
    let scenario = load("click-counts-faults.toml");
    let (drawn, replayed) = drawn_and_replayed(&scenario, 1);
    assert!(drawn.faults.len() > 5, "{:?}", drawn.faults);
    assert!(
        drawn
            .faults
            .iter()
            .any(|f| matches!(f.fault, FaultKind::CrashAtStep { .. })),
        "{:?}",
        drawn.faults
    );
    assert_eq!(replayed.faults, drawn.faults);
    assert_eq!(replayed.observation, drawn.observation);
}

#[test]
fn a_run_with_kafkas_own_timings_drains_too() {
    let mut scenario = quiet("window-stats");
    scenario.cluster.timings = eddyline_scenarios::scenario::TimingsName::Kafka38;
    scenario.cluster.session_timeout_ms = 6_000;
    scenario.cluster.checkpoint_store = eddyline_scenarios::scenario::StoreKind::Topic;
    let report = run_seed(&scenario, 4);
    assert!(report.observation.drained, "stops: {:?}", report.stops);
    assert!(lines(&report.observation.output) > 10);
    let settings: BTreeMap<_, _> = report.settings.iter().cloned().collect();
    assert_eq!(settings["timings"], "kafka-3.8");
}

/// The input's writer is the world outside the job: when its idempotent
/// producer fails for good, it replaces it and sends again what was not
/// acknowledged, and the job's output is still judged exactly once. In
/// seed 1051 a broker cut off by a network partition comes back as the
/// stale leader of `orders-0` and answers the feeder's held request with
/// OUT_OF_ORDER_SEQUENCE_NUMBER for the head of the line, which librdkafka
/// treats as a fatal sequence desynchronization.
#[test]
fn a_feeder_whose_producer_fails_for_good_replaces_it_and_the_run_still_passes() {
    let path = scenarios_dir().join("order-revenue-faults.toml");
    let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = run_seed(&scenario, 1051);
    assert!(
        report
            .feeder_failures
            .iter()
            .any(|why| why.contains("sequence desynchronization")),
        "{:?}",
        report.feeder_failures
    );
    assert!(report.observation.drained, "stops: {:?}", report.stops);
    let job = eddyline_engine::job::Job::from_file(&scenario.job).unwrap();
    let anomalies = eddyline_scenarios::checker::check(&job, &report.observation).unwrap();
    assert!(anomalies.is_empty(), "{anomalies:?}");
}
