//! Tumbling windows: one window per record.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::assigner::{align_down_i64, tumbling_window};
use super::output::FiringKind;
use super::state::{Clock, Ctx, StateEntry, StateEntryRef, StateKey, corrupt};
use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::Record;
use crate::time::{EventTime, TimeWindow};

pub(crate) struct TumblingState<Acc> {
    size_ms: i64,
    offset_ms: i64,
    /// Windows whose max timestamp is above the watermark (their on-time
    /// timer is pending), by `(end, key)`: the watermark pops the front.
    pending: BTreeMap<(EventTime, StateKey), Acc>,
    /// Windows the watermark has reached that are not late yet (allowed
    /// lateness `L > 0`), by `(end, key)`: cleanup pops the front (the
    /// cleanup time `end - 1 + L` grows with `end`).
    fired: BTreeMap<(EventTime, StateKey), Acc>,
}

impl<Acc: Clone> TumblingState<Acc> {
    pub(crate) fn new(size_ms: i64, offset_ms: i64) -> Self {
        Self {
            size_ms,
            offset_ms,
            pending: BTreeMap::new(),
            fired: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.fired.len()
    }

    fn window_ending(&self, end: EventTime) -> TimeWindow {
        TimeWindow::new(end - self.size_ms, end)
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
        let window = tumbling_window(record.ts, self.size_ms, self.offset_ms);
        if ctx.clock.is_window_late(window) {
            ctx.late(record);
            return Ok(());
        }
        let Record { key, ts, value } = record;
        let key = StateKey::new(key);
        let input = Input {
            ts,
            arrival,
            value: &value,
        };
        if !ctx.clock.has_reached(window) {
            // On time: the window's on-time timer is (or now becomes) pending.
            debug_assert!(!self.fired.contains_key(&(window.end, key.clone())));
            match self.pending.entry((window.end, key)) {
                Entry::Occupied(mut entry) => ctx.aggregator.add(entry.get_mut(), input)?,
                Entry::Vacant(entry) => {
                    let mut acc = ctx.aggregator.create();
                    ctx.aggregator.add(&mut acc, input)?;
                    entry.insert(acc);
                }
            }
            return Ok(());
        }
        // The watermark has reached the window but it is not late: add and
        // fire at once (also when this record creates the window).
        debug_assert!(!self.pending.contains_key(&(window.end, key.clone())));
        let acc = match self.fired.entry((window.end, key.clone())) {
            Entry::Occupied(entry) => {
                let acc = entry.into_mut();
                ctx.aggregator.add(acc, input)?;
                acc
            }
            Entry::Vacant(entry) => {
                let mut acc = ctx.aggregator.create();
                ctx.aggregator.add(&mut acc, input)?;
                entry.insert(acc)
            }
        };
        ctx.fire(&key.key, window, acc, FiringKind::LateUpdate)
    }

    pub(crate) fn advance<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let watermark = ctx.clock.watermark;
        while let Some(entry) = self.pending.first_entry() {
            let (end, _) = entry.key();
            if end - 1 > watermark {
                break;
            }
            let ((end, key), acc) = entry.remove_entry();
            let window = self.window_ending(end);
            ctx.fire(&key.key, window, &acc, FiringKind::OnTime)?;
            if ctx.clock.is_window_late(window) {
                ctx.counters.states_purged += 1;
            } else {
                let previous = self.fired.insert((end, key), acc);
                assert!(
                    previous.is_none(),
                    "a window is pending or fired, never both"
                );
            }
        }
        while let Some(entry) = self.fired.first_entry() {
            let (end, _) = entry.key();
            if ctx.clock.cleanup_time_of_end(*end) > watermark {
                break;
            }
            entry.remove();
            ctx.counters.states_purged += 1;
        }
        Ok(())
    }

    /// Every window's state, in `(end, key)` order (pending, then fired).
    pub(crate) fn entries(&self) -> Vec<StateEntryRef<'_, Acc>> {
        let mut entries = Vec::with_capacity(self.len());
        entries.extend(
            self.pending
                .iter()
                .chain(self.fired.iter())
                .map(|((end, key), acc)| StateEntryRef::of(key, end - self.size_ms, *end, acc)),
        );
        entries
    }

    pub(crate) fn restore_entry(&mut self, clock: Clock, entry: StateEntry<Acc>) -> Result<()> {
        let (start, end) = (entry.start, entry.end);
        let aligned = start.checked_add(self.size_ms) == Some(end)
            && align_down_i64(start, self.offset_ms, self.size_ms) == start;
        if !aligned {
            return Err(corrupt(format!(
                "window [{start}, {end}) of key {:?} is not a tumbling window of size {} offset {}",
                &*entry.key, self.size_ms, self.offset_ms
            )));
        }
        let window = TimeWindow::new(start, end);
        clock.check_restored(window, format_args!("window {window}"), &entry.key)?;
        let map = if clock.has_reached(window) {
            &mut self.fired
        } else {
            &mut self.pending
        };
        map.insert((end, StateKey::new(entry.key)), entry.acc);
        Ok(())
    }
}
