//! Tumbling windows: one window per record.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use super::assigner::{align_down_i64, tumbling_window};
use super::output::FiringKind;
use super::state::{Clock, Ctx, KeyedState, StateEntry, StateEntryRef, StateKey, corrupt};
use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::Record;
use crate::time::{EventTime, TimeWindow};

/// The state of every tumbling window, by window end, then key: a record
/// finds its accumulator with one small ordered search (a task holds one
/// to a few window ends at a time) and one hash probe. Firing and
/// snapshots iterate the keys in [`StateKey`]'s order, so the outputs are
/// those of a map ordered by `(end, key)`.
pub(crate) struct TumblingState<Acc> {
    size_ms: i64,
    offset_ms: i64,
    /// Windows whose max timestamp is above the watermark (their on-time
    /// timer is pending), by end: the watermark pops the front.
    pending: BTreeMap<EventTime, KeyedState<Acc>>,
    /// Windows the watermark has reached that are not late yet (allowed
    /// lateness `L > 0`), by end: cleanup pops the front (the cleanup time
    /// `end - 1 + L` grows with `end`). No end is in both maps.
    fired: BTreeMap<EventTime, KeyedState<Acc>>,
    /// How many keys the last window to fire on time held: a new window
    /// end's map is made that large at once, instead of growing there by
    /// rehashing every key several times (a map's capacity changes no
    /// output).
    keys_hint: usize,
}

/// Adds `input` to `key`'s accumulator in `keyed`, made first if the key
/// has none: the accumulator.
fn add_to<'a, V, A: Aggregator<V>>(
    aggregator: &A,
    keyed: &'a mut KeyedState<A::Acc>,
    key: StateKey,
    input: Input<'_, V>,
) -> Result<&'a A::Acc> {
    match keyed.entry(key) {
        Entry::Occupied(entry) => {
            let acc = entry.into_mut();
            aggregator.add(acc, input)?;
            Ok(acc)
        }
        Entry::Vacant(entry) => {
            let mut acc = aggregator.create();
            aggregator.add(&mut acc, input)?;
            Ok(entry.insert(acc))
        }
    }
}

impl<Acc: Clone> TumblingState<Acc> {
    pub(crate) fn new(size_ms: i64, offset_ms: i64) -> Self {
        Self {
            size_ms,
            offset_ms,
            pending: BTreeMap::new(),
            fired: BTreeMap::new(),
            keys_hint: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending
            .values()
            .chain(self.fired.values())
            .map(KeyedState::len)
            .sum()
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
            debug_assert!(!self.fired.contains_key(&window.end));
            let keys_hint = self.keys_hint;
            let keyed = self.pending.entry(window.end).or_insert_with(|| {
                KeyedState::with_capacity_and_hasher(keys_hint, Default::default())
            });
            add_to(ctx.aggregator, keyed, key, input)?;
            return Ok(());
        }
        // The watermark has reached the window but it is not late: add and
        // fire at once (also when this record creates the window).
        debug_assert!(!self.pending.contains_key(&window.end));
        let keyed = self.fired.entry(window.end).or_default();
        let acc = add_to(ctx.aggregator, keyed, key.clone(), input)?;
        ctx.fire(&key.key, window, acc, FiringKind::LateUpdate)
    }

    pub(crate) fn advance<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let watermark = ctx.clock.watermark;
        while let Some(entry) = self.pending.first_entry() {
            let end = *entry.key();
            if end - 1 > watermark {
                break;
            }
            let keyed = entry.remove();
            self.keys_hint = keyed.len();
            let window = self.window_ending(end);
            let mut by_key: Vec<(&StateKey, &Acc)> = keyed.iter().collect();
            // Keys are unique: an unstable sort gives the one order.
            by_key.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, acc) in by_key {
                ctx.fire(&key.key, window, acc, FiringKind::OnTime)?;
            }
            if ctx.clock.is_window_late(window) {
                ctx.counters.states_purged += keyed.len() as u64;
            } else {
                let previous = self.fired.insert(end, keyed);
                assert!(
                    previous.is_none(),
                    "a window is pending or fired, never both"
                );
            }
        }
        while let Some(entry) = self.fired.first_entry() {
            if ctx.clock.cleanup_time_of_end(*entry.key()) > watermark {
                break;
            }
            ctx.counters.states_purged += entry.remove().len() as u64;
        }
        Ok(())
    }

    /// Every window's state, by end (pending, then fired), each end's keys
    /// in no particular order: the snapshot sorts them
    /// ([`super::state::sort_entries`]).
    pub(crate) fn entries(&self) -> Vec<StateEntryRef<'_, Acc>> {
        let mut entries = Vec::with_capacity(self.len());
        for (end, keyed) in self.pending.iter().chain(self.fired.iter()) {
            let start = end - self.size_ms;
            entries.extend(
                keyed
                    .iter()
                    .map(|(key, acc)| StateEntryRef::of(key, start, *end, acc)),
            );
        }
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
        map.entry(end)
            .or_default()
            .insert(StateKey::new(entry.key), entry.acc);
        Ok(())
    }
}
