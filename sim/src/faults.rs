//! Faults as first-class, seeded, schedulable events.
//!
//! A [`FaultSchedule`] is a list of `(at_ms, Fault)`, either written out
//! ([`FaultSchedule::listed`]) or drawn from [`FaultRates`] with a
//! [`DetRng`] ([`FaultSchedule::draw`]). The run loop of
//! [`crate::cluster::SimCluster`] applies each fault between two steps once
//! simulated time reaches `at_ms`; code inside hosts can request the same
//! faults at any time through a [`crate::cluster::ClusterHandle`].

use std::collections::BTreeMap;
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
    /// A worker host stops whole for `duration_ms`, as a process under
    /// SIGSTOP or a stop-the-world GC pause: none of its code runs (no
    /// heartbeats, no timers, no request or response handling) while its
    /// clock and its network stack go on; on resume every timer that expired
    /// fires at once and it acts on its stale state (a zombie that outlived
    /// its session and its transaction). Ended early by a crash or restart
    /// of the host. See `cluster/freeze.rs` for exactly what is modelled.
    FreezeHost { host: String, duration_ms: u64 },
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
            Fault::FreezeHost { host, duration_ms } => {
                write!(f, "freeze {host} for {duration_ms}ms")
            }
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
    /// Freezes ([`Fault::FreezeHost`]). Drawn last in each slot and only
    /// when positive, so a zero rate draws exactly the schedules drawn
    /// before freezes existed.
    pub host_freeze_per_s: f64,
    pub host_freeze_ms: (u64, u64),
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
            // Off by default: a rate here would change every seed's drawn
            // schedule; turn it on where zombies are wanted.
            host_freeze_per_s: 0.0,
            host_freeze_ms: (1_000, 15_000),
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
            host_freeze_per_s: 0.0,
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
        let mut draw = Draw {
            rng,
            rates,
            targets,
            events: Vec::new(),
            busy_until_ms: BTreeMap::new(),
            slot_start_ms: start_ms,
            slot_end_ms: start_ms,
        };
        while draw.slot_start_ms < end_ms {
            draw.slot_end_ms = (draw.slot_start_ms + DRAW_SLOT_MS).min(end_ms);
            assert!(
                draw.slot_start_ms < draw.slot_end_ms,
                "a slot is never empty"
            );
            // The kinds draw in this order in every slot: the order is part
            // of what a seed means.
            draw.broker_crash();
            draw.host_crash();
            draw.host_pause();
            draw.leader_move();
            draw.network_partition();
            draw.latency_spike();
            draw.transaction_expiry();
            draw.host_freeze();
            draw.slot_start_ms = draw.slot_end_ms;
        }
        Self::listed(draw.events)
    }
}

/// The state of one [`FaultSchedule::draw`]: the slot being drawn, the
/// faults so far, and until when each target is busy with one.
struct Draw<'a> {
    rng: &'a mut DetRng,
    rates: &'a FaultRates,
    targets: &'a FaultTargets,
    events: Vec<(u64, Fault)>,
    /// Per target (a broker host, a worker host, `"latency"`): when its
    /// last fault is repaired.
    busy_until_ms: BTreeMap<String, u64>,
    slot_start_ms: u64,
    slot_end_ms: u64,
}

impl Draw<'_> {
    /// Whether a fault of rate `per_s` falls in this slot.
    fn chance(&mut self, per_s: f64) -> bool {
        self.rng.chance(per_s * DRAW_SLOT_MS as f64 / 1000.0)
    }

    /// A time in this slot.
    fn at_ms(&mut self) -> u64 {
        self.rng.range_u64(self.slot_start_ms, self.slot_end_ms)
    }

    /// A duration in `[low, high)` (`low` if the range is empty).
    fn duration_ms(&mut self, (low, high): (u64, u64)) -> u64 {
        if high > low {
            self.rng.range_u64(low, high)
        } else {
            low
        }
    }

    /// Whether `target` is free at `at_ms`; if so it is busy until
    /// `until_ms` from now on.
    fn claim(&mut self, target: &str, at_ms: u64, until_ms: u64) -> bool {
        assert!(at_ms <= until_ms, "a fault ends after it starts");
        let free = self
            .busy_until_ms
            .get(target)
            .is_none_or(|&busy| busy <= at_ms);
        if free {
            self.busy_until_ms.insert(target.to_string(), until_ms);
        }
        free
    }

    /// A fault at `at_ms` and its repair `duration_ms` later, if `target`
    /// is free meanwhile.
    fn fault_and_repair(
        &mut self,
        target: &str,
        at_ms: u64,
        duration_ms: u64,
        fault: Fault,
        repair: Fault,
    ) {
        if self.claim(target, at_ms, at_ms + duration_ms) {
            self.events.push((at_ms, fault));
            self.events.push((at_ms + duration_ms, repair));
        }
    }

    fn broker_crash(&mut self) {
        let targets = self.targets;
        let Some(broker) = self.target(&targets.brokers, self.rates.broker_crash_per_s) else {
            return;
        };
        let at_ms = self.at_ms();
        let down_ms = self.duration_ms(self.rates.broker_down_ms);
        self.fault_and_repair(
            &format!("broker-{broker}"),
            at_ms,
            down_ms,
            Fault::CrashBroker(broker),
            Fault::RestartBroker(broker),
        );
    }

    /// If there are `targets` and a fault of rate `per_s` falls in this
    /// slot: the target it hits.
    fn target<T: Clone>(&mut self, targets: &[T], per_s: f64) -> Option<T> {
        if targets.is_empty() || !self.chance(per_s) {
            return None;
        }
        Some(self.rng.choose(targets).expect("non-empty").clone())
    }

    /// If a fault of rate `per_s` on a worker host falls in this slot: the
    /// host, when, and for how long (drawn from `duration_ms`).
    fn host_fault(&mut self, per_s: f64, duration_ms: (u64, u64)) -> Option<(String, u64, u64)> {
        let targets = self.targets;
        let host = self.target(&targets.hosts, per_s)?;
        let at_ms = self.at_ms();
        let duration_ms = self.duration_ms(duration_ms);
        Some((host, at_ms, duration_ms))
    }

    fn host_crash(&mut self) {
        let rates = self.rates;
        let Some((host, at_ms, down_ms)) =
            self.host_fault(rates.host_crash_per_s, rates.host_down_ms)
        else {
            return;
        };
        self.fault_and_repair(
            &host,
            at_ms,
            down_ms,
            Fault::CrashHost(host.clone()),
            Fault::RestartHost(host.clone()),
        );
    }

    fn host_pause(&mut self) {
        let rates = self.rates;
        let Some((host, at_ms, pause_ms)) =
            self.host_fault(rates.host_pause_per_s, rates.host_pause_ms)
        else {
            return;
        };
        if self.claim(&host, at_ms, at_ms + pause_ms) {
            self.events.push((
                at_ms,
                Fault::PauseHost {
                    host,
                    duration_ms: pause_ms,
                },
            ));
        }
    }

    /// A worker host frozen for a while (no repair event: the freeze ends
    /// by itself, as a pause does). Draws nothing at a zero rate.
    fn host_freeze(&mut self) {
        let rates = self.rates;
        if rates.host_freeze_per_s <= 0.0 {
            return;
        }
        let Some((host, at_ms, freeze_ms)) =
            self.host_fault(rates.host_freeze_per_s, rates.host_freeze_ms)
        else {
            return;
        };
        if self.claim(&host, at_ms, at_ms + freeze_ms) {
            self.events.push((
                at_ms,
                Fault::FreezeHost {
                    host,
                    duration_ms: freeze_ms,
                },
            ));
        }
    }

    fn leader_move(&mut self) {
        let targets = self.targets;
        let Some(partition) = self.target(&targets.partitions, self.rates.leader_move_per_s) else {
            return;
        };
        let at_ms = self.at_ms();
        self.events.push((
            at_ms,
            Fault::MoveLeader {
                partition,
                to: None,
            },
        ));
    }

    /// Either a broker cut from everyone, or a worker cut from the brokers.
    fn network_partition(&mut self) {
        if !self.chance(self.rates.network_partition_per_s) {
            return;
        }
        let isolate_broker = self.targets.hosts.is_empty() || self.rng.chance(0.5);
        let cut = if isolate_broker {
            self.rng.choose(&self.targets.brokers).map(|&broker| {
                let host = format!("broker-{broker}");
                let others: Vec<String> = self
                    .targets
                    .all_nodes
                    .iter()
                    .filter(|node| **node != host)
                    .cloned()
                    .collect();
                (host, others)
            })
        } else {
            let host = self
                .rng
                .choose(&self.targets.hosts)
                .expect("non-empty")
                .clone();
            let brokers = self
                .targets
                .brokers
                .iter()
                .map(|broker| format!("broker-{broker}"))
                .collect();
            Some((host, brokers))
        };
        let Some((host, others)) = cut else {
            return;
        };
        let at_ms = self.at_ms();
        let cut_ms = self.duration_ms(self.rates.network_partition_ms);
        if others.is_empty() {
            return;
        }
        let fault = Fault::Partition {
            a: vec![host.clone()],
            b: others.clone(),
        };
        let repair = Fault::Heal {
            a: vec![host.clone()],
            b: others,
        };
        self.fault_and_repair(&host, at_ms, cut_ms, fault, repair);
    }

    /// The maximum latency of every link rises, then returns to the base.
    fn latency_spike(&mut self) {
        if !self.chance(self.rates.latency_spike_per_s) {
            return;
        }
        let at_ms = self.at_ms();
        let max_ms = self.duration_ms(self.rates.latency_spike_max_ms);
        let spike_ms = self.duration_ms(self.rates.latency_spike_duration_ms);
        let repair = Fault::SetMaxLatency {
            max_ms: self.targets.base_max_latency_ms,
        };
        self.fault_and_repair(
            "latency",
            at_ms,
            spike_ms,
            Fault::SetMaxLatency { max_ms },
            repair,
        );
    }

    fn transaction_expiry(&mut self) {
        if !self.chance(self.rates.transaction_expiry_per_s) {
            return;
        }
        let at_ms = self.at_ms();
        self.events.push((at_ms, Fault::ExpireTransactions));
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
    fn freezes_are_drawn_for_worker_hosts_without_overlapping_other_host_faults() {
        let schedule = FaultSchedule::draw(
            &mut Seed::new(6).rng(),
            &FaultRates {
                host_crash_per_s: 0.5,
                host_freeze_per_s: 1.0,
                ..FaultRates::none()
            },
            &targets(),
            0,
            60_000,
        );
        let mut busy_until: BTreeMap<&str, u64> = BTreeMap::new();
        let mut freezes = 0;
        for (at_ms, fault) in schedule.events() {
            match fault {
                Fault::FreezeHost { host, duration_ms } => {
                    assert!(targets().hosts.contains(host), "{host}");
                    assert!(
                        busy_until
                            .get(host.as_str())
                            .is_none_or(|&end| end <= *at_ms)
                    );
                    busy_until.insert(host, at_ms + duration_ms);
                    freezes += 1;
                }
                Fault::CrashHost(host) => {
                    assert!(
                        busy_until
                            .get(host.as_str())
                            .is_none_or(|&end| end <= *at_ms)
                    );
                    busy_until.insert(host, u64::MAX);
                }
                Fault::RestartHost(host) => {
                    busy_until.insert(host, *at_ms);
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert!(freezes > 5, "{freezes}");
    }

    #[test]
    fn the_default_rates_draw_no_freezes() {
        let schedule = FaultSchedule::draw(
            &mut Seed::new(3).rng(),
            &FaultRates::default(),
            &targets(),
            0,
            60_000,
        );
        assert!(!schedule.is_empty());
        assert!(
            !schedule
                .events()
                .iter()
                .any(|(_, fault)| matches!(fault, Fault::FreezeHost { .. }))
        );
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
