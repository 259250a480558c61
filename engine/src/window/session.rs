//! Session windows with merging, as Flink's `MergingWindowSet` and
//! `TimeWindow.mergeWindows` do it.
//!
//! Per key, live sessions are pairwise disjoint and do not touch (any two
//! that overlap or touch were merged when the second one formed). A record
//! makes `[ts, ts + gap)`; it merges with every live session `s` of its key
//! with `s.start <= ts + gap && s.end >= ts`, and the result covers them all.
//! - No session merges and the new window is late: the record is late.
//!   (Live sessions are never late: the watermark purges them first.)
//! - Otherwise the covered sessions are replaced by their cover `W'` (which
//!   is one of them when the record falls inside it); `W'` is *pending* (has
//!   an on-time timer) iff its max timestamp is above the watermark, as
//!   Flink's `EventTimeTrigger.onMerge`/`onElement` register it.
//!
//! Then, as for every window: if the watermark has reached the session's max
//! timestamp, it fires a `late_update` at once.
//!
//! # Wake-ups
//!
//! A session that grows in place (the common case: a record inside or just
//! after its key's session) must not cost index updates, so timers are
//! *wake-ups* that may be early: each live session has exactly one current
//! wake-up `(time, kind)`, recorded in the session, with
//! - `kind = Fire` and `time <= max_timestamp` while the session is pending
//!   (`max_timestamp > watermark`),
//! - `kind = Cleanup` and `time <= cleanup_time` once the watermark reached
//!   it.
//!
//! Growing a session keeps both bounds, except when a late record extends a
//! session the watermark had reached past the watermark again: that re-arms
//! eagerly. When the watermark passes a wake-up, a wake-up earlier than its
//! session's due time is re-armed at the due time (later in the same pass if
//! still due); one exactly due fires `on_time` (then arms the cleanup) or
//! purges. So on-time firings happen only at exact `(max_timestamp, key)`
//! entries, in ascending `(window_end, key)` as for the other window kinds.
//! Merging and re-arming remove the entries they supersede.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::Record;
use crate::time::EventTime;
use crate::window::{Clock, Ctx, FiringKind, StateEntry, StateKey, TimeWindow, corrupt};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum WakeupKind {
    Fire,
    Cleanup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wakeup {
    time: EventTime,
    kind: WakeupKind,
}

struct Session<Acc> {
    start: EventTime,
    end: EventTime,
    /// Tells this session from earlier ones of the same key and start.
    id: u64,
    /// The session's one current wake-up (see the module docs).
    wakeup: Wakeup,
    acc: Acc,
}

impl<Acc> Session<Acc> {
    fn window(&self) -> TimeWindow {
        TimeWindow::new(self.start, self.end)
    }
}

/// `(time, key, start, session id, kind)`.
type WakeupEntry = (EventTime, StateKey, EventTime, u64, WakeupKind);

pub(crate) struct SessionState<Acc> {
    gap_ms: i64,
    /// Live sessions per key, sorted by start (so by end too: they are
    /// disjoint); a key without sessions has no entry.
    sessions: BTreeMap<StateKey, Vec<Session<Acc>>>,
    /// How many sessions `sessions` holds.
    len: usize,
    /// Wake-ups in time order: exactly the current wake-up of each live
    /// session.
    wakeups: BTreeSet<WakeupEntry>,
    next_id: u64,
}

/// Merging and re-arming remove the entries they supersede: a popped
/// wake-up is its session's current one, and never late for it.
fn check_current<Acc>(session: &Session<Acc>, id: u64, wakeup: Wakeup) {
    assert!(
        session.id == id && session.wakeup == wakeup,
        "a wake-up is its session's current one: {wakeup:?} id {id} vs {:?} id {}",
        session.wakeup,
        session.id
    );
}

/// The wake-up a session gets when it is (re)formed at this watermark.
fn wakeup_for(clock: Clock, window: TimeWindow) -> Wakeup {
    if clock.has_reached(window) {
        Wakeup {
            time: clock.cleanup_time(window),
            kind: WakeupKind::Cleanup,
        }
    } else {
        Wakeup {
            time: window.max_timestamp(),
            kind: WakeupKind::Fire,
        }
    }
}

/// A new session with a fresh id; its wake-up goes to `wakeups`.
fn new_session<Acc>(
    clock: Clock,
    next_id: &mut u64,
    wakeups: &mut BTreeSet<WakeupEntry>,
    key: &StateKey,
    window: TimeWindow,
    acc: Acc,
) -> Session<Acc> {
    let id = *next_id;
    *next_id += 1;
    let wakeup = wakeup_for(clock, window);
    wakeups.insert((wakeup.time, key.clone(), window.start, id, wakeup.kind));
    Session {
        start: window.start,
        end: window.end,
        id,
        wakeup,
        acc,
    }
}

fn wakeup_entry<Acc>(key: &StateKey, session: &Session<Acc>) -> WakeupEntry {
    (
        session.wakeup.time,
        key.clone(),
        session.start,
        session.id,
        session.wakeup.kind,
    )
}

impl<Acc> SessionState<Acc> {
    pub(crate) fn new(gap_ms: i64) -> Self {
        Self {
            gap_ms,
            sessions: BTreeMap::new(),
            len: 0,
            wakeups: BTreeSet::new(),
            next_id: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
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
        let Record { key, ts, value } = record;
        let new = TimeWindow::new(ts, ts + self.gap_ms);
        let input = Input {
            ts,
            arrival,
            value: &value,
        };
        let SessionState {
            sessions,
            len,
            wakeups,
            next_id,
            ..
        } = self;

        let mut entry = match sessions.entry(StateKey::new(key)) {
            Entry::Vacant(entry) => {
                if clock.is_window_late(new) {
                    let key = entry.into_key().key;
                    ctx.late(Record { key, ts, value });
                    return Ok(());
                }
                let mut acc = ctx.aggregator.create();
                ctx.aggregator.add(&mut acc, input)?;
                if clock.has_reached(new) {
                    ctx.fire(&entry.key().key, new, &acc, FiringKind::LateUpdate)?;
                }
                let session = new_session(clock, next_id, wakeups, entry.key(), new, acc);
                entry.insert(vec![session]);
                *len += 1;
                return Ok(());
            }
            Entry::Occupied(entry) => entry,
        };
        let key = entry.key().clone();
        let list = entry.get_mut();
        // The covered sessions are `list[first..last]`: the ones that
        // neither end before the new window starts nor start after it ends.
        let first = list.partition_point(|session| session.end < new.start);
        let last = list.partition_point(|session| session.start <= new.end);

        if first == last {
            if clock.is_window_late(new) {
                ctx.late(Record {
                    key: key.key,
                    ts,
                    value,
                });
                return Ok(());
            }
            let mut acc = ctx.aggregator.create();
            ctx.aggregator.add(&mut acc, input)?;
            if clock.has_reached(new) {
                ctx.fire(&key.key, new, &acc, FiringKind::LateUpdate)?;
            }
            let session = new_session(clock, next_id, wakeups, &key, new, acc);
            list.insert(first, session);
            *len += 1;
            return Ok(());
        }

        if last - first == 1 && list[first].start <= new.start {
            // The record touches one session and does not move its start:
            // the session grows in place (Flink merges it into the cover,
            // which is the same window when the record is inside).
            let session = &mut list[first];
            let before = session.window();
            ctx.aggregator.add(&mut session.acc, input)?;
            session.end = session.end.max(new.end);
            let after = session.window();
            if clock.has_reached(before) && !clock.has_reached(after) {
                // A late record pushed a reached session past the
                // watermark: pending again, and its cleanup wake-up may lie
                // after its new max timestamp.
                wakeups.remove(&wakeup_entry(&key, session));
                session.wakeup = wakeup_for(clock, after);
                wakeups.insert(wakeup_entry(&key, session));
            } else if clock.has_reached(after) {
                ctx.fire(&key.key, after, &session.acc, FiringKind::LateUpdate)?;
            }
            return Ok(());
        }

        // The record bridges sessions or extends one to the left: the
        // covered sessions are replaced by their cover.
        let merged = TimeWindow::new(
            list[first].start.min(new.start),
            list[last - 1].end.max(new.end),
        );
        assert!(
            !clock.is_window_late(merged),
            "merging live sessions cannot make a late window"
        );
        let mut acc: Option<Acc> = None;
        for covered in list.drain(first..last) {
            let removed = wakeups.remove(&wakeup_entry(&key, &covered));
            assert!(removed, "a live session has its current wake-up");
            *len -= 1;
            match &mut acc {
                None => acc = Some(covered.acc),
                Some(acc) => ctx.aggregator.merge(acc, &covered.acc)?,
            }
        }
        let mut acc = acc.expect("at least one session was covered");
        ctx.aggregator.add(&mut acc, input)?;
        if clock.has_reached(merged) {
            ctx.fire(&key.key, merged, &acc, FiringKind::LateUpdate)?;
        }
        let session = new_session(clock, next_id, wakeups, &key, merged, acc);
        list.insert(first, session);
        *len += 1;
        Ok(())
    }

    pub(crate) fn advance<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let clock = ctx.clock;
        while let Some(first) = self.wakeups.first() {
            if first.0 > clock.watermark {
                break;
            }
            let (time, key, start, id, kind) =
                self.wakeups.pop_first().expect("the first wake-up exists");
            let Entry::Occupied(mut entry) = self.sessions.entry(key) else {
                panic!("a wake-up belongs to a live session");
            };
            let index = entry
                .get()
                .binary_search_by_key(&start, |session| session.start)
                .expect("a wake-up belongs to a live session");
            let session = &entry.get()[index];
            check_current(session, id, Wakeup { time, kind });
            let window = session.window();
            let due = match kind {
                WakeupKind::Fire => window.max_timestamp(),
                WakeupKind::Cleanup => clock.cleanup_time(window),
            };
            assert!(time <= due, "a wake-up is never late for its session");
            let next = if time < due {
                // Early: the session grew since this was armed.
                Some(Wakeup { time: due, kind })
            } else if kind == WakeupKind::Fire {
                ctx.fire(
                    &entry.key().key,
                    window,
                    &entry.get()[index].acc,
                    FiringKind::OnTime,
                )?;
                // Purge at once if the cleanup time has passed too.
                Some(Wakeup {
                    time: clock.cleanup_time(window),
                    kind: WakeupKind::Cleanup,
                })
                .filter(|cleanup| cleanup.time > clock.watermark)
            } else {
                None
            };
            match next {
                Some(wakeup) => {
                    let session = &mut entry.get_mut()[index];
                    session.wakeup = wakeup;
                    let rearmed = wakeup_entry(entry.key(), &entry.get()[index]);
                    self.wakeups.insert(rearmed);
                }
                None => {
                    entry.get_mut().remove(index);
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                    self.len -= 1;
                    ctx.counters.states_purged += 1;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn entries(&self) -> Vec<StateEntry<Acc>> {
        self.sessions
            .iter()
            .flat_map(|(key, list)| {
                list.iter().map(|session| StateEntry {
                    key: key.key.clone(),
                    start: session.start,
                    end: session.end,
                    acc: session.acc.clone(),
                })
            })
            .collect()
    }

    /// Entries come sorted by `(key, start)` (checked by the caller).
    pub(crate) fn restore(&mut self, clock: Clock, entries: Vec<StateEntry<Acc>>) -> Result<()> {
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
            if clock.is_window_late(window) {
                return Err(corrupt(format!(
                    "session {window} of key {:?} is late at watermark {} but still has state",
                    &*key, clock.watermark
                )));
            }
            let key = StateKey::new(key);
            let list = self.sessions.entry(key.clone()).or_default();
            if let Some(previous) = list.last()
                && previous.end >= start
            {
                return Err(corrupt(format!(
                    "sessions {} and {window} of key {:?} overlap or touch",
                    previous.window(),
                    &*key.key
                )));
            }
            let session = new_session(
                clock,
                &mut self.next_id,
                &mut self.wakeups,
                &key,
                window,
                acc,
            );
            list.push(session);
            self.len += 1;
        }
        Ok(())
    }
}
