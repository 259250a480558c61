//! The seed of the simulation running on this thread, so that a broken
//! invariant anywhere inside the simulator (an assertion in a broker's log,
//! an `expect` in the controller) names the seed that reproduces it.
//!
//! The cluster enters the context when it is built and at every step, and
//! leaves it when it is dropped; brokers and the controller only read it.
//! This module imports nothing but the seed, so that they can.

use std::cell::Cell;

use crate::seed::Seed;

thread_local! {
    static CURRENT_SEED: Cell<Option<Seed>> = const { Cell::new(None) };
}

/// The seed of the simulation running on this thread, for panic messages
/// (a broken invariant inside the simulator names the seed that shows it).
pub fn current_seed() -> String {
    CURRENT_SEED.with(|seed| match seed.get() {
        Some(seed) => seed.to_string(),
        None => "unknown".to_string(),
    })
}

/// Makes `seed` the seed of the simulation running on this thread.
pub(crate) fn enter(seed: Seed) {
    CURRENT_SEED.with(|current| current.set(Some(seed)));
}

/// Clears the thread's seed if it is still `seed` (a newer simulation on
/// the same thread keeps its own).
pub(crate) fn leave(seed: Seed) {
    CURRENT_SEED.with(|current| {
        if current.get() == Some(seed) {
            current.set(None);
        }
    });
}

/// Chains a panic hook (once per process) that prints the seed of the
/// simulation running on the panicking thread after the panic message, so
/// that every broken invariant inside the simulator (an assertion, an
/// `expect`) names the seed that reproduces it.
pub(crate) fn install_seed_panic_hook() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(seed) = CURRENT_SEED.with(Cell::get) {
                eprintln!("simulation seed {seed} (repro: EDDY_SEED={seed})");
            }
        }));
    });
}
