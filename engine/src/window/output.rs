//! What a window operator emits: firings and late records.

use serde::{Deserialize, Serialize};

use crate::record::{Key, Record};
use crate::time::{EventTime, TimeWindow};

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
