//! The trace: every broker-visible event of a run, folded into a running
//! 64-bit hash, with a ring of the most recent events for excerpts.
//!
//! Requests handled (with their outcome), appends, high-watermark moves,
//! truncations, leadership and ISR changes, elections, coordinator
//! transitions and every fault applied are recorded. Two runs of the same
//! seed must produce the same hash: a run whose hash differs between two
//! runs of one seed is nondeterministic, which is a bug.
//!
//! Recording is cheap on purpose (it sits on the produce/fetch path): an
//! event is a few integers plus interned names; nothing is formatted unless
//! an excerpt is asked for or echoing is on (`ClusterConfig::trace_echo`). Memory is
//! bounded: the ring keeps [`TRACE_RING_EVENTS`] events, the hash covers all.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use crate::seed::{GOLDEN_GAMMA, fnv1a64, mix64};
use crate::world::now_ms;

/// How many recent events an excerpt can show.
pub const TRACE_RING_EVENTS: usize = 256;

/// How many events before and after its hit a focused excerpt shows.
pub const FOCUS_BEFORE: usize = 24;
pub const FOCUS_AFTER: usize = 12;

/// The place in a run an excerpt is centred on (the checker names it for an
/// anomaly; [`Trace::focus`] finds it while the run is repeated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceFocus {
    /// The last leader append whose batch holds this offset, or the
    /// transaction marker written at it: where the record entered the log
    /// that was finally read.
    Record {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// The first event at or after this simulated instant (ms since the
    /// start of the run).
    Time { at_ms: u64 },
}

/// The events around a [`TraceFocus`], oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FocusedExcerpt {
    pub lines: Vec<String>,
    /// The index in `lines` of the event the focus names.
    pub hit: usize,
}

/// Who recorded an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// The run loop (faults, host control).
    Cluster,
    Controller,
    Broker(i32),
}

/// What an event talks about. Names are interned by the trace.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    None,
    Partition(&'a str, i32),
    /// A group id, a transactional id, a host name, a fault description.
    Name(&'a str),
}

macro_rules! event_kinds {
    ($( $kind:ident => $name:literal [$($field:literal),*] ),* $(,)?) => {
        /// The kinds of trace events, each with the names of its values.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum EventKind { $($kind),* }

        impl EventKind {
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$kind => $name),* }
            }

            /// The meaning of the event's values, in order.
            pub fn fields(self) -> &'static [&'static str] {
                match self { $(EventKind::$kind => &[$($field),*]),* }
            }
        }
    };
}

event_kinds! {
    Request => "request" ["api", "error"],
    Append => "append" ["base_offset", "records", "leader_epoch", "producer_id"],
    DuplicateBatch => "duplicate" ["base_offset", "producer_id", "sequence"],
    AppendRejected => "append-rejected" ["error", "producer_id", "epoch", "sequence"],
    Marker => "marker" ["offset", "producer_id", "commit", "producer_epoch"],
    ReplicaAppend => "replica-append" ["base_offset", "batches", "log_end_offset"],
    HighWatermark => "hw" ["from", "to"],
    Truncate => "truncate" ["to_offset", "from_log_end_offset"],
    BecomeLeader => "become-leader" ["leader_epoch", "log_end_offset"],
    BecomeFollower => "become-follower" ["leader_epoch", "leader"],
    IsrChange => "isr" ["isr_mask", "partition_epoch", "leader_epoch"],
    IsrRequest => "isr-request" ["isr_mask", "partition_epoch", "error"],
    Election => "election" ["leader", "leader_epoch", "isr_mask"],
    BrokerRegistered => "broker-registered" ["broker", "broker_epoch"],
    BrokerFenced => "broker-fenced" ["broker", "broker_epoch"],
    BrokerUnfenced => "broker-unfenced" ["broker", "broker_epoch"],
    BrokerStarted => "broker-started" ["incarnation"],
    TopicCreated => "topic-created" ["partitions", "replication_factor", "error"],
    MetadataApplied => "metadata" ["epoch"],
    CoordinatorLoaded => "coordinator-loaded" ["coordinator_epoch", "entries"],
    CoordinatorUnloaded => "coordinator-unloaded" ["coordinator_epoch"],
    GroupState => "group" ["state", "generation", "members"],
    GroupMemberRemoved => "group-member-removed" ["generation", "reason"],
    OffsetsCommitted => "offsets-committed" ["partitions", "generation", "producer_id"],
    TxnState => "txn" ["state", "producer_id", "producer_epoch", "partitions"],
    TxnTimedOut => "txn-timeout" ["producer_id", "producer_epoch"],
    ProducerIdsAllocated => "producer-ids" ["first", "count"],
    Fault => "fault" [],
    FaultSkipped => "fault-skipped" [],
}

#[derive(Clone, Copy, Debug)]
enum StoredSubject {
    None,
    Partition(u32, i32),
    Name(u32),
}

#[derive(Clone, Copy, Debug)]
struct StoredEvent {
    at_ms: u64,
    node: Node,
    kind: EventKind,
    subject: StoredSubject,
    values: [i64; 4],
}

struct TraceInner {
    hash: u64,
    events: u64,
    ring: VecDeque<StoredEvent>,
    names: Vec<String>,
    /// `fnv1a64` of each name, computed once.
    name_hashes: Vec<u64>,
    name_ids: BTreeMap<String, u32>,
    echo: bool,
    focus: Option<Focus>,
}

/// A focus being looked for, and what it has captured so far.
struct Focus {
    target: FocusTarget,
    /// The events before the hit, the hit, then up to [`FOCUS_AFTER`] more.
    captured: Option<(Vec<StoredEvent>, usize)>,
}

enum FocusTarget {
    /// (interned topic, partition, offset)
    Record(u32, i32, i64),
    /// Simulated ms since the start of the run.
    Time(u64),
}

/// The shared trace of one run (cheap to clone: one `Rc`).
#[derive(Clone)]
pub struct Trace {
    inner: Rc<RefCell<TraceInner>>,
}

/// The outcome of a run's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSummary {
    /// The running hash over every event.
    pub hash: u64,
    /// How many events were recorded.
    pub events: u64,
    /// The most recent events, oldest first, one line each.
    pub excerpt: Vec<String>,
    /// The events around the focus, if one was set and found.
    pub focus: Option<FocusedExcerpt>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Trace {
    /// A new trace; `echo` prints every event to stderr as it is recorded.
    pub fn new(echo: bool) -> Self {
        Self {
            inner: Rc::new(RefCell::new(TraceInner {
                hash: 0x6a09_e667_f3bc_c908,
                events: 0,
                ring: VecDeque::with_capacity(TRACE_RING_EVENTS),
                names: Vec::new(),
                name_hashes: Vec::new(),
                name_ids: BTreeMap::new(),
                echo,
                focus: None,
            })),
        }
    }

    /// Captures the events around `focus` as the run records them (for
    /// [`TraceSummary::focus`]). Neither the hash nor the ring change.
    pub fn focus(&self, focus: &TraceFocus) {
        let mut inner = self.inner.borrow_mut();
        let target = match focus {
            TraceFocus::Record {
                topic,
                partition,
                offset,
            } => FocusTarget::Record(inner.intern(topic), *partition, *offset),
            TraceFocus::Time { at_ms } => FocusTarget::Time(*at_ms),
        };
        inner.focus = Some(Focus {
            target,
            captured: None,
        });
    }

    /// Records one event at the current simulated time.
    pub fn record(&self, node: Node, kind: EventKind, subject: Subject<'_>, values: [i64; 4]) {
        let at_ms = now_ms();
        let mut inner = self.inner.borrow_mut();
        let subject = match subject {
            Subject::None => StoredSubject::None,
            Subject::Partition(topic, partition) => {
                StoredSubject::Partition(inner.intern(topic), partition)
            }
            Subject::Name(name) => StoredSubject::Name(inner.intern(name)),
        };
        let event = StoredEvent {
            at_ms,
            node,
            kind,
            subject,
            values,
        };
        let mut hash = inner.hash;
        hash = mix(hash, at_ms);
        hash = mix(
            hash,
            match node {
                Node::Cluster => 1 << 40,
                Node::Controller => 2 << 40,
                Node::Broker(id) => (3 << 40) | u64::from(id as u32),
            },
        );
        hash = mix(hash, kind as u64);
        match subject {
            StoredSubject::None => hash = mix(hash, 0),
            StoredSubject::Partition(topic, partition) => {
                hash = mix(hash, inner.name_hashes[topic as usize]);
                hash = mix(hash, u64::from(partition as u32));
            }
            StoredSubject::Name(name) => {
                hash = mix(hash, inner.name_hashes[name as usize]);
            }
        }
        for value in values {
            hash = mix(hash, value as u64);
        }
        inner.hash = hash;
        inner.events += 1;
        if inner.ring.len() == TRACE_RING_EVENTS {
            inner.ring.pop_front();
        }
        inner.capture(&event);
        inner.ring.push_back(event);
        assert!(inner.ring.len() <= TRACE_RING_EVENTS, "the ring is bounded");
        assert!(
            inner.ring.len() as u64 <= inner.events,
            "the ring holds recorded events"
        );
        if inner.echo {
            eprintln!("trace {}", inner.format(&event));
        }
    }

    /// Records an event about a name (a fault description, a group, a host).
    pub fn record_name(&self, node: Node, kind: EventKind, name: &str, values: [i64; 4]) {
        self.record(node, kind, Subject::Name(name), values);
    }

    pub fn hash(&self) -> u64 {
        self.inner.borrow().hash
    }

    pub fn events(&self) -> u64 {
        self.inner.borrow().events
    }

    /// The hash, the count and the last `lines` events.
    pub fn summary(&self, lines: usize) -> TraceSummary {
        let inner = self.inner.borrow();
        let skip = inner.ring.len().saturating_sub(lines);
        TraceSummary {
            hash: inner.hash,
            events: inner.events,
            excerpt: inner
                .ring
                .iter()
                .skip(skip)
                .map(|event| inner.format(event))
                .collect(),
            focus: inner
                .focus
                .as_ref()
                .and_then(|focus| focus.captured.as_ref())
                .map(|(events, hit)| FocusedExcerpt {
                    lines: events.iter().map(|event| inner.format(event)).collect(),
                    hit: *hit,
                }),
        }
    }
}

impl TraceInner {
    /// Feeds `event` (not yet in the ring) to the focus: a hit starts a new
    /// capture with the ring's last [`FOCUS_BEFORE`] events (a later hit of a
    /// record focus replaces it: the last append of an offset is the one
    /// that was read); otherwise the event follows the capture's hit.
    fn capture(&mut self, event: &StoredEvent) {
        let Some(focus) = self.focus.as_mut() else {
            return;
        };
        let hit = match focus.target {
            FocusTarget::Record(topic, partition, offset) => {
                matches!(event.subject, StoredSubject::Partition(t, p) if t == topic && p == partition)
                    && match event.kind {
                        EventKind::Append => {
                            (event.values[0]..event.values[0] + event.values[1]).contains(&offset)
                        }
                        EventKind::Marker => event.values[0] == offset,
                        _ => false,
                    }
            }
            FocusTarget::Time(at_ms) => focus.captured.is_none() && event.at_ms >= at_ms,
        };
        if hit {
            let skip = self.ring.len().saturating_sub(FOCUS_BEFORE);
            let mut events: Vec<StoredEvent> = self.ring.iter().skip(skip).copied().collect();
            let at = events.len();
            events.push(*event);
            focus.captured = Some((events, at));
        } else if let Some((events, at)) = focus.captured.as_mut()
            && events.len() <= *at + FOCUS_AFTER
        {
            events.push(*event);
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 trace names");
        self.names.push(name.to_string());
        self.name_hashes.push(fnv1a64(name.as_bytes()));
        self.name_ids.insert(name.to_string(), id);
        assert_eq!(self.names.len(), self.name_hashes.len());
        assert_eq!(
            self.names.len(),
            self.name_ids.len(),
            "names are interned once"
        );
        id
    }

    fn format(&self, event: &StoredEvent) -> String {
        let mut line = String::with_capacity(96);
        let _ = write!(line, "{:>8}ms ", event.at_ms);
        match event.node {
            Node::Cluster => line.push_str("cluster"),
            Node::Controller => line.push_str("controller"),
            Node::Broker(id) => {
                let _ = write!(line, "broker-{id}");
            }
        }
        let _ = write!(line, " {}", event.kind.name());
        match event.subject {
            StoredSubject::None => {}
            StoredSubject::Partition(topic, partition) => {
                let _ = write!(line, " {}-{}", self.names[topic as usize], partition);
            }
            StoredSubject::Name(name) => {
                let _ = write!(line, " {}", self.names[name as usize]);
            }
        }
        for (field, value) in event.kind.fields().iter().zip(event.values) {
            let _ = write!(line, " {field}={value}");
        }
        line
    }
}

/// Folds `value` into `hash`.
fn mix(hash: u64, value: u64) -> u64 {
    mix64(hash ^ value.wrapping_mul(GOLDEN_GAMMA))
}

/// A bit mask of broker ids (ids 0..63), for ISR values in the trace.
pub fn broker_mask(brokers: &[i32]) -> i64 {
    brokers
        .iter()
        .filter(|&&id| (0..63).contains(&id))
        .fold(0i64, |mask, &id| mask | (1i64 << id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_events_give_the_same_hash_and_any_change_moves_it() {
        let run = |offset: i64| {
            let trace = Trace::new(false);
            trace.record(
                Node::Broker(1),
                EventKind::Append,
                Subject::Partition("t", 0),
                [offset, 3, 0, -1],
            );
            trace.record_name(Node::Cluster, EventKind::Fault, "crash broker-1", [0; 4]);
            trace.hash()
        };
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
    }

    /// Records `n` metadata events (values 0..n), then the appends of
    /// `t-0` at offsets 0..4 and 4..8 twice (a truncation rewrote them),
    /// then `n` more metadata events.
    fn run_with(focus: Option<TraceFocus>, n: i64) -> TraceSummary {
        let trace = Trace::new(false);
        if let Some(focus) = &focus {
            trace.focus(focus);
        }
        let metadata = |i: i64| {
            trace.record(
                Node::Controller,
                EventKind::MetadataApplied,
                Subject::None,
                [i, 0, 0, 0],
            )
        };
        (0..n).for_each(metadata);
        for (base, epoch) in [(0, 0), (4, 0), (4, 1)] {
            trace.record(
                Node::Broker(epoch as i32),
                EventKind::Append,
                Subject::Partition("t", 0),
                [base, 4, epoch, 7],
            );
        }
        (100..100 + n).for_each(metadata);
        trace.summary(8)
    }

    #[test]
    fn a_record_focus_centres_on_the_last_append_holding_the_offset_and_changes_no_hash() {
        let plain = run_with(None, 40);
        let focus = TraceFocus::Record {
            topic: "t".to_string(),
            partition: 0,
            offset: 5,
        };
        let focused = run_with(Some(focus), 40);
        assert_eq!(focused.hash, plain.hash);
        assert_eq!(focused.excerpt, plain.excerpt);
        assert_eq!(plain.focus, None);
        let excerpt = focused.focus.expect("the offset was appended");
        assert_eq!(excerpt.hit, FOCUS_BEFORE);
        assert_eq!(excerpt.lines.len(), FOCUS_BEFORE + 1 + FOCUS_AFTER);
        let hit = &excerpt.lines[excerpt.hit];
        assert!(
            hit.contains("broker-1 append t-0 base_offset=4 records=4 leader_epoch=1"),
            "{hit}"
        );
        assert!(excerpt.lines[excerpt.hit - 1].contains("leader_epoch=0"));
        assert!(excerpt.lines[excerpt.hit + 1].contains("epoch=100"));
        let elsewhere = TraceFocus::Record {
            topic: "t".to_string(),
            partition: 1,
            offset: 5,
        };
        assert_eq!(run_with(Some(elsewhere), 40).focus, None);
    }

    #[test]
    fn a_time_focus_centres_on_the_first_event_at_or_after_the_instant() {
        // Outside a host every event is at the run loop's instant (0 here).
        let focused = run_with(Some(TraceFocus::Time { at_ms: 0 }), 20);
        let excerpt = focused.focus.expect("an event at 0 ms");
        assert_eq!(excerpt.hit, 0, "nothing before the first event");
        assert!(excerpt.lines[0].contains("metadata epoch=0"));
        assert_eq!(excerpt.lines.len(), 1 + FOCUS_AFTER);
        assert_eq!(run_with(Some(TraceFocus::Time { at_ms: 1 }), 3).focus, None);
    }

    #[test]
    fn the_ring_keeps_only_the_most_recent_events_but_counts_all() {
        let trace = Trace::new(false);
        for i in 0..(TRACE_RING_EVENTS as i64 + 10) {
            trace.record(
                Node::Controller,
                EventKind::MetadataApplied,
                Subject::None,
                [i, 0, 0, 0],
            );
        }
        let summary = trace.summary(usize::MAX);
        assert_eq!(summary.events, TRACE_RING_EVENTS as u64 + 10);
        assert_eq!(summary.excerpt.len(), TRACE_RING_EVENTS);
        assert!(
            summary.excerpt[0].contains("epoch=10"),
            "{}",
            summary.excerpt[0]
        );
        assert_eq!(trace.summary(2).excerpt.len(), 2);
    }
}
