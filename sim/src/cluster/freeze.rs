//! Frozen worker hosts: a process stopped whole (SIGSTOP, a stop-the-world
//! GC pause), unlike a pause ([`crate::faults::Fault::PauseHost`]), which
//! holds a host's network while its code runs on.
//!
//! What turmoil offers: turmoil 0.7 steps every running host's runtime on
//! every step and advances every host's clock (crashed ones too, so that a
//! restarted host keeps up); it has no way to skip one host or to hold its
//! clock. So the freeze is built one level down: each worker host's software
//! runs on a `LocalSet` of its own inside the host's runtime ([`freezable`]),
//! and while the host is frozen that `LocalSet` is not polled. Nothing that
//! runs in the host (its main future and every task it spawned: heartbeats,
//! senders, fetchers, timers' wake-ups, request and response handling)
//! makes progress.
//!
//! What the freeze models, exactly:
//! - the host's code stops between two of its own steps, at the next
//!   simulation step after the fault;
//! - its clock keeps running, as the monotonic clock of a stopped process
//!   does: on resume the host sees the time jump, and every timer that
//!   expired meanwhile fires at once (in deadline order, within one step);
//! - its network stack (turmoil's part of a host: the kernel's) keeps
//!   working: what the host wrote before the freeze is delivered; what peers
//!   send is buffered in its sockets until a stream's window
//!   (`tcp_capacity` segments) is full, and then the peers' writes wait, as
//!   TCP's zero window makes them;
//! - on resume the host acts on its stale state: queued records are sent
//!   with an epoch that may be fenced, a transaction the coordinator aborted
//!   meanwhile is committed, heartbeats of a session that expired go out.
//!
//! A crash or a restart of a frozen host ends its freeze (killing a stopped
//! process kills it; the restarted one is not stopped).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::task::{JoinHandle, LocalSet};

use crate::trace::{EventKind, Node, Trace};

/// Whether a host's software may run; shared by the host's [`Freezable`]
/// and the run loop.
#[derive(Debug, Default)]
pub(super) struct FreezeGate {
    frozen: Cell<bool>,
    /// The host task to wake when the freeze ends.
    waker: RefCell<Option<Waker>>,
}

impl FreezeGate {
    fn freeze(&self) {
        self.frozen.set(true);
    }

    fn thaw(&self) {
        self.frozen.set(false);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// A worker host's software on a `LocalSet` of its own, run only while the
/// host is not frozen.
pub(super) struct Freezable {
    gate: Rc<FreezeGate>,
    local: LocalSet,
    software: JoinHandle<turmoil::Result>,
}

/// Wraps `software` so that freezing the host stops it and everything it
/// spawns (see the module doc).
pub(super) fn freezable<Fut>(gate: Rc<FreezeGate>, software: Fut) -> Freezable
where
    Fut: Future<Output = turmoil::Result> + 'static,
{
    let local = new_local_set();
    let software = local.spawn_local(software);
    Freezable {
        gate,
        local,
        software,
    }
}

/// A `LocalSet` that fails the run when one of its tasks panics, as
/// turmoil's own host `LocalSet` does under `tokio_unstable` (which the
/// workspace always sets: `.cargo/config.toml`).
#[allow(unexpected_cfgs)]
fn new_local_set() -> LocalSet {
    #[cfg(tokio_unstable)]
    let mut local = LocalSet::new();
    #[cfg(not(tokio_unstable))]
    let local = LocalSet::new();
    #[cfg(tokio_unstable)]
    local.unhandled_panic(tokio::runtime::UnhandledPanic::ShutdownRuntime);
    local
}

impl Future for Freezable {
    type Output = turmoil::Result;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.gate.frozen.get() {
            *this.gate.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // Runs the host's ready tasks (the `LocalSet` itself completes only
        // when all of them have, which the host does not wait for).
        let _ = Pin::new(&mut this.local).poll(cx);
        match Pin::new(&mut this.software).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(error)) if error.is_panic() => {
                std::panic::resume_unwind(error.into_panic())
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error.to_string().into())),
        }
    }
}

/// The freeze gates of the worker hosts and the freezes to end.
#[derive(Debug, Default)]
pub(super) struct Freezes {
    gates: BTreeMap<String, Rc<FreezeGate>>,
    /// Freezes to end: (time, host).
    thaws: BTreeSet<(u64, String)>,
}

impl Freezes {
    /// The gate of a new worker host.
    pub(super) fn register(&mut self, host: &str) -> Rc<FreezeGate> {
        let gate = Rc::new(FreezeGate::default());
        let replaced = self.gates.insert(host.to_string(), Rc::clone(&gate));
        assert!(replaced.is_none(), "worker host {host} registered twice");
        gate
    }

    /// Freezes `host` until `until_ms`; `false` (skipped) if it is not a
    /// worker host or is frozen already.
    pub(super) fn start(&mut self, host: &str, until_ms: u64) -> bool {
        let Some(gate) = self.gates.get(host) else {
            return false;
        };
        if gate.frozen.get() {
            return false;
        }
        gate.freeze();
        self.thaws.insert((until_ms, host.to_string()));
        true
    }

    /// Ends the freezes due by `now`, earliest first.
    pub(super) fn end_due(&mut self, trace: &Trace, now: u64) {
        while let Some((at_ms, _)) = self.thaws.first() {
            if *at_ms > now {
                break;
            }
            let (_, host) = self.thaws.pop_first().expect("first exists");
            self.thaw(trace, &host, "");
        }
    }

    /// Ends `host`'s freeze now, if it is frozen (it crashed or restarted).
    pub(super) fn end_for_restart(&mut self, trace: &Trace, host: &str) {
        let frozen = self.gates.get(host).is_some_and(|gate| gate.frozen.get());
        if frozen {
            self.thaws.retain(|(_, thawing)| thawing != host);
            self.thaw(trace, host, " (crashed or restarted)");
        }
    }

    fn thaw(&self, trace: &Trace, host: &str, why: &str) {
        let gate = self.gates.get(host).expect("only worker hosts freeze");
        assert!(gate.frozen.get(), "{host} thawed without a freeze");
        gate.thaw();
        trace.record_name(
            Node::Cluster,
            EventKind::Fault,
            &format!("thaw {host}{why}"),
            [0; 4],
        );
    }
}
