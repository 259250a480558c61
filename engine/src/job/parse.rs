//! Reading a job file: TOML into [`JobSpec`], with every error on one
//! line naming the file, the line and the TOML path of the key at fault
//! (`jobs/x.toml:7: window.ofset: unknown field ...`).
//!
//! The `toml` crate reports where an error is (a byte span) but not the
//! key path, so the path is found by walking the document's spanned tree
//! to the deepest key or value whose span holds the error's.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::spec::JobSpec;
use crate::error::{Error, Result};

/// Parses a job file's text; `origin` names it in errors.
pub fn parse_job_spec(text: &str, origin: &str) -> Result<JobSpec> {
    toml::from_str::<JobSpec>(text).map_err(|error| describe(text, origin, &error))
}

fn describe(text: &str, origin: &str, error: &toml::de::Error) -> Error {
    let message = error.message().trim().replace('\n', "; ");
    let Some(span) = error.span() else {
        return Error::Invalid(format!("{origin}: {message}"));
    };
    let line = 1 + text[..span.start.min(text.len())]
        .bytes()
        .filter(|byte| *byte == b'\n')
        .count();
    let path = DeTable::parse(text)
        .ok()
        .and_then(|document| path_in_table(document.get_ref(), &span))
        .map(|segments| render(&segments))
        .unwrap_or_default();
    if path.is_empty() {
        Error::Invalid(format!("{origin}:{line}: {message}"))
    } else {
        Error::Invalid(format!("{origin}:{line}: {path}: {message}"))
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn render(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The path of the deepest key or value in `table` whose span holds
/// `span`, if any.
fn path_in_table(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Segment>> {
    for (key, value) in table.iter() {
        let here = || vec![Segment::Key(key.get_ref().to_string())];
        if holds(&key.span(), span) {
            return Some(here());
        }
        if let Some(deeper) = path_in_value(value, span) {
            let mut path = here();
            path.extend(deeper);
            return Some(path);
        }
        if holds(&value.span(), span) {
            return Some(here());
        }
    }
    None
}

/// The path below `value` (a table or an array) of what holds `span`.
fn path_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Vec<Segment>> {
    match value.get_ref() {
        DeValue::Table(table) => path_in_table(table, span),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            let deeper = path_in_value(item, span);
            if deeper.is_none() && !holds(&item.span(), span) {
                return None;
            }
            let mut path = vec![Segment::Index(index)];
            path.extend(deeper.unwrap_or_default());
            Some(path)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "counts"

[input]
topics = ["clicks"]
key = "user_id"

[event_time]
field = "ts"

[window]
kind = "tumbling"
size_ms = 1000

[[aggregates]]
name = "n"
function = "count"

[output]
topic = "counts"
late_topic = "counts-late"
dead_letter_topic = "counts-dead"
"#;

    fn error_of(text: &str) -> String {
        parse_job_spec(text, "jobs/x.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_file_parses_with_its_defaults() {
        let spec = parse_job_spec(MINIMAL, "jobs/x.toml").unwrap();
        assert_eq!(spec.name, "counts");
        assert_eq!(spec.output.key_field, "key");
        assert_eq!(spec.checkpoint.interval_ms, 10_000);
        assert_eq!(spec.delivery.transaction_timeout_ms, 60_000);
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file_line_and_path() {
        let text = MINIMAL.replace("size_ms = 1000", "size_ms = 1000\nofset_ms = 5");
        let error = error_of(&text);
        assert!(
            error.starts_with("jobs/x.toml:14: window.ofset_ms: unknown field `ofset_ms`"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error:?}");
        let text = MINIMAL.replace("name = \"counts\"", "name = \"counts\"\nnmae = 1");
        assert!(
            error_of(&text).starts_with("jobs/x.toml:3: nmae: unknown field"),
            "{}",
            error_of(&text)
        );
    }

    #[test]
    fn a_wrong_type_is_named_with_the_file_line_and_path() {
        let text = MINIMAL.replace("size_ms = 1000", "size_ms = \"1000\"");
        let error = error_of(&text);
        assert!(
            error.starts_with("jobs/x.toml:13: window.size_ms: invalid type: string"),
            "{error}"
        );
        let text = MINIMAL.replace("function = \"count\"", "function = \"median\"");
        let error = error_of(&text);
        assert!(
            error.starts_with("jobs/x.toml:17: aggregates[0].function: unknown variant `median`"),
            "{error}"
        );
        let text = MINIMAL.replace("topics = [\"clicks\"]", "topics = [\"clicks\", 5]");
        let error = error_of(&text);
        assert!(
            error.starts_with("jobs/x.toml:5: input.topics[1]: invalid type: integer"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_key_names_its_table_and_a_syntax_error_its_line() {
        let text = MINIMAL.replace("key = \"user_id\"\n", "");
        let error = error_of(&text);
        assert_eq!(error, "jobs/x.toml:4: input: missing field `key`");
        let error = error_of("name = \"x\"\n[input\n");
        assert!(error.starts_with("jobs/x.toml:2: "), "{error}");
        assert!(!error.contains('\n'), "{error:?}");
    }
}
