//! The suite against the simulated cluster: one seeded three-broker
//! `SimCluster`, the checks running in one client host over `SimTransport`.
//!
//! Time is turmoil's simulated clock (tokio's timers inside a host), so a
//! check that waits 3 s for a coordinator's timeout abort costs
//! milliseconds. Broker control is real failover: the env crashes the
//! broker that leads a partition, waits until the controller has elected
//! another replica, and restarts the crashed broker as a follower.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::TopicPartition;
use eddyline_sim::Seed;
use eddyline_sim::SimTransport;
use eddyline_sim::broker::broker_host;
use eddyline_sim::cluster::{ClusterConfig, ClusterHandle, SimCluster};
use eddyline_sim::trace::TraceSummary;

use super::env::{BrokerControl, ConformanceEnv, ReplicaState, RunNames};
use super::{Report, SuiteOptions, run_suite};

/// How long one check may run (simulated).
const CHECK_BUDGET: Duration = Duration::from_secs(120);
/// How long a check waits for the cluster to do something on its own
/// (simulated); the same as against a real broker.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the env waits for the cluster to start, for an election, or for
/// a restarted broker to rejoin (simulated).
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);
/// How often the env looks at the controller's view while waiting.
const LOOK_EVERY: Duration = Duration::from_millis(5);
/// The client host the suite runs in.
const CLIENT_HOST: &str = "conformance";
/// How long a leader's answers to the client host are dropped.
const LOST_ACKS_FOR: Duration = Duration::from_millis(500);

/// The simulated cluster, seen from a client host inside it.
pub struct SimEnv {
    transport: SimTransport,
    handle: ClusterHandle,
    names: RunNames,
    started: tokio::time::Instant,
}

impl SimEnv {
    /// Must be created inside a turmoil host of the cluster.
    pub fn new(handle: ClusterHandle) -> Self {
        Self {
            transport: SimTransport::new(handle.bootstrap()),
            handle,
            // A fresh cluster every run: a fixed prefix keeps runs comparable.
            names: RunNames::new("conf"),
            started: tokio::time::Instant::now(),
        }
    }

    /// Waits until every broker is live and the internal topics exist.
    pub async fn wait_ready(&self) -> Result<(), String> {
        let deadline = self.elapsed() + CLUSTER_PATIENCE;
        while !self.handle.is_ready() {
            if self.elapsed() >= deadline {
                return Err(format!(
                    "the simulated cluster was not ready after {} ms",
                    CLUSTER_PATIENCE.as_millis()
                ));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        Ok(())
    }
}

impl ConformanceEnv for SimEnv {
    type Transport = SimTransport;

    fn transport(&self) -> &SimTransport {
        &self.transport
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn wall_clock_ms(&self) -> i64 {
        let epoch_ms = self.handle.config().epoch_ms;
        i64::try_from(epoch_ms + self.handle.now_ms()).expect("simulated clock fits in i64 ms")
    }

    fn names(&self) -> &RunNames {
        &self.names
    }

    fn replication(&self) -> (i16, Option<i16>) {
        (3, Some(2))
    }

    fn check_budget(&self) -> Duration {
        CHECK_BUDGET
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    fn broker_control(&self) -> BrokerControl {
        BrokerControl::CrashLeader
    }

    fn broker_count(&self) -> usize {
        self.handle.config().brokers
    }

    async fn replica_state(&self, partition: &TopicPartition) -> Result<ReplicaState, String> {
        let image = self
            .handle
            .partition_state(partition)
            .ok_or_else(|| format!("the controller knows no partition {partition}"))?;
        Ok(ReplicaState {
            leader: image.leader,
            replicas: image.replicas,
            isr: image.isr,
        })
    }

    async fn stop_broker(&self, node: i32) -> Result<String, String> {
        if self.handle.is_broker_down(node) {
            return Err(format!("broker {node} is already down"));
        }
        self.handle.crash_broker(node);
        Ok(format!("crashed broker {node}"))
    }

    async fn start_broker(&self, node: i32) -> Result<String, String> {
        if !self.handle.is_broker_down(node) {
            return Err(format!("broker {node} is not down"));
        }
        let began = self.elapsed();
        self.handle.restart_broker(node);
        let deadline = began + CLUSTER_PATIENCE;
        while self.handle.is_broker_down(node) || !self.handle.is_broker_live(node) {
            if self.elapsed() >= deadline {
                return Err(format!(
                    "broker {node} did not rejoin within {} ms of its restart",
                    CLUSTER_PATIENCE.as_millis()
                ));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        Ok(format!(
            "restarted broker {node}: live again after {} ms",
            self.elapsed().saturating_sub(began).as_millis()
        ))
    }

    async fn fail_leader(&self, partition: &TopicPartition) -> Result<String, String> {
        let Some(leader) = self.handle.leader_of(partition) else {
            return Err(format!("{partition} has no leader to fail"));
        };
        let began = self.elapsed();
        let deadline = began + CLUSTER_PATIENCE;
        self.handle.crash_broker(leader);
        let elected = loop {
            match self.handle.leader_of(partition) {
                Some(new) if new != leader => break new,
                _ if self.elapsed() >= deadline => {
                    return Err(format!(
                        "no new leader of {partition} within {} ms after broker {leader} crashed",
                        CLUSTER_PATIENCE.as_millis()
                    ));
                }
                _ => tokio::time::sleep(LOOK_EVERY).await,
            }
        };
        let elected_after = self.elapsed().saturating_sub(began);
        self.handle.restart_broker(leader);
        let deadline = self.elapsed() + CLUSTER_PATIENCE;
        while self.handle.is_broker_down(leader) || !self.handle.is_broker_live(leader) {
            if self.elapsed() >= deadline {
                return Err(format!(
                    "broker {leader} did not rejoin within {} ms of its restart",
                    CLUSTER_PATIENCE.as_millis()
                ));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        Ok(format!(
            "crashed broker {leader} (leader of {partition}); broker {elected} was elected after {} ms; broker {leader} restarted and rejoined",
            elected_after.as_millis()
        ))
    }

    async fn lose_acknowledgements(&self, partition: &TopicPartition) -> Result<String, String> {
        let Some(leader) = self.handle.leader_of(partition) else {
            return Err(format!("{partition} has no leader"));
        };
        // One way only: requests still reach the leader (and its followers),
        // which append them; the answers are dropped. The producer's
        // request timeout ends the silent connections, and its retries of
        // the same sequence numbers must be de-duplicated.
        let leader_host = broker_host(leader);
        turmoil::partition_oneway(leader_host.as_str(), CLIENT_HOST);
        tokio::time::sleep(LOST_ACKS_FOR).await;
        turmoil::repair_oneway(leader_host.as_str(), CLIENT_HOST);
        Ok(format!(
            "dropped every answer from broker {leader} (leader of {partition}) to the producer for {} ms",
            LOST_ACKS_FOR.as_millis()
        ))
    }
}

/// A finished simulator run: the report, and the cluster's trace.
#[derive(Debug)]
pub struct SimRun {
    pub report: Report,
    pub trace: TraceSummary,
    pub settings: Vec<(String, String)>,
}

/// The simulated cluster the suite runs on: the defaults (three brokers,
/// replication factor 3, min.insync.replicas 2), with the two broker
/// settings of the real test broker (`scripts/kafka`) that shape what a
/// check observes, so that both targets print comparable timelines: no
/// initial rebalance delay, and a 1 s check for timed-out transactions.
pub fn cluster_config() -> ClusterConfig {
    ClusterConfig {
        group_initial_rebalance_delay_ms: 0,
        transaction_abort_check_interval_ms: 1_000,
        ..ClusterConfig::default()
    }
}

/// What the simulated cluster prints to stderr (the caller decides, e.g.
/// from `EDDY_SIM_TRACE` / `EDDY_SIM_HASH`): see
/// [`ClusterConfig::trace_echo`] and [`ClusterConfig::print_run_fingerprint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimOutput {
    pub trace_echo: bool,
    pub print_run_fingerprint: bool,
}

/// Runs the suite on a fresh three-broker cluster seeded with `seed`.
/// `Err`: the simulation itself failed (a broken invariant, the run's time
/// limit), with the seed in the message.
pub fn run_on_simulator(
    seed: Seed,
    options: &SuiteOptions,
    output: SimOutput,
) -> Result<SimRun, String> {
    let config = ClusterConfig {
        trace_echo: output.trace_echo,
        print_run_fingerprint: output.print_run_fingerprint,
        ..cluster_config()
    };
    let mut cluster = SimCluster::new(seed, config).map_err(|e| e.to_string())?;
    let handle = cluster.handle();
    let report: Rc<RefCell<Option<Result<Report, String>>>> = Rc::new(RefCell::new(None));
    let out = Rc::clone(&report);
    let options = options.clone();
    cluster.client(CLIENT_HOST, async move {
        let env = SimEnv::new(handle);
        let result = match env.wait_ready().await {
            Ok(()) => Ok(run_suite(&env, &options).await),
            Err(reason) => Err(reason),
        };
        *out.borrow_mut() = Some(result);
        Ok(())
    });
    cluster.run().map_err(|e| e.to_string())?;
    let report = report
        .borrow_mut()
        .take()
        .expect("the conformance client host ran to its end")?;
    Ok(SimRun {
        report,
        trace: cluster.trace(),
        settings: cluster.settings(),
    })
}
