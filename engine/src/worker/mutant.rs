//! Mutants: test-only switches that break the protocol in known ways, so
//! that the checker is shown to be able to fail (a positive control).
//!
//! Every decision that a mutant can change asks `mutants.active(Mutant::…)`.
//! Live mode runs with [`Faithful`], whose answer is the constant `false`:
//! the mutated branches are compiled out of it. Only the simulator and
//! tests pass [`Selected`], the one way to switch a mutant on by name.

use std::fmt;
use std::str::FromStr;

/// A known way to break exactly-once or event-time semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// Commit the transaction before the snapshot is durable: a crash in
    /// between commits offsets whose state is lost.
    CommitBeforeSnapshot,
    /// Ignore fencing: a fenced worker keeps its tasks and goes on writing.
    SkipFencing,
    /// Restore a task as empty instead of from its committed snapshot.
    RestoreEmpty,
    /// Fire windows before the watermark reaches them.
    FireEarly,
    /// Drop late records instead of writing them to the late output.
    DropLate,
    /// Commit input offsets outside the transaction (before its commit).
    OffsetsOutsideTransaction,
}

impl Mutant {
    /// Every mutant, in the order of their names.
    pub const ALL: [Mutant; 6] = [
        Mutant::CommitBeforeSnapshot,
        Mutant::SkipFencing,
        Mutant::RestoreEmpty,
        Mutant::FireEarly,
        Mutant::DropLate,
        Mutant::OffsetsOutsideTransaction,
    ];

    /// The name a scenario or `--mutant` uses.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::CommitBeforeSnapshot => "commit-before-snapshot",
            Mutant::SkipFencing => "skip-fencing",
            Mutant::RestoreEmpty => "restore-empty",
            Mutant::FireEarly => "fire-early",
            Mutant::DropLate => "drop-late",
            Mutant::OffsetsOutsideTransaction => "offsets-outside-transaction",
        }
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutant {
    type Err = crate::Error;

    fn from_str(name: &str) -> crate::Result<Self> {
        Mutant::ALL
            .into_iter()
            .find(|mutant| mutant.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                crate::Error::Invalid(format!(
                    "unknown mutant {name:?} (known: {})",
                    names.join(", ")
                ))
            })
    }
}

/// Which mutants are switched on.
pub trait Mutants: Copy + fmt::Debug {
    fn active(self, mutant: Mutant) -> bool;
}

/// No mutant: the protocol as specified. Live mode uses only this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faithful;

impl Mutants for Faithful {
    #[inline(always)]
    fn active(self, _mutant: Mutant) -> bool {
        false
    }
}

/// At most one mutant, chosen by name (the simulator and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selected(pub Option<Mutant>);

impl Mutants for Selected {
    fn active(self, mutant: Mutant) -> bool {
        self.0 == Some(mutant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_parses_from_its_name_and_unknown_names_are_refused() {
        for mutant in Mutant::ALL {
            assert_eq!(mutant.name().parse::<Mutant>().unwrap(), mutant);
        }
        let error = "fire-late".parse::<Mutant>().unwrap_err().to_string();
        assert!(error.contains("unknown mutant \"fire-late\""), "{error}");
        assert!(error.contains("skip-fencing"), "{error}");
    }

    #[test]
    fn faithful_never_mutates_and_selected_mutates_only_its_choice() {
        for mutant in Mutant::ALL {
            assert!(!Faithful.active(mutant));
            assert!(Selected(Some(mutant)).active(mutant));
            assert!(!Selected(None).active(mutant));
        }
        assert!(!Selected(Some(Mutant::DropLate)).active(Mutant::FireEarly));
    }
}
