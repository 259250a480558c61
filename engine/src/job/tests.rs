//! Unit tests of jobs: decoding, bad records, aggregates, validation and
//! the builder, through a job and its task as the worker drives them.

use std::time::Duration;

use super::*;
use crate::error::Error;
use crate::transport::{Bytes, Message, ProducerRecord};
use crate::worker::{JobLogic, TaskLogic};

/// A JSON job over `clicks` (key `user`, time `ts`), tumbling 10 s windows,
/// `D = 0`, `L = 0`, with `aggregates` (TOML) and `extra` top-level lines.
fn json_job(aggregates: &str, extra: &str) -> String {
    format!(
        r#"
name = "test-job"
{extra}

[input]
topics = ["clicks"]
key = "user"

[event_time]
field = "ts"

[window]
kind = "tumbling"
size_ms = 10000

{aggregates}

[output]
topic = "out"
key_field = "user"
late_topic = "late"
dead_letter_topic = "dead"
"#
    )
}

const COUNT: &str = "[[aggregates]]\nname = \"n\"\nfunction = \"count\"\n";

fn job(text: &str) -> Job {
    Job::from_toml_str(text, "test.toml").unwrap_or_else(|error| panic!("{error}"))
}

fn message(offset: i64, value: Option<&[u8]>) -> Message {
    Message {
        topic: "clicks".into(),
        partition: 0,
        offset,
        key: Some(format!("k{offset}").into_bytes().into()),
        value: value.map(Bytes::copy_from_slice),
        timestamp_ms: 1_000 + offset,
        headers: Vec::new(),
    }
}

fn json(offset: i64, value: &str) -> Message {
    message(offset, Some(value.as_bytes()))
}

/// Runs task 0 of `job` over `messages`, then to the end of input.
fn run(job: &Job, messages: &[Message]) -> Vec<ProducerRecord> {
    let mut task = job.new_task(0, Duration::ZERO).unwrap();
    let mut out = Vec::new();
    for message in messages {
        task.process(message, Duration::ZERO, &mut out)
            .unwrap_or_else(|error| panic!("offset {}: {error}", message.offset));
    }
    task.finish(&mut out).unwrap();
    out
}

fn on(topic: &str, records: &[ProducerRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|record| record.topic == topic)
        .map(|record| String::from_utf8(record.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

fn header<'a>(record: &'a ProducerRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(header, _)| header == name)
        .map(|(_, value)| std::str::from_utf8(value).unwrap())
}

mod decoding {
    use super::*;

    #[test]
    fn a_json_record_gives_its_key_event_time_and_aggregate_fields() {
        let job = job(&json_job(
            "[[aggregates]]\nname = \"total\"\nfunction = \"sum\"\nfield = \"order.amount\"\ntype = \"decimal\"\n",
            "",
        ));
        let decoded = job.decode(&json(
            0,
            r#"{"user": 42, "ts": 5, "order": {"amount": "1.50"}}"#,
        ));
        let Decoded::Record(record) = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!((&*record.key, record.ts), ("42", 5));
        assert_eq!(
            record.value.slots.as_slice(),
            [Some(Scalar::Decimal("1.50".parse().unwrap()))]
        );
    }

    fn debezium_job() -> Job {
        let text = json_job(COUNT, "")
            .replace(
                "key = \"user\"",
                "key = \"after.user_id\"\nformat = \"debezium-json\"",
            )
            .replace("field = \"ts\"", "field = \"after.created_at\"");
        job(&text)
    }

    #[test]
    fn a_debezium_change_event_decodes_with_and_without_the_schema_payload_wrapper() {
        let job = debezium_job();
        let event = r#"{"before": null, "after": {"user_id": "u1", "created_at": 7000}, "op": "c", "ts_ms": 9}"#;
        let wrapped =
            format!(r#"{{"schema": {{"type": "struct", "fields": []}}, "payload": {event}}}"#);
        for text in [event.to_string(), wrapped] {
            match job.decode(&json(0, &text)) {
                Decoded::Record(record) => assert_eq!((&*record.key, record.ts), ("u1", 7_000)),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_debezium_tombstone_is_skipped_and_a_delete_without_a_filter_is_bad() {
        let job = debezium_job();
        assert_eq!(
            job.decode(&message(0, None)),
            Decoded::Skipped(Skip::Tombstone)
        );
        let delete = r#"{"before": {"user_id": "u1"}, "after": null, "op": "d"}"#;
        assert_eq!(
            job.decode(&json(1, delete)),
            Decoded::Bad("key field after.user_id is missing (its path crosses null)".to_string())
        );
    }

    #[test]
    fn event_times_in_seconds_microseconds_and_nanoseconds_become_ms() {
        for (unit, value, ms) in [
            ("s", 5, 5_000),
            ("ms", 5, 5),
            ("us", 5_999, 5),
            ("ns", 5_999_999, 5),
        ] {
            let text = json_job(COUNT, "").replace(
                "field = \"ts\"",
                &format!("field = \"ts\"\nunit = \"{unit}\""),
            );
            let decoded =
                job(&text).decode(&json(0, &format!(r#"{{"user": "u", "ts": {value}}}"#)));
            let Decoded::Record(record) = decoded else {
                panic!("{unit}: {decoded:?}")
            };
            assert_eq!(record.ts, ms, "{unit}");
        }
    }
}

mod bad_records {
    use super::*;

    fn debezium_text() -> String {
        json_job(
            "[[aggregates]]\nname = \"total\"\nfunction = \"sum\"\nfield = \"amount\"\n",
            "",
        )
        .replace(
            "key = \"user\"",
            "key = \"user\"\nformat = \"debezium-json\"",
        )
    }

    /// Every kind of bad record, with the reason the dead letter carries.
    const JSON_CASES: [(&[u8], &str); 14] = [
        (b"\xff{}", "the value is not UTF-8 (invalid byte at 0)"),
        (b"{\"user\": ", "the value is not JSON: EOF while parsing"),
        (b"[1, 2]", "the value is not a JSON object (it is an array)"),
        (b"{\"ts\": 1, \"amount\": 1}", "key field user is missing"),
        (
            b"{\"user\": null, \"ts\": 1, \"amount\": 1}",
            "key field user is null",
        ),
        (
            b"{\"user\": true, \"ts\": 1, \"amount\": 1}",
            "key field user: expected a string or an integer, found a boolean (true)",
        ),
        (
            b"{\"user\": 1.5, \"ts\": 1, \"amount\": 1}",
            "key field user: expected a string or an integer, found a number (1.5)",
        ),
        (
            b"{\"user\": \"u\", \"amount\": 1}",
            "event-time field ts is missing",
        ),
        (
            b"{\"user\": \"u\", \"ts\": \"1\", \"amount\": 1}",
            "event-time field ts: expected an integer in the i64 range, found a string (\"1\")",
        ),
        (
            b"{\"user\": \"u\", \"ts\": -1, \"amount\": 1}",
            "event-time field ts: -1 ms is before 1970 (event times are >= 0)",
        ),
        (
            b"{\"user\": \"u\", \"ts\": 253402300800000, \"amount\": 1}",
            "event-time field ts: 253402300800000 ms is after the year 9999",
        ),
        (
            b"{\"user\": \"u\", \"ts\": 1}",
            "aggregate field amount is missing",
        ),
        (
            b"{\"user\": \"u\", \"ts\": 1, \"amount\": \"5\"}",
            "aggregate field amount: expected an integer in the i64 range, found a string (\"5\")",
        ),
        (
            b"{\"user\": \"u\", \"ts\": 1, \"amount\": 5.5}",
            "aggregate field amount: expected an integer in the i64 range, found a number (5.5)",
        ),
    ];

    #[test]
    fn every_bad_record_becomes_a_dead_letter_with_its_reason_and_source_and_the_job_goes_on() {
        let job = job(&json_job(
            "[[aggregates]]\nname = \"total\"\nfunction = \"sum\"\nfield = \"amount\"\n",
            "",
        ));
        let mut messages: Vec<Message> = JSON_CASES
            .iter()
            .enumerate()
            .map(|(offset, (value, _))| message(offset as i64, Some(value)))
            .collect();
        messages.push(message(JSON_CASES.len() as i64, None));
        let good = json(99, r#"{"user": "u", "ts": 1, "amount": 7}"#);
        messages.push(good);
        let out = run(&job, &messages);
        let dead: Vec<&ProducerRecord> =
            out.iter().filter(|record| record.topic == "dead").collect();
        let mut reasons: Vec<&str> = JSON_CASES.iter().map(|(_, reason)| *reason).collect();
        reasons.push("the record has no value (a tombstone)");
        assert_eq!(dead.len(), reasons.len());
        for ((record, reason), message) in dead.iter().zip(&reasons).zip(&messages) {
            let error = header(record, HEADER_ERROR).unwrap();
            assert!(error.starts_with(reason), "{error:?} is not {reason:?}");
            assert_eq!(header(record, HEADER_SOURCE_TOPIC), Some("clicks"));
            assert_eq!(header(record, HEADER_SOURCE_PARTITION), Some("0"));
            assert_eq!(
                header(record, HEADER_SOURCE_OFFSET),
                Some(&*message.offset.to_string())
            );
            assert_eq!(record.key.as_deref(), message.key.as_deref());
            assert_eq!(record.value.as_deref(), message.value.as_deref());
            assert_eq!(record.timestamp_ms, Some(message.timestamp_ms));
        }
        assert_eq!(
            on("out", &out),
            [r#"{"user":"u","window_start":0,"window_end":10000,"total":7,"kind":"on_time"}"#]
        );
    }

    #[test]
    fn a_string_escaping_a_lone_surrogate_is_a_bad_record_not_a_panic() {
        let job = job(&json_job(COUNT, ""));
        for (value, reason) in [
            (
                r#"{"user": "\ud800", "ts": 1}"#,
                "key field user: a string that is not valid JSON text",
            ),
            (
                r#"{"\udc00": 0, "user": "u", "ts": 1}"#,
                "key field user: the value is not valid JSON text",
            ),
        ] {
            match job.decode(&json(0, value)) {
                Decoded::Bad(found) => assert!(found.starts_with(reason), "{value}: {found}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let debezium = json_job(COUNT, "").replace(
            "key = \"user\"",
            "key = \"user\"\nformat = \"debezium-json\"",
        );
        let job = super::job(&debezium);
        for value in [
            r#"{"op": "c", "\ud800": 1}"#,
            r#"{"schema": {}, "payload": {"op": "\ud800"}}"#,
        ] {
            assert!(
                matches!(job.decode(&json(0, value)), Decoded::Bad(_)),
                "{value}"
            );
        }
    }

    #[test]
    fn a_value_that_is_no_debezium_change_event_is_a_dead_letter() {
        let job = job(&debezium_text());
        for (value, reason) in [
            (
                r#"{"after": {"user": "u"}}"#,
                "not a Debezium change event: it has no `op`",
            ),
            (
                r#"{"op": "x", "after": {}}"#,
                "not a Debezium change event: unknown op \"x\"",
            ),
            (
                r#"{"op": 1}"#,
                "not a Debezium change event: op: expected a string",
            ),
            (
                r#"{"op": "c", "after": [1]}"#,
                "not a Debezium change event: `after` is an array",
            ),
            (
                r#"{"schema": {}, "payload": null}"#,
                "not a Debezium change event: the payload is null",
            ),
            (
                r#"{"schema": {}, "payload": 5}"#,
                "not a Debezium change event: the payload is a number",
            ),
        ] {
            match job.decode(&json(0, value)) {
                Decoded::Bad(found) => assert!(found.starts_with(reason), "{value}: {found}"),
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_compared_field_of_another_type_is_bad_and_a_missing_one_is_filtered() {
        let text = json_job(COUNT, "").replace(
            "[output]",
            "[filter]\nfield = \"status\"\neq = \"completed\"\n\n[output]",
        );
        let job = job(&text);
        assert_eq!(
            job.decode(&json(0, r#"{"user": "u", "ts": 1, "status": 3}"#)),
            Decoded::Bad("filter field status: expected a string, found a number (3)".to_string())
        );
        assert_eq!(
            job.decode(&json(1, r#"{"user": "u", "ts": 1}"#)),
            Decoded::Skipped(Skip::Filtered)
        );
    }

    #[test]
    fn on_bad_record_fail_stops_the_task_naming_topic_partition_and_offset() {
        let job = job(&json_job(COUNT, "on_bad_record = \"fail\""));
        let mut task = job.new_task(0, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let bad = Message {
            partition: 0,
            offset: 17,
            ..json(17, r#"{"user": "u"}"#)
        };
        let error = task.process(&bad, Duration::ZERO, &mut out).unwrap_err();
        assert!(matches!(error, Error::BadRecord(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "bad record: topic clicks partition 0 offset 17: event-time field ts is missing"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_message_from_a_partition_the_task_does_not_own_is_refused() {
        let job = job(&json_job(COUNT, ""));
        let mut task = job.new_task(1, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let error = task
            .process(
                &json(0, r#"{"user": "u", "ts": 1}"#),
                Duration::ZERO,
                &mut out,
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("task 1 of job \"test-job\" reads partition 1"),
            "{error}"
        );
        let other_topic = Message {
            topic: "views".into(),
            partition: 1,
            ..json(0, r#"{"user": "u", "ts": 1}"#)
        };
        assert!(
            task.process(&other_topic, Duration::ZERO, &mut out)
                .is_err()
        );
    }
}

mod aggregating {
    use super::*;

    fn aggregates(entries: &[(&str, &str, &str, &str)]) -> String {
        entries
            .iter()
            .map(|(name, function, field, field_type)| {
                let mut entry =
                    format!("[[aggregates]]\nname = \"{name}\"\nfunction = \"{function}\"\n");
                if !field.is_empty() {
                    entry.push_str(&format!("field = \"{field}\"\n"));
                }
                if !field_type.is_empty() {
                    entry.push_str(&format!("type = \"{field_type}\"\n"));
                }
                entry
            })
            .collect()
    }

    #[test]
    fn decimal_revenue_is_exact_where_floats_are_not() {
        let job = job(&json_job(
            &aggregates(&[
                ("revenue", "sum", "amount", "decimal"),
                ("mean", "avg", "amount", "decimal"),
            ]),
            "",
        ));
        let out = run(
            &job,
            &[
                json(0, r#"{"user": "a", "ts": 1, "amount": "0.1"}"#),
                json(1, r#"{"user": "a", "ts": 2, "amount": 0.2}"#),
                // Beyond f64's 2^53: 9007199254740993 is not a float.
                json(
                    2,
                    r#"{"user": "b", "ts": 3, "amount": "9007199254740993.25"}"#,
                ),
                json(3, r#"{"user": "b", "ts": 4, "amount": 1}"#),
                json(4, r#"{"user": "c", "ts": 4, "amount": "10.00"}"#),
                json(5, r#"{"user": "c", "ts": 4, "amount": "20.00"}"#),
            ],
        );
        assert_ne!(0.1_f64 + 0.2_f64, 0.3_f64, "floats would not do");
        assert_eq!(
            on("out", &out),
            [
                r#"{"user":"a","window_start":0,"window_end":10000,"revenue":"0.3","mean":"0.15","kind":"on_time"}"#,
                r#"{"user":"b","window_start":0,"window_end":10000,"revenue":"9007199254740994.25","mean":"4503599627370497.125","kind":"on_time"}"#,
                r#"{"user":"c","window_start":0,"window_end":10000,"revenue":"30.00","mean":"15.00","kind":"on_time"}"#,
            ]
        );
    }

    /// Decimal accumulators (sum, avg, min, first, distinct) through a
    /// snapshot: restored exactly (trailing zeros, the largest mantissa,
    /// negatives), re-encoded to the same bytes, and written as scale and
    /// mantissa, not as text.
    #[test]
    fn decimal_accumulators_restore_exactly_from_a_compact_snapshot() {
        let job = job(&json_job(
            &aggregates(&[
                ("revenue", "sum", "amount", "decimal"),
                ("mean", "avg", "amount", "decimal"),
                ("low", "min", "amount", "decimal"),
                ("opening", "first", "amount", "decimal"),
                ("amounts", "distinct_count", "amount", "decimal"),
            ]),
            "",
        ));
        let input = [
            json(0, r#"{"user": "a", "ts": 1, "amount": "10.00"}"#),
            json(1, r#"{"user": "a", "ts": 2, "amount": "-0.125"}"#),
            json(
                2,
                r#"{"user": "b", "ts": 3, "amount": "79228162514264337593543950335"}"#,
            ),
            json(
                3,
                r#"{"user": "c", "ts": 4, "amount": "-7.9228162514264337593543950335"}"#,
            ),
            json(
                4,
                r#"{"user": "c", "ts": 5, "amount": "0.0000000000000000000000000001"}"#,
            ),
            json(5, r#"{"user": "d", "ts": 5, "amount": "-0"}"#),
            json(6, r#"{"user": "e", "ts": 6, "amount": "-1.5"}"#),
            json(7, r#"{"user": "e", "ts": 7, "amount": "1.50"}"#),
        ];
        let whole = run(&job, &input);
        for split in 0..=input.len() {
            let mut task = job.new_task(0, Duration::ZERO).unwrap();
            let mut out = Vec::new();
            for message in &input[..split] {
                task.process(message, Duration::ZERO, &mut out).unwrap();
            }
            let snapshot = task.snapshot(Duration::ZERO).unwrap();
            for text in [&b"10.00"[..], b"0.125", b"79228162514264337593543950335"] {
                assert!(
                    !snapshot.windows(text.len()).any(|window| window == text),
                    "decimals are not written as text"
                );
            }
            let mut restored = job.restore_task(0, &snapshot, Duration::ZERO).unwrap();
            assert_eq!(restored.snapshot(Duration::ZERO).unwrap(), snapshot);
            for message in &input[split..] {
                restored.process(message, Duration::ZERO, &mut out).unwrap();
            }
            restored.finish(&mut out).unwrap();
            assert_eq!(out, whole, "split at {split}");
        }
        assert!(
            on("out", &whole)[0].contains(r#""revenue":"9.875""#),
            "{whole:?}"
        );
    }

    /// A snapshot of format version 1 (decimals as text) is refused by
    /// name, not misread.
    #[test]
    fn a_version_1_window_snapshot_is_refused() {
        let job = job(&json_job(
            &aggregates(&[("revenue", "sum", "amount", "decimal")]),
            "",
        ));
        let mut task = job.new_task(0, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let record = json(0, r#"{"user": "a", "ts": 1, "amount": "1.50"}"#);
        task.process(&record, Duration::ZERO, &mut out).unwrap();
        let mut snapshot = task.snapshot(Duration::ZERO).unwrap();
        let header = b"EDDY\x02\x02\x00";
        let at = snapshot
            .windows(header.len())
            .position(|window| window == header)
            .expect("the window task's snapshot, version 2");
        snapshot[at + 5] = 1;
        let error = job
            .restore_task(0, &snapshot, Duration::ZERO)
            .err()
            .expect("refused");
        assert!(matches!(error, Error::CorruptSnapshot(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("snapshot format version 1 is not supported"),
            "{error}"
        );
    }

    #[test]
    fn a_decimal_sum_that_would_need_rounding_is_an_overflow_not_a_wrong_sum() {
        let job = job(&json_job(
            &aggregates(&[("revenue", "sum", "amount", "decimal")]),
            "",
        ));
        let mut task = job.new_task(0, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let big = json(
            0,
            r#"{"user": "a", "ts": 1, "amount": "70000000000000000000000000000"}"#,
        );
        task.process(&big, Duration::ZERO, &mut out).unwrap();
        let half = json(1, r#"{"user": "a", "ts": 2, "amount": "0.5"}"#);
        let error = task.process(&half, Duration::ZERO, &mut out).unwrap_err();
        assert!(matches!(error, Error::Overflow(_)), "{error:?}");
    }

    #[test]
    fn every_builtin_reads_its_field_and_nulls_are_skipped() {
        let job = job(&json_job(
            &aggregates(&[
                ("n", "count", "", ""),
                ("sum", "sum", "v", ""),
                ("avg", "avg", "v", ""),
                ("min_page", "min", "page", "string"),
                ("max_v", "max", "v", ""),
                ("pages", "distinct_count", "page", "string"),
                ("first_page", "first", "page", "string"),
                ("last_page", "last", "page", "string"),
                ("last_flag", "last", "flag", "boolean"),
            ]),
            "",
        ));
        let out = run(
            &job,
            &[
                json(
                    0,
                    r#"{"user": "u", "ts": 5, "v": 4, "page": "/b", "flag": true}"#,
                ),
                json(
                    1,
                    r#"{"user": "u", "ts": 2, "v": null, "page": "/c", "flag": null}"#,
                ),
                json(
                    2,
                    r#"{"user": "u", "ts": 9, "v": 1, "page": null, "flag": false}"#,
                ),
                json(
                    3,
                    r#"{"user": "u", "ts": 5, "v": 2, "page": "/b", "flag": true}"#,
                ),
            ],
        );
        assert_eq!(
            on("out", &out),
            [concat!(
                r#"{"user":"u","window_start":0,"window_end":10000,"n":4,"sum":7,"avg":2.3333333333333335,"#,
                r#""min_page":"/b","max_v":4,"pages":2,"first_page":"/c","last_page":"/b","last_flag":false,"kind":"on_time"}"#
            )]
        );
    }

    #[test]
    fn an_aggregate_whose_values_are_all_null_writes_null_and_a_sum_of_nothing_zero() {
        let job = job(&json_job(
            &aggregates(&[
                ("sum", "sum", "v", ""),
                ("min", "min", "v", ""),
                ("avg", "avg", "v", ""),
            ]),
            "",
        ));
        let out = run(&job, &[json(0, r#"{"user": "u", "ts": 5, "v": null}"#)]);
        assert_eq!(
            on("out", &out),
            [
                r#"{"user":"u","window_start":0,"window_end":10000,"sum":0,"min":null,"avg":null,"kind":"on_time"}"#
            ]
        );
    }
}

mod validation {
    use super::*;

    fn refused(text: &str) -> String {
        Job::from_toml_str(text, "jobs/bad.toml")
            .unwrap_err()
            .to_string()
    }

    fn check_refusals(cases: &[(String, &str)]) {
        for (text, expected) in cases {
            let error = refused(text);
            assert!(
                error.starts_with(expected),
                "{error:?} does not start with {expected:?}"
            );
            assert!(!error.contains('\n'), "{error:?}");
        }
    }

    #[test]
    fn window_event_time_and_topic_errors_name_the_file_and_the_path() {
        let base = json_job(COUNT, "");
        check_refusals(&[
            (
                base.replace("size_ms = 10000", "gap_ms = 5"),
                "jobs/bad.toml: window.size_ms: a tumbling window needs `size_ms`",
            ),
            (
                base.replace("size_ms = 10000", "size_ms = 10000\ngap_ms = 5"),
                "jobs/bad.toml: window.gap_ms: a tumbling window takes no `gap_ms`",
            ),
            (
                base.replace("size_ms = 10000", "size_ms = 0"),
                "jobs/bad.toml: window.size_ms: must be > 0 ms, got 0",
            ),
            (
                base.replace(
                    "kind = \"tumbling\"",
                    "kind = \"sliding\"\nslide_ms = 20000",
                ),
                "jobs/bad.toml: window: sliding window size (10000 ms) must be >= slide (20000 ms)",
            ),
            (
                base.replace(
                    "size_ms = 10000",
                    "size_ms = 10000\nallowed_lateness_ms = -1",
                ),
                "jobs/bad.toml: window.allowed_lateness_ms: allowed lateness must be >= 0 ms",
            ),
            (
                base.replace("field = \"ts\"", "field = \"ts\"\nout_of_orderness_ms = -5"),
                "jobs/bad.toml: event_time.out_of_orderness_ms: must be >= 0 ms, got -5",
            ),
            (
                base.replace("field = \"ts\"", "field = \"ts\"\nidle_timeout_ms = 0"),
                "jobs/bad.toml: event_time.idle_timeout_ms: must be > 0 ms",
            ),
            (
                base.replace("field = \"ts\"", "field = \"ts..x\""),
                "jobs/bad.toml: event_time.field: field path \"ts..x\" has an empty segment",
            ),
            (
                base.replace("dead_letter_topic = \"dead\"\n", ""),
                "jobs/bad.toml: output.dead_letter_topic: missing",
            ),
            (
                base.replace("late_topic = \"late\"", "late_topic = \"clicks\""),
                "jobs/bad.toml: output.late_topic: topic \"clicks\" is already used by input.topics[0]",
            ),
            (
                base.replace("topic = \"out\"", "topic = \"out put\""),
                "jobs/bad.toml: output.topic: a topic name has only ASCII letters",
            ),
            (
                base.replace("name = \"test-job\"", "name = \"\""),
                "jobs/bad.toml: name: a job name is 1 to 200 characters",
            ),
        ]);
    }

    #[test]
    fn aggregate_and_checkpoint_errors_name_the_file_and_the_path() {
        let base = json_job(COUNT, "");
        check_refusals(&[
            (
                base.replace("name = \"n\"", "name = \"kind\""),
                "jobs/bad.toml: aggregates[0]: output field \"kind\" is already a field",
            ),
            (
                base.replace("name = \"n\"", "name = \"user\""),
                "jobs/bad.toml: aggregates[0]: output field \"user\" is already a field",
            ),
            (
                base.replace(
                    "function = \"count\"",
                    "function = \"count\"\nfield = \"x\"",
                ),
                "jobs/bad.toml: aggregates[0]: `count` counts records",
            ),
            (
                base.replace(
                    "function = \"count\"",
                    "function = \"sum\"\nfield = \"x\"\ntype = \"string\"",
                ),
                "jobs/bad.toml: aggregates[0].type: `sum` does not take a string field",
            ),
            (
                base.replace("function = \"count\"", "function = \"min\""),
                "jobs/bad.toml: aggregates[0]: `min` needs a `field`",
            ),
            (
                base.replace("name = \"n\"\nfunction = \"count\"", "process = \"nope\""),
                "jobs/bad.toml: aggregates[0].process: no process-window function \"nope\" (known: click-session-summary",
            ),
            (
                base.replace(
                    "name = \"n\"\nfunction = \"count\"",
                    "process = \"click-session-summary\"\ninputs = { url = \"x\" }",
                ),
                "jobs/bad.toml: aggregates[0].inputs.url: \"click-session-summary\" has no input \"url\"",
            ),
            (
                base.replace(
                    "name = \"n\"\nfunction = \"count\"",
                    "process = \"click-session-summary\"\nname = \"x\"",
                ),
                "jobs/bad.toml: aggregates[0].name: a `process` aggregate takes no `name`",
            ),
            (
                base.replace("[[aggregates]]\nname = \"n\"\nfunction = \"count\"\n", ""),
                "jobs/bad.toml: aggregates: a job needs at least one aggregate",
            ),
            (
                format!("{base}\n[checkpoint]\ninterval_ms = 0\n"),
                "jobs/bad.toml: checkpoint.interval_ms: must be > 0 ms",
            ),
            (
                format!("{base}\n[checkpoint]\nstore = {{ kafka = \"out\" }}\n"),
                "jobs/bad.toml: checkpoint.store.kafka: topic \"out\" is already used by output.topic",
            ),
        ]);
    }

    #[test]
    fn a_transaction_timeout_not_above_interval_plus_restart_budget_refuses_the_file() {
        let text = format!(
            "{}\n[checkpoint]\ninterval_ms = 30000\nrestart_budget_ms = 30000\n\n[delivery]\ntransaction_timeout_ms = 60000\n",
            json_job(COUNT, "")
        );
        let error = refused(&text);
        assert!(
            error.starts_with("jobs/bad.toml: delivery.transaction_timeout_ms: transaction_timeout_ms = 60000 must be greater than the checkpoint interval (30000 ms) plus the restart budget (30000 ms) = 60000 ms"),
            "{error}"
        );
        let at_least_once = text.replace("[delivery]", "[delivery]\nguarantee = \"at_least_once\"");
        assert!(Job::from_toml_str(&at_least_once, "ok.toml").is_ok());
        let longer = text.replace(
            "transaction_timeout_ms = 60000",
            "transaction_timeout_ms = 60001",
        );
        assert!(Job::from_toml_str(&longer, "ok.toml").is_ok());
    }

    #[test]
    fn the_defaults_are_those_the_reference_states() {
        let job = job(&json_job(COUNT, ""));
        assert_eq!(job.format(), Format::Json);
        assert_eq!(job.checkpoint_interval(), Duration::from_secs(10));
        assert_eq!(job.restart_budget(), Duration::from_secs(30));
        assert_eq!(job.transaction_timeout_ms(), 60_000);
        assert_eq!(job.delivery(), Delivery::ExactlyOnce);
        assert_eq!(job.on_bad_record(), OnBadRecord::DeadLetter);
        assert_eq!(
            job.checkpoint_store(),
            &StoreSpec::Kafka("test-job-checkpoints".to_string())
        );
        assert_eq!(job.watermark_config().out_of_orderness_ms, 0);
        assert_eq!(job.watermark_config().idle_timeout, None);
        assert_eq!(job.window_config().allowed_lateness_ms, 0);
        let dir = json_job(COUNT, "") + "\n[checkpoint]\nstore = { dir = \"/var/lib/eddy\" }\n";
        assert_eq!(
            Job::from_toml_str(&dir, "x").unwrap().checkpoint_store(),
            &StoreSpec::Dir("/var/lib/eddy".into())
        );
        let sim = json_job(COUNT, "") + "\n[checkpoint]\nstore = \"sim\"\n";
        assert_eq!(
            Job::from_toml_str(&sim, "x").unwrap().checkpoint_store(),
            &StoreSpec::Sim
        );
    }
}

mod rust_api {
    use super::*;
    use crate::aggregate::{Element, WindowContext};

    fn built() -> JobBuilder {
        Job::builder("test-job")
            .input(["clicks"])
            .key("user")
            .event_time("ts")
            .window(JobWindowSpec::tumbling(10_000))
            .aggregate(AggregateSpec::count("n"))
            .output("out")
            .key_field("user")
            .late_topic("late")
            .dead_letter_topic("dead")
    }

    #[test]
    fn a_job_built_in_code_is_the_job_of_the_same_file() {
        let from_code = built().build().unwrap();
        let from_file = job(&json_job(COUNT, ""));
        assert_eq!(from_code.spec(), from_file.spec());
        assert_eq!(from_code.fingerprint(), from_file.fingerprint());
        let messages = [
            json(0, r#"{"user": "u", "ts": 1}"#),
            json(1, r#"{"user": "v", "ts": 12000}"#),
        ];
        assert_eq!(run(&from_code, &messages), run(&from_file, &messages));
    }

    #[test]
    fn a_job_built_in_code_is_validated_like_a_file() {
        let error = built()
            .window(JobWindowSpec::session(0))
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "job \"test-job\" (Rust API): window.gap_ms: must be > 0 ms, got 0"
        );
        let error = Job::builder("x").build().unwrap_err();
        assert_eq!(
            error.to_string(),
            "job \"x\" (Rust API): input.topics: a job reads at least one topic"
        );
    }

    fn longest_gap(
        _: &WindowContext<'_>,
        records: &[Element<Row>],
    ) -> crate::Result<Vec<OutputValue>> {
        let mut times: Vec<i64> = records.iter().map(|record| record.ts).collect();
        times.sort_unstable();
        let gap = times
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or(0);
        let referrers = records
            .iter()
            .filter(|record| record.value.str(0).is_some())
            .count();
        Ok(vec![
            OutputValue::Integer(gap),
            OutputValue::Unsigned(referrers as u64),
        ])
    }

    #[test]
    fn a_registered_process_window_function_can_be_named_in_code_and_in_toml() {
        let function = ProcessWindow::new(
            [("referrer", FieldType::String)],
            ["longest_gap_ms", "referred"],
            longest_gap,
        );
        let in_code = built()
            .aggregate(AggregateSpec::process("gaps").input("referrer", "from"))
            .process_window("gaps", function.clone())
            .build()
            .unwrap();
        let text = json_job(
            &format!(
                "{COUNT}\n[[aggregates]]\nprocess = \"gaps\"\ninputs = {{ referrer = \"from\" }}\n"
            ),
            "",
        );
        let in_toml = JobBuilder::from_toml_str(&text, "gaps.toml")
            .unwrap()
            .process_window("gaps", function)
            .build()
            .unwrap();
        let messages = [
            json(0, r#"{"user": "u", "ts": 1, "from": "x"}"#),
            json(1, r#"{"user": "u", "ts": 7, "from": null}"#),
            json(2, r#"{"user": "u", "ts": 3, "from": "y"}"#),
        ];
        let expected = [
            r#"{"user":"u","window_start":0,"window_end":10000,"n":3,"longest_gap_ms":4,"referred":2,"kind":"on_time"}"#,
        ];
        assert_eq!(on("out", &run(&in_code, &messages)), expected);
        assert_eq!(on("out", &run(&in_toml, &messages)), expected);
        let unknown = Job::from_toml_str(&text, "gaps.toml").unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("no process-window function \"gaps\""),
            "{unknown}"
        );
    }
}

mod tasks {
    use super::*;

    fn two_topics() -> Job {
        let text = json_job(COUNT, "")
            .replace("topics = [\"clicks\"]", "topics = [\"clicks\", \"views\"]")
            .replace("field = \"ts\"", "field = \"ts\"\nidle_timeout_ms = 60000");
        job(&text)
    }

    fn on_topic(topic: &str, partition: i32, offset: i64, ts: i64) -> Message {
        Message {
            topic: topic.into(),
            partition,
            ..json(offset, &format!(r#"{{"user": "u", "ts": {ts}}}"#))
        }
    }

    #[test]
    fn a_task_reads_its_partition_of_every_input_and_the_slowest_input_holds_the_watermark() {
        let job = two_topics();
        let mut task = job.new_task(2, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let second = Duration::from_secs(1);
        task.process(&on_topic("clicks", 2, 0, 25_000), second, &mut out)
            .unwrap();
        assert_eq!(task.watermark(), i64::MIN, "views has said nothing yet");
        task.process(&on_topic("views", 2, 0, 5_000), second, &mut out)
            .unwrap();
        assert_eq!(task.watermark(), 4_999);
        assert!(out.is_empty());
        // views goes idle: the watermark follows clicks alone.
        task.on_processing_time(Duration::from_secs(61), &mut out)
            .unwrap();
        assert_eq!(task.watermark(), 24_999);
        assert_eq!(
            on("out", &out),
            [r#"{"user":"u","window_start":0,"window_end":10000,"n":1,"kind":"on_time"}"#]
        );
    }

    /// Window-stats-like: tumbling 10 s, `D = 5 s`, records of key `u` at
    /// `times` (ms), run by task 3 with `mutants`: the firings.
    fn firings_with(mutants: crate::worker::Selected, times: &[i64]) -> Vec<ProducerRecord> {
        let text = json_job(COUNT, "").replace(
            "field = \"ts\"",
            "field = \"ts\"\nout_of_orderness_ms = 5000",
        );
        let job = job(&text).with_mutants(mutants);
        let mut task = job.new_task(3, Duration::ZERO).unwrap();
        let mut out = Vec::new();
        for (offset, ts) in (0..).zip(times) {
            let message = Message {
                partition: 3,
                ..json(offset, &format!(r#"{{"user": "u", "ts": {ts}}}"#))
            };
            task.process(&message, Duration::ZERO, &mut out).unwrap();
        }
        task.finish(&mut out).unwrap();
        out.retain(|record| record.topic == "out");
        out
    }

    fn watermark_and_task(record: &ProducerRecord) -> (i64, i32) {
        (
            header(record, HEADER_WATERMARK).unwrap().parse().unwrap(),
            header(record, HEADER_TASK).unwrap().parse().unwrap(),
        )
    }

    #[test]
    fn every_firing_carries_the_tasks_watermark_at_emission_and_the_task_number() {
        let out = firings_with(crate::worker::Selected(None), &[1_000, 16_000]);
        let headers: Vec<(i64, i32)> = out.iter().map(watermark_and_task).collect();
        // [0, 10 s) waits for 16 s - 5 s - 1 ms; [10 s, 20 s) for the end.
        assert_eq!(headers, [(10_999, 3), (i64::MAX, 3)]);
    }

    #[test]
    fn a_fire_early_firing_shows_a_watermark_below_its_windows_max_timestamp() {
        // 12 s moves the job's watermark to 6 999 only: [0, 10 s) must wait
        // (8 s is still to come, on time). The mutant fires it at once.
        let times = [1_000, 12_000, 8_000];
        let faithful = firings_with(crate::worker::Selected(None), &times);
        let headers: Vec<(i64, i32)> = faithful.iter().map(watermark_and_task).collect();
        assert_eq!(headers, [(i64::MAX, 3), (i64::MAX, 3)]);
        let early = firings_with(
            crate::worker::Selected(Some(crate::worker::Mutant::FireEarly)),
            &times,
        );
        let value = String::from_utf8(early[0].value.clone().unwrap()).unwrap();
        assert_eq!(
            value,
            r#"{"user":"u","window_start":0,"window_end":10000,"n":1,"kind":"on_time"}"#
        );
        let (watermark, task) = watermark_and_task(&early[0]);
        assert_eq!((watermark, task), (6_999, 3));
        assert!(watermark < 10_000 - 1, "premature: below window_end - 1");
        // The end of input is the end for the mutant too.
        let last = early.last().unwrap();
        assert_eq!(watermark_and_task(last), (i64::MAX, 3));
    }

    #[test]
    fn a_negative_task_number_is_refused() {
        let error = two_topics().new_task(-1, Duration::ZERO).err().unwrap();
        assert!(
            error.to_string().contains("task number -1 is negative"),
            "{error}"
        );
    }
}
