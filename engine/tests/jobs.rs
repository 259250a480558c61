//! Jobs end to end, through `JobLogic`/`TaskLogic` as the worker drives
//! them: the shipped jobs in `jobs/`, `window-stats` against `eddy
//! window`'s own path, snapshots and restores, and the mutants.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use eddyline_engine::Error;
use eddyline_engine::aggregate::Summary;
use eddyline_engine::job::{HEADER_WATERMARK, Job};
use eddyline_engine::record::Record;
use eddyline_engine::spec::WindowSpec;
use eddyline_engine::transport::{Message, ProducerRecord};
use eddyline_engine::window::{Output, WindowTask};
use eddyline_engine::worker::{JobLogic, Mutant, Selected, TaskLogic};
use serde_json::Value;

fn jobs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../jobs")
}

fn shipped(name: &str) -> Job {
    Job::from_file(jobs_dir().join(format!("{name}.toml")))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Messages of partition 0 of `topic`, one per JSON value, offsets from 0.
fn messages(topic: &str, values: &[String]) -> Vec<Message> {
    values
        .iter()
        .enumerate()
        .map(|(offset, value)| Message {
            topic: topic.into(),
            partition: 0,
            offset: offset as i64,
            key: None,
            value: Some(value.clone().into_bytes().into()),
            timestamp_ms: 1_700_000_000_000 + offset as i64,
            headers: Vec::new(),
        })
        .collect()
}

/// Runs `task` over `messages` (processing time: one second per message).
fn feed(task: &mut impl TaskLogic, messages: &[Message], out: &mut Vec<ProducerRecord>) {
    for message in messages {
        let now = Duration::from_secs(message.offset as u64);
        task.process(message, now, out)
            .unwrap_or_else(|error| panic!("offset {}: {error}", message.offset));
    }
}

/// Task 0 of `job` over all `messages`, then the end of input.
fn run(job: &impl JobLogic, messages: &[Message]) -> Vec<ProducerRecord> {
    let mut task = job.new_task(0, Duration::ZERO).unwrap();
    let mut out = Vec::new();
    feed(&mut task, messages, &mut out);
    task.finish(&mut out).unwrap();
    out
}

fn values_on(topic: &str, records: &[ProducerRecord]) -> Vec<Value> {
    records
        .iter()
        .filter(|record| record.topic == topic)
        .map(|record| serde_json::from_slice(record.value.as_deref().unwrap()).unwrap())
        .collect()
}

/// The keys of a JSON object in the order the text has them.
fn field_names(json: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            deserializer.deserialize_map(Visitor)
        }
    }
    serde_json::from_slice::<Keys>(json).unwrap().0
}

mod shipped_jobs {
    use super::*;

    #[test]
    fn every_file_in_jobs_parses_into_a_job() {
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(jobs_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let job = Job::from_file(&path).unwrap_or_else(|error| panic!("{error}"));
                assert_eq!(
                    path.file_stem().unwrap().to_str().unwrap(),
                    job.name(),
                    "a job file is named after its job"
                );
                names.insert(job.name().to_string());
            }
        }
        let expected = [
            "click-counts",
            "click-sessions",
            "order-revenue",
            "window-stats",
        ];
        assert_eq!(names, expected.map(String::from).into_iter().collect());
        assert_eq!(
            shipped("click-sessions").output_fields(),
            [
                "user_id",
                "window_start",
                "window_end",
                "session_start",
                "session_end",
                "duration_ms",
                "page_count",
                "click_count",
                "converted",
                "kind"
            ]
        );
        assert_eq!(
            shipped("order-revenue").output_fields(),
            [
                "user_id",
                "window_start",
                "window_end",
                "order_count",
                "total_revenue",
                "kind"
            ]
        );
    }

    fn click(user: &str, page: &str, ts: i64, referrer: Option<&str>) -> String {
        serde_json::json!({
            "user_id": user, "session_id": "s", "page_url": page,
            "timestamp_ms": ts, "referrer": referrer,
        })
        .to_string()
    }

    #[test]
    fn click_sessions_summarize_each_session_and_see_a_checkout() {
        const MINUTE: i64 = 60_000;
        let clicks = [
            click("u1", "/home", 0, Some("https://search.example")),
            click("u1", "/product/7", 2 * MINUTE, None),
            click("u2", "/home", 3 * MINUTE, None),
            click("u1", "/checkout/confirm", 9 * MINUTE, None),
            click("u1", "/product/7", 5 * MINUTE, None),
            // 31 minutes after the last click of u1: a new session.
            click("u1", "/home", 40 * MINUTE, None),
        ];
        let out = run(
            &shipped("click-sessions"),
            &messages("user-clicks", &clicks),
        );
        let summaries = values_on("session-summaries", &out);
        let brief: Vec<Value> = summaries
            .iter()
            .map(|summary| {
                serde_json::json!([
                    summary["user_id"],
                    summary["session_start"],
                    summary["session_end"],
                    summary["duration_ms"],
                    summary["page_count"],
                    summary["click_count"],
                    summary["converted"],
                    summary["kind"],
                ])
            })
            .collect();
        assert_eq!(
            brief,
            [
                serde_json::json!(["u2", 180_000, 180_000, 0, 1, 1, false, "on_time"]),
                serde_json::json!(["u1", 0, 540_000, 540_000, 3, 4, true, "on_time"]),
                serde_json::json!(["u1", 2_400_000, 2_400_000, 0, 1, 1, false, "on_time"]),
            ]
        );
        assert_eq!(summaries[1]["window_end"], 540_000 + 1_800_000);
    }

    fn order(op: &str, user: i64, status: &str, amount: &str, created_at: i64) -> String {
        let after = serde_json::json!({
            "id": 1, "user_id": user, "status": status, "amount": amount, "created_at": created_at,
        });
        serde_json::json!({"before": null, "after": after, "op": op, "ts_ms": created_at})
            .to_string()
    }

    #[test]
    fn order_revenue_sums_completed_creates_and_snapshot_reads_exactly() {
        const HOUR: i64 = 3_600_000;
        let wrapped = format!(
            r#"{{"schema": {{"type": "struct"}}, "payload": {}}}"#,
            order("c", 7, "completed", "0.20", HOUR + 2)
        );
        let events = vec![
            order("c", 7, "completed", "0.10", HOUR + 1),
            wrapped,
            order("r", 8, "completed", "19.99", HOUR + 5),
            order("c", 7, "pending", "100.00", HOUR + 6),
            order("u", 7, "completed", "100.00", HOUR + 7),
            r#"{"before": {"id": 1, "user_id": 7}, "after": null, "op": "d", "ts_ms": 9}"#
                .to_string(),
            order("c", 8, "completed", "9007199254740993.01", HOUR + 9),
        ];
        let mut input = messages("orders", &events);
        // Debezium's tombstone after the delete.
        input.insert(
            6,
            Message {
                value: None,
                ..input[5].clone()
            },
        );
        let out = run(&shipped("order-revenue"), &input);
        assert!(
            values_on("order-revenue-dead-letter", &out).is_empty(),
            "{out:?}"
        );
        let revenue = values_on("order-revenue", &out);
        let brief: Vec<Value> = revenue
            .iter()
            .map(|row| {
                serde_json::json!([
                    row["user_id"],
                    row["window_start"],
                    row["order_count"],
                    row["total_revenue"]
                ])
            })
            .collect();
        assert_eq!(
            brief,
            [
                serde_json::json!(["7", HOUR, 2, "0.30"]),
                serde_json::json!(["8", HOUR, 2, "9007199254741013.00"]),
            ]
        );
        let first = out
            .iter()
            .find(|record| record.topic == "order-revenue")
            .unwrap();
        assert_eq!(first.key.as_deref(), Some(&b"7"[..]));
        assert_eq!(first.timestamp_ms, Some(2 * HOUR - 1));
        assert_eq!(
            field_names(first.value.as_deref().unwrap()),
            shipped("order-revenue").output_fields()
        );
    }

    #[test]
    fn click_counts_update_a_window_within_the_lateness_and_send_later_clicks_aside() {
        let clicks = [
            click("u1", "/a", 1_000, None),
            click("u1", "/b", 310_000, None), // watermark 299_999: [0, 5 min) fires
            click("u1", "/c", 2_000, None),   // late update of [0, 5 min)
            click("u1", "/d", 430_000, None), // watermark 419_999: [0, 5 min) purged
            click("u1", "/e", 3_000, None),   // late: to the late topic
        ];
        let input = messages("user-clicks", &clicks);
        let out = run(&shipped("click-counts"), &input);
        let counts: Vec<Value> = values_on("click-counts", &out)
            .iter()
            .map(|row| {
                serde_json::json!([
                    row["window_start"],
                    row["click_count"],
                    row["page_count"],
                    row["kind"]
                ])
            })
            .collect();
        assert_eq!(
            counts,
            [
                serde_json::json!([0, 1, 1, "on_time"]),
                serde_json::json!([0, 2, 2, "late_update"]),
                serde_json::json!([300_000, 2, 2, "on_time"]),
            ]
        );
        let late: Vec<&ProducerRecord> = out
            .iter()
            .filter(|record| record.topic == "click-counts-late")
            .collect();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].value.as_deref(), input[4].value.as_deref());
        assert_eq!(late[0].timestamp_ms, Some(input[4].timestamp_ms));
        let watermark = late[0]
            .headers
            .iter()
            .find(|(name, _)| name == HEADER_WATERMARK)
            .unwrap();
        assert_eq!(watermark.1, b"419999");
    }
}

mod window_stats {
    use super::*;

    /// A fixed pseudo-random sequence of `{"key", "ts", "value"}` events:
    /// keys a..e, mostly rising times with disorder, some very late.
    fn events(count: usize) -> Vec<(String, i64, i64)> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut clock = 0i64;
        (0..count)
            .map(|_| {
                clock += next(3_000) as i64;
                let jitter = next(9_000) as i64;
                let very_late = if next(10) == 0 { 20_000 } else { 0 };
                let key = ["a", "b", "c", "d", "e"][next(5) as usize].to_string();
                let value = next(2_001) as i64 - 1_000;
                (key, (clock - jitter - very_late).max(0), value)
            })
            .collect()
    }

    /// One output, as both sides give it.
    #[derive(Debug, PartialEq)]
    enum Line {
        Fire(String, i64, i64, u64, i64, i64, i64, String),
        Late(String, i64, i64, i64),
    }

    /// `eddy window`'s path: the JSON spec, `WindowTask` with `Summary`.
    fn eddy_window(spec_json: &str, events: &[(String, i64, i64)]) -> Vec<Line> {
        let spec = WindowSpec::from_json(spec_json).unwrap();
        let mut task: WindowTask<(), i64, Summary> = WindowTask::new(
            spec.watermark_config().unwrap(),
            spec.window_config().unwrap(),
            Summary,
            [()],
            Duration::ZERO,
        )
        .unwrap();
        let mut outputs = Vec::new();
        for (key, ts, value) in events {
            task.process(
                &(),
                Record::new(key.as_str(), *ts, *value),
                Duration::ZERO,
                &mut outputs,
            )
            .unwrap();
        }
        task.finish(&mut outputs).unwrap();
        outputs
            .into_iter()
            .map(|output| match output {
                Output::Fire(firing) => Line::Fire(
                    firing.key.to_string(),
                    firing.window.start,
                    firing.window.end,
                    firing.result.count,
                    firing.result.sum,
                    firing.result.min_ts,
                    firing.result.max_ts,
                    firing.kind.as_str().to_string(),
                ),
                Output::Late(late) => Line::Late(
                    late.record.key.to_string(),
                    late.record.ts,
                    late.record.value,
                    late.watermark,
                ),
            })
            .collect()
    }

    fn job_lines(job: &Job, records: &[ProducerRecord]) -> Vec<Line> {
        records
            .iter()
            .map(|record| {
                let value: Value =
                    serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
                if record.topic == job.late_topic() {
                    let (_, watermark) = record
                        .headers
                        .iter()
                        .find(|(name, _)| name == HEADER_WATERMARK)
                        .unwrap();
                    let watermark = std::str::from_utf8(watermark).unwrap().parse().unwrap();
                    return Line::Late(
                        value["key"].as_str().unwrap().to_string(),
                        value["ts"].as_i64().unwrap(),
                        value["value"].as_i64().unwrap(),
                        watermark,
                    );
                }
                assert_eq!(record.topic, job.output_topic());
                assert_eq!(
                    field_names(record.value.as_deref().unwrap()),
                    job.output_fields()
                );
                Line::Fire(
                    value["key"].as_str().unwrap().to_string(),
                    value["window_start"].as_i64().unwrap(),
                    value["window_end"].as_i64().unwrap(),
                    value["count"].as_u64().unwrap(),
                    value["sum"].as_i64().unwrap(),
                    value["min_ts"].as_i64().unwrap(),
                    value["max_ts"].as_i64().unwrap(),
                    value["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_window_stats_job_fires_what_eddy_window_fires_field_for_field() {
        let job = shipped("window-stats");
        // The spec example of docs/eddy-window.md, which the job file copies.
        let spec_json = r#"{"window": {"kind": "tumbling", "size": 10000, "offset": 0}, "out_of_orderness": 5000, "allowed_lateness": 2000}"#;
        let spec = WindowSpec::from_json(spec_json).unwrap();
        assert_eq!(job.window_config(), spec.window_config().unwrap());
        assert_eq!(job.watermark_config(), spec.watermark_config().unwrap());
        assert_eq!(
            job.output_fields(),
            [
                "key",
                "window_start",
                "window_end",
                "count",
                "sum",
                "min_ts",
                "max_ts",
                "kind"
            ]
        );
        let events = events(400);
        let values: Vec<String> = events
            .iter()
            .map(|(key, ts, value)| {
                serde_json::json!({"key": key, "ts": ts, "value": value}).to_string()
            })
            .collect();
        let expected = eddy_window(spec_json, &events);
        let kinds: BTreeSet<&str> = expected
            .iter()
            .map(|line| match line {
                Line::Fire(.., kind) => kind.as_str(),
                Line::Late(..) => "late",
            })
            .collect();
        assert_eq!(
            kinds,
            ["late", "late_update", "on_time"].into(),
            "the input exercises every output"
        );
        let found = job_lines(&job, &run(&job, &messages("events", &values)));
        assert_eq!(found.len(), expected.len());
        for (index, (found, expected)) in found.iter().zip(&expected).enumerate() {
            assert_eq!(found, expected, "output {index}");
        }
    }
}

mod snapshots {
    use super::*;

    fn inputs() -> Vec<(Job, Vec<Message>)> {
        const MINUTE: i64 = 60_000;
        let clicks: Vec<String> = (0..40)
            .map(|index: i64| {
                let user = ["u1", "u2", "u3"][index as usize % 3];
                let page = ["/home", "/product", "/checkout"][index as usize % 3 * (index as usize % 2)];
                // Bursts 40 minutes apart (new sessions), disorder inside.
                let ts = (index / 10) * 40 * MINUTE + (index % 10) * MINUTE - (index % 4) * 20_000;
                serde_json::json!({"user_id": user, "page_url": page, "timestamp_ms": ts.max(0), "referrer": null})
                    .to_string()
            })
            .collect();
        let events: Vec<String> = (0..40)
            .map(|index: i64| {
                let ts = index * 1_500 - (index % 5) * 4_000;
                let key = ["a", "b"][index as usize % 2];
                serde_json::json!({"key": key, "ts": ts.max(0), "value": index}).to_string()
            })
            .collect();
        vec![
            (shipped("click-sessions"), messages("user-clicks", &clicks)),
            (shipped("click-counts"), messages("user-clicks", &clicks)),
            (shipped("window-stats"), messages("events", &events)),
        ]
    }

    #[test]
    fn a_restored_task_continues_exactly_as_the_uninterrupted_one_at_every_split() {
        for (job, input) in inputs() {
            let whole = run(&job, &input);
            assert!(!whole.is_empty());
            for split in 0..=input.len() {
                let mut task = job.new_task(0, Duration::ZERO).unwrap();
                let mut out = Vec::new();
                feed(&mut task, &input[..split], &mut out);
                let now = Duration::from_secs(split as u64);
                let snapshot = task.snapshot(now).unwrap();
                drop(task);
                let mut restored = job.restore_task(0, &snapshot, now).unwrap();
                assert_eq!(
                    restored.snapshot(now).unwrap(),
                    snapshot,
                    "{}: re-encoding",
                    job.name()
                );
                feed(&mut restored, &input[split..], &mut out);
                restored.finish(&mut out).unwrap();
                assert_eq!(out, whole, "{} split at {split}", job.name());
            }
        }
    }

    #[test]
    fn a_snapshot_restored_into_another_job_task_or_configuration_is_refused() {
        let job = shipped("window-stats");
        let mut task = job.new_task(0, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let values = [r#"{"key": "a", "ts": 1, "value": 1}"#.to_string()];
        feed(&mut task, &messages("events", &values), &mut out);
        let snapshot = task.snapshot(Duration::ZERO).unwrap();
        let refusal = |job: &Job, task: i32, bytes: &[u8]| match job.restore_task(
            task,
            bytes,
            Duration::ZERO,
        ) {
            Err(Error::CorruptSnapshot(reason)) => reason,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("restored"),
        };
        assert!(refusal(&job, 1, &snapshot).contains("the snapshot is of task 0, not of task 1"));
        let other = shipped("click-counts");
        assert!(
            refusal(&other, 0, &snapshot)
                .contains("the snapshot is of job \"window-stats\", not of job \"click-counts\"")
        );
        let text = std::fs::read_to_string(jobs_dir().join("window-stats.toml")).unwrap();
        let resized = Job::from_toml_str(
            &text.replace("size_ms = 10_000", "size_ms = 20_000"),
            "resized",
        )
        .unwrap();
        assert!(
            refusal(&resized, 0, &snapshot)
                .contains("another window, watermark, aggregate or input configuration")
        );
        let more = Job::from_toml_str(
            &text.replace("name = \"max_ts\"", "name = \"latest\""),
            "renamed",
        )
        .unwrap();
        assert!(refusal(&more, 0, &snapshot).contains("another window"));
        assert!(refusal(&job, 0, &snapshot[..snapshot.len() - 1]).contains("undecodable"));
        assert!(refusal(&job, 0, b"EDDY\x02\x01\x00").contains("does not start with"));
        let mut future = snapshot.clone();
        future[4] = 9;
        assert!(refusal(&job, 0, &future).contains("format version 9"));
    }
}

mod mutants {
    use super::*;

    /// click-counts (D = 10 s, L = 2 min, 5-minute windows): one click out
    /// of order by 6 s, one click beyond the allowed lateness.
    fn input() -> Vec<Message> {
        let click = |ts: i64| {
            serde_json::json!({"user_id": "u1", "page_url": "/p", "timestamp_ms": ts}).to_string()
        };
        messages(
            "user-clicks",
            &[
                click(1_000),
                click(301_000),
                click(295_000),
                click(500_000),
                click(4_000),
            ],
        )
    }

    fn counts(out: &[ProducerRecord]) -> Vec<Value> {
        values_on("click-counts", out)
            .iter()
            .map(|row| serde_json::json!([row["window_start"], row["click_count"], row["kind"]]))
            .collect()
    }

    #[test]
    fn fire_early_fires_a_window_before_its_late_click_where_the_faithful_job_waits() {
        let job = shipped("click-counts");
        let faithful = counts(&run(&job, &input()));
        assert_eq!(
            faithful,
            [
                serde_json::json!([0, 2, "on_time"]),
                serde_json::json!([300_000, 2, "on_time"]),
            ]
        );
        let fire_early = Selected(Some(Mutant::FireEarly));
        let early = counts(&run(&job.with_mutants(fire_early), &input()));
        assert_eq!(
            early,
            [
                serde_json::json!([0, 1, "on_time"]),
                serde_json::json!([0, 2, "late_update"]),
                serde_json::json!([300_000, 2, "on_time"]),
            ]
        );
    }

    #[test]
    fn drop_late_loses_the_late_click_that_the_faithful_job_writes_aside() {
        let job = shipped("click-counts");
        let late = |out: &[ProducerRecord]| values_on("click-counts-late", out);
        let faithful = run(&job, &input());
        assert_eq!(
            late(&faithful),
            [serde_json::json!({"user_id": "u1", "page_url": "/p", "timestamp_ms": 4_000})]
        );
        let drop_late = Selected(Some(Mutant::DropLate));
        let dropped = run(&job.with_mutants(drop_late), &input());
        assert!(late(&dropped).is_empty());
        assert_eq!(
            counts(&dropped),
            counts(&faithful),
            "only the late output differs"
        );
        let skip_fencing = Selected(Some(Mutant::SkipFencing));
        let other = run(&job.with_mutants(skip_fencing), &input());
        assert_eq!(other, faithful, "a worker mutant leaves the task as it is");
    }
}
