//! Watermarks: bounded out-of-orderness, computed per record.
//!
//! Each input partition has a [`PartitionWatermark`]: after every record,
//! `wm = max(wm, max_ts_seen - D - 1)` (saturating), and `i64::MIN` before
//! any record. Watermarks are a function of the data alone, never of a
//! wall-clock period.
//!
//! A task reading several partitions keeps a [`WatermarkTracker`]: the task
//! watermark is the minimum over its *active* inputs, and never goes
//! backwards. The caller judges a record against the task watermark from
//! before the record ([`WatermarkTracker::watermark`]), then lets the
//! watermark the record raised ([`WatermarkTracker::observe`]) fire windows.
//!
//! # Idleness (opt-in)
//!
//! With `idle_timeout: Some(t)`, an input that has had no record for `t` of
//! processing time is idle and excluded from the minimum until its next
//! record. Processing time is never read from a clock here: the runtime
//! passes `now` (turmoil's simulated clock, or the real one in live mode).
//! When every input is idle the task watermark rises to the largest input
//! watermark, as Flink's `StatusWatermarkValve` does.
//!
//! The trade-off, which is Flink's: a record arriving on an input that comes
//! back from idleness is judged against the *task* watermark, which the
//! other inputs may have moved past this input's own watermark. Such a record
//! can be late (a late update, or the late side output) although it would
//! have been on time had the task waited for its input. Without idleness
//! (`None`, the default) no record is ever judged against a watermark its
//! own input did not allow, but one silent input holds every window of the
//! task open until it speaks again or the input ends. Idleness never makes a
//! record late on an input that is not idle.
//!
//! Watermarks never go backwards, also across a restore: the per-partition
//! state is part of the snapshot ([`TrackerState`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::{EventTime, WATERMARK_MAX, WATERMARK_MIN};

/// How watermarks are generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkConfig {
    /// `D`: how far behind the largest timestamp seen a record may be and
    /// still be on time.
    pub out_of_orderness_ms: i64,
    /// Processing time without records after which an input is idle
    /// (`None`: inputs never go idle).
    pub idle_timeout: Option<Duration>,
}

impl WatermarkConfig {
    pub fn new(out_of_orderness_ms: i64, idle_timeout: Option<Duration>) -> Result<Self> {
        if out_of_orderness_ms < 0 {
            return Err(Error::Invalid(format!(
                "out-of-orderness must be >= 0 ms, got {out_of_orderness_ms}"
            )));
        }
        if idle_timeout == Some(Duration::ZERO) {
            return Err(Error::Invalid(
                "idle timeout must be > 0 (or absent: inputs never go idle)".to_string(),
            ));
        }
        Ok(Self {
            out_of_orderness_ms,
            idle_timeout,
        })
    }
}

/// The bounded-out-of-orderness watermark of one input partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWatermark {
    max_ts: Option<EventTime>,
    watermark: EventTime,
}

impl Default for PartitionWatermark {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionWatermark {
    pub const fn new() -> Self {
        Self {
            max_ts: None,
            watermark: WATERMARK_MIN,
        }
    }

    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    pub fn max_timestamp(&self) -> Option<EventTime> {
        self.max_ts
    }

    /// Takes one record's timestamp; returns the (possibly raised) watermark.
    #[inline]
    pub fn observe(&mut self, ts: EventTime, out_of_orderness_ms: i64) -> EventTime {
        debug_assert!(out_of_orderness_ms >= 0);
        let max_ts = self.max_ts.map_or(ts, |max_ts| max_ts.max(ts));
        self.max_ts = Some(max_ts);
        let candidate = max_ts.saturating_sub(out_of_orderness_ms).saturating_sub(1);
        self.watermark = self.watermark.max(candidate);
        self.watermark
    }

    /// The end of a bounded input.
    pub fn finish(&mut self) -> EventTime {
        self.watermark = WATERMARK_MAX;
        self.watermark
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct InputState {
    partition: PartitionWatermark,
    /// Processing time of the last record (or registration), in ns since
    /// the runtime's epoch; signed, because a restore on a runtime whose
    /// clock is younger than the silence it carries over lands before 0.
    last_record_at_ns: i128,
    idle: bool,
}

fn nanos(time: Duration) -> i128 {
    i128::try_from(time.as_nanos()).expect("a Duration fits i128 nanoseconds")
}

fn silence(now: Duration, last_record_at_ns: i128) -> Duration {
    let silent_ns = (nanos(now) - last_record_at_ns).max(0);
    let seconds = u64::try_from(silent_ns / 1_000_000_000).unwrap_or(u64::MAX);
    let subsec = u32::try_from(silent_ns % 1_000_000_000).expect("below one second");
    Duration::new(seconds, subsec)
}

/// One input in a [`TrackerState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSnapshot<I> {
    pub input: I,
    pub partition: PartitionWatermark,
    pub idle: bool,
    /// Processing time since the input's last record (or since it was
    /// registered), at the snapshot: the idleness countdown resumes from
    /// here whatever epoch the restoring runtime's clock has.
    pub since_last_record: Duration,
}

/// The serializable state of a [`WatermarkTracker`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerState<I> {
    pub config: WatermarkConfig,
    pub watermark: EventTime,
    /// Sorted by input.
    pub inputs: Vec<InputSnapshot<I>>,
}

/// The watermark of a task over its input partitions.
#[derive(Clone, Debug)]
pub struct WatermarkTracker<I> {
    config: WatermarkConfig,
    inputs: BTreeMap<I, InputState>,
    watermark: EventTime,
}

impl<I: Ord + Clone + Debug> WatermarkTracker<I> {
    /// A tracker over these inputs, all active as of `now`.
    pub fn new(
        config: WatermarkConfig,
        inputs: impl IntoIterator<Item = I>,
        now: Duration,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for input in inputs {
            let state = InputState {
                partition: PartitionWatermark::new(),
                last_record_at_ns: nanos(now),
                idle: false,
            };
            if let Some(_duplicate) = map.insert(input.clone(), state) {
                return Err(Error::Invalid(format!("input {input:?} is listed twice")));
            }
        }
        if map.is_empty() {
            return Err(Error::Invalid(
                "a task needs at least one input".to_string(),
            ));
        }
        Ok(Self {
            config,
            inputs: map,
            watermark: WATERMARK_MIN,
        })
    }

    pub fn config(&self) -> &WatermarkConfig {
        &self.config
    }

    /// The task watermark: records are judged against it.
    #[inline]
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// The input's own watermark.
    pub fn input_watermark(&self, input: &I) -> Option<EventTime> {
        self.inputs
            .get(input)
            .map(|state| state.partition.watermark())
    }

    pub fn is_idle(&self, input: &I) -> Option<bool> {
        self.inputs.get(input).map(|state| state.idle)
    }

    pub fn check_input(&self, input: &I) -> Result<()> {
        if self.inputs.contains_key(input) {
            Ok(())
        } else {
            Err(Error::Invalid(format!("unknown input {input:?}")))
        }
    }

    /// Takes a record's timestamp on one input (which becomes active);
    /// returns the new task watermark.
    pub fn observe(&mut self, input: &I, ts: EventTime, now: Duration) -> Result<EventTime> {
        let out_of_orderness_ms = self.config.out_of_orderness_ms;
        let state = self
            .inputs
            .get_mut(input)
            .ok_or_else(|| Error::Invalid(format!("unknown input {input:?}")))?;
        let (watermark_before, idle_before) = (state.partition.watermark(), state.idle);
        state.partition.observe(ts, out_of_orderness_ms);
        state.last_record_at_ns = state.last_record_at_ns.max(nanos(now));
        state.idle = false;
        // Every change of an input's watermark or idleness recomputes the
        // task watermark, so if neither changed here it stays as it is
        // (most records raise no watermark).
        if state.partition.watermark() != watermark_before || idle_before {
            self.recompute();
        }
        Ok(self.watermark)
    }

    /// Processing time has reached `now`: inputs silent for the idle
    /// timeout become idle. Returns the (possibly raised) task watermark.
    pub fn on_processing_time(&mut self, now: Duration) -> EventTime {
        if let Some(timeout) = self.config.idle_timeout {
            let mut changed = false;
            for state in self.inputs.values_mut() {
                if !state.idle && silence(now, state.last_record_at_ns) >= timeout {
                    state.idle = true;
                    changed = true;
                }
            }
            if changed {
                self.recompute();
            }
        }
        self.watermark
    }

    /// End of a bounded input: every input's watermark, and the task's, go
    /// to `i64::MAX`.
    pub fn finish(&mut self) -> EventTime {
        for state in self.inputs.values_mut() {
            state.partition.finish();
        }
        self.watermark = WATERMARK_MAX;
        self.watermark
    }

    fn recompute(&mut self) {
        let active_min = self
            .inputs
            .values()
            .filter(|state| !state.idle)
            .map(|state| state.partition.watermark())
            .min();
        let candidate = match active_min {
            Some(min) => min,
            // All inputs idle: flush the largest input watermark.
            None => self
                .inputs
                .values()
                .map(|state| state.partition.watermark())
                .max()
                .expect("a tracker has at least one input"),
        };
        self.watermark = self.watermark.max(candidate);
    }

    /// The state to snapshot, as of processing time `now`.
    pub fn to_state(&self, now: Duration) -> TrackerState<I> {
        TrackerState {
            config: self.config,
            watermark: self.watermark,
            inputs: self
                .inputs
                .iter()
                .map(|(input, state)| InputSnapshot {
                    input: input.clone(),
                    partition: state.partition,
                    idle: state.idle,
                    since_last_record: silence(now, state.last_record_at_ns),
                })
                .collect(),
        }
    }

    /// A tracker continuing from a snapshot at processing time `now`. The
    /// configuration must be the one the snapshot was taken with.
    pub fn from_state(
        config: WatermarkConfig,
        state: TrackerState<I>,
        now: Duration,
    ) -> Result<Self> {
        if state.config != config {
            return Err(Error::CorruptSnapshot(format!(
                "watermark state was taken with {:?}, the task is configured with {config:?}",
                state.config
            )));
        }
        let mut inputs = BTreeMap::new();
        for snapshot in state.inputs {
            let input = snapshot.input;
            let partition = snapshot.partition;
            let consistent = match partition.max_ts {
                None => {
                    partition.watermark == WATERMARK_MIN || partition.watermark == WATERMARK_MAX
                }
                Some(max_ts) => {
                    partition.watermark == WATERMARK_MAX
                        || partition.watermark
                            >= max_ts
                                .saturating_sub(config.out_of_orderness_ms)
                                .saturating_sub(1)
                }
            };
            if !consistent {
                return Err(Error::CorruptSnapshot(format!(
                    "input {input:?}: watermark {} is below what its max timestamp {:?} allows",
                    partition.watermark, partition.max_ts
                )));
            }
            let state = InputState {
                partition,
                last_record_at_ns: nanos(now) - nanos(snapshot.since_last_record),
                idle: snapshot.idle,
            };
            if inputs.insert(input.clone(), state).is_some() {
                return Err(Error::CorruptSnapshot(format!(
                    "input {input:?} appears twice"
                )));
            }
        }
        if inputs.is_empty() {
            return Err(Error::CorruptSnapshot(
                "watermark state has no inputs".to_string(),
            ));
        }
        let mut tracker = Self {
            config,
            inputs,
            watermark: state.watermark,
        };
        // Recomputing must not move the watermark: it was computed from
        // these very inputs.
        let watermark = tracker.watermark;
        tracker.recompute();
        if tracker.watermark != watermark {
            return Err(Error::CorruptSnapshot(format!(
                "task watermark {watermark} is below what its inputs allow ({})",
                tracker.watermark
            )));
        }
        Ok(tracker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_idleness(out_of_orderness_ms: i64) -> WatermarkConfig {
        WatermarkConfig::new(out_of_orderness_ms, None).unwrap()
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    mod one_partition {
        use super::*;

        #[test]
        fn before_any_record_the_watermark_is_i64_min() {
            assert_eq!(PartitionWatermark::new().watermark(), i64::MIN);
        }

        #[test]
        fn after_a_record_the_watermark_is_max_timestamp_minus_d_minus_one() {
            let mut partition = PartitionWatermark::new();
            assert_eq!(partition.observe(10_000, 5_000), 4_999);
            assert_eq!(partition.observe(12_000, 5_000), 6_999);
        }

        #[test]
        fn an_out_of_order_record_does_not_lower_the_watermark() {
            let mut partition = PartitionWatermark::new();
            partition.observe(12_000, 5_000);
            assert_eq!(partition.observe(1_000, 5_000), 6_999);
            assert_eq!(partition.max_timestamp(), Some(12_000));
        }

        #[test]
        fn the_watermark_saturates_near_i64_min_instead_of_wrapping() {
            let mut partition = PartitionWatermark::new();
            assert_eq!(partition.observe(i64::MIN, 0), i64::MIN);
            assert_eq!(partition.observe(i64::MIN + 3, 10), i64::MIN);
            assert_eq!(partition.observe(i64::MAX, i64::MAX), -1);
        }
    }

    mod several_partitions {
        use super::*;

        #[test]
        fn the_task_watermark_is_the_minimum_over_inputs_and_waits_for_silent_ones() {
            let mut tracker = WatermarkTracker::new(no_idleness(0), [0u32, 1], secs(0)).unwrap();
            assert_eq!(tracker.observe(&0, 100, secs(1)).unwrap(), i64::MIN);
            assert_eq!(tracker.observe(&1, 50, secs(1)).unwrap(), 49);
            assert_eq!(tracker.observe(&1, 500, secs(1)).unwrap(), 99);
            // Without idleness, a silent input holds the watermark forever.
            assert_eq!(tracker.on_processing_time(secs(1_000_000)), 99);
        }

        #[test]
        fn the_task_watermark_never_goes_backwards() {
            let mut tracker = WatermarkTracker::new(no_idleness(0), [0u32], secs(0)).unwrap();
            assert_eq!(tracker.observe(&0, 100, secs(0)).unwrap(), 99);
            assert_eq!(tracker.observe(&0, 10, secs(0)).unwrap(), 99);
        }

        #[test]
        fn a_record_on_an_unknown_input_is_an_error() {
            let mut tracker = WatermarkTracker::new(no_idleness(0), [0u32], secs(0)).unwrap();
            assert!(tracker.observe(&7, 100, secs(0)).is_err());
            assert!(WatermarkTracker::new(no_idleness(0), [0u32, 0], secs(0)).is_err());
            assert!(WatermarkTracker::<u32>::new(no_idleness(0), [], secs(0)).is_err());
        }

        #[test]
        fn negative_out_of_orderness_and_a_zero_idle_timeout_are_refused() {
            assert!(WatermarkConfig::new(-1, None).is_err());
            assert!(WatermarkConfig::new(0, Some(Duration::ZERO)).is_err());
        }

        #[test]
        fn the_end_of_input_raises_the_watermark_to_i64_max() {
            let mut tracker = WatermarkTracker::new(no_idleness(0), [0u32, 1], secs(0)).unwrap();
            tracker.observe(&0, 100, secs(0)).unwrap();
            assert_eq!(tracker.finish(), i64::MAX);
            assert_eq!(tracker.input_watermark(&1), Some(i64::MAX));
        }
    }

    mod idleness {
        use super::*;

        fn idle_after(timeout: Duration) -> WatermarkConfig {
            WatermarkConfig::new(0, Some(timeout)).unwrap()
        }

        #[test]
        fn an_input_silent_for_the_timeout_is_excluded_from_the_minimum() {
            let mut tracker =
                WatermarkTracker::new(idle_after(secs(10)), [0u32, 1], secs(0)).unwrap();
            tracker.observe(&0, 1_000, secs(1)).unwrap();
            assert_eq!(tracker.on_processing_time(secs(9)), i64::MIN);
            // Input 1 never spoke: idle at 10 s; input 0 spoke at 1 s: active.
            assert_eq!(tracker.on_processing_time(secs(10)), 999);
            assert_eq!(tracker.is_idle(&1), Some(true));
            assert_eq!(tracker.is_idle(&0), Some(false));
        }

        #[test]
        fn an_idle_input_that_gets_a_record_counts_again_but_the_watermark_does_not_go_back() {
            let mut tracker =
                WatermarkTracker::new(idle_after(secs(10)), [0u32, 1], secs(0)).unwrap();
            tracker.observe(&0, 1_000, secs(0)).unwrap();
            tracker.on_processing_time(secs(10));
            // Both idle now (input 0 spoke at 0 s): the largest watermark is flushed.
            assert_eq!(tracker.watermark(), 999);
            assert_eq!(tracker.observe(&0, 2_000, secs(11)).unwrap(), 1_999);
            // Input 1 returns far behind: active again, holds the minimum, no regression.
            assert_eq!(tracker.observe(&1, 10, secs(12)).unwrap(), 1_999);
            assert_eq!(tracker.is_idle(&1), Some(false));
            assert_eq!(tracker.observe(&0, 3_000, secs(12)).unwrap(), 1_999);
            assert_eq!(tracker.observe(&1, 2_500, secs(12)).unwrap(), 2_499);
        }

        #[test]
        fn when_every_input_is_idle_the_largest_input_watermark_is_flushed() {
            let mut tracker =
                WatermarkTracker::new(idle_after(secs(5)), [0u32, 1], secs(0)).unwrap();
            tracker.observe(&0, 100, secs(0)).unwrap();
            tracker.observe(&1, 700, secs(0)).unwrap();
            assert_eq!(tracker.watermark(), 99);
            assert_eq!(tracker.on_processing_time(secs(5)), 699);
        }

        #[test]
        fn without_a_timeout_no_input_ever_goes_idle() {
            let mut tracker = WatermarkTracker::new(no_idleness(0), [0u32, 1], secs(0)).unwrap();
            tracker.on_processing_time(Duration::MAX);
            assert_eq!(tracker.is_idle(&0), Some(false));
            assert_eq!(tracker.is_idle(&1), Some(false));
        }
    }

    mod recompute {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// `observe` skips the recomputation when a record changes no
            /// input's watermark or idleness: the watermark must still be
            /// what a recomputation from scratch gives.
            #[test]
            fn the_task_watermark_is_always_what_a_recomputation_gives(
                idle_timeout_s in prop_oneof![Just(None), (1u64..5).prop_map(Some)],
                steps in prop::collection::vec((0u32..3, -20i64..20, 0u64..3), 0..100),
            ) {
                let config = WatermarkConfig::new(3, idle_timeout_s.map(secs)).unwrap();
                let mut tracker = WatermarkTracker::new(config, [0u32, 1, 2], secs(0)).unwrap();
                let (mut ts, mut now) = (0i64, 0u64);
                for (input, delta_ms, elapsed_s) in steps {
                    ts += delta_ms;
                    now += elapsed_s;
                    tracker.on_processing_time(secs(now));
                    tracker.observe(&input, ts, secs(now)).unwrap();
                    let mut recomputed = tracker.clone();
                    recomputed.recompute();
                    prop_assert_eq!(tracker.watermark(), recomputed.watermark());
                }
            }
        }
    }

    mod snapshot {
        use super::*;

        #[test]
        fn restoring_keeps_watermarks_idleness_and_the_idle_countdown() {
            let config = WatermarkConfig::new(5, Some(secs(10))).unwrap();
            let mut tracker = WatermarkTracker::new(config, [0u32, 1, 2], secs(100)).unwrap();
            tracker.observe(&0, 1_000, secs(101)).unwrap();
            tracker.observe(&1, 2_000, secs(104)).unwrap();
            tracker.on_processing_time(secs(110)); // input 2 idle (silent since 100 s)
            let state = tracker.to_state(secs(110));
            // The restoring runtime's clock has another epoch.
            let mut restored =
                WatermarkTracker::from_state(config, state.clone(), secs(7)).unwrap();
            assert_eq!(restored.to_state(secs(7)), state);
            assert_eq!(restored.watermark(), tracker.watermark());
            // Input 0 spoke 9 s before the snapshot: idle 1 s after the restore.
            assert_eq!(restored.on_processing_time(secs(7)), 994);
            assert_eq!(restored.on_processing_time(secs(8)), 1_994);
            assert_eq!(tracker.on_processing_time(secs(111)), 1_994);
        }

        #[test]
        fn a_state_taken_with_another_configuration_is_refused() {
            let tracker = WatermarkTracker::new(no_idleness(5), [0u32], secs(0)).unwrap();
            let state = tracker.to_state(secs(0));
            assert!(WatermarkTracker::from_state(no_idleness(6), state, secs(0)).is_err());
        }

        #[test]
        fn a_task_watermark_below_its_inputs_is_refused_as_corrupt() {
            let mut tracker = WatermarkTracker::new(no_idleness(0), [0u32], secs(0)).unwrap();
            tracker.observe(&0, 100, secs(0)).unwrap();
            let mut state = tracker.to_state(secs(0));
            state.watermark = 5;
            assert!(WatermarkTracker::from_state(no_idleness(0), state, secs(0)).is_err());
        }
    }
}
