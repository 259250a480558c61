//! Live mode's Prometheus metrics: the registry, what the worker's commands
//! and stats say about them ([`Observer`]), and the `/metrics` endpoint
//! (`tiny_http` on its own thread).
//!
//! The figures come from the worker core ([`WorkerStats`], the per-task
//! watermarks, the positions, the checkpoint in progress) as the driver's
//! control hook sees them before each command; consumer lag also needs the
//! end offsets, which live mode's lag poller reads off the hot path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use eddyline_engine::time::EventTime;
use eddyline_engine::transport::TopicPartition;
use eddyline_engine::worker::{Command, WorkerStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What `/metrics` answers with: the format prometheus-client writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: i32,
}

/// Every metric live mode exports (clones share their values).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub records_in: Counter,
    pub records_out: Counter,
    pub late_records: Counter,
    pub dead_letter_records: Counter,
    pub checkpoints_committed: Counter,
    pub transactions_committed: Counter,
    pub transactions_aborted: Counter,
    pub rebalances: Counter,
    pub partitions_lost: Counter,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub watermark_ms: Family<TaskLabels, Gauge>,
    pub watermark_lag_seconds: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    pub checkpoint_duration_seconds: Option<Histogram>,
    pub checkpoint_size_bytes: Gauge,
}

impl Metrics {
    /// The metrics, registered in a new registry.
    pub fn registered() -> (Metrics, Registry) {
        let metrics = Metrics {
            // 5 ms to about 80 s.
            checkpoint_duration_seconds: Some(Histogram::new(exponential_buckets(0.005, 2.0, 15))),
            ..Metrics::default()
        };
        let mut registry = Registry::default();
        let m = metrics.clone();
        registry.register(
            "eddy_records_in",
            "Input records processed by this worker's tasks",
            m.records_in,
        );
        registry.register(
            "eddy_records_out",
            "Output records handed to the producer (firings, late and dead-letter records)",
            m.records_out,
        );
        registry.register(
            "eddy_late_records",
            "Records sent to the job's late topic",
            m.late_records,
        );
        registry.register(
            "eddy_dead_letter_records",
            "Records sent to the job's dead-letter topic",
            m.dead_letter_records,
        );
        registry.register(
            "eddy_checkpoints_committed",
            "Checkpoints committed (snapshots, outputs and offsets)",
            m.checkpoints_committed,
        );
        registry.register(
            "eddy_transactions_committed",
            "Kafka transactions committed (exactly-once: one per checkpoint)",
            m.transactions_committed,
        );
        registry.register(
            "eddy_transactions_aborted",
            "Kafka transactions aborted (each rewinds the tasks to their last checkpoint)",
            m.transactions_aborted,
        );
        registry.register(
            "eddy_rebalances",
            "Partition assignments received from the consumer group",
            m.rebalances,
        );
        registry.register(
            "eddy_partitions_lost",
            "Times the worker lost its partitions without a revoke",
            m.partitions_lost,
        );
        registry.register(
            "eddy_consumer_lag_records",
            "End offset minus the worker's position, per owned input partition",
            m.consumer_lag,
        );
        registry.register(
            "eddy_watermark_ms",
            "Event-time watermark of each task (ms since the epoch)",
            m.watermark_ms,
        );
        registry.register(
            "eddy_watermark_lag_seconds",
            "Wall-clock time minus each task's watermark",
            m.watermark_lag_seconds,
        );
        registry.register(
            "eddy_checkpoint_duration_seconds",
            "From a checkpoint's first snapshot to its commit",
            m.checkpoint_duration_seconds
                .expect("the histogram is set above"),
        );
        registry.register(
            "eddy_checkpoint_size_bytes",
            "Snapshot bytes written by the last committed checkpoint",
            m.checkpoint_size_bytes,
        );
        (metrics, registry)
    }

    /// Sets the lag of the owned partitions from `ends` (end offsets) and
    /// `positions`; drops the series of partitions no longer owned.
    pub fn set_lag(
        &self,
        positions: &BTreeMap<TopicPartition, i64>,
        ends: &BTreeMap<TopicPartition, i64>,
        shown: &mut BTreeSet<TopicPartition>,
    ) {
        for gone in shown.iter().filter(|tp| !ends.contains_key(*tp)) {
            self.consumer_lag.remove(&partition_labels(gone));
        }
        shown.clear();
        for (tp, end) in ends {
            let Some(position) = positions.get(tp) else {
                continue;
            };
            self.consumer_lag
                .get_or_create(&partition_labels(tp))
                .set((end - position).max(0));
            shown.insert(tp.clone());
        }
    }
}

fn partition_labels(tp: &TopicPartition) -> PartitionLabels {
    PartitionLabels {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

/// The registry in the text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("writing to a String does not fail");
    text
}

/// Turns what the worker core reports into metric values: counters from
/// the stats' growth, checkpoint timing from the checkpoint in progress,
/// late and dead-letter counts from the records sent.
#[derive(Debug)]
pub struct Observer {
    metrics: Metrics,
    exactly_once: bool,
    late_topic: String,
    dead_letter_topic: Option<String>,
    last: WorkerStats,
    /// The checkpoint being timed: its number and start.
    checkpoint: Option<(u64, Instant)>,
    /// The size of each task's snapshot in it (a retried write once).
    snapshot_sizes: BTreeMap<i32, u64>,
    /// The last checkpoint number seen committed.
    done: u64,
    tasks_shown: BTreeSet<i32>,
}

impl Observer {
    pub fn new(
        metrics: Metrics,
        exactly_once: bool,
        late_topic: &str,
        dead_letter_topic: Option<&str>,
    ) -> Self {
        Self {
            metrics,
            exactly_once,
            late_topic: late_topic.to_string(),
            dead_letter_topic: dead_letter_topic.map(str::to_string),
            last: WorkerStats::default(),
            checkpoint: None,
            snapshot_sizes: BTreeMap::new(),
            done: 0,
            tasks_shown: BTreeSet::new(),
        }
    }

    /// The core's state before `command` is carried out, at `now`.
    pub fn on_command(
        &mut self,
        now: Instant,
        stats: WorkerStats,
        checkpoint_in_progress: Option<u64>,
        command: &Command,
    ) {
        if let Command::Send(records) = command {
            for record in records {
                if record.topic == self.late_topic {
                    self.metrics.late_records.inc();
                } else if self.dead_letter_topic.as_deref() == Some(record.topic.as_str()) {
                    self.metrics.dead_letter_records.inc();
                }
            }
        }
        let last = self.last;
        let grew = |now: u64, before: u64| now.saturating_sub(before);
        let m = &self.metrics;
        m.records_in.inc_by(grew(stats.records_in, last.records_in));
        m.records_out
            .inc_by(grew(stats.records_out, last.records_out));
        let committed = grew(stats.checkpoints_committed, last.checkpoints_committed);
        m.checkpoints_committed.inc_by(committed);
        if self.exactly_once {
            m.transactions_committed.inc_by(committed);
        }
        m.transactions_aborted
            .inc_by(grew(stats.transactions_aborted, last.transactions_aborted));
        m.rebalances.inc_by(grew(stats.rebalances, last.rebalances));
        m.partitions_lost
            .inc_by(grew(stats.partitions_lost, last.partitions_lost));
        if committed > 0 {
            if let Some((number, started)) = self.checkpoint.take() {
                let duration = now.saturating_duration_since(started);
                if let Some(histogram) = &m.checkpoint_duration_seconds {
                    histogram.observe(duration.as_secs_f64());
                }
                let bytes: u64 = std::mem::take(&mut self.snapshot_sizes).values().sum();
                m.checkpoint_size_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                self.done = number;
            } else if let Some(number) = checkpoint_in_progress {
                self.done = number;
            }
        }
        if stats.transactions_aborted > last.transactions_aborted {
            // An aborted checkpoint is not timed; the next one starts anew.
            self.checkpoint = None;
            self.snapshot_sizes.clear();
        }
        if let Some(number) = checkpoint_in_progress {
            // A committed checkpoint stays in progress while it collects.
            if self.checkpoint.is_none() && number > self.done {
                self.checkpoint = Some((number, now));
                self.snapshot_sizes.clear();
            }
        }
        if let (Some(_), Command::WriteSnapshot(id, bytes)) = (self.checkpoint, command) {
            self.snapshot_sizes.insert(id.task, bytes.len() as u64);
        }
        self.last = stats;
    }

    /// Sets the watermark gauges from the tasks' watermarks at wall-clock
    /// time `wall_ms` (ms since the epoch); tasks without a watermark yet
    /// (or finished) have no series.
    pub fn set_watermarks(&mut self, watermarks: &BTreeMap<i32, EventTime>, wall_ms: i64) {
        let m = &self.metrics;
        for gone in self.tasks_shown.iter().filter(|task| {
            !watermarks
                .get(*task)
                .is_some_and(|watermark| shown_watermark(*watermark))
        }) {
            m.watermark_ms.remove(&TaskLabels { task: *gone });
            m.watermark_lag_seconds.remove(&TaskLabels { task: *gone });
        }
        self.tasks_shown.clear();
        for (task, watermark) in watermarks {
            if !shown_watermark(*watermark) {
                continue;
            }
            let labels = TaskLabels { task: *task };
            m.watermark_ms.get_or_create(&labels).set(*watermark);
            let lag_ms = wall_ms.saturating_sub(*watermark);
            m.watermark_lag_seconds
                .get_or_create(&labels)
                .set(lag_ms as f64 / 1000.0);
            self.tasks_shown.insert(*task);
        }
    }
}

fn shown_watermark(watermark: EventTime) -> bool {
    watermark != EventTime::MIN && watermark != EventTime::MAX
}

/// Serves `GET /metrics` on `addr` from a thread of its own; returns the
/// address it listens on (the port chosen, for port 0).
pub fn serve(addr: SocketAddr, registry: Arc<Registry>) -> Result<SocketAddr, String> {
    let server = tiny_http::Server::http(addr)
        .map_err(|error| format!("cannot serve metrics on {addr}: {error}"))?;
    let local = server.server_addr().to_ip().unwrap_or(addr);
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
        .expect("a valid header");
    std::thread::Builder::new()
        .name("eddy-metrics".to_string())
        .spawn(move || {
            for request in server.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("");
                let response = if path == "/metrics" {
                    tiny_http::Response::from_string(render(&registry)).with_header(header.clone())
                } else {
                    tiny_http::Response::from_string("not found: try /metrics\n")
                        .with_status_code(404)
                };
                if let Err(error) = request.respond(response) {
                    tracing::debug!(%error, "metrics: answering a scrape failed");
                }
            }
        })
        .map_err(|error| format!("cannot start the metrics thread: {error}"))?;
    Ok(local)
}

/// How often consumer lag is read (end offsets are a request per
/// partition: off the hot path, at most this often).
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use eddyline_engine::checkpoint::SnapshotId;
    use eddyline_engine::transport::ProducerRecord;

    fn record(topic: &str) -> ProducerRecord {
        ProducerRecord {
            topic: topic.to_string(),
            partition: None,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    fn observer() -> (Observer, Metrics, Registry) {
        let (metrics, registry) = Metrics::registered();
        let observer = Observer::new(metrics.clone(), true, "late", Some("dead"));
        (observer, metrics, registry)
    }

    #[test]
    fn counters_follow_the_growth_of_the_worker_stats() {
        let (mut observer, metrics, _) = observer();
        let now = Instant::now();
        let mut stats = WorkerStats {
            records_in: 5,
            records_out: 2,
            rebalances: 1,
            ..WorkerStats::default()
        };
        observer.on_command(now, stats, None, &Command::InitTransactions);
        stats.records_in = 8;
        stats.transactions_aborted = 1;
        observer.on_command(now, stats, None, &Command::InitTransactions);
        assert_eq!(metrics.records_in.get(), 8);
        assert_eq!(metrics.records_out.get(), 2);
        assert_eq!(metrics.rebalances.get(), 1);
        assert_eq!(metrics.transactions_aborted.get(), 1);
    }

    #[test]
    fn late_and_dead_letter_records_are_counted_by_their_topic() {
        let (mut observer, metrics, _) = observer();
        let send = Command::Send(vec![
            record("out"),
            record("late"),
            record("dead"),
            record("late"),
        ]);
        observer.on_command(Instant::now(), WorkerStats::default(), None, &send);
        assert_eq!(metrics.late_records.get(), 2);
        assert_eq!(metrics.dead_letter_records.get(), 1);
    }

    #[test]
    fn a_checkpoint_is_timed_from_its_start_to_its_commit_with_the_bytes_it_wrote() {
        let (mut observer, metrics, registry) = observer();
        let start = Instant::now();
        let snapshot = |task: i32, len: usize| {
            let id = SnapshotId {
                job: "j".to_string(),
                task,
                checkpoint: 1,
                incarnation: 7,
            };
            Command::WriteSnapshot(id, std::sync::Arc::new(vec![0; len]))
        };
        let mut stats = WorkerStats::default();
        observer.on_command(start, stats, None, &Command::InitTransactions);
        observer.on_command(start, stats, Some(1), &snapshot(0, 30));
        // A retried write counts once.
        observer.on_command(start, stats, Some(1), &snapshot(0, 30));
        observer.on_command(start, stats, Some(1), &snapshot(1, 10));
        observer.on_command(
            start + Duration::from_millis(20),
            stats,
            Some(1),
            &Command::CommitTransaction,
        );
        stats.checkpoints_committed = 1;
        // Still in progress while collecting: the same checkpoint.
        observer.on_command(
            start + Duration::from_millis(250),
            stats,
            Some(1),
            &Command::Collect { task: 0, below: 1 },
        );
        observer.on_command(start + Duration::from_secs(1), stats, None, &Command::Flush);
        assert_eq!(metrics.checkpoint_size_bytes.get(), 40);
        assert_eq!(metrics.transactions_committed.get(), 1);
        let text = render(&registry);
        assert!(
            text.contains("eddy_checkpoint_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("eddy_checkpoint_duration_seconds_sum 0.25"),
            "{text}"
        );
        // The next checkpoint is timed on its own.
        observer.on_command(
            start + Duration::from_secs(2),
            stats,
            Some(2),
            &snapshot(0, 5),
        );
        stats.checkpoints_committed = 2;
        observer.on_command(start + Duration::from_secs(3), stats, None, &Command::Flush);
        assert_eq!(metrics.checkpoint_size_bytes.get(), 5);
        assert!(render(&registry).contains("eddy_checkpoint_duration_seconds_count 2"));
    }

    #[test]
    fn lag_is_end_minus_position_for_owned_partitions_only() {
        let (metrics, registry) = Metrics::registered();
        let tp0 = TopicPartition::new("in", 0);
        let tp1 = TopicPartition::new("in", 1);
        let positions = BTreeMap::from([(tp0.clone(), 3), (tp1.clone(), 10)]);
        let ends = BTreeMap::from([(tp0.clone(), 10), (tp1.clone(), 10)]);
        let mut shown = BTreeSet::new();
        metrics.set_lag(&positions, &ends, &mut shown);
        let text = render(&registry);
        assert!(
            text.contains(r#"eddy_consumer_lag_records{topic="in",partition="0"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eddy_consumer_lag_records{topic="in",partition="1"} 0"#),
            "{text}"
        );
        let ends = BTreeMap::from([(tp1.clone(), 12)]);
        metrics.set_lag(&positions, &ends, &mut shown);
        let text = render(&registry);
        assert!(!text.contains(r#"partition="0""#), "{text}");
        assert!(text.contains(r#"partition="1"} 2"#), "{text}");
    }

    #[test]
    fn watermarks_and_their_lag_are_shown_per_task_once_known() {
        let (mut observer, _, registry) = observer();
        let watermarks = BTreeMap::from([(0, 10_000), (1, EventTime::MIN)]);
        observer.set_watermarks(&watermarks, 12_500);
        let text = render(&registry);
        assert!(
            text.contains(r#"eddy_watermark_ms{task="0"} 10000"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eddy_watermark_lag_seconds{task="0"} 2.5"#),
            "{text}"
        );
        assert!(!text.contains(r#"task="1""#), "{text}");
        observer.set_watermarks(&BTreeMap::new(), 12_500);
        assert!(!render(&registry).contains(r#"task="0""#));
    }
}
