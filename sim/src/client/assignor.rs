//! The "range" partition assignor, run by the group leader.
//!
//! librdkafka's default `partition.assignment.strategy` is
//! `range,roundrobin`, and with every member offering both the broker picks
//! `range`; the Java client's classic default is range as well. Using the
//! same assignor on the simulator makes a group spread partitions the same
//! way on sim and on real Kafka: for each topic, the members subscribed to
//! it in member-id order get consecutive ranges of partitions, the first
//! `partitions % members` of them one extra.

use std::collections::{BTreeMap, BTreeSet};

use eddyline_engine::transport::TopicPartition;

/// The protocol name members announce in JoinGroup.
pub const RANGE: &str = "range";

/// The subscription a member sends in JoinGroup (its topics, sorted).
pub fn encode_subscription(topics: &[String]) -> Vec<u8> {
    let topics: BTreeSet<&String> = topics.iter().collect();
    let topics: Vec<&String> = topics.into_iter().collect();
    postcard::to_stdvec(&topics).expect("a list of strings always encodes")
}

/// The topics of a member's JoinGroup metadata; `None` if it is not a
/// subscription this client wrote.
pub fn decode_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    postcard::from_bytes(metadata).ok()
}

/// Assigns partitions to members with the range strategy.
///
/// `subscriptions`: each member's subscribed topics; `partition_counts`:
/// the partition count of every topic some member subscribes to (topics
/// missing from it are not assigned, as Kafka skips topics without
/// metadata). Every member appears in the result, possibly with nothing.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut assignment: BTreeMap<String, Vec<TopicPartition>> = subscriptions
        .keys()
        .map(|member| (member.clone(), Vec::new()))
        .collect();
    let mut members_by_topic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (member, topics) in subscriptions {
        let topics: BTreeSet<&String> = topics.iter().collect();
        for topic in topics {
            members_by_topic
                .entry(topic.as_str())
                .or_default()
                .push(member.as_str());
        }
    }
    for (topic, members) in &members_by_topic {
        let Some(&partitions) = partition_counts.get(*topic) else {
            continue;
        };
        assert!(
            partitions >= 0,
            "negative partition count {partitions} for {topic}"
        );
        // `subscriptions` is a BTreeMap: members are already in id order.
        let member_count = i32::try_from(members.len()).expect("member count fits in i32");
        let per_member = partitions / member_count;
        let with_extra = partitions % member_count;
        for (index, member) in members.iter().enumerate() {
            let index = i32::try_from(index).expect("member index fits in i32");
            let start = per_member * index + index.min(with_extra);
            let length = per_member + i32::from(index < with_extra);
            let owned = assignment
                .get_mut(*member)
                .expect("every subscribed member is in the assignment");
            owned.extend((start..start + length).map(|p| TopicPartition::new(*topic, p)));
        }
    }
    for owned in assignment.values_mut() {
        owned.sort();
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(member, topics)| {
                (
                    member.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    fn counts(entries: &[(&str, i32)]) -> BTreeMap<String, i32> {
        entries.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn partitions(topic: &str, ids: &[i32]) -> Vec<TopicPartition> {
        ids.iter().map(|p| TopicPartition::new(topic, *p)).collect()
    }

    #[test]
    fn the_first_members_by_id_get_the_extra_partitions() {
        // Kafka's RangeAssignor javadoc example: C0 and C1, topics t0 and t1
        // with 3 partitions each.
        let result = range_assign(
            &subscriptions(&[("C1", &["t0", "t1"]), ("C0", &["t0", "t1"])]),
            &counts(&[("t0", 3), ("t1", 3)]),
        );
        let mut c0 = partitions("t0", &[0, 1]);
        c0.extend(partitions("t1", &[0, 1]));
        let mut c1 = partitions("t0", &[2]);
        c1.extend(partitions("t1", &[2]));
        assert_eq!(result["C0"], c0);
        assert_eq!(result["C1"], c1);
    }

    #[test]
    fn members_without_partitions_still_get_an_empty_assignment() {
        let result = range_assign(
            &subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &counts(&[("t", 2)]),
        );
        assert_eq!(result["a"], partitions("t", &[0]));
        assert_eq!(result["b"], partitions("t", &[1]));
        assert_eq!(result["c"], vec![]);
    }

    #[test]
    fn each_topic_is_split_among_its_own_subscribers_only() {
        let result = range_assign(
            &subscriptions(&[("a", &["x", "y"]), ("b", &["y"]), ("c", &["x", "missing"])]),
            &counts(&[("x", 4), ("y", 3)]),
        );
        let mut a = partitions("x", &[0, 1]);
        a.extend(partitions("y", &[0, 1]));
        assert_eq!(result["a"], a);
        assert_eq!(result["b"], partitions("y", &[2]));
        assert_eq!(result["c"], partitions("x", &[2, 3]));
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        for members in 1..6 {
            for partition_count in 0..13 {
                let subs: BTreeMap<String, Vec<String>> = (0..members)
                    .map(|m| (format!("m{m}"), vec!["t".to_string()]))
                    .collect();
                let result = range_assign(&subs, &counts(&[("t", partition_count)]));
                let mut all: Vec<TopicPartition> = result.values().flatten().cloned().collect();
                all.sort();
                assert_eq!(
                    all,
                    partitions("t", &(0..partition_count).collect::<Vec<_>>())
                );
                let sizes: Vec<usize> = result.values().map(Vec::len).collect();
                let spread = sizes.iter().max().unwrap() - sizes.iter().min().unwrap();
                assert!(spread <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn subscriptions_round_trip_sorted_and_deduplicated() {
        let encoded = encode_subscription(&["b".into(), "a".into(), "b".into()]);
        assert_eq!(
            decode_subscription(&encoded),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(decode_subscription(&[0xff, 0xff, 0xff]), None);
    }
}
