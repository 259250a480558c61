//! Errors a user meets in `eddy load`, `eddy verify` and `eddy live`: one
//! line on stderr naming the file, field, address or topic, exit 2, within
//! the stated timeout (EDDY_KAFKA_TIMEOUT_MS). Those that need a broker
//! (wrong credentials on the SASL listener, a missing topic, a topic with
//! another partition count) are ignored here and run by scripts/test.

mod cli_common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The timeout the tests give connecting (EDDY_KAFKA_TIMEOUT_MS).
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Process start and client teardown beyond the stated timeout.
const SLACK: Duration = Duration::from_secs(8);

fn eddy_command(args: &[&str]) -> Command {
    cli_common::eddy_command(args, CONNECT_TIMEOUT_MS)
}

/// Runs `command`; checks exit 2, one line on stderr containing `needle`,
/// and that it took less than the stated timeout plus slack.
fn assert_refused(mut command: Command, needle: &str) {
    let started = Instant::now();
    let output: Output = command.output().expect("running eddy");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    assert!(
        took < Duration::from_millis(CONNECT_TIMEOUT_MS) + SLACK,
        "took {took:?}"
    );
}

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("eddy-lv-{name}")));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    port
}

/// A small job on `input` (`transaction_timeout_ms` as given, if any) and
/// a scenario that feeds it; (job path, scenario path).
fn job_and_scenario(dir: &Path, name: &str, input: &str, timeout: Option<u32>) -> (String, String) {
    let delivery = timeout.map_or(String::new(), |ms| format!("transaction_timeout_ms = {ms}"));
    let job = format!(
        r#"name = "{name}"

[input]
topics = ["{input}"]
format = "json"
key = "key"

[event_time]
field = "ts"
out_of_orderness_ms = 5000

[window]
kind = "tumbling"
size_ms = 10000
allowed_lateness_ms = 2000

[[aggregates]]
name = "count"
function = "count"

[output]
topic = "{name}-out"
key_field = "key"
late_topic = "{name}-late"
dead_letter_topic = "{name}-dead"

[checkpoint]
interval_ms = 1000
restart_budget_ms = 5000

[delivery]
{delivery}
"#
    );
    let job_path = dir.join("job.toml");
    std::fs::write(&job_path, job).expect("write the job");
    let scenario = format!(
        "job = \"{}\"\nseeds = \"1..2\"\nexpect = \"pass\"\n\n[workload]\nkind = \"window-stats\"\nrecords = 50\npartitions = 2\n",
        job_path.display()
    );
    let scenario_path = dir.join("scenario.toml");
    std::fs::write(&scenario_path, scenario).expect("write the scenario");
    (
        job_path.display().to_string(),
        scenario_path.display().to_string(),
    )
}

#[test]
fn load_and_verify_refuse_missing_files_naming_them() {
    assert_refused(
        eddy_command(&[
            "load",
            "no-such-scenario.toml",
            "--bootstrap",
            "127.0.0.1:1",
        ]),
        "no-such-scenario.toml",
    );
    assert_refused(
        eddy_command(&[
            "verify",
            "--job",
            "no-such-job.toml",
            "--bootstrap",
            "127.0.0.1:1",
        ]),
        "no-such-job.toml",
    );
}

#[test]
fn load_verify_and_live_refuse_a_transaction_timeout_the_guard_refuses_naming_the_field() {
    let dir = temp_dir("guard");
    let (job, scenario) = job_and_scenario(&dir, "g", "g-in", Some(3_000));
    let address = format!("127.0.0.1:{}", closed_port());
    assert_refused(
        eddy_command(&["load", &scenario, "--bootstrap", &address]),
        "transaction_timeout_ms = 3000",
    );
    assert_refused(
        eddy_command(&["verify", "--job", &job, "--bootstrap", &address]),
        "transaction_timeout_ms = 3000",
    );
    assert_refused(
        eddy_command(&["live", "--job", &job, "--bootstrap", &address]),
        "transaction_timeout_ms = 3000",
    );
}

#[test]
fn load_and_verify_report_an_unreachable_broker_naming_it_within_the_timeout() {
    let dir = temp_dir("unreachable");
    let (job, scenario) = job_and_scenario(&dir, "u", "u-in", None);
    let address = format!("127.0.0.1:{}", closed_port());
    assert_refused(
        eddy_command(&["load", &scenario, "--bootstrap", &address]),
        &address,
    );
    assert_refused(
        eddy_command(&["verify", "--job", &job, "--bootstrap", &address]),
        &address,
    );
}

// ---------------------------------------------------------------------------
// Against a real broker

fn bootstrap() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP").expect("EDDY_KAFKA_BOOTSTRAP (scripts/test sets it)")
}

/// SCRAM on the SASL listener with a wrong password, from the
/// environment as a user gives credentials.
fn with_wrong_password(mut command: Command) -> Command {
    let username =
        std::env::var("EDDY_KAFKA_TEST_SASL_USERNAME").unwrap_or_else(|_| "eddy-test".into());
    command
        .env("EDDY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("EDDY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
        .env("EDDY_KAFKA_SASL_USERNAME", username)
        .env("EDDY_KAFKA_SASL_PASSWORD", "not-the-password");
    command
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn wrong_credentials_are_refused_by_load_verify_and_live_in_one_line_without_the_secret() {
    let sasl = std::env::var("EDDY_KAFKA_BOOTSTRAP_SASL")
        .expect("EDDY_KAFKA_BOOTSTRAP_SASL (scripts/test sets it)");
    let dir = temp_dir("credentials");
    let name = unique("creds");
    let (job, scenario) = job_and_scenario(&dir, &name, &format!("{name}-in"), None);
    for args in [
        vec!["load", scenario.as_str(), "--bootstrap", sasl.as_str()],
        vec![
            "verify",
            "--job",
            job.as_str(),
            "--bootstrap",
            sasl.as_str(),
        ],
        vec!["live", "--job", job.as_str(), "--bootstrap", sasl.as_str()],
    ] {
        let command = with_wrong_password(eddy_command(&args));
        let output = with_wrong_password(eddy_command(&args))
            .output()
            .expect("running eddy");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("not-the-password"), "{stderr}");
        assert_refused(command, "authentication");
    }
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn verify_refuses_a_missing_topic_naming_it() {
    let dir = temp_dir("missing");
    let name = unique("missing");
    let input = format!("{name}-in");
    let (job, _) = job_and_scenario(&dir, &name, &input, None);
    assert_refused(
        eddy_command(&["verify", "--job", &job, "--bootstrap", &bootstrap()]),
        &format!("topic '{input}' does not exist"),
    );
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn load_refuses_an_input_topic_with_another_partition_count_naming_it() {
    let dir = temp_dir("partitions");
    let name = unique("partitions");
    let input = format!("{name}-in");
    let (_, scenario) = job_and_scenario(&dir, &name, &input, None);
    let output = eddy_command(&["load", &scenario, "--bootstrap", &bootstrap()])
        .output()
        .expect("running eddy");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The same topic, with a scenario that writes 3 partitions.
    let text = std::fs::read_to_string(&scenario).expect("the scenario");
    std::fs::write(&scenario, text.replace("partitions = 2", "partitions = 3"))
        .expect("rewrite the scenario");
    assert_refused(
        eddy_command(&["load", &scenario, "--bootstrap", &bootstrap()]),
        &format!("topic '{input}' at"),
    );
}
