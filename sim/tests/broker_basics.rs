//! The broker's basic services over the network: metadata, topic creation,
//! acks=all produce and fetch on replicated partitions.

mod common;

use common::*;
use eddyline_engine::transport::{ErrorCode, Isolation, TopicPartition};
use eddyline_sim::protocol::{
    CreateTopicsRequest, CreateTopicsResponse, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsResult, MetadataRequest, MetadataResponse, OffsetSpec, Request,
    Response, TopicError,
};

mod produce_and_fetch {
    use super::*;

    #[test]
    fn acknowledged_batches_get_dense_offsets_and_read_back_in_order() {
        let mut cluster = cluster(1);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 3).await;
            let tp = TopicPartition::new("t", 1);
            assert_eq!(
                ok(&produce(
                    &handle,
                    None,
                    batch(&tp, -1, -1, -1, false, &["a", "b", "c"])
                )
                .await),
                0
            );
            assert_eq!(
                ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["d", "e"])).await),
                3
            );
            let result = fetch(&handle, &tp, 0, Isolation::ReadCommitted).await;
            assert_eq!(result.error, None);
            assert_eq!(result.high_watermark, 5);
            assert_eq!(result.last_stable_offset, 5);
            assert_eq!(
                values(&result),
                vec![
                    (0, "a".to_string()),
                    (1, "b".to_string()),
                    (2, "c".to_string()),
                    (3, "d".to_string()),
                    (4, "e".to_string())
                ]
            );
            // acks=all: every replica has the batches once acknowledged.
            let state = handle.partition_state(&tp).unwrap();
            assert_eq!(state.isr.len(), 3);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_follower_refuses_produce_and_fetch_with_not_leader() {
        let mut cluster = cluster(2);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            let state = handle.partition_state(&tp).unwrap();
            let follower = *state
                .replicas
                .iter()
                .find(|&&b| Some(b) != state.leader)
                .unwrap();
            let result = produce_to(
                &mut connect(follower),
                None,
                batch(&tp, -1, -1, -1, false, &["x"]),
            )
            .await;
            assert_eq!(err(&result), ErrorCode::NotLeaderOrFollower);
            let result =
                fetch_from(&mut connect(follower), &tp, 0, Isolation::ReadCommitted, 0).await;
            assert_eq!(result.error, Some(ErrorCode::NotLeaderOrFollower));
            let unknown = TopicPartition::new("nope", 0);
            let result = produce_to(
                &mut connect(0),
                None,
                batch(&unknown, -1, -1, -1, false, &["x"]),
            )
            .await;
            assert_eq!(err(&result), ErrorCode::UnknownTopicOrPartition);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_long_poll_fetch_returns_as_soon_as_records_are_committed() {
        let mut cluster = cluster(3);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 1).await;
            let tp = TopicPartition::new("t", 0);
            let leader = handle.leader_of(&tp).unwrap();
            let producer_handle = handle.clone();
            let producer_tp = tp.clone();
            tokio::task::spawn_local(async move {
                sleep_ms(50).await;
                produce(
                    &producer_handle,
                    None,
                    batch(&producer_tp, -1, -1, -1, false, &["late"]),
                )
                .await;
            });
            let started = handle.now_ms();
            let result = fetch_from(
                &mut connect(leader),
                &tp,
                0,
                Isolation::ReadUncommitted,
                5_000,
            )
            .await;
            let waited = handle.now_ms() - started;
            assert_eq!(values(&result), vec![(0, "late".to_string())]);
            assert!((50..1_000).contains(&waited), "waited {waited} ms");
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod metadata {
    use super::*;

    /// Kafka 3.8's `BrokerServer.startup` enables request processing only
    /// once the broker has caught up with the metadata log; before this was
    /// modelled, a restarted broker answered UNKNOWN_TOPIC_OR_PARTITION for
    /// existing topics, and a consumer group's leader assigned nothing.
    #[test]
    fn a_restarted_broker_answers_metadata_only_once_it_knows_the_topics() {
        let mut cluster = cluster(5);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "orders", 4).await;
            handle.crash_broker(2);
            sleep_ms(50).await;
            handle.restart_broker(2);
            // As a client does: retry while the broker refuses connections;
            // the first answer it gives must know the topic.
            let mut answer = None;
            for _ in 0..500 {
                let request = Request::Metadata(MetadataRequest {
                    topics: Some(vec!["orders".into()]),
                });
                if let Ok(response) = connect(2).call(request, 1_000).await {
                    answer = Some(response);
                    break;
                }
                sleep_ms(2).await;
            }
            let response = answer.expect("the restarted broker answers");
            let Response::Metadata(MetadataResponse { topics, .. }) = response else {
                panic!("unexpected {response:?}");
            };
            assert_eq!(topics[0].error, None, "{topics:?}");
            assert_eq!(topics[0].partitions.len(), 4);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn metadata_lists_live_brokers_and_partition_leaders() {
        let mut cluster = cluster(4);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "orders", 4).await;
            let response = call(
                &mut connect(2),
                Request::Metadata(MetadataRequest {
                    topics: Some(vec!["orders".into(), "missing".into()]),
                }),
            )
            .await;
            let Response::Metadata(MetadataResponse {
                brokers, topics, ..
            }) = response
            else {
                panic!("unexpected {response:?}");
            };
            assert_eq!(
                brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            assert_eq!(topics[0].partitions.len(), 4);
            for partition in &topics[0].partitions {
                assert!(partition.leader.is_some());
                assert_eq!(partition.replicas.len(), 3);
            }
            assert_eq!(topics[1].error, Some(ErrorCode::UnknownTopicOrPartition));
            // Creating it again fails as Kafka does.
            let response = call(
                &mut connect(1),
                Request::CreateTopics(CreateTopicsRequest {
                    topics: vec![eddyline_engine::transport::NewTopic {
                        name: "orders".into(),
                        partitions: 1,
                        replication_factor: 1,
                        configs: vec![],
                    }],
                    timeout_ms: 1_000,
                }),
            )
            .await;
            assert_eq!(
                response,
                Response::CreateTopics(CreateTopicsResponse {
                    results: vec![TopicError {
                        name: "orders".into(),
                        error: Some(ErrorCode::TopicAlreadyExists)
                    }]
                })
            );
            let response = call(
                &mut connect(handle.leader_of(&TopicPartition::new("orders", 0)).unwrap()),
                Request::ListOffsets(ListOffsetsRequest {
                    isolation: Isolation::ReadCommitted,
                    partitions: vec![ListOffsetsPartition {
                        topic_partition: TopicPartition::new("orders", 0),
                        spec: OffsetSpec::Latest,
                    }],
                }),
            )
            .await;
            assert_eq!(
                response,
                Response::ListOffsets(ListOffsetsResponse {
                    results: vec![ListOffsetsResult {
                        topic_partition: TopicPartition::new("orders", 0),
                        offset: Ok(0)
                    }]
                })
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}
