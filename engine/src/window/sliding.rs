//! Sliding windows over shared panes.
//!
//! Windows `[s, s + size)` with `s ≡ offset (mod slide)` are unions of panes
//! of width `gcd(size, slide)`. A record updates its one pane; a firing
//! merges the panes of its window. This is exact, not an approximation of
//! Flink's per-window state:
//! - a window that is not late has never been late (the watermark only
//!   rises), so Flink added to it every record of its panes;
//! - a pane lives until the last window containing it is late, so every
//!   window that can still fire finds all of its panes;
//! - a record is kept (in its pane) iff its last window is not late, which
//!   is exactly when Flink adds it to at least one window.
//!
//! On-time timers are `(window_end, key)` entries, registered lazily so that
//! a pane costs one timer whatever `size / slide` is: a new pane registers
//! the first window containing it that the watermark has not reached, and a
//! window firing on time registers its key's next window (`end + slide`) if
//! a pane falls in it. By induction over a pane's consecutive windows, every
//! pending window holding a pane fires exactly once, in `(end, key)` order;
//! between calls the timers are exactly "the first pending window of each
//! pane", which is what a restore re-derives.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use super::assigner::{align_down, align_down_i64, gcd, sliding_first_start};
use super::output::FiringKind;
use super::state::{Clock, Ctx, StateEntry, StateEntryRef, StateKey, corrupt};
use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::Record;
use crate::time::{EventTime, TimeWindow};

pub(crate) struct SlidingState<Acc> {
    size_ms: i64,
    slide_ms: i64,
    offset_ms: i64,
    pane_ms: i64,
    pane_offset_ms: i64,
    /// Pane accumulators by `(key, pane_start)`: a window reads a range.
    panes: BTreeMap<(StateKey, EventTime), Acc>,
    /// The same panes by `(pane_start, key)`: cleanup pops the front (a
    /// pane's cleanup time grows with its start).
    panes_by_start: BTreeSet<(EventTime, StateKey)>,
    /// Pending on-time timers, `(window_end, key)`: the first window the
    /// watermark has not reached of each pane (see the module docs).
    timers: BTreeSet<(EventTime, StateKey)>,
}

impl<Acc: Clone> SlidingState<Acc> {
    pub(crate) fn new(size_ms: i64, slide_ms: i64, offset_ms: i64) -> Self {
        let pane_ms = gcd(size_ms, slide_ms);
        Self {
            size_ms,
            slide_ms,
            offset_ms,
            pane_ms,
            pane_offset_ms: offset_ms.rem_euclid(pane_ms),
            panes: BTreeMap::new(),
            panes_by_start: BTreeSet::new(),
            timers: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.panes.len()
    }

    /// The window with the largest start containing `ts` (or its pane).
    fn last_window(&self, ts: EventTime) -> TimeWindow {
        let last_start = align_down_i64(ts, self.offset_ms, self.slide_ms);
        TimeWindow::new(last_start, last_start + self.size_ms)
    }

    /// The starts of the windows containing `ts`, in descending order (the
    /// order Flink assigns them), from `from_start` down.
    fn starts_descending(
        &self,
        ts: EventTime,
        from_start: i128,
    ) -> impl Iterator<Item = EventTime> + use<Acc> {
        let last_start = i128::from(self.last_window(ts).start);
        let first_start = sliding_first_start(ts, last_start, self.size_ms, self.slide_ms);
        let slide = i128::from(self.slide_ms);
        let top = from_start.min(last_start);
        // Align `top` down onto the window grid.
        let top = top - (top - last_start).rem_euclid(slide);
        (0..)
            .map(move |k| top - k * slide)
            .take_while(move |start| *start >= first_start)
            .map(|start| EventTime::try_from(start).expect("checked window start fits i64"))
    }

    /// The end of the earliest window containing `ts` (or its pane) that the
    /// watermark has not reached, if any.
    fn first_pending_end(&self, ts: EventTime, clock: Clock) -> Option<EventTime> {
        let last_start = i128::from(self.last_window(ts).start);
        let first_start = sliding_first_start(ts, last_start, self.size_ms, self.slide_ms);
        // Pending: start + size - 1 > watermark, i.e. start > bound.
        let bound = i128::from(clock.watermark) + 1 - i128::from(self.size_ms);
        let above_bound =
            align_down(bound, self.offset_ms, self.slide_ms) + i128::from(self.slide_ms);
        let start = first_start.max(above_bound);
        (start <= last_start).then(|| {
            EventTime::try_from(start + i128::from(self.size_ms))
                .expect("checked window end fits i64")
        })
    }

    /// The merged panes of one window of one key (`None` if it has none).
    fn window_acc<V, A>(
        &self,
        aggregator: &A,
        key: &StateKey,
        window: TimeWindow,
    ) -> Result<Option<Acc>>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let mut merged: Option<Acc> = None;
        let range = (key.clone(), window.start)..(key.clone(), window.end);
        for pane in self.panes.range(range).map(|(_, pane)| pane) {
            match &mut merged {
                None => merged = Some(pane.clone()),
                Some(acc) => aggregator.merge(acc, pane)?,
            }
        }
        Ok(merged)
    }

    pub(crate) fn process<V, A>(
        &mut self,
        ctx: &mut Ctx<'_, V, A>,
        record: Record<V>,
        arrival: u64,
    ) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        // Windows become late in order of their ends: if the last one is
        // late, all are, and the record goes to the late side output.
        if ctx.clock.is_window_late(self.last_window(record.ts)) {
            ctx.late(record);
            return Ok(());
        }
        let Record { key, ts, value } = record;
        let key = StateKey::new(key);
        let pane_start = align_down_i64(ts, self.pane_offset_ms, self.pane_ms);
        let input = Input {
            ts,
            arrival,
            value: &value,
        };
        let created = match self.panes.entry((key.clone(), pane_start)) {
            Entry::Occupied(mut entry) => {
                ctx.aggregator.add(entry.get_mut(), input)?;
                false
            }
            Entry::Vacant(entry) => {
                let mut acc = ctx.aggregator.create();
                ctx.aggregator.add(&mut acc, input)?;
                entry.insert(acc);
                true
            }
        };
        if created {
            self.panes_by_start.insert((pane_start, key.clone()));
            if let Some(end) = self.first_pending_end(ts, ctx.clock) {
                self.timers.insert((end, key.clone()));
            }
        }
        // Windows the watermark has reached but that are not late fire a
        // late update each, in descending start; later-starting windows are
        // pending, earlier ones late.
        let reached_start_max = i128::from(ctx.clock.watermark) + 1 - i128::from(self.size_ms);
        for start in self.starts_descending(ts, reached_start_max) {
            let window = TimeWindow::new(start, start + self.size_ms);
            debug_assert!(ctx.clock.has_reached(window));
            if ctx.clock.is_window_late(window) {
                break;
            }
            let acc = self
                .window_acc(ctx.aggregator, &key, window)?
                .expect("the window holds the pane just updated");
            ctx.fire(&key.key, window, &acc, FiringKind::LateUpdate)?;
        }
        Ok(())
    }

    pub(crate) fn advance<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let watermark = ctx.clock.watermark;
        while let Some((end, _)) = self.timers.first() {
            if end - 1 > watermark {
                break;
            }
            let (end, key) = self.timers.pop_first().expect("the first timer exists");
            let window = TimeWindow::new(end - self.size_ms, end);
            let acc = self
                .window_acc(ctx.aggregator, &key, window)?
                .unwrap_or_else(|| {
                    panic!(
                        "window {window} of key {:?} has a timer but no pane",
                        &*key.key
                    )
                });
            ctx.fire(&key.key, window, &acc, FiringKind::OnTime)?;
            // Chain: the key's next window is due a timer if a pane falls in
            // it (it was pending when each of its panes was created, since
            // it ends after this window). Out of the i64 range it has none.
            let next_end = i128::from(end) + i128::from(self.slide_ms);
            if let Ok(next_end) = EventTime::try_from(next_end) {
                let next_start = next_end - self.size_ms;
                let has_pane = self
                    .panes
                    .range((key.clone(), next_start)..(key.clone(), next_end))
                    .next()
                    .is_some();
                if has_pane {
                    self.timers.insert((next_end, key));
                }
            }
        }
        while let Some((pane_start, _)) = self.panes_by_start.first() {
            if !ctx.clock.is_window_late(self.last_window(*pane_start)) {
                break;
            }
            let (pane_start, key) = self
                .panes_by_start
                .pop_first()
                .expect("the first pane exists");
            self.panes
                .remove(&(key, pane_start))
                .expect("both pane indexes hold the same panes");
            ctx.counters.states_purged += 1;
        }
        Ok(())
    }

    /// Every pane's state, in `(key, start)` order.
    pub(crate) fn entries(&self) -> Vec<StateEntryRef<'_, Acc>> {
        let mut entries = Vec::with_capacity(self.len());
        entries.extend(
            self.panes.iter().map(|((key, start), acc)| {
                StateEntryRef::of(key, *start, start + self.pane_ms, acc)
            }),
        );
        entries
    }

    pub(crate) fn restore_entry(&mut self, clock: Clock, entry: StateEntry<Acc>) -> Result<()> {
        let (start, end) = (entry.start, entry.end);
        let aligned = start.checked_add(self.pane_ms) == Some(end)
            && align_down_i64(start, self.pane_offset_ms, self.pane_ms) == start;
        // The pane's windows must fit i64, as a record's do.
        let last_start = align_down(i128::from(start), self.offset_ms, self.slide_ms);
        let first_start = sliding_first_start(start, last_start, self.size_ms, self.slide_ms);
        let fits = first_start >= i128::from(EventTime::MIN)
            && last_start + i128::from(self.size_ms) <= i128::from(EventTime::MAX);
        if !aligned || !fits {
            return Err(corrupt(format!(
                "pane [{start}, {end}) of key {:?} is not a pane of width {} offset {}",
                &*entry.key, self.pane_ms, self.pane_offset_ms
            )));
        }
        // A pane lives until its last window is late.
        clock.check_restored(
            self.last_window(start),
            format_args!("pane [{start}, {end})"),
            &entry.key,
        )?;
        let key = StateKey::new(entry.key);
        if let Some(end) = self.first_pending_end(start, clock) {
            self.timers.insert((end, key.clone()));
        }
        self.panes_by_start.insert((start, key.clone()));
        self.panes.insert((key, start), entry.acc);
        Ok(())
    }
}
