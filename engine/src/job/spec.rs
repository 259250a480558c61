//! The job file as written: TOML read with serde, unknown keys refused at
//! every level (a misspelt optional key would silently change the job).
//! [`super::Job`] validates it; the user reference is `docs/jobs.md`.
//!
//! ```toml
//! name = "order-revenue"
//!
//! [input]
//! topics = ["orders"]
//! format = "debezium-json"
//! key = "after.user_id"
//!
//! [event_time]
//! field = "after.created_at"
//! out_of_orderness_ms = 60000
//!
//! [window]
//! kind = "tumbling"
//! size_ms = 3600000
//!
//! [[aggregates]]
//! name = "order_count"
//! function = "count"
//!
//! [output]
//! topic = "order-revenue"
//! key_field = "user_id"
//! late_topic = "order-revenue-late"
//! dead_letter_topic = "order-revenue-dead-letter"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::aggregates::AggregateSpec;
use super::filter::FilterSpec;

/// The default checkpoint interval: 10 s.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 10_000;
/// The default restart budget: 30 s.
pub const RESTART_BUDGET_MS_DEFAULT: u64 = 30_000;
/// The default transaction timeout: Kafka's producer default
/// (`transaction.timeout.ms`), 60 s.
pub const TRANSACTION_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// The default name of the output key field.
pub const KEY_FIELD_DEFAULT: &str = "key";

/// A job file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name: its consumer group and transactional ids derive
    /// from it.
    pub name: String,
    pub input: InputSpec,
    pub event_time: EventTimeSpec,
    pub window: JobWindowSpec,
    #[serde(default)]
    pub filter: Option<FilterSpec>,
    #[serde(default)]
    pub aggregates: Vec<AggregateSpec>,
    pub output: OutputSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    #[serde(default)]
    pub delivery: DeliverySpec,
    #[serde(default)]
    pub on_bad_record: OnBadRecord,
}

/// `[input]`: what the job reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Co-partitioned topics: task `p` reads partition `p` of each.
    pub topics: Vec<String>,
    #[serde(default)]
    pub format: Format,
    /// The dotted path of the key field.
    pub key: String,
}

/// How a record's value is decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Format {
    /// A JSON object.
    #[default]
    #[serde(rename = "json")]
    Json,
    /// A Debezium change event (`before`, `after`, `op`, `ts_ms`, ...),
    /// with or without the JSON converter's `schema`/`payload` wrapper;
    /// field paths start inside the event (`after.user_id`).
    #[serde(rename = "debezium-json")]
    DebeziumJson,
}

/// `[event_time]`: where event time comes from, and the watermark.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// The dotted path of the event-time field (an integer).
    pub field: String,
    #[serde(default)]
    pub unit: TimeUnit,
    /// `D`: how far behind the largest event time seen a record may be
    /// and still be on time.
    #[serde(default)]
    pub out_of_orderness_ms: i64,
    /// Processing time without records after which an input partition is
    /// idle (absent: inputs never go idle).
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

/// The unit of the event-time field's integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    S,
    #[default]
    Ms,
    Us,
    Ns,
}

impl TimeUnit {
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::S => "s",
            TimeUnit::Ms => "ms",
            TimeUnit::Us => "us",
            TimeUnit::Ns => "ns",
        }
    }

    /// `value` in this unit as ms (rounded down); `None` if it overflows.
    pub fn to_ms(self, value: i64) -> Option<i64> {
        match self {
            TimeUnit::S => value.checked_mul(1_000),
            TimeUnit::Ms => Some(value),
            TimeUnit::Us => Some(value.div_euclid(1_000)),
            TimeUnit::Ns => Some(value.div_euclid(1_000_000)),
        }
    }
}

/// The window kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKindName {
    Tumbling,
    Sliding,
    Session,
}

/// `[window]`: the window and the allowed lateness. Which sizes a kind
/// takes is checked by [`super::Job`] (with the key's path in the error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobWindowSpec {
    pub kind: WindowKindName,
    /// Tumbling and sliding.
    #[serde(default)]
    pub size_ms: Option<i64>,
    /// Sliding.
    #[serde(default)]
    pub slide_ms: Option<i64>,
    /// Tumbling and sliding (default 0).
    #[serde(default)]
    pub offset_ms: Option<i64>,
    /// Session.
    #[serde(default)]
    pub gap_ms: Option<i64>,
    /// `L` (default 0).
    #[serde(default)]
    pub allowed_lateness_ms: i64,
}

impl JobWindowSpec {
    pub fn tumbling(size_ms: i64) -> Self {
        Self {
            kind: WindowKindName::Tumbling,
            size_ms: Some(size_ms),
            slide_ms: None,
            offset_ms: None,
            gap_ms: None,
            allowed_lateness_ms: 0,
        }
    }

    pub fn sliding(size_ms: i64, slide_ms: i64) -> Self {
        Self {
            kind: WindowKindName::Sliding,
            slide_ms: Some(slide_ms),
            ..Self::tumbling(size_ms)
        }
    }

    pub fn session(gap_ms: i64) -> Self {
        Self {
            kind: WindowKindName::Session,
            size_ms: None,
            gap_ms: Some(gap_ms),
            ..Self::tumbling(0)
        }
    }
}

/// `[output]`: where the job writes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// One record per firing.
    pub topic: String,
    /// The name of the key's field in an output record (default `key`).
    #[serde(default = "key_field_default")]
    pub key_field: String,
    /// Records all of whose windows were late, as they were read.
    pub late_topic: String,
    /// Bad records, as they were read, with the reason in a header;
    /// required unless `on_bad_record = "fail"`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

fn key_field_default() -> String {
    KEY_FIELD_DEFAULT.to_string()
}

/// `[checkpoint]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Processing time between checkpoints.
    #[serde(default = "checkpoint_interval_ms_default")]
    pub interval_ms: u64,
    /// Where snapshots go (default: the Kafka topic `<name>-checkpoints`).
    #[serde(default)]
    pub store: Option<StoreSpec>,
    /// How long a failed worker may take to come back and commit.
    #[serde(default = "restart_budget_ms_default")]
    pub restart_budget_ms: u64,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval_ms: CHECKPOINT_INTERVAL_MS_DEFAULT,
            store: None,
            restart_budget_ms: RESTART_BUDGET_MS_DEFAULT,
        }
    }
}

fn checkpoint_interval_ms_default() -> u64 {
    CHECKPOINT_INTERVAL_MS_DEFAULT
}

fn restart_budget_ms_default() -> u64 {
    RESTART_BUDGET_MS_DEFAULT
}

/// Where checkpoint snapshots are stored: `store = { dir = "/var/lib/x" }`,
/// `store = { kafka = "topic" }` or `store = "sim"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreSpec {
    /// A directory (one machine, or a shared filesystem).
    Dir(PathBuf),
    /// A compacted Kafka topic, written inside the worker's transactions.
    Kafka(String),
    /// The simulator's store.
    Sim,
}

/// `[delivery]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySpec {
    #[serde(default)]
    pub guarantee: Delivery,
    /// The producer's `transaction.timeout.ms` (exactly-once only).
    #[serde(default = "transaction_timeout_ms_default")]
    pub transaction_timeout_ms: u64,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        Self {
            guarantee: Delivery::default(),
            transaction_timeout_ms: TRANSACTION_TIMEOUT_MS_DEFAULT,
        }
    }
}

fn transaction_timeout_ms_default() -> u64 {
    TRANSACTION_TIMEOUT_MS_DEFAULT
}

/// The delivery guarantee of the job's outputs: the worker's own.
pub use crate::worker::Delivery;

/// What a bad record does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadRecord {
    /// It goes to the dead-letter topic and the job goes on.
    #[default]
    DeadLetter,
    /// The task stops with [`crate::Error::BadRecord`].
    Fail,
}
