//! The faults of a run: the drawn ones computed up front from the seed as
//! a concrete list (so that a run can report every fault it applied as
//! listed faults, and a listed replay applies the same), the host that
//! applies them, the restarter of workers crashed at protocol steps, and
//! the heal at the end of the safety phase.

use std::rc::Rc;

use eddyline_engine::transport::TopicPartition;
use eddyline_sim::Seed;
use eddyline_sim::cluster::{ClusterHandle, SimCluster};
use eddyline_sim::faults::{FaultRates, FaultSchedule};

use super::shared::{Shared, sleep_ms, wait_ready};
use crate::scenario::{FAULTS_FROM_MS, FaultKind, FaultsSpec, ListedFault};

/// How long drawn faults last, uniform in `[min, max)` ms (listed in a
/// run's settings).
pub(super) const DOWN_MS: (u64, u64) = (200, 2_500);
pub(super) const FREEZE_MS: (u64, u64) = (600, 7_500);
pub(super) const LATENCY_SPIKE_MAX_MS: (u64, u64) = (20, 200);
pub(super) const LEAVE_MS: (u64, u64) = (500, 3_000);
/// Drawn faults start no later than this long before `until_ms`; repairs
/// and the ends of pauses and freezes come by `until_ms - REPAIRED_BEFORE_MS`.
pub(super) const DRAW_ENDS_BEFORE_MS: u64 = 1_000;
pub(super) const REPAIRED_BEFORE_MS: u64 = 100;
/// The slot in which a join/leave is drawn (as the simulator's draw).
const JOIN_LEAVE_SLOT_MS: u64 = 100;
/// The restarter's period, and how long a worker crashed at a step stays
/// down.
const RESTARTER_TICK_MS: u64 = 100;
const STEP_CRASH_DOWN_MS: (u64, u64) = (100, 2_000);

/// The simulator's fault rates for a scenario's `[faults]`.
fn rates(spec: &FaultsSpec) -> FaultRates {
    FaultRates {
        broker_crash_per_s: spec.broker_crash_per_s,
        broker_down_ms: DOWN_MS,
        host_crash_per_s: spec.worker_crash_per_s,
        host_down_ms: DOWN_MS,
        host_pause_per_s: spec.pause_per_s,
        host_pause_ms: DOWN_MS,
        host_freeze_per_s: spec.freeze_per_s,
        host_freeze_ms: FREEZE_MS,
        leader_move_per_s: spec.leader_move_per_s,
        network_partition_per_s: spec.network_partition_per_s,
        network_partition_ms: DOWN_MS,
        latency_spike_per_s: spec.latency_spike_per_s,
        latency_spike_max_ms: LATENCY_SPIKE_MAX_MS,
        latency_spike_duration_ms: DOWN_MS,
        transaction_expiry_per_s: spec.transaction_expiry_per_s,
    }
}

/// Every fault of the run, in the order to apply: the drawn ones (from the
/// cluster's `faults` child seed and the `join-leave` one), then the
/// listed ones, sorted by time (ties keep that order).
pub(super) fn plan(
    cluster: &SimCluster,
    spec: &FaultsSpec,
    hosts: &[String],
    partitions: Vec<TopicPartition>,
) -> Vec<ListedFault> {
    let mut faults = Vec::new();
    let draw_end = spec.until_ms.saturating_sub(DRAW_ENDS_BEFORE_MS);
    if draw_end > FAULTS_FROM_MS {
        let drawn = cluster.draw_faults(&rates(spec), partitions, FAULTS_FROM_MS, draw_end);
        faults.extend(clamped(&drawn, spec.until_ms - REPAIRED_BEFORE_MS));
        let seed = cluster.seed().derive("join-leave");
        faults.extend(join_leave(seed, spec, hosts, draw_end));
    }
    faults.extend(spec.at.iter().cloned());
    faults.sort_by_key(|fault| fault.at_ms);
    faults
}

/// The drawn schedule as listed faults, every repair and every end of a
/// pause or freeze by `by_ms`.
fn clamped(schedule: &FaultSchedule, by_ms: u64) -> Vec<ListedFault> {
    let mut faults = Vec::new();
    for (at_ms, fault) in schedule.events() {
        let mut fault = FaultKind::from_cluster_fault(fault);
        let at_ms = (*at_ms).min(by_ms);
        if let FaultKind::Pause { duration_ms, .. } | FaultKind::Freeze { duration_ms, .. } =
            &mut fault
        {
            *duration_ms = (*duration_ms).min(by_ms - at_ms).max(1);
        }
        faults.push(ListedFault { at_ms, fault });
    }
    faults
}

/// Workers that leave their group and join again later, drawn per slot.
fn join_leave(seed: Seed, spec: &FaultsSpec, hosts: &[String], end_ms: u64) -> Vec<ListedFault> {
    let mut rng = seed.rng();
    let mut faults = Vec::new();
    let mut busy_until = std::collections::BTreeMap::new();
    let chance = spec.consumer_join_leave_per_s * JOIN_LEAVE_SLOT_MS as f64 / 1_000.0;
    let mut slot = FAULTS_FROM_MS;
    while slot < end_ms && chance > 0.0 && !hosts.is_empty() {
        if rng.chance(chance) {
            let host = rng.choose(hosts).expect("non-empty").clone();
            let at_ms = rng.range_u64(slot, (slot + JOIN_LEAVE_SLOT_MS).min(end_ms));
            let back_ms = (at_ms + rng.range_u64(LEAVE_MS.0, LEAVE_MS.1))
                .min(spec.until_ms - REPAIRED_BEFORE_MS);
            let free = busy_until.get(&host).is_none_or(|&until| until < at_ms);
            if free {
                busy_until.insert(host.clone(), back_ms);
                let leave = FaultKind::Leave { host: host.clone() };
                faults.push(ListedFault {
                    at_ms,
                    fault: leave,
                });
                let join = FaultKind::Restart { host };
                faults.push(ListedFault {
                    at_ms: back_ms,
                    fault: join,
                });
            }
        }
        slot += JOIN_LEAVE_SLOT_MS;
    }
    faults
}

/// Arms the listed crashes at protocol steps (the worker hosts fire them
/// at their first such step at or after the time).
pub(super) fn arm(shared: &Shared, plan: &[ListedFault]) {
    let mut armed = shared.armed.borrow_mut();
    for listed in plan {
        if let FaultKind::CrashAtStep { host, step } = &listed.fault {
            armed
                .entry(host.clone())
                .or_default()
                .push((listed.at_ms, *step));
        }
    }
}

/// The host that applies the planned faults at their times, once the
/// topics exist (what falls earlier is applied then).
pub(super) fn add_chaos(cluster: &mut SimCluster, plan: Vec<ListedFault>, shared: Rc<Shared>) {
    let handle = cluster.handle();
    cluster.client("chaos", async move {
        wait_ready(&handle).await;
        while !shared.topics_ready.get() {
            sleep_ms(50).await;
        }
        for listed in plan {
            let now_ms = handle.now_ms();
            if listed.at_ms > now_ms {
                sleep_ms(listed.at_ms - now_ms).await;
            }
            apply(&handle, &shared, listed.fault);
        }
        Ok(())
    });
}

/// Applies one fault now and notes it (a crash at a step is the worker's
/// to fire: it was armed up front).
fn apply(handle: &ClusterHandle, shared: &Shared, fault: FaultKind) {
    if let FaultKind::CrashAtStep { .. } = fault {
        return;
    }
    if let Some(cluster_fault) = fault.cluster_fault() {
        handle.apply(cluster_fault);
    }
    shared.record(handle.now_ms(), fault);
}

/// Restarts the workers crashed at a protocol step by the drawn chance,
/// after a drawn while; every one is back before `until_ms`.
pub(super) fn add_restarter(cluster: &mut SimCluster, seed: Seed, shared: Rc<Shared>) {
    let handle = cluster.handle();
    cluster.client("restarter", async move {
        wait_ready(&handle).await;
        let mut rng = seed.derive("restarter").rng();
        let last_ms = shared.until_ms.saturating_sub(2 * RESTARTER_TICK_MS);
        let mut pending: Vec<(u64, String)> = Vec::new();
        while handle.now_ms() < last_ms {
            sleep_ms(RESTARTER_TICK_MS).await;
            let now_ms = handle.now_ms();
            for host in shared.step_crashed.borrow_mut().drain(..) {
                let down_ms = rng.range_u64(STEP_CRASH_DOWN_MS.0, STEP_CRASH_DOWN_MS.1);
                pending.push(((now_ms + down_ms).min(last_ms), host));
            }
            let (due, later): (Vec<_>, Vec<_>) =
                pending.into_iter().partition(|(at_ms, _)| *at_ms <= now_ms);
            pending = later;
            for (_, host) in due {
                apply(&handle, &shared, FaultKind::Restart { host });
            }
        }
        for (_, host) in pending {
            apply(&handle, &shared, FaultKind::Restart { host });
        }
        Ok(())
    });
}

/// The end of the safety phase: every partition healed, latencies back,
/// crashed brokers and workers restarted, workers that left back in.
pub(super) fn heal(handle: &ClusterHandle, shared: &Shared) {
    handle.heal_all();
    let config = handle.config();
    handle.set_max_latency(config.latency_max_ms);
    handle.set_latency(&[], &[], config.latency_min_ms, config.latency_max_ms);
    for broker in 0..config.brokers as i32 {
        if handle.is_broker_down(broker) {
            handle.restart_broker(broker);
        }
    }
    let mut back: Vec<String> = shared.down.borrow().iter().cloned().collect();
    back.extend(shared.leaving.borrow().iter().cloned());
    back.sort();
    back.dedup();
    for host in back {
        handle.restart_host(&host);
    }
    shared.down.borrow_mut().clear();
    shared.leaving.borrow_mut().clear();
    shared.armed.borrow_mut().clear();
}
