//! The reference model against the engine's own tasks, and on cases worked
//! out by hand.

use std::time::Duration;

use eddyline_engine::job::Job;
use eddyline_engine::transport::{Message, ProducerRecord};
use eddyline_engine::worker::{JobLogic, TaskLogic};
use eddyline_sim::Seed;
use eddyline_sim::seed::DetRng;

use super::*;

pub(crate) fn shipped(name: &str) -> Job {
    let path = format!("{}/../jobs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    Job::from_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The engine's task `task` of `job`, run directly over `messages`.
fn engine(job: &Job, task: i32, messages: &[Message]) -> Vec<ProducerRecord> {
    let mut engine_task = job.new_task(task, Duration::ZERO).unwrap();
    let mut out = Vec::new();
    for message in messages {
        engine_task
            .process(message, Duration::ZERO, &mut out)
            .unwrap();
    }
    engine_task.finish(&mut out).unwrap();
    out
}

fn reference(job: &Job, task: i32, messages: &[Message]) -> Vec<ProducerRecord> {
    evaluate_task(job, task, messages)
        .unwrap()
        .iter()
        .map(|emitted| emitted.record().clone())
        .collect()
}

/// (step, D, L) of the workload of each shipped job.
fn times(name: &str) -> (i64, i64, i64) {
    match name {
        "window-stats" => (400, 5_000, 2_000),
        "click-counts" => (15_000, 10_000, 120_000),
        "click-sessions" => (20_000, 10_000, 0),
        _ => (30_000, 60_000, 0),
    }
}

/// One input value of job `name` at event time `ts`.
fn value(name: &str, rng: &mut DetRng, i: usize, ts: i64) -> (String, String) {
    let user = format!("u{}", rng.below(6));
    let value = match name {
        "window-stats" => {
            serde_json::json!({"key": user, "ts": ts, "value": rng.range_i64(-50, 100)})
        }
        "click-counts" | "click-sessions" => {
            let pages = ["/", "/search", "/item/1", "/checkout", "/checkout/done"];
            serde_json::json!({
                "user_id": user, "session_id": "s", "referrer": null,
                "page_url": if rng.chance(0.1) { serde_json::Value::Null }
                    else { (*rng.choose(&pages).unwrap()).into() },
                "timestamp_ms": ts,
            })
        }
        _ => {
            let op = *rng.choose(&["c", "c", "r", "u", "d"]).unwrap();
            let status = *rng.choose(&["completed", "completed", "pending"]).unwrap();
            let row = serde_json::json!({
                "id": i, "user_id": user, "status": status, "created_at": ts,
                "amount": format!("{}.{:02}", rng.range_u64(1, 500), rng.below(100)),
            });
            let (before, after) = match op {
                "d" => (row, serde_json::Value::Null),
                _ => (serde_json::Value::Null, row),
            };
            serde_json::json!({"before": before, "after": after, "op": op, "ts_ms": ts})
        }
    };
    (user, value.to_string())
}

/// A seeded partition input: mostly in order, some within `D`, some late
/// within `L`, some beyond, some pauses past a session gap, times on
/// window bounds, and a few undecodable lines.
fn workload(job: &Job, name: &str, seed: u64, partition: i32, count: usize) -> Vec<Message> {
    let mut rng = Seed::new(seed).derive(name).rng();
    let (step, bound, lateness) = times(name);
    let mut clock = 1_700_000_000_000_i64;
    (0..count)
        .map(|i| {
            clock += rng.range_i64(0, 2 * step);
            if rng.chance(0.03) {
                clock += 2_400_000;
            }
            // Round seconds now and then: event times on window bounds and
            // watermarks exactly at max timestamps and cleanup times.
            if rng.chance(0.3) {
                clock -= clock.rem_euclid(1_000);
            }
            let ts = match rng.below(20) {
                0 => clock - bound - lateness - 5 * step - 1,
                1 | 2 => clock - bound - rng.range_i64(1, lateness.max(step) + 1),
                3..=7 => clock - rng.range_i64(0, bound + 1),
                _ => clock,
            };
            let (key, value) = if rng.chance(0.04) {
                ("u0".to_string(), "not json {".to_string())
            } else {
                value(name, &mut rng, i, ts)
            };
            Message {
                topic: job.input_topics()[0].as_str().into(),
                partition,
                offset: i as i64,
                key: Some(key.into_bytes().into()),
                value: Some(value.into_bytes().into()),
                timestamp_ms: ts,
                headers: vec![("trace".to_string(), vec![i as u8])],
            }
        })
        .collect()
}

const JOBS: [&str; 4] = [
    "window-stats",
    "click-counts",
    "click-sessions",
    "order-revenue",
];

/// Runs the engine's task and the reference over seeded workloads of
/// `job` (made for the shipped job `name`), asserting equal records in
/// equal order; counts what the reference emitted, by kind.
fn compare(job: &Job, name: &str, seeds: u64, kinds: &mut BTreeMap<&'static str, usize>) {
    for seed in 0..seeds {
        let partition = (seed % 3) as i32;
        let input = workload(job, name, seed, partition, 150);
        let expected = engine(job, partition, &input);
        let actual = reference(job, partition, &input);
        assert_eq!(actual, expected, "job {}, seed {seed}", job.name());
        for emitted in evaluate_task(job, partition, &input).unwrap() {
            let kind = match emitted {
                Emitted::Firing { on_time: true, .. } => "on_time",
                Emitted::Firing { .. } => "late_update",
                Emitted::Late { .. } => "late",
                Emitted::DeadLetter { .. } => "dead letter",
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
}

#[test]
fn the_reference_emits_what_the_engines_tasks_emit_for_every_shipped_job() {
    let mut kinds = BTreeMap::new();
    for name in JOBS {
        compare(&shipped(name), name, 16, &mut kinds);
    }
    // The workloads reach every rule.
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}

#[test]
fn the_reference_emits_what_the_engines_tasks_emit_for_sliding_and_session_windows_with_lateness() {
    let text = std::fs::read_to_string(format!(
        "{}/../jobs/window-stats.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let tumbling = "kind = \"tumbling\"\nsize_ms = 10_000\noffset_ms = 0\n";
    assert!(text.contains(tumbling));
    let mut kinds = BTreeMap::new();
    for window in [
        "kind = \"sliding\"\nsize_ms = 10_000\nslide_ms = 700\noffset_ms = 500\n",
        "kind = \"sliding\"\nsize_ms = 4_000\nslide_ms = 4_000\n",
        "kind = \"session\"\ngap_ms = 3_000\n",
    ] {
        let job = Job::from_toml_str(&text.replace(tumbling, window), "variant.toml").unwrap();
        compare(&job, "window-stats", 16, &mut kinds);
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}

fn event(offset: i64, key: &str, ts: i64, value: i64) -> Message {
    Message {
        topic: "events".into(),
        partition: 0,
        offset,
        key: Some(key.as_bytes().to_vec().into()),
        value: Some(
            format!(r#"{{"key":"{key}","ts":{ts},"value":{value}}}"#)
                .into_bytes()
                .into(),
        ),
        timestamp_ms: ts,
        headers: Vec::new(),
    }
}

#[test]
fn the_reference_gets_a_window_stats_case_worked_out_by_hand_right() {
    // Tumbling 10 s, D = 5 s, L = 2 s.
    let job = shipped("window-stats");
    let input = [
        event(0, "a", 1_000, 1),
        event(1, "a", 16_000, 2), // wm 10 999: [0, 10 s) fires on time
        event(2, "a", 9_000, 4),  // 9 s + 2 s > 10 999: a late update
        event(3, "a", 22_000, 8), // wm 16 999: [0, 10 s) is purged
        event(4, "a", 3_000, 16), // 3 s + 2 s <= 16 999: late
    ];
    let lines: Vec<(String, i64)> = evaluate_task(&job, 0, &input)
        .unwrap()
        .iter()
        .map(|emitted| match emitted {
            Emitted::Firing {
                record, watermark, ..
            } => (
                String::from_utf8(record.value.clone().unwrap()).unwrap(),
                *watermark,
            ),
            Emitted::Late {
                offset, watermark, ..
            } => (format!("late {offset}"), *watermark),
            Emitted::DeadLetter { offset, .. } => (format!("dead {offset}"), 0),
        })
        .collect();
    let fire = |start: i64, count: u64, sum: i64, min: i64, max: i64, kind: &str| {
        format!(
            r#"{{"key":"a","window_start":{start},"window_end":{},"count":{count},"sum":{sum},"min_ts":{min},"max_ts":{max},"kind":"{kind}"}}"#,
            start + 10_000
        )
    };
    assert_eq!(
        lines,
        [
            (fire(0, 1, 1, 1_000, 1_000, "on_time"), 10_999),
            (fire(0, 2, 5, 1_000, 9_000, "late_update"), 10_999),
            ("late 4".to_string(), 16_999),
            (fire(10_000, 1, 2, 16_000, 16_000, "on_time"), i64::MAX),
            (fire(20_000, 1, 8, 22_000, 22_000, "on_time"), i64::MAX),
        ]
    );
}

#[test]
fn a_job_with_two_input_topics_is_refused() {
    let text = std::fs::read_to_string(format!(
        "{}/../jobs/window-stats.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace(r#"topics = ["events"]"#, r#"topics = ["events", "more"]"#);
    let job = Job::from_toml_str(&text, "two.toml").unwrap();
    let error = evaluate_task(&job, 0, &[]).unwrap_err();
    assert!(error.contains("one input topic"), "{error}");
}
