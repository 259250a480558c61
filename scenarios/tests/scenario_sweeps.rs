//! Every shipped scenario (`scenarios/*.toml`) over a sweep of seeds, judged
//! exactly as `eddy sim sweep` judges them: a `pass` scenario must show no
//! anomaly on any seed; a positive control (a mutant, or at-least-once
//! under crashes) must show its anomaly on some seed of its range. The
//! first seed of each scenario runs twice and must give the same trace
//! hash.
//!
//! `EDDY_SCENARIO_SEEDS=N` sweeps N seeds per `pass` scenario (default
//! below), from `EDDY_SCENARIO_SEED_FROM` (default: the scenario's first);
//! `EDDY_SCENARIO_DETERMINISM=1` runs every seed twice.

use std::path::{Path, PathBuf};

use eddyline_scenarios::run::RunOptions;
use eddyline_scenarios::scenario::{Expect, Scenario};
use eddyline_scenarios::verdict::{SeedVerdict, judge, repro_command};
use eddyline_sim::Seed;

/// Seeds per `pass` scenario in the default test run.
const PASS_SEEDS: u64 = 150;

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
fn sweep(file: &str) {
    let path = scenario_dir().join(file);
    let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let every_seed_twice = env_number("EDDY_SCENARIO_DETERMINISM") == Some(1);
    let shown = format!("scenarios/{file}");
    match scenario.expect {
        Expect::Pass => {
            let first = env_number("EDDY_SCENARIO_SEED_FROM").unwrap_or(scenario.seeds.start);
            let count = env_number("EDDY_SCENARIO_SEEDS").unwrap_or(PASS_SEEDS);
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

macro_rules! scenarios {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                sweep($file);
            }
        )*

        const SWEPT: &[&str] = &[$($file),*];
    };
}

scenarios! {
    scenario_window_stats_under_faults_passes => "window-stats-faults.toml",
    scenario_click_counts_under_faults_passes => "click-counts-faults.toml",
    scenario_click_sessions_under_faults_passes => "click-sessions-faults.toml",
    scenario_order_revenue_under_faults_passes => "order-revenue-faults.toml",
    scenario_at_least_once_under_crashes_is_caught_duplicating => "at-least-once-crashes.toml",
    scenario_mutant_commit_before_snapshot_is_caught => "mutant-commit-before-snapshot.toml",
    scenario_mutant_skip_fencing_is_caught => "mutant-skip-fencing.toml",
    scenario_mutant_restore_empty_is_caught => "mutant-restore-empty.toml",
    scenario_mutant_fire_early_is_caught => "mutant-fire-early.toml",
    scenario_mutant_drop_late_is_caught => "mutant-drop-late.toml",
    scenario_mutant_offsets_outside_transaction_is_caught => "mutant-offsets-outside-transaction.toml",
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
