//! Dotted field paths (`after.user_id`) and looking them up in a JSON
//! document without converting it: the field's raw JSON text comes back,
//! so a number is read from exactly what the producer wrote (a decimal
//! never passes through `f64`).

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
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
        Document::new(root).lookup(self)
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
        JsonKind::of_text(raw.get())
    }

    fn of_text(text: &str) -> JsonKind {
        match text.trim_start().as_bytes().first() {
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

/// A JSON document (its grammar already checked) whose objects are each
/// parsed once, when a lookup first goes into them: a record's fields are
/// found in one pass over each object on their paths.
pub struct Document<'a> {
    /// The JSON text of the value paths start at.
    root: &'a str,
    /// The first object parsed (usually the only one: the root), by the
    /// address of its text, kept inline so that a record of flat JSON
    /// costs no list.
    first: OnceCell<(usize, Members<'a>)>,
    /// The other objects parsed so far, by the address of their text (a
    /// record has few: a list is enough, and its order is the lookups'
    /// order).
    others: RefCell<Vec<(usize, Members<'a>)>>,
}

/// An object's members in document order, or why it has none: a key that
/// is JSON by its grammar but not text (an escaped lone surrogate).
type Members<'a> = Result<Vec<(Cow<'a, str>, &'a RawValue)>, String>;

impl<'a> Document<'a> {
    pub fn new(root: &'a RawValue) -> Self {
        Self::of_text(root.get())
    }

    fn of_text(root: &'a str) -> Self {
        Self {
            root,
            first: OnceCell::new(),
            others: RefCell::new(Vec::new()),
        }
    }

    /// The document of `text` if it is one JSON object (its grammar and its
    /// keys' text checked, its members found) in a single pass; `None` if
    /// it is not, or not entirely valid: the caller then checks the text
    /// with [`RawValue`] first, which says what is wrong, and the lookups
    /// find what a document of it finds.
    pub fn object(text: &'a str) -> Option<Self> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let members = deserializer.deserialize_map(MembersVisitor).ok()?;
        deserializer.end().ok()?;
        let document = Self::of_text(text);
        let first = document
            .first
            .set((object_address(text), Ok(members)))
            .is_ok();
        debug_assert!(first, "a new document has no object yet");
        Some(document)
    }

    /// The same document, its paths starting at `root` (a value inside it).
    pub fn rooted_at(self, root: &'a RawValue) -> Self {
        Self {
            root: root.get(),
            ..self
        }
    }

    /// The field at `path` from the root.
    pub fn lookup(&self, path: &FieldPath) -> Found<'a> {
        let mut object = self.root;
        let mut found = None;
        let last = path.segments().len() - 1;
        for (index, segment) in path.segments().iter().enumerate() {
            match self.member_of_text(object, segment) {
                Found::Value(value) => {
                    object = value.get();
                    found = Some(value);
                }
                // A null on the way: the path crosses it.
                Found::Null if index < last => return Found::Inside(JsonKind::Null),
                other => return other,
            }
        }
        Found::Value(found.expect("a field path has a segment"))
    }

    /// The member `key` of `object` (the last one if the key is repeated,
    /// as most JSON readers do).
    pub fn member(&self, object: &'a RawValue, key: &str) -> Found<'a> {
        self.member_of_text(object.get(), key)
    }

    fn member_of_text(&self, object: &'a str, key: &str) -> Found<'a> {
        let kind = JsonKind::of_text(object);
        if kind != JsonKind::Object {
            return Found::Inside(kind);
        }
        let address = object_address(object);
        let (at, first) = self.first.get_or_init(|| (address, members(object)));
        if *at == address {
            return find_member(first, key);
        }
        let mut others = self.others.borrow_mut();
        let index = match others.iter().position(|(at, _)| *at == address) {
            Some(index) => index,
            None => {
                others.push((address, members(object)));
                others.len() - 1
            }
        };
        find_member(&others[index].1, key)
    }
}

/// The member `key` (the last one if repeated) of an object's members.
fn find_member<'a>(members: &Members<'a>, key: &str) -> Found<'a> {
    let members = match members {
        Ok(members) => members,
        Err(reason) => return Found::Invalid(reason.clone()),
    };
    match members.iter().rev().find(|(name, _)| name == key) {
        Some((_, value)) if JsonKind::of(value) == JsonKind::Null => Found::Null,
        Some((_, value)) => Found::Value(value),
        None => Found::Missing,
    }
}

/// Where an object's text starts, after any whitespace: one object has one
/// address whether its text was given with the whitespace around it (the
/// document's root) or without (a member's [`RawValue`]).
fn object_address(text: &str) -> usize {
    text.trim_start().as_ptr() as usize
}

fn members(object: &str) -> Members<'_> {
    let mut deserializer = serde_json::Deserializer::from_str(object);
    deserializer
        .deserialize_map(MembersVisitor)
        // The grammar was checked before any lookup, but not the strings.
        .map_err(|error| format!("the value is not valid JSON text: {error}"))
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key_seed(KeyText)? {
            members.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(members)
    }
}

/// A key, borrowed from the document unless it has escapes.
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyText {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_string()))
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
