//! Restore from any checkpoint, then run on, equals the uninterrupted run.
//!
//! The real driver and worker core over the in-memory transport and
//! checkpoint store, with the shipped `window-stats` job: one worker runs
//! to the end of a random input (the reference); another is crashed at a
//! random command (its future dropped mid-call, with a checkpoint after
//! every poll batch, so the crash lands anywhere between snapshot, offsets
//! and commit), and a second incarnation with the same worker id fences it,
//! restores every task from the committed checkpoint and runs to the end.
//! Its committed output must equal the reference, key by key and in order;
//! a restored task's watermark must equal the one its checkpoint committed,
//! and no task's watermark may go back.
//!
//! `EDDY_PROPTEST_CASES` sets the number of cases (default 32).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::EventTime;
use eddyline_engine::checkpoint::MemoryStore;
use eddyline_engine::job::Job;
use eddyline_engine::memory::MemoryKafka;
use eddyline_engine::transport::{
    Admin, NewTopic, Producer, ProducerConfig, ProducerRecord, TopicPartition, Transport,
};
use eddyline_engine::worker::driver::{self, Clients};
use eddyline_engine::worker::{Faithful, Stopped, WorkerCore};
use proptest::prelude::*;

const PARTITIONS: i32 = 2;

fn job() -> Job {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../jobs/window-stats.toml");
    Job::from_file(path).expect("the shipped job")
}

fn cases() -> u32 {
    std::env::var("EDDY_PROPTEST_CASES")
        .ok()
        .map_or(32, |text| {
            text.parse().expect("EDDY_PROPTEST_CASES must be a number")
        })
}

/// One input record: key index, event-time step (may go back), value.
fn records() -> impl Strategy<Value = Vec<(u8, i64, u8)>> {
    prop::collection::vec((0u8..6, -9_000i64..4_000, 0u8..100), 1..160)
}

async fn loaded(
    job: &Job,
    input: &[(u8, i64, u8)],
) -> (MemoryKafka, BTreeMap<TopicPartition, i64>) {
    let kafka = MemoryKafka::new();
    let admin = kafka.admin().await.unwrap();
    let mut topics = vec![
        job.input_topics()[0].clone(),
        job.output_topic().into(),
        job.late_topic().into(),
    ];
    topics.extend(job.dead_letter_topic().map(str::to_string));
    for name in topics {
        let new = NewTopic {
            name,
            partitions: PARTITIONS,
            replication_factor: 1,
            configs: Vec::new(),
        };
        admin.create_topic(&new).await.unwrap();
    }
    let mut producer = kafka
        .producer(&ProducerConfig::new("feeder", None))
        .await
        .unwrap();
    let mut ts = 1_000_000_i64;
    let mut ends = BTreeMap::new();
    for (key, step, value) in input {
        ts += step;
        let key = format!("k{key}");
        let value = format!(r#"{{"key":"{key}","ts":{ts},"value":{value}}}"#);
        let record = ProducerRecord {
            topic: job.input_topics()[0].clone(),
            partition: None,
            key: Some(key.into_bytes()),
            value: Some(value.into_bytes()),
            timestamp_ms: Some(ts),
            headers: Vec::new(),
        };
        let delivered = producer.send(record).unwrap().await.unwrap();
        let tp = TopicPartition::new(delivered.topic, delivered.partition);
        ends.insert(tp, delivered.offset + 1);
    }
    for partition in 0..PARTITIONS {
        ends.entry(TopicPartition::new(
            job.input_topics()[0].clone(),
            partition,
        ))
        .or_insert(0);
    }
    (kafka, ends)
}

/// Committed lines per (topic, key), in offset order.
fn committed(kafka: &MemoryKafka, job: &Job) -> BTreeMap<(String, String), Vec<String>> {
    let mut topics = vec![job.output_topic().to_string(), job.late_topic().to_string()];
    topics.extend(job.dead_letter_topic().map(str::to_string));
    let mut lines: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for topic in topics {
        for partition in 0..PARTITIONS {
            let tp = TopicPartition::new(topic.clone(), partition);
            for message in kafka.committed_records(&tp).unwrap() {
                let key = String::from_utf8(message.key.unwrap_or_default().to_vec()).unwrap();
                let line = String::from_utf8(message.value.unwrap_or_default().to_vec()).unwrap();
                lines.entry((topic.clone(), key)).or_default().push(line);
            }
        }
    }
    lines
}

/// What a run saw: the watermark each committed checkpoint of each task
/// had, and every task watermark over time.
#[derive(Default)]
struct Seen {
    /// Tasks restored from a snapshot (the core's count).
    restored: u64,
    committed_watermarks: BTreeMap<(i32, u64, u64), EventTime>,
    watermarks: Vec<BTreeMap<i32, EventTime>>,
}

/// What every incarnation of a run shares.
struct Setting<'a> {
    kafka: &'a MemoryKafka,
    job: &'a Job,
    ends: &'a BTreeMap<TopicPartition, i64>,
    poll_max_events: usize,
}

/// Runs one incarnation; `crash_after` commands, if given, drops it there.
async fn incarnation(
    setting: &Setting<'_>,
    store: &mut MemoryStore,
    incarnation: u64,
    crash_after: Option<usize>,
    seen: Rc<RefCell<Seen>>,
) -> Option<Stopped> {
    let Setting {
        kafka,
        job,
        ends,
        poll_max_events,
    } = *setting;
    let mut config = job.worker_config("w", incarnation);
    config.checkpoint_interval = Duration::ZERO;
    config.poll_max_events = poll_max_events;
    config.poll_timeout = Duration::from_millis(1);
    config.end_offsets = Some(ends.clone());
    let core = WorkerCore::new(job.clone(), config, Faithful).unwrap();
    let crash = Rc::new(tokio::sync::Notify::new());
    let crash_signal = Rc::clone(&crash);
    let mut commands = 0;
    let control = move |core: &mut WorkerCore<Job, Faithful>,
                        _: &eddyline_engine::worker::Command| {
        commands += 1;
        let mut seen = seen.borrow_mut();
        let watermarks = core.task_watermarks();
        seen.restored = core.stats().tasks_restored;
        for (task, checkpoint) in core.task_checkpoints() {
            if let Some((number, incarnation)) = checkpoint {
                seen.committed_watermarks
                    .entry((task, number, incarnation))
                    .or_insert(watermarks[&task]);
            }
        }
        seen.watermarks.push(watermarks);
        if crash_after == Some(commands) {
            crash_signal.notify_one();
        }
    };
    let run = driver::run(kafka, store, core, Clients::new("w"), control);
    tokio::select! {
        stopped = run => Some(stopped.unwrap()),
        () = crash.notified() => None,
    }
}

/// Returns whether the first incarnation crashed, how many tasks the
/// second restored from a snapshot, and how many restored watermarks were
/// compared with the committed ones.
fn check(
    input: Vec<(u8, i64, u8)>,
    poll_max_events: usize,
    crash_after: usize,
) -> (bool, u64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let job = job();
        let mut restored = 0;
        // The reference: one worker, no crash.
        let (reference, ends) = loaded(&job, &input).await;
        let mut store = MemoryStore::new();
        let seen = Rc::default();
        let stopped = incarnation(
            &Setting {
                kafka: &reference,
                job: &job,
                ends: &ends,
                poll_max_events,
            },
            &mut store,
            1,
            None,
            seen,
        )
        .await;
        assert_eq!(stopped, Some(Stopped::Finished));
        let want = committed(&reference, &job);

        // A crash at command `crash_after`, then a second incarnation.
        let (kafka, ends) = loaded(&job, &input).await;
        let mut store = MemoryStore::new();
        let first = Rc::new(RefCell::new(Seen::default()));
        let crashed = incarnation(
            &Setting {
                kafka: &kafka,
                job: &job,
                ends: &ends,
                poll_max_events,
            },
            &mut store,
            1,
            Some(crash_after),
            Rc::clone(&first),
        )
        .await;
        let second = Rc::new(RefCell::new(Seen::default()));
        if crashed.is_none() {
            let stopped = incarnation(
                &Setting {
                    kafka: &kafka,
                    job: &job,
                    ends: &ends,
                    poll_max_events,
                },
                &mut store,
                2,
                None,
                Rc::clone(&second),
            )
            .await;
            assert_eq!(stopped, Some(Stopped::Finished));
            restored = second.borrow().restored;
        }
        assert_eq!(
            committed(&kafka, &job),
            want,
            "crash after {crash_after} commands"
        );

        // A restored task starts at the watermark its checkpoint committed
        // (as far as the first incarnation lived to report it: a crash right
        // after a commit leaves that commit unseen).
        let (first, second) = (first.borrow(), second.borrow());
        let mut compared = 0;
        for ((task, number, incarnation), watermark) in &second.committed_watermarks {
            if *incarnation != 1 {
                continue;
            }
            if let Some(committed) = first.committed_watermarks.get(&(*task, *number, 1)) {
                assert_eq!(
                    committed, watermark,
                    "task {task} restored from checkpoint {number}"
                );
                compared += 1;
            }
        }
        // No task's watermark goes back within an incarnation.
        for seen in [&*first, &*second] {
            let mut last: BTreeMap<i32, EventTime> = BTreeMap::new();
            for watermarks in &seen.watermarks {
                for (task, watermark) in watermarks {
                    let previous = last.insert(*task, *watermark).unwrap_or(EventTime::MIN);
                    assert!(
                        *watermark >= previous,
                        "task {task}: watermark {previous} -> {watermark}"
                    );
                }
            }
        }
        (crashed.is_none(), restored, compared)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn worker_restore_from_any_checkpoint_then_running_on_equals_the_uninterrupted_run(
        input in records(),
        poll_max_events in 1usize..20,
        crash_after in 3usize..200,
    ) {
        check(input, poll_max_events, crash_after);
    }
}

#[test]
fn worker_restore_a_crash_between_the_offsets_and_the_commit_loses_and_repeats_nothing() {
    // Every command position over one small input, so that the crash lands
    // on each protocol step at least once.
    let input: Vec<(u8, i64, u8)> = (0..40)
        .map(|i| (i % 4, if i % 7 == 0 { -6_000 } else { 700 }, i))
        .collect();
    let (mut crashes, mut restored, mut compared) = (0, 0, 0);
    for crash_after in 3..120 {
        let (crashed, tasks, watermarks) = check(input.clone(), 3, crash_after);
        crashes += usize::from(crashed);
        restored += tasks;
        compared += watermarks;
    }
    assert!(
        crashes > 100,
        "the crash landed in the run ({crashes} of 117 positions)"
    );
    assert!(
        restored > 100,
        "second incarnations restored tasks from snapshots ({restored})"
    );
    assert!(
        compared > 100,
        "restored watermarks compared with committed ones ({compared})"
    );
}
