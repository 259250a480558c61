//! Window assigners: which windows a timestamp belongs to.
//!
//! All arithmetic is done in `i128` and checked against the `i64` range, so
//! negative timestamps, any offset and timestamps near the ends of the range
//! are exact; a timestamp whose windows cannot be represented as `i64`
//! bounds is refused with an error (never wrapped).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::{EventTime, TimeWindow};

/// The most windows one record may belong to (sliding `size / slide`).
/// A bound on the work per record: a spec above it is refused.
pub const SLIDING_WINDOWS_PER_RECORD_MAX: i64 = 100_000;

/// A validated window assigner. Offsets are normalised (`rem_euclid`) into
/// `[0, size)` for tumbling and `[0, slide)` for sliding windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    Tumbling {
        size_ms: i64,
        offset_ms: i64,
    },
    Sliding {
        size_ms: i64,
        slide_ms: i64,
        offset_ms: i64,
    },
    Session {
        gap_ms: i64,
    },
}

impl WindowKind {
    /// Tumbling windows `[start, start + size)` with
    /// `start = ts - (ts - offset).rem_euclid(size)`.
    pub fn tumbling(size_ms: i64, offset_ms: i64) -> Result<Self> {
        if size_ms <= 0 {
            return Err(Error::Invalid(format!(
                "tumbling window size must be > 0 ms, got {size_ms}"
            )));
        }
        Ok(WindowKind::Tumbling {
            size_ms,
            offset_ms: offset_ms.rem_euclid(size_ms),
        })
    }

    /// Sliding windows: every `[s, s + size)` with `s ≡ offset (mod slide)`
    /// that contains the timestamp. `size < slide` would leave gaps where a
    /// record belongs to no window (Flink drops it silently): refused.
    pub fn sliding(size_ms: i64, slide_ms: i64, offset_ms: i64) -> Result<Self> {
        if size_ms <= 0 {
            return Err(Error::Invalid(format!(
                "sliding window size must be > 0 ms, got {size_ms}"
            )));
        }
        if slide_ms <= 0 {
            return Err(Error::Invalid(format!(
                "sliding window slide must be > 0 ms, got {slide_ms}"
            )));
        }
        if size_ms < slide_ms {
            return Err(Error::Invalid(format!(
                "sliding window size ({size_ms} ms) must be >= slide ({slide_ms} ms): \
                 otherwise records between windows would belong to no window"
            )));
        }
        // Both positive: ceil(size / slide) without overflow.
        let windows_per_record = size_ms / slide_ms + i64::from(size_ms % slide_ms != 0);
        if windows_per_record > SLIDING_WINDOWS_PER_RECORD_MAX {
            return Err(Error::Invalid(format!(
                "sliding window size / slide = {windows_per_record} windows per record \
                 exceeds the limit of {SLIDING_WINDOWS_PER_RECORD_MAX}"
            )));
        }
        Ok(WindowKind::Sliding {
            size_ms,
            slide_ms,
            offset_ms: offset_ms.rem_euclid(slide_ms),
        })
    }

    /// Session windows: each record makes `[ts, ts + gap)`; sessions of a key
    /// that overlap or touch merge.
    pub fn session(gap_ms: i64) -> Result<Self> {
        if gap_ms <= 0 {
            return Err(Error::Invalid(format!(
                "session gap must be > 0 ms, got {gap_ms}"
            )));
        }
        Ok(WindowKind::Session { gap_ms })
    }

    /// Refuses a timestamp whose windows have bounds outside `i64`.
    #[inline]
    pub fn check_timestamp(&self, ts: EventTime) -> Result<()> {
        let (first_start, last_end) = match *self {
            WindowKind::Tumbling { size_ms, offset_ms } => {
                let start = align_down(i128::from(ts), offset_ms, size_ms);
                (start, start + i128::from(size_ms))
            }
            WindowKind::Sliding {
                size_ms,
                slide_ms,
                offset_ms,
            } => {
                let last_start = align_down(i128::from(ts), offset_ms, slide_ms);
                let first_start = sliding_first_start(ts, last_start, size_ms, slide_ms);
                (first_start, last_start + i128::from(size_ms))
            }
            WindowKind::Session { gap_ms } => (i128::from(ts), i128::from(ts) + i128::from(gap_ms)),
        };
        if first_start < i128::from(EventTime::MIN) || last_end > i128::from(EventTime::MAX) {
            return Err(Error::Invalid(format!(
                "timestamp {ts} belongs to a window outside the i64 range \
                 ([{first_start}, {last_end}) with {self:?})"
            )));
        }
        Ok(())
    }
}

/// The largest `s <= t` with `s ≡ offset (mod step)`.
#[inline]
pub(crate) fn align_down(t: i128, offset_ms: i64, step_ms: i64) -> i128 {
    debug_assert!(step_ms > 0);
    t - (t - i128::from(offset_ms)).rem_euclid(i128::from(step_ms))
}

/// `align_down` for a value known to stay in range (checked).
#[inline]
pub(crate) fn align_down_i64(t: EventTime, offset_ms: i64, step_ms: i64) -> EventTime {
    let aligned = align_down(i128::from(t), offset_ms, step_ms);
    EventTime::try_from(aligned).unwrap_or_else(|_| {
        panic!(
            "aligned time {aligned} of {t} (offset {offset_ms}, step {step_ms}) left the i64 range"
        )
    })
}

/// The smallest window start `> ts - size` in the residue class of
/// `last_start` (the earliest sliding window that contains `ts`).
#[inline]
pub(crate) fn sliding_first_start(
    ts: EventTime,
    last_start: i128,
    size_ms: i64,
    slide_ms: i64,
) -> i128 {
    let lower_exclusive = i128::from(ts) - i128::from(size_ms);
    let steps_back = (last_start - lower_exclusive - 1).div_euclid(i128::from(slide_ms));
    last_start - steps_back * i128::from(slide_ms)
}

/// The tumbling window of `ts` (the timestamp must have passed
/// [`WindowKind::check_timestamp`]).
#[inline]
pub(crate) fn tumbling_window(ts: EventTime, size_ms: i64, offset_ms: i64) -> TimeWindow {
    let start = align_down_i64(ts, offset_ms, size_ms);
    TimeWindow::new(start, start + size_ms)
}

/// Greatest common divisor (both positive).
pub(crate) fn gcd(mut a: i64, mut b: i64) -> i64 {
    debug_assert!(a > 0 && b > 0);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    mod tumbling {
        use super::*;

        #[test]
        fn a_positive_timestamp_falls_in_the_window_that_starts_at_its_floor() {
            assert_eq!(
                tumbling_window(1_234, 1_000, 0),
                TimeWindow::new(1_000, 2_000)
            );
            assert_eq!(
                tumbling_window(1_000, 1_000, 0),
                TimeWindow::new(1_000, 2_000)
            );
            assert_eq!(tumbling_window(999, 1_000, 0), TimeWindow::new(0, 1_000));
        }

        #[test]
        fn a_negative_timestamp_falls_in_the_window_below_it_not_toward_zero() {
            assert_eq!(tumbling_window(-1, 1_000, 0), TimeWindow::new(-1_000, 0));
            assert_eq!(
                tumbling_window(-1_000, 1_000, 0),
                TimeWindow::new(-1_000, 0)
            );
            assert_eq!(
                tumbling_window(-1_001, 1_000, 0),
                TimeWindow::new(-2_000, -1_000)
            );
        }

        #[test]
        fn an_offset_shifts_the_window_grid_and_any_offset_is_normalised() {
            let kind = WindowKind::tumbling(1_000, 250).unwrap();
            assert_eq!(
                kind,
                WindowKind::Tumbling {
                    size_ms: 1_000,
                    offset_ms: 250
                }
            );
            assert_eq!(tumbling_window(249, 1_000, 250), TimeWindow::new(-750, 250));
            assert_eq!(
                tumbling_window(250, 1_000, 250),
                TimeWindow::new(250, 1_250)
            );
            assert_eq!(
                WindowKind::tumbling(1_000, -750).unwrap(),
                WindowKind::Tumbling {
                    size_ms: 1_000,
                    offset_ms: 250
                }
            );
            assert_eq!(
                WindowKind::tumbling(1_000, i64::MIN).unwrap(),
                WindowKind::Tumbling {
                    size_ms: 1_000,
                    offset_ms: i64::MIN.rem_euclid(1_000)
                }
            );
        }

        #[test]
        fn a_timestamp_whose_window_would_leave_the_i64_range_is_refused() {
            let kind = WindowKind::tumbling(1_000, 0).unwrap();
            assert!(kind.check_timestamp(i64::MAX).is_err());
            assert!(kind.check_timestamp(i64::MIN).is_err());
            let edge = i64::MAX - i64::MAX.rem_euclid(1_000) - 1;
            assert!(kind.check_timestamp(edge).is_ok());
            let lowest = i64::MIN + (1_000 - i64::MIN.rem_euclid(1_000));
            assert!(kind.check_timestamp(lowest).is_ok());
        }

        #[test]
        fn a_size_of_zero_or_less_is_refused() {
            assert!(WindowKind::tumbling(0, 0).is_err());
            assert!(WindowKind::tumbling(-5, 0).is_err());
        }
    }

    mod sliding {
        use super::*;

        fn starts(ts: EventTime, size_ms: i64, slide_ms: i64, offset_ms: i64) -> Vec<i128> {
            let last = align_down(i128::from(ts), offset_ms, slide_ms);
            let first = sliding_first_start(ts, last, size_ms, slide_ms);
            (0..)
                .map(|k| first + k * i128::from(slide_ms))
                .take_while(|start| *start <= last)
                .collect()
        }

        #[test]
        fn a_record_belongs_to_size_over_slide_windows_when_slide_divides_size() {
            assert_eq!(starts(25, 30, 10, 0), vec![0, 10, 20]);
            assert_eq!(starts(-5, 30, 10, 0), vec![-30, -20, -10]);
        }

        #[test]
        fn a_record_belongs_to_two_or_three_windows_when_slide_does_not_divide_size() {
            assert_eq!(starts(8, 10, 4, 0), vec![0, 4, 8]);
            assert_eq!(starts(11, 10, 4, 0), vec![4, 8]);
        }

        #[test]
        fn a_size_below_the_slide_is_refused_because_it_would_drop_records() {
            let error = WindowKind::sliding(5, 10, 0).unwrap_err();
            assert!(error.to_string().contains("must be >= slide"), "{error}");
        }

        #[test]
        fn too_many_windows_per_record_are_refused() {
            assert!(WindowKind::sliding(SLIDING_WINDOWS_PER_RECORD_MAX, 1, 0).is_ok());
            assert!(WindowKind::sliding(SLIDING_WINDOWS_PER_RECORD_MAX + 1, 1, 0).is_err());
        }

        #[test]
        fn an_offset_is_normalised_into_the_slide() {
            assert_eq!(
                WindowKind::sliding(30, 10, 23).unwrap(),
                WindowKind::Sliding {
                    size_ms: 30,
                    slide_ms: 10,
                    offset_ms: 3
                }
            );
            assert_eq!(
                starts(25, 30, 10, 3),
                vec![-7, 3, 13, 23]
                    .into_iter()
                    .filter(|start| start + 30 > 25)
                    .collect::<Vec<_>>()
            );
        }
    }

    mod session {
        use super::*;

        #[test]
        fn a_gap_of_zero_or_less_is_refused() {
            assert!(WindowKind::session(0).is_err());
            assert!(WindowKind::session(-1).is_err());
        }

        #[test]
        fn a_timestamp_whose_session_end_overflows_is_refused() {
            let kind = WindowKind::session(10).unwrap();
            assert!(kind.check_timestamp(i64::MAX - 10).is_ok());
            assert!(kind.check_timestamp(i64::MAX - 9).is_err());
            assert!(kind.check_timestamp(i64::MIN).is_ok());
        }
    }

    #[test]
    fn gcd_of_window_size_and_slide_is_the_pane_width() {
        assert_eq!(gcd(30, 10), 10);
        assert_eq!(gcd(10, 4), 2);
        assert_eq!(gcd(7, 7), 7);
        assert_eq!(gcd(9, 4), 1);
    }
}
