//! The reference model: a plain batch evaluator of the event-time
//! semantics (`docs/semantics.md`) over each input partition's committed
//! input, written for obviousness, not speed.
//!
//! One task per input partition, as the engine runs a job with one input
//! topic (a job with several input topics is refused: its task watermark
//! is a minimum over co-partitioned inputs, which this model does not
//! evaluate). For every message of the partition, in offset order:
//!
//! 1. the job decodes it (`Job::decode`: decode, filter, key, event time,
//!    aggregate fields): a skipped message is nothing, a bad one becomes a
//!    dead letter (with `on_bad_record = "fail"` the model stops with an
//!    error, as the task would);
//! 2. the record is judged against the watermark from before it: it is
//!    added to each of its windows that is not late (`max_ts + L <= wm`);
//!    a window already reached (`end - 1 <= wm`) fires a `late_update` at
//!    once (sliding: in descending window start; session: after merging);
//!    a record none of whose windows may take it goes to the late output;
//! 3. the watermark becomes `max(wm, max_ts - D - 1)`; if it rose, every
//!    window it reaches that holds records fires `on_time`, in ascending
//!    `(window_end, key)`, and then every window whose cleanup time
//!    (`end - 1 + L`, saturating) it reached is dropped.
//!
//! At the end of the input, step 3 runs with the watermark `i64::MAX`.
//!
//! Idleness is ignored: with one input per task an idle input can only
//! raise the task watermark to its own watermark, which changes nothing.
//!
//! The model stops with an error where the engine's task would stop (an
//! aggregate overflows; a bad record with `on_bad_record = "fail"`), and
//! also for a record whose windows would end outside `i64`, which the
//! engine dead-letters with its own wording (event times end in the year
//! 9999, so only a window of nearly `i64::MAX` ms gets there).
//!
//! The model keeps each window's records as a list (no panes, no timers)
//! and shares no window, watermark or worker code with the engine. It uses
//! the job's value-level code: `Job::decode`, the aggregate accumulators
//! (`create`, `add`, `result`, fed the window's records in arrival order)
//! and the job's `Outputs` encoding, with the plain data types `Firing`,
//! `FiringKind`, `TimeWindow` and `Key`, so that its records are the
//! engine's byte for byte (key, value, timestamp, headers).

use std::collections::BTreeMap;

use eddyline_engine::aggregate::{Aggregator, Input, WindowContext};
use eddyline_engine::job::{Decoded, Job, JobValue, OnBadRecord, WindowKindName};
use eddyline_engine::record::{Key, Record};
use eddyline_engine::time::TimeWindow;
use eddyline_engine::transport::{Message, ProducerRecord};
use eddyline_engine::window::{Firing, FiringKind};

/// One record a task emits, with what the checker needs to know about it.
#[derive(Clone, Debug, PartialEq)]
pub enum Emitted {
    /// A window's firing, to the output topic.
    Firing {
        key: String,
        window_start: i64,
        window_end: i64,
        on_time: bool,
        /// The task's watermark at emission (the record's `eddy.watermark`).
        watermark: i64,
        record: ProducerRecord,
    },
    /// An input record all of whose windows were late, to the late topic.
    Late {
        offset: i64,
        watermark: i64,
        record: ProducerRecord,
    },
    /// A bad input record, to the dead-letter topic.
    DeadLetter {
        offset: i64,
        reason: String,
        record: ProducerRecord,
    },
}

impl Emitted {
    /// The record as the engine's task would produce it.
    pub fn record(&self) -> &ProducerRecord {
        match self {
            Emitted::Firing { record, .. }
            | Emitted::Late { record, .. }
            | Emitted::DeadLetter { record, .. } => record,
        }
    }
}

/// What the reference tasks emit, per task (= input partition), in
/// emission order.
pub type ReferenceOutput = BTreeMap<i32, Vec<Emitted>>;

/// Runs the reference model over every input partition.
pub fn evaluate(job: &Job, input: &BTreeMap<i32, Vec<Message>>) -> Result<ReferenceOutput, String> {
    input
        .iter()
        .map(|(task, messages)| Ok((*task, evaluate_task(job, *task, messages)?)))
        .collect()
}

/// Runs the reference task `task` over `messages` (its partition, in
/// offset order) to the end of input.
pub fn evaluate_task(job: &Job, task: i32, messages: &[Message]) -> Result<Vec<Emitted>, String> {
    let mut model = Model::new(job, task)?;
    for message in messages {
        model.message(message)?;
    }
    model.advance(i64::MAX)?;
    Ok(model.emitted)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling { size: i64, offset: i64 },
    Sliding { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
}

/// A window's records: (arrival = input offset, record).
type Contents = Vec<(i64, Record<JobValue>)>;

struct Model<'a> {
    job: &'a Job,
    task: i32,
    kind: Kind,
    out_of_orderness: i64,
    lateness: i64,
    watermark: i64,
    max_ts: Option<i64>,
    /// Live windows (for sessions: live sessions) by (key, start, end).
    windows: BTreeMap<(String, i64, i64), Contents>,
    emitted: Vec<Emitted>,
}

fn narrow(value: i128, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} is outside i64"))
}

impl<'a> Model<'a> {
    fn new(job: &'a Job, task: i32) -> Result<Self, String> {
        if job.input_topics().len() != 1 {
            return Err(format!(
                "the reference model evaluates jobs with one input topic; {:?} reads {:?}",
                job.name(),
                job.input_topics()
            ));
        }
        let spec = job.spec();
        let window = &spec.window;
        let need =
            |value: Option<i64>, what: &str| value.ok_or_else(|| format!("window without {what}"));
        let kind = match window.kind {
            WindowKindName::Tumbling => Kind::Tumbling {
                size: need(window.size_ms, "size_ms")?,
                offset: window.offset_ms.unwrap_or(0),
            },
            WindowKindName::Sliding => Kind::Sliding {
                size: need(window.size_ms, "size_ms")?,
                slide: need(window.slide_ms, "slide_ms")?,
                offset: window.offset_ms.unwrap_or(0),
            },
            WindowKindName::Session => Kind::Session {
                gap: need(window.gap_ms, "gap_ms")?,
            },
        };
        Ok(Model {
            job,
            task,
            kind,
            out_of_orderness: spec.event_time.out_of_orderness_ms,
            lateness: window.allowed_lateness_ms,
            watermark: i64::MIN,
            max_ts: None,
            windows: BTreeMap::new(),
            emitted: Vec::new(),
        })
    }

    fn message(&mut self, message: &Message) -> Result<(), String> {
        if *message.topic != *self.job.input_topics()[0] || message.partition != self.task {
            return Err(format!(
                "task {} was given {}-{}@{}",
                self.task, message.topic, message.partition, message.offset
            ));
        }
        match self.job.decode(message) {
            Decoded::Skipped(_) => Ok(()),
            Decoded::Bad(reason) => self.bad(message, reason),
            Decoded::Record(record) => {
                let ts = record.ts;
                self.record(message, record)?;
                let max_ts = self.max_ts.map_or(ts, |max_ts| max_ts.max(ts));
                self.max_ts = Some(max_ts);
                let candidate = i128::from(max_ts) - i128::from(self.out_of_orderness) - 1;
                let candidate = narrow(candidate.max(i128::from(i64::MIN)), "watermark")?;
                if candidate > self.watermark {
                    self.advance(candidate)?;
                }
                Ok(())
            }
        }
    }

    fn bad(&mut self, message: &Message, reason: String) -> Result<(), String> {
        if self.job.on_bad_record() == OnBadRecord::Fail {
            return Err(format!(
                "the job stops at a bad record: {}-{}@{}: {reason}",
                message.topic, message.partition, message.offset
            ));
        }
        let record = self.job.outputs().dead_letter(message, &reason);
        self.emitted.push(Emitted::DeadLetter {
            offset: message.offset,
            reason,
            record,
        });
        Ok(())
    }

    /// `end - 1 + L`, saturating.
    fn cleanup_time(&self, end: i64) -> i64 {
        (end - 1).saturating_add(self.lateness)
    }

    fn window_is_late(&self, end: i64) -> bool {
        self.cleanup_time(end) <= self.watermark
    }

    /// The record's windows, sliding ones in descending start.
    fn windows_of(&self, ts: i64) -> Result<Vec<(i64, i64)>, String> {
        let t = i128::from(ts);
        let bounds = |start: i128, length: i64| -> Result<(i64, i64), String> {
            Ok((
                narrow(start, "window start")?,
                narrow(start + i128::from(length), "window end")?,
            ))
        };
        match self.kind {
            Kind::Tumbling { size, offset } => {
                let start = t - (t - i128::from(offset)).rem_euclid(i128::from(size));
                Ok(vec![bounds(start, size)?])
            }
            Kind::Sliding {
                size,
                slide,
                offset,
            } => {
                let mut start = t - (t - i128::from(offset)).rem_euclid(i128::from(slide));
                let mut windows = Vec::new();
                while start > t - i128::from(size) {
                    windows.push(bounds(start, size)?);
                    start -= i128::from(slide);
                }
                Ok(windows)
            }
            Kind::Session { gap } => Ok(vec![bounds(t, gap)?]),
        }
    }

    /// Step 2: the record against the watermark from before it.
    fn record(&mut self, message: &Message, record: Record<JobValue>) -> Result<(), String> {
        let key = record.key.to_string();
        let windows = match self.kind {
            Kind::Session { .. } => self.session_window(&key, record.ts)?,
            _ => self.windows_of(record.ts)?,
        };
        let mut taken = false;
        for (start, end) in windows {
            if self.window_is_late(end) {
                continue;
            }
            taken = true;
            let id = (key.clone(), start, end);
            let contents = self.windows.entry(id.clone()).or_default();
            contents.push((message.offset, record.clone()));
            if end - 1 <= self.watermark {
                self.fire(&id, false)?;
            }
        }
        if !taken {
            let late =
                i128::from(record.ts) + i128::from(self.lateness) <= i128::from(self.watermark);
            if !late {
                return Err(format!(
                    "the model would drop {}-{}@{} (ts {}) silently",
                    message.topic, message.partition, message.offset, record.ts
                ));
            }
            let out = self.job.outputs().late(message, self.watermark);
            self.emitted.push(Emitted::Late {
                offset: message.offset,
                watermark: self.watermark,
                record: out,
            });
        }
        Ok(())
    }

    /// The session a record at `ts` of `key` goes to: `[ts, ts + gap)`
    /// merged with every live session of the key it overlaps or touches
    /// (their records move to the merged session).
    fn session_window(&mut self, key: &str, ts: i64) -> Result<Vec<(i64, i64)>, String> {
        let (mut start, mut end) = self.windows_of(ts)?[0];
        let (new_start, new_end) = (start, end);
        let touching: Vec<(String, i64, i64)> = self
            .windows
            .keys()
            .filter(|(k, s, e)| k == key && *s <= new_end && *e >= new_start)
            .cloned()
            .collect();
        let mut records = Contents::new();
        for id in touching {
            start = start.min(id.1);
            end = end.max(id.2);
            records.extend(self.windows.remove(&id).expect("a live session"));
        }
        records.sort_by_key(|(arrival, _)| *arrival);
        if !records.is_empty() {
            self.windows.insert((key.to_string(), start, end), records);
        }
        Ok(vec![(start, end)])
    }

    /// Emits the firing of window `id` with all its records so far.
    fn fire(&mut self, id: &(String, i64, i64), on_time: bool) -> Result<(), String> {
        let aggregator = self.job.aggregator();
        let mut acc = aggregator.create();
        for (arrival, record) in &self.windows[id] {
            let input = Input {
                ts: record.ts,
                arrival: *arrival as u64,
                value: &record.value,
            };
            aggregator.add(&mut acc, input).map_err(|e| e.to_string())?;
        }
        let key: Key = Key::from(id.0.as_str());
        let window = TimeWindow::new(id.1, id.2);
        let context = WindowContext { key: &key, window };
        let result = aggregator
            .result(&acc, &context)
            .map_err(|e| e.to_string())?;
        let firing = Firing {
            key,
            window,
            kind: if on_time {
                FiringKind::OnTime
            } else {
                FiringKind::LateUpdate
            },
            result,
            watermark: self.watermark,
        };
        let record = self
            .job
            .outputs()
            .firing(&firing, self.watermark, self.task);
        self.emitted.push(Emitted::Firing {
            key: id.0.clone(),
            window_start: id.1,
            window_end: id.2,
            on_time,
            watermark: self.watermark,
            record,
        });
        Ok(())
    }

    /// Step 3: the watermark rises to `watermark`; windows it reaches fire
    /// on time, in `(end, key)` order; then late windows are dropped.
    fn advance(&mut self, watermark: i64) -> Result<(), String> {
        let before = self.watermark;
        self.watermark = watermark;
        let mut reached: Vec<&(String, i64, i64)> = self
            .windows
            .keys()
            .filter(|(_, _, end)| before < end - 1 && end - 1 <= watermark)
            .collect();
        reached.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        let reached: Vec<(String, i64, i64)> = reached.into_iter().cloned().collect();
        for id in &reached {
            self.fire(id, true)?;
        }
        let lateness = self.lateness;
        self.windows
            .retain(|(_, _, end), _| (end - 1).saturating_add(lateness) > watermark);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
