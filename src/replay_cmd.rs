//! `eddy replay --job JOB.toml --input FILE.parquet [--out FILE.parquet |
//! --bootstrap HOST:PORT]`: a recording through the job as a bounded
//! backfill, on the worker's one driver over the Parquet transport.
//!
//! The committed output goes to `--out` as a recording of the job's output
//! topic (late and dead-letter records beside it, as `NAME.late.parquet`
//! and `NAME.dead-letter.parquet`, when there are any), or with
//! `--bootstrap` to the job's output topics on Kafka, in transactions; with
//! neither, a summary only. A bad job or recording, an unreachable broker:
//! one line, exit 2, nothing written. A worker that fails (a bad record
//! under `on_bad_record = "fail"`): exit 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use eddyline_engine::Error;
use eddyline_engine::job::Job;
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::recording::{Recording, ReplayOptions, replay_owned};
use eddyline_engine::transport::{
    Admin, ErrorCode, Message, NewTopic, Producer, ProducerConfig, ProducerRecord, Transport,
    TransportError,
};
use eddyline_engine::worker::Stopped;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{CliError, Outcome};

/// Replays a recorded topic through a job as a bounded backfill.
///
/// The recording's partitions are read in offset order; at their end every
/// task's watermark goes to i64::MAX, so every pending window fires. The
/// same worker as `eddy live` runs it (checkpoints and transactions
/// included), over the recording instead of Kafka. A progress bar with
/// rows/s is drawn on a terminal.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The job file (TOML; see docs/jobs.md).
    #[arg(long, value_name = "JOB.toml")]
    job: PathBuf,
    /// A recording of the job's input topic (see docs/recordings.md);
    /// repeat for a job with several input topics.
    #[arg(long, value_name = "FILE.parquet", required = true)]
    input: Vec<PathBuf>,
    /// Write the committed output here as a recording of the job's output
    /// topic; late and dead-letter records go beside it as
    /// NAME.late.parquet and NAME.dead-letter.parquet.
    #[arg(long, value_name = "FILE.parquet", conflicts_with = "bootstrap")]
    out: Option<PathBuf>,
    /// Produce the committed output, late and dead-letter records to the
    /// job's topics on this Kafka cluster (created if missing, with the
    /// recording's partitions), each record to its partition of the
    /// replay, in transactions of up to 50,000 records (transactional id
    /// `eddy-replay-JOB`): a read_committed reader sees each batch whole or
    /// not at all. librdkafka settings come from EDDY_KAFKA_CONFIG and
    /// EDDY_KAFKA_* variables, as for `eddy live`.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap: Option<String>,
}

/// Where each output topic goes: the output to `out`, the others beside it.
fn output_paths(job: &Job, out: &Path) -> Vec<(String, PathBuf)> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let beside = |suffix: &str| out.with_file_name(format!("{stem}.{suffix}.parquet"));
    let mut paths = vec![
        (job.output_topic().to_string(), out.to_path_buf()),
        (job.late_topic().to_string(), beside("late")),
    ];
    if let Some(dead) = job.dead_letter_topic() {
        paths.push((dead.to_string(), beside("dead-letter")));
    }
    paths
}

/// Records per transaction when producing a replay's output to Kafka.
const TRANSACTION_RECORDS_MAX: usize = 50_000;

/// The output topics of a job: output, late, dead-letter.
fn output_topics(job: &Job) -> Vec<String> {
    let mut topics = vec![job.output_topic().to_string(), job.late_topic().to_string()];
    topics.extend(job.dead_letter_topic().map(str::to_string));
    topics.dedup();
    topics
}

/// Produces one topic's committed replay output to Kafka, each record to
/// its replay partition, in transactions; creates the topic if missing.
async fn produce(
    target: &KafkaTransport,
    job_name: &str,
    topic: &str,
    records: &BTreeMap<i32, Vec<Message>>,
) -> Result<usize, CliError> {
    let internal = |e: TransportError| CliError::Internal(format!("{topic}: {}", e.message));
    let partitions = records.len() as i32;
    let admin = target.admin().await.map_err(internal)?;
    let new_topic = NewTopic {
        name: topic.to_string(),
        partitions,
        replication_factor: 1,
        configs: Vec::new(),
    };
    match admin.create_topic(&new_topic).await {
        Ok(()) => {}
        Err(error) if error.code == ErrorCode::TopicAlreadyExists => {
            let existing = admin.partition_count(topic).await.map_err(internal)?;
            if existing < partitions {
                return Err(CliError::BadInput(format!(
                    "topic '{topic}' has {existing} partitions, the replay's output {partitions}"
                )));
            }
        }
        Err(error) => return Err(internal(error)),
    }
    let id = format!("eddy-replay-{job_name}");
    let mut producer = target
        .producer(&ProducerConfig::new(id.clone(), Some(id)))
        .await
        .map_err(internal)?;
    producer.init_transactions().await.map_err(internal)?;
    let all: Vec<&Message> = records.values().flatten().collect();
    for chunk in all.chunks(TRANSACTION_RECORDS_MAX) {
        producer.begin_transaction().await.map_err(internal)?;
        for message in chunk {
            let record = ProducerRecord {
                topic: topic.to_string(),
                partition: Some(message.partition),
                key: message.key.as_deref().map(<[u8]>::to_vec),
                value: message.value.as_deref().map(<[u8]>::to_vec),
                timestamp_ms: Some(message.timestamp_ms),
                headers: message.headers.clone(),
            };
            drop(producer.send(record).map_err(internal)?);
        }
        producer.commit_transaction().await.map_err(internal)?;
    }
    Ok(all.len())
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} rows, {per_sec}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}

pub fn run(args: &ReplayArgs) -> Result<Outcome, CliError> {
    let job = Job::from_file(&args.job).map_err(|e| CliError::BadInput(e.to_string()))?;
    let mut inputs = Vec::new();
    for path in &args.input {
        let recording = Recording::read(path).map_err(|e| CliError::BadInput(e.to_string()))?;
        if !job.input_topics().contains(&recording.info.topic) {
            return Err(CliError::BadInput(format!(
                "{}: a recording of topic {}, and job {} reads topic {}",
                path.display(),
                recording.info.topic,
                job.name(),
                job.input_topics().join(", ")
            )));
        }
        inputs.push(recording);
    }
    if let Some(out) = &args.out {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(CliError::BadInput(format!(
                "--out {}: no such directory",
                out.display()
            )));
        }
    }
    let kafka = match &args.bootstrap {
        Some(bootstrap) => Some(
            KafkaConfig::from_sources(Some(bootstrap), std::env::vars())
                .map_err(|error| CliError::BadInput(error.message))?,
        ),
        None => None,
    };
    let job_name = job.name().to_string();
    let topics = output_topics(&job);
    let rows: usize = inputs.iter().map(Recording::len).sum();
    let bar = progress_bar(rows as u64);
    let source = format!(
        "eddy replay --job {} --input {}",
        args.job.display(),
        args.input
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" --input ")
    );
    let paths = args.out.as_deref().map(|out| output_paths(&job, out));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("a runtime: {e}")))?;
    let result = runtime.block_on(async {
        // Reach the broker first: an unreachable one is bad input, before
        // any work.
        let target = match kafka {
            Some(config) => Some(
                KafkaTransport::connect(config)
                    .await
                    .map_err(|error| CliError::BadInput(error.message))?,
            ),
            None => None,
        };
        let done = replay_owned(job, inputs, &ReplayOptions::default(), |stats| {
            bar.set_position(stats.records_in)
        })
        .await
        .map_err(|e| match e {
            Error::Invalid(_) => CliError::BadInput(e.to_string()),
            other => CliError::Internal(other.to_string()),
        })?;
        bar.finish_and_clear();
        match &done.stopped {
            Stopped::Finished => {}
            other => {
                return Err(CliError::Internal(format!(
                    "the replay's worker stopped: {other:?}"
                )));
            }
        }
        let mut written = Vec::new();
        for (topic, path) in paths.iter().flatten() {
            let (records, _) = done
                .transport
                .committed(topic)
                .await
                .map_err(|e| CliError::Internal(e.to_string()))?;
            let is_output = Some(path.as_path()) == args.out.as_deref();
            if !is_output && records.values().all(Vec::is_empty) {
                continue;
            }
            let rows = done
                .transport
                .write_committed(topic, path, &source)
                .await
                .map_err(|e| CliError::Internal(e.to_string()))?;
            written.push(format!("{rows} rows of {topic} to {}", path.display()));
        }
        if let Some(target) = &target {
            for topic in &topics {
                let (records, _) = done
                    .transport
                    .committed(topic)
                    .await
                    .map_err(|e| CliError::Internal(e.to_string()))?;
                let count = produce(target, &job_name, topic, &records).await?;
                written.push(format!(
                    "{count} records to {topic} at {}",
                    target.config().bootstrap()
                ));
            }
        }
        Ok((done.stats, written))
    });
    let (stats, written) = result?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {} records in {seconds:.2} s ({:.0} rows/s): {} outputs, {} checkpoints",
        stats.records_in,
        stats.records_in as f64 / seconds.max(1e-9),
        stats.records_out,
        stats.checkpoints_committed
    );
    for line in written {
        println!("wrote {line}");
    }
    Ok(Outcome::Success)
}
