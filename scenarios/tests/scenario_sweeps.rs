//! Every shipped scenario (`scenarios/*.toml`) over a sweep of seeds, judged
//! exactly as `eddy sim sweep` judges them: a `pass` scenario must show no
//! anomaly on any seed; a positive control (a mutant, or at-least-once
//! under crashes) must show its anomaly on some seed of its range. The
//! first seed of each scenario runs twice and must give the same trace
//! hash.
//!
//! `EDDY_SCENARIO_SEEDS=N` sweeps N seeds per `pass` scenario (default:
//! the count beside each file below), from `EDDY_SCENARIO_SEED_FROM` (default: the scenario's first);
//! `EDDY_SCENARIO_DETERMINISM=1` runs every seed twice.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};

use eddyline_scenarios::run::RunOptions;
use eddyline_scenarios::scenario::{Expect, Scenario};
use eddyline_scenarios::verdict::{SeedVerdict, judge, repro_command};
use eddyline_sim::Seed;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

fn judged(path: &Path, scenario: &Scenario, seed: u64, twice: bool) -> SeedVerdict {
    let job = scenario.load_job().expect("the job loads");
    let options = RunOptions::new(Seed::new(seed));
    judge(scenario, &job, &options, twice).unwrap_or_else(|e| {
        panic!(
            "{} seed {seed}: the run failed: {e}\nrepro: {}",
            path.display(),
            repro_command(&path.display().to_string(), Seed::new(seed), None)
        )
    })
}

/// Sweeps one shipped scenario file.
fn sweep(file: &str, default_seeds: u64) {
    let path = scenario_dir().join(file);
    let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let every_seed_twice = env_number("EDDY_SCENARIO_DETERMINISM") == Some(1);
    let shown = format!("scenarios/{file}");
    match scenario.expect {
        Expect::Pass => {
            let first = env_number("EDDY_SCENARIO_SEED_FROM").unwrap_or(scenario.seeds.start);
            let count = env_number("EDDY_SCENARIO_SEEDS").unwrap_or(default_seeds);
            let mut failing = Vec::new();
            for seed in first..first + count {
                let verdict = judged(&path, &scenario, seed, every_seed_twice || seed == first);
                if !verdict.clean() {
                    let kinds: Vec<String> =
                        verdict.kinds().iter().map(|k| k.to_string()).collect();
                    failing.push(format!(
                        "seed {seed}: {} — {}\n    repro: {}",
                        kinds.join(", "),
                        verdict.anomalies[0],
                        repro_command(&shown, verdict.seed, verdict.mutant)
                    ));
                }
            }
            assert!(
                failing.is_empty(),
                "{shown}: failing seeds:\n{}",
                failing.join("\n")
            );
        }
        Expect::Detect { anomaly, .. } => {
            let range = scenario.seeds.range();
            let first = range.start;
            let detected = range.clone().find(|&seed| {
                let verdict = judged(&path, &scenario, seed, every_seed_twice || seed == first);
                assert!(
                    !verdict.fails(scenario.expect),
                    "{shown} seed {seed}: {:?}",
                    verdict.anomalies
                );
                verdict.detects(scenario.expect)
            });
            match detected {
                Some(seed) => eprintln!("{shown}: {anomaly} detected at seed {seed}"),
                None => panic!("{shown}: no seed in {range:?} detected {anomaly}"),
            }
        }
    }
}

/// One test per scenario file, in modules that make the names read as
/// sentences ("faults::a_worker_crashes_at_any_instant"), and the list of
/// swept files. `$seeds`: the default sweep of a `pass` scenario.
macro_rules! scenarios {
    ($($area:ident { $($test:ident => $file:literal, $seeds:literal;)* })*) => {
        $(
            mod $area {
                $(
                    #[test]
                    fn $test() {
                        super::sweep($file, $seeds);
                    }
                )*
            }
        )*

        const SWEPT: &[&str] = &[$($($file),*),*];
        const SEEDS: &[u64] = &[$($($seeds),*),*];
    };
}

scenarios! {
    exactly_once {
        window_stats_under_a_mix_of_every_fault => "window-stats-faults.toml", 150;
        click_counts_under_a_mix_of_every_fault => "click-counts-faults.toml", 150;
        click_sessions_under_a_mix_of_every_fault => "click-sessions-faults.toml", 150;
        order_revenue_under_a_mix_of_every_fault => "order-revenue-faults.toml", 150;
        a_recorded_workload_under_a_mix_of_faults => "recording-window-stats-faults.toml", 30;
    }
    faults {
        a_worker_crashes_at_any_instant => "fault-worker-crash.toml", 100;
        a_worker_crashes_between_snapshot_offsets_and_commit => "fault-crash-at-step.toml", 100;
        a_worker_pauses => "fault-pause.toml", 100;
        a_worker_freezes_and_resumes_as_a_zombie => "fault-freeze.toml", 100;
        a_broker_crashes_and_leaders_fail_over => "fault-broker-crash.toml", 100;
        partition_leaders_move => "fault-leader-move.toml", 100;
        a_network_partition_cuts_a_worker_off => "fault-network-partition.toml", 100;
        latency_spikes => "fault-latency.toml", 100;
        open_transactions_expire => "fault-transaction-expiry.toml", 100;
        workers_leave_and_join => "fault-join-leave.toml", 100;
        the_checkpoint_store_fails_writes_and_reads => "fault-checkpoint-store.toml", 100;
    }
    combinations {
        broker_failover_with_zombies_and_partitions => "combo-failover-and-zombies.toml", 150;
        kafka_timings_with_the_topic_store_under_crashes => "combo-kafka-timings-topic-store.toml", 150;
    }
    controls {
        at_least_once_under_crashes_duplicates_output => "at-least-once-crashes.toml", 0;
        mutant_commit_before_snapshot_loses_output => "mutant-commit-before-snapshot.toml", 0;
        mutant_skip_fencing_duplicates_output => "mutant-skip-fencing.toml", 0;
        mutant_restore_empty_gives_wrong_results => "mutant-restore-empty.toml", 0;
        mutant_fire_early_fires_prematurely => "mutant-fire-early.toml", 0;
        mutant_drop_late_drops_silently => "mutant-drop-late.toml", 0;
        mutant_offsets_outside_transaction_loses_output => "mutant-offsets-outside-transaction.toml", 0;
    }
}

#[test]
fn the_default_run_sweeps_at_least_two_thousand_scenario_seeds() {
    let total: u64 = SEEDS.iter().sum();
    assert!(total >= 2_000, "{total}");
}

#[test]
fn every_scenario_file_is_swept_by_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(scenario_dir())
        .expect("the scenarios directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".toml") && name != "Cargo.toml")
        .collect();
    files.sort();
    let mut swept: Vec<String> = SWEPT.iter().map(|f| f.to_string()).collect();
    swept.sort();
    assert_eq!(
        files, swept,
        "scenarios/*.toml and the tests above must agree"
    );
}
