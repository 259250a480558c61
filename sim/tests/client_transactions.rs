//! Transactions through the simulated client: visibility under
//! read_committed, the last stable offset, fencing, offsets committed with
//! the transaction, and KIP-447 generation fencing.

mod common;

use common::*;
use eddyline_engine::transport::{
    Consumer, ErrorCode, ErrorKind, GroupMetadata, Isolation, OffsetAndMetadata, Producer,
    Transport,
};

mod visibility {
    use super::*;

    #[test]
    fn committed_records_are_visible_and_aborted_ones_never_are_under_read_committed() {
        let mut cluster = cluster(41);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "out", 1).await;
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-a")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            for v in ["a1", "a2"] {
                producer.send(to_partition("out", 0, v))?;
            }
            // Written, then aborted (unsent records would just be dropped).
            producer.flush().await?;
            producer.abort_transaction().await?;
            producer.begin_transaction().await?;
            let mut deliveries = Vec::new();
            for v in ["c1", "c2", "c3"] {
                deliveries.push(producer.send(to_partition("out", 0, v))?);
            }
            producer.commit_transaction().await?;
            let mut offsets = Vec::new();
            for delivery in deliveries {
                offsets.push(delivery.await?.offset);
            }
            // Aborted records and their marker take offsets 0..=2.
            assert_eq!(offsets, vec![3, 4, 5]);

            let mut committed = transport.consumer(&consumer_config("rc", None)).await?;
            committed.assign(&[tp("out", 0)]).await?;
            let read = read_messages(&mut committed, 3, 10_000).await;
            assert_eq!(
                read.iter().map(text).collect::<Vec<_>>(),
                ["c1", "c2", "c3"]
            );
            assert_eq!(read.iter().map(|m| m.offset).collect::<Vec<_>>(), [3, 4, 5]);
            assert!(read_for(&mut committed, 300).await.is_empty());
            // A committed transaction of n records moves the end by n + 1.
            assert_eq!(committed.offsets_range(&tp("out", 0)).await?, (0, 7));

            let mut config = consumer_config("ru", None);
            config.isolation = Isolation::ReadUncommitted;
            let mut uncommitted = transport.consumer(&config).await?;
            uncommitted.assign(&[tp("out", 0)]).await?;
            let read = read_messages(&mut uncommitted, 5, 10_000).await;
            assert_eq!(
                read.iter().map(text).collect::<Vec<_>>(),
                ["a1", "a2", "c1", "c2", "c3"]
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn an_abort_drops_records_not_yet_sent_and_writes_nothing_for_them() {
        let mut cluster = cluster(48);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut config = producer_config("p", Some("txn-h"));
            config.linger_ms = 10_000;
            let mut producer = transport.producer(&config).await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            let pending = producer.send(to_partition("t", 0, "never"))?;
            producer.abort_transaction().await?;
            let error = pending.await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Abortable, "{error}");
            // The producer goes on: the next transaction commits.
            producer.begin_transaction().await?;
            let delivered = producer.send(to_partition("t", 0, "kept"))?;
            producer.commit_transaction().await?;
            assert_eq!(delivered.await?.offset, 0);
            let mut config = consumer_config("ru", None);
            config.isolation = Isolation::ReadUncommitted;
            let mut reader = transport.consumer(&config).await?;
            reader.assign(&[tp("t", 0)]).await?;
            let read = read_messages(&mut reader, 1, 10_000).await;
            assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["kept"]);
            assert_eq!(reader.offsets_range(&tp("t", 0)).await?, (0, 2));
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn an_open_transaction_blocks_read_committed_readers_at_the_last_stable_offset() {
        let mut cluster = cluster(42);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut plain = transport.producer(&producer_config("plain", None)).await?;
            plain.send(to_partition("t", 0, "before"))?.await?;
            let mut txn = transport
                .producer(&producer_config("txn", Some("txn-b")))
                .await?;
            txn.init_transactions().await?;
            txn.begin_transaction().await?;
            txn.send(to_partition("t", 0, "open"))?;
            txn.flush().await?;
            plain.send(to_partition("t", 0, "after"))?.await?;

            let mut reader = transport.consumer(&consumer_config("rc", None)).await?;
            reader.assign(&[tp("t", 0)]).await?;
            let read = read_for(&mut reader, 1_000).await;
            assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["before"]);
            assert_eq!(reader.offsets_range(&tp("t", 0)).await?, (0, 1));

            let mut config = consumer_config("ru", None);
            config.isolation = Isolation::ReadUncommitted;
            let mut dirty = transport.consumer(&config).await?;
            dirty.assign(&[tp("t", 0)]).await?;
            let read = read_messages(&mut dirty, 3, 10_000).await;
            assert_eq!(
                read.iter().map(text).collect::<Vec<_>>(),
                ["before", "open", "after"]
            );
            assert_eq!(dirty.offsets_range(&tp("t", 0)).await?, (0, 3));

            txn.commit_transaction().await?;
            let read = read_messages(&mut reader, 2, 10_000).await;
            assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["open", "after"]);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod fencing {
    use super::*;

    #[test]
    fn a_second_init_transactions_fences_the_first_producer_and_aborts_its_transaction() {
        let mut cluster = cluster(43);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut old = transport
                .producer(&producer_config("old", Some("txn-c")))
                .await?;
            old.init_transactions().await?;
            old.begin_transaction().await?;
            old.send(to_partition("t", 0, "zombie"))?;
            old.flush().await?;

            let mut new = transport
                .producer(&producer_config("new", Some("txn-c")))
                .await?;
            new.init_transactions().await?;
            new.begin_transaction().await?;
            new.send(to_partition("t", 0, "fresh"))?;
            new.commit_transaction().await?;

            let error = old.commit_transaction().await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fenced, "{error}");
            assert!(
                matches!(
                    error.code,
                    ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch
                ),
                "{error}"
            );
            // Every later call of the old incarnation fails the same way.
            assert_eq!(
                old.begin_transaction().await.unwrap_err().kind,
                ErrorKind::Fenced
            );

            let mut reader = transport.consumer(&consumer_config("rc", None)).await?;
            reader.assign(&[tp("t", 0)]).await?;
            let read = read_messages(&mut reader, 1, 10_000).await;
            assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["fresh"]);
            assert!(read_for(&mut reader, 300).await.is_empty());
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn the_transaction_state_machine_refuses_calls_out_of_order() {
        let mut cluster = cluster(44);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-d")))
                .await?;
            let error = producer.begin_transaction().await.unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidState);
            producer.init_transactions().await?;
            let error = producer.commit_transaction().await.unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidState);
            let Err(error) = producer.send(to_partition("t", 0, "x")) else {
                panic!("send outside a transaction was accepted");
            };
            assert_eq!(error.code, ErrorCode::InvalidState);
            producer.begin_transaction().await?;
            // An empty transaction commits without the coordinator.
            producer.commit_transaction().await?;
            let mut idempotent = transport.producer(&producer_config("i", None)).await?;
            let error = idempotent.init_transactions().await.unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidState);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod offsets_in_transactions {
    use super::*;

    #[test]
    fn offsets_sent_in_a_transaction_commit_with_it_and_vanish_with_an_abort() {
        let mut cluster = cluster(45);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "in", 1).await;
            admin_create_topic(&transport, "out", 1).await;
            let mut consumer = transport
                .consumer(&consumer_config("c", Some("g-e")))
                .await?;
            consumer.assign(&[tp("in", 0)]).await?;
            let group = consumer
                .group_metadata()
                .expect("manual assignment with a group id");
            assert_eq!(group.generation_id, -1);

            let mut producer = transport
                .producer(&producer_config("p", Some("txn-e")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            producer.send(to_partition("out", 0, "r1"))?;
            let offset = |n: i64, meta: &str| {
                vec![(
                    tp("in", 0),
                    OffsetAndMetadata {
                        offset: n,
                        metadata: meta.to_string(),
                    },
                )]
            };
            producer
                .send_offsets_to_transaction(&offset(7, "checkpoint=1"), &group)
                .await?;
            producer.abort_transaction().await?;
            assert_eq!(consumer.committed(&[tp("in", 0)]).await?, vec![None]);

            producer.begin_transaction().await?;
            producer.send(to_partition("out", 0, "r2"))?;
            producer
                .send_offsets_to_transaction(&offset(9, "checkpoint=2"), &group)
                .await?;
            producer.commit_transaction().await?;
            assert_eq!(
                consumer.committed(&[tp("in", 0)]).await?,
                vec![Some(OffsetAndMetadata {
                    offset: 9,
                    metadata: "checkpoint=2".into()
                })]
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn committed_waits_while_a_transaction_holds_offsets_for_the_partition() {
        let mut cluster = cluster(49);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "in", 1).await;
            let mut consumer = transport
                .consumer(&consumer_config("c", Some("g-s")))
                .await?;
            consumer.assign(&[tp("in", 0)]).await?;
            let group = consumer.group_metadata().expect("a group id");
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-s")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            let offsets = vec![(
                tp("in", 0),
                OffsetAndMetadata {
                    offset: 5,
                    metadata: "m".into(),
                },
            )];
            producer
                .send_offsets_to_transaction(&offsets, &group)
                .await?;
            // KIP-447: the offsets are pending; read_committed waits, up to
            // the request timeout (5 s here).
            let started = tokio::time::Instant::now();
            let error = consumer.committed(&[tp("in", 0)]).await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
            assert!(started.elapsed().as_millis() >= 4_000);
            tokio::task::spawn_local(async move {
                sleep_ms(1_000).await;
                producer.commit_transaction().await.expect("commit");
            });
            let started = tokio::time::Instant::now();
            assert_eq!(
                consumer.committed(&[tp("in", 0)]).await?,
                vec![Some(OffsetAndMetadata {
                    offset: 5,
                    metadata: "m".into()
                })]
            );
            let waited = started.elapsed().as_millis();
            assert!((900..4_000).contains(&waited), "waited {waited} ms");
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_stale_generation_is_rejected_and_makes_the_transaction_abortable() {
        let mut cluster = cluster(46);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "in", 2).await;
            let mut consumer = transport
                .consumer(&consumer_config("c", Some("g-f")))
                .await?;
            consumer.subscribe(&["in".to_string()]).await?;
            poll_until(&mut consumer, 20_000, |events| {
                events
                    .iter()
                    .any(|e| matches!(e, eddyline_engine::transport::ConsumerEvent::Assigned(_)))
            })
            .await;
            let current = consumer.group_metadata().expect("assigned");
            assert!(current.generation_id >= 1);
            let stale = GroupMetadata {
                generation_id: current.generation_id - 1,
                ..current.clone()
            };
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-f")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            producer.send(to_partition("in", 0, "x"))?;
            let offsets = vec![(
                tp("in", 0),
                OffsetAndMetadata {
                    offset: 1,
                    metadata: String::new(),
                },
            )];
            let error = producer
                .send_offsets_to_transaction(&offsets, &stale)
                .await
                .unwrap_err();
            assert_eq!(error.kind, ErrorKind::Abortable, "{error}");
            assert_eq!(error.code, ErrorCode::IllegalGeneration, "{error}");
            assert_eq!(
                producer.commit_transaction().await.unwrap_err().kind,
                ErrorKind::Abortable
            );
            producer.abort_transaction().await?;
            // The producer carries on after the abort, with the current
            // generation.
            producer.begin_transaction().await?;
            producer
                .send_offsets_to_transaction(&offsets, &current)
                .await?;
            producer.commit_transaction().await?;
            assert_eq!(
                consumer.committed(&[tp("in", 0)]).await?,
                vec![Some(OffsetAndMetadata {
                    offset: 1,
                    metadata: String::new()
                })]
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod coordinator_timeout {
    use super::*;

    #[test]
    fn a_transaction_the_coordinator_aborts_on_timeout_can_never_commit() {
        let mut cluster = cluster(47);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 1).await;
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-g")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            producer.send(to_partition("t", 0, "expired"))?;
            producer.flush().await?;
            handle.expire_transactions();
            sleep_ms(3_000).await;
            let error = producer.commit_transaction().await.unwrap_err();
            // The coordinator bumped the epoch when it aborted: the producer
            // is fenced, as Kafka's clients report it.
            assert_eq!(error.kind, ErrorKind::Fenced, "{error}");
            let mut reader = transport.consumer(&consumer_config("rc", None)).await?;
            reader.assign(&[tp("t", 0)]).await?;
            assert!(read_for(&mut reader, 1_000).await.is_empty());
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// What the producer does when a broker answers OUT_OF_ORDER_SEQUENCE_NUMBER,
/// as librdkafka 2.x does (`rd_kafka_handle_idempotent_Produce_error`).
mod sequence_errors {
    use super::*;
    use eddyline_sim::cluster::{ClusterConfig, SimCluster};
    use eddyline_sim::protocol::CoordinatorType;

    /// A cluster whose timings the test relies on are set here, not taken
    /// from the defaults: the inter-broker timeout bounds the leader's KIP-890
    /// verification call; replicas never drop out of the ISR during the test;
    /// TCP holds what a partition cuts off; the transaction state has one
    /// replica (its coordinator), so that cutting the data partition's
    /// leader from the coordinator blocks nothing but the verification.
    fn verification_cluster(seed: u64) -> SimCluster {
        let config = ClusterConfig {
            transaction_partition_verification: true,
            inter_broker_request_timeout_ms: 1_000,
            replica_lag_max_ms: 60_000,
            tcp_give_up_ms: 127_000,
            internal_topic_replication_factor: 1,
            ..config_from_env()
        };
        SimCluster::new(seed_or(seed), config).expect("valid config")
    }

    #[test]
    fn a_batch_refused_out_of_order_behind_a_failed_one_makes_the_transaction_abortable() {
        let mut cluster = verification_cluster(401);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "seq", 3).await;
            let coordinator =
                coordinator_id(&handle, CoordinatorType::Transaction, "txn-oos").await;
            let partition = (0..3)
                .find(|&p| handle.leader_of(&tp("seq", p)) != Some(coordinator))
                .expect("a partition led by another broker than the coordinator");
            let leader = handle.leader_of(&tp("seq", partition)).expect("a leader");
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-oos")))
                .await?;
            producer.init_transactions().await?;
            // The producer's state on the partition: sequence 0 written.
            producer.begin_transaction().await?;
            producer.send(to_partition("seq", partition, "x"))?;
            producer.commit_transaction().await?;
            // The commit marker (offset 1) is written before the cut.
            wait_for_lso(&handle, &tp("seq", partition), 2).await;

            // A is the transaction's first write to the partition: its leader
            // verifies it with the coordinator (KIP-890), across a cut link,
            // and answers NOT_ENOUGH_REPLICAS after the 1 s inter-broker
            // timeout. B, sent meanwhile on the same connection, waits behind
            // A; its own verification goes through once the link is healed,
            // and its sequence (2) does not follow the last one written (0):
            // OUT_OF_ORDER_SEQUENCE_NUMBER behind the unacknowledged A.
            producer.begin_transaction().await?;
            let (leader_host, coordinator_host) =
                (format!("broker-{leader}"), format!("broker-{coordinator}"));
            handle.partition(&[leader_host.as_str()], &[coordinator_host.as_str()]);
            let sent_at = handle.now_ms();
            let _a = producer.send(to_partition("seq", partition, "a"))?;
            sleep_ms(300).await;
            let _b = producer.send(to_partition("seq", partition, "b"))?;
            sleep_ms(1_500 - (handle.now_ms() - sent_at)).await;
            handle.heal(&[leader_host.as_str()], &[coordinator_host.as_str()]);

            let error = producer.commit_transaction().await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Abortable, "{error}");
            assert_eq!(error.code, ErrorCode::OutOfOrderSequenceNumber, "{error}");
            producer.abort_transaction().await?;
            // The abort bumped the epoch (KIP-360): sequences start again.
            producer.begin_transaction().await?;
            producer.send(to_partition("seq", partition, "y"))?;
            producer.commit_transaction().await?;
            let last = last_data_batch(&handle, &tp("seq", partition));
            assert_eq!(last.base_sequence, 0, "{last:?}");

            let mut reader = transport.consumer(&consumer_config("rc", None)).await?;
            reader.assign(&[tp("seq", partition)]).await?;
            let read = read_messages(&mut reader, 2, 10_000).await;
            assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["x", "y"]);
            assert!(read_for(&mut reader, 500).await.is_empty());
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn out_of_order_for_the_oldest_unacknowledged_batch_is_fatal_for_a_transactional_producer() {
        let mut cluster = cluster(402);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "seq", 1).await;
            let mut producer = transport
                .producer(&producer_config("p", Some("txn-hol")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            producer.send(to_partition("seq", 0, "y1"))?.await?;
            // Someone else writes sequences 1..=2 as this producer (its id and
            // epoch), inside its transaction: the broker's state moves on
            // without the producer knowing.
            let written = last_data_batch(&handle, &tp("seq", 0));
            let impostor = batch(
                &tp("seq", 0),
                written.producer_id,
                written.producer_epoch,
                written.base_sequence + 1,
                true,
                &["i1", "i2"],
            );
            let result = produce(&handle, Some("txn-hol"), impostor).await;
            assert_eq!(result.error, None, "{result:?}");
            // The producer's next batch starts at sequence 1, the next one it
            // expects the broker to acknowledge: the broker refuses it out of
            // order. librdkafka calls that a desynchronization and raises a
            // fatal error (`rd_kafka_idemp_set_fatal_error`).
            let error = producer
                .send(to_partition("seq", 0, "y2"))?
                .await
                .unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
            assert_eq!(error.code, ErrorCode::OutOfOrderSequenceNumber, "{error}");
            let error = producer.commit_transaction().await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
            let error = producer.abort_transaction().await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
            Ok(())
        });
        cluster.run().unwrap();
    }
}
