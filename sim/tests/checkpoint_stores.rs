//! The checkpoint stores on the simulator: the Kafka topic store through
//! `SimTransport` (chunks produced in the worker's transaction, visible
//! exactly when it commits), and the simulator's own store with its
//! injected faults (failed writes and reads, writes lost in their host's
//! crash) and their determinism.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::*;
use eddyline_engine::Error;
use eddyline_engine::checkpoint::{
    CheckpointStore, SnapshotId, TopicStore, TopicStoreOptions, ensure_topic,
};
use eddyline_engine::transport::{Producer, ProducerRecord, Transport, TransportResult};
use eddyline_sim::checkpoint_store::{
    InjectedKind, SimCheckpointStore, SimStoreConfig, SimStoreStats,
};
use eddyline_sim::cluster::{ClusterHandle, SimCluster};
use eddyline_sim::{Seed, SimTransport};

const TOPIC: &str = "checkpoints";

fn id(job: &str, task: i32, checkpoint: u64, incarnation: u64) -> SnapshotId {
    SnapshotId {
        job: job.to_string(),
        task,
        checkpoint,
        incarnation,
    }
}

/// `len` bytes that differ from those of another `salt`.
fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn header<'a>(record: &'a ProducerRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| std::str::from_utf8(value).unwrap())
}

fn key(record: &ProducerRecord) -> &str {
    std::str::from_utf8(record.key.as_deref().unwrap()).unwrap()
}

mod topic_store {
    use super::*;

    /// Creates the compacted topic (twice: the second finds it) and a
    /// store on it with `chunk_bytes`-byte chunks.
    async fn store(
        transport: &SimTransport,
        partitions: i32,
        chunk_bytes: usize,
    ) -> TopicStore<SimTransport> {
        let admin = transport.admin().await.expect("admin");
        for _ in 0..2 {
            let found = ensure_topic(&admin, TOPIC, partitions, 3).await;
            assert_eq!(found.expect("the checkpoint topic"), partitions);
        }
        let options = TopicStoreOptions {
            chunk_bytes,
            ..TopicStoreOptions::default()
        };
        TopicStore::new(transport.clone(), TOPIC, partitions, options).expect("a store")
    }

    async fn producer(transport: &SimTransport, transactional_id: &str) -> impl Producer {
        let mut producer = transport
            .producer(&producer_config(transactional_id, Some(transactional_id)))
            .await
            .expect("a producer");
        producer.init_transactions().await.expect("init");
        producer
    }

    /// One transaction holding `records`; committed or aborted.
    async fn transaction<P: Producer>(
        producer: &mut P,
        records: Vec<ProducerRecord>,
        commit: bool,
    ) -> TransportResult<()> {
        producer.begin_transaction().await?;
        for record in records {
            let _delivery = producer.send(record)?;
        }
        if commit {
            producer.commit_transaction().await
        } else {
            producer.flush().await?;
            producer.abort_transaction().await
        }
    }

    fn run(seed: u64, test: impl std::future::Future<Output = TestResult> + 'static) {
        let mut cluster = cluster(seed);
        cluster.client("worker", test);
        cluster.run().unwrap();
    }

    #[test]
    fn a_snapshot_produced_in_a_committed_transaction_reads_back_byte_equal() {
        let mut cluster = cluster(301);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut store = store(&transport, 2, 512 * 1024).await;
            let mut producer = producer(&transport, "txn-ckpt-1").await;
            let snapshot = id("orders", 3, 1, 0xa1);
            let bytes = payload(2_000, 1);
            let records = store.write(&snapshot, &bytes).await?;
            assert_eq!(records.len(), 1, "one chunk");
            let record = &records[0];
            assert_eq!(record.topic, TOPIC);
            assert_eq!(record.partition, Some(1), "task 3 of 2 partitions");
            assert_eq!(key(record), "orders/3/0");
            assert_eq!(header(record, "eddy.checkpoint"), Some("1"));
            assert_eq!(header(record, "eddy.incarnation"), Some("161"));
            assert_eq!(header(record, "eddy.chunk"), Some("0"));
            assert_eq!(header(record, "eddy.chunks"), Some("1"));
            transaction(&mut producer, records, true).await?;
            assert_eq!(store.read(&snapshot).await?, bytes);
            // Compaction collects; the store removes nothing itself.
            assert_eq!(store.collect("orders", 3, 2).await?, 0);
            assert_eq!(store.read(&snapshot).await?, bytes);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_snapshot_is_missing_while_its_transaction_is_open_and_after_it_aborted() {
        let mut cluster = cluster(302);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut store = store(&transport, 1, 512 * 1024).await;
            let mut producer = producer(&transport, "txn-ckpt-2").await;
            let first = id("orders", 0, 1, 7);
            let records = store.write(&first, b"committed state").await?;
            transaction(&mut producer, records, true).await?;

            let aborted = id("orders", 0, 2, 7);
            let records = store.write(&aborted, b"aborted state").await?;
            transaction(&mut producer, records, false).await?;
            let error = store.read(&aborted).await.unwrap_err();
            assert!(matches!(error, Error::MissingSnapshot(_)), "{error:?}");
            assert_eq!(store.read(&first).await?, b"committed state");

            // Produced and flushed, not committed: invisible until the commit.
            let open = id("orders", 0, 3, 7);
            producer.begin_transaction().await?;
            for record in store.write(&open, b"open state").await? {
                let _delivery = producer.send(record)?;
            }
            producer.flush().await?;
            let error = store.read(&open).await.unwrap_err();
            assert!(matches!(error, Error::MissingSnapshot(_)), "{error:?}");
            producer.commit_transaction().await?;
            assert_eq!(store.read(&open).await?, b"open state");
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_snapshot_of_many_chunks_reads_back_byte_equal() {
        let mut cluster = cluster(303);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut store = store(&transport, 3, 1_000).await;
            let mut producer = producer(&transport, "txn-ckpt-3").await;
            let snapshot = id("orders", 5, 4, 2);
            let bytes = payload(9_500, 3);
            let records = store.write(&snapshot, &bytes).await?;
            // 9 500 bytes of payload in a 9 546-byte envelope: 10 chunks.
            assert_eq!(records.len(), 10);
            for (index, record) in records.iter().enumerate() {
                assert_eq!(record.partition, Some(2));
                assert_eq!(key(record), format!("orders/5/{index}"));
                assert_eq!(
                    header(record, "eddy.chunk"),
                    Some(index.to_string().as_str())
                );
                assert_eq!(header(record, "eddy.chunks"), Some("10"));
                let len = record.value.as_ref().unwrap().len();
                assert_eq!(len, if index < 9 { 1_000 } else { 546 });
            }
            transaction(&mut producer, records, true).await?;
            assert_eq!(store.read(&snapshot).await?, bytes);
            Ok(())
        });
        cluster.run().unwrap();
    }

    /// In the simulator, which does not compact, the older snapshot's
    /// chunks stay in the log and it still reads back; on Kafka it reads
    /// back until the log cleaner replaces its chunks (then it is missing).
    #[test]
    fn a_second_checkpoint_with_fewer_chunks_tombstones_the_rest_and_the_first_still_reads_back() {
        let mut cluster = cluster(304);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut store = store(&transport, 1, 100).await;
            let mut producer = producer(&transport, "txn-ckpt-4").await;
            let first = id("orders", 0, 1, 9);
            let first_bytes = payload(420, 4);
            let records = store.write(&first, &first_bytes).await?;
            assert_eq!(records.len(), 5, "466 envelope bytes in 100-byte chunks");
            transaction(&mut producer, records, true).await?;
            assert_eq!(store.collect("orders", 0, 1).await?, 0);

            let second = id("orders", 0, 2, 9);
            let second_bytes = payload(120, 5);
            let records = store.write(&second, &second_bytes).await?;
            let tombstones: Vec<&str> = records
                .iter()
                .filter(|record| record.value.is_none())
                .map(key)
                .collect();
            assert_eq!(tombstones, ["orders/0/2", "orders/0/3", "orders/0/4"]);
            assert_eq!(records.len(), 5, "2 chunks and 3 tombstones");
            transaction(&mut producer, records, true).await?;
            assert_eq!(store.read(&second).await?, second_bytes);
            assert_eq!(store.read(&first).await?, first_bytes);

            // Once checkpoint 2 is known committed, nothing beyond its two
            // chunks holds a value: no more tombstones.
            assert_eq!(store.collect("orders", 0, 2).await?, 0);
            let records = store
                .write(&id("orders", 0, 3, 9), &payload(110, 6))
                .await?;
            assert!(records.iter().all(|r| r.value.is_some()), "{records:?}");
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_write_whose_commit_is_not_known_keeps_tombstoning_the_chunks_it_may_have_left() {
        run(305, async {
            let tombstones = |records: &[ProducerRecord]| {
                records
                    .iter()
                    .filter(|record| record.value.is_none())
                    .count()
            };
            // The write path makes no call: a store on any transport works.
            let transport = SimTransport::new(["broker-0"]);
            let options = TopicStoreOptions {
                chunk_bytes: 100,
                ..TopicStoreOptions::default()
            };
            let mut store = TopicStore::new(transport, TOPIC, 1, options)?;
            let big = store.write(&id("j", 0, 1, 1), &payload(420, 0)).await?;
            assert_eq!((big.len(), tombstones(&big)), (5, 0));
            // Checkpoint 1 may have aborted or committed: 2 chunks, 3 tombstones...
            let small = store.write(&id("j", 0, 2, 1), &payload(120, 0)).await?;
            assert_eq!((small.len(), tombstones(&small)), (5, 3));
            // ...and so may checkpoint 2: its tombstones again.
            let small = store.write(&id("j", 0, 3, 1), &payload(120, 0)).await?;
            assert_eq!((small.len(), tombstones(&small)), (5, 3));
            Ok(())
        });
    }

    #[test]
    fn a_new_store_learns_from_a_read_which_chunks_hold_values() {
        let mut cluster = cluster(306);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut store = store(&transport, 1, 100).await;
            let mut producer = producer(&transport, "txn-ckpt-6").await;
            let first = id("orders", 0, 1, 1);
            let records = store.write(&first, &payload(420, 7)).await?;
            transaction(&mut producer, records, true).await?;
            // A restarted worker: a new store, which knows nothing yet.
            let options = TopicStoreOptions {
                chunk_bytes: 100,
                ..TopicStoreOptions::default()
            };
            let mut restarted = TopicStore::new(transport.clone(), TOPIC, 1, options)?;
            assert_eq!(restarted.read(&first).await?, payload(420, 7));
            let records = restarted
                .write(&id("orders", 0, 2, 2), &payload(120, 8))
                .await?;
            let tombstones = records.iter().filter(|r| r.value.is_none()).count();
            assert_eq!(tombstones, 3, "{records:?}");
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn tasks_and_jobs_sharing_a_partition_never_mix() {
        let mut cluster = cluster(307);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let transport = transport(&handle);
            let mut store = store(&transport, 2, 64).await;
            let mut producer = producer(&transport, "txn-ckpt-7").await;
            // Tasks 0 and 2 share partition 0; jobs "a" and "b" share keys' shapes.
            let ids = [
                id("a", 0, 1, 1),
                id("a", 2, 1, 1),
                id("b", 0, 1, 1),
                id("b", 2, 1, 2),
            ];
            let mut records = Vec::new();
            for (salt, snapshot) in ids.iter().enumerate() {
                records.extend(store.write(snapshot, &payload(150, salt as u8)).await?);
            }
            assert!(records.iter().all(|r| r.partition == Some(0)));
            transaction(&mut producer, records, true).await?;
            for (salt, snapshot) in ids.iter().enumerate() {
                assert_eq!(
                    store.read(snapshot).await?,
                    payload(150, salt as u8),
                    "{snapshot}"
                );
            }
            // Same job, task and checkpoint, another incarnation: not there.
            let error = store.read(&id("b", 2, 1, 1)).await.unwrap_err();
            assert!(matches!(error, Error::MissingSnapshot(_)), "{error:?}");
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_read_of_a_topic_that_does_not_exist_is_a_store_error_naming_topic_and_partition() {
        let mut cluster = cluster(308);
        let handle = cluster.handle();
        cluster.client("worker", async move {
            wait_ready(&handle).await;
            let mut store = TopicStore::new(
                transport(&handle),
                "no-such-topic",
                4,
                TopicStoreOptions::default(),
            )?;
            let error = store.read(&id("orders", 6, 1, 1)).await.unwrap_err();
            let Error::Store(message) = &error else {
                panic!("{error:?}");
            };
            assert!(
                message.contains("checkpoint topic no-such-topic partition 2"),
                "{message}"
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod sim_store {
    use super::*;

    fn config(configure: impl FnOnce(&mut SimStoreConfig)) -> SimStoreConfig {
        let mut config = SimStoreConfig::none();
        configure(&mut config);
        config
    }

    /// A worker host that, on its first start, runs `work` with the store
    /// as seen from that host, then idles until it is crashed.
    fn worker_host<F, Fut>(
        cluster: &mut SimCluster,
        store: &SimCheckpointStore,
        name: &str,
        work: F,
    ) where
        F: Fn(eddyline_sim::checkpoint_store::HostStore) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let store = store.clone();
        let host = name.to_string();
        let started = Rc::new(Cell::new(false));
        let work = Rc::new(work);
        cluster.host(name, move || {
            let first = !started.replace(true);
            let store = store.on_host(&host);
            let work = Rc::clone(&work);
            async move {
                if first {
                    work(store).await;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    async fn wait_until(handle: &ClusterHandle, flag: &Rc<Cell<bool>>) {
        wait_for(handle, |_| flag.get()).await;
    }

    #[test]
    fn a_written_snapshot_reads_back_byte_equal_from_any_host() {
        let mut cluster = cluster(401);
        let store = SimCheckpointStore::new(&cluster.handle(), SimStoreConfig::none()).unwrap();
        let shared = store.clone();
        cluster.client("checker", async move {
            let mut mine = store.on_host("checker");
            let mut other = store.on_host("elsewhere");
            let snapshot = id("orders", 1, 1, 5);
            assert!(mine.write(&snapshot, &payload(3_000, 1)).await?.is_empty());
            assert_eq!(mine.read(&snapshot).await?, payload(3_000, 1));
            assert_eq!(other.read(&snapshot).await?, payload(3_000, 1));
            let error = other.read(&id("orders", 1, 2, 5)).await.unwrap_err();
            assert!(matches!(error, Error::MissingSnapshot(_)), "{error:?}");
            Ok(())
        });
        cluster.run().unwrap();
        assert_eq!(
            shared.stats(),
            SimStoreStats {
                writes: 1,
                reads: 2,
                reads_missing: 1,
                ..SimStoreStats::default()
            }
        );
        assert!(shared.injected_faults().is_empty());
    }

    #[test]
    fn a_damaged_snapshot_reads_as_corrupt_and_collect_removes_those_below() {
        let mut cluster = cluster(402);
        let store = SimCheckpointStore::new(&cluster.handle(), SimStoreConfig::none()).unwrap();
        cluster.client("checker", async move {
            let mut host = store.on_host("checker");
            for checkpoint in 1..=4 {
                host.write(&id("orders", 0, checkpoint, 1), b"state")
                    .await?;
            }
            assert!(store.damage(&id("orders", 0, 4, 1)));
            assert!(!store.damage(&id("orders", 0, 5, 1)));
            let error = host.read(&id("orders", 0, 4, 1)).await.unwrap_err();
            assert!(matches!(error, Error::CorruptSnapshot(_)), "{error:?}");
            assert_eq!(host.collect("orders", 0, 3).await?, 2);
            assert_eq!(host.collect("orders", 1, 9).await?, 0);
            let left: Vec<u64> = store
                .snapshot_ids()
                .iter()
                .map(|id| id.checkpoint)
                .collect();
            assert_eq!(left, [3, 4]);
            assert!(matches!(
                host.collect("a/b", 0, 3).await,
                Err(Error::Invalid(_))
            ));
            Ok(())
        });
        cluster.run().unwrap();
    }

    /// Writes `writes` snapshots and reads each back: (writes that failed,
    /// reads that failed), and the store's counts.
    fn failures(seed: u64, store_config: SimStoreConfig, writes: u64) -> (u64, u64, SimStoreStats) {
        let mut cluster = cluster(seed);
        let store = SimCheckpointStore::new(&cluster.handle(), store_config).unwrap();
        let counts = Rc::new(Cell::new((0, 0)));
        let (shared, seen) = (store.clone(), Rc::clone(&counts));
        cluster.client("checker", async move {
            let mut host = store.on_host("checker");
            let (mut write_errors, mut read_errors) = (0, 0);
            for checkpoint in 0..writes {
                let snapshot = id("orders", 0, checkpoint, 1);
                match host.write(&snapshot, b"s").await {
                    Ok(_) => {}
                    Err(Error::Store(_)) => write_errors += 1,
                    Err(other) => panic!("{other:?}"),
                }
                match host.read(&snapshot).await {
                    Ok(bytes) => assert_eq!(bytes, b"s"),
                    Err(Error::Store(_)) => read_errors += 1,
                    // The write failed: nothing was left behind.
                    Err(Error::MissingSnapshot(_)) => {}
                    Err(other) => panic!("{other:?}"),
                }
            }
            seen.set((write_errors, read_errors));
            Ok(())
        });
        cluster.run().unwrap();
        let (write_errors, read_errors) = counts.get();
        (write_errors, read_errors, shared.stats())
    }

    #[test]
    fn injected_failures_at_rate_one_always_happen_and_at_rate_zero_never() {
        let always = config(|c| {
            c.write_failure_rate = 1.0;
            c.read_failure_rate = 1.0;
        });
        let (write_errors, read_errors, stats) = failures(403, always, 20);
        assert_eq!((write_errors, read_errors), (20, 20));
        assert_eq!((stats.write_failures, stats.read_failures), (20, 20));
        assert_eq!((stats.writes, stats.reads), (0, 0));

        let (write_errors, read_errors, stats) = failures(403, SimStoreConfig::none(), 20);
        assert_eq!((write_errors, read_errors), (0, 0));
        assert_eq!((stats.writes, stats.reads), (20, 20));
        assert_eq!((stats.write_failures, stats.read_failures), (0, 0));
    }

    #[test]
    fn injected_failures_at_a_rate_between_come_and_go_and_are_all_counted() {
        let half = config(|c| {
            c.write_failure_rate = 0.5;
            c.read_failure_rate = 0.5;
        });
        let (write_errors, read_errors, stats) = failures(404, half, 60);
        assert!((10..50).contains(&write_errors), "{write_errors} of 60");
        assert!((5..50).contains(&read_errors), "{read_errors}");
        assert_eq!(stats.write_failures, write_errors);
        assert_eq!(stats.read_failures, read_errors);
        assert_eq!(stats.writes + stats.write_failures, 60);
    }

    /// The worker writes checkpoint 1, waits until it is synced, writes
    /// checkpoint 2 and says so; the checker reads 2 back, crashes the
    /// worker `crash_after_ms` after the write, and reads both again.
    fn crash_after_write(seed: u64, crash_after_ms: u64, crash: Crash) -> Outcome {
        let mut cluster = cluster(seed);
        let handle = cluster.handle();
        let unsynced = config(|c| c.ack_before_sync_ms = Some(5_000));
        let store = SimCheckpointStore::new(&handle, unsynced).unwrap();
        let written = Rc::new(Cell::new(false));
        let flag = Rc::clone(&written);
        worker_host(&mut cluster, &store, "worker", move |mut host| {
            let flag = Rc::clone(&flag);
            async move {
                host.write(&id("orders", 0, 1, 1), b"one").await.unwrap();
                sleep_ms(6_000).await;
                host.write(&id("orders", 0, 2, 1), b"two").await.unwrap();
                flag.set(true);
            }
        });
        worker_host(&mut cluster, &store, "bystander", |_| async {});
        let outcome = Rc::new(RefCell::new(Outcome::default()));
        let (shared, seen) = (store.clone(), Rc::clone(&outcome));
        cluster.client("checker", async move {
            let mut host = store.on_host("checker");
            wait_until(&handle, &written).await;
            let visible = host.read(&id("orders", 0, 2, 1)).await;
            sleep_ms(crash_after_ms).await;
            match crash {
                Crash::Of(host) => handle.crash_host(host),
                Crash::RestartOf(host) => handle.restart_host(host),
            }
            sleep_ms(10_000).await;
            let first = host.read(&id("orders", 0, 1, 1)).await;
            let second = host.read(&id("orders", 0, 2, 1)).await;
            let mut seen = seen.borrow_mut();
            seen.before_crash = Some(visible);
            seen.first = Some(first);
            seen.second = Some(second);
            Ok(())
        });
        cluster.run().unwrap();
        let mut outcome = outcome.take();
        outcome.stats = shared.stats();
        outcome.lost = shared
            .injected_faults()
            .into_iter()
            .filter(|fault| fault.kind == InjectedKind::UnsyncedWriteLost)
            .map(|fault| (fault.host, fault.id.checkpoint))
            .collect();
        outcome
    }

    /// How the checker ends a host's software.
    #[derive(Clone, Copy, Debug)]
    enum Crash {
        Of(&'static str),
        RestartOf(&'static str),
    }

    #[derive(Debug, Default)]
    struct Outcome {
        before_crash: Option<Result<Vec<u8>, Error>>,
        first: Option<Result<Vec<u8>, Error>>,
        second: Option<Result<Vec<u8>, Error>>,
        stats: SimStoreStats,
        lost: Vec<(String, u64)>,
    }

    #[test]
    fn an_unsynced_write_is_lost_when_its_host_crashes_within_the_sync_delay() {
        for crash in [Crash::Of("worker"), Crash::RestartOf("worker")] {
            let outcome = crash_after_write(405, 1_000, crash);
            let visible = outcome.before_crash.unwrap().unwrap();
            assert_eq!(visible, b"two", "{crash:?}: visible before the crash");
            let first = outcome.first.unwrap().unwrap();
            assert_eq!(first, b"one", "{crash:?}: synced before the crash");
            let error = outcome.second.unwrap().unwrap_err();
            assert!(
                matches!(error, Error::MissingSnapshot(_)),
                "{crash:?}: {error:?}"
            );
            assert_eq!(outcome.stats.writes_lost, 1, "{crash:?}");
            assert_eq!(outcome.stats.writes_synced_late, 1, "{crash:?}");
            assert_eq!(outcome.lost, [("worker".to_string(), 2)], "{crash:?}");
        }
    }

    #[test]
    fn an_unsynced_write_survives_a_crash_after_its_sync_delay_or_of_another_host() {
        for (crash_after_ms, crash) in [
            (6_000, Crash::Of("worker")),
            (1_000, Crash::Of("bystander")),
        ] {
            let outcome = crash_after_write(406, crash_after_ms, crash);
            assert_eq!(outcome.second.unwrap().unwrap(), b"two", "{crash:?}");
            assert_eq!(outcome.first.unwrap().unwrap(), b"one");
            assert_eq!(outcome.stats.writes_lost, 0);
            assert_eq!(outcome.stats.writes_synced_late, 2);
            assert!(outcome.lost.is_empty());
        }
    }

    #[test]
    fn a_host_that_crashes_mid_write_never_completes_the_write() {
        let mut cluster = cluster(407);
        let handle = cluster.handle();
        let slow = config(|c| {
            c.write_ms_min = 1_000;
            c.write_ms_max = 1_000;
        });
        let store = SimCheckpointStore::new(&handle, slow).unwrap();
        let writing = Rc::new(Cell::new(false));
        let flag = Rc::clone(&writing);
        worker_host(&mut cluster, &store, "worker", move |mut host| {
            let flag = Rc::clone(&flag);
            async move {
                flag.set(true);
                let _ = host.write(&id("orders", 0, 1, 1), b"never").await;
                panic!("the write outlived its host's crash");
            }
        });
        let shared = store.clone();
        cluster.client("checker", async move {
            wait_until(&handle, &writing).await;
            sleep_ms(300).await;
            handle.crash_host("worker");
            sleep_ms(3_000).await;
            let error = store.on_host("checker").read(&id("orders", 0, 1, 1)).await;
            assert!(matches!(error, Err(Error::MissingSnapshot(_))), "{error:?}");
            Ok(())
        });
        cluster.run().unwrap();
        assert_eq!(shared.stats().writes, 0);
        assert_eq!(handle_crashes(&cluster), 1);
    }

    fn handle_crashes(cluster: &SimCluster) -> usize {
        cluster.handle().host_crash_times("worker").len()
    }

    /// Every write's and read's outcome (`W`/`w`: a write acknowledged or
    /// failed; `R`/`r`/`m`: a read that returned the bytes, failed, or
    /// found nothing), the injected faults, the trace hash.
    fn fault_sequence(seed: u64) -> (String, Vec<(u64, u64)>, u64) {
        // Seeds of its own, not `EDDY_SEED`: the test compares two seeds.
        let mut cluster = SimCluster::new(Seed::new(seed), config_from_env()).unwrap();
        let flaky = config(|c| {
            c.write_failure_rate = 0.3;
            c.read_failure_rate = 0.3;
        });
        let store = SimCheckpointStore::new(&cluster.handle(), flaky).unwrap();
        let outcomes = Rc::new(RefCell::new(String::new()));
        let (shared, seen) = (store.clone(), Rc::clone(&outcomes));
        cluster.client("checker", async move {
            let mut host = store.on_host("checker");
            for checkpoint in 0..40 {
                let snapshot = id("orders", 0, checkpoint, 1);
                let wrote = match host.write(&snapshot, b"s").await {
                    Ok(_) => 'W',
                    Err(_) => 'w',
                };
                let read = match host.read(&snapshot).await {
                    Ok(_) => 'R',
                    Err(Error::MissingSnapshot(_)) => 'm',
                    Err(_) => 'r',
                };
                seen.borrow_mut().extend([wrote, read]);
            }
            Ok(())
        });
        cluster.run().unwrap();
        let faults = shared
            .injected_faults()
            .iter()
            .map(|fault| (fault.at_ms, fault.id.checkpoint))
            .collect();
        (outcomes.take(), faults, cluster.trace().hash)
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        let first = fault_sequence(408);
        let failed = first.0.chars().filter(|c| *c == 'w' || *c == 'r').count();
        assert!(failed > 0 && first.0.contains('R'), "{}", first.0);
        assert_eq!(first.1.len(), failed, "every failure is an injected fault");
        assert_eq!(fault_sequence(408), first);
        let other = fault_sequence(409);
        assert_ne!(other.0, first.0);
        assert_ne!(other.2, first.2, "the faults are in the trace");
    }

    #[test]
    fn a_config_with_a_rate_outside_zero_to_one_or_an_empty_range_is_refused() {
        let cluster = cluster(410);
        let handle = cluster.handle();
        for bad in [
            config(|c| c.write_failure_rate = 1.5),
            config(|c| c.read_failure_rate = -0.1),
            config(|c| c.read_failure_rate = f64::NAN),
            config(|c| c.write_ms_min = 11),
        ] {
            assert!(
                matches!(
                    SimCheckpointStore::new(&handle, bad.clone()),
                    Err(Error::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }
}
