//! The client's view of the cluster: brokers and partition leaders.
//!
//! Filled from Metadata responses. Like Kafka's clients, the cache never
//! goes back in time for a partition: an answer from a broker whose view
//! lags (an older leader epoch) does not replace a newer one.

use std::collections::BTreeMap;

use eddyline_engine::transport::{ErrorCode, TopicPartition};

use crate::protocol::{BrokerId, BrokerInfo, PartitionMetadata, TopicMetadata};

/// What the cache knows about one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TopicState {
    /// The last answer was an error (usually UnknownTopicOrPartition).
    Error(ErrorCode),
    Known(BTreeMap<i32, PartitionMetadata>),
}

/// The leader of a partition, as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Leader {
    pub broker: BrokerId,
    pub leader_epoch: i32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct MetadataCache {
    brokers: BTreeMap<BrokerId, String>,
    topics: BTreeMap<String, TopicState>,
}

impl MetadataCache {
    /// Applies a Metadata response that answered for `topics`.
    pub(crate) fn apply(&mut self, brokers: &[BrokerInfo], topics: &[TopicMetadata]) {
        if !brokers.is_empty() {
            self.brokers = brokers
                .iter()
                .map(|broker| (broker.id, broker.host.clone()))
                .collect();
        }
        for topic in topics {
            let state = match topic.error {
                Some(code) => TopicState::Error(code),
                None => {
                    let mut partitions: BTreeMap<i32, PartitionMetadata> = topic
                        .partitions
                        .iter()
                        .map(|partition| (partition.partition, partition.clone()))
                        .collect();
                    if let Some(TopicState::Known(previous)) = self.topics.get(&topic.name) {
                        for (id, old) in previous {
                            if let Some(new) = partitions.get(id) {
                                if new.leader_epoch < old.leader_epoch {
                                    partitions.insert(*id, old.clone());
                                }
                            }
                        }
                    }
                    TopicState::Known(partitions)
                }
            };
            self.topics.insert(topic.name.clone(), state);
        }
    }

    pub(crate) fn broker_host(&self, broker: BrokerId) -> Option<&str> {
        self.brokers.get(&broker).map(String::as_str)
    }

    /// Known brokers in id order.
    pub(crate) fn brokers(&self) -> impl Iterator<Item = (BrokerId, &str)> {
        self.brokers.iter().map(|(id, host)| (*id, host.as_str()))
    }

    pub(crate) fn topic(&self, topic: &str) -> Option<&TopicState> {
        self.topics.get(topic)
    }

    /// The partition count of a topic the cache knows without error.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<i32> {
        match self.topics.get(topic)? {
            TopicState::Known(partitions) if !partitions.is_empty() => {
                i32::try_from(partitions.len()).ok()
            }
            _ => None,
        }
    }

    pub(crate) fn leader(&self, partition: &TopicPartition) -> Option<Leader> {
        let TopicState::Known(partitions) = self.topics.get(&partition.topic)? else {
            return None;
        };
        let metadata = partitions.get(&partition.partition)?;
        if metadata.error.is_some() {
            return None;
        }
        let broker = metadata.leader?;
        self.brokers.get(&broker)?;
        Some(Leader {
            broker,
            leader_epoch: metadata.leader_epoch,
        })
    }

    /// Whether every partition of `topic` has a leader the cache can reach.
    pub(crate) fn all_leaders_known(&self, topic: &str) -> bool {
        match self.topics.get(topic) {
            Some(TopicState::Known(partitions)) if !partitions.is_empty() => {
                partitions.values().all(|metadata| {
                    metadata.error.is_none()
                        && metadata
                            .leader
                            .is_some_and(|leader| self.brokers.contains_key(&leader))
                })
            }
            _ => false,
        }
    }

    /// Forgets the leader of a partition (after NOT_LEADER_OR_FOLLOWER and
    /// the like), so that nothing is sent to it before a refresh.
    pub(crate) fn invalidate_leader(&mut self, partition: &TopicPartition) {
        if let Some(TopicState::Known(partitions)) = self.topics.get_mut(&partition.topic) {
            if let Some(metadata) = partitions.get_mut(&partition.partition) {
                metadata.leader = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(id: i32, leader: Option<BrokerId>, epoch: i32) -> PartitionMetadata {
        PartitionMetadata {
            partition: id,
            error: None,
            leader,
            leader_epoch: epoch,
            replicas: vec![0, 1, 2],
            isr: vec![0, 1, 2],
        }
    }

    fn brokers() -> Vec<BrokerInfo> {
        (0..3)
            .map(|id| BrokerInfo {
                id,
                host: format!("broker-{id}"),
            })
            .collect()
    }

    #[test]
    fn a_lagging_answer_never_replaces_a_newer_leader() {
        let mut cache = MetadataCache::default();
        let topic = |leader, epoch| TopicMetadata {
            name: "t".into(),
            error: None,
            partitions: vec![partition(0, Some(leader), epoch)],
        };
        cache.apply(&brokers(), &[topic(1, 5)]);
        cache.apply(&brokers(), &[topic(0, 4)]);
        let tp = TopicPartition::new("t", 0);
        assert_eq!(
            cache.leader(&tp),
            Some(Leader {
                broker: 1,
                leader_epoch: 5
            })
        );
        cache.apply(&brokers(), &[topic(2, 6)]);
        assert_eq!(cache.leader(&tp).map(|leader| leader.broker), Some(2));
    }

    #[test]
    fn unknown_topics_and_leaderless_partitions_have_no_leader() {
        let mut cache = MetadataCache::default();
        cache.apply(
            &brokers(),
            &[
                TopicMetadata {
                    name: "missing".into(),
                    error: Some(ErrorCode::UnknownTopicOrPartition),
                    partitions: vec![],
                },
                TopicMetadata {
                    name: "electing".into(),
                    error: None,
                    partitions: vec![partition(0, None, 3), partition(1, Some(2), 3)],
                },
            ],
        );
        assert_eq!(cache.partition_count("missing"), None);
        assert_eq!(
            cache.topic("missing"),
            Some(&TopicState::Error(ErrorCode::UnknownTopicOrPartition))
        );
        assert_eq!(cache.partition_count("electing"), Some(2));
        assert!(!cache.all_leaders_known("electing"));
        assert_eq!(cache.leader(&TopicPartition::new("electing", 0)), None);
        cache.invalidate_leader(&TopicPartition::new("electing", 1));
        assert_eq!(cache.leader(&TopicPartition::new("electing", 1)), None);
    }
}
