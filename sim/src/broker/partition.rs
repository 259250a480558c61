//! A broker's in-memory view of one partition replica: its role, leader
//! epoch, ISR and (as leader) its followers' progress. Lost on a crash and
//! rebuilt from the controller's metadata after a restart; the log itself
//! is in [`super::log`].

use std::collections::BTreeMap;

use crate::broker::log::PartitionLog;
use crate::protocol::BrokerId;

/// What the leader knows of one follower.
#[derive(Clone, Debug)]
pub(crate) struct FollowerProgress {
    /// The follower's log end offset, from its last fetch; `None` until it
    /// fetches from this leader (Kafka resets follower state on election).
    pub log_end_offset: Option<i64>,
    /// The last time the follower had everything the leader had.
    pub last_caught_up_ms: u64,
    pub leader_end_offset_at_last_fetch: i64,
    pub last_fetch_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct LeaderState {
    /// The log end offset when this broker became leader (KIP-207).
    pub epoch_start_offset: i64,
    pub followers: BTreeMap<BrokerId, FollowerProgress>,
    /// The ISR of an AlterPartition in flight.
    pub pending_isr: Option<Vec<BrokerId>>,
}

#[derive(Clone, Debug)]
pub(crate) enum Role {
    Leader(LeaderState),
    Follower {
        leader: BrokerId,
        /// Set on every new leader epoch: the follower must find where its
        /// log diverges from the leader's (KIP-101/279) before fetching.
        needs_truncation: bool,
    },
    /// No leader, or not yet known.
    Offline,
}

#[derive(Clone, Debug)]
pub(crate) struct Replica {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<BrokerId>,
    /// The ISR as committed by the controller.
    pub isr: Vec<BrokerId>,
    pub min_insync_replicas: i16,
    pub internal: bool,
    pub role: Role,
}

impl Replica {
    /// `min.insync.replicas` as Kafka applies it: never more than the
    /// replication factor. Kafka 3.8's `Partition.effectiveMinIsr` is
    /// `minInSyncReplicas.min(remoteReplicasMap.size + 1)`, and both
    /// `appendRecordsToLeader` (NOT_ENOUGH_REPLICAS) and
    /// `checkEnoughReplicasReachOffset` (NOT_ENOUGH_REPLICAS_AFTER_APPEND)
    /// compare the ISR with it: a replication-factor-1 topic under a
    /// cluster default of 2 takes acks=all writes.
    pub(crate) fn effective_min_isr(&self) -> usize {
        (self.min_insync_replicas.max(1) as usize).min(self.replicas.len())
    }

    /// Whether the ISR is smaller than [`Replica::effective_min_isr`].
    pub(crate) fn is_under_min_isr(&self) -> bool {
        self.isr.len() < self.effective_min_isr()
    }

    /// Whether the maximal ISR is smaller than the effective min ISR: an
    /// acks=all write the high watermark passed is then answered
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka 3.8's
    /// `Partition.checkEnoughReplicasReachOffset` compares
    /// `partitionState.maximalIsr.size` with `effectiveMinIsr`).
    pub(crate) fn is_maximal_isr_under_min(&self) -> bool {
        self.maximal_isr().count() < self.effective_min_isr()
    }

    pub(crate) fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    pub(crate) fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader(state) => Some(state),
            _ => None,
        }
    }

    /// The committed ISR plus the members an in-flight expansion adds: the
    /// set the high watermark must wait for (Kafka's "maximal ISR").
    pub(crate) fn maximal_isr(&self) -> impl Iterator<Item = BrokerId> + '_ {
        let pending: &[BrokerId] = match &self.role {
            Role::Leader(LeaderState {
                pending_isr: Some(pending),
                ..
            }) => pending,
            _ => &[],
        };
        self.isr
            .iter()
            .copied()
            .chain(pending.iter().copied().filter(|id| !self.isr.contains(id)))
    }

    /// Whether `id` is in the maximal ISR.
    pub(crate) fn in_maximal_isr(&self, id: BrokerId) -> bool {
        self.maximal_isr().any(|member| member == id)
    }

    /// Raises the leader's high watermark to the lowest log end offset of
    /// the maximal ISR; returns `(from, to)` if it moved. Never lowers it.
    ///
    /// Not while the (committed) ISR is under the effective min ISR: Kafka
    /// 3.8's `Partition.maybeIncrementLeaderHW` returns at once when
    /// `isUnderMinIsr` (`partitionState.isr.size < effectiveMinIsr`), so a
    /// leader left alone in the ISR does not commit what only it has; the
    /// HW moves again once a follower rejoins.
    pub(crate) fn maybe_advance_high_watermark(
        &self,
        me: BrokerId,
        log: &mut PartitionLog,
    ) -> Option<(i64, i64)> {
        let Role::Leader(state) = &self.role else {
            return None;
        };
        if self.is_under_min_isr() {
            return None;
        }
        let mut candidate = log.log_end_offset();
        for id in self.maximal_isr() {
            if id == me {
                continue;
            }
            match state
                .followers
                .get(&id)
                .and_then(|progress| progress.log_end_offset)
            {
                Some(end) => candidate = candidate.min(end),
                None => return None,
            }
        }
        if candidate > log.high_watermark {
            let from = log.high_watermark;
            log.set_high_watermark(candidate);
            return Some((from, candidate));
        }
        None
    }

    /// The ISR the leader wants now: the committed ISR without followers
    /// that lag by more than `replica_lag_max_ms`, plus caught-up followers.
    /// A follower joins only if `eligible` (registered and unfenced in the
    /// metadata, as KIP-841 requires) and it fetched recently.
    pub(crate) fn desired_isr(
        &self,
        me: BrokerId,
        log: &PartitionLog,
        now_ms: u64,
        replica_lag_max_ms: u64,
        eligible: impl Fn(BrokerId) -> bool,
    ) -> Option<Vec<BrokerId>> {
        let Role::Leader(state) = &self.role else {
            return None;
        };
        let end = log.log_end_offset();
        let desired: Vec<BrokerId> = self
            .replicas
            .iter()
            .copied()
            .filter(|&id| {
                if id == me {
                    return true;
                }
                let Some(progress) = state.followers.get(&id) else {
                    return false;
                };
                if self.isr.contains(&id) {
                    progress.log_end_offset == Some(end)
                        || now_ms.saturating_sub(progress.last_caught_up_ms) <= replica_lag_max_ms
                } else {
                    eligible(id)
                        && now_ms.saturating_sub(progress.last_fetch_ms) <= replica_lag_max_ms
                        && progress.log_end_offset.is_some_and(|follower_end| {
                            follower_end >= log.high_watermark
                                && follower_end >= state.epoch_start_offset
                        })
                }
            })
            .collect();
        Some(desired)
    }
}
