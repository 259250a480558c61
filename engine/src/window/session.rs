//! Session windows with merging, as Flink's `MergingWindowSet` and
//! `TimeWindow.mergeWindows` do it.
//!
//! Per key, live sessions are pairwise disjoint and do not touch (any two
//! that overlap or touch were merged when the second one formed). A record
//! makes `[ts, ts + gap)`; it merges with every live session `s` of its key
//! with `s.start <= ts + gap && s.end >= ts`, and the result covers them all.
//! - No session merges and the new window is late: the record is late.
//!   (Live sessions are never late: the watermark purges them first.)
//! - The new window lies inside one session: the record is added to it.
//! - Otherwise the covered sessions are replaced by their cover `W'`; their
//!   timers go away; `W'` has an on-time timer iff its max timestamp is above
//!   the watermark (Flink's `EventTimeTrigger.onMerge`).
//!
//! Then, as for every window: if the watermark has reached the session's max
//! timestamp, it fires a `late_update` at once.

use std::collections::BTreeMap;

use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::{Key, Record};
use crate::time::EventTime;
use crate::window::{Clock, Ctx, FiringKind, StateEntry, TimeWindow, corrupt};

struct Session<Acc> {
    end: EventTime,
    acc: Acc,
}

pub(crate) struct SessionState<Acc> {
    gap_ms: i64,
    /// Live sessions by `(key, start)`.
    sessions: BTreeMap<(Key, EventTime), Session<Acc>>,
    /// Sessions whose max timestamp is above the watermark (on-time timer
    /// pending), `(end, key) -> start`: the watermark pops the front.
    pending: BTreeMap<(EventTime, Key), EventTime>,
    /// Sessions the watermark has reached that are not late yet,
    /// `(end, key) -> start`: cleanup pops the front.
    fired: BTreeMap<(EventTime, Key), EventTime>,
}

impl<Acc> SessionState<Acc> {
    pub(crate) fn new(gap_ms: i64) -> Self {
        Self {
            gap_ms,
            sessions: BTreeMap::new(),
            pending: BTreeMap::new(),
            fired: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    fn index_for(
        &mut self,
        clock: Clock,
        window: TimeWindow,
    ) -> &mut BTreeMap<(EventTime, Key), EventTime> {
        if clock.has_reached(window) {
            &mut self.fired
        } else {
            &mut self.pending
        }
    }

    fn index(&mut self, clock: Clock, key: &Key, window: TimeWindow) {
        let previous = self
            .index_for(clock, window)
            .insert((window.end, key.clone()), window.start);
        assert!(previous.is_none(), "sessions of a key have distinct ends");
    }

    fn unindex(&mut self, clock: Clock, key: &Key, window: TimeWindow) {
        let start = self
            .index_for(clock, window)
            .remove(&(window.end, key.clone()));
        assert_eq!(
            start,
            Some(window.start),
            "a live session is indexed by its end"
        );
    }
}

impl<Acc: Clone> SessionState<Acc> {
    pub(crate) fn process<V, A>(
        &mut self,
        ctx: &mut Ctx<'_, V, A>,
        record: Record<V>,
        arrival: u64,
    ) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let clock = ctx.clock;
        let new = TimeWindow::new(record.ts, record.ts + self.gap_ms);
        // The sessions the new window overlaps or touches, found backwards
        // from the last one starting at or before `new.end`; ends fall as
        // starts do, so the first one ending before `new.start` stops it.
        let mut covered: Vec<TimeWindow> = self
            .sessions
            .range((record.key.clone(), EventTime::MIN)..=(record.key.clone(), new.end))
            .rev()
            .map(|((_, start), session)| TimeWindow::new(*start, session.end))
            .take_while(|session| session.end >= new.start)
            .collect();
        covered.reverse();

        if covered.is_empty() && clock.is_window_late(new) {
            ctx.late(record);
            return Ok(());
        }
        let Record { key, ts, value } = record;
        let input = Input {
            ts,
            arrival,
            value: &value,
        };

        let window = match covered.as_slice() {
            [] => {
                let mut acc = ctx.aggregator.create();
                ctx.aggregator.add(&mut acc, input)?;
                self.sessions
                    .insert((key.clone(), new.start), Session { end: new.end, acc });
                self.index(clock, &key, new);
                new
            }
            [inside] if inside.start <= new.start && new.end <= inside.end => {
                let session = self
                    .sessions
                    .get_mut(&(key.clone(), inside.start))
                    .expect("a covered session is live");
                ctx.aggregator.add(&mut session.acc, input)?;
                *inside
            }
            _ => {
                let first = covered[0];
                let last = covered[covered.len() - 1];
                let merged = TimeWindow::new(first.start.min(new.start), last.end.max(new.end));
                let mut acc: Option<Acc> = None;
                for session in &covered {
                    self.unindex(clock, &key, *session);
                    let Session {
                        end,
                        acc: session_acc,
                    } = self
                        .sessions
                        .remove(&(key.clone(), session.start))
                        .expect("a covered session is live");
                    debug_assert_eq!(end, session.end);
                    match &mut acc {
                        None => acc = Some(session_acc),
                        Some(acc) => ctx.aggregator.merge(acc, &session_acc)?,
                    }
                }
                let mut acc = acc.expect("at least one session was covered");
                ctx.aggregator.add(&mut acc, input)?;
                self.sessions.insert(
                    (key.clone(), merged.start),
                    Session {
                        end: merged.end,
                        acc,
                    },
                );
                self.index(clock, &key, merged);
                merged
            }
        };
        if clock.has_reached(window) {
            let session = &self.sessions[&(key.clone(), window.start)];
            ctx.fire(&key, window, &session.acc, FiringKind::LateUpdate)?;
        }
        Ok(())
    }

    pub(crate) fn advance<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let clock = ctx.clock;
        while let Some(entry) = self.pending.first_entry() {
            let (end, _) = entry.key();
            if end - 1 > clock.watermark {
                break;
            }
            let ((end, key), start) = entry.remove_entry();
            let window = TimeWindow::new(start, end);
            let map_key = (key, start);
            let session = self
                .sessions
                .get(&map_key)
                .expect("an indexed session is live");
            ctx.fire(&map_key.0, window, &session.acc, FiringKind::OnTime)?;
            if clock.is_window_late(window) {
                self.sessions.remove(&map_key);
                ctx.counters.states_purged += 1;
            } else {
                let (key, start) = map_key;
                self.fired.insert((end, key), start);
            }
        }
        while let Some(entry) = self.fired.first_entry() {
            let (end, _) = entry.key();
            if clock.cleanup_time_of_end(*end) > clock.watermark {
                break;
            }
            let ((_, key), start) = entry.remove_entry();
            self.sessions
                .remove(&(key, start))
                .expect("an indexed session is live");
            ctx.counters.states_purged += 1;
        }
        Ok(())
    }

    pub(crate) fn entries(&self) -> Vec<StateEntry<Acc>> {
        self.sessions
            .iter()
            .map(|((key, start), session)| StateEntry {
                key: key.clone(),
                start: *start,
                end: session.end,
                acc: session.acc.clone(),
            })
            .collect()
    }

    /// Entries come sorted by `(key, start)` (checked by the caller).
    pub(crate) fn restore(&mut self, clock: Clock, entries: Vec<StateEntry<Acc>>) -> Result<()> {
        let mut previous: Option<(Key, TimeWindow)> = None;
        for StateEntry {
            key,
            start,
            end,
            acc,
        } in entries
        {
            if end
                .checked_sub(start)
                .is_none_or(|length| length < self.gap_ms)
            {
                return Err(corrupt(format!(
                    "session [{start}, {end}) of key {:?} is shorter than the gap {}",
                    &*key, self.gap_ms
                )));
            }
            let window = TimeWindow::new(start, end);
            if let Some((previous_key, previous_window)) = &previous
                && *previous_key == key
                && previous_window.end >= start
            {
                return Err(corrupt(format!(
                    "sessions {previous_window} and {window} of key {:?} overlap or touch",
                    &*key
                )));
            }
            if clock.is_window_late(window) {
                return Err(corrupt(format!(
                    "session {window} of key {:?} is late at watermark {} but still has state",
                    &*key, clock.watermark
                )));
            }
            self.index(clock, &key, window);
            self.sessions
                .insert((key.clone(), start), Session { end, acc });
            previous = Some((key, window));
        }
        Ok(())
    }
}
