//! `eddy sim shrink SCENARIO --seed N [--mutant NAME] [--out FILE]`: the
//! smallest scenario that still fails the same way, printed as a scenario
//! file (its paths absolute) or written to FILE (its paths relative to
//! FILE's directory, so it can be committed next to the scenarios it
//! guards).

use std::path::{Path, PathBuf};

use clap::Args;
use eddyline_scenarios::run::RunOptions;
use eddyline_scenarios::scenario::{Expect, Scenario, SeedRange};
use eddyline_scenarios::shrink;
use eddyline_scenarios::verdict::judge;
use eddyline_sim::Seed;

use super::{load, parse_mutant, parse_seed};
use crate::{CliError, Outcome};

#[derive(Args, Debug)]
pub struct ShrinkArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The failing seed (also read from EDDY_SEED).
    #[arg(long)]
    seed: Option<String>,
    /// The mutant the failing run had switched on (overrides the
    /// scenario's).
    #[arg(long)]
    mutant: Option<String>,
    /// Write the minimal scenario to this file, its job (and recording)
    /// paths relative to the file's directory, instead of printing it with
    /// absolute paths.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: &ShrinkArgs) -> Result<Outcome, CliError> {
    let out_dir = args.out.as_deref().map(out_dir).transpose()?;
    let loaded = load(&args.scenario)?;
    let seed = parse_seed(args.seed.as_deref(), Seed::new(loaded.scenario.seeds.start))?;
    let mut options = RunOptions::new(seed);
    options.mutant = parse_mutant(args.mutant.as_deref())?;
    let internal = |e: &dyn std::fmt::Display| {
        CliError::Internal(format!("{}: seed {seed}: {e}", loaded.path))
    };
    let first = judge(&loaded.scenario, &loaded.job, &options, false).map_err(|e| internal(&e))?;
    // A positive control shrinks towards the anomaly it expects, when the
    // run shows it; any other run towards its first anomaly.
    let expected = match loaded.scenario.expect {
        Expect::Detect { anomaly, .. } if first.found(anomaly) => Some(anomaly),
        _ => None,
    };
    let Some(target) = expected.or(first.anomalies.first().map(|a| a.kind)) else {
        return Err(CliError::BadInput(format!(
            "{}: seed {seed} passes: there is nothing to shrink",
            loaded.path
        )));
    };
    eprintln!(
        "shrinking {} seed {seed}: {target} with {} faults and {} records",
        loaded.path,
        first.report.faults.len(),
        loaded.scenario.workload.records
    );
    let mut failure = None;
    let still_fails = |candidate: &Scenario| match judge(candidate, &loaded.job, &options, false) {
        Ok(verdict) => verdict.found(target),
        Err(error) => {
            failure.get_or_insert_with(|| error.to_string());
            false
        }
    };
    let shrunk = shrink::shrink(first.report.replay(&loaded.scenario), still_fails)
        .map_err(|e| CliError::Internal(format!("{}: seed {seed}: {e}", loaded.path)))?;
    if let Some(error) = failure {
        eprintln!("note: a candidate run failed to run and counted as passing: {error}");
    }
    eprintln!(
        "shrunk in {} runs: {} → {} faults, {} → {} records; still {target} at seed {seed}",
        shrunk.runs,
        shrunk.faults_before,
        shrunk.scenario.faults.at.len(),
        shrunk.records_before,
        shrunk.scenario.workload.records
    );
    let mut minimal = shrunk.scenario;
    // The file says what it shows: the target anomaly, with the mutant the
    // run had on (a sweep of it then switches the mutant on and expects the
    // anomaly, as the run did). A `pass` scenario without a mutant stays
    // `pass`: a sweep of it fails at the seed.
    if first.mutant.is_some() || minimal.expect != Expect::Pass {
        minimal.expect = Expect::Detect {
            anomaly: target,
            mutant: first.mutant,
        };
    }
    // A sweep of the file runs the failing seed.
    if let Some(end) = seed.value().checked_add(1) {
        minimal.seeds = SeedRange {
            start: seed.value(),
            end,
        };
    }
    let mutant = first
        .mutant
        .map_or(String::new(), |m| format!(" --mutant {m}"));
    place_paths(&mut minimal, out_dir.as_deref())?;
    let header = format!(
        "# The minimal scenario shrunk from {} seed {seed}: it fails with {target}.\n",
        loaded.path
    );
    match &args.out {
        None => {
            println!("{header}# Save it and run: eddy sim run FILE --seed {seed}{mutant}\n");
            print!("{}", minimal.to_toml());
        }
        Some(out) => {
            let text = format!(
                "{header}# Run it: eddy sim run {} --seed {seed}{mutant}\n\n{}",
                out.display(),
                minimal.to_toml()
            );
            super::dump::write_whole(out, &text)?;
            println!(
                "wrote {}: eddy sim run {} --seed {seed}{mutant}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(Outcome::Success)
}

/// The directory `--out` writes into, absolute; it must exist.
fn out_dir(out: &Path) -> Result<PathBuf, CliError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(dir)
        .map_err(|_| CliError::BadInput(format!("--out {}: no such directory", out.display())))
}

/// The scenario's job and recording paths for a file in `dir`: relative to
/// it, or absolute without one (a printed file works wherever it is saved).
fn place_paths(scenario: &mut Scenario, dir: Option<&Path>) -> Result<(), CliError> {
    let place = |path: &Path| -> Result<PathBuf, CliError> {
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| CliError::Internal(format!("{}: {e}", path.display())))?;
        Ok(match dir {
            Some(dir) => pathdiff::diff_paths(&absolute, dir).unwrap_or(absolute),
            None => absolute,
        })
    };
    scenario.job = place(&scenario.job)?;
    if let Some(recording) = &scenario.workload.recording {
        scenario.workload.recording = Some(place(recording)?);
    }
    Ok(())
}
