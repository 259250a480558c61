//! Event time: the one time type of Eddyline, and the windows over it.
//!
//! Event times, window bounds and watermarks are `i64` milliseconds since the
//! Unix epoch, as in Kafka record timestamps and Flink. Processing time (the
//! clock that drives idleness and checkpoint intervals) is never an
//! `EventTime`: it comes from the runtime as a `std::time::Duration` since an
//! epoch the runtime chooses (turmoil's simulated clock, or the real one).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, on the event-time axis.
pub type EventTime = i64;

/// The watermark before any record: nothing is known yet.
pub const WATERMARK_MIN: EventTime = EventTime::MIN;

/// The watermark at the end of a bounded input: every window fires.
pub const WATERMARK_MAX: EventTime = EventTime::MAX;

/// A half-open event-time interval `[start, end)`; its max timestamp is
/// `end - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: EventTime,
    pub end: EventTime,
}

impl TimeWindow {
    #[inline]
    pub fn new(start: EventTime, end: EventTime) -> Self {
        assert!(start < end, "a window is not empty: [{start}, {end})");
        Self { start, end }
    }

    /// The largest timestamp inside the window: `end - 1`.
    #[inline]
    pub fn max_timestamp(&self) -> EventTime {
        self.end - 1
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}
