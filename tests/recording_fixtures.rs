//! The recording fixtures: each shipped job replayed (`eddy replay`) over
//! its recorded input in `fixtures/recordings/`, its committed output, late
//! and dead-letter records compared with `<job>.expected.jsonl`; and the
//! command's handling of bad recordings (one line naming the file, exit 2,
//! nothing written).
//!
//! `EDDY_BLESS=1 cargo test --test recording_fixtures` rewrites the
//! expected files from the current binary (review the diff before
//! committing).

mod cli_common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use eddyline_engine::recording::Recording;
use eddyline_engine::transport::Message;
use serde_json::{Value, json};

mod recording_common;
use recording_common::pyarrow_check;

/// Each shipped job and the recording of its input.
const CASES: [(&str, &str); 4] = [
    ("click-sessions", "user-clicks"),
    ("click-counts", "user-clicks"),
    ("order-revenue", "orders"),
    ("window-stats", "events"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("fixtures/recordings")
}

fn blessing() -> bool {
    std::env::var_os("EDDY_BLESS").is_some_and(|value| value != "0" && !value.is_empty())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("recording-fixtures")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| {
        Value::String(String::from_utf8_lossy(b).into_owned())
    })
}

/// A record as one JSON line: the value as JSON where it is JSON.
fn line(message: &Message) -> Value {
    let value = message
        .value
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .unwrap_or_else(|| text(message.value.as_deref()));
    let headers: Vec<Value> = message
        .headers
        .iter()
        .map(|(k, v)| json!([k, text(Some(v))]))
        .collect();
    json!({
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "key": text(message.key.as_deref()),
        "value": value,
        "headers": headers,
    })
}

/// `eddy replay` of a case into `dir`; the output files' records as JSON
/// lines (output, late, dead-letter; each by partition then offset).
fn replay_lines(job: &str, input: &str, dir: &Path) -> String {
    let out = dir.join(format!("{job}.parquet"));
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("replay")
        .arg("--job")
        .arg(root().join(format!("jobs/{job}.toml")))
        .arg("--input")
        .arg(fixtures().join(format!("{input}.parquet")))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("eddy runs");
    assert!(
        output.status.success(),
        "{job}: eddy replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = String::new();
    for suffix in ["", ".late", ".dead-letter"] {
        let path = dir.join(format!("{job}{suffix}.parquet"));
        if suffix.is_empty() || path.exists() {
            let recording = Recording::read(&path).unwrap();
            for message in recording.messages() {
                writeln!(lines, "{}", line(message)).unwrap();
            }
        }
    }
    lines
}

#[test]
fn recording_fixtures_replay_to_their_expected_outputs() {
    let mut failures = Vec::new();
    for (job, input) in CASES {
        let dir = temp_dir(job);
        let actual = replay_lines(job, input, &dir);
        let expected_path = fixtures().join(format!("{job}.expected.jsonl"));
        if blessing() {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        assert!(
            !expected.is_empty(),
            "{job}: an expected output with no records"
        );
        if actual != expected {
            let first = actual
                .lines()
                .zip(expected.lines())
                .position(|(a, e)| a != e)
                .unwrap_or(actual.lines().count().min(expected.lines().count()));
            failures.push(format!(
                "{job}: the replay differs from {} at line {} (actual {} lines, expected {}); \
                 EDDY_BLESS=1 rewrites it after a deliberate change",
                expected_path.display(),
                first + 1,
                actual.lines().count(),
                expected.lines().count()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn recording_fixtures_are_small_enough_to_commit() {
    let mut total = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        total += entry.unwrap().metadata().unwrap().len();
    }
    assert!(total < 4_000_000, "fixtures/recordings holds {total} bytes");
}

fn replay_error(input: &Path, out: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("replay")
        .arg("--job")
        .arg(root().join("jobs/window-stats.toml"))
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .expect("eddy runs");
    assert_eq!(output.status.code(), Some(2), "exit 2");
    assert!(output.stdout.is_empty());
    assert!(!out.exists(), "nothing written");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&input.display().to_string()),
        "names the file: {stderr}"
    );
    stderr
}

#[test]
fn replay_of_an_empty_truncated_or_foreign_file_exits_2_with_one_line_and_writes_nothing() {
    let dir = temp_dir("bad-files");
    let out = dir.join("out.parquet");
    let empty = dir.join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    assert!(replay_error(&empty, &out).contains("empty file"));
    let good = std::fs::read(fixtures().join("events.parquet")).unwrap();
    let truncated = dir.join("truncated.parquet");
    std::fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    assert!(replay_error(&truncated, &out).contains("truncated"));
    let jsonl = dir.join("events.jsonl");
    std::fs::write(&jsonl, "{\"key\": \"a\"}\n").unwrap();
    assert!(replay_error(&jsonl, &out).contains("not a Parquet file"));
    let clicks = fixtures().join("user-clicks.parquet");
    let stderr = replay_error(&clicks, &out);
    assert!(stderr.contains("reads topic events"), "{stderr}");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "no output or temporary file: {names:?}");
}

#[test]
fn pyarrow_reads_every_fixture_and_every_file_replay_writes_with_the_documented_schema() {
    let dir = temp_dir("pyarrow");
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "the three input fixtures: {files:?}");
    for (job, input) in CASES {
        replay_lines(job, input, &dir);
    }
    let mut written: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    written.sort();
    assert!(written.len() >= 4, "{written:?}");
    files.extend(written);
    pyarrow_check(&files);
}

#[test]
fn sim_run_dump_parquet_writes_the_runs_topics_as_recordings_with_the_jsonl_records() {
    let dir = temp_dir("sim-dump");
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "sim",
            "run",
            "--no-determinism-check",
            "--parquet",
            "--dump",
        ])
        .arg(&dir)
        .arg(fixtures().join("sources/events.toml"))
        .output()
        .expect("eddy runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let input = Recording::read(&dir.join("input.parquet")).unwrap();
    let lines = std::fs::read_to_string(dir.join("input.jsonl")).unwrap();
    assert_eq!(
        input.len(),
        lines.lines().count(),
        "the JSON lines' records"
    );
    assert_eq!(input.info.partition_count, 4);
    assert_eq!(input.info.topic, "events");
    let committed = Recording::read(&dir.join("output.parquet")).unwrap();
    let output_lines = std::fs::read_to_string(dir.join("output.jsonl")).unwrap();
    assert_eq!(committed.len(), output_lines.lines().count());
    let mut files: Vec<PathBuf> = ["input", "output", "late", "dead-letter"]
        .iter()
        .map(|name| dir.join(format!("{name}.parquet")))
        .collect();
    files.retain(|path| path.exists());
    assert_eq!(
        files.len(),
        4,
        "the window-stats job has a dead-letter topic"
    );
    pyarrow_check(&files);
}
