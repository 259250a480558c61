//! A seed's verdict: one run of a scenario, judged by the checker, and
//! whether that is what the scenario expects.
//!
//! This is the one place that joins the run and the checker; `eddy sim`
//! and the `cargo test` suites both go through it, so a sweep in a test and
//! a sweep on the command line judge a seed the same way.

use eddyline_engine::job::Job;
use eddyline_engine::worker::Mutant;
use eddyline_sim::Seed;

use crate::checker::{self, Anomaly, AnomalyKind};
use crate::run::{self, RunError, RunOptions, RunReport};
use crate::scenario::{Expect, Scenario};

/// One seed, run and judged.
#[derive(Clone, Debug)]
pub struct SeedVerdict {
    pub seed: Seed,
    /// The mutant the run had switched on, if any.
    pub mutant: Option<Mutant>,
    /// Every anomaly found, `nondeterminism` included when the seed was
    /// run twice; empty for a clean run.
    pub anomalies: Vec<Anomaly>,
    /// The (first) run.
    pub report: RunReport,
    /// The seed was run twice and the trace hashes compared.
    pub determinism_checked: bool,
}

impl SeedVerdict {
    /// No anomaly at all.
    pub fn clean(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Whether `kind` was found.
    pub fn found(&self, kind: AnomalyKind) -> bool {
        self.anomalies.iter().any(|anomaly| anomaly.kind == kind)
    }

    /// The anomaly kinds found, each once, in their order.
    pub fn kinds(&self) -> Vec<AnomalyKind> {
        let mut kinds: Vec<AnomalyKind> = self.anomalies.iter().map(|a| a.kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Whether this seed broke what the scenario expects: any anomaly for a
    /// `pass` scenario; for a positive control, only an anomaly the control
    /// does not explain — nondeterminism (a mutant never excuses it).
    pub fn fails(&self, expect: Expect) -> bool {
        match expect {
            Expect::Pass => !self.clean(),
            Expect::Detect { .. } => self.found(AnomalyKind::Nondeterminism),
        }
    }

    /// Whether this seed shows the anomaly a positive control expects.
    pub fn detects(&self, expect: Expect) -> bool {
        match expect {
            Expect::Pass => false,
            Expect::Detect { anomaly, .. } => self.found(anomaly),
        }
    }
}

/// Why a seed could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the checker could not judge seed {seed}: {reason}")]
    Checker { seed: Seed, reason: String },
}

/// Runs `scenario` for `options.seed` (twice if `check_determinism`) and
/// judges the first run. `job` is the scenario's job, loaded once by the
/// caller.
pub fn judge(
    scenario: &Scenario,
    job: &Job,
    options: &RunOptions,
    check_determinism: bool,
) -> Result<SeedVerdict, VerdictError> {
    let mut report = run::run(scenario, options)?;
    let mut anomalies =
        checker::check(job, &report.observation).map_err(|reason| VerdictError::Checker {
            seed: options.seed,
            reason,
        })?;
    if check_determinism {
        // The repeat also captures the trace around the first anomaly that
        // has a place in it (the run is the same; only the capture differs).
        let focus = checker::first_placed(&anomalies).and_then(|anomaly| anomaly.at.clone());
        let again = run::run(
            scenario,
            &RunOptions {
                trace_focus: focus,
                ..options.clone()
            },
        )?;
        anomalies.extend(checker::nondeterminism(report.trace.hash, again.trace.hash));
        report.trace.focus = again.trace.focus;
    }
    Ok(SeedVerdict {
        seed: options.seed,
        mutant: report.mutant,
        anomalies,
        report,
        determinism_checked: check_determinism,
    })
}

/// The mutant a run of `scenario` uses: the one given, else the one its
/// expectation names.
pub fn mutant_of(scenario: &Scenario, given: Option<Mutant>) -> Option<Mutant> {
    given.or(match scenario.expect {
        Expect::Detect { mutant, .. } => mutant,
        Expect::Pass => None,
    })
}

/// The command line that reproduces one seed of `scenario_path`.
pub fn repro_command(scenario_path: &str, seed: Seed, mutant: Option<Mutant>) -> String {
    let mut command = format!("eddy sim run {} --seed {seed}", shell_word(scenario_path));
    if let Some(mutant) = mutant {
        command.push_str(&format!(" --mutant {mutant}"));
    }
    command
}

/// `text` as one POSIX shell word: as it is when it has nothing the shell
/// reads specially, else in single quotes (each `'` written `'\''`).
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repro_quotes_a_path_the_shell_would_split_or_expand() {
        let seed = Seed::new(7);
        assert_eq!(
            repro_command("scenarios/a-b_c.toml", seed, None),
            "eddy sim run scenarios/a-b_c.toml --seed 7"
        );
        assert_eq!(
            repro_command("my runs/it's $HOME.toml", seed, Some(Mutant::FireEarly)),
            "eddy sim run 'my runs/it'\\''s $HOME.toml' --seed 7 --mutant fire-early"
        );
    }
}
