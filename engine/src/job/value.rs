//! The values a job reads from its records and writes to its outputs.
//!
//! A field is read with a declared [`FieldType`] and becomes a [`Scalar`];
//! a decimal is a `rust_decimal::Decimal` (96-bit mantissa, up to 28 digits
//! after the point), never a float. What a firing carries is a list of
//! [`OutputValue`]s, written as JSON with decimals as strings so that
//! nothing downstream rounds them.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::path::JsonKind;

/// The type a job reads a field as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON integer (no fraction, no exponent) in the `i64` range.
    Integer,
    /// A JSON number or a JSON string holding a plain decimal (`"12.50"`),
    /// read exactly.
    Decimal,
    /// `true` or `false`.
    Boolean,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Boolean => "boolean",
        }
    }

    /// The name with its article, for messages: "an integer".
    pub fn with_article(self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::Integer => "an integer",
            FieldType::Decimal => "a decimal",
            FieldType::Boolean => "a boolean",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field value, read with its declared type. Values of one field all
/// have the same variant, so the derived order is the order within a type
/// (strings by bytes, numbers by value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scalar {
    Boolean(bool),
    Integer(i64),
    Decimal(#[serde(with = "snapshot_decimal")] Decimal),
    String(String),
}

/// A decimal in a snapshot: one byte holding its sign (top bit) and scale
/// (0 to 28), then the magnitude of its 96-bit mantissa (a `u128`, which
/// postcard writes as a varint: a few bytes for everyday amounts). Exact,
/// bit for bit (trailing zeros, `1.50` stays `1.50`, and the sign even of a
/// zero), so a restored decimal re-encodes to the same bytes; and neither
/// side allocates, unlike the decimal text of `rust_decimal`'s `serde-str`
/// (snapshot format version 1).
pub(crate) mod snapshot_decimal {
    use rust_decimal::Decimal;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const NEGATIVE: u8 = 0x80;

    pub(crate) fn serialize<S: Serializer>(
        value: &Decimal,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        // `scale()` is at most 28: it fits below the sign bit.
        let sign = if value.is_sign_negative() {
            NEGATIVE
        } else {
            0
        };
        let head = sign | value.scale() as u8;
        (head, value.mantissa().unsigned_abs()).serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Decimal, D::Error> {
        let (head, magnitude) = <(u8, u128)>::deserialize(deserializer)?;
        let scale = head & !NEGATIVE;
        if u32::from(scale) > Decimal::MAX_SCALE || magnitude >> 96 != 0 {
            return Err(D::Error::custom(format!(
                "not a decimal: scale {scale}, mantissa {magnitude}"
            )));
        }
        // `Decimal::serialize`'s layout: flags (scale in bits 16-23, the
        // sign in bit 31), then the mantissa's low, middle and high words.
        let flags = (u32::from(scale) << 16) | (u32::from(head & NEGATIVE) << 24);
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&flags.to_le_bytes());
        bytes[4..].copy_from_slice(&magnitude.to_le_bytes()[..12]);
        Ok(Decimal::deserialize(bytes))
    }
}

impl Scalar {
    pub fn field_type(&self) -> FieldType {
        match self {
            Scalar::Boolean(_) => FieldType::Boolean,
            Scalar::Integer(_) => FieldType::Integer,
            Scalar::Decimal(_) => FieldType::Decimal,
            Scalar::String(_) => FieldType::String,
        }
    }

    /// Reads a JSON value (not `null`) as `field_type`; the error says
    /// what was found instead.
    pub fn from_json(raw: &RawValue, field_type: FieldType) -> Result<Scalar, String> {
        let text = raw.get();
        let kind = JsonKind::of(raw);
        let string = match kind {
            JsonKind::String => Some(string_text(raw)?),
            _ => None,
        };
        let scalar = match (field_type, kind) {
            (FieldType::String, JsonKind::String) => string.map(Scalar::String),
            (FieldType::Boolean, JsonKind::Boolean) => Some(Scalar::Boolean(text == "true")),
            (FieldType::Integer, JsonKind::Number) => parse_integer(text).map(Scalar::Integer),
            (FieldType::Decimal, JsonKind::Number) => {
                parse_decimal_number(text).map(Scalar::Decimal)
            }
            (FieldType::Decimal, JsonKind::String) => string
                .as_deref()
                .and_then(parse_decimal_text)
                .map(Scalar::Decimal),
            _ => None,
        };
        scalar.ok_or_else(|| {
            format!(
                "expected {}, found {}",
                expected(field_type),
                describe_json(raw)
            )
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Scalar::Integer(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Scalar::Decimal(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Boolean(value) => Some(*value),
            _ => None,
        }
    }
}

impl From<Scalar> for OutputValue {
    fn from(scalar: Scalar) -> Self {
        match scalar {
            Scalar::Boolean(value) => OutputValue::Boolean(value),
            Scalar::Integer(value) => OutputValue::Integer(value),
            Scalar::Decimal(value) => OutputValue::Decimal(value),
            Scalar::String(value) => OutputValue::String(value),
        }
    }
}

/// A JSON value for a message: its kind, with its text when short.
pub fn describe_json(raw: &RawValue) -> String {
    let text = raw.get();
    let kind = JsonKind::of(raw);
    match kind {
        JsonKind::Number | JsonKind::Boolean => format!("{} ({text})", kind.name()),
        JsonKind::String if text.len() <= 40 => format!("{} ({text})", kind.name()),
        _ => kind.name().to_string(),
    }
}

fn expected(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "a string",
        FieldType::Integer => "an integer in the i64 range",
        FieldType::Decimal => {
            "a decimal (a number, or a string like \"12.50\") of at most 28 digits after the point"
        }
        FieldType::Boolean => "a boolean",
    }
}

/// A JSON string's text, or why it has none (an escaped lone surrogate,
/// which the grammar allows and text does not).
pub fn string_text(raw: &RawValue) -> Result<String, String> {
    match plain_string(raw) {
        Some(text) => Ok(text.to_string()),
        None => serde_json::from_str(raw.get())
            .map_err(|error| format!("a string that is not valid JSON text: {error}")),
    }
}

/// The text of a JSON string without escapes, borrowed from the document:
/// what is between its quotes (its grammar was checked, so that is its
/// text); `None` for a string with escapes (or not a string).
pub fn plain_string(raw: &RawValue) -> Option<&str> {
    let text = raw.get().trim_ascii();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A JSON number without fraction or exponent, in the `i64` range.
fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A JSON number (its grammar already checked), exactly.
fn parse_decimal_number(text: &str) -> Option<Decimal> {
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

/// A plain decimal in a string: an optional `-`, digits, and optionally a
/// point followed by digits (no exponent, no spaces, no `_`), exactly.
pub fn parse_decimal_text(text: &str) -> Option<Decimal> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

/// The fields one record gives a process-window function: its inputs, in
/// the order the function declared them; `None` for a JSON `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row(pub Vec<Option<Scalar>>);

impl Row {
    /// Input `index`, `None` if it was null.
    pub fn get(&self, index: usize) -> Option<&Scalar> {
        self.0.get(index).and_then(Option::as_ref)
    }

    pub fn str(&self, index: usize) -> Option<&str> {
        self.get(index).and_then(Scalar::as_str)
    }

    pub fn integer(&self, index: usize) -> Option<i64> {
        self.get(index).and_then(Scalar::as_integer)
    }

    pub fn decimal(&self, index: usize) -> Option<Decimal> {
        self.get(index).and_then(Scalar::as_decimal)
    }

    pub fn boolean(&self, index: usize) -> Option<bool> {
        self.get(index).and_then(Scalar::as_bool)
    }
}

/// One aggregate field of a firing.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputValue {
    Null,
    Boolean(bool),
    Integer(i64),
    Unsigned(u64),
    /// An average of integers (rounded once).
    Float(f64),
    /// Written as a JSON string, exactly.
    Decimal(Decimal),
    String(String),
}

impl OutputValue {
    /// Appends the value as JSON.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            OutputValue::Null => out.push_str("null"),
            OutputValue::Boolean(value) => out.push_str(if *value { "true" } else { "false" }),
            OutputValue::Integer(value) => write!(out, "{value}").expect("writing to a String"),
            OutputValue::Unsigned(value) => write!(out, "{value}").expect("writing to a String"),
            OutputValue::Float(value) => match serde_json::Number::from_f64(*value) {
                Some(number) => write!(out, "{number}").expect("writing to a String"),
                // NaN or infinity: JSON has no such number.
                None => out.push_str("null"),
            },
            OutputValue::Decimal(value) => {
                // Digits, a sign and a point: nothing to escape.
                write!(out, "\"{value}\"").expect("writing to a String")
            }
            OutputValue::String(value) => write_json_string(value, out),
        }
    }
}

/// Appends `text` as a JSON string (quoted and escaped).
pub fn write_json_string(text: &str, out: &mut String) {
    let plain = text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string serializes to JSON"));
    }
}

/// Adds two decimals exactly: `None` when the exact sum does not fit
/// (`rust_decimal` would otherwise round it to fewer digits after the
/// point, which a sum of money must never do).
pub fn exact_decimal_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let sum = a.checked_add(b)?;
    (sum.scale() >= a.scale().max(b.scale())).then_some(sum)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn decimal(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn decimals_are_written_as_json_strings_with_their_scale() {
        let mut out = String::new();
        OutputValue::Decimal(decimal("30.10")).write_json(&mut out);
        out.push(',');
        OutputValue::String("a\"b".to_string()).write_json(&mut out);
        out.push(',');
        OutputValue::String("é\n\\".to_string()).write_json(&mut out);
        out.push(',');
        OutputValue::Integer(-3).write_json(&mut out);
        out.push(',');
        OutputValue::Float(2.5).write_json(&mut out);
        out.push(',');
        OutputValue::Null.write_json(&mut out);
        assert_eq!(out, r#""30.10","a\"b","é\n\\",-3,2.5,null"#);
    }

    fn read(text: &str, field_type: FieldType) -> Result<Scalar, String> {
        Scalar::from_json(
            &RawValue::from_string(text.to_string()).unwrap(),
            field_type,
        )
    }

    #[test]
    fn fields_are_read_with_their_declared_type_and_nothing_else() {
        assert_eq!(read("42", FieldType::Integer), Ok(Scalar::Integer(42)));
        assert_eq!(read("-7", FieldType::Integer), Ok(Scalar::Integer(-7)));
        assert_eq!(
            read(r#""12.50""#, FieldType::Decimal),
            Ok(Scalar::Decimal(decimal("12.50")))
        );
        assert_eq!(
            read("0.1", FieldType::Decimal),
            Ok(Scalar::Decimal(decimal("0.1")))
        );
        assert_eq!(
            read("1.5e2", FieldType::Decimal),
            Ok(Scalar::Decimal(decimal("150")))
        );
        assert_eq!(
            read(r#""u1""#, FieldType::String),
            Ok(Scalar::String("u1".to_string()))
        );
        assert_eq!(
            read("false", FieldType::Boolean),
            Ok(Scalar::Boolean(false))
        );
        for (text, field_type, found) in [
            ("12.5", FieldType::Integer, "found a number (12.5)"),
            ("1e3", FieldType::Integer, "found a number (1e3)"),
            ("9223372036854775808", FieldType::Integer, "found a number"),
            (r#""42""#, FieldType::Integer, "found a string"),
            (r#""1e3""#, FieldType::Decimal, "found a string"),
            (r#""12,5""#, FieldType::Decimal, "found a string"),
            (r#"" 1""#, FieldType::Decimal, "found a string"),
            (
                "0.00000000000000000000000000001",
                FieldType::Decimal,
                "found a number",
            ),
            ("5", FieldType::String, "found a number (5)"),
            ("{}", FieldType::String, "found an object"),
            ("[1]", FieldType::Boolean, "found an array"),
            (
                r#""\ud800""#,
                FieldType::String,
                "a string that is not valid JSON text",
            ),
        ] {
            let error = read(text, field_type).expect_err(text);
            assert!(error.contains(found), "{text}: {error}");
        }
    }

    #[test]
    fn an_exact_decimal_sum_that_would_be_rounded_is_refused() {
        assert_eq!(
            exact_decimal_add(decimal("0.1"), decimal("0.2")),
            Some(decimal("0.3"))
        );
        // 29 integer digits leave no room for a digit after the point:
        // rust_decimal rounds such a sum, the exact addition refuses it.
        let big = decimal("70000000000000000000000000000");
        let rounded = big.checked_add(decimal("0.5")).unwrap();
        assert_ne!(rounded - big, decimal("0.5"));
        assert_eq!(exact_decimal_add(big, decimal("0.5")), None);
        assert_eq!(exact_decimal_add(Decimal::MAX, decimal("1")), None);
    }
}
