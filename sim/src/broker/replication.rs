//! The broker's background work: its controller session (registration and
//! heartbeats), metadata propagation (a long poll on the controller), the
//! follower fetchers (one per leader broker, with leader-epoch truncation
//! before fetching), and ISR maintenance (shrink lagging followers, expand
//! caught-up ones, via AlterPartition).

use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use eddyline_engine::transport::{ErrorCode, TopicPartition};

use crate::broker::log::UNDEFINED_EPOCH;
use crate::broker::partition::Role;
use crate::broker::{Broker, broker_host};
use crate::config::{BROKER_PORT, CONTROLLER_HOST, CONTROLLER_PORT};
use crate::internal::{EpochQuery, InternalRequest, InternalResponse, ReplicaFetchResult};
use crate::protocol::{BrokerId, FetchPartition, Request, Response, codes};
use crate::rpc::Connection;
use crate::trace::{EventKind, broker_mask};
use crate::world::now_ms;

/// Back-off after a failed inter-broker or controller call.
const RETRY_BACKOFF_MS: u64 = 20;

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Registers with the controller, then heartbeats; re-registers when the
/// controller no longer knows this broker epoch.
pub(crate) async fn controller_session(broker: Rc<Broker>) {
    let mut connection =
        Connection::with_reconnects(CONTROLLER_HOST, CONTROLLER_PORT, broker.reconnects.clone());
    let timeout_ms = broker.config.inter_broker_request_timeout_ms;
    loop {
        let request = Request::Internal(InternalRequest::RegisterBroker {
            broker_id: broker.id,
            incarnation: broker.incarnation,
            host: broker_host(broker.id),
        });
        let broker_epoch = match connection.call(request, timeout_ms).await {
            Ok(Response::Internal(InternalResponse::RegisterBroker {
                error: None,
                broker_epoch,
            })) => broker_epoch,
            _ => {
                sleep_ms(RETRY_BACKOFF_MS).await;
                continue;
            }
        };
        broker.state.borrow_mut().broker_epoch = broker_epoch;
        // Heartbeats (which unfence this broker) start once it has the
        // metadata: KRaft unfences a broker that has caught up.
        let mut changed = broker.changed.subscribe();
        while broker.state.borrow().metadata.epoch == 0 {
            if changed.changed().await.is_err() {
                return;
            }
        }
        loop {
            let request = Request::Internal(InternalRequest::BrokerHeartbeat {
                broker_id: broker.id,
                broker_epoch,
            });
            match connection.call(request, timeout_ms).await {
                Ok(Response::Internal(InternalResponse::BrokerHeartbeat {
                    error: Some(error),
                    ..
                })) if error == codes::STALE_BROKER_EPOCH => break,
                _ => {}
            }
            sleep_ms(broker.config.broker_heartbeat_interval_ms).await;
        }
    }
}

/// Keeps the broker's metadata image current (KRaft brokers replicate the
/// metadata log; here they long-poll for newer images).
pub(crate) async fn metadata_poller(broker: Rc<Broker>) {
    let mut connection =
        Connection::with_reconnects(CONTROLLER_HOST, CONTROLLER_PORT, broker.reconnects.clone());
    let max_wait_ms = broker.config.metadata_max_wait_ms;
    let timeout_ms = u64::from(max_wait_ms) + broker.config.inter_broker_request_timeout_ms;
    loop {
        let known_epoch = broker.state.borrow().metadata.epoch;
        let request = Request::Internal(InternalRequest::FetchMetadata {
            broker_id: broker.id,
            known_epoch,
            max_wait_ms,
        });
        match connection.call(request, timeout_ms).await {
            Ok(Response::Internal(InternalResponse::FetchMetadata { image: Some(image) })) => {
                broker.apply_metadata(image);
            }
            Ok(Response::Internal(InternalResponse::FetchMetadata { image: None })) => {}
            _ => sleep_ms(RETRY_BACKOFF_MS).await,
        }
    }
}

/// Starts the fetcher for `leader` unless it runs already.
pub(crate) fn ensure_fetcher(broker: &Rc<Broker>, leader: BrokerId) {
    let running = broker.state.borrow().fetchers.get(&leader).cloned();
    match running {
        // Its in-flight long poll does not include the new partitions.
        Some(wake) => wake.notify_one(),
        None => {
            let wake = Rc::new(Notify::new());
            broker
                .state
                .borrow_mut()
                .fetchers
                .insert(leader, wake.clone());
            tokio::task::spawn_local(fetcher(broker.clone(), leader, wake));
        }
    }
}

struct FetchPlan {
    truncate: Vec<EpochQuery>,
    fetch: Vec<FetchPartition>,
}

fn plan_fetch(broker: &Broker, leader: BrokerId) -> FetchPlan {
    let state = broker.state.borrow();
    let disk = broker.disk.borrow();
    let mut plan = FetchPlan {
        truncate: Vec::new(),
        fetch: Vec::new(),
    };
    for (tp, replica) in &state.replicas {
        let Role::Follower {
            leader: followed,
            needs_truncation,
        } = replica.role
        else {
            continue;
        };
        if followed != leader {
            continue;
        }
        let log = &disk.logs[tp];
        if needs_truncation {
            plan.truncate.push(EpochQuery {
                topic_partition: tp.clone(),
                current_leader_epoch: replica.leader_epoch,
                leader_epoch: log.latest_epoch(),
            });
        } else {
            plan.fetch.push(FetchPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                fetch_offset: log.log_end_offset(),
                current_leader_epoch: Some(replica.leader_epoch),
                max_records: broker.config.replica_fetch_max_records,
            });
        }
    }
    plan
}

/// Fetches, as a follower, every partition this broker follows on
/// `leader`; ends when there is none left.
async fn fetcher(broker: Rc<Broker>, leader: BrokerId, wake: Rc<Notify>) {
    let mut connection =
        Connection::with_reconnects(&broker_host(leader), BROKER_PORT, broker.reconnects.clone());
    let timeout_ms = u64::from(broker.config.replica_fetch_wait_max_ms)
        + broker.config.inter_broker_request_timeout_ms;
    loop {
        let plan = plan_fetch(&broker, leader);
        if plan.truncate.is_empty() && plan.fetch.is_empty() {
            broker.state.borrow_mut().fetchers.remove(&leader);
            return;
        }
        if !plan.truncate.is_empty() {
            let request = Request::Internal(InternalRequest::OffsetsForLeaderEpoch {
                queries: plan.truncate.clone(),
            });
            match connection.call(request, timeout_ms).await {
                Ok(Response::Internal(InternalResponse::OffsetsForLeaderEpoch { results })) => {
                    let mut progressed = false;
                    for (query, answer) in plan.truncate.iter().zip(results) {
                        debug_assert_eq!(query.topic_partition, answer.topic_partition);
                        if let Ok(end) = answer.result {
                            progressed |= truncate_follower(
                                &broker,
                                leader,
                                query,
                                end.leader_epoch,
                                end.end_offset,
                            );
                        }
                    }
                    if !progressed {
                        sleep_ms(RETRY_BACKOFF_MS).await;
                    }
                }
                _ => sleep_ms(RETRY_BACKOFF_MS).await,
            }
            continue;
        }
        let request = Request::Internal(InternalRequest::ReplicaFetch {
            replica_id: broker.id,
            max_wait_ms: broker.config.replica_fetch_wait_max_ms,
            partitions: plan.fetch,
        });
        let outcome = tokio::select! {
            biased;
            _ = wake.notified() => None,
            outcome = connection.call_ref(&request, timeout_ms) => Some(outcome),
        };
        let Request::Internal(InternalRequest::ReplicaFetch {
            partitions: asked, ..
        }) = request
        else {
            unreachable!("built above");
        };
        let Some(outcome) = outcome else {
            // The answer to the abandoned call must not be read as the next.
            connection.reset();
            continue;
        };
        match outcome {
            Ok(Response::Internal(InternalResponse::ReplicaFetch { partitions })) => {
                let mut progressed = false;
                for (asked, result) in asked.iter().zip(partitions) {
                    progressed |= apply_fetched(&broker, leader, asked, result);
                }
                if progressed {
                    broker.notify_changed();
                } else {
                    // Every partition failed (leader moved or not ready):
                    // give the metadata time to catch up.
                    sleep_ms(RETRY_BACKOFF_MS).await;
                }
            }
            _ => sleep_ms(RETRY_BACKOFF_MS).await,
        }
    }
}

/// One round of Kafka's follower truncation (`getOffsetTruncationState`).
/// Returns whether anything changed.
fn truncate_follower(
    broker: &Broker,
    leader: BrokerId,
    query: &EpochQuery,
    leader_found_epoch: i32,
    leader_end_offset: i64,
) -> bool {
    let tp = &query.topic_partition;
    let mut state = broker.state.borrow_mut();
    let Some(replica) = state.replicas.get_mut(tp) else {
        return false;
    };
    match replica.role {
        Role::Follower {
            leader: followed,
            needs_truncation: true,
        } if followed == leader && replica.leader_epoch == query.current_leader_epoch => {}
        _ => return false,
    }
    let mut disk = broker.disk.borrow_mut();
    let log = disk.logs.get_mut(tp).expect("a replica has a log");
    if log.latest_epoch() != query.leader_epoch {
        return false;
    }
    let end = log.log_end_offset();
    let (target, completed) = if leader_found_epoch == UNDEFINED_EPOCH {
        // The leader has no epoch this old: nothing is shared.
        (0, true)
    } else {
        let (follower_epoch, follower_end) = log.end_offset_for_epoch(leader_found_epoch);
        if follower_epoch == UNDEFINED_EPOCH {
            (leader_end_offset.min(end), true)
        } else if follower_epoch != leader_found_epoch {
            // The follower never saw the leader's epoch: cut back to the end
            // of its own earlier epoch and ask again.
            (follower_end.min(end), false)
        } else {
            (leader_end_offset.min(follower_end), true)
        }
    };
    // Also when nothing is cut: epochs that start at the target hold no
    // data and go (Kafka's `truncateFromEnd`), so the next query asks with
    // an earlier epoch. Keeping them would ask the same question forever
    // and starve every partition this fetcher serves.
    log.truncate_to(target);
    if target < end {
        broker.trace_partition(EventKind::Truncate, tp, [target, end, 0, 0]);
    }
    if completed {
        replica.role = Role::Follower {
            leader,
            needs_truncation: false,
        };
    }
    true
}

/// Appends what the leader returned; returns whether anything changed.
fn apply_fetched(
    broker: &Broker,
    leader: BrokerId,
    asked: &FetchPartition,
    result: ReplicaFetchResult,
) -> bool {
    let tp = TopicPartition::new(asked.topic.clone(), asked.partition);
    let mut state = broker.state.borrow_mut();
    let Some(replica) = state.replicas.get_mut(&tp) else {
        return false;
    };
    match replica.role {
        Role::Follower {
            leader: followed,
            needs_truncation: false,
        } if followed == leader && Some(replica.leader_epoch) == asked.current_leader_epoch => {}
        _ => return false,
    }
    match result.error {
        None => {}
        Some(error) if error == codes::OFFSET_OUT_OF_RANGE => {
            replica.role = Role::Follower {
                leader,
                needs_truncation: true,
            };
            return true;
        }
        Some(_) => return false,
    }
    let mut disk = broker.disk.borrow_mut();
    let log = disk.logs.get_mut(&tp).expect("a replica has a log");
    if log.log_end_offset() != asked.fetch_offset {
        return false;
    }
    let batches = result.batches.len();
    if batches > 0 {
        log.append_replicated(result.batches);
        broker.trace_partition(
            EventKind::ReplicaAppend,
            &tp,
            [asked.fetch_offset, batches as i64, log.log_end_offset(), 0],
        );
    }
    let high_watermark = result.high_watermark.min(log.log_end_offset());
    let moved = high_watermark != log.high_watermark;
    if moved {
        log.set_high_watermark(high_watermark);
    }
    batches > 0 || moved
}

/// Shrinks ISRs of lagging followers and expands them with caught-up ones.
pub(crate) async fn isr_manager(broker: Rc<Broker>) {
    let mut connection =
        Connection::with_reconnects(CONTROLLER_HOST, CONTROLLER_PORT, broker.reconnects.clone());
    let check_interval = Duration::from_millis((broker.config.replica_lag_max_ms / 2).max(1));
    let timeout_ms = broker.config.inter_broker_request_timeout_ms;
    loop {
        tokio::select! {
            biased;
            _ = broker.isr_wake.notified() => {}
            _ = tokio::time::sleep(check_interval) => {}
        }
        let requests = plan_isr_changes(&broker);
        for (tp, leader_epoch, partition_epoch, isr) in requests {
            let broker_epoch = broker.state.borrow().broker_epoch;
            let request = Request::Internal(InternalRequest::AlterPartition {
                broker_id: broker.id,
                broker_epoch,
                topic_partition: tp.clone(),
                leader_epoch,
                partition_epoch,
                isr: isr.clone(),
            });
            let outcome = match connection.call(request, timeout_ms).await {
                Ok(Response::Internal(InternalResponse::AlterPartition { result })) => result,
                _ => Err(ErrorCode::RequestTimedOut),
            };
            broker.trace_partition(
                EventKind::IsrRequest,
                &tp,
                [
                    broker_mask(&isr),
                    i64::from(partition_epoch),
                    outcome
                        .as_ref()
                        .err()
                        .and_then(|e| e.kafka_code())
                        .map_or(0, i64::from),
                    0,
                ],
            );
            apply_isr_outcome(&broker, &tp, leader_epoch, outcome);
        }
    }
}

type IsrRequestPlan = (TopicPartition, i32, i32, Vec<BrokerId>);

fn plan_isr_changes(broker: &Broker) -> Vec<IsrRequestPlan> {
    let now = now_ms();
    let mut state = broker.state.borrow_mut();
    let disk = broker.disk.borrow();
    let mut requests = Vec::new();
    let metadata = state.metadata.clone();
    let eligible = |id: BrokerId| metadata.brokers.get(&id).is_some_and(|b| !b.fenced);
    for (tp, replica) in state.replicas.iter_mut() {
        let Some(leader) = replica.leader_state() else {
            continue;
        };
        if leader.pending_isr.is_some() {
            continue;
        }
        let log = &disk.logs[tp];
        let Some(desired) = replica.desired_isr(
            broker.id,
            log,
            now,
            broker.config.replica_lag_max_ms,
            eligible,
        ) else {
            continue;
        };
        if desired == replica.isr {
            continue;
        }
        if let Role::Leader(leader) = &mut replica.role {
            leader.pending_isr = Some(desired.clone());
        }
        requests.push((
            tp.clone(),
            replica.leader_epoch,
            replica.partition_epoch,
            desired,
        ));
    }
    requests
}

fn apply_isr_outcome(
    broker: &Broker,
    tp: &TopicPartition,
    leader_epoch: i32,
    outcome: Result<crate::internal::PartitionImage, ErrorCode>,
) {
    let moved = {
        let mut state = broker.state.borrow_mut();
        let Some(replica) = state.replicas.get_mut(tp) else {
            return;
        };
        if replica.leader_epoch != leader_epoch {
            return;
        }
        let Role::Leader(leader) = &mut replica.role else {
            return;
        };
        leader.pending_isr = None;
        if let Ok(image) = outcome {
            if image.leader_epoch == replica.leader_epoch
                && image.partition_epoch >= replica.partition_epoch
            {
                replica.partition_epoch = image.partition_epoch;
                replica.isr = image.isr;
            }
        }
        let mut disk = broker.disk.borrow_mut();
        let log = disk.logs.get_mut(tp).expect("a replica has a log");
        replica.maybe_advance_high_watermark(broker.id, log)
    };
    if let Some((from, to)) = moved {
        broker.trace_partition(EventKind::HighWatermark, tp, [from, to, 0, 0]);
    }
    broker.notify_changed();
}
