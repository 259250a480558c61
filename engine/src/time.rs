//! Event time: the one time type of Eddyline.
//!
//! Event times, window bounds and watermarks are `i64` milliseconds since the
//! Unix epoch, as in Kafka record timestamps and Flink. Processing time (the
//! clock that drives idleness and checkpoint intervals) is never an
//! `EventTime`: it comes from the runtime as a `std::time::Duration` since an
//! epoch the runtime chooses (turmoil's simulated clock, or the real one).

/// Milliseconds since the Unix epoch, on the event-time axis.
pub type EventTime = i64;

/// The watermark before any record: nothing is known yet.
pub const WATERMARK_MIN: EventTime = EventTime::MIN;

/// The watermark at the end of a bounded input: every window fires.
pub const WATERMARK_MAX: EventTime = EventTime::MAX;
