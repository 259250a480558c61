//! The suite against a real Apache Kafka cluster, through the rdkafka
//! transport: a single node or several (`scripts/kafka start` starts one
//! node, `scripts/kafka --brokers 3 start` three).
//!
//! The env learns the cluster's size from its metadata when it connects, and
//! acts on brokers through shell commands the caller gives
//! ([`BrokerCommands`]), `{node}` in each replaced by a broker id:
//!
//! - on several brokers, `fail_leader` finds the partition's leader in the
//!   metadata, stops it with the stop command (SIGKILL), waits until the
//!   metadata names another leader (Kafka's controller fences a broker whose
//!   heartbeats stopped after `broker.session.timeout.ms`, and moves its
//!   leaderships to other in-sync replicas:
//!   `ReplicationControlManager.maybeFenceOneStaleBroker`, then
//!   `handleBrokerFenced`), starts it again with the start command and waits
//!   until it is back in the partition's ISR;
//! - on a single node a partition leader cannot fail over: the restart
//!   command kills the only broker and starts it again on the same ports
//!   and data, and the failover checks verify that acknowledged writes
//!   survive the crash. Without commands they are skipped.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::TopicPartition;

use super::env::{BrokerControl, ConformanceEnv, ReplicaState, RunNames};
use super::{Report, SuiteOptions, run_suite};

/// How long one check may run against a broker (a failover included).
const CHECK_BUDGET: Duration = Duration::from_secs(120);
/// How long a check waits for the broker to do something on its own.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the env waits for a new leader after stopping one (Kafka's
/// `broker.session.timeout.ms` is 9 s, plus a controller election if the
/// stopped node was the active controller), and for a started broker to
/// register and rejoin an ISR.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(60);
/// How often the env reads the metadata while it waits.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// What a command writes where a broker id goes.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// Shell commands (run with `sh -c`) that act on one broker of the cluster,
/// [`NODE_PLACEHOLDER`] in each replaced by the broker's id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerCommands {
    /// Kills the broker with SIGKILL and starts it again on the same address
    /// and data; returns once it serves (`scripts/kafka restart-node {node}`).
    pub restart: Option<String>,
    /// Kills the broker with SIGKILL and leaves it down; returns once its
    /// process is gone (`scripts/kafka kill-node {node}`).
    pub stop: Option<String>,
    /// Starts a stopped broker again with its data; returns once it serves
    /// (`scripts/kafka start-node {node}`).
    pub start: Option<String>,
}

impl BrokerCommands {
    fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("restart", &self.restart),
            ("stop", &self.stop),
            ("start", &self.start),
        ]
        .into_iter()
        .filter_map(|(what, command)| command.as_ref().map(|c| (what, c)))
    }
}

/// `template` with every [`NODE_PLACEHOLDER`] replaced by `node`.
pub fn command_for_node(template: &str, node: i32) -> String {
    template.replace(NODE_PLACEHOLDER, &node.to_string())
}

/// The one-line error of a broker command that exited unsuccessfully: the
/// command, its exit status and the last line it wrote to stderr.
fn command_failure(what: &str, command: &str, status: &str, stderr: &str) -> String {
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("no output on stderr");
    format!("the {what} command {command:?} failed ({status}): {last}")
}

/// A real cluster, a run prefix that no earlier run used, and optionally
/// the commands that act on its brokers.
pub struct KafkaEnv {
    transport: KafkaTransport,
    bootstrap: String,
    names: RunNames,
    started: tokio::time::Instant,
    commands: BrokerCommands,
    /// The live brokers' ids when the env connected.
    brokers: Vec<i32>,
}

impl KafkaEnv {
    /// Connects to the cluster that `config` names and reads its brokers; a
    /// one-line error naming the address if it cannot be reached, or the
    /// command that lacks `{node}` on a cluster of several brokers.
    pub async fn connect(config: KafkaConfig, commands: BrokerCommands) -> Result<Self, String> {
        let bootstrap = config.bootstrap().to_string();
        let transport = KafkaTransport::connect(config)
            .await
            .map_err(|e| e.message)?;
        let brokers = transport
            .cluster_metadata(None)
            .await
            .map_err(|e| e.message)?
            .brokers;
        if brokers.len() > 1
            && let Some((what, command)) = commands
                .all()
                .find(|(_, command)| !command.contains(NODE_PLACEHOLDER))
        {
            return Err(format!(
                "the {what} command {command:?} has no {NODE_PLACEHOLDER} placeholder: on a cluster of {} brokers it must say which broker it acts on",
                brokers.len()
            ));
        }
        // Topics, groups and transactional ids persist on a broker: every run
        // takes names no earlier run used (real time is fine here: this env
        // never runs inside the simulator).
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let names = RunNames::new(format!("eddy-conf-{now_ms}-{}", std::process::id()));
        Ok(Self {
            transport,
            bootstrap,
            names,
            started: tokio::time::Instant::now(),
            commands,
            brokers,
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The live brokers' ids when the env connected, ascending.
    pub fn brokers(&self) -> &[i32] {
        &self.brokers
    }

    /// Runs a broker command for `node` and returns its stdout; a one-line
    /// error naming the command and its last stderr line if it fails.
    async fn run_command(&self, what: &str, template: &str, node: i32) -> Result<String, String> {
        let command = command_for_node(template, node);
        let shell = command.clone();
        let output =
            tokio::task::spawn_blocking(move || Command::new("sh").arg("-c").arg(&shell).output())
                .await
                .map_err(|e| format!("running the {what} command: {e}"))?
                .map_err(|e| format!("running the {what} command {command:?}: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(command_failure(
                what,
                &command,
                &output.status.to_string(),
                &stderr,
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits, reading the partition's metadata every [`LOOK_EVERY`], until
    /// `done` holds, for at most [`FAILOVER_PATIENCE`]; errors with `waiting_for`
    /// and the last state (or metadata error) seen.
    async fn await_replicas(
        &self,
        partition: &TopicPartition,
        waiting_for: &str,
        done: impl Fn(&ReplicaState) -> bool,
    ) -> Result<ReplicaState, String> {
        let deadline = self.elapsed() + FAILOVER_PATIENCE;
        loop {
            let seen = self.replica_state(partition).await;
            match &seen {
                Ok(state) if done(state) => return Ok(state.clone()),
                _ if self.elapsed() >= deadline => {
                    let last = match seen {
                        Ok(state) => format!("{state:?}"),
                        Err(reason) => reason,
                    };
                    return Err(format!(
                        "{waiting_for} within {} ms; last seen: {last}",
                        FAILOVER_PATIENCE.as_millis()
                    ));
                }
                _ => tokio::time::sleep(LOOK_EVERY).await,
            }
        }
    }

    /// The partition's leader. Waits for one: on several brokers a topic
    /// just created may be unknown to the broker that answers for a moment
    /// (each broker learns of it from the metadata log on its own; seen as
    /// "topic ... does not exist" right after another broker had listed it).
    async fn current_leader(&self, partition: &TopicPartition) -> Result<i32, String> {
        let state = self
            .await_replicas(partition, &format!("{partition} had no leader"), |state| {
                state.leader.is_some()
            })
            .await?;
        Ok(state.leader.expect("waited for a leader"))
    }

    /// The single node's crash: the restart command, and the broker must come
    /// back where the clients look for it.
    async fn restart_single_broker(&self, partition: &TopicPartition) -> Result<String, String> {
        let Some(command) = self.commands.restart.clone() else {
            return Err("no broker control: pass --broker-restart-cmd".to_string());
        };
        let node = self.brokers.first().copied().unwrap_or(1);
        let began = self.elapsed();
        let stdout = self.run_command("restart", &command, node).await?;
        // `scripts/kafka restart-node` prints the addresses it serves.
        if let Some(address) = stdout.lines().find_map(|l| l.strip_prefix("BOOTSTRAP=")) {
            if address.trim() != self.bootstrap {
                return Err(format!(
                    "the restart command brought the broker back at {address}, not at {}",
                    self.bootstrap
                ));
            }
        }
        self.transport.check_connection().await.map_err(|e| {
            format!(
                "the broker did not come back after the restart: {}",
                e.message
            )
        })?;
        Ok(format!(
            "killed the only broker (leader of {partition}) with SIGKILL and restarted it: serving again after {} ms",
            self.elapsed().saturating_sub(began).as_millis()
        ))
    }

    /// A failover between replicas: stop the leader, wait for another one,
    /// start the old leader again and wait until it is back in the ISR.
    async fn fail_over(
        &self,
        partition: &TopicPartition,
        stop: &str,
        start: &str,
    ) -> Result<String, String> {
        let leader = self.current_leader(partition).await?;
        let began = self.elapsed();
        self.run_command("stop", stop, leader).await?;
        let elected = self
            .await_replicas(
                partition,
                &format!("no new leader of {partition} after broker {leader} was stopped"),
                |state| state.leader.is_some_and(|new| new != leader),
            )
            .await?;
        let elected_after = self.elapsed().saturating_sub(began);
        let restarted = self.elapsed();
        self.run_command("start", start, leader).await?;
        let back = self
            .await_replicas(
                partition,
                &format!("broker {leader} did not rejoin the ISR of {partition}"),
                |state| state.leader.is_some() && state.isr.contains(&leader),
            )
            .await?;
        Ok(format!(
            "stopped broker {leader} (leader of {partition}) with SIGKILL; broker {} was elected after {} ms (ISR {:?}); broker {leader} started again and was back in the ISR {:?} after {} ms",
            elected.leader.unwrap_or(-1),
            elected_after.as_millis(),
            elected.isr,
            back.isr,
            self.elapsed().saturating_sub(restarted).as_millis()
        ))
    }

    /// On several brokers with only a restart command: the leader is killed
    /// and started again at once, and must be back in the ISR.
    async fn restart_leader(
        &self,
        partition: &TopicPartition,
        restart: &str,
    ) -> Result<String, String> {
        let leader = self.current_leader(partition).await?;
        let began = self.elapsed();
        self.run_command("restart", restart, leader).await?;
        let back = self
            .await_replicas(
                partition,
                &format!("broker {leader} did not rejoin the ISR of {partition} after its restart"),
                |state| state.leader.is_some() && state.isr.contains(&leader),
            )
            .await?;
        Ok(format!(
            "killed broker {leader} (leader of {partition}) with SIGKILL and restarted it; leader {} and ISR {:?} after {} ms",
            back.leader.unwrap_or(-1),
            back.isr,
            self.elapsed().saturating_sub(began).as_millis()
        ))
    }
}

impl ConformanceEnv for KafkaEnv {
    type Transport = KafkaTransport;

    fn transport(&self) -> &KafkaTransport {
        &self.transport
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn wall_clock_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }

    fn names(&self) -> &RunNames {
        &self.names
    }

    fn replication(&self) -> (i16, Option<i16>) {
        if self.broker_count() >= 3 {
            (3, Some(2))
        } else {
            (1, None)
        }
    }

    fn check_budget(&self) -> Duration {
        CHECK_BUDGET
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    fn broker_control(&self) -> BrokerControl {
        let commands = &self.commands;
        if self.broker_count() > 1 && commands.stop.is_some() && commands.start.is_some() {
            return BrokerControl::CrashLeader;
        }
        match &commands.restart {
            Some(command) => BrokerControl::RestartBroker {
                command: command.clone(),
            },
            None => BrokerControl::None,
        }
    }

    fn broker_count(&self) -> usize {
        self.brokers.len()
    }

    async fn replica_state(&self, partition: &TopicPartition) -> Result<ReplicaState, String> {
        let metadata = self
            .transport
            .cluster_metadata(Some(&partition.topic))
            .await
            .map_err(|e| e.message)?;
        let found = metadata
            .partitions
            .into_iter()
            .find(|p| p.partition == partition.partition)
            .ok_or_else(|| {
                format!(
                    "the metadata of {} has no partition {partition}",
                    partition.topic
                )
            })?;
        Ok(ReplicaState {
            leader: found.leader,
            replicas: found.replicas,
            isr: found.isr,
        })
    }

    async fn stop_broker(&self, node: i32) -> Result<String, String> {
        let Some(command) = self.commands.stop.clone() else {
            return Err(format!(
                "cannot stop broker {node}: no stop command (pass --broker-stop-cmd)"
            ));
        };
        let began = self.elapsed();
        self.run_command("stop", &command, node).await?;
        Ok(format!(
            "stopped broker {node} with SIGKILL: down after {} ms",
            self.elapsed().saturating_sub(began).as_millis()
        ))
    }

    async fn start_broker(&self, node: i32) -> Result<String, String> {
        let Some(command) = self.commands.start.clone() else {
            return Err(format!(
                "cannot start broker {node}: no start command (pass --broker-start-cmd)"
            ));
        };
        let began = self.elapsed();
        self.run_command("start", &command, node).await?;
        // The command returns once the broker serves; the metadata must list it too.
        let deadline = self.elapsed() + FAILOVER_PATIENCE;
        loop {
            match self.transport.cluster_metadata(None).await {
                Ok(metadata) if metadata.brokers.contains(&node) => break,
                _ if self.elapsed() >= deadline => {
                    return Err(format!(
                        "broker {node} was started but the metadata did not list it within {} ms",
                        FAILOVER_PATIENCE.as_millis()
                    ));
                }
                _ => tokio::time::sleep(LOOK_EVERY).await,
            }
        }
        Ok(format!(
            "started broker {node} again: serving after {} ms",
            self.elapsed().saturating_sub(began).as_millis()
        ))
    }

    async fn fail_leader(&self, partition: &TopicPartition) -> Result<String, String> {
        if self.broker_count() <= 1 {
            return self.restart_single_broker(partition).await;
        }
        match &self.commands {
            BrokerCommands {
                stop: Some(stop),
                start: Some(start),
                ..
            } => self.fail_over(partition, stop, start).await,
            BrokerCommands {
                restart: Some(restart),
                ..
            } => self.restart_leader(partition, restart).await,
            _ => Err(
                "no broker control: pass --broker-stop-cmd and --broker-start-cmd (or --broker-restart-cmd)"
                    .to_string(),
            ),
        }
    }

    async fn lose_acknowledgements(&self, partition: &TopicPartition) -> Result<String, String> {
        // A real broker cannot drop only its answers: the leader is killed
        // (and, on several brokers, fails over), so that the requests in
        // flight on its connections go unanswered, whether or not they were
        // appended, and the producer retries them.
        self.fail_leader(partition).await
    }
}

/// Why the suite could not run against a broker.
#[derive(Debug, thiserror::Error)]
pub enum KafkaRunError {
    /// The broker that the configuration names could not be reached or
    /// refused the client (one line, naming the address), or a broker
    /// command cannot work on it: the caller's input.
    #[error("{0}")]
    Unreachable(String),
    /// This process could not run the suite at all (no runtime).
    #[error("{0}")]
    Internal(String),
}

/// Runs the suite against the cluster that `config` names, on a runtime of
/// its own; `connected` is called with the cluster's broker count once it
/// has answered, before any check.
pub fn run_on_kafka(
    config: KafkaConfig,
    commands: BrokerCommands,
    options: &SuiteOptions,
    connected: impl FnOnce(usize),
) -> Result<Report, KafkaRunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaRunError::Internal(format!("starting a runtime: {e}")))?;
    runtime.block_on(async {
        let env = KafkaEnv::connect(config, commands)
            .await
            .map_err(KafkaRunError::Unreachable)?;
        connected(env.broker_count());
        Ok(run_suite(&env, options).await)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_placeholder_is_replaced_by_the_broker_id_wherever_it_appears() {
        assert_eq!(
            command_for_node("scripts/kafka --brokers 3 kill-node {node}", 2),
            "scripts/kafka --brokers 3 kill-node 2"
        );
        assert_eq!(
            command_for_node("stop {node} && log {node}", 3),
            "stop 3 && log 3"
        );
        assert_eq!(
            command_for_node("scripts/kafka restart", 1),
            "scripts/kafka restart"
        );
    }

    #[test]
    fn a_failed_command_is_named_with_its_last_stderr_line() {
        let stderr = "scripts/kafka: starting\nscripts/kafka: error: node 2 is not running\n\n";
        let message = command_failure("stop", "kill-node 2", "exit status: 1", stderr);
        assert_eq!(
            message,
            "the stop command \"kill-node 2\" failed (exit status: 1): scripts/kafka: error: node 2 is not running"
        );
        assert!(
            command_failure("start", "x", "exit status: 2", "").ends_with("no output on stderr")
        );
    }
}
