//! One run of a scenario on the simulated cluster, for one seed.
//!
//! Hosts: the feeder (creates the topics, writes the workload at its send
//! times), the worker hosts `w1..wN` (the real worker driver over the
//! simulated transport), the chaos host (applies the planned faults), the
//! restarter (brings back workers crashed at protocol steps) and the
//! observer. Phases:
//!
//! 1. **safety**, until `faults.until_ms`: the faults, drawn up front from
//!    the seed as a concrete list, plus the listed ones, plus crashes at
//!    protocol steps (a chance per step, so drawn as the workers go); every
//!    one is undone by the end of the phase;
//! 2. **heal and drain**: partitions healed, latencies back, crashed
//!    brokers and workers restarted, workers that left back in; every task
//!    consumes to the end offsets the feeder found (bounded mode: the
//!    watermark goes to the end of time, final results are committed),
//!    bounded by `checker.liveness_ms`; then the workers stop, and the
//!    observer waits for every transaction to finish;
//! 3. everything is read back into the [`Observation`].
//!
//! A run is a pure function of (scenario, seed, mutant): the same three
//! give the same trace hash.

mod faults;
mod feeder;
mod observe;
mod shared;
mod worker;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use eddyline_engine::job::Job;
use eddyline_engine::transport::TopicPartition;
use eddyline_engine::worker::{Mutant, Selected, WorkerStats};
use eddyline_sim::Seed;
use eddyline_sim::checkpoint_store::{self, SimCheckpointStore, SimStoreConfig};
use eddyline_sim::cluster::{ClusterConfig, SimCluster};
use eddyline_sim::trace::{TraceFocus, TraceSummary};

use crate::observation::Observation;
use crate::scenario::{
    Expect, ListedFault, Scenario, ScenarioError, StoreKind, TimingsName, WorkloadSpec,
};
use crate::workload;
use feeder::FeederPlan;
use observe::Topics;
use shared::{Shared, partitions_of};
use worker::{Stores, WorkerSetup};

/// How one run is done.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: Seed,
    /// Overrides the scenario's mutant (`expect.mutant`).
    pub mutant: Option<Mutant>,
    /// Print every trace event to stderr.
    pub trace_echo: bool,
    /// Overrides `workload.records` (shrinking lowers it).
    pub records: Option<usize>,
    /// Capture the trace around this place (`RunReport::trace.focus`);
    /// the run is otherwise the same.
    pub trace_focus: Option<TraceFocus>,
}

impl RunOptions {
    pub fn new(seed: Seed) -> RunOptions {
        RunOptions {
            seed,
            mutant: None,
            trace_echo: false,
            records: None,
            trace_focus: None,
        }
    }
}

/// What one run did and observed.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: Seed,
    pub mutant: Option<Mutant>,
    pub observation: Observation,
    pub trace: TraceSummary,
    /// Every derived setting and child seed, the cluster's included.
    pub settings: Vec<(String, String)>,
    /// Every fault applied, as a scenario file lists them (`[[faults.at]]`).
    pub faults: Vec<ListedFault>,
    /// Summed over every incarnation of every worker.
    pub stats: WorkerStats,
    /// Why each incarnation of each worker stopped: (host, reason).
    pub stops: Vec<(String, String)>,
    /// Each error that made the feeder (the world writing the input)
    /// replace its producer and send again what was not acknowledged.
    pub feeder_failures: Vec<String>,
    /// Simulated time of the whole run.
    pub elapsed_ms: u64,
}

impl RunReport {
    /// The scenario that replays this run's faults as listed ones (nothing
    /// drawn but the checkpoint store's failures, which are per call).
    pub fn replay(&self, scenario: &Scenario) -> Scenario {
        let mut replay = scenario.clone();
        replay.faults = scenario.faults.listed_only(self.faults.clone());
        replay
    }
}

/// Why a run could not be done (a run that finds anomalies is no error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("bad setting: {0}")]
    Config(String),
    #[error("{0}")]
    Simulation(String),
    #[error("the observer did not finish (seed {0})")]
    NoObservation(Seed),
}

/// Extra simulated time past the drain deadline before the simulator gives
/// up on a run.
const DURATION_SLACK_MS: u64 = 120_000;

/// Runs `scenario` once with `options`.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunReport, RunError> {
    let mut built = build(scenario, options)?;
    let mut settings = built.cluster.settings();
    built
        .cluster
        .run()
        .map_err(|error| RunError::Simulation(error.to_string()))?;
    let seed = options.seed;
    let observation = built
        .observed
        .borrow_mut()
        .take()
        .ok_or(RunError::NoObservation(seed))?;
    settings.extend(run_settings(
        scenario,
        &built.setup,
        &built.store,
        built.records,
    ));
    let shared = &built.shared;
    Ok(RunReport {
        seed,
        mutant: built.setup.mutant.0,
        observation,
        trace: built.cluster.trace(),
        settings,
        faults: shared.applied.borrow().clone(),
        stats: summed(&shared.stats.borrow()),
        stops: shared.stops.borrow().clone(),
        feeder_failures: shared.feeder_failures.borrow().clone(),
        elapsed_ms: built.cluster.elapsed_ms(),
    })
}

/// A scenario's input for one seed, as a real cluster gets it (`eddy
/// load`): the topics the simulated feeder creates, with the scenario's
/// partition count, and the records it writes, in send order, each with
/// its partition, key, value and event time (the Kafka timestamp). Written
/// in this order by one idempotent producer, a partition's records get the
/// offsets they get on the simulator.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub input: String,
    /// Output, late and dead-letter topics.
    pub outputs: Vec<String>,
    pub partitions: i32,
    pub records: Vec<workload::InputRecord>,
}

/// The input of `scenario` for `seed` (see [`LoadPlan`]).
pub fn load_plan(scenario: &Scenario, seed: Seed) -> Result<LoadPlan, RunError> {
    let job = scenario.load_job()?;
    let workload = &scenario.workload;
    let topics = topics(&job, workload.partitions);
    let records = workload::generate(workload, scenario.workload_kind(&job), &job, seed);
    let plan = feeder_plan(scenario, &topics, records);
    Ok(LoadPlan {
        input: plan.input,
        outputs: plan.outputs,
        partitions: plan.partitions,
        records: plan.records,
    })
}

/// A run ready to start: the cluster with its hosts, and what they share.
struct Built {
    cluster: SimCluster,
    shared: Rc<Shared>,
    setup: WorkerSetup,
    store: SimStoreConfig,
    /// How many input records the feeder writes.
    records: usize,
    observed: Rc<RefCell<Option<Observation>>>,
}

/// Builds the cluster and adds the feeder, the workers, the restarter, the
/// observer and the chaos host with the planned faults.
fn build(scenario: &Scenario, options: &RunOptions) -> Result<Built, RunError> {
    let job = scenario.load_job()?;
    let seed = options.seed;
    let mut cluster = SimCluster::new(seed, cluster_config(scenario, options))
        .map_err(|error| RunError::Config(error.to_string()))?;
    let shared = Rc::new(Shared {
        until_ms: scenario.faults.until_ms,
        deadline_ms: scenario.faults.until_ms + scenario.checker.liveness_ms,
        ..Shared::default()
    });
    let store = store_config(scenario);
    let sim_store = SimCheckpointStore::new(&cluster.handle(), store.clone())
        .map_err(|error| RunError::Config(error.to_string()))?;
    let mut workload = WorkloadSpec {
        records: options.records.unwrap_or(scenario.workload.records),
        ..scenario.workload.clone()
    };
    let records = match &workload.recording {
        Some(path) => {
            let recorded = workload::from_recording(path, &workload, &job)
                .map_err(|error| RunError::Config(error.to_string()))?;
            workload.partitions = recorded.partitions;
            recorded.records
        }
        None => workload::generate(&workload, scenario.workload_kind(&job), &job, seed),
    };
    let topics = topics(&job, workload.partitions);
    let record_count = records.len();
    let plan = feeder_plan(scenario, &topics, records);
    feeder::add_feeder(&mut cluster, plan, Rc::clone(&shared));
    let setup = worker_setup(scenario, options, &job, sim_store, &shared);
    let hosts = scenario.cluster.worker_hosts();
    for host in &hosts {
        worker::add_worker(&mut cluster, host.clone(), setup.clone());
    }
    faults::add_restarter(&mut cluster, seed, Rc::clone(&shared));
    let observed = Rc::new(RefCell::new(None));
    let observer_shared = Rc::clone(&shared);
    observe::add_observer(
        &mut cluster,
        topics.clone(),
        observer_shared,
        Rc::clone(&observed),
    );
    let plan = faults::plan(
        &cluster,
        &scenario.faults,
        &hosts,
        fault_partitions(&topics),
    );
    faults::arm(&shared, &plan);
    faults::add_chaos(&mut cluster, plan, Rc::clone(&shared));
    Ok(Built {
        cluster,
        shared,
        setup,
        store,
        records: record_count,
        observed,
    })
}

/// What every worker host shares: the job with the run's mutant, the
/// delivery, the store, the crash chance.
fn worker_setup(
    scenario: &Scenario,
    options: &RunOptions,
    job: &Job,
    store: SimCheckpointStore,
    shared: &Rc<Shared>,
) -> WorkerSetup {
    let mutant = Selected(options.mutant.or(match scenario.expect {
        Expect::Detect { mutant, .. } => mutant,
        Expect::Pass => None,
    }));
    WorkerSetup {
        seed: options.seed,
        delivery: scenario.delivery(job),
        mutant,
        job: job.with_mutants(mutant),
        store: match scenario.cluster.checkpoint_store {
            StoreKind::Sim => Stores::Sim(store),
            StoreKind::Topic => Stores::Topic,
        },
        session_timeout_ms: scenario.cluster.session_timeout_ms,
        crash_at_step_chance: scenario.faults.crash_at_step_chance,
        shared: Rc::clone(shared),
    }
}

fn cluster_config(scenario: &Scenario, options: &RunOptions) -> ClusterConfig {
    let c = &scenario.cluster;
    let config = ClusterConfig {
        brokers: c.brokers,
        replication_factor: c.replication,
        min_insync_replicas: c.min_insync,
        internal_topic_replication_factor: c.replication,
        duration_limit_ms: scenario.faults.until_ms
            + scenario.checker.liveness_ms
            + observe::STABLE_PATIENCE_MS
            + DURATION_SLACK_MS,
        trace_echo: options.trace_echo,
        trace_focus: options.trace_focus.clone(),
        ..ClusterConfig::default()
    };
    match c.timings {
        TimingsName::Kafka38 => config,
        TimingsName::Fast => config.with_fast_timings(),
    }
}

fn store_config(scenario: &Scenario) -> SimStoreConfig {
    SimStoreConfig {
        write_failure_rate: scenario.faults.store_write_failure,
        read_failure_rate: scenario.faults.store_read_failure,
        ack_before_sync_ms: scenario.faults.store_ack_before_sync_ms,
        ..SimStoreConfig::none()
    }
}

fn topics(job: &Job, partitions: i32) -> Topics {
    Topics {
        group: job.name().to_string(),
        input: job.input_topics()[0].clone(),
        output: job.output_topic().to_string(),
        late: job.late_topic().to_string(),
        dead_letter: job.dead_letter_topic().map(str::to_string),
        partitions,
    }
}

fn feeder_plan(
    scenario: &Scenario,
    topics: &Topics,
    records: Vec<workload::InputRecord>,
) -> FeederPlan {
    let mut outputs = vec![topics.output.clone(), topics.late.clone()];
    outputs.extend(topics.dead_letter.clone());
    FeederPlan {
        input: topics.input.clone(),
        outputs,
        partitions: topics.partitions,
        replication: scenario.cluster.replication,
        checkpoint_topic: scenario.cluster.checkpoint_store == StoreKind::Topic,
        records,
    }
}

/// The partitions whose leaders drawn faults may move: input and output.
fn fault_partitions(topics: &Topics) -> Vec<TopicPartition> {
    let mut partitions = partitions_of(&topics.input, topics.partitions);
    partitions.extend(partitions_of(&topics.output, topics.partitions));
    partitions
}

fn summed(stats: &BTreeMap<(String, u64), WorkerStats>) -> WorkerStats {
    let mut total = WorkerStats::default();
    stats.values().for_each(|stats| total.add(stats));
    total
}

/// The run's own settings and child seeds, after the cluster's.
fn run_settings(
    scenario: &Scenario,
    setup: &WorkerSetup,
    store: &SimStoreConfig,
    records: usize,
) -> Vec<(String, String)> {
    let seed = setup.seed;
    let w = &scenario.workload;
    let f = &scenario.faults;
    let pair = |name: &str, value: String| (name.to_string(), value);
    let mut settings = vec![
        pair("job", scenario.job.display().to_string()),
        pair("job.name", setup.job.job().name().to_string()),
        pair("delivery", format!("{:?}", setup.delivery)),
        pair(
            "mutant",
            setup.mutant.0.map_or("none".into(), |m| m.to_string()),
        ),
        pair(
            "seed.workload",
            seed.derive(workload::SEED_NAME).to_string(),
        ),
        pair("seed.join-leave", seed.derive("join-leave").to_string()),
        pair("seed.restarter", seed.derive("restarter").to_string()),
        pair(
            "seed.checkpoint-store",
            seed.derive(checkpoint_store::SEED_NAME).to_string(),
        ),
        pair("workload.records", records.to_string()),
        pair("workload.partitions", w.partitions.to_string()),
        pair("workload.keys", w.keys.to_string()),
        pair("workload.key_skew", w.key_skew.to_string()),
        pair("workload.rate_per_s", w.rate_per_s.to_string()),
        pair(
            "workload.fractions",
            format!(
                "out_of_order {} late {} beyond_lateness {} undecodable {}",
                w.out_of_order, w.late, w.beyond_lateness, w.undecodable
            ),
        ),
        pair("workers", scenario.cluster.worker_hosts().join(",")),
        pair(
            "worker.session_timeout_ms",
            setup.session_timeout_ms.to_string(),
        ),
        pair(
            "worker.checkpoint_interval_ms",
            worker::CHECKPOINT_INTERVAL_MS.to_string(),
        ),
        pair(
            "worker.transaction_timeout_ms",
            worker::TRANSACTION_TIMEOUT_MS.to_string(),
        ),
        pair(
            "worker.restart_budget_ms",
            worker::RESTART_BUDGET_MS.to_string(),
        ),
        pair(
            "worker.poll_max_events",
            worker::POLL_MAX_EVENTS.to_string(),
        ),
        pair(
            "checkpoint_store",
            format!("{:?}", scenario.cluster.checkpoint_store),
        ),
        pair(
            "store.write_failure_rate",
            store.write_failure_rate.to_string(),
        ),
        pair(
            "store.read_failure_rate",
            store.read_failure_rate.to_string(),
        ),
        pair(
            "store.ack_before_sync_ms",
            format!("{:?}", store.ack_before_sync_ms),
        ),
        pair("faults.until_ms", f.until_ms.to_string()),
        pair(
            "faults.from_ms",
            crate::scenario::FAULTS_FROM_MS.to_string(),
        ),
        pair("faults.down_ms", format!("{:?}", faults::DOWN_MS)),
        pair("faults.freeze_ms", format!("{:?}", faults::FREEZE_MS)),
        pair("faults.leave_ms", format!("{:?}", faults::LEAVE_MS)),
        pair(
            "faults.crash_at_step_chance",
            f.crash_at_step_chance.to_string(),
        ),
        pair(
            "checker.liveness_ms",
            scenario.checker.liveness_ms.to_string(),
        ),
    ];
    settings.extend(
        f.rates()
            .iter()
            .map(|(key, rate)| pair(&format!("faults.{key}"), rate.to_string())),
    );
    settings
}
