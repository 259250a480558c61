//! The fault applier: between two steps the run loop applies the scheduled
//! faults that are due, then the faults requested through handles, then
//! lets long partitions give up and ends due pauses and freezes. Each kind of fault has
//! its own function here; each says whether it applied (a fault on an
//! unknown target, or one that does not fit the cluster's state, is skipped
//! and traced as such).

use std::time::Duration;

use eddyline_engine::transport::TopicPartition;

use super::SimCluster;
use super::links::node_pairs;
use crate::broker;
use crate::faults::Fault;
use crate::protocol::BrokerId;
use crate::trace::{EventKind, Node};

impl SimCluster {
    /// Applies everything due by `now` (see the module doc for the order).
    pub(super) fn apply_due(&mut self, now: u64) {
        while let Some((&(at_ms, index), _)) = self.schedule.first_key_value() {
            if at_ms > now {
                break;
            }
            let fault = self
                .schedule
                .remove(&(at_ms, index))
                .expect("first key exists");
            self.apply_fault(fault, now);
        }
        let requested: Vec<Fault> = std::mem::take(&mut *self.shared.requests.borrow_mut());
        for fault in requested {
            self.apply_fault(fault, now);
        }
        self.links
            .give_up_partitions(&mut self.sim, &self.trace, now);
        self.links
            .end_due_pauses(&mut self.sim, &self.nodes, &self.trace, now);
        self.freezes.end_due(&self.trace, now);
        assert!(
            self.schedule
                .first_key_value()
                .is_none_or(|(&(at_ms, _), _)| at_ms > now),
            "every fault due by {now} ms was applied"
        );
    }

    fn apply_fault(&mut self, fault: Fault, now: u64) {
        let applied = match &fault {
            Fault::CrashBroker(id) => self.crash_broker(*id),
            Fault::RestartBroker(id) => self.restart_broker(*id),
            Fault::CrashHost(host) => self.crash_host(host),
            Fault::RestartHost(host) => self.restart_host(host),
            Fault::PauseHost { host, duration_ms } => self.pause_host(host, now + duration_ms),
            Fault::FreezeHost { host, duration_ms } => {
                self.worker_hosts.contains(host) && self.freezes.start(host, now + duration_ms)
            }
            Fault::MoveLeader { partition, to } => self.move_leader(partition, *to),
            Fault::Partition { a, b } => self.partition(a, b, now),
            Fault::Heal { a, b } => self.heal(a, b),
            Fault::HealAll => {
                self.links.repair_all(&mut self.sim);
                true
            }
            Fault::SetMaxLatency { max_ms } => self.set_max_latency(*max_ms),
            Fault::SetLatency {
                a,
                b,
                min_ms,
                max_ms,
            } => self.set_latency(a, b, *min_ms, *max_ms),
            Fault::ExpireTransactions => self.expire_transactions(),
        };
        self.trace_fault(&fault, applied);
    }

    fn trace_fault(&self, fault: &Fault, applied: bool) {
        let kind = if applied {
            EventKind::Fault
        } else {
            EventKind::FaultSkipped
        };
        self.trace
            .record_name(Node::Cluster, kind, &fault.to_string(), [0; 4]);
    }

    fn known_node(&self, host: &str) -> bool {
        self.nodes.iter().any(|node| node == host)
    }

    fn known_broker(&self, id: BrokerId) -> bool {
        (0..self.config.brokers as BrokerId).contains(&id)
    }

    /// Crashes a running broker (skipped if it is down already).
    fn crash_broker(&mut self, id: BrokerId) -> bool {
        if self.known_broker(id) && self.shared.brokers_down.borrow_mut().insert(id) {
            self.sim.crash(broker::broker_host(id));
            true
        } else {
            false
        }
    }

    /// Starts a broker again (restarts it if it is running).
    fn restart_broker(&mut self, id: BrokerId) -> bool {
        if self.known_broker(id) {
            self.shared.brokers_down.borrow_mut().remove(&id);
            self.sim.bounce(broker::broker_host(id));
            true
        } else {
            false
        }
    }

    fn crash_host(&mut self, host: &str) -> bool {
        if self.worker_hosts.contains(host) && self.sim.is_host_running(host) {
            self.freezes.end_for_restart(&self.trace, host);
            self.sim.crash(host);
            self.note_host_crash(host);
            true
        } else {
            false
        }
    }

    fn restart_host(&mut self, host: &str) -> bool {
        if self.worker_hosts.contains(host) {
            self.freezes.end_for_restart(&self.trace, host);
            let running = self.sim.is_host_running(host);
            self.sim.bounce(host);
            if running {
                self.note_host_crash(host);
            }
            true
        } else {
            false
        }
    }

    /// A running worker host's software ended now (crash or restart).
    fn note_host_crash(&self, host: &str) {
        let now = self.elapsed_ms();
        self.shared
            .host_crashes
            .borrow_mut()
            .entry(host.to_string())
            .or_default()
            .push(now);
    }

    fn pause_host(&mut self, host: &str, until_ms: u64) -> bool {
        if self.known_node(host) {
            self.links
                .start_pause(&mut self.sim, &self.nodes, host, until_ms);
            true
        } else {
            false
        }
    }

    /// Refused by the controller if `to` is not a live ISR member.
    fn move_leader(&mut self, partition: &TopicPartition, to: Option<BrokerId>) -> bool {
        self.shared.controller.move_leader(partition, to).is_ok()
    }

    /// Cuts every host of `a` from every host of `b`; skipped whole if any
    /// host is unknown.
    fn partition(&mut self, a: &[String], b: &[String], now: u64) -> bool {
        let known = a.iter().chain(b).all(|host| self.known_node(host));
        if known {
            for x in a {
                for y in b {
                    self.links.cut(&mut self.sim, x, y, now);
                }
            }
        }
        known
    }

    fn heal(&mut self, a: &[String], b: &[String]) -> bool {
        for x in a {
            for y in b {
                self.links.repair(&mut self.sim, x, y);
            }
        }
        true
    }

    /// Sets the maximum latency of every link (never below the minimum);
    /// links with their own latency (SetLatency) follow too.
    fn set_max_latency(&mut self, max_ms: u64) -> bool {
        let max_ms = max_ms.max(self.config.latency_min_ms);
        self.sim
            .set_max_message_latency(Duration::from_millis(max_ms));
        for (x, y) in node_pairs(&self.nodes, &[], &[]) {
            if self.links.is_tuned(&(x.clone(), y.clone())) {
                self.sim.set_link_max_message_latency(
                    x.as_str(),
                    y.as_str(),
                    Duration::from_millis(max_ms),
                );
            }
        }
        true
    }

    /// Gives every link between `a` and `b` its own latency bounds; skipped
    /// if a host is unknown or the bounds are reversed.
    fn set_latency(&mut self, a: &[String], b: &[String], min_ms: u64, max_ms: u64) -> bool {
        let known = a.iter().chain(b).all(|host| self.known_node(host));
        if !(known && min_ms <= max_ms) {
            return false;
        }
        for (x, y) in node_pairs(&self.nodes, a, b) {
            self.sim
                .set_link_latency(x.as_str(), y.as_str(), Duration::from_millis(min_ms));
            self.sim.set_link_max_message_latency(
                x.as_str(),
                y.as_str(),
                Duration::from_millis(max_ms),
            );
            self.links.tune((x, y));
        }
        true
    }

    fn expire_transactions(&mut self) -> bool {
        for control in &self.broker_controls {
            control.request_transaction_expiry();
        }
        true
    }
}
