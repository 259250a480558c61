//! The Kafka-semantics conformance suite against a real broker, and the
//! real-Kafka env's control over the brokers of a three-node cluster.
//!
//! The single-node tests need `EDDY_KAFKA_BOOTSTRAP` (scripts/test starts a
//! broker with `scripts/kafka start` and sets it). The failover checks kill
//! and restart the broker with `EDDY_KAFKA_TEST_BROKER_RESTART_CMD`, by
//! default this repository's `scripts/kafka restart-node {node}` (which acts
//! only on a broker that script started).
//!
//! The three-node tests (named `on_three_brokers_...`) need
//! `EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP` (scripts/test starts the cluster with
//! `scripts/kafka --brokers 3 start` and runs them separately), and stop and
//! start brokers with `EDDY_KAFKA_TEST_CLUSTER_STOP_CMD` /
//! `EDDY_KAFKA_TEST_CLUSTER_START_CMD`, by default `scripts/kafka --brokers 3
//! kill-node {node}` / `start-node {node}`. The whole suite, on the single
//! node and on three nodes, is run by scripts/test through `eddy conformance
//! --strict`, which also requires the three reports (simulator, one node,
//! three nodes) to list the same checks; these tests cover what that run
//! does not: the outcomes without broker control and the env's own
//! control of a cluster's brokers.

use std::time::Duration;

use eddyline_engine::kafka::KafkaConfig;
use eddyline_engine::transport::{Admin, NewTopic, TopicPartition, Transport};
use eddyline_scenarios::conformance::kafka_env::{self, BrokerCommands, KafkaEnv};
use eddyline_scenarios::conformance::{
    BrokerControl, CHECK_BROKERS, CHECKS, ConformanceEnv, Outcome, ReplicaState, SuiteOptions,
};

/// A cluster's configuration: its address and the `EDDY_KAFKA_*` settings
/// of this process's environment.
fn broker_config(bootstrap: &str) -> KafkaConfig {
    KafkaConfig::from_sources(Some(bootstrap), std::env::vars())
        .unwrap_or_else(|error| panic!("{}", error.message))
}

/// `variable`, else this repository's `scripts/kafka` with `arguments`.
fn command(variable: &str, arguments: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
        format!("{} {arguments}", script.display())
    })
}

fn single_node_bootstrap() -> String {
    std::env::var("EDDY_KAFKA_BOOTSTRAP").expect(
        "EDDY_KAFKA_BOOTSTRAP is not set: start a broker with `scripts/kafka start` (scripts/test does)",
    )
}

/// The outcome the suite must report for check number `index` on a target
/// of `brokers` brokers, when it has broker control or not.
fn expected_outcome(index: usize, brokers: usize, without_control: bool) -> Outcome {
    let needs = CHECK_BROKERS[index];
    if brokers < needs {
        Outcome::Skipped(format!("needs {needs} brokers"))
    } else if without_control {
        Outcome::Skipped("needs broker control".to_string())
    } else {
        Outcome::Passed
    }
}

#[test]
#[ignore = "needs a Kafka broker: scripts/test runs it"]
fn without_broker_control_the_failover_checks_are_skipped_not_passed() {
    let bootstrap = single_node_bootstrap();
    let filter = "failover:";
    let options = SuiteOptions {
        filter: Some(filter.to_string()),
        ..SuiteOptions::default()
    };
    let mut brokers = 0;
    let report = kafka_env::run_on_kafka(
        broker_config(&bootstrap),
        BrokerCommands::default(),
        &options,
        |count| brokers = count,
    )
    .unwrap_or_else(|reason| panic!("{reason}"));
    let selected: Vec<usize> = (0..CHECKS.len())
        .filter(|&i| format!("{}: {}", CHECKS[i].0, CHECKS[i].1).contains(filter))
        .collect();
    assert!(selected.len() >= 2, "{}", report.render(true));
    assert_eq!(
        report.checks.len(),
        selected.len(),
        "{}",
        report.render(true)
    );
    for (check, &index) in report.checks.iter().zip(&selected) {
        assert_eq!(
            check.outcome,
            expected_outcome(index, brokers, true),
            "{}: {}",
            check.area,
            check.name
        );
    }
    assert_eq!(report.passed(), 0);
    assert!(
        report
            .total_line()
            .ends_with(&format!(", {} skipped", selected.len()))
    );
}

/// The three-node cluster's env, with its stop and start commands.
async fn three_node_env() -> KafkaEnv {
    let bootstrap = std::env::var("EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP").expect(
        "EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP is not set: start a cluster with `scripts/kafka --brokers 3 start` (scripts/test does)",
    );
    let commands = BrokerCommands {
        restart: None,
        stop: Some(command(
            "EDDY_KAFKA_TEST_CLUSTER_STOP_CMD",
            "--brokers 3 kill-node {node}",
        )),
        start: Some(command(
            "EDDY_KAFKA_TEST_CLUSTER_START_CMD",
            "--brokers 3 start-node {node}",
        )),
    };
    KafkaEnv::connect(broker_config(&bootstrap), commands)
        .await
        .unwrap_or_else(|reason| panic!("{reason}"))
}

/// Reads the partition's replicas until `done` holds (at most 60 s: Kafka
/// fences a broker 9 s after its last heartbeat).
async fn await_state(
    env: &KafkaEnv,
    partition: &TopicPartition,
    what: &str,
    done: impl Fn(&ReplicaState) -> bool,
) -> ReplicaState {
    let deadline = env.elapsed() + Duration::from_secs(60);
    loop {
        let state = env.replica_state(partition).await;
        match state {
            Ok(state) if done(&state) => return state,
            _ if env.elapsed() >= deadline => panic!("{what} within 60 s; last seen {state:?}"),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a three-node Kafka cluster: scripts/test runs it"]
async fn on_three_brokers_a_stopped_follower_leaves_the_isr_and_rejoins_it_after_its_start() {
    let env = three_node_env().await;
    assert_eq!(env.brokers(), &[1, 2, 3]);
    assert_eq!(env.broker_count(), 3);
    assert_eq!(env.replication(), (3, Some(2)));
    assert_eq!(env.broker_control(), BrokerControl::CrashLeader);

    let topic = env.names().fresh("isr");
    let admin = env.transport().admin().await.expect("an admin client");
    admin
        .create_topic(&NewTopic {
            name: topic.clone(),
            partitions: 1,
            replication_factor: 3,
            configs: vec![("min.insync.replicas".to_string(), "2".to_string())],
        })
        .await
        .expect("creating the topic");
    let partition = TopicPartition::new(&topic, 0);
    let whole = await_state(&env, &partition, "no leader and a full ISR", |s| {
        s.leader.is_some() && s.isr.len() == 3
    })
    .await;
    let mut replicas = whole.replicas.clone();
    replicas.sort_unstable();
    assert_eq!(replicas, vec![1, 2, 3], "{whole:?}");
    let leader = whole.leader.expect("a leader");
    let follower = *whole
        .replicas
        .iter()
        .find(|&&r| r != leader)
        .expect("a follower");

    env.stop_broker(follower)
        .await
        .expect("stopping the follower");
    // Stopping a stopped broker is an error that names the command.
    let twice = env.stop_broker(follower).await.unwrap_err();
    assert!(twice.starts_with("the stop command"), "{twice}");
    assert!(twice.contains("failed"), "{twice}");
    let shrunk = await_state(
        &env,
        &partition,
        "the stopped follower stayed in the ISR",
        |s| !s.isr.contains(&follower),
    )
    .await;
    assert_eq!(shrunk.leader, Some(leader), "{shrunk:?}");
    assert_eq!(shrunk.isr.len(), 2, "{shrunk:?}");
    assert_eq!(shrunk.replicas, whole.replicas, "{shrunk:?}");

    let started = env
        .start_broker(follower)
        .await
        .expect("starting the follower");
    assert!(started.contains(&format!("broker {follower}")), "{started}");
    let back = await_state(
        &env,
        &partition,
        "the started follower did not rejoin the ISR",
        |s| s.isr.contains(&follower),
    )
    .await;
    assert_eq!(back.isr.len(), 3, "{back:?}");
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a three-node Kafka cluster: scripts/test runs it"]
async fn on_three_brokers_a_broker_command_without_the_node_placeholder_is_refused() {
    let bootstrap = std::env::var("EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP")
        .expect("EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP is set by scripts/test");
    let commands = BrokerCommands {
        restart: None,
        stop: Some("scripts/kafka --brokers 3 kill-node 1".to_string()),
        start: Some("scripts/kafka --brokers 3 start-node {node}".to_string()),
    };
    let Err(reason) = KafkaEnv::connect(broker_config(&bootstrap), commands).await else {
        panic!("a stop command that cannot say which broker was accepted on three brokers");
    };
    assert!(
        reason.starts_with(
            "the stop command \"scripts/kafka --brokers 3 kill-node 1\" has no {node} placeholder"
        ),
        "{reason}"
    );
}
