//! Consumer groups through the simulated client: join, eager rebalance
//! (revoke before assign), range assignment, committed offsets, session
//! loss and leaving.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use eddyline_engine::transport::{
    Consumer, ConsumerEvent, ErrorCode, ErrorKind, OffsetAndMetadata, Producer, TopicPartition,
    Transport,
};

fn assigned(events: &[ConsumerEvent]) -> Vec<Vec<TopicPartition>> {
    events
        .iter()
        .filter_map(|event| match event {
            ConsumerEvent::Assigned(partitions) => Some(partitions.clone()),
            _ => None,
        })
        .collect()
}

fn group_events(events: &[ConsumerEvent]) -> Vec<ConsumerEvent> {
    events
        .iter()
        .filter(|event| !matches!(event, ConsumerEvent::Message(_)))
        .cloned()
        .collect()
}

fn all_partitions(topic: &str, count: i32) -> Vec<TopicPartition> {
    (0..count).map(|p| tp(topic, p)).collect()
}

mod rebalance {
    use super::*;

    #[test]
    fn a_second_member_makes_the_first_revoke_everything_before_both_get_range_assignments() {
        let mut cluster = cluster(51);
        let handle = cluster.handle();
        let second = Rc::new(RefCell::new(None::<(String, Vec<TopicPartition>)>));
        let first_handle = handle.clone();
        let first_second = Rc::clone(&second);
        cluster.client("first", async move {
            let handle = first_handle;
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 4).await;
            let mut consumer = transport
                .consumer(&consumer_config("first", Some("g")))
                .await?;
            consumer.subscribe(&["t".to_string()]).await?;
            let events = poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            assert_eq!(assigned(&events), vec![all_partitions("t", 4)]);
            let before = consumer.group_metadata().expect("assigned");
            let events = poll_until(&mut consumer, 20_000, |e| {
                e.iter()
                    .any(|event| matches!(event, ConsumerEvent::Revoked(_)))
            })
            .await;
            assert_eq!(
                group_events(&events),
                vec![ConsumerEvent::Revoked(all_partitions("t", 4))]
            );
            // Until the next poll the member owns its partitions and its
            // generation is valid: it can commit.
            assert_eq!(consumer.group_metadata(), Some(before.clone()));
            consumer
                .commit(&[(
                    tp("t", 0),
                    OffsetAndMetadata {
                        offset: 0,
                        metadata: "before-revoke".into(),
                    },
                )])
                .await?;
            let events = poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            let mine = assigned(&events).pop().unwrap();
            let after = consumer.group_metadata().expect("assigned");
            assert!(after.generation_id > before.generation_id);
            // Wait for the other member's assignment, then compare.
            for _ in 0..200 {
                if first_second.borrow().is_some() {
                    break;
                }
                sleep_ms(50).await;
            }
            let (other_id, theirs) = first_second.borrow().clone().expect("second assigned");
            let mut union: Vec<TopicPartition> = mine.iter().chain(&theirs).cloned().collect();
            union.sort();
            assert_eq!(union, all_partitions("t", 4), "disjoint and complete");
            // Range: the member with the smaller id gets the first half.
            let expected_mine = if after.member_id < other_id {
                vec![tp("t", 0), tp("t", 1)]
            } else {
                vec![tp("t", 2), tp("t", 3)]
            };
            assert_eq!(mine, expected_mine);
            Ok(())
        });
        let second_handle = handle.clone();
        cluster.client("second", async move {
            let handle = second_handle;
            wait_ready(&handle).await;
            // Well after the first member's group formed (Kafka's
            // group.initial.rebalance.delay.ms is 3 s).
            sleep_ms(10_000).await;
            let transport = transport(&handle);
            let mut consumer = transport
                .consumer(&consumer_config("second", Some("g")))
                .await?;
            consumer.subscribe(&["t".to_string()]).await?;
            let events = poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, ConsumerEvent::Revoked(_))),
                "a new member has nothing to revoke"
            );
            let theirs = assigned(&events).pop().unwrap();
            assert_eq!(theirs.len(), 2);
            let member_id = consumer.group_metadata().expect("assigned").member_id;
            *second.borrow_mut() = Some((member_id, theirs));
            // Stay in the group until the first member has compared.
            sleep_ms(2_000).await;
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_member_that_closes_hands_its_partitions_over_without_waiting_for_its_session() {
        let mut cluster = cluster(52);
        let handle = cluster.handle();
        let closed_at = Rc::new(RefCell::new(None::<tokio::time::Instant>));
        let leaver_handle = handle.clone();
        let leaver_closed_at = Rc::clone(&closed_at);
        cluster.client("leaver", async move {
            let handle = leaver_handle;
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 2).await;
            let mut consumer = transport
                .consumer(&consumer_config("leaver", Some("g")))
                .await?;
            consumer.subscribe(&["t".to_string()]).await?;
            poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            // Keep polling (a member that stops polling holds up the
            // rebalance until its rebalance timeout, as in Kafka).
            read_for(&mut consumer, 4_000).await;
            *leaver_closed_at.borrow_mut() = Some(tokio::time::Instant::now());
            consumer.close().await?;
            Ok(())
        });
        cluster.client("stayer", async move {
            wait_ready(&handle).await;
            sleep_ms(1_500).await;
            let transport = transport(&handle);
            let mut consumer = transport
                .consumer(&consumer_config("stayer", Some("g")))
                .await?;
            consumer.subscribe(&["t".to_string()]).await?;
            let events = poll_until(&mut consumer, 30_000, |e| {
                assigned(e).last().is_some_and(|last| last.len() == 2)
            })
            .await;
            let closed = closed_at.borrow().expect("the leaver closed before");
            let waited = tokio::time::Instant::now().duration_since(closed);
            // The session timeout is 3 s: a clean leave is much faster.
            assert!(waited.as_millis() < 2_000, "took {waited:?}");
            // First one partition (shared with the leaver), then both.
            let assignments = assigned(&events);
            assert_eq!(assignments.first().map(Vec::len), Some(1), "{events:?}");
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_member_that_misses_its_session_reports_lost_and_cannot_commit() {
        let mut cluster = cluster(53);
        let handle = cluster.handle();
        let zombie_handle = handle.clone();
        cluster.client("zombie", async move {
            let handle = zombie_handle;
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 2).await;
            let mut consumer = transport
                .consumer(&consumer_config("zombie", Some("g")))
                .await?;
            consumer.subscribe(&["t".to_string()]).await?;
            poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            let old = consumer.group_metadata().expect("assigned");
            // Cut off from every broker for twice the session timeout.
            handle.partition(&["zombie"], &["broker-0", "broker-1", "broker-2"]);
            sleep_ms(6_000).await;
            handle.heal(&["zombie"], &["broker-0", "broker-1", "broker-2"]);
            let events = poll_until(&mut consumer, 20_000, |e| {
                e.iter()
                    .any(|event| matches!(event, ConsumerEvent::Lost(_)))
            })
            .await;
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, ConsumerEvent::Revoked(_))),
                "a lost member is not asked to revoke"
            );
            // Its old generation is gone: an offset commit with it fails.
            let mut producer = transport
                .producer(&producer_config("zp", Some("txn-z")))
                .await?;
            producer.init_transactions().await?;
            producer.begin_transaction().await?;
            let offsets = vec![(
                tp("t", 0),
                OffsetAndMetadata {
                    offset: 0,
                    metadata: String::new(),
                },
            )];
            let error = producer
                .send_offsets_to_transaction(&offsets, &old)
                .await
                .unwrap_err();
            assert_eq!(error.kind, ErrorKind::Abortable, "{error}");
            assert!(
                matches!(
                    error.code,
                    ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId
                ),
                "{error}"
            );
            producer.abort_transaction().await?;
            Ok(())
        });
        cluster.client("survivor", async move {
            wait_ready(&handle).await;
            sleep_ms(2_000).await;
            let transport = transport(&handle);
            let mut consumer = transport
                .consumer(&consumer_config("survivor", Some("g")))
                .await?;
            consumer.subscribe(&["t".to_string()]).await?;
            poll_until(&mut consumer, 30_000, |e| {
                assigned(e).iter().any(|partitions| partitions.len() == 2)
            })
            .await;
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod subscriptions {
    use super::*;

    #[test]
    fn a_new_subscription_revokes_everything_and_assigns_the_new_topics() {
        let mut cluster = cluster(56);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "a", 2).await;
            admin_create_topic(&transport, "b", 1).await;
            let mut consumer = transport.consumer(&consumer_config("c", Some("g"))).await?;
            consumer.subscribe(&["a".to_string()]).await?;
            let events = poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            assert_eq!(assigned(&events), vec![all_partitions("a", 2)]);
            consumer
                .subscribe(&["a".to_string(), "b".to_string()])
                .await?;
            let events = poll_until(&mut consumer, 20_000, |e| !assigned(e).is_empty()).await;
            let mut expected = all_partitions("a", 2);
            expected.push(tp("b", 0));
            assert_eq!(
                group_events(&events),
                vec![
                    ConsumerEvent::Revoked(all_partitions("a", 2)),
                    ConsumerEvent::Assigned(expected)
                ]
            );
            // The same subscription again changes nothing.
            consumer
                .subscribe(&["b".to_string(), "a".to_string()])
                .await?;
            assert!(group_events(&poll_for(&mut consumer, 2_000).await).is_empty());
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod committed_offsets {
    use super::*;

    #[test]
    fn committed_offsets_keep_their_metadata_and_a_new_member_starts_from_them() {
        let mut cluster = cluster(54);
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
            let mut first = transport
                .consumer(&consumer_config("first", Some("g")))
                .await?;
            first.subscribe(&["t".to_string()]).await?;
            let events = poll_until(&mut first, 20_000, |e| messages(e).len() >= 5).await;
            assert_eq!(messages(&events).len(), 5);
            let offset = OffsetAndMetadata {
                offset: 3,
                metadata: "checkpoint=17".into(),
            };
            first.commit(&[(tp("t", 0), offset.clone())]).await?;
            assert_eq!(
                first.committed(&[tp("t", 0)]).await?,
                vec![Some(offset.clone())]
            );
            first.close().await?;

            let mut second = transport
                .consumer(&consumer_config("second", Some("g")))
                .await?;
            second.subscribe(&["t".to_string()]).await?;
            let events = poll_until(&mut second, 20_000, |e| messages(e).len() >= 2).await;
            let offsets: Vec<i64> = messages(&events).iter().map(|m| m.offset).collect();
            assert_eq!(offsets, vec![3, 4]);
            assert_eq!(second.committed(&[tp("t", 0)]).await?, vec![Some(offset)]);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_consumer_without_a_group_cannot_commit_or_subscribe() {
        let mut cluster = cluster(55);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut consumer = transport.consumer(&consumer_config("c", None)).await?;
            let error = consumer.subscribe(&["t".to_string()]).await.unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidState);
            let error = consumer.committed(&[tp("t", 0)]).await.unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidState);
            assert_eq!(consumer.group_metadata(), None);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// librdkafka's `max.poll.interval.ms` (`rd_kafka_cgrp_max_poll_interval_check_tmr_cb`).
mod max_poll_interval {
    use super::*;
    use eddyline_sim::cluster::{ClusterConfig, SimCluster};

    /// Kafka's group timings, set here rather than taken from the defaults.
    fn group_cluster(seed: u64) -> SimCluster {
        let config = ClusterConfig {
            group_min_session_timeout_ms: 6_000,
            group_initial_rebalance_delay_ms: 3_000,
            ..config_from_env()
        };
        SimCluster::new(seed_or(seed), config).expect("valid config")
    }

    fn member_config(name: &str) -> eddyline_engine::transport::ConsumerConfig {
        let mut config = consumer_config(name, Some("g-poll"));
        config.session_timeout_ms = 6_000;
        config.heartbeat_interval_ms = 1_000;
        config.max_poll_interval_ms = 10_000;
        config
    }

    /// The member's events until `done`, from a consumer polled in the
    /// background until `stop` is set.
    async fn keep_polling(
        mut consumer: impl Consumer,
        events: Rc<RefCell<Vec<ConsumerEvent>>>,
        stop: Rc<std::cell::Cell<bool>>,
    ) {
        while !stop.get() {
            let batch = consumer
                .poll(100, std::time::Duration::from_millis(100))
                .await
                .expect("the steady member polls without errors");
            events.borrow_mut().extend(batch);
        }
    }

    async fn wait_until(what: &str, timeout_ms: u64, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {timeout_ms} ms"
            );
            sleep_ms(50).await;
        }
    }

    #[test]
    fn a_member_that_stops_polling_loses_its_partitions_and_its_next_poll_says_so_then_it_rejoins()
    {
        let mut cluster = group_cluster(61);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            admin_create_topic(&transport, "t", 4).await;
            let mut slow = transport.consumer(&member_config("slow")).await?;
            slow.subscribe(&["t".to_string()]).await?;
            poll_until(&mut slow, 60_000, |e| {
                assigned(e).last() == Some(&all_partitions("t", 4))
            })
            .await;
            // A second member joins; both get two partitions.
            let mut steady = transport.consumer(&member_config("steady")).await?;
            steady.subscribe(&["t".to_string()]).await?;
            let steady_events = Rc::new(RefCell::new(Vec::new()));
            let stop = Rc::new(std::cell::Cell::new(false));
            let background = tokio::task::spawn_local(keep_polling(
                steady,
                Rc::clone(&steady_events),
                Rc::clone(&stop),
            ));
            let events = poll_until(&mut slow, 60_000, |e| {
                assigned(e).last().is_some_and(|mine| mine.len() == 2)
            })
            .await;
            let last_poll_ms = handle.now_ms();
            let mine = assigned(&events).pop().expect("assigned");
            let before = slow.group_metadata().expect("assigned");
            {
                let steady_events = Rc::clone(&steady_events);
                wait_until("the steady member's two partitions", 60_000, move || {
                    assigned(&steady_events.borrow())
                        .last()
                        .is_some_and(|theirs| theirs.len() == 2)
                })
                .await;
            }

            // The slow member stops polling for longer than the interval:
            // it leaves, and the steady member takes over every partition
            // (well before the slow member's 6 s session could expire on
            // its own: its heartbeats went on until it left).
            {
                let steady_events = Rc::clone(&steady_events);
                wait_until("the steady member owning everything", 30_000, move || {
                    assigned(&steady_events.borrow()).last() == Some(&all_partitions("t", 4))
                })
                .await;
            }
            let taken_over_after_ms = handle.now_ms() - last_poll_ms;
            assert!(
                (10_000..14_000).contains(&taken_over_after_ms),
                "taken over {taken_over_after_ms} ms after the last poll"
            );

            // Its next poll says so, once.
            let error = slow
                .poll(100, std::time::Duration::from_millis(100))
                .await
                .unwrap_err();
            assert_eq!(error.code, ErrorCode::MaxPollExceeded, "{error}");
            assert_eq!(error.kind, ErrorKind::Retriable, "{error}");
            // Then it hands out the loss and rejoins, as a new member.
            let events = poll_until(&mut slow, 60_000, |e| {
                assigned(e).last().is_some_and(|mine| mine.len() == 2)
            })
            .await;
            assert_eq!(group_events(&events)[0], ConsumerEvent::Lost(mine));
            let after = slow.group_metadata().expect("assigned again");
            assert_ne!(after.member_id, before.member_id);
            assert!(after.generation_id > before.generation_id + 1);
            {
                let steady_events = Rc::clone(&steady_events);
                wait_until(
                    "the steady member back to two partitions",
                    60_000,
                    move || {
                        assigned(&steady_events.borrow())
                            .last()
                            .is_some_and(|theirs| theirs.len() == 2)
                    },
                )
                .await;
            }
            stop.set(true);
            background.await?;
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_poll_interval_shorter_than_the_session_timeout_is_refused() {
        let mut cluster = cluster(62);
        let handle = cluster.handle();
        cluster.client("test", async move {
            let mut config = member_config("c");
            config.max_poll_interval_ms = config.session_timeout_ms - 1;
            let error = transport(&handle)
                .consumer(&config)
                .await
                .err()
                .expect("refused");
            assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
            Ok(())
        });
        cluster.run().unwrap();
    }
}
