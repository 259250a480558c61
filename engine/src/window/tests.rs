//! Unit tests of the window operator, one per rule. Each test feeds
//! `(key, ts, value)` events to a one-input task and reads its outputs as
//! lines `"{step} wm={watermark} {kind} {key} [{start},{end}) n={count}
//! sum={sum}"` or `"{step} wm={watermark} late {key} ts={ts} v={value}"`,
//! where `step` is the index of the event that caused it (the number of
//! events for the end of input).

use std::time::Duration;

use super::operator::KindState;
use super::state::StateKey;
use super::*;
use crate::aggregate::{Element, Process, Summary, SummaryResult};
use crate::error::{Error, Result};
use crate::record::{Key, Record};
use crate::spec::WindowSpec;
use crate::time::EventTime;
use crate::watermark::WatermarkConfig;

type SummaryTask = WindowTask<u32, i64, Summary>;

fn task(spec_json: &str) -> SummaryTask {
    let spec = WindowSpec::from_json(spec_json).expect("test spec is valid");
    WindowTask::new(
        spec.watermark_config().unwrap(),
        spec.window_config().unwrap(),
        Summary,
        [0u32],
        Duration::ZERO,
    )
    .unwrap()
}

fn spec(window: &str, out_of_orderness_ms: i64, allowed_lateness_ms: i64) -> String {
    format!(
        r#"{{"window": {window}, "out_of_orderness": {out_of_orderness_ms}, "allowed_lateness": {allowed_lateness_ms}}}"#
    )
}

fn tumbling(size: i64, d: i64, l: i64) -> String {
    spec(&format!(r#"{{"kind": "tumbling", "size": {size}}}"#), d, l)
}

fn sliding(size: i64, slide: i64, d: i64, l: i64) -> String {
    spec(
        &format!(r#"{{"kind": "sliding", "size": {size}, "slide": {slide}}}"#),
        d,
        l,
    )
}

fn session(gap: i64, d: i64, l: i64) -> String {
    spec(&format!(r#"{{"kind": "session", "gap": {gap}}}"#), d, l)
}

fn time(t: EventTime) -> String {
    match t {
        EventTime::MIN => "MIN".to_string(),
        EventTime::MAX => "MAX".to_string(),
        t => t.to_string(),
    }
}

fn line(step: usize, output: &Output<i64, SummaryResult>) -> String {
    match output {
        Output::Fire(firing) => format!(
            "{step} wm={} {} {} [{},{}) n={} sum={}",
            time(firing.watermark),
            firing.kind.as_str(),
            firing.key,
            firing.window.start,
            firing.window.end,
            firing.result.count,
            firing.result.sum
        ),
        Output::Late(late) => format!(
            "{step} wm={} late {} ts={} v={}",
            time(late.watermark),
            late.record.key,
            late.record.ts,
            late.record.value
        ),
    }
}

fn feed(task: &mut SummaryTask, first_step: usize, events: &[(&str, i64, i64)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut out = Vec::new();
    for (index, (key, ts, value)) in events.iter().enumerate() {
        task.process(&0, Record::new(*key, *ts, *value), Duration::ZERO, &mut out)
            .unwrap();
        lines.extend(
            out.drain(..)
                .map(|output| line(first_step + index, &output)),
        );
    }
    lines
}

fn run(spec_json: &str, events: &[(&str, i64, i64)]) -> Vec<String> {
    let mut task = task(spec_json);
    let mut lines = feed(&mut task, 0, events);
    let mut out = Vec::new();
    task.finish(&mut out).unwrap();
    lines.extend(out.iter().map(|output| line(events.len(), output)));
    lines
}

mod tumbling_windows {
    use super::*;

    #[test]
    fn a_window_fires_on_time_when_the_watermark_reaches_its_max_timestamp_and_not_before() {
        assert_eq!(
            run(
                &tumbling(10, 0, 0),
                &[("a", 1, 1), ("a", 9, 2), ("a", 10, 3)]
            ),
            [
                // After ts 9 the watermark is 8: [0,10) (max timestamp 9) waits.
                "2 wm=9 on_time a [0,10) n=2 sum=3",
                "3 wm=MAX on_time a [10,20) n=1 sum=3",
            ]
        );
    }

    #[test]
    fn out_of_orderness_delays_the_watermark_by_d_plus_one() {
        assert_eq!(
            run(
                &tumbling(10, 5, 0),
                &[("a", 3, 1), ("a", 12, 1), ("a", 7, 1), ("a", 15, 1)]
            ),
            [
                // ts 12 -> wm 6; ts 7 is on time; ts 15 -> wm 9 fires [0,10).
                "3 wm=9 on_time a [0,10) n=2 sum=2",
                "4 wm=MAX on_time a [10,20) n=2 sum=2",
            ]
        );
    }

    #[test]
    fn negative_timestamps_fall_in_windows_below_them() {
        assert_eq!(
            run(
                &tumbling(10, 100, 0),
                &[("a", -1, 1), ("a", -10, 2), ("a", -11, 4)]
            ),
            [
                "3 wm=MAX on_time a [-20,-10) n=1 sum=4",
                "3 wm=MAX on_time a [-10,0) n=2 sum=3"
            ]
        );
    }

    #[test]
    fn an_offset_moves_the_windows() {
        let spec_json = spec(r#"{"kind": "tumbling", "size": 10, "offset": 3}"#, 0, 0);
        assert_eq!(
            run(&spec_json, &[("a", 2, 1), ("a", 3, 1)]),
            [
                "1 wm=2 on_time a [-7,3) n=1 sum=1",
                "2 wm=MAX on_time a [3,13) n=1 sum=1"
            ]
        );
    }

    #[test]
    fn windows_fired_by_one_watermark_come_out_by_window_end_then_key() {
        assert_eq!(
            run(
                &tumbling(10, 0, 0),
                &[("b", 1, 1), ("a", 2, 1), ("c", 11, 1), ("a", 25, 1)]
            ),
            [
                "2 wm=10 on_time a [0,10) n=1 sum=1",
                "2 wm=10 on_time b [0,10) n=1 sum=1",
                "3 wm=24 on_time c [10,20) n=1 sum=1",
                "4 wm=MAX on_time a [20,30) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn keys_are_any_unicode_strings_in_byte_order() {
        assert_eq!(
            run(
                &tumbling(10, 0, 0),
                &[("é", 1, 1), ("", 1, 2), ("日本", 1, 3), ("z", 1, 4)]
            ),
            [
                "4 wm=MAX on_time  [0,10) n=1 sum=2",
                "4 wm=MAX on_time z [0,10) n=1 sum=4",
                "4 wm=MAX on_time é [0,10) n=1 sum=1",
                "4 wm=MAX on_time 日本 [0,10) n=1 sum=3",
            ]
        );
    }
}

mod late_data {
    use super::*;

    #[test]
    fn a_record_behind_the_watermark_but_within_lateness_fires_a_late_update_with_the_full_aggregate()
     {
        assert_eq!(
            run(
                &tumbling(10, 0, 5),
                &[("a", 1, 1), ("a", 12, 1), ("a", 3, 10), ("a", 4, 1)]
            ),
            [
                "1 wm=11 on_time a [0,10) n=1 sum=1",
                // Judged against watermark 11 (cleanup time 9 + 5 = 14 > 11).
                "2 wm=11 late_update a [0,10) n=2 sum=11",
                "3 wm=11 late_update a [0,10) n=3 sum=12",
                "4 wm=MAX on_time a [10,20) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_window_first_created_by_a_late_record_fires_a_late_update_at_once_and_never_on_time() {
        assert_eq!(
            run(&tumbling(10, 0, 20), &[("a", 25, 1), ("b", 5, 7)]),
            [
                "1 wm=24 late_update b [0,10) n=1 sum=7",
                "2 wm=MAX on_time a [20,30) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_window_is_purged_without_output_at_its_cleanup_time_and_later_records_go_to_the_late_output()
     {
        assert_eq!(
            run(
                &tumbling(10, 0, 5),
                &[("a", 1, 1), ("a", 12, 1), ("a", 16, 1), ("a", 2, 9)]
            ),
            [
                "1 wm=11 on_time a [0,10) n=1 sum=1",
                // ts 16 -> wm 15 >= cleanup time 14: purged silently.
                "3 wm=15 late a ts=2 v=9",
                "4 wm=MAX on_time a [10,20) n=2 sum=2",
            ]
        );
    }

    #[test]
    fn a_window_is_late_exactly_when_its_max_timestamp_plus_lateness_reaches_the_watermark() {
        // Watermark 14 = 9 + 5: late.
        assert_eq!(
            run(&tumbling(10, 0, 5), &[("a", 15, 1), ("a", 9, 1)]),
            [
                "1 wm=14 late a ts=9 v=1",
                "2 wm=MAX on_time a [10,20) n=1 sum=1"
            ]
        );
        // Watermark 13: not late yet.
        assert_eq!(
            run(&tumbling(10, 0, 5), &[("a", 14, 1), ("a", 9, 1)]),
            [
                "1 wm=13 late_update a [0,10) n=1 sum=1",
                "2 wm=MAX on_time a [10,20) n=1 sum=1"
            ]
        );
    }

    #[test]
    fn with_zero_lateness_a_window_fires_and_is_purged_at_the_same_watermark() {
        assert_eq!(
            run(
                &tumbling(10, 0, 0),
                &[("a", 1, 1), ("a", 10, 1), ("a", 9, 1)]
            ),
            [
                "1 wm=9 on_time a [0,10) n=1 sum=1",
                "2 wm=9 late a ts=9 v=1",
                "3 wm=MAX on_time a [10,20) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_late_record_does_not_raise_the_watermark() {
        let mut task = task(&tumbling(10, 0, 0));
        feed(&mut task, 0, &[("a", 50, 1), ("a", 3, 1)]);
        assert_eq!(task.watermark(), 49);
    }

    #[test]
    fn lateness_arithmetic_saturates_instead_of_overflowing() {
        // L = i64::MAX: cleanup times saturate to i64::MAX; no window is late
        // before the end of input.
        assert_eq!(
            run(
                &tumbling(10, 0, i64::MAX),
                &[("a", 1, 1), ("a", 1_000, 1), ("a", 2, 1)]
            ),
            [
                "1 wm=999 on_time a [0,10) n=1 sum=1",
                "2 wm=999 late_update a [0,10) n=2 sum=2",
                "3 wm=MAX on_time a [1000,1010) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn counters_count_records_late_records_firings_and_purges() {
        let mut task = task(&tumbling(10, 0, 5));
        feed(
            &mut task,
            0,
            &[
                ("a", 1, 1),
                ("a", 12, 1),
                ("a", 3, 1),
                ("a", 16, 1),
                ("a", 2, 1),
            ],
        );
        let counters = *task.operator().counters();
        assert_eq!(
            counters,
            WindowCounters {
                records: 5,
                records_late: 1,
                fired_on_time: 1,
                fired_late_update: 1,
                states_purged: 1,
            }
        );
    }
}

mod sliding_windows {
    use super::*;

    #[test]
    fn a_record_is_counted_in_every_window_that_contains_it() {
        assert_eq!(
            run(&sliding(30, 10, 100, 0), &[("a", 25, 1), ("a", 5, 2)]),
            [
                "2 wm=MAX on_time a [-20,10) n=1 sum=2",
                "2 wm=MAX on_time a [-10,20) n=1 sum=2",
                "2 wm=MAX on_time a [0,30) n=2 sum=3",
                "2 wm=MAX on_time a [10,40) n=1 sum=1",
                "2 wm=MAX on_time a [20,50) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_slide_that_does_not_divide_the_size_still_counts_each_window_exactly() {
        // size 10, slide 4: panes of width 2; ts 8 is in [0,10) [4,14) [8,18).
        assert_eq!(
            run(&sliding(10, 4, 100, 0), &[("a", 8, 1), ("a", 11, 2)]),
            [
                "2 wm=MAX on_time a [0,10) n=1 sum=1",
                "2 wm=MAX on_time a [4,14) n=2 sum=3",
                "2 wm=MAX on_time a [8,18) n=2 sum=3",
            ]
        );
    }

    #[test]
    fn late_updates_caused_by_one_record_come_out_in_descending_window_start() {
        assert_eq!(
            run(&sliding(30, 10, 0, 100), &[("a", 100, 1), ("a", 25, 2)])[..3],
            [
                "1 wm=99 late_update a [20,50) n=1 sum=2",
                "1 wm=99 late_update a [10,40) n=1 sum=2",
                "1 wm=99 late_update a [0,30) n=1 sum=2",
            ]
        );
    }

    #[test]
    fn a_late_window_drops_the_record_while_the_records_other_windows_take_it() {
        // At watermark 40: [0,30) is late (29 + 5 <= 40), [10,40) has been
        // reached (late update), [20,50) is pending.
        assert_eq!(
            run(&sliding(30, 10, 0, 5), &[("b", 41, 1), ("a", 25, 5)]),
            [
                "1 wm=40 late_update a [10,40) n=1 sum=5",
                "2 wm=MAX on_time a [20,50) n=1 sum=5",
                "2 wm=MAX on_time b [20,50) n=1 sum=1",
                "2 wm=MAX on_time b [30,60) n=1 sum=1",
                "2 wm=MAX on_time b [40,70) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_record_all_of_whose_windows_are_late_goes_to_the_late_side_output() {
        assert_eq!(
            run(&sliding(20, 10, 0, 0), &[("a", 30, 1), ("a", 5, 1)])[..1],
            ["1 wm=29 late a ts=5 v=1"]
        );
    }

    #[test]
    fn a_window_that_became_late_never_fires_again_though_its_panes_live_on() {
        assert_eq!(
            run(
                &sliding(20, 10, 0, 0),
                &[("a", 5, 1), ("a", 15, 1), ("a", 8, 1)]
            ),
            [
                "1 wm=14 on_time a [-10,10) n=1 sum=1",
                // ts 8 goes to pane [0,10) for window [0,20) only.
                "3 wm=MAX on_time a [0,20) n=3 sum=3",
                "3 wm=MAX on_time a [10,30) n=1 sum=1",
            ]
        );
    }
}

mod session_windows {
    use super::*;

    #[test]
    fn records_closer_than_the_gap_share_a_session() {
        assert_eq!(
            run(&session(10, 0, 0), &[("a", 0, 1), ("a", 5, 2)]),
            ["2 wm=MAX on_time a [0,15) n=2 sum=3"]
        );
    }

    #[test]
    fn records_exactly_gap_apart_share_a_session_because_touching_sessions_merge() {
        assert_eq!(
            run(&session(10, 0, 0), &[("a", 0, 1), ("a", 10, 2)]),
            ["2 wm=MAX on_time a [0,20) n=2 sum=3"]
        );
    }

    #[test]
    fn records_more_than_the_gap_apart_make_two_sessions() {
        assert_eq!(
            run(&session(10, 0, 0), &[("a", 0, 1), ("a", 11, 2)]),
            [
                "1 wm=10 on_time a [0,10) n=1 sum=1",
                "2 wm=MAX on_time a [11,21) n=1 sum=2"
            ]
        );
    }

    #[test]
    fn a_session_fired_and_purged_with_zero_lateness_does_not_merge_with_a_touching_record() {
        assert_eq!(
            run(
                &session(10, 0, 0),
                &[("a", 0, 1), ("b", 10, 1), ("a", 10, 1)]
            ),
            [
                "1 wm=9 on_time a [0,10) n=1 sum=1",
                "3 wm=MAX on_time a [10,20) n=1 sum=1",
                "3 wm=MAX on_time b [10,20) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_record_behind_the_watermark_can_bridge_two_sessions_into_one_that_fires_on_time_later() {
        assert_eq!(
            run(
                &session(10, 0, 100),
                &[("a", 0, 1), ("a", 20, 1), ("a", 10, 1)]
            ),
            [
                "1 wm=19 on_time a [0,10) n=1 sum=1",
                // [10,20) is behind watermark 19 but bridges [0,10) and
                // [20,30) into [0,30), whose max timestamp 29 is ahead.
                "3 wm=MAX on_time a [0,30) n=3 sum=3",
            ]
        );
    }

    #[test]
    fn a_merged_session_at_or_below_the_watermark_fires_a_late_update() {
        assert_eq!(
            run(
                &session(10, 0, 100),
                &[("a", 0, 1), ("a", 20, 1), ("b", 40, 1), ("a", 10, 1)]
            ),
            [
                "1 wm=19 on_time a [0,10) n=1 sum=1",
                "2 wm=39 on_time a [20,30) n=1 sum=1",
                "3 wm=39 late_update a [0,30) n=3 sum=3",
                "4 wm=MAX on_time b [40,50) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_fired_session_extended_past_the_watermark_fires_on_time_again_later() {
        assert_eq!(
            run(
                &session(30, 0, 100),
                &[("a", 0, 1), ("b", 40, 1), ("a", 20, 1)]
            ),
            [
                "1 wm=39 on_time a [0,30) n=1 sum=1",
                "3 wm=MAX on_time a [0,50) n=2 sum=2",
                "3 wm=MAX on_time b [40,70) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_record_inside_a_fired_session_fires_a_late_update() {
        assert_eq!(
            run(
                &session(10, 0, 100),
                &[("a", 0, 1), ("a", 5, 1), ("b", 30, 1), ("a", 3, 1)]
            ),
            [
                "2 wm=29 on_time a [0,15) n=2 sum=2",
                "3 wm=29 late_update a [0,15) n=3 sum=3",
                "4 wm=MAX on_time b [30,40) n=1 sum=1",
            ]
        );
    }

    #[test]
    fn a_late_record_that_merges_with_nothing_goes_to_the_late_side_output() {
        assert_eq!(
            run(
                &session(10, 0, 0),
                &[("a", 100, 1), ("a", 50, 1), ("a", 95, 1)]
            ),
            [
                "1 wm=99 late a ts=50 v=1",
                // A live session is never late: [95,105) merges into [100,110).
                "3 wm=MAX on_time a [95,110) n=2 sum=2",
            ]
        );
    }

    #[test]
    fn sessions_of_different_keys_never_merge() {
        assert_eq!(
            run(&session(10, 0, 0), &[("a", 0, 1), ("b", 5, 1)]),
            [
                "2 wm=MAX on_time a [0,10) n=1 sum=1",
                "2 wm=MAX on_time b [5,15) n=1 sum=1"
            ]
        );
    }

    #[test]
    fn a_late_record_extending_a_fired_session_past_the_watermark_defers_it_then_a_shorter_extension_fires_at_once()
     {
        assert_eq!(
            run(
                &session(10, 0, 5),
                &[
                    ("a", 0, 1),
                    ("b", 12, 1),
                    ("a", 3, 1),
                    ("b", 16, 1),
                    ("a", 4, 1)
                ]
            ),
            [
                "1 wm=11 on_time a [0,10) n=1 sum=1",
                // ts 3 makes [0,13): max timestamp 12 is above watermark 11.
                "3 wm=15 on_time a [0,13) n=2 sum=2",
                // ts 4 makes [0,14): max timestamp 13 is below watermark 15.
                "4 wm=15 late_update a [0,14) n=3 sum=3",
                "5 wm=MAX on_time b [12,26) n=2 sum=2",
            ]
        );
    }

    #[test]
    fn a_record_after_a_session_was_purged_starts_a_new_one() {
        assert_eq!(
            run(
                &session(10, 0, 2),
                &[("a", 0, 1), ("b", 12, 1), ("a", 3, 1)]
            ),
            [
                // wm 11 >= 9 + 2: [0,10) fires and is purged at once.
                "1 wm=11 on_time a [0,10) n=1 sum=1",
                "3 wm=MAX on_time a [3,13) n=1 sum=1",
                "3 wm=MAX on_time b [12,22) n=1 sum=1",
            ]
        );
    }
}

mod session_state {
    use proptest::prelude::*;

    use super::*;
    use crate::window::session::Compaction;

    type Event = (String, i64, i64);

    /// Runs a session operator with the given compaction rule, with a
    /// bounded-out-of-orderness watermark after each record, and returns
    /// its outputs as lines. Structural invariants are checked after every
    /// call (test builds check them whenever compaction is considered).
    fn run(
        compaction: Compaction,
        gap_ms: i64,
        out_of_orderness_ms: i64,
        allowed_lateness_ms: i64,
        events: &[Event],
    ) -> Vec<String> {
        let config =
            WindowConfig::new(WindowKind::session(gap_ms).unwrap(), allowed_lateness_ms).unwrap();
        let mut operator: WindowOperator<i64, Summary> = WindowOperator::new(config, Summary);
        let KindState::Session(state) = &mut operator.state else {
            unreachable!("a session operator has session state");
        };
        state.set_compaction(compaction);
        let mut lines = Vec::new();
        let mut max_ts = i64::MIN;
        let mut out = Vec::new();
        for (step, (key, ts, value)) in events.iter().enumerate() {
            operator
                .process(Record::new(key.as_str(), *ts, *value), &mut out)
                .unwrap();
            max_ts = max_ts.max(*ts);
            operator
                .advance_watermark(
                    max_ts.saturating_sub(out_of_orderness_ms).saturating_sub(1),
                    &mut out,
                )
                .unwrap();
            lines.extend(out.drain(..).map(|output| line(step, &output)));
        }
        operator.finish(&mut out).unwrap();
        lines.extend(out.drain(..).map(|output| line(events.len(), &output)));
        lines
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let key = prop::sample::select(vec!["a", "b", "c", "d", "日本", "a\0"]);
        let delta = prop_oneof![8 => -10i64..=15, 1 => -80i64..=80];
        prop::collection::vec((key, delta, -5i64..=5), 0..300).prop_map(|steps| {
            let mut ts = 0;
            steps
                .into_iter()
                .map(|(key, delta, value)| {
                    ts += delta;
                    (key.to_string(), ts, value)
                })
                .collect()
        })
    }

    const NEVER: Compaction = Compaction {
        stale_refs_per_session_max: usize::MAX,
        stale_entries_per_session_max: usize::MAX,
        slack: usize::MAX,
    };

    const ALWAYS: Compaction = Compaction {
        stale_refs_per_session_max: 0,
        stale_entries_per_session_max: 0,
        slack: 0,
    };

    /// `EDDY_PROPTEST_CASES=N` runs N cases instead of the default.
    fn cases() -> u32 {
        std::env::var("EDDY_PROPTEST_CASES")
            .ok()
            .map(|cases| cases.parse().expect("EDDY_PROPTEST_CASES is a number"))
            .unwrap_or(256)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn compaction_is_not_observable_whether_it_runs_never_always_or_by_default(
            gap_ms in 1i64..=30,
            out_of_orderness_ms in 0i64..=20,
            allowed_lateness_ms in prop_oneof![2 => 0i64..=40, 1 => Just(0i64), 1 => Just(i64::MAX)],
            events in events(),
        ) {
            let never = run(NEVER, gap_ms, out_of_orderness_ms, allowed_lateness_ms, &events);
            let always = run(ALWAYS, gap_ms, out_of_orderness_ms, allowed_lateness_ms, &events);
            let default = run(Compaction::DEFAULT, gap_ms, out_of_orderness_ms, allowed_lateness_ms, &events);
            prop_assert_eq!(&always, &never);
            prop_assert_eq!(&default, &never);
        }
    }
}

mod process_window_functions {
    use super::*;

    fn values_in_arrival_order(
        _context: &crate::aggregate::WindowContext<'_>,
        records: &[Element<i64>],
    ) -> Result<Vec<i64>> {
        Ok(records.iter().map(|element| element.value).collect())
    }

    #[test]
    fn a_process_window_function_sees_all_records_in_arrival_order_even_after_sessions_merge() {
        let config = WindowConfig::new(WindowKind::session(10).unwrap(), 0).unwrap();
        let mut operator = WindowOperator::new(config, Process(values_in_arrival_order));
        let mut out = Vec::new();
        // Sessions [30,40) [0,10) -> [25,40) [0,10) [12,22) -> [0,22) [25,40)
        // -> one session [0,40) bridged by ts 20.
        for (ts, value) in [(30, 1), (0, 2), (25, 3), (12, 4), (7, 5), (20, 6)] {
            operator
                .process(Record::new("k", ts, value), &mut out)
                .unwrap();
        }
        operator.finish(&mut out).unwrap();
        let results: Vec<_> = out
            .into_iter()
            .map(|output| match output {
                Output::Fire(firing) => (firing.window, firing.result),
                Output::Late(late) => panic!("unexpected late record {late:?}"),
            })
            .collect();
        assert_eq!(results, [(TimeWindow::new(0, 40), vec![1, 2, 3, 4, 5, 6])]);
    }

    #[test]
    fn a_process_window_function_sees_a_sliding_windows_records_in_arrival_order_across_panes() {
        let config = WindowConfig::new(WindowKind::sliding(20, 10, 0).unwrap(), 0).unwrap();
        let mut operator = WindowOperator::new(config, Process(values_in_arrival_order));
        let mut out = Vec::new();
        // Panes [0,10) and [10,20), filled in interleaved arrival order.
        for (ts, value) in [(15, 1), (5, 2), (12, 3), (1, 4)] {
            operator
                .process(Record::new("k", ts, value), &mut out)
                .unwrap();
        }
        operator.finish(&mut out).unwrap();
        let results: Vec<_> = out
            .into_iter()
            .map(|output| match output {
                Output::Fire(firing) => (firing.window, firing.result),
                Output::Late(late) => panic!("unexpected late record {late:?}"),
            })
            .collect();
        assert_eq!(
            results,
            [
                (TimeWindow::new(-10, 10), vec![2, 4]),
                (TimeWindow::new(0, 20), vec![1, 2, 3, 4]),
                (TimeWindow::new(10, 30), vec![1, 3]),
            ]
        );
    }
}

mod errors {
    use super::*;

    #[test]
    fn a_timestamp_whose_window_leaves_the_i64_range_is_refused_and_changes_nothing() {
        let mut task = task(&tumbling(10, 0, 0));
        feed(&mut task, 0, &[("a", 5, 1)]);
        let before = task.snapshot(Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let error = task
            .process(&0, Record::new("a", i64::MAX, 1), Duration::ZERO, &mut out)
            .unwrap_err();
        assert!(matches!(error, Error::Invalid(_)), "{error}");
        assert!(out.is_empty());
        assert_eq!(task.snapshot(Duration::ZERO).unwrap(), before);
        // Still usable.
        feed(&mut task, 1, &[("a", 6, 1)]);
    }

    #[test]
    fn a_sum_that_does_not_fit_i64_is_an_error_and_the_operator_refuses_further_calls() {
        let mut task = task(&tumbling(10, 0, 0));
        feed(&mut task, 0, &[("a", 1, i64::MAX), ("a", 2, 1)]);
        let mut out = Vec::new();
        let error = task.finish(&mut out).unwrap_err();
        assert!(matches!(error, Error::Overflow(_)), "{error}");
        assert!(error.to_string().contains("[0, 10)"), "{error}");
        let error = task
            .process(&0, Record::new("a", 3, 1), Duration::ZERO, &mut out)
            .unwrap_err();
        assert!(error.to_string().contains("unusable"), "{error}");
        assert!(task.snapshot(Duration::ZERO).is_err());
    }

    #[test]
    fn a_sum_that_comes_back_into_range_before_the_firing_is_not_an_error() {
        assert_eq!(
            run(
                &tumbling(10, 0, 0),
                &[("a", 1, i64::MAX), ("a", 2, 1), ("a", 3, -5)]
            ),
            [format!(
                "3 wm=MAX on_time a [0,10) n=3 sum={}",
                i64::MAX - 4
            )]
        );
    }
}

mod snapshots {
    use super::*;

    const EVENTS: &[(&str, i64, i64)] = &[
        ("a", 0, 1),
        ("b", 4, 2),
        ("a", 12, 3),
        ("ü", 7, 4),
        ("a", 30, 5),
        ("b", 9, 6),
        ("a", 2, 7),
        ("b", 41, 8),
        ("a", 35, 9),
        ("a", 18, 10),
    ];

    fn specs() -> Vec<String> {
        vec![
            tumbling(10, 3, 7),
            sliding(20, 5, 2, 9),
            sliding(10, 4, 0, 3),
            session(6, 1, 8),
        ]
    }

    #[test]
    fn restoring_a_snapshot_at_any_step_gives_the_remaining_output_of_an_uninterrupted_run() {
        for spec_json in specs() {
            let expected = run(&spec_json, EVENTS);
            for cut in 0..=EVENTS.len() {
                let mut first = task(&spec_json);
                let mut lines = feed(&mut first, 0, &EVENTS[..cut]);
                let bytes = first.snapshot(Duration::ZERO).unwrap();
                let spec = WindowSpec::from_json(&spec_json).unwrap();
                let mut second: SummaryTask = WindowTask::restore(
                    spec.watermark_config().unwrap(),
                    spec.window_config().unwrap(),
                    Summary,
                    &bytes,
                    Duration::ZERO,
                )
                .unwrap();
                assert_eq!(
                    second.snapshot(Duration::ZERO).unwrap(),
                    bytes,
                    "{spec_json} cut {cut}"
                );
                lines.extend(feed(&mut second, cut, &EVENTS[cut..]));
                let mut out = Vec::new();
                second.finish(&mut out).unwrap();
                lines.extend(out.iter().map(|output| line(EVENTS.len(), output)));
                assert_eq!(lines, expected, "{spec_json} cut at {cut}");
            }
        }
    }

    #[test]
    fn an_operator_snapshot_round_trips_with_counters_and_arrivals() {
        let config = WindowConfig::new(WindowKind::session(5).unwrap(), 3).unwrap();
        let mut operator = WindowOperator::new(config, Summary);
        let mut out = Vec::new();
        for (ts, value) in [(1, 1), (20, 2), (3, 3)] {
            operator
                .process(Record::new("k", ts, value), &mut out)
                .unwrap();
        }
        operator.advance_watermark(10, &mut out).unwrap();
        let bytes = operator.snapshot().unwrap();
        let restored = WindowOperator::restore(config, Summary, &bytes).unwrap();
        assert_eq!(restored.counters(), operator.counters());
        assert_eq!(restored.watermark(), 10);
        assert_eq!(restored.state_len(), operator.state_len());
        assert_eq!(restored.snapshot().unwrap(), bytes);
    }

    #[test]
    fn a_snapshot_taken_with_another_window_configuration_is_refused() {
        let config = WindowConfig::new(WindowKind::tumbling(10, 0).unwrap(), 0).unwrap();
        let operator = WindowOperator::new(config, Summary);
        let bytes = operator.snapshot().unwrap();
        let other = WindowConfig::new(WindowKind::tumbling(20, 0).unwrap(), 0).unwrap();
        let error = WindowOperator::restore(other, Summary, &bytes)
            .err()
            .unwrap();
        assert!(matches!(error, Error::CorruptSnapshot(_)), "{error}");
    }

    #[test]
    fn a_snapshot_with_state_that_cannot_exist_is_refused_as_corrupt() {
        let config = WindowConfig::new(WindowKind::tumbling(10, 0).unwrap(), 0).unwrap();
        let mut operator = WindowOperator::new(config, Summary);
        let mut out = Vec::new();
        operator.process(Record::new("k", 5, 1), &mut out).unwrap();
        let mut state = operator.to_state().unwrap();
        state.entries[0].start = 3; // not on the window grid
        let bytes =
            crate::snapshot::encode(crate::snapshot::SnapshotKind::WindowOperator, &state, 0);
        assert!(WindowOperator::restore(config, Summary, &bytes).is_err());
        let mut state = operator.to_state().unwrap();
        state.watermark = 100; // the window would be late: it cannot have state
        let bytes =
            crate::snapshot::encode(crate::snapshot::SnapshotKind::WindowOperator, &state, 0);
        assert!(WindowOperator::restore(config, Summary, &bytes).is_err());
    }

    #[test]
    fn a_task_snapshot_keeps_the_watermark_so_it_never_goes_backwards_after_a_restore() {
        let spec_json = tumbling(10, 0, 0);
        let mut first = task(&spec_json);
        feed(&mut first, 0, &[("a", 100, 1)]);
        let bytes = first.snapshot(Duration::ZERO).unwrap();
        let spec = WindowSpec::from_json(&spec_json).unwrap();
        let mut second: SummaryTask = WindowTask::restore(
            WatermarkConfig::new(0, None).unwrap(),
            spec.window_config().unwrap(),
            Summary,
            &bytes,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(second.watermark(), 99);
        // A record behind the restored watermark is late, as it would have been.
        assert_eq!(
            feed(&mut second, 1, &[("a", 5, 1)]),
            ["1 wm=99 late a ts=5 v=1"]
        );
    }
}

mod idleness {
    use super::*;

    #[test]
    fn an_idle_input_stops_holding_windows_open_and_its_returning_records_are_judged_against_the_task_watermark()
     {
        let config = WindowConfig::new(WindowKind::tumbling(10, 0).unwrap(), 0).unwrap();
        let watermarks = WatermarkConfig::new(0, Some(Duration::from_secs(5))).unwrap();
        let mut task: WindowTask<u32, i64, Summary> =
            WindowTask::new(watermarks, config, Summary, [0u32, 1], Duration::ZERO).unwrap();
        let mut out = Vec::new();
        let at = Duration::from_secs;
        task.process(&1, Record::new("b", 3, 1), at(0), &mut out)
            .unwrap();
        task.process(&0, Record::new("a", 25, 1), at(4), &mut out)
            .unwrap();
        // Input 1 holds the watermark at 2 until it has been silent for 5 s.
        assert_eq!(task.watermark(), 2);
        assert!(out.is_empty());
        task.on_processing_time(at(5), &mut out).unwrap();
        assert_eq!(task.watermark(), 24);
        assert_eq!(out.len(), 1, "{out:?}");
        out.clear();
        // Input 1 returns with a record on time for its own watermark (2)
        // but behind the task watermark (24): late. This is the trade-off
        // that makes idleness opt-in.
        task.process(&1, Record::new("b", 4, 1), at(6), &mut out)
            .unwrap();
        assert!(matches!(&out[..], [Output::Late(_)]), "{out:?}");
    }
}

mod state_keys {
    use super::*;

    #[test]
    fn state_keys_order_exactly_as_the_keys_bytes_including_zero_padding_and_long_shared_prefixes()
    {
        let keys = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0\0",
            "ab",
            "exactly-16-bytes",
            "exactly-16-bytes\0",
            "exactly-16-byteszz",
            "exactly-15-byte",
            "exactly-15-byte\0",
            "exactly-15-byte\0\0",
            "exactly-15-bytea",
            "exactly-15-bytea\0",
            "exactly-15-byteb",
            "exactly-14-byt",
            "exactly-14-byt\0",
            "exactly-14-byt\0\0",
            "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            "\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}",
            "user-0000000000001",
            "user-0000000000001\0",
            "user-00000000000010",
            "user-0000000000002",
            "ü",
            "日本",
            "🦀",
            "\u{10FFFF}",
        ];
        for a in keys {
            for b in keys {
                let (state_a, state_b) = (StateKey::new(Key::from(a)), StateKey::new(Key::from(b)));
                assert_eq!(state_a.cmp(&state_b), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(state_a == state_b, a == b, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn the_order_word_holds_the_first_15_bytes_and_the_length_for_every_length() {
        for len in 0..=40usize {
            let text: String = (0..len)
                .map(|at| char::from(b'a' + (at % 26) as u8))
                .collect();
            let mut expected = [0u8; 16];
            let inline = len.min(15);
            expected[..inline].copy_from_slice(&text.as_bytes()[..inline]);
            expected[15] = len.min(16) as u8;
            assert_eq!(
                StateKey::new(Key::from(text.as_str())).order,
                u128::from_be_bytes(expected),
                "length {len}"
            );
        }
    }

    /// Strings from a small alphabet, so that zero bytes and multi-byte
    /// characters meet often.
    fn short_string(len_max: usize) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop::sample::select(vec!['\0', 'a', 'b', '\u{ff}']),
            0..len_max,
        )
        .prop_map(String::from_iter)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn state_keys_order_as_their_strings_for_any_pair_even_with_long_shared_prefixes(
            prefix in short_string(20),
            tail_a in short_string(4),
            tail_b in short_string(4),
        ) {
            let (a, b) = (format!("{prefix}{tail_a}"), format!("{prefix}{tail_b}"));
            let (state_a, state_b) = (StateKey::new(Key::from(a.as_str())), StateKey::new(Key::from(b.as_str())));
            proptest::prop_assert_eq!(state_a.cmp(&state_b), a.cmp(&b));
            proptest::prop_assert_eq!(state_a == state_b, a == b);
        }
    }
}
