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

use std::collections::{BTreeMap, BTreeSet};

use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::{Key, Record};
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
    end: EventTime,
    /// Tells this session from earlier ones of the same key and start.
    id: u64,
    /// The session's one current wake-up (see the module docs).
    wakeup: Wakeup,
    acc: Acc,
}

/// `(time, key, start, session id, kind)`.
type WakeupEntry = (EventTime, StateKey, EventTime, u64, WakeupKind);

pub(crate) struct SessionState<Acc> {
    gap_ms: i64,
    /// Live sessions by `(key, start)`.
    sessions: BTreeMap<(StateKey, EventTime), Session<Acc>>,
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

impl<Acc> SessionState<Acc> {
    pub(crate) fn new(gap_ms: i64) -> Self {
        Self {
            gap_ms,
            sessions: BTreeMap::new(),
            wakeups: BTreeSet::new(),
            next_id: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Inserts a new session with a fresh id and its wake-up.
    fn insert(&mut self, clock: Clock, key: &StateKey, window: TimeWindow, acc: Acc) {
        let id = self.next_id;
        self.next_id += 1;
        let wakeup = wakeup_for(clock, window);
        self.wakeups
            .insert((wakeup.time, key.clone(), window.start, id, wakeup.kind));
        let previous = self.sessions.insert(
            (key.clone(), window.start),
            Session {
                end: window.end,
                id,
                wakeup,
                acc,
            },
        );
        assert!(
            previous.is_none(),
            "a new session starts where no live session does"
        );
    }

    /// Removes a live session and its current wake-up.
    fn remove(&mut self, key: &StateKey, start: EventTime) -> Session<Acc> {
        let session = self
            .sessions
            .remove(&(key.clone(), start))
            .expect("a covered session is live");
        let removed = self.wakeups.remove(&(
            session.wakeup.time,
            key.clone(),
            start,
            session.id,
            session.wakeup.kind,
        ));
        assert!(removed, "a live session has its current wake-up");
        session
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
        let key = StateKey::new(key);
        let new = TimeWindow::new(ts, ts + self.gap_ms);
        let input = Input {
            ts,
            arrival,
            value: &value,
        };
        let touches = |(session_key, _): &(StateKey, EventTime), session: &Session<Acc>| {
            *session_key == key && session.end >= new.start
        };

        // The fast path: the record touches exactly one session and does not
        // move its start. The session grows in place (Flink merges it into
        // the cover, which is the same window when the record is inside).
        let mut newest_first = self.sessions.range_mut(..=(key.clone(), new.end)).rev();
        let first = newest_first
            .next()
            .filter(|(map_key, session)| touches(map_key, session));
        let Some(((_, start), session)) = first else {
            drop(newest_first);
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
            self.insert(clock, &key, new, acc);
            return Ok(());
        };
        let start = *start;
        let only_one = newest_first
            .next()
            .filter(|(map_key, session)| touches(map_key, session))
            .is_none();
        if only_one && start <= new.start {
            let before = TimeWindow::new(start, session.end);
            let after = TimeWindow::new(start, session.end.max(new.end));
            ctx.aggregator.add(&mut session.acc, input)?;
            session.end = after.end;
            if clock.has_reached(before) && !clock.has_reached(after) {
                // A late record pushed a reached session past the watermark:
                // it is pending again, and its cleanup wake-up may lie after
                // its new max timestamp.
                let stale = (
                    session.wakeup.time,
                    key.clone(),
                    start,
                    session.id,
                    session.wakeup.kind,
                );
                session.wakeup = wakeup_for(clock, after);
                let wakeup = session.wakeup;
                let id = session.id;
                drop(newest_first);
                self.wakeups.remove(&stale);
                self.wakeups
                    .insert((wakeup.time, key.clone(), start, id, wakeup.kind));
                return Ok(());
            }
            if clock.has_reached(after) {
                ctx.fire(&key.key, after, &session.acc, FiringKind::LateUpdate)?;
            }
            return Ok(());
        }
        drop(newest_first);

        // The general path: the record bridges sessions or extends one to
        // the left. Replace the covered sessions by their cover.
        let mut covered: Vec<TimeWindow> = self
            .sessions
            .range(..=(key.clone(), new.end))
            .rev()
            .take_while(|(map_key, session)| touches(map_key, session))
            .map(|((_, start), session)| TimeWindow::new(*start, session.end))
            .collect();
        covered.reverse();
        let merged = TimeWindow::new(
            covered[0].start.min(new.start),
            covered[covered.len() - 1].end.max(new.end),
        );
        assert!(
            !clock.is_window_late(merged),
            "merging live sessions cannot make a late window"
        );
        let mut acc: Option<Acc> = None;
        for session in &covered {
            let removed = self.remove(&key, session.start);
            match &mut acc {
                None => acc = Some(removed.acc),
                Some(acc) => ctx.aggregator.merge(acc, &removed.acc)?,
            }
        }
        let mut acc = acc.expect("at least one session was covered");
        ctx.aggregator.add(&mut acc, input)?;
        if clock.has_reached(merged) {
            ctx.fire(&key.key, merged, &acc, FiringKind::LateUpdate)?;
        }
        self.insert(clock, &key, merged, acc);
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
            let wakeup = Wakeup { time, kind };
            let map_key = (key, start);
            match kind {
                WakeupKind::Fire => {
                    let session = self
                        .sessions
                        .get_mut(&map_key)
                        .expect("a wake-up belongs to a live session");
                    check_current(session, id, wakeup);
                    let window = TimeWindow::new(start, session.end);
                    let next = if time < window.max_timestamp() {
                        // Early: the session grew since this was armed.
                        Wakeup {
                            time: window.max_timestamp(),
                            kind,
                        }
                    } else {
                        ctx.fire(&map_key.0.key, window, &session.acc, FiringKind::OnTime)?;
                        let cleanup = Wakeup {
                            time: clock.cleanup_time(window),
                            kind: WakeupKind::Cleanup,
                        };
                        if cleanup.time <= clock.watermark {
                            self.sessions.remove(&map_key);
                            ctx.counters.states_purged += 1;
                            continue;
                        }
                        cleanup
                    };
                    session.wakeup = next;
                    let (key, start) = map_key;
                    self.wakeups.insert((next.time, key, start, id, next.kind));
                }
                WakeupKind::Cleanup => {
                    // Usually due: remove first (one lookup), put back if early.
                    let mut session = self
                        .sessions
                        .remove(&map_key)
                        .expect("a wake-up belongs to a live session");
                    check_current(&session, id, wakeup);
                    let due = clock.cleanup_time(TimeWindow::new(start, session.end));
                    if time == due {
                        ctx.counters.states_purged += 1;
                        continue;
                    }
                    // Early: a late record extended the session since.
                    session.wakeup = Wakeup { time: due, kind };
                    let (key, start) = map_key;
                    self.wakeups
                        .insert((due, key.clone(), start, id, WakeupKind::Cleanup));
                    self.sessions.insert((key, start), session);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn entries(&self) -> Vec<StateEntry<Acc>> {
        self.sessions
            .iter()
            .map(|((key, start), session)| StateEntry {
                key: key.key.clone(),
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
            self.insert(clock, &StateKey::new(key.clone()), window, acc);
            previous = Some((key, window));
        }
        Ok(())
    }
}
