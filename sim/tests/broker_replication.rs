//! Replication and idempotence: de-duplication of retried batches (also
//! across a leader failover), sequence checks, the high watermark and the
//! ISR, min.insync.replicas, leader moves, and the truncation of a deposed
//! leader's unreplicated tail.

mod common;

use common::*;
use eddyline_engine::transport::{ErrorCode, Isolation, TopicPartition};
use eddyline_sim::protocol::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceBatch, ProduceRequest, ProduceResponse,
    Request, Response,
};

mod idempotence {
    use super::*;

    #[test]
    fn a_retried_batch_is_written_once_and_answered_with_its_first_offset() {
        let mut cluster = cluster(61);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            let (pid, epoch) = match call(
                &mut connect(0),
                Request::InitProducerId(InitProducerIdRequest {
                    transactional_id: None,
                    transaction_timeout_ms: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                }),
            )
            .await
            {
                Response::InitProducerId(InitProducerIdResponse {
                    error: None,
                    producer_id,
                    producer_epoch,
                }) => (producer_id, producer_epoch),
                other => panic!("unexpected {other:?}"),
            };
            let first = batch(&tp, pid, epoch, 0, false, &["a", "b"]);
            assert_eq!(ok(&produce(&handle, None, first.clone()).await), 0);
            assert_eq!(
                ok(&produce(&handle, None, batch(&tp, pid, epoch, 2, false, &["c"])).await),
                2
            );
            // The retry of the first batch is answered with its offset.
            assert_eq!(ok(&produce(&handle, None, first).await), 0);
            // A gap in sequences is refused.
            let gap = produce(&handle, None, batch(&tp, pid, epoch, 7, false, &["x"])).await;
            assert_eq!(err(&gap), ErrorCode::OutOfOrderSequenceNumber);
            let result = fetch(&handle, &tp, 0, Isolation::ReadUncommitted).await;
            assert_eq!(result.high_watermark, 3);
            assert_eq!(values(&result).len(), 3);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn deduplication_survives_a_leader_failover() {
        let mut cluster = cluster(62);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            let first = batch(&tp, 5_000, 0, 0, false, &["a", "b"]);
            assert_eq!(ok(&produce(&handle, None, first.clone()).await), 0);
            let old = handle.leader_of(&tp).unwrap();
            handle.crash_broker(old);
            wait_for(&handle, |h| h.leader_of(&tp).is_some_and(|l| l != old)).await;
            // The new leader has the producer state: the retry is a duplicate.
            assert_eq!(ok(&produce(&handle, None, first).await), 0);
            assert_eq!(
                ok(&produce(&handle, None, batch(&tp, 5_000, 0, 2, false, &["c"])).await),
                2
            );
            handle.restart_broker(old);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod in_sync_replicas {
    use super::*;

    #[test]
    fn acks_all_waits_for_the_isr_and_goes_on_once_a_dead_follower_is_dropped() {
        let mut cluster = cluster(63);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            let state = handle.partition_state(&tp).unwrap();
            let leader = state.leader.unwrap();
            let followers: Vec<i32> = state
                .replicas
                .iter()
                .copied()
                .filter(|&b| b != leader)
                .collect();
            handle.crash_broker(followers[0]);
            sleep_ms(1).await;
            // Succeeds once the dead follower leaves the ISR (fencing or lag).
            let started = handle.now_ms();
            let offset = ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["a"])).await);
            assert_eq!(offset, 0);
            assert!(
                handle.now_ms() - started >= 100,
                "acks=all did not wait for the ISR"
            );
            assert_eq!(handle.partition_state(&tp).unwrap().isr.len(), 2);
            // With a second follower gone the ISR falls below min.insync=2.
            handle.crash_broker(followers[1]);
            wait_for(&handle, |h| h.partition_state(&tp).unwrap().isr.len() == 1).await;
            let refused = produce(&handle, None, batch(&tp, -1, -1, -1, false, &["b"])).await;
            assert_eq!(err(&refused), ErrorCode::NotEnoughReplicas);
            // Both come back, catch up and rejoin the ISR.
            handle.restart_broker(followers[0]);
            handle.restart_broker(followers[1]);
            wait_for(&handle, |h| h.partition_state(&tp).unwrap().isr.len() == 3).await;
            assert_eq!(
                ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["c"])).await),
                1
            );
            for broker in state.replicas {
                wait_for(&handle, |h| {
                    h.replica_log(broker, &tp).unwrap().0.len() == 2
                })
                .await;
            }
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_leader_move_keeps_every_acknowledged_record_and_the_offsets() {
        let mut cluster = cluster(64);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["a", "b"])).await);
            let before = handle.partition_state(&tp).unwrap();
            let target = *before
                .isr
                .iter()
                .find(|&&b| Some(b) != before.leader)
                .unwrap();
            handle.move_leader(&tp, Some(target));
            wait_for(&handle, |h| h.leader_of(&tp) == Some(target)).await;
            let after = handle.partition_state(&tp).unwrap();
            assert_eq!(after.leader_epoch, before.leader_epoch + 1);
            // Wait until the new leader knows it leads.
            let mut offset = None;
            for _ in 0..100 {
                let result = produce(&handle, None, batch(&tp, -1, -1, -1, false, &["c"])).await;
                if result.error.is_none() {
                    offset = Some(result.base_offset);
                    break;
                }
                assert_eq!(result.error, Some(ErrorCode::NotLeaderOrFollower));
                sleep_ms(5).await;
            }
            assert_eq!(offset, Some(2));
            let result = fetch(&handle, &tp, 0, Isolation::ReadCommitted).await;
            assert_eq!(values(&result).len(), 3);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod effective_min_isr {
    use super::*;
    use eddyline_engine::transport::NewTopic;
    use eddyline_sim::protocol::{CreateTopicsRequest, CreateTopicsResponse, TopicError};

    /// Kafka 3.8 compares the ISR with `min(min.insync.replicas,
    /// replication factor)` (`Partition.effectiveMinIsr`, used by
    /// `appendRecordsToLeader` and `checkEnoughReplicasReachOffset`): a
    /// replication-factor-1 topic under the cluster default of 2 takes
    /// acks=all writes, and its high watermark moves.
    #[test]
    fn a_replication_factor_1_topic_under_min_insync_2_accepts_acks_all_writes() {
        let mut cluster = cluster(67);
        let handle = cluster.handle();
        assert_eq!(handle.config().min_insync_replicas, 2);
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let response = call(
                &mut connect(0),
                Request::CreateTopics(CreateTopicsRequest {
                    topics: vec![NewTopic {
                        name: "single".into(),
                        partitions: 1,
                        replication_factor: 1,
                        configs: Vec::new(),
                    }],
                    timeout_ms: 5_000,
                }),
            )
            .await;
            assert_eq!(
                response,
                Response::CreateTopics(CreateTopicsResponse {
                    results: vec![TopicError {
                        name: "single".into(),
                        error: None
                    }]
                })
            );
            let tp = TopicPartition::new("single", 0);
            wait_for(&handle, |h| {
                h.partition_state(&tp)
                    .is_some_and(|p| p.leader.is_some() && p.isr.len() == 1)
            })
            .await;
            let result = produce(&handle, None, batch(&tp, -1, -1, -1, false, &["a", "b"])).await;
            assert_eq!(result.error, None, "{result:?}");
            assert_eq!(result.base_offset, 0);
            let fetched = fetch(&handle, &tp, 0, Isolation::ReadUncommitted).await;
            assert_eq!(fetched.high_watermark, 2);
            assert_eq!(
                values(&fetched),
                vec![(0, "a".to_string()), (1, "b".to_string())]
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// Kafka 3.8's leader does not advance the high watermark while the ISR
/// is smaller than the effective min ISR (`Partition.maybeIncrementLeaderHW`
/// returns at once when `isUnderMinIsr`); an acks=all write appended before
/// the ISR shrank waits in purgatory until its timeout
/// (`Partition.checkEnoughReplicasReachOffset` sees the high watermark below
/// it: REQUEST_TIMED_OUT), new ones are refused before the append
/// (`appendRecordsToLeader`: NOT_ENOUGH_REPLICAS).
mod high_watermark_under_min_isr {
    use super::*;
    use eddyline_engine::transport::NewTopic;
    use eddyline_sim::cluster::ClusterHandle;
    use eddyline_sim::protocol::{CreateTopicsRequest, CreateTopicsResponse, TopicError};

    async fn create_two_replica_topic(handle: &ClusterHandle, tp: &TopicPartition) {
        let response = call(
            &mut connect(0),
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![NewTopic {
                    name: tp.topic.clone(),
                    partitions: 1,
                    replication_factor: 2,
                    configs: Vec::new(),
                }],
                timeout_ms: 5_000,
            }),
        )
        .await;
        assert_eq!(
            response,
            Response::CreateTopics(CreateTopicsResponse {
                results: vec![TopicError {
                    name: tp.topic.clone(),
                    error: None
                }]
            })
        );
        wait_for(handle, |h| {
            h.partition_state(tp)
                .is_some_and(|p| p.leader.is_some() && p.isr.len() == 2)
        })
        .await;
    }

    async fn produce_waiting(
        handle: &ClusterHandle,
        batch: ProduceBatch,
        timeout_ms: u32,
    ) -> (Option<ErrorCode>, u64) {
        let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
        let leader = handle.leader_of(&tp).expect("a leader");
        let sent_ms = handle.now_ms();
        match call(
            &mut connect(leader),
            Request::Produce(ProduceRequest {
                transactional_id: None,
                timeout_ms,
                batches: vec![batch],
            }),
        )
        .await
        {
            Response::Produce(ProduceResponse { results }) => {
                (results[0].error, handle.now_ms() - sent_ms)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_high_watermark_stays_while_the_isr_is_under_min_insync_and_moves_once_it_is_back() {
        let mut cluster = cluster_with(68, |config| {
            config.min_insync_replicas = 2;
            config.replica_lag_max_ms = 1_000;
            config.broker_heartbeat_interval_ms = 100;
            config.broker_session_timeout_ms = 600;
        });
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let tp = TopicPartition::new("two", 0);
            create_two_replica_topic(&handle, &tp).await;
            assert_eq!(
                ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["a"])).await),
                0
            );
            let state = handle.partition_state(&tp).unwrap();
            let leader = state.leader.unwrap();
            let follower = *state.replicas.iter().find(|&&b| b != leader).unwrap();
            handle.crash_broker(follower);
            // Appended while the ISR still has both; waits for the follower.
            let in_flight_timeout_ms = 20_000;
            let in_flight = produce_waiting(
                &handle,
                batch(&tp, -1, -1, -1, false, &["b"]),
                in_flight_timeout_ms,
            );
            let under_min_isr = async {
                wait_for(&handle, |h| {
                    h.partition_state(&tp).unwrap().isr == vec![leader]
                })
                .await;
                for _ in 0..20 {
                    let fetched = fetch(&handle, &tp, 0, Isolation::ReadUncommitted).await;
                    assert_eq!(
                        fetched.high_watermark,
                        1,
                        "the HW moved with the ISR at {:?}",
                        handle.partition_state(&tp).unwrap().isr
                    );
                    sleep_ms(100).await;
                }
                let refused = produce(&handle, None, batch(&tp, -1, -1, -1, false, &["c"])).await;
                assert_eq!(err(&refused), ErrorCode::NotEnoughReplicas);
            };
            let ((error, waited_ms), ()) = tokio::join!(in_flight, under_min_isr);
            assert_eq!(error, Some(ErrorCode::RequestTimedOut));
            assert!(
                waited_ms >= u64::from(in_flight_timeout_ms),
                "{waited_ms} ms"
            );
            // The follower returns, catches up and rejoins: the HW moves
            // over the record whose produce timed out.
            handle.restart_broker(follower);
            wait_for(&handle, |h| h.partition_state(&tp).unwrap().isr.len() == 2).await;
            let mut fetched = fetch(&handle, &tp, 0, Isolation::ReadUncommitted).await;
            for _ in 0..200 {
                if fetched.high_watermark == 2 {
                    break;
                }
                sleep_ms(50).await;
                fetched = fetch(&handle, &tp, 0, Isolation::ReadUncommitted).await;
            }
            assert_eq!(
                values(&fetched),
                vec![(0, "a".to_string()), (1, "b".to_string())]
            );
            assert_eq!(fetched.high_watermark, 2);
            assert_eq!(
                ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["d"])).await),
                2
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod truncation {
    use super::*;

    #[test]
    fn a_deposed_leader_drops_its_unreplicated_tail_and_converges_with_the_new_leader() {
        let mut cluster = cluster(65);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["committed"])).await);
            let state = handle.partition_state(&tp).unwrap();
            let old = state.leader.unwrap();
            let old_host = format!("broker-{old}");
            let others: Vec<String> = ["controller", "broker-0", "broker-1", "broker-2"]
                .iter()
                .filter(|h| **h != old_host)
                .map(|h| h.to_string())
                .collect();
            let others_ref: Vec<&str> = others.iter().map(String::as_str).collect();
            // Cut the leader from the cluster (not from this client).
            handle.partition(&[old_host.as_str()], &others_ref);
            sleep_ms(5).await;
            // Its write cannot reach the ISR: acks=all never confirms it.
            let stranded = ProduceBatch {
                ..batch(&tp, -1, -1, -1, false, &["stranded"])
            };
            let response = connect(old)
                .call(
                    Request::Produce(ProduceRequest {
                        transactional_id: None,
                        timeout_ms: 300,
                        batches: vec![stranded],
                    }),
                    5_000,
                )
                .await
                .unwrap();
            match response {
                Response::Produce(ProduceResponse { results }) => {
                    assert_eq!(results[0].error, Some(ErrorCode::RequestTimedOut))
                }
                other => panic!("unexpected {other:?}"),
            }
            // The controller fences it and elects another ISR member.
            wait_for(&handle, |h| h.leader_of(&tp).is_some_and(|l| l != old)).await;
            let new_leader = handle.leader_of(&tp).unwrap();
            let mut written = false;
            for _ in 0..100 {
                let result = produce(&handle, None, batch(&tp, -1, -1, -1, false, &["new"])).await;
                if result.error.is_none() {
                    assert_eq!(result.base_offset, 1);
                    written = true;
                    break;
                }
                sleep_ms(10).await;
            }
            assert!(written);
            handle.heal(&[old_host.as_str()], &others_ref);
            // The old leader truncates "stranded" and copies "new".
            let expected = handle.replica_log(new_leader, &tp).unwrap().0;
            wait_for(&handle, |h| h.replica_log(old, &tp).unwrap().0 == expected).await;
            wait_for(&handle, |h| h.partition_state(&tp).unwrap().isr.len() == 3).await;
            let result = fetch(&handle, &tp, 0, Isolation::ReadCommitted).await;
            assert_eq!(
                values(&result),
                vec![(0, "committed".to_string()), (1, "new".to_string())]
            );
            assert_eq!(handle.verify_replicas(), Ok(()));
            Ok(())
        });
        cluster.run().unwrap();
    }
}
