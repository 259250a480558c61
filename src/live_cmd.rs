//! `eddy live --job JOB.toml --bootstrap HOST:PORT [--worker-id ID]
//! [--metrics-addr HOST:PORT] [--stop-at-end] [--session-timeout-ms MS]`:
//! runs a job's worker on a real Kafka cluster until SIGINT or SIGTERM
//! (or, with `--stop-at-end`, until the input as it was at start is
//! processed and committed), then takes a last checkpoint, commits it and
//! exits 0.
//!
//! Startup refuses, with one line on stderr and exit 2, a job file that
//! does not load (the transaction-timeout guard included), a broker that
//! does not answer within `EDDY_KAFKA_TIMEOUT_MS` (default 10 s), and an
//! input topic that does not exist; output topics that do not exist are
//! created. Then it logs (through `tracing`, to stderr, filtered by
//! `RUST_LOG`; the bootstrap address is logged, librdkafka's properties
//! never are). A worker that is fenced or fails exits 1.

mod metrics;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use eddyline_engine::checkpoint::{
    CheckpointStore, DirStore, TopicStore, TopicStoreOptions, ensure_topic,
};
use eddyline_engine::job::{Job, StoreSpec};
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ErrorCode, NewTopic, TopicPartition, Transport,
};
use eddyline_engine::worker::driver::{self, Clients};
use eddyline_engine::worker::{Delivery, Faithful, Stopped, WorkerCore};

use crate::{CliError, Outcome};
use metrics::{LAG_INTERVAL, Metrics, Observer};

/// Runs a job's worker on a real Kafka cluster until SIGINT/SIGTERM.
///
/// The worker joins the job's consumer group (the job's name): start the
/// same job on any number of machines and Kafka spreads the input
/// partitions over them. Input topics must exist; output topics (output,
/// late, dead-letter) and the checkpoint topic are created if missing,
/// with the inputs' partition count. librdkafka settings (security,
/// credentials) come from the properties file named by EDDY_KAFKA_CONFIG
/// and from EDDY_KAFKA_* variables, never from the command line; an
/// unreachable broker or a missing input topic is reported within
/// EDDY_KAFKA_TIMEOUT_MS (default 10 s). Logs go to stderr, filtered by
/// RUST_LOG (default "info"). Exit 0 after a graceful stop (a second
/// signal exits 1 at once, without the last checkpoint), 1 if the worker
/// was fenced or failed, 2 on bad usage or input.
#[derive(Args, Debug)]
pub struct LiveArgs {
    /// The job file (TOML; see docs/jobs.md).
    #[arg(long, value_name = "JOB.toml")]
    job: PathBuf,
    /// The Kafka cluster's bootstrap address(es).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap: String,
    /// This worker's id, stable across restarts: a restart with the same
    /// id fences the previous incarnation's transactions. Letters, digits,
    /// '.', '_' and '-'. Default: the host name and the job name.
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// A bounded run: read each input partition up to its end offset at
    /// start, fire every window as at the end of a backfill, commit, and
    /// exit 0 once every task this worker owns has committed its end and
    /// the job's group has committed the end of every input partition
    /// (several workers drain together; one that owns no partition keeps
    /// running).
    #[arg(long)]
    stop_at_end: bool,
    /// The consumer group session timeout: how long after this worker
    /// dies (kill -9, a lost machine) its partitions move to the others.
    /// The brokers refuse values outside group.min.session.timeout.ms
    /// (6 s by default) .. group.max.session.timeout.ms.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=3_600_000))]
    session_timeout_ms: u32,
}

/// The replication factor of the topics live mode creates, at most.
const REPLICATION_MAX: usize = 3;
/// How often the watermark gauges are refreshed, at most.
const GAUGE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How often a bounded run (`--stop-at-end`) asks whether the group has
/// committed the end of every input partition.
const END_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

pub fn run(args: LiveArgs) -> Result<Outcome, CliError> {
    let job = Job::from_file(&args.job).map_err(|error| CliError::BadInput(error.to_string()))?;
    if matches!(job.checkpoint_store(), StoreSpec::Sim) {
        return Err(CliError::BadInput(format!(
            "{}: checkpoint.store = \"sim\" is the simulator's store; live mode needs \
             {{ dir = \"path\" }} or {{ kafka = \"topic\" }}",
            args.job.display()
        )));
    }
    let worker_id = match &args.worker_id {
        Some(id) => check_worker_id(id)?,
        None => default_worker_id(&host_name(), job.name()),
    };
    let metrics_addr = args
        .metrics_addr
        .as_deref()
        .map(parse_metrics_addr)
        .transpose()?;
    let (config, runtime) = crate::kafka_session(&args.bootstrap)?;
    let options = Options {
        worker_id,
        metrics_addr,
        stop_at_end: args.stop_at_end,
        session_timeout_ms: args.session_timeout_ms,
    };
    runtime.block_on(live(job, options, config))
}

/// How this worker runs, from the command line.
struct Options {
    worker_id: String,
    metrics_addr: Option<SocketAddr>,
    stop_at_end: bool,
    session_timeout_ms: u32,
}

/// What was made ready before the worker starts.
struct Ready {
    transport: KafkaTransport,
    partitions: i32,
    replication: i16,
    /// With `--stop-at-end`: each input partition's end offset at start.
    ends: Option<BTreeMap<TopicPartition, i64>>,
}

async fn live(job: Job, options: Options, config: KafkaConfig) -> Result<Outcome, CliError> {
    let ready = prepare(&job, config, options.stop_at_end).await?;
    let worker_id = options.worker_id.clone();
    // Logs start once the checks that answer in one line have passed.
    init_logs();
    let bootstrap = ready.transport.config().bootstrap().to_string();
    let (metrics, registry) = Metrics::registered();
    if let Some(addr) = options.metrics_addr {
        let local = metrics::serve(addr, Arc::new(registry)).map_err(CliError::BadInput)?;
        tracing::info!(addr = %local, "serving metrics at /metrics");
    }
    let incarnation = incarnation();
    tracing::info!(
        job = job.name(),
        %bootstrap,
        worker_id = %worker_id,
        incarnation = format!("{incarnation:016x}"),
        delivery = ?job.delivery(),
        "starting"
    );
    match job.checkpoint_store().clone() {
        StoreSpec::Dir(dir) => {
            tracing::info!(dir = %dir.display(), "checkpoints in a directory");
            let mut store = DirStore::new(dir);
            run_worker(&job, &ready, &mut store, &options, incarnation, metrics).await
        }
        StoreSpec::Kafka(topic) => {
            let admin = ready.transport.admin().await.map_err(internal)?;
            let partitions = ensure_topic(&admin, &topic, ready.partitions, ready.replication)
                .await
                .map_err(|error| CliError::Internal(error.to_string()))?;
            tracing::info!(%topic, partitions, "checkpoints in a compacted topic");
            let mut store = TopicStore::new(
                ready.transport.clone(),
                topic,
                partitions,
                TopicStoreOptions::default(),
            )
            .map_err(|error| CliError::Internal(error.to_string()))?;
            run_worker(&job, &ready, &mut store, &options, incarnation, metrics).await
        }
        StoreSpec::Sim => unreachable!("refused before the runtime started"),
    }
}

/// Connects, checks the inputs and creates the missing outputs.
async fn prepare(job: &Job, config: KafkaConfig, stop_at_end: bool) -> Result<Ready, CliError> {
    let bootstrap = config.bootstrap().to_string();
    let transport = KafkaTransport::connect(config)
        .await
        .map_err(|error| CliError::BadInput(error.message))?;
    let admin = transport
        .admin()
        .await
        .map_err(|error| CliError::BadInput(error.message))?;
    let mut partitions = 0;
    for topic in job.input_topics() {
        match admin.partition_count(topic).await {
            Ok(count) => partitions = partitions.max(count),
            Err(error) if error.code == ErrorCode::UnknownTopicOrPartition => {
                return Err(CliError::BadInput(format!(
                    "input topic '{topic}' does not exist at {bootstrap}: create it first"
                )));
            }
            Err(error) => return Err(CliError::BadInput(error.message)),
        }
    }
    let brokers = transport
        .cluster_metadata(None)
        .await
        .map_err(|error| CliError::BadInput(error.message))?
        .brokers
        .len();
    let replication = i16::try_from(brokers.clamp(1, REPLICATION_MAX)).unwrap_or(1);
    let mut outputs = vec![job.output_topic(), job.late_topic()];
    outputs.extend(job.dead_letter_topic());
    outputs.dedup();
    for topic in outputs {
        let new_topic = NewTopic {
            name: topic.to_string(),
            partitions,
            replication_factor: replication,
            configs: Vec::new(),
        };
        match admin.create_topic(&new_topic).await {
            Ok(()) => note_for_log(format!(
                "created output topic '{topic}' ({partitions} partitions, replication {replication})"
            )),
            Err(error) if error.code == ErrorCode::TopicAlreadyExists => {}
            Err(error) => {
                return Err(CliError::BadInput(format!(
                    "cannot create output topic '{topic}': {}",
                    error.message
                )));
            }
        }
    }
    let ends = if stop_at_end {
        Some(input_ends(&transport, job, partitions).await?)
    } else {
        None
    };
    Ok(Ready {
        transport,
        partitions,
        replication,
        ends,
    })
}

/// The end offset of every input partition now (0 for an empty one).
async fn input_ends(
    transport: &KafkaTransport,
    job: &Job,
    partitions: i32,
) -> Result<BTreeMap<TopicPartition, i64>, CliError> {
    let config = ConsumerConfig::new("eddy-live-ends", None);
    let mut consumer = transport
        .consumer(&config)
        .await
        .map_err(|error| CliError::BadInput(error.message))?;
    let mut ends = BTreeMap::new();
    for topic in job.input_topics() {
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic.clone(), partition);
            let (start, end) = consumer
                .offsets_range(&tp)
                .await
                .map_err(|error| CliError::BadInput(error.message))?;
            // A partition with nothing to read (its log starts at its end:
            // never written, or all of it expired) ends at 0, so its task
            // is at its end from wherever it starts: its consumer would
            // never report a position there, as librdkafka has none until
            // it consumes something.
            ends.insert(tp, if start < end { end } else { 0 });
        }
    }
    Ok(ends)
}

thread_local! {
    /// Lines to log once logging starts (the startup checks print nothing
    /// but their one-line failure).
    static STARTUP_NOTES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn note_for_log(note: String) {
    STARTUP_NOTES.with(|notes| notes.borrow_mut().push(note));
}

async fn run_worker<S: CheckpointStore>(
    job: &Job,
    ready: &Ready,
    store: &mut S,
    options: &Options,
    incarnation: u64,
    metrics: Metrics,
) -> Result<Outcome, CliError> {
    let worker_id = options.worker_id.as_str();
    let mut config = job.worker_config(worker_id, incarnation);
    config.end_offsets = ready.ends.clone();
    if let Some(ends) = &ready.ends {
        let total: i64 = ends.values().sum();
        tracing::info!(
            partitions = ends.len(),
            records = total,
            "bounded run: up to the end offsets at start"
        );
    }
    let exactly_once = config.delivery == Delivery::ExactlyOnce;
    let core = WorkerCore::new(job.clone(), config, Faithful)
        .map_err(|error| CliError::BadInput(error.to_string()))?;
    let transport = &ready.transport;
    let stop = Rc::new(Cell::new(false));
    // Bounded runs: every task this worker owns has committed its end.
    let own_finished = Rc::new(Cell::new(false));
    let bounded = ready.ends.is_some();
    let positions = Rc::new(RefCell::new(BTreeMap::new()));
    let mut observer = Observer::new(
        metrics.clone(),
        exactly_once,
        job.late_topic(),
        job.dead_letter_topic(),
    );
    let mut stop_requested = false;
    let mut gauges_at: Option<Instant> = None;
    let control = {
        let stop = Rc::clone(&stop);
        let own_finished = Rc::clone(&own_finished);
        let positions = Rc::clone(&positions);
        move |core: &mut WorkerCore<Job, Faithful>, command: &eddyline_engine::worker::Command| {
            let now = Instant::now();
            observer.on_command(now, core.stats(), core.checkpoint_in_progress(), command);
            if gauges_at.is_none_or(|at| now.duration_since(at) >= GAUGE_INTERVAL) {
                gauges_at = Some(now);
                observer.set_watermarks(&core.task_watermarks(), wall_ms());
                *positions.borrow_mut() = core.positions();
            }
            if bounded {
                let owned: BTreeSet<i32> = core.positions().keys().map(|tp| tp.partition).collect();
                own_finished.set(!owned.is_empty() && core.finished_tasks() == owned);
            }
            if stop.get() && !stop_requested {
                stop_requested = true;
                tracing::info!("stopping: a last checkpoint, then exit");
                core.request_stop();
            }
        }
    };
    let mut clients = Clients::new(worker_id);
    clients.consumer.session_timeout_ms = options.session_timeout_ms;
    clients.consumer.heartbeat_interval_ms = (options.session_timeout_ms / 5).clamp(1, 3_000);
    let worker = driver::run(transport, store, core, clients, control);
    let group = job.name().to_string();
    let ends = ready.ends.as_ref().map(|ends| (group, ends.clone()));
    let side = side_tasks(
        transport,
        worker_id,
        &stop,
        &positions,
        &metrics,
        ends.map(|(group, ends)| Bounded {
            group,
            ends,
            own_finished: Rc::clone(&own_finished),
        }),
    );
    let stopped = tokio::select! {
        stopped = worker => stopped,
        never = side => match never {},
    };
    match stopped {
        Ok(Stopped::Requested) | Ok(Stopped::Finished) => {
            tracing::info!(
                records_in = metrics.records_in.get(),
                records_out = metrics.records_out.get(),
                checkpoints = metrics.checkpoints_committed.get(),
                "stopped after a last checkpoint"
            );
            Ok(Outcome::Success)
        }
        Ok(Stopped::Fenced(error)) => Err(CliError::Internal(format!(
            "fenced by a newer incarnation of worker {worker_id}: {}",
            error.message
        ))),
        Ok(Stopped::Failed(reason)) => Err(CliError::Internal(format!("worker failed: {reason}"))),
        Err(error) => Err(internal(error)),
    }
}

/// Signals and the lag poller, beside the worker; never ends by itself.
async fn side_tasks(
    transport: &KafkaTransport,
    worker_id: &str,
    stop: &Cell<bool>,
    positions: &RefCell<BTreeMap<TopicPartition, i64>>,
    metrics: &Metrics,
    bounded: Option<Bounded>,
) -> std::convert::Infallible {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut lag_consumer = None;
    let mut lag_shown = BTreeSet::new();
    let mut tick = tokio::time::interval(LAG_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut end_tick = tokio::time::interval(END_CHECK_INTERVAL);
    end_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut group_consumer = None;
    let mut signalled = false;
    loop {
        tokio::select! {
            _ = end_tick.tick(), if bounded.is_some() && !stop.get() => {
                let Some(Bounded { group, ends, own_finished }) = &bounded else { continue };
                if !own_finished.get() {
                    continue;
                }
                if group_consumer.is_none() {
                    let config = ConsumerConfig::new(format!("{worker_id}-ends"), Some(group.clone()));
                    group_consumer = transport.consumer(&config).await.ok();
                }
                if let Some(consumer) = group_consumer.as_mut() {
                    if group_at_end(consumer, ends).await {
                        tracing::info!(%group, "this worker's tasks finished, and the group committed the end of every input partition");
                        stop.set(true);
                    }
                }
            }
            Some(()) = recv(&mut terminate) => note_stop(stop, &mut signalled, "SIGTERM"),
            Some(()) = recv(&mut interrupt) => note_stop(stop, &mut signalled, "SIGINT"),
            _ = tick.tick() => {
                let owned = positions.borrow().clone();
                if lag_consumer.is_none() {
                    let config = ConsumerConfig::new(format!("{worker_id}-lag"), None);
                    match transport.consumer(&config).await {
                        Ok(consumer) => lag_consumer = Some(consumer),
                        Err(error) => tracing::warn!(error = %error.message, "lag: no consumer"),
                    }
                }
                if let Some(consumer) = lag_consumer.as_mut() {
                    let mut ends = BTreeMap::new();
                    for tp in owned.keys() {
                        match consumer.offsets_range(tp).await {
                            Ok((_, end)) => {
                                ends.insert(tp.clone(), end);
                            }
                            Err(error) => {
                                tracing::debug!(partition = %tp, error = %error.message, "lag: no end offset");
                            }
                        }
                    }
                    metrics.set_lag(&owned, &ends, &mut lag_shown);
                }
            }
        }
    }
}

/// A bounded run's stop condition, beside the worker: a worker stops once
/// every task it owns has committed its end (its last windows fired) and
/// the group has committed the end of every input partition. (A worker
/// that owns nothing keeps running: a partition it would stop without
/// could move to it.) A worker that owns every partition stops by itself
/// ([`Stopped::Finished`]).
struct Bounded {
    group: String,
    ends: BTreeMap<TopicPartition, i64>,
    own_finished: Rc<Cell<bool>>,
}

/// Whether the group's committed offsets reached `ends` everywhere.
async fn group_at_end(
    consumer: &mut <KafkaTransport as Transport>::Consumer,
    ends: &BTreeMap<TopicPartition, i64>,
) -> bool {
    let partitions: Vec<TopicPartition> = ends.keys().cloned().collect();
    match consumer.committed(&partitions).await {
        Ok(committed) => partitions
            .iter()
            .zip(committed)
            .all(|(tp, committed)| committed.map_or(0, |c| c.offset) >= ends[tp]),
        Err(error) => {
            tracing::debug!(error = %error.message, "bounded run: no committed offsets");
            false
        }
    }
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// The first signal asks for a graceful stop; a second one ends the process
/// at once (exit 1): the open transaction is aborted by the coordinator or
/// the next incarnation, and a restart recovers from the last checkpoint.
fn note_stop(stop: &Cell<bool>, signalled: &mut bool, name: &str) {
    if std::mem::replace(signalled, true) {
        tracing::warn!(
            signal = name,
            "second signal: exiting without a last checkpoint (a restart recovers from the last one)"
        );
        std::process::exit(1);
    } else {
        tracing::info!(signal = name, "stop requested");
        stop.set(true);
    }
}

fn internal(error: eddyline_engine::transport::TransportError) -> CliError {
    CliError::Internal(error.message)
}

/// Logs to stderr, filtered by RUST_LOG (`info` by default; directives as
/// `target=level,...`).
fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, bad) = parse_log_filter(&directives);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish()
        .with(filter);
    let _ = subscriber.try_init();
    if bad {
        tracing::warn!(rust_log = %directives, "RUST_LOG is not a filter (target=level,...): logging at info");
    }
    STARTUP_NOTES.with(|notes| {
        for note in notes.borrow_mut().drain(..) {
            tracing::info!("{note}");
        }
    });
}

/// The log filter of `RUST_LOG`; `info` if empty; `info` and `true` if it
/// does not parse.
fn parse_log_filter(directives: &str) -> (tracing_subscriber::filter::Targets, bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let info = Targets::new().with_default(LevelFilter::INFO);
    if directives.trim().is_empty() {
        return (info, false);
    }
    match directives.parse::<Targets>() {
        Ok(targets) => (targets, false),
        Err(_) => (info, true),
    }
}

/// The default worker id: the host name and the job name, reduced to the
/// characters a transactional id and a client id take, so the same job on
/// the same host gets the same id on every start.
fn default_worker_id(host: &str, job: &str) -> String {
    let clean = |text: &str| -> String {
        text.trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let host = clean(host);
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    format!("{host}-{}", clean(job))
}

fn check_worker_id(id: &str) -> Result<String, CliError> {
    let valid = !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(id.to_string())
    } else {
        Err(CliError::BadInput(format!(
            "bad --worker-id {id:?}: 1 to 200 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn parse_metrics_addr(text: &str) -> Result<SocketAddr, CliError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            CliError::BadInput(format!(
                "bad --metrics-addr {text:?}: expected HOST:PORT (e.g. 127.0.0.1:9464)"
            ))
        })
}

/// The host name, from the kernel (empty if it cannot be read).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// Differs per process start: the wall clock and the process id.
fn incarnation() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_worker_id_is_the_host_and_the_job_and_stable() {
        assert_eq!(
            default_worker_id("node-7.example", "click-counts"),
            "node-7.example-click-counts"
        );
        assert_eq!(
            default_worker_id("node-7.example", "click-counts"),
            default_worker_id("node-7.example", "click-counts")
        );
        assert_ne!(
            default_worker_id("node-7", "a"),
            default_worker_id("node-8", "a")
        );
        assert_eq!(default_worker_id(" my host\n", "j"), "my-host-j");
        assert_eq!(default_worker_id("", "j"), "localhost-j");
        assert!(check_worker_id(&default_worker_id("h\u{e9}", "j")).is_ok());
    }

    #[test]
    fn a_worker_id_takes_only_id_characters() {
        assert!(check_worker_id("w-1.a_b").is_ok());
        assert!(check_worker_id("").is_err());
        assert!(check_worker_id("a b").is_err());
        assert!(check_worker_id(&"x".repeat(201)).is_err());
        let error = check_worker_id("a/b").unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn the_metrics_address_is_host_and_port() {
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert!(parse_metrics_addr("localhost:0").is_ok());
        assert!(parse_metrics_addr("9464").is_err());
        assert_eq!(parse_metrics_addr("nope").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn incarnations_differ_between_starts() {
        let first = incarnation();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_ne!(first, incarnation());
    }

    #[test]
    fn rust_log_is_parsed_as_targets_and_falls_back_to_info() {
        assert!(!parse_log_filter("").1);
        assert!(!parse_log_filter("debug,rdkafka=warn").1);
        assert!(parse_log_filter("=== not a filter").1);
    }

    #[test]
    fn arguments_are_parsed_with_the_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            live: LiveArgs,
        }
        let cli = Cli::try_parse_from(["eddy", "--job", "j.toml", "--bootstrap", "b:9092"])
            .expect("parses");
        assert_eq!(cli.live.job, PathBuf::from("j.toml"));
        assert_eq!(cli.live.bootstrap, "b:9092");
        assert!(cli.live.worker_id.is_none() && cli.live.metrics_addr.is_none());
        assert!(Cli::try_parse_from(["eddy", "--job", "j.toml"]).is_err());
    }
}
