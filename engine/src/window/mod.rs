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
//! [`Error::Invalid`] before anything changes. An aggregate overflow
//! ([`Error::Overflow`]) may leave the state half-updated: the operator
//! refuses every later call, and the task must restore from a snapshot.

mod assigner;
mod session;
mod sliding;
mod task;
mod timer_queue;
mod tumbling;

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregator, WindowContext};
use crate::error::{Error, Result};
use crate::record::{Key, Record};
use crate::snapshot::{self, SnapshotKind};
pub use crate::time::TimeWindow;
use crate::time::{EventTime, WATERMARK_MAX, WATERMARK_MIN};

pub use assigner::{SLIDING_WINDOWS_PER_RECORD_MAX, WindowKind};
pub use task::WindowTask;

use session::SessionState;
use sliding::SlidingState;
use tumbling::TumblingState;

/// A key as the window state orders it: one `u128` holding its first 15
/// bytes (big endian, zero padded) and `min(len, 16)` in the low byte, then
/// the whole key. Orders exactly as the key's bytes (`str`'s order):
/// - different first 15 bytes (zero padded) order the keys as their bytes
///   do (where the padding decides, the shorter key is a prefix of the
///   other);
/// - equal first 15 bytes and a length below 16 on either side: the shorter
///   key is a prefix of the longer one, so the length decides (and equal
///   lengths mean equal keys);
/// - only two keys of 16 bytes or more sharing their first 15 compare
///   their heap bytes.
///
/// So comparisons in a big map are one integer comparison, decided without
/// touching the key's heap allocation, in all but that last case.
#[derive(Clone, Debug)]
pub(crate) struct StateKey {
    order: u128,
    pub(crate) key: Key,
}

/// Key bytes held in [`StateKey::order`].
const STATE_KEY_INLINE_BYTES: usize = 15;

/// The first `min(len, 15)` bytes of `bytes`, big endian and zero padded,
/// in the top 15 bytes of a `u128` (the low byte is zero). Built in
/// registers from fixed-size loads (overlapping where the length is not a
/// power of two), so that no variable-length copy goes through memory.
#[inline]
fn prefix_word(bytes: &[u8]) -> u128 {
    let len = bytes.len().min(STATE_KEY_INLINE_BYTES);
    let be_u64 = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let be_u32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let high: u64;
    let low: u64;
    if len >= 8 {
        high = be_u64(0);
        // The 8 bytes ending at `len` hold bytes 8..len at their end.
        low = match len {
            8 => 0,
            _ => be_u64(len - 8) << (8 * (16 - len)),
        };
    } else if len >= 4 {
        // The 4 bytes ending at `len` hold bytes 4..len at their end.
        let rest = match len {
            4 => 0,
            _ => be_u32(len - 4) << (8 * (8 - len)),
        };
        high = (u64::from(be_u32(0)) << 32) | u64::from(rest);
        low = 0;
    } else {
        high = bytes[..len]
            .iter()
            .enumerate()
            .fold(0, |word, (at, &byte)| {
                word | (u64::from(byte) << (56 - 8 * at))
            });
        low = 0;
    }
    (u128::from(high) << 64) | u128::from(low)
}

impl StateKey {
    #[inline]
    pub(crate) fn new(key: Key) -> Self {
        let bytes = key.as_bytes();
        // At most 16: fits the low byte.
        let len_byte = bytes.len().min(STATE_KEY_INLINE_BYTES + 1) as u128;
        Self {
            order: prefix_word(bytes) | len_byte,
            key,
        }
    }

    /// Whether the order word alone does not tell two keys with equal
    /// words apart (both are 16 bytes or longer).
    #[inline]
    fn is_long(&self) -> bool {
        self.order as u8 as usize > STATE_KEY_INLINE_BYTES
    }
}

impl PartialEq for StateKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && (!self.is_long() || self.key == other.key)
    }
}

impl Eq for StateKey {}

impl PartialOrd for StateKey {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StateKey {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match self.order.cmp(&other.order) {
            std::cmp::Ordering::Equal if self.is_long() => {
                self.key.as_bytes().cmp(other.key.as_bytes())
            }
            order => order,
        }
    }
}

/// The window assigner and the allowed lateness of an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub kind: WindowKind,
    pub allowed_lateness_ms: i64,
}

impl WindowConfig {
    pub fn new(kind: WindowKind, allowed_lateness_ms: i64) -> Result<Self> {
        if allowed_lateness_ms < 0 {
            return Err(Error::Invalid(format!(
                "allowed lateness must be >= 0 ms, got {allowed_lateness_ms}"
            )));
        }
        Ok(Self {
            kind,
            allowed_lateness_ms,
        })
    }
}

/// Why a window fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FiringKind {
    /// Fired by the watermark reaching the window's max timestamp.
    OnTime,
    /// Fired by a record added to a window the watermark had already reached.
    LateUpdate,
}

impl FiringKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FiringKind::OnTime => "on_time",
            FiringKind::LateUpdate => "late_update",
        }
    }
}

/// One firing: the full aggregate of a window so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing<O> {
    pub key: Key,
    pub window: TimeWindow,
    pub kind: FiringKind,
    pub result: O,
    /// The operator's watermark when it fired: for a `late_update` the
    /// watermark the record was judged against; for `on_time` the watermark
    /// that fired it.
    pub watermark: EventTime,
}

/// A record all of whose windows were late.
#[derive(Clone, Debug, PartialEq)]
pub struct LateRecord<V> {
    pub record: Record<V>,
    /// The watermark the record was judged against.
    pub watermark: EventTime,
}

/// What an operator emits, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<V, O> {
    Fire(Firing<O>),
    Late(LateRecord<V>),
}

/// What an operator has done so far (part of its snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounters {
    /// Records processed.
    pub records: u64,
    /// Records sent to the late side output.
    pub records_late: u64,
    /// `on_time` firings.
    pub fired_on_time: u64,
    /// `late_update` firings.
    pub fired_late_update: u64,
    /// Windows (panes, for sliding windows) whose state was purged.
    pub states_purged: u64,
}

/// The lateness rules at one watermark.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) watermark: EventTime,
    pub(crate) allowed_lateness_ms: i64,
}

impl Clock {
    /// `max_timestamp + L`, saturating at `i64::MAX` (as Flink does).
    #[inline]
    pub(crate) fn cleanup_time(&self, window: TimeWindow) -> EventTime {
        self.cleanup_time_of_end(window.end)
    }

    /// The cleanup time depends on a window's end alone.
    #[inline]
    pub(crate) fn cleanup_time_of_end(&self, end: EventTime) -> EventTime {
        (end - 1).saturating_add(self.allowed_lateness_ms)
    }

    #[inline]
    pub(crate) fn is_window_late(&self, window: TimeWindow) -> bool {
        self.cleanup_time(window) <= self.watermark
    }

    #[inline]
    pub(crate) fn is_element_late(&self, ts: EventTime) -> bool {
        ts.saturating_add(self.allowed_lateness_ms) <= self.watermark
    }

    #[inline]
    pub(crate) fn has_reached(&self, window: TimeWindow) -> bool {
        window.max_timestamp() <= self.watermark
    }

    /// Refuses restored state (`what`, of `key`) whose `window` is late: the
    /// watermark would have purged it.
    pub(crate) fn check_restored(
        &self,
        window: TimeWindow,
        what: fmt::Arguments<'_>,
        key: &Key,
    ) -> Result<()> {
        if self.is_window_late(window) {
            return Err(corrupt(format!(
                "{what} of key {:?} is late at watermark {} but still has state",
                &**key, self.watermark
            )));
        }
        Ok(())
    }
}

/// What the per-kind state code needs from the operator for one call.
pub(crate) struct Ctx<'a, V, A: Aggregator<V>> {
    pub(crate) aggregator: &'a A,
    pub(crate) clock: Clock,
    pub(crate) counters: &'a mut WindowCounters,
    pub(crate) out: &'a mut Vec<Output<V, A::Output>>,
}

impl<V, A: Aggregator<V>> Ctx<'_, V, A> {
    pub(crate) fn fire(
        &mut self,
        key: &Key,
        window: TimeWindow,
        acc: &A::Acc,
        kind: FiringKind,
    ) -> Result<()> {
        self.fire_owned(key.clone(), window, acc, kind)
    }

    /// [`Self::fire`] with a key the caller gives up.
    pub(crate) fn fire_owned(
        &mut self,
        key: Key,
        window: TimeWindow,
        acc: &A::Acc,
        kind: FiringKind,
    ) -> Result<()> {
        let result = self
            .aggregator
            .result(acc, &WindowContext { key: &key, window })?;
        match kind {
            FiringKind::OnTime => self.counters.fired_on_time += 1,
            FiringKind::LateUpdate => self.counters.fired_late_update += 1,
        }
        self.out.push(Output::Fire(Firing {
            key,
            window,
            kind,
            result,
            watermark: self.clock.watermark,
        }));
        Ok(())
    }

    pub(crate) fn late(&mut self, record: Record<V>) {
        assert!(
            self.clock.is_element_late(record.ts),
            "a record all of whose windows are late is itself late: ts {} watermark {} L {}",
            record.ts,
            self.clock.watermark,
            self.clock.allowed_lateness_ms
        );
        self.counters.records_late += 1;
        self.out.push(Output::Late(LateRecord {
            record,
            watermark: self.clock.watermark,
        }));
    }
}

/// One window's (pane's, session's) state in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateEntry<Acc> {
    pub(crate) key: Key,
    pub(crate) start: EventTime,
    pub(crate) end: EventTime,
    pub(crate) acc: Acc,
}

impl<Acc: Clone> StateEntry<Acc> {
    pub(crate) fn of(key: &StateKey, start: EventTime, end: EventTime, acc: &Acc) -> Self {
        Self {
            key: key.key.clone(),
            start,
            end,
            acc: acc.clone(),
        }
    }
}

/// The snapshot of an operator: everything it needs to continue exactly.
/// Timer and index structures are derived from these on restore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct OperatorState<Acc> {
    pub(crate) config: WindowConfig,
    pub(crate) watermark: EventTime,
    pub(crate) arrival_next: u64,
    pub(crate) counters: WindowCounters,
    /// Sorted by `(key, start)`.
    pub(crate) entries: Vec<StateEntry<Acc>>,
}

enum KindState<Acc> {
    Tumbling(TumblingState<Acc>),
    Sliding(SlidingState<Acc>),
    Session(SessionState<Acc>),
}

/// The keyed event-time window operator of one task.
pub struct WindowOperator<V, A: Aggregator<V>> {
    config: WindowConfig,
    aggregator: A,
    watermark: EventTime,
    /// The arrival sequence number the next record gets.
    arrival_next: u64,
    counters: WindowCounters,
    state: KindState<A::Acc>,
    /// Set by an error that may have left the state half-updated.
    failure: Option<String>,
    _value: PhantomData<fn(V)>,
}

impl<V, A: Aggregator<V>> WindowOperator<V, A> {
    pub fn new(config: WindowConfig, aggregator: A) -> Self {
        let state = match config.kind {
            WindowKind::Tumbling { size_ms, offset_ms } => {
                KindState::Tumbling(TumblingState::new(size_ms, offset_ms))
            }
            WindowKind::Sliding {
                size_ms,
                slide_ms,
                offset_ms,
            } => KindState::Sliding(SlidingState::new(size_ms, slide_ms, offset_ms)),
            WindowKind::Session { gap_ms } => KindState::Session(SessionState::new(gap_ms)),
        };
        Self {
            config,
            aggregator,
            watermark: WATERMARK_MIN,
            arrival_next: 0,
            counters: WindowCounters::default(),
            state,
            failure: None,
            _value: PhantomData,
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// The watermark records are judged against.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    pub fn counters(&self) -> &WindowCounters {
        &self.counters
    }

    /// How many windows (panes for sliding windows, sessions) hold state.
    pub fn state_len(&self) -> usize {
        match &self.state {
            KindState::Tumbling(state) => state.len(),
            KindState::Sliding(state) => state.len(),
            KindState::Session(state) => state.len(),
        }
    }

    #[inline]
    fn check_usable(&self) -> Result<()> {
        match &self.failure {
            None => Ok(()),
            Some(reason) => Err(Error::Invalid(format!(
                "window operator is unusable after an earlier error (restore it from a snapshot): {reason}"
            ))),
        }
    }

    /// Whether `process` would accept this record (its windows fit `i64`).
    /// Changes nothing.
    #[inline]
    pub fn check_record(&self, record: &Record<V>) -> Result<()> {
        self.check_usable()?;
        self.config.kind.check_timestamp(record.ts)
    }

    fn clock(&self) -> Clock {
        Clock {
            watermark: self.watermark,
            allowed_lateness_ms: self.config.allowed_lateness_ms,
        }
    }

    /// Processes one record against the current watermark: adds it to its
    /// windows, emits `late_update`s, or emits it as a late record.
    pub fn process(
        &mut self,
        record: Record<V>,
        out: &mut Vec<Output<V, A::Output>>,
    ) -> Result<()> {
        self.check_record(&record)?;
        self.process_checked(record, out)
    }

    /// [`Self::process`] for a record [`Self::check_record`] accepted, with
    /// nothing called on the operator in between.
    #[inline]
    pub(crate) fn process_checked(
        &mut self,
        record: Record<V>,
        out: &mut Vec<Output<V, A::Output>>,
    ) -> Result<()> {
        debug_assert!(self.check_record(&record).is_ok());
        let arrival = self.arrival_next;
        self.arrival_next += 1;
        self.counters.records += 1;
        self.update_state(out, |state, ctx| match state {
            KindState::Tumbling(state) => state.process(ctx, record, arrival),
            KindState::Sliding(state) => state.process(ctx, record, arrival),
            KindState::Session(state) => state.process(ctx, record, arrival),
        })
    }

    /// Runs `update` on the per-kind state at the current watermark; an
    /// error it returns makes the operator unusable (the state may be
    /// half-updated).
    #[inline]
    fn update_state(
        &mut self,
        out: &mut Vec<Output<V, A::Output>>,
        update: impl FnOnce(&mut KindState<A::Acc>, &mut Ctx<'_, V, A>) -> Result<()>,
    ) -> Result<()> {
        let mut ctx = Ctx {
            aggregator: &self.aggregator,
            clock: self.clock(),
            counters: &mut self.counters,
            out,
        };
        let result = update(&mut self.state, &mut ctx);
        if let Err(error) = &result {
            self.failure = Some(error.to_string());
        }
        result
    }

    /// Raises the watermark: fires every window it reaches (`on_time`, in
    /// ascending `(window_end, key)`), then purges what became late. A
    /// watermark at or below the current one changes nothing (watermarks
    /// never go backwards).
    #[inline]
    pub fn advance_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Vec<Output<V, A::Output>>,
    ) -> Result<()> {
        if watermark <= self.watermark && self.failure.is_none() {
            // The common case for a task's per-record calls.
            return Ok(());
        }
        self.raise_watermark(watermark, out)
    }

    fn raise_watermark(
        &mut self,
        watermark: EventTime,
        out: &mut Vec<Output<V, A::Output>>,
    ) -> Result<()> {
        self.check_usable()?;
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.update_state(out, |state, ctx| match state {
            KindState::Tumbling(state) => state.advance(ctx),
            KindState::Sliding(state) => state.advance(ctx),
            KindState::Session(state) => state.advance(ctx),
        })
    }

    /// End of a bounded input: the watermark goes to `i64::MAX`, firing
    /// every pending window and purging all state.
    pub fn finish(&mut self, out: &mut Vec<Output<V, A::Output>>) -> Result<()> {
        self.advance_watermark(WATERMARK_MAX, out)?;
        assert_eq!(self.state_len(), 0, "no state survives the end of input");
        Ok(())
    }

    pub(crate) fn to_state(&self) -> Result<OperatorState<A::Acc>> {
        self.check_usable()?;
        let mut entries = match &self.state {
            KindState::Tumbling(state) => state.entries(),
            KindState::Sliding(state) => state.entries(),
            KindState::Session(state) => state.entries(),
        };
        entries.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        Ok(OperatorState {
            config: self.config,
            watermark: self.watermark,
            arrival_next: self.arrival_next,
            counters: self.counters,
            entries,
        })
    }

    pub(crate) fn from_state(
        config: WindowConfig,
        aggregator: A,
        state: OperatorState<A::Acc>,
    ) -> Result<Self> {
        if state.config != config {
            return Err(Error::CorruptSnapshot(format!(
                "snapshot was taken with {:?}, the operator is configured with {config:?}",
                state.config
            )));
        }
        let mut operator = Self::new(config, aggregator);
        operator.watermark = state.watermark;
        operator.arrival_next = state.arrival_next;
        operator.counters = state.counters;
        let clock = operator.clock();
        for pair in state.entries.windows(2) {
            if (&pair[0].key, pair[0].start) >= (&pair[1].key, pair[1].start) {
                return Err(Error::CorruptSnapshot(format!(
                    "window state entries out of order at key {:?} start {}",
                    &*pair[1].key, pair[1].start
                )));
            }
        }
        for entry in state.entries {
            match &mut operator.state {
                KindState::Tumbling(kind_state) => kind_state.restore_entry(clock, entry)?,
                KindState::Sliding(kind_state) => kind_state.restore_entry(clock, entry)?,
                KindState::Session(kind_state) => kind_state.restore_entry(clock, entry)?,
            }
        }
        #[cfg(test)]
        if let KindState::Session(kind_state) = &operator.state {
            kind_state.check_invariants();
        }
        Ok(operator)
    }

    /// All state (window contents, timers, watermark, arrival counter,
    /// counters) in the versioned snapshot encoding ([`crate::snapshot`]).
    /// Fails only if the operator is unusable after an earlier error.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(snapshot::encode(
            SnapshotKind::WindowOperator,
            &self.to_state()?,
        ))
    }

    /// An operator continuing exactly where the snapshotted one stopped.
    /// The configuration must be the one the snapshot was taken with.
    pub fn restore(config: WindowConfig, aggregator: A, bytes: &[u8]) -> Result<Self> {
        let state = snapshot::decode(SnapshotKind::WindowOperator, bytes)?;
        Self::from_state(config, aggregator, state)
    }
}

/// A snapshot that decoded but describes state that cannot exist.
pub(crate) fn corrupt(what: impl fmt::Display) -> Error {
    Error::CorruptSnapshot(what.to_string())
}

#[cfg(test)]
mod tests;
