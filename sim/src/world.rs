//! The seeded `turmoil::Builder` wrapper and the simulated clock.
//!
//! turmoil's `Builder` takes its RNG seed from the OS and its epoch from the
//! wall clock when they are not given; [`build_sim`] always sets
//! the seed, the epoch, the tick, the simulation duration and both latency
//! bounds, so a run is a function of [`WorldSettings`] alone.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use crate::seed::Seed;

/// 2024-01-01T00:00:00Z: the default start of simulated time (record
/// timestamps and event times near this look like real data).
pub const DEFAULT_EPOCH_MS: u64 = 1_704_067_200_000;

/// Everything the turmoil network and scheduler need; nothing else is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldSettings {
    /// turmoil's RNG seed (latency draws, tokio's select! fairness).
    pub seed: Seed,
    /// Simulated wall-clock start, in ms since the Unix epoch.
    pub epoch_ms: u64,
    /// Simulated time per step.
    pub tick_ms: u64,
    /// A run that has not finished after this much simulated time fails.
    pub duration_limit_ms: u64,
    /// Per-message network latency bounds (turmoil draws from an exponential
    /// curve between them).
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Segments a TCP stream buffers per direction (turmoil flow control).
    pub tcp_capacity: usize,
}

/// Why [`WorldSettings`] cannot build a simulation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    #[error("latency_min_ms {min} is greater than latency_max_ms {max}")]
    LatencyBounds { min: u64, max: u64 },
    #[error("tick_ms must be positive")]
    ZeroTick,
    #[error("tcp_capacity must be positive")]
    ZeroCapacity,
}

impl WorldSettings {
    pub fn validate(&self) -> Result<(), WorldError> {
        if self.latency_min_ms > self.latency_max_ms {
            return Err(WorldError::LatencyBounds {
                min: self.latency_min_ms,
                max: self.latency_max_ms,
            });
        }
        if self.tick_ms == 0 {
            return Err(WorldError::ZeroTick);
        }
        if self.tcp_capacity == 0 {
            return Err(WorldError::ZeroCapacity);
        }
        Ok(())
    }
}

/// Builds a turmoil simulation with every nondeterministic default replaced
/// by an explicit setting.
pub fn build_sim(settings: &WorldSettings) -> Result<turmoil::Sim<'static>, WorldError> {
    settings.validate()?;
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_millis(settings.epoch_ms);
    let sim = turmoil::Builder::new()
        .rng_seed(settings.seed.value())
        .epoch(epoch)
        .tick_duration(Duration::from_millis(settings.tick_ms))
        .simulation_duration(Duration::from_millis(settings.duration_limit_ms))
        .min_message_latency(Duration::from_millis(settings.latency_min_ms))
        .max_message_latency(Duration::from_millis(settings.latency_max_ms))
        .tcp_capacity(settings.tcp_capacity)
        .udp_capacity(settings.tcp_capacity)
        .build();
    Ok(sim)
}

thread_local! {
    /// The simulated time outside of any host (the run loop sets it before
    /// each step, so that faults applied between steps are stamped).
    static OUTSIDE_HOST_NOW_MS: Cell<u64> = const { Cell::new(0) };
}

/// Simulated milliseconds since the start of the run: turmoil's clock inside
/// a host, the run loop's clock between steps. Never the wall clock.
pub fn now_ms() -> u64 {
    match turmoil::sim_elapsed() {
        Some(elapsed) => elapsed.as_millis() as u64,
        None => OUTSIDE_HOST_NOW_MS.with(Cell::get),
    }
}

/// Sets the clock [`now_ms`] reports outside hosts (the run loop's job).
pub(crate) fn set_outside_host_now_ms(now_ms: u64) {
    OUTSIDE_HOST_NOW_MS.with(|cell| cell.set(now_ms));
}
