//! `eddy sim sweep`: many seeds of one or more scenarios, in parallel.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use eddyline_engine::worker::Mutant;
use eddyline_scenarios::checker::AnomalyKind;
use eddyline_scenarios::run::RunOptions;
use eddyline_scenarios::scenario::Expect;
use eddyline_scenarios::verdict::{judge, repro_command};
use eddyline_sim::Seed;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::seeds::{Shard, parse_range};
use super::{Loaded, load, parallel, parse_mutant, scenario_paths};
use crate::{CliError, Outcome};

/// Failing seeds listed per scenario (all of them are in `--json`).
const FAILURES_LISTED: usize = 10;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Scenario files, or directories of them.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Seeds: A..B (B excluded), A..=B or one seed; default: each
    /// scenario's own `seeds`.
    #[arg(long)]
    seeds: Option<String>,
    /// Seeds run at once (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only the I-th of N disjoint slices of every scenario's seeds
    /// (1-based), so that a CI matrix or a pool of machines splits a sweep.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Switch on this test-only engine mutant in every scenario; the sweep
    /// then fails if no seed detects it.
    #[arg(long)]
    mutant: Option<String>,
    /// Print the summary as JSON on stdout (the progress bar stays on
    /// stderr, and only on a terminal).
    #[arg(long)]
    json: bool,
    /// Run every seed twice and compare trace hashes (by default only the
    /// first seed of each scenario is run twice).
    #[arg(long)]
    check_determinism: bool,
}

/// What one scenario's sweep must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// No anomaly on any seed.
    Pass,
    /// Some seed shows this anomaly (`None`: any anomaly).
    Detect(Option<AnomalyKind>),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::Pass => "pass".to_string(),
            Goal::Detect(Some(kind)) => format!("detect {kind}"),
            Goal::Detect(None) => "detect any".to_string(),
        }
    }
}

/// A scenario of the sweep with its seeds, mutant and goal.
struct Planned {
    loaded: Loaded,
    seeds: Vec<Seed>,
    mutant: Option<Mutant>,
    goal: Goal,
}

/// One seed's result, kept small (the run's observation is dropped).
#[derive(Clone, Debug)]
struct SeedResult {
    seed: Seed,
    kinds: Vec<AnomalyKind>,
    first_anomaly: Option<String>,
    error: Option<String>,
}

impl SeedResult {
    fn detects(&self, goal: Goal) -> bool {
        match goal {
            Goal::Pass => false,
            Goal::Detect(Some(kind)) => self.kinds.contains(&kind),
            Goal::Detect(None) => !self.kinds.is_empty(),
        }
    }

    /// Whether this seed fails the sweep: an error, any anomaly under a
    /// `pass` goal, nondeterminism under any goal.
    fn fails(&self, goal: Goal) -> bool {
        self.error.is_some()
            || match goal {
                Goal::Pass => !self.kinds.is_empty(),
                Goal::Detect(_) => self.kinds.contains(&AnomalyKind::Nondeterminism),
            }
    }
}

pub fn run(args: &SweepArgs) -> Result<Outcome, CliError> {
    let plans = plan(args)?;
    let items: Vec<(usize, usize)> = plans
        .iter()
        .enumerate()
        .flat_map(|(p, plan)| (0..plan.seeds.len()).map(move |s| (p, s)))
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if jobs == 0 {
        return Err(CliError::BadInput("--jobs must be at least 1".to_string()));
    }
    let started = Instant::now();
    let progress = progress_bar(items.len() as u64);
    let mut failures = 0_u64;
    let results = parallel::run_all(
        &items,
        jobs,
        |&(p, s)| run_seed(&plans[p], s, args.check_determinism || s == 0),
        |index, result| {
            let (p, _) = items[index];
            if result.fails(plans[p].goal) {
                failures += 1;
                progress.set_message(format!("{failures} failing"));
            }
            progress.inc(1);
        },
    );
    progress.finish_and_clear();
    let mut by_plan: Vec<Vec<SeedResult>> = plans.iter().map(|_| Vec::new()).collect();
    for (&(p, _), result) in items.iter().zip(results) {
        by_plan[p].push(result);
    }
    let summaries: Vec<Summary> = plans
        .iter()
        .zip(&by_plan)
        .map(|(plan, results)| Summary::of(plan, results))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        print_json(&summaries, seconds);
    } else {
        print_table(&summaries, items.len(), seconds);
    }
    Ok(if summaries.iter().all(Summary::ok) {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

fn plan(args: &SweepArgs) -> Result<Vec<Planned>, CliError> {
    let mutant = parse_mutant(args.mutant.as_deref())?;
    let shard = args
        .shard
        .as_deref()
        .map(Shard::parse)
        .transpose()
        .map_err(CliError::BadInput)?;
    let given_seeds = args
        .seeds
        .as_deref()
        .map(parse_range)
        .transpose()
        .map_err(CliError::BadInput)?;
    let mut plans = Vec::new();
    for path in scenario_paths(&args.scenarios)? {
        let loaded = load(&path)?;
        let all_seeds = given_seeds
            .clone()
            .unwrap_or_else(|| loaded.scenario.seeds.range().map(Seed::new).collect());
        let seeds = shard.map_or(all_seeds.clone(), |shard| shard.slice(&all_seeds));
        let (goal, mutant) = goal_of(loaded.scenario.expect, mutant);
        plans.push(Planned {
            loaded,
            seeds,
            mutant,
            goal,
        });
    }
    Ok(plans)
}

/// The goal and mutant of a scenario, `--mutant` overriding: a mutant the
/// scenario does not name must make some anomaly appear.
fn goal_of(expect: Expect, given: Option<Mutant>) -> (Goal, Option<Mutant>) {
    match (expect, given) {
        (Expect::Pass, None) => (Goal::Pass, None),
        (Expect::Detect { anomaly, mutant }, None) => (Goal::Detect(Some(anomaly)), mutant),
        (Expect::Detect { anomaly, mutant }, Some(given)) if mutant == Some(given) => {
            (Goal::Detect(Some(anomaly)), Some(given))
        }
        (_, Some(given)) => (Goal::Detect(None), Some(given)),
    }
}

fn run_seed(plan: &Planned, index: usize, check_determinism: bool) -> SeedResult {
    let seed = plan.seeds[index];
    let mut options = RunOptions::new(seed);
    options.mutant = plan.mutant;
    let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        judge(
            &plan.loaded.scenario,
            &plan.loaded.job,
            &options,
            check_determinism,
        )
    }));
    match judged {
        Ok(Ok(verdict)) => SeedResult {
            seed,
            kinds: verdict.kinds(),
            first_anomaly: verdict.anomalies.first().map(|a| a.to_string()),
            error: None,
        },
        Ok(Err(error)) => SeedResult {
            seed,
            kinds: Vec::new(),
            first_anomaly: None,
            error: Some(error.to_string()),
        },
        Err(panic) => SeedResult {
            seed,
            kinds: Vec::new(),
            first_anomaly: None,
            error: Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            )),
        },
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} seeds, {per_sec} {msg}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message("0 failing");
    bar
}

/// One scenario's sweep, summed up.
struct Summary {
    path: String,
    goal: Goal,
    mutant: Option<Mutant>,
    seeds: usize,
    clean: usize,
    detected: Vec<Seed>,
    failing: Vec<SeedResult>,
    anomalies: BTreeMap<AnomalyKind, usize>,
}

impl Summary {
    fn of(plan: &Planned, results: &[SeedResult]) -> Summary {
        let mut anomalies = BTreeMap::new();
        for kind in results.iter().flat_map(|r| &r.kinds) {
            *anomalies.entry(*kind).or_insert(0) += 1;
        }
        Summary {
            path: plan.loaded.path.clone(),
            goal: plan.goal,
            mutant: plan.mutant,
            seeds: results.len(),
            clean: results
                .iter()
                .filter(|r| r.kinds.is_empty() && r.error.is_none())
                .count(),
            detected: results
                .iter()
                .filter(|r| r.detects(plan.goal))
                .map(|r| r.seed)
                .collect(),
            failing: results
                .iter()
                .filter(|r| r.fails(plan.goal))
                .cloned()
                .collect(),
            anomalies,
        }
    }

    /// No failing seed, and a positive control detected on some seed. A
    /// scenario with no seeds in this shard (`--shard` with more shards
    /// than seeds) has nothing to judge: it is not a control that failed.
    fn ok(&self) -> bool {
        self.failing.is_empty()
            && (self.goal == Goal::Pass || self.seeds == 0 || !self.detected.is_empty())
    }
}

fn print_table(summaries: &[Summary], seeds: usize, seconds: f64) {
    let width = summaries
        .iter()
        .map(|s| s.path.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<width$}  {:<28}  {:>6}  {:>6}  {:>7}  {:>8}  verdict",
        "scenario", "expect", "seeds", "clean", "failing", "detected"
    );
    for s in summaries {
        let verdict = if s.ok() { "ok" } else { "FAIL" };
        let detected = match s.goal {
            Goal::Pass => "-".to_string(),
            _ => s.detected.len().to_string(),
        };
        println!(
            "{:<width$}  {:<28}  {:>6}  {:>6}  {:>7}  {:>8}  {verdict}",
            s.path,
            s.goal.describe(),
            s.seeds,
            s.clean,
            s.failing.len(),
            detected
        );
    }
    for s in summaries {
        if s.seeds == 0 {
            println!("{}: no seeds in this shard", s.path);
        } else if s.goal != Goal::Pass {
            match s.detected.first() {
                Some(seed) => println!("{}: first detected at seed {seed}", s.path),
                None => println!(
                    "{}: FAIL: no seed detected it ({})",
                    s.path,
                    s.goal.describe()
                ),
            }
        }
        for failing in s.failing.iter().take(FAILURES_LISTED) {
            let why = failing
                .error
                .clone()
                .or_else(|| failing.first_anomaly.clone())
                .unwrap_or_default();
            println!("{}: seed {} FAILED: {why}", s.path, failing.seed);
            println!(
                "    repro: {}",
                repro_command(&s.path, failing.seed, s.mutant)
            );
        }
        if s.failing.len() > FAILURES_LISTED {
            println!(
                "{}: ... {} more failing seeds",
                s.path,
                s.failing.len() - FAILURES_LISTED
            );
        }
    }
    let rate = seeds as f64 / seconds.max(1e-9);
    println!("{seeds} seeds in {seconds:.1} s ({rate:.1} seeds/s)");
}

fn print_json(summaries: &[Summary], seconds: f64) {
    let scenarios: Vec<serde_json::Value> = summaries
        .iter()
        .map(|s| {
            json!({
                "scenario": s.path,
                "expect": s.goal.describe(),
                "mutant": s.mutant.map(|m| m.to_string()),
                "seeds": s.seeds,
                "clean": s.clean,
                "detected_seeds": s.detected.iter().map(|seed| seed.value()).collect::<Vec<_>>(),
                "failing": s.failing.iter().map(|f| json!({
                    "seed": f.seed.value(),
                    "anomalies": f.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
                    "first": f.first_anomaly,
                    "error": f.error,
                    "repro": repro_command(&s.path, f.seed, s.mutant),
                })).collect::<Vec<_>>(),
                "anomalies": s.anomalies.iter().map(|(k, n)| (k.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "ok": s.ok(),
            })
        })
        .collect();
    let ok = summaries.iter().all(Summary::ok);
    println!(
        "{}",
        json!({"ok": ok, "seconds": seconds, "scenarios": scenarios})
    );
}
