//! The read path: client and follower fetches, long-polled until a
//! partition has something to answer, and the leader's record of each
//! follower's progress (which moves the high watermark and the ISR).

use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{Isolation, TopicPartition};

use crate::broker::fetch_encoding::{FetchView, encode_fetch_body, encode_replica_fetch_body};
use crate::broker::leader_write::check_leader;
use crate::broker::log::PartitionLog;
use crate::broker::partition::Role;
use crate::broker::{Broker, BrokerDisk, BrokerState, error_code_for_trace};
use crate::protocol::{BrokerId, FetchPartition, codes};
use crate::trace::EventKind;
use crate::world::now_ms;

/// Who reads a partition, which decides how far they may read.
#[derive(Clone, Copy, Debug)]
struct FetchMode {
    /// A follower replicating the log (reads up to the log end).
    replica: bool,
    isolation: Isolation,
}

impl FetchMode {
    const REPLICA: FetchMode = FetchMode {
        replica: true,
        isolation: Isolation::ReadUncommitted,
    };

    /// The offset this reader may read up to (exclusive): the log end for a
    /// follower, the high watermark or the last stable offset for a client.
    fn upper_offset(self, log: &PartitionLog) -> i64 {
        match (self.replica, self.isolation) {
            (true, _) => log.log_end_offset(),
            (false, Isolation::ReadUncommitted) => log.high_watermark,
            (false, Isolation::ReadCommitted) => log.last_stable_offset(),
        }
    }
}

/// Updates what the leader knows of a follower from its fetch.
fn record_follower_fetch(
    broker: &Broker,
    follower: BrokerId,
    partitions: &[FetchPartition],
    tps: &[TopicPartition],
) {
    let now = now_ms();
    let mut moved = Vec::new();
    let mut wake_isr = false;
    {
        let mut state = broker.state.borrow_mut();
        let mut disk = broker.disk.borrow_mut();
        for (asked, tp) in partitions.iter().zip(tps) {
            let Some(replica) = state.replicas.get_mut(tp) else {
                continue;
            };
            if asked.current_leader_epoch != Some(replica.leader_epoch) {
                continue;
            }
            let in_maximal_isr = replica.in_maximal_isr(follower);
            let log = disk.logs.get_mut(tp).expect("a replica has a log");
            let end = log.log_end_offset();
            let Role::Leader(leader) = &mut replica.role else {
                continue;
            };
            if asked.fetch_offset > end {
                continue;
            }
            let Some(progress) = leader.followers.get_mut(&follower) else {
                continue;
            };
            progress.log_end_offset = Some(asked.fetch_offset);
            if asked.fetch_offset >= end {
                progress.last_caught_up_ms = now;
            } else if asked.fetch_offset >= progress.leader_end_offset_at_last_fetch {
                progress.last_caught_up_ms = progress.last_fetch_ms;
            }
            progress.leader_end_offset_at_last_fetch = end;
            progress.last_fetch_ms = now;
            if !in_maximal_isr
                && asked.fetch_offset >= log.high_watermark
                && asked.fetch_offset >= leader.epoch_start_offset
            {
                wake_isr = true;
            }
            if let Some(change) = replica.maybe_advance_high_watermark(broker.id, log) {
                moved.push((tp.clone(), change));
            }
        }
    }
    for (tp, (from, to)) in &moved {
        broker.trace_partition(EventKind::HighWatermark, tp, [*from, *to, 0, 0]);
    }
    if !moved.is_empty() {
        broker.notify_changed();
    }
    if wake_isr {
        broker.isr_wake.notify_one();
    }
}

/// Reads one partition of a fetch. With `materialize` false only says
/// whether there is anything to answer with (data or an error).
fn fetch_view<'a>(
    state: &BrokerState,
    disk: &'a BrokerDisk,
    mode: FetchMode,
    tp: &TopicPartition,
    asked: &FetchPartition,
    materialize: bool,
) -> (FetchView<'a>, bool) {
    let mut view = FetchView::empty();
    if let Err(error) = check_leader(state, tp, asked.current_leader_epoch) {
        view.error = Some(error);
        return (view, true);
    }
    let log = &disk.logs[tp];
    view.high_watermark = log.high_watermark;
    view.last_stable_offset = log.last_stable_offset();
    view.log_start_offset = 0;
    if asked.fetch_offset < 0 || asked.fetch_offset > log.log_end_offset() {
        view.error = Some(codes::OFFSET_OUT_OF_RANGE);
        return (view, true);
    }
    let upper = mode.upper_offset(log);
    if asked.fetch_offset >= upper {
        return (view, false);
    }
    if materialize {
        view.batches = log.read(asked.fetch_offset, upper, asked.max_records.max(1));
        if let Some(last) = view.batches.last() {
            if !mode.replica && mode.isolation == Isolation::ReadCommitted {
                view.aborted = log.aborted_between(asked.fetch_offset, last.header.next_offset());
            }
        }
    }
    (view, true)
}

fn topic_partitions(partitions: &[FetchPartition]) -> Vec<TopicPartition> {
    partitions
        .iter()
        .map(|asked| TopicPartition::new(asked.topic.clone(), asked.partition))
        .collect()
}

/// Waits (up to `max_wait_ms`) until some partition has data or an error.
async fn wait_for_fetchable(
    broker: &Broker,
    mode: FetchMode,
    max_wait_ms: u32,
    partitions: &[FetchPartition],
    tps: &[TopicPartition],
) {
    let mut changed = broker.changed.subscribe();
    let timeout = tokio::time::sleep(Duration::from_millis(u64::from(max_wait_ms)));
    tokio::pin!(timeout);
    loop {
        let ready = {
            let state = broker.state.borrow();
            let disk = broker.disk.borrow();
            partitions
                .iter()
                .zip(tps)
                .any(|(asked, tp)| fetch_view(&state, &disk, mode, tp, asked, false).1)
        };
        if ready || max_wait_ms == 0 {
            return;
        }
        tokio::select! {
            biased;
            result = changed.changed() => if result.is_err() { return },
            _ = &mut timeout => return,
        }
    }
}

/// A client's Fetch (or a replica's, with `replica_id`): appends the encoded
/// answer to `out` and returns the first error (for the trace).
pub(crate) async fn handle_fetch(
    broker: &Rc<Broker>,
    replica_id: Option<BrokerId>,
    isolation: Isolation,
    max_wait_ms: u32,
    partitions: Vec<FetchPartition>,
    out: &mut Vec<u8>,
) -> i64 {
    let tps = topic_partitions(&partitions);
    if let Some(follower) = replica_id {
        record_follower_fetch(broker, follower, &partitions, &tps);
    }
    let mode = FetchMode {
        replica: replica_id.is_some(),
        isolation,
    };
    wait_for_fetchable(broker, mode, max_wait_ms, &partitions, &tps).await;
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    let views: Vec<(&FetchPartition, FetchView<'_>)> = partitions
        .iter()
        .zip(&tps)
        .map(|(asked, tp)| {
            let (view, _) = fetch_view(&state, &disk, mode, tp, asked, true);
            (asked, view)
        })
        .collect();
    encode_fetch_body(&views, out);
    error_code_for_trace(views.iter().find_map(|(_, view)| view.error))
}

/// A follower's fetch: appends to `out` the encoded answer (a
/// `Response::Internal(InternalResponse::ReplicaFetch { .. })`), its batches
/// copied in their stored encoding.
pub(crate) async fn handle_replica_fetch(
    broker: &Rc<Broker>,
    replica_id: BrokerId,
    max_wait_ms: u32,
    partitions: Vec<FetchPartition>,
    out: &mut Vec<u8>,
) {
    let tps = topic_partitions(&partitions);
    record_follower_fetch(broker, replica_id, &partitions, &tps);
    wait_for_fetchable(broker, FetchMode::REPLICA, max_wait_ms, &partitions, &tps).await;
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    let views: Vec<FetchView<'_>> = partitions
        .iter()
        .zip(&tps)
        .map(|(asked, tp)| fetch_view(&state, &disk, FetchMode::REPLICA, tp, asked, true).0)
        .collect();
    encode_replica_fetch_body(&views, out);
}
