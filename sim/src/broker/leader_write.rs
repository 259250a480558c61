//! The leader's write path, shared by Produce and both coordinators:
//! validate and append a batch as the partition's leader, then wait until
//! the in-sync replicas have it (acks=all).

use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, TopicPartition};

use crate::broker::log::{PartitionLog, batch_size_bytes};
use crate::broker::producer_state::AppendCheck;
use crate::broker::{Broker, BrokerState, error_code_for_trace};
use crate::protocol::{ProduceBatch, ProducerId, codes};
use crate::trace::EventKind;

/// Checks that this broker leads `tp` in the requester's epoch.
pub(crate) fn check_leader(
    state: &BrokerState,
    tp: &TopicPartition,
    current_leader_epoch: Option<i32>,
) -> Result<i32, ErrorCode> {
    let Some(replica) = state.replicas.get(tp) else {
        return Err(if state.metadata.partition(tp).is_none() {
            ErrorCode::UnknownTopicOrPartition
        } else {
            ErrorCode::NotLeaderOrFollower
        });
    };
    // Replicas are made from metadata images, which only grow: a replica's
    // partition is always known (so the lookup above decides alone).
    debug_assert!(
        state.metadata.partition(tp).is_some(),
        "replica of {tp} without metadata"
    );
    if let Some(epoch) = current_leader_epoch {
        if epoch < replica.leader_epoch {
            return Err(codes::FENCED_LEADER_EPOCH);
        }
        if epoch > replica.leader_epoch {
            return Err(codes::UNKNOWN_LEADER_EPOCH);
        }
    }
    if !replica.is_leader() {
        return Err(ErrorCode::NotLeaderOrFollower);
    }
    Ok(replica.leader_epoch)
}

/// A write waiting for acks=all: done once the high watermark reaches
/// `required_offset` in the same leader epoch.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub required_offset: i64,
}

/// What KIP-890 verification found before a transactional append, checked
/// again at the append (Kafka 3.8's `VerificationGuard`; the check is
/// `UnifiedLog.append`'s: a transactional batch of a producer with no open
/// transaction on the partition needs a guard that is still valid, else
/// INVALID_TXN_STATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VerificationGuard {
    /// Nothing to check: verification is off, or this broker does not lead
    /// the partition (the append reports that).
    Unchecked,
    /// The producer had a transaction open on the partition, so the
    /// coordinator was not asked (Kafka's `VerificationGuard.SENTINEL`):
    /// it must still be open.
    OpenTransaction,
    /// The coordinator said the partition is in the producer's ongoing
    /// transaction when the producer had written `markers` markers here; a
    /// marker since then ended that transaction (Kafka clears the guard at
    /// the producer's next transactional append,
    /// `UnifiedLog.updateProducers`).
    Verified { markers: u64 },
}

impl VerificationGuard {
    /// Whether a transactional append of `producer_id` may go ahead now.
    pub(crate) fn check(
        self,
        log: &PartitionLog,
        producer_id: ProducerId,
    ) -> Result<(), ErrorCode> {
        let holds = match self {
            VerificationGuard::Unchecked => true,
            VerificationGuard::OpenTransaction => log.has_open_transaction(producer_id),
            VerificationGuard::Verified { markers } => {
                log.has_open_transaction(producer_id) || log.marker_count(producer_id) == markers
            }
        };
        if holds {
            Ok(())
        } else {
            Err(ErrorCode::InvalidTxnState)
        }
    }
}

/// What a leader append produced.
pub(crate) struct Appended {
    pub base_offset: i64,
    pub pending: PendingWrite,
}

/// Validates and appends a producer batch as leader.
pub(crate) fn append_to_leader(
    broker: &Broker,
    batch: ProduceBatch,
    allow_internal: bool,
) -> Result<Appended, ErrorCode> {
    let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
    let (producer_id, producer_epoch, sequence) =
        (batch.producer_id, batch.producer_epoch, batch.base_sequence);
    let result = append_to_leader_inner(broker, &tp, batch, allow_internal);
    if let Err(error) = &result {
        broker.trace_partition(
            EventKind::AppendRejected,
            &tp,
            [
                error_code_for_trace(Some(*error)),
                producer_id,
                i64::from(producer_epoch),
                i64::from(sequence),
            ],
        );
    }
    result
}

fn append_to_leader_inner(
    broker: &Broker,
    tp: &TopicPartition,
    batch: ProduceBatch,
    allow_internal: bool,
) -> Result<Appended, ErrorCode> {
    let moved;
    let appended;
    {
        let state = broker.state.borrow();
        let leader_epoch = check_leader(&state, tp, None)?;
        let replica = &state.replicas[tp];
        if replica.internal && !allow_internal {
            return Err(codes::INVALID_TOPIC);
        }
        if !allow_internal && batch.producer_id >= 0 && batch.base_sequence < 0 {
            return Err(ErrorCode::OutOfOrderSequenceNumber);
        }
        if batch_size_bytes(&batch.records) > broker.config.max_message_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        if replica.is_under_min_isr() {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        let mut disk = broker.disk.borrow_mut();
        let log = disk.logs.get_mut(tp).expect("a replica has a log");
        match log.check_produce(&batch) {
            Err(error) => return Err(error),
            Ok(AppendCheck::Duplicate {
                base_offset,
                last_offset,
            }) => {
                broker.trace_partition(
                    EventKind::DuplicateBatch,
                    tp,
                    [
                        base_offset,
                        batch.producer_id,
                        i64::from(batch.base_sequence),
                        0,
                    ],
                );
                return Ok(Appended {
                    base_offset,
                    pending: PendingWrite {
                        tp: tp.clone(),
                        leader_epoch,
                        required_offset: last_offset + 1,
                    },
                });
            }
            Ok(AppendCheck::Append) => {}
        }
        let records = batch.records.len() as i64;
        let producer_id = batch.producer_id;
        let base_offset = log.append_as_leader(batch, leader_epoch);
        broker.trace_partition(
            EventKind::Append,
            tp,
            [base_offset, records, i64::from(leader_epoch), producer_id],
        );
        moved = replica.maybe_advance_high_watermark(broker.id, log);
        appended = Appended {
            base_offset,
            pending: PendingWrite {
                tp: tp.clone(),
                leader_epoch,
                required_offset: log.log_end_offset(),
            },
        };
    }
    if let Some((from, to)) = moved {
        broker.trace_partition(EventKind::HighWatermark, tp, [from, to, 0, 0]);
    }
    broker.notify_changed();
    Ok(appended)
}

/// The state of a pending write now: `Some(outcome)` once decided.
fn write_outcome(broker: &Broker, pending: &PendingWrite) -> Option<Option<ErrorCode>> {
    let state = broker.state.borrow();
    let Some(replica) = state.replicas.get(&pending.tp) else {
        return Some(Some(ErrorCode::NotLeaderOrFollower));
    };
    if !replica.is_leader() || replica.leader_epoch != pending.leader_epoch {
        return Some(Some(ErrorCode::NotLeaderOrFollower));
    }
    let disk = broker.disk.borrow();
    let log = &disk.logs[&pending.tp];
    if log.log_end_offset() < pending.required_offset {
        // Truncated under us (cannot happen while we lead in this epoch).
        return Some(Some(ErrorCode::NotLeaderOrFollower));
    }
    // Kafka 3.8's `Partition.checkEnoughReplicasReachOffset`: done once
    // the HW passed the write, refused if the maximal ISR shrank under the
    // effective min ISR meanwhile. The HW does not move while the ISR is
    // under it (`maybeIncrementLeaderHW`), so a write appended before the
    // ISR shrank waits here until its timeout: REQUEST_TIMED_OUT.
    if log.high_watermark >= pending.required_offset {
        if replica.is_maximal_isr_under_min() {
            return Some(Some(ErrorCode::NotEnoughReplicasAfterAppend));
        }
        return Some(None);
    }
    None
}

/// Waits until every write is replicated to the ISR (the high watermark
/// passed it), the leader changed, or `timeout_ms` passed
/// (REQUEST_TIMED_OUT). Outcomes in the order of `pending`.
pub(crate) async fn wait_for_replication(
    broker: &Broker,
    pending: &[PendingWrite],
    timeout_ms: u64,
) -> Vec<Option<ErrorCode>> {
    let mut outcomes: Vec<Option<Option<ErrorCode>>> = vec![None; pending.len()];
    let mut changed = broker.changed.subscribe();
    let timeout = tokio::time::sleep(Duration::from_millis(timeout_ms));
    tokio::pin!(timeout);
    loop {
        for (outcome, write) in outcomes.iter_mut().zip(pending) {
            if outcome.is_none() {
                *outcome = write_outcome(broker, write);
            }
        }
        if outcomes.iter().all(Option::is_some) {
            break;
        }
        tokio::select! {
            biased;
            result = changed.changed() => if result.is_err() { break },
            _ = &mut timeout => break,
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Some(ErrorCode::RequestTimedOut)))
        .collect()
}

/// Waits until one write is replicated to the ISR, bounded by `timeout_ms`
/// (see [`wait_for_replication`]).
pub(crate) async fn await_replicated(
    broker: &Broker,
    pending: &PendingWrite,
    timeout_ms: u64,
) -> Result<(), ErrorCode> {
    let outcome = wait_for_replication(broker, std::slice::from_ref(pending), timeout_ms).await;
    match outcome[..] {
        [None] => Ok(()),
        [Some(error)] => Err(error),
        _ => unreachable!("one outcome per write"),
    }
}
