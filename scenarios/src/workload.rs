//! Workload generators: the input records of a run, from a seed.
//!
//! [`generate`] writes `records` input records of one [`WorkloadKind`]:
//! key, value bytes, the partition, event time and send time, and what the
//! record is meant to be ([`RecordClass`]). Event times are sized to the
//! job: the event clock advances by a fraction of the job's window, and a
//! record meant to be out of order, late or beyond the allowed lateness is
//! placed against the watermark its partition's task will have when it
//! reads the record (the largest event time so far in that partition, less
//! the job's out-of-orderness bound `D`, less 1 ms), so that it is what its
//! class says. The generator picks each record's partition itself (a key
//! always goes to the same partition), which is what makes that exact.
//!
//! Prefix-stable: every record is drawn from one generator in order, and
//! nothing drawn depends on how many records there are, so the first `N`
//! records for a seed are the same whatever `records` is (shrinking cuts a
//! workload by lowering `records`).

use std::collections::BTreeMap;

use eddyline_engine::job::Job;
use eddyline_engine::window::WindowKind;
use eddyline_sim::{DetRng, Seed};
use serde_json::{Value, json};

use crate::scenario::{WorkloadKind, WorkloadSpec};

/// The name of the workload's child seed.
pub const SEED_NAME: &str = "workload";

/// Idle partitions get no records while sending is in this stretch (ms
/// after the first record).
pub const IDLE_STRETCH_MS: (u64, u64) = (2_000, 10_000);

/// Where the event clock starts: 2023-11-14 22:13:20 UTC.
const EPOCH_MS: i64 = 1_700_000_000_000;

/// A user-wide pause in the clicks: past the 30-minute session gap.
const CLICK_PAUSE_MS: (i64, i64) = (31 * 60_000, 41 * 60_000);
const CLICK_PAUSE_CHANCE: f64 = 0.03;
const SESSION_GAP_MS: i64 = 30 * 60_000;

/// Snapshot reads (`op = "r"`) come first in an orders workload.
const ORDER_SNAPSHOT_RECORDS: usize = 20;

/// What a record is meant to be, against its partition's watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordClass {
    /// At or after the largest event time of its partition so far.
    InOrder,
    /// Earlier than that, but within `D`: its windows have not fired.
    OutOfOrder,
    /// Its last window fired already, but within the allowed lateness `L`:
    /// it updates the window (a late update).
    Late,
    /// Its last window is past the allowed lateness: the late output.
    BeyondLateness,
    /// Does not decode: the dead letters.
    Undecodable,
    /// Decodes but the job's filter refuses it (orders that are not
    /// completed creates or snapshot reads); it does not move the watermark.
    Filtered,
    /// Read from a recording: what it is to the job was not planned.
    Recorded,
}

/// One input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub partition: i32,
    /// The event time (also the Kafka record timestamp).
    pub event_time_ms: i64,
    /// When the feeder sends it, ms after the first record.
    pub send_ms: u64,
    pub class: RecordClass,
}

impl InputRecord {
    /// The record as it is written to `topic`: the simulator's feeder and
    /// `eddy load` both send exactly this, so a seed's input is the same
    /// records, keys, partitions and timestamps on either cluster.
    pub fn producer_record(&self, topic: &str) -> eddyline_engine::transport::ProducerRecord {
        eddyline_engine::transport::ProducerRecord {
            topic: topic.to_string(),
            partition: Some(self.partition),
            key: Some(self.key.clone().into_bytes()),
            value: Some(self.value.clone()),
            timestamp_ms: Some(self.event_time_ms),
            headers: Vec::new(),
        }
    }
}

/// The job's event-time settings a workload is sized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTimes {
    /// `D`.
    pub out_of_orderness_ms: i64,
    /// `L`.
    pub allowed_lateness_ms: i64,
    pub window: WindowKind,
    /// How far the event clock advances per record.
    pub step_ms: i64,
}

impl EventTimes {
    pub fn of_job(job: &Job) -> EventTimes {
        let window = job.window_config();
        let step_ms = match window.kind {
            WindowKind::Tumbling { size_ms, .. } => size_ms / 25,
            WindowKind::Sliding { slide_ms, .. } => slide_ms / 5,
            WindowKind::Session { gap_ms } => gap_ms / 90,
        };
        EventTimes {
            out_of_orderness_ms: job.watermark_config().out_of_orderness_ms,
            allowed_lateness_ms: window.allowed_lateness_ms,
            window: window.kind,
            step_ms: step_ms.max(1),
        }
    }

    /// The watermark of a task whose largest event time is `max_ts`.
    pub fn watermark(&self, max_ts: i64) -> i64 {
        max_ts - self.out_of_orderness_ms - 1
    }

    /// The end of the last window holding `ts` (a session: `ts + gap`).
    pub fn last_window_end(&self, ts: i64) -> i64 {
        match self.window {
            WindowKind::Tumbling { size_ms, offset_ms } => {
                (ts - offset_ms).div_euclid(size_ms) * size_ms + offset_ms + size_ms
            }
            WindowKind::Sliding {
                size_ms,
                slide_ms,
                offset_ms,
            } => (ts - offset_ms).div_euclid(slide_ms) * slide_ms + offset_ms + size_ms,
            WindowKind::Session { gap_ms } => ts + gap_ms,
        }
    }

    /// Whether a record at `ts` read at watermark `wm` is late (its last
    /// window fired) and, if so, whether beyond the allowed lateness.
    pub fn lateness(&self, ts: i64, wm: i64) -> (bool, bool) {
        let max_timestamp = self.last_window_end(ts) - 1;
        (
            max_timestamp <= wm,
            max_timestamp + self.allowed_lateness_ms <= wm,
        )
    }

    /// The windows' period: how far apart consecutive window ends are.
    fn period_ms(&self) -> i64 {
        match self.window {
            WindowKind::Tumbling { size_ms, .. } => size_ms,
            WindowKind::Sliding { slide_ms, .. } => slide_ms,
            WindowKind::Session { .. } => 1,
        }
    }

    /// The largest window end at or below `at` (a session: `at` itself).
    fn end_at_or_below(&self, at: i64) -> i64 {
        match self.window {
            WindowKind::Session { .. } => at,
            _ => {
                let period = self.period_ms();
                let end = self.last_window_end(at);
                if end <= at {
                    end
                } else {
                    end - period * ((end - at + period - 1) / period)
                }
            }
        }
    }
}

/// The records of a workload, in send order.
pub fn generate(
    spec: &WorkloadSpec,
    kind: WorkloadKind,
    job: &Job,
    seed: Seed,
) -> Vec<InputRecord> {
    let mut generator = Generator::new(spec, kind, EventTimes::of_job(job), seed);
    (0..spec.records)
        .map(|index| generator.next(index))
        .collect()
}

/// A click user's state: their last click and session.
#[derive(Default)]
struct User {
    last_ts: Option<i64>,
    session: u32,
    in_checkout: bool,
}

/// A row of the orders table.
#[derive(Clone)]
struct Order {
    id: u64,
    user: String,
    cents: u64,
    created_at: i64,
    status: &'static str,
}

/// The generator's state between records.
struct Generator<'a> {
    spec: &'a WorkloadSpec,
    kind: WorkloadKind,
    times: EventTimes,
    rng: DetRng,
    /// Cumulative key weights (Zipf-like), for the key draw.
    key_weights: Vec<f64>,
    clock_ms: i64,
    /// When the next record is sent, in simulated microseconds: rates
    /// above 1,000 records per second put several records in one
    /// millisecond, and rates whose interval is no whole number of
    /// milliseconds keep their average.
    send_us: u64,
    burst_left: usize,
    /// The largest event time so far per partition (records that move the
    /// watermark only).
    max_ts: BTreeMap<i32, i64>,
    /// Late records asked for when none could be placed yet.
    owed_late: u64,
    users: BTreeMap<String, User>,
    orders: Vec<Order>,
    next_order: u64,
}

/// What the value of a record will hold, before its event time is placed.
enum Shape {
    Event,
    Undecodable,
    /// An order change the filter refuses, at this event time.
    Filtered(i64),
}

impl<'a> Generator<'a> {
    fn new(spec: &'a WorkloadSpec, kind: WorkloadKind, times: EventTimes, seed: Seed) -> Self {
        let mut total = 0.0;
        let key_weights = (0..spec.keys)
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(spec.key_skew);
                total
            })
            .collect();
        Generator {
            spec,
            kind,
            times,
            rng: seed.derive(SEED_NAME).rng(),
            key_weights,
            clock_ms: EPOCH_MS,
            send_us: 0,
            burst_left: 0,
            max_ts: BTreeMap::new(),
            owed_late: 0,
            users: BTreeMap::new(),
            orders: Vec::new(),
            next_order: 1,
        }
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn next(&mut self, index: usize) -> InputRecord {
        self.advance_send_time();
        self.advance_clock();
        let key_index = self.draw_key();
        let partition = (key_index % self.spec.partitions as u64) as i32;
        let key = format!("u{key_index}");
        let wanted = self.draw_class();
        let shape = self.shape(index, wanted);
        let (class, ts) = match shape {
            Shape::Undecodable => (RecordClass::Undecodable, self.clock_ms),
            Shape::Filtered(ts) => (RecordClass::Filtered, ts),
            Shape::Event => self.place(partition, wanted),
        };
        if !matches!(class, RecordClass::Undecodable | RecordClass::Filtered) {
            let max = self.max_ts.entry(partition).or_insert(ts);
            *max = (*max).max(ts);
        }
        let value = match shape {
            Shape::Undecodable => self.undecodable_value(),
            _ => self.value(index, &key, ts, class),
        };
        InputRecord {
            key,
            value: value.into_bytes(),
            partition,
            event_time_ms: ts,
            send_ms: self.send_ms(),
            class,
        }
    }

    /// The simulated millisecond the next record is sent in.
    fn send_ms(&self) -> u64 {
        self.send_us / 1_000
    }

    /// Sends are `1 / rate_per_s` apart, but a burst's records go at once.
    fn advance_send_time(&mut self) {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return;
        }
        self.send_us += (1_000_000.0 / self.spec.rate_per_s).round().max(1.0) as u64;
        if self.rng.chance(self.spec.burst_chance) {
            self.burst_left = self.spec.burst_records.saturating_sub(1);
        }
    }

    fn advance_clock(&mut self) {
        self.clock_ms += self.times.step_ms;
        if self.kind == WorkloadKind::Clicks && self.rng.chance(CLICK_PAUSE_CHANCE) {
            self.clock_ms += self.rng.range_i64(CLICK_PAUSE_MS.0, CLICK_PAUSE_MS.1);
        }
    }

    /// A key by the skewed weights; during the idle stretch, keys of idle
    /// partitions are moved to the first busy one.
    fn draw_key(&mut self) -> u64 {
        let total = *self.key_weights.last().expect("at least one key");
        let point = self.unit() * total;
        let key = self.key_weights.partition_point(|&w| w <= point) as u64;
        let key = key.min(self.spec.keys - 1);
        let partitions = self.spec.partitions as u64;
        let idle = self.spec.idle_partitions as u64;
        let idle_now = (IDLE_STRETCH_MS.0..IDLE_STRETCH_MS.1).contains(&self.send_ms());
        if !idle_now || key % partitions >= idle {
            return key;
        }
        let moved = key + (idle - key % partitions);
        if moved < self.spec.keys {
            return moved;
        }
        (0..self.spec.keys)
            .find(|k| k % partitions >= idle)
            .unwrap_or(key)
    }

    fn draw_class(&mut self) -> RecordClass {
        let s = self.spec;
        let u = self.unit();
        let bounds = [
            (s.undecodable, RecordClass::Undecodable),
            (s.beyond_lateness, RecordClass::BeyondLateness),
            (s.late, RecordClass::Late),
            (s.out_of_order, RecordClass::OutOfOrder),
        ];
        let mut below = 0.0;
        for (fraction, class) in bounds {
            below += fraction;
            if u < below {
                return class;
            }
        }
        RecordClass::InOrder
    }

    /// Whether the record is an event to place, undecodable, or an order
    /// change the filter refuses.
    fn shape(&mut self, index: usize, wanted: RecordClass) -> Shape {
        if wanted == RecordClass::Undecodable {
            return Shape::Undecodable;
        }
        if self.kind != WorkloadKind::Orders {
            return Shape::Event;
        }
        self.order_shape(index)
    }

    /// Places the event time of a record meant to be `wanted` in
    /// `partition`; falls back to in order where that cannot be done yet
    /// (a late record is then owed to a later one).
    fn place(&mut self, partition: i32, wanted: RecordClass) -> (RecordClass, i64) {
        let Some(&max) = self.max_ts.get(&partition) else {
            if wanted == RecordClass::Late {
                self.owed_late += 1;
            }
            return (RecordClass::InOrder, self.clock_ms);
        };
        let wm = self.times.watermark(max);
        let placed = match wanted {
            RecordClass::OutOfOrder => self.out_of_order(max),
            RecordClass::BeyondLateness => self.beyond(wm),
            RecordClass::Late => {
                let placed = self.late(wm);
                if placed.is_none() {
                    self.owed_late += 1;
                }
                placed
            }
            _ if self.owed_late > 0 => {
                let placed = self.late(wm);
                if placed.is_some() {
                    self.owed_late -= 1;
                }
                placed
            }
            _ => None,
        };
        let class = if placed.is_some() && wanted == RecordClass::InOrder {
            RecordClass::Late
        } else {
            wanted
        };
        match placed {
            Some(ts) => (class, ts),
            None => (RecordClass::InOrder, self.clock_ms.max(max)),
        }
    }

    fn out_of_order(&mut self, max: i64) -> Option<i64> {
        let bound = self.times.out_of_orderness_ms;
        (bound > 0).then(|| max - self.rng.range_i64(1, bound + 1))
    }

    /// A time whose last window fired at `wm` but is within the lateness.
    fn late(&mut self, wm: i64) -> Option<i64> {
        let lateness = self.times.allowed_lateness_ms;
        if lateness == 0 {
            return None;
        }
        let ts = match self.times.window {
            WindowKind::Session { gap_ms } => wm - gap_ms + 1 - self.rng.range_i64(0, lateness),
            _ => {
                let end = self.times.end_at_or_below(wm + 1);
                let period = self.times.period_ms();
                end - self.rng.range_i64(1, period + 1)
            }
        };
        (self.times.lateness(ts, wm) == (true, false)).then_some(ts)
    }

    /// A time whose last window is past the allowed lateness at `wm`.
    fn beyond(&mut self, wm: i64) -> Option<i64> {
        let lateness = self.times.allowed_lateness_ms;
        let ts = match self.times.window {
            WindowKind::Session { gap_ms } => {
                wm - gap_ms - lateness - self.rng.range_i64(gap_ms, 3 * gap_ms)
            }
            _ => {
                let end = self.times.end_at_or_below(wm + 1 - lateness);
                let period = self.times.period_ms();
                end - self.rng.range_i64(1, period + 1)
            }
        };
        (self.times.lateness(ts, wm) == (true, true)).then_some(ts)
    }

    fn undecodable_value(&mut self) -> String {
        let broken = [
            "not json {",
            "{\"truncated\": ",
            "\u{1}\u{2}binary",
            "[1, 2",
        ];
        self.rng.choose(&broken).expect("non-empty").to_string()
    }

    fn value(&mut self, index: usize, key: &str, ts: i64, class: RecordClass) -> String {
        match self.kind {
            WorkloadKind::WindowStats => {
                json!({"key": key, "ts": ts, "value": self.rng.range_u64(1, 100)}).to_string()
            }
            WorkloadKind::Clicks => self.click(key, ts),
            WorkloadKind::Orders => self.order_event(index, key, ts, class),
        }
    }

    fn click(&mut self, user: &str, ts: i64) -> String {
        let pages = ["/", "/search", "/item/1", "/item/2", "/item/3", "/cart"];
        let referrers = [
            "https://www.google.com/",
            "https://news.example/",
            "https://mail.example/",
        ];
        let state = self.users.entry(user.to_string()).or_default();
        let new_session = state.last_ts.is_none_or(|last| ts - last > SESSION_GAP_MS);
        if new_session && state.last_ts.is_some() {
            state.session += 1;
            state.in_checkout = false;
        }
        state.last_ts = Some(state.last_ts.map_or(ts, |last| last.max(ts)));
        let session_id = format!("{user}-s{}", state.session);
        let page = if state.in_checkout {
            state.in_checkout = false;
            "/checkout/done".to_string()
        } else if self.rng.chance(0.1) {
            self.users.get_mut(user).expect("present").in_checkout = true;
            "/checkout".to_string()
        } else {
            self.rng.choose(&pages).expect("non-empty").to_string()
        };
        let referrer = if new_session && self.rng.chance(0.7) {
            Value::from(*self.rng.choose(&referrers).expect("non-empty"))
        } else {
            Value::Null
        };
        json!({
            "user_id": user,
            "session_id": session_id,
            "page_url": page,
            "timestamp_ms": ts,
            "referrer": referrer,
        })
        .to_string()
    }

    /// Snapshot reads first; then creates, updates and deletes. Only
    /// completed creates and reads pass the job's filter.
    fn order_shape(&mut self, index: usize) -> Shape {
        if index < ORDER_SNAPSHOT_RECORDS || self.orders.is_empty() {
            return self.order_status_shape();
        }
        let u = self.unit();
        if u < 0.3 {
            let at = self.rng.below(self.orders.len() as u64) as usize;
            Shape::Filtered(self.orders[at].created_at)
        } else {
            self.order_status_shape()
        }
    }

    /// A new row: completed (passes the filter) or pending (refused).
    fn order_status_shape(&mut self) -> Shape {
        if self.rng.chance(0.75) {
            Shape::Event
        } else {
            Shape::Filtered(self.clock_ms)
        }
    }

    fn order_event(&mut self, index: usize, user: &str, ts: i64, class: RecordClass) -> String {
        let changes_existing = class == RecordClass::Filtered
            && index >= ORDER_SNAPSHOT_RECORDS
            && self.orders.iter().any(|o| o.created_at == ts);
        let (op, before, after) = if changes_existing {
            self.order_change(ts)
        } else {
            let op = if index < ORDER_SNAPSHOT_RECORDS {
                "r"
            } else {
                "c"
            };
            let status = if class == RecordClass::Filtered {
                "pending"
            } else {
                "completed"
            };
            let order = Order {
                id: self.next_order,
                user: user.to_string(),
                cents: self.rng.range_u64(100, 50_000),
                created_at: ts,
                status,
            };
            self.next_order += 1;
            self.orders.push(order.clone());
            (op, Value::Null, order_row(&order))
        };
        let envelope = json!({
            "before": before,
            "after": after,
            "op": op,
            "ts_ms": self.clock_ms,
            "source": {"connector": "postgresql", "table": "orders"},
        });
        if self.rng.chance(0.5) {
            json!({"schema": {"type": "struct", "name": "orders.Envelope"}, "payload": envelope})
                .to_string()
        } else {
            envelope.to_string()
        }
    }

    /// An update (a status change) or a delete of the order created at `ts`.
    fn order_change(&mut self, ts: i64) -> (&'static str, Value, Value) {
        let at = self
            .orders
            .iter()
            .position(|o| o.created_at == ts)
            .expect("an order created then");
        let before = order_row(&self.orders[at]);
        if self.rng.chance(0.3) {
            self.orders.swap_remove(at);
            return ("d", before, Value::Null);
        }
        let order = &mut self.orders[at];
        order.status = if order.status == "pending" {
            "completed"
        } else {
            "shipped"
        };
        ("u", before, order_row(order))
    }
}

fn order_row(order: &Order) -> Value {
    json!({
        "id": order.id,
        "user_id": order.user,
        "status": order.status,
        "amount": format!("{}.{:02}", order.cents / 100, order.cents % 100),
        "created_at": order.created_at,
    })
}

/// A workload read from a recording.
pub struct RecordedWorkload {
    /// The recording's partition count (the input topic's).
    pub partitions: i32,
    /// Its records in send order, cut to `spec.records` if fewer.
    pub records: Vec<InputRecord>,
}

/// The records of a recording of the job's input topic as a workload: each
/// partition's records in offset order, the partitions interleaved by
/// event time (the partition whose next record is earliest goes first;
/// ties to the lower partition), sent at `spec.rate_per_s`, the first
/// `spec.records` of them. Keys must be UTF-8 (the feeder sends keys as
/// text) and present: a recording with a null or binary key is refused.
pub fn from_recording(
    path: &std::path::Path,
    spec: &WorkloadSpec,
    job: &Job,
) -> eddyline_engine::Result<RecordedWorkload> {
    use eddyline_engine::Error;
    let recording = eddyline_engine::recording::Recording::read(path)?;
    let topic = &job.input_topics()[0];
    if &recording.info.topic != topic {
        return Err(Error::Invalid(format!(
            "{}: a recording of topic {}, and job {} reads {topic}",
            path.display(),
            recording.info.topic,
            job.name()
        )));
    }
    let mut next: BTreeMap<i32, usize> = recording.partitions.keys().map(|p| (*p, 0)).collect();
    let mut records = Vec::with_capacity(recording.len().min(spec.records));
    let interval_ms = 1_000.0 / spec.rate_per_s;
    while records.len() < spec.records {
        let earliest = next
            .iter()
            .filter_map(|(partition, index)| {
                let message = recording.partitions[partition].get(*index)?;
                Some((message.timestamp_ms, *partition))
            })
            .min();
        let Some((_, partition)) = earliest else {
            break;
        };
        let index = next.get_mut(&partition).expect("a recorded partition");
        let message = &recording.partitions[&partition][*index];
        *index += 1;
        let key = message
            .key
            .as_deref()
            .and_then(|key| std::str::from_utf8(key).ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: record {}-{} has no UTF-8 key (a recorded workload sends keys as text)",
                    path.display(),
                    message.partition,
                    message.offset
                ))
            })?;
        records.push(InputRecord {
            key: key.to_string(),
            value: message.value.as_deref().unwrap_or_default().to_vec(),
            partition,
            event_time_ms: message.timestamp_ms,
            send_ms: (records.len() as f64 * interval_ms) as u64,
            class: RecordClass::Recorded,
        });
    }
    Ok(RecordedWorkload {
        partitions: recording.info.partition_count,
        records,
    })
}
