//! The simulator's checkpoint store: one store shared by every worker host
//! of a run, as a shared file system would be, with seeded faults.
//!
//! [`SimCheckpointStore`] holds the snapshots (each as its
//! [envelope](eddyline_engine::checkpoint::envelope), so a read checks
//! what a real store checks); [`SimCheckpointStore::on_host`] gives the
//! [`CheckpointStore`] a worker uses, [`HostStore`], which knows the name of
//! the worker host it runs on. What [`SimStoreConfig`] injects, every draw
//! from one [`DetRng`] seeded `run seed.derive("checkpoint-store")`, in a
//! fixed order (each write and each read draws its duration, then its
//! failure, whatever the rates), so the same seed gives the same faults:
//!
//! - every write and every read takes a simulated time drawn from a range
//!   (`tokio::time::sleep`): a host that crashes meanwhile drops the future
//!   with everything else it ran, and the write never happens;
//! - writes and reads fail with [`Error::Store`] at configured rates (a
//!   failed write leaves nothing behind);
//! - lost unsynced writes ([`SimStoreConfig::ack_before_sync_ms`]): a
//!   write is acknowledged before it is synced; until its sync completes,
//!   that many ms later, it is visible to every reader, and it is lost if
//!   the host that wrote it crashes first (the older version of the same
//!   id, if there was one, is what remains; usually nothing). This breaks
//!   the store's durability promise on purpose, for tests that show what a
//!   worker does when the store does.
//!
//! How a crash is known: the cluster's run loop notes the time of every
//! crash and restart of a worker host ([`ClusterHandle::host_crash_times`]);
//! an unsynced write remembers how many crashes its host had when it was
//! acknowledged, and is lost if a later one came before its sync time. The
//! store works this out when it is next used (every call, and
//! [`SimCheckpointStore::stats`]), from those times, so the outcome does not
//! depend on when it is asked. The host name a worker passes must be the
//! name it was added under (`SimCluster::host`); on a client host, which
//! cannot crash, nothing is ever lost.
//!
//! Every injected fault is counted ([`SimStoreStats`]), listed
//! ([`SimCheckpointStore::injected_faults`]) and recorded in the run's
//! trace as a fault, so tests can assert that it happened.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::checkpoint::envelope::{self, check_id, check_job, check_task};
use eddyline_engine::checkpoint::{CheckpointStore, SnapshotId, TopicStore};
use eddyline_engine::transport::ProducerRecord;
use eddyline_engine::{Error, Result};

use crate::SimTransport;
use crate::cluster::ClusterHandle;
use crate::seed::{DetRng, Seed};
use crate::world;

/// The name of the store's child seed.
pub const SEED_NAME: &str = "checkpoint-store";

/// How many injected faults [`SimCheckpointStore::injected_faults`] keeps
/// (the most recent; the counts in [`SimStoreStats`] cover all).
pub const INJECTED_FAULTS_KEPT: usize = 4_096;

/// What the simulated store does to writes and reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SimStoreConfig {
    /// A write takes a simulated time drawn uniformly from
    /// `write_ms_min..=write_ms_max`.
    pub write_ms_min: u64,
    pub write_ms_max: u64,
    /// A read takes a simulated time drawn uniformly from
    /// `read_ms_min..=read_ms_max`.
    pub read_ms_min: u64,
    pub read_ms_max: u64,
    /// The share of writes that fail with [`Error::Store`] (0.0 to 1.0).
    pub write_failure_rate: f64,
    /// The share of reads that fail with [`Error::Store`] (0.0 to 1.0).
    pub read_failure_rate: f64,
    /// `None`: a write is acknowledged once it is durable. `Some(ms)`: it
    /// is acknowledged before it is synced, and lost if its host crashes
    /// within `ms` of the acknowledgement (see the module doc).
    pub ack_before_sync_ms: Option<u64>,
}

impl SimStoreConfig {
    /// No faults: writes take 2–10 ms, reads 1–3 ms, nothing fails, every
    /// acknowledged write is durable.
    pub fn none() -> Self {
        Self {
            write_ms_min: 2,
            write_ms_max: 10,
            read_ms_min: 1,
            read_ms_max: 3,
            write_failure_rate: 0.0,
            read_failure_rate: 0.0,
            ack_before_sync_ms: None,
        }
    }

    /// Refuses rates outside `0.0..=1.0` and empty time ranges.
    pub fn validate(&self) -> Result<()> {
        let rates = [
            ("write_failure_rate", self.write_failure_rate),
            ("read_failure_rate", self.read_failure_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::Invalid(format!(
                    "simulated checkpoint store: {name} = {rate} is not a rate in 0..=1"
                )));
            }
        }
        let ranges = [
            ("write_ms", self.write_ms_min, self.write_ms_max),
            ("read_ms", self.read_ms_min, self.read_ms_max),
        ];
        for (name, min, max) in ranges {
            if min > max || max >= u64::MAX / 2 {
                return Err(Error::Invalid(format!(
                    "simulated checkpoint store: {name}_min = {min} and {name}_max = {max} \
                     are not a range"
                )));
            }
        }
        Ok(())
    }
}

/// What the store did, counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStoreStats {
    /// Writes acknowledged (synced ones and unsynced ones).
    pub writes: u64,
    /// Writes failed on purpose.
    pub write_failures: u64,
    /// Writes acknowledged before their sync.
    pub unsynced_writes: u64,
    /// Unsynced writes whose sync then completed.
    pub writes_synced_late: u64,
    /// Unsynced writes lost in their writer's crash.
    pub writes_lost: u64,
    /// Reads that returned a snapshot.
    pub reads: u64,
    /// Reads of a snapshot the store does not have.
    pub reads_missing: u64,
    /// Reads failed on purpose.
    pub read_failures: u64,
    /// Snapshots removed by collects.
    pub collected: u64,
}

/// The kinds of injected faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InjectedKind {
    WriteFailed,
    ReadFailed,
    /// An unsynced write lost in its writer's crash (`at_ms`: the crash).
    UnsyncedWriteLost,
}

/// One injected fault: when, on which host, what, and which snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    pub at_ms: u64,
    pub host: String,
    pub kind: InjectedKind,
    pub id: SnapshotId,
}

/// A write acknowledged and not yet synced.
#[derive(Clone, Debug)]
struct Unsynced {
    sealed: Vec<u8>,
    host: String,
    /// How many crashes its host had when it was acknowledged.
    crashes_before: usize,
    sync_at_ms: u64,
}

/// One snapshot id's versions: the durable one and the unsynced ones
/// written after it (oldest first); a read sees the newest.
#[derive(Clone, Debug, Default)]
struct Entry {
    durable: Option<Vec<u8>>,
    unsynced: Vec<Unsynced>,
}

impl Entry {
    fn visible(&self) -> Option<&Vec<u8>> {
        self.unsynced
            .last()
            .map(|write| &write.sealed)
            .or(self.durable.as_ref())
    }
}

struct State {
    config: SimStoreConfig,
    seed: Seed,
    rng: DetRng,
    cluster: ClusterHandle,
    entries: BTreeMap<SnapshotId, Entry>,
    stats: SimStoreStats,
    faults: VecDeque<InjectedFault>,
}

/// The store every worker host of a run shares (cheap to clone: one `Rc`;
/// not `Send`, as everything in a turmoil simulation).
#[derive(Clone)]
pub struct SimCheckpointStore {
    state: Rc<RefCell<State>>,
}

impl SimCheckpointStore {
    /// A store for the run of `cluster`, drawing from the run's seed
    /// derived as [`SEED_NAME`].
    pub fn new(cluster: &ClusterHandle, config: SimStoreConfig) -> Result<Self> {
        config.validate()?;
        let seed = cluster.seed().derive(SEED_NAME);
        Ok(Self {
            state: Rc::new(RefCell::new(State {
                config,
                seed,
                rng: seed.rng(),
                cluster: cluster.clone(),
                entries: BTreeMap::new(),
                stats: SimStoreStats::default(),
                faults: VecDeque::new(),
            })),
        })
    }

    /// The store as the worker on host `host` uses it.
    pub fn on_host(&self, host: &str) -> HostStore {
        HostStore {
            store: self.clone(),
            host: host.to_string(),
        }
    }

    /// The store's child seed.
    pub fn seed(&self) -> Seed {
        self.state.borrow().seed
    }

    pub fn stats(&self) -> SimStoreStats {
        let mut state = self.state.borrow_mut();
        state.settle(world::now_ms());
        state.stats
    }

    /// The injected faults, oldest first (at most [`INJECTED_FAULTS_KEPT`]).
    pub fn injected_faults(&self) -> Vec<InjectedFault> {
        let mut state = self.state.borrow_mut();
        state.settle(world::now_ms());
        state.faults.iter().cloned().collect()
    }

    /// The snapshots a read would find now, in id order.
    pub fn snapshot_ids(&self) -> Vec<SnapshotId> {
        let mut state = self.state.borrow_mut();
        state.settle(world::now_ms());
        state.entries.keys().cloned().collect()
    }

    /// Flips one bit in the stored bytes of `id` (every version): for
    /// tests of what a worker does with a corrupt snapshot. `false` if the
    /// store does not have it.
    pub fn damage(&self, id: &SnapshotId) -> bool {
        let mut state = self.state.borrow_mut();
        state.settle(world::now_ms());
        let Some(entry) = state.entries.get_mut(id) else {
            return false;
        };
        let versions = entry
            .durable
            .iter_mut()
            .chain(entry.unsynced.iter_mut().map(|write| &mut write.sealed));
        for sealed in versions {
            // The middle byte: inside the payload or the id, never absent.
            let middle = sealed.len() / 2;
            sealed[middle] ^= 0x01;
        }
        true
    }

    /// A write's or a read's duration and whether it fails, drawn in this
    /// order every time.
    fn draw(&self, write: bool) -> (Duration, bool) {
        let mut state = self.state.borrow_mut();
        let config = state.config.clone();
        let (min, max, rate) = if write {
            (
                config.write_ms_min,
                config.write_ms_max,
                config.write_failure_rate,
            )
        } else {
            (
                config.read_ms_min,
                config.read_ms_max,
                config.read_failure_rate,
            )
        };
        let duration_ms = state.rng.range_u64(min, max + 1);
        // 53 random bits: a uniform draw from [0, 1), drawn at every rate.
        let unit = (state.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (Duration::from_millis(duration_ms), unit < rate)
    }
}

impl State {
    /// Syncs the unsynced writes whose time came and drops those whose
    /// host crashed first (see the module doc).
    fn settle(&mut self, now_ms: u64) {
        let mut lost = Vec::new();
        for (id, entry) in &mut self.entries {
            let mut kept = Vec::new();
            for write in std::mem::take(&mut entry.unsynced) {
                let crashes = self.cluster.host_crash_times(&write.host);
                let crash = crashes
                    .iter()
                    .skip(write.crashes_before)
                    .find(|&&at_ms| at_ms < write.sync_at_ms);
                if let Some(&at_ms) = crash {
                    self.stats.writes_lost += 1;
                    lost.push((at_ms, write.host, id.clone()));
                } else if now_ms >= write.sync_at_ms {
                    self.stats.writes_synced_late += 1;
                    entry.durable = Some(write.sealed);
                } else {
                    kept.push(write);
                }
            }
            entry.unsynced = kept;
        }
        self.entries.retain(|_, entry| entry.visible().is_some());
        for (at_ms, host, id) in lost {
            self.inject(at_ms, &host, InjectedKind::UnsyncedWriteLost, &id);
        }
    }

    /// Counts nothing: records an injected fault and traces it.
    fn inject(&mut self, at_ms: u64, host: &str, kind: InjectedKind, id: &SnapshotId) {
        let what = match kind {
            InjectedKind::WriteFailed => "write failed",
            InjectedKind::ReadFailed => "read failed",
            InjectedKind::UnsyncedWriteLost => "unsynced write lost in the crash",
        };
        self.cluster.trace_fault(&format!(
            "checkpoint store: {what}: {id} on {host} at {at_ms} ms"
        ));
        if self.faults.len() == INJECTED_FAULTS_KEPT {
            self.faults.pop_front();
        }
        self.faults.push_back(InjectedFault {
            at_ms,
            host: host.to_string(),
            kind,
            id: id.clone(),
        });
    }

    fn finish_write(
        &mut self,
        host: &str,
        id: &SnapshotId,
        sealed: Vec<u8>,
        fails: bool,
    ) -> Result<()> {
        let now_ms = world::now_ms();
        self.settle(now_ms);
        if fails {
            self.stats.write_failures += 1;
            self.inject(now_ms, host, InjectedKind::WriteFailed, id);
            return Err(Error::Store(format!(
                "simulated checkpoint store: write of {id} on {host} failed (injected)"
            )));
        }
        self.stats.writes += 1;
        let crashes_before = self.cluster.host_crash_times(host).len();
        let entry = self.entries.entry(id.clone()).or_default();
        match self.config.ack_before_sync_ms {
            None => {
                entry.durable = Some(sealed);
                // A newer durable version replaces what was not synced.
                entry.unsynced.clear();
            }
            Some(delay_ms) => {
                self.stats.unsynced_writes += 1;
                entry.unsynced.push(Unsynced {
                    sealed,
                    host: host.to_string(),
                    crashes_before,
                    sync_at_ms: now_ms.saturating_add(delay_ms),
                });
            }
        }
        Ok(())
    }

    fn finish_read(&mut self, host: &str, id: &SnapshotId, fails: bool) -> Result<Vec<u8>> {
        let now_ms = world::now_ms();
        self.settle(now_ms);
        if fails {
            self.stats.read_failures += 1;
            self.inject(now_ms, host, InjectedKind::ReadFailed, id);
            return Err(Error::Store(format!(
                "simulated checkpoint store: read of {id} on {host} failed (injected)"
            )));
        }
        let Some(sealed) = self.entries.get(id).and_then(Entry::visible) else {
            self.stats.reads_missing += 1;
            return Err(Error::MissingSnapshot(format!(
                "{id} is not in the simulated checkpoint store"
            )));
        };
        let payload = envelope::open(id, sealed)?;
        self.stats.reads += 1;
        Ok(payload)
    }

    fn collect(&mut self, job: &str, task: i32, below: u64) -> usize {
        self.settle(world::now_ms());
        let before = self.entries.len();
        self.entries
            .retain(|id, _| !(id.job == job && id.task == task && id.checkpoint < below));
        let removed = before - self.entries.len();
        self.stats.collected += removed as u64;
        removed
    }
}

/// The simulated store as the worker on one host uses it (cheap to clone).
#[derive(Clone)]
pub struct HostStore {
    store: SimCheckpointStore,
    host: String,
}

impl HostStore {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The shared store (for stats and checks).
    pub fn shared(&self) -> &SimCheckpointStore {
        &self.store
    }
}

impl CheckpointStore for HostStore {
    /// Takes its drawn time, then fails or is acknowledged (durable, or
    /// unsynced: see the module doc); no records for the transaction.
    async fn write(&mut self, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<ProducerRecord>> {
        check_id(id)?;
        let sealed = envelope::seal(id, bytes);
        let (duration, fails) = self.store.draw(true);
        tokio::time::sleep(duration).await;
        let mut state = self.store.state.borrow_mut();
        state.finish_write(&self.host, id, sealed, fails)?;
        Ok(Vec::new())
    }

    async fn read(&mut self, id: &SnapshotId) -> Result<Vec<u8>> {
        check_id(id)?;
        let (duration, fails) = self.store.draw(false);
        tokio::time::sleep(duration).await;
        let mut state = self.store.state.borrow_mut();
        state.finish_read(&self.host, id, fails)
    }

    /// Removes at once, without a drawn time or faults.
    async fn collect(&mut self, job: &str, task: i32, below: u64) -> Result<usize> {
        check_job(job)?;
        check_task(task)?;
        Ok(self.store.state.borrow_mut().collect(job, task, below))
    }
}

/// One worker host's checkpoint store in a simulated run: its handle on
/// the simulator's shared store, or the Kafka topic store on the simulated
/// cluster (chunks inside the worker's transaction).
pub enum WorkerStore {
    Sim(HostStore),
    Topic(Box<TopicStore<SimTransport>>),
}

impl CheckpointStore for WorkerStore {
    async fn write(&mut self, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<ProducerRecord>> {
        match self {
            WorkerStore::Sim(store) => store.write(id, bytes).await,
            WorkerStore::Topic(store) => store.write(id, bytes).await,
        }
    }

    async fn read(&mut self, id: &SnapshotId) -> Result<Vec<u8>> {
        match self {
            WorkerStore::Sim(store) => store.read(id).await,
            WorkerStore::Topic(store) => store.read(id).await,
        }
    }

    async fn collect(&mut self, job: &str, task: i32, below: u64) -> Result<usize> {
        match self {
            WorkerStore::Sim(store) => store.collect(job, task, below).await,
            WorkerStore::Topic(store) => store.collect(job, task, below).await,
        }
    }
}
