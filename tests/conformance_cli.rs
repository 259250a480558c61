//! `eddy conformance`: usage errors and an unreachable broker exit 2 with a
//! one-line reason; the check list is printed on request.

use std::process::{Command, Output};

/// Runs `eddy` without the caller's seed or Kafka settings (a test
/// harness may export `EDDY_KAFKA_*` variables for other tests).
fn eddy(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.args(args).env_remove("EDDY_SEED");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EDDY_KAFKA_") {
            command.env_remove(name);
        }
    }
    command
        .env("EDDY_KAFKA_TIMEOUT_MS", "2000")
        .output()
        .expect("running eddy")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_unreachable_broker_exits_2_naming_the_address() {
    // Port 1 on loopback: nothing listens there.
    let output = eddy(&["conformance", "--bootstrap", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
}

#[test]
fn a_bad_seed_exits_2() {
    let output = eddy(&["conformance", "--seed", "not-a-seed"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("bad seed"), "{}", stderr(&output));
}

#[test]
fn broker_control_without_a_broker_is_bad_usage() {
    let output = eddy(&["conformance", "--broker-restart-cmd", "true"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--bootstrap"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_seed_with_a_broker_is_bad_usage() {
    let output = eddy(&["conformance", "--seed", "3", "--bootstrap", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--seed"), "{}", stderr(&output));
}

#[test]
fn a_filter_that_matches_no_check_is_bad_usage() {
    let output = eddy(&["conformance", "--only", "no such check"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--list"), "{}", stderr(&output));
}

#[test]
fn the_checks_can_be_listed() {
    let output = eddy(&["conformance", "--list"]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.lines().count() >= 15, "{text}");
    assert!(text.contains("fencing: a second init_transactions fences the first producer"));
}
