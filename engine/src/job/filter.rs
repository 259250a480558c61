//! The job filter: field comparisons combined with `all`, `any` and `not`.
//!
//! ```toml
//! filter = { all = [
//!     { field = "after.status", eq = "completed" },
//!     { field = "op", in = ["c", "r"] },
//!     { field = "after.amount", ge = "10.00", type = "decimal" },
//! ] }
//! ```
//!
//! A comparison reads its field with a type: `type` if given, else the
//! type of its (first) literal (a TOML string: `string`, an integer:
//! `integer`, a float: `decimal`, a boolean: `boolean`). It is true only
//! when the field is present, not `null`, and the relation holds; a
//! missing or `null` field (or a `null` object on the way, as `after` of a
//! Debezium delete) makes it false. A field of another type is a bad
//! record: filtering it out would hide a schema change.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::path::{Document, FieldPath, Found};
use super::problem::{Problem, join};
use super::value::{FieldType, Scalar, parse_decimal_text};

/// A filter as written in the job file (or built in code).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// True when every filter in the list is.
    #[serde(default)]
    pub all: Option<Vec<FilterSpec>>,
    /// True when at least one filter in the list is.
    #[serde(default)]
    pub any: Option<Vec<FilterSpec>>,
    /// True when the filter is false.
    #[serde(default)]
    pub not: Option<Box<FilterSpec>>,
    /// The field a comparison reads (a dotted path).
    #[serde(default)]
    pub field: Option<String>,
    /// The type the field is read as (default: the literal's).
    #[serde(default, rename = "type")]
    pub field_type: Option<FieldType>,
    #[serde(default)]
    pub eq: Option<Literal>,
    #[serde(default)]
    pub ne: Option<Literal>,
    #[serde(default)]
    pub lt: Option<Literal>,
    #[serde(default)]
    pub le: Option<Literal>,
    #[serde(default)]
    pub gt: Option<Literal>,
    #[serde(default)]
    pub ge: Option<Literal>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<Literal>>,
}

impl FilterSpec {
    fn comparison(field: &str, op: Op, literal: Literal) -> Self {
        let mut spec = FilterSpec {
            field: Some(field.to_string()),
            ..FilterSpec::default()
        };
        let slot = match op {
            Op::Eq => &mut spec.eq,
            Op::Ne => &mut spec.ne,
            Op::Lt => &mut spec.lt,
            Op::Le => &mut spec.le,
            Op::Gt => &mut spec.gt,
            Op::Ge => &mut spec.ge,
            Op::In => unreachable!("`in` takes a list"),
        };
        *slot = Some(literal);
        spec
    }

    pub fn eq(field: &str, literal: impl Into<Literal>) -> Self {
        Self::comparison(field, Op::Eq, literal.into())
    }
    pub fn ne(field: &str, literal: impl Into<Literal>) -> Self {
        Self::comparison(field, Op::Ne, literal.into())
    }
    pub fn lt(field: &str, literal: impl Into<Literal>) -> Self {
        Self::comparison(field, Op::Lt, literal.into())
    }
    pub fn le(field: &str, literal: impl Into<Literal>) -> Self {
        Self::comparison(field, Op::Le, literal.into())
    }
    pub fn gt(field: &str, literal: impl Into<Literal>) -> Self {
        Self::comparison(field, Op::Gt, literal.into())
    }
    pub fn ge(field: &str, literal: impl Into<Literal>) -> Self {
        Self::comparison(field, Op::Ge, literal.into())
    }

    /// `field in [literals...]`.
    pub fn one_of<L: Into<Literal>>(field: &str, literals: impl IntoIterator<Item = L>) -> Self {
        FilterSpec {
            field: Some(field.to_string()),
            one_of: Some(literals.into_iter().map(Into::into).collect()),
            ..FilterSpec::default()
        }
    }

    pub fn all(filters: impl IntoIterator<Item = FilterSpec>) -> Self {
        FilterSpec {
            all: Some(filters.into_iter().collect()),
            ..FilterSpec::default()
        }
    }

    pub fn any(filters: impl IntoIterator<Item = FilterSpec>) -> Self {
        FilterSpec {
            any: Some(filters.into_iter().collect()),
            ..FilterSpec::default()
        }
    }

    pub fn negate(filter: FilterSpec) -> Self {
        FilterSpec {
            not: Some(Box::new(filter)),
            ..FilterSpec::default()
        }
    }

    /// Reads the comparison's field as `field_type`.
    pub fn typed(mut self, field_type: FieldType) -> Self {
        self.field_type = Some(field_type);
        self
    }
}

/// A literal of a comparison: a TOML string, integer, float or boolean (a
/// float is taken as the decimal it prints as: `0.1` is exactly 0.1; write
/// a decimal with more than 15 significant digits as a string), or, from
/// code, an exact decimal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Literal {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Decimal(Decimal),
}

impl From<&str> for Literal {
    fn from(value: &str) -> Self {
        Literal::String(value.to_string())
    }
}
impl From<String> for Literal {
    fn from(value: String) -> Self {
        Literal::String(value)
    }
}
impl From<i64> for Literal {
    fn from(value: i64) -> Self {
        Literal::Integer(value)
    }
}
impl From<bool> for Literal {
    fn from(value: bool) -> Self {
        Literal::Boolean(value)
    }
}
impl From<Decimal> for Literal {
    fn from(value: Decimal) -> Self {
        Literal::Decimal(value)
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LiteralVisitor)
    }
}

struct LiteralVisitor;

impl Visitor<'_> for LiteralVisitor {
    type Value = Literal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer, a float or a boolean")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Literal, E> {
        Ok(Literal::Boolean(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Literal, E> {
        Ok(Literal::Integer(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Literal, E> {
        i64::try_from(value)
            .map(Literal::Integer)
            .map_err(|_| E::custom(format!("integer {value} is outside the i64 range")))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Literal, E> {
        Ok(Literal::Float(value))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Literal, E> {
        Ok(Literal::String(value.to_string()))
    }
}

impl Literal {
    fn natural_type(&self) -> FieldType {
        match self {
            Literal::String(_) => FieldType::String,
            Literal::Integer(_) => FieldType::Integer,
            Literal::Float(_) | Literal::Decimal(_) => FieldType::Decimal,
            Literal::Boolean(_) => FieldType::Boolean,
        }
    }

    /// The literal as a value of `field_type`, if it is one.
    fn to_scalar(&self, field_type: FieldType) -> Option<Scalar> {
        match (field_type, self) {
            (FieldType::String, Literal::String(text)) => Some(Scalar::String(text.clone())),
            (FieldType::Integer, Literal::Integer(value)) => Some(Scalar::Integer(*value)),
            (FieldType::Boolean, Literal::Boolean(value)) => Some(Scalar::Boolean(*value)),
            (FieldType::Decimal, Literal::Integer(value)) => {
                Some(Scalar::Decimal(Decimal::from(*value)))
            }
            (FieldType::Decimal, Literal::Decimal(value)) => Some(Scalar::Decimal(*value)),
            (FieldType::Decimal, Literal::String(text)) => {
                parse_decimal_text(text).map(Scalar::Decimal)
            }
            // Rust prints the shortest text that reads back as the same
            // float: the decimal the user wrote, for up to 15 digits.
            (FieldType::Decimal, Literal::Float(value)) if value.is_finite() => {
                parse_decimal_text(&value.to_string()).map(Scalar::Decimal)
            }
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Literal::String(text) => format!("{text:?}"),
            Literal::Integer(value) => value.to_string(),
            Literal::Float(value) => value.to_string(),
            Literal::Boolean(value) => value.to_string(),
            Literal::Decimal(value) => value.to_string(),
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl Op {
    fn key(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::In => "in",
        }
    }

    fn orders(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// A validated filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Compare {
        path: FieldPath,
        field_type: FieldType,
        op: Op,
        /// One value; several for `in`.
        values: Vec<Scalar>,
    },
}

impl Filter {
    /// Validates `spec`, found at TOML path `at`.
    pub fn compile(spec: &FilterSpec, at: &str) -> Result<Filter, Problem> {
        let combinators = [
            spec.all.as_ref().map(|_| "all"),
            spec.any.as_ref().map(|_| "any"),
            spec.not.as_ref().map(|_| "not"),
            spec.field.as_ref().map(|_| "field"),
        ];
        let given: Vec<&str> = combinators.into_iter().flatten().collect();
        if given.len() != 1 {
            return Err(Problem::new(
                at,
                format!(
                    "a filter has exactly one of `all`, `any`, `not` or `field` (found {})",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
            ));
        }
        if let Some(filters) = &spec.all {
            return Ok(Filter::All(compile_list(filters, &join(at, "all"))?));
        }
        if let Some(filters) = &spec.any {
            return Ok(Filter::Any(compile_list(filters, &join(at, "any"))?));
        }
        if let Some(filter) = &spec.not {
            if spec.field_type.is_some() {
                return Err(Problem::new(at, "`type` belongs to a comparison"));
            }
            return Ok(Filter::Not(Box::new(Filter::compile(
                filter,
                &join(at, "not"),
            )?)));
        }
        compile_comparison(spec, at)
    }

    /// Whether the document passes. `Err` is the reason the record is bad
    /// (a compared field of another type).
    pub fn matches(&self, document: &Document<'_>) -> Result<bool, String> {
        match self {
            Filter::All(filters) => {
                for filter in filters {
                    if !filter.matches(document)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Filter::Any(filters) => {
                for filter in filters {
                    if filter.matches(document)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Filter::Not(filter) => Ok(!filter.matches(document)?),
            Filter::Compare {
                path,
                field_type,
                op,
                values,
            } => compare(document, path, *field_type, *op, values),
        }
    }
}

fn compile_list(filters: &[FilterSpec], at: &str) -> Result<Vec<Filter>, Problem> {
    if filters.is_empty() {
        return Err(Problem::new(at, "the list of filters is empty"));
    }
    filters
        .iter()
        .enumerate()
        .map(|(index, filter)| Filter::compile(filter, &format!("{at}[{index}]")))
        .collect()
}

fn compile_comparison(spec: &FilterSpec, at: &str) -> Result<Filter, Problem> {
    let field = spec.field.as_deref().expect("a comparison has a field");
    let path =
        FieldPath::parse(field).map_err(|message| Problem::new(join(at, "field"), message))?;
    let operators = [
        (Op::Eq, &spec.eq),
        (Op::Ne, &spec.ne),
        (Op::Lt, &spec.lt),
        (Op::Le, &spec.le),
        (Op::Gt, &spec.gt),
        (Op::Ge, &spec.ge),
    ];
    let mut given: Vec<(Op, Vec<&Literal>)> = operators
        .into_iter()
        .filter_map(|(op, literal)| literal.as_ref().map(|literal| (op, vec![literal])))
        .collect();
    if let Some(list) = &spec.one_of {
        given.push((Op::In, list.iter().collect()));
    }
    if given.len() != 1 {
        let names: Vec<&str> = given.iter().map(|(op, _)| op.key()).collect();
        return Err(Problem::new(
            at,
            format!(
                "a comparison has exactly one of eq, ne, lt, le, gt, ge, in (found {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    let (op, literals) = given.pop().expect("one operator");
    let at_op = join(at, op.key());
    let Some(first) = literals.first() else {
        return Err(Problem::new(at_op, "the `in` list is empty"));
    };
    let field_type = spec.field_type.unwrap_or_else(|| first.natural_type());
    if op.orders() && field_type == FieldType::Boolean {
        return Err(Problem::new(
            at_op,
            format!(
                "`{}` compares strings, integers or decimals, not booleans",
                op.key()
            ),
        ));
    }
    let values = literals
        .iter()
        .map(|literal| {
            literal.to_scalar(field_type).ok_or_else(|| {
                Problem::new(
                    at_op.clone(),
                    format!(
                        "{} is not {} (the type the field is compared as)",
                        literal.describe(),
                        field_type.with_article()
                    ),
                )
            })
        })
        .collect::<Result<Vec<Scalar>, Problem>>()?;
    Ok(Filter::Compare {
        path,
        field_type,
        op,
        values,
    })
}

fn compare(
    document: &Document<'_>,
    path: &FieldPath,
    field_type: FieldType,
    op: Op,
    values: &[Scalar],
) -> Result<bool, String> {
    let raw = match document.lookup(path) {
        Found::Value(raw) => raw,
        Found::Null | Found::Missing | Found::Inside(_) => return Ok(false),
        Found::Invalid(reason) => return Err(format!("filter field {path}: {reason}")),
    };
    let field = Scalar::from_json(raw, field_type)
        .map_err(|reason| format!("filter field {path}: {reason}"))?;
    let value = &values[0];
    Ok(match op {
        Op::Eq => field == *value,
        Op::Ne => field != *value,
        Op::Lt => field < *value,
        Op::Le => field <= *value,
        Op::Gt => field > *value,
        Op::Ge => field >= *value,
        Op::In => values.contains(&field),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn filter(spec: FilterSpec) -> Filter {
        Filter::compile(&spec, "filter").unwrap()
    }

    fn document(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    fn passes(filter: &Filter, text: &str) -> bool {
        filter.matches(&Document::new(&document(text))).unwrap()
    }

    #[test]
    fn each_operator_compares_strings_integers_and_decimals() {
        let cases: [(FilterSpec, &str, &str); 8] = [
            (FilterSpec::eq("s", "b"), r#"{"s": "b"}"#, r#"{"s": "c"}"#),
            (FilterSpec::ne("s", "b"), r#"{"s": "c"}"#, r#"{"s": "b"}"#),
            (FilterSpec::lt("n", 10), r#"{"n": 9}"#, r#"{"n": 10}"#),
            (FilterSpec::le("n", 10), r#"{"n": 10}"#, r#"{"n": 11}"#),
            (FilterSpec::gt("s", "b"), r#"{"s": "ba"}"#, r#"{"s": "b"}"#),
            (
                FilterSpec::ge("d", "10.5").typed(FieldType::Decimal),
                r#"{"d": "10.50"}"#,
                r#"{"d": 10.49}"#,
            ),
            (
                FilterSpec::ge("d", Literal::Float(0.3)),
                r#"{"d": 0.30}"#,
                r#"{"d": 0.299999}"#,
            ),
            (
                FilterSpec::eq("b", true),
                r#"{"b": true}"#,
                r#"{"b": false}"#,
            ),
        ];
        for (spec, passing, failing) in cases {
            let compiled = filter(spec.clone());
            assert!(passes(&compiled, passing), "{spec:?} refused {passing}");
            assert!(!passes(&compiled, failing), "{spec:?} passed {failing}");
        }
    }

    #[test]
    fn in_lists_and_all_any_not_combine() {
        let debezium = filter(FilterSpec::all([
            FilterSpec::eq("after.status", "completed"),
            FilterSpec::one_of("op", ["c", "r"]),
        ]));
        assert!(passes(
            &debezium,
            r#"{"op": "c", "after": {"status": "completed"}}"#
        ));
        assert!(passes(
            &debezium,
            r#"{"op": "r", "after": {"status": "completed"}}"#
        ));
        assert!(!passes(
            &debezium,
            r#"{"op": "u", "after": {"status": "completed"}}"#
        ));
        assert!(!passes(
            &debezium,
            r#"{"op": "c", "after": {"status": "pending"}}"#
        ));
        // A delete: `after` is null, so the comparison is false, not bad.
        assert!(!passes(&debezium, r#"{"op": "d", "after": null}"#));

        let either = filter(FilterSpec::any([
            FilterSpec::eq("a", 1),
            FilterSpec::negate(FilterSpec::one_of("b", [1, 2])),
        ]));
        assert!(passes(&either, r#"{"a": 1, "b": 1}"#));
        assert!(passes(&either, r#"{"a": 2, "b": 3}"#));
        assert!(!passes(&either, r#"{"a": 2, "b": 2}"#));
    }

    #[test]
    fn a_missing_or_null_field_fails_a_comparison_and_a_wrong_type_is_a_bad_record() {
        let not_b = filter(FilterSpec::ne("s", "b"));
        assert!(!passes(&not_b, r#"{}"#));
        assert!(!passes(&not_b, r#"{"s": null}"#));
        let error = not_b
            .matches(&Document::new(&document(r#"{"s": 5}"#)))
            .unwrap_err();
        assert_eq!(
            error,
            "filter field s: expected a string, found a number (5)"
        );
    }

    #[test]
    fn malformed_filters_are_refused_with_their_path() {
        let cases = [
            (FilterSpec::default(), "filter: a filter has exactly one of"),
            (
                FilterSpec {
                    field: Some("a".to_string()),
                    ..FilterSpec::default()
                },
                "filter: a comparison has exactly one of eq, ne, lt, le, gt, ge, in (found none)",
            ),
            (
                FilterSpec {
                    lt: Some(Literal::Integer(1)),
                    ..FilterSpec::eq("a", 2)
                },
                "(found eq, lt)",
            ),
            (
                FilterSpec::all([]),
                "filter.all: the list of filters is empty",
            ),
            (
                FilterSpec::all([
                    FilterSpec::eq("a", 1),
                    FilterSpec::one_of("b", Vec::<i64>::new()),
                ]),
                "filter.all[1].in: the `in` list is empty",
            ),
            (
                FilterSpec::any([FilterSpec::one_of(
                    "b",
                    [Literal::from(1), Literal::from("x")],
                )]),
                "filter.any[0].in: \"x\" is not an integer",
            ),
            (
                FilterSpec::lt("b", true),
                "filter.lt: `lt` compares strings",
            ),
            (FilterSpec::eq("a..b", 1), "filter.field: field path"),
            (
                FilterSpec::eq("a", "1.x").typed(FieldType::Decimal),
                "filter.eq: \"1.x\" is not a decimal",
            ),
        ];
        for (spec, expected) in cases {
            let problem = Filter::compile(&spec, "filter").unwrap_err().to_string();
            assert!(problem.contains(expected), "{spec:?}: {problem}");
        }
    }
}
