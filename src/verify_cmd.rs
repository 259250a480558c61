//! `eddy verify --job JOB.toml --bootstrap HOST:PORT [--dump DIR]`: the
//! scenarios' checker over a job's real topics after a live run.
//!
//! It builds the same [`Observation`] a simulated run builds, from what a
//! Kafka client can read, and judges it with the same checker and
//! reference model:
//!
//! - the input topic, every record (the input is written without
//!   transactions);
//! - the output, late and dead-letter topics under `read_committed`, each
//!   partition up to its last stable offset;
//! - the job's consumer group's committed offsets (the group is the job's
//!   name);
//! - each output partition's last stable offset against its high
//!   watermark, given `--stable-wait-ms` to converge.
//!
//! So it checks, exactly as a simulated run does: `lost-output`,
//! `duplicate-output`, `wrong-result`, `premature-fire`,
//! `missing-late-update`, `silent-drop`, `wrong-late-output`,
//! `watermark-regression` (all from the records and their headers),
//! `hanging-transaction` (last stable offset below the high watermark) and
//! `liveness` (read as: the group has committed the end of every input
//! partition; after a live run with `--stop-at-end` it has).
//!
//! It cannot check, and says so: `aborted-read` and `zombie-commit` need
//! the partitions' logs (batches with their producer ids and epochs,
//! transaction markers), which the brokers keep and no client API returns;
//! `offset-regression` needs the committed offsets sampled through the
//! run, and verify comes after it; `nondeterminism` compares two simulated
//! runs. The simulator checks all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use eddyline_engine::job::Job;
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, ErrorCode, Isolation, Message, TopicPartition,
    Transport, TransportError,
};
use eddyline_scenarios::checker::{self, Anomaly, AnomalyKind};
use eddyline_scenarios::observation::Observation;

use crate::{CliError, Outcome};

/// Runs the checker over a job's real topics after a live run.
///
/// Reads the input, output, late and dead-letter topics (stop the workers
/// first, or run them with `--stop-at-end`). Checks lost-output, duplicate-output, wrong-result,
/// premature-fire, missing-late-update, silent-drop, wrong-late-output,
/// watermark-regression, hanging-transaction and liveness (the job's
/// group committed the end of every input partition); not aborted-read
/// and zombie-commit (they need the brokers' logs: producer ids and
/// transaction markers) nor offset-regression (it needs offsets sampled
/// during the run): the simulator checks those. librdkafka settings come
/// from EDDY_KAFKA_CONFIG and EDDY_KAFKA_* variables; an unreachable
/// broker is reported within EDDY_KAFKA_TIMEOUT_MS (default 10 s). Exit 0
/// no anomaly, 1 anomalies, 2 bad usage or input (a missing topic
/// included).
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The job file (TOML; see docs/jobs.md).
    #[arg(long, value_name = "JOB.toml")]
    job: PathBuf,
    /// The Kafka cluster's bootstrap address(es).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap: String,
    /// How long open transactions on the output topics get to finish
    /// before they count as hanging.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    stable_wait_ms: u64,
    /// Write what was read (input, committed output, late, dead letters)
    /// as JSON lines into DIR, as `eddy sim run --dump` does.
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
}

/// A read-back gives up after this long in all (then the output is
/// incomplete and the checker says what is missing).
const READ_MAX: Duration = Duration::from_secs(300);
/// Records per poll.
const POLL_MAX_EVENTS: usize = 2_000;

/// The anomalies a client can check, and those it cannot with why.
const NOT_CHECKED: [(AnomalyKind, &str); 4] = [
    (
        AnomalyKind::AbortedRead,
        "needs the partitions' logs (transaction markers)",
    ),
    (
        AnomalyKind::ZombieCommit,
        "needs the partitions' logs (producer ids and epochs)",
    ),
    (
        AnomalyKind::OffsetRegression,
        "needs the committed offsets sampled during the run",
    ),
    (AnomalyKind::Nondeterminism, "compares two simulated runs"),
];

pub fn run(args: &VerifyArgs) -> Result<Outcome, CliError> {
    let job = Job::from_file(&args.job).map_err(|error| CliError::BadInput(error.to_string()))?;
    if job.input_topics().len() != 1 {
        return Err(CliError::BadInput(format!(
            "{}: verify checks jobs with one input topic; this one reads {}",
            args.job.display(),
            job.input_topics().len()
        )));
    }
    if let Some(dir) = &args.dump {
        crate::sim_cmd::dump::prepare(dir)?;
    }
    let (config, runtime) = crate::kafka_session(&args.bootstrap)?;
    let stable_wait = Duration::from_millis(args.stable_wait_ms);
    let observation = runtime.block_on(observe(&job, config, stable_wait))?;
    let anomalies = checker::check(&job, &observation)
        .map_err(|error| CliError::BadInput(format!("{}: {error}", args.job.display())))?;
    print_report(&job, &args.bootstrap, &observation, &anomalies);
    if let Some(dir) = &args.dump {
        crate::sim_cmd::dump::write(dir, &job, &observation)?;
        println!("dump: {}", dir.display());
    }
    Ok(if anomalies.is_empty() {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// The job's topics.
struct Topics {
    input: String,
    /// Output, late and dead-letter (those the job has), without repeats.
    outputs: Vec<String>,
    partitions: i32,
}

async fn observe(
    job: &Job,
    config: KafkaConfig,
    stable_wait: Duration,
) -> Result<Observation, CliError> {
    let transport = KafkaTransport::connect(config)
        .await
        .map_err(|error| CliError::BadInput(error.message))?;
    let topics = topics(job, &transport).await?;
    let committed = group_offsets(&transport, job.name(), &topics).await?;
    let unstable = wait_until_stable(&transport, &topics, stable_wait).await?;
    let mut all = vec![topics.input.clone()];
    all.extend(topics.outputs.iter().cloned());
    let mut read = read_back(&transport, &all, topics.partitions).await?;
    let mut take = |topic: Option<&str>| match topic {
        Some(topic) => read.remove(topic).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let input = take(Some(&topics.input));
    let drained = (0..topics.partitions).all(|partition| {
        let end = input
            .get(&partition)
            .and_then(|messages| messages.last())
            .map_or(0, |last| last.offset + 1);
        committed.get(&partition).copied().unwrap_or(0) >= end
    });
    Ok(Observation {
        input,
        output: take(Some(job.output_topic())),
        late: take(Some(job.late_topic())),
        dead_letter: take(job.dead_letter_topic()),
        output_batches: Vec::new(),
        output_markers: Vec::new(),
        committed_offsets: committed
            .into_iter()
            .map(|(partition, offset)| (partition, vec![(0, offset)]))
            .collect(),
        drained,
        drained_at_ms: drained.then_some(0),
        unstable,
    })
}

/// The job's topics, which must all exist; the input's partition count.
async fn topics(job: &Job, transport: &KafkaTransport) -> Result<Topics, CliError> {
    let bootstrap = transport.config().bootstrap().to_string();
    let admin = transport.admin().await.map_err(bad_input)?;
    let input = job.input_topics()[0].clone();
    let mut outputs = vec![job.output_topic().to_string(), job.late_topic().to_string()];
    outputs.extend(job.dead_letter_topic().map(str::to_string));
    outputs.dedup();
    let mut partitions = 0;
    for topic in std::iter::once(&input).chain(&outputs) {
        match admin.partition_count(topic).await {
            Ok(count) if topic == &input => partitions = count,
            Ok(_) => {}
            Err(error) if error.code == ErrorCode::UnknownTopicOrPartition => {
                return Err(CliError::BadInput(format!(
                    "topic '{topic}' does not exist at {bootstrap}: load the input and run the \
                     job first"
                )));
            }
            Err(error) => return Err(bad_input(error)),
        }
    }
    Ok(Topics {
        input,
        outputs,
        partitions,
    })
}

/// The group's committed offset of each input partition that has one.
async fn group_offsets(
    transport: &KafkaTransport,
    group: &str,
    topics: &Topics,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let config = ConsumerConfig::new("eddy-verify-group", Some(group.to_string()));
    let mut consumer = transport.consumer(&config).await.map_err(bad_input)?;
    let partitions: Vec<TopicPartition> = (0..topics.partitions)
        .map(|partition| TopicPartition::new(topics.input.clone(), partition))
        .collect();
    let committed = consumer.committed(&partitions).await.map_err(bad_input)?;
    Ok(partitions
        .iter()
        .zip(committed)
        .filter_map(|(tp, committed)| committed.map(|c| (tp.partition, c.offset)))
        .collect())
}

/// Waits up to `patience` until every output partition's last stable
/// offset reaches its high watermark; returns those that never did
/// (`topic-partition`).
async fn wait_until_stable(
    transport: &KafkaTransport,
    topics: &Topics,
    patience: Duration,
) -> Result<BTreeSet<String>, CliError> {
    let mut committed = transport
        .consumer(&ConsumerConfig::new("eddy-verify-lso", None))
        .await
        .map_err(bad_input)?;
    let mut uncommitted_config = ConsumerConfig::new("eddy-verify-hw", None);
    uncommitted_config.isolation = Isolation::ReadUncommitted;
    let mut uncommitted = transport
        .consumer(&uncommitted_config)
        .await
        .map_err(bad_input)?;
    let deadline = Instant::now() + patience;
    loop {
        let mut unstable = BTreeSet::new();
        for topic in &topics.outputs {
            for partition in 0..topics.partitions {
                let tp = TopicPartition::new(topic.clone(), partition);
                let (_, stable) = committed.offsets_range(&tp).await.map_err(bad_input)?;
                let (_, high) = uncommitted.offsets_range(&tp).await.map_err(bad_input)?;
                if stable != high {
                    unstable.insert(tp.to_string());
                }
            }
        }
        if unstable.is_empty() || Instant::now() >= deadline {
            return Ok(unstable);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every partition of `topics` read with `read_committed` from its start,
/// per topic and partition in offset order.
async fn read_back(
    transport: &KafkaTransport,
    topics: &[String],
    partitions: i32,
) -> Result<BTreeMap<String, BTreeMap<i32, Vec<Message>>>, CliError> {
    let mut reader = transport
        .consumer(&ConsumerConfig::new("eddy-verify-read", None))
        .await
        .map_err(bad_input)?;
    let mut read: BTreeMap<String, BTreeMap<i32, Vec<Message>>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut ends = BTreeMap::new();
    for topic in topics {
        let by_partition = read.entry(topic.clone()).or_default();
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic.clone(), partition);
            let (start, end) = reader.offsets_range(&tp).await.map_err(bad_input)?;
            by_partition.insert(partition, Vec::new());
            if end > start {
                ends.insert(tp.clone(), end);
                all.push(tp);
            }
        }
    }
    if all.is_empty() {
        return Ok(read);
    }
    reader.assign(&all).await.map_err(bad_input)?;
    let started = Instant::now();
    // A partition is read once the reader's position reaches its end offset
    // (taken above): the position steps over transaction markers and
    // aborted records, which take offsets but are never handed out.
    let mut done: BTreeSet<TopicPartition> = BTreeSet::new();
    while done.len() < all.len() && started.elapsed() < READ_MAX {
        let events = reader
            .poll(POLL_MAX_EVENTS, Duration::from_millis(100))
            .await
            .map_err(|error| CliError::Internal(format!("reading back: {}", error.message)))?;
        for event in events {
            let ConsumerEvent::Message(message) = event else {
                continue;
            };
            if let Some(by_partition) = read.get_mut(&*message.topic) {
                by_partition
                    .entry(message.partition)
                    .or_default()
                    .push(message);
            }
        }
        for tp in &all {
            if done.contains(tp) {
                continue;
            }
            let position = reader.position(tp).map_err(|error| {
                CliError::Internal(format!("reading back {tp}: {}", error.message))
            })?;
            if position.is_some_and(|position| position >= ends[tp]) {
                done.insert(tp.clone());
            }
        }
    }
    for by_partition in read.values_mut() {
        for messages in by_partition.values_mut() {
            messages.sort_by_key(|m| m.offset);
            messages.dedup_by_key(|m| m.offset);
        }
    }
    Ok(read)
}

fn print_report(job: &Job, bootstrap: &str, observation: &Observation, anomalies: &[Anomaly]) {
    let count = |topic: &BTreeMap<i32, Vec<Message>>| topic.values().map(Vec::len).sum::<usize>();
    println!("job {} at {bootstrap}", job.name());
    println!(
        "read: {} input records in {} partitions; committed: {} output, {} late, {} dead letters",
        count(&observation.input),
        observation.input.len(),
        count(&observation.output),
        count(&observation.late),
        count(&observation.dead_letter)
    );
    let offsets: Vec<String> = observation
        .committed_offsets
        .iter()
        .map(|(partition, samples)| format!("{partition}:{}", samples[0].1))
        .collect();
    println!(
        "group '{}' committed offsets: {}",
        job.name(),
        if offsets.is_empty() {
            "none".to_string()
        } else {
            offsets.join(" ")
        }
    );
    let checked: Vec<String> = AnomalyKind::ALL
        .iter()
        .filter(|kind| !NOT_CHECKED.iter().any(|(not, _)| not == *kind))
        .map(|kind| kind.to_string())
        .collect();
    println!("checked: {}", checked.join(", "));
    for (kind, why) in NOT_CHECKED {
        println!("not checked: {kind}: {why} (the simulator checks it)");
    }
    crate::sim_cmd::print::print_anomalies(anomalies);
}

fn bad_input(error: TransportError) -> CliError {
    CliError::BadInput(error.message)
}
