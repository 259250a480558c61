//! Faults applied by the run loop: listed schedules, worker crash and
//! restart, stopped hosts, zombie pauses, network partitions and latency.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::*;
use eddyline_engine::transport::TopicPartition;
use eddyline_sim::Seed;
use eddyline_sim::cluster::{ClusterConfig, SimCluster};
use eddyline_sim::faults::{Fault, FaultSchedule};
use eddyline_sim::protocol::{
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, Request, Response,
};

#[test]
fn a_crashed_worker_restarts_from_its_factory_and_a_stopped_one_starts_later() {
    let mut cluster = cluster(71);
    let starts = Rc::new(Cell::new(0u32));
    let late_starts = Rc::new(Cell::new(0u32));
    {
        let starts = starts.clone();
        cluster.host("worker", move || {
            let starts = starts.clone();
            async move {
                starts.set(starts.get() + 1);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    {
        let late_starts = late_starts.clone();
        cluster.stopped_host("joiner", move || {
            let late_starts = late_starts.clone();
            async move {
                late_starts.set(late_starts.get() + 1);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    cluster.schedule(FaultSchedule::listed(vec![
        (100, Fault::CrashHost("worker".into())),
        (200, Fault::RestartHost("worker".into())),
        (300, Fault::RestartHost("joiner".into())),
    ]));
    let (starts_seen, late_seen) = (starts.clone(), late_starts.clone());
    cluster.client("test", async move {
        sleep_ms(50).await;
        assert_eq!((starts_seen.get(), late_seen.get()), (1, 0));
        sleep_ms(400).await;
        assert_eq!((starts_seen.get(), late_seen.get()), (2, 1));
        Ok(())
    });
    cluster.run().unwrap();
    let excerpt = cluster.trace().excerpt.join("\n");
    assert!(excerpt.contains("fault crash worker"), "{excerpt}");
    assert!(excerpt.contains("fault restart joiner"), "{excerpt}");
}

#[test]
fn a_paused_worker_is_cut_off_and_then_resumes_as_a_zombie() {
    let mut cluster = cluster(72);
    let answers: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
    let handle = cluster.handle();
    {
        let answers = answers.clone();
        let handle = handle.clone();
        cluster.host("zombie", move || {
            let answers = answers.clone();
            let handle = handle.clone();
            async move {
                wait_ready(&handle).await;
                loop {
                    let response = connect(0)
                        .call(
                            Request::Metadata(MetadataRequest {
                                topics: Some(Vec::new()),
                            }),
                            5_000,
                        )
                        .await;
                    if response.is_ok() {
                        answers.borrow_mut().push(handle.now_ms());
                    }
                    sleep_ms(20).await;
                }
            }
        });
    }
    let seen = answers.clone();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        sleep_ms(200).await;
        let paused_at = handle.now_ms();
        handle.pause_host("zombie", 1_000);
        sleep_ms(1_500).await;
        let answers = seen.borrow().clone();
        let before = answers.iter().filter(|&&t| t <= paused_at).count();
        let during = answers
            .iter()
            .filter(|&&t| t > paused_at + 20 && t < paused_at + 1_000)
            .count();
        let after = answers.iter().filter(|&&t| t >= paused_at + 1_000).count();
        assert!(before > 3, "{answers:?}");
        assert_eq!(during, 0, "{answers:?}");
        assert!(after > 3, "{answers:?}");
        Ok(())
    });
    cluster.run().unwrap();
}

#[test]
fn a_partitioned_client_times_out_and_works_again_after_the_heal() {
    let mut cluster = cluster(73);
    let handle = cluster.handle();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        create_topic(&handle, "t", 1).await;
        let tp = TopicPartition::new("t", 0);
        let leader = handle.leader_of(&tp).unwrap();
        let leader_host = format!("broker-{leader}");
        handle.partition(&["test"], &[leader_host.as_str()]);
        sleep_ms(2).await;
        let request = Request::Produce(ProduceRequest {
            transactional_id: None,
            timeout_ms: 1_000,
            batches: vec![batch(&tp, -1, -1, -1, false, &["a"])],
        });
        assert!(connect(leader).call(request.clone(), 500).await.is_err());
        handle.heal(&["test"], &[leader_host.as_str()]);
        sleep_ms(2).await;
        match connect(leader).call(request, 5_000).await.unwrap() {
            Response::Produce(ProduceResponse { results }) => assert_eq!(results[0].error, None),
            other => panic!("unexpected {other:?}"),
        }
        Ok(())
    });
    cluster.run().unwrap();
}

/// A connection that carried a request across a partition shorter than
/// TCP's give-up time resumes at the heal (TCP retransmits what the
/// partition lost): the answer comes on the same connection.
#[test]
fn a_request_sent_during_a_short_partition_is_answered_after_the_heal() {
    let mut cluster = cluster(77);
    let handle = cluster.handle();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        create_topic(&handle, "t", 1).await;
        let tp = TopicPartition::new("t", 0);
        let leader = handle.leader_of(&tp).unwrap();
        let leader_host = format!("broker-{leader}");
        let mut connection = connect(leader);
        let metadata = Request::Metadata(MetadataRequest { topics: None });
        assert!(matches!(
            call(&mut connection, metadata.clone()).await,
            Response::Metadata(MetadataResponse { .. })
        ));
        handle.partition(&["test"], &[leader_host.as_str()]);
        sleep_ms(2).await;
        let cut_at = handle.now_ms();
        let heal = handle.clone();
        let healer = tokio::task::spawn_local(async move {
            sleep_ms(300).await;
            heal.heal(&["test"], &[leader_host.as_str()]);
        });
        let request = Request::Produce(ProduceRequest {
            transactional_id: None,
            timeout_ms: 2_000,
            batches: vec![batch(&tp, -1, -1, -1, false, &["a"])],
        });
        // One call on the connection opened before the cut: no reconnect.
        match connection.call(request, 5_000).await.unwrap() {
            Response::Produce(ProduceResponse { results }) => assert_eq!(results[0].error, None),
            other => panic!("unexpected {other:?}"),
        }
        let waited_ms = handle.now_ms() - cut_at;
        assert!(
            (300..400).contains(&waited_ms),
            "answered after {waited_ms} ms"
        );
        healer.await.unwrap();
        Ok(())
    });
    cluster.run().unwrap();
}

/// Past `tcp_give_up_ms` a partition drops what crosses it: a stream that
/// carried data then stays stalled after the heal (its owner notices by a
/// timeout), while new connections work.
#[test]
fn a_partition_longer_than_the_tcp_give_up_time_stalls_the_streams_that_crossed_it() {
    let config = ClusterConfig {
        tcp_give_up_ms: 200,
        ..config_from_env()
    };
    let mut cluster = SimCluster::new(Seed::new(78), config).unwrap();
    let handle = cluster.handle();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        let mut connection = connect(1);
        let metadata = Request::Metadata(MetadataRequest { topics: None });
        assert!(matches!(
            call(&mut connection, metadata.clone()).await,
            Response::Metadata(MetadataResponse { .. })
        ));
        handle.partition(&["test"], &["broker-1"]);
        sleep_ms(2).await;
        let heal = handle.clone();
        let healer = tokio::task::spawn_local(async move {
            sleep_ms(500).await;
            heal.heal(&["test"], &["broker-1"]);
        });
        // Sent before the give-up, lost at the give-up: never answered.
        assert!(connection.call(metadata.clone(), 2_000).await.is_err());
        healer.await.unwrap();
        assert!(matches!(
            call(&mut connect(1), metadata).await,
            Response::Metadata(MetadataResponse { .. })
        ));
        Ok(())
    });
    cluster.run().unwrap();
    assert!(
        cluster
            .trace()
            .excerpt
            .iter()
            .any(|line| line.contains("fault tcp give-up")),
        "{:?}",
        cluster.trace().excerpt
    );
}

async fn average_round_trip_ms(
    handle: &eddyline_sim::cluster::ClusterHandle,
    connection: &mut eddyline_sim::rpc::Connection,
) -> u64 {
    let started = handle.now_ms();
    for _ in 0..30 {
        call(
            connection,
            Request::Metadata(MetadataRequest {
                topics: Some(Vec::new()),
            }),
        )
        .await;
    }
    (handle.now_ms() - started) / 30
}

#[test]
fn raising_the_maximum_latency_slows_round_trips() {
    let mut cluster = cluster(74);
    let handle = cluster.handle();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        let mut connection = connect(1);
        let fast = average_round_trip_ms(&handle, &mut connection).await;
        handle.set_max_latency(400);
        sleep_ms(1).await;
        let slow = average_round_trip_ms(&handle, &mut connection).await;
        assert!(fast <= 10, "{fast}");
        assert!(slow >= 3 * fast.max(1), "fast {fast} slow {slow}");
        Ok(())
    });
    cluster.run().unwrap();
}

#[test]
fn a_failed_run_reports_its_seed_and_the_end_of_the_trace() {
    let mut cluster = cluster(75);
    cluster.schedule(FaultSchedule::listed(vec![(300, Fault::CrashBroker(1))]));
    let handle = cluster.handle();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        sleep_ms(500).await;
        Err("deliberate failure".into())
    });
    let error = cluster.run().unwrap_err();
    let text = error.to_string();
    assert!(text.contains("seed 75"), "{text}");
    assert!(text.contains("EDDY_SEED=75"), "{text}");
    assert!(text.contains("deliberate failure"), "{text}");
    assert!(!error.trace.excerpt.is_empty());
    // The crash was applied before the failure.
    assert!(
        error
            .trace
            .excerpt
            .iter()
            .any(|line| line.contains("fault crash broker-1"))
    );
}

#[test]
fn a_slow_link_slows_only_the_hosts_it_joins() {
    let mut cluster = cluster(76);
    let handle = cluster.handle();
    cluster.client("test", async move {
        wait_ready(&handle).await;
        handle.set_latency(&["test"], &["broker-1"], 50, 60);
        sleep_ms(1).await;
        let slow = average_round_trip_ms(&handle, &mut connect(1)).await;
        let fast = average_round_trip_ms(&handle, &mut connect(2)).await;
        assert!(slow >= 100, "slow {slow}");
        assert!(fast <= 10, "fast {fast}");
        // Every link: all round trips slow down.
        handle.set_latency(&[], &[], 20, 20);
        sleep_ms(1).await;
        let everywhere = average_round_trip_ms(&handle, &mut connect(2)).await;
        assert!(everywhere >= 40, "{everywhere}");
        Ok(())
    });
    cluster.run().unwrap();
}

/// A long partition of one broker, then a heal: the broker's attempts to
/// reach the others are spaced by Kafka's reconnect backoff, so neither the
/// connects pending at the heal (a partition just under TCP's give-up,
/// whose segments are all delivered then) nor the attempts of a partition
/// far beyond it exhaust the simulator's sockets, and the cluster is whole
/// again after the heal.
#[test]
fn a_broker_partitioned_for_minutes_rejoins_after_the_heal() {
    for partition_secs in [126_u64, 600] {
        let config = ClusterConfig {
            duration_limit_ms: 1_000_000,
            ..config_from_env()
        };
        let mut cluster = SimCluster::new(Seed::new(79), config).unwrap();
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            create_topic(&handle, "t", 3).await;
            let others = ["controller", "broker-0", "broker-2", "test"];
            handle.partition(&["broker-1"], &others);
            sleep_ms(partition_secs * 1000).await;
            assert!(!handle.is_ready(), "broker-1 is fenced while partitioned");
            handle.heal(&["broker-1"], &others);
            sleep_ms(5_000).await;
            assert!(
                handle.is_ready(),
                "not whole 5 s after a {partition_secs} s partition healed"
            );
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// A worker that records the simulated time every `period_ms`, from its
/// main future and from a task it spawned.
fn add_ticking_worker(
    cluster: &mut SimCluster,
    name: &str,
    ticks: Rc<RefCell<Vec<(&'static str, u64)>>>,
    starts: Rc<Cell<u32>>,
) {
    let handle = cluster.handle();
    cluster.host(name, move || {
        let (ticks, handle) = (ticks.clone(), handle.clone());
        starts.set(starts.get() + 1);
        async move {
            let (spawned_ticks, spawned_handle) = (ticks.clone(), handle.clone());
            tokio::task::spawn_local(async move {
                loop {
                    spawned_ticks
                        .borrow_mut()
                        .push(("spawned", spawned_handle.now_ms()));
                    sleep_ms(7).await;
                }
            });
            loop {
                ticks.borrow_mut().push(("main", handle.now_ms()));
                sleep_ms(20).await;
            }
        }
    });
}

#[test]
fn a_frozen_worker_runs_nothing_and_its_expired_timers_fire_at_once_on_resume() {
    let mut cluster = cluster(74);
    let ticks = Rc::new(RefCell::new(Vec::new()));
    add_ticking_worker(&mut cluster, "worker", ticks.clone(), Rc::new(Cell::new(0)));
    let handle = cluster.handle();
    let seen = ticks.clone();
    cluster.client("test", async move {
        sleep_ms(200).await;
        let frozen_at = handle.now_ms();
        handle.freeze_host("worker", 1_000);
        sleep_ms(1_500).await;
        let ticks = seen.borrow().clone();
        for task in ["main", "spawned"] {
            let times: Vec<u64> = ticks
                .iter()
                .filter(|(name, _)| *name == task)
                .map(|(_, at)| *at)
                .collect();
            let before = times.iter().filter(|&&t| t <= frozen_at).count();
            // The freeze lands at the next step, and ends at a step.
            let tick_ms = ClusterConfig::default().tick_ms;
            let during: Vec<&u64> = times
                .iter()
                .filter(|&&t| t > frozen_at + tick_ms && t < frozen_at + 1_000)
                .collect();
            let first_after = times.iter().find(|&&t| t >= frozen_at + 1_000).copied();
            assert!(before > 5, "{task}: {times:?}");
            assert!(during.is_empty(), "{task} ran while frozen: {during:?}");
            // Its timer expired during the freeze: it fires at the resume,
            // not a period later.
            let first_after = first_after.expect("it runs again");
            assert!(
                first_after <= frozen_at + 1_000 + 2 * tick_ms,
                "{task} resumed at {first_after} (frozen at {frozen_at})"
            );
            assert!(
                times.iter().filter(|&&t| t > frozen_at + 1_000).count() > 5,
                "{task}: {times:?}"
            );
        }
        Ok(())
    });
    cluster.run().unwrap();
    let excerpt = cluster.trace().excerpt.join("\n");
    assert!(
        excerpt.contains("fault freeze worker for 1000ms"),
        "{excerpt}"
    );
    assert!(excerpt.contains("fault thaw worker"), "{excerpt}");
}

#[test]
fn a_crash_ends_a_freeze_and_the_restarted_worker_runs_at_once() {
    let mut cluster = cluster(75);
    let ticks = Rc::new(RefCell::new(Vec::new()));
    let starts = Rc::new(Cell::new(0));
    add_ticking_worker(&mut cluster, "worker", ticks.clone(), starts.clone());
    cluster.schedule(FaultSchedule::listed(vec![
        (
            100,
            Fault::FreezeHost {
                host: "worker".into(),
                duration_ms: 60_000,
            },
        ),
        (300, Fault::CrashHost("worker".into())),
        (400, Fault::RestartHost("worker".into())),
        // Freezing a host that is not a worker is skipped.
        (
            500,
            Fault::FreezeHost {
                host: "broker-0".into(),
                duration_ms: 1_000,
            },
        ),
    ]));
    let (seen, seen_starts) = (ticks.clone(), starts.clone());
    cluster.client("test", async move {
        sleep_ms(1_000).await;
        assert_eq!(seen_starts.get(), 2);
        let ticks = seen.borrow().clone();
        let main: Vec<u64> = ticks
            .iter()
            .filter(|(name, _)| *name == "main")
            .map(|(_, at)| *at)
            .collect();
        assert!(
            !main.iter().any(|&t| t > 101 && t < 400),
            "ran while frozen or down: {main:?}"
        );
        assert!(main.iter().filter(|&&t| t >= 400).count() > 20, "{main:?}");
        Ok(())
    });
    cluster.run().unwrap();
    let excerpt = cluster.trace().excerpt.join("\n");
    assert!(
        excerpt.contains("fault thaw worker (crashed or restarted)"),
        "{excerpt}"
    );
    assert!(
        excerpt.contains("fault-skipped freeze broker-0 for 1000ms"),
        "{excerpt}"
    );
}

#[test]
fn a_panic_in_a_task_a_worker_spawned_fails_the_run() {
    // A worker's software runs on a LocalSet of its own (so that it can be
    // frozen); a panic there must still stop the run, as on the host's own.
    let result = std::panic::catch_unwind(|| {
        let mut cluster = cluster(77);
        cluster.host("worker", || async {
            tokio::task::spawn_local(async {
                sleep_ms(50).await;
                panic!("deliberate panic in a spawned task");
            });
            std::future::pending::<()>().await;
            Ok(())
        });
        cluster.client("test", async {
            sleep_ms(1_000).await;
            Ok(())
        });
        cluster.run()
    });
    assert!(result.is_err(), "the run went on: {result:?}");
}

#[test]
fn a_worker_whose_software_returns_an_error_fails_the_run() {
    let mut cluster = cluster(78);
    cluster.host("worker", || async {
        sleep_ms(50).await;
        Err("deliberate worker failure".into())
    });
    cluster.client("test", async {
        sleep_ms(1_000).await;
        Ok(())
    });
    let error = cluster.run().unwrap_err();
    assert!(
        error.to_string().contains("deliberate worker failure"),
        "{error}"
    );
}
