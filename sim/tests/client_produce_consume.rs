//! The simulated client end to end on a 3-broker cluster: produce and
//! consume through the `Transport` traits, with faults.

mod common;

use std::collections::BTreeMap;

use common::*;
use eddyline_engine::transport::{
    Admin, Consumer, ErrorCode, ErrorKind, NewTopic, OffsetReset, Producer, ProducerRecord,
    Transport, partition_for_key,
};

mod order_and_offsets {
    use super::*;

    #[test]
    fn records_read_back_in_send_order_with_dense_offsets_per_partition() {
        let mut cluster = cluster(11);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "orders", 3).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            let mut deliveries = Vec::new();
            for i in 0..30 {
                let partition = i % 3;
                let delivery =
                    producer.send(to_partition("orders", partition, &format!("v{i}")))?;
                deliveries.push((partition, format!("v{i}"), delivery));
            }
            producer.flush().await?;
            let mut expected: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
            for (partition, value, delivery) in deliveries {
                let delivered = delivery.await?;
                assert_eq!(delivered.partition, partition);
                expected
                    .entry(partition)
                    .or_default()
                    .push((delivered.offset, value));
            }
            for records in expected.values() {
                let offsets: Vec<i64> = records.iter().map(|(offset, _)| *offset).collect();
                assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
            }
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            consumer
                .assign(&[tp("orders", 0), tp("orders", 1), tp("orders", 2)])
                .await?;
            let read = read_messages(&mut consumer, 30, 10_000).await;
            let mut seen: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
            for message in &read {
                seen.entry(message.partition)
                    .or_default()
                    .push((message.offset, text(message)));
            }
            assert_eq!(seen, expected);
            assert_eq!(consumer.offsets_range(&tp("orders", 1)).await?, (0, 10));
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn keyed_records_go_to_the_murmur2_partition_like_kafkas_default_partitioner() {
        let mut cluster = cluster(12);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "clicks", 6).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            let keys: Vec<String> = (0..24).map(|i| format!("user-{i}")).collect();
            let mut deliveries = Vec::new();
            for key in &keys {
                deliveries.push(producer.send(keyed("clicks", key, key))?);
            }
            for (key, delivery) in keys.iter().zip(deliveries) {
                let delivered = delivery.await?;
                assert_eq!(
                    delivered.partition,
                    partition_for_key(key.as_bytes(), 6),
                    "{key}"
                );
            }
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            consumer
                .assign(&(0..6).map(|p| tp("clicks", p)).collect::<Vec<_>>())
                .await?;
            for message in read_messages(&mut consumer, 24, 10_000).await {
                assert_eq!(message.key.as_deref(), Some(text(&message).as_bytes()));
                assert_eq!(message.headers, vec![("h".to_string(), b"1".to_vec())]);
                // No timestamp given: the producer's (simulated) clock.
                assert!(message.timestamp_ms > 1_700_000_000_000);
            }
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn seek_moves_the_position_and_the_reset_policy_picks_the_start() {
        let mut cluster = cluster(13);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            for i in 0..5 {
                producer.send(to_partition("t", 0, &i.to_string()))?;
            }
            producer.flush().await?;
            let mut latest = consumer_config("late", None);
            latest.offset_reset = OffsetReset::Latest;
            let mut late = transport.consumer(&latest).await?;
            late.assign(&[tp("t", 0)]).await?;
            let mut early = transport.consumer(&consumer_config("early", None)).await?;
            early.assign(&[tp("t", 0)]).await?;
            let first = read_messages(&mut early, 5, 10_000).await;
            assert_eq!(
                first.iter().map(text).collect::<Vec<_>>(),
                ["0", "1", "2", "3", "4"]
            );
            early.seek(&tp("t", 0), 3).await?;
            let again = read_messages(&mut early, 2, 10_000).await;
            assert_eq!(again.iter().map(|m| m.offset).collect::<Vec<_>>(), [3, 4]);
            // The late consumer starts at the end: only what comes next.
            assert!(read_for(&mut late, 500).await.is_empty());
            producer.send(to_partition("t", 0, "5"))?.await?;
            let next = read_messages(&mut late, 1, 10_000).await;
            assert_eq!((next[0].offset, text(&next[0])), (5, "5".to_string()));
            let error = early.seek(&tp("other", 0), 0).await.unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidState);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod refusals {
    use super::*;

    #[test]
    fn admin_reports_existing_and_missing_topics_with_kafkas_codes() {
        let mut cluster = cluster(14);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 4).await;
            let admin = transport.admin().await?;
            assert_eq!(admin.partition_count("t").await?, 4);
            let again = admin
                .create_topic(&NewTopic {
                    name: "t".into(),
                    partitions: 4,
                    replication_factor: 3,
                    configs: vec![],
                })
                .await
                .unwrap_err();
            assert_eq!(again.code, ErrorCode::TopicAlreadyExists);
            let missing = admin.partition_count("missing").await.unwrap_err();
            assert_eq!(missing.code, ErrorCode::UnknownTopicOrPartition);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_record_without_key_or_partition_is_refused_at_send() {
        let mut cluster = cluster(15);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 2).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            let record = ProducerRecord {
                topic: "t".into(),
                partition: None,
                key: None,
                value: Some(b"x".to_vec()),
                timestamp_ms: None,
                headers: vec![],
            };
            let Err(error) = producer.send(record) else {
                panic!("a record without key or partition was accepted");
            };
            assert_eq!(error.code, ErrorCode::InvalidRecord);
            // Metadata is known after a first delivery: a partition the
            // topic does not have is refused at once.
            producer.send(to_partition("t", 0, "ok"))?.await?;
            let Err(error) = producer.send(to_partition("t", 9, "x")) else {
                panic!("a record for a missing partition was accepted");
            };
            assert_eq!(error.code, ErrorCode::UnknownTopicOrPartition);
            let mut huge = to_partition("t", 0, "");
            huge.value = Some(vec![0; 2 * 1024 * 1024]);
            let Err(error) = producer.send(huge) else {
                panic!("an oversized record was accepted");
            };
            assert_eq!(error.code, ErrorCode::MessageTooLarge);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// Records near the broker's `message.max.bytes` (1 048 588): the producer
/// bounds a batch in bytes, as librdkafka bounds a MessageSet by
/// `min(message.max.bytes, batch.size)`, so records that each fit are never
/// refused together.
mod large_records {
    use super::*;

    const CHUNK_BYTES: usize = 512 * 1024;

    fn chunk(index: u8) -> ProducerRecord {
        let mut record = to_partition("chunks", 0, "");
        record.value = Some(vec![index; CHUNK_BYTES]);
        record
    }

    #[test]
    fn three_512_kib_records_in_one_transaction_commit_and_read_back_under_read_committed() {
        let mut cluster = cluster(71);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "chunks", 1).await;
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-chunks")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            let mut deliveries = Vec::new();
            for index in 0..3u8 {
                deliveries.push(producer.send(chunk(index))?);
            }
            producer.commit_transaction().await?;
            let mut offsets = Vec::new();
            for delivery in deliveries {
                offsets.push(delivery.await?.offset);
            }
            assert_eq!(offsets, vec![0, 1, 2]);
            // Two chunks (2 x 524 308 bytes in a batch) exceed the 1 000 000
            // bytes of a batch: each went in a batch of its own.
            let leader = handle.leader_of(&tp("chunks", 0)).expect("a leader");
            let (batches, _) = handle
                .replica_log(leader, &tp("chunks", 0))
                .expect("the leader hosts it");
            let data_batch_sizes: Vec<usize> = batches
                .iter()
                .filter(|batch| batch.control.is_none())
                .map(|batch| batch.records.len())
                .collect();
            assert_eq!(data_batch_sizes, vec![1, 1, 1]);

            let mut config = consumer_config("rc", None);
            config.isolation = eddyline_engine::transport::Isolation::ReadCommitted;
            let mut consumer = transport.consumer(&config).await?;
            consumer.assign(&[tp("chunks", 0)]).await?;
            let read = read_messages(&mut consumer, 3, 30_000).await;
            let values: Vec<(i64, Option<Vec<u8>>)> = read
                .into_iter()
                .map(|message| (message.offset, message.value.map(|v| v.to_vec())))
                .collect();
            let expected: Vec<(i64, Option<Vec<u8>>)> = (0..3u8)
                .map(|index| (i64::from(index), Some(vec![index; CHUNK_BYTES])))
                .collect();
            assert!(values == expected, "the three chunks, in order, whole");
            Ok(())
        });
        cluster.run().unwrap();
    }
}

pub(crate) mod faults {
    use super::*;

    /// Sends `count` records to one partition while `fault` happens after
    /// `fault_after` sends; every record must be delivered exactly once, in
    /// order, at dense offsets.
    pub(crate) fn run_with_fault(
        seed: u64,
        count: usize,
        fault: impl Fn(&eddyline_sim::cluster::ClusterHandle, i32) + 'static,
        heal: impl Fn(&eddyline_sim::cluster::ClusterHandle, i32) + 'static,
    ) {
        let mut cluster = cluster(seed);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            let leader = handle.leader_of(&tp("t", 0)).expect("leader");
            let mut deliveries = Vec::new();
            for i in 0..count {
                if i == count / 3 {
                    fault(&handle, leader);
                }
                if i == 2 * count / 3 {
                    heal(&handle, leader);
                }
                deliveries.push(producer.send(to_partition("t", 0, &i.to_string()))?);
                sleep_ms(10).await;
            }
            producer.flush().await?;
            let mut offsets = Vec::new();
            for delivery in deliveries {
                offsets.push(delivery.await?.offset);
            }
            assert_eq!(offsets, (0..count as i64).collect::<Vec<_>>());
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            consumer.assign(&[tp("t", 0)]).await?;
            let read = read_messages(&mut consumer, count, 30_000).await;
            let values: Vec<String> = read.iter().map(text).collect();
            let expected: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            assert_eq!(values, expected);
            assert!(read_for(&mut consumer, 300).await.is_empty(), "duplicates");
            assert_eq!(
                consumer.offsets_range(&tp("t", 0)).await?,
                (0, count as i64)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_leader_crash_mid_stream_loses_and_duplicates_nothing() {
        run_with_fault(
            21,
            90,
            |handle, leader| handle.crash_broker(leader),
            |handle, leader| handle.restart_broker(leader),
        );
    }

    #[test]
    fn a_network_partition_from_the_leader_loses_and_duplicates_nothing() {
        run_with_fault(
            22,
            90,
            |handle, leader| {
                handle.partition(&["worker"], &[&format!("broker-{leader}")]);
            },
            |handle, leader| {
                handle.heal(&["worker"], &[&format!("broker-{leader}")]);
            },
        );
    }

    #[test]
    fn a_leader_move_mid_stream_loses_and_duplicates_nothing() {
        run_with_fault(
            23,
            60,
            |handle, _| handle.move_leader(&tp("t", 0), None),
            |_, _| {},
        );
    }

    #[test]
    fn slow_links_that_time_requests_out_neither_lose_nor_duplicate() {
        let mut cluster = cluster(25);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 2).await;
            // Up to 30 ms per message: an acks=all round trip (client,
            // leader, followers' fetches, back) often exceeds the 25 ms
            // request timeout, so batches are retried (after the broker's
            // REQUEST_TIMED_OUT or a client-side timeout) while the first
            // attempt may have landed.
            handle.set_max_latency(30);
            let mut config = producer_config("p", None);
            config.request_timeout_ms = 25;
            let mut producer = transport.producer(&config).await?;
            let mut deliveries = Vec::new();
            for i in 0..60 {
                deliveries.push(producer.send(to_partition("t", i % 2, &i.to_string()))?);
                sleep_ms(20).await;
            }
            producer.flush().await?;
            for delivery in deliveries {
                delivery.await?;
            }
            handle.set_max_latency(5);
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            consumer.assign(&[tp("t", 0), tp("t", 1)]).await?;
            let read = read_messages(&mut consumer, 60, 30_000).await;
            assert!(read_for(&mut consumer, 500).await.is_empty(), "duplicates");
            for partition in 0..2 {
                let values: Vec<String> = read
                    .iter()
                    .filter(|m| m.partition == partition)
                    .map(text)
                    .collect();
                let expected: Vec<String> = (0..60)
                    .filter(|i| i % 2 == partition)
                    .map(|i| i.to_string())
                    .collect();
                assert_eq!(
                    values, expected,
                    "partition {partition} in send order, once"
                );
            }
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_record_for_a_missing_topic_fails_with_unknown_topic_after_the_propagation_bound() {
        let mut cluster = cluster(24);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut config = producer_config("p", None);
            config.delivery_timeout_ms = 20_000;
            let mut producer = transport.producer(&config).await?;
            let sent_at = tokio::time::Instant::now();
            let error = producer
                .send(keyed("nowhere", "k", "v"))?
                .await
                .unwrap_err();
            // Like librdkafka after `topic.metadata.propagation.max.ms`
            // (10 s), not after the whole delivery timeout.
            assert_eq!(error.kind, ErrorKind::Retriable, "{error}");
            assert_eq!(error.code, ErrorCode::UnknownTopicOrPartition, "{error}");
            assert!(error.message.contains("nowhere"), "{error}");
            let waited = sent_at.elapsed().as_millis();
            assert!((10_000..11_000).contains(&waited), "waited {waited} ms");
            // A record whose topic's metadata never comes at all (every
            // broker unreachable) times out with the delivery timeout.
            let mut lonely = transport.producer(&config).await?;
            handle.partition(&["worker"], &["broker-0", "broker-1", "broker-2"]);
            let error = lonely.send(keyed("t", "k", "v"))?.await.unwrap_err();
            handle.heal(&["worker"], &["broker-0", "broker-1", "broker-2"]);
            assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod sweeps {
    use super::*;

    fn env_count(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .map(|text| {
                text.parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number"))
            })
            .unwrap_or(default)
    }

    /// Leader crashes, network partitions and leader moves over more
    /// seeds: `EDDY_CLIENT_SEEDS=N` (default 3).
    #[test]
    fn faults_over_several_seeds_lose_and_duplicate_nothing() {
        for seed in 100..100 + env_count("EDDY_CLIENT_SEEDS", 3) {
            match seed % 3 {
                0 => faults::run_with_fault(
                    seed,
                    60,
                    |handle, leader| handle.crash_broker(leader),
                    |handle, leader| handle.restart_broker(leader),
                ),
                1 => faults::run_with_fault(
                    seed,
                    60,
                    |handle, leader| handle.partition(&["worker"], &[&format!("broker-{leader}")]),
                    |handle, leader| handle.heal(&["worker"], &[&format!("broker-{leader}")]),
                ),
                _ => faults::run_with_fault(
                    seed,
                    60,
                    |handle, _| handle.move_leader(&tp("t", 0), None),
                    |_, _| {},
                ),
            }
        }
    }

    /// Keyed records over 12 partitions, produced and read back:
    /// `EDDY_CLIENT_RECORDS=N` (default 600) sizes it for measurements.
    #[test]
    fn many_keyed_records_round_trip_exactly_once() {
        let count = env_count("EDDY_CLIENT_RECORDS", 600) as usize;
        let mut cluster = cluster(61);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 12).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            for i in 0..count {
                producer.send(keyed("t", &format!("k{}", i % 97), &i.to_string()))?;
                if i % 100 == 99 {
                    // 100 records per simulated ms: 100k records/s offered.
                    sleep_ms(1).await;
                }
            }
            producer.flush().await?;
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            consumer
                .assign(&(0..12).map(|p| tp("t", p)).collect::<Vec<_>>())
                .await?;
            let read = read_messages(&mut consumer, count, 120_000).await;
            let mut values: Vec<usize> = read.iter().map(|m| text(m).parse().unwrap()).collect();
            values.sort_unstable();
            assert_eq!(values, (0..count).collect::<Vec<_>>());
            Ok(())
        });
        cluster.run().unwrap();
        eprintln!(
            "{count} records produced and consumed in {} ms simulated",
            cluster.elapsed_ms()
        );
    }
}

mod determinism {
    use super::*;

    fn workload_trace(seed: u64) -> u64 {
        let mut cluster = cluster(seed);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 3).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            for i in 0..20 {
                producer.send(keyed("t", &format!("k{i}"), "v"))?;
            }
            producer.flush().await?;
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            consumer
                .assign(&[tp("t", 0), tp("t", 1), tp("t", 2)])
                .await?;
            read_messages(&mut consumer, 20, 10_000).await;
            Ok(())
        });
        cluster.run().unwrap();
        cluster.trace().hash
    }

    #[test]
    fn the_same_seed_gives_the_same_trace_with_clients() {
        assert_eq!(workload_trace(31), workload_trace(31));
    }
}

/// What the idempotent producer does when a broker answers
/// OUT_OF_ORDER_SEQUENCE_NUMBER, as librdkafka 2.x does
/// (`rd_kafka_handle_idempotent_Produce_error`).
mod sequence_errors {
    use super::*;

    #[test]
    fn out_of_order_for_the_oldest_unacknowledged_batch_is_fatal_for_an_idempotent_producer() {
        let mut cluster = cluster(403);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "seq", 1).await;
            let mut producer = transport.producer(&producer_config("p", None)).await?;
            producer.send(to_partition("seq", 0, "x"))?.await?;
            // Someone else writes sequences 1..=2 as this producer.
            let written = last_data_batch(&handle, &tp("seq", 0));
            let impostor = batch(
                &tp("seq", 0),
                written.producer_id,
                written.producer_epoch,
                written.base_sequence + 1,
                false,
                &["i1", "i2"],
            );
            let result = produce(&handle, None, impostor).await;
            assert_eq!(result.error, None, "{result:?}");
            // Sequence 1 is the next the producer expects to be acknowledged:
            // the broker refusing it means producer and broker disagree, a
            // fatal error (`rd_kafka_idemp_set_fatal_error`).
            let error = producer
                .send(to_partition("seq", 0, "y"))?
                .await
                .unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
            assert_eq!(error.code, ErrorCode::OutOfOrderSequenceNumber, "{error}");
            let error = producer
                .send(to_partition("seq", 0, "z"))
                .err()
                .expect("a producer with a fatal error refuses records");
            assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
            assert_eq!(error.code, ErrorCode::OutOfOrderSequenceNumber, "{error}");
            Ok(())
        });
        cluster.run().unwrap();
    }
}
