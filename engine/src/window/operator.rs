//! The keyed event-time window operator of one task, over the per-kind
//! state.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use super::assigner::WindowKind;
use super::output::Output;
use super::session::SessionState;
use super::sliding::SlidingState;
use super::state::{Clock, Ctx, StateEntry, StateEntryRef, WindowCounters, sort_entries};
use super::tumbling::TumblingState;
use crate::aggregate::Aggregator;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::snapshot::{self, SnapshotKind};
use crate::time::{EventTime, WATERMARK_MAX, WATERMARK_MIN};

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

/// An [`OperatorState`] borrowed from the live operator: what a snapshot
/// encodes (byte for byte the encoding of the owned state it decodes to).
#[derive(Serialize)]
pub(crate) struct OperatorStateRef<'a, Acc> {
    pub(crate) config: WindowConfig,
    pub(crate) watermark: EventTime,
    pub(crate) arrival_next: u64,
    pub(crate) counters: WindowCounters,
    /// Sorted by `(key, start)`.
    pub(crate) entries: Vec<StateEntryRef<'a, Acc>>,
}

impl<Acc> OperatorStateRef<'_, Acc> {
    /// How many bytes its encoding takes at least: a buffer's first size.
    pub(crate) fn size_hint(&self) -> usize {
        // Per entry at least a key length, a start, an end and an
        // accumulator byte; most take a few times that.
        64 + self.entries.len() * 24
    }
}

pub(super) enum KindState<Acc> {
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
    pub(super) state: KindState<A::Acc>,
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

    /// The state a snapshot encodes, borrowed: no key or accumulator is
    /// copied.
    pub(crate) fn state_ref(&self) -> Result<OperatorStateRef<'_, A::Acc>> {
        self.check_usable()?;
        let mut entries = match &self.state {
            KindState::Tumbling(state) => state.entries(),
            KindState::Sliding(state) => state.entries(),
            KindState::Session(state) => state.entries(),
        };
        sort_entries(&mut entries);
        Ok(OperatorStateRef {
            config: self.config,
            watermark: self.watermark,
            arrival_next: self.arrival_next,
            counters: self.counters,
            entries,
        })
    }

    /// The owned state (tests edit it into snapshots that cannot exist).
    #[cfg(test)]
    pub(crate) fn to_state(&self) -> Result<OperatorState<A::Acc>> {
        let state = self.state_ref()?;
        Ok(OperatorState {
            config: state.config,
            watermark: state.watermark,
            arrival_next: state.arrival_next,
            counters: state.counters,
            entries: state
                .entries
                .into_iter()
                .map(|entry| entry.into_owned())
                .collect(),
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

    /// All state (configuration, window contents, watermark, arrival counter,
    /// counters) in the versioned snapshot encoding ([`crate::snapshot`]);
    /// timers and indexes are not stored: [`WindowOperator::restore`]
    /// rebuilds them from the window contents.
    /// Fails only if the operator is unusable after an earlier error.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let state = self.state_ref()?;
        Ok(snapshot::encode(
            SnapshotKind::WindowOperator,
            &state,
            state.size_hint(),
        ))
    }

    /// An operator continuing exactly where the snapshotted one stopped.
    /// The configuration must be the one the snapshot was taken with.
    pub fn restore(config: WindowConfig, aggregator: A, bytes: &[u8]) -> Result<Self> {
        let state = snapshot::decode(SnapshotKind::WindowOperator, bytes)?;
        Self::from_state(config, aggregator, state)
    }
}
