//! The rdkafka transport against a real Kafka 3.8 broker (scripts/kafka).
//!
//! Each test is `#[ignore]`d because it needs a broker; `scripts/test` runs
//! them with `--include-ignored` and `EDDY_KAFKA_BOOTSTRAP` set.

mod kafka_common;

use std::time::Duration;

use eddyline_engine::transport::{
    Admin, Consumer, ConsumerEvent, ErrorCode, ErrorKind, Isolation, NewTopic, OffsetAndMetadata,
    Producer, ProducerRecord, TopicPartition, Transport, partition_for_key,
};
use kafka_common::*;

mod admin {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_created_topic_reports_its_partition_count() {
        let transport = transport();
        let topic = unique("admin-count");
        create_topic(&transport, &topic, 3).await;
        let admin = transport.admin().await.unwrap();
        assert_eq!(admin.partition_count(&topic).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn creating_an_existing_topic_fails_with_topic_already_exists() {
        let transport = transport();
        let topic = unique("admin-twice");
        create_topic(&transport, &topic, 1).await;
        let admin = transport.admin().await.unwrap();
        let error = admin
            .create_topic(&NewTopic {
                name: topic.clone(),
                partitions: 1,
                replication_factor: 1,
                configs: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::TopicAlreadyExists, "{error}");
        assert!(error.message.contains(&topic), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_missing_topic_is_a_one_line_error_naming_it() {
        let transport = transport();
        let admin = transport.admin().await.unwrap();
        let topic = unique("admin-missing");
        let error = admin.partition_count(&topic).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::UnknownTopicOrPartition, "{error}");
        assert!(error.message.contains(&topic), "{error}");
        assert!(!error.to_string().contains('\n'));
    }
}

mod producing_and_consuming {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn keyed_records_land_on_kafkas_murmur2_partition_with_dense_offsets() {
        let transport = transport();
        let topic = unique("keyed");
        create_topic(&transport, &topic, 6).await;
        let mut producer = transport
            .producer(&producer_config("keyed", None))
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..60 {
            let key = format!("user-{i}");
            let record = ProducerRecord {
                topic: topic.clone(),
                partition: None,
                key: Some(key.clone().into_bytes()),
                value: Some(format!("{i}").into_bytes()),
                timestamp_ms: Some(1_000 + i),
                headers: Vec::new(),
            };
            deliveries.push((key, producer.send(record).unwrap()));
        }
        producer.flush().await.unwrap();
        let mut next_offset = [0_i64; 6];
        for (key, delivery) in deliveries {
            let delivered = delivery.await.unwrap();
            assert_eq!(
                delivered.partition,
                partition_for_key(key.as_bytes(), 6),
                "key {key}"
            );
            let slot = &mut next_offset[delivered.partition as usize];
            assert_eq!(delivered.offset, *slot, "offsets are dense in send order");
            *slot += 1;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_record_without_key_or_partition_is_rejected() {
        let transport = transport();
        let mut producer = transport
            .producer(&producer_config("nokey", None))
            .await
            .unwrap();
        let error = producer
            .send(ProducerRecord {
                topic: "any".into(),
                partition: None,
                key: None,
                value: Some(b"v".to_vec()),
                timestamp_ms: None,
                headers: Vec::new(),
            })
            .err()
            .expect("rejected");
        assert_eq!(error.code, ErrorCode::InvalidRecord);
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn keys_values_headers_and_timestamps_round_trip() {
        let transport = transport();
        let topic = unique("roundtrip");
        create_topic(&transport, &topic, 1).await;
        let mut producer = transport
            .producer(&producer_config("roundtrip", None))
            .await
            .unwrap();
        let sent = ProducerRecord {
            topic: topic.clone(),
            partition: Some(0),
            key: Some(b"key-1".to_vec()),
            value: Some(vec![0, 1, 2, 255]),
            timestamp_ms: Some(1_234_567),
            headers: vec![
                ("reason".into(), b"bad json".to_vec()),
                ("reason".into(), b"second".to_vec()),
            ],
        };
        producer.send(sent.clone()).unwrap().await.unwrap();
        let messages = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.offset, 0);
        assert_eq!(message.key.as_deref(), sent.key.as_deref());
        assert_eq!(message.value.as_deref(), sent.value.as_deref());
        assert_eq!(message.timestamp_ms, 1_234_567);
        assert_eq!(message.headers, sent.headers);
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn seek_moves_a_manually_assigned_reader() {
        let transport = transport();
        let topic = unique("seek");
        create_topic(&transport, &topic, 1).await;
        produce_plain(&transport, &topic, 0, &["a", "b", "c", "d"]).await;
        let mut consumer = transport
            .consumer(&consumer_config("seeker", None, Isolation::ReadCommitted))
            .await
            .unwrap();
        let tp = TopicPartition::new(&topic, 0);
        consumer.assign(std::slice::from_ref(&tp)).await.unwrap();
        consumer.seek(&tp, 2).await.unwrap();
        let mut read = Vec::new();
        for _ in 0..100 {
            for event in consumer.poll(10, Duration::from_millis(100)).await.unwrap() {
                if let ConsumerEvent::Message(m) = event {
                    read.push(m);
                }
            }
            if read.len() >= 2 {
                break;
            }
        }
        assert_eq!(values(&read), vec!["c", "d"]);
        assert_eq!(read[0].offset, 2);
        // And back again after reading.
        consumer.seek(&tp, 0).await.unwrap();
        let mut again = Vec::new();
        for _ in 0..100 {
            for event in consumer.poll(10, Duration::from_millis(100)).await.unwrap() {
                if let ConsumerEvent::Message(m) = event {
                    again.push(m);
                }
            }
            if again.len() >= 4 {
                break;
            }
        }
        assert_eq!(values(&again), vec!["a", "b", "c", "d"]);
        consumer.close().await.unwrap();
    }
}

mod transactions {
    use super::*;

    async fn transactional(
        transport: &eddyline_engine::kafka::KafkaTransport,
        id: &str,
    ) -> eddyline_engine::kafka::KafkaProducer {
        let mut producer = transport
            .producer(&producer_config(id, Some(id.to_string())))
            .await
            .unwrap();
        producer.init_transactions().await.unwrap();
        producer
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_committed_transaction_is_visible_and_moves_the_end_offset_by_n_plus_one() {
        let transport = transport();
        let topic = unique("txn-commit");
        create_topic(&transport, &topic, 1).await;
        let mut producer = transactional(&transport, &unique("txn-commit-id")).await;
        producer.begin_transaction().await.unwrap();
        for value in ["a", "b", "c"] {
            producer.send(record(&topic, 0, "k", value)).unwrap();
        }
        producer.commit_transaction().await.unwrap();
        let messages = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            3,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(values(&messages), vec!["a", "b", "c"]);
        let mut consumer = transport
            .consumer(&consumer_config("range", None, Isolation::ReadCommitted))
            .await
            .unwrap();
        let range = consumer
            .offsets_range(&TopicPartition::new(&topic, 0))
            .await
            .unwrap();
        assert_eq!(range, (0, 4), "3 records and a commit marker");
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn an_aborted_transaction_is_hidden_from_read_committed_only() {
        let transport = transport();
        let topic = unique("txn-abort");
        create_topic(&transport, &topic, 1).await;
        let mut producer = transactional(&transport, &unique("txn-abort-id")).await;
        producer.begin_transaction().await.unwrap();
        producer.send(record(&topic, 0, "k", "aborted")).unwrap();
        producer.flush().await.unwrap();
        producer.abort_transaction().await.unwrap();
        producer.begin_transaction().await.unwrap();
        producer.send(record(&topic, 0, "k", "committed")).unwrap();
        producer.commit_transaction().await.unwrap();
        let committed = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(values(&committed), vec!["committed"]);
        assert_eq!(committed[0].offset, 2, "the abort marker took offset 1");
        let uncommitted = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadUncommitted,
            2,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(values(&uncommitted), vec!["aborted", "committed"]);
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn an_open_transaction_holds_read_committed_readers_at_the_last_stable_offset() {
        let transport = transport();
        let topic = unique("txn-lso");
        create_topic(&transport, &topic, 1).await;
        produce_plain(&transport, &topic, 0, &["before"]).await;
        let mut open = transactional(&transport, &unique("txn-lso-id")).await;
        open.begin_transaction().await.unwrap();
        open.send(record(&topic, 0, "k", "open")).unwrap();
        open.flush().await.unwrap();
        // A later record of another (idempotent) producer, behind the open one.
        produce_plain(&transport, &topic, 0, &["after"]).await;

        let tp = TopicPartition::new(&topic, 0);
        let mut committed_reader = transport
            .consumer(&consumer_config("lso-rc", None, Isolation::ReadCommitted))
            .await
            .unwrap();
        let mut uncommitted_reader = transport
            .consumer(&consumer_config("lso-ru", None, Isolation::ReadUncommitted))
            .await
            .unwrap();
        assert_eq!(
            committed_reader.offsets_range(&tp).await.unwrap(),
            (0, 1),
            "end = LSO"
        );
        assert_eq!(
            uncommitted_reader.offsets_range(&tp).await.unwrap(),
            (0, 3),
            "end = high watermark"
        );

        let rc = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            3,
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(values(&rc), vec!["before"], "blocked at the LSO");
        let ru = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadUncommitted,
            3,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(values(&ru), vec!["before", "open", "after"]);

        open.commit_transaction().await.unwrap();
        let rc = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            3,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(values(&rc), vec!["before", "open", "after"]);
        assert_eq!(committed_reader.offsets_range(&tp).await.unwrap(), (0, 4));
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_second_init_transactions_fences_the_first_producer() {
        let transport = transport();
        let topic = unique("txn-fence");
        create_topic(&transport, &topic, 1).await;
        let id = unique("txn-fence-id");
        let mut zombie = transactional(&transport, &id).await;
        zombie.begin_transaction().await.unwrap();
        zombie.send(record(&topic, 0, "k", "zombie")).unwrap();
        zombie.flush().await.unwrap();
        let mut successor = transactional(&transport, &id).await;
        successor.begin_transaction().await.unwrap();
        successor.send(record(&topic, 0, "k", "successor")).unwrap();
        successor.commit_transaction().await.unwrap();

        let error = zombie.commit_transaction().await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Fenced, "{error}");
        assert!(
            matches!(
                error.code,
                ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch
            ),
            "{error}"
        );
        eprintln!(
            "real Kafka fences a zombie's commit with {:?}: {}",
            error.code, error.message
        );
        let rc = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            values(&rc),
            vec!["successor"],
            "the zombie's open transaction was aborted"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_failed_send_makes_the_commit_abortable_and_nothing_visible() {
        let transport = transport();
        let topic = unique("txn-failed-send");
        create_topic(&transport, &topic, 1).await;
        let mut producer = transactional(&transport, &unique("txn-failed-send-id")).await;
        producer.begin_transaction().await.unwrap();
        producer.send(record(&topic, 0, "k", "good")).unwrap();
        let bad = producer
            .send(record(&topic, 7, "k", "no such partition"))
            .unwrap();
        let error = producer.commit_transaction().await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Abortable, "{error}");
        assert!(bad.await.is_err());
        producer.abort_transaction().await.unwrap();
        let ru = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            1,
            Duration::from_secs(2),
        )
        .await;
        assert!(ru.is_empty(), "{:?}", values(&ru));
        // The producer goes on after the abort.
        producer.begin_transaction().await.unwrap();
        producer.send(record(&topic, 0, "k", "next")).unwrap();
        producer.commit_transaction().await.unwrap();
        let rc = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(values(&rc), vec!["next"]);
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_transaction_past_its_timeout_is_aborted_by_the_coordinator() {
        let transport = transport();
        let topic = unique("txn-timeout");
        create_topic(&transport, &topic, 1).await;
        let id = unique("txn-timeout-id");
        let mut config = producer_config(&id, Some(id.clone()));
        config.transaction_timeout_ms = 2_000;
        config.delivery_timeout_ms = 2_000;
        let mut producer = transport.producer(&config).await.unwrap();
        producer.init_transactions().await.unwrap();
        producer.begin_transaction().await.unwrap();
        producer.send(record(&topic, 0, "k", "too slow")).unwrap();
        producer.flush().await.unwrap();
        // The broker checks for timed-out transactions every second.
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        let error = producer.commit_transaction().await.unwrap_err();
        eprintln!(
            "commit after the transaction timeout: {:?} {:?}: {}",
            error.kind, error.code, error.message
        );
        assert!(
            matches!(error.kind, ErrorKind::Fenced | ErrorKind::Abortable),
            "{error}"
        );
        let rc = read_partition(
            &transport,
            &topic,
            0,
            Isolation::ReadCommitted,
            1,
            Duration::from_secs(2),
        )
        .await;
        assert!(rc.is_empty(), "{:?}", values(&rc));
        let mut reader = transport
            .consumer(&consumer_config(
                "timeout-range",
                None,
                Isolation::ReadCommitted,
            ))
            .await
            .unwrap();
        let (_, end) = reader
            .offsets_range(&TopicPartition::new(&topic, 0))
            .await
            .unwrap();
        assert_eq!(end, 2, "the record and the coordinator's abort marker");
    }
}

mod groups {
    use super::*;
    use eddyline_engine::kafka::{KafkaConsumer, KafkaProducer};
    use eddyline_engine::transport::GroupMetadata;

    /// Polls until `consumer` reports an assignment; returns it.
    async fn until_assigned(consumer: &mut KafkaConsumer) -> Vec<TopicPartition> {
        for _ in 0..300 {
            for event in consumer
                .poll(100, Duration::from_millis(100))
                .await
                .unwrap()
            {
                if let ConsumerEvent::Assigned(partitions) = event {
                    // The seam: group metadata from the first assignment on,
                    // already in the poll that reports it.
                    assert!(
                        consumer.group_metadata().is_some(),
                        "no group metadata in the poll that reported the assignment"
                    );
                    return partitions;
                }
            }
        }
        panic!("no assignment within 30 s");
    }

    async fn group_member(
        transport: &eddyline_engine::kafka::KafkaTransport,
        name: &str,
        group: &str,
        topic: &str,
    ) -> KafkaConsumer {
        let mut consumer = transport
            .consumer(&consumer_config(
                name,
                Some(group.to_string()),
                Isolation::ReadCommitted,
            ))
            .await
            .unwrap();
        consumer.subscribe(&[topic.to_string()]).await.unwrap();
        consumer
    }

    async fn commit_offsets_in_a_transaction(
        producer: &mut KafkaProducer,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
    ) -> eddyline_engine::transport::TransportResult<()> {
        producer.begin_transaction().await?;
        producer.send_offsets_to_transaction(offsets, group).await?;
        producer.commit_transaction().await
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_rebalance_revokes_first_and_the_member_commits_before_its_next_poll() {
        let transport = transport();
        let topic = unique("group-rebalance");
        create_topic(&transport, &topic, 4).await;
        let group = unique("group-rebalance-g");
        let mut first = group_member(&transport, "first", &group, &topic).await;
        let assigned = until_assigned(&mut first).await;
        assert_eq!(assigned.len(), 4, "a lone member owns every partition");
        first.poll(10, Duration::from_millis(200)).await.unwrap();
        let before = first.group_metadata().expect("metadata after assignment");
        assert!(before.generation_id >= 1, "{before:?}");
        assert!(!before.member_id.is_empty());

        // A second member joins: the first must be told Revoked first.
        let mut second = group_member(&transport, "second", &group, &topic).await;
        let mut revoked = None;
        for _ in 0..300 {
            let (events, _) = tokio::join!(
                first.poll(100, Duration::from_millis(100)),
                second.poll(100, Duration::from_millis(1))
            );
            for event in events.unwrap() {
                match event {
                    ConsumerEvent::Revoked(partitions) => revoked = Some(partitions),
                    ConsumerEvent::Assigned(partitions) => {
                        panic!("assigned {partitions:?} before any revoke")
                    }
                    _ => {}
                }
            }
            if revoked.is_some() {
                break;
            }
        }
        assert_eq!(revoked.expect("revoked within 30 s"), assigned);

        // Still the owner with a valid generation: a transactional offset
        // commit with the metadata of the generation succeeds.
        let during = first
            .group_metadata()
            .expect("metadata until the next poll");
        assert_eq!(during, before);
        let id = unique("group-rebalance-txn");
        let mut producer = transport
            .producer(&producer_config(&id, Some(id.clone())))
            .await
            .unwrap();
        producer.init_transactions().await.unwrap();
        let tp0 = TopicPartition::new(&topic, 0);
        let offsets = vec![(
            tp0.clone(),
            OffsetAndMetadata {
                offset: 0,
                metadata: "checkpoint-1".into(),
            },
        )];
        commit_offsets_in_a_transaction(&mut producer, &offsets, &during)
            .await
            .expect("the revoked member's generation is still valid before its next poll");

        // Now both poll: each gets a share, together all four.
        let mut first_share = None;
        let mut second_share = None;
        for _ in 0..300 {
            let (a, b) = tokio::join!(
                first.poll(100, Duration::from_millis(50)),
                second.poll(100, Duration::from_millis(50))
            );
            for event in a.unwrap() {
                if let ConsumerEvent::Assigned(p) = event {
                    first_share = Some(p);
                }
            }
            for event in b.unwrap() {
                if let ConsumerEvent::Assigned(p) = event {
                    second_share = Some(p);
                }
            }
            if first_share.is_some() && second_share.is_some() {
                break;
            }
        }
        let first_share = first_share.expect("first reassigned");
        let second_share = second_share.expect("second assigned");
        let mut all: Vec<_> = first_share.iter().chain(&second_share).cloned().collect();
        all.sort();
        assert_eq!(all, assigned, "range assignor splits all partitions");
        assert_eq!(first_share.len(), 2);
        // Apply the assignments, then the generation has moved on.
        let (a, b) = tokio::join!(
            first.poll(10, Duration::from_millis(10)),
            second.poll(10, Duration::from_millis(10))
        );
        a.unwrap();
        b.unwrap();
        let after = first
            .group_metadata()
            .expect("metadata of the new generation");
        assert!(
            after.generation_id > before.generation_id,
            "{before:?} -> {after:?}"
        );

        // The stale generation is fenced by the coordinator (KIP-447).
        let stale = commit_offsets_in_a_transaction(&mut producer, &offsets, &before)
            .await
            .unwrap_err();
        eprintln!(
            "stale generation: {:?} {:?}: {}",
            stale.kind, stale.code, stale.message
        );
        assert_eq!(stale.code, ErrorCode::IllegalGeneration, "{stale}");
        assert_eq!(stale.kind, ErrorKind::Abortable, "{stale}");
        producer.abort_transaction().await.unwrap();

        // The committed offset kept its metadata.
        let committed = second.committed(std::slice::from_ref(&tp0)).await.unwrap();
        assert_eq!(
            committed,
            vec![Some(OffsetAndMetadata {
                offset: 0,
                metadata: "checkpoint-1".into()
            })]
        );
        second.close().await.unwrap();
        first.close().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn committed_waits_for_an_open_transaction_that_holds_offsets() {
        let transport = transport();
        let topic = unique("group-stable");
        create_topic(&transport, &topic, 1).await;
        let group = unique("group-stable-g");
        let mut member = group_member(&transport, "stable", &group, &topic).await;
        until_assigned(&mut member).await;
        member.poll(10, Duration::from_millis(100)).await.unwrap();
        let metadata = member.group_metadata().unwrap();
        let tp = TopicPartition::new(&topic, 0);
        member
            .commit(&[(
                tp.clone(),
                OffsetAndMetadata {
                    offset: 1,
                    metadata: "old".into(),
                },
            )])
            .await
            .unwrap();

        let id = unique("group-stable-txn");
        let mut producer = transport
            .producer(&producer_config(&id, Some(id.clone())))
            .await
            .unwrap();
        producer.init_transactions().await.unwrap();
        producer.begin_transaction().await.unwrap();
        producer
            .send_offsets_to_transaction(
                &[(
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: 5,
                        metadata: "new".into(),
                    },
                )],
                &metadata,
            )
            .await
            .unwrap();
        // While the transaction is open, committed() must not answer "old":
        // it waits, and the commit below releases it.
        let mut reader = transport
            .consumer(&consumer_config(
                "stable-reader",
                Some(group.clone()),
                Isolation::ReadCommitted,
            ))
            .await
            .unwrap();
        let (committed, commit) =
            tokio::join!(reader.committed(std::slice::from_ref(&tp)), async {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                producer.commit_transaction().await
            });
        commit.unwrap();
        assert_eq!(
            committed.unwrap(),
            vec![Some(OffsetAndMetadata {
                offset: 5,
                metadata: "new".into()
            })]
        );
        member.close().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_seek_after_assignment_sets_where_reading_starts() {
        let transport = transport();
        let topic = unique("group-seek");
        create_topic(&transport, &topic, 1).await;
        produce_plain(&transport, &topic, 0, &["a", "b", "c"]).await;
        let group = unique("group-seek-g");
        let mut member = group_member(&transport, "seeker", &group, &topic).await;
        let assigned = until_assigned(&mut member).await;
        member.seek(&assigned[0], 1).await.unwrap();
        let mut read = Vec::new();
        for _ in 0..100 {
            for event in member.poll(10, Duration::from_millis(100)).await.unwrap() {
                if let ConsumerEvent::Message(m) = event {
                    read.push(m);
                }
            }
            if read.len() >= 2 {
                break;
            }
        }
        assert_eq!(values(&read), vec!["b", "c"]);
        member.close().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn a_member_resumes_from_the_groups_committed_offset() {
        let transport = transport();
        let topic = unique("group-resume");
        create_topic(&transport, &topic, 1).await;
        produce_plain(&transport, &topic, 0, &["a", "b", "c"]).await;
        let group = unique("group-resume-g");
        let tp = TopicPartition::new(&topic, 0);
        {
            let mut member = group_member(&transport, "one", &group, &topic).await;
            until_assigned(&mut member).await;
            member
                .commit(&[(
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: 2,
                        metadata: "cp-7".into(),
                    },
                )])
                .await
                .unwrap();
            member.close().await.unwrap();
        }
        let mut member = group_member(&transport, "two", &group, &topic).await;
        until_assigned(&mut member).await;
        let committed = member.committed(std::slice::from_ref(&tp)).await.unwrap();
        assert_eq!(
            committed,
            vec![Some(OffsetAndMetadata {
                offset: 2,
                metadata: "cp-7".into()
            })]
        );
        let mut read = Vec::new();
        for _ in 0..100 {
            for event in member.poll(10, Duration::from_millis(100)).await.unwrap() {
                if let ConsumerEvent::Message(m) = event {
                    read.push(m);
                }
            }
            if !read.is_empty() {
                break;
            }
        }
        assert_eq!(values(&read), vec!["c"]);
        member.close().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn subscribing_to_a_missing_topic_is_an_error_naming_it() {
        let transport = transport();
        let topic = unique("group-missing");
        let mut consumer = transport
            .consumer(&consumer_config(
                "missing",
                Some(unique("g")),
                Isolation::ReadCommitted,
            ))
            .await
            .unwrap();
        let error = consumer
            .subscribe(std::slice::from_ref(&topic))
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::UnknownTopicOrPartition, "{error}");
        assert!(error.message.contains(&topic), "{error}");
    }
}
