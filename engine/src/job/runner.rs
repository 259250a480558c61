//! What the worker runs for a job: [`JobLogic`] for [`Job`] and the task
//! of one partition, [`JobTask`], over the window core's [`WindowTask`].
//!
//! Task `p` reads partition `p` of every input topic (its `WindowTask`'s
//! inputs are those topic-partitions, by topic index). Per message: decode
//! → filter → key and event time → window ([`super::decode`]); then the
//! window's outputs, in emission order, become records ([`super::encode`]).
//!
//! # Snapshots
//!
//! A task snapshot is the magic `EDJT`, a little-endian `u16` version, and
//! the postcard encoding of the job's name, its fingerprint (window,
//! watermark and aggregate configuration and input topics), the task
//! number and the `WindowTask` snapshot. Restoring it into another job,
//! another configuration or another task is [`Error::CorruptSnapshot`].
//!
//! # Mutants
//!
//! - [`Mutant::FireEarly`]: the task's watermark ignores the job's
//!   out-of-orderness (`D = 0`): windows fire as soon as a record past
//!   their end arrives, with what they hold so far, and the records that
//!   were out of order by less than `D` come after the firing (as
//!   late updates, or late records beyond the allowed lateness). A job
//!   with `D = 0` is unchanged by it: scenarios that must catch it use
//!   out-of-order input and `D > 0`. The bug it stands for: the windows
//!   fire ahead of the task's watermark, which is still the job's
//!   (`max_ts - D - 1`). So a firing's `eddy.watermark` header carries the
//!   job's watermark (the one the windows fired at, minus `D`), and an
//!   early `on_time` firing shows a watermark below its window's
//!   `window_end - 1`. (A late record's header keeps the watermark it was
//!   judged against, the windows'.)
//! - [`Mutant::DropLate`]: late records are not written to the late topic.
//!
//! Both are asked through the task's `M: Mutants`; with [`Faithful`] the
//! branches compile out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::aggregates::{JobAggregator, JobValue};
use super::decode::Decoded;
use super::definition::Job;
use super::spec::OnBadRecord;
use super::value::OutputValue;
use crate::error::{Error, Result};
use crate::time::EventTime;
use crate::transport::{Message, ProducerRecord};
use crate::watermark::WatermarkConfig;
use crate::window::{Output, WindowTask};
use crate::worker::{Faithful, JobLogic, Mutant, Mutants, TaskLogic};

const SNAPSHOT_MAGIC: [u8; 4] = *b"EDJT";
const SNAPSHOT_VERSION: u16 = 1;

#[derive(Serialize, Deserialize)]
struct TaskSnapshot<'a> {
    #[serde(borrow)]
    job: &'a str,
    fingerprint: u64,
    task: i32,
    #[serde(borrow)]
    window_task: Bytes<'a>,
}

/// Bytes that serde hands over whole: postcard writes them as a sequence
/// of `u8` would be (a varint length, then the bytes), but in one copy
/// instead of one call per byte, and reads them without a copy.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Bytes<'de>, E> {
                Ok(Bytes(bytes))
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

type JobWindowTask = WindowTask<u32, JobValue, JobAggregator>;

/// The task of one partition number.
pub struct JobTask<M: Mutants> {
    job: Job,
    task: i32,
    window: JobWindowTask,
    /// The window task's outputs of one call, drained at once.
    scratch: Vec<Output<JobValue, Vec<OutputValue>>>,
    mutants: M,
}

impl Job {
    fn task_watermarks(&self, mutants: impl Mutants) -> WatermarkConfig {
        let watermarks = self.watermark_config();
        if mutants.active(Mutant::FireEarly) {
            return WatermarkConfig {
                out_of_orderness_ms: 0,
                ..watermarks
            };
        }
        watermarks
    }

    fn check_task(&self, task: i32) -> Result<()> {
        if task < 0 {
            return Err(Error::Invalid(format!(
                "job {:?}: task number {task} is negative",
                self.name()
            )));
        }
        Ok(())
    }

    /// A fresh task for partition `task` that obeys `mutants`.
    pub fn new_task_with<M: Mutants>(
        &self,
        task: i32,
        now: Duration,
        mutants: M,
    ) -> Result<JobTask<M>> {
        self.check_task(task)?;
        let inputs = (0..self.input_topics().len()).map(|index| index as u32);
        let window = WindowTask::new(
            self.task_watermarks(mutants),
            self.window_config(),
            self.definition().aggregator.clone(),
            inputs,
            now,
        )?;
        Ok(self.task_over(task, window, mutants))
    }

    fn task_over<M: Mutants>(&self, task: i32, window: JobWindowTask, mutants: M) -> JobTask<M> {
        JobTask {
            job: self.clone(),
            task,
            window,
            scratch: Vec::new(),
            mutants,
        }
    }

    /// The task that took `snapshot`, continuing at `now`, obeying `mutants`.
    pub fn restore_task_with<M: Mutants>(
        &self,
        task: i32,
        snapshot: &[u8],
        now: Duration,
        mutants: M,
    ) -> Result<JobTask<M>> {
        self.check_task(task)?;
        let state = decode_snapshot(snapshot)?;
        if state.job != self.name() {
            return Err(Error::CorruptSnapshot(format!(
                "the snapshot is of job {:?}, not of job {:?}",
                state.job,
                self.name()
            )));
        }
        if state.fingerprint != self.fingerprint() {
            return Err(Error::CorruptSnapshot(format!(
                "the snapshot of job {:?} was taken with another window, watermark, aggregate or input configuration (fingerprint {:016x}, this job's is {:016x})",
                state.job,
                state.fingerprint,
                self.fingerprint()
            )));
        }
        if state.task != task {
            return Err(Error::CorruptSnapshot(format!(
                "the snapshot is of task {}, not of task {task} (job {:?})",
                state.task, state.job
            )));
        }
        let window = WindowTask::restore(
            self.task_watermarks(mutants),
            self.window_config(),
            self.definition().aggregator.clone(),
            state.window_task.0,
            now,
        )?;
        Ok(self.task_over(task, window, mutants))
    }

    /// This job with `mutants` switched on in its tasks (the simulator and
    /// tests; live mode runs the job itself, which is [`Faithful`]).
    pub fn with_mutants<M: Mutants>(&self, mutants: M) -> MutatedJob<M> {
        MutatedJob {
            job: self.clone(),
            mutants,
        }
    }
}

fn encode_snapshot(state: &TaskSnapshot<'_>) -> Vec<u8> {
    // Magic and version, then at most: the name's varint length and
    // bytes, 10 + 5 bytes of fingerprint and task, the window task's
    // varint length (10) and bytes.
    let mut bytes =
        Vec::with_capacity(6 + 10 + state.job.len() + 15 + 10 + state.window_task.0.len());
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    postcard::to_extend(state, bytes).expect("a task snapshot serializes with postcard")
}

fn decode_snapshot(bytes: &[u8]) -> Result<TaskSnapshot<'_>> {
    let corrupt = |why: String| Error::CorruptSnapshot(format!("job task snapshot: {why}"));
    if bytes.len() < 6 || bytes[..4] != SNAPSHOT_MAGIC {
        return Err(corrupt(format!(
            "it does not start with {:?} ({} bytes)",
            std::str::from_utf8(&SNAPSHOT_MAGIC).expect("ASCII"),
            bytes.len()
        )));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != SNAPSHOT_VERSION {
        return Err(corrupt(format!(
            "format version {version} is not supported (this build reads {SNAPSHOT_VERSION})"
        )));
    }
    match postcard::take_from_bytes::<TaskSnapshot>(&bytes[6..]) {
        Ok((state, [])) => Ok(state),
        Ok((_, rest)) => Err(corrupt(format!("{} trailing bytes", rest.len()))),
        Err(error) => Err(corrupt(format!("undecodable body: {error}"))),
    }
}

impl JobLogic for Job {
    type Task = JobTask<Faithful>;

    fn name(&self) -> &str {
        Job::name(self)
    }

    fn input_topics(&self) -> &[String] {
        Job::input_topics(self)
    }

    fn new_task(&self, task: i32, now: Duration) -> Result<Self::Task> {
        self.new_task_with(task, now, Faithful)
    }

    fn restore_task(&self, task: i32, snapshot: &[u8], now: Duration) -> Result<Self::Task> {
        self.restore_task_with(task, snapshot, now, Faithful)
    }
}

/// A job whose tasks obey mutants `M` (see [`Job::with_mutants`]).
#[derive(Clone, Debug)]
pub struct MutatedJob<M> {
    job: Job,
    mutants: M,
}

impl<M: Mutants> MutatedJob<M> {
    pub fn job(&self) -> &Job {
        &self.job
    }
}

impl<M: Mutants> JobLogic for MutatedJob<M> {
    type Task = JobTask<M>;

    fn name(&self) -> &str {
        self.job.name()
    }

    fn input_topics(&self) -> &[String] {
        self.job.input_topics()
    }

    fn new_task(&self, task: i32, now: Duration) -> Result<Self::Task> {
        self.job.new_task_with(task, now, self.mutants)
    }

    fn restore_task(&self, task: i32, snapshot: &[u8], now: Duration) -> Result<Self::Task> {
        self.job
            .restore_task_with(task, snapshot, now, self.mutants)
    }
}

impl<M: Mutants> JobTask<M> {
    pub fn task(&self) -> i32 {
        self.task
    }

    pub fn window_task(&self) -> &JobWindowTask {
        &self.window
    }

    /// The index of the message's topic; a message of another partition
    /// or topic is the caller's mistake.
    fn input_of(&self, message: &Message) -> Result<u32> {
        let topics = self.job.input_topics();
        match topics.iter().position(|topic| **topic == *message.topic) {
            Some(index) if message.partition == self.task => Ok(index as u32),
            _ => Err(Error::Invalid(format!(
                "task {} of job {:?} reads partition {} of {topics:?}, not {}-{} (offset {})",
                self.task,
                self.job.name(),
                self.task,
                message.topic,
                message.partition,
                message.offset
            ))),
        }
    }

    /// Turns the window task's outputs into records; `message` is the one
    /// being processed (the only one that can be late).
    fn emit(&mut self, message: Option<&Message>, out: &mut Vec<ProducerRecord>) {
        let outputs = &self.job.definition().outputs;
        let ahead_by = self.windows_ahead_by();
        for output in self.scratch.drain(..) {
            match output {
                Output::Fire(firing) => {
                    let watermark = task_watermark(firing.watermark, ahead_by);
                    out.push(outputs.firing(&firing, watermark, self.task));
                }
                Output::Late(late) => {
                    if self.mutants.active(Mutant::DropLate) {
                        continue;
                    }
                    let message = message.expect("only a record being processed is late");
                    assert_eq!(
                        Some(late.record.ts),
                        decoded_ts(&self.job, message),
                        "the late record is the message being processed"
                    );
                    out.push(outputs.late(message, late.watermark));
                }
            }
        }
    }

    /// How far the windows' watermark runs ahead of the task's (the
    /// job's): `D` under [`Mutant::FireEarly`], else 0.
    fn windows_ahead_by(&self) -> i64 {
        if self.mutants.active(Mutant::FireEarly) {
            return self.job.watermark_config().out_of_orderness_ms;
        }
        0
    }

    /// A bad record: a dead letter, or the task stops (`fail`).
    fn bad_record(
        &mut self,
        message: &Message,
        reason: &str,
        now: Duration,
        out: &mut Vec<ProducerRecord>,
    ) -> Result<()> {
        if self.job.on_bad_record() == OnBadRecord::Fail {
            return Err(Error::BadRecord(format!(
                "topic {} partition {} offset {}: {reason}",
                message.topic, message.partition, message.offset
            )));
        }
        self.on_processing_time(now, out)?;
        out.push(self.job.definition().outputs.dead_letter(message, reason));
        Ok(())
    }
}

/// The task's watermark for the header of a firing that the windows fired
/// at `fired`, running `ahead_by` ms ahead of it. With one watermark rule
/// per input, subtracting gives exactly the task's watermark (the end of
/// input, `i64::MAX`, stays).
fn task_watermark(fired: EventTime, ahead_by: i64) -> EventTime {
    if fired == EventTime::MAX {
        return fired;
    }
    fired.saturating_sub(ahead_by)
}

/// The event time the job decodes from `message` (for an assertion).
fn decoded_ts(job: &Job, message: &Message) -> Option<EventTime> {
    match job.decode(message) {
        Decoded::Record(record) => Some(record.ts),
        Decoded::Skipped(_) | Decoded::Bad(_) => None,
    }
}

impl<M: Mutants> TaskLogic for JobTask<M> {
    fn process(
        &mut self,
        message: &Message,
        now: Duration,
        out: &mut Vec<ProducerRecord>,
    ) -> Result<()> {
        let input = self.input_of(message)?;
        let record = match self.job.decode(message) {
            Decoded::Record(record) => record,
            Decoded::Skipped(_) => return self.on_processing_time(now, out),
            Decoded::Bad(reason) => return self.bad_record(message, &reason, now, out),
        };
        match self.window.process(&input, record, now, &mut self.scratch) {
            Ok(()) => {
                self.emit(Some(message), out);
                Ok(())
            }
            // The record's windows do not fit i64 (nothing else changed).
            Err(Error::Invalid(reason)) => {
                self.emit(None, out);
                self.bad_record(message, &reason, now, out)
            }
            Err(error) => {
                self.scratch.clear();
                Err(error)
            }
        }
    }

    fn on_processing_time(&mut self, now: Duration, out: &mut Vec<ProducerRecord>) -> Result<()> {
        let result = self.window.on_processing_time(now, &mut self.scratch);
        self.emit(None, out);
        result
    }

    fn finish(&mut self, out: &mut Vec<ProducerRecord>) -> Result<()> {
        let result = self.window.finish(&mut self.scratch);
        self.emit(None, out);
        result
    }

    fn snapshot(&self, now: Duration) -> Result<Vec<u8>> {
        let window_task = self.window.snapshot(now)?;
        Ok(encode_snapshot(&TaskSnapshot {
            job: self.job.name(),
            fingerprint: self.job.fingerprint(),
            task: self.task,
            window_task: Bytes(&window_task),
        }))
    }

    fn watermark(&self) -> EventTime {
        self.window.watermark()
    }
}
