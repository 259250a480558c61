//! The checker: judges a run's [`Observation`] against the reference model
//! ([`reference`]) and names what went wrong ([`AnomalyKind`]).
//!
//! It shares no window, watermark or worker code with the engine: the
//! reference model evaluates the event-time semantics over the committed
//! input itself, and everything else is read from the observation (topics
//! read back with `read_committed`, the output partitions' logs, the
//! group's committed offsets).
//!
//! [`check`] finds every kind but [`AnomalyKind::Nondeterminism`], which
//! compares two runs ([`nondeterminism`]). Anomalies come ordered by kind
//! (the order of [`AnomalyKind`]), then by partition and offset (or, for a
//! reference record nothing committed, by task and emission order). Each
//! lists at most [`RECORDS_MAX`] records, one line each:
//! `topic-partition@offset value` for a record read back, `reference task
//! T: value` for a record only the reference model emits.

pub mod anomaly;
pub mod reference;

use std::collections::{BTreeMap, BTreeSet};

use eddyline_engine::job::{
    HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_TASK, HEADER_WATERMARK, Job,
};
use eddyline_engine::transport::{Header, Message, ProducerRecord};
use eddyline_sim::trace::TraceFocus;

pub use anomaly::{Anomaly, AnomalyKind};
use reference::{Emitted, ReferenceOutput};

use crate::observation::Observation;

/// The most records an anomaly lists.
pub const RECORDS_MAX: usize = 5;

/// Every anomaly of `observation` but nondeterminism, in a deterministic
/// order. An error: the reference model refuses the job (several input
/// topics) or cannot evaluate the input (an aggregate overflows, a job
/// with `on_bad_record = "fail"` meets a bad record).
pub fn check(job: &Job, observation: &Observation) -> Result<Vec<Anomaly>, String> {
    let reference = reference::evaluate(job, &observation.input)?;
    let key_field = &job.outputs().key_field;
    let committed = committed_firings(key_field, &observation.output);
    let diff = diff_firings(&reference, &committed);
    let sides = Sides::new(&reference, observation);
    let mut anomalies = Vec::new();
    anomalies.extend(lost_output(&diff));
    anomalies.extend(duplicate_output(&diff));
    anomalies.extend(aborted_read(observation));
    anomalies.extend(wrong_result(&diff));
    anomalies.extend(premature_fire(&committed));
    anomalies.extend(missing_late_update(&diff));
    anomalies.extend(silent_drop(&sides, observation));
    anomalies.extend(wrong_late_output(&sides));
    anomalies.extend(offset_regression(observation));
    anomalies.extend(watermark_regression(&committed));
    anomalies.extend(zombie_commit(&job.outputs().topic, observation));
    anomalies.extend(hanging_transaction(observation));
    anomalies.extend(liveness(observation));
    Ok(anomalies)
}

/// The first anomaly (in report order) that has a place in the run's trace:
/// the one a report's trace excerpt is centred on.
pub fn first_placed(anomalies: &[Anomaly]) -> Option<&Anomaly> {
    anomalies.iter().find(|anomaly| anomaly.at.is_some())
}

/// [`AnomalyKind::Nondeterminism`]: the two runs of one seed gave
/// different trace hashes.
pub fn nondeterminism(first_hash: u64, second_hash: u64) -> Option<Anomaly> {
    (first_hash != second_hash).then(|| Anomaly {
        kind: AnomalyKind::Nondeterminism,
        detail: format!(
            "two runs of the same seed: trace hash {first_hash:016x}, then {second_hash:016x}"
        ),
        records: Vec::new(),
        at: None,
    })
}

// ---------------------------------------------------------------------------
// Rendering.

fn text(value: Option<&[u8]>) -> String {
    match value {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => "<no value>".to_string(),
    }
}

fn line(message: &Message) -> String {
    format!(
        "{}-{}@{} {}",
        message.topic,
        message.partition,
        message.offset,
        text(message.value.as_deref())
    )
}

fn reference_line(task: i32, record: &ProducerRecord) -> String {
    format!("reference task {task}: {}", text(record.value.as_deref()))
}

fn anomaly(
    kind: AnomalyKind,
    detail: String,
    mut records: Vec<String>,
    at: Option<TraceFocus>,
) -> Anomaly {
    records.truncate(RECORDS_MAX);
    Anomaly {
        kind,
        detail,
        records,
        at,
    }
}

/// Where `message` entered the log it was read from.
fn entered(message: &Message) -> Option<TraceFocus> {
    Some(TraceFocus::Record {
        topic: message.topic.to_string(),
        partition: message.partition,
        offset: message.offset,
    })
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    let (_, value) = headers.iter().rev().find(|(header, _)| header == name)?;
    std::str::from_utf8(value).ok()
}

fn header_number<T: std::str::FromStr>(headers: &[(String, Vec<u8>)], name: &str) -> Option<T> {
    header(headers, name)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Firings: the committed ones, parsed, and their difference with the
// reference model's, per (key, window).

/// (key, window_start, window_end).
type WindowId = (String, i64, i64);

/// A committed output record, read as a firing.
struct Committed<'a> {
    message: &'a Message,
    /// `None`: the value is not a firing (no JSON object with the key
    /// field, `window_start`, `window_end` and a known `kind`).
    window: Option<WindowId>,
    on_time: bool,
    /// The `eddy.watermark` and `eddy.task` headers, if readable.
    watermark: Option<i64>,
    task: Option<i32>,
}

impl Committed<'_> {
    fn premature(&self) -> bool {
        match (&self.window, self.watermark) {
            (Some((_, _, end)), Some(watermark)) => self.on_time && watermark < end - 1,
            _ => false,
        }
    }
}

fn committed_firings<'a>(
    key_field: &str,
    output: &'a BTreeMap<i32, Vec<Message>>,
) -> Vec<Committed<'a>> {
    let parse = |message: &Message| -> Option<(WindowId, bool)> {
        let value: serde_json::Value = serde_json::from_slice(message.value.as_deref()?).ok()?;
        let key = value.get(key_field)?.as_str()?.to_string();
        let start = value.get("window_start")?.as_i64()?;
        let end = value.get("window_end")?.as_i64()?;
        let on_time = match value.get("kind")?.as_str()? {
            "on_time" => true,
            "late_update" => false,
            _ => return None,
        };
        Some(((key, start, end), on_time))
    };
    let messages = output.values().flatten();
    messages
        .map(|message| {
            let parsed = parse(message);
            Committed {
                message,
                on_time: parsed.as_ref().is_some_and(|(_, on_time)| *on_time),
                window: parsed.map(|(window, _)| window),
                watermark: header_number(&message.headers, HEADER_WATERMARK),
                task: header_number(&message.headers, HEADER_TASK),
            }
        })
        .collect()
}

/// A reference firing: its task and what it emitted.
struct RefFiring<'a> {
    task: i32,
    /// Its place in the task's emission order.
    index: usize,
    on_time: bool,
    record: &'a ProducerRecord,
}

/// The committed firings against the reference model's, per (key, window).
#[derive(Default)]
struct FiringDiff<'a> {
    /// Reference firings with no equal committed record (and no committed
    /// record of the same kind left over to stand in for them).
    missing: Vec<RefFiring<'a>>,
    /// Committed copies beyond the number the reference emits.
    /// Committed copies beyond the number the reference emits, each with
    /// the first committed copy.
    duplicates: Vec<(&'a Committed<'a>, &'a Committed<'a>)>,
    /// Committed firings the reference never emits for their window (or
    /// that are no firing at all), with the reference firing of the same
    /// kind that they stand in for, if any.
    wrong: Vec<(&'a Committed<'a>, Option<RefFiring<'a>>)>,
}

/// The identity of a firing: its key and value bytes (the value holds the
/// key, the window, the aggregates and the kind).
type Identity<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Per (key, window): the committed firings in (partition, offset) order
/// are matched against the reference's as multisets of [`Identity`]. A
/// committed firing with a reference copy left is matched; one whose
/// identity the reference emits but whose copies are used up is a
/// duplicate; any other is unmatched. Reference copies left over are
/// missing. Then unmatched committed firings and missing reference
/// firings of the same kind are paired in order: a pair is one wrong
/// firing (not also a lost one).
fn diff_firings<'a>(
    reference: &'a ReferenceOutput,
    committed: &'a [Committed<'a>],
) -> FiringDiff<'a> {
    let mut by_window: BTreeMap<WindowId, (Vec<RefFiring<'a>>, Vec<&'a Committed<'a>>)> =
        BTreeMap::new();
    for (task, emitted) in reference {
        for (index, item) in emitted.iter().enumerate() {
            if let Emitted::Firing {
                key,
                window_start,
                window_end,
                on_time,
                record,
                ..
            } = item
            {
                let id = (key.clone(), *window_start, *window_end);
                let firing = RefFiring {
                    task: *task,
                    index,
                    on_time: *on_time,
                    record,
                };
                by_window.entry(id).or_default().0.push(firing);
            }
        }
    }
    let mut diff = FiringDiff::default();
    for firing in committed {
        match &firing.window {
            Some(id) => by_window.entry(id.clone()).or_default().1.push(firing),
            None => diff.wrong.push((firing, None)),
        }
    }
    for (references, firings) in by_window.into_values() {
        diff_window(references, firings, &mut diff);
    }
    diff
}

fn diff_window<'a>(
    references: Vec<RefFiring<'a>>,
    firings: Vec<&'a Committed<'a>>,
    diff: &mut FiringDiff<'a>,
) {
    let identity = |record: &'a ProducerRecord| -> Identity<'a> {
        (record.key.as_deref(), record.value.as_deref())
    };
    let mut left: BTreeMap<Identity<'a>, usize> = BTreeMap::new();
    for firing in &references {
        *left.entry(identity(firing.record)).or_default() += 1;
    }
    let emitted: BTreeSet<Identity<'a>> = left.keys().copied().collect();
    let mut first: BTreeMap<Identity<'a>, &'a Committed<'a>> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for firing in firings {
        let id = (
            firing.message.key.as_deref(),
            firing.message.value.as_deref(),
        );
        match left.get_mut(&id) {
            Some(count) if *count > 0 => {
                *count -= 1;
                first.entry(id).or_insert(firing);
            }
            _ if emitted.contains(&id) => diff.duplicates.push((firing, first[&id])),
            _ => unmatched.push(firing),
        }
    }
    let mut missing: Vec<RefFiring<'a>> = Vec::new();
    for firing in references {
        if let Some(count) = left
            .get_mut(&identity(firing.record))
            .filter(|count| **count > 0)
        {
            *count -= 1;
            missing.push(firing);
        }
    }
    for firing in unmatched {
        let stand_in = missing.iter().position(|r| r.on_time == firing.on_time);
        diff.wrong
            .push((firing, stand_in.map(|at| missing.remove(at))));
    }
    diff.missing.extend(missing);
}

/// [`AnomalyKind::LostOutput`]: every missing reference `on_time` firing
/// of [`diff_firings`] (a reference firing of a (key, window) with no
/// equal committed record, and no unmatched committed firing of its kind
/// in that window to stand in for it). Missing `late_update`s are
/// [`missing_late_update`]'s. In task, then emission order.
fn lost_output(diff: &FiringDiff<'_>) -> Vec<Anomaly> {
    missing_of(diff, true, AnomalyKind::LostOutput)
}

/// [`AnomalyKind::MissingLateUpdate`]: every missing reference
/// `late_update` firing of [`diff_firings`] (as [`lost_output`] for
/// `on_time` ones).
fn missing_late_update(diff: &FiringDiff<'_>) -> Vec<Anomaly> {
    missing_of(diff, false, AnomalyKind::MissingLateUpdate)
}

fn missing_of(diff: &FiringDiff<'_>, on_time: bool, kind: AnomalyKind) -> Vec<Anomaly> {
    let mut missing: Vec<&RefFiring<'_>> = diff
        .missing
        .iter()
        .filter(|firing| firing.on_time == on_time)
        .collect();
    missing.sort_by_key(|firing| (firing.task, firing.index));
    missing
        .into_iter()
        .map(|firing| {
            let what = if on_time {
                "on_time firing"
            } else {
                "late_update"
            };
            anomaly(
                kind,
                format!(
                    "a reference {what} of task {} was never committed",
                    firing.task
                ),
                vec![reference_line(firing.task, firing.record)],
                None,
            )
        })
        .collect()
}

/// [`AnomalyKind::DuplicateOutput`]: every committed firing of
/// [`diff_firings`]'s duplicates (an identical committed copy beyond the
/// number of copies the reference emits), listed with the copy that came
/// first. In (partition, offset) order.
fn duplicate_output(diff: &FiringDiff<'_>) -> Vec<Anomaly> {
    let mut duplicates = diff.duplicates.clone();
    duplicates.sort_by_key(|(firing, _)| (firing.message.partition, firing.message.offset));
    duplicates
        .into_iter()
        .map(|(firing, first)| {
            let message = firing.message;
            anomaly(
                AnomalyKind::DuplicateOutput,
                format!(
                    "{}-{}@{} repeats a firing more often than the reference emits it",
                    message.topic, message.partition, message.offset
                ),
                vec![line(first.message), line(message)],
                entered(message),
            )
        })
        .collect()
}

/// [`AnomalyKind::WrongResult`]: every committed firing of
/// [`diff_firings`]'s wrong ones that is not premature (see
/// [`premature_fire`]): a committed record of the output topic that is no
/// firing, or a firing that the reference never emits for its (key,
/// window); listed with the reference firing it stands in for, if any. In
/// (partition, offset) order.
fn wrong_result(diff: &FiringDiff<'_>) -> Vec<Anomaly> {
    let mut wrong: Vec<_> = diff
        .wrong
        .iter()
        .filter(|(firing, _)| !firing.premature())
        .collect();
    wrong.sort_by_key(|(firing, _)| (firing.message.partition, firing.message.offset));
    wrong
        .into_iter()
        .map(|(firing, stand_in)| {
            let message = firing.message;
            let mut records = vec![line(message)];
            records.extend(stand_in.iter().map(|r| reference_line(r.task, r.record)));
            let detail = match (&firing.window, stand_in) {
                (None, _) => "is not a firing".to_string(),
                (Some(_), Some(_)) => "differs from the reference firing of its place".to_string(),
                (Some(_), None) => "is a firing the reference never emits".to_string(),
            };
            let at = format!("{}-{}@{}", message.topic, message.partition, message.offset);
            anomaly(
                AnomalyKind::WrongResult,
                format!("{at} {detail}"),
                records,
                entered(message),
            )
        })
        .collect()
}

/// [`AnomalyKind::PrematureFire`]: every committed `on_time` firing whose
/// `eddy.watermark` header is below its `window_end - 1`, whether or not
/// its values are right. In (partition, offset) order.
fn premature_fire(committed: &[Committed<'_>]) -> Vec<Anomaly> {
    committed
        .iter()
        .filter(|firing| firing.premature())
        .map(|firing| {
            let message = firing.message;
            let (_, _, end) = firing
                .window
                .as_ref()
                .expect("a premature firing is a firing");
            anomaly(
                AnomalyKind::PrematureFire,
                format!(
                    "{}-{}@{} fired on time at watermark {} below the window's max timestamp {}",
                    message.topic,
                    message.partition,
                    message.offset,
                    firing.watermark.unwrap_or_default(),
                    end - 1
                ),
                vec![line(message)],
                entered(message),
            )
        })
        .collect()
}

/// [`AnomalyKind::WatermarkRegression`]: per output partition and task
/// (header `eddy.task`), the committed firings in offset order: every one
/// whose `eddy.watermark` is below the largest watermark of that task's
/// earlier firings in the partition. Firings without both headers are
/// not judged. In (partition, offset) order.
fn watermark_regression(committed: &[Committed<'_>]) -> Vec<Anomaly> {
    let mut highest: BTreeMap<(i32, i32), &Committed<'_>> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for firing in committed {
        let (Some(task), Some(watermark)) = (firing.task, firing.watermark) else {
            continue;
        };
        let at = (firing.message.partition, task);
        match highest.get(&at) {
            Some(top) if top.watermark > Some(watermark) => anomalies.push(anomaly(
                AnomalyKind::WatermarkRegression,
                format!(
                    "task {task}'s watermark in {}-{} went back from {} to {watermark}",
                    firing.message.topic,
                    firing.message.partition,
                    top.watermark.unwrap_or_default()
                ),
                vec![line(top.message), line(firing.message)],
                entered(firing.message),
            )),
            _ => {
                highest.insert(at, firing);
            }
        }
    }
    anomalies
}

// ---------------------------------------------------------------------------
// The side outputs: late records and dead letters, matched to the input
// records by their `eddy.source.partition` and `eddy.source.offset`.

/// (input partition, input offset).
type Source = (i32, i64);

/// What a side-output record is compared by: its source, key, value and
/// headers.
type SideIdentity<'a> = (Source, Option<&'a [u8]>, Option<&'a [u8]>, &'a [Header]);

struct Sides<'a> {
    /// The reference's late records and dead letters, by topic name
    /// ("late" or "dead letter") and source.
    reference: BTreeMap<(&'static str, Source), (i32, &'a ProducerRecord)>,
    /// The committed late records and dead letters, in (partition, offset)
    /// order, with their source if their headers name one.
    committed: Vec<(&'static str, Option<Source>, &'a Message)>,
}

fn source_of(headers: &[(String, Vec<u8>)]) -> Option<Source> {
    Some((
        header_number(headers, HEADER_SOURCE_PARTITION)?,
        header_number(headers, HEADER_SOURCE_OFFSET)?,
    ))
}

impl<'a> Sides<'a> {
    fn new(reference: &'a ReferenceOutput, observation: &'a Observation) -> Self {
        let mut sides = Sides {
            reference: BTreeMap::new(),
            committed: Vec::new(),
        };
        for (task, emitted) in reference {
            for item in emitted {
                let (topic, offset) = match item {
                    Emitted::Late { offset, .. } => ("late", *offset),
                    Emitted::DeadLetter { offset, .. } => ("dead letter", *offset),
                    Emitted::Firing { .. } => continue,
                };
                sides
                    .reference
                    .insert((topic, (*task, offset)), (*task, item.record()));
            }
        }
        for (topic, read) in [
            ("late", &observation.late),
            ("dead letter", &observation.dead_letter),
        ] {
            for message in read.values().flatten() {
                sides
                    .committed
                    .push((topic, source_of(&message.headers), message));
            }
        }
        sides
    }

    fn committed_sources(&self) -> BTreeSet<Source> {
        self.committed
            .iter()
            .filter_map(|(_, source, _)| *source)
            .collect()
    }
}

/// [`AnomalyKind::SilentDrop`]: every input record the reference sends to
/// the late output or to the dead letters whose source (partition,
/// offset) no committed late record or dead letter names. In (partition,
/// offset) order of the input record.
fn silent_drop(sides: &Sides<'_>, observation: &Observation) -> Vec<Anomaly> {
    let seen = sides.committed_sources();
    let mut dropped: Vec<(Source, &str, i32, &ProducerRecord)> = sides
        .reference
        .iter()
        .filter(|((_, source), _)| !seen.contains(source))
        .map(|((topic, source), (task, record))| (*source, *topic, *task, *record))
        .collect();
    dropped.sort_by_key(|(source, ..)| *source);
    dropped
        .into_iter()
        .map(|((partition, offset), topic, task, record)| {
            let input = observation.input.get(&partition).into_iter().flatten();
            let source = input.into_iter().find(|m| m.offset == offset);
            let mut records: Vec<String> = source.into_iter().map(line).collect();
            records.push(reference_line(task, record));
            anomaly(
                AnomalyKind::SilentDrop,
                format!("input {partition}@{offset} belongs in the {topic} topic and is in neither side output"),
                records,
                source.and_then(entered),
            )
        })
        .collect()
}

/// [`AnomalyKind::WrongLateOutput`]: every committed late record (and
/// dead letter) that the reference does not send to that topic with the
/// same source, key, value and headers (`eddy.watermark` or `eddy.error`
/// included), or sends there fewer times; a side-output record naming no
/// source counts too. In (late before dead letter, partition, offset)
/// order.
fn wrong_late_output(sides: &Sides<'_>) -> Vec<Anomaly> {
    let mut left: BTreeMap<(&str, SideIdentity<'_>), usize> = BTreeMap::new();
    for ((topic, source), (_, record)) in &sides.reference {
        let id = (
            *source,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers[..],
        );
        *left.entry((*topic, id)).or_default() += 1;
    }
    let mut anomalies = Vec::new();
    for (topic, source, message) in &sides.committed {
        let expected = source.and_then(|source| {
            let id = (
                source,
                message.key.as_deref(),
                message.value.as_deref(),
                &message.headers[..],
            );
            left.get_mut(&(*topic, id)).filter(|n| **n > 0)
        });
        match expected {
            Some(count) => *count -= 1,
            None => anomalies.push(anomaly(
                AnomalyKind::WrongLateOutput,
                format!(
                    "{}-{}@{} is a {topic} record the reference does not write (or not this often)",
                    message.topic, message.partition, message.offset
                ),
                vec![line(message)],
                entered(message),
            )),
        }
    }
    anomalies
}

// ---------------------------------------------------------------------------
// The output topic's log, the group's offsets, and the run.

/// The offset ranges of transactional output batches whose producer's
/// next marker in that partition is an ABORT, per partition.
fn aborted_ranges(observation: &Observation) -> BTreeMap<i32, Vec<(i64, i64)>> {
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for batch in observation
        .output_batches
        .iter()
        .filter(|batch| batch.transactional)
    {
        let end = batch.base_offset + batch.records;
        let next_marker = observation
            .output_markers
            .iter()
            .filter(|marker| {
                marker.partition == batch.partition
                    && marker.producer_id == batch.producer_id
                    && marker.offset >= end
            })
            .min_by_key(|marker| marker.offset);
        if next_marker.is_some_and(|marker| !marker.commit) {
            ranges
                .entry(batch.partition)
                .or_default()
                .push((batch.base_offset, end));
        }
    }
    ranges
}

/// [`AnomalyKind::AbortedRead`]: every committed output message whose
/// offset lies in a transactional batch of the output partition's log
/// whose producer's next marker in that partition (the first at an
/// offset after the batch) is an ABORT. In (partition, offset) order.
fn aborted_read(observation: &Observation) -> Vec<Anomaly> {
    let ranges = aborted_ranges(observation);
    let mut anomalies = Vec::new();
    for (partition, messages) in &observation.output {
        let Some(aborted) = ranges.get(partition) else {
            continue;
        };
        for message in messages {
            if let Some((base, end)) = aborted
                .iter()
                .find(|(base, end)| (*base..*end).contains(&message.offset))
            {
                anomalies.push(anomaly(
                    AnomalyKind::AbortedRead,
                    format!(
                        "{}-{}@{} was read committed but lies in the aborted batch {base}..{end}",
                        message.topic, message.partition, message.offset
                    ),
                    vec![line(message)],
                    entered(message),
                ));
            }
        }
    }
    anomalies
}

/// [`AnomalyKind::ZombieCommit`]: per output partition, walking its data
/// batches and markers in log (offset) order and keeping each producer
/// id's highest epoch so far: every COMMIT marker whose epoch is below
/// its producer id's highest epoch seen earlier in that log. In
/// (partition, offset) order.
fn zombie_commit(topic: &str, observation: &Observation) -> Vec<Anomaly> {
    // (partition, offset, producer id, epoch, commit marker?)
    let mut log: Vec<(i32, i64, i64, i16, bool)> = Vec::new();
    for batch in &observation.output_batches {
        log.push((
            batch.partition,
            batch.base_offset,
            batch.producer_id,
            batch.producer_epoch,
            false,
        ));
    }
    for marker in &observation.output_markers {
        log.push((
            marker.partition,
            marker.offset,
            marker.producer_id,
            marker.producer_epoch,
            marker.commit,
        ));
    }
    log.sort();
    let mut highest: BTreeMap<(i32, i64), i16> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for (partition, offset, producer, epoch, commit) in log {
        let top = highest.entry((partition, producer)).or_insert(epoch);
        if commit && epoch < *top {
            anomalies.push(anomaly(
                AnomalyKind::ZombieCommit,
                format!(
                    "partition {partition}@{offset}: producer {producer} committed with epoch {epoch} after epoch {top} wrote there"
                ),
                Vec::new(),
                Some(TraceFocus::Record {
                    topic: topic.to_string(),
                    partition,
                    offset,
                }),
            ));
        }
        *top = (*top).max(epoch);
    }
    anomalies
}

/// [`AnomalyKind::OffsetRegression`]: per input partition, every sample
/// of the group's committed offset below the sample before it. In
/// (partition, time) order.
fn offset_regression(observation: &Observation) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    for (partition, samples) in &observation.committed_offsets {
        for pair in samples.windows(2) {
            let ((before_ms, before), (at_ms, offset)) = (pair[0], pair[1]);
            if offset < before {
                anomalies.push(anomaly(
                    AnomalyKind::OffsetRegression,
                    format!(
                        "partition {partition}: the committed offset went from {before} (at {before_ms} ms) back to {offset} (at {at_ms} ms)"
                    ),
                    Vec::new(),
                    Some(TraceFocus::Time { at_ms }),
                ));
            }
        }
    }
    anomalies
}

/// [`AnomalyKind::HangingTransaction`]: every partition of
/// `observation.unstable` (its last stable offset stayed below its high
/// watermark long after the drain), in name order.
fn hanging_transaction(observation: &Observation) -> Vec<Anomaly> {
    observation
        .unstable
        .iter()
        .map(|name| {
            anomaly(
                AnomalyKind::HangingTransaction,
                format!("{name}: an open transaction nobody finishes"),
                Vec::new(),
                None,
            )
        })
        .collect()
}

/// [`AnomalyKind::Liveness`]: the observation says the run did not drain
/// (`drained` is false).
fn liveness(observation: &Observation) -> Vec<Anomaly> {
    if observation.drained {
        return Vec::new();
    }
    vec![anomaly(
        AnomalyKind::Liveness,
        "the run did not drain within the liveness bound".to_string(),
        Vec::new(),
        None,
    )]
}

#[cfg(test)]
mod tests;
