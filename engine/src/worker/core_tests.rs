//! The worker core's decisions, one named test per rule, with fake answers
//! and a fake job: no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::transport::{Bytes, ErrorCode, ErrorKind, Message};
use crate::worker::mutant::{Faithful, Selected};

// ---------------------------------------------------------------------------
// A fake job: each task echoes every message as one output and keeps what
// it saw; its snapshot is that list.

#[derive(Clone)]
struct EchoJob {
    inputs: Vec<String>,
    /// A message at this offset is a bad record under `fail`.
    fail_at: Option<i64>,
}

#[derive(Debug, PartialEq)]
struct EchoTask {
    task: i32,
    seen: Vec<(String, i64)>,
    finished: bool,
    fail_at: Option<i64>,
}

impl JobLogic for EchoJob {
    type Task = EchoTask;

    fn name(&self) -> &str {
        "echo"
    }

    fn input_topics(&self) -> &[String] {
        &self.inputs
    }

    fn new_task(&self, task: i32, _now: Duration) -> Result<EchoTask> {
        Ok(EchoTask {
            task,
            seen: Vec::new(),
            finished: false,
            fail_at: self.fail_at,
        })
    }

    fn restore_task(&self, task: i32, snapshot: &[u8], _now: Duration) -> Result<EchoTask> {
        let (snapshot_task, seen, finished): (i32, Vec<(String, i64)>, bool) =
            serde_json::from_slice(snapshot).map_err(|e| Error::CorruptSnapshot(e.to_string()))?;
        if snapshot_task != task {
            return Err(Error::CorruptSnapshot(format!(
                "snapshot of task {snapshot_task}"
            )));
        }
        Ok(EchoTask {
            task,
            seen,
            finished,
            fail_at: self.fail_at,
        })
    }
}

impl TaskLogic for EchoTask {
    fn process(
        &mut self,
        message: &Message,
        _now: Duration,
        out: &mut Vec<ProducerRecord>,
    ) -> Result<()> {
        if self.fail_at == Some(message.offset) {
            return Err(Error::BadRecord(format!(
                "topic {} partition {} offset {}: not JSON",
                message.topic, message.partition, message.offset
            )));
        }
        self.seen.push((message.topic.to_string(), message.offset));
        out.push(output(&format!("{}:{}", message.partition, message.offset)));
        Ok(())
    }

    fn on_processing_time(&mut self, _now: Duration, _out: &mut Vec<ProducerRecord>) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<ProducerRecord>) -> Result<()> {
        self.finished = true;
        out.push(output(&format!("{}:end", self.task)));
        Ok(())
    }

    fn snapshot(&self, _now: Duration) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&(self.task, &self.seen, self.finished)).expect("serializes"))
    }

    fn watermark(&self) -> EventTime {
        self.seen
            .last()
            .map_or(EventTime::MIN, |(_, offset)| *offset)
    }
}

fn output(value: &str) -> ProducerRecord {
    ProducerRecord {
        topic: "out".into(),
        partition: None,
        key: Some(b"k".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

fn message(topic: &str, partition: i32, offset: i64) -> ConsumerEvent {
    ConsumerEvent::Message(Message {
        topic: topic.into(),
        partition,
        offset,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        timestamp_ms: 0,
        headers: Vec::new(),
    })
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn committed_at(offset: i64, checkpoint: u64, incarnation: u64) -> Option<OffsetAndMetadata> {
    Some(OffsetAndMetadata {
        offset,
        metadata: checkpoint_metadata(checkpoint, incarnation),
    })
}

fn fenced() -> TransportError {
    TransportError::new(ErrorKind::Fenced, ErrorCode::ProducerFenced, "fenced")
}

fn abortable(code: ErrorCode) -> TransportError {
    TransportError::new(ErrorKind::Abortable, code, "abortable")
}

fn timeout() -> TransportError {
    TransportError::new(ErrorKind::Timeout, ErrorCode::TimedOut, "timed out")
}

const INCARNATION: u64 = 0xabc;
const POLL: Command = Command::Poll {
    max_events: 500,
    timeout: Duration::from_millis(100),
};

fn config(delivery: Delivery) -> WorkerConfig {
    let mut config = WorkerConfig::new("w1", INCARNATION, delivery);
    config.checkpoint_interval = Duration::from_secs(1);
    config.retries_max = 2;
    config
}

/// The core with the clock the tests move.
struct Test<M: Mutants> {
    core: WorkerCore<EchoJob, M>,
    now: Duration,
}

fn worker(delivery: Delivery) -> Test<Faithful> {
    worker_with(config(delivery), Faithful, None)
}

fn worker_with<M: Mutants>(config: WorkerConfig, mutants: M, fail_at: Option<i64>) -> Test<M> {
    let job = EchoJob {
        inputs: vec!["in".into()],
        fail_at,
    };
    Test {
        core: WorkerCore::new(job, config, mutants).expect("a valid config"),
        now: Duration::ZERO,
    }
}

impl<M: Mutants> Test<M> {
    fn ok(&mut self) -> Command {
        self.core.on_done(self.now, Ok(()))
    }

    fn poll(&mut self, events: Vec<ConsumerEvent>) -> Command {
        self.core.on_polled(self.now, Ok(events))
    }

    /// Starts the worker up to its first poll.
    fn started(&mut self) {
        let delivery = self.core.config().delivery;
        let mut command = self.core.start(self.now);
        if delivery == Delivery::ExactlyOnce {
            assert_eq!(command, Command::InitTransactions);
            command = self.ok();
        }
        assert_eq!(command, Command::Subscribe(vec!["in".into()]));
        assert_eq!(self.ok(), POLL);
    }

    /// Assigns these partitions of `in`, none committed; up to the next poll.
    fn assigned_fresh(&mut self, partitions: &[i32]) {
        let tps: Vec<TopicPartition> = partitions.iter().map(|p| tp("in", *p)).collect();
        let command = self.poll(vec![ConsumerEvent::Assigned(tps.clone())]);
        assert_eq!(command, Command::Committed(tps.clone()));
        let command = self.core.on_committed(self.now, Ok(vec![None; tps.len()]));
        let seeks: Vec<(TopicPartition, i64)> = tps.iter().map(|tp| (tp.clone(), 0)).collect();
        assert_eq!(command, Command::Seek(seeks));
        assert_eq!(self.ok(), POLL);
    }

    /// Answers a transaction's begin and sends until the next other command.
    fn after_sends(&mut self, mut command: Command, sent: &mut Vec<String>) -> Command {
        loop {
            match command {
                Command::BeginTransaction => command = self.ok(),
                Command::Send(records) => {
                    sent.extend(records.iter().map(value_of));
                    command = self.ok();
                }
                other => return other,
            }
        }
    }
    /// Answers a checkpoint's snapshot writes, offsets, commit and
    /// collection until the next other command; returns the offsets it sent
    /// to the transaction and that command.
    fn through_checkpoint(
        &mut self,
        mut command: Command,
    ) -> (Vec<(TopicPartition, OffsetAndMetadata)>, Command) {
        let mut committed = Vec::new();
        loop {
            command = match command {
                Command::WriteSnapshot(..) => {
                    self.core.on_snapshot_written(self.now, Ok(Vec::new()))
                }
                Command::Collect { .. } => self.core.on_collected(self.now, Ok(0)),
                Command::SendOffsets { offsets, .. } => {
                    committed = offsets;
                    self.ok()
                }
                Command::CommitTransaction => self.ok(),
                other => return (committed, other),
            }
        }
    }
}

fn value_of(record: &ProducerRecord) -> String {
    String::from_utf8(record.value.clone().unwrap_or_default()).expect("utf-8")
}

fn snapshot_id(task: i32, checkpoint: u64) -> SnapshotId {
    SnapshotId {
        job: "echo".into(),
        task,
        checkpoint,
        incarnation: INCARNATION,
    }
}

fn offsets(entries: &[(i32, i64)], checkpoint: u64) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    entries
        .iter()
        .map(|(partition, offset)| {
            let metadata = checkpoint_metadata(checkpoint, INCARNATION);
            (
                tp("in", *partition),
                OffsetAndMetadata {
                    offset: *offset,
                    metadata,
                },
            )
        })
        .collect()
}

/// Drives one exactly-once checkpoint from its first command to the poll
/// after it, answering everything with success; returns the snapshot ids
/// written and the offsets sent.
fn commit_checkpoint<M: Mutants>(
    test: &mut Test<M>,
    mut command: Command,
) -> (Vec<SnapshotId>, Vec<(TopicPartition, OffsetAndMetadata)>) {
    let mut written = Vec::new();
    let mut sent_offsets = Vec::new();
    loop {
        command = match command {
            Command::WriteSnapshot(id, _) => {
                written.push(id);
                test.core.on_snapshot_written(test.now, Ok(Vec::new()))
            }
            Command::BeginTransaction | Command::Send(_) | Command::CommitTransaction => test.ok(),
            Command::SendOffsets { offsets, .. } => {
                sent_offsets = offsets;
                test.ok()
            }
            Command::Collect { .. } => test.core.on_collected(test.now, Ok(0)),
            other => {
                assert_eq!(other, POLL, "a checkpoint ends in a poll");
                return (written, sent_offsets);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Start and assignment

#[test]
fn worker_start_an_exactly_once_worker_inits_transactions_then_subscribes_to_the_job_inputs() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    assert_eq!(test.core.transactional_id().as_deref(), Some("echo-w1"));
    assert_eq!(test.core.group_id(), "echo");
}

#[test]
fn worker_start_an_at_least_once_worker_has_no_transactional_id_and_subscribes_at_once() {
    let mut test = worker(Delivery::AtLeastOnce);
    test.started();
    assert_eq!(test.core.transactional_id(), None);
}

#[test]
fn worker_start_a_transaction_timeout_not_above_interval_plus_restart_budget_is_refused() {
    let mut config = config(Delivery::ExactlyOnce);
    config.checkpoint_interval = Duration::from_secs(30);
    config.restart_budget = Duration::from_secs(30);
    config.transaction_timeout = Duration::from_secs(60);
    let job = EchoJob {
        inputs: vec!["in".into()],
        fail_at: None,
    };
    let error = WorkerCore::new(job.clone(), config.clone(), Faithful)
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("must be greater than"),
        "{error}"
    );
    config.delivery = Delivery::AtLeastOnce;
    assert!(
        WorkerCore::new(job, config, Faithful).is_ok(),
        "no transaction, no trap"
    );
}

#[test]
fn recovery_a_partition_without_committed_offsets_starts_an_empty_task_from_offset_zero() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0, 2]);
    assert_eq!(
        test.core
            .task_watermarks()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(test.core.task_checkpoints()[&0], None);
}

#[test]
fn recovery_a_task_is_restored_from_the_snapshot_its_committed_offsets_name_and_seeked_to_them() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    let command = test.poll(vec![ConsumerEvent::Assigned(vec![tp("in", 1)])]);
    assert_eq!(command, Command::Committed(vec![tp("in", 1)]));
    let command = test
        .core
        .on_committed(test.now, Ok(vec![committed_at(7, 4, 0x99)]));
    let id = SnapshotId {
        job: "echo".into(),
        task: 1,
        checkpoint: 4,
        incarnation: 0x99,
    };
    assert_eq!(command, Command::ReadSnapshot(id));
    let snapshot = serde_json::to_vec(&(1, vec![("in", 6)], false)).unwrap();
    let command = test.core.on_snapshot_read(test.now, Ok(snapshot));
    assert_eq!(command, Command::Seek(vec![(tp("in", 1), 7)]));
    assert_eq!(test.ok(), POLL);
    assert_eq!(
        test.core.task_watermarks()[&1],
        6,
        "the restored state, watermark included"
    );
    assert_eq!(test.core.task_checkpoints()[&1], Some((4, 0x99)));
    // Its next checkpoint has a larger number than the restored one.
    test.now = Duration::from_secs(2);
    let command = test.poll(vec![message("in", 1, 7)]);
    let (written, _) = commit_checkpoint(&mut test, command);
    assert_eq!(written, vec![snapshot_id(1, 5)]);
}

#[test]
fn recovery_a_missing_snapshot_named_by_the_committed_offsets_stops_the_worker_and_never_starts_empty()
 {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.poll(vec![ConsumerEvent::Assigned(vec![tp("in", 0)])]);
    test.core
        .on_committed(test.now, Ok(vec![committed_at(3, 2, 1)]));
    let missing = Error::MissingSnapshot("echo/task-0/checkpoint-2".into());
    let command = test.core.on_snapshot_read(test.now, Err(missing));
    let Command::Stop(Stopped::Failed(reason)) = command else {
        panic!("expected a stop, got {command:?}");
    };
    assert!(
        reason.contains("task 0") && reason.contains("missing snapshot"),
        "{reason}"
    );
    assert!(test.core.task_watermarks().is_empty(), "no task runs");
}

#[test]
fn recovery_a_corrupt_snapshot_stops_the_worker() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.poll(vec![ConsumerEvent::Assigned(vec![tp("in", 0)])]);
    test.core
        .on_committed(test.now, Ok(vec![committed_at(3, 2, 1)]));
    let command = test
        .core
        .on_snapshot_read(test.now, Ok(b"not json".to_vec()));
    assert!(
        matches!(command, Command::Stop(Stopped::Failed(ref r)) if r.contains("corrupt")),
        "{command:?}"
    );
}

#[test]
fn recovery_offsets_without_checkpoint_metadata_stop_the_worker() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.poll(vec![ConsumerEvent::Assigned(vec![tp("in", 0)])]);
    let foreign = Some(OffsetAndMetadata {
        offset: 5,
        metadata: String::new(),
    });
    let command = test.core.on_committed(test.now, Ok(vec![foreign]));
    assert!(
        matches!(command, Command::Stop(Stopped::Failed(ref r)) if r.contains("not a checkpoint")),
        "{command:?}"
    );
}

/// A started worker (init and subscribe answered) of a job reading `a`
/// and `b`.
fn started_on_two_inputs() -> (WorkerCore<EchoJob, Faithful>, Duration) {
    let job = EchoJob {
        inputs: vec!["a".into(), "b".into()],
        fail_at: None,
    };
    let mut core = WorkerCore::new(job, config(Delivery::ExactlyOnce), Faithful).unwrap();
    let now = Duration::ZERO;
    core.start(now);
    core.on_done(now, Ok(()));
    core.on_done(now, Ok(()));
    (core, now)
}

#[test]
fn recovery_inputs_of_one_task_naming_different_checkpoints_stop_the_worker() {
    let (mut core, now) = started_on_two_inputs();
    let command = core.on_polled(
        now,
        Ok(vec![ConsumerEvent::Assigned(vec![tp("a", 0), tp("b", 0)])]),
    );
    assert_eq!(command, Command::Committed(vec![tp("a", 0), tp("b", 0)]));
    let command = core.on_committed(now, Ok(vec![committed_at(1, 3, 1), committed_at(1, 4, 1)]));
    assert!(
        matches!(command, Command::Stop(Stopped::Failed(ref r)) if r.contains("different")),
        "{command:?}"
    );
}

#[test]
fn tasks_an_assignment_that_splits_a_co_partitioned_task_stops_the_worker() {
    let (mut core, now) = started_on_two_inputs();
    let command = core.on_polled(
        now,
        Ok(vec![ConsumerEvent::Assigned(vec![tp("a", 0), tp("b", 1)])]),
    );
    assert!(
        matches!(command, Command::Stop(Stopped::Failed(ref r)) if r.contains("co-partitioned")),
        "{command:?}"
    );
}

// ---------------------------------------------------------------------------
// Processing and checkpoints

#[test]
fn transactions_outputs_are_produced_inside_a_transaction_begun_before_the_first_send() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    let command = test.poll(vec![message("in", 0, 0), message("in", 0, 1)]);
    assert_eq!(command, Command::BeginTransaction);
    let Command::Send(records) = test.ok() else {
        panic!("outputs are sent after the begin");
    };
    assert_eq!(
        records.iter().map(value_of).collect::<Vec<_>>(),
        ["0:0", "0:1"]
    );
    assert_eq!(test.ok(), POLL, "no checkpoint before the interval");
    let Command::Send(_) = test.poll(vec![message("in", 0, 2)]) else {
        panic!("the open transaction takes more outputs without a second begin");
    };
}

#[test]
fn checkpoint_every_snapshot_is_written_before_the_offsets_with_its_id_are_sent_and_then_committed()
{
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0, 1]);
    test.now = Duration::from_millis(1_500);
    let mut sent = Vec::new();
    let command = test.poll(vec![
        message("in", 0, 0),
        message("in", 1, 0),
        message("in", 1, 1),
    ]);
    let command = test.after_sends(command, &mut sent);
    let Command::WriteSnapshot(id, bytes) = command else {
        panic!("the interval passed: a checkpoint, snapshots first; got {command:?}");
    };
    assert_eq!(id, snapshot_id(0, 1));
    assert_eq!(
        *bytes,
        serde_json::to_vec(&(0, vec![("in", 0)], false)).unwrap()
    );
    let Command::WriteSnapshot(id, _) = test.core.on_snapshot_written(test.now, Ok(Vec::new()))
    else {
        panic!("the second task's snapshot");
    };
    assert_eq!(id, snapshot_id(1, 1));
    let command = test.core.on_snapshot_written(test.now, Ok(Vec::new()));
    assert_eq!(
        command,
        Command::SendOffsets {
            offsets: offsets(&[(0, 1), (1, 2)], 1),
            generation_fencing: true
        }
    );
    assert_eq!(test.ok(), Command::CommitTransaction);
    assert_eq!(test.ok(), Command::Collect { task: 0, below: 1 });
    assert_eq!(
        test.core.on_collected(test.now, Ok(0)),
        Command::Collect { task: 1, below: 1 }
    );
    assert_eq!(test.core.on_collected(test.now, Ok(0)), POLL);
    assert_eq!(test.core.task_checkpoints()[&1], Some((1, INCARNATION)));
}

#[test]
fn checkpoint_a_store_that_asks_for_records_gets_them_produced_inside_the_transaction_before_the_offsets()
 {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let command = test.after_sends(command, &mut sent);
    assert!(matches!(command, Command::WriteSnapshot(..)));
    let command = test
        .core
        .on_snapshot_written(test.now, Ok(vec![output("chunk-0")]));
    assert_eq!(command, Command::Send(vec![output("chunk-0")]));
    assert!(
        matches!(test.ok(), Command::SendOffsets { .. }),
        "the chunks go before the offsets"
    );
}

#[test]
fn checkpoint_nothing_is_committed_while_nothing_was_read() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(5);
    assert_eq!(test.poll(Vec::new()), POLL);
}

#[test]
fn checkpoint_a_revoke_checkpoints_before_the_next_poll_then_drops_the_tasks() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    let mut sent = Vec::new();
    let command = test.poll(vec![
        message("in", 0, 0),
        ConsumerEvent::Revoked(vec![tp("in", 0)]),
        message("in", 0, 1),
    ]);
    let command = test.after_sends(command, &mut sent);
    assert!(
        matches!(command, Command::WriteSnapshot(..)),
        "checkpoint on revoke: {command:?}"
    );
    let (_, sent_offsets) = commit_checkpoint(&mut test, command);
    assert_eq!(
        sent_offsets,
        offsets(&[(0, 1)], 1),
        "what was read before the revoke"
    );
    assert_eq!(
        sent,
        ["0:0"],
        "the message after the revoke is not processed by this worker"
    );
    assert!(test.core.task_watermarks().is_empty(), "tasks dropped");
}

#[test]
fn fencing_lost_partitions_abort_the_open_transaction_and_are_never_committed() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    let mut sent = Vec::new();
    let command = test.poll(vec![
        message("in", 0, 0),
        ConsumerEvent::Lost(vec![tp("in", 0)]),
    ]);
    let command = test.after_sends(command, &mut sent);
    assert_eq!(command, Command::AbortTransaction);
    test.now = Duration::from_secs(5);
    assert_eq!(test.ok(), POLL, "nothing left to commit");
    assert!(test.core.task_watermarks().is_empty());
}

#[test]
fn fencing_a_fenced_producer_stops_the_worker_at_once() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    assert!(matches!(
        test.after_sends(command, &mut sent),
        Command::WriteSnapshot(..)
    ));
    let command = test.core.on_snapshot_written(test.now, Ok(Vec::new()));
    assert!(matches!(command, Command::SendOffsets { .. }));
    let command = test.core.on_done(test.now, Err(fenced()));
    assert_eq!(
        command,
        Command::Stop(Stopped::Fenced(fenced())),
        "no abort, no more writes"
    );
    assert!(test.core.task_watermarks().is_empty());
}

#[test]
fn fencing_a_rejected_generation_aborts_the_transaction_and_rewinds() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0), message("in", 0, 1)]);
    let command = test.after_sends(command, &mut sent);
    let command = match command {
        Command::WriteSnapshot(..) => test.core.on_snapshot_written(test.now, Ok(Vec::new())),
        other => panic!("{other:?}"),
    };
    assert!(matches!(command, Command::SendOffsets { .. }));
    let command = test
        .core
        .on_done(test.now, Err(abortable(ErrorCode::IllegalGeneration)));
    assert_eq!(command, Command::AbortTransaction);
    assert_eq!(
        test.ok(),
        Command::Seek(vec![(tp("in", 0), 0)]),
        "back to the committed offset"
    );
    assert_eq!(test.ok(), POLL);
    assert_eq!(
        test.core.task_watermarks()[&0],
        EventTime::MIN,
        "the state whose outputs aborted is gone"
    );
}

#[test]
fn abort_an_abortable_commit_rewinds_every_task_to_its_last_committed_checkpoint() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0, 1]);
    // Checkpoint 1 commits 0:0 and 1:0.
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0), message("in", 1, 0)]);
    let command = test.after_sends(command, &mut sent);
    commit_checkpoint(&mut test, command);
    // Checkpoint 2's commit is abortable.
    test.now = Duration::from_secs(4);
    let command = test.poll(vec![message("in", 0, 1), message("in", 1, 1)]);
    let mut command = test.after_sends(command, &mut sent);
    while let Command::WriteSnapshot(..) = command {
        command = test.core.on_snapshot_written(test.now, Ok(Vec::new()));
    }
    assert!(matches!(command, Command::SendOffsets { .. }));
    assert_eq!(test.ok(), Command::CommitTransaction);
    let command = test
        .core
        .on_done(test.now, Err(abortable(ErrorCode::InvalidTxnState)));
    assert_eq!(command, Command::AbortTransaction);
    assert_eq!(
        test.ok(),
        Command::Seek(vec![(tp("in", 0), 1), (tp("in", 1), 1)])
    );
    assert_eq!(test.ok(), POLL);
    let watermarks = test.core.task_watermarks();
    assert_eq!(
        (watermarks[&0], watermarks[&1]),
        (0, 0),
        "the state of checkpoint 1"
    );
}

#[test]
fn abort_a_snapshot_that_cannot_be_written_aborts_the_checkpoint_and_rewinds() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let command = test.after_sends(command, &mut sent);
    let Command::WriteSnapshot(id, bytes) = command else {
        panic!("{command:?}")
    };
    // Store errors are retried (twice here), then the checkpoint aborts.
    let store = || Err(Error::Store("disk full".into()));
    let retry = test.core.on_snapshot_written(test.now, store());
    assert_eq!(retry, Command::WriteSnapshot(id.clone(), bytes.clone()));
    test.core.on_snapshot_written(test.now, store());
    assert_eq!(
        test.core.on_snapshot_written(test.now, store()),
        Command::AbortTransaction
    );
    assert_eq!(test.ok(), Command::Seek(vec![(tp("in", 0), 0)]));
}

#[test]
fn abort_a_rewind_drops_the_messages_already_polled() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    let command = test.poll(vec![message("in", 0, 0)]);
    assert_eq!(command, Command::BeginTransaction);
    let command = test.ok();
    assert!(matches!(command, Command::Send(_)));
    // The send fails at once (an oversized record): abort and rewind, and
    // what was polled after it is read again after the seek, not now.
    let too_large = TransportError::new(
        ErrorKind::Abortable,
        ErrorCode::MessageTooLarge,
        "too large",
    );
    test.core.events.push_back(message("in", 0, 1));
    assert_eq!(
        test.core.on_done(test.now, Err(too_large)),
        Command::AbortTransaction
    );
    assert_eq!(test.ok(), Command::Seek(vec![(tp("in", 0), 0)]));
    assert_eq!(
        test.ok(),
        POLL,
        "offset 1 is not processed from the old batch"
    );
    assert_eq!(test.core.task_watermarks()[&0], EventTime::MIN);
}

#[test]
fn retries_a_timed_out_commit_is_called_again_then_the_worker_stops() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    assert!(matches!(
        test.after_sends(command, &mut sent),
        Command::WriteSnapshot(..)
    ));
    test.core.on_snapshot_written(test.now, Ok(Vec::new()));
    assert_eq!(test.ok(), Command::CommitTransaction);
    assert_eq!(
        test.core.on_done(test.now, Err(timeout())),
        Command::CommitTransaction
    );
    assert_eq!(
        test.core.on_done(test.now, Err(timeout())),
        Command::CommitTransaction
    );
    let command = test.core.on_done(test.now, Err(timeout()));
    assert!(
        matches!(command, Command::Stop(Stopped::Failed(_))),
        "retries are bounded: {command:?}"
    );
}

#[test]
fn retries_a_retriable_poll_error_polls_again() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    let transient =
        TransportError::new(ErrorKind::Retriable, ErrorCode::BrokerNotAvailable, "down");
    assert_eq!(test.core.on_polled(test.now, Err(transient)), POLL);
}

#[test]
fn fencing_max_poll_exceeded_drops_the_tasks_as_lost() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    let left = TransportError::new(ErrorKind::Retriable, ErrorCode::MaxPollExceeded, "left");
    assert_eq!(test.core.on_polled(test.now, Err(left)), POLL);
    assert!(test.core.task_watermarks().is_empty());
}

#[test]
fn bad_records_a_bad_record_under_fail_stops_the_worker_naming_it() {
    let mut test = worker_with(config(Delivery::ExactlyOnce), Faithful, Some(3));
    test.started();
    test.assigned_fresh(&[0]);
    let command = test.poll(vec![message("in", 0, 3)]);
    let Command::Stop(Stopped::Failed(reason)) = command else {
        panic!("{command:?}")
    };
    assert!(reason.contains("partition 0 offset 3"), "{reason}");
}

// ---------------------------------------------------------------------------
// At-least-once, bounded input, stop

#[test]
fn at_least_once_flushes_the_outputs_before_committing_the_offsets_without_a_transaction() {
    let mut test = worker(Delivery::AtLeastOnce);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let command = test.poll(vec![message("in", 0, 0)]);
    assert!(matches!(command, Command::Send(_)), "no begin: {command:?}");
    assert!(matches!(test.ok(), Command::WriteSnapshot(..)));
    assert_eq!(
        test.core.on_snapshot_written(test.now, Ok(Vec::new())),
        Command::Flush
    );
    assert_eq!(test.ok(), Command::CommitOffsets(offsets(&[(0, 1)], 1)));
    assert_eq!(test.ok(), Command::Collect { task: 0, below: 1 });
}

#[test]
fn bounded_a_task_at_its_end_offsets_finishes_commits_and_the_worker_stops() {
    let mut config = config(Delivery::ExactlyOnce);
    config.end_offsets = Some(BTreeMap::from([(tp("in", 0), 2), (tp("in", 1), 1)]));
    let mut test = worker_with(config, Faithful, None);
    test.started();
    test.assigned_fresh(&[0, 1]);
    let mut sent = Vec::new();
    let command = test.poll(vec![
        message("in", 0, 0),
        message("in", 0, 1),
        message("in", 0, 2),
        message("in", 1, 0),
    ]);
    let command = test.after_sends(command, &mut sent);
    assert_eq!(
        sent,
        ["0:0", "0:1", "1:0", "0:end", "1:end"],
        "offset 2 is past the end"
    );
    let (committed, command) = test.through_checkpoint(command);
    assert_eq!(command, Command::Stop(Stopped::Finished));
    assert_eq!(
        committed,
        offsets(&[(0, 2), (1, 1)], 1),
        "a checkpoint at once, not at the interval"
    );
}

#[test]
fn bounded_a_log_ending_in_a_transaction_marker_finishes_at_the_consumers_position() {
    // Partition 0's log: records at 0 and 1, the commit marker at 2, end 3.
    // No record carries offset 2, so the task's own position stops at 2;
    // after a poll that brings nothing, the consumer's position (3, past
    // the marker) shows the end was reached.
    let mut config = config(Delivery::ExactlyOnce);
    config.end_offsets = Some(BTreeMap::from([(tp("in", 0), 3)]));
    let mut test = worker_with(config, Faithful, None);
    test.started();
    test.assigned_fresh(&[0]);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0), message("in", 0, 1)]);
    assert_eq!(test.after_sends(command, &mut sent), POLL);
    assert_eq!(sent, ["0:0", "0:1"], "not finished: its position is 2 of 3");
    assert_eq!(
        test.poll(Vec::new()),
        Command::Positions(vec![tp("in", 0)]),
        "an empty poll short of the end asks where the consumer is"
    );
    let command = test.core.on_positions(test.now, Ok(vec![Some(2)]));
    assert_eq!(command, POLL, "the consumer is no further: poll again");
    assert_eq!(test.poll(Vec::new()), Command::Positions(vec![tp("in", 0)]));
    let command = test.core.on_positions(test.now, Ok(vec![Some(3)]));
    let command = test.after_sends(command, &mut sent);
    assert_eq!(sent.last().map(String::as_str), Some("0:end"));
    let (committed, command) = test.through_checkpoint(command);
    assert_eq!(command, Command::Stop(Stopped::Finished));
    assert_eq!(
        committed,
        offsets(&[(0, 3)], 1),
        "the offset past the marker"
    );
}

#[test]
fn bounded_a_consumer_position_past_the_end_moves_a_task_only_to_its_end() {
    // Records from the end on are not this run's: a consumer that read past
    // the end (and handed out what the core ignored) must not carry the
    // committed position beyond it.
    let mut config = config(Delivery::ExactlyOnce);
    config.end_offsets = Some(BTreeMap::from([(tp("in", 0), 2)]));
    let mut test = worker_with(config, Faithful, None);
    test.started();
    test.assigned_fresh(&[0]);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    assert_eq!(test.after_sends(command, &mut sent), POLL);
    assert_eq!(test.poll(Vec::new()), Command::Positions(vec![tp("in", 0)]));
    let command = test.core.on_positions(test.now, Ok(vec![Some(9)]));
    let command = test.after_sends(command, &mut sent);
    let (committed, command) = test.through_checkpoint(command);
    assert_eq!(command, Command::Stop(Stopped::Finished));
    assert_eq!(committed, offsets(&[(0, 2)], 1));
}

#[test]
fn bounded_an_unbounded_worker_never_asks_for_positions() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    assert_eq!(test.poll(Vec::new()), POLL);
}

#[test]
fn bounded_a_refused_generation_at_the_end_of_the_input_polls_before_it_finishes_again() {
    // Every task is at its end; the coordinator refuses the generation (the
    // member was removed while it was frozen). After the rewind the worker
    // must poll, so that the consumer can hand out the lost session, before
    // it finishes and checkpoints again: else it loops forever, refused.
    let mut config = config(Delivery::ExactlyOnce);
    config.end_offsets = Some(BTreeMap::from([(tp("in", 0), 1)]));
    let mut test = worker_with(config, Faithful, None);
    test.started();
    test.assigned_fresh(&[0]);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let mut command = test.after_sends(command, &mut sent);
    loop {
        command = match command {
            Command::WriteSnapshot(..) => test.core.on_snapshot_written(test.now, Ok(Vec::new())),
            Command::SendOffsets { .. } => break,
            other => panic!("{other:?}"),
        };
    }
    let command = test
        .core
        .on_done(test.now, Err(abortable(ErrorCode::UnknownMemberId)));
    assert_eq!(command, Command::AbortTransaction);
    assert_eq!(test.ok(), Command::Seek(vec![(tp("in", 0), 0)]));
    assert_eq!(test.ok(), POLL, "a poll before anything is finished again");
    let command = test.poll(vec![ConsumerEvent::Lost(vec![tp("in", 0)])]);
    assert_eq!(
        command, POLL,
        "the lost task is dropped, never committed for"
    );
}

#[test]
fn bounded_a_task_whose_input_is_empty_finishes_as_soon_as_it_is_assigned() {
    let mut config = config(Delivery::ExactlyOnce);
    config.end_offsets = Some(BTreeMap::from([(tp("in", 0), 0)]));
    let mut test = worker_with(config, Faithful, None);
    test.started();
    test.poll(vec![ConsumerEvent::Assigned(vec![tp("in", 0)])]);
    test.core.on_committed(test.now, Ok(vec![None]));
    let mut sent = Vec::new();
    let command = test.ok();
    let command = test.after_sends(command, &mut sent);
    assert_eq!(sent, ["0:end"]);
    assert!(matches!(command, Command::WriteSnapshot(..)), "{command:?}");
}

#[test]
fn stop_a_requested_stop_commits_a_last_checkpoint_then_stops() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    assert_eq!(test.after_sends(command, &mut sent), POLL);
    test.core.request_stop();
    let mut command = test.poll(Vec::new());
    let mut committed = false;
    loop {
        command = match command {
            Command::WriteSnapshot(..) => test.core.on_snapshot_written(test.now, Ok(Vec::new())),
            Command::Collect { .. } => test.core.on_collected(test.now, Ok(0)),
            Command::SendOffsets { .. } => test.ok(),
            Command::CommitTransaction => {
                committed = true;
                test.ok()
            }
            other => break assert_eq!(other, Command::Stop(Stopped::Requested)),
        }
    }
    assert!(committed, "the last checkpoint committed");
}

// ---------------------------------------------------------------------------
// Mutants: each changes the one decision it names.

#[test]
fn mutant_commit_before_snapshot_commits_first_and_writes_the_snapshots_after() {
    let mut test = worker_with(
        config(Delivery::ExactlyOnce),
        Selected(Some(Mutant::CommitBeforeSnapshot)),
        None,
    );
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let command = test.after_sends(command, &mut sent);
    assert!(
        matches!(command, Command::SendOffsets { .. }),
        "{command:?}"
    );
    assert_eq!(test.ok(), Command::CommitTransaction);
    assert!(
        matches!(test.ok(), Command::WriteSnapshot(..)),
        "the snapshot after the commit"
    );
}

#[test]
fn mutant_skip_fencing_uses_a_transactional_id_per_incarnation() {
    let test = worker_with(
        config(Delivery::ExactlyOnce),
        Selected(Some(Mutant::SkipFencing)),
        None,
    );
    assert_eq!(
        test.core.transactional_id().as_deref(),
        Some("echo-w1-0000000000000abc")
    );
    let faithful = worker(Delivery::ExactlyOnce);
    assert_eq!(faithful.core.transactional_id().as_deref(), Some("echo-w1"));
}

#[test]
fn mutant_skip_fencing_sends_offsets_without_the_generation() {
    let mut test = worker_with(
        config(Delivery::ExactlyOnce),
        Selected(Some(Mutant::SkipFencing)),
        None,
    );
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let Command::WriteSnapshot(..) = test.after_sends(command, &mut sent) else {
        panic!("a checkpoint")
    };
    let command = test.core.on_snapshot_written(test.now, Ok(Vec::new()));
    assert!(
        matches!(
            command,
            Command::SendOffsets {
                generation_fencing: false,
                ..
            }
        ),
        "{command:?}"
    );
}

#[test]
fn mutant_restore_empty_ignores_the_committed_snapshot() {
    let mut test = worker_with(
        config(Delivery::ExactlyOnce),
        Selected(Some(Mutant::RestoreEmpty)),
        None,
    );
    test.started();
    test.poll(vec![ConsumerEvent::Assigned(vec![tp("in", 0)])]);
    test.core
        .on_committed(test.now, Ok(vec![committed_at(7, 4, 1)]));
    let snapshot = serde_json::to_vec(&(0, vec![("in", 6)], false)).unwrap();
    assert_eq!(
        test.core.on_snapshot_read(test.now, Ok(snapshot)),
        Command::Seek(vec![(tp("in", 0), 7)])
    );
    assert_eq!(
        test.core.task_watermarks()[&0],
        EventTime::MIN,
        "started empty at the committed offsets"
    );
}

#[test]
fn mutant_offsets_outside_transaction_commits_the_offsets_before_the_transaction() {
    let mutants = Selected(Some(Mutant::OffsetsOutsideTransaction));
    let mut test = worker_with(config(Delivery::ExactlyOnce), mutants, None);
    test.started();
    test.assigned_fresh(&[0]);
    test.now = Duration::from_secs(2);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let command = test.after_sends(command, &mut sent);
    let command = match command {
        Command::WriteSnapshot(..) => test.core.on_snapshot_written(test.now, Ok(Vec::new())),
        other => other,
    };
    assert_eq!(command, Command::CommitOffsets(offsets(&[(0, 1)], 1)));
    assert_eq!(test.ok(), Command::CommitTransaction);
}

#[test]
fn metadata_checkpoint_ids_round_trip_and_foreign_metadata_is_not_read_as_one() {
    let metadata = checkpoint_metadata(42, 0xdead_beef);
    assert_eq!(metadata, "eddy checkpoint=42 incarnation=00000000deadbeef");
    assert_eq!(
        parse_checkpoint_metadata(&metadata),
        Some((42, 0xdead_beef))
    );
    for foreign in [
        "",
        "worker",
        "eddy checkpoint=x incarnation=0000000000000001",
        "eddy checkpoint=1 incarnation=1",
    ] {
        assert_eq!(parse_checkpoint_metadata(foreign), None, "{foreign:?}");
    }
}

// ---------------------------------------------------------------------------
// Accessors for metrics

#[test]
fn metrics_positions_are_the_next_offsets_of_the_owned_partitions() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    assert!(test.core.positions().is_empty(), "no tasks, no positions");
    test.assigned_fresh(&[0, 1]);
    assert_eq!(
        test.core.positions(),
        BTreeMap::from([(tp("in", 0), 0), (tp("in", 1), 0)])
    );
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 1, 0), message("in", 1, 1)]);
    assert_eq!(test.after_sends(command, &mut sent), POLL);
    assert_eq!(
        test.core.positions(),
        BTreeMap::from([(tp("in", 0), 0), (tp("in", 1), 2)])
    );
}

#[test]
fn metrics_a_checkpoint_is_in_progress_from_its_snapshots_until_it_ends() {
    let mut test = worker(Delivery::ExactlyOnce);
    test.started();
    test.assigned_fresh(&[0]);
    assert_eq!(test.core.checkpoint_in_progress(), None);
    test.now = Duration::from_millis(1_500);
    let mut sent = Vec::new();
    let command = test.poll(vec![message("in", 0, 0)]);
    let command = test.after_sends(command, &mut sent);
    assert!(matches!(command, Command::WriteSnapshot(..)), "{command:?}");
    assert_eq!(test.core.checkpoint_in_progress(), Some(1));
    let (_, _) = commit_checkpoint(&mut test, command);
    assert_eq!(test.core.checkpoint_in_progress(), None);
    assert_eq!(test.core.stats().checkpoints_committed, 1);
}
