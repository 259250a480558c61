//! The checker on small hand-made observations of `jobs/window-stats.toml`
//! (tumbling 10 s, D = 5 s, L = 2 s): a faithful observation has no
//! anomaly, and each kind is found where exactly it is planted.

use std::time::Duration;

use eddyline_engine::job::Job;
use eddyline_engine::transport::{Message, ProducerRecord};
use eddyline_engine::worker::{JobLogic, Mutant, Selected, TaskLogic};

use super::reference::evaluate;
use super::*;
use crate::observation::{BatchSeen, MarkerSeen};

fn job() -> Job {
    let path = format!("{}/../jobs/window-stats.toml", env!("CARGO_MANIFEST_DIR"));
    Job::from_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn event(offset: i64, key: &str, ts: i64, value: i64) -> Message {
    let text = format!(r#"{{"key":"{key}","ts":{ts},"value":{value}}}"#);
    raw(offset, key, &text, ts)
}

fn raw(offset: i64, key: &str, text: &str, ts: i64) -> Message {
    Message {
        topic: "events".into(),
        partition: 0,
        offset,
        key: Some(key.as_bytes().to_vec().into()),
        value: Some(text.as_bytes().to_vec().into()),
        timestamp_ms: ts,
        headers: Vec::new(),
    }
}

/// Reference outputs (emission order, task 0): 0 on_time a [0,10s) @10999,
/// 1 late_update a [0,10s) @10999, late record (offset 4) @16999, dead
/// letter (offset 5), then at the end on_time a [10s,20s), b [10s,20s),
/// a [20s,30s) @MAX.
fn input() -> Vec<Message> {
    vec![
        event(0, "a", 1_000, 1),
        event(1, "a", 16_000, 2),
        event(2, "a", 9_000, 4),
        event(3, "a", 22_000, 8),
        event(4, "a", 3_000, 16),
        raw(5, "b", "not json {", 0),
        event(6, "b", 18_000, 32),
    ]
}

fn message(record: &ProducerRecord, offset: i64) -> Message {
    Message {
        topic: record.topic.as_str().into(),
        partition: 0,
        offset,
        key: record.key.clone().map(Into::into),
        value: record.value.clone().map(Into::into),
        timestamp_ms: record.timestamp_ms.unwrap_or_default(),
        headers: record.headers.clone(),
    }
}

/// What a faithful run commits for `records` (the tasks' outputs in
/// emission order), everything in partition 0: the output in one
/// committed transaction (producer 1, epoch 0).
fn observe(job: &Job, input: Vec<Message>, records: &[ProducerRecord]) -> Observation {
    let mut observation = Observation {
        drained: true,
        drained_at_ms: Some(1_000),
        committed_offsets: BTreeMap::from([(0, vec![(10, 3), (20, input.len() as i64)])]),
        input: BTreeMap::from([(0, input)]),
        ..Observation::default()
    };
    for record in records {
        let topic = if record.topic == job.output_topic() {
            &mut observation.output
        } else if record.topic == job.late_topic() {
            &mut observation.late
        } else {
            &mut observation.dead_letter
        };
        let messages = topic.entry(0).or_default();
        messages.push(message(record, messages.len() as i64));
    }
    let written = observation.output.get(&0).map_or(0, Vec::len) as i64;
    observation.output_batches.push(BatchSeen {
        partition: 0,
        base_offset: 0,
        records: written,
        producer_id: 1,
        producer_epoch: 0,
        transactional: true,
    });
    observation.output_markers.push(MarkerSeen {
        partition: 0,
        offset: written,
        producer_id: 1,
        producer_epoch: 0,
        commit: true,
    });
    observation
}

fn faithful() -> Observation {
    let job = job();
    let reference = evaluate(&job, &BTreeMap::from([(0, input())])).unwrap();
    let records: Vec<ProducerRecord> = reference[&0]
        .iter()
        .map(|emitted| emitted.record().clone())
        .collect();
    observe(&job, input(), &records)
}

fn kinds(observation: &Observation) -> Vec<AnomalyKind> {
    check(&job(), observation)
        .unwrap()
        .iter()
        .map(|anomaly| anomaly.kind)
        .collect()
}

fn output(observation: &mut Observation) -> &mut Vec<Message> {
    observation.output.get_mut(&0).unwrap()
}

fn set_header(message: &mut Message, name: &str, value: &str) {
    let header = message.headers.iter_mut().find(|(h, _)| h == name).unwrap();
    header.1 = value.as_bytes().to_vec();
}

mod faithful_runs {
    use super::*;

    #[test]
    fn the_reference_models_own_output_has_no_anomaly() {
        let observation = faithful();
        assert_eq!(observation.output[&0].len(), 5);
        assert_eq!(observation.late[&0].len(), 1);
        assert_eq!(observation.dead_letter[&0].len(), 1);
        assert_eq!(check(&job(), &observation).unwrap(), []);
    }

    #[test]
    fn the_engines_faithful_task_output_has_no_anomaly() {
        let job = job();
        let records = run_engine(&job, Selected(None), &input());
        assert_eq!(check(&job, &observe(&job, input(), &records)).unwrap(), []);
    }

    #[test]
    fn two_tasks_firings_interleaved_in_one_output_partition_are_judged_per_task() {
        // Task 1 reads the same events on partition 1; all of task 0's
        // records come first, so task 1's first watermark is below task
        // 0's last: no regression, as each task's own go forward.
        let job = job();
        let second: Vec<Message> = input()
            .into_iter()
            .map(|message| Message {
                partition: 1,
                ..message
            })
            .collect();
        let both = BTreeMap::from([(0, input()), (1, second.clone())]);
        let reference = evaluate(&job, &both).unwrap();
        let records: Vec<ProducerRecord> = reference
            .values()
            .flatten()
            .map(|emitted| emitted.record().clone())
            .collect();
        let mut observation = observe(&job, input(), &records);
        observation.input.insert(1, second);
        assert_eq!(check(&job, &observation).unwrap(), []);
        // Each task's records count once: dropping task 1's late record
        // is found.
        let late = observation.late.get_mut(&0).unwrap();
        assert_eq!(late.len(), 2);
        late.pop();
        assert_eq!(kinds(&observation), [AnomalyKind::SilentDrop]);
    }

    #[test]
    fn a_job_with_two_input_topics_is_an_error_not_a_verdict() {
        let text = std::fs::read_to_string(format!(
            "{}/../jobs/window-stats.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .replace(r#"topics = ["events"]"#, r#"topics = ["events", "more"]"#);
        let two = Job::from_toml_str(&text, "two.toml").unwrap();
        assert!(check(&two, &faithful()).is_err());
    }
}

fn run_engine(job: &Job, mutants: Selected, input: &[Message]) -> Vec<ProducerRecord> {
    let job = job.with_mutants(mutants);
    let mut task = job.new_task(0, Duration::ZERO).unwrap();
    let mut out = Vec::new();
    for message in input {
        task.process(message, Duration::ZERO, &mut out).unwrap();
    }
    task.finish(&mut out).unwrap();
    out
}

mod firings {
    use super::*;

    #[test]
    fn a_missing_on_time_firing_is_lost_output() {
        let mut observation = faithful();
        output(&mut observation).remove(0);
        assert_eq!(kinds(&observation), [AnomalyKind::LostOutput]);
    }

    #[test]
    fn a_missing_late_update_is_a_missing_late_update() {
        let mut observation = faithful();
        output(&mut observation).remove(1);
        assert_eq!(kinds(&observation), [AnomalyKind::MissingLateUpdate]);
    }

    #[test]
    fn a_second_copy_of_a_firing_is_duplicate_output() {
        let mut observation = faithful();
        let out = output(&mut observation);
        let mut copy = out.last().unwrap().clone();
        copy.offset = 9;
        out.push(copy);
        let anomalies = check(&job(), &observation).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].kind, AnomalyKind::DuplicateOutput);
        assert_eq!(
            anomalies[0].records,
            [
                r#"window-stats-0@4 {"key":"a","window_start":20000,"window_end":30000,"count":1,"sum":8,"min_ts":22000,"max_ts":22000,"kind":"on_time"}"#,
                r#"window-stats-0@9 {"key":"a","window_start":20000,"window_end":30000,"count":1,"sum":8,"min_ts":22000,"max_ts":22000,"kind":"on_time"}"#,
            ]
        );
    }

    #[test]
    fn a_firing_with_other_values_in_place_of_the_reference_one_is_a_wrong_result() {
        let mut observation = faithful();
        let late_update = &mut output(&mut observation)[1];
        let text = String::from_utf8(late_update.value.take().unwrap().to_vec()).unwrap();
        assert!(text.contains(r#""count":2"#), "{text}");
        late_update.value = Some(
            text.replace(r#""count":2"#, r#""count":3"#)
                .into_bytes()
                .into(),
        );
        let anomalies = check(&job(), &observation).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].kind, AnomalyKind::WrongResult);
        assert_eq!(
            anomalies[0].records.len(),
            2,
            "the firing and its reference"
        );
    }

    #[test]
    fn an_on_time_firing_below_its_windows_max_timestamp_is_premature() {
        let mut observation = faithful();
        set_header(&mut output(&mut observation)[0], HEADER_WATERMARK, "5000");
        assert_eq!(kinds(&observation), [AnomalyKind::PrematureFire]);
    }

    #[test]
    fn the_fire_early_mutant_is_caught_as_a_premature_fire() {
        // 12 s holds the watermark at 6 999: 8 s is still on time for
        // [0, 10 s), which the mutant has fired already.
        let job = job();
        let input = vec![
            event(0, "a", 1_000, 1),
            event(1, "a", 12_000, 2),
            event(2, "a", 8_000, 4),
        ];
        let records = run_engine(&job, Selected(Some(Mutant::FireEarly)), &input);
        let found = kinds(&observe(&job, input, &records));
        assert!(found.contains(&AnomalyKind::PrematureFire), "{found:?}");
    }

    #[test]
    fn a_tasks_watermark_going_back_in_an_output_partition_is_a_watermark_regression() {
        let mut observation = faithful();
        // The late update follows the on-time firing at 10 999.
        set_header(&mut output(&mut observation)[1], HEADER_WATERMARK, "10998");
        assert_eq!(kinds(&observation), [AnomalyKind::WatermarkRegression]);
    }

    #[test]
    fn an_output_record_that_is_no_firing_is_a_wrong_result() {
        let mut observation = faithful();
        output(&mut observation)[0].value = Some(b"{}".to_vec().into());
        // Its place is also empty: the on-time firing is lost.
        assert_eq!(
            kinds(&observation),
            [AnomalyKind::LostOutput, AnomalyKind::WrongResult]
        );
    }
}

mod side_outputs {
    use super::*;

    #[test]
    fn a_late_record_in_neither_side_output_is_a_silent_drop() {
        let mut observation = faithful();
        observation.late.clear();
        let anomalies = check(&job(), &observation).unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].kind, AnomalyKind::SilentDrop);
        assert!(anomalies[0].records[0].starts_with("events-0@4 "));
    }

    #[test]
    fn the_drop_late_mutant_is_caught_as_a_silent_drop() {
        let job = job();
        let records = run_engine(&job, Selected(Some(Mutant::DropLate)), &input());
        assert_eq!(
            kinds(&observe(&job, input(), &records)),
            [AnomalyKind::SilentDrop]
        );
    }

    #[test]
    fn a_dead_letter_that_went_missing_is_a_silent_drop() {
        let mut observation = faithful();
        observation.dead_letter.clear();
        assert_eq!(kinds(&observation), [AnomalyKind::SilentDrop]);
    }

    #[test]
    fn a_record_the_reference_put_in_a_window_on_the_late_topic_is_wrong_late_output() {
        let mut observation = faithful();
        let on_time = job().outputs().late(&input()[0], 0);
        observation
            .late
            .get_mut(&0)
            .unwrap()
            .push(message(&on_time, 1));
        assert_eq!(kinds(&observation), [AnomalyKind::WrongLateOutput]);
    }

    #[test]
    fn a_late_record_written_twice_is_wrong_late_output() {
        let mut observation = faithful();
        let late = observation.late.get_mut(&0).unwrap();
        let mut copy = late[0].clone();
        copy.offset = 1;
        late.push(copy);
        assert_eq!(kinds(&observation), [AnomalyKind::WrongLateOutput]);
    }
}

mod logs_and_offsets {
    use super::*;

    #[test]
    fn a_record_of_an_aborted_transaction_read_committed_is_an_aborted_read() {
        let mut observation = faithful();
        observation.output_markers[0].commit = false;
        let found = kinds(&observation);
        assert_eq!(found, [AnomalyKind::AbortedRead; 5]);
    }

    #[test]
    fn a_commit_by_an_epoch_below_one_seen_earlier_is_a_zombie_commit() {
        let mut observation = faithful();
        observation.output_batches[0].producer_epoch = 1;
        assert_eq!(kinds(&observation), [AnomalyKind::ZombieCommit]);
    }

    #[test]
    fn a_committed_offset_going_back_is_an_offset_regression() {
        let mut observation = faithful();
        observation
            .committed_offsets
            .insert(0, vec![(10, 5), (20, 3), (30, 7)]);
        assert_eq!(kinds(&observation), [AnomalyKind::OffsetRegression]);
    }

    #[test]
    fn a_partition_left_unstable_is_a_hanging_transaction() {
        let mut observation = faithful();
        observation.unstable.insert("window-stats-0".to_string());
        assert_eq!(kinds(&observation), [AnomalyKind::HangingTransaction]);
    }

    #[test]
    fn a_run_that_did_not_drain_fails_liveness() {
        let mut observation = faithful();
        observation.drained = false;
        observation.drained_at_ms = None;
        assert_eq!(kinds(&observation), [AnomalyKind::Liveness]);
    }

    #[test]
    fn two_runs_with_different_trace_hashes_are_nondeterministic() {
        assert_eq!(nondeterminism(7, 7), None);
        let anomaly = nondeterminism(7, 8).unwrap();
        assert_eq!(anomaly.kind, AnomalyKind::Nondeterminism);
    }
}

mod reporting {
    use super::*;

    #[test]
    fn anomalies_come_by_kind_then_partition_and_offset_with_a_handful_of_records() {
        let mut observation = faithful();
        observation.drained = false;
        observation.output_markers[0].commit = false;
        output(&mut observation).remove(0);
        let anomalies = check(&job(), &observation).unwrap();
        let found: Vec<AnomalyKind> = anomalies.iter().map(|a| a.kind).collect();
        let mut sorted = found.clone();
        sorted.sort();
        assert_eq!(found, sorted);
        assert_eq!(found[0], AnomalyKind::LostOutput);
        assert_eq!(*found.last().unwrap(), AnomalyKind::Liveness);
        let offsets: Vec<&str> = anomalies
            .iter()
            .filter(|a| a.kind == AnomalyKind::AbortedRead)
            .map(|a| a.records[0].split(' ').next().unwrap())
            .collect();
        assert_eq!(
            offsets,
            [
                "window-stats-0@1",
                "window-stats-0@2",
                "window-stats-0@3",
                "window-stats-0@4"
            ]
        );
        assert!(anomalies.iter().all(|a| a.records.len() <= RECORDS_MAX));
    }
}
