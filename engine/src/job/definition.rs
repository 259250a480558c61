//! [`Job`]: a validated job definition, from a TOML file or the Rust API
//! (both go through [`Job::from_spec`]). Every problem is one line naming
//! the file (or the builder) and the TOML path of the key at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::worker::WorkerConfig;

use super::aggregates::{AggregatePlan, JobAggregator};
use super::decode::{Decoded, Decoder};
use super::encode::Outputs;
use super::filter::Filter;
use super::functions::Functions;
use super::parse::parse_job_spec;
use super::path::FieldPath;
use super::problem::Problem;
use super::spec::{
    Delivery, Format, JobSpec, JobWindowSpec, OnBadRecord, StoreSpec, WindowKindName,
};
use crate::error::{Error, Result};
use crate::transport::Message;
use crate::watermark::WatermarkConfig;
use crate::window::{WindowConfig, WindowKind};
use crate::worker::check_transaction_timeout;

/// The output fields every firing has besides the aggregates.
const FIRING_FIELDS: [&str; 3] = ["window_start", "window_end", "kind"];

/// A validated job. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Job {
    inner: Arc<Definition>,
}

#[derive(Debug)]
pub(super) struct Definition {
    pub(super) spec: JobSpec,
    pub(super) decoder: Decoder,
    pub(super) window: WindowConfig,
    pub(super) watermarks: WatermarkConfig,
    pub(super) aggregator: JobAggregator,
    pub(super) outputs: Outputs,
    pub(super) store: StoreSpec,
    /// Of the window, watermark and aggregate configuration and the input
    /// topics: a snapshot carries it, and a job with another refuses it.
    pub(super) fingerprint: u64,
}

impl Job {
    /// Reads and validates a job file (built-in process-window functions
    /// only: see [`super::JobBuilder`] for others).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Job> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|error| Error::Invalid(format!("cannot read {origin}: {error}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Invalid(format!("{origin}: not valid UTF-8")))?;
        Job::from_toml_str(&text, &origin)
    }

    /// Parses and validates a job file's text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Job> {
        Job::from_spec(parse_job_spec(text, origin)?, &Functions::builtin(), origin)
    }

    /// Validates a job definition against the process-window `functions`
    /// it may name.
    pub fn from_spec(spec: JobSpec, functions: &Functions, origin: &str) -> Result<Job> {
        let definition = validate(spec, functions).map_err(|problem| problem.into_error(origin))?;
        Ok(Job {
            inner: Arc::new(definition),
        })
    }

    pub(super) fn definition(&self) -> &Definition {
        &self.inner
    }

    /// The definition as written (defaults filled in by the parser).
    pub fn spec(&self) -> &JobSpec {
        &self.inner.spec
    }

    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    pub fn input_topics(&self) -> &[String] {
        &self.inner.spec.input.topics
    }

    pub fn format(&self) -> Format {
        self.inner.spec.input.format
    }

    pub fn window_config(&self) -> WindowConfig {
        self.inner.window
    }

    pub fn watermark_config(&self) -> WatermarkConfig {
        self.inner.watermarks
    }

    pub fn output_topic(&self) -> &str {
        &self.inner.outputs.topic
    }

    pub fn late_topic(&self) -> &str {
        &self.inner.outputs.late_topic
    }

    /// `None` only with `on_bad_record = "fail"` and no topic given.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        self.inner.outputs.dead_letter_topic.as_deref()
    }

    /// The field names of an output record, in order.
    pub fn output_fields(&self) -> Vec<&str> {
        let outputs = &self.inner.outputs;
        let mut fields = vec![outputs.key_field.as_str(), "window_start", "window_end"];
        fields.extend(outputs.fields.iter().map(String::as_str));
        fields.push("kind");
        fields
    }

    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.inner.spec.checkpoint.interval_ms)
    }

    pub fn checkpoint_store(&self) -> &StoreSpec {
        &self.inner.store
    }

    pub fn restart_budget(&self) -> Duration {
        Duration::from_millis(self.inner.spec.checkpoint.restart_budget_ms)
    }

    pub fn delivery(&self) -> Delivery {
        self.inner.spec.delivery.guarantee
    }

    pub fn transaction_timeout_ms(&self) -> u64 {
        self.inner.spec.delivery.transaction_timeout_ms
    }

    /// The worker settings this job asks for: delivery, checkpoint
    /// interval, restart budget and transaction timeout.
    pub fn worker_config(&self, worker_id: &str, incarnation: u64) -> WorkerConfig {
        let mut config = WorkerConfig::new(worker_id, incarnation, self.delivery());
        config.checkpoint_interval = self.checkpoint_interval();
        config.restart_budget = self.restart_budget();
        config.transaction_timeout = Duration::from_millis(self.transaction_timeout_ms());
        config
    }

    pub fn on_bad_record(&self) -> OnBadRecord {
        self.inner.spec.on_bad_record
    }

    /// What the job makes of `message` (decode, filter, key, time and
    /// aggregate fields), without running it.
    pub fn decode(&self, message: &Message) -> Decoded {
        self.inner.decoder.decode(message)
    }

    /// The job's aggregates, folded together (value-level code: a
    /// reference model may fold a window's records with it).
    pub fn aggregator(&self) -> &JobAggregator {
        &self.inner.aggregator
    }

    /// How the job's records are encoded and where they go.
    pub fn outputs(&self) -> &Outputs {
        &self.inner.outputs
    }

    /// The snapshot fingerprint (see [`Definition::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }
}

fn validate(spec: JobSpec, functions: &Functions) -> Result<Definition, Problem> {
    check_name(&spec.name, "name")?;
    let inputs = &spec.input.topics;
    if inputs.is_empty() {
        return Err(Problem::new(
            "input.topics",
            "a job reads at least one topic",
        ));
    }
    let mut topics: Vec<(String, String)> = Vec::new();
    for (index, topic) in inputs.iter().enumerate() {
        claim_topic(&mut topics, topic, &format!("input.topics[{index}]"))?;
    }
    let watermarks = watermark_config(&spec)?;
    let window = WindowConfig::new(window_kind(&spec.window)?, spec.window.allowed_lateness_ms)
        .map_err(|error| Problem::new("window.allowed_lateness_ms", error.to_string()))?;
    let filter = spec
        .filter
        .as_ref()
        .map(|filter| Filter::compile(filter, "filter"))
        .transpose()?;
    let plan = AggregatePlan::compile(&spec.aggregates, functions)?;
    let outputs = outputs(&spec, &plan, &mut topics)?;
    let store = store(&spec, &mut topics)?;
    check_delivery(&spec)?;
    let decoder = Decoder {
        format: spec.input.format,
        key: field_path(&spec.input.key, "input.key")?,
        time: field_path(&spec.event_time.field, "event_time.field")?,
        unit: spec.event_time.unit,
        filter,
        slots: plan.slots.clone(),
    };
    let fingerprint = fingerprint(&window, &watermarks, inputs, &plan.canonical);
    Ok(Definition {
        decoder,
        window,
        watermarks,
        aggregator: plan.aggregator,
        outputs,
        store,
        fingerprint,
        spec,
    })
}

fn field_path(text: &str, at: &str) -> Result<FieldPath, Problem> {
    FieldPath::parse(text).map_err(|message| Problem::new(at, message))
}

/// Kafka's rule for topic names (`org.apache.kafka.common.internals.Topic
/// .validate`): 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`. A job
/// name follows it too (shorter, so that `<name>-checkpoints` is a topic).
fn check_name(name: &str, at: &str) -> Result<(), Problem> {
    check_chars(name, 200, at, "a job name")
}

fn check_topic(topic: &str, at: &str) -> Result<(), Problem> {
    check_chars(topic, 249, at, "a topic name")
}

fn check_chars(text: &str, len_max: usize, at: &str, what: &str) -> Result<(), Problem> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() || text.len() > len_max || text == "." || text == ".." {
        return Err(Problem::new(
            at,
            format!("{what} is 1 to {len_max} characters, not `.` or `..` (got {text:?})"),
        ));
    }
    if let Some(bad) = text.chars().find(|c| !legal(*c)) {
        return Err(Problem::new(
            at,
            format!(
                "{what} has only ASCII letters, digits, `.`, `_` and `-` ({text:?} has {bad:?})"
            ),
        ));
    }
    Ok(())
}

/// Registers `topic` (found at `at`) as used; a topic used twice (an
/// output written to an input, two outputs on one topic) is refused.
fn claim_topic(claimed: &mut Vec<(String, String)>, topic: &str, at: &str) -> Result<(), Problem> {
    check_topic(topic, at)?;
    if let Some((_, first)) = claimed.iter().find(|(name, _)| name == topic) {
        return Err(Problem::new(
            at,
            format!(
                "topic {topic:?} is already used by {first}: every input and output topic of a job is distinct"
            ),
        ));
    }
    claimed.push((topic.to_string(), at.to_string()));
    Ok(())
}

fn watermark_config(spec: &JobSpec) -> Result<WatermarkConfig, Problem> {
    let event_time = &spec.event_time;
    if event_time.out_of_orderness_ms < 0 {
        return Err(Problem::new(
            "event_time.out_of_orderness_ms",
            format!("must be >= 0 ms, got {}", event_time.out_of_orderness_ms),
        ));
    }
    if event_time.idle_timeout_ms == Some(0) {
        return Err(Problem::new(
            "event_time.idle_timeout_ms",
            "must be > 0 ms (leave it out: inputs never go idle)",
        ));
    }
    WatermarkConfig::new(
        event_time.out_of_orderness_ms,
        event_time.idle_timeout_ms.map(Duration::from_millis),
    )
    .map_err(|error| Problem::new("event_time", error.to_string()))
}

/// The window kind; each kind's sizes are required, others refused.
fn window_kind(window: &JobWindowSpec) -> Result<WindowKind, Problem> {
    let (kind, needs, takes): (&str, &[&str], &[&str]) = match window.kind {
        WindowKindName::Tumbling => ("tumbling", &["size_ms"], &["size_ms", "offset_ms"]),
        WindowKindName::Sliding => (
            "sliding",
            &["size_ms", "slide_ms"],
            &["size_ms", "slide_ms", "offset_ms"],
        ),
        WindowKindName::Session => ("session", &["gap_ms"], &["gap_ms"]),
    };
    let given = [
        ("size_ms", window.size_ms),
        ("slide_ms", window.slide_ms),
        ("offset_ms", window.offset_ms),
        ("gap_ms", window.gap_ms),
    ];
    for (key, value) in given {
        let at = format!("window.{key}");
        match value {
            None if needs.contains(&key) => {
                return Err(Problem::new(at, format!("a {kind} window needs `{key}`")));
            }
            Some(_) if !takes.contains(&key) => {
                return Err(Problem::new(
                    at,
                    format!("a {kind} window takes no `{key}`"),
                ));
            }
            Some(ms) if key != "offset_ms" && ms <= 0 => {
                return Err(Problem::new(at, format!("must be > 0 ms, got {ms}")));
            }
            _ => {}
        }
    }
    let offset_ms = window.offset_ms.unwrap_or(0);
    let size = || window.size_ms.expect("checked above");
    match window.kind {
        WindowKindName::Tumbling => WindowKind::tumbling(size(), offset_ms),
        WindowKindName::Sliding => {
            WindowKind::sliding(size(), window.slide_ms.expect("checked above"), offset_ms)
        }
        WindowKindName::Session => WindowKind::session(window.gap_ms.expect("checked above")),
    }
    .map_err(|error| Problem::new("window", error.to_string()))
}

fn outputs(
    spec: &JobSpec,
    plan: &AggregatePlan,
    topics: &mut Vec<(String, String)>,
) -> Result<Outputs, Problem> {
    let output = &spec.output;
    claim_topic(topics, &output.topic, "output.topic")?;
    claim_topic(topics, &output.late_topic, "output.late_topic")?;
    match &output.dead_letter_topic {
        Some(topic) => claim_topic(topics, topic, "output.dead_letter_topic")?,
        None if spec.on_bad_record == OnBadRecord::DeadLetter => {
            return Err(Problem::new(
                "output.dead_letter_topic",
                "missing: bad records go there (or set on_bad_record = \"fail\")",
            ));
        }
        None => {}
    }
    if output.key_field.is_empty() {
        return Err(Problem::new(
            "output.key_field",
            "the key's field name is not empty",
        ));
    }
    let mut names: Vec<&str> = vec![output.key_field.as_str()];
    names.extend(FIRING_FIELDS);
    for (field, aggregate) in plan.output_fields.iter().zip(&plan.output_origins) {
        let at = format!("aggregates[{aggregate}]");
        if field.is_empty() {
            return Err(Problem::new(at, "an output field name is not empty"));
        }
        if names.contains(&field.as_str()) {
            return Err(Problem::new(
                at,
                format!(
                    "output field {field:?} is already a field of the output record (the key field, window_start, window_end, kind, or an earlier aggregate)"
                ),
            ));
        }
        names.push(field);
    }
    Ok(Outputs {
        topic: output.topic.clone(),
        key_field: output.key_field.clone(),
        late_topic: output.late_topic.clone(),
        dead_letter_topic: output.dead_letter_topic.clone(),
        fields: plan.output_fields.clone(),
    })
}

fn store(spec: &JobSpec, topics: &mut Vec<(String, String)>) -> Result<StoreSpec, Problem> {
    let checkpoint = &spec.checkpoint;
    if checkpoint.interval_ms == 0 {
        return Err(Problem::new("checkpoint.interval_ms", "must be > 0 ms"));
    }
    let store = checkpoint
        .store
        .clone()
        .unwrap_or_else(|| StoreSpec::Kafka(format!("{}-checkpoints", spec.name)));
    match &store {
        StoreSpec::Kafka(topic) => claim_topic(topics, topic, "checkpoint.store.kafka")?,
        StoreSpec::Dir(dir) if dir == &PathBuf::new() => {
            return Err(Problem::new(
                "checkpoint.store.dir",
                "the directory is not empty",
            ));
        }
        StoreSpec::Dir(_) | StoreSpec::Sim => {}
    }
    Ok(store)
}

fn check_delivery(spec: &JobSpec) -> Result<(), Problem> {
    let delivery = &spec.delivery;
    if delivery.guarantee != Delivery::ExactlyOnce {
        return Ok(());
    }
    check_transaction_timeout(
        delivery.transaction_timeout_ms,
        spec.checkpoint.interval_ms,
        spec.checkpoint.restart_budget_ms,
    )
    .map_err(|error| Problem::new("delivery.transaction_timeout_ms", error.to_string()))
}

/// FNV-1a (64 bits) over the postcard encoding of what a snapshot's
/// meaning depends on: stable across runs, builds and machines.
fn fingerprint(
    window: &WindowConfig,
    watermarks: &WatermarkConfig,
    inputs: &[String],
    aggregates: &str,
) -> u64 {
    let bytes = postcard::to_allocvec(&(window, watermarks, inputs, aggregates))
        .expect("configurations serialize with postcard");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
