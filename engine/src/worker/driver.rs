//! The one async driver of the worker: it carries out the core's commands
//! over any [`Transport`] and [`CheckpointStore`] and hands back their
//! answers. It decides nothing: every decision is the core's.
//!
//! The same driver runs on the simulator (inside a turmoil host, where
//! `tokio::time` is the simulated clock), on real Kafka, and over
//! recordings. Processing time is the time since the driver started.

use crate::checkpoint::CheckpointStore;
use crate::transport::{
    Consumer, ConsumerConfig, ErrorCode, ErrorKind, GroupMetadata, Producer, ProducerConfig,
    Transport, TransportError, TransportResult,
};

use super::core::{Command, Delivery, Stopped, WorkerCore};
use super::logic::JobLogic;
use super::mutant::Mutants;

/// The client settings a worker's consumer and producer start from; the
/// driver fills in the group id, the transactional id and the isolation.
#[derive(Clone, Debug)]
pub struct Clients {
    pub consumer: ConsumerConfig,
    pub producer: ProducerConfig,
}

impl Clients {
    /// Defaults for a worker named `client_id`.
    pub fn new(client_id: &str) -> Self {
        Self {
            consumer: ConsumerConfig::new(client_id, None),
            producer: ProducerConfig::new(client_id, None),
        }
    }
}

/// Runs the worker until it stops, on processing time measured from now.
/// `control` sees the core and its next command before the command is
/// carried out: it may ask for a stop
/// ([`WorkerCore::request_stop`]: a last checkpoint, then
/// [`Stopped::Requested`]) or bound the input
/// ([`WorkerCore::set_end_offsets`]). Returns why
/// it stopped; its clients are closed (the consumer leaves the group) unless
/// it was fenced or failed, when they are dropped as a crashed process's.
pub async fn run<T, S, J, M>(
    transport: &T,
    store: &mut S,
    mut core: WorkerCore<J, M>,
    clients: Clients,
    mut control: impl FnMut(&mut WorkerCore<J, M>, &Command),
) -> TransportResult<Stopped>
where
    T: Transport,
    S: CheckpointStore,
    J: JobLogic,
    M: Mutants,
{
    let mut consumer_config = clients.consumer;
    consumer_config.group_id = Some(core.group_id());
    let mut producer_config = clients.producer;
    producer_config.transactional_id = core.transactional_id();
    producer_config.transaction_timeout_ms =
        u32::try_from(core.config().transaction_timeout.as_millis()).unwrap_or(u32::MAX);
    let mut consumer = transport.consumer(&consumer_config).await?;
    let mut producer = transport.producer(&producer_config).await?;
    let group_id = core.group_id();
    let exactly_once = core.config().delivery == Delivery::ExactlyOnce;
    // Processing time: tokio's clock, which turmoil simulates inside a
    // host (the determinism scan lists this site), the real one live.
    let started = tokio::time::Instant::now();
    let now = || started.elapsed();
    let mut command = core.start(now());
    loop {
        // A turn for the runtime's other tasks between commands: calls that
        // complete at once (the in-memory transport) would otherwise never
        // let a signal handler, a supervisor or a timer run.
        tokio::task::yield_now().await;
        control(&mut core, &command);
        command = match command {
            Command::InitTransactions => {
                let result = producer.init_transactions().await;
                core.on_done(now(), result)
            }
            Command::Subscribe(topics) => {
                let result = consumer.subscribe(&topics).await;
                core.on_done(now(), result)
            }
            Command::Poll {
                max_events,
                timeout,
            } => {
                let result = consumer.poll(max_events, timeout).await;
                core.on_polled(now(), result)
            }
            Command::Positions(partitions) => {
                let result = partitions
                    .iter()
                    .map(|partition| consumer.position(partition))
                    .collect();
                core.on_positions(now(), result)
            }
            Command::Committed(partitions) => {
                let result = consumer.committed(&partitions).await;
                core.on_committed(now(), result)
            }
            Command::ReadSnapshot(id) => {
                let result = store.read(&id).await;
                core.on_snapshot_read(now(), result)
            }
            Command::Seek(seeks) => {
                let result = seek_all(&mut consumer, &seeks).await;
                core.on_done(now(), result)
            }
            Command::BeginTransaction => {
                let result = producer.begin_transaction().await;
                core.on_done(now(), result)
            }
            Command::Send(records) => {
                // Delivery is judged by the commit (or, at-least-once, the
                // flush), which fails if any record failed.
                let result = records
                    .into_iter()
                    .try_for_each(|record| producer.send(record).map(drop));
                core.on_done(now(), result)
            }
            Command::WriteSnapshot(id, bytes) => {
                let result = store.write(&id, &bytes).await;
                core.on_snapshot_written(now(), result)
            }
            Command::SendOffsets {
                offsets,
                generation_fencing,
            } => {
                let result = match group(&consumer, &group_id, generation_fencing) {
                    Ok(group) => producer.send_offsets_to_transaction(&offsets, &group).await,
                    Err(error) => Err(error),
                };
                core.on_done(now(), result)
            }
            Command::CommitTransaction => {
                let result = producer.commit_transaction().await;
                core.on_done(now(), result)
            }
            Command::AbortTransaction => {
                let result = producer.abort_transaction().await;
                core.on_done(now(), result)
            }
            Command::Flush => {
                let result = producer.flush().await;
                core.on_done(now(), result)
            }
            Command::CommitOffsets(offsets) => {
                let result = consumer.commit(&offsets).await;
                core.on_done(now(), result)
            }
            Command::Collect { task, below } => {
                let job = core.group_id();
                let result = store.collect(&job, task, below).await;
                core.on_collected(now(), result)
            }
            Command::Stop(stopped) => {
                if matches!(stopped, Stopped::Finished | Stopped::Requested) {
                    if exactly_once {
                        drop(producer);
                    } else {
                        producer.flush().await?;
                    }
                    consumer.close().await?;
                }
                return Ok(stopped);
            }
        };
    }
}

async fn seek_all<C: Consumer>(
    consumer: &mut C,
    seeks: &[(crate::transport::TopicPartition, i64)],
) -> TransportResult<()> {
    for (partition, offset) in seeks {
        consumer.seek(partition, *offset).await?;
    }
    Ok(())
}

/// The group metadata a transactional offset commit carries: the member's
/// generation (KIP-447), or — `generation_fencing` off, a mutant — the
/// group id alone, which the coordinator accepts from anyone.
fn group<C: Consumer>(
    consumer: &C,
    group_id: &str,
    generation_fencing: bool,
) -> TransportResult<GroupMetadata> {
    if !generation_fencing {
        return Ok(GroupMetadata {
            group_id: group_id.to_string(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        });
    }
    consumer.group_metadata().ok_or_else(|| {
        TransportError::new(
            ErrorKind::Abortable,
            ErrorCode::UnknownMemberId,
            "offsets to send but the consumer is not a group member",
        )
    })
}
