//! A monotone timer queue: a radix heap (Ahuja, Mehlhorn, Orlin and Tarjan,
//! 1990) over event times.
//!
//! Event-time timers are *monotone*: a timer is only ever set later than the
//! last time the queue handed out (the watermark only rises, and a timer is
//! set after it, or after the timer being handled). A radix heap uses that:
//! an entry goes to the bucket named by the highest bit in which its time
//! differs from the last time handed out, so pushing is appending to a
//! `Vec`, and popping the next time redistributes one bucket into lower
//! ones. Each entry moves down at most 64 times in its life, and in
//! practice about `log2(time to fire)` times, always sequentially through
//! memory: far cheaper than an ordered map's descent, insertion and
//! rebalancing per timer.
//!
//! Deterministic: where an entry sits is a function of the sequence of
//! operations alone, and entries of equal time come out together (in an
//! order fixed by that sequence; callers that need an order sort them).

use crate::time::EventTime;

/// Buckets: 0 holds the entries at exactly `last`; bucket `i >= 1` the
/// entries whose time differs from `last` first in bit `i - 1`.
const BUCKETS: usize = 65;

/// Order-preserving map of event times (`i64`) to `u64`.
#[inline]
fn to_key(time: EventTime) -> u64 {
    (time as u64) ^ (1 << 63)
}

#[inline]
fn to_time(key: u64) -> EventTime {
    (key ^ (1 << 63)) as EventTime
}

/// The bucket of `key` relative to `last` (`key >= last`).
#[inline]
fn bucket_of(last: u64, key: u64) -> usize {
    if key == last {
        0
    } else {
        (u64::BITS - (key ^ last).leading_zeros()) as usize
    }
}

struct Bucket<T> {
    /// The smallest key in the bucket (when it is non-empty).
    min: u64,
    entries: Vec<(u64, T)>,
}

pub(crate) struct TimerQueue<T> {
    /// `BUCKETS` buckets.
    buckets: Vec<Bucket<T>>,
    /// Bit `i` is set iff bucket `i` is non-empty.
    occupied: u128,
    /// The key of the last time handed out (of `EventTime::MIN` before
    /// any): every entry's key is at least this.
    last: u64,
    len: usize,
}

impl<T> TimerQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS)
                .map(|_| Bucket {
                    min: 0,
                    entries: Vec::new(),
                })
                .collect(),
            occupied: 0,
            last: to_key(EventTime::MIN),
            len: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds an entry at `time`, which is not before the last time handed
    /// out (timers are monotone; a violation is a bug in the caller).
    #[inline]
    pub(crate) fn push(&mut self, time: EventTime, value: T) {
        let key = to_key(time);
        assert!(
            key >= self.last,
            "a timer at {time} is set before the last time handed out, {}",
            to_time(self.last)
        );
        self.push_key(key, value);
        self.len += 1;
    }

    #[inline]
    fn push_key(&mut self, key: u64, value: T) {
        let index = bucket_of(self.last, key);
        let bucket = &mut self.buckets[index];
        if self.occupied & (1 << index) == 0 {
            self.occupied |= 1 << index;
            bucket.min = key;
        } else {
            bucket.min = bucket.min.min(key);
        }
        bucket.entries.push((key, value));
    }

    /// The earliest time in the queue.
    #[inline]
    pub(crate) fn first_time(&self) -> Option<EventTime> {
        if self.occupied == 0 {
            return None;
        }
        Some(to_time(
            self.buckets[self.occupied.trailing_zeros() as usize].min,
        ))
    }

    /// Moves every entry at the earliest time to `out` and returns that
    /// time, if it is at or below `watermark`.
    pub(crate) fn pop_due(&mut self, watermark: EventTime, out: &mut Vec<T>) -> Option<EventTime> {
        let time = self.first_time()?;
        if time > watermark {
            return None;
        }
        let first = self.occupied.trailing_zeros() as usize;
        if first != 0 {
            // Hand out the smallest key of the first bucket next: its
            // entries all go to lower buckets relative to it.
            self.last = self.buckets[first].min;
            self.occupied &= !(1 << first);
            let mut entries = std::mem::take(&mut self.buckets[first].entries);
            for (key, value) in entries.drain(..) {
                debug_assert!(bucket_of(self.last, key) < first);
                self.push_key(key, value);
            }
            // Keep the allocation.
            self.buckets[first].entries = entries;
        }
        debug_assert_eq!(self.buckets[0].min, self.last);
        let due = &mut self.buckets[0].entries;
        self.len -= due.len();
        out.extend(due.drain(..).map(|(_, value)| value));
        self.occupied &= !1;
        Some(time)
    }

    /// Keeps the entries for which `keep(time, entry)` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(EventTime, &T) -> bool) {
        self.len = 0;
        for (index, bucket) in self.buckets.iter_mut().enumerate() {
            bucket
                .entries
                .retain(|(key, value)| keep(to_time(*key), value));
            self.len += bucket.entries.len();
            match bucket.entries.iter().map(|(key, _)| *key).min() {
                Some(min) => {
                    self.occupied |= 1 << index;
                    bucket.min = min;
                }
                None => self.occupied &= !(1 << index),
            }
        }
    }

    /// Every entry with its time, in no particular order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (EventTime, &T)> {
        self.buckets
            .iter()
            .flat_map(|bucket| &bucket.entries)
            .map(|(key, value)| (to_time(*key), value))
    }

    /// Drops every entry (the monotone bound stays).
    pub(crate) fn clear(&mut self) {
        for bucket in &mut self.buckets {
            bucket.entries.clear();
        }
        self.occupied = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Operations on a queue: push at `watermark + delta` (saturating), or
    /// raise the watermark by `delta` and pop everything due.
    #[derive(Clone, Debug)]
    enum Op {
        Push(i64),
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let delta = prop_oneof![
            4 => 0i64..50,
            2 => 0i64..1_000_000,
            1 => Just(i64::MAX),
            1 => any::<i64>().prop_map(i64::unsigned_abs).prop_map(|d| (d / 2) as i64),
        ];
        prop_oneof![
            3 => delta.clone().prop_map(Op::Push),
            1 => delta.prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn entries_come_out_by_time_as_from_an_ordered_map(
            start in prop_oneof![Just(i64::MIN), any::<i64>(), Just(-1i64), Just(0i64)],
            ops in prop::collection::vec(op(), 0..200),
        ) {
            let mut queue = TimerQueue::new();
            let mut model: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            // Timers are set after the watermark (the last time handed out
            // is at or below it).
            let mut watermark = start;
            let mut next_value = 0u32;
            for op in ops {
                match op {
                    Op::Push(delta) => {
                        let time = watermark.saturating_add(delta);
                        queue.push(time, next_value);
                        model.entry(time).or_default().push(next_value);
                        next_value += 1;
                    }
                    Op::Advance(delta) => {
                        watermark = watermark.saturating_add(delta);
                        let mut out = Vec::new();
                        while let Some(time) = queue.pop_due(watermark, &mut out) {
                            let (expected_time, mut expected) = model.pop_first().unwrap();
                            prop_assert_eq!(time, expected_time);
                            out.sort_unstable();
                            expected.sort_unstable();
                            prop_assert_eq!(&out, &expected);
                            out.clear();
                        }
                        prop_assert!(model.first_key_value().is_none_or(|(time, _)| *time > watermark));
                    }
                }
                prop_assert_eq!(queue.len(), model.values().map(Vec::len).sum::<usize>());
                prop_assert_eq!(queue.first_time(), model.first_key_value().map(|(time, _)| *time));
            }
        }

        #[test]
        fn retain_keeps_exactly_the_chosen_entries_and_the_order_of_times(
            times in prop::collection::vec(any::<i64>(), 0..100),
            modulus in 1u32..5,
        ) {
            let mut queue = TimerQueue::new();
            for (value, time) in times.iter().enumerate() {
                queue.push(*time, value as u32);
            }
            queue.retain(|_, value| value % modulus == 0);
            let mut expected: Vec<(i64, u32)> = times
                .iter()
                .enumerate()
                .map(|(value, time)| (*time, value as u32))
                .filter(|(_, value)| value % modulus == 0)
                .collect();
            expected.sort_unstable();
            let mut actual = Vec::new();
            let mut out = Vec::new();
            while let Some(time) = queue.pop_due(i64::MAX, &mut out) {
                actual.extend(out.drain(..).map(|value| (time, value)));
            }
            actual.sort_unstable();
            prop_assert_eq!(actual, expected);
        }
    }

    #[test]
    #[should_panic(expected = "before the last time handed out")]
    fn a_timer_before_the_last_time_handed_out_is_a_bug() {
        let mut queue = TimerQueue::new();
        queue.push(10, ());
        let mut out = Vec::new();
        assert_eq!(queue.pop_due(10, &mut out), Some(10));
        queue.push(9, ());
    }
}
