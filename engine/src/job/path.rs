//! Dotted field paths (`after.user_id`) and looking them up in a JSON
//! document without converting it: the field's raw JSON text comes back,
//! so a number is read from exactly what the producer wrote (a decimal
//! never passes through `f64`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A path of object keys, written with dots: `after.user_id`. A key that
/// itself contains a dot cannot be named.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `after.user_id`; refuses an empty path or an empty segment
    /// (`after..id`, `.id`, `id.`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field path is not empty".to_string());
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "field path {text:?} has an empty segment (keys are separated by single dots)"
            ));
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The field in `root` (a JSON document already known to be valid).
    pub fn lookup<'a>(&self, root: &'a RawValue) -> Found<'a> {
        let mut current = root;
        for segment in &self.segments {
            match member(current, segment) {
                Member::Found(value) => current = value,
                Member::Absent => return Found::Missing,
                Member::NotAnObject(kind) => return Found::Inside(kind),
                Member::Invalid(reason) => return Found::Invalid(reason),
            }
        }
        if JsonKind::of(current) == JsonKind::Null {
            Found::Null
        } else {
            Found::Value(current)
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a path names in a document.
#[derive(Clone, Debug)]
pub enum Found<'a> {
    /// The field's JSON text (not `null`).
    Value(&'a RawValue),
    /// The field is `null`.
    Null,
    /// An object on the way has no such key.
    Missing,
    /// A value on the way is not an object (`null`, a string, ...): named
    /// by its JSON kind.
    Inside(JsonKind),
    /// An object on the way has a key that is JSON by its grammar but not
    /// text (an escaped lone surrogate, `"\ud800"`): why.
    Invalid(String),
}

/// The kind of a JSON value, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonKind {
    /// The kind of a valid JSON text, from its first character.
    pub fn of(raw: &RawValue) -> JsonKind {
        match raw.get().trim_start().as_bytes().first() {
            Some(b'n') => JsonKind::Null,
            Some(b't' | b'f') => JsonKind::Boolean,
            Some(b'"') => JsonKind::String,
            Some(b'[') => JsonKind::Array,
            Some(b'{') => JsonKind::Object,
            _ => JsonKind::Number,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JsonKind::Null => "null",
            JsonKind::Boolean => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        }
    }
}

/// The member `key` of the object `raw` (one key, no dots).
pub fn member_of<'a>(raw: &'a RawValue, key: &str) -> Found<'a> {
    match member(raw, key) {
        Member::Found(value) if JsonKind::of(value) == JsonKind::Null => Found::Null,
        Member::Found(value) => Found::Value(value),
        Member::Absent => Found::Missing,
        Member::NotAnObject(kind) => Found::Inside(kind),
        Member::Invalid(reason) => Found::Invalid(reason),
    }
}

enum Member<'a> {
    Found(&'a RawValue),
    Absent,
    NotAnObject(JsonKind),
    Invalid(String),
}

/// The value of `key` in the object `raw` (the last one if the key is
/// repeated, as most JSON readers do).
fn member<'a>(raw: &'a RawValue, key: &str) -> Member<'a> {
    let kind = JsonKind::of(raw);
    if kind != JsonKind::Object {
        return Member::NotAnObject(kind);
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    match (MemberSeed { key }).deserialize(&mut deserializer) {
        Ok(Some(value)) => Member::Found(value),
        Ok(None) => Member::Absent,
        // The document's grammar was checked whole before any lookup, but
        // not its strings: a key can still be an escaped lone surrogate.
        Err(error) => Member::Invalid(format!("the value is not valid JSON text: {error}")),
    }
}

struct MemberSeed<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for MemberSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs { key: self.key })? {
            if matches {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// Deserializes a key into whether it equals `key`, without allocating for
/// keys without escapes.
struct KeyIs<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<bool, E> {
        Ok(value == self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn a_dotted_path_finds_nested_fields_with_their_exact_text() {
        let document = raw(r#"{"after": {"amount": 0.10, "user": {"id": "u\"1"}}, "op": "c"}"#);
        let amount = FieldPath::parse("after.amount").unwrap();
        match amount.lookup(&document) {
            Found::Value(value) => assert_eq!(value.get(), "0.10"),
            other => panic!("{other:?}"),
        }
        let id = FieldPath::parse("after.user.id").unwrap();
        match id.lookup(&document) {
            Found::Value(value) => assert_eq!(value.get(), r#""u\"1""#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_null_and_non_object_parents_are_told_apart() {
        let document = raw(r#"{"before": null, "after": {"x": null}, "n": 5}"#);
        let lookup = |path: &str| FieldPath::parse(path).unwrap().lookup(&document);
        assert!(matches!(lookup("after.x"), Found::Null));
        assert!(matches!(lookup("after.y"), Found::Missing));
        assert!(matches!(lookup("before.x"), Found::Inside(JsonKind::Null)));
        assert!(matches!(lookup("n.x"), Found::Inside(JsonKind::Number)));
        assert!(matches!(lookup("nothing"), Found::Missing));
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value_and_escaped_keys_match() {
        let document = raw(r#"{"a": 1, "a": 2, "k\u0065y": 3}"#);
        let lookup = |path: &str| match FieldPath::parse(path).unwrap().lookup(&document) {
            Found::Value(value) => value.get().to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(lookup("a"), "2");
        assert_eq!(lookup("key"), "3");
    }

    #[test]
    fn a_key_that_is_no_text_makes_the_lookup_invalid_not_a_panic() {
        let document = raw(r#"{"\ud800": 1, "a": 2}"#);
        match FieldPath::parse("a").unwrap().lookup(&document) {
            Found::Invalid(reason) => assert!(reason.contains("hex escape"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_paths_and_empty_segments_are_refused() {
        for text in ["", ".", "a.", ".a", "a..b"] {
            assert!(FieldPath::parse(text).is_err(), "{text:?} was accepted");
        }
        assert_eq!(
            FieldPath::parse("after.user_id").unwrap().segments(),
            ["after", "user_id"]
        );
    }
}
