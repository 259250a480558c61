//! The worker hosts: each runs the real worker driver over the simulated
//! transport, restarts a failed incarnation as a supervisor would, crashes
//! at protocol steps (drawn or listed), leaves its group when told, and
//! bounds its input once the feeder knows the end offsets.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::Result;
use eddyline_engine::checkpoint::{TopicStore, TopicStoreOptions};
use eddyline_engine::job::MutatedJob;
use eddyline_engine::worker::driver::{self, Clients};
use eddyline_engine::worker::{Command, Delivery, Selected, Stopped, WorkerConfig, WorkerCore};
use eddyline_sim::Seed;
use eddyline_sim::checkpoint_store::{SimCheckpointStore, WorkerStore};
use eddyline_sim::cluster::{ClusterHandle, SimCluster};

use super::feeder::CHECKPOINT_TOPIC;
use super::shared::{Shared, consumer_config, producer_config, sleep_ms, transport, wait_ready};
use crate::scenario::{FaultKind, Step};

/// The workers' settings besides the job (listed in a run's settings).
pub(super) const CHECKPOINT_INTERVAL_MS: u64 = 500;
pub(super) const TRANSACTION_TIMEOUT_MS: u64 = 20_000;
pub(super) const RESTART_BUDGET_MS: u64 = 10_000;
pub(super) const POLL_MAX_EVENTS: usize = 100;
/// A failed incarnation is started again after this long.
pub(super) const RESTART_AFTER_FAILURE_MS: u64 = 500;
/// A supervisor gives up on a worker that failed this often since its host
/// (re)started.
const RESTARTS_AFTER_FAILURE_MAX: usize = 1_000;
/// Drawn crashes at protocol steps stop this long before `until_ms`, so
/// the restarter brings every one back in the safety phase.
pub(super) const STEP_CRASHES_END_BEFORE_MS: u64 = 1_500;

/// Which store the workers use.
#[derive(Clone)]
pub(super) enum Stores {
    Sim(SimCheckpointStore),
    Topic,
}

impl Stores {
    fn for_host(&self, handle: &ClusterHandle, host: &str) -> Result<WorkerStore> {
        Ok(match self {
            Stores::Sim(store) => WorkerStore::Sim(store.on_host(host)),
            Stores::Topic => {
                let options = TopicStoreOptions {
                    chunk_bytes: 4_096,
                    ..TopicStoreOptions::default()
                };
                let store = TopicStore::new(transport(handle), CHECKPOINT_TOPIC, 2, options)?;
                WorkerStore::Topic(Box::new(store))
            }
        })
    }
}

/// What every worker host of a run shares.
#[derive(Clone)]
pub(super) struct WorkerSetup {
    pub(super) seed: Seed,
    pub(super) delivery: Delivery,
    pub(super) mutant: Selected,
    /// The job, its task mutants switched on as `mutant` says.
    pub(super) job: MutatedJob<Selected>,
    pub(super) store: Stores,
    pub(super) session_timeout_ms: u32,
    /// Chance per protocol step of a crash while it is in flight.
    pub(super) crash_at_step_chance: f64,
    pub(super) shared: Rc<Shared>,
}

/// The protocol step a command is, where a crash tests recovery most.
fn protocol_step(command: &Command) -> Option<Step> {
    match command {
        Command::WriteSnapshot(..) => Some(Step::Snapshot),
        Command::SendOffsets { .. } | Command::CommitOffsets(_) => Some(Step::Offsets),
        Command::CommitTransaction | Command::Flush => Some(Step::Commit),
        _ => None,
    }
}

fn worker_config(setup: &WorkerSetup, host: &str, incarnation: u64) -> WorkerConfig {
    let mut config = WorkerConfig::new(host, incarnation, setup.delivery);
    config.checkpoint_interval = Duration::from_millis(CHECKPOINT_INTERVAL_MS);
    config.transaction_timeout = Duration::from_millis(TRANSACTION_TIMEOUT_MS);
    config.restart_budget = Duration::from_millis(RESTART_BUDGET_MS);
    config.poll_max_events = POLL_MAX_EVENTS;
    config.end_offsets = setup.shared.ends.borrow().clone();
    config
}

/// A short session: a freeze or partition of a few seconds moves the
/// worker's partitions to the others.
fn clients(host: &str, session_timeout_ms: u32) -> Clients {
    let mut consumer = consumer_config(host, None);
    consumer.session_timeout_ms = session_timeout_ms;
    consumer.heartbeat_interval_ms = (session_timeout_ms / 10).max(10);
    Clients {
        consumer,
        producer: producer_config(host),
    }
}

/// The incarnation of the `start`-th start of `host`, from the seed.
pub(super) fn incarnation(seed: Seed, host: &str, start: u64) -> u64 {
    let mut rng = seed.derive(&format!("incarnation-{host}-{start}")).rng();
    rng.below(u64::MAX)
}

/// Adds worker host `host`: it runs the worker; an incarnation that failed
/// or was fenced is started again (same worker id, new incarnation), as a
/// supervisor restarts a process that exits with an error. A fenced one
/// matters: the coordinator's abort of a transaction at its timeout bumps
/// the producer's epoch, and librdkafka reports that as fencing, so
/// without a restart one expired transaction would stop the worker for
/// good. (Scenario hosts each have their own worker id, so a restart
/// never fences another live process.) One that stopped otherwise
/// (finished, stopped, left) stays stopped until the host is restarted.
pub(super) fn add_worker(cluster: &mut SimCluster, host: String, setup: WorkerSetup) {
    let handle = cluster.handle();
    let starts = Rc::new(Cell::new(0_u64));
    let name = host.clone();
    let factory = move || {
        let (handle, setup, starts, host) = (
            handle.clone(),
            setup.clone(),
            Rc::clone(&starts),
            host.clone(),
        );
        async move {
            wait_ready(&handle).await;
            setup.shared.leaving.borrow_mut().remove(&host);
            // The input topics exist before the workers subscribe.
            sleep_ms(500).await;
            for _ in 0..RESTARTS_AFTER_FAILURE_MAX {
                starts.set(starts.get() + 1);
                let stopped = run_incarnation(&handle, &setup, &host, starts.get()).await;
                let failed = matches!(stopped, Stopped::Failed(_) | Stopped::Fenced(_));
                let line = format!("{stopped:?}");
                setup.shared.stops.borrow_mut().push((host.clone(), line));
                if !failed {
                    break;
                }
                sleep_ms(RESTART_AFTER_FAILURE_MS).await;
            }
            // A stopped member left its group; a restart of the host brings
            // it back.
            std::future::pending::<()>().await;
            Ok(())
        }
    };
    cluster.host(&name, factory);
}

async fn run_incarnation(
    handle: &ClusterHandle,
    setup: &WorkerSetup,
    host: &str,
    start: u64,
) -> Stopped {
    let config = worker_config(setup, host, incarnation(setup.seed, host, start));
    let core = match WorkerCore::new(setup.job.clone(), config, setup.mutant) {
        Ok(core) => core,
        Err(error) => return Stopped::Failed(format!("worker: {error}")),
    };
    let mut store = match setup.store.for_host(handle, host) {
        Ok(store) => store,
        Err(error) => return Stopped::Failed(format!("store: {error}")),
    };
    let mut control = Control::new(handle, setup, host, start);
    let stopped = driver::run(
        &transport(handle),
        &mut store,
        core,
        clients(host, setup.session_timeout_ms),
        move |core, command| control.call(core, command),
    )
    .await;
    stopped.unwrap_or_else(|error| Stopped::Failed(format!("client: {error}")))
}

/// What the driver calls between commands: the stop, the end of the input,
/// stats, and crashes at protocol steps.
struct Control {
    handle: ClusterHandle,
    setup: WorkerSetup,
    host: String,
    start: u64,
    rng: eddyline_sim::DetRng,
    crashed: bool,
}

impl Control {
    fn new(handle: &ClusterHandle, setup: &WorkerSetup, host: &str, start: u64) -> Self {
        Control {
            handle: handle.clone(),
            setup: setup.clone(),
            host: host.to_string(),
            start,
            rng: setup.seed.derive(&format!("crash-{host}-{start}")).rng(),
            crashed: false,
        }
    }

    fn call(&mut self, core: &mut WorkerCore<MutatedJob<Selected>, Selected>, command: &Command) {
        let shared = &self.setup.shared;
        if shared.done.get() || shared.leaving.borrow().contains(&self.host) {
            core.request_stop();
        }
        if core.config().end_offsets.is_none() {
            if let Some(ends) = shared.ends.borrow().clone() {
                core.set_end_offsets(ends);
            }
        }
        shared.finished.borrow_mut().extend(core.finished_tasks());
        let key = (self.host.clone(), self.start);
        shared.stats.borrow_mut().insert(key, core.stats());
        if let Some(step) = protocol_step(command) {
            self.maybe_crash(step);
        }
    }

    /// Crashes the host while `step` is in flight: a listed crash armed for
    /// this step, or the drawn chance.
    fn maybe_crash(&mut self, step: Step) {
        if self.crashed {
            return;
        }
        let now_ms = self.handle.now_ms();
        let shared = &self.setup.shared;
        let armed = {
            let mut armed = shared.armed.borrow_mut();
            let list = armed.entry(self.host.clone()).or_default();
            let due = list.iter().position(|&(at, s)| s == step && at <= now_ms);
            due.map(|at| list.remove(at)).is_some()
        };
        let drawn = !armed
            && now_ms + STEP_CRASHES_END_BEFORE_MS < shared.until_ms
            && self.rng.chance(self.setup.crash_at_step_chance);
        if !(armed || drawn) {
            return;
        }
        self.crashed = true;
        self.handle.crash_host(&self.host);
        let host = self.host.clone();
        shared.record(now_ms, FaultKind::CrashAtStep { host, step });
        if drawn {
            shared.step_crashed.borrow_mut().push(self.host.clone());
        }
    }
}
