//! The Kafka-semantics conformance suite against a real broker.
//!
//! Needs `EDDY_KAFKA_BOOTSTRAP` (scripts/test starts a broker with
//! `scripts/kafka start` and sets it). The failover checks kill and restart
//! the broker with `EDDY_KAFKA_TEST_BROKER_RESTART_CMD`, by default this repository's
//! `scripts/kafka restart` (which acts only on a broker that script started).

use eddyline_engine::kafka::KafkaConfig;
use eddyline_scenarios::conformance::{Outcome, SuiteOptions, kafka_env};

/// The test broker's configuration: its address and the `EDDY_KAFKA_*`
/// settings of this process's environment.
fn broker_config(bootstrap: &str) -> KafkaConfig {
    KafkaConfig::from_sources(Some(bootstrap), std::env::vars())
        .unwrap_or_else(|error| panic!("{}", error.message))
}

fn restart_command() -> String {
    let from_env = std::env::var("EDDY_KAFKA_TEST_BROKER_RESTART_CMD");
    from_env.unwrap_or_else(|_| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
        format!("{} restart", script.display())
    })
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn every_conformance_check_passes_against_a_real_broker() {
    let bootstrap = std::env::var("EDDY_KAFKA_BOOTSTRAP").expect(
        "EDDY_KAFKA_BOOTSTRAP is not set: start a broker with `scripts/kafka start` (scripts/test does)",
    );
    let report = kafka_env::run_on_kafka(
        broker_config(&bootstrap),
        Some(restart_command()),
        &SuiteOptions::default(),
        || {},
    )
    .unwrap_or_else(|reason| panic!("{reason}"));
    print!("{}", report.render(true));
    let not_passed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Passed)
        .map(|c| format!("{}: {}: {:?}", c.area, c.name, c.outcome))
        .collect();
    assert!(
        not_passed.is_empty(),
        "checks that did not pass against Kafka at {bootstrap}:\n{}",
        not_passed.join("\n")
    );
    assert_eq!(
        report.checks.len(),
        eddyline_scenarios::conformance::CHECKS.len()
    );
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn without_broker_control_the_failover_checks_are_skipped_not_passed() {
    let bootstrap = std::env::var("EDDY_KAFKA_BOOTSTRAP").expect(
        "EDDY_KAFKA_BOOTSTRAP is not set: start a broker with `scripts/kafka start` (scripts/test does)",
    );
    let options = SuiteOptions {
        filter: Some("failover:".to_string()),
        ..SuiteOptions::default()
    };
    let report = kafka_env::run_on_kafka(broker_config(&bootstrap), None, &options, || {})
        .unwrap_or_else(|reason| panic!("{reason}"));
    assert_eq!(report.checks.len(), 2, "{}", report.render(true));
    for check in &report.checks {
        assert_eq!(
            check.outcome,
            Outcome::Skipped("needs broker control".to_string()),
            "{}: {}",
            check.area,
            check.name
        );
    }
    assert_eq!(report.passed(), 0);
    assert!(report.total_line().ends_with(", 2 skipped"));
}
