//! What the per-kind window state (tumbling, sliding, session) shares: keys
//! as the state orders them, the lateness rules at one watermark, the
//! context of one operator call, and the snapshot entry of one window.

use std::collections::HashMap; // determinism: allow(lookup only: see KeyedState)
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::output::{Firing, FiringKind, LateRecord, Output};
use crate::aggregate::{Aggregator, WindowContext};
use crate::error::{Error, Result};
use crate::record::{Key, Record};
use crate::time::{EventTime, TimeWindow};

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
    pub(super) order: u128,
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

    /// A key of at most 15 bytes, read from the order word (it holds all of
    /// it): a buffer and the key's length.
    #[inline]
    pub(crate) fn inline_bytes(&self) -> Option<([u8; 16], usize)> {
        let len = self.order as u8 as usize;
        (len <= STATE_KEY_INLINE_BYTES).then(|| (self.order.to_be_bytes(), len))
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

/// Consistent with `Eq`: equal keys have equal order words, so hashing the
/// word alone is enough (two long keys sharing their first 15 bytes and
/// their length collide, and `Eq` tells them apart).
impl Hash for StateKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.order);
    }
}

/// Windows' accumulators by key, for one probe per record where a map
/// ordered by key takes a descent through its nodes. Only looked up:
/// whatever iterates it (firing, snapshots) puts the keys in
/// [`StateKey`]'s order first, so no output depends on the hash order.
pub(crate) type KeyedState<Acc> = HashMap<StateKey, Acc, FixedHashState>; // determinism: allow(lookup only; iterations are sorted by key)

/// aHash with fixed keys: no per-process seed, since the simulator's code
/// takes no OS randomness and a run lays its state out the same every time.
/// The price: keys chosen to collide (a live job reads its keys from its
/// input) would make their probes long.
#[derive(Clone, Copy, Default)]
pub(crate) struct FixedHashState;

/// Words of pi's fractional hex digits: keys with no structure.
const HASH_KEYS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

impl BuildHasher for FixedHashState {
    type Hasher = ahash::AHasher;

    #[inline]
    fn build_hasher(&self) -> ahash::AHasher {
        ahash::RandomState::with_seeds(HASH_KEYS[0], HASH_KEYS[1], HASH_KEYS[2], HASH_KEYS[3])
            .build_hasher()
    }
}

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

/// One window's (pane's, session's) state in a snapshot, as restore reads
/// it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateEntry<Acc> {
    pub(crate) key: Key,
    pub(crate) start: EventTime,
    pub(crate) end: EventTime,
    pub(crate) acc: Acc,
}

/// One window's state as a snapshot writes it: borrowed from the live
/// state, so that taking a snapshot copies no key and no accumulator. It
/// encodes exactly as the [`StateEntry`] it decodes to.
#[derive(Debug)]
pub(crate) struct StateEntryRef<'a, Acc> {
    pub(crate) key: &'a StateKey,
    pub(crate) start: EventTime,
    pub(crate) end: EventTime,
    pub(crate) acc: &'a Acc,
}

impl<'a, Acc> StateEntryRef<'a, Acc> {
    #[inline]
    pub(crate) fn of(key: &'a StateKey, start: EventTime, end: EventTime, acc: &'a Acc) -> Self {
        Self {
            key,
            start,
            end,
            acc,
        }
    }

    /// The owned entry (tests build corrupt snapshots from it).
    #[cfg(test)]
    pub(crate) fn into_owned(self) -> StateEntry<Acc>
    where
        Acc: Clone,
    {
        StateEntry {
            key: self.key.key.clone(),
            start: self.start,
            end: self.end,
            acc: self.acc.clone(),
        }
    }
}

impl<Acc: Serialize> Serialize for StateEntryRef<'_, Acc> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // Field for field the derived encoding of `StateEntry`.
        let mut entry = serializer.serialize_struct("StateEntry", 4)?;
        match self.key.inline_bytes() {
            // Read from the order word: the key's own bytes are elsewhere
            // on the heap, one cache miss per key in a big state.
            Some((bytes, len)) => {
                let key = std::str::from_utf8(&bytes[..len])
                    .expect("a whole key of under 16 bytes is its str's bytes");
                entry.serialize_field("key", key)?;
            }
            None => entry.serialize_field("key", &*self.key.key)?,
        }
        entry.serialize_field("start", &self.start)?;
        entry.serialize_field("end", &self.end)?;
        entry.serialize_field("acc", self.acc)?;
        entry.end()
    }
}

/// Puts snapshot entries in their order, `(key, start)`: one integer
/// comparison per pair for keys under 16 bytes ([`StateKey`]'s order is the
/// key bytes' order). Entries that come in order already are only
/// checked.
pub(crate) fn sort_entries<Acc>(entries: &mut [StateEntryRef<'_, Acc>]) {
    let order = |a: &StateEntryRef<'_, Acc>, b: &StateEntryRef<'_, Acc>| {
        a.key.cmp(b.key).then(a.start.cmp(&b.start))
    };
    if !entries.is_sorted_by(|a, b| order(a, b).is_le()) {
        // `(key, start)` is unique: an unstable sort gives the one order.
        entries.sort_unstable_by(order);
    }
}

/// A snapshot that decoded but describes state that cannot exist.
pub(crate) fn corrupt(what: impl fmt::Display) -> Error {
    Error::CorruptSnapshot(what.to_string())
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_short_key_is_read_whole_from_its_order_word_and_a_long_one_is_not() {
        for key in [
            "",
            "a",
            "user-12345",
            "ключ-7",
            "fifteen-bytes-x",
            "sixteen-bytes-xx",
        ] {
            let state_key = StateKey::new(Key::from(key));
            match state_key.inline_bytes() {
                Some((bytes, len)) => assert_eq!(&bytes[..len], key.as_bytes()),
                None => assert!(key.len() > STATE_KEY_INLINE_BYTES, "{key}"),
            }
        }
    }
}
