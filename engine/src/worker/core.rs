//! The worker's state machine, free of I/O: tasks, positions, transactions,
//! checkpoints, recovery and fencing. The async driver ([`super::driver`])
//! carries out each [`Command`] over a `Transport` and a checkpoint store
//! and hands the answer back through the `on_*` method that matches it;
//! tests hand it fake answers.
//!
//! One command is outstanding at a time, and every command has exactly one
//! answer method, taking that call's result type: [`Command::Poll`] →
//! [`WorkerCore::on_polled`], [`Command::Positions`] →
//! [`WorkerCore::on_positions`], [`Command::Committed`] →
//! [`WorkerCore::on_committed`], [`Command::ReadSnapshot`] →
//! [`WorkerCore::on_snapshot_read`], [`Command::WriteSnapshot`] →
//! [`WorkerCore::on_snapshot_written`], [`Command::Collect`] →
//! [`WorkerCore::on_collected`], and every call without a value
//! ([`Command::InitTransactions`], `Subscribe`, `Seek`, `BeginTransaction`,
//! `Send`, `SendOffsets`, `CommitTransaction`, `AbortTransaction`, `Flush`,
//! `CommitOffsets`) → [`WorkerCore::on_done`]. Answering another command
//! than the outstanding one is a driver bug and panics.
//!
//! # The rules kept here
//!
//! - **Tasks.** Task `p` owns partition `p` of every input topic; the
//!   worker forms it when the group assigns it all of them (inputs are
//!   co-partitioned; an assignment that splits a task stops the worker).
//! - **Recovery.** A new task reads its committed offsets; their metadata
//!   names checkpoint `N` of incarnation `X`; the task is restored from that
//!   snapshot and the consumer seeked to the offsets. No committed offsets:
//!   an empty task from offset 0. Offsets without the worker's metadata, a
//!   missing or corrupt snapshot, or inputs of one task naming different
//!   checkpoints stop the worker: a task never silently starts empty.
//! - **Checkpoint N** (every checkpoint interval of processing time, before
//!   the partitions are revoked, when a bounded input ends and on a
//!   requested stop): write each task's snapshot `N` to the store; produce
//!   what the store asks to be produced (the topic store's chunks); send the
//!   positions with `checkpoint=N` in their metadata to the transaction,
//!   fenced by the group generation; commit. The commit is the one atomic
//!   point. After it the older snapshots of each task are collected.
//! - **Abort means rewind.** When a transaction aborts (an abortable error
//!   anywhere, a failed send, a snapshot that could not be written), every
//!   task goes back to its last committed snapshot and the consumer to its
//!   committed offsets: no state whose outputs were aborted survives.
//! - **Fencing.** A producer fenced by a newer incarnation stops the worker
//!   at once (nothing more may be written). A generation that the group
//!   coordinator rejects makes the transaction abortable: the worker aborts,
//!   rewinds, and drops the tasks when the rebalance reports them revoked or
//!   lost. Lost partitions are never committed for.
//! - **Retries are bounded.** A retriable or timed-out call is tried again
//!   up to `retries_max` times; then the worker stops with the error, and
//!   its restart recovers from the committed checkpoint.
//! - **At-least-once**: the same checkpoints without a transaction: snapshots,
//!   then flush the outputs, then commit the offsets. A crash between flush
//!   and commit repeats outputs, by design.
//! - **Bounded input**: a task whose positions reached the end offsets is
//!   finished (watermark `i64::MAX`, every window fires) and checkpointed;
//!   messages at or past an end offset are not processed. A poll that
//!   brings nothing while a task is short of its end asks the consumer for
//!   its positions: a partition whose log ends in a transaction marker (or
//!   aborted records) has no record at `end - 1`, and only the consumer's
//!   position, which steps over those, shows that the end was reached. The
//!   worker stops when it owns and has committed every partition of the
//!   input, finished.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::SnapshotId;
use crate::error::{Error, Result};
use crate::time::EventTime;
use crate::transport::{
    ConsumerEvent, ErrorKind, Message, OffsetAndMetadata, ProducerRecord, TopicPartition,
    TransportError, TransportResult,
};

use super::logic::{JobLogic, TaskLogic};
use super::mutant::{Mutant, Mutants};

/// How outputs and offsets are committed (a job's `delivery`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Outputs, offsets and checkpoint ids commit in one transaction.
    #[default]
    ExactlyOnce,
    /// No transaction: outputs are flushed, then offsets committed.
    AtLeastOnce,
}

/// What the worker core needs to know about its run.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Stable across restarts: the transactional id derives from it, so a
    /// restarted worker fences its previous incarnation.
    pub worker_id: String,
    /// Unique per start of the worker (the driver's caller picks it: the
    /// seed in the simulator, the clock and process id live). Snapshot ids
    /// carry it, so a zombie never overwrites a newer owner's snapshot.
    pub incarnation: u64,
    pub delivery: Delivery,
    pub checkpoint_interval: Duration,
    pub transaction_timeout: Duration,
    /// How long a failed worker may take to come back and commit.
    pub restart_budget: Duration,
    pub poll_max_events: usize,
    pub poll_timeout: Duration,
    /// How often a retriable or timed-out call is tried again.
    pub retries_max: u32,
    /// A bounded run: the end offset of every input partition.
    pub end_offsets: Option<BTreeMap<TopicPartition, i64>>,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>, incarnation: u64, delivery: Delivery) -> Self {
        Self {
            worker_id: worker_id.into(),
            incarnation,
            delivery,
            checkpoint_interval: Duration::from_secs(10),
            transaction_timeout: Duration::from_secs(60),
            restart_budget: Duration::from_secs(30),
            poll_max_events: 500,
            poll_timeout: Duration::from_millis(100),
            retries_max: 10,
            end_offsets: None,
        }
    }
}

/// What the driver is to do next; see the module doc for each answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    InitTransactions,
    Subscribe(Vec<String>),
    Poll {
        max_events: usize,
        timeout: Duration,
    },
    /// The consumer's positions of these partitions (bounded input only).
    Positions(Vec<TopicPartition>),
    /// The group's committed offsets of these partitions.
    Committed(Vec<TopicPartition>),
    ReadSnapshot(SnapshotId),
    Seek(Vec<(TopicPartition, i64)>),
    BeginTransaction,
    Send(Vec<ProducerRecord>),
    /// The bytes are shared with the checkpoint in progress and, once it
    /// commits, with the tasks' committed state: never copied in the core.
    WriteSnapshot(SnapshotId, Arc<Vec<u8>>),
    /// `send_offsets_to_transaction` with the consumer's group metadata;
    /// without `generation_fencing` (a mutant only) with the group id
    /// alone, as clients did before KIP-447.
    SendOffsets {
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        generation_fencing: bool,
    },
    CommitTransaction,
    AbortTransaction,
    Flush,
    /// Commit offsets outside any transaction.
    CommitOffsets(Vec<(TopicPartition, OffsetAndMetadata)>),
    /// Remove the task's snapshots older than checkpoint `below`.
    Collect {
        task: i32,
        below: u64,
    },
    /// The worker is done; the driver closes its clients.
    Stop(Stopped),
}

/// Why the worker stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Stopped {
    /// A bounded input was consumed, finished and committed.
    Finished,
    /// A stop was requested; the last checkpoint committed.
    Requested,
    /// Its producer was fenced: a newer incarnation of this worker took
    /// over, or the coordinator aborted its transaction at the transaction
    /// timeout (which bumps the producer's epoch; librdkafka reports that
    /// as fencing too). Nothing more may be written by this incarnation; a
    /// restart (a new incarnation) recovers from the committed checkpoint.
    Fenced(TransportError),
    /// It cannot go on: a transport or store failure past its retries, a
    /// missing or corrupt snapshot, a bad record under `fail`.
    Failed(String),
}

/// What the worker did so far (for tests, logs and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub records_in: u64,
    pub records_out: u64,
    pub checkpoints_committed: u64,
    pub transactions_aborted: u64,
    /// Times every task went back to its last committed checkpoint.
    pub rewinds: u64,
    /// Tasks restored from a snapshot named by committed offsets.
    pub tasks_restored: u64,
    /// Tasks started empty (no committed offsets).
    pub tasks_started_empty: u64,
    pub snapshot_bytes_written: u64,
    /// Assignments received (each rebalance ends in one).
    pub rebalances: u64,
    /// Times the worker lost its partitions without a revoke.
    pub partitions_lost: u64,
}

impl WorkerStats {
    /// Adds another worker's (or incarnation's) counts to these.
    pub fn add(&mut self, other: &WorkerStats) {
        let WorkerStats {
            records_in,
            records_out,
            checkpoints_committed,
            transactions_aborted,
            rewinds,
            tasks_restored,
            tasks_started_empty,
            snapshot_bytes_written,
            rebalances,
            partitions_lost,
        } = other;
        self.records_in += records_in;
        self.records_out += records_out;
        self.checkpoints_committed += checkpoints_committed;
        self.transactions_aborted += transactions_aborted;
        self.rewinds += rewinds;
        self.tasks_restored += tasks_restored;
        self.tasks_started_empty += tasks_started_empty;
        self.snapshot_bytes_written += snapshot_bytes_written;
        self.rebalances += rebalances;
        self.partitions_lost += partitions_lost;
    }
}

/// What a committed checkpoint left for a task to come back to.
#[derive(Clone, Debug, Default)]
struct Committed {
    checkpoint: Option<(u64, u64)>,
    snapshot: Option<Arc<Vec<u8>>>,
    positions: BTreeMap<TopicPartition, i64>,
}

struct Task<T> {
    logic: T,
    positions: BTreeMap<TopicPartition, i64>,
    committed: Committed,
    /// Processed something (or finished) since the last commit.
    dirty: bool,
    finished: bool,
    /// Its last committed checkpoint came after the end of its bounded
    /// input: everything it will ever output is committed.
    committed_finished: bool,
}

/// Which call is outstanding (one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Init,
    Subscribe,
    Poll,
    Positions,
    Committed,
    ReadSnapshot,
    Seek,
    Begin,
    Send,
    WriteSnapshot,
    SendOffsets,
    CommitTransaction,
    Abort,
    Flush,
    CommitOffsets,
    Collect,
}

/// What comes after a checkpoint or an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Carry on with the same tasks.
    Continue,
    /// The partitions are being revoked or were lost: drop every task.
    DropTasks,
    /// A stop was requested: stop once done.
    Stop,
}

/// The steps of one checkpoint, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CheckpointStep {
    Snapshots,
    Produce,
    Offsets,
    Commit,
    Collect,
}

struct Checkpoint {
    number: u64,
    then: Then,
    /// Every task's snapshot `number`, taken when the checkpoint began.
    snapshots: BTreeMap<i32, Arc<Vec<u8>>>,
    /// Tasks whose snapshot is still to write.
    to_write: VecDeque<i32>,
    /// Tasks whose older snapshots are still to collect.
    to_collect: VecDeque<i32>,
    step: CheckpointStep,
    /// The snapshot writes come after the commit (`commit-before-snapshot`).
    snapshots_last: bool,
}

/// A restore of newly assigned tasks.
struct Restore {
    tasks: Vec<i32>,
    committed: BTreeMap<TopicPartition, Option<OffsetAndMetadata>>,
    /// Tasks whose snapshot is still to read, with its id.
    to_read: VecDeque<(i32, SnapshotId)>,
}

/// The one piece of work in progress besides polling.
enum Work {
    None,
    Starting,
    Restore(Restore),
    Checkpoint(Checkpoint),
    Abort { then: Then },
    Rewind,
}

/// The worker state machine; see the module doc.
pub struct WorkerCore<J: JobLogic, M: Mutants> {
    job: J,
    config: WorkerConfig,
    mutants: M,
    tasks: BTreeMap<i32, Task<J::Task>>,
    outstanding: Option<Call>,
    work: Work,
    /// Consumer events not yet handled (a revoke pauses the rest).
    events: VecDeque<ConsumerEvent>,
    /// Outputs not yet handed to the producer.
    outbox: Vec<ProducerRecord>,
    in_transaction: bool,
    next_checkpoint: u64,
    last_commit_at: Duration,
    stop_requested: bool,
    stopped: bool,
    /// Consecutive retries of the outstanding kind of call.
    retries: u32,
    /// Set by a rewind, cleared by the next answered poll: until then no
    /// bounded task is finished and no checkpoint begins. The consumer hands
    /// out what the group decided (a revoke, a lost session) only when
    /// polled, so without this a worker whose generation the coordinator
    /// refuses, with every task at the end of a bounded input, would finish,
    /// checkpoint, be refused and rewind again forever.
    poll_after_rewind: bool,
    /// The last poll brought no event: a bounded task short of its end may
    /// be there already, past records the consumer never hands out.
    poll_came_empty: bool,
    /// The partitions of the outstanding [`Command::Positions`], in order.
    positions_asked: Vec<TopicPartition>,
    /// Watermark each task committed last, to assert it never regresses.
    committed_watermarks: BTreeMap<i32, EventTime>,
    /// A task failed outside an answer (on processing time): stop at the
    /// next decision.
    failure: Option<String>,
    /// A bounded task finished: checkpoint without waiting for the interval.
    checkpoint_now: bool,
    stats: WorkerStats,
}

/// The offset metadata of a checkpoint: `eddy checkpoint=N incarnation=X`.
pub fn checkpoint_metadata(checkpoint: u64, incarnation: u64) -> String {
    format!("eddy checkpoint={checkpoint} incarnation={incarnation:016x}")
}

/// Reads [`checkpoint_metadata`] back.
pub fn parse_checkpoint_metadata(metadata: &str) -> Option<(u64, u64)> {
    let rest = metadata.strip_prefix("eddy checkpoint=")?;
    let (checkpoint, incarnation) = rest.split_once(" incarnation=")?;
    let checkpoint = checkpoint.parse().ok()?;
    if incarnation.len() != 16 {
        return None;
    }
    let incarnation = u64::from_str_radix(incarnation, 16).ok()?;
    Some((checkpoint, incarnation))
}

impl<J: JobLogic, M: Mutants> WorkerCore<J, M> {
    /// A worker for `job`; refuses a transaction timeout that an open
    /// checkpoint could outlive (see [`super::check_transaction_timeout`]).
    pub fn new(job: J, config: WorkerConfig, mutants: M) -> Result<Self> {
        if config.delivery == Delivery::ExactlyOnce {
            super::check_transaction_timeout(
                millis(config.transaction_timeout),
                millis(config.checkpoint_interval),
                millis(config.restart_budget),
            )?;
        }
        if config.poll_max_events == 0 {
            return Err(Error::Invalid("poll_max_events must be at least 1".into()));
        }
        Ok(Self {
            job,
            config,
            mutants,
            tasks: BTreeMap::new(),
            outstanding: None,
            work: Work::Starting,
            events: VecDeque::new(),
            outbox: Vec::new(),
            in_transaction: false,
            next_checkpoint: 1,
            last_commit_at: Duration::ZERO,
            stop_requested: false,
            stopped: false,
            retries: 0,
            poll_after_rewind: false,
            poll_came_empty: false,
            positions_asked: Vec::new(),
            committed_watermarks: BTreeMap::new(),
            failure: None,
            checkpoint_now: false,
            stats: WorkerStats::default(),
        })
    }

    /// The consumer group: the job's name.
    pub fn group_id(&self) -> String {
        self.job.name().to_string()
    }

    /// The producer's transactional id: the job and the worker id, so a
    /// restart with the same worker id fences the previous incarnation.
    /// (`skip-fencing` adds the incarnation: no restart fences anything.)
    pub fn transactional_id(&self) -> Option<String> {
        if self.config.delivery == Delivery::AtLeastOnce {
            return None;
        }
        let base = format!("{}-{}", self.job.name(), self.config.worker_id);
        if self.mutants.active(Mutant::SkipFencing) {
            return Some(format!("{base}-{:016x}", self.config.incarnation));
        }
        Some(base)
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The tasks this worker runs now, with their watermarks.
    pub fn task_watermarks(&self) -> BTreeMap<i32, EventTime> {
        self.tasks
            .iter()
            .map(|(task, slot)| (*task, slot.logic.watermark()))
            .collect()
    }

    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// The next offset to process of every input partition this worker's
    /// tasks own now (for lag: an end offset minus this).
    pub fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.tasks
            .values()
            .flat_map(|slot| {
                slot.positions
                    .iter()
                    .map(|(tp, offset)| (tp.clone(), *offset))
            })
            .collect()
    }

    /// The number of the checkpoint being taken, from its snapshots to its
    /// commit (or abort), if one is (for timing checkpoints).
    pub fn checkpoint_in_progress(&self) -> Option<u64> {
        match &self.work {
            Work::Checkpoint(checkpoint) => Some(checkpoint.number),
            _ => None,
        }
    }

    /// Each task's last committed checkpoint: (number, incarnation).
    pub fn task_checkpoints(&self) -> BTreeMap<i32, Option<(u64, u64)>> {
        self.tasks
            .iter()
            .map(|(task, slot)| (*task, slot.committed.checkpoint))
            .collect()
    }

    /// The tasks whose bounded input ended and whose last committed
    /// checkpoint came after that: all their output is committed.
    pub fn finished_tasks(&self) -> BTreeSet<i32> {
        self.tasks
            .iter()
            .filter(|(_, slot)| slot.committed_finished)
            .map(|(task, _)| *task)
            .collect()
    }

    /// Makes the run bounded from now on: the end offset of every input
    /// partition (the end of a finite input, known once it is written).
    pub fn set_end_offsets(&mut self, ends: BTreeMap<TopicPartition, i64>) {
        if let Some(known) = &self.config.end_offsets {
            assert_eq!(known, &ends, "the end of the input changed");
        }
        self.config.end_offsets = Some(ends);
    }

    /// Asks for a graceful stop: a last checkpoint, then [`Stopped::Requested`].
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }

    /// The first command.
    pub fn start(&mut self, now: Duration) -> Command {
        assert!(matches!(self.work, Work::Starting) && self.outstanding.is_none());
        self.last_commit_at = now;
        if self.config.delivery == Delivery::ExactlyOnce {
            return self.call(Call::Init, Command::InitTransactions);
        }
        self.subscribe()
    }

    fn subscribe(&mut self) -> Command {
        self.work = Work::None;
        let topics = self.job.input_topics().to_vec();
        self.call(Call::Subscribe, Command::Subscribe(topics))
    }

    fn call(&mut self, call: Call, command: Command) -> Command {
        assert!(
            self.outstanding.is_none(),
            "{call:?} while {:?} is outstanding",
            self.outstanding
        );
        self.outstanding = Some(call);
        command
    }

    fn answered(&mut self, expected: &[Call]) -> Call {
        let call = self
            .outstanding
            .take()
            .expect("an answer without a command");
        assert!(
            expected.contains(&call),
            "answer for {expected:?}, but {call:?} was outstanding"
        );
        call
    }

    fn stop(&mut self, stopped: Stopped) -> Command {
        self.stopped = true;
        self.tasks.clear();
        self.work = Work::None;
        Command::Stop(stopped)
    }

    /// Whatever the open transaction holds is dropped with the worker: the
    /// coordinator aborts it (or the next incarnation's init does).
    fn fail(&mut self, reason: String) -> Command {
        self.stop(Stopped::Failed(reason))
    }

    /// Decides on an error of a call: retry, abort, stop.
    fn on_error(
        &mut self,
        now: Duration,
        error: TransportError,
        retry: Command,
        call: Call,
    ) -> Command {
        match error.kind {
            ErrorKind::Fenced if !self.mutants.active(Mutant::SkipFencing) => {
                self.stop(Stopped::Fenced(error))
            }
            ErrorKind::Retriable | ErrorKind::Timeout if self.retries < self.config.retries_max => {
                self.retries += 1;
                self.call(call, retry)
            }
            ErrorKind::Fatal | ErrorKind::Retriable | ErrorKind::Timeout | ErrorKind::Fenced => {
                self.fail(format!("{call:?} failed: {error}"))
            }
            ErrorKind::Abortable => self.abort(now, Then::Continue),
        }
    }

    // -----------------------------------------------------------------
    // Answers

    /// The answer to every command without a value.
    pub fn on_done(&mut self, now: Duration, result: TransportResult<()>) -> Command {
        let call = self.answered(&[
            Call::Init,
            Call::Subscribe,
            Call::Seek,
            Call::Begin,
            Call::Send,
            Call::SendOffsets,
            Call::CommitTransaction,
            Call::Abort,
            Call::Flush,
            Call::CommitOffsets,
        ]);
        match result {
            Ok(()) => {
                self.retries = 0;
                self.done(now, call)
            }
            Err(error) => self.call_failed(now, call, error),
        }
    }

    fn done(&mut self, now: Duration, call: Call) -> Command {
        match call {
            Call::Init => self.subscribe(),
            Call::Subscribe | Call::Send => self.advance(now),
            Call::Begin => {
                self.in_transaction = true;
                self.advance(now)
            }
            Call::Seek => {
                if matches!(self.work, Work::Rewind | Work::Restore(_)) {
                    self.work = Work::None;
                }
                self.advance(now)
            }
            Call::Abort => self.aborted(now),
            Call::SendOffsets | Call::Flush | Call::CommitOffsets | Call::CommitTransaction => {
                self.checkpoint_step_done(now, call)
            }
            Call::Poll
            | Call::Positions
            | Call::Committed
            | Call::ReadSnapshot
            | Call::WriteSnapshot
            | Call::Collect => {
                unreachable!("{call:?} has its own answer")
            }
        }
    }

    fn call_failed(&mut self, now: Duration, call: Call, error: TransportError) -> Command {
        match call {
            Call::Init => {
                let retry = Command::InitTransactions;
                self.on_error(now, error, retry, call)
            }
            Call::Subscribe => {
                let retry = Command::Subscribe(self.job.input_topics().to_vec());
                self.on_error(now, error, retry, call)
            }
            Call::Seek => self.fail(format!("seek failed: {error}")),
            // A send that fails at once, or an abortable or timed-out end of
            // the transaction: nothing of it may be kept.
            Call::Begin | Call::Send | Call::SendOffsets | Call::Flush | Call::CommitOffsets => {
                match error.kind {
                    ErrorKind::Fenced if !self.mutants.active(Mutant::SkipFencing) => {
                        self.stop(Stopped::Fenced(error))
                    }
                    ErrorKind::Fatal => self.fail(format!("{call:?} failed: {error}")),
                    _ => self.abort_checkpoint(now),
                }
            }
            Call::CommitTransaction => match error.kind {
                ErrorKind::Abortable => self.abort_checkpoint(now),
                // librdkafka: a timed-out commit may be called again; it
                // resumes the commit in progress (on_error retries it).
                _ => self.on_error(now, error, Command::CommitTransaction, call),
            },
            Call::Abort => match error.kind {
                ErrorKind::Retriable | ErrorKind::Timeout
                    if self.retries < self.config.retries_max =>
                {
                    self.retries += 1;
                    self.call(Call::Abort, Command::AbortTransaction)
                }
                ErrorKind::Fenced => self.stop(Stopped::Fenced(error)),
                _ => self.fail(format!("abort failed: {error}")),
            },
            Call::Poll
            | Call::Positions
            | Call::Committed
            | Call::ReadSnapshot
            | Call::WriteSnapshot
            | Call::Collect => {
                unreachable!("{call:?} has its own answer")
            }
        }
    }

    /// The answer to [`Command::Poll`].
    pub fn on_polled(
        &mut self,
        now: Duration,
        result: TransportResult<Vec<ConsumerEvent>>,
    ) -> Command {
        self.answered(&[Call::Poll]);
        match result {
            Ok(events) => {
                self.retries = 0;
                self.poll_after_rewind = false;
                self.poll_came_empty = events.is_empty();
                self.events.extend(events);
                self.on_processing_time(now);
                self.advance(now)
            }
            // The member left its group: its partitions are gone.
            Err(error) if error.code == crate::transport::ErrorCode::MaxPollExceeded => {
                self.partitions_lost(now)
            }
            Err(error) => {
                let retry = self.poll_command();
                self.on_error(now, error, retry, Call::Poll)
            }
        }
    }

    /// The answer to [`Command::Positions`]: one position per partition
    /// asked, in order (`None` where the consumer has none yet).
    pub fn on_positions(
        &mut self,
        now: Duration,
        result: TransportResult<Vec<Option<i64>>>,
    ) -> Command {
        let call = self.answered(&[Call::Positions]);
        match result {
            Ok(positions) => {
                self.retries = 0;
                self.step_over_unread(positions);
                self.advance(now)
            }
            Err(error) => {
                let retry = Command::Positions(self.positions_asked.clone());
                self.on_error(now, error, retry, call)
            }
        }
    }

    /// The answer to [`Command::Committed`].
    pub fn on_committed(
        &mut self,
        now: Duration,
        result: TransportResult<Vec<Option<OffsetAndMetadata>>>,
    ) -> Command {
        self.answered(&[Call::Committed]);
        let Work::Restore(restore) = &mut self.work else {
            unreachable!("committed offsets are read only to restore");
        };
        match result {
            Ok(offsets) => {
                self.retries = 0;
                let partitions: Vec<TopicPartition> = restore.committed.keys().cloned().collect();
                assert_eq!(offsets.len(), partitions.len(), "one answer per partition");
                restore.committed = partitions.into_iter().zip(offsets).collect();
                self.plan_snapshot_reads(now)
            }
            Err(error) => {
                let retry = Command::Committed(restore.committed.keys().cloned().collect());
                self.on_error(now, error, retry, Call::Committed)
            }
        }
    }

    /// The answer to [`Command::ReadSnapshot`].
    pub fn on_snapshot_read(&mut self, now: Duration, result: Result<Vec<u8>>) -> Command {
        self.answered(&[Call::ReadSnapshot]);
        let Work::Restore(restore) = &mut self.work else {
            unreachable!("snapshots are read only to restore");
        };
        let (task, id) = restore
            .to_read
            .front()
            .cloned()
            .expect("a snapshot being read");
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(Error::Store(_)) if self.retries < self.config.retries_max => {
                self.retries += 1;
                return self.call(Call::ReadSnapshot, Command::ReadSnapshot(id));
            }
            Err(error) => {
                return self.fail(format!(
                    "task {task}: snapshot {id} named by the committed offsets: {error}"
                ));
            }
        };
        self.retries = 0;
        restore.to_read.pop_front();
        let restored = if self.mutants.active(Mutant::RestoreEmpty) {
            self.job.new_task(task, now)
        } else {
            self.job.restore_task(task, &bytes, now)
        };
        match restored {
            Ok(logic) => {
                self.stats.tasks_restored += 1;
                self.install_task(
                    task,
                    logic,
                    Some((id.checkpoint, id.incarnation)),
                    Some(Arc::new(bytes)),
                );
                self.next_snapshot_read()
            }
            Err(error) => self.fail(format!("task {task}: snapshot {id}: {error}")),
        }
    }

    /// The answer to [`Command::WriteSnapshot`]: records to produce in the
    /// transaction (the topic store), or none.
    pub fn on_snapshot_written(
        &mut self,
        now: Duration,
        result: Result<Vec<ProducerRecord>>,
    ) -> Command {
        self.answered(&[Call::WriteSnapshot]);
        let number = self.checkpoint().number;
        let task = *self
            .checkpoint()
            .to_write
            .front()
            .expect("a snapshot being written");
        match result {
            Ok(records) => {
                self.retries = 0;
                self.checkpoint().to_write.pop_front();
                self.outbox.extend(records);
                self.checkpoint_next(now)
            }
            Err(Error::Store(_)) if self.retries < self.config.retries_max => {
                self.retries += 1;
                let bytes = self.checkpoint().snapshots[&task].clone();
                let id = self.snapshot_id(task, number);
                self.call(Call::WriteSnapshot, Command::WriteSnapshot(id, bytes))
            }
            // The checkpoint cannot be completed: abort it and rewind.
            Err(_) => self.abort_checkpoint(now),
        }
    }

    /// The answer to [`Command::Collect`]. Collecting is housekeeping: a
    /// failure leaves garbage, never a wrong state, so it is not retried.
    pub fn on_collected(&mut self, now: Duration, result: Result<usize>) -> Command {
        self.answered(&[Call::Collect]);
        let _ = result;
        self.checkpoint_next(now)
    }

    // -----------------------------------------------------------------
    // The main loop

    fn poll_command(&self) -> Command {
        Command::Poll {
            max_events: self.config.poll_max_events,
            timeout: self.config.poll_timeout,
        }
    }

    /// The next command when nothing is outstanding and no work is in
    /// progress: send outputs, handle events, checkpoint, or poll.
    fn advance(&mut self, now: Duration) -> Command {
        assert!(self.outstanding.is_none());
        assert!(!self.stopped, "the worker stopped");
        if matches!(self.work, Work::Checkpoint(_)) {
            return self.checkpoint_next(now);
        }
        assert!(
            matches!(self.work, Work::None),
            "advance with work in progress"
        );
        if let Some(reason) = self.failure.take() {
            return self.fail(reason);
        }
        loop {
            // Messages in a row are processed together and their outputs
            // sent in one batch; anything else sees those outputs sent.
            while let Some(ConsumerEvent::Message(_)) = self.events.front() {
                let Some(ConsumerEvent::Message(message)) = self.events.pop_front() else {
                    unreachable!()
                };
                if let Some(command) = self.process(now, &message) {
                    return command;
                }
            }
            if let Some(command) = self.send_outbox() {
                return command;
            }
            if let Some(event) = self.events.pop_front() {
                if let Some(command) = self.handle_event(now, event) {
                    return command;
                }
                continue;
            }
            if self.poll_after_rewind {
                break;
            }
            match self.finish_bounded() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(reason) => return self.fail(reason),
            }
        }
        if self.poll_after_rewind {
            return self.call(Call::Poll, self.poll_command());
        }
        if let Some(then) = self.checkpoint_due(now) {
            return self.begin_checkpoint(now, then);
        }
        if let Some(reason) = self.stop_reason() {
            return self.stop(reason);
        }
        if std::mem::take(&mut self.poll_came_empty) {
            let short = self.short_of_end();
            if !short.is_empty() {
                self.positions_asked.clone_from(&short);
                return self.call(Call::Positions, Command::Positions(short));
            }
        }
        self.call(Call::Poll, self.poll_command())
    }

    /// Bounded input: the partitions of unfinished tasks whose positions
    /// are short of their end offsets.
    fn short_of_end(&self) -> Vec<TopicPartition> {
        let Some(ends) = self.config.end_offsets.as_ref() else {
            return Vec::new();
        };
        self.tasks
            .values()
            .filter(|task| !task.finished)
            .flat_map(|task| &task.positions)
            .filter(|(tp, position)| **position < ends.get(*tp).copied().unwrap_or(0))
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Moves each asked task position up to the consumer's, which stepped
    /// over transaction markers and aborted records, never past the end
    /// offset (records from there on are not this run's). Everything below
    /// the consumer's position was handed out and processed, or was never
    /// a record: the move loses nothing, and the next checkpoint commits it.
    fn step_over_unread(&mut self, consumer_positions: Vec<Option<i64>>) {
        let asked = std::mem::take(&mut self.positions_asked);
        assert_eq!(
            asked.len(),
            consumer_positions.len(),
            "one answer per partition"
        );
        for (tp, consumer_position) in asked.into_iter().zip(consumer_positions) {
            let (Some(consumer_position), Some(end)) = (
                consumer_position,
                end_offset(self.config.end_offsets.as_ref(), &tp),
            ) else {
                continue;
            };
            let Some(task) = self.tasks.get_mut(&tp.partition) else {
                continue;
            };
            if task.finished {
                continue;
            }
            let Some(position) = task.positions.get_mut(&tp) else {
                continue;
            };
            let stepped = consumer_position.min(end);
            if stepped > *position {
                *position = stepped;
                task.dirty = true;
            }
        }
    }

    fn send_outbox(&mut self) -> Option<Command> {
        if self.outbox.is_empty() {
            return None;
        }
        if self.config.delivery == Delivery::ExactlyOnce && !self.in_transaction {
            return Some(self.call(Call::Begin, Command::BeginTransaction));
        }
        let records = std::mem::take(&mut self.outbox);
        self.stats.records_out += records.len() as u64;
        Some(self.call(Call::Send, Command::Send(records)))
    }

    fn handle_event(&mut self, now: Duration, event: ConsumerEvent) -> Option<Command> {
        match event {
            ConsumerEvent::Message(message) => self.process(now, &message),
            ConsumerEvent::Assigned(partitions) => {
                self.stats.rebalances += 1;
                Some(self.assigned(now, partitions))
            }
            ConsumerEvent::Revoked(_) => {
                if self.tasks.is_empty() {
                    return None;
                }
                Some(self.begin_checkpoint(now, Then::DropTasks))
            }
            ConsumerEvent::Lost(_) => Some(self.partitions_lost(now)),
        }
    }

    fn process(&mut self, now: Duration, message: &Message) -> Option<Command> {
        let task = self.tasks.get_mut(&message.partition)?;
        // A task's positions are one per input topic, of its partition:
        // found without building the message's `TopicPartition`.
        let (tp, position) = task
            .positions
            .iter_mut()
            .find(|(tp, _)| tp.partition == message.partition && *tp.topic == *message.topic)?;
        let end = end_offset(self.config.end_offsets.as_ref(), tp);
        // Behind the position: a record from before a seek, already in the
        // restored state. At or past the end of a bounded input: not ours.
        if task.finished
            || message.offset < *position
            || end.is_some_and(|end| message.offset >= end)
        {
            return None;
        }
        if let Err(error) = task.logic.process(message, now, &mut self.outbox) {
            return Some(self.fail(format!("task {}: {error}", message.partition)));
        }
        *position = message.offset + 1;
        task.dirty = true;
        self.stats.records_in += 1;
        None
    }

    fn on_processing_time(&mut self, now: Duration) {
        let mut failed = None;
        for (task, slot) in &mut self.tasks {
            if slot.finished {
                continue;
            }
            if let Err(error) = slot.logic.on_processing_time(now, &mut self.outbox) {
                failed = Some(format!("task {task}: {error}"));
                break;
            }
        }
        if failed.is_some() {
            self.failure = failed;
        }
    }

    fn checkpoint_due(&self, now: Duration) -> Option<Then> {
        let has_work = self.in_transaction || self.tasks.values().any(|task| task.dirty);
        if !has_work {
            return None;
        }
        if self.stop_requested {
            return Some(Then::Stop);
        }
        if self.checkpoint_now
            || now.saturating_sub(self.last_commit_at) >= self.config.checkpoint_interval
        {
            return Some(Then::Continue);
        }
        None
    }

    fn stop_reason(&self) -> Option<Stopped> {
        if self.stop_requested {
            return Some(Stopped::Requested);
        }
        let ends = self.config.end_offsets.as_ref()?;
        let partitions: BTreeSet<i32> = ends.keys().map(|tp| tp.partition).collect();
        let all_done = !partitions.is_empty()
            && partitions.iter().all(|p| {
                self.tasks
                    .get(p)
                    .is_some_and(|task| task.finished && !task.dirty)
            });
        (all_done && !self.in_transaction).then_some(Stopped::Finished)
    }

    /// Bounded input: finishes every task whose positions reached the ends
    /// (its outputs go to the outbox, a checkpoint is due at once); true if
    /// it finished any.
    fn finish_bounded(&mut self) -> std::result::Result<bool, String> {
        let Some(ends) = self.config.end_offsets.as_ref() else {
            return Ok(false);
        };
        let mut finished_any = false;
        for (task, slot) in &mut self.tasks {
            let at_end = slot
                .positions
                .iter()
                .all(|(tp, position)| *position >= ends.get(tp).copied().unwrap_or(0));
            if slot.finished || !at_end {
                continue;
            }
            if let Err(error) = slot.logic.finish(&mut self.outbox) {
                return Err(format!("task {task}: {error}"));
            }
            slot.finished = true;
            slot.dirty = true;
            finished_any = true;
        }
        self.checkpoint_now |= finished_any;
        Ok(finished_any)
    }

    // -----------------------------------------------------------------
    // Assignment, restore, loss

    fn assigned(&mut self, now: Duration, partitions: Vec<TopicPartition>) -> Command {
        let inputs = self.job.input_topics().to_vec();
        let mut by_task: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        for tp in &partitions {
            if !inputs.contains(&tp.topic) {
                return self.fail(format!("assigned {tp}, which is not an input of the job"));
            }
            by_task
                .entry(tp.partition)
                .or_default()
                .insert(tp.topic.clone());
        }
        for (task, topics) in &by_task {
            if topics.len() != inputs.len() {
                return self.fail(format!(
                        "task {task} was assigned {topics:?} but not all of the job's inputs {inputs:?}: \
                         the input topics must be co-partitioned (same partition count)"
                    ),
                );
            }
        }
        // Tasks the new assignment does not have: their partitions went to
        // another member without a revoke we saw; anything uncommitted of
        // theirs is in the open transaction, which must not commit.
        let kept: Vec<i32> = self
            .tasks
            .keys()
            .copied()
            .filter(|t| by_task.contains_key(t))
            .collect();
        let dropped = self.tasks.len() - kept.len();
        if dropped > 0 && self.in_transaction {
            self.events.push_front(ConsumerEvent::Assigned(partitions));
            return self.abort(now, Then::Continue);
        }
        self.tasks.retain(|task, _| by_task.contains_key(task));
        let new_tasks: Vec<i32> = by_task
            .keys()
            .copied()
            .filter(|t| !self.tasks.contains_key(t))
            .collect();
        if new_tasks.is_empty() {
            return self.advance(now);
        }
        let committed: BTreeMap<TopicPartition, Option<OffsetAndMetadata>> = new_tasks
            .iter()
            .flat_map(|task| {
                inputs
                    .iter()
                    .map(move |topic| TopicPartition::new(topic.clone(), *task))
            })
            .map(|tp| (tp, None))
            .collect();
        let partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
        self.work = Work::Restore(Restore {
            tasks: new_tasks,
            committed,
            to_read: VecDeque::new(),
        });
        self.call(Call::Committed, Command::Committed(partitions))
    }

    /// After the committed offsets came: which snapshot each task needs.
    fn plan_snapshot_reads(&mut self, now: Duration) -> Command {
        let Work::Restore(restore) = &mut self.work else {
            unreachable!()
        };
        let mut plan = VecDeque::new();
        let mut fresh = Vec::new();
        for task in restore.tasks.clone() {
            let metadata: BTreeSet<Option<&str>> = restore
                .committed
                .iter()
                .filter(|(tp, _)| tp.partition == task)
                .map(|(_, committed)| committed.as_ref().map(|c| c.metadata.as_str()))
                .collect();
            let [only] = metadata.into_iter().collect::<Vec<_>>()[..] else {
                let reason = format!(
                    "task {task}: its input partitions' committed offsets name different checkpoints"
                );
                return self.fail(reason);
            };
            match only {
                None => fresh.push(task),
                Some(metadata) => match parse_checkpoint_metadata(metadata) {
                    Some((checkpoint, incarnation)) => {
                        let id = SnapshotId {
                            job: self.job.name().to_string(),
                            task,
                            checkpoint,
                            incarnation,
                        };
                        plan.push_back((task, id));
                    }
                    None => {
                        let reason = format!(
                            "task {task}: committed offsets carry metadata {metadata:?}, not a checkpoint of \
                             this worker: refusing to start the task without its state"
                        );
                        return self.fail(reason);
                    }
                },
            }
        }
        for task in fresh {
            match self.job.new_task(task, now) {
                Ok(logic) => {
                    self.stats.tasks_started_empty += 1;
                    self.install_task(task, logic, None, None);
                }
                Err(error) => return self.fail(format!("task {task}: {error}")),
            }
        }
        let Work::Restore(restore) = &mut self.work else {
            unreachable!()
        };
        restore.to_read = plan;
        self.next_snapshot_read()
    }

    fn next_snapshot_read(&mut self) -> Command {
        let Work::Restore(restore) = &self.work else {
            unreachable!()
        };
        if let Some((_, id)) = restore.to_read.front() {
            let id = id.clone();
            return self.call(Call::ReadSnapshot, Command::ReadSnapshot(id));
        }
        let seeks: Vec<(TopicPartition, i64)> = restore
            .tasks
            .iter()
            .flat_map(|task| {
                let slot = &self.tasks[task];
                slot.positions
                    .iter()
                    .map(|(tp, offset)| (tp.clone(), *offset))
            })
            .collect();
        self.call(Call::Seek, Command::Seek(seeks))
    }

    /// Installs a restored (or fresh) task with the positions its restore
    /// found.
    fn install_task(
        &mut self,
        task: i32,
        logic: J::Task,
        checkpoint: Option<(u64, u64)>,
        snapshot: Option<Arc<Vec<u8>>>,
    ) {
        let Work::Restore(restore) = &self.work else {
            unreachable!()
        };
        let positions: BTreeMap<TopicPartition, i64> = restore
            .committed
            .iter()
            .filter(|(tp, _)| tp.partition == task)
            .map(|(tp, committed)| (tp.clone(), committed.as_ref().map_or(0, |c| c.offset)))
            .collect();
        if let Some((number, _)) = checkpoint {
            self.next_checkpoint = self.next_checkpoint.max(number + 1);
        }
        let watermark = logic.watermark();
        if let Some(previous) = self.committed_watermarks.get(&task) {
            assert!(
                watermark >= *previous || self.mutants.active(Mutant::RestoreEmpty),
                "task {task}: restored watermark {watermark} is below the committed {previous}"
            );
        }
        self.tasks.insert(
            task,
            Task {
                logic,
                positions: positions.clone(),
                committed: Committed {
                    checkpoint,
                    snapshot,
                    positions,
                },
                dirty: false,
                finished: false,
                committed_finished: false,
            },
        );
    }

    fn partitions_lost(&mut self, now: Duration) -> Command {
        self.stats.partitions_lost += 1;
        if self.mutants.active(Mutant::SkipFencing) {
            return self.advance(now);
        }
        if self.in_transaction {
            return self.abort(now, Then::DropTasks);
        }
        self.tasks.clear();
        self.outbox.clear();
        self.advance(now)
    }

    // -----------------------------------------------------------------
    // Checkpoints

    fn snapshot_id(&self, task: i32, checkpoint: u64) -> SnapshotId {
        SnapshotId {
            job: self.job.name().to_string(),
            task,
            checkpoint,
            incarnation: self.config.incarnation,
        }
    }

    fn begin_checkpoint(&mut self, now: Duration, then: Then) -> Command {
        let number = self.next_checkpoint;
        self.next_checkpoint += 1;
        let mut snapshots = BTreeMap::new();
        for (task, slot) in &self.tasks {
            match slot.logic.snapshot(now) {
                Ok(bytes) => snapshots.insert(*task, Arc::new(bytes)),
                Err(error) => return self.fail(format!("task {task}: snapshot: {error}")),
            };
        }
        let snapshots_last = self.mutants.active(Mutant::CommitBeforeSnapshot);
        self.work = Work::Checkpoint(Checkpoint {
            number,
            then,
            to_write: snapshots.keys().copied().collect(),
            snapshots,
            to_collect: VecDeque::new(),
            step: if snapshots_last {
                CheckpointStep::Produce
            } else {
                CheckpointStep::Snapshots
            },
            snapshots_last,
        });
        self.checkpoint_next(now)
    }

    fn checkpoint(&mut self) -> &mut Checkpoint {
        match &mut self.work {
            Work::Checkpoint(checkpoint) => checkpoint,
            _ => unreachable!("no checkpoint in progress"),
        }
    }

    /// The next step of the checkpoint in progress.
    fn checkpoint_next(&mut self, now: Duration) -> Command {
        let checkpoint = self.checkpoint();
        let number = checkpoint.number;
        match checkpoint.step {
            CheckpointStep::Snapshots => {
                if let Some(task) = checkpoint.to_write.front().copied() {
                    let bytes = checkpoint.snapshots[&task].clone();
                    let id = self.snapshot_id(task, number);
                    self.stats.snapshot_bytes_written += bytes.len() as u64;
                    return self.call(Call::WriteSnapshot, Command::WriteSnapshot(id, bytes));
                }
                if checkpoint.snapshots_last {
                    return self.collect_next(now);
                }
                checkpoint.step = CheckpointStep::Produce;
                self.checkpoint_next(now)
            }
            CheckpointStep::Produce => self.checkpoint_produce(number),
            CheckpointStep::Offsets | CheckpointStep::Commit => {
                unreachable!("answered by checkpoint_step_done")
            }
            CheckpointStep::Collect => self.collect_next(now),
        }
    }

    /// Outputs and store records out, the transaction open; then the
    /// offsets (or, at-least-once, the flush).
    fn checkpoint_produce(&mut self, number: u64) -> Command {
        if let Some(command) = self.send_outbox() {
            return command;
        }
        let exactly_once = self.config.delivery == Delivery::ExactlyOnce;
        if exactly_once && !self.in_transaction {
            return self.call(Call::Begin, Command::BeginTransaction);
        }
        self.checkpoint().step = CheckpointStep::Offsets;
        let offsets = self.offsets(number);
        if !exactly_once {
            return self.call(Call::Flush, Command::Flush);
        }
        if self.mutants.active(Mutant::OffsetsOutsideTransaction) {
            return self.call(Call::CommitOffsets, Command::CommitOffsets(offsets));
        }
        let generation_fencing = !self.mutants.active(Mutant::SkipFencing);
        self.call(
            Call::SendOffsets,
            Command::SendOffsets {
                offsets,
                generation_fencing,
            },
        )
    }

    fn collect_next(&mut self, now: Duration) -> Command {
        let checkpoint = self.checkpoint();
        checkpoint.step = CheckpointStep::Collect;
        let below = checkpoint.number;
        if let Some(task) = checkpoint.to_collect.pop_front() {
            return self.call(Call::Collect, Command::Collect { task, below });
        }
        let then = checkpoint.then;
        self.work = Work::None;
        self.after(now, then)
    }

    /// Every task's position, with the checkpoint id in the metadata.
    fn offsets(&self, number: u64) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        let metadata = checkpoint_metadata(number, self.config.incarnation);
        self.tasks
            .values()
            .flat_map(|task| {
                task.positions.iter().map(|(tp, offset)| {
                    let committed = OffsetAndMetadata {
                        offset: *offset,
                        metadata: metadata.clone(),
                    };
                    (tp.clone(), committed)
                })
            })
            .collect()
    }

    fn checkpoint_step_done(&mut self, now: Duration, call: Call) -> Command {
        let number = self.checkpoint().number;
        match (call, self.config.delivery) {
            // Exactly-once: offsets in the transaction (or, mutated, beside
            // it), then the commit.
            (Call::SendOffsets, _) | (Call::CommitOffsets, Delivery::ExactlyOnce) => {
                self.checkpoint().step = CheckpointStep::Commit;
                self.call(Call::CommitTransaction, Command::CommitTransaction)
            }
            (Call::Flush, _) => {
                let offsets = self.offsets(number);
                self.call(Call::CommitOffsets, Command::CommitOffsets(offsets))
            }
            (Call::CommitTransaction, _) | (Call::CommitOffsets, Delivery::AtLeastOnce) => {
                self.in_transaction = false;
                self.committed(now)
            }
            _ => unreachable!("{call:?} in a checkpoint"),
        }
    }

    /// The checkpoint committed: the tasks' snapshots and positions are the
    /// ones to come back to.
    fn committed(&mut self, now: Duration) -> Command {
        let checkpoint = self.checkpoint();
        let number = checkpoint.number;
        // Shares the bytes (the snapshot writes may come after the commit).
        let snapshots = checkpoint.snapshots.clone();
        let incarnation = self.config.incarnation;
        for (task, slot) in &mut self.tasks {
            slot.dirty = false;
            slot.committed_finished = slot.finished;
            slot.committed = Committed {
                checkpoint: Some((number, incarnation)),
                snapshot: snapshots.get(task).cloned(),
                positions: slot.positions.clone(),
            };
            self.committed_watermarks
                .insert(*task, slot.logic.watermark());
        }
        self.last_commit_at = now;
        self.checkpoint_now = false;
        self.stats.checkpoints_committed += 1;
        let tasks: VecDeque<i32> = self.tasks.keys().copied().collect();
        let checkpoint = self.checkpoint();
        checkpoint.to_collect = tasks;
        if checkpoint.snapshots_last {
            checkpoint.step = CheckpointStep::Snapshots;
        } else {
            checkpoint.step = CheckpointStep::Collect;
        }
        self.checkpoint_next(now)
    }

    fn after(&mut self, now: Duration, then: Then) -> Command {
        match then {
            Then::Continue => self.advance(now),
            Then::DropTasks => {
                self.tasks.clear();
                self.advance(now)
            }
            Then::Stop => self.stop(Stopped::Requested),
        }
    }

    // -----------------------------------------------------------------
    // Abort and rewind

    /// The checkpoint in progress failed: abort; then what it was for.
    fn abort_checkpoint(&mut self, now: Duration) -> Command {
        let then = match &self.work {
            Work::Checkpoint(checkpoint) => checkpoint.then,
            _ => Then::Continue,
        };
        self.abort(now, then)
    }

    fn abort(&mut self, now: Duration, then: Then) -> Command {
        self.work = Work::Abort { then };
        self.outbox.clear();
        match self.config.delivery {
            Delivery::ExactlyOnce if self.in_transaction => {
                self.call(Call::Abort, Command::AbortTransaction)
            }
            _ => self.aborted(now),
        }
    }

    fn aborted(&mut self, now: Duration) -> Command {
        if self.in_transaction {
            self.stats.transactions_aborted += 1;
        }
        self.in_transaction = false;
        let Work::Abort { then } = self.work else {
            unreachable!("aborted without an abort in progress")
        };
        self.work = Work::None;
        match then {
            Then::DropTasks => {
                self.tasks.clear();
                self.advance(now)
            }
            Then::Continue | Then::Stop => self.rewind(now),
        }
    }

    /// Every task back to its last committed checkpoint. Messages already
    /// polled are dropped: the seek reads them again.
    fn rewind(&mut self, now: Duration) -> Command {
        self.events
            .retain(|event| !matches!(event, ConsumerEvent::Message(_)));
        self.stats.rewinds += 1;
        self.poll_after_rewind = true;
        let mut seeks = Vec::new();
        for (task, slot) in &mut self.tasks {
            let restored = match &slot.committed.snapshot {
                Some(bytes) => self.job.restore_task(*task, bytes, now),
                None => self.job.new_task(*task, now),
            };
            match restored {
                Ok(logic) => slot.logic = logic,
                Err(error) => {
                    let reason = format!("task {task}: rewind to its committed snapshot: {error}");
                    return self.fail(reason);
                }
            }
            slot.positions = slot.committed.positions.clone();
            slot.dirty = false;
            slot.finished = false;
            seeks.extend(
                slot.positions
                    .iter()
                    .map(|(tp, offset)| (tp.clone(), *offset)),
            );
        }
        if seeks.is_empty() {
            return self.advance(now);
        }
        self.work = Work::Rewind;
        self.call(Call::Seek, Command::Seek(seeks))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

/// Where a bounded input of `tp` ends (0 for a partition the bounds do not
/// name), `None` when the input is unbounded.
fn end_offset(ends: Option<&BTreeMap<TopicPartition, i64>>, tp: &TopicPartition) -> Option<i64> {
    ends.map(|ends| ends.get(tp).copied().unwrap_or(0))
}
