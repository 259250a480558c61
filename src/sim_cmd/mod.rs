//! `eddy sim`: scenarios on the simulated cluster.
//!
//! - `eddy sim run SCENARIO [--seed N] [--mutant NAME] [--dump DIR]`: one
//!   seed, run twice to check determinism; prints the derived settings, the
//!   faults applied, the verdict with the anomalies and the records
//!   involved, the end of the trace, the trace hash and the repro command.
//! - `eddy sim sweep SCENARIO... [--seeds A..B] [--jobs N] [--shard I/N]
//!   [--mutant NAME] [--json] [--check-determinism]`: many seeds in
//!   parallel with a progress bar, then a table per scenario.
//! - `eddy sim shrink SCENARIO --seed N [--mutant NAME]`: the smallest
//!   scenario (fewest faults, shortest workload) that still fails with the
//!   same anomaly, printed as a scenario file.
//!
//! A SCENARIO argument is a scenario file or a directory (every `*.toml`
//! in it but `Cargo.toml`); a file named `Cargo.toml` is never a scenario
//! and is passed over, so `scenarios/*.toml` works as the shell expands
//! it. Exit codes: 0 success; 1 a seed failed (`run`:
//! an anomaly was found; `sweep`: a `pass` scenario had a failing seed, or
//! a positive control detected nothing); 2 bad usage or a bad scenario.

pub mod dump;
mod parallel;
pub mod print;
mod seeds;
mod shrink_cmd;
mod sweep;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use eddyline_engine::job::Job;
use eddyline_engine::worker::Mutant;
use eddyline_scenarios::scenario::Scenario;
use eddyline_sim::Seed;

use crate::{CliError, Outcome};

#[derive(Args, Debug)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// One seed of a scenario (run twice to check determinism): verdict,
    /// anomalies, trace hash and the repro command.
    Run(RunArgs),
    /// Many seeds of one or more scenarios in parallel, with a summary per
    /// scenario.
    Sweep(sweep::SweepArgs),
    /// Minimises a failing seed's faults and workload; prints the minimal
    /// scenario file.
    Shrink(shrink_cmd::ShrinkArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seed (a number or a hex string; also read from EDDY_SEED;
    /// default: the first of the scenario's seeds).
    #[arg(long)]
    seed: Option<String>,
    /// Switch on this test-only engine mutant (overrides the scenario's).
    #[arg(long)]
    mutant: Option<String>,
    /// Write the input and the committed, late and dead-letter outputs as
    /// JSON lines into this directory.
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
    /// With --dump: also write the input topic and the committed output,
    /// late and dead-letter topics as recordings (input.parquet,
    /// output.parquet, late.parquet, dead-letter.parquet; see
    /// docs/recordings.md), which `eddy replay` reads.
    #[arg(long, requires = "dump")]
    parquet: bool,
    /// Run once: skip the determinism check (a second run of the seed).
    #[arg(long)]
    no_determinism_check: bool,
    /// Print every trace event to stderr as it happens.
    #[arg(long)]
    trace: bool,
}

pub fn run(args: SimArgs) -> Result<Outcome, CliError> {
    match args.command {
        SimCommand::Run(args) => run_one(&args),
        SimCommand::Sweep(args) => sweep::run(&args),
        SimCommand::Shrink(args) => shrink_cmd::run(&args),
    }
}

/// A scenario read from a file, with its job.
pub struct Loaded {
    /// The path as the user gave it (for repro commands).
    pub path: String,
    pub scenario: Scenario,
    pub job: Job,
}

/// Reads a scenario file and its job; a bad one is bad input.
pub fn load(path: &Path) -> Result<Loaded, CliError> {
    let scenario = Scenario::from_file(path).map_err(|e| CliError::BadInput(e.to_string()))?;
    let job = scenario
        .load_job()
        .map_err(|e| CliError::BadInput(format!("{}: {e}", path.display())))?;
    Ok(Loaded {
        path: path.display().to_string(),
        scenario,
        job,
    })
}

/// The scenario files named by the arguments: files as given, directories
/// expanded to their `*.toml` files, in name order. A `Cargo.toml` (the
/// scenarios crate's manifest sits beside its scenario files) is passed
/// over either way, so a shell glob such as `scenarios/*.toml` works; the
/// arguments must name at least one scenario.
pub fn scenario_paths(arguments: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let is_manifest = |path: &Path| path.file_name().is_some_and(|name| name == "Cargo.toml");
    let mut paths = Vec::new();
    for argument in arguments {
        if !argument.is_dir() {
            if !is_manifest(argument) {
                paths.push(argument.clone());
            }
            continue;
        }
        let entries = std::fs::read_dir(argument).map_err(|e| {
            CliError::BadInput(format!(
                "{}: cannot read the directory: {e}",
                argument.display()
            ))
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && !is_manifest(path))
            .collect();
        if found.is_empty() {
            return Err(CliError::BadInput(format!(
                "{}: no scenario files (*.toml) in this directory",
                argument.display()
            )));
        }
        found.sort();
        paths.extend(found);
    }
    if paths.is_empty() {
        return Err(CliError::BadInput(
            "no scenario files among the arguments (a Cargo.toml is not one)".to_string(),
        ));
    }
    Ok(paths)
}

/// `--mutant NAME`, checked.
pub fn parse_mutant(name: Option<&str>) -> Result<Option<Mutant>, CliError> {
    name.map(|name| {
        name.parse::<Mutant>()
            .map_err(|e| CliError::BadInput(format!("--mutant: {e}")))
    })
    .transpose()
}

/// `--seed`, else `EDDY_SEED`, else `default`. A bad seed is refused
/// naming where it came from.
pub fn parse_seed(given: Option<&str>, default: Seed) -> Result<Seed, CliError> {
    let from_env = std::env::var("EDDY_SEED").ok();
    let (source, text) = match (given, from_env.as_deref()) {
        (Some(text), _) => ("--seed", text),
        (None, Some(text)) => ("EDDY_SEED", text),
        (None, None) => return Ok(default),
    };
    text.parse::<Seed>()
        .map_err(|e| CliError::BadInput(format!("{source}: {e}")))
}

fn run_one(args: &RunArgs) -> Result<Outcome, CliError> {
    let loaded = load(&args.scenario)?;
    let default_seed = Seed::new(loaded.scenario.seeds.start);
    let seed = parse_seed(args.seed.as_deref(), default_seed)?;
    let mut options = eddyline_scenarios::run::RunOptions::new(seed);
    options.mutant = parse_mutant(args.mutant.as_deref())?;
    options.trace_echo = args.trace;
    if let Some(dir) = &args.dump {
        dump::prepare(dir)?;
    }
    let verdict = eddyline_scenarios::verdict::judge(
        &loaded.scenario,
        &loaded.job,
        &options,
        !args.no_determinism_check,
    )
    .map_err(|e| CliError::Internal(format!("{}: seed {seed}: {e}", loaded.path)))?;
    print::seed_report(&loaded, &verdict);
    if let Some(dir) = &args.dump {
        dump::write(dir, &loaded.job, &verdict.report.observation)?;
        if args.parquet {
            let source = format!("eddy sim run {} --seed {seed}", loaded.path);
            let partitions = loaded.scenario.workload.partitions;
            dump::write_parquet(
                dir,
                &loaded.job,
                &verdict.report.observation,
                partitions,
                &source,
            )?;
        }
        println!("dump: {}", dir.display());
    }
    Ok(if verdict.clean() {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_glob_that_catches_the_crates_manifest_names_only_the_scenarios() {
        let arguments: Vec<PathBuf> = ["scenarios/a.toml", "scenarios/Cargo.toml", "b.toml"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            scenario_paths(&arguments).unwrap(),
            vec![PathBuf::from("scenarios/a.toml"), PathBuf::from("b.toml")]
        );
    }

    #[test]
    fn a_manifest_alone_is_bad_input() {
        let error = scenario_paths(&[PathBuf::from("Cargo.toml")]).unwrap_err();
        assert!(
            matches!(error, CliError::BadInput(ref reason) if reason.contains("no scenario files"))
        );
    }
}
