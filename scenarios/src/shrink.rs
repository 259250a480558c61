//! Shrinking a failing run to a minimal scenario.
//!
//! A failing seed's run reports every fault it applied as listed faults.
//! Shrinking replays those as a scenario with nothing drawn, checks that
//! it still fails with the same anomaly, and then, as proptest shrinks a
//! value, removes what it can while the failure stays: the store's per-call
//! failures, chunks of the fault list and then single faults (delta
//! debugging), and the tail of the workload (the generator is
//! prefix-stable, so fewer records are the first records of the same
//! workload). Every candidate is judged by the caller's `still_fails`,
//! which runs it; the number of runs is bounded.

use crate::scenario::{ListedFault, Scenario};

/// At most this many candidate runs per shrink.
pub const MAX_RUNS: usize = 400;

/// What shrinking found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest failing scenario found (nothing drawn, faults listed).
    pub scenario: Scenario,
    /// Candidate runs made (the replay's check included).
    pub runs: usize,
    pub faults_before: usize,
    pub records_before: usize,
}

/// Why a run could not be shrunk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShrinkError {
    #[error(
        "the failure does not come back when its {0} faults are replayed as listed faults \
         (a drawn fault's timing mattered); shrink another seed"
    )]
    ReplayPasses(usize),
}

/// Shrinks `replay` — the failing run's scenario with its applied faults
/// listed and nothing drawn (`RunReport::replay`) — while `still_fails`
/// says the candidate fails with the same anomaly.
pub fn shrink(
    replay: Scenario,
    mut still_fails: impl FnMut(&Scenario) -> bool,
) -> Result<Shrunk, ShrinkError> {
    let faults_before = replay.faults.at.len();
    let records_before = replay.workload.records;
    let mut runs = 1;
    if !still_fails(&replay) {
        return Err(ShrinkError::ReplayPasses(faults_before));
    }
    let mut budget = Budget {
        runs: &mut runs,
        still_fails: &mut still_fails,
    };
    let mut best = replay;
    best = without_store_failures(best, &mut budget);
    best = fewer_faults(best, &mut budget);
    best = fewer_records(best, &mut budget);
    // Fewer records can make more faults unnecessary.
    best = fewer_faults(best, &mut budget);
    Ok(Shrunk {
        scenario: best,
        runs,
        faults_before,
        records_before,
    })
}

/// The bounded judge: runs a candidate unless the budget is spent.
struct Budget<'a, F: FnMut(&Scenario) -> bool> {
    runs: &'a mut usize,
    still_fails: &'a mut F,
}

impl<F: FnMut(&Scenario) -> bool> Budget<'_, F> {
    /// Whether `candidate` fails; `false` once the budget is spent.
    fn fails(&mut self, candidate: &Scenario) -> bool {
        if *self.runs >= MAX_RUNS {
            return false;
        }
        *self.runs += 1;
        (self.still_fails)(candidate)
    }
}

fn without_store_failures<F: FnMut(&Scenario) -> bool>(
    best: Scenario,
    budget: &mut Budget<'_, F>,
) -> Scenario {
    let faults = &best.faults;
    if faults.store_write_failure == 0.0
        && faults.store_read_failure == 0.0
        && faults.store_ack_before_sync_ms.is_none()
    {
        return best;
    }
    let mut candidate = best.clone();
    candidate.faults.store_write_failure = 0.0;
    candidate.faults.store_read_failure = 0.0;
    candidate.faults.store_ack_before_sync_ms = None;
    if budget.fails(&candidate) {
        candidate
    } else {
        best
    }
}

/// Delta debugging over the fault list: remove chunks of halving size,
/// keeping every removal after which the scenario still fails.
fn fewer_faults<F: FnMut(&Scenario) -> bool>(
    mut best: Scenario,
    budget: &mut Budget<'_, F>,
) -> Scenario {
    let mut chunk = best.faults.at.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        let mut removed_any = false;
        while start < best.faults.at.len() {
            let end = (start + chunk).min(best.faults.at.len());
            let candidate = with_faults(&best, removed(&best.faults.at, start, end));
            if budget.fails(&candidate) {
                best = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            return best;
        }
        if !removed_any {
            chunk = chunk.div_ceil(2);
        }
        if best.faults.at.is_empty() {
            return best;
        }
    }
}

fn removed(faults: &[ListedFault], start: usize, end: usize) -> Vec<ListedFault> {
    faults[..start]
        .iter()
        .chain(&faults[end..])
        .cloned()
        .collect()
}

fn with_faults(scenario: &Scenario, at: Vec<ListedFault>) -> Scenario {
    let mut candidate = scenario.clone();
    candidate.faults.at = at;
    candidate
}

/// Fewer records: halve while it still fails, then cut smaller shares.
fn fewer_records<F: FnMut(&Scenario) -> bool>(
    mut best: Scenario,
    budget: &mut Budget<'_, F>,
) -> Scenario {
    for divisor in [2, 4, 8, 16] {
        loop {
            let records = best.workload.records;
            let cut = records / divisor;
            if cut == 0 {
                break;
            }
            let mut candidate = best.clone();
            candidate.workload.records = records - cut;
            if budget.fails(&candidate) {
                best = candidate;
            } else {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::FaultKind;

    fn scenario_with(faults: usize, records: usize) -> Scenario {
        let job = concat!(env!("CARGO_MANIFEST_DIR"), "/../jobs/window-stats.toml");
        let mut scenario = Scenario::new(job);
        scenario.workload.records = records;
        scenario.faults.at = (0..faults as u64)
            .map(|i| ListedFault {
                at_ms: 1_000 + i,
                fault: FaultKind::Crash {
                    host: format!("w{}", i % 3 + 1),
                },
            })
            .collect();
        scenario
    }

    #[test]
    fn shrinking_keeps_exactly_the_faults_and_records_the_failure_needs() {
        // Fails when faults 3 and 11 are both there and at least 37 records.
        let original = scenario_with(20, 400);
        let needed = [
            original.faults.at[3].clone(),
            original.faults.at[11].clone(),
        ];
        let fails = |candidate: &Scenario| {
            needed.iter().all(|f| candidate.faults.at.contains(f))
                && candidate.workload.records >= 37
        };
        let shrunk = shrink(original, fails).unwrap();
        assert_eq!(shrunk.scenario.faults.at, needed.to_vec());
        assert!(shrunk.scenario.workload.records >= 37);
        assert!(
            shrunk.scenario.workload.records < 60,
            "{}",
            shrunk.scenario.workload.records
        );
        assert_eq!((shrunk.faults_before, shrunk.records_before), (20, 400));
        assert!(shrunk.runs <= MAX_RUNS);
    }

    #[test]
    fn a_failure_that_needs_no_fault_shrinks_to_none() {
        let shrunk = shrink(scenario_with(9, 100), |_| true).unwrap();
        assert!(shrunk.scenario.faults.at.is_empty());
    }

    #[test]
    fn a_replay_that_passes_is_refused() {
        let error = shrink(scenario_with(5, 100), |_| false).unwrap_err();
        assert_eq!(error, ShrinkError::ReplayPasses(5));
    }

    #[test]
    fn the_number_of_runs_is_bounded() {
        let mut runs = 0;
        let _ = shrink(scenario_with(300, 400), |_| {
            runs += 1;
            runs % 2 == 0 || runs == 1
        });
        assert!(runs <= MAX_RUNS, "{runs}");
    }
}
