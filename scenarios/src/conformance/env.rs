//! What differs between the suite's targets: the clock, names, replication
//! and control over brokers.

use std::cell::Cell;
use std::time::Duration;

use eddyline_engine::transport::{TopicPartition, Transport};

/// What an env can do to the brokers behind its transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerControl {
    /// A cluster of several brokers: the env crashes the broker that leads a
    /// partition, waits until another replica is elected, and brings the
    /// crashed broker back as a follower (the simulator; a real cluster of
    /// three nodes with stop and start commands).
    CrashLeader,
    /// A single broker: the env kills it with SIGKILL and starts it again
    /// with the same data (real Kafka with a restart command).
    RestartBroker { command: String },
    /// No control: checks that need a broker fault are skipped, never passed.
    None,
}

/// The environment a conformance run happens in.
///
/// Everything a check needs besides the `Transport` comes from here, so that
/// the checks themselves are the same code on every target.
#[allow(async_fn_in_trait)]
pub trait ConformanceEnv {
    type Transport: Transport;

    fn transport(&self) -> &Self::Transport;

    /// `"sim"` or `"kafka"`, for the report.
    fn target_name(&self) -> String {
        self.transport().name().to_string()
    }

    /// Sleeps on the target's clock: tokio's timer, which is simulated time
    /// inside turmoil and real time against a broker.
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Time since the env was created, on the clock [`Self::sleep`] uses.
    fn elapsed(&self) -> Duration;

    /// The target's wall clock, in ms since the Unix epoch (the simulated
    /// clock in the simulator). Checks stamp records with it: a broker
    /// deletes records whose timestamps are older than its retention time.
    fn wall_clock_ms(&self) -> i64;

    /// Names unique to this run (topics, groups and transactional ids
    /// persist on a real broker between runs).
    fn names(&self) -> &RunNames;

    /// The replication factor of topics the checks create, and their
    /// `min.insync.replicas` (`None`: the broker's default).
    fn replication(&self) -> (i16, Option<i16>);

    /// How long one check may take before it is failed as hung.
    fn check_budget(&self) -> Duration;

    /// The longest a check waits for something the target does on its own
    /// (a rebalance, a coordinator's timeout abort, a read to reach an
    /// offset) before deciding it did not happen.
    fn patience(&self) -> Duration;

    /// What [`Self::fail_leader`] does.
    fn broker_control(&self) -> BrokerControl;

    /// How many brokers the target has. A check that needs more (see the
    /// suite's table) is reported as "needs N brokers" on a smaller target,
    /// never run and never passed.
    fn broker_count(&self) -> usize;

    /// The partition's leader, replicas and in-sync replicas as the
    /// cluster's metadata reports them now.
    async fn replica_state(&self, partition: &TopicPartition) -> Result<ReplicaState, String>;

    /// Stops broker `node` the hard way (a crash or a SIGKILL, no clean
    /// shutdown) and leaves it down; returns once it no longer serves, with
    /// a one-line description. Errors with a reason if the env cannot.
    async fn stop_broker(&self, node: i32) -> Result<String, String>;

    /// Starts broker `node`, stopped by [`Self::stop_broker`], again with
    /// its data; returns once it serves again (it may still be catching up
    /// as a follower), with a one-line description.
    async fn start_broker(&self, node: i32) -> Result<String, String>;

    /// Takes away the leader of `partition` the hard way (a crash or a
    /// SIGKILL, no clean shutdown) and returns once the partition has a
    /// leader again, with a one-line description of what happened. Errors
    /// with a reason if the env has no control or the fault did not work.
    async fn fail_leader(&self, partition: &TopicPartition) -> Result<String, String>;

    /// Makes produce requests for `partition` that are in flight now, or
    /// sent in the next moment, reach the leader and be appended while
    /// their acknowledgements are lost, so that the producer retries
    /// batches the broker already has; returns once the partition is
    /// reachable again, with a one-line description. The simulator drops
    /// the leader's answers to this host for a while; a real leader is
    /// killed (a single broker is restarted, a cluster fails over), and the
    /// connections die with requests in flight.
    async fn lose_acknowledgements(&self, partition: &TopicPartition) -> Result<String, String>;
}

/// A partition's replicas as the cluster's metadata reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    /// `None`: no live in-sync replica leads it (the partition is offline).
    pub leader: Option<i32>,
    /// The assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// Run-unique names: a prefix for the run and a counter, so two checks never
/// share a topic, group or transactional id, and two runs against one broker
/// never meet.
#[derive(Debug)]
pub struct RunNames {
    prefix: String,
    next: Cell<u32>,
}

impl RunNames {
    /// `prefix` may contain only characters Kafka allows in topic names.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        assert!(
            !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'),
            "run prefix {prefix:?} must be a legal Kafka topic name"
        );
        Self {
            prefix,
            next: Cell::new(0),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A fresh name: `<prefix>-<what>-<n>`.
    pub fn fresh(&self, what: &str) -> String {
        let n = self.next.get();
        self.next.set(n + 1);
        format!("{}-{what}-{n}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_never_repeat_within_a_run() {
        let names = RunNames::new("conf-1");
        let a = names.fresh("orders");
        let b = names.fresh("orders");
        assert_ne!(a, b);
        assert!(a.starts_with("conf-1-orders-"));
    }

    #[test]
    #[should_panic(expected = "legal Kafka topic name")]
    fn a_prefix_kafka_would_refuse_is_a_bug() {
        RunNames::new("has space");
    }
}
