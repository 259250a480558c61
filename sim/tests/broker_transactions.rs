//! Transactions at the broker: the coordinator's state machine, markers,
//! the last stable offset, the aborted-transaction index, fencing,
//! timeouts, transactional offsets and coordinator failover.

mod common;

use common::*;
use eddyline_engine::transport::{ErrorCode, Isolation, OffsetAndMetadata, TopicPartition};
use eddyline_sim::protocol::{
    AbortedTransaction, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ControlType,
    InitProducerIdRequest, InitProducerIdResponse, OffsetFetchRequest, OffsetFetchResponse,
    PartitionError, Request, Response, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

mod visibility {
    use super::*;

    #[test]
    fn an_open_transaction_holds_the_lso_until_its_commit_marker_lands() {
        let mut cluster = cluster(11);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["before"])).await);
            let producer = init_transactions(&handle, "tx-a", 60_000).await;
            assert_eq!(
                add_partitions(&handle, "tx-a", producer, std::slice::from_ref(&tp)).await,
                vec![None]
            );
            let txn_offset = ok(&produce(
                &handle,
                Some("tx-a"),
                batch(&tp, producer.0, producer.1, 0, true, &["t1", "t2"]),
            )
            .await);
            assert_eq!(txn_offset, 1);
            // A later non-transactional write is still behind the LSO.
            ok(&produce(&handle, None, batch(&tp, -1, -1, -1, false, &["after"])).await);
            let committed = fetch(&handle, &tp, 0, Isolation::ReadCommitted).await;
            assert_eq!(committed.last_stable_offset, 1);
            assert_eq!(committed.high_watermark, 4);
            assert_eq!(values(&committed), vec![(0, "before".to_string())]);
            let uncommitted = fetch(&handle, &tp, 0, Isolation::ReadUncommitted).await;
            assert_eq!(values(&uncommitted).len(), 4);

            assert_eq!(end_txn(&handle, "tx-a", producer, true).await, None);
            let result = wait_for_lso(&handle, &tp, 5).await;
            // The marker took offset 4: n records + 1.
            let marker = result.batches.iter().find(|b| b.control.is_some()).unwrap();
            assert_eq!(
                (marker.base_offset, marker.control),
                (4, Some(ControlType::Commit))
            );
            assert!(result.aborted_transactions.is_empty());
            assert_eq!(values(&result).len(), 4);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn an_aborted_transaction_is_listed_for_read_committed_fetches() {
        let mut cluster = cluster(12);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let producer = init_transactions(&handle, "tx-b", 60_000).await;
            add_partitions(&handle, "tx-b", producer, std::slice::from_ref(&tp)).await;
            ok(&produce(
                &handle,
                Some("tx-b"),
                batch(&tp, producer.0, producer.1, 0, true, &["x", "y"]),
            )
            .await);
            assert_eq!(end_txn(&handle, "tx-b", producer, false).await, None);
            let result = wait_for_lso(&handle, &tp, 3).await;
            assert_eq!(
                result.aborted_transactions,
                vec![AbortedTransaction {
                    producer_id: producer.0,
                    first_offset: 0
                }]
            );
            // Retrying the same EndTxn is answered as done; the other
            // outcome is an invalid transition.
            assert_eq!(end_txn(&handle, "tx-b", producer, false).await, None);
            assert_eq!(
                end_txn(&handle, "tx-b", producer, true).await,
                Some(ErrorCode::InvalidTxnState)
            );
            // A fetch past the aborted range does not list it.
            let later = fetch(&handle, &tp, 3, Isolation::ReadCommitted).await;
            assert!(later.aborted_transactions.is_empty());
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_transactional_write_to_a_partition_not_in_the_transaction_is_refused() {
        let mut cluster = cluster(13);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 2).await;
            let producer = init_transactions(&handle, "tx-c", 60_000).await;
            let added = TopicPartition::new("out", 0);
            let other = TopicPartition::new("out", 1);
            add_partitions(&handle, "tx-c", producer, std::slice::from_ref(&added)).await;
            let result = produce(
                &handle,
                Some("tx-c"),
                batch(&other, producer.0, producer.1, 0, true, &["z"]),
            )
            .await;
            assert_eq!(err(&result), ErrorCode::InvalidTxnState);
            ok(&produce(
                &handle,
                Some("tx-c"),
                batch(&added, producer.0, producer.1, 0, true, &["z"]),
            )
            .await);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod fencing {
    use super::*;

    #[test]
    fn a_second_init_fences_the_first_producer_and_aborts_its_open_transaction() {
        let mut cluster = cluster(21);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let first = init_transactions(&handle, "tx-f", 60_000).await;
            add_partitions(&handle, "tx-f", first, std::slice::from_ref(&tp)).await;
            ok(&produce(
                &handle,
                Some("tx-f"),
                batch(&tp, first.0, first.1, 0, true, &["zombie"]),
            )
            .await);
            let second = init_transactions(&handle, "tx-f", 60_000).await;
            assert_eq!(second.0, first.0);
            // Bumped twice: once to abort the open transaction, once for the
            // new incarnation.
            assert_eq!(second.1, first.1 + 2);
            // The zombie's open transaction was aborted.
            let result = wait_for_lso(&handle, &tp, 2).await;
            assert_eq!(result.aborted_transactions.len(), 1);
            // The zombie is fenced everywhere.
            assert_eq!(
                end_txn(&handle, "tx-f", first, true).await,
                Some(ErrorCode::ProducerFenced)
            );
            assert_eq!(
                add_partitions(&handle, "tx-f", first, std::slice::from_ref(&tp)).await,
                vec![Some(ErrorCode::ProducerFenced)]
            );
            let late = produce(
                &handle,
                Some("tx-f"),
                batch(&tp, first.0, first.1, 1, true, &["late"]),
            )
            .await;
            assert!(
                matches!(
                    err(&late),
                    ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced
                ),
                "{late:?}"
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced() {
        let mut cluster = cluster(22);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let producer = init_transactions(&handle, "tx-t", 500).await;
            add_partitions(&handle, "tx-t", producer, std::slice::from_ref(&tp)).await;
            ok(&produce(
                &handle,
                Some("tx-t"),
                batch(&tp, producer.0, producer.1, 0, true, &["slow"]),
            )
            .await);
            // The abort check runs every second; the timeout is 500 ms.
            sleep_ms(2_500).await;
            let result = wait_for_lso(&handle, &tp, 2).await;
            assert_eq!(result.aborted_transactions.len(), 1);
            assert_eq!(
                end_txn(&handle, "tx-t", producer, true).await,
                Some(ErrorCode::ProducerFenced)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn expiring_transactions_on_demand_aborts_every_open_one() {
        let mut cluster = cluster(23);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let producer = init_transactions(&handle, "tx-e", 60_000).await;
            add_partitions(&handle, "tx-e", producer, std::slice::from_ref(&tp)).await;
            ok(&produce(
                &handle,
                Some("tx-e"),
                batch(&tp, producer.0, producer.1, 0, true, &["a"]),
            )
            .await);
            handle.expire_transactions();
            let result = wait_for_lso(&handle, &tp, 2).await;
            assert_eq!(result.aborted_transactions.len(), 1);
            assert_eq!(
                end_txn(&handle, "tx-e", producer, true).await,
                Some(ErrorCode::ProducerFenced)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_bad_transaction_timeout_is_refused() {
        let mut cluster = cluster(24);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let response = txn_call(
                &handle,
                "tx-x",
                Request::InitProducerId(InitProducerIdRequest {
                    transactional_id: Some("tx-x".into()),
                    transaction_timeout_ms: 1_000_000_000,
                    producer_id: -1,
                    producer_epoch: -1,
                }),
            )
            .await;
            assert!(matches!(
                response,
                Response::InitProducerId(InitProducerIdResponse {
                    error: Some(ErrorCode::InvalidTransactionTimeout),
                    ..
                })
            ));
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// InitProducerId for a known transactional id, as Kafka 3.8 answers it
/// (`TransactionCoordinator.handleInitProducerId`,
/// `TransactionMetadata.prepareIncrementProducerEpoch` and
/// `prepareFenceProducerEpoch`): a plain init forgets the previous epoch,
/// so only the instance that made the last bump can repeat it (KIP-360).
mod init_producer_id {
    use super::*;

    fn fenced() -> InitProducerIdResponse {
        InitProducerIdResponse {
            error: Some(ErrorCode::ProducerFenced),
            producer_id: -1,
            producer_epoch: -1,
        }
    }

    fn granted((producer_id, producer_epoch): (i64, i16)) -> InitProducerIdResponse {
        InitProducerIdResponse {
            error: None,
            producer_id,
            producer_epoch,
        }
    }

    #[test]
    fn a_zombies_stale_epoch_bump_is_fenced_and_the_live_instance_keeps_producing() {
        let mut cluster = cluster(25);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let zombie = init_transactions(&handle, "tx-z", 60_000).await;
            let live = init_transactions(&handle, "tx-z", 60_000).await;
            assert_eq!(live, (zombie.0, zombie.1 + 1));
            // The zombie asks for a bump with the epoch it still holds.
            assert_eq!(
                init_producer_id(&handle, "tx-z", 60_000, zombie).await,
                fenced()
            );
            // The live instance was not fenced by it.
            assert_eq!(
                add_partitions(&handle, "tx-z", live, std::slice::from_ref(&tp)).await,
                vec![None]
            );
            ok(&produce(
                &handle,
                Some("tx-z"),
                batch(&tp, live.0, live.1, 0, true, &["live"]),
            )
            .await);
            assert_eq!(end_txn(&handle, "tx-z", live, true).await, None);
            let result = wait_for_lso(&handle, &tp, 2).await;
            assert_eq!(values(&result), vec![(0, "live".to_string())]);
            assert!(result.aborted_transactions.is_empty());
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_retried_epoch_bump_gets_the_epoch_of_the_bump_it_repeats() {
        let mut cluster = cluster(26);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let first = init_transactions(&handle, "tx-r", 60_000).await;
            let bumped = init_producer_id(&handle, "tx-r", 60_000, first).await;
            assert_eq!(bumped, granted((first.0, first.1 + 1)));
            // The answer was lost: the producer asks again with the same
            // id and epoch, and gets the same new epoch.
            let retried = init_producer_id(&handle, "tx-r", 60_000, first).await;
            assert_eq!(retried, bumped);
            let current = (first.0, first.1 + 1);
            assert_eq!(
                add_partitions(&handle, "tx-r", current, std::slice::from_ref(&tp)).await,
                vec![None]
            );
            assert_eq!(end_txn(&handle, "tx-r", current, false).await, None);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn after_a_timeout_abort_a_bump_with_the_epoch_before_the_fence_is_fenced() {
        let mut cluster = cluster_with(27, |config| {
            config.transaction_abort_check_interval_ms = 200;
        });
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let producer = init_transactions(&handle, "tx-to", 1_000).await;
            add_partitions(&handle, "tx-to", producer, std::slice::from_ref(&tp)).await;
            ok(&produce(
                &handle,
                Some("tx-to"),
                batch(&tp, producer.0, producer.1, 0, true, &["slow"]),
            )
            .await);
            // The coordinator aborts it once its timeout passed: the abort
            // marker at offset 1 moves the LSO to 2.
            let result = wait_for_lso(&handle, &tp, 2).await;
            assert_eq!(result.aborted_transactions.len(), 1);
            // The fence bumped the epoch and forgot the one before it.
            assert_eq!(
                init_producer_id(&handle, "tx-to", 1_000, producer).await,
                fenced()
            );
            // A new incarnation gets the epoch after the fence's.
            assert_eq!(
                init_transactions(&handle, "tx-to", 1_000).await,
                (producer.0, producer.1 + 2)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn an_init_with_a_stale_epoch_while_a_transaction_is_open_aborts_it_first() {
        let mut cluster = cluster(28);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 1).await;
            let tp = TopicPartition::new("out", 0);
            let stale = init_transactions(&handle, "tx-o", 60_000).await;
            init_transactions(&handle, "tx-o", 60_000).await;
            let live = init_transactions(&handle, "tx-o", 60_000).await;
            assert_eq!(live, (stale.0, stale.1 + 2));
            add_partitions(&handle, "tx-o", live, std::slice::from_ref(&tp)).await;
            ok(&produce(
                &handle,
                Some("tx-o"),
                batch(&tp, live.0, live.1, 0, true, &["open"]),
            )
            .await);
            // In Ongoing only the producer id is checked: the open
            // transaction is fenced and aborted first.
            let first = init_producer_id_once(&handle, "tx-o", 60_000, stale).await;
            assert_eq!(first.error, Some(ErrorCode::ConcurrentTransactions));
            let result = wait_for_lso(&handle, &tp, 2).await;
            assert_eq!(
                result.aborted_transactions,
                vec![AbortedTransaction {
                    producer_id: live.0,
                    first_offset: 0
                }]
            );
            assert_eq!(
                end_txn(&handle, "tx-o", live, true).await,
                Some(ErrorCode::ProducerFenced)
            );
            // Its retry finds the abort done, with an epoch it never had.
            assert_eq!(
                init_producer_id(&handle, "tx-o", 60_000, stale).await,
                fenced()
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn an_init_with_a_producer_id_but_no_epoch_is_an_invalid_request() {
        let mut cluster = cluster(29);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let producer = init_transactions(&handle, "tx-i", 60_000).await;
            // KafkaApis.handleInitProducerIdRequest: both or neither.
            for half in [(producer.0, -1), (-1, producer.1)] {
                let answer = init_producer_id(&handle, "tx-i", 60_000, half).await;
                assert_eq!(
                    answer.error,
                    Some(eddyline_sim::protocol::codes::INVALID_REQUEST)
                );
            }
            // Nothing changed.
            assert_eq!(
                init_producer_id(&handle, "tx-i", 60_000, producer).await,
                granted((producer.0, producer.1 + 1))
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod offsets {
    use super::*;

    fn offset(value: i64, metadata: &str) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset: value,
            metadata: metadata.to_string(),
        }
    }

    async fn fetch_offsets(
        handle: &eddyline_sim::cluster::ClusterHandle,
        group: &str,
        tp: &TopicPartition,
        require_stable: bool,
    ) -> (Option<OffsetAndMetadata>, Option<ErrorCode>) {
        match group_call(
            handle,
            group,
            Request::OffsetFetch(OffsetFetchRequest {
                group_id: group.to_string(),
                partitions: vec![tp.clone()],
                require_stable,
            }),
        )
        .await
        {
            Response::OffsetFetch(OffsetFetchResponse {
                error: None,
                mut offsets,
            }) => {
                let answer = offsets.remove(0);
                (answer.offset, answer.error)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn transactional_offsets_are_unstable_until_commit_and_dropped_on_abort() {
        let mut cluster = cluster(31);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "in", 1).await;
            let input = TopicPartition::new("in", 0);
            for (round, commit) in [(1, true), (2, false)] {
                let producer = init_transactions(&handle, "tx-o", 60_000).await;
                let response = txn_call(
                    &handle,
                    "tx-o",
                    Request::AddOffsetsToTxn(AddOffsetsToTxnRequest {
                        transactional_id: "tx-o".into(),
                        producer_id: producer.0,
                        producer_epoch: producer.1,
                        group_id: "g".into(),
                    }),
                )
                .await;
                assert_eq!(
                    response,
                    Response::AddOffsetsToTxn(AddOffsetsToTxnResponse { error: None })
                );
                let response = group_call(
                    &handle,
                    "g",
                    Request::TxnOffsetCommit(TxnOffsetCommitRequest {
                        transactional_id: "tx-o".into(),
                        group_id: "g".into(),
                        producer_id: producer.0,
                        producer_epoch: producer.1,
                        generation_id: -1,
                        member_id: String::new(),
                        group_instance_id: None,
                        offsets: vec![(
                            input.clone(),
                            offset(round * 10, &format!("checkpoint-{round}")),
                        )],
                    }),
                )
                .await;
                assert_eq!(
                    response,
                    Response::TxnOffsetCommit(TxnOffsetCommitResponse {
                        results: vec![PartitionError {
                            topic_partition: input.clone(),
                            error: None
                        }]
                    })
                );
                assert_eq!(
                    fetch_offsets(&handle, "g", &input, true).await,
                    (None, Some(ErrorCode::UnstableOffsetCommit))
                );
                assert_eq!(end_txn(&handle, "tx-o", producer, commit).await, None);
                // Stable again once the marker lands.
                let mut stable = fetch_offsets(&handle, "g", &input, true).await;
                for _ in 0..200 {
                    if stable.1.is_none() {
                        break;
                    }
                    sleep_ms(10).await;
                    stable = fetch_offsets(&handle, "g", &input, true).await;
                }
                // Round 1 committed 10; round 2 aborted, so 10 remains.
                assert_eq!(stable, (Some(offset(10, "checkpoint-1")), None));
            }
            Ok(())
        });
        cluster.run().unwrap();
    }

    /// KIP-890 for TxnOffsetCommit (Kafka 3.8:
    /// `GroupCoordinator.handleTxnCommitOffsets` verifies with the
    /// transaction coordinator before appending): a commit that arrives
    /// after the transaction ended cannot open a new one in
    /// `__consumer_offsets` that nothing would ever end.
    #[test]
    fn a_late_txn_offset_commit_after_end_txn_is_refused_and_stable_fetches_do_not_hang() {
        let mut cluster = cluster(32);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let input = TopicPartition::new("in", 0);
            let producer = init_transactions(&handle, "tx-late", 60_000).await;
            assert_eq!(
                add_offsets(&handle, "tx-late", producer, "g-late").await,
                None
            );
            let commit = TxnCommit {
                transactional_id: "tx-late",
                group_id: "g-late",
                producer,
                generation_id: -1,
                member_id: "",
                group_instance_id: None,
            };
            assert_eq!(txn_offset_commit(&handle, &commit, &input, 10).await, None);
            assert_eq!(end_txn(&handle, "tx-late", producer, true).await, None);
            let (committed, error) = fetch_stable(&handle, "g-late", &input, 10_000).await;
            assert_eq!((committed.map(|o| o.offset), error), (Some(10), None));
            // The same producer id and epoch, after the commit completed.
            let late = txn_offset_commit(&handle, &commit, &input, 20).await;
            let (committed, error) = fetch_stable(&handle, "g-late", &input, 10_000).await;
            assert_eq!(
                (committed.map(|o| o.offset), error),
                (Some(10), None),
                "require_stable fetches hang on the late commit"
            );
            assert_eq!(late, Some(ErrorCode::InvalidTxnState));
            // No transaction is left open in the group's partition.
            let shard = TopicPartition::new(
                "__consumer_offsets",
                eddyline_sim::broker::coordinator_partition("g-late", 4),
            );
            let log = fetch(&handle, &shard, 0, Isolation::ReadCommitted).await;
            assert_eq!(log.last_stable_offset, log.high_watermark);
            Ok(())
        });
        cluster.run().unwrap();
    }

    /// The verification's answer for an old epoch: the coordinator says
    /// PRODUCER_FENCED and the leader reports INVALID_PRODUCER_EPOCH
    /// (`AddPartitionsToTxnManager`, returned as is by
    /// `GroupMetadataManager.maybeConvertOffsetCommitError`).
    #[test]
    fn a_txn_offset_commit_from_a_fenced_epoch_is_refused_with_invalid_producer_epoch() {
        let mut cluster = cluster(33);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let input = TopicPartition::new("in", 0);
            let old = init_transactions(&handle, "tx-old", 60_000).await;
            assert_eq!(add_offsets(&handle, "tx-old", old, "g-old").await, None);
            let commit = TxnCommit {
                transactional_id: "tx-old",
                group_id: "g-old",
                producer: old,
                generation_id: -1,
                member_id: "",
                group_instance_id: None,
            };
            assert_eq!(txn_offset_commit(&handle, &commit, &input, 5).await, None);
            assert_eq!(end_txn(&handle, "tx-old", old, true).await, None);
            let new = init_transactions(&handle, "tx-old", 60_000).await;
            assert_eq!(new, (old.0, old.1 + 1));
            let (committed, _) = fetch_stable(&handle, "g-old", &input, 10_000).await;
            assert_eq!(committed.map(|o| o.offset), Some(5));
            assert_eq!(
                txn_offset_commit(&handle, &commit, &input, 6).await,
                Some(ErrorCode::InvalidProducerEpoch)
            );
            let (committed, error) = fetch_stable(&handle, "g-old", &input, 10_000).await;
            assert_eq!((committed.map(|o| o.offset), error), (Some(5), None));
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod failover {
    use super::*;
    use eddyline_sim::protocol::CoordinatorType;

    #[test]
    fn a_new_transaction_coordinator_loads_the_state_and_completes_the_commit() {
        let mut cluster = cluster(41);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "out", 3).await;
            let partitions: Vec<TopicPartition> =
                (0..3).map(|p| TopicPartition::new("out", p)).collect();
            let producer = init_transactions(&handle, "tx-fo", 60_000).await;
            add_partitions(&handle, "tx-fo", producer, &partitions).await;
            for tp in &partitions {
                ok(&produce(
                    &handle,
                    Some("tx-fo"),
                    batch(tp, producer.0, producer.1, 0, true, &["v"]),
                )
                .await);
            }
            // Crash the coordinator; the new one must know the transaction.
            let coordinator_partition = TopicPartition::new(
                "__transaction_state",
                eddyline_sim::broker::coordinator_partition("tx-fo", 4),
            );
            let old = handle.leader_of(&coordinator_partition).unwrap();
            handle.crash_broker(old);
            wait_for(&handle, |h| {
                h.leader_of(&coordinator_partition)
                    .is_some_and(|l| l != old)
            })
            .await;
            let _ = coordinator(&handle, CoordinatorType::Transaction, "tx-fo").await;
            assert_eq!(end_txn(&handle, "tx-fo", producer, true).await, None);
            for tp in &partitions {
                let result = wait_for_lso(&handle, tp, 2).await;
                assert_eq!(values(&result), vec![(0, "v".to_string())]);
            }
            handle.restart_broker(old);
            Ok(())
        });
        cluster.run().unwrap();
    }
}
