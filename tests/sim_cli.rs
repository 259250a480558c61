//! `eddy sim run|sweep|shrink` end to end, through the built binary: trace
//! hashes and repro lines, mutant controls, `--dump` (checked against
//! `eddy window`), bad input, sweeps (JSON, mutants, shards, directories)
//! and shrinking.
//!
//! Most tests run small scenario files written into a temporary directory
//! (100 records, a 5 s safety phase) over the shipped jobs, and skip the
//! determinism check where determinism is not the point, to keep the file
//! fast.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const WINDOW_STATS_JOB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/window-stats.toml");
const CLICK_COUNTS_JOB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/click-counts.toml");
const MUTANT_FIRE_EARLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scenarios/mutant-fire-early.toml"
);

/// Runs `eddy` without the caller's `EDDY_SEED`.
fn eddy<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env_remove("EDDY_SEED")
        .output()
        .expect("running eddy")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Both streams, for assertion messages.
fn both(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    )
}

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sim_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    dir
}

/// A small scenario over `job`: 100 records, worker crashes and pauses
/// until 5 s.
fn small_scenario(job: &str, kind: &str) -> String {
    format!(
        "job = {job:?}\n\
         seeds = \"1..5\"\n\
         expect = \"pass\"\n\
         \n\
         [workload]\n\
         kind = {kind:?}\n\
         records = 100\n\
         \n\
         [faults]\n\
         until_ms = 5_000\n\
         worker_crash_per_s = 0.3\n\
         pause_per_s = 0.2\n\
         \n\
         [checker]\n\
         liveness_ms = 30_000\n"
    )
}

/// Writes `text` as `dir/name` and returns its path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a scenario file");
    path.display().to_string()
}

/// A small window-stats scenario in `dir`.
fn small_window_stats(dir: &Path) -> String {
    write(
        dir,
        "window-stats-small.toml",
        &small_scenario(WINDOW_STATS_JOB, "window-stats"),
    )
}

/// A small click-counts scenario in `dir`.
fn small_click_counts(dir: &Path) -> String {
    write(
        dir,
        "click-counts-small.toml",
        &small_scenario(CLICK_COUNTS_JOB, "clicks"),
    )
}

/// The value after `prefix` on the first line that starts with it.
fn line_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|line| line.strip_prefix(prefix))
}

/// The `trace hash 0x...` of a run's output.
fn trace_hash(text: &str) -> String {
    let line = line_after(text, "run: ").unwrap_or_else(|| panic!("no run line:\n{text}"));
    let (_, rest) = line
        .split_once("trace hash ")
        .unwrap_or_else(|| panic!("no trace hash: {line}"));
    rest.split_whitespace().next().unwrap().to_string()
}

/// The anomaly kinds of a `verdict: FAIL: N anomalies (a, b)` line.
fn anomaly_kinds(text: &str) -> Vec<String> {
    let verdict = line_after(text, "verdict: FAIL: ")
        .unwrap_or_else(|| panic!("no failing verdict:\n{text}"));
    let (_, kinds) = verdict.split_once('(').expect("kinds in parentheses");
    kinds
        .trim_end_matches(')')
        .split(", ")
        .map(str::to_string)
        .collect()
}

/// The `faults applied: K` of a run's output.
fn faults_applied(text: &str) -> usize {
    line_after(text, "faults applied: ")
        .unwrap_or_else(|| panic!("no faults line:\n{text}"))
        .trim()
        .parse()
        .expect("a fault count")
}

/// Parses a sweep's `--json` document (the whole of stdout).
fn sweep_json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("one JSON document: {e}\n{}", both(output)))
}

fn u64s(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_u64().expect("a number"))
        .collect()
}

/// Asserts a bad-input exit: status 2 and one line on stderr containing
/// each of `names`.
fn assert_bad_input(output: &Output, names: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{}", both(output));
    let text = stderr(output);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    for name in names {
        assert!(text.contains(name), "{name:?} in {text}");
    }
    assert!(
        stdout(output).is_empty(),
        "nothing on stdout: {}",
        both(output)
    );
}

// ---------------------------------------------------------------- sim run

#[test]
fn sim_run_prints_the_same_trace_hash_for_a_seed_and_another_for_another_seed() {
    let dir = temp_dir("run_hash");
    let scenario = small_window_stats(&dir);
    let first = eddy(&["sim", "run", &scenario, "--seed", "2"]);
    let again = eddy(&[
        "sim",
        "run",
        &scenario,
        "--seed",
        "2",
        "--no-determinism-check",
    ]);
    let other = eddy(&[
        "sim",
        "run",
        &scenario,
        "--seed",
        "3",
        "--no-determinism-check",
    ]);
    for output in [&first, &again, &other] {
        assert_eq!(output.status.code(), Some(0), "{}", both(output));
    }
    let text = stdout(&first);
    assert!(
        text.contains("(run twice: hashes checked)"),
        "the determinism check ran: {text}"
    );
    assert_eq!(trace_hash(&text), trace_hash(&stdout(&again)));
    assert_ne!(trace_hash(&text), trace_hash(&stdout(&other)));
    assert!(text.lines().any(|l| l == "verdict: pass"), "{text}");
    let repro = format!("repro: eddy sim run {scenario} --seed 2");
    assert!(text.lines().any(|l| l == repro), "{repro:?} in {text}");
}

#[test]
fn sim_run_without_a_seed_runs_the_first_of_the_scenarios_seeds() {
    let dir = temp_dir("run_default_seed");
    let scenario = small_window_stats(&dir);
    let output = eddy(&["sim", "run", &scenario, "--no-determinism-check"]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let explicit = eddy(&[
        "sim",
        "run",
        &scenario,
        "--seed",
        "1",
        "--no-determinism-check",
    ]);
    assert_eq!(trace_hash(&stdout(&output)), trace_hash(&stdout(&explicit)));
    assert!(stdout(&output).contains(&format!("repro: eddy sim run {scenario} --seed 1")));
}

/// The report's trace excerpt is the one around the first `kind` anomaly:
/// its marked (`>>`) event is the leader append of the batch holding the
/// anomaly's record.
fn assert_trace_centred_on_first_anomaly(text: &str, kind: &str) {
    let first = text
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{kind}: ")))
        .unwrap_or_else(|| panic!("no {kind} anomaly: {text}"));
    let place = first.split_whitespace().next().expect("a record");
    let (partition_name, offset) = place.split_once('@').expect("topic-partition@offset");
    let offset: i64 = offset.parse().expect("an offset");
    assert!(
        text.contains(&format!(
            "trace around the first {kind}: where {place} was written"
        )),
        "{text}"
    );
    let hit = text
        .lines()
        .find(|line| line.starts_with(">>"))
        .unwrap_or_else(|| panic!("no marked event: {text}"));
    let words: Vec<&str> = hit.split_whitespace().collect();
    let value = |name: &str| -> i64 {
        words
            .iter()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {hit}"))
    };
    assert_eq!(words[3], "append", "{hit}");
    assert_eq!(words[4], partition_name, "{hit}");
    let base = value("base_offset");
    assert!(
        (base..base + value("records")).contains(&offset),
        "{hit} holds {offset}"
    );
}

#[test]
fn sim_run_of_the_fire_early_control_fails_with_premature_fire_and_its_repro_reproduces_it() {
    let output = eddy(&["sim", "run", MUTANT_FIRE_EARLY, "--seed", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", both(&output));
    let text = stdout(&output);
    let kinds = anomaly_kinds(&text);
    assert!(kinds.iter().any(|k| k == "premature-fire"), "{text}");
    assert!(
        !kinds.iter().any(|k| k == "nondeterminism"),
        "run twice, the same trace: {text}"
    );
    assert_trace_centred_on_first_anomaly(&text, "premature-fire");
    let repro = line_after(&text, "repro: ").expect("a repro line");
    assert_eq!(
        repro,
        format!("eddy sim run {MUTANT_FIRE_EARLY} --seed 1 --mutant fire-early")
    );
    let words: Vec<&str> = repro.split_whitespace().collect();
    assert_eq!(words[0], "eddy");
    let mut args = words[1..].to_vec();
    args.push("--no-determinism-check");
    let again = eddy(&args);
    assert_eq!(again.status.code(), Some(1), "{}", both(&again));
    assert_eq!(anomaly_kinds(&stdout(&again)), kinds);
    assert_eq!(trace_hash(&stdout(&again)), trace_hash(&text));
}

#[test]
fn sim_run_with_a_mutant_on_a_pass_scenario_names_it_in_the_repro() {
    let dir = temp_dir("run_mutant_flag");
    let scenario = small_window_stats(&dir);
    let output = eddy(&[
        "sim",
        "run",
        &scenario,
        "--seed",
        "1",
        "--mutant",
        "fire-early",
        "--no-determinism-check",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", both(&output));
    let text = stdout(&output);
    assert!(
        anomaly_kinds(&text).iter().any(|k| k == "premature-fire"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "repro: eddy sim run {scenario} --seed 1 --mutant fire-early"
        )),
        "{text}"
    );
}

// ---------------------------------------------------------------- --dump

/// Reads a JSON-lines file; every line must parse.
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}: {line}", path.display(), n + 1))
        })
        .collect()
}

fn assert_fields(value: &Value, fields: &[&str], file: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{file}: not an object: {value}"));
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(keys, expected, "{file}: {value}");
}

/// A firing without the fields only `eddy window` prints.
fn without_step_and_watermark(mut value: Value) -> Value {
    let object = value.as_object_mut().expect("a firing object");
    object.remove("step");
    object.remove("watermark");
    value
}

/// The `{"key","ts","value"}` event of an input value, if `eddy window`
/// can read it (the undecodable records are the job's dead letters).
fn event(value: &Value) -> Option<Value> {
    let key = value.get("key")?.as_str()?;
    let ts = value.get("ts")?.as_i64()?;
    let number = value.get("value")?.as_i64()?;
    Some(serde_json::json!({"key": key, "ts": ts, "value": number}))
}

#[test]
fn sim_run_dump_writes_json_lines_whose_firings_eddy_window_reproduces_per_partition() {
    let dir = temp_dir("dump");
    let scenario = small_window_stats(&dir);
    check_window_stats_dump(&dir, &scenario, "2", 100);
}

#[test]
fn sim_run_dump_under_the_shipped_fault_mix_matches_eddy_window_per_partition() {
    let dir = temp_dir("dump_faults");
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/window-stats-faults.toml"
    );
    check_window_stats_dump(&dir, scenario, "1", 400);
}

/// Runs a window-stats scenario's seed with `--dump`, checks the files'
/// fields, and checks each input partition's firings against `eddy window`.
fn check_window_stats_dump(dir: &Path, scenario: &str, seed: &str, expected_records: usize) {
    let dump = dir.join("dump");
    let output = eddy(&[
        "sim",
        "run",
        scenario,
        "--seed",
        seed,
        "--no-determinism-check",
        "--dump",
        dump.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("dump: {}", dump.display())),
        "{text}"
    );

    let input = json_lines(&dump.join("input.jsonl"));
    let committed = json_lines(&dump.join("output.jsonl"));
    let late = json_lines(&dump.join("late.jsonl"));
    let dead = json_lines(&dump.join("dead-letter.jsonl"));
    let spec = dump.join("spec.json");
    let _: Value = serde_json::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    for line in &input {
        assert_fields(
            line,
            &["partition", "offset", "key", "ts", "value"],
            "input",
        );
    }
    for line in &late {
        assert_fields(line, &["key", "ts", "value"], "late");
    }
    for line in &dead {
        assert_fields(line, &["partition", "offset", "reason"], "dead-letter");
        assert!(
            line["partition"].is_i64() && line["offset"].is_i64(),
            "{line}"
        );
        assert!(line["reason"].is_string(), "{line}");
    }
    for line in &committed {
        assert_fields(
            line,
            &[
                "key",
                "window_start",
                "window_end",
                "count",
                "sum",
                "min_ts",
                "max_ts",
                "kind",
            ],
            "output",
        );
    }
    assert!(!committed.is_empty(), "some firings were committed");

    // The input the run read: every record the workload wrote, each once
    // (the worker reads at least those: more after restores rewind it).
    let records: usize = line_after(&text, "  workload.records = ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("workload.records in {text}"));
    assert_eq!(records, expected_records);
    assert_eq!(input.len(), records, "one input line per record");
    let worker = line_after(&text, "worker: ").expect("a worker line");
    let records_in: usize = worker
        .split_once("records_in: ")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("records_in in {worker}"));
    assert!(input.len() <= records_in, "{worker}");
    let offsets: BTreeSet<(i64, i64)> = input
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(offsets.len(), input.len(), "each record once");
    for line in &dead {
        let at = (
            line["partition"].as_i64().unwrap(),
            line["offset"].as_i64().unwrap(),
        );
        assert!(
            offsets.contains(&at),
            "a dead letter of an input record: {line}"
        );
    }

    // Each input partition through `eddy window`: its keys' firings.
    let mut events: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for line in &input {
        if let Some(event) = event(&line["value"]) {
            assert_eq!(
                line["key"], event["key"],
                "the record key is the event's: {line}"
            );
            events
                .entry(line["partition"].as_i64().unwrap())
                .or_default()
                .push(event);
        }
    }
    assert!(events.len() > 1, "several partitions: {events:?}");
    let mut keys_seen = BTreeSet::new();
    for (partition, events) in &events {
        let keys: BTreeSet<&str> = events.iter().map(|e| e["key"].as_str().unwrap()).collect();
        for key in &keys {
            assert!(keys_seen.insert(key.to_string()), "{key} in one partition");
        }
        let events_file = dir.join(format!("events-{partition}.jsonl"));
        let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
        std::fs::write(&events_file, lines).unwrap();
        let window = eddy(&[
            "window",
            "--spec",
            spec.to_str().unwrap(),
            "--input",
            events_file.to_str().unwrap(),
        ]);
        assert_eq!(window.status.code(), Some(0), "{}", both(&window));
        let expected: BTreeSet<String> = stdout(&window)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v.get("late").is_none())
            .map(|v| without_step_and_watermark(v).to_string())
            .collect();
        let actual: BTreeSet<String> = committed
            .iter()
            .filter(|f| keys.contains(f["key"].as_str().unwrap()))
            .map(Value::to_string)
            .collect();
        assert_eq!(actual, expected, "partition {partition}'s firings");
    }
    let committed_keys: BTreeSet<String> = committed
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect();
    assert!(committed_keys.is_subset(&keys_seen), "{committed_keys:?}");
}

#[test]
fn sim_run_dump_of_a_job_without_window_fields_writes_no_spec() {
    let dir = temp_dir("dump_clicks");
    let scenario = small_click_counts(&dir);
    let dump = dir.join("dump");
    let output = eddy(&[
        "sim",
        "run",
        &scenario,
        "--seed",
        "1",
        "--no-determinism-check",
        "--dump",
        dump.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    for name in [
        "input.jsonl",
        "output.jsonl",
        "late.jsonl",
        "dead-letter.jsonl",
    ] {
        json_lines(&dump.join(name));
    }
    assert!(!dump.join("spec.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------- bad input

#[test]
fn sim_run_of_a_missing_scenario_file_exits_2_naming_it() {
    let dir = temp_dir("missing");
    let missing = dir.join("no-such-scenario.toml");
    let output = eddy(&["sim", "run", missing.to_str().unwrap()]);
    assert_bad_input(&output, &["no-such-scenario.toml"]);
    let output = eddy(&["sim", "sweep", missing.to_str().unwrap()]);
    assert_bad_input(&output, &["no-such-scenario.toml"]);
    let output = eddy(&["sim", "shrink", missing.to_str().unwrap(), "--seed", "1"]);
    assert_bad_input(&output, &["no-such-scenario.toml"]);
}

#[test]
fn sim_run_of_a_scenario_with_an_unknown_key_exits_2_naming_the_file_and_the_key() {
    let dir = temp_dir("unknown_key");
    let scenario = write(
        &dir,
        "typo.toml",
        &format!("job = {WINDOW_STATS_JOB:?}\n\n[workload]\nrecords = 100\nrecrods = 5\n"),
    );
    let output = eddy(&["sim", "run", &scenario]);
    assert_bad_input(&output, &["typo.toml", "recrods"]);
    let output = eddy(&["sim", "sweep", &scenario, "--seeds", "1..2"]);
    assert_bad_input(&output, &["typo.toml", "recrods"]);
}

#[test]
fn sim_run_with_a_bad_seed_or_an_unknown_mutant_exits_2() {
    let dir = temp_dir("bad_flags");
    let scenario = small_window_stats(&dir);
    assert_bad_input(
        &eddy(&["sim", "run", &scenario, "--seed", "not-a-seed"]),
        &["--seed", "not-a-seed"],
    );
    assert_bad_input(
        &eddy(&["sim", "shrink", &scenario, "--seed", "not-a-seed"]),
        &["--seed", "not-a-seed"],
    );
    assert_bad_input(
        &eddy(&["sim", "run", &scenario, "--mutant", "no-such-mutant"]),
        &["--mutant", "no-such-mutant"],
    );
    assert_bad_input(
        &eddy(&["sim", "sweep", &scenario, "--mutant", "no-such-mutant"]),
        &["--mutant", "no-such-mutant"],
    );
}

#[test]
fn sim_run_with_a_bad_eddy_seed_exits_2_naming_the_variable() {
    let dir = temp_dir("bad_env_seed");
    let scenario = small_window_stats(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["sim", "run", &scenario])
        .env("EDDY_SEED", "not-a-seed")
        .output()
        .expect("running eddy");
    assert_bad_input(&output, &["EDDY_SEED", "not-a-seed"]);
}

#[test]
fn sim_sweep_with_an_empty_seed_range_or_a_bad_shard_exits_2() {
    let dir = temp_dir("bad_sweep_flags");
    let scenario = small_window_stats(&dir);
    assert_bad_input(
        &eddy(&["sim", "sweep", &scenario, "--seeds", "5..1"]),
        &["5..1"],
    );
    assert_bad_input(
        &eddy(&["sim", "sweep", &scenario, "--shard", "0/2"]),
        &["0/2"],
    );
    assert_bad_input(
        &eddy(&["sim", "sweep", &scenario, "--shard", "3/2"]),
        &["3/2"],
    );
    assert_bad_input(
        &eddy(&["sim", "sweep", &scenario, "--jobs", "0"]),
        &["--jobs"],
    );
}

#[test]
fn sim_sweep_of_a_directory_without_scenario_files_exits_2_naming_it() {
    let dir = temp_dir("no_scenarios");
    std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a scenario\n").unwrap();
    let output = eddy(&["sim", "sweep", dir.to_str().unwrap()]);
    assert_bad_input(&output, &[dir.to_str().unwrap(), "no scenario files"]);
}

// ---------------------------------------------------------------- sim sweep

#[test]
fn sim_sweep_json_prints_one_document_with_per_scenario_counts() {
    let dir = temp_dir("sweep_json");
    let scenario = small_window_stats(&dir);
    let output = eddy(&[
        "sim", "sweep", &scenario, "--seeds", "1..5", "--jobs", "2", "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    assert!(
        stderr(&output).is_empty(),
        "no progress bar off a terminal: {}",
        both(&output)
    );
    let summary = sweep_json(&output);
    assert_eq!(summary["ok"], true, "{summary}");
    let scenarios = summary["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 1, "{summary}");
    let s = &scenarios[0];
    assert_eq!(s["scenario"], scenario.as_str());
    assert_eq!(s["expect"], "pass");
    assert_eq!(s["seeds"], 4);
    assert_eq!(s["clean"], 4);
    assert_eq!(s["failing"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(s["ok"], true);
}

#[test]
fn sim_sweep_with_a_mutant_on_a_pass_scenario_exits_0_only_when_a_seed_detects_it() {
    let dir = temp_dir("sweep_mutant");
    let scenario = small_click_counts(&dir);
    let output = eddy(&[
        "sim",
        "sweep",
        &scenario,
        "--seeds",
        "1..3",
        "--jobs",
        "2",
        "--json",
        "--mutant",
        "drop-late",
    ]);
    let summary = sweep_json(&output);
    let s = &summary["scenarios"][0];
    assert_eq!(s["mutant"], "drop-late", "{s}");
    assert_eq!(s["expect"], "detect any", "{s}");
    let detected = u64s(&s["detected_seeds"]);
    assert_eq!(
        output.status.code(),
        Some(if detected.is_empty() { 1 } else { 0 }),
        "{}",
        both(&output)
    );
    assert!(!detected.is_empty(), "drop-late is detected: {s}");
    assert!(
        s["anomalies"]["silent-drop"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );

    // A mutant no seed can detect (a workload without records beyond the
    // allowed lateness gives drop-late nothing to drop): exit 1.
    let quiet = write(
        &dir,
        "nothing-late.toml",
        &small_scenario(CLICK_COUNTS_JOB, "clicks").replace(
            "records = 100\n",
            "records = 100\nlate = 0.0\nbeyond_lateness = 0.0\n",
        ),
    );
    let output = eddy(&[
        "sim",
        "sweep",
        &quiet,
        "--seeds",
        "1..3",
        "--jobs",
        "2",
        "--json",
        "--mutant",
        "drop-late",
    ]);
    let summary = sweep_json(&output);
    let s = &summary["scenarios"][0];
    assert_eq!(u64s(&s["detected_seeds"]), Vec::<u64>::new(), "{s}");
    assert_eq!(s["ok"], false, "{s}");
    assert_eq!(output.status.code(), Some(1), "{}", both(&output));
}

/// The seed count and the detected seeds of a sweep's `--json` (one
/// scenario).
fn seed_outcomes(summary: &Value) -> (u64, Vec<u64>) {
    let s = &summary["scenarios"][0];
    (s["seeds"].as_u64().unwrap(), u64s(&s["detected_seeds"]))
}

#[test]
fn sim_sweep_shards_together_cover_the_unsharded_seeds_exactly_once() {
    let dir = temp_dir("sweep_shards");
    // Every seed detects drop-late, so the detected seeds are the seeds
    // each sweep ran.
    let scenario = small_click_counts(&dir);
    let sweep = |shard: Option<&str>| {
        let mut args = vec![
            "sim",
            "sweep",
            &scenario,
            "--seeds",
            "1..6",
            "--jobs",
            "2",
            "--json",
            "--mutant",
            "drop-late",
        ];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = eddy(&args);
        assert_eq!(output.status.code(), Some(0), "{}", both(&output));
        sweep_json(&output)
    };
    assert_eq!(seed_outcomes(&sweep(None)), (5, vec![1, 2, 3, 4, 5]));
    assert_eq!(seed_outcomes(&sweep(Some("1/2"))), (3, vec![1, 3, 5]));
    assert_eq!(seed_outcomes(&sweep(Some("2/2"))), (2, vec![2, 4]));

    // Per seed: at-least-once delivery under frequent worker crashes
    // repeats outputs on some seeds, not all; a `pass` sweep names each
    // failing seed (table and JSON), and the shards name each once.
    let at_least_once = write(
        &dir,
        "at-least-once.toml",
        &small_scenario(WINDOW_STATS_JOB, "window-stats")
            .replace("seeds = ", "delivery = \"at_least_once\"\nseeds = ")
            .replace("worker_crash_per_s = 0.3", "worker_crash_per_s = 1.0"),
    );
    let failing = |shard: Option<&str>, json: bool| {
        let mut args = vec![
            "sim",
            "sweep",
            &at_least_once,
            "--seeds",
            "1..7",
            "--jobs",
            "2",
        ];
        if json {
            args.push("--json");
        }
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = eddy(&args);
        let seeds = if json {
            let summary = sweep_json(&output);
            let s = &summary["scenarios"][0];
            let mut seeds: Vec<u64> = s["failing"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["seed"].as_u64().unwrap())
                .collect();
            let clean = s["clean"].as_u64().unwrap() as usize;
            assert_eq!(clean + seeds.len(), s["seeds"].as_u64().unwrap() as usize);
            seeds.sort_unstable();
            seeds
        } else {
            failing_seeds(&output)
        };
        let expected = if seeds.is_empty() { 0 } else { 1 };
        assert_eq!(output.status.code(), Some(expected), "{}", both(&output));
        seeds
    };
    let unsharded = failing(None, true);
    assert!(
        !unsharded.is_empty() && unsharded.len() < 6,
        "some seeds fail, not all: {unsharded:?}"
    );
    assert_eq!(
        failing(None, false),
        unsharded,
        "the table names the same seeds"
    );
    let first = failing(Some("1/2"), true);
    let second = failing(Some("2/2"), false);
    assert!(first.iter().all(|seed| seed % 2 == 1), "{first:?}");
    assert!(second.iter().all(|seed| seed % 2 == 0), "{second:?}");
    let mut both_shards = first;
    both_shards.extend(second);
    both_shards.sort_unstable();
    assert_eq!(both_shards, unsharded);
}

#[test]
fn sim_sweep_repro_of_a_failing_seed_reproduces_its_anomalies() {
    let dir = temp_dir("sweep_repro");
    let scenario = write(
        &dir,
        "at-least-once.toml",
        &small_scenario(WINDOW_STATS_JOB, "window-stats")
            .replace("seeds = ", "delivery = \"at_least_once\"\nseeds = ")
            .replace("worker_crash_per_s = 0.3", "worker_crash_per_s = 1.0"),
    );
    let output = eddy(&[
        "sim", "sweep", &scenario, "--seeds", "1..3", "--jobs", "2", "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", both(&output));
    let summary = sweep_json(&output);
    let failing = &summary["scenarios"][0]["failing"][0];
    let repro = failing["repro"].as_str().expect("a repro command");
    let seed = failing["seed"].as_u64().unwrap();
    assert_eq!(repro, format!("eddy sim run {scenario} --seed {seed}"));
    let kinds: Vec<String> = failing["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "duplicate-output"), "{failing}");
    let words: Vec<&str> = repro.split_whitespace().collect();
    let again = eddy(&words[1..]);
    assert_eq!(again.status.code(), Some(1), "{}", both(&again));
    assert_eq!(anomaly_kinds(&stdout(&again)), kinds, "{}", both(&again));
    let first = failing["first"].as_str().unwrap();
    assert!(
        stdout(&again).lines().any(|l| l.trim() == first),
        "the first anomaly {first:?}: {}",
        both(&again)
    );
}

#[test]
fn sim_sweep_shard_without_seeds_of_a_control_is_not_a_failure() {
    let dir = temp_dir("sweep_empty_shard");
    let scenario = small_click_counts(&dir);
    let args = |json: bool| {
        let mut args = vec![
            "sim",
            "sweep",
            &scenario,
            "--seeds",
            "1..2",
            "--shard",
            "2/2",
            "--mutant",
            "drop-late",
        ];
        if json {
            args.push("--json");
        }
        eddy(&args)
    };
    let output = args(true);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let summary = sweep_json(&output);
    assert_eq!(summary["scenarios"][0]["seeds"], 0, "{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    let output = args(false);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    assert!(
        stdout(&output).contains("no seeds in this shard"),
        "{}",
        both(&output)
    );
}

/// The failing seeds a sweep's table names (`PATH: seed N FAILED: ...`).
fn failing_seeds(output: &Output) -> Vec<u64> {
    let text = stdout(output);
    let mut seeds: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split_once(": seed ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(" FAILED").map(|(n, _)| n.parse().unwrap()))
        .collect();
    seeds.sort_unstable();
    seeds
}

#[test]
fn sim_sweep_of_a_directory_runs_every_toml_but_cargo_toml() {
    let dir = temp_dir("sweep_dir");
    small_window_stats(&dir);
    small_click_counts(&dir);
    std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    std::fs::write(dir.join("README.md"), "scenarios\n").unwrap();
    let output = eddy(&[
        "sim",
        "sweep",
        dir.to_str().unwrap(),
        "--seeds",
        "1..3",
        "--jobs",
        "2",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let summary = sweep_json(&output);
    let names: Vec<String> = summary["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            Path::new(s["scenario"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["click-counts-small.toml", "window-stats-small.toml"],
        "{summary}"
    );
    for s in summary["scenarios"].as_array().unwrap() {
        assert_eq!(
            (s["seeds"].as_u64(), s["clean"].as_u64()),
            (Some(2), Some(2))
        );
    }
}

// ---------------------------------------------------------------- sim shrink

#[test]
fn sim_shrink_prints_a_smaller_scenario_that_still_fails_the_same_way() {
    let dir = temp_dir("shrink");
    let scenario = small_window_stats(&dir);
    let seed = "4";
    let original = eddy(&[
        "sim",
        "run",
        &scenario,
        "--seed",
        seed,
        "--mutant",
        "fire-early",
        "--no-determinism-check",
    ]);
    assert_eq!(original.status.code(), Some(1), "{}", both(&original));
    let faults_before = faults_applied(&stdout(&original));
    assert!(faults_before > 0, "the seed has faults to shrink");

    let output = eddy(&[
        "sim",
        "shrink",
        &scenario,
        "--seed",
        seed,
        "--mutant",
        "fire-early",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let minimal = stdout(&output);
    let target = minimal
        .lines()
        .find_map(|l| l.split_once("it fails with "))
        .map(|(_, kind)| kind.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("the target anomaly: {minimal}"));
    let file = write(&dir, "minimal.toml", &minimal);

    let rerun = eddy(&[
        "sim",
        "run",
        &file,
        "--seed",
        seed,
        "--mutant",
        "fire-early",
        "--no-determinism-check",
    ]);
    assert_eq!(rerun.status.code(), Some(1), "{}", both(&rerun));
    let rerun_text = stdout(&rerun);
    assert!(
        anomaly_kinds(&rerun_text).contains(&target),
        "still {target}: {rerun_text}"
    );
    assert!(
        anomaly_kinds(&stdout(&original)).contains(&target),
        "the original fails with {target}"
    );
    let faults_after = faults_applied(&rerun_text);
    let listed = minimal.matches("[[faults.at]]").count();
    assert!(
        faults_after < faults_before,
        "{faults_after} < {faults_before}"
    );
    assert!(listed < faults_before, "{listed} listed < {faults_before}");

    // The file says what it shows: a sweep of it runs the failing seed
    // with the mutant and detects the anomaly.
    let sweep = eddy(&["sim", "sweep", &file, "--json", "--jobs", "1"]);
    assert_eq!(sweep.status.code(), Some(0), "{}", both(&sweep));
    let summary = sweep_json(&sweep);
    let s = &summary["scenarios"][0];
    assert_eq!(s["expect"], format!("detect {target}"), "{s}");
    assert_eq!(s["mutant"], "fire-early", "{s}");
    assert_eq!(u64s(&s["detected_seeds"]), vec![4], "{s}");
}

#[test]
fn sim_shrink_out_writes_a_file_whose_paths_are_relative_to_it_and_that_fails_anywhere() {
    // A repository of its own: jobs/, scenarios/, and regressions/ for the
    // shrunk file.
    let repo = temp_dir("shrink_out").join("repo");
    for sub in ["jobs", "scenarios", "regressions"] {
        std::fs::create_dir_all(repo.join(sub)).unwrap();
    }
    std::fs::copy(WINDOW_STATS_JOB, repo.join("jobs/window-stats.toml")).unwrap();
    let scenario = write(
        &repo.join("scenarios"),
        "small.toml",
        &small_scenario("../jobs/window-stats.toml", "window-stats"),
    );
    let file = repo.join("regressions/minimal.toml");
    let output = eddy(&[
        "sim",
        "shrink",
        &scenario,
        "--seed",
        "4",
        "--mutant",
        "fire-early",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", both(&output));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .any(|line| line == "job = \"../jobs/window-stats.toml\""),
        "the job path is relative to the file: {text}"
    );
    // The repository moved elsewhere: the file still runs and fails the
    // same way.
    let moved = temp_dir("shrink_out_moved");
    for sub in ["jobs", "regressions"] {
        std::fs::create_dir_all(moved.join(sub)).unwrap();
    }
    std::fs::copy(
        repo.join("jobs/window-stats.toml"),
        moved.join("jobs/window-stats.toml"),
    )
    .unwrap();
    std::fs::copy(&file, moved.join("regressions/minimal.toml")).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
    let rerun = eddy(&[
        "sim",
        "run",
        moved.join("regressions/minimal.toml").to_str().unwrap(),
        "--seed",
        "4",
        "--mutant",
        "fire-early",
        "--no-determinism-check",
    ]);
    assert_eq!(rerun.status.code(), Some(1), "{}", both(&rerun));
    let target = text
        .lines()
        .find_map(|l| l.split_once("it fails with "))
        .map(|(_, kind)| kind.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("the target anomaly: {text}"));
    assert!(
        anomaly_kinds(&stdout(&rerun)).contains(&target),
        "still {target}: {}",
        both(&rerun)
    );
    // A directory that does not exist is bad input, said before any run.
    let missing = moved.join("no-such-dir/minimal.toml");
    let refused = eddy(&[
        "sim",
        "shrink",
        moved.join("regressions/minimal.toml").to_str().unwrap(),
        "--seed",
        "4",
        "--out",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", both(&refused));
    let error = stderr(&refused);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(error.contains("no such directory"), "{error}");
}

#[test]
fn sim_shrink_of_a_passing_seed_exits_2() {
    let dir = temp_dir("shrink_pass");
    let scenario = small_window_stats(&dir);
    let output = eddy(&["sim", "shrink", &scenario, "--seed", "1"]);
    assert_bad_input(&output, &["passes"]);
}
