//! Aggregations over a window's records.
//!
//! An [`Aggregator`] folds records into an accumulator (`create`, `add`),
//! combines two accumulators (`merge`: session windows merging, sliding
//! windows reading their panes) and turns an accumulator into the value a
//! firing carries (`result`). Built in: [`Count`], [`Sum`], [`Min`], [`Max`],
//! [`Avg`], [`DistinctCount`], [`FirstByTime`], [`LastByTime`], the
//! [`OnTimestamp`] and [`Project`] adapters that feed an aggregator the event
//! time or a field of the value, tuples of aggregators, the `eddy window`
//! [`Summary`], and [`Process`], which hands every record of the window to a
//! [`ProcessWindowFunction`] (like Flink's `ProcessWindowFunction`).
//!
//! Accumulators are serde values: they are part of the operator snapshot.
//! Overflow is an error ([`Error::Overflow`]), never a silent wrap.
//!
//! Every record carries its `arrival` sequence number (assigned by the
//! operator, strictly increasing): first/last by time break ties of equal
//! timestamps by arrival, and a process-window function sees records in
//! arrival order, even after sessions merged.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Key;
use crate::time::{EventTime, TimeWindow};

/// One record as an aggregator sees it.
#[derive(Debug)]
pub struct Input<'a, V> {
    pub ts: EventTime,
    /// The operator's arrival sequence number of this record (strictly
    /// increasing over the operator's lifetime, kept across restores).
    pub arrival: u64,
    pub value: &'a V,
}

impl<V> Clone for Input<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Input<'_, V> {}

/// The window a result is computed for.
#[derive(Clone, Copy, Debug)]
pub struct WindowContext<'a> {
    pub key: &'a Key,
    pub window: TimeWindow,
}

/// A fold over a window's records.
///
/// Contract: `add` and `merge` leave the accumulator unchanged when they
/// return an error; `merge` is associative and, for the built-ins,
/// commutative (a sliding window merges its panes in time order, a session
/// merges the sessions it covers in time order).
pub trait Aggregator<V> {
    /// The running state of one window (or pane, or session).
    type Acc: Clone + Debug + PartialEq + Serialize + DeserializeOwned;
    /// What a firing carries.
    type Output;

    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, input: Input<'_, V>) -> Result<()>;
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) -> Result<()>;
    fn result(&self, acc: &Self::Acc, context: &WindowContext<'_>) -> Result<Self::Output>;
}

fn overflow(what: &str, context: &WindowContext<'_>) -> Error {
    Error::Overflow(format!(
        "window [{}, {}) of key {:?}: {what}",
        context.window.start, context.window.end, &**context.key
    ))
}

fn accumulator_overflow(what: &str) -> Error {
    Error::Overflow(format!("{what} accumulator overflows"))
}

fn count_overflow() -> Error {
    Error::Overflow("record count exceeds u64".to_string())
}

// ---------------------------------------------------------------------------
// Count

/// The number of records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;
    type Output = u64;

    fn create(&self) -> u64 {
        0
    }

    #[inline]
    fn add(&self, acc: &mut u64, _input: Input<'_, V>) -> Result<()> {
        *acc = acc.checked_add(1).ok_or_else(count_overflow)?;
        Ok(())
    }

    fn merge(&self, acc: &mut u64, other: &u64) -> Result<()> {
        *acc = acc.checked_add(*other).ok_or_else(count_overflow)?;
        Ok(())
    }

    fn result(&self, acc: &u64, _context: &WindowContext<'_>) -> Result<u64> {
        Ok(*acc)
    }
}

// ---------------------------------------------------------------------------
// Sum

/// A value type that can be summed exactly.
///
/// Sums accumulate in a wider type (`i128` for `i64`) so that only the sum a
/// firing carries must fit the value type: a window's result never depends
/// on the order in which its records (or panes, or sessions) were added. A
/// decimal type would use itself as `Wide`, with checked addition.
pub trait SumValue {
    type Wide: Clone + Debug + PartialEq + Serialize + DeserializeOwned;
    fn zero() -> Self::Wide;
    fn widen(&self) -> Self::Wide;
    fn checked_add(a: &Self::Wide, b: &Self::Wide) -> Option<Self::Wide>;
    fn narrow(wide: &Self::Wide) -> Option<Self>
    where
        Self: Sized;
}

macro_rules! sum_value {
    ($($value:ty => $wide:ty),*) => {$(
        impl SumValue for $value {
            type Wide = $wide;
            fn zero() -> $wide {
                0
            }
            fn widen(&self) -> $wide {
                <$wide>::from(*self)
            }
            fn checked_add(a: &$wide, b: &$wide) -> Option<$wide> {
                a.checked_add(*b)
            }
            fn narrow(wide: &$wide) -> Option<$value> {
                <$value>::try_from(*wide).ok()
            }
        }
    )*};
}

sum_value!(i32 => i128, i64 => i128, u32 => u128, u64 => u128);

/// The exact sum of the values; an error if the sum a firing carries does not
/// fit the value type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum;

impl<V: SumValue> Aggregator<V> for Sum {
    type Acc = V::Wide;
    type Output = V;

    fn create(&self) -> V::Wide {
        V::zero()
    }

    fn add(&self, acc: &mut V::Wide, input: Input<'_, V>) -> Result<()> {
        *acc =
            V::checked_add(acc, &input.value.widen()).ok_or_else(|| accumulator_overflow("sum"))?;
        Ok(())
    }

    fn merge(&self, acc: &mut V::Wide, other: &V::Wide) -> Result<()> {
        *acc = V::checked_add(acc, other).ok_or_else(|| accumulator_overflow("sum"))?;
        Ok(())
    }

    fn result(&self, acc: &V::Wide, context: &WindowContext<'_>) -> Result<V> {
        V::narrow(acc).ok_or_else(|| {
            overflow(
                &format!("sum {acc:?} does not fit {}", std::any::type_name::<V>()),
                context,
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Min, Max

/// The smallest value (`None` for an empty window, which never fires).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Min;

/// The largest value (`None` for an empty window, which never fires).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Max;

/// Replaces `acc` with `value` when there is none yet or `value` compares
/// `better` (`Less` for a minimum, `Greater` for a maximum) than it; ties
/// keep the earlier value.
fn keep_if_better<V: Ord + Clone>(acc: &mut Option<V>, value: &V, better: Ordering) {
    match acc {
        Some(current) if value.cmp(current) != better => {}
        _ => *acc = Some(value.clone()),
    }
}

/// Min and Max are one aggregator with a different `better` ordering.
macro_rules! extreme_aggregator {
    ($($extreme:ty => $better:expr),*) => {$(
        impl<V> Aggregator<V> for $extreme
        where
            V: Ord + Clone + Debug + Serialize + DeserializeOwned,
        {
            type Acc = Option<V>;
            type Output = Option<V>;

            fn create(&self) -> Option<V> {
                None
            }

            fn add(&self, acc: &mut Option<V>, input: Input<'_, V>) -> Result<()> {
                keep_if_better(acc, input.value, $better);
                Ok(())
            }

            fn merge(&self, acc: &mut Option<V>, other: &Option<V>) -> Result<()> {
                if let Some(value) = other {
                    keep_if_better(acc, value, $better);
                }
                Ok(())
            }

            fn result(&self, acc: &Option<V>, _context: &WindowContext<'_>) -> Result<Option<V>> {
                Ok(acc.clone())
            }
        }
    )*};
}

extreme_aggregator!(Min => Ordering::Less, Max => Ordering::Greater);

// ---------------------------------------------------------------------------
// Avg

/// An integer value that can be averaged: it widens exactly to `i128`.
pub trait AvgValue {
    fn to_i128(&self) -> i128;
}

macro_rules! avg_value {
    ($($value:ty),*) => {$(
        impl AvgValue for $value {
            fn to_i128(&self) -> i128 {
                i128::from(*self)
            }
        }
    )*};
}

avg_value!(i8, i16, i32, i64, u8, u16, u32, u64);

/// The running state of [`Avg`]: an exact sum and a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvgAcc {
    pub sum: i128,
    pub count: u64,
}

/// The arithmetic mean, from an exact `i128` sum and count, rounded once to
/// `f64` (`None` for an empty window, which never fires).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Avg;

impl<V: AvgValue> Aggregator<V> for Avg {
    type Acc = AvgAcc;
    type Output = Option<f64>;

    fn create(&self) -> AvgAcc {
        AvgAcc::default()
    }

    fn add(&self, acc: &mut AvgAcc, input: Input<'_, V>) -> Result<()> {
        let sum = acc
            .sum
            .checked_add(input.value.to_i128())
            .ok_or_else(|| accumulator_overflow("avg"))?;
        let count = acc.count.checked_add(1).ok_or_else(count_overflow)?;
        *acc = AvgAcc { sum, count };
        Ok(())
    }

    fn merge(&self, acc: &mut AvgAcc, other: &AvgAcc) -> Result<()> {
        let sum = acc
            .sum
            .checked_add(other.sum)
            .ok_or_else(|| accumulator_overflow("avg"))?;
        let count = acc
            .count
            .checked_add(other.count)
            .ok_or_else(count_overflow)?;
        *acc = AvgAcc { sum, count };
        Ok(())
    }

    fn result(&self, acc: &AvgAcc, _context: &WindowContext<'_>) -> Result<Option<f64>> {
        if acc.count == 0 {
            return Ok(None);
        }
        // Both conversions round at most once each; exact for the sums and
        // counts seen in practice (below 2^53).
        Ok(Some(acc.sum as f64 / acc.count as f64))
    }
}

// ---------------------------------------------------------------------------
// DistinctCount

/// The number of distinct values (exact: the values are kept, in order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistinctCount;

impl<V> Aggregator<V> for DistinctCount
where
    V: Ord + Clone + Debug + Serialize + DeserializeOwned,
{
    type Acc = BTreeSet<V>;
    type Output = u64;

    fn create(&self) -> BTreeSet<V> {
        BTreeSet::new()
    }

    fn add(&self, acc: &mut BTreeSet<V>, input: Input<'_, V>) -> Result<()> {
        if !acc.contains(input.value) {
            acc.insert(input.value.clone());
        }
        Ok(())
    }

    fn merge(&self, acc: &mut BTreeSet<V>, other: &BTreeSet<V>) -> Result<()> {
        for value in other {
            if !acc.contains(value) {
                acc.insert(value.clone());
            }
        }
        Ok(())
    }

    fn result(&self, acc: &BTreeSet<V>, _context: &WindowContext<'_>) -> Result<u64> {
        u64::try_from(acc.len()).map_err(|_| count_overflow())
    }
}

// ---------------------------------------------------------------------------
// FirstByTime, LastByTime

/// A value with its event time and arrival sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element<V> {
    pub ts: EventTime,
    pub arrival: u64,
    pub value: V,
}

impl<V: Clone> Element<V> {
    fn of(input: Input<'_, V>) -> Self {
        Element {
            ts: input.ts,
            arrival: input.arrival,
            value: input.value.clone(),
        }
    }
}

/// The value with the smallest event time; among equal times, the one that
/// arrived first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstByTime;

/// The value with the largest event time; among equal times, the one that
/// arrived last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastByTime;

/// Replaces `acc` with `element()` when there is none yet or the candidate's
/// `(ts, arrival)` compares `better` (`Less` for the first, `Greater` for the
/// last) than the current one's.
fn replace_if_better<V>(
    acc: &mut Option<Element<V>>,
    candidate: (EventTime, u64),
    better: Ordering,
    element: impl FnOnce() -> Element<V>,
) {
    match acc {
        Some(current) if candidate.cmp(&(current.ts, current.arrival)) != better => {}
        _ => *acc = Some(element()),
    }
}

/// FirstByTime and LastByTime are one aggregator with a different `better`
/// ordering of `(ts, arrival)`.
macro_rules! by_time_aggregator {
    ($($by_time:ty => $better:expr),*) => {$(
        impl<V> Aggregator<V> for $by_time
        where
            V: Clone + Debug + PartialEq + Serialize + DeserializeOwned,
        {
            type Acc = Option<Element<V>>;
            type Output = Option<V>;

            fn create(&self) -> Option<Element<V>> {
                None
            }

            fn add(&self, acc: &mut Option<Element<V>>, input: Input<'_, V>) -> Result<()> {
                replace_if_better(acc, (input.ts, input.arrival), $better, || {
                    Element::of(input)
                });
                Ok(())
            }

            fn merge(
                &self,
                acc: &mut Option<Element<V>>,
                other: &Option<Element<V>>,
            ) -> Result<()> {
                if let Some(element) = other {
                    replace_if_better(acc, (element.ts, element.arrival), $better, || {
                        element.clone()
                    });
                }
                Ok(())
            }

            fn result(
                &self,
                acc: &Option<Element<V>>,
                _context: &WindowContext<'_>,
            ) -> Result<Option<V>> {
                Ok(acc.as_ref().map(|element| element.value.clone()))
            }
        }
    )*};
}

by_time_aggregator!(FirstByTime => Ordering::Less, LastByTime => Ordering::Greater);

// ---------------------------------------------------------------------------
// Adapters: OnTimestamp, Project

/// Feeds the inner aggregator each record's event time instead of its value:
/// `OnTimestamp(Min)` is the smallest event time of the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnTimestamp<A>(pub A);

impl<V, A: Aggregator<EventTime>> Aggregator<V> for OnTimestamp<A> {
    type Acc = A::Acc;
    type Output = A::Output;

    fn create(&self) -> A::Acc {
        self.0.create()
    }

    fn add(&self, acc: &mut A::Acc, input: Input<'_, V>) -> Result<()> {
        let ts = input.ts;
        self.0.add(
            acc,
            Input {
                ts,
                arrival: input.arrival,
                value: &ts,
            },
        )
    }

    fn merge(&self, acc: &mut A::Acc, other: &A::Acc) -> Result<()> {
        self.0.merge(acc, other)
    }

    fn result(&self, acc: &A::Acc, context: &WindowContext<'_>) -> Result<A::Output> {
        self.0.result(acc, context)
    }
}

/// Feeds the inner aggregator a projection of each value (a field, a
/// conversion): `Project::new(|order: &Order| order.amount, Sum)`.
pub struct Project<V, W, A> {
    projection: fn(&V) -> W,
    inner: A,
}

impl<V, W, A> Project<V, W, A> {
    pub fn new(projection: fn(&V) -> W, inner: A) -> Self {
        Self { projection, inner }
    }
}

impl<V, W, A: Clone> Clone for Project<V, W, A> {
    fn clone(&self) -> Self {
        Self {
            projection: self.projection,
            inner: self.inner.clone(),
        }
    }
}

impl<V, W, A: Debug> Debug for Project<V, W, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<V, W, A: Aggregator<W>> Aggregator<V> for Project<V, W, A> {
    type Acc = A::Acc;
    type Output = A::Output;

    fn create(&self) -> A::Acc {
        self.inner.create()
    }

    fn add(&self, acc: &mut A::Acc, input: Input<'_, V>) -> Result<()> {
        let projected = (self.projection)(input.value);
        self.inner.add(
            acc,
            Input {
                ts: input.ts,
                arrival: input.arrival,
                value: &projected,
            },
        )
    }

    fn merge(&self, acc: &mut A::Acc, other: &A::Acc) -> Result<()> {
        self.inner.merge(acc, other)
    }

    fn result(&self, acc: &A::Acc, context: &WindowContext<'_>) -> Result<A::Output> {
        self.inner.result(acc, context)
    }
}

// ---------------------------------------------------------------------------
// Tuples: several aggregates of the same records.

macro_rules! tuple_aggregator {
    ($(($name:ident, $index:tt)),+) => {
        impl<V, $($name: Aggregator<V>),+> Aggregator<V> for ($($name,)+) {
            type Acc = ($($name::Acc,)+);
            type Output = ($($name::Output,)+);

            fn create(&self) -> Self::Acc {
                ($(self.$index.create(),)+)
            }

            fn add(&self, acc: &mut Self::Acc, input: Input<'_, V>) -> Result<()> {
                // Keep the contract (unchanged on error): add to a copy.
                let mut next = acc.clone();
                $(self.$index.add(&mut next.$index, input)?;)+
                *acc = next;
                Ok(())
            }

            fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) -> Result<()> {
                let mut next = acc.clone();
                $(self.$index.merge(&mut next.$index, &other.$index)?;)+
                *acc = next;
                Ok(())
            }

            fn result(&self, acc: &Self::Acc, context: &WindowContext<'_>) -> Result<Self::Output> {
                Ok(($(self.$index.result(&acc.$index, context)?,)+))
            }
        }
    };
}

tuple_aggregator!((A, 0), (B, 1));
tuple_aggregator!((A, 0), (B, 1), (C, 2));
tuple_aggregator!((A, 0), (B, 1), (C, 2), (D, 3));
tuple_aggregator!((A, 0), (B, 1), (C, 2), (D, 3), (E, 4));
tuple_aggregator!((A, 0), (B, 1), (C, 2), (D, 3), (E, 4), (F, 5));

// ---------------------------------------------------------------------------
// Summary: what `eddy window` prints.

/// The running state of [`Summary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryAcc {
    pub count: u64,
    pub sum: i128,
    pub min_ts: EventTime,
    pub max_ts: EventTime,
}

/// What a `Summary` firing carries (the aggregate fields of an `eddy window`
/// output line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryResult {
    pub count: u64,
    pub sum: i64,
    pub min_ts: EventTime,
    pub max_ts: EventTime,
}

/// Count, exact `i64` sum of the values, and the smallest and largest event
/// time: the aggregate of `eddy window`, in one accumulator.
/// The same as `(Count, Sum, OnTimestamp(Min), OnTimestamp(Max))`, without
/// the `Option`s (a firing window is never empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary;

impl Aggregator<i64> for Summary {
    type Acc = SummaryAcc;
    type Output = SummaryResult;

    fn create(&self) -> SummaryAcc {
        SummaryAcc {
            count: 0,
            sum: 0,
            min_ts: EventTime::MAX,
            max_ts: EventTime::MIN,
        }
    }

    #[inline]
    fn add(&self, acc: &mut SummaryAcc, input: Input<'_, i64>) -> Result<()> {
        let count = acc.count.checked_add(1).ok_or_else(count_overflow)?;
        let sum = acc
            .sum
            .checked_add(i128::from(*input.value))
            .ok_or_else(|| accumulator_overflow("sum"))?;
        *acc = SummaryAcc {
            count,
            sum,
            min_ts: acc.min_ts.min(input.ts),
            max_ts: acc.max_ts.max(input.ts),
        };
        Ok(())
    }

    fn merge(&self, acc: &mut SummaryAcc, other: &SummaryAcc) -> Result<()> {
        let count = acc
            .count
            .checked_add(other.count)
            .ok_or_else(count_overflow)?;
        let sum = acc
            .sum
            .checked_add(other.sum)
            .ok_or_else(|| accumulator_overflow("sum"))?;
        *acc = SummaryAcc {
            count,
            sum,
            min_ts: acc.min_ts.min(other.min_ts),
            max_ts: acc.max_ts.max(other.max_ts),
        };
        Ok(())
    }

    fn result(&self, acc: &SummaryAcc, context: &WindowContext<'_>) -> Result<SummaryResult> {
        assert!(
            acc.count > 0,
            "a summary is only read for a window with records: window [{}, {}) key {:?}",
            context.window.start,
            context.window.end,
            &**context.key
        );
        let sum = i64::try_from(acc.sum)
            .map_err(|_| overflow(&format!("sum {} does not fit i64", acc.sum), context))?;
        Ok(SummaryResult {
            count: acc.count,
            sum,
            min_ts: acc.min_ts,
            max_ts: acc.max_ts,
        })
    }
}

// ---------------------------------------------------------------------------
// Process: a function of all the window's records.

/// A function of all of a window's records, like Flink's
/// `ProcessWindowFunction`. Records come in arrival order (also after
/// session merges). Wrap it in [`Process`] to use it as an aggregator; it
/// keeps every record of the window in state until the window is purged.
pub trait ProcessWindowFunction<V> {
    type Output;
    fn process(&self, context: &WindowContext<'_>, records: &[Element<V>]) -> Result<Self::Output>;
}

/// The aggregator that keeps all records and hands them to a
/// [`ProcessWindowFunction`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Process<F>(pub F);

impl<V, F> Aggregator<V> for Process<F>
where
    V: Clone + Debug + PartialEq + Serialize + DeserializeOwned,
    F: ProcessWindowFunction<V>,
{
    type Acc = Vec<Element<V>>;
    type Output = F::Output;

    fn create(&self) -> Vec<Element<V>> {
        Vec::new()
    }

    fn add(&self, acc: &mut Vec<Element<V>>, input: Input<'_, V>) -> Result<()> {
        // Arrivals only grow, so pushing keeps the records in arrival order.
        assert!(
            acc.last().is_none_or(|last| last.arrival < input.arrival),
            "arrival sequence numbers must grow: {:?} then {}",
            acc.last().map(|last| last.arrival),
            input.arrival
        );
        acc.push(Element::of(input));
        Ok(())
    }

    fn merge(&self, acc: &mut Vec<Element<V>>, other: &Vec<Element<V>>) -> Result<()> {
        let mut merged = Vec::with_capacity(acc.len() + other.len());
        let mut left = std::mem::take(acc).into_iter().peekable();
        let mut right = other.iter().peekable();
        loop {
            match (left.peek(), right.peek()) {
                (Some(a), Some(b)) => {
                    assert_ne!(a.arrival, b.arrival, "a record is in two merged windows");
                    if a.arrival < b.arrival {
                        merged.extend(left.next());
                    } else {
                        merged.extend(right.next().cloned());
                    }
                }
                (Some(_), None) => merged.extend(left.next()),
                (None, Some(_)) => merged.extend(right.next().cloned()),
                (None, None) => break,
            }
        }
        *acc = merged;
        Ok(())
    }

    fn result(&self, acc: &Vec<Element<V>>, context: &WindowContext<'_>) -> Result<F::Output> {
        self.0.process(context, acc)
    }
}

/// Any `Fn(&WindowContext, &[Element<V>]) -> Result<O>` is a process-window
/// function.
impl<V, O, F> ProcessWindowFunction<V> for F
where
    F: Fn(&WindowContext<'_>, &[Element<V>]) -> Result<O>,
{
    type Output = O;

    fn process(&self, context: &WindowContext<'_>, records: &[Element<V>]) -> Result<O> {
        self(context, records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_key() -> Key {
        Key::from("k")
    }

    /// Folds `(ts, value)` records in order with arrival numbers 0, 1, ...
    fn fold<V, A: Aggregator<V>>(aggregator: &A, records: &[(EventTime, V)]) -> A::Acc {
        let mut acc = aggregator.create();
        for (arrival, (ts, value)) in records.iter().enumerate() {
            let input = Input {
                ts: *ts,
                arrival: arrival as u64,
                value,
            };
            aggregator.add(&mut acc, input).unwrap();
        }
        acc
    }

    fn result<V, A: Aggregator<V>>(aggregator: &A, acc: &A::Acc) -> Result<A::Output> {
        let key = context_key();
        aggregator.result(
            acc,
            &WindowContext {
                key: &key,
                window: TimeWindow::new(0, 100),
            },
        )
    }

    fn split_and_merge<V: Clone, A: Aggregator<V>>(
        aggregator: &A,
        records: &[(EventTime, V)],
        at: usize,
    ) -> A::Acc {
        let mut left = aggregator.create();
        let mut right = aggregator.create();
        for (arrival, (ts, value)) in records.iter().enumerate() {
            let input = Input {
                ts: *ts,
                arrival: arrival as u64,
                value,
            };
            let acc = if arrival < at { &mut left } else { &mut right };
            aggregator.add(acc, input).unwrap();
        }
        aggregator.merge(&mut left, &right).unwrap();
        left
    }

    const RECORDS: &[(EventTime, i64)] = &[(5, 3), (1, -7), (5, 3), (9, 40), (1, 8), (9, 2)];

    mod builtins {
        use super::*;

        #[test]
        fn count_sum_min_max_avg_and_distinct_count_agree_with_a_direct_computation() {
            let aggregator = (Count, Sum, Min, Max, Avg, DistinctCount);
            let acc = fold(&aggregator, RECORDS);
            let (count, sum, min, max, avg, distinct) = result(&aggregator, &acc).unwrap();
            assert_eq!(count, 6);
            assert_eq!(sum, 49);
            assert_eq!(min, Some(-7));
            assert_eq!(max, Some(40));
            assert_eq!(avg, Some(49.0 / 6.0));
            assert_eq!(distinct, 5);
        }

        #[test]
        fn first_by_time_takes_the_earliest_arrival_among_the_smallest_timestamps() {
            // ts 1 arrives with values -7 (arrival 1) then 8 (arrival 4).
            let acc = fold(&FirstByTime, RECORDS);
            assert_eq!(result(&FirstByTime, &acc).unwrap(), Some(-7));
        }

        #[test]
        fn last_by_time_takes_the_latest_arrival_among_the_largest_timestamps() {
            // ts 9 arrives with values 40 (arrival 3) then 2 (arrival 5).
            let acc = fold(&LastByTime, RECORDS);
            assert_eq!(result(&LastByTime, &acc).unwrap(), Some(2));
        }

        #[test]
        fn merging_two_halves_gives_the_same_accumulator_as_one_fold_for_every_builtin() {
            let aggregator = (Count, Sum, Min, Max, Avg, DistinctCount);
            let whole = fold(&aggregator, RECORDS);
            let firsts = fold(&(FirstByTime, LastByTime), RECORDS);
            for at in 0..=RECORDS.len() {
                assert_eq!(
                    split_and_merge(&aggregator, RECORDS, at),
                    whole,
                    "split at {at}"
                );
                // Merged the other way round too: ties still go by arrival.
                let mut right = split_and_merge(&(FirstByTime, LastByTime), &RECORDS[at..], 0);
                for element in [&mut right.0, &mut right.1].into_iter().flatten() {
                    element.arrival += at as u64;
                }
                let left = fold(&(FirstByTime, LastByTime), &RECORDS[..at]);
                let mut merged = right.clone();
                (FirstByTime, LastByTime).merge(&mut merged, &left).unwrap();
                assert_eq!(merged, firsts, "reverse merge split at {at}");
            }
        }

        #[test]
        fn the_summary_equals_count_sum_and_min_max_of_timestamps() {
            let composed = (Count, Sum, OnTimestamp(Min), OnTimestamp(Max));
            let (count, sum, min_ts, max_ts) =
                result(&composed, &fold(&composed, RECORDS)).unwrap();
            let summary = result(&Summary, &fold(&Summary, RECORDS)).unwrap();
            assert_eq!(
                summary,
                SummaryResult {
                    count,
                    sum,
                    min_ts: min_ts.unwrap(),
                    max_ts: max_ts.unwrap()
                }
            );
            assert_eq!((summary.min_ts, summary.max_ts), (1, 9));
        }

        #[test]
        fn a_projection_feeds_a_field_of_the_value_to_the_inner_aggregate() {
            #[derive(Clone)]
            struct Click {
                page: &'static str,
            }
            let pages = Project::new(|click: &Click| click.page.to_string(), DistinctCount);
            let clicks = [
                (1, Click { page: "/a" }),
                (2, Click { page: "/b" }),
                (3, Click { page: "/a" }),
            ];
            assert_eq!(result(&pages, &fold(&pages, &clicks)).unwrap(), 2);
        }

        #[test]
        fn an_empty_accumulator_gives_none_rather_than_a_made_up_value() {
            let aggregator = (Min, Max, Avg, FirstByTime, LastByTime);
            let acc = Aggregator::<i64>::create(&aggregator);
            assert_eq!(
                result::<i64, _>(&aggregator, &acc).unwrap(),
                (None, None, None, None, None)
            );
        }
    }

    mod overflow {
        use super::*;

        #[test]
        fn a_sum_that_does_not_fit_the_value_type_is_an_error_naming_the_window() {
            let acc = fold(&Sum, &[(0, i64::MAX), (1, 1)]);
            let error = result::<i64, _>(&Sum, &acc).unwrap_err();
            assert!(matches!(error, Error::Overflow(_)), "{error}");
            assert!(error.to_string().contains("[0, 100)"), "{error}");
            assert!(error.to_string().contains("\"k\""), "{error}");
        }

        #[test]
        fn a_sum_is_exact_whatever_the_order_of_additions() {
            let acc = fold(
                &Sum,
                &[(0, i64::MAX), (1, i64::MAX), (2, i64::MIN), (3, i64::MIN)],
            );
            assert_eq!(result::<i64, _>(&Sum, &acc).unwrap(), -2);
        }

        #[test]
        fn a_failed_add_leaves_a_tuple_accumulator_unchanged() {
            let aggregator = (Count, Sum);
            let mut acc: (u64, i128) = (3, i128::MAX);
            let error = aggregator
                .add(
                    &mut acc,
                    Input {
                        ts: 0,
                        arrival: 0,
                        value: &1i64,
                    },
                )
                .unwrap_err();
            assert!(matches!(error, Error::Overflow(_)));
            assert_eq!(acc, (3, i128::MAX));
        }

        #[test]
        fn a_count_at_u64_max_refuses_to_wrap() {
            let mut acc = u64::MAX;
            let input = Input {
                ts: 0,
                arrival: 0,
                value: &0i64,
            };
            assert!(Count.add(&mut acc, input).is_err());
            assert!(Aggregator::<i64>::merge(&Count, &mut acc, &1).is_err());
            assert_eq!(acc, u64::MAX);
        }
    }

    mod process {
        use super::*;

        #[test]
        fn merged_record_lists_stay_in_arrival_order() {
            fn values(
                _context: &WindowContext<'_>,
                records: &[Element<i64>],
            ) -> Result<Vec<(u64, i64)>> {
                Ok(records
                    .iter()
                    .map(|element| (element.arrival, element.value))
                    .collect())
            }
            let aggregator = Process(values);
            let mut odd = aggregator.create();
            let mut even = aggregator.create();
            for arrival in 0..6u64 {
                let value = arrival as i64 * 10;
                let acc = if arrival % 2 == 0 {
                    &mut even
                } else {
                    &mut odd
                };
                let input = Input {
                    ts: 100 - arrival as i64,
                    arrival,
                    value: &value,
                };
                aggregator.add(acc, input).unwrap();
            }
            aggregator.merge(&mut odd, &even).unwrap();
            assert_eq!(
                result(&aggregator, &odd).unwrap(),
                vec![(0, 0), (1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]
            );
        }
    }
}
