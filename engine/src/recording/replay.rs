//! A job over recordings as a bounded backfill: the worker's one driver
//! ([`crate::worker::driver::run`]) over a [`ParquetTransport`], bounded by
//! the recordings' end offsets, so each task's watermark goes to `i64::MAX`
//! at the end and every pending window fires. Per-partition order is the
//! recorded offset order. Not a second engine: the same core decides
//! checkpoints and transactions as on the simulator and on Kafka.

use crate::checkpoint::MemoryStore;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::worker::driver::{self, Clients};
use crate::worker::{Faithful, Stopped, WorkerCore, WorkerStats};

use super::Recording;
use super::transport::ParquetTransport;

/// Who the replaying worker is.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The worker id (its transactional id derives from it).
    pub worker_id: String,
    /// The incarnation (snapshot ids carry it).
    pub incarnation: u64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            worker_id: "replay".to_string(),
            incarnation: 1,
        }
    }
}

/// How a replay ended: the transport holds the committed outputs.
pub struct Replay {
    pub stopped: Stopped,
    pub stats: WorkerStats,
    pub transport: ParquetTransport,
}

/// The job's output topics: output, late, and dead-letter if it has one.
pub fn output_topics(job: &Job) -> Vec<String> {
    let mut topics = vec![job.output_topic().to_string(), job.late_topic().to_string()];
    topics.extend(job.dead_letter_topic().map(str::to_string));
    topics
}

/// Runs `job` over `inputs` (a recording of each of its input topics) to
/// the recordings' end. `progress` sees the worker's stats before each of
/// its commands. The outputs have as many partitions as the inputs.
pub async fn replay(
    job: Job,
    inputs: &[Recording],
    options: &ReplayOptions,
    progress: impl FnMut(&WorkerStats),
) -> Result<Replay> {
    replay_owned(job, inputs.to_vec(), options, progress).await
}

/// [`replay`] of recordings the caller gives up: their records move into
/// the transport's logs instead of being copied (`eddy replay`).
pub async fn replay_owned(
    job: Job,
    inputs: Vec<Recording>,
    options: &ReplayOptions,
    mut progress: impl FnMut(&WorkerStats),
) -> Result<Replay> {
    let mut partition_count = None;
    for topic in job.input_topics() {
        let Some(recording) = inputs.iter().find(|r| &r.info.topic == topic) else {
            let recorded: Vec<&str> = inputs.iter().map(|r| r.info.topic.as_str()).collect();
            return Err(Error::Invalid(format!(
                "job {} reads topic {topic}, and no recording is of it (recorded: {})",
                job.name(),
                recorded.join(", ")
            )));
        };
        let count = recording.info.partition_count;
        if partition_count.is_some_and(|known| known != count) {
            return Err(Error::Invalid(format!(
                "job {}'s inputs are co-partitioned, but topic {topic} has {count} partitions \
                 and another input {}",
                job.name(),
                partition_count.unwrap_or_default()
            )));
        }
        partition_count = Some(count);
    }
    let partitions = partition_count
        .ok_or_else(|| Error::Invalid(format!("job {} has no input topics", job.name())))?;
    let transport = ParquetTransport::from_owned_recordings(inputs).await?;
    for topic in output_topics(&job) {
        if transport.recorded(&topic).is_none() {
            transport.create_topic(&topic, partitions).await?;
        }
    }
    let ends = transport.end_offsets(job.input_topics())?;
    let config = job.worker_config(&options.worker_id, options.incarnation);
    let mut core = WorkerCore::new(job, config, Faithful)?;
    core.set_end_offsets(ends);
    let mut store = MemoryStore::new();
    let mut stats = WorkerStats::default();
    let stopped = driver::run(
        &transport,
        &mut store,
        core,
        Clients::new(&options.worker_id),
        |core, _command| {
            stats = core.stats();
            progress(&stats);
        },
    )
    .await
    .map_err(|e| Error::Invalid(format!("replay: {e}")))?;
    Ok(Replay {
        stopped,
        stats,
        transport,
    })
}
