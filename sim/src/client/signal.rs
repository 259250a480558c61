//! A change counter that tasks can wait on: single-threaded, no lost
//! wake-ups (a waiter remembers the generation it saw, and any change after
//! it wakes the waiter, even one made before it started waiting).

use std::cell::Cell;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Signal {
    generation: Cell<u64>,
    notify: Notify,
}

impl Signal {
    /// The current generation; pass it to [`Signal::changed_since`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Records a change and wakes every waiter.
    pub(crate) fn raise(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        self.notify.notify_waiters();
    }

    /// Waits until the generation differs from `seen`.
    pub(crate) async fn changed_since(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            if self.generation.get() != seen {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the generation differs from `seen` or `deadline` passes;
    /// `true` if it changed.
    pub(crate) async fn changed_since_or(&self, seen: u64, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, self.changed_since(seen))
            .await
            .is_ok()
    }
}
