//! The named anomalies the checker reports.
//!
//! Each kind's precise definition is the doc comment of its variant; the
//! function in `checker` that finds it says how it is computed.

use std::fmt;
use std::str::FromStr;

use eddyline_sim::trace::TraceFocus;

/// A kind of anomaly. Names are stable: scenario files (`detect = "..."`),
/// `--json` output and scripts use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// An `on_time` firing the reference model emits for (key, window) has
    /// no equal record among the committed output of that (key, window),
    /// and no other committed `on_time` firing of that window stands in for
    /// it (that would be a wrong result, or a premature fire).
    LostOutput,
    /// A committed output record equal to another committed output record
    /// (same key, window, values and kind) more often than the reference
    /// model emits it.
    DuplicateOutput,
    /// A record of an aborted transaction is visible to `read_committed`:
    /// a committed output message at an offset that the output
    /// partition's log places in a transactional batch whose producer
    /// wrote an ABORT marker for it.
    AbortedRead,
    /// A committed firing for (key, window) that the reference model never
    /// emits for that window (other aggregate values, or another kind), and
    /// that is not a premature fire; or a committed output record that is
    /// no firing at all. When a reference firing of the same kind is
    /// missing from the window, the wrong one stands in for it (it is not
    /// also lost).
    WrongResult,
    /// A committed `on_time` firing emitted while the watermark it carries
    /// (header `eddy.watermark`) was below the window's max timestamp
    /// (`window_end - 1`).
    PrematureFire,
    /// A `late_update` the reference model emits has no committed
    /// counterpart (a late record within the allowed lateness that did not
    /// update its window), and no other committed `late_update` of that
    /// window stands in for it.
    MissingLateUpdate,
    /// An input record that the reference model sends to the late output
    /// or to the dead letters is in neither committed topic (no committed
    /// late record or dead letter names its source partition and offset):
    /// dropped without a trace.
    SilentDrop,
    /// A committed late-output record that the reference model does not
    /// send to the late output as it is (source, key, value and headers,
    /// the watermark included: it belonged in a window, or was judged
    /// against another watermark), or sends there fewer times; likewise a
    /// committed dead letter the reference model does not write.
    WrongLateOutput,
    /// The group's committed offset of an input partition went backwards
    /// between two samples of the run.
    OffsetRegression,
    /// Within one output partition, the watermark headers of one task's
    /// committed firings (in offset order, which is the order the task
    /// produced them) go backwards.
    WatermarkRegression,
    /// A COMMIT marker written by a producer epoch lower than an epoch of
    /// the same producer id that appears earlier in the same partition's
    /// log: a fenced producer (a zombie) committed.
    ZombieCommit,
    /// An output, late or dead-letter partition whose last stable offset
    /// stays below its high watermark long after the run drained: a
    /// transaction nobody finishes.
    HangingTransaction,
    /// The run did not drain (every input partition consumed to its end,
    /// final results committed, every transaction finished) within the
    /// scenario's liveness bound after the faults stopped.
    Liveness,
    /// Two runs of the same seed gave different trace hashes.
    Nondeterminism,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 14] = [
        AnomalyKind::LostOutput,
        AnomalyKind::DuplicateOutput,
        AnomalyKind::AbortedRead,
        AnomalyKind::WrongResult,
        AnomalyKind::PrematureFire,
        AnomalyKind::MissingLateUpdate,
        AnomalyKind::SilentDrop,
        AnomalyKind::WrongLateOutput,
        AnomalyKind::OffsetRegression,
        AnomalyKind::WatermarkRegression,
        AnomalyKind::ZombieCommit,
        AnomalyKind::HangingTransaction,
        AnomalyKind::Liveness,
        AnomalyKind::Nondeterminism,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::LostOutput => "lost-output",
            AnomalyKind::DuplicateOutput => "duplicate-output",
            AnomalyKind::AbortedRead => "aborted-read",
            AnomalyKind::WrongResult => "wrong-result",
            AnomalyKind::PrematureFire => "premature-fire",
            AnomalyKind::MissingLateUpdate => "missing-late-update",
            AnomalyKind::SilentDrop => "silent-drop",
            AnomalyKind::WrongLateOutput => "wrong-late-output",
            AnomalyKind::OffsetRegression => "offset-regression",
            AnomalyKind::WatermarkRegression => "watermark-regression",
            AnomalyKind::ZombieCommit => "zombie-commit",
            AnomalyKind::HangingTransaction => "hanging-transaction",
            AnomalyKind::Liveness => "liveness",
            AnomalyKind::Nondeterminism => "nondeterminism",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AnomalyKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        AnomalyKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown anomaly {name:?} (known: {})", names.join(", "))
            })
    }
}

/// One anomaly found: its kind, a one-line account, the records involved
/// (each rendered on one line: topic-partition@offset and value), and where
/// in the run's trace it shows (the append of the offending record, the
/// marker, the instant), when there is such a place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub detail: String,
    pub records: Vec<String>,
    pub at: Option<TraceFocus>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_anomaly_name_parses_back_to_its_kind() {
        for kind in AnomalyKind::ALL {
            assert_eq!(kind.name().parse::<AnomalyKind>(), Ok(kind));
        }
        assert!("lost".parse::<AnomalyKind>().is_err());
    }
}
