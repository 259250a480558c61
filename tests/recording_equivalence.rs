//! Replays of a recording, equal wherever they run: two replays give the
//! same bytes; a replay equals the simulator's fault-free run of the same
//! recording (a scenario whose workload is the recording); the simulator's
//! run of it under faults equals the fault-free replay, and its checker
//! finds nothing.
//!
//! Outputs are compared per output key, each key's records in offset order
//! (downstream treats (key, window) as an upsert key; records of different
//! keys may interleave differently in a partition when tasks are read in
//! another order).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eddyline_engine::job::Job;
use eddyline_engine::recording::write::write_recording;
use eddyline_engine::recording::{Recording, RecordingInfo, ReplayOptions, replay};
use eddyline_engine::transport::Message;
use eddyline_engine::worker::Stopped;
use eddyline_scenarios::run::RunOptions;
use eddyline_scenarios::scenario::Scenario;
use eddyline_scenarios::verdict::judge;
use eddyline_sim::Seed;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("recording-equivalence")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type ByKey = BTreeMap<Option<Vec<u8>>, Vec<Vec<u8>>>;

/// Each key's record values in offset order.
fn by_key(records: &BTreeMap<i32, Vec<Message>>) -> ByKey {
    let mut keys = ByKey::new();
    for message in records.values().flatten() {
        keys.entry(message.key.as_deref().map(<[u8]>::to_vec))
            .or_default()
            .push(message.value.as_deref().unwrap_or_default().to_vec());
    }
    keys
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(future)
}

/// The job's committed output and late records from a replay of `input`.
fn replayed(job: &Job, input: &Recording) -> (ByKey, ByKey) {
    block_on(async {
        let done = replay(
            job.clone(),
            std::slice::from_ref(input),
            &ReplayOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(done.stopped, Stopped::Finished);
        let (output, _) = done.transport.committed(job.output_topic()).await.unwrap();
        let (late, _) = done.transport.committed(job.late_topic()).await.unwrap();
        (by_key(&output), by_key(&late))
    })
}

/// A scenario of the window-stats job whose workload is `recording`.
fn scenario(dir: &Path, recording: &Path, faults: &str) -> Scenario {
    let text = format!(
        "job = {job:?}\nseeds = \"1..3\"\nexpect = \"pass\"\n\n[workload]\nrecording = {recording:?}\nrecords = 100000\n\n[cluster]\nworkers = 2\n\n[faults]\n{faults}\n[checker]\nliveness_ms = 60_000\n",
        job = root().join("jobs/window-stats.toml").display().to_string(),
        recording = recording.display().to_string(),
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, &text).unwrap();
    Scenario::from_file(&path).unwrap()
}

/// The first `records` records of the events fixture, as a recording.
fn small_recording(dir: &Path, records: usize) -> (PathBuf, Recording) {
    let fixture = Recording::read(&root().join("fixtures/recordings/events.parquet")).unwrap();
    let partitions: BTreeMap<i32, Vec<Message>> = fixture
        .partitions
        .iter()
        .map(|(p, messages)| (*p, messages.iter().take(records / 4).cloned().collect()))
        .collect();
    let info = RecordingInfo::covering(
        "events",
        "a cut of fixtures/recordings/events.parquet",
        fixture.info.partition_count,
        &partitions,
    );
    let path = dir.join("events.parquet");
    write_recording(&path, &info, &partitions).unwrap();
    (path.clone(), Recording::read(&path).unwrap())
}

#[test]
fn replay_equals_the_simulators_fault_free_run_and_its_run_under_faults() {
    let dir = temp_dir("sim");
    let (path, recording) = small_recording(&dir, 400);
    let job = Job::from_file(root().join("jobs/window-stats.toml")).unwrap();
    let (output, late) = replayed(&job, &recording);
    assert!(!output.is_empty());
    let faults = [
        ("fault-free", "until_ms = 15_000\n"),
        (
            "under faults",
            "until_ms = 15_000\nworker_crash_per_s = 0.3\nbroker_crash_per_s = 0.15\nleader_move_per_s = 0.2\nnetwork_partition_per_s = 0.15\ntransaction_expiry_per_s = 0.05\n",
        ),
    ];
    for (name, faults) in faults {
        let scenario = scenario(&dir, &path, faults);
        for seed in [1, 2] {
            let verdict = judge(&scenario, &job, &RunOptions::new(Seed::new(seed)), false).unwrap();
            assert!(
                verdict.clean(),
                "{name}, seed {seed}: {:?}",
                verdict.anomalies
            );
            if name == "under faults" {
                assert!(
                    !verdict.report.faults.is_empty(),
                    "seed {seed}: faults were applied"
                );
            }
            let observation = &verdict.report.observation;
            assert_eq!(
                observation.input.values().map(Vec::len).sum::<usize>(),
                recording.len(),
                "{name}, seed {seed}: the whole recording was fed"
            );
            assert!(
                by_key(&observation.output) == output,
                "{name}, seed {seed}: the simulator's committed output differs from the replay's"
            );
            assert!(
                by_key(&observation.late) == late,
                "{name}, seed {seed}: the late records differ from the replay's"
            );
        }
    }
}

#[test]
fn two_replays_of_a_fixture_write_byte_identical_files() {
    let dir = temp_dir("twice");
    let job = root().join("jobs/click-sessions.toml");
    let input = root().join("fixtures/recordings/user-clicks.parquet");
    let mut files = Vec::new();
    for run in 0..2 {
        let out = dir.join(format!("out-{run}.parquet"));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("replay")
            .arg("--job")
            .arg(&job)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        files.push(std::fs::read(&out).unwrap());
    }
    assert!(files[0].len() > 1_000);
    assert!(files[0] == files[1], "two replays, the same bytes");
}
