//! Determinism: the same seed gives the same trace hash, other seeds give
//! other hashes, and the sources of the simulator, the engine and the
//! scenarios use no wall clock, OS randomness, threads or hash-ordered
//! collections, and their library code reads no environment variables.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use eddyline_engine::transport::{ErrorCode, Isolation, TopicPartition};
use eddyline_sim::Seed;
use eddyline_sim::cluster::{ClusterHandle, SimCluster};
use eddyline_sim::faults::FaultRates;
use eddyline_sim::protocol::{
    CoordinatorType, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, JoinProtocol,
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsResponse, MemberAssignment,
    OffsetCommitRequest, OffsetSpec, ProduceRequest, ProduceResponse, Request, Response,
    SyncGroupRequest,
};

const PARTITIONS: i32 = 4;

/// An idempotent producer that retries failed batches with the same
/// sequence numbers until they are acknowledged.
async fn idempotent_producer(handle: ClusterHandle, producer_id: i64, batches: usize) {
    let mut sequences = [0i32; PARTITIONS as usize];
    for n in 0..batches {
        let partition = (n % PARTITIONS as usize) as i32;
        let tp = TopicPartition::new("events", partition);
        let values: Vec<String> = (0..5)
            .map(|i| format!("p{producer_id}-b{n}-r{i}"))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let request = batch(
            &tp,
            producer_id,
            0,
            sequences[partition as usize],
            false,
            &refs,
        );
        loop {
            let Some(leader) = handle.leader_of(&tp) else {
                sleep_ms(20).await;
                continue;
            };
            let response = connect(leader)
                .call(
                    Request::Produce(ProduceRequest {
                        transactional_id: None,
                        timeout_ms: 1_000,
                        batches: vec![request.clone()],
                    }),
                    1_500,
                )
                .await;
            if let Ok(Response::Produce(ProduceResponse { results })) = response {
                if results[0].error.is_none() {
                    break;
                }
            }
            sleep_ms(20).await;
        }
        sequences[partition as usize] += 5;
    }
}

/// A transactional producer: commits and aborts alternately, re-initialising
/// when fenced (transaction expiry faults fence it).
async fn transactional_producer(handle: ClusterHandle, rounds: usize) {
    let id = "det-tx";
    let mut producer = None;
    for round in 0..rounds {
        let (pid, epoch) = match producer {
            Some(p) => p,
            None => {
                let p = init_transactions(&handle, id, 10_000).await;
                producer = Some(p);
                p
            }
        };
        let tp = TopicPartition::new("events", (round % PARTITIONS as usize) as i32);
        let added = add_partitions(&handle, id, (pid, epoch), std::slice::from_ref(&tp)).await;
        if added[0].is_some() {
            producer = None;
            continue;
        }
        let mut sent = false;
        for _ in 0..10 {
            let Some(leader) = handle.leader_of(&tp) else {
                sleep_ms(20).await;
                continue;
            };
            let request = Request::Produce(ProduceRequest {
                transactional_id: Some(id.to_string()),
                timeout_ms: 1_000,
                batches: vec![batch(
                    &tp,
                    pid,
                    epoch,
                    (round * 2) as i32 % 1_000_000,
                    true,
                    &["t1", "t2"],
                )],
            });
            if let Ok(Response::Produce(ProduceResponse { results })) =
                connect(leader).call(request, 1_500).await
            {
                match results[0].error {
                    None => {
                        sent = true;
                        break;
                    }
                    Some(
                        ErrorCode::InvalidProducerEpoch
                        | ErrorCode::ProducerFenced
                        | ErrorCode::OutOfOrderSequenceNumber,
                    ) => break,
                    Some(_) => {}
                }
            }
            sleep_ms(20).await;
        }
        let committed = sent && round % 3 != 2;
        if end_txn(&handle, id, (pid, epoch), committed)
            .await
            .is_some()
        {
            producer = None;
        }
    }
}

/// A consumer-group member that joins, syncs, heartbeats and commits.
async fn group_member(handle: ClusterHandle, rounds: usize) {
    let group = "det-group";
    let mut member_id = String::new();
    for round in 0..rounds {
        let mut connection = coordinator(&handle, CoordinatorType::Group, group).await;
        let join = Request::JoinGroup(JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: 6_000,
            rebalance_timeout_ms: 2_000,
            member_id: member_id.clone(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![JoinProtocol {
                name: "range".into(),
                metadata: Vec::new(),
            }],
            client_id: "det".into(),
        });
        let (generation_id, id) = match connection.call(join, 5_000).await {
            Ok(Response::JoinGroup(JoinGroupResponse {
                error: None,
                generation_id,
                member_id: id,
                ..
            })) => (generation_id, id),
            // KIP-394: join again with the member id handed out.
            Ok(Response::JoinGroup(JoinGroupResponse {
                error: Some(ErrorCode::Other(79)),
                member_id: offered,
                ..
            })) => {
                member_id = offered;
                continue;
            }
            _ => {
                member_id.clear();
                sleep_ms(50).await;
                continue;
            }
        };
        member_id = id;
        let sync = Request::SyncGroup(SyncGroupRequest {
            group_id: group.into(),
            generation_id,
            member_id: member_id.clone(),
            assignments: vec![MemberAssignment {
                member_id: member_id.clone(),
                partitions: vec![TopicPartition::new("events", 0)],
            }],
        });
        let _ = connection.call(sync, 5_000).await;
        let commit = Request::OffsetCommit(OffsetCommitRequest {
            group_id: group.into(),
            generation_id,
            member_id: member_id.clone(),
            offsets: vec![(
                TopicPartition::new("events", 0),
                eddyline_engine::transport::OffsetAndMetadata {
                    offset: round as i64,
                    metadata: String::new(),
                },
            )],
        });
        let _ = connection.call(commit, 5_000).await;
        let heartbeat = Request::Heartbeat(HeartbeatRequest {
            group_id: group.into(),
            generation_id,
            member_id: member_id.clone(),
        });
        let _ = connection.call(heartbeat, 5_000).await;
        sleep_ms(100).await;
    }
}

async fn latest_offset(
    handle: &ClusterHandle,
    tp: &TopicPartition,
    isolation: Isolation,
) -> Option<i64> {
    let leader = handle.leader_of(tp)?;
    let request = Request::ListOffsets(ListOffsetsRequest {
        isolation,
        partitions: vec![ListOffsetsPartition {
            topic_partition: tp.clone(),
            spec: OffsetSpec::Latest,
        }],
    });
    match connect(leader).call(request, 1_000).await {
        Ok(Response::ListOffsets(ListOffsetsResponse { results })) => results[0].offset.ok(),
        _ => None,
    }
}

fn run(seed: u64) -> (u64, u64) {
    run_with(
        seed,
        1,
        FaultRates {
            broker_crash_per_s: 0.5,
            leader_move_per_s: 1.0,
            transaction_expiry_per_s: 0.3,
            ..FaultRates::default()
        },
    )
}

/// One run of the workload, `scale` times the base amount of work.
fn run_with(seed: u64, scale: usize, rates: FaultRates) -> (u64, u64) {
    let mut cluster = SimCluster::new(Seed::new(seed), config_from_env()).unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new("events", p))
        .collect();
    let faults = cluster.draw_faults(&rates, partitions, 500, 3_000);
    assert!(!faults.is_empty());
    cluster.schedule(faults);
    let handle = cluster.handle();
    cluster.client("workload", async move {
        wait_ready(&handle).await;
        create_topic(&handle, "events", PARTITIONS).await;
        let producers =
            tokio::task::spawn_local(idempotent_producer(handle.clone(), 900_001, 40 * scale));
        let transactions =
            tokio::task::spawn_local(transactional_producer(handle.clone(), 12 * scale));
        let member = tokio::task::spawn_local(group_member(handle.clone(), 10 * scale));
        producers.await.unwrap();
        transactions.await.unwrap();
        member.await.unwrap();
        // No hanging transaction: every partition's LSO reaches its HW
        // (open transactions end by commit, abort or coordinator timeout).
        for partition in 0..PARTITIONS {
            let tp = TopicPartition::new("events", partition);
            let mut settled = false;
            for _ in 0..600 {
                let committed = latest_offset(&handle, &tp, Isolation::ReadCommitted).await;
                let uncommitted = latest_offset(&handle, &tp, Isolation::ReadUncommitted).await;
                if committed.is_some() && committed == uncommitted {
                    settled = true;
                    break;
                }
                sleep_ms(50).await;
            }
            assert!(settled, "hanging transaction on {tp} (seed {seed})");
        }
        Ok(())
    });
    cluster
        .run()
        .unwrap_or_else(|e| panic!("{e}\n{}", e.trace.excerpt.join("\n")));
    // Whatever the faults did, committed data agrees on every replica.
    if let Err(violations) = cluster.handle().verify_replicas() {
        panic!("{}", violations.join("\n"));
    }
    let summary = cluster.trace();
    if std::env::var_os("EDDY_BROKER_SEEDS").is_some() {
        eprintln!(
            "seed {seed}: {} ms simulated, {} events, hash {:016x}",
            cluster.elapsed_ms(),
            summary.events,
            summary.hash
        );
    }
    (summary.hash, summary.events)
}

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    let first = run(7);
    let second = run(7);
    assert_eq!(first, second);
    assert!(
        first.1 > 500,
        "too few events to mean anything: {}",
        first.1
    );
}

/// A sweep under heavy faults: every run finishes (liveness after the
/// faults stop) and keeps replicas consistent. `EDDY_BROKER_SEEDS=N` runs
/// N seeds (default 2) from `EDDY_BROKER_SEED_FROM` (default 1000).
#[test]
fn runs_under_heavy_faults_finish_with_consistent_replicas() {
    let seeds: u64 = std::env::var("EDDY_BROKER_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rates = FaultRates {
        broker_crash_per_s: 1.5,
        broker_down_ms: (100, 1_500),
        leader_move_per_s: 2.0,
        network_partition_per_s: 1.0,
        network_partition_ms: (100, 1_500),
        latency_spike_per_s: 0.5,
        transaction_expiry_per_s: 0.5,
        ..FaultRates::none()
    };
    let from: u64 = std::env::var("EDDY_BROKER_SEED_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    // Seed 1183 once starved a follower: truncation that cut no records
    // kept the empty epochs at the log's end and asked the same question
    // forever.
    let regressions = if std::env::var_os("EDDY_BROKER_SEED_FROM").is_some() {
        Vec::new()
    } else {
        vec![1_183]
    };
    for seed in (from..from + seeds).chain(regressions) {
        let (_, events) = run_with(seed, 4, rates.clone());
        assert!(events > 500, "seed {seed}: only {events} events");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: std::collections::BTreeSet<u64> =
        [1, 2, 3].into_iter().map(|seed| run(seed).0).collect();
    assert_eq!(hashes.len(), 3);
}

/// What may not appear in simulator, engine or scenario code (each would
/// make a run depend on something other than its seed), unless the line
/// says why with `determinism: allow` or is listed in [`ALLOWED`].
const FORBIDDEN: &[(&str, &str)] = &[
    ("SystemTime::now", "wall clock"),
    (
        "Instant::now",
        "wall clock (use tokio::time / world::now_ms)",
    ),
    ("thread::spawn", "threads"),
    ("thread_rng", "OS randomness"),
    ("OsRng", "OS randomness"),
    ("from_entropy", "OS randomness"),
    ("from_os_rng", "OS randomness"),
    ("rand::random", "OS randomness"),
    ("HashMap", "hash-order iteration (use BTreeMap)"),
    ("HashSet", "hash-order iteration (use BTreeSet)"),
];

/// Run-time environment reads, which library code may not do: settings
/// come in through configuration values (`ClusterConfig`, options), and
/// only tests, benches and the CLI read the environment. Unlike
/// [`FORBIDDEN`], this rule also covers live-mode code.
const ENV_READS: &[(&str, &str)] = &[
    ("env::var(", "environment read in library code"),
    ("env::var_os(", "environment read in library code"),
    ("env::vars(", "environment read in library code"),
    ("env::vars_os(", "environment read in library code"),
];

/// Sites allowed to match a rule, each with its reason: (path suffix,
/// pattern, why).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "scenarios/src/conformance/sim_env.rs",
        "Instant::now",
        "`tokio::time::Instant` inside a turmoil host reads the simulated clock",
    ),
    (
        "engine/src/worker/driver.rs",
        "Instant::now",
        "the worker's processing time: `tokio::time::Instant`, simulated in a turmoil host",
    ),
];

/// Live-mode code (real Kafka through rdkafka) runs on the real clock and
/// threads by design and never runs in the simulator: exempt from
/// [`FORBIDDEN`] (not from [`ENV_READS`]).
const LIVE_MODE_DIRS: &[&str] = &["kafka"];
const LIVE_MODE_FILES: &[&str] = &["kafka_env.rs"];

/// A source file to scan, and whether it is live-mode code.
struct Source {
    path: PathBuf,
    live_mode: bool,
}

fn rust_files(dir: &Path, live_mode: bool, files: &mut Vec<Source>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            let live_mode = live_mode || LIVE_MODE_DIRS.contains(&name);
            rust_files(&path, live_mode, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let live_mode = live_mode || LIVE_MODE_FILES.contains(&name);
            files.push(Source { path, live_mode });
        }
    }
}

/// Whether `line` of `file` may match `pattern`.
fn allowed(file: &Path, line: &str, pattern: &str) -> bool {
    let file = file.to_string_lossy().replace('\\', "/");
    line.contains("determinism: allow")
        || ALLOWED
            .iter()
            .any(|(suffix, allowed, _)| file.ends_with(suffix) && *allowed == pattern)
}

/// Every line of `files` that matches one of `rules`, as `path:line:
/// pattern (why)`. Comments never match; with `library_only`, neither does
/// test code (a `tests.rs` file, or what follows a top-level
/// `#[cfg(test)]`).
fn scan(files: &[PathBuf], rules: &[(&str, &str)], library_only: bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        if library_only && file.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if library_only && line == "#[cfg(test)]" {
                break;
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (pattern, why) in rules {
                if line.contains(pattern) && !allowed(file, line, pattern) {
                    found.push(format!(
                        "{}:{}: {pattern} ({why})",
                        file.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    found
}

/// Lines that use a clock, OS randomness, threads or hash-ordered
/// collections.
fn violations(files: &[PathBuf]) -> Vec<String> {
    scan(files, FORBIDDEN, false)
}

/// Lines of library code that read the environment.
fn env_read_violations(files: &[PathBuf]) -> Vec<String> {
    scan(files, ENV_READS, true)
}

/// The library sources of the simulator, the engine and the scenarios.
fn library_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "../engine/src", "../scenarios/src"] {
        let before = files.len();
        rust_files(&root.join(dir), false, &mut files);
        assert!(files.len() > before, "no sources found in {dir}");
    }
    assert!(files.len() >= 10, "scanned too few files: {}", files.len());
    files
}

#[test]
fn simulator_engine_and_scenario_sources_use_no_clock_randomness_threads_or_hash_maps() {
    let files: Vec<PathBuf> = library_sources()
        .into_iter()
        .filter(|source| !source.live_mode)
        .map(|source| source.path)
        .collect();
    assert!(
        files
            .iter()
            .any(|path| path.ends_with("conformance/mod.rs")),
        "the scenarios are scanned"
    );
    let found = violations(&files);
    assert!(found.is_empty(), "forbidden calls:\n{}", found.join("\n"));
}

#[test]
fn library_code_of_the_simulator_engine_and_scenarios_reads_no_environment() {
    let files: Vec<PathBuf> = library_sources()
        .into_iter()
        .map(|source| source.path)
        .collect();
    assert!(
        files.iter().any(|path| path.ends_with("kafka/config.rs")),
        "live-mode code is scanned for environment reads too"
    );
    let found = env_read_violations(&files);
    assert!(
        found.is_empty(),
        "environment reads in library code:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_source_scan_catches_a_forbidden_call() {
    let dir = std::env::temp_dir().join(format!("eddy-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.rs");
    std::fs::write(
        &bad,
        "fn f() { let t = std::time::Instant::now(); }\n\
         // std::time::SystemTime::now() in a comment is fine\n\
         fn g() { let m = std::collections::HashMap::<u8, u8>::new(); } // determinism: allow(lookup only)\n",
    )
    .unwrap();
    let found = violations(&[bad]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("Instant::now"));
}

#[test]
fn the_source_scan_catches_an_environment_read_in_library_code_only() {
    let dir = std::env::temp_dir().join(format!("eddy-env-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let library = dir.join("library.rs");
    std::fs::write(
        &library,
        "fn f() -> bool { std::env::var(\"A\").is_ok() }\n\
         fn g() -> bool { std::env::var_os(\"B\").is_some() }\n\
         fn h() -> usize { std::env::vars().count() }\n\
         // std::env::var(\"C\") in a comment is fine\n\
         fn i() -> bool { std::env::var_os(\"D\").is_some() } // determinism: allow(a reason)\n\
         #[cfg(test)]\n\
         mod tests { fn t() -> bool { std::env::var(\"E\").is_ok() } }\n",
    )
    .unwrap();
    let tests = dir.join("tests.rs");
    std::fs::write(&tests, "fn t() -> bool { std::env::var(\"F\").is_ok() }\n").unwrap();
    let found = env_read_violations(&[library, tests]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].contains("library.rs:1: env::var("), "{found:?}");
    assert!(found[1].contains("library.rs:2: env::var_os("), "{found:?}");
    assert!(found[2].contains("library.rs:3: env::vars("), "{found:?}");
}

#[test]
fn an_allowed_site_is_allowed_for_its_pattern_only() {
    let sim_env = Path::new("/repo/scenarios/src/conformance/sim_env.rs");
    let line = "let started = tokio::time::Instant::now();";
    assert!(allowed(sim_env, line, "Instant::now"));
    assert!(!allowed(
        sim_env,
        "std::time::SystemTime::now()",
        "SystemTime::now"
    ));
    assert!(!allowed(
        Path::new("/repo/scenarios/src/conformance/support.rs"),
        line,
        "Instant::now"
    ));
}
