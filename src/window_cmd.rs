//! `eddy window --spec SPEC.json --input EVENTS.jsonl`: the engine's
//! windowing over one in-memory partition, firings and late records as JSON
//! lines on stdout. The file formats are in `docs/eddy-window.md`, the rules
//! in `docs/semantics.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eddyline_engine::aggregate::{Summary, SummaryResult};
use eddyline_engine::spec::WindowSpec;
use eddyline_engine::window::{Output, WindowTask};
use eddyline_engine::{Error, Record};
use serde::{Deserialize, Serialize};

use crate::{CliError, Outcome};

const LONG_ABOUT: &str = "\
Runs the engine's event-time windowing over one in-memory partition and \
writes every firing and late record as one JSON object per line on stdout, \
in emission order. Watermarks are bounded out-of-orderness, \
computed per record; at the end of the input the watermark goes to \
i64::MAX and every pending window fires.

SPEC.json (times in ms; unknown fields are refused, `offset` is optional):
  {\"window\": {\"kind\": \"tumbling\", \"size\": 10000, \"offset\": 0},
   \"out_of_orderness\": 5000, \"allowed_lateness\": 2000}
  other windows: {\"kind\": \"sliding\", \"size\": 30000, \"slide\": 10000, \"offset\": 0}
                 {\"kind\": \"session\", \"gap\": 30000}
  Sliding windows need size >= slide (else records would fall between \
windows and be dropped silently).

EVENTS.jsonl, in arrival order, one object per line:
  {\"key\": \"u1\", \"ts\": 1000, \"value\": 5}
  key: any JSON string; ts and value: integers in the i64 range. Other \
fields are ignored (all three are required, so a misspelt one is still an \
error). Blank lines are skipped and do not count as events.

Output, one object per line:
  firing: {\"key\", \"window_start\", \"window_end\", \"count\", \"sum\", \
\"min_ts\", \"max_ts\", \"kind\": \"on_time\"|\"late_update\", \"step\", \"watermark\"}
  late record: {\"late\": {\"key\", \"ts\", \"value\"}, \"step\", \"watermark\"}
  step: the 0-based index of the event that caused the output (the number \
of events for the end of input); watermark: the watermark at emission (the \
one the record was judged against for its own outputs, the raised one for \
on-time firings, i64::MAX at the end). Within a step, the record's own \
outputs come first, then on-time firings by window_end (then key).

Exit status: 0 on success; 2 on bad usage or bad input: an unreadable file, \
a bad spec, a malformed event line (the message names FILE:LINE), a \
timestamp whose window does not fit i64, or a window sum that overflows \
i64; 1 on any other failure (stdout cannot be written). On error nothing \
is written to stdout.

The formats and the rules in full: docs/eddy-window.md and \
docs/semantics.md in the repository.";

#[derive(clap::Args, Debug)]
#[command(
    about = "Run the engine's windowing over one in-memory partition (JSON lines out)",
    long_about = LONG_ABOUT
)]
pub struct WindowArgs {
    /// The window spec (JSON): window kind and sizes, out-of-orderness, allowed lateness.
    #[arg(long, value_name = "SPEC.json")]
    spec: PathBuf,
    /// The events (JSON lines), in arrival order.
    #[arg(long, value_name = "EVENTS.jsonl")]
    input: PathBuf,
}

/// One input line. Unknown fields are ignored (see the help text).
#[derive(Deserialize)]
struct Event {
    key: String,
    ts: i64,
    value: i64,
}

#[derive(Serialize)]
struct FiringLine<'a> {
    key: &'a str,
    window_start: i64,
    window_end: i64,
    count: u64,
    sum: i64,
    min_ts: i64,
    max_ts: i64,
    kind: &'static str,
    step: usize,
    watermark: i64,
}

#[derive(Serialize)]
struct LateRecordFields<'a> {
    key: &'a str,
    ts: i64,
    value: i64,
}

#[derive(Serialize)]
struct LateLine<'a> {
    late: LateRecordFields<'a>,
    step: usize,
    watermark: i64,
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|error| CliError::BadInput(format!("cannot read {}: {error}", path.display())))
}

/// An engine error while windowing the events: the input's fault (a
/// timestamp whose window does not fit `i64`, a sum that overflows) or,
/// for what the input cannot cause, an internal failure.
fn engine_error(error: Error, at: String) -> CliError {
    match error {
        Error::Invalid(_) | Error::Overflow(_) | Error::BadRecord(_) => {
            CliError::BadInput(format!("{at}: {error}"))
        }
        // No snapshot or store is used here: such an error is a broken
        // invariant.
        Error::CorruptSnapshot(_) | Error::MissingSnapshot(_) | Error::Store(_) | Error::Io(_) => {
            CliError::Internal(format!("{at}: {error}"))
        }
    }
}

/// A serde_json error without its " at line 1 column N" suffix (every
/// event is one line: the file's line number is given instead).
fn json_reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = match text.strip_suffix(&suffix) {
        Some(reason) if error.column() > 0 => format!("{reason} (column {})", error.column()),
        Some(reason) => reason.to_string(),
        None => text,
    };
    match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON: {reason}")
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => reason,
    }
}

fn write_outputs(outputs: &mut Vec<Output<i64, SummaryResult>>, step: usize, stdout: &mut Vec<u8>) {
    for output in outputs.drain(..) {
        let written = match &output {
            Output::Fire(firing) => serde_json::to_writer(
                &mut *stdout,
                &FiringLine {
                    key: &firing.key,
                    window_start: firing.window.start,
                    window_end: firing.window.end,
                    count: firing.result.count,
                    sum: firing.result.sum,
                    min_ts: firing.result.min_ts,
                    max_ts: firing.result.max_ts,
                    kind: firing.kind.as_str(),
                    step,
                    watermark: firing.watermark,
                },
            ),
            Output::Late(late) => serde_json::to_writer(
                &mut *stdout,
                &LateLine {
                    late: LateRecordFields {
                        key: &late.record.key,
                        ts: late.record.ts,
                        value: late.record.value,
                    },
                    step,
                    watermark: late.watermark,
                },
            ),
        };
        written.expect("serializing to memory cannot fail");
        stdout.push(b'\n');
    }
}

/// Runs the windowing; returns the whole output, or the one-line error.
pub fn evaluate(spec_path: &Path, input_path: &Path) -> Result<Vec<u8>, CliError> {
    let spec_text = String::from_utf8(read(spec_path)?)
        .map_err(|_| CliError::BadInput(format!("{}: not valid UTF-8", spec_path.display())))?;
    let spec = WindowSpec::from_json(&spec_text)
        .map_err(|error| CliError::BadInput(format!("{}: {error}", spec_path.display())))?;
    let input = read(input_path)?;
    let input_name = input_path.display();

    // `from_json` validated the spec: a task it cannot build is our fault.
    let validated = |error: Error| {
        CliError::Internal(format!(
            "{}: the validated spec was refused: {error}",
            spec_path.display()
        ))
    };
    let mut task: WindowTask<(), i64, Summary> = WindowTask::new(
        spec.watermark_config().map_err(validated)?,
        spec.window_config().map_err(validated)?,
        Summary,
        [()],
        Duration::ZERO,
    )
    .map_err(validated)?;
    let mut outputs = Vec::new();
    let mut stdout = Vec::new();
    let mut step = 0usize;
    for (index, line) in input.split(|byte| *byte == b'\n').enumerate() {
        let line_number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|_| {
            CliError::BadInput(format!("{input_name}:{line_number}: not valid UTF-8"))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(line).map_err(|error| {
            CliError::BadInput(format!(
                "{input_name}:{line_number}: {}",
                json_reason(&error)
            ))
        })?;
        task.process(
            &(),
            Record::new(event.key, event.ts, event.value),
            Duration::ZERO,
            &mut outputs,
        )
        .map_err(|error| engine_error(error, format!("{input_name}:{line_number}")))?;
        write_outputs(&mut outputs, step, &mut stdout);
        step += 1;
    }
    task.finish(&mut outputs)
        .map_err(|error| engine_error(error, format!("{input_name}: at the end of input")))?;
    write_outputs(&mut outputs, step, &mut stdout);
    Ok(stdout)
}

pub fn run(args: &WindowArgs) -> Result<Outcome, CliError> {
    let output = evaluate(&args.spec, &args.input)?;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&output).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Outcome::Success),
        // A reader that stopped early (`| head`) is not an error of ours.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        // Not the input's fault (a full disk, a closed terminal): exit 1.
        Err(error) => Err(CliError::Internal(format!(
            "cannot write to stdout: {error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_input_causes_is_bad_input_and_the_rest_is_internal() {
        let at = || "events.jsonl:3".to_string();
        assert_eq!(
            engine_error(Error::Invalid("timestamp out of range".to_string()), at()),
            CliError::BadInput("events.jsonl:3: timestamp out of range".to_string())
        );
        assert_eq!(
            engine_error(Error::Overflow("sum".to_string()), at()),
            CliError::BadInput("events.jsonl:3: aggregate overflow: sum".to_string())
        );
        assert_eq!(
            engine_error(Error::CorruptSnapshot("bad".to_string()), at()),
            CliError::Internal("events.jsonl:3: corrupt snapshot: bad".to_string())
        );
    }
}
