//! Event-time windows with Flink's event-time trigger and allowed lateness,
//! firing for firing (the rules for users: `docs/semantics.md`).
//!
//! A [`WindowOperator`] owns the keyed window state of one task. Records and
//! watermarks flow in as values ([`WindowOperator::process`],
//! [`WindowOperator::advance_watermark`], [`WindowOperator::finish`]);
//! firings and late records flow out as values ([`Output`]) pushed to a
//! `Vec` the caller drains. Nothing is hidden in callbacks or globals, and
//! every collection is ordered, so outputs are a function of the inputs.
//!
//! # The rules (Flink's `WindowOperator` + `EventTimeTrigger`)
//!
//! With watermark `wm` and allowed lateness `L`:
//! - a window `w` is *late* once `cleanup(w) = w.max_timestamp() + L <= wm`
//!   (saturating); a record is *late* when `ts + L <= wm` (saturating);
//! - a record is added to each of its windows that is not late; if such a
//!   window has `max_timestamp <= wm` it fires at once (`late_update`, also
//!   when the record created it), otherwise it fires `on_time` when the
//!   watermark reaches its max timestamp;
//! - a record all of whose windows are late goes to the late side output
//!   (it is then always a late record);
//! - a window's state is purged, without output, when the watermark reaches
//!   its cleanup time (for `L = 0`: right after its on-time firing);
//! - sliding windows with several windows per record emit their
//!   `late_update`s in descending window start (Flink's assignment order);
//! - session windows merge as Flink's `MergingWindowSet` does: a record's
//!   `[ts, ts + gap)` merges with every session of its key it overlaps or
//!   touches; live sessions are never late, so a late record can still
//!   extend or bridge them.
//!
//! When the watermark advances, windows fire in ascending
//! `(window_end, key)` order, then expired state is purged.
//!
//! # State layout
//!
//! Keyed state lives in `BTreeMap`s ordered for the work they do: timers
//! pop from the front of maps ordered by time, and keys are compared by an
//! inline 16-byte prefix before their heap bytes. Tumbling windows are two
//! maps by `(end, key)` (pending, and fired awaiting cleanup). Sliding
//! windows share panes of width `gcd(size, slide)`: a record updates one
//! pane, and a firing merges the window's panes, so a record costs the same
//! whatever `size / slide` is (a pane outlives every window it belongs to; a
//! window that became late never fires again, so sharing panes is exact).
//! Sessions are per-key sorted lists with one wake-up each, so a record
//! that grows its key's session touches no timer index (see `session.rs`).
//!
//! # Errors
//!
//! A record whose windows cannot be represented in `i64` is refused with
//! [`crate::Error::Invalid`] before anything changes. An aggregate overflow
//! ([`crate::Error::Overflow`]) may leave the state half-updated: the operator
//! refuses every later call, and the task must restore from a snapshot.
//!
//! # Modules
//!
//! Dependencies point one way: `output` (what is emitted) <- `state` (what
//! the kinds share) <- `tumbling`, `sliding`, `session` (with `assigner`,
//! `timer_queue`) <- `operator` <- `task`. This file only declares them and
//! re-exports the public types.

mod assigner;
mod operator;
mod output;
mod session;
mod sliding;
mod state;
mod task;
mod timer_queue;
mod tumbling;

pub use crate::time::TimeWindow;
pub use assigner::{SLIDING_WINDOWS_PER_RECORD_MAX, WindowKind};
pub use operator::{WindowConfig, WindowOperator};
pub use output::{Firing, FiringKind, LateRecord, Output};
pub use state::WindowCounters;
pub use task::WindowTask;

#[cfg(test)]
mod tests;
