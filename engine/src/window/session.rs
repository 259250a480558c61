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
//! # State layout
//!
//! - `slots`: a slab (`Vec`) of sessions. A session is named by a
//!   [`SessionRef`], its slot and its id (ids are unique over the operator's
//!   lifetime, so a reference that outlives its session is recognised as
//!   stale: the generation check of lazy deletion). Freed slots are reused
//!   last-in first-out, while their memory is still in cache.
//! - `index`: the one ordered index by key, `BTreeMap<StateKey,
//!   KeySessions>`: per key, references to its sessions in start order. A
//!   record costs one descent in it; nothing else is keyed by strings.
//! - `wakeups`: a monotone timer queue (a radix heap, see
//!   [`TimerQueue`]): arming is appending to a `Vec`, and entries come out
//!   grouped by time (a *bucket*) without any ordered-map descent. An entry
//!   names its session's slot, so a firing or a purge goes straight to it,
//!   with no key descent.
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
//! purges. So on-time firings happen only at a session's exact max
//! timestamp. Whatever a bucket arms lands in a later bucket, and a bucket's
//! on-time firings run in ascending `(key, start)`, so they come out in
//! ascending `(window_end, key)` as for the other window kinds. (Everything
//! else a bucket does touches one session each and emits nothing, so its
//! order does not matter.)
//!
//! # Lazy deletion and compaction
//!
//! Merging and re-arming leave the wake-up entries they supersede in the
//! queue, and a purge leaves its session's reference in the index: both
//! are *stale*, and are skipped (entries) or dropped (references, at the
//! key's next record) when met. Every entry carries an arming number
//! (unique over the operator's lifetime) and a session records the number
//! of its current entry, so an entry is current iff its slot holds a
//! session with its number; every live session has exactly one current
//! entry, and the queue holds `len + stale` entries.
//!
//! A key whose sessions are all purged keeps its index entry, so a key that
//! comes back costs no index insertion. When stale references exceed
//! [`STALE_REFS_PER_SESSION_MAX`] per live session, or stale entries one per
//! live session (each plus [`COMPACTION_SLACK`]), a compaction drops them in
//! one pass over the index or the buckets; when the last session is purged
//! everything is dropped. So memory stays linear in the live state (the
//! slab keeps its high-water mark of live sessions) and the amortised cost
//! per record constant. None of this is observable: outputs and snapshots
//! depend on the live sessions alone.

use std::collections::BTreeMap;
use std::mem;
use std::ops::Range;

use super::output::FiringKind;
use super::state::{Clock, Ctx, StateEntry, StateEntryRef, StateKey, corrupt};
use super::timer_queue::TimerQueue;
use crate::aggregate::{Aggregator, Input};
use crate::error::Result;
use crate::record::{Key, Record};
use crate::time::{EventTime, TimeWindow};

/// Stale index references tolerated per live session (plus the slack):
/// keys that come back within a few session lifetimes keep their index
/// entry, and the index stays within a small factor of the live state.
const STALE_REFS_PER_SESSION_MAX: usize = 2;

/// Stale references and stale entries tolerated on top of the proportional
/// bounds, so that small states do not compact over and over.
const COMPACTION_SLACK: usize = 1_024;

/// When compactions run (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compaction {
    pub(crate) stale_refs_per_session_max: usize,
    pub(crate) stale_entries_per_session_max: usize,
    pub(crate) slack: usize,
}

impl Compaction {
    pub(crate) const DEFAULT: Compaction = Compaction {
        stale_refs_per_session_max: STALE_REFS_PER_SESSION_MAX,
        stale_entries_per_session_max: 1,
        slack: COMPACTION_SLACK,
    };

    fn is_due(self, stale: usize, per_session_max: usize, len: usize) -> bool {
        stale
            > len
                .saturating_mul(per_session_max)
                .saturating_add(self.slack)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeupKind {
    Fire,
    Cleanup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wakeup {
    time: EventTime,
    kind: WakeupKind,
}

/// A session's slot and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SessionRef {
    slot: u32,
    id: u64,
}

struct Session<Acc> {
    /// The key, held while the session may still fire on time (it has a
    /// `Fire` wake-up): its on-time firing moves it into the output, with no
    /// reference-count traffic, and nothing after that needs it (the index
    /// holds the key too, and records bring theirs).
    key: Option<Key>,
    start: EventTime,
    end: EventTime,
    /// Unique over the operator's lifetime.
    id: u64,
    /// The session's one current wake-up (see the module docs).
    wakeup: Wakeup,
    /// The arming number of the entry of its current wake-up.
    armed: u64,
    acc: Acc,
}

impl<Acc> Session<Acc> {
    fn window(&self) -> TimeWindow {
        TimeWindow::new(self.start, self.end)
    }

    /// The key of a session that may still fire on time.
    fn own_key(&self) -> &str {
        self.key
            .as_deref()
            .expect("a session that may fire on time holds its key")
    }
}

/// A key's sessions in start order, as references (some possibly stale).
/// Most keys have one session at a time: that one is stored inline.
enum KeySessions {
    One(SessionRef),
    /// Any number, including none.
    Many(Vec<SessionRef>),
}

impl KeySessions {
    fn refs(&self) -> &[SessionRef] {
        match self {
            KeySessions::One(one) => std::slice::from_ref(one),
            KeySessions::Many(many) => many,
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&SessionRef) -> bool) {
        match self {
            KeySessions::One(one) => {
                if !keep(one) {
                    *self = KeySessions::Many(Vec::new());
                }
            }
            KeySessions::Many(many) => many.retain(keep),
        }
    }

    /// Replaces the references in `covered` (possibly none) by `new`.
    fn replace(&mut self, covered: Range<usize>, new: SessionRef) {
        if covered.len() == self.refs().len() {
            *self = KeySessions::One(new);
            return;
        }
        let mut refs = match mem::replace(self, KeySessions::Many(Vec::new())) {
            KeySessions::One(one) => vec![one],
            KeySessions::Many(many) => many,
        };
        refs.splice(covered, [new]);
        *self = KeySessions::Many(refs);
    }
}

/// A wake-up in the timer queue: its session's slot, and its arming
/// number (unique over the operator's lifetime; its time is the queue's).
#[derive(Clone, Copy, Debug)]
struct WakeupEntry {
    armed: u64,
    slot: u32,
}

/// The slab of sessions.
struct Slots<Acc> {
    slots: Vec<Option<Session<Acc>>>,
    /// Free slots, reused last-in first-out.
    free: Vec<u32>,
}

impl<Acc> Slots<Acc> {
    fn get(&self, session: SessionRef) -> Option<&Session<Acc>> {
        self.slots[session.slot as usize]
            .as_ref()
            .filter(|live| live.id == session.id)
    }

    fn is_live(&self, session: SessionRef) -> bool {
        self.get(session).is_some()
    }

    /// The live session `session` names (callers checked it is live).
    fn live(&self, session: SessionRef) -> &Session<Acc> {
        self.get(session)
            .expect("a checked reference names a live session")
    }

    fn live_mut(&mut self, session: SessionRef) -> &mut Session<Acc> {
        self.slots[session.slot as usize]
            .as_mut()
            .filter(|live| live.id == session.id)
            .expect("a checked reference names a live session")
    }

    fn insert(&mut self, session: Session<Acc>) -> SessionRef {
        let id = session.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                assert!(self.slots[slot as usize].is_none(), "a free slot is empty");
                self.slots[slot as usize] = Some(session);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 live sessions");
                self.slots.push(Some(session));
                slot
            }
        };
        SessionRef { slot, id }
    }

    fn remove(&mut self, session: SessionRef) -> Session<Acc> {
        let removed = self.slots[session.slot as usize]
            .take()
            .filter(|live| live.id == session.id)
            .expect("a removed reference names a live session");
        self.free.push(session.slot);
        removed
    }
}

/// The wake-up entries, in a monotone timer queue (every wake-up is armed
/// after the watermark, or after the wake-up being handled).
struct Wakeups {
    queue: TimerQueue<WakeupEntry>,
    /// The arming number of the next entry.
    armed_next: u64,
    /// Entries no longer current (see the module docs).
    stale: usize,
}

impl Wakeups {
    fn new() -> Self {
        Self {
            queue: TimerQueue::new(),
            armed_next: 0,
            stale: 0,
        }
    }

    /// Makes `wakeup` the current one of `session` (in `slot`) and arms
    /// it. An entry armed earlier for the session is no longer current
    /// (the caller counts it as stale if it is still queued).
    #[inline]
    fn set<Acc>(&mut self, slot: u32, session: &mut Session<Acc>, wakeup: Wakeup) {
        session.wakeup = wakeup;
        session.armed = self.armed_next;
        self.armed_next += 1;
        let entry = WakeupEntry {
            armed: session.armed,
            slot,
        };
        self.queue.push(wakeup.time, entry);
    }
}

pub(crate) struct SessionState<Acc> {
    gap_ms: i64,
    /// Every key with live sessions, and keys whose references went stale
    /// since the last compaction.
    index: BTreeMap<StateKey, KeySessions>,
    /// References in `index` to purged sessions.
    refs_stale: usize,
    slots: Slots<Acc>,
    /// How many sessions are live.
    len: usize,
    wakeups: Wakeups,
    next_id: u64,
    compaction: Compaction,
    /// Scratch: the entries of one bucket, and its on-time firings.
    bucket: Vec<WakeupEntry>,
    firing: Vec<SessionRef>,
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

/// The parts of the state one record works on, once its key is looked up.
struct Parts<'a, Acc> {
    slots: &'a mut Slots<Acc>,
    len: &'a mut usize,
    wakeups: &'a mut Wakeups,
    next_id: &'a mut u64,
}

impl<Acc> Parts<'_, Acc> {
    /// Stores a new session (with a fresh id) and arms its wake-up.
    fn add_session(&mut self, clock: Clock, key: Key, window: TimeWindow, acc: Acc) -> SessionRef {
        let id = *self.next_id;
        *self.next_id += 1;
        let wakeup = wakeup_for(clock, window);
        let session = self.slots.insert(Session {
            key: Some(key),
            start: window.start,
            end: window.end,
            id,
            wakeup,
            armed: 0,
            acc,
        });
        self.wakeups
            .set(session.slot, self.slots.live_mut(session), wakeup);
        *self.len += 1;
        session
    }
}

impl<Acc> SessionState<Acc> {
    pub(crate) fn new(gap_ms: i64) -> Self {
        Self {
            gap_ms,
            index: BTreeMap::new(),
            refs_stale: 0,
            slots: Slots {
                slots: Vec::new(),
                free: Vec::new(),
            },
            len: 0,
            wakeups: Wakeups::new(),
            next_id: 0,
            compaction: Compaction::DEFAULT,
            bucket: Vec::new(),
            firing: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn set_compaction(&mut self, compaction: Compaction) {
        self.compaction = compaction;
    }

    /// The session whose current wake-up `entry` (at `time`) is, if any.
    fn current(&self, time: EventTime, entry: &WakeupEntry) -> Option<SessionRef> {
        let session = self.slots.slots[entry.slot as usize].as_ref()?;
        if session.armed != entry.armed {
            return None;
        }
        assert_eq!(
            session.wakeup.time, time,
            "an entry is queued at its wake-up's time"
        );
        Some(SessionRef {
            slot: entry.slot,
            id: session.id,
        })
    }

    /// Drops stale references and entries once they are too many (see the
    /// module docs), and everything once no session is live.
    fn compact_if_due(&mut self) {
        if self.len == 0 {
            if !self.index.is_empty() || !self.slots.slots.is_empty() {
                self.index.clear();
                self.refs_stale = 0;
                self.slots.slots.clear();
                self.slots.free.clear();
                self.wakeups.queue.clear();
                self.wakeups.stale = 0;
            }
            return;
        }
        if self.compaction.is_due(
            self.refs_stale,
            self.compaction.stale_refs_per_session_max,
            self.len,
        ) {
            let slots = &self.slots;
            self.index.retain(|_, sessions| {
                sessions.retain(|&session| slots.is_live(session));
                !sessions.refs().is_empty()
            });
            self.refs_stale = 0;
        }
        if self.compaction.is_due(
            self.wakeups.stale,
            self.compaction.stale_entries_per_session_max,
            self.len,
        ) {
            let mut queue = mem::replace(&mut self.wakeups.queue, TimerQueue::new());
            queue.retain(|time, entry| self.current(time, entry).is_some());
            self.wakeups.queue = queue;
            self.wakeups.stale = 0;
        }
        #[cfg(test)]
        self.check_invariants();
    }

    /// Every count matches the structures (for tests: costs a full pass).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let live = self.slots.slots.iter().flatten().count();
        assert_eq!(live, self.len, "len counts the live sessions");
        assert_eq!(
            self.slots.slots.len() - self.slots.free.len(),
            live,
            "a slot is live or free"
        );
        let (mut refs_live, mut refs_stale) = (0, 0);
        for (key, sessions) in &self.index {
            let mut previous_end = None;
            for &session in sessions.refs() {
                match self.slots.get(session) {
                    Some(live) => {
                        refs_live += 1;
                        assert!(
                            live.key.as_ref().is_none_or(|own| *own == key.key),
                            "a session is indexed under its key"
                        );
                        assert!(
                            live.key.is_some() || live.wakeup.kind == WakeupKind::Cleanup,
                            "a session that may fire on time holds its key"
                        );
                        assert!(
                            previous_end.is_none_or(|end| end < live.start),
                            "a key's sessions are disjoint, in start order"
                        );
                        previous_end = Some(live.end);
                    }
                    None => refs_stale += 1,
                }
            }
        }
        assert_eq!(refs_live, self.len, "each live session is indexed once");
        assert_eq!(refs_stale, self.refs_stale, "stale references are counted");
        let mut entries_current = 0;
        let mut entries = 0;
        for (time, entry) in self.wakeups.queue.iter() {
            entries += 1;
            if self.current(time, entry).is_some() {
                entries_current += 1;
            }
        }
        assert_eq!(
            entries_current, self.len,
            "each live session has one current wake-up"
        );
        assert_eq!(
            entries - entries_current,
            self.wakeups.stale,
            "stale entries are counted"
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
        let Record { key, ts, value } = record;
        let key = StateKey::new(key);
        let new = TimeWindow::new(ts, ts + self.gap_ms);
        let stale_before = self.wakeups.stale;
        let mut parts = Parts {
            slots: &mut self.slots,
            len: &mut self.len,
            wakeups: &mut self.wakeups,
            next_id: &mut self.next_id,
        };
        let result = if let Some(sessions) = self.index.get_mut(&key) {
            // Drop the references to purged sessions first.
            let refs_before = sessions.refs().len();
            sessions.retain(|&session| parts.slots.is_live(session));
            self.refs_stale -= refs_before - sessions.refs().len();
            merge(ctx, &mut parts, sessions, key, new, value, arrival)
        } else if ctx.clock.is_window_late(new) {
            // A late record of a key without sessions: nothing to merge.
            ctx.late(Record {
                key: key.key,
                ts,
                value,
            });
            Ok(())
        } else {
            let sessions = self
                .index
                .entry(key.clone())
                .or_insert(KeySessions::Many(Vec::new()));
            merge(ctx, &mut parts, sessions, key, new, value, arrival)
        };
        // Only a merge or a re-arm makes anything stale here.
        if result.is_ok() && self.wakeups.stale != stale_before {
            self.compact_if_due();
        }
        result
    }

    pub(crate) fn advance<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let clock = ctx.clock;
        if self
            .wakeups
            .queue
            .first_time()
            .is_none_or(|time| time > clock.watermark)
        {
            // Nothing is due (the common case for a record's watermark).
            return Ok(());
        }
        let mut bucket = mem::take(&mut self.bucket);
        let mut firing = mem::take(&mut self.firing);
        while let Some(time) = self.wakeups.queue.pop_due(clock.watermark, &mut bucket) {
            for entry in bucket.drain(..) {
                let Some(reference) = self.current(time, &entry) else {
                    self.wakeups.stale -= 1;
                    continue;
                };
                let session = self.slots.live_mut(reference);
                let window = session.window();
                let kind = session.wakeup.kind;
                let due = match kind {
                    WakeupKind::Fire => window.max_timestamp(),
                    WakeupKind::Cleanup => clock.cleanup_time(window),
                };
                assert!(time <= due, "a wake-up is never late for its session");
                if time < due {
                    // Early: the session grew since this was armed.
                    self.wakeups
                        .set(reference.slot, session, Wakeup { time: due, kind });
                } else if kind == WakeupKind::Fire {
                    firing.push(reference);
                } else {
                    self.purge(ctx, reference);
                }
            }
            if firing.len() > 1 {
                let slots = &self.slots;
                firing.sort_unstable_by(|a, b| {
                    let (a, b) = (slots.live(*a), slots.live(*b));
                    (a.own_key(), a.start).cmp(&(b.own_key(), b.start))
                });
            }
            for session in firing.drain(..) {
                self.fire_on_time(ctx, session)?;
            }
        }
        self.bucket = bucket;
        self.firing = firing;
        self.compact_if_due();
        Ok(())
    }

    /// The watermark reached the session's max timestamp: it fires, then
    /// waits for its cleanup time (or is purged at once if that passed too).
    fn fire_on_time<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>, reference: SessionRef) -> Result<()>
    where
        A: Aggregator<V, Acc = Acc>,
    {
        let clock = ctx.clock;
        let session = self.slots.live_mut(reference);
        let window = session.window();
        let key = session
            .key
            .take()
            .expect("a session due to fire on time holds its key");
        ctx.fire_owned(key, window, &session.acc, FiringKind::OnTime)?;
        let cleanup_time = clock.cleanup_time(window);
        if cleanup_time > clock.watermark {
            let cleanup = Wakeup {
                time: cleanup_time,
                kind: WakeupKind::Cleanup,
            };
            self.wakeups.set(reference.slot, session, cleanup);
        } else {
            self.purge(ctx, reference);
        }
        Ok(())
    }

    /// Drops a session's state; its index reference goes stale.
    fn purge<V, A>(&mut self, ctx: &mut Ctx<'_, V, A>, session: SessionRef)
    where
        A: Aggregator<V, Acc = Acc>,
    {
        self.slots.remove(session);
        self.len -= 1;
        self.refs_stale += 1;
        ctx.counters.states_purged += 1;
    }

    /// Live sessions in `(key, start)` order.
    /// Every live session's state, by key, in each key's session order.
    pub(crate) fn entries(&self) -> Vec<StateEntryRef<'_, Acc>> {
        let mut entries = Vec::with_capacity(self.len());
        entries.extend(
            self.index
                .iter()
                .flat_map(|(key, sessions)| {
                    sessions.refs().iter().map(move |session| (key, session))
                })
                .filter_map(|(key, &session)| Some((key, self.slots.get(session)?)))
                .map(|(key, session)| {
                    StateEntryRef::of(key, session.start, session.end, &session.acc)
                }),
        );
        entries
    }

    /// Entries come sorted by `(key, start)` (checked by the caller).
    pub(crate) fn restore_entry(&mut self, clock: Clock, entry: StateEntry<Acc>) -> Result<()> {
        let (start, end) = (entry.start, entry.end);
        if end
            .checked_sub(start)
            .is_none_or(|length| length < self.gap_ms)
        {
            return Err(corrupt(format!(
                "session [{start}, {end}) of key {:?} is shorter than the gap {}",
                &*entry.key, self.gap_ms
            )));
        }
        let window = TimeWindow::new(start, end);
        clock.check_restored(window, format_args!("session {window}"), &entry.key)?;
        let key = StateKey::new(entry.key);
        let sessions = self
            .index
            .entry(key.clone())
            .or_insert(KeySessions::Many(Vec::new()));
        if let Some(&previous) = sessions.refs().last() {
            let previous = self.slots.live(previous).window();
            if previous.end >= start {
                return Err(corrupt(format!(
                    "sessions {previous} and {window} of key {:?} overlap or touch",
                    &*key.key
                )));
            }
        }
        let mut parts = Parts {
            slots: &mut self.slots,
            len: &mut self.len,
            wakeups: &mut self.wakeups,
            next_id: &mut self.next_id,
        };
        let at = sessions.refs().len();
        let session = parts.add_session(clock, key.key, window, entry.acc);
        sessions.replace(at..at, session);
        Ok(())
    }
}

/// Adds a record (its window `new`, which starts at its timestamp) to its key's live `sessions` (no stale
/// references): a new session, growth in place, or a merge.
#[inline(always)]
fn merge<V, A, Acc>(
    ctx: &mut Ctx<'_, V, A>,
    parts: &mut Parts<'_, Acc>,
    sessions: &mut KeySessions,
    key: StateKey,
    new: TimeWindow,
    value: V,
    arrival: u64,
) -> Result<()>
where
    A: Aggregator<V, Acc = Acc>,
    Acc: Clone,
{
    let clock = ctx.clock;
    let input = Input {
        ts: new.start,
        arrival,
        value: &value,
    };
    let refs = sessions.refs();
    if let [only] = *refs {
        // The common case: the key's one session, starting at or before
        // the record and reaching it, covers it alone.
        let session = parts.slots.live(only);
        if session.start <= new.start && new.start <= session.end {
            return grow(ctx, parts, only, key.key, new, input);
        }
    }
    // The covered sessions are `refs[first..last]`: the ones that neither
    // end before the new window starts nor start after it ends.
    let first = refs.partition_point(|&session| parts.slots.live(session).end < new.start);
    let last = refs.partition_point(|&session| parts.slots.live(session).start <= new.end);

    if first == last {
        if clock.is_window_late(new) {
            ctx.late(Record {
                key: key.key,
                ts: new.start,
                value,
            });
            return Ok(());
        }
        let mut acc = ctx.aggregator.create();
        ctx.aggregator.add(&mut acc, input)?;
        if clock.has_reached(new) {
            ctx.fire(&key.key, new, &acc, FiringKind::LateUpdate)?;
        }
        let session = parts.add_session(clock, key.key, new, acc);
        sessions.replace(first..first, session);
        return Ok(());
    }

    if last - first == 1 && parts.slots.live(refs[first]).start <= new.start {
        return grow(ctx, parts, refs[first], key.key, new, input);
    }

    // The record bridges sessions or extends one to the left: the covered
    // sessions are replaced by their cover, and their entries go stale.
    let merged = TimeWindow::new(
        parts.slots.live(refs[first]).start.min(new.start),
        parts.slots.live(refs[last - 1]).end.max(new.end),
    );
    assert!(
        !clock.is_window_late(merged),
        "merging live sessions cannot make a late window"
    );
    let mut acc: Option<Acc> = None;
    for &covered in &refs[first..last] {
        let covered = parts.slots.remove(covered);
        parts.wakeups.stale += 1;
        *parts.len -= 1;
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
    let session = parts.add_session(clock, key.key, merged, acc);
    sessions.replace(first..last, session);
    Ok(())
}

/// The record (its window `new`) touches one session and does not move its
/// start: the session grows in place (Flink merges it into the cover, which
/// is the same window when the record is inside).
#[inline(always)]
fn grow<V, A, Acc>(
    ctx: &mut Ctx<'_, V, A>,
    parts: &mut Parts<'_, Acc>,
    reference: SessionRef,
    key: Key,
    new: TimeWindow,
    input: Input<'_, V>,
) -> Result<()>
where
    A: Aggregator<V, Acc = Acc>,
{
    let clock = ctx.clock;
    let session = parts.slots.live_mut(reference);
    debug_assert!(session.start <= new.start && new.start <= session.end);
    let before = session.window();
    ctx.aggregator.add(&mut session.acc, input)?;
    session.end = session.end.max(new.end);
    let after = session.window();
    if clock.has_reached(before) && !clock.has_reached(after) {
        // A late record pushed a reached session past the watermark:
        // pending again, and its cleanup wake-up may lie after its new max
        // timestamp. The old entry goes stale.
        parts.wakeups.stale += 1;
        parts
            .wakeups
            .set(reference.slot, session, wakeup_for(clock, after));
        // It may fire on time again: it needs its key back.
        session.key.get_or_insert(key);
    } else if clock.has_reached(after) {
        ctx.fire_owned(key, after, &session.acc, FiringKind::LateUpdate)?;
    }
    Ok(())
}
