//! Golden tests of `eddy window`: each directory under `fixtures/window/`
//! holds `spec.json`, `events.jsonl`, and the expected result: either
//! `expected.jsonl` (exit 0, the exact stdout) or `expected.err` (exit 2,
//! the exact stderr, and nothing on stdout). The binary runs inside the case
//! directory, so messages name `spec.json` / `events.jsonl`.
//!
//! `EDDY_BLESS=1 cargo test --test window_golden` rewrites the expected
//! files from the current binary (review the diff before committing).

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/window")
}

fn blessing() -> bool {
    std::env::var_os("EDDY_BLESS").is_some_and(|value| value != "0" && !value.is_empty())
}

/// Runs one case; returns a description of the mismatch, if any.
fn check_case(dir: &Path) -> Option<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["window", "--spec", "spec.json", "--input", "events.jsonl"])
        .current_dir(dir)
        .output()
        .expect("eddy runs");
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    let code = output.status.code();
    let expected_out = dir.join("expected.jsonl");
    let expected_err = dir.join("expected.err");
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();

    if blessing() {
        let _ = std::fs::remove_file(&expected_out);
        let _ = std::fs::remove_file(&expected_err);
        match code {
            Some(0) => std::fs::write(&expected_out, &stdout).unwrap(),
            Some(2) => std::fs::write(&expected_err, &stderr).unwrap(),
            other => {
                return Some(format!(
                    "{name}: cannot bless exit status {other:?}: {stderr}"
                ));
            }
        }
        return None;
    }

    match (expected_out.exists(), expected_err.exists()) {
        (true, false) => {
            let expected = std::fs::read_to_string(&expected_out).unwrap();
            if code != Some(0) {
                return Some(format!("{name}: expected success, got {code:?}: {stderr}"));
            }
            if stdout != expected {
                return Some(format!(
                    "{name}: stdout differs\n--- expected\n{expected}--- actual\n{stdout}"
                ));
            }
            if !stderr.is_empty() {
                return Some(format!("{name}: unexpected stderr: {stderr}"));
            }
        }
        (false, true) => {
            let expected = std::fs::read_to_string(&expected_err).unwrap();
            if code != Some(2) {
                return Some(format!("{name}: expected exit 2, got {code:?}"));
            }
            if stderr != expected {
                return Some(format!(
                    "{name}: stderr differs\n--- expected\n{expected}--- actual\n{stderr}"
                ));
            }
            if stderr.lines().count() != 1 {
                return Some(format!("{name}: an error is one line: {stderr:?}"));
            }
            if !stdout.is_empty() {
                return Some(format!(
                    "{name}: nothing may reach stdout on error: {stdout}"
                ));
            }
        }
        _ => {
            return Some(format!(
                "{name}: needs exactly one of expected.jsonl / expected.err (EDDY_BLESS=1 writes it)"
            ));
        }
    }
    None
}

#[test]
fn every_window_fixture_gives_its_expected_output() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("fixtures/window exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "the golden cases are there: {dirs:?}");
    let failures: Vec<String> = dirs.iter().filter_map(|dir| check_case(dir)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_output_line_is_a_json_object_with_the_fields_of_the_output_format() {
    let firing_fields = [
        "count",
        "key",
        "kind",
        "max_ts",
        "min_ts",
        "step",
        "sum",
        "watermark",
        "window_end",
        "window_start",
    ];
    for entry in std::fs::read_dir(cases_dir()).unwrap() {
        let path = entry.unwrap().path().join("expected.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let object = value.as_object().unwrap();
            let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
            fields.sort();
            if object.contains_key("late") {
                assert_eq!(
                    fields,
                    ["late", "step", "watermark"],
                    "{}: {line}",
                    path.display()
                );
                let mut late: Vec<&str> = object["late"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                late.sort();
                assert_eq!(late, ["key", "ts", "value"]);
            } else {
                assert_eq!(fields, firing_fields, "{}: {line}", path.display());
                assert!(["on_time", "late_update"].contains(&object["kind"].as_str().unwrap()));
            }
        }
    }
}
