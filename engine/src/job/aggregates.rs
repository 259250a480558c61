//! A job's aggregates: named output fields, each a built-in over one field
//! (or the record count), or a named process-window function with several
//! output fields; all folded by one [`JobAggregator`] for the window core.
//!
//! ```toml
//! [[aggregates]]
//! name = "order_count"
//! function = "count"
//!
//! [[aggregates]]
//! name = "total_revenue"
//! function = "sum"
//! field = "after.amount"
//! type = "decimal"
//!
//! [[aggregates]]
//! process = "click-session-summary"
//! ```
//!
//! A field an aggregate reads is decoded with the aggregate's `type`
//! (default `integer`) before the record reaches the window: missing or of
//! another type, the record is bad; `null`, the aggregate skips it (as SQL
//! aggregates skip NULL): the record still counts for `count` and the
//! other aggregates. Sums and averages are exact (`i128` for integers,
//! exact decimal addition that refuses to round); overflow is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::aggregate::{
    Aggregator, Avg, AvgAcc, Count, DistinctCount, Element, FirstByTime, Input, LastByTime, Max,
    Min, Process, ProcessWindowFunction, Sum, SumValue, WindowContext,
};
use crate::error::{Error, Result};

use super::functions::{Functions, ProcessWindow};
use super::path::FieldPath;
use super::problem::{Problem, join};
use super::value::{FieldType, OutputValue, Row, Scalar, exact_decimal_add, snapshot_decimal};

/// A built-in aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    /// The number of records.
    Count,
    Sum,
    Min,
    Max,
    /// The mean: a float for integers (from an exact sum), an exact
    /// quotient rounded to 28 digits for decimals.
    Avg,
    DistinctCount,
    /// The value with the smallest event time (ties: the first to arrive).
    First,
    /// The value with the largest event time (ties: the last to arrive).
    Last,
}

impl AggregateFunction {
    fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
            AggregateFunction::Avg => "avg",
            AggregateFunction::DistinctCount => "distinct_count",
            AggregateFunction::First => "first",
            AggregateFunction::Last => "last",
        }
    }

    fn accepts(self, field_type: FieldType) -> bool {
        match self {
            AggregateFunction::Count => false,
            AggregateFunction::Sum | AggregateFunction::Avg => {
                matches!(field_type, FieldType::Integer | FieldType::Decimal)
            }
            AggregateFunction::Min | AggregateFunction::Max => field_type != FieldType::Boolean,
            AggregateFunction::DistinctCount
            | AggregateFunction::First
            | AggregateFunction::Last => true,
        }
    }
}

/// One entry of `[[aggregates]]`, as written: either a built-in (`name`,
/// `function`, `field`, `type`) or a process-window function (`process`,
/// optionally `inputs` mapping its input names to field paths).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub function: Option<AggregateFunction>,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default, rename = "type")]
    pub field_type: Option<FieldType>,
    #[serde(default)]
    pub process: Option<String>,
    #[serde(default)]
    pub inputs: Option<BTreeMap<String, String>>,
}

impl AggregateSpec {
    /// The record count, as output field `name`.
    pub fn count(name: &str) -> Self {
        Self {
            name: Some(name.to_string()),
            function: Some(AggregateFunction::Count),
            ..Self::default()
        }
    }

    /// `function` over `field` (read as an integer unless [`Self::typed`]).
    pub fn of(name: &str, function: AggregateFunction, field: &str) -> Self {
        Self {
            name: Some(name.to_string()),
            function: Some(function),
            field: Some(field.to_string()),
            ..Self::default()
        }
    }

    /// The named process-window function.
    pub fn process(function: &str) -> Self {
        Self {
            process: Some(function.to_string()),
            ..Self::default()
        }
    }

    pub fn typed(mut self, field_type: FieldType) -> Self {
        self.field_type = Some(field_type);
        self
    }

    /// Reads the process-window function's input `input` at `path`.
    pub fn input(mut self, input: &str, path: &str) -> Self {
        self.inputs
            .get_or_insert_with(BTreeMap::new)
            .insert(input.to_string(), path.to_string());
        self
    }
}

/// A field the decoder reads for the aggregates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub path: FieldPath,
    pub field_type: FieldType,
}

/// Slots [`JobValue`] holds inline: a job reading up to this many fields
/// decodes a record without an allocation for them.
pub const INLINE_SLOTS: usize = 4;

/// The window core's value of one record: the fields the aggregates read,
/// one per slot (`None`: the field is `null`). Serialized as a `Vec` of
/// them would be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobValue {
    pub slots: SmallVec<[Option<Scalar>; INLINE_SLOTS]>,
}

#[derive(Clone, Debug)]
enum Compiled {
    Count,
    Sum {
        slot: usize,
        decimal: bool,
    },
    Avg {
        slot: usize,
        decimal: bool,
    },
    Min {
        slot: usize,
    },
    Max {
        slot: usize,
    },
    DistinctCount {
        slot: usize,
    },
    First {
        slot: usize,
    },
    Last {
        slot: usize,
    },
    Process {
        name: String,
        slots: Range<usize>,
        function: ProcessWindow,
    },
}

/// The aggregates of a job, validated: the slots the decoder fills, the
/// output field names in order, and the aggregator.
#[derive(Clone, Debug)]
pub struct AggregatePlan {
    pub slots: Vec<Slot>,
    pub output_fields: Vec<String>,
    /// For each output field, the index of the aggregate that writes it.
    pub output_origins: Vec<usize>,
    /// A canonical text of the aggregates (functions, fields, types,
    /// outputs): part of the job's snapshot fingerprint.
    pub canonical: String,
    pub aggregator: JobAggregator,
}

impl AggregatePlan {
    /// Validates `specs` (at TOML path `aggregates`).
    pub fn compile(specs: &[AggregateSpec], functions: &Functions) -> Result<Self, Problem> {
        if specs.is_empty() {
            return Err(Problem::new(
                "aggregates",
                "a job needs at least one aggregate",
            ));
        }
        let mut plan = AggregatePlan {
            slots: Vec::new(),
            output_fields: Vec::new(),
            output_origins: Vec::new(),
            canonical: String::new(),
            aggregator: JobAggregator {
                aggregates: Vec::new(),
            },
        };
        for (index, spec) in specs.iter().enumerate() {
            let at = format!("aggregates[{index}]");
            let compiled = match &spec.process {
                Some(name) => plan.add_process(spec, name, functions, &at)?,
                None => plan.add_builtin(spec, &at)?,
            };
            plan.aggregator.aggregates.push(compiled);
            plan.output_origins.resize(plan.output_fields.len(), index);
        }
        Ok(plan)
    }

    fn add_builtin(&mut self, spec: &AggregateSpec, at: &str) -> Result<Compiled, Problem> {
        if spec.inputs.is_some() {
            return Err(Problem::new(
                join(at, "inputs"),
                "`inputs` belongs to a `process` aggregate",
            ));
        }
        let name = spec.name.as_deref().ok_or_else(|| {
            Problem::new(
                at,
                "an aggregate needs a `name` (its output field) and a `function`, or a `process`",
            )
        })?;
        let function = spec.function.ok_or_else(|| {
            Problem::new(at, "an aggregate needs a `function` (count, sum, min, max, avg, distinct_count, first, last) or a `process`")
        })?;
        self.output_fields.push(name.to_string());
        if function == AggregateFunction::Count {
            if spec.field.is_some() || spec.field_type.is_some() {
                return Err(Problem::new(
                    at,
                    "`count` counts records: it takes no `field` or `type`",
                ));
            }
            self.canonical.push_str(&format!("{name}=count;"));
            return Ok(Compiled::Count);
        }
        let field = spec
            .field
            .as_deref()
            .ok_or_else(|| Problem::new(at, format!("`{}` needs a `field`", function.name())))?;
        let path =
            FieldPath::parse(field).map_err(|message| Problem::new(join(at, "field"), message))?;
        let field_type = spec.field_type.unwrap_or(FieldType::Integer);
        if !function.accepts(field_type) {
            return Err(Problem::new(
                join(at, "type"),
                format!(
                    "`{}` does not take {} field",
                    function.name(),
                    field_type.with_article()
                ),
            ));
        }
        // Built-ins reading the same field with the same type (`min` and
        // `max` of one field) share its slot: the decoder reads it once.
        // Their reasons for a bad record are the same text, so the first
        // one found is unchanged.
        let slot = match self
            .slots
            .iter()
            .position(|slot| slot.path == path && slot.field_type == field_type)
        {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot { path, field_type });
                self.slots.len() - 1
            }
        };
        self.canonical.push_str(&format!(
            "{name}={}({field}:{field_type});",
            function.name()
        ));
        let decimal = field_type == FieldType::Decimal;
        Ok(match function {
            AggregateFunction::Count => unreachable!("handled above"),
            AggregateFunction::Sum => Compiled::Sum { slot, decimal },
            AggregateFunction::Avg => Compiled::Avg { slot, decimal },
            AggregateFunction::Min => Compiled::Min { slot },
            AggregateFunction::Max => Compiled::Max { slot },
            AggregateFunction::DistinctCount => Compiled::DistinctCount { slot },
            AggregateFunction::First => Compiled::First { slot },
            AggregateFunction::Last => Compiled::Last { slot },
        })
    }

    fn add_process(
        &mut self,
        spec: &AggregateSpec,
        name: &str,
        functions: &Functions,
        at: &str,
    ) -> Result<Compiled, Problem> {
        for (key, given) in [
            ("name", spec.name.is_some()),
            ("function", spec.function.is_some()),
            ("field", spec.field.is_some()),
            ("type", spec.field_type.is_some()),
        ] {
            if given {
                return Err(Problem::new(
                    join(at, key),
                    format!(
                        "a `process` aggregate takes no `{key}` (the function names its outputs and types)"
                    ),
                ));
            }
        }
        let function = functions.get(name).ok_or_else(|| {
            let known: Vec<&str> = functions.names().collect();
            Problem::new(
                join(at, "process"),
                format!(
                    "no process-window function {name:?} (known: {}; register others with the Rust API)",
                    known.join(", ")
                ),
            )
        })?;
        let mapped = spec.inputs.clone().unwrap_or_default();
        if let Some(unknown) = mapped.keys().find(|input| {
            !function
                .inputs()
                .iter()
                .any(|declared| &declared.name == *input)
        }) {
            return Err(Problem::new(
                join(&join(at, "inputs"), unknown),
                format!("{name:?} has no input {unknown:?}"),
            ));
        }
        let first = self.slots.len();
        self.canonical.push_str(&format!("process={name}("));
        for input in function.inputs() {
            let text = mapped.get(&input.name).unwrap_or(&input.name);
            let path = FieldPath::parse(text)
                .map_err(|message| Problem::new(join(&join(at, "inputs"), &input.name), message))?;
            self.canonical
                .push_str(&format!("{}={text}:{},", input.name, input.field_type));
            self.slots.push(Slot {
                path,
                field_type: input.field_type,
            });
        }
        self.canonical
            .push_str(&format!(")->{};", function.outputs().join(",")));
        self.output_fields
            .extend(function.outputs().iter().cloned());
        Ok(Compiled::Process {
            name: name.to_string(),
            slots: first..self.slots.len(),
            function: function.clone(),
        })
    }
}

/// The accumulator of one aggregate. In snapshots decimals are written as
/// scale and mantissa ([`snapshot_decimal`]), not as strings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AggAcc {
    Count(u64),
    SumInteger(i128),
    SumDecimal(#[serde(with = "snapshot_decimal")] Decimal),
    AvgInteger(AvgAcc),
    AvgDecimal {
        #[serde(with = "snapshot_decimal")]
        sum: Decimal,
        count: u64,
    },
    /// Min or max.
    Extreme(Option<Scalar>),
    Distinct(BTreeSet<Scalar>),
    /// First or last by time.
    ByTime(Option<Element<Scalar>>),
    Records(Vec<Element<Row>>),
}

impl SumValue for Decimal {
    type Wide = Decimal;
    fn zero() -> Decimal {
        Decimal::ZERO
    }
    fn widen(&self) -> Decimal {
        *self
    }
    fn checked_add(a: &Decimal, b: &Decimal) -> Option<Decimal> {
        exact_decimal_add(*a, *b)
    }
    fn narrow(wide: &Decimal) -> Option<Decimal> {
        Some(*wide)
    }
}

/// The same record, with another value: what a built-in reads.
fn with_value<'a, W>(input: Input<'_, JobValue>, value: &'a W) -> Input<'a, W> {
    Input {
        ts: input.ts,
        arrival: input.arrival,
        value,
    }
}

/// Hands a process-window function's records to it, named for errors.
struct Named<'f> {
    name: &'f str,
    function: &'f ProcessWindow,
}

impl ProcessWindowFunction<Row> for Named<'_> {
    type Output = Vec<OutputValue>;

    fn process(
        &self,
        context: &WindowContext<'_>,
        records: &[Element<Row>],
    ) -> Result<Self::Output> {
        self.function.call(self.name, context, records)
    }
}

/// The records a process aggregate keeps (adding and merging them does
/// not call the function).
struct Keep;

impl ProcessWindowFunction<Row> for Keep {
    type Output = ();

    fn process(&self, _context: &WindowContext<'_>, _records: &[Element<Row>]) -> Result<()> {
        Ok(())
    }
}

fn mismatch(what: &str, acc: &AggAcc) -> ! {
    panic!("aggregate {what} was given accumulator {acc:?}: the plan and its state disagree")
}

impl Compiled {
    fn create(&self) -> AggAcc {
        match self {
            Compiled::Count => AggAcc::Count(0),
            Compiled::Sum { decimal: false, .. } => AggAcc::SumInteger(0),
            Compiled::Sum { decimal: true, .. } => AggAcc::SumDecimal(Decimal::ZERO),
            Compiled::Avg { decimal: false, .. } => AggAcc::AvgInteger(AvgAcc::default()),
            Compiled::Avg { decimal: true, .. } => AggAcc::AvgDecimal {
                sum: Decimal::ZERO,
                count: 0,
            },
            Compiled::Min { .. } | Compiled::Max { .. } => AggAcc::Extreme(None),
            Compiled::DistinctCount { .. } => AggAcc::Distinct(BTreeSet::new()),
            Compiled::First { .. } | Compiled::Last { .. } => AggAcc::ByTime(None),
            Compiled::Process { .. } => AggAcc::Records(Vec::new()),
        }
    }

    /// The slot this built-in reads, `None` for `count` and functions.
    fn slot(&self) -> Option<usize> {
        match self {
            Compiled::Count | Compiled::Process { .. } => None,
            Compiled::Sum { slot, .. }
            | Compiled::Avg { slot, .. }
            | Compiled::Min { slot }
            | Compiled::Max { slot }
            | Compiled::DistinctCount { slot }
            | Compiled::First { slot }
            | Compiled::Last { slot } => Some(*slot),
        }
    }

    fn add(&self, acc: &mut AggAcc, input: Input<'_, JobValue>) -> Result<()> {
        if let Compiled::Process { slots, .. } = self {
            let AggAcc::Records(records) = acc else {
                mismatch("process", acc)
            };
            let row = Row(input.value.slots[slots.clone()].to_vec());
            return Process(Keep).add(records, with_value(input, &row));
        }
        if let Compiled::Count = self {
            let AggAcc::Count(count) = acc else {
                mismatch("count", acc)
            };
            return Aggregator::<JobValue>::add(&Count, count, input);
        }
        let slot = self.slot().expect("a built-in over a field has a slot");
        // A null field: this aggregate skips the record.
        let Some(value) = &input.value.slots[slot] else {
            return Ok(());
        };
        let value_input = with_value(input, value);
        match (self, acc, value) {
            (Compiled::Sum { .. }, AggAcc::SumInteger(sum), Scalar::Integer(number)) => {
                Aggregator::<i64>::add(&Sum, sum, with_value(input, number))
            }
            (Compiled::Sum { .. }, AggAcc::SumDecimal(sum), Scalar::Decimal(number)) => {
                Aggregator::<Decimal>::add(&Sum, sum, with_value(input, number))
            }
            (Compiled::Avg { .. }, AggAcc::AvgInteger(avg), Scalar::Integer(number)) => {
                Aggregator::<i64>::add(&Avg, avg, with_value(input, number))
            }
            (Compiled::Avg { .. }, AggAcc::AvgDecimal { sum, count }, Scalar::Decimal(number)) => {
                add_decimal_avg(sum, count, *number, 1)
            }
            (Compiled::Min { .. }, AggAcc::Extreme(extreme), _) => Min.add(extreme, value_input),
            (Compiled::Max { .. }, AggAcc::Extreme(extreme), _) => Max.add(extreme, value_input),
            (Compiled::DistinctCount { .. }, AggAcc::Distinct(values), _) => {
                DistinctCount.add(values, value_input)
            }
            (Compiled::First { .. }, AggAcc::ByTime(first), _) => {
                FirstByTime.add(first, value_input)
            }
            (Compiled::Last { .. }, AggAcc::ByTime(last), _) => LastByTime.add(last, value_input),
            (compiled, acc, value) => {
                panic!("aggregate {compiled:?} was given {value:?} with accumulator {acc:?}")
            }
        }
    }

    fn merge(&self, acc: &mut AggAcc, other: &AggAcc) -> Result<()> {
        match (self, acc, other) {
            (Compiled::Count, AggAcc::Count(a), AggAcc::Count(b)) => {
                Aggregator::<JobValue>::merge(&Count, a, b)
            }
            (_, AggAcc::SumInteger(a), AggAcc::SumInteger(b)) => {
                Aggregator::<i64>::merge(&Sum, a, b)
            }
            (_, AggAcc::SumDecimal(a), AggAcc::SumDecimal(b)) => {
                Aggregator::<Decimal>::merge(&Sum, a, b)
            }
            (_, AggAcc::AvgInteger(a), AggAcc::AvgInteger(b)) => {
                Aggregator::<i64>::merge(&Avg, a, b)
            }
            (
                _,
                AggAcc::AvgDecimal { sum, count },
                AggAcc::AvgDecimal {
                    sum: b_sum,
                    count: b_count,
                },
            ) => add_decimal_avg(sum, count, *b_sum, *b_count),
            (Compiled::Min { .. }, AggAcc::Extreme(a), AggAcc::Extreme(b)) => Min.merge(a, b),
            (Compiled::Max { .. }, AggAcc::Extreme(a), AggAcc::Extreme(b)) => Max.merge(a, b),
            (_, AggAcc::Distinct(a), AggAcc::Distinct(b)) => DistinctCount.merge(a, b),
            (Compiled::First { .. }, AggAcc::ByTime(a), AggAcc::ByTime(b)) => {
                FirstByTime.merge(a, b)
            }
            (Compiled::Last { .. }, AggAcc::ByTime(a), AggAcc::ByTime(b)) => LastByTime.merge(a, b),
            (Compiled::Process { .. }, AggAcc::Records(a), AggAcc::Records(b)) => {
                Process(Keep).merge(a, b)
            }
            (compiled, acc, other) => {
                panic!("aggregate {compiled:?} cannot merge {other:?} into {acc:?}")
            }
        }
    }

    fn result(
        &self,
        acc: &AggAcc,
        context: &WindowContext<'_>,
        out: &mut Vec<OutputValue>,
    ) -> Result<()> {
        let value = match (self, acc) {
            (Compiled::Count, AggAcc::Count(count)) => OutputValue::Unsigned(*count),
            (_, AggAcc::SumInteger(sum)) => {
                OutputValue::Integer(Aggregator::<i64>::result(&Sum, sum, context)?)
            }
            (_, AggAcc::SumDecimal(sum)) => OutputValue::Decimal(*sum),
            (_, AggAcc::AvgInteger(avg)) => match Aggregator::<i64>::result(&Avg, avg, context)? {
                Some(mean) => OutputValue::Float(mean),
                None => OutputValue::Null,
            },
            (_, AggAcc::AvgDecimal { sum, count }) => decimal_mean(*sum, *count),
            (_, AggAcc::Extreme(value)) => value.clone().map_or(OutputValue::Null, Into::into),
            (_, AggAcc::Distinct(values)) => OutputValue::Unsigned(values.len() as u64),
            (_, AggAcc::ByTime(element)) => element
                .as_ref()
                .map_or(OutputValue::Null, |element| element.value.clone().into()),
            (Compiled::Process { name, function, .. }, AggAcc::Records(records)) => {
                let named = Named { name, function };
                out.extend(Process(named).result(records, context)?);
                return Ok(());
            }
            (compiled, acc) => panic!("aggregate {compiled:?} cannot read {acc:?}"),
        };
        out.push(value);
        Ok(())
    }
}

fn add_decimal_avg(
    sum: &mut Decimal,
    count: &mut u64,
    add_sum: Decimal,
    add_count: u64,
) -> Result<()> {
    let new_sum = exact_decimal_add(*sum, add_sum).ok_or_else(|| {
        Error::Overflow("avg accumulator overflows (exact decimal sum)".to_string())
    })?;
    let new_count = count
        .checked_add(add_count)
        .ok_or_else(|| Error::Overflow("record count exceeds u64".to_string()))?;
    *sum = new_sum;
    *count = new_count;
    Ok(())
}

/// `sum / count`, exact when it terminates within the decimal's 28 digits,
/// else rounded there, with no trailing zeros beyond the sum's own scale
/// (`30.00 / 3` is `10.00`, `0.3 / 2` is `0.15`); `null` for no values.
fn decimal_mean(sum: Decimal, count: u64) -> OutputValue {
    if count == 0 {
        return OutputValue::Null;
    }
    let mut mean = sum
        .checked_div(Decimal::from(count))
        .expect("a decimal divided by a count >= 1 does not overflow")
        .normalize();
    if mean.scale() < sum.scale() {
        // |mean| <= |sum|, which fits at that scale.
        mean.rescale(sum.scale());
    }
    OutputValue::Decimal(mean)
}

/// Accumulators [`JobAcc`] holds inline: the job's aggregates up to this
/// many (most jobs have one to four) take no allocation of their own.
pub const INLINE_AGGREGATES: usize = 4;

/// The accumulators of one window (one per aggregate, in the job's order):
/// inline up to [`INLINE_AGGREGATES`], so that in the window state they
/// sit next to their key and the record's one hash probe reaches them; on
/// the heap beyond. A snapshot encodes them as it would a `Vec` (a length,
/// then each accumulator).
pub type JobAcc = SmallVec<[AggAcc; INLINE_AGGREGATES]>;

/// Folds every aggregate of a job over a window's records.
#[derive(Clone, Debug)]
pub struct JobAggregator {
    aggregates: Vec<Compiled>,
}

impl JobAggregator {
    /// Whether `add`/`merge` of aggregate `index` can fail (counts, sums
    /// and averages can overflow).
    fn can_fail(&self, index: usize) -> bool {
        matches!(
            self.aggregates[index],
            Compiled::Count | Compiled::Sum { .. } | Compiled::Avg { .. }
        )
    }

    fn check_len(&self, acc: &[AggAcc]) {
        assert_eq!(
            acc.len(),
            self.aggregates.len(),
            "one accumulator per aggregate"
        );
    }
}

impl Aggregator<JobValue> for JobAggregator {
    type Acc = JobAcc;
    type Output = Vec<OutputValue>;

    fn create(&self) -> JobAcc {
        self.aggregates.iter().map(Compiled::create).collect()
    }

    fn add(&self, acc: &mut JobAcc, input: Input<'_, JobValue>) -> Result<()> {
        self.check_len(acc);
        // Keep the contract (unchanged on error): what can fail is tried on
        // a copy first (small: a count or a sum), then everything is added.
        for (index, state) in acc.iter().enumerate() {
            if self.can_fail(index) {
                self.aggregates[index].add(&mut state.clone(), input)?;
            }
        }
        for (aggregate, state) in self.aggregates.iter().zip(acc.iter_mut()) {
            aggregate
                .add(state, input)
                .expect("an add that succeeded on a copy succeeds");
        }
        Ok(())
    }

    fn merge(&self, acc: &mut JobAcc, other: &JobAcc) -> Result<()> {
        self.check_len(acc);
        self.check_len(other);
        for (index, (state, other_state)) in acc.iter().zip(other).enumerate() {
            if self.can_fail(index) {
                self.aggregates[index].merge(&mut state.clone(), other_state)?;
            }
        }
        for ((aggregate, state), other_state) in
            self.aggregates.iter().zip(acc.iter_mut()).zip(other)
        {
            aggregate
                .merge(state, other_state)
                .expect("a merge that succeeded on a copy succeeds");
        }
        Ok(())
    }

    fn result(&self, acc: &JobAcc, context: &WindowContext<'_>) -> Result<Vec<OutputValue>> {
        self.check_len(acc);
        let mut out = Vec::with_capacity(acc.len());
        for (aggregate, state) in self.aggregates.iter().zip(acc) {
            aggregate.result(state, context, &mut out)?;
        }
        Ok(out)
    }
}
