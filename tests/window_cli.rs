//! `eddy window`: what its exit status says. Bad input (a missing file) is
//! exit 2 with a one-line reason; a failure that is not the input's fault
//! (here: stdout cannot be written) is not exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/window")
        .join(name)
}

fn eddy_window(dir: &Path, spec: &str, input: &str, stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["window", "--spec", spec, "--input", input])
        .current_dir(dir)
        .stdout(stdout)
        .output()
        .expect("running eddy")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_missing_spec_or_events_file_exits_2_with_a_one_line_reason_naming_it() {
    for (spec, input, missing) in [
        ("missing.json", "x.jsonl", "missing.json"),
        ("spec.json", "x.jsonl", "x.jsonl"),
    ] {
        let output = eddy_window(&case_dir("tumbling-lateness"), spec, input, Stdio::piped());
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "one line: {text:?}");
        assert!(
            text.starts_with(&format!("eddy: cannot read {missing}: ")),
            "{text}"
        );
        assert!(output.stdout.is_empty());
    }
}

/// `/dev/full` refuses every write with "no space left on device": the
/// input is good, the run fails for a reason of the machine's, exit 1.
#[test]
fn an_output_that_cannot_be_written_is_a_failure_not_bad_input() {
    // Linux always has /dev/full; a machine without it fails this test
    // rather than skipping it.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full (this test needs Linux's always-full device)");
    let output = eddy_window(
        &case_dir("tumbling-lateness"),
        "spec.json",
        "events.jsonl",
        Stdio::from(full),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    assert!(text.starts_with("eddy: cannot write to stdout: "), "{text}");
}
