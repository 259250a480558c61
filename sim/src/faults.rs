//! Faults as first-class, seeded, schedulable events.
//!
//! A [`FaultSchedule`] is a list of `(at_ms, Fault)`, either written out
//! ([`FaultSchedule::listed`]) or drawn from [`FaultRates`] with a
//! [`DetRng`] ([`FaultSchedule::draw`]). The run loop of
//! [`crate::cluster::SimCluster`] applies each fault between two steps once
//! simulated time reaches `at_ms`; code inside hosts can request the same
//! faults at any time through a [`crate::cluster::ClusterHandle`].

use std::fmt;

use eddyline_engine::transport::TopicPartition;

use crate::protocol::BrokerId;
use crate::seed::DetRng;

/// One fault (or its repair).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The broker host crashes (its logs survive; its memory does not).
    CrashBroker(BrokerId),
    /// The broker host starts again (restarts it if it is running).
    RestartBroker(BrokerId),
    /// A worker host crashes (registered with `SimCluster::host`).
    CrashHost(String),
    /// A worker host starts again (restarts it if it is running): a
    /// consumer joining, or a crashed worker coming back.
    RestartHost(String),
    /// A node (usually a worker; a broker works too: a long GC pause)
    /// becomes a zombie for `duration_ms`: every message to and from it is
    /// held (its code keeps running, its clock keeps moving), then
    /// everything held is delivered at once.
    PauseHost { host: String, duration_ms: u64 },
    /// A controlled leader move (as a reassignment or preferred-leader
    /// election does); `to: None` picks the next live in-sync replica.
    MoveLeader {
        partition: TopicPartition,
        to: Option<BrokerId>,
    },
    /// No message passes between a host of `a` and a host of `b`. As TCP
    /// retransmits, what is sent meanwhile is held and delivered at the
    /// heal, unless the partition lasts longer than the cluster's
    /// `tcp_give_up_ms` (then it is dropped from that time on).
    Partition { a: Vec<String>, b: Vec<String> },
    /// Undoes [`Fault::Partition`] between these hosts.
    Heal { a: Vec<String>, b: Vec<String> },
    /// Undoes every network partition.
    HealAll,
    /// Sets the maximum message latency of every link (latency and jitter:
    /// turmoil draws each message's latency between the minimum and this).
    SetMaxLatency { max_ms: u64 },
    /// Sets both latency bounds of every link between the given hosts
    /// (all links between known nodes if both lists are empty).
    SetLatency {
        a: Vec<String>,
        b: Vec<String>,
        min_ms: u64,
        max_ms: u64,
    },
    /// Every open transaction is aborted by its coordinator now, as if its
    /// transaction timeout had expired (the producer's epoch is bumped).
    ExpireTransactions,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashBroker(id) => write!(f, "crash broker-{id}"),
            Fault::RestartBroker(id) => write!(f, "restart broker-{id}"),
            Fault::CrashHost(host) => write!(f, "crash {host}"),
            Fault::RestartHost(host) => write!(f, "restart {host}"),
            Fault::PauseHost { host, duration_ms } => write!(f, "pause {host} for {duration_ms}ms"),
            Fault::MoveLeader { partition, to } => match to {
                Some(to) => write!(f, "move leader of {partition} to broker-{to}"),
                None => write!(f, "move leader of {partition}"),
            },
            Fault::Partition { a, b } => write!(f, "partition {} | {}", a.join(","), b.join(",")),
            Fault::Heal { a, b } => write!(f, "heal {} | {}", a.join(","), b.join(",")),
            Fault::HealAll => write!(f, "heal all"),
            Fault::SetMaxLatency { max_ms } => write!(f, "max latency {max_ms}ms"),
            Fault::SetLatency {
                a,
                b,
                min_ms,
                max_ms,
            } => write!(
                f,
                "latency {min_ms}..{max_ms}ms {} | {}",
                a.join(","),
                b.join(",")
            ),
            Fault::ExpireTransactions => write!(f, "expire transactions"),
        }
    }
}

/// Faults in the order they are applied: by time, then as listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSchedule {
    events: Vec<(u64, Fault)>,
}

/// How often each kind of fault happens when drawn, and how long it lasts.
/// Rates are mean events per simulated second; durations are uniform in
/// `[min, max)` ms.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRates {
    pub broker_crash_per_s: f64,
    pub broker_down_ms: (u64, u64),
    pub host_crash_per_s: f64,
    pub host_down_ms: (u64, u64),
    pub host_pause_per_s: f64,
    pub host_pause_ms: (u64, u64),
    pub leader_move_per_s: f64,
    pub network_partition_per_s: f64,
    pub network_partition_ms: (u64, u64),
    pub latency_spike_per_s: f64,
    pub latency_spike_max_ms: (u64, u64),
    pub latency_spike_duration_ms: (u64, u64),
    pub transaction_expiry_per_s: f64,
}

impl Default for FaultRates {
    /// A moderate mix: roughly one fault of some kind every two seconds.
    fn default() -> Self {
        Self {
            broker_crash_per_s: 0.1,
            broker_down_ms: (200, 2_000),
            host_crash_per_s: 0.1,
            host_down_ms: (100, 1_500),
            host_pause_per_s: 0.05,
            host_pause_ms: (100, 3_000),
            leader_move_per_s: 0.1,
            network_partition_per_s: 0.05,
            network_partition_ms: (200, 2_000),
            latency_spike_per_s: 0.05,
            latency_spike_max_ms: (20, 200),
            latency_spike_duration_ms: (200, 2_000),
            transaction_expiry_per_s: 0.02,
        }
    }
}

impl FaultRates {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            broker_crash_per_s: 0.0,
            host_crash_per_s: 0.0,
            host_pause_per_s: 0.0,
            leader_move_per_s: 0.0,
            network_partition_per_s: 0.0,
            latency_spike_per_s: 0.0,
            transaction_expiry_per_s: 0.0,
            ..Self::default()
        }
    }
}

/// What a drawn schedule may target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultTargets {
    pub brokers: Vec<BrokerId>,
    /// Restartable worker hosts (crash, restart, pause, partition).
    pub hosts: Vec<String>,
    /// Partitions whose leaders may move.
    pub partitions: Vec<TopicPartition>,
    /// Every node a partitioned broker is cut from (controller, brokers,
    /// worker hosts and clients).
    pub all_nodes: Vec<String>,
    /// The latency to return to after a spike.
    pub base_max_latency_ms: u64,
}

/// The granularity at which drawn faults are placed: each slot of this
/// many ms holds a fault of a kind with probability `rate * slot / 1000`.
const DRAW_SLOT_MS: u64 = 100;

impl FaultSchedule {
    /// A schedule written out; sorted by time, keeping the listed order of
    /// faults at the same time.
    pub fn listed(mut events: Vec<(u64, Fault)>) -> Self {
        events.sort_by_key(|(at_ms, _)| *at_ms);
        Self { events }
    }

    pub fn events(&self) -> &[(u64, Fault)] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Adds the events of another schedule.
    pub fn merge(&mut self, other: FaultSchedule) {
        self.events.extend(other.events);
        self.events.sort_by_key(|(at_ms, _)| *at_ms);
    }

    /// Draws faults over `[start_ms, end_ms)`. Every fault with a repair
    /// (crash/restart, pause, partition/heal, latency spike) gets it within
    /// its duration, and a target is never faulted again before it is
    /// repaired; repairs may fall after `end_ms` (so a run's heal phase
    /// should start at least the longest duration after `end_ms`).
    pub fn draw(
        rng: &mut DetRng,
        rates: &FaultRates,
        targets: &FaultTargets,
        start_ms: u64,
        end_ms: u64,
    ) -> Self {
        let mut events = Vec::new();
        let mut busy_until = std::collections::BTreeMap::<String, u64>::new();
        let mut slot = start_ms;
        let chance =
            |rng: &mut DetRng, per_s: f64| rng.chance(per_s * DRAW_SLOT_MS as f64 / 1000.0);
        let duration = |rng: &mut DetRng, (low, high): (u64, u64)| {
            if high > low {
                rng.range_u64(low, high)
            } else {
                low
            }
        };
        while slot < end_ms {
            let slot_end = (slot + DRAW_SLOT_MS).min(end_ms);
            let at = |rng: &mut DetRng| rng.range_u64(slot, slot_end);
            let mut free = |key: &str, at_ms: u64, until_ms: u64| {
                let free = busy_until.get(key).is_none_or(|&busy| busy <= at_ms);
                if free {
                    busy_until.insert(key.to_string(), until_ms);
                }
                free
            };
            if !targets.brokers.is_empty() && chance(rng, rates.broker_crash_per_s) {
                let broker = *rng.choose(&targets.brokers).expect("non-empty");
                let at_ms = at(rng);
                let down_ms = duration(rng, rates.broker_down_ms);
                if free(&format!("broker-{broker}"), at_ms, at_ms + down_ms) {
                    events.push((at_ms, Fault::CrashBroker(broker)));
                    events.push((at_ms + down_ms, Fault::RestartBroker(broker)));
                }
            }
            if !targets.hosts.is_empty() && chance(rng, rates.host_crash_per_s) {
                let host = rng.choose(&targets.hosts).expect("non-empty").clone();
                let at_ms = at(rng);
                let down_ms = duration(rng, rates.host_down_ms);
                if free(&host, at_ms, at_ms + down_ms) {
                    events.push((at_ms, Fault::CrashHost(host.clone())));
                    events.push((at_ms + down_ms, Fault::RestartHost(host)));
                }
            }
            if !targets.hosts.is_empty() && chance(rng, rates.host_pause_per_s) {
                let host = rng.choose(&targets.hosts).expect("non-empty").clone();
                let at_ms = at(rng);
                let pause_ms = duration(rng, rates.host_pause_ms);
                if free(&host, at_ms, at_ms + pause_ms) {
                    events.push((
                        at_ms,
                        Fault::PauseHost {
                            host,
                            duration_ms: pause_ms,
                        },
                    ));
                }
            }
            if !targets.partitions.is_empty() && chance(rng, rates.leader_move_per_s) {
                let partition = rng.choose(&targets.partitions).expect("non-empty").clone();
                events.push((
                    at(rng),
                    Fault::MoveLeader {
                        partition,
                        to: None,
                    },
                ));
            }
            if chance(rng, rates.network_partition_per_s) {
                // Either a broker cut from everyone, or a worker cut from the
                // brokers.
                let isolate_broker = targets.hosts.is_empty() || rng.chance(0.5);
                let cut = if isolate_broker {
                    rng.choose(&targets.brokers).map(|&broker| {
                        let host = format!("broker-{broker}");
                        let others: Vec<String> = targets
                            .all_nodes
                            .iter()
                            .filter(|node| **node != host)
                            .cloned()
                            .collect();
                        (host, others)
                    })
                } else {
                    let host = rng.choose(&targets.hosts).expect("non-empty").clone();
                    let brokers = targets
                        .brokers
                        .iter()
                        .map(|broker| format!("broker-{broker}"))
                        .collect();
                    Some((host, brokers))
                };
                if let Some((host, others)) = cut {
                    let at_ms = at(rng);
                    let cut_ms = duration(rng, rates.network_partition_ms);
                    if !others.is_empty() && free(&host, at_ms, at_ms + cut_ms) {
                        events.push((
                            at_ms,
                            Fault::Partition {
                                a: vec![host.clone()],
                                b: others.clone(),
                            },
                        ));
                        events.push((
                            at_ms + cut_ms,
                            Fault::Heal {
                                a: vec![host],
                                b: others,
                            },
                        ));
                    }
                }
            }
            if chance(rng, rates.latency_spike_per_s) {
                let at_ms = at(rng);
                let max_ms = duration(rng, rates.latency_spike_max_ms);
                let spike_ms = duration(rng, rates.latency_spike_duration_ms);
                if free("latency", at_ms, at_ms + spike_ms) {
                    events.push((at_ms, Fault::SetMaxLatency { max_ms }));
                    events.push((
                        at_ms + spike_ms,
                        Fault::SetMaxLatency {
                            max_ms: targets.base_max_latency_ms,
                        },
                    ));
                }
            }
            if chance(rng, rates.transaction_expiry_per_s) {
                events.push((at(rng), Fault::ExpireTransactions));
            }
            slot = slot_end;
        }
        Self::listed(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::Seed;

    fn targets() -> FaultTargets {
        FaultTargets {
            brokers: vec![0, 1, 2],
            hosts: vec!["worker-0".into(), "worker-1".into()],
            partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
            all_nodes: vec![
                "controller".into(),
                "broker-0".into(),
                "broker-1".into(),
                "broker-2".into(),
                "worker-0".into(),
                "worker-1".into(),
            ],
            base_max_latency_ms: 5,
        }
    }

    #[test]
    fn a_drawn_schedule_is_a_function_of_the_seed() {
        let draw = |seed| {
            FaultSchedule::draw(
                &mut Seed::new(seed).rng(),
                &FaultRates::default(),
                &targets(),
                0,
                60_000,
            )
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert!(!draw(1).is_empty());
    }

    #[test]
    fn every_crash_is_followed_by_its_restart_and_targets_do_not_overlap() {
        let schedule = FaultSchedule::draw(
            &mut Seed::new(5).rng(),
            &FaultRates {
                broker_crash_per_s: 2.0,
                ..FaultRates::none()
            },
            &targets(),
            0,
            30_000,
        );
        let mut down = std::collections::BTreeSet::new();
        let mut crashes = 0;
        for (_, fault) in schedule.events() {
            match fault {
                Fault::CrashBroker(id) => {
                    assert!(down.insert(*id), "broker-{id} crashed while down");
                    crashes += 1;
                }
                Fault::RestartBroker(id) => assert!(down.remove(id)),
                other => panic!("unexpected {other}"),
            }
        }
        assert!(down.is_empty());
        assert!(crashes > 10, "{crashes}");
    }

    #[test]
    fn a_listed_schedule_is_ordered_by_time_and_keeps_ties_in_order() {
        let schedule = FaultSchedule::listed(vec![
            (50, Fault::HealAll),
            (10, Fault::CrashBroker(1)),
            (50, Fault::ExpireTransactions),
        ]);
        let faults: Vec<&Fault> = schedule.events().iter().map(|(_, f)| f).collect();
        assert_eq!(
            faults,
            [
                &Fault::CrashBroker(1),
                &Fault::HealAll,
                &Fault::ExpireTransactions
            ]
        );
    }
}
