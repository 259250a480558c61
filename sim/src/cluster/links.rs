//! The state of the network links the faults touched: which host pairs are
//! partitioned (and since when), which are held by pauses, which gave up as
//! TCP does, which have their own latency bounds, and what turmoil does with
//! each link's messages now ([`LinkMode`]).
//!
//! Every change of a pair's state goes through [`Links::sync_link`], which
//! puts the turmoil link in the one mode the state calls for.

use std::collections::{BTreeMap, BTreeSet};

use crate::trace::{EventKind, Node, Trace};

/// An unordered host pair, stored ordered (`.0 < .1`).
pub(super) type HostPair = (String, String);

/// What turmoil does with a link's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkMode {
    Deliver,
    Hold,
    Drop,
}

/// The link state of one simulation (see the module doc).
#[derive(Debug)]
pub(super) struct Links {
    /// How long a partition holds its messages before it drops them
    /// (`ClusterConfig::tcp_give_up_ms`).
    tcp_give_up_ms: u64,
    /// Partitioned host pairs with the time each was cut.
    partitioned: BTreeMap<HostPair, u64>,
    /// Pairs held by pauses, with how many pauses hold each.
    held: BTreeMap<HostPair, u64>,
    /// Partitioned pairs past `tcp_give_up_ms`: their links drop messages.
    given_up: BTreeSet<HostPair>,
    /// What turmoil does with each link's messages now (absent: delivers).
    modes: BTreeMap<HostPair, LinkMode>,
    /// Pauses to end: (time, host).
    pauses: BTreeSet<(u64, String)>,
    /// Links given their own latency bounds (SetLatency).
    tuned: BTreeSet<HostPair>,
}

/// The ordered form of the pair `x`, `y`.
pub(super) fn pair(x: &str, y: &str) -> HostPair {
    if x <= y {
        (x.to_string(), y.to_string())
    } else {
        (y.to_string(), x.to_string())
    }
}

/// Distinct ordered host pairs between `a` and `b` (every pair of `nodes` if
/// both are empty).
pub(super) fn node_pairs(nodes: &[String], a: &[String], b: &[String]) -> BTreeSet<HostPair> {
    let (a, b) = if a.is_empty() && b.is_empty() {
        (nodes, nodes)
    } else {
        (a, b)
    };
    let mut pairs = BTreeSet::new();
    for x in a {
        for y in b {
            if x != y {
                pairs.insert(pair(x, y));
            }
        }
    }
    pairs
}

impl Links {
    pub(super) fn new(tcp_give_up_ms: u64) -> Self {
        Self {
            tcp_give_up_ms,
            partitioned: BTreeMap::new(),
            held: BTreeMap::new(),
            given_up: BTreeSet::new(),
            modes: BTreeMap::new(),
            pauses: BTreeSet::new(),
            tuned: BTreeSet::new(),
        }
    }

    /// Partitions `x` from `y` from `now` on (nothing if already cut).
    pub(super) fn cut(&mut self, sim: &mut turmoil::Sim<'_>, x: &str, y: &str, now: u64) {
        if x == y {
            return;
        }
        let pair = pair(x, y);
        if !self.partitioned.contains_key(&pair) {
            self.partitioned.insert(pair.clone(), now);
            if self.tcp_give_up_ms == 0 {
                self.given_up.insert(pair.clone());
            }
            self.sync_link(sim, &pair);
        }
    }

    /// Heals the partition between `x` and `y`, if there is one.
    pub(super) fn repair(&mut self, sim: &mut turmoil::Sim<'_>, x: &str, y: &str) {
        if x == y {
            return;
        }
        let pair = pair(x, y);
        if self.partitioned.remove(&pair).is_some() {
            self.given_up.remove(&pair);
            self.sync_link(sim, &pair);
        }
    }

    /// Heals every partition, in pair order.
    pub(super) fn repair_all(&mut self, sim: &mut turmoil::Sim<'_>) {
        let pairs: Vec<HostPair> = self.partitioned.keys().cloned().collect();
        for (x, y) in pairs {
            self.repair(sim, &x, &y);
        }
        assert!(self.partitioned.is_empty(), "every partition healed");
        assert!(self.given_up.is_empty(), "a healed pair has not given up");
    }

    /// Partitions that lasted `tcp_give_up_ms` start dropping messages.
    pub(super) fn give_up_partitions(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        trace: &Trace,
        now: u64,
    ) {
        if self.partitioned.is_empty() {
            return;
        }
        let give_up_ms = self.tcp_give_up_ms;
        let due: Vec<HostPair> = self
            .partitioned
            .iter()
            .filter(|(pair, cut_at)| {
                assert!(**cut_at <= now, "{pair:?} cut in the future");
                now.saturating_sub(**cut_at) >= give_up_ms && !self.given_up.contains(*pair)
            })
            .map(|(pair, _)| pair.clone())
            .collect();
        for pair in due {
            self.given_up.insert(pair.clone());
            self.sync_link(sim, &pair);
            trace.record_name(
                Node::Cluster,
                EventKind::Fault,
                &format!("tcp give-up {} | {}", pair.0, pair.1),
                [0; 4],
            );
        }
    }

    /// Holds every link of `host` until `until_ms` (a zombie).
    pub(super) fn start_pause(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        nodes: &[String],
        host: &str,
        until_ms: u64,
    ) {
        for other in nodes.iter().filter(|node| node.as_str() != host) {
            let pair = pair(host, other);
            *self.held.entry(pair.clone()).or_insert(0) += 1;
            self.sync_link(sim, &pair);
        }
        self.pauses.insert((until_ms, host.to_string()));
    }

    /// Ends the pauses due by `now`, earliest first.
    pub(super) fn end_due_pauses(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        nodes: &[String],
        trace: &Trace,
        now: u64,
    ) {
        while let Some((at_ms, _)) = self.pauses.first() {
            if *at_ms > now {
                break;
            }
            let (_, host) = self.pauses.pop_first().expect("first exists");
            self.end_pause(sim, nodes, trace, &host);
        }
    }

    fn end_pause(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        nodes: &[String],
        trace: &Trace,
        host: &str,
    ) {
        for other in nodes.iter().filter(|node| node.as_str() != host) {
            let pair = pair(host, other);
            // A node added after the pause started was never held.
            let Some(holds) = self.held.get_mut(&pair) else {
                continue;
            };
            assert!(*holds > 0, "{pair:?}: a held pair has a holding pause");
            *holds -= 1;
            if *holds == 0 {
                self.held.remove(&pair);
                // Still partitioned: what was held waits for the heal.
                self.sync_link(sim, &pair);
            }
        }
        trace.record_name(
            Node::Cluster,
            EventKind::Fault,
            &format!("resume {host}"),
            [0; 4],
        );
    }

    /// Remembers that `pair` has latency bounds of its own.
    pub(super) fn tune(&mut self, pair: HostPair) {
        assert!(pair.0 < pair.1, "{pair:?} is an ordered pair of two hosts");
        self.tuned.insert(pair);
    }

    /// Whether `pair` has latency bounds of its own (SetLatency).
    pub(super) fn is_tuned(&self, pair: &HostPair) -> bool {
        self.tuned.contains(pair)
    }

    /// Puts a link in the mode its partition and pauses call for: held
    /// while partitioned or paused (TCP retransmits what a partition loses;
    /// a paused host's messages wait), dropping once a partition outlasted
    /// `tcp_give_up_ms`, delivering otherwise. Held messages are delivered
    /// when the link is released.
    fn sync_link(&mut self, sim: &mut turmoil::Sim<'_>, pair: &HostPair) {
        assert!(pair.0 < pair.1, "{pair:?} is an ordered pair of two hosts");
        assert!(
            !self.given_up.contains(pair) || self.partitioned.contains_key(pair),
            "{pair:?} gave up without being partitioned"
        );
        let wanted = if self.given_up.contains(pair) {
            LinkMode::Drop
        } else if self.partitioned.contains_key(pair) || self.held.contains_key(pair) {
            LinkMode::Hold
        } else {
            LinkMode::Deliver
        };
        let current = self.modes.get(pair).copied().unwrap_or(LinkMode::Deliver);
        if wanted == current {
            return;
        }
        let (x, y) = (pair.0.as_str(), pair.1.as_str());
        match (current, wanted) {
            (LinkMode::Hold, LinkMode::Deliver) => sim.release(x, y),
            (LinkMode::Drop, LinkMode::Deliver) => sim.repair(x, y),
            (_, LinkMode::Hold) => sim.hold(x, y),
            (_, LinkMode::Drop) => sim.partition(x, y),
            (_, LinkMode::Deliver) => unreachable!("handled above"),
        }
        if wanted == LinkMode::Deliver {
            self.modes.remove(pair);
        } else {
            self.modes.insert(pair.clone(), wanted);
        }
    }
}
