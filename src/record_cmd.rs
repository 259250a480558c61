//! `eddy record --bootstrap HOST:PORT --topic T --out FILE.parquet
//! [--follow]`: every partition of a topic, read_committed, to a recording.
//!
//! Without `--follow` it records up to the end offsets (last stable
//! offsets) seen at start; with `--follow` until SIGINT or SIGTERM. The
//! records are held in memory and written at the end (rows sorted by
//! partition, then offset) to a temporary file beside FILE, renamed when
//! complete. An unreachable broker or a missing topic: one line, exit 2,
//! nothing written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::recording::write::write_recording;
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
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(args.topic.clone(), p))
        .collect();
    let mut ranges = Vec::new();
    for tp in &tps {
        let (start, end) = consumer.offsets_range(tp).await.map_err(bad)?;
        ranges.push(OffsetRange {
            partition: tp.partition,
            start,
            end,
        });
    }
    consumer.assign(&tps).await.map_err(bad)?;
    let total: i64 = ranges.iter().map(|r| r.end - r.start).sum();
    let bar = progress_bar(args.follow, total);
    // Only --follow listens: a bounded recording stops on SIGINT at once,
    // writing nothing.
    let mut stop = if args.follow { Some(signals()?) } else { None };
    let mut records: BTreeMap<i32, Vec<Message>> = BTreeMap::new();
    let started = Instant::now();
    loop {
        let polled = tokio::select! {
            () = stopped(&mut stop) => break,
            polled = consumer.poll(500, POLL_TIMEOUT) => polled,
        };
        let events = polled
            .map_err(|e| CliError::Internal(format!("reading {}: {}", args.topic, e.message)))?;
        let mut got = 0_u64;
        for event in events {
            let ConsumerEvent::Message(message) = event else {
                continue;
            };
            let range = &ranges[message.partition as usize];
            if !args.follow && message.offset >= range.end {
                continue;
            }
            got += 1;
            records.entry(message.partition).or_default().push(message);
        }
        bar.inc(got);
        if !args.follow && bounded_done(&consumer, &args.topic, &ranges)? {
            break;
        }
    }
    bar.finish_and_clear();
    if args.follow {
        for range in &mut ranges {
            let last = records
                .get(&range.partition)
                .and_then(|r| r.last())
                .map_or(range.end, |m| m.offset + 1);
            range.end = range.end.max(last);
        }
    }
    for messages in records.values_mut() {
        messages.sort_by_key(|m| m.offset);
    }
    let info = RecordingInfo {
        topic: args.topic.clone(),
        source: format!("eddy record --bootstrap {bootstrap} --topic {}", args.topic),
        partition_count: partitions,
        offset_ranges: ranges,
    };
    let rows = write_recording(&args.out, &info, &records)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "recorded {rows} records of {} ({partitions} partitions) in {seconds:.2} s to {}",
        args.topic,
        args.out.display()
    );
    Ok(Outcome::Success)
}

/// Every partition read to its end: the consumer's position there, which
/// steps over transaction markers and aborted records (the offsets no
/// record read_committed carries), at or past the end offset.
fn bounded_done(
    consumer: &impl Consumer,
    topic: &str,
    ranges: &[OffsetRange],
) -> Result<bool, CliError> {
    for range in ranges.iter().filter(|range| range.start < range.end) {
        let tp = TopicPartition::new(topic, range.partition);
        let position = consumer
            .position(&tp)
            .map_err(|e| CliError::Internal(format!("reading {tp}: {}", e.message)))?;
        if position.is_none_or(|position| position < range.end) {
            return Ok(false);
        }
    }
    Ok(true)
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
