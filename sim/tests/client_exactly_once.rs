//! The engine's exactly-once pattern through the simulated client:
//! consume, produce in a transaction, send the offsets with the group
//! generation, commit — with a second worker joining mid-stream (a
//! rebalance), and with broker faults. The output must hold every input
//! record exactly once.

mod client_support;

use std::collections::BTreeMap;
use std::time::Duration;

use client_support::*;
use eddyline_engine::transport::{
    Consumer, ConsumerEvent, ErrorKind, OffsetAndMetadata, Producer, ProducerRecord,
    TopicPartition, Transport, TransportResult,
};
use eddyline_sim::SimTransport;
use eddyline_sim::cluster::ClusterHandle;

const INPUT_PARTITIONS: i32 = 4;

struct Worker<C: Consumer, P: Producer> {
    consumer: C,
    producer: P,
    /// Next offset to commit per owned partition.
    positions: BTreeMap<TopicPartition, i64>,
    in_transaction: bool,
    uncommitted: usize,
}

impl<C: Consumer, P: Producer> Worker<C, P> {
    async fn begin_if_needed(&mut self) -> TransportResult<()> {
        if !self.in_transaction {
            self.producer.begin_transaction().await?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Commits the open transaction with the positions; on an abortable
    /// failure aborts and rewinds to the committed offsets.
    async fn checkpoint(&mut self) -> TransportResult<()> {
        if !self.in_transaction {
            return Ok(());
        }
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = self
            .positions
            .iter()
            .map(|(tp, offset)| {
                (
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: *offset,
                        metadata: "worker".into(),
                    },
                )
            })
            .collect();
        let group = self.consumer.group_metadata().expect("a member");
        let result = match self
            .producer
            .send_offsets_to_transaction(&offsets, &group)
            .await
        {
            Ok(()) => self.producer.commit_transaction().await,
            Err(error) => Err(error),
        };
        self.in_transaction = false;
        self.uncommitted = 0;
        match result {
            Ok(()) => Ok(()),
            // What the engine does: anything but fencing or a fatal error
            // aborts the transaction and goes back to the committed offsets.
            Err(error) if !matches!(error.kind, ErrorKind::Fenced | ErrorKind::Fatal) => {
                self.producer.abort_transaction().await?;
                self.rewind().await
            }
            Err(error) => Err(error),
        }
    }

    async fn abort(&mut self) -> TransportResult<()> {
        if self.in_transaction {
            self.producer.abort_transaction().await?;
            self.in_transaction = false;
            self.uncommitted = 0;
        }
        Ok(())
    }

    /// Seeks every owned partition back to its committed offset (after an
    /// abort, what was read since is not committed anywhere).
    async fn rewind(&mut self) -> TransportResult<()> {
        let owned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        let committed = self.consumer.committed(&owned).await?;
        for (tp, offset) in owned.iter().zip(committed) {
            let offset = offset.map_or(0, |o| o.offset);
            self.consumer.seek(tp, offset).await?;
            self.positions.insert(tp.clone(), offset);
        }
        Ok(())
    }
}

async fn run_worker(
    transport: SimTransport,
    name: &'static str,
    run_ms: u64,
) -> TransportResult<()> {
    let mut consumer = transport
        .consumer(&consumer_config(name, Some("eos-group")))
        .await?;
    consumer.subscribe(&["in".to_string()]).await?;
    let mut producer = transport
        .producer(&producer_config(name, Some(&format!("txn-{name}"))))
        .await?;
    producer.init_transactions().await?;
    let mut worker = Worker {
        consumer,
        producer,
        positions: BTreeMap::new(),
        in_transaction: false,
        uncommitted: 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(run_ms);
    while tokio::time::Instant::now() < deadline {
        let events = worker.consumer.poll(50, Duration::from_millis(100)).await?;
        for event in events {
            match event {
                ConsumerEvent::Assigned(partitions) => {
                    worker.positions.clear();
                    for tp in partitions {
                        worker.positions.insert(tp, -1);
                    }
                    // Start from the committed offsets (or 0).
                    worker.rewind().await?;
                }
                ConsumerEvent::Revoked(_) => {
                    worker.checkpoint().await?;
                    worker.positions.clear();
                }
                ConsumerEvent::Lost(_) => {
                    worker.abort().await?;
                    worker.positions.clear();
                }
                ConsumerEvent::Message(message) => {
                    worker.begin_if_needed().await?;
                    worker.producer.send(ProducerRecord {
                        topic: "out".into(),
                        partition: None,
                        key: message.key.clone(),
                        value: message.value.clone(),
                        timestamp_ms: Some(message.timestamp_ms),
                        headers: vec![],
                    })?;
                    worker
                        .positions
                        .insert(message.topic_partition(), message.offset + 1);
                    worker.uncommitted += 1;
                }
            }
        }
        if worker.uncommitted >= 25 {
            worker.checkpoint().await?;
        }
    }
    worker.checkpoint().await?;
    worker.consumer.close().await
}

fn pipeline(seed: u64, records: usize, faults: impl Fn(&ClusterHandle, u64) + 'static) {
    let mut cluster = cluster(seed);
    let handle = cluster.handle();
    let setup = handle.clone();
    cluster.client("feeder", async move {
        wait_ready(&setup).await;
        let transport = transport(&setup);
        create_topic(&transport, "in", INPUT_PARTITIONS).await;
        create_topic(&transport, "out", 3).await;
        let mut producer = transport.producer(&producer_config("feeder", None)).await?;
        for i in 0..records {
            producer.send(keyed("in", &format!("k{i}"), &i.to_string()))?;
            if i % 10 == 9 {
                sleep_ms(50).await;
            }
        }
        producer.flush().await?;
        Ok(())
    });
    for (name, start_ms) in [("w1", 200_u64), ("w2", 1_500)] {
        let worker_handle = handle.clone();
        cluster.client(name, async move {
            wait_ready(&worker_handle).await;
            sleep_ms(start_ms).await;
            run_worker(transport(&worker_handle), name, 12_000 - start_ms)
                .await
                .map_err(|e| format!("{name}: {e}").into())
        });
    }
    let fault_handle = handle.clone();
    cluster.client("chaos", async move {
        wait_ready(&fault_handle).await;
        for at_ms in [700_u64, 2_500, 4_000] {
            sleep_ms(at_ms.saturating_sub(fault_handle.now_ms())).await;
            faults(&fault_handle, at_ms);
        }
        Ok(())
    });
    cluster.client("checker", async move {
        wait_ready(&handle).await;
        sleep_ms(13_000).await;
        let transport = transport(&handle);
        let mut reader = transport
            .consumer(&consumer_config("checker", None))
            .await?;
        reader
            .assign(&(0..3).map(|p| tp("out", p)).collect::<Vec<_>>())
            .await?;
        let mut values: Vec<usize> = Vec::new();
        for _ in 0..40 {
            values.extend(
                read_for(&mut reader, 500)
                    .await
                    .iter()
                    .map(|m| text(m).parse::<usize>().unwrap()),
            );
            if values.len() >= records {
                break;
            }
        }
        values.extend(
            read_for(&mut reader, 500)
                .await
                .iter()
                .map(|m| text(m).parse::<usize>().unwrap()),
        );
        values.sort_unstable();
        let mut duplicates = values.clone();
        duplicates.dedup();
        let missing: Vec<usize> = (0..records)
            .filter(|v| values.binary_search(v).is_err())
            .collect();
        assert!(
            missing.is_empty() && duplicates.len() == values.len(),
            "seed {seed}: missing {missing:?}, {} duplicates",
            values.len() - duplicates.len()
        );
        Ok(())
    });
    cluster.run().unwrap();
}

#[test]
fn a_rebalance_mid_stream_keeps_the_output_exactly_once() {
    pipeline(71, 200, |_, _| {});
}

#[test]
fn broker_crashes_mid_stream_keep_the_output_exactly_once() {
    pipeline(72, 200, |handle, at_ms| match at_ms {
        700 => handle.crash_broker(0),
        2_500 => handle.restart_broker(0),
        _ => handle.move_leader(&tp("in", 1), None),
    });
}

#[test]
fn a_partitioned_worker_keeps_the_output_exactly_once() {
    pipeline(73, 200, |handle, at_ms| match at_ms {
        2_500 => handle.partition(&["w1"], &["broker-0", "broker-1", "broker-2"]),
        4_000 => handle.heal(&["w1"], &["broker-0", "broker-1", "broker-2"]),
        _ => {}
    });
}

/// Mixed faults over more seeds: `EDDY_CLIENT_SEEDS=N` (default 2).
#[test]
fn faults_over_several_seeds_keep_the_output_exactly_once() {
    let seeds: u64 = std::env::var("EDDY_CLIENT_SEEDS")
        .ok()
        .map(|text| text.parse().expect("EDDY_CLIENT_SEEDS must be a number"))
        .unwrap_or(2);
    for seed in 700..700 + seeds {
        eprintln!("pipeline seed {seed}");
        let victim = (seed % 3) as i32;
        pipeline(seed, 150, move |handle, at_ms| match (seed % 4, at_ms) {
            (0, 700) => handle.crash_broker(victim),
            (0, 2_500) => handle.restart_broker(victim),
            (1, 700) => handle.partition(&["w1"], &[&format!("broker-{victim}")]),
            (1, 2_500) => handle.heal(&["w1"], &[&format!("broker-{victim}")]),
            (2, _) => handle.move_leader(&tp("in", victim), None),
            (3, 2_500) => handle.crash_broker(victim),
            (3, 4_000) => handle.restart_broker(victim),
            _ => {}
        });
    }
}
