//! Simulation speed (a measurement, not a check of behaviour): a 3-broker,
//! 12-partition produce/consume workload with 1 ms latency at 10k records
//! per simulated second. Run with
//! `cargo test -p eddyline-sim --release --test perf -- --ignored --nocapture`.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::*;
use eddyline_engine::transport::{Isolation, TopicPartition};
use eddyline_sim::Seed;
use eddyline_sim::cluster::{ClusterConfig, ClusterHandle, SimCluster};
use eddyline_sim::faults::FaultRates;
use eddyline_sim::protocol::{
    FetchPartition, FetchRequest, FetchResponse, ProduceBatch, ProduceRequest, ProduceResponse,
    Request, Response,
};

const PARTITIONS: i32 = 12;

fn leaders(handle: &ClusterHandle) -> BTreeMap<i32, Vec<i32>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        if let Some(leader) = handle.leader_of(&TopicPartition::new("load", p)) {
            by_leader.entry(leader).or_default().push(p);
        }
    }
    by_leader
}

/// Produces `records_per_tick` records every 10 ms until `total` are
/// acknowledged, one request per leader per tick, retrying with the same
/// sequences (idempotent).
async fn producer(
    handle: ClusterHandle,
    total: u64,
    records_per_tick: usize,
    produced: Rc<Cell<u64>>,
) {
    let mut sequences = vec![0i32; PARTITIONS as usize];
    let per_partition = (records_per_tick / PARTITIONS as usize).max(1);
    let payload: Vec<String> = (0..per_partition)
        .map(|i| format!("value-{i:04}-xxxxxxxxxxxxxxxx"))
        .collect();
    let refs: Vec<&str> = payload.iter().map(String::as_str).collect();
    // A fixed 10 ms period (the requests take less than that).
    let mut period = tokio::time::interval(std::time::Duration::from_millis(10));
    while produced.get() < total {
        period.tick().await;
        let mut requests = Vec::new();
        for (leader, partitions) in leaders(&handle) {
            let batches: Vec<ProduceBatch> = partitions
                .iter()
                .map(|&p| {
                    batch(
                        &TopicPartition::new("load", p),
                        77,
                        0,
                        sequences[p as usize],
                        false,
                        &refs,
                    )
                })
                .collect();
            requests.push(tokio::task::spawn_local(async move {
                let response = connect(leader)
                    .call(
                        Request::Produce(ProduceRequest {
                            transactional_id: None,
                            timeout_ms: 2_000,
                            batches,
                        }),
                        3_000,
                    )
                    .await;
                let mut acknowledged = Vec::new();
                if let Ok(Response::Produce(ProduceResponse { results })) = response {
                    for result in results {
                        if result.error.is_none() {
                            acknowledged.push(result.partition);
                        }
                    }
                }
                acknowledged
            }));
        }
        for request in requests {
            for partition in request.await.unwrap() {
                sequences[partition as usize] += per_partition as i32;
                produced.set(produced.get() + per_partition as u64);
            }
        }
    }
}

/// Reads every partition from its leader until `total` records are seen.
async fn consumer(handle: ClusterHandle, total: u64, consumed: Rc<Cell<u64>>) {
    let mut positions = vec![0i64; PARTITIONS as usize];
    while consumed.get() < total {
        let mut fetches = Vec::new();
        for (leader, partitions) in leaders(&handle) {
            let asked: Vec<FetchPartition> = partitions
                .iter()
                .map(|&p| FetchPartition {
                    topic: "load".into(),
                    partition: p,
                    fetch_offset: positions[p as usize],
                    current_leader_epoch: None,
                    max_records: 2_000,
                })
                .collect();
            fetches.push(tokio::task::spawn_local(async move {
                connect(leader)
                    .call(
                        Request::Fetch(FetchRequest {
                            replica_id: None,
                            isolation: Isolation::ReadCommitted,
                            max_wait_ms: 100,
                            partitions: asked,
                        }),
                        3_000,
                    )
                    .await
            }));
        }
        for fetch in fetches {
            if let Ok(Response::Fetch(FetchResponse { partitions, .. })) = fetch.await.unwrap() {
                for result in partitions {
                    if result.error.is_some() {
                        continue;
                    }
                    for b in result.batches {
                        let position = &mut positions[result.partition as usize];
                        if b.next_offset() > *position {
                            let skip = (*position - b.base_offset).max(0) as u64;
                            consumed.set(consumed.get() + b.records.len() as u64 - skip);
                            *position = b.next_offset();
                        }
                    }
                }
            }
        }
        if consumed.get() < total {
            sleep_ms(1).await;
        }
    }
}

fn run(total: u64, with_faults: bool, seed: u64) -> (f64, u64) {
    let config = ClusterConfig {
        latency_min_ms: 1,
        latency_max_ms: 1,
        ..config_from_env()
    };
    let mut cluster = SimCluster::new(Seed::new(seed), config).unwrap();
    if with_faults {
        let partitions = (0..PARTITIONS)
            .map(|p| TopicPartition::new("load", p))
            .collect();
        let faults = cluster.draw_faults(
            &FaultRates {
                broker_crash_per_s: 0.5,
                leader_move_per_s: 2.0,
                ..FaultRates::none()
            },
            partitions,
            200,
            1_000,
        );
        cluster.schedule(faults);
    }
    let handle = cluster.handle();
    let produced = Rc::new(Cell::new(0));
    let consumed = Rc::new(Cell::new(0));
    let (p, c) = (produced.clone(), consumed.clone());
    cluster.client("load", async move {
        wait_ready(&handle).await;
        create_topic(&handle, "load", PARTITIONS).await;
        let producing = tokio::task::spawn_local(producer(handle.clone(), total, 120, p));
        consumer(handle.clone(), total, c).await;
        producing.await.unwrap();
        Ok(())
    });
    let started = std::time::Instant::now();
    cluster.run().unwrap();
    let wall_s = started.elapsed().as_secs_f64();
    assert!(consumed.get() >= total && produced.get() >= total);
    (wall_s, cluster.elapsed_ms())
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn simulation_speed_of_a_12_partition_workload() {
    let (wall_s, simulated_ms) = run(100_000, false, 1);
    println!(
        "100k records at 12k/s simulated, no faults: {simulated_ms} ms simulated in {wall_s:.3} s wall: {:.1}x time compression, {:.0} records/wall s",
        simulated_ms as f64 / 1000.0 / wall_s,
        100_000.0 / wall_s
    );
    let (wall_s, simulated_ms) = run(10_000, true, 2);
    println!("10k records with faults: {simulated_ms} ms simulated in {wall_s:.3} s wall");
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn simulation_speed_of_an_idle_cluster() {
    let mut cluster = SimCluster::new(Seed::new(3), config_from_env()).unwrap();
    let handle = cluster.handle();
    cluster.client("idle", async move {
        wait_ready(&handle).await;
        sleep_ms(10_000).await;
        Ok(())
    });
    let started = std::time::Instant::now();
    cluster.run().unwrap();
    let wall_s = started.elapsed().as_secs_f64();
    println!(
        "idle cluster: {} ms simulated in {wall_s:.3} s wall: {:.1}x, {:.1} us per step",
        cluster.elapsed_ms(),
        cluster.elapsed_ms() as f64 / 1000.0 / wall_s,
        wall_s * 1e6 / cluster.elapsed_ms() as f64
    );
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn turmoil_floor_of_five_idle_hosts() {
    let settings = eddyline_sim::world::WorldSettings {
        seed: Seed::new(1),
        epoch_ms: eddyline_sim::world::DEFAULT_EPOCH_MS,
        tick_ms: 1,
        duration_limit_ms: 60_000,
        latency_min_ms: 1,
        latency_max_ms: 1,
        tcp_capacity: 64,
    };
    let mut sim = eddyline_sim::world::build_sim(&settings).unwrap();
    for i in 0..4 {
        sim.host(format!("idle-{i}").as_str(), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    sim.client("client", async {
        sleep_ms(10_000).await;
        Ok(())
    });
    let started = std::time::Instant::now();
    sim.run().unwrap();
    let wall_s = started.elapsed().as_secs_f64();
    println!(
        "turmoil floor, 5 idle hosts: 10000 steps in {wall_s:.3} s: {:.1} us per step",
        wall_s * 1e6 / 10_000.0
    );
}
