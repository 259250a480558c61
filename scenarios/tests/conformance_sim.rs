//! The Kafka-semantics conformance suite on the simulated cluster: every
//! check passes for every seed, a run is a function of its seed, and checks
//! given a wrong expectation fail.
//!
//! `EDDY_CONFORMANCE_SEEDS=N` runs seeds 1..=N (default 2).

use eddyline_engine::transport::{ErrorCode, ErrorKind};
use eddyline_scenarios::conformance::sim_env::{SimOutput, run_on_simulator};
use eddyline_scenarios::conformance::{
    CHECKS, CheckReport, Expectations, Outcome, Report, SuiteOptions,
};
use eddyline_sim::Seed;

const DEFAULT_SEEDS: u64 = 2;

fn seeds() -> Vec<Seed> {
    let count = match std::env::var("EDDY_CONFORMANCE_SEEDS") {
        Ok(text) => text
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("EDDY_CONFORMANCE_SEEDS must be a count, got {text:?}")),
        Err(_) => DEFAULT_SEEDS,
    };
    (1..=count).map(Seed::new).collect()
}

/// The simulator's output the environment asks for (`EDDY_SIM_TRACE=1`,
/// `EDDY_SIM_HASH=1`).
fn sim_output() -> SimOutput {
    let on = |name: &str| std::env::var_os(name).is_some_and(|value| value == "1");
    SimOutput {
        trace_echo: on("EDDY_SIM_TRACE"),
        print_run_fingerprint: on("EDDY_SIM_HASH"),
    }
}

fn run(seed: Seed, options: &SuiteOptions) -> Report {
    let run =
        run_on_simulator(seed, options, sim_output()).unwrap_or_else(|reason| panic!("{reason}"));
    run.report
}

/// Checks on which the simulator still disagrees with real Kafka, each with
/// the finding in `scenarios/CONFORMANCE-NOTES.md` that says what Kafka does
/// and how to fix the simulator. While listed, a check must still fail (a
/// fix is noticed at once: then remove it from this list); every other
/// check must pass.
const KNOWN_SIM_DIVERGENCES: &[(&str, &str)] = &[];

fn known_divergence(check: &str) -> bool {
    KNOWN_SIM_DIVERGENCES
        .iter()
        .any(|(divergent, _)| *divergent == check)
}

fn label(check: &CheckReport) -> String {
    format!("{}: {}", check.area, check.name)
}

fn not_passed(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Passed)
        .map(|c| format!("{}: {:?}", label(c), c.outcome))
        .collect()
}

#[test]
fn every_conformance_check_passes_on_the_simulator_for_each_seed() {
    for (divergent, _) in KNOWN_SIM_DIVERGENCES {
        assert!(
            CHECKS
                .iter()
                .any(|(area, name)| format!("{area}: {name}") == *divergent),
            "KNOWN_SIM_DIVERGENCES names no check: {divergent}"
        );
    }
    for seed in seeds() {
        let report = run(seed, &SuiteOptions::default());
        assert_eq!(
            report.checks.len(),
            CHECKS.len(),
            "seed {seed}: a check did not run"
        );
        let mut unexpected = Vec::new();
        for check in &report.checks {
            let known = KNOWN_SIM_DIVERGENCES
                .iter()
                .find(|(divergent, _)| *divergent == label(check));
            match (known, &check.outcome) {
                (None, Outcome::Passed) | (Some(_), Outcome::Failed(_)) => {}
                (None, outcome) => unexpected.push(format!("{}: {outcome:?}", label(check))),
                (Some((_, finding)), outcome) => unexpected.push(format!(
                    "{}: {outcome:?}, but it is listed as a known divergence ({finding}): \
                     the simulator was fixed, remove it from KNOWN_SIM_DIVERGENCES",
                    label(check)
                )),
            }
        }
        assert!(
            unexpected.is_empty(),
            "seed {seed} (repro: eddy conformance --seed {seed}):\n{}\n{}",
            unexpected.join("\n"),
            report.render(true)
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_report_and_trace() {
    let options = SuiteOptions::default();
    let first =
        run_on_simulator(Seed::new(7), &options, sim_output()).unwrap_or_else(|r| panic!("{r}"));
    let second =
        run_on_simulator(Seed::new(7), &options, sim_output()).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(
        first.trace.hash, second.trace.hash,
        "seed 7: trace hashes differ"
    );
    let strip = |report: &Report| {
        report
            .checks
            .iter()
            .map(|c| (c.name, c.outcome.clone(), c.notes.clone(), c.elapsed_ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first.report), strip(&second.report));
}

/// Positive controls: the same checks, told something false about Kafka,
/// must fail (a check that cannot fail proves nothing).
mod wrong_expectations {
    use super::*;

    /// Runs the selected checks with the right expectations (they must
    /// pass) and with `wrong` ones (each must fail); returns the latter.
    fn fails_only_when_wrong(filter: &str, wrong: Expectations) -> Report {
        let right = SuiteOptions {
            filter: Some(filter.to_string()),
            ..SuiteOptions::default()
        };
        let report = run(Seed::new(1), &right);
        assert!(!report.checks.is_empty(), "{filter:?} selected no check");
        assert!(
            not_passed(&report).is_empty(),
            "with the right expectations: {}",
            not_passed(&report).join("; ")
        );
        let wrong = SuiteOptions {
            expectations: wrong,
            filter: Some(filter.to_string()),
        };
        let report = run(Seed::new(1), &wrong);
        for check in &report.checks {
            assert!(
                matches!(check.outcome, Outcome::Failed(_)),
                "{}: {} did not fail with a wrong expectation: {:?}",
                check.area,
                check.name,
                check.outcome
            );
        }
        report
    }

    /// Runs the one check `name` names with the right expectations (it
    /// must pass, or fail if it is a known divergence of the simulator, for
    /// another reason than `because`) and with `wrong` ones: it must fail,
    /// and its reason must contain `because`, so that what failed it is the
    /// wrong expectation and nothing else.
    fn fails_when_wrong_because(name: &str, wrong: Expectations, because: &str) {
        let only = |expectations: Expectations| SuiteOptions {
            expectations,
            filter: Some(name.to_string()),
        };
        let right = run(Seed::new(1), &only(Expectations::default()));
        assert_eq!(right.checks.len(), 1, "{name:?} must select one check");
        let check = &right.checks[0];
        match (&check.outcome, known_divergence(&label(check))) {
            (Outcome::Passed, false) => {}
            (Outcome::Failed(reason), true) => assert!(
                !reason.contains(because),
                "{name}: with the right expectations it already fails because {because:?}: {reason}"
            ),
            (outcome, divergent) => panic!(
                "{name} with the right expectations (known divergence: {divergent}): {outcome:?}"
            ),
        }
        let report = run(Seed::new(1), &only(wrong));
        match &report.checks[0].outcome {
            Outcome::Failed(reason) => assert!(
                reason.contains(because),
                "{name} failed with a wrong expectation, but not because {because:?}: {reason}"
            ),
            outcome => panic!("{name} did not fail with a wrong expectation: {outcome:?}"),
        }
    }

    #[test]
    fn expecting_markers_to_take_no_offset_fails_every_transaction_check() {
        let report = fails_only_when_wrong(
            "transactions:",
            Expectations {
                control_marker_offsets: 0,
                ..Expectations::default()
            },
        );
        assert_eq!(report.checks.len(), 5);
    }

    #[test]
    fn predicting_partitions_with_the_wrong_hash_fails_the_partitioner_check() {
        fn java_string_hash(key: &[u8], partitions: i32) -> i32 {
            let hash = key
                .iter()
                .fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(*b)));
            (hash & 0x7fff_ffff) % partitions
        }
        let report = fails_only_when_wrong(
            "murmur2",
            Expectations {
                partition_for_key: java_string_hash,
                ..Expectations::default()
            },
        );
        assert_eq!(report.checks.len(), 1);
        assert!(
            matches!(&report.checks[0].outcome, Outcome::Failed(reason) if reason.contains("went to")),
            "{:?}",
            report.checks[0].outcome
        );
    }

    fn markers_take_no_offset() -> Expectations {
        Expectations {
            control_marker_offsets: 0,
            ..Expectations::default()
        }
    }

    #[test]
    fn expecting_no_commit_marker_fails_the_transaction_spanning_a_leader_failure() {
        fails_when_wrong_because(
            "a transaction spanning a leader failure is committed exactly once or aborted whole",
            markers_take_no_offset(),
            "records and the commit marker",
        );
    }

    #[test]
    fn expecting_invalid_producer_epoch_fails_the_timeout_abort_offsets_check() {
        fails_when_wrong_because(
            "a coordinator's timeout abort releases the transaction's offsets",
            Expectations {
                fenced_code: ErrorCode::InvalidProducerEpoch,
                ..Expectations::default()
            },
            "expected Fenced/InvalidProducerEpoch",
        );
    }

    #[test]
    fn expecting_unknown_member_id_for_a_revoked_generation_fails_the_handover_check() {
        fails_when_wrong_because(
            "in one rebalance the old owner's transaction hands each input to the new owner exactly once",
            Expectations {
                stale_generation: (ErrorKind::Abortable, ErrorCode::UnknownMemberId),
                ..Expectations::default()
            },
            "expected Abortable/UnknownMemberId",
        );
    }

    #[test]
    fn expecting_no_abort_marker_fails_the_late_sends_check() {
        fails_when_wrong_because(
            "a fenced producer's late sends never reach the log",
            markers_take_no_offset(),
            "after the coordinator's timeout abort, ",
        );
    }

    #[test]
    fn expecting_no_commit_marker_fails_the_commit_then_init_check() {
        fails_when_wrong_because(
            "a commit followed at once by a new instance's init_transactions stays committed",
            markers_take_no_offset(),
            "after the commit and the new init",
        );
    }

    #[test]
    fn a_min_isr_that_ignores_the_replication_factor_fails_the_replication_factor_1_check() {
        fails_when_wrong_because(
            "a replication-factor-1 topic with min.insync.replicas=2 accepts acks=all writes",
            Expectations {
                effective_min_isr: |min_insync_replicas, _| min_insync_replicas,
                ..Expectations::default()
            },
            "expected every write refused (NOT_ENOUGH_REPLICAS)",
        );
    }

    #[test]
    fn expecting_a_lone_leader_to_take_acks_all_writes_fails_the_under_min_isr_check() {
        fails_when_wrong_because(
            "a partition under min.insync.replicas holds its high watermark",
            Expectations {
                effective_min_isr: |_, _| 1,
                ..Expectations::default()
            },
            "expected it acknowledged",
        );
    }
}
