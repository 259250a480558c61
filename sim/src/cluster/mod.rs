//! The public face of the simulated cluster: [`SimCluster`] builds a seeded
//! turmoil simulation with a controller and brokers, runs client and worker
//! hosts against it, and applies faults; [`ClusterHandle`] lets code inside
//! hosts request faults and inspect the cluster.
//!
//! ```no_run
//! use eddyline_sim::cluster::{ClusterConfig, SimCluster};
//! use eddyline_sim::Seed;
//!
//! let mut cluster = SimCluster::new(Seed::new(7), ClusterConfig::default()).unwrap();
//! let bootstrap = cluster.bootstrap();
//! let handle = cluster.handle();
//! cluster.client("test", async move {
//!     // talk to `bootstrap` over turmoil TCP; `handle.crash_broker(1)`, ...
//!     let _ = (bootstrap, handle);
//!     Ok(())
//! });
//! cluster.run().unwrap();
//! ```

mod fault_applier;
mod freeze;
mod handle;
mod links;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;

use eddyline_engine::transport::TopicPartition;

use crate::broker::{self, BrokerContext, BrokerControl, BrokerDisk};
use crate::controller::{self, Controller};
use crate::faults::{Fault, FaultRates, FaultSchedule, FaultTargets};
use crate::protocol::BrokerId;
use crate::seed::Seed;
use crate::seed_context;
use crate::trace::{Trace, TraceSummary};
use crate::world;
use freeze::Freezes;
use handle::ControlShared;
use links::Links;

// The configuration and the well-known names live in `crate::config` (the
// brokers and the controller need them without the cluster); they are
// re-exported here, where users of the cluster look for them.
pub use crate::config::{
    BROKER_PORT, CONTROLLER_HOST, CONTROLLER_PORT, ClusterConfig, ConfigError, FAST_TIMINGS,
    KAFKA_TIMINGS, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, Timings,
};
pub use handle::ClusterHandle;

/// A failed run: the seed, when, why, and the end of the trace.
#[derive(Debug, thiserror::Error)]
#[error("simulation failed at {at_ms} ms (seed {seed}, repro: EDDY_SEED={seed}): {message}")]
pub struct SimError {
    pub seed: Seed,
    pub at_ms: u64,
    pub message: String,
    pub trace: TraceSummary,
}

/// A seeded simulated Kafka cluster: a controller host, broker hosts, and
/// the client and worker hosts a test adds.
pub struct SimCluster {
    seed: Seed,
    config: Rc<ClusterConfig>,
    sim: turmoil::Sim<'static>,
    shared: Rc<ControlShared>,
    broker_controls: Vec<Rc<BrokerControl>>,
    trace: Trace,
    /// Scheduled faults, keyed by (time, order of scheduling).
    schedule: BTreeMap<(u64, u64), Fault>,
    next_schedule_index: u64,
    /// Worker hosts that can crash, restart and pause.
    worker_hosts: BTreeSet<String>,
    /// Every node, in registration order (controller, brokers, others).
    nodes: Vec<String>,
    /// Partitions, pauses and tuned latencies of the links between nodes.
    links: Links,
    /// The worker hosts' freeze gates and the freezes to end.
    freezes: Freezes,
    /// The child seeds derived from `seed`, by name, for the settings.
    derived: Vec<(String, Seed)>,
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        seed_context::leave(self.seed);
    }
}

impl SimCluster {
    /// Builds the simulation: the seeded turmoil world, the controller and
    /// the brokers (which start, register and elect leaders in the first
    /// simulated milliseconds).
    pub fn new(seed: Seed, config: ClusterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        seed_context::install_seed_panic_hook();
        seed_context::enter(seed);
        let network_seed = seed.derive("network");
        let placement_seed = seed.derive("placement");
        let faults_seed = seed.derive("faults");
        let mut sim = world::build_sim(&config.world_settings(network_seed))?;
        let config = Rc::new(config);
        let trace = Trace::new(config.trace_echo);
        if let Some(focus) = &config.trace_focus {
            trace.focus(focus);
        }
        let controller = Rc::new(Controller::new(
            config.clone(),
            trace.clone(),
            placement_seed.rng(),
        ));
        let mut nodes = vec![CONTROLLER_HOST.to_string()];
        {
            let controller = controller.clone();
            sim.host(CONTROLLER_HOST, move || controller::run(controller.clone()));
        }
        let brokers = host_brokers(&mut sim, seed, &config, &trace);
        nodes.extend(brokers.hosts);
        let shared = Rc::new(ControlShared {
            seed,
            config: config.clone(),
            controller,
            trace: trace.clone(),
            requests: RefCell::new(Vec::new()),
            brokers_down: RefCell::new(BTreeSet::new()),
            disks: brokers.disks,
            host_crashes: RefCell::new(BTreeMap::new()),
        });
        let derived: Vec<(String, Seed)> = [
            ("network".to_string(), network_seed),
            ("placement".to_string(), placement_seed),
            ("faults".to_string(), faults_seed),
        ]
        .into_iter()
        .chain((0..config.brokers).map(|id| {
            let name = format!("broker-{id}");
            let seed = seed.derive(&name);
            (name, seed)
        }))
        .collect();
        assert_eq!(
            nodes.len(),
            1 + config.brokers,
            "the controller and every broker"
        );
        assert_eq!(brokers.controls.len(), config.brokers);
        assert_eq!(shared.disks.len(), config.brokers);
        assert_eq!(derived.len(), 3 + config.brokers);
        Ok(Self {
            seed,
            links: Links::new(config.tcp_give_up_ms),
            freezes: Freezes::default(),
            config,
            sim,
            shared,
            broker_controls: brokers.controls,
            trace,
            schedule: BTreeMap::new(),
            next_schedule_index: 0,
            worker_hosts: BTreeSet::new(),
            nodes,
            derived,
        })
    }

    pub fn seed(&self) -> Seed {
        self.seed
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Broker host names (port [`BROKER_PORT`]), for clients to bootstrap.
    pub fn bootstrap(&self) -> Vec<String> {
        self.handle().bootstrap()
    }

    pub fn handle(&self) -> ClusterHandle {
        ClusterHandle {
            shared: self.shared.clone(),
        }
    }

    /// Adds a client host: test code that runs once. The run ends when
    /// every client has returned (an error fails the run).
    pub fn client<F>(&mut self, name: &str, future: F)
    where
        F: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.client(name, future);
        self.nodes.push(name.to_string());
    }

    /// Adds a restartable worker host: `factory` builds its software at
    /// start and at every restart. It can be crashed, restarted, paused and
    /// frozen (faults), and never ends the run by itself.
    pub fn host<F, Fut>(&mut self, name: &str, factory: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        let gate = self.freezes.register(name);
        self.sim
            .host(name, move || freeze::freezable(Rc::clone(&gate), factory()));
        self.worker_hosts.insert(name.to_string());
        self.nodes.push(name.to_string());
    }

    /// Like [`SimCluster::host`], but the host starts stopped: it first runs
    /// when restarted (a consumer that joins later).
    pub fn stopped_host<F, Fut>(&mut self, name: &str, factory: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.host(name, factory);
        self.sim.crash(name);
    }

    /// Every node: controller, brokers, then clients and hosts as added.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Adds faults to apply when simulated time reaches their `at_ms`.
    pub fn schedule(&mut self, faults: FaultSchedule) {
        for (at_ms, fault) in faults.events() {
            self.schedule
                .insert((*at_ms, self.next_schedule_index), fault.clone());
            self.next_schedule_index += 1;
        }
    }

    /// What a drawn fault schedule may target in this cluster now.
    pub fn fault_targets(&self, partitions: Vec<TopicPartition>) -> FaultTargets {
        FaultTargets {
            brokers: (0..self.config.brokers as BrokerId).collect(),
            hosts: self.worker_hosts.iter().cloned().collect(),
            partitions,
            all_nodes: self.nodes.clone(),
            base_max_latency_ms: self.config.latency_max_ms,
        }
    }

    /// Draws faults over `[start_ms, end_ms)` from the run's `faults`
    /// child seed (the same seed always draws the same schedule).
    pub fn draw_faults(
        &self,
        rates: &FaultRates,
        partitions: Vec<TopicPartition>,
        start_ms: u64,
        end_ms: u64,
    ) -> FaultSchedule {
        let mut rng = self.seed.derive("faults").rng();
        FaultSchedule::draw(
            &mut rng,
            rates,
            &self.fault_targets(partitions),
            start_ms,
            end_ms,
        )
    }

    /// The run's seed, its derived child seeds, and every setting.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![("seed".to_string(), self.seed.to_string())];
        for (name, seed) in &self.derived {
            settings.push((format!("seed.{name}"), seed.to_string()));
        }
        settings.extend(self.config.settings());
        settings
    }

    pub fn trace(&self) -> TraceSummary {
        self.trace.summary(64)
    }

    /// Simulated ms since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.sim.elapsed().as_millis() as u64
    }

    /// Runs until every client host has returned.
    pub fn run(&mut self) -> Result<(), SimError> {
        loop {
            if self.step()? {
                if self.config.print_run_fingerprint {
                    // A run's fingerprint, to compare runs across changes.
                    let trace = self.trace.summary(0);
                    eprintln!(
                        "sim run: seed {} hash {:016x} events {} simulated {} ms",
                        self.seed,
                        trace.hash,
                        trace.events,
                        self.elapsed_ms()
                    );
                }
                return Ok(());
            }
        }
    }

    /// Runs for `duration_ms` of simulated time or until every client has
    /// returned; `Ok(true)` if they have.
    pub fn run_for(&mut self, duration_ms: u64) -> Result<bool, SimError> {
        let until = self.elapsed_ms() + duration_ms;
        while self.elapsed_ms() < until {
            if self.step()? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Applies due faults, then advances the simulation one tick.
    pub fn step(&mut self) -> Result<bool, SimError> {
        seed_context::enter(self.seed);
        let now = self.elapsed_ms();
        world::set_outside_host_now_ms(now);
        self.apply_due(now);
        match self.sim.step() {
            Ok(finished) => {
                assert!(self.elapsed_ms() >= now, "simulated time never goes back");
                Ok(finished)
            }
            Err(error) => Err(SimError {
                seed: self.seed,
                at_ms: self.elapsed_ms(),
                message: error.to_string(),
                trace: self.trace.summary(64),
            }),
        }
    }
}

/// The broker hosts of a new simulation, by broker id.
struct HostedBrokers {
    hosts: Vec<String>,
    controls: Vec<Rc<BrokerControl>>,
    disks: Vec<Rc<RefCell<BrokerDisk>>>,
}

/// Adds a host per broker (`broker-<id>`, seeded `seed.derive("broker-<id>")`),
/// each with its own disk and control.
fn host_brokers(
    sim: &mut turmoil::Sim<'static>,
    seed: Seed,
    config: &Rc<ClusterConfig>,
    trace: &Trace,
) -> HostedBrokers {
    let mut brokers = HostedBrokers {
        hosts: Vec::new(),
        controls: Vec::new(),
        disks: Vec::new(),
    };
    for id in 0..config.brokers as BrokerId {
        let control = Rc::new(BrokerControl::default());
        let disk = Rc::new(RefCell::new(BrokerDisk::default()));
        brokers.disks.push(disk.clone());
        let context = BrokerContext {
            id,
            seed: seed.derive(&format!("broker-{id}")),
            config: config.clone(),
            disk,
            trace: trace.clone(),
            control: control.clone(),
        };
        let host = broker::broker_host(id);
        sim.host(host.as_str(), move || broker::run(context.clone()));
        brokers.hosts.push(host);
        brokers.controls.push(control);
    }
    brokers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_config_is_refused_with_a_reason() {
        let config = ClusterConfig {
            latency_min_ms: 10,
            latency_max_ms: 1,
            ..ClusterConfig::default()
        };
        let error = SimCluster::new(Seed::new(1), config).err().unwrap();
        assert!(error.to_string().contains("latency"), "{error}");
        let config = ClusterConfig {
            replication_factor: 4,
            ..ClusterConfig::default()
        };
        assert_eq!(
            SimCluster::new(Seed::new(1), config).err().unwrap(),
            ConfigError::ReplicationFactor(4)
        );
    }

    #[test]
    fn settings_list_the_seed_its_children_and_every_config_value() {
        let cluster = SimCluster::new(Seed::new(99), ClusterConfig::default()).unwrap();
        let settings = cluster.settings();
        assert_eq!(settings[0], ("seed".to_string(), "99".to_string()));
        let names: Vec<&str> = settings.iter().map(|(name, _)| name.as_str()).collect();
        for name in [
            "seed.network",
            "seed.placement",
            "seed.faults",
            "timings",
            "brokers",
            "tick_ms",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(
            settings
                .iter()
                .find(|(name, _)| name == "seed.network")
                .unwrap()
                .1,
            Seed::new(99).derive("network").to_string()
        );
    }

    #[test]
    fn the_default_timings_are_kafkas_and_the_listing_names_the_preset() {
        let timing = |config: &ClusterConfig| {
            config
                .settings()
                .into_iter()
                .find(|(name, _)| name == "timings")
                .map(|(_, value)| value)
        };
        let kafka = ClusterConfig::default();
        assert_eq!(kafka.timings(), KAFKA_TIMINGS);
        assert_eq!(kafka.broker_session_timeout_ms, 9_000);
        assert_eq!(kafka.replica_lag_max_ms, 30_000);
        assert_eq!(kafka.transaction_abort_check_interval_ms, 10_000);
        assert_eq!(timing(&kafka).as_deref(), Some("kafka-3.8"));
        let fast = ClusterConfig::default().with_fast_timings();
        assert_eq!(fast.timings(), FAST_TIMINGS);
        assert_eq!(timing(&fast).as_deref(), Some("fast"));
        let custom = ClusterConfig {
            replica_lag_max_ms: 5_000,
            ..ClusterConfig::default()
        };
        assert_eq!(timing(&custom).as_deref(), Some("custom"));
        assert_eq!(
            custom.timings_summary(),
            "timings custom: replica_lag_max_ms=5000 (Kafka 30000); the rest Kafka 3.8's"
        );
        assert!(kafka.timings_summary().starts_with("timings kafka-3.8"));
    }
}
