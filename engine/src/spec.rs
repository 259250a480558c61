//! The window spec of `eddy window` as JSON (the format for users:
//! `docs/eddy-window.md`):
//!
//! ```json
//! {"window": {"kind": "tumbling", "size": 10000, "offset": 0},
//!  "out_of_orderness": 5000, "allowed_lateness": 2000}
//! ```
//!
//! Other windows: `{"kind": "sliding", "size": …, "slide": …, "offset": 0}`
//! and `{"kind": "session", "gap": …}`; `offset` is optional (0). Times are
//! ms. Unknown fields are refused: a misspelt optional field would otherwise
//! silently change the result.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::watermark::WatermarkConfig;
use crate::window::{WindowConfig, WindowKind};

/// The `window` object of a spec, as written (not yet validated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowKindSpec {
    Tumbling {
        #[serde(rename = "size")]
        size_ms: i64,
        #[serde(rename = "offset", default)]
        offset_ms: i64,
    },
    Sliding {
        #[serde(rename = "size")]
        size_ms: i64,
        #[serde(rename = "slide")]
        slide_ms: i64,
        #[serde(rename = "offset", default)]
        offset_ms: i64,
    },
    Session {
        #[serde(rename = "gap")]
        gap_ms: i64,
    },
}

/// A window spec file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub window: WindowKindSpec,
    /// `D`, the bounded out-of-orderness of the watermark.
    #[serde(rename = "out_of_orderness")]
    pub out_of_orderness_ms: i64,
    /// `L`, the allowed lateness.
    #[serde(rename = "allowed_lateness")]
    pub allowed_lateness_ms: i64,
}

impl WindowSpec {
    /// Parses and validates a spec.
    pub fn from_json(text: &str) -> Result<Self> {
        let spec: WindowSpec =
            serde_json::from_str(text).map_err(|error| Error::Invalid(error.to_string()))?;
        spec.window_config()?;
        spec.watermark_config()?;
        Ok(spec)
    }

    pub fn window_kind(&self) -> Result<WindowKind> {
        match self.window {
            WindowKindSpec::Tumbling { size_ms, offset_ms } => {
                WindowKind::tumbling(size_ms, offset_ms)
            }
            WindowKindSpec::Sliding {
                size_ms,
                slide_ms,
                offset_ms,
            } => WindowKind::sliding(size_ms, slide_ms, offset_ms),
            WindowKindSpec::Session { gap_ms } => WindowKind::session(gap_ms),
        }
    }

    pub fn window_config(&self) -> Result<WindowConfig> {
        WindowConfig::new(self.window_kind()?, self.allowed_lateness_ms)
    }

    /// The watermark configuration (`eddy window` reads one partition: no
    /// idleness).
    pub fn watermark_config(&self) -> Result<WatermarkConfig> {
        WatermarkConfig::new(self.out_of_orderness_ms, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_parses() {
        let spec = WindowSpec::from_json(
            r#"{"window": {"kind": "tumbling", "size": 10000, "offset": 0}, "out_of_orderness": 5000, "allowed_lateness": 2000}"#,
        )
        .unwrap();
        assert_eq!(
            spec.window_config().unwrap(),
            WindowConfig {
                kind: WindowKind::Tumbling {
                    size_ms: 10_000,
                    offset_ms: 0
                },
                allowed_lateness_ms: 2_000
            }
        );
        assert_eq!(spec.watermark_config().unwrap().out_of_orderness_ms, 5_000);
    }

    #[test]
    fn the_offset_is_optional_and_every_kind_parses() {
        for text in [
            r#"{"window": {"kind": "tumbling", "size": 10}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
            r#"{"window": {"kind": "sliding", "size": 10, "slide": 5}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
            r#"{"window": {"kind": "sliding", "size": 10, "slide": 5, "offset": -3}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
            r#"{"window": {"kind": "session", "gap": 10}, "out_of_orderness": 1, "allowed_lateness": 2}"#,
        ] {
            WindowSpec::from_json(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        }
    }

    #[test]
    fn unknown_or_missing_fields_and_bad_values_are_refused_with_a_reason() {
        for (text, reason) in [
            (
                r#"{"window": {"kind": "tumbling", "size": 10, "ofset": 5}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "ofset",
            ),
            (
                r#"{"window": {"kind": "tumbling", "size": 10}, "out_of_orderness": 0, "allowed_lateness": 0, "x": 1}"#,
                "x",
            ),
            (
                r#"{"window": {"kind": "tumbling", "size": 10}, "allowed_lateness": 0}"#,
                "out_of_orderness",
            ),
            (
                r#"{"window": {"kind": "hopping", "size": 10}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "hopping",
            ),
            (
                r#"{"window": {"kind": "session", "gap": 10, "size": 3}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "size",
            ),
            (
                r#"{"window": {"kind": "tumbling", "size": 0}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "size must be > 0",
            ),
            (
                r#"{"window": {"kind": "sliding", "size": 5, "slide": 10}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "must be >= slide",
            ),
            (
                r#"{"window": {"kind": "session", "gap": -1}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "gap",
            ),
            (
                r#"{"window": {"kind": "session", "gap": 1}, "out_of_orderness": -1, "allowed_lateness": 0}"#,
                "out-of-orderness",
            ),
            (
                r#"{"window": {"kind": "session", "gap": 1}, "out_of_orderness": 0, "allowed_lateness": -1}"#,
                "lateness",
            ),
            (
                r#"{"window": {"kind": "tumbling", "size": 1.5}, "out_of_orderness": 0, "allowed_lateness": 0}"#,
                "expected i64 at line 1 column 44",
            ),
        ] {
            let error = WindowSpec::from_json(text).expect_err(text).to_string();
            assert!(
                error.contains(reason),
                "{text}: {error:?} does not mention {reason:?}"
            );
        }
    }
}
