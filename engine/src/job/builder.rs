//! The Rust API: the same [`Job`] built in code, validated the same way,
//! with process-window functions of your own registered by name.
//!
//! ```
//! use eddyline_engine::job::{AggregateSpec, AggregateFunction, FieldType, Job, JobWindowSpec};
//!
//! let job = Job::builder("order-revenue")
//!     .input(["orders"])
//!     .key("user_id")
//!     .event_time("created_at")
//!     .window(JobWindowSpec::tumbling(3_600_000))
//!     .aggregate(AggregateSpec::count("order_count"))
//!     .aggregate(
//!         AggregateSpec::of("total_revenue", AggregateFunction::Sum, "amount")
//!             .typed(FieldType::Decimal),
//!     )
//!     .output("order-revenue")
//!     .key_field("user_id")
//!     .late_topic("order-revenue-late")
//!     .dead_letter_topic("order-revenue-dead-letter")
//!     .build()
//!     .unwrap();
//! assert_eq!(job.output_fields(), ["user_id", "window_start", "window_end", "order_count", "total_revenue", "kind"]);
//! ```

use super::aggregates::AggregateSpec;
use super::definition::Job;
use super::filter::FilterSpec;
use super::functions::{Functions, ProcessWindow};
use super::parse::parse_job_spec;
use super::spec::{
    CheckpointSpec, Delivery, DeliverySpec, EventTimeSpec, Format, InputSpec, JobSpec,
    JobWindowSpec, KEY_FIELD_DEFAULT, OnBadRecord, OutputSpec, StoreSpec, TimeUnit, WindowKindName,
};
use crate::error::{Error, Result};

/// Builds a [`Job`]; [`JobBuilder::build`] validates it as a job file is.
#[derive(Clone, Debug)]
pub struct JobBuilder {
    spec: JobSpec,
    functions: Functions,
    origin: String,
    /// The first registration that failed (reported by `build`).
    failed: Option<String>,
}

impl Job {
    /// A job named `name`, to be filled in; every setting not given has the
    /// default of the job file.
    pub fn builder(name: &str) -> JobBuilder {
        JobBuilder {
            spec: empty_spec(name),
            functions: Functions::builtin(),
            origin: format!("job {name:?} (Rust API)"),
            failed: None,
        }
    }
}

fn empty_spec(name: &str) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        input: InputSpec {
            topics: Vec::new(),
            format: Format::default(),
            key: String::new(),
        },
        event_time: EventTimeSpec {
            field: String::new(),
            unit: TimeUnit::default(),
            out_of_orderness_ms: 0,
            idle_timeout_ms: None,
        },
        window: JobWindowSpec {
            kind: WindowKindName::Tumbling,
            size_ms: None,
            slide_ms: None,
            offset_ms: None,
            gap_ms: None,
            allowed_lateness_ms: 0,
        },
        filter: None,
        aggregates: Vec::new(),
        output: OutputSpec {
            topic: String::new(),
            key_field: KEY_FIELD_DEFAULT.to_string(),
            late_topic: String::new(),
            dead_letter_topic: None,
        },
        checkpoint: CheckpointSpec::default(),
        delivery: DeliverySpec::default(),
        on_bad_record: OnBadRecord::default(),
    }
}

impl JobBuilder {
    /// A job file's text as the starting point (to name process-window
    /// functions registered with [`Self::process_window`]).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        Ok(Self {
            spec: parse_job_spec(text, origin)?,
            functions: Functions::builtin(),
            origin: origin.to_string(),
            failed: None,
        })
    }

    /// A job file as the starting point.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::Invalid(format!("cannot read {origin}: {error}")))?;
        Self::from_toml_str(&text, &origin)
    }

    /// The definition so far.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// The co-partitioned input topics.
    pub fn input<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.spec.input.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    pub fn format(mut self, format: Format) -> Self {
        self.spec.input.format = format;
        self
    }

    /// The dotted path of the key field.
    pub fn key(mut self, path: &str) -> Self {
        self.spec.input.key = path.to_string();
        self
    }

    /// The dotted path of the event-time field.
    pub fn event_time(mut self, path: &str) -> Self {
        self.spec.event_time.field = path.to_string();
        self
    }

    pub fn time_unit(mut self, unit: TimeUnit) -> Self {
        self.spec.event_time.unit = unit;
        self
    }

    pub fn out_of_orderness_ms(mut self, out_of_orderness_ms: i64) -> Self {
        self.spec.event_time.out_of_orderness_ms = out_of_orderness_ms;
        self
    }

    pub fn idle_timeout_ms(mut self, idle_timeout_ms: u64) -> Self {
        self.spec.event_time.idle_timeout_ms = Some(idle_timeout_ms);
        self
    }

    /// The window (keeps the allowed lateness already set).
    pub fn window(mut self, window: JobWindowSpec) -> Self {
        let allowed_lateness_ms = self.spec.window.allowed_lateness_ms;
        self.spec.window = JobWindowSpec {
            allowed_lateness_ms,
            ..window
        };
        self
    }

    pub fn allowed_lateness_ms(mut self, allowed_lateness_ms: i64) -> Self {
        self.spec.window.allowed_lateness_ms = allowed_lateness_ms;
        self
    }

    pub fn filter(mut self, filter: FilterSpec) -> Self {
        self.spec.filter = Some(filter);
        self
    }

    /// Adds an aggregate (output fields keep the order of the calls).
    pub fn aggregate(mut self, aggregate: AggregateSpec) -> Self {
        self.spec.aggregates.push(aggregate);
        self
    }

    /// The output topic.
    pub fn output(mut self, topic: &str) -> Self {
        self.spec.output.topic = topic.to_string();
        self
    }

    pub fn key_field(mut self, name: &str) -> Self {
        self.spec.output.key_field = name.to_string();
        self
    }

    pub fn late_topic(mut self, topic: &str) -> Self {
        self.spec.output.late_topic = topic.to_string();
        self
    }

    pub fn dead_letter_topic(mut self, topic: &str) -> Self {
        self.spec.output.dead_letter_topic = Some(topic.to_string());
        self
    }

    pub fn checkpoint_interval_ms(mut self, interval_ms: u64) -> Self {
        self.spec.checkpoint.interval_ms = interval_ms;
        self
    }

    pub fn checkpoint_store(mut self, store: StoreSpec) -> Self {
        self.spec.checkpoint.store = Some(store);
        self
    }

    pub fn restart_budget_ms(mut self, restart_budget_ms: u64) -> Self {
        self.spec.checkpoint.restart_budget_ms = restart_budget_ms;
        self
    }

    pub fn delivery(mut self, guarantee: Delivery) -> Self {
        self.spec.delivery.guarantee = guarantee;
        self
    }

    pub fn transaction_timeout_ms(mut self, transaction_timeout_ms: u64) -> Self {
        self.spec.delivery.transaction_timeout_ms = transaction_timeout_ms;
        self
    }

    pub fn on_bad_record(mut self, on_bad_record: OnBadRecord) -> Self {
        self.spec.on_bad_record = on_bad_record;
        self
    }

    /// Registers a process-window function that aggregates may name
    /// (`AggregateSpec::process(name)`, or `process = "name"` in the file).
    pub fn process_window(mut self, name: &str, function: ProcessWindow) -> Self {
        if let Err(error) = self.functions.register(name, function) {
            self.failed.get_or_insert(error.to_string());
        }
        self
    }

    /// Validates the job.
    pub fn build(self) -> Result<Job> {
        if let Some(reason) = self.failed {
            return Err(Error::Invalid(format!("{}: {reason}", self.origin)));
        }
        Job::from_spec(self.spec, &self.functions, &self.origin)
    }
}
