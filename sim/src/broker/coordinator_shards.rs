//! The shards of a coordinator, shared by the group and the transaction
//! coordinators.
//!
//! A coordinator's state is split by key over the partitions of its
//! internal topic; the broker leading a partition owns that shard. Taking
//! a shard over is the same for both: insert it unloaded (requests get
//! COORDINATOR_LOAD_IN_PROGRESS), wait the load delay, replay the log if
//! this broker still leads the partition in the same leader epoch, mark it
//! loaded; losing the leadership drops it (requests get NOT_COORDINATOR).
//! Only what is replayed differs, and stays with each coordinator.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{ErrorCode, TopicPartition};

use crate::broker::{Broker, BrokerState, coordinator_partition};
use crate::config::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::protocol::{BrokerInfo, CoordinatorType};
use crate::trace::EventKind;

/// Who owns a shard, and whether it answers yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShardOwnership {
    /// The leader epoch of the partition when this broker took it over
    /// (writes and waits of an older epoch are stale).
    pub coordinator_epoch: i32,
    /// The log has been replayed: the shard answers requests.
    pub loaded: bool,
}

impl ShardOwnership {
    /// A shard just taken over in `leader_epoch`, not loaded yet.
    pub(crate) fn loading(leader_epoch: i32) -> Self {
        Self {
            coordinator_epoch: leader_epoch,
            loaded: false,
        }
    }
}

/// A coordinator's shard, as the shared code sees it.
pub(crate) trait CoordinatorShard {
    fn ownership(&mut self) -> &mut ShardOwnership;
}

/// One coordinator's shards on this broker, by partition of its internal
/// topic. Bounded by the topic's partition count (one shard per partition
/// this broker leads).
#[derive(Debug)]
pub(crate) struct CoordinatorShards<S> {
    by_partition: BTreeMap<i32, S>,
}

impl<S> Default for CoordinatorShards<S> {
    fn default() -> Self {
        Self {
            by_partition: BTreeMap::new(),
        }
    }
}

impl<S: CoordinatorShard> CoordinatorShards<S> {
    /// The shard of `partition` if it answers requests, else the error a
    /// request gets (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS).
    pub(crate) fn loaded_mut(&mut self, partition: i32) -> Result<&mut S, ErrorCode> {
        let shard = self
            .by_partition
            .get_mut(&partition)
            .ok_or(ErrorCode::NotCoordinator)?;
        if !shard.ownership().loaded {
            return Err(ErrorCode::CoordinatorLoadInProgress);
        }
        Ok(shard)
    }

    /// The shard of `partition`, loaded or not.
    pub(crate) fn get(&self, partition: i32) -> Option<&S> {
        self.by_partition.get(&partition)
    }

    /// The loaded shards, in partition order.
    pub(crate) fn loaded_iter_mut(&mut self) -> impl Iterator<Item = (i32, &mut S)> {
        self.by_partition
            .iter_mut()
            .filter_map(|(&partition, shard)| {
                let loaded = shard.ownership().loaded;
                loaded.then_some((partition, shard))
            })
    }

    /// The shard of `partition` to load in `leader_epoch`: `None` if it was
    /// replaced, dropped or loaded meanwhile.
    fn awaiting_load(&mut self, partition: i32, leader_epoch: i32) -> Option<&mut S> {
        let shard = self.by_partition.get_mut(&partition)?;
        let ownership = *shard.ownership();
        (ownership == ShardOwnership::loading(leader_epoch)).then_some(shard)
    }
}

/// Where a coordinator's shards live: its internal topic, and its shards
/// in the broker's state.
pub(crate) struct ShardedTopic<S: 'static> {
    pub topic: &'static str,
    /// How many partitions the topic has (from the broker's config).
    pub partitions: fn(&Broker) -> i32,
    pub shards: fn(&mut BrokerState) -> &mut CoordinatorShards<S>,
}

impl<S: CoordinatorShard> ShardedTopic<S> {
    /// Runs `f` on the loaded shard that holds `key` (a group or
    /// transactional id), or fails with NOT_COORDINATOR /
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub(crate) fn with_key<R>(
        &self,
        broker: &Broker,
        key: &str,
        f: impl FnOnce(&mut S, i32) -> R,
    ) -> Result<R, ErrorCode> {
        let partition = coordinator_partition(key, (self.partitions)(broker));
        self.with_loaded(broker, partition, f)
    }

    /// Runs `f` on the loaded shard of `partition` (given with it), or
    /// fails with NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.
    pub(crate) fn with_loaded<R>(
        &self,
        broker: &Broker,
        partition: i32,
        f: impl FnOnce(&mut S, i32) -> R,
    ) -> Result<R, ErrorCode> {
        let mut state = broker.state.borrow_mut();
        let shard = (self.shards)(&mut state).loaded_mut(partition)?;
        Ok(f(shard, partition))
    }

    /// This broker now leads `partition` in `leader_epoch`: holds `shard`
    /// unloaded, and after the load delay runs `load` (which replays the
    /// log through [`ShardedTopic::replay`]).
    pub(crate) fn start_loading(
        &self,
        broker: &Rc<Broker>,
        partition: i32,
        leader_epoch: i32,
        mut shard: S,
        load: impl FnOnce(&Rc<Broker>) + 'static,
    ) {
        assert_eq!(
            *shard.ownership(),
            ShardOwnership::loading(leader_epoch),
            "a shard is taken over unloaded, in its leader epoch"
        );
        (self.shards)(&mut broker.state.borrow_mut())
            .by_partition
            .insert(partition, shard);
        let broker = broker.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(
                broker.config.coordinator_load_delay_ms,
            ))
            .await;
            load(&broker);
        });
    }

    /// Replays the log of `partition` into its shard with `replay` (which
    /// returns how many entries the shard holds, for the trace), if this
    /// broker still leads it in `leader_epoch` and the shard is not loaded
    /// yet; then marks it loaded. `None` if nothing was loaded.
    pub(crate) fn replay<R>(
        &self,
        broker: &Broker,
        partition: i32,
        leader_epoch: i32,
        replay: impl FnOnce(&mut S, &TopicPartition) -> (i64, R),
    ) -> Option<R> {
        let tp = TopicPartition::new(self.topic, partition);
        let (entries, result) = {
            let mut state = broker.state.borrow_mut();
            let still_leader = state
                .replicas
                .get(&tp)
                .is_some_and(|r| r.is_leader() && r.leader_epoch == leader_epoch);
            let shard = (self.shards)(&mut state).awaiting_load(partition, leader_epoch)?;
            if !still_leader {
                return None;
            }
            let replayed = replay(shard, &tp);
            shard.ownership().loaded = true;
            replayed
        };
        broker.trace_partition(
            EventKind::CoordinatorLoaded,
            &tp,
            [i64::from(leader_epoch), entries, 0, 0],
        );
        broker.notify_changed();
        Some(result)
    }

    /// This broker no longer leads `partition`: its shard goes.
    pub(crate) fn unload(&self, broker: &Broker, partition: i32) {
        let removed = (self.shards)(&mut broker.state.borrow_mut())
            .by_partition
            .remove(&partition);
        if let Some(mut shard) = removed {
            broker.trace_partition(
                EventKind::CoordinatorUnloaded,
                &TopicPartition::new(self.topic, partition),
                [i64::from(shard.ownership().coordinator_epoch), 0, 0, 0],
            );
            broker.notify_changed();
        }
    }
}

/// The internal partition and its leader for a coordinator key.
pub(crate) fn coordinator_for(
    broker: &Broker,
    key_type: CoordinatorType,
    key: &str,
) -> Result<(TopicPartition, BrokerInfo), ErrorCode> {
    let (topic, partitions) = match key_type {
        CoordinatorType::Group => (OFFSETS_TOPIC, broker.config.offsets_topic_partitions),
        CoordinatorType::Transaction => (
            TRANSACTION_STATE_TOPIC,
            broker.config.transaction_state_partitions,
        ),
    };
    let tp = TopicPartition::new(topic, coordinator_partition(key, partitions));
    let state = broker.state.borrow();
    let leader = state
        .metadata
        .partition(&tp)
        .and_then(|p| p.leader)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let host = state
        .metadata
        .brokers
        .get(&leader)
        .map(|b| b.host.clone())
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((tp, BrokerInfo { id: leader, host }))
}
