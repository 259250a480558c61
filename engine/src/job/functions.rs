//! Named process-window functions: a function of all of a window's
//! records (Flink's `ProcessWindowFunction`) that a job names in its
//! aggregates (`process = "click-session-summary"`).
//!
//! A function declares the fields it reads (its inputs, each a name and a
//! type; the job reads input `page_url` at path `page_url` unless it maps
//! it elsewhere) and the output fields it writes, in order. It is called at
//! every firing with the window's records in arrival order, each record a
//! [`Row`] of its inputs in declared order.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::aggregate::{Element, WindowContext};
use crate::error::{Error, Result};

use super::value::{FieldType, OutputValue, Row};

/// The signature of a process-window function.
pub type ProcessFn =
    dyn Fn(&WindowContext<'_>, &[Element<Row>]) -> Result<Vec<OutputValue>> + Send + Sync;

/// One field a process-window function reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInput {
    pub name: String,
    pub field_type: FieldType,
}

/// A process-window function with its declared inputs and outputs.
#[derive(Clone)]
pub struct ProcessWindow {
    inputs: Vec<ProcessInput>,
    outputs: Vec<String>,
    function: Arc<ProcessFn>,
}

impl fmt::Debug for ProcessWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessWindow")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl ProcessWindow {
    /// A function reading `inputs` (name, type) and writing `outputs`, in
    /// order; it must return one value per output.
    pub fn new<'n>(
        inputs: impl IntoIterator<Item = (&'n str, FieldType)>,
        outputs: impl IntoIterator<Item = &'n str>,
        function: impl Fn(&WindowContext<'_>, &[Element<Row>]) -> Result<Vec<OutputValue>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            inputs: inputs
                .into_iter()
                .map(|(name, field_type)| ProcessInput {
                    name: name.to_string(),
                    field_type,
                })
                .collect(),
            outputs: outputs.into_iter().map(str::to_string).collect(),
            function: Arc::new(function),
        }
    }

    pub fn inputs(&self) -> &[ProcessInput] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Calls the function; a result of the wrong length is an error.
    pub fn call(
        &self,
        name: &str,
        context: &WindowContext<'_>,
        records: &[Element<Row>],
    ) -> Result<Vec<OutputValue>> {
        let values = (self.function)(context, records)?;
        if values.len() != self.outputs.len() {
            return Err(Error::Invalid(format!(
                "process-window function {name:?} returned {} values for its {} outputs ({})",
                values.len(),
                self.outputs.len(),
                self.outputs.join(", ")
            )));
        }
        Ok(values)
    }

    /// Refuses a function without outputs, or with a name used twice.
    fn check(&self) -> std::result::Result<(), String> {
        if self.outputs.is_empty() {
            return Err("it declares no output fields".to_string());
        }
        let mut outputs = BTreeSet::new();
        if let Some(twice) = self
            .outputs
            .iter()
            .find(|name| !outputs.insert(name.as_str()))
        {
            return Err(format!("it declares output {twice:?} twice"));
        }
        let mut inputs = BTreeSet::new();
        if let Some(twice) = self
            .inputs
            .iter()
            .find(|input| !inputs.insert(input.name.as_str()))
        {
            return Err(format!("it declares input {:?} twice", twice.name));
        }
        Ok(())
    }
}

/// The name of the built-in click-session summary.
pub const CLICK_SESSION_SUMMARY: &str = "click-session-summary";

/// Process-window functions by name: the built-ins, and those a Rust
/// program registers.
#[derive(Clone, Debug)]
pub struct Functions {
    by_name: std::collections::BTreeMap<String, ProcessWindow>,
}

impl Default for Functions {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Functions {
    /// The built-in functions: [`CLICK_SESSION_SUMMARY`].
    pub fn builtin() -> Self {
        let mut functions = Self {
            by_name: std::collections::BTreeMap::new(),
        };
        functions
            .register(CLICK_SESSION_SUMMARY, click_session_summary())
            .expect("the built-in functions are valid");
        functions
    }

    /// Registers `function` as `name`; a name already taken (a built-in
    /// included) or a malformed function is refused.
    pub fn register(&mut self, name: &str, function: ProcessWindow) -> Result<()> {
        if name.is_empty() {
            return Err(Error::Invalid(
                "a process-window function needs a name".to_string(),
            ));
        }
        if self.by_name.contains_key(name) {
            return Err(Error::Invalid(format!(
                "process-window function {name:?} is already registered"
            )));
        }
        function.check().map_err(|reason| {
            Error::Invalid(format!("process-window function {name:?}: {reason}"))
        })?;
        self.by_name.insert(name.to_string(), function);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&ProcessWindow> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// The summary of a click session: first and last click time, their
/// distance, distinct pages, clicks, and whether any page was under
/// `/checkout`. Input: `page_url` (string; a `null` page counts as a click
/// but not as a page).
pub fn click_session_summary() -> ProcessWindow {
    ProcessWindow::new(
        [("page_url", FieldType::String)],
        [
            "session_start",
            "session_end",
            "duration_ms",
            "page_count",
            "click_count",
            "converted",
        ],
        summarize_clicks,
    )
}

fn summarize_clicks(
    context: &WindowContext<'_>,
    records: &[Element<Row>],
) -> Result<Vec<OutputValue>> {
    let (Some(start), Some(end)) = (
        records.iter().map(|record| record.ts).min(),
        records.iter().map(|record| record.ts).max(),
    ) else {
        panic!(
            "a window fires with records: window {} of key {:?}",
            context.window, &**context.key
        );
    };
    let pages: BTreeSet<&str> = records
        .iter()
        .filter_map(|record| record.value.str(0))
        .collect();
    let converted = pages.iter().any(|page| page.starts_with("/checkout"));
    let duration_ms = end
        .checked_sub(start)
        .ok_or_else(|| Error::Overflow(format!("session duration {end} - {start} exceeds i64")))?;
    Ok(vec![
        OutputValue::Integer(start),
        OutputValue::Integer(end),
        OutputValue::Integer(duration_ms),
        OutputValue::Unsigned(pages.len() as u64),
        OutputValue::Unsigned(records.len() as u64),
        OutputValue::Boolean(converted),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::value::Scalar;
    use crate::record::Key;
    use crate::time::TimeWindow;

    fn click(ts: i64, arrival: u64, page: Option<&str>) -> Element<Row> {
        Element {
            ts,
            arrival,
            value: Row(vec![page.map(|page| Scalar::String(page.to_string()))]),
        }
    }

    #[test]
    fn a_click_session_with_a_checkout_page_is_summarized_and_converted() {
        let key = Key::from("u1");
        let context = WindowContext {
            key: &key,
            window: TimeWindow::new(1_000, 1_000 + 5_000 + 1_800_000),
        };
        let records = [
            click(1_000, 0, Some("/home")),
            click(5_000, 1, Some("/checkout/pay")),
            click(3_000, 2, Some("/home")),
            click(4_000, 3, None),
        ];
        let summary = click_session_summary();
        let values = summary
            .call(CLICK_SESSION_SUMMARY, &context, &records)
            .unwrap();
        assert_eq!(
            values,
            vec![
                OutputValue::Integer(1_000),
                OutputValue::Integer(5_000),
                OutputValue::Integer(4_000),
                OutputValue::Unsigned(2),
                OutputValue::Unsigned(4),
                OutputValue::Boolean(true),
            ]
        );
        let browsing = [
            click(1_000, 0, Some("/checkoutx")),
            click(2_000, 1, Some("/cart")),
        ];
        let values = summary
            .call(CLICK_SESSION_SUMMARY, &context, &browsing)
            .unwrap();
        assert_eq!(values[5], OutputValue::Boolean(true), "a prefix match");
        let browsing = [click(1_000, 0, Some("/cart/checkout"))];
        let values = summary
            .call(CLICK_SESSION_SUMMARY, &context, &browsing)
            .unwrap();
        assert_eq!(
            values[5],
            OutputValue::Boolean(false),
            "not under /checkout"
        );
    }

    #[test]
    fn registering_a_taken_name_or_a_malformed_function_is_refused() {
        let mut functions = Functions::builtin();
        let error = functions
            .register(CLICK_SESSION_SUMMARY, click_session_summary())
            .unwrap_err();
        assert!(error.to_string().contains("already registered"), "{error}");
        let no_outputs = ProcessWindow::new([], [], |_, _| Ok(vec![]));
        let error = functions.register("empty", no_outputs).unwrap_err();
        assert!(error.to_string().contains("no output fields"), "{error}");
        let twice = ProcessWindow::new([], ["a", "a"], |_, _| Ok(vec![]));
        assert!(functions.register("twice", twice).is_err());
        let wrong_length = ProcessWindow::new([], ["a", "b"], |_, _| Ok(vec![OutputValue::Null]));
        functions.register("short", wrong_length).unwrap();
        let key = Key::from("k");
        let context = WindowContext {
            key: &key,
            window: TimeWindow::new(0, 1),
        };
        let error = functions
            .get("short")
            .unwrap()
            .call("short", &context, &[])
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("returned 1 values for its 2 outputs"),
            "{error}"
        );
    }
}
