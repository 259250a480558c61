//! `eddy record --bootstrap HOST:PORT --topic T --out FILE.parquet
//! [--follow]`: every partition of a topic, read_committed, to a recording.
//!
//! Without `--follow` it records up to the end offsets (last stable
//! offsets) seen at start, one partition after the other, writing each
//! record as it is read; with `--follow` every partition until SIGINT or
//! SIGTERM, the records held in memory and written at the stop. Either way
//! rows go in partition, then offset order, to a temporary file beside
//! FILE, renamed when complete. An unreachable broker or a missing topic:
//! one line, exit 2, nothing written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::recording::write::{RecordingWriter, write_recording};
use eddyline_engine::recording::{OffsetRange, RecordingInfo};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, ErrorCode, Message, TopicPartition, Transport,
    TransportError,
};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{CliError, Outcome};

/// Records every partition of a topic (read_committed) to a Parquet file.
///
/// Up to the end offsets seen at start, or with --follow until SIGINT or
/// SIGTERM. The format is in docs/recordings.md. librdkafka settings
/// (security, credentials) come from the properties file named by
/// EDDY_KAFKA_CONFIG and from EDDY_KAFKA_* variables, never from the
/// command line. A progress bar with records/s is drawn on a terminal.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The Kafka cluster's bootstrap address(es).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap: String,
    /// The topic to record.
    #[arg(long, value_name = "T")]
    topic: String,
    /// The recording to write.
    #[arg(long, value_name = "FILE.parquet")]
    out: PathBuf,
    /// Go on recording what arrives until SIGINT or SIGTERM.
    #[arg(long)]
    follow: bool,
}

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Records per poll.
const POLL_MAX_EVENTS: usize = 2_000;

pub fn run(args: &RecordArgs) -> Result<Outcome, CliError> {
    let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(CliError::BadInput(format!(
            "--out {}: no such directory",
            args.out.display()
        )));
    }
    let (config, runtime) = crate::kafka_session(&args.bootstrap)?;
    runtime.block_on(record(args, config))
}

fn bad(error: TransportError) -> CliError {
    CliError::BadInput(error.message)
}

async fn record(args: &RecordArgs, config: KafkaConfig) -> Result<Outcome, CliError> {
    let bootstrap = config.bootstrap().to_string();
    let transport = KafkaTransport::connect(config).await.map_err(bad)?;
    let admin = transport.admin().await.map_err(bad)?;
    let partitions = match admin.partition_count(&args.topic).await {
        Ok(count) => count,
        Err(error) if error.code == ErrorCode::UnknownTopicOrPartition => {
            return Err(CliError::BadInput(format!(
                "topic '{}' does not exist at {bootstrap}",
                args.topic
            )));
        }
        Err(error) => return Err(bad(error)),
    };
    let mut consumer = transport
        .consumer(&ConsumerConfig::new("eddy-record", None))
        .await
        .map_err(bad)?;
    let mut ranges = Vec::new();
    for partition in 0..partitions {
        let tp = TopicPartition::new(args.topic.clone(), partition);
        let (start, end) = consumer.offsets_range(&tp).await.map_err(bad)?;
        ranges.push(OffsetRange {
            partition,
            start,
            end,
        });
    }
    let mut info = RecordingInfo {
        topic: args.topic.clone(),
        source: format!("eddy record --bootstrap {bootstrap} --topic {}", args.topic),
        partition_count: partitions,
        offset_ranges: ranges,
    };
    let started = Instant::now();
    let rows = if args.follow {
        follow(args, &mut consumer, &mut info).await?
    } else {
        bounded(args, &mut consumer, &info).await?
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "recorded {rows} records of {} ({partitions} partitions) in {seconds:.2} s to {}",
        args.topic,
        args.out.display()
    );
    Ok(Outcome::Success)
}

/// Up to the end offsets seen at start, one partition after the other, each
/// record written as it comes (rows go in partition, then offset order):
/// memory holds a row group, not the topic. A partition is done when the
/// consumer's position reaches its end offset; the position steps over
/// transaction markers and aborted records (offsets no record read_committed
/// carries), so a partition ending in a marker is done at once. SIGINT or
/// SIGTERM stops it with nothing written.
async fn bounded(
    args: &RecordArgs,
    consumer: &mut impl Consumer,
    info: &RecordingInfo,
) -> Result<u64, CliError> {
    let total: i64 = info.offset_ranges.iter().map(|r| r.end - r.start).sum();
    let bar = progress_bar(false, total);
    let mut stop = Some(signals()?);
    let mut writer = RecordingWriter::create(&args.out, &args.topic)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    for range in info.offset_ranges.iter().filter(|r| r.start < r.end) {
        let tp = TopicPartition::new(args.topic.clone(), range.partition);
        consumer
            .assign(std::slice::from_ref(&tp))
            .await
            .map_err(bad)?;
        while consumer
            .position(&tp)
            .map_err(|e| CliError::Internal(format!("reading {tp}: {}", e.message)))?
            .is_none_or(|position| position < range.end)
        {
            let polled = tokio::select! {
                () = stopped(&mut stop) => {
                    bar.finish_and_clear();
                    return Err(CliError::Internal(format!(
                        "interrupted before the end of {tp}: nothing written to {}",
                        args.out.display()
                    )));
                }
                polled = consumer.poll(POLL_MAX_EVENTS, POLL_TIMEOUT) => polled,
            };
            let events =
                polled.map_err(|e| CliError::Internal(format!("reading {tp}: {}", e.message)))?;
            for event in events {
                let ConsumerEvent::Message(message) = event else {
                    continue;
                };
                if message.partition != range.partition || message.offset >= range.end {
                    continue;
                }
                writer
                    .append(&message)
                    .map_err(|e| CliError::Internal(e.to_string()))?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    writer
        .finish(info)
        .map_err(|e| CliError::Internal(e.to_string()))
}

/// Every partition at once until SIGINT or SIGTERM, the records held in
/// memory and written at the stop (sorted by partition, then offset); each
/// partition's range then ends past the last record read, if that is
/// beyond the end seen at start.
async fn follow(
    args: &RecordArgs,
    consumer: &mut impl Consumer,
    info: &mut RecordingInfo,
) -> Result<u64, CliError> {
    let tps: Vec<TopicPartition> = info
        .offset_ranges
        .iter()
        .map(|r| TopicPartition::new(args.topic.clone(), r.partition))
        .collect();
    consumer.assign(&tps).await.map_err(bad)?;
    let bar = progress_bar(true, 0);
    let mut stop = Some(signals()?);
    let mut records: BTreeMap<i32, Vec<Message>> = BTreeMap::new();
    loop {
        let polled = tokio::select! {
            () = stopped(&mut stop) => break,
            polled = consumer.poll(POLL_MAX_EVENTS, POLL_TIMEOUT) => polled,
        };
        let events = polled
            .map_err(|e| CliError::Internal(format!("reading {}: {}", args.topic, e.message)))?;
        let mut got = 0_u64;
        for event in events {
            let ConsumerEvent::Message(message) = event else {
                continue;
            };
            got += 1;
            records.entry(message.partition).or_default().push(message);
        }
        bar.inc(got);
    }
    bar.finish_and_clear();
    for range in &mut info.offset_ranges {
        let last = records
            .get(&range.partition)
            .and_then(|r| r.last())
            .map_or(range.end, |m| m.offset + 1);
        range.end = range.end.max(last);
    }
    for messages in records.values_mut() {
        messages.sort_by_key(|m| m.offset);
    }
    write_recording(&args.out, info, &records).map_err(|e| CliError::Internal(e.to_string()))
}

fn progress_bar(follow: bool, total: i64) -> ProgressBar {
    let (bar, template) = if follow {
        (
            ProgressBar::new_spinner(),
            "{elapsed_precise} {spinner} {pos} records, {per_sec} (SIGINT stops)",
        )
    } else {
        (
            ProgressBar::new(total.max(0) as u64),
            "{elapsed_precise} [{bar:30}] {pos}/{len} records, {per_sec}",
        )
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}

/// Resolves at SIGINT or SIGTERM; never without signals.
async fn stopped(signals: &mut Option<(Signal, Signal)>) {
    match signals {
        Some((interrupt, terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, which end a `--follow` recording.
fn signals() -> Result<(Signal, Signal), CliError> {
    let listen = |kind| {
        signal(kind).map_err(|e| CliError::Internal(format!("cannot listen for signals: {e}")))
    };
    Ok((
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
    ))
}
